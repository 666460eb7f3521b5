#!/usr/bin/env bash
# bench/verdict_accuracy.sh - the verdict's accuracy figures (docs/verdict.md):
#
#  1. tests/test_verdict's suites: A/A (same database both sides) and injected
#     1.5x / 2x / 10x sleeps and a dropped index, measured by the test's own
#     interleaved loop and through the replay engine; REPS repetitions with
#     LOAD busy-loop children.
#  2. `scry ci test-migration` end to end on a throwaway cluster, REPS times
#     each, with LOAD busy-loop processes running the whole time:
#       aa      a no-op migration                      -> every exit 0
#       index   DROP INDEX under a hot pattern         -> every exit 5
#       plan15  DROP INDEX whose true slowdown is ~1.5x (calibrated below) -> exit 5
#       demo    `scry demo --json`: the 4 region patterns flagged
#       locks   crossed row locks, --repeat 5, no-op migration: exit 0, timeouts,
#               wall time against the same workload read-only
#
#   bench/verdict_accuracy.sh [BUILD_DIR] [REPS] [LOAD] [SUITES]
#   (defaults: build 20 2 "test aa index plan15 demo locks")
#
# Run it alone on the machine: the figures measure noise. `... build 1 2` checks
# that it works in a minute or two.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
reps=${2:-20}
load=${3:-2}
suites=${4:-"test aa index plan15 demo locks"}
case "$build" in /*) ;; *) build="$here/$build" ;; esac
SCRY="$build/scry"
[ -x "$SCRY" ] || { echo "verdict_accuracy: $SCRY not found; build first (cmake --build $build)" >&2; exit 1; }
want() { case " $suites " in *" $1 "*) return 0 ;; esac; return 1; }

work=$(mktemp -d /tmp/scry-bench-accuracy.XXXXXX)
chmod 755 "$work"
burners=()
proxy=
burn_start() { for _ in $(seq 1 "$load"); do (while :; do :; done) & burners+=($!); done; }
burn_stop() { for p in "${burners[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; burners=(); }
cleanup() {
  burn_stop
  [ -n "$proxy" ] && kill "$proxy" 2>/dev/null
  bash "$here/tests/harness/pgcluster.sh" stop "$work/pg" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

echo "# $(date -u +%FT%TZ) reps=$reps load=$load nproc=$(nproc) loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"

# ---- 1. the test program's suites --------------------------------------------------
if want test; then
  bin="$build/tests/test_verdict"
  if [ -x "$bin" ]; then
    SCRY_ACCURACY_REPS="$reps" SCRY_ACCURACY_LOAD="$load" SCRY_INJECTED_LOAD="$load" \
      "$bin" 2>&1 | grep -E '^(ACCURACY|calibration|pg_sleep|(replay )?(1\.5x|2x|10x|index) rep)|false alarm|missed|Checks'
  else
    echo "test: $bin not found (skipped)"
  fi
fi

# ---- 2. end to end through scry ci test-migration -----------------------------------
want aa || want index || want plan15 || want locks || want demo || exit 0
port=$(bash "$here/tests/harness/pgcluster.sh" start "$work/pg") || { echo "cannot start PostgreSQL"; exit 1; }
export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres
psql -XqAt -d postgres -c "CREATE DATABASE app" >/dev/null
psql -Xq -d app >/dev/null <<'SQL'
CREATE TABLE t (id int PRIMARY KEY, k int NOT NULL, v text NOT NULL, pad text);
INSERT INTO t SELECT g, g % 2000, md5(g::text), repeat('x', 40) FROM generate_series(1, 60000) g;
CREATE INDEX t_k ON t (k);
CREATE TABLE acct (id int PRIMARY KEY, balance bigint NOT NULL);
INSERT INTO acct SELECT g, 1000 FROM generate_series(1, 100) g;
VACUUM ANALYZE;
SQL
target="host=127.0.0.1 port=$port user=postgres dbname=app"

# Captures the SQL on stdin (one psql session per file argument) into store $1.
capture() { # STORE FILE...
  local store=$1; shift
  "$SCRY" capture proxy --listen 127.0.0.1:0 --upstream "127.0.0.1:$port" --store "$store" 2>"$work/proxy.err" &
  proxy=$!
  local pport=
  for _ in $(seq 1 50); do
    pport=$(sed -n 's/.*capturing on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/proxy.err" | head -1)
    [ -n "$pport" ] && break
    sleep 0.1
  done
  [ -n "$pport" ] || { cat "$work/proxy.err"; echo "the proxy did not start"; exit 1; }
  for f in "$@"; do psql -Xq -h 127.0.0.1 -p "$pport" -d app -f "$f" >/dev/null; done
  kill -INT "$proxy"; wait "$proxy"; proxy=
}

# Median execution time (ms) of a query, by EXPLAIN ANALYZE, with optional SETs.
exec_ms() { # SQL [SETS]
  for _ in 1 2 3 4 5 6 7; do
    psql -XqAt -d app -c "${2:-} EXPLAIN (ANALYZE, FORMAT JSON) $1" | python3 -c \
      'import json,sys; print(json.load(sys.stdin)[0]["Execution Time"])'
  done | sort -g | sed -n 4p
}

# The plan-changing 1.5x: the range width W whose sequential scan (the index
# dropped) is closest to 1.5x its bitmap index scan, measured here.
width=0
if want plan15; then
  best=9
  for w in 10 20 40 80 120 160 240 320 480 640; do
    q="SELECT count(*), sum(length(v)) FROM t WHERE k BETWEEN 100 AND $((100 + w))"
    a=$(exec_ms "$q"); b=$(exec_ms "$q" "SET enable_bitmapscan = off; SET enable_indexscan = off;")
    r=$(python3 -c "print(round($b / $a, 2))")
    d=$(python3 -c "print(abs($r - 1.5))")
    echo "calibration plan15: width $w: index $a ms, seq scan $b ms, ratio $r"
    if python3 -c "import sys; sys.exit(0 if $d < $best else 1)"; then best=$d; width=$w; ratio=$r; fi
  done
  echo "calibration plan15: width $width (true slowdown ${ratio}x)"
fi

# Workloads: hot lookups on k and a range query of width W, 30 executions each.
{
  for i in $(seq 1 30); do
    echo "SELECT count(*) FROM t WHERE k = $((i * 7 % 2000));"
    echo "SELECT v FROM t WHERE id = $((i * 997 % 60000 + 1));"
    [ "$width" -gt 0 ] && echo "SELECT count(*), sum(length(v)) FROM t WHERE k BETWEEN $((i * 13 % 1000)) AND $((i * 13 % 1000 + width));"
  done
} >"$work/read.sql"
capture "$work/read.db" "$work/read.sql"

ci_runs() { # NAME STORE EXPECT MIGRATION...
  local name=$1 store=$2 expect=$3; shift 3
  local hit=0 other=0
  for i in $(seq 1 "$reps"); do
    "$SCRY" ci test-migration "$target" --store "$store" --format json --output "$work/$name.json" -- "$@" \
      >/dev/null 2>"$work/$name.err"
    rc=$?
    if [ "$rc" = "$expect" ]; then hit=$((hit + 1)); else other=$((other + 1)); fi
    echo "$name rep $i: exit $rc $(python3 - "$work/$name.json" <<'PY' 2>/dev/null
import json, sys
d = json.load(open(sys.argv[1])); d = d.get("verdict", d)
print("; ".join("%s %s %.2fx [%s-%s] work %s->%s" % (p["class"], p["query"][:50], p["ratio"] or 0, p["ratio_low"], p["ratio_high"],
      p.get("baseline_work"), p.get("candidate_work")) for p in d["patterns"] if p["flagged"]))
PY
)"
  done
  echo "ACCURACY ci $name: expected exit $expect in $hit/$reps runs ($other others), load $load"
}

burn_start
want aa && ci_runs aa "$work/read.db" 0 true
want index && ci_runs index "$work/read.db" 5 psql -Xq -c "DROP INDEX t_k"
if want plan15 && [ "$width" -gt 0 ]; then
  # A hash index keeps the k = lookups indexed; only the range query loses its index.
  ci_runs plan15 "$work/read.db" 5 psql -Xq -c "CREATE INDEX t_k_hash ON t USING hash (k); DROP INDEX t_k"
fi

if want demo; then
  ok=0
  for i in $(seq 1 "$reps"); do
    "$SCRY" demo --json >"$work/demo.json" 2>/dev/null
    n=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(1 for p in d["migration"]["patterns"] if "region" in p["normalized"] and p["fails"]))' "$work/demo.json" 2>/dev/null || echo 0)
    echo "demo rep $i: $n of 4 region patterns flagged"
    [ "$n" = 4 ] && ok=$((ok + 1))
  done
  echo "ACCURACY demo: 4/4 region patterns flagged in $ok/$reps runs, load $load"
fi

if want locks; then
  # Six sessions; each transaction locks one row; odd and even sessions take them in opposite orders.
  files=() rfiles=()
  for k in 1 2 3 4 5 6; do
    for j in 1 2 3 4 5 6 7 8; do
      a=$(( k % 2 ? j : 9 - j ))
      echo "BEGIN;"; [ $((k % 2)) = 0 ] && echo "SELECT 1;"
      echo "UPDATE acct SET balance = balance + 1 WHERE id = $a;"
      echo "SELECT pg_sleep(0.002);"; echo "COMMIT;"
    done >"$work/locks$k.sql"
    sed 's/UPDATE acct SET balance = balance + 1 WHERE id = \([0-9]*\);/SELECT balance FROM acct WHERE id = \1;/' \
      "$work/locks$k.sql" >"$work/reads$k.sql"
    files+=("$work/locks$k.sql"); rfiles+=("$work/reads$k.sql")
  done
  capture "$work/locks.db" "${files[@]}"
  capture "$work/reads.db" "${rfiles[@]}"
  for kind in locks reads; do
    zero=0 total_s=0
    for i in $(seq 1 "$reps"); do
      t0=$(date +%s.%N)
      "$SCRY" ci test-migration "$target" --store "$work/$kind.db" --repeat 5 --timeout 5000 -- true >/dev/null 2>&1
      rc=$?
      t1=$(date +%s.%N)
      timeouts=$(python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(c.execute("SELECT coalesce(sum(timeouts), 0) FROM (SELECT timeouts FROM runs ORDER BY id DESC LIMIT 2)").fetchone()[0])' "$work/$kind.db")
      s=$(python3 -c "print(round($t1 - $t0, 2))")
      total_s=$(python3 -c "print($total_s + $s)")
      echo "$kind rep $i: exit $rc, timeouts $timeouts, wall $s s"
      [ "$rc" = 0 ] && [ "$timeouts" = 0 ] && zero=$((zero + 1))
    done
    echo "ACCURACY $kind --repeat 5 no-op migration: exit 0 with 0 timeouts in $zero/$reps runs, mean wall $(python3 -c "print(round($total_s / $reps, 2))") s"
  done
fi
burn_stop
echo "# loadavg after: $(cut -d' ' -f1-3 /proc/loadavg)"
