/* cpu: the fast CPU backend: thread pool + SIMD kernels, over host memory (see cpu.h, kern.h).
 *
 * This file holds creation, scratch and the row-wise ops (embed, rmsnorm, glu, add, softcap,
 * moe_route); buffers, argmax and the argument checks are backend/host.c's, shared with ref. Row-wise ops compute each row on its own, in a fixed order, so a row's
 * result never depends on the other rows of the batch; they split rows across threads only
 * when there is enough work to pay for the fork-join (a few microseconds).
 *
 * Threading: one engine thread calls the ops; each op forks onto the pool and joins before it
 * returns, so sync() has nothing to wait for.
 *
 *     struct backend *be;  backend_cpu_new(&(struct backend_cfg){ .n_threads = 2 }, &be);
 *     be->ops->rmsnorm(be, &xn, &x, &w, 1e-6f, 0.0f);
 *     backend_free(be);
 */
#include "backend/cpu/cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/host.h"
#include "base/log.h"
#include "base/mem.h"

/* ==== Scratch ==== */

static float *scratch_get(struct cpu_scratch *s, size_t n)
{
    if (n > s->n) {
        free(s->p);
        void *p = NULL;
        size_t bytes = ((n * sizeof(float)) + 63) & ~(size_t)63;
        CHECK(posix_memalign(&p, 64, bytes) == 0, "cpu scratch: out of memory (%zu bytes)", bytes);
        s->p = p;
        s->n = n;
    }
    return s->p;
}

float *cpu_thread_scratch(struct cpu *c, int thread, size_t n) { return scratch_get(&c->tscratch[thread], n); }
float *cpu_shared_scratch(struct cpu *c, size_t n) { return scratch_get(&c->shared, n); }
float *cpu_xpack_scratch(struct cpu *c, size_t n) { return scratch_get(&c->xpack, n); }
float *cpu_xpack16_scratch(struct cpu *c, size_t n) { return scratch_get(&c->xpack16, n); }
float *cpu_xq_scratch(struct cpu *c, size_t n) { return scratch_get(&c->xq, n); }

/* ==== Parallel rows ==== */

struct rows_job {
    void   (*fn)(void *ctx, int64_t r0, int64_t r1);
    void    *ctx;
    int64_t  n_rows;
    int64_t  rows_per_task;
};

static void rows_task(void *arg, int task, int thread)
{
    (void)thread;
    struct rows_job *j = arg;
    int64_t r0 = (int64_t)task * j->rows_per_task;
    int64_t r1 = r0 + j->rows_per_task < j->n_rows ? r0 + j->rows_per_task : j->n_rows;
    j->fn(j->ctx, r0, r1);
}

/* Runs fn over [0, n_rows) in contiguous pieces; on one thread when elems (total work) is small. */
static void parallel_rows(struct cpu *c, int64_t n_rows, int64_t elems, void (*fn)(void *, int64_t, int64_t), void *ctx)
{
    if (n_rows <= 0) return;
    if (c->n_threads == 1 || n_rows == 1 || elems < 32768) {
        fn(ctx, 0, n_rows);
        return;
    }
    int64_t n_tasks = c->n_threads * 4 < n_rows ? c->n_threads * 4 : n_rows;
    struct rows_job j = { fn, ctx, n_rows, (n_rows + n_tasks - 1) / n_tasks };
    threadpool_run(c->tp, (int)((n_rows + j.rows_per_task - 1) / j.rows_per_task), rows_task, &j);
}

/* ==== Backend plumbing ==== */

static void cpu_destroy(struct backend *be)
{
    struct cpu *c = be->impl;
    threadpool_free(c->tp);
    for (int i = 0; i < c->n_threads; i++) free(c->tscratch[i].p);
    free(c->tscratch);
    free(c->shared.p);
    free(c->xpack.p);
    free(c->xpack16.p);
    free(c->xq.p);
    cpu_weights_free(c->weights);
    free(c);
}


/* ==== Row-wise ops ==== */

static void cpu_embed(struct backend *be, struct tensor *out, const struct tensor *table,
                      const struct batch_meta *meta, float scale)
{
    struct cpu *c = be->impl;
    host_check_embed(out, table, meta);
    int64_t d = table->ne[0];
    for (int i = 0; i < meta->n_tok; i++) {
        int32_t id = meta->tok_id[i];
        float *dst = host_row(out, i);
        if (table->dtype == DTYPE_QMLX) c->qdeq(table, id, dst);
        else c->kf->to_f32(table->dtype, host_row(table, id), dst, d);
        if (scale != 1.0f)
            for (int64_t k = 0; k < d; k++) dst[k] *= scale;
    }
}

