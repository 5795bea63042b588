#!/usr/bin/env bash
# GPU benchmarks of MLX-quantized weights (issue 16's speed section), run on the GPU machine:
#   BUILD=build-dev bash bench/cuda_quant_bench.sh [OUT_DIR]
# In one run: the GPU's read bandwidth and GEMM peak (bench/gpu_peak), then on synthetic quantized weights
# (model_bench --synthetic CONFIG --quant MODE:BITS:GROUP: random codes in host memory, moved to
# the GPU like a loaded checkpoint):
#   - Qwen3-8B shape, affine 4 bit g64 and 8 bit g64: batch-1 decode at 512 context beside the
#     roofline of the quantized bytes (packed words + scales + biases + KV) and llama.cpp's figures
#     (Q4_K_M 246.6, Q8_0 221.8 tok/s: ../shared/research/peer-llamacpp.md), 4K prefill beside the
#     bf16 model's 4K prefill;
#   - Qwen3-30B-A3B shape at 4 bit: batch-1 decode beside the active-weight roofline (the experts a
#     token uses), and 64 streams against batch 1.
set -uo pipefail   # no -e: one failing measurement must not hide the others
source "$(dirname "$0")/gpu_env.sh" "${1:-/tmp/cairn-qbench}"   # OUT, BUILD, bw, gemm, MB
MB="$MB --backend cuda"

for q in affine:4:64 affine:8:64; do
    echo "== Qwen3-8B, cuda, $q" | tee -a "$OUT/qwen3-8b-quant.txt"
    $MB --synthetic configs/qwen3-8b.json --quant "$q" --prefill 4096 --decode-ctx 512 --gen 64 2>&1 |
        grep -E '^(model|decode|prefill)' | tee -a "$OUT/qwen3-8b-quant.txt"
done
echo "== Qwen3-8B, cuda, bf16" | tee -a "$OUT/qwen3-8b-quant.txt"
$MB --synthetic configs/qwen3-8b.json --prefill 4096 --decode-ctx 512 --gen 64 2>&1 |
    grep -E '^(decode|prefill)' | tee -a "$OUT/qwen3-8b-quant.txt"
python3 - "$OUT/qwen3-8b-quant.txt" <<'PY' | tee -a "$OUT/qwen3-8b-quant.txt"
import re, sys
cur, dec, pre = None, {}, {}
for line in open(sys.argv[1]):
    m = re.match(r'== .*, (\S+)$', line.strip())
    if m: cur = m.group(1)
    m = re.search(r'^decode .*? tok_s=([\d.]+) .*frac_roofline=([\d.]+)', line)
    if m: dec[cur] = (float(m.group(1)), float(m.group(2)))
    m = re.search(r'^prefill tokens=4096 .*? tok_s=([\d.]+)', line)
    if m: pre[cur] = float(m.group(1))
peer = {'affine:4:64': ('Q4_K_M', 246.6), 'affine:8:64': ('Q8_0', 221.8)}
for q, (name, ref) in peer.items():
    if q in dec:
        print(f'summary {q}: decode {dec[q][0]:.1f} tok/s = {dec[q][1]:.3f} of the quantized-bytes roofline, '
              f'{dec[q][0] / ref:.2f}x llama.cpp {name} ({ref})', end='')
        if q in pre and 'bf16' in pre: print(f'; 4K prefill {pre[q]:.0f} tok/s = {pre[q] / pre["bf16"]:.3f} of bf16', end='')
        print()
PY

echo "== Qwen3-30B-A3B, cuda, affine:4:64" | tee "$OUT/qwen3-30b-a3b-quant.txt"
$MB --synthetic configs/qwen3-30b-a3b.json --quant affine:4:64 --decode-ctx 512 --gen 64 --streams 64 --stream-ctx 512 2>&1 |
    grep -E '^(model|decode|streams)' | tee -a "$OUT/qwen3-30b-a3b-quant.txt"
# model_bench's decode line carries the active-weight roofline (model/model_cost.h: the packed
# words + scales + biases of what one token reads, k of E experts); the summary only restates it
python3 - "$OUT/qwen3-30b-a3b-quant.txt" <<'PY' | tee -a "$OUT/qwen3-30b-a3b-quant.txt"
import re, sys
log = open(sys.argv[1]).read()
d = re.search(r'^decode .*? tok_s=([\d.]+) .*bytes_per_tok=(\d+) .*roofline_tok_s=([\d.]+) frac_roofline=([\d.]+)', log, re.M)
agg = re.search(r'aggregate_tok_s=([\d.]+)', log)
if d:
    print(f'summary 30b-a3b affine:4:64: decode {float(d.group(1)):.1f} tok/s, active_bytes_per_token={int(d.group(2)):.4g} '
          f'active_roofline_tok_s={d.group(3)} frac_active_roofline={d.group(4)}'
          + (f', 64 streams {float(agg.group(1)):.0f} tok/s = {float(agg.group(1)) / float(d.group(1)):.1f}x batch 1' if agg else ''))
PY
