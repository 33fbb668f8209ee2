#!/usr/bin/env bash
# Proxy throughput and latency, in one run, all to the same small upstream (an nginx worker that
# answers "ok"): wrk straight at the upstream, then through nginx (proxy_pass with keep-alive,
# one worker), HAProxy (one thread) and a Hermes node (one proxy thread). Access logs are off
# everywhere. Prints requests/s, p50 and p99 for each, and the CPU time (user and system, from
# /proc) the process under test spent per request.
#
# The proxies run in rounds, each round in a rotated order, so that a drift in the machine's speed
# (this kind of VM swings by up to 2x within minutes) does not always favour the one that runs
# first; at the end it prints each proxy's median over the rounds, and hermes against nginx round
# by round, the only comparison the drift leaves fair. Many short rounds beat a few long ones for
# that: the default is seven rounds of five seconds.
#
#   bench/proxy.sh [duration-seconds] [connections] [rounds]     (defaults: 5, 32, 7)
#   BODY=512 bench/proxy.sh …     POSTs with a 512-byte body (Content-Length) instead of GETs
#   WIRE=1 bench/proxy.sh …       then, per request, each proxy's syscalls (strace -c) and the
#                                 TCP segments on loopback (nstat), under the same load
#   PIN=1 bench/proxy.sh …        the proxies on CPU 1 alone, wrk and the upstream on CPU 0
#   LOG=1 bench/proxy.sh …        nginx and hermes log every request to a file, and hermes runs
#                                 with its defaults (access log on, one proxy thread per CPU)
#                                 instead of --worker-threads 1 --proxy-threads 1
#                                 --access-log off; with
#                                 NGINX_WORKERS=auto nginx runs as Debian ships it too
#   HERMES_EXTRA="--proxy-threads 1" bench/proxy.sh …   hermes with these flags added
#   PROTECT=1 bench/proxy.sh …    also hermes on a route with a rate limit (never reached) to a
#                                 cluster with a circuit breaker and active and passive health
#                                 checks, in the same rounds, and its ratio to plain hermes
#
# Unpinned, the kernel places the four processes on the two CPUs as it likes and, at one
# connection, rarely moves them within a run: whether each of a request's four wakeups crosses
# CPUs (an IPI and an idle exit, tens of microseconds on this VM) is decided by that placement,
# and it moves requests/s by up to 2x between runs and between proxies. PIN=1 gives every proxy
# the same placement, and the one a gateway has in production: a core of its own, so that
# requests/s measures what a request costs the proxy itself.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-5}
CONNECTIONS=${2:-32}
ROUNDS=${3:-7}
# wrk wants at least one connection per thread.
THREADS=$((CONNECTIONS < 2 ? CONNECTIONS : 2))

BENCH=bench/proxy.sh
. bench/lib.sh
bench_need wrk:wrk nginx:nginx-light haproxy:haproxy ss:iproute2 ${WIRE:+strace:strace nstat:iproute2}
# ON_CLIENT_CPU / ON_PROXY_CPU prefix the commands that start wrk and the upstream / the proxies.
ON_CLIENT_CPU=(); ON_PROXY_CPU=(); PLACEMENT="unpinned"
if [ -n "${PIN:-}" ]; then
  [ "$(nproc)" -ge 2 ] || { echo "$BENCH: PIN=1 needs two CPUs, this machine has $(nproc)"; exit 1; }
  ON_CLIENT_CPU=(taskset -c 0); ON_PROXY_CPU=(taskset -c 1)
  PLACEMENT="proxy alone on CPU 1, wrk and upstream on CPU 0"
fi
bench_build
bench_workdir proxy

UP=25801; NGINX=25802; HAPROXY=25803; HERMES_PROXY=25804
bench_ports_free $UP $NGINX $HAPROXY $HERMES_PROXY 25805 25806 25807

