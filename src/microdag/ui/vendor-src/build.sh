#!/bin/sh
# Rebuilds ../static/vendor/codemirror.js, LICENSE and VERSIONS from the exact
# versions in package-lock.json (docs/design.md, "The vendored code editor").
# Needs Node.js 18 or later and the npm registry; node_modules/ is not committed.
set -eu
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
node build.mjs
