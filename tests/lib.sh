# shellcheck shell=bash
# tests/lib.sh: what the black-box test scripts share. Source it from the repository root
# (`. tests/lib.sh`, as run_all.sh runs them); it sets BUILD (default build, exported) and
# CAIRN ($BUILD/cairn) and defines:
#   skip REASON             exit 77 with "SKIP: REASON" (run_all.sh counts a skip, not a pass)
#   need_node               skip unless node and npm are installed
#   need_ajv                need_node, then tests/text/node_modules (ajv, the independent validator
#                           of constrained outputs): FAIL (exit 1) when it cannot be installed
#   npm_ready DIR           DIR/node_modules holds the packages of DIR/package-lock.json: installed
#                           once (then stamped), one install at a time under DIR's lock; status 1
#                           when the install fails (no network on a first run)
#   scratch                 T: a fresh temporary folder; at exit every pid in PIDS is killed and T
#                           removed
#   synth_tiny_qwen3 DIR CONTEXT LAYERS
#                           DIR holds a random-weight Qwen3 (hidden size 64) with the real Qwen3
#                           tokenizer and CONTEXT positions, made once; the tokenizer must be fetched
BUILD=${BUILD:-build}
export BUILD
CAIRN=$BUILD/cairn

skip() { echo "SKIP: $*"; exit 77; }

need_node() {
    command -v node > /dev/null || skip "node is not installed (bash scripts/deps.sh --test)"
    command -v npm > /dev/null || skip "npm is not installed (bash scripts/deps.sh --test)"
}

need_ajv() {
    need_node
    npm_ready tests/text || { echo "FAIL: npm install in tests/text (ajv) failed"; exit 1; }
}

npm_installed() { cmp -s "$1/package-lock.json" "$1/node_modules/.cairn-installed" 2> /dev/null; }

npm_ready() {
    local dir=$1
    npm_installed "$dir" && return 0
    (
        flock 9
        npm_installed "$dir" && exit 0
        # npm install from the lock, not npm ci: tests/clients' Qwen Code names optional clipboard
        # packages for other platforms that the registry does not have, which npm ci refuses as
        # "missing from lock file"; --no-save leaves package-lock.json as it is. The stamp is
        # written last, so a failed or killed install is redone.
        (cd "$dir" && npm install --no-save --no-audit --no-fund --prefer-offline --loglevel=error) >&2 &&
            cp "$dir/package-lock.json" "$dir/node_modules/.cairn-installed"
    ) 9> "$dir/.npm.lock"
}

scratch() {
    T=$(mktemp -d)
    PIDS=()
    # shellcheck disable=SC2154  # pid: the trap's own loop variable
    trap 'for pid in "${PIDS[@]}"; do kill "$pid" 2> /dev/null; done; rm -rf "$T"' EXIT
}

synth_tiny_qwen3() {
    local dir=$1 context=$2 layers=$3
    [ -s "$dir/model.safetensors" ] && return 0
    mkdir -p "$BUILD/tmp"
    local cfg
    cfg="$BUILD/tmp/$(basename "$dir").json"
    cat > "$cfg" <<JSON
{"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "bos_token_id": 151643, "eos_token_id": 151645,
 "head_dim": 16, "hidden_act": "silu", "hidden_size": 64, "intermediate_size": 128, "max_position_embeddings": $context,
 "num_attention_heads": 4, "num_hidden_layers": $layers, "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000,
 "tie_word_embeddings": true, "torch_dtype": "bfloat16", "vocab_size": 151936}
JSON
    "$CAIRN" synth --config "$cfg" --out "$dir" --tokenizer "$BUILD/tokenizers/qwen3" >&2
}
