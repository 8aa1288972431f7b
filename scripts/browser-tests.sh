#!/usr/bin/env bash
# The dashboard's browser tests: Debian's chromium driven by playwright-core
# (tests/browser/) against a real `reserve serve --demo` on a loopback port,
# once on SQLite and once on a fresh PostgreSQL database that this script
# creates and drops. Reuses target/release/reserve (cargo only checks that it
# is up to date when .ci/run has built it). Screenshots and the servers' logs
# go to target/browser-artifacts/<backend>/. Servers, databases and scratch
# directories are removed on every exit, failure included.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# shellcheck source=serve-lib.sh
source scripts/serve-lib.sh

bash scripts/browser-setup.sh
bash scripts/ensure-postgres.sh
pg_admin="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

# A no-op when the binary is current (it is after .ci/run's test and smoke steps).
cargo build --release --locked --bin reserve
binary="$root/target/release/reserve"

artifacts="$root/target/browser-artifacts"
rm -rf "$artifacts"
mkdir -p "$artifacts"
scratch=$(mktemp -d)
pg_db="reserve_browser_$$"
pid=""

stop_server() {
  stop_pid "$pid"
  pid=""
}
cleanup() {
  stop_server
  psql "$pg_admin" -qAt -c "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$scratch"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# run_backend NAME DATABASE_URL
run_backend() {
  local name=$1 url=$2 port dir
  port=$(free_port)
  dir="$artifacts/$name"
  mkdir -p "$dir"
  # The demo keeps its signing secrets beside a SQLite file, or under data/
  # for PostgreSQL: run from the scratch directory so nothing lands in the tree.
  (cd "$scratch" && RESERVE_DATABASE_URL="$url" RESERVE_BIND="127.0.0.1:$port" \
    exec "$binary" serve --demo >"$scratch/$name.tokens" 2>"$dir/server.log") &
  pid=$!
  wait_ready "$port" "$pid" "$dir/server.log"
  echo "== browser tests on $name (http://127.0.0.1:$port)"
  set -a
  # shellcheck disable=SC1090
  source "$scratch/$name.tokens"
  set +a
  RESERVE_URL="http://127.0.0.1:$port" BACKEND="$name" ARTIFACTS="$dir" \
    timeout 300 node --test --test-concurrency=1 --test-reporter=spec tests/browser/
  stop_server
}

run_backend sqlite "sqlite://$scratch/reserve.db"

psql "$pg_admin" -qAt -c "CREATE DATABASE $pg_db" >/dev/null
run_backend postgres "${pg_admin%/*}/$pg_db"
