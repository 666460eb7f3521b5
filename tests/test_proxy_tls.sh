#!/usr/bin/env bash
# The capture proxy with TLS on both sides, against a server that accepts
# only TLS (hostssl-only pg_hba.conf): a test CA, a server certificate and a
# proxy certificate are made here with the openssl CLI. psql, psycopg2 and
# pgjdbc (skipped when no JDK) connect with sslmode=verify-full and their
# queries are recorded; a direct-TLS client (ALPN "postgresql") works; a
# proxy without a certificate answers a ClientHello with a PostgreSQL error;
# upstream verification failures name the address and the reason; the
# proxy logs in with its own client certificate (pg_hba "cert").
set -euo pipefail
source "$SCRY_SOURCE_DIR/tests/proxy/lib.sh"

# ---- certificates: a CA, the server's and the proxy's (localhost, 127.0.0.1)
tls=$work/tls; mkdir -p "$tls"
mkca() { # NAME
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=scry test $1" -keyout "$tls/$1.key" -out "$tls/$1.crt" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
}
mkcert() { # NAME CA
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
    -keyout "$tls/$1.key" -out "$tls/$1.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$tls/$1.ext"
  openssl x509 -req -in "$tls/$1.csr" -CA "$tls/$2.crt" -CAkey "$tls/$2.key" -CAcreateserial -days 2 \
    -extfile "$tls/$1.ext" -out "$tls/$1.crt" 2>/dev/null
}
mkca ca; mkca otherca
mkcert server ca; mkcert proxy ca
# A client certificate for the proxy's own login (pg_hba "cert": CN = user).
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=certuser" \
  -keyout "$tls/client.key" -out "$tls/client.csr" 2>/dev/null
printf 'extendedKeyUsage=clientAuth\n' >"$tls/client.ext"
openssl x509 -req -in "$tls/client.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial -days 2 \
  -extfile "$tls/client.ext" -out "$tls/client.crt" 2>/dev/null
