/* forward: the decoder forward pass, written once for every supported architecture.
 *
 * Design note. A step is a flat list of tokens from many sequences (continuous batching), so
 * every projection is one matmul over all tokens of the step, and only attention looks at which
 * sequence a token belongs to (through the paged KV cache). Architecture differences are switches
 * in model->f (norm style, q/k norm, biases, sandwich norms, activation, MoE) and data in
 * model->hp (rope per layer type, sliding windows, soft-caps): no per-model copy of this file.
 *
 * The step reads top to bottom (forward_step): embed, then per layer a token-mixing block
 * (attention_block) and a channel-mixing block (ffn_block or moe_block), each a handful of
 * backend ops called once, then the logits. The fused ops (norm_matmul_n, qk_rope_kv, matmul_glu,
 * matmul_add, norm_moe_route, moe_ffn_add) are always there: a backend that does not fuse one gets
 * backend.c's composition of the plain ops, so there is one path for every backend. A new layer
 * kind (e.g. a linear-attention mixer) is one more block function and one more branch in the
 * layer loop.
 *
 * Scratch activations are carved from one backend buffer at forward_new, sized for max_tok
 * tokens and max_out logits rows; forward_step allocates nothing.
 *
 * A rank's model (model/shard.h) runs the same code with its local head and FFN counts; the
 * collective bound by forward_bind_collective joins the ranks at four places: the embedding (each
 * rank looks up only its vocabulary rows, other tokens read a zero row), each block's output before
 * its residual add (row-parallel o_proj, down, MoE experts, DeltaNet out_proj: partial sums), and
 * the logits (each rank's vocabulary columns, gathered). Unsharded, none of it runs.
 */
#include "model/forward.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "dist/collective.h"
#include "model/forward_hybrid.h"
#include "model/rope.h"

enum { ROPE_GLOBAL = 0, ROPE_LOCAL = 1, ROPE_N };

/* Per-op time when CAIRN_PROFILE=1: each op is followed by a sync, so the numbers add up to the
 * step time (at the cost of overlap). Printed by forward_free. Fused ops count as one kind (a
 * block's input norm counts as its first matmul's). */
enum prof_op { P_EMBED, P_QKV, P_QK_ROPE_KV, P_ATTN, P_O_PROJ, P_POST_NORM, P_ADD, P_FFN_UP, P_FFN_DOWN, P_ROUTER,
               P_MOE, P_GDN, P_LOGITS, P_ALL_REDUCE, P_N };
