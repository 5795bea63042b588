/* cpu_attn: rope, kv_write and paged attention of the cpu backend.
 *
 * Attention runs one task per (token, group of kv heads): the q heads that share a kv head (GQA)
 * are processed together, so each K and V row is read once, in chunks of ATTN_CHUNK keys
 * with an online (streaming) softmax: running max m, running sum l and an f32 accumulator per
 * q head, rescaled when the max grows. A token's result depends only on its own q, its
 * sequence's cache and the fixed chunking from its window start: never on the rest of the
 * batch. Scratch per task is O(n_rep * (head_dim + ATTN_CHUNK)), whatever the context length.
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

#define ATTN_CHUNK    64
#define ATTN_PREFETCH 16   // keys of the next chunk prefetched per 16 keys computed
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

struct attn_job {
    struct cpu               *c;
    struct tensor            *out;
    const struct tensor      *q;
    const struct kv_layer    *kv;
    const struct attn_params *ap;
    const struct batch_meta  *meta;
    int                       heads_per_task;   // kv heads handled by one task
    int                       tasks_per_tok;
};

/* The next chunk's keys [j0, j_end) of a task, for prefetch_rows. */
struct prefetch_rows {
    const int32_t *blocks;      // the sequence's block table
    int            bs;          // block size
    int            j0, j_end;   // first key of the next chunk; one past the last key
    size_t         bytes;       // bytes of a slot row the task reads
};

/* Prefetches (to L2) the task's slice of the rows of the next chunk's keys [s0, s0 + ATTN_PREFETCH). */
static void prefetch_rows(const struct prefetch_rows *pf, const char *base, size_t stride, int s0)
{
    int j1 = pf->j0 + s0 + ATTN_PREFETCH < pf->j_end ? pf->j0 + s0 + ATTN_PREFETCH : pf->j_end;
    for (int j = pf->j0 + s0; j < j1; j++) {
        const char *r = base + (size_t)((int64_t)pf->blocks[j / pf->bs] * pf->bs + j % pf->bs) * stride;
        for (size_t b = 0; b < pf->bytes; b += 64) __builtin_prefetch(r + b, 0, 1);
    }
}

/* One task: token t, kv heads [g0, g1). For each chunk of keys, every head of the group runs
 * its own qk / softmax / pv, so the slot rows are walked once and read as long runs; each
 * head's arithmetic is the same whatever the grouping (batch invariance). */
