#!/usr/bin/env bash
# One pass on the GPU machine after a kernel change, from a build made by tools/device_pack.sh:
# the CUDA op tests, the fixture tests on the three cuda backends, then batch-1 decode of the
# Qwen3-8B shape (512/8K/32K context) once per variant, the Qwen3-30B-A3B shape once, and ncu
# times of the decode attention and GEMV kernels.
#   VARIANTS='|CAIRN_CUDA_GRAPHS=0|CAIRN_CUDA_SKINNY=0' bash tools/device_check.sh [OUT_DIR]
# Variants are '|'-separated sets of environment assignments ('' = the defaults); each runs with
# every KV cache dtype in KV_DTYPES (default bf16).
set -uo pipefail
B=${BUILD:-build-dev}
OUT=${1:-/tmp/cairn-check}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/$B/lib:${LD_LIBRARY_PATH:-} CAIRN_LOG=${CAIRN_LOG:-warn}
status=0
check() {   # check NAME CMD...: runs a test, keeps its log, prints its last lines
    local name=$1; shift
    if "$@" >"$OUT/$name.log" 2>&1; then echo "ok   $name: $(tail -1 "$OUT/$name.log")"
    else echo "FAIL $name:"; grep -E "FAIL|fail" "$OUT/$name.log" | head -20; tail -3 "$OUT/$name.log"; status=1; fi
}
if [ "${SKIP_TESTS:-0}" != 1 ]; then
    check ops $B/tests/cuda/test_cuda_ops
    check attention $B/tests/cuda/test_cuda_attention
    check synth $B/tests/cuda/test_cuda_synth
    check fixtures env CAIRN_TEST_BACKENDS=cuda,cuda-precise,cuda-deterministic $B/tests/model/test_fixtures
    # fp8 decode steps on the tensor-core kernel at the fixtures' short lengths too
    check fixtures-mma env CAIRN_TEST_BACKENDS=cuda CAIRN_CUDA_ATT_MMA_MIN_LEN=1 $B/tests/model/test_fixtures
fi
bw=$($B/bench/gpu_peak | sed -n 's/.*read_bytes_per_s=\([^ ]*\).*/\1/p')
echo "read_bytes_per_s=$bw"
IFS='|' read -r -a variants <<<"${VARIANTS:-}"
[ ${#variants[@]} -eq 0 ] && variants=("")
for v in "${variants[@]}"; do
    for kv in ${KV_DTYPES:-bf16}; do
        echo "== 8B [${v:-defaults}] kv $kv"
        env $v $B/bench/model_bench --synthetic configs/qwen3-8b.json --backend cuda --decode-ctx ${CTXS:-512,8192,32768} \
            --gen 32 --kv-dtype $kv --bytes-per-s "$bw" 2>&1 | grep '^decode' | sed 's/ bytes_per_tok=[^ ]*//; s/ prompt_s=[^ ]*//'
    done
done
if [ "${SKIP_MOE:-0}" != 1 ]; then
    echo "== 30B-A3B"
    $B/bench/model_bench --synthetic configs/qwen3-30b-a3b.json --backend cuda --decode-ctx 512 --gen 32 --bytes-per-s "$bw" 2>&1 |
        grep '^decode' | sed 's/ prompt_s=[^ ]*//'   # its roofline is the active-weight one (model/model_cost.h)
fi
if [ "${SKIP_NCU:-0}" != 1 ]; then
    for ctx in 512 8192; do
        ncu --clock-control none --metrics gpu__time_duration.sum,dram__bytes_read.sum --csv -k regex:'k_attn_decode|k_gemv|k_argmax|k_rmsnorm|k_qk_rope' \
            --launch-count 800 $B/bench/model_bench --synthetic configs/qwen3-8b.json --backend cuda --decode-ctx $ctx --gen 2 \
            >"$OUT/ncu-$ctx.csv" 2>/dev/null
        echo "== ncu, 8B decode at $ctx (one step, kernels serialized)"
        python3 tools/ncu_step_profile.py "$OUT/ncu-$ctx.csv" k_argmax
    done
fi
exit $status
