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
#include "backend/host.h"
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


/* ==== Elementwise and row ops ==== */

static void ref_embed(struct backend *be, struct tensor *out, const struct tensor *table,
                      const struct batch_meta *meta, float scale)
{
    host_check_embed(out, table, meta);
    int64_t d = table->ne[0];
    for (int i = 0; i < meta->n_tok; i++) {
        int32_t id = meta->tok_id[i];
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
    host_check_rmsnorm(out, x, w);
    int64_t d = x->ne[0], rows = tensor_rows(x);
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
    host_check_matmul(out, x, w, bias);
    int64_t k = x->ne[0], n = tensor_rows(x), m = tensor_rows(w);
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
    host_check_matmul_rows(out, x, w, meta);
    int64_t k = x->ne[0], m = tensor_rows(w);
    for (int i = 0; i < meta->n_out; i++) {
        const float *xr = host_row(x, meta->out_tok[i]);
        float *o = host_row(out, i);
        for (int64_t j = 0; j < m; j++) o[j] = (float)ref_dot(be, xr, w, j, k);
    }
}

static void ref_rope(struct backend *be, struct tensor *x, int n_heads, const struct tensor *inv_freq,
                     const struct rope_params *rp, const struct batch_meta *meta)
{
    (void)be;
    host_check_rope(x, n_heads, inv_freq, rp);
    int hd = rp->head_dim, half = rp->rot_dim / 2;
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
    host_check_kv_write(kv, k, v, meta);
    int64_t row = kv->k.ne[0];
    for (int t = 0; t < meta->n_tok; t++) {
        const float *kr = host_row(k, t), *vr = host_row(v, t);
        void *kd = host_row(&kv->k, meta->tok_slot[t]), *vd = host_row(&kv->v, meta->tok_slot[t]);
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
    host_check_attention(out, q, kv, ap);
    int hd = ap->head_dim, n_rep = ap->n_heads / ap->n_kv_heads;
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
    host_check_elementwise("glu", out, gate, up);
    int64_t f = gate->ne[0], rows = tensor_rows(gate);
    for (int64_t r = 0; r < rows; r++) {
        const float *g = host_row(gate, r), *u = host_row(up, r);
        float *o = host_row(out, r);
        for (int64_t i = 0; i < f; i++) o[i] = (float)(ref_act(g[i], act) * u[i]);
    }
}

static void ref_add(struct backend *be, struct tensor *out, const struct tensor *a, const struct tensor *b)
{
    (void)be;
    host_check_elementwise("add", out, a, b);
    int64_t d = a->ne[0], rows = tensor_rows(a);
    for (int64_t r = 0; r < rows; r++) {
        const float *ar = host_row(a, r), *br = host_row(b, r);
        float *o = host_row(out, r);
        for (int64_t i = 0; i < d; i++) o[i] = ar[i] + br[i];
    }
}

static void ref_softcap(struct backend *be, struct tensor *x, float cap)
{
    (void)be;
    host_check_f32(x, "softcap x");
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
    host_check_moe_route(ids, weights, logits, k);
    int64_t n_exp = logits->ne[0], n = tensor_rows(logits);
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
    host_check_moe_ffn(out, x, ids, weights, gate, up, down, n_experts);
    int64_t d = x->ne[0], n = tensor_rows(x), k = ids->ne[0], f = host_moe_ffn_size(gate, n_experts);
    double *h = ref_scratch(be, (size_t)f + (size_t)d);
    double *acc = h + f;
    for (int64_t r = 0; r < n; r++) {
        const float *xr = host_row(x, r);
        const int32_t *id = host_row(ids, r);
        const float *wt = host_row(weights, r);
        for (int64_t i = 0; i < d; i++) acc[i] = 0;
        for (int e = 0; e < n_experts; e++) {
            for (int64_t j = 0; j < k; j++) {
                if (id[j] != e || !gate[e].buf) continue;   // absent: another rank's expert
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

/* ==== Gated DeltaNet ==== */

/* torch.nn.functional.softplus (threshold 20: linear above it). */
static double ref_softplus(double x) { return x > 20.0 ? x : log1p(exp(x)); }

static double ref_silu(double x) { return x / (1.0 + exp(-x)); }

/* The state slot of token i; a token at position 0 starts its sequence (state zeroed first). */
static int32_t ref_state_slot(const struct batch_meta *meta, int i, int64_t n_slots)
{
    CHECK(meta->seq_state_slot, "gdn op without meta->seq_state_slot");
    int32_t slot = meta->seq_state_slot[meta->tok_seq[i]];
    CHECK(slot >= 0 && slot < n_slots, "gdn: state slot %d out of [0, %lld)", slot, (long long)n_slots);
    return slot;
}

/* Row `bytes` of state after token i into the snapshot slot meta->tok_snap[i] marks (if any). */
static void ref_snap_row(const struct batch_meta *meta, int i, const struct tensor *snap, const void *row, size_t bytes)
{
    if (!meta->tok_snap || meta->tok_snap[i] < 0) return;
    CHECK(snap && meta->tok_snap[i] < tensor_rows(snap), "gdn: snapshot slot %d without its store", meta->tok_snap[i]);
    memcpy(host_row(snap, meta->tok_snap[i]), row, bytes);
}

static void ref_gdn_conv(struct backend *be, struct tensor *out, const struct tensor *x, const struct tensor *w,
                         struct gdn_state_layer *st, struct gdn_state_layer *snap, const struct batch_meta *meta)
{
    (void)be;
    host_check_f32(out, "gdn_conv out");
    host_check_f32(x, "gdn_conv x");
    host_check_f32(&st->conv, "gdn_conv state");
    int64_t C = x->ne[0], K = w->ne[0];
    CHECK(w->ne[1] == 1 && w->ne[2] == C && out->ne[0] == C && st->conv.ne[0] == (K - 1) * C, "gdn_conv: shapes");
    for (int i = 0; i < meta->n_tok; i++) {
        float *hist = host_row(&st->conv, ref_state_slot(meta, i, tensor_rows(&st->conv)));   // [K-1][C]
        if (meta->tok_pos[i] == 0) memset(hist, 0, sizeof(float) * (size_t)((K - 1) * C));
        const float *xr = host_row(x, i);
        float *o = host_row(out, i);
        for (int64_t c = 0; c < C; c++) {
            const void *wc = host_row(w, c);   // the K taps of channel c, oldest input first
            double acc = host_elem_f32(w->dtype, wc, K - 1) * (double)xr[c];
            for (int64_t j = 0; j < K - 1; j++) acc += host_elem_f32(w->dtype, wc, j) * (double)hist[j * C + c];
            o[c] = (float)ref_silu(acc);
            for (int64_t j = 0; j + 1 < K - 1; j++) hist[j * C + c] = hist[(j + 1) * C + c];
            if (K > 1) hist[(K - 2) * C + c] = xr[c];
        }
        ref_snap_row(meta, i, snap ? &snap->conv : NULL, hist, sizeof(float) * (size_t)((K - 1) * C));
    }
}

/* x / sqrt(sum x^2 + 1e-6) into y (FLA's l2norm, eps inside the root), times scale. */
static void ref_l2norm(double *y, const float *x, int64_t n, double scale)
{
    double ss = 0;
    for (int64_t j = 0; j < n; j++) ss += (double)x[j] * x[j];
    double inv = scale / sqrt(ss + 1e-6);
    for (int64_t j = 0; j < n; j++) y[j] = x[j] * inv;
}

static void ref_gdn_recurrent(struct backend *be, struct tensor *out, const struct tensor *q, const struct tensor *k,
                              const struct tensor *v, const struct tensor *a, const struct tensor *b,
                              const struct tensor *a_log, const struct tensor *dt_bias, struct gdn_state_layer *st,
                              struct gdn_state_layer *snap, const struct gdn_params *p, const struct batch_meta *meta)
{
    int64_t nk = p->n_k_heads, nv = p->n_v_heads, dk = p->k_dim, dv = p->v_dim;
    CHECK(nk > 0 && nv % nk == 0, "gdn_recurrent: %lld value heads over %lld key heads", (long long)nv, (long long)nk);
    host_check_f32(out, "gdn_recurrent out");
    host_check_f32(&st->ssm, "gdn_recurrent state");
    CHECK(q->ne[0] == nk * dk && k->ne[0] == nk * dk && v->ne[0] == nv * dv && out->ne[0] == nv * dv &&
          a->ne[0] == nv && b->ne[0] == nv && a_log->ne[0] == nv && dt_bias->ne[0] == nv &&
          st->ssm.ne[0] == nv * dk * dv, "gdn_recurrent: shapes");
    double *qn = ref_scratch(be, (size_t)(2 * dk + 2 * dv)), *kn = qn + dk, *m = kn + dk, *o = m + dv;
    for (int i = 0; i < meta->n_tok; i++) {
        float *S_all = host_row(&st->ssm, ref_state_slot(meta, i, tensor_rows(&st->ssm)));
        if (meta->tok_pos[i] == 0) memset(S_all, 0, sizeof(float) * (size_t)(nv * dk * dv));
        const float *qr = host_row(q, i), *kr = host_row(k, i), *vr = host_row(v, i);
        const float *ar = host_row(a, i), *br = host_row(b, i);
        float *orow = host_row(out, i);
        for (int64_t h = 0; h < nv; h++) {
            int64_t kh = h / (nv / nk);
            ref_l2norm(qn, qr + kh * dk, dk, 1.0 / sqrt((double)dk));
            ref_l2norm(kn, kr + kh * dk, dk, 1.0);
            double g = -exp((double)host_elem_f32(a_log->dtype, host_row(a_log, 0), h)) *
                       ref_softplus((double)ar[h] + host_elem_f32(dt_bias->dtype, host_row(dt_bias, 0), h));
            double beta = 1.0 / (1.0 + exp(-(double)br[h])), decay = exp(g);
            float *S = S_all + h * dk * dv;   // [dk][dv]
            for (int64_t j = 0; j < dk * dv; j++) S[j] = (float)(S[j] * decay);
            for (int64_t c = 0; c < dv; c++) {
                m[c] = 0;
                for (int64_t r = 0; r < dk; r++) m[c] += (double)S[r * dv + c] * kn[r];
            }
            for (int64_t r = 0; r < dk; r++)
                for (int64_t c = 0; c < dv; c++)
                    S[r * dv + c] = (float)(S[r * dv + c] + kn[r] * beta * ((double)vr[h * dv + c] - m[c]));
            for (int64_t c = 0; c < dv; c++) {
                o[c] = 0;
                for (int64_t r = 0; r < dk; r++) o[c] += (double)S[r * dv + c] * qn[r];
                orow[h * dv + c] = (float)o[c];
            }
        }
        ref_snap_row(meta, i, snap ? &snap->ssm : NULL, S_all, sizeof(float) * (size_t)(nv * dk * dv));
    }
}

static void ref_rmsnorm_gated(struct backend *be, struct tensor *out, const struct tensor *x, const struct tensor *z,
                              const struct tensor *w, float eps)
{
    (void)be;
    host_check_f32(out, "rmsnorm_gated out");
    host_check_f32(x, "rmsnorm_gated x");
    host_check_f32(z, "rmsnorm_gated z");
    int64_t dv = w->ne[0], width = x->ne[0], rows = tensor_rows(x);
    CHECK(width % dv == 0 && z->ne[0] == width && out->ne[0] == width && tensor_rows(out) >= rows &&
          tensor_rows(z) >= rows, "rmsnorm_gated: shapes");
    const void *wr = host_row(w, 0);
    for (int64_t i = 0; i < rows; i++) {
        const float *xr = host_row(x, i), *zr = host_row(z, i);
        float *o = host_row(out, i);
        for (int64_t h = 0; h < width / dv; h++) {
            double ss = 0;
            for (int64_t j = 0; j < dv; j++) ss += (double)xr[h * dv + j] * xr[h * dv + j];
            double inv = 1.0 / sqrt(ss / (double)dv + eps);
            for (int64_t j = 0; j < dv; j++) {
                int64_t c = h * dv + j;
                // HF rounds the normalised value to the activation dtype first (f32 here: a no-op)
                float normed = (float)(xr[c] * inv);
                o[c] = (float)((double)host_elem_f32(w->dtype, wr, j) * normed * ref_silu((double)zr[c]));
            }
        }
    }
}

static void ref_sigmoid_mul(struct backend *be, struct tensor *out, const struct tensor *x, const struct tensor *g)
{
    (void)be;
    host_check_f32(out, "sigmoid_mul out");
    host_check_f32(x, "sigmoid_mul x");
    host_check_f32(g, "sigmoid_mul g");
    int64_t m = x->ne[0], rows = tensor_rows(x);
    CHECK(out->ne[0] == m && (g->ne[0] == m || g->ne[0] == 1) && tensor_rows(g) >= rows && tensor_rows(out) >= rows,
          "sigmoid_mul: shapes");
    for (int64_t i = 0; i < rows; i++) {
        const float *xr = host_row(x, i), *gr = host_row(g, i);
        float *o = host_row(out, i);
        for (int64_t c = 0; c < m; c++) o[c] = (float)(xr[c] / (1.0 + exp(-(double)gr[g->ne[0] == 1 ? 0 : c])));
    }
}

static const struct backend_ops ref_ops = {
    .name = "ref",
    .moe_expert_subset = true,
    .destroy = ref_destroy,
    .buffer_new = host_buffer_new,
    .buffer_free = host_buffer_free,
    .upload = host_upload,
    .download = host_download,
    .copy = host_copy,
    .weight_prepare = NULL,
    .batch_begin = host_batch_begin,
    .sync = host_sync,
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
    .argmax = host_argmax,
    .logits_mask = host_logits_mask,
    .sample_cands = host_sample_cands,
    .gdn_conv = ref_gdn_conv,
    .gdn_recurrent = ref_gdn_recurrent,
    .rmsnorm_gated = ref_rmsnorm_gated,
    .sigmoid_mul = ref_sigmoid_mul,
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
