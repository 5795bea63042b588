/* forward: the decoder forward pass, written once for every supported architecture.
 *
 * Design note. A step is a flat list of tokens from many sequences (continuous batching), so
 * every projection is one matmul over all tokens of the step, and only attention looks at which
 * sequence a token belongs to (through the paged KV cache). Architecture differences are switches
 * in model->f (norm style, q/k norm, biases, sandwich norms, activation, MoE) and data in
 * model->hp (rope per layer type, sliding windows, soft-caps): no per-model copy of this file.
 *
 * Scratch activations are carved from one backend buffer at forward_new, sized for max_tok
 * tokens and max_out logits rows; forward_step allocates nothing.
 */
#include "model/forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "model/forward_hybrid.h"
#include "model/rope.h"

enum { ROPE_GLOBAL = 0, ROPE_LOCAL = 1, ROPE_N };

/* Per-op time when CAIRN_PROFILE=1: each op is followed by a sync, so the numbers add up to the
 * step time (at the cost of overlap). Printed by forward_free. */
enum prof_op { P_EMBED, P_NORM, P_QKV, P_QK_NORM, P_ROPE, P_KV_WRITE, P_ATTN, P_O_PROJ, P_FFN_UP, P_GLU, P_FFN_DOWN,
               P_ROUTER, P_MOE, P_ADD, P_LOGITS, P_N };
static const char *prof_names[P_N] = { "embed", "rmsnorm", "qkv matmul", "qk norm", "rope", "kv write", "attention",
                                       "o matmul", "gate/up matmul", "glu", "down matmul", "router", "moe experts",
                                       "residual add", "logits" };
#define OP(fw, id, call) do { \
        double t0_ = (fw)->prof ? prof_begin(fw) : 0; \
        call; \
        if ((fw)->prof) prof_end(fw, id, t0_); \
    } while (0)

struct forward {
    const struct model *m;
    struct backend     *be;
    int                 max_tok;
    int                 max_out;
    int                 rot_dim;

    struct buffer      *buf;            // all scratch below lives here
    struct tensor       x;              // [max_tok, d] residual stream
    struct tensor       xn;             // [max_tok, d] normalized input of a block
    struct tensor       q;              // [max_tok, n_heads * hd]
    struct tensor       k, v;           // [max_tok, n_kv * hd]
    struct tensor       attn;           // [max_tok, n_heads * hd]
    struct tensor       proj;           // [max_tok, d] block output before the residual add
    struct tensor       gate, up;       // [max_tok, f_max]
    struct tensor       router;         // [max_tok, n_experts]
    struct tensor       moe_ids;        // [max_tok, k] i32
    struct tensor       moe_w;          // [max_tok, k] f32
    struct tensor       logits;         // [max_out, n_vocab]
    struct tensor       inv_freq[ROPE_N];   // [rot_dim / 2] f32
    float               mscale[ROPE_N];
    bool                dynamic[ROPE_N];    // inv_freq depends on the step's longest sequence
    float              *host_freq;      // [rot_dim / 2] staging for dynamic rope
    struct hybrid_scratch *hs;          // hybrid models' block scratch (forward_hybrid.h), else NULL
    struct gdn_state_layer *states;     // [n_layers] recurrent state (forward_bind_states), borrowed
    bool                prof;           // CAIRN_PROFILE set
    double              prof_s[P_N];    // seconds per op kind
};

static double prof_begin(struct forward *fw)
{
    fw->be->ops->sync(fw->be);
    return clock_now_s();
}

static void prof_end(struct forward *fw, enum prof_op id, double t0)
{
    fw->be->ops->sync(fw->be);
    fw->prof_s[id] += clock_now_s() - t0;
}

int forward_max_tok(const struct forward *fw) { return fw->max_tok; }

static const struct rope_cfg *rope_cfg_of(const struct model *m, int which)
{
    return which == ROPE_LOCAL && m->hp.rope_local.theta > 0 ? &m->hp.rope_local : &m->hp.rope;
}

enum status forward_new(const struct model *m, struct backend *be, int max_tok, int max_out,
                        struct forward **out)
{
    const struct hparams *hp = &m->hp;
    CHECK(max_tok > 0 && max_out > 0 && max_out <= max_tok, "bad forward sizes %d/%d", max_tok, max_out);
    struct forward *fw = xcalloc(1, sizeof *fw);
    fw->m = m;
    fw->be = be;
    fw->max_tok = max_tok;
    fw->max_out = max_out;
    fw->rot_dim = (int)(hp->head_dim * (hp->partial_rotary > 0 ? hp->partial_rotary : 1.0f));
    fw->rot_dim -= fw->rot_dim % 2;

