#!/usr/bin/env python3
"""st_to_f16.py IN_DIR OUT_DIR: copies a bf16 safetensors checkpoint with every BF16 tensor stored
as F16 (round to nearest even through float32), other files copied as they are. bench/peer_llamacpp.sh
uses it to give cairn the f16 twin of the checkpoint that llama.cpp converts to an f16 GGUF (cairn synth
writes bf16 only). Debian's numpy only; one tensor in memory at a time."""
import json
import os
import shutil
import struct
import sys

import numpy as np


def convert(src, dst):
    with open(src, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        out_header, offset = {}, 0
        for name, t in header.items():
            if name == "__metadata__":
                out_header[name] = t
                continue
            a, b = t["data_offsets"]
            size = b - a  # BF16 and F16 are both 2 bytes
            out_header[name] = dict(t, dtype="F16" if t["dtype"] == "BF16" else t["dtype"],
                                    data_offsets=[offset, offset + size])
            offset += size
        hb = json.dumps(out_header, separators=(",", ":")).encode()
        hb += b" " * (-len(hb) % 8)
        with open(dst, "wb") as g:
            g.write(struct.pack("<Q", len(hb)))
            g.write(hb)
            for name, t in header.items():
                if name == "__metadata__":
                    continue
                a, b = t["data_offsets"]
                f.seek(base + a)
                raw = f.read(b - a)
                if t["dtype"] == "BF16":
                    u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
                    raw = u.view(np.float32).astype(np.float16).tobytes()
                g.write(raw)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: st_to_f16.py IN_DIR OUT_DIR")
    src, dst = sys.argv[1:]
    os.makedirs(dst, exist_ok=True)
    for name in sorted(os.listdir(src)):
        p = os.path.join(src, name)
        if name.endswith(".safetensors"):
            convert(p, os.path.join(dst, name))
        elif name == "config.json":
            with open(p) as f:
                cfg = json.load(f)
            cfg["torch_dtype"] = "float16"
            with open(os.path.join(dst, name), "w") as f:
                json.dump(cfg, f, indent=2)
        elif os.path.isfile(p):
            shutil.copy(p, dst)


if __name__ == "__main__":
    main()
