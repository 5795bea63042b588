/* sampler: logit processing and seeded draws (see sampler.h for the order and semantics).
 *
 * Design note. A vocabulary is 32K-260K entries and a step samples up to max_running rows (a
 * GPU step of 64 rows takes ~9 ms), so a row must cost well under a tenth of a millisecond and
 * nothing sorts the vocabulary. Probabilities are exp(x - max) in f32 by an inline exp2 the
 * compiler vectorizes, summed in f64 in fixed lanes and per SAMPLE_BLOCK. With no filter, the draw
 * walks the block sums and then one block. Top-k sorts only the ids at or above the k-th largest
 * block max (a floor under the k best); top-p only the ids at or above a probability floor whose
 * ids hold the target mass (2^-6, 2^-12, 2^-18 of the best). Where a floor would leave more than
 * SAMPLE_COLLECT_MAX ids (flat distributions), a histogram of the probabilities by exponent and
 * leading mantissa bits (count and mass per key) finds the key that holds the k-th best or where
 * the mass reaches top_p: only that key's ids are sorted, those above it are kept in id order.
 * Top-p after top-k sorts the k survivors. Min-p is a linear filter (the
 * best candidate, p = 1, always survives). Sorted candidates are ordered by (probability desc, id
 * asc), a total order, so every result is deterministic: same seed, logits and history, same token
 * on every machine and thread.
 */
#include "engine/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"
#include "base/row_max.h"
#include "base/sample_prob.h"
#include "base/simd_clones.h"

enum {
    SAMPLE_BLOCK = 1024,                    // the draw over every id walks block sums, then one block
    SAMPLE_COLLECT_MAX = 4096,              // the most candidates a fast path sorts (else: histogram)
    PROB_KEY_SHIFT = 18,                    // a probability's key: its f32 bits >> this (prob_key)
    PROB_KEYS = (0x3F800000 >> PROB_KEY_SHIFT) + 1,   // keys of [0, 1] (1.0f is 0x3F800000)
};

struct sampler_scratch {
    int      n_vocab;
    float   *prob;                   // [n_vocab] unnormalized probabilities exp(x - max)
    int32_t *idx;                    // [n_vocab] candidate ids
    double  *block_sum;              // [blocks of SAMPLE_BLOCK] sums of prob
    float   *block_max;              // [blocks] max of prob
    float   *block_tmp;              // [blocks] scratch (top-k)
    int32_t  key_count[PROB_KEYS];   // histogram of prob by key (top-k, top-p)
    double   key_mass[PROB_KEYS];
};

struct sampler {
    struct sampling         cfg;
    struct logit_bias      *bias;       // [cfg.n_bias] owned copy
    int                     n_vocab;
    struct rng              rng;
    uint8_t                *seen;       // [n_vocab] prompt or generated (repetition penalty); NULL if unused
    int32_t                *count;      // [n_vocab] generated occurrences; NULL if unused
    struct sampler_scratch *sc;         // its own (sampler_new), or NULL (sampler_new_bare)
};

struct sampling sampling_greedy(void)
{
    return (struct sampling){ .temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f,
                              .repetition_penalty = 1.0f };
}

struct sampling sampling_api_default(void)
{
    struct sampling s = sampling_greedy();
    s.temperature = 1.0f;
    return s;
}

struct sampler_scratch *sampler_scratch_new(int n_vocab)
{
    CHECK(n_vocab > 0, "bad vocab size %d", n_vocab);
    struct sampler_scratch *sc = xcalloc(1, sizeof *sc);
    sc->n_vocab = n_vocab;
    sc->prob = xmalloc((size_t)n_vocab * sizeof *sc->prob);
    sc->idx = xmalloc((size_t)n_vocab * sizeof *sc->idx);
    size_t nb = (size_t)(n_vocab / SAMPLE_BLOCK + 1);
    sc->block_sum = xmalloc(nb * sizeof *sc->block_sum);
    sc->block_max = xmalloc(nb * sizeof *sc->block_max);
    sc->block_tmp = xmalloc(nb * sizeof *sc->block_tmp);
    return sc;
}