struct rmsnorm_ctx {
    struct tensor *out;
    const struct tensor *x;
    const float *w;       // [d] f32 (w + w_offset)
    float eps;
};

static void rmsnorm_rows(void *arg, int64_t r0, int64_t r1)
{
    struct rmsnorm_ctx *a = arg;
    int64_t d = a->x->ne[0];
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = host_row(a->x, r);
        float *o = host_row(a->out, r);
        double s[4] = { 0, 0, 0, 0 };
        int64_t k = 0;
        for (; k + 4 <= d; k += 4)
            for (int l = 0; l < 4; l++) s[l] += (double)xr[k + l] * xr[k + l];
        for (; k < d; k++) s[0] += (double)xr[k] * xr[k];
        double ss = (s[0] + s[1]) + (s[2] + s[3]);
        float inv = (float)(1.0 / sqrt(ss / (double)d + (double)a->eps));
        for (k = 0; k < d; k++) o[k] = xr[k] * inv * a->w[k];
    }
}

static void cpu_rmsnorm(struct backend *be, struct tensor *out, const struct tensor *x,
                        const struct tensor *w, float eps, float w_offset)
{
    struct cpu *c = be->impl;
    host_check_rmsnorm(out, x, w);
    int64_t d = x->ne[0], rows = tensor_rows(x);
    float *wf = cpu_shared_scratch(c, (size_t)d);
    c->kf->to_f32(w->dtype, host_row(w, 0), wf, d);
    for (int64_t k = 0; k < d; k++) wf[k] += w_offset;
    struct rmsnorm_ctx a = { out, x, wf, eps };
    parallel_rows(c, rows, rows * d, rmsnorm_rows, &a);
}

void cpu_glu_row(struct cpu *c, float *out, const float *g, const float *u, int64_t n, enum act act)
{
    CHECK(act == ACT_SILU || act == ACT_GELU_TANH, "bad act %d", (int)act);
    c->kf->glu(out, g, u, n, act == ACT_GELU_TANH);
}

struct glu_ctx {
    struct cpu *c;
    struct tensor *out;
    const struct tensor *gate, *up;
    enum act act;
};

static void glu_rows(void *arg, int64_t r0, int64_t r1)
{
    struct glu_ctx *a = arg;
    for (int64_t r = r0; r < r1; r++)
        cpu_glu_row(a->c, host_row(a->out, r), host_row(a->gate, r), host_row(a->up, r), a->gate->ne[0], a->act);
}

static void cpu_glu(struct backend *be, struct tensor *out, const struct tensor *gate,
                    const struct tensor *up, enum act act)
{
    host_check_elementwise("glu", out, gate, up);
    int64_t f = gate->ne[0], rows = tensor_rows(gate);
    struct glu_ctx a = { be->impl, out, gate, up, act };
    parallel_rows(be->impl, rows, rows * f * 8, glu_rows, &a);
}

struct add_ctx {
    struct tensor *out;
    const struct tensor *a, *b;
};

static void add_rows(void *arg, int64_t r0, int64_t r1)
{
    struct add_ctx *c = arg;
    int64_t d = c->a->ne[0];
    for (int64_t r = r0; r < r1; r++) {
        const float *ar = host_row(c->a, r), *br = host_row(c->b, r);
        float *o = host_row(c->out, r);
        for (int64_t i = 0; i < d; i++) o[i] = ar[i] + br[i];
    }
}

static void cpu_add(struct backend *be, struct tensor *out, const struct tensor *a, const struct tensor *b)
{
    host_check_elementwise("add", out, a, b);
    int64_t d = a->ne[0], rows = tensor_rows(a);
    struct add_ctx c = { out, a, b };
    parallel_rows(be->impl, rows, rows * d, add_rows, &c);
}

struct softcap_ctx {
    struct tensor *x;
    float cap;
};

static void softcap_rows(void *arg, int64_t r0, int64_t r1)
{
    struct softcap_ctx *a = arg;
    float inv = 1.0f / a->cap;
    for (int64_t r = r0; r < r1; r++) {
        float *xr = host_row(a->x, r);
        for (int64_t i = 0; i < a->x->ne[0]; i++) xr[i] = a->cap * tanhf(xr[i] * inv);
    }
}

static void cpu_softcap(struct backend *be, struct tensor *x, float cap)
{
    host_check_f32(x, "softcap x");
    struct softcap_ctx a = { x, cap };
    parallel_rows(be->impl, tensor_rows(x), tensor_rows(x) * x->ne[0] * 8, softcap_rows, &a);
}

