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
 * bf16 and f16 weights where the cpu has bf16 dot tiles (c->kb, kbf16.h: more than KBF16_NARROW_M
 * rows, not cpu-precise): x is rounded to bf16 once per call, and both loops run the kbf16 tiles
 * (one struct tiling drives either family), which again give every c[i, j] one operation
 * sequence. bf16 panels are rows copied as they are; an f16 weight is split exactly into bf16
 * hi + lo, in registers by the decode GEMV and once per panel row by the GEMM (the panel then
 * holds 4 bytes a weight, as an f32 panel does; the model stays f16 in memory).
 *
 * MLX-quantized weights (DTYPE_QMLX): affine 4- and 8-bit ones take the integer kernels (qint.h)
 * at every n (not in cpu-precise, whose x stays f32): x is prepared once per call (int8 levels and group scales, per distinct width and
 * group size), then c->qint streams the packed rows; one formula at any n, so decode and prefill
 * agree bit for bit. The other modes: at decode (n <= GEMV_MAX_ROWS) the fused GEMV (c->qgemv)
 * dequantizes in registers; otherwise (and for widths it lacks) each panel of rows is
 * dequantized (c->qdeq, exact) into the L2 panel, and the results equal those of the same
 * weights dequantized to f32, bit for bit (qdeq.h). Only the packed bytes stream from memory.
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
#define KC16_MAX      1024           // the same for bf16 x and w: a 6-row x tile and a 4-row w tile
#define KC16          512            //   of 1,024 bf16 each take 20 KiB of L1
_Static_assert(KC16 % KBF16_CHUNK == 0, "bf16 k blocks must be whole chunks of the tiles");
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
    bool                 dot16;     // bf16 or f16 weight multiplied by x16 (kbf16.h)
    const struct tensor *bias;
    const uint8_t       *xq;        // x prepared for the integer kernel (qint.h), or NULL
    size_t               ldxq;      // bytes between prepared rows
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
    const uint16_t        *x16;          // x rounded to bf16, for the dot16 matrices
    int64_t                ldx16;
    int64_t                n, k;
    int64_t                panel_rows;   // GEMM: weight rows converted at once (f32 panel)
    int64_t                panel_rows16; // the same for bf16 panels
    int64_t                panel_rows_hilo; // and for f16 rows split into bf16 hi/lo
    bool                   gemv;
    int                    n_mats;
    struct gemm_mat        mats[GEMM_MAX_MATS];
};

/* One tile family seen by the blocked loop: the f32 tiles (kern.h) or the bf16 dot tiles (kbf16.h). */
struct tiling {
    int     mr, nr, lanes;
    int64_t kc_max, kc;    // k up to kc_max in one pass; longer k in blocks of kc
    /* c = x rows [i0, i0 + mr_) . w rows (w, ldw bytes apart), over the k chunks [k0, k1) (kern.h) */
    void (*tile)(const struct gemm_job *g, int mr_, int nr_, int64_t i0, int64_t k0, int64_t k1, const char *w,
                 size_t ldw, float *c, int64_t ldc, float *part);
};

static void tile_f32(const struct gemm_job *g, int mr, int nr, int64_t i0, int64_t k0, int64_t k1, const char *w,
                     size_t ldw, float *c, int64_t ldc, float *part)
{
    if (k0 == 0 && k1 == g->k) g->kf->tile(mr, nr, DTYPE_F32, g->k, g->x + i0 * g->ldx, g->ldx, w, ldw, c, ldc);
    else g->kf->tile_k(mr, nr, DTYPE_F32, g->k, k0, k1, g->x + i0 * g->ldx, g->ldx, w, ldw, c, ldc, part);
}

static void tile_bf16(const struct gemm_job *g, int mr, int nr, int64_t i0, int64_t k0, int64_t k1, const char *w,
                      size_t ldw, float *c, int64_t ldc, float *part)
{
    g->c->kb->tile(mr, nr, g->k, k0, k1, g->x16 + i0 * g->ldx16, g->ldx16, (const uint16_t *)w,
                   (int64_t)(ldw / sizeof(uint16_t)), c, ldc, part);
}

