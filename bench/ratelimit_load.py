#!/usr/bin/env python3
"""Offers load to several proxies at once and records when each request was admitted.

    ratelimit_load.py HOST SECONDS STOP_AT STOP_CMD PORT...

One thread per port sends GET / with Host HOST over a kept-alive connection, as fast as it
can, for SECONDS. At STOP_AT seconds it runs STOP_CMD (a shell command that stops one node)
and the thread of the last port ends. Prints one line per second: admitted (2xx) requests in
that second, and offered ones; then the summary the bench script reads.
"""
import http.client
import subprocess
import sys
import threading
import time

host, seconds, stop_at, stop_cmd = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
ports = [int(p) for p in sys.argv[5:]]
start = time.monotonic()
stopped = threading.Event()
admitted = []  # seconds since start of each admitted request
offered = []
lock = threading.Lock()


def worker(port, last):
    conn = None
    while True:
        now = time.monotonic() - start
        if now >= seconds or (last and stopped.is_set()):
            return
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/", headers={"Host": host})
            resp = conn.getresponse()
            resp.read()
            at = time.monotonic() - start
            with lock:
                offered.append(at)
                if 200 <= resp.status < 300:
                    admitted.append(at)
        except Exception:
            conn = None
            time.sleep(0.01)


threads = [threading.Thread(target=worker, args=(p, i == len(ports) - 1)) for i, p in enumerate(ports)]
for t in threads:
    t.start()
while time.monotonic() - start < stop_at:
    time.sleep(0.05)
stopped.set()
stopped_at = time.monotonic() - start
subprocess.run(stop_cmd, shell=True, check=False)
for t in threads:
    t.join()

per_second = [0] * (int(seconds) + 1)
offered_per_second = [0] * (int(seconds) + 1)
for a in admitted:
    per_second[int(a)] += 1
for o in offered:
    offered_per_second[int(o)] += 1
for s in range(int(seconds)):
    print(f"t={s:>3}s admitted {per_second[s]:>5} offered {offered_per_second[s]:>6}")
print(f"stopped_at {stopped_at:.2f}")
# Steady state before the stop: from the third second (past the buckets' initial fill) to
# the stop.
first, last = 2.0, stopped_at
steady = sum(1 for a in admitted if first <= a < last)
print(f"before {steady / (last - first):.1f} per_s over {last - first:.1f} s")
# After the stop: the first sliding 1-second window, starting every 100 ms, back within 10%
# of the rate given as RATE in the environment, and the rate over the rest of the run.
import os
rate = float(os.environ.get("RATE", "300"))
t = stopped_at
back = None
while t + 1 <= seconds:
    n = sum(1 for a in admitted if t <= a < t + 1)
    if abs(n - rate) <= rate * 0.1:
        back = t + 1 - stopped_at
        break
    t += 0.1
rest_from = stopped_at + 2
rest = sum(1 for a in admitted if rest_from <= a < seconds)
print(f"back_within {back:.1f}" if back is not None else "back_within never")
print(f"after {rest / max(seconds - rest_from, 0.001):.1f} per_s over {seconds - rest_from:.1f} s")
