#!/bin/bash
# The ABI of libscry.so against the dump of the last release
# (abi/libscry-X.Y.abi, the newest there): additions pass (new functions,
# new types, fields appended at the end of a struct, new enumerators);
# anything else that changes what a compiled caller sees fails: a removed
# or changed function, a removed field, a field moved, a changed type.
# Refreshing the dump on a release: `make abi-dump` (docs/api.md).
set -u
lib=${SCRY_LIB:?SCRY_LIB must name libscry.so (ctest sets it)}
src=${SCRY_SOURCE_DIR:?SCRY_SOURCE_DIR must name the source tree (ctest sets it)}
for t in abidw abidiff readelf; do
  command -v $t >/dev/null || { echo "FAIL: $t not found (abigail-tools, binutils: make deps)"; exit 1; }
done
base=$(ls "$src"/abi/libscry-*.abi 2>/dev/null | sort -V | tail -n 1)
[ -n "$base" ] || { echo "FAIL: no abi/libscry-*.abi baseline in $src"; exit 1; }
if ! readelf -S "$lib" | grep -q '\.debug_info'; then
  # abidw reads the types from DWARF: a build without -g cannot be checked.
  echo "SKIP: $lib has no debug info (build with RelWithDebInfo or Debug to check the ABI)"
  exit 77
fi
tmp=$(mktemp -d /tmp/scry-abi.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
"$src"/tools/abi-dump "$lib" "$tmp/now.abi" || { echo "FAIL: abidw could not read $lib"; exit 1; }
abidiff --non-reachable-types --no-added-syms --suppressions "$src/abi/suppressions.abignore" \
  "$base" "$tmp/now.abi" >"$tmp/report" 2>&1
rc=$?
if (( rc & 3 )); then
  echo "FAIL: abidiff could not compare (exit $rc):"; cat "$tmp/report"; exit 1
fi
if (( rc & 8 )) || grep -Eq '(^|[ ,])[1-9][0-9]* (Removed|Changed|removed|changed)' "$tmp/report"; then
  echo "FAIL: libscry's ABI changed incompatibly since $(basename "$base"):"
  cat "$tmp/report"
  echo "Append fields at the end of structs (bumping the version of input structs, lib/abi.c);"
  echo "never remove, reorder or retype. See docs/api.md, Versioning."
  exit 1
fi
echo "ok: ABI compatible with $(basename "$base") (additions only)"
