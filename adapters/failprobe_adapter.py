"""failprobe's adapter protocol, versions 1 and 2, for the Python adapters (see
adapters/README.md): the hello, then one JSON line per command in and one per answer out, in any
order, until failprobe closes stdin. An adapter gives `serve` its connected client, how to run
one command with it and how to name a failure's kind; with a way to subscribe, it speaks version
2: `{"subscribe": CHANNEL}` in, `{"msg": CHANNEL, "payload": …}` out for every message its
library receives, until `{"unsubscribe": CHANNEL}`.
"""

import asyncio
import json
import os
import sys


def protocol_output():
    """The protocol's own stdout; fd 1 then points at stderr, so that whatever a library prints
    (GLIDE's logger writes to stdout) cannot break the protocol."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def hosts(netloc, default_port):
    """`a:1,[::1]:2,b` (FAILPROBE_TARGET's host list) → [("a", 1), ("::1", 2), ("b", default_port)]."""
    out = []
    for part in netloc.split(","):
        host, _, port = part.rpartition(":")
        if not host:
            host, port = part, default_port
        out.append((host.strip("[]"), int(port)))
    return out


def client_name():
    """FAILPROBE_CLIENT_NAME (adapters/README.md): the name every connection of the client
    carries (CLIENT SETNAME), by which failprobe counts them; None when unset."""
    return os.environ.get("FAILPROBE_CLIENT_NAME") or None


def as_value(v):
    if v is None or isinstance(v, int):
        return v
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


async def serve(protocol, hello, execute, error_kind, close, subscribe=None):
    """Says `hello`, then answers every request with `await execute(argv)` until stdin ends;
    finishes what is in flight (1.5 s at most: failprobe allows 2 s) and calls `close`.
    `subscribe(channel, deliver)` (protocol 2): subscribes with the library and calls
    `deliver(payload)` for each message until it is cancelled (`{"unsubscribe": …}`, or the end)."""

    def send(obj):
        protocol.write(json.dumps(obj) + "\n")
        protocol.flush()

    send({"hello": 2 if subscribe else 1, **hello})
    subscriptions = {}

    def on_subscription_line(request):
        channel = request.get("subscribe") or request.get("unsubscribe")
        if "unsubscribe" in request:
            task = subscriptions.pop(channel, None)
            if task:
                task.cancel()
            return
        deliver = lambda payload: send({"msg": channel, "payload": as_value(payload)})
        subscriptions[channel] = asyncio.create_task(subscribe(channel, deliver))

    async def run(request):
        rid = request["id"]
        try:
            send({"id": rid, "ok": True, "value": as_value(await execute(request["cmd"]))})
        except Exception as e:  # every failure is an answer: failprobe classifies it
            send({"id": rid, "ok": False, "kind": error_kind(e), "error": f"{type(e).__name__}: {e}"})

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tasks = set()
    while line := await reader.readline():
        request = json.loads(line)
        if subscribe and ("subscribe" in request or "unsubscribe" in request):
            on_subscription_line(request)
            continue
        task = asyncio.create_task(run(request))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    for task in subscriptions.values():
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=1.5)
    try:
        await close()
    except Exception:
        pass
