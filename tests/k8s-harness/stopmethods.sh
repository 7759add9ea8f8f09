#!/usr/bin/env bash
# Issue 13's stop methods that need nothing inside the container, on the genuine kube-apiserver
# (the ground truth for what it accepts and refuses) and the harness node (which restarts and
# runs containers as the kubelet does; docs/k8s-harness.md):
#   1. image swap: sidekill's JSON patch (a `test` op on the container's name, then `replace`
#      of its image with sidekill-nop:0.1.0), sent as the sidekill ServiceAccount, restarts the
#      running container from the nop image: it exits 0; restartCount 1, lastState.terminated
#      the old instance's end, a new containerID, status.image the nop. A PID 1 that ignores
#      SIGTERM, and one with no handler at all (the kernel drops SIGTERM to a namespace init
#      without one), end 137: SIGKILL after the grace period. A command[0] the nop image lacks
#      fails to start (StartError, 128) and, under restartPolicy Never, the pod fails.
#   2. what the apiserver refuses: a patch whose `test` op fails, a change of a container's
#      command, a change of an existing ephemeral container, a duplicate name, a target that is
#      not a container of the pod;
#   3. ephemeral quitter: sidekill's strategic-merge patch of pods/ephemeralcontainers (and
#      `kubectl debug`) adds sidekill-quitter:0.1.0 targeting the sidecar; it runs once in the
#      sidecar's PID namespace, finds it by name and signals it (a process of another
#      container is not found there); status.ephemeralContainerStatuses as the kubelet reports;
#   4. loopback: the pods' IP is 127.0.0.2 (hostIP the node's), and the apiserver refuses to
#      proxy to it (pods/proxy: "address not allowed", as for every loopback pod IP).
# Needs a running harness (env.sh in $K8S_HARNESS_DIR) started with SIDEKILL_STANDIN and
# SIDEKILL_QUITTER (run.sh sets both), and deploy/ applied (start.sh does). Prints one line per
# check; exit 0 when all passed, 1 otherwise.
#
#   tests/k8s-harness/stopmethods.sh
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/checks.sh"
ns=k8s-harness-stopmethods
nop=sidekill-nop:0.1.0
quitter=sidekill-quitter:0.1.0
work=$(mktemp -d)
finish() {
  k delete namespace "$ns" --ignore-not-found --wait=false >/dev/null 2>&1
  rm -rf "$work"
  echo "stop methods: $passed passed, $failed failed"
  [ $failed = 0 ]
}
trap 'finish; exit $?' EXIT

if [ -z "${K8S_HARNESS_STANDIN:-}" ] || [ -z "${K8S_HARNESS_QUITTER:-}" ]; then
  fail "prerequisites" "the harness was started without SIDEKILL_STANDIN or SIDEKILL_QUITTER (run.sh builds both)"
  exit 1
