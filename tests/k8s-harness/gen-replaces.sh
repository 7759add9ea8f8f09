#!/usr/bin/env bash
# Pins the harness to one Kubernetes release: requires k8s.io/kubernetes@vX.Y.Z and, for every
# staging module that release's own go.mod points at ./staging (k8s.io/api, k8s.io/apiserver, ...),
# a require and a replace at the matching published v0.Y.Z. The list comes from the tag's go.mod,
# fetched through the Go module proxy (`go mod download -json`), so it never drifts from the
# release. Then `go mod tidy`.
#
# Usage: tests/k8s-harness/gen-replaces.sh [vX.Y.Z]   (default: the version go.mod requires now)
# Needs: go, jq. Writes go.mod and go.sum beside this script; commits nothing, vendors nothing.
# Exits 2 when the version cannot be read or fetched.
set -euo pipefail
cd "$(dirname "$0")"

version=${1:-$(go mod edit -json | jq -r '.Require[]? | select(.Path == "k8s.io/kubernetes") | .Version')}
if [[ ! $version =~ ^v1\.([0-9]+)\.([0-9]+)$ ]]; then
  echo "gen-replaces: want a release like v1.37.2, got '${version}'" >&2
  exit 2
fi
staging_version="v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"

gomod=$(go mod download -json "k8s.io/kubernetes@${version}" | jq -r '.GoMod // empty')
if [ -z "$gomod" ] || [ ! -f "$gomod" ]; then
  echo "gen-replaces: could not fetch the go.mod of k8s.io/kubernetes@${version}" >&2
  exit 2
fi

# The staging modules: the replace targets that are folders under ./staging.
mapfile -t staging < <(go mod edit -json "$gomod" |
  jq -r '.Replace[]? | select(.New.Path | startswith("./staging/")) | .Old.Path' | sort -u)
# Those the release requires (the sample-* ones are replaced but not required).
mapfile -t required < <(go mod edit -json "$gomod" |
  jq -r '.Require[]? | select(.Version == "v0.0.0") | .Path' | sort -u)

# Drop every earlier k8s.io staging replace, so a module that left staging leaves no stale line.
for old in $(go mod edit -json | jq -r '.Replace[]? | select(.Old.Path | startswith("k8s.io/")) | .Old.Path'); do
  go mod edit -dropreplace="$old"
done

args=(-require="k8s.io/kubernetes@${version}")
for m in "${staging[@]}"; do
  args+=(-replace="${m}=${m}@${staging_version}")
done
for m in "${required[@]}"; do
  args+=(-require="${m}@${staging_version}")
done
go mod edit "${args[@]}"
# go mod edit writes one `replace` line each: gather the k8s.io ones into one block.
awk '
  /^replace k8s\.io\// { sub(/^replace /, "\t"); block = block $0 "\n"; blank = 1; next }
  /^$/ && blank { blank = 0; next }
  { blank = 0; print }
  END { printf "\n// k8s.io staging modules at the release'"'"'s version (written by gen-replaces.sh)\nreplace (\n%s)\n", block }
' go.mod >go.mod.new && mv go.mod.new go.mod
go mod edit -fmt
echo "gen-replaces: k8s.io/kubernetes ${version}; ${#staging[@]} staging modules at ${staging_version}" >&2
go mod tidy
