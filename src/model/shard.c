/* shard: rank r's slices of a model. See shard.h.
 *
 * Design note: every weight of a rank is copied out of the full model by one helper (take) that
 * picks ranges of rows (output features: column-parallel layers) and one range of columns (input
 * features: row-parallel layers), padding with zero rows where asked. A first pass only counts
 * bytes, the second copies into one buffer the rank's model owns (model->repacked), so a rank's
 * weights are one allocation that model_prepare can hand to its device.
 */
#include "model/shard.h"

#include <stdlib.h>
#include <string.h>

#include "backend/host.h"
#include "base/log.h"
#include "base/mem.h"
#include "model/weights.h"

/* ==== Plan ==== */

/* Heads of some kind split over n ranks: a multiple of n, or (replicate true) a divisor of n. */
static bool heads_split(int heads, int n, bool replicate, const char *what, const char *key)
{
    if (heads % n == 0 || (replicate && heads > 0 && n % heads == 0)) return true;
    if (replicate)
        LOG_ERR("shard: %s (%s = %d) cannot be split over %d ranks: neither a multiple nor a divisor of %d", what,
                key, heads, n, n);
    else LOG_ERR("shard: %s (%s = %d) do not divide by %d ranks", what, key, heads, n);
    return false;
}

enum status shard_plan_make(const struct hparams *hp, const struct arch_features *f, int n_ranks,
                            bool expert_parallel, struct shard_plan *out)
{
    memset(out, 0, sizeof *out);
    if (n_ranks < 1) {
        LOG_ERR("shard: %d ranks", n_ranks);
        return STATUS_EINVAL;
    }
    int n = n_ranks;
    bool any_dense = false, any_moe = false, any_attn = false;
    for (int l = 0; l < hp->n_layers; l++) {
        bool moe = f->moe && hp->layer_moe[l];
        any_moe |= moe;
        any_dense |= !moe;
        any_attn |= !hp->layer_linear[l];
    }
    if (expert_parallel && !any_moe) {
        LOG_ERR("shard: expert parallelism asked for %s, which has no MoE layers", hp->arch);
        return STATUS_EINVAL;
    }
    if (hp->d_ff_shared > 0 && f->sandwich_norm) {
        LOG_ERR("shard: %s has a shared expert and sandwich norms, a layout no family has", hp->arch);
        return STATUS_EUNSUPPORTED;
    }
    bool ok = true;
    if (any_attn) {
        ok = ok && heads_split(hp->n_heads, n, false, "attention heads", "num_attention_heads");
        ok = ok && heads_split(hp->n_kv_heads, n, true, "KV heads", "num_key_value_heads");
    }
    if (any_dense && hp->d_ff % n) {
        LOG_ERR("shard: the FFN size (intermediate_size = %d) does not divide by %d ranks", hp->d_ff, n);
        ok = false;
    }
    if (any_moe && expert_parallel && hp->n_experts % n) {
        LOG_ERR("shard: the experts (num_experts = %d) do not divide by %d ranks", hp->n_experts, n);
        ok = false;
    }
    if (any_moe && !expert_parallel && hp->d_ff_expert % n) {
        LOG_ERR("shard: the expert FFN size (moe_intermediate_size = %d) does not divide by %d ranks (expert "
                "parallelism splits whole experts instead)", hp->d_ff_expert, n);
        ok = false;
    }
    if (any_moe && hp->d_ff_shared % n) {
        LOG_ERR("shard: the shared expert's size (shared_expert_intermediate_size = %d) does not divide by %d ranks",
                hp->d_ff_shared, n);
        ok = false;
    }
    if (hp->n_linear_layers > 0) {
        ok = ok && heads_split(hp->lin_n_v_heads, n, false, "DeltaNet value heads", "linear_num_value_heads");
        ok = ok && heads_split(hp->lin_n_k_heads, n, true, "DeltaNet key heads", "linear_num_key_heads");
    }
    if (!ok) return STATUS_EINVAL;
    *out = (struct shard_plan){
        .n_ranks = n,
        .expert_parallel = expert_parallel,
        .n_heads = hp->n_heads / n,
        .n_kv_heads = hp->n_kv_heads >= n ? hp->n_kv_heads / n : 1,
        .d_ff = hp->d_ff / n,
        .d_ff_expert = expert_parallel ? hp->d_ff_expert : hp->d_ff_expert / n,
        .d_ff_shared = hp->d_ff_shared / n,
        .n_experts_local = expert_parallel ? hp->n_experts / n : hp->n_experts,
        .lin_n_k_heads = hp->lin_n_k_heads >= n ? hp->lin_n_k_heads / n : 1,
        .lin_n_v_heads = hp->lin_n_v_heads / n,
        .n_vocab_local = (hp->n_vocab + n - 1) / n,
    };
    return STATUS_OK;
}

