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
#define KB_F16_PREFETCH 1024   // elements ahead (2 KiB) an f16 row is prefetched: the split leaves the loads sparse
/* f16 rows split in registers (the GEMV): each accumulator takes two dependent vdpbf16ps a chunk,
 * so 1 x 8 tiles keep 8 chains in flight where 1 x 4 ones waited on their latency; 2 x 8 = 16
 * accumulators leave registers for the split. More x rows take 8 x 2 tiles, which split each
 * weight chunk once for all 8 (2 x 8 tiles split it 4 times: 0.67x the f32 tiles' step). */
#define KB_MR_F16      2
#define KB_NR_F16      8
#define KB_MR_F16_TALL 8
#define KB_NR_F16_TALL 2
#define KB_MR_MAX      8   // array bounds; the unrolled tiles use only their MR x NR

#define KB_INLINE static inline __attribute__((always_inline))
#define KB_UNROLL _Pragma("GCC unroll 8")

KB_INLINE __m512bh kb_ld(const uint16_t *p) { return (__m512bh)_mm512_loadu_si512(p); }
KB_INLINE __m512bh kb_ld_part(const uint16_t *p, int n) { return (__m512bh)_mm512_maskz_loadu_epi16((__mmask32)((1ull << n) - 1), p); }

/* An f16 weight w is exactly hi + lo in bf16 (kbf16.h): hi = w truncated to bf16 (its f32 bits
 * with the low 16 cleared), lo = w - hi, which holds the f16 mantissa's 3 low bits (at most 3
 * significant bits, at least 2^-24 in magnitude: exact). Both 32-lane halves in element order. */
KB_INLINE void kb_split(__m512i h, __m512bh *hi, __m512bh *lo)
{
    const __m512i top = _mm512_set1_epi32((int)0xffff0000u);
    __m512 w0 = _mm512_cvtph_ps(_mm512_castsi512_si256(h)), w1 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1));
    __m512 t0 = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(w0), top));
    __m512 t1 = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(w1), top));
    *hi = _mm512_cvtne2ps_pbh(t1, t0);   // exact: the dropped bits are zero
    *lo = _mm512_cvtne2ps_pbh(_mm512_sub_ps(w1, t1), _mm512_sub_ps(w0, t0));
}

/* How a tile reads its weight rows: bf16 as stored, f16 as stored (split in registers), or rows
 * already split by kb_split_f16 (per chunk 32 hi, then 32 lo). */
enum kb_wkind { KB_W_BF16, KB_W_F16, KB_W_HILO };

/* acc[i][j] of one chunk of weight row j: one vdpbf16ps for bf16, hi then lo for f16. */
KB_INLINE void kb_chunk_row(const int MR, const int j, enum kb_wkind wk, const uint16_t *wr, int n,
                            const __m512bh *xv, __m512 acc[KB_MR_MAX][KB_NR_F16])
{
    if (wk == KB_W_BF16) {
        __m512bh wv = n == KBF16_CHUNK ? kb_ld(wr) : kb_ld_part(wr, n);
        KB_UNROLL for (int i = 0; i < MR; i++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], xv[i], wv);
        return;
    }
    __m512bh hi, lo;
    if (wk == KB_W_F16) {
        _mm_prefetch((const char *)(wr + KB_F16_PREFETCH), _MM_HINT_T0);
        __m512i h = n == KBF16_CHUNK ? _mm512_loadu_si512(wr) : _mm512_maskz_loadu_epi16((__mmask32)((1ull << n) - 1), wr);
        kb_split(h, &hi, &lo);
    } else {   // whole chunks: the split rows are zero past k
        hi = kb_ld(wr);
        lo = kb_ld(wr + KBF16_CHUNK);
    }
    KB_UNROLL for (int i = 0; i < MR; i++) acc[i][j] = _mm512_dpbf16_ps(_mm512_dpbf16_ps(acc[i][j], xv[i], hi), xv[i], lo);
}

/* The mr x nr tile over the chunks of [k0, k1) (kbf16.h); MR, NR and the weight kind constant
 * after inlining so that the accumulators live in registers. */
