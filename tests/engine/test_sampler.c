/* test_sampler: sampler semantics against distributions computed independently here (f64 softmax,
 * full sorts), exact excluded sets for top-k / top-p / min-p, penalties, bias, seeds, logprobs. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/sampler.h"
#include "harness.h"

static int N_DRAWS = 200000;

/* Expected probabilities: softmax(logits / t) restricted to keep[] (1 = kept), in f64. */
static void filtered_softmax(const float *logits, int n, double t, const int *keep, double *out)
{
    double mx = -INFINITY, sum = 0.0;
    for (int i = 0; i < n; i++)
        if (keep[i] && logits[i] / t > mx) mx = logits[i] / t;
    for (int i = 0; i < n; i++) {
        out[i] = keep[i] ? exp(logits[i] / t - mx) : 0.0;
        sum += out[i];
    }
    for (int i = 0; i < n; i++) out[i] /= sum;
}

/* Draws N_DRAWS tokens with cfg and returns the frequencies in freq[n]. */
static void frequencies(const struct sampling *cfg, const float *logits, int n, double *freq)
{
    struct sampler *s = sampler_new(cfg, n);
    float *row = malloc((size_t)n * sizeof *row);
    int *cnt = calloc((size_t)n, sizeof *cnt);
    for (int d = 0; d < N_DRAWS; d++) {
        memcpy(row, logits, (size_t)n * sizeof *row);
        int32_t t = sampler_sample(s, row, NULL);
        if (t >= 0 && t < n) cnt[t]++;
    }
    for (int i = 0; i < n; i++) freq[i] = (double)cnt[i] / N_DRAWS;
    free(cnt);
    free(row);
    sampler_free(s);
}

/* Every frequency within 6 sigma (plus a little) of its expected probability; zero where excluded. */
static int freq_matches(const double *freq, const double *want, int n)
{
    int ok = 1;
    for (int i = 0; i < n; i++) {
        double sd = sqrt(want[i] * (1 - want[i]) / N_DRAWS);
        double tol = 6 * sd + 1e-4;
        if (want[i] == 0.0 && freq[i] != 0.0) ok = 0;
        if (fabs(freq[i] - want[i]) > tol) {
            fprintf(stderr, "  token %d: freq %.5f want %.5f\n", i, freq[i], want[i]);
            ok = 0;
        }
    }
    return ok;
}

/* Whether N_DRAWS draws with cfg follow softmax(logits / t) restricted to keep[] (freq_matches). */
static int draws_follow(const struct sampling *cfg, const float *logits, int n, double t, const int *keep)
{
    double *want = malloc((size_t)n * sizeof *want), *freq = malloc((size_t)n * sizeof *freq);
    filtered_softmax(logits, n, t, keep, want);
    frequencies(cfg, logits, n, freq);
    int ok = freq_matches(freq, want, n);
    free(want);
    free(freq);
    return ok;
}

static struct sampling base_cfg(float t, uint64_t seed)
{
    struct sampling c = sampling_greedy();
    c.temperature = t;
    c.seed = seed;
    c.has_seed = true;
    return c;
}

TEST(greedy_argmax_lower_index_wins_ties)
{
    float l[6] = { 0.5f, 3.0f, -1.0f, 3.0f, 2.9f, 0.0f };
    struct sampling c = sampling_greedy();
    struct sampler *s = sampler_new(&c, 6);
    EXPECT(sampler_is_plain_greedy(s));
    EXPECT(sampler_sample(s, l, NULL) == 1);
    sampler_free(s);
}

TEST(temperature_matches_softmax)
{
    float l[8] = { 1.0f, 2.0f, 0.5f, -1.0f, 1.5f, 0.0f, -3.0f, 2.2f };
    int keep[8] = { 1, 1, 1, 1, 1, 1, 1, 1 };
    for (int ti = 0; ti < 2; ti++) {
        float t = ti ? 0.6f : 1.3f;
        struct sampling c = base_cfg(t, 7);
        EXPECT(draws_follow(&c, l, 8, t, keep));
    }
}

