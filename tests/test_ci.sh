#!/usr/bin/env bash
# End-to-end test of `scry ci test-migration`: a workload captured through the
# real capture proxy, then four migrations gated with the right exit code:
#   (a) safe -> 0, (b) drops an index a hot query uses -> 5,
#   (c) the command fails -> 4, (d) a type change breaks a query -> 5 (new-error);
# plus usage errors, a busy target, Ctrl-C, and never a leftover clone.
set -uo pipefail

. "${SCRY_SOURCE_DIR:?SCRY_SOURCE_DIR is not set}/tests/harness/scenario.sh" # ok, bad, expect_exit, cleanup
scenario_begin ci

scenario_cluster
psql -XqAt -d postgres -c "CREATE DATABASE app" >/dev/null
psql -Xq -d app >/dev/null <<'SQL'
CREATE TABLE items (id serial PRIMARY KEY, category text NOT NULL, name text NOT NULL, price int NOT NULL);
INSERT INTO items (category, name, price)
  SELECT 'cat' || (g % 500), 'item ' || g, 100 + g % 900 FROM generate_series(1, 50000) g;
CREATE INDEX idx_items_category ON items(category);
VACUUM ANALYZE items;
SQL
TARGET="host=127.0.0.1 port=$PORT user=postgres dbname=app"
STORE="$WORK/scry.db"

# --- capture through the proxy --------------------------------------------
"$SCRY" capture proxy --listen 127.0.0.1:0 --upstream "127.0.0.1:$PORT" --store "$STORE" \
  2>"$WORK/proxy.err" &
PROXY_PID=$!
PPORT=$(proxy_port "$WORK/proxy.err" "$PROXY_PID")
[ -n "$PPORT" ] || { cat "$WORK/proxy.err"; echo "the proxy did not start"; exit 1; }
{
  for i in $(seq 1 30); do
    echo "SELECT id, name, price FROM items WHERE category = 'cat$((i * 7 % 500))';"
    echo "SELECT sum(price) FROM items WHERE category = 'cat$((i * 13 % 500))';"
    echo "SELECT name FROM items WHERE id = $((i * 997 % 50000 + 1));"
  done
} >"$WORK/workload.sql"
for s in 1 2; do
  psql -Xq -h 127.0.0.1 -p "$PPORT" -d app -f "$WORK/workload.sql" >/dev/null || bad "workload through the proxy"
done
kill -INT "$PROXY_PID"
wait "$PROXY_PID"
PROXY_PID=
events=$("$SCRY" workload info --store "$STORE" --json | sed -n 's/.*"events":\([0-9]*\).*/\1/p')
[ "${events:-0}" -ge 180 ] && ok "captured $events events through the proxy" || bad "captured ${events:-0} events"

leftovers() { psql -XqAt -d postgres -c "SELECT count(*) FROM pg_database WHERE datname LIKE '%_scry_%'"; }
ci() { "$SCRY" ci test-migration "$TARGET" --store "$STORE" "$@"; }

# --- usage -----------------------------------------------------------------
ci >/dev/null 2>&1; expect_exit 2 $? "no migration command is a usage error"
"$SCRY" ci test-migration --store "$STORE" >/dev/null 2>&1; expect_exit 2 $? "no target is a usage error"
"$SCRY" ci test-migration --help | grep "Exit codes" >/dev/null && ok "--help" || bad "--help"

# --- (a) a safe migration ----------------------------------------------------
ci --format json --output "$WORK/a.json" -- psql -Xq -c "ALTER TABLE items ADD COLUMN note text" \
  >"$WORK/a.out" 2>"$WORK/a.err"
rc=$?; expect_exit 0 $rc "(a) safe migration"
[ $rc = 0 ] || cat "$WORK/a.err" "$WORK/a.json" 2>/dev/null
grep -q '"patterns"' "$WORK/a.json" && ok "(a) JSON report written to --output" || bad "(a) no JSON report"
[ "$(psql -XqAt -d app -c "SELECT count(*) FROM information_schema.columns WHERE column_name='note'")" = 0 ] \
  && ok "(a) the target is unchanged" || bad "(a) the migration touched the target"
[ "$(leftovers)" = 0 ] && ok "(a) no clone left" || bad "(a) clones left behind"

# --- (b) dropping the index a hot query uses ------------------------------------
ci -- psql -Xq -c "DROP INDEX idx_items_category" >"$WORK/b.out" 2>"$WORK/b.err"
rc=$?; expect_exit 5 $rc "(b) dropped index"
grep -q "regressed" "$WORK/b.out" && ok "(b) the report names the regression" || { bad "(b) no regression in the report"; cat "$WORK/b.out" "$WORK/b.err"; }
grep -q "Seq Scan" "$WORK/b.out" && ok "(b) the plan change is shown" || bad "(b) no plan change in the report"
[ "$(psql -XqAt -d app -c "SELECT count(*) FROM pg_indexes WHERE indexname='idx_items_category'")" = 1 ] \
  && ok "(b) the target keeps its index" || bad "(b) the target lost its index"