static void attn_task(void *arg, int task, int thread)
{
    const struct attn_job *a = arg;
    const struct attn_params *ap = a->ap;
    const struct batch_meta *meta = a->meta;
    const struct cpu_kern *kf = a->c->kf;
    int hd = ap->head_dim, n_rep = ap->n_heads / ap->n_kv_heads;
    int t = task / a->tasks_per_tok;
    int g0 = task % a->tasks_per_tok * a->heads_per_task;
    int g1 = g0 + a->heads_per_task < ap->n_kv_heads ? g0 + a->heads_per_task : ap->n_kv_heads;
    int n_g = g1 - g0, n_q = n_g * n_rep;   // q heads of the task: [g0 * n_rep, g1 * n_rep)
    int s = meta->tok_seq[t], p = meta->tok_pos[t];
    int j0 = ap->window > 0 && p - ap->window + 1 > 0 ? p - ap->window + 1 : 0;
    int n_blocks = meta->seq_block0[s + 1] - meta->seq_block0[s];
    CHECK(p / meta->block_size < n_blocks, "attention: position %d past seq %d's %d blocks", p, s, n_blocks);
    const int32_t *blocks = meta->block_ids + meta->seq_block0[s];

    // scratch: acc [n_q * hd], scores [n_rep * ATTN_CHUNK], m, l [n_q], k/v row pointers
    size_t n_f = (size_t)n_q * hd + (size_t)n_rep * ATTN_CHUNK + 2 * (size_t)n_q + 2;
    float *acc = cpu_thread_scratch(a->c, thread, n_f + 2 * n_g * ATTN_CHUNK * (sizeof(void *) / sizeof(float)));
    float *sc = acc + (size_t)n_q * hd;
    float *mx = sc + (size_t)n_rep * ATTN_CHUNK;
    float *l = mx + n_q;
    const void **krows = (const void **)(((uintptr_t)(l + n_q) + 7) & ~(uintptr_t)7);   // [n_g][ATTN_CHUNK]
    const void **vrows = krows + (size_t)n_g * ATTN_CHUNK;
    memset(acc, 0, (size_t)n_q * hd * sizeof(float));
    for (int r = 0; r < n_q; r++) {
        mx[r] = -INFINITY;
        l[r] = 0;
    }

    const float *q = (const float *)host_row(a->q, t) + (size_t)g0 * n_rep * hd;
    enum dtype dt = a->kv->k.dtype;
    size_t head_bytes = (size_t)hd * dtype_size(dt);
    const char *kbase = (const char *)host_row(&a->kv->k, 0) + (size_t)g0 * head_bytes;
    const char *vbase = (const char *)host_row(&a->kv->v, 0) + (size_t)g0 * head_bytes;
    size_t kstride = a->kv->k.nb[1], vstride = a->kv->v.nb[1];
    int bs = meta->block_size;

    for (int c0 = j0; c0 <= p; c0 += ATTN_CHUNK) {
        int nk = p + 1 - c0 < ATTN_CHUNK ? p + 1 - c0 : ATTN_CHUNK;
        for (int jj = 0; jj < nk; jj++) {
            int j = c0 + jj;
            int64_t slot = (int64_t)blocks[j / bs] * bs + j % bs;
            for (int g = 0; g < n_g; g++) {
                krows[g * ATTN_CHUNK + jj] = kbase + (size_t)slot * kstride + (size_t)g * head_bytes;
                vrows[g * ATTN_CHUNK + jj] = vbase + (size_t)slot * vstride + (size_t)g * head_bytes;
            }
        }
        // the next chunk's rows are prefetched while this one computes, ATTN_PREFETCH keys before
        // each ATTN_PREFETCH keys of qk (K) and of pv (V): the group's slice of a slot row is a
        // strided run the hardware prefetchers do not follow, and one burst for the whole chunk
        // stalls on the fill buffers with no arithmetic beside it. Cutting qk and pv at these
        // keys changes no bits (each dot is its own; pv's accumulators pass through acc exactly).
        struct prefetch_rows pf = { blocks, bs, c0 + ATTN_CHUNK, p + 1, (size_t)n_g * head_bytes };
        for (int g = 0; g < n_g; g++) {
            const float *qg = q + (size_t)g * n_rep * hd;
            float *ag = acc + (size_t)g * n_rep * hd;
            for (int s0 = 0; s0 < nk; s0 += ATTN_PREFETCH) {
                if (g == 0) prefetch_rows(&pf, kbase, kstride, s0);
                int n = nk - s0 < ATTN_PREFETCH ? nk - s0 : ATTN_PREFETCH;
                kf->qk(n_rep, qg, hd, krows + (size_t)g * ATTN_CHUNK + s0, n, dt, sc + s0, ATTN_CHUNK);
            }
            for (int r = 0; r < n_rep; r++) {
                int qr = g * n_rep + r;
                float corr = kf->softmax_step(sc + (size_t)r * ATTN_CHUNK, nk, ap->scale, ap->softcap, &mx[qr], &l[qr]);
                if (corr != 1.0f) {
                    float *ar = ag + (size_t)r * hd;
                    for (int i = 0; i < hd; i++) ar[i] *= corr;
                }
            }
            for (int s0 = 0; s0 < nk; s0 += ATTN_PREFETCH) {
                if (g == 0) prefetch_rows(&pf, vbase, vstride, s0);
                int n = nk - s0 < ATTN_PREFETCH ? nk - s0 : ATTN_PREFETCH;
                kf->pv(n_rep, ag, hd, sc + s0, ATTN_CHUNK, vrows + (size_t)g * ATTN_CHUNK + s0, n, dt);
            }
        }
    }
    float *o = (float *)host_row(a->out, t) + (size_t)g0 * n_rep * hd;
    for (int r = 0; r < n_q; r++) {
        float inv = 1.0f / l[r];
        for (int i = 0; i < hd; i++) o[(size_t)r * hd + i] = acc[(size_t)r * hd + i] * inv;
    }
}

void cpu_attention(struct backend *be, struct tensor *out, const struct tensor *q,
                   const struct kv_layer *kv, const struct attn_params *ap, const struct batch_meta *meta)
{
    struct cpu *c = be->impl;
    host_check_attention(out, q, kv, ap);
    if (meta->n_tok <= 0) return;
    // enough tasks to keep every thread busy, as few head groups as that allows: 4 per thread, as
    // the tasks are handed out dynamically and a thread that starts late (a wake-up, another
    // process on its core) should cost a quarter of its share, not half (decode: one kv head a task)
    int want = (4 * c->n_threads + meta->n_tok - 1) / meta->n_tok;
    if (want > ap->n_kv_heads) want = ap->n_kv_heads;
    if (want < 1) want = 1;
    int hpt = (ap->n_kv_heads + want - 1) / want;
    struct attn_job a = { c, out, q, kv, ap, meta, hpt, (ap->n_kv_heads + hpt - 1) / hpt };
    threadpool_run(c->tp, meta->n_tok * a.tasks_per_tok, attn_task, &a);
}
