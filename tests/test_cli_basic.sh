#!/bin/bash
# End-to-end checks of `scry version`, `scry fingerprint` and `scry workload`:
# output formats, --help, exit codes, and stores that must be refused and left
# untouched (corrupt, not SQLite, newer schema). The populated store is
# written through libscry's public API from Python (ctypes), as a binding would.
set -u
cli=${SCRY_CLI:?SCRY_CLI must name the scry binary (ctest sets it)}
lib=${SCRY_LIB:?SCRY_LIB must name libscry.so (ctest sets it)}
tmp=$(mktemp -d /tmp/scry-cli-basic.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# expect RC CMD...: runs CMD, stdout to $tmp/out, stderr to $tmp/err.
expect() {
  local want=$1; shift
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  [ "$rc" = "$want" ] || fail "exit $rc (wanted $want): $* -- stderr: $(head -c 300 "$tmp/err")"
}
has() { grep -q -- "$2" "$1" || fail "$1 lacks '$2': $(head -c 300 "$1")"; }

# ---- version and help --------------------------------------------------------
expect 0 "$cli" version
grep -Eq '^scry [0-9]+\.[0-9]+\.[0-9]+ \(libscry [0-9]+\.[0-9]+\.[0-9]+\)$' "$tmp/out" || fail "version line: $(cat "$tmp/out")"
expect 0 "$cli" --version
expect 0 "$cli" --help;                  has "$tmp/out" "usage: scry COMMAND"
expect 2 "$cli";                         has "$tmp/err" "usage: scry COMMAND"
expect 2 "$cli" no-such-command;         has "$tmp/err" "unknown command"
for c in "version --help" "fingerprint --help" "fingerprint -h" "workload --help" \
         "workload info --help" "workload patterns --help"; do
  expect 0 "$cli" $c
  has "$tmp/out" "usage: scry"
done

# ---- fingerprint ---------------------------------------------------------------
cat >"$tmp/q.sql" <<'SQL'
-- a comment line
SELECT * FROM orders WHERE id = 42;
select *   from orders where id = 7;
INSERT INTO t (a, b) VALUES (1, 'it''s');
SELECT $$dollar; quoted$$;
SQL
expect 0 "$cli" fingerprint "$tmp/q.sql"
[ "$(wc -l <"$tmp/out")" = 4 ] || fail "fingerprint printed $(wc -l <"$tmp/out") lines, wanted 4"
grep -Evq '^[0-9a-f]{16}$' "$tmp/out" && fail "fingerprint lines are not 16 hex digits: $(cat "$tmp/out")"
[ "$(sed -n 1p "$tmp/out")" = "$(sed -n 2p "$tmp/out")" ] || fail "same query with other constants got another fingerprint"
cp "$tmp/out" "$tmp/plain"
expect 0 "$cli" fingerprint - <"$tmp/q.sql"
cmp -s "$tmp/out" "$tmp/plain" || fail "stdin and file give different output"
expect 0 "$cli" fingerprint <"$tmp/q.sql"
cmp -s "$tmp/out" "$tmp/plain" || fail "implicit stdin differs"
expect 0 "$cli" fingerprint --normalize "$tmp/q.sql"
has "$tmp/out" "$(printf '\tSELECT \\* FROM orders WHERE id = \\$1')"
has "$tmp/out" 'VALUES (\$1, \$2)'
expect 0 "$cli" fingerprint --json "$tmp/q.sql"
/usr/bin/python3 - "$tmp/out" "$tmp/plain" <<'PY' || fail "fingerprint --json output"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
plain = open(sys.argv[2]).read().split()
assert len(lines) == 4, lines
for l, p in zip(lines, plain):
    o = json.loads(l)
    assert o["fingerprint"] == p, (o, p)
    assert "normalized" in o and "query" in o, o
assert json.loads(lines[3])["query"] == "SELECT $$dollar; quoted$$", lines[3]
PY
# A statement that does not parse: its position on stderr, the others still printed.
printf 'SELECT 1;\nSELECT * FORM t;\nSELECT 2;\n' >"$tmp/bad.sql"
expect 1 "$cli" fingerprint "$tmp/bad.sql"
[ "$(wc -l <"$tmp/out")" = 2 ] || fail "the batch did not keep going past the error: $(cat "$tmp/out")"
has "$tmp/err" 'bad.sql:2: statement 2: syntax error at or near "FORM" at position 10'
expect 1 "$cli" fingerprint --json "$tmp/bad.sql"
has "$tmp/out" '{"error":"syntax error at or near \\"FORM\\" at position 10"'
expect 1 "$cli" fingerprint "$tmp/does-not-exist.sql"; has "$tmp/err" "cannot open"
expect 2 "$cli" fingerprint --bogus "$tmp/q.sql";      has "$tmp/err" "scry fingerprint --help"
expect 2 "$cli" fingerprint "$tmp/q.sql" "$tmp/q.sql"
# What the scanner cannot split (unterminated quote, NUL byte) fails as the last statement.
printf "SELECT 1;\nSELECT 'oops; SELECT 2;\n" >"$tmp/unterminated.sql"
expect 1 "$cli" fingerprint "$tmp/unterminated.sql"
[ "$(wc -l <"$tmp/out")" = 1 ] || fail "statements before an unterminated quote were lost: $(cat "$tmp/out")"
has "$tmp/err" "unterminated.sql:2: statement 2: unterminated quoted string"
printf 'SELECT 1;\0SELECT 2;' >"$tmp/nul.sql"
expect 1 "$cli" fingerprint "$tmp/nul.sql"
has "$tmp/err" "NUL byte"
expect 1 "$cli" fingerprint "$tmp";                    has "$tmp/err" "Is a directory"
: >"$tmp/empty.sql"
expect 0 "$cli" fingerprint "$tmp/empty.sql"
[ -s "$tmp/out" ] && fail "empty input printed something"

# ---- a store written through the public API -----------------------------------
/usr/bin/python3 - "$lib" "$tmp/w.db" "$tmp/empty.db" <<'PY' || fail "could not write the test store through libscry"
import ctypes as C, sys
lib = C.CDLL(sys.argv[1])
class Err(C.Structure):
    _fields_ = [("code", C.c_int), ("sys_code", C.c_int), ("sqlstate", C.c_char * 6), ("message", C.c_char * 512)]
class Session(C.Structure):
    _fields_ = [("version", C.c_uint), ("source", C.c_int), ("database", C.c_char_p), ("user", C.c_char_p),
                ("application", C.c_char_p), ("client", C.c_char_p), ("started_us", C.c_int64)]
class Event(C.Structure):
    _fields_ = [("session_id", C.c_int64), ("start_us", C.c_int64), ("duration_us", C.c_int64),
                ("kind", C.c_int), ("query", C.c_char_p), ("query_len", C.c_size_t), ("nparams", C.c_int),
                ("params", C.c_void_p), ("rows", C.c_int64), ("sqlstate", C.c_char * 6),
                ("error_message", C.c_char_p)]
lib.scry_store_open.argtypes = [C.POINTER(C.c_void_p), C.c_char_p, C.c_void_p, C.POINTER(Err)]
lib.scry_store_session_add.argtypes = [C.c_void_p, C.POINTER(Session), C.POINTER(C.c_int64), C.POINTER(Err)]
lib.scry_store_append.argtypes = [C.c_void_p, C.POINTER(Event), C.c_size_t, C.c_size_t, C.POINTER(Err)]
lib.scry_store_free.argtypes = [C.c_void_p]
err = Err()
for path in sys.argv[3:]:
    s = C.c_void_p()
    assert lib.scry_store_open(C.byref(s), path.encode(), None, C.byref(err)) == 0, err.message
    lib.scry_store_free(s)
s = C.c_void_p()
assert lib.scry_store_open(C.byref(s), sys.argv[2].encode(), None, C.byref(err)) == 0, err.message
sid = C.c_int64()
info = Session(1, 1, b"shop", b"app", b"web", b"10.0.0.7", 1700000000000000)
assert lib.scry_store_session_add(s, C.byref(info), C.byref(sid), C.byref(err)) == 0, err.message
evs = (Event * 6)()
texts = [(b"SELECT * FROM orders WHERE id = 1", 1000), (b"SELECT * FROM orders WHERE id = 2", 3000),
         (b"SELECT * FROM orders WHERE id = 3", 2000), (b"UPDATE orders SET note = 'x' WHERE id = 4", 500),
         (b"SELECT * FORM orders", 10), (b"UPDATE orders SET note = 'y' WHERE id = 5", 1500)]
for i, (q, d) in enumerate(texts):
    evs[i] = Event(sid.value, 1700000001000000 + i * 1000, d, 0, q, 0, 0, None, 1, b"42601" if b"FORM" in q else b"", None)
assert lib.scry_store_append(s, evs, 6, C.sizeof(Event), C.byref(err)) == 0, err.message
lib.scry_store_free(s)
PY

expect 0 "$cli" workload info --store "$tmp/w.db"
has "$tmp/out" "events  *6"
has "$tmp/out" "sessions  *1"
has "$tmp/out" "patterns  *3"
expect 0 "$cli" workload info --store "$tmp/w.db" --json
/usr/bin/python3 -c '
import json, sys
o = json.load(open(sys.argv[1]))
assert (o["events"], o["sessions"], o["patterns"], o["statements"]) == (6, 1, 3, 3), o
assert o["schema_version"] == 2 and o["file_bytes"] > 0 and o["first_us"] == 1700000001000000, o
' "$tmp/out" || fail "workload info --json: $(cat "$tmp/out")"
SCRY_STORE="$tmp/w.db" expect 0 "$cli" workload patterns
has "$tmp/out" "FINGERPRINT"
has "$tmp/out" "SELECT \* FROM orders WHERE id = \$1"
has "$tmp/out" "(unparsable)"
head -2 "$tmp/out" | tail -1 | grep -Eq '^[0-9a-f]{16} +3 +0 +2\.000  SELECT' || fail "first pattern row: $(sed -n 2p "$tmp/out")"
expect 0 "$cli" workload patterns --store "$tmp/w.db" --json --limit 2
/usr/bin/python3 -c '
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == 2, rows
a, b = rows
assert a["count"] == 3 and abs(a["mean_ms"] - 2.0) < 1e-9 and abs(a["total_ms"] - 6.0) < 1e-9, a
assert a["normalized"] == "SELECT * FROM orders WHERE id = $1", a
assert b["count"] == 2 and abs(b["mean_ms"] - 1.0) < 1e-9, b
' "$tmp/out" || fail "workload patterns --json: $(cat "$tmp/out")"
expect 0 "$cli" workload patterns --store "$tmp/w.db" --json
grep -q '"parse_error":"syntax error at or near \\"FORM\\" at position' "$tmp/out" || fail "parse_error missing: $(cat "$tmp/out")"
# An empty store works too.
expect 0 "$cli" workload info --store "$tmp/empty.db"; has "$tmp/out" "events  *0"
expect 0 "$cli" workload patterns --store "$tmp/empty.db" --json
[ -s "$tmp/out" ] && fail "empty store listed patterns"
expect 2 "$cli" workload;                         has "$tmp/err" "usage: scry workload"
expect 2 "$cli" workload frobnicate --store "$tmp/w.db"
expect 2 "$cli" workload info --store "$tmp/w.db" --limit x

# ---- stores that must be refused and left untouched -------------------------------
expect 1 "$cli" workload info --store "$tmp/missing.db"
has "$tmp/err" "no workload store"
[ -e "$tmp/missing.db" ] && fail "workload info created a store"

refused() { # FILE NEEDLE
  local sum; sum=$(sha256sum <"$1")
  expect 1 "$cli" workload info --store "$1"
  has "$tmp/err" "$2"
  [ "$(sha256sum <"$1")" = "$sum" ] || fail "$1 was modified"
  expect 1 "$cli" workload patterns --store "$1"
  [ "$(sha256sum <"$1")" = "$sum" ] || fail "$1 was modified"
}
printf 'id,total\n1,19.99\n' >"$tmp/orders.csv"
refused "$tmp/orders.csv" "not a SQLite database); it was left untouched"

cp "$tmp/w.db" "$tmp/newer.db"
/usr/bin/python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute("PRAGMA user_version = 7"); c.commit(); c.execute("PRAGMA wal_checkpoint(TRUNCATE)"); c.close()' "$tmp/newer.db"
refused "$tmp/newer.db" "written by a newer scry (store schema 7"

/usr/bin/python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute("CREATE TABLE users(id int)"); c.commit(); c.close()' "$tmp/foreign.db"
refused "$tmp/foreign.db" "not a scry store"

cp "$tmp/w.db" "$tmp/corrupt.db"
/usr/bin/python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute("PRAGMA wal_checkpoint(TRUNCATE)"); c.close()' "$tmp/corrupt.db"
/usr/bin/python3 -c '
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
for i in range(100, 4096):
    b[i] = (i * 7 + 3) & 255
open(p, "wb").write(b)' "$tmp/corrupt.db"
refused "$tmp/corrupt.db" "is corrupt"

# ---- a server that accepts and never answers ---------------------------------
# (stopped, overloaded): the library's own connections give up after their
# connect timeout (10 s) with libpq's reason, instead of waiting forever.
/usr/bin/python3 - "$tmp/port" <<'PY' &
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(8)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
time.sleep(60)
PY
silent=$!
for _ in $(seq 50); do [ -s "$tmp/port" ] && break; sleep 0.1; done
expect 1 timeout 40 "$cli" shadow gc "host=127.0.0.1 port=$(cat "$tmp/port") user=x dbname=x"
has "$tmp/err" "timeout expired"
kill "$silent" 2>/dev/null; wait "$silent" 2>/dev/null

if [ "$fails" -gt 0 ]; then
  echo "$fails check(s) failed"
  exit 1
fi
echo "ok: scry version/fingerprint/workload"
