/* sampler: logit processing and seeded draws (see sampler.h for the order and semantics).
 *
 * Design note. A vocabulary is 32K-260K entries and a step samples up to max_running rows, so the
 * hot path avoids a full sort: top-k is a quickselect (O(V)), top-p first sorts only the best 64
 * candidates and widens (x8) only when their mass does not reach top_p, min-p is a linear filter
 * (the best candidate always survives, so its probability is the max). Candidates are ordered by
 * (probability desc, id asc), a total order, so quickselect and the draw are deterministic.
 * Probabilities are exp(x - max) in f32; sums and the draw use f64.
 */
#include "engine/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"

struct sampler_scratch {
    int      n_vocab;
    float   *prob;       // [n_vocab] unnormalized probabilities exp(x - max)
    int32_t *idx;        // [n_vocab] candidate ids
};

struct sampler {
    struct sampling         cfg;
    struct logit_bias      *bias;       // [cfg.n_bias] owned copy
    int                     n_vocab;
    struct rng              rng;
    uint8_t                *seen;       // [n_vocab] prompt or generated (repetition penalty); NULL if unused
    int32_t                *count;      // [n_vocab] generated occurrences; NULL if unused
    struct sampler_scratch *sc;
    bool                    own_sc;
};

struct sampling sampling_greedy(void)
{
    return (struct sampling){ .temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f,
                              .repetition_penalty = 1.0f };
}

struct sampler_scratch *sampler_scratch_new(int n_vocab)
{
    CHECK(n_vocab > 0, "bad vocab size %d", n_vocab);
    struct sampler_scratch *sc = xcalloc(1, sizeof *sc);
    sc->n_vocab = n_vocab;
    sc->prob = xmalloc((size_t)n_vocab * sizeof *sc->prob);
    sc->idx = xmalloc((size_t)n_vocab * sizeof *sc->idx);
    return sc;
}

void sampler_scratch_free(struct sampler_scratch *sc)
{
    if (!sc) return;
    free(sc->prob);
    free(sc->idx);
    free(sc);
}

static bool rep_on(const struct sampling *c)
{
    return c->repetition_penalty > 0.0f && c->repetition_penalty != 1.0f;
}

static bool presfreq_on(const struct sampling *c)
{
    return c->presence_penalty != 0.0f || c->frequency_penalty != 0.0f;
}

struct sampler *sampler_new_shared(const struct sampling *cfg, int n_vocab, struct sampler_scratch *sc)
{
    CHECK(n_vocab > 0, "bad vocab size %d", n_vocab);
    CHECK(sc == NULL || sc->n_vocab >= n_vocab, "scratch for %d < vocab %d", sc ? sc->n_vocab : 0, n_vocab);
    struct sampler *s = xcalloc(1, sizeof *s);
    s->cfg = *cfg;
    s->n_vocab = n_vocab;
    if (cfg->n_bias > 0 && cfg->bias) {
        s->bias = xmalloc((size_t)cfg->n_bias * sizeof *s->bias);
        memcpy(s->bias, cfg->bias, (size_t)cfg->n_bias * sizeof *s->bias);
    } else {
        s->cfg.n_bias = 0;
    }
    s->cfg.bias = s->bias;
    if (rep_on(cfg)) s->seen = xcalloc((size_t)n_vocab, 1);
    if (presfreq_on(cfg)) s->count = xcalloc((size_t)n_vocab, sizeof *s->count);
    if (sc) {
        s->sc = sc;
    } else {
        s->sc = sampler_scratch_new(n_vocab);
        s->own_sc = true;
    }
    rng_seed(&s->rng, cfg->seed);
    return s;
}

struct sampler *sampler_new(const struct sampling *cfg, int n_vocab)
{
    return sampler_new_shared(cfg, n_vocab, NULL);
}

void sampler_free(struct sampler *s)
{
    if (!s) return;
    if (s->own_sc) sampler_scratch_free(s->sc);
    free(s->bias);
    free(s->seen);
    free(s->count);
    free(s);
}

void sampler_seed(struct sampler *s, uint64_t seed) { rng_seed(&s->rng, seed); }

void sampler_accept_prompt(struct sampler *s, const int32_t *ids, int n)
{
    if (!s->seen) return;
    for (int i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < s->n_vocab) s->seen[ids[i]] = 1;
}

