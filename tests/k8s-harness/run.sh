#!/usr/bin/env bash
# One-shot for CI: builds the harness, starts it in a fresh run folder, runs smoke.sh, then the
# executor's end-to-end tests against the genuine kube-apiserver as sidekill's own
# ServiceAccount with exactly deploy/'s RBAC (`cargo test -p sidekill --test it -- executor::`
# with SIDEKILL_E2E=1; executor::rbac takes one permission of deploy/base/rbac.yaml away at a
# time), then controller.sh (`sidekill controller` as that ServiceAccount, hot-swapping its
# policy from a ConfigMap pushed and rolled back by the admin), admission.sh (deploy/'s
# ValidatingAdmissionPolicy refusing sidekill's token what it never needs), stopmethods.sh (issue
# 13's image swap to the nop image and ephemeral quitter, on the genuine apiserver), then chart.sh (charts/sidekill
# installed with helm; its Deployment runs the controller image's binary on the node, as the
# chart's ServiceAccount) when SIDEKILL_IMAGE_TAR names the image (scripts/build-image), and
# stops the harness, also when a step fails or the script is interrupted.
#
#   tests/k8s-harness/run.sh
#
# SIDEKILL_STANDIN names the stand-in binary behind the images' tools; without it, run.sh
# builds crates/testcluster's (the executor's tests need the stand-in images). SIDEKILL_QUITTER
# names the sidekill-quitter binary behind images sidekill-nop:0.1.0 and sidekill-quitter:0.1.0;
# without it, run.sh builds crates/quitter's. SIDEKILL_NOP_IMAGE_TAR and SIDEKILL_QUITTER_IMAGE_TAR
# (scripts/build-image --nop / --quitter) make the node run those OCI images instead. Cargo
# builds reuse $CARGO_TARGET_DIR. Exit code: 0 all passed, 1 a check or a test failed, 2 the harness
# (or what it needs) could not be built or started.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export K8S_HARNESS_DIR=${K8S_HARNESS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sidekill/k8s-harness/run}
say() { printf 'k8s-harness: %s\n' "$*" >&2; }

t0=$SECONDS
K8S_HARNESS_BIN=$("$here/build.sh") || exit 2
say "built in $((SECONDS - t0))s"
export K8S_HARNESS_BIN
target_dir() {
  (cd "$repo" && cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
}
if [ -z "${SIDEKILL_STANDIN:-}" ]; then
  say "SIDEKILL_STANDIN is not set: building crates/testcluster's stand-in"
  (cd "$repo" && cargo build --locked -q -p sidekill-testcluster --bins) || exit 2
  SIDEKILL_STANDIN=$(target_dir)/debug/sidekill-standin || exit 2
  export SIDEKILL_STANDIN
fi
if [ -z "${SIDEKILL_QUITTER:-}" ]; then
  say "SIDEKILL_QUITTER is not set: building crates/quitter's sidekill-quitter"
  (cd "$repo" && cargo build --locked -q -p sidekill-quitter) || exit 2
  SIDEKILL_QUITTER=$(target_dir)/debug/sidekill-quitter || exit 2
  export SIDEKILL_QUITTER
fi

# From here on the harness may be running: whatever happens, stop it.
started=0
cleanup() {
  [ "$started" = 1 ] && "$here/stop.sh"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The controller image, run by the node for chart.sh.
if [ -n "${SIDEKILL_IMAGE_TAR:-}" ]; then
  [ -f "$SIDEKILL_IMAGE_TAR" ] || { say "SIDEKILL_IMAGE_TAR=$SIDEKILL_IMAGE_TAR: no such file (scripts/build-image)"; exit 2; }
  export K8S_HARNESS_OCI_IMAGES="${K8S_HARNESS_OCI_IMAGES:-} sidekill=$SIDEKILL_IMAGE_TAR"
fi

# sidekill's nop and quitter images as OCI tarballs, when given, replace the ones the node makes
# from SIDEKILL_QUITTER.
for pair in "sidekill-nop=${SIDEKILL_NOP_IMAGE_TAR:-}" "sidekill-quitter=${SIDEKILL_QUITTER_IMAGE_TAR:-}"; do
  tar=${pair#*=}
  [ -n "$tar" ] || continue
  [ -f "$tar" ] || { say "${pair%%=*} image: $tar: no such file (scripts/build-image)"; exit 2; }
  export K8S_HARNESS_OCI_IMAGES="${K8S_HARNESS_OCI_IMAGES:-} $pair"
done

started=1
"$here/start.sh" || exit 2
. "$K8S_HARNESS_DIR/env.sh"

code=0
t=$SECONDS
if "$here/smoke.sh"; then
  say "smoke test: passed in $((SECONDS - t))s"
else
  say "smoke test: FAILED in $((SECONDS - t))s"
  code=1
fi

# The executor end to end: the executor runs as sidekill (KUBECONFIG), fixtures are made as
# the admin, pods name the node (no scheduler). Tests that need the test server's fault
# injection print SKIPPED with the reason.
t=$SECONDS
say "executor end to end (cargo test -p sidekill --test it -- executor::) as $(basename "$K8S_HARNESS_SIDEKILL_KUBECONFIG")"
if (cd "$repo" &&
  SIDEKILL_E2E=1 \
    KUBECONFIG=$K8S_HARNESS_SIDEKILL_KUBECONFIG \
    SIDEKILL_E2E_ADMIN_KUBECONFIG=$K8S_HARNESS_ADMIN_KUBECONFIG \
    SIDEKILL_E2E_NODE=$K8S_HARNESS_NODE \
    cargo test --locked -p sidekill --test it -- executor::); then
  say "executor end to end: passed in $((SECONDS - t))s"
else
  say "executor end to end: FAILED in $((SECONDS - t))s"
  code=1
fi

# The controller as sidekill's ServiceAccount, hot-swapping its policy from a ConfigMap.
t=$SECONDS
if "$here/controller.sh"; then
  say "controller: passed in $((SECONDS - t))s"
else
  say "controller: FAILED in $((SECONDS - t))s"
  code=1
fi
# deploy/base/admission.yaml: the API server refuses what RBAC allows sidekill but it never needs.
t=$SECONDS
if "$here/admission.sh"; then
  say "admission policy: passed in $((SECONDS - t))s"
else
  say "admission policy: FAILED in $((SECONDS - t))s"
  code=1
fi
# Issue 13: image swap to the nop image and the ephemeral quitter, as the kubelet runs them.
t=$SECONDS
if "$here/stopmethods.sh"; then
  say "stop methods: passed in $((SECONDS - t))s"
else
  say "stop methods: FAILED in $((SECONDS - t))s"
  code=1
fi
# charts/sidekill: helm lint and template, then installed; the controller image stops a sidecar.
if [ -n "${SIDEKILL_IMAGE_TAR:-}" ]; then
  t=$SECONDS
  if "$here/chart.sh"; then
    say "chart: passed in $((SECONDS - t))s"
  else
    say "chart: FAILED in $((SECONDS - t))s"
    code=1
  fi
else
  say "chart: not run (SIDEKILL_IMAGE_TAR is not set: scripts/build-image makes the image)"
fi
exit $code
