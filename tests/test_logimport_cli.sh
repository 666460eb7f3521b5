#!/usr/bin/env bash
# `scry capture log` on logs a real PostgreSQL 15 server wrote (fixtures in
# tests/logimport/, written by tests/test_logimport.c's workload with
# SCRY_TEST_KEEP_LOGS=DIR): every format gives the same 19 events, gzip and
# standard input work, rotated files continue sessions, bad lines are
# reported with their line numbers.
set -euo pipefail
: "${SCRY_CLI:?}" "${SCRY_SOURCE_DIR:?}"
fx=$SCRY_SOURCE_DIR/tests/logimport
prefix='%m [%p] %q%u@%d/%a '
tmp=$(mktemp -d /tmp/scry-logimport-cli.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
check() { # name, command...
  local name=$1; shift
  if "$@"; then pass=$((pass + 1)); else echo "FAIL: $name" >&2; fail=$((fail + 1)); fi
}
field() { sed -E "s/.*\"$1\":([0-9]+).*/\\1/" "$2"; }

"$SCRY_CLI" capture log --format csvlog --json --store "$tmp/csv.db" "$fx/pg.csv" >"$tmp/csv.json"
"$SCRY_CLI" capture log --format jsonlog --json --store "$tmp/json.db" "$fx/pg.json" >"$tmp/json.json"
"$SCRY_CLI" capture log --format stderr --prefix "$prefix" --json --store "$tmp/err.db" "$fx/pg.log" >"$tmp/err.json"
for f in csv json err; do
  check "$f statements" test "$(field statements "$tmp/$f.json")" = 19
  check "$f failed" test "$(field failed "$tmp/$f.json")" = 5
  check "$f sessions" test "$(field sessions "$tmp/$f.json")" = 3
  check "$f skipped" test "$(field skipped "$tmp/$f.json")" = 0
done
# The three formats give the same patterns with the same counts.
for f in csv json err; do
  "$SCRY_CLI" workload patterns --json --store "$tmp/$f.db" 2>/dev/null | sed -E 's/"(first|last|mean|total)[a-z_]*":[^,}]*,?//g' | sort >"$tmp/$f.patterns" || true
done
check "csv=json patterns" cmp -s "$tmp/csv.patterns" "$tmp/json.patterns"
check "csv=stderr patterns" cmp -s "$tmp/csv.patterns" "$tmp/err.patterns"
check "patterns listed" test -s "$tmp/csv.patterns"

# gzip, and standard input.
gzip -c "$fx/pg.csv" >"$tmp/pg.csv.gz"
"$SCRY_CLI" capture log --format csvlog --json --store "$tmp/gz.db" "$tmp/pg.csv.gz" >"$tmp/gz.json"
check "gzip" test "$(field statements "$tmp/gz.json")" = 19
"$SCRY_CLI" capture log --format jsonlog --json --store "$tmp/in.db" - <"$fx/pg.json" >"$tmp/in.json"
check "stdin" test "$(field statements "$tmp/in.json")" = 19

# A log rotated in the middle of a session: two files, one import, 3 sessions.
head -n 60 "$fx/pg.log" >"$tmp/a.log"
tail -n +61 "$fx/pg.log" >"$tmp/b.log"
"$SCRY_CLI" capture log --format stderr --prefix "$prefix" --json --store "$tmp/rot.db" "$tmp/a.log" "$tmp/b.log" >"$tmp/rot.json"
check "rotated statements" test "$(field statements "$tmp/rot.json")" = 19
check "rotated sessions" test "$(field sessions "$tmp/rot.json")" = 3

# Bad lines: counted, shown with line numbers, not fatal (exit 0).
{ echo "garbage at the start"; cat "$fx/pg.log"; printf 'another bad line\n'; } >"$tmp/bad.log"
"$SCRY_CLI" capture log --format stderr --prefix "$prefix" --store "$tmp/bad.db" "$tmp/bad.log" >"$tmp/bad.out"
check "bad lines reported" grep -q '^lines skipped: 2$' "$tmp/bad.out"
check "first bad line number" grep -q '^  line 1: line does not start with log_line_prefix: garbage at the start' "$tmp/bad.out"
check "still imported" grep -q '^imported 19 statements' "$tmp/bad.out"

# Usage errors.
set +e
"$SCRY_CLI" capture log --format stderr --json --store "$tmp/x.db" "$fx/pg.log" >"$tmp/detect.json" 2>"$tmp/usage.err"; rc=$?
check "stderr prefix detected" test $rc = 0
check "stderr prefix detected: imported" test "$(field statements "$tmp/detect.json")" = 19
check "stderr prefix detected: said" grep -qF "log_line_prefix '%m [%p] %q%u@%d/%a '" "$tmp/detect.json"
"$SCRY_CLI" capture log --format nope --store "$tmp/x.db" "$fx/pg.log" 2>/dev/null; rc=$?
check "bad format" test $rc = 2
"$SCRY_CLI" capture log --format csvlog --store "$tmp/x.db" "$tmp/missing.csv" 2>"$tmp/missing.err"; rc=$?
check "missing file" test $rc = 1
set -e
check "missing file message" grep -q 'missing.csv' "$tmp/missing.err"

# Compression by content, whatever the name; standard input too.
for z in gzip bzip2 xz zstd; do
  $z -c "$fx/pg.csv" >"$tmp/pg.$z.data"
  "$SCRY_CLI" capture log --json --store "$tmp/$z.db" "$tmp/pg.$z.data" >"$tmp/$z.json"
  check "$z by content" test "$(field statements "$tmp/$z.json")" = 19
  "$SCRY_CLI" capture log --json --store "$tmp/$z-in.db" - <"$tmp/pg.$z.data" >"$tmp/$z-in.json"
  check "$z on stdin" test "$(field statements "$tmp/$z-in.json")" = 19
done
# A truncated gzip: what can be read is imported, a warning, exit 1.
for _ in $(seq 40); do cat "$fx/pg.log"; done >"$tmp/big.log"
gzip -c "$tmp/big.log" >"$tmp/big.gz"
head -c $(( $(stat -c %s "$tmp/big.gz") * 2 / 3 )) "$tmp/big.gz" >"$tmp/cut.gz"
set +e
"$SCRY_CLI" capture log --json --store "$tmp/cut.db" "$tmp/cut.gz" >"$tmp/cut.json" 2>"$tmp/cut.err"; rc=$?
set -e
check "truncated gzip: exit 1" test $rc = 1
check "truncated gzip: said" grep -q 'gzip data is truncated' "$tmp/cut.err"
ref=$(gzip -dc <"$tmp/cut.gz" 2>/dev/null | grep -c 'LOG:  duration: .* ms  statement\|LOG:  statement:' || true)
got=$(field statements "$tmp/cut.json")
check "truncated gzip: most statements kept ($got)" test "$got" -gt $(( 19 * 40 / 2 ))
# A corrupt byte in the middle: the part before it is kept, like gzip -dc.
cp "$tmp/big.gz" "$tmp/bad.gz"
printf '\xff\xff\xff\xff' | dd of="$tmp/bad.gz" bs=1 seek=$(( $(stat -c %s "$tmp/big.gz") / 2 )) conv=notrunc 2>/dev/null
set +e
"$SCRY_CLI" capture log --json --store "$tmp/bad.db" "$tmp/bad.gz" >"$tmp/badgz.json" 2>"$tmp/badgz.err"; rc=$?
set -e
check "corrupt gzip: exit 1" test $rc = 1
check "corrupt gzip: said" grep -Eq 'gzip data is (corrupt|truncated)' "$tmp/badgz.err"
check "corrupt gzip: the start kept" test "$(field statements "$tmp/badgz.json")" -gt $(( 19 * 40 / 3 ))

# A pipe is read once, whole (not looked at twice for ordering or re-import).
"$SCRY_CLI" capture log --json --store "$tmp/pipe.db" <(gzip -c "$tmp/a.log") <(cat "$tmp/b.log") >"$tmp/pipe.json" 2>/dev/null
check "pipes: statements" test "$(field statements "$tmp/pipe.json")" = 19
check "pipes: sessions" test "$(field sessions "$tmp/pipe.json")" = 3

# Importing the same file again is recognised; --force imports it again.
"$SCRY_CLI" capture log --json --store "$tmp/csv.db" "$fx/pg.csv" >"$tmp/again.json"
check "re-import skipped" test "$(field files_skipped "$tmp/again.json")" = 1
check "re-import: nothing added" test "$(field statements "$tmp/again.json")" = 0
"$SCRY_CLI" capture log --force --json --store "$tmp/csv.db" "$fx/pg.csv" >"$tmp/force.json"
check "--force" test "$(field statements "$tmp/force.json")" = 19
# A file that grew since: only its new end is read.
head -n 30 "$fx/pg.log" >"$tmp/grow.log"
"$SCRY_CLI" capture log --json --store "$tmp/grow.db" "$tmp/grow.log" >"$tmp/g1.json"
cp "$fx/pg.log" "$tmp/grow.log"
"$SCRY_CLI" capture log --json --store "$tmp/grow.db" "$tmp/grow.log" >"$tmp/g2.json"
check "grown file: start skipped" test "$(field bytes_skipped "$tmp/g2.json")" = "$(head -n 30 "$fx/pg.log" | wc -c)"
check "grown file: all statements once" test $(( $(field statements "$tmp/g1.json") + $(field statements "$tmp/g2.json") )) -ge 18

# Rotated files given in the wrong order are read in time order.
"$SCRY_CLI" capture log --json --store "$tmp/rev.db" "$tmp/b.log" "$tmp/a.log" >"$tmp/rev.json" 2>"$tmp/rev.err"
check "reordered: said" grep -q 'order of their first timestamp' "$tmp/rev.err"
check "reordered: sessions" test "$(field sessions "$tmp/rev.json")" = 3
check "reordered: statements" test "$(field statements "$tmp/rev.json")" = 19

# A record cut at the end of the file is counted as skipped, not stored.
head -c -20 "$fx/pg.log" >"$tmp/cutrec.log"
"$SCRY_CLI" capture log --json --store "$tmp/cutrec.db" "$tmp/cutrec.log" >"$tmp/cutrec.json"
check "cut record skipped" grep -q 'record cut at the end' "$tmp/cutrec.json"

# Wrong format: not exit 0 with nothing; the reason is said.
set +e
"$SCRY_CLI" capture log --format csvlog --store "$tmp/wrong.db" "$fx/pg.log" >"$tmp/wrong.out" 2>&1; rc=$?
set -e
check "wrong format: exit 1" test $rc = 1
check "wrong format: reason" grep -q 'nothing imported: no line could be read as csvlog' "$tmp/wrong.out"

# A prefix that matches no line (its trailing space missing): nothing
# imported, exit 1, and the reason names the prefix the lines have.
set +e
"$SCRY_CLI" capture log --prefix '%m [%p]' --store "$tmp/np.db" "$fx/pg.log" >"$tmp/np.out" 2>&1; rc=$?
set -e
check "prefix matching nothing: exit 1" test $rc = 1
check "prefix matching nothing: the right one named" grep -qF "they look written with '%m [%p] %q%u@%d/%a '" "$tmp/np.out"
# No prefix can be told: nothing imported, exit 1, the reason says to pass --prefix.
printf 'hello world\nnot a log LOG: at all\n' >"$tmp/noprefix.log"
set +e
"$SCRY_CLI" capture log --format stderr --store "$tmp/np2.db" "$tmp/noprefix.log" >"$tmp/np2.out" 2>&1; rc=$?
set -e
check "no prefix: exit 1" test $rc = 1
check "no prefix: says pass --prefix" grep -q "nothing imported: cannot tell this stderr log's log_line_prefix.*--prefix" "$tmp/np2.out"

# Skipped-line samples are valid UTF-8 in --json, even when a cut would split a character.
{ printf 'garbage '; for _ in $(seq 80); do printf '\xc3\xa9'; done; printf '\xff\n'; cat "$fx/pg.csv"; } >"$tmp/utf8.csv"
"$SCRY_CLI" capture log --json --store "$tmp/utf8.db" "$tmp/utf8.csv" >"$tmp/utf8.json"
check "valid UTF-8 JSON" python3 -c 'import json,sys; json.load(open(sys.argv[1], encoding="utf-8"))' "$tmp/utf8.json"

# Wrappers: syslog (with sequence numbers, #011 tabs, a line split at the
# syslog limit), CloudNativePG JSON, Google Cloud Logging JSON lines: all
# made from the real server's logs; the same 19 statements come out.
python3 - "$fx" "$tmp" <<'PY'
import json, sys
fx, tmp = sys.argv[1], sys.argv[2]
lines = open(fx + "/pg.log", encoding="utf-8").read().split("\n")[:-1]
msgs = []
for l in lines:
    if l.startswith("\t") and msgs:
        msgs[-1].append(l)
    else:
        msgs.append([l])
with open(tmp + "/pg.syslog", "w", encoding="utf-8") as f:
    f.write("Nov 25 02:26:37 db1 systemd[1]: Started something.\n")
    for seq, m in enumerate(msgs, 1):
        pid = m[0].split("[", 1)[1].split("]", 1)[0]
        chunk = 0
        for l in m:
            pieces = [l[i:i + 40] for i in range(0, len(l), 40)] if len(l) > 200 else [l]
            for piece in pieces:
                chunk += 1
                f.write("Nov 25 02:26:37 db1 postgres[%s]: [%d-%d] %s\n" % (pid, seq, chunk, piece.replace("\t", "#011")))
with open(tmp + "/pg.gcl", "w", encoding="utf-8") as f:
    for m in msgs:
        f.write(json.dumps({"insertId": "x", "logName": "projects/p/logs/cloudsql.googleapis.com%2Fpostgres.log",
                            "resource": {"type": "cloudsql_database", "labels": {"region": "eu"}},
                            "severity": "INFO", "textPayload": "\n".join(m), "labels": ["a", {"b": "]"}]}) + "\n")
ren = {"timestamp": "log_time", "user": "user_name", "dbname": "database_name", "pid": "process_id",
       "remote_host": "connection_from", "line_num": "session_line_num", "ps": "command_tag",
       "session_start": "session_start_time", "vxid": "virtual_transaction_id", "txid": "transaction_id",
       "state_code": "sql_state_code", "statement": "query"}
with open(tmp + "/pg.cnpg", "w", encoding="utf-8") as f:
    f.write(json.dumps({"level": "info", "ts": "2026-11-25T02:26:37Z", "logger": "instance-manager",
                        "msg": "starting", "logging_pod": "pg-1"}) + "\n")
    for l in open(fx + "/pg.json", encoding="utf-8"):
        r = json.loads(l)
        rec = {ren.get(k, k): (str(v) if k == "pid" else v) for k, v in r.items()}
        f.write(json.dumps({"level": "info", "ts": "2026-11-25T02:26:37Z", "logger": "postgres", "msg": "record",
                            "logging_pod": "pg-1", "record": rec}) + "\n")
PY
for w in syslog gcl cnpg; do
  "$SCRY_CLI" capture log --json --store "$tmp/$w.db" "$tmp/pg.$w" >"$tmp/$w.json"
  check "$w: statements" test "$(field statements "$tmp/$w.json")" = 19
  check "$w: failed" test "$(field failed "$tmp/$w.json")" = 5
  check "$w: sessions" test "$(field sessions "$tmp/$w.json")" = 3
  "$SCRY_CLI" workload patterns --json --store "$tmp/$w.db" 2>/dev/null | sed -E 's/"(first|last|mean|total)[a-z_]*":[^,}]*,?//g' | sort >"$tmp/$w.patterns" || true
  check "$w: patterns as csvlog's" cmp -s "$tmp/csv.patterns" "$tmp/$w.patterns"
done
check "syslog detected" grep -q 'format stderr in syslog, log_line_prefix' "$tmp/syslog.json"
"$SCRY_CLI" capture log --format stderr --json --store "$tmp/syslog2.db" "$tmp/pg.syslog" >"$tmp/syslog2.json"
check "syslog with --format stderr" test "$(field statements "$tmp/syslog2.json")" = 19
check "cnpg detected" grep -q 'CloudNativePG' "$tmp/cnpg.json"
check "gcl detected" grep -q 'Google Cloud Logging' "$tmp/gcl.json"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
