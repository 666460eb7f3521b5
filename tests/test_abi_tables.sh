#!/bin/bash
# Every versioned struct of the public headers is known to lib/abi.c and
# copied through it (docs/api.md, "Versioning"): a struct whose first field
# is `unsigned int version` (filled in by the caller) or `size_t size`
# (filled in by the library) needs an ABI_TABLE in lib/abi.c, and that
# table must be used by the library outside lib/abi.c (by scry__opts_copy,
# scry__out_copy/put/check or scry__elem_get), or the struct's version or
# size is ignored somewhere.
set -u
src=${SCRY_SOURCE_DIR:?SCRY_SOURCE_DIR must name the source tree (ctest sets it)}
fails=0
structs=$(awk '
  /^typedef struct [a-z_0-9]+ \{/ { name = $3; first = 1; next }
  first && NF { first = 0
    if ($0 ~ /^[ \t]*unsigned int version;/) print name " version"
    else if ($0 ~ /^[ \t]*size_t size;/) print name " size" }
' "$src"/include/scry/*.h)
[ -n "$structs" ] || { echo "FAIL: no versioned struct found in include/scry (the scan is broken)"; exit 1; }
n=0
while read -r name kind; do
  n=$((n + 1))
  table=$(grep -o "ABI_TABLE(scry__abi_[a-z_0-9]*, $name," "$src/lib/abi.c" | sed 's/ABI_TABLE(\([a-z_0-9]*\),.*/\1/')
  if [ -z "$table" ]; then
    echo "FAIL: $name starts with its $kind field but has no ABI_TABLE in lib/abi.c"
    fails=$((fails + 1)); continue
  fi
done <<<"$structs"
# Every table (array elements included) is used somewhere.
for table in $(grep -o 'ABI_TABLE(scry__abi_[a-z_0-9]*' "$src/lib/abi.c" | sed 's/ABI_TABLE(//'); do
  if ! grep -rq --include='*.c' "&$table\b" "$src/lib" --exclude=abi.c; then
    echo "FAIL: the table $table of lib/abi.c is never used: its struct's version or size is not honoured"
    fails=$((fails + 1))
  fi
done
[ $fails = 0 ] || exit 1
echo "ok: $n versioned structs, each with its table in lib/abi.c, each copied through it"
