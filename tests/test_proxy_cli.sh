#!/usr/bin/env bash
# `scry capture proxy` end to end: listen on an ephemeral port, run psql
# through it, stop with SIGINT, check the summary and the store.
set -euo pipefail
: "${SCRY_CLI:?}" "${SCRY_SOURCE_DIR:?}"
work=$(mktemp -d /tmp/scry-pxcli.XXXXXX); chmod 755 "$work"
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  bash "$SCRY_SOURCE_DIR/tests/harness/pgcluster.sh" stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

port=$(bash "$SCRY_SOURCE_DIR/tests/harness/pgcluster.sh" start "$work/pg")

# Usage errors exit 2 and say what is missing.
set +e
"$SCRY_CLI" capture proxy --upstream 127.0.0.1:1 2>"$work/usage"; rc=$?
set -e
[ "$rc" = 2 ] || fail "missing --listen should exit 2, got $rc"
grep -q -- "--listen" "$work/usage" || fail "usage error does not name --listen"
"$SCRY_CLI" capture proxy --help | grep -q "SSLRequest" || fail "--help does not document TLS"

"$SCRY_CLI" capture proxy --listen 127.0.0.1:0 --upstream "127.0.0.1:$port" \
  --store "$work/s.db" --json >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 1 100); do
  grep -q "capturing on" "$work/err" 2>/dev/null && break
  sleep 0.1
done
pport=$(sed -n 's/.*capturing on 127.0.0.1:\([0-9]*\) .*/\1/p' "$work/err")
[ -n "$pport" ] && [ "$pport" != 0 ] || fail "no port announced: $(cat "$work/err")"

psql -X -q "host=127.0.0.1 port=$pport user=postgres dbname=postgres application_name=cli" \
  -c "CREATE TABLE t (a int)" -c "INSERT INTO t VALUES (1), (2)" -c "SELECT * FROM t" >/dev/null
set +e
psql -X -q "host=127.0.0.1 port=$pport user=postgres dbname=postgres" -c "SELECT * FROM missing" 2>/dev/null
set -e

kill -INT "$pid"
wait "$pid" || fail "scry capture proxy exited with $?"
pid=
grep -q '"events_recorded":4' "$work/out" || fail "summary: $(cat "$work/out")"
grep -q '"events_dropped":0' "$work/out" || fail "summary: $(cat "$work/out")"
"$SCRY_CLI" workload info --store "$work/s.db" --json | grep -q '"events":4' || fail "store does not hold 4 events"
"$SCRY_CLI" workload patterns --store "$work/s.db" | grep -q "missing" || fail "the failing statement is not recorded"

# Cannot listen: exit 1 with the address in the message.
set +e
"$SCRY_CLI" capture proxy --listen "127.0.0.1:$port" --upstream "127.0.0.1:$port" --store "$work/s2.db" 2>"$work/err2"; rc=$?
set -e
[ "$rc" = 1 ] || fail "listening on a used port should exit 1, got $rc"
grep -q "127.0.0.1:$port" "$work/err2" || fail "error does not name the address: $(cat "$work/err2")"
echo ok
