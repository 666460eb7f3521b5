#!/usr/bin/env bash
# bench/replay.sh - replay throughput and timing, against pgbench and pgreplay,
# in one run on one throwaway PostgreSQL server. Results: docs/benchmarks.md.
#
#   bench/replay.sh [BUILD_DIR]
#
# Environment (defaults): SCALE=10 CLIENTS=8 CAPTURE_TX=6000 RUN_SECONDS=5 RUNS=7
#                         LAG_SECONDS=60 LAG_RATE=400 MANY=2000
#
# 1. pgbench -S (SCALE, CLIENTS) runs CAPTURE_TX transactions per client with
#    log_statement=all into a csvlog; bench_replay imports the log into a scry
#    store. A fixed count per client (-t, not -T) gives sessions of equal length:
#    a replay keeps each session whole, so with a -T capture (sessions measured
#    from 3.6k to 6.8k statements) its last seconds run with fewer sessions than
#    pgbench has clients, which measures the capture's imbalance, not the engine.
# 2. RUNS times, alternating: pgbench -S itself (same statements, same clients;
#    with one client thread like scry, -j 1, and with two, -j 2),
#    `scry replay --mode fast --concurrency CLIENTS`, and `pgreplay -c` of the same
#    log as fast as it goes (-s 10000 -j). The machine is shared and noisy, so
#    besides the medians of each tool, the ratios are computed per run (the
#    three tools ran within seconds of each other) and their median reported.
# 3. A LAG_SECONDS capture of pgbench -S at LAG_RATE tps (server far from
#    saturated) replayed with `scry replay --mode timed --speed 1`: start lag,
#    as is and under `chrt -f 10` (real-time scheduling, when allowed), beside
#    the lateness of a bare timerfd wakeup on this machine (the floor).
# 4. MANY overlapping sessions (each sleeps 1 s, then reads) at concurrency MANY.
# 5. Cancellation: 64 sessions busy in pg_sleep, scry_replay_cancel() from
#    another thread after 1 s; time until scry_replay_run() returns (3 times).
# 6. Read/write: pgbench's built-in TPC-B-like script (7 statements per
#    transaction) captured through `scry capture proxy` (TPCB_TX transactions
#    per client), then RUNS times, alternating: pgbench itself (-j 1 and -j 2,
#    statements/s = tps x 7) and `scry replay --mode fast --concurrency CLIENTS`
#    with writes rolled back (the captured BEGIN ... END runs as BEGIN ...
#    ROLLBACK). ONLY=tpcb runs this section alone; a quick check at tiny size:
#    ONLY=tpcb SCALE=1 CLIENTS=2 TPCB_TX=50 RUN_SECONDS=1 RUNS=1 bench/replay.sh
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$src/build}" && pwd)
scry=$build/scry
importer=$build/bench/bench_replay
[ -x "$importer" ] || importer=$build/bench_replay
for tool in "$scry" "$importer"; do [ -x "$tool" ] || { echo "missing $tool: build first (make build)" >&2; exit 1; }; done
command -v pgbench >/dev/null || { echo "pgbench not found (apt-get install postgresql-contrib/postgresql)" >&2; exit 1; }
[ "${ONLY:-}" = tpcb ] || command -v pgreplay >/dev/null || { echo "pgreplay not found (apt-get install pgreplay)" >&2; exit 1; }

SCALE=${SCALE:-10}; CLIENTS=${CLIENTS:-8}; CAPTURE_TX=${CAPTURE_TX:-6000}
RUN_SECONDS=${RUN_SECONDS:-5}; RUNS=${RUNS:-7}; LAG_SECONDS=${LAG_SECONDS:-60}
LAG_RATE=${LAG_RATE:-400}; MANY=${MANY:-2000}; TPCB_TX=${TPCB_TX:-2000}; ONLY=${ONLY:-}

