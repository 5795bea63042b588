#!/usr/bin/env bash
# Session 11, third call (s11b less the constrained and agentic runs): fusion only for narrow matrices; was: second call: q/k/v (and gate/up) as one cuBLAS GEMM at 17-256 rows over the weight
# arena (branch qkvfuse): its tests, the engine at 64/128/256 streams before (build-base: main with
# qgemv2, no fusion) and after in the same run, the 64-stream profile; then #15's agentic on 35B-A3B.
set -uo pipefail
T0=$(date +%s)
export CAIRN_LOG=warn
exec > >(tee $OUT/all.log) 2>&1
nvidia-smi --query-gpu=name --format=csv,noheader
mkdir -p build-dev/tokenizers && tar xzf .devcarry/qwen3-tok.tgz -C build-dev/tokenizers
S=$PWD/.devcarry/sys
mkdir -p build-dev && xz -dc .devcarry/libcairn.a.xz > build-dev/libcairn.a && touch build-dev/libcairn.a
B=/tmp/base; mkdir -p $B/build-base && tar xzf .devcarry/base-src.tgz -C $B && xz -dc .devcarry/libcairn-base.a.xz > $B/build-base/libcairn.a && touch $B/build-base/libcairn.a
(time make -s -j16 -o build-dev/libcairn.a BUILD=build-dev CUDA_GENCODE="-gencode arch=compute_90,code=sm_90" EXTRA_CFLAGS="-I$S/include" EXTRA_LDFLAGS="-L$S/lib -Wl,-rpath,$S/lib" all tests bench-tools build-dev/tests/model/test_fixtures >/dev/null) 2>&1 | tail -3
make -s -j16 -C $B -o build-base/libcairn.a BUILD=build-base CUDA_GENCODE="-gencode arch=compute_90,code=sm_90" EXTRA_CFLAGS="-I$S/include" EXTRA_LDFLAGS="-L$S/lib -Wl,-rpath,$S/lib" build-base/bench/engine_bench >/dev/null 2>&1; ls -la $B/build-base/bench/engine_bench
run() { local n=$1 lim=$2; shift 2; timeout $lim "$@" > $OUT/$n.log 2>&1; echo "$n rc=$? $(grep -v ' I ' $OUT/$n.log | tail -1) (t=$(( $(date +%s) - T0 ))s)"; grep -E "expected|FAIL" $OUT/$n.log | head -8; }
run test_cuda_ops 100 build-dev/tests/cuda/test_cuda_ops
run test_cuda_attention 120 build-dev/tests/cuda/test_cuda_attention
run test_fixtures 100 env CAIRN_TEST_BACKENDS=cuda,cuda-precise,cuda-deterministic build-dev/tests/model/test_fixtures
echo "== engine decode 8B bf16: base (no fusion) then fused, 64/128 streams t=$(( $(date +%s) - T0 ))s"
for r in 1 2; do for b in $B/build-base build-dev; do
  timeout 60 $b/bench/engine_bench --config configs/qwen3-8b.json --backend cuda --part decode --conc 64,128 --gen 96 2>&1 | grep -v ' I ' | sed "s|^|$b |"; done; done
echo "== 256 streams (fused) t=$(( $(date +%s) - T0 ))s"
timeout 60 build-dev/bench/engine_bench --config configs/qwen3-8b.json --backend cuda --part decode --conc 256 --gen 64 2>&1 | grep -v ' I '
echo "== 64-stream profile t=$(( $(date +%s) - T0 ))s"
CAIRN_PROFILE=1 CAIRN_LOG=info timeout 60 build-dev/bench/model_bench --synthetic configs/qwen3-8b.json --backend cuda --prefill 512 --decode-ctx 512 --gen 16 --streams 64 --stream-ctx 512 > $OUT/prof64.log 2>&1; grep -E "cuda matmul|^streams" $OUT/prof64.log | head -12
echo "t=$(( $(date +%s) - T0 ))s"
echo "== 35B-A3B: prefill at short lengths, decode (#15 warm/prefix TTFT) t=$(( $(date +%s) - T0 ))s"
timeout 150 build-dev/bench/model_bench --synthetic configs/qwen3.6-35b-a3b.json --backend cuda --prefill 16,64,128,256,1024,4096 --decode-ctx 512,32768 --gen 32 2>&1 | grep -v ' I '
echo "== 35B-A3B profile, prefill 128 (plus 64 warm-up, 16 + 16 decode) t=$(( $(date +%s) - T0 ))s"
CAIRN_PROFILE=1 CAIRN_LOG=info timeout 120 build-dev/bench/model_bench --synthetic configs/qwen3.6-35b-a3b.json --backend cuda --prefill 128 --decode-ctx 16 --gen 8 > $OUT/prof35.log 2>&1; grep -E "profile|^prefill|^decode" $OUT/prof35.log | head -24
echo "== 35B-A3B profile, decode at 512 t=$(( $(date +%s) - T0 ))s"
CAIRN_PROFILE=1 CAIRN_LOG=info timeout 120 build-dev/bench/model_bench --synthetic configs/qwen3.6-35b-a3b.json --backend cuda --prefill 16 --decode-ctx 512 --gen 256 > $OUT/prof35d.log 2>&1; grep -E "profile|^prefill|^decode" $OUT/prof35d.log | head -24
echo "t=$(( $(date +%s) - T0 ))s"
echo "== 35B-A3B agentic (snapshots on the device) t=$(( $(date +%s) - T0 ))s"
CAIRN_LOG=info build-dev/cairn serve --synthetic configs/qwen3.6-35b-a3b.json --tokenizer build-dev/tokenizers/qwen3 --backend cuda --port 18080 > $OUT/serve35.log 2>&1 &
pid=$!
for _ in $(seq 1 150); do curl -sf http://127.0.0.1:18080/health >/dev/null 2>&1 && break; kill -0 $pid 2>/dev/null || break; sleep 1; done
echo "up at t=$(( $(date +%s) - T0 ))s"
timeout 150 build-dev/cairn bench --url http://127.0.0.1:18080 --label cairn-35b --mode agentic --progress off \
  --json-out $OUT/agentic35.jsonl --summary-out $OUT/agentic35.json 2>&1 | tail -12
kill $pid; wait $pid 2>/dev/null
grep -E "POST|snapshot|prefix cache" $OUT/serve35.log | cut -c1-200
echo "t=$(( $(date +%s) - T0 ))s"
