#!/usr/bin/env bash
# End-to-end test of the migration-impact phase of `scry ci test-migration`
# (issue 15, docs/impact.md): a workload that reads and writes `orders`,
# captured through the real proxy, replayed on the candidate while the
# migration runs; the report names the locks the migration held and the
# queries that waited, and --max-lock-wait gates on them.
#   - a known hold (LOCK TABLE + pg_sleep(1)) is measured within tolerance
#   - a table rewrite that blocks the workload -> exit 5 with --max-lock-wait,
#     naming the lock, the statement and the waiting patterns; the safe
#     variant -> exit 0
#   - CREATE INDEX takes a ShareLock (advice: CONCURRENTLY); CONCURRENTLY none
#   - a backfill UPDATE makes the workload's UPDATEs wait on row locks
#   - a foreign key without NOT VALID locks both tables; with NOT VALID none
set -uo pipefail

. "${SCRY_SOURCE_DIR:?SCRY_SOURCE_DIR is not set}/tests/harness/scenario.sh" # ok, bad, expect_exit, cleanup
PY=/usr/bin/python3
scenario_begin impact
json() { # FILE PYTHON-EXPRESSION over j (the report's migration_impact object)
  "$PY" -c "import json,sys; j=json.load(open(sys.argv[1]))['migration_impact']; print($2)" "$1"
}

scenario_cluster
psql -XqAt -d postgres -c "CREATE DATABASE shop" >/dev/null
psql -Xq -d shop >/dev/null <<'SQL'
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 1000) g;
CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL, qty int NOT NULL, note text);
INSERT INTO orders SELECT g, 1 + g % 1000, g % 7, 'order ' || g FROM generate_series(1, 300000) g;
VACUUM ANALYZE;
SQL
TARGET="host=127.0.0.1 port=$PORT user=postgres dbname=shop"
STORE="$WORK/scry.db"

# --- capture: a reader and a writer on orders, steadily, for ~3 s ------------
"$SCRY" capture proxy --listen 127.0.0.1:0 --upstream "127.0.0.1:$PORT" --store "$STORE" \
  2>"$WORK/proxy.err" &
PROXY_PID=$!
PPORT=$(proxy_port "$WORK/proxy.err" "$PROXY_PID")
[ -n "$PPORT" ] || { cat "$WORK/proxy.err"; echo "the proxy did not start"; exit 1; }
cat >"$WORK/traffic.py" <<'PY'
import sys, time, threading, psycopg2
port = int(sys.argv[1])
def session(kind):
    c = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="shop")
    c.autocommit = True
    cur = c.cursor()
    # The application's pace (what timed replay reproduces), not a wait for a condition.
    for i in range(300):
        k = 1 + (i * 7919) % 300000
        if kind == "read":
            cur.execute("SELECT qty, note FROM orders WHERE id = %s", (k,))
        else:
            cur.execute("UPDATE orders SET qty = qty + 1 WHERE id = %s", (k,))
        cur.fetchall() if kind == "read" else None
        time.sleep(0.01)
    c.close()
ts = [threading.Thread(target=session, args=(k,)) for k in ("read", "write", "read")]
[t.start() for t in ts]
[t.join() for t in ts]
PY
"$PY" "$WORK/traffic.py" "$PPORT" || bad "the workload through the proxy"
kill -INT "$PROXY_PID"
wait "$PROXY_PID"
PROXY_PID=
events=$("$SCRY" workload info --store "$STORE" --json | sed -n 's/.*"events":\([0-9]*\).*/\1/p')
[ "${events:-0}" -ge 900 ] && ok "captured $events events" || bad "captured ${events:-0} events"

ci() { "$SCRY" ci test-migration "$TARGET" --store "$STORE" --format json "$@"; }

"$SCRY" ci test-migration --help | grep -- "--max-lock-wait" >/dev/null && ok "--help lists --max-lock-wait" \
  || bad "--help lacks --max-lock-wait"
