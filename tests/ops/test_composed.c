/* test_composed: the fused ops that backend.c composes from the plain ops (backend/backend.c).
 *
 * For each fused op (matmul_n, norm_matmul_n, matmul_add, qk_rope_kv, matmul_glu, norm_moe_route,
 * moe_ffn_add), on shapes from 1 token to a batch of 37, with and without the optional parts
 * (biases, q/k norms, the input norm, Gemma's norm offset):
 *  - on ref (which fuses nothing) the op equals, bit for bit, the plain ref ops its contract in
 *    backend.h names, called one by one here: the composition issues exactly those ops;
 *  - on cpu (matmul_n fused, the rest composed) it equals cpu's plain ops one by one, bit for bit
 *    (so model/forward.c computes what it computed when it called them itself), and matches the
 *    ref result within the op tests' tolerances (tests/ops/test_ops.c).
 * Also: backend_new leaves no fused or step-graph member NULL, and the composed scratch of
 * matmul_add / moe_ffn_add survives growing and shrinking steps.
 */
#include "harness.h"
#include "ops/ops_util.h"

#include "backend/backend.h"
#include "base/rng.h"

static struct backend *g_ref, *g_cpu;

/* f32 accumulation of k products of N(0,1) values: error grows like sqrt(k) (test_ops' matmul bound). */
static double mm_atol(int k) { return 2e-6 * sqrt((double)k) * 4; }

/* A by-hand run (the plain ops one by one) or the fused member: each case computes both. */
enum how { FUSED, BY_HAND };

/* ==== matmul_n, norm_matmul_n ==== */

struct proj_case { int n, k, m0, m1, m2; bool bias, norm; float offset; };

static const struct proj_case proj_cases[] = {
    { 1, 64, 32, 16, 16, true, true, 0.0f },   { 5, 130, 64, 32, 32, false, true, 1.0f },
    { 37, 96, 48, 24, 40, true, false, 0.0f }, { 2, 17, 3, 5, 7, false, false, 0.0f },
    { 16, 256, 64, 64, 64, true, true, 0.0f },
};

/* outs[i] = (norm ? rmsnorm(x) : x) @ ws[i]^T + bias[i] (bias 1 NULL, to test a partial list). */
static void run_proj(struct backend *be, enum how how, const struct proj_case *pc, struct tt *outs, struct tt *xn,
                     struct tt *x, struct tt *nw, struct tt *ws, struct tt *bs)
{
    struct tensor *o[3] = { tt_t(&outs[0]), tt_t(&outs[1]), tt_t(&outs[2]) };
    const struct tensor *w[3] = { tt_t(&ws[0]), tt_t(&ws[1]), tt_t(&ws[2]) };
    const struct tensor *b[3] = { tt_t(&bs[0]), NULL, tt_t(&bs[2]) };
    const struct tensor *const *bp = pc->bias ? b : NULL;
    if (how == FUSED) {
        if (pc->norm) be->ops->norm_matmul_n(be, 3, o, tt_t(xn), tt_t(x), tt_t(nw), 1e-6f, pc->offset, w, bp);
        else be->ops->matmul_n(be, 3, o, tt_t(x), w, bp);
    } else {
        const struct tensor *in = tt_t(x);
        if (pc->norm) {
            be->ops->rmsnorm(be, tt_t(xn), tt_t(x), tt_t(nw), 1e-6f, pc->offset);
            in = tt_t(xn);
        }
        for (int i = 0; i < 3; i++) be->ops->matmul(be, o[i], in, w[i], bp ? bp[i] : NULL);
    }
}

