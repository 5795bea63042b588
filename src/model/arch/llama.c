/* LlamaForCausalLM and MistralForCausalLM: the plain pre-norm decoder (RMSNorm, RoPE, GQA,
 * SwiGLU). Llama 3.x brings rope_scaling type llama3 (parsed generically in config.c); Mistral
 * may set sliding_window for every layer. attention_bias / mlp_bias (bias on all projections)
 * are not implemented and are rejected by name.
 */
#include <limits.h>

#include "model/arch.h"
#include "model/config.h"

static enum status llama_read(const json_t *cfg, const json_t *root, struct hparams *hp,
                              struct arch_features *f)
{
    enum status st = config_reject_true(cfg, hp->arch, "attention_bias");
    if (st == STATUS_OK) st = config_reject_true(cfg, hp->arch, "mlp_bias");
    return st;
}

static enum status mistral_read(const json_t *cfg, const json_t *root, struct hparams *hp,
                                struct arch_features *f)
{
    enum status st = llama_read(cfg, root, hp, f);
    if (st != STATUS_OK) return st;
    bool found = false;
    if ((st = config_layer_types(cfg, hp, &found)) != STATUS_OK) return st;
    int w = 0;
    if ((st = config_get_int(cfg, "sliding_window", 0, INT_MAX, &w)) != STATUS_OK) return st;
    if (!found && w > 0)
        for (int i = 0; i < hp->n_layers; i++) hp->layer_sliding[i] = true;
    hp->sliding_window = w;
    return STATUS_OK;
}

const struct arch arch_llama = {
    .name = "LlamaForCausalLM",
    .f = { .act = ACT_SILU },
    .tie_default = false,
    .rope_theta_default = 10000.0f,
    .names = { ARCH_LLAMA_NAMES },
    .read_hparams = llama_read,
};

const struct arch arch_mistral = {
    .name = "MistralForCausalLM",
    .f = { .act = ACT_SILU },
    .tie_default = false,
    .rope_theta_default = 10000.0f,
    .names = { ARCH_LLAMA_NAMES },
    .read_hparams = mistral_read,
};
