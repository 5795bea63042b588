/* backend: creation by name, and the composed fused ops.
 *
 * Design note. The fused members of struct backend_ops (matmul_n, norm_matmul_n, matmul_add,
 * qk_rope_kv, matmul_glu, norm_moe_route, moe_ffn_add) exist so that a fast backend can do
 * several plain ops in one pass. A backend implements the ones that pay off and leaves the rest
 * NULL; backend_new copies its table into be->all_ops and fills each NULL with the composition
 * below, built from the plain ops (through be->ops, so a composition uses whatever the backend
 * does fuse: the composed norm_matmul_n calls cpu's fused matmul_n). Callers (model/forward.c)
 * then call every op once, with no NULL checks, and a new backend is complete as soon as its
 * plain ops are. Each composition issues exactly the plain ops its contract line in backend.h
 * names, in that order, so a backend without the fused op computes the same bits it would
 * computing the plain ops one by one (tests/ops/test_composed.c holds them to that).
 *
 * matmul_add and moe_ffn_add have no scratch argument (their fused versions need none), so their
 * compositions keep the product in a grow-only buffer owned by the backend (be->compose_buf),
 * allocated with the backend's buffer_new on the first step that needs more. A backend with step
 * graphs must fuse both (a buffer_new would make recordings stale): backend_new checks it.
 */
#include "backend/backend.h"

#include <string.h>

#include "base/log.h"

#ifdef CAIRN_HAVE_CUDA
#define HAVE_CUDA 1
#else
#define HAVE_CUDA 0
enum status backend_cuda_new(const struct backend_cfg *cfg, struct backend **out)
{
    (void)cfg;
    (void)out;
    LOG_ERR("backend cuda: this binary was built without CUDA (nvcc not found at build time)");
    return STATUS_EUNSUPPORTED;
}

int backend_cuda_device_count(void) { return 0; }

void *backend_cuda_stream(struct backend *be)
{
    CHECK(false, "backend_cuda_stream on %s in a binary without CUDA", be->ops->name);
    return NULL;
}
#endif

/* ==== Composed fused ops ==== */

/* A [rows, cols] f32 tensor at the start of the backend's grow-only scratch buffer. */
static struct tensor compose_scratch(struct backend *be, int64_t cols, int64_t rows)
{
    size_t bytes = (size_t)(cols * rows) * sizeof(float);
    if (!be->compose_buf || be->compose_buf->bytes < bytes) {
        if (be->compose_buf) {
            be->ops->sync(be);   // queued ops may still read the old buffer
            be->ops->buffer_free(be, be->compose_buf);
            be->compose_buf = NULL;
        }
        enum status st = be->ops->buffer_new(be, bytes, &be->compose_buf);
        CHECK(st == STATUS_OK, "backend %s: no memory for %zu bytes of composed-op scratch", be->ops->name, bytes);
    }
    return tensor_2d(DTYPE_F32, cols, rows, be->compose_buf, 0);
}

static void composed_matmul_n(struct backend *be, int n, struct tensor *const *outs, const struct tensor *x,
                              const struct tensor *const *ws, const struct tensor *const *biases)
{
    for (int i = 0; i < n; i++) be->ops->matmul(be, outs[i], x, ws[i], biases ? biases[i] : NULL);
}

static void composed_norm_matmul_n(struct backend *be, int n, struct tensor *const *outs, struct tensor *xn,
                                   const struct tensor *x, const struct tensor *norm_w, float eps, float w_offset,
                                   const struct tensor *const *ws, const struct tensor *const *biases)
{
    be->ops->rmsnorm(be, xn, x, norm_w, eps, w_offset);
    be->ops->matmul_n(be, n, outs, xn, ws, biases);
}

static void composed_matmul_add(struct backend *be, struct tensor *out, const struct tensor *x, const struct tensor *w)
{
    int64_t n = tensor_rows(x);
    struct tensor prod = compose_scratch(be, out->ne[0], n), o = tensor_rows_view(out, 0, n);
    be->ops->matmul(be, &prod, x, w, NULL);
    be->ops->add(be, &o, &o, &prod);
}

/* RMSNorm of each head_dim-wide piece of x's rows (x seen as [rows * n_heads, head_dim]). */
static void head_rmsnorm(struct backend *be, struct tensor *x, int n_heads, int head_dim, const struct tensor *w,
                         float eps, float w_offset)
{
    struct tensor heads = tensor_reshape(x, 2, (int64_t[]){ head_dim, tensor_rows(x) * n_heads });
    be->ops->rmsnorm(be, &heads, &heads, w, eps, w_offset);
}

static void composed_qk_rope_kv(struct backend *be, struct tensor *q, struct tensor *k, const struct tensor *v,
                                const struct tensor *q_norm, const struct tensor *k_norm, float eps, float w_offset,
                                int n_heads, int n_kv_heads, const struct tensor *inv_freq,
                                const struct rope_params *rp, struct kv_layer *kv, const struct batch_meta *meta)
{
    if (q_norm) head_rmsnorm(be, q, n_heads, rp->head_dim, q_norm, eps, w_offset);
    if (k_norm) head_rmsnorm(be, k, n_kv_heads, rp->head_dim, k_norm, eps, w_offset);
    be->ops->rope(be, q, n_heads, inv_freq, rp, meta);
    be->ops->rope(be, k, n_kv_heads, inv_freq, rp, meta);
    be->ops->kv_write(be, kv, k, v, meta);
}

