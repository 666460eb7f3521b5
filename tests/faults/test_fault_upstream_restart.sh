#!/usr/bin/env bash
# The upstream server restarts (fast shutdown, then start) while clients are
# connected through the proxy: the clients see their connections end, the
# proxy stays up, clients that reconnect are captured, the proxy stops
# cleanly and the store is consistent.
source "$(dirname "$0")/lib.sh"
start_cluster
start_proxy "$work/s.db"
/usr/bin/python3 - "$pport" "$work" <<'PY' &
import sys, time, psycopg2
port, work = sys.argv[1], sys.argv[2]
dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
conns = [psycopg2.connect(dsn) for _ in range(8)]
for c in conns: c.autocommit = True
open(f"{work}/connected", "w").close()
lost = ok_after = 0
deadline = time.time() + 60
while time.time() < deadline and ok_after < 200:
    for i, c in enumerate(conns):
        try:
            cur = c.cursor(); cur.execute("SELECT %s::int", (i,)); cur.fetchone()
            if lost: ok_after += 1
        except psycopg2.Error:
            lost += 1
            try:
                conns[i] = psycopg2.connect(dsn); conns[i].autocommit = True
            except psycopg2.Error:
                time.sleep(0.05)
open(f"{work}/result", "w").write(f"{lost} {ok_after}\n")
PY
pids+=($!)
wait_for "clients connected" 30 test -e "$work/connected"
wait_for "captured events" 30 bash -c "[ \"\$(sqlite3 '$work/s.db' 'SELECT count(*) FROM events' 2>/dev/null)\" -gt 50 ]"
pg_ctl_cluster -m fast -w -t 60 restart -l "$work/pg/server.log" >/dev/null || fail "restart"
kill -0 "$proxy_pid" 2>/dev/null || fail "the proxy died when the upstream restarted: $(tail -5 "$work/proxy.err")"
wait "${pids[0]}" || fail "client script failed"
pids=()
read -r lost ok_after <"$work/result"
[ "$lost" -ge 1 ] || fail "no client saw the restart (lost=$lost)"
[ "$ok_after" -ge 200 ] || fail "clients did not work again after the restart ($ok_after queries)"
kill -INT "$proxy_pid"
wait "$proxy_pid" || fail "the proxy exited with $?: $(tail -5 "$work/proxy.err")"
proxy_pid=
check_store "$work/s.db"
sessions=$(sqlite3 "$work/s.db" 'SELECT count(*) FROM sessions')
after=$(sqlite3 "$work/s.db" "SELECT count(*) FROM sessions WHERE id > 8 AND events > 0")
[ "$after" -ge 1 ] || fail "no session after the restart was captured ($sessions sessions)"
echo "ok ($lost connections lost, $ok_after queries after the restart)"
