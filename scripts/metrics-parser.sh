#!/usr/bin/env bash
# Installs the Prometheus text-format parser the /metrics tests check scrapes
# with (tests/api/metrics.rs): prometheus_client, the official Python client,
# in a venv of its own under target/. The Rust crate prometheus-parse cannot be
# used: it cuts a sample's labels at the first `}`, and route labels such as
# route="/api/v1/depots/{code}" contain one.
set -euo pipefail
cd "$(dirname "$0")/.."

PARSER_VERSION=0.26.0
VENV=target/metrics-venv

installed() {
  "$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('prometheus_client'))" 2>/dev/null
}
if [ "$(installed)" != "$PARSER_VERSION" ]; then
  python3 -m venv --clear "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "prometheus_client==$PARSER_VERSION"
fi
echo "prometheus_client $(installed) in $VENV"
