#!/usr/bin/env bash
# Starts sidekill's end-to-end bed on a genuine Kubernetes API server: etcd, kube-apiserver,
# kube-controller-manager (a few controllers: namespaces, service accounts, garbage collection,
# Jobs, CronJobs) and the node agent (virtual-kubelet; containers are real processes), all from
# the one k8s-harness binary, all on 127.0.0.1. No scheduler: pods name the node in
# spec.nodeName (a Job's pod template too). See docs/k8s-harness.md.
#
#   tests/k8s-harness/start.sh            build if needed, start, wait until the node is Ready
#   tests/k8s-harness/stop.sh             stop everything start.sh started (by recorded PID)
#
# Environment (each optional):
#   K8S_HARNESS_DIR    run folder (default ${XDG_CACHE_HOME:-$HOME/.cache}/sidekill/k8s-harness/run);
#                      wiped at start: certs/, logs, kubeconfigs, pids, etcd data, node state
#   K8S_HARNESS_BIN    a prebuilt k8s-harness binary (default: build.sh builds one)
#   K8S_HARNESS_ETCD_PORT (12379; peer +1), K8S_HARNESS_APISERVER_PORT (16443),
#   K8S_HARNESS_KUBELET_PORT (20250), K8S_HARNESS_CONTROLLER_MANAGER_PORT (20257)
#   K8S_HARNESS_NODE   node name (sidekill-node)
#   SIDEKILL_STANDIN   the sidekill-standin binary (crates/testcluster) behind the images' tools;
#                      without it only the tool-less images (shell: alpine, busybox, ...) run
#   SIDEKILL_QUITTER   the sidekill-quitter binary (crates/quitter) behind images sidekill-nop:0.1.0
#                      (at every path of crates/policy/src/nop.rs's NOP_PATHS) and
#                      sidekill-quitter:0.1.0; without it those images are absent (ErrImagePull)
#   SIDEKILL_KUBECTL   a kubectl to use (default: kubectl.sh finds or installs kubectl 1.37)
#   K8S_HARNESS_OCI_IMAGES  space-separated NAME=TARBALL: OCI image tarballs the node runs as
#                      image NAME (e.g. sidekill=dist/image/sidekill-image.tar, which chart.sh
#                      needs), with a ServiceAccount token and CA as a kubelet mounts them
#                      (identity.go); sidekill-nop=dist/image/sidekill-nop-image.tar (or
#                      sidekill-quitter=...) replaces the image SIDEKILL_QUITTER makes
#
# deploy/ is applied as its README says (`kubectl apply -k deploy/`; `-f` when it has no
# kustomization.yaml). Its Deployment cannot run here (no scheduler, no such image): its pod
# stays Pending; sidekill runs on the host with sidekill.kubeconfig instead.
# Writes into the run folder: admin.kubeconfig (system:masters), sidekill.kubeconfig (the
# sidekill/sidekill ServiceAccount, token from the TokenRequest API), node.kubeconfig, env.sh
# (source it: KUBECONFIG and the paths), pids ("name pid" per line), *.log.
# Exit codes: 0 ready; 1 something failed to start (its log's tail is printed, all is stopped).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
run=${K8S_HARNESS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sidekill/k8s-harness/run}
etcd_port=${K8S_HARNESS_ETCD_PORT:-12379}
api_port=${K8S_HARNESS_APISERVER_PORT:-16443}
kubelet_port=${K8S_HARNESS_KUBELET_PORT:-20250}
cm_port=${K8S_HARNESS_CONTROLLER_MANAGER_PORT:-20257}
# No node-lifecycle (it would taint and evict on its own clock), no scheduler-facing controllers.
controllers=namespace-controller,serviceaccount-controller,garbage-collector-controller
controllers+=,job-controller,cronjob-controller,ttl-after-finished-controller
controllers+=,replicaset-controller,deployment-controller,pod-garbage-collector-controller
controllers+=,root-ca-certificate-publisher-controller,clusterrole-aggregation-controller
node=${K8S_HARNESS_NODE:-sidekill-node}
t0=$SECONDS

say() { printf 'k8s-harness: %s\n' "$*" >&2; }

# A previous run's processes go first.
if [ -f "$run/pids" ]; then
  K8S_HARNESS_DIR=$run "$here/stop.sh" || true
fi
rm -rf "$run"
mkdir -p "$run"
: >"$run/pids"

