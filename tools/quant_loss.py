#!/usr/bin/env python3
"""Held-out loss of quantized checkpoints against the bf16 original (numpy only).

    /usr/bin/python3 tools/quant_loss.py TEXT_FILE MODEL_DIR [MODEL_DIR...] [--cairn build/cairn]

Tokenizes TEXT_FILE with the first model's tokenizer (`cairn tokenize`), runs `cairn logits`
(cpu backend) over windows of the model's context, and prints the mean next-token negative
log-likelihood (nats/token) of every model and its change relative to the first one.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("text")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--cairn", default="build/cairn")
    ap.add_argument("--window", type=int, default=1024)
    a = ap.parse_args()
    out = subprocess.run([a.cairn, "tokenize", a.models[0], "--text-file", a.text], check=True,
                         capture_output=True, text=True).stdout
    ids = json.loads(out)
    if isinstance(ids, dict):
        ids = ids.get("ids") or ids.get("input_ids")
    ids = [int(i) for i in ids]
    base = None
    for m in a.models:
        with open(os.path.join(m, "config.json")) as f:
            vocab = json.load(f)["vocab_size"]
        nll, n = 0.0, 0
        for w0 in range(0, len(ids) - 1, a.window):
            win = ids[w0:w0 + a.window + 1]
            if len(win) < 2:
                break
            with tempfile.NamedTemporaryFile(suffix=".f32") as tf:
                subprocess.run([a.cairn, "logits", m, "--ids", ",".join(map(str, win[:-1])), "--out", tf.name,
                                "--backend", "cpu", "--threads", "2"], check=True, capture_output=True)
                lg = np.fromfile(tf.name, dtype="<f4").reshape(len(win) - 1, vocab).astype(np.float64)
            mx = lg.max(axis=1, keepdims=True)
            lse = (mx[:, 0] + np.log(np.exp(lg - mx).sum(axis=1)))
            nll += float((lse - lg[np.arange(len(win) - 1), win[1:]]).sum())
            n += len(win) - 1
        loss = nll / n
        if base is None:
            base = loss
        print(f"{m}: {loss:.4f} nats/token over {n} tokens ({100 * (loss - base) / base:+.2f}% vs {a.models[0]})")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