/* f16 rows as stored, split into hi/lo in registers (the GEMV) */
static void tile_f16(const struct gemm_job *g, int mr, int nr, int64_t i0, int64_t k0, int64_t k1, const char *w,
                     size_t ldw, float *c, int64_t ldc, float *part)
{
    g->c->kb->tile_f16(mr, nr, g->k, k0, k1, g->x16 + i0 * g->ldx16, g->ldx16, (const uint16_t *)w,
                       (int64_t)(ldw / sizeof(uint16_t)), c, ldc, part);
}

/* f16 rows split beforehand by split_f16 (the GEMM's panels) */
static void tile_hilo(const struct gemm_job *g, int mr, int nr, int64_t i0, int64_t k0, int64_t k1, const char *w,
                      size_t ldw, float *c, int64_t ldc, float *part)
{
    g->c->kb->tile_hilo(mr, nr, g->k, k0, k1, g->x16 + i0 * g->ldx16, g->ldx16, (const uint16_t *)w,
                        (int64_t)(ldw / sizeof(uint16_t)), c, ldc, part);
}

static struct tiling tiling_f32(const struct cpu_kern *kf)
{
    return (struct tiling){ kf->mr, kf->nr, kf->lanes, KC_MAX, KC, tile_f32 };
}

/* The dot tiles for a weight of dtype wdt (bf16 or f16) against n rows of x; split: its rows were
 * split by split_f16. */
static struct tiling tiling_dot(const struct cpu_bf16_kern *kb, enum dtype wdt, bool split, int64_t n)
{
    if (wdt == DTYPE_BF16) return (struct tiling){ kb->mr, kb->nr, kb->lanes, KC16_MAX, KC16, tile_bf16 };
    if (split) return (struct tiling){ kb->mr, kb->nr, kb->lanes, KC16_MAX, KC16, tile_hilo };
    if (n <= kb->mr_f16) return (struct tiling){ kb->mr_f16, kb->nr_f16, kb->lanes, KC16_MAX, KC16, tile_f16 };
    return (struct tiling){ kb->mr_f16_tall, kb->nr_f16_tall, kb->lanes, KC16_MAX, KC16, tile_f16 };
}

/* Floats of per-thread scratch the k blocks of one panel park their accumulators in. */
static size_t part_floats(const struct gemm_job *g, const struct tiling *t, int64_t panel_rows)
{
    if (g->k <= t->kc_max) return 0;
    return (size_t)t->mr * XBLOCK_TILES * (size_t)((panel_rows + t->nr - 1) / t->nr * t->nr) * (size_t)t->lanes;
}

/* GEMM over weight rows [j0, j1) held at w (row stride ldw bytes, in the tiling's element type).
 * Up to kc_max the whole k of an x tile and of a weight tile stay in L1; beyond, k is cut in kc
 * blocks, x in blocks of 16 tiles, and the tiles' accumulators wait in part between k blocks
 * (exact). */
