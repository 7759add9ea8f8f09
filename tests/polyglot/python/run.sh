#!/usr/bin/env bash
# Runs the Python loader's tests against the raw wasm module.
#   tests/polyglot/python/run.sh [PYTEST_ARGS...]
# Env: SIDEKILL_WASM (default dist/raw/sidekill_policy.wasm), SIDEKILL_VECTORS_OUT
# (default dist/vectors; fill it with `cargo run -q -p sidekill-policy --example
# dump_vectors -- dist/vectors`). The venv lives in
# ${XDG_CACHE_HOME:-$HOME/.cache}/sidekill/venv-python and is reused between runs.
# Exit: pytest's code; 1 also when pytest collected no test (its code 5).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
venv="${XDG_CACHE_HOME:-$HOME/.cache}/sidekill/venv-python"
py="$venv/bin/python"

if [ ! -x "$py" ]; then
  rm -rf "$venv"  # a half-made venv from an interrupted run
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
fi

# Install only when a pinned package is missing or at another version.
if ! "$py" - "$here/requirements.txt" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
import pytest, wasmtime  # noqa: F401  (importable, not just listed)
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        name, pinned = line.split("==")
        if version(name) != pinned:
            sys.exit(1)
PY
then
  "$py" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
fi

cd "$here"
status=0
"$py" -m pytest -q "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "run.sh: pytest collected no test" >&2
  exit 1
fi
exit "$status"
