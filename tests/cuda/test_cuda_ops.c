/* test_cuda_ops: every op of the cuda backend against the ref backend (the oracle), over shapes
 * with odd sizes, real model dims, batches across the GEMV/cuBLAS switch, paged caches with
 * shuffled blocks, windows, soft-caps and GQA groups, and all float dtypes. Random inputs from
 * fixed seeds. Needs a GPU: run by `make test-cuda` on the GPU machine (not by `make test`).
 *
 * Tolerances: the GEMV path and elementwise ops compute in f32 (tight); the cuBLAS path rounds
 * activations to bf16/f16 (NMSE bound ~1e-4). Attention has its own test (test_cuda_attention.c).
 */
#include "cuda/cuda_util.h"

#include "backend/backend.h"
#include "base/mem.h"
#include "base/rng.h"

static const enum dtype float_dtypes[3] = { DTYPE_F32, DTYPE_F16, DTYPE_BF16 };

TEST(matmul)
{
    struct rng r;
    rng_seed(&r, 1);
    struct { int n, k, m; bool bias; } cases[] = {
        { 1, 17, 5, true }, { 3, 1000, 37, false }, { 8, 4096, 96, true }, { 9, 1024, 130, false },
        { 37, 256, 130, true }, { 64, 1024, 1000, false }, { 1, 3072, 1024, false }, { 5, 64, 19, true },
        { 200, 512, 256, false }, { 100, 2048, 64, true }, { 65, 1000, 1, false },   // narrow past 64 rows: hi + lo
        // 5-16 rows, k % 64 == 0: the skinny tensor-core kernel (odd m, warps with no k chunks, a
        // partial last n8 tile); k % 64 != 0 and more rows go to cuBLAS
        { 5, 1024, 300, true }, { 8, 4096, 520, false }, { 17, 2048, 1000, true }, { 32, 640, 777, false },
        { 12, 1088, 259, true }, { 9, 1000, 300, false }, { 48, 2048, 520, true },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int d = 0; d < 3; d++) {
            int n = cases[c].n, k = cases[c].k, m = cases[c].m;
            struct tt x = tt_new(DTYPE_F32, k, n), w = tt_new(float_dtypes[d], k, m), b = tt_new(float_dtypes[d], m, 1);
            struct tt o_ref = tt_new(DTYPE_F32, m, n), o = tt_new(DTYPE_F32, m, n);
            tt_randn(&x, &r, 1.0f);
            tt_randn(&w, &r, 1.0f);
            tt_randn(&b, &r, 1.0f);
            g_ref->ops->matmul(g_ref, tt_t(&o_ref), tt_t(&x), tt_t(&w), cases[c].bias ? tt_t(&b) : NULL);
            struct dt dx = dev_of(&x), dw = dev_of(&w), db = dev_of(&b), dout = dev_new(&o);
            g_cuda->ops->matmul(g_cuda, &dout.t, &dx.t, &dw.t, cases[c].bias ? &db.t : NULL);
            dev_get(&dout, &o);
            EXPECT(g_cuda->ops->sync(g_cuda) == STATUS_OK);
            char what[96];
            snprintf(what, sizeof what, "matmul n=%d k=%d m=%d %s", n, k, m, dtype_name(float_dtypes[d]));
            // f32-accurate activations (the GEMV, or narrow outputs' hi + lo halves); else rounded to
            // the weight dtype for cuBLAS
            bool gemv = n <= 4 || m <= 256;
            double nmse = gemv || float_dtypes[d] == DTYPE_F32 ? 1e-10 : 1e-4;
            double atol = gemv || float_dtypes[d] == DTYPE_F32 ? 1e-3 : 0.1 * sqrt((double)k) / 8;
            EXPECTF(tt_close(what, o.p, o_ref.p, (int64_t)n * m, atol, 1e-3, nmse), "%s", what);
            dev_free(&dx); dev_free(&dw); dev_free(&db); dev_free(&dout);
            tt_free(&x); tt_free(&w); tt_free(&b); tt_free(&o_ref); tt_free(&o);
        }
    }
}

/* Three projections (q/k/v) of k inputs to ms[i] outputs for n rows, weights and biases of dtype dt
 * drawn N(0, 1) projection by projection (weight, bias), on the host and the device, with device
 * outputs; outs/ws/bs are the arrays matmul_n takes (the second projection has no bias). */
struct proj3 {
    struct tt            w[3], b[3], o[3];
    struct dt            dw[3], db[3], dout[3];
    struct tensor       *outs[3];
    const struct tensor *ws[3], *bs[3];
};

static void proj3_new(struct proj3 *p, struct rng *r, enum dtype dt, int k, const int ms[3], int n)
{
    for (int i = 0; i < 3; i++) {
        p->w[i] = tt_new(dt, k, ms[i]);
        p->b[i] = tt_new(dt, ms[i], 1);
        p->o[i] = tt_new(DTYPE_F32, ms[i], n);
        tt_randn(&p->w[i], r, 1.0f);
        tt_randn(&p->b[i], r, 1.0f);
        p->dw[i] = dev_of(&p->w[i]);
        p->db[i] = dev_of(&p->b[i]);
        p->dout[i] = dev_new(&p->o[i]);
        p->outs[i] = &p->dout[i].t;
        p->ws[i] = &p->dw[i].t;
        p->bs[i] = i == 1 ? NULL : &p->db[i].t;
    }
}

static void proj3_free(struct proj3 *p)
{
    for (int i = 0; i < 3; i++) {
        dev_free(&p->dw[i]); dev_free(&p->db[i]); dev_free(&p->dout[i]);
        tt_free(&p->w[i]); tt_free(&p->b[i]); tt_free(&p->o[i]);
    }
}

/* Fused projections (q/k/v) equal separate matmuls, bit for bit, on the decode path. */
TEST(matmul_n)
{
    struct rng r;
    rng_seed(&r, 5);
    const int k = 512, ms[3] = { 256, 64, 64 };
    for (int n = 1; n <= 9; n += 4) {
        struct tt x = tt_new(DTYPE_F32, k, n), o_sep = tt_new(DTYPE_F32, 256, n);
        tt_randn(&x, &r, 1.0f);
        struct dt dx = dev_of(&x), dsep = dev_new(&o_sep);
        struct proj3 p;
        proj3_new(&p, &r, DTYPE_BF16, k, ms, n);
        g_cuda->ops->matmul_n(g_cuda, 3, p.outs, &dx.t, p.ws, p.bs);
        for (int i = 0; i < 3; i++) {
            struct tensor sep = tensor_2d(DTYPE_F32, ms[i], n, dsep.b, 0);
            g_cuda->ops->matmul(g_cuda, &sep, &dx.t, p.ws[i], p.bs[i]);
            struct tt got = tt_new(DTYPE_F32, ms[i], n), want = tt_new(DTYPE_F32, ms[i], n);
            dev_get(&p.dout[i], &got);
            g_cuda->ops->download(g_cuda, want.p, &sep, (size_t)ms[i] * n * 4);
            EXPECTF(!memcmp(got.p, want.p, (size_t)ms[i] * n * 4), "matmul_n n=%d weight %d differs from matmul", n, i);
            tt_free(&got); tt_free(&want);
        }
        proj3_free(&p);
        dev_free(&dx); dev_free(&dsep);
        tt_free(&x); tt_free(&o_sep);
    }
}

/* Projections lying back to back in one buffer (as model_prepare's arena lays a layer's q, k, v
 * out) take one cuBLAS GEMM from 17 to 256 rows (matmul_n_fused): each output, with its bias,
 * against ref's separate matmuls, and against cuda's own separate matmuls of the same weights,
 * within cuBLAS's bf16-input bounds; bf16 and f16; 300 rows check the unfused path beside it. */
TEST(matmul_n_fused)
{
    struct rng r;
    rng_seed(&r, 9);
    const int k = 1024, ms[3] = { 768, 320, 320 }, m_total = 768 + 320 + 320;
    const int ns[] = { 17, 64, 100, 256, 300 };
    for (int d = 1; d < 3; d++) {   // bf16, f16
        const enum dtype dt = float_dtypes[d];
        struct tt w_all = tt_new(dt, k, m_total);
        tt_randn(&w_all, &r, 1.0f);
        struct dt dw = dev_of(&w_all);
        struct tt b[3];
        struct dt db[3];
        struct tensor ws[3], hw[3];
        size_t off = 0;
        for (int i = 0; i < 3; i++) {
            ws[i] = tensor_2d(dt, k, ms[i], dw.b, off);
            hw[i] = tensor_2d(dt, k, ms[i], &w_all.b, off);
            off += (size_t)k * ms[i] * dtype_size(dt);
            b[i] = tt_new(dt, ms[i], 1);
            tt_randn(&b[i], &r, 1.0f);
            db[i] = dev_of(&b[i]);
        }
        const struct tensor *wp[3] = { &ws[0], &ws[1], &ws[2] }, *bp[3] = { &db[0].t, NULL, &db[2].t };
        for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++) {
            const int n = ns[c];
            struct tt x = tt_new(DTYPE_F32, k, n);
            tt_randn(&x, &r, 1.0f);
            struct dt dx = dev_of(&x);
            struct tt o[3], want[3], sep[3];
            struct dt dout[3], dsep[3];
            struct tensor *outs[3];
            for (int i = 0; i < 3; i++) {
                o[i] = tt_new(DTYPE_F32, ms[i], n);
                want[i] = tt_new(DTYPE_F32, ms[i], n);
                sep[i] = tt_new(DTYPE_F32, ms[i], n);
                dout[i] = dev_new(&o[i]);
                dsep[i] = dev_new(&sep[i]);
                outs[i] = &dout[i].t;
                g_ref->ops->matmul(g_ref, tt_t(&want[i]), tt_t(&x), &hw[i], i == 1 ? NULL : tt_t(&b[i]));
            }
            g_cuda->ops->matmul_n(g_cuda, 3, outs, &dx.t, wp, bp);
            for (int i = 0; i < 3; i++) g_cuda->ops->matmul(g_cuda, &dsep[i].t, &dx.t, wp[i], bp[i]);
            EXPECT(g_cuda->ops->sync(g_cuda) == STATUS_OK);
            for (int i = 0; i < 3; i++) {
                dev_get(&dout[i], &o[i]);
                dev_get(&dsep[i], &sep[i]);
                char what[96];
                snprintf(what, sizeof what, "matmul_n fused n=%d weight %d %s", n, i, dtype_name(dt));
                const double atol = 0.1 * sqrt((double)k) / 8;   // x rounded to the weights' dtype (matmul's bound)
                EXPECTF(tt_close(what, o[i].p, want[i].p, (int64_t)n * ms[i], atol, 1e-3, 1e-4), "%s vs ref", what);
                EXPECTF(tt_close(what, o[i].p, sep[i].p, (int64_t)n * ms[i], atol, 1e-3, 1e-4), "%s vs matmul", what);
                dev_free(&dout[i]); dev_free(&dsep[i]);
                tt_free(&o[i]); tt_free(&want[i]); tt_free(&sep[i]);
            }
            dev_free(&dx);
            tt_free(&x);
        }
        for (int i = 0; i < 3; i++) { dev_free(&db[i]); tt_free(&b[i]); }
        dev_free(&dw);
        tt_free(&w_all);
    }
}

