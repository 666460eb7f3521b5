#!/usr/bin/env bash
# End-to-end test of what keeps scry usable at scale (issue 14):
#   - the replay budget: a stratified sample, reported in the JSON;
#   - --migration-timeout: a command that hangs is killed, with a clear error;
#   - kill -9 of scry during ci: the migration command dies with it, and both
#     `scry shadow gc` and the next run drop the clones it left;
#   - --clone-command and --baseline/--candidate against a second, real
#     cluster made with pg_basebackup of the target (a physical copy on
#     another port);
#   - scry workload compact, scry runs list|delete|prune.
set -uo pipefail

. "${SCRY_SOURCE_DIR:?SCRY_SOURCE_DIR is not set}/tests/harness/scenario.sh" # ok, bad, expect_exit, cleanup
scenario_begin scale
# Command clones register in $TMPDIR/scry-clones-UID, which every scry run of
# this user collects (gc, and each ci run): a private one keeps test runs that
# happen at the same time out of each other's registry.
export TMPDIR=$WORK/tmp; mkdir -p "$TMPDIR"; chmod 1777 "$TMPDIR"
CI_PID=
cleanup() { # also a ci run killed midway and the pg_basebackup copy
  [ -n "$CI_PID" ] && kill -9 "$CI_PID" 2>/dev/null
  bash "$SRC/tests/harness/pgcluster.sh" stop "$WORK/copy" >/dev/null 2>&1
  scenario_cleanup
}
trap cleanup EXIT
# await CONDITION-COMMAND...: up to 90 s (cloning on a loaded machine is slow)
await() { for _ in $(seq 1 900); do "$@" && return 0; sleep 0.1; done; return 1; }
# A no-op migration is judged safe (0), but on a loaded machine noise may still
# flag a pattern (5): these checks are about sampling and clean-up, not the verdict.
expect_judged() { # actual what
  if [ "$1" = 0 ] || [ "$1" = 5 ]; then ok "$2 (exit $1)"; else bad "$2: exit $1, expected 0 or 5"; fi
}
json() { /usr/bin/python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

scenario_cluster
psql -XqAt -d postgres -c "CREATE DATABASE app" >/dev/null
psql -Xq -d app >/dev/null <<'SQL'
CREATE TABLE items (id serial PRIMARY KEY, category text NOT NULL, price int NOT NULL);
INSERT INTO items (category, price) SELECT 'cat' || (g % 100), g % 900 FROM generate_series(1, 5000) g;
CREATE INDEX ON items(category);
VACUUM ANALYZE items;
SQL
TARGET="host=127.0.0.1 port=$PORT user=postgres dbname=app"
STORE="$WORK/scry.db"

# --- capture: one frequent pattern, a rarer one, a rare one, transactions ----------
"$SCRY" capture proxy --listen 127.0.0.1:0 --upstream "127.0.0.1:$PORT" --store "$STORE" 2>"$WORK/proxy.err" &
PROXY_PID=$!
PPORT=
for _ in $(seq 1 50); do
  PPORT=$(sed -n 's/.*capturing on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/proxy.err" | head -1)
  [ -n "$PPORT" ] && break
  sleep 0.1
done
[ -n "$PPORT" ] || { cat "$WORK/proxy.err"; echo "the proxy did not start"; exit 1; }
{
  for i in $(seq 1 600); do echo "SELECT price FROM items WHERE id = $i;"; done
  for i in $(seq 1 40); do echo "SELECT count(*) FROM items WHERE category = 'cat$i';"; done
  for i in 1 2 3; do echo "SELECT max(price) FROM items WHERE price < $i;"; done
  for i in $(seq 1 10); do echo "BEGIN; UPDATE items SET price = price + 1 WHERE id = $i; COMMIT;"; done
} >"$WORK/workload.sql"
psql -Xq -h 127.0.0.1 -p "$PPORT" -d app -f "$WORK/workload.sql" >/dev/null || bad "workload through the proxy"
kill -INT "$PROXY_PID"
wait "$PROXY_PID"
PROXY_PID=
events=$("$SCRY" workload info --store "$STORE" --json | sed -n 's/.*"events":\([0-9]*\).*/\1/p')
[ "${events:-0}" -ge 670 ] && ok "captured $events events" || bad "captured ${events:-0} events"

leftovers() { psql -XqAt -d postgres -c "SELECT count(*) FROM pg_database WHERE datname LIKE '%_scry_%'"; }
ci() { "$SCRY" ci test-migration "$TARGET" --store "$STORE" "$@"; }

# --- the budget -------------------------------------------------------------------
"$SCRY" replay --store "$STORE" --target "$TARGET" --label sampled --budget 100 --min-per-pattern 10 --json \
  >"$WORK/r.json" 2>"$WORK/r.err"
expect_exit 0 $? "scry replay --budget"
sampled=$(json "$WORK/r.json" 'd["sampled"]'); captured=$(json "$WORK/r.json" 'd["captured"]')
[ "$sampled" -lt "$captured" ] && [ "$sampled" -ge 100 ] && [ "$sampled" -le 160 ] \
  && ok "replay sampled $sampled of $captured executions" || { bad "replay sampled $sampled of $captured"; cat "$WORK/r.json"; }
"$SCRY" replay --store "$STORE" --target "$TARGET" --label x --budget -3 >/dev/null 2>&1
expect_exit 2 $? "a negative budget is a usage error"

ci --budget 150 --format json -- true >"$WORK/b.json" 2>"$WORK/b.err"
rc=$?; expect_judged $rc "ci --budget 150"
[ $rc = 0 ] || [ $rc = 5 ] || cat "$WORK/b.err"
[ "$(json "$WORK/b.json" 'd["sampling"]["budget"]')" = 150 ] && ok "the JSON report says what was sampled" \
  || { bad "no sampling in the JSON report"; cat "$WORK/b.json"; }
# every pattern judged with at least the minimum (or all it has)
short=$(json "$WORK/b.json" 'sum(1 for p in d["patterns"] if p["baseline_n"] < min(20, p.get("executions", 20)))')
[ "$short" = 0 ] && ok "every pattern kept its minimum" || bad "$short patterns below their minimum"
ci --budget off -- true >"$WORK/off.txt" 2>&1; expect_judged $? "ci --budget off"
grep -q "Replayed" "$WORK/off.txt" && bad "--budget off still reports a sample" || ok "--budget off replays everything"
ci --budget-seconds 5 -- true >"$WORK/bs.txt" 2>&1; expect_judged $? "ci --budget-seconds 5"
grep -q "Replayed" "$WORK/bs.txt" && ok "--budget-seconds reports its sample" || { bad "--budget-seconds: no sampling line"; cat "$WORK/bs.txt"; }

# --- the migration timeout ----------------------------------------------------------
t0=$(date +%s)
ci --migration-timeout 1 -- sh -c 'sleep 313; true' >"$WORK/t.out" 2>"$WORK/t.err"
rc=$?; t1=$(date +%s)
expect_exit 4 $rc "a migration over its timeout"
grep -q "did not finish within 1 s" "$WORK/t.err" && ok "the timeout says so" || { bad "no timeout message"; cat "$WORK/t.err"; }
[ $((t1 - t0)) -lt 60 ] && ok "the timeout ended the run" || bad "the run took $((t1 - t0)) s"
await sh -c '! pgrep -f "slee[p] 313" >/dev/null' && ok "the timed-out command and its children are gone" \
  || bad "the timed-out command still runs"
[ "$(leftovers)" = 0 ] && ok "no clone left after the timeout" || bad "clones left after the timeout"

# --- kill -9 during ci: the command dies with scry, gc and the next run clean up ------
kill_during_ci() {
  rm -f "$WORK/started"
  "$SCRY" ci test-migration "$TARGET" --store "$STORE" -- sh -c "touch '$WORK/started'; sleep 314; true" \
    >/dev/null 2>&1 &
  CI_PID=$!
  await test -e "$WORK/started" || bad "the migration did not start"
  kill -9 "$CI_PID"
  wait "$CI_PID" 2>/dev/null
  CI_PID=
}
kill_during_ci
[ "$(leftovers)" = 2 ] && ok "kill -9 leaves two clones" || bad "kill -9 left $(leftovers) clones"
await sh -c '! pgrep -f "slee[p] 314" >/dev/null' && ok "the migration command died with scry" \
  || bad "the migration command outlived scry"
"$SCRY" shadow gc "$TARGET" >"$WORK/gc.out" 2>&1; expect_exit 0 $? "scry shadow gc"
grep -q "dropped 2 abandoned clones" "$WORK/gc.out" && ok "gc dropped them" || { bad "gc: $(cat "$WORK/gc.out")"; }
[ "$(leftovers)" = 0 ] && ok "no clone left after gc" || bad "clones left after gc"
kill_during_ci
[ "$(leftovers)" = 2 ] && ok "kill -9 again leaves two clones" || bad "kill -9 left $(leftovers) clones"
ci --budget 50 -- true >/dev/null 2>&1; expect_judged $? "the next run"
[ "$(leftovers)" = 0 ] && ok "the next run removed the abandoned clones" || bad "$(leftovers) clones after the next run"
# a live run's clones are not touched by gc
rm -f "$WORK/started"
"$SCRY" ci test-migration "$TARGET" --store "$STORE" -- sh -c "touch '$WORK/started'; sleep 3; true" >/dev/null 2>&1 &
LIVE=$!
await test -e "$WORK/started"
"$SCRY" shadow gc "$TARGET" >"$WORK/gc2.out" 2>&1
grep -q "dropped 0 abandoned clones" "$WORK/gc2.out" && ok "gc leaves a live run's clones alone" || bad "gc: $(cat "$WORK/gc2.out")"
wait "$LIVE"; expect_judged $? "the live run finished"

# --- a physical copy of the target on another port (pg_basebackup) -----------------
mkdir -p "$WORK/copy/sock"
asuser() { if [ "$(id -u)" = 0 ]; then runuser -u "${SCRY_PG_USER:-nobody}" -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown -R "${SCRY_PG_USER:-nobody}" "$WORK/copy"
BIN=$(pg_config --bindir 2>/dev/null); [ -x "$BIN/pg_ctl" ] || BIN=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
asuser "$BIN/pg_basebackup" -D "$WORK/copy/data" -h 127.0.0.1 -p "$PORT" -U postgres -X stream -c fast \
  >"$WORK/basebackup.log" 2>&1 || { cat "$WORK/basebackup.log"; bad "pg_basebackup"; }
PORT2=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
asuser sh -c "sed -i -e 's/^port = .*/port = $PORT2/' -e \"s|^unix_socket_directories = .*|unix_socket_directories = '$WORK/copy/sock'|\" '$WORK/copy/data/scry.conf'"
asuser "$BIN/pg_ctl" -D "$WORK/copy/data" -l "$WORK/copy/server.log" -w -t 60 start >/dev/null 2>&1 \
  || { cat "$WORK/copy/server.log"; bad "the copy did not start"; }
COPY="host=127.0.0.1 port=$PORT2 user=postgres"
[ "$(psql -XqAt -p "$PORT2" -d app -c 'SELECT count(*) FROM items')" = 5000 ] && ok "pg_basebackup copy on port $PORT2" \
  || bad "the copy does not hold the target's data"

# --clone-command: clones are databases of the copy, made by a script
cat >"$WORK/clone.sh" <<EOF
#!/bin/sh
# clone.sh create|destroy NAME: a clone of app on the pg_basebackup copy
echo "\$1 \$2" >> '$WORK/clone.log'
case "\$1" in
create)  psql -XqAt -h 127.0.0.1 -p $PORT2 -U postgres -d postgres -c "CREATE DATABASE \\"\$2\\" TEMPLATE app" >&2 || exit 1
         echo "host=127.0.0.1 port=$PORT2 user=postgres dbname=\$2" ;;
destroy) psql -XqAt -h 127.0.0.1 -p $PORT2 -U postgres -d postgres -c "DROP DATABASE IF EXISTS \\"\$2\\" WITH (FORCE)" >&2 ;;
*) exit 2 ;;
esac
EOF
chmod +x "$WORK/clone.sh"
ci --clone-command "$WORK/clone.sh" --format json -- psql -Xq -v ON_ERROR_STOP=1 -c "CREATE TABLE migrated_here (x int)" \
  >"$WORK/cmd.json" 2>"$WORK/cmd.err"