struct route_ctx {
    struct tensor *ids, *weights;
    const struct tensor *logits;
    int k;
    bool norm_topk;
};

/* Top-k on the logits (softmax is monotonic), ties to the lower index; see ref. */
static void route_rows(void *arg, int64_t r0, int64_t r1)
{
    struct route_ctx *a = arg;
    int64_t n_exp = a->logits->ne[0];
    int k = a->k;
    for (int64_t r = r0; r < r1; r++) {
        const float *l = host_row(a->logits, r);
        int32_t *id = host_row(a->ids, r);
        float *w = host_row(a->weights, r);
        float mx = l[0];
        for (int64_t e = 1; e < n_exp; e++) mx = l[e] > mx ? l[e] : mx;
        float sum = 0;
        for (int64_t e = 0; e < n_exp; e++) sum += expf(l[e] - mx);
        // insertion into a sorted top-k list: strictly greater moves up, so ties keep the lower index
        int cnt = 0;
        for (int64_t e = 0; e < n_exp; e++) {
            if (cnt == k && !(l[e] > l[id[k - 1]])) continue;
            int pos = cnt < k ? cnt++ : k - 1;
            while (pos > 0 && l[e] > l[id[pos - 1]]) {
                id[pos] = id[pos - 1];
                pos--;
            }
            id[pos] = (int32_t)e;
        }
        float picked = 0;
        for (int j = 0; j < k; j++) picked += w[j] = expf(l[id[j]] - mx) / sum;
        if (a->norm_topk)
            for (int j = 0; j < k; j++) w[j] /= picked;
    }
}

static void cpu_moe_route(struct backend *be, struct tensor *ids, struct tensor *weights,
                          const struct tensor *logits, int k, bool norm_topk)
{
    host_check_moe_route(ids, weights, logits, k);
    struct route_ctx a = { ids, weights, logits, k, norm_topk };
    parallel_rows(be->impl, tensor_rows(logits), tensor_rows(logits) * logits->ne[0] * 8, route_rows, &a);
}

static const struct backend_ops cpu_ops = {
    .name = "cpu",
    .moe_expert_subset = true,
    .destroy = cpu_destroy,
    .buffer_new = cpu_buffer_new,
    .buffer_free = cpu_buffer_free,
    .upload = host_upload,
    .download = host_download,
    .copy = host_copy,
    .weight_prepare = cpu_weight_prepare,
    .batch_begin = host_batch_begin,
    .sync = host_sync,
    .embed = cpu_embed,
    .rmsnorm = cpu_rmsnorm,
    .matmul = cpu_matmul,
    .matmul_rows = cpu_matmul_rows,
    .matmul_n = cpu_matmul_n,
    .rope = cpu_rope,
    .kv_write = cpu_kv_write,
    .attention = cpu_attention,
    .glu = cpu_glu,
    .add = cpu_add,
    .softcap = cpu_softcap,
    .moe_route = cpu_moe_route,
    .moe_ffn = cpu_moe_ffn,
    .argmax = host_argmax,
    .logits_mask = host_logits_mask,
    .gdn_conv = cpu_gdn_conv,
    .gdn_recurrent = cpu_gdn_recurrent,
    .rmsnorm_gated = cpu_rmsnorm_gated,
    .sigmoid_mul = cpu_sigmoid_mul,
    .quant_weights = true,
};

enum status backend_cpu_new(const struct backend_cfg *cfg, struct backend **out)
{
    struct cpu *c = xcalloc(1, sizeof *c);
    c->n_threads = cfg && cfg->n_threads > 0 ? cfg->n_threads : threadpool_cpu_count();
    c->tp = threadpool_new(c->n_threads);
    c->kf = cpu_kern_pick();
    c->kb = cfg && cfg->precise ? NULL : cpu_bf16_kern_pick(c->kf->name);
    c->qdeq = cpu_qdeq_pick(c->kf->name);
    c->qgemv = cpu_qgemv_pick(c->kf->name);
    c->qint = cfg && cfg->precise ? NULL : cpu_qint_pick(c->kf->name);   // precise: exact f32 weights x f32
    c->qint_x = cpu_qint_quantize_pick(c->kf->name);
    c->tscratch = xcalloc((size_t)c->n_threads, sizeof *c->tscratch);
    c->be.ops = &cpu_ops;
    c->be.impl = c;
    LOG_DEBUG("cpu backend: %d threads, %s kernels%s", c->n_threads, c->kf->name, c->kb ? ", bf16 dot products" : "");
    *out = &c->be;
    return STATUS_OK;
}
