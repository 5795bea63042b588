/* test_cuda_quant: the cuda backend's MLX-quantized weight kernels (backend/cuda/qmatmul.cu)
 * against the ref backend (row dequantization, f32 dot products: the oracle), on random matrices
 * quantized by MLX's rules (qweight_quantize_row) in every mode, bit width and group size, for
 * 1, 2, 7, 16, 33 and 300 rows of x (the decode GEMV, its slices, the dequantize + cuBLAS
 * prefill path), and on the committed fixtures of tools/mlx_quant_ref.py: embeddings (the
 * dequantizer) must equal the fixture's values bit for bit, and the GEMV's own dequantization,
 * read through one-hot rows of x, bit for bit for mxfp4/mxfp8/nvfp4 and within an f32 rounding of
 * the affine values. Quantized MoE experts (device path and per-expert host path), cuda-precise
 * (f32-accurate: the tight bound at every row count) and cuda-deterministic (a row alone equals
 * the row in a batch, bit for bit). Needs a GPU: run by `make test-cuda`.
 */
#include "harness.h"

#include <jansson.h>
#include <unistd.h>
#include "ops/ops_util.h"

#include "backend/backend.h"
#include "base/log.h"
#include "base/rng.h"
#include "model/safetensors.h"
#include "tensor/qweight.h"

#define QDIR "tests/model/fixtures/quant"

static struct backend *g_ref, *g_cuda;

/* A quantized matrix [m, k] on the host (for ref) and on the device (for cuda, through
 * weight_prepare, which moves the packed words, scales and biases). */
struct qm {
    struct qweight hq, dq;
    struct tt      packed, scales, biases;
    struct tensor  h, d;   // ref's and cuda's views
};

static void qm_new(struct qm *q, struct backend *be, struct rng *r, enum qmode mode, int bits, int gs, int k, int m,
                   enum dtype sdt)
{
    memset(q, 0, sizeof *q);
    const int words = k * bits / 32, ng = k / gs;
    q->packed = tt_new(DTYPE_U32, words, m);
    q->scales = tt_new(mode == QMODE_AFFINE ? sdt : DTYPE_U8, ng, m);
    if (mode == QMODE_AFFINE) q->biases = tt_new(sdt, ng, m);
    float *row = malloc(sizeof(float) * (size_t)k), *sf = malloc(sizeof(float) * (size_t)ng),
          *bf = malloc(sizeof(float) * (size_t)ng);
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < k; j++) row[j] = rng_normal(r) * 0.05f + (j % 7 == 0 ? 0.02f : 0.0f);
        uint8_t *codes = (uint8_t *)q->scales.p + (size_t)i * ng;
        CHECK(qweight_quantize_row(mode, bits, gs, row, k, (uint32_t *)q->packed.p + (size_t)i * words, sf, bf, codes),
              "quantize");
        if (mode == QMODE_AFFINE) {
            dtype_from_f32(sdt, sf, (char *)q->scales.p + (size_t)i * ng * dtype_size(sdt), ng);
            dtype_from_f32(sdt, bf, (char *)q->biases.p + (size_t)i * ng * dtype_size(sdt), ng);
        }
    }
    free(row); free(sf); free(bf);
    q->hq = (struct qweight){ mode, bits, gs, *tt_t(&q->scales), { 0 } };
    if (mode == QMODE_AFFINE) q->hq.biases = *tt_t(&q->biases);
    q->dq = q->hq;
    q->h = qweight_tensor(&q->hq, tt_t(&q->packed), k);
    q->d = qweight_tensor(&q->dq, tt_t(&q->packed), k);
    CHECK(be->ops->weight_prepare(be, &q->d) == STATUS_OK, "weight_prepare");   // device copies (freed with be)
}

static void qm_free(struct qm *q)
{
    tt_free(&q->packed); tt_free(&q->scales);
    if (q->biases.p) tt_free(&q->biases);
}

struct dbuf { struct tensor t; struct buffer *b; };

static struct dbuf dev_put(struct backend *be, const struct tt *h, size_t offset_bytes)
{
    struct dbuf d;
    size_t bytes = (size_t)tensor_nelem(&h->t) * dtype_size(h->t.dtype);
    CHECK(be->ops->buffer_new(be, bytes + offset_bytes + 64, &d.b) == STATUS_OK, "buffer");
    d.t = h->t;
    d.t.buf = d.b;
    d.t.offset = offset_bytes;
    be->ops->upload(be, &d.t, h->p, bytes);
    return d;
}

static void dev_read(struct backend *be, struct dbuf *d, struct tt *h)
{
    be->ops->download(be, h->p, &d->t, (size_t)tensor_nelem(&h->t) * dtype_size(h->t.dtype));
}

struct fmt { enum qmode mode; int bits, gs; };
static const struct fmt all_fmts[] = {
    { QMODE_AFFINE, 2, 32 }, { QMODE_AFFINE, 2, 64 }, { QMODE_AFFINE, 2, 128 },
    { QMODE_AFFINE, 3, 32 }, { QMODE_AFFINE, 3, 64 }, { QMODE_AFFINE, 3, 128 },
    { QMODE_AFFINE, 4, 32 }, { QMODE_AFFINE, 4, 64 }, { QMODE_AFFINE, 4, 128 },
    { QMODE_AFFINE, 5, 32 }, { QMODE_AFFINE, 5, 64 }, { QMODE_AFFINE, 5, 128 },
    { QMODE_AFFINE, 6, 32 }, { QMODE_AFFINE, 6, 64 }, { QMODE_AFFINE, 6, 128 },
    { QMODE_AFFINE, 8, 32 }, { QMODE_AFFINE, 8, 64 }, { QMODE_AFFINE, 8, 128 },
    { QMODE_MXFP4, 4, 32 }, { QMODE_MXFP8, 8, 32 }, { QMODE_NVFP4, 4, 16 },
};
#define N_FMTS ((int)(sizeof all_fmts / sizeof all_fmts[0]))

/* Whether the cuda mode runs this format's decode rows on the tensor-core GEMV (qmatmul.cu's
 * k_qgemv_mma: affine 4 bit, 8 bit in groups of 32 or 64, outputs wider than 256), which rounds x
 * to bf16 and sums in f32. */
