/* cpu_gdn: the Gated DeltaNet ops of the cpu backend (contracts in backend/backend.h).
 *
 * Design note: both state ops run the plain recurrent form, token by token, threaded where the
 * work is independent: the conv over blocks of channels, the delta rule over (sequence, value
 * head) pairs, each walking its sequence's tokens in order. A prefill of T tokens thus costs
 * T sequential rank-1 updates per head (no chunked WY form yet: that is the next step for long
 * prompts, see qwen35-arch.md section 3.7). The state S of a head is swept twice per token,
 * once to decay it and read S^T k, once to add k delta^T and read S^T q, with f32 sums over
 * contiguous dv so the compiler vectorises them. Results match ref within f32 rounding.
 */
#include <math.h>
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

/* ==== Causal depthwise conv + SiLU ==== */

struct conv_ctx {
    struct cpu              *c;
    struct tensor           *out;
    const struct tensor     *x, *w;
    struct gdn_state_layer  *st;
    const struct batch_meta *meta;
};

static void conv_task(void *arg, int task, int thread)
{
    struct conv_ctx *a = arg;
    int64_t C = a->x->ne[0], K = a->w->ne[0];
    int64_t c0 = (int64_t)task * CONV_CHANNELS_PER_TASK;
    int64_t c1 = c0 + CONV_CHANNELS_PER_TASK < C ? c0 + CONV_CHANNELS_PER_TASK : C;
    float *taps = cpu_thread_scratch(a->c, thread, (size_t)((c1 - c0) * K));   // [channel][K]
    for (int64_t ch = c0; ch < c1; ch++) a->c->kf->to_f32(a->w->dtype, host_row(a->w, ch), taps + (ch - c0) * K, K);
    for (int i = 0; i < a->meta->n_tok; i++) {
        float *hist = host_row(&a->st->conv, state_slot(a->meta, i, tensor_rows(&a->st->conv)));   // [K-1][C]
        if (a->meta->tok_pos[i] == 0)
            for (int64_t j = 0; j < K - 1; j++) memset(hist + j * C + c0, 0, sizeof(float) * (size_t)(c1 - c0));
        const float *xr = host_row(a->x, i);
        float *o = host_row(a->out, i);
        for (int64_t ch = c0; ch < c1; ch++) {
            const float *t = taps + (ch - c0) * K;
            float acc = t[K - 1] * xr[ch];
            for (int64_t j = 0; j < K - 1; j++) acc += t[j] * hist[j * C + ch];
            o[ch] = silu_f(acc);
            for (int64_t j = 0; j + 1 < K - 1; j++) hist[j * C + ch] = hist[(j + 1) * C + ch];
            if (K > 1) hist[(K - 2) * C + ch] = xr[ch];
        }
    }
}

void cpu_gdn_conv(struct backend *be, struct tensor *out, const struct tensor *x, const struct tensor *w,
                  struct gdn_state_layer *st, const struct batch_meta *meta)
{
    struct cpu *c = be->impl;
    int64_t C = x->ne[0], K = w->ne[0];
    CHECK(out->dtype == DTYPE_F32 && x->dtype == DTYPE_F32 && st->conv.dtype == DTYPE_F32, "gdn_conv: f32 only");
    CHECK(w->ne[1] == 1 && w->ne[2] == C && out->ne[0] == C && st->conv.ne[0] == (K - 1) * C, "gdn_conv: shapes");
    struct conv_ctx a = { c, out, x, w, st, meta };
    int n_tasks = (int)((C + CONV_CHANNELS_PER_TASK - 1) / CONV_CHANNELS_PER_TASK);
    threadpool_run(c->tp, n_tasks, conv_task, &a);
}

/* ==== Delta rule ==== */

struct rec_ctx {
    struct cpu              *c;
    struct tensor           *out;
    const struct tensor     *q, *k, *v, *a, *b;
    const float             *a_log, *dt_bias;   // [nv] f32 copies
    struct gdn_state_layer  *st;
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

static void rec_task(void *arg, int task, int thread)
{
    struct rec_ctx *a = arg;
    const struct gdn_params *p = a->p;
    int64_t nv = p->n_v_heads, dk = p->k_dim, dv = p->v_dim;
    int seq = task / (int)nv;
    int64_t h = task % nv, kh = h / (nv / p->n_k_heads);
    float *qn = cpu_thread_scratch(a->c, thread, (size_t)(2 * dk + 3 * dv));
    float *kn = qn + dk, *m = kn + dk, *delta = m + dv, *o = delta + dv;
    float neg_a = -expf(a->a_log[h]);
    for (int i = 0; i < a->meta->n_tok; i++) {
        if (a->meta->tok_seq[i] != seq) continue;
        float *S = (float *)host_row(&a->st->ssm, state_slot(a->meta, i, tensor_rows(&a->st->ssm))) + h * dk * dv;
        if (a->meta->tok_pos[i] == 0) memset(S, 0, sizeof(float) * (size_t)(dk * dv));
        l2norm_f(qn, (const float *)host_row(a->q, i) + kh * dk, dk, 1.0f / sqrtf((float)dk));
        l2norm_f(kn, (const float *)host_row(a->k, i) + kh * dk, dk, 1.0f);
        float ah = ((const float *)host_row(a->a, i))[h] + a->dt_bias[h];
        float g = neg_a * (ah > 20.0f ? ah : log1pf(expf(ah)));
        float beta = 1.0f / (1.0f + expf(-((const float *)host_row(a->b, i))[h])), decay = expf(g);
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
}

void cpu_gdn_recurrent(struct backend *be, struct tensor *out, const struct tensor *q, const struct tensor *k,
                       const struct tensor *v, const struct tensor *a, const struct tensor *b,
                       const struct tensor *a_log, const struct tensor *dt_bias, struct gdn_state_layer *st,
                       const struct gdn_params *p, const struct batch_meta *meta)
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
    struct rec_ctx ctx = { c, out, q, k, v, a, b, par, par + nv, st, p, meta };
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
