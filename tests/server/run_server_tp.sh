#!/usr/bin/env bash
# Black-box test of `cairn serve --tensor-parallel N` (docs/server.md "Tensor and expert parallel"):
#  - the built-in default model (models/default: 6 heads, 2 KV heads) served over 2 ranks on the cpu
#    backend answers a greedy chat completion with the same text as the unsharded server, and a
#    second, longer request too (continuous batching of the two, KV heads split one per rank);
#  - bad flags stop start-up with a clear error and a non-zero exit: 4 ranks (num_attention_heads
#    = 6 does not divide; the key is named), --tensor-parallel 0, --expert-parallel without ranks or
#    on a dense model, --synthetic; on cuda with fewer GPUs than ranks (none visible here:
#    CUDA_VISIBLE_DEVICES is emptied, so it holds on a GPU machine too; both counts named, serve and
#    run); MLX-quantized weights (through cairn run).
. tests/server/serve_lib.sh

# the answers' text of two concurrent greedy chats
answers() {
    local i
    for i in 1 2; do
        curl -s "http://127.0.0.1:$port/v1/chat/completions" -H 'content-type: application/json' \
            -d "{\"messages\":[{\"role\":\"user\",\"content\":\"tell me story number $i about a long river\"}],\"max_tokens\":$((8 * i)),\"temperature\":0}" \
            > "$1.$i" &
    done
    wait %1 %2 2>/dev/null; wait 2>/dev/null
    for i in 1 2; do python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["choices"][0]["message"]["content"])' "$1.$i"; done
}

if serve "$tmp/one.log" models/default; then want=$(answers "$tmp/one"); stop; else want=; tail -5 "$tmp/one.log"; fi
if serve "$tmp/two.log" models/default --tensor-parallel 2; then got=$(answers "$tmp/two"); stop; else got=; tail -5 "$tmp/two.log"; fi
check "serve --tensor-parallel 2 answers (startup log names the ranks)" '[ -n "$got" ] && grep -q "2 ranks" "$tmp/two.log"'
echo "  unsharded: $(echo $want | head -c 120)"
check "serve --tensor-parallel 2: greedy chats equal the unsharded server's" '[ -n "$want" ] && [ "$got" = "$want" ]'

refused() {   # $1: what the error must say; the rest: serve's flags
    local say=$1; shift
    "$CAIRN" serve models/default --port 0 --backend cpu --threads 1 "$@" > "$tmp/bad.log" 2>&1 &
    local p=$!
    ( sleep 60; kill $p 2>/dev/null ) & local w=$!
    wait $p; local rc=$?
    kill $w 2>/dev/null
    [ $rc -ne 0 ] && grep -q -- "$say" "$tmp/bad.log" || { echo "  rc $rc:"; tail -3 "$tmp/bad.log"; return 1; }
}
check "--tensor-parallel 4: num_attention_heads named" 'refused "num_attention_heads = 6" --tensor-parallel 4'
check "--tensor-parallel 0 refused" 'refused "at least 1" --tensor-parallel 0'
check "--tensor-parallel 7 (more ranks than heads) refused" 'refused "num_attention_heads" --tensor-parallel 7'
check "--expert-parallel without ranks refused" 'refused "N >= 2" --expert-parallel'
check "--expert-parallel on a dense model refused" 'refused "no MoE layers" --tensor-parallel 2 --expert-parallel'
check "--tensor-parallel 2 on cuda without GPUs: both counts named" \
    'CUDA_VISIBLE_DEVICES= refused "needs 2 GPUs, one per rank; 0 visible" --tensor-parallel 2 --backend cuda'
CUDA_VISIBLE_DEVICES= "$CAIRN" run models/default --prompt-ids 1,2,3 --max-tokens 2 --backend cuda-deterministic \
    --tensor-parallel 3 > "$tmp/run_gpu.log" 2>&1
rc=$?
check "run --tensor-parallel 3 on cuda without GPUs refused" \
    '[ $rc -ne 0 ] && grep -q "needs 3 GPUs, one per rank; 0 visible" "$tmp/run_gpu.log"'
check "--tensor-parallel with --synthetic refused" 'refused "synthetic" --tensor-parallel 2 --synthetic models/default/config.json'
# cairn run shares the flags and the engine: the same greedy text at 1 and 2 ranks
a=$("$CAIRN" run models/default --prompt "Once upon a time" --max-tokens 16 --temperature 0 --backend cpu --threads 1 2>/dev/null)
b=$("$CAIRN" run models/default --prompt "Once upon a time" --max-tokens 16 --temperature 0 --backend cpu --threads 1 --tensor-parallel 2 2>/dev/null)
check "run --tensor-parallel 2: greedy text equals N=1" '[ -n "$a" ] && [ "$a" = "$b" ]'
# quantized weights are refused (serve goes through the same loader)
q=tests/model/fixtures/quant/models/llama_mxfp4
"$CAIRN" run "$q" --prompt-ids 1,2,3 --max-tokens 2 --backend cpu --tensor-parallel 2 > "$tmp/q.log" 2>&1
rc=$?
check "run --tensor-parallel 2 on MLX-quantized weights refused" '[ $rc -ne 0 ] && grep -q "quantized weights is not supported" "$tmp/q.log"'
exit $fail
