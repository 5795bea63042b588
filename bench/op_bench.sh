#!/usr/bin/env bash
# Builds and runs the op micro-benchmarks (bench/op_bench.c) and the memory bandwidth probe
# (bench/membw.c) against $BUILD/libcairn.a. Usage: bench/op_bench.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-opbench}
make BUILD="$BUILD" CUDA=0 -j"$(nproc)" "$BUILD/libcairn.a" >/dev/null
CFLAGS="-std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Werror -pthread -Isrc"
cc $CFLAGS bench/op_bench.c "$BUILD/libcairn.a" -lm -lpthread -o "$BUILD/op_bench"
cc $CFLAGS bench/membw.c "$BUILD/libcairn.a" -lm -lpthread -o "$BUILD/membw"
"$BUILD/op_bench" "$@"
