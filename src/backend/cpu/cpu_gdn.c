/* cpu_gdn: the Gated DeltaNet ops of the cpu backend (contracts in backend/backend.h).
 *
 * Design note: the conv runs token by token, threaded over blocks of channels, a tap at a time
 * over the block's contiguous channels (taps stored by position; the history rows move as whole
 * rows); each output sums the current input's product first, then the history's oldest first.
 * The delta rule is threaded over (sequence, value head) pairs, each walking its sequence's
 * tokens in order: a decode token takes the recurrent step (two sweeps over the head's state S
 * with f32 sums over contiguous dv), a prefill piece of 2-64 tokens the chunked WY form
 * (rec_chunk: a few small GEMMs on the attention kernels, qk and pv, with S read three times per
 * chunk instead of twice per token). Chunks are aligned to positions that are multiples of 64 and
 * end at marked tokens (meta->tok_snap: cuts and snapshots), so the result depends on where the
 * step cut the prompt only through the pieces next to the cut, and a snapshot equals the state of
 * a step cut there. Both forms match ref
 * (the recurrent oracle) within f32 rounding, not bit for bit (qwen35-arch.md 3.7).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "backend/host.h"
#include "base/log.h"

#define CONV_CHANNELS_PER_TASK 256

static inline float silu_f(float x) { return x / (1.0f + expf(-x)); }

static int32_t state_slot(const struct batch_meta *meta, int i, int64_t n_slots)
{
    CHECK(meta->seq_state_slot, "gdn op without meta->seq_state_slot");
    int32_t slot = meta->seq_state_slot[meta->tok_seq[i]];
    CHECK(slot >= 0 && slot < n_slots, "gdn: state slot %d out of [0, %lld)", slot, (long long)n_slots);
    return slot;
}

/* The snapshot row token i's state goes to after it (meta->tok_snap), or NULL. */
static float *snap_row(const struct batch_meta *meta, int i, const struct tensor *snap)
{
    if (!meta->tok_snap || meta->tok_snap[i] < 0) return NULL;
    CHECK(snap && snap->buf && meta->tok_snap[i] < tensor_rows(snap), "gdn: snapshot slot %d without its store",
          meta->tok_snap[i]);
    return host_row(snap, meta->tok_snap[i]);
}

/* ==== Causal depthwise conv + SiLU ==== */

struct conv_ctx {
    struct cpu              *c;
    struct tensor           *out;
    const struct tensor     *x, *w;
    struct gdn_state_layer  *st, *snap;
    const struct batch_meta *meta;
};

static void conv_task(void *arg, int task, int thread)
{
    struct conv_ctx *a = arg;
    int64_t C = a->x->ne[0], K = a->w->ne[0];
    int64_t c0 = (int64_t)task * CONV_CHANNELS_PER_TASK;
    int64_t c1 = c0 + CONV_CHANNELS_PER_TASK < C ? c0 + CONV_CHANNELS_PER_TASK : C, nc = c1 - c0;
    // the block's taps by position ([K][nc]: each tap's loop runs over contiguous channels), its
    // sums [nc] and one channel's K taps
    float *taps = cpu_thread_scratch(a->c, thread, (size_t)(nc * (K + 1) + K)), *acc = taps + nc * K, *tc = acc + nc;
    for (int64_t ch = 0; ch < nc; ch++) {
        a->c->kf->to_f32(a->w->dtype, host_row(a->w, c0 + ch), tc, K);
        for (int64_t j = 0; j < K; j++) taps[j * nc + ch] = tc[j];
    }
    for (int i = 0; i < a->meta->n_tok; i++) {
        float *hist = (float *)host_row(&a->st->conv, state_slot(a->meta, i, tensor_rows(&a->st->conv))) + c0;   // [K-1][C]
        if (a->meta->tok_pos[i] == 0)
            for (int64_t j = 0; j < K - 1; j++) memset(hist + j * C, 0, sizeof(float) * (size_t)nc);
        const float *xr = (const float *)host_row(a->x, i) + c0;
        float *o = (float *)host_row(a->out, i) + c0;
        // per channel: the current input's tap first, then the history oldest first
        for (int64_t ch = 0; ch < nc; ch++) acc[ch] = taps[(K - 1) * nc + ch] * xr[ch];
        for (int64_t j = 0; j < K - 1; j++)
            for (int64_t ch = 0; ch < nc; ch++) acc[ch] += taps[j * nc + ch] * hist[j * C + ch];
        for (int64_t ch = 0; ch < nc; ch++) o[ch] = silu_f(acc[ch]);
        for (int64_t j = 0; j + 1 < K - 1; j++) memcpy(hist + j * C, hist + (j + 1) * C, sizeof(float) * (size_t)nc);
        if (K > 1) memcpy(hist + (K - 2) * C, xr, sizeof(float) * (size_t)nc);
        float *snap = snap_row(a->meta, i, a->snap ? &a->snap->conv : NULL);
        for (int64_t j = 0; snap && j < K - 1; j++)
            memcpy(snap + j * C + c0, hist + j * C, sizeof(float) * (size_t)nc);
    }
}

