#!/usr/bin/env bash
# Black-box checks of the model CLI contracts against the transformers fixtures:
#   cairn run DIR --prompt-ids ... --temperature 0 --output ids  ==  ref.json greedy
#   cairn logits DIR --ids ... --out F                            ~=  logits_0.f32 (1e-3 relative)
# on every fixture, through the engine (run) and the runner (logits).
set -euo pipefail
CAIRN=${BUILD:-build}/cairn
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
for dir in tests/model/fixtures/*/; do
    dir=${dir%/}
    [ -f "$dir/config.json" ] || continue
    name=$(basename "$dir")
    prompt=$(python3 -c "import json;r=json.load(open('$dir/ref.json'));print(','.join(map(str,r['prompts'][r['greedy_prompt']])))")
    want=$(python3 -c "import json;print(','.join(map(str,json.load(open('$dir/ref.json'))['greedy'])))")
    n=$(python3 -c "print(len('$want'.split(',')))")
    got=$(CAIRN_LOG=error "$CAIRN" run "$dir" --prompt-ids "$prompt" --max-tokens "$n" --temperature 0 --ignore-eos \
          --output ids --backend cpu --threads 2 2>/dev/null)
    if [ "$got" = "$want" ]; then echo "ok   run $name"; else echo "FAIL run $name: got $got want $want"; fail=1; fi
    CAIRN_LOG=error "$CAIRN" logits "$dir" --ids "$prompt" --out "$tmp/l.f32" --backend cpu
    err=$(python3 - "$tmp/l.f32" "$dir/logits_0.f32" <<'PY'
import struct, sys
a = open(sys.argv[1], 'rb').read(); b = open(sys.argv[2], 'rb').read()
if len(a) != len(b): print("size %d vs %d" % (len(a), len(b))); sys.exit()
fa = struct.unpack('<%df' % (len(a) // 4), a); fb = struct.unpack('<%df' % (len(b) // 4), b)
print(max(abs(x - y) for x, y in zip(fa, fb)) / max(abs(y) for y in fb))
PY
)
    if python3 -c "import sys; sys.exit(0 if float('$err') <= 1e-3 else 1)" 2>/dev/null; then
        echo "ok   logits $name ($err)"
    else
        echo "FAIL logits $name: $err"; fail=1
    fi
done
# bad input: clear errors, non-zero exit, no crash
if "$CAIRN" run tests/model/fixtures/qwen3 --prompt-ids 5,99999 --output ids >/dev/null 2>"$tmp/e"; then
    echo "FAIL: out-of-range id accepted"; fail=1
elif ! grep -q "out of range" "$tmp/e"; then echo "FAIL: no clear error for an out-of-range id"; cat "$tmp/e"; fail=1; fi
if "$CAIRN" logits /nonexistent --ids 1 --out "$tmp/x" 2>"$tmp/e"; then echo "FAIL: missing model accepted"; fail=1; fi
exit $fail