TEST(matmul_n_and_norm_matmul_n)
{
    struct rng r;
    rng_seed(&r, 31);
    for (size_t c = 0; c < sizeof proj_cases / sizeof proj_cases[0]; c++) {
        const struct proj_case *pc = &proj_cases[c];
        int ms[3] = { pc->m0, pc->m1, pc->m2 };
        struct tt x = tt_new(DTYPE_F32, pc->k, pc->n), nw = tt_new(DTYPE_BF16, pc->k, 1), xn = tt_new(DTYPE_F32, pc->k, pc->n);
        struct tt ws[3], bs[3], o[4][3];   // o: ref fused, ref by hand, cpu fused, cpu by hand
        tt_randn(&x, &r, 2.0f);
        tt_randn(&nw, &r, 0.5f);
        for (int i = 0; i < 3; i++) {
            ws[i] = tt_new(DTYPE_BF16, pc->k, ms[i]);
            bs[i] = tt_new(DTYPE_F32, ms[i], 1);
            tt_randn(&ws[i], &r, 1.0f);
            tt_randn(&bs[i], &r, 1.0f);
            for (int v = 0; v < 4; v++) o[v][i] = tt_new(DTYPE_F32, ms[i], pc->n);
        }
        run_proj(g_ref, FUSED, pc, o[0], &xn, &x, &nw, ws, bs);
        run_proj(g_ref, BY_HAND, pc, o[1], &xn, &x, &nw, ws, bs);
        run_proj(g_cpu, FUSED, pc, o[2], &xn, &x, &nw, ws, bs);
        run_proj(g_cpu, BY_HAND, pc, o[3], &xn, &x, &nw, ws, bs);
        for (int i = 0; i < 3; i++) {
            size_t bytes = (size_t)ms[i] * pc->n * 4;
            char what[96];
            snprintf(what, sizeof what, "%s case %zu out %d", pc->norm ? "norm_matmul_n" : "matmul_n", c, i);
            EXPECTF(!memcmp(o[0][i].p, o[1][i].p, bytes), "%s: ref differs from ref's plain ops", what);
            EXPECTF(!memcmp(o[2][i].p, o[3][i].p, bytes), "%s: cpu differs from cpu's plain ops", what);
            EXPECTF(tt_close(what, o[2][i].p, o[1][i].p, (int64_t)ms[i] * pc->n, mm_atol(pc->k), 1e-5, 1e-11), "%s", what);
        }
        for (int i = 0; i < 3; i++) {
            tt_free(&ws[i]); tt_free(&bs[i]);
            for (int v = 0; v < 4; v++) tt_free(&o[v][i]);
        }
        tt_free(&x); tt_free(&nw); tt_free(&xn);
    }
}

/* ==== matmul_add ==== */

/* out += x @ w^T; rows 2 then 37 then 1 (the composed scratch grows, then is reused). */
TEST(matmul_add)
{
    struct rng r;
    rng_seed(&r, 32);
    const int ns[3] = { 2, 37, 1 }, k = 200, m = 72;
    for (int c = 0; c < 3; c++) {
        int n = ns[c];
        struct tt x = tt_new(DTYPE_F32, k, n), w = tt_new(DTYPE_F16, k, m), res = tt_new(DTYPE_F32, m, n);
        struct tt tmp = tt_new(DTYPE_F32, m, n), o[4];
        tt_randn(&x, &r, 1.0f);
        tt_randn(&w, &r, 1.0f);
        tt_randn(&res, &r, 4.0f);
        struct backend *bes[2] = { g_ref, g_cpu };
        for (int b = 0; b < 2; b++) {
            struct backend *be = bes[b];
            o[2 * b] = tt_new(DTYPE_F32, m, n);
            o[2 * b + 1] = tt_new(DTYPE_F32, m, n);
            tt_copy(&o[2 * b], &res);
            tt_copy(&o[2 * b + 1], &res);
            be->ops->matmul_add(be, tt_t(&o[2 * b]), tt_t(&x), tt_t(&w));
            be->ops->matmul(be, tt_t(&tmp), tt_t(&x), tt_t(&w), NULL);
            be->ops->add(be, tt_t(&o[2 * b + 1]), tt_t(&o[2 * b + 1]), tt_t(&tmp));
        }
        size_t bytes = (size_t)m * n * 4;
        EXPECTF(!memcmp(o[0].p, o[1].p, bytes), "matmul_add n=%d: ref differs from ref's matmul + add", n);
        EXPECTF(!memcmp(o[2].p, o[3].p, bytes), "matmul_add n=%d: cpu differs from cpu's matmul + add", n);
        EXPECTF(tt_close("matmul_add", o[2].p, o[1].p, (int64_t)m * n, mm_atol(k), 1e-5, 1e-11), "matmul_add n=%d", n);
        for (int v = 0; v < 4; v++) tt_free(&o[v]);
        tt_free(&x); tt_free(&w); tt_free(&res); tt_free(&tmp);
    }
}

