# Shell functions shared by the scripts that start `reserve serve` (sourced,
# not run): waiting for it to be ready, and stopping it.

# wait_ready PORT PID LOG: waits up to two minutes (a `cargo run` may build first) for /readyz on 127.0.0.1:PORT;
# fails, printing LOG, if the process PID exits first or the time runs out.
wait_ready() {
  local port=$1 server_pid=$2 log=$3
  for _ in $(seq 1 120); do
    if curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
      cat "$log" >&2
      echo "the service exited" >&2
      return 1
    fi
    sleep 1
  done
  cat "$log" >&2
  echo "the service did not become ready on port $port" >&2
  return 1
}

# stop_pid PID: stops the process and reaps it; nothing if PID is empty.
stop_pid() {
  if [[ -n "${1:-}" ]]; then
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
  fi
}
