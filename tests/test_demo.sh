#!/usr/bin/env bash
# End-to-end test of `scry demo`: it starts its own cluster, captures through
# the proxy, must find the seed's regressions (the new region queries, slower
# than with their index), and the fix must clear every one of them.
set -uo pipefail
SCRY=${SCRY_CLI:?SCRY_CLI is not set}

before=$(ls -d /tmp/scry-demo.* 2>/dev/null | wc -l)
out=$(mktemp /tmp/scry-test-demo.XXXXXX)
trap 'rm -f "$out"' EXIT
"$SCRY" demo --json >"$out"
rc=$?
cat "$out"
fails=0
check() { if eval "$2"; then echo "ok   - $1"; else echo "FAIL - $1"; fails=$((fails + 1)); fi; }

check "exit code 0" '[ $rc = 0 ]'
/usr/bin/python3 - "$out" <<'PY' || fails=$((fails + 1))
import json, sys
d = json.load(open(sys.argv[1]))
ok = True
def check(what, cond):
    global ok
    print(("ok   - " if cond else "FAIL - ") + what)
    ok &= bool(cond)
check("25,000 orders", d["rows"] == 25000)
check("traffic captured through the proxy", d["captured"]["recorded"] >= d["captured"]["production_executions"] + d["captured"]["staging_executions"] > 0)
m, f = d["migration"]["patterns"], d["after_fix"]["patterns"]
regressed = [p for p in m if p["fails"]]
check("the migration has regressions (%d)" % len(regressed), len(regressed) >= 1)
check("they are the new region queries", all("region" in p["normalized"] for p in regressed))
check("each is slower than with its index", all(p["ratio"] > 1.5 and p["suggested_index"] for p in regressed))
check("no existing query regressed", not any(p["fails"] for p in m if "region" not in p["normalized"]))
check("the gate agrees", d["migration"]["gate_failures"] == len(regressed))
check("after the fix nothing fails", d["after_fix"]["failures"] == 0 and d["after_fix"]["gate_failures"] == 0)
fixed = {p["fingerprint"]: p for p in f}
check("every regressed pattern is faster after the fix",
      all(fixed[p["fingerprint"]]["candidate_p50_ms"] < p["candidate_p50_ms"] for p in regressed))
check("the story was told", d["story_told"] is True)
sys.exit(0 if ok else 1)
PY
after=$(ls -d /tmp/scry-demo.* 2>/dev/null | wc -l)
check "the demo removed its cluster" '[ "$after" -le "$before" ]'
# The human-readable story: measured ratios and the EXPLAIN root cause.
text=$("$SCRY" demo 2>/dev/null)
check "text mode shows the root cause" 'grep -q "Seq Scan on orders" <<<"$text" && grep -q "removed by filter" <<<"$text"'
check "text mode ends at baseline" 'grep -q "back at baseline" <<<"$text"'
echo "$fails failure(s)"
[ "$fails" = 0 ]
