/* The Qwen hybrids: Qwen3NextForCausalLM, Qwen3_5ForCausalLM, Qwen3_5MoeForCausalLM and the
 * released checkpoints' Qwen3_5(Moe)ForConditionalGeneration (config under "text_config"; the
 * vision tower's weights are left unused). Qwen3.6 reuses the Qwen3.5 classes.
 *
 * Three of every four layers are Gated DeltaNet ("linear_attention": a causal conv, a delta-rule
 * recurrent state and a gated RMSNorm), the others gated full attention (q_proj doubled into
 * [q_h | gate_h] per head, q/k norm, partial rotary, output times sigmoid(gate)). Every RMSNorm
 * but the DeltaNet output norm multiplies by (1 + w). MoE layers add a shared expert scaled by
 * sigmoid(shared_expert_gate . x). Renormalisation of the top-k weights: Qwen3-Next honours
 * norm_topk_prob (default true); Qwen3.5-MoE always renormalises (its config class drops the key).
 * The formulas, names and defaults are those of transformers' configuration_qwen3_next.py /
 * configuration_qwen3_5(_moe).py (see shared/research/qwen35-arch.md).
 */
#include <limits.h>
#include <string.h>

#include "base/log.h"
#include "model/arch.h"
#include "model/config.h"

#define MAX_EXPERTS     1024
#define MAX_LIN_HEADS   1024
#define MAX_LIN_DIM     1024
#define MAX_CONV_KERNEL 64

enum family { FAMILY_NEXT, FAMILY_35, FAMILY_35_MOE };

/* layer_types (with HF's legacy names) or, when absent, full_attention_interval (default 4). */
static enum status read_layer_kinds(const json_t *cfg, struct hparams *hp)
{
    const json_t *lt = json_object_get(cfg, "layer_types");
    if (!lt || json_is_null(lt)) {
        int every = 4;
        enum status st = config_get_int(cfg, "full_attention_interval", 1, INT_MAX, &every);
        if (st != STATUS_OK) return st;
        for (int i = 0; i < hp->n_layers; i++) hp->layer_linear[i] = (i + 1) % every != 0;
        return STATUS_OK;
    }
    if (!json_is_array(lt) || json_array_size(lt) != (size_t)hp->n_layers) {
        LOG_ERR("config: layer_types must be a list of %d entries (num_hidden_layers)", hp->n_layers);
        return STATUS_EFORMAT;
    }
    for (int i = 0; i < hp->n_layers; i++) {
        const char *s = json_string_value(json_array_get(lt, (size_t)i));
        if (s && (!strcmp(s, "linear_attention") || !strcmp(s, "mamba"))) hp->layer_linear[i] = true;
        else if (s && (!strcmp(s, "full_attention") || !strcmp(s, "attention"))) hp->layer_linear[i] = false;
        else {
            LOG_ERR("config: layer_types[%d] = %.64s is not a layer kind of %s (supported: linear_attention, "
                    "full_attention)", i, s ? s : "(not a string)", hp->arch);
            return STATUS_EUNSUPPORTED;
        }
    }
    return STATUS_OK;
}

static enum status read_linear_attention(const json_t *cfg, struct hparams *hp)
{
    // transformers' defaults (the same in all three config classes)
    hp->lin_n_k_heads = 16;
    hp->lin_n_v_heads = 32;
    hp->lin_k_dim = hp->lin_v_dim = 128;
    hp->lin_conv_kernel = 4;
    enum status st;
    if ((st = config_get_int(cfg, "linear_num_key_heads", 1, MAX_LIN_HEADS, &hp->lin_n_k_heads)) ||
        (st = config_get_int(cfg, "linear_num_value_heads", 1, MAX_LIN_HEADS, &hp->lin_n_v_heads)) ||
        (st = config_get_int(cfg, "linear_key_head_dim", 1, MAX_LIN_DIM, &hp->lin_k_dim)) ||
        (st = config_get_int(cfg, "linear_value_head_dim", 1, MAX_LIN_DIM, &hp->lin_v_dim)) ||
        (st = config_get_int(cfg, "linear_conv_kernel_dim", 1, MAX_CONV_KERNEL, &hp->lin_conv_kernel)))
        return st;
    if (hp->lin_n_v_heads % hp->lin_n_k_heads) {
        LOG_ERR("config: linear_num_value_heads %d is not a multiple of linear_num_key_heads %d",
                hp->lin_n_v_heads, hp->lin_n_k_heads);
        return STATUS_EFORMAT;
    }
    const char *ssm = json_string_value(json_object_get(cfg, "mamba_ssm_dtype"));
    if (ssm && strcmp(ssm, "float32"))
        LOG_WARN("config: mamba_ssm_dtype %.32s: the recurrent state is kept in float32 anyway", ssm);
    return STATUS_OK;
}

