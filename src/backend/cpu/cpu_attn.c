/* cpu_attn: rope, kv_write and paged attention of the cpu backend.
 *
 * Attention: the q heads that share a kv head (GQA) are processed together, so each K and V row
 * is read once, with an online (streaming) softmax: running max m, running sum l and an f32
 * accumulator per q head, rescaled when the max grows. A token's keys are cut into fixed splits
 * whose partials are merged (flash-decoding), so decode spreads one token's context over the
 * threads (see "attention" below). A token's result depends only on its own q, its sequence's
 * cache and the fixed cuts from its window start: never on the rest of the batch or the thread
 * count. Scratch is O(heads * (head_dim + ATTN_CHUNK)) per task, plus the partials of a decode
 * step's splits, whatever the context length.
 *
 * rope computes cos/sin once per token (f32 angle = pos * inv_freq[i], as HF does) and rotates
 * every head with them; tokens are split across threads.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "backend/cpu/cpu.h"
#include "backend/host.h"
#include "base/log.h"

#define ROPE_MAX_HALF 1024

/* ==== rope ==== */

struct rope_job {
    struct tensor            *x;
    int                       n_heads;
    const float              *freq;
    const struct rope_params *rp;
    const struct batch_meta  *meta;
    int                       toks_per_task;
};

static void rope_task(void *arg, int task, int thread)
{
    (void)thread;
    const struct rope_job *j = arg;
    const struct rope_params *rp = j->rp;
    int hd = rp->head_dim, half = rp->rot_dim / 2;
    float cs[ROPE_MAX_HALF], sn[ROPE_MAX_HALF];
    int t0 = task * j->toks_per_task;
    int t1 = t0 + j->toks_per_task < j->meta->n_tok ? t0 + j->toks_per_task : j->meta->n_tok;
    for (int t = t0; t < t1; t++) {
        float pos = (float)j->meta->tok_pos[t];
        for (int i = 0; i < half; i++) {
            float angle = pos * j->freq[i];
            cs[i] = (float)cos((double)angle) * rp->mscale;
            sn[i] = (float)sin((double)angle) * rp->mscale;
        }
        float *row = host_row(j->x, t);
        for (int h = 0; h < j->n_heads; h++) {
            float *v = row + (size_t)h * hd;
            if (rp->interleaved) {
                for (int i = 0; i < half; i++) {
                    float x0 = v[2 * i], x1 = v[2 * i + 1];
                    v[2 * i] = x0 * cs[i] - x1 * sn[i];
                    v[2 * i + 1] = x1 * cs[i] + x0 * sn[i];
                }
            } else {
                for (int i = 0; i < half; i++) {
                    float x0 = v[i], x1 = v[i + half];
                    v[i] = x0 * cs[i] - x1 * sn[i];
                    v[i + half] = x1 * cs[i] + x0 * sn[i];
                }
            }
        }
    }
}

void cpu_rope(struct backend *be, struct tensor *x, int n_heads, const struct tensor *inv_freq,
              const struct rope_params *rp, const struct batch_meta *meta)
{
    struct cpu *c = be->impl;
    host_check_rope(x, n_heads, inv_freq, rp);
    CHECK(rp->rot_dim / 2 <= ROPE_MAX_HALF, "cpu rope: rot_dim %d over %d", rp->rot_dim, 2 * ROPE_MAX_HALF);
    int n = meta->n_tok;
    if (n <= 0) return;
    int n_tasks = n < c->n_threads * 4 ? n : c->n_threads * 4;
    if ((int64_t)n * n_heads * rp->rot_dim < 16384) n_tasks = 1;
    struct rope_job j = { x, n_heads, host_row(inv_freq, 0), rp, meta, (n + n_tasks - 1) / n_tasks };
    threadpool_run(c->tp, (n + j.toks_per_task - 1) / j.toks_per_task, rope_task, &j);
}

/* ==== kv_write ==== */