static bool mma_gemv(const char *be_name, const struct fmt *f, int m)
{
    return !strcmp(be_name, "cuda") && f->mode == QMODE_AFFINE && (f->bits == 4 || (f->bits == 8 && f->gs <= 64)) &&
           m > 256;
}

/* The bound on the tensor-core GEMV against ref on the same bf16 x: its MMAs' f32 sums run over
 * 16 + q (the offset comes off per group), so they round a few times coarser than ref's. A wrong
 * code, scale or row of x gives 1e-3 and more; x left unrounded in ref, about 1e-6. */
#define MMA_NMSE 1e-8

/* x rounded to bf16 (to nearest, ties to even): what k_qgemv_mma multiplies. */
static void round_bf16(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
        memcpy(&x[i], &u, 4);
    }
}

/* One matmul (with a bias when asked) on be against ref; tight: the f32 bound (GEMV rows, precise).
 * On the tensor-core GEMV ref gets x rounded to bf16, as that kernel rounds it (the f32 bound). */
static void check_matmul(struct backend *be, const char *be_name, struct rng *r, const struct fmt *f, int k, int m,
                         int n, bool bias, size_t x_offset, enum dtype sdt, bool tight)
{
    struct qm q;
    qm_new(&q, be, r, f->mode, f->bits, f->gs, k, m, sdt);
    struct tt x = tt_new(DTYPE_F32, k, n), b = tt_new(DTYPE_BF16, m, 1);
    struct tt o_ref = tt_new(DTYPE_F32, m, n), o = tt_new(DTYPE_F32, m, n);
    tt_randn(&x, r, 1.0f);
    tt_randn(&b, r, 0.5f);
    struct tt xr = tt_new(DTYPE_F32, k, n);
    tt_copy(&xr, &x);
    const bool mma = tight && !x_offset && mma_gemv(be_name, f, m) && n <= 16;
    if (mma) round_bf16((float *)xr.p, (int64_t)n * k);
    g_ref->ops->matmul(g_ref, tt_t(&o_ref), tt_t(&xr), &q.h, bias ? tt_t(&b) : NULL);
    tt_free(&xr);
    struct dbuf dx = dev_put(be, &x, x_offset), db = dev_put(be, &b, 0), dout = dev_put(be, &o, 0);
    for (int64_t i = 0; i < (int64_t)n * m; i++) ((float *)o.p)[i] = NAN;   // poison: every element must be written
    be->ops->upload(be, &dout.t, o.p, sizeof(float) * (size_t)n * m);
    be->ops->matmul(be, &dout.t, &dx.t, &q.d, bias ? &db.t : NULL);
    dev_read(be, &dout, &o);
    EXPECT(be->ops->sync(be) == STATUS_OK);
    char what[160];
    snprintf(what, sizeof what, "%s matmul %s %d bit g%d %s scales, n=%d k=%d m=%d%s%s", be_name, qmode_name(f->mode),
             f->bits, f->gs, dtype_name(q.hq.scales.dtype), n, k, m, bias ? " +bias" : "", x_offset ? " x unaligned" : "");
    double nmse = tight ? (mma ? MMA_NMSE : 1e-10) : 1e-4, atol = tight ? 1e-3 : 0.02 * sqrt((double)k) / 8;
    EXPECTF(tt_close(what, o.p, o_ref.p, (int64_t)n * m, atol, 1e-3, nmse), "%s", what);
    be->ops->buffer_free(be, dx.b); be->ops->buffer_free(be, db.b); be->ops->buffer_free(be, dout.b);
    tt_free(&x); tt_free(&b); tt_free(&o_ref); tt_free(&o);
    qm_free(&q);
}

/* Every format, every row count: n <= 16 and m <= 256 run the f32 GEMV (tight); more rows with
 * m > 256 the bf16 cuBLAS path. */
TEST(matmul_every_format)
{
    struct rng r;
    rng_seed(&r, 21);
    static const int ns[] = { 1, 2, 7, 16, 33, 300 };
    for (int fi = 0; fi < N_FMTS; fi++)
        for (int ni = 0; ni < 6; ni++) {
            const int n = ns[ni], m = ni % 2 ? 300 : 200;   // odd row counts: partial blocks and warps
            check_matmul(g_cuda, "cuda", &r, &all_fmts[fi], 512, m, n, ni % 3 == 1, 0, DTYPE_BF16, n <= 16 || m <= 256);
        }
    // every format over several chunks per lane (the GEMV loads a lane's next chunk while it
    // multiplies the current one), 37 rows: a block's last warps have no rows, one warp 1 of 4
    for (int fi = 0; fi < N_FMTS; fi++)
        check_matmul(g_cuda, "cuda", &r, &all_fmts[fi], 2176, 37, fi % 2 ? 5 : 1, fi % 3 == 0, 0, DTYPE_BF16, true);
    // affine scales stored as f16 and f32; a tail of 32-code units past the lanes' first pass
    const struct fmt a4 = { QMODE_AFFINE, 4, 64 }, a8 = { QMODE_AFFINE, 8, 32 };
    check_matmul(g_cuda, "cuda", &r, &a4, 1024 + 64, 100, 3, true, 0, DTYPE_F16, true);
    check_matmul(g_cuda, "cuda", &r, &a8, 4096, 77, 5, false, 0, DTYPE_F32, true);
    // operands k_qgemv does not take: inputs not a multiple of 32 (nvfp4, k = 48), x unaligned
    const struct fmt nv = { QMODE_NVFP4, 4, 16 };
    check_matmul(g_cuda, "cuda", &r, &nv, 48, 40, 3, true, 0, DTYPE_BF16, true);
    check_matmul(g_cuda, "cuda", &r, &a4, 256, 300, 4, false, 4, DTYPE_BF16, true);
}

/* cuda-precise: f32-accurate at every row count (prefill dequantizes to f32). */
TEST(matmul_precise)
{
    struct backend *be;
    ASSERT(backend_new("cuda-precise", NULL, &be) == STATUS_OK);
    struct rng r;
    rng_seed(&r, 22);
    const struct fmt fs[] = { { QMODE_AFFINE, 4, 64 }, { QMODE_AFFINE, 8, 64 }, { QMODE_MXFP4, 4, 32 },
                              { QMODE_NVFP4, 4, 16 }, { QMODE_AFFINE, 3, 32 } };
    static const int ns[] = { 1, 33, 300 };
    for (int i = 0; i < 5; i++)
        for (int ni = 0; ni < 3; ni++) check_matmul(be, "cuda-precise", &r, &fs[i], 512, 300, ns[ni], true, 0, DTYPE_BF16, true);
    backend_free(be);
}

