#!/usr/bin/env python3
"""make_quant_fixtures.py: transformers references for the MLX-quantized hybrid fixtures in
tests/model/fixtures/quant/models (GPU machine: torch + transformers 5; runs on the CPU in f32).

Per case below:
  1. tools/mlx_quant_ref.py (independent numpy, no cairn code) quantizes the bf16 transformers
     fixture as mlx_lm.convert does (sanitize, model predicate or recipe) into a scratch dir, and
     writes the dequantized model in the HF layout (f32 weights; each norm w' = stored - 1, so that
     transformers' 1 + w' is exactly the stored value);
  2. the regenerated checkpoint must equal the committed one byte for byte (the fixture is the
     script's, not a hand edit);
  3. transformers (make_model_fixtures.load: the hybrid's own class, f32, eager) runs the
     dequantized model on the source fixture's prompts: logits of every position of prompt 0
     (40 tokens) and of the last TAIL positions of prompt 1 (300 tokens: the DeltaNet state after
     several 64-token chunks), and a 24-token greedy continuation of prompt 0 (argmax loop over
     full forward passes) with its smallest top1 - top2 margin.
Writes OUT/<case>/{ref.json, logits_0.f32, logits_1_tail.f32} (little-endian f32, row-major
[n_tok, vocab]); copy them into tests/model/fixtures/quant/models/<case>/.

Usage: python3 tools/make_quant_fixtures.py --out OUT [--only case,case]
"""
import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mlx_quant_ref  # noqa: E402
import make_model_fixtures as mmf  # noqa: E402  (imports torch and transformers)

QDIR = "tests/model/fixtures/quant/models"
TAIL = 64
CASES = [   # name, source fixture, mlx_quant_ref model options
    ("qwen3_next_q4g64", "qwen3_next", dict(bits=4, group_size=64, mode="affine", recipe=None, vlm_config=False)),
    ("qwen3_next_mxfp4", "qwen3_next", dict(bits=4, group_size=64, mode="mxfp4", recipe=None, vlm_config=False)),
    ("qwen3_5_moe_vlm_q4g32", "qwen3_5_moe",
     dict(bits=4, group_size=32, mode="affine", recipe=None, vlm_config=True)),
    ("qwen3_5_mixed_3_6_g32", "qwen3_5",
     dict(bits=4, group_size=32, mode="affine", recipe="mixed_3_6", vlm_config=False)),
]


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def make_case(out_root, name, src, opts):
    print(f"\n=== {name} (from {src})", flush=True)
    scratch = tempfile.mkdtemp()
    try:
        qdir, ddir = os.path.join(scratch, "q"), os.path.join(scratch, "deq")
        args = types.SimpleNamespace(in_dir=os.path.join("tests/model/fixtures", src), out_dir=qdir,
                                     dequant_out=ddir, **opts)
        mlx_quant_ref.quantize_model(args)
        same = all(sha(os.path.join(qdir, fn)) == sha(os.path.join(QDIR, name, fn))
                   for fn in ("model.safetensors", "config.json"))
        print(f"{name}: regenerated checkpoint {'equals' if same else 'DIFFERS FROM'} the committed one")
        with open(os.path.join("tests/model/fixtures", src, "ref.json")) as f:
            src_ref = json.load(f)
        p0, p1 = src_ref["prompts"][0], src_ref["prompts"][1]
        m = mmf.load(ddir)
        d = os.path.join(out_root, name)
        os.makedirs(d, exist_ok=True)
        lg0 = mmf.logits_of(m, p0)
        lg1 = mmf.logits_of(m, p1)[-TAIL:]
        mmf.write_f32(os.path.join(d, "logits_0.f32"), lg0)
        mmf.write_f32(os.path.join(d, "logits_1_tail.f32"), lg1)
        greedy, margins = mmf.greedy_loop(m, p0, mmf.N_GREEDY)
        ref = {
            "source": src,
            "prompts": [p0, p1],
            "logits_files": ["logits_0.f32", "logits_1_tail.f32"],
            "logits_rows": [[0, len(p0)], [len(p1) - TAIL, len(p1)]],
            "greedy_prompt": 0,
            "greedy": greedy,
            "greedy_min_margin": min(margins),
            "vocab": int(lg0.shape[-1]),
            "quantize": {k: v for k, v in opts.items()},
            "regenerated_equal": same,
            "transformers": mmf.transformers.__version__,
            "torch": mmf.torch.__version__,
            "notes": ["transformers f32 eager on the CPU, on the dequantized weights of the MLX checkpoint "
                      "(tools/mlx_quant_ref.py --dequant-out)"],
        }
        with open(os.path.join(d, "ref.json"), "w") as f:
            json.dump(ref, f, indent=1)
            f.write("\n")
        print(f"{name}: greedy {greedy}, min margin {min(margins):.4f}")
    finally:
        shutil.rmtree(scratch)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    mmf.torch.set_num_threads(min(8, os.cpu_count() or 1))
    only = set(x for x in a.only.split(",") if x)
    for name, src, opts in CASES:
        if not only or name in only:
            make_case(a.out, name, src, opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