void cpu_kv_write(struct backend *be, struct kv_layer *kv, const struct tensor *k,
                  const struct tensor *v, const struct batch_meta *meta)
{
    (void)be;
    host_check_kv_write(kv, k, v, meta);
    int64_t row = kv->k.ne[0];
    enum dtype dt = kv->k.dtype;
    for (int t = 0; t < meta->n_tok; t++) {
        int64_t slot = meta->tok_slot[t];
        const float *kr = host_row(k, t), *vr = host_row(v, t);
        void *kd = host_row(&kv->k, slot), *vd = host_row(&kv->v, slot);
        if (dt == DTYPE_F32) {
            memcpy(kd, kr, (size_t)row * 4);
            memcpy(vd, vr, (size_t)row * 4);
        } else {
            dtype_from_f32(dt, kr, kd, (size_t)row);
            dtype_from_f32(dt, vr, vd, (size_t)row);
        }
    }
}

/* ==== attention ==== */

/* A token's keys [j0, p] are cut into at most ATTN_SPLITS splits of equal length (at least
 * ATTN_SPLIT_MIN keys; the last may be shorter) from j0 (the window start). Each
 * split runs its own online softmax in chunks of ATTN_CHUNK keys, giving a partial (unnormalised
 * accumulator, max m, sum l per q head); the partials are then merged in split order. Both cuts
 * depend on the position alone, so the arithmetic of a (token, q head) is fixed; only who runs
 * it varies:
 * - few tokens (decode): one task per (token, split) with all kv heads, partials into shared
 *   scratch, merged by the calling thread: both threads get equal work whatever the number of kv
 *   heads, and each task reads whole cache rows (all heads of a slot are adjacent) in key order.
 * - many tokens (prefill): one task per (token, group of kv heads) that runs its splits in turn
 *   and merges as it goes.
 * Within a chunk a decode task walks the keys ATTN_STEP at a time, all its heads over those keys
 * before the next ones, so a few whole rows are in use at a time (8 keys: 32 KiB of f32 K); a
 * prefill task, whose rows are in cache, takes the whole chunk per call (fewer passes of pv's
 * accumulators through memory: 8-key calls made attn_bench 8x512 1.2x slower). No
 * software prefetch: measured (attn_bench decode650_0.6b, f32 and f16, 8 to 32 keys ahead, to
 * L1 or L2, in bursts or a head at a time) it changed nothing here. Cutting qk and pv at these
 * keys changes no bits: each score is its own dot product and pv's accumulators pass through
 * acc exactly. */
#define ATTN_CHUNK     64   // keys per online-softmax step
#define ATTN_SPLITS    8    // splits per token at most (decode: tasks per token)
#define ATTN_SPLIT_MIN 64   // keys per split at least
#define ATTN_STEP      8    // keys per qk / pv call (1 to 16 measured: 8 was best)

struct attn_job {
    struct cpu               *c;
    struct tensor            *out;
    const struct tensor      *q;
    const struct kv_layer    *kv;
    const struct attn_params *ap;
    const struct batch_meta  *meta;
    int                       heads_per_task;   // group path: kv heads handled by one task
    int                       tasks_per_tok;    // group path: tasks per token; split path: splits per token (max)
    float                    *parts;            // split path: [n_tok][tasks_per_tok] partials of attn_part_floats
};

/* Floats of one partial of n_q q heads: acc [n_q][hd], then m [n_q], then l [n_q]. */
static size_t attn_part_floats(int n_q, int hd) { return (size_t)n_q * (size_t)(hd + 2); }

/* Keys per split of a token that sees n_keys keys (a function of the position only). */
static int attn_split_keys(int n_keys)
{
    int n = (n_keys + ATTN_SPLITS - 1) / ATTN_SPLITS;
    return n > ATTN_SPLIT_MIN ? n : ATTN_SPLIT_MIN;
}

/* First key a token at position p sees (its window start). */
static int attn_first_key(const struct attn_params *ap, int p)
{
    return ap->window > 0 && p - ap->window + 1 > 0 ? p - ap->window + 1 : 0;
}

/* The cache rows of one token's keys, for the kv heads [g0, g1). */
struct attn_rows {
    const int32_t *blocks;       // the sequence's block table
    int            bs;           // block size
    const char    *kbase, *vbase;   // slot 0's row at head g0
    size_t         kstride, vstride;
    size_t         head_bytes;   // bytes of one head of a row
};

