#!/usr/bin/env bash
# Runs the Java loader's tests (chicory, JUnit 5 under Maven Surefire) and prints Surefire's summary.
#   tests/polyglot/java/run.sh
# Env: SIDEKILL_WASM (default <repo>/dist/raw/sidekill_policy.wasm), SIDEKILL_VECTORS_OUT (default
# <repo>/dist/vectors). When SIDEKILL_VECTORS_OUT is unset and cargo is found, the vectors are
# dumped afresh into <repo>/dist/vectors first. Maven's cache is the default ~/.m2, outside the repo.
# Idempotent: rewrites only target/ here (and dist/vectors as above).
# Exit: 0 when every test passed; non-zero when a test failed, none ran, or the build failed.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)

command -v mvn >/dev/null || { echo "run.sh: mvn not found (Maven 3.8+ and Java 17+ are needed)" >&2; exit 2; }
. "$here/../vectors.sh"
dump_vectors "$repo" "$repo/dist/vectors"

cd "$here"
reports=target/surefire-reports
rm -rf "$reports" # stale reports must not count
status=0
# Maven 3.8 prints stray colour resets even with -B: drop them (pipefail keeps mvn's status).
mvn -q -B ${SIDEKILL_WASM:+-Dsidekill.wasm="$SIDEKILL_WASM"} test 2>&1 | sed -u 's/\x1b\[[0-9;]*m//g' || status=$?

# -q hides Surefire's own summary: add it up from its reports, in its words.
shopt -s nullglob
txt=("$reports"/*.txt)
if ((${#txt[@]} == 0)); then
  echo "run.sh: Surefire wrote no reports (the build failed before the tests ran)" >&2
  exit $((status == 0 ? 1 : status))
fi
awk '
  /^Tests run:/ {
    gsub(/,/, ""); run += $3; fail += $5; err += $7; skip += $9
    name = FILENAME; sub(/.*\//, "", name); sub(/\.txt$/, "", name)
    printf "  %-32s %3d run, %d failed, %d errors, %d skipped\n", name, $3, $5, $7, $9
  }
  END {
    print ""; print "Results:"; print ""
    printf "Tests run: %d, Failures: %d, Errors: %d, Skipped: %d\n", run, fail, err, skip
    printf "%d passed, %d failed\n", run - fail - err - skip, fail + err
    if (run == 0) exit 1
  }' "${txt[@]}" || status=$((status == 0 ? 1 : status))
exit "$status"
