#!/usr/bin/env bash
# `scry capture proxy` production controls and loss reporting, end to end:
# --max-events and --duration stop cleanly, SIGHUP rotates the store,
# the soft RLIMIT_NOFILE is raised, a deleted store and a full disk are
# reported while recording and make the exit status non-zero.
set -euo pipefail
source "$SCRY_SOURCE_DIR/tests/proxy/lib.sh"
start_cluster
up=(--upstream "127.0.0.1:$port")

await() { # SECONDS COMMAND...: until the command succeeds
  local t=$1; shift
  for _ in $(seq 1 $((t * 10))); do "$@" && return 0; sleep 0.1; done
  return 1
}
q() { psql -X -qAt "host=127.0.0.1 port=$pport user=postgres dbname=postgres" "$@"; }
events() { "$SCRY_CLI" workload info --store "$1" --json | sed -n 's/.*"events":\([0-9]*\).*/\1/p'; }

# --max-events: stops by itself, cleanly, with exactly that many events.
start_proxy max "${up[@]}" --max-events 3
set +e; for i in 1 2 3 4 5 6; do q -c "SELECT $i" >/dev/null 2>&1; done; set -e
await 10 bash -c "! kill -0 $ppid 2>/dev/null" || fail "--max-events 3 did not stop the proxy"
wait_proxy
[ "$prc" = 0 ] || fail "--max-events exit status $prc"
[ "$(events "$work/max.db")" = 3 ] || fail "--max-events 3 recorded $(events "$work/max.db")"

# --duration: stops by itself.
start_proxy dur "${up[@]}" --duration 1
q -c "SELECT 'in time'" >/dev/null
await 15 bash -c "! kill -0 $ppid 2>/dev/null" || fail "--duration 1 did not stop the proxy"
wait_proxy
[ "$prc" = 0 ] || fail "--duration exit status $prc"
[ "$(events "$work/dur.db")" = 1 ] || fail "--duration recorded $(events "$work/dur.db")"

# Filters from the command line: only the chosen application is recorded.
start_proxy filt "${up[@]}" --applications keep,also --users postgres --databases postgres
psql -X -qAt "host=127.0.0.1 port=$pport user=postgres dbname=postgres application_name=keep" -c "SELECT 1" >/dev/null
psql -X -qAt "host=127.0.0.1 port=$pport user=postgres dbname=postgres application_name=other" -c "SELECT 2" >/dev/null
stop_proxy
[ "$prc" = 0 ] || fail "filters: exit status $prc"
[ "$(sqlite3 "$work/filt.db" "SELECT group_concat(application) FROM sessions")" = keep ] \
  || fail "filtered sessions: $(sqlite3 "$work/filt.db" "SELECT application FROM sessions")"

# SIGHUP: the store is closed and the next one opened; the soft
# RLIMIT_NOFILE was raised to the hard limit.
mkdir "$work/rot"
start_proxy rot "${up[@]}" --store "$work/rot/first.db" # the last --store wins
limits=$(grep "Max open files" "/proc/$ppid/limits")
read -r soft hard <<<"$(awk '{print $4, $5}' <<<"$limits")"
[ "$soft" = "$hard" ] || fail "soft RLIMIT_NOFILE not raised: $limits"
q -c "SELECT 'first file'" >/dev/null
kill -HUP "$ppid"
await 10 grep -q "rotated" "$work/rot.err" || fail "no rotation after SIGHUP"
q -c "SELECT 'second file'" >/dev/null
stop_proxy
[ "$prc" = 0 ] || fail "rotation run exit status $prc"
next=$(ls "$work/rot" | grep -E '^scry-[0-9]{8}-[0-9]{6}(-[0-9]+)?\.db$' | head -1)
[ -n "$next" ] || fail "no scry-YYYYmmdd-HHMMSS.db after SIGHUP: $(ls "$work/rot")"
[ "$(events "$work/rot/first.db")" = 1 ] || fail "first store holds $(events "$work/rot/first.db") events"
[ "$(events "$work/rot/$next")" = 1 ] || fail "second store holds $(events "$work/rot/$next") events"
grep -q "\"rotations\":1" "$work/rot.out" || fail "summary: $(cat "$work/rot.out")"
grep -q "$next" "$work/rot.out" || fail "summary does not name the last store: $(cat "$work/rot.out")"

