# Sourced by scripts/bench-*: where the binaries come from.
#
# BARELB_BENCH_SMOKE=1 (how scripts/test runs every benchmark): debug builds
# (what `cargo test` has already built), the smallest sizes, one round — a
# check that the benchmark still works, never a figure to record.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
if [ "${BARELB_BENCH_SMOKE:-0}" = 1 ]; then
  BENCH_PROFILE=()
  BENCH_DIR=$ROOT/target/debug
  echo "bench: smoke run (debug build, smallest sizes): not a measurement" >&2
else
  BENCH_PROFILE=(--release)
  BENCH_DIR=$ROOT/target/release
fi
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
