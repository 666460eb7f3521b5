#!/usr/bin/env bash
# Logs in another language than English: a real PostgreSQL 15 writes stderr,
# csvlog and jsonlog with lc_messages = 'de_DE.UTF-8' (the locale is made
# with localedef when missing and we are root), then with lc_messages = 'C',
# running the same workload. The German logs import the same events as the
# English ones, the language is detected and said; --lang names it; an
# unknown --lang is refused naming the fix. Without a German locale, the
# German log is made from the English one with the server's own catalog
# (postgres-15.mo) and the test says so.
set -euo pipefail
LOGTEST_NAME=loglang
. "${SCRY_SOURCE_DIR:?}/tests/logimport/server.sh"

have_de() { locale -a 2>/dev/null | grep -qix 'de_DE.utf8'; }
if ! have_de && [ "$(id -u)" = 0 ] && command -v localedef >/dev/null; then
  localedef -i de_DE -f UTF-8 de_DE.UTF-8 >/dev/null 2>&1 || true
fi
real=1
have_de && [ -z "${SCRY_TEST_NO_LOCALE:-}" ] || real=0

log_server_start 'stderr,csvlog,jsonlog' "log_line_prefix = '%m [%p] %q%u@%d/%a '"

phase() { # name, lc_messages
  local name=$1 lc=$2
  log_switch "$name" lc_messages "$lc"
  PGAPPNAME='app one' psql_ -c "SELECT 'it''s', 1" -c "SELECT 1/0" -c "SELEC 1" -c "SELECT 1;
SELECT
  2 AS two" >/dev/null 2>&1 || true
  pgbench -h 127.0.0.1 -p "$port" -U postgres -n -c 2 -t 10 -M extended postgres >/dev/null 2>&1
  pgbench -h 127.0.0.1 -p "$port" -U postgres -n -c 1 -t 10 -M prepared postgres >/dev/null 2>&1
  PGOPTIONS='-c log_statement=none' pgbench -h 127.0.0.1 -p "$port" -U postgres -n -t 1 -M extended \
    -f "$tmp/fail.sql" postgres >/dev/null 2>&1 || true
  log_finish "$name"
}

phase en C
if [ $real = 1 ]; then
  phase de de_DE.UTF-8
else
  echo "note: no de_DE locale can be made here: the German logs are made from the English ones with the catalog" >&2
  for ext in log csv json; do
    python3 - "$tmp/en.$ext" "$tmp/de.$ext" <<'PY'
import gettext, glob, re, sys
cat = gettext.GNUTranslations(open(glob.glob('/usr/share/locale/de/LC_MESSAGES/postgres-15.mo')[0], 'rb'))._catalog
def t(s): return cat.get(s) or s
subs = [("LOG:  statement: ", "LOG:  " + t("statement: %s")[:-2]), ("ERROR:  ", t("ERROR") + ":  "),
        ("STATEMENT:  ", t("STATEMENT:  ")), ("DETAIL:  parameters: ", t("DETAIL:  ") + t("parameters: %s")[:-2]),
        ("CONTEXT:  unnamed portal with parameters: ", t("CONTEXT:  ") + t("unnamed portal with parameters: %s")[:-2]),
        ("duration: ", t("duration: %s ms").split("%s")[0]), ("  statement: ", "  " + t("statement: %s")[:-2]),
        ("LOG:  execute ", "LOG:  " + t("execute") + " "), ("  execute ", "  " + t("execute") + " "),
        (",\"ERROR\",", ",\"" + t("ERROR") + "\","), (",ERROR,", "," + t("ERROR") + ","),
        ("\"error_severity\":\"ERROR\"", "\"error_severity\":\"" + t("ERROR") + "\""),
        ("\"statement: ", "\"" + t("statement: %s")[:-2]), ("\"execute ", "\"" + t("execute") + " "), ("\"parameters: ", "\"" + t("parameters: %s")[:-2]),
        ("\"unnamed portal with parameters: ", "\"" + t("unnamed portal with parameters: %s")[:-2])]
text = open(sys.argv[1], encoding='utf-8').read()
for a, b in subs:
    text = text.replace(a, b)
open(sys.argv[2], 'w', encoding='utf-8').write(text)
PY
  done
fi
bash "$pgc" stop "$cl" >/dev/null 2>&1 || true

check "the German log is German" grep -q 'FEHLER:  ' "$tmp/de.log"
# (pgbench draws its values at random: the same statements, not the same values)
q="SELECT s.application, e.seq, e.duration_us IS NOT NULL, st.template, e.params IS NOT NULL,
  e.sqlstate, e.kind FROM events e JOIN sessions s ON s.id = e.session JOIN statements st ON st.id = e.statement
  WHERE st.template NOT LIKE '%end of%'"
for ext in log csv json; do
  "$SCRY_CLI" capture log --json --store "$tmp/en-$ext.db" "$tmp/en.$ext" >"$tmp/en-$ext.out"
  "$SCRY_CLI" capture log --json --store "$tmp/de-$ext.db" "$tmp/de.$ext" >"$tmp/de-$ext.out"
  en=$(field statements "$tmp/en-$ext.out"); de=$(field statements "$tmp/de-$ext.out")
  check "$ext: English statements ($en)" test "$en" -gt 40
  check "$ext: German = English ($de vs $en)" test "$de" = "$en"
  check "$ext: German failed = English" test "$(field failed "$tmp/de-$ext.out")" = "$(field failed "$tmp/en-$ext.out")"
  check "$ext: language detected and said" grep -q 'language German (de)' "$tmp/de-$ext.out"
  sqlite3 "$tmp/en-$ext.db" "$q" | sort >"$tmp/en-$ext.events"
  sqlite3 "$tmp/de-$ext.db" "$q" | sort >"$tmp/de-$ext.events"
  check "$ext: same events (texts, parameters, errors, durations)" cmp -s "$tmp/en-$ext.events" "$tmp/de-$ext.events"
done
check "application name with a space" grep -q '^app one|' "$tmp/de-csv.events"
check "German CONTEXT parameters" test "$(sqlite3 "$tmp/de-log.db" \
  "SELECT count(*) FROM events WHERE sqlstate IS NOT NULL AND kind = 1 AND params IS NOT NULL")" = 1
# --lang names it; an unknown language is refused with the fix.
"$SCRY_CLI" capture log --lang de --json --store "$tmp/lang.db" "$tmp/de.log" >"$tmp/lang.out"
check "--lang de" test "$(field statements "$tmp/lang.out")" = "$(field statements "$tmp/en-log.out")"
set +e
"$SCRY_CLI" capture log --lang xx --store "$tmp/x.db" "$tmp/de.log" >/dev/null 2>"$tmp/xx.err"; rc=$?
# Read as English, the German log imports nothing: not exit 0, and why.
"$SCRY_CLI" capture log --lang C --store "$tmp/c.db" "$tmp/de.csv" >"$tmp/c.out" 2>&1; crc=$?
set -e
check "unknown --lang: usage error" test $rc = 2
check "unknown --lang: says the fix" grep -q "lc_messages = 'C'" "$tmp/xx.err"
check "German read as English: not exit 0" test $crc = 1
check "German read as English: says why" grep -q 'nothing imported: .*lc_messages' "$tmp/c.out"
[ $real = 1 ] || echo "note: tested on a German log made from the catalog (no de_DE locale)"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
