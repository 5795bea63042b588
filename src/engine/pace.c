/* pace: prefill sizing from measured step times (see pace.h for the policy). */
#include "engine/pace.h"

#include <math.h>

#include "base/log.h"
#include "model/model.h"

#define PACE_EWMA 0.25               // weight of the newest step in the running averages

/* Attention FLOPs per (query, key) pair over matmul FLOPs per token, from the model's shape. The
 * lm_head is left out: a step computes it for its sampled rows only. */
static double pair_units_of(const struct hparams *hp)
{
    double d = hp->d_model, q = (double)hp->n_heads * hp->head_dim, kv = (double)hp->n_kv_heads * hp->head_dim;
    double tok = 0, pair = 0;
    for (int l = 0; l < hp->n_layers; l++) {
        tok += 2.0 * d * (q + 2.0 * kv) + 2.0 * q * d;
        if (hp->n_experts > 0 && hp->layer_moe[l])
            tok += 6.0 * d * hp->d_ff_expert * hp->n_experts_used + 2.0 * d * hp->n_experts;
        else
            tok += 6.0 * d * hp->d_ff;
        pair += 4.0 * q;             // q.k and p.v
    }
    return tok > 0 ? pair / tok : 0;
}

void pace_init(struct pace *p, const struct hparams *hp, double target_ms)
{
    *p = (struct pace){ .target_ms = target_ms, .pair_units = pair_units_of(hp) };
}

double pace_units(const struct pace *p, int start, int n)
{
    return n + p->pair_units * (double)n * (double)(start + n);
}

double pace_budget(struct pace *p, int n_dec, int n_first)
{
    if (p->target_ms < 0 || p->dec_ms <= 0 || p->ms_per_unit <= 0 || n_dec <= 0) return -1;
    double target = p->target_ms > 0 ? p->target_ms : 2.0 * p->dec_ms;
    if (target <= p->dec_ms && !p->warned) {
        LOG_WARN("scheduler: the inter-token target of %.1f ms cannot be met (decode steps alone take %.1f ms); "
                 "prompts advance %d tokens per step while streams decode", target, p->dec_ms, PACE_MIN_CHUNK);
        p->warned = true;
    }
    double share = n_first > n_dec ? (double)n_first / n_dec : 1.0;
    double budget = (target * share - p->dec_ms) / p->ms_per_unit;
    return budget > 0 ? budget : 0;
}

int pace_cut(const struct pace *p, double *budget, int start, int want)
{
    int n = want;
    if (pace_units(p, start, n) > *budget) {
        // n + a n (start + n) <= B  <=>  a n^2 + (1 + a start) n - B <= 0
        double a = p->pair_units, b = 1.0 + a * start, B = *budget > 0 ? *budget : 0;
        n = a > 0 ? (int)((-b + sqrt(b * b + 4.0 * a * B)) / (2.0 * a)) : (int)B;
        if (n > want) n = want;
        while (n > 0 && pace_units(p, start, n) > *budget) n--;
        int floor_n = want < PACE_MIN_CHUNK ? want : PACE_MIN_CHUNK;
        if (n < floor_n) n = floor_n;
    }
    *budget -= pace_units(p, start, n);
    return n;
}

static void ewma(double *avg, double x)
{
    *avg = *avg > 0 ? (1.0 - PACE_EWMA) * *avg + PACE_EWMA * x : x;
}

void pace_observe(struct pace *p, double step_ms, int n_dec, double prefill_units)
{
    if (step_ms <= 0) return;
    if (prefill_units <= 0) {
        if (n_dec > 0) ewma(&p->dec_ms, step_ms);
        return;
    }
    double prefill_ms = n_dec > 0 ? step_ms - p->dec_ms : step_ms;
    if (n_dec > 0 && p->dec_ms <= 0) return;   // cannot separate the two yet
    if (prefill_ms > 0) ewma(&p->ms_per_unit, prefill_ms / prefill_units);
}