/* cuda-deterministic: each row of a batch equals the row computed alone, bit for bit. */
TEST(deterministic_batch_invariance)
{
    struct backend *be;
    ASSERT(backend_new("cuda-deterministic", NULL, &be) == STATUS_OK);
    struct rng r;
    rng_seed(&r, 23);
    const struct fmt fs[] = { { QMODE_AFFINE, 4, 64 }, { QMODE_AFFINE, 8, 32 }, { QMODE_MXFP8, 8, 32 } };
    const int k = 1024, m = 520, n = 37;
    for (int i = 0; i < 3; i++) {
        struct qm q;
        qm_new(&q, be, &r, fs[i].mode, fs[i].bits, fs[i].gs, k, m, DTYPE_BF16);
        struct tt x = tt_new(DTYPE_F32, k, n), all = tt_new(DTYPE_F32, m, n), one = tt_new(DTYPE_F32, m, 1);
        tt_randn(&x, &r, 1.0f);
        struct dbuf dx = dev_put(be, &x, 0), dout = dev_put(be, &all, 0);
        be->ops->matmul(be, &dout.t, &dx.t, &q.d, NULL);
        dev_read(be, &dout, &all);
        bool same = true;
        for (int t = 0; t < n; t++) {
            struct tensor xi = tensor_rows_view(&dx.t, t, 1), oi = tensor_rows_view(&dout.t, t, 1);
            be->ops->matmul(be, &oi, &xi, &q.d, NULL);
            be->ops->download(be, one.p, &oi, sizeof(float) * (size_t)m);
            same &= !memcmp(one.p, (float *)all.p + (size_t)t * m, sizeof(float) * (size_t)m);
        }
        EXPECTF(same, "%s %d bit: a row of a batch of %d differs from the row alone", qmode_name(fs[i].mode), fs[i].bits, n);
        EXPECT(be->ops->sync(be) == STATUS_OK);
        be->ops->buffer_free(be, dx.b); be->ops->buffer_free(be, dout.b);
        tt_free(&x); tt_free(&all); tt_free(&one);
        qm_free(&q);
    }
    backend_free(be);
}

/* The fused decode ops on quantized weights: matmul_n (q/k/v in one launch) equals separate
 * matmuls bit for bit, norm_matmul_n (the RMSNorm fused at 1 row) matches ref's composition in
 * f32, and matmul_glu (gate and up in one launch, with and without its RMSNorm)
 * matches ref's composition in f32; at 1, 7 and 16 rows (16: two launches of 8), and at 33 rows
 * (composed: the separate ops). */
