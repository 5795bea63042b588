/* Gemma3ForCausalLM (text) and the text tower of Gemma3ForConditionalGeneration.
 * Differences from Llama: RMSNorm multiplies by (1 + w); embeddings scaled by sqrt(d_model);
 * q/k norms; norms before and after both attention and FFN ("sandwich"); GeGLU with tanh gelu;
 * sliding-window layers (layer_types, else every layer but each sliding_window_pattern-th) with
 * their own rope base (rope_local_base_freq, or rope_parameters["sliding_attention"]);
 * attention scale query_pre_attn_scalar^-0.5; optional final logit soft-capping (attention
 * soft-capping is ignored, as transformers 5 does).
 * Defaults are Gemma3TextConfig's, because saved configs omit keys equal to them (bos 2, eos 1,
 * tied embeddings). The multimodal wrapper keeps the text model under model.language_model.
 * (transformers >= 4.52) or language_model.model. (older); vision weights are ignored.
 */
#include <limits.h>
#include <math.h>

#include "base/log.h"
#include "model/arch.h"
#include "model/config.h"

static enum status gemma3_read(const json_t *cfg, const json_t *root, struct hparams *hp,
                               struct arch_features *f)
{
    enum status st = config_reject_true(cfg, hp->arch, "attention_bias");
    if (st != STATUS_OK) return st;
    bool found = false;
    if ((st = config_layer_types(cfg, hp, &found)) != STATUS_OK) return st;
    int pattern = 6, window = 4096;
    if ((st = config_get_int(cfg, "sliding_window_pattern", 1, INT_MAX, &pattern)) ||
        (st = config_get_int(cfg, "sliding_window", 0, INT_MAX, &window)))
        return st;
    if (!found)
        for (int i = 0; i < hp->n_layers; i++) hp->layer_sliding[i] = (i + 1) % pattern != 0;
    hp->sliding_window = window;

    float local_base = 10000.0f, qpas = 256.0f, final_cap = 0, attn_cap = 0;
    if ((st = config_get_float(cfg, "rope_local_base_freq", &local_base)) ||
        (st = config_get_float(cfg, "query_pre_attn_scalar", &qpas)) ||
        (st = config_get_float(cfg, "final_logit_softcapping", &final_cap)) ||
        (st = config_get_float(cfg, "attn_logit_softcapping", &attn_cap)))
        return st;
    if (!(qpas > 0) || !(local_base > 0) || final_cap < 0 || attn_cap < 0) {
        LOG_ERR("%s: query_pre_attn_scalar and rope_local_base_freq must be > 0, soft-caps >= 0", hp->arch);
        return STATUS_EFORMAT;
    }
    if (hp->rope_local.theta == 0) {   // not given by rope_parameters["sliding_attention"]
        hp->rope_local = (struct rope_cfg){ .theta = local_base, .scaling = ROPE_SCALING_NONE, .factor = 1 };
    }
    hp->attn_scale = 1.0f / sqrtf(qpas);
    hp->final_softcap = final_cap;
    // transformers (checked with 5.17) passes no softcap to Gemma 3's attention, so a set
    // attn_logit_softcapping changes nothing there; match it rather than the config text.
    if (attn_cap > 0)
        LOG_WARN("%s: attn_logit_softcapping %g ignored, as transformers does for Gemma 3", hp->arch, (double)attn_cap);
    hp->attn_softcap = 0;
    if (hp->bos_id < 0 && hp->n_vocab > 2) hp->bos_id = 2;
    if (hp->n_eos == 0 && hp->n_vocab > 1) hp->eos_ids[hp->n_eos++] = 1;
    return STATUS_OK;
}

#define GEMMA3_NAMES \
    ARCH_ATTN_NAMES, \
    ARCH_QK_NORM_NAMES, \
    [W_ATTN_POST_NORM] = "model.layers.%d.post_attention_layernorm.weight", \
    [W_FFN_NORM] = "model.layers.%d.pre_feedforward_layernorm.weight", \
    [W_FFN_POST_NORM] = "model.layers.%d.post_feedforward_layernorm.weight", \
    [W_GATE] = "model.layers.%d.mlp.gate_proj.weight", \
    [W_UP] = "model.layers.%d.mlp.up_proj.weight", \
    [W_DOWN] = "model.layers.%d.mlp.down_proj.weight"

#define GEMMA3_FEATURES { .act = ACT_GELU_TANH, .qk_norm = true, .norm_plus_one = true, \
                          .sandwich_norm = true, .embed_scale = true }

const struct arch arch_gemma3 = {
    .name = "Gemma3ForCausalLM",
    .f = GEMMA3_FEATURES,
    .tie_default = true,
    .rope_theta_default = 1000000.0f,
    .names = { GEMMA3_NAMES },
    .alt_prefix = { "model.language_model.", "language_model.model." },
    .read_hparams = gemma3_read,
};

const struct arch arch_gemma3_cg = {
    .name = "Gemma3ForConditionalGeneration",
    .f = GEMMA3_FEATURES,
    .tie_default = true,
    .rope_theta_default = 1000000.0f,
    .sub_config = "text_config",
    .names = { GEMMA3_NAMES },
    .alt_prefix = { "model.language_model.", "language_model.model." },
    .read_hparams = gemma3_read,
};
