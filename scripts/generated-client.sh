#!/usr/bin/env bash
# Generated-client check: generates a Python client from the committed
# openapi.yaml with a pinned public generator (openapi-python-client, from
# PyPI) and drives a short scenario through its typed models against a live
# `reserve serve --demo`: create a depot, acquire, release, page the ledger to
# its end in both orders, read a balance as of an instant. A spec change that
# breaks generated clients (a body the generator cannot model, an answer that
# does not parse into its model) fails here. Exits non-zero on any generator
# warning and on any unexpected answer.
#
#   bash scripts/generated-client.sh
#
# Environment (optional): RESERVE_BIN, the binary to test; by default
# target/release/reserve, built first with `cargo build --release --locked`.
#
# Files: scripts/generated_client/config.yaml (generator settings) and
# scripts/generated_client/scenario.py (the scenario).
set -euo pipefail
cd "$(dirname "$0")/.."

GENERATOR_VERSION=0.29.1
VENV=target/client-venv
OUT=target/generated-client

# ---- the generator, pinned, in its own virtualenv -------------------------------
if [[ "$("$VENV/bin/openapi-python-client" --version 2>/dev/null || true)" != *" $GENERATOR_VERSION" ]]; then
  echo "== installing openapi-python-client $GENERATOR_VERSION into $VENV"
  python3 -m venv --clear "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "openapi-python-client==$GENERATOR_VERSION"
fi
"$VENV/bin/openapi-python-client" --version

# ---- the client -------------------------------------------------------------------
echo "== generating a client from openapi.yaml into $OUT"
rm -rf "$OUT"
mkdir -p "$OUT"
"$VENV/bin/openapi-python-client" generate --path openapi.yaml --meta none \
  --config scripts/generated_client/config.yaml --output-path "$OUT/reserve_client" \
  --fail-on-warning

# ---- the binary -------------------------------------------------------------------
if [[ -z "${RESERVE_BIN:-}" ]]; then
  echo "== cargo build --release --locked --bin reserve"
  cargo build --release --locked --bin reserve
  RESERVE_BIN=target/release/reserve
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/generated-client.XXXXXX")
pid=""
cleanup() {
  if [[ -n "$pid" ]]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
echo "== reserve serve --demo --bind 127.0.0.1:$port (scratch SQLite database)"
RESERVE_DATABASE_URL="sqlite://$scratch/reserve.db" RESERVE_LOG_FORMAT=text \
  "$RESERVE_BIN" serve --demo --bind "127.0.0.1:$port" >"$scratch/stdout" 2>"$scratch/server.log" &
pid=$!
ready=""
for _ in $(seq 1 240); do
  if grep -q '^VIEWER_TOKEN=' "$scratch/stdout" 2>/dev/null \
    && curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null; then
    ready=1
    break
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    break
  fi
  sleep 0.5
done
if [[ -z "$ready" ]]; then
  tail -n 50 "$scratch/server.log" >&2
  echo "generated-client: the service did not become ready" >&2
  exit 1
fi
token() { grep "^$1=" "$scratch/stdout" | head -n1 | cut -d= -f2-; }

echo "== scenario through the generated client"
status=0
RESERVE_URL="http://127.0.0.1:$port" ADMIN_TOKEN=$(token ADMIN_TOKEN) \
  OPERATOR_TOKEN=$(token OPERATOR_TOKEN) VIEWER_TOKEN=$(token VIEWER_TOKEN) \
  PYTHONPATH="$OUT" PYTHONDONTWRITEBYTECODE=1 \
  "$VENV/bin/python" scripts/generated_client/scenario.py || status=$?
if [[ $status -ne 0 ]]; then
  echo "-- server log, errors and warnings (last 40)" >&2
  grep -aE 'ERROR|WARN|panicked' "$scratch/server.log" | tail -n 40 >&2 || true
  echo "generated-client: FAIL"
  exit 1
fi
echo "generated-client: PASS"
