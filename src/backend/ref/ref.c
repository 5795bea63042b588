/* ref: the reference backend: plain loops over host memory, the oracle for every other backend.
 *
 * Every op follows its contract in backend/backend.h literally, element by element, with f64
 * accumulation for dot products and reductions and f32 storage of every result (as HF keeps
 * activations). Nothing here is tuned; when a fast backend and ref disagree, ref is right unless
 * its contract reading is wrong. The whole model runs on it (slowly).
 *
 * Threading: single-threaded; one engine thread calls it. A grow-only scratch (attention scores)
 * lives in struct ref, so steady-state steps allocate nothing.
 *
 *     struct backend *be;  backend_ref_new(&(struct backend_cfg){0}, &be);
 *     be->ops->matmul(be, &out, &x, &w, NULL);
 *     backend_free(be);
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/ref/host.h"
#include "base/log.h"
#include "base/mem.h"
#include "tensor/qweight.h"

struct ref {
    struct backend be;
    double        *scratch;      // grow-only: attention scores, moe intermediates
    size_t         scratch_n;    // doubles allocated
    float         *wrow;         // grow-only: one dequantized row of an MLX-quantized weight
    size_t         wrow_n;       // floats allocated
};

/* Row `row` of the MLX-quantized weight w, dequantized to f32 (exact; the oracle of the other
 * backends' quantized kernels). Valid until the next call. */
static const float *ref_qrow(struct backend *be, const struct tensor *w, int64_t row)
{
    struct ref *r = be->impl;
    if ((size_t)w->ne[0] > r->wrow_n) {
        free(r->wrow);
        r->wrow_n = (size_t)w->ne[0];
        r->wrow = xmalloc(r->wrow_n * sizeof *r->wrow);
    }
    qweight_dequant_row(w, row, r->wrow);
    return r->wrow;
}

static double *ref_scratch(struct backend *be, size_t n)
{
    struct ref *r = be->impl;
    if (n > r->scratch_n) {
        free(r->scratch);
        r->scratch = xmalloc(n * sizeof(double));
        r->scratch_n = n;
    }
    return r->scratch;
}

static void ref_destroy(struct backend *be)
{
    struct ref *r = be->impl;
    free(r->scratch);
    free(r->wrow);
    free(r);
}

static void ref_batch_begin(struct backend *be, const struct batch_meta *meta) { (void)be; (void)meta; }
static enum status ref_sync(struct backend *be) { (void)be; return STATUS_OK; }

static void check_f32(const struct tensor *t, const char *what)
{
    CHECK(t->dtype == DTYPE_F32, "%s: expected f32, got %s", what, dtype_name(t->dtype));
}

/* ==== Elementwise and row ops ==== */

static void ref_embed(struct backend *be, struct tensor *out, const struct tensor *table,
                      const struct batch_meta *meta, float scale)
{
    check_f32(out, "embed out");
    int64_t d = table->ne[0];
    CHECK(out->ne[0] == d && tensor_rows(out) >= meta->n_tok, "embed: out shape");
    for (int i = 0; i < meta->n_tok; i++) {
        int32_t id = meta->tok_id[i];
        CHECK(id >= 0 && id < tensor_rows(table), "embed: token id %d out of [0, %lld)", id,
              (long long)tensor_rows(table));
        float *dst = host_row(out, i);
        if (table->dtype == DTYPE_QMLX) {
            const float *src = ref_qrow(be, table, id);
            for (int64_t k = 0; k < d; k++) dst[k] = src[k] * scale;
            continue;
        }
        const void *src = host_row(table, id);
        for (int64_t k = 0; k < d; k++) dst[k] = host_elem_f32(table->dtype, src, k) * scale;
    }
}

static void ref_rmsnorm(struct backend *be, struct tensor *out, const struct tensor *x,
                        const struct tensor *w, float eps, float w_offset)
{
    (void)be;
    check_f32(out, "rmsnorm out");
    check_f32(x, "rmsnorm x");
    int64_t d = x->ne[0], rows = tensor_rows(x);
    CHECK(w->ne[0] == d && out->ne[0] == d && tensor_rows(out) >= rows, "rmsnorm: shapes");
    const void *wr = host_row(w, 0);
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = host_row(x, r);
        float *o = host_row(out, r);
        double ss = 0;
        for (int64_t k = 0; k < d; k++) ss += (double)xr[k] * xr[k];
        double inv = 1.0 / sqrt(ss / (double)d + (double)eps);
        for (int64_t k = 0; k < d; k++)
            o[k] = (float)((double)xr[k] * inv * ((double)host_elem_f32(w->dtype, wr, k) + w_offset));
    }
}