rc=$?; expect_judged $rc "--clone-command against the pg_basebackup copy"
[ $rc = 0 ] || [ $rc = 5 ] || cat "$WORK/cmd.err"
[ "$(grep -c '^create ' "$WORK/clone.log")" = 2 ] && [ "$(grep -c '^destroy ' "$WORK/clone.log")" = 2 ] \
  && ok "the command created and destroyed two clones" || { bad "clone.log:"; cat "$WORK/clone.log"; }
[ "$(psql -XqAt -p "$PORT2" -d postgres -c "SELECT count(*) FROM pg_database WHERE datname LIKE '%_scry_%'")" = 0 ] \
  && ok "no clone left on the copy" || bad "clones left on the copy"
[ "$(psql -XqAt -d app -c "SELECT count(*) FROM pg_tables WHERE tablename='migrated_here'")" = 0 ] \
  && ok "the target is unchanged" || bad "the migration reached the target"
# kill -9 with command clones: the registry lets gc destroy them through the same command
rm -f "$WORK/started"
"$SCRY" ci test-migration "$TARGET" --store "$STORE" --clone-command "$WORK/clone.sh" -- \
  sh -c "touch '$WORK/started'; sleep 315; true" >/dev/null 2>&1 &
CI_PID=$!
await test -e "$WORK/started" || bad "the migration on a command clone did not start"
kill -9 "$CI_PID"; wait "$CI_PID" 2>/dev/null; CI_PID=
copy_clones() { psql -XqAt -p "$PORT2" -d postgres -c "SELECT count(*) FROM pg_database WHERE datname LIKE '%_scry_%'"; }
[ "$(copy_clones)" = 2 ] && ok "kill -9 leaves two command clones" || bad "kill -9 left $(copy_clones) command clones"
"$SCRY" shadow gc "$TARGET" >"$WORK/gc3.out" 2>&1
grep -q "dropped 2 abandoned clones" "$WORK/gc3.out" && [ "$(copy_clones)" = 0 ] \
  && ok "gc destroyed them with the clone command" || { bad "command clones after gc: $(copy_clones)"; cat "$WORK/gc3.out"; }

