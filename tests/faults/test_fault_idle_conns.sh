#!/usr/bin/env bash
# 2,000 idle connections through the capture proxy started at the usual
# default soft descriptor limit (1024): each needs two descriptors in the
# proxy (client and upstream), so the proxy must raise its soft
# RLIMIT_NOFILE towards the hard limit. All must be accepted and kept open,
# and a real query must still go through. The idle clients open TCP
# connections and send nothing (the server holds them as not-yet-started
# backends: max_connections is raised so that the postmaster keeps them all).
# Exit 77 (skipped) when the hard limit is below what the test needs, or
# when the proxy does not raise its limit yet (issue 12 adds that).
source "$(dirname "$0")/lib.sh"
N=2000
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt $((2 * N + 200)) ]; then
  echo "SKIP: hard descriptor limit $hard < $((2 * N + 200))"; exit 77
fi
start_cluster "max_connections = 1100" "authentication_timeout = '5min'"
# SCRY_FAULT_SOFT_NOFILE overrides the start limit, only to check this test itself.
PROXY_ULIMIT="-Sn ${SCRY_FAULT_SOFT_NOFILE:-1024}" start_proxy "$work/s.db"
soft=$(awk '/Max open files/ {print $4}' "/proc/$proxy_pid/limits")
if [ "$soft" != unlimited ] && [ "$soft" -lt $((2 * N + 20)) ]; then
  echo "SKIP: the proxy keeps a soft descriptor limit of $soft (it does not raise RLIMIT_NOFILE)"; exit 77
fi
/usr/bin/python3 - "$pport" "$N" "$work" <<'PY' &
import os, resource, select, socket, sys, time
port, n, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    socks.append(s)
open(f"{work}/opened", "w").close()
while not os.path.exists(f"{work}/done"):
    time.sleep(0.1)
# None was closed by the proxy: no socket is readable (EOF or an error message).
p = select.poll()
for s in socks:
    p.register(s, select.POLLIN | select.POLLHUP)
open(f"{work}/closed", "w").write(f"{len(p.poll(0))}\n")
for s in socks:
    s.close()
PY
pids+=($!)
wait_for "$N idle connections" 120 test -e "$work/opened"
# All accepted and connected upstream: two descriptors each in the proxy.
wait_for "the proxy to hold $N connections" 120 bash -c "[ \$(ls /proc/$proxy_pid/fd | wc -l) -ge $((2 * N)) ]"
psql -X -qAt "host=127.0.0.1 port=$pport user=postgres dbname=postgres" -c "SELECT 2000" | grep -qx 2000 \
  || fail "a query did not go through with $N idle connections open"
touch "$work/done"
wait "${pids[0]}" || fail "idle client script failed"
pids=()
[ "$(cat "$work/closed")" = 0 ] || fail "$(cat "$work/closed") idle connections were closed by the proxy"
kill -INT "$proxy_pid"
wait "$proxy_pid" || fail "the proxy exited with $?: $(tail -3 "$work/proxy.err")"
proxy_pid=
check_store "$work/s.db"
echo "ok ($N idle connections; the proxy started at a soft limit of ${SCRY_FAULT_SOFT_NOFILE:-1024} and runs with $soft)"
