#!/usr/bin/env bash
# The Python package as a user gets it: `pip install ./bindings/python` into a
# fresh virtual environment (offline, Debian's setuptools), then
#   - pytest with the scry plugin (entry point pytest11) gates the Alembic
#     migrations of examples/python: passes on 0001 (a nullable column),
#     fails on 0002 (drops the index of a hot query) with the Markdown report;
#   - examples/python/alembic_gate.py exits 0 / 5 for the same revisions;
#   - the Django recipe (examples/django): `scry ci test-migration -- python3
#     manage.py migrate` exits 0 on a safe migration, 5 on a dropped index.
set -uo pipefail
. "$SCRY_SOURCE_DIR/tests/harness/scenario.sh"
export SCRY_LIB=${SCRY_LIB:?SCRY_LIB is not set}
export PYTHONDONTWRITEBYTECODE=1   # nothing written into the source tree
PY=/usr/bin/python3
scenario_begin pypkg

# --- the package, installed with pip into a venv ------------------------------
$PY -m venv --system-site-packages "$WORK/venv" || { echo "python3 -m venv failed (Debian: python3-venv)"; exit 1; }
cp -r "$SRC/bindings/python" "$WORK/pysrc"      # pip builds in the source tree: use a copy
"$WORK/venv/bin/pip" install -q --no-build-isolation --no-index --no-deps "$WORK/pysrc" >"$WORK/pip.out" 2>&1 \
  && ok "pip install ./bindings/python (offline)" || { bad "pip install"; cat "$WORK/pip.out"; }
VPY="$WORK/venv/bin/python"
where=$(cd "$WORK" && "$VPY" -c 'import scry; print(scry.__file__)')
case "$where" in "$WORK/venv/"*) ok "import scry from the venv ($where)";; *) bad "scry imported from $where";; esac
(cd "$WORK" && "$VPY" -m pytest --help) >"$WORK/pytest-help.out" 2>&1
grep -q -- "--scry-target" "$WORK/pytest-help.out" \
  && ok "the pytest plugin is registered (pytest11 entry point)" || bad "pytest does not know --scry-target"

# --- a database and its workload -----------------------------------------------
scenario_cluster
psql -XqAt -d postgres -c "CREATE DATABASE shop" -c "CREATE DATABASE djshop" >/dev/null
psql -Xq -d shop >/dev/null <<'SQL'
CREATE TABLE items (id serial PRIMARY KEY, category varchar(50) NOT NULL, name varchar(100) NOT NULL, price int NOT NULL);
CREATE INDEX idx_items_category ON items(category);
SQL
# The Django project's current state is its migration 0001.
(cd "$SRC/examples/django" && PGDATABASE=djshop $PY manage.py migrate -v 0 shop 0001) \
  && ok "django: manage.py migrate shop 0001" || bad "django: migrate 0001"
for db in shop djshop; do
  psql -Xq -d $db >/dev/null <<'SQL'
INSERT INTO items (category, name, price)
  SELECT 'cat' || (g % 500), 'item ' || g, 100 + g % 900 FROM generate_series(1, 50000) g;
VACUUM ANALYZE items;
SQL
done
TARGET="host=127.0.0.1 port=$PORT user=postgres dbname=shop"
DJTARGET="host=127.0.0.1 port=$PORT user=postgres dbname=djshop"
STORE="$WORK/scry.db"

# The two patterns in separate sessions: a slow statement delays the next one
# of its session in the replay (noted in docs/bindings.md), which would make
# the unchanged pattern look regressed too.
for i in $(seq 1 30); do echo "SELECT id, name, price FROM items WHERE category = 'cat$((i * 7 % 500))';"; done >"$WORK/w1.sql"
for i in $(seq 1 30); do echo "SELECT name FROM items WHERE id = $((i * 997 % 50000 + 1));"; done >"$WORK/w2.sql"
scenario_capture "$STORE" shop "$WORK"/w1.sql "$WORK"/w2.sql "$WORK"/w1.sql "$WORK"/w2.sql

