/* test_sampler_cands: the candidate path (the backend's sample_cands op, then sampler_sample_cands)
 * against the full row: the same token for the same seed, draw for draw, on random and
 * adversarial rows (flat, peaked, ties, -inf masks, NaN and -0, vocabularies of odd sizes and
 * shorter than the candidate list), every filter; the ref op against a full sort; the frequencies
 * of a row whose draws land in the head and the tail alike against an f64 softmax (chi-square);
 * and the bound on exp2_nonpositive's error that the candidate path's reasoning rests on. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "base/log.h"
#include "base/rng.h"
#include "base/sample_prob.h"
#include "engine/sampler.h"
#include "harness.h"
#include "ops/ops_util.h"

static struct backend *g_ref;

/* ==== Rows ==== */

enum row_kind { ROW_NORMAL, ROW_PEAKED, ROW_FLAT, ROW_TIES, ROW_MASKED, ROW_ODD, ROW_ULP, ROW_KINDS };
static const char *const row_names[ROW_KINDS] = { "normal", "peaked", "flat", "ties", "masked", "nan/-0", "ulps" };

static void row_fill(enum row_kind kind, float *l, int V, struct rng *r)
{
    for (int i = 0; i < V; i++) {
        switch (kind) {
        case ROW_NORMAL: l[i] = 2.0f * rng_normal(r); break;
        case ROW_PEAKED: l[i] = rng_normal(r); break;
        case ROW_FLAT: l[i] = 0.05f * rng_normal(r); break;
        case ROW_TIES: l[i] = (float)(int)(3.0f * rng_uniform(r)); break;   // 0, 1 or 2: ties across the head
        case ROW_MASKED: l[i] = -INFINITY; break;
        case ROW_ODD: l[i] = (rng_next(r) % 7 == 0) ? NAN : (rng_next(r) % 5 == 0) ? -0.0f : rng_normal(r); break;
        default: l[i] = 0.0f; break;
        }
    }
    if (kind == ROW_PEAKED)
        for (int i = 0; i < 20 && i < V; i++) l[(int)(rng_next(r) % (uint64_t)V)] = 8.0f + 0.5f * rng_normal(r);
    if (kind == ROW_MASKED)   // a constrained row: a few allowed ids, one of them tied
        for (int i = 0; i < 30 && i < V; i++) l[(i * 7919 + 13) % V] = (float)(i % 6) * 0.7f;
    if (kind == ROW_ODD) l[V / 2] = 0.0f;   // +0 and -0 tie on the max
    if (kind == ROW_ULP) {
        // above the rest: one logit, then pairs (x, the next float) at ids (2j, 2j + 1) that share a
        // probability at temperature 1.5 (x / 1.5 rounds alike), so the full row ranks the lower id
        // first where the logits rank the higher: the 64th candidate (the upper half of the 32nd
        // pair) is not the full row's 64th id
        const float inv_t = 1.0f / 1.5f;
        for (int i = 0; i < V; i++) l[i] = rng_normal(r) - 1.0f;
        l[V - 1] = 3.9f;
        float x = 3.51f;
        for (int j = 0; 2 * j + 2 < V && j < 100; x -= 1e-4f) {
            float x2 = nextafterf(x, INFINITY);
            if (x * inv_t != x2 * inv_t) continue;
            l[2 * j] = x;
            l[2 * j + 1] = x2;
            j++;
        }
    }
}

/* The ref op's candidates of one row at temperature t. */
static void row_cands(const float *l, int V, float inv_t, int32_t *ids, float *vals, double *sum)
{
    struct tt x = tt_new(DTYPE_F32, V, 1);
    memcpy(x.p, l, (size_t)V * sizeof *l);
    int32_t row = 0;
    g_ref->ops->sample_cands(g_ref, tt_t(&x), 1, &row, &inv_t, SAMPLER_CANDS, ids, vals, sum);
    tt_free(&x);
}

/* ==== The op against a full sort ==== */

static float clean(float x) { return x != x ? -INFINITY : x == 0.0f ? 0.0f : x; }

