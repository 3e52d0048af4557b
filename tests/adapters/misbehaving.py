#!/usr/bin/env python3
"""An adapter that speaks failprobe's protocol badly, on purpose, for the protocol-fault tests.
It runs no Redis command: it answers `ok` (writes 1, reads null) until its fault is due.

  misbehaving.py no-hello            never says hello
  misbehaving.py protocol-9          says hello in a protocol failprobe does not speak
  misbehaving.py crash N             answers N requests, then says so on stderr and exits 3
  misbehaving.py garbage N           answers N requests, then prints a line that is not JSON
  misbehaving.py unknown-id N        answers N requests, then answers an id never sent
  misbehaving.py late MS             answers every request MS milliseconds late
  misbehaving.py leak TEXT           fails every request with an error that quotes TEXT
"""

import json
import sys
import threading
import time

mode = sys.argv[1]
arg = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2].isdigit() else 0
lock = threading.Lock()


def send(obj):
    with lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def answer(request):
    return {"id": request["id"], "ok": True, "value": 1 if request["cmd"][0] == "EVAL" else None}


if mode == "no-hello":
    time.sleep(60)
    sys.exit(0)
send({"hello": 9 if mode == "protocol-9" else 1, "client": "misbehaving", "version": "0", "settings": {"mode": mode}})
if mode == "protocol-9":
    time.sleep(60)

answered = 0
for line in sys.stdin:
    request = json.loads(line)
    if mode == "leak":
        send({"id": request["id"], "ok": False, "kind": "connection", "error": f"cannot connect to redis://:{sys.argv[2]}@db"})
        continue
    if mode == "late":
        threading.Timer(arg / 1000, send, [answer(request)]).start()
        continue
    if answered == arg and mode == "crash":
        sys.stderr.write("misbehaving adapter: boom\n")
        sys.stderr.flush()
        sys.exit(3)
    if answered == arg and mode == "garbage":
        send_raw = "this is not JSON"
        with lock:
            sys.stdout.write(send_raw + "\n")
            sys.stdout.flush()
        time.sleep(60)
    if answered == arg and mode == "unknown-id":
        send({"id": 10**12, "ok": True, "value": None})
        time.sleep(60)
    send(answer(request))
    answered += 1
