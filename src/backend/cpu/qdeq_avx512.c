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

#define QDEQ_NAME(x) avx512_##x
#define QDEQ_ENTRY   cpu_qdeq_row_avx512
#include "backend/cpu/qdeq_tmpl.h"

#else
void cpu_qdeq_row_avx512(const struct tensor *w, int64_t row, float *dst) { cpu_qdeq_row_portable(w, row, dst); }
#endif