static const float *g_sort_row;
static int by_value_then_id(const void *a, const void *b)
{
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    float x = clean(g_sort_row[i]), y = clean(g_sort_row[j]);
    if (x != y) return x > y ? -1 : 1;
    return i < j ? -1 : i > j;
}

TEST(ref_op_is_a_full_sort)
{
    static const int sizes[] = { 1, 7, 64, 65, 66, 1000, 4097 };
    static const int ks[] = { 1, 65, BACKEND_CANDS_MAX };
    struct rng r;
    rng_seed(&r, 11);
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
        for (int kind = 0; kind < ROW_KINDS; kind++)
            for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
                int V = sizes[si], k = ks[ki];
                struct tt x = tt_new(DTYPE_F32, V, 2);
                float *l = x.p;
                row_fill((enum row_kind)kind, l, 2 * V, &r);   // two rows; the op reads the second
                int32_t *order = malloc((size_t)V * sizeof *order), ids[BACKEND_CANDS_MAX], row = 1;
                float vals[BACKEND_CANDS_MAX], inv_t = 1.0f / 0.7f;
                double sum;
                g_ref->ops->sample_cands(g_ref, tt_t(&x), 1, &row, &inv_t, k, ids, vals, &sum);
                g_sort_row = l + V;
                for (int i = 0; i < V; i++) order[i] = i;
                qsort(order, (size_t)V, sizeof *order, by_value_then_id);
                int bad = 0;
                for (int j = 0; j < k; j++) {
                    int32_t want = j < V ? order[j] : -1;
                    float want_v = j < V ? clean(l[V + want]) : -INFINITY;
                    bad += ids[j] != want || memcmp(&vals[j], &want_v, sizeof want_v) != 0;
                }
                float mx = clean(l[V + order[0]]);
                double want_sum = 0.0;
                for (int i = 0; mx > -INFINITY && i < V; i++) want_sum += (double)sample_prob(l[V + i], inv_t, mx * inv_t);
                EXPECTF(bad == 0 && sum == want_sum, "V=%d %s k=%d: %d wrong candidates, sum %.17g want %.17g", V,
                        row_names[kind], k, bad, sum, want_sum);
                free(order);
                tt_free(&x);
            }
}

/* ==== Candidate path == full row, draw for draw ==== */

struct case_cfg { float t; int top_k; float top_p, min_p; };

static const struct case_cfg cases[] = {
    { 1.0f, 0, 1.0f, 0.0f },   { 0.7f, 0, 1.0f, 0.0f },   { 1.5f, 0, 1.0f, 0.0f },    { 1.0f, 1, 1.0f, 0.0f },
    { 1.0f, 5, 1.0f, 0.0f },   { 0.6f, 40, 1.0f, 0.0f },  { 1.0f, 64, 1.0f, 0.0f },   { 1.0f, 65, 1.0f, 0.0f },
    { 1.0f, 200, 1.0f, 0.0f }, { 1.0f, 0, 0.9f, 0.0f },   { 0.8f, 0, 0.5f, 0.0f },    { 1.0f, 0, 0.99f, 0.0f },
    { 1.0f, 0, 1.0f, 0.05f },  { 1.0f, 0, 1.0f, 0.3f },   { 0.7f, 40, 0.9f, 0.0f },   { 1.0f, 0, 0.9f, 0.1f },
    { 1.0f, 20, 0.95f, 0.05f }, { 1.5f, 64, 1.0f, 0.0f },  { 1.5f, 0, 1.0f, 0.1f },
};

/* Draws n tokens from row l both ways with the same seed; the number of draws the candidates
 * decided into *decided; returns the number of draws whose tokens differ. */
