#!/usr/bin/env python3
"""Independent reference for MLX-format quantization (numpy only; no cairn code, no mlx).

Written from the formulas in shared/research/mlx-quant-format.md (mlx @ 846d176, mlx-lm @ d78bf58):

  affine (bits 2,3,4,5,6,8; group 32/64/128), per group in float32, MLX's CPU quantizer:
      scale = max((w_max - w_min) / (2^bits - 1), 1e-7); scale = -scale unless |w_min| > |w_max|
      edge  = w_min if |w_min| > |w_max| else w_max;  q0 = rint(edge / scale)
      if q0 != 0: scale = edge / q0; bias = edge  else: bias = 0
      q = clamp(rint((w - bias) / scale), 0, 2^bits - 1)        (rint: round half to even)
      scales/biases stored rounded to bf16; dequant w = scale * q + bias with the stored values.
  mxfp4 / mxfp8 (group 32): scale = amax/6 (E2M1) or amax/448 (E4M3), stored E8M0:
      byte = clamp(round(log2(scale)) + 127, 0, 254) (amax 0: byte 0). round(log2) is decided
      exactly: mantissa m of scale in [1, 2) rounds up iff m > sqrt(2) (log2 is never a tie).
  nvfp4 (group 16): scale = E4M3(amax / 6) (round to nearest even, saturating to 448).
  Elements: w / decoded scale in float32 (scale 0: element 0), then E2M1: the nearest entry of
  the 16-entry LUT with ties to the lower index (MLX's CPU fallback: 3.5 -> 3, -0.1 -> +0);
  E4M3: round to nearest even, saturating to +-448.
  Dequantized values are exact in float32 (products of short significands), so they are the
  bit-exact oracle for any implementation.

Packing: each row is one little-endian bit stream, code k at stream bits [k*bits, (k+1)*bits),
read as little-endian uint32 words (codes straddle words at 3, 5 and 6 bits).

Usage:
  mlx_quant_ref.py fixtures OUT_DIR                  # tests/model/fixtures/quant/
  mlx_quant_ref.py model IN_DIR OUT_DIR [--bits 4] [--group-size 64] [--mode affine]
                   [--recipe mixed_4_8|mixed_2_6|mixed_3_4|mixed_3_6|mixed_4_6] [--dequant-out DIR]
    quantizes a Hugging Face checkpoint (bf16 safetensors) the way mlx_lm.convert does: every
    Linear/Embedding (2-D weight) and stacked experts (mlp.experts.E.* -> mlp.switch_mlp.*)
    whose last dim is a multiple of the group size; config.json gets "quantization" and
    "quantization_config". --dequant-out writes the same model with the quantized weights
    replaced by their dequantized values (f32) for end-to-end comparisons.
    Hybrids (Qwen3-Next, Qwen3.5, Qwen3.5-MoE: any layer_types entry "linear_attention") get
    mlx-lm's sanitize first (mlx-quant-format.md 7-8, qwen3_next.py / qwen3_5.py / qwen3_5_moe.py):
    mtp.* and the vision tower dropped; Qwen3.5's names under "language_model." (HF
    "model.language_model.X" -> "language_model.model.X", anything else prefixed); conv1d
    [C, 1, K] -> [C, K, 1]; the (1 + w) norms (input_layernorm, post_attention_layernorm,
    model.norm, q_norm, k_norm; not linear_attn.norm) stored as bf16(w + 1) when the input is in
    the HF layout; fused experts (gate_up_proj [E, 2I, H]) split at the middle; conv1d never
    quantized. Without --recipe, Qwen3-Next and Qwen3.5-MoE get their model's quant_predicate
    (router mlp.gate and shared_expert_gate affine 8 bit group 64), as mlx_lm.convert -q does.
    --vlm-config wraps config.json as mlx_vlm.convert writes the released checkpoints
    (Qwen3_5(Moe)ForConditionalGeneration, the text keys under "text_config").
    The --dequant-out model of a hybrid is in the HF layout again (names, conv1d, per-expert
    weights), all weights f32, each norm w' = f32(stored) - 1 (exact), so transformers computes
    1 + w' = the stored value: it runs exactly the weights the MLX checkpoint holds.
"""
import argparse
import json
import math
import os
import re
import struct
import sys