# a command that fails to create: a clear error, and destroy is still asked
ci --clone-command "false" -- true >/dev/null 2>"$WORK/cf.err"; expect_exit 1 $? "a failing clone command"
grep -q "clone command" "$WORK/cf.err" && ok "it names the clone command" || { bad "no clone command in the error"; cat "$WORK/cf.err"; }

# --baseline/--candidate: two databases of the copy, the migration on the candidate only
psql -XqAt -p "$PORT2" -d postgres -c "CREATE DATABASE app_b TEMPLATE app" >/dev/null
ci --baseline "$COPY dbname=app" --candidate "$COPY dbname=app_b" -- \
  psql -Xq -v ON_ERROR_STOP=1 -c "CREATE TABLE migrated_here (x int)" >"$WORK/given.out" 2>"$WORK/given.err"
rc=$?; expect_judged $rc "--baseline/--candidate on the pg_basebackup copy"
[ $rc = 0 ] || [ $rc = 5 ] || cat "$WORK/given.err"
[ "$(psql -XqAt -p "$PORT2" -d app_b -c "SELECT count(*) FROM pg_tables WHERE tablename='migrated_here'")" = 1 ] \
  && ok "the migration ran on the candidate" || bad "the candidate was not migrated"
[ "$(psql -XqAt -p "$PORT2" -d app -c "SELECT count(*) FROM pg_tables WHERE tablename='migrated_here'")" = 0 ] \
  && ok "the baseline is untouched" || bad "the baseline was migrated"
