#!/usr/bin/env bash
# Black-box tests of `cairn bench` against tests/bench/mock_server.js: every mode, the JSONL
# fields, statistics recomputed independently (check_bench.js), the leading nonce, the agentic
# verdict both ways, burst accounting and serialization, and each error path (stall, timeout,
# malformed SSE, missing usage, HTTP 500, server killed mid-run, unreachable server), then the
# HTML report. Needs node; takes about 15 seconds.
set -u
. tests/lib.sh
scratch
fail() { echo "FAIL: $*"; exit 1; }
command -v node >/dev/null || skip "node is not installed (bash scripts/deps.sh --test)"
[ -x "$CAIRN" ] || fail "$CAIRN not built"
CHECK="node tests/bench/check_bench.js"

# start_mock NAME ARGS...: starts a mock, sets PORT
start_mock() {
    local name=$1; shift
    rm -f "$T/$name.port"
    node tests/bench/mock_server.js --port-file "$T/$name.port" --log "$T/$name.log" "$@" > "$T/$name.out" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do [ -s "$T/$name.port" ] && break; sleep 0.05; done
    [ -s "$T/$name.port" ] || fail "mock $name did not start"
    PORT=$(cat "$T/$name.port")
}
bench() { "$CAIRN" bench --progress off "$@"; }

echo "== sweep, thinking on: JSONL fields, nonce first, statistics"
start_mock sweep --tokens 12
bench --url "http://127.0.0.1:$PORT/v1" --label mockA --sizes 64,300 --runs 3 --max-tokens 12 --thinking on \
      --json-out "$T/sweep.jsonl" --summary-out "$T/sweep.json" > "$T/sweep.txt" || fail "sweep exit $?"
cat "$T/sweep.txt"
$CHECK sweep "$T/sweep.jsonl" "$T/sweep.json" "$T/sweep.log" mockA 8 4 || fail "sweep check"
grep -q "decode_tok/s" "$T/sweep.txt" || fail "no summary table"

echo "== agentic, prefix cache on, restart drops the cache"
# The YES verdict needs the cached-prefix TTFT under 0.2 of the cold one; a loaded machine (make -j
# test runs programs side by side) can push one measurement over, so up to 3 tries.
ok=0
for try in 1 2 3; do
    start_mock "agentic$try" --prefill-us 300
    bench --url "http://127.0.0.1:$PORT" --mode agentic --max-tokens 16 --summary-out "$T/ag.json" \
          --restart-cmd "curl -s -X POST http://127.0.0.1:$PORT/mock/restart > /dev/null" > "$T/ag.txt" || fail "agentic exit $?"
    cat "$T/ag.txt"
    if $CHECK agentic "$T/ag.json" YES NO 3 6 && grep -q "cross-user prefix reuse: YES" "$T/ag.txt"; then ok=1; break; fi
done
[ $ok -eq 1 ] || fail "agentic (cache on) check or verdict line"

echo "== agentic, prefix cache off"
start_mock agentic_off --prefill-us 300 --prefix-cache off
bench --url "http://127.0.0.1:$PORT" --mode agentic --max-tokens 16 --summary-out "$T/ag2.json" > "$T/ag2.txt" || fail "agentic off exit $?"
# the warm-up call (another session) took one request: the measured ones are the mock's 3rd-7th
$CHECK agentic "$T/ag2.json" NO unknown 2 5 || fail "agentic (cache off) check"
grep -q "^warmup" "$T/ag2.txt" || fail "no warm-up call in the agentic table"

echo "== burst: concurrent server, then a serializing one"
start_mock burst --tokens 16 --tok-ms 5
bench --url "http://127.0.0.1:$PORT" --mode burst --burst 1,4,12 --max-tokens 16 --burst-prompt 128 --temperature 0.7 \
      --json-out "$T/burst.jsonl" --summary-out "$T/burst.json" --label mockA > "$T/burst.txt" || fail "burst exit $?"