TEST(fused_ops)
{
    struct rng r;
    rng_seed(&r, 25);
    // k = 1,088: two stages of the GEMV's chunk loads (the second partial) at 4 and 8 bit
    const int k = 1088, ms[3] = { 256, 64, 64 }, f = 300;
    const struct fmt fs[] = { { QMODE_AFFINE, 4, 64 }, { QMODE_AFFINE, 8, 64 }, { QMODE_NVFP4, 4, 16 },
                              { QMODE_AFFINE, 3, 32 }, { QMODE_MXFP8, 8, 32 } };
    static const int ns[] = { 1, 7, 16, 33 };
    for (int fi = 0; fi < 5; fi++)
        for (int ni = 0; ni < 4; ni++) {
            const int n = ns[ni];
            struct qm w[3], g, u;
            struct tt x = tt_new(DTYPE_F32, k, n), b = tt_new(DTYPE_BF16, 256, 1), nw = tt_new(DTYPE_BF16, k, 1);
            tt_randn(&x, &r, 1.0f);
            tt_randn(&b, &r, 0.5f);
            tt_randn(&nw, &r, 0.2f);
            struct dbuf dx = dev_put(g_cuda, &x, 0), db = dev_put(g_cuda, &b, 0), dnw = dev_put(g_cuda, &nw, 0);
            // matmul_n against separate matmuls
            struct tensor *outs[3];
            const struct tensor *ws[3], *bs[3];
            struct dbuf dout[3], dsep[3];
            for (int i = 0; i < 3; i++) {
                qm_new(&w[i], g_cuda, &r, fs[fi].mode, fs[fi].bits, fs[fi].gs, k, ms[i], DTYPE_BF16);
                struct tt o = tt_new(DTYPE_F32, ms[i], n);
                dout[i] = dev_put(g_cuda, &o, 0);
                dsep[i] = dev_put(g_cuda, &o, 0);
                tt_free(&o);
                outs[i] = &dout[i].t;
                ws[i] = &w[i].d;
                bs[i] = i == 1 ? NULL : &db.t;
            }
            struct tensor bv[3];
            for (int i = 0; i < 3; i++) if (bs[i]) { bv[i] = db.t; bv[i].ne[0] = ms[i]; bs[i] = &bv[i]; }
            g_cuda->ops->matmul_n(g_cuda, 3, outs, &dx.t, ws, bs);
            for (int i = 0; i < 3; i++) {
                g_cuda->ops->matmul(g_cuda, &dsep[i].t, &dx.t, ws[i], bs[i]);
                struct tt got = tt_new(DTYPE_F32, ms[i], n), want = tt_new(DTYPE_F32, ms[i], n);
                dev_read(g_cuda, &dout[i], &got);
                dev_read(g_cuda, &dsep[i], &want);
                EXPECTF(!memcmp(got.p, want.p, sizeof(float) * (size_t)ms[i] * n), "%s %d bit matmul_n n=%d weight %d differs "
                        "from matmul", qmode_name(fs[fi].mode), fs[fi].bits, n, i);
                tt_free(&got); tt_free(&want);
            }
            // norm_matmul_n (the RMSNorm fused into the GEMV at 1 row, else rmsnorm first) against ref
            {
                struct tensor *nouts[3], *routs[3], hbv[3];
                const struct tensor *hws[3], *hbs[3];
                struct tt got[3], want[3], xn = tt_new(DTYPE_F32, k, n);
                struct dbuf dno[3], dxn = dev_put(g_cuda, &xn, 0);
                for (int i = 0; i < 3; i++) {
                    got[i] = tt_new(DTYPE_F32, ms[i], n);
                    want[i] = tt_new(DTYPE_F32, ms[i], n);
                    dno[i] = dev_put(g_cuda, &got[i], 0);
                    nouts[i] = &dno[i].t;
                    routs[i] = tt_t(&want[i]);
                    hws[i] = &w[i].h;
                    hbv[i] = *tt_t(&b);
                    hbv[i].ne[0] = ms[i];
                    hbs[i] = i == 1 ? NULL : &hbv[i];
                }
                g_ref->ops->norm_matmul_n(g_ref, 3, routs, tt_t(&xn), tt_t(&x), tt_t(&nw), 1e-6f, 0.0f, hws, hbs);
                g_cuda->ops->norm_matmul_n(g_cuda, 3, nouts, &dxn.t, &dx.t, &dnw.t, 1e-6f, 0.0f, ws, bs);
                for (int i = 0; i < 3; i++) {
                    dev_read(g_cuda, &dno[i], &got[i]);
                    char what[128];
                    snprintf(what, sizeof what, "norm_matmul_n %s %d bit n=%d weight %d", qmode_name(fs[fi].mode), fs[fi].bits,
                             n, i);
                    const bool tight = n <= 16;   // 33 rows: the bf16 cuBLAS path
                    EXPECTF(tt_close(what, got[i].p, want[i].p, (int64_t)ms[i] * n, tight ? 1e-3 : 0.05, 1e-3,
                                     tight ? 1e-10 : 1e-4), "%s", what);
                    g_cuda->ops->buffer_free(g_cuda, dno[i].b);
                    tt_free(&got[i]); tt_free(&want[i]);
                }
                EXPECT(g_cuda->ops->sync(g_cuda) == STATUS_OK);
                g_cuda->ops->buffer_free(g_cuda, dxn.b);
                tt_free(&xn);
            }
            // matmul_glu (with the RMSNorm, then without) against ref's composition
            qm_new(&g, g_cuda, &r, fs[fi].mode, fs[fi].bits, fs[fi].gs, k, f, DTYPE_BF16);
            qm_new(&u, g_cuda, &r, fs[fi].mode, fs[fi].bits, fs[fi].gs, k, f, DTYPE_BF16);
            for (int with_norm = 0; with_norm < 2; with_norm++) {
                struct tt o = tt_new(DTYPE_F32, f, n), o_ref = tt_new(DTYPE_F32, f, n), up = tt_new(DTYPE_F32, f, n),
                          xn = tt_new(DTYPE_F32, k, n);
                g_ref->ops->matmul_glu(g_ref, tt_t(&o_ref), tt_t(&up), tt_t(&xn), tt_t(&x), with_norm ? tt_t(&nw) : NULL,
                                       1e-6f, 0.0f, &g.h, &u.h, ACT_SILU);
                struct dbuf dup = dev_put(g_cuda, &up, 0), dxn = dev_put(g_cuda, &xn, 0), dglu = dev_put(g_cuda, &o, 0);
                g_cuda->ops->matmul_glu(g_cuda, &dglu.t, &dup.t, &dxn.t, &dx.t, with_norm ? &dnw.t : NULL, 1e-6f, 0.0f, &g.d,
                                        &u.d, ACT_SILU);
                dev_read(g_cuda, &dglu, &o);
                EXPECT(g_cuda->ops->sync(g_cuda) == STATUS_OK);
                char what[128];
                snprintf(what, sizeof what, "matmul_glu %s %d bit n=%d%s", qmode_name(fs[fi].mode), fs[fi].bits, n,
                         with_norm ? " +norm" : "");
                // 33 rows: composed, gate and up through bf16 cuBLAS; the GLU multiplies their errors.
                // Affine 4 bit (300 outputs): the tensor-core GEMV's bf16 x (gemv_mma checks it tightly)
                const bool tight = n <= 16 && !mma_gemv("cuda", &fs[fi], f);
                EXPECTF(tt_close(what, o.p, o_ref.p, (int64_t)f * n, tight ? 1e-3 : 0.08, 1e-3, tight ? 1e-10 : 1e-4), "%s", what);
                g_cuda->ops->buffer_free(g_cuda, dup.b); g_cuda->ops->buffer_free(g_cuda, dxn.b);
                g_cuda->ops->buffer_free(g_cuda, dglu.b);
                tt_free(&o); tt_free(&o_ref); tt_free(&up); tt_free(&xn);
            }
            for (int i = 0; i < 3; i++) {
                g_cuda->ops->buffer_free(g_cuda, dout[i].b); g_cuda->ops->buffer_free(g_cuda, dsep[i].b);
                qm_free(&w[i]);
            }
            qm_free(&g); qm_free(&u);
            g_cuda->ops->buffer_free(g_cuda, dx.b); g_cuda->ops->buffer_free(g_cuda, db.b);
            g_cuda->ops->buffer_free(g_cuda, dnw.b);
            tt_free(&x); tt_free(&b); tt_free(&nw);
        }
}

/* x normed as k_qgemv_mma stages it: x * (nw + w_offset) rounded to bf16 (inv_rms applied to the
 * sums); inv_rms = 1 / sqrt(mean(x^2) + eps) of each row. */
static void norm_bf16(float *xo, float *inv_rms, const float *x, const struct tt *nw, int k, int n, float eps)
{
    for (int t = 0; t < n; t++) {
        double ss = 0;
        for (int j = 0; j < k; j++) {
            const float v = x[(size_t)t * k + j];
            ss += (double)v * v;
            uint32_t u = (uint32_t)((const uint16_t *)nw->p)[j] << 16;
            float g;
            memcpy(&g, &u, 4);
            xo[(size_t)t * k + j] = v * g;
        }
        inv_rms[t] = (float)(1.0 / sqrt(ss / k + eps));
    }
    round_bf16(xo, (int64_t)n * k);
}

