#!/usr/bin/env python3
"""hybrid_numpy_reference.py: an independent float64 numpy implementation of the Qwen3-Next /
Qwen3.5 / Qwen3.5-MoE text forward pass, written from transformers' modeling code, to check cairn's
hybrid forward where transformers is not installed (the authoritative check stays the fixtures of
tools/make_model_fixtures.py, run with transformers on the GPU machine).

It follows transformers' structure, not cairn's: the checkpoint's own tensor layouts (q_proj viewed
[heads, 2 * head_dim] and chunked into query and gate; Qwen3-Next's in_proj_qkvz / in_proj_ba split
per key-head group as fix_query_key_value_ordering does), the conv as a zero-padded depthwise
convolution, and the delta rule in the CHUNKED form of torch_chunk_gated_delta_rule (chunk 64,
the triangular solve by forward substitution), where cairn runs the recurrent form.

    /usr/bin/python3 tools/hybrid_numpy_reference.py MODEL_DIR --ids 5,17,42 --out ref.f32
    cairn logits MODEL_DIR --ids 5,17,42 --out got.f32 --backend cpu      # then compare the files
    /usr/bin/python3 tools/hybrid_numpy_reference.py --rescale-synth MODEL_DIR
        rewrites a `cairn synth` checkpoint (values base + N(0, 0.02)) in place with the fixtures'
        statistics (matrices N(0, 0.08), (1 + w) norms N(0, 0.15), the DeltaNet norm 1 + N(0, 0.15),
        conv taps N(0, 0.4), A_log N(-1.5, 0.5), dt_bias N(0, 0.5)), so that every part matters
tools/check_hybrid_numpy.sh runs the whole comparison for the three families.

Needs numpy only (Debian: python3-numpy). Reads config.json and model.safetensors (bf16/f16/f32).
"""
import argparse
import json
import os
import struct
import sys

import numpy as np


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in hdr.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = data[a:b]
        dt = info["dtype"]
        if dt == "BF16":
            v = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        elif dt == "F16":
            v = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        elif dt == "F32":
            v = np.frombuffer(raw, dtype="<f4")
        else:
            raise ValueError(f"{name}: dtype {dt}")
        out[name] = v.astype(np.float64).reshape(info["shape"])
    return out


class Weights:
    def __init__(self, d):
        self.t = load_safetensors(os.path.join(d, "model.safetensors"))

    def get(self, name):
        if name in self.t:
            return self.t[name]
        alt = "model.language_model." + name[len("model."):]
        return self.t[alt]

    def has(self, name):
        return name in self.t or ("model.language_model." + name[len("model."):]) in self.t


def rms1p(x, w, eps):   # zero-centred RMSNorm: x / rms * (1 + w)
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * (1.0 + w)


def silu(x):
    return x / (1.0 + np.exp(-x))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def softplus(x):
    return np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20))))


def l2norm(x, eps=1e-6):
    return x / np.sqrt((x * x).sum(-1, keepdims=True) + eps)


def chunk_gated_delta_rule(q, k, v, g, beta, C=64):
    """transformers' torch_chunk_gated_delta_rule for one sequence: q, k [T, H, dk], v [T, H, dv],
    g, beta [T, H]; q and k already L2-normalised; returns [T, H, dv]."""
    T, H, dk = q.shape
    dv = v.shape[-1]
    q = q * (1.0 / np.sqrt(dk))
    pad = (C - T % C) % C
    P = lambda x: np.concatenate([x, np.zeros((pad,) + x.shape[1:])], 0)   # noqa: E731
    q, k, v, g, beta = P(q), P(k), P(v), P(g), P(beta)
    n = (T + pad) // C
    out = np.zeros((T + pad, H, dv))
    for h in range(H):
        S = np.zeros((dk, dv))
        for c in range(n):
            s = slice(c * C, (c + 1) * C)
            qc, kc, vc, gc, bc = q[s, h], k[s, h], v[s, h], g[s, h], beta[s, h]
            G = np.cumsum(gc)
            D = np.tril(np.exp(G[:, None] - G[None, :]))
            kb = kc * bc[:, None]
            A = -np.tril((kb @ kc.T) * D, -1)
            for i in range(1, C):   # forward substitution: (I + L)^-1 built in place
                A[i, :i] = A[i, :i] + (A[i, :i, None] * A[:i, :i]).sum(0)
            A = A + np.eye(C)
            U = A @ (vc * bc[:, None])
            W = A @ (kb * np.exp(G)[:, None])
            Vn = U - W @ S
            inner = np.tril((qc @ kc.T) * D)
            out[s, h] = (qc * np.exp(G)[:, None]) @ S + inner @ Vn
            S = S * np.exp(G[-1]) + (kc * np.exp(G[-1] - G)[:, None]).T @ Vn
    return out[:T]


