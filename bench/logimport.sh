#!/usr/bin/env bash
# Log import throughput: `scry capture log` (parse + fingerprint + store)
# against pgreplay's parser (`pgreplay -f`, parse only) on the same logs,
# written at once as csvlog and stderr (with pgreplay's prefix
# '%m|%u|%d|%c|') by a real PostgreSQL server under pgbench with
# log_statement = 'all':
#   csvlog:  scry capture log --format csvlog   vs  pgreplay -f -c
#   stderr:  scry capture log --format stderr --prefix '%m|%u|%d|%c|'  vs  pgreplay -f
# with scry's event count next to pgreplay's statement count for each. Also
# the peak RSS of scry on the csvlog and on a 10x larger copy, to show memory
# does not grow with the log.
#
#   bash bench/logimport.sh [BUILD_DIR]
#
# Environment: LOG_MB (size of the generated csvlog, default 150), RUNS
# (timed runs per tool, default 5), WORK (default /tmp/scry-bench-logimport;
# the logs stay there, never in the repository), BIG=0 to skip the 10x copy,
# FORMATS (default "csvlog stderr").
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
scry=$build/scry
work=${WORK:-/tmp/scry-bench-logimport}
log_mb=${LOG_MB:-150}
runs=${RUNS:-5}
mkdir -p "$work"
chmod 755 "$work"
log=$work/pgbench.csv
errlog=$work/pgbench.log
prefix='%m|%u|%d|%c|'
formats=${FORMATS:-csvlog stderr}
calc() { awk "BEGIN { print $1 }"; }

command -v pgreplay >/dev/null || { echo "pgreplay is missing: make bench-deps" >&2; exit 1; }
[ -x "$scry" ] || { echo "build scry first ($scry)" >&2; exit 1; }

# 1. A csvlog from a real server under pgbench (kept between runs).
if [ ! -s "$log" ] || [ ! -s "$errlog" ] || [ "$(stat -c %s "$log")" -lt $((log_mb * 1000000)) ]; then
  cl=$work/cluster
  bash "$here/tests/harness/pgcluster.sh" stop "$cl" >/dev/null 2>&1 || true
  cat >"$work/pg.conf" <<'EOF'
logging_collector = on
log_destination = 'stderr,csvlog'
log_directory = 'log'
log_filename = 'pgbench.log'
log_line_prefix = '%m|%u|%d|%c|'
log_statement = 'all'
log_connections = on
log_disconnections = on
lc_messages = 'C'
log_timezone = 'UTC'
EOF
  chmod 644 "$work/pg.conf"
  port=$(bash "$here/tests/harness/pgcluster.sh" start "$cl" "$work/pg.conf")
  trap 'bash "$here/tests/harness/pgcluster.sh" stop "$cl" >/dev/null 2>&1 || true' EXIT
  pgbench -h 127.0.0.1 -p "$port" -U postgres -i -s 4 -q postgres >/dev/null 2>&1
  csv=$cl/data/log/pgbench.csv
  mode=simple
  # Bounded: at most 40 rounds of 15 s.
  for _ in $(seq 40); do
    [ "$(stat -c %s "$csv")" -ge $((log_mb * 1000000)) ] && break
    pgbench -h 127.0.0.1 -p "$port" -U postgres -c 4 -j 2 -T 15 -M "$mode" postgres >/dev/null 2>&1
    if [ $mode = simple ]; then mode=extended; else mode=simple; fi
  done
  sleep 1
  cp "$csv" "$log"
  cp "$cl/data/log/pgbench.log" "$errlog"
  bash "$here/tests/harness/pgcluster.sh" stop "$cl" >/dev/null 2>&1 || true
  trap - EXIT
fi
size=$(stat -c %s "$log")
lines=$(wc -l <"$log")

