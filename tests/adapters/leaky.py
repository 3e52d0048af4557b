#!/usr/bin/env python3
"""An adapter that leaks connections on purpose, for the --keep-clients tests (run it with
adapters/.venv/bin/python: it uses redis-py's connections). It answers every request correctly
on one connection of its own (requests wait for it in turn), and every 3 s it opens one more
connection to the primary that it keeps open and never closes (one PING on it), so the number
of its connections only grows for as long as it lives: 1 at the hello, 1 + k after 3k s, up to
51 (it stops adding after 50 leaked). A leaked connection the server closed (the node
restarted, Sentinel's CLIENT KILL on the demoted primary) is opened again, on the primary of the
moment, at the next 3 s: the count still only grows. Every connection carries
FAILPROBE_CLIENT_NAME (adapters/README.md) when it is set; its hello says library "leaky-test".

Targets: redis[s]://host:port[/db] and redis[s]+sentinel://hosts/master (the primary asked of
the sentinels for each new connection); a cluster target is refused before the hello (exit 2).
"""

import asyncio
import os
import sys
from urllib.parse import unquote, urlsplit

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "adapters"))
from failprobe_adapter import client_name, hosts, protocol_output, serve  # noqa: E402

import redis  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402

LEAK_EVERY_S = 3
LEAK_AT_MOST = 50


def error_kind(e):
    if isinstance(e, (redis.exceptions.TimeoutError, asyncio.TimeoutError)):
        return "timeout"
    if isinstance(e, redis.exceptions.ConnectionError):
        return "connection"
    if isinstance(e, redis.exceptions.ResponseError):
        return "server"
    return "other"


class Target:
    """Opens connections to the primary: the target's address, or the one the sentinels name."""

    def __init__(self):
        url = urlsplit(os.environ["FAILPROBE_TARGET"])
        if "+cluster" in url.scheme:
            sys.stderr.write("leaky adapter: no cluster support: give it the primary or the sentinels\n")
            sys.exit(2)
        timeout_s = int(os.environ.get("FAILPROBE_TIMEOUT_MS") or 250) / 1000
        tls = url.scheme.startswith(("rediss", "valkeys"))
        self.connection_class = aioredis.SSLConnection if tls else aioredis.Connection
        self.kwargs = {
            "username": unquote(url.username) if url.username else None,
            "password": os.environ.get("FAILPROBE_PASSWORD") or None,
            "socket_timeout": timeout_s,
            "socket_connect_timeout": timeout_s,
            "client_name": client_name(),
            "decode_responses": True,
        }
        if tls and os.environ.get("FAILPROBE_TLS_CA_FILE"):
            self.kwargs["ssl_ca_certs"] = os.environ["FAILPROBE_TLS_CA_FILE"]
        netloc = url.netloc.rsplit("@", 1)[-1]
        path = url.path.strip("/").split("/")
        self.sentinel = None
        if "+sentinel" in url.scheme:
            self.master = path[0]
            self.kwargs["db"] = int(path[1]) if len(path) > 1 and path[1] else 0
            sentinel_kwargs = {"socket_timeout": timeout_s, "client_name": client_name()}
            if os.environ.get("FAILPROBE_SENTINEL_PASSWORD"):
                sentinel_kwargs["password"] = os.environ["FAILPROBE_SENTINEL_PASSWORD"]
            self.sentinel = aioredis.Sentinel(hosts(netloc, 26379), sentinel_kwargs=sentinel_kwargs)
        else:
            (self.address,) = hosts(netloc, 6379)
            self.kwargs["db"] = int(path[0] or 0)

    async def connect(self):
        host, port = await self.sentinel.discover_master(self.master) if self.sentinel else self.address
        conn = self.connection_class(host=host, port=port, **self.kwargs)
        try:
            await conn.connect()
            await conn.send_command("PING")
            await conn.read_response()
        except BaseException:
            await conn.disconnect()
            raise
        return conn


class Requests:
    """The requests' one connection, opened again after a failure (the next request's)."""

    def __init__(self, target):
        self.target, self.conn, self.lock = target, None, asyncio.Lock()

    async def execute(self, argv):
        async with self.lock:
            try:
                if self.conn is None:
                    self.conn = await self.target.connect()
                await self.conn.send_command(*argv)
                return await self.conn.read_response()
            except redis.exceptions.ResponseError:
                raise
            except BaseException:
                if self.conn is not None:
                    await self.conn.disconnect()
                self.conn = None
                raise


async def leak(target, leaked):
    """Every LEAK_EVERY_S, one more connection (at most LEAK_AT_MOST), each kept in `leaked` and
    never closed; those the server closed are opened again, so that after k rounds it holds k."""
    rounds = 0
    while True:
        await asyncio.sleep(LEAK_EVERY_S)
        rounds = min(rounds + 1, LEAK_AT_MOST)
        alive = []
        for conn in leaked:
            try:
                await conn.send_command("PING")
                await conn.read_response()
                alive.append(conn)
            except Exception:
                await conn.disconnect()
        leaked[:] = alive
        while len(leaked) < rounds:
            try:
                leaked.append(await target.connect())
            except Exception as e:  # the primary down or moving: again in LEAK_EVERY_S
                sys.stderr.write(f"leaky adapter: could not open leaked connection {len(leaked) + 1}: {e}\n")
                break


async def main():
    protocol = protocol_output()
    target = Target()
    requests = Requests(target)
    await requests.execute(["PING"])
    leaked = []
    leaking = asyncio.create_task(leak(target, leaked))
    settings = {"leak_every_s": LEAK_EVERY_S, "leak_at_most": LEAK_AT_MOST}
    if client_name():
        settings["client_name"] = client_name()
    hello = {"client": "leaky-test", "version": "0", "settings": settings}

    async def close():
        leaking.cancel()

    await serve(protocol, hello, requests.execute, error_kind, close)


if __name__ == "__main__":
    asyncio.run(main())
