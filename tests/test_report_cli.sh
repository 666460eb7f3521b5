#!/usr/bin/env bash
# The reports from the CLI: noise control (--include/--exclude, session
# setup not judged and listed in the footer), and the HTML report.
#
# The HTML report (--format html): `scry ci test-migration` gates a dropped
# index and writes one self-contained page, which headless Chromium opens:
# a screenshot is taken and checked (exists, not blank) and the DOM
# Chromium built holds the failing pattern's text, its histogram and plan.
# The page loads nothing: no script, no external reference.
set -uo pipefail
. "$SCRY_SOURCE_DIR/tests/harness/scenario.sh"
scenario_begin report-cli

CHROMIUM=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$CHROMIUM" ] || { echo "chromium is not installed (Debian: apt-get install chromium)"; exit 1; }

scenario_cluster
scenario_shop shop
TARGET="host=127.0.0.1 port=$PORT user=postgres dbname=shop"
STORE="$WORK/scry.db"
for i in $(seq 1 30); do echo "SELECT id, name, price FROM items WHERE category = 'cat$((i * 7 % 500))' AND name <> '<none>';"; done >"$WORK/w1.sql"
for i in $(seq 1 30); do echo "SELECT name FROM items WHERE id = $((i * 997 % 50000 + 1));"; done >"$WORK/w2.sql"
# A driver's session setup around the queries: replayed, never judged.
{ echo "SET application_name = 'shop';"; echo "SHOW standard_conforming_strings;"; echo "BEGIN;"
  for i in $(seq 1 10); do echo "SELECT count(*) FROM items WHERE price = $i;"; done; echo "COMMIT;"; } >"$WORK/w3.sql"
scenario_capture "$STORE" shop "$WORK"/w1.sql "$WORK"/w2.sql "$WORK"/w3.sql "$WORK"/w1.sql "$WORK"/w2.sql "$WORK"/w3.sql

HTML="$WORK/report.html"
"$SCRY" ci test-migration "$TARGET" --store "$STORE" --format html --output "$HTML" -- \
  psql -Xq -c "DROP INDEX idx_items_category" >"$WORK/ci.out" 2>&1
rc=$?; [ $rc = 5 ] && ok "ci test-migration --format html: exit 5" || { bad "exit $rc"; cat "$WORK/ci.out"; }
[ -s "$HTML" ] && ok "report written ($(wc -c <"$HTML") bytes)" || bad "no report"

