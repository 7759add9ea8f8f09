#!/usr/bin/env bash
# charts/sidekill on the genuine kube-apiserver: the controller the chart's Deployment runs is the
# controller image's own binary, started by the node as a kubelet would (the pod's args, the
# ServiceAccount's bound token and CA under /var/run/secrets/kubernetes.io/serviceaccount,
# KUBERNETES_SERVICE_HOST/PORT: tests/k8s-harness/identity.go), and it stops a pod's sidecar.
#   1. helm lint, and helm template of the defaults and of every value family (file and
#      ConfigMap policy, one namespace with a Role, pods/proxy, ServiceMonitor, the stop
#      methods' images and RBAC), each accepted by the apiserver (server-side dry run; the
#      ServiceMonitor's CRD is not installed: client side);
#   2. helm install (release `chart`, namespace sidekill-chart) with the image pinned by digest,
#      the embedded policy pinned by its sha256 and nodeName set (the harness has no scheduler);
#   3. the Deployment's pod runs, /readyz answers on the chart's port;
#   4. an Argo workflow pod's main container exits; its sidecar is stopped, the step recorded on
#      the pod, and the chart's pod counts the plan on its /metrics: the pod did it, as the
#      chart's ServiceAccount (no other identity is in its root);
#   5. helm uninstall: the controller's pod gets SIGTERM and exits 0 (it drains), or is gone.
# Needs a harness started with the image (K8S_HARNESS_OCI_IMAGES=sidekill=TARBALL, which run.sh
# sets from SIDEKILL_IMAGE_TAR), helm (helm.sh) and the image's digest file (beside the
# tarball). The embedded policy's sha256 is what the image's own binary says in --version.
# Prints one line per check; exit 0 when all passed, 1 otherwise.
#
#   SIDEKILL_IMAGE_TAR=dist/image/sidekill-image.tar tests/k8s-harness/chart.sh
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$here/checks.sh"
chart=$repo/charts/sidekill
tarball=${SIDEKILL_IMAGE_TAR:-$repo/dist/image/sidekill-image.tar}
release=chart rns=sidekill-chart ns=k8s-harness-chart
work=$(mktemp -d)
export KUBECONFIG=$K8S_HARNESS_ADMIN_KUBECONFIG
finish() {
  "${helm:-true}" uninstall "$release" -n "$rns" --wait --timeout 60s >/dev/null 2>&1
  k delete namespace "$ns" "$rns" batch --ignore-not-found --wait=false >/dev/null 2>&1
  rm -rf "$work"
  echo "chart: $passed passed, $failed failed"
  [ $failed = 0 ]
}
trap 'finish; exit $?' EXIT

helm=$("$here/helm.sh") || { fail "helm" "tests/k8s-harness/helm.sh could not build helm"; exit 1; }
for f in "$tarball" "${tarball%.tar}.digest"; do
  [ -e "$f" ] || { fail "prerequisites" "$f is missing (scripts/build-image)"; exit 1; }