static void gemm_rows(const struct gemm_job *g, const struct tiling *t, const struct gemm_mat *mt, int64_t j0,
                      int64_t j1, const char *w, size_t ldw, float *part)
{
    if (g->k <= t->kc_max) {
        for (int64_t i0 = 0; i0 < g->n; i0 += t->mr) {
            int mr = g->n - i0 < t->mr ? (int)(g->n - i0) : t->mr;
            for (int64_t j = j0; j < j1; j += t->nr) {
                int nr = j1 - j < t->nr ? (int)(j1 - j) : t->nr;
                t->tile(g, mr, nr, i0, 0, g->k, w + (size_t)(j - j0) * ldw, ldw, mt->out + i0 * mt->ldo + j, mt->ldo,
                        NULL);
            }
        }
        return;
    }
    int64_t mb = (int64_t)t->mr * XBLOCK_TILES, tiles_j = (j1 - j0 + t->nr - 1) / t->nr;
    size_t slot = (size_t)t->mr * t->nr * t->lanes;
    for (int64_t ib0 = 0; ib0 < g->n; ib0 += mb) {
        int64_t ib1 = ib0 + mb < g->n ? ib0 + mb : g->n;
        for (int64_t kb0 = 0; kb0 < g->k; kb0 += t->kc) {
            int64_t kb1 = kb0 + t->kc < g->k ? kb0 + t->kc : g->k;
            for (int64_t i0 = ib0; i0 < ib1; i0 += t->mr) {
                int mr = ib1 - i0 < t->mr ? (int)(ib1 - i0) : t->mr;
                for (int64_t j = j0; j < j1; j += t->nr) {
                    int nr = j1 - j < t->nr ? (int)(j1 - j) : t->nr;
                    float *ps = part + ((size_t)((i0 - ib0) / t->mr) * (size_t)tiles_j + (size_t)((j - j0) / t->nr)) * slot;
                    t->tile(g, mr, nr, i0, kb0, kb1, w + (size_t)(j - j0) * ldw, ldw, mt->out + i0 * mt->ldo + j,
                            mt->ldo, ps);
                }
            }
        }
    }
}

/* Decode: weight rows [j0, j1) streamed in their own dtype, nr at a time, against all rows of x. */
static void gemv_rows(const struct gemm_job *g, const struct gemm_mat *mt, int64_t j0, int64_t j1)
{
    struct tiling t = mt->dot16 ? tiling_dot(g->c->kb, mt->wdt, false, g->n) : tiling_f32(g->kf);
    for (int64_t j = j0; j < j1; j += t.nr) {
        int nr = j1 - j < t.nr ? (int)(j1 - j) : t.nr;
        const char *w = mt->w + (size_t)j * mt->ldw;
        for (int64_t i0 = 0; i0 < g->n; i0 += t.mr) {
            int mr = g->n - i0 < t.mr ? (int)(g->n - i0) : t.mr;
            float *c = mt->out + i0 * mt->ldo + j;
            if (mt->dot16) t.tile(g, mr, nr, i0, 0, g->k, w, mt->ldw, c, mt->ldo, NULL);
            else g->kf->tile(mr, nr, mt->wdt, g->k, g->x + i0 * g->ldx, g->ldx, w, mt->ldw, c, mt->ldo);
        }
    }
}

/* Row stride (elements) for a packed copy of rows of k elements of esize bytes: whole chunks,
 * and never a multiple of 2 KiB (rows read together would alias in L1). */
static int64_t padded_stride(int64_t k, int64_t chunk, int esize)
{
    int64_t ld = (k + chunk - 1) / chunk * chunk;
    if ((ld * esize) % 2048 == 0) ld += 64 / esize;
    return ld;
}

/* Prefill: each panel of weight rows is copied once into per-thread scratch (for the dot16
 * tiles bf16 rows as they are, f16 rows split into hi/lo; anything else converted or dequantized
 * to f32), then multiplied with every row of x. */
static void gemm_panels(const struct gemm_job *g, const struct gemm_mat *mt, int64_t j0, int64_t j1, int thread)
{
    bool b16 = mt->dot16, split = b16 && mt->wdt == DTYPE_F16;
    struct tiling t = b16 ? tiling_dot(g->c->kb, mt->wdt, split, g->n) : tiling_f32(g->kf);
    int esize = b16 ? 2 : 4;
    int64_t rows = split ? g->panel_rows_hilo : b16 ? g->panel_rows16 : g->panel_rows;
    int64_t ldp = split ? padded_stride(KBF16_SPLIT_ELEMS(g->k), 2 * KBF16_CHUNK, esize) : padded_stride(g->k, 16, esize);
    size_t panel_floats = ((size_t)(rows * ldp) * (size_t)esize + sizeof(float) - 1) / sizeof(float);
    float *scratch = cpu_thread_scratch(g->c, thread, panel_floats + part_floats(g, &t, rows));
    char *panel = (char *)scratch;
    float *part = scratch + panel_floats;
    for (int64_t p0 = j0; p0 < j1; p0 += rows) {
        int64_t p1 = p0 + rows < j1 ? p0 + rows : j1;
        for (int64_t j = p0; j < p1; j++) {
            char *row = panel + (size_t)((j - p0) * ldp) * (size_t)esize;
            if (split) g->c->kb->split_f16((const uint16_t *)(mt->w + (size_t)j * mt->ldw), (uint16_t *)row, g->k);
            else if (b16) memcpy(row, mt->w + (size_t)j * mt->ldw, (size_t)g->k * sizeof(uint16_t));
            else if (mt->wdt == DTYPE_QMLX) g->c->qdeq(mt->wt, j, (float *)row);
            else g->kf->to_f32(mt->wdt, mt->w + (size_t)j * mt->ldw, (float *)row, g->k);
        }
        gemm_rows(g, &t, mt, p0, p1, panel, (size_t)ldp * (size_t)esize, part);
    }
}

