/* cpu_matmul: matmul, matmul_rows and moe_ffn of the cpu backend.
 *
 * out[n, m] = x[n, k] @ w[m, k]^T. Work is split across threads by weight rows (output columns),
 * so every weight byte is read from memory once per call. Two loops over the same tile kernel:
 *  - decode GEMV (n <= GEMV_MAX_ROWS): each task streams its slice of weight rows nr at a time
 *    in their own dtype and multiplies them with all rows of x at once: bandwidth bound.
 *  - prefill GEMM: x is copied once, 64-byte aligned with a stride that is not a multiple of
 *    2 KiB (L1 aliasing cost ~40%); each task converts a panel of weight rows to f32 once (sized
 *    to stay in L2), then runs mr x nr register tiles over all rows of x against it; for
 *    k > KC_MAX the tiles walk k in KC blocks with their accumulators parked in scratch, so the
 *    x and w tiles stay in L1: compute bound (about 80% of the FMA peak of a core at k = 1024).
 * Both compute every c[i, j] with the identical operation sequence (kern.h), so a row's output
 * does not depend on n, on the split or on the k blocking: batch invariance by construction.
 * matmul_n runs up to 3 weight matrices that share x (q/k/v, gate/up) in one fork-join.
 *
 * MLX-quantized weights (DTYPE_QMLX): at batch 1 the fused GEMV (c->qgemv) dequantizes in
 * registers; otherwise (and for widths it lacks) each panel of rows is dequantized (c->qdeq,
 * exact) into the L2 panel. Either way only the packed bytes stream from memory and the results
 * equal those of the same weights dequantized to f32, bit for bit (qdeq.h).
 *
 * moe_ffn runs each expert's gate/up/down as ordinary gemms over the tokens routed to it
 * (gathered into scratch), so each expert's weights are read once per step, then adds the
 * weighted results into each token's row in ascending expert order (as HF does).
 */
#include <stdint.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "backend/host.h"
#include "base/log.h"

#define GEMV_MAX_ROWS 8
#define PANEL_BYTES   (192 * 1024)   // f32 weight panel, kept in L2
#define KC_MAX        1024           // longer k is cut into KC blocks (x and w tiles stay in L1)
#define KC            512            // a multiple of every family's lanes
#define XBLOCK_TILES  16             // x tiles per block when k is cut

#define GEMM_MAX_MATS 3

/* One weight matrix of a gemm job: out[n, m] = x @ w^T (+ bias). */
struct gemm_mat {
    float               *out;
    int64_t              ldo;
    const struct tensor *wt;        // the weight (for MLX-quantized ones)
    const char          *w;         // weight row 0
    size_t               ldw;       // bytes between weight rows
    enum dtype           wdt;
    const struct tensor *bias;
    int64_t              m;
    int64_t              rows_per_task;
    int                  task0;     // the job's first task for this matrix
};

/* Several matrices that share x (q/k/v, gate/up) run as one fork-join. */
struct gemm_job {
    struct cpu            *c;
    const struct cpu_kern *kf;
    const float           *x;
    int64_t                ldx;
    int64_t                n, k;
    int64_t                panel_rows;   // GEMM: weight rows converted at once
    bool                   gemv;
    int                    n_mats;
    struct gemm_mat        mats[GEMM_MAX_MATS];
};

/* GEMM over weight rows [j0, j1) held as f32 at w (row stride ldw bytes). Up to KC_MAX the
 * whole k of an x tile and of a weight tile stay in L1; beyond, k is cut in KC blocks, x in
 * blocks of 16 tiles, and the tiles' accumulators wait in part between k blocks (exact). */
