#!/usr/bin/env bash
# Every example of examples/ builds and runs, against the build tree found
# through pkg-config alone (PKG_CONFIG_PATH=<build>/pkgconfig):
#   C: fingerprint.c on a .sql file; gate.c gating a dropped index (exit 5)
#      and a safe migration (exit 0);
#   Go: gate.go gating the same (exit 5, then 0 and 4);
#   CI recipes: valid YAML with the gate step (they are not executed here).
# The Python examples run in test_python_package (they need a pip install).
set -uo pipefail
. "$SCRY_SOURCE_DIR/tests/harness/scenario.sh"
BIN=${SCRY_BINARY_DIR:?SCRY_BINARY_DIR is not set}
unset SCRY_LIB CGO_CFLAGS CGO_LDFLAGS
export PKG_CONFIG_PATH="$BIN/pkgconfig"
scenario_begin examples

# --- build -------------------------------------------------------------------
for ex in fingerprint gate; do
  cc -std=c11 -Wall -Wextra -Werror -o "$WORK/$ex" "$SRC/examples/c/$ex.c" $(pkg-config --cflags --libs scry) -lpthread \
    && ok "cc examples/c/$ex.c \$(pkg-config --cflags --libs scry)" || bad "building examples/c/$ex.c"
done
(cd "$SRC/examples/go" && GOPROXY=off GOFLAGS=-mod=mod GOCACHE="${GOCACHE:-$BIN/go-cache}" \
   go build -o "$WORK/gogate" gate.go) && ok "go build examples/go/gate.go" || bad "building examples/go/gate.go"

# --- fingerprint.c: no database needed -------------------------------------------
"$WORK/fingerprint" "$SRC/examples/c/queries.sql" >"$WORK/fp.out" 2>&1
expect_exit 0 $? "fingerprint examples/c/queries.sql"
[ "$(wc -l <"$WORK/fp.out")" = 5 ] && ok "five statements" || { bad "fingerprint output"; cat "$WORK/fp.out"; }
[ "$(cut -c1-16 "$WORK/fp.out" | sed -n 1p)" = "$(cut -c1-16 "$WORK/fp.out" | sed -n 2p)" ] \
  && ok "same query, other constants: same fingerprint" || bad "fingerprints differ"
grep -q 'WHERE category = \$1' "$WORK/fp.out" && ok "normalized text" || bad "no normalized text"
"$WORK/fingerprint" /nonexistent.sql >/dev/null 2>&1; expect_exit 1 $? "fingerprint of a missing file"

# --- a database and a workload for the gates ----------------------------------------
scenario_cluster
scenario_shop shop
TARGET="host=127.0.0.1 port=$PORT user=postgres dbname=shop"
STORE="$WORK/scry.db"
for i in $(seq 1 30); do echo "SELECT id, name, price FROM items WHERE category = 'cat$((i * 7 % 500))';"; done >"$WORK/w.sql"
scenario_capture "$STORE" shop "$WORK/w.sql" "$WORK/w.sql"

# --- gate.c ----------------------------------------------------------------------------
"$WORK/gate" "$STORE" "$TARGET" "DROP INDEX idx_items_category" >"$WORK/c1.md" 2>"$WORK/c1.err"
rc=$?; expect_exit 5 $rc "C gate: dropped index"
grep -q '\*\*FAIL\*\*' "$WORK/c1.md" && ok "C gate: Markdown report" || { bad "C gate report"; cat "$WORK/c1.md" "$WORK/c1.err"; }
"$WORK/gate" "$STORE" "$TARGET" "ALTER TABLE items ADD COLUMN note text" >"$WORK/c2.md" 2>&1
expect_exit 0 $? "C gate: safe migration"
"$WORK/gate" "$WORK/typo.db" "$TARGET" "SELECT 1" >/dev/null 2>&1
expect_exit 1 $? "C gate: a missing store is an error"
[ ! -e "$WORK/typo.db" ] && ok "C gate: ... and creates nothing" || bad "C gate created a store"

# --- gate.go ----------------------------------------------------------------------------
"$WORK/gogate" -store "$STORE" -target "$TARGET" -sql "DROP INDEX idx_items_category" >"$WORK/g1.md" 2>"$WORK/g1.err"
rc=$?; expect_exit 5 $rc "Go gate: dropped index"
grep -q 'category' "$WORK/g1.md" && ok "Go gate: the report names the query" || { bad "Go gate report"; cat "$WORK/g1.md" "$WORK/g1.err"; }
"$WORK/gogate" -store "$STORE" -target "$TARGET" -sql "ALTER TABLE items ADD COLUMN note text" >/dev/null 2>&1
expect_exit 0 $? "Go gate: safe migration"
"$WORK/gogate" -store "$STORE" -target "$TARGET" -sql "ALTER TABLE nosuch ADD COLUMN x int" >/dev/null 2>"$WORK/g3.err"
expect_exit 4 $? "Go gate: failing migration"
[ "$(psql -XqAt -d postgres -c "SELECT count(*) FROM pg_database WHERE datname LIKE '%_scry_%'")" = 0 ] \
  && ok "no clone left" || bad "clones left behind"

# --- CI recipes: well-formed, and they gate with the committed store --------------------------
for f in github-actions.yml gitlab-ci.yml; do
  /usr/bin/python3 - "$SRC/examples/ci/$f" <<'PY' && ok "examples/ci/$f parses and runs the gate" || bad "examples/ci/$f"
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
text = open(sys.argv[1]).read()
assert isinstance(doc, dict) and doc, "empty"
assert "scry ci test-migration" in text and "--format markdown" in text, "no gate step"
PY
done

scenario_end