/* A GEMV-path row is the same alone as in a batch of 8 (batch invariance on the decode path). */
TEST(gemv_batch_invariance)
{
    struct rng r;
    rng_seed(&r, 2);
    const int k = 1024, m = 300, n = 4;   // the most rows a matmul sends to the GEMV (matmul.cu's GEMV_DECODE_MAX_N)
    struct tt x = tt_new(DTYPE_F32, k, n), w = tt_new(DTYPE_BF16, k, m), o8 = tt_new(DTYPE_F32, m, n), o1 = tt_new(DTYPE_F32, m, 1);
    tt_randn(&x, &r, 1.0f);
    tt_randn(&w, &r, 1.0f);
    struct dt dx = dev_of(&x), dw = dev_of(&w), d8 = dev_new(&o8), d1 = dev_new(&o1);
    g_cuda->ops->matmul(g_cuda, &d8.t, &dx.t, &dw.t, NULL);
    dev_get(&d8, &o8);
    int same = 1;
    for (int i = 0; i < n; i++) {
        struct tensor xi = tensor_rows_view(&dx.t, i, 1);
        g_cuda->ops->matmul(g_cuda, &d1.t, &xi, &dw.t, NULL);
        dev_get(&d1, &o1);
        same &= !memcmp(o1.p, (float *)o8.p + (size_t)i * m, (size_t)m * 4);
    }
    EXPECT(same);
    dev_free(&dx); dev_free(&dw); dev_free(&d8); dev_free(&d1);
    tt_free(&x); tt_free(&w); tt_free(&o8); tt_free(&o1);
}

/* matmul_glu (gate and up GEMVs with the GLU in their epilogue) against ref's two matmuls and
 * glu; on the GEMV path also bit for bit against cuda's own matmul_n then glu. */
TEST(matmul_glu)
{
    struct rng r;
    rng_seed(&r, 8);
    struct { int n, k, m; enum act act; } cases[] = {
        { 1, 4096, 300, ACT_SILU }, { 3, 1000, 37, ACT_GELU_TANH }, { 4, 512, 520, ACT_SILU },
        { 6, 256, 300, ACT_SILU }, { 2, 36, 40, ACT_GELU_TANH },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int d = 0; d < 3; d++) {
            int n = cases[c].n, k = cases[c].k, m = cases[c].m;
            struct tt x = tt_new(DTYPE_F32, k, n), wg = tt_new(float_dtypes[d], k, m), wu = tt_new(float_dtypes[d], k, m);
            struct tt gr = tt_new(DTYPE_F32, m, n), u_ref = tt_new(DTYPE_F32, m, n), o = tt_new(DTYPE_F32, m, n);
            struct tt o2 = tt_new(DTYPE_F32, m, n);
            tt_randn(&x, &r, 1.0f);
            tt_randn(&wg, &r, 0.1f);
            tt_randn(&wu, &r, 0.1f);
            g_ref->ops->matmul(g_ref, tt_t(&gr), tt_t(&x), tt_t(&wg), NULL);
            g_ref->ops->matmul(g_ref, tt_t(&u_ref), tt_t(&x), tt_t(&wu), NULL);
            g_ref->ops->glu(g_ref, tt_t(&gr), tt_t(&gr), tt_t(&u_ref), cases[c].act);
            struct dt dx = dev_of(&x), dwg = dev_of(&wg), dwu = dev_of(&wu), dout = dev_new(&o), dup = dev_new(&o);
            g_cuda->ops->matmul_glu(g_cuda, &dout.t, &dup.t, NULL, &dx.t, NULL, 0.0f, 0.0f, &dwg.t, &dwu.t, cases[c].act);
            dev_get(&dout, &o);
            bool gemv = n <= 4;   // the GEMV path computes in f32; cuBLAS rounds x to the weight dtype
            double tol = gemv || float_dtypes[d] == DTYPE_F32 ? 1e-4 : 2e-2;
            EXPECTF(tt_close("matmul_glu", o.p, gr.p, (int64_t)m * n, tol, tol, gemv ? 1e-9 : 1e-4),
                    "case %zu dtype %s", c, dtype_name(float_dtypes[d]));
            // the same through the separate ops: bit-identical
            struct tensor *outs[2] = { &dout.t, &dup.t };
            const struct tensor *ws[2] = { &dwg.t, &dwu.t }, *bs[2] = { NULL, NULL };
            g_cuda->ops->matmul_n(g_cuda, 2, outs, &dx.t, ws, bs);
            g_cuda->ops->glu(g_cuda, &dout.t, &dout.t, &dup.t, cases[c].act);
            dev_get(&dout, &o2);
            EXPECTF(!memcmp(o.p, o2.p, sizeof(float) * (size_t)m * n), "matmul_glu vs matmul_n + glu, case %zu dtype %s", c,
                    dtype_name(float_dtypes[d]));
            // with the RMSNorm of x in front (fused into the GEMV on the decode path), without and
            // with Gemma's weight offset
            for (int off = 0; off < 2; off++) {
                struct tt nw = tt_new(float_dtypes[d], k, 1), xn = tt_new(DTYPE_F32, k, n);
                tt_randn(&nw, &r, 0.5f);   // larger weights blow the bf16 rounding of cuBLAS's input past tol
                g_ref->ops->rmsnorm(g_ref, tt_t(&xn), tt_t(&x), tt_t(&nw), 1e-6f, (float)off);
                g_ref->ops->matmul(g_ref, tt_t(&gr), tt_t(&xn), tt_t(&wg), NULL);
                g_ref->ops->matmul(g_ref, tt_t(&u_ref), tt_t(&xn), tt_t(&wu), NULL);
                g_ref->ops->glu(g_ref, tt_t(&gr), tt_t(&gr), tt_t(&u_ref), cases[c].act);
                struct dt dnw = dev_of(&nw), dxn = dev_new(&xn);
                g_cuda->ops->matmul_glu(g_cuda, &dout.t, &dup.t, &dxn.t, &dx.t, &dnw.t, 1e-6f, (float)off, &dwg.t,
                                        &dwu.t, cases[c].act);
                dev_get(&dout, &o);
                EXPECTF(tt_close("norm matmul_glu", o.p, gr.p, (int64_t)m * n, tol, tol, gemv ? 1e-9 : 1e-4),
                        "norm case %zu dtype %s offset %d", c, dtype_name(float_dtypes[d]), off);
                dev_free(&dnw); dev_free(&dxn);
                tt_free(&nw); tt_free(&xn);
            }
            dev_free(&dx); dev_free(&dwg); dev_free(&dwu); dev_free(&dout); dev_free(&dup);
            tt_free(&x); tt_free(&wg); tt_free(&wu); tt_free(&gr); tt_free(&u_ref); tt_free(&o); tt_free(&o2);
        }
    }
}

/* RMSNorm fused into the GEMV (decode) or run before matmul_n (larger n), against ref's
 * rmsnorm then matmul; and matmul_add (residual fused into the epilogue) against matmul + add. */