"$SCRY" ci test-migration "$TARGET" --max-lock-wait x -- true >/dev/null 2>&1
expect_exit 2 $? "--max-lock-wait x is a usage error"

# --- a known hold: ACCESS EXCLUSIVE for pg_sleep(1) ------------------------------
ci -- psql -Xq -c "BEGIN; LOCK TABLE orders IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(1); COMMIT" \
  >"$WORK/k.json" 2>"$WORK/k.err"
rc=$?; expect_exit 0 $rc "a lock without a gate passes"
held=$(json "$WORK/k.json" "[l['held_ms'] for l in j['locks'] if l['relation']=='orders' and l['mode']=='AccessExclusiveLock'][0]" 2>/dev/null)
echo "     measured hold: ${held:-none} ms (truth: 1000 ms and the COMMIT)"
"$PY" -c "import sys; sys.exit(0 if 900 <= float('${held:-0}') <= 1250 else 1)" \
  && ok "the 1 s ACCESS EXCLUSIVE hold is measured ($held ms)" || { bad "hold measured as ${held:-nothing}"; cat "$WORK/k.err"; }
waited=$(json "$WORK/k.json" "j['queries_waited']" 2>/dev/null)
[ "${waited:-0}" -ge 1 ] && ok "queries waited behind it ($waited)" || bad "no query seen waiting"
stmt=$(json "$WORK/k.json" "j['locks'][0]['statement']" 2>/dev/null)
case "$stmt" in *"LOCK TABLE orders"*) ok "the statement that took it is named";; *) bad "statement: $stmt";; esac

# --- a rewrite that blocks the workload, gated ------------------------------------
ci --max-lock-wait 500 -- psql -Xq \
  -c "ALTER TABLE orders ADD COLUMN x float DEFAULT random(); SELECT pg_sleep(1)" >"$WORK/r.json" 2>"$WORK/r.err"
rc=$?; expect_exit 5 $rc "rewrite under --max-lock-wait 500"
json "$WORK/r.json" "'orders' in j['rewritten']" | grep -q True && ok "the rewrite of orders is reported" \
  || bad "no rewrite reported"
json "$WORK/r.json" "j['locks'][0]['mode']+' '+j['locks'][0]['relation']" | grep -q "AccessExclusiveLock orders" \
  && ok "the lock and table are named" || bad "lock not named"
json "$WORK/r.json" "j['gate']['failures']" | grep -q '^1$' && ok "the gate counts one failure" || bad "gate"
json "$WORK/r.json" "len(j['waits'])" | grep -qv '^0$' && ok "the waiting patterns are listed" || bad "no waiting pattern"
json "$WORK/r.json" "j['locks'][0]['advice'] or ''" | grep -q "backfill" && ok "advice for the rewrite" || bad "no advice"
ci --format text --max-lock-wait 500 -- psql -Xq \
  -c "ALTER TABLE orders ADD COLUMN x float DEFAULT random(); SELECT pg_sleep(1)" >"$WORK/r.txt" 2>&1
grep -q "While the migration ran" "$WORK/r.txt" && grep -q "held AccessExclusiveLock on orders" "$WORK/r.txt" \
  && ok "the text report has the section and its one-line verdict" || { bad "text report"; cat "$WORK/r.txt"; }
ci --format junit --max-lock-wait 500 -- psql -Xq \
  -c "ALTER TABLE orders ADD COLUMN x float DEFAULT random(); SELECT pg_sleep(1)" >"$WORK/r.xml" 2>/dev/null
"$PY" -c "import sys,xml.dom.minidom as m; d=m.parse(sys.argv[1]); sys.exit(0 if any(s.getAttribute('name')=='scry migration impact' for s in d.getElementsByTagName('testsuite')) else 1)" "$WORK/r.xml" \
  && ok "JUnit: a well-formed document with the impact suite" || bad "JUnit impact suite"

