#!/usr/bin/env bash
# Black-box test of `cairn template DIR --messages-file M [--tools-file T] [--kwargs-json J]
# [--no-generation-prompt]`: the printed prompt must equal transformers' apply_chat_template output
# byte for byte (goldens in tests/text/golden/tpl_*.json), and a template that raises must exit
# non-zero with its message on stderr.
set -u
BUILD=${BUILD:-build}
CAIRN="$BUILD/cairn"
[ -x "$CAIRN" ] || { echo "missing $CAIRN"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
n=0

# Unpack each golden into DIR/tokenizer_config.json + per-case files.
python3 - "$tmp" <<'EOF' || exit 1
import json, os, sys
tmp = sys.argv[1]
# every qwen3 and gemma3 case (gemma3 raises on role alternation), two of llama2 (no template);
# test_chat_golden covers all the rest in-process
for name, limit in [("qwen3", None), ("gemma3", None), ("llama2", 2)]:
    doc = json.load(open(f"tests/text/golden/tpl_{name}.json", encoding="utf-8"))
    doc["cases"] = doc["cases"][:limit]
    d = os.path.join(tmp, name)
    os.makedirs(d)
    json.dump(doc["config"], open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8"), ensure_ascii=False)
    for c in doc["cases"]:
        cd = os.path.join(d, "case_" + c["id"])
        os.makedirs(cd)
        json.dump(c["messages"], open(os.path.join(cd, "messages.json"), "w", encoding="utf-8"), ensure_ascii=False)
        if c["tools"] is not None:
            json.dump(c["tools"], open(os.path.join(cd, "tools.json"), "w", encoding="utf-8"), ensure_ascii=False)
        open(os.path.join(cd, "kwargs.json"), "w").write(json.dumps(c["kwargs"]))
        open(os.path.join(cd, "gen"), "w").write("1" if c["add_generation_prompt"] else "0")
        if "text" in c:
            open(os.path.join(cd, "expected.txt"), "wb").write(c["text"].encode("utf-8"))
        else:
            open(os.path.join(cd, "error.txt"), "w", encoding="utf-8").write(c["error"])
EOF

for cd in "$tmp"/*/case_*; do
    dir=$(dirname "$cd")
    args=("$dir" --messages-file "$cd/messages.json" --kwargs-json "$(cat "$cd/kwargs.json")")
    [ -f "$cd/tools.json" ] && args+=(--tools-file "$cd/tools.json")
    [ "$(cat "$cd/gen")" = 0 ] && args+=(--no-generation-prompt)
    n=$((n + 1))
    "$CAIRN" template "${args[@]}" > "$cd/out.txt" 2> "$cd/err.txt"
    rc=$?
    if [ -f "$cd/expected.txt" ]; then
        if [ $rc -ne 0 ] || ! cmp -s "$cd/out.txt" "$cd/expected.txt"; then
            echo "FAIL ${cd#$tmp/}: rc=$rc $(head -c 300 "$cd/err.txt")"
            cmp "$cd/out.txt" "$cd/expected.txt" | head -1
            fail=$((fail + 1))
        fi
    else
        want=$(sed -n 's/^TemplateError: //p' "$cd/error.txt")
        if [ $rc -eq 0 ]; then
            echo "FAIL ${cd#$tmp/}: transformers raised ($(cat "$cd/error.txt")) but cairn exited 0"
            fail=$((fail + 1))
        elif [ -n "$want" ] && ! grep -qF -- "$want" "$cd/err.txt"; then
            echo "FAIL ${cd#$tmp/}: stderr lacks '$want': $(cat "$cd/err.txt")"
            fail=$((fail + 1))
        fi
    fi
done

# Usage errors exit 2; a missing messages file is an error, not an empty prompt.
"$CAIRN" template > /dev/null 2>&1; [ $? -eq 2 ] || { echo "FAIL: no arguments should exit 2"; fail=$((fail + 1)); }
"$CAIRN" template "$tmp/qwen3" --messages-file "$tmp/nope.json" > /dev/null 2>&1 && { echo "FAIL: missing file accepted"; fail=$((fail + 1)); }
n=$((n + 2))
echo "$n template CLI checks, $fail failed"
[ $fail -eq 0 ]
