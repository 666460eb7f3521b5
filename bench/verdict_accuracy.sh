#!/usr/bin/env bash
# bench/verdict_accuracy.sh - the verdict's accuracy suites at full size:
# 20 repetitions of A/A (same database both sides, busy-loop CPU load) and of
# the injected suite (1.5x / 2x / 10x slowdowns, a dropped index), on a
# throwaway PostgreSQL server. Prints the ACCURACY lines and the per-
# repetition ratios; the figures go into docs/verdict.md.
#
#   bench/verdict_accuracy.sh [BUILD_DIR] [REPS] [LOAD_CHILDREN]
#   (defaults: build 20 1)
set -euo pipefail
build=${1:-build}
reps=${2:-20}
load=${3:-1}
bin="$build/tests/test_verdict"
[ -x "$bin" ] || { echo "verdict_accuracy: $bin not found; build first (cmake --build $build)" >&2; exit 1; }
echo "# $(date -u +%FT%TZ) reps=$reps load=$load nproc=$(nproc) loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
CK_RUN_CASE=accuracy SCRY_ACCURACY_REPS="$reps" SCRY_ACCURACY_LOAD="$load" \
	"$bin" 2>&1 | grep -E '^(ACCURACY|calibration|pg_sleep|1\.5x|2x|10x) |false alarm|missed|Checks'
echo "# loadavg after: $(cut -d' ' -f1-3 /proc/loadavg)"
