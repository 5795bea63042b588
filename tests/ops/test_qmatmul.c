/* Ops on MLX-quantized weights (DTYPE_QMLX): the cpu backend against ref (the oracle, which
 * dequantizes exactly; its dequantization equals tools/mlx_quant_ref.py bit for bit, see
 * tests/model/test_quant.c), for every mode / width / group size:
 *  - the cpu dequantizers of every ISA this CPU has equal qweight_dequant_row bit for bit;
 *  - matmul, matmul_rows and embed agree with ref within f32-accumulation tolerance;
 *  - a row's matmul output does not depend on the batch (bit for bit), the decode GEMV's rows
 *    (n = 1) included, at short and long k;
 *  - affine 4- and 8-bit weights take the integer kernels (qint.h): every ISA's kernel gives the
 *    same bits at 1, 3 and 9 rows, and each output is within the bound that the two-level x
 *    quantization allows of the f64 product of the dequantized weights and the exact x (a
 *    mutation that drops the l level must break that bound). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/qdeq.h"
#include "backend/cpu/qint.h"
#include "base/log.h"
#include "harness.h"
#include "ops_util.h"
#include "tensor/qweight.h"

struct qcase { enum qmode mode; int bits, gs; };
static const struct qcase CASES[] = {
    { QMODE_AFFINE, 2, 32 }, { QMODE_AFFINE, 2, 128 }, { QMODE_AFFINE, 3, 32 }, { QMODE_AFFINE, 3, 64 },
    { QMODE_AFFINE, 4, 32 }, { QMODE_AFFINE, 4, 64 }, { QMODE_AFFINE, 4, 128 }, { QMODE_AFFINE, 5, 64 },
    { QMODE_AFFINE, 6, 32 }, { QMODE_AFFINE, 6, 128 }, { QMODE_AFFINE, 8, 32 }, { QMODE_AFFINE, 8, 64 },
    { QMODE_AFFINE, 8, 128 }, { QMODE_MXFP4, 4, 32 }, { QMODE_MXFP8, 8, 32 }, { QMODE_NVFP4, 4, 16 },
};
#define N_CASES (int)(sizeof CASES / sizeof CASES[0])

/* A quantized [rows, k] weight that owns its memory; must not move once made (w.q points into it). */
struct qw {
    struct qweight q;
    struct tensor  w;
    struct buffer  bp, bs, bb;
};

static struct qw *qw_new(const struct qcase *c, int64_t rows, int64_t k, struct rng *r)
{
    struct qw *o = calloc(1, sizeof *o);
    int64_t words = k * c->bits / 32, groups = k / c->gs;
    bool affine = c->mode == QMODE_AFFINE;
    uint32_t *packed = calloc((size_t)(rows * words), 4);
    uint8_t *scales = calloc((size_t)(rows * groups), 2), *biases = calloc((size_t)(rows * groups), 2);
    float *x = malloc((size_t)k * 4), *sf = malloc((size_t)groups * 4), *bf = malloc((size_t)groups * 4);
    for (int64_t i = 0; i < rows; i++) {
        for (int64_t j = 0; j < k; j++) x[j] = rng_normal(r) * 0.05f;
        CHECK(qweight_quantize_row(c->mode, c->bits, c->gs, x, k, packed + i * words, sf, bf,
                                   scales + i * groups), "quantize");
        if (affine) {
            dtype_from_f32(DTYPE_BF16, sf, scales + 2 * i * groups, (size_t)groups);
            dtype_from_f32(DTYPE_BF16, bf, biases + 2 * i * groups, (size_t)groups);
        }
    }
    free(x); free(sf); free(bf);
    o->bp = (struct buffer){ .kind = BUF_HOST, .data = packed, .bytes = (size_t)(rows * words) * 4 };
    o->bs = (struct buffer){ .kind = BUF_HOST, .data = scales, .bytes = (size_t)(rows * groups) * 2 };
    o->bb = (struct buffer){ .kind = BUF_HOST, .data = biases, .bytes = (size_t)(rows * groups) * 2 };
    o->q = (struct qweight){ .mode = c->mode, .bits = c->bits, .group_size = c->gs };
    o->q.scales = tensor_2d(affine ? DTYPE_BF16 : DTYPE_U8, groups, rows, &o->bs, 0);
    if (affine) o->q.biases = tensor_2d(DTYPE_BF16, groups, rows, &o->bb, 0);
    struct tensor p = tensor_2d(DTYPE_U32, words, rows, &o->bp, 0);
    o->w = qweight_tensor(&o->q, &p, k);
    return o;
}

