/* qdeq_avx512: AVX-512 dequantizers (16 lanes) for MLX-quantized weights; see qdeq.h. Compiled
 * with the Makefile's AVX-512 flags; picked only when the cpu backend runs its avx512 family. */
#include "backend/cpu/qdeq.h"

#include <stdbool.h>
#include <string.h>

#if defined(__x86_64__) && defined(__AVX512F__)
#include <immintrin.h>

#define QL 16
typedef __m512 QV;
typedef __m512i QI;

static inline QI q_splat_u32(uint32_t x) { return _mm512_set1_epi32((int)x); }
static inline QI q_splat_words(const uint32_t *p)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32((int)p[0])), _mm256_set1_epi32((int)p[1]), 1);
}
static inline QI q_shifts4(void) { return _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28); }
static inline QI q_shifts2(void) { return _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30); }
static inline QI q_srlv(QI a, QI s) { return _mm512_srlv_epi32(a, s); }
static inline QI q_and(QI a, int m) { return _mm512_and_si512(a, _mm512_set1_epi32(m)); }
static inline QV q_cvt(QI a) { return _mm512_cvtepi32_ps(a); }
static inline QV q_fma(QV a, QV b, QV c) { return _mm512_fmadd_ps(a, b, c); }
static inline QV q_mul(QV a, QV b) { return _mm512_mul_ps(a, b); }
static inline QV q_set1(float f) { return _mm512_set1_ps(f); }
static inline void q_store(float *p, QV v) { _mm512_storeu_ps(p, v); }
static inline QI q_bytes(const uint8_t *p) { return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p)); }
static inline QV q_lut16(QI c)
{
    const QV lut = _mm512_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                                  -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f);
    return _mm512_permutexvar_ps(c, lut);
}

static inline QI q_codes8(const uint64_t *v, int bits)
{
    const __m512i sh = _mm512_setr_epi64(0, bits, 2 * bits, 3 * bits, 4 * bits, 5 * bits, 6 * bits, 7 * bits);
    __m256i a = _mm512_cvtepi64_epi32(_mm512_srlv_epi64(_mm512_set1_epi64((long long)v[0]), sh));
    __m256i b = _mm512_cvtepi64_epi32(_mm512_srlv_epi64(_mm512_set1_epi64((long long)v[1]), sh));
    return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
}
static inline QV q_ldx(const float *p) { return _mm512_loadu_ps(p); }
/* kern_avx512.c's v_hsum, the same tree (the GEMV must match the tile bit for bit) */
static inline float q_hsum(QV v)
{
    __m256 lo = _mm512_castps512_ps256(v);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    __m256 a = _mm256_add_ps(lo, hi);
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

#define QGEMV_ENTRY  cpu_qgemv_avx512
#define QDEQ_NAME(x) avx512_##x
#define QDEQ_ENTRY   cpu_qdeq_row_avx512
#include "backend/cpu/qdeq_tmpl.h"

#else
bool cpu_qgemv_avx512(const struct tensor *w, int64_t j0, int64_t j1, const float *x, int64_t ldx, int n, float *out,
                 int64_t ldo)
{
    return false;
}
void cpu_qdeq_row_avx512(const struct tensor *w, int64_t row, float *dst) { cpu_qdeq_row_portable(w, row, dst); }
#endif
