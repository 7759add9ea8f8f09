# Sourced by the loaders' run.sh (bash): the shared vectors their tests read.

# dump_vectors REPO DIR: unless $SIDEKILL_VECTORS_OUT already names the vectors, dumps them
# afresh into DIR (an absolute path) with `cargo run -p sidekill-policy --example
# dump_vectors` and exports SIDEKILL_VECTORS_OUT=DIR. Without cargo it says so, and the loader
# reads the vectors already in REPO/dist/vectors. Exits 2 when the dump fails.
dump_vectors() {
  local repo=$1 dir=$2
  [[ -z "${SIDEKILL_VECTORS_OUT:-}" ]] || return 0
  if ! command -v cargo >/dev/null; then
    echo "run.sh: cargo not found; using the vectors already in $repo/dist/vectors" >&2
    return 0
  fi
  (cd "$repo" && cargo run -q -p sidekill-policy --example dump_vectors -- "$dir") ||
    { echo "run.sh: dumping the vectors failed" >&2; exit 2; }
  export SIDEKILL_VECTORS_OUT=$dir
}
