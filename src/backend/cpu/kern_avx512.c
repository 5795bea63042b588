/* kern_avx512: the AVX-512 (F, BW, VL) kernel family: 16 f32 lanes, 6x4 matmul tiles.
 * Compiled with the Makefile's AVX-512 flags; cpu_kern_pick() uses it only on CPUs that have
 * avx512f/bw/vl. The code is the shared template (kern_tmpl.h) over the vocabulary below. */
#include "backend/cpu/kern.h"

#include <math.h>

#include "base/log.h"

#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>

#define VLANES 16
#include "backend/cpu/simd_x86.h"

static inline __mmask16 v_mask(int n) { return (__mmask16)((1u << n) - 1u); }
static inline __m512 v_ldx_part(const float *p, int n) { return _mm512_maskz_loadu_ps(v_mask(n), p); }
static inline void v_st_part(float *p, __m512 v, int n) { _mm512_mask_storeu_ps(p, v_mask(n), v); }

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

static inline float v_hmax(__m512 v) { return _mm512_reduce_max_ps(v); }

/* exp(x): x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial for e^r, times 2^n by scalef
 * (which also handles underflow to 0 and overflow to inf). About 2 ulp. */
static inline __m512 v_exp(__m512 x)
{
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.7f)), _mm512_set1_ps(-104.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504089f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 y = v_exp_poly(v_exp_rem(x, n));
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
