/* qdeq_avx2: AVX2+FMA dequantizers (8 lanes) for MLX-quantized weights; see qdeq.h. Compiled
 * with the Makefile's AVX2 flags; picked only when the cpu backend runs its avx2 family. The
 * code is qdeq_tmpl.h over simd_x86.h and the integer words below. */
#include "backend/cpu/qdeq.h"

#include <stdbool.h>
#include <string.h>

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#define VLANES 8
#include "backend/cpu/simd_x86.h"
#define QDEQ_ISA 1
#define QGEMV_ROWS 4   // 8 rows spill the 16 registers (measured 0.75x)
#define QGEMV_XROWS 2  // x rows per batched-decode step: 4 x 2 accumulators

static inline VECI q_splat_words(const uint32_t *p) { return v_splat_i32(p[0]); }
static inline VECI q_shifts4(void) { return _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28); }
static inline VECI q_shifts2(void) { return _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14); }
static inline VECI q_and(VECI a, int m) { return _mm256_and_si256(a, _mm256_set1_epi32(m)); }
static inline VECI q_bytes(const uint8_t *p)
{
    long long v;
    memcpy(&v, p, 8);
    return _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(v));
}
static inline VEC q_lut16(VECI c)
{
    const VEC lo = _mm256_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f);
    const VEC hi = _mm256_setr_ps(-0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f);
    VEC sel = _mm256_castsi256_ps(_mm256_slli_epi32(c, 28));   // bit 3 (the sign) to the sign bit
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, c), _mm256_permutevar8x32_ps(hi, c), sel);
}

static inline VECH q_ld16(const uint16_t *p) { return _mm_loadu_si128((const __m128i *)p); }

static inline VECI q_codes8(const uint64_t *v, int bits)
{
    __m256i w = _mm256_set1_epi64x((long long)v[0]);
    __m256i lo = _mm256_srlv_epi64(w, _mm256_setr_epi64x(0, bits, 2 * bits, 3 * bits));
    __m256i hi = _mm256_srlv_epi64(w, _mm256_setr_epi64x(4 * bits, 5 * bits, 6 * bits, 7 * bits));
    const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);   // the low dword of each qword
    lo = _mm256_permutevar8x32_epi32(lo, even);
    hi = _mm256_permutevar8x32_epi32(hi, even);
    return _mm256_blend_epi32(lo, hi, 0xF0);
}
#endif

#define QGEMV_ENTRY  cpu_qgemv_avx2
#define QDEQ_NAME(x) avx2_##x
#define QDEQ_ENTRY   cpu_qdeq_row_avx2
#include "backend/cpu/qdeq_tmpl.h"