ready=0
failed() {
  local code=$?
  [ "$ready" = 1 ] && return 0
  say "start failed (exit $code); last lines of each log:"
  for f in "$run"/*.log; do
    [ -f "$f" ] || continue
    printf '\n--- %s\n' "$f" >&2
    tail -n 25 "$f" >&2
  done
  K8S_HARNESS_DIR=$run "$here/stop.sh" >&2 || true
  exit 1
}
trap failed EXIT

bin=${K8S_HARNESS_BIN:-}
if [ -z "$bin" ]; then
  say "building (a cold build takes several minutes)"
  bin=$("$here/build.sh")
fi
kubectl=$("$here/kubectl.sh")
certs=$run/certs
"$bin" certs --dir "$certs" --node-name "$node" --node-ip 127.0.0.1

# start NAME ARGS...: runs the binary in the background, output to NAME.log, PID recorded.
start() {
  local name=$1
  shift
  setsid "$bin" "$@" >"$run/$name.log" 2>&1 </dev/null &
  echo "$name $!" >>"$run/pids"
}
# wait_for WHAT SECONDS CMD...: retries CMD every 0.5 s until it succeeds.
wait_for() {
  local what=$1 limit=$2
  shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      say "$what not ready after ${limit}s"
      return 1
    fi
    sleep 0.5
  done
}
alive() { kill -0 "$(awk -v n="$1" '$1 == n {print $2}' "$run/pids")" 2>/dev/null; }
kubeconfig() { # FILE USER USER-BLOCK: a kubeconfig for the harness apiserver
  local file=$1 user=$2 block=$3
  cat >"$file" <<KC
apiVersion: v1
kind: Config
clusters:
- name: k8s-harness
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $certs/ca.crt
contexts:
- name: k8s-harness
  context: {cluster: k8s-harness, user: "$user"}
current-context: k8s-harness
users:
- name: "$user"
  user:
$block
KC
  chmod 600 "$file"
}

say "etcd on 127.0.0.1:$etcd_port"
start etcd etcd --data-dir "$run/etcd" \
  --listen-client-url "http://127.0.0.1:$etcd_port" --listen-peer-url "http://127.0.0.1:$((etcd_port + 1))"
etcd_ok() { alive etcd && curl -sf "http://127.0.0.1:$etcd_port/health" | grep -q '"health":"true"'; }
wait_for etcd 60 etcd_ok

say "kube-apiserver on https://127.0.0.1:$api_port"
start apiserver apiserver \
  --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --secure-port "$api_port" --advertise-address 127.0.0.1 \
  --endpoint-reconciler-type none \
  --tls-cert-file "$certs/apiserver.crt" --tls-private-key-file "$certs/apiserver.key" \
  --client-ca-file "$certs/ca.crt" \
  --token-auth-file "$certs/tokens.csv" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$certs/sa.pub" --service-account-signing-key-file "$certs/sa.key" \
  --authorization-mode Node,RBAC \
  --enable-admission-plugins NodeRestriction \
  --kubelet-client-certificate "$certs/apiserver-kubelet-client.crt" \
  --kubelet-client-key "$certs/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority "$certs/ca.crt" \
  --kubelet-preferred-address-types InternalIP \
  --service-cluster-ip-range 10.0.0.0/24 \
  --allow-privileged=true --profiling=false
readyz() {
  alive apiserver || return 1
  curl -sf --cacert "$certs/ca.crt" --cert "$certs/admin.crt" --key "$certs/admin.key" \
    "https://127.0.0.1:$api_port/readyz" | grep -qx ok
}
wait_for kube-apiserver 120 readyz
alive apiserver

kubeconfig "$run/admin.kubeconfig" sidekill-harness-admin \
  "    client-certificate: $certs/admin.crt
    client-key: $certs/admin.key"
kubeconfig "$run/node.kubeconfig" "system:node:$node" \
  "    client-certificate: $certs/node.crt
    client-key: $certs/node.key"
kubeconfig "$run/controller-manager.kubeconfig" system:kube-controller-manager \
  "    client-certificate: $certs/controller-manager.crt
    client-key: $certs/controller-manager.key"
k() { "$kubectl" --kubeconfig "$run/admin.kubeconfig" "$@"; }

say "kube-controller-manager (namespace, serviceaccount, garbage-collector, job, cronjob, ...)"
start controller-manager controller-manager \
  --kubeconfig "$run/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$run/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$run/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port "$cm_port" --leader-elect=false \
  --use-service-account-credentials=true \
  --root-ca-file "$certs/ca.crt" --service-account-private-key-file "$certs/sa.key" \
  --controllers "$controllers"

# What the node needs beyond the Node authorizer's rules: virtual-kubelet lists and watches
# secrets and configmaps to resolve env references.
k apply -f - >/dev/null <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "sidekill-harness:node"}
rules:
- apiGroups: [""]
  resources: [secrets, configmaps, services]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "sidekill-harness:node"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "sidekill-harness:node"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:node:$node"}
YAML
sa_ready() { alive controller-manager && k -n default get serviceaccount default; }
wait_for "kube-controller-manager (ServiceAccount default/default)" 60 sa_ready

say "node $node (kubelet API on https://127.0.0.1:$kubelet_port)"
node_args=(node --kubeconfig "$run/node.kubeconfig" --name "$node" --node-ip 127.0.0.1
  --port "$kubelet_port" --tls-cert "$certs/kubelet.crt" --tls-key "$certs/kubelet.key"
  --client-ca "$certs/ca.crt" --state-dir "$run/node" --images "$repo/tests/images")
if [ -n "${SIDEKILL_STANDIN:-}" ]; then
  node_args+=(--standin "$SIDEKILL_STANDIN")
else
  say "SIDEKILL_STANDIN is not set: images with stand-in tools will fail to start"
fi
if [ -n "${SIDEKILL_QUITTER:-}" ]; then
  node_args+=(--quitter "$SIDEKILL_QUITTER")
else
  say "SIDEKILL_QUITTER is not set: no images sidekill-nop and sidekill-quitter"
fi
for image in ${K8S_HARNESS_OCI_IMAGES:-}; do
  node_args+=(--oci-image "$image")
done
start node "${node_args[@]}"
node_ready() {
  alive node || return 1
  [ "$(k get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}
wait_for "node $node" 90 node_ready
alive node

if [ -f "$repo/deploy/ephemeral/kustomization.yaml" ]; then
  # deploy/ with the ephemeral-quitter overlay (it includes deploy/base): the executor's
  # end-to-end tests of the quitter run as sidekill with the permission an operator who
  # opts in grants; the test of the missing permission makes an identity without it.
  say "kubectl apply -k deploy/ephemeral/"
  k apply -k "$repo/deploy/ephemeral/" >"$run/deploy-apply.log"
elif [ -f "$repo/deploy/kustomization.yaml" ]; then
  say "kubectl apply -k deploy/"
  k apply -k "$repo/deploy/" >"$run/deploy-apply.log"
elif compgen -G "$repo/deploy/*.yaml" >/dev/null; then
  say "kubectl apply -f deploy/"
  k apply -f "$repo/deploy/" >"$run/deploy-apply.log"
else
  say "no deploy/: making namespace sidekill and ServiceAccount sidekill (no RBAC)"
  k create namespace sidekill --dry-run=client -o yaml | k apply -f - >/dev/null
  k -n sidekill create serviceaccount sidekill --dry-run=client -o yaml | k apply -f - >/dev/null
fi
token=$(k -n sidekill create token sidekill --duration 24h)
kubeconfig "$run/sidekill.kubeconfig" "system:serviceaccount:sidekill:sidekill" "    token: $token"

cat >"$run/env.sh" <<ENV
# Source this: the harness's kubeconfigs and paths.
export KUBECONFIG=$run/admin.kubeconfig
export K8S_HARNESS_DIR=$run
export K8S_HARNESS_ADMIN_KUBECONFIG=$run/admin.kubeconfig
export K8S_HARNESS_SIDEKILL_KUBECONFIG=$run/sidekill.kubeconfig
export K8S_HARNESS_NODE=$node
export K8S_HARNESS_KUBECTL=$kubectl
export K8S_HARNESS_STANDIN=${SIDEKILL_STANDIN:-}
export K8S_HARNESS_QUITTER=${SIDEKILL_QUITTER:-}
export K8S_HARNESS_APISERVER=https://127.0.0.1:$api_port
ENV
ready=1
trap - EXIT
say "ready in $((SECONDS - t0))s: source $run/env.sh (KUBECONFIG=$run/admin.kubeconfig); stop with $here/stop.sh"