static void qw_free(struct qw *o)
{
    free(o->bp.data); free(o->bs.data); free(o->bb.data); free(o);
}

static struct backend *g_ref, *g_cpu;

/* Whether out[n, m] (row stride ldo) = x[n, k] . w^T within the integer path's bound (qint.h), against
 * the f64 product of the dequantized rows and the exact x. The kernel computes w . x~: per lane of
 * codes, |x - x~| <= sx / 2 plus the f32 roundings of x / sx and of sx (under 1% of that: 0.51 sx,
 * sx = the lane's largest |x| / 32512), times |w|; the float formula and the f32 sums of x~ add at
 * most (chunks + blocks per lane + lanes per group + 8) roundings of 2^-24 of
 * sum |s q x| + sum |b| |x|. */
static bool int_within_bound(const char *what, const struct tensor *w, const float *x, int64_t n, const float *out,
                             int64_t ldo)
{
    int64_t k = w->ne[0], m = tensor_rows(w), gs = w->q->group_size, ng = k / gs;
    struct qint_geom geo = qint_geom(k, w->q->bits, (int)gs);
    int64_t per = geo.block_codes / QINT_LANES;
    double steps = (double)(geo.groups_pad / QINT_LANES + geo.k_pad / geo.block_codes + gs / per + 8);
    float *dq = malloc((size_t)k * 4), *s = malloc((size_t)ng * 4), *b = malloc((size_t)ng * 4);
    int64_t bad = 0;
    double worst = 0;
    for (int64_t j = 0; j < m; j++) {
        qweight_dequant_row(w, j, dq);
        cpu_qdeq_scales(w, j, 0, ng, s, b);
        for (int64_t i = 0; i < n; i++) {
            const float *xi = x + i * k;
            double exact = 0, mag = 0, qerr = 0;
            for (int64_t t = 0; t < k; t++) {
                double sq = fabs((double)dq[t] - b[t / gs]);
                exact += (double)dq[t] * xi[t];
                mag += sq * fabs(xi[t]) + fabs(b[t / gs]) * fabs(xi[t]);
            }
            for (int64_t a = 0; a < k; a += per) {
                double mx = 0, abs_w = 0;   // over the lane
                for (int64_t t = a; t < a + per && t < k; t++) {
                    abs_w += fabs(dq[t]);
                    if (fabs(xi[t]) > mx) mx = fabs(xi[t]);
                }
                qerr += 0.51 * mx / QINT_XMAX * abs_w;
            }
            double bound = qerr + steps * 0x1p-24 * mag, d = fabs(out[i * ldo + j] - exact);
            if (d / bound > worst) worst = d / bound;
            if (!(d <= bound)) {
                if (bad < 3)
                    fprintf(stderr, "    %s: [%lld, %lld] got %.9g want %.9g (diff %.3g > bound %.3g)\n", what,
                            (long long)i, (long long)j, out[i * ldo + j], exact, d, bound);
                bad++;
            }
        }
    }
    free(dq); free(s); free(b);
    if (bad) fprintf(stderr, "    %s: %lld of %lld outside the bound (worst %.2fx)\n", what, (long long)bad,
                     (long long)(n * m), worst);
    return bad == 0;
}