void sampler_accept(struct sampler *s, int32_t token)
{
    if (token < 0 || token >= s->n_vocab) return;
    if (s->seen) s->seen[token] = 1;
    if (s->count) s->count[token]++;
}

bool sampler_is_plain_greedy(const struct sampler *s)
{
    return s->cfg.temperature <= 0.0f && s->cfg.n_bias == 0 && !s->seen && !s->count;
}

/* ==== Logit processing ==== */

static void apply_bias_penalties(struct sampler *s, float *logits)
{
    for (int i = 0; i < s->cfg.n_bias; i++) {
        int32_t id = s->bias[i].id;
        if (id >= 0 && id < s->n_vocab) logits[id] += s->bias[i].bias;
    }
    if (s->seen) {
        float rp = s->cfg.repetition_penalty;
        for (int i = 0; i < s->n_vocab; i++) {
            if (!s->seen[i]) continue;
            logits[i] = logits[i] > 0.0f ? logits[i] / rp : logits[i] * rp;
        }
    }
    if (s->count) {
        float pp = s->cfg.presence_penalty, fp = s->cfg.frequency_penalty;
        for (int i = 0; i < s->n_vocab; i++) {
            int32_t c = s->count[i];
            if (c > 0) logits[i] -= pp + fp * (float)c;
        }
    }
}

static int32_t argmax(const float *x, int n)
{
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;   // strict: lower index wins ties
    return best;
}

/* ==== Candidate ordering: (prob desc, id asc) ==== */

static inline bool better(const float *p, int32_t a, int32_t b)
{
    return p[a] > p[b] || (p[a] == p[b] && a < b);
}

static inline void swap_i32(int32_t *a, int32_t *b) { int32_t t = *a; *a = *b; *b = t; }

/* Partitions v[lo..hi] (inclusive) around a median-of-three pivot; returns the pivot's final
 * index: everything before it is better, everything after worse. */
static int partition(const float *p, int32_t *v, int lo, int hi)
{
    int mid = lo + (hi - lo) / 2;
    if (better(p, v[mid], v[lo])) swap_i32(&v[mid], &v[lo]);
    if (better(p, v[hi], v[lo])) swap_i32(&v[hi], &v[lo]);
    if (better(p, v[hi], v[mid])) swap_i32(&v[hi], &v[mid]);
    swap_i32(&v[mid], &v[hi]);   // pivot (the median) at hi
    int32_t pivot = v[hi];
    int store = lo;
    for (int i = lo; i < hi; i++)
        if (better(p, v[i], pivot)) swap_i32(&v[i], &v[store++]);
    swap_i32(&v[store], &v[hi]);
    return store;
}

/* Moves the k best of v[0..n) into v[0..k) (in no particular order). */
static void select_best(const float *p, int32_t *v, int n, int k)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int q = partition(p, v, lo, hi);
        if (q == k || q == k - 1) return;
        if (q < k) lo = q + 1;
        else hi = q - 1;
    }
}

static void insertion_sort(const float *p, int32_t *v, int lo, int hi)
{
    for (int i = lo + 1; i <= hi; i++) {
        int32_t x = v[i];
        int j = i - 1;
        while (j >= lo && better(p, x, v[j])) { v[j + 1] = v[j]; j--; }
        v[j + 1] = x;
    }
}

/* Sorts v[lo..hi] best first; recursion only on the smaller side (depth O(log n)). */
static void sort_best(const float *p, int32_t *v, int lo, int hi)
{
    while (hi - lo > 16) {
        int q = partition(p, v, lo, hi);
        if (q - lo < hi - q) { sort_best(p, v, lo, q - 1); lo = q + 1; }
        else { sort_best(p, v, q + 1, hi); hi = q - 1; }
    }
    insertion_sort(p, v, lo, hi);
}

/* Sorts the m best of v[0..n) into v[0..m). */
static void sort_prefix(const float *p, int32_t *v, int n, int m)
{
    if (m < n) select_best(p, v, n, m);
    sort_best(p, v, 0, m - 1);
}

/* ==== Draw ==== */

