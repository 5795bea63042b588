/* rng: a small seeded PRNG (xoshiro256**), so sampling and synthetic weights are reproducible:
 * the same seed gives the same stream on every machine. Not for cryptography.
 *
 *     struct rng r; rng_seed(&r, 42); float u = rng_uniform(&r);
 */
#ifndef CAIRN_BASE_RNG_H
#define CAIRN_BASE_RNG_H

#include <stdint.h>

struct rng { uint64_t s[4]; };

void     rng_seed(struct rng *r, uint64_t seed);
uint64_t rng_next(struct rng *r);
float    rng_uniform(struct rng *r);   // [0, 1)
float    rng_normal(struct rng *r);    // N(0, 1), Box-Muller

#endif
