/* quantize: writes an MLX-format quantized checkpoint from a Hugging Face one (`cairn quantize`).
 *
 * The output is what mlx_lm.convert would write for the same settings, so mlx-lm loads it
 * unchanged (shared/research/mlx-quant-format.md 4-5): every Linear / Embedding weight (2-D
 * `*.weight`, not conv) and every stacked expert projection whose last dim is a multiple of the
 * top-level group size becomes `P.weight` (u32 packed) + `P.scales` (+ `P.biases` for affine);
 * per-expert HF tensors (`mlp.experts.E.X.weight`) and transformers-5 fused experts
 * (`mlp.experts.gate_up_proj` / `down_proj`) become mlx-lm's stacked `mlp.switch_mlp.X`; a tied
 * `lm_head.weight` is dropped; everything else is copied. config.json gets identical
 * "quantization" and "quantization_config" blocks (top level, plus one entry per module that a
 * recipe sets apart). Quantization follows MLX's CPU rules (tensor/qweight.h), bit for bit equal
 * to tools/mlx_quant_ref.py; affine scales and biases are stored in the checkpoint's float dtype.
 *
 * Recipes: mixed_2_6, mixed_3_4, mixed_3_6, mixed_4_6 are mlx-lm's --quant-predicate builders
 * (affine; v_proj / down_proj of the first and last eighth of layers and every third layer, and
 * lm_head, at the high width; the top-level bits are the low width); mixed_4_8 is the Qwen3-Next /
 * Qwen3.5-MoE model predicate: routers (`mlp.gate`) and `shared_expert_gate` affine 8 bit group 64,
 * the rest at the top-level settings; Qwen3-Next and Qwen3.5-MoE get it without a recipe (their
 * quant_predicate in mlx-lm). Hybrids are first sanitized as mlx-lm does (spec 7-8): mtp.* and
 * the vision tower dropped, Qwen3.5's names under "language_model.", conv1d [C, 1, K] written as
 * [C, K, 1], the (1 + w) norms of an HF-layout input stored as dtype(w + 1), Qwen3.5's A_log kept
 * in its own dtype.
 *
 * Memory: one output tensor at a time (its packed words, scales and biases), read from the mmapped
 * input and written with pwrite at offsets planned up front; output shards of at most shard_bytes.
 * Progress goes to stderr unless quiet. Not thread-safe (one call at a time per output dir).
 *
 *     struct quantize_opts o = { .in_dir = "m", .out_dir = "m-4bit", .mode = QMODE_AFFINE, .bits = 4,
 *                                .group_size = 64 };
 *     if (quantize_model(&o) != STATUS_OK) return 1;
 */
#ifndef CAIRN_MODEL_QUANTIZE_H
#define CAIRN_MODEL_QUANTIZE_H

#include <stdbool.h>
#include <stdint.h>

#include "base/status.h"
#include "tensor/qweight.h"

struct quantize_opts {
    const char *in_dir;
    const char *out_dir;          // created if missing
    enum qmode  mode;
    int         bits;             // 0: the mode's default
    int         group_size;       // 0: the mode's default
    const char *recipe;           // NULL, "mixed_2_6", "mixed_3_4", "mixed_3_6", "mixed_4_6" or "mixed_4_8"
    uint64_t    shard_bytes;      // 0: 5 GB (mlx-lm's default)
    bool        quiet;
};

enum status quantize_model(const struct quantize_opts *o);

#endif
