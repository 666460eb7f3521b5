#!/usr/bin/env bash
# `scry fingerprint FILE` (the whole command: read, split, fingerprint,
# print) against a program that splits with pg_query_split_with_scanner()
# and calls pg_query_fingerprint() per statement (bench/fpref.c), on a
# generated stream of N statements from ~200 patterns with varying
# constants, IN-list lengths and spacing. The printed fingerprints must be
# identical (the script stops otherwise).
#
#   bash bench/fingerprint_file.sh [BUILD_DIR]
#
# Environment: N (statements, default 1000000), RUNS (default 3), WORK
# (default /tmp/scry-bench-fpfile).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
scry=$build/scry
n=${N:-1000000}
runs=${RUNS:-3}
work=${WORK:-/tmp/scry-bench-fpfile}
mkdir -p "$work"
[ -x "$scry" ] || { echo "build scry first ($scry)" >&2; exit 1; }
ref=$work/fpref
[ -x "$ref" ] && [ "$ref" -nt "$here/bench/fpref.c" ] || gcc -O2 "$here/bench/fpref.c" -o "$ref" -lpg_query
stream=$work/stream-$n.sql
if [ ! -s "$stream" ]; then
  python3 - "$n" >"$stream" <<'PY'
import random, sys
n = int(sys.argv[1]); rnd = random.Random(5)
tables = {"orders": ["id", "customer_id", "status", "total", "created_at", "region"],
          "customers": ["id", "name", "email", "created_at"],
          "products": ["id", "sku", "price", "stock"],
          "order_items": ["id", "order_id", "product_id", "qty", "price"]}
def lit():
    r = rnd.random()
    if r < .5: return str(rnd.randint(1, 100000))
    if r < .8: return "'" + rnd.choice(["west", "east", "paid", "pending", "o''neil", "x"]) + "'"
    return "'2026-%02d-%02d'" % (rnd.randint(1, 12), rnd.randint(1, 28))
pats = []
for t, cols in tables.items():
    for c in cols:
        pats.append(lambda t=t, c=c: f"SELECT * FROM {t} WHERE {c} = {lit()}")
        pats.append(lambda t=t, c=c, cols=cols: f"select {', '.join(cols[:3])} from {t} where {c} in ({', '.join(lit() for _ in range(rnd.randint(1, 6)))})")
        pats.append(lambda t=t, c=c: f"UPDATE {t} SET {c} = {lit()} WHERE id = {lit()}")
        pats.append(lambda t=t, c=c: f"SELECT count(*) FROM {t} WHERE {c} > {lit()} AND id < {lit()}")
        pats.append(lambda t=t, c=c: f"DELETE FROM {t} WHERE {c} = {lit()} RETURNING id")
        pats.append(lambda t=t, c=c: f"SELECT {c}, count(*) FROM {t} GROUP BY {c} ORDER BY 2 DESC LIMIT {rnd.randint(1, 50)}")
        pats.append(lambda t=t, c=c: f"INSERT INTO {t} ({c}) VALUES ({lit()})")
        pats.append(lambda t=t, c=c: f"SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.id = {lit()} /* app:{t} */")
pats = pats[:200]
w = sys.stdout.write
for i in range(n):
    s = rnd.choice(pats)()
    if rnd.random() < .1: s = s.replace(" ", "  ")
    w(s + ";\n")
PY
fi
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
st=(); rt=()
for i in $(seq "$runs"); do
  /usr/bin/time -f '%e' -o "$work/t.ref" "$ref" "$stream" >"$work/ref.out"
  /usr/bin/time -f '%e' -o "$work/t.scry" "$scry" fingerprint "$stream" >"$work/scry.out"
  rt+=("$(cat "$work/t.ref")"); st+=("$(cat "$work/t.scry")")
done
cmp -s "$work/ref.out" "$work/scry.out" || { echo "FAIL: fingerprints differ from pg_query's" >&2; exit 1; }
ms=$(median "${st[@]}"); mr=$(median "${rt[@]}")
echo "stream: $n statements, $(wc -l <"$work/scry.out") fingerprints, identical to pg_query's"
printf 'scry fingerprint FILE: %.2f s (runs: %s)\n' "$ms" "${st[*]}"
printf 'pg_query split + fingerprint: %.2f s (runs: %s)\n' "$mr" "${rt[*]}"
printf 'ratio: %.1fx\n' "$(awk "BEGIN { print $mr / $ms }")"
