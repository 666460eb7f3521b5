#!/usr/bin/env bash
# bench/proxy.sh - capture proxy vs pgbouncer vs direct, in one run.
#
#   bench/proxy.sh [BUILD_DIR]
#
# Starts a throwaway PostgreSQL cluster, pgbouncer (session mode, as an
# unprivileged user, config generated in a temp dir) and `scry capture proxy`
# (recording every query into a store), then runs pgbench -S against each,
# interleaved round by round so that machine noise hits all three alike:
#   - throughput: CLIENTS clients (default 8), DURATION seconds per run
#   - latency: 1 client, DURATION seconds per run
# and prints medians of RUNS rounds as a Markdown table. Afterwards it checks
# that the proxy recorded every transaction it forwarded (0 dropped) and
# prints the proxy's peak RSS (VmHWM).
#
# Environment: RUNS (5), DURATION (10), CLIENTS (8), SCALE (10), MODE (simple),
# SOAK (0: seconds of an extra full-load run through the proxy alone, sampling
# its RSS every 10 s; 300 for the 5-minute memory check), TLS (0; 1: TLS both
# ways: the server runs with ssl=on, every client connects with
# sslmode=require, pgbouncer terminates it with client_tls_* and reconnects
# with server_tls_sslmode=require, the proxy with --tls-cert/--tls-key and
# --upstream-sslmode require; certificates are made with the openssl CLI),
# THREADS (1: the proxy's event-loop threads, --threads).
set -euo pipefail
build=${1:-build}
here=$(cd "$(dirname "$0")/.." && pwd)
scry=$(cd "$build" && pwd)/scry
RUNS=${RUNS:-5}
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-8}
SCALE=${SCALE:-10}
MODE=${MODE:-simple}
SOAK=${SOAK:-0}
TLS=${TLS:-0}
THREADS=${THREADS:-1}
command -v pgbouncer >/dev/null || command -v /usr/sbin/pgbouncer >/dev/null ||
  { echo "pgbouncer not found: apt-get install pgbouncer (make bench-deps)" >&2; exit 1; }
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)

work=$(mktemp -d /tmp/scry-bench-proxy.XXXXXX)
chmod 755 "$work"
bouncer_pid= scry_pid=
cleanup() {
  [ -n "$scry_pid" ] && kill -INT "$scry_pid" 2>/dev/null && wait "$scry_pid" 2>/dev/null || true
  [ -n "$bouncer_pid" ] && kill "$bouncer_pid" 2>/dev/null || true
  bash "$here/tests/harness/pgcluster.sh" stop "$work/pg" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
as_user() { if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi; }

echo "# starting PostgreSQL, pgbouncer and the scry proxy in $work (TLS=$TLS)" >&2
sslc=
pgconf=
if [ "$TLS" = 1 ]; then
  # One self-signed certificate for the server, pgbouncer and the proxy
  # (clients use sslmode=require: encrypted, not verified, on both sides).
  mkdir -p "$work/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$work/tls/key.pem" -out "$work/tls/cert.pem" 2>/dev/null
  chmod 600 "$work/tls/key.pem"; chmod 755 "$work/tls"
  [ "$(id -u)" = 0 ] && chown nobody "$work/tls/key.pem" "$work/tls/cert.pem"
  printf "ssl = on\nssl_cert_file = '%s'\nssl_key_file = '%s'\n" "$work/tls/cert.pem" "$work/tls/key.pem" >"$work/ssl.conf"
  pgconf=$work/ssl.conf
  sslc=" sslmode=require"
fi
pgport=$(bash "$here/tests/harness/pgcluster.sh" start "$work/pg" $pgconf)
direct="host=127.0.0.1 port=$pgport user=postgres dbname=postgres$sslc"
pgbench -q -i -s "$SCALE" "$direct" >/dev/null 2>&1

# pgbouncer, session pooling, trust auth (the user must still be in auth_file).
bport=$(free_port)
mkdir -p "$work/bouncer"
cat >"$work/bouncer/pgbouncer.ini" <<EOF
[databases]
postgres = host=127.0.0.1 port=$pgport dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bport
unix_socket_dir =
auth_type = trust
auth_file = $work/bouncer/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 50
logfile = $work/bouncer/pgbouncer.log
pidfile = $work/bouncer/pgbouncer.pid
EOF
if [ "$TLS" = 1 ]; then
  printf 'client_tls_sslmode = require\nclient_tls_key_file = %s\nclient_tls_cert_file = %s\nserver_tls_sslmode = require\n' \
    "$work/tls/key.pem" "$work/tls/cert.pem" >>"$work/bouncer/pgbouncer.ini"
fi
echo '"postgres" ""' >"$work/bouncer/userlist.txt"
[ "$(id -u)" = 0 ] && chown -R nobody "$work/bouncer"
as_user "$PGBOUNCER" -d -q "$work/bouncer/pgbouncer.ini"
for _ in $(seq 1 50); do [ -s "$work/bouncer/pgbouncer.pid" ] && break; sleep 0.1; done
bouncer_pid=$(cat "$work/bouncer/pgbouncer.pid")
bouncer="host=127.0.0.1 port=$bport user=postgres dbname=postgres$sslc"

# The capture proxy, recording into a store.
sport=$(free_port)
tls_args=()
if [ "$TLS" = 1 ]; then
  tls_args=(--tls-cert "$work/tls/cert.pem" --tls-key "$work/tls/key.pem" --upstream-sslmode require)
fi
"$scry" capture proxy --listen "127.0.0.1:$sport" --upstream "127.0.0.1:$pgport" "${tls_args[@]}" --threads "$THREADS" \
  --store "$work/bench.db" --json >"$work/scry.json" 2>"$work/scry.err" &
scry_pid=$!
proxy="host=127.0.0.1 port=$sport user=postgres dbname=postgres$sslc"
for c in "$bouncer" "$proxy"; do
  for _ in $(seq 1 50); do psql -X -q "$c" -c "SELECT 1" >/dev/null 2>&1 && break; sleep 0.2; done
  if [ "$TLS" = 1 ]; then # every leg must really be TLS, or the comparison is void
    ssl=$(psql -X -qAt "$c" -c "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") || ssl=
    [ "$ssl" = t ] || { echo "bench: the server leg of '$c' is not TLS" >&2; exit 1; }
  fi
done

# pgbench output -> "tps latency_ms transactions"
run_pgbench() { # conninfo clients
  local out
  out=$(pgbench -n -S -M "$MODE" -c "$2" -j "$(( $2 < 2 ? 1 : 2 ))" -T "$DURATION" "$1" 2>&1) ||
    { echo "$out" >&2; return 1; }
  echo "$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out" | head -1)" \
       "$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")" \
       "$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")"
}
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }

