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

/* A large vocabulary exercises the widening top-p path (nucleus of thousands of tokens) after top-k
 * and temperature. The expected set is computed by a full f64 sort; no excluded token may appear,
 * and the mass of the 20 best tokens must match. */
TEST(top_k_top_p_large_vocab)
{
    enum { V = 5000 };
    static float l[V];
    struct rng r;
    rng_seed(&r, 99);
    for (int i = 0; i < V; i++) l[i] = rng_normal(&r);
    float t = 0.8f, top_p = 0.9f;
    int top_k = 3000;
    static int order[V], keep[V];
    for (int i = 0; i < V; i++) order[i] = i;
    g_sort_logits = l;
    qsort(order, V, sizeof order[0], cmp_desc);
    double mx = l[order[0]] / t, tot = 0.0;
    for (int i = 0; i < top_k; i++) tot += exp(l[order[i]] / t - mx);
    double before = 0.0;
    int n_keep = 0;
    for (int i = 0; i < top_k; i++) {
        if (before / tot >= top_p) break;
        keep[order[i]] = 1;
        n_keep++;
        before += exp(l[order[i]] / t - mx);
    }
    EXPECTF(n_keep > 64 && n_keep < top_k, "nucleus %d", n_keep);
    double want[V], freq[V];
    filtered_softmax(l, V, t, keep, want);
    struct sampling c = base_cfg(t, 1234);
    c.top_k = top_k;
    c.top_p = top_p;
    N_DRAWS = 20000;
    frequencies(&c, l, V, freq);
    int bad = 0;
    for (int i = 0; i < V; i++)
        if (!keep[i] && freq[i] > 0) bad++;
    EXPECTF(bad == 0, "%d excluded tokens drawn", bad);
    double fw = 0, ww = 0;
    for (int i = 0; i < 20; i++) { fw += freq[order[i]]; ww += want[order[i]]; }
    EXPECTF(fabs(fw - ww) < 6 * sqrt(ww * (1 - ww) / N_DRAWS) + 1e-4, "top-20 mass %.5f want %.5f", fw, ww);
    N_DRAWS = 200000;
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
    int32_t tok = sampler_sample_top(s, row, &lp, 3, top, &n_top);
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
    tok = sampler_sample_top(s, row, &lp, 0, NULL, &n_top);
    EXPECT(fabs(lp - (l[tok] - lse)) < 1e-5 && n_top == 0);
    sampler_free(s);
}

TEST(shared_scratch)
{
    struct sampler_scratch *sc = sampler_scratch_new(64);
    struct sampling c = base_cfg(1.0f, 42);
    c.top_p = 0.95f;
    c.top_k = 40;
    struct sampler *s1 = sampler_new_shared(&c, 64, sc), *s2 = sampler_new_shared(&c, 64, sc);
    int32_t want[50];
    draw_seq(42, want, 50);
    int same = 1;
    for (int i = 0; i < 50; i++) {
        float base[64], r1[64], r2[64];
        for (int j = 0; j < 64; j++) base[j] = (float)((j * 37) % 11) * 0.3f;
        memcpy(r1, base, sizeof r1);
        memcpy(r2, base, sizeof r2);
        int32_t a = sampler_sample(s1, r1, NULL), b = sampler_sample(s2, r2, NULL);
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
    RUN(repetition_penalty_hf);
    RUN(presence_frequency_count_generated_only);
    RUN(logit_bias);
    RUN(same_seed_same_tokens);
    RUN(logprobs_chosen_and_top);
    RUN(shared_scratch);
    return test_summary();
}