TEST(norm_matmul_n_and_add)
{
    struct rng r;
    rng_seed(&r, 7);
    struct { int n, k; } cases[] = { { 1, 4096 }, { 3, 1000 }, { 8, 512 }, { 1, 12288 }, { 9, 256 }, { 2, 24 } };
    const int ms[3] = { 200, 72, 40 };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int d = 0; d < 3; d++) {
            int n = cases[c].n, k = cases[c].k;
            enum dtype dt = float_dtypes[d];
            struct tt x = tt_new(DTYPE_F32, k, n), nw = tt_new(dt, k, 1), xn = tt_new(DTYPE_F32, k, n);
            tt_randn(&x, &r, 3.0f);
            tt_randn(&nw, &r, 1.0f);
            float off = (float)(c % 2);
            g_ref->ops->rmsnorm(g_ref, tt_t(&xn), tt_t(&x), tt_t(&nw), 1e-6f, off);
            struct dt dx = dev_of(&x), dnw = dev_of(&nw), dxn = dev_new(&xn);
            struct proj3 p;
            proj3_new(&p, &r, dt, k, ms, n);
            struct tt o_ref[3];
            for (int i = 0; i < 3; i++) {
                o_ref[i] = tt_new(DTYPE_F32, ms[i], n);
                g_ref->ops->matmul(g_ref, tt_t(&o_ref[i]), tt_t(&xn), tt_t(&p.w[i]), i == 1 ? NULL : tt_t(&p.b[i]));
            }
            g_cuda->ops->norm_matmul_n(g_cuda, 3, p.outs, &dxn.t, &dx.t, &dnw.t, 1e-6f, off, p.ws, p.bs);
            for (int i = 0; i < 3; i++) {
                dev_get(&p.dout[i], &p.o[i]);
                char what[96];
                snprintf(what, sizeof what, "norm_matmul_n n=%d k=%d w%d %s", n, k, i, dtype_name(dt));
                EXPECTF(tt_close(what, p.o[i].p, o_ref[i].p, (int64_t)n * ms[i], 2e-3 * sqrt((double)k / 64), 1e-3, 1e-9),
                        "%s", what);
            }
            // matmul_add: out (holding the previous result) += xn @ w0^T
            struct tt add_ref = tt_new(DTYPE_F32, ms[0], n), add_got = tt_new(DTYPE_F32, ms[0], n);
            struct dt dxn_ref = dev_of(&xn);
            g_ref->ops->matmul(g_ref, tt_t(&add_ref), tt_t(&xn), tt_t(&p.w[0]), NULL);
            for (int64_t i = 0; i < (int64_t)n * ms[0]; i++) ((float *)add_ref.p)[i] += ((float *)p.o[0].p)[i];
            g_cuda->ops->matmul_add(g_cuda, &p.dout[0].t, &dxn_ref.t, &p.dw[0].t);
            dev_get(&p.dout[0], &add_got);
            EXPECT(g_cuda->ops->sync(g_cuda) == STATUS_OK);
            EXPECTF(tt_close("matmul_add", add_got.p, add_ref.p, (int64_t)n * ms[0], 2e-3 * sqrt((double)k / 64), 1e-3,
                             1e-9), "matmul_add n=%d k=%d %s", n, k, dtype_name(dt));
            dev_free(&dxn_ref);
            tt_free(&add_ref); tt_free(&add_got);
            proj3_free(&p);
            for (int i = 0; i < 3; i++) tt_free(&o_ref[i]);
            dev_free(&dx); dev_free(&dnw); dev_free(&dxn);
            tt_free(&x); tt_free(&nw); tt_free(&xn);
        }
    }
}

TEST(elementwise)
{
    struct rng r;
    rng_seed(&r, 3);
    int dims[][2] = { { 1, 1 }, { 64, 3 }, { 1000, 7 }, { 4096, 2 }, { 128, 40 } };
    for (size_t c = 0; c < sizeof dims / sizeof dims[0]; c++) {
        int d = dims[c][0], n = dims[c][1];
        for (int wd = 0; wd < 3; wd++) {
            struct tt x = tt_new(DTYPE_F32, d, n), w = tt_new(float_dtypes[wd], d, 1), a = tt_new(DTYPE_F32, d, n),
                      b = tt_new(DTYPE_F32, d, n);
            tt_randn(&x, &r, 3.0f);
            tt_randn(&w, &r, 1.0f);
            for (int off = 0; off < 2; off++) {
                g_ref->ops->rmsnorm(g_ref, tt_t(&a), tt_t(&x), tt_t(&w), 1e-6f, (float)off);
                struct dt dx = dev_of(&x), dw = dev_of(&w), dout = dev_new(&b);
                g_cuda->ops->rmsnorm(g_cuda, &dout.t, &dx.t, &dw.t, 1e-6f, (float)off);
                dev_get(&dout, &b);
                EXPECTF(tt_close("rmsnorm", b.p, a.p, (int64_t)d * n, 1e-5, 1e-4, 1e-10), "rmsnorm d=%d %s", d,
                        dtype_name(float_dtypes[wd]));
                dev_free(&dx); dev_free(&dw); dev_free(&dout);
            }
            tt_free(&w); tt_free(&a); tt_free(&b);
            tt_free(&x);
        }
        // glu, add, softcap
        struct tt g = tt_new(DTYPE_F32, d, n), u = tt_new(DTYPE_F32, d, n), a = tt_new(DTYPE_F32, d, n), b = tt_new(DTYPE_F32, d, n);
        tt_randn(&g, &r, 3.0f);
        tt_randn(&u, &r, 1.0f);
        struct dt dg = dev_of(&g), du = dev_of(&u), dout = dev_new(&a);
        for (int act = 0; act < 2; act++) {
            g_ref->ops->glu(g_ref, tt_t(&a), tt_t(&g), tt_t(&u), (enum act)act);
            g_cuda->ops->glu(g_cuda, &dout.t, &dg.t, &du.t, (enum act)act);
            dev_get(&dout, &b);
            EXPECTF(tt_close("glu", b.p, a.p, (int64_t)d * n, 1e-5, 1e-4, 1e-10), "glu act %d", act);
        }
        g_ref->ops->add(g_ref, tt_t(&a), tt_t(&g), tt_t(&u));
        g_cuda->ops->add(g_cuda, &dout.t, &dg.t, &du.t);
        dev_get(&dout, &b);
        EXPECT(tt_close("add", b.p, a.p, (int64_t)d * n, 0, 0, 0));
        g_ref->ops->softcap(g_ref, tt_t(&g), 2.5f);
        g_cuda->ops->softcap(g_cuda, &dg.t, 2.5f);
        dev_get(&dg, &b);
        EXPECT(tt_close("softcap", b.p, g.p, (int64_t)d * n, 1e-5, 1e-5, 1e-10));
        dev_free(&dg); dev_free(&du); dev_free(&dout);
        tt_free(&g); tt_free(&u); tt_free(&a); tt_free(&b);
    }
}

TEST(embed_rope_argmax)
{
    struct rng r;
    rng_seed(&r, 4);
    const int V = 1001, d = 96, n = 13;
    int32_t ids[13], pos[13], seq[13] = { 0 };
    for (int i = 0; i < n; i++) { ids[i] = (int32_t)(rng_next(&r) % V); pos[i] = (int32_t)(rng_next(&r) % 5000); }
    struct batch_meta m = { .n_tok = n, .tok_id = ids, .tok_pos = pos, .tok_seq = seq, .n_seq = 1,
                            .seq_len = (int32_t[]){ 5000 }, .seq_block0 = (int32_t[]){ 0, 0 }, .block_size = 16,
                            .tok_slot = (int64_t[13]){ 0 }, .out_tok = ids };
    g_cuda->ops->batch_begin(g_cuda, &m);
    g_ref->ops->batch_begin(g_ref, &m);
    for (int wd = 0; wd < 3; wd++) {
        struct tt tab = tt_new(float_dtypes[wd], d, V), a = tt_new(DTYPE_F32, d, n), b = tt_new(DTYPE_F32, d, n);
        tt_randn(&tab, &r, 1.0f);
        g_ref->ops->embed(g_ref, tt_t(&a), tt_t(&tab), &m, 1.5f);
        struct dt dtab = dev_of(&tab), dout = dev_new(&b);
        g_cuda->ops->embed(g_cuda, &dout.t, &dtab.t, &m, 1.5f);
        dev_get(&dout, &b);
        EXPECT(tt_close("embed", b.p, a.p, (int64_t)d * n, 0, 1e-6, 1e-12));
        dev_free(&dtab); dev_free(&dout);
        tt_free(&tab); tt_free(&a); tt_free(&b);
    }
    // rope: heads of 64 with 48 rotating dims, both pairings
    const int H = 3, hd = 64, rot = 48;
    struct tt x = tt_new(DTYPE_F32, H * hd, n), a = tt_new(DTYPE_F32, H * hd, n), f = tt_new(DTYPE_F32, rot / 2, 1);
    tt_randn(&x, &r, 1.0f);
    for (int i = 0; i < rot / 2; i++) ((float *)f.p)[i] = powf(10000.0f, -2.0f * i / rot);
    for (int il = 0; il < 2; il++) {
        struct rope_params rp = { .head_dim = hd, .rot_dim = rot, .mscale = 1.1f, .interleaved = il };
        struct dt dx = dev_of(&x), df = dev_of(&f);
        tt_copy(&a, &x);
        g_ref->ops->rope(g_ref, tt_t(&a), H, tt_t(&f), &rp, &m);
        g_cuda->ops->rope(g_cuda, &dx.t, H, &df.t, &rp, &m);
        struct tt b = tt_new(DTYPE_F32, H * hd, n);
        dev_get(&dx, &b);
        EXPECTF(tt_close("rope", b.p, a.p, (int64_t)H * hd * n, 2e-4, 1e-4, 1e-9), "rope interleaved=%d", il);
        dev_free(&dx); dev_free(&df);
        tt_free(&b);
    }
    // argmax with ties to the lower index
    struct tt lg = tt_new(DTYPE_F32, V, n);
    tt_randn(&lg, &r, 1.0f);
    ((float *)lg.p)[V + 7] = 100.0f;
    ((float *)lg.p)[V + 900] = 100.0f;
    int32_t want[13], got[13];
    g_ref->ops->argmax(g_ref, want, tt_t(&lg));
    struct dt dlg = dev_of(&lg);
    g_cuda->ops->argmax(g_cuda, got, &dlg.t);
    EXPECT(!memcmp(want, got, sizeof want) && got[1] == 7);
    dev_free(&dlg);
    // a vocabulary-sized row (the vectorized path): ties across threads, an all-equal row
    {
        const int V2 = 40004;
        struct tt big = tt_new(DTYPE_F32, V2, 3);
        tt_randn(&big, &r, 1.0f);
        float *b = big.p;
        b[39999] = b[40003] = 50.0f;
        b[V2 + 5] = b[V2 + 20001] = 50.0f;
        for (int i = 0; i < V2; i++) b[2 * V2 + i] = -1.0f;
        int32_t w2[3], g2[3];
        g_ref->ops->argmax(g_ref, w2, tt_t(&big));
        struct dt dbig = dev_of(&big);
        g_cuda->ops->argmax(g_cuda, g2, &dbig.t);
        EXPECTF(!memcmp(w2, g2, sizeof w2) && g2[0] == 39999 && g2[1] == 5 && g2[2] == 0, "argmax %d %d %d", g2[0], g2[1],
                g2[2]);
        dev_free(&dbig);
        tt_free(&big);
    }
    tt_free(&lg); tt_free(&x); tt_free(&a); tt_free(&f);
}

