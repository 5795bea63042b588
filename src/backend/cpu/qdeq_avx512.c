/* qdeq_avx512: AVX-512 dequantizers (16 lanes) for MLX-quantized weights; see qdeq.h. Compiled
 * with the Makefile's AVX-512 flags; picked only when the cpu backend runs its avx512 family. The
 * code is qdeq_tmpl.h over simd_x86.h and the integer words below. qdeq_avx512_vbmi.c compiles
 * this file again with AVX512_VBMI (its entry points named *_avx512vbmi), where q_nibbles is one
 * vpmultishiftqb instead of a vpermd and a shift. */
#include "backend/cpu/qdeq.h"

#include <stdbool.h>
#include <string.h>

#if defined(__x86_64__) && defined(__AVX512F__)
#include <immintrin.h>

#define VLANES 16
#include "backend/cpu/simd_x86.h"
#define QDEQ_ISA 1
#define QGEMV_ROWS 8   // 8 accumulators + 8 tables of 32 registers
#define QGEMV_XROWS 4  // x rows per batched-decode step: 4 x 4 accumulators

static inline VECI q_splat_words(const uint32_t *p)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32((int)p[0])), _mm256_set1_epi32((int)p[1]), 1);
}
static inline VECI q_shifts4(void) { return _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28); }
static inline VECI q_shifts2(void) { return _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30); }
static inline VECI q_and(VECI a, int m) { return _mm512_and_si512(a, _mm512_set1_epi32(m)); }
static inline VECI q_bytes(const uint8_t *p) { return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p)); }
static inline VECH q_ld16(const uint16_t *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* 16-entry f32 tables in one register (QDEQ_PERM16): a 4-bit group's values, looked up by code. */
#define QDEQ_PERM16 1
static inline VEC q_iota16(void) { return _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }
static inline VEC q_e2m1_16(void)
{
    return _mm512_setr_ps(0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f, -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f);
}
static inline VEC q_perm16(VECI codes, VEC table) { return _mm512_permutexvar_ps(codes, table); }   // low 4 bits index
static inline VEC q_lut16(VECI c) { return q_perm16(c, q_e2m1_16()); }
/* The 16 nibbles of the 8 bytes at p, nibble i in the low 4 bits of lane i (higher bits: junk). */
static inline VECI q_nibbles(const uint8_t *p)
{
#ifdef __AVX512VBMI__
    // lane i's low byte = the 8 bits at bit 4i of the (broadcast) 8 bytes; lane i is in qword i / 2
    const __m512i at = _mm512_set_epi64(0x0000003C00000038, 0x0000003400000030, 0x0000002C00000028,
                                        0x0000002400000020, 0x0000001C00000018, 0x0000001400000010,
                                        0x0000000C00000008, 0x0000000400000000);
    long long v;
    memcpy(&v, p, 8);
    return _mm512_multishift_epi64_epi8(at, _mm512_set1_epi64(v));
#else
    const __m512i words = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    __m512i v = _mm512_permutexvar_epi32(words, _mm512_castsi128_si512(_mm_loadl_epi64((const __m128i *)p)));
    return _mm512_srlv_epi32(v, q_shifts4());
#endif
}

static inline VECI q_codes8(const uint64_t *v, int bits)
{
    const __m512i sh = _mm512_setr_epi64(0, bits, 2 * bits, 3 * bits, 4 * bits, 5 * bits, 6 * bits, 7 * bits);
    __m256i a = _mm512_cvtepi64_epi32(_mm512_srlv_epi64(_mm512_set1_epi64((long long)v[0]), sh));
    __m256i b = _mm512_cvtepi64_epi32(_mm512_srlv_epi64(_mm512_set1_epi64((long long)v[1]), sh));
    return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
}
#endif

#ifdef __AVX512VBMI__
#define QGEMV_ENTRY  cpu_qgemv_avx512vbmi
#define QDEQ_NAME(x) avx512vbmi_##x
#define QDEQ_ENTRY   cpu_qdeq_row_avx512vbmi
#else
#define QGEMV_ENTRY  cpu_qgemv_avx512
#define QDEQ_NAME(x) avx512_##x
#define QDEQ_ENTRY   cpu_qdeq_row_avx512
#endif
#include "backend/cpu/qdeq_tmpl.h"
