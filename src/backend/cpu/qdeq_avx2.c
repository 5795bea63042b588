/* qdeq_avx2: AVX2+FMA dequantizers (8 lanes) for MLX-quantized weights; see qdeq.h. Compiled
 * with the Makefile's AVX2 flags; picked only when the cpu backend runs its avx2 family. */
#include "backend/cpu/qdeq.h"

#include <stdbool.h>
#include <string.h>

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#define QL 8
typedef __m256 QV;
typedef __m256i QI;

static inline QI q_splat_u32(uint32_t x) { return _mm256_set1_epi32((int)x); }
static inline QI q_splat_words(const uint32_t *p) { return q_splat_u32(p[0]); }
static inline QI q_shifts4(void) { return _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28); }
static inline QI q_shifts2(void) { return _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14); }
static inline QI q_srlv(QI a, QI s) { return _mm256_srlv_epi32(a, s); }
static inline QI q_and(QI a, int m) { return _mm256_and_si256(a, _mm256_set1_epi32(m)); }
static inline QV q_cvt(QI a) { return _mm256_cvtepi32_ps(a); }
static inline QV q_fma(QV a, QV b, QV c) { return _mm256_fmadd_ps(a, b, c); }
static inline QV q_mul(QV a, QV b) { return _mm256_mul_ps(a, b); }
static inline QV q_set1(float f) { return _mm256_set1_ps(f); }
static inline void q_store(float *p, QV v) { _mm256_storeu_ps(p, v); }
static inline QI q_bytes(const uint8_t *p)
{
    long long v;
    memcpy(&v, p, 8);
    return _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(v));
}
static inline QV q_lut16(QI c)
{
    const QV lo = _mm256_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f);
    const QV hi = _mm256_setr_ps(-0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f);
    QV sel = _mm256_castsi256_ps(_mm256_slli_epi32(c, 28));   // bit 3 (the sign) to the sign bit
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, c), _mm256_permutevar8x32_ps(hi, c), sel);
}

static inline QI q_codes8(const uint64_t *v, int bits)
{
    __m256i w = _mm256_set1_epi64x((long long)v[0]);
    __m256i lo = _mm256_srlv_epi64(w, _mm256_setr_epi64x(0, bits, 2 * bits, 3 * bits));
    __m256i hi = _mm256_srlv_epi64(w, _mm256_setr_epi64x(4 * bits, 5 * bits, 6 * bits, 7 * bits));
    const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);   // the low dword of each qword
    lo = _mm256_permutevar8x32_epi32(lo, even);
    hi = _mm256_permutevar8x32_epi32(hi, even);
    return _mm256_blend_epi32(lo, hi, 0xF0);
}
static inline QV q_ldx(const float *p) { return _mm256_loadu_ps(p); }
/* kern_avx2.c's v_hsum, the same tree (the GEMV must match the tile bit for bit) */
static inline float q_hsum(QV v)
{
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

#define QGEMV_ENTRY  cpu_qgemv_avx2
#define QDEQ_NAME(x) avx2_##x
#define QDEQ_ENTRY   cpu_qdeq_row_avx2
#include "backend/cpu/qdeq_tmpl.h"

#else
bool cpu_qgemv_avx2(const struct tensor *w, int64_t j0, int64_t j1, const float *x, int64_t ldx, int n, float *out,
                 int64_t ldo)
{
    return false;
}
void cpu_qdeq_row_avx2(const struct tensor *w, int64_t row, float *dst) { cpu_qdeq_row_portable(w, row, dst); }
#endif
