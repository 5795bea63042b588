/* sample_prob: the unnormalized probability the sampler gives a logit, exp(x / T - max / T), as one
 * fixed sequence of f32 operations, so that every place that computes it (the sampler's row pass,
 * its candidate path, the backends' sample_cands op; backend/cuda/sample_cands.cu has the device
 * copy, operation for operation) gets the same bits.
 *
 *     float mx = row_max(x, n) * inv_t;             // inv_t = 1 / temperature, rounded to f32
 *     float p  = sample_prob(x[i], inv_t, mx);      // in [0, 1]; 1 at the max; 0 for -inf and NaN
 *
 * Included by C files only (static inline); C11 mode contracts no a*b+c, so the products and sums
 * below round one by one, as the device copy's __fmul_rn / __fadd_rn do.
 */
#ifndef CAIRN_BASE_SAMPLE_PROB_H
#define CAIRN_BASE_SAMPLE_PROB_H

#include <stdint.h>
#include <string.h>

/* 2^y for y <= 0, to about 2 ulp (relative error below 2^-20: test_sampler_cands checks it); y
 * below -126 (and NaN) gives 0. Plain arithmetic and bit moves in a fixed order, so every machine
 * and vector width gives the same bits, and the selects are on integers (a float compare may trap,
 * so the compiler would keep it a branch), so the loops that call it vectorize, which expf's
 * library call prevents. */
static inline float exp2_nonpositive(float y)
{
    uint32_t yb;
    memcpy(&yb, &y, sizeof yb);
    // in range: +0, or a negative float above -126 (negative floats' bits grow with magnitude)
    uint32_t in = (uint32_t)(yb == 0u) | (uint32_t)(yb - 0x80000000u < 0xC2FC0000u - 0x80000000u);
    uint32_t keep = 0u - in;
    uint32_t ycb = (yb & keep) | (0xC2FC0000u & ~keep);   // out of range: -126, result cleared below
    float yc;
    memcpy(&yc, &ycb, sizeof yc);
    float t = yc + 12582912.0f;                 // 1.5 * 2^23: rounds yc to an integer, kept in t's low bits
    float n = t - 12582912.0f;
    float f = yc - n;                           // [-0.5, 0.5]
    // minimax polynomial of (2^f - 1) / f on [-0.5, 0.5] (Cephes exp2f's coefficients)
    float q = 1.535336188319500e-4f;
    q = q * f + 1.339887440266574e-3f;
    q = q * f + 9.618437357674640e-3f;
    q = q * f + 5.550332471162809e-2f;
    q = q * f + 2.402264791363012e-1f;
    q = q * f + 6.931472028550421e-1f;
    float r = q * f + 1.0f;
    uint32_t tb, rb;
    memcpy(&tb, &t, sizeof tb);
    uint32_t sb = (tb - 0x4B400000u + 127u) << 23;   // 2^n as a float: n = t's bits - 12582912.0f's bits
    float scale;
    memcpy(&scale, &sb, sizeof scale);
    r *= scale;
    memcpy(&rb, &r, sizeof rb);
    rb &= keep;
    memcpy(&r, &rb, sizeof r);
    return r;
}

/* exp(x * inv_t - mx) as exp2 of (x * inv_t - mx) * log2(e); mx = the row's max times inv_t. */
static inline float sample_prob(float x, float inv_t, float mx)
{
    return exp2_nonpositive((x * inv_t - mx) * 1.4426950408889634f);
}

#endif
