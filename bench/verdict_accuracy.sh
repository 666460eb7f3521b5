#!/usr/bin/env bash
# bench/verdict_accuracy.sh - the verdict's accuracy suites at full size:
# 20 repetitions of A/A (same database both sides, busy-loop CPU load) and of
# the injected suite (1.5x / 2x / 10x slowdowns, a dropped index), measured
# by the test's own interleaved libpq loop and again through the replay engine
# (scry_replay_run_ab), on a throwaway PostgreSQL server. Runs the whole
# tests/test_verdict program; prints the ACCURACY lines and the per-repetition
# ratios. The figures go into docs/verdict.md.
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
SCRY_ACCURACY_REPS="$reps" SCRY_ACCURACY_LOAD="$load" \
	"$bin" 2>&1 | grep -E '^(ACCURACY|calibration|pg_sleep|(replay )?(1\.5x|2x|10x|index) rep)|false alarm|missed|event |Checks'
echo "# loadavg after: $(cut -d' ' -f1-3 /proc/loadavg)"
