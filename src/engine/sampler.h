/* sampler: turns a row of logits into a token, with the usual controls.
 *
 * Order (as in HF generate / vLLM):
 *   1. logit bias (added to the raw logits),
 *   2. repetition penalty (HF: over prompt + generated tokens; a positive logit is divided by the
 *      penalty, a negative one multiplied),
 *   3. presence and frequency penalties (OpenAI: over generated tokens only;
 *      logit -= presence * (count > 0) + frequency * count),
 *   4. temperature, then top-k, top-p and min-p filtering (HF warper order), then a draw from the
 *      seeded RNG over the renormalized survivors.
 * temperature == 0 is greedy: argmax after steps 1-3, lower index wins ties.
 * Log-probabilities (chosen token and the top n alternatives) are log_softmax of the logits after
 * steps 1-3, before temperature and filtering, so greedy and sampled requests report comparable
 * numbers (vLLM's "processed_logits" mode).
 *
 * Tie-breaking and candidate order are deterministic (probability, then lower id), so the same
 * seed, logits and history give the same token on every machine. Draws without a filter walk the
 * SAMPLER_HEAD most likely ids first (best first), then the others in id order.
 *
 * Candidates. Where the logits live on a device, a row's SAMPLER_CANDS largest logits and its sum
 * of probabilities (the backend's sample_cands op) usually decide the token without the row:
 * sampler_sample_cands returns the token the full row would give for the same RNG state, or says
 * that only the full row can decide (then it leaves the RNG as it was, and sampler_sample_top on
 * the row makes the same draw). It decides top-k <= SAMPLER_HEAD, a top-p or min-p set that
 * closes inside the candidates, and plain draws that land among the head; requests with a bias,
 * penalties or log-probabilities always take the full row.
 *
 * Threading: a sampler belongs to one request and is used by one thread at a time. Sampling
 * allocates nothing: its scratch (a few [n_vocab] arrays) is the sampler's own (sampler_new), or
 * one passed to each call (sampler_new_bare + sampler_sample_top), so an engine keeps one scratch
 * per sampling thread, not per request. A sample depends only on the sampler's state and the
 * logits, never on the scratch or the thread.
 *
 *     struct sampler *s = sampler_new(&cfg, n_vocab);
 *     sampler_accept_prompt(s, prompt, n_prompt);
 *     int32_t tok = sampler_sample(s, logits, NULL);  sampler_accept(s, tok);
 */
#ifndef CAIRN_ENGINE_SAMPLER_H
#define CAIRN_ENGINE_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#include "base/rng.h"

#define SAMPLER_MAX_TOP 20          // most top log-probabilities one sample reports
#define SAMPLER_HEAD    64          // ids a draw without a filter walks first (the candidate head)
#define SAMPLER_CANDS   (SAMPLER_HEAD + 1)   // candidates per row: the head and the best id below it

struct logit_bias { int32_t id; float bias; };

struct token_logprob { int32_t id; float logprob; };

struct sampling {
    float    temperature;           // 0 = greedy
    int      top_k;                 // 0 = off
    float    top_p;                 // 1 = off (0 is treated as off too)
    float    min_p;                 // 0 = off
    float    repetition_penalty;    // 1 = off (0 is treated as off too)
    float    presence_penalty;      // 0 = off (OpenAI)
    float    frequency_penalty;     // 0 = off (OpenAI)
    uint64_t seed;
    bool     has_seed;              // false: the engine seeds from the request id
    const struct logit_bias *bias;  // [n_bias], copied by sampler_new; ids outside the vocab ignored
    int      n_bias;
};

/* A sampling configuration that is greedy and applies nothing. */
struct sampling sampling_greedy(void);
/* The APIs' defaults (OpenAI's, Anthropic's): temperature 1, nothing filtered or penalised. */
struct sampling sampling_api_default(void);

struct sampler;
/* Scratch for sampling one row ([n_vocab] floats and ids); one per thread that samples. */
struct sampler_scratch;

struct sampler_scratch *sampler_scratch_new(int n_vocab);
void                    sampler_scratch_free(struct sampler_scratch *sc);

/* n_vocab: logits row length. Allocates its scratch here; sampling allocates nothing.
 * Seeds the RNG with cfg->seed (callers without a seed call sampler_seed). */
struct sampler *sampler_new(const struct sampling *cfg, int n_vocab);
/* Same without scratch: every sampler_sample_top call passes one. */
struct sampler *sampler_new_bare(const struct sampling *cfg, int n_vocab);
void            sampler_free(struct sampler *s);
void            sampler_seed(struct sampler *s, uint64_t seed);
/* Records prompt tokens: they count for the repetition penalty only. */
void            sampler_accept_prompt(struct sampler *s, const int32_t *ids, int n);
/* Records a generated token: it counts for the repetition, presence and frequency penalties. */
void            sampler_accept(struct sampler *s, int32_t token);
/* True when sampling is a plain argmax of the raw logits (temperature 0, no bias, no penalties):
 * the engine may then use the backend's argmax instead of downloading the logits. */
bool            sampler_is_plain_greedy(const struct sampler *s);

/* One row's candidates, as the backend's sample_cands op returns them (backend.h): ids and vals
 * [SAMPLER_CANDS], the row's largest logits, largest first (ties: lower id; past the row's end id
 * -1 and -inf), sum = the row's sum of probabilities at this sampler's temperature (sampler.c:
 * sample_prob over every id) in f64, in any order. */
struct sampler_cands {
    const int32_t *ids;
    const float   *vals;
    double         sum;
};

/* True when the candidate path may decide this sampler's tokens: temperature > 0, no bias, no
 * penalties (the caller adds: no log-probabilities wanted). */
bool            sampler_takes_cands(const struct sampler *s);
/* 1 / temperature as the sampler rounds it (the sample_cands op's inv_t); sampler_takes_cands only. */
float           sampler_inv_temperature(const struct sampler *s);
/* The token for candidates c into *tok (the RNG advanced as sampler_sample would), or false: only
 * the full row decides (the RNG untouched). Only where sampler_takes_cands. */
bool            sampler_sample_cands(struct sampler *s, const struct sampler_cands *c, int32_t *tok);

/* Picks the next token from logits[n_vocab] (modified in place). If logprob_out != NULL, writes
 * the log-probability of the chosen token (see the top of this file for which distribution). */
int32_t         sampler_sample(struct sampler *s, float *logits, float *logprob_out);
/* Same with scratch sc (NULL: the sampler's own; not used by another thread during the call), and
 * also writes the n_top (<= SAMPLER_MAX_TOP) most likely tokens, most likely first (ties: lower
 * id), into top[]; returns how many were written in *n_top_out. */
int32_t         sampler_sample_top(struct sampler *s, struct sampler_scratch *sc, float *logits,
                                   float *logprob_out, int n_top, struct token_logprob *top, int *n_top_out);

#endif