fi
# api METHOD PATH CONTENT-TYPE BODY: a request as the harness admin; prints the body, then
# "HTTP <code>" on a line of its own.
api() {
  curl -sS --cacert "$run/certs/ca.crt" --cert "$run/certs/admin.crt" --key "$run/certs/admin.key" \
    -X "$1" -H "Content-Type: $3" --data "$4" -w '\nHTTP %{http_code}\n' "$K8S_HARNESS_APISERVER$2"
}
jp() { k -n "$ns" get pod "$1" -o jsonpath="$2" 2>/dev/null; }
# cs POD CONTAINER PATH: a field of a container's status, e.g. cs swap main .restartCount
cs() { jp "$1" "{.status.containerStatuses[?(@.name==\"$2\")]$3}"; }
ecs() { jp "$1" "{.status.ephemeralContainerStatuses[?(@.name==\"$2\")]$3}"; }
index_of() { # POD CONTAINER: its index in spec.containers
  k -n "$ns" get pod "$1" -o jsonpath='{range .spec.containers[*]}{.name}{"\n"}{end}' | grep -nx "$2" | cut -d: -f1 | awk '{print $1 - 1}'
}
swap_patch() { # INDEX NAME IMAGE: sidekill's JSON patch (CONTRACT.md, "Image swap")
  printf '[{"op":"test","path":"/spec/containers/%s/name","value":"%s"},{"op":"replace","path":"/spec/containers/%s/image","value":"%s"}]' "$1" "$2" "$1" "$3"
}
swapped() { [ "$(cs "$1" "$2" .restartCount)" = 1 ] && [ -n "$(cs "$1" "$2" .state.terminated.reason)" ]; }
# running POD N: whether N of POD's containers run.
running() { [ "$(jp "$1" '{.status.containerStatuses[*].state.running.startedAt}' | wc -w)" = "$2" ]; }
# start_pod NAME WHAT [CONTAINER...]: applies pod NAME on the harness node (restartPolicy Never,
# a 3 s grace period) with main, sidecar and stubborn, then each CONTAINER (a YAML flow
# mapping), and checks that they all run (WHAT names them in the line). Exits when they do not:
# every later check needs the pod.
start_pod() {
  local name=$1 what=$2 extra='' c
  shift 2
  for c in "$@"; do extra+=$'\n'"  - $c"; done
  k -n "$ns" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $name}
spec:
  nodeName: $K8S_HARNESS_NODE
  restartPolicy: Never
  terminationGracePeriodSeconds: 3
  containers:
  - {name: main, image: sidekill.test/main, args: [--seconds, "3600"]}
  - {name: sidecar, image: sidekill.test/sidecar}
  - {name: stubborn, image: sidekill.test/stubborn}$extra