KB_INLINE void kb_tile_body(const int MR, const int NR, enum kb_wkind wk, int64_t k, int64_t k0, int64_t k1,
                            const uint16_t *x, int64_t ldx, const uint16_t *w, int64_t ldw, float *c, int64_t ldc,
                            float *part)
{
    const int wstep = wk == KB_W_HILO ? 2 : 1;   // weight elements per k element
    __m512 acc[KB_MR_MAX][KB_NR_F16];
    KB_UNROLL for (int i = 0; i < MR; i++)
        KB_UNROLL for (int j = 0; j < NR; j++) acc[i][j] = k0 == 0 ? v_zero() : v_ldx(part + (i * NR + j) * VLANES);
    int64_t kk = k0;
    for (; kk + KBF16_CHUNK <= k1; kk += KBF16_CHUNK) {
        __m512bh xv[KB_MR_MAX];
        KB_UNROLL for (int i = 0; i < MR; i++) xv[i] = kb_ld(x + i * ldx + kk);
        KB_UNROLL for (int j = 0; j < NR; j++) kb_chunk_row(MR, j, wk, w + j * ldw + wstep * kk, KBF16_CHUNK, xv, acc);
    }
    if (k1 < k) {
        KB_UNROLL for (int i = 0; i < MR; i++)
            KB_UNROLL for (int j = 0; j < NR; j++) v_st(part + (i * NR + j) * VLANES, acc[i][j]);
        return;
    }
    if (kk < k) {
        int n = (int)(k - kk);
        __m512bh xv[KB_MR_MAX];
        KB_UNROLL for (int i = 0; i < MR; i++) xv[i] = kb_ld_part(x + i * ldx + kk, n);
        KB_UNROLL for (int j = 0; j < NR; j++) kb_chunk_row(MR, j, wk, w + j * ldw + wstep * kk, n, xv, acc);
    }
    KB_UNROLL for (int i = 0; i < MR; i++)
        KB_UNROLL for (int j = 0; j < NR; j++) c[i * ldc + j] = v_hsum(acc[i][j]);
}

