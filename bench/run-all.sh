#!/usr/bin/env bash
# bench/run-all.sh - every benchmark, one after the other (`make bench`).
#   bench/run-all.sh [BUILD_DIR]
# The standalone programs run with their default sizes; every other
# bench/*.sh script gets BUILD_DIR. Figures and how to read them:
# docs/benchmarks.md.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build}
status=0
for prog in bench_fingerprint bench_store; do
  echo "== $prog"
  "$build/bench/$prog" || status=1
done
echo "== bench_verdict"
rm -f /tmp/scry-bench-verdict.db*
"$build/bench/bench_verdict" /tmp/scry-bench-verdict.db 1000 1000000 5 || status=1
rm -f /tmp/scry-bench-verdict.db*
for script in "$here"/bench/*.sh; do
  [ "$(basename "$script")" = run-all.sh ] && continue
  echo "== $(basename "$script")"
  bash "$script" "$build" || status=1
done
exit $status
