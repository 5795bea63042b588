/* kbf16_avx512: the bf16 dot-product tiles (kbf16.h) with vdpbf16ps: 6 x 4 tiles, 16 lanes.
 * Compiled with the Makefile's AVX-512 flags (which include AVX512_BF16); picked only on CPUs
 * that report avx512bf16 and run it faster than the f32 FMAs (dot_pays). */
#include "backend/cpu/kbf16.h"

#include <stdbool.h>
#include <string.h>

#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512BF16__)
#include <cpuid.h>
#include <immintrin.h>

#define VLANES 16
#include "backend/cpu/simd_x86.h"

#define KB_MR    6
#define KB_NR    4

#define KB_INLINE static inline __attribute__((always_inline))
#define KB_UNROLL _Pragma("GCC unroll 6")

KB_INLINE __m512bh kb_ld(const uint16_t *p) { return (__m512bh)_mm512_loadu_si512(p); }
KB_INLINE __m512bh kb_ld_part(const uint16_t *p, int n) { return (__m512bh)_mm512_maskz_loadu_epi16((__mmask32)((1ull << n) - 1), p); }

/* The mr x nr tile over the chunks of [k0, k1) (kbf16.h); MR, NR constant after inlining so that
 * the accumulators live in registers. */
KB_INLINE void kb_tile_body(const int MR, const int NR, int64_t k, int64_t k0, int64_t k1, const uint16_t *x,
                            int64_t ldx, const uint16_t *w, int64_t ldw, float *c, int64_t ldc, float *part)
{
    __m512 acc[KB_MR][KB_NR];
    KB_UNROLL for (int i = 0; i < MR; i++)
        KB_UNROLL for (int j = 0; j < NR; j++) acc[i][j] = k0 == 0 ? v_zero() : v_ldx(part + (i * NR + j) * VLANES);
    int64_t kk = k0;
    for (; kk + KBF16_CHUNK <= k1; kk += KBF16_CHUNK) {
        __m512bh xv[KB_MR];
        KB_UNROLL for (int i = 0; i < MR; i++) xv[i] = kb_ld(x + i * ldx + kk);
        KB_UNROLL for (int j = 0; j < NR; j++) {
            __m512bh wv = kb_ld(w + j * ldw + kk);
            KB_UNROLL for (int i = 0; i < MR; i++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv[i], wv);
        }
    }
    if (k1 < k) {
        KB_UNROLL for (int i = 0; i < MR; i++)
            KB_UNROLL for (int j = 0; j < NR; j++) v_st(part + (i * NR + j) * VLANES, acc[i][j]);
        return;
    }
    if (kk < k) {
        int n = (int)(k - kk);
        __m512bh xv[KB_MR];
        KB_UNROLL for (int i = 0; i < MR; i++) xv[i] = kb_ld_part(x + i * ldx + kk, n);
        KB_UNROLL for (int j = 0; j < NR; j++) {
            __m512bh wv = kb_ld_part(w + j * ldw + kk, n);
            KB_UNROLL for (int i = 0; i < MR; i++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv[i], wv);
        }
    }
    KB_UNROLL for (int i = 0; i < MR; i++)
        KB_UNROLL for (int j = 0; j < NR; j++) c[i * ldc + j] = v_hsum(acc[i][j]);
}

#define KB_TILE_FN(MR, NR) \
    static void kb_tile_##MR##_##NR(int64_t k, int64_t k0, int64_t k1, const uint16_t *x, int64_t ldx, \
                                    const uint16_t *w, int64_t ldw, float *c, int64_t ldc, float *part) \
    { kb_tile_body(MR, NR, k, k0, k1, x, ldx, w, ldw, c, ldc, part); }
#define KB_TILES_NR(MR) KB_TILE_FN(MR, 1) KB_TILE_FN(MR, 2) KB_TILE_FN(MR, 3) KB_TILE_FN(MR, 4)
KB_TILES_NR(1) KB_TILES_NR(2) KB_TILES_NR(3) KB_TILES_NR(4) KB_TILES_NR(5) KB_TILES_NR(6)

typedef void (*kb_tile_fn)(int64_t, int64_t, int64_t, const uint16_t *, int64_t, const uint16_t *, int64_t, float *,
                           int64_t, float *);
#define KB_ROW(MR) { kb_tile_##MR##_1, kb_tile_##MR##_2, kb_tile_##MR##_3, kb_tile_##MR##_4 }
static const kb_tile_fn kb_tiles[KB_MR][KB_NR] = { KB_ROW(1), KB_ROW(2), KB_ROW(3), KB_ROW(4), KB_ROW(5), KB_ROW(6) };

static void kb_tile(int mr, int nr, int64_t k, int64_t k0, int64_t k1, const uint16_t *x, int64_t ldx,
                    const uint16_t *w, int64_t ldw, float *c, int64_t ldc, float *part)
{
    kb_tiles[mr - 1][nr - 1](k, k0, k1, x, ldx, w, ldw, c, ldc, part);
}

static void kb_to_bf16(const float *src, uint16_t *dst, int64_t n)
{
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512bh h = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
        _mm512_storeu_si512(dst + i, (__m512i)h);
    }
    for (; i < n; i += 16) {   // the tail, 16 at a time, masked
        int m = n - i < 16 ? (int)(n - i) : 16;
        __mmask16 mk = (__mmask16)((1u << m) - 1u);
        __m256bh h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(mk, src + i));
        _mm256_mask_storeu_epi16(dst + i, mk, (__m256i)h);
    }
}

static const struct cpu_bf16_kern kb_avx512 = {
    .mr = KB_MR, .nr = KB_NR, .lanes = VLANES, .tile = kb_tile, .to_bf16 = kb_to_bf16,
};

/* Whether vdpbf16ps out-runs the f32 FMAs: AMD cores (Zen 4 and later) issue it at the FMA rate,
 * 32 multiply-adds to the FMA's 16; Intel's (Cooper Lake to Granite Rapids) issue it on one port
 * where two take FMAs, so it only breaks even, and the x conversion makes it a loss (measured on
 * the GPU machine's Xeon: 0.77x the f32 tiles' prefill; 1.75x here on an AMD EPYC). */
static bool dot_pays(void)
{
    unsigned a, b, c, d;
    char vendor[13] = { 0 };
    if (!__get_cpuid(0, &a, &b, &c, &d)) return false;
    memcpy(vendor, &b, 4);
    memcpy(vendor + 4, &d, 4);
    memcpy(vendor + 8, &c, 4);
    return !strcmp(vendor, "AuthenticAMD");
}

const struct cpu_bf16_kern *cpu_bf16_kern_pick(const char *family)
{
    __builtin_cpu_init();
    if (!family || strcmp(family, "avx512") || !__builtin_cpu_supports("avx512bf16") || !dot_pays()) return NULL;
    return &kb_avx512;
}

#else
const struct cpu_bf16_kern *cpu_bf16_kern_pick(const char *family)
{
    (void)family;
    return NULL;
}
#endif
