#!/usr/bin/env bash
# Re-records the real-* seeds of corpus/pgwire (run from the source tree):
#   SCRY_CLI=build/scry SCRY_SOURCE_DIR=$PWD bash tests/fuzz/record_pgwire_session.sh
# pgbench (prepared and extended protocol), psql (COPY in and out, an error
# in a transaction, NOTICE, LISTEN/NOTIFY), psycopg2 (parameters, PREPARE)
# and a failed login, through record_pgwire.py in front of a throwaway cluster.
set -e
source tests/faults/lib.sh
start_cluster
relay_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pgbench -i -q -s 1 "$conn" >/dev/null 2>&1
python3 tests/fuzz/record_pgwire.py $relay_port $port tests/fuzz/corpus/pgwire real 8 > $work/relay.out &
pids+=($!)
wait_for relay 10 grep -q ready $work/relay.out
R="host=127.0.0.1 port=$relay_port user=postgres dbname=postgres sslmode=disable"
pgbench -n -M prepared -t 3 -c 1 "$R" >/dev/null
pgbench -n -M extended -t 2 -c 1 "$R" >/dev/null
psql -X -q "$R" -c "CREATE TEMP TABLE t (a int, b text)" -c "COPY t FROM STDIN" -c "SELECT * FROM t" -c "COPY t TO STDOUT" <<'D' >/dev/null
1	x
2	y
\.
D
psql -X -q "$R" -c "BEGIN" -c "SELECT 1/0" -c "ROLLBACK" -c "SELECT pg_sleep(0)" -c "DO \$\$BEGIN RAISE NOTICE 'hi'; END\$\$" -c "LISTEN ch" -c "NOTIFY ch, 'x'" >/dev/null 2>&1 || true
/usr/bin/python3 - "$R" <<'PY'
import sys, psycopg2
c = psycopg2.connect(sys.argv[1]); cur = c.cursor()
cur.execute("SELECT %s, %s::text, %s", (1, "a'b", None)); cur.fetchall()
cur.execute("PREPARE p (int) AS SELECT $1 + 1"); cur.execute("EXECUTE p(41)"); cur.fetchall()
c.commit(); c.close()
PY
psql -X -q "postgresql://postgres:wrongpw@127.0.0.1:$relay_port/nosuchdb?sslmode=disable" -c "SELECT 1" 2>/dev/null || true
wait "${pids[0]}"; pids=()
