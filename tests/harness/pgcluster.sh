#!/usr/bin/env bash
# Throwaway PostgreSQL clusters for scry's tests, benchmarks and demo harness.
#
#   pgcluster.sh start DIR [CONF_FILE]  -> initdb DIR, start on a free port with a
#                                         private socket directory; prints the port
#   pgcluster.sh stop DIR               -> stop the server and remove DIR
#
# PostgreSQL refuses to run as root; when run as root the server runs as the
# unprivileged user `nobody` (override with SCRY_PG_USER). CONF_FILE lines are
# appended to postgresql.conf. After start, DIR/port and DIR/conninfo exist.
set -euo pipefail

bindir() {
  local d
  for d in "${SCRY_PG_BINDIR:-}" "$(pg_config --bindir 2>/dev/null || true)" \
           /usr/lib/postgresql/*/bin; do
    if [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
  done
  echo "pgcluster: PostgreSQL server binaries (initdb, pg_ctl) not found; run: apt-get install postgresql" >&2
  return 1
}

as_server_user() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u "${SCRY_PG_USER:-nobody}" -- "$@"
  else
    "$@"
  fi
}

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null \
    || echo $(( 20000 + RANDOM % 20000 ))
}

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: pgcluster.sh start|stop DIR [CONF_FILE]" >&2; exit 2; }

case "$cmd" in
start)
  bin=$(bindir)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  mkdir -p "$dir/sock"
  if [ "$(id -u)" = 0 ]; then chown -R "${SCRY_PG_USER:-nobody}" "$dir"; chmod 755 "$dir"; fi
  as_server_user "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  for attempt in 1 2 3 4 5; do
    port=$(free_port)
    {
      echo "listen_addresses = '127.0.0.1'"
      echo "port = $port"
      echo "unix_socket_directories = '$dir/sock'"
      echo "fsync = off"
      echo "synchronous_commit = off"
      echo "full_page_writes = off"
      echo "max_connections = 200"
      echo "shared_buffers = 128MB"
      echo "logging_collector = off"
      if [ -n "${3:-}" ]; then cat "$3"; fi
    } | as_server_user tee "$dir/data/scry.conf" >/dev/null
    as_server_user sh -c "echo \"include 'scry.conf'\" >> '$dir/data/postgresql.conf'" 2>/dev/null || true
    grep -q "include 'scry.conf'" "$dir/data/postgresql.conf" || echo "include 'scry.conf'" >> "$dir/data/postgresql.conf"
    if as_server_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null 2>&1; then
      echo "$port" > "$dir/port"
      echo "host=127.0.0.1 port=$port user=postgres dbname=postgres" > "$dir/conninfo"
      echo "$port"
      exit 0
    fi
    # The port was probably taken between free_port and start: try another.
    sed -i "/include 'scry.conf'/d" "$dir/data/postgresql.conf" 2>/dev/null || true
  done
  echo "pgcluster: could not start PostgreSQL; see $dir/server.log" >&2
  cat "$dir/server.log" >&2 || true
  exit 1
  ;;
stop)
  [ -d "$dir" ] || exit 0
  bin=$(bindir)
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_server_user "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  ;;
*)
  echo "usage: pgcluster.sh start|stop DIR [CONF_FILE]" >&2; exit 2;;
esac