void cpu_gdn_conv(struct backend *be, struct tensor *out, const struct tensor *x, const struct tensor *w,
                  struct gdn_state_layer *st, struct gdn_state_layer *snap, const struct batch_meta *meta)
{
    struct cpu *c = be->impl;
    int64_t C = x->ne[0], K = w->ne[0];
    CHECK(out->dtype == DTYPE_F32 && x->dtype == DTYPE_F32 && st->conv.dtype == DTYPE_F32, "gdn_conv: f32 only");
    CHECK(w->ne[1] == 1 && w->ne[2] == C && out->ne[0] == C && st->conv.ne[0] == (K - 1) * C, "gdn_conv: shapes");
    struct conv_ctx a = { c, out, x, w, st, snap, meta };
    int n_tasks = (int)((C + CONV_CHANNELS_PER_TASK - 1) / CONV_CHANNELS_PER_TASK);
    threadpool_run(c->tp, n_tasks, conv_task, &a);
}

/* ==== Delta rule ==== */

struct rec_ctx {
    struct cpu              *c;
    struct tensor           *out;
    const struct tensor     *q, *k, *v, *a, *b;
    const float             *a_log, *dt_bias;   // [nv] f32 copies
    struct gdn_state_layer  *st, *snap;
    const struct gdn_params *p;
    const struct batch_meta *meta;
};

static void l2norm_f(float *y, const float *x, int64_t n, float scale)
{
    float ss = 0;
    for (int64_t j = 0; j < n; j++) ss += x[j] * x[j];
    float inv = scale / sqrtf(ss + 1e-6f);
    for (int64_t j = 0; j < n; j++) y[j] = x[j] * inv;
}

/* Token i's inputs for value head h: normalised q (times dk^-0.5) and k, the log-decay g, beta. */
static void rec_token(const struct rec_ctx *a, int i, int64_t h, int64_t kh, float *qn, float *kn, float *g,
                      float *beta)
{
    int64_t dk = a->p->k_dim;
    l2norm_f(qn, (const float *)host_row(a->q, i) + kh * dk, dk, 1.0f / sqrtf((float)dk));
    l2norm_f(kn, (const float *)host_row(a->k, i) + kh * dk, dk, 1.0f);
    float ah = ((const float *)host_row(a->a, i))[h] + a->dt_bias[h];
    *g = -expf(a->a_log[h]) * (ah > 20.0f ? ah : log1pf(expf(ah)));
    *beta = 1.0f / (1.0f + expf(-((const float *)host_row(a->b, i))[h]));
}

/* One token, the recurrent form (decode): S = e^g S; delta = beta (v - S^T k); S += k delta^T;
 * o = S^T q. S swept twice, with f32 sums over contiguous dv. */
static void rec_step(const struct rec_ctx *a, int i, int64_t h, int64_t kh, float *S, float *scratch)
{
    int64_t dk = a->p->k_dim, dv = a->p->v_dim;
    float *qn = scratch, *kn = qn + dk, *m = kn + dk, *delta = m + dv, *o = delta + dv, g, beta;
    rec_token(a, i, h, kh, qn, kn, &g, &beta);
    float decay = expf(g);
    const float *vr = (const float *)host_row(a->v, i) + h * dv;
    for (int64_t c = 0; c < dv; c++) m[c] = o[c] = 0;
    for (int64_t r = 0; r < dk; r++) {   // S = decay S; m = S^T k
        float *row = S + r * dv, kr = kn[r];
        for (int64_t c = 0; c < dv; c++) {
            row[c] *= decay;
            m[c] += row[c] * kr;
        }
    }
    for (int64_t c = 0; c < dv; c++) delta[c] = beta * (vr[c] - m[c]);
    for (int64_t r = 0; r < dk; r++) {   // S += k delta^T; o = S^T q
        float *row = S + r * dv, kr = kn[r], qr = qn[r];
        for (int64_t c = 0; c < dv; c++) {
            row[c] += kr * delta[c];
            o[c] += row[c] * qr;
        }
    }
    memcpy((float *)host_row(a->out, i) + h * dv, o, sizeof(float) * (size_t)dv);
}

