/* kbf16: bf16 dot-product tiles for bf16 and f16 weights (AVX-512 BF16), the cpu backend's fast matmul.
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
 * f16 weights: w = hi + lo exactly, hi = w truncated to bf16 and lo = w - hi (f16 has 11
 * significant bits, bf16 8: lo keeps the 3 low mantissa bits, and every f16, subnormals included,
 * lies in bf16's exponent range; tests/ops/test_ops checks all 65,536 values). A chunk then takes
 * two vdpbf16ps in this order: acc = dot(x, hi) into acc, then dot(x, lo) into acc, each with the
 * lane order above. tile_f16 splits rows as stored in registers (the decode GEMV), tile_hilo
 * reads rows that split_f16 split beforehand (the GEMM's panels); both split with one function,
 * so they agree bit for bit too. Two dot products per 32 weights: the f32 FMA's rate, but on
 * half the x bytes. Infinite or NaN weights give NaN (inf - inf in lo).
 *
 *     const struct cpu_bf16_kern *kb = cpu_bf16_kern_pick(kf->name);   // NULL: none here
 *     kb->to_bf16(x, x16, k);                                  // once per row of x
 *     kb->tile(2, 4, k, 0, k, x16, ldx, w, ldw, c, ldc, NULL); // c[2][4] = x16[2] . w[4]
 *     kb->split_f16(w16, hl, k);                               // f16 row -> hi/lo chunks
 *     kb->tile_hilo(2, 4, k, 0, k, x16, ldx, hl, ldhl, c, ldc, NULL);
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

    /* f16 weights: tile's contract with w rows of f16 as stored (tile_f16), or
     * rows split by split_f16 (tile_hilo; ldw counts split elements). tile_f16 takes its own
     * tile shapes: mr_ <= mr_f16 and nr_ <= nr_f16 (few x rows), or mr_ <= mr_f16_tall and
     * nr_ <= nr_f16_tall (more: each weight chunk is split once per tile). */
    int mr_f16, nr_f16, mr_f16_tall, nr_f16_tall;
    void (*tile_f16)(int mr_, int nr_, int64_t k, int64_t k0, int64_t k1, const uint16_t *x, int64_t ldx,
                     const uint16_t *w, int64_t ldw, float *c, int64_t ldc, float *part);
    void (*tile_hilo)(int mr_, int nr_, int64_t k, int64_t k0, int64_t k1, const uint16_t *x, int64_t ldx,
                      const uint16_t *w, int64_t ldw, float *c, int64_t ldc, float *part);
    /* dst = src (k f16 values) as KBF16_SPLIT_ELEMS(k) bf16: per chunk of 32, the 32 hi, then the
     * 32 lo (zeros past k). */
    void (*split_f16)(const uint16_t *src, uint16_t *dst, int64_t k);
};

#define KBF16_SPLIT_ELEMS(k) (((k) + KBF16_CHUNK - 1) / KBF16_CHUNK * 2 * KBF16_CHUNK)

/* The kernels that go with the f32 family `family` (kern.h), or NULL: only "avx512" has them,
 * and only on CPUs with AVX-512 BF16 that run it faster than f32 FMAs (AMD Zen 4 and later; on
 * Intel's it is no faster, so cpu stays f32 there). */
const struct cpu_bf16_kern *cpu_bf16_kern_pick(const char *family);

#endif