import numpy as np

AFFINE_BITS = (2, 3, 4, 5, 6, 8)
AFFINE_GROUPS = (32, 64, 128)
FP_MODES = {"mxfp4": (32, 4), "mxfp8": (32, 8), "nvfp4": (16, 4)}
E2M1_LUT = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], dtype=np.float32)

# ==== scalar formats ====


def bf16_bits(x):
    """float32 array -> bf16 bits (uint16), round to nearest even."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return r.astype(np.uint16)


def bf16_to_f32(b):
    return (np.asarray(b, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def e4m3_values():
    v = np.zeros(256, dtype=np.float64)
    for c in range(256):
        s, e, m = c >> 7, (c >> 3) & 15, c & 7
        if e == 15 and m == 7:
            v[c] = np.nan
        elif e == 0:
            v[c] = m / 8.0 * 2.0 ** -6
        else:
            v[c] = (1 + m / 8.0) * 2.0 ** (e - 7)
        if s:
            v[c] = -v[c]
    return v


E4M3 = e4m3_values()
E4M3_POS = E4M3[:0x7F]   # codes 0..0x7e, ascending, 0 .. 448


def e4m3_encode(x):
    """float32 array -> E4M3 codes: nearest, ties to even code, saturating to 448."""
    x = np.asarray(x, dtype=np.float32).astype(np.float64)
    a = np.minimum(np.abs(x), 448.0)
    hi = np.clip(np.searchsorted(E4M3_POS, a, side="left"), 0, 0x7E)   # first value >= a
    lo = np.maximum(hi - 1, 0)
    dlo, dhi = a - E4M3_POS[lo], E4M3_POS[hi] - a
    code = np.where(dlo < dhi, lo, np.where(dhi < dlo, hi, np.where(lo % 2 == 0, lo, hi)))
    code = np.where(E4M3_POS[hi] == a, hi, code)
    sign = np.signbit(x)
    return (code | np.where(sign, 0x80, 0)).astype(np.uint8)


def e2m1_encode(x):
    """float32 array -> E2M1 codes: nearest LUT entry, ties to the lower index."""
    x = np.asarray(x, dtype=np.float32)
    d = np.abs(x[..., None].astype(np.float64) - E2M1_LUT.astype(np.float64))
    return np.argmin(d, axis=-1).astype(np.uint8)


def e8m0_encode(scale):
    """float32 array of positive scales -> E8M0 bytes (round(log2), see the module doc)."""
    out = np.zeros(scale.shape, dtype=np.uint8)
    for i, s in np.ndenumerate(scale.astype(np.float64)):
        if s == 0:
            out[i] = 0
            continue
        m, e = math.frexp(s)          # s = m * 2^e, m in [0.5, 1)
        k = e - 1                     # s = (2m) * 2^k, 2m in [1, 2)
        if 2 * m > math.sqrt(2):
            k += 1
        out[i] = min(max(k + 127, 0), 254)
    return out


def e8m0_decode(b):
    return np.ldexp(np.float32(1.0), b.astype(np.int32) - 127).astype(np.float32)


# ==== packing ====


def pack_rows(codes, bits):
    """codes [..., K] (ints < 2^bits) -> uint32 [..., K*bits/32], one LE bit stream per row."""
    codes = np.asarray(codes, dtype=np.uint64)
    shp = codes.shape
    bit = ((codes[..., None] >> np.arange(bits, dtype=np.uint64)) & 1).astype(np.uint8)
    bit = bit.reshape(shp[:-1] + (shp[-1] * bits,))
    by = np.packbits(bit, axis=-1, bitorder="little")
    return np.ascontiguousarray(by).view("<u4")


def unpack_rows(words, bits, k):
    by = np.ascontiguousarray(words).view(np.uint8)
    bit = np.unpackbits(by, axis=-1, bitorder="little")[..., : k * bits]
    bit = bit.reshape(bit.shape[:-1] + (k, bits)).astype(np.uint64)
    return (bit << np.arange(bits, dtype=np.uint64)).sum(axis=-1)


# ==== quantize / dequantize ====


def affine_quantize(w, bits, gs):
    """w float32 [..., K] -> (weight u32, scales bf16 bits, biases bf16 bits)."""
    w = np.asarray(w, dtype=np.float32)
    g = w.reshape(w.shape[:-1] + (w.shape[-1] // gs, gs))
    n_bins = np.float32(2 ** bits - 1)
    wmin, wmax = g.min(axis=-1), g.max(axis=-1)
    mask = np.abs(wmin) > np.abs(wmax)
    scale = np.maximum((wmax - wmin) / n_bins, np.float32(1e-7)).astype(np.float32)
    scale = np.where(mask, scale, -scale).astype(np.float32)
    edge = np.where(mask, wmin, wmax).astype(np.float32)
    q0 = np.rint(edge / scale).astype(np.float32)
    nz = q0 != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(nz, edge / np.where(nz, q0, 1), scale).astype(np.float32)
    bias = np.where(nz, edge, np.float32(0)).astype(np.float32)
    q = np.rint((g - bias[..., None]) / scale[..., None]).astype(np.float32)
    q = np.clip(q, 0, n_bins).astype(np.uint64).reshape(w.shape)
    return pack_rows(q, bits), bf16_bits(scale), bf16_bits(bias)


def affine_dequantize(weight, scales, biases, bits, gs):
    k = weight.shape[-1] * 32 // bits
    q = unpack_rows(weight, bits, k).astype(np.float32)
    s = np.repeat(bf16_to_f32(scales), gs, axis=-1)
    b = np.repeat(bf16_to_f32(biases), gs, axis=-1)
    return (s * q + b).astype(np.float32)   # s * q is exact, so one rounding, FMA or not


def fp_quantize(w, mode):
    gs, bits = FP_MODES[mode]
    w = np.asarray(w, dtype=np.float32)
    if not np.all(np.isfinite(w)):
        raise ValueError("non-finite weight")
    g = w.reshape(w.shape[:-1] + (w.shape[-1] // gs, gs))
    amax = np.abs(g).max(axis=-1)
    if mode == "nvfp4":
        sc = e4m3_encode(amax / np.float32(6))
        sval = E4M3[sc].astype(np.float32)
    else:
        sc = e8m0_encode((amax / np.float32(6 if bits == 4 else 448)).astype(np.float32))
        sval = e8m0_decode(sc)
    with np.errstate(divide="ignore", invalid="ignore"):
        el = np.where(sval[..., None] != 0, g / sval[..., None], np.float32(0)).astype(np.float32)
    codes = e2m1_encode(el) if bits == 4 else e4m3_encode(el)
    return pack_rows(codes.reshape(w.shape), bits), sc


def fp_dequantize(weight, scales, mode):
    gs, bits = FP_MODES[mode]
    k = weight.shape[-1] * 32 // bits
    codes = unpack_rows(weight, bits, k)
    el = E2M1_LUT[codes] if bits == 4 else E4M3[codes].astype(np.float32)
    sval = E4M3[scales].astype(np.float32) if mode == "nvfp4" else e8m0_decode(scales)
    return (np.repeat(sval, gs, axis=-1) * el).astype(np.float32)


def quantize(w, mode, bits, gs):
    """-> dict of stored arrays {"weight", "scales"[, "biases"]} (numpy, MLX dtypes)."""
    if mode == "affine":
        wq, s, b = affine_quantize(w, bits, gs)
        return {"weight": wq, "scales": s, "biases": b}
    wq, s = fp_quantize(w, mode)
    return {"weight": wq, "scales": s}


def dequantize(t, mode, bits, gs):
    if mode == "affine":
        return affine_dequantize(t["weight"], t["scales"], t["biases"], bits, gs)
    return fp_dequantize(t["weight"], t["scales"], mode)


# ==== safetensors ====

ST_DT = {np.dtype(np.uint16): "BF16", np.dtype("<u4"): "U32", np.dtype(np.uint32): "U32",
         np.dtype(np.uint8): "U8", np.dtype(np.float32): "F32"}
ST_NP = {"BF16": np.uint16, "F16": np.float16, "F32": np.float32, "U32": np.uint32, "U8": np.uint8,
         "I32": np.int32}


def st_write(path, tensors, metadata=None):
    """tensors: name -> numpy array; uint16 arrays are written as BF16."""
    hdr, off, blobs = {}, 0, []
    if metadata:
        hdr["__metadata__"] = metadata
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        raw = a.tobytes()
        hdr[name] = {"dtype": ST_DT[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def st_read(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    hdr = json.loads(data[8:8 + n])
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[8 + n + a:8 + n + b], dtype=ST_NP[v["dtype"]]).reshape(v["shape"])
    return out


# ==== fixtures ====


def fixture_cases():
    for bits in AFFINE_BITS:
        for gs in AFFINE_GROUPS:
            yield "affine", bits, gs
    for mode, (gs, bits) in FP_MODES.items():
        yield mode, bits, gs


def fixture_matrix(rng, rows, cols):
    """Random bf16 values plus rows that hit the quantizers' edge cases."""
    w = (rng.standard_normal((rows, cols)) * 0.05).astype(np.float32)
    w[1, :] = 0.03125                                    # constant groups (q0 == 0 path for positives)
    w[2, :] = np.resize(np.array([-1, -0.5, 0, 0.5, 1, 0.25, -0.25, 0.75], np.float32), cols)  # exact ties
    w[3, : cols // 2] = -np.abs(w[3, : cols // 2]) * 7   # negative-dominant groups (positive scale)
    w[4, :] = 0                                          # all-zero groups
    w[5, :] *= 1e4                                       # large magnitudes
    return bf16_bits(w)


def make_fixtures(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(16)
    rows, cols = 6, 256
    src = fixture_matrix(rng, rows, cols)
    tensors = {"source": src}
    index = []
    for mode, bits, gs in fixture_cases():
        name = f"{mode}_b{bits}_g{gs}"
        t = quantize(bf16_to_f32(src), mode, bits, gs)
        deq = dequantize(t, mode, bits, gs)
        for k, v in t.items():
            tensors[f"{name}.{k}"] = v
        tensors[f"{name}.dequant"] = deq
        index.append({"name": name, "mode": mode, "bits": bits, "group_size": gs})
        err = np.abs(deq - bf16_to_f32(src))[0].max()
        print(f"{name}: weight {list(t['weight'].shape)} scales {list(t['scales'].shape)} max|err| row0 {err:.4g}")
    st_write(os.path.join(out, "quant.safetensors"), tensors, {"format": "mlx"})
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump({"rows": rows, "cols": cols, "cases": index}, f, indent=1)
        f.write("\n")


# ==== models ====


def mixed_predicate(recipe, n_layers):
    """mlx-lm's mixed_X_Y builder (affine); mixed_4_8 is the Qwen3-Next/3.5-MoE model predicate."""
    if recipe == "mixed_4_8":
        def pred(path, gs):
            if path.endswith("mlp.gate") or path.endswith("shared_expert_gate"):
                return {"group_size": 64, "bits": 8}
            return True
        return pred, 4
    m = re.fullmatch(r"mixed_(\d)_(\d)", recipe or "")
    if not m or recipe not in ("mixed_2_6", "mixed_3_4", "mixed_3_6", "mixed_4_6"):
        raise SystemExit(f"unknown recipe {recipe}")
    low, high = int(m.group(1)), int(m.group(2))

    def pred(path, gs):
        idx = re.search(r"layers\.(\d+)\.", path)
        bits = low
        if "lm_head" in path:
            bits = high
        elif idx:
            i = int(idx.group(1))
            more = i < n_layers // 8 or i >= 7 * n_layers // 8 or (i - n_layers // 8) % 3 == 2
            if more and re.search(r"(v_proj|v_a_proj|v_b_proj|down_proj)$", path):
                bits = high
        return {"group_size": gs, "bits": bits, "mode": "affine"}
    return pred, low


def to_mlx_names(w):
    """HF names -> MLX module tree: per-expert weights stacked into switch_mlp."""
    out, experts = {}, {}
    for k, v in w.items():
        m = re.fullmatch(r"(.*\.mlp)\.experts\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight", k)
        if m:
            experts.setdefault((m.group(1), m.group(3)), {})[int(m.group(2))] = v
        else:
            out[k] = v
    for (pre, proj), d in experts.items():
        out[f"{pre}.switch_mlp.{proj}.weight"] = np.stack([d[e] for e in range(len(d))])
    return out


NORM_KEYS = (".input_layernorm.weight", ".post_attention_layernorm.weight", "model.norm.weight",
             ".q_norm.weight", ".k_norm.weight")


def text_cfg(cfg):
    return cfg.get("text_config", cfg)


def is_hybrid(cfg):
    tc = text_cfg(cfg)
    return "linear_attention" in (tc.get("layer_types") or []) or "linear_conv_kernel_dim" in tc


def q35_family(cfg):
    return cfg["architectures"][0].startswith("Qwen3_5")


def split_fused_experts(w):
    out = {}
    for k, v in w.items():
        m = re.fullmatch(r"(.*\.mlp)\.experts\.(gate_up_proj|down_proj)", k)
        if not m:
            out[k] = v
        elif m.group(2) == "down_proj":
            out[f"{m.group(1)}.switch_mlp.down_proj.weight"] = v
        else:
            mid = v.shape[-2] // 2
            out[f"{m.group(1)}.switch_mlp.gate_proj.weight"] = v[..., :mid, :]
            out[f"{m.group(1)}.switch_mlp.up_proj.weight"] = v[..., mid:, :]
    return out


def sanitize_hybrid(w, cfg):
    """mlx-lm's sanitize of a Qwen3-Next / Qwen3.5 / Qwen3.5-MoE HF checkpoint."""
    hf_conv = any("conv1d.weight" in k and v.shape[-1] != 1 for k, v in w.items())
    out = {}
    for k, v in w.items():
        if "mtp." in k or k.startswith("model.visual") or k.startswith("vision_tower"):
            continue
        if q35_family(cfg):
            if k.startswith("model.language_model"):
                k = k.replace("model.language_model", "language_model.model", 1)
            elif not k.startswith("language_model."):
                k = "language_model." + k
        if "conv1d.weight" in k and v.shape[-1] != 1:
            v = np.ascontiguousarray(np.moveaxis(v, 2, 1))
        if hf_conv and v.ndim == 1 and k.endswith(NORM_KEYS):
            # v + 1.0 on a bf16 array: computed in f32, rounded to bf16
            v = bf16_bits(bf16_to_f32(v) + np.float32(1.0)) if v.dtype == np.uint16 else v + np.float32(1.0)
        out[k] = v
    return split_fused_experts(to_mlx_names(out))


def unsanitize_hybrid(w, cfg):
    """MLX names and layout back to the HF checkpoint's (for transformers), all f32; the norms
    as w' = stored - 1 so that transformers' 1 + w' is the stored value."""
    out = {}
    for k, v in w.items():
        a = bf16_to_f32(v) if v.dtype == np.uint16 else v.astype(np.float32)
        if q35_family(cfg) and k.startswith("language_model."):
            k = k[len("language_model."):]
        if "conv1d.weight" in k:
            a = np.ascontiguousarray(np.moveaxis(a, 1, 2))
        if a.ndim == 1 and k.endswith(NORM_KEYS):
            a = a - np.float32(1.0)   # exact: a is bf16(1 + w), within [2^-8, 2^8]
        out[k] = a
    return out


def vlm_config(cfg):
    """config.json as mlx_vlm.convert writes a Qwen3.5 / 3.6 release (text keys nested)."""
    arch = cfg["architectures"][0].replace("ForCausalLM", "ForConditionalGeneration")
    tc = {k: v for k, v in cfg.items() if k not in ("architectures", "quantization", "quantization_config")}
    tc["model_type"] = cfg["model_type"] if cfg["model_type"].endswith("_text") else cfg["model_type"] + "_text"
    out = {"architectures": [arch], "model_type": tc["model_type"][:-len("_text")], "text_config": tc,
           "tie_word_embeddings": cfg.get("tie_word_embeddings", False)}
    for k in ("eos_token_id", "bos_token_id", "pad_token_id"):
        if k in cfg:
            out[k] = cfg[k]
    return out


def quantize_model(args):
    with open(os.path.join(args.in_dir, "config.json")) as f:
        cfg = json.load(f)
    w = st_read(os.path.join(args.in_dir, "model.safetensors"))
    hybrid = is_hybrid(cfg)
    if text_cfg(cfg).get("tie_word_embeddings", cfg.get("tie_word_embeddings")):
        w.pop("lm_head.weight", None)
    w = sanitize_hybrid(w, cfg) if hybrid else to_mlx_names(w)
    mode = args.mode
    gs, bits = (args.group_size, args.bits) if mode == "affine" else FP_MODES[mode]
    qcfg = {"group_size": gs, "bits": bits, "mode": mode}
    pred = None
    recipe = args.recipe
    if not recipe and hybrid and text_cfg(cfg).get("num_experts", 0) > 0:
        recipe = "mixed_4_8"   # the model's own quant_predicate (qwen3_next.py, qwen3_5.py)
    if recipe:
        pred, low = mixed_predicate(recipe, text_cfg(cfg)["num_hidden_layers"])
        if recipe != "mixed_4_8":   # mlx-lm's mixed_X_Y: the low width is the top level's
            bits = qcfg["bits"] = low
    out, deq = {}, {}
    for name in sorted(w):
        v = w[name]
        if not name.endswith(".weight") or v.ndim < 2 or "conv1d" in name:   # nn.Conv1d has no to_quantized
            out[name] = deq[name] = v
            continue
        path = name[: -len(".weight")]
        if v.shape[-1] % gs:
            out[name] = deq[name] = v
            continue
        p = pred(path, gs) if pred else True
        if p is False:
            out[name] = deq[name] = v
            continue
        m_mode, m_bits, m_gs = mode, bits, gs
        if isinstance(p, dict):
            qcfg[path] = p
            m_mode = p.get("mode", "affine")
            m_gs = p.get("group_size") or (64 if m_mode == "affine" else FP_MODES[m_mode][0])
            m_bits = p.get("bits") or (4 if m_mode == "affine" else FP_MODES[m_mode][1])
        t = quantize(bf16_to_f32(v), m_mode, m_bits, m_gs)
        for k, a in t.items():
            out[f"{path}.{k}"] = a
        deq[name] = dequantize(t, m_mode, m_bits, m_gs)
    dcfg = dict(cfg)
    if hybrid:
        cfg.pop("vision_config", None)   # mlx-lm's save_config (the vision tower is dropped)
    if hybrid and args.vlm_config:
        cfg = vlm_config(cfg)
    cfg["quantization"] = qcfg
    cfg["quantization_config"] = qcfg
    write_model(args.out_dir, cfg, out, args.in_dir)
    if args.dequant_out:
        if hybrid:
            deq = unsanitize_hybrid(deq, dcfg)
        write_model(args.dequant_out, dcfg, deq, args.in_dir, hf_names=True)


def write_model(out_dir, cfg, tensors, in_dir, hf_names=False):
    os.makedirs(out_dir, exist_ok=True)
    if hf_names:   # unstack switch_mlp back into per-expert HF names
        t2 = {}
        for k, v in tensors.items():
            m = re.fullmatch(r"(.*\.mlp)\.switch_mlp\.(gate_proj|up_proj|down_proj)\.weight", k)
            if m:
                for e in range(v.shape[0]):
                    t2[f"{m.group(1)}.experts.{e}.{m.group(2)}.weight"] = v[e]
            else:
                t2[k] = v
        tensors = t2
    st_write(os.path.join(out_dir, "model.safetensors"), tensors, {"format": "mlx"})
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=4)
        f.write("\n")
    gen = os.path.join(in_dir, "generation_config.json")
    if os.path.exists(gen):
        with open(gen) as f, open(os.path.join(out_dir, "generation_config.json"), "w") as g:
            g.write(f.read())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    fx = sub.add_parser("fixtures")
    fx.add_argument("out")
    md = sub.add_parser("model")
    md.add_argument("in_dir")
    md.add_argument("out_dir")
    md.add_argument("--bits", type=int, default=4)
    md.add_argument("--group-size", type=int, default=64)
    md.add_argument("--mode", default="affine", choices=["affine"] + list(FP_MODES))
    md.add_argument("--recipe")
    md.add_argument("--dequant-out")
    md.add_argument("--vlm-config", action="store_true")
    a = ap.parse_args()
    if a.cmd == "fixtures":
        make_fixtures(a.out)
    else:
        if a.mode == "affine" and (a.bits not in AFFINE_BITS or a.group_size not in AFFINE_GROUPS):
            sys.exit(f"affine supports bits {AFFINE_BITS} and group sizes {AFFINE_GROUPS}")
        quantize_model(a)


if __name__ == "__main__":
    main()
