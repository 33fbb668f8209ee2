#!/usr/bin/env bash
# Cluster-wide rate-limit accuracy: three nodes, one route limited to RATE requests a second
# (token bucket, burst 0, key route), load offered to all three proxies at once, well above the
# limit (bench/ratelimit_load.py, one client thread per node). After STOP_AT seconds node 3 is
# stopped (SIGTERM: it revokes its registry lease) and the two others must admit the whole
# rate between them. Prints admitted requests per second, the rate before the stop, how soon
# after it a one-second window is back within 10 % of the limit, and the rate after.
#
#   bench/ratelimit.sh [seconds-before-stop] [seconds-after]     (defaults: 22, 10)
#   RATE=300 bench/ratelimit.sh ...
#   SIGNAL=KILL bench/ratelimit.sh ...   node 3 dies instead (no revoke: its lease expires, 3 s)
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE=${1:-22}
AFTER=${2:-10}
RATE=${RATE:-300}
SIGNAL=${SIGNAL:-TERM}
export RATE

BENCH=bench/ratelimit.sh
. bench/lib.sh
bench_need nginx:nginx-light curl:curl python3:python3 ss:iproute2
bench_build
bench_workdir ratelimit
bench_ports_free 24511 24601 24602 24603 24701 24702 24703 24801 24802 24803 24901 24902 24903

bench_nginx_confs 24511 24599
nginx -c "$WORK/upstream.conf" -p "$WORK" >/dev/null 2>&1 &
PIDS+=($!)

cluster="1=http://127.0.0.1:24801,2=http://127.0.0.1:24802,3=http://127.0.0.1:24803"
for i in 1 2 3; do
  RUST_LOG=warn "$HERMES" node --id "$i" --data-dir "$WORK/hermes-$i" \
    --peer-listen "127.0.0.1:$((24800 + i))" --admin-listen "127.0.0.1:$((24900 + i))" \
    --etcd-listen "127.0.0.1:$((24700 + i))" --proxy-listen "127.0.0.1:$((24600 + i))" \
    --access-log off --initial-cluster "$cluster" >"$WORK/hermes-$i.log" 2>&1 &
  PIDS+=($!)
  eval "NODE_$i=$!"
done
for i in 1 2 3; do
  for _ in $(seq 1 300); do
    curl -sf -o /dev/null "http://127.0.0.1:$((24900 + i))/readyz" && break
    sleep 0.1
  done
done

bench_put 24701 /hermes/clusters/up '{"name":"up","nodes":[{"host":"127.0.0.1","port":24511}]}'
bench_put 24701 /hermes/domains/limited \
  "{\"name\":\"limited\",\"hosts\":[\"rl.bench\"],\"routes\":[{\"name\":\"all\",\"uri\":\"/*\",\"clusters\":[{\"name\":\"up\"}],\"rate_limit\":{\"mode\":\"req\",\"rate\":$RATE,\"burst\":0,\"key\":\"route\"}}]}"

# Every node serves the route and counts three instances.
for i in 1 2 3; do
  for _ in $(seq 1 300); do
    n=$(curl -sf "http://127.0.0.1:$((24900 + i))/metrics" | awk '$1 == "hermes_gateway_instances" {print $2}')
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: rl.bench' "http://127.0.0.1:$((24600 + i))/")
    [ "$n" = 3 ] && [ "$code" != 404 ] && break
    sleep 0.1
  done
  [ "$n" = 3 ] || { echo "$BENCH: node $i counts ${n:-no} instances, not 3"; exit 1; }
done
sleep 2 # the buckets refill from the probes above

python3 bench/ratelimit_load.py rl.bench "$((BEFORE + AFTER))" "$BEFORE" "kill -$SIGNAL $NODE_3" \
  24601 24602 24603 | tee "$WORK/load.txt"
echo
echo "limit $RATE/s across 3 nodes (key route, burst 0); node 3 sent SIG$SIGNAL at ${BEFORE}s; $(nproc) cores; $(git rev-parse --short HEAD)"