static void gemm_rows(const struct gemm_job *g, const struct gemm_mat *mt, int64_t j0, int64_t j1, const char *w,
                      size_t ldw, float *part)
{
    const struct cpu_kern *kf = g->kf;
    if (g->k <= KC_MAX) {
        for (int64_t i0 = 0; i0 < g->n; i0 += kf->mr) {
            int mr = g->n - i0 < kf->mr ? (int)(g->n - i0) : kf->mr;
            for (int64_t j = j0; j < j1; j += kf->nr) {
                int nr = j1 - j < kf->nr ? (int)(j1 - j) : kf->nr;
                kf->tile(mr, nr, DTYPE_F32, g->k, g->x + i0 * g->ldx, g->ldx, w + (size_t)(j - j0) * ldw, ldw,
                         mt->out + i0 * mt->ldo + j, mt->ldo);
            }
        }
        return;
    }
    int64_t mb = (int64_t)kf->mr * XBLOCK_TILES, tiles_j = (j1 - j0 + kf->nr - 1) / kf->nr;
    size_t slot = (size_t)kf->mr * kf->nr * kf->lanes;
    for (int64_t ib0 = 0; ib0 < g->n; ib0 += mb) {
        int64_t ib1 = ib0 + mb < g->n ? ib0 + mb : g->n;
        for (int64_t kb0 = 0; kb0 < g->k; kb0 += KC) {
            int64_t kb1 = kb0 + KC < g->k ? kb0 + KC : g->k;
            for (int64_t i0 = ib0; i0 < ib1; i0 += kf->mr) {
                int mr = ib1 - i0 < kf->mr ? (int)(ib1 - i0) : kf->mr;
                for (int64_t j = j0; j < j1; j += kf->nr) {
                    int nr = j1 - j < kf->nr ? (int)(j1 - j) : kf->nr;
                    float *ps = part + ((size_t)((i0 - ib0) / kf->mr) * (size_t)tiles_j + (size_t)((j - j0) / kf->nr)) * slot;
                    kf->tile_k(mr, nr, DTYPE_F32, g->k, kb0, kb1, g->x + i0 * g->ldx, g->ldx,
                               w + (size_t)(j - j0) * ldw, ldw, mt->out + i0 * mt->ldo + j, mt->ldo, ps);
                }
            }
        }
    }
}

static void gemv_rows(const struct gemm_job *g, const struct gemm_mat *mt, int64_t j0, int64_t j1)
{
    const struct cpu_kern *kf = g->kf;
    for (int64_t j = j0; j < j1; j += kf->nr) {
        int nr = j1 - j < kf->nr ? (int)(j1 - j) : kf->nr;
        const char *w = mt->w + (size_t)j * mt->ldw;
        for (int64_t i0 = 0; i0 < g->n; i0 += kf->mr) {
            int mr = g->n - i0 < kf->mr ? (int)(g->n - i0) : kf->mr;
            kf->tile(mr, nr, mt->wdt, g->k, g->x + i0 * g->ldx, g->ldx, w, mt->ldw, mt->out + i0 * mt->ldo + j, mt->ldo);
        }
    }
}

static void gemm_task(void *arg, int task, int thread)
{
    const struct gemm_job *g = arg;
    int mi = g->n_mats - 1;
    while (task < g->mats[mi].task0) mi--;
    const struct gemm_mat *mt = &g->mats[mi];
    int64_t j0 = (int64_t)(task - mt->task0) * mt->rows_per_task;
    int64_t j1 = j0 + mt->rows_per_task < mt->m ? j0 + mt->rows_per_task : mt->m;
    bool done = false;
    if (g->gemv && mt->wdt == DTYPE_QMLX)
        done = g->c->qgemv(mt->wt, j0, j1, g->x, g->ldx, (int)g->n, mt->out, mt->ldo);
    else if (g->gemv) {
        gemv_rows(g, mt, j0, j1);
        done = true;
    }
    if (!done) {
        // weights to f32 once per panel of rows, rows padded so their stride never is a multiple
        // of 2 KiB (aliasing in L1); f32 weights are copied too, for the same layout
        int64_t ldp = (g->k + 15) / 16 * 16;
        if ((ldp * (int64_t)sizeof(float)) % 2048 == 0) ldp += 16;
        size_t part_n = g->k > KC_MAX ? (size_t)g->kf->mr * XBLOCK_TILES * (size_t)((g->panel_rows + g->kf->nr - 1) / g->kf->nr * g->kf->nr) * (size_t)g->kf->lanes : 0;
        float *panel = cpu_thread_scratch(g->c, thread, (size_t)(g->panel_rows * ldp) + part_n);
        float *part = panel + g->panel_rows * ldp;
        for (int64_t p0 = j0; p0 < j1; p0 += g->panel_rows) {
            int64_t p1 = p0 + g->panel_rows < j1 ? p0 + g->panel_rows : j1;
            for (int64_t j = p0; j < p1; j++) {
                if (mt->wdt == DTYPE_QMLX) g->c->qdeq(mt->wt, j, panel + (j - p0) * ldp);
                else g->kf->to_f32(mt->wdt, mt->w + (size_t)j * mt->ldw, panel + (j - p0) * ldp, g->k);
            }
            gemm_rows(g, mt, p0, p1, (const char *)panel, (size_t)ldp * sizeof(float), part);
        }
    }
    if (mt->bias) {
        const void *b = host_row(mt->bias, 0);
        for (int64_t i = 0; i < g->n; i++)
            for (int64_t j = j0; j < j1; j++) mt->out[i * mt->ldo + j] += host_elem_f32(mt->bias->dtype, b, j);
    }
}

