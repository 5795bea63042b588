#!/usr/bin/env bash
# The server as a user meets it, on the GPU machine, beside the forward pass in the same run:
#   BUILD=build-dev TOKENIZER=build/tokenizers/qwen3 bash bench/serve_bench.sh [OUT_DIR]
# (build-dev: tools/device_pack.sh; TOKENIZER: a tokenizer dir, tests/text/fetch_tokenizers.sh.)
# On synthetic weights of CONFIG (default configs/qwen3-8b.json, made in GPU memory; BACKEND=cpu with a
# tiny config checks the script itself without a GPU):
#   1. the forward pass alone: prefill of a 4K and a 32K prompt (model_bench);
#   2. `cairn serve` with its defaults (and again with SERVE_FLAGS_B, when set, e.g.
#      "--max-batch-tokens 256 --max-running 64" for the old defaults), driven by `cairn bench`:
#      TTFT of a 4K and a 32K prompt (median of 3) against the forward pass's time, and bursts of
#      BURSTS requests (512-token prompts, 128 tokens out, sent within 200 ms): aggregate tok/s and
#      p95 latency;
#   3. the engine: inter-token gap of 16 streams while a 32K prompt is ingested, against their gap
#      alone (engine_bench --part gap, the engine's default pacing; SKIP_GAP=1 leaves it out).
# RUNS (3) measured runs per sweep size, BURSTS (64,80,256) the burst sizes, BURST_TEMPERATURES (0,1)
# their requests' temperatures (0: greedy, the device's argmax; 1: what agents send, sampled on the host).
set -uo pipefail   # no -e: one failing measurement must not hide the others
OUT=${1:-/tmp/cairn-serve-bench}
BUILD=${BUILD:-build}
CONFIG=${CONFIG:-configs/qwen3-8b.json}
TOKENIZER=${TOKENIZER:?set TOKENIZER to a tokenizer directory (tests/text/fetch_tokenizers.sh qwen3)}
BURSTS=${BURSTS:-64,80,256}
RUNS=${RUNS:-3}           # measured runs per sweep size
BURST_TEMPERATURES=${BURST_TEMPERATURES:-0,1}
PORT=${PORT:-18080}
mkdir -p "$OUT"
export CAIRN_LOG=${CAIRN_LOG:-warn}

echo "== forward pass alone ($CONFIG)" | tee "$OUT/forward.txt"
"$BUILD/bench/model_bench" --synthetic "$CONFIG" --backend "${BACKEND:-cuda}" --prefill 4096,32768 --decode-ctx 512 --gen 8 2>&1 |
    grep -E '^prefill' | tee -a "$OUT/forward.txt"

serve_run() {   # serve_run LABEL FLAGS...: one server, its sweep and bursts
    local label=$1; shift
    local log="$OUT/serve-$label.log"
    CAIRN_LOG=info "$BUILD/cairn" serve --synthetic "$CONFIG" --tokenizer "$TOKENIZER" --backend "${BACKEND:-cuda}" --port "$PORT" "$@" \
        >"$log" 2>&1 &
    local pid=$!
    for _ in $(seq 1 300); do
        curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
        kill -0 $pid 2>/dev/null || break
        sleep 1
    done
    grep -E 'scheduler:|kv cache:' "$log" | sed "s/^/[$label] /"
    echo "== serve [$label] $*: TTFT (sweep)" | tee "$OUT/sweep-$label.txt"
    "$BUILD/cairn" bench --url "http://127.0.0.1:$PORT" --label "$label" --sizes 4096,32768 --runs "$RUNS" --max-tokens 16 \
        --progress off --summary-out "$OUT/sweep-$label.json" 2>&1 | tee -a "$OUT/sweep-$label.txt"
    for t in ${BURST_TEMPERATURES//,/ }; do
        echo "== serve [$label] $*: bursts $BURSTS, temperature $t" | tee "$OUT/burst-$label-t$t.txt"
        "$BUILD/cairn" bench --url "http://127.0.0.1:$PORT" --label "$label" --mode burst --burst "$BURSTS" \
            --burst-prompt 512 --max-tokens 128 --temperature "$t" --progress off \
            --summary-out "$OUT/burst-$label-t$t.json" 2>&1 | tee -a "$OUT/burst-$label-t$t.txt"
    done
    kill $pid 2>/dev/null
    wait $pid 2>/dev/null
}

serve_run defaults
[ -n "${SERVE_FLAGS_B:-}" ] && serve_run flags-b $SERVE_FLAGS_B

# TTFT through the server over the forward pass's prefill time, per prompt size.
python3 - "$OUT" <<'PY' | tee "$OUT/ratios.txt"
import json, os, re, sys
out = sys.argv[1]
fwd = {}
for line in open(os.path.join(out, 'forward.txt')):
    m = re.search(r'^prefill tokens=(\d+) time_s=([\d.]+)', line)
    if m: fwd[int(m.group(1))] = float(m.group(2))
for label in ('defaults', 'flags-b'):
    p = os.path.join(out, f'sweep-{label}.json')
    if not os.path.exists(p): continue
    for cell in json.load(open(p)).get('sweep', []):
        size, ttft = cell.get('size'), cell.get('ttft_ms', {}).get('median')
        ref = fwd.get(4096 if size and size < 8192 else 32768)
        if ttft and ref:
            print(f'ttft label={label} size={size} ttft_ms={ttft:.1f} forward_ms={ref * 1e3:.1f} ratio={ttft / (ref * 1e3):.3f}')
PY

[ "${SKIP_GAP:-0}" = 1 ] && exit 0
echo "== engine: 16 streams while a 32K prompt is ingested" | tee "$OUT/gap.txt"
"$BUILD/bench/engine_bench" --synthetic "$CONFIG" --backend "${BACKEND:-cuda}" --kv-gb 0 --part gap --long 32768 --gap-streams 16 \
    --budget 0 2>&1 | grep '^gap' | tee -a "$OUT/gap.txt"