WRK_SCRIPT=()
REQUESTS="GET"
if [ -n "${BODY:-}" ]; then
  printf 'wrk.method = "POST"\nwrk.body = string.rep("x", %d)\n' "$BODY" >"$WORK/post.lua"
  WRK_SCRIPT=(-s "$WORK/post.lua")
  REQUESTS="POST with a $BODY-byte body"
fi

bench_nginx_confs $UP $NGINX
HERMES_FLAGS=(--worker-threads 1 --proxy-threads 1 --access-log off)
HERMES_LABEL="hermes (1 proxy thread)"
if [ -n "${LOG:-}" ]; then
  # nginx's default log format (combined), one write a request, as it ships.
  sed -i "s|access_log off; keepalive_requests|access_log $WORK/nginx-access.log; keepalive_requests|" "$WORK/nginx.conf"
  sed -i "s|^worker_processes 1;|worker_processes ${NGINX_WORKERS:-1};|" "$WORK/nginx.conf"
  HERMES_FLAGS=()
  HERMES_LABEL="hermes (defaults, access log)"
fi
# HERMES_EXTRA="--proxy-threads 1" bench/proxy.sh …: flags added to hermes's (to compare a
# setting with the defaults).
if [ -n "${HERMES_EXTRA:-}" ]; then
  read -r -a extra <<<"$HERMES_EXTRA"
  HERMES_FLAGS+=("${extra[@]}")
  HERMES_LABEL="hermes ($HERMES_EXTRA)"
fi
cat >"$WORK/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 8192
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
frontend f
  bind 127.0.0.1:$HAPROXY
  default_backend b
backend b
  http-reuse always
  server s1 127.0.0.1:$UP
CONF

# taskset execs the program, so each PID below is still the server's own.
"${ON_CLIENT_CPU[@]}" nginx -c "$WORK/upstream.conf" -p "$WORK" & UP_PID=$!; PIDS+=($!); disown
"${ON_PROXY_CPU[@]}" nginx -c "$WORK/nginx.conf" -p "$WORK" & NGINX_PID=$!; PIDS+=($!); disown
"${ON_PROXY_CPU[@]}" haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 & HAPROXY_PID=$!; PIDS+=($!); disown
RUST_LOG=warn "${ON_PROXY_CPU[@]}" "$HERMES" node --data-dir "$WORK/hermes" "${HERMES_FLAGS[@]}" \
  --proxy-listen 127.0.0.1:$HERMES_PROXY --admin-listen 127.0.0.1:25805 --peer-listen 127.0.0.1:25806 \
  --etcd-listen 127.0.0.1:25807 >"$WORK/hermes.log" 2>&1 & HERMES_PID=$!; PIDS+=($!); disown

for _ in $(seq 1 100); do curl -sf -o /dev/null http://127.0.0.1:25805/livez && break; sleep 0.1; done
put() { bench_put 25807 "$1" "$2"; }
put /hermes/clusters/up "{\"name\":\"up\",\"nodes\":[{\"host\":\"127.0.0.1\",\"port\":$UP}]}"
put /hermes/domains/all '{"name":"all","hosts":["_"],"routes":[{"name":"all","uri":"/*","clusters":[{"name":"up"}]}]}'
if [ -n "${PROTECT:-}" ]; then
  # Everything protection does on every request, and nothing refused: a limit far above the
  # load, per client address; a breaker; probes every second and passive ejection.
  put /hermes/clusters/guarded "{\"name\":\"guarded\",\"nodes\":[{\"host\":\"127.0.0.1\",\"port\":$UP}],\"circuit_breaker\":{\"failure_threshold\":5},\"health_check\":{\"active\":{\"interval\":1,\"path\":\"/\"},\"passive\":{\"consecutive_failures\":5}}}"
  put /hermes/domains/guarded '{"name":"guarded","hosts":["guarded.bench"],"routes":[{"name":"all","uri":"/*","clusters":[{"name":"guarded"}],"rate_limit":{"mode":"req","rate":100000000,"key":"remote_addr"}}]}'
  for _ in $(seq 1 100); do [ "$(curl -s -H 'Host: guarded.bench' http://127.0.0.1:$HERMES_PROXY/ 2>/dev/null)" = "ok" ] && break; sleep 0.1; done
