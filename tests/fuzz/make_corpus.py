#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz (committed; rerun after changing
this file): corpus/pgwire, corpus/fingerprint, corpus/logimport. The store
seeds (corpus/store) are small real stores written by `scry capture log`:
see docs/testing.md."""
import os, struct, sys

here = os.path.dirname(os.path.abspath(__file__))
src = os.path.dirname(os.path.dirname(here))

def out(kind, name, data):
    d = os.path.join(here, "corpus", kind)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

# ---- pgwire: segments [dir][len16 le][bytes] --------------------------------
def msg(t, body):
    return t + struct.pack("!I", len(body) + 4) + body
def cstr(s):
    return s.encode() + b"\0"
def startup(**params):
    body = struct.pack("!I", 196608) + b"".join(cstr(k) + cstr(v) for k, v in params.items()) + b"\0"
    return struct.pack("!I", len(body) + 4) + body
def seg(direction, data):
    return bytes([direction]) + struct.pack("<H", len(data)) + data
F, B = 0, 1
hello = [seg(F, startup(user="app", database="shop", application_name="web")),
         seg(B, msg(b"R", struct.pack("!I", 0)) + msg(b"S", cstr("server_version") + cstr("15.4")) +
             msg(b"K", struct.pack("!II", 1234, 5678)) + msg(b"Z", b"I"))]
def rowdesc(*names):
    return msg(b"T", struct.pack("!H", len(names)) + b"".join(cstr(n) + struct.pack("!IhIhih", 0, 0, 23, 4, -1, 0) for n in names))
def datarow(*vals):
    return msg(b"D", struct.pack("!H", len(vals)) + b"".join(struct.pack("!i", len(v)) + v for v in vals))
def done(tag, status=b"I"):
    return msg(b"C", cstr(tag)) + msg(b"Z", status)
def error(code, text):
    return msg(b"E", b"SERROR\0" + b"C" + cstr(code) + b"M" + cstr(text) + b"\0") + msg(b"Z", b"I")
def simple(q, *resp):
    return [seg(F, msg(b"Q", cstr(q))), seg(B, b"".join(resp))]
def ext(q, params, tag):
    p = msg(b"P", cstr("s1") + cstr(q) + struct.pack("!H", 1) + struct.pack("!I", 23))
    b = msg(b"B", cstr("") + cstr("s1") + struct.pack("!HH", 1, 0) + struct.pack("!H", len(params)) +
            b"".join(struct.pack("!i", len(v)) + v if v is not None else struct.pack("!i", -1) for v in params) +
            struct.pack("!HH", 1, 0))
    e = msg(b"E", cstr("") + struct.pack("!I", 0))
    return [seg(F, p + b + msg(b"D", b"P" + cstr("")) + e + msg(b"S", b"")),
            seg(B, msg(b"1", b"") + msg(b"2", b"") + rowdesc("a") + datarow(b"1") + done(tag))]
seeds = {
    "simple": hello + simple("SELECT 1", rowdesc("?column?"), datarow(b"1"), done("SELECT 1")),
    "multi": hello + simple("BEGIN; UPDATE t SET a = 1 WHERE b = 'x'; COMMIT", done("BEGIN", b"T"),
                            done("UPDATE 3", b"T"), done("COMMIT")),
    "error": hello + simple("SELECT * FROM missing", error("42P01", 'relation "missing" does not exist')),
    "extended": hello + ext("SELECT a FROM t WHERE id = $1", [b"42"], "SELECT 1"),
    "extended_null": hello + ext("SELECT $1::int", [None], "SELECT 1"),
    "copy": hello + [seg(F, msg(b"Q", cstr("COPY t FROM STDIN"))),
                     seg(B, msg(b"G", b"\0" + struct.pack("!H", 1) + struct.pack("!H", 0))),
                     seg(F, msg(b"d", b"1\n2\n") + msg(b"c", b"")),
                     seg(B, done("COPY 2"))],
    "ssl_refused": [seg(F, struct.pack("!II", 8, 80877103)), seg(B, b"N")] + hello,
    "cancel": [seg(F, struct.pack("!IIII", 16, 80877102, 1234, 5678))],
    "bigcount": hello + simple("INSERT INTO t SELECT 1", done("INSERT 0 99999999999999999999999999")),
    "terminate": hello + simple("SELECT 2", rowdesc("x"), datarow(b"2"), done("SELECT 1")) + [seg(F, msg(b"X", b""))],
    "marker": hello + simple("SELECT 1 /* \x01 */", rowdesc("x"), datarow(b"1"), done("SELECT 1")),
    "notice": hello + simple("DO $$BEGIN RAISE NOTICE 'n'; END$$",
                             msg(b"N", b"SNOTICE\0C00000\0Mn\0\0"), done("DO")),
}
for name, segs in seeds.items():
    out("pgwire", name, b"".join(segs))

# ---- fingerprint: SQL texts ---------------------------------------------------
sqls = [
    "SELECT 1", "SELECT * FROM t WHERE id = 42 AND name = 'x''y'", "select a, b from t where c in (1, 2, 3)",
    "INSERT INTO t (a, b) VALUES (1, 'a'), (2, 'b')", "UPDATE t SET a = a + 1 WHERE id = 2147483648",
    "DELETE FROM t WHERE ts < now() - interval '1 day'", "WITH x AS (SELECT 1.5e3) SELECT * FROM x",
    "SELECT x::float(10), y::numeric(10,2), z::int[3] FROM t", "SELECT CURRENT_TIMESTAMP(3)",
    "SELECT E'\\n', B'101', X'1F', U&'d\\0061t'", "SELECT $$a;b$$, $tag$ ' $tag$",
    "/* app:web */ SELECT 1 -- trailing\n", "SELECT 1; CREATE TABLE t (a int); SELECT 2",
    "SELECT 'a'\n'b'", "SELECT 1 /* \x01 */", "SELECT 'unterminated", "SELECT /* open",
    "SELEC 1", "SELECT 1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1", "SELECT ((((((((1))))))))",
    "SELECT CASE WHEN a THEN 1 ELSE 2 END FROM t", "SELECT ARRAY[1,2,3], a[1] FROM t",
    "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = 1",
    "SELECT 1 UNION SELECT 2 UNION SELECT 3", "SELECT -3, - 4, 1..2, 0x1F, 1_000, 123abc",
    "VALUES (1), (2)", "TABLE t", "COMMENT ON TABLE t IS 'x'", "SELECT \"a\"\"b\" FROM \"T\"",
    "SELECT 1;;; SELECT 2;", "SELECT 'a\x02b', 3", "SELECT 99999999999999999999999999",
]
for i, s in enumerate(sqls):
    out("fingerprint", "sql%02d" % i, s.encode())

# ---- logimport: [format][prefix\n if stderr][log] -------------------------------
def head(path, nbytes):
    with open(path, "rb") as f:
        data = f.read()
    cut = data[:nbytes]
    return cut[:cut.rfind(b"\n") + 1] if b"\n" in cut else cut
fx = os.path.join(src, "tests", "logimport")
for part, off in (("a", 0), ("b", 1)):
    with open(os.path.join(fx, "pg.csv"), "rb") as f:
        lines = f.read().split(b"\n")
    out("logimport", "csv_" + part, b"\0" + b"\n".join(lines[off * 40:off * 40 + 40]) + b"\n")
    with open(os.path.join(fx, "pg.json"), "rb") as f:
        lines = f.read().split(b"\n")
    out("logimport", "json_" + part, b"\1" + b"\n".join(lines[off * 30:off * 30 + 30]) + b"\n")
    with open(os.path.join(fx, "pg.log"), "rb") as f:
        lines = f.read().split(b"\n")
    out("logimport", "stderr_" + part, b"\2%m [%p] %q%u@%d/%a \n" + b"\n".join(lines[off * 50:off * 50 + 50]) + b"\n")
prefixes = ["%m [%p] %q%u@%d/%a ", "%t [%p-%l] %c %e %n %u@%d ", "%m %c %x %v %i %r %h %b %s %% %q%a ",
            "[%p]: [%l-1] user=%u,db=%d,app=%a,client=%h ", "%n|%p|%e|", "%c %Q %P %L %B "]
with open(os.path.join(fx, "pg.log"), "rb") as f:
    lines = f.read().split(b"\n")
for i, pre in enumerate(prefixes):
    body = b"\n".join(lines[i * 20:i * 20 + 20]) + b"\n"
    out("logprefix", "prefix%d" % i, pre.encode() + b"\n" + body)
out("logprefix", "session", b"%t [%p-%l] %c %e %n %u@%d \n"
    b"2026-01-01 00:00:00 UTC [12-1] 6779a1b2.c 00000 1735689600.123 app@shop LOG:  statement: SELECT 1\n"
    b"2026-01-01 00:00:00 UTC [12-2] 6779a1b2.c 00000 1735689600.124 app@shop LOG:  duration: 0.5 ms\n"
    b"2026-01-01 00:00:02 UTC [99999999999999999999999-1] 99999999999999999999.c 00000 99999999999999999999.1 a@b LOG:  duration: 18446744073709551617 ms  statement: SELECT 2\n")
out("logimport", "stderr_session", b"\2%t [%p-%l] %c %e %n %u@%d \n"
    b"2026-01-01 00:00:00 UTC [12-1] 6779a1b2.c 00000 1735689600.123 app@shop LOG:  statement: SELECT 1\n"
    b"2026-01-01 00:00:00 UTC [12-2] 6779a1b2.c 00000 1735689600.124 app@shop LOG:  duration: 0.5 ms\n"
    b"2026-01-01 00:00:01 UTC [12-3] 6779a1b2.c 42P01 1735689601.000 app@shop ERROR:  relation \"x\" does not exist\n"
    b"2026-01-01 00:00:01 UTC [12-4] 6779a1b2.c 42P01 1735689601.000 app@shop STATEMENT:  SELECT * FROM x\n"
    b"2026-01-01 00:00:02 UTC [99999999999999999999999-1] 99999999999999999999.c 00000 99999999999999999999.1 a@b LOG:  duration: 18446744073709551617 ms  statement: SELECT 2\n")