cat "$T/burst.txt"
$CHECK burst "$T/burst.jsonl" "$T/burst.json" "1:false,4:false,12:false" || fail "burst check"
# --temperature reaches every request and its record
[ "$(grep -c '"temperature":0.7}' "$T/burst.log")" = 17 ] || fail "requests without temperature 0.7: $(grep -vc '"temperature":0.7}' "$T/burst.log")"
[ "$(grep -c '"temperature":0.7' "$T/burst.jsonl")" = 17 ] || fail "records without temperature 0.7"
bench --url "http://127.0.0.1:$PORT" --sizes 64 --runs 1 --temperature 3 > "$T/badtemp.txt" 2>&1 && fail "--temperature 3 accepted"
grep -q "expected a temperature in \[0, 2\]" "$T/badtemp.txt" || fail "--temperature 3: no clear error"
start_mock serial --mode serialize --tokens 8 --tok-ms 5
bench --url "http://127.0.0.1:$PORT" --mode burst --burst 1,4 --max-tokens 8 --burst-prompt 64 \
      --json-out "$T/serial.jsonl" --summary-out "$T/serial.json" --label mockSerial > "$T/serial.txt" || fail "serial exit $?"
$CHECK burst "$T/serial.jsonl" "$T/serial.json" "1:false,4:true" || fail "serialize check"
grep -q SERIALIZES "$T/serial.txt" || fail "no SERIALIZES flag in the table"

# err_case NAME "MOCK ARGS" "BENCH ARGS" PATTERN...: the run must exit 1 and each run's error match
err_case() {
    local name=$1 margs=$2 bargs=$3; shift 3
    start_mock "$name" $margs
    # shellcheck disable=SC2086
    bench --url "http://127.0.0.1:$PORT" --sizes 64 --runs 3 --no-warmup --max-tokens 8 $bargs \
          --json-out "$T/$name.jsonl" > "$T/$name.txt" 2>&1
    local rc=$?
    [ $rc -eq 1 ] || { cat "$T/$name.txt"; fail "$name: exit $rc, expected 1"; }
    $CHECK errors "$T/$name.jsonl" "$@" || { cat "$T/$name.txt"; fail "$name check"; }
}
echo "== error paths"
err_case stall "--mode stall --fault-on 2" "--stall-timeout 1" null "^stalled: no data for 1 s" null
err_case timeout "--mode stall --fault-on 1" "--timeout 1" "^timeout" null null
err_case malformed "--mode malformed --fault-on 1" "" "^malformed SSE" null null
err_case nousage "--mode nousage --fault-on 3" "" null null "^missing usage"
err_case http500 "--mode http500 --fault-on 2" "" null "^HTTP 500: .*mock internal error" null
err_case die "--mode die --fault-on 2" "" null "connection lost|without \\[DONE\\]" "^unreachable|^connection lost"
# nothing listens on the port of a mock that died
bench --url "http://127.0.0.1:$PORT" --model m --sizes 64 --runs 2 --no-warmup --json-out "$T/unreach.jsonl" > "$T/unreach.txt" 2>&1
[ $? -eq 1 ] || fail "unreachable: exit code"
$CHECK errors "$T/unreach.jsonl" "^unreachable" "^unreachable" || fail "unreachable check"

echo "== missing usage counted with --tokenizer (a character-level tokenizer.json fixture)"
start_mock tok --mode nousage
bench --url "http://127.0.0.1:$PORT" --sizes 200,1000 --runs 1 --no-warmup --max-tokens 8 \
      --tokenizer tests/bench/tokenizer --json-out "$T/tok.jsonl" > "$T/tok.txt" || fail "tokenizer run exit $?"
grep -q "counted with --tokenizer" "$T/tok.txt" || fail "the summary does not say tokens were counted locally"
node -e '
const rs = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
for (const r of rs) {
  if (r.error !== null || r.prompt_tokens_src !== "tokenizer") throw new Error("run: " + JSON.stringify(r));
  if (Math.abs(r.prompt_tokens - r.size) > r.size * 0.01 + 8) throw new Error("size " + r.size + ": " + r.prompt_tokens);
  if (!(r.prefill_tps > 0) || r.completion_tokens !== 8) throw new Error("rates: " + JSON.stringify(r));
}' "$T/tok.jsonl" || fail "tokenizer check"

