#!/usr/bin/env bash
# Installs what the dashboard's browser tests need: Debian's chromium and
# chromium-driver (never a downloaded browser build) and the npm packages
# locked in package-lock.json (playwright-core, which drives the system
# chromium; `playwright install` is never run).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ! -x /usr/bin/chromium ]]; then
  echo "browser-setup: installing Debian's chromium and chromium-driver"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq </dev/null
  apt-get install -y -qq chromium chromium-driver </dev/null
fi
/usr/bin/chromium --version

# Playwright must never fetch a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
npm ci --no-audit --no-fund --loglevel=error </dev/null