static double ref_dot(struct backend *be, const float *x, const struct tensor *w, int64_t row, int64_t k)
{
    double acc = 0;
    if (w->dtype == DTYPE_QMLX) {
        const float *wq = ref_qrow(be, w, row);
        for (int64_t i = 0; i < k; i++) acc += (double)x[i] * wq[i];
        return acc;
    }
    const void *wr = host_row(w, row);
    for (int64_t i = 0; i < k; i++) acc += (double)x[i] * host_elem_f32(w->dtype, wr, i);
    return acc;
}

static void ref_matmul(struct backend *be, struct tensor *out, const struct tensor *x,
                       const struct tensor *w, const struct tensor *bias)
{
    (void)be;
    check_f32(out, "matmul out");
    check_f32(x, "matmul x");
    int64_t k = x->ne[0], n = tensor_rows(x), m = tensor_rows(w);
    CHECK(w->ne[0] == k, "matmul: x has %lld cols, w has %lld", (long long)k, (long long)w->ne[0]);
    CHECK(out->ne[0] == m && tensor_rows(out) >= n, "matmul: out shape");
    const void *br = bias ? host_row(bias, 0) : NULL;
    for (int64_t i = 0; i < n; i++) {
        const float *xr = host_row(x, i);
        float *o = host_row(out, i);
        for (int64_t j = 0; j < m; j++) {
            double acc = ref_dot(be, xr, w, j, k);
            if (br) acc += host_elem_f32(bias->dtype, br, j);
            o[j] = (float)acc;
        }
    }
}

static void ref_matmul_rows(struct backend *be, struct tensor *out, const struct tensor *x,
                            const struct tensor *w, const struct batch_meta *meta)
{
    (void)be;
    check_f32(out, "matmul_rows out");
    check_f32(x, "matmul_rows x");
    int64_t k = x->ne[0], m = tensor_rows(w);
    CHECK(w->ne[0] == k && out->ne[0] == m && tensor_rows(out) >= meta->n_out, "matmul_rows: shapes");
    for (int i = 0; i < meta->n_out; i++) {
        int32_t src = meta->out_tok[i];
        CHECK(src >= 0 && src < tensor_rows(x), "matmul_rows: out_tok %d out of range", src);
        const float *xr = host_row(x, src);
        float *o = host_row(out, i);
        for (int64_t j = 0; j < m; j++) o[j] = (float)ref_dot(be, xr, w, j, k);
    }
}

static void ref_rope(struct backend *be, struct tensor *x, int n_heads, const struct tensor *inv_freq,
                     const struct rope_params *rp, const struct batch_meta *meta)
{
    (void)be;
    check_f32(x, "rope x");
    check_f32(inv_freq, "rope inv_freq");
    int hd = rp->head_dim, half = rp->rot_dim / 2;
    CHECK(rp->rot_dim % 2 == 0 && rp->rot_dim <= hd, "rope: rot_dim %d, head_dim %d", rp->rot_dim, hd);
    CHECK(x->ne[0] == (int64_t)n_heads * hd, "rope: x row %lld != %d heads * %d",
          (long long)x->ne[0], n_heads, hd);
    CHECK(inv_freq->ne[0] >= half, "rope: inv_freq too short");
    const float *freq = host_row(inv_freq, 0);
    for (int t = 0; t < meta->n_tok; t++) {
        float *row = host_row(x, t);
        for (int i = 0; i < half; i++) {
            float angle = (float)meta->tok_pos[t] * freq[i];   // f32 product, as HF computes it
            double c = (double)((float)cos((double)angle) * rp->mscale);
            double s = (double)((float)sin((double)angle) * rp->mscale);
            for (int h = 0; h < n_heads; h++) {
                float *v = row + (size_t)h * hd;
                int i0 = rp->interleaved ? 2 * i : i;
                int i1 = rp->interleaved ? 2 * i + 1 : i + half;
                double x0 = v[i0], x1 = v[i1];
                v[i0] = (float)(x0 * c - x1 * s);
                v[i1] = (float)(x1 * c + x0 * s);
            }
        }
    }
}