work=$(mktemp -d /tmp/scry-bench-replay.XXXXXX)
chmod 755 "$work"
cleanup() { bash "$src/tests/harness/pgcluster.sh" stop "$work/c" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

cat > "$work/extra.conf" <<EOF
max_connections = $((MANY + 100))
logging_collector = on
log_destination = 'csvlog'
log_directory = 'log'
log_filename = 'pg.log'
log_connections = on
log_disconnections = on
log_min_messages = error
log_min_error_statement = log
lc_messages = 'C'
include_if_exists = 'bench_logging.conf'
EOF
port=$(bash "$src/tests/harness/pgcluster.sh" start "$work/c" "$work/extra.conf" | tail -1)
data=$work/c/data
ci="host=127.0.0.1 port=$port user=postgres dbname=postgres"
export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres PGDATABASE=postgres
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

logging() { # on|off: statement logging, switched without logging the switch itself
  if [ "$1" = on ]; then echo "log_statement = 'all'" > "$data/bench_logging.conf"; else rm -f "$data/bench_logging.conf"; fi
  chmod 644 "$data/bench_logging.conf" 2>/dev/null || true
  kill -HUP "$(head -1 "$data/postmaster.pid")"; sleep 1
}
capture() { # NAME pgbench-args... -> $work/NAME.db
  local name=$1; shift
  logging on
  : > "$data/log/pg.csv"
  pgbench -n "$@" >/dev/null 2>&1
  logging off
  cp "$data/log/pg.csv" "$work/$name.csv"
  "$importer" import-csvlog "$work/$name.db" "$work/$name.csv" >&2
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
json_num() { sed -n "s/.*\"$1\":\([0-9.e+-]*\).*/\1/p"; }

tpcb() { # section 6: prints its table rows
  local pid pport=
  "$scry" capture proxy --listen 127.0.0.1:0 --upstream "127.0.0.1:$port" --store "$work/tpcb.db" >/dev/null 2>"$work/proxy.err" &
  pid=$!
  for _ in $(seq 1 100); do
    pport=$(sed -n 's/.*capturing on 127.0.0.1:\([0-9]*\) .*/\1/p' "$work/proxy.err")
    [ -n "$pport" ] && break
    sleep 0.1
  done
  [ -n "$pport" ] || { echo "the capture proxy did not start: $(cat "$work/proxy.err")" >&2; exit 1; }
  pgbench -n -p "$pport" -c "$CLIENTS" -j 2 -t "$TPCB_TX" >/dev/null 2>&1
  kill -INT "$pid"; wait "$pid" >/dev/null
  local tevents; tevents=$(sqlite3 "$work/tpcb.db" "SELECT count(*) FROM events")
  : > "$work/tb1.txt"; : > "$work/tb2.txt"; : > "$work/tscry.txt"; : > "$work/tratios.txt"
  for i in $(seq "$RUNS"); do
    pgbench -n -c "$CLIENTS" -j 1 -T "$RUN_SECONDS" 2>/dev/null \
      | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1 | awk '{print $1 * 7}' >> "$work/tb1.txt"
    pgbench -n -c "$CLIENTS" -j 2 -T "$RUN_SECONDS" 2>/dev/null \
      | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1 | awk '{print $1 * 7}' >> "$work/tb2.txt"
    SCRY_NO_PROGRESS=1 "$scry" replay --store "$work/tpcb.db" --target "$ci" --label "tpcb$i" \
      --concurrency "$CLIENTS" --json | json_num per_second >> "$work/tscry.txt"
    paste -d' ' <(tail -1 "$work/tscry.txt") <(tail -1 "$work/tb1.txt") <(tail -1 "$work/tb2.txt") \
      | awk '{printf "%.3f %.3f\n", $1 / $2, $1 / $3}' >> "$work/tratios.txt"
    echo "tpcb run $i: pgbench -j1 $(tail -1 "$work/tb1.txt") stmt/s, -j2 $(tail -1 "$work/tb2.txt") stmt/s, scry $(tail -1 "$work/tscry.txt")/s" >&2
  done
  local b1 b2 sc q1 q2
  b1=$(median < "$work/tb1.txt"); b2=$(median < "$work/tb2.txt"); sc=$(median < "$work/tscry.txt")
  q1=$(cut -d' ' -f1 "$work/tratios.txt" | median); q2=$(cut -d' ' -f2 "$work/tratios.txt" | median)
  echo "| TPC-B-like workload captured through the proxy | pgbench -t $TPCB_TX, scale $SCALE, $CLIENTS clients: $tevents statements |"
  echo "| pgbench TPC-B-like -j 1 (median of $RUNS, statements/s = tps x 7) | $b1 |"
  echo "| pgbench TPC-B-like -j 2 (median of $RUNS, statements/s) | $b2 |"
  echo "| scry replay --mode fast --concurrency $CLIENTS, writes rolled back (median, statements/s) | $sc |"
  echo "| TPC-B: scry / pgbench -j 1: ratio of medians; median of per-run ratios | $(awk -v a="$sc" -v b="$b1" 'BEGIN {printf "%.2f", a / b}'); $q1 |"
  echo "| TPC-B: scry / pgbench -j 2: ratio of medians; median of per-run ratios | $(awk -v a="$sc" -v b="$b2" 'BEGIN {printf "%.2f", a / b}'); $q2 |"
}

if [ "$ONLY" = tpcb ]; then
  pgbench -i -q -s "$SCALE" >/dev/null 2>&1
  echo "| measure | value |"
  echo "|---|---|"
  tpcb
  exit 0
fi

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "server: PostgreSQL $(psql -Atc 'SHOW server_version'), $(nproc) cores; scale $SCALE, $CLIENTS clients" >&2
pgbench -i -q -s "$SCALE" >/dev/null 2>&1
capture fast -S -c "$CLIENTS" -j 2 -t "$CAPTURE_TX"
events=$(sqlite3 "$work/fast.db" "SELECT count(*) FROM events")
balance=$(sqlite3 "$work/fast.db" "SELECT min(n) || '-' || max(n) FROM (SELECT count(*) n FROM events GROUP BY session HAVING n > 100)")

: > "$work/ratios.txt"; : > "$work/pgbench.txt"; : > "$work/pgbench1.txt"; : > "$work/scry.txt"; : > "$work/pgreplay.txt"
for i in $(seq "$RUNS"); do
  pgbench -n -S -c "$CLIENTS" -j 1 -T "$RUN_SECONDS" 2>/dev/null \
    | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1 >> "$work/pgbench1.txt"
  pgbench -n -S -c "$CLIENTS" -j 2 -T "$RUN_SECONDS" 2>/dev/null \
    | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1 >> "$work/pgbench.txt"
  SCRY_NO_PROGRESS=1 "$scry" replay --store "$work/fast.db" --target "$ci" --label "fast$i" \
    --concurrency "$CLIENTS" --json | json_num per_second >> "$work/scry.txt"
  t0=$(date +%s.%N)
  pgreplay -c -h 127.0.0.1 -p "$port" -s 10000 -j "$work/fast.csv" > "$work/pgreplay.out" 2>&1
  t1=$(date +%s.%N)
  echo "$events $t0 $t1" | awk '{printf "%.1f\n", $1 / ($3 - $2)}' >> "$work/pgreplay.txt"
  paste -d' ' <(tail -1 "$work/scry.txt") <(tail -1 "$work/pgbench1.txt") <(tail -1 "$work/pgbench.txt") \
    <(tail -1 "$work/pgreplay.txt") | awk '{printf "%.3f %.3f %.3f\n", $1 / $2, $1 / $3, $1 / $4}' >> "$work/ratios.txt"
  echo "run $i: pgbench -j1 $(tail -1 "$work/pgbench1.txt") tps, -j2 $(tail -1 "$work/pgbench.txt") tps, scry $(tail -1 "$work/scry.txt")/s, pgreplay $(tail -1 "$work/pgreplay.txt")/s" >&2
done
r1=$(cut -d' ' -f1 "$work/ratios.txt" | median); r2=$(cut -d' ' -f2 "$work/ratios.txt" | median)
r3=$(cut -d' ' -f3 "$work/ratios.txt" | median)
pgb1=$(median < "$work/pgbench1.txt"); pgb=$(median < "$work/pgbench.txt"); scr=$(median < "$work/scry.txt"); pgr=$(median < "$work/pgreplay.txt")

capture lag -S -c "$CLIENTS" -j 2 -R "$LAG_RATE" -T "$LAG_SECONDS"
probe=$("$importer" timer-probe 4000)
lag_json=$(SCRY_NO_PROGRESS=1 "$scry" replay --store "$work/lag.db" --target "$ci" --label timed \
  --mode timed --speed 1 --json)
if chrt -f 10 true 2>/dev/null; then
  probe_rt=$(chrt -f 10 "$importer" timer-probe 4000)
  lag_rt_json=$(SCRY_NO_PROGRESS=1 chrt -f 10 "$scry" replay --store "$work/lag.db" --target "$ci" --label timed-rt \
    --mode timed --speed 1 --json)
else
  probe_rt="n/a n/a n/a"; lag_rt_json='{}'
fi
lag3() { echo "$1" | awk '{print $1 " / " $2 " / " $3}'; }
lagj() { echo "$(echo "$1" | json_num lag_p50_ms) / $(echo "$1" | json_num lag_p99_ms) / $(echo "$1" | json_num lag_max_ms)"; }

"$importer" many "$work/many.db" "$MANY" >&2
many_json=$(SCRY_NO_PROGRESS=1 "$scry" replay --store "$work/many.db" --target "$ci" --label many \
  --concurrency "$MANY" --json)

cancel_ms=""
for i in 1 2 3; do
  cancel_ms="$cancel_ms $("$importer" cancel-probe "$work/cancel$i.db" "$ci" | cut -d' ' -f1)"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
cat <<EOF
| measure | value |
|---|---|
| workload | pgbench -S -t $CAPTURE_TX, scale $SCALE, $CLIENTS clients: $events statements ($balance per client session) |
| pgbench -S -j 1 (one client thread, like scry; median of $RUNS, tps = statements/s) | $pgb1 |
| pgbench -S -j 2 (two client threads; median of $RUNS) | $pgb |
| scry replay --mode fast --concurrency $CLIENTS (median, statements/s) | $scr |
| pgreplay -c -s 10000 -j of the same csvlog (median, statements/s) | $pgr |
| scry / pgbench -j 1: ratio of medians; median of per-run ratios | $(awk -v a="$scr" -v b="$pgb1" 'BEGIN {printf "%.2f", a / b}'); $r1 |
| scry / pgbench -j 2: ratio of medians; median of per-run ratios | $(awk -v a="$scr" -v b="$pgb" 'BEGIN {printf "%.2f", a / b}'); $r2 |
| scry / pgreplay: ratio of medians; median of per-run ratios | $(awk -v a="$scr" -v b="$pgr" 'BEGIN {printf "%.2f", a / b}'); $r3 |
| timed, speed 1, ${LAG_SECONDS} s capture at $LAG_RATE tps: executions | $(echo "$lag_json" | json_num executions) |
| timed start lag p50 / p99 / max (ms), normal scheduling | $(lagj "$lag_json") |
| bare timerfd wakeup lateness p50 / p99 / max (ms), normal scheduling | $(lag3 "$probe") |
| timed start lag p50 / p99 / max (ms), chrt -f 10 | $(lagj "$lag_rt_json") |
| bare timerfd wakeup lateness p50 / p99 / max (ms), chrt -f 10 | $(lag3 "$probe_rt") |
| cancel: ms from scry_replay_cancel() to scry_replay_run() returning, 64 busy sessions (3 runs) |$cancel_ms |
| $MANY concurrent sessions: executions / errors / reconnects | $(echo "$many_json" | json_num executions) / $(echo "$many_json" | json_num errors) / $(echo "$many_json" | json_num reconnects) |
EOF
pgbench -i -q -s "$SCALE" >/dev/null 2>&1 # TPC-B writes: start again from a fresh pgbench database
tpcb