static void composed_matmul_glu(struct backend *be, struct tensor *out, struct tensor *up, struct tensor *xn,
                                const struct tensor *x, const struct tensor *norm_w, float eps, float w_offset,
                                const struct tensor *w_gate, const struct tensor *w_up, enum act act)
{
    struct tensor *outs[2] = { out, up };
    const struct tensor *ws[2] = { w_gate, w_up };
    if (norm_w) be->ops->norm_matmul_n(be, 2, outs, xn, x, norm_w, eps, w_offset, ws, NULL);
    else be->ops->matmul_n(be, 2, outs, x, ws, NULL);
    be->ops->glu(be, out, out, up, act);
}

static void composed_norm_moe_route(struct backend *be, struct tensor *ids, struct tensor *weights,
                                    struct tensor *logits, struct tensor *xn, const struct tensor *x,
                                    const struct tensor *norm_w, float eps, float w_offset,
                                    const struct tensor *router, int k, bool norm_topk)
{
    be->ops->rmsnorm(be, xn, x, norm_w, eps, w_offset);
    be->ops->matmul(be, logits, xn, router, NULL);
    be->ops->moe_route(be, ids, weights, logits, k, norm_topk);
}

static void composed_moe_ffn_add(struct backend *be, struct tensor *x, const struct tensor *xn,
                                 const struct tensor *ids, const struct tensor *weights, const struct tensor *gate,
                                 const struct tensor *up, const struct tensor *down, int n_experts, enum act act)
{
    int64_t n = tensor_rows(xn);
    struct tensor sum = compose_scratch(be, x->ne[0], n), o = tensor_rows_view(x, 0, n);
    be->ops->moe_ffn(be, &sum, xn, ids, weights, gate, up, down, n_experts, act);
    be->ops->add(be, &o, &o, &sum);
}

/* A backend without step graphs: every step issues its ops. */
static int no_step_graph_begin(struct backend *be, const struct batch_meta *meta, const void *scratch, const void *kv)
{
    (void)be;
    (void)meta;
    (void)scratch;
    (void)kv;
    return STEP_GRAPH_NONE;
}

static void no_step_graph_end(struct backend *be)
{
    CHECK(0, "backend %s: step_graph_end without a recording", be->ops->name);
}

/* Points be->ops at a copy of its table with every NULL fused op composed and step graphs stubbed. */
static void complete_ops(struct backend *be)
{
    struct backend_ops *o = &be->all_ops;
    *o = *be->ops;
    CHECK(!o->step_graph_begin == !o->step_graph_end, "backend %s: step_graph_begin without end", o->name);
    CHECK(!o->step_graph_begin || (o->matmul_add && o->moe_ffn_add),
          "backend %s: step graphs need fused matmul_add and moe_ffn_add (the composed ones allocate)", o->name);
    if (!o->matmul_n) o->matmul_n = composed_matmul_n;
    if (!o->norm_matmul_n) o->norm_matmul_n = composed_norm_matmul_n;
    if (!o->matmul_add) o->matmul_add = composed_matmul_add;
    if (!o->qk_rope_kv) o->qk_rope_kv = composed_qk_rope_kv;
    if (!o->matmul_glu) o->matmul_glu = composed_matmul_glu;
    if (!o->norm_moe_route) o->norm_moe_route = composed_norm_moe_route;
    if (!o->moe_ffn_add) o->moe_ffn_add = composed_moe_ffn_add;
    if (!o->step_graph_begin) {
        o->step_graph_begin = no_step_graph_begin;
        o->step_graph_end = no_step_graph_end;
    }
    be->ops = o;
}

/* ==== Creation ==== */

enum status backend_new(const char *name, const struct backend_cfg *cfg, struct backend **out)
{
    static const struct backend_cfg defaults = { 0 };
    if (!cfg) cfg = &defaults;
    enum status st;
    if (!strcmp(name, "ref")) {
        st = backend_ref_new(cfg, out);
    } else if (!strcmp(name, "cpu") || !strcmp(name, "cpu-precise")) {
        struct backend_cfg c = *cfg;
        c.precise = c.precise || !strcmp(name, "cpu-precise");
        st = backend_cpu_new(&c, out);
    } else if (!strcmp(name, "cuda") || !strcmp(name, "cuda-precise") || !strcmp(name, "cuda-deterministic")) {
        struct backend_cfg c = *cfg;
        c.precise = c.precise || !strcmp(name, "cuda-precise");
        c.deterministic = c.deterministic || !strcmp(name, "cuda-deterministic");
        st = backend_cuda_new(&c, out);
    } else {
        LOG_ERR("unknown backend '%s' (available: %s)", name, backend_list());
        return STATUS_EUNSUPPORTED;
    }
    if (st != STATUS_OK) return st;
    complete_ops(*out);
    (*out)->profile = cfg->profile;
    return STATUS_OK;
}

void backend_free(struct backend *be)
{
    if (!be) return;
    if (be->compose_buf) be->ops->buffer_free(be, be->compose_buf);
    be->ops->destroy(be);
}

const char *backend_list(void)
{
    return HAVE_CUDA ? "ref, cpu, cpu-precise, cuda, cuda-precise, cuda-deterministic" : "ref, cpu, cpu-precise";
}
