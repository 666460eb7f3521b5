#!/usr/bin/env bash
# End-to-end test of `scry demo`: it starts its own cluster, captures through
# the proxy, must find the seed's regressions (the new region queries, slower
# than with their index), and the fix must clear every one of them.
set -uo pipefail
SCRY=${SCRY_CLI:?SCRY_CLI is not set}

# The demo's directories go to a private $SCRY_DEMO_DIR: another demo running
# at the same time (another test, a person) cannot be mistaken for this one's.
export SCRY_DEMO_DIR=$(mktemp -d /tmp/scry-test-demo.XXXXXX); chmod 755 "$SCRY_DEMO_DIR"
out=$SCRY_DEMO_DIR.out
err=$SCRY_DEMO_DIR.err
trap 'rm -rf "$out" "$err" "$SCRY_DEMO_DIR"' EXIT
# --json: the measured results on stdout, the story (what a person reads) on stderr.
"$SCRY" demo --json >"$out" 2>"$err"
rc=$?
cat "$err"
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
# Slower than with its index in time, or (the work rule, docs/verdict.md) in blocks read with a timing ratio above 1.
check("each is slower than with its index", all(p["suggested_index"] and (p["ratio"] > 1.5 or (p["work_regressed"] and p["work_ratio"] >= 1.5 and p["ratio"] > 1)) for p in regressed))
check("no existing query regressed", not any(p["fails"] for p in m if "region" not in p["normalized"]))
check("the gate agrees", d["migration"]["gate_failures"] == len(regressed))
check("after the fix nothing fails", d["after_fix"]["failures"] == 0 and d["after_fix"]["gate_failures"] == 0)
fixed = {p["fingerprint"]: p for p in f}
# Two replays taken minutes apart on a shared machine: a pattern at the edge of the gate (1.5x, or
# flagged by the work rule) may move within noise once fixed, and the gate above already judged it
# (seen in CI: the join at 1.54x measured 2.36 ms migrated, 2.41 ms fixed, through an index).
# A clear regression (2x or more) must come back clearly.
clear = [p for p in regressed if p["ratio"] and p["ratio"] >= 2]
check("every clear regression (%d) is faster after the fix" % len(clear),
      len(clear) >= 1 and all(fixed[p["fingerprint"]]["candidate_p50_ms"] < p["candidate_p50_ms"] for p in clear))
check("the story was told", d["story_told"] is True)
sys.exit(0 if ok else 1)
PY
check "the demo removed its cluster" '[ -z "$(ls -A "$SCRY_DEMO_DIR")" ]'
# The story: measured ratios and the EXPLAIN root cause, then back at baseline.
check "the story shows the root cause" 'grep -q "Seq Scan on orders" "$err" && grep -q "removed by filter" "$err"'
check "the story shows measured ratios" 'grep -Eq "[0-9]+\.[0-9]x slower" "$err"'
check "the story ends at baseline" 'grep -q "back at baseline" "$err"'
# Ctrl-C while the demo works: its cluster is stopped and removed all the same.
mine() { ls -d "$SCRY_DEMO_DIR"/scry-demo.* 2>/dev/null | sort; }
old=$(mine)
set -m
"$SCRY" demo >/dev/null 2>&1 &
DEMO=$!
set +m
new=
for _ in $(seq 1 100); do
  new=$(comm -13 <(echo "$old") <(mine) | head -1)
  [ -n "$new" ] && [ -f "$new/data/postmaster.pid" ] && break
  sleep 0.1
done
sleep 0.5
kill -INT -- "-$DEMO"
wait "$DEMO"; rc=$?
check "Ctrl-C: exit 1" '[ $rc = 1 ]'
check "Ctrl-C: the cluster directory is gone" '[ -n "$new" ] && [ ! -e "$new" ]'
check "Ctrl-C: no server left running" '! pgrep -f "postgres -D $new/data" >/dev/null'
echo "$fails failure(s)"
[ "$fails" = 0 ]