/* ==== qk_rope_kv ==== */

struct qk_case { int n, heads, kv_heads, hd, rot; bool norm; float offset; enum dtype kv; };

static const struct qk_case qk_cases[] = {
    { 1, 4, 2, 64, 64, true, 0.0f, DTYPE_F32 },   { 7, 8, 2, 128, 128, false, 0.0f, DTYPE_BF16 },
    { 37, 4, 4, 32, 16, true, 1.0f, DTYPE_F16 },  { 3, 2, 1, 80, 40, true, 0.0f, DTYPE_F8E4M3 },
};

struct qk_io { struct tt q, k, kc, vc; };

static void run_qk(struct backend *be, enum how how, const struct qk_case *qc, struct qk_io *io, struct tt *v,
                   struct tt *qn, struct tt *kn, struct tt *freq, const struct batch_meta *meta)
{
    struct rope_params rp = { .head_dim = qc->hd, .rot_dim = qc->rot, .mscale = 1.0f, .interleaved = false };
    struct kv_layer kv = { *tt_t(&io->kc), *tt_t(&io->vc) };
    const struct tensor *qw = qc->norm ? tt_t(qn) : NULL, *kw = qc->norm ? tt_t(kn) : NULL;
    if (how == FUSED) {
        be->ops->qk_rope_kv(be, tt_t(&io->q), tt_t(&io->k), tt_t(v), qw, kw, 1e-6f, qc->offset, qc->heads,
                            qc->kv_heads, tt_t(freq), &rp, &kv, meta);
        return;
    }
    if (qc->norm) {
        struct tensor qh = tensor_reshape(tt_t(&io->q), 2, (int64_t[]){ qc->hd, (int64_t)qc->n * qc->heads });
        struct tensor kh = tensor_reshape(tt_t(&io->k), 2, (int64_t[]){ qc->hd, (int64_t)qc->n * qc->kv_heads });
        be->ops->rmsnorm(be, &qh, &qh, qw, 1e-6f, qc->offset);
        be->ops->rmsnorm(be, &kh, &kh, kw, 1e-6f, qc->offset);
    }
    be->ops->rope(be, tt_t(&io->q), qc->heads, tt_t(freq), &rp, meta);
    be->ops->rope(be, tt_t(&io->k), qc->kv_heads, tt_t(freq), &rp, meta);
    be->ops->kv_write(be, &kv, tt_t(&io->k), tt_t(v), meta);
}