chmod 600 "$tls"/*.key; chmod 755 "$tls"
[ "$(id -u)" = 0 ] && chown "${SCRY_PG_USER:-nobody}" "$tls/server.key" "$tls/server.crt"

# ---- a server that accepts TLS only
cat >"$work/ssl.conf" <<CONF
ssl = on
ssl_cert_file = '$tls/server.crt'
ssl_key_file = '$tls/server.key'
ssl_ca_file = '$tls/ca.crt'
CONF
start_cluster "$work/ssl.conf"
sock=$work/pg/sock
psql -X -q -h "$sock" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
  -c "CREATE ROLE app LOGIN PASSWORD 'app-secret-pw'" -c "CREATE ROLE certuser LOGIN" \
  -c "ALTER SYSTEM SET password_encryption = 'scram-sha-256'" >/dev/null
cat >"$work/pg/data/pg_hba.conf" <<HBA
local all all trust
hostssl all app 127.0.0.1/32 scram-sha-256
hostssl all certuser 127.0.0.1/32 cert
hostssl all all 127.0.0.1/32 trust
HBA
psql -X -q -h "$sock" -p "$port" -U postgres -d postgres -c "SELECT pg_reload_conf()" >/dev/null
# The server now refuses plain TCP.
if psql -X -q "host=127.0.0.1 port=$port user=postgres dbname=postgres sslmode=disable" -c "SELECT 1" >/dev/null 2>&1; then
  fail "the server should accept TLS only"
fi

# ---- TLS both ways, every client with verify-full
start_proxy main --upstream "127.0.0.1:$port" --upstream-sslmode verify-full \
  --upstream-sslrootcert "$tls/ca.crt" --tls-cert "$tls/proxy.crt" --tls-key "$tls/proxy.key"
ci="host=localhost hostaddr=127.0.0.1 port=$pport dbname=postgres sslmode=verify-full sslrootcert=$tls/ca.crt"

out=$(psql -X -qAt "$ci user=postgres application_name=psql-tls" -c "SELECT 'psql over ' || (SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid())") \
  || fail "psql with sslmode=verify-full through the proxy"
[ "$out" = "psql over true" ] || fail "psql: the proxy-to-server leg is not TLS: $out"

# sslmode=verify-ca and require work too.
for mode in verify-ca require; do
  psql -X -qAt "host=127.0.0.1 port=$pport dbname=postgres user=postgres sslmode=$mode sslrootcert=$tls/ca.crt" \
    -c "SELECT 'mode $mode'" | grep -qx "mode $mode" || fail "psql sslmode=$mode through the proxy"
done

# Megabytes both ways through TLS (records batched, back-pressure, TLS
# buffers drained): byte for byte what a direct TLS connection gives.
big="SELECT g, repeat(md5(g::text), 100) FROM generate_series(1, 3000) g"
want=$(psql -X -qAt "host=127.0.0.1 port=$port user=postgres dbname=postgres sslmode=require" -c "$big" | md5sum)
got=$(psql -X -qAt "$ci user=postgres" -c "$big" | md5sum)
[ "$got" = "$want" ] || fail "a 10 MB result differs through the TLS proxy"
psql -X -qAt "$ci user=postgres" -c "$big" >"$work/big.txt"
psql -X -q "$ci user=postgres" -v ON_ERROR_STOP=1 -c "CREATE TABLE big_up (g int, t text)" \
  -c "\\copy big_up FROM '$work/big.txt' WITH (DELIMITER '|')" >/dev/null || fail "COPY FROM STDIN through TLS"
n=$(psql -X -qAt "$ci user=postgres" -c "SELECT count(*) || ':' || md5(string_agg(t, '' ORDER BY g)) FROM big_up")
w=$(psql -X -qAt "$ci user=postgres" -c "SELECT count(*) || ':' || md5(string_agg(repeat(md5(g::text), 100), '' ORDER BY g)) FROM generate_series(1, 3000) g")
[ "$n" = "$w" ] || fail "COPY through TLS stored $n, want $w"

# SCRAM over TLS both ways: channel binding cannot pass a terminating proxy;
# with channel_binding=disable the password login works.
PGPASSWORD=app-secret-pw psql -X -qAt "$ci user=app channel_binding=disable application_name=scram-tls" \
  -c "SELECT 'scram ok'" | grep -qx "scram ok" || fail "SCRAM with channel_binding=disable"
set +e
PGPASSWORD=app-secret-pw psql -X -qAt "$ci user=app channel_binding=require" -c "SELECT 1" >/dev/null 2>"$work/cb.txt"
rc=$?; set -e
[ "$rc" != 0 ] || fail "channel_binding=require cannot work through a TLS-terminating proxy, yet it connected"
grep -q "channel binding" "$work/cb.txt" || fail "channel_binding=require: $(cat "$work/cb.txt")"
# libpq's default (prefer) picks SCRAM-SHA-256-PLUS when the server offers it
# (it does, over its TLS with the proxy): it fails the same way, as
# docs/proxy.md says. If this ever connects, the docs must change.
set +e
PGPASSWORD=app-secret-pw psql -X -qAt "$ci user=app channel_binding=prefer" -c "SELECT 1" >/dev/null 2>"$work/cbp.txt"
rc=$?; set -e
[ "$rc" != 0 ] && grep -q "channel binding" "$work/cbp.txt" || fail "channel_binding=prefer: rc $rc $(cat "$work/cbp.txt")"

/usr/bin/python3 - "$ci user=postgres application_name=psycopg2-tls" <<'PY' || fail "psycopg2 with verify-full"
import sys, psycopg2
c = psycopg2.connect(sys.argv[1])
cur = c.cursor()
cur.execute("SELECT %s::text AS psycopg2_tls", ("via proxy",))
assert cur.fetchone()[0] == "via proxy"
assert c.info.ssl_in_use
c.close()
PY

jdbc=/usr/share/java/postgresql.jar
if command -v java >/dev/null 2>&1 && [ -f "$jdbc" ]; then
  url="jdbc:postgresql://localhost:$pport/postgres?user=postgres&sslmode=verify-full&sslrootcert=$tls/ca.crt&ApplicationName=jdbc-tls"
  out=$(java -cp "$jdbc" "$SCRY_SOURCE_DIR/tests/proxy/JdbcTls.java" "$url" 2>"$work/jdbc.err") || fail "pgjdbc: $(cat "$work/jdbc.err")"
  [ "$out" = 42 ] || fail "pgjdbc printed $out"
  jdbc_ran=1
else
  echo "SKIP: pgjdbc (no java or /usr/share/java/postgresql.jar)"
  jdbc_ran=0
fi

out=$(/usr/bin/python3 "$SCRY_SOURCE_DIR/tests/proxy/direct_tls_client.py" "$pport" "$tls/ca.crt" "SELECT 'direct tls'") \
  || fail "direct TLS client"
[ "$out" = "direct tls" ] || fail "direct TLS client printed $out"

stop_proxy
[ "$prc" = 0 ] || fail "the TLS proxy exited with $prc"
grep -q '"events_dropped":0' "$work/main.out" || fail "summary: $(cat "$work/main.out")"
# Every client's session is there, with its events (pgjdbc sets its
# application_name after the startup: its query is checked below).
apps=$(sqlite3 "$work/main.db" "SELECT application || ':' || events FROM sessions WHERE events > 0 ORDER BY 1")
want="direct-tls psql-tls psycopg2-tls scram-tls"
for a in $want; do
  grep -q "^$a:[1-9]" <<<"$apps" || fail "no recorded session of $a: $apps"
done
pat=$("$SCRY_CLI" workload patterns --store "$work/main.db")
for q in "pg_stat_ssl"; do
  grep -q "$q" <<<"$pat" || fail "'$q' not recorded: $pat"
done
[ "$jdbc_ran" = 0 ] || grep -q "jdbc_tls" <<<"$pat" || fail "pgjdbc query not recorded: $pat"
perms=$(stat -c %a "$work/main.db")
[ "$perms" = 600 ] || fail "the store is created $perms, not 600"
if grep -a -q "app-secret-pw" "$work"/main.db*; then fail "the password reached the store"; fi

# ---- no certificate: SSLRequest gets 'N' (sslmode=require fails), a
# ClientHello gets a PostgreSQL error saying TLS is not configured.
start_proxy nocert --upstream "127.0.0.1:$port" --upstream-sslmode require
psql -X -qAt "host=127.0.0.1 port=$pport user=postgres dbname=postgres sslmode=prefer" -c "SELECT 'plain client'" \
  | grep -qx "plain client" || fail "plain client to a TLS upstream"
if psql -X -q "host=127.0.0.1 port=$pport user=postgres dbname=postgres sslmode=require" -c "SELECT 1" >/dev/null 2>&1; then
  fail "sslmode=require should fail without --tls-cert"
fi
/usr/bin/python3 "$SCRY_SOURCE_DIR/tests/proxy/direct_tls_client.py" "$pport" --raw >"$work/raw.txt" || true
grep -q "TLS is not configured on the proxy" "$work/raw.txt" || fail "direct TLS without a certificate: $(cat "$work/raw.txt")"
[ "$(head -c 1 "$work/raw.txt")" = E ] || fail "the answer to a ClientHello is not an ErrorResponse"
stop_proxy

# ---- upstream failures say which address and why (without --verbose)
start_proxy badca --upstream "127.0.0.1:$port" --upstream-sslmode verify-full --upstream-sslrootcert "$tls/otherca.crt"
set +e
psql -X -q "host=127.0.0.1 port=$pport user=postgres dbname=postgres" -c "SELECT 1" >/dev/null 2>"$work/badca.txt"; rc=$?
set -e
[ "$rc" != 0 ] || fail "verify-full with the wrong CA connected"
grep -q "127.0.0.1:$port" "$work/badca.txt" && grep -qi "certificate verif" "$work/badca.txt" \
  || fail "client error does not say which address and why: $(cat "$work/badca.txt")"
grep -q "127.0.0.1:$port.*certificate verif" "$work/badca.err" || fail "the proxy did not log the upstream failure"
stop_proxy

start_proxy plainup --upstream "127.0.0.1:$port" --upstream-sslmode disable
set +e
psql -X -q "host=127.0.0.1 port=$pport user=postgres dbname=postgres" -c "SELECT 1" >/dev/null 2>"$work/plain.txt"; rc=$?
set -e
[ "$rc" != 0 ] || fail "a hostssl-only server accepted plain text"
grep -q "no encryption" "$work/plain.txt" || fail "server's refusal not forwarded: $(cat "$work/plain.txt")"
stop_proxy

# A client certificate for the server (pg_hba "cert"): only the proxy holds it.
start_proxy cert --upstream "127.0.0.1:$port" --upstream-sslmode verify-full --upstream-sslrootcert "$tls/ca.crt" \
  --upstream-sslcert "$tls/client.crt" --upstream-sslkey "$tls/client.key"
out=$(psql -X -qAt "host=127.0.0.1 port=$pport user=certuser dbname=postgres" -c "SELECT 'cert ' || current_user") \
  || fail "login with the proxy's client certificate"
[ "$out" = "cert certuser" ] || fail "client certificate login printed $out"
stop_proxy
[ "$prc" = 0 ] || fail "cert proxy exit status $prc"
set +e
psql -X -q "host=127.0.0.1 port=$port user=certuser dbname=postgres sslmode=require" -c "SELECT 1" >/dev/null 2>&1; rc=$?
set -e
[ "$rc" != 0 ] || fail "certuser logged in without a certificate: the cert test proves nothing"

# Bad TLS files: exit 1 naming the file.
set +e
"$SCRY_CLI" capture proxy --listen 127.0.0.1:0 --upstream "127.0.0.1:$port" --store "$work/x.db" \
  --tls-cert "$work/missing.crt" --tls-key "$tls/proxy.key" 2>"$work/missing.txt"; rc=$?
set -e
[ "$rc" = 1 ] && grep -q "missing.crt" "$work/missing.txt" || fail "missing certificate: rc $rc, $(cat "$work/missing.txt")"
echo ok