    int64_t d = hp->d_model, T = max_tok;
    int64_t qd = (int64_t)hp->n_heads * hp->head_dim, kvd = (int64_t)hp->n_kv_heads * hp->head_dim;
    int64_t f = hp->d_ff > hp->d_ff_expert ? hp->d_ff : hp->d_ff_expert;
    int64_t n_exp = hp->n_experts > 0 ? hp->n_experts : 1;
    int64_t k_exp = hp->n_experts_used > 0 ? hp->n_experts_used : 1;

    struct { struct tensor *t; enum dtype dt; int64_t cols, rows; } plan[] = {
        { &fw->x, DTYPE_F32, d, T },          { &fw->xn, DTYPE_F32, d, T },
        { &fw->q, DTYPE_F32, qd, T },         { &fw->k, DTYPE_F32, kvd, T },
        { &fw->v, DTYPE_F32, kvd, T },        { &fw->attn, DTYPE_F32, qd, T },
        { &fw->proj, DTYPE_F32, d, T },       { &fw->gate, DTYPE_F32, f, T },
        { &fw->up, DTYPE_F32, f, T },         { &fw->router, DTYPE_F32, n_exp, T },
        { &fw->moe_ids, DTYPE_I32, k_exp, T },{ &fw->moe_w, DTYPE_F32, k_exp, T },
        { &fw->logits, DTYPE_F32, hp->n_vocab, max_out },
        { &fw->inv_freq[0], DTYPE_F32, fw->rot_dim / 2, 1 },
        { &fw->inv_freq[1], DTYPE_F32, fw->rot_dim / 2, 1 },
    };
    size_t n_plan = sizeof plan / sizeof plan[0];
    size_t bytes = 0;
    for (size_t i = 0; i < n_plan; i++)
        bytes += ((size_t)(plan[i].cols * plan[i].rows) * dtype_size(plan[i].dt) + 255) & ~(size_t)255;
    enum status st = be->ops->buffer_new(be, bytes, &fw->buf);
    if (st != STATUS_OK) {
        LOG_ERR("forward: cannot allocate %zu bytes of activations for %d tokens", bytes, max_tok);
        free(fw);
        return st;
    }
    size_t off = 0;
    for (size_t i = 0; i < n_plan; i++) {
        *plan[i].t = tensor_2d(plan[i].dt, plan[i].cols, plan[i].rows, fw->buf, off);
        off += (tensor_bytes(plan[i].t) + 255) & ~(size_t)255;
    }

    const char *prof = getenv("CAIRN_PROFILE");
    fw->prof = prof && *prof && strcmp(prof, "0");
    fw->host_freq = xmalloc(sizeof(float) * (size_t)(fw->rot_dim / 2));
    for (int r = 0; r < ROPE_N; r++) {
        const struct rope_cfg *rc = rope_cfg_of(m, r);
        fw->dynamic[r] = rc->scaling == ROPE_SCALING_DYNAMIC;
        rope_inv_freq(rc, fw->rot_dim, hp->max_pos, 0, fw->host_freq, &fw->mscale[r]);
        be->ops->upload(be, &fw->inv_freq[r], fw->host_freq, sizeof(float) * (size_t)(fw->rot_dim / 2));
    }
    if (hp->n_linear_layers > 0 || m->f.attn_out_gate || hp->d_ff_shared > 0) {
        if ((st = hybrid_scratch_new(be, m, max_tok, &fw->hs)) != STATUS_OK) {
            forward_free(fw);
            return st;
        }
    }
    *out = fw;
    return STATUS_OK;
}

void forward_bind_states(struct forward *fw, struct gdn_state_layer *states) { fw->states = states; }

void forward_free(struct forward *fw)
{
    if (!fw) return;
    if (fw->prof) {
        double total = 0;
        for (int i = 0; i < P_N; i++) total += fw->prof_s[i];
        for (int i = 0; i < P_N; i++)
            if (fw->prof_s[i] > 0)
                LOG_INFO("profile %-15s %9.3f s  %5.1f%%", prof_names[i], fw->prof_s[i], 100 * fw->prof_s[i] / total);
    }
    hybrid_scratch_free(fw->be, fw->hs);
    fw->be->ops->buffer_free(fw->be, fw->buf);
    free(fw->host_freq);
    free(fw);
}

/* The first n rows of a scratch tensor. */
static struct tensor rows(const struct tensor *t, int n) { return tensor_rows_view(t, 0, n); }

