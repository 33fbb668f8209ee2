#!/usr/bin/env bash
# Put throughput and latency through the etcd v3 API, JSON gateway and gRPC: Hermes (1 and 3
# nodes) side by side with Debian's etcd 3.4 (1 and 3 members), same clients (JSON: wrk +
# bench/put.lua, 16 connections; gRPC: tests/benches/grpc_put.rs on the etcd-client crate,
# 16 requests in flight over 2 connections, each on a thread of its own), 64-byte values, unique keys, same machine, same
# disk, both fsyncing every acknowledged write. Clusters of 3 are loaded through their leader
# and, separately, through a follower (which forwards every write). Prints one table.
#
#   bench/store.sh [duration-seconds]     (default 15)
#
# ONLY=json or ONLY=grpc runs one half. For the gRPC half, CLIENT=go uses Go's clientv3 (the
# client of the original Hermes controller; bench/grpc_put_go, built from Debian's
# golang-etcd-server-dev) instead of the etcd-client crate, and KEYS=one-key puts the same key
# every time instead of a new one (a key with a long history). CONNECTIONS (default 16) and
# GRPC_CLIENTS (default 2) set the load; GRPC_RUNTIME=shared runs the etcd-client connections on
# one two-thread runtime instead of a single-threaded one each. IDLE_WATCHERS=<streams>x<per-stream> (e.g. 10x1000)
# holds that many watchers on keys nobody writes open on the loaded member during each run
# (bench/idle_watchers_go, Go's clientv3): what writes pay for watchers they do not concern.
# ROUNDS=<n> runs each layout n times, alternating etcd and Hermes, and prints the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-15}
# Each layout runs this many times, etcd and Hermes taking turns, so that the machine's drift
# over minutes (±10% on a shared VM) falls on both alike; the medians close each half.
ROUNDS=${ROUNDS:-1}
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS must be a positive whole number" >&2; exit 2; }
# Connections of wrk and gRPC puts in flight; gRPC spreads them over GRPC_CLIENTS connections.
CONNECTIONS=${CONNECTIONS:-16}
GRPC_CLIENTS=${GRPC_CLIENTS:-2}
THREADS=2

BENCH=bench/store.sh
. bench/lib.sh
bench_need etcd:etcd-server wrk:wrk
bench_build
cargo bench -p hermes-tests --bench grpc_put --no-run >/dev/null 2>&1 || cargo bench -p hermes-tests --bench grpc_put --no-run
CLIENT=${CLIENT:-rust}
GRPC_RUNTIME=${GRPC_RUNTIME:-threads}
case "$GRPC_RUNTIME" in threads) RUNTIME_ARG=() ;; shared) RUNTIME_ARG=(shared) ;; *) echo "GRPC_RUNTIME must be threads or shared" >&2; exit 2 ;; esac
KEYS=${KEYS:-unique}
case "$KEYS" in unique) KEY_ARG=() ;; one-key) KEY_ARG=(one-key) ;; *) echo "KEYS must be unique or one-key" >&2; exit 2 ;; esac
case "$CLIENT" in
  rust) ;;
  go)
    [ "$GRPC_RUNTIME" = threads ] || { echo "GRPC_RUNTIME is for the etcd-client client" >&2; exit 2; }
    [ "${ONLY:-}" = json ] && { echo "CLIENT=go is for the gRPC half" >&2; exit 2; }
    bench_need go:golang-go /usr/share/gocode/src/go.etcd.io/etcd/clientv3:golang-etcd-server-dev
    GO_CLIENT=$PWD/target/release/grpc_put_go
    GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE=$PWD/target/go-cache go build -o "$GO_CLIENT" ./bench/grpc_put_go
    ;;
  *) echo "CLIENT must be rust or go" >&2; exit 2 ;;
esac
IDLE_WATCHERS=${IDLE_WATCHERS:-}
if [ -n "$IDLE_WATCHERS" ]; then
  [[ "$IDLE_WATCHERS" =~ ^([0-9]+)x([0-9]+)$ ]] \
    || { echo "IDLE_WATCHERS must be <streams>x<per-stream>, e.g. 10x1000" >&2; exit 2; }
  IDLE_STREAMS=${BASH_REMATCH[1]} IDLE_PER=${BASH_REMATCH[2]}
  bench_need go:golang-go /usr/share/gocode/src/go.etcd.io/etcd/clientv3:golang-etcd-server-dev
  IDLE_CLIENT=$PWD/target/release/idle_watchers_go
  GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE=$PWD/target/go-cache go build -o "$IDLE_CLIENT" ./bench/idle_watchers_go
fi
bench_workdir store

wait_http() { # url body
  for _ in $(seq 1 200); do
    curl -sf -o /dev/null "$1" -d "$2" && return 0
    sleep 0.1
  done
  echo "timed out waiting for $1" >&2; exit 1
}

# Between runs: stop the servers, drop their data and flush what is still being written back,
# so that each run starts on an idle disk rather than paying for the previous one's writeback
# (which measured up to 2x on the next run's p99).
stop_all() {
  bench_stop
  sleep 0.5
  rm -rf "$WORK"/etcd-* "$WORK"/hermes-*
  sync
}

