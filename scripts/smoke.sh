#!/usr/bin/env bash
# Runs the README's run command (`cargo run --release -- serve --demo`) in a
# scratch directory's database and checks the service answers with real data.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=serve-lib.sh
source scripts/serve-lib.sh

scratch=$(mktemp -d)
port=18089
cleanup() {
  stop_pid "${pid:-}"
  rm -rf "$scratch"
}
trap cleanup EXIT

RESERVE_DATABASE_URL="sqlite://$scratch/reserve.db" RESERVE_BIND="127.0.0.1:$port" \
  cargo run --release --locked -- serve --demo >"$scratch/tokens" 2>"$scratch/log" &
pid=$!

wait_ready "$port" "$pid" "$scratch/log"
curl -fsS "http://127.0.0.1:$port/readyz"; echo

viewer=$(grep '^VIEWER_TOKEN=' "$scratch/tokens" | cut -d= -f2-)
admin=$(grep '^ADMIN_TOKEN=' "$scratch/tokens" | cut -d= -f2-)
summary=$(curl -fsS -H "Authorization: Bearer $viewer" "http://127.0.0.1:$port/api/v1/summary")
echo "$summary" | python3 -c '
import json, sys
s = json.load(sys.stdin)
assert s["totals"]["depots"] == 5, s["totals"]
assert len(s["elements"]) == 17
empty = [e["element"] for e in s["elements"] if e["on_hand_kg"] == "0.000"]
assert not empty, f"the demo holds no stock of {empty}"
assert s["last_sequence"] > 500, s["last_sequence"]
print("summary:", s["totals"], "entries:", s["last_sequence"])
'
curl -fsS -H "Authorization: Bearer $admin" "http://127.0.0.1:$port/api/v1/ledger/verify" | python3 -c '
import json, sys
v = json.load(sys.stdin)
assert v["ok"], v
print("verify:", v)
'
echo "smoke: ok"
