/* kern: the SIMD kernel families of the cpu backend (portable C, AVX2+FMA, AVX-512).
 *
 * One family is picked once at backend creation (cpu_kern_pick, from __builtin_cpu_supports, or
 * CAIRN_CPU_ISA=portable|avx2|avx512 to force one) and used for every op of that backend.
 *
 * Batch invariance: every matmul output c[i, j] = dot(x_i, w_j) is computed by the same sequence
 * of operations whatever the tile shape (mr x nr), the batch size or the thread split: LANES
 * lane-parallel accumulators walk k in chunks of LANES in increasing order with one FMA per
 * chunk (a partial last chunk reads zeros in the missing lanes), then one fixed horizontal-sum
 * tree. The weight may be read in its own dtype (decode GEMV) or from a panel converted to f32
 * (prefill GEMM): bf16/f16 -> f32 is exact, so both give bit-identical results.
 *
 *     const struct cpu_kern *kf = cpu_kern_pick();
 *     kf->tile(2, 4, DTYPE_BF16, k, x, ldx, w, ldw_bytes, c, ldc);   // c[2][4] = x[2] . w[4]
 */
#ifndef CAIRN_BACKEND_CPU_KERN_H
#define CAIRN_BACKEND_CPU_KERN_H

#include <stddef.h>
#include <stdint.h>

#include "tensor/dtype.h"

#define CPU_KERN_MR_MAX 6
#define CPU_KERN_NR_MAX 4

struct cpu_kern {
    const char *name;   // "avx512", "avx2", "portable"
    int         mr;     // x rows per tile (<= CPU_KERN_MR_MAX)
    int         nr;     // weight rows per tile (<= CPU_KERN_NR_MAX)
    int         lanes;  // f32 lanes per vector

    /* c[i * ldc + j] = sum_k x[i * ldx + k] * w_j[k] for i < mr_, j < nr_; w_j at w + j * ldw bytes,
     * dtype wdt (f32, f16, bf16). mr_ <= mr, nr_ <= nr. */
    void (*tile)(int mr_, int nr_, enum dtype wdt, int64_t k, const float *x, int64_t ldx,
                 const void *w, size_t ldw, float *c, int64_t ldc);

    /* tile over the k chunks [k0, k1) only (k0, k1 multiples of lanes, or k1 == k), keeping the
     * mr_ * nr_ vector accumulators in part (mr_ * nr_ * lanes floats) between calls: k0 == 0
     * starts from zero, k1 == k writes c. Bit-identical to one tile call over [0, k). */
    void (*tile_k)(int mr_, int nr_, enum dtype wdt, int64_t k, int64_t k0, int64_t k1, const float *x,
                   int64_t ldx, const void *w, size_t ldw, float *c, int64_t ldc, float *part);

    /* Attention: s[r * ld_s + j] = dot(q[r * hd ..], k_rows[j][0..hd)) for r < n_q, j < n_k. */
    void (*qk)(int n_q, const float *q, int hd, const void *const *k_rows, int n_k, enum dtype dt,
               float *s, int ld_s);
    /* acc[r * hd + i] += sum_j p[r * ld_p + j] * v_rows[j][i] for r < n_q, i < hd. */
    void (*pv)(int n_q, float *acc, int hd, const float *p, int ld_p, const void *const *v_rows,
               int n_k, enum dtype dt);
    /* dst[i] = (float)src[i] for a bf16/f16/f32 (or f8e4m3) row. */
    void (*to_f32)(enum dtype dt, const void *src, float *dst, int64_t n);
    /* Sum of n floats with 4 vector accumulators (n % (4 * lanes) == 0): streams memory at the
     * full load width; the memory bandwidth probe (membw.h) uses it. */
    float (*read_sum)(const float *p, int64_t n);
    /* One chunk of an online softmax (attention): s[0..n) = softcap(s * scale) (softcap 0: none),
     * then with the running max *m and sum *l: *m = max(*m, max s), s = exp(s - *m),
     * *l = *l * corr + sum s. Returns corr = exp(old *m - new *m), to rescale the output. */
    float (*softmax_step)(float *s, int n, float scale, float softcap, float *m, float *l);
    /* out[i] = act(g[i]) * u[i], act = silu (gelu 0) or gelu_tanh (gelu 1); out may alias g. */
    void (*glu)(float *out, const float *g, const float *u, int64_t n, int gelu);
    /* o[i] = o[i] * a + x[i] * b (one FMA: x * b + (o * a)); attention merges its splits with it. */
    void (*axpby)(float *o, float a, const float *x, float b, int64_t n);
};

/* The best family this CPU runs (or the one CAIRN_CPU_ISA names, if the CPU supports it). */
const struct cpu_kern *cpu_kern_pick(void);
/* A family by name, or NULL if unknown or unsupported by this CPU. */
const struct cpu_kern *cpu_kern_by_name(const char *name);

/* The tables; only cpu_kern_pick/by_name check that the CPU supports them. Defined in
 * kern.c, kern_avx2.c and kern_avx512.c (the latter two compiled with their -m flags). */
extern const struct cpu_kern cpu_kern_portable_table;
extern const struct cpu_kern cpu_kern_avx2_table;
extern const struct cpu_kern cpu_kern_avx512_table;

#endif