/* The fused per-head norm + rope + cache write against ref's three ops, for q/k norms on and off,
 * partial rotary, GQA and each cache dtype. The k rows come out of a different rope (f32 sincosf
 * vs ref's double), so their cache values may round to the neighbouring fp8 code; v is exact. */
TEST(qk_rope_kv)
{
    struct rng r;
    rng_seed(&r, 6);
    struct { int n, H, KV, hd, rot; bool norm; enum dtype kvdt; } cases[] = {
        { 1, 32, 8, 128, 128, true, DTYPE_BF16 }, { 7, 4, 2, 64, 48, false, DTYPE_F32 },
        { 5, 8, 8, 256, 256, true, DTYPE_F16 },   { 3, 6, 2, 80, 80, true, DTYPE_BF16 },
        { 1, 32, 8, 128, 128, true, DTYPE_F8E4M3 }, { 7, 4, 2, 64, 48, false, DTYPE_F8E4M3 },
        { 3, 6, 2, 80, 80, true, DTYPE_F8E4M3 },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int n = cases[c].n, H = cases[c].H, KV = cases[c].KV, hd = cases[c].hd, rot = cases[c].rot;
        const int bs = 16, n_slots = 64;
        int32_t pos[8], seq[8] = { 0 };
        int64_t slot[8];
        for (int i = 0; i < n; i++) { pos[i] = (int32_t)(rng_next(&r) % 9000); slot[i] = (int64_t)((i * 37 + 5) % n_slots); }
        struct batch_meta m = { .n_tok = n, .tok_id = pos, .tok_pos = pos, .tok_seq = seq, .tok_slot = slot, .n_seq = 1,
                                .seq_len = (int32_t[]){ 9000 }, .seq_block0 = (int32_t[]){ 0, 0 }, .block_size = bs,
                                .out_tok = pos };
        struct tt q = tt_new(DTYPE_F32, H * hd, n), k = tt_new(DTYPE_F32, KV * hd, n), v = tt_new(DTYPE_F32, KV * hd, n);
        struct tt qn = tt_new(DTYPE_BF16, hd, 1), kn = tt_new(DTYPE_BF16, hd, 1), f = tt_new(DTYPE_F32, rot / 2, 1);
        struct tt kc = tt_new(cases[c].kvdt, KV * hd, n_slots), vc = tt_new(cases[c].kvdt, KV * hd, n_slots);
        tt_randn(&q, &r, 2.0f); tt_randn(&k, &r, 2.0f); tt_randn(&v, &r, 1.0f);
        tt_randn(&qn, &r, 0.3f); tt_randn(&kn, &r, 0.3f);
        memset(kc.p, 0, tensor_bytes(tt_t(&kc)));
        memset(vc.p, 0, tensor_bytes(tt_t(&vc)));
        for (int i = 0; i < rot / 2; i++) ((float *)f.p)[i] = powf(1e6f, -2.0f * i / rot);
        struct dt dq = dev_of(&q), dk = dev_of(&k), dv = dev_of(&v), dqn = dev_of(&qn), dkn = dev_of(&kn);
        struct dt df = dev_of(&f), dkc = dev_of(&kc), dvc = dev_of(&vc);
        struct rope_params rp = { .head_dim = hd, .rot_dim = rot, .mscale = 1.0f, .interleaved = false };
        const float eps = 1e-6f;
        // ref: the three ops
        g_ref->ops->batch_begin(g_ref, &m);
        if (cases[c].norm) {
            struct tensor qv = tensor_reshape(tt_t(&q), 2, (int64_t[]){ hd, (int64_t)n * H });
            struct tensor kv2 = tensor_reshape(tt_t(&k), 2, (int64_t[]){ hd, (int64_t)n * KV });
            g_ref->ops->rmsnorm(g_ref, &qv, &qv, tt_t(&qn), eps, 0.0f);
            g_ref->ops->rmsnorm(g_ref, &kv2, &kv2, tt_t(&kn), eps, 0.0f);
        }
        g_ref->ops->rope(g_ref, tt_t(&q), H, tt_t(&f), &rp, &m);
        g_ref->ops->rope(g_ref, tt_t(&k), KV, tt_t(&f), &rp, &m);
        struct kv_layer lr = { *tt_t(&kc), *tt_t(&vc) }, ld = { dkc.t, dvc.t };
        g_ref->ops->kv_write(g_ref, &lr, tt_t(&k), tt_t(&v), &m);
        // cuda: one op
        g_cuda->ops->batch_begin(g_cuda, &m);
        g_cuda->ops->qk_rope_kv(g_cuda, &dq.t, &dk.t, &dv.t, cases[c].norm ? &dqn.t : NULL, cases[c].norm ? &dkn.t : NULL,
                                eps, 0.0f, H, KV, &df.t, &rp, &ld, &m);
        struct tt q2 = tt_new(DTYPE_F32, H * hd, n), kc2 = tt_new(cases[c].kvdt, KV * hd, n_slots);
        struct tt vc2 = tt_new(cases[c].kvdt, KV * hd, n_slots);
        dev_get(&dq, &q2); dev_get(&dkc, &kc2); dev_get(&dvc, &vc2);
        EXPECT(g_cuda->ops->sync(g_cuda) == STATUS_OK);
        EXPECTF(tt_close("qk_rope_kv q", q2.p, q.p, (int64_t)H * hd * n, 2e-4, 1e-4, 1e-9), "case %zu", c);
        // the cache rows hold dtype-rounded values: compare as f32
        struct tt a = tt_new(DTYPE_F32, KV * hd, n_slots), b = tt_new(DTYPE_F32, KV * hd, n_slots);
        size_t n_el = (size_t)KV * hd * n_slots;
        dtype_to_f32(cases[c].kvdt, kc.p, a.p, n_el);
        dtype_to_f32(cases[c].kvdt, kc2.p, b.p, n_el);
        if (cases[c].kvdt == DTYPE_F8E4M3) {
            // codes equal or neighbours (same sign), and neighbours rare
            int far = 0, near = 0;
            for (size_t i = 0; i < n_el; i++) {
                int x = ((uint8_t *)kc.p)[i], y = ((uint8_t *)kc2.p)[i];
                if (x == y) continue;
                if ((x ^ y) & 0x80 || abs(x - y) > 1) far++;
                else near++;
            }
            EXPECTF(far == 0 && near <= (int)(n_el / 50), "qk_rope_kv fp8 k cache, case %zu: %d codes off by more than 1, "
                    "%d neighbours of %zu", c, far, near, n_el);
        } else {
            EXPECTF(tt_close("qk_rope_kv k cache", b.p, a.p, (int64_t)KV * hd * n_slots, 2e-2, 1e-2, 1e-6), "case %zu", c);
        }
        dtype_to_f32(cases[c].kvdt, vc.p, a.p, n_el);
        dtype_to_f32(cases[c].kvdt, vc2.p, b.p, n_el);
        EXPECTF(!memcmp(a.p, b.p, tensor_bytes(tt_t(&a))), "qk_rope_kv v cache, case %zu", c);
        // kv_write alone (the unfused path): ref's rotated k and v into a zeroed cache, bit for bit
        struct dt rk = dev_of(&k), zk = dev_new(&kc), zv = dev_new(&vc);
        struct tt zero = tt_new(cases[c].kvdt, KV * hd, n_slots);
        g_cuda->ops->upload(g_cuda, &zk.t, zero.p, tensor_bytes(tt_t(&zero)));
        g_cuda->ops->upload(g_cuda, &zv.t, zero.p, tensor_bytes(tt_t(&zero)));
        struct kv_layer lz = { zk.t, zv.t };
        g_cuda->ops->kv_write(g_cuda, &lz, &rk.t, &dv.t, &m);
        dev_get(&zk, &kc2);
        dev_get(&zv, &vc2);
        EXPECTF(!memcmp(kc2.p, kc.p, tensor_bytes(tt_t(&kc))) && !memcmp(vc2.p, vc.p, tensor_bytes(tt_t(&vc))),
                "kv_write %s, case %zu", dtype_name(cases[c].kvdt), c);
        dev_free(&rk); dev_free(&zk); dev_free(&zv);
        tt_free(&zero);
        dev_free(&dq); dev_free(&dk); dev_free(&dv); dev_free(&dqn); dev_free(&dkn); dev_free(&df); dev_free(&dkc);
        dev_free(&dvc);
        tt_free(&q); tt_free(&k); tt_free(&v); tt_free(&qn); tt_free(&kn); tt_free(&f); tt_free(&kc); tt_free(&vc);
        tt_free(&q2); tt_free(&kc2); tt_free(&vc2); tt_free(&a); tt_free(&b);
    }
}

