#!/usr/bin/env bash
# Compat mode: how long a change takes from the API's answer to its key in etcd, through the
# controller role, on Debian's PostgreSQL 15 and etcd 3.4 (tests/benches/compat_sync.rs is the
# client: create, update, rollback and delete of each of KEYS domains one after the other, then
# a bulk replace of KEYS domains; each sample is API answer -> etcd watch event). Two layouts,
# both with the defaults a user gets:
#   one node:  --roles server,controller (the feed wakes the controller in-process)
#   two nodes: server on one node, controller on another (woken by PostgreSQL's NOTIFY)
# The original controller polls the server every 5 s (its default poll_interval), so its delay
# is 0-5 s by design; it is not run here (Go modules cannot be fetched on this machine).
#
#   bench/compat.sh [keys]     (default 100)
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=${1:-100}

BENCH=bench/compat.sh
. bench/lib.sh
bench_need etcd:etcd-server curl:curl
compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || bench_need pg_ctlcluster:postgresql
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
bench_build
cargo bench -p hermes-tests --bench compat_sync --no-run >/dev/null 2>&1 || cargo bench -p hermes-tests --bench compat_sync --no-run
bench_workdir compat
bench_ports_free 25432 23791 23891 25901 25902

# PostgreSQL refuses to run as root: as root, its programs run as the postgres user.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
chmod 755 "$WORK"
mkdir "$WORK/pg"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$WORK/pg"

start_stores() {
  as_pg "$PGBIN/initdb" -D "$WORK/pg" -U hermes -A trust -E UTF8 --no-locale >/dev/null
  as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg/server.log" -w \
    -o "-p 25432 -c listen_addresses=127.0.0.1 -k $WORK/pg" start >/dev/null
  etcd --name e1 --data-dir "$WORK/etcd" \
    --listen-client-urls http://127.0.0.1:23791 --advertise-client-urls http://127.0.0.1:23791 \
    --listen-peer-urls http://127.0.0.1:23891 --initial-advertise-peer-urls http://127.0.0.1:23891 \
    --initial-cluster e1=http://127.0.0.1:23891 >"$WORK/etcd.log" 2>&1 &
  PIDS+=($!)
  disown
  for _ in $(seq 1 200); do
    curl -sf -o /dev/null http://127.0.0.1:23791/health && break
    sleep 0.1
  done
}

stop_stores() {
  bench_stop
  as_pg "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$WORK"/pg/* "$WORK"/etcd "$WORK"/node-*
  sync
}
trap 'stop_stores; bench_cleanup' EXIT

DSN=postgres://hermes@127.0.0.1:25432/postgres
node() { # id admin-port roles
  RUST_LOG=warn "$HERMES" node --id "$1" --data-dir "$WORK/node-$1" --admin-listen "127.0.0.1:$2" \
    --roles "$3" --control-store "$DSN" --config-store etcd://127.0.0.1:23791 \
    --initial-admin off >"$WORK/node-$1.log" 2>&1 &
  PIDS+=($!)
  disown
  for _ in $(seq 1 200); do
    curl -sf -o /dev/null "http://127.0.0.1:$2/readyz" && return 0
    sleep 0.1
  done
  echo "node $1 did not become ready: $(tail -5 "$WORK/node-$1.log")" >&2; exit 1
}

measure() { # title
  echo "$1:"
  cargo bench -q -p hermes-tests --bench compat_sync -- http://127.0.0.1:25901 127.0.0.1:23791 "$KEYS" 2>>"$WORK/bench.log"
}

start_stores
node 1 25901 server,controller
measure "one node (server and controller), milliseconds from the API's answer to etcd"
stop_stores

start_stores
node 1 25901 server
node 2 25902 controller
echo
measure "two nodes (server | controller), milliseconds from the API's answer to etcd"