TEST(qk_rope_kv)
{
    struct rng r;
    rng_seed(&r, 33);
    for (size_t c = 0; c < sizeof qk_cases / sizeof qk_cases[0]; c++) {
        const struct qk_case *qc = &qk_cases[c];
        int n = qc->n, qrow = qc->heads * qc->hd, kvrow = qc->kv_heads * qc->hd, n_slots = 2 * n + 16;
        struct tt q = tt_new(DTYPE_F32, qrow, n), k = tt_new(DTYPE_F32, kvrow, n), v = tt_new(DTYPE_F32, kvrow, n);
        struct tt qn = tt_new(DTYPE_BF16, qc->hd, 1), kn = tt_new(DTYPE_BF16, qc->hd, 1), f = tt_new(DTYPE_F32, qc->rot / 2, 1);
        tt_randn(&q, &r, 1.0f);
        tt_randn(&k, &r, 1.0f);
        tt_randn(&v, &r, 1.0f);
        tt_randn(&qn, &r, 0.5f);
        tt_randn(&kn, &r, 0.5f);
        for (int i = 0; i < qc->rot / 2; i++) ((float *)f.p)[i] = powf(10000.0f, -(float)(2 * i) / (float)qc->rot);
        int32_t pos[64];
        int64_t slot[64];
        for (int t = 0; t < n; t++) {
            pos[t] = (int32_t)(rng_next(&r) % 5000);
            slot[t] = (int64_t)(2 * t + 1) % n_slots;   // scattered, distinct
        }
        struct batch_meta meta = { .n_tok = n, .tok_pos = pos, .tok_slot = slot, .block_size = 16 };
        struct qk_io io[4];   // ref fused, ref by hand, cpu fused, cpu by hand
        for (int i = 0; i < 4; i++) {
            io[i].q = tt_new(DTYPE_F32, qrow, n);
            io[i].k = tt_new(DTYPE_F32, kvrow, n);
            io[i].kc = tt_new(qc->kv, kvrow, n_slots);
            io[i].vc = tt_new(qc->kv, kvrow, n_slots);
            tt_copy(&io[i].q, &q);
            tt_copy(&io[i].k, &k);
            run_qk(i < 2 ? g_ref : g_cpu, i % 2 ? BY_HAND : FUSED, qc, &io[i], &v, &qn, &kn, &f, &meta);
        }
        size_t qb = (size_t)qrow * n * 4, cb = (size_t)kvrow * n_slots * dtype_size(qc->kv);
        for (int b = 0; b < 2; b++) {
            struct qk_io *fu = &io[2 * b], *bh = &io[2 * b + 1];
            EXPECTF(!memcmp(fu->q.p, bh->q.p, qb) && !memcmp(fu->kc.p, bh->kc.p, cb) && !memcmp(fu->vc.p, bh->vc.p, cb),
                    "qk_rope_kv case %zu: %s differs from its plain ops", c, b ? "cpu" : "ref");
        }
        // cpu against ref: q within rope's tolerance; the caches as f32 (an f8 code may round the other way)
        char what[64];
        snprintf(what, sizeof what, "qk_rope_kv case %zu q", c);
        EXPECTF(tt_close(what, io[2].q.p, io[1].q.p, (int64_t)qrow * n, 1e-5, 1e-5, 1e-12), "%s", what);
        int64_t ne = (int64_t)kvrow * n_slots;
        float *a = malloc(sizeof(float) * (size_t)ne), *e = malloc(sizeof(float) * (size_t)ne);
        dtype_to_f32(qc->kv, io[2].kc.p, a, (size_t)ne);
        dtype_to_f32(qc->kv, io[1].kc.p, e, (size_t)ne);
        double tol = qc->kv == DTYPE_F32 ? 1e-5 : qc->kv == DTYPE_F8E4M3 ? 0.13 : 8e-3;
        snprintf(what, sizeof what, "qk_rope_kv case %zu k cache", c);
        EXPECTF(tt_close(what, a, e, ne, tol * 0.1, tol, 1e-3), "%s", what);
        EXPECTF(!memcmp(io[2].vc.p, io[1].vc.p, cb), "qk_rope_kv case %zu: v caches differ", c);
        free(a); free(e);
        for (int i = 0; i < 4; i++) { tt_free(&io[i].q); tt_free(&io[i].k); tt_free(&io[i].kc); tt_free(&io[i].vc); }
        tt_free(&q); tt_free(&k); tt_free(&v); tt_free(&qn); tt_free(&kn); tt_free(&f);
    }
}

/* ==== matmul_glu ==== */

static void run_glu(struct backend *be, enum how how, bool norm, float offset, enum act act, struct tt *out,
                    struct tt *up, struct tt *xn, struct tt *x, struct tt *nw, struct tt *wg, struct tt *wu)
{
    if (how == FUSED) {
        be->ops->matmul_glu(be, tt_t(out), tt_t(up), tt_t(xn), tt_t(x), norm ? tt_t(nw) : NULL, 1e-6f, offset,
                            tt_t(wg), tt_t(wu), act);
        return;
    }
    const struct tensor *in = tt_t(x);
    if (norm) {
        be->ops->rmsnorm(be, tt_t(xn), tt_t(x), tt_t(nw), 1e-6f, offset);
        in = tt_t(xn);
    }
    be->ops->matmul(be, tt_t(out), in, tt_t(wg), NULL);
    be->ops->matmul(be, tt_t(up), in, tt_t(wu), NULL);
    be->ops->glu(be, tt_t(out), tt_t(out), tt_t(up), act);
}