/* The tensor-core decode GEMV (cuda mode, affine 4 and 8 bit, outputs wider than 256) at its
 * edges, against ref on x rounded to bf16 as the kernel rounds it: every group size and scale
 * dtype; k of one group (most warps without groups), k whose groups the warps split unevenly,
 * over several pipeline stages; m not a multiple of 16; blocks of 8 and of 4 warps; 1-16 rows (launches of 8; at
 * k = 12,288 three rows a launch, past the default 48 KB of shared memory); bias and matmul_add.
 * matmul_n (q/k/v) equals separate matmuls bit for bit; the RMSNorm (1 row) and the GLU forms
 * against ref on the normed x rounded as the kernel rounds it. */
TEST(gemv_mma)
{
    struct rng r;
    rng_seed(&r, 31);
    const struct fmt g32 = { QMODE_AFFINE, 4, 32 }, g64 = { QMODE_AFFINE, 4, 64 }, g128 = { QMODE_AFFINE, 4, 128 },
                     e32 = { QMODE_AFFINE, 8, 32 }, e64 = { QMODE_AFFINE, 8, 64 };
    static const int ns[] = { 1, 2, 3, 8, 9, 16 };
    for (int ni = 0; ni < 6; ni++) {
        check_matmul(g_cuda, "cuda", &r, &g32, 512, 300, ns[ni], ni % 2 == 0, 0, DTYPE_BF16, true);
        check_matmul(g_cuda, "cuda", &r, &g64, 512, 257, ns[ni], ni % 2 == 1, 0, DTYPE_BF16, true);
        check_matmul(g_cuda, "cuda", &r, &g128, 1024, 333, ns[ni], ni % 3 == 0, 0, DTYPE_BF16, true);
        check_matmul(g_cuda, "cuda", &r, &e32, 512, 300, ns[ni], ni % 2 == 1, 0, DTYPE_BF16, true);
        check_matmul(g_cuda, "cuda", &r, &e64, 1024, 271, ns[ni], ni % 2 == 0, 0, DTYPE_BF16, true);
    }
    check_matmul(g_cuda, "cuda", &r, &e64, 2176, 300, 7, true, 0, DTYPE_F16, true);    // 8 bit: 34 groups
    // grids over 2 blocks an SM (4,500 / 16 > 264 on 132 SMs): blocks of 4 warps instead of 8
    check_matmul(g_cuda, "cuda", &r, &g64, 256, 4500, 3, true, 0, DTYPE_BF16, true);
    check_matmul(g_cuda, "cuda", &r, &e32, 512, 4300, 1, false, 0, DTYPE_BF16, true);
    check_matmul(g_cuda, "cuda", &r, &e32, 12288, 264, 4, false, 0, DTYPE_BF16, true); // 8 bit, 3 rows a launch
    check_matmul(g_cuda, "cuda", &r, &g64, 512, 300, 4, true, 0, DTYPE_F16, true);
    check_matmul(g_cuda, "cuda", &r, &g128, 512, 300, 5, true, 0, DTYPE_F32, true);
    check_matmul(g_cuda, "cuda", &r, &g64, 64, 260, 2, true, 0, DTYPE_BF16, true);     // one group
    check_matmul(g_cuda, "cuda", &r, &g64, 2176, 513, 5, false, 0, DTYPE_BF16, true);  // 34 groups: 8, 9, 8, 9
    check_matmul(g_cuda, "cuda", &r, &g32, 4096, 400, 1, true, 0, DTYPE_BF16, true);   // 32 groups a warp
    check_matmul(g_cuda, "cuda", &r, &g64, 12288, 272, 8, false, 0, DTYPE_BF16, true); // 3 rows a launch
    check_matmul(g_cuda, "cuda", &r, &g128, 4096, 1000, 16, true, 0, DTYPE_BF16, true);
    // grids over 4 tiles an SM (over 528 on 132 SMs): the persistent walk, several tiles a block,
    // the last ones shared unevenly
    check_matmul(g_cuda, "cuda", &r, &g64, 512, 9000, 3, true, 0, DTYPE_BF16, true);
    check_matmul(g_cuda, "cuda", &r, &g32, 256, 20001, 1, false, 0, DTYPE_BF16, true);
    check_matmul(g_cuda, "cuda", &r, &e64, 2176, 8500, 2, false, 0, DTYPE_BF16, true);  // 34 groups, 8 bit

    // matmul_add (out += x w^T), 3 rows
    {
        const int k = 1024, m = 520, n = 3;
        struct qm q;
        qm_new(&q, g_cuda, &r, QMODE_AFFINE, 4, 64, k, m, DTYPE_BF16);
        struct tt x = tt_new(DTYPE_F32, k, n), xr = tt_new(DTYPE_F32, k, n), o = tt_new(DTYPE_F32, m, n),
                  want = tt_new(DTYPE_F32, m, n);
        tt_randn(&x, &r, 1.0f);
        tt_randn(&o, &r, 1.0f);
        tt_copy(&xr, &x);
        round_bf16((float *)xr.p, (int64_t)n * k);
        g_ref->ops->matmul(g_ref, tt_t(&want), tt_t(&xr), &q.h, NULL);
        for (int64_t i = 0; i < (int64_t)n * m; i++) ((float *)want.p)[i] += ((float *)o.p)[i];
        struct dbuf dx = dev_put(g_cuda, &x, 0), dout = dev_put(g_cuda, &o, 0);
        g_cuda->ops->matmul_add(g_cuda, &dout.t, &dx.t, &q.d);
        dev_read(g_cuda, &dout, &o);
        EXPECT(g_cuda->ops->sync(g_cuda) == STATUS_OK);
        EXPECT(tt_close("mma matmul_add", o.p, want.p, (int64_t)n * m, 1e-3, 1e-3, MMA_NMSE));
        g_cuda->ops->buffer_free(g_cuda, dx.b); g_cuda->ops->buffer_free(g_cuda, dout.b);
        tt_free(&x); tt_free(&xr); tt_free(&o); tt_free(&want);
        qm_free(&q);
    }

    // matmul_n (three segments, the first two with biases) equal to separate matmuls, and the
    // RMSNorm form at 1 row against ref on the normed, rounded x; at 4 bit g64 a first segment of
    // 538 tiles (over 4 an SM on 132 SMs: the persistent walk, fused and alone) and a GLU of 1,075
    const int k = 1536;
    const struct fmt fs[] = { g64, g128, g32, e64, e32 };
    for (int fi = 0; fi < 5; fi++)
        for (int n = 1; n <= 9; n += 8) {
            const int ms[3] = { fi == 0 ? 8600 : 512, 300, 272 };
            struct qm w[3];
            struct tt x = tt_new(DTYPE_F32, k, n), b = tt_new(DTYPE_BF16, ms[0], 1), nw = tt_new(DTYPE_BF16, k, 1);
            tt_randn(&x, &r, 1.0f);
            tt_randn(&b, &r, 0.5f);
            tt_randn(&nw, &r, 0.2f);
            struct dbuf dx = dev_put(g_cuda, &x, 0), db = dev_put(g_cuda, &b, 0), dnw = dev_put(g_cuda, &nw, 0);
            struct tt xn = tt_new(DTYPE_F32, k, n);
            struct dbuf dxn = dev_put(g_cuda, &xn, 0);
            struct tensor *outs[3], bv[3];
            const struct tensor *ws[3], *bs[3];
            struct dbuf dout[3], dsep[3];
            for (int i = 0; i < 3; i++) {
                qm_new(&w[i], g_cuda, &r, QMODE_AFFINE, fs[fi].bits, fs[fi].gs, k, ms[i], DTYPE_BF16);
                struct tt o = tt_new(DTYPE_F32, ms[i], n);
                dout[i] = dev_put(g_cuda, &o, 0);
                dsep[i] = dev_put(g_cuda, &o, 0);
                tt_free(&o);
                outs[i] = &dout[i].t;
                ws[i] = &w[i].d;
                bv[i] = db.t;
                bv[i].ne[0] = ms[i];
                bs[i] = i == 2 ? NULL : &bv[i];   // one launch takes biases when the first has one
            }
            g_cuda->ops->matmul_n(g_cuda, 3, outs, &dx.t, ws, bs);
            for (int i = 0; i < 3; i++) {
                g_cuda->ops->matmul(g_cuda, &dsep[i].t, &dx.t, ws[i], bs[i]);
                struct tt got = tt_new(DTYPE_F32, ms[i], n), want = tt_new(DTYPE_F32, ms[i], n);
                dev_read(g_cuda, &dout[i], &got);
                dev_read(g_cuda, &dsep[i], &want);
                EXPECTF(!memcmp(got.p, want.p, sizeof(float) * (size_t)ms[i] * n), "mma matmul_n %d bit g%d n=%d weight %d "
                        "differs from matmul", fs[fi].bits, fs[fi].gs, n, i);
                tt_free(&got); tt_free(&want);
            }
            if (n == 1) {
                float inv;
                struct tt xq = tt_new(DTYPE_F32, k, 1);
                norm_bf16((float *)xq.p, &inv, (const float *)x.p, &nw, k, 1, 1e-6f);
                g_cuda->ops->norm_matmul_n(g_cuda, 3, outs, &dxn.t, &dx.t, &dnw.t, 1e-6f, 0.0f, ws, bs);
                for (int i = 0; i < 3; i++) {
                    struct tt got = tt_new(DTYPE_F32, ms[i], 1), want = tt_new(DTYPE_F32, ms[i], 1);
                    g_ref->ops->matmul(g_ref, tt_t(&want), tt_t(&xq), &w[i].h, NULL);
                    float *bias = malloc(sizeof(float) * (size_t)ms[i]);
                    dtype_to_f32(DTYPE_BF16, b.p, bias, ms[i]);
                    for (int j = 0; j < ms[i]; j++) ((float *)want.p)[j] = ((float *)want.p)[j] * inv + (i != 2 ? bias[j] : 0.0f);
                    free(bias);
                    dev_read(g_cuda, &dout[i], &got);
                    char what[96];
                    snprintf(what, sizeof what, "mma norm_matmul_n %d bit g%d weight %d", fs[fi].bits, fs[fi].gs, i);
                    EXPECTF(tt_close(what, got.p, want.p, ms[i], 1e-3, 1e-3, MMA_NMSE), "%s", what);
                    tt_free(&got); tt_free(&want);
                }
                tt_free(&xq);
            }
            EXPECT(g_cuda->ops->sync(g_cuda) == STATUS_OK);
            // the GLU (+ its RMSNorm at 1 row) on the first two matrices' shape: gate w[0] rows, up
            // a second matrix of that shape
            for (int with_norm = 0; with_norm <= (n == 1); with_norm++) {
                const int f = ms[0];
                struct qm u;
                qm_new(&u, g_cuda, &r, QMODE_AFFINE, fs[fi].bits, fs[fi].gs, k, f, DTYPE_BF16);
                struct tt o = tt_new(DTYPE_F32, f, n), up = tt_new(DTYPE_F32, f, n), gw = tt_new(DTYPE_F32, f, n),
                          uw = tt_new(DTYPE_F32, f, n), xq = tt_new(DTYPE_F32, k, n);
                float inv[16];
                if (with_norm) norm_bf16((float *)xq.p, inv, (const float *)x.p, &nw, k, n, 1e-6f);
                else {
                    tt_copy(&xq, &x);
                    round_bf16((float *)xq.p, (int64_t)n * k);
                    for (int t = 0; t < n; t++) inv[t] = 1.0f;
                }
                g_ref->ops->matmul(g_ref, tt_t(&gw), tt_t(&xq), &w[0].h, NULL);
                g_ref->ops->matmul(g_ref, tt_t(&uw), tt_t(&xq), &u.h, NULL);
                for (int t = 0; t < n; t++)
                    for (int j = 0; j < f; j++) {
                        float *gv = (float *)gw.p + (size_t)t * f + j;
                        const float gs = *gv * inv[t], us = ((float *)uw.p)[(size_t)t * f + j] * inv[t];
                        *gv = gs / (1.0f + expf(-gs)) * us;
                    }
                struct dbuf dup = dev_put(g_cuda, &up, 0), dglu = dev_put(g_cuda, &o, 0);
                g_cuda->ops->matmul_glu(g_cuda, &dglu.t, &dup.t, &dxn.t, &dx.t, with_norm ? &dnw.t : NULL, 1e-6f, 0.0f,
                                        &w[0].d, &u.d, ACT_SILU);
                dev_read(g_cuda, &dglu, &o);
                EXPECT(g_cuda->ops->sync(g_cuda) == STATUS_OK);
                char what[96];
                snprintf(what, sizeof what, "mma matmul_glu %d bit g%d n=%d%s", fs[fi].bits, fs[fi].gs, n,
                         with_norm ? " +norm" : "");
                EXPECTF(tt_close(what, o.p, gw.p, (int64_t)f * n, 1e-3, 1e-3, MMA_NMSE), "%s", what);
                g_cuda->ops->buffer_free(g_cuda, dup.b); g_cuda->ops->buffer_free(g_cuda, dglu.b);
                tt_free(&o); tt_free(&up); tt_free(&gw); tt_free(&uw); tt_free(&xq);
                qm_free(&u);
            }
            for (int i = 0; i < 3; i++) {
                g_cuda->ops->buffer_free(g_cuda, dout[i].b); g_cuda->ops->buffer_free(g_cuda, dsep[i].b);
                qm_free(&w[i]);
            }
            g_cuda->ops->buffer_free(g_cuda, dx.b); g_cuda->ops->buffer_free(g_cuda, db.b);
            g_cuda->ops->buffer_free(g_cuda, dnw.b); g_cuda->ops->buffer_free(g_cuda, dxn.b);
            tt_free(&x); tt_free(&b); tt_free(&nw); tt_free(&xn);
        }
}