/* kv_write into an f8e4m3 cache rounds as the host's f32_to_e4m3 does (CUDA's satfinite convert):
 * ties to even at every midpoint, saturation at +-448 (infinities too), subnormals, NaN. */
TEST(kv_write_fp8_rounding)
{
    const int row = 384, n = 6;
    struct tt k = tt_new(DTYPE_F32, row, n), v = tt_new(DTYPE_F32, row, n);
    float *kf = k.p, *vf = v.p;
    int c = 0;
    for (int code = 0; code < 0x7e; code++) {   // midpoints between neighbours (ties) and either side
        float lo = e4m3_to_f32((uint8_t)code), hi = e4m3_to_f32((uint8_t)(code + 1)), mid = (lo + hi) / 2;
        kf[c++] = mid;
        kf[c++] = -mid;
        kf[c++] = nextafterf(mid, 0.0f);
    }
    const float special[] = { 448.0f, -448.0f, 463.9f, 464.0f, -464.0f, 500.0f, 1e30f, INFINITY, -INFINITY, NAN,
                              0.0f, -0.0f, 0.0009765625f, -0.0009765625f, 0.00097656f, 1e-40f, 0.0146484375f };
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) kf[c++] = special[i];
    struct rng r;
    rng_seed(&r, 31);
    while (c < row * n) kf[c++] = ldexpf(rng_normal(&r), (int)(rng_next(&r) % 24) - 14);
    for (int i = 0; i < row * n; i++) vf[i] = -kf[row * n - 1 - i];
    int64_t slot[6] = { 9, 0, 3, 15, 4, 7 };
    struct batch_meta m = { .n_tok = n, .tok_slot = slot, .tok_pos = (int32_t[]){ 0, 1, 2, 3, 4, 5 },
                            .tok_seq = (int32_t[]){ 0, 0, 0, 0, 0, 0 }, .tok_id = (int32_t[]){ 0, 1, 2, 3, 4, 5 },
                            .out_tok = (int32_t[]){ 0 }, .n_seq = 1, .seq_len = (int32_t[]){ 6 },
                            .seq_block0 = (int32_t[]){ 0, 1 }, .block_ids = (int32_t[]){ 0 }, .block_size = 16 };
    struct tt kc = tt_new(DTYPE_F8E4M3, row, 16), vc = tt_new(DTYPE_F8E4M3, row, 16);
    struct tt kc2 = tt_new(DTYPE_F8E4M3, row, 16), vc2 = tt_new(DTYPE_F8E4M3, row, 16);
    struct kv_layer lr = { *tt_t(&kc), *tt_t(&vc) };
    g_ref->ops->kv_write(g_ref, &lr, tt_t(&k), tt_t(&v), &m);
    struct dt dk = dev_of(&k), dv = dev_of(&v), dkc = dev_of(&kc2), dvc = dev_of(&vc2);
    struct kv_layer ld = { dkc.t, dvc.t };
    g_cuda->ops->batch_begin(g_cuda, &m);
    g_cuda->ops->kv_write(g_cuda, &ld, &dk.t, &dv.t, &m);
    dev_get(&dkc, &kc2);
    dev_get(&dvc, &vc2);
    EXPECT(g_cuda->ops->sync(g_cuda) == STATUS_OK);
    int bad = 0;
    for (int i = 0; i < row * 16; i++) {
        const uint8_t *a[2] = { kc.p, vc.p }, *b[2] = { kc2.p, vc2.p };
        for (int j = 0; j < 2; j++) {
            bool both_nan = (a[j][i] & 0x7f) == 0x7f && (b[j][i] & 0x7f) == 0x7f;
            if (a[j][i] != b[j][i] && !both_nan && bad++ < 5)
                fprintf(stderr, "    %s[%d]: cuda 0x%02x, host 0x%02x\n", j ? "v" : "k", i, b[j][i], a[j][i]);
        }
    }
    EXPECTF(bad == 0, "kv_write fp8: %d codes differ from the host's rounding", bad);
    dev_free(&dk); dev_free(&dv); dev_free(&dkc); dev_free(&dvc);
    tt_free(&k); tt_free(&v); tt_free(&kc); tt_free(&vc); tt_free(&kc2); tt_free(&vc2);
}

TEST(moe)
{
    struct rng r;
    rng_seed(&r, 10);
    const int E = 8, k = 2, dm = 64, f = 48;
    for (int d = 0; d < 3; d++) {
        struct tt gw[8], uw[8], dw[8];
        struct tensor gt[8], ut[8], dt_[8], dgt[8], dut[8], ddt[8];
        struct dt dg[8], du[8], dd[8];
        for (int e = 0; e < E; e++) {
            gw[e] = tt_new(float_dtypes[d], dm, f);
            uw[e] = tt_new(float_dtypes[d], dm, f);
            dw[e] = tt_new(float_dtypes[d], f, dm);
            tt_randn(&gw[e], &r, 0.2f);
            tt_randn(&uw[e], &r, 0.2f);
            tt_randn(&dw[e], &r, 0.2f);
            gt[e] = *tt_t(&gw[e]); ut[e] = *tt_t(&uw[e]); dt_[e] = *tt_t(&dw[e]);
            dg[e] = dev_of(&gw[e]); du[e] = dev_of(&uw[e]); dd[e] = dev_of(&dw[e]);
            dgt[e] = dg[e].t; dut[e] = du[e].t; ddt[e] = dd[e].t;
        }
        // the device-indexed GEMV path (3 and 37 tokens: up to 64 by default) and the grouped cuBLAS path
        int sizes[3] = { 3, 37, 70 };
        for (int si = 0; si < 3; si++) {
            int n = sizes[si];
            struct tt x = tt_new(DTYPE_F32, dm, n), lg = tt_new(DTYPE_F32, E, n);
            struct tt ids = tt_new(DTYPE_I32, k, n), w = tt_new(DTYPE_F32, k, n), ids2 = tt_new(DTYPE_I32, k, n),
                      w2 = tt_new(DTYPE_F32, k, n);
            struct tt a = tt_new(DTYPE_F32, dm, n), b = tt_new(DTYPE_F32, dm, n);
            tt_randn(&x, &r, 1.0f);
            tt_randn(&lg, &r, 1.0f);
            g_ref->ops->moe_route(g_ref, tt_t(&ids), tt_t(&w), tt_t(&lg), k, true);
            struct dt dx = dev_of(&x), dlg = dev_of(&lg), dids = dev_new(&ids), dw_ = dev_new(&w), dout = dev_new(&a);
            g_cuda->ops->moe_route(g_cuda, &dids.t, &dw_.t, &dlg.t, k, true);
            dev_get(&dids, &ids2);
            dev_get(&dw_, &w2);
            EXPECT(!memcmp(ids.p, ids2.p, sizeof(int32_t) * (size_t)(n * k)));
            EXPECT(tt_close("moe_route", w2.p, w.p, (int64_t)n * k, 1e-6, 1e-5, 1e-12));
            for (int act = 0; act < 2; act++) {
                g_ref->ops->moe_ffn(g_ref, tt_t(&b), tt_t(&x), tt_t(&ids), tt_t(&w), gt, ut, dt_, E, (enum act)act);
                g_cuda->ops->moe_ffn(g_cuda, &dout.t, &dx.t, &dids.t, &dw_.t, dgt, dut, ddt, E, (enum act)act);
                dev_get(&dout, &a);
                bool tight = n <= 16 || float_dtypes[d] == DTYPE_F32;
                EXPECTF(tt_close("moe_ffn", a.p, b.p, (int64_t)dm * n, tight ? 1e-4 : 0.1, tight ? 1e-3 : 1e-2, tight ? 1e-9 : 1e-4),
                        "moe_ffn n=%d %s act %d", n, dtype_name(float_dtypes[d]), act);
            }
            dev_free(&dx); dev_free(&dlg); dev_free(&dids); dev_free(&dw_); dev_free(&dout);
            tt_free(&x); tt_free(&lg); tt_free(&ids); tt_free(&w); tt_free(&ids2); tt_free(&w2); tt_free(&a); tt_free(&b);
        }
        for (int e = 0; e < E; e++) {
            dev_free(&dg[e]); dev_free(&du[e]); dev_free(&dd[e]);
            tt_free(&gw[e]); tt_free(&uw[e]); tt_free(&dw[e]);
        }
    }
}

/* Experts of one MoE layer on the host (ops_util.h's tt_experts: ref's views) and their copies on
 * the device (cuda's views). */
struct experts {
    struct tt_experts h;
    struct dt         dg[TT_MAX_EXPERTS], du[TT_MAX_EXPERTS], dd[TT_MAX_EXPERTS];
    struct tensor     tg[TT_MAX_EXPERTS], tu[TT_MAX_EXPERTS], td[TT_MAX_EXPERTS];
};

static void experts_new(struct experts *x, struct rng *r, enum dtype dt, int E, int dm, int f)
{
    tt_experts_new(&x->h, r, dt, E, dm, f);
    for (int e = 0; e < E; e++) {
        x->dg[e] = dev_of(&x->h.g[e]); x->du[e] = dev_of(&x->h.u[e]); x->dd[e] = dev_of(&x->h.d[e]);
        x->tg[e] = x->dg[e].t; x->tu[e] = x->du[e].t; x->td[e] = x->dd[e].t;
    }
}

static void experts_free(struct experts *x)
{
    for (int e = 0; e < x->h.n; e++) { dev_free(&x->dg[e]); dev_free(&x->du[e]); dev_free(&x->dd[e]); }
    tt_experts_free(&x->h);
}

/* norm_moe_route (RMSNorm, router GEMV and top-k in one launch on the decode path) against ref's
 * rmsnorm, matmul and moe_route: xn and the logits within f32 rounding, and the top-k exactly what
 * ref's moe_route picks from cuda's own logits (so a near tie cannot flip the comparison). */
