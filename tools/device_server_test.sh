#!/usr/bin/env bash
# The server's black-box suites (tests/server/*.test.mjs: official openai and @anthropic-ai/sdk
# clients, raw HTTP, hostile input, 64-client load) against a GPU-backed `cairn serve`, on the GPU
# machine, which has neither node nor network. Carried in (see docs/bench.md, "GPU runs"):
#   build-dev/       tools/device_pack.sh (cairn, libcairn.so and the libraries it needs)
#   .devcarry/srv/   node.xz (this machine's node binary), node_modules.tar.xz (tests/server's),
#                    tok_qwen3.tar.xz (the Qwen3 tokenizer from tests/text/fetch_tokenizers.sh)
# The models are synthesized there with the real Qwen3 tokenizer: the suites' tiny Qwen3 and a
# Qwen3-0.6B-shaped one; every server runs on --backend cuda (the default with a GPU).
set -u
C=.devcarry/srv
T=$(mktemp -d)
xz -dc $C/node.xz > $T/node && chmod +x $T/node
export PATH=$T:$PATH BUILD=build-dev
tar -C tests/server -xJf $C/node_modules.tar.xz
tar -C $T -xJf $C/tok_qwen3.tar.xz
cat > $T/tiny.json <<'JSON'
{"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "bos_token_id": 151643, "eos_token_id": 151645,
 "head_dim": 16, "hidden_act": "silu", "hidden_size": 64, "intermediate_size": 128, "max_position_embeddings": 4096,
 "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000,
 "tie_word_embeddings": true, "torch_dtype": "bfloat16", "vocab_size": 151936}
JSON
build-dev/cairn synth --config $T/tiny.json --out $T/tiny --tokenizer $T/qwen3 > /dev/null 2>&1 || exit 1
# the 0.6B with an 8K context, so the api suite's 37K-token prompt is still too long
sed 's/"max_position_embeddings": [0-9]*/"max_position_embeddings": 8192/' configs/qwen3-0.6b.json > $T/q06.json
build-dev/cairn synth --config $T/q06.json --out $T/q06 --tokenizer $T/qwen3 --seed 1 > /dev/null 2>&1 || exit 1
rc=0
run() {   # name, env..., then the suite
    local name=$1; shift
    local start=$(date +%s)
    if env "$@"; then echo "ok   $name ($(( $(date +%s) - start )) s)"; else echo "FAIL $name"; rc=1; fi
    # a server left running would hold the GPU's memory and fail the next suite's
    left=$(nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader 2>/dev/null)
    [ -n "$left" ] && echo "  still on the GPU after $name: $left"
}
run "server/hostile (fake model)" node tests/server/hostile.test.mjs
# (the tiny model outruns the shutdown test's 4000-token request on a GPU: the api suite runs on the 0.6B)
run "server/api on Qwen3-0.6B shape, cuda" CAIRN_TEST_MODEL=$T/q06 LONGRUN_TOKENS=8000 node tests/server/api.test.mjs
run "server/load on tiny Qwen3, cuda" CAIRN_TEST_MODEL=$T/tiny LOAD_ARGS="--backend cuda" LOAD_TOKENS=24 node tests/server/load.test.mjs
# 64 concurrent streams must equal their solo runs: plain cuda rounds the GEMM inputs of steps of
# more than 4 rows to bf16 (solo decode is an f32 GEMV), so near-tied tokens of random weights can
# flip; cuda-deterministic is batch-invariant. Both are run; the second must pass.
run "server/load on Qwen3-0.6B shape, cuda (batch variance measured)" CAIRN_TEST_MODEL=$T/q06 LOAD_ARGS="--backend cuda" LOAD_TOKENS=48 node tests/server/load.test.mjs
run "server/load on Qwen3-0.6B shape, cuda-deterministic" CAIRN_TEST_MODEL=$T/q06 LOAD_ARGS="--backend cuda-deterministic" LOAD_TOKENS=48 node tests/server/load.test.mjs
exit $rc
