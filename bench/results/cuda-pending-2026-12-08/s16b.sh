#!/usr/bin/env bash
# Session 16, second device call (same warm machine: build-dev and /tmp/base already there if s16a ran;
# else it links them): the 8B burst through the server (skinny64), the 35B-A3B figures of #15, its
# agentic TTFT with the new request/queue split, and profiles.
set -uo pipefail
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
left() { [ $(( $(date +%s) - T0 )) -lt $1 ]; }
[ -x build-dev/cairn ] || TEST_TIMEOUT=1 bash tools/device_run.sh bench/model_bench bench/engine_bench bench/gpu_peak cairn >/dev/null 2>&1
exec > >(tee -a $OUT/all-b.log) 2>&1
export CAIRN_LOG=warn
peak=$(build-dev/bench/gpu_peak); echo "$peak"
bw=$(echo "$peak" | sed -n 's/.*read_bytes_per_s=\([^ ]*\).*/\1/p'); gemm=$(echo "$peak" | sed -n 's/.*gemm_bf16_tflops=\([^ ]*\).*/\1/p')
echo "== 8B burst 80 / 256 through cairn serve t=$(el)s"
BUILD=build-dev TOKENIZER=build-dev/tokenizers/qwen3 BURSTS=80,256 BURST_TEMPERATURES=0 RUNS=1 SKIP_GAP=1 timeout 200 bash bench/serve_bench.sh $OUT/serve8 2>&1 | tail -25
echo "== 35B-A3B bf16 model_bench t=$(el)s"
left 330 && timeout 150 build-dev/bench/model_bench --bytes-per-s $bw --gemm-tflops $gemm --synthetic configs/qwen3.6-35b-a3b.json --backend cuda --prefill 16,4096 --decode-ctx 512 --gen 32 --streams 64 --stream-ctx 512 2>&1 | grep -v ' I '
echo "== 35B-A3B agentic t=$(el)s"
if left 420; then
CAIRN_LOG=info build-dev/cairn serve --synthetic configs/qwen3.6-35b-a3b.json --tokenizer build-dev/tokenizers/qwen3 --backend cuda --port 18080 > $OUT/serve35.log 2>&1 &
pid=$!
for _ in $(seq 1 150); do curl -sf http://127.0.0.1:18080/health >/dev/null 2>&1 && break; kill -0 $pid 2>/dev/null || break; sleep 1; done
echo "up at t=$(el)s"
timeout 100 build-dev/cairn bench --url http://127.0.0.1:18080 --label cairn-35b --mode agentic --progress off \
  --json-out $OUT/agentic35.jsonl --summary-out $OUT/agentic35.json 2>&1 | tail -10
kill $pid; wait $pid 2>/dev/null
grep -E "POST" $OUT/serve35.log | cut -c1-230 | tail -8
fi
echo "== 35B profile: 4K prefill t=$(el)s"
left 500 && CAIRN_PROFILE=1 CAIRN_LOG=info timeout 80 build-dev/bench/model_bench --synthetic configs/qwen3.6-35b-a3b.json --backend cuda --prefill 4096 --decode-ctx 16 --gen 2 > $OUT/prof35p.log 2>&1; grep -E "profile|^prefill" $OUT/prof35p.log | cut -c1-160 | head -40
echo "done t=$(el)s"