TEST(norm_moe_route)
{
    struct rng r;
    rng_seed(&r, 11);
    struct { int n, d, E, k; bool norm; float w_offset; } cases[] = {
        { 1, 2048, 128, 8, true, 0.0f }, { 3, 64, 8, 2, true, 0.0f }, { 5, 136, 60, 4, false, 1.0f },
        { 16, 520, 33, 1, true, 0.0f }, { 2, 4096, 300, 32, true, 0.0f }, { 37, 64, 8, 2, true, 0.0f },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int di = 0; di < 3; di++) {
            int n = cases[c].n, d = cases[c].d, E = cases[c].E, k = cases[c].k;
            enum dtype dt = float_dtypes[di];
            struct tt x = tt_new(DTYPE_F32, d, n), nw = tt_new(dt, d, 1), rw = tt_new(dt, d, E);
            struct tt xn_ref = tt_new(DTYPE_F32, d, n), lg_ref = tt_new(DTYPE_F32, E, n), xn = tt_new(DTYPE_F32, d, n);
            struct tt lg = tt_new(DTYPE_F32, E, n), ids = tt_new(DTYPE_I32, k, n), w = tt_new(DTYPE_F32, k, n);
            struct tt ids_ref = tt_new(DTYPE_I32, k, n), w_ref = tt_new(DTYPE_F32, k, n);
            tt_randn(&x, &r, 2.0f);
            tt_randn(&nw, &r, 0.5f);
            tt_randn(&rw, &r, 0.1f);
            g_ref->ops->rmsnorm(g_ref, tt_t(&xn_ref), tt_t(&x), tt_t(&nw), 1e-6f, cases[c].w_offset);
            g_ref->ops->matmul(g_ref, tt_t(&lg_ref), tt_t(&xn_ref), tt_t(&rw), NULL);
            struct dt dx = dev_of(&x), dnw = dev_of(&nw), drw = dev_of(&rw), dxn = dev_new(&xn), dlg = dev_new(&lg),
                      dids = dev_new(&ids), dw = dev_new(&w);
            g_cuda->ops->norm_moe_route(g_cuda, &dids.t, &dw.t, &dlg.t, &dxn.t, &dx.t, &dnw.t, 1e-6f, cases[c].w_offset,
                                        &drw.t, k, cases[c].norm);
            dev_get(&dxn, &xn);
            dev_get(&dlg, &lg);
            dev_get(&dids, &ids);
            dev_get(&dw, &w);
            EXPECT(g_cuda->ops->sync(g_cuda) == STATUS_OK);
            char what[96];
            snprintf(what, sizeof what, "norm_moe_route n=%d d=%d E=%d k=%d %s", n, d, E, k, dtype_name(dt));
            EXPECTF(tt_close("xn", xn.p, xn_ref.p, (int64_t)d * n, 1e-5, 1e-5, 1e-12), "%s: xn", what);
            EXPECTF(tt_close("logits", lg.p, lg_ref.p, (int64_t)E * n, 1e-4, 1e-4, 1e-10), "%s: logits", what);
            g_ref->ops->moe_route(g_ref, tt_t(&ids_ref), tt_t(&w_ref), tt_t(&lg), k, cases[c].norm);
            EXPECTF(!memcmp(ids.p, ids_ref.p, sizeof(int32_t) * (size_t)(n * k)), "%s: ids", what);
            EXPECTF(tt_close("weights", w.p, w_ref.p, (int64_t)n * k, 1e-6, 1e-5, 1e-12), "%s: weights", what);
            dev_free(&dx); dev_free(&dnw); dev_free(&drw); dev_free(&dxn); dev_free(&dlg); dev_free(&dids); dev_free(&dw);
            tt_free(&x); tt_free(&nw); tt_free(&rw); tt_free(&xn_ref); tt_free(&lg_ref); tt_free(&xn); tt_free(&lg);
            tt_free(&ids); tt_free(&w); tt_free(&ids_ref); tt_free(&w_ref);
        }
    }
}

/* moe_ffn_add (x += experts, the residual add in the down kernel's epilogue) against ref's moe_ffn
 * then add, and bit for bit against cuda's own moe_ffn then add: odd sizes, k up to all experts,
 * expert rows longer than one pass of the down kernel, a width that is not a multiple of 8 (the
 * scalar path), 37 tokens (the device path) and prefill-sized batches (70 to 1000 tokens, up to 64
 * experts, some with no rows and some with one: the grouped path). */
TEST(moe_ffn_add)
{
    struct rng r;
    rng_seed(&r, 12);
    struct { int n, dm, f, E, k; bool norm; } cases[] = {
        { 1, 64, 48, 8, 2, true }, { 3, 40, 24, 8, 8, false }, { 5, 72, 520, 6, 3, true }, { 16, 64, 48, 8, 1, true },
        { 2, 64, 50, 8, 2, true }, { 37, 64, 48, 8, 2, false }, { 70, 64, 48, 8, 2, false }, { 1, 2048, 768, 8, 8, true },
        { 300, 72, 520, 6, 3, true }, { 129, 40, 24, 64, 2, false }, { 1000, 64, 50, 16, 4, true },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int di = 0; di < 3; di++) {
            int n = cases[c].n, dm = cases[c].dm, f = cases[c].f, E = cases[c].E, k = cases[c].k;
            struct experts ex;
            experts_new(&ex, &r, float_dtypes[di], E, dm, f);
            struct tt x = tt_new(DTYPE_F32, dm, n), xn = tt_new(DTYPE_F32, dm, n), lg = tt_new(DTYPE_F32, E, n);
            struct tt ids = tt_new(DTYPE_I32, k, n), w = tt_new(DTYPE_F32, k, n), b = tt_new(DTYPE_F32, dm, n);
            struct tt a = tt_new(DTYPE_F32, dm, n), a2 = tt_new(DTYPE_F32, dm, n);
            tt_randn(&x, &r, 1.0f);
            tt_randn(&xn, &r, 1.0f);
            tt_randn(&lg, &r, 1.0f);
            g_ref->ops->moe_route(g_ref, tt_t(&ids), tt_t(&w), tt_t(&lg), k, cases[c].norm);
            g_ref->ops->moe_ffn(g_ref, tt_t(&b), tt_t(&xn), tt_t(&ids), tt_t(&w), ex.h.tg, ex.h.tu, ex.h.td, E, ACT_SILU);
            g_ref->ops->add(g_ref, tt_t(&b), tt_t(&b), tt_t(&x));
            struct dt dx = dev_of(&x), dxn = dev_of(&xn), dids = dev_of(&ids), dw = dev_of(&w), dp = dev_new(&a);
            g_cuda->ops->moe_ffn_add(g_cuda, &dx.t, &dxn.t, &dids.t, &dw.t, ex.tg, ex.tu, ex.td, E, ACT_SILU);
            dev_get(&dx, &a);
            g_cuda->ops->upload(g_cuda, &dx.t, x.p, sizeof(float) * (size_t)dm * n);
            g_cuda->ops->moe_ffn(g_cuda, &dp.t, &dxn.t, &dids.t, &dw.t, ex.tg, ex.tu, ex.td, E, ACT_SILU);
            g_cuda->ops->add(g_cuda, &dx.t, &dx.t, &dp.t);
            dev_get(&dx, &a2);
            EXPECT(g_cuda->ops->sync(g_cuda) == STATUS_OK);
            bool tight = n <= 16 || float_dtypes[di] == DTYPE_F32;
            // 16-bit inputs round the GLU rows too: half an ulp of a large hidden value moves an output by
            // up to ~0.1 here (tests/ops/test_ops.c moe_ffn_vs_ref has the same bound on the cpu's bf16)
            EXPECTF(tt_close("moe_ffn_add", a.p, b.p, (int64_t)dm * n, tight ? 1e-4 : 0.1, tight ? 1e-3 : 1e-2, tight ? 1e-9 : 1e-4),
                    "moe_ffn_add case %zu %s", c, dtype_name(float_dtypes[di]));
            EXPECTF(!memcmp(a.p, a2.p, sizeof(float) * (size_t)dm * n), "moe_ffn_add vs moe_ffn + add, case %zu %s", c,
                    dtype_name(float_dtypes[di]));
            dev_free(&dx); dev_free(&dxn); dev_free(&dids); dev_free(&dw); dev_free(&dp);
            tt_free(&x); tt_free(&xn); tt_free(&lg); tt_free(&ids); tt_free(&w); tt_free(&b); tt_free(&a); tt_free(&a2);
            experts_free(&ex);
        }
    }
}

/* moe_expert_subset (expert parallelism): experts 0, 1, 2, 5 and 7 of 8 absent (buf NULL, as
 * model_shard leaves another rank's), so the first, a middle and the last are missing. moe_ffn and
 * moe_ffn_add against ref with the same experts absent (they add nothing), on every path: the fused
 * 16-byte kernels (bf16/f16, few tokens), the GEMV kernels (f32; 37 tokens), the grouped cuBLAS path
 * (70 tokens) and cuda-deterministic's token slices. */
