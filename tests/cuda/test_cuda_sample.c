/* test_cuda_sample: the cuda sample_cands op against the ref op (backend/host.c) on the same rows:
 * ids and values identical (values are copies of logits: bit for bit), sums within 1e-9 relative
 * (both are f64 sums of the same f32 probabilities, in another order: V * 2^-53 < 3e-11 here; the
 * sampler tolerates 2^-18). Rows: every size from 1 to wider than a block's work, random, peaked,
 * flat, ties across the k-th, all -inf, a few allowed ids among -inf, NaN and -0; a subset of the
 * tensor's rows in shuffled order with a temperature each; k = 1, 65 and the maximum. Then the
 * probabilities themselves: two-id rows [0, x] give sums 1 + p(x), exact in f64, which must equal
 * ref's bit for bit (the device repeats base/sample_prob.h's roundings). Last a timing line for
 * 64 rows of a 151,936-id vocabulary (the engine's call at 64 streams). */
#include "cuda/cuda_util.h"

#include <math.h>

#include "backend/backend.h"
#include "base/clock.h"
#include "base/mem.h"
#include "base/rng.h"

enum { KINDS = 7 };

static void fill_row(int kind, float *l, int V, struct rng *r)
{
    for (int i = 0; i < V; i++) {
        switch (kind) {
        case 0: l[i] = 2.0f * rng_normal(r); break;
        case 1: l[i] = rng_normal(r); break;
        case 2: l[i] = 0.01f * rng_normal(r); break;
        case 3: l[i] = (float)(int)(4.0f * rng_uniform(r)); break;   // ties everywhere
        case 4: l[i] = -INFINITY; break;
        case 5: l[i] = -INFINITY; break;
        default: l[i] = rng_next(r) % 5 == 0 ? NAN : rng_next(r) % 3 == 0 ? -0.0f : rng_normal(r); break;
        }
    }
    if (kind == 1)
        for (int i = 0; i < 16 && i < V; i++) l[rng_next(r) % (uint64_t)V] = 9.0f + rng_normal(r);
    if (kind == 5)
        for (int i = 0; i < 40 && i < V; i++) l[(i * 7919 + 5) % V] = (float)(i % 4);
    if (kind == 6) l[V - 1] = 0.0f;
}

/* n_rows rows of V logits; the op on `n` of them (shuffled) on both backends, compared. */
static void compare_case(int V, int n_rows, int n, int k, struct rng *r)
{
    struct tt x = tt_new(DTYPE_F32, V, n_rows);
    float *l = x.p;
    for (int i = 0; i < n_rows; i++) fill_row(i % KINDS, l + (size_t)i * V, V, r);
    int32_t *rows = xmalloc(sizeof(int32_t) * (size_t)n);
    float *inv_t = xmalloc(sizeof(float) * (size_t)n);
    for (int i = 0; i < n; i++) {
        rows[i] = (int32_t)((i * 7 + 3) % n_rows);
        inv_t[i] = 1.0f / (0.3f + 0.2f * (float)(i % 6));
    }
    size_t nk = (size_t)n * k;
    int32_t *ids_r = xmalloc(nk * 4), *ids_c = xmalloc(nk * 4);
    float *vals_r = xmalloc(nk * 4), *vals_c = xmalloc(nk * 4);
    double *sums_r = xmalloc((size_t)n * 8), *sums_c = xmalloc((size_t)n * 8);
    g_ref->ops->sample_cands(g_ref, tt_t(&x), n, rows, inv_t, k, ids_r, vals_r, sums_r);
    struct dt d = dev_of(&x);
    memset(ids_c, 0x5a, nk * 4);
    g_cuda->ops->sample_cands(g_cuda, &d.t, n, rows, inv_t, k, ids_c, vals_c, sums_c);
    EXPECT(g_cuda->ops->sync(g_cuda) == STATUS_OK);
    int bad = 0;
    double worst = 0.0;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < k; j++) {
            size_t o = (size_t)i * k + j;
            if (ids_r[o] == ids_c[o] && memcmp(&vals_r[o], &vals_c[o], 4) == 0) continue;
            if (bad++ < 5)
                fprintf(stderr, "  V=%d k=%d row %d (kind %d) cand %d: cuda id %d val %g, ref id %d val %g\n", V, k,
                        rows[i], rows[i] % KINDS, j, ids_c[o], vals_c[o], ids_r[o], vals_r[o]);
        }
        double rel = sums_r[i] == 0.0 ? fabs(sums_c[i]) : fabs(sums_c[i] - sums_r[i]) / sums_r[i];
        worst = rel > worst ? rel : worst;
    }
    EXPECTF(bad == 0, "V=%d k=%d: %d candidates differ", V, k, bad);
    EXPECTF(worst <= 1e-9, "V=%d k=%d: sums differ by %.3g relative", V, k, worst);
    dev_free(&d);
    tt_free(&x);
    free(rows); free(inv_t); free(ids_r); free(ids_c); free(vals_r); free(vals_c); free(sums_r); free(sums_c);
}