/* Floats of rec_chunk's scratch for chunks of up to GDN_CHUNK tokens (pointer arrays included). */
static size_t rec_chunk_scratch(int64_t dk, int64_t dv)
{
    int64_t L = GDN_CHUNK;
    return (size_t)(3 * L * dk + 2 * L * dv + 2 * L * L + dk * L + 2 * L + 2 * (3 * L + dk) + 16);
}

/* L >= 2 consecutive tokens idx[0..L) of one sequence inside one chunk, the chunked (WY) form of
 * the same updates (qwen35-arch.md 3.7), with G_i = g_1 + ... + g_i:
 *   A_ij = beta_i (k_i.k_j) e^(G_i - G_j) (j < i);  (I + A) U = diag(beta) V,
 *   (I + A) W = diag(beta e^G) K  (forward substitution; T = (I + A)^-1 never formed);
 *   V' = U - W S;  O = diag(e^G) Q S + (Q K^T . e^(G_i - G_j), j <= i) V';
 *   S = e^(G_L) S + (K . e^(G_L - G))^T V'.
 * Every product is a kf->qk (dots) or kf->pv (row-weighted sums: the attention kernels, SIMD and
 * register-blocked), so a chunk costs about 3 L dk dv FMAs in cache-friendly GEMMs where the
 * recurrent form makes 4 L dk dv in 2 L sweeps over S. Same results to f32 rounding. */
static void rec_chunk(const struct rec_ctx *a, const int *idx, int L, int64_t h, int64_t kh, float *S, float *scr)
{
    const struct cpu_kern *kf = a->c->kf;
    int64_t dk = a->p->k_dim, dv = a->p->v_dim;
    float *Q = scr, *K = Q + L * dk, *Wn = K + L * dk;          // [L][dk]; Wn = -W
    float *U = Wn + L * dk, *O = U + L * dv;                     // [L][dv]; U becomes V'
    float *KK = O + L * dv, *QK = KK + L * L;                    // [L][L]
    float *KdT = QK + L * L, *G = KdT + dk * L, *beta = G + L;   // [dk][L], [L], [L]
    const void **prow = (const void **)(((uintptr_t)(beta + L) + 15) & ~(uintptr_t)15);
    const void **k_rows = prow, **u_rows = k_rows + L, **w_rows = u_rows + L, **s_rows = w_rows + L;
    float gsum = 0;
    for (int t = 0; t < L; t++) {
        float g;
        rec_token(a, idx[t], h, kh, Q + t * dk, K + t * dk, &g, &beta[t]);
        G[t] = gsum += g;
        k_rows[t] = K + t * dk;
        u_rows[t] = U + t * dv;
        w_rows[t] = Wn + t * dk;
    }
    for (int64_t r = 0; r < dk; r++) s_rows[r] = S + r * dv;
    kf->qk(L, K, (int)dk, k_rows, L, DTYPE_F32, KK, L);
    kf->qk(L, Q, (int)dk, k_rows, L, DTYPE_F32, QK, L);
    for (int i = 0; i < L; i++) {
        for (int j = 0; j < L; j++) {
            float d = j <= i ? expf(G[i] - G[j]) : 0.0f;
            KK[i * L + j] = j < i ? -beta[i] * KK[i * L + j] * d : 0.0f;   // -A
            QK[i * L + j] *= d;                                              // P, zero above the diagonal
        }
    }
    for (int i = 0; i < L; i++) {   // forward substitution, row by row
        const float *vr = (const float *)host_row(a->v, idx[i]) + h * dv;
        float eg = expf(G[i]);
        for (int64_t c = 0; c < dv; c++) U[i * dv + c] = beta[i] * vr[c];
        for (int64_t r = 0; r < dk; r++) Wn[i * dk + r] = -beta[i] * eg * K[i * dk + r];
        if (i > 0) {
            kf->pv(1, U + i * dv, (int)dv, KK + i * L, L, u_rows, i, DTYPE_F32);
            kf->pv(1, Wn + i * dk, (int)dk, KK + i * L, L, w_rows, i, DTYPE_F32);
        }
    }
    for (int i = 0; i < L; i++) {   // O's state part reads Q e^G
        float eg = expf(G[i]);
        for (int64_t r = 0; r < dk; r++) Q[i * dk + r] *= eg;
    }
    memset(O, 0, sizeof(float) * (size_t)(L * dv));
    kf->pv(L, O, (int)dv, Q, (int)dk, s_rows, (int)dk, DTYPE_F32);    // O = diag(e^G) Q S
    kf->pv(L, U, (int)dv, Wn, (int)dk, s_rows, (int)dk, DTYPE_F32);   // V' = U - W S
    kf->pv(L, O, (int)dv, QK, L, u_rows, L, DTYPE_F32);                // O += P V'
    float eL = expf(G[L - 1]);
    for (int64_t r = 0; r < dk; r++)
        for (int t = 0; t < L; t++) KdT[r * L + t] = K[t * dk + r] * expf(G[L - 1] - G[t]);
    for (int64_t e = 0; e < dk * dv; e++) S[e] *= eL;
    kf->pv((int)dk, S, (int)dv, KdT, L, u_rows, L, DTYPE_F32);        // S = e^G_L S + Kd^T V'
    for (int t = 0; t < L; t++) memcpy((float *)host_row(a->out, idx[t]) + h * dv, O + t * dv, sizeof(float) * (size_t)dv);
}