start_etcd() { # members
  local n=$1 cluster="" i
  for i in $(seq 1 "$n"); do cluster+="e$i=http://127.0.0.1:$((23800 + i)),"; done
  cluster=${cluster%,}
  for i in $(seq 1 "$n"); do
    etcd --name "e$i" --data-dir "$WORK/etcd-$n-$i" \
      --listen-client-urls "http://127.0.0.1:$((23700 + i))" --advertise-client-urls "http://127.0.0.1:$((23700 + i))" \
      --listen-peer-urls "http://127.0.0.1:$((23800 + i))" --initial-advertise-peer-urls "http://127.0.0.1:$((23800 + i))" \
      --initial-cluster "$cluster" --initial-cluster-state new >"$WORK/etcd-$n-$i.log" 2>&1 &
    PIDS+=($!)
    disown
  done
  wait_http "http://127.0.0.1:23701/v3/kv/put" '{"key":"d2FybQ==","value":"eA=="}'
}

start_hermes() { # nodes
  local n=$1 cluster="" i
  for i in $(seq 1 "$n"); do cluster+="$i=http://127.0.0.1:$((24800 + i)),"; done
  cluster=${cluster%,}
  for i in $(seq 1 "$n"); do
    local extra=()
    [ "$n" -gt 1 ] && extra=(--initial-cluster "$cluster")
    RUST_LOG=warn "$HERMES" node --id "$i" --data-dir "$WORK/hermes-$n-$i" \
      --peer-listen "127.0.0.1:$((24800 + i))" --admin-listen "127.0.0.1:$((24900 + i))" \
      --etcd-listen "127.0.0.1:$((24700 + i))" --proxy-listen 127.0.0.1:0 "${extra[@]}" \
      >"$WORK/hermes-$n-$i.log" 2>&1 &
    PIDS+=($!)
    disown
  done
  for i in $(seq 1 "$n"); do
    for _ in $(seq 1 200); do
      curl -sf -o /dev/null "http://127.0.0.1:$((24900 + i))/readyz" && break
      sleep 0.1
    done
  done
  wait_http "http://127.0.0.1:24701/v3/kv/put" '{"key":"d2FybQ==","value":"eA=="}'
}

# The client URL of the leader (role=leader) or of a follower (role=follower) among members
# 1..3 whose client ports are base+1..base+3, by each member's /v3/maintenance/status.
member_url() { # base role
  local i body leader me
  for i in 1 2 3; do
    body=$(curl -sf "http://127.0.0.1:$(($1 + i))/v3/maintenance/status" -d '{}') || continue
    leader=$(echo "$body" | sed -n 's/.*"leader":"\{0,1\}\([0-9]*\).*/\1/p')
    me=$(echo "$body" | sed -n 's/.*"member_id":"\{0,1\}\([0-9]*\).*/\1/p')
    if { [ "$2" = leader ] && [ "$leader" = "$me" ]; } || { [ "$2" = follower ] && [ "$leader" != "$me" ]; }; then
      echo "http://127.0.0.1:$(($1 + i))/v3/kv/put"
      return 0
    fi
  done
  echo "no $2 found among the members on ports $(($1 + 1))-$(($1 + 3))" >&2
  exit 1
}

# Runs wrk against a put URL; prints "requests/s p50 p99 errors".
# Opens the idle watchers (if any) on a member's host:port; returns once it has created them.
idle_start() {
  [ -n "$IDLE_WATCHERS" ] || return 0
  "$IDLE_CLIENT" "$1" "$IDLE_STREAMS" "$IDLE_PER" >"$WORK/idle.log" 2>&1 &
  IDLE_PID=$!
  until grep -q '^watching' "$WORK/idle.log"; do
    kill -0 "$IDLE_PID" 2>/dev/null || { echo "idle watchers failed: $(cat "$WORK/idle.log")" >&2; exit 1; }
    sleep 0.1
  done
}
idle_stop() {
  [ -n "${IDLE_PID:-}" ] || return 0
  kill "$IDLE_PID" 2>/dev/null || true
  wait "$IDLE_PID" 2>/dev/null || true
  IDLE_PID=
}

load() {
  local out
  idle_start "$(hostport "$1")"
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s bench/put.lua "$1")
  echo "$out" >>"$WORK/wrk.log"
  local rps p50 p99 errors
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  errors=$(echo "$out" | awk '/Non-2xx/ {print $5} /Socket errors/ {print "socket:" $0}' | tr '\n' ' ')
  idle_stop
  echo "$rps $p50 $p99 ${errors:-0}"
}

hostport() { echo "$1" | sed -E 's#^http://##; s#/.*##'; }

# Runs the gRPC client against a member's host:port; prints "requests/s p50 p99 errors".
load_grpc() {
  local out
  idle_start "$1"
  if [ "$CLIENT" = go ]; then
    out=$("$GO_CLIENT" "$1" "$DURATION" "$CONNECTIONS" "$GRPC_CLIENTS" "${KEY_ARG[@]}" 2>>"$WORK/grpc.log")
  else
    out=$(cargo bench -q -p hermes-tests --bench grpc_put -- "$1" "$DURATION" "$CONNECTIONS" "$GRPC_CLIENTS" "${KEY_ARG[@]}" "${RUNTIME_ARG[@]}" 2>>"$WORK/grpc.log")
  fi
  idle_stop
  echo "$out" >>"$WORK/grpc.log"
  echo "$out"
}

