# tests/harness/scenario.sh - sourced by the end-to-end shell tests: a work
# directory cleaned up on exit, ok/bad counters, a throwaway PostgreSQL
# cluster, and a workload captured through the real capture proxy.
#
#   . "$SCRY_SOURCE_DIR/tests/harness/scenario.sh"
#   scenario_begin NAME          WORK=/tmp/scry-test-NAME.XXXXXX, removed on exit (kept with KEEP=1)
#   scenario_cluster             starts PostgreSQL; exports PGHOST PGPORT PGUSER, sets PORT
#   scenario_shop DB             creates DB with items(id, category, name, price): 50,000 rows,
#                                an index on category (what the gates drop), analyzed
#   scenario_capture STORE DB FILE...   runs each SQL FILE with psql through the proxy into STORE
#   ok MSG / bad MSG / expect_exit WANT GOT MSG;  scenario_end   (exit status: failures)
SCRY=${SCRY_CLI:?SCRY_CLI is not set}
SRC=${SCRY_SOURCE_DIR:?SCRY_SOURCE_DIR is not set}
. "$SRC/tests/harness/proxy.sh" # proxy_port
fails=0
PROXY_PID=
ok()   { echo "ok   - $*"; }
bad()  { echo "FAIL - $*"; fails=$((fails + 1)); }
expect_exit() { if [ "$1" = "$2" ]; then ok "$3 (exit $2)"; else bad "$3: exit $2, expected $1"; fi; }

scenario_cleanup() {
  [ -n "$PROXY_PID" ] && kill "$PROXY_PID" 2>/dev/null
  [ -d "$WORK/pg" ] && bash "$SRC/tests/harness/pgcluster.sh" stop "$WORK/pg" >/dev/null 2>&1
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}

scenario_begin() {
  WORK=$(mktemp -d "/tmp/scry-test-$1.XXXXXX")
  chmod 755 "$WORK"
  trap scenario_cleanup EXIT
}

scenario_cluster() {
  PORT=$(bash "$SRC/tests/harness/pgcluster.sh" start "$WORK/pg") || { echo "cannot start PostgreSQL"; exit 1; }
  export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
}

scenario_shop() { # DB
  psql -XqAt -d postgres -c "CREATE DATABASE $1" >/dev/null
  psql -Xq -v ON_ERROR_STOP=1 -d "$1" >/dev/null <<'SQL'
CREATE TABLE items (id serial PRIMARY KEY, category text NOT NULL, name text NOT NULL, price int NOT NULL);
INSERT INTO items (category, name, price)
  SELECT 'cat' || (g % 500), 'item <' || g || '>', 100 + g % 900 FROM generate_series(1, 50000) g;
CREATE INDEX idx_items_category ON items(category);
VACUUM ANALYZE items;
SQL
}

scenario_capture() { # STORE DB FILE...
  local store=$1 db=$2 pport= f
  shift 2
  "$SCRY" capture proxy --listen 127.0.0.1:0 --upstream "127.0.0.1:$PORT" --store "$store" 2>"$WORK/proxy.err" &
  PROXY_PID=$!
  pport=$(proxy_port "$WORK/proxy.err" "$PROXY_PID")
  [ -n "$pport" ] || { cat "$WORK/proxy.err"; echo "the proxy did not start"; exit 1; }
  for f in "$@"; do
    psql -Xq -h 127.0.0.1 -p "$pport" -d "$db" -f "$f" >/dev/null || bad "workload $f through the proxy"
  done
  kill -INT "$PROXY_PID"
  wait "$PROXY_PID"
  PROXY_PID=
}

scenario_end() {
  echo "$fails failure(s)"
  [ "$fails" = 0 ]
}
