#!/usr/bin/env bash
# The Python binding's tests (bindings/python/tests), with Debian's python3.
set -euo pipefail
export SCRY_LIB=${SCRY_LIB:?}
exec /usr/bin/python3 "$SCRY_SOURCE_DIR/bindings/python/tests/test_scry.py"