static int64_t attn_slot(const struct attn_rows *rw, int j) { return (int64_t)rw->blocks[j / rw->bs] * rw->bs + j % rw->bs; }

/* The partial of token t's q heads of kv heads [g0, g1) over keys [k_lo, k_hi): acc, m, l as in
 * attn_part_floats (n_q = (g1 - g0) * n_rep), online softmax in chunks of ATTN_CHUNK from k_lo;
 * qk and pv run `step` keys at a time (no effect on the bits). scratch: attn_range_scratch floats. */
static size_t attn_range_scratch(int n_g, int n_rep)
{
    return (size_t)n_g * n_rep * ATTN_CHUNK + 2 * (size_t)n_g * ATTN_CHUNK * (sizeof(void *) / sizeof(float)) + 2;
}

/* x[0..n) *= f, 16 at a time where it can (the compiler vectorizes a fixed count; same bits). */
static void attn_scale(float *x, int n, float f)
{
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++) x[i + k] *= f;
    for (; i < n; i++) x[i] *= f;
}

static void attn_range(const struct attn_job *a, const struct attn_rows *rw, const float *q, int n_g, int k_lo,
                       int k_hi, int step, float *acc, float *mx, float *l, float *scratch)
{
    const struct attn_params *ap = a->ap;
    const struct cpu_kern *kf = a->c->kf;
    int hd = ap->head_dim, n_rep = ap->n_heads / ap->n_kv_heads, n_q = n_g * n_rep;
    enum dtype dt = a->kv->k.dtype;
    float *sc = scratch;   // [n_q][ATTN_CHUNK]
    const void **krows = (const void **)(((uintptr_t)(sc + (size_t)n_q * ATTN_CHUNK) + 7) & ~(uintptr_t)7);   // [n_g][ATTN_CHUNK]
    const void **vrows = krows + (size_t)n_g * ATTN_CHUNK;
    memset(acc, 0, (size_t)n_q * hd * sizeof(float));
    for (int r = 0; r < n_q; r++) {
        mx[r] = -INFINITY;
        l[r] = 0;
    }
    for (int c0 = k_lo; c0 < k_hi; c0 += ATTN_CHUNK) {
        int nk = k_hi - c0 < ATTN_CHUNK ? k_hi - c0 : ATTN_CHUNK;
        for (int jj = 0; jj < nk; jj++) {
            int64_t slot = attn_slot(rw, c0 + jj);
            for (int g = 0; g < n_g; g++) {
                krows[g * ATTN_CHUNK + jj] = rw->kbase + (size_t)slot * rw->kstride + (size_t)g * rw->head_bytes;
                vrows[g * ATTN_CHUNK + jj] = rw->vbase + (size_t)slot * rw->vstride + (size_t)g * rw->head_bytes;
            }
        }
        for (int s0 = 0; s0 < nk; s0 += step) {
            int n = nk - s0 < step ? nk - s0 : step;
            for (int g = 0; g < n_g; g++)
                kf->qk(n_rep, q + (size_t)g * n_rep * hd, hd, krows + (size_t)g * ATTN_CHUNK + s0, n, dt,
                       sc + (size_t)g * n_rep * ATTN_CHUNK + s0, ATTN_CHUNK);
        }
        for (int r = 0; r < n_q; r++) {
            float corr = kf->softmax_step(sc + (size_t)r * ATTN_CHUNK, nk, ap->scale, ap->softcap, &mx[r], &l[r]);
            if (corr != 1.0f && c0 != k_lo) attn_scale(acc + (size_t)r * hd, hd, corr);   // the first chunk's acc is 0
        }
        for (int s0 = 0; s0 < nk; s0 += step) {
            int n = nk - s0 < step ? nk - s0 : step;
            for (int g = 0; g < n_g; g++)
                kf->pv(n_rep, acc + (size_t)g * n_rep * hd, hd, sc + (size_t)g * n_rep * ATTN_CHUNK + s0, ATTN_CHUNK,
                       vrows + (size_t)g * ATTN_CHUNK + s0, n, dt);
        }
    }
}

