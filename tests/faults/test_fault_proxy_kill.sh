#!/usr/bin/env bash
# kill -9 of the capture proxy under load (pgbench through it): the store
# opens, PRAGMA integrity_check is ok, every count agrees with its rows, and
# the store replays; a new proxy appends to it.
source "$(dirname "$0")/lib.sh"
start_cluster
pgbench -i -q -s 1 "$conn" >/dev/null 2>&1 || fail "pgbench -i"
start_proxy "$work/s.db"
pgbench -n -c 4 -j 2 -T 60 "host=127.0.0.1 port=$pport user=postgres dbname=postgres" >"$work/bench.out" 2>&1 &
pids+=($!)
# Under load: wait until committed events are visible to another reader.
wait_for "captured events" 60 bash -c "[ \"\$(sqlite3 '$work/s.db' 'SELECT count(*) FROM events' 2>/dev/null)\" -gt 2000 ]"
kill -9 "$proxy_pid"
wait "$proxy_pid" 2>/dev/null || true
proxy_pid=
kill "${pids[@]}" 2>/dev/null || true
wait 2>/dev/null || true
pids=()
check_store "$work/s.db"
n=$(sqlite3 "$work/s.db" 'SELECT count(*) FROM events')
[ "$n" -gt 2000 ] || fail "only $n events survived"
# It replays, and capture goes on into the same store.
"$SCRY_CLI" replay --store "$work/s.db" --target "$conn" --label after-kill --concurrency 2 --json >"$work/replay.json" \
  || fail "replay after kill -9: $(cat "$work/replay.json")"
start_proxy "$work/s.db"
psql -X -qAt "host=127.0.0.1 port=$pport user=postgres dbname=postgres" -c "SELECT 12345" | grep -qx 12345 || fail "new proxy"
kill -INT "$proxy_pid"; wait "$proxy_pid" || fail "second proxy exit $?"; proxy_pid=
check_store "$work/s.db"
[ "$(sqlite3 "$work/s.db" 'SELECT count(*) FROM events')" -gt "$n" ] || fail "the new proxy did not append"
echo "ok ($n events survived kill -9)"