def gdn(x, W, p, cfg, eps):
    T = x.shape[0]
    nk, nv = cfg["linear_num_key_heads"], cfg["linear_num_value_heads"]
    dk, dv = cfg["linear_key_head_dim"], cfg["linear_value_head_dim"]
    K = cfg.get("linear_conv_kernel_dim", 4)
    r = nv // nk
    if W.has(p + "in_proj_qkvz.weight"):   # Qwen3-Next: grouped by key head
        qkvz = (x @ W.get(p + "in_proj_qkvz.weight").T).reshape(T, nk, 2 * dk + 2 * r * dv)
        ba = (x @ W.get(p + "in_proj_ba.weight").T).reshape(T, nk, 2 * r)
        q, k = qkvz[..., :dk], qkvz[..., dk:2 * dk]
        vv, z = qkvz[..., 2 * dk:2 * dk + r * dv], qkvz[..., 2 * dk + r * dv:]
        b, a = ba[..., :r].reshape(T, nv), ba[..., r:].reshape(T, nv)
        mixed = np.concatenate([q.reshape(T, -1), k.reshape(T, -1), vv.reshape(T, -1)], -1)
        z = z.reshape(T, nv, dv)
    else:
        mixed = x @ W.get(p + "in_proj_qkv.weight").T
        z = (x @ W.get(p + "in_proj_z.weight").T).reshape(T, nv, dv)
        b = x @ W.get(p + "in_proj_b.weight").T
        a = x @ W.get(p + "in_proj_a.weight").T
    cw = W.get(p + "conv1d.weight")[:, 0, :]   # [C, K]
    xp = np.concatenate([np.zeros((K - 1, mixed.shape[1])), mixed], 0)
    conv = np.zeros_like(mixed)
    for j in range(K):
        conv += xp[j:j + T] * cw[:, j]
    conv = silu(conv)
    kd = nk * dk
    q = conv[:, :kd].reshape(T, nk, dk)
    k = conv[:, kd:2 * kd].reshape(T, nk, dk)
    v = conv[:, 2 * kd:].reshape(T, nv, dv)
    beta = sigmoid(b)
    g = -np.exp(W.get(p + "A_log")) * softplus(a + W.get(p + "dt_bias"))
    q = np.repeat(l2norm(q), r, axis=1)   # repeat_interleave: value head h reads key head h // r
    k = np.repeat(l2norm(k), r, axis=1)
    o = chunk_gated_delta_rule(q, k, v, g, beta)
    o = o / np.sqrt((o * o).mean(-1, keepdims=True) + eps) * W.get(p + "norm.weight") * silu(z)
    return o.reshape(T, nv * dv) @ W.get(p + "out_proj.weight").T


def rope(x, pos, rot, theta):
    inv = 1.0 / (theta ** (np.arange(0, rot, 2, dtype=np.float64) / rot))
    fr = pos[:, None] * inv[None, :]
    emb = np.concatenate([fr, fr], -1)
    cos, sin = np.cos(emb)[:, None, :], np.sin(emb)[:, None, :]
    xr, xp = x[..., :rot], x[..., rot:]
    half = rot // 2
    rh = np.concatenate([-xr[..., half:], xr[..., :half]], -1)
    return np.concatenate([xr * cos + rh * sin, xp], -1)


def attention(x, W, p, cfg, eps, theta, prf):
    T = x.shape[0]
    nh, nkv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg.get("head_dim", 256)
    qg = (x @ W.get(p + "q_proj.weight").T).reshape(T, nh, 2 * hd)
    q, gate = qg[..., :hd], qg[..., hd:].reshape(T, nh * hd)
    q = rms1p(q, W.get(p + "q_norm.weight"), eps)
    k = rms1p((x @ W.get(p + "k_proj.weight").T).reshape(T, nkv, hd), W.get(p + "k_norm.weight"), eps)
    v = (x @ W.get(p + "v_proj.weight").T).reshape(T, nkv, hd)
    pos = np.arange(T, dtype=np.float64)
    rot = int(hd * prf)
    q, k = rope(q, pos, rot, theta), rope(k, pos, rot, theta)
    rep = nh // nkv
    k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
    s = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd)
    s = s + np.triu(np.full((T, T), -np.inf), 1)[None]
    s = np.exp(s - s.max(-1, keepdims=True))
    s = s / s.sum(-1, keepdims=True)
    o = np.einsum("hts,shd->thd", s, v).reshape(T, nh * hd) * sigmoid(gate)
    return o @ W.get(p + "o_proj.weight").T


def mlp(x, W, p):
    return (silu(x @ W.get(p + "gate_proj.weight").T) * (x @ W.get(p + "up_proj.weight").T)) @ W.get(p + "down_proj.weight").T


