#!/usr/bin/env bash
# Black-box test of `--synthetic CONFIG.json` (random weights made in memory, no checkpoint):
#   cairn run/logits --synthetic C --synth-seed S  ==  cairn synth --config C --seed S, then run/logits DIR
# bit for bit (greedy ids; logits byte for byte) on a dense, a MoE, a tied and a (1 + w)-norm family, on the cpu and ref
# backends; the tokenizer rules (none: ids only; --tokenizer of the wrong vocabulary: refused);
# `cairn serve --synthetic` refusing to start without --tokenizer, and answering a completion with
# one; --kv-dtype. (The GPU side, device-filled weights equal to host-filled ones, is
# tests/cuda/test_cuda_synth.c.)
set -euo pipefail
BUILD=${BUILD:-build}
CAIRN=$BUILD/cairn
T=$(mktemp -d /tmp/cairn_run_synthetic.XXXXXX)
srv_pid=
cleanup() { [ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
rc=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; rc=1; }

# 8192 x 64 embeddings: large enough for the multi-threaded host fill (and models/default's tokenizer)
sed 's/"vocab_size": 512/"vocab_size": 8192/; s/"eos_token_id": 511/"eos_token_id": 2/' tests/engine/tiny_qwen3.json > "$T/tiny-8k.json"
configs="tests/engine/tiny_qwen3.json $T/tiny-8k.json tests/model/tiny_qwen3_moe.json tests/model/fixtures/qwen3_tied/config.json tests/model/fixtures/gemma3/config.json"
seed=11
for cfg in $configs; do
    name=$(basename "$(dirname "$cfg")" | sed 's/^cairn_run_synthetic.*/tmp/')_$(basename "$cfg" .json)
    "$CAIRN" synth --config "$cfg" --out "$T/$name" --seed $seed > /dev/null 2>&1
    for be in cpu ref; do
        args=(--prompt-ids 1,2,3,4,5 --max-tokens 12 --temperature 0 --ignore-eos --backend "$be" --threads 2)
        want=$(CAIRN_LOG=error "$CAIRN" run "$T/$name" "${args[@]}" 2>/dev/null)
        got=$(CAIRN_LOG=error "$CAIRN" run --synthetic "$cfg" --synth-seed $seed "${args[@]}" 2>/dev/null)
        if [ -n "$want" ] && [ "$got" = "$want" ]; then ok "run --synthetic $name ($be): $got"
        else bad "run --synthetic $name ($be): got '$got' want '$want'"; fi
    done
    # logits of every position, byte for byte
    CAIRN_LOG=error "$CAIRN" logits "$T/$name" --ids 1,2,3,4,5 --out "$T/want.f32" --backend cpu --threads 2
    CAIRN_LOG=error "$CAIRN" logits --synthetic "$cfg" --synth-seed $seed --ids 1,2,3,4,5 --out "$T/got.f32" \
        --backend cpu --threads 2
    if [ -s "$T/want.f32" ] && cmp -s "$T/want.f32" "$T/got.f32"; then ok "logits --synthetic $name: identical"
    else bad "logits --synthetic $name differ from the synthesized checkpoint's"; fi
done
# another seed gives other weights
a=$(CAIRN_LOG=error "$CAIRN" run --synthetic tests/engine/tiny_qwen3.json --synth-seed 1 --prompt-ids 1,2,3 \
    --max-tokens 8 --temperature 0 --ignore-eos --backend cpu 2>/dev/null)
b=$(CAIRN_LOG=error "$CAIRN" run --synthetic tests/engine/tiny_qwen3.json --synth-seed 2 --prompt-ids 1,2,3 \
    --max-tokens 8 --temperature 0 --ignore-eos --backend cpu 2>/dev/null)
if [ "$a" != "$b" ]; then ok "seeds differ"; else bad "seeds 1 and 2 gave the same output $a"; fi

# --kv-dtype: every dtype runs; a bad one is refused
for dt in f32 f16 bf16 fp8 f8e4m3; do
    if CAIRN_LOG=error "$CAIRN" run --synthetic tests/engine/tiny_qwen3.json --prompt-ids 1,2,3 --max-tokens 4 \
         --kv-dtype $dt --backend cpu > /dev/null 2>&1; then ok "--kv-dtype $dt"; else bad "--kv-dtype $dt"; fi
done
if "$CAIRN" run --synthetic tests/engine/tiny_qwen3.json --prompt-ids 1 --kv-dtype q8 2> "$T/e" > /dev/null; then
    bad "--kv-dtype q8 accepted"
elif grep -q "f32, f16, bf16 or fp8" "$T/e"; then ok "--kv-dtype q8 refused"; else bad "--kv-dtype q8: $(cat "$T/e")"; fi

# tokenizers: text needs one; one of another vocabulary is refused (models/default: 8192 ids > 512)
if "$CAIRN" run --synthetic tests/engine/tiny_qwen3.json --prompt hi --backend cpu 2> "$T/e" > /dev/null; then
    bad "run --synthetic --prompt without a tokenizer accepted"
elif grep -q -- "--tokenizer DIR" "$T/e"; then ok "run --synthetic --prompt needs --tokenizer"
else bad "no clear error: $(cat "$T/e")"; fi
if "$CAIRN" run --synthetic tests/engine/tiny_qwen3.json --tokenizer models/default --prompt hi --backend cpu \
     2> "$T/e" > /dev/null; then
    bad "a tokenizer larger than the vocabulary accepted"
elif grep -q "8192 token ids but the model's vocabulary has 512" "$T/e"; then ok "tokenizer/vocab mismatch refused"
else bad "no clear mismatch error: $(cat "$T/e")"; fi
if "$CAIRN" run --synthetic /nonexistent.json --prompt-ids 1 --backend cpu > /dev/null 2>&1; then
    bad "missing config accepted"; else ok "missing config refused"; fi

# serve: refused without --tokenizer; with one (a config sized to models/default's 8192 ids) it serves text
if "$CAIRN" serve --synthetic tests/engine/tiny_qwen3.json --port 0 2> "$T/e"; then bad "serve --synthetic without --tokenizer started"
elif grep -q -- "--synthetic needs --tokenizer DIR" "$T/e"; then ok "serve --synthetic needs --tokenizer"
else bad "serve: no clear error: $(cat "$T/e")"; fi
: > "$T/serve.err"   # exists before the background job opens it (the loop below reads it at once)
"$CAIRN" serve --synthetic "$T/tiny-8k.json" --tokenizer models/default --port 0 --backend cpu --threads 2 \
    --kv-dtype bf16 2> "$T/serve.err" &
srv_pid=$!
port=
for _ in $(seq 1 300); do   # up to 30 s (sanitizer builds)
    port=$(sed -n 's/.*listening on http:\/\/[0-9.]*:\([0-9]*\).*/\1/p' "$T/serve.err" | head -1 || true)
    [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/health" > /dev/null 2>&1 && break
    sleep 0.1
done
resp=$(curl -s "http://127.0.0.1:$port/v1/completions" -H 'content-type: application/json' \
       -d '{"model": "tiny-8k", "prompt": "Hello", "max_tokens": 5, "temperature": 0, "ignore_eos": true}' || true)
if grep -q '"completion_tokens":5' <<<"$resp"; then ok "serve --synthetic --tokenizer answers: ${resp:0:120}"
else bad "serve --synthetic: $resp"; tail -5 "$T/serve.err"; fi
if grep -q "kv cache: .* bf16" "$T/serve.err"; then ok "serve logs the KV size and dtype"
else bad "serve: no kv cache log line"; fi
kill "$srv_pid" 2>/dev/null
wait "$srv_pid" 2>/dev/null || true
srv_pid=
exit $rc