TEST(moe_expert_subset)
{
    struct rng r;
    rng_seed(&r, 13);
    const int E = 8, k = 3, dm = 64, f = 48;
    const bool absent[8] = { true, true, true, false, false, true, false, true };
    struct backend *det;
    ASSERT(backend_new("cuda-deterministic", NULL, &det) == STATUS_OK);
    EXPECT(g_cuda->ops->moe_expert_subset);
    for (int di = 0; di < 3; di++) {
        struct experts ex;
        experts_new(&ex, &r, float_dtypes[di], E, dm, f);
        struct tensor hg[8], hu[8], hd[8], tg[8], tu[8], td[8];
        for (int e = 0; e < E; e++) {
            struct tensor none = { 0 };
            hg[e] = absent[e] ? none : ex.h.tg[e]; hu[e] = absent[e] ? none : ex.h.tu[e]; hd[e] = absent[e] ? none : ex.h.td[e];
            tg[e] = absent[e] ? none : ex.tg[e];   tu[e] = absent[e] ? none : ex.tu[e];   td[e] = absent[e] ? none : ex.td[e];
        }
        const int sizes[4] = { 1, 5, 37, 70 };
        for (int si = 0; si < 4; si++) {
            int n = sizes[si];
            struct tt xn = tt_new(DTYPE_F32, dm, n), lg = tt_new(DTYPE_F32, E, n), ids = tt_new(DTYPE_I32, k, n);
            struct tt w = tt_new(DTYPE_F32, k, n), b = tt_new(DTYPE_F32, dm, n), a = tt_new(DTYPE_F32, dm, n);
            tt_randn(&xn, &r, 1.0f);
            tt_randn(&lg, &r, 1.0f);
            g_ref->ops->moe_route(g_ref, tt_t(&ids), tt_t(&w), tt_t(&lg), k, true);
            g_ref->ops->moe_ffn(g_ref, tt_t(&b), tt_t(&xn), tt_t(&ids), tt_t(&w), hg, hu, hd, E, ACT_SILU);
            struct dt dxn = dev_of(&xn), dids = dev_of(&ids), dw = dev_of(&w), dout = dev_new(&a);
            struct backend *bes[2] = { g_cuda, det };
            for (int bi = 0; bi < 2; bi++) {
                struct backend *be = bes[bi];
                be->ops->moe_ffn(be, &dout.t, &dxn.t, &dids.t, &dw.t, tg, tu, td, E, ACT_SILU);
                be->ops->download(be, a.p, &dout.t, sizeof(float) * (size_t)dm * n);
                bool tight = n <= 16 || float_dtypes[di] == DTYPE_F32;
                EXPECTF(tt_close("moe_ffn subset", a.p, b.p, (int64_t)dm * n, tight ? 1e-4 : 2e-2, 1e-3,
                                 tight ? 1e-9 : 1e-4), "moe_ffn, experts absent, n=%d %s on %s", n,
                        dtype_name(float_dtypes[di]), bi ? "cuda-deterministic" : "cuda");
                // moe_ffn_add onto zeros: the same sum through the residual epilogue
                memset(a.p, 0, sizeof(float) * (size_t)dm * n);
                be->ops->upload(be, &dout.t, a.p, sizeof(float) * (size_t)dm * n);
                be->ops->moe_ffn_add(be, &dout.t, &dxn.t, &dids.t, &dw.t, tg, tu, td, E, ACT_SILU);
                be->ops->download(be, a.p, &dout.t, sizeof(float) * (size_t)dm * n);
                EXPECTF(tt_close("moe_ffn_add subset", a.p, b.p, (int64_t)dm * n, tight ? 1e-4 : 2e-2, 1e-3,
                                 tight ? 1e-9 : 1e-4), "moe_ffn_add, experts absent, n=%d %s on %s", n,
                        dtype_name(float_dtypes[di]), bi ? "cuda-deterministic" : "cuda");
                EXPECT(be->ops->sync(be) == STATUS_OK);
            }
            dev_free(&dxn); dev_free(&dids); dev_free(&dw); dev_free(&dout);
            tt_free(&xn); tt_free(&lg); tt_free(&ids); tt_free(&w); tt_free(&b); tt_free(&a);
        }
        experts_free(&ex);
    }
    backend_free(det);
}

/* The root mean square of r (the scale the uneven-load bounds are relative to). */
static double rms_of(const float *r, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)r[i] * r[i];
    return n ? sqrt(s / (double)n) : 0.0;
}

/* The expert of choice j of token t in moe_uneven's patterns (distinct over j for every t). */
static int uneven_expert(int pattern, int t, int j, int n)
{
    switch (pattern) {
    case 0:   // expert 3 takes every token; 7 one in five, 11-13 the rest; the others none
        return j == 0 ? 3 : t % 5 == 0 ? 7 : 11 + t % 3;
    case 1:   // 0 nine tokens in ten (5 the tenth), 1 all but the last (6 has one row), 2 / 3 alternate
        return j == 0 ? (t % 10 ? 0 : 5) : j == 1 ? (t == n - 1 ? 6 : 1) : 2 + t % 2;
    default:   // 1 takes every token (the device path's slot chunks), 0 / 2 split, 3 the third choice
        return j == 0 ? 1 : j == 1 ? (t % 3 ? 2 : 0) : 3;
    }
}

/* Uneven expert loads against ref on cuda and cuda-deterministic, bf16, f16 and f32. Prefill sizes
 * (grouped tensor-core GEMM for 16-bit weights): one expert with several 128-row items and a short
 * last one, experts with no row and one with a single row, f = 136 (a gate + up tile of 8 columns,
 * a down k slice of 8), d = 256 (more k slices than the 4-deep cp.async ring) and widths under one
 * tile (d = 40, f = 24). Device sizes (slots grouped by expert from 8 tokens; deterministic: always):
 * one expert shared by every token (several MOE_GROUP_S chunks), rows longer than one register
 * pass (d = 2056, f = 800), 9 tokens (just past the grouping threshold). */
TEST(moe_uneven)
{
    struct rng r;
    rng_seed(&r, 14);
    struct { int n, dm, f, E, k, pattern; } cases[] = {
        { 300, 256, 136, 16, 2, 0 }, { 1000, 64, 48, 8, 2, 1 }, { 129, 40, 24, 9, 3, 1 },
        { 64, 2056, 800, 4, 2, 2 }, { 9, 2056, 800, 4, 2, 2 }, { 37, 264, 136, 6, 3, 2 },
    };
    struct backend *det;
    ASSERT(backend_new("cuda-deterministic", NULL, &det) == STATUS_OK);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int di = 0; di < 3; di++) {
            int n = cases[c].n, dm = cases[c].dm, f = cases[c].f, E = cases[c].E, k = cases[c].k;
            struct experts ex;
            experts_new(&ex, &r, float_dtypes[di], E, dm, f);
            struct tt xn = tt_new(DTYPE_F32, dm, n), ids = tt_new(DTYPE_I32, k, n), w = tt_new(DTYPE_F32, k, n);
            struct tt b = tt_new(DTYPE_F32, dm, n), a = tt_new(DTYPE_F32, dm, n);
            tt_randn(&xn, &r, 1.0f);
            int32_t *id = ids.p;
            float *wf = w.p;
            for (int t = 0; t < n; t++)
                for (int j = 0; j < k; j++) {
                    id[t * k + j] = uneven_expert(cases[c].pattern, t, j, n);
                    wf[t * k + j] = 0.1f + fabsf(rng_normal(&r));
                }
            g_ref->ops->moe_ffn(g_ref, tt_t(&b), tt_t(&xn), tt_t(&ids), tt_t(&w), ex.h.tg, ex.h.tu, ex.h.td, E, ACT_SILU);
            const double scale = rms_of(b.p, (int64_t)dm * n);
            struct dt dxn = dev_of(&xn), dids = dev_of(&ids), dw = dev_of(&w), dout = dev_new(&a);
            struct backend *bes[2] = { g_cuda, det };
            for (int bi = 0; bi < 2; bi++) {
                struct backend *be = bes[bi];
                be->ops->moe_ffn(be, &dout.t, &dxn.t, &dids.t, &dw.t, ex.tg, ex.tu, ex.td, E, ACT_SILU);
                be->ops->download(be, a.p, &dout.t, sizeof(float) * (size_t)dm * n);
                EXPECT(be->ops->sync(be) == STATUS_OK);
                // f32 sums of exact weights (the device path, f32 weights) or 16-bit rounded inputs
                // (x and the GLU rows of the grouped GEMM)
                bool tight = n <= 64 || bi == 1 || float_dtypes[di] == DTYPE_F32;
                EXPECTF(tt_close("moe_ffn uneven", a.p, b.p, (int64_t)dm * n, (tight ? 1e-5 : 5e-2) * scale,
                                 tight ? 1e-3 : 2e-2, tight ? 1e-9 : 1e-4),
                        "moe_ffn uneven case %zu %s on %s", c, dtype_name(float_dtypes[di]),
                        bi ? "cuda-deterministic" : "cuda");
            }
            dev_free(&dxn); dev_free(&dids); dev_free(&dw); dev_free(&dout);
            tt_free(&xn); tt_free(&ids); tt_free(&w); tt_free(&b); tt_free(&a);
            experts_free(&ex);
        }
    }
    backend_free(det);
}

/* cuda-deterministic: a token's routing and MoE output are the same alone as in a batch of 70
 * (prefill-sized: two slices of the per-token kernels), bit for bit. */