TEST(dequant_every_isa_bitwise)
{
    struct rng r;
    rng_seed(&r, 1);
    struct { const char *name; cpu_qdeq_fn f; bool ok; } isa[] = {
        { "portable", cpu_qdeq_row_portable, true },
        { "avx2", cpu_qdeq_row_avx2, __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") },
        { "avx512", cpu_qdeq_row_avx512, __builtin_cpu_supports("avx512f") },
        { "avx512vbmi", cpu_qdeq_row_avx512vbmi, __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vbmi") },
    };
    int64_t k = 384, rows = 5;
    float *want = malloc((size_t)k * 4), *got = malloc((size_t)k * 4);
    for (int c = 0; c < N_CASES; c++) {
        if (k % CASES[c].gs) continue;
        struct qw *o = qw_new(&CASES[c], rows, k, &r);
        for (size_t i = 0; i < sizeof isa / sizeof isa[0]; i++) {
            if (!isa[i].ok) continue;
            int bad = 0;
            for (int64_t row = 0; row < rows; row++) {
                qweight_dequant_row(&o->w, row, want);
                isa[i].f(&o->w, row, got);
                bad += memcmp(want, got, (size_t)k * 4) != 0;
            }
            EXPECTF(bad == 0, "%s %d-bit g%d on %s: %d rows differ", qmode_name(CASES[c].mode), CASES[c].bits,
                    CASES[c].gs, isa[i].name, bad);
        }
        qw_free(o);
    }
    free(want);
    free(got);
}

TEST(matmul_cpu_vs_ref)
{
    struct rng r;
    rng_seed(&r, 2);
    // n 2 .. 8: the batched-decode GEMV (blocks of up to 4 x rows, with every remainder)
    const int64_t ks[] = { 128, 640 }, ms[] = { 37, 96 }, ns[] = { 1, 2, 3, 5, 7, 8, 17 };
    for (int c = 0; c < N_CASES; c++)
        for (int ki = 0; ki < 2; ki++) {
            int64_t k = ks[ki], m = ms[ki];
            struct qw *o = qw_new(&CASES[c], m, k, &r);
            for (int ni = 0; ni < (int)(sizeof ns / sizeof ns[0]); ni++) {
                int64_t n = ns[ni];
                struct tt x = tt_new(DTYPE_F32, k, n), a = tt_new(DTYPE_F32, m, n), b = tt_new(DTYPE_F32, m, n);
                tt_randn(&x, &r, 1.0f);
                g_ref->ops->matmul(g_ref, tt_t(&b), tt_t(&x), &o->w, NULL);
                g_cpu->ops->matmul(g_cpu, tt_t(&a), tt_t(&x), &o->w, NULL);
                char what[96];
                snprintf(what, sizeof what, "%s %d-bit g%d k%lld n%lld", qmode_name(CASES[c].mode), CASES[c].bits,
                         CASES[c].gs, (long long)k, (long long)n);
                if (cpu_qint_takes(&o->w)) EXPECTF(int_within_bound(what, &o->w, x.p, n, a.p, m), "%s", what);
                else EXPECTF(tt_close(what, a.p, b.p, m * n, 1e-5, 1e-4, 1e-10), "%s", what);
                // batch invariance: each row alone gives the same bits
                struct tt x1 = tt_new(DTYPE_F32, k, 1), a1 = tt_new(DTYPE_F32, m, 1);
                int bad = 0;
                for (int64_t i = 0; i < n; i++) {
                    memcpy(x1.p, (float *)x.p + i * k, (size_t)k * 4);
                    g_cpu->ops->matmul(g_cpu, tt_t(&a1), tt_t(&x1), &o->w, NULL);
                    bad += memcmp(a1.p, (float *)a.p + i * m, (size_t)m * 4) != 0;
                }
                EXPECTF(!bad, "%s: %d rows batch-dependent", what, bad);
                tt_free(&x); tt_free(&a); tt_free(&b); tt_free(&x1); tt_free(&a1);
            }
            qw_free(o);
        }
}

/* Rows longer than the GEMV's scale chunk (256 groups at g32) and a row count that leaves a
 * partial step of rows: the decode GEMV against ref, and bit for bit against the GEMM (n = 9). */
TEST(gemv_long_rows)
{
    struct rng r;
    rng_seed(&r, 4);
    int64_t k = 8448, m = 7, n = 9;
    for (int c = 0; c < N_CASES; c++) {
        struct qw *o = qw_new(&CASES[c], m, k, &r);
        struct tt x = tt_new(DTYPE_F32, k, n), a = tt_new(DTYPE_F32, m, n), x1 = tt_new(DTYPE_F32, k, 1);
        struct tt a1 = tt_new(DTYPE_F32, m, 1), b1 = tt_new(DTYPE_F32, m, 1);
        tt_randn(&x, &r, 1.0f);
        memcpy(x1.p, (float *)x.p + 4 * k, (size_t)k * 4);
        g_cpu->ops->matmul(g_cpu, tt_t(&a), tt_t(&x), &o->w, NULL);
        g_cpu->ops->matmul(g_cpu, tt_t(&a1), tt_t(&x1), &o->w, NULL);
        g_ref->ops->matmul(g_ref, tt_t(&b1), tt_t(&x1), &o->w, NULL);
        char what[96];
        snprintf(what, sizeof what, "%s %d-bit g%d k%lld", qmode_name(CASES[c].mode), CASES[c].bits, CASES[c].gs,
                 (long long)k);
        if (cpu_qint_takes(&o->w)) EXPECTF(int_within_bound(what, &o->w, x1.p, 1, a1.p, m), "%s", what);
        else EXPECTF(tt_close(what, a1.p, b1.p, m, 1e-5, 1e-4, 1e-10), "%s", what);
        EXPECTF(!memcmp(a1.p, (float *)a.p + 4 * m, (size_t)m * 4), "%s: GEMV differs from the GEMM", what);
        tt_free(&x); tt_free(&a); tt_free(&x1); tt_free(&a1); tt_free(&b1);
        qw_free(o);
    }
}

/* Whether the cpu backend runs its avx512 family here. */
static bool runs_avx512(void)
{
    const char *isa = getenv("CAIRN_CPU_ISA");
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && (!isa || !strcmp(isa, "avx512"));
}

/* Every AVX-512 build of the GEMV this CPU runs (with and without VBMI), at 1 and 3 x rows, gives
 * the bits of the backend's GEMM (n = 9); run where the backend runs the avx512 family. */
TEST(gemv_every_avx512_build_bitwise)
{
    struct { const char *name; cpu_qgemv_fn f; bool ok; } builds[] = {
        { "avx512", cpu_qgemv_avx512, true },
        { "avx512vbmi", cpu_qgemv_avx512vbmi, __builtin_cpu_supports("avx512vbmi") },
    };
    struct rng r;
    rng_seed(&r, 5);
    int64_t k = 640, m = 37, n = 9;
    float *got = malloc((size_t)(3 * m) * 4);
    for (int c = 0; c < N_CASES; c++) {
        struct qw *o = qw_new(&CASES[c], m, k, &r);
        if (cpu_qint_takes(&o->w)) {   // the integer kernels' own test below
            qw_free(o);
            continue;
        }
        struct tt x = tt_new(DTYPE_F32, k, n), a = tt_new(DTYPE_F32, m, n);
        tt_randn(&x, &r, 1.0f);
        g_cpu->ops->matmul(g_cpu, tt_t(&a), tt_t(&x), &o->w, NULL);
        for (size_t i = 0; i < sizeof builds / sizeof builds[0]; i++) {
            for (int nx = 1; nx <= 3; nx += 2) {   // x rows 4 (n = 1), 2 .. 4 (n = 3)
                int64_t i0 = 5 - nx;
                if (!builds[i].ok || !builds[i].f(&o->w, 0, m, (float *)x.p + i0 * k, k, nx, got, m)) continue;
                EXPECTF(!memcmp(got, (float *)a.p + i0 * m, (size_t)(nx * m) * 4),
                        "%s %d-bit g%d: the %s GEMV (n %d) differs from the GEMM", qmode_name(CASES[c].mode),
                        CASES[c].bits, CASES[c].gs, builds[i].name, nx);
            }
        }
        tt_free(&x); tt_free(&a);
        qw_free(o);
    }
    free(got);
}

/* The integer kernels: every ISA this CPU has gives the bits of the portable loops (and of the
 * backend's matmul) at 1, 3 and 9 x rows, k with a partial last block included; zeroing the l
 * level of the prepared x (a broken second level) must leave the bound. */
TEST(int_kernels_every_isa_bitwise)
{
    struct { const char *name; cpu_qint_fn f; cpu_qint_quantize_fn prep; bool ok; } isa[] = {
        { "avx2", cpu_qint_avx2, cpu_qint_quantize_x_avx2, __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") },
        { "avx512vnni", cpu_qint_avx512vnni, cpu_qint_quantize_x_avx512,
          __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
              __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") },
    };
    struct rng r;
    rng_seed(&r, 6);
    const int64_t ks[] = { 96, 640, 2112 }, n = 9, m = 21;
    for (int c = 0; c < N_CASES; c++)
        for (int ki = 0; ki < 3; ki++) {
            int64_t k = ks[ki];
            if (k % CASES[c].gs) continue;
            struct qw *o = qw_new(&CASES[c], m, k, &r);
            if (!cpu_qint_takes(&o->w)) {
                qw_free(o);
                continue;
            }
            char what[96];
            snprintf(what, sizeof what, "affine %d-bit g%d k%lld", CASES[c].bits, CASES[c].gs, (long long)k);
            struct tt x = tt_new(DTYPE_F32, k, n), a = tt_new(DTYPE_F32, m, n);
            tt_randn(&x, &r, 1.0f);
            for (int64_t t = 0; t < k; t += 7) ((float *)x.p)[2 * k + t] *= 1000.0f;   // uneven group ranges
            for (int64_t t = 0; t < k / 2; t++) ((float *)x.p)[3 * k + t] = 0.0f;      // zero lanes
            for (int64_t t = 0; t < k; t += 3) ((float *)x.p)[4 * k + t] *= 1e-38f;    // tiny (and subnormal) ones
            g_cpu->ops->matmul(g_cpu, tt_t(&a), tt_t(&x), &o->w, NULL);
            size_t ld = cpu_qint_x_bytes(k, CASES[c].bits, CASES[c].gs);
            uint8_t *xq = aligned_alloc(64, ld * (size_t)n);
            for (int64_t i = 0; i < n; i++)
                cpu_qint_quantize_x((float *)x.p + i * k, k, CASES[c].bits, CASES[c].gs, xq + (size_t)i * ld);
            if (isa[0].ok) {   // the AVX2 preparation writes the bytes of the portable words layout
                uint8_t *xw = aligned_alloc(64, ld), *xa = aligned_alloc(64, ld);
                int bad = 0;
                for (int64_t i = 0; i < n; i++) {
                    cpu_qint_quantize_x_words((float *)x.p + i * k, k, CASES[c].bits, CASES[c].gs, xw);
                    cpu_qint_quantize_x_avx2((float *)x.p + i * k, k, CASES[c].bits, CASES[c].gs, xa);
                    bad += memcmp(xw, xa, ld) != 0;
                }
                EXPECTF(!bad, "%s: the AVX2 x preparation differs in %d rows", what, bad);
                free(xw); free(xa);
            }
            if (isa[1].ok) {   // the AVX-512 preparation writes the same bytes
                uint8_t *xq2 = aligned_alloc(64, ld);
                int bad = 0;
                for (int64_t i = 0; i < n; i++) {
                    cpu_qint_quantize_x_avx512((float *)x.p + i * k, k, CASES[c].bits, CASES[c].gs, xq2);
                    bad += memcmp(xq2, xq + (size_t)i * ld, ld) != 0;
                }
                EXPECTF(!bad, "%s: the AVX-512 x preparation differs in %d rows", what, bad);
                free(xq2);
            }
            float *want = malloc((size_t)(n * m) * 4), *got = malloc((size_t)(n * m) * 4);
            cpu_qint_portable(&o->w, 0, m, xq, ld, n, want, m);
            EXPECTF(!memcmp(want, a.p, (size_t)(n * m) * 4), "%s: the backend's matmul differs from the portable loops",
                    what);
            EXPECTF(int_within_bound(what, &o->w, x.p, n, want, m), "%s", what);
            uint8_t *xqi = aligned_alloc(64, ld * (size_t)n);
            for (size_t i = 0; i < sizeof isa / sizeof isa[0]; i++) {
                if (!isa[i].ok) continue;
                for (int64_t row = 0; row < n; row++)
                    isa[i].prep((float *)x.p + row * k, k, CASES[c].bits, CASES[c].gs, xqi + (size_t)row * ld);
                for (int64_t nx = 1; nx <= n; nx += nx < 3 ? 2 : 6) {   // 1, 3, 9 rows of x
                    memset(got, 0, (size_t)(n * m) * 4);
                    isa[i].f(&o->w, 0, m, xqi, ld, nx, got, m);
                    EXPECTF(!memcmp(got, want, (size_t)(nx * m) * 4), "%s: %s at %lld rows differs from portable", what,
                            isa[i].name, (long long)nx);
                }
            }
            free(xqi);
            // mutation: without the l level x is known to 128 sx, not sx / 2 (8-bit: v holds both)
            struct qint_geom geo = qint_geom(k, CASES[c].bits, CASES[c].gs);
            for (int64_t i = 0; i < n; i++)
                for (int64_t b = 0; b < geo.k_pad / geo.block_codes; b++) {
                    uint8_t *lv = xq + (size_t)i * ld + (size_t)geo.groups_pad * 4 + (size_t)b * geo.xblock_bytes + 64;
                    if (CASES[c].bits == 4) {
                        memset(lv + 128, 0, 128);
                        continue;
                    }
                    for (int t = 0; t < 128; t++) {
                        int16_t v;
                        memcpy(&v, lv + 2 * t, 2);
                        v = (int16_t)(((v + 32896) / 256 - 128) * 256);   // 256 h
                        memcpy(lv + 2 * t, &v, 2);
                    }
                }
            cpu_qint_portable(&o->w, 0, m, xq, ld, n, got, m);
            fprintf(stderr, "    (mutation, expected to fail the bound:)\n");
            EXPECTF(!int_within_bound("l level dropped", &o->w, x.p, n, got, m), "%s: dropping the l level went unseen",
                    what);
            free(xq); free(want); free(got);
            tt_free(&x); tt_free(&a);
            qw_free(o);
        }
}

/* A decode slice of QINT_STREAM_MIN_BYTES or more, which the AVX-512 kernel walks as four streams
 * of rows (a row count that leaves the last stream shorter, and a slice that starts at an odd row):
 * the bits of the portable loops, as for adjacent rows. */
TEST(int_gemv_streams_bitwise)
{
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni")))
        SKIP_CASE("this CPU lacks AVX-512 VNNI");
    struct rng r;
    rng_seed(&r, 8);
    const struct qcase cs[2] = { { QMODE_AFFINE, 4, 64 }, { QMODE_AFFINE, 8, 64 } };
    const int64_t k = 256;
    for (int c = 0; c < 2; c++) {
        int64_t row_bytes = k * cs[c].bits / 8, m = QINT_STREAM_MIN_BYTES / row_bytes + 7;   // m % 4 == 3
        struct qw *o = qw_new(&cs[c], m, k, &r);
        struct tt x = tt_new(DTYPE_F32, k, 1);
        tt_randn(&x, &r, 1.0f);
        size_t ld = cpu_qint_x_bytes(k, cs[c].bits, cs[c].gs);
        uint8_t *xq = aligned_alloc(64, ld);
        cpu_qint_quantize_x(x.p, k, cs[c].bits, cs[c].gs, xq);
        float *want = malloc((size_t)m * 4), *got = malloc((size_t)m * 4);
        cpu_qint_portable(&o->w, 0, m, xq, ld, 1, want, m);
        const int64_t j0s[2] = { 0, 5 };
        for (int s = 0; s < 2; s++) {
            int64_t j0 = j0s[s];
            EXPECT((m - j0) * row_bytes >= QINT_STREAM_MIN_BYTES);
            memset(got, 0, (size_t)m * 4);
            cpu_qint_avx512vnni(&o->w, j0, m, xq, ld, 1, got, m);
            int bad = 0;
            for (int64_t j = j0; j < m; j++) bad += memcmp(&got[j], &want[j], 4) != 0;
            for (int64_t j = 0; j < j0; j++) bad += got[j] != 0.0f;   // rows outside the slice untouched
            EXPECTF(!bad, "affine %d-bit, rows [%lld, %lld) in streams: %d outputs differ from the portable loops",
                    cs[c].bits, (long long)j0, (long long)m, bad);
        }
        free(xq); free(want); free(got);
        tt_free(&x);
        qw_free(o);
    }
}

/* An Inf or NaN in x makes the outputs of its row NaN (never a silent finite value), and the other
 * rows of the batch keep their bits. */
TEST(int_nonfinite_x)
{
    struct rng r;
    rng_seed(&r, 7);
    const struct qcase c = { QMODE_AFFINE, 4, 64 };
    int64_t k = 256, m = 16;
    struct qw *o = qw_new(&c, m, k, &r);
    struct tt x = tt_new(DTYPE_F32, k, 3), a = tt_new(DTYPE_F32, m, 3), x1 = tt_new(DTYPE_F32, k, 1), a1 = tt_new(DTYPE_F32, m, 1);
    tt_randn(&x, &r, 1.0f);
    ((float *)x.p)[0 * k + 5] = INFINITY;
    ((float *)x.p)[1 * k + 200] = NAN;
    g_cpu->ops->matmul(g_cpu, tt_t(&a), tt_t(&x), &o->w, NULL);
    int finite = 0;
    for (int64_t j = 0; j < 2 * m; j++) finite += !isnan(((float *)a.p)[j]);
    EXPECTF(!finite, "%d outputs of rows with Inf / NaN are not NaN", finite);
    memcpy(x1.p, (float *)x.p + 2 * k, (size_t)k * 4);
    g_cpu->ops->matmul(g_cpu, tt_t(&a1), tt_t(&x1), &o->w, NULL);
    EXPECT(!memcmp(a1.p, (float *)a.p + 2 * m, (size_t)m * 4));
    tt_free(&x); tt_free(&a); tt_free(&x1); tt_free(&a1);
    qw_free(o);
}

TEST(embed_and_matmul_rows)
{
    struct rng r;
    rng_seed(&r, 3);
    int64_t vocab = 50, d = 256;
    int32_t ids[4] = { 0, 49, 7, 7 }, pos[4] = { 0, 1, 2, 3 }, out_tok[2] = { 3, 1 };
    struct batch_meta meta = { .n_tok = 4, .tok_id = ids, .tok_pos = pos, .n_out = 2, .out_tok = out_tok };
    for (int c = 0; c < N_CASES; c++) {
        struct qw *o = qw_new(&CASES[c], vocab, d, &r);
        struct tt a = tt_new(DTYPE_F32, d, 4), b = tt_new(DTYPE_F32, d, 4);
        g_ref->ops->embed(g_ref, tt_t(&b), &o->w, &meta, 1.0f);
        g_cpu->ops->embed(g_cpu, tt_t(&a), &o->w, &meta, 1.0f);
        EXPECTF(!memcmp(a.p, b.p, (size_t)(4 * d) * 4), "embed %s %d-bit g%d", qmode_name(CASES[c].mode),
                CASES[c].bits, CASES[c].gs);
        struct tt la = tt_new(DTYPE_F32, vocab, 2), lb = tt_new(DTYPE_F32, vocab, 2);
        g_ref->ops->matmul_rows(g_ref, tt_t(&lb), tt_t(&b), &o->w, &meta);
        g_cpu->ops->matmul_rows(g_cpu, tt_t(&la), tt_t(&b), &o->w, &meta);
        float xr[2 * 256];   // the rows matmul_rows picks: tokens 3 and 1
        memcpy(xr, (float *)b.p + 3 * d, (size_t)d * 4);
        memcpy(xr + d, (float *)b.p + 1 * d, (size_t)d * 4);
        if (cpu_qint_takes(&o->w)) EXPECT(int_within_bound("matmul_rows", &o->w, xr, 2, la.p, vocab));
        else EXPECT(tt_close("matmul_rows", la.p, lb.p, 2 * vocab, 1e-5, 1e-4, 1e-10));
        tt_free(&a); tt_free(&b); tt_free(&la); tt_free(&lb);
        qw_free(o);
    }
}

int main(void)
{
    if (backend_new("ref", &(struct backend_cfg){ 0 }, &g_ref) != STATUS_OK ||
        backend_new("cpu", &(struct backend_cfg){ .n_threads = 2 }, &g_cpu) != STATUS_OK)
        return 1;
    RUN(dequant_every_isa_bitwise);
    RUN(matmul_cpu_vs_ref);
    RUN(gemv_long_rows);
    if (runs_avx512()) RUN(gemv_every_avx512_build_bitwise);
    RUN(int_kernels_every_isa_bitwise);
    RUN(int_gemv_streams_bitwise);
    RUN(int_nonfinite_x);
    RUN(embed_and_matmul_rows);
    backend_free(g_ref);
    backend_free(g_cpu);
    return test_summary();
}
