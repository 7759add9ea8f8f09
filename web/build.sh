#!/usr/bin/env bash
# Assembles the debugger page for a static host: dist/web/ = the page's sources (web/*.html,
# *.js, *.css, examples/) plus its policy module (dist/page/sidekill_policy.wasm: the raw
# module with the optional `sidekill_documents` export) as dist/web/sidekill_policy.wasm.
# `sidekill web` needs none of this: the binary embeds the same files at build time. Any static
# server that sends .wasm as application/wasm serves this folder as well (others work too, a
# little slower).
#
# Usage: web/build.sh [--out DIR] [--module FILE]
#   --out DIR      where to assemble (default: <repo>/dist/web); emptied first
#   --module FILE  the page's module (default: <repo>/dist/page/sidekill_policy.wasm)
# Builds the module with scripts/build-wasm page when it is missing.
# Exit codes: 0 built, 2 bad arguments, else the failing command's.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
out=$repo/dist/web
module=$repo/dist/page/sidekill_policy.wasm
while (($#)); do
  case $1 in
    --out) [[ $# -ge 2 ]] || { echo "build.sh: --out needs a folder" >&2; exit 2; }; out=$2; shift 2 ;;
    --module) [[ $# -ge 2 ]] || { echo "build.sh: --module needs a file" >&2; exit 2; }; module=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -e/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

if [[ ! -f $module ]]; then
  if [[ $module == "$repo/dist/page/sidekill_policy.wasm" ]]; then
    echo "build.sh: $module is missing; building it with scripts/build-wasm page" >&2
    "$repo/scripts/build-wasm" page
  else
    echo "build.sh: no module at $module" >&2
    exit 2
  fi
fi

rm -rf "$out"
mkdir -p "$out/examples"
cp "$here"/index.html "$here"/*.js "$here"/*.css "$out/"
cp "$here"/examples/*.yaml "$here"/examples/index.json "$out/examples/"
cp "$module" "$out/sidekill_policy.wasm"
bytes=$(find "$out" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
echo "build.sh: $out ($(find "$out" -type f | wc -l) files, $bytes bytes)"
