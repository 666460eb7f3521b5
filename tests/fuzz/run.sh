#!/usr/bin/env bash
# make fuzz: runs every libFuzzer target of a SCRY_FUZZ=ON build for
# FUZZ_SECONDS each, one after the other, and prints the executions, new
# coverage and crashes of each (docs/testing.md records the figures).
#
#   tests/fuzz/run.sh BUILD_DIR SECONDS [TARGET...]
#
# The working corpus grows in BUILD_DIR/fuzz-corpus/TARGET (the committed
# seeds in tests/fuzz/corpus/TARGET are read, never written); crashing inputs
# land in BUILD_DIR/fuzz-artifacts/. Exit 1 when a target crashed.
# FUZZ_TIMEOUT (default 60) is the per-input limit in seconds: keep it
# generous when the machine is shared (libFuzzer measures wall time).
set -uo pipefail
build=${1:?build dir}; secs=${2:?seconds}; shift 2
src=$(cd "$(dirname "$0")" && pwd)
targets=${*:-pgwire fingerprint logimport logprefix store}
mkdir -p "$build/fuzz-artifacts" "$build/fuzz-logs"
status=0
for t in $targets; do
  exe=$build/tests/fuzz/fuzz_$t
  [ -x "$exe" ] || { echo "run.sh: $exe not built" >&2; exit 2; }
  mkdir -p "$build/fuzz-corpus/$t"
  log=$build/fuzz-logs/$t.log
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$exe" -max_total_time="$secs" -print_final_stats=1 -rss_limit_mb=2048 -timeout="${FUZZ_TIMEOUT:-60}" \
      -artifact_prefix="$build/fuzz-artifacts/$t-" \
      "$build/fuzz-corpus/$t" "$src/corpus/$t" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  if [ "$rc" = 0 ]; then res="0 crashes"; else res="FAILED (exit $rc, see $log)"; status=1; fi
  printf '%-12s %12s executions  %-12s %s\n' "$t" "${execs:-?}" "${cov:-}" "$res"
done
exit $status
