#!/usr/bin/env bash
# The raw policy module is reproducible: built twice from the same sources, each time in a
# fresh cargo target folder, it comes out byte for byte the same, before and after wasm-opt.
# Slow (two full builds of the module and its dependencies); CI runs it.
#
# Usage: tests/reproducible-wasm.sh      Exit codes: 0 identical, 1 they differ, 2 a build failed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for run in 1 2; do
  echo "reproducible-wasm: build $run of 2 in $work/target-$run" >&2
  CARGO_TARGET_DIR="$work/target-$run" "$root/scripts/build-wasm" --out-root "$work/out-$run" raw || exit 2
done

status=0
for what in "target-%s/wasm32-unknown-unknown/wasm/sidekill_policy_wasm.wasm" "out-%s/dist/raw/sidekill_policy.wasm"; do
  # shellcheck disable=SC2059 # the path is the format
  first=$(printf "$what" 1) second=$(printf "$what" 2)
  sums=$(cd "$work" && sha256sum "$first" "$second")
  echo "$sums"
  if [[ $(cut -d' ' -f1 <<<"$sums" | sort -u | wc -l) != 1 ]]; then
    echo "reproducible-wasm: $first and $second differ" >&2
    status=1
  fi
done
if ((status == 0)); then
  echo "reproducible-wasm: 1 passed, 0 failed"
else
  echo "reproducible-wasm: 0 passed, 1 failed"
fi
exit $status