def moe(x, W, p, cfg, renorm):
    E, k = cfg["num_experts"], cfg["num_experts_per_tok"]
    logits = x @ W.get(p + "gate.weight").T
    pr = np.exp(logits - logits.max(-1, keepdims=True))
    pr = pr / pr.sum(-1, keepdims=True)
    out = np.zeros_like(x)
    for t in range(x.shape[0]):
        top = np.argsort(-pr[t], kind="stable")[:k]
        w = pr[t, top]
        if renorm:
            w = w / w.sum()
        for e, we in zip(top, w):
            if W.has(p + f"experts.{e}.gate_proj.weight"):
                out[t] += we * mlp(x[t:t + 1], W, p + f"experts.{e}.")[0]
            else:
                gu, dn = W.get(p + "experts.gate_up_proj")[e], W.get(p + "experts.down_proj")[e]
                fe = gu.shape[0] // 2
                out[t] += we * ((silu(x[t] @ gu[:fe].T) * (x[t] @ gu[fe:].T)) @ dn.T)
    if W.has(p + "shared_expert.gate_proj.weight"):
        out += sigmoid(x @ W.get(p + "shared_expert_gate.weight").T) * mlp(x, W, p + "shared_expert.")
    return out


def forward(d, ids):
    root = json.load(open(os.path.join(d, "config.json")))
    arch = root["architectures"][0]
    cfg = root.get("text_config", root)
    W = Weights(d)
    eps = cfg.get("rms_norm_eps", 1e-6)
    rp = cfg.get("rope_parameters") or {}
    theta = rp.get("rope_theta", cfg.get("rope_theta", 10000.0))
    prf = rp.get("partial_rotary_factor", cfg.get("partial_rotary_factor", 0.25))
    n = cfg["num_hidden_layers"]
    lt = cfg.get("layer_types") or ["full_attention" if (i + 1) % cfg.get("full_attention_interval", 4) == 0
                                    else "linear_attention" for i in range(n)]
    moe_family = cfg.get("num_experts", 0) > 0 and "Qwen3_5ForCausalLM" != arch and \
        "Qwen3_5ForConditionalGeneration" != arch
    renorm = True if "Qwen3_5Moe" in arch else cfg.get("norm_topk_prob", True)
    mlp_only = set(cfg.get("mlp_only_layers") or [])
    step = cfg.get("decoder_sparse_step", 1)
    h = W.get("model.embed_tokens.weight")[np.array(ids)]
    for i in range(n):
        p = f"model.layers.{i}."
        x = rms1p(h, W.get(p + "input_layernorm.weight"), eps)
        if lt[i] == "linear_attention":
            h = h + gdn(x, W, p + "linear_attn.", cfg, eps)
        else:
            h = h + attention(x, W, p + "self_attn.", cfg, eps, theta, prf)
        x = rms1p(h, W.get(p + "post_attention_layernorm.weight"), eps)
        sparse = moe_family and i not in mlp_only and (i + 1) % step == 0
        h = h + (moe(x, W, p + "mlp.", cfg, renorm) if sparse else mlp(x, W, p + "mlp."))
    h = rms1p(h, W.get("model.norm.weight"), eps)
    head = W.get("lm_head.weight") if "lm_head.weight" in W.t else W.get("model.embed_tokens.weight")
    return h @ head.T


def rescale_synth(d):
    p = os.path.join(d, "model.safetensors")
    raw = open(p, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    data = bytearray(raw[8 + n:])
    for name, info in hdr.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "BF16":
            raise ValueError(f"{name}: expected a bf16 synth checkpoint")
        a, b = info["data_offsets"]
        v = (np.frombuffer(bytes(data[a:b]), dtype="<u2").astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        if name.endswith("linear_attn.norm.weight"):
            v = 1 + (v - 1) / 0.02 * 0.15
        else:
            z = v / 0.02
            if name.endswith("A_log"):
                v = z * 0.5 - 1.5
            elif name.endswith("dt_bias"):
                v = z * 0.5
            elif "conv1d" in name:
                v = z * 0.4
            elif len(info["shape"]) == 1:
                v = z * 0.15
            else:
                v = z * 0.08
        u = (v.astype(np.float32).view(np.uint32).astype(np.uint64) + 0x8000) >> 16
        data[a:b] = u.astype("<u2").tobytes()
    with open(p, "wb") as f:
        f.write(raw[:8 + n] + bytes(data))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--ids")
    ap.add_argument("--out")
    ap.add_argument("--rescale-synth", action="store_true")
    a = ap.parse_args()
    if a.rescale_synth:
        rescale_synth(a.model)
        return 0
    if not a.ids or not a.out:
        ap.error("--ids and --out are needed")
    ids = [int(v) for v in a.ids.split(",")]
    lg = forward(a.model, ids)
    lg.astype("<f4").tofile(a.out)
    print(f"{a.out}: [{lg.shape[0]}, {lg.shape[1]}] float32, absmax {np.abs(lg).max():.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
