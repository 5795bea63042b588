/* simd_x86: the f32 vector words that the AVX2 and the AVX-512 kernel files spell alike
 * (kern_avx2.c / kern_avx512.c for the GEMM and the elementwise ops, qdeq_avx2.c /
 * qdeq_avx512.c for the quantized dequantizers and GEMV), written once over the intrinsics'
 * width prefix (_mm256_ / _mm512_).
 *
 * Include after <immintrin.h>, inside the file's ISA guard, with VLANES defined as 8 or 16. It
 * defines VEC / VECI (the f32 / i32 vector types) and v_zero, v_fma(a, b, acc) = a * b + acc,
 * v_bcast, v_ldx, v_st, v_add, v_mul, v_max, v_div, v_hsum, v_cvt16 (f16 / bf16 -> f32),
 * v_exp_rem / v_exp_poly (the shared steps of exp), and the i32 words v_splat_i32, v_srlv_i32,
 * v_cvt_i32 (i32 -> f32).
 *
 * v_hsum is one fixed tree (16 -> 8 lanes, then 4 + 4, 2 + 2, 1 + 1): the blocked GEMM's tiles
 * (kern_tmpl.h) and the quantized GEMV (qdeq_tmpl.h) reduce through this one function, which is
 * what makes the GEMV equal the GEMM on the dequantized panel bit for bit (batch invariance).
 */
#ifndef CAIRN_BACKEND_CPU_SIMD_X86_H
#define CAIRN_BACKEND_CPU_SIMD_X86_H

#include <stdint.h>

#include "tensor/dtype.h"

#if VLANES == 16
#define VEC          __m512
#define VECI         __m512i
#define VECH         __m256i   // VLANES 16-bit values
#define SIMD_OP(op)  _mm512_##op
#define SIMD_CASTI_PS(a) _mm512_castsi512_ps(a)
#elif VLANES == 8
#define VEC          __m256
#define VECI         __m256i
#define VECH         __m128i
#define SIMD_OP(op)  _mm256_##op
#define SIMD_CASTI_PS(a) _mm256_castsi256_ps(a)
#else
#error "simd_x86.h: VLANES must be 8 or 16"
#endif

static inline VEC v_zero(void) { return SIMD_OP(setzero_ps)(); }
static inline VEC v_fma(VEC a, VEC b, VEC acc) { return SIMD_OP(fmadd_ps)(a, b, acc); }
static inline VEC v_bcast(float f) { return SIMD_OP(set1_ps)(f); }
static inline VEC v_ldx(const float *p) { return SIMD_OP(loadu_ps)(p); }
static inline void v_st(float *p, VEC v) { SIMD_OP(storeu_ps)(p, v); }
static inline VEC v_add(VEC a, VEC b) { return SIMD_OP(add_ps)(a, b); }
static inline VEC v_mul(VEC a, VEC b) { return SIMD_OP(mul_ps)(a, b); }
static inline VEC v_max(VEC a, VEC b) { return SIMD_OP(max_ps)(a, b); }
static inline VEC v_div(VEC a, VEC b) { return SIMD_OP(div_ps)(a, b); }

static inline VECI v_splat_i32(uint32_t x) { return SIMD_OP(set1_epi32)((int)x); }
static inline VECI v_srlv_i32(VECI a, VECI s) { return SIMD_OP(srlv_epi32)(a, s); }
static inline VEC v_cvt_i32(VECI a) { return SIMD_OP(cvtepi32_ps)(a); }

/* VLANES f16 or bf16 values as f32 (bf16: the bits moved up; exact). */
static inline VEC v_cvt16(enum dtype dt, VECH h)
{
    if (dt == DTYPE_F16) return SIMD_OP(cvtph_ps)(h);
    return SIMD_CASTI_PS(SIMD_OP(slli_epi32)(SIMD_OP(cvtepu16_epi32)(h), 16));
}

/* exp's pieces both families share: x = n ln2 + r (ln2 in two parts, so r is exact enough) and
 * e^r by a degree-6 polynomial (Horner); each family clamps, rounds n and scales by 2^n itself. */
static inline VEC v_exp_rem(VEC x, VEC n)
{
    VEC r = SIMD_OP(fnmadd_ps)(n, v_bcast(0.693145751953125f), x);
    return SIMD_OP(fnmadd_ps)(n, v_bcast(1.428606765330187e-06f), r);
}
static inline VEC v_exp_poly(VEC r)
{
    VEC y = v_bcast(1.0f / 720);
    y = v_fma(y, r, v_bcast(1.0f / 120));
    y = v_fma(y, r, v_bcast(1.0f / 24));
    y = v_fma(y, r, v_bcast(1.0f / 6));
    y = v_fma(y, r, v_bcast(0.5f));
    y = v_fma(y, r, v_bcast(1.0f));
    return v_fma(y, r, v_bcast(1.0f));
}

static inline float v_hsum(VEC v)
{
#if VLANES == 16
    __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
#else
    __m256 a = v;
#endif
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

#endif
