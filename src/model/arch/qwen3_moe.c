/* Qwen3MoeForCausalLM: Qwen3 attention (q/k norm) with routed-expert FFNs: a router
 * (mlp.gate) softmax, top num_experts_per_tok experts, optional renormalization (norm_topk_prob),
 * no shared expert. Layer i is sparse when it is not in mlp_only_layers and
 * (i + 1) % decoder_sparse_step == 0; other layers keep a dense FFN of intermediate_size.
 * Experts are saved either one module per expert (mlp.experts.E.gate_proj.weight, the Hub
 * layout) or fused per layer (mlp.experts.gate_up_proj [E, 2*fe, d], mlp.experts.down_proj
 * [E, d, fe], transformers 5); model.c accepts both.
 */
#include <limits.h>

#include "base/log.h"
#include "model/arch.h"
#include "model/config.h"

enum status qwen_read_sliding(const json_t *cfg, struct hparams *hp);

#define QWEN3_MOE_MAX_EXPERTS 1024

static enum status qwen3_moe_read(const json_t *cfg, const json_t *root, struct hparams *hp,
                                  struct arch_features *f)
{
    enum status st = config_reject_true(cfg, hp->arch, "attention_bias");
    if (st != STATUS_OK) return st;
    int n_exp = 0, k = 0, fe = 0, step = 1, shared = 0;
    bool norm = false;
    if ((st = config_get_int(cfg, "num_experts", 0, QWEN3_MOE_MAX_EXPERTS, &n_exp)) ||
        (st = config_get_int(cfg, "num_local_experts", 0, QWEN3_MOE_MAX_EXPERTS, &n_exp)) ||
        (st = config_get_int(cfg, "num_experts_per_tok", 0, QWEN3_MOE_MAX_EXPERTS, &k)) ||
        (st = config_get_int(cfg, "moe_intermediate_size", 0, 1 << 20, &fe)) ||
        (st = config_get_int(cfg, "decoder_sparse_step", 1, INT_MAX, &step)) ||
        (st = config_get_int(cfg, "shared_expert_intermediate_size", 0, INT_MAX, &shared)) ||
        (st = config_get_bool(cfg, "norm_topk_prob", &norm)))
        return st;
    if (shared > 0) {
        LOG_ERR("%s: shared_expert_intermediate_size is not supported for %s (no shared expert)",
                hp->arch, hp->arch);
        return STATUS_EUNSUPPORTED;
    }
    if (n_exp > 0 && (k < 1 || k > n_exp || fe < 1)) {
        LOG_ERR("%s: num_experts %d needs 1 <= num_experts_per_tok (%d) <= num_experts and "
                "moe_intermediate_size > 0 (%d)", hp->arch, n_exp, k, fe);
        return STATUS_EFORMAT;
    }
    hp->n_experts = n_exp;
    hp->n_experts_used = k;
    hp->d_ff_expert = fe;
    hp->norm_topk = norm;
    bool dense_only[MODEL_MAX_LAYERS] = { false };
    const json_t *mlp_only = json_object_get(cfg, "mlp_only_layers");
    if (mlp_only && !json_is_null(mlp_only)) {
        if (!json_is_array(mlp_only)) {
            LOG_ERR("%s: mlp_only_layers must be a list of layer indices", hp->arch);
            return STATUS_EFORMAT;
        }
        size_t i;
        const json_t *v;
        json_array_foreach(mlp_only, i, v) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= hp->n_layers) {
                LOG_ERR("%s: mlp_only_layers[%zu] is not a layer index below %d", hp->arch, i, hp->n_layers);
                return STATUS_EFORMAT;
            }
            dense_only[json_integer_value(v)] = true;
        }
    }
    for (int i = 0; i < hp->n_layers; i++)
        hp->layer_moe[i] = n_exp > 0 && !dense_only[i] && (i + 1) % step == 0;
    f->moe = n_exp > 0;
    return qwen_read_sliding(cfg, hp);
}

const struct arch arch_qwen3_moe = {
    .name = "Qwen3MoeForCausalLM",
    .f = { .act = ACT_SILU, .qk_norm = true, .moe = true },
    .tie_default = false,
    .rope_theta_default = 10000.0f,
    .names = {
        ARCH_LLAMA_NAMES,
        ARCH_QK_NORM_NAMES,
        [W_ROUTER] = "model.layers.%d.mlp.gate.weight",
        [W_EXP_GATE] = "model.layers.%d.mlp.experts.%d.gate_proj.weight",
        [W_EXP_UP] = "model.layers.%d.mlp.experts.%d.up_proj.weight",
        [W_EXP_DOWN] = "model.layers.%d.mlp.experts.%d.down_proj.weight",
        [W_EXP_GATE_UP_FUSED] = "model.layers.%d.mlp.experts.gate_up_proj",
        [W_EXP_DOWN_FUSED] = "model.layers.%d.mlp.experts.down_proj",
    },
    .read_hparams = qwen3_moe_read,
};