TEST(top_k_exact_set)
{
    float l[10] = { 0.1f, 1.9f, 0.3f, 1.7f, -0.4f, 1.8f, 0.0f, 0.2f, 1.0f, -2.0f };
    int keep[10] = { 0 };
    keep[1] = keep[5] = keep[3] = 1;   // the three largest
    struct sampling c = base_cfg(1.0f, 11);
    c.top_k = 3;
    EXPECT(draws_follow(&c, l, 10, 1.0, keep));
}

TEST(top_p_exact_set)
{
    // probabilities 0.4 0.3 0.15 0.1 0.05 (shuffled); top_p 0.8 keeps the tokens whose preceding
    // mass is below 0.8: 0.4, 0.3, 0.15 (preceding 0, 0.4, 0.7), drops 0.1 (preceding 0.85) and 0.05
    double pr[5] = { 0.15, 0.05, 0.4, 0.1, 0.3 };
    float l[5];
    for (int i = 0; i < 5; i++) l[i] = (float)log(pr[i]);
    int keep[5] = { 1, 0, 1, 0, 1 };
    struct sampling c = base_cfg(1.0f, 3);
    c.top_p = 0.8f;
    EXPECT(draws_follow(&c, l, 5, 1.0, keep));
}

TEST(min_p_exact_set)
{
    // min_p 0.3 at t=1: keep p >= 0.3 * pmax, i.e. logit >= max + log(0.3) = max - 1.204
    float l[6] = { 2.0f, 1.0f, 0.9f, 0.5f, 0.85f, -1.0f };
    int keep[6] = { 1, 1, 1, 1, 1, 0 };
    for (int i = 0; i < 6; i++) keep[i] = l[i] >= 2.0f + (float)log(0.3);
    struct sampling c = base_cfg(1.0f, 5);
    c.min_p = 0.3f;
    EXPECT(keep[0] && keep[1] && keep[2] && !keep[3] && keep[4] && !keep[5]);
    EXPECT(draws_follow(&c, l, 6, 1.0, keep));
}

static const float *g_sort_logits;
static int cmp_desc(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    float lx = g_sort_logits[x], ly = g_sort_logits[y];
    if (lx != ly) return lx > ly ? -1 : 1;
    return x - y;
}

/* keep[] = the tokens HF's top-k then top-p keep at temperature t (0 = off), by a full f64 sort
 * (order: logit desc, id asc); returns how many, and their ids best first in order[]. */
static int expected_keep(const float *l, int V, float t, int top_k, float top_p, int *order, int *keep)
{
    for (int i = 0; i < V; i++) order[i] = i, keep[i] = 0;
    g_sort_logits = l;
    qsort(order, (size_t)V, sizeof order[0], cmp_desc);
    int n = top_k > 0 && top_k < V ? top_k : V;
    double mx = l[order[0]] / t, tot = 0.0;
    for (int i = 0; i < n; i++) tot += exp(l[order[i]] / t - mx);
    double before = 0.0;
    int n_keep = 0;
    for (int i = 0; i < n; i++) {
        if (top_p > 0.0f && top_p < 1.0f && before / tot >= top_p) break;
        keep[order[i]] = 1;
        n_keep++;
        before += exp(l[order[i]] / t - mx);
    }
    return n_keep;
}

/* Draws with top-k/top-p over V tokens: no excluded token may appear, and the mass of the 20 best
 * must match the f64 expectation. */
