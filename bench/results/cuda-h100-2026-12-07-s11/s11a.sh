#!/usr/bin/env bash
# Session 11, first call: test branch = main + qgemv2 (tensor-core decode GEMV), its tests and speed,
# the cuBLAS algorithms at 16-128 rows, #19's T=0 64-stream constrained ratio, the 64-stream profile.
set -uo pipefail
T0=$(date +%s)
export CAIRN_LOG=warn
exec > >(tee $OUT/all.log) 2>&1
nvidia-smi --query-gpu=name --format=csv,noheader
mkdir -p build-dev/tokenizers && tar xzf .devcarry/qwen3-tok.tgz -C build-dev/tokenizers
S=$PWD/.devcarry/sys
mkdir -p build-dev && xz -dc .devcarry/libcairn.a.xz > build-dev/libcairn.a && touch build-dev/libcairn.a
(time make -s -j16 -o build-dev/libcairn.a BUILD=build-dev CUDA_GENCODE="-gencode arch=compute_90,code=sm_90" EXTRA_CFLAGS="-I$S/include" EXTRA_LDFLAGS="-L$S/lib -Wl,-rpath,$S/lib" all tests bench-tools >/dev/null) 2>&1 | tail -4
run() { local n=$1 lim=$2; shift 2; timeout $lim "$@" > $OUT/$n.log 2>&1; echo "$n rc=$? $(grep -v ' I ' $OUT/$n.log | tail -1) (t=$(( $(date +%s) - T0 ))s)"; grep -E "expected|FAIL" $OUT/$n.log | head -8; }
run test_cuda_quant 100 build-dev/tests/cuda/test_cuda_quant
run test_quant_models 80 env CAIRN_TEST_BACKENDS=cuda,cuda-precise,cuda-deterministic build-dev/tests/model/test_quant_models
run test_cuda_ops 100 build-dev/tests/cuda/test_cuda_ops
echo "== 8B 4-bit decode (session 9: 218.7 / 215.4)"
timeout 70 build-dev/bench/model_bench --synthetic configs/qwen3-8b.json --quant affine:4:64 --backend cuda --prefill 512 --decode-ctx 512 --gen 64 2>&1 | grep -E '^decode'
echo "== cuBLAS algorithms at 16-128 rows (8B shapes) t=$(( $(date +%s) - T0 ))s"
timeout 60 build-dev/bench/cublas_algos 16,32,64,128 > $OUT/cublas_algos.log 2>&1; cut -c1-60,100-250 $OUT/cublas_algos.log | head -40
echo "== constrained 64 streams T=0 (session 9: 0.946) t=$(( $(date +%s) - T0 ))s"
timeout 100 build-dev/bench/engine_bench --config configs/qwen3-8b.json --backend cuda --tokenizer build-dev/tokenizers/qwen3 \
  --part constrained --conc 64 --gen 128 --temperature 0 2>&1 | grep -E '^constrained'
echo "== 8B bf16 decode at 64 streams, profile t=$(( $(date +%s) - T0 ))s"
CAIRN_PROFILE=1 CAIRN_LOG=info timeout 70 build-dev/bench/model_bench --synthetic configs/qwen3-8b.json --backend cuda --prefill 512 --decode-ctx 512 --gen 16 --streams 64 --stream-ctx 512 > $OUT/prof64.log 2>&1; grep -E "profile|^decode|stream" $OUT/prof64.log | head -40
echo "== qmatmul lab 4-bit (deterministic = the old k_qgemv) t=$(( $(date +%s) - T0 ))s"
timeout 60 build-dev/bench/kernels/qmatmul --fmt affine:4:64 2>&1 | grep -E ' n=(1|4|8) '
echo "== 8B 8-bit decode t=$(( $(date +%s) - T0 ))s"
timeout 60 build-dev/bench/model_bench --synthetic configs/qwen3-8b.json --quant affine:8:64 --backend cuda --prefill 512 --decode-ctx 512 --gen 64 2>&1 | grep -E '^decode'
echo "t=$(( $(date +%s) - T0 ))s"
