# Shared by the harness's check scripts (source it): the running harness's environment, the
# kubectl shorthands, one line per check with counters, and a retry loop.

# The running harness: the env.sh start.sh wrote in $K8S_HARNESS_DIR (default the cache's run
# folder). Sourcing it again after a script has (smoke.sh, to see whether one runs) is harmless:
# it only exports.
run=${K8S_HARNESS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sidekill/k8s-harness/run}
. "$run/env.sh"
k() { "$K8S_HARNESS_KUBECTL" "$@"; }
# as_sidekill ARGS...: kubectl as sidekill's own ServiceAccount (sidekill.kubeconfig).
as_sidekill() { "$K8S_HARNESS_KUBECTL" --kubeconfig "$K8S_HARNESS_SIDEKILL_KUBECONFIG" "$@"; }
passed=0 failed=0 skipped=0
pass() { passed=$((passed + 1)); printf 'ok    %s\n' "$1"; }
fail() { failed=$((failed + 1)); printf 'FAIL  %s: %s\n' "$1" "$2"; }
# eventually SECONDS CMD...: retries CMD every 0.25 s until it succeeds.
eventually() {
  local limit=$1
  shift
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.25
  done
}

# argo_step NAMESPACE WORKFLOW: an Argo workflow step pod `step` on the harness node whose main
# container exits after 2 s and whose `proxy` sidecar runs until SIGTERM (then exits 0).
argo_step() {
  k -n "$1" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: step
  labels: {workflows.argoproj.io/workflow: $2}
spec:
  nodeName: $K8S_HARNESS_NODE
  restartPolicy: Never
  terminationGracePeriodSeconds: 5
  containers:
  - {name: main, image: sidekill.test/main, args: [--seconds, "2"]}
  - {name: proxy, image: alpine, command: [sh, -c, "trap 'exit 0' TERM; echo running; while true; do sleep 0.1; done"]}
YAML
}
# proxy_exit NAMESPACE: the exit code of pod step's `proxy` once it has terminated, else empty.
proxy_exit() { k -n "$1" get pod step -o jsonpath='{.status.containerStatuses[?(@.name=="proxy")].state.terminated.exitCode}'; }
# proxy_stopped NAMESPACE: whether it has terminated.
proxy_stopped() { [ -n "$(proxy_exit "$1")" ]; }
# The steps recorded on the step pod's proxy as their indices ("[0]"): the record's entries are
# "<index>:<id>" (host/src/exec/records.rs).
proxy_record() {
  k -n "$1" get pod step -o jsonpath='{.metadata.annotations.sidekill\.dev/done-proxy}' |
    python3 -c 'import json, sys
t = sys.stdin.read()
print("[" + ",".join(str(e).split(":")[0] for e in json.loads(t)) + "]" if t else "")'
}
