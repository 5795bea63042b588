#!/usr/bin/env bash
# On the GPU machine, from a .devcarry/ made by tools/device_carry.sh: unpacks the library and the
# tokenizer, links the named programs (tests, bench tools, cairn) against the carried library, runs
# the CUDA tests among them and prints one line per test, all output also in $OUT/all.log.
#   bash tools/device_run.sh [PROGRAM...]
# PROGRAM: paths as the Makefile builds them, without the build folder (tests/cuda/test_cuda_gdn,
# bench/model_bench, cairn). Default: every CUDA test, the engine and model tests that take a cuda
# backend, and the bench tools. Each test runs with the backends it needs: tests/engine/* on
# cuda-deterministic (CAIRN_TEST_ENGINE_BACKEND; its solo comparisons need batch-invariant
# results), tests/model/* on cuda and cuda-deterministic (CAIRN_TEST_BACKENDS). BASE=1 also links
# bench/model_bench and bench/engine_bench against .devcarry/libcairn-base.a.xz in /tmp/base (the
# commit device_carry.sh was given), so what follows in the call can time both.
# Afterwards the call's own measurements go on: build-dev/bench/..., build-dev/cairn, and with BASE=1
# /tmp/base/build-base/bench/....
set -uo pipefail
OUT=${OUT:-/tmp/cairn-device}
mkdir -p "$OUT" build-dev/tokenizers
exec > >(tee -a "$OUT/all.log") 2>&1
T0=$(date +%s)
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
S=$PWD/.devcarry/sys
MK=(make -s -j"$(nproc)" CUDA_GENCODE="-gencode arch=compute_90,code=sm_90" EXTRA_CFLAGS="-I$S/include"
    EXTRA_LDFLAGS="-L$S/lib -Wl,-rpath,$S/lib")
tar xzf .devcarry/qwen3-tok.tgz -C build-dev/tokenizers
xz -dc .devcarry/libcairn.a.xz > build-dev/libcairn.a && touch build-dev/libcairn.a
progs=("$@")
if [ ${#progs[@]} -eq 0 ]; then
    progs=($(ls tests/cuda/test_*.c | sed 's/\.c$//') tests/engine/test_engine tests/engine/test_engine_hybrid
           tests/engine/test_engine_sample_cands tests/model/test_fixtures tests/model/test_quant_models
           tests/model/test_constrained_greedy bench/model_bench bench/engine_bench bench/gpu_peak cairn)
fi
"${MK[@]}" -o build-dev/libcairn.a BUILD=build-dev "${progs[@]/#/build-dev/}" >"$OUT/build.log" 2>&1 ||
    { echo "build failed:"; grep -E "error|Error" "$OUT/build.log" | head -20; }
if [ "${BASE:-0}" = 1 ]; then
    B=/tmp/base
    mkdir -p $B/build-base && cp -r Makefile src bench tests configs $B/
    xz -dc .devcarry/libcairn-base.a.xz > $B/build-base/libcairn.a && touch $B/build-base/libcairn.a
    "${MK[@]}" -C $B -o build-base/libcairn.a BUILD=build-base build-base/bench/model_bench build-base/bench/engine_bench \
        >"$OUT/build-base.log" 2>&1 || echo "base build failed (log: build-base.log)"
fi
echo "built in $(( $(date +%s) - T0 )) s"
export CAIRN_LOG=${CAIRN_LOG:-warn}
for p in "${progs[@]}"; do
    case $p in
    tests/cuda/*) env=() ;;
    tests/engine/*) env=(CAIRN_TEST_ENGINE_BACKEND=cuda-deterministic) ;;
    tests/model/*) env=(CAIRN_TEST_BACKENDS=cuda,cuda-deterministic) ;;
    *) continue ;;
    esac
    n=$(basename "$p")
    timeout "${TEST_TIMEOUT:-150}" env "${env[@]}" "build-dev/$p" >"$OUT/$n.log" 2>&1
    rc=$?
    case $rc in 0) word=ok ;; 77) word=skip ;; *) word=FAIL ;; esac
    printf '%-4s %-32s %s (%d s)\n' $word "$n" "$(grep -v ' I ' "$OUT/$n.log" | tail -1)" $(( $(date +%s) - T0 ))
    [ $word != FAIL ] || grep -E "expected|FAIL|assert" "$OUT/$n.log" | head -8 | sed 's/^/     /'
done
