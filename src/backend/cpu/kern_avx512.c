/* kern_avx512: the AVX-512 (F, BW, VL) kernel family: 16 f32 lanes, 6x4 matmul tiles.
 * Compiled with the Makefile's AVX-512 flags; cpu_kern_pick() uses it only on CPUs that have
 * avx512f/bw/vl. The code is the shared template (kern_tmpl.h) over the vocabulary below. */
#include "backend/cpu/kern.h"

#include <math.h>

#include "base/log.h"

#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>

#define VEC    __m512
#define VLANES 16

static inline __m512 v_zero(void) { return _mm512_setzero_ps(); }
static inline __m512 v_fma(__m512 a, __m512 b, __m512 acc) { return _mm512_fmadd_ps(a, b, acc); }
static inline __m512 v_bcast(float f) { return _mm512_set1_ps(f); }
static inline __mmask16 v_mask(int n) { return (__mmask16)((1u << n) - 1u); }
static inline __m512 v_ldx(const float *p) { return _mm512_loadu_ps(p); }
static inline __m512 v_ldx_part(const float *p, int n) { return _mm512_maskz_loadu_ps(v_mask(n), p); }
static inline void v_st(float *p, __m512 v) { _mm512_storeu_ps(p, v); }
static inline void v_st_part(float *p, __m512 v, int n) { _mm512_mask_storeu_ps(p, v_mask(n), v); }

static inline __m512 v_cvt16(enum dtype dt, __m256i h)
{
    if (dt == DTYPE_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* Sixteen e4m3 codes as f32, exactly: the f16 trick of kern_avx2.c's v_cvt8 (S.EEEE.MMM as the
 * f16 S.0EEEE.MMM0000000 is the value times 2^-8; NaN gets an all-ones f16 exponent). */
static inline __m512 v_cvt8(__m128i b)
{
    __m256i x = _mm256_cvtepu8_epi16(b);
    __m256i mag = _mm256_and_si256(x, _mm256_set1_epi16(0x7f));
    __m256i h = _mm256_or_si256(_mm256_slli_epi16(_mm256_and_si256(x, _mm256_set1_epi16(0x80)), 8),
                                _mm256_slli_epi16(mag, 7));
    h = _mm256_or_si256(h, _mm256_and_si256(_mm256_cmpeq_epi16(mag, _mm256_set1_epi16(0x7f)), _mm256_set1_epi16(0x7c00)));
    return _mm512_mul_ps(_mm512_cvtph_ps(h), _mm512_set1_ps(256.0f));
}

static inline __m512 v_ldw(enum dtype dt, const void *p)
{
    if (dt == DTYPE_F32) return _mm512_loadu_ps(p);
    if (dt == DTYPE_F8E4M3) return v_cvt8(_mm_loadu_si128((const __m128i *)p));
    return v_cvt16(dt, _mm256_loadu_si256((const __m256i *)p));
}

static inline __m512 v_ldw_part(enum dtype dt, const void *p, int n)
{
    if (dt == DTYPE_F32) return _mm512_maskz_loadu_ps(v_mask(n), p);
    if (dt == DTYPE_F8E4M3) return v_cvt8(_mm_maskz_loadu_epi8(v_mask(n), p));
    return v_cvt16(dt, _mm256_maskz_loadu_epi16(v_mask(n), p));
}

/* Fixed tree: 8 + 8, 4 + 4, 2 + 2, 1 + 1. */
static inline float v_hsum(__m512 v)
{
    __m256 lo = _mm512_castps512_ps256(v);
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    __m256 a = _mm256_add_ps(lo, hi);
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_add_ps(b, _mm_movehl_ps(b, b));
    b = _mm_add_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

static inline __m512 v_add(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
static inline __m512 v_mul(__m512 a, __m512 b) { return _mm512_mul_ps(a, b); }
static inline __m512 v_max(__m512 a, __m512 b) { return _mm512_max_ps(a, b); }
static inline __m512 v_div(__m512 a, __m512 b) { return _mm512_div_ps(a, b); }
static inline float v_hmax(__m512 v) { return _mm512_reduce_max_ps(v); }

/* exp(x): x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial for e^r, times 2^n by scalef
 * (which also handles underflow to 0 and overflow to inf). About 2 ulp. */
static inline __m512 v_exp(__m512 x)
{
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.7f)), _mm512_set1_ps(-104.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504089f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
    __m512 y = _mm512_set1_ps(1.0f / 720);
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f / 120));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f / 24));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f / 6));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(0.5f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(y, n);
}

#define KERN_NAME  "avx512"
#define KERN_TABLE cpu_kern_avx512_table
#define KERN_MR    6
#define KERN_NR    4
#include "backend/cpu/kern_tmpl.h"

#else
const struct cpu_kern cpu_kern_avx512_table = { .name = NULL };
#endif