# Out of descriptors (open-files limit 64, soft and hard): clients beyond
# what fits (leaving descriptors for the store) wait in the backlog, logged,
# and are all served and recorded in the end.
(ulimit -n 64; exec "$SCRY_CLI" capture proxy --listen 127.0.0.1:0 "${up[@]}" --store "$work/fd.db" --json \
   >"$work/fd.out" 2>"$work/fd.err") &
ppid=$!; pids+=($ppid)
await 10 grep -q "capturing on" "$work/fd.err" || fail "fd: no start"
pport=$(sed -n 's/.*capturing on 127.0.0.1:\([0-9]*\) .*/\1/p' "$work/fd.err")
cl=()
for i in $(seq 1 24); do
  psql -X -qAt "host=127.0.0.1 port=$pport user=postgres dbname=postgres" -c "SELECT pg_sleep(1)" >/dev/null 2>"$work/fdc$i.txt" &
  cl+=($!)
done
for c in "${cl[@]}"; do wait "$c" || fail "a client failed while descriptors were short: $(cat "$work"/fdc*.txt)"; done
grep -q "open-files limit" "$work/fd.err" || fail "running out of descriptors was not logged"
grep -q "store:" "$work/fd.err" && fail "the store lost descriptors to connections"
stop_proxy
[ "$prc" = 0 ] || fail "fd: exit status $prc"
grep -q '"events_recorded":24' "$work/fd.out" || fail "fd: $(cat "$work/fd.out")"

# A fleet: the stores of these proxies merged into one; sessions apart,
# the shared pattern (SELECT $1) counted once with every execution.
"$SCRY_CLI" workload merge "$work/fleet.db" "$work/max.db" "$work/dur.db" "$work/rot/first.db" "$work/rot/$next" \
  --json >"$work/merge.out" || fail "workload merge: $(cat "$work/merge.out")"
grep -q '"inputs_merged":4' "$work/merge.out" && grep -q '"events":6' "$work/merge.out" || fail "merge: $(cat "$work/merge.out")"
sess_in=0
for f in "$work/max.db" "$work/dur.db" "$work/rot/first.db" "$work/rot/$next"; do
  sess_in=$((sess_in + $(sqlite3 "$f" "SELECT count(*) FROM sessions")))
done
[ "$(sqlite3 "$work/fleet.db" "SELECT count(*) FROM sessions")" = "$sess_in" ] || fail "merged sessions are not kept apart"
[ "$(sqlite3 "$work/fleet.db" "SELECT count FROM patterns WHERE normalized = 'SELECT \$1'")" = 6 ] \
  || fail "merged pattern count: $(sqlite3 "$work/fleet.db" "SELECT normalized, count FROM patterns")"

# A store deleted while recording: reported when noticed, exit status 1.
start_proxy del "${up[@]}"
q -c "SELECT 'before delete'" >/dev/null
rm "$work/del.db"
for i in $(seq 1 30); do q -c "SELECT $i" >/dev/null; grep -q "deleted" "$work/del.err" && break; sleep 0.1; done
grep -q "del.db was deleted while recording" "$work/del.err" || fail "the deleted store was not reported while running"
kill -0 "$ppid" || fail "the proxy stopped forwarding after the store was deleted"
q -c "SELECT 'still forwarded'" >/dev/null || fail "traffic stopped"
stop_proxy
[ "$prc" = 1 ] || fail "deleted store: exit status $prc, want 1"

# Disk full (a 200 KiB file-size limit): logged when it happens, exit 1.
big=$(head -c 3000 /dev/zero | tr '\0' x)
(ulimit -f 200; exec "$SCRY_CLI" capture proxy --listen 127.0.0.1:0 --upstream "127.0.0.1:$port" \
   --store "$work/full.db" >"$work/full.out" 2>"$work/full.err") &
ppid=$!; pids+=($ppid)
await 10 grep -q "capturing on" "$work/full.err" || fail "full: no start"
pport=$(sed -n 's/.*capturing on 127.0.0.1:\([0-9]*\) .*/\1/p' "$work/full.err")
for i in $(seq 1 40); do
  for j in $(seq 1 10); do echo "SELECT '$big$i$j';"; done | q >/dev/null
  grep -q "error: store" "$work/full.err" && break
done
grep -q "error: store" "$work/full.err" || fail "disk full not logged while running"
kill -0 "$ppid" || fail "the proxy died on a full disk"
stop_proxy
[ "$prc" = 1 ] || fail "disk full: exit status $prc, want 1"
grep -q "dropped" "$work/full.out" || fail "summary: $(cat "$work/full.out")"
echo ok
