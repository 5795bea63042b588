#!/usr/bin/env bash
# Black-box test of `cairn tokenize` and `cairn detokenize` (stable CLI contracts) against the HF
# goldens: for a few strings of tests/text/golden/tok_strings.jsonl and three real tokenizers, the
# printed JSON ids must equal the golden ids (with and without --add-special) and detokenize must
# print the golden decode byte for byte (no newline added), with and without --skip-special.
set -eu
BUILD=${BUILD:-build}
CAIRN="$BUILD/cairn"
bash tests/text/fetch_tokenizers.sh qwen3 llama3_1 gemma3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
checks=0
for name in qwen3 llama3_1 gemma3; do
    dir="$BUILD/tokenizers/$name"
    for k in 0 6 21 22 40 97 150 400 1200 2099; do
        # expected values from the goldens: text, ids, add_special ids, decodes (skip off / on)
        python3 - "$name" "$k" "$tmp" <<'PY'
import json, sys
name, k, tmp = sys.argv[1], int(sys.argv[2]), sys.argv[3]
strs = [l for l in open("tests/text/golden/tok_strings.jsonl", encoding="utf-8").read().split("\n") if l]
s = json.loads(strs[k])
raw = bytes.fromhex(s["b"]) if "b" in s else s["t"].encode()
lines = [l for l in open("tests/text/golden/tok_%s.jsonl" % name, encoding="utf-8").read().split("\n") if l]
hdr, recs = json.loads(lines[0]), [json.loads(l) for l in lines[1:]]
r = [x for x in recs if "ids" in x][k]
ids_s = r.get("ids_s", hdr["pre"] + r["ids"] + hdr["post"])
full = hdr["pre"] + r["ids"] + hdr["post"]
open(tmp + "/text", "wb").write(raw)
open(tmp + "/ids.json", "w").write(json.dumps(r["ids"]) + "\n")
open(tmp + "/ids_s.json", "w").write(json.dumps(ids_s) + "\n")
open(tmp + "/full", "w").write(",".join(map(str, full)))
open(tmp + "/d", "wb").write(r.get("d", hdr["d_prefix"] + s["t"]).encode())
open(tmp + "/ds", "wb").write(r.get("ds", hdr["ds_prefix"] + s["t"]).encode())
PY
        "$CAIRN" tokenize "$dir" --text-file "$tmp/text" > "$tmp/got" || { echo "tokenize failed: $name #$k"; fail=1; }
        cmp -s "$tmp/got" "$tmp/ids.json" || { echo "FAIL tokenize $name #$k"; head -c 300 "$tmp/got"; echo; head -c 300 "$tmp/ids.json"; fail=1; }
        "$CAIRN" tokenize "$dir" --text-file "$tmp/text" --add-special > "$tmp/got"
        cmp -s "$tmp/got" "$tmp/ids_s.json" || { echo "FAIL tokenize --add-special $name #$k"; fail=1; }
        "$CAIRN" detokenize "$dir" --ids "$(cat "$tmp/full")" > "$tmp/got"
        cmp -s "$tmp/got" "$tmp/d" || { echo "FAIL detokenize $name #$k"; fail=1; }
        "$CAIRN" detokenize "$dir" --ids "$(cat "$tmp/full")" --skip-special > "$tmp/got"
        cmp -s "$tmp/got" "$tmp/ds" || { echo "FAIL detokenize --skip-special $name #$k"; fail=1; }
        checks=$((checks + 4))
    done
done
# errors: a missing directory and a bad id list fail with a non-zero status
if "$CAIRN" tokenize "$tmp/nonexistent" --text-file "$tmp/text" > /dev/null 2>&1; then echo "FAIL missing dir accepted"; fail=1; fi
if "$CAIRN" detokenize "$BUILD/tokenizers/qwen3" --ids "1,x" > /dev/null 2>&1; then echo "FAIL bad ids accepted"; fail=1; fi
checks=$((checks + 2))
echo "$checks checks, status $fail"
exit $fail