/* Merges the partial (acc, m, l) of the next split into the running (o, mo, lo) of n_q q heads:
 * both rescaled to the larger max. The first split is copied (start with mo = -inf). */
static void attn_merge(const struct cpu_kern *kf, int n_q, int hd, float *o, float *mo, float *lo, const float *acc,
                       const float *m, const float *l)
{
    for (int r = 0; r < n_q; r++) {
        float *orow = o + (size_t)r * hd;
        const float *arow = acc + (size_t)r * hd;
        if (mo[r] == -INFINITY) {
            memcpy(orow, arow, (size_t)hd * sizeof(float));
            mo[r] = m[r];
            lo[r] = l[r];
            continue;
        }
        float mn = m[r] > mo[r] ? m[r] : mo[r];
        float fo = expf(mo[r] - mn), fa = expf(m[r] - mn);
        kf->axpby(orow, fo, arow, fa, hd);
        lo[r] = lo[r] * fo + l[r] * fa;
        mo[r] = mn;
    }
}

/* out row of n_q heads = o / l. */
static void attn_finish(int n_q, int hd, float *out, const float *o, const float *lo)
{
    for (int r = 0; r < n_q; r++) {
        float inv = 1.0f / lo[r];
        for (int i = 0; i < hd; i++) out[(size_t)r * hd + i] = o[(size_t)r * hd + i] * inv;
    }
}

/* The rows of token t's sequence from kv head g0 on. */
static struct attn_rows attn_rows_of(const struct attn_job *a, int t, int g0)
{
    const struct batch_meta *meta = a->meta;
    int s = meta->tok_seq[t], p = meta->tok_pos[t];
    int n_blocks = meta->seq_block0[s + 1] - meta->seq_block0[s];
    CHECK(p / meta->block_size < n_blocks, "attention: position %d past seq %d's %d blocks", p, s, n_blocks);
    size_t head_bytes = (size_t)a->ap->head_dim * dtype_size(a->kv->k.dtype);
    return (struct attn_rows){
        .blocks = meta->block_ids + meta->seq_block0[s],
        .bs = meta->block_size,
        .kbase = (const char *)host_row(&a->kv->k, 0) + (size_t)g0 * head_bytes,
        .vbase = (const char *)host_row(&a->kv->v, 0) + (size_t)g0 * head_bytes,
        .kstride = a->kv->k.nb[1],
        .vstride = a->kv->v.nb[1],
        .head_bytes = head_bytes,
    };
}

/* Group path: token t, kv heads [g0, g1), every split in turn. */
static void attn_group_task(void *arg, int task, int thread)
{
    const struct attn_job *a = arg;
    const struct attn_params *ap = a->ap;
    int hd = ap->head_dim, n_rep = ap->n_heads / ap->n_kv_heads;
    int t = task / a->tasks_per_tok;
    int g0 = task % a->tasks_per_tok * a->heads_per_task;
    int g1 = g0 + a->heads_per_task < ap->n_kv_heads ? g0 + a->heads_per_task : ap->n_kv_heads;
    int n_g = g1 - g0, n_q = n_g * n_rep, p = a->meta->tok_pos[t], j0 = attn_first_key(ap, p);
    struct attn_rows rw = attn_rows_of(a, t, g0);

    size_t part = attn_part_floats(n_q, hd);
    float *o = cpu_thread_scratch(a->c, thread, 2 * part + attn_range_scratch(n_g, n_rep));
    float *mo = o + (size_t)n_q * hd, *lo = mo + n_q;
    float *acc = o + part, *m = acc + (size_t)n_q * hd, *l = m + n_q;
    for (int r = 0; r < n_q; r++) mo[r] = -INFINITY;
    const float *q = (const float *)host_row(a->q, t) + (size_t)g0 * n_rep * hd;
    int split = attn_split_keys(p + 1 - j0);
    for (int k0 = j0; k0 <= p; k0 += split) {
        int k1 = p + 1 - k0 < split ? p + 1 : k0 + split;
        attn_range(a, &rw, q, n_g, k0, k1, ATTN_CHUNK, acc, m, l, o + 2 * part);
        attn_merge(a->c->kf, n_q, hd, o, mo, lo, acc, m, l);
    }
    attn_finish(n_q, hd, (float *)host_row(a->out, t) + (size_t)g0 * n_rep * hd, o, lo);
}

