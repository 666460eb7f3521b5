#!/usr/bin/env bash
# Replay's client side: a captured cancel is replayed at the same offset (the
# sample records 57014 and the run counts it as a cancel, not a timeout), and
# a server that stops answering (SIGSTOP) is given up after --timeout plus the
# margin: the replay ends, records a timeout and does not hang.
set -euo pipefail
: "${SCRY_CLI:?}" "${SCRY_SOURCE_DIR:?}"
. "$SCRY_SOURCE_DIR/tests/harness/proxy.sh" # proxy_port
work=$(mktemp -d /tmp/scry-rclient.XXXXXX); chmod 755 "$work"
pid= rpid= stopped=
cleanup() {
  [ -n "$stopped" ] && kill -CONT $stopped 2>/dev/null || true
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  [ -n "$rpid" ] && kill "$rpid" 2>/dev/null || true
  bash "$SCRY_SOURCE_DIR/tests/harness/pgcluster.sh" stop "$work/pg" >/dev/null 2>&1 || true
  if [ -n "${SCRY_KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
now_ms() { date +%s%3N; }
start_proxy() { # STORE [proxy options...]: starts `scry capture proxy` on a free port; sets pid and pport
  local store=$1; shift
  "$SCRY_CLI" capture proxy --listen 127.0.0.1:0 --upstream "127.0.0.1:$port" --store "$store" "$@" \
    >/dev/null 2>"$store.err" &
  pid=$!
  pport=$(proxy_port "$store.err" "$pid")
  [ -n "$pport" ] && return 0
  fail "the proxy did not start: $(cat "$store.err")"
}

port=$(bash "$SCRY_SOURCE_DIR/tests/harness/pgcluster.sh" start "$work/pg")
base="host=127.0.0.1 port=$port user=postgres dbname=postgres"

start_proxy "$work/s.db"
# psql sends a CancelRequest on SIGINT: the statement ends with 57014 after ~1 s.
set +e
timeout -s INT 1 psql -X -q "host=127.0.0.1 port=$pport user=postgres dbname=postgres" -c "SELECT pg_sleep(20)" 2>/dev/null
set -e
# The session to freeze: SELECT 1, 4 s of nothing, SELECT 2 (replayed in timed
# mode, the test stops the server in that gap, so SELECT 2 meets a frozen server).
psql -X -q "host=127.0.0.1 port=$pport user=postgres dbname=postgres application_name=frozen" \
  -c "SELECT 1" -c '\! sleep 4' -c "SELECT 2" >/dev/null
kill -INT "$pid"; wait "$pid"; pid=
[ "$(sqlite3 "$work/s.db" "SELECT sqlstate || '/' || flags FROM events WHERE sqlstate IS NOT NULL")" = 57014/4 ] ||
  fail "the cancelled statement is not recorded as a client cancel: $(sqlite3 "$work/s.db" "SELECT * FROM events")"

[ "$(sqlite3 "$work/s.db" "SELECT count(*) FROM events")" = 3 ] || fail "expected 3 captured events"
# 1. The cancel is replayed: 57014 again, after about the captured duration, not 20 s.
"$SCRY_CLI" replay --store "$work/s.db" --target "$base" --label cancel --timeout 30000 --concurrency 1 \
  --json >"$work/cancel.json"
lat=$(sqlite3 "$work/s.db" "SELECT s.latency_us FROM samples s JOIN events e ON e.id = s.event
  WHERE s.run = (SELECT max(id) FROM runs WHERE label = 'cancel') AND s.sqlstate = '57014'")
[ -n "$lat" ] || fail "the replayed cancel has no 57014 sample: $(sqlite3 "$work/s.db" "SELECT * FROM samples")"
[ "$lat" -lt 15000000 ] || fail "the cancelled statement ran ${lat} us on replay: the cancel was not replayed"
sqlite3 "$work/s.db" "SELECT summary FROM runs WHERE label = 'cancel'" | grep -q '"cancels":1' ||
  fail "the run does not count the cancel: $(sqlite3 "$work/s.db" "SELECT summary FROM runs")"
grep -q '"timeouts":0' "$work/cancel.json" || fail "a replayed cancel counted as a timeout: $(cat "$work/cancel.json")"

# 2. A frozen server: SIGSTOP every process of the test's own cluster between
# the replayed SELECT 1 and SELECT 2; --timeout 2000 + 1 s margin must end the run.
"$SCRY_CLI" replay --store "$work/s.db" --target "$base" --label frozen --timeout 2000 --mode timed \
  --json >"$work/frozen.json" 2>"$work/frozen.err" &
rpid=$!
for _ in $(seq 1 300); do
  n=$(psql -X -At "$base" -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'frozen'
    AND query = 'SELECT 1' AND state = 'idle'")
  [ "$n" = 1 ] && break
  sleep 0.05
done
[ "$n" = 1 ] || fail "replay never ran the session to freeze (with its captured application_name)"
pm=$(head -1 "$work/pg/data/postmaster.pid")
stopped="$pm $(pgrep -P "$pm" | tr '\n' ' ')"
kill -STOP $stopped
t0=$(now_ms)
ended=
for _ in $(seq 1 200); do # 20 s: far more than 2 s + 1 s, far less than forever
  if ! kill -0 "$rpid" 2>/dev/null; then ended=1; break; fi
  sleep 0.1
done
t1=$(now_ms)
kill -CONT $stopped; stopped=
[ -n "$ended" ] || fail "replay still waits on a frozen server after $((t1 - t0)) ms"
wait "$rpid" || fail "replay against a frozen server exited with $?: $(cat "$work/frozen.err")"
rpid=
grep -q "did not answer" "$work/frozen.err" || fail "no warning about the frozen server: $(cat "$work/frozen.err")"
sqlite3 "$work/s.db" "SELECT summary FROM runs WHERE label = 'frozen'" | grep -q '"client_timeouts":1' ||
  fail "the run does not count the client-side timeout: $(sqlite3 "$work/s.db" "SELECT summary FROM runs WHERE label = 'frozen'")"
[ "$(sqlite3 "$work/s.db" "SELECT count(*) FROM samples s JOIN events e ON e.id = s.event
  WHERE s.run = (SELECT max(id) FROM runs WHERE label = 'frozen') AND s.sqlstate = '57014' AND e.sqlstate IS NULL")" = 1 ] ||
  fail "no timeout sample for the frozen statement"
# 3. A write outside a transaction is replayed as BEGIN, the write and ROLLBACK in
# ONE round trip (pipeline mode): replayed through a second capture proxy, the
# three arrive in the same packet, so the proxy stamps them with the same time.
psql -X -q "$base" -c "CREATE TABLE w (a int)" -c "INSERT INTO w VALUES (1), (2)"
start_proxy "$work/w.db"
psql -X -q "host=127.0.0.1 port=$pport user=postgres dbname=postgres" -c "UPDATE w SET a = a + 1" >/dev/null
kill -INT "$pid"; wait "$pid"; pid=
start_proxy "$work/w2.db"
"$SCRY_CLI" replay --store "$work/w.db" --target "host=127.0.0.1 port=$pport user=postgres dbname=postgres" \
  --label pipe --json >"$work/pipe.json"
kill -INT "$pid"; wait "$pid"; pid=
grep -q '"errors":0' "$work/pipe.json" || fail "pipelined write failed: $(cat "$work/pipe.json")"
[ "$(sqlite3 "$work/w.db" "SELECT rows FROM samples")" = 2 ] || fail "the pipelined UPDATE did not count its 2 rows"
# (After the run, replay records plans: EXPLAIN in its own BEGIN ... ROLLBACK, later.)
starts=$(sqlite3 "$work/w2.db" "SELECT group_concat(st.template, ',') FROM events e JOIN statements st ON st.id = e.statement
  WHERE e.offset_us = (SELECT min(e2.offset_us) FROM events e2 JOIN statements s2 ON s2.id = e2.statement
                       WHERE s2.template LIKE 'UPDATE w%') ORDER BY e.id")
[ "$(echo "$starts" | tr -d '\002')" = "BEGIN,UPDATE w SET a = a + ,ROLLBACK" ] || fail "BEGIN, UPDATE, ROLLBACK were not sent in one round trip (stamped with the UPDATE's time: $starts):
$(sqlite3 "$work/w2.db" "SELECT e.offset_us, st.template FROM events e JOIN statements st ON st.id = e.statement")"
[ "$(psql -X -At "$base" -c "SELECT sum(a) FROM w")" = 5 ] || fail "the replayed UPDATE was not rolled back"

# 4. A text over --max-query-bytes: recorded cut and marked, listed as
# (truncated), skipped by replay (never a 42601); unparsable texts get keys.
start_proxy "$work/t.db" --max-query-bytes 40
set +e
psql -X -q "host=127.0.0.1 port=$pport user=postgres dbname=postgres" \
  -c "SELECT 'a fairly long literal that is cut by the capture limit' AS x" \
  -c "SELEC 1" -c "SELEC 2 FROM" >/dev/null 2>&1
set -e
kill -INT "$pid"; wait "$pid"; pid=
"$SCRY_CLI" workload patterns --store "$work/t.db" >"$work/t.pat"
grep -q "^(truncated)" "$work/t.pat" || fail "the cut text is not listed as (truncated): $(cat "$work/t.pat")"
[ "$(sqlite3 "$work/t.db" "SELECT count(DISTINCT fingerprint) FROM patterns WHERE parse_error IS NOT NULL AND fingerprint <> 0")" = 3 ] ||
  fail "unparsable/truncated patterns do not have distinct keys: $(sqlite3 "$work/t.db" "SELECT * FROM patterns")"
"$SCRY_CLI" replay --store "$work/t.db" --target "$base" --label trunc --json >"$work/trunc.json" 2>"$work/trunc.err"
grep -q '"skipped":1' "$work/trunc.json" || fail "the truncated text was not skipped: $(cat "$work/trunc.json")"
grep -q "truncated at capture" "$work/trunc.err" || fail "no warning about the skipped truncated text"
[ "$(sqlite3 "$work/t.db" "SELECT count(*) FROM samples s JOIN events e ON e.id = s.event WHERE s.sqlstate = '42601'
  AND e.sqlstate IS NULL")" = 0 ] || fail "a truncated text was replayed as a syntax error"

echo "ok: cancel replayed (${lat} us); replay ended $((t1 - t0)) ms after the server froze (SELECT 2 due ~4 s later, then 2 s + 1 s)"
