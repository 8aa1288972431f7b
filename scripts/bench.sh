#!/usr/bin/env bash
# The performance suite (issue 11; docs/performance.md): release build, real
# `reserve serve` processes on PostgreSQL (a fresh database, dropped after)
# and SQLite on loopback, every scenario measured against its limit in the
# same run. Prints one table; writes target/bench/results.json.
#
#   scripts/bench.sh           the full suite (under 15 minutes)
#   scripts/bench.sh --smoke   about 35 seconds (1 s per load scenario), what CI runs so it cannot rot
#
# Environment: TEST_DATABASE_URL (PostgreSQL admin URL, default the local
# trust-auth server), BENCH_SECONDS, BENCH_CLIENTS, BENCH_ENTRIES;
# RESERVE_TEST_SQLITE_ONLY=1 skips PostgreSQL. BENCH_ONLY=1,10 runs only the
# listed scenarios (PostgreSQL's 1 always: it is the reference of 3 and 10;
# the SQLite run when 8 is listed; the rules when 9 is): e.g.
#   BENCH_ONLY=1,10 BENCH_SECONDS=10 scripts/bench.sh --smoke
# measures group commit against one posting per transaction and pgbench.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=()
case "${1:-}" in
  --smoke) mode=(--smoke) ;;
  "") ;;
  *) echo "usage: scripts/bench.sh [--smoke]" >&2; exit 2 ;;
esac

if [ "${RESERVE_TEST_SQLITE_ONLY:-}" != 1 ]; then
  bash scripts/ensure-postgres.sh
  if ! command -v pgbench >/dev/null; then
    # pgbench ships with the PostgreSQL client.
    apt-get install -y -qq postgresql-client >/dev/null
  fi
fi
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

# The bench profile is the release profile: the server it starts is the
# release binary `cargo build --release` makes.
cargo build --release --locked --bin reserve
cargo bench --locked --bench suite -- "${mode[@]}"
