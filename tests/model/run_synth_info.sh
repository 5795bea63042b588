#!/usr/bin/env bash
# Black-box test of `cairn synth` and `cairn info`: synthesize a small checkpoint of each family
# from a config, check info's numbers against the synth summary and the config, check sharding,
# and check that a corrupt checkpoint makes info exit non-zero with the file and tensor named.
set -euo pipefail
BUILD=${BUILD:-build}
CAIRN=$BUILD/cairn
T=$(mktemp -d /tmp/cairn_run_synth.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# A small Qwen3-MoE shape: 2 of 3 layers sparse.
moe=tests/model/tiny_qwen3_moe.json
out=$("$CAIRN" synth --config "$moe" --out "$T/moe" --seed 3 2>/dev/null)
echo "$out"
grep -q "Qwen3MoeForCausalLM" <<<"$out" || fail "synth summary: $out"
info=$("$CAIRN" info "$T/moe" 2>/dev/null)
echo "$info"
# parameters by hand: embed + lm_head + norm + 3 x attention (norms, q 32x32, k/v 16x32, o 32x32, q/k norms 8)
# + dense layer 0 (3 x 48x32) + 2 sparse layers (router 4x32 + 4 experts x 3 x 16x32)
attn=$((2*32 + 32*32 + 2*16*32 + 32*32 + 2*8))
want=$((2*96*32 + 32 + 3*attn + 3*48*32 + 2*(4*32 + 4*3*16*32)))
grep -q "parameters:.*($want)" <<<"$info" || fail "parameter count, want $want"
grep -q "experts: *4, 2 per token, ffn 16, not renormalized; 2 of 3 layers sparse" <<<"$info" || fail "experts line"
grep -q "kv cache: *$((3*2*2*8*2)) bytes/token bf16" <<<"$info" || fail "kv bytes"
grep -q "context: *256 tokens" <<<"$info" || fail "context"
# --arch overrides; sharding at a tiny shard size; same seed gives the same bytes
"$CAIRN" synth --arch Qwen3MoeForCausalLM --config "$moe" --out "$T/moe_sh" --seed 3 --shard-gb 0.00002 >/dev/null 2>&1
[ -f "$T/moe_sh/model.safetensors.index.json" ] || fail "no index for a sharded synth"
n=$(ls "$T/moe_sh"/model-*-of-*.safetensors | wc -l)
[ "$n" -gt 2 ] || fail "expected several shards, got $n"
grep -q "parameters:.*($want)" <<<"$("$CAIRN" info "$T/moe_sh" 2>/dev/null)" || fail "sharded parameter count"
"$CAIRN" synth --config "$moe" --out "$T/moe2" --seed 3 >/dev/null 2>&1
cmp -s "$T/moe/model.safetensors" "$T/moe2/model.safetensors" || fail "same seed, different bytes"
# provenance note
printf 'Synthesized by run_synth_info.sh\nseed 3\n' > "$T/moe/PROVENANCE"
grep -q "Synthesized by run_synth_info.sh" <<<"$("$CAIRN" info "$T/moe" 2>/dev/null)" || fail "provenance not printed"
# every ready config parses and has its model card's parameter count (rounded as published)
while read -r c want; do
    got=$("$CAIRN" synth --config "configs/$c" --out "$T/dry" --dry-run 2>/dev/null | sed -n 's/.* \([0-9.]*\) B parameters.*/\1/p')
    [ -n "$got" ] || fail "$c: dry run failed"
    awk -v g="$got" -v w="$want" 'BEGIN { d = g - w; if (d < 0) d = -d; exit !(d <= 0.05 * w) }' || fail "$c: $got B parameters, card says $want B"
    [ ! -e "$T/dry" ] || fail "dry run wrote $T/dry"
done <<'LIST'
qwen3-0.6b.json 0.6
qwen3-1.7b.json 1.7
qwen3-8b.json 8.2
llama-3.1-8b.json 8.03
qwen3-30b-a3b.json 30.5
qwen3.5-27b.json 27
qwen3.6-35b-a3b.json 35
qwen3-next-80b-a3b.json 80
LIST
# the hybrids: layer pattern, per-sequence state bytes, KV only on attention layers, MTP head
cat > "$T/hy.json" <<'JSON'
{"architectures": ["Qwen3_5MoeForConditionalGeneration"], "vision_config": {"depth": 2},
 "text_config": {"vocab_size": 96, "hidden_size": 32, "num_hidden_layers": 8, "num_attention_heads": 2,
 "num_key_value_heads": 1, "head_dim": 16, "linear_num_key_heads": 2, "linear_num_value_heads": 4,
 "linear_key_head_dim": 8, "linear_value_head_dim": 8, "num_experts": 4, "num_experts_per_tok": 2,
 "moe_intermediate_size": 16, "shared_expert_intermediate_size": 24, "mtp_num_hidden_layers": 1,
 "max_position_embeddings": 256}}
JSON
"$CAIRN" synth --config "$T/hy.json" --out "$T/hy" >/dev/null 2>&1 || fail "hybrid synth"
info=$("$CAIRN" info "$T/hy" 2>/dev/null)
echo "$info"
grep -q "layer kinds: *6 Gated DeltaNet (L) + 2 attention (A): (LLLA) x 2" <<<"$info" || fail "hybrid layer pattern"
# per layer: conv (4-1) x (2*2*8 + 4*8) f32 + state 4 x 8 x 8 f32; 6 layers
grep -q "state: *$((6*(3*64*4 + 4*8*8*4))) bytes/sequence" <<<"$info" || fail "hybrid state bytes"
grep -q "kv cache: *$((2*2*1*16*2)) bytes/token bf16" <<<"$info" || fail "hybrid kv bytes"
grep -q "mtp head: *1 layer, loaded" <<<"$info" || fail "hybrid mtp head"
grep -q "experts: *4, 2 per token, ffn 16, renormalized; 8 of 8 layers sparse" <<<"$info" || fail "hybrid experts"
# a Qwen3-Next and a dense Qwen3.5 synthesize and load too
cat > "$T/hy2.json" <<'JSON'
{"architectures": ["ARCH"], "vocab_size": 96, "hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 2,
 "num_key_value_heads": 1, "head_dim": 16, "linear_num_key_heads": 2, "linear_num_value_heads": 4,
 "linear_key_head_dim": 8, "linear_value_head_dim": 8, "num_experts": 4, "num_experts_per_tok": 2,
 "moe_intermediate_size": 16, "shared_expert_intermediate_size": 24, "intermediate_size": 48}
JSON
for arch in Qwen3NextForCausalLM Qwen3_5ForCausalLM; do
    sed -i "s/\"architectures\": \[\"[A-Za-z0-9_]*\"\]/\"architectures\": [\"$arch\"]/" "$T/hy2.json"
    "$CAIRN" synth --config "$T/hy2.json" --out "$T/hy2_$arch" >/dev/null 2>&1 || fail "$arch synth"
    grep -q "architecture: *$arch" <<<"$("$CAIRN" info "$T/hy2_$arch" 2>/dev/null)" || fail "$arch info"
done
# a Gemma 3 with a tokenizer directory copied in
mkdir -p "$T/tok" && echo '{"model": {}}' > "$T/tok/tokenizer.json" && echo '{}' > "$T/tok/tokenizer_config.json"
cat > "$T/g.json" <<'JSON'
{"architectures": ["Gemma3ForCausalLM"], "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
 "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
 "sliding_window": 8, "sliding_window_pattern": 2, "query_pre_attn_scalar": 16}
JSON
"$CAIRN" synth --config "$T/g.json" --out "$T/g" --tokenizer "$T/tok" >/dev/null 2>&1 || fail "gemma3 synth"
[ -f "$T/g/tokenizer.json" ] && [ -f "$T/g/tokenizer_config.json" ] || fail "tokenizer files not copied"
grep -q "sliding: *window 8 on 1 of 2 layers" <<<"$("$CAIRN" info "$T/g" 2>/dev/null)" || fail "gemma3 sliding"
grep -q "tied embed: *yes" <<<"$("$CAIRN" info "$T/g" 2>/dev/null)" || fail "gemma3 ties by default"
# corrupt: truncate the weights; info must fail and name the file
truncate -s 1000 "$T/moe/model.safetensors"
if "$CAIRN" info "$T/moe" >/dev/null 2>"$T/err"; then fail "info on a truncated file succeeded"; fi
grep -q "model.safetensors" "$T/err" || fail "error does not name the file"
# unsupported architecture: named, and the supported ones listed
sed 's/Qwen3MoeForCausalLM/PhiForCausalLM/' "$moe" > "$T/phi.json"
if "$CAIRN" synth --config "$T/phi.json" --out "$T/phi" 2>"$T/err" >/dev/null; then fail "unsupported arch accepted"; fi
grep -q "PhiForCausalLM is not supported (supported: .*Qwen3ForCausalLM" "$T/err" || fail "unsupported arch message"
echo "all synth/info checks passed"
