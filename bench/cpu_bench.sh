#!/usr/bin/env bash
# CPU benchmarks for issue 2: synthesizes Qwen3-0.6B- and Qwen3-1.7B-shaped bf16 checkpoints,
# measures this machine's memory read bandwidth in the same run, and reports prefill tok/s
# (512-token prompt) and decode tok/s (128 tokens after it) at 1 and 2 threads, with decode as a
# fraction of the bandwidth roofline (weight bytes per token / measured bandwidth).
#   bash bench/cpu_bench.sh            (build first: make bench-tools)
# With LLAMACPP_DIR set to a llama.cpp tree made by bench/peer_llamacpp.sh (fetch, build), each
# shape also gets llama.cpp's figures on the same weights converted to a bf16 GGUF (lines starting
# "llama.cpp", same prompt, steps and bandwidth); without it the output is as before.
set -euo pipefail
BUILD=${BUILD:-build}
WORK=${WORK:-/tmp/cairn-cpu-bench}
mkdir -p "$WORK"
make -s BUILD="$BUILD" bench-tools "$BUILD/cairn" >/dev/null
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
for shape in qwen3-0.6b qwen3-1.7b; do
    [ -f "$WORK/$shape/config.json" ] || "$BUILD/cairn" synth --arch Qwen3ForCausalLM --config "configs/$shape.json" \
        --out "$WORK/$shape" --seed 1 >/dev/null 2>&1
    if [ -n "${LLAMACPP_DIR:-}" ] && [ ! -f "$WORK/$shape-bf16.gguf" ]; then
        bash bench/peer_llamacpp.sh convert "$WORK/$shape" "$WORK/$shape-bf16.gguf" bf16 >/dev/null
    fi
done
for t in 1 2; do
    bw=$("$BUILD/bench/membw" "$t" | tail -1 | sed -n 's/.* \([0-9.]*\)GB\/s/\1/p')
    echo "threads=$t read_bandwidth=${bw}GB/s"
    for shape in qwen3-0.6b qwen3-1.7b; do
        CAIRN_LOG=error "$BUILD/bench/model_bench" "$WORK/$shape" --backend cpu --threads "$t" --prefill 512 \
            --decode-ctx 512 --gen 128 --bytes-per-s "$(python3 -c "print($bw * 1e9)")" | sed "s/^/  $shape /"
        [ -z "${LLAMACPP_DIR:-}" ] || bash bench/peer_llamacpp.sh row "$WORK/$shape-bf16.gguf" "$t" "$bw" | sed "s/^/  $shape /"
    done
done
