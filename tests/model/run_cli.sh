#!/usr/bin/env bash
# Black-box checks of the model CLI contracts against the transformers fixtures:
#   cairn run DIR --prompt-ids ... --temperature 0 --output ids  ==  ref.json greedy
#   cairn logits DIR --ids ... --out F   (cpu-precise)           ~=  logits_0.f32 (1e-3 relative)
# on every fixture, through the engine (run) and the runner (logits). Python runs twice in all
# (the expected values up front, the logits comparison at the end): its start-up is slow on some
# machines.
set -euo pipefail
CAIRN=${BUILD:-build}/cairn
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
# per fixture: NAME.prompt (the greedy prompt's ids), NAME.want (the greedy ids)
python3 - "$tmp" <<'PY'
import glob, json, os, sys
for d in sorted(glob.glob("tests/model/fixtures/*/")):
    if not os.path.exists(d + "config.json"): continue
    name = os.path.basename(d.rstrip("/"))
    r = json.load(open(d + "ref.json"))
    if "greedy" not in r: continue   # an embedding fixture (qwen3_embed): tests/model/test_embed.c
    open(f"{sys.argv[1]}/{name}.prompt", "w").write(",".join(map(str, r["prompts"][r["greedy_prompt"]])))
    open(f"{sys.argv[1]}/{name}.want", "w").write(",".join(map(str, r["greedy"])))
PY
names=()
for dir in tests/model/fixtures/*/; do
    dir=${dir%/}
    [ -f "$dir/config.json" ] || continue
    name=$(basename "$dir")
    [ -f "$tmp/$name.prompt" ] || continue
    names+=("$name")
    prompt=$(cat "$tmp/$name.prompt")
    want=$(cat "$tmp/$name.want")
    n=$(echo "$want" | tr ',' '\n' | wc -l)
    got=$(CAIRN_LOG=error "$CAIRN" run "$dir" --prompt-ids "$prompt" --max-tokens "$n" --temperature 0 --ignore-eos \
          --output ids --backend cpu --threads 2 2>/dev/null)
    if [ "$got" = "$want" ]; then echo "ok   run $name"; else echo "FAIL run $name: got $got want $want"; fail=1; fi
    CAIRN_LOG=error "$CAIRN" logits "$dir" --ids "$prompt" --out "$tmp/$name.f32" --backend cpu-precise   # f32 GEMM inputs: held to the 1e-3 bound
done
[ ${#names[@]} -ge 10 ] || { echo "FAIL: only ${#names[@]} fixtures found"; fail=1; }
# logits of every fixture: max |a - b| / max |b| <= 1e-3
python3 - "$tmp" "${names[@]}" <<'PY' || fail=1
import struct, sys
tmp, bad = sys.argv[1], 0
for name in sys.argv[2:]:
    a = open(f"{tmp}/{name}.f32", "rb").read()
    b = open(f"tests/model/fixtures/{name}/logits_0.f32", "rb").read()
    if len(a) != len(b):
        print(f"FAIL logits {name}: size {len(a)} vs {len(b)}"); bad = 1; continue
    fa = struct.unpack("<%df" % (len(a) // 4), a); fb = struct.unpack("<%df" % (len(b) // 4), b)
    err = max(abs(x - y) for x, y in zip(fa, fb)) / max(abs(y) for y in fb)
    if err <= 1e-3: print(f"ok   logits {name} ({err})")
    else: print(f"FAIL logits {name}: {err}"); bad = 1
sys.exit(bad)
PY
# bad input: clear errors, non-zero exit, no crash
if "$CAIRN" run tests/model/fixtures/qwen3 --prompt-ids 5,99999 --output ids >/dev/null 2>"$tmp/e"; then
    echo "FAIL: out-of-range id accepted"; fail=1
elif ! grep -q "out of range" "$tmp/e"; then echo "FAIL: no clear error for an out-of-range id"; cat "$tmp/e"; fail=1; fi
if "$CAIRN" logits /nonexistent --ids 1 --out "$tmp/x" 2>"$tmp/e"; then echo "FAIL: missing model accepted"; fail=1; fi
exit $fail
