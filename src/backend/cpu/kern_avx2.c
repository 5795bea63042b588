/* kern_avx2: the AVX2+FMA+F16C kernel family: 8 f32 lanes, 3x4 matmul tiles: 12
 * accumulators + 3 x + 1 w vectors fill the 16 ymm registers; 4x2 (8 accumulators) left the two
 * FMA pipes short of independent chains (1.7B bf16 prefill, 2 threads: ~31 -> ~36-42 tok/s).
 * Compiled with the Makefile's AVX2 flags; cpu_kern_pick() uses it only on CPUs that have
 * avx2, fma and f16c. The code is the shared template (kern_tmpl.h) over the vocabulary below. */
#include "backend/cpu/kern.h"

#include <math.h>
#include <string.h>

#include "base/log.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#define VLANES 8
#include "backend/cpu/simd_x86.h"

static inline __m256i v_mask(int n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline __m256 v_ldx_part(const float *p, int n) { return _mm256_maskload_ps(p, v_mask(n)); }
static inline void v_st_part(float *p, __m256 v, int n) { _mm256_maskstore_ps(p, v_mask(n), v); }

/* Eight e4m3 codes (the low 8 bytes of b) as f32, exactly: S.EEEE.MMM moved into an f16 as
 * S.0EEEE.MMM0000000 is the same number times 2^-8 (bias 15 instead of 7; subnormals line up
 * too), so convert with F16C and multiply by 256; S.1111.111 (NaN) gets an all-ones f16 exponent. */
static inline __m256 v_cvt8(__m128i b)
{
    __m128i x = _mm_cvtepu8_epi16(b);
    __m128i mag = _mm_and_si128(x, _mm_set1_epi16(0x7f));
    __m128i h = _mm_or_si128(_mm_slli_epi16(_mm_and_si128(x, _mm_set1_epi16(0x80)), 8), _mm_slli_epi16(mag, 7));
    h = _mm_or_si128(h, _mm_and_si128(_mm_cmpeq_epi16(mag, _mm_set1_epi16(0x7f)), _mm_set1_epi16(0x7c00)));
    return _mm256_mul_ps(_mm256_cvtph_ps(h), _mm256_set1_ps(256.0f));
}

static inline __m256 v_ldw(enum dtype dt, const void *p)
{
    if (dt == DTYPE_F32) return _mm256_loadu_ps(p);
    if (dt == DTYPE_F8E4M3) return v_cvt8(_mm_loadl_epi64((const __m128i *)p));
    return v_cvt16(dt, _mm_loadu_si128((const __m128i *)p));
}

static inline __m256 v_ldw_part(enum dtype dt, const void *p, int n)
{
    if (dt == DTYPE_F32) return _mm256_maskload_ps(p, v_mask(n));
    if (dt == DTYPE_F8E4M3) {
        uint8_t tmp[16] = { 0 };
        memcpy(tmp, p, (size_t)n);
        return v_cvt8(_mm_loadu_si128((const __m128i *)tmp));
    }
    uint16_t tmp[8] = { 0 };
    memcpy(tmp, p, (size_t)n * 2);
    return v_cvt16(dt, _mm_loadu_si128((const __m128i *)tmp));
}

static inline float v_hmax(__m256 v)
{
    __m128 b = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    b = _mm_max_ps(b, _mm_movehl_ps(b, b));
    b = _mm_max_ss(b, _mm_movehdup_ps(b));
    return _mm_cvtss_f32(b);
}

/* exp(x): x = n ln2 + r, degree-6 polynomial for e^r, 2^n built in the exponent bits; x is
 * clamped to [-87.3, 88.7] so 2^n stays a normal float (results below ~1e-38 become ~1e-38,
 * which callers only ever add to sums of order 1). About 2 ulp. */
static inline __m256 v_exp(__m256 x)
{
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.7f)), _mm256_set1_ps(-87.3f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504089f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 y = v_exp_poly(v_exp_rem(x, n));
    // n in [-126, 128]: split 2^n = 2^(n/2) * 2^(n - n/2) so both factors are normal
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i h = _mm256_srai_epi32(ni, 1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, h), _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(_mm256_mul_ps(y, s1), s2);
}

#define KERN_NAME  "avx2"
#define KERN_TABLE cpu_kern_avx2_table
#define KERN_MR    3
#define KERN_NR    4
#include "backend/cpu/kern_tmpl.h"

#else
const struct cpu_kern cpu_kern_avx2_table = { .name = NULL };
#endif
