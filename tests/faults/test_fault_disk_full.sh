#!/usr/bin/env bash
# The disk fills up during capture. A small tmpfs needs privileges a test
# cannot assume, so the proxy runs under RLIMIT_FSIZE (ulimit -f): writes
# past the limit fail with EFBIG, as on a full disk (ENOSPC). The proxy must
# keep forwarding the clients' traffic (capture is best effort; the
# application must never notice), say what happened, count the events it
# could not store, exit 1 on SIGINT with the store error, and leave a store
# that opens with every committed count consistent.
source "$(dirname "$0")/lib.sh"
start_cluster
# Size the limit from an empty store: room for a few hundred events.
"$SCRY_CLI" workload info --store "$work/empty.db" >/dev/null 2>&1 || true
"$SCRY_CLI" capture log --format csvlog --store "$work/empty.db" /dev/null >/dev/null 2>&1 || true
base=$(( ($(stat -c %s "$work/empty.db") + 1023) / 1024 ))
limit=$((base + 96))
PROXY_ULIMIT="-f $limit" start_proxy "$work/s.db"
# Long texts fill the limit fast; every query must still be answered.
/usr/bin/python3 - "$pport" <<'PY' || fail "a client query failed while the disk was full"
import sys, psycopg2
c = psycopg2.connect(f"host=127.0.0.1 port={sys.argv[1]} user=postgres dbname=postgres"); c.autocommit = True
cur = c.cursor()
for i in range(3000):
    cur.execute(f"SELECT {i} AS n, '" + ("x" * 2000) + f"{i}' AS pad /* distinct text {i} */")
    assert cur.fetchone()[0] == i
PY
kill -0 "$proxy_pid" 2>/dev/null || fail "the proxy died when the disk filled up: $(tail -5 "$work/proxy.err")"
psql -X -qAt "host=127.0.0.1 port=$pport user=postgres dbname=postgres" -c "SELECT 777" | grep -qx 777 \
  || fail "the proxy stopped forwarding"
set +e; kill -INT "$proxy_pid"; wait "$proxy_pid"; rc=$?; set -e
proxy_pid=
[ "$rc" = 1 ] || fail "the proxy should exit 1 after losing events, got $rc: $(tail -3 "$work/proxy.err")"
grep -qi "store" "$work/proxy.err" || fail "no store error reported: $(tail -5 "$work/proxy.err")"
dropped=$(sed -n 's/.*"events_dropped":\([0-9]*\).*/\1/p' "$work/proxy.out")
[ -n "$dropped" ] && [ "$dropped" -gt 0 ] || fail "no dropped events counted: $(cat "$work/proxy.out")"
check_store "$work/s.db"
echo "ok (limit ${limit} KiB, $dropped events dropped, $(sqlite3 "$work/s.db" 'SELECT count(*) FROM events') stored)"
