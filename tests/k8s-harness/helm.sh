#!/usr/bin/env bash
# Prints the path of helm v3 (HELM_VERSION below): $SIDEKILL_HELM when set, else
# ${XDG_CACHE_HOME:-$HOME/.cache}/sidekill/helm/HELM_VERSION/helm, building it there from its Go
# module (`go install helm.sh/helm/v3/cmd/helm@HELM_VERSION`, through the Go module proxy) only
# when it is missing. A cold build takes a few minutes (BENCHMARKS.md, "The controller image");
# a present one, nothing. Exits 1 when helm cannot be built.
set -euo pipefail
if [ -n "${SIDEKILL_HELM:-}" ]; then
  echo "$SIDEKILL_HELM"
  exit 0
fi
# The newest v3 the Go module proxy serves (helm v4 is another module path).
HELM_VERSION=v3.22.0
# The minor version of the k8s.io/client-go helm $HELM_VERSION requires (v0.37.0).
HELM_K8S_MINOR=37
dir="${XDG_CACHE_HOME:-$HOME/.cache}/sidekill/helm/$HELM_VERSION-k8s1.$HELM_K8S_MINOR"
helm="$dir/helm"
if [ ! -x "$helm" ]; then
  mkdir -p "$dir"
  echo "helm.sh: building helm $HELM_VERSION from its Go module into $dir" >&2
  # As helm's own Makefile sets them: the version helm reports, and the Kubernetes version
  # `helm template` and `helm lint` assume (client-go's v0.37 -> 1.37; unset, they say 1.20, and
  # a chart's kubeVersion >= 1.27 fails to render). -s -w: no symbol tables.
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$HELM_K8S_MINOR"
  done
  GOBIN="$dir" CGO_ENABLED=0 go install -trimpath -ldflags "$ldflags" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2 ||
    { echo "helm.sh: go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION failed" >&2; exit 1; }
fi
echo "$helm"