/* The fixtures of tools/mlx_quant_ref.py: embed (the dequantizer) bit for bit, and the GEMV's
 * decoding through one-hot rows of x. */
TEST(fixtures_bitwise)
{
    struct model_file *mf;
    ASSERT(safetensors_open_file(QDIR "/quant.safetensors", &mf) == STATUS_OK);
    json_t *cases = json_load_file(QDIR "/cases.json", 0, NULL);
    ASSERT(cases);
    const int rows = (int)json_integer_value(json_object_get(cases, "rows"));
    const int cols = (int)json_integer_value(json_object_get(cases, "cols"));
    int32_t ids[64];
    for (int i = 0; i < rows; i++) ids[i] = i;
    struct batch_meta bm = { .n_tok = rows, .tok_id = ids, .tok_pos = ids, .tok_seq = (int32_t[64]){ 0 }, .n_seq = 1,
                             .seq_len = (int32_t[]){ 64 }, .seq_block0 = (int32_t[]){ 0, 0 }, .block_size = 16,
                             .tok_slot = (int64_t[64]){ 0 }, .out_tok = ids };
    g_cuda->ops->batch_begin(g_cuda, &bm);
    size_t ci;
    json_t *jc;
    json_array_foreach(json_object_get(cases, "cases"), ci, jc) {
        const char *c = json_string_value(json_object_get(jc, "name"));
        char name[128];
        struct qweight q = { 0 };
        struct tensor packed, deq;
        q.mode = (enum qmode)qmode_parse(json_string_value(json_object_get(jc, "mode")));
        q.bits = (int)json_integer_value(json_object_get(jc, "bits"));
        q.group_size = (int)json_integer_value(json_object_get(jc, "group_size"));
        snprintf(name, sizeof name, "%s.weight", c);
        ASSERT(safetensors_get(mf, name, &packed) == STATUS_OK);
        snprintf(name, sizeof name, "%s.scales", c);
        ASSERT(safetensors_get(mf, name, &q.scales) == STATUS_OK);
        if (q.mode == QMODE_AFFINE) {
            snprintf(name, sizeof name, "%s.biases", c);
            ASSERT(safetensors_get(mf, name, &q.biases) == STATUS_OK);
        }
        snprintf(name, sizeof name, "%s.dequant", c);
        ASSERT(safetensors_get(mf, name, &deq) == STATUS_OK);
        const float *want = tensor_data(&deq);
        const struct qweight hq = q;   // weight_prepare repoints q's scales to the device
        const struct tensor hw = qweight_tensor(&hq, &packed, cols);
        struct tensor w = qweight_tensor(&q, &packed, cols);
        ASSERT(g_cuda->ops->weight_prepare(g_cuda, &w) == STATUS_OK);
        // embed: rows 0 .. rows - 1, scale 1
        struct tt e = tt_new(DTYPE_F32, cols, rows);
        struct dbuf de = dev_put(g_cuda, &e, 0);
        g_cuda->ops->embed(g_cuda, &de.t, &w, &bm, 1.0f);
        dev_read(g_cuda, &de, &e);
        EXPECTF(!memcmp(e.p, want, sizeof(float) * (size_t)rows * cols), "%s: embed differs from the oracle's values", c);
        // GEMV on one-hot x: out[t, r] = w[r, col_t]
        enum { NT = 8 };
        struct tt x = tt_new(DTYPE_F32, cols, NT), o = tt_new(DTYPE_F32, rows, NT);
        int col[NT];
        for (int t = 0; t < NT; t++) {
            col[t] = (t * 37 + 5) % cols;
            ((float *)x.p)[(size_t)t * cols + col[t]] = 1.0f;
        }
        struct dbuf dx = dev_put(g_cuda, &x, 0), dout = dev_put(g_cuda, &o, 0);
        g_cuda->ops->matmul(g_cuda, &dout.t, &dx.t, &w, NULL);
        dev_read(g_cuda, &dout, &o);
        EXPECT(g_cuda->ops->sync(g_cuda) == STATUS_OK);
        int bad = 0;
        for (int t = 0; t < NT; t++)
            for (int rr = 0; rr < rows; rr++) {
                const float got = ((float *)o.p)[(size_t)t * rows + rr], ref = want[(size_t)rr * cols + col[t]];
                // affine: within an f32 rounding of the group's range (1 + q / 2^bits times s 2^bits)
                const double tol = q.mode == QMODE_AFFINE ? 4e-7 * (fabs(ref) + fabs(qweight_scale(&hw, rr, col[t] / q.group_size)) * (1 << q.bits)) : 0;
                if (!(fabs((double)got - ref) <= tol) && bad++ < 3)
                    fprintf(stderr, "  %s gemv [%d, %d]: %.9g, oracle %.9g\n", c, rr, col[t], got, ref);
            }
        EXPECTF(bad == 0, "%s: the GEMV's dequantization differs from the oracle (%d values)", c, bad);
        g_cuda->ops->buffer_free(g_cuda, de.b); g_cuda->ops->buffer_free(g_cuda, dx.b);
        g_cuda->ops->buffer_free(g_cuda, dout.b);
        tt_free(&e); tt_free(&x); tt_free(&o);
    }
    json_decref(cases);
    safetensors_close(mf);
}

