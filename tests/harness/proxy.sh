# tests/harness/proxy.sh - sourced by the shell tests that start `scry capture
# proxy` in the background: one way to learn the port it listens on.

# proxy_port ERRFILE [PID]: prints the port the proxy announced on its stderr
# ("capturing on 127.0.0.1:PORT ..."), waiting up to 10 s; prints nothing if it
# never did, or at once if PID (the proxy) has exited. The file may not exist
# yet (the background child creates it), which a bare sed under set -e once
# turned into a silent end of the test.
proxy_port() {
  local p= i
  for i in $(seq 1 100); do
    p=$(sed -n 's/.*capturing on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$1" 2>/dev/null | head -1 || true)
    [ -n "$p" ] && break
    if [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "$p"
}
