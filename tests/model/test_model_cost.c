/* model_cost against independent counts on real (tiny) checkpoints: a dense, a dense tied, a MoE
 * with dense layers between, a hybrid MoE, a sliding-window model, quantized dense, MoE and hybrid
 * models (tests/model/fixtures), and a synthesized hybrid MoE with an MTP head. Decode bytes are
 * checked against a walk over every tensor the loader bound (weights_for_each: routed experts
 * scaled by k / E, the embedding table by one row, the MTP head dropped), whose total must also
 * equal the loader's weight_bytes; prefill FLOPs against the parameter count written from
 * config.json's shapes. */
#include <stdio.h>
#include <stdlib.h>

#include "base/log.h"
#include "harness.h"
#include "model/model.h"
#include "model/model_cost.h"
#include "model/weights.h"
#include "tensor/qweight.h"

struct walk {
    const struct model *m;
    double all;      // every tensor visited, as stored
    double active;   // what one decode token reads
};

static bool in_array(const struct tensor *t, const struct tensor *a, int n) { return a && t >= a && t < a + n; }

static void walk_one(struct tensor *t, void *ctx)
{
    struct walk *w = ctx;
    const struct model *m = w->m;
    const struct hparams *hp = &m->hp;
    double b = (double)(t->dtype == DTYPE_QMLX ? qweight_bytes(t) : tensor_bytes(t));
    w->all += b;
    const struct layer_weights *mtp0 = m->layers + hp->n_layers;
    bool mtp = ((const void *)t >= (const void *)mtp0 && (const void *)t < (const void *)(mtp0 + hp->n_mtp_layers)) ||
               t == &m->mtp.norm_embed || t == &m->mtp.norm_hidden || t == &m->mtp.fc || t == &m->mtp.norm;
    bool expert = false;
    for (int l = 0; l < hp->n_layers + hp->n_mtp_layers; l++)
        expert |= in_array(t, m->layers[l].exp_gate, 3 * hp->n_experts);   // gate, up, down: one allocation
    for (int l = hp->n_layers; l < hp->n_layers + hp->n_mtp_layers; l++)
        mtp |= in_array(t, m->layers[l].exp_gate, 3 * hp->n_experts);
    if (mtp) return;
    if (t == &m->tok_embed) b /= hp->n_vocab;
    if (expert) b *= (double)hp->n_experts_used / hp->n_experts;
    w->active += b;
}

/* Matmul parameters per token from config shapes alone (lm_head excluded, experts k of E). */
static double params_from_shapes(const struct model *m)
{
    const struct hparams *hp = &m->hp;
    double d = hp->d_model, p = 0;
    for (int l = 0; l < hp->n_layers; l++) {
        if (hp->layer_linear[l]) {
            double conv_dim = 2.0 * hp->lin_n_k_heads * hp->lin_k_dim + (double)hp->lin_n_v_heads * hp->lin_v_dim;
            double vdim = (double)hp->lin_n_v_heads * hp->lin_v_dim;
            p += d * (conv_dim + vdim + 2.0 * hp->lin_n_v_heads) + vdim * d;   // qkv, z, b, a; out
        } else {
            double q = (double)hp->n_heads * hp->head_dim, kv = (double)hp->n_kv_heads * hp->head_dim;
            p += d * (q * (m->f.attn_out_gate ? 2 : 1) + 2 * kv) + q * d;
        }
        if (m->f.moe && hp->layer_moe[l]) {
            p += hp->n_experts * d + hp->n_experts_used * 3.0 * d * hp->d_ff_expert;
            if (hp->d_ff_shared) p += 3.0 * d * hp->d_ff_shared + d;
        } else {
            p += 3.0 * d * hp->d_ff;
        }
    }
    return p;
}

static bool close_to(double a, double b) { return fabs(a - b) <= 1e-9 * fabs(b) + 1e-6; }