YAML
  if eventually 30 running "$name" $((3 + $#)); then
    pass "pod $name: $what running"
  else
    fail "pod $name" "$(jp "$name" '{.status}')"
    exit 1
  fi
}

k delete namespace "$ns" --ignore-not-found --timeout=60s >/dev/null 2>&1
k create namespace "$ns" >/dev/null
eventually 30 k -n "$ns" get serviceaccount default

# 1. The image swap. main has no signal handler (a namespace init: SIGTERM is dropped), sidecar
# exits 0 on SIGTERM, stubborn's handler ignores SIGTERM, timeout's command[0] is not in the nop.
start_pod swap "4 containers" '{name: timeout, image: alpine, command: [/usr/bin/timeout, "3600", sleep, "3600"]}'
ip=$(jp swap '{.status.podIP} {.status.podIPs[*].ip} {.status.hostIP}')
if [ "$ip" = "127.0.0.2 127.0.0.2 127.0.0.1" ]; then
  pass "podIP and podIPs 127.0.0.2, hostIP 127.0.0.1 (the node's)"
else
  fail "pod IPs" "podIP, podIPs, hostIP: '$ip'"
fi

# 2a. What the apiserver refuses, before anything changes.
i=$(index_of swap sidecar)
out=$(as_sidekill -n "$ns" patch pod swap --type=json -p "$(swap_patch "$i" not-sidecar $nop)" 2>&1)
rc=$?
if [ $rc != 0 ] && [[ $out == *"the server rejected our request due to an error in our request"* ]] &&
  [ "$(jp swap "{.spec.containers[$i].image}")" = sidekill.test/sidecar ]; then
  pass "a swap whose test op fails (container $i is not 'not-sidecar') is refused (422 Invalid); the image is unchanged"
else
  fail "failed test op" "rc $rc: $out"
fi
out=$(k -n "$ns" patch pod swap --type=json -p "[{\"op\":\"replace\",\"path\":\"/spec/containers/$i/command\",\"value\":[\"/nop\"]}]" 2>&1)
rc=$?
if [ $rc != 0 ] && [[ $out == *'Forbidden: pod updates may not change fields other than `spec.containers[*].image`'* ]]; then
  pass "changing a container's command is refused (ValidatePodUpdate: 'pod updates may not change fields other than ...image')"
else
  fail "command change" "rc $rc: $(echo "$out" | head -3)"
fi

# 1a. sidecar (SIGTERM handler, exits 0) swapped by sidekill's own identity.
old_id=$(cs swap sidecar .containerID)
out=$(as_sidekill -n "$ns" patch pod swap --type=json -p "$(swap_patch "$i" sidecar $nop)" 2>&1)
if [ "$out" = "pod/swap patched" ] && eventually 30 swapped swap sidecar; then
  got="$(cs swap sidecar .state.terminated.exitCode) $(cs swap sidecar .state.terminated.reason) last=$(cs swap sidecar .lastState.terminated.exitCode) image=$(cs swap sidecar .image)"
  new_id=$(cs swap sidecar .containerID)
  if [ "$got" = "0 Completed last=0 image=$nop" ] && [ -n "$new_id" ] && [ "$new_id" != "$old_id" ] &&
    [ "$(cs swap sidecar .lastState.terminated.containerID)" = "$old_id" ] && [ -n "$(cs swap sidecar .imageID)" ]; then
    pass "sidecar swapped to $nop by the sidekill ServiceAccount: restarted (restartCount 1, new containerID), the nop exited 0 Completed; lastState: the old instance's exit 0 (SIGTERM handler)"
  else
    fail "sidecar swap" "$got; ids old $old_id new $new_id last $(cs swap sidecar .lastState.terminated.containerID)"
  fi
else
  fail "sidecar swap" "$out; $(cs swap sidecar '')"
fi
killing() { k -n "$ns" get events --field-selector involvedObject.name=swap,reason=Killing -o jsonpath='{.items[*].message}' | grep -q "Container $1 definition changed, will be restarted"; }
if eventually 30 killing sidecar; then
  pass "event Killing: 'Container sidecar definition changed, will be restarted' (the kubelet's message)"
else
  fail "event Killing" "$(k -n "$ns" get events --field-selector involvedObject.name=swap 2>&1 | tail -3)"
fi

# 1b. stubborn (ignores SIGTERM) and main (no handler: the kernel drops SIGTERM sent to a
# namespace init from outside): only the SIGKILL at the end of the grace period stops them.
for c in stubborn main; do
  t=$SECONDS
  as_sidekill -n "$ns" patch pod swap --type=json -p "$(swap_patch "$(index_of swap $c)" $c $nop)" >/dev/null
  if eventually 30 swapped swap $c; then
    got="last=$(cs swap $c .lastState.terminated.exitCode) $(cs swap $c .state.terminated.exitCode) $(cs swap $c .state.terminated.reason)"
    if [ "$got" = "last=137 0 Completed" ]; then
      pass "$c swapped: SIGTERM did not stop it, SIGKILL after the 3 s grace did (lastState 137; took $((SECONDS - t)) s), then the nop exited 0"
    else
      fail "$c swap" "$got"
    fi
  else
    fail "$c swap" "$(cs swap $c '')"
  fi
done

# 1c. timeout's command[0], /usr/bin/timeout, is not in the nop image: containerd's StartError.
as_sidekill -n "$ns" patch pod swap --type=json -p "$(swap_patch "$(index_of swap timeout)" timeout $nop)" >/dev/null
if eventually 30 swapped swap timeout; then
  got="$(cs swap timeout .state.terminated.exitCode) $(cs swap timeout .state.terminated.reason)"
  msg=$(cs swap timeout .state.terminated.message)
  if [ "$got" = "128 StartError" ] && [[ $msg == *'stat /usr/bin/timeout: no such file or directory'* ]]; then
    pass "timeout swapped: its command /usr/bin/timeout is not in the nop image: StartError, exit code 128, containerd's message"
  else
    fail "StartError" "$got: $msg"
  fi
else
  fail "StartError" "$(cs swap timeout '')"
fi
failed_phase() { [ "$(jp swap '{.status.phase}')" = Failed ]; }
if eventually 30 failed_phase && [ "$(jp swap '{.status.containerStatuses[*].restartCount}')" = "1 1 1 1" ]; then
  pass "restartPolicy Never: each container restarted once (for its new image) and not again; the StartError fails the pod (phase Failed)"
else
  fail "phase" "$(jp swap '{.status.phase} {.status.containerStatuses[*].restartCount}')"
fi

# 3. The ephemeral quitter.
start_pod eph "main, sidecar and stubborn"
ended() { [ -n "$(ecs eph "$1" .state.terminated.reason)" ]; }

# kubectl debug: the quitter looks for `main` in the sidecar's PID namespace, where it is not.
out=$(k -n "$ns" debug eph --image=$quitter --target=sidecar --container=find-main -- /sidekill-quitter signal TERM --process main 2>&1)
if eventually 30 ended find-main; then
  logs=$(k -n "$ns" logs eph -c find-main 2>&1)
  if [ "$(ecs eph find-main .state.terminated.exitCode)" = 1 ] && [[ $logs == *'no process named `main`'* ]] &&
    [ -n "$(cs eph main .state.running.startedAt)" ]; then
    pass "kubectl debug --target=sidecar: the quitter runs in the sidecar's PID namespace, where main is not ('$logs', exit 1)"
  else
    fail "kubectl debug" "exit $(ecs eph find-main .state.terminated.exitCode): $logs"
  fi
else
  fail "kubectl debug" "$out; $(ecs eph find-main '')"
fi

# sidekill's own request (CONTRACT.md, "Ephemeral quitter"): a strategic-merge patch of
# pods/ephemeralcontainers. As the sidekill ServiceAccount when deploy/ grants it, else as the
# admin (the request is the same).
who=admin
if as_sidekill auth can-i patch pods --subresource=ephemeralcontainers -n "$ns" >/dev/null 2>&1; then who=sidekill; fi
quit() { # TARGET PROCESS: sidekill's ephemeral quitter sending SIGTERM to PROCESS, beside TARGET
  local body='{"spec":{"ephemeralContainers":[{"name":"sidekill-quit-'$1'-1","image":"'$quitter'","command":["/sidekill-quitter","signal","TERM","--process","'$2'"],"targetContainerName":"'$1'"}]}}'
  if [ $who = sidekill ]; then
    curl -sS --cacert "$run/certs/ca.crt" -H "Authorization: Bearer $(awk '/token:/ {print $2}' "$K8S_HARNESS_SIDEKILL_KUBECONFIG")" \
      -X PATCH -H 'Content-Type: application/strategic-merge-patch+json' --data "$body" -w '\nHTTP %{http_code}\n' \
      "$K8S_HARNESS_APISERVER/api/v1/namespaces/$ns/pods/eph/ephemeralcontainers"
  else
    api PATCH "/api/v1/namespaces/$ns/pods/eph/ephemeralcontainers" application/strategic-merge-patch+json "$body"
  fi
}
# The stubborn sidecar's SIGTERM handler ignores the signal, so it survives the quitter, and
# the quitter's own end is certain.
q=sidekill-quit-stubborn-1
out=$(quit stubborn stubborn)
if [[ $out == *"HTTP 200"* ]] && eventually 30 ended $q; then
  got="$(ecs eph $q .state.terminated.exitCode) $(ecs eph $q .state.terminated.reason) ready=$(ecs eph $q .ready) restarts=$(ecs eph $q .restartCount) image=$(ecs eph $q .image)"
  logs=$(k -n "$ns" logs eph -c $q 2>&1)
  if [ "$got" = "0 Completed ready=false restarts=0 image=$quitter" ] && [ -n "$(ecs eph $q .imageID)" ] &&
    [ -n "$(ecs eph $q .containerID)" ] && [ "$logs" = 'sent signal 15 to `stubborn` (pid 1)' ]; then
    pass "PATCH pods/ephemeralcontainers (as $who): $q ran once, '$logs', ended 0 Completed (ready false, restartCount 0, image, imageID, containerID)"
  else
    fail "ephemeral quitter" "$got: $logs"
  fi
  got_signal() { k -n "$ns" logs eph -c stubborn | grep -q 'stubborn: got signal 15, ignoring it'; }
  if eventually 10 got_signal && [ -n "$(cs eph stubborn .state.running.startedAt)" ]; then
    pass "stubborn (PID 1 of its namespace, with a handler) got the quitter's SIGTERM from inside, ignored it, and runs on"
  else
    fail "stubborn after the quitter" "$(k -n "$ns" logs eph -c stubborn 2>&1 | tail -2); $(cs eph stubborn .state)"
  fi
else
  fail "ephemeral quitter" "$(echo "$out" | tail -3); $(ecs eph $q '')"
fi
# The sidecar exits 0 on SIGTERM. Its PID 1 ending tears its PID namespace down, and the kernel
# SIGKILLs what is left in it: the quitter too, when it has not exited yet (a race on a real
# node as well), so the quitter's own end is 0 or 137; the sidecar's is the result.
q=sidekill-quit-sidecar-1
out=$(quit sidecar sidecar)
sidecar_done() { [ -n "$(cs eph sidecar .state.terminated.reason)" ]; }
if [[ $out == *"HTTP 200"* ]] && eventually 30 sidecar_done && eventually 30 ended $q; then
  got="$(cs eph sidecar .state.terminated.exitCode) restarts=$(cs eph sidecar .restartCount) quitter=$(ecs eph $q .state.terminated.exitCode)"
  if [[ $got =~ ^0\ restarts=0\ quitter=(0|137)$ ]] && [ -n "$(cs eph main .state.running.startedAt)" ]; then
    pass "the sidecar (PID 1 with a SIGTERM handler) took the quitter's SIGTERM and exited 0, not restarted (Never); main runs on; the quitter ended ${BASH_REMATCH[1]}"
  else
    fail "sidecar after the quitter" "$got"
  fi
else
  fail "sidecar after the quitter" "$(echo "$out" | tail -3); $(cs eph sidecar '')"
fi

# 2b. What the ephemeralcontainers subresource refuses (ValidatePodEphemeralContainersUpdate).
refused() { # WHAT BODY EXPECTED
  local out
  out=$(api PATCH "/api/v1/namespaces/$ns/pods/eph/ephemeralcontainers" application/strategic-merge-patch+json "$2")
  if [[ $out == *"HTTP 422"* ]] && [[ $out == *"$3"* ]]; then
    pass "refused (422): $1: '$3'"
  else
    fail "refusal: $1" "$(echo "$out" | grep -m1 '"message"'; echo "$out" | tail -1)"
  fi
}
refused "changing an existing ephemeral container" \
  '{"spec":{"ephemeralContainers":[{"name":"find-main","image":"'$nop'","targetContainerName":"sidecar"}]}}' \
  'existing ephemeral containers \"find-main\" may not be changed'
refused "an ephemeral container named like a container" \
  '{"spec":{"ephemeralContainers":[{"name":"main","image":"'$quitter'"}]}}' \
  'Duplicate value: \"main\"'
refused "a target that is not a container of the pod" \
  '{"spec":{"ephemeralContainers":[{"name":"q9","image":"'$quitter'","targetContainerName":"nope"}]}}' \
  'targetContainerName: Not found: \"nope\"'

# 4. pods/proxy: the apiserver proxies only to a global unicast pod IP (pkg/registry/core/pod
# ResourceLocation), so it refuses 127.0.0.2 before connecting.
out=$(k get --raw "/api/v1/namespaces/$ns/pods/eph:15020/proxy/quitquitquit" 2>&1)
if [[ $out == *"address not allowed"* ]]; then
  pass "pods/proxy to the pod (IP 127.0.0.2) is refused by the apiserver: '$out'"
else
  fail "pods/proxy" "$out"
fi

k -n "$ns" delete pod swap eph --wait=true --timeout=30s >/dev/null
if ! k -n "$ns" get pods -o name | grep -q .; then pass "pods deleted"; else fail "delete" "$(k -n "$ns" get pods 2>&1)"; fi