/* One (sequence, value head): its tokens of the step in order, cut into pieces at chunk
 * boundaries and after snapshot tokens; a piece of one token (decode) takes the recurrent step,
 * longer ones the chunked form. */
static void rec_task(void *arg, int task, int thread)
{
    struct rec_ctx *a = arg;
    const struct gdn_params *p = a->p;
    const struct batch_meta *meta = a->meta;
    int64_t nv = p->n_v_heads, dk = p->k_dim, dv = p->v_dim;
    int seq = task / (int)nv;
    int64_t h = task % nv, kh = h / (nv / p->n_k_heads);
    float *scr = cpu_thread_scratch(a->c, thread, rec_chunk_scratch(dk, dv) + (size_t)(2 * dk + 3 * dv));
    float *S = NULL, *snap = NULL;   // snap: where the state goes after the piece's last token
    int idx[GDN_CHUNK], L = 0;
    bool cut = false;                // the piece's last token is marked (meta->tok_snap)
    for (int i = 0; i <= meta->n_tok; i++) {
        bool mine = i < meta->n_tok && meta->tok_seq[i] == seq;
        if (L > 0 && (!mine || meta->tok_pos[i] % GDN_CHUNK == 0 || L == GDN_CHUNK || cut)) {   // the piece ends before token i
            if (L == 1) rec_step(a, idx[0], h, kh, S, scr);
            else rec_chunk(a, idx, L, h, kh, S, scr);
            if (snap) memcpy(snap + h * dk * dv, S, sizeof(float) * (size_t)(dk * dv));
            L = 0;
        }
        if (!mine) continue;
        if (!S) {
            S = (float *)host_row(&a->st->ssm, state_slot(meta, i, tensor_rows(&a->st->ssm))) + h * dk * dv;
            if (meta->tok_pos[i] == 0) memset(S, 0, sizeof(float) * (size_t)(dk * dv));
        }
        idx[L++] = i;
        cut = meta->tok_snap && meta->tok_snap[i] != TOK_SNAP_NONE;
        snap = snap_row(meta, i, a->snap ? &a->snap->ssm : NULL);
    }
}

void cpu_gdn_recurrent(struct backend *be, struct tensor *out, const struct tensor *q, const struct tensor *k,
                       const struct tensor *v, const struct tensor *a, const struct tensor *b,
                       const struct tensor *a_log, const struct tensor *dt_bias, struct gdn_state_layer *st,
                       struct gdn_state_layer *snap, const struct gdn_params *p, const struct batch_meta *meta)
{
    struct cpu *c = be->impl;
    int64_t nk = p->n_k_heads, nv = p->n_v_heads, dk = p->k_dim, dv = p->v_dim;
    CHECK(nk > 0 && nv % nk == 0, "gdn_recurrent: %lld value heads over %lld key heads", (long long)nv, (long long)nk);
    CHECK(out->dtype == DTYPE_F32 && q->dtype == DTYPE_F32 && k->dtype == DTYPE_F32 && v->dtype == DTYPE_F32 &&
          a->dtype == DTYPE_F32 && b->dtype == DTYPE_F32 && st->ssm.dtype == DTYPE_F32, "gdn_recurrent: f32 only");
    CHECK(q->ne[0] == nk * dk && k->ne[0] == nk * dk && v->ne[0] == nv * dv && out->ne[0] == nv * dv &&
          a->ne[0] == nv && b->ne[0] == nv && a_log->ne[0] == nv && dt_bias->ne[0] == nv &&
          st->ssm.ne[0] == nv * dk * dv, "gdn_recurrent: shapes");
    float *par = cpu_shared_scratch(c, (size_t)(2 * nv));
    c->kf->to_f32(a_log->dtype, host_row(a_log, 0), par, nv);
    c->kf->to_f32(dt_bias->dtype, host_row(dt_bias, 0), par + nv, nv);
    struct rec_ctx ctx = { c, out, q, k, v, a, b, par, par + nv, st, snap, p, meta };
    threadpool_run(c->tp, meta->n_seq * (int)nv, rec_task, &ctx);
}