/* ==== Slicing ==== */

struct span { int64_t start, count; };   // rows [start, start + count)

struct slicer {
    struct buffer *buf;     // the rank's weights; data NULL: the counting pass
    size_t         off;     // bytes used so far
    enum status    st;
};

/* dst = rows `rows` (in order, then n_zero zero rows) x columns [col0, col0 + n_cols) of src
 * (n_cols < 0: all). src: 1-D (a vector: only columns apply), 2-D, or conv1d taps [C, 1, K]
 * (rows are the C channels). */
static void take(struct slicer *s, struct tensor *dst, const struct tensor *src, const struct span *rows,
                 int n_spans, int64_t n_zero, int64_t col0, int64_t n_cols)
{
    if (!src->buf) {   // absent in this family (biases, norms): absent in the rank's model too
        memset(dst, 0, sizeof *dst);
        return;
    }
    if (src->dtype == DTYPE_QMLX) {
        if (s->st == STATUS_OK)
            LOG_ERR("shard: %s is MLX-quantized; sharding quantized weights is not supported yet",
                    src->name ? src->name : "a weight");
        s->st = STATUS_EUNSUPPORTED;
        return;
    }
    struct span all = { 0, tensor_rows(src) };
    if (!rows) rows = &all, n_spans = 1;
    if (n_cols < 0) col0 = 0, n_cols = src->ne[0];
    int64_t n_rows = n_zero;
    for (int i = 0; i < n_spans; i++) n_rows += rows[i].count;
    size_t es = dtype_size(src->dtype), row_bytes = (size_t)n_cols * es;
    int64_t ne[4] = { n_cols, src->ne[1], src->ne[2], src->ne[3] };
    if (src->ne[2] > 1) ne[2] = n_rows;      // conv1d [C, 1, K]: channels are the outer dim
    else ne[1] = n_rows;
    CHECK(src->ne[3] == 1 && (src->ne[2] == 1 || src->ne[1] == 1), "shard: %s: unexpected shape", src->name);
    size_t at = (s->off + 63) & ~(size_t)63;
    s->off = at + (size_t)n_rows * row_bytes;
    *dst = tensor_make(src->dtype, 4, ne, s->buf, at);
    dst->name = src->name;
    if (!s->buf->data) return;   // the counting pass
    char *out = (char *)s->buf->data + at;
    for (int i = 0; i < n_spans; i++)
        for (int64_t r = 0; r < rows[i].count; r++, out += row_bytes) {
            CHECK(rows[i].start + r < tensor_rows(src) && col0 + n_cols <= src->ne[0], "shard: %s: slice out of range",
                  src->name);
            memcpy(out, (const char *)host_row(src, rows[i].start + r) + (size_t)col0 * es, row_bytes);
        }
    memset(out, 0, (size_t)n_zero * row_bytes);
}

static void whole(struct slicer *s, struct tensor *dst, const struct tensor *src)
{
    take(s, dst, src, NULL, 0, 0, 0, -1);
}

/* Rows [start, start + count) of src, all columns. */
static void rows_of(struct slicer *s, struct tensor *dst, const struct tensor *src, int64_t start, int64_t count)
{
    struct span sp = { start, count };
    take(s, dst, src, &sp, 1, 0, 0, -1);
}

/* Columns [start, start + count) of src (a matrix's input features, or a vector's elements). */
static void cols_of(struct slicer *s, struct tensor *dst, const struct tensor *src, int64_t start, int64_t count)
{
    take(s, dst, src, NULL, 0, 0, start, count);
}

/* Vocabulary rows [v0, v0 + vl) of an embedding-shaped table, zero rows past n_vocab, then n_extra
 * more zero rows. */
static void vocab_rows(struct slicer *s, struct tensor *dst, const struct tensor *src, int64_t v0, int64_t vl,
                       int64_t n_vocab, int64_t n_extra)
{
    int64_t real = v0 >= n_vocab ? 0 : (v0 + vl <= n_vocab ? vl : n_vocab - v0);
    struct span sp = { v0, real };
    take(s, dst, src, &sp, 1, vl - real + n_extra, 0, -1);
}

/* The rank's first head of a kind split over n ranks (n_local per rank; replicated heads: the
 * one head rank r's share maps to). */
static int64_t head0(int heads, int n_local, int n, int r)
{
    return heads >= n ? (int64_t)r * n_local : r / (n / heads);
}