static bool has(const struct tensor *t) { return t->buf != NULL; }

static void norm(struct forward *fw, struct tensor *out, const struct tensor *x, const struct tensor *w)
{
    const struct model *m = fw->m;
    fw->be->ops->rmsnorm(fw->be, out, x, w, m->hp.norm_eps, m->f.norm_plus_one ? 1.0f : 0.0f);
}

/* Per-head RMSNorm of a [n, n_heads * hd] tensor (Qwen3 / Gemma 3 q_norm and k_norm). */
static void head_norm(struct forward *fw, struct tensor *x, int n_heads, const struct tensor *w)
{
    int64_t hd = fw->m->hp.head_dim;
    struct tensor v = tensor_reshape(x, 2, (int64_t[]){ hd, x->ne[1] * n_heads });
    norm(fw, &v, &v, w);
}

/* outs[i] = x @ ws[i]^T (+ bs[i]): one fused pass when the backend has matmul_n. */
static void matmul_many(struct backend *be, int n, struct tensor *const *outs, const struct tensor *x,
                        const struct tensor *const *ws, const struct tensor *const *bs)
{
    if (be->ops->matmul_n) {
        be->ops->matmul_n(be, n, outs, x, ws, bs);
        return;
    }
    for (int i = 0; i < n; i++) be->ops->matmul(be, outs[i], x, ws[i], bs[i]);
}

/* outs[i] = norm(x) @ ws[i]^T (+ bs[i]), through xn; one fused pass when the backend has
 * norm_matmul_n (then xn may stay unwritten, and the norm's time counts as the matmul's). */
static void norm_matmul_many(struct forward *fw, enum prof_op id, int n, struct tensor *const *outs, struct tensor *xn,
                             const struct tensor *x, const struct tensor *norm_w, const struct tensor *const *ws,
                             const struct tensor *const *bs)
{
    const struct model *m = fw->m;
    struct backend *be = fw->be;
    if (be->ops->norm_matmul_n) {
        OP(fw, id, be->ops->norm_matmul_n(be, n, outs, xn, x, norm_w, m->hp.norm_eps, m->f.norm_plus_one ? 1.0f : 0.0f,
                                          ws, bs));
        return;
    }
    OP(fw, P_NORM, norm(fw, xn, x, norm_w));
    OP(fw, id, matmul_many(be, n, outs, xn, ws, bs));
}

/* x += post_norm(proj) (the post-norm only in sandwich-norm architectures). */
static void residual_add(struct forward *fw, struct tensor *x, struct tensor *proj, const struct tensor *post_norm)
{
    if (post_norm) OP(fw, P_NORM, norm(fw, proj, proj, post_norm));
    OP(fw, P_ADD, fw->be->ops->add(fw->be, x, x, proj));
}

/* x += post_norm(in @ w^T); one fused pass when the backend has matmul_add and there is no post-norm. */
static void residual_matmul(struct forward *fw, enum prof_op id, struct tensor *x, struct tensor *proj,
                            const struct tensor *in, const struct tensor *w, const struct tensor *post_norm)
{
    struct backend *be = fw->be;
    if (!post_norm && be->ops->matmul_add) {
        OP(fw, id, be->ops->matmul_add(be, x, in, w));
        return;
    }
    OP(fw, id, be->ops->matmul(be, proj, in, w, NULL));
    residual_add(fw, x, proj, post_norm);
}

