#!/usr/bin/env bash
# Log import on stderr logs a real PostgreSQL 15 writes with the prefixes of
# managed services and tools, compared with pgreplay's parser:
#   RDS/Aurora  %t:%r:%u@%d:[%p]:   (no separator after the time zone)
#   pgreplay    %m|%u|%d|%c|
#   bracketed   [%m] [%p]
# The server writes stderr and csvlog at once; for each prefix the prefix is
# detected (no --prefix), the statements imported from stderr are those
# `pgreplay -f` parses (from its own stderr format, or from the csvlog), and
# their texts, parameters and durations are exactly those imported from the
# csvlog. Also: CONTEXT portal parameters, application names with spaces.
set -euo pipefail
command -v pgreplay >/dev/null || { echo "pgreplay is missing (make bench-deps)" >&2; exit 1; }
LOGTEST_NAME=logprefix
. "${SCRY_SOURCE_DIR:?}/tests/logimport/server.sh"
log_server_start 'stderr,csvlog'

phase() { # name, log_line_prefix
  local name=$1 prefix=$2
  log_switch "$name" log_line_prefix "$prefix"
  PGAPPNAME='PostgreSQL JDBC Driver' psql_ -c "SELECT 'it''s', 1" -c "SELECT 1;
SELECT
  2 AS two" >/dev/null
  for mode in simple extended prepared; do
    pgbench -h 127.0.0.1 -p "$port" -U postgres -n -c 2 -t 15 -M "$mode" postgres >/dev/null 2>&1
  done
  PGOPTIONS='-c log_statement=none' pgbench -h 127.0.0.1 -p "$port" -U postgres -n -t 1 -M extended \
    -f "$tmp/fail.sql" postgres >/dev/null 2>&1 || true
  log_finish "$name"
}

compare() { # name, log_line_prefix, pgreplay's stderr reference (0/1)
  local name=$1 prefix=$2 pgr_stderr=$3
  "$SCRY_CLI" capture log --json --store "$tmp/$name-err.db" "$tmp/$name.log" >"$tmp/$name-err.json"
  "$SCRY_CLI" capture log --format csvlog --json --store "$tmp/$name-csv.db" "$tmp/$name.csv" >"$tmp/$name-csv.json"
  check "$name: prefix detected" grep -qF "log_line_prefix '$prefix'" "$tmp/$name-err.json"
  check "$name: no line skipped" test "$(field skipped "$tmp/$name-err.json")" = 0
  local got csvgot ref
  got=$(field statements "$tmp/$name-err.json")
  csvgot=$(field statements "$tmp/$name-csv.json")
  pgreplay -f -c -o "$tmp/$name.replay" "$tmp/$name.csv" >"$tmp/$name.pgr" 2>&1 || true
  ref=$(awk -F': *' '/Total SQL statements processed/{print $2}' "$tmp/$name.pgr")
  # pgreplay keeps the statements logged as executed; scry also records the
  # one statement that was logged only by its ERROR (log_statement = none,
  # it failed at execute), as the proxy would.
  check "$name: stderr import = pgreplay -c + 1 ($got vs $ref)" test "$got" = $((ref + 1))
  if [ "$pgr_stderr" = 1 ]; then
    pgreplay -f -o "$tmp/$name.replay2" "$tmp/$name.log" >"$tmp/$name.pgr2" 2>&1 || true
    ref=$(awk -F': *' '/Total SQL statements processed/{print $2}' "$tmp/$name.pgr2")
    check "$name: stderr import = pgreplay on stderr + 1 ($got vs $ref)" test "$got" = $((ref + 1))
  fi
  check "$name: stderr = csvlog count ($got vs $csvgot)" test "$got" = "$csvgot"
  # Texts, parameters, durations, errors and sessions exactly as from the csvlog.
  # (%t has whole seconds: start times, the log time minus the duration, then differ)
  local start="e.offset_us + s.started_us"
  case $prefix in *%t*) start="''";; esac
  local q="SELECT s.application, s.user_name, s.database, e.seq, $start, e.duration_us,
    st.template, hex(e.literals), hex(e.params), e.sqlstate IS NOT NULL, e.kind
    FROM events e JOIN sessions s ON s.id = e.session JOIN statements st ON st.id = e.statement"
  # (as sets: the collector may interleave two sessions' lines differently in
  # the two files; SQLSTATEs are not in this stderr prefix, only failure)
  sqlite3 "$tmp/$name-err.db" "$q" | sort >"$tmp/$name-err.events"
  sqlite3 "$tmp/$name-csv.db" "$q" | sort >"$tmp/$name-csv.events"
  check "$name: events identical to csvlog's" cmp -s "$tmp/$name-err.events" "$tmp/$name-csv.events"
  check "$name: application name with spaces" grep -q '^PostgreSQL JDBC Driver|' "$tmp/$name-err.events"
  check "$name: durations known" test "$(awk -F'|' '$6 != ""' "$tmp/$name-err.events" | wc -l)" -gt 100
  # The statement that failed at execute keeps its parameter (from CONTEXT).
  check "$name: parameters from CONTEXT" test "$(sqlite3 "$tmp/$name-err.db" \
    "SELECT count(*) FROM events WHERE sqlstate IS NOT NULL AND kind = 1 AND params IS NOT NULL")" = 1
}

phase rds '%t:%r:%u@%d:[%p]:'
phase pgreplay '%m|%u|%d|%c|'
phase bracket '[%m] [%p] '
bash "$pgc" stop "$cl" >/dev/null 2>&1 || true
compare rds '%t:%r:%u@%d:[%p]:' 0
compare pgreplay '%m|%u|%d|%c|' 1
compare bracket '[%m] [%p] ' 0

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