declare -A tps lat
proxy_tx=0
for r in $(seq 1 "$RUNS"); do
  for t in direct pgbouncer scry; do
    case $t in direct) c=$direct;; pgbouncer) c=$bouncer;; scry) c=$proxy;; esac
    read -r x _ n < <(run_pgbench "$c" "$CLIENTS")
    tps[$t]+="$(printf '%.0f' "$x") "
    [ $t = scry ] && proxy_tx=$((proxy_tx + n))
    read -r _ l n < <(run_pgbench "$c" 1)
    lat[$t]+="$l "
    [ $t = scry ] && proxy_tx=$((proxy_tx + n))
    echo "# round $r $t: tps(${CLIENTS}c)=$x latency(1c)=${l}ms" >&2
  done
done

rss_peak() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
soak_note=
if [ "$SOAK" -gt 0 ]; then
  echo "# soak: ${SOAK}s at full load through the proxy" >&2
  pgbench -n -S -M "$MODE" -c "$CLIENTS" -j 2 -T "$SOAK" "$proxy" >"$work/soak.out" 2>&1 &
  soak_pid=$!
  samples=
  while kill -0 "$soak_pid" 2>/dev/null; do
    samples+="$(awk '/VmRSS/ {print $2}' "/proc/$scry_pid/status") "
    sleep 10
  done
  wait "$soak_pid"
  n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$work/soak.out")
  proxy_tx=$((proxy_tx + n))
  soak_note="soak ${SOAK}s: $n transactions; proxy RSS samples (KiB, every 10 s): $samples"
fi
peak=$(rss_peak "$scry_pid")
kill -INT "$scry_pid"
wait "$scry_pid"
scry_pid=
recorded=$(sed -n 's/.*"events_recorded":\([0-9]*\).*/\1/p' "$work/scry.json")
dropped=$(sed -n 's/.*"events_dropped":\([0-9]*\).*/\1/p' "$work/scry.json")

md() { tr ' ' '\n' <<<"$1" | grep . | median; }
int() { printf '%.0f' "$1"; }
d_tps=$(int "$(md "${tps[direct]}")"); b_tps=$(int "$(md "${tps[pgbouncer]}")"); s_tps=$(int "$(md "${tps[scry]}")")
d_lat=$(md "${lat[direct]}"); b_lat=$(md "${lat[pgbouncer]}"); s_lat=$(md "${lat[scry]}")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
added() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", (a - b) * 1000}'; }

cat <<EOF

pgbench -S -M $MODE, scale $SCALE, TCP loopback$([ "$TLS" = 1 ] && echo ", TLS client->proxy and proxy->server (sslmode=require)"), $RUNS rounds x ${DURATION}s, medians ($(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg))

| target | TPS, $CLIENTS clients | vs direct | latency, 1 client | added latency per query |
|---|---|---|---|---|
| direct | $d_tps | 1.00 | $d_lat ms | - |
| pgbouncer (session$([ "$TLS" = 1 ] && echo ", client_tls_* + server_tls_sslmode=require")) | $b_tps | $(ratio "$b_tps" "$d_tps") | $b_lat ms | $(added "$b_lat" "$d_lat") us |
| scry capture proxy (recording$([ "$TLS" = 1 ] && echo ", --tls-cert + --upstream-sslmode require")) | $s_tps | $(ratio "$s_tps" "$d_tps") | $s_lat ms | $(added "$s_lat" "$d_lat") us |

scry / pgbouncer TPS: $(ratio "$s_tps" "$b_tps")
all rounds, TPS: direct ${tps[direct]}| pgbouncer ${tps[pgbouncer]}| scry ${tps[scry]}
all rounds, latency ms: direct ${lat[direct]}| pgbouncer ${lat[pgbouncer]}| scry ${lat[scry]}
proxy: $proxy_tx pgbench transactions forwarded, $recorded events recorded, $dropped dropped; peak RSS $peak KiB
$soak_note
EOF
