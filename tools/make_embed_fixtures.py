#!/usr/bin/env python3
"""make_embed_fixtures.py: a tiny random-weight Qwen3 embedding model saved the way Qwen3-Embedding
is (Qwen3Model.save_pretrained: tensor names without "model.", no lm_head.weight), with
transformers' embeddings of a handful of inputs, for tests/model (test_embed).

The reference is what the Qwen3-Embedding model card does with transformers:
    batch = tokenizer(texts, padding=True (padding_side="left"), ...)
    out = model(**batch)                                  # AutoModel -> Qwen3Model
    emb = out.last_hidden_state[:, -1]                    # last-token pooling (left padding)
    emb = F.normalize(emb, p=2, dim=1)
here with token ids instead of text (no tokenizer: the fixture tests the model, not a tokenizer).
All inputs go through ONE left-padded batch (lengths 1 to 400, so padding and a long input are
both exercised); each input is also run alone, and the largest batch-vs-solo difference is
printed and stored (transformers' own padding noise: cairn runs every input unpadded). Matryoshka:
the first 32 dimensions of the unnormalised pooled vector, normalised again.

Model: hidden 64, 3 layers, 4 heads / 2 KV heads, head_dim 32, vocab 320, bf16 weights drawn as
tools/make_model_fixtures.py does (its init_weights, seeded from the fixture name). The reference
reloads the SAVED directory in float32 with eager attention on the CPU.

Writes tests/model/fixtures/qwen3_embed/{config.json, model.safetensors, ref.json, embed.f32,
embed_dim32.f32}: embed.f32 is little-endian float32 [n_inputs, 64] (normalised), embed_dim32.f32
[n_inputs, 32]. ref.json: {"inputs" (token id lists), "dims", "files", "batch_vs_solo_max_abs",
"transformers", "torch", "arch", "tensors"}.

Run (GPU machine, transformers 5.x + torch; no GPU needed):
    python3 tools/make_embed_fixtures.py --out tests/model/fixtures
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from safetensors import safe_open

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_model_fixtures as mmf  # noqa: E402  (common(), rope_alts(), make_config(), init_weights(), seed_of(), write_f32())

NAME = "qwen3_embed"
LENGTHS = (1, 5, 17, 40, 64, 400)
MATRYOSHKA = 32
PAD = 0


def inputs(vocab):
    g = torch.Generator().manual_seed(mmf.seed_of(NAME, 2))
    out = []
    for n in LENGTHS:
        ids = torch.randint(3, vocab, (n,), generator=g).tolist()   # no pad/bos/eos ids inside
        out.append(ids)
    return out


@torch.no_grad()
def pooled_batch(model, seqs):
    """The model card's recipe: left padding, last position, batch of all inputs."""
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), PAD, dtype=torch.long)
    mask = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, n - len(s):] = torch.tensor(s)
        mask[i, n - len(s):] = 1
    out = model(input_ids=ids, attention_mask=mask)
    assert bool(mask[:, -1].all()), "left padding: every row ends on a real token"
    return out.last_hidden_state[:, -1].float()


@torch.no_grad()
def pooled_solo(model, s):
    x = torch.tensor([s], dtype=torch.long)
    return model(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state[0, -1].float()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/model/fixtures")
    a = ap.parse_args()
    torch.set_num_threads(min(8, os.cpu_count() or 1))
    print(f"transformers {transformers.__version__} torch {torch.__version__}")

    d = os.path.join(a.out, NAME)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    base = dict(mmf.common(layers=3, hd=32), tie_word_embeddings=False)
    cfg, alt = mmf.make_config("Qwen3ForCausalLM", base, mmf.rope_alts(1000000.0), None)
    torch.manual_seed(mmf.seed_of(NAME, 0))
    full = transformers.Qwen3ForCausalLM(cfg)
    mmf.init_weights(full, NAME, gemma=False)
    full.to(torch.bfloat16)
    # What Qwen3-Embedding ships: the base model alone, saved by Qwen3Model.
    body = full.model
    body.config.architectures = ["Qwen3Model"]
    body.save_pretrained(d)
    del full, body

    st = os.path.join(d, "model.safetensors")
    names = []
    with safe_open(st, framework="pt") as f:
        for k in sorted(f.keys()):
            t = f.get_tensor(k)
            names.append(k)
            print(f"tensor {k} {list(t.shape)} {str(t.dtype).replace('torch.', '')}")
    assert not any(k.startswith("model.") or k.startswith("lm_head") for k in names), names
    with open(os.path.join(d, "config.json")) as f:
        arch = json.load(f)["architectures"]
    print(f"config architectures {arch}")

    try:
        model = transformers.AutoModel.from_pretrained(d, dtype=torch.float32, attn_implementation="eager")
    except TypeError:
        model = transformers.AutoModel.from_pretrained(d, torch_dtype=torch.float32, attn_implementation="eager")
    model.eval()
    print(f"loaded as {type(model).__name__}")

    seqs = inputs(cfg.vocab_size)
    raw = pooled_batch(model, seqs)
    solo = torch.stack([pooled_solo(model, s) for s in seqs])
    diff = float((raw - solo).abs().max())
    print(f"batch (left padded) vs solo, unnormalised: max abs {diff:.3g}")
    emb = F.normalize(raw, p=2, dim=1)
    emb32 = F.normalize(raw[:, :MATRYOSHKA], p=2, dim=1)
    shape = mmf.write_f32(os.path.join(d, "embed.f32"), emb)
    shape32 = mmf.write_f32(os.path.join(d, "embed_dim32.f32"), emb32)
    ref = {
        "inputs": seqs, "dims": [cfg.hidden_size, MATRYOSHKA],
        "files": {"embed": "embed.f32", "embed_dim32": "embed_dim32.f32"},
        "shapes": [shape, shape32], "batch_vs_solo_max_abs": diff, "pad_id": PAD,
        "pooling": "last token of a left-padded batch, then L2 normalisation",
        "transformers": transformers.__version__, "torch": torch.__version__,
        "arch": arch, "tensors": names,
    }
    with open(os.path.join(d, "ref.json"), "w") as f:
        json.dump(ref, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(d, fn)) for fn in os.listdir(d))
    print(f"{NAME}: files {sorted(os.listdir(d))}, {total} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
