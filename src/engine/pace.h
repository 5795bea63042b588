/* pace: how much prefill one engine step may carry while other sequences decode, sized from
 * measured step times so running streams keep an inter-token latency target.
 *
 * Design note. A step that mixes decodes with a prefill chunk delays every running stream by the
 * chunk's cost, and that cost grows with the chunk's depth in its prompt (attention over all
 * earlier positions). So a chunk is measured in token-equivalents: its tokens plus its attention
 * pairs (n * (start + n)) times the model's ratio of attention FLOPs per pair to matmul FLOPs per
 * token. Two estimates are kept, each an exponential average of what the steps measured:
 *   dec_ms       the time of a step of decodes alone;
 *   ms_per_unit  the extra time per token-equivalent of prefill (from prefill-only steps, and from
 *                mixed steps once dec_ms is known).
 * The prefill a step may carry is then (T - dec_ms) / ms_per_unit, where the step-time target T is
 *   T = target * max(1, n_first / n_dec)
 * with target = --max-itl-ms (or, by default on a GPU, 2x the measured decode-only step) and
 * n_first the requests still waiting for their first token. The latency budget is shared by who
 * waits: one long prompt ingested beside 16 streams keeps their inter-token gap within the target,
 * while a burst of 64 new prompts beside 16 streams lets steps grow so the burst's first tokens do
 * not wait behind hundreds of small steps. Chunks never shrink below 16 tokens (progress is
 * guaranteed even when the target cannot be met; that is logged once).
 * Until both estimates exist, the caller falls back to its static rule (engine_cfg.max_prefill_pairs).
 *
 * Threading: the engine thread only. No allocation.
 *
 *     struct pace p;  pace_init(&p, &m->hp, cfg.max_itl_ms);
 *     double budget = pace_budget(&p, n_dec, n_first);         // < 0: not paced this step
 *     int n = pace_cut(&p, &budget, start, want);              // chunk that fits the budget
 *     pace_observe(&p, step_ms, n_dec, prefill_units);         // after the step
 */
#ifndef CAIRN_ENGINE_PACE_H
#define CAIRN_ENGINE_PACE_H

#include <stdbool.h>

struct hparams;

enum { PACE_MIN_CHUNK = 16 };        // tokens: the smallest prefill chunk while decodes run

struct pace {
    double target_ms;                // > 0: fixed inter-token target; 0: auto (2x dec_ms); < 0: off
    double pair_units;               // token-equivalents of one attention pair (model shape)
    double dec_ms;                   // decode-only step time (0 until measured)
    double ms_per_unit;              // prefill time per token-equivalent (0 until measured)
    bool   warned;                   // the target-cannot-be-met line was logged
};

/* target_ms: engine_cfg.max_itl_ms after defaults (> 0, 0 = auto, < 0 = off). */
void   pace_init(struct pace *p, const struct hparams *hp, double target_ms);
/* Token-equivalents of a chunk of n tokens starting at position start. */
double pace_units(const struct pace *p, int start, int n);
/* Prefill token-equivalents the next step may carry beside n_dec > 0 decodes while n_first
 * requests wait for their first token; negative when pacing is off or not yet measured. */
double pace_budget(struct pace *p, int n_dec, int n_first);
/* The largest chunk n <= want from start that fits *budget (at least min(PACE_MIN_CHUNK, want));
 * charges *budget with it. */
int    pace_cut(const struct pace *p, double *budget, int start, int want);
/* Feeds a finished step: its wall time, its decodes and its prefill token-equivalents. */
void   pace_observe(struct pace *p, double step_ms, int n_dec, double prefill_units);

#endif
