#!/usr/bin/env bash
# Session 16, first device call: every GPU test (incl. the unrun sample_cands, in-step snapshots, qmma walk),
# then base (main, packed by tools/device_carry.sh MAIN_COMMIT) vs new for the quantized GEMV, and the profiles #15/#16 want.
set -uo pipefail
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
left() { [ $(( $(date +%s) - T0 )) -lt $1 ]; }
# most wanted first: a call cut short still returns what ran
TEST_TIMEOUT=100 BASE=1 bash tools/device_run.sh tests/cuda/test_cuda_ops tests/cuda/test_cuda_quant tests/cuda/test_cuda_sample \
  tests/cuda/test_cuda_gdn tests/engine/test_engine_hybrid tests/cuda/test_cuda_synth tests/model/test_quant_models \
  tests/model/test_fixtures tests/engine/test_engine_sample_cands tests/cuda/test_cuda_attention tests/engine/test_engine \
  bench/model_bench bench/engine_bench bench/gpu_peak bench/kernels/qmatmul bench/kernels/matmul cairn
exec > >(tee -a $OUT/all2.log) 2>&1
S=$PWD/.devcarry/sys; B=/tmp/base
make -s -j16 -C $B -o build-base/libcairn.a BUILD=build-base CUDA_GENCODE="-gencode arch=compute_90,code=sm_90" EXTRA_CFLAGS="-I$S/include" EXTRA_LDFLAGS="-L$S/lib -Wl,-rpath,$S/lib" build-base/bench/kernels/qmatmul >/dev/null 2>&1
peak=$(build-dev/bench/gpu_peak); echo "$peak"
bw=$(echo "$peak" | sed -n 's/.*read_bytes_per_s=\([^ ]*\).*/\1/p'); gemm=$(echo "$peak" | sed -n 's/.*gemm_bf16_tflops=\([^ ]*\).*/\1/p')
echo "== qgemv kernels base vs new t=$(el)s"
for fmt in affine:4:64 affine:8:64; do for b in $B/build-base build-dev; do
  timeout 40 $b/bench/kernels/qmatmul --fmt $fmt 2>&1 | grep -E " n=(1|4|8) " | grep -vE "deterministic|bf16 " | head -30 | sed "s|^|$(basename $b) $fmt |"; done; done
echo "== 8B decode base vs new t=$(el)s"
for r in 1; do for b in $B/build-base build-dev; do for fmt in affine:4:64 affine:8:64; do
  timeout 40 $b/bench/model_bench --bytes-per-s $bw --synthetic configs/qwen3-8b.json --quant $fmt --backend cuda --decode-ctx 512 --gen 64 2>&1 | grep -E "^decode" | sed "s|^|$(basename $b) $fmt |"; done; done; done
echo "== skinny64: 8B bf16 engine at 24/32/64/128 streams, base (cuBLAS) vs new t=$(el)s"
for r in 1 2; do for b in $B/build-base build-dev; do
  timeout 60 $b/bench/engine_bench --synthetic configs/qwen3-8b.json --backend cuda --part decode --conc 24,32,64,128 --gen 64 2>&1 | grep -E "^decode" | sed "s|^|$(basename $b) r$r |"; done; done
echo "== skinny64 kernels vs cuBLAS (weights L2-hot for the small ones) t=$(el)s"
for p in o qkv down gate_up; do timeout 40 build-dev/bench/kernels/matmul --only $p 2>&1 | grep -E " n=(16|24|32|48|64) " | grep -v deterministic; done
echo "== 35B-A3B 4-bit decode base vs new t=$(el)s"
for b in $B/build-base build-dev; do
  left 420 && timeout 80 $b/bench/model_bench --bytes-per-s $bw --synthetic configs/qwen3.6-35b-a3b.json --quant affine:4:64 --backend cuda --decode-ctx 512 --gen 64 --streams 64 --stream-ctx 512 2>&1 | grep -E "^(model|decode|streams)" | sed "s|^|$(basename $b) |"; done
echo "== 35B 4-bit profile t=$(el)s"
left 480 && CAIRN_PROFILE=1 CAIRN_LOG=info timeout 60 build-dev/bench/model_bench --synthetic configs/qwen3.6-35b-a3b.json --quant affine:4:64 --backend cuda --decode-ctx 512 --gen 16 > $OUT/prof35q.log 2>&1; grep -E "profile|^decode" $OUT/prof35q.log | cut -c1-200 | head -40
echo "== ncu 8B 4-bit decode steps t=$(el)s"
left 500 && timeout 70 ncu --clock-control none --metrics gpu__time_duration.sum,dram__bytes_read.sum --csv --launch-count 2500 \
  build-dev/bench/model_bench --synthetic configs/qwen3-8b.json --quant affine:4:64 --backend cuda --decode-ctx 512 --gen 3 > $OUT/ncu8q.csv 2>/dev/null
[ -s $OUT/ncu8q.csv ] && python3 tools/ncu_step_profile.py $OUT/ncu8q.csv k_argmax 2>&1 | head -30
echo "done t=$(el)s"