static void attention_block(struct forward *fw, int l, struct kv_layer *kv, const struct batch_meta *meta)
{
    const struct model *m = fw->m;
    const struct hparams *hp = &m->hp;
    const struct layer_weights *lw = &m->layers[l];
    struct backend *be = fw->be;
    int n = meta->n_tok;
    struct tensor x = rows(&fw->x, n), xn = rows(&fw->xn, n), q = rows(&fw->q, n), k = rows(&fw->k, n),
                  v = rows(&fw->v, n), attn = rows(&fw->attn, n), proj = rows(&fw->proj, n);

    struct tensor *qkv[3] = { &q, &k, &v };
    const struct tensor *w_qkv[3] = { &lw->wq, &lw->wk, &lw->wv };
    const struct tensor *b_qkv[3] = { has(&lw->bq) ? &lw->bq : NULL, has(&lw->bk) ? &lw->bk : NULL,
                                      has(&lw->bv) ? &lw->bv : NULL };
    if (m->f.attn_out_gate) {   // the output gate reads norm(x) too: no fused norm + matmul
        OP(fw, P_NORM, norm(fw, &xn, &x, &lw->attn_norm));
        OP(fw, P_QKV, matmul_many(be, 3, qkv, &xn, w_qkv, b_qkv));
    } else {
        norm_matmul_many(fw, P_QKV, 3, qkv, &xn, &x, &lw->attn_norm, w_qkv, b_qkv);
    }

    bool sliding = hp->sliding_window > 0 && hp->layer_sliding[l];
    int which = sliding ? ROPE_LOCAL : ROPE_GLOBAL;
    struct rope_params rp = {
        .head_dim = hp->head_dim, .rot_dim = fw->rot_dim, .mscale = fw->mscale[which], .interleaved = false,
    };
    if (be->ops->qk_rope_kv) {
        OP(fw, P_ROPE, be->ops->qk_rope_kv(be, &q, &k, &v, m->f.qk_norm ? &lw->q_norm : NULL,
                                           m->f.qk_norm ? &lw->k_norm : NULL, hp->norm_eps,
                                           m->f.norm_plus_one ? 1.0f : 0.0f, hp->n_heads, hp->n_kv_heads,
                                           &fw->inv_freq[which], &rp, kv, meta));
    } else {
        if (m->f.qk_norm)
            OP(fw, P_QK_NORM, head_norm(fw, &q, hp->n_heads, &lw->q_norm); head_norm(fw, &k, hp->n_kv_heads, &lw->k_norm));
        OP(fw, P_ROPE, be->ops->rope(be, &q, hp->n_heads, &fw->inv_freq[which], &rp, meta);
                       be->ops->rope(be, &k, hp->n_kv_heads, &fw->inv_freq[which], &rp, meta));
        OP(fw, P_KV_WRITE, be->ops->kv_write(be, kv, &k, &v, meta));
    }

    struct attn_params ap = {
        .n_heads = hp->n_heads, .n_kv_heads = hp->n_kv_heads, .head_dim = hp->head_dim,
        .scale = hp->attn_scale, .window = sliding ? hp->sliding_window : 0, .softcap = hp->attn_softcap,
    };
    OP(fw, P_ATTN, be->ops->attention(be, &attn, &q, kv, &ap, meta));
    if (m->f.attn_out_gate) OP(fw, P_ATTN, hybrid_attn_output_gate(be, m, l, fw->hs, &attn, &xn));
    residual_matmul(fw, P_O_PROJ, &x, &proj, &attn, &lw->wo, m->f.sandwich_norm ? &lw->attn_post_norm : NULL);
}

static void ffn_block(struct forward *fw, int l, const struct batch_meta *meta)
{
    const struct model *m = fw->m;
    const struct hparams *hp = &m->hp;
    const struct layer_weights *lw = &m->layers[l];
    struct backend *be = fw->be;
    int n = meta->n_tok;
    struct tensor x = rows(&fw->x, n), xn = rows(&fw->xn, n), proj = rows(&fw->proj, n);

    const struct tensor *post_norm = m->f.sandwich_norm ? &lw->ffn_post_norm : NULL;
    if (m->f.moe && hp->layer_moe[l]) {
        struct tensor logits = rows(&fw->router, n), ids = rows(&fw->moe_ids, n), w = rows(&fw->moe_w, n);
        if (be->ops->norm_moe_route) {   // norm, router and top-k in one pass (the norm's time counts as the router's)
            OP(fw, P_ROUTER, be->ops->norm_moe_route(be, &ids, &w, &logits, &xn, &x, &lw->ffn_norm, hp->norm_eps,
                                                     m->f.norm_plus_one ? 1.0f : 0.0f, &lw->router,
                                                     hp->n_experts_used, hp->norm_topk));
        } else {
            OP(fw, P_NORM, norm(fw, &xn, &x, &lw->ffn_norm));
            OP(fw, P_ROUTER, be->ops->matmul(be, &logits, &xn, &lw->router, NULL);
                             be->ops->moe_route(be, &ids, &w, &logits, hp->n_experts_used, hp->norm_topk));
        }
        if (hp->d_ff_shared > 0) OP(fw, P_MOE, hybrid_shared_expert_add(be, m, l, fw->hs, &x, &xn));
        if (!post_norm && be->ops->moe_ffn_add) {   // x += experts, the residual add in the experts' epilogue
            OP(fw, P_MOE, be->ops->moe_ffn_add(be, &x, &xn, &ids, &w, lw->exp_gate, lw->exp_up, lw->exp_down,
                                               hp->n_experts, m->f.act));
            return;
        }
        OP(fw, P_MOE, be->ops->moe_ffn(be, &proj, &xn, &ids, &w, lw->exp_gate, lw->exp_up, lw->exp_down,
                                       hp->n_experts, m->f.act));
        residual_add(fw, &x, &proj, post_norm);
        return;
    }
    int64_t f = hp->d_ff;
    struct tensor gate = tensor_2d(DTYPE_F32, f, n, fw->gate.buf, fw->gate.offset);
    struct tensor up = tensor_2d(DTYPE_F32, f, n, fw->up.buf, fw->up.offset);
    if (be->ops->matmul_glu) {   // gate = act(norm(x) @ w_gate^T) * (norm(x) @ w_up^T) in one pass
        OP(fw, P_FFN_UP, be->ops->matmul_glu(be, &gate, &up, &xn, &x, &lw->ffn_norm, m->hp.norm_eps,
                                             m->f.norm_plus_one ? 1.0f : 0.0f, &lw->w_gate, &lw->w_up, m->f.act));
    } else {
        struct tensor *gu[2] = { &gate, &up };
        const struct tensor *w_gu[2] = { &lw->w_gate, &lw->w_up }, *no_bias[2] = { NULL, NULL };
        norm_matmul_many(fw, P_FFN_UP, 2, gu, &xn, &x, &lw->ffn_norm, w_gu, no_bias);
        OP(fw, P_GLU, be->ops->glu(be, &gate, &gate, &up, m->f.act));
    }
    residual_matmul(fw, P_FFN_DOWN, &x, &proj, &gate, &lw->w_down, post_norm);
}