static enum status read_moe(const json_t *cfg, enum family fam, struct hparams *hp, struct arch_features *f)
{
    int n_exp = fam == FAMILY_35 ? 0 : fam == FAMILY_NEXT ? 512 : 256;
    int k = fam == FAMILY_NEXT ? 10 : 8, fe = 512, shared = 512, step = 1;
    bool norm = true;
    if (fam == FAMILY_35) return STATUS_OK;
    enum status st;
    if ((st = config_get_int(cfg, "num_experts", 0, MAX_EXPERTS, &n_exp)) ||
        (st = config_get_int(cfg, "num_experts_per_tok", 1, MAX_EXPERTS, &k)) ||
        (st = config_get_int(cfg, "moe_intermediate_size", 1, 1 << 20, &fe)) ||
        (st = config_get_int(cfg, "shared_expert_intermediate_size", 0, 1 << 20, &shared)))
        return st;
    if (fam == FAMILY_NEXT &&
        ((st = config_get_int(cfg, "decoder_sparse_step", 1, INT_MAX, &step)) ||
         (st = config_get_bool(cfg, "norm_topk_prob", &norm))))
        return st;
    if (fam == FAMILY_35_MOE && n_exp < 1) {
        LOG_ERR("config: num_experts must be >= 1 for %s", hp->arch);
        return STATUS_EFORMAT;
    }
    if (n_exp > 0 && k > n_exp) {
        LOG_ERR("config: num_experts_per_tok %d is more than num_experts %d", k, n_exp);
        return STATUS_EFORMAT;
    }
    bool dense_only[MODEL_MAX_LAYERS] = { false };
    const json_t *mlp_only = json_object_get(cfg, "mlp_only_layers");
    if (fam == FAMILY_NEXT && mlp_only && !json_is_null(mlp_only)) {
        if (!json_is_array(mlp_only)) {
            LOG_ERR("config: mlp_only_layers must be a list of layer indices");
            return STATUS_EFORMAT;
        }
        size_t i;
        const json_t *v;
        json_array_foreach(mlp_only, i, v) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= hp->n_layers) {
                LOG_ERR("config: mlp_only_layers[%zu] is not a layer index below %d", i, hp->n_layers);
                return STATUS_EFORMAT;
            }
            dense_only[json_integer_value(v)] = true;
        }
    }
    hp->n_experts = n_exp;
    hp->n_experts_used = n_exp > 0 ? k : 0;
    hp->d_ff_expert = n_exp > 0 ? fe : 0;
    hp->d_ff_shared = n_exp > 0 ? shared : 0;
    hp->norm_topk = fam == FAMILY_35_MOE || norm;   // Qwen3VLMoeTextTopKRouter divides unconditionally
    for (int i = 0; i < hp->n_layers; i++)
        hp->layer_moe[i] = n_exp > 0 && !dense_only[i] && (i + 1) % step == 0;
    f->moe = n_exp > 0;
    return STATUS_OK;
}