void cpu_gemm_n(struct cpu *c, int n_mats, float *const *outs, const int64_t *ldos, const float *x, int64_t ldx,
                int64_t n, const struct tensor *const *ws, const struct tensor *const *biases)
{
    if (n <= 0 || n_mats <= 0) return;
    CHECK(n_mats <= GEMM_MAX_MATS, "gemm: %d matrices (max %d)", n_mats, GEMM_MAX_MATS);
    int64_t k = ws[0]->ne[0], m_total = 0;
    for (int i = 0; i < n_mats; i++) {
        const struct tensor *w = ws[i];
        CHECK(w->ne[0] == k && tensor_rows(w) > 0, "matmul: weights of one x differ in k, or are empty");
        CHECK(host_is_float(w->dtype) || w->dtype == DTYPE_QMLX, "matmul: weight dtype %s", dtype_name(w->dtype));
        CHECK(tensor_is_contiguous(w) || w->ne[2] * w->ne[3] == 1, "matmul: weight %s not 2-D", w->name ? w->name : "?");
        m_total += tensor_rows(w);
    }
    bool gemv = n <= GEMV_MAX_ROWS;
    if (!gemv && ((ldx * (int64_t)sizeof(float)) % 2048 == 0 || ldx % 16 || (uintptr_t)x % 64)) {
        // x rows 2 or 4 KiB apart alias in L1 (the tile reads mr of them at the same offset),
        // and rows that are not 64-byte aligned split loads: copy x once, aligned and padded
        int64_t ldp = (k + 15) / 16 * 16;
        if ((ldp * (int64_t)sizeof(float)) % 2048 == 0) ldp += 16;
        float *xp = cpu_xpack_scratch(c, (size_t)(n * ldp));
        for (int64_t i = 0; i < n; i++) memcpy(xp + i * ldp, x + i * ldx, (size_t)k * sizeof(float));
        x = xp;
        ldx = ldp;
    }
    struct gemm_job g = { .c = c, .kf = c->kf, .x = x, .ldx = ldx, .n = n, .k = k, .gemv = gemv, .n_mats = n_mats };
    int64_t panel = PANEL_BYTES / (k * (int64_t)sizeof(float));
    panel = panel / c->kf->nr * c->kf->nr;
    g.panel_rows = panel < c->kf->nr ? c->kf->nr : panel;
    // A few contiguous slices per thread, handed out dynamically: a thread that gets
    // descheduled (or a slower core) strands little work. Slices are multiples of 16 rows so
    // threads never write the same cache line of out.
    int64_t target = n * m_total * k < 65536 ? 1 : c->n_threads * 4;
    int task = 0;
    for (int i = 0; i < n_mats; i++) {
        struct gemm_mat *mt = &g.mats[i];
        const struct tensor *w = ws[i];
        mt->out = outs[i];
        mt->ldo = ldos[i];
        mt->wt = w;
        mt->w = host_row(w, 0);
        mt->ldw = w->nb[1];
        mt->wdt = w->dtype;
        mt->bias = biases ? biases[i] : NULL;
        mt->m = tensor_rows(w);
        int64_t nt = (target * mt->m + m_total - 1) / m_total;
        int64_t rpt = (mt->m + nt - 1) / nt;
        mt->rows_per_task = (rpt + 15) / 16 * 16;
        mt->task0 = task;
        task += (int)((mt->m + mt->rows_per_task - 1) / mt->rows_per_task);
    }
    threadpool_run(c->tp, task, gemm_task, &g);
}

void cpu_gemm(struct cpu *c, float *out, int64_t ldo, const float *x, int64_t ldx, int64_t n,
              const struct tensor *w, const struct tensor *bias)
{
    cpu_gemm_n(c, 1, &out, &ldo, x, ldx, n, &w, &bias);
}

/* The gemm addresses rows through nb[1] alone. */
static void check_2d(const struct tensor *t, const char *what)
{
    CHECK(t->ne[2] * t->ne[3] == 1 || tensor_is_contiguous(t), "%s: not 2-D", what);
}

void cpu_matmul(struct backend *be, struct tensor *out, const struct tensor *x,
                const struct tensor *w, const struct tensor *bias)
{
    host_check_matmul(out, x, w, bias);
    check_2d(out, "matmul out");
    check_2d(x, "matmul x");
    cpu_gemm(be->impl, host_row(out, 0), (int64_t)(out->nb[1] / sizeof(float)), host_row(x, 0),
             (int64_t)(x->nb[1] / sizeof(float)), tensor_rows(x), w, bias);
}

