#!/usr/bin/env bash
# Builds the k8s-harness binary (etcd + kube-apiserver + node agent in one) and prints its path.
# The version variables kube-apiserver reports (and derives its compatibility version from) are
# set from the k8s.io/kubernetes version go.mod pins, as upstream's hack/lib/version.sh does.
#
#   tests/k8s-harness/build.sh [OUT]   default OUT: ${XDG_CACHE_HOME:-$HOME/.cache}/sidekill/k8s-harness/bin/k8s-harness
#
# Module and build caches stay where Go keeps them (GOMODCACHE, GOCACHE: ~/go/pkg/mod and
# ~/.cache/go-build by default), outside the repository. A cold build takes several minutes
# (see docs/k8s-harness.md); a cached one, seconds.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/sidekill/k8s-harness/bin/k8s-harness}
mkdir -p "$(dirname "$out")"
cd "$here"
version=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
if [[ ! $version =~ ^v([0-9]+)\.([0-9]+)\. ]]; then
  echo "build.sh: cannot read the k8s.io/kubernetes version from go.mod (got '$version')" >&2
  exit 2
fi
major=${BASH_REMATCH[1]} minor=${BASH_REMATCH[2]}
ldflags=()
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  ldflags+=("-X '$pkg.gitVersion=$version'" "-X '$pkg.gitMajor=$major'" "-X '$pkg.gitMinor=$minor'"
    "-X '$pkg.gitTreeState=clean'" "-X '$pkg.buildDate=1970-01-01T00:00:00Z'")
done
go build -ldflags "-s -w ${ldflags[*]}" -o "$out" .
echo "$out"