done
digest=$(cat "${tarball%.tar}.digest")
# The image's /sidekill (static: it runs here as it is), from the layer the manifest names.
python3 - "$tarball" "$work/sidekill" <<'PY'
import gzip, io, json, os, sys, tarfile
outer = tarfile.open(sys.argv[1])
read = lambda name: outer.extractfile(name).read()
index = json.loads(read("index.json"))
manifest = json.loads(read("blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]))
for layer in manifest["layers"]:
    inner = tarfile.open(fileobj=io.BytesIO(gzip.decompress(read("blobs/sha256/" + layer["digest"].split(":")[1]))))
    if "sidekill" in inner.getnames():
        open(sys.argv[2], "wb").write(inner.extractfile("sidekill").read())
        os.chmod(sys.argv[2], 0o755)
PY
version=$("$work/sidekill" --version 2>&1)
policy_sha=$(sed -n 's/.*embedded policy sha256 \([0-9a-f]\{64\}\).*/\1/p' <<<"$version")
[ -n "$policy_sha" ] || fail "the image's sidekill --version" "no embedded policy sha256 in: $version"

# 1. lint and render. The namespaces exist for the server-side dry runs.
k create namespace "$rns" >/dev/null 2>&1
k create namespace batch >/dev/null 2>&1
if "$helm" lint --strict "$chart" >"$work/lint" 2>&1; then pass "helm lint --strict"; else fail "helm lint" "$(cat "$work/lint")"; fi
variants=(
  "defaults|"
  "policy from a file, signed with a trusted key|--set policy.source=file --set policy.file.volume.configMap.name=my-policy --set policy.sha256=$policy_sha --set policy.trustedKey.secretName=sidekill-policy-key"
  "embedded policy, one namespace (Role), selectors, pods/proxy|--set policy.source=embedded --set watch.namespace=batch --set watch.selectors={team=a,job-name} --set rbac.podsProxy=true --set concurrency=4 --set replicas=2"
  "image by digest, no probes, resources|--set image.digest=$digest --set livenessProbe.enabled=false --set readinessProbe.enabled=false --set resources.limits.memory=128Mi"
  "the ephemeral quitter from a registry, no image swap|--set stopMethods.imageSwap.enabled=false --set stopMethods.ephemeral.enabled=true --set stopMethods.ephemeral.image=registry.example/sidekill-quitter@$digest"
)
for v in "${variants[@]}"; do
  label=${v%%|*} args=${v#*|}
  # shellcheck disable=SC2086
  if "$helm" template "$release" "$chart" -n "$rns" $args >"$work/render.yaml" 2>"$work/render.err" &&
    k apply --dry-run=server -f "$work/render.yaml" >"$work/apply.out" 2>&1; then
    pass "helm template ($label): the apiserver accepts it (dry run)"
  else
    fail "helm template ($label)" "$(cat "$work/render.err" "$work/apply.out" | tail -5)"
  fi
done
if "$helm" template "$release" "$chart" -n "$rns" --set serviceMonitor.enabled=true >"$work/sm.yaml" 2>&1 &&
  grep -q '^kind: ServiceMonitor' "$work/sm.yaml" && grep -q '^kind: Service$' "$work/sm.yaml"; then
  pass "helm template (serviceMonitor.enabled): a Service and a ServiceMonitor"
else
  fail "ServiceMonitor" "$(tail -5 "$work/sm.yaml")"
fi
# The stop methods: image swap on by default (patch on pods is granted anyway), the ephemeral
# quitter only when enabled, with its RBAC rule.
stop_methods() { # stop_methods HELM_ARGS...: the rendered --nop-image, --quitter-image and rule
  "$helm" template "$release" "$chart" -n "$rns" "$@" 2>&1 |
    grep -o -e '--nop-image=.*' -e '--quitter-image=.*' -e 'resources: \[pods/ephemeralcontainers\]' | tr '\n' ' '
}
found=$(stop_methods)
if [ "$found" = "--nop-image=sidekill-nop:0.1.0 " ]; then
  pass "helm template (defaults): image swap to sidekill-nop:0.1.0, no ephemeral quitter"
else
  fail "stop methods (defaults)" "rendered: $found"
fi
found=$(stop_methods --set stopMethods.ephemeral.enabled=true --set stopMethods.imageSwap.image=registry.example/sidekill-nop:1)
if [ "$found" = "resources: [pods/ephemeralcontainers] --nop-image=registry.example/sidekill-nop:1 --quitter-image=sidekill-quitter:0.1.0 " ]; then
  pass "helm template (stopMethods.ephemeral.enabled): --quitter-image and patch on pods/ephemeralcontainers"
else
  fail "stop methods (ephemeral)" "rendered: $found"
fi
if ! "$helm" template "$release" "$chart" --set policy.source=nope >/dev/null 2>"$work/bad" &&
  grep -q "policy.source must be embedded, file or configmap" "$work/bad"; then
  pass "helm template refuses an unknown policy.source"
else
  fail "bad policy.source" "$(cat "$work/bad")"
fi

# 2. install: the image by digest, the embedded policy pinned, bound to the harness node.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
k delete namespace "$ns" --ignore-not-found --timeout=60s >/dev/null 2>&1
if "$helm" install "$release" "$chart" -n "$rns" --create-namespace \
  --set image.digest="$digest" --set policy.source=embedded --set policy.sha256="$policy_sha" \
  --set nodeName="$K8S_HARNESS_NODE" --set port="$port" --set claimSeconds=10 \
  --wait --timeout 120s >"$work/install" 2>&1; then
  pass "helm install (image sidekill@$digest, policy pinned to ${policy_sha:0:12}…): Deployment available"
else
  fail "helm install" "$(tail -5 "$work/install"; k -n "$rns" get pods -o wide; k -n "$rns" get events | tail -5)"
fi
pod=$(k -n "$rns" get pods -l app.kubernetes.io/instance=$release -o jsonpath='{.items[0].metadata.name}' 2>/dev/null)
image=$(k -n "$rns" get pod "$pod" -o jsonpath='{.spec.containers[0].image}' 2>/dev/null)
running() { [ -n "$(k -n "$rns" get pod "$pod" -o jsonpath='{.status.containerStatuses[0].state.running.startedAt}')" ]; }
if [ -n "$pod" ] && eventually 30 running; then
  pass "the chart's pod $pod runs $image"
else
  fail "controller pod" "$(k -n "$rns" get pods -o yaml | tail -30)"
fi

# 3. its endpoints, on the host network.
if eventually 30 curl -fsS "http://127.0.0.1:$port/readyz"; then
  pass "/readyz answers on :$port (its watches listed as the chart's ServiceAccount)"
else
  fail "readyz" "$(k -n "$rns" logs "$pod" --tail 20 2>&1)"
fi
if k -n "$rns" logs "$pod" 2>/dev/null | grep -q "$policy_sha\|${policy_sha:0:12}" ||
  curl -fsS "http://127.0.0.1:$port/metrics" | grep -q "sidekill_policy_info{.*sha256=\"$policy_sha\""; then
  pass "it serves the pinned embedded policy"
else
  fail "policy" "$(curl -fsS "http://127.0.0.1:$port/metrics" | grep policy_info)"
fi

# 4. an Argo workflow pod's sidecar.
k create namespace "$ns" >/dev/null
argo_step "$ns" chart-check
if eventually 60 proxy_stopped "$ns"; then
  pass "the chart's controller stopped the Argo pod's sidecar (exit $(proxy_exit "$ns"))"
else
  fail "sidecar stopped" "$(k -n "$ns" get pod step -o yaml | tail -20; k -n "$rns" logs "$pod" --tail 20)"
fi
done_list=$(proxy_record "$ns")
counted() { curl -fsS "http://127.0.0.1:$port/metrics" | grep -q 'sidekill_plans_total{outcome="done"} 1'; }
if [ "$done_list" = "[0]" ] && eventually 10 counted; then
  pass "done by the chart's pod: step recorded (done-proxy $done_list), plan counted on its /metrics"
else
  fail "record" "done-proxy=$done_list; $(curl -fsS "http://127.0.0.1:$port/metrics" | grep plans_total)"
fi

# 5. uninstall.
drained() {
  ! k -n "$rns" get pod "$pod" >/dev/null 2>&1 ||
    [ "$(k -n "$rns" get pod "$pod" -o jsonpath='{.status.containerStatuses[0].state.terminated.exitCode}')" = 0 ]
}
if "$helm" uninstall "$release" -n "$rns" --wait --timeout 60s >"$work/uninstall" 2>&1 && eventually 60 drained; then
  pass "helm uninstall: the controller's pod stopped on SIGTERM with exit 0"
else
  fail "uninstall" "$(cat "$work/uninstall"; k -n "$rns" get pods)"
fi
