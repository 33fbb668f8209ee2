# Shared by the bench scripts, which source it: the packages they need, the release build, a
# work directory whose processes die with the script, and writes through a node's etcd JSON API.
# BENCH names the calling script in messages.

# bench_need tool:package ...: installs the Debian packages of the tools that are missing. A
# tool that starts with / is a path the package installs.
bench_need() {
  local need=() pair tool
  for pair in "$@"; do
    tool=${pair%%:*}
    if [[ $tool == /* ]]; then
      [ -e "$tool" ] || need+=("${pair#*:}")
    else
      command -v "$tool" >/dev/null || need+=("${pair#*:}")
    fi
  done
  ((${#need[@]})) || return 0
  [ "$(id -u)" = 0 ] || { echo "$BENCH needs: ${need[*]}"; exit 1; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
}

# bench_build: the release node, as HERMES.
bench_build() {
  cargo build --release -p hermes-node >/dev/null 2>&1 || cargo build --release -p hermes-node
  HERMES=$PWD/target/release/hermes
}

# bench_workdir name: WORK, and PIDS, the processes killed on exit with their children. WORK is
# removed then too, unless KEEP is set (to read callgrind's or the servers' files afterwards).
bench_workdir() {
  WORK=$(mktemp -d -p "${BENCH_DIR:-$PWD/target}" "bench-$1.XXXXXX")
  PIDS=()
  trap bench_cleanup EXIT
}
bench_cleanup() {
  bench_stop
  if [ -n "${KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}

# bench_stop: kills the processes in PIDS, with their children, and empties it.
bench_stop() {
  # An nginx master killed alone leaves its worker holding the port (and the script's output
  # pipe); one whose worker is killed first forks a new one. So: stop it, kill its children,
  # then it.
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && { kill -STOP "$p" 2>/dev/null; pkill -9 -P "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; } || true
  done
  PIDS=()
}

# bench_ports_free port ...: stops the script, naming them, when any of its fixed ports is taken
# (by a server left over from a killed run, say), which would otherwise be measured in its place.
bench_ports_free() {
  local taken=() port
  for port in "$@"; do
    ss -Hltn "sport = :$port" | grep -q . && taken+=("$port")
  done
  ((${#taken[@]} == 0)) || { echo "$BENCH: ports in use: ${taken[*]} (ss -ltnp shows by what)"; exit 1; }
}

# bench_put etcd-port key value: one write through the node's etcd JSON API.
bench_put() {
  python3 -c 'import base64,json,sys; print(json.dumps({"key": base64.b64encode(sys.argv[1].encode()).decode(), "value": base64.b64encode(sys.argv[2].encode()).decode()}))' "$2" "$3" \
    | curl -sf -o /dev/null "http://127.0.0.1:$1/v3/kv/put" -d @-
}

# bench_nginx_confs upstream-port proxy-port [extra main directives]: in WORK, upstream.conf (an
# nginx worker answering "ok") and nginx.conf (nginx proxy_pass to it with keep-alive, one
# worker): the peer every proxy benchmark runs beside.
bench_nginx_confs() {
  cat >"$WORK/upstream.conf" <<CONF
worker_processes 1; daemon off; ${3:-} pid $WORK/upstream.pid; error_log $WORK/upstream.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$1; location / { return 200 "ok\n"; } } }
CONF
  cat >"$WORK/nginx.conf" <<CONF
worker_processes 1; daemon off; ${3:-} pid $WORK/nginx.pid; error_log $WORK/nginx.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream up { server 127.0.0.1:$1; keepalive 64; }
  server { listen 127.0.0.1:$2;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
}
