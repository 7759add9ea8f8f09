#!/usr/bin/env bash
# deploy/base/admission.yaml on the genuine kube-apiserver, which enforces ValidatingAdmission-
# Policies itself: requests made with sidekill's own ServiceAccount token (sidekill.kubeconfig)
# that RBAC allows but the policy forbids are refused, and the ones sidekill needs pass.
#   - annotating a pod under sidekill.dev/ passes; any other annotation, a label, or an image
#     other than the nop image is refused;
#   - exec into a pod of kube-system is refused, exec into a workload namespace passes.
# Needs a running harness (env.sh in $K8S_HARNESS_DIR) with deploy/ applied (start.sh does).
# Prints one line per check; exit 0 when all passed, 1 otherwise.
#
#   tests/k8s-harness/admission.sh
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/checks.sh"
ns=k8s-harness-admission
probe=sidekill-admission-probe
finish() {
  k delete namespace "$ns" --ignore-not-found --wait=false >/dev/null 2>&1
  k -n kube-system delete pod "$probe" --ignore-not-found --wait=false >/dev/null 2>&1
  echo "admission: $passed passed, $failed failed"
  [ $failed = 0 ]
}
trap 'finish; exit $?' EXIT

pod() { # NAMESPACE NAME: a pod with two long-running containers on the harness node
  k -n "$1" apply -f - >/dev/null <<POD
apiVersion: v1
kind: Pod
metadata: {name: $2}
spec:
  nodeName: $K8S_HARNESS_NODE
  restartPolicy: Never
  containers:
  - {name: main, image: alpine, command: [sh, -c, "while true; do sleep 0.2; done"]}
  - {name: proxy, image: alpine, command: [sh, -c, "while true; do sleep 0.2; done"]}
POD
}
running() { [ "$(k -n "$1" get pod "$2" -o jsonpath='{.status.phase}')" = Running ]; }
k create namespace "$ns" >/dev/null
pod "$ns" step
pod kube-system "$probe"
eventually 60 running "$ns" step || fail "pod running" "$(k -n "$ns" get pod step -o yaml | tail -20)"
eventually 60 running kube-system "$probe" || fail "probe pod running" "not running"

refused() { # NAME CMD...: the request is refused, by the admission policy
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then
    fail "$name" "allowed: $out"
  elif grep -q "sidekill-limits" <<<"$out"; then
    pass "$name (refused: $(grep -o 'sidekill may[^"]*' <<<"$out" | head -1))"
  else
    fail "$name" "refused, but not by the policy: $out"
  fi
}
allowed() { # NAME CMD...
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "$out"; fi
}

# The API server loads a new policy within seconds: wait until a forbidden request is refused.
live() { ! as_sidekill -n "$ns" label pod step probe=1 >/dev/null 2>&1; }
if eventually 30 live; then pass "the policy is enforced for sidekill's token"; else fail "policy live" "a label patch was allowed"; fi

allowed "a sidekill.dev/ annotation" \
  as_sidekill -n "$ns" patch pod step --type merge -p '{"metadata":{"annotations":{"sidekill.dev/done-proxy":"[0]"}}}'
refused "another annotation" \
  as_sidekill -n "$ns" patch pod step --type merge -p '{"metadata":{"annotations":{"example.com/x":"y"}}}'
refused "a label" \
  as_sidekill -n "$ns" patch pod step --type merge -p '{"metadata":{"labels":{"x":"y"}}}'
refused "an image other than the nop" \
  as_sidekill -n "$ns" patch pod step --type json -p '[{"op":"replace","path":"/spec/containers/1/image","value":"evil:latest"}]'
allowed "the image swap to the nop" \
  as_sidekill -n "$ns" patch pod step --type json -p '[{"op":"replace","path":"/spec/containers/1/image","value":"sidekill-nop:0.1.0"}]'
allowed "exec into a workload pod" as_sidekill -n "$ns" exec step -c main -- true
refused "exec into kube-system" as_sidekill -n kube-system exec "$probe" -c main -- true
allowed "the admin is not bound by it" k -n "$ns" label pod step admin=1

# The fenced record write (host/src/exec/records.rs): a JSON patch that tests the pod's UID and
# the claim it saw, then adds the record, passes the policy; once the claim has changed, the API
# server refuses it (422), whatever else changed on the pod meanwhile.
uid=$(k -n "$ns" get pod step -o jsonpath='{.metadata.uid}')
claim='{"holder":"h","until":1}'
k -n "$ns" annotate pod step --overwrite "sidekill.dev/claim=$claim" >/dev/null
record='[{"op":"test","path":"/metadata/uid","value":"'"$uid"'"},{"op":"test","path":"/metadata/annotations/sidekill.dev~1claim","value":"{\"holder\":\"h\",\"until\":1}"},{"op":"add","path":"/metadata/annotations/sidekill.dev~1done-proxy","value":"[\"0:00000000\"]"}]'
k -n "$ns" label pod step --overwrite unrelated=change >/dev/null
allowed "a record fenced by the claim it saw" as_sidekill -n "$ns" patch pod step --type json -p "$record"
k -n "$ns" annotate pod step --overwrite 'sidekill.dev/claim={"holder":"other","until":1}' >/dev/null
if out=$(as_sidekill -n "$ns" patch pod step --type json -p "$record" 2>&1); then
  fail "a record once the claim changed" "allowed: $out"
elif grep -qi "test failed\|is invalid" <<<"$out"; then
  pass "a record once the claim changed is refused (422): $(head -c 120 <<<"$out")"
else
  fail "a record once the claim changed" "$out"
fi

# deploy/namespaced/: the ClusterRole bound in team-a only, the controller watching team-a.
rendered=$(k kustomize "$here/../../deploy/namespaced" 2>&1)
if grep -q "^kind: RoleBinding" <<<"$rendered" && ! grep -q "^kind: ClusterRoleBinding" <<<"$rendered" &&
  grep -q -- "--namespace=team-a" <<<"$rendered"; then
  pass "deploy/namespaced renders a RoleBinding, no ClusterRoleBinding, and --namespace=team-a"
else
  fail "deploy/namespaced" "$rendered"
fi
k create namespace team-a >/dev/null 2>&1
allowed "deploy/namespaced passes the API server's validation (server dry run)" \
  k apply --dry-run=server -k "$here/../../deploy/namespaced"
k delete namespace team-a --wait=false >/dev/null 2>&1
