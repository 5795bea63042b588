#!/usr/bin/env bash
# `cairn bench` against a real `cairn serve` running the built-in default model (models/default:
# Qwen3, 15.7 M parameters, 2048-token context) on the CPU backend. Checks every mode: sweep JSONL
# and statistics (check_bench.js), burst accounting, the agentic verdict YES with the prefix cache
# and NO with --no-prefix-cache, a server killed mid-run, a stalled stream (`cairn serve --fake`
# with a scripted first-token delay) and --api-key. Takes about a minute.
#
# The agentic workload (~7 KB system prompt + tools: about 2,900 tokens with this tokenizer) does
# not fit a 2048-token context, so the agentic checks serve the same weights and tokenizer with
# max_position_embeddings raised to 8192 (positions past the 1024 it was trained on give worse
# text, not different timings).
set -u
. tests/lib.sh
scratch
fail() { echo "FAIL: $*"; for f in "$T"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -5 "$f"; }; done; exit 1; }
command -v node >/dev/null || skip "node is not installed (bash scripts/deps.sh --test)"
[ -x "$CAIRN" ] || fail "$CAIRN not built"
CHECK="node tests/bench/check_bench.js"

[ -s models/default/model.safetensors ] || fail "models/default is missing"

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
start_serve on --backend cpu --threads 2
URL=http://127.0.0.1:$PORT
bench --url "$URL" --label cairn-default --sizes 64,256 --runs 2 --max-tokens 8 \
      --json-out "$T/sweep.jsonl" --summary-out "$T/sweep.json" > "$T/sweep.txt" || { cat "$T/sweep.txt"; fail "sweep exit"; }
cat "$T/sweep.txt"
$CHECK sweep-real "$T/sweep.jsonl" "$T/sweep.json" cairn-default || fail "sweep check"

echo "== burst against cairn serve"
bench --url "$URL" --mode burst --burst 1,4 --burst-prompt 128 --max-tokens 8 \
      --json-out "$T/burst.jsonl" --summary-out "$T/burst.json" > "$T/burst.txt" || { cat "$T/burst.txt"; fail "burst exit"; }
cat "$T/burst.txt"
$CHECK burst "$T/burst.jsonl" "$T/burst.json" "1:false,4:false" || fail "burst check"

echo "== agentic with the prefix cache: YES (default weights, 8192-token context)"
# The ratio's floor is the uncached share of the prompt (about 0.08) plus the cost of attending
# to the cached part and per-request work; measured 0.12 to 0.15 here. A loaded CI machine can
# push one measurement past 0.2, so up to 3 tries.
kill "$SPID"; wait "$SPID" 2>/dev/null
D8K=$T/default8k
mkdir -p "$D8K"
for f in model.safetensors tokenizer.json tokenizer_config.json generation_config.json; do
    ln -s "$PWD/models/default/$f" "$D8K/$f"
done
sed 's/"max_position_embeddings": 2048/"max_position_embeddings": 8192/' models/default/config.json > "$D8K/config.json"
grep -q '"max_position_embeddings": 8192' "$D8K/config.json" || fail "could not raise the context"
start_serve on8k "$D8K" --backend cpu --threads 2
URL=http://127.0.0.1:$PORT
AG="--mode agentic --max-tokens 8"
ok=0
for try in 1 2 3; do
    bench --url "$URL" $AG --summary-out "$T/ag.json" > "$T/ag.txt" || { cat "$T/ag.txt"; fail "agentic exit"; }
    grep "reuse" "$T/ag.txt"
    if $CHECK agentic "$T/ag.json" YES unknown 0 0; then ok=1; break; fi
done
[ $ok -eq 1 ] || fail "agentic verdict with the prefix cache on"
kill "$SPID"; wait "$SPID" 2>/dev/null

echo "== agentic with --no-prefix-cache: NO"
start_serve off "$D8K" --backend cpu --threads 2 --no-prefix-cache
# every call is a full prefill here: one prefix-test call is enough to see the cache is off
bench --url "http://127.0.0.1:$PORT" $AG --prefix-runs 1 --summary-out "$T/ag2.json" > "$T/ag2.txt" \
    || { cat "$T/ag2.txt"; fail "agentic exit"; }
grep "reuse" "$T/ag2.txt"
$CHECK agentic "$T/ag2.json" NO unknown 0 0 || fail "agentic verdict with the prefix cache off"

echo "== server killed mid-run"
kill "$SPID"; wait "$SPID" 2>/dev/null
start_serve kill --backend cpu --threads 2
bench --url "http://127.0.0.1:$PORT" --sizes 256 --runs 6 --no-warmup --max-tokens 8 --json-out "$T/kill.jsonl" > "$T/kill.txt" 2>&1 &
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