TEST(matmul_glu)
{
    struct rng r;
    rng_seed(&r, 34);
    const int shapes[][3] = { { 1, 64, 96 }, { 5, 200, 72 }, { 37, 128, 130 } };   // n, d, f
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        for (int variant = 0; variant < 3; variant++) {   // no norm (silu), norm (gelu), norm + offset (silu)
            int n = shapes[s][0], d = shapes[s][1], f = shapes[s][2];
            bool norm = variant > 0;
            float offset = variant == 2 ? 1.0f : 0.0f;
            enum act act = variant == 1 ? ACT_GELU_TANH : ACT_SILU;
            struct tt x = tt_new(DTYPE_F32, d, n), nw = tt_new(DTYPE_F32, d, 1), xn = tt_new(DTYPE_F32, d, n);
            struct tt wg = tt_new(DTYPE_BF16, d, f), wu = tt_new(DTYPE_BF16, d, f), o[4], up = tt_new(DTYPE_F32, f, n);
            tt_randn(&x, &r, 1.0f);
            tt_randn(&nw, &r, 0.3f);
            tt_randn(&wg, &r, 0.2f);
            tt_randn(&wu, &r, 0.2f);
            for (int i = 0; i < 4; i++) {
                o[i] = tt_new(DTYPE_F32, f, n);
                run_glu(i < 2 ? g_ref : g_cpu, i % 2 ? BY_HAND : FUSED, norm, offset, act, &o[i], &up, &xn, &x, &nw, &wg, &wu);
            }
            size_t bytes = (size_t)f * n * 4;
            char what[96];
            snprintf(what, sizeof what, "matmul_glu n=%d d=%d f=%d variant %d", n, d, f, variant);
            EXPECTF(!memcmp(o[0].p, o[1].p, bytes), "%s: ref differs from ref's plain ops", what);
            EXPECTF(!memcmp(o[2].p, o[3].p, bytes), "%s: cpu differs from cpu's plain ops", what);
            EXPECTF(tt_close(what, o[2].p, o[1].p, (int64_t)f * n, mm_atol(d), 1e-5, 1e-11), "%s", what);
            for (int i = 0; i < 4; i++) tt_free(&o[i]);
            tt_free(&x); tt_free(&nw); tt_free(&xn); tt_free(&wg); tt_free(&wu); tt_free(&up);
        }
    }
}

/* ==== norm_moe_route, moe_ffn_add ==== */

struct moe_io { struct tt ids, w, xn, logits, x; };

static void moe_io_new(struct moe_io *io, int n, int d, int E, int k, const struct tt *x)
{
    io->ids = tt_new(DTYPE_I32, k, n);
    io->w = tt_new(DTYPE_F32, k, n);
    io->xn = tt_new(DTYPE_F32, d, n);
    io->logits = tt_new(DTYPE_F32, E, n);
    io->x = tt_new(DTYPE_F32, d, n);
    tt_copy(&io->x, x);
}

static void moe_io_free(struct moe_io *io)
{
    tt_free(&io->ids); tt_free(&io->w); tt_free(&io->xn); tt_free(&io->logits); tt_free(&io->x);
}

/* The MoE block: router (norm_moe_route), then x += experts (moe_ffn_add). */
static void run_moe(struct backend *be, enum how how, struct moe_io *io, struct tt *nw, float offset, struct tt *router,
                    int k, const struct tensor *g, const struct tensor *u, const struct tensor *dn, int E, struct tt *tmp)
{
    if (how == FUSED) {
        be->ops->norm_moe_route(be, tt_t(&io->ids), tt_t(&io->w), tt_t(&io->logits), tt_t(&io->xn), tt_t(&io->x),
                                tt_t(nw), 1e-6f, offset, tt_t(router), k, true);
        be->ops->moe_ffn_add(be, tt_t(&io->x), tt_t(&io->xn), tt_t(&io->ids), tt_t(&io->w), g, u, dn, E, ACT_SILU);
        return;
    }
    be->ops->rmsnorm(be, tt_t(&io->xn), tt_t(&io->x), tt_t(nw), 1e-6f, offset);
    be->ops->matmul(be, tt_t(&io->logits), tt_t(&io->xn), tt_t(router), NULL);
    be->ops->moe_route(be, tt_t(&io->ids), tt_t(&io->w), tt_t(&io->logits), k, true);
    be->ops->moe_ffn(be, tt_t(tmp), tt_t(&io->xn), tt_t(&io->ids), tt_t(&io->w), g, u, dn, E, ACT_SILU);
    be->ops->add(be, tt_t(&io->x), tt_t(&io->x), tt_t(tmp));
}