static int filtered_draws_ok(const float *l, int V, float t, int top_k, float top_p, int n_draws, int *n_keep)
{
    int *order = malloc((size_t)V * sizeof *order), *keep = malloc((size_t)V * sizeof *keep);
    double *want = malloc((size_t)V * sizeof *want), *freq = malloc((size_t)V * sizeof *freq);
    *n_keep = expected_keep(l, V, t, top_k, top_p, order, keep);
    filtered_softmax(l, V, t, keep, want);
    struct sampling c = base_cfg(t, 1234);
    c.top_k = top_k;
    c.top_p = top_p;
    int saved = N_DRAWS;
    N_DRAWS = n_draws;
    frequencies(&c, l, V, freq);
    int bad = 0;
    for (int i = 0; i < V; i++)
        if (!keep[i] && freq[i] > 0) bad++;
    double fw = 0, ww = 0;
    for (int i = 0; i < 20 && i < V; i++) { fw += freq[order[i]]; ww += want[order[i]]; }
    int ok = bad == 0 && fabs(fw - ww) < 6 * sqrt(ww * (1 - ww) / N_DRAWS) + 1e-4;
    if (!ok) fprintf(stderr, "  %d excluded tokens drawn; top-20 mass %.5f want %.5f\n", bad, fw, ww);
    N_DRAWS = saved;
    free(order);
    free(keep);
    free(want);
    free(freq);
    return ok;
}

/* A large vocabulary exercises the histogram top-p path (nucleus of thousands of tokens) after
 * top-k and temperature. */
TEST(top_k_top_p_large_vocab)
{
    enum { V = 5000 };
    static float l[V];
    struct rng r;
    rng_seed(&r, 99);
    for (int i = 0; i < V; i++) l[i] = rng_normal(&r);
    int n_keep;
    EXPECT(filtered_draws_ok(l, V, 0.8f, 3000, 0.9f, 20000, &n_keep));
    EXPECTF(n_keep > 64 && n_keep < 3000, "nucleus %d", n_keep);
}

/* Every selection path over a 40K vocabulary (40 blocks of 1,024): top-k within the block count
 * (the block-max floor) and beyond it (the histogram); top-p with a small nucleus (a probability
 * floor) and one beyond the fast path's 4,096 candidates (the histogram). */
TEST(selection_paths_large_vocab)
{
    enum { V = 40000 };
    static float peaked[V], flat[V];
    struct rng r;
    rng_seed(&r, 5);
    for (int i = 0; i < V; i++) {
        peaked[i] = 2.0f * rng_normal(&r);
        flat[i] = 0.3f * rng_normal(&r);
    }
    for (int i = 0; i < 30; i++) peaked[(i * 7919) % V] = 9.0f + 0.1f * (float)i;   // a nucleus of ~30
    int n_keep;
    EXPECT(filtered_draws_ok(peaked, V, 1.0f, 5, 0.0f, 4000, &n_keep) && n_keep == 5);
    EXPECT(filtered_draws_ok(peaked, V, 1.0f, 100, 0.0f, 4000, &n_keep) && n_keep == 100);
    EXPECT(filtered_draws_ok(peaked, V, 0.7f, 0, 0.8f, 4000, &n_keep));
    EXPECTF(n_keep > 5 && n_keep < 100, "small nucleus %d", n_keep);
    EXPECT(filtered_draws_ok(flat, V, 1.0f, 0, 0.9f, 4000, &n_keep));
    EXPECTF(n_keep > 4096, "large nucleus %d", n_keep);
    EXPECT(filtered_draws_ok(flat, V, 1.0f, 20, 0.95f, 4000, &n_keep) && n_keep <= 20);
}

/* A row masked to three ids (the rest -inf, as constrained decoding leaves it) samples among them
 * by their softmax, through every filter. */
TEST(masked_row)
{
    enum { V = 40000 };
    static float l[V];
    static int keep[V];
    for (int i = 0; i < V; i++) l[i] = -INFINITY, keep[i] = 0;
    l[17] = 1.0f, l[20000] = 0.5f, l[39999] = -0.2f;
    keep[17] = keep[20000] = keep[39999] = 1;
    int saved = N_DRAWS;
    N_DRAWS = 20000;
    for (int f = 0; f < 3; f++) {
        struct sampling c = base_cfg(1.0f, 77);
        if (f == 1) c.top_k = 20;
        if (f == 2) c.top_p = 0.999f;
        EXPECTF(draws_follow(&c, l, V, 1.0, keep), "filter %d", f);
    }
    N_DRAWS = saved;
}

