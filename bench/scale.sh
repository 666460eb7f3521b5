#!/usr/bin/env bash
# Scale benchmark (issue 14, docs/benchmarks.md "Scale"): a store of EVENTS
# events shaped like `pgbench -S` through the proxy plus RARE rare patterns,
# then `scry ci test-migration` with the default budget and with --budget off,
# measuring wall time and peak RSS (/usr/bin/time -v), and the store's bytes
# per event.
#
# Usage: bench/scale.sh [BUILD_DIR]            (default ./build)
#   EVENTS=N   events in the store (default 10000000)
#   RARE=N     rare patterns, 50 executions each (default 300)
#   SOURCE=gen (default) writes the store with bench_gen_store through the
#              public store API (minutes instead of hours); SOURCE=proxy runs
#              pgbench -S through `scry capture proxy` until EVENTS are
#              captured, plus the rare patterns through psql.
#   OFF=0      skip the --budget off run (it replays every event)
# Check it at a tiny size:  EVENTS=50000 RARE=20 bench/scale.sh
set -euo pipefail
BUILD=$(cd "${1:-build}" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
SCRY=$BUILD/scry
GEN=$BUILD/bench/bench_gen_store
EVENTS=${EVENTS:-10000000}
RARE=${RARE:-300}
SOURCE=${SOURCE:-gen}
OFF=${OFF:-1}
export SCRY_NO_PROGRESS=1
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install time)"; exit 1; }

WORK=$(mktemp -d /tmp/scry-bench-scale.XXXXXX)
chmod 755 "$WORK"
PROXY=
cleanup() {
  [ -n "$PROXY" ] && kill "$PROXY" 2>/dev/null || true
  bash "$SRC/tests/harness/pgcluster.sh" stop "$WORK/pg" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(bash "$SRC/tests/harness/pgcluster.sh" start "$WORK/pg")
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
psql -XqAt -d postgres -c "CREATE DATABASE bench" >/dev/null
SCALE=10 # 1,000,000 accounts
pgbench -i -q -s $SCALE bench >/dev/null 2>&1
TARGET="host=127.0.0.1 port=$PORT user=postgres dbname=bench"
STORE=$WORK/scale.db

t0=$(date +%s.%N)
if [ "$SOURCE" = gen ]; then
  "$GEN" "$STORE" "$EVENTS" "$RARE" 8 $((SCALE * 100000))
else
  "$SCRY" capture proxy --listen 127.0.0.1:0 --upstream "127.0.0.1:$PORT" --store "$STORE" 2>"$WORK/proxy.err" &
  PROXY=$!
  for _ in $(seq 1 50); do
    PPORT=$(sed -n 's/.*capturing on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/proxy.err" | head -1)
    [ -n "${PPORT:-}" ] && break
    sleep 0.1
  done
  for k in $(seq 1 "$RARE"); do
    expr=$(printf ' + aid%.0s' $(seq 1 "$k"))
    for i in $(seq 1 50); do echo "SELECT abalance$expr FROM pgbench_accounts WHERE aid = $i;"; done
  done | psql -Xq -h 127.0.0.1 -p "$PPORT" -d bench >/dev/null
  pgbench -S -n -c 8 -j 2 -t $(( (EVENTS - RARE * 50) / 8 + 1 )) -h 127.0.0.1 -p "$PPORT" bench >/dev/null
  kill -INT "$PROXY"; wait "$PROXY" || true; PROXY=
fi
t1=$(date +%s.%N)
"$SCRY" workload info --store "$STORE" --json >"$WORK/info.json"
/usr/bin/python3 - "$WORK/info.json" "$t0" "$t1" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"store: {d['events']} events, {d['patterns']} patterns, {d['file_bytes']} bytes "
      f"= {d['file_bytes'] / max(d['events'], 1):.1f} B/event (built in {float(sys.argv[3]) - float(sys.argv[2]):.0f} s)")
PY

run_ci() { # label, extra options...
  local label=$1; shift
  /usr/bin/time -v "$SCRY" ci test-migration "$TARGET" --store "$STORE" --format json --output "$WORK/$label.json" \
    "$@" -- true 2>"$WORK/$label.time" >/dev/null || { echo "ci $label failed:"; cat "$WORK/$label.time"; return 1; }
  /usr/bin/python3 - "$WORK/$label.json" "$WORK/$label.time" "$label" <<'PY'
import json, re, sys
d = json.load(open(sys.argv[1]))
t = open(sys.argv[2]).read()
wall = re.search(r"Elapsed \(wall clock\) time.*: (.*)", t).group(1)
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
pats = d["patterns"]
short = sum(1 for p in pats if p.get("class") == "insufficient-samples")
s = d.get("sampling")
print(f"ci {sys.argv[3]}: wall {wall}, peak RSS {rss / 1024:.0f} MB, {len(pats)} patterns, "
      f"{short} insufficient-samples" + (f", replayed {s['replayed']} of {s['captured']} (budget {s['budget']})" if s else ", everything replayed"))
PY
}
run_ci default
[ "$OFF" = 1 ] && run_ci budget-off --budget off
exit 0