void cpu_matmul_n(struct backend *be, int n_mats, struct tensor *const *outs, const struct tensor *x,
                  const struct tensor *const *ws, const struct tensor *const *biases)
{
    host_check_f32(x, "matmul_n x");
    check_2d(x, "matmul_n x");
    CHECK(n_mats >= 1 && n_mats <= GEMM_MAX_MATS, "matmul_n: %d matrices", n_mats);
    int64_t n = tensor_rows(x);
    float *o[GEMM_MAX_MATS];
    int64_t ld[GEMM_MAX_MATS];
    for (int i = 0; i < n_mats; i++) {
        host_check_f32(outs[i], "matmul_n out");
        check_2d(outs[i], "matmul_n out");
        CHECK(ws[i]->ne[0] == x->ne[0], "matmul_n: x has %lld cols, w %d has %lld", (long long)x->ne[0], i,
              (long long)ws[i]->ne[0]);
        CHECK(outs[i]->ne[0] == tensor_rows(ws[i]) && tensor_rows(outs[i]) >= n, "matmul_n: out %d shape", i);
        CHECK(!biases || !biases[i] || biases[i]->ne[0] >= tensor_rows(ws[i]), "matmul_n: bias %d shape", i);
        o[i] = host_row(outs[i], 0);
        ld[i] = (int64_t)(outs[i]->nb[1] / sizeof(float));
    }
    cpu_gemm_n(be->impl, n_mats, o, ld, host_row(x, 0), (int64_t)(x->nb[1] / sizeof(float)), n, ws, biases);
}

void cpu_matmul_rows(struct backend *be, struct tensor *out, const struct tensor *x,
                     const struct tensor *w, const struct batch_meta *meta)
{
    struct cpu *c = be->impl;
    host_check_matmul_rows(out, x, w, meta);
    check_2d(out, "matmul_rows out");
    int64_t k = x->ne[0], n = meta->n_out;
    float *xs = cpu_shared_scratch(c, (size_t)(n * k));
    for (int64_t i = 0; i < n; i++) memcpy(xs + i * k, host_row(x, meta->out_tok[i]), (size_t)k * sizeof(float));
    cpu_gemm(c, host_row(out, 0), (int64_t)(out->nb[1] / sizeof(float)), xs, k, n, w, NULL);
}

/* ==== MoE ==== */

void cpu_moe_ffn(struct backend *be, struct tensor *out, const struct tensor *x, const struct tensor *ids,
                 const struct tensor *weights, const struct tensor *gate, const struct tensor *up,
                 const struct tensor *down, int n_experts, enum act act)
{
    struct cpu *c = be->impl;
    host_check_moe_ffn(out, x, ids, weights, gate, up, down, n_experts);
    int64_t d = x->ne[0], n = tensor_rows(x), k = ids->ne[0], f = host_moe_ffn_size(gate, n_experts);
    // scratch: [n*k] routed (token, slot) pairs, X [n*k, d], G and U [n*k, f], Y [n*k, d]
    size_t nk = (size_t)(n * k);
    float *s = cpu_shared_scratch(c, nk + nk * (size_t)(2 * d + 2 * f));
    int32_t *pair = (int32_t *)s;
    float *xs = s + nk, *gs = xs + nk * (size_t)d, *us = gs + nk * (size_t)f, *ys = us + nk * (size_t)f;
    for (int64_t r = 0; r < n; r++) memset(host_row(out, r), 0, (size_t)d * sizeof(float));
    for (int e = 0; e < n_experts; e++) {
        if (!gate[e].buf) continue;   // absent: another rank's expert
        int64_t ne_ = 0;
        for (int64_t r = 0; r < n; r++) {
            const int32_t *id = host_row(ids, r);
            for (int64_t j = 0; j < k; j++) {
                if (id[j] != e) continue;
                pair[ne_] = (int32_t)(r * k + j);
                memcpy(xs + ne_ * d, host_row(x, r), (size_t)d * sizeof(float));
                ne_++;
            }
        }
        if (!ne_) continue;
        cpu_gemm(c, gs, f, xs, d, ne_, &gate[e], NULL);
        cpu_gemm(c, us, f, xs, d, ne_, &up[e], NULL);
        for (int64_t i = 0; i < ne_; i++) cpu_glu_row(c, gs + i * f, gs + i * f, us + i * f, f, act);
        cpu_gemm(c, ys, d, gs, f, ne_, &down[e], NULL);
        for (int64_t i = 0; i < ne_; i++) {
            int64_t r = pair[i] / k, j = pair[i] % k;
            float wt = ((const float *)host_row(weights, r))[j];
            float *o = host_row(out, r);
            const float *y = ys + i * d;
            for (int64_t q = 0; q < d; q++) o[q] += wt * y[q];
        }
    }
}
