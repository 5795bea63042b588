"""fixture_config_edits.py: config.json edits applied to a fixture after its reference is computed.

Each edit leaves transformers' logits unchanged (checked when the fixture was made) and makes the
fixture look like real published checkpoints or exercise a second spelling of a key:
  - qwen3_moe_b: transformers 5.17 saves the expert count as "num_local_experts"; published
    Qwen3-MoE checkpoints say "num_experts" (transformers maps it to the same attribute). The b
    fixture uses the published spelling, the a fixture keeps transformers' own.
  - gemma3_scaled: transformers 5.17's Gemma3 attention ignores attn_logit_softcapping (it does not
    pass softcap to the attention function: logits identical with and without it), and published
    Gemma 3 configs have null there, so the key is set to null.
Usable without torch:  python3 tools/fixture_config_edits.py tests/model/fixtures
"""
import json
import os
import sys


def edit(fixture_dir, name):
    """Applies the edits for fixture NAME in FIXTURE_DIR; returns a list of notes."""
    p = os.path.join(fixture_dir, "config.json")
    with open(p) as f:
        cfg = json.load(f)
    notes = []
    if name == "qwen3_moe_b" and "num_local_experts" in cfg:
        cfg["num_experts"] = cfg.pop("num_local_experts")
        notes.append("config.json: num_local_experts renamed num_experts (published spelling; "
                     "same attribute in transformers)")
    if name == "gemma3_scaled" and cfg.get("attn_logit_softcapping") is not None:
        cfg["attn_logit_softcapping"] = None
        notes.append("config.json: attn_logit_softcapping set to null, since transformers "
                     "does not apply it (the reference is unchanged)")
    if notes:
        with open(p, "w") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
            f.write("\n")
    return notes


def main(root):
    for name in sorted(os.listdir(root)):
        d = os.path.join(root, name)
        if not os.path.isfile(os.path.join(d, "config.json")):
            continue
        notes = edit(d, name)
        if notes:
            rp = os.path.join(d, "ref.json")
            with open(rp) as f:
                ref = json.load(f)
            ref["notes"] = ref.get("notes", []) + notes
            with open(rp, "w") as f:
                json.dump(ref, f, indent=1)
                f.write("\n")
            print(name, notes)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/model/fixtures")