#define KB_TILE_FN(WK, MR, NR) \
    static void kb_tile_##WK##_##MR##_##NR(int64_t k, int64_t k0, int64_t k1, const uint16_t *x, int64_t ldx, \
                                           const uint16_t *w, int64_t ldw, float *c, int64_t ldc, float *part) \
    { kb_tile_body(MR, NR, KB_W_##WK, k, k0, k1, x, ldx, w, ldw, c, ldc, part); }
#define KB_TILES_NR(WK, MR) KB_TILE_FN(WK, MR, 1) KB_TILE_FN(WK, MR, 2) KB_TILE_FN(WK, MR, 3) KB_TILE_FN(WK, MR, 4)
#define KB_TILES(WK) KB_TILES_NR(WK, 1) KB_TILES_NR(WK, 2) KB_TILES_NR(WK, 3) KB_TILES_NR(WK, 4) \
                     KB_TILES_NR(WK, 5) KB_TILES_NR(WK, 6)
KB_TILES(BF16) KB_TILES(HILO)
#define KB_TILES_NR8(WK, MR) KB_TILES_NR(WK, MR) KB_TILE_FN(WK, MR, 5) KB_TILE_FN(WK, MR, 6) KB_TILE_FN(WK, MR, 7) \
                             KB_TILE_FN(WK, MR, 8)
KB_TILES_NR8(F16, 1) KB_TILES_NR8(F16, 2)
#define KB_TILES_NR2(WK, MR) KB_TILE_FN(WK, MR, 1) KB_TILE_FN(WK, MR, 2)
KB_TILES_NR2(F16, 3) KB_TILES_NR2(F16, 4) KB_TILES_NR2(F16, 5) KB_TILES_NR2(F16, 6) KB_TILES_NR2(F16, 7)
KB_TILES_NR2(F16, 8)

typedef void (*kb_tile_fn)(int64_t, int64_t, int64_t, const uint16_t *, int64_t, const uint16_t *, int64_t, float *,
                           int64_t, float *);
#define KB_ROW(WK, MR) { kb_tile_##WK##_##MR##_1, kb_tile_##WK##_##MR##_2, kb_tile_##WK##_##MR##_3, kb_tile_##WK##_##MR##_4 }
static const kb_tile_fn kb_tiles[KB_MR][KB_NR] = {
    KB_ROW(BF16, 1), KB_ROW(BF16, 2), KB_ROW(BF16, 3), KB_ROW(BF16, 4), KB_ROW(BF16, 5), KB_ROW(BF16, 6) };
static const kb_tile_fn kb_tiles_hilo[KB_MR][KB_NR] = {
    KB_ROW(HILO, 1), KB_ROW(HILO, 2), KB_ROW(HILO, 3), KB_ROW(HILO, 4), KB_ROW(HILO, 5), KB_ROW(HILO, 6) };
#define KB_ROW8(WK, MR) { kb_tile_##WK##_##MR##_1, kb_tile_##WK##_##MR##_2, kb_tile_##WK##_##MR##_3, kb_tile_##WK##_##MR##_4, \
                         kb_tile_##WK##_##MR##_5, kb_tile_##WK##_##MR##_6, kb_tile_##WK##_##MR##_7, kb_tile_##WK##_##MR##_8 }
#define KB_ROW2(WK, MR) { kb_tile_##WK##_##MR##_1, kb_tile_##WK##_##MR##_2 }
static const kb_tile_fn kb_tiles_f16[KB_MR_F16][KB_NR_F16] = { KB_ROW8(F16, 1), KB_ROW8(F16, 2) };
static const kb_tile_fn kb_tiles_f16_tall[KB_MR_F16_TALL][KB_NR_F16_TALL] = {
    KB_ROW2(F16, 1), KB_ROW2(F16, 2), KB_ROW2(F16, 3), KB_ROW2(F16, 4),
    KB_ROW2(F16, 5), KB_ROW2(F16, 6), KB_ROW2(F16, 7), KB_ROW2(F16, 8) };

static void kb_tile(int mr, int nr, int64_t k, int64_t k0, int64_t k1, const uint16_t *x, int64_t ldx,
                    const uint16_t *w, int64_t ldw, float *c, int64_t ldc, float *part)
{
    kb_tiles[mr - 1][nr - 1](k, k0, k1, x, ldx, w, ldw, c, ldc, part);
}

static void kb_tile_hilo(int mr, int nr, int64_t k, int64_t k0, int64_t k1, const uint16_t *x, int64_t ldx,
                         const uint16_t *w, int64_t ldw, float *c, int64_t ldc, float *part)
{
    kb_tiles_hilo[mr - 1][nr - 1](k, k0, k1, x, ldx, w, ldw, c, ldc, part);
}

static void kb_tile_f16(int mr, int nr, int64_t k, int64_t k0, int64_t k1, const uint16_t *x, int64_t ldx,
                        const uint16_t *w, int64_t ldw, float *c, int64_t ldc, float *part)
{
    if (mr <= KB_MR_F16) kb_tiles_f16[mr - 1][nr - 1](k, k0, k1, x, ldx, w, ldw, c, ldc, part);
    else kb_tiles_f16_tall[mr - 1][nr - 1](k, k0, k1, x, ldx, w, ldw, c, ldc, part);
}

/* One f16 row split into hi/lo chunks with the tiles' own kb_split, so that the GEMM's split
 * panels and the GEMV's registers hold the same bits. */
static void kb_split_f16(const uint16_t *src, uint16_t *dst, int64_t k)
{
    for (int64_t kk = 0; kk < k; kk += KBF16_CHUNK, dst += 2 * KBF16_CHUNK) {
        int n = k - kk < KBF16_CHUNK ? (int)(k - kk) : KBF16_CHUNK;
        __m512bh hi, lo;
        kb_split(_mm512_maskz_loadu_epi16((__mmask32)((1ull << n) - 1), src + kk), &hi, &lo);
        _mm512_storeu_si512(dst, (__m512i)hi);
        _mm512_storeu_si512(dst + KBF16_CHUNK, (__m512i)lo);
    }
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
    .mr_f16 = KB_MR_F16, .nr_f16 = KB_NR_F16, .mr_f16_tall = KB_MR_F16_TALL,
    .nr_f16_tall = KB_NR_F16_TALL, .tile_f16 = kb_tile_f16, .tile_hilo = kb_tile_hilo, .split_f16 = kb_split_f16,
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