/* ==== Gated RMSNorm ==== */

struct rmsg_ctx {
    struct tensor       *out;
    const struct tensor *x, *z;
    const float         *w;   // [dv] f32
    int64_t              dv;
    float                eps;
};

static void rmsg_rows(void *arg, int64_t r0, int64_t r1)
{
    struct rmsg_ctx *a = arg;
    int64_t width = a->x->ne[0], dv = a->dv;
    for (int64_t i = r0; i < r1; i++) {
        const float *xr = host_row(a->x, i), *zr = host_row(a->z, i);
        float *o = host_row(a->out, i);
        for (int64_t h0 = 0; h0 < width; h0 += dv) {
            float ss = 0;
            for (int64_t j = 0; j < dv; j++) ss += xr[h0 + j] * xr[h0 + j];
            float inv = 1.0f / sqrtf(ss / (float)dv + a->eps);
            for (int64_t j = 0; j < dv; j++) o[h0 + j] = a->w[j] * (xr[h0 + j] * inv) * silu_f(zr[h0 + j]);
        }
    }
}

struct rmsg_job {
    struct rmsg_ctx *ctx;
    int64_t          rows, per_task;
};

static void rmsg_task(void *arg, int task, int thread)
{
    (void)thread;
    struct rmsg_job *j = arg;
    int64_t r0 = (int64_t)task * j->per_task, r1 = r0 + j->per_task < j->rows ? r0 + j->per_task : j->rows;
    rmsg_rows(j->ctx, r0, r1);
}

void cpu_rmsnorm_gated(struct backend *be, struct tensor *out, const struct tensor *x, const struct tensor *z,
                       const struct tensor *w, float eps)
{
    struct cpu *c = be->impl;
    int64_t dv = w->ne[0], width = x->ne[0], rows = tensor_rows(x);
    CHECK(out->dtype == DTYPE_F32 && x->dtype == DTYPE_F32 && z->dtype == DTYPE_F32, "rmsnorm_gated: f32 only");
    CHECK(width % dv == 0 && z->ne[0] == width && out->ne[0] == width && tensor_rows(out) >= rows &&
          tensor_rows(z) >= rows, "rmsnorm_gated: shapes");
    float *wf = cpu_shared_scratch(c, (size_t)dv);
    c->kf->to_f32(w->dtype, host_row(w, 0), wf, dv);
    struct rmsg_ctx ctx = { out, x, z, wf, dv, eps };
    int64_t n_tasks = rows < c->n_threads * 4 ? rows : c->n_threads * 4;
    if (n_tasks <= 1 || rows * width < 32768) {
        rmsg_rows(&ctx, 0, rows);
        return;
    }
    struct rmsg_job j = { &ctx, rows, (rows + n_tasks - 1) / n_tasks };
    threadpool_run(c->tp, (int)((rows + j.per_task - 1) / j.per_task), rmsg_task, &j);
}

/* ==== Sigmoid gate ==== */

void cpu_sigmoid_mul(struct backend *be, struct tensor *out, const struct tensor *x, const struct tensor *g)
{
    (void)be;   // memory-bound and small next to the matmuls around it: one thread
    int64_t m = x->ne[0], rows = tensor_rows(x);
    CHECK(out->dtype == DTYPE_F32 && x->dtype == DTYPE_F32 && g->dtype == DTYPE_F32, "sigmoid_mul: f32 only");
    CHECK(out->ne[0] == m && (g->ne[0] == m || g->ne[0] == 1) && tensor_rows(g) >= rows && tensor_rows(out) >= rows,
          "sigmoid_mul: shapes");
    for (int64_t i = 0; i < rows; i++) {
        const float *xr = host_row(x, i), *gr = host_row(g, i);
        float *o = host_row(out, i);
        if (g->ne[0] == 1) {
            float s = 1.0f / (1.0f + expf(-gr[0]));
            for (int64_t c = 0; c < m; c++) o[c] = xr[c] * s;
        } else {
            for (int64_t c = 0; c < m; c++) o[c] = xr[c] / (1.0f + expf(-gr[c]));
        }
    }
}
