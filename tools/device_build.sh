#!/usr/bin/env bash
# On the GPU machine: builds cairn, its tests and benchmarks for Hopper into BUILD (default
# build-dev) from the carried .devcarry/sys (tools/device_sysroot.sh), with all its cores.
#   bash tools/device_build.sh && make BUILD=build-dev test-cuda
set -euo pipefail
B=${BUILD:-build-dev}
S=$PWD/.devcarry/sys
make -s -j"$(nproc)" BUILD="$B" CUDA_GENCODE="-gencode arch=compute_90,code=sm_90" \
    EXTRA_CFLAGS="-I$S/include" EXTRA_LDFLAGS="-L$S/lib -Wl,-rpath,$S/lib" \
    all tests bench-tools "$B/tests/model/test_fixtures" >/dev/null
echo "built $B"