/* Applies temperature, top-k, top-p and min-p and draws. logits are post-penalty. */
static int32_t draw(struct sampler *s, const float *logits)
{
    const struct sampling *c = &s->cfg;
    float *p = s->sc->prob;
    int32_t *v = s->sc->idx;
    int V = s->n_vocab;
    float inv_t = 1.0f / c->temperature;

    float mx = -INFINITY;
    for (int i = 0; i < V; i++) {
        float x = logits[i] * inv_t;
        if (x > mx) mx = x;
    }
    if (!(mx > -INFINITY)) return argmax(logits, V);   // everything masked: fall back
    int n = 0;
    for (int i = 0; i < V; i++) {
        float e = expf(logits[i] * inv_t - mx);
        p[i] = e;
        if (e > 0.0f) v[n++] = i;
    }

    if (c->top_k > 0 && c->top_k < n) {
        select_best(p, v, n, c->top_k);
        n = c->top_k;
    }
    if (c->top_p > 0.0f && c->top_p < 1.0f) {
        double total = 0.0;
        for (int i = 0; i < n; i++) total += p[v[i]];
        double target = (double)c->top_p * total;
        int m = n < 64 ? n : 64;
        for (;;) {
            sort_prefix(p, v, n, m);
            double cum = 0.0;
            int keep = -1;
            for (int i = 0; i < m; i++) {
                // HF: keep a token while the mass before it is below top_p
                if (cum >= target) { keep = i; break; }
                cum += p[v[i]];
            }
            if (keep < 0 && (m == n || cum >= target)) keep = m;
            if (keep >= 0) { n = keep < 1 ? 1 : keep; break; }
            m = m * 8 < n ? m * 8 : n;
        }
    }
    if (c->min_p > 0.0f) {
        // the best candidate has p = exp(0) = 1 unless top-k/p removed it, which they never do
        float thr = c->min_p * 1.0f;
        int w = 0;
        for (int i = 0; i < n; i++)
            if (p[v[i]] >= thr) v[w++] = v[i];
        n = w;
        CHECK(n > 0, "min-p removed every candidate");
    }

    double total = 0.0;
    for (int i = 0; i < n; i++) total += p[v[i]];
    double u = (double)rng_uniform(&s->rng) * total;
    double cum = 0.0;
    for (int i = 0; i < n; i++) {
        cum += p[v[i]];
        if (u < cum) return v[i];
    }
    return v[n - 1];
}

/* ==== Public ==== */

int32_t sampler_sample_top(struct sampler *s, float *logits, float *logprob_out, int n_top,
                           struct token_logprob *top, int *n_top_out)
{
    apply_bias_penalties(s, logits);
    int32_t tok = s->cfg.temperature > 0.0f && s->cfg.top_k != 1 ? draw(s, logits)
                                                                   : argmax(logits, s->n_vocab);
    if (n_top > SAMPLER_MAX_TOP) n_top = SAMPLER_MAX_TOP;
    if (n_top_out) *n_top_out = 0;
    if (!logprob_out && (n_top <= 0 || !top)) return tok;

    // log_softmax of the processed logits (before temperature and filtering)
    float mx = -INFINITY;
    for (int i = 0; i < s->n_vocab; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0.0;
    for (int i = 0; i < s->n_vocab; i++) sum += exp((double)logits[i] - (double)mx);
    double lse = (double)mx + log(sum);
    if (logprob_out) *logprob_out = (float)((double)logits[tok] - lse);
    if (n_top > 0 && top) {
        int k = 0;   // top[0..k) sorted by (logit desc, id asc)
        for (int i = 0; i < s->n_vocab; i++) {
            float x = logits[i];
            if (k == n_top && !(x > top[k - 1].logprob)) continue;
            int j = k < n_top ? k++ : k - 1;
            while (j > 0 && x > top[j - 1].logprob) { top[j] = top[j - 1]; j--; }
            top[j] = (struct token_logprob){ .id = i, .logprob = x };
        }
        for (int i = 0; i < k; i++) top[i].logprob = (float)((double)top[i].logprob - lse);
        if (n_top_out) *n_top_out = k;
    }
    return tok;
}

int32_t sampler_sample(struct sampler *s, float *logits, float *logprob_out)
{
    return sampler_sample_top(s, logits, logprob_out, 0, NULL, NULL);
}