TEST(cands_match_ref)
{
    static const int sizes[] = { 1, 7, 64, 65, 1000, 1025, 4097, 32003, 151936, 248320 };
    static const int ks[] = { 1, 65, BACKEND_CANDS_MAX };
    struct rng r;
    rng_seed(&r, 17);
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
        for (size_t k = 0; k < sizeof ks / sizeof ks[0]; k++) {
            int V = sizes[s], n_rows = V > 100000 ? 9 : 16;
            compare_case(V, n_rows, n_rows - 2, ks[k], &r);
        }
}

/* sums of rows [0, x] are 1 + p(x), exact in f64: the device's probabilities bit for bit. */
TEST(probabilities_bit_identical)
{
    enum { N = 8192 };
    struct tt x = tt_new(DTYPE_F32, 2, N);
    float *l = x.p;
    struct rng r;
    rng_seed(&r, 3);
    int32_t *rows = xmalloc(sizeof(int32_t) * N);
    float *inv_t = xmalloc(sizeof(float) * N);
    for (int i = 0; i < N; i++) {
        l[2 * i] = 0.0f;
        l[2 * i + 1] = i < N / 2 ? -90.0f * rng_uniform(&r) : -(float)i * 0.011f;   // to past underflow
        rows[i] = i;
        inv_t[i] = 1.0f / (0.2f + 1.3f * rng_uniform(&r));
    }
    int32_t ids_r[2 * N], ids_c[2 * N];
    float vals_r[2 * N], vals_c[2 * N];
    double *sums_r = xmalloc(8 * N), *sums_c = xmalloc(8 * N);
    g_ref->ops->sample_cands(g_ref, tt_t(&x), N, rows, inv_t, 2, ids_r, vals_r, sums_r);
    struct dt d = dev_of(&x);
    g_cuda->ops->sample_cands(g_cuda, &d.t, N, rows, inv_t, 2, ids_c, vals_c, sums_c);
    int bad = 0;
    for (int i = 0; i < N; i++)
        if (memcmp(&sums_r[i], &sums_c[i], 8) != 0 && bad++ < 5)
            fprintf(stderr, "  x=%.9g inv_t=%.9g: cuda 1+p = %.17g, ref %.17g\n", l[2 * i + 1], inv_t[i], sums_c[i], sums_r[i]);
    EXPECTF(bad == 0, "%d of %d probabilities differ from the host's bits", bad, N);
    dev_free(&d);
    tt_free(&x);
    free(rows); free(inv_t); free(sums_r); free(sums_c);
}

/* The engine's call at 64 streams: 64 rows of 151,936 logits, k = 65 (a timing, not a check). */
TEST(timing_64_rows)
{
    enum { V = 151936, R = 64, K = 65, REPS = 50 };
    struct tt x = tt_new(DTYPE_F32, V, R);
    struct rng r;
    rng_seed(&r, 5);
    for (int i = 0; i < R; i++) fill_row(i % 3, (float *)x.p + (size_t)i * V, V, &r);
    struct dt d = dev_of(&x);
    int32_t rows[R], ids[R * K];
    float inv_t[R], vals[R * K];
    double sums[R];
    for (int i = 0; i < R; i++) rows[i] = i, inv_t[i] = 1.0f;
    g_cuda->ops->sample_cands(g_cuda, &d.t, R, rows, inv_t, K, ids, vals, sums);   // warm-up (staging)
    double t0 = clock_now_s();
    for (int i = 0; i < REPS; i++) g_cuda->ops->sample_cands(g_cuda, &d.t, R, rows, inv_t, K, ids, vals, sums);
    double us = (clock_now_s() - t0) / REPS * 1e6;
    printf("sample_cands f32 [%d,%d] k=%d cuda %.1fus %.2fGB/s (one read of the rows; the op reads each ~7 times, "
           "from L2)\n", R, V, K, us, (double)R * V * 4 / (us * 1e3));
    dev_free(&d);
    tt_free(&x);
}

int main(void)
{
    cuda_tests_open(true);
    RUN(cands_match_ref);
    RUN(probabilities_bit_identical);
    RUN(timing_64_rows);
    cuda_tests_close();
    return test_summary();
}
