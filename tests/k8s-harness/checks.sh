# Shared by the harness's check scripts (source it): the kubectl shorthand, one line per
# check with counters, and a retry loop. Needs $K8S_HARNESS_KUBECTL (env.sh).
k() { "$K8S_HARNESS_KUBECTL" "$@"; }
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