header() { printf '%-22s %12s %10s %10s  %s\n' "server" "puts/s" "p50" "p99" "errors"; }
# A load that failed (in its command substitution, whose exit stops only itself) left no
# figures: stop here, with what the clients said, rather than on an unset variable.
row() {
  if [ $# -lt 4 ]; then
    echo "$1: no figures; the load failed" >&2
    tail -n 5 "$WORK"/grpc.log "$WORK"/wrk.log 2>/dev/null >&2 || true
    exit 1
  fi
  printf '%-22s %12s %10s %10s  %s\n' "$1" $2 $3 $4 "${*:5}"
  RATES[$1]="${RATES[$1]:-} $2"
}
# One round of a layout: etcd then Hermes, or Hermes first on even rounds, so that a drift
# within a round falls on each alike. Each argument is a command that prints one row.
pair() { # round etcd-run hermes-run
  if (( $1 % 2 )); then $2; $3; else $3; $2; fi
}
# puts/s of every run of each row, for the medians of `summary`.
declare -A RATES
median() { tr ' ' '\n' | grep . | sort -n | awk '{v[NR]=$1} END {print int((NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
# With ROUNDS > 1: each layout's median puts/s over the rounds, and Hermes over etcd.
summary() { # "etcd row|hermes row"...
  [ "$ROUNDS" -gt 1 ] || return 0
  echo "median of $ROUNDS rounds (etcd and Hermes alternating):"
  for p in "$@"; do
    local e h
    e=$(echo "${RATES["etcd 3.4, ${p%%|*}"]}" | median)
    h=$(echo "${RATES["hermes, ${p##*|}"]}" | median)
    printf '  %-18s etcd %7s  hermes %7s  %s\n' "${p##*|}" "$e" "$h" \
      "$(awk -v h="$h" -v e="$e" 'BEGIN {printf "%.2fx", h / e}')"
  done
}

if [ "${ONLY:-json}" = json ] || [ -z "${ONLY:-}" ]; then
echo "JSON gateway:"
header
json_etcd_1() { start_etcd 1; row "etcd 3.4, 1 member" $(load http://127.0.0.1:23701/v3/kv/put); stop_all; }
json_hermes_1() { start_hermes 1; row "hermes, 1 node" $(load http://127.0.0.1:24701/v3/kv/put); stop_all; }
json_etcd_3() { start_etcd 3; row "etcd 3.4, 3, $via" $(load "$(member_url 23700 "$via")"); stop_all; }
json_hermes_3() { start_hermes 3; row "hermes, 3, $via" $(load "$(member_url 24700 "$via")"); stop_all; }
for r in $(seq "$ROUNDS"); do pair "$r" json_etcd_1 json_hermes_1; done
for via in leader follower; do
  for r in $(seq "$ROUNDS"); do pair "$r" json_etcd_3 json_hermes_3; done
done
summary "1 member|1 node" "3, leader|3, leader" "3, follower|3, follower"
RATES=()
fi
if [ "${ONLY:-grpc}" = grpc ] || [ -z "${ONLY:-}" ]; then
echo
echo "gRPC:"
header
grpc_etcd_1() { start_etcd 1; row "etcd 3.4, 1 member" $(load_grpc 127.0.0.1:23701); stop_all; }
grpc_hermes_1() { start_hermes 1; row "hermes, 1 node" $(load_grpc 127.0.0.1:24701); stop_all; }
grpc_etcd_3() { start_etcd 3; row "etcd 3.4, 3, $via" $(load_grpc "$(hostport "$(member_url 23700 "$via")")"); stop_all; }
grpc_hermes_3() { start_hermes 3; row "hermes, 3, $via" $(load_grpc "$(hostport "$(member_url 24700 "$via")")"); stop_all; }
for r in $(seq "$ROUNDS"); do pair "$r" grpc_etcd_1 grpc_hermes_1; done
for via in leader follower; do
  for r in $(seq "$ROUNDS"); do pair "$r" grpc_etcd_3 grpc_hermes_3; done
done
summary "1 member|1 node" "3, leader|3, leader" "3, follower|3, follower"
fi
echo
case "$CLIENT" in go) client="bench/grpc_put_go (Go clientv3)" ;; *) client="tests/benches/grpc_put.rs (etcd-client, runtime: $GRPC_RUNTIME)" ;; esac
echo "gRPC: $client, $CONNECTIONS in flight over $GRPC_CLIENTS clients, ${DURATION}s, keys: $KEYS${IDLE_WATCHERS:+, idle watchers: $IDLE_WATCHERS}, rounds: $ROUNDS"
echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency -s bench/put.lua; 64-byte values; $(nproc) cores; $(etcd --version | head -1); hermes $("$HERMES" version | awk '{print $2}')"
