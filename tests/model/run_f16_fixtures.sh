#!/usr/bin/env bash
# The model fixtures with their weights stored as f16: each fixture's bf16 tensors copied to F16
# (exact: bf16 values are f16 values, but for the few below f16's normal range, which round
# there), then test_fixtures against the same transformers references on cpu (f16 weights as
# exact bf16 hi + lo pairs through the bf16 dot tiles, kbf16.h, where the CPU has AVX-512 BF16)
# and cpu-precise (the f32 tiles). The `default` fixture keeps its bf16 checkpoint (models/).
set -euo pipefail
BUILD=${BUILD:-build}
T=$(mktemp -d /tmp/cairn_f16_fixtures.XXXXXX)
trap 'rm -rf "$T"' EXIT

python3 - tests/model/fixtures "$T" <<'PY'
import json, os, shutil, struct, sys
src_root, dst_root = sys.argv[1:]
for fx in sorted(os.listdir(src_root)):
    src, dst = os.path.join(src_root, fx), os.path.join(dst_root, fx)
    if not os.path.isdir(src):
        continue
    os.makedirs(dst)
    for name in os.listdir(src):
        p = os.path.join(src, name)
        if os.path.isdir(p):
            shutil.copytree(p, os.path.join(dst, name))
            continue
        if not name.endswith(".safetensors"):
            shutil.copy(p, dst)
            continue
        with open(p, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
            tensors = []
            for key, t in header.items():
                if key == "__metadata__":
                    continue
                a, b = t["data_offsets"]
                f.seek(8 + n + a)
                raw = f.read(b - a)
                if t["dtype"] == "BF16":   # bf16 -> f32 (exact) -> f16 (round to nearest even)
                    u = struct.unpack("<%dH" % (len(raw) // 2), raw)
                    v = struct.unpack("<%df" % len(u), struct.pack("<%dI" % len(u), *[x << 16 for x in u]))
                    raw, t = struct.pack("<%de" % len(v), *v), dict(t, dtype="F16")
                tensors.append((key, t, raw))
        out, off = {"__metadata__": header.get("__metadata__", {})}, 0
        for key, t, raw in tensors:
            out[key] = dict(t, data_offsets=[off, off + len(raw)])
            off += len(raw)
        hb = json.dumps(out).encode()
        hb += b" " * (-len(hb) % 8)
        with open(os.path.join(dst, name), "wb") as g:
            g.write(struct.pack("<Q", len(hb)) + hb)
            for _, _, raw in tensors:
                g.write(raw)
PY
grep -q '"F16"' "$T/qwen3/model.safetensors" || { echo "FAIL: no F16 tensors in the copies"; exit 1; }
CAIRN_TEST_FIXTURES_DIR="$T" CAIRN_TEST_BACKENDS=cpu,cpu-precise "$BUILD/tests/model/test_fixtures"
