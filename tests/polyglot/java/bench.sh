#!/usr/bin/env bash
# Prints the Java loader's figures: cold parse + instantiate (fresh JVMs and a warm one) and plan
# latency per vector, with chicory's interpreter and its compiler. Figures only, no assertion.
#   tests/polyglot/java/bench.sh [--engine interpreter|compiler|both] [--warmup-ms N]
#     [--measure-ms N] [--min-calls N] [--fresh-jvms N] [--cold-runs N] [--filter TEXT]
#     [--jsonl FILE [--global-warmup-ms N]]
# --jsonl FILE appends scripts/bench-runtimes' JSON lines to FILE instead of printing tables
# (runtimes chicory-interpreter and chicory-compiler; see Bench's doc).
# Env: SIDEKILL_WASM, SIDEKILL_VECTORS_OUT (as run.sh; the vectors must already be dumped),
# JAVA_HOME (which java runs the benchmark; default: the one on PATH).
# Exit: 0 when the figures were printed, non-zero when the build or the run failed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)
cd "$here"

mvn -q -B ${SIDEKILL_WASM:+-Dsidekill.wasm="$SIDEKILL_WASM"} test-compile dependency:build-classpath -Dmdep.includeScope=test \
  -Dmdep.outputFile=target/bench.classpath 2>&1 | sed -u 's/\x1b\[[0-9;]*m//g'
java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
exec "$java" -Xmx1g -Dsidekill.repo="$repo" \
  -cp "target/test-classes:target/classes:$(cat target/bench.classpath)" sidekill.Bench "$@"