void sampler_scratch_free(struct sampler_scratch *sc)
{
    if (!sc) return;
    free(sc->prob);
    free(sc->idx);
    free(sc->block_sum);
    free(sc->block_max);
    free(sc->block_tmp);
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

struct sampler *sampler_new_bare(const struct sampling *cfg, int n_vocab)
{
    CHECK(n_vocab > 0, "bad vocab size %d", n_vocab);
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
    rng_seed(&s->rng, cfg->seed);
    return s;
}

struct sampler *sampler_new(const struct sampling *cfg, int n_vocab)
{
    struct sampler *s = sampler_new_bare(cfg, n_vocab);
    s->sc = sampler_scratch_new(n_vocab);
    return s;
}

void sampler_free(struct sampler *s)
{
    if (!s) return;
    sampler_scratch_free(s->sc);
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

/* ==== Probabilities ==== */

enum { LANES = 16 };   // the fixed lanes of the loops below (the compiler maps them to any vector width)

/* The row loops wear VECTOR_CLONES (base/simd_clones.h): 3-4x over SSE2 on the exp pass, the same
 * bits in every clone. */

/* The first index of the max (lower index wins ties); 0 when every entry is -inf or NaN. */
static int32_t argmax(const float *x, int n)
{
    int64_t i = row_argmax(x, n);
    return i < 0 ? 0 : (int32_t)i;
}

static inline int32_t bits_of(float x)
{
    int32_t b;
    memcpy(&b, &x, sizeof b);
    return b;
}

/* p[i] = exp(x[i] * inv_t - mx) for i in [0, n), a multiple of LANES or the row's end; returns their
 * sum in f64 (LANES partial sums added in order: the same on every machine), and their max in
 * *p_max. Probabilities are >= 0, so their bits order as they do (integer compares vectorize). */
VECTOR_CLONES static double exp_run(const float *restrict x, int n, float inv_t, float mx, float *restrict p, float *p_max)
{
    double part[LANES] = { 0 };
    int32_t top[LANES] = { 0 };
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) {
            float e = sample_prob(x[i + j], inv_t, mx);
            p[i + j] = e;
            part[j] += (double)e;
            int32_t b = bits_of(e);
            top[j] = b > top[j] ? b : top[j];
        }
    double sum = 0.0;
    int32_t best = 0;
    for (int j = 0; j < LANES; j++) {
        sum += part[j];
        best = top[j] > best ? top[j] : best;
    }
    for (; i < n; i++) {
        p[i] = sample_prob(x[i], inv_t, mx);
        sum += (double)p[i];
        best = bits_of(p[i]) > best ? bits_of(p[i]) : best;
    }
    memcpy(p_max, &best, sizeof *p_max);
    return sum;
}

/* Fills sc->prob with exp(logits * inv_t - max), and sc->block_sum and block_max with each
 * SAMPLE_BLOCK's sum and max; returns the total. */
static double probabilities(struct sampler_scratch *sc, const float *logits, int V, float inv_t, float mx)
{
    double total = 0.0;
    for (int b = 0; b * SAMPLE_BLOCK < V; b++) {
        int lo = b * SAMPLE_BLOCK, n = V - lo < SAMPLE_BLOCK ? V - lo : SAMPLE_BLOCK;
        sc->block_sum[b] = exp_run(logits + lo, n, inv_t, mx, sc->prob + lo, &sc->block_max[b]);
        total += sc->block_sum[b];
    }
    return total;
}

/* Histogram key of a probability in [0, 1]: its exponent and top mantissa bits, so keys order as
 * the probabilities do (equal keys: within 1/32 of an octave of each other). */
static inline int prob_key(float p)
{
    uint32_t b;
    memcpy(&b, &p, sizeof b);
    return (int)(b >> PROB_KEY_SHIFT);
}

/* Counts and masses of sc->prob[0..V) per key. */
static void histogram(struct sampler_scratch *sc, int V)
{
    memset(sc->key_count, 0, sizeof sc->key_count);
    memset(sc->key_mass, 0, sizeof sc->key_mass);
    for (int i = 0; i < V; i++) {
        if (!(sc->prob[i] > 0.0f)) continue;   // never a candidate (masked, or underflowed)
        int k = prob_key(sc->prob[i]);
        sc->key_count[k]++;
        sc->key_mass[k] += (double)sc->prob[i];
    }
}

/* v = the ids (p > 0) whose key is above `boundary`, in id order, then those whose key is
 * `boundary`, best first; returns how many lie above, and the total in *n_out. */
static int gather(struct sampler_scratch *sc, int V, int boundary, int *n_out)
{
    const float *p = sc->prob;
    int32_t *v = sc->idx;
    int above = 0, at = 0;
    for (int i = 0; i < V; i++) above += p[i] > 0.0f && prob_key(p[i]) > boundary;
    for (int i = 0, a = 0; i < V; i++) {
        if (!(p[i] > 0.0f)) continue;
        int k = prob_key(p[i]);
        if (k > boundary) v[a++] = i;
        else if (k == boundary) v[above + at++] = i;
    }
    if (at > 0) sort_best(p, v, above, above + at - 1);
    *n_out = above + at;
    return above;
}

/* sum of p[i] >= tau over [0, V), in f64 (fixed lanes); tau > 0. */
VECTOR_CLONES static double mass_at_least(const float *restrict p, int V, float tau)
{
    const int32_t tb = bits_of(tau);
    double part[LANES] = { 0 };
    int i = 0;
    for (; i + LANES <= V; i += LANES)
        for (int j = 0; j < LANES; j++) {
            int32_t b = bits_of(p[i + j]), kept = b & -(int32_t)(b >= tb);
            float f;
            memcpy(&f, &kept, sizeof f);
            part[j] += (double)f;
        }
    double sum = 0.0;
    for (int j = 0; j < LANES; j++) sum += part[j];
    for (; i < V; i++)
        if (bits_of(p[i]) >= tb) sum += (double)p[i];
    return sum;
}

/* v = the ids with p >= tau (> 0), in id order; returns how many, or cap + 1 when more than cap. */
VECTOR_CLONES static int collect_at_least(const float *restrict p, int V, float tau, int32_t *restrict v, int cap)
{
    const int32_t tb = bits_of(tau);
    int n = 0;
    for (int i = 0; i < V; i += LANES) {
        int end = i + LANES < V ? i + LANES : V;
        int32_t any = end - i < LANES;
        if (!any)
            for (int j = 0; j < LANES; j++) any |= bits_of(p[i + j]) >= tb;
        if (!any) continue;   // the common case: a whole lane group below tau
        for (int j = i; j < end; j++) {
            if (bits_of(p[j]) < tb) continue;
            if (n == cap) return cap + 1;
            v[n++] = j;
        }
    }
    return n;
}

/* The k best candidates (fewer when fewer have p > 0) into v[0..k). Fast path: the k-th largest
 * block max is a floor under the k best (k blocks hold an id that likely), so only the ids at or
 * above it are sorted. Else a histogram finds the key that holds the k-th best, and only that
 * key's ids are sorted. */
static int select_top_k(struct sampler_scratch *sc, int V, int k)
{
    int nb = (V + SAMPLE_BLOCK - 1) / SAMPLE_BLOCK;
    if (k <= nb) {
        float *m = sc->block_tmp;
        memcpy(m, sc->block_max, (size_t)nb * sizeof *m);
        for (int i = 0; i < k; i++)   // partial selection sort: k <= nb, a few hundred
            for (int j = i + 1; j < nb; j++)
                if (m[j] > m[i]) { float t = m[i]; m[i] = m[j]; m[j] = t; }
        float floor = m[k - 1];
        if (floor > 0.0f) {
            int n = collect_at_least(sc->prob, V, floor, sc->idx, SAMPLE_COLLECT_MAX);
            if (n <= SAMPLE_COLLECT_MAX) {
                sort_best(sc->prob, sc->idx, 0, n - 1);
                return n < k ? n : k;
            }
        }
    }
    histogram(sc, V);
    int b = PROB_KEYS - 1, cnt = 0;
    for (; b > 0 && cnt + sc->key_count[b] < k; b--) cnt += sc->key_count[b];
    int n;
    gather(sc, V, b, &n);
    n = n < k ? n : k;
    sort_best(sc->prob, sc->idx, 0, n - 1);   // best first, as the fast path leaves them
    return n;
}

/* HF top-p over v[0..n) sorted best first: keeps a candidate while the mass before it is below
 * top_p of the candidates' total; at least one. */
static int keep_nucleus_sorted(const float *p, const int32_t *v, int n, double target)
{
    double cum = 0.0;
    for (int i = 0; i < n; i++) {
        if (cum >= target) return i < 1 ? 1 : i;
        cum += p[v[i]];
    }
    return n;
}

/* Top-p over the whole vocabulary. Fast path: when the ids with p >= tau hold the target mass, the
 * nucleus lies among them (the sorted walk reaches the target before it passes below tau), so only
 * they are sorted; tau = 2^-6, 2^-12, 2^-18 of the best. Else the histogram finds the key where the
 * mass reaches the target: the ids above it are all kept (the mass before each is below the
 * target), that key's ids are sorted and kept by the HF rule. */
static int select_nucleus(struct sampler_scratch *sc, int V, double target)
{
    for (float tau = 0x1p-6f; tau >= 0x1p-18f; tau *= 0x1p-6f) {
        if (mass_at_least(sc->prob, V, tau) < target) continue;
        int n = collect_at_least(sc->prob, V, tau, sc->idx, SAMPLE_COLLECT_MAX);
        if (n > SAMPLE_COLLECT_MAX) break;
        sort_best(sc->prob, sc->idx, 0, n - 1);
        return keep_nucleus_sorted(sc->prob, sc->idx, n, target);
    }
    histogram(sc, V);
    int b = PROB_KEYS - 1;
    double before = 0.0;
    for (; b > 0 && before + sc->key_mass[b] < target; b--) before += sc->key_mass[b];
    int n, above = gather(sc, V, b, &n), kept = n;
    double cum = before;
    for (int i = above; i < n; i++) {
        if (cum >= target) {
            kept = i < 1 ? 1 : i;
            break;
        }
        cum += sc->prob[sc->idx[i]];
    }
    // best first, as the fast path leaves them (the candidate path's order: sampler_sample_cands);
    // a nucleus too large for that path keeps the gather's order rather than a long sort
    if (kept <= SAMPLE_COLLECT_MAX) sort_best(sc->prob, sc->idx, 0, kept - 1);
    return kept;
}

/* A draw over candidates v[0..n); a rounding fall-off returns the last candidate with p > 0. */
static int32_t draw_candidates(struct sampler *s, const float *p, const int32_t *v, int n)
{
    double total = 0.0;
    for (int i = 0; i < n; i++) total += p[v[i]];
    double u = (double)rng_uniform(&s->rng) * total, cum = 0.0;
    int32_t last = v[0];
    for (int i = 0; i < n; i++) {
        if (p[v[i]] <= 0.0f) continue;
        last = v[i];
        cum += p[v[i]];
        if (u < cum) return v[i];
    }
    return last;
}

/* A draw over the whole vocabulary, in a fixed order: the head (the SAMPLER_HEAD best ids, best
 * first), then every other id in id order; the head's prefix sums find a head token without the
 * rest of the row (sampler_sample_cands), the block sums less the head's share find the block of a
 * tail token, and one block is walked. */
static int32_t draw_all(struct sampler *s, struct sampler_scratch *sc, const float *logits, double total)
{
    float *p = sc->prob;
    const int32_t *head = sc->idx;
    int n_head = select_top_k(sc, s->n_vocab, SAMPLER_HEAD);
    double u = (double)rng_uniform(&s->rng) * total, cum = 0.0;
    for (int i = 0; i < n_head; i++) {
        cum += p[head[i]];
        if (u < cum) return head[i];
    }
    for (int i = 0; i < n_head; i++) {   // the tail walk skips the head
        sc->block_sum[head[i] / SAMPLE_BLOCK] -= (double)p[head[i]];
        p[head[i]] = 0.0f;
    }
    for (int b = 0; b * SAMPLE_BLOCK < s->n_vocab; b++) {
        if (!(u < cum + sc->block_sum[b])) {
            cum += sc->block_sum[b];
            continue;
        }
        int lo = b * SAMPLE_BLOCK, hi = lo + SAMPLE_BLOCK < s->n_vocab ? lo + SAMPLE_BLOCK : s->n_vocab;
        for (int i = lo; i < hi; i++) {
            cum += p[i];
            if (u < cum && p[i] > 0.0f) return i;
        }
    }
    return argmax(logits, s->n_vocab);   // rounding fall-off: the best token (p = 1)
}

/* Applies temperature, top-k, top-p and min-p and draws. logits are post-penalty. */
static int32_t draw(struct sampler *s, struct sampler_scratch *sc, const float *logits)
{
    const struct sampling *c = &s->cfg;
    float *p = sc->prob;
    int32_t *v = sc->idx;
    int V = s->n_vocab;
    float inv_t = 1.0f / c->temperature;

    // inv_t > 0 and rounding is monotonic, so the max of the scaled logits is the scaled max
    float mx = row_max(logits, V) * inv_t;
    if (!(mx > -INFINITY)) return argmax(logits, V);   // everything masked: fall back
    double total = probabilities(sc, logits, V, inv_t, mx);
    bool top_k = c->top_k > 0 && c->top_k < V, top_p = c->top_p > 0.0f && c->top_p < 1.0f;
    if (!top_k && !top_p && c->min_p <= 0.0f) return draw_all(s, sc, logits, total);

    int n = -1;   // candidates in v[0..n); -1: every id
    if (top_k) n = select_top_k(sc, V, c->top_k);
    if (top_p && n >= 0) {
        sort_best(p, v, 0, n - 1);
        double kept = 0.0;
        for (int i = 0; i < n; i++) kept += p[v[i]];
        n = keep_nucleus_sorted(p, v, n, (double)c->top_p * kept);
    } else if (top_p) {
        n = select_nucleus(sc, V, (double)c->top_p * total);
    }
    if (c->min_p > 0.0f) {
        // the best candidate has p = exp(0) = 1 and top-k/p never remove it
        float thr = c->min_p;
        int w = 0;
        if (n < 0)
            for (int i = 0; i < V; i++) {
                if (p[i] >= thr) v[w++] = i;
            }
        else
            for (int i = 0; i < n; i++)
                if (p[v[i]] >= thr) v[w++] = v[i];
        n = w;
        CHECK(n > 0, "min-p removed every candidate");
    }
    return draw_candidates(s, p, v, n);
}

/* ==== Candidates (sampler_sample_cands) ====
 * Why its answers are the full row's, bit for bit. The head's probabilities come from the
 * candidates' logits through the row pass's own sample_prob, so they are the same floats; sorted
 * by (p desc, id asc) they are the row's best ids as far as each beats every id outside the head.
 * Those ids' logits are at most the last candidate's (vals[SAMPLER_HEAD]); the exponent is
 * monotonic in the logit (rounded products and differences are) and exp2_nonpositive is within
 * 2^-20 of 2^y, so their p is at most p_next (1 + 2^-18), plus 2^-140 for subnormal results, and
 * exactly 0 where p_next is 0 (an exponent below -126 gives 0). Sums, targets and walks over these
 * floats then repeat the full path's operations in its order. Only the row's total is not the full
 * path's bits (the same f64 sum in another order): a decision that uses it (a plain draw, top-p
 * alone) is taken only when every total within CANDS_SUM_TOL of it decides the same.
 */

#define CANDS_SUM_TOL 0x1p-18   // relative; >> the order error of an f64 sum of 2^18 terms (2^-35)

struct cands_head {
    float   p[SAMPLER_HEAD];    // the candidates' p > 0, best first (ties: lower id)
    int32_t id[SAMPLER_HEAD];
    int     n;
    int     sure;               // p[0..sure) are the row's best ids in the row's order
    bool    complete;           // no id outside the head has p > 0
    double  outside;            // no id outside the head has p above this
};

static void cands_head(const struct sampler_cands *c, float inv_t, struct cands_head *h)
{
    float mx = c->vals[0] * inv_t;
    h->n = 0;
    for (int j = 0; j < SAMPLER_HEAD; j++) {
        float p = sample_prob(c->vals[j], inv_t, mx);
        if (!(p > 0.0f)) continue;
        int i = h->n++;
        for (; i > 0 && (p > h->p[i - 1] || (p == h->p[i - 1] && c->ids[j] < h->id[i - 1])); i--) {
            h->p[i] = h->p[i - 1];
            h->id[i] = h->id[i - 1];
        }
        h->p[i] = p;
        h->id[i] = c->ids[j];
    }
    float p_next = sample_prob(c->vals[SAMPLER_HEAD], inv_t, mx);
    h->complete = !(p_next > 0.0f);
    h->outside = h->complete ? 0.0 : (double)p_next * (1.0 + 0x1p-18) + 0x1p-140;
    h->sure = h->n;
    while (h->sure > 0 && !((double)h->p[h->sure - 1] > h->outside)) h->sure--;
}

/* HF top-p over the sorted p[0..n) (keep_nucleus_sorted): how many are kept, or -1 when the
 * target is not reached within them and ids past them could still count (!whole). */
static int cands_nucleus(const float *p, int n, double target, bool whole)
{
    double cum = 0.0;
    for (int i = 0; i < n; i++) {
        if (cum >= target) return i < 1 ? 1 : i;
        cum += p[i];
    }
    return cum >= target || whole ? n : -1;
}

/* A plain draw (no filter): decided when it lands in the head for every total near c->sum. */
static bool cands_draw_plain(struct sampler *s, const struct cands_head *h, double sum, int32_t *tok)
{
    if (h->sure < h->n || (h->n < SAMPLER_HEAD && !h->complete)) return false;
    struct rng before = s->rng;
    double u = (double)rng_uniform(&s->rng);
    double lo = u * sum * (1.0 - CANDS_SUM_TOL), hi = u * sum * (1.0 + CANDS_SUM_TOL), cum = 0.0;
    for (int i = 0; i < h->n; i++) {
        cum += h->p[i];
        if (!(lo < cum)) continue;
        if (!(hi < cum)) break;   // the full row's target may fall either side of this boundary
        *tok = h->id[i];
        return true;
    }
    s->rng = before;   // the full row makes this draw again
    return false;
}

bool sampler_takes_cands(const struct sampler *s)
{
    return s->cfg.temperature > 0.0f && s->cfg.n_bias == 0 && !s->seen && !s->count;
}

float sampler_inv_temperature(const struct sampler *s) { return 1.0f / s->cfg.temperature; }

bool sampler_sample_cands(struct sampler *s, const struct sampler_cands *c, int32_t *tok)
{
    const struct sampling *cfg = &s->cfg;
    CHECK(sampler_takes_cands(s), "sampler_sample_cands: the request needs its full row");
    if (!(c->vals[0] > -INFINITY)) return false;   // nothing allowed: the full row's fallback
    if (cfg->top_k == 1) {                          // argmax, no draw
        *tok = c->ids[0];
        return true;
    }
    int V = s->n_vocab;
    struct cands_head h;
    cands_head(c, sampler_inv_temperature(s), &h);
    bool top_k = cfg->top_k > 0 && cfg->top_k < V, top_p = cfg->top_p > 0.0f && cfg->top_p < 1.0f;
    if (!top_k && !top_p && cfg->min_p <= 0.0f) return cands_draw_plain(s, &h, c->sum, tok);

    int n = -1;   // the kept head h.p[0..n), as the full row keeps them; -1: every id
    if (top_k) {
        if (cfg->top_k <= h.sure) n = cfg->top_k;
        else if (h.complete) n = h.n;
        else return false;
        if (top_p) {
            double kept = 0.0;
            for (int i = 0; i < n; i++) kept += h.p[i];
            n = cands_nucleus(h.p, n, (double)cfg->top_p * kept, true);
        }
    } else if (top_p) {
        double target = (double)cfg->top_p * c->sum;
        int lo = cands_nucleus(h.p, h.n, target * (1.0 - CANDS_SUM_TOL), h.complete);
        int hi = cands_nucleus(h.p, h.n, target * (1.0 + CANDS_SUM_TOL), h.complete);
        if (lo < 0 || lo != hi || lo > h.sure) return false;
        n = lo;
    }
    float p[SAMPLER_HEAD];
    int32_t id[SAMPLER_HEAD], at[SAMPLER_HEAD];
    int m = 0;
    if (cfg->min_p > 0.0f && n < 0) {
        // min-p alone: the full row keeps p >= min_p in id order; no id outside may reach it
        if (!((double)cfg->min_p > h.outside)) return false;
        for (int i = 0; i < h.n; i++) {
            if (!(h.p[i] >= cfg->min_p)) continue;
            int j = m++;
            for (; j > 0 && id[j - 1] > h.id[i]; j--) {
                id[j] = id[j - 1];
                p[j] = p[j - 1];
            }
            id[j] = h.id[i];
            p[j] = h.p[i];
        }
    } else {
        for (int i = 0; i < n; i++) {
            if (cfg->min_p > 0.0f && !(h.p[i] >= cfg->min_p)) continue;
            id[m] = h.id[i];
            p[m++] = h.p[i];
        }
    }
    if (m == 0) return false;
    for (int i = 0; i < m; i++) at[i] = i;
    *tok = id[draw_candidates(s, p, at, m)];
    return true;
}

/* ==== Public ==== */

int32_t sampler_sample_top(struct sampler *s, struct sampler_scratch *sc, float *logits, float *logprob_out,
                           int n_top, struct token_logprob *top, int *n_top_out)
{
    if (!sc) sc = s->sc;
    CHECK(sc && sc->n_vocab >= s->n_vocab, "sampler: no scratch for a vocabulary of %d", s->n_vocab);
    apply_bias_penalties(s, logits);
    int32_t tok = s->cfg.temperature > 0.0f && s->cfg.top_k != 1 ? draw(s, sc, logits)
                                                                   : argmax(logits, s->n_vocab);
    if (n_top > SAMPLER_MAX_TOP) n_top = SAMPLER_MAX_TOP;
    if (n_top_out) *n_top_out = 0;
    if (!logprob_out && (n_top <= 0 || !top)) return tok;

    // log_softmax of the processed logits (before temperature and filtering)
    float mx = row_max(logits, s->n_vocab);
    double lse = (double)mx + log(probabilities(sc, logits, s->n_vocab, 1.0f, mx));
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
    return sampler_sample_top(s, NULL, logits, logprob_out, 0, NULL, NULL);
}
