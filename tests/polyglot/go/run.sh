#!/usr/bin/env bash
# Runs the Go loader's tests: every shared vector through dist/raw/sidekill_policy.wasm in
# wazero, the bad-input cases, and the no-imports check. Prints go test's summary and
# "go: N passed, N failed, N skipped"; exits non-zero when a test fails or none ran.
#
#   SIDEKILL_WASM         the module (default dist/raw/sidekill_policy.wasm)
#   SIDEKILL_VECTORS_OUT  the dumped vectors (default dist/vectors; make them with
#                         cargo run -q -p sidekill-policy --example dump_vectors -- dist/vectors)
# Relative paths in them are taken from the folder run.sh is started in.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

for var in SIDEKILL_WASM SIDEKILL_VECTORS_OUT; do
  if [[ -n "${!var:-}" && "${!var}" != /* ]]; then export "$var=$PWD/${!var}"; fi
done
command -v go >/dev/null || { echo "run.sh: go not found (Go 1.25 or newer is needed)" >&2; exit 2; }

# go.mod and go.sum are committed and there is no vendor folder: resolve modules from them and
# never rewrite them (an inherited -mod=vendor would fail).
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly"
# Module and build caches stay outside the repo: Go's defaults under $HOME, or /tmp without one.
if [[ -z "${HOME:-}" ]]; then
  export GOPATH="${GOPATH:-${TMPDIR:-/tmp}/sidekill-go}" GOCACHE="${GOCACHE:-${TMPDIR:-/tmp}/sidekill-go-build}"
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cd "$here"
status=0
go test -count=1 -v ./... >"$log" 2>&1 || status=$?

passed=$(grep -c -- '--- PASS' "$log" || true)
failed=$(grep -c -- '--- FAIL' "$log" || true)
skipped=$(grep -c -- '--- SKIP' "$log" || true)
if [[ $status -ne 0 || $failed -ne 0 ]]; then
  grep -v -e '^=== ' -e '--- PASS' "$log" || true  # the failures with their messages
else
  grep -e '^ok' -e 'vectors from' "$log" || true
fi
if [[ $skipped -ne 0 ]]; then
  grep -- '--- SKIP' "$log"
fi
echo "go: $passed passed, $failed failed, $skipped skipped"
if [[ $status -eq 0 && $passed -eq 0 ]]; then
  echo "run.sh: go test ran no test" >&2
  exit 1
fi
exit "$status"