/* Quantized experts: the device path (3 tokens), the per-expert host path (70 tokens), experts
 * whose inputs the device kernel does not take (f = 48: per expert at any count), and a float
 * down projection beside quantized gate and up (mlx-lm leaves a module float when no group
 * divides its inputs). */
TEST(moe_quantized)
{
    struct rng r;
    rng_seed(&r, 24);
    const int E = 8, k = 2, dm = 64;
    const struct fmt fs[] = { { QMODE_AFFINE, 4, 32 }, { QMODE_AFFINE, 8, 64 }, { QMODE_MXFP4, 4, 32 }, { QMODE_NVFP4, 4, 16 } };
    for (int fi = 0; fi < 4; fi++)
        for (int fv = 0; fv < 3; fv++) {
            const int f = fv == 1 ? 48 : 64;
            const bool float_down = fv == 2;
            if (f % fs[fi].gs) continue;
            struct qm g[8], u[8], d[8];
            struct tt fd[8];
            struct dbuf dfd[8];
            memset(fd, 0, sizeof fd);
            memset(dfd, 0, sizeof dfd);
            struct tensor hg[8], hu[8], hd[8], tg[8], tu[8], td[8];
            for (int e = 0; e < E; e++) {
                qm_new(&g[e], g_cuda, &r, fs[fi].mode, fs[fi].bits, fs[fi].gs, dm, f, DTYPE_BF16);
                qm_new(&u[e], g_cuda, &r, fs[fi].mode, fs[fi].bits, fs[fi].gs, dm, f, DTYPE_BF16);
                qm_new(&d[e], g_cuda, &r, fs[fi].mode, fs[fi].bits, fs[fi].gs, f, dm, DTYPE_BF16);
                hg[e] = g[e].h; hu[e] = u[e].h; hd[e] = d[e].h;
                tg[e] = g[e].d; tu[e] = u[e].d; td[e] = d[e].d;
                if (float_down) {
                    fd[e] = tt_new(DTYPE_BF16, f, dm);
                    tt_randn(&fd[e], &r, 0.05f);
                    dfd[e] = dev_put(g_cuda, &fd[e], 0);
                    hd[e] = *tt_t(&fd[e]);
                    td[e] = dfd[e].t;
                }
            }
            static const int sizes[3] = { 3, 37, 70 };
            for (int si = 0; si < 3; si++) {
                const int n = sizes[si];
                struct tt x = tt_new(DTYPE_F32, dm, n), lg = tt_new(DTYPE_F32, E, n), ids = tt_new(DTYPE_I32, k, n),
                          w = tt_new(DTYPE_F32, k, n), a = tt_new(DTYPE_F32, dm, n), b = tt_new(DTYPE_F32, dm, n);
                tt_randn(&x, &r, 1.0f);
                tt_randn(&lg, &r, 1.0f);
                g_ref->ops->moe_route(g_ref, tt_t(&ids), tt_t(&w), tt_t(&lg), k, true);
                g_ref->ops->moe_ffn(g_ref, tt_t(&b), tt_t(&x), tt_t(&ids), tt_t(&w), hg, hu, hd, E, ACT_SILU);
                struct dbuf dx = dev_put(g_cuda, &x, 0), dids = dev_put(g_cuda, &ids, 0), dw = dev_put(g_cuda, &w, 0),
                            dout = dev_put(g_cuda, &a, 0);
                g_cuda->ops->moe_ffn(g_cuda, &dout.t, &dx.t, &dids.t, &dw.t, tg, tu, td, E, ACT_SILU);
                dev_read(g_cuda, &dout, &a);
                EXPECT(g_cuda->ops->sync(g_cuda) == STATUS_OK);
                const bool tight = n <= 64;   // GEMV rows in f32; the host path's experts see 4-20 rows (GEMV too)
                char what[128];
                snprintf(what, sizeof what, "moe_ffn %s %d bit g%d f=%d n=%d%s", qmode_name(fs[fi].mode), fs[fi].bits,
                         fs[fi].gs, f, n, float_down ? " (bf16 down)" : "");
                EXPECTF(tt_close(what, a.p, b.p, (int64_t)dm * n, tight ? 1e-4 : 2e-2, 1e-3, tight ? 1e-9 : 1e-4), "%s", what);
                g_cuda->ops->buffer_free(g_cuda, dx.b); g_cuda->ops->buffer_free(g_cuda, dids.b);
                g_cuda->ops->buffer_free(g_cuda, dw.b); g_cuda->ops->buffer_free(g_cuda, dout.b);
                tt_free(&x); tt_free(&lg); tt_free(&ids); tt_free(&w); tt_free(&a); tt_free(&b);
            }
            for (int e = 0; e < E; e++) {
                qm_free(&g[e]); qm_free(&u[e]); qm_free(&d[e]);
                if (float_down) { g_cuda->ops->buffer_free(g_cuda, dfd[e].b); tt_free(&fd[e]); }
            }
        }
}

int main(void)
{
    if (backend_new("ref", NULL, &g_ref) != STATUS_OK) return 1;
    if (backend_new("cuda", NULL, &g_cuda) != STATUS_OK) {
        if (access("/dev/nvidiactl", F_OK) != 0) test_skip("no NVIDIA GPU here (run it with make test-cuda on the GPU machine)");
        fprintf(stderr, "FAIL: cannot create the cuda backend on this GPU machine\n");
        return 1;
    }
    RUN(fixtures_bitwise);
    RUN(matmul_every_format);
    RUN(fused_ops);
    RUN(gemv_mma);
    RUN(matmul_precise);
    RUN(deterministic_batch_invariance);
    RUN(moe_quantized);
    backend_free(g_cuda);
    backend_free(g_ref);
    return test_summary();
}