/* The chosen token's log-probability over a 100K vocabulary, against an f64 log-softmax. */
TEST(logprob_large_vocab)
{
    enum { V = 100000 };
    static float l[V], row[V];
    struct rng r;
    rng_seed(&r, 8);
    for (int i = 0; i < V; i++) l[i] = 4.0f * rng_normal(&r);
    double mx = -INFINITY, sum = 0.0;
    for (int i = 0; i < V; i++) mx = l[i] > mx ? l[i] : mx;
    for (int i = 0; i < V; i++) sum += exp((double)l[i] - mx);
    double lse = mx + log(sum), worst = 0.0;
    struct sampling c = base_cfg(1.0f, 9);
    struct sampler *s = sampler_new(&c, V);
    for (int d = 0; d < 50; d++) {
        memcpy(row, l, sizeof row);
        float lp;
        int32_t tok = sampler_sample(s, row, &lp);
        double err = fabs((double)lp - ((double)l[tok] - lse));
        worst = err > worst ? err : worst;
    }
    sampler_free(s);
    EXPECTF(worst < 1e-5, "worst log-probability error %.3g", worst);
}

TEST(repetition_penalty_hf)
{
    float l[4] = { 2.0f, -1.0f, 0.5f, 1.2f };
    struct sampling c = sampling_greedy();
    c.repetition_penalty = 2.0f;
    struct sampler *s = sampler_new(&c, 4);
    EXPECT(!sampler_is_plain_greedy(s));
    int32_t prompt[2] = { 0, 1 };
    sampler_accept_prompt(s, prompt, 2);
    int32_t tok = sampler_sample(s, l, NULL);
    EXPECT(l[0] == 1.0f && l[1] == -2.0f && l[2] == 0.5f && l[3] == 1.2f);
    EXPECT(tok == 3);
    sampler_free(s);
}

TEST(presence_frequency_count_generated_only)
{
    struct sampling c = sampling_greedy();
    c.presence_penalty = 0.5f;
    c.frequency_penalty = 0.25f;
    struct sampler *s = sampler_new(&c, 4);
    int32_t prompt[3] = { 0, 0, 1 };
    sampler_accept_prompt(s, prompt, 3);   // no effect on presence/frequency
    sampler_accept(s, 2);
    sampler_accept(s, 2);
    sampler_accept(s, 3);
    float l[4] = { 1.0f, 1.0f, 1.0f, 1.0f };
    sampler_sample(s, l, NULL);
    EXPECT(l[0] == 1.0f && l[1] == 1.0f);
    EXPECT(fabsf(l[2] - (1.0f - 0.5f - 0.5f)) < 1e-6f);
    EXPECT(fabsf(l[3] - (1.0f - 0.5f - 0.25f)) < 1e-6f);
    sampler_free(s);
}

TEST(logit_bias)
{
    struct logit_bias b[2] = { { 2, 5.0f }, { 0, -100.0f } };
    struct sampling c = sampling_greedy();
    c.bias = b;
    c.n_bias = 2;
    struct sampler *s = sampler_new(&c, 3);
    b[0].bias = 0.0f;   // the sampler holds its own copy
    float l[3] = { 3.0f, 1.0f, 0.0f };
    EXPECT(sampler_sample(s, l, NULL) == 2);
    EXPECT(l[0] == -97.0f && l[2] == 5.0f);
    sampler_free(s);
}

