#!/usr/bin/env bash
# The driver matrix (tests/drivers/): psql, psycopg2, asyncpg, pgjdbc, node `pg`,
# postgres.js and Go pgx v4 each run a small workload through `scry capture
# proxy` (row-limited portals, COPY in every form, startup parameters, another
# user); each capture is then replayed (--writes execute, on a copy of the same
# starting database, one session at a time) and the test asserts that replay
# raised no error that the capture did not have, and that every statement's
# replayed row count equals its captured one. A missing toolchain skips that
# driver only, saying so.
set -Eeuo pipefail
: "${SCRY_CLI:?}" "${SCRY_SOURCE_DIR:?}" "${SCRY_BINARY_DIR:?}"
d=$SCRY_SOURCE_DIR/tests/drivers
work=$(mktemp -d /tmp/scry-drivers.XXXXXX); chmod 755 "$work"
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  bash "$SCRY_SOURCE_DIR/tests/harness/pgcluster.sh" stop "$work/pg" >/dev/null 2>&1 || true
  if [ -n "${SCRY_KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
# set -e ends the script at the first failing command: say which one.
trap 'echo "test_drivers: line $LINENO failed: $BASH_COMMAND" >&2' ERR
fail() { echo "FAIL: $*" >&2; exit 1; }
# SIGINT to a proxy, then its exit status. bash 5.2 sometimes reaps a finished
# background job during a command substitution and then answers `wait PID`
# with 127 "No record of process": a proxy that is gone counts as exited 0
# then (its JSON summary, checked by the callers, says how it ended).
stop_proxy() {
  kill -INT "$1" 2>/dev/null || true
  local rc=0
  wait "$1" 2>/dev/null || rc=$?
  if [ "$rc" = 127 ] && ! kill -0 "$1" 2>/dev/null; then rc=0; fi
  return "$rc"
}
skip() { echo "SKIP $1: $2"; skipped="$skipped $1"; }
. "$SCRY_SOURCE_DIR/tests/harness/proxy.sh" # proxy_port

port=$(bash "$SCRY_SOURCE_DIR/tests/harness/pgcluster.sh" start "$work/pg")
base="host=127.0.0.1 port=$port user=postgres"
psql -X -q -v ON_ERROR_STOP=1 "$base dbname=postgres" <<'SQL' >/dev/null
CREATE ROLE app_user LOGIN;
CREATE DATABASE base;
SQL
psql -X -q -v ON_ERROR_STOP=1 "$base dbname=base" <<'SQL' >/dev/null
CREATE SCHEMA app;
CREATE TABLE app.items (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO app.items SELECT i, 'item-' || i FROM generate_series(1, 3000) i;
CREATE TABLE public.t_copy (a int, b text);
GRANT USAGE ON SCHEMA app TO app_user;
GRANT SELECT ON app.items TO app_user;
SQL

# Toolchains: npm packages go into the build tree, never into the sources.
node_dir=$SCRY_BINARY_DIR/test-node
have_node=
if command -v node >/dev/null && command -v npm >/dev/null; then
  if [ -d "$node_dir/node_modules/pg" ] && [ -d "$node_dir/node_modules/postgres" ] ||
     (mkdir -p "$node_dir" && cd "$node_dir" && timeout 60 npm install --silent --no-audit --no-fund \
        --prefix "$node_dir" pg@8 postgres@3 >"$work/npm.log" 2>&1); then
    have_node=1
  fi
fi
jdbc_jar=/usr/share/java/postgresql.jar

skipped= ran=
want() { case " ${SCRY_DRIVERS:-$1} " in *" $1 "*) return 0 ;; esac; return 1; } # SCRY_DRIVERS="a b": only those
run_driver() { # name, then the client command (gets PORT DB WORKDIR)
  local name=$1; shift
  local db=cap_$name rep=rep_$name
  psql -X -q "$base dbname=postgres" -c "CREATE DATABASE $db TEMPLATE base" -c "CREATE DATABASE $rep TEMPLATE base" >/dev/null
  "$SCRY_CLI" capture proxy --listen 127.0.0.1:0 --upstream "127.0.0.1:$port" --store "$work/$name.db" \
    --json >"$work/$name.proxy.out" 2>"$work/$name.proxy.err" &
  pid=$!
  local pport
  pport=$(proxy_port "$work/$name.proxy.err" "$pid")
  [ -n "$pport" ] || fail "$name: the proxy did not start: $(cat "$work/$name.proxy.err")"
  "$@" "$pport" "$db" "$work" >"$work/$name.client.log" 2>&1 || fail "$name: the client failed: $(cat "$work/$name.client.log")"
  stop_proxy "$pid" || fail "$name: the proxy exited with $?"; pid=
  grep -q '"events_dropped":0' "$work/$name.proxy.out" || fail "$name: events dropped: $(cat "$work/$name.proxy.out")"
  "$SCRY_CLI" replay --store "$work/$name.db" --target "$base dbname=$rep" --label r --writes execute \
    --concurrency 1 --json >"$work/$name.replay" 2>"$work/$name.replay.err" ||
    fail "$name: replay failed: $(cat "$work/$name.replay.err")"
  local q="FROM samples s JOIN events e ON e.id = s.event JOIN statements st ON st.id = e.statement
           WHERE s.run = (SELECT max(id) FROM runs WHERE label = 'r')"
  local bad
  bad=$(sqlite3 "$work/$name.db" "SELECT e.id, coalesce(e.sqlstate, 'ok'), s.sqlstate, substr(st.template, 1, 80) $q
        AND s.sqlstate IS NOT NULL AND (e.sqlstate IS NULL OR e.sqlstate <> s.sqlstate)")
  [ -z "$bad" ] || fail "$name: errors at replay that the capture did not have: $bad"
  bad=$(sqlite3 "$work/$name.db" "SELECT e.id, e.rows, s.rows, substr(st.template, 1, 80) $q
        AND e.sqlstate IS NULL AND e.rows IS NOT NULL AND s.rows <> e.rows")
  [ -z "$bad" ] || fail "$name: replayed rows differ from captured rows: $bad"
  local events samples
  events=$(sqlite3 "$work/$name.db" "SELECT count(*) FROM events")
  samples=$(sqlite3 "$work/$name.db" "SELECT count(*) $q")
  [ "$events" -gt 0 ] && [ "$events" = "$samples" ] || fail "$name: $events events but $samples samples"
  echo "ok $name: $events events replayed, rows and errors as captured"
  ran="$ran $name"
}

if want psql; then
  run_driver psql bash "$d/psql_client.sh"
  # Its second session ran as app_user: replay ran it with SET ROLE app_user.
  [ "$(sqlite3 "$work/psql.db" "SELECT count(*) FROM sessions WHERE user_name = 'app_user'")" = 1 ] ||
    fail "psql: the app_user session is not recorded with its user"
  sqlite3 "$work/psql.db" "SELECT params FROM sessions" | grep -q "search_path=app" ||
    fail "psql: PGOPTIONS not captured: $(sqlite3 "$work/psql.db" "SELECT params FROM sessions")"
  # --ignore-users: the app_user statement runs as postgres and divides by zero;
  # --user-map to a missing role: one warning for the role, same outcome.
  div0() { sqlite3 "$work/psql.db" "SELECT count(*) FROM samples WHERE sqlstate = '22012'
    AND run = (SELECT max(id) FROM runs WHERE label = '$1')"; }
  "$SCRY_CLI" replay --store "$work/psql.db" --target "$base dbname=rep_psql" --label nousers --ignore-users \
    --json >/dev/null 2>"$work/nousers.err" || fail "psql: --ignore-users replay failed: $(cat "$work/nousers.err")"
  [ "$(div0 nousers)" = 1 ] || fail "psql: --ignore-users still ran the session as app_user"
  "$SCRY_CLI" replay --store "$work/psql.db" --target "$base dbname=rep_psql" --label mapped \
    --user-map app_user=nosuch --json >/dev/null 2>"$work/mapped.err" || fail "psql: --user-map replay failed"
  [ "$(grep -c 'role "nosuch"' "$work/mapped.err")" = 1 ] || fail "psql: no single warning for the missing role: $(cat "$work/mapped.err")"
  [ "$(div0 mapped)" = 1 ] || fail "psql: a missing mapped role did not fall back to the replay user"
fi

if ! want psycopg2; then :
elif /usr/bin/python3 -c "import psycopg2" 2>/dev/null; then
  run_driver psycopg2 sh -c '/usr/bin/python3 "$0" "host=127.0.0.1 port=$1 user=postgres dbname=$2"' "$d/psycopg2_client.py"
else skip psycopg2 "python3-psycopg2 is not installed"; fi

if ! want asyncpg; then :
elif /usr/bin/python3 -c "import asyncpg" 2>/dev/null; then
  run_driver asyncpg /usr/bin/python3 "$d/asyncpg_client.py"
  # The cursor's Execute(portal, 100) x 31 is one event of 3000 rows, fetch size 100.
  [ "$(sqlite3 "$work/asyncpg.db" "SELECT rows || '/' || fetch FROM events WHERE fetch = 100")" = 3000/100 ] ||
    fail "asyncpg: the row-limited portal is not one event of 3000 rows with fetch 100"
  [ "$(sqlite3 "$work/asyncpg.db" "SELECT count(*) FROM event_copy")" = 1 ] || fail "asyncpg: binary COPY data not captured"
else skip asyncpg "python3-asyncpg is not installed"; fi

if ! want jdbc; then :
elif command -v javac >/dev/null && [ -r "$jdbc_jar" ]; then
  mkdir -p "$work/java"
  javac -d "$work/java" -cp "$jdbc_jar" "$d/Jdbc.java" || fail "jdbc: javac failed"
  run_driver jdbc java -cp "$work/java:$jdbc_jar" Jdbc
  [ "$(sqlite3 "$work/jdbc.db" "SELECT rows || '/' || fetch FROM events WHERE fetch = 100")" = 3000/100 ] ||
    fail "jdbc: setFetchSize(100) is not one event of 3000 rows with fetch 100"
  # The replay reproduces the fetch pattern: replayed through a second proxy,
  # the portal shows up as 31 FETCH 100 (30 full batches and the empty last one).
  "$SCRY_CLI" capture proxy --listen 127.0.0.1:0 --upstream "127.0.0.1:$port" --store "$work/jdbc2.db" \
    >/dev/null 2>"$work/jdbc2.err" &
  pid=$!
  pport=$(proxy_port "$work/jdbc2.err" "$pid")
  "$SCRY_CLI" replay --store "$work/jdbc.db" --target "host=127.0.0.1 port=$pport user=postgres dbname=rep_jdbc" \
    --label viaproxy --json >/dev/null 2>&1 || fail "jdbc: replay through the proxy failed"
  stop_proxy "$pid" || fail "jdbc: the second proxy exited with $?"; pid=
  [ "$(sqlite3 "$work/jdbc2.db" "SELECT count(*) || '/' || sum(e.rows) FROM events e JOIN statements st
        ON st.id = e.statement WHERE st.template LIKE 'FETCH % FROM scry_portal'")" = 31/3000 ] ||
    fail "jdbc: the replayed portal did not fetch 100 rows at a time: $(sqlite3 "$work/jdbc2.db" "SELECT st.template, count(*) FROM events e JOIN statements st ON st.id = e.statement GROUP BY 1")"
else skip jdbc "javac (default-jdk-headless) or $jdbc_jar (libpostgresql-jdbc-java) missing"; fi

if ! want node_pg && ! want postgresjs; then :
elif [ -n "$have_node" ]; then
  if want node_pg; then run_driver node_pg env NODE_PATH="$node_dir/node_modules" node "$d/node_pg_client.js"; fi
  if want postgresjs; then
    run_driver postgresjs env NODE_PATH="$node_dir/node_modules" node "$d/postgresjs_client.js"
    [ "$(sqlite3 "$work/postgresjs.db" "SELECT rows || '/' || fetch FROM events WHERE fetch = 100")" = 3000/100 ] ||
      fail "postgresjs: cursor(100) is not one event of 3000 rows with fetch 100"
  fi
else
  skip node_pg "node/npm missing or npm install failed ($(tail -1 "$work/npm.log" 2>/dev/null))"
  skip postgresjs "node/npm missing or npm install failed"
fi

if ! want pgx; then :
elif command -v go >/dev/null && [ -d /usr/share/gocode/src/github.com/jackc/pgx/v4 ]; then
  mkdir -p "$work/gopath/src/pgxclient"
  cp "$d/pgx/main.go" "$work/gopath/src/pgxclient/"
  (cd "$work/gopath/src/pgxclient" &&
   GOPATH="$work/gopath:/usr/share/gocode" GO111MODULE=off GOFLAGS= GOPROXY=off \
   GOCACHE="${GOCACHE:-$SCRY_BINARY_DIR/go-cache}" go build -o "$work/pgxclient" . ) >"$work/go.log" 2>&1 ||
    fail "pgx: go build failed: $(cat "$work/go.log")"
  run_driver pgx "$work/pgxclient"
  [ "$(sqlite3 "$work/pgx.db" "SELECT count(*) FROM event_copy")" = 1 ] || fail "pgx: binary CopyFrom data not captured"
else skip pgx "go or golang-github-jackc-pgx-v4-dev missing"; fi

echo "drivers replayed:$ran${skipped:+; skipped:$skipped}"
