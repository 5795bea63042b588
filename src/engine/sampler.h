/* sampler: turns a row of logits into a token, with the usual controls.
 *
 * Order (as in vLLM / HF): logit bias, repetition/presence/frequency penalties over the tokens
 * seen so far, temperature, then top-k, top-p and min-p filtering, then a draw from the seeded
 * RNG. temperature == 0 is greedy (argmax, lower index wins ties) after bias and penalties.
 * The same seed, logits and history give the same token on every machine.
 */
#ifndef CAIRN_ENGINE_SAMPLER_H
#define CAIRN_ENGINE_SAMPLER_H

#include <stdbool.h>
#include <stdint.h>

#include "base/rng.h"

struct logit_bias { int32_t id; float bias; };

struct sampling {
    float    temperature;           // 0 = greedy
    int      top_k;                 // 0 = off
    float    top_p;                 // 1 = off
    float    min_p;                 // 0 = off
    float    repetition_penalty;    // 1 = off (HF: divide positive logits, multiply negative)
    float    presence_penalty;      // 0 = off (OpenAI)
    float    frequency_penalty;     // 0 = off (OpenAI)
    uint64_t seed;
    bool     has_seed;              // false: seed from the request id
    const struct logit_bias *bias;  // [n_bias]
    int      n_bias;
};

/* A sampling configuration that is greedy and applies nothing. */
struct sampling sampling_greedy(void);

struct sampler;

/* n_vocab: logits row length. Allocates all scratch here; sampler_sample allocates nothing. */
struct sampler *sampler_new(const struct sampling *cfg, int n_vocab);
void            sampler_free(struct sampler *s);
/* Records a token of the context (prompt or generated) for the penalties. */
void            sampler_accept(struct sampler *s, int32_t token);
/* Picks the next token from logits[n_vocab] (modified in place). If logprob_out != NULL, writes
 * the log-probability of the chosen token under the final (post-processing) distribution. */
int32_t         sampler_sample(struct sampler *s, float *logits, float *logprob_out);

#endif
