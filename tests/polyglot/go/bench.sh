#!/usr/bin/env bash
# Benchmarks the Go loader in wazero: Plan latency per vector (compiler and interpreter) and
# cold compile+instantiate. Prints go test's benchmark lines (ns/op) and a summary per engine.
#
#   BENCHTIME   go test -benchtime for each Plan benchmark (default 300ms)
#   COLDCOUNT   iterations of each cold-start benchmark (default 10)
#   extra args  passed to both go test runs, e.g. ./bench.sh -cpu 1
# SIDEKILL_WASM and SIDEKILL_VECTORS_OUT as for run.sh.
#
# bench.sh --jsonl FILE instead appends scripts/bench-runtimes' JSON lines to FILE (median
# per vector, cold start) from BenchmarkRuntimes; see its doc for the SIDEKILL_BENCH_* knobs.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
for var in SIDEKILL_WASM SIDEKILL_VECTORS_OUT; do
  if [[ -n "${!var:-}" && "${!var}" != /* ]]; then export "$var=$PWD/${!var}"; fi
done
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly"
if [[ -z "${HOME:-}" ]]; then
  export GOPATH="${GOPATH:-${TMPDIR:-/tmp}/sidekill-go}" GOCACHE="${GOCACHE:-${TMPDIR:-/tmp}/sidekill-go-build}"
fi

if [[ "${1:-}" == --jsonl ]]; then
  [[ -n "${2:-}" ]] || { echo "bench.sh: --jsonl needs a file" >&2; exit 2; }
  out=$2
  [[ "$out" == /* ]] || out="$PWD/$out"
  cd "$here"
  SIDEKILL_BENCH_JSONL="$out" go test -count=1 -run '^$' -bench '^BenchmarkRuntimes$' -benchtime 1x ./... >/dev/null
  exit
fi

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cd "$here"
bench() {
  local status=0
  go test -count=1 -run '^$' -benchmem "$@" ./... >>"$log" 2>&1 || status=$?
  if [[ $status -ne 0 ]]; then
    cat "$log"
    exit "$status"
  fi
}
# Plan runs for a time per vector; a cold start takes up to a few hundred ms, so it runs a count.
bench -bench '^BenchmarkPlan$' -benchtime "${BENCHTIME:-300ms}" "$@"
bench -bench '^Benchmark(ColdStart|Instantiate)$' -benchtime "${COLDCOUNT:-10}x" "$@"

grep -e '^goos' -e '^goarch' -e '^cpu' -e '^Benchmark' "$log" | awk '!seen[$0]++'
echo
# Plan over all vectors, per engine: the fastest, the median and the slowest vector, and the mean.
for engine in compiler interpreter; do
  grep "^BenchmarkPlan/$engine/" "$log" | awk '{ print $3 }' | sort -n | awk -v e="$engine" '
    { v[NR] = $1; sum += $1 }
    END { if (NR) printf "Plan %-11s %2d vectors: min %9.0f  median %9.0f  mean %9.0f  max %9.0f ns/op\n",
      e, NR, v[1], v[int((NR + 1) / 2)], sum / NR, v[NR] }'
done
awk '$1 ~ /^Benchmark(ColdStart|Instantiate)/ { sub(/-[0-9]+$/, "", $1); printf "%-29s %12.0f ns/op (%.1f ms)\n", $1, $3, $3 / 1e6 }' "$log"