static void shard_attention(struct slicer *s, struct layer_weights *d, const struct layer_weights *w,
                            const struct hparams *hp, const struct shard_plan *p, int r)
{
    int64_t hd = hp->head_dim, q0 = (int64_t)r * p->n_heads * hd, qn = (int64_t)p->n_heads * hd;
    int64_t k0 = head0(hp->n_kv_heads, p->n_kv_heads, p->n_ranks, r) * hd, kn = (int64_t)p->n_kv_heads * hd;
    rows_of(s, &d->wq, &w->wq, q0, qn);
    rows_of(s, &d->wq_gate, &w->wq_gate, q0, qn);
    rows_of(s, &d->wk, &w->wk, k0, kn);
    rows_of(s, &d->wv, &w->wv, k0, kn);
    cols_of(s, &d->bq, &w->bq, q0, qn);
    cols_of(s, &d->bk, &w->bk, k0, kn);
    cols_of(s, &d->bv, &w->bv, k0, kn);
    cols_of(s, &d->wo, &w->wo, q0, qn);
    whole(s, &d->q_norm, &w->q_norm);
    whole(s, &d->k_norm, &w->k_norm);
}

static void shard_deltanet(struct slicer *s, struct layer_weights *d, const struct layer_weights *w,
                           const struct hparams *hp, const struct shard_plan *p, int r)
{
    int64_t dk = hp->lin_k_dim, dv = hp->lin_v_dim, kd = (int64_t)hp->lin_n_k_heads * dk;
    int64_t k0 = head0(hp->lin_n_k_heads, p->lin_n_k_heads, p->n_ranks, r) * dk, kn = (int64_t)p->lin_n_k_heads * dk;
    int64_t vh0 = (int64_t)r * p->lin_n_v_heads, v0 = vh0 * dv, vn = (int64_t)p->lin_n_v_heads * dv;
    // in_proj_qkv rows and conv channels: [q | k | v], the rank's heads of each
    struct span qkv[3] = { { k0, kn }, { kd + k0, kn }, { 2 * kd + v0, vn } };
    take(s, &d->gdn_qkv, &w->gdn_qkv, qkv, 3, 0, 0, -1);
    take(s, &d->gdn_conv, &w->gdn_conv, qkv, 3, 0, 0, -1);
    rows_of(s, &d->gdn_z, &w->gdn_z, v0, vn);
    rows_of(s, &d->gdn_b, &w->gdn_b, vh0, p->lin_n_v_heads);
    rows_of(s, &d->gdn_a, &w->gdn_a, vh0, p->lin_n_v_heads);
    cols_of(s, &d->gdn_a_log, &w->gdn_a_log, vh0, p->lin_n_v_heads);
    cols_of(s, &d->gdn_dt_bias, &w->gdn_dt_bias, vh0, p->lin_n_v_heads);
    whole(s, &d->gdn_norm, &w->gdn_norm);
    cols_of(s, &d->gdn_out, &w->gdn_out, v0, vn);
}

/* gate/up rows and down columns [f0, f0 + fn): a SwiGLU FFN's share. */
static void shard_glu(struct slicer *s, struct tensor *dg, struct tensor *du, struct tensor *dd,
                      const struct tensor *g, const struct tensor *u, const struct tensor *dn, int64_t f0, int64_t fn)
{
    rows_of(s, dg, g, f0, fn);
    rows_of(s, du, u, f0, fn);
    cols_of(s, dd, dn, f0, fn);
}

static void shard_ffn(struct slicer *s, struct layer_weights *d, const struct layer_weights *w,
                      const struct hparams *hp, const struct shard_plan *p, int r, bool moe)
{
    if (!moe) {
        shard_glu(s, &d->w_gate, &d->w_up, &d->w_down, &w->w_gate, &w->w_up, &w->w_down, (int64_t)r * p->d_ff, p->d_ff);
        return;
    }
    whole(s, &d->router, &w->router);
    for (int e = 0; e < hp->n_experts; e++) {
        if (p->expert_parallel) {
            bool mine = e / p->n_experts_local == r;   // the others stay absent (zeroed by model_alloc)
            if (mine) {
                whole(s, &d->exp_gate[e], &w->exp_gate[e]);
                whole(s, &d->exp_up[e], &w->exp_up[e]);
                whole(s, &d->exp_down[e], &w->exp_down[e]);
            }
        } else {
            shard_glu(s, &d->exp_gate[e], &d->exp_up[e], &d->exp_down[e], &w->exp_gate[e], &w->exp_up[e],
                      &w->exp_down[e], (int64_t)r * p->d_ff_expert, p->d_ff_expert);
        }
    }
    shard_glu(s, &d->shared_gate, &d->shared_up, &d->shared_down, &w->shared_gate, &w->shared_up, &w->shared_down,
              (int64_t)r * p->d_ff_shared, p->d_ff_shared);
    whole(s, &d->shared_expert_gate, &w->shared_expert_gate);
}

