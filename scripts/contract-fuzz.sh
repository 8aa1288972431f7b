#!/usr/bin/env bash
# Contract fuzzing: Schemathesis generates requests from openapi.yaml for every
# operation, sends them to a live `reserve serve --demo` on a scratch SQLite
# database, and checks each response against the spec (no 5xx, a documented
# status, content type, headers and body schema). Fails on any finding, or if
# fewer than $MIN_REQUESTS requests were sent.
#
#   bash scripts/contract-fuzz.sh
#
# Environment:
#   RESERVE_BIN        binary to test (default: build and use target/release/reserve)
#   FUZZ_SEED          Hypothesis seed (default fixed, for reproducible runs)
#   FUZZ_MAX_EXAMPLES  examples per operation and phase (default below)
#   FUZZ_DATABASE_URL  if set, a second run against this PostgreSQL database
#                      (it should be empty: the demo data is seeded into it)
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
MIN_REQUESTS=1000
SEED=${FUZZ_SEED:-20261126}
MAX_EXAMPLES=${FUZZ_MAX_EXAMPLES:-60}
VENV=target/contract-venv
# A fixed secret, so that `reserve token` can mint a token the server accepts
# (`serve --demo` would otherwise make up one of its own). Test-only.
FUZZ_JWT_SECRET=contract-fuzz-secret-not-for-production0
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance

# ---- Schemathesis, pinned, in its own virtualenv ----------------------------
if [[ ! -x "$VENV/bin/st" ]] || [[ "$("$VENV/bin/st" --version 2>/dev/null)" != *" $SCHEMATHESIS_VERSION" ]]; then
  echo "== installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
"$VENV/bin/st" --version

# ---- the binary ---------------------------------------------------------------
if [[ -z "${RESERVE_BIN:-}" ]]; then
  cargo build --release --locked --bin reserve
  RESERVE_BIN=target/release/reserve
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/contract-fuzz.XXXXXX")
pid=""
stop_server() {
  if [[ -n "$pid" ]]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
  fi
}
cleanup() {
  stop_server
  rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

total_requests=0
runs=0

# fuzz LABEL DATABASE_URL
fuzz() {
  local label=$1 database_url=$2 port run_dir admin token
  port=$(free_port)
  run_dir="$scratch/$label"
  mkdir -p "$run_dir" || return 1
  echo "== $label: reserve serve --demo on 127.0.0.1:$port"
  RESERVE_JWT_SECRET=$FUZZ_JWT_SECRET RESERVE_DATABASE_URL=$database_url RESERVE_LOG_FORMAT=text \
    "$RESERVE_BIN" serve --demo --bind "127.0.0.1:$port" >"$run_dir/stdout" 2>"$run_dir/server.log" &
  pid=$!
  for _ in $(seq 1 120); do
    if grep -q '^ADMIN_TOKEN=' "$run_dir/stdout" 2>/dev/null \
      && curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null; then
      break
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 50 "$run_dir/server.log" >&2
      echo "contract-fuzz: the service exited before it was ready" >&2
      return 1
    fi
    sleep 0.5
  done
  admin=$(grep '^ADMIN_TOKEN=' "$run_dir/stdout" | cut -d= -f2- || true)
  if [[ -z "$admin" ]]; then
    echo "contract-fuzz: the service printed no ADMIN_TOKEN line" >&2
    return 1
  fi
  # The demo's admin token has admin+auditor only; writes to the ledger need
  # operator, so mint one token with every role the API distinguishes.
  token=$(RESERVE_JWT_SECRET=$FUZZ_JWT_SECRET RESERVE_DATABASE_URL=$database_url \
    "$RESERVE_BIN" token --sub fuzz --role admin --role operator --role auditor --ttl 2h) || return 1
  # (`fuzz` runs under `||`, where `set -e` is off: every step checks itself.)
  curl -fsS -o /dev/null -H "Authorization: Bearer $token" "http://127.0.0.1:$port/api/v1/ledger/verify" || return 1

  local status=0
  CONTRACT_FUZZ_COUNT_FILE="$run_dir/requests" SCHEMATHESIS_HOOKS=scripts/contract_fuzz_hooks.py \
    "$VENV/bin/st" --config-file scripts/contract-fuzz.toml --no-color run openapi.yaml \
    --url "http://127.0.0.1:$port" \
    --header "Authorization: Bearer $token" \
    --checks "$CHECKS" \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "$MAX_EXAMPLES" \
    --seed "$SEED" \
    --request-timeout 10 \
    --workers 2 \
    --generation-database none \
    --suppress-health-check too_slow,filter_too_much \
    --report junit,json \
    --report-dir "$run_dir/report" \
    || status=$?

  local requests
  requests=$(cat "$run_dir/requests" 2>/dev/null || echo 0)
  total_requests=$((total_requests + requests))
  runs=$((runs + 1))
  echo "== $label: $requests requests sent, schemathesis exit status $status"
  if [[ $status -ne 0 ]]; then
    echo "-- server log (errors):" >&2
    grep -E 'ERROR|WARN|panick' "$run_dir/server.log" | tail -n 40 >&2 || true
  fi
  stop_server
  return "$status"
}

overall=0
fuzz sqlite "sqlite://$scratch/fuzz.db" || overall=1
if [[ -n "${FUZZ_DATABASE_URL:-}" ]]; then
  fuzz postgres "$FUZZ_DATABASE_URL" || overall=1
fi

echo "contract-fuzz: $total_requests requests in $runs run(s) (minimum $MIN_REQUESTS per run: $((MIN_REQUESTS * runs)))"
if [[ $total_requests -lt $((MIN_REQUESTS * runs)) ]]; then
  echo "contract-fuzz: FAIL: too few requests" >&2
  overall=1
fi
if [[ $overall -ne 0 ]]; then
  echo "contract-fuzz: FAIL"
  exit 1
fi
echo "contract-fuzz: PASS"
