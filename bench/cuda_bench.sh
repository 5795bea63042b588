#!/usr/bin/env bash
# GPU benchmarks for issue 7, run on the GPU machine from a build made elsewhere:
#   bash bench/cuda_bench.sh [OUT_DIR]
# Measures the GPU's read bandwidth and bf16 GEMM peak (bench/gpu_peak), synthesizes a
# Qwen3-8B-shaped bf16 checkpoint (configs/qwen3-8b.json) on local disk, and reports batch-1
# decode at 512/8K/32K context as a fraction of the bandwidth roofline, prefill of 4K and 32K
# prompts against the GEMM peak, and 64 concurrent decoding streams.
set -euo pipefail
OUT=${1:-/tmp/cairn-bench}
BUILD=${BUILD:-build}
mkdir -p "$OUT"
peak=$("$BUILD/bench/gpu_peak")
echo "$peak" | tee "$OUT/peak.txt"
bw=$(echo "$peak" | sed -n 's/.*read_bytes_per_s=\([^ ]*\).*/\1/p')
MODEL=${MODEL:-/tmp/qwen3-8b}
[ -f "$MODEL/config.json" ] || "$BUILD/cairn" synth --arch Qwen3ForCausalLM --config configs/qwen3-8b.json --out "$MODEL" --seed 1
"$BUILD/bench/model_bench" "$MODEL" --backend cuda --prefill 4096,32768 --decode-ctx 512,8192,32768 --gen 128 \
    --streams 64 --stream-ctx 512 --bytes-per-s "$bw" | tee "$OUT/qwen3-8b.txt"