# --- the same change done safely ----------------------------------------------------
ci --max-lock-wait 500 -- psql -Xq -c "ALTER TABLE orders ADD COLUMN x float" >"$WORK/s.json" 2>"$WORK/s.err"
rc=$?; expect_exit 0 $rc "safe ADD COLUMN under --max-lock-wait 500"
[ $rc = 0 ] || cat "$WORK/s.err"
json "$WORK/s.json" "len(j['rewritten'])" | grep -q '^0$' && ok "no rewrite for the safe variant" || bad "rewrite reported"

# --- CREATE INDEX vs CREATE INDEX CONCURRENTLY -------------------------------------
ci -- psql -Xq -c "CREATE INDEX orders_customer ON orders (customer_id)" >"$WORK/i.json" 2>/dev/null
json "$WORK/i.json" "[l['mode'] for l in j['locks'] if l['relation']=='orders']" | grep -q ShareLock \
  && ok "CREATE INDEX holds a ShareLock on orders" || bad "no ShareLock for CREATE INDEX"
json "$WORK/i.json" "[l['advice'] for l in j['locks']][0]" | grep -q CONCURRENTLY \
  && ok "advice: CREATE INDEX CONCURRENTLY" || bad "no CONCURRENTLY advice"
ci -- psql -Xq -c "CREATE INDEX CONCURRENTLY orders_customer ON orders (customer_id)" >"$WORK/ic.json" 2>/dev/null
json "$WORK/ic.json" "len(j['locks'])" | grep -q '^0$' && ok "CONCURRENTLY holds no blocking lock" \
  || bad "CONCURRENTLY reported a lock"
json "$WORK/ic.json" "j['new_indexes']" | grep -q orders_customer && ok "the new index is reported" \
  || bad "new index not reported"

# --- a foreign key with and without NOT VALID ---------------------------------------
ci -- psql -Xq -c "ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers" \
  >"$WORK/fk.json" 2>/dev/null
json "$WORK/fk.json" "sorted(set(l['relation'] for l in j['locks']))" | grep -q "'orders'" \
  && ok "an FK without NOT VALID locks orders while it validates" || bad "FK lock not reported"
json "$WORK/fk.json" "[l['advice'] for l in j['locks']][0]" | grep -q "NOT VALID" \
  && ok "advice: NOT VALID then VALIDATE" || bad "no NOT VALID advice"
ci -- psql -Xq -c "ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers NOT VALID" \
  -c "ALTER TABLE orders VALIDATE CONSTRAINT orders_customer_fk" >"$WORK/fkv.json" 2>/dev/null
json "$WORK/fkv.json" "len(j['locks'])" | grep -q '^0$' && ok "NOT VALID + VALIDATE holds no blocking lock" \
  || bad "NOT VALID reported a lock: $(json "$WORK/fkv.json" "j['locks']")"

# --- a backfill UPDATE: the workload's UPDATEs wait on row locks ----------------------
ci -- psql -Xq -c "UPDATE orders SET note = upper(note); SELECT pg_sleep(1)" >"$WORK/u.json" 2>/dev/null
json "$WORK/u.json" "[w['lock'] for w in j['waits'] if 'UPDATE orders SET qty' in w['query'] and 'UPDATE orders SET note' in w['blocker']]" | grep -qE "transactionid|tuple|extend" \
  && ok "the workload's UPDATEs waited behind the backfill" || bad "no wait behind the backfill: $(json "$WORK/u.json" "j['waits']")"
json "$WORK/u.json" "[w['advice'] for w in j['waits']][0]" | grep -q batches \
  && ok "advice: backfill in batches" || bad "no batching advice"

# --- --no-impact: no section ----------------------------------------------------------
ci --no-impact -- psql -Xq -c "SELECT 1" >"$WORK/n.json" 2>/dev/null
"$PY" -c "import json,sys; sys.exit(1 if 'migration_impact' in json.load(open(sys.argv[1])) else 0)" "$WORK/n.json" \
  && ok "--no-impact: no migration_impact" || bad "--no-impact still measured"

scenario_end
