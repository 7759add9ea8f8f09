#!/usr/bin/env bash
# Stops what start.sh started, by the PIDs it recorded in $K8S_HARNESS_DIR/pids: the node first
# (it SIGKILLs its containers on the way out), then kube-controller-manager, the apiserver, etcd. Each gets SIGTERM,
# then SIGKILL after 15 s. A PID that is no longer a k8s-harness process is left alone.
# Exit 0 when nothing recorded is left running.
set -euo pipefail
run=${K8S_HARNESS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sidekill/k8s-harness/run}
pids=$run/pids
[ -f "$pids" ] || exit 0
ours() { # PID NAME: still the process start.sh started?
  [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q "k8s-harness $2"
}
for name in node controller-manager apiserver etcd; do
  pid=$(awk -v n="$name" '$1 == n {print $2}' "$pids")
  [ -n "$pid" ] || continue
  ours "$pid" "$name" || continue
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 150); do
    ours "$pid" "$name" || break
    sleep 0.1
  done
  if ours "$pid" "$name"; then
    echo "k8s-harness: $name ($pid) ignored SIGTERM for 15 s; SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
done
rm -f "$pids"