static void ref_kv_write(struct backend *be, struct kv_layer *kv, const struct tensor *k,
                         const struct tensor *v, const struct batch_meta *meta)
{
    (void)be;
    check_f32(k, "kv_write k");
    check_f32(v, "kv_write v");
    int64_t row = kv->k.ne[0];
    CHECK(k->ne[0] == row && v->ne[0] == row && kv->v.ne[0] == row, "kv_write: row sizes");
    for (int t = 0; t < meta->n_tok; t++) {
        int64_t slot = meta->tok_slot[t];
        CHECK(slot >= 0 && slot < tensor_rows(&kv->k), "kv_write: slot %lld out of range", (long long)slot);
        const float *kr = host_row(k, t), *vr = host_row(v, t);
        void *kd = host_row(&kv->k, slot), *vd = host_row(&kv->v, slot);
        for (int64_t i = 0; i < row; i++) {
            host_store_f32(kv->k.dtype, kd, i, kr[i]);
            host_store_f32(kv->v.dtype, vd, i, vr[i]);
        }
    }
}

/* Cache slot of position j of sequence s (see struct batch_meta). */
static int64_t ref_slot(const struct batch_meta *meta, int s, int j)
{
    int b = j / meta->block_size;
    CHECK(b < meta->seq_block0[s + 1] - meta->seq_block0[s], "attention: position %d past seq %d's blocks", j, s);
    return (int64_t)meta->block_ids[meta->seq_block0[s] + b] * meta->block_size + j % meta->block_size;
}

static void ref_attention(struct backend *be, struct tensor *out, const struct tensor *q,
                          const struct kv_layer *kv, const struct attn_params *ap,
                          const struct batch_meta *meta)
{
    check_f32(out, "attention out");
    check_f32(q, "attention q");
    int hd = ap->head_dim, n_rep = ap->n_heads / ap->n_kv_heads;
    CHECK(ap->n_heads % ap->n_kv_heads == 0, "attention: %d heads, %d kv heads", ap->n_heads, ap->n_kv_heads);
    CHECK(q->ne[0] == (int64_t)ap->n_heads * hd && out->ne[0] == q->ne[0], "attention: q/out rows");
    CHECK(kv->k.ne[0] == (int64_t)ap->n_kv_heads * hd, "attention: kv rows");
    for (int t = 0; t < meta->n_tok; t++) {
        int s = meta->tok_seq[t], p = meta->tok_pos[t];
        int j0 = ap->window > 0 && p - ap->window + 1 > 0 ? p - ap->window + 1 : 0;
        int n_keys = p - j0 + 1;
        double *score = ref_scratch(be, (size_t)n_keys + (size_t)hd);
        double *acc = score + n_keys;
        const float *qr = host_row(q, t);
        float *o = host_row(out, t);
        for (int h = 0; h < ap->n_heads; h++) {
            int g = h / n_rep;
            const float *qh = qr + (size_t)h * hd;
            double mx = -INFINITY;
            for (int j = j0; j <= p; j++) {
                const void *kr = host_row(&kv->k, ref_slot(meta, s, j));
                double dot = 0;
                for (int i = 0; i < hd; i++) dot += (double)qh[i] * host_elem_f32(kv->k.dtype, kr, (int64_t)g * hd + i);
                dot *= ap->scale;
                if (ap->softcap > 0) dot = ap->softcap * tanh(dot / ap->softcap);
                score[j - j0] = dot;
                if (dot > mx) mx = dot;
            }
            double sum = 0;
            for (int j = 0; j < n_keys; j++) sum += score[j] = exp(score[j] - mx);
            for (int i = 0; i < hd; i++) acc[i] = 0;
            for (int j = j0; j <= p; j++) {
                const void *vr = host_row(&kv->v, ref_slot(meta, s, j));
                double pj = score[j - j0] / sum;
                for (int i = 0; i < hd; i++) acc[i] += pj * host_elem_f32(kv->v.dtype, vr, (int64_t)g * hd + i);
            }
            for (int i = 0; i < hd; i++) o[(size_t)h * hd + i] = (float)acc[i];
        }
    }
}