# --- pytest + plugin + Alembic --------------------------------------------------
pytest_gate() { # revision -> output in $WORK/pytest-$1.out
  (cd "$WORK" && ALEMBIC_REVISION=$1 "$VPY" -m pytest -q -p no:cacheprovider \
     "$SRC/examples/python/test_migrations.py" --scry-store "$STORE" --scry-target "$TARGET") \
     >"$WORK/pytest-$1.out" 2>&1
}
pytest_gate 0001; rc=$?
expect_exit 0 $rc "pytest: Alembic 0001 (nullable column) passes the gate"
[ $rc = 0 ] || cat "$WORK/pytest-0001.out"
pytest_gate 0002; rc=$?
expect_exit 1 $rc "pytest: Alembic 0002 (dropped index) fails the gate"
grep -q "the migration regresses" "$WORK/pytest-0002.out" && grep -q '\*\*FAIL\*\*' "$WORK/pytest-0002.out" \
  && grep -q "category" "$WORK/pytest-0002.out" \
  && ok "pytest: the failure message is the Markdown report of the failing pattern" \
  || { bad "pytest: no Markdown report in the failure"; cat "$WORK/pytest-0002.out"; }
if grep '^E ' "$WORK/pytest-0002.out" | grep -q "WHERE id = "; then
  bad "pytest: the message lists unchanged patterns"; cat "$WORK/pytest-0002.out"
else ok "pytest: the message is cut to the failing patterns"; fi
(cd "$WORK" && "$VPY" -m pytest -q -p no:cacheprovider "$SRC/examples/python/test_migrations.py" \
   --scry-store "$STORE") >"$WORK/pytest-notarget.out" 2>&1
rc=$?; [ $rc != 0 ] && grep -q -- "--scry-target" "$WORK/pytest-notarget.out" \
  && ok "pytest: no target fails with what to set (exit $rc)" || bad "pytest without a target: exit $rc"
[ "$(psql -XqAt -d shop -c "SELECT count(*) FROM pg_indexes WHERE indexname='idx_items_category'")" = 1 ] \
  && ok "the target keeps its index" || bad "the target lost its index"

# --- examples/python/alembic_gate.py --------------------------------------------
(cd "$WORK" && "$VPY" "$SRC/examples/python/alembic_gate.py" --store "$STORE" --target "$TARGET" \
   --revision 0001) >"$WORK/gate1.out" 2>&1
expect_exit 0 $? "alembic_gate.py --revision 0001"
(cd "$WORK" && "$VPY" "$SRC/examples/python/alembic_gate.py" --store "$STORE" --target "$TARGET" \
   --revision 0002 --markdown "$WORK/gate2.md") >"$WORK/gate2.out" 2>&1
rc=$?; expect_exit 5 $rc "alembic_gate.py --revision 0002"
[ $rc = 5 ] || cat "$WORK/gate2.out"
grep -q "category" "$WORK/gate2.md" && ok "alembic_gate.py: Markdown for the PR comment" || bad "alembic_gate.py: no Markdown"
(cd "$WORK" && "$VPY" "$SRC/examples/python/alembic_gate.py" --store "$STORE" --target "$TARGET" \
   --revision nosuchrev) >"$WORK/gate3.out" 2>&1
rc=$?; expect_exit 4 $rc "alembic_gate.py with an unknown revision: the migration failed"
grep -q "nosuchrev" "$WORK/gate3.out" && ok "its message names the revision" || { bad "no revision in the message"; cat "$WORK/gate3.out"; }

# --- the Django recipe: manage.py migrate through ci test-migration ----------------
dj() { (cd "$SRC/examples/django" && "$SCRY" ci test-migration "$DJTARGET" --store "$STORE" -- \
          $PY manage.py migrate -v 0 shop "$1") >"$WORK/dj-$1.out" 2>&1; }
dj 0002; rc=$?; expect_exit 0 $rc "django: migrate shop 0002 (nullable column)"
[ $rc = 0 ] || cat "$WORK/dj-0002.out"
dj 0003; rc=$?; expect_exit 5 $rc "django: migrate shop 0003 (drops the category index)"
grep -q "category" "$WORK/dj-0003.out" && ok "django: the report names the query" || { bad "django: report"; cat "$WORK/dj-0003.out"; }
[ "$(psql -XqAt -d djshop -c "SELECT max(name) FROM django_migrations WHERE app='shop'")" = 0001_initial ] \
  && ok "django: the target itself was not migrated" || bad "django: the target was migrated"

scenario_end
