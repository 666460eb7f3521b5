# tests/proxy/lib.sh - shared by the capture proxy's shell tests: a work
# directory, a cluster and proxies cleaned up on exit, and `scry capture
# proxy` started in the background. Source it after `set -euo pipefail`;
# it sets $work and $port (a fresh cluster; PGCONF: extra postgresql.conf).
: "${SCRY_CLI:?}" "${SCRY_SOURCE_DIR:?}"
work=$(mktemp -d /tmp/scry-pxsh.XXXXXX); chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  bash "$SCRY_SOURCE_DIR/tests/harness/pgcluster.sh" stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
# KEEP=1 (debugging): keep the work directory and leave the cluster running.
[ -n "${KEEP:-}" ] && trap "" EXIT
fail() { echo "FAIL: $*" >&2; for f in "$work"/*.err; do [ -f "$f" ] && { echo "--- $f" >&2; cat "$f" >&2; }; done; exit 1; }
. "$SCRY_SOURCE_DIR/tests/harness/proxy.sh" # proxy_port
start_cluster() { # [CONF_FILE]: sets $port
  port=$(bash "$SCRY_SOURCE_DIR/tests/harness/pgcluster.sh" start "$work/pg" "$@")
}

# start_proxy NAME ARGS...: `scry capture proxy --listen 127.0.0.1:0 --store
# $work/NAME.db --json ARGS...`, stdout in NAME.out, stderr in NAME.err;
# waits for its port: sets $pport and $ppid.
start_proxy() {
  local name=$1; shift
  "$SCRY_CLI" capture proxy --listen 127.0.0.1:0 --store "$work/$name.db" --json "$@" \
    >"$work/$name.out" 2>"$work/$name.err" &
  ppid=$!
  pids+=($ppid)
  pport=$(proxy_port "$work/$name.err" "$ppid")
  [ -n "$pport" ] || fail "proxy $name announced no port (exited: $(kill -0 "$ppid" 2>/dev/null && echo no || echo yes))"
}
# wait_proxy: waits for $ppid; its exit status in $prc.
wait_proxy() {
  set +e; wait "$ppid"; prc=$?; set -e
}
# stop_proxy: SIGINT to $ppid, then wait_proxy.
stop_proxy() {
  kill -INT "$ppid"
  wait_proxy
}