[ "$(leftovers)" = 0 ] && ok "(b) no clone left" || bad "(b) clones left behind"

# --- (c) a migration command that fails -------------------------------------------
ci -- sh -c 'echo "alembic: cannot find revision abc123" >&2; exit 3' >"$WORK/c.out" 2>"$WORK/c.err"
rc=$?; expect_exit 4 $rc "(c) failing migration command"
grep -q "cannot find revision abc123" "$WORK/c.err" && ok "(c) its output is shown" || bad "(c) its output is missing"
[ "$(leftovers)" = 0 ] && ok "(c) no clone left" || bad "(c) clones left behind"

# --- (d) a type change that makes a captured query fail ---------------------------
ci --format json -- psql -Xq -v ON_ERROR_STOP=1 \
  -c "ALTER TABLE items ALTER COLUMN price TYPE text USING price::text" >"$WORK/d.json" 2>"$WORK/d.err"
rc=$?; expect_exit 5 $rc "(d) type change"
grep -q '"new-error"' "$WORK/d.json" && ok "(d) the failing pattern is a new-error" || { bad "(d) no new-error"; cat "$WORK/d.json" "$WORK/d.err"; }
[ "$(leftovers)" = 0 ] && ok "(d) no clone left" || bad "(d) clones left behind"

# --- a fix that clears (b): exit 0, both verdicts in the report ---------------------
ci --format json --fix "psql -Xq -c 'CREATE INDEX ON items(category)'" -- psql -Xq -c "DROP INDEX idx_items_category" \
  >"$WORK/f.json" 2>"$WORK/f.err"
rc=$?; expect_exit 0 $rc "--fix that restores the index"
grep -q '"after_fix"' "$WORK/f.json" && ok "--fix: both verdicts in the JSON" || bad "--fix: no after_fix in the JSON"

# --- a busy target: cloning is impossible, and the message says what to do -----------
psql -Xq -d app -c "SELECT pg_sleep(60)" >/dev/null 2>&1 &
SLEEPER=$!
for _ in $(seq 1 50); do
  [ "$(psql -XqAt -d postgres -c "SELECT count(*) FROM pg_stat_activity WHERE datname='app'")" -ge 1 ] && break
  sleep 0.1
done
ci -- true >/dev/null 2>"$WORK/busy.err"
rc=$?; expect_exit 1 $rc "busy target"
grep -q -- "--sequential" "$WORK/busy.err" && ok "busy target: suggests --sequential" || { bad "busy target message"; cat "$WORK/busy.err"; }
kill "$SLEEPER" 2>/dev/null; wait "$SLEEPER" 2>/dev/null
psql -XqAt -d postgres -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname='app'" >/dev/null
[ "$(leftovers)" = 0 ] && ok "busy target: no clone left" || bad "busy target: clones left behind"

# --- Ctrl-C during the migration: exit 1, clones dropped -----------------------------------
# Job control on: a background job then keeps SIGINT (bash ignores it otherwise).
set -m
ci -- sleep 30 >/dev/null 2>"$WORK/int.err" &
CI_PID=$!
set +m
for _ in $(seq 1 100); do
  [ "$(leftovers)" = 2 ] && break
  sleep 0.1
done
sleep 0.3
kill -INT -- "-$CI_PID"  # the job's process group, as Ctrl-C does
wait "$CI_PID"; rc=$?
expect_exit 1 $rc "Ctrl-C"
grep -q "interrupted" "$WORK/int.err" && ok "Ctrl-C: says it was interrupted" || bad "Ctrl-C message"
[ "$(leftovers)" = 0 ] && ok "Ctrl-C: no clone left" || bad "Ctrl-C: clones left behind"

# --- sequential mode on a throwaway copy ---------------------------------------------
psql -XqAt -d postgres -c "CREATE DATABASE app_copy TEMPLATE app" >/dev/null
"$SCRY" ci test-migration "host=127.0.0.1 port=$PORT user=postgres dbname=app_copy" --store "$STORE" \
  --sequential -- psql -Xq -c "DROP INDEX idx_items_category" >"$WORK/s.out" 2>"$WORK/s.err"
rc=$?; expect_exit 5 $rc "--sequential with a dropped index"
grep -q "WARNING" "$WORK/s.err" && ok "--sequential warns" || bad "--sequential did not warn"

scenario_end
