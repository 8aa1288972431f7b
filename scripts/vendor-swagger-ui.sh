#!/usr/bin/env bash
# Refreshes vendor/swagger-ui-dist/ from the npm registry (`npm pack`), keeping
# only the files `GET /docs` serves and their licences. Not run by CI: the
# vendored files are committed, so builds and tests never touch the network.
#
#   bash scripts/vendor-swagger-ui.sh 5.35.0
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:?usage: vendor-swagger-ui.sh VERSION}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "swagger-ui-dist@$version" >/dev/null && tar xzf swagger-ui-dist-*.tgz)
dest=vendor/swagger-ui-dist
for f in swagger-ui-bundle.js swagger-ui.css swagger-ui-bundle.js.LICENSE.txt LICENSE NOTICE package.json; do
  cp "$work/package/$f" "$dest/$f"
done
npm view "swagger-ui-dist@$version" dist.integrity
(cd "$dest" && sha256sum swagger-ui-bundle.js swagger-ui.css swagger-ui-bundle.js.LICENSE.txt LICENSE NOTICE package.json)
echo "update $dest/README.md with the version, integrity and checksums above"
