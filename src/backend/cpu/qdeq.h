/* qdeq: dequantization of MLX-quantized weight rows (tensor/qweight.h) for the cpu backend.
 *
 * Affine 4- and 8-bit weights take qint.h's integer kernels instead, except in cpu-precise.
 * The cpu GEMM never materialises a dequantized matrix: each task dequantizes a panel of weight
 * rows (about 192 KiB of f32, L2-resident) and runs its register tiles on it, so only packed
 * bytes stream from memory; at decode (1 .. 8 rows of x) the fused GEMV (cpu_qgemv_*)
 * dequantizes in registers instead, several weight rows a step, with software prefetch. Every
 * value is exact (scale * code is exact in f32; the affine bias adds one rounding, which an FMA
 * reproduces), so the output equals the ref backend's dequantization bit for bit, and the GEMV
 * equals the GEMM: batch-invariant.
 * Kernels: AVX-512 (also built with VBMI: qdeq_avx512_vbmi.c) and AVX2 (files *_avx512.c /
 * *_avx2.c, compiled with their ISA flags) for every affine width (3, 5 and 6 bit read 8 codes
 * from `bits` whole bytes) and the E2M1 modes (mxfp4, nvfp4); portable C for mxfp8. Picked once by ISA name (the cpu kernel family's). Pure functions;
 * any thread.
 *
 *     cpu_qdeq_fn f = cpu_qdeq_pick(c->kf->name);
 *     f(w, row, dst);    // dst[w->ne[0]] = dequantized row `row` of the DTYPE_QMLX tensor w
 */
#ifndef CAIRN_BACKEND_CPU_QDEQ_H
#define CAIRN_BACKEND_CPU_QDEQ_H

#include <stdint.h>

#include "tensor/qweight.h"

typedef void (*cpu_qdeq_fn)(const struct tensor *w, int64_t row, float *dst);
/* Fused decode GEMV: out[i * ldo + j] = dot(x_i, row j of w) for i < n and j in [j0, j1),
 * streaming the packed rows (never stored as f32); bit-identical to the family's tile on the
 * dequantized row. Returns false (nothing done) for widths / shapes it does not handle: n = 1
 * takes every width but mxfp8, n = 2 .. 8 the 4- and 8-bit affine and the E2M1 modes. */
typedef bool (*cpu_qgemv_fn)(const struct tensor *w, int64_t j0, int64_t j1, const float *x, int64_t ldx, int n,
                             float *out, int64_t ldo);

cpu_qdeq_fn  cpu_qdeq_pick(const char *isa);     // "avx512", "avx2" or anything else (portable)
cpu_qgemv_fn cpu_qgemv_pick(const char *isa);    // the GEMV of the same family (the portable one declines;
                                                 // avx512 on a CPU with VBMI: its VBMI build)

/* The per-ISA entry points (NULL-free: each falls back to the portable one for widths it lacks). */
void cpu_qdeq_row_portable(const struct tensor *w, int64_t row, float *dst);
void cpu_qdeq_row_avx2(const struct tensor *w, int64_t row, float *dst);
void cpu_qdeq_row_avx512(const struct tensor *w, int64_t row, float *dst);
bool cpu_qgemv_avx2(const struct tensor *w, int64_t j0, int64_t j1, const float *x, int64_t ldx, int n, float *out,
                    int64_t ldo);
bool cpu_qgemv_avx512(const struct tensor *w, int64_t j0, int64_t j1, const float *x, int64_t ldx, int n, float *out,
                      int64_t ldo);
void cpu_qdeq_row_avx512vbmi(const struct tensor *w, int64_t row, float *dst);
bool cpu_qgemv_avx512vbmi(const struct tensor *w, int64_t j0, int64_t j1, const float *x, int64_t ldx, int n,
                          float *out, int64_t ldo);   // qdeq_avx512_vbmi.c: the same bits, for CPUs with VBMI

/* Shared by the ISA files: decoded scales and biases (0 for the fp modes) of groups [g0, g0 + n)
 * of row `row`. */
void cpu_qdeq_scales(const struct tensor *w, int64_t row, int64_t g0, int64_t n, float *scales, float *biases);

#endif