static enum status hybrid_read(const json_t *cfg, const json_t *root, struct hparams *hp, struct arch_features *f,
                               enum family fam)
{
    enum status st = config_reject_true(cfg, hp->arch, "attention_bias");
    if (st != STATUS_OK) return st;
    if (cfg != root && json_object_get(root, "vision_config"))
        LOG_INFO("config: %s: the vision tower (vision_config, model.visual.*) is not used: text only", hp->arch);
    if (!json_object_get(cfg, "head_dim")) {   // the config classes default to 256, not hidden / heads
        hp->head_dim = 256;
        hp->attn_scale = 1.0f / 16.0f;
    }
    // partial_rotary_factor defaults to 0.25 in these config classes (flat or in rope_parameters)
    const json_t *rp = json_object_get(cfg, "rope_parameters");
    if (!json_object_get(cfg, "partial_rotary_factor") &&
        !(json_is_object(rp) && json_object_get(rp, "partial_rotary_factor")))
        hp->partial_rotary = 0.25f;
    if ((st = config_get_bool(cfg, "attn_output_gate", &f->attn_out_gate))) return st;
    if ((st = read_layer_kinds(cfg, hp)) || (st = read_linear_attention(cfg, hp)) ||
        (st = read_moe(cfg, fam, hp, f)))
        return st;
    hp->n_linear_layers = 0;
    for (int i = 0; i < hp->n_layers; i++) hp->n_linear_layers += hp->layer_linear[i];
    hp->n_mtp_layers = 0;
    if ((st = config_get_int(cfg, "mtp_num_hidden_layers", 0, 8, &hp->n_mtp_layers)) ||
        (fam == FAMILY_NEXT && (st = config_get_int(cfg, "num_nextn_predict_layers", 0, 8, &hp->n_mtp_layers))))
        return st;
    if (hp->n_layers + hp->n_mtp_layers > MODEL_MAX_LAYERS) {
        LOG_ERR("config: num_hidden_layers %d + mtp_num_hidden_layers %d is more than %d", hp->n_layers,
                hp->n_mtp_layers, MODEL_MAX_LAYERS);
        return STATUS_EFORMAT;
    }
    // MTP decoder layers: gated full attention with the family's FFN
    for (int j = 0; j < hp->n_mtp_layers; j++) {
        hp->layer_linear[hp->n_layers + j] = false;
        hp->layer_moe[hp->n_layers + j] = hp->n_experts > 0;
    }
    return STATUS_OK;
}

static enum status next_read(const json_t *cfg, const json_t *root, struct hparams *hp, struct arch_features *f)
{
    return hybrid_read(cfg, root, hp, f, FAMILY_NEXT);
}

static enum status q35_read(const json_t *cfg, const json_t *root, struct hparams *hp, struct arch_features *f)
{
    return hybrid_read(cfg, root, hp, f, FAMILY_35);
}

static enum status q35_moe_read(const json_t *cfg, const json_t *root, struct hparams *hp, struct arch_features *f)
{
    return hybrid_read(cfg, root, hp, f, FAMILY_35_MOE);
}

#define HYBRID_FEATURES { .act = ACT_SILU, .qk_norm = true, .norm_plus_one = true, .attn_out_gate = true }

#define HYBRID_NAMES \
    ARCH_LLAMA_NAMES, \
    ARCH_QK_NORM_NAMES, \
    [W_GDN_CONV] = "model.layers.%d.linear_attn.conv1d.weight", \
    [W_GDN_A_LOG] = "model.layers.%d.linear_attn.A_log", \
    [W_GDN_DT_BIAS] = "model.layers.%d.linear_attn.dt_bias", \
    [W_GDN_NORM] = "model.layers.%d.linear_attn.norm.weight", \
    [W_GDN_OUT] = "model.layers.%d.linear_attn.out_proj.weight", \
    [W_MTP_NORM_EMBED] = "mtp.pre_fc_norm_embedding.weight", \
    [W_MTP_NORM_HIDDEN] = "mtp.pre_fc_norm_hidden.weight", \
    [W_MTP_FC] = "mtp.fc.weight", \
    [W_MTP_NORM] = "mtp.norm.weight"

#define HYBRID_SPLIT_PROJ_NAMES \
    [W_GDN_QKV] = "model.layers.%d.linear_attn.in_proj_qkv.weight", \
    [W_GDN_Z] = "model.layers.%d.linear_attn.in_proj_z.weight", \
    [W_GDN_B] = "model.layers.%d.linear_attn.in_proj_b.weight", \
    [W_GDN_A] = "model.layers.%d.linear_attn.in_proj_a.weight"

