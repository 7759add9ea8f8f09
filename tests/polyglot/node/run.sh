#!/usr/bin/env bash
# Runs the Node loader's tests with Node's built-in runner and prints its summary.
# Idempotent: reads the built module and package and writes nothing in the repository. Unless
# SIDEKILL_VECTORS_OUT is set, it dumps the vectors with cargo into a temporary folder first.
# Exit status: the runner's (non-zero when a test fails); 2 when node is missing.
# Environment: SIDEKILL_WASM, SIDEKILL_VECTORS_OUT, SIDEKILL_PKG_NODE (see README.md).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)

command -v node >/dev/null || { echo "run.sh: node not found (Node 20 or later is needed)" >&2; exit 2; }
. "$here/../vectors.sh"
# A fresh folder each run: dist/vectors keeps the dumps of renamed or removed vectors.
out=$(mktemp -d "${TMPDIR:-/tmp}/sidekill-vectors.XXXXXX")
trap 'rm -rf "$out"' EXIT
dump_vectors "$repo" "$out"

cd "$here"
node --test raw.test.mjs pkg-node.test.mjs corpus.test.mjs
