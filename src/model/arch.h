/* arch: the architecture families cairn loads, as data: one small file per family in arch/.
 *
 * Each family gives the Hugging Face tensor names of its weights (printf formats taking the layer
 * and, for experts, the expert index), its default feature switches, and a hook that reads the
 * family's own config.json keys after the generic parse in config.c. Nothing here runs per token.
 * Called by config.c (lookup by the "architectures" name), model.c and synth.c (names).
 * Read-only tables: any thread.
 *
 *     const struct arch *a = arch_find("Qwen3ForCausalLM");
 *     if (!a) { char s[512]; arch_list(s, sizeof s); LOG_ERR("supported: %s", s); }
 *     const char *fmt = a->names[W_Q];   // "model.layers.%d.self_attn.q_proj.weight"
 */
#ifndef CAIRN_MODEL_ARCH_H
#define CAIRN_MODEL_ARCH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "base/status.h"
#include "model/model.h"

/* Weight roles. Global ones take no argument, layer ones take the layer (%d), expert ones the
 * layer and the expert (%d, %d). Fused expert tensors hold all experts of a layer. */
enum wrole {
    W_EMBED = 0, W_OUT_NORM, W_LM_HEAD,
    W_ATTN_NORM, W_Q, W_K, W_V, W_O, W_BQ, W_BK, W_BV, W_Q_NORM, W_K_NORM,
    W_ATTN_POST_NORM, W_FFN_NORM, W_FFN_POST_NORM,
    W_GATE, W_UP, W_DOWN,
    W_ROUTER, W_EXP_GATE, W_EXP_UP, W_EXP_DOWN,
    W_EXP_GATE_UP_FUSED,   // [E, 2*fe, d]: rows [0, fe) gate, [fe, 2fe) up (transformers 5)
    W_EXP_DOWN_FUSED,      // [E, d, fe]
    W_SHARED_GATE, W_SHARED_UP, W_SHARED_DOWN,   // shared expert [fs, d], [fs, d], [d, fs]
    W_SHARED_EXPERT_GATE,  // [1, d]
    /* Gated DeltaNet (linear_attn): split projections (Qwen3.5) or grouped ones (Qwen3-Next) */
    W_GDN_QKV, W_GDN_Z, W_GDN_B, W_GDN_A, W_GDN_QKVZ, W_GDN_BA,
    W_GDN_CONV,            // [conv_dim, 1, K]
    W_GDN_A_LOG, W_GDN_DT_BIAS,   // [nv]
    W_GDN_NORM,            // [dv] plain-weight gated RMSNorm
    W_GDN_OUT,             // [d, nv dv]
    /* MTP head (global names; its decoder layer reuses the layer roles under mtp.layers.%d.) */
    W_MTP_NORM_EMBED, W_MTP_NORM_HIDDEN, W_MTP_FC, W_MTP_NORM,
    W_COUNT
};

struct arch {
    const char          *name;            // "architectures" entry in config.json
    struct arch_features f;               // defaults; act may be changed by config
    bool                 tie_default;     // tie_word_embeddings when config.json omits it
    float                rope_theta_default;
    const char          *sub_config;      // non-NULL: read dims from this sub-object ("text_config")
    const char          *names[W_COUNT];  // NULL: the family has no such weight
    const char          *alt_prefix[3];   // other spellings of the leading "model." (multimodal wrappers;
                                          //   "": a base model saved without it, as Qwen3Model saves)
    bool                 base_model;      // a "...Model" (no LM head) checkpoint: an embedder by default
    const char          *mlx_wrapper;     // mlx_lm / mlx_vlm conversions put every name under this
                                          // ("language_model.": language_model.model.layers.*,
                                          // language_model.lm_head); NULL: names unchanged
    const char          *mtp_layer_prefix;// MTP decoder layers: "model.layers." of the layer names
                                          // becomes this ("mtp.layers."); NULL: no MTP head
    /* Reads the family's own keys after the generic parse; cfg is the (sub-)config object. */
    enum status        (*read_hparams)(const json_t *cfg, const json_t *root, struct hparams *hp,
                                       struct arch_features *f);
};

const struct arch *arch_find(const char *name);
/* Writes "A, B, C" (the supported architecture names) into buf. */
void arch_list(char *buf, size_t n);

/* The family tables, one per file in arch/. */
extern const struct arch arch_llama, arch_mistral, arch_qwen2, arch_qwen3, arch_qwen3_base, arch_qwen3_moe,
    arch_gemma3, arch_gemma3_cg, arch_qwen3_next, arch_qwen3_5, arch_qwen3_5_cg, arch_qwen3_5_moe,
    arch_qwen3_5_moe_cg;

/* Shared names of the Llama-style decoder, used by most families: the embedding, head and
 * attention (ARCH_ATTN_NAMES, Gemma 3's too), per-head q/k norms (Qwen3 onwards, Gemma 3), and the
 * pre-FFN norm and dense FFN. */
#define ARCH_ATTN_NAMES \
    [W_EMBED] = "model.embed_tokens.weight", \
    [W_OUT_NORM] = "model.norm.weight", \
    [W_LM_HEAD] = "lm_head.weight", \
    [W_ATTN_NORM] = "model.layers.%d.input_layernorm.weight", \
    [W_Q] = "model.layers.%d.self_attn.q_proj.weight", \
    [W_K] = "model.layers.%d.self_attn.k_proj.weight", \
    [W_V] = "model.layers.%d.self_attn.v_proj.weight", \
    [W_O] = "model.layers.%d.self_attn.o_proj.weight"
#define ARCH_QK_NORM_NAMES \
    [W_Q_NORM] = "model.layers.%d.self_attn.q_norm.weight", \
    [W_K_NORM] = "model.layers.%d.self_attn.k_norm.weight"
#define ARCH_LLAMA_NAMES \
    ARCH_ATTN_NAMES, \
    [W_FFN_NORM] = "model.layers.%d.post_attention_layernorm.weight", \
    [W_GATE] = "model.layers.%d.mlp.gate_proj.weight", \
    [W_UP] = "model.layers.%d.mlp.up_proj.weight", \
    [W_DOWN] = "model.layers.%d.mlp.down_proj.weight"

#endif
