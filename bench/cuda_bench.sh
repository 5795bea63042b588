#!/usr/bin/env bash
# GPU benchmarks for the CUDA backend, run on the GPU machine from a build made elsewhere:
#   BUILD=build-dev bash bench/cuda_bench.sh [OUT_DIR]        (build-dev: tools/device_pack.sh)
# In one run: the GPU's read bandwidth and bf16 GEMM peak (bench/gpu_peak), then on synthetic
# weights made in GPU memory (configs/*.json, seed 1):
#   - Qwen3-8B shape: batch-1 decode at 512/8K/32K context as a fraction of the bandwidth roofline
#     (weight + KV bytes per token / measured bandwidth) with a bf16 and an fp8 KV cache, prefill of 4K and 32K prompts in model
#     TFLOP/s against the GEMM peak, 64 streams decoding together (model_bench, forward pass only);
#   - the same through the engine (scheduler, sampling): 1/8/64 concurrent requests;
#   - Qwen3-30B-A3B and Qwen3.6-35B-A3B (hybrid) shapes: batch-1 decode at 512 / 32K context against
#     the active-weight roofline, 4K prefill against the GEMM peak, 64 streams against batch 1;
#   - the cost of cuda-deterministic (batch-invariant mode) at batch 1 and 64 streams;
#   - batch invariance: does a request's greedy output change with what else is in the batch?
# Every roofline comes from model_bench (model/model_cost.h): decode bytes are the weights one token
# reads (k of E experts, one embedding row) + KV + recurrent state; prefill FLOPs count k of E.
set -uo pipefail   # no -e: one failing measurement must not hide the others
source "$(dirname "$0")/gpu_env.sh" "${1:-/tmp/cairn-bench}"   # OUT, BUILD, bw, gemm, MB

echo "== Qwen3-8B, cuda" | tee "$OUT/qwen3-8b.txt"
$MB --synthetic configs/qwen3-8b.json --backend cuda --prefill 4096,32768 --decode-ctx 512,8192,32768 --gen 64 \
    --streams 64 --stream-ctx 512 2>&1 | grep -E '^(decode|prefill|streams)' | tee -a "$OUT/qwen3-8b.txt"
echo "== Qwen3-8B, cuda, fp8 KV cache" | tee -a "$OUT/qwen3-8b.txt"
$MB --synthetic configs/qwen3-8b.json --backend cuda --kv-dtype fp8 --decode-ctx 512,8192,32768 --gen 64 2>&1 |
    grep -E '^decode' | tee -a "$OUT/qwen3-8b.txt"
# Long context against short, per KV dtype. A 32K bf16 cache is 4.8 GB per token on top of the
# weights: "bound" is the 32K rate if those extra bytes streamed at the measured bandwidth and
# the rest of the step took what it takes at 512.
python3 - "$bw" "$OUT/qwen3-8b.txt" <<'PY' | tee -a "$OUT/qwen3-8b.txt"
import re, sys
bw, cur, rates = float(sys.argv[1]), None, {}
for line in open(sys.argv[2]):
    if line.startswith('=='): cur = 'fp8' if 'fp8' in line else 'bf16'
    m = re.search(r'^decode ctx=(\d+) .*? tok_s=([\d.]+) .*bytes_per_tok=(\d+)', line)
    if m and cur: rates[(cur, int(m.group(1)))] = (float(m.group(2)), int(m.group(3)))
for kv in ('bf16', 'fp8'):
    if (kv, 512) in rates and (kv, 32768) in rates:
        (r0, b0), (r1, b1) = rates[(kv, 512)], rates[(kv, 32768)]
        bound = 1 / (1 / r0 + (b1 - b0) / bw)
        print(f'ratio kv={kv} tok_s_32k_over_512={r1 / r0:.3f} bound={bound / r0:.3f} (vs bf16 512: {r1 / rates[("bf16", 512)][0]:.3f})')
PY
echo "== Qwen3-8B, engine" | tee "$OUT/engine.txt"
"$BUILD/bench/engine_bench" --synthetic configs/qwen3-8b.json --backend cuda --part decode --conc 1,8,64 --gen 64 2>&1 |
    grep '^decode' | tee -a "$OUT/engine.txt"
echo "== Qwen3-8B, cuda-deterministic" | tee "$OUT/deterministic.txt"
$MB --synthetic configs/qwen3-8b.json --backend cuda-deterministic --decode-ctx 512 --gen 32 --streams 64 --stream-ctx 512 2>&1 |
    grep -E '^(decode|streams)' | tee -a "$OUT/deterministic.txt"
echo "== Qwen3-30B-A3B, cuda" | tee "$OUT/qwen3-30b-a3b.txt"
$MB --synthetic configs/qwen3-30b-a3b.json --backend cuda --prefill 4096 --decode-ctx 512 --gen 64 --streams 64 \
    --stream-ctx 512 2>&1 | grep -E '^(model|decode|prefill|streams)' | tee -a "$OUT/qwen3-30b-a3b.txt"
# The hybrid MoE (issue 15): synthetic bf16 weights are about 70 GB, which fits an 80 GB card
echo "== Qwen3.6-35B-A3B, cuda" | tee "$OUT/qwen3.6-35b-a3b.txt"
$MB --synthetic configs/qwen3.6-35b-a3b.json --backend cuda --prefill 4096 --decode-ctx 512,32768 --gen 64 \
    --streams 64 --stream-ctx 512 2>&1 | grep -E '^(model|decode|prefill|streams)' | tee -a "$OUT/qwen3.6-35b-a3b.txt"
echo "== batch invariance (Qwen3-0.6B shape)" | tee "$OUT/invariance.txt"
for be in cuda cuda-deterministic; do
    "$BUILD/bench/batch_invariance" --synthetic configs/qwen3-0.6b.json --backend "$be" --gen 64 --prompt 200 2>&1 |
        grep -E '^(model|scenario)' | tee -a "$OUT/invariance.txt"
done