fi
for port in $UP $NGINX $HAPROXY $HERMES_PROXY; do
  for _ in $(seq 1 100); do [ "$(curl -s http://127.0.0.1:$port/ 2>/dev/null)" = "ok" ] && break; sleep 0.1; done
done

# User and system CPU ticks of processes (space-separated PIDs) and their threads.
ticks() {
  local u=0 s=0 a b p
  for p in $1; do
    read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat")
    u=$((u + a)); s=$((s + b))
  done
  echo "$u $s"
}
load() { # port label pid-under-test [Host]
  local out u0 s0 u1 s1 host=()
  [ -n "${4:-}" ] && host=(-H "Host: $4")
  read -r u0 s0 < <(ticks "$3")
  out=$("${ON_CLIENT_CPU[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "${host[@]}" "${WRK_SCRIPT[@]}" "http://127.0.0.1:$1/")
  read -r u1 s1 < <(ticks "$3")
  local rps p50 p99 non2xx n hz
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $5}')
  n=$(echo "$out" | awk '/requests in/ {print $1}')
  hz=$(getconf CLK_TCK)
  RPS[$2]+="$rps "
  P99[$2]+="$(echo "$p99" | awk '/us$/ {printf "%.3f", $1 / 1000; next} /ms$/ {printf "%.3f", $1 + 0; next} /s$/ {printf "%.3f", $1 * 1000}') "
  printf '%-34s %12s %10s %10s %9s %9s  %s\n' "$2" "$rps" "$p50" "$p99" \
    "$(awk -v t=$((u1 - u0)) -v n="$n" -v hz="$hz" 'BEGIN {printf "%.1fus", t * 1e6 / hz / n}')" \
    "$(awk -v t=$((s1 - s0)) -v n="$n" -v hz="$hz" 'BEGIN {printf "%.1fus", t * 1e6 / hz / n}')" \
    "${non2xx:-0}"
}
# nginx does its work in the worker, the master's only child.
NGINX_WORKER=$(pgrep -P "$NGINX_PID" | tr '\n' ' ')
UP_WORKER=$(pgrep -P "$UP_PID" | head -1)
declare -A RPS P99
UP_LABEL="upstream directly (nginx, 1 worker)"
NGINX_LABEL="nginx 1.22 proxy_pass (${NGINX_WORKERS:-1} worker)"
[ -n "${LOG:-}" ] && NGINX_LABEL="nginx (${NGINX_WORKERS:-1} worker, access log)"
HAPROXY_LABEL="HAProxy 2.6 (1 thread)"
GUARDED_LABEL="hermes, limit+breaker+checks"
proxies=(nginx haproxy hermes)
[ -n "${PROTECT:-}" ] && proxies+=(guarded)
run() {
  case $1 in
    nginx) load $NGINX "$NGINX_LABEL" "$NGINX_WORKER" ;;
    haproxy) load $HAPROXY "$HAPROXY_LABEL" "$HAPROXY_PID" ;;
    hermes) load $HERMES_PROXY "$HERMES_LABEL" "$HERMES_PID" ;;
    guarded) load $HERMES_PROXY "$GUARDED_LABEL" "$HERMES_PID" guarded.bench ;;
  esac
}
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round of $ROUNDS"
  printf '%-34s %12s %10s %10s %9s %9s  %s\n' "target" "requests/s" "p50" "p99" "user/req" "sys/req" "errors"
  load $UP "$UP_LABEL" "$UP_WORKER"
  # Rotate the proxies' order from round to round.
  n=${#proxies[@]}
  for i in $(seq 0 $((n - 1))); do run "${proxies[$(((i + round - 1) % n))]}"; done
  echo
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
echo "median of $ROUNDS rounds"
printf '%-34s %12s %10s\n' "target" "requests/s" "p99 (ms)"
labels=("$UP_LABEL" "$NGINX_LABEL" "$HAPROXY_LABEL" "$HERMES_LABEL")
[ -n "${PROTECT:-}" ] && labels+=("$GUARDED_LABEL")
for label in "${labels[@]}"; do
  printf '%-34s %12.0f %10.2f\n' "$label" "$(echo "${RPS[$label]}" | median)" "$(echo "${P99[$label]}" | median)"
done
# hermes against nginx in each round: the requests/s ratio, and whether hermes's p99 was no worse.
column() { echo "$1" | tr ' ' '\n' | grep -v '^$'; }
paste -d' ' <(column "${RPS[$HERMES_LABEL]}") <(column "${RPS[$NGINX_LABEL]}") \
  <(column "${P99[$HERMES_LABEL]}") <(column "${P99[$NGINX_LABEL]}") | awk '
  { ratio[NR] = $1 / $2; if ($1 >= $2) more++; if ($3 <= $4) lower++; if ($1 >= $2 && $3 <= $4) both++ }
  END {
    printf "hermes / nginx requests/s by round:"
    for (i = 1; i <= NR; i++) printf "%s %.2f", (i > 1 ? "," : ""), ratio[i]
    printf "\nrounds where hermes had at least nginx'"'"'s requests/s: %d of %d; a p99 no higher: %d of %d; both: %d of %d\n", more, NR, lower, NR, both, NR
  }'
if [ -n "${PROTECT:-}" ]; then
  paste -d' ' <(column "${RPS[$GUARDED_LABEL]}") <(column "${RPS[$HERMES_LABEL]}") | awk '
    { r[NR] = $1 / $2; s += r[NR] }
    END {
      printf "hermes with protection / without, requests/s by round:"
      for (i = 1; i <= NR; i++) printf "%s %.3f", (i > 1 ? "," : ""), r[i]
      printf "; mean %.3f\n", s / NR
    }'
fi
echo

# What each request costs on the wire: the syscalls of the process under test and the TCP
# segments of the whole exchange (client, proxy and upstream; all on loopback). strace slows
# the process, so only the counts per request mean anything here, not the rate.
wire() { # port label pid
  local out n
  nstat -n >/dev/null
  timeout 5 strace -c -f -p "$3" -o "$WORK/strace.txt" 2>/dev/null & local tracer=$!
  sleep 0.5
  out=$("${ON_CLIENT_CPU[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d3s "${WRK_SCRIPT[@]}" "http://127.0.0.1:$1/")
  n=$(echo "$out" | awk '/requests in/ {print $1}')
  local segments
  segments=$(nstat 2>/dev/null | awk '$1 == "TcpOutSegs" {print $2}')
  wait "$tracer" 2>/dev/null || true
  printf '%-34s %9s  %s\n' "$2" "$(awk -v s="${segments:-0}" -v n="$n" 'BEGIN {printf "%.2f", s / n}')" \
    "$(awk -v n="$n" '$NF != "total" && $4 ~ /^[0-9]+$/ && $4 / n >= 0.01 {printf "%s %.2f  ", $NF, $4 / n}' "$WORK/strace.txt")"
}
if [ -n "${WIRE:-}" ]; then
  echo "per request: TCP segments on loopback, and the syscalls of the process under test"
  printf '%-34s %9s  %s\n' "target" "segments" "syscalls"
  wire $NGINX "$NGINX_LABEL" "${NGINX_WORKER%% *}"
  wire $HAPROXY "$HAPROXY_LABEL" "$HAPROXY_PID"
  wire $HERMES_PROXY "$HERMES_LABEL" "$HERMES_PID"
  echo
fi
echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, $REQUESTS; $(nproc) cores, $PLACEMENT; hermes $("$HERMES" version | awk '{print $2}')"
