#!/usr/bin/env bash
# End-to-end: the new-column scenario captured INSIDE transactions (as a
# psycopg2/SQLAlchemy application or libpq BEGIN ... COMMIT sends it).
# Staging has orders.region; production does not. On the baseline clone the
# first region query fails with 42703 and the rest of its transaction with
# 25P02; the verdict attributes those to the first failure, so the region
# patterns are only-in-candidate, judged against an index on region, and
# `scry ci test-migration` exits 5 naming them. Then `scry diff` refuses a
# run against itself unless --allow-incomplete.
set -uo pipefail

. "${SCRY_SOURCE_DIR:?SCRY_SOURCE_DIR is not set}/tests/harness/scenario.sh" # ok, bad, expect_exit, cleanup
scenario_begin vtxn

scenario_cluster
for db in app staging; do
  psql -XqAt -d postgres -c "CREATE DATABASE $db" >/dev/null
  psql -Xq -d $db >/dev/null <<'SQL'
CREATE TABLE orders (id int PRIMARY KEY, customer int NOT NULL, total int NOT NULL);
INSERT INTO orders SELECT g, g % 1000, g % 997 FROM generate_series(1, 25000) g;
VACUUM ANALYZE orders;
SQL
done
MIGRATION="ALTER TABLE orders ADD COLUMN region text; UPDATE orders SET region = 'r' || (id % 50)"
psql -Xq -d staging -c "$MIGRATION" >/dev/null
TARGET="host=127.0.0.1 port=$PORT user=postgres dbname=app"
STORE="$WORK/scry.db"

# The capture proxy into store $1; sets PPORT, the port to send traffic to.
start_proxy() {
  "$SCRY" capture proxy --listen 127.0.0.1:0 --upstream "127.0.0.1:$PORT" --store "$1" 2>"$WORK/proxy.err" &
  PROXY_PID=$!
  PPORT=
  for _ in $(seq 1 50); do
    PPORT=$(sed -n 's/.*capturing on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/proxy.err" | head -1)
    [ -n "$PPORT" ] && break
    sleep 0.1
  done
  [ -n "$PPORT" ] || { cat "$WORK/proxy.err"; echo "the proxy did not start"; exit 1; }
}
stop_proxy() { kill -INT "$PROXY_PID"; wait "$PROXY_PID"; PROXY_PID=; }

# --- capture staging traffic through the proxy, every request in a transaction ---
start_proxy "$STORE"
{
  for i in $(seq 1 12); do
    echo "BEGIN;"
    echo "SELECT total FROM orders WHERE id = $((i * 37 % 25000 + 1));"
    echo "SELECT count(*) FROM orders WHERE region = 'r$((i % 50))';"
    echo "SELECT sum(total) FROM orders WHERE region = 'r$((i * 7 % 50))';"
    echo "SELECT customer FROM orders WHERE id = $((i * 91 % 25000 + 1));"
    echo "COMMIT;"
  done
} >"$WORK/workload.sql"
psql -Xq -h 127.0.0.1 -p "$PPORT" -d staging -f "$WORK/workload.sql" >/dev/null || bad "workload through the proxy"
stop_proxy

# --- the gate: exit 5, naming both region patterns ---------------------------------
"$SCRY" ci test-migration "$TARGET" --store "$STORE" --format json --output "$WORK/ci.json" \
  -- psql -Xq -v ON_ERROR_STOP=1 -c "$MIGRATION" >"$WORK/ci.out" 2>"$WORK/ci.err"
rc=$?; expect_exit 5 $rc "transaction-wrapped capture of a new column without an index"
[ $rc = 5 ] || cat "$WORK/ci.err" "$WORK/ci.json"
python3 - "$WORK/ci.json" <<'PY' && ok "both region patterns fail as only-in-candidate" || bad "region patterns not flagged"
import json, sys
r = json.load(open(sys.argv[1]))
pats = r.get("patterns") or r.get("verdict", {}).get("patterns")
region = [p for p in pats if "region" in p["query"]]
assert len(region) == 2, region
for p in region:
    assert p["class"] == "only-in-candidate" and p["flagged"], p
PY
python3 - "$WORK/ci.json" <<'PY' && ok "patterns aborted on the baseline were repeated and judged" || bad "aborted patterns not judged"
import json, sys
r = json.load(open(sys.argv[1]))
pats = r.get("patterns") or r.get("verdict", {}).get("patterns")
ids = [p for p in pats if "WHERE id" in p["query"]]
assert len(ids) == 2, ids
for p in ids:  # 12 captured executions each: repeated on their own up to 20 pairs
    assert p["class"] == "unchanged" and p["pairs"] >= 20, p
after = [p for p in ids if "customer" in p["query"]][0]
assert after["baseline_aborted"] == 12, after  # after the region query: aborted on the baseline in the replay
PY

# --- two plain replay runs around a dropped index: scry diff names the plan change ---
S="host=127.0.0.1 port=$PORT user=postgres dbname=staging"
"$SCRY" replay --store "$STORE" --target "$S" --label before --repeat 3 >/dev/null 2>"$WORK/r1.err" \
  || { bad "replay before"; cat "$WORK/r1.err"; }
psql -Xq -d staging -c "ALTER TABLE orders DROP CONSTRAINT orders_pkey" >/dev/null
"$SCRY" replay --store "$STORE" --target "$S" --label after --repeat 3 >/dev/null 2>"$WORK/r2.err" \
  || { bad "replay after"; cat "$WORK/r2.err"; }
"$SCRY" diff --store "$STORE" --baseline before --candidate after >"$WORK/diff.out" 2>&1
rc=$?; expect_exit 5 $rc "diff of two replay runs around a dropped index"
grep -q "Index Scan using orders_pkey on orders -> Seq Scan on orders" "$WORK/diff.out" \
  && ok "diff names Index Scan -> Seq Scan from the plans the runs stored" \
  || { bad "no plan change in the diff"; cat "$WORK/diff.out"; }

# --- scry diff refuses a run against itself ------------------------------------------
"$SCRY" diff --store "$STORE" --baseline before --candidate before >/dev/null 2>"$WORK/self.err"
rc=$?; expect_exit 1 $rc "diff of a run against itself is refused"
grep -q "same run" "$WORK/self.err" && ok "... and says why" || bad "no reason given: $(cat "$WORK/self.err")"
"$SCRY" diff --store "$STORE" --baseline before --candidate before --allow-incomplete >/dev/null 2>&1
expect_exit 0 $? "... unless --allow-incomplete"

# --- crossed row locks, --repeat 5, a no-op migration: exit 0 -------------------------
STORE2="$WORK/locks.db"
start_proxy "$STORE2"
for k in 1 2 3 4 5 6; do
  {
    for j in 1 2 3; do
      a=$(( k % 2 ? j : 4 - j ))
      echo "BEGIN;"
      [ $((k % 2)) = 0 ] && echo "SELECT 1;"
      echo "UPDATE orders SET total = total + 1 WHERE customer = $a;"
      echo "SELECT pg_sleep(0.005);"
      echo "COMMIT;"
    done
  } | psql -Xq -h 127.0.0.1 -p "$PPORT" -d app >/dev/null || bad "lock workload through the proxy"
done
stop_proxy
"$SCRY" ci test-migration "$TARGET" --store "$STORE2" --repeat 5 --timeout 5000 -- true \
  >"$WORK/locks.out" 2>"$WORK/locks.err"
rc=$?; expect_exit 0 $rc "crossed row locks, --repeat 5, no-op migration"
[ $rc = 0 ] || cat "$WORK/locks.out" "$WORK/locks.err"

scenario_end
