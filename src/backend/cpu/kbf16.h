/* kbf16: bf16 dot-product tiles for bf16 weights (AVX-512 BF16), the cpu backend's fast matmul.
 *
 * The f32 tiles (kern.h) widen bf16 weights to f32 and run f32 FMAs; on CPUs with AVX-512 BF16
 * that issue it at the FMA rate (AMD's) one vdpbf16ps does 32 multiply-adds where an f32 FMA
 * does 16, so the "cpu" backend rounds x
 * to bf16 (round to nearest even, as the GPU's bf16 GEMMs and llama.cpp do) and multiplies bf16
 * by bf16 (the products are exact in f32). "cpu-precise" keeps the f32 tiles.
 * Narrow outputs (at most KBF16_NARROW_M weight rows) keep the f32 tiles too, as on cuda: MoE
 * routers, DeltaNet decay and beta projections and shared-expert gates feed top-k, exp or a
 * sigmoid, where x rounded to bf16 flips near-tied choices, and their FLOPs are negligible.
 *
 * Operation order (batch invariance, as in kern.h): for c[i, j] = dot(x_i, w_j), 16 f32 lane
 * accumulators walk k in chunks of 32 in increasing order; lane l of a chunk at k0 adds
 * x[k0 + 2l] * w[k0 + 2l] and then x[k0 + 2l + 1] * w[k0 + 2l + 1] (one vdpbf16ps; a partial
 * last chunk reads zeros); then the fixed horizontal-sum tree of simd_x86.h. Whatever the tile
 * shape, the batch size, the thread split or the k blocking, every c[i, j] gets those exact
 * operations, so the decode GEMV and the prefill GEMM agree bit for bit.
 *
 *     const struct cpu_bf16_kern *kb = cpu_bf16_kern_pick(kf->name);   // NULL: none here
 *     kb->to_bf16(x, x16, k);                                  // once per row of x
 *     kb->tile(2, 4, k, 0, k, x16, ldx, w, ldw, c, ldc, NULL); // c[2][4] = x16[2] . w[4]
 */
#ifndef CAIRN_BACKEND_CPU_KBF16_H
#define CAIRN_BACKEND_CPU_KBF16_H

#include <stdint.h>

#define KBF16_NARROW_M 256
#define KBF16_CHUNK    32    // k elements per accumulator step; k blocks are multiples of it

struct cpu_bf16_kern {
    int mr;      // x rows per tile
    int nr;      // weight rows per tile
    int lanes;   // f32 accumulators per (x row, weight row): part holds mr_ * nr_ * lanes floats

    /* c[i * ldc + j] = dot(x_i, w_j) for i < mr_ <= mr, j < nr_ <= nr; x_i at x + i * ldx, w_j
     * at w + j * ldw (elements). Walks only the chunks of [k0, k1) (k0, k1 multiples of KBF16_CHUNK, or
     * k1 == k): k0 == 0 starts from zero, otherwise from part; k1 == k writes c, otherwise
     * parks the accumulators in part. Split or whole, the result is bit-identical. */
    void (*tile)(int mr_, int nr_, int64_t k, int64_t k0, int64_t k1, const uint16_t *x, int64_t ldx,
                 const uint16_t *w, int64_t ldw, float *c, int64_t ldc, float *part);
    /* dst[i] = bf16(src[i]), round to nearest even (NaN stays NaN, subnormals become 0). */
    void (*to_bf16)(const float *src, uint16_t *dst, int64_t n);
};

/* The kernels that go with the f32 family `family` (kern.h), or NULL: only "avx512" has them,
 * and only on CPUs with AVX-512 BF16 that run it faster than f32 FMAs (AMD Zen 4 and later; on
 * Intel's it is no faster, so cpu stays f32 there). */
const struct cpu_bf16_kern *cpu_bf16_kern_pick(const char *family);

#endif
