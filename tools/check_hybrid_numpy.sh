#!/usr/bin/env bash
# check_hybrid_numpy.sh: cairn's hybrid forward (Qwen3-Next, Qwen3.5, Qwen3.5-MoE; ref and cpu)
# against tools/hybrid_numpy_reference.py, an independent float64 implementation written from
# transformers' code (chunked delta rule, the checkpoints' own layouts). Tiny synthesized models
# rescaled to the fixtures' statistics; a 150-token prompt (three 64-token chunks); every
# position's logits within 1e-4 relative and the same argmax. Needs a python3 with numpy
# (Debian: apt-get install python3-numpy; PYTHON picks the interpreter, default /usr/bin/python3).
set -euo pipefail
BUILD=${BUILD:-build}
PY=${PYTHON:-/usr/bin/python3}
CAIRN=$BUILD/cairn
REF=tools/hybrid_numpy_reference.py
$PY -c "import numpy" 2>/dev/null || { echo "check_hybrid_numpy: $PY has no numpy (apt-get install python3-numpy)"; exit 2; }
T=$(mktemp -d /tmp/cairn_hybrid_numpy.XXXXXX)
trap 'rm -rf "$T"' EXIT
dims='"vocab_size": 256, "hidden_size": 64, "num_hidden_layers": 5, "num_attention_heads": 4,
 "num_key_value_heads": 2, "head_dim": 32, "linear_num_key_heads": 2, "linear_num_value_heads": 6,
 "linear_key_head_dim": 16, "linear_value_head_dim": 8, "linear_conv_kernel_dim": 4, "max_position_embeddings": 1024,
 "layer_types": ["linear_attention", "full_attention", "linear_attention", "linear_attention", "full_attention"]'
cat > "$T/next.json" <<JSON
{"architectures": ["Qwen3NextForCausalLM"], $dims, "num_experts": 8, "num_experts_per_tok": 2,
 "moe_intermediate_size": 32, "shared_expert_intermediate_size": 48, "intermediate_size": 96,
 "mlp_only_layers": [2], "norm_topk_prob": false, "rope_theta": 1000000.0, "partial_rotary_factor": 0.5}
JSON
cat > "$T/q35.json" <<JSON
{"architectures": ["Qwen3_5ForConditionalGeneration"], "vision_config": {}, "text_config": {$dims,
 "intermediate_size": 96, "rope_parameters": {"rope_type": "default", "rope_theta": 10000000.0, "partial_rotary_factor": 0.25}}}
JSON
cat > "$T/q35moe.json" <<JSON
{"architectures": ["Qwen3_5MoeForCausalLM"], $dims, "num_experts": 8, "num_experts_per_tok": 3,
 "moe_intermediate_size": 32, "shared_expert_intermediate_size": 40,
 "rope_parameters": {"rope_type": "default", "rope_theta": 10000000.0, "partial_rotary_factor": 0.25}}
JSON
ids=$($PY -c "print(','.join(str((i * 37 + 11) % 256) for i in range(150)))")
fail=0
for k in next q35 q35moe; do
    "$CAIRN" synth --config "$T/$k.json" --out "$T/$k" --seed 3 >/dev/null 2>&1
    $PY $REF --rescale-synth "$T/$k"
    $PY $REF "$T/$k" --ids "$ids" --out "$T/$k.numpy.f32" >/dev/null
    for be in ref cpu; do
        "$CAIRN" logits "$T/$k" --ids "$ids" --out "$T/$k.$be.f32" --backend $be 2>/dev/null
        $PY - "$T/$k.$be.f32" "$T/$k.numpy.f32" "$k $be" <<'PYEOF' || fail=1
import sys
import numpy as np
a = np.fromfile(sys.argv[1], "<f4").reshape(150, -1)
r = np.fromfile(sys.argv[2], "<f4").reshape(150, -1)
rel = (np.abs(a - r).max(1) / np.abs(r).max(1)).max()
same = int((a.argmax(1) == r.argmax(1)).sum())
print(f"{sys.argv[3]:12s} max rel err {rel:.2e}, argmax equal at {same}/150 positions")
sys.exit(0 if rel < 1e-4 and same == 150 else 1)
PYEOF
    done
done
[ $fail = 0 ] && echo "all hybrid numpy checks passed" || { echo "FAIL"; exit 1; }
