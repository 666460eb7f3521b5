# tests/logimport/server.sh - sourced by the log import tests that have a
# real PostgreSQL 15 write logs (test_logimport_prefixes.sh,
# test_logimport_lang.sh): a scratch directory, check/field helpers, a
# server logging every statement, and switching a setting and the log file
# between workload phases.
: "${SCRY_CLI:?}" "${SCRY_SOURCE_DIR:?}"
command -v sqlite3 >/dev/null || { echo "sqlite3 is missing" >&2; exit 1; }
pgc=$SCRY_SOURCE_DIR/tests/harness/pgcluster.sh
tmp=$(mktemp -d "/tmp/scry-${LOGTEST_NAME:-logtest}.XXXXXX")
chmod 755 "$tmp"
cl=$tmp/cluster
trap 'bash "$pgc" stop "$cl" >/dev/null 2>&1 || true; [ -n "${SCRY_TEST_KEEP:-}" ] || rm -rf "$tmp"' EXIT
pass=0 fail=0
check() { # name, command...
  local name=$1; shift
  if "$@"; then pass=$((pass + 1)); else echo "FAIL: $name" >&2; fail=$((fail + 1)); fi
}
field() { sed -E "s/.*\"$1\":([0-9]+).*/\\1/" "$2"; }

# log_server_start LOG_DESTINATION [EXTRA_CONF_LINE...]: sets port, logdir, psql_.
log_server_start() {
  local dest=$1; shift
  {
    echo "logging_collector = on"
    echo "log_destination = '$dest'"
    echo "log_directory = 'log'"
    echo "log_filename = 'start.log'"
    echo "log_statement = 'all'"
    echo "log_min_duration_statement = 0"
    echo "log_connections = on"
    echo "log_disconnections = on"
    echo "log_parameter_max_length_on_error = -1"
    echo "lc_messages = 'C'"
    echo "log_timezone = 'UTC'"
    for line in "$@"; do echo "$line"; done
  } >"$tmp/pg.conf"
  chmod 644 "$tmp/pg.conf"
  port=$(bash "$pgc" start "$cl" "$tmp/pg.conf")
  logdir=$cl/data/log
  pgbench -h 127.0.0.1 -p "$port" -U postgres -i -s 1 -q postgres >/dev/null 2>&1
  # An extended-protocol statement that fails at execute: its parameters are
  # only in the ERROR's CONTEXT when log_statement = none.
  printf '\\set x 1\nSELECT :x::int / (SELECT 0);\n' >"$tmp/fail.sql"
}
psql_() { psql -X -q -h 127.0.0.1 -p "$port" -U postgres "$@"; }

# log_switch NAME SETTING VALUE: SETTING = VALUE, then the server logs to
# NAME.log/.csv/.json. The setting first, then the file name (the collector
# switches files when its name changes: lines of the session that changes it
# would otherwise start the new file with the old setting). Reloads are
# asynchronous: wait until new sessions see each.
log_switch() {
  local name=$1 setting=$2 value=$3
  psql_ -c "ALTER SYSTEM SET $setting = '$value'" -c "SELECT pg_reload_conf()" >/dev/null
  for _ in $(seq 100); do [ "$(psql_ -At -c "SHOW $setting")" = "$value" ] && break; sleep 0.05; done
  psql_ -c "ALTER SYSTEM SET log_filename = '$name.log'" -c "SELECT pg_reload_conf()" >/dev/null
  for _ in $(seq 100); do [ "$(psql_ -At -c 'SHOW log_filename')" = "$name.log" ] && break; sleep 0.05; done
}

# log_finish NAME: marks the end of the phase, waits for the collector to
# write it, copies the phase's files to $tmp.
log_finish() {
  local name=$1
  psql_ -c "SELECT 'end of $name'" >/dev/null
  for _ in $(seq 100); do
    grep -q "end of $name" "$logdir/$name.log" 2>/dev/null && grep -q "end of $name" "$logdir/$name.csv" && break
    sleep 0.1
  done
  sleep 0.3
  for ext in log csv json; do [ -f "$logdir/$name.$ext" ] && cp "$logdir/$name.$ext" "$tmp/"; done
  return 0
}
