# tests/faults/lib.sh - shared by the fault-injection tests (sourced).
# A throwaway cluster, a capture proxy, and the store checks every fault
# test ends with.
set -euo pipefail
: "${SCRY_CLI:?}" "${SCRY_SOURCE_DIR:?}"
work=$(mktemp -d /tmp/scry-fault.XXXXXX); chmod 755 "$work"
pids=()
proxy_pid=
cleanup() {
  for p in "${pids[@]}" $proxy_pid; do kill -9 "$p" 2>/dev/null || true; done
  bash "$SCRY_SOURCE_DIR/tests/harness/pgcluster.sh" stop "$work/pg" >/dev/null 2>&1 || true
  if [ -n "${KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
. "$SCRY_SOURCE_DIR/tests/harness/proxy.sh" # proxy_port

start_cluster() { # [conf lines...]
  printf '%s\n' "$@" >"$work/pg.conf"
  port=$(bash "$SCRY_SOURCE_DIR/tests/harness/pgcluster.sh" start "$work/pg" "$work/pg.conf")
  conn="host=127.0.0.1 port=$port user=postgres dbname=postgres"
}

# start_proxy STORE [extra args...]: sets proxy_pid and pport. With
# PROXY_ULIMIT set (e.g. "-f 200"), the proxy runs under that ulimit.
start_proxy() {
  local store=$1; shift
  : >"$work/proxy.err"
  (
    if [ -n "${PROXY_ULIMIT:-}" ]; then ulimit $PROXY_ULIMIT; fi
    exec "$SCRY_CLI" capture proxy --listen 127.0.0.1:0 --upstream "127.0.0.1:$port" --store "$store" --json "$@" \
      >"$work/proxy.out" 2>"$work/proxy.err"
  ) &
  proxy_pid=$!
  pport=$(proxy_port "$work/proxy.err" "$proxy_pid")
  [ -n "$pport" ] || fail "no port announced: $(cat "$work/proxy.err")"
}

# wait_for DESCRIPTION TIMEOUT_S COMMAND...: polls until COMMAND succeeds.
wait_for() {
  local what=$1 t=$2; shift 2
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || fail "timed out waiting for $what"
    sleep 0.1
  done
}

# The store opens, SQLite finds it intact, and every count agrees with the
# rows: patterns.count = its events, sessions.events = its last seq, no
# event without its statement/session, texts rebuild (workload info/replay).
check_store() { # STORE
  local s=$1
  [ "$(sqlite3 "$s" 'PRAGMA integrity_check')" = ok ] || fail "integrity_check: $(sqlite3 "$s" 'PRAGMA integrity_check' | head -3)"
  [ "$(sqlite3 "$s" 'PRAGMA foreign_key_check' | wc -l)" = 0 ] || fail "foreign keys"
  local bad
  bad=$(sqlite3 "$s" "SELECT count(*) FROM patterns p WHERE count <>
          (SELECT count(*) FROM events e JOIN statements st ON st.id = e.statement WHERE st.pattern = p.id)")
  [ "$bad" = 0 ] || fail "$bad patterns whose count differs from their events"
  bad=$(sqlite3 "$s" "SELECT count(*) FROM sessions s WHERE events <> (SELECT coalesce(max(seq), 0) FROM events WHERE session = s.id)
                      OR events <> (SELECT count(*) FROM events WHERE session = s.id)")
  [ "$bad" = 0 ] || fail "$bad sessions whose event count differs from their events"
  bad=$(sqlite3 "$s" "SELECT count(*) FROM events e WHERE NOT EXISTS (SELECT 1 FROM statements WHERE id = e.statement)
                      OR NOT EXISTS (SELECT 1 FROM sessions WHERE id = e.session)")
  [ "$bad" = 0 ] || fail "$bad events without their statement or session"
  "$SCRY_CLI" workload info --store "$s" --json >"$work/info.json" || fail "workload info failed on the store"
}

# Runs pg_ctl on the test cluster as the server's user.
pg_ctl_cluster() { # ARGS...
  local bin d
  for d in "${SCRY_PG_BINDIR:-}" /usr/lib/postgresql/*/bin; do
    if [ -n "$d" ] && [ -x "$d/pg_ctl" ]; then bin=$d; break; fi
  done
  if [ "$(id -u)" = 0 ]; then
    runuser -u "${SCRY_PG_USER:-nobody}" -- "$bin/pg_ctl" -D "$work/pg/data" "$@"
  else
    "$bin/pg_ctl" -D "$work/pg/data" "$@"
  fi
}