static void draw_seq(uint64_t seed, int32_t *out, int n)
{
    float base[64];
    for (int i = 0; i < 64; i++) base[i] = (float)((i * 37) % 11) * 0.3f;
    struct sampling c = base_cfg(1.0f, seed);
    c.top_p = 0.95f;
    c.top_k = 40;
    struct sampler *s = sampler_new(&c, 64);
    for (int i = 0; i < n; i++) {
        float row[64];
        memcpy(row, base, sizeof row);
        out[i] = sampler_sample(s, row, NULL);
    }
    sampler_free(s);
}

TEST(same_seed_same_tokens)
{
    int32_t a[200], b[200], d[200];
    draw_seq(42, a, 200);
    draw_seq(42, b, 200);
    draw_seq(43, d, 200);
    EXPECT(memcmp(a, b, sizeof a) == 0);
    EXPECT(memcmp(a, d, sizeof a) != 0);
}

TEST(logprobs_chosen_and_top)
{
    float l[7] = { 0.3f, 2.0f, -1.0f, 2.0f, 1.5f, -0.2f, 0.9f };
    double mx = 2.0, sum = 0;
    for (int i = 0; i < 7; i++) sum += exp(l[i] - mx);
    double lse = mx + log(sum);
    struct sampling c = sampling_greedy();
    struct sampler *s = sampler_new(&c, 7);
    float lp;
    struct token_logprob top[SAMPLER_MAX_TOP];
    int n_top;
    float row[7];
    memcpy(row, l, sizeof row);
    int32_t tok = sampler_sample_top(s, NULL, row, &lp, 3, top, &n_top);
    EXPECT(tok == 1);
    EXPECT(fabs(lp - (2.0 - lse)) < 1e-5);
    EXPECT(n_top == 3);
    EXPECT(top[0].id == 1 && top[1].id == 3 && top[2].id == 4);
    EXPECT(fabs(top[2].logprob - (1.5 - lse)) < 1e-5);
    // logprobs are reported for sampled requests from the same (pre-temperature) distribution
    sampler_free(s);
    c = base_cfg(0.5f, 1);
    s = sampler_new(&c, 7);
    memcpy(row, l, sizeof row);
    tok = sampler_sample_top(s, NULL, row, &lp, 0, NULL, &n_top);
    EXPECT(fabs(lp - (l[tok] - lse)) < 1e-5 && n_top == 0);
    sampler_free(s);
}

TEST(shared_scratch)
{
    struct sampler_scratch *sc = sampler_scratch_new(64);
    struct sampling c = base_cfg(1.0f, 42);
    c.top_p = 0.95f;
    c.top_k = 40;
    struct sampler *s1 = sampler_new_bare(&c, 64), *s2 = sampler_new_bare(&c, 64);
    int32_t want[50];
    draw_seq(42, want, 50);
    int same = 1;
    for (int i = 0; i < 50; i++) {
        float base[64], r1[64], r2[64];
        for (int j = 0; j < 64; j++) base[j] = (float)((j * 37) % 11) * 0.3f;
        memcpy(r1, base, sizeof r1);
        memcpy(r2, base, sizeof r2);
        int32_t a = sampler_sample_top(s1, sc, r1, NULL, 0, NULL, NULL), b = sampler_sample_top(s2, sc, r2, NULL, 0, NULL, NULL);
        if (a != want[i] || b != want[i]) same = 0;
    }
    EXPECT(same);
    sampler_free(s1);
    sampler_free(s2);
    sampler_scratch_free(sc);
}

int main(void)
{
    RUN(greedy_argmax_lower_index_wins_ties);
    RUN(temperature_matches_softmax);
    RUN(top_k_exact_set);
    RUN(top_p_exact_set);
    RUN(min_p_exact_set);
    RUN(top_k_top_p_large_vocab);
    RUN(selection_paths_large_vocab);
    RUN(masked_row);
    RUN(logprob_large_vocab);
    RUN(repetition_penalty_hf);
    RUN(presence_frequency_count_generated_only);
    RUN(logit_bias);
    RUN(same_seed_same_tokens);
    RUN(logprobs_chosen_and_top);
    RUN(shared_scratch);
    return test_summary();
}
