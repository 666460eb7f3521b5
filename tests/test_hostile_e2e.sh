#!/usr/bin/env bash
# Hostile statements end to end (issue 17): deeply nested expressions (past
# what libpg_query's recursive walkers survive on an 8 MB stack), marker bytes
# 0x01-0x03 in comments and strings, and terminal escapes go through the real
# capture proxy in front of a real server, the server's own log through
# `scry capture log`, and `scry fingerprint --normalize`. Nothing may die, and
# both stores must replay.
source "$SCRY_SOURCE_DIR/tests/faults/lib.sh" # cluster, proxy, store checks

prefix='%m [%p] %q%u@%d/%a '
start_cluster "log_statement = 'all'" "log_line_prefix = '$prefix'" "lc_messages = 'C'"

# One file per statement (some are too long for a command-line argument).
mkdir "$work/sql"
/usr/bin/python3 - "$work/sql" <<'EOF'
import sys
d = sys.argv[1]
def w(name, text):
    open(f"{d}/{name}.sql", "wb").write(text.encode() + b";\n")
w("01_plus3k", "SELECT " + "1+" * 3000 + "1")                # accepted by the server
w("02_plus30k", "SELECT " + "1+" * 30000 + "1")              # killed pg_query_normalize
w("03_plus120k", "SELECT " + "1+" * 120000 + "1")            # killed pg_query_parse
w("04_or2k", "SELECT 1 WHERE " + " OR ".join(f"{i}={i}" for i in range(2000)))
w("05_parens", "SELECT " + "(" * 5000 + "1" + ")" * 5000)
w("06_parens20k", "SELECT " + "(" * 20000 + "1" + ")" * 20000)
w("07_case", "SELECT " + "CASE WHEN true THEN " * 2000 + "1" + " END" * 2000)
w("08_array", "SELECT " + "ARRAY[" * 3000 + "1" + "]" * 3000)
w("09_cast30k", "SELECT 1" + "::int" * 30000)
w("10_union20k", "SELECT 1" + " UNION ALL SELECT 1" * 20000)
w("11_list", "SELECT 1 WHERE 1 IN (" + ",".join(str(i) for i in range(20000)) + ")")
w("12_marker_comment", "SELECT 1 /* \x01 */")
w("13_marker_string", "SELECT 'a\x02b', 3 /* \x03 */")
w("14_marker_line", "SELECT 4 -- \x01\x02\x03")
w("15_escape", "SELECT '\x1b[31mred\x1b[0m' AS x, 5")
w("16_escape_ident", "SELECT 6 FROM \"\x1b]0;pwned\x07\x1b[2J\" /* \x1b[31m */")
w("99_alive", "SELECT 42")
EOF
nstmt=$(ls "$work/sql" | wc -l)

start_proxy "$work/proxy.db"
pid=$proxy_pid