/* Split path: token t, split i, all kv heads; the partial goes to a->parts. */
static void attn_split_task(void *arg, int task, int thread)
{
    const struct attn_job *a = arg;
    const struct attn_params *ap = a->ap;
    int hd = ap->head_dim, n_rep = ap->n_heads / ap->n_kv_heads;
    int t = task / a->tasks_per_tok, i = task % a->tasks_per_tok;
    int p = a->meta->tok_pos[t], j0 = attn_first_key(ap, p), split = attn_split_keys(p + 1 - j0);
    int k0 = j0 + i * split;
    if (k0 > p) return;   // this token has fewer splits
    int k1 = p + 1 - k0 < split ? p + 1 : k0 + split;
    struct attn_rows rw = attn_rows_of(a, t, 0);
    float *part = a->parts + (size_t)task * attn_part_floats(ap->n_heads, hd);
    float *scratch = cpu_thread_scratch(a->c, thread, attn_range_scratch(ap->n_kv_heads, n_rep));
    attn_range(a, &rw, host_row(a->q, t), ap->n_kv_heads, k0, k1, ATTN_STEP, part, part + (size_t)ap->n_heads * hd,
               part + (size_t)ap->n_heads * (hd + 1), scratch);
}

void cpu_attention(struct backend *be, struct tensor *out, const struct tensor *q,
                   const struct kv_layer *kv, const struct attn_params *ap, const struct batch_meta *meta)
{
    struct cpu *c = be->impl;
    host_check_attention(out, q, kv, ap);
    int n_tok = meta->n_tok, hd = ap->head_dim, n_q = ap->n_heads;
    if (n_tok <= 0) return;
    struct attn_job a = { c, out, q, kv, ap, meta, ap->n_kv_heads, 1, NULL };
    if (n_tok < 4 * c->n_threads) {
        // split path: as many tasks as splits (dynamic hand-out evens out a thread that starts late)
        int n_split = 1;
        for (int t = 0; t < n_tok; t++) {
            int p = meta->tok_pos[t], keys = p + 1 - attn_first_key(ap, p), n = (keys - 1) / attn_split_keys(keys) + 1;
            if (n > n_split) n_split = n;
        }
        size_t part = attn_part_floats(n_q, hd);
        a.tasks_per_tok = n_split;
        a.parts = cpu_shared_scratch(c, (size_t)n_tok * n_split * part + 2 * (size_t)n_q);
        threadpool_run(c->tp, n_tok * n_split, attn_split_task, &a);
        float *mo = a.parts + (size_t)n_tok * n_split * part, *lo = mo + n_q;
        for (int t = 0; t < n_tok; t++) {
            int p = meta->tok_pos[t], keys = p + 1 - attn_first_key(ap, p), n = (keys - 1) / attn_split_keys(keys) + 1;
            float *o = a.parts + (size_t)t * n_split * part;   // the first split's partial takes the sum
            memcpy(mo, o + (size_t)n_q * hd, 2 * (size_t)n_q * sizeof(float));   // as attn_merge's first copy
            for (int i = 1; i < n; i++) {
                float *pi = o + (size_t)i * part;
                attn_merge(c->kf, n_q, hd, o, mo, lo, pi, pi + (size_t)n_q * hd, pi + (size_t)n_q * (hd + 1));
            }
            attn_finish(n_q, hd, host_row(out, t), o, lo);
        }
        return;
    }
    // group path: enough tasks to keep every thread busy, as few head groups as that allows (4
    // tasks per thread: a thread that starts late costs a quarter of its share, not half)
    int want = (4 * c->n_threads + n_tok - 1) / n_tok;
    if (want > ap->n_kv_heads) want = ap->n_kv_heads;
    if (want < 1) want = 1;
    a.heads_per_task = (ap->n_kv_heads + want - 1) / want;
    a.tasks_per_tok = (ap->n_kv_heads + a.heads_per_task - 1) / a.heads_per_task;
    threadpool_run(c->tp, n_tok * a.tasks_per_tok, attn_group_task, &a);
}