#define HYBRID_MOE_NAMES \
    [W_ROUTER] = "model.layers.%d.mlp.gate.weight", \
    [W_EXP_GATE] = "model.layers.%d.mlp.experts.%d.gate_proj.weight", \
    [W_EXP_UP] = "model.layers.%d.mlp.experts.%d.up_proj.weight", \
    [W_EXP_DOWN] = "model.layers.%d.mlp.experts.%d.down_proj.weight", \
    [W_EXP_GATE_UP_FUSED] = "model.layers.%d.mlp.experts.gate_up_proj", \
    [W_EXP_DOWN_FUSED] = "model.layers.%d.mlp.experts.down_proj", \
    [W_SHARED_GATE] = "model.layers.%d.mlp.shared_expert.gate_proj.weight", \
    [W_SHARED_UP] = "model.layers.%d.mlp.shared_expert.up_proj.weight", \
    [W_SHARED_DOWN] = "model.layers.%d.mlp.shared_expert.down_proj.weight", \
    [W_SHARED_EXPERT_GATE] = "model.layers.%d.mlp.shared_expert_gate.weight"

const struct arch arch_qwen3_next = {
    .name = "Qwen3NextForCausalLM",
    .f = { .act = ACT_SILU, .qk_norm = true, .norm_plus_one = true, .attn_out_gate = true, .gdn_grouped_proj = true },
    .tie_default = false,
    .rope_theta_default = 10000.0f,
    .names = {
        HYBRID_NAMES,
        HYBRID_MOE_NAMES,
        [W_GDN_QKVZ] = "model.layers.%d.linear_attn.in_proj_qkvz.weight",
        [W_GDN_BA] = "model.layers.%d.linear_attn.in_proj_ba.weight",
    },
    .mtp_layer_prefix = "mtp.layers.",
    .read_hparams = next_read,
};

const struct arch arch_qwen3_5 = {
    .name = "Qwen3_5ForCausalLM",
    .f = HYBRID_FEATURES,
    .tie_default = false,
    .rope_theta_default = 10000.0f,
    .names = { HYBRID_NAMES, HYBRID_SPLIT_PROJ_NAMES },
    .alt_prefix = { "model.language_model." },
    .mlx_wrapper = "language_model.",
    .mtp_layer_prefix = "mtp.layers.",
    .read_hparams = q35_read,
};

const struct arch arch_qwen3_5_cg = {
    .name = "Qwen3_5ForConditionalGeneration",
    .f = HYBRID_FEATURES,
    .tie_default = false,
    .rope_theta_default = 10000.0f,
    .sub_config = "text_config",
    .names = { HYBRID_NAMES, HYBRID_SPLIT_PROJ_NAMES },
    .alt_prefix = { "model.language_model." },
    .mlx_wrapper = "language_model.",
    .mtp_layer_prefix = "mtp.layers.",
    .read_hparams = q35_read,
};

const struct arch arch_qwen3_5_moe = {
    .name = "Qwen3_5MoeForCausalLM",
    .f = HYBRID_FEATURES,
    .tie_default = false,
    .rope_theta_default = 10000.0f,
    .names = { HYBRID_NAMES, HYBRID_SPLIT_PROJ_NAMES, HYBRID_MOE_NAMES },
    .alt_prefix = { "model.language_model." },
    .mlx_wrapper = "language_model.",
    .mtp_layer_prefix = "mtp.layers.",
    .read_hparams = q35_moe_read,
};

const struct arch arch_qwen3_5_moe_cg = {
    .name = "Qwen3_5MoeForConditionalGeneration",
    .f = HYBRID_FEATURES,
    .tie_default = false,
    .rope_theta_default = 10000.0f,
    .sub_config = "text_config",
    .names = { HYBRID_NAMES, HYBRID_SPLIT_PROJ_NAMES, HYBRID_MOE_NAMES },
    .alt_prefix = { "model.language_model." },
    .mlx_wrapper = "language_model.",
    .mtp_layer_prefix = "mtp.layers.",
    .read_hparams = q35_moe_read,
};
