#!/usr/bin/env python3
"""failprobe adapter for Valkey GLIDE (Python, async), protocol version 1 (README, "External
client adapters"). failprobe starts it with FAILPROBE_TARGET, FAILPROBE_PASSWORD and
FAILPROBE_TIMEOUT_MS in the environment and speaks JSON lines on stdin/stdout.

The client is built the way an application builds it; these settings mirror a production one
(unset: GLIDE's own default, except where noted):

  GLIDE_MODE              standalone | cluster (default: from FAILPROBE_TARGET's scheme:
                          redis[s]:// is standalone, redis[s]+cluster:// is cluster)
  GLIDE_REQUEST_TIMEOUT   ms per request (default: FAILPROBE_TIMEOUT_MS; `none`: GLIDE's 250 ms)
  GLIDE_RETRIES           reconnect attempts of the backoff strategy (GLIDE's default when unset)
  GLIDE_RETRY_FACTOR_MS   backoff factor (with GLIDE_RETRIES)
  GLIDE_RETRY_EXPONENT    backoff exponent base (with GLIDE_RETRIES)
  GLIDE_READ_FROM         primary | preferReplica (default primary)

GLIDE has no Sentinel support: a redis+sentinel:// target is refused at start-up (an error on
stderr and exit status 2, before the hello).
"""

import asyncio
import importlib.metadata
import json
import os
import sys
from urllib.parse import unquote, urlsplit

from glide import (
    BackoffStrategy,
    GlideClient,
    GlideClientConfiguration,
    GlideClusterClient,
    GlideClusterClientConfiguration,
    NodeAddress,
    ReadFrom,
    ServerCredentials,
)
from glide import ClosingError, ConnectionError as GlideConnectionError, RequestError, TimeoutError as GlideTimeout


def env_int(name):
    value = os.environ.get(name)
    return int(value) if value not in (None, "", "none") else None


def hosts(netloc, default_port):
    out = []
    for part in netloc.split(","):
        host, _, port = part.rpartition(":")
        if not host:
            host, port = part, default_port
        out.append(NodeAddress(host.strip("[]"), int(port)))
    return out


async def build_client():
    url = urlsplit(os.environ["FAILPROBE_TARGET"])
    if "+sentinel" in url.scheme:
        sys.stderr.write("valkey-glide has no Sentinel support: give it the primary or a cluster\n")
        sys.exit(2)
    mode = os.environ.get("GLIDE_MODE") or ("cluster" if "+cluster" in url.scheme else "standalone")
    netloc = url.netloc.rsplit("@", 1)[-1]
    settings = {"mode": mode}
    kwargs = {"use_tls": url.scheme.startswith(("rediss", "valkeys"))}
    password = os.environ.get("FAILPROBE_PASSWORD") or None
    username = unquote(url.username) if url.username else None
    if password:
        kwargs["credentials"] = ServerCredentials(password, username)
    timeout = env_int("GLIDE_REQUEST_TIMEOUT")
    if os.environ.get("GLIDE_REQUEST_TIMEOUT") != "none":
        kwargs["request_timeout"] = timeout if timeout is not None else env_int("FAILPROBE_TIMEOUT_MS")
    if env_int("GLIDE_RETRIES") is not None:
        kwargs["reconnect_strategy"] = BackoffStrategy(
            env_int("GLIDE_RETRIES"), env_int("GLIDE_RETRY_FACTOR_MS") or 100, env_int("GLIDE_RETRY_EXPONENT") or 2
        )
        settings["retries"] = env_int("GLIDE_RETRIES")
    if os.environ.get("GLIDE_READ_FROM") == "preferReplica":
        kwargs["read_from"] = ReadFrom.PREFER_REPLICA
    settings.update({k: v for k, v in kwargs.items() if k in ("use_tls", "request_timeout")})
    settings["read_from"] = os.environ.get("GLIDE_READ_FROM") or "primary"
    if mode == "cluster":
        return await GlideClusterClient.create(GlideClusterClientConfiguration(hosts(netloc, 6379), **kwargs)), settings
    db = int(url.path.strip("/") or 0)
    if db:
        kwargs["database_id"] = db
    return await GlideClient.create(GlideClientConfiguration(hosts(netloc, 6379), **kwargs)), settings


def error_kind(e):
    if isinstance(e, GlideTimeout):
        return "timeout"
    if isinstance(e, (GlideConnectionError, ClosingError)):
        return "connection"
    if isinstance(e, RequestError):
        return "server"
    return "other"


def as_value(v):
    if v is None or isinstance(v, int):
        return v
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


def protocol_output():
    """The protocol's own stdout; fd 1 then points at stderr, so that whatever a library prints
    (GLIDE's logger writes to stdout) cannot break the protocol."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


async def main():
    protocol = protocol_output()
    client, settings = await build_client()
    version = importlib.metadata.version("valkey-glide")

    def send(obj):
        protocol.write(json.dumps(obj) + "\n")
        protocol.flush()

    send({"hello": 1, "client": "valkey-glide", "version": version, "settings": settings})

    async def run(request):
        rid = request["id"]
        try:
            value = await client.custom_command(request["cmd"])
            send({"id": rid, "ok": True, "value": as_value(value)})
        except Exception as e:  # every failure is an answer: failprobe classifies it
            send({"id": rid, "ok": False, "kind": error_kind(e), "error": f"{type(e).__name__}: {e}"})

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tasks = set()
    while line := await reader.readline():
        task = asyncio.create_task(run(json.loads(line)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=1.5)
    try:
        await client.close()
    except Exception:
        pass


if __name__ == "__main__":
    asyncio.run(main())
