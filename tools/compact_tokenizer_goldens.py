#!/usr/bin/env python3
"""Compacts the raw output of tools/make_tokenizer_goldens.py into the committed fixtures:
  - the decode reference becomes HF tokenizers' own decode ("kd"/"kds" when present, else "d"/"ds"):
    transformers 5 applies no clean_up_tokenization to BPE tokenizers, and for DeepSeek-V3 its
    LlamaTokenizer class rebuilds a different pipeline than tokenizer.json (counted in the header);
  - transformers' differing ids ("tf", "tf_s") are dropped, their counts go into the header;
  - "d"/"ds" are omitted when equal to header "d_prefix"/"ds_prefix" + text (the decoded BOS etc.);
  - synthetic tokenizers keep the first N_SYNTH strings; JSON without spaces.
usage: python3 tools/compact_tokenizer_goldens.py RAW_DIR tests/text/golden
"""
import json
import os
import shutil
import sys

N_SYNTH = 400


def main(src, dst):
    shutil.copy(os.path.join(src, "tok_strings.jsonl"), os.path.join(dst, "tok_strings.jsonl"))
    texts = [json.loads(l)["t"] for l in open(os.path.join(src, "tok_strings.jsonl"), encoding="utf-8").read().split("\n") if l]
    for f in sorted(os.listdir(src)):
        if not f.startswith("tok_") or f == "tok_strings.jsonl":
            continue
        lines = [l for l in open(os.path.join(src, f), encoding="utf-8").read().split("\n") if l]
        hdr = json.loads(lines[0])
        synth = hdr["name"].startswith("synth")
        out, n_tf, n_tf_s, i = [], 0, 0, 0
        from collections import Counter
        pd, pds = Counter(), Counter()
        for k, l in enumerate(lines[1:]):
            r = json.loads(l)
            if "r" in r or k >= len(texts):
                continue
            for key, c in (("d", pd), ("ds", pds)):
                d = r.get("k" + key, r.get(key, texts[k]))
                if d.endswith(texts[k]):
                    c[d[:len(d) - len(texts[k])]] += 1
        skip_differs = any('"kds"' in l for l in lines[1:])
        hdr["d_prefix"] = pd.most_common(1)[0][0] if pd else ""
        hdr["ds_prefix"] = pds.most_common(1)[0][0] if pds else ""
        for l in lines[1:]:
            r = json.loads(l)
            if "r" in r:
                rec = {"r": r["r"], "d": r.get("kd", r["d"])}
                # Random lines only recorded tokenizers' own skip_special=False decode; trust
                # transformers' skip_special=True decode only where it agrees with tokenizers.
                if "kd" not in r and not skip_differs:
                    rec["ds"] = r["ds"]
                out.append(rec)
                continue
            text = texts[i]
            i += 1
            n_tf += "tf" in r
            n_tf_s += "tf_s" in r
            if synth and i > N_SYNTH:
                continue
            rec = {"ids": r["ids"]}
            if "ids_s" in r:
                rec["ids_s"] = r["ids_s"]
            d = r.get("kd", r.get("d", text))
            ds = r.get("kds", r.get("ds", text))
            if d != hdr["d_prefix"] + text:
                rec["d"] = d
            if ds != hdr["ds_prefix"] + text:
                rec["ds"] = ds
            out.append(rec)
        hdr["transformers_ids_differ"] = n_tf
        hdr["transformers_ids_special_differ"] = n_tf_s
        hdr["n_strings"] = min(i, N_SYNTH) if synth else i
        with open(os.path.join(dst, f), "w", encoding="utf-8") as o:
            o.write(json.dumps(hdr, ensure_ascii=False, separators=(",", ":")) + "\n")
            for rec in out:
                o.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    main(sys.argv[1], sys.argv[2])