/* Dynamic NTK rope: the base depends on the longest sequence in the step (transformers'
 * dynamic_rope_update, without its cache of the longest length seen so far). */
static void update_dynamic_rope(struct forward *fw, const struct batch_meta *meta)
{
    int longest = 0;
    for (int s = 0; s < meta->n_seq; s++)
        if (meta->seq_len[s] > longest) longest = meta->seq_len[s];
    for (int r = 0; r < ROPE_N; r++) {
        if (!fw->dynamic[r]) continue;
        rope_inv_freq(rope_cfg_of(fw->m, r), fw->rot_dim, fw->m->hp.max_pos, longest, fw->host_freq, &fw->mscale[r]);
        fw->be->ops->upload(fw->be, &fw->inv_freq[r], fw->host_freq, sizeof(float) * (size_t)(fw->rot_dim / 2));
    }
}

void forward_step(struct forward *fw, struct kv_layer *kv, const struct batch_meta *meta, struct tensor *logits)
{
    const struct model *m = fw->m;
    struct backend *be = fw->be;
    CHECK(meta->n_tok > 0 && meta->n_tok <= fw->max_tok, "step of %d tokens, max %d", meta->n_tok, fw->max_tok);
    CHECK(meta->n_out >= 0 && meta->n_out <= fw->max_out, "step of %d logits rows, max %d", meta->n_out, fw->max_out);

    if (fw->dynamic[ROPE_GLOBAL] || fw->dynamic[ROPE_LOCAL]) update_dynamic_rope(fw, meta);
    be->ops->batch_begin(be, meta);

    // A backend may replay a recording of an equivalent earlier step instead of the ops below.
    int graph = STEP_GRAPH_NONE;
    if (be->ops->step_graph_begin && !fw->prof) graph = be->ops->step_graph_begin(be, meta, fw, kv);
    *logits = rows(&fw->logits, meta->n_out);
    if (graph == STEP_GRAPH_REPLAYED) return;

    struct tensor x = rows(&fw->x, meta->n_tok), xn = rows(&fw->xn, meta->n_tok);
    OP(fw, P_EMBED, be->ops->embed(be, &x, &m->tok_embed, meta, m->f.embed_scale ? sqrtf((float)m->hp.d_model) : 1.0f));
    for (int l = 0; l < m->hp.n_layers; l++) {
        if (m->hp.layer_linear[l]) {
            CHECK(fw->states, "forward: a hybrid model's step without forward_bind_states");
            hybrid_gdn_block(be, m, l, fw->hs, &x, &xn, &fw->states[l], meta);
        } else {
            attention_block(fw, l, &kv[l], meta);
        }
        ffn_block(fw, l, meta);
    }

    if (meta->n_out > 0)
        OP(fw, P_LOGITS, norm(fw, &xn, &x, &m->out_norm); be->ops->matmul_rows(be, logits, &xn, &m->lm_head, meta);
                         if (m->hp.final_softcap > 0) be->ops->softcap(be, logits, m->hp.final_softcap));
    if (graph == STEP_GRAPH_RECORDING) be->ops->step_graph_end(be);
}