[ "$(psql -XqAt -p "$PORT2" -d postgres -c "SELECT count(*) FROM pg_database WHERE datname IN ('app','app_b')")" = 2 ] \
  && ok "given databases are never dropped" || bad "a given database was dropped"
ci --baseline "$TARGET" --candidate "$COPY dbname=app_b" -- true >/dev/null 2>"$WORK/self.err"
expect_exit 1 $? "the target itself as a given clone"
grep -q "is the target itself" "$WORK/self.err" && ok "it says the target is not a copy" || { bad "no message"; cat "$WORK/self.err"; }
ci --baseline "$COPY dbname=app" -- true >/dev/null 2>&1; expect_exit 2 $? "--baseline without --candidate"

# --- housekeeping ---------------------------------------------------------------------
"$SCRY" runs list --store "$STORE" >"$WORK/runs.txt"; expect_exit 0 $? "runs list"
grep -q "ci-baseline" "$WORK/runs.txt" && ok "runs list shows the ci runs" || bad "runs list: $(cat "$WORK/runs.txt")"
"$SCRY" runs prune --store "$STORE" --keep 1 >"$WORK/prune.txt"; expect_exit 0 $? "runs prune --keep 1"
n=$("$SCRY" runs list --store "$STORE" --json | /usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin); print(len(r), len(set(x["label"] for x in r)))')
[ "${n% *}" = "${n#* }" ] && ok "one run per label left ($n)" || bad "after prune: $n"
"$SCRY" runs delete sampled --store "$STORE" >/dev/null; expect_exit 0 $? "runs delete LABEL"
"$SCRY" runs delete 999999 --store "$STORE" >/dev/null 2>&1; expect_exit 1 $? "runs delete of a missing run"
"$SCRY" runs prune --store "$STORE" >/dev/null 2>&1; expect_exit 2 $? "prune without --keep"
"$SCRY" workload compact --store "$STORE" --keep-per-pattern 5 >"$WORK/compact.txt"; expect_exit 0 $? "workload compact"
left=$("$SCRY" workload info --store "$STORE" --json | sed -n 's/.*"events":\([0-9]*\).*/\1/p')
[ "${left:-999}" -lt 60 ] && ok "compaction kept $left events" || bad "compaction kept ${left:-?} events"
top=$("$SCRY" workload patterns --store "$STORE" --json | /usr/bin/python3 -c 'import json,sys; print(max(json.loads(l)["count"] for l in sys.stdin if l.strip()))')
[ "$top" -ge 600 ] && ok "patterns keep their captured counts ($top)" || bad "counts lost: $top"
ci --budget 100 -- true >/dev/null 2>&1; expect_judged $? "ci on the compacted store"
"$SCRY" workload compact --store "$STORE" >/dev/null 2>&1; expect_exit 2 $? "compact without --keep-per-pattern"

echo
[ $fails = 0 ] && echo "all scale checks passed" || echo "$fails scale checks FAILED"
exit $((fails > 0))
