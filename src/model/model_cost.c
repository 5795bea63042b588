#include "model/model_cost.h"

#include "tensor/qweight.h"

/* Bytes of a bound tensor as stored (quantized: packed words + scales + biases); 0 if absent. */
static double bytes_of(const struct tensor *t)
{
    if (!t->buf) return 0;
    return (double)(t->dtype == DTYPE_QMLX ? qweight_bytes(t) : tensor_bytes(t));
}

static double elems_of(const struct tensor *t) { return t->buf ? (double)tensor_nelem(t) : 0; }

/* The share of the routed experts one token runs. */
static double expert_share(const struct hparams *hp)
{
    return hp->n_experts > 0 ? (double)hp->n_experts_used / hp->n_experts : 0;
}

/* The projections a token multiplies with in layer l, routed experts excluded. */
static int layer_matmuls(const struct layer_weights *lw, const struct tensor **out)
{
    const struct tensor *t[] = {
        &lw->wq, &lw->wq_gate, &lw->wk, &lw->wv, &lw->wo,
        &lw->w_gate, &lw->w_up, &lw->w_down,
        &lw->router, &lw->shared_gate, &lw->shared_up, &lw->shared_down, &lw->shared_expert_gate,
        &lw->gdn_qkv, &lw->gdn_z, &lw->gdn_b, &lw->gdn_a, &lw->gdn_qkvz, &lw->gdn_ba, &lw->gdn_out,
    };
    int n = (int)(sizeof t / sizeof t[0]);
    for (int i = 0; i < n; i++) out[i] = t[i];
    return n;
}

/* The other weights a token reads in layer l: norms, biases, conv taps, decay parameters. */
static int layer_vectors(const struct layer_weights *lw, const struct tensor **out)
{
    const struct tensor *t[] = {
        &lw->attn_norm, &lw->attn_post_norm, &lw->ffn_norm, &lw->ffn_post_norm, &lw->q_norm, &lw->k_norm,
        &lw->bq, &lw->bk, &lw->bv, &lw->gdn_conv, &lw->gdn_a_log, &lw->gdn_dt_bias, &lw->gdn_norm,
    };
    int n = (int)(sizeof t / sizeof t[0]);
    for (int i = 0; i < n; i++) out[i] = t[i];
    return n;
}

/* Sum over all routed experts of layer lw of f (bytes or elements); 0 for a dense layer. */
static double experts_sum(const struct model *m, const struct layer_weights *lw, double (*f)(const struct tensor *))
{
    double s = 0;
    if (!lw->exp_gate) return 0;
    for (int e = 0; e < m->hp.n_experts; e++) s += f(&lw->exp_gate[e]) + f(&lw->exp_up[e]) + f(&lw->exp_down[e]);
    return s;
}

double model_decode_weight_bytes(const struct model *m)
{
    const struct tensor *t[32];
    double b = 0;
    for (int l = 0; l < m->hp.n_layers; l++) {   // MTP layers (after n_layers) do not run
        const struct layer_weights *lw = &m->layers[l];
        for (int i = 0, n = layer_matmuls(lw, t); i < n; i++) b += bytes_of(t[i]);
        for (int i = 0, n = layer_vectors(lw, t); i < n; i++) b += bytes_of(t[i]);
        b += experts_sum(m, lw, bytes_of) * expert_share(&m->hp);
    }
    b += bytes_of(&m->tok_embed) / m->hp.n_vocab;   // the token's row is gathered
    b += bytes_of(&m->out_norm) + bytes_of(&m->lm_head);
    return b;
}

double model_decode_state_bytes(const struct model *m)
{
    return 2.0 * (double)model_seq_state_bytes(&m->hp, DTYPE_F32);   // kv/state_pool keeps f32 states
}

/* Positions a query at position p (0-based) attends in layer l. */
static int64_t keys_seen(const struct hparams *hp, int l, int64_t p)
{
    bool sliding = hp->sliding_window > 0 && hp->layer_sliding[l];
    return sliding && p + 1 > hp->sliding_window ? hp->sliding_window : p + 1;
}

double model_decode_kv_bytes(const struct model *m, enum dtype kv_dtype, int64_t ctx)
{
    const struct hparams *hp = &m->hp;
    double per_pos = 2.0 * hp->n_kv_heads * hp->head_dim * (double)dtype_size(kv_dtype);   // K and V
    double b = 0;
    for (int l = 0; l < hp->n_layers; l++)
        if (!hp->layer_linear[l]) b += per_pos * (double)keys_seen(hp, l, ctx);
    return b;
}

double model_decode_bytes(const struct model *m, enum dtype kv_dtype, int64_t ctx)
{
    return model_decode_weight_bytes(m) + model_decode_kv_bytes(m, kv_dtype, ctx) + model_decode_state_bytes(m);
}

double model_active_params(const struct model *m)
{
    const struct tensor *t[32];
    double p = 0;
    for (int l = 0; l < m->hp.n_layers; l++) {
        const struct layer_weights *lw = &m->layers[l];
        for (int i = 0, n = layer_matmuls(lw, t); i < n; i++) p += elems_of(t[i]);
        p += experts_sum(m, lw, elems_of) * expert_share(&m->hp);
    }
    return p;
}

double model_prefill_flops(const struct model *m, int64_t n_tok, int64_t n_out)
{
    const struct hparams *hp = &m->hp;
    double flops = 2.0 * model_active_params(m) * (double)n_tok + 2.0 * elems_of(&m->lm_head) * (double)n_out;
    for (int l = 0; l < hp->n_layers; l++) {
        if (hp->layer_linear[l]) {
            double conv_dim = 2.0 * hp->lin_n_k_heads * hp->lin_k_dim + (double)hp->lin_n_v_heads * hp->lin_v_dim;
            double per_tok = 2.0 * hp->lin_conv_kernel * conv_dim + 7.0 * hp->lin_n_v_heads * hp->lin_k_dim * hp->lin_v_dim;
            flops += per_tok * (double)n_tok;
            continue;
        }
        // sum over queries of the keys each attends: n(n+1)/2 causal, capped by a sliding window
        double pairs;
        bool sliding = hp->sliding_window > 0 && hp->layer_sliding[l];
        int64_t w = hp->sliding_window;
        if (!sliding || n_tok <= w) pairs = (double)n_tok * (double)(n_tok + 1) / 2;
        else pairs = (double)w * (double)(w + 1) / 2 + (double)(n_tok - w) * (double)w;
        flops += 4.0 * hp->n_heads * hp->head_dim * pairs;
    }
    return flops;
}
