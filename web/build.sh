#!/usr/bin/env bash
# Assembles the debugger page for a static host: dist/web/ = the page's sources (web/*.html,
# *.js, *.css, examples/) plus the wasm-pack web build (dist/pkg-web) as dist/web/pkg/.
# `sidekill web` embeds and serves this folder; any static server that sends .wasm as
# application/wasm serves it as well (others work too, a little slower).
#
# Usage: web/build.sh [--out DIR] [--pkg DIR]
#   --out DIR   where to assemble (default: <repo>/dist/web); emptied first
#   --pkg DIR   the wasm-pack --target web package (default: <repo>/dist/pkg-web)
# Environment: SIDEKILL_PKG_WEB, the same as --pkg.
# Builds the package with scripts/build-wasm pkg-web when it is missing.
# Exit codes: 0 built, 2 bad arguments, else the failing command's.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
out=$repo/dist/web
pkg=${SIDEKILL_PKG_WEB:-$repo/dist/pkg-web}
while (($#)); do
  case $1 in
    --out) [[ $# -ge 2 ]] || { echo "build.sh: --out needs a folder" >&2; exit 2; }; out=$2; shift 2 ;;
    --pkg) [[ $# -ge 2 ]] || { echo "build.sh: --pkg needs a folder" >&2; exit 2; }; pkg=$2; shift 2 ;;
    -h | --help) sed -n '2,/^set -e/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

if [[ ! -f $pkg/sidekill_policy.js || ! -f $pkg/sidekill_policy_bg.wasm ]]; then
  if [[ $pkg == "$repo/dist/pkg-web" ]]; then
    echo "build.sh: $pkg is missing; building it with scripts/build-wasm pkg-web" >&2
    "$repo/scripts/build-wasm" pkg-web
  else
    echo "build.sh: $pkg has no sidekill_policy.js and sidekill_policy_bg.wasm" >&2
    exit 2
  fi
fi

rm -rf "$out"
mkdir -p "$out/pkg" "$out/examples"
cp "$here"/index.html "$here"/*.js "$here"/*.css "$out/"
cp "$here"/examples/*.yaml "$here"/examples/index.json "$out/examples/"
cp "$pkg"/sidekill_policy.js "$pkg"/sidekill_policy_bg.wasm "$out/pkg/"
bytes=$(find "$out" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
echo "build.sh: $out ($(find "$out" -type f | wc -l) files, $bytes bytes)"