# --- self-contained ------------------------------------------------------------
grep -qi "<script" "$HTML" && bad "the page has a script" || ok "no script"
if grep -oE '(src|href)="[^"#][^"]*"' "$HTML" | grep -q .; then bad "the page references: $(grep -oE '(src|href)="[^"]*"' "$HTML" | head -3)"
else ok "no external reference (src/href)"; fi
grep -oE 'https?://[^" ]+' "$HTML" | grep -v '^http://www.w3.org/2000/svg$' | grep -q . \
  && bad "the page names a URL" || ok "no URL but the SVG namespace"
grep -q "&lt;none&gt;" "$HTML" && ok "query text is escaped" || bad "query text not escaped"

# --- what it shows -----------------------------------------------------------------
grep -q "<svg" "$HTML" && grep -q "candidate: " "$HTML" && ok "an SVG histogram of the samples, baseline vs candidate" \
  || bad "no histogram"
grep -q "Plan change:" "$HTML" && grep -q "Seq Scan" "$HTML" && ok "the plan change" || bad "no plan change"
grep -q "<h2>Migration</h2>" "$HTML" && grep -q "migrate_us" "$HTML" && ok "the migration section" || bad "no migration section"

# --- opened in headless Chromium ------------------------------------------------------
CH=(timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run
    --user-data-dir="$WORK/chromium-profile" --hide-scrollbars --window-size=1200,1600)
"${CH[@]}" --screenshot="$WORK/shot.png" "file://$HTML" >"$WORK/chromium.out" 2>&1
[ -s "$WORK/shot.png" ] && ok "screenshot taken" || { bad "no screenshot"; tail -5 "$WORK/chromium.out"; }
/usr/bin/python3 - "$WORK/shot.png" <<'PY' && ok "the screenshot is not blank" || bad "blank screenshot"
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat, w, h = 8, b"", 0, 0
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
raw = zlib.decompress(idat)
stride = len(raw) // h
rows = {raw[y * stride + 1:(y + 1) * stride] for y in range(0, h, 4)}
colors = set()
for r in list(rows)[:200]:
    colors.update(r[i:i + 3] for i in range(0, len(r) - 3, 12))
print(f"{w}x{h}, {len(rows)} distinct sampled rows, {len(colors)} colors")
assert w > 100 and h > 100 and len(rows) > 20 and len(colors) > 20
PY
"${CH[@]}" --dump-dom "file://$HTML" >"$WORK/dom.html" 2>"$WORK/chromium2.out"
grep -q "WHERE category = \$1" "$WORK/dom.html" && grep -q "FAIL" "$WORK/dom.html" \
  && ok "Chromium's DOM holds the failing pattern's text" || { bad "the DOM lacks the failing pattern"; tail -5 "$WORK/chromium2.out"; }

# --- diff --format html (histograms from the store), and a bad format ---------------------
"$SCRY" diff --store "$STORE" --baseline ci-baseline --candidate ci-candidate --format html \
  >"$WORK/diff.html" 2>"$WORK/diff.err"
rc=$?; [ $rc = 5 ] && grep -q "candidate: " "$WORK/diff.html" && ok "diff --format html (exit 5, histograms)" \
  || { bad "diff --format html: exit $rc"; cat "$WORK/diff.err"; }
"$SCRY" diff --store "$STORE" --baseline ci-baseline --candidate ci-candidate --format htm >/dev/null 2>&1
[ $? = 2 ] && ok "--format htm is a usage error" || bad "--format htm"

# --- noise control -------------------------------------------------------------------------
D=(diff --store "$STORE" --baseline ci-baseline --candidate ci-candidate)
"$SCRY" "${D[@]}" >"$WORK/n1.out" 2>&1
rc=$?; [ $rc = 5 ] && ok "diff: exit 5 (the dropped index)" || { bad "diff: exit $rc"; cat "$WORK/n1.out"; }
grep -q "Not judged: 4 patterns (4 session setup" "$WORK/n1.out" && ok "the footer lists the 4 session-setup patterns" \
  || { bad "no footer"; cat "$WORK/n1.out"; }
if sed '/^Not judged/,$d' "$WORK/n1.out" | grep -qE "SHOW standard|BEGIN|COMMIT|SET application"; then bad "session setup in the table"
else ok "session setup is not in the table"; fi
"$SCRY" "${D[@]}" --format markdown >"$WORK/n1.md" 2>&1
grep -q -- "- \`.*SHOW standard_conforming_strings" "$WORK/n1.md" \
  && ok "markdown footer" || bad "markdown footer"
"$SCRY" "${D[@]}" --exclude '*category*' >"$WORK/n2.out" 2>&1
rc=$?; [ $rc = 0 ] && grep -q "1 --exclude" "$WORK/n2.out" && ok "--exclude '*category*': exit 0, listed" \
  || { bad "--exclude: exit $rc"; cat "$WORK/n2.out"; }
fp=$(grep -o '[0-9a-f]\{16\}  SELECT name FROM items' "$WORK/n1.out" | cut -c1-16 | head -1)
[ -z "$fp" ] && fp=$(sed -n 's/.* \([0-9a-f]\{16\}\) SELECT name FROM items.*/\1/p' "$WORK/n1.out" | head -1)
"$SCRY" "${D[@]}" --include "$fp" --format json >"$WORK/n3.json" 2>&1
rc=$?; [ $rc = 0 ] && [ "$(/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(len(d["patterns"]), len(d["excluded"]))' "$WORK/n3.json")" = "1 6" ] \
  && ok "--include FINGERPRINT: that pattern only (exit 0)" || { bad "--include $fp: exit $rc"; head -c 600 "$WORK/n3.json"; }
"$SCRY" "${D[@]}" --judge-session-setup --format json >"$WORK/n4.json" 2>&1
[ "$(/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(len(d["patterns"]), "excluded" in d)' "$WORK/n4.json")" = "7 False" ] \
  && ok "--judge-session-setup judges all 7" || { bad "--judge-session-setup"; head -c 600 "$WORK/n4.json"; }
"$SCRY" "${D[@]}" --exclude "" >/dev/null 2>&1; [ $? = 2 ] && ok "--exclude '' is a usage error" || bad "--exclude ''"
"$SCRY" ci test-migration --help | grep -- "--exclude GLOB" >/dev/null && ok "ci --help lists --exclude" || bad "ci --help"

scenario_end