static const char *prof_names[P_N] = { "embed", "norm+qkv matmul", "qk norm+rope+kv", "attention", "o matmul",
                                       "post-norm", "residual add", "norm+gate/up+glu", "down matmul", "norm+router",
                                       "moe experts", "gated deltanet", "logits", "all-reduce" };
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
    float               norm_eps;       // every RMSNorm's eps
    float               norm_offset;    // every RMSNorm's w_offset (1: Gemma's (1 + w))

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
    struct tensor       logits_local;   // [max_out, n_vocab_local] a rank's vocabulary columns (sharded)
    int32_t            *tok_local;      // [max_tok] token ids as rows of a rank's embedding (sharded)
    struct collective  *coll;           // forward_bind_collective, borrowed; NULL: unsharded
    struct tensor       inv_freq[ROPE_N];   // [rot_dim / 2] f32
    float               mscale[ROPE_N];
    bool                dynamic[ROPE_N];    // inv_freq depends on the step's longest sequence
    float              *host_freq;      // [rot_dim / 2] staging for dynamic rope
    struct hybrid_scratch *hs;          // hybrid models' block scratch (forward_hybrid.h), else NULL
    struct gdn_state_layer *states;     // [n_layers] recurrent state (forward_bind_states), borrowed
    struct gdn_state_layer *snaps;      // [n_layers] the snapshot store meta->tok_snap writes, or NULL
    bool                prof;           // the backend was made with cfg profile (CAIRN_PROFILE=1)
    double              prof_s[P_N];    // seconds per op kind
    _Atomic int64_t    *heartbeat_ns;       // forward_bind_heartbeat, borrowed; NULL: none
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
    fw->norm_eps = hp->norm_eps;
    fw->norm_offset = m->f.norm_plus_one ? 1.0f : 0.0f;

    int64_t d = hp->d_model, T = max_tok;
    int64_t qd = (int64_t)hp->n_heads * hp->head_dim, kvd = (int64_t)hp->n_kv_heads * hp->head_dim;
    int64_t f = hp->d_ff > hp->d_ff_expert ? hp->d_ff : hp->d_ff_expert;
    int64_t n_exp = hp->n_experts > 0 ? hp->n_experts : 1;
    int64_t k_exp = hp->n_experts_used > 0 ? hp->n_experts_used : 1;
    if (m->shard.expert_parallel && !be->ops->moe_expert_subset) {
        LOG_ERR("forward: backend %s cannot run expert-parallel ranks (its moe_ffn needs every expert)", be->ops->name);
        free(fw);
        return STATUS_EUNSUPPORTED;
    }

    struct { struct tensor *t; enum dtype dt; int64_t cols, rows; } plan[] = {
        { &fw->x, DTYPE_F32, d, T },          { &fw->xn, DTYPE_F32, d, T },
        { &fw->q, DTYPE_F32, qd, T },         { &fw->k, DTYPE_F32, kvd, T },
        { &fw->v, DTYPE_F32, kvd, T },        { &fw->attn, DTYPE_F32, qd, T },
        { &fw->proj, DTYPE_F32, d, T },       { &fw->gate, DTYPE_F32, f, T },
        { &fw->up, DTYPE_F32, f, T },         { &fw->router, DTYPE_F32, n_exp, T },
        { &fw->moe_ids, DTYPE_I32, k_exp, T },{ &fw->moe_w, DTYPE_F32, k_exp, T },
        { &fw->logits, DTYPE_F32, hp->n_vocab, max_out },
        { &fw->logits_local, DTYPE_F32, m->shard.n_ranks ? m->shard.n_vocab_local : 1, m->shard.n_ranks ? max_out : 1 },
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

    fw->prof = be->profile;
    if (m->shard.n_ranks) fw->tok_local = xmalloc(sizeof(int32_t) * (size_t)max_tok);
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

void forward_bind_states(struct forward *fw, struct gdn_state_layer *states, struct gdn_state_layer *snaps)
{
    fw->states = states;
    fw->snaps = snaps;
}
void forward_bind_heartbeat(struct forward *fw, _Atomic int64_t *ns) { fw->heartbeat_ns = ns; }

void forward_bind_collective(struct forward *fw, struct collective *c)
{
    const struct model_shard *sh = &fw->m->shard;
    CHECK(sh->n_ranks > 0 && c->n_ranks == sh->n_ranks && c->rank == sh->rank,
          "forward: rank %d of %d's model bound to rank %d of %d's collective", sh->rank, sh->n_ranks, c->rank,
          c->n_ranks);
    fw->coll = c;
}

void forward_free(struct forward *fw)
{
    if (!fw) return;
    if (fw->prof) {
        double total = 0;
        for (int i = 0; i < P_N; i++) total += fw->prof_s[i];
        for (int i = 0; i < P_N; i++)
            if (fw->prof_s[i] > 0)
                LOG_INFO("profile %-17s %9.3f s  %5.1f%%", prof_names[i], fw->prof_s[i], 100 * fw->prof_s[i] / total);
    }
    hybrid_scratch_free(fw->be, fw->hs);
    fw->be->ops->buffer_free(fw->be, fw->buf);
    free(fw->host_freq);
    free(fw->tok_local);
    free(fw);
}

/* The first n rows of a scratch tensor. */
static struct tensor rows(const struct tensor *t, int n) { return tensor_rows_view(t, 0, n); }

/* A weight the architecture may lack (biases), as the optional argument of an op. */
static const struct tensor *opt(const struct tensor *t) { return t->buf ? t : NULL; }

/* x += post_norm(proj): the residual add of sandwich-norm architectures (Gemma 3), which norm a
 * block's output before adding it (proj is normed in place). */
static void add_post_normed(struct forward *fw, struct tensor *x, struct tensor *proj, const struct tensor *post_norm)
{
    OP(fw, P_POST_NORM, fw->be->ops->rmsnorm(fw->be, proj, proj, post_norm, fw->norm_eps, fw->norm_offset));
    OP(fw, P_ADD, fw->be->ops->add(fw->be, x, x, proj));
}

/* x += post_norm(sum over ranks of proj): a block's residual add from its output in proj (the
 * rank's partial sum when sharded). */
static void residual_add(struct forward *fw, struct tensor *x, struct tensor *proj, const struct tensor *post_norm)
{
    if (fw->coll) OP(fw, P_ALL_REDUCE, collective_all_reduce_sum(fw->coll, fw->be, proj));
    if (post_norm) add_post_normed(fw, x, proj, post_norm);
    else OP(fw, P_ADD, fw->be->ops->add(fw->be, x, x, proj));
}

/* x += post_norm(in @ w^T): a block's output projection and residual add (post_norm NULL: none). */
static void residual_out(struct forward *fw, enum prof_op id, struct tensor *x, const struct tensor *in,
                         const struct tensor *w, const struct tensor *post_norm)
{
    struct backend *be = fw->be;
    if (!post_norm && !fw->coll) {
        OP(fw, id, be->ops->matmul_add(be, x, in, w));
        return;
    }
    struct tensor proj = rows(&fw->proj, (int)tensor_rows(in));
    OP(fw, id, be->ops->matmul(be, &proj, in, w, NULL));
    residual_add(fw, x, &proj, post_norm);
}

/* x += o_proj(attention(rope(norm(x) @ w_qkv^T))): the token-mixing block of a transformer layer. */
static void attention_block(struct forward *fw, int l, struct kv_layer *kv, const struct batch_meta *meta)
{
    const struct model *m = fw->m;
    const struct hparams *hp = &m->hp;
    const struct layer_weights *lw = &m->layers[l];
    struct backend *be = fw->be;
    int n = meta->n_tok;
    struct tensor x = rows(&fw->x, n), xn = rows(&fw->xn, n), q = rows(&fw->q, n), k = rows(&fw->k, n),
                  v = rows(&fw->v, n), attn = rows(&fw->attn, n);

    struct tensor *qkv[3] = { &q, &k, &v };
    const struct tensor *w_qkv[3] = { &lw->wq, &lw->wk, &lw->wv };
    const struct tensor *b_qkv[3] = { opt(&lw->bq), opt(&lw->bk), opt(&lw->bv) };
    if (m->f.attn_out_gate) {   // the output gate reads norm(x) too, which norm_matmul_n may not keep
        OP(fw, P_QKV, be->ops->rmsnorm(be, &xn, &x, &lw->attn_norm, fw->norm_eps, fw->norm_offset);
                      be->ops->matmul_n(be, 3, qkv, &xn, w_qkv, b_qkv));
    } else {
        OP(fw, P_QKV, be->ops->norm_matmul_n(be, 3, qkv, &xn, &x, &lw->attn_norm, fw->norm_eps, fw->norm_offset,
                                             w_qkv, b_qkv));
    }

    bool sliding = hp->sliding_window > 0 && hp->layer_sliding[l];
    int which = sliding ? ROPE_LOCAL : ROPE_GLOBAL;
    struct rope_params rp = {
        .head_dim = hp->head_dim, .rot_dim = fw->rot_dim, .mscale = fw->mscale[which], .interleaved = false,
    };
    OP(fw, P_QK_ROPE_KV, be->ops->qk_rope_kv(be, &q, &k, &v, m->f.qk_norm ? &lw->q_norm : NULL,
                                             m->f.qk_norm ? &lw->k_norm : NULL, fw->norm_eps, fw->norm_offset,
                                             hp->n_heads, hp->n_kv_heads, &fw->inv_freq[which], &rp, kv, meta));

    struct attn_params ap = {
        .n_heads = hp->n_heads, .n_kv_heads = hp->n_kv_heads, .head_dim = hp->head_dim,
        .scale = hp->attn_scale, .window = sliding ? hp->sliding_window : 0, .softcap = hp->attn_softcap,
    };
    OP(fw, P_ATTN, be->ops->attention(be, &attn, &q, kv, &ap, meta));
    if (m->f.attn_out_gate) OP(fw, P_ATTN, hybrid_attn_output_gate(be, m, l, fw->hs, &attn, &xn));
    residual_out(fw, P_O_PROJ, &x, &attn, &lw->wo, m->f.sandwich_norm ? &lw->attn_post_norm : NULL);
}

/* x += down(act(norm(x) @ w_gate^T) * (norm(x) @ w_up^T)): the dense channel-mixing block. */
static void ffn_block(struct forward *fw, int l, const struct batch_meta *meta)
{
    const struct model *m = fw->m;
    const struct layer_weights *lw = &m->layers[l];
    struct backend *be = fw->be;
    int n = meta->n_tok;
    int64_t f = m->hp.d_ff;   // the scratch rows are d_ff_expert wide when that is larger
    struct tensor x = rows(&fw->x, n), xn = rows(&fw->xn, n);
    struct tensor gate = tensor_2d(DTYPE_F32, f, n, fw->gate.buf, fw->gate.offset);
    struct tensor up = tensor_2d(DTYPE_F32, f, n, fw->up.buf, fw->up.offset);

    OP(fw, P_FFN_UP, be->ops->matmul_glu(be, &gate, &up, &xn, &x, &lw->ffn_norm, fw->norm_eps, fw->norm_offset,
                                         &lw->w_gate, &lw->w_up, m->f.act));
    residual_out(fw, P_FFN_DOWN, &x, &gate, &lw->w_down, m->f.sandwich_norm ? &lw->ffn_post_norm : NULL);
}

/* x += sum over the top-k experts of weight * expert_ffn(norm(x)): the MoE channel-mixing block. */
static void moe_block(struct forward *fw, int l, const struct batch_meta *meta)
{
    const struct model *m = fw->m;
    const struct hparams *hp = &m->hp;
    const struct layer_weights *lw = &m->layers[l];
    struct backend *be = fw->be;
    int n = meta->n_tok;
    struct tensor x = rows(&fw->x, n), xn = rows(&fw->xn, n), logits = rows(&fw->router, n),
                  ids = rows(&fw->moe_ids, n), w = rows(&fw->moe_w, n);

    OP(fw, P_ROUTER, be->ops->norm_moe_route(be, &ids, &w, &logits, &xn, &x, &lw->ffn_norm, fw->norm_eps,
                                             fw->norm_offset, &lw->router, hp->n_experts_used, hp->norm_topk));
    if (fw->coll) {   // the rank's experts (or expert slices) and shared-expert slice: a partial sum
        struct tensor proj = rows(&fw->proj, n);
        OP(fw, P_MOE, be->ops->moe_ffn(be, &proj, &xn, &ids, &w, lw->exp_gate, lw->exp_up, lw->exp_down,
                                       hp->n_experts, m->f.act));
        if (hp->d_ff_shared > 0) OP(fw, P_MOE, hybrid_shared_expert_add(be, m, l, fw->hs, &proj, &xn));
        residual_add(fw, &x, &proj, m->f.sandwich_norm ? &lw->ffn_post_norm : NULL);
        return;
    }
    if (hp->d_ff_shared > 0) OP(fw, P_MOE, hybrid_shared_expert_add(be, m, l, fw->hs, &x, &xn));
    if (!m->f.sandwich_norm) {
        OP(fw, P_MOE, be->ops->moe_ffn_add(be, &x, &xn, &ids, &w, lw->exp_gate, lw->exp_up, lw->exp_down,
                                           hp->n_experts, m->f.act));
        return;
    }
    struct tensor proj = rows(&fw->proj, n);
    OP(fw, P_MOE, be->ops->moe_ffn(be, &proj, &xn, &ids, &w, lw->exp_gate, lw->exp_up, lw->exp_down,
                                   hp->n_experts, m->f.act));
    add_post_normed(fw, &x, &proj, &lw->ffn_post_norm);
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

/* A rank's copy of meta whose token ids are rows of the rank's embedding: its own vocabulary slice,
 * every other token the extra zero row (the all-reduce after the embedding adds the owner's row). */
static struct batch_meta rank_meta(struct forward *fw, const struct batch_meta *meta)
{
    const struct model_shard *sh = &fw->m->shard;
    struct batch_meta local = *meta;
    for (int i = 0; i < meta->n_tok; i++) {
        int32_t t = meta->tok_id[i] - sh->vocab0;
        fw->tok_local[i] = t >= 0 && t < sh->n_vocab_local ? t : sh->n_vocab_local;
    }
    local.tok_id = fw->tok_local;
    return local;
}

/* hidden != NULL: every token's final normed hidden state is wanted as well (embeddings), so the
 * final norm runs over all rows even without logits rows, and the step is never recorded or replayed
 * as a graph (a recorded step of the same shape without logits rows would not have run it); nor is
 * a step that takes state snapshots (meta->tok_snap: a recording without them would not). Such a
 * step skips step_graph_begin, so cuda may count its cuBLAS calls against the decode shape it saw
 * last, which then stays unrecorded: harmless, as a server embeds or generates, not both. */
static void step(struct forward *fw, struct kv_layer *kv, const struct batch_meta *meta, struct tensor *logits,
                 struct tensor *hidden)
{
    const struct model *m = fw->m;
    const struct hparams *hp = &m->hp;
    struct backend *be = fw->be;
    CHECK(meta->n_tok > 0 && meta->n_tok <= fw->max_tok, "step of %d tokens, max %d", meta->n_tok, fw->max_tok);
    CHECK(meta->n_out >= 0 && meta->n_out <= fw->max_out, "step of %d logits rows, max %d", meta->n_out, fw->max_out);
    struct batch_meta local;
    if (m->shard.n_ranks) {
        CHECK(fw->coll, "forward: rank %d's step without forward_bind_collective", m->shard.rank);
        local = rank_meta(fw, meta);
        meta = &local;
    }

    if (fw->dynamic[ROPE_GLOBAL] || fw->dynamic[ROPE_LOCAL]) update_dynamic_rope(fw, meta);
    be->ops->batch_begin(be, meta);

    // A backend may replay a recording of an equivalent earlier step instead of the ops below
    // (not while profiling: the per-op syncs cannot be recorded).
    int graph = fw->prof || hidden || meta->tok_snap ? STEP_GRAPH_NONE : be->ops->step_graph_begin(be, meta, fw, kv);
    *logits = rows(&fw->logits, meta->n_out);
    if (hidden) *hidden = rows(&fw->xn, meta->n_tok);
    if (graph == STEP_GRAPH_REPLAYED) return;

    struct tensor x = rows(&fw->x, meta->n_tok), xn = rows(&fw->xn, meta->n_tok);
    OP(fw, P_EMBED, be->ops->embed(be, &x, &m->tok_embed, meta, m->f.embed_scale ? sqrtf((float)hp->d_model) : 1.0f));
    if (fw->coll) OP(fw, P_ALL_REDUCE, collective_all_reduce_sum(fw->coll, be, &x));
    for (int l = 0; l < hp->n_layers; l++) {
        if (hp->layer_linear[l]) {   // Gated DeltaNet (hybrids): a recurrent state per sequence, no KV cache
            CHECK(fw->states, "forward: a hybrid model's step without forward_bind_states");
            struct tensor proj = rows(&fw->proj, meta->n_tok);
            OP(fw, P_GDN, hybrid_gdn_block(be, m, l, fw->hs, &x, &xn, &fw->states[l], fw->snaps ? &fw->snaps[l] : NULL,
                                           meta, fw->coll ? &proj : NULL));
            if (fw->coll) residual_add(fw, &x, &proj, NULL);
        } else {
            attention_block(fw, l, &kv[l], meta);
        }
        if (fw->heartbeat_ns) atomic_store(fw->heartbeat_ns, clock_now_ns());
        if (m->f.moe && hp->layer_moe[l]) moe_block(fw, l, meta);
        else ffn_block(fw, l, meta);
        if (fw->heartbeat_ns) atomic_store(fw->heartbeat_ns, clock_now_ns());
    }
    if (meta->n_out > 0 || hidden)
        OP(fw, P_LOGITS, be->ops->rmsnorm(be, &xn, &x, &m->out_norm, fw->norm_eps, fw->norm_offset));
    if (meta->n_out > 0) {
        CHECK(model_has_lm_head(m), "forward: logits wanted from a model without an lm_head");
        struct tensor part = fw->coll ? rows(&fw->logits_local, meta->n_out) : *logits;   // the rank's columns
        OP(fw, P_LOGITS, be->ops->matmul_rows(be, &part, &xn, &m->lm_head, meta);
                         if (hp->final_softcap > 0) be->ops->softcap(be, &part, hp->final_softcap));
        if (fw->coll) OP(fw, P_ALL_REDUCE, collective_all_gather_cols(fw->coll, be, logits, &part));
    }
    if (graph == STEP_GRAPH_RECORDING) be->ops->step_graph_end(be);
}

void forward_step(struct forward *fw, struct kv_layer *kv, const struct batch_meta *meta, struct tensor *logits)
{
    step(fw, kv, meta, logits, NULL);
}

void forward_step_hidden(struct forward *fw, struct kv_layer *kv, const struct batch_meta *meta,
                         struct tensor *logits, struct tensor *hidden)
{
    step(fw, kv, meta, logits, hidden);
}