/* Every weight of rank r's model (one pass of the slicer). */
static void shard_weights(struct slicer *s, struct model *d, const struct model *full, const struct shard_plan *p,
                          int r)
{
    const struct hparams *hp = &full->hp;
    int64_t vl = p->n_vocab_local, v0 = (int64_t)r * vl;
    vocab_rows(s, &d->tok_embed, &full->tok_embed, v0, vl, hp->n_vocab, 1);
    whole(s, &d->out_norm, &full->out_norm);
    if (hp->tie_embed) d->lm_head = tensor_rows_view(&d->tok_embed, 0, vl);   // without the extra zero row
    else if (model_has_lm_head(full)) vocab_rows(s, &d->lm_head, &full->lm_head, v0, vl, hp->n_vocab, 0);
    for (int l = 0; l < hp->n_layers; l++) {
        struct layer_weights *dl = &d->layers[l];
        const struct layer_weights *wl = &full->layers[l];
        whole(s, &dl->attn_norm, &wl->attn_norm);
        whole(s, &dl->attn_post_norm, &wl->attn_post_norm);
        whole(s, &dl->ffn_norm, &wl->ffn_norm);
        whole(s, &dl->ffn_post_norm, &wl->ffn_post_norm);
        if (hp->layer_linear[l]) shard_deltanet(s, dl, wl, hp, p, r);
        else shard_attention(s, dl, wl, hp, p, r);
        shard_ffn(s, dl, wl, hp, p, r, full->f.moe && hp->layer_moe[l]);
    }
}

static void count_one(struct tensor *t, void *ctx)
{
    uint64_t *acc = ctx;
    acc[0] += (uint64_t)tensor_nelem(t);
    acc[1] += (uint64_t)tensor_bytes(t);
}

enum status model_shard(const struct model *full, const struct shard_plan *p, int rank, struct model **out)
{
    *out = NULL;
    CHECK(rank >= 0 && rank < p->n_ranks, "model_shard: rank %d of %d", rank, p->n_ranks);
    if (full->dev_weights || (full->tok_embed.buf && full->tok_embed.buf->kind == BUF_DEVICE)) {
        LOG_ERR("%s: sharding needs the weights in host memory (shard before model_prepare on a device)", full->dir);
        return STATUS_EINVAL;
    }
    struct hparams hp = full->hp;
    hp.n_heads = p->n_heads;
    hp.n_kv_heads = p->n_kv_heads;
    hp.d_ff = p->d_ff;
    hp.d_ff_expert = p->d_ff_expert;
    hp.d_ff_shared = p->d_ff_shared;
    hp.lin_n_k_heads = p->lin_n_k_heads;
    hp.lin_n_v_heads = p->lin_n_v_heads;
    hp.n_mtp_layers = 0;
    struct model *m = model_alloc(&hp, &full->f, full->arch);
    m->dir = xstrdup(full->dir);
    m->saved_as_base = full->saved_as_base;
    m->shard = (struct model_shard){ .rank = rank, .n_ranks = p->n_ranks, .expert_parallel = p->expert_parallel,
                                     .vocab0 = rank * p->n_vocab_local, .n_vocab_local = p->n_vocab_local };
    struct buffer counting = { .kind = BUF_HOST };
    struct slicer s = { .buf = &counting };
    shard_weights(&s, m, full, p, rank);
    if (s.st != STATUS_OK) {
        model_free(m);
        return s.st;
    }
    m->repacked = (struct buffer){ .kind = BUF_HOST, .bytes = s.off };
    if (posix_memalign(&m->repacked.data, 64, s.off ? s.off : 64) != 0) {
        LOG_ERR("%s: cannot allocate %zu bytes for rank %d's weights", full->dir, s.off, rank);
        model_free(m);
        return STATUS_ENOMEM;
    }
    s = (struct slicer){ .buf = &m->repacked };
    shard_weights(&s, m, full, p, rank);
    uint64_t acc[2] = { 0, 0 };
    weights_for_each(m, count_one, acc);
    m->n_params = acc[0];
    m->weight_bytes = acc[1];
    *out = m;
    return STATUS_OK;
}
