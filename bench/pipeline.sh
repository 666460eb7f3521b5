#!/usr/bin/env bash
# Benchmarks of the whole cycle (docs/benchmarks.md):
#   1. `scry demo` end to end (its own cluster, capture, migration, fix), median of RUNS;
#   2. `scry ci test-migration` on the demo's 25,000-order database with a
#      10,000-statement workload captured through `scry capture proxy`, median of RUNS.
# Usage: bench/pipeline.sh [BUILD_DIR] (default ./build); RUNS=N (default 3).
set -euo pipefail
BUILD=${1:-build}
SCRY=$(cd "$BUILD" && pwd)/scry
RUNS=${RUNS:-3}
STATEMENTS=${STATEMENTS:-10000}
export SCRY_NO_PROGRESS=1

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
now() { date +%s.%N; }

echo "== scry demo, $RUNS runs"
demo_times=()
for i in $(seq 1 "$RUNS"); do
  t0=$(now)
  "$SCRY" demo --json >/tmp/scry-bench-demo.json
  t1=$(now)
  w=$(echo "$t1 - $t0" | bc)
  demo_times+=("$w")
  echo "run $i: ${w} s wall; $(/usr/bin/python3 -c 'import json;d=json.load(open("/tmp/scry-bench-demo.json"));print("regressions", d["migration"]["failures"], "after fix", d["after_fix"]["failures"], "seconds", d["seconds"])')"
done
demo_median=$(printf '%s\n' "${demo_times[@]}" | median)
echo "demo median: ${demo_median} s"

echo "== ci test-migration, ${STATEMENTS}-statement workload, $RUNS runs"
"$SCRY" demo --keep --json >/tmp/scry-bench-demo.json 2>/tmp/scry-bench-demo.err
PORT=$(sed -n 's/.*port=\([0-9]*\) user=postgres dbname=shop.*/\1/p' /tmp/scry-bench-demo.err | head -1)
DIR=$(sed -n 's/.*pg_ctl -D \(.*\)\/data stop.*/\1/p' /tmp/scry-bench-demo.err | head -1)
BINDIR=$(sed -n 's/.*stop it with: \(.*\)\/pg_ctl .*/\1/p' /tmp/scry-bench-demo.err | head -1)
[ -n "$PORT" ] && [ -n "$DIR" ] || { cat /tmp/scry-bench-demo.err; exit 1; }
PROXY=
stop_all() {
  [ -n "$PROXY" ] && kill "$PROXY" 2>/dev/null || true
  if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$BINDIR/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true
  else "$BINDIR/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1 || true; fi
  rm -rf "$DIR"
}
trap stop_all EXIT
STORE=$(mktemp -u /tmp/scry-bench-ci.XXXXXX.db)
"$SCRY" capture proxy --listen 127.0.0.1:0 --upstream "127.0.0.1:$PORT" --store "$STORE" 2>/tmp/scry-bench-proxy.err &
PROXY=$!
for _ in $(seq 1 50); do
  PPORT=$(sed -n 's/.*capturing on 127\.0\.0\.1:\([0-9]*\).*/\1/p' /tmp/scry-bench-proxy.err | head -1)
  [ -n "${PPORT:-}" ] && break; sleep 0.1
done
# The production queries of the demo, literals varying, in 4 sessions.
per=$((STATEMENTS / 4))
for s in 1 2 3 4; do
  awk -v n="$per" -v s="$s" 'BEGIN { for (i = 0; i < n; i++) { k = i * 4 + s; m = k % 5;
    if (m == 0) printf "SELECT id, customer_id, status, total_cents, created_at FROM orders WHERE id = %d;\n", 1 + (k * 7919) % 25000;
    else if (m == 1) printf "SELECT id, status, total_cents, created_at FROM orders WHERE customer_id = %d ORDER BY created_at DESC LIMIT 10;\n", 1 + (k * 104729) % 2500;
    else if (m == 2) printf "SELECT count(*) FROM orders WHERE status = %s;\n", (k % 2 ? "'"'"'pending'"'"'" : "'"'"'paid'"'"'");
    else if (m == 3) printf "SELECT id, customer_id, total_cents FROM orders WHERE created_at >= '"'"'2025-0%d-%02d'"'"' ORDER BY created_at DESC LIMIT 20;\n", 1 + k % 6, 1 + k % 28;
    else printf "SELECT c.name, c.email, o.id, o.total_cents FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.id = %d;\n", 1 + (k * 613) % 2500 } }' \
    | psql -Xq -h 127.0.0.1 -p "$PPORT" -U postgres -d shop >/dev/null &
done
wait $(jobs -p | grep -v "^$PROXY$") 2>/dev/null || true
kill -INT "$PROXY"; wait "$PROXY" || true; PROXY=
"$SCRY" workload info --store "$STORE"
MIG="ALTER TABLE orders ADD COLUMN region VARCHAR(50); UPDATE orders SET region = CASE WHEN (id % 5) = 0 THEN 'west' WHEN (id % 5) = 1 THEN 'east' WHEN (id % 5) = 2 THEN 'central' WHEN (id % 5) = 3 THEN 'south' ELSE 'north' END;"
ci_times=()
for i in $(seq 1 "$RUNS"); do
  t0=$(now)
  set +e
  "$SCRY" ci test-migration "host=127.0.0.1 port=$PORT user=postgres dbname=shop" --store "$STORE" \
    --format json --output /tmp/scry-bench-ci.json -- psql -Xq -c "$MIG"
  rc=$?
  set -e
  t1=$(now)
  w=$(echo "$t1 - $t0" | bc)
  ci_times+=("$w")
  echo "run $i: ${w} s wall, exit $rc"
done
ci_median=$(printf '%s\n' "${ci_times[@]}" | median)
echo "ci test-migration median: ${ci_median} s (${STATEMENTS} statements replayed on each clone)"
rm -f "$STORE" "$STORE"-*
echo "RESULT demo_median_s=$demo_median ci_median_s=$ci_median"
