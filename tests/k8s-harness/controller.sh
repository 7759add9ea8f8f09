#!/usr/bin/env bash
# `sidekill controller` against the genuine kube-apiserver, as sidekill's own ServiceAccount
# with exactly deploy/'s RBAC, its policy hot-swapped from a ConfigMap:
#   1. the admin publishes module A (dist/raw/sidekill_policy.wasm) with `sidekill policy push`;
#   2. the controller starts with the built-in policy and swaps to A from the ConfigMap;
#   3. an Argo pod's main container exits; the controller stops its sidecar (SIGTERM by exec);
#   4. the admin pushes B (A with a custom section: same code, another sha256): the controller
#      swaps to B; `sidekill policy rollback` brings A back, and the controller follows.
# Needs a running harness (env.sh in $K8S_HARNESS_DIR), the sidekill binary ($SIDEKILL_BIN,
# default next to $SIDEKILL_STANDIN) and dist/raw/sidekill_policy.wasm (scripts/build-wasm raw).
# Prints one line per check; exit 0 when all passed, 1 otherwise.
#
#   tests/k8s-harness/controller.sh
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
. "$here/checks.sh"
sidekill=${SIDEKILL_BIN:-$(dirname "${SIDEKILL_STANDIN:-$K8S_HARNESS_STANDIN}")/sidekill}
module_a=$repo/dist/raw/sidekill_policy.wasm
ns=k8s-harness-controller
work=$(mktemp -d)
controller_pid=
finish() {
  [ -n "$controller_pid" ] && kill "$controller_pid" 2>/dev/null && wait "$controller_pid" 2>/dev/null
  k delete namespace "$ns" --ignore-not-found --wait=false >/dev/null 2>&1
  k -n sidekill delete configmap sidekill-policy --ignore-not-found >/dev/null 2>&1
  rm -rf "$work"
  echo "controller: $passed passed, $failed failed"
  [ $failed = 0 ]
}
trap 'finish; exit $?' EXIT

for f in "$sidekill" "$module_a"; do
  [ -e "$f" ] || { fail "prerequisites" "$f is missing (cargo build -p sidekill; scripts/build-wasm raw)"; exit 1; }
done
sha() { sha256sum "$1" | cut -d' ' -f1; }
# B: A plus a custom section (id 0, name "sidekill-test", payload "b"): same code, new sha256.
python3 - "$module_a" "$work/b.wasm" <<'EOF'
import sys
a = open(sys.argv[1], "rb").read()
name = b"sidekill-test"
payload = bytes([len(name)]) + name + b"b"
open(sys.argv[2], "wb").write(a + bytes([0, len(payload)]) + payload)
EOF
sha_a=$(sha "$module_a") sha_b=$(sha "$work/b.wasm")
# Modules go live only signed by a key the controller trusts (--trusted-key): the admin's
# key pair, both modules signed with it; the signatures travel in the ConfigMap (KEY.sig).
cp "$module_a" "$work/a.wasm"
if "$sidekill" policy keygen --out "$work/team" >/dev/null 2>&1 &&
  "$sidekill" policy sign "$work/a.wasm" --key "$work/team.key" >/dev/null 2>&1 &&
  "$sidekill" policy sign "$work/b.wasm" --key "$work/team.key" >/dev/null 2>&1; then
  pass "admin key pair made and both modules signed"
else
  fail "sign" "$("$sidekill" policy sign "$work/a.wasm" --key "$work/team.key" 2>&1)"
fi

k -n sidekill delete configmap sidekill-policy --ignore-not-found >/dev/null 2>&1
k delete namespace "$ns" --ignore-not-found --timeout=60s >/dev/null 2>&1
k create namespace "$ns" >/dev/null
if "$sidekill" policy push "$work/a.wasm" --configmap sidekill/sidekill-policy \
  --kubeconfig "$K8S_HARNESS_ADMIN_KUBECONFIG" --format json >"$work/push.json" 2>&1; then
  pass "admin pushes module A to ConfigMap sidekill/sidekill-policy"
else
  fail "push A" "$(cat "$work/push.json")"
fi

# The controller, as the sidekill ServiceAccount.
"$sidekill" controller --kubeconfig "$K8S_HARNESS_SIDEKILL_KUBECONFIG" --namespace "$ns" \
  --policy-configmap sidekill/sidekill-policy --trusted-key "$work/team.pub" \
  --listen 127.0.0.1:0 --identity harness --events all \
  --claim-seconds 10 >"$work/url" 2>"$work/controller.log" &
controller_pid=$!
eventually 20 grep -q http "$work/url" || fail "controller starts" "$(cat "$work/controller.log")"
url=$(head -1 "$work/url")
metrics() { curl -fsS "${url}metrics"; }
live_is() { metrics | grep -q "sidekill_policy_info{.*sha256=\"$1\""; }

if eventually 30 curl -fsS "${url}readyz"; then pass "controller ready (its pod watch listed as the ServiceAccount)"; else fail "readyz" "$(tail -5 "$work/controller.log")"; fi
if eventually 30 live_is "$sha_a"; then pass "controller swapped to A from the ConfigMap"; else fail "swap to A" "$(metrics | grep policy_info; tail -5 "$work/controller.log")"; fi

argo_step "$ns" wf
if eventually 60 proxy_stopped "$ns"; then pass "the controller stopped the sidecar after main exited (exit $(proxy_exit "$ns"))"; else fail "sidecar stopped" "$(k -n "$ns" get pod step -o yaml | tail -30; tail -10 "$work/controller.log")"; fi
done_list=$(proxy_record "$ns")
if [ "$done_list" = "[0]" ]; then pass "step recorded on the pod ($done_list)"; else fail "record" "sidekill.dev/done-proxy=$done_list"; fi
if eventually 10 sh -c "k() { \"$K8S_HARNESS_KUBECTL\" \"\$@\"; }; k -n $ns get events --field-selector reason=SidecarStopped -o name | grep -q ."; then pass "SidecarStopped Event recorded"; else fail "event" "$(k -n "$ns" get events 2>&1 | tail -5)"; fi
if eventually 10 sh -c "curl -fsS ${url}metrics | grep -q 'sidekill_plans_total{outcome=\"done\"} 1'"; then pass "metrics count the plan"; else fail "metrics" "$(metrics | grep plans_total)"; fi

if "$sidekill" policy push "$work/b.wasm" --configmap sidekill/sidekill-policy \
  --kubeconfig "$K8S_HARNESS_ADMIN_KUBECONFIG" --format json >"$work/push.json" 2>&1 &&
  eventually 30 live_is "$sha_b"; then
  pass "push B: the controller swapped to B"
else
  fail "swap to B" "$(cat "$work/push.json"; metrics | grep policy_info)"
fi
if "$sidekill" policy rollback --configmap sidekill/sidekill-policy \
  --kubeconfig "$K8S_HARNESS_ADMIN_KUBECONFIG" --format json >"$work/rollback.json" 2>&1 &&
  eventually 30 live_is "$sha_a"; then
  pass "policy rollback: the controller is back on A"
else
  fail "rollback" "$(cat "$work/rollback.json"; metrics | grep policy_info)"
fi
if metrics | grep -qx 'sidekill_policy_switches_total 3' && [ "$(grep -c 'policy switch' "$work/controller.log")" = 3 ]; then
  pass "three switches (A, B, A), counted and logged"
else
  fail "switches" "$(metrics | grep switches; grep -i switch "$work/controller.log" | tail -3)"
fi