static void check_model(const char *dir, struct model *m, bool want_moe, bool want_linear, bool want_quant)
{
    const struct hparams *hp = &m->hp;
    EXPECTF((hp->n_experts > 0) == want_moe && (hp->n_linear_layers > 0) == want_linear && (m->n_qw > 0) == want_quant,
            "%s is not the kind of model this case is for", dir);

    struct walk w = { .m = m };
    weights_for_each(m, walk_one, &w);
    if (hp->tie_embed) w.active += (double)(m->lm_head.dtype == DTYPE_QMLX ? qweight_bytes(&m->lm_head)
                                                                                            : tensor_bytes(&m->lm_head));
    EXPECTF(close_to(w.all, (double)m->weight_bytes), "%s: walk %.0f vs loader %llu", dir, w.all,
            (unsigned long long)m->weight_bytes);
    double got = model_decode_weight_bytes(m);
    EXPECTF(close_to(got, w.active), "%s: decode weight bytes %.1f, independent walk %.1f", dir, got, w.active);
    if (want_moe) EXPECTF(got < 0.9 * (double)m->weight_bytes, "%s: a MoE token reads %.0f of %llu bytes", dir, got,
                          (unsigned long long)m->weight_bytes);

    // KV: each attention layer reads ctx + 1 positions (a sliding one at most its window)
    for (int ctx = 0; ctx <= 600; ctx += 300) {
        double kv = 0;
        for (int l = 0; l < hp->n_layers; l++) {
            if (hp->layer_linear[l]) continue;
            int pos = ctx + 1;
            if (hp->sliding_window > 0 && hp->layer_sliding[l] && pos > hp->sliding_window) pos = hp->sliding_window;
            kv += (double)pos * 2 * hp->n_kv_heads * hp->head_dim * 2;
        }
        EXPECTF(close_to(model_decode_kv_bytes(m, DTYPE_BF16, ctx), kv), "%s: kv bytes at %d", dir, ctx);
        double state = 0;
        if (want_linear) {
            double conv_dim = 2.0 * hp->lin_n_k_heads * hp->lin_k_dim + (double)hp->lin_n_v_heads * hp->lin_v_dim;
            state = 2.0 * hp->n_linear_layers * 4 *
                    ((hp->lin_conv_kernel - 1) * conv_dim + (double)hp->lin_n_v_heads * hp->lin_k_dim * hp->lin_v_dim);
        }
        EXPECTF(close_to(model_decode_bytes(m, DTYPE_BF16, ctx), w.active + kv + state), "%s: decode bytes at %d", dir, ctx);
    }

    // Prefill: 2 per active matmul weight per token, lm_head for the logits rows, attention pairs
    double p = params_from_shapes(m);
    EXPECTF(close_to(model_active_params(m), p), "%s: active params %.0f, from shapes %.0f", dir, model_active_params(m), p);
    int n = 300;
    double attn = 0, lin = 0;
    for (int l = 0; l < hp->n_layers; l++) {
        if (hp->layer_linear[l]) {
            double conv_dim = 2.0 * hp->lin_n_k_heads * hp->lin_k_dim + (double)hp->lin_n_v_heads * hp->lin_v_dim;
            lin += n * (2.0 * hp->lin_conv_kernel * conv_dim + 7.0 * hp->lin_n_v_heads * hp->lin_k_dim * hp->lin_v_dim);
            continue;
        }
        for (int q = 0; q < n; q++) {
            int keys = q + 1;
            if (hp->sliding_window > 0 && hp->layer_sliding[l] && keys > hp->sliding_window) keys = hp->sliding_window;
            attn += 4.0 * hp->n_heads * hp->head_dim * keys;
        }
    }
    double lm = (double)hp->n_vocab * hp->d_model;
    double want = 2 * p * n + 2 * lm * 1 + attn + lin;
    EXPECTF(close_to(model_prefill_flops(m, n, 1), want), "%s: prefill flops %.6g, expected %.6g", dir,
            model_prefill_flops(m, n, 1), want);
}

static void check(const char *dir, bool want_moe, bool want_linear, bool want_quant)
{
    struct model *m = NULL;
    EXPECTF(model_load(dir, &m) == STATUS_OK, "load %s", dir);
    if (!m) return;
    check_model(dir, m, want_moe, want_linear, want_quant);
    model_free(m);
}

/* The fixtures have no MTP head: a synthesized hybrid MoE with one, which a token must not count. */
TEST(hybrid_moe_with_mtp)
{
    char path[] = "/tmp/cairn_test_model_cost_XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    const char *cfg =
        "{\"architectures\": [\"Qwen3_5MoeForCausalLM\"], \"vocab_size\": 96, \"hidden_size\": 64,"
        " \"intermediate_size\": 96, \"num_hidden_layers\": 4, \"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
        " \"head_dim\": 32, \"max_position_embeddings\": 512, \"linear_num_key_heads\": 2, \"linear_num_value_heads\": 4,"
        " \"linear_key_head_dim\": 16, \"linear_value_head_dim\": 16, \"rope_theta\": 10000, \"num_experts\": 8,"
        " \"num_experts_per_tok\": 2, \"moe_intermediate_size\": 32, \"shared_expert_intermediate_size\": 48,"
        " \"mtp_num_hidden_layers\": 1, \"layer_types\": [\"linear_attention\", \"full_attention\","
        " \"linear_attention\", \"linear_attention\"]}";
    FILE *f = fdopen(fd, "w");
    ASSERT(f && fputs(cfg, f) >= 0);
    fclose(f);
    struct model *m = NULL;
    EXPECT(model_synthesize(path, 3, &m) == STATUS_OK);
    remove(path);
    if (!m) return;
    EXPECT(m->has_mtp && m->hp.n_mtp_layers == 1);
    check_model("synthesized hybrid MoE with MTP", m, true, true, false);
    model_free(m);
}

#define FX "tests/model/fixtures/"
TEST(dense) { check(FX "qwen3", false, false, false); }
TEST(dense_tied) { check(FX "qwen3_tied", false, false, false); }
TEST(sliding_window) { check(FX "gemma3", false, false, false); }
TEST(moe) { check(FX "qwen3_moe", true, false, false); }
TEST(hybrid_moe) { check(FX "qwen3_5_moe", true, true, false); }
TEST(hybrid_next) { check(FX "qwen3_next", true, true, false); }
TEST(quant_dense) { check(FX "quant/models/qwen3_q4g64", false, false, true); }
TEST(quant_tied) { check(FX "quant/models/qwen3_tied_nvfp4", false, false, true); }
TEST(quant_moe_mixed) { check(FX "quant/models/qwen3_moe_mixed_4_8", true, false, true); }
TEST(quant_hybrid_moe) { check(FX "quant/models/qwen3_5_moe_vlm_q4g32", true, true, true); }

int main(void)
{
    log_set_level(LOG_LEVEL_WARN);
    RUN(dense);
    RUN(dense_tied);
    RUN(sliding_window);
    RUN(moe);
    RUN(hybrid_moe);
    RUN(hybrid_next);
    RUN(quant_dense);
    RUN(quant_tied);
    RUN(quant_moe_mixed);
    RUN(quant_hybrid_moe);
    RUN(hybrid_moe_with_mtp);
    return test_summary();
}
