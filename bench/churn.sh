#!/usr/bin/env bash
# Task count and resident memory of one node under configuration churn and many rate-limit
# keys: a route limited per path (key uri) gets ROUNDS rounds of (KEYS requests to distinct
# paths, then UPDATES domain updates, every other one changing the limit itself), and the
# node's hermes_runtime_alive_tasks and hermes_process_resident_bytes are printed after each
# step. Flat figures from round to round mean no task or memory grows with either.
#
#   bench/churn.sh [rounds] [keys] [updates]     (defaults: 3, 100000, 10000)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
KEYS=${2:-100000}
UPDATES=${3:-10000}

BENCH=bench/churn.sh
. bench/lib.sh
bench_need nginx:nginx-light curl:curl python3:python3 ss:iproute2
bench_build
bench_workdir churn
bench_ports_free 24411 24412 24413 24414 24415

bench_nginx_confs 24411 24499
nginx -c "$WORK/upstream.conf" -p "$WORK" >/dev/null 2>&1 &
PIDS+=($!)
RUST_LOG=warn "$HERMES" node --id 1 --data-dir "$WORK/hermes" --peer-listen 127.0.0.1:24412 \
  --admin-listen 127.0.0.1:24413 --etcd-listen 127.0.0.1:24414 --proxy-listen 127.0.0.1:24415 \
  --access-log off >"$WORK/hermes.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 300); do curl -sf -o /dev/null http://127.0.0.1:24413/readyz && break; sleep 0.1; done

domain() { # rate priority
  echo "{\"name\":\"churn\",\"hosts\":[\"churn.bench\"],\"routes\":[{\"name\":\"all\",\"uri\":\"/*\",\"priority\":$2,\"clusters\":[{\"name\":\"up\"}],\"rate_limit\":{\"mode\":\"req\",\"rate\":$1,\"burst\":0,\"key\":\"uri\"}}]}"
}
bench_put 24414 /hermes/clusters/up '{"name":"up","nodes":[{"host":"127.0.0.1","port":24411}]}'
bench_put 24414 /hermes/domains/churn "$(domain 1000000 0)"
for _ in $(seq 1 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: churn.bench' http://127.0.0.1:24415/k/0)" = 200 ] && break
  sleep 0.1
done


figures() { # step
  local m tasks rss
  m=$(curl -sf http://127.0.0.1:24413/metrics)
  tasks=$(echo "$m" | awk '$1 == "hermes_runtime_alive_tasks" {print $2}')
  rss=$(echo "$m" | awk '$1 == "hermes_process_resident_bytes" {printf "%.1f", $2 / 1048576}')
  printf '%-34s %8s %10s\n' "$1" "$tasks" "$rss"
}

printf '%-34s %8s %10s\n' "after" "tasks" "RSS (MiB)"
figures "start"
for round in $(seq 1 "$ROUNDS"); do
  # KEYS requests, each to a path of its own (a key of its own).
  python3 - "$KEYS" <<'PY'
import http.client, sys
n = int(sys.argv[1])
conns = [http.client.HTTPConnection("127.0.0.1", 24415) for _ in range(1)]
import random
base = random.randrange(1 << 40)
for i in range(n):
    c = conns[0]
    c.request("GET", f"/k/{base}-{i}", headers={"Host": "churn.bench"})
    r = c.getresponse(); r.read()
PY
  figures "round $round: $KEYS new keys"
  # UPDATES domain updates through the etcd API; every other one changes the limit.
  python3 - "$UPDATES" <<'PY'
import base64, http.client, json, sys
n = int(sys.argv[1])
c = http.client.HTTPConnection("127.0.0.1", 24414)
key = base64.b64encode(b"/hermes/domains/churn").decode()
for i in range(n):
    rate = 1000000 + (i % 2)
    doc = {"name": "churn", "hosts": ["churn.bench"], "routes": [{"name": "all", "uri": "/*",
           "priority": i, "clusters": [{"name": "up"}],
           "rate_limit": {"mode": "req", "rate": rate, "burst": 0, "key": "uri"}}]}
    body = json.dumps({"key": key, "value": base64.b64encode(json.dumps(doc).encode()).decode()})
    c.request("POST", "/v3/kv/put", body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
  figures "round $round: $UPDATES route updates"
done
echo
echo "one node, key uri, --access-log off; $(nproc) cores; $(git rev-parse --short HEAD)"
