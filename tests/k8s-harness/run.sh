#!/usr/bin/env bash
# One-shot for CI: builds the harness, starts it in a fresh run folder, runs smoke.sh, stops it.
# The stand-in binary is used when SIDEKILL_STANDIN names one. Exit code: smoke.sh's (0 all
# passed, 1 a check failed, 2 the harness did not start).
#
#   tests/k8s-harness/run.sh
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export K8S_HARNESS_DIR=${K8S_HARNESS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sidekill/k8s-harness/run}
t0=$SECONDS
K8S_HARNESS_BIN=$("$here/build.sh") || exit 2
echo "k8s-harness: built in $((SECONDS - t0))s" >&2
export K8S_HARNESS_BIN
"$here/start.sh" || exit 2
"$here/smoke.sh"
code=$?
"$here/stop.sh"
exit $code
