#!/usr/bin/env bash
# Builds the bench tools and runs the op micro-benchmarks (bench/op_bench.c: membw, GEMV at
# decode shapes, GEMM at prefill shapes, 1 and 2 threads). Usage: bench/op_bench.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
make -s BUILD="$BUILD" -j"$(nproc)" "$BUILD/bench/op_bench" "$BUILD/bench/membw" >/dev/null
"$BUILD/bench/op_bench" "$@"
