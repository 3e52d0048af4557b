#!/usr/bin/env python3
"""An adapter whose subscription never comes back, for the --probe pubsub tests (run it with
adapters/.venv/bin/python). It answers every request as leaky.py does (one connection of its
own, opened again after a failure), and speaks protocol 2: asked to subscribe, it subscribes on
one raw connection to the primary of the moment and reports each message, and when that
connection fails it stops listening for good, as an application whose listener died without
anyone noticing. Its hello says library "deaf-test". Targets as leaky.py's.
"""

import asyncio
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "adapters"))
sys.path.insert(0, here)
from failprobe_adapter import protocol_output, serve  # noqa: E402
from leaky import Requests, Target, error_kind  # noqa: E402


async def listen_once(target, channel, deliver):
    conn = await target.connect()
    try:
        await conn.send_command("SUBSCRIBE", channel)
        await conn.read_response(push_request=True)
        while True:
            try:
                reply = await conn.read_response(timeout=3600, push_request=True)
            except Exception as e:
                sys.stderr.write(f"deaf adapter: subscription lost ({type(e).__name__}: {e}); not subscribing again\n")
                return
            if isinstance(reply, list) and len(reply) == 3 and reply[0] == "message":
                deliver(reply[2])
    finally:
        await conn.disconnect()


async def main():
    protocol = protocol_output()
    target = Target()
    requests = Requests(target)
    await requests.execute(["PING"])
    hello = {"client": "deaf-test", "version": "1", "settings": {}}

    async def close():
        if requests.conn is not None:
            await requests.conn.disconnect()

    await serve(
        protocol, hello, requests.execute, error_kind, close, lambda ch, deliver: listen_once(target, ch, deliver)
    )


if __name__ == "__main__":
    asyncio.run(main())