for f in "$work"/sql/*.sql; do
  # Some are refused by the server (stack depth, memory exhausted): fine.
  psql -X -q "host=127.0.0.1 port=$pport user=postgres dbname=postgres application_name=hostile" \
    -f "$f" >/dev/null 2>>"$work/psql.err" || true
  kill -0 "$pid" 2>/dev/null || fail "the proxy died on $(basename "$f"): $(tail -3 "$work/proxy.err")"
done
psql -X -qAt "host=127.0.0.1 port=$pport user=postgres dbname=postgres" -c "SELECT 42" | grep -qx 42 \
  || fail "the proxy no longer answers"
kill -INT "$pid"
set +e; wait "$pid"; rc=$?; set -e
pid= proxy_pid=
[ "$rc" = 0 ] || fail "the proxy exited with $rc: $(tail -5 "$work/proxy.err")"
grep -q "\"events_recorded\":$((nstmt + 1))" "$work/proxy.out" || fail "proxy summary: $(cat "$work/proxy.out")"
grep -q '"events_dropped":0' "$work/proxy.out" || fail "proxy dropped events: $(cat "$work/proxy.out")"

replayable() { # store, label
  "$SCRY_CLI" replay --store "$1" --target "$conn" --label "$2" --concurrency 2 --json >"$work/$2.json" 2>"$work/$2.err" \
    || fail "replay of $1 failed: $(cat "$work/$2.err")"
  # Every captured statement was sent again (the refused ones fail again, as recorded).
  local events
  events=$(sqlite3 "$1" 'SELECT count(*) FROM events')
  grep -q "\"executions\":$events," "$work/$2.json" || fail "replay of $1: not $events executions: $(cat "$work/$2.json")"
  grep -q '"complete":true' "$work/$2.json" || fail "replay of $1 incomplete: $(cat "$work/$2.json")"
}
check_store "$work/proxy.db"
replayable "$work/proxy.db" proxyrun
"$SCRY_CLI" workload patterns --store "$work/proxy.db" >"$work/patterns.txt" || fail "workload patterns failed"
grep -q $'\x1b' "$work/patterns.txt" && fail "an ESC byte reached the terminal through workload patterns"
grep -q '\\x1b' "$work/patterns.txt" || fail "the ESC byte is not shown escaped: $(grep pwned "$work/patterns.txt")"
"$SCRY_CLI" fingerprint --normalize "$work/sql/16_escape_ident.sql" | grep -q $'\x1b' && fail "ESC through scry fingerprint --normalize"

# A malformed --target never echoes its password.
set +e
"$SCRY_CLI" replay --store "$work/proxy.db" --target "host=127.0.0.1 password=hunter2 = x" --label bad 2>"$work/pw.err"
"$SCRY_CLI" replay --store "$work/proxy.db" --target "postgresql://u:hunter2@[::1" --label bad 2>>"$work/pw.err"
"$SCRY_CLI" replay --store "$work/proxy.db" --target "postgresql://u:hunter2@127.0.0.1:1/x" --label bad 2>>"$work/pw.err"
set -e
[ "$(wc -l <"$work/pw.err")" -ge 3 ] || fail "expected three errors: $(cat "$work/pw.err")"
grep -q hunter2 "$work/pw.err" && fail "a password reached the terminal: $(cat "$work/pw.err")"

# The server's own log of the same statements, through the log importer.
"$SCRY_CLI" capture log --format stderr --prefix "$prefix" --store "$work/log.db" --json \
  "$work/pg/server.log" >"$work/log.json" 2>"$work/log.err" || fail "capture log failed: $(cat "$work/log.err")"
grep -q '"statements":0[,}]' "$work/log.json" && fail "capture log imported nothing: $(cat "$work/log.json")"
check_store "$work/log.db"
replayable "$work/log.db" logrun

# The CLI: every file fingerprints or reports an error, never a signal.
for f in "$work"/sql/*.sql; do
  set +e
  "$SCRY_CLI" fingerprint --normalize "$f" >/dev/null 2>"$work/fp.err"; rc=$?
  "$SCRY_CLI" fingerprint --json "$f" >/dev/null 2>>"$work/fp.err"; rc2=$?
  set -e
  [ "$rc" -le 1 ] && [ "$rc2" -le 1 ] || fail "scry fingerprint on $(basename "$f"): exit $rc/$rc2 $(cat "$work/fp.err")"
done
# Too deep for any parser: a clear error, exit 1.
set +e; "$SCRY_CLI" fingerprint "$work/sql/03_plus120k.sql" >/dev/null 2>"$work/deep.err"; rc=$?; set -e
[ "$rc" = 1 ] && grep -q "nested too deeply" "$work/deep.err" || fail "120k terms: exit $rc, $(cat "$work/deep.err")"
# Deep but parsable (on the guard's thread): normalized in full. Values are
# compared with pg_query's in test_hostile.c.
"$SCRY_CLI" fingerprint --normalize "$work/sql/02_plus30k.sql" | grep -q '\$30001' || fail "30k terms not normalized"
echo ok