static double ref_act(double g, enum act act)
{
    switch (act) {
    case ACT_SILU: return g / (1.0 + exp(-g));
    case ACT_GELU_TANH: return 0.5 * g * (1.0 + tanh(0.7978845608028654 * (g + 0.044715 * g * g * g)));
    }
    CHECK(0, "bad act %d", (int)act);
}

static void ref_glu(struct backend *be, struct tensor *out, const struct tensor *gate,
                    const struct tensor *up, enum act act)
{
    (void)be;
    check_f32(out, "glu out");
    check_f32(gate, "glu gate");
    check_f32(up, "glu up");
    int64_t f = gate->ne[0], rows = tensor_rows(gate);
    CHECK(up->ne[0] == f && out->ne[0] == f && tensor_rows(up) == rows && tensor_rows(out) >= rows, "glu: shapes");
    for (int64_t r = 0; r < rows; r++) {
        const float *g = host_row(gate, r), *u = host_row(up, r);
        float *o = host_row(out, r);
        for (int64_t i = 0; i < f; i++) o[i] = (float)(ref_act(g[i], act) * u[i]);
    }
}

static void ref_add(struct backend *be, struct tensor *out, const struct tensor *a, const struct tensor *b)
{
    (void)be;
    check_f32(out, "add out");
    check_f32(a, "add a");
    check_f32(b, "add b");
    int64_t d = a->ne[0], rows = tensor_rows(a);
    CHECK(b->ne[0] == d && out->ne[0] == d && tensor_rows(b) == rows && tensor_rows(out) >= rows, "add: shapes");
    for (int64_t r = 0; r < rows; r++) {
        const float *ar = host_row(a, r), *br = host_row(b, r);
        float *o = host_row(out, r);
        for (int64_t i = 0; i < d; i++) o[i] = ar[i] + br[i];
    }
}

static void ref_softcap(struct backend *be, struct tensor *x, float cap)
{
    (void)be;
    check_f32(x, "softcap x");
    for (int64_t r = 0; r < tensor_rows(x); r++) {
        float *xr = host_row(x, r);
        for (int64_t i = 0; i < x->ne[0]; i++) xr[i] = (float)(cap * tanh((double)xr[i] / cap));
    }
}

/* ==== MoE ==== */

/* Top-k selection is done on the logits (softmax is monotonic), so rounding of the
 * probabilities cannot create ties; equal logits go to the lower expert index. */
static void ref_moe_route(struct backend *be, struct tensor *ids, struct tensor *weights,
                          const struct tensor *logits, int k, bool norm_topk)
{
    (void)be;
    check_f32(logits, "moe_route logits");
    check_f32(weights, "moe_route weights");
    CHECK(ids->dtype == DTYPE_I32, "moe_route: ids must be i32");
    int64_t n_exp = logits->ne[0], n = tensor_rows(logits);
    CHECK(k >= 1 && k <= n_exp && ids->ne[0] == k && weights->ne[0] == k, "moe_route: k = %d", k);
    for (int64_t r = 0; r < n; r++) {
        const float *l = host_row(logits, r);
        int32_t *id = host_row(ids, r);
        float *w = host_row(weights, r);
        double mx = -INFINITY, sum = 0;
        for (int64_t e = 0; e < n_exp; e++) if (l[e] > mx) mx = l[e];
        for (int64_t e = 0; e < n_exp; e++) sum += exp((double)l[e] - mx);
        double picked = 0;
        for (int j = 0; j < k; j++) {
            int64_t best = -1;
            for (int64_t e = 0; e < n_exp; e++) {
                bool taken = false;
                for (int i = 0; i < j; i++) taken |= id[i] == e;
                if (!taken && (best < 0 || l[e] > l[best])) best = e;
            }
            id[j] = (int32_t)best;
            w[j] = (float)(exp((double)l[best] - mx) / sum);
            picked += w[j];
        }
        if (norm_topk)
            for (int j = 0; j < k; j++) w[j] = (float)(w[j] / picked);
    }
}