static int compare_paths(const float *l, int V, const struct case_cfg *cc, uint64_t seed, int n, int *decided)
{
    struct sampling cfg = sampling_greedy();
    cfg.temperature = cc->t;
    cfg.top_k = cc->top_k;
    cfg.top_p = cc->top_p;
    cfg.min_p = cc->min_p;
    cfg.seed = seed;
    cfg.has_seed = true;
    struct sampler *full = sampler_new(&cfg, V), *cand = sampler_new(&cfg, V);
    int32_t ids[SAMPLER_CANDS];
    float vals[SAMPLER_CANDS], *row = malloc((size_t)V * sizeof *row);
    double sum;
    row_cands(l, V, sampler_inv_temperature(cand), ids, vals, &sum);
    struct sampler_cands c = { .ids = ids, .vals = vals, .sum = sum };
    int diff = 0;
    *decided = 0;
    for (int d = 0; d < n; d++) {
        memcpy(row, l, (size_t)V * sizeof *row);
        int32_t a = sampler_sample(full, row, NULL), b;
        if (sampler_sample_cands(cand, &c, &b)) {
            ++*decided;
        } else {
            memcpy(row, l, (size_t)V * sizeof *row);
            b = sampler_sample(cand, row, NULL);
        }
        diff += a != b;
    }
    free(row);
    sampler_free(full);
    sampler_free(cand);
    return diff;
}

static void paths_agree_on(int V, int n_draws)
{
    struct rng r;
    rng_seed(&r, (uint64_t)V);
    float *l = malloc((size_t)V * sizeof *l);
    for (int kind = 0; kind < ROW_KINDS; kind++) {
        row_fill((enum row_kind)kind, l, V, &r);
        for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
            const struct case_cfg *cc = &cases[ci];
            int decided, diff = compare_paths(l, V, cc, 100 + ci, n_draws, &decided);
            EXPECTF(diff == 0, "V=%d %s t=%g top_k=%d top_p=%g min_p=%g: %d of %d draws differ", V, row_names[kind],
                    cc->t, cc->top_k, cc->top_p, cc->min_p, diff, n_draws);
            // top-k within the head decides every draw where nothing ties across the head's edge
            bool must = cc->top_k >= 1 && cc->top_k <= SAMPLER_HEAD && cc->top_k < V &&
                        (kind == ROW_NORMAL || kind == ROW_PEAKED || kind == ROW_MASKED);
            EXPECTF(!must || decided == n_draws, "V=%d %s top_k=%d: the candidates decided %d of %d", V,
                    row_names[kind], cc->top_k, decided, n_draws);
            if (getenv("CAIRN_TEST_VERBOSE"))
                fprintf(stderr, "  V=%d %-7s t=%.1f k=%3d p=%.2f min_p=%.2f decided %d/%d\n", V, row_names[kind], cc->t,
                        cc->top_k, cc->top_p, cc->min_p, decided, n_draws);
        }
    }
    free(l);
}

TEST(paths_agree_small_vocabs)
{
    paths_agree_on(40, 300);     // shorter than the candidate list
    paths_agree_on(65, 300);
    paths_agree_on(1000, 300);
    paths_agree_on(4097, 300);
}

TEST(paths_agree_real_vocab) { paths_agree_on(151936, 40); }

/* Plain draws on a peaked row land in the head almost always; every row kind above already
 * checked the tokens, this checks the path is taken. */
TEST(plain_draws_on_peaked_rows_use_candidates)
{
    enum { V = 32003 };
    static float l[V];
    struct rng r;
    rng_seed(&r, 3);
    for (int i = 0; i < V; i++) l[i] = rng_normal(&r);
    for (int i = 0; i < 10; i++) l[i * 3001] = 14.0f - (float)i;
    struct case_cfg cc = { 1.0f, 0, 1.0f, 0.0f };
    int decided, diff = compare_paths(l, V, &cc, 9, 2000, &decided);
    EXPECT(diff == 0);
    EXPECTF(decided > 1900, "decided %d of 2000", decided);
}

/* ==== Frequencies ==== */

/* A row whose head holds about half the mass: 200,000 draws through the candidates (falling back
 * to the row) bin as the f64 softmax says, per head id and for the tail as one bin (chi-square
 * with 64 degrees of freedom: mean 64, sd 11.3; the bound is 6 sd above). A path that dropped or
 * mis-weighted the tail, or drew the head from its own total, is off by thousands. */