/* Weight rows per panel: what fits, in whole tiles of nr rows, at least one tile. */
static int64_t panel_rows(int64_t fit, int nr)
{
    fit = fit / nr * nr;
    return fit < nr ? nr : fit;
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
    if (mt->xq) {
        g->c->qint(mt->wt, j0, j1, mt->xq, mt->ldxq, g->n, mt->out, mt->ldo);
        done = true;
    } else if (g->gemv && mt->wdt == DTYPE_QMLX)
        done = g->c->qgemv(mt->wt, j0, j1, g->x, g->ldx, (int)g->n, mt->out, mt->ldo);
    else if (g->gemv) {
        gemv_rows(g, mt, j0, j1);
        done = true;
    }
    if (!done) gemm_panels(g, mt, j0, j1, thread);
    if (mt->bias) {
        const void *b = host_row(mt->bias, 0);
        for (int64_t i = 0; i < g->n; i++)
            for (int64_t j = j0; j < j1; j++) mt->out[i * mt->ldo + j] += host_elem_f32(mt->bias->dtype, b, j);
    }
}

/* x prepared for the integer kernels: rows [r0, r1) of each layout (qint.h). */
struct xq_job {
    cpu_qint_quantize_fn quantize;
    const float *x;
    int64_t      ldx, k, n, rows_per_task;
    int          n_layouts;
    int          bits[GEMM_MAX_MATS], gs[GEMM_MAX_MATS];
    uint8_t     *dst[GEMM_MAX_MATS];
    size_t       ld[GEMM_MAX_MATS];
};

static void xq_task(void *arg, int task, int thread)
{
    (void)thread;
    const struct xq_job *q = arg;
    int64_t r0 = task * q->rows_per_task, r1 = r0 + q->rows_per_task < q->n ? r0 + q->rows_per_task : q->n;
    for (int l = 0; l < q->n_layouts; l++)
        for (int64_t i = r0; i < r1; i++)
            q->quantize(q->x + i * q->ldx, q->k, q->bits[l], q->gs[l], q->dst[l] + (size_t)i * q->ld[l]);
}

/* Prepares x once per distinct (bits, group size) of the integer-path matrices and points their
 * gemm_mat at it; rows split across threads when there are enough of them. */