/* Each token's expert outputs are summed in ascending expert order (as HF's loop over experts),
 * each intermediate rounded to f32 as the separate matmul/glu ops would. */
static void ref_moe_ffn(struct backend *be, struct tensor *out, const struct tensor *x,
                        const struct tensor *ids, const struct tensor *weights,
                        const struct tensor *gate, const struct tensor *up, const struct tensor *down,
                        int n_experts, enum act act)
{
    check_f32(out, "moe_ffn out");
    check_f32(x, "moe_ffn x");
    int64_t d = x->ne[0], n = tensor_rows(x), k = ids->ne[0], f = tensor_rows(&gate[0]);
    CHECK(out->ne[0] == d && tensor_rows(out) >= n, "moe_ffn: out shape");
    double *h = ref_scratch(be, (size_t)f + (size_t)d);
    double *acc = h + f;
    for (int64_t r = 0; r < n; r++) {
        const float *xr = host_row(x, r);
        const int32_t *id = host_row(ids, r);
        const float *wt = host_row(weights, r);
        for (int64_t j = 0; j < k; j++) CHECK(id[j] >= 0 && id[j] < n_experts, "moe_ffn: expert id %d", id[j]);
        for (int64_t i = 0; i < d; i++) acc[i] = 0;
        for (int e = 0; e < n_experts; e++) {
            for (int64_t j = 0; j < k; j++) {
                if (id[j] != e) continue;
                CHECK(gate[e].ne[0] == d && down[e].ne[0] == f && tensor_rows(&down[e]) == d, "moe_ffn: expert %d shapes", e);
                for (int64_t i = 0; i < f; i++) {
                    float g = (float)ref_dot(be, xr, &gate[e], i, d);
                    float u = (float)ref_dot(be, xr, &up[e], i, d);
                    h[i] = (float)(ref_act(g, act) * u);
                }
                for (int64_t i = 0; i < d; i++) {
                    double y = 0;
                    if (down[e].dtype == DTYPE_QMLX) {
                        const float *dq = ref_qrow(be, &down[e], i);
                        for (int64_t c = 0; c < f; c++) y += h[c] * dq[c];
                    } else {
                        const void *dr = host_row(&down[e], i);
                        for (int64_t c = 0; c < f; c++) y += h[c] * host_elem_f32(down[e].dtype, dr, c);
                    }
                    acc[i] += (double)wt[j] * (float)y;
                }
            }
        }
        float *o = host_row(out, r);
        for (int64_t i = 0; i < d; i++) o[i] = (float)acc[i];
    }
}

static void ref_argmax(struct backend *be, int32_t *out_ids, const struct tensor *logits)
{
    (void)be;
    check_f32(logits, "argmax logits");
    for (int64_t r = 0; r < tensor_rows(logits); r++) {
        const float *l = host_row(logits, r);
        int64_t best = 0;
        for (int64_t i = 1; i < logits->ne[0]; i++) if (l[i] > l[best] || l[best] != l[best]) best = i;
        out_ids[r] = (int32_t)best;
    }
}

static const struct backend_ops ref_ops = {
    .name = "ref",
    .destroy = ref_destroy,
    .buffer_new = host_buffer_new,
    .buffer_free = host_buffer_free,
    .upload = host_upload,
    .download = host_download,
    .weight_prepare = NULL,
    .batch_begin = ref_batch_begin,
    .sync = ref_sync,
    .embed = ref_embed,
    .rmsnorm = ref_rmsnorm,
    .matmul = ref_matmul,
    .matmul_rows = ref_matmul_rows,
    .rope = ref_rope,
    .kv_write = ref_kv_write,
    .attention = ref_attention,
    .glu = ref_glu,
    .add = ref_add,
    .softcap = ref_softcap,
    .moe_route = ref_moe_route,
    .moe_ffn = ref_moe_ffn,
    .argmax = ref_argmax,
    .quant_weights = true,
};

enum status backend_ref_new(const struct backend_cfg *cfg, struct backend **out)
{
    (void)cfg;
    struct ref *r = xcalloc(1, sizeof *r);
    r->be.ops = &ref_ops;
    r->be.impl = r;
    *out = &r->be;
    return STATUS_OK;
}
