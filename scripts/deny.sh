#!/usr/bin/env bash
# Dependency checks with cargo-deny (advisories, licences, bans, sources; see
# deny.toml). Installs the pinned cargo-deny once, skipping the install when that
# version is already there.
#
# The advisory database: when ../shared/advisory-db exists (the offline RustSec
# snapshot beside a CI clone), it is used and cargo-deny runs --offline: it
# fetches nothing, and judges yanked versions by cargo's local index cache (as
# fresh as cargo's last online resolution; `cargo fetch` below makes sure it
# covers Cargo.lock). Otherwise cargo-deny clones and fetches the public
# database, and asks crates.io about yanked versions, as usual.
set -euo pipefail
cd "$(dirname "$0")/.."

# 0.20.2 builds with rustc >= 1.88 (this machine has 1.95).
version=0.20.2
if [[ "$(cargo deny --version 2>/dev/null || true)" != "cargo-deny $version" ]]; then
  echo "installing cargo-deny $version (a few minutes, once)"
  cargo install --locked "cargo-deny@$version"
fi

# The crates and their index entries, so that the offline run finds them.
cargo fetch --locked --quiet

snapshot=../shared/advisory-db
args=()
if [[ -d "$snapshot/crates" ]]; then
  # cargo-deny reads a database from <db-path>/<name derived from the URL>/crates
  # and, with fetching disabled, judges its age by .git/FETCH_HEAD's time. The
  # snapshot is plain files (no git), so give it that layout in target/, dated
  # as the snapshot says it was taken.
  root="$PWD/target/advisory-db-snapshot"
  export RESERVE_ADVISORY_DBS="$root"
  mkdir -p "$root"
  dir=$(find "$root" -mindepth 1 -maxdepth 1 -type d -name 'advisory-db-*' | head -n 1)
  if [[ -z "$dir" ]]; then
    # Ask cargo-deny where it looks, rather than re-implementing its URL hash.
    dir=$(cargo deny --offline --log-level debug check advisories 2>&1 \
      | sed -n "s/.*Opening advisory database at '\([^']*\)'.*/\1/p" | head -n 1 || true)
    if [[ -z "$dir" ]]; then
      echo "scripts/deny.sh: cannot tell where cargo-deny $version looks for its database" >&2
      exit 1
    fi
  fi
  rm -rf "$dir"
  mkdir -p "$dir/.git"
  cp -R "$snapshot/crates" "$dir/crates"
  taken=$(grep -oE '\(20[0-9]{2}-[0-9]{2}-[0-9]{2}\)' "$snapshot/SNAPSHOT.md" 2>/dev/null \
    | head -n 1 | tr -d '()' || true)
  touch -d "${taken:-@$(stat -c %Y "$snapshot/crates")}" "$dir/.git/FETCH_HEAD"
  echo "advisories: offline snapshot $snapshot (taken ${taken:-at an unknown date}); cargo-deny runs --offline"
  args+=(--offline)
fi

cargo deny --locked "${args[@]}" check