static void prepare_xq(struct cpu *c, struct gemm_job *g, const struct tensor *const *ws)
{
    struct xq_job q = { .quantize = c->qint_x, .x = g->x, .ldx = g->ldx, .k = g->k, .n = g->n };
    int layout[GEMM_MAX_MATS];
    size_t bytes = 0;
    for (int i = 0; i < g->n_mats; i++) {
        layout[i] = -1;
        if (!c->qint || !cpu_qint_takes(ws[i])) continue;
        int bits = ws[i]->q->bits, gs = ws[i]->q->group_size, l = 0;
        while (l < q.n_layouts && (q.bits[l] != bits || q.gs[l] != gs)) l++;
        if (l == q.n_layouts) {
            q.bits[l] = bits;
            q.gs[l] = gs;
            q.ld[l] = cpu_qint_x_bytes(g->k, bits, gs);
            bytes += q.ld[l] * (size_t)g->n;
            q.n_layouts++;
        }
        layout[i] = l;
    }
    if (!q.n_layouts) return;
    uint8_t *p = (uint8_t *)cpu_xq_scratch(c, bytes / sizeof(float));
    for (int l = 0; l < q.n_layouts; l++) {
        q.dst[l] = p;
        p += q.ld[l] * (size_t)g->n;
    }
    for (int i = 0; i < g->n_mats; i++)
        if (layout[i] >= 0) {
            g->mats[i].xq = q.dst[layout[i]];
            g->mats[i].ldxq = q.ld[layout[i]];
        }
    int tasks = g->n >= 32 ? c->n_threads * 2 : 1;
    q.rows_per_task = (g->n + tasks - 1) / tasks;
    threadpool_run(c->tp, (int)((g->n + q.rows_per_task - 1) / q.rows_per_task), xq_task, &q);
}

/* Whether w multiplies x rounded to bf16 (kbf16.h: bf16 and f16 weights of more than
 * KBF16_NARROW_M rows). */
static bool multiplies_bf16(const struct cpu *c, const struct tensor *w)
{
    return c->kb && (w->dtype == DTYPE_BF16 || w->dtype == DTYPE_F16) && tensor_rows(w) > KBF16_NARROW_M;
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
    bool gemv = n <= GEMV_MAX_ROWS, dot16[GEMM_MAX_MATS], any16 = false, any32 = false;
    for (int i = 0; i < n_mats; i++) {
        dot16[i] = multiplies_bf16(c, ws[i]);
        any16 |= dot16[i];
        any32 |= !dot16[i];
    }
    if (!gemv && any32 && ((ldx * (int64_t)sizeof(float)) % 2048 == 0 || ldx % 16 || (uintptr_t)x % 64)) {
        // x rows 2 or 4 KiB apart alias in L1 (the tile reads mr of them at the same offset),
        // and rows that are not 64-byte aligned split loads: copy x once, aligned and padded
        int64_t ldp = padded_stride(k, 16, sizeof(float));
        float *xp = cpu_xpack_scratch(c, (size_t)(n * ldp));
        for (int64_t i = 0; i < n; i++) memcpy(xp + i * ldp, x + i * ldx, (size_t)k * sizeof(float));
        x = xp;
        ldx = ldp;
    }
    struct gemm_job g = { .c = c, .kf = c->kf, .x = x, .ldx = ldx, .n = n, .k = k, .gemv = gemv, .n_mats = n_mats };
    if (any16) {   // x rounded to bf16 once, aligned and padded like the f32 copy
        g.ldx16 = padded_stride(k, 32, sizeof(uint16_t));
        uint16_t *x16 = (uint16_t *)cpu_xpack16_scratch(c, (size_t)(n * g.ldx16 + 1) / 2);
        for (int64_t i = 0; i < n; i++) c->kb->to_bf16(x + i * ldx, x16 + i * g.ldx16, k);
        g.x16 = x16;
    }
    g.panel_rows = panel_rows(PANEL_BYTES / (k * (int64_t)sizeof(float)), c->kf->nr);
    if (c->kb) {
        g.panel_rows16 = panel_rows(PANEL_BYTES / (k * (int64_t)sizeof(uint16_t)), c->kb->nr);
        g.panel_rows_hilo = panel_rows(PANEL_BYTES / (KBF16_SPLIT_ELEMS(k) * (int64_t)sizeof(uint16_t)), c->kb->nr);
    }
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
        mt->dot16 = dot16[i];
        mt->bias = biases ? biases[i] : NULL;
        mt->m = tensor_rows(w);
        int64_t nt = (target * mt->m + m_total - 1) / m_total;
        int64_t rpt = (mt->m + nt - 1) / nt;
        mt->rows_per_task = (rpt + 15) / 16 * 16;
        mt->task0 = task;
        task += (int)((mt->m + mt->rows_per_task - 1) / mt->rows_per_task);
    }
    prepare_xq(c, &g, ws);
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
