#!/bin/bash
# rounds.sh N OUT: N interleaved rounds on this host, 2 threads, each under the bench lock:
# membw 2, then per width (4, 8 bit) base model_bench, new model_bench (decode 128 after a 512-token
# prompt, MLX affine g64 checkpoints made by `cairn quantize` from the synthetic bf16 Qwen3-0.6B),
# and llama-bench tg128 at depth 512 on Q4_0 / Q8_0 GGUFs of the same bf16 weights.
# BASE, NEW: build dirs holding bench/model_bench; W: where the checkpoints and GGUFs are.
set -u
N=$1; OUT=$2; BASE=${BASE:-/tmp/cpuq/base/build-cpu}; NEW=${NEW:-build-cpu}; W=${W:-/tmp/cairn-peer}
LB=${LB:-.peer/llamacpp/build-cpu/bin/llama-bench}
export CAIRN_LOG=error
mb() { "$1/bench/model_bench" "$2" --backend cpu --threads 2 --prefill 0 --decode-ctx 512 --gen 128 2>&1 | grep '^decode'; }
for r in $(seq 1 "$N"); do
  flock /tmp/cairn-bench.lock bash -c "
    echo \"== round $r \$(date -u +%H:%M:%S) load \$(cut -d' ' -f1-3 /proc/loadavg)\"
    $NEW/bench/membw 2 | tail -1
    for b in 4 8; do
      echo \"-- \$b-bit load \$(cut -d' ' -f1-3 /proc/loadavg)\"
      echo \"base \$($(declare -f mb); mb $BASE $W/qwen3-0.6b-q\$b)\"
      echo \"new  \$($(declare -f mb); mb $NEW $W/qwen3-0.6b-q\$b)\"
      echo \"llama.cpp q\${b}_0 \$($LB -m $W/qwen3-0.6b-q\${b}_0.gguf -t 2 -p 0 -n 128 -d 512 -r 1 -o jsonl 2>/dev/null)\"
    done" | tee -a "$OUT"
done
