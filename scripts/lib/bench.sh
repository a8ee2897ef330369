# Sourced by scripts/bench-*: where the binaries come from.
#
# BARELB_BENCH_SMOKE=1 (how scripts/test runs every benchmark, after
# `cargo test --workspace`): the debug binaries and examples that run has
# already built (building one package alone would resolve other features
# and rebuild its dependencies), the smallest sizes, one round — a check
# that the benchmark still works, never a figure to record.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
if [ "${BARELB_BENCH_SMOKE:-0}" = 1 ]; then
  BENCH_DIR=$ROOT/target/debug
  echo "bench: smoke run (debug build, smallest sizes): not a measurement" >&2
else
  BENCH_DIR=$ROOT/target/release
fi
# bench_build ARGS…: `cargo build --release ARGS…`, or in a smoke run a
# check that `cargo test --workspace` left the binaries ARGS names.
bench_build() {
  if [ "${BARELB_BENCH_SMOKE:-0}" != 1 ]; then
    cargo build --release "$@"
    return
  fi
  local kind=""
  for a in "$@"; do
    case "$a" in
      --bin) kind=bin ;;
      --example) kind=example ;;
      -*) kind="" ;;
      *) case "$kind" in
           bin) [ -x "$BENCH_DIR/$a" ] || { echo "bench: $BENCH_DIR/$a missing: run cargo test --workspace first" >&2; exit 1; } ;;
           example) [ -x "$BENCH_DIR/examples/$a" ] || { echo "bench: $BENCH_DIR/examples/$a missing: run cargo test --workspace first" >&2; exit 1; } ;;
         esac; kind="" ;;
    esac
  done
}
# smoke_or SMOKE FULL: the size to use.
smoke_or() { if [ "${BARELB_BENCH_SMOKE:-0}" = 1 ]; then echo "$1"; else echo "$2"; fi; }
# micro_bench PACKAGE BENCH: a harness-less benchmark (cargo bench), or in a
# smoke run the same binary built by cargo test.
micro_bench() {
  if [ "${BARELB_BENCH_SMOKE:-0}" = 1 ]; then
    BARELB_BENCH_SMOKE=1 cargo test -q -p "$1" --bench "$2"
  else
    cargo bench -p "$1" --bench "$2"
  fi
}
