#!/usr/bin/env bash
# What one `fdatasync` of a 2 KiB write costs on this disk when the file grows (what the raft
# log does today: each sync also commits the new size) and when the space was written before
# (a preallocated, zero-filled segment, as etcd's WAL uses). 2000 of each, in target/.
#
#   bench/fsync.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target
python3 - <<'PY'
import os, time
N, BUF = 2000, b"x" * 2048
def run(prefill):
    path = "target/fsync-bench.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    if prefill:
        os.pwrite(fd, b"\0" * (N * len(BUF)), 0)
        os.fsync(fd)
    start = time.perf_counter()
    for i in range(N):
        os.pwrite(fd, BUF, i * len(BUF))
        os.fdatasync(fd)
    per = (time.perf_counter() - start) / N * 1e6
    os.close(fd)
    os.remove(path)
    return per
print(f"appending (file grows):   {run(False):6.1f} us per 2 KiB write + fdatasync")
print(f"into zero-filled space:   {run(True):6.1f} us per 2 KiB write + fdatasync")
PY