TEST(norm_moe_route_and_moe_ffn_add)
{
    struct rng r;
    rng_seed(&r, 35);
    const int E = 8, k = 2, d = 64, f = 48, ns[3] = { 37, 1, 5 };
    struct tt_experts ex;
    tt_experts_new(&ex, &r, DTYPE_BF16, E, d, f);
    struct tt router = tt_new(DTYPE_BF16, d, E), nw = tt_new(DTYPE_F32, d, 1);
    tt_randn(&router, &r, 0.5f);
    tt_randn(&nw, &r, 0.3f);
    for (int c = 0; c < 3; c++) {
        int n = ns[c];
        float offset = c == 2 ? 1.0f : 0.0f;
        struct tt x = tt_new(DTYPE_F32, d, n), tmp = tt_new(DTYPE_F32, d, n);
        tt_randn(&x, &r, 1.0f);
        struct moe_io io[4];   // ref fused, ref by hand, cpu fused, cpu by hand
        for (int i = 0; i < 4; i++) {
            moe_io_new(&io[i], n, d, E, k, &x);
            run_moe(i < 2 ? g_ref : g_cpu, i % 2 ? BY_HAND : FUSED, &io[i], &nw, offset, &router, k, ex.tg, ex.tu, ex.td, E,
                    &tmp);
        }
        size_t xb = (size_t)d * n * 4, ib = (size_t)k * n * 4;
        for (int b = 0; b < 2; b++) {
            struct moe_io *fu = &io[2 * b], *bh = &io[2 * b + 1];
            const char *who = b ? "cpu" : "ref";
            EXPECTF(!memcmp(fu->ids.p, bh->ids.p, ib) && !memcmp(fu->w.p, bh->w.p, ib),
                    "norm_moe_route n=%d: %s's route differs from its plain ops", n, who);
            EXPECTF(!memcmp(fu->xn.p, bh->xn.p, xb), "norm_moe_route n=%d: %s's xn differs from its rmsnorm", n, who);
            EXPECTF(!memcmp(fu->x.p, bh->x.p, xb), "moe_ffn_add n=%d: %s differs from its moe_ffn + add", n, who);
        }
        EXPECTF(!memcmp(io[2].ids.p, io[1].ids.p, ib), "norm_moe_route n=%d: cpu and ref pick different experts", n);
        EXPECTF(tt_close("norm_moe_route weights", io[2].w.p, io[1].w.p, (int64_t)k * n, 1e-6, 1e-5, 1e-12), "n=%d", n);
        EXPECTF(tt_close("norm_moe_route xn", io[2].xn.p, io[1].xn.p, (int64_t)d * n, 1e-6, 1e-5, 1e-12), "n=%d", n);
        EXPECTF(tt_close("moe_ffn_add", io[2].x.p, io[1].x.p, (int64_t)d * n, 1e-5, 1e-4, 1e-11), "n=%d", n);
        for (int i = 0; i < 4; i++) moe_io_free(&io[i]);
        tt_free(&x); tt_free(&tmp);
    }
    tt_experts_free(&ex);
    tt_free(&router); tt_free(&nw);
}

/* ==== the completed table ==== */

TEST(no_member_left_null)
{
    struct backend *bes[2] = { g_ref, g_cpu };
    for (int b = 0; b < 2; b++) {
        const struct backend_ops *o = bes[b]->ops;
        EXPECTF(o->matmul_n && o->norm_matmul_n && o->matmul_add && o->qk_rope_kv && o->matmul_glu &&
                o->norm_moe_route && o->moe_ffn_add && o->step_graph_begin && o->step_graph_end,
                "backend %s: a fused or step-graph member is NULL", o->name);
        // host backends record nothing: every step issues its ops
        struct batch_meta meta = { .n_tok = 1 };
        EXPECT(o->step_graph_begin(bes[b], &meta, NULL, NULL) == STEP_GRAPH_NONE);
    }
}

int main(void)
{
    if (backend_new("ref", NULL, &g_ref) || backend_new("cpu", &(struct backend_cfg){ .n_threads = 2 }, &g_cpu))
        return 1;
    RUN(no_member_left_null);
    RUN(matmul_n_and_norm_matmul_n);
    RUN(matmul_add);
    RUN(qk_rope_kv);
    RUN(matmul_glu);
    RUN(norm_moe_route_and_moe_ffn_add);
    backend_free(g_cpu);
    backend_free(g_ref);
    return test_summary();
}
