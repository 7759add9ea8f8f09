#!/usr/bin/env bash
# Runs the debugger page's tests in a real Chromium: installs the pinned test dependency
# (playwright-core, which downloads no browser) when node_modules is missing, builds
# dist/web with web/build.sh unless SIDEKILL_WEB_URL names a page already served, and runs
# web/tests/*.test.mjs with Node's built-in test runner, one file at a time (so the time
# to first plan is measured on a quiet machine).
#
# Usage: web/run-tests.sh [TEST_FILE...]
# Environment:
#   SIDEKILL_WEB_URL   test the page at this URL (e.g. `sidekill web --port`'s) instead of
#                      serving dist/web from the tests
#   SIDEKILL_FIXTURES  the real-world fixtures (default <repo>/../shared/fixtures/real-world)
#   CHROMIUM           the browser (default /usr/bin/chromium)
# Writes artifacts/screenshots/*.png and artifacts/web-metrics.json.
# Exit status: the test runner's (non-zero when a test fails); 2 when node, npm or the
# browser is missing.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

command -v node >/dev/null || { echo "run-tests.sh: node not found (Node 20 or later is needed)" >&2; exit 2; }
[[ -x ${CHROMIUM:-/usr/bin/chromium} ]] || { echo "run-tests.sh: no browser at ${CHROMIUM:-/usr/bin/chromium} (apt-get install chromium, or set CHROMIUM)" >&2; exit 2; }
cd "$here"
if [[ ! -d node_modules/playwright-core ]]; then
  command -v npm >/dev/null || { echo "run-tests.sh: npm not found" >&2; exit 2; }
  npm ci --no-audit --no-fund
fi
if [[ -z ${SIDEKILL_WEB_URL:-} ]]; then
  ./build.sh
fi
if (($#)); then
  files=("$@")
else
  files=(tests/*.test.mjs)
fi
node --test --test-concurrency=1 "${files[@]}"