TEST(frequencies_head_and_tail_chi_square)
{
    enum { V = 4000, N = 200000 };
    static float l[V], row[V];
    struct rng r;
    rng_seed(&r, 21);
    for (int i = 0; i < V; i++) l[i] = 0.5f * rng_normal(&r) - 3.0f;
    for (int i = 0; i < SAMPLER_HEAD; i++) l[(i * 61 + 7) % V] = 1.0f + 0.02f * (float)i;
    double want[V], mx = -INFINITY, total = 0.0;
    for (int i = 0; i < V; i++) mx = l[i] > mx ? l[i] : mx;
    for (int i = 0; i < V; i++) total += want[i] = exp((double)l[i] - mx);
    struct sampling cfg = sampling_api_default();
    cfg.seed = 5;
    struct sampler *s = sampler_new(&cfg, V);
    int32_t ids[SAMPLER_CANDS];
    float vals[SAMPLER_CANDS];
    double sum;
    row_cands(l, V, 1.0f, ids, vals, &sum);
    struct sampler_cands c = { .ids = ids, .vals = vals, .sum = sum };
    static int count[V];
    int decided = 0;
    for (int d = 0; d < N; d++) {
        int32_t t;
        if (sampler_sample_cands(s, &c, &t)) {
            decided++;
        } else {
            memcpy(row, l, sizeof row);
            t = sampler_sample(s, row, NULL);
        }
        count[t]++;
    }
    double head_p = 0.0, chi2 = 0.0;
    int head_n = 0;
    for (int j = 0; j < SAMPLER_HEAD; j++) {
        double e = N * want[ids[j]] / total, o = count[ids[j]];
        chi2 += (o - e) * (o - e) / e;
        head_p += want[ids[j]] / total;
        head_n += count[ids[j]];
    }
    double e_tail = N * (1.0 - head_p), o_tail = N - head_n;
    chi2 += (o_tail - e_tail) * (o_tail - e_tail) / e_tail;
    EXPECTF(head_p > 0.3 && head_p < 0.7, "head mass %.3f", head_p);
    EXPECTF(chi2 < 64 + 6 * 11.3, "chi-square %.1f", chi2);
    // every head draw is decided by the candidates and no tail draw is
    EXPECTF(decided <= head_n && decided > head_n - N / 1000, "decided %d, head draws %d", decided, head_n);
    sampler_free(s);
}

/* ==== The exp2 bound ==== */

/* exp2_nonpositive within 2^-20 of 2^y wherever the result is a normal float: the candidate path
 * bounds the ids outside its head by this (sampler.c: cands_head). */
TEST(exp2_relative_error_bound)
{
    struct rng r;
    rng_seed(&r, 1);
    double worst = 0.0;
    for (int i = 0; i < 4000000; i++) {
        float y = i < 2000000 ? -125.0f * rng_uniform(&r) : -(float)(i - 2000000) * 6.25e-5f;   // random, then a grid
        double want = exp2((double)y), got = exp2_nonpositive(y), rel = fabs(got - want) / want;
        worst = rel > worst ? rel : worst;
    }
    EXPECTF(worst < 0x1p-20, "worst relative error %.3g", worst);
    EXPECT(exp2_nonpositive(0.0f) == 1.0f && exp2_nonpositive(-0.0f) == 1.0f);
    EXPECT(exp2_nonpositive(-127.0f) == 0.0f && exp2_nonpositive(-INFINITY) == 0.0f && exp2_nonpositive(NAN) == 0.0f);
}

int main(void)
{
    CHECK(backend_new("ref", NULL, &g_ref) == STATUS_OK, "no ref backend");
    RUN(ref_op_is_a_full_sort);
    RUN(paths_agree_small_vocabs);
    RUN(paths_agree_real_vocab);
    RUN(plain_draws_on_peaked_rows_use_candidates);
    RUN(frequencies_head_and_tail_chi_square);
    RUN(exp2_relative_error_bound);
    backend_free(g_ref);
    return test_summary();
}
