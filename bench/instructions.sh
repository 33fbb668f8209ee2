#!/usr/bin/env bash
# User-space instructions per proxied request, counted by valgrind's callgrind: a figure that,
# unlike requests/s on this kind of VM, does not drift from run to run, so it shows what a change
# to the request path costs or saves. It counts only the proxy's own code and libraries (no
# kernel), for a Hermes node (one proxy thread) and, side by side, nginx (proxy_pass with
# keep-alive, one worker), both in front of the same nginx upstream answering "ok".
#
#   bench/instructions.sh [duration-seconds] [connections]     (defaults: 5, 32)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-5}
CONNECTIONS=${2:-32}
# wrk wants at least one connection per thread.
THREADS=$((CONNECTIONS < 2 ? CONNECTIONS : 2))

BENCH=bench/instructions.sh
. bench/lib.sh
bench_need wrk:wrk nginx:nginx-light valgrind:valgrind ss:iproute2
bench_build
bench_workdir instructions

UP=25811; NGINX=25812; HERMES_PROXY=25814
bench_ports_free $UP $NGINX $HERMES_PROXY 25815 25816 25817
# Both nginx run as one process each (master_process off): one process to count and to kill.
bench_nginx_confs $UP $NGINX "master_process off;"
nginx -c "$WORK/upstream.conf" -p "$WORK" >/dev/null 2>&1 & PIDS+=($!); disown

# Counting starts only when asked (`callgrind_control -i on`), after start-up.
grind() { # label command...
  local label=$1; shift
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/$label.%p" "$@" \
    >"$WORK/$label.log" 2>&1 & GRIND_PID=$!; PIDS+=($!); disown
}
put() { bench_put 25817 "$1" "$2"; }
wait_ok() { for _ in $(seq 1 300); do [ "$(curl -s "http://127.0.0.1:$1/" 2>/dev/null)" = "ok" ] && return; sleep 0.2; done; echo "port $1 never answered"; exit 1; }

# Instructions per request: warm up, zero the counters, count a load, dump.
count() { # label port pid
  callgrind_control -i on "$3" >/dev/null 2>&1
  wrk -t"$THREADS" -c"$CONNECTIONS" -d2s "http://127.0.0.1:$2/" >/dev/null
  callgrind_control -z "$3" >/dev/null 2>&1
  local n
  n=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" "http://127.0.0.1:$2/" | awk '/requests in/ {print $1}')
  callgrind_control -d "$3" >/dev/null 2>&1
  sleep 0.5
  local total
  total=$(callgrind_annotate "$(ls "$WORK/$1".*.1 | head -1)" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  printf '%-34s %10s %14s\n' "$4" "$n" "$((total / n))"
}

grind nginx nginx -c "$WORK/nginx.conf" -p "$WORK"; NGINX_PID=$GRIND_PID
wait_ok $NGINX
RUST_LOG=warn grind hermes "$HERMES" node --data-dir "$WORK/hermes" --worker-threads 1 --proxy-threads 1 --access-log off \
  --proxy-listen 127.0.0.1:$HERMES_PROXY --admin-listen 127.0.0.1:25815 --peer-listen 127.0.0.1:25816 \
  --etcd-listen 127.0.0.1:25817
HERMES_PID=$GRIND_PID
for _ in $(seq 1 300); do curl -sf -o /dev/null http://127.0.0.1:25815/livez && break; sleep 0.2; done
put /hermes/clusters/up "{\"name\":\"up\",\"nodes\":[{\"host\":\"127.0.0.1\",\"port\":$UP}]}"
put /hermes/domains/all '{"name":"all","hosts":["_"],"routes":[{"name":"all","uri":"/*","clusters":[{"name":"up"}]}]}'
wait_ok $HERMES_PROXY

printf '%-34s %10s %14s\n' "proxy (under callgrind)" "requests" "instr/request"
count nginx $NGINX "$NGINX_PID" "nginx 1.22 proxy_pass (1 worker)"
count hermes $HERMES_PROXY "$HERMES_PID" "hermes (1 proxy thread)"
echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, GET; user-space instructions only; hermes $("$HERMES" version | awk '{print $2}')"