TEST(moe_batch_invariance)
{
    struct backend *det;
    ASSERT(backend_new("cuda-deterministic", NULL, &det) == STATUS_OK);
    struct rng r;
    rng_seed(&r, 13);
    const int n = 70, d = 128, f = 64, E = 8, k = 3;
    struct experts ex;
    experts_new(&ex, &r, DTYPE_BF16, E, d, f);
    struct tt x = tt_new(DTYPE_F32, d, n), nw = tt_new(DTYPE_BF16, d, 1), rw = tt_new(DTYPE_BF16, d, E);
    struct tt xn = tt_new(DTYPE_F32, d, n), lg = tt_new(DTYPE_F32, E, n), ids = tt_new(DTYPE_I32, k, n),
              w = tt_new(DTYPE_F32, k, n);
    struct tt all = tt_new(DTYPE_F32, d, n), one = tt_new(DTYPE_F32, d, 1);
    tt_randn(&x, &r, 1.0f);
    tt_randn(&nw, &r, 0.5f);
    tt_randn(&rw, &r, 0.3f);
    struct dt dx = dev_of(&x), dnw = dev_of(&nw), drw = dev_of(&rw), dxn = dev_new(&xn), dlg = dev_new(&lg),
              dids = dev_new(&ids), dw = dev_new(&w);
    det->ops->norm_moe_route(det, &dids.t, &dw.t, &dlg.t, &dxn.t, &dx.t, &dnw.t, 1e-6f, 0.0f, &drw.t, k, true);
    det->ops->moe_ffn_add(det, &dx.t, &dxn.t, &dids.t, &dw.t, ex.tg, ex.tu, ex.td, E, ACT_SILU);
    // through det's own stream (g_cuda's download would not wait for det's kernels: compute-sanitizer's
    // slower runs caught that)
    det->ops->download(det, all.p, &dx.t, sizeof(float) * (size_t)d * n);
    int same = 1;
    for (int i = 0; i < n; i++) {
        det->ops->upload(det, &dx.t, x.p, sizeof(float) * (size_t)d * n);
        struct tensor xi = tensor_rows_view(&dx.t, i, 1), xni = tensor_rows_view(&dxn.t, i, 1);
        struct tensor lgi = tensor_rows_view(&dlg.t, i, 1), idi = tensor_rows_view(&dids.t, i, 1);
        struct tensor wi = tensor_rows_view(&dw.t, i, 1);
        det->ops->norm_moe_route(det, &idi, &wi, &lgi, &xni, &xi, &dnw.t, 1e-6f, 0.0f, &drw.t, k, true);
        det->ops->moe_ffn_add(det, &xi, &xni, &idi, &wi, ex.tg, ex.tu, ex.td, E, ACT_SILU);
        det->ops->download(det, one.p, &xi, sizeof(float) * (size_t)d);
        same &= !memcmp(one.p, (float *)all.p + (size_t)i * d, sizeof(float) * (size_t)d);
    }
    EXPECT(det->ops->sync(det) == STATUS_OK);
    EXPECT(same);
    dev_free(&dx); dev_free(&dnw); dev_free(&drw); dev_free(&dxn); dev_free(&dlg); dev_free(&dids); dev_free(&dw);
    tt_free(&x); tt_free(&nw); tt_free(&rw); tt_free(&xn); tt_free(&lg); tt_free(&ids); tt_free(&w); tt_free(&all);
    tt_free(&one);
    experts_free(&ex);
    backend_free(det);
}

/* cuda-deterministic runs every row through the GEMV; batches of 16 and more take the wide kernel
 * (k_gemv_wide, 16 tokens and 4 rows per warp). A token's row must be the same bit for bit alone
 * (the one-row GEMV) as in a batch of 40 (two wide slices and 8 rows of the plain GEMV), with bias
 * and with the residual add, for each weight dtype; m = 300 leaves a partial warp of rows. */
TEST(wide_gemv_batch_invariance)
{
    struct backend *det;
    ASSERT(backend_new("cuda-deterministic", NULL, &det) == STATUS_OK);
    struct rng r;
    rng_seed(&r, 14);
    const int n = 40, m = 300;
    for (int d = 0; d < 3; d++) {
        const int k = float_dtypes[d] == DTYPE_F32 ? 516 : 1032;   // not a multiple of the 64 or 256 chunks
        struct tt x = tt_new(DTYPE_F32, k, n), w = tt_new(float_dtypes[d], k, m), b = tt_new(float_dtypes[d], m, 1);
        struct tt res = tt_new(DTYPE_F32, m, n), all = tt_new(DTYPE_F32, m, n), one = tt_new(DTYPE_F32, m, 1);
        tt_randn(&x, &r, 1.0f);
        tt_randn(&w, &r, 0.1f);
        tt_randn(&b, &r, 0.1f);
        tt_randn(&res, &r, 1.0f);
        struct dt dx = dev_of(&x), dw = dev_of(&w), db = dev_of(&b), dout = dev_new(&all);
        for (int add = 0; add < 2; add++) {
            det->ops->upload(det, &dout.t, res.p, sizeof(float) * (size_t)m * n);
            if (add) det->ops->matmul_add(det, &dout.t, &dx.t, &dw.t);
            else det->ops->matmul(det, &dout.t, &dx.t, &dw.t, &db.t);
            det->ops->download(det, all.p, &dout.t, sizeof(float) * (size_t)m * n);
            int same = 1;
            for (int i = 0; i < n; i++) {
                struct tensor xi = tensor_rows_view(&dx.t, i, 1), oi = tensor_rows_view(&dout.t, i, 1);
                det->ops->upload(det, &oi, (float *)res.p + (size_t)i * m, sizeof(float) * (size_t)m);
                if (add) det->ops->matmul_add(det, &oi, &xi, &dw.t);
                else det->ops->matmul(det, &oi, &xi, &dw.t, &db.t);
                det->ops->download(det, one.p, &oi, sizeof(float) * (size_t)m);
                same &= !memcmp(one.p, (float *)all.p + (size_t)i * m, sizeof(float) * (size_t)m);
            }
            EXPECTF(same, "%s %s: a row of a batch of %d differs from the row alone", dtype_name(float_dtypes[d]),
                    add ? "matmul_add" : "matmul + bias", n);
        }
        EXPECT(det->ops->sync(det) == STATUS_OK);
        dev_free(&dx); dev_free(&dw); dev_free(&db); dev_free(&dout);
        tt_free(&x); tt_free(&w); tt_free(&b); tt_free(&res); tt_free(&all); tt_free(&one);
    }
    backend_free(det);
}

/* logits_mask against ref: vocabularies that are and are not multiples of 32 (Qwen3's 151936 and
 * an odd one), a few masked rows out of more, random masks plus an all-allowed and a one-id row;
 * then a larger batch (the pinned staging grows) and the argmax of the masked rows, as the engine
 * reads them. Masking only writes -inf, so the results must be bit-identical. */
TEST(logits_mask)
{
    struct rng r;
    rng_seed(&r, 19);
    struct { int V, rows, n; } cases[] = { { 151936, 5, 3 }, { 40003, 9, 4 }, { 1001, 64, 64 }, { 33, 2, 1 } };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int V = cases[c].V, R = cases[c].rows, n = cases[c].n, nw = (V + 31) / 32;
        struct tt lg = tt_new(DTYPE_F32, V, R);
        tt_randn(&lg, &r, 3.0f);
        int32_t *rows = xmalloc((size_t)n * sizeof *rows);
        uint32_t *words = xmalloc((size_t)n * (size_t)nw * sizeof *words);
        for (int i = 0; i < n; i++) {
            rows[i] = (int32_t)(R - 1 - (i * 7) % R);   // distinct (7 is prime to every R here), not the first rows
            uint32_t *w = words + (size_t)i * nw;
            for (int k = 0; k < nw; k++) w[k] = (uint32_t)rng_next(&r) & (uint32_t)rng_next(&r);   // ~1/4 allowed
            if (i == 1) for (int k = 0; k < nw; k++) w[k] = ~0u;
            if (i == 2) {
                for (int k = 0; k < nw; k++) w[k] = 0;
                w[(V - 1) >> 5] = 1u << ((V - 1) & 31);   // only the last id
            }
        }
        struct dt d = dev_of(&lg);
        g_cuda->ops->logits_mask(g_cuda, &d.t, n, rows, words);
        g_ref->ops->logits_mask(g_ref, tt_t(&lg), n, rows, words);
        struct tt got = tt_new(DTYPE_F32, V, R);
        dev_get(&d, &got);
        EXPECTF(!memcmp(got.p, lg.p, (size_t)V * R * sizeof(float)), "logits_mask V %d rows %d n %d", V, R, n);
        int32_t want_ids[64], got_ids[64];
        g_ref->ops->argmax(g_ref, want_ids, tt_t(&lg));
        g_cuda->ops->argmax(g_cuda, got_ids, &d.t);
        EXPECTF(!memcmp(want_ids, got_ids, (size_t)R * sizeof(int32_t)), "argmax after logits_mask V %d", V);
        if (n > 2) EXPECT(got_ids[rows[2]] == V - 1);
        dev_free(&d);
        tt_free(&lg);
        tt_free(&got);
        free(rows);
        free(words);
    }
}

int main(void)
{
    cuda_tests_open(true);
    RUN(matmul);
    RUN(gemv_batch_invariance);
    RUN(matmul_n);
    RUN(matmul_n_fused);
    RUN(matmul_glu);
    RUN(norm_matmul_n_and_add);
    RUN(elementwise);
    RUN(embed_rope_argmax);
    RUN(logits_mask);
    RUN(qk_rope_kv);
    RUN(kv_write_fp8_rounding);
    RUN(moe);
    RUN(norm_moe_route);
    RUN(moe_ffn_add);
    RUN(moe_batch_invariance);
    RUN(moe_expert_subset);
    RUN(moe_uneven);
    RUN(wide_gemv_batch_invariance);
    // the same matmul cases with 5-16-row matmuls on cuBLAS (backend_cfg cuda_skinny_off)
    backend_free(g_cuda);
    if (backend_new("cuda", &(struct backend_cfg){ .cuda_skinny_off = true }, &g_cuda) != STATUS_OK) return 1;
    fprintf(stderr, "  skinny kernel off:\n");
    RUN(matmul);
    backend_free(g_cuda);
    backend_free(g_ref);
    return test_summary();
}
