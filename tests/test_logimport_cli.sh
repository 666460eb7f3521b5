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
"$SCRY_CLI" capture log --format stderr --store "$tmp/x.db" "$fx/pg.log" 2>"$tmp/usage.err"; rc=$?
check "stderr needs --prefix" test $rc = 2
"$SCRY_CLI" capture log --format nope --store "$tmp/x.db" "$fx/pg.log" 2>/dev/null; rc=$?
check "bad format" test $rc = 2
"$SCRY_CLI" capture log --format csvlog --store "$tmp/x.db" "$tmp/missing.csv" 2>"$tmp/missing.err"; rc=$?
check "missing file" test $rc = 1
set -e
check "missing file message" grep -q 'missing.csv' "$tmp/missing.err"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
