#!/usr/bin/env python3
"""An adapter for the tests of the children failprobe starts (tests/all/safety/children.rs). It
runs no Redis command: it answers `ok` (writes 1, reads null), and:

  unruly.py ignore-eof PIDFILE   writes its pid, ignores SIGTERM and end of input: never exits
  unruly.py twice N              answers N requests, then one of them a second time
  unruly.py flood N              answers N requests, then the last one again and again, for ever
  unruly.py env FILE             writes its environment (JSON) to FILE first
"""

import json
import os
import signal
import sys
import time

mode, arg = sys.argv[1], sys.argv[2]


def line(request):
    value = 1 if request["cmd"][0] == "EVAL" else None
    return json.dumps({"id": request["id"], "ok": True, "value": value}) + "\n"


if mode == "ignore-eof":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(arg + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(arg + ".tmp", arg)
if mode == "env":
    with open(arg, "w") as f:
        json.dump(dict(os.environ), f)
sys.stdout.write(json.dumps({"hello": 1, "client": "unruly", "version": "0", "settings": {"mode": mode}}) + "\n")
sys.stdout.flush()

answered = 0
for text in sys.stdin:
    answer = line(json.loads(text))
    sys.stdout.write(answer)
    answered += 1
    if mode == "twice" and answered == int(arg):
        sys.stdout.write(answer)
    if mode == "flood" and answered == int(arg):
        while True:
            sys.stdout.write(answer * 1000)
    sys.stdout.flush()
while mode == "ignore-eof":
    time.sleep(1)
