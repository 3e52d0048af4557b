#!/usr/bin/env python3
"""failprobe adapter for redis-py (its asyncio client), protocol version 1 (see
adapters/README.md). failprobe starts it with FAILPROBE_TARGET, FAILPROBE_PASSWORD and
FAILPROBE_TIMEOUT_MS in the environment and speaks JSON lines on stdin/stdout.

The client is built the way an application builds it; these settings mirror a production one
(unset: redis-py's own default, except where noted):

  REDISPY_MODE                  direct | sentinel | cluster (default: from FAILPROBE_TARGET's
                                scheme: redis[s]://, redis[s]+sentinel://, redis[s]+cluster://)
  REDISPY_SOCKET_TIMEOUT        seconds per command (default: FAILPROBE_TIMEOUT_MS)
  REDISPY_CONNECT_TIMEOUT       seconds to connect (default: FAILPROBE_TIMEOUT_MS)
  REDISPY_RETRIES               retries of a command on a connection or timeout error
                                (redis.asyncio.retry.Retry(ExponentialBackoff(), N), 0: none;
                                unset: redis-py's default Retry, 3 retries with jittered backoff
                                since 6.0, as hello.settings.retries says)
  REDISPY_HEALTH_CHECK_INTERVAL seconds a connection may stay idle before a PING checks it
  REDISPY_MAX_CONNECTIONS       connection pool size
  REDISPY_SENTINEL_SOCKET_TIMEOUT  seconds per command to a sentinel

Direct: redis.asyncio.Redis(host, port, db, ...). Sentinel: Sentinel([...]).master_for(name).
Cluster: redis.asyncio.RedisCluster(startup_nodes=[...]).
"""

import asyncio
import os
import sys
from urllib.parse import unquote, urlsplit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from failprobe_adapter import client_name, hosts, protocol_output, serve  # noqa: E402

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff


def env_float(name, default=None):
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


def env_int(name, default=None):
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def build_client():
    url = urlsplit(os.environ["FAILPROBE_TARGET"])
    scheme = url.scheme
    tls = scheme.startswith("rediss") or scheme.startswith("valkeys")
    mode = os.environ.get("REDISPY_MODE") or (
        "sentinel" if "+sentinel" in scheme else "cluster" if "+cluster" in scheme else "direct"
    )
    netloc = url.netloc.rsplit("@", 1)[-1]
    username = unquote(url.username) if url.username else None
    timeout_s = env_int("FAILPROBE_TIMEOUT_MS", 250) / 1000
    retries = env_int("REDISPY_RETRIES")
    common = {
        "username": username,
        "password": os.environ.get("FAILPROBE_PASSWORD") or None,
        "socket_timeout": env_float("REDISPY_SOCKET_TIMEOUT", timeout_s),
        "socket_connect_timeout": env_float("REDISPY_CONNECT_TIMEOUT", timeout_s),
        "decode_responses": True,
    }
    name = client_name()
    if name:
        # Every connection of every pool (each cluster node's, the primary's through Sentinel).
        common["client_name"] = name
    if retries is not None:
        common["retry"] = Retry(ExponentialBackoff(), retries)
    if env_float("REDISPY_HEALTH_CHECK_INTERVAL") is not None:
        common["health_check_interval"] = env_float("REDISPY_HEALTH_CHECK_INTERVAL")
    if env_int("REDISPY_MAX_CONNECTIONS") is not None:
        common["max_connections"] = env_int("REDISPY_MAX_CONNECTIONS")
    if tls:
        common["ssl"] = True
        if os.environ.get("FAILPROBE_TLS_CA_FILE"):
            common["ssl_ca_certs"] = os.environ["FAILPROBE_TLS_CA_FILE"]
    settings = {k: v for k, v in common.items() if k not in ("password", "retry") and v is not None}
    settings["mode"] = mode
    # Unset, the client keeps redis-py's own Retry: report what it does, not 0.
    settings["retries"] = retries if retries is not None else "default"
    if mode == "cluster":
        nodes = [ClusterNode(h, p) for h, p in hosts(netloc, 6379)]
        return aioredis.RedisCluster(startup_nodes=nodes, **common), settings
    if mode == "sentinel":
        path = url.path.strip("/").split("/")
        master, db = path[0], int(path[1]) if len(path) > 1 and path[1] else 0
        sentinel_kwargs = {"socket_timeout": env_float("REDISPY_SENTINEL_SOCKET_TIMEOUT", timeout_s)}
        if os.environ.get("FAILPROBE_SENTINEL_PASSWORD"):
            sentinel_kwargs["password"] = os.environ["FAILPROBE_SENTINEL_PASSWORD"]
        if name:
            sentinel_kwargs["client_name"] = name
        sentinel = aioredis.Sentinel(hosts(netloc, 26379), sentinel_kwargs=sentinel_kwargs, db=db, **common)
        settings["master"] = master
        return sentinel.master_for(master), settings
    (host, port), = hosts(netloc, 6379)
    db = int(url.path.strip("/") or 0)
    return aioredis.Redis(host=host, port=port, db=db, **common), settings


def error_kind(e):
    if isinstance(e, (redis.exceptions.TimeoutError, asyncio.TimeoutError)):
        return "timeout"
    if isinstance(e, redis.exceptions.ConnectionError):
        return "connection"
    if isinstance(e, redis.exceptions.ResponseError):
        return "server"
    return "other"


async def main():
    protocol = protocol_output()
    client, settings = build_client()
    # Connected before the hello, as an application is before it serves: the cluster's slots
    # are known, the primary found.
    if isinstance(client, aioredis.RedisCluster):
        await client.initialize()
    else:
        await client.ping()
    if settings["retries"] == "default":
        # What a connection retries with: the client's default Retry, but through Sentinel
        # (master_for builds the client from a pool) the connection's own, which retries nothing.
        if isinstance(client, aioredis.RedisCluster):
            retry = client.retry
        else:
            conn = await client.connection_pool.get_connection()
            retry = conn.retry
            await client.connection_pool.release(conn)
        settings["retries"] = f"{retry.get_retries()} ({type(retry._backoff).__name__}, redis-py's default)"
    hello = {"client": "redis-py", "version": redis.__version__, "settings": settings}
    subscribe = None if isinstance(client, aioredis.RedisCluster) else lambda ch, deliver: listen(client, ch, deliver)
    await serve(protocol, hello, lambda argv: client.execute_command(*argv), error_kind, client.aclose, subscribe)


async def listen(client, channel, deliver):
    """A subscription as an application keeps one: get_message in a loop, asked again after an
    error. redis-py reconnects the pub/sub connection on the next read (through Sentinel, to the
    primary of the moment) and subscribes its channels again (PubSub.on_connect)."""
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe(channel)
        while True:
            try:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except Exception as e:
                print(f"pubsub {channel}: {type(e).__name__}: {e}", file=sys.stderr)
                await asyncio.sleep(0.1)
                continue
            if message and message.get("type") == "message":
                deliver(message["data"])
    finally:
        try:
            await pubsub.aclose()
        except Exception:
            pass


if __name__ == "__main__":
    asyncio.run(main())