echo "== bounded by time: --max-time skips the rest, says so, exits 1"
start_mock slow --tokens 8 --tok-ms 100
bench --url "http://127.0.0.1:$PORT" --sizes 64 --runs 6 --no-warmup --max-tokens 8 --max-time 1 \
      --json-out "$T/slow.jsonl" --summary-out "$T/slow.json" > "$T/slow.txt" 2>&1
[ $? -eq 1 ] || { cat "$T/slow.txt"; fail "max-time: exit code"; }
grep -q "time budget of 1 s spent" "$T/slow.txt" || { cat "$T/slow.txt"; fail "max-time: no note"; }
# each run takes 0.8 s or more, so at most 2 can start within the second (fewer on a loaded machine)
node -e '
const fs = require("fs");
const s = JSON.parse(fs.readFileSync(process.argv[1]));
const n = fs.existsSync(process.argv[2]) ? fs.readFileSync(process.argv[2], "utf8").trim().split("\n").filter(Boolean).length : 0;
if (s.runs !== n || s.runs > 2 || s.skipped !== 6 - s.runs) throw new Error(JSON.stringify(s) + " lines " + n);
' "$T/slow.json" "$T/slow.jsonl" || fail "max-time: run and skip counts"

echo "== progress bar on a terminal"
if command -v script > /dev/null; then
    start_mock tty --tokens 4
    script -qec "$CAIRN bench --url http://127.0.0.1:$PORT --sizes 64 --runs 2 --no-warmup --max-tokens 4 > /dev/null" "$T/tty.txt" > /dev/null 2>&1 \
        || fail "progress run under script(1)"
    grep -q "2/2 runs" "$T/tty.txt" || fail "no progress bar on a terminal"
else
    echo "note: script(1) missing, progress bar not exercised"
fi
start_mock notty --tokens 4
"$CAIRN" bench --url "http://127.0.0.1:$PORT" --sizes 64 --runs 1 --no-warmup --max-tokens 4 > /dev/null 2> "$T/notty.txt" \
    || fail "quiet run"
grep -q "runs," "$T/notty.txt" && fail "progress bar drawn without a terminal"

echo "== bad flags exit 2"
bench --sizes 0 > /dev/null 2>&1; [ $? -eq 2 ] || fail "bad --sizes accepted"
bench --mode nope > /dev/null 2>&1; [ $? -eq 2 ] || fail "bad --mode accepted"

echo "== report"
"$CAIRN" bench report "$T/sweep.jsonl" "$T/burst.jsonl" "$T/serial.jsonl" "$T/stall.jsonl" -o "$T/r.html" || fail "report exit"
for s in "<svg" "Decode tok/s vs context" "normalized" "Time to first token" "Run-to-run spread" "Prefill tok/s" \
         "Request latency under burst" "Aggregate output throughput" "mockA" "mockSerial" "stalled"; do
    grep -q "$s" "$T/r.html" || fail "report lacks '$s'"
done
[ "$(grep -c '<svg' "$T/r.html")" -ge 8 ] || fail "report has fewer than 8 charts"
grep -qE "<script|https?://[a-z]" "$T/r.html" && grep -E "<script|src=\"http" "$T/r.html" && fail "report is not self-contained"
"$CAIRN" bench report "$T/missing.jsonl" -o "$T/x.html" > /dev/null 2>&1; [ $? -eq 2 ] || fail "missing input accepted"

echo "== report of the committed sample runs (bench/reports/README.md)"
"$CAIRN" bench report bench/reports/cairn-default-cpu.jsonl bench/reports/cairn-default-cpu-no-prefix-cache.jsonl \
      -o "$T/sample.html" || fail "sample report exit"
for s in 'id="sweep"' 'id="burst"' 'id="agentic"' "cairn default-model cpu --no-prefix-cache" ">YES<" ">NO<" "0.146" "0.953"; do
    grep -qF -- "$s" "$T/sample.html" || fail "sample report lacks '$s'"
done
echo "all bench mock tests passed"
