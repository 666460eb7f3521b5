#!/bin/bash
# Only scry_* symbols are exported from libscry.so: libpg_query, xxHash,
# SQLite helpers and the scry__ internals must stay hidden (issue 2).
set -u
lib=${SCRY_LIB:?SCRY_LIB must name libscry.so (ctest sets it)}
command -v nm >/dev/null || { echo "nm not found (binutils)"; exit 1; }
syms=$(nm -D --defined-only "$lib" | awk 'NF >= 3 && $2 != "A" { print $3 }' | sed 's/@.*//' | sort -u)
count=$(printf '%s\n' "$syms" | grep -c . || true)
if [ "$count" -lt 20 ]; then
  echo "FAIL: only $count exported symbols in $lib; the public API is missing"
  exit 1
fi
bad=$(printf '%s\n' "$syms" | grep -v '^scry_' | grep -v '^$' || true)
if [ -n "$bad" ]; then
  echo "FAIL: $lib exports symbols outside scry_*:"
  printf '  %s\n' $bad
  exit 1
fi
# Internals use the scry__ prefix: they must not leak either.
internal=$(printf '%s\n' "$syms" | grep '^scry__' || true)
if [ -n "$internal" ]; then
  echo "FAIL: internal scry__ symbols are exported:"
  printf '  %s\n' $internal
  exit 1
fi
# Spot checks: the API we promise is there, the libraries we embed are not.
for want in scry_version scry_fingerprint_compute scry_store_open scry_store_append scry_buf_dispose; do
  printf '%s\n' "$syms" | grep -qx "$want" || { echo "FAIL: $want is not exported"; exit 1; }
done
for unwanted in pg_query_fingerprint pg_query_parse XXH3_64bits XXH64 sqlite3_open; do
  printf '%s\n' "$syms" | grep -qx "$unwanted" && { echo "FAIL: $unwanted is exported"; exit 1; }
done
# Every exported function carries a symbol version (lib/libscry.map): the
# first is SCRY_0.1; a later node may only add.
unversioned=$(nm -D --defined-only "$lib" | awk 'NF >= 3 && $3 ~ /^scry_/ && $3 !~ /@@?SCRY_[0-9]+\.[0-9]+$/ { print $3 }')
if [ -n "$unversioned" ]; then
  echo "FAIL: exported symbols without a SCRY_x.y version (lib/libscry.map):"
  printf '  %s\n' $unversioned
  exit 1
fi
nm -D --defined-only "$lib" | grep -q ' scry_store_open@@SCRY_0\.1$' \
  || { echo "FAIL: scry_store_open is not versioned SCRY_0.1"; exit 1; }
echo "ok: $count exported symbols, all scry_*, all versioned"