# 2. Timed runs, alternating the tools so that machine noise hits both.
# Wall time and CPU time (user + sys) per run; the machine is shared, so
# CPU time is the steadier measure of the work each tool does.
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
scry_rss=""
for fmt in $formats; do
  if [ "$fmt" = csvlog ]; then
    in=$log; scry_args=(--format csvlog); pgr_args=(-c)
  else
    in=$errlog; scry_args=(--format stderr --prefix "$prefix"); pgr_args=()
  fi
  scry_t=(); pgr_t=(); scry_c=(); pgr_c=()
  for i in $(seq "$runs"); do
    rm -f "$work/store.db" "$work/store.db-wal" "$work/store.db-shm"
    /usr/bin/time -f '%e %U %S %M' -o "$work/t.scry" \
      "$scry" capture log "${scry_args[@]}" --json --store "$work/store.db" "$in" >"$work/scry.json"
    /usr/bin/time -f '%e %U %S %M' -o "$work/t.pgr" \
      pgreplay -f "${pgr_args[@]}" -o /dev/null "$in" >"$work/pgreplay.out" 2>&1
    read -r e u s m <"$work/t.scry"; scry_t+=("$e"); scry_c+=("$(calc "$u + $s")")
    [ "$fmt" = csvlog ] && scry_rss=$m
    read -r e u s m <"$work/t.pgr"; pgr_t+=("$e"); pgr_c+=("$(calc "$u + $s")")
  done
  ms=$(median "${scry_t[@]}"); mp=$(median "${pgr_t[@]}")
  cs=$(median "${scry_c[@]}"); cp=$(median "${pgr_c[@]}")
  size=$(stat -c %s "$in")
  lines=$(wc -l <"$in")
  stmts=$(sed -E 's/.*"statements":([0-9]+).*/\1/' "$work/scry.json")
  ref=$(awk -F': *' '/Total SQL statements processed/{print $2}' "$work/pgreplay.out")
  echo "$fmt log: $in, $((size / 1000000)) MB, $lines lines; scry events $stmts, pgreplay statements ${ref:-?}"
  printf 'medians of %s runs (all runs in parentheses)\n' "$runs"
  printf 'scry capture log:  wall %6.2f s (%5.1f MB/s)  cpu %6.2f s  (wall: %s; cpu: %s)\n' "$ms" "$(calc "$size / $ms / 1000000")" "$cs" "${scry_t[*]}" "${scry_c[*]}"
  printf 'pgreplay -f %-4s   wall %6.2f s (%5.1f MB/s)  cpu %6.2f s  (wall: %s; cpu: %s)\n' "${pgr_args[*]:-}" "$mp" "$(calc "$size / $mp / 1000000")" "$cp" "${pgr_t[*]}" "${pgr_c[*]}"
  printf '%s ratio pgreplay/scry: wall %.2fx, cpu %.2fx\n' "$fmt" "$(calc "$mp / $ms")" "$(calc "$cp / $cs")"
done
size=$(stat -c %s "$log")

# 3. Memory on a 10x larger log: the same log ten times, each copy with its
# session ids changed (a digit appended to their first part), so that every
# copy's sessions are new sessions.
big_rss=""; big_size=0; big_t=""
if [ "${BIG:-1}" != 0 ]; then
  big=$work/pgbench-x10.csv
  if [ ! -s "$big" ]; then
    for k in 0 1 2 3 4 5 6 7 8 9; do
      # session_id is the 6th field; pgbench records are one line each.
      sed -E "s/^([^,]*,[^,]*,[^,]*,[^,]*,[^,]*,)([0-9a-f]+)\\./\\1\\2$k./" "$log"
    done >"$big"
  fi
  big_size=$(stat -c %s "$big")
  rm -f "$work/big.db" "$work/big.db-wal" "$work/big.db-shm"
  /usr/bin/time -f '%e %M' -o "$work/t.big" "$scry" capture log --format csvlog --store "$work/big.db" "$big" >/dev/null
  read -r big_t big_rss <"$work/t.big"
  rm -f "$work/big.db" "$work/big.db-wal" "$work/big.db-shm"
fi

printf 'scry peak RSS: %s MB on %d MB' "$((scry_rss / 1024))" "$((size / 1000000))"
if [ -n "$big_rss" ]; then
  printf ', %s MB on %d MB (%.1f s)' "$((big_rss / 1024))" "$((big_size / 1000000))" "$big_t"
fi
echo
