/* Qwen2ForCausalLM (bias on q, k, v; none on o) and Qwen3ForCausalLM (no biases, RMSNorm over
 * each head of q and k; Qwen3Model is its base model, an embedder by default). Both may enable a sliding window on layers >= max_window_layers with
 * use_sliding_window, or list layer_types (transformers 5). Qwen3's attention_bias (bias on all
 * four projections) is not implemented and is rejected by name.
 */
#include <limits.h>

#include "model/arch.h"
#include "model/config.h"

/* Shared by the Qwen families (also used by qwen3_moe.c). */
enum status qwen_read_sliding(const json_t *cfg, struct hparams *hp);

enum status qwen_read_sliding(const json_t *cfg, struct hparams *hp)
{
    bool found = false, use = false;
    enum status st = config_layer_types(cfg, hp, &found);
    if (st == STATUS_OK) st = config_get_bool(cfg, "use_sliding_window", &use);
    if (st != STATUS_OK) return st;
    if (!found && use) {
        int mwl = hp->n_layers;
        if ((st = config_get_int(cfg, "max_window_layers", 0, INT_MAX, &mwl)) != STATUS_OK) return st;
        for (int i = mwl; i < hp->n_layers; i++) hp->layer_sliding[i] = true;
    }
    return STATUS_OK;
}

static enum status qwen2_read(const json_t *cfg, const json_t *root, struct hparams *hp,
                              struct arch_features *f)
{
    return qwen_read_sliding(cfg, hp);
}

static enum status qwen3_read(const json_t *cfg, const json_t *root, struct hparams *hp,
                              struct arch_features *f)
{
    enum status st = config_reject_true(cfg, hp->arch, "attention_bias");
    return st == STATUS_OK ? qwen_read_sliding(cfg, hp) : st;
}

const struct arch arch_qwen2 = {
    .name = "Qwen2ForCausalLM",
    .f = { .act = ACT_SILU, .qkv_bias = true },
    .tie_default = false,
    .rope_theta_default = 10000.0f,
    .names = {
        ARCH_LLAMA_NAMES,
        [W_BQ] = "model.layers.%d.self_attn.q_proj.bias",
        [W_BK] = "model.layers.%d.self_attn.k_proj.bias",
        [W_BV] = "model.layers.%d.self_attn.v_proj.bias",
    },
    .read_hparams = qwen2_read,
};

#define QWEN3_NAMES ARCH_LLAMA_NAMES, ARCH_QK_NORM_NAMES

/* Qwen3-Embedding is published as Qwen3ForCausalLM but saved by Qwen3Model (tensor names without
 * "model.", no lm_head): both spellings load under either name. */
const struct arch arch_qwen3 = {
    .name = "Qwen3ForCausalLM",
    .f = { .act = ACT_SILU, .qk_norm = true },
    .tie_default = false,
    .rope_theta_default = 10000.0f,
    .names = { QWEN3_NAMES },
    .alt_prefix = { "" },
    .read_hparams = qwen3_read,
};

const struct arch arch_qwen3_base = {
    .name = "Qwen3Model",
    .f = { .act = ACT_SILU, .qk_norm = true },
    .tie_default = false,
    .rope_theta_default = 10000.0f,
    .names = { QWEN3_NAMES },
    .alt_prefix = { "" },
    .base_model = true,
    .read_hparams = qwen3_read,
};
