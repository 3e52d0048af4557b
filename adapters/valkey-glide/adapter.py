#!/usr/bin/env python3
"""failprobe adapter for Valkey GLIDE (Python, async), protocol version 1 (see
adapters/README.md). failprobe starts it with FAILPROBE_TARGET, FAILPROBE_PASSWORD and
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
import os
import sys
from urllib.parse import unquote, urlsplit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from failprobe_adapter import client_name, hosts, protocol_output, serve  # noqa: E402

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


def addresses(netloc):
    return [NodeAddress(host, port) for host, port in hosts(netloc, 6379)]


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
    if client_name():
        # The data connections' name; a cluster client's per-node management connections
        # (periodic topology checks) are named glide_management_connection by GLIDE itself.
        kwargs["client_name"] = client_name()
        settings["client_name"] = client_name()
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
        return await GlideClusterClient.create(GlideClusterClientConfiguration(addresses(netloc), **kwargs)), settings
    db = int(url.path.strip("/") or 0)
    if db:
        kwargs["database_id"] = db
    return await GlideClient.create(GlideClientConfiguration(addresses(netloc), **kwargs)), settings


def error_kind(e):
    if isinstance(e, GlideTimeout):
        return "timeout"
    if isinstance(e, (GlideConnectionError, ClosingError)):
        return "connection"
    if isinstance(e, RequestError):
        return "server"
    return "other"


async def main():
    protocol = protocol_output()
    client, settings = await build_client()
    hello = {"client": "valkey-glide", "version": importlib.metadata.version("valkey-glide"), "settings": settings}
    await serve(protocol, hello, client.custom_command, error_kind, client.close)


if __name__ == "__main__":
    asyncio.run(main())
