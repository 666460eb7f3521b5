#!/usr/bin/env bash
# bench/impact.sh - the migration-impact measurements (docs/impact.md):
#  1. accuracy: `scry ci test-migration` of a migration holding ACCESS
#     EXCLUSIVE on pgbench_accounts for a known time (LOCK TABLE + pg_sleep(1)),
#     HOLDS times; prints each reported hold minus 1000 ms;
#  2. overhead: fast replays of a pgbench -S capture with and without the
#     sampler polling the same server (bench_impact), RUNS pairs.
#
#   bench/impact.sh [BUILD_DIR]        env: SCALE=10 CLIENTS=4 TX=3000 RUNS=7 HOLDS=5
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
scry=$build/scry
prog=$build/bench/bench_impact
for t in "$scry" "$prog"; do [ -x "$t" ] || { echo "missing $t: build first (make build)" >&2; exit 1; }; done
SCALE=${SCALE:-10}; CLIENTS=${CLIENTS:-4}; TX=${TX:-3000}; RUNS=${RUNS:-7}; HOLDS=${HOLDS:-5}
work=$(mktemp -d /tmp/scry-bench-impact.XXXXXX)
chmod 755 "$work"
proxy=
cleanup() { [ -n "$proxy" ] && kill "$proxy" 2>/dev/null; bash "$src/tests/harness/pgcluster.sh" stop "$work/c" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
port=$(bash "$src/tests/harness/pgcluster.sh" start "$work/c")
export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres
psql -Xq -d postgres -c "CREATE DATABASE bench" >/dev/null
pgbench -q -i -s "$SCALE" bench >/dev/null 2>&1
"$scry" capture proxy --listen 127.0.0.1:0 --upstream "127.0.0.1:$port" --store "$work/s.db" 2>"$work/proxy.err" &
proxy=$!
pport=
for _ in $(seq 1 100); do
  pport=$(sed -n 's/.*capturing on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/proxy.err" | head -1)
  [ -n "$pport" ] && break; sleep 0.05
done
pgbench -n -S -c "$CLIENTS" -t "$TX" -h 127.0.0.1 -p "$pport" bench >/dev/null
kill -INT "$proxy"; wait "$proxy" || true; proxy=
echo "== accuracy: a 1000 ms ACCESS EXCLUSIVE hold, $HOLDS times"
for i in $(seq 1 "$HOLDS"); do
  "$scry" ci test-migration "host=127.0.0.1 port=$port user=postgres dbname=bench" --store "$work/s.db" \
    --format json --output "$work/h.json" -- \
    psql -Xq -c "BEGIN; LOCK TABLE pgbench_accounts IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(1); COMMIT" 2>/dev/null || true
  /usr/bin/python3 -c "import json; j=json.load(open('$work/h.json'))['migration_impact']; l=[x for x in j['locks'] if x['relation']=='pgbench_accounts' and x['mode']=='AccessExclusiveLock'][0]; print('hold %d: %.1f ms reported, error %+.1f ms' % ($i, l['held_ms'], l['held_ms'] - 1000))"
done
echo "== overhead: fast replay with and without the sampler, $RUNS pairs"
"$prog" "$work/s.db" "host=127.0.0.1 port=$port user=postgres dbname=bench" "$RUNS" "$CLIENTS"
