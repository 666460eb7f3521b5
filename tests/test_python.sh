#!/usr/bin/env bash
# The Python binding's tests (bindings/python/tests), with Debian's python3.
# The binding mirrors no struct but scry_error and scry_buf (docs/bindings.md).
set -euo pipefail
export SCRY_LIB=${SCRY_LIB:?}
n=$(grep -c "ctypes.Structure)" "$SCRY_SOURCE_DIR"/bindings/python/scry/*.py | awk -F: '{s += $2} END {print s}')
if [ "$n" != 2 ]; then
  echo "FAIL - the Python binding declares $n ctypes structures; only Error and Buf may be mirrored"; exit 1
fi
echo "ok   - the binding mirrors only scry_error and scry_buf"
exec /usr/bin/python3 "$SCRY_SOURCE_DIR/bindings/python/tests/test_scry.py"
