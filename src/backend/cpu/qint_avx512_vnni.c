/* qint_avx512_vnni: the integer kernel of qint.h on AVX-512 VNNI (Ice Lake, Zen 4 and later).
 * Compiled with the Makefile's AVX-512 flags plus -mavx512vnni (by file name); picked when the
 * backend runs its avx512 family on a CPU with VNNI.
 *
 * A tile is R weight rows against NX prepared x rows over all of k, one f32 accumulator per
 * (x row, weight row) in registers. Per block of 128 codes each row's codes are loaded once
 * (4-bit: 64 bytes split into low and high nibbles, the even and odd codes; 8-bit: 128 bytes, each
 * lane's first and last 4 codes gathered by vpermt2d, split into the low and high byte of their
 * 16-bit pairs), then per x row four vpdpbusd (h even, h odd, shift by 8, l even, l odd) or four
 * vpdpwssd (code words times v words) give T exactly, and a convert, a multiply and an FMA add it
 * with the lane's weight scale (a permute of the chunk's 16 scales) times its x scale. Decode
 * (n <= 8) runs 4 weight rows x 1 (8 spill registers: measured 0.8x) or 4 x 4 and prefetches the
 * bytes QINT_AHEAD rows on. At n = 1 a slice of QINT_STREAM_MIN_BYTES or more (an lm_head's) is
 * walked as four sequential streams, the tile's rows a quarter of the slice apart: the hardware
 * prefetcher follows each stream, where it does not follow 4 adjacent rows read 64 bytes of each
 * at a time (one core without software prefetch: 12 GB/s from DRAM for adjacent rows, 25 for four
 * streams); [151936, 1024] on 2 threads from DRAM, 3 rounds at load 1.0-1.4: 4-bit 34.8 -> 36.4
 * GB/s, 8-bit 38.1 -> 40.5 (median; slices of a layer's matrices, 100-400 KB, gained nothing and
 * keep adjacent rows). Each row's arithmetic is the same either way. Prefill walks panels of
 * QINT_PANEL weight rows in tiles of 2 rows x 4 x rows (4 x 4 spills the 8-bit codes' 4 registers
 * a row: 8-bit 800 -> 670 us at n = 64, 4-bit the same), the x tiles outside the panel's steps, so
 * a panel stays in L2 while every x row passes once.
 */
#include "backend/cpu/qint.h"

#if defined(__x86_64__) && defined(__AVX512VNNI__)
#include <immintrin.h>

#include <float.h>
#include <string.h>

#include "tensor/dtype.h"

#define QINT_AHEAD 8     // prefetch distance at decode, in weight rows (the same as the f32 GEMV's)
#define QINT_PANEL 64    // prefill: weight rows per panel
#define DECODE_MAX 8     // x rows that still stream the weights once (the decode shape)

/* One call's constants. */
static inline __m512 scales16(enum dtype dt, const uint8_t *p, __mmask16 m)
{
    if (dt == DTYPE_BF16)
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
    if (dt == DTYPE_F16) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
    return _mm512_maskz_loadu_ps(m, p);
}

/* The bytes of a 64-byte load at byte `at` of a row that lie inside it. */
static inline __mmask64 tail_mask(const struct qint_w *K, int64_t at)
{
    int64_t n = K->row_bytes - at;
    return n >= 64 ? ~(__mmask64)0 : n <= 0 ? 0 : ((__mmask64)1 << n) - 1;
}

/* The tree of qint.h: L + (L + 8), then + 4, + 2, + 1. */
static inline float hsum16(__m512 v)
{
    __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
    return _mm_cvtss_f32(_mm_add_ss(c, _mm_movehdup_ps(c)));
}

static inline __attribute__((always_inline)) void tile(const int BITS, const int R, const int NX, const bool PF,
                                                       const struct qint_w *K, int64_t j, int64_t rs, int nr,
                                                       const uint8_t *xq, size_t ldxq, float *out, int64_t ldo)
{
    const struct tensor *w = K->w;
    const struct qint_geom *g = &K->g;
    const int64_t BC = 128;   // codes a block
    const uint8_t *wr[8], *sp[8], *bp[8];
    __m512 acc[4][8];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        int64_t row = j + (r < nr ? r : 0) * rs;
        wr[r] = K->wbase + qint_row_off(w, w, row);
        sp[r] = K->sbase + qint_row_off(&w->q->scales, w, row);
        bp[r] = K->bbase + qint_row_off(&w->q->biases, w, row);
#pragma GCC unroll 4
        for (int i = 0; i < NX; i++) acc[i][r] = _mm512_setzero_ps();
    }
    const __m512i lane_codes = _mm512_setr_epi32(0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120);
    const __m512i nib = _mm512_set1_epi8(0x0F), lowb = _mm512_set1_epi16(0xFF);
    const __m512i evens = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odds = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    const __m128i gsh = _mm_cvtsi32_si128(K->gshift);
    const size_t blk_off = (size_t)g->groups_pad * sizeof(float);
    size_t ahead = PF ? QINT_AHEAD * w->nb[1] : 0, sahead = PF ? QINT_AHEAD * w->q->scales.nb[1] : 0;
    for (int64_t g0 = 0; g0 < g->n_groups; g0 += 16) {
        int64_t ng = g->n_groups - g0 < 16 ? g->n_groups - g0 : 16;
        __mmask16 gm = (__mmask16)((1u << ng) - 1);
        __m512 s16[8];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            if (PF) {
                _mm_prefetch((const char *)sp[r] + sahead + g0 * K->ssize, _MM_HINT_T0);
                _mm_prefetch((const char *)bp[r] + sahead + g0 * K->ssize, _MM_HINT_T0);
            }
            s16[r] = scales16(K->sdt, sp[r] + g0 * K->ssize, gm);
            __m512 b16 = scales16(K->sdt, bp[r] + g0 * K->ssize, gm);
#pragma GCC unroll 4
            for (int i = 0; i < NX; i++) {
                const float *xs = (const float *)(xq + (size_t)i * ldxq) + g0;
                acc[i][r] = _mm512_fmadd_ps(b16, _mm512_loadu_ps(xs), acc[i][r]);
            }
        }
        int64_t c_end = (g0 + 16) * g->gs < g->k_pad ? (g0 + 16) * g->gs : g->k_pad;
        for (int64_t c0 = g0 * g->gs; c0 < c_end; c0 += BC) {
            __m512i idx = _mm512_srl_epi32(_mm512_add_epi32(_mm512_set1_epi32((int)(c0 - g0 * g->gs)), lane_codes), gsh);
            bool part = c0 + BC > g->k;
            // 4-bit: c[0], c[1] the even and odd codes as bytes; 8-bit: as int16 words, each lane's
            // first 4 codes split into the low and high code of their pairs, then its last 4
            __m512i c[4][8];
            __m512 sl[8];
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                const uint8_t *p = wr[r] + c0 * BITS / 8;
                if (PF) _mm_prefetch((const char *)p + ahead, _MM_HINT_T0);
                if (BITS == 4) {
                    __m512i v = part ? _mm512_maskz_loadu_epi8(tail_mask(K, c0 * BITS / 8), p) : _mm512_loadu_si512(p);
                    c[0][r] = _mm512_and_si512(v, nib);
                    c[1][r] = _mm512_and_si512(_mm512_srli_epi16(v, 4), nib);
                } else {
                    if (PF) _mm_prefetch((const char *)p + ahead + 64, _MM_HINT_T0);
                    __m512i a = part ? _mm512_maskz_loadu_epi8(tail_mask(K, c0), p) : _mm512_loadu_si512(p);
                    __m512i b = part ? _mm512_maskz_loadu_epi8(tail_mask(K, c0 + 64), p + 64) : _mm512_loadu_si512(p + 64);
                    __m512i first = _mm512_permutex2var_epi32(a, evens, b), last = _mm512_permutex2var_epi32(a, odds, b);
                    c[0][r] = _mm512_and_si512(first, lowb);
                    c[1][r] = _mm512_srli_epi16(first, 8);
                    c[2][r] = _mm512_and_si512(last, lowb);
                    c[3][r] = _mm512_srli_epi16(last, 8);
                }
                sl[r] = _mm512_permutexvar_ps(idx, s16[r]);
            }
#pragma GCC unroll 4
            for (int i = 0; i < NX; i++) {
                const uint8_t *blk = xq + (size_t)i * ldxq + blk_off + (size_t)(c0 / BC) * g->xblock_bytes;
                const uint8_t *xb = blk + 64;
                __m512 sxl = _mm512_loadu_ps((const float *)blk);
#pragma GCC unroll 8
                for (int r = 0; r < R; r++) {
                    __m512i t;
                    if (BITS == 4) {
                        t = _mm512_dpbusd_epi32(_mm512_setzero_si512(), c[0][r], _mm512_loadu_si512(xb));
                        t = _mm512_dpbusd_epi32(t, c[1][r], _mm512_loadu_si512(xb + 64));
                        t = _mm512_slli_epi32(t, 8);
                        t = _mm512_dpbusd_epi32(t, c[0][r], _mm512_loadu_si512(xb + 128));
                        t = _mm512_dpbusd_epi32(t, c[1][r], _mm512_loadu_si512(xb + 192));
                    } else {
                        t = _mm512_dpwssd_epi32(_mm512_setzero_si512(), c[0][r], _mm512_loadu_si512(xb));
                        t = _mm512_dpwssd_epi32(t, c[1][r], _mm512_loadu_si512(xb + 64));
                        t = _mm512_dpwssd_epi32(t, c[2][r], _mm512_loadu_si512(xb + 128));
                        t = _mm512_dpwssd_epi32(t, c[3][r], _mm512_loadu_si512(xb + 192));
                    }
                    acc[i][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), _mm512_mul_ps(sl[r], sxl), acc[i][r]);
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < NX; i++)
#pragma GCC unroll 8
        for (int r = 0; r < R; r++)   // constant indices: acc stays in registers
            if (r < nr) out[i * ldo + j + r * rs] = hsum16(acc[i][r]);
}

/* ==== x preparation ==== */

/* The largest |x| (and the sum of v) of each run of 8 lanes of a vector, in every lane of the run
 * (max and add are exact, so any tree gives the portable loops' values). */
static inline __m512 runs_max(__m512 a)
{
    a = _mm512_max_ps(a, _mm512_permute_ps(a, 0xB1));   // pairs
    a = _mm512_max_ps(a, _mm512_permute_ps(a, 0x4E));   // quads
    return _mm512_max_ps(a, _mm512_shuffle_f32x4(a, a, 0xB1));
}
static inline __m512i runs_sum(__m512i a)
{
    a = _mm512_add_epi32(a, _mm512_shuffle_epi32(a, 0xB1));
    a = _mm512_add_epi32(a, _mm512_shuffle_epi32(a, 0x4E));
    return _mm512_add_epi32(a, _mm512_shuffle_i32x4(a, a, 0xB1));
}

/* cpu_qint_quantize_x with 16 values a step: the same IEEE operations (max, divide, multiply,
 * round to nearest even), so the same bytes; rows with Inf / NaN or a partial last block take
 * the portable loops. */
void cpu_qint_quantize_x_avx512(const float *x, int64_t k, int bits, int gs, uint8_t *dst)
{
    struct qint_geom g = qint_geom(k, bits, gs);
    if (k % g.block_codes) {
        cpu_qint_quantize_x(x, k, bits, gs, dst);
        return;
    }
    const __m512 fmax = _mm512_set1_ps(FLT_MAX);
    __mmask16 bad = 0;
    for (int64_t j = 0; j < k; j += 16)
        bad |= _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(x + j)), fmax, _CMP_NLE_UQ);
    if (bad) {
        cpu_qint_quantize_x(x, k, bits, gs, dst);
        return;
    }
    const int per = 8;   // codes a lane
    const __m128i evens_odds = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    float *xs = (float *)dst;
    memset(xs, 0, (size_t)g.groups_pad * sizeof(float));
    for (int64_t c0 = 0; c0 < k; c0 += g.block_codes) {
        uint8_t *blk = dst + (size_t)g.groups_pad * sizeof(float) + (size_t)(c0 / g.block_codes) * g.xblock_bytes;
        int8_t *lv = (int8_t *)(blk + 64);
        float sxv[128], sumv[128];
        for (int q = 0; q < g.block_codes / 16; q++) {
            __m512 xv = _mm512_loadu_ps(x + c0 + 16 * q);
            __m512 m = runs_max(_mm512_abs_ps(xv));
            __mmask16 live = _mm512_cmp_ps_mask(m, _mm512_set1_ps(0x1p-100f), _CMP_GE_OQ);
            __m512 inv = _mm512_div_ps(_mm512_set1_ps(QINT_XMAX), m);
            __m512 sx = _mm512_maskz_div_ps(live, m, _mm512_set1_ps(QINT_XMAX));
            __m512i v = _mm512_maskz_cvtps_epi32(live, _mm512_mul_ps(xv, inv));
            __m512i h = _mm512_srai_epi32(_mm512_add_epi32(v, _mm512_set1_epi32(128)), 8);
            __m512i l = _mm512_sub_epi32(v, _mm512_slli_epi32(h, 8));
            if (bits == 8) {   // v as int16 in qint.c's v16_pos order: 4 words to each of the 4 runs
                const __m512i order = _mm512_setr_epi32(0, 2, 8, 10, 1, 3, 9, 11, 4, 6, 12, 14, 5, 7, 13, 15);
                __m256i w = _mm512_cvtepi32_epi16(_mm512_permutexvar_epi32(order, v));
                _mm_storel_epi64((__m128i *)(lv + 8 * q), _mm256_castsi256_si128(w));
                _mm_storel_epi64((__m128i *)(lv + 64 + 8 * q), _mm_unpackhi_epi64(_mm256_castsi256_si128(w), _mm256_castsi256_si128(w)));
                __m128i w1 = _mm256_extracti128_si256(w, 1);
                _mm_storel_epi64((__m128i *)(lv + 128 + 8 * q), w1);
                _mm_storel_epi64((__m128i *)(lv + 192 + 8 * q), _mm_unpackhi_epi64(w1, w1));
            } else {   // even codes to the first half of each level, odd ones to the second
                __m128i hb = _mm_shuffle_epi8(_mm512_cvtepi32_epi8(h), evens_odds);
                __m128i lb = _mm_shuffle_epi8(_mm512_cvtepi32_epi8(l), evens_odds);
                _mm_storel_epi64((__m128i *)(lv + 8 * q), hb);
                _mm_storel_epi64((__m128i *)(lv + 64 + 8 * q), _mm_unpackhi_epi64(hb, hb));
                _mm_storel_epi64((__m128i *)(lv + 128 + 8 * q), lb);
                _mm_storel_epi64((__m128i *)(lv + 192 + 8 * q), _mm_unpackhi_epi64(lb, lb));
            }
            _mm512_storeu_ps(sxv + 16 * q, sx);
            _mm512_storeu_ps(sumv + 16 * q, _mm512_cvtepi32_ps(runs_sum(v)));   // |sum| < 2^24: exact
        }
        float *sxl = (float *)blk;
        for (int L = 0; L < 16; L++) {
            sxl[L] = sxv[L * per];
            if (sxl[L] != 0.0f) xs[(c0 + L * per) / gs] += sxl[L] * sumv[L * per];
        }
    }
}

/* Weight rows [j0, j1) against x rows [0, n) at one width. */
static inline __attribute__((always_inline)) void run(const int BITS, const struct qint_w *K, int64_t j0, int64_t j1,
                                                      const uint8_t *xq, size_t ldxq, int64_t n, float *out,
                                                      int64_t ldo)
{
    if (n == 1) {
        int64_t m = j1 - j0;
        if (m * K->row_bytes >= QINT_STREAM_MIN_BYTES && K->w->ne[2] * K->w->ne[3] == 1) {
            // four streams: a tile takes rows i, q + i, 2q + i, 3q + i of the slice (the last
            // stream may be shorter: the tiles past its end have fewer rows)
            int64_t q = (m + 3) / 4;
            for (int64_t i = 0; i < q; i++) {
                int nr = 1 + (i + q < m) + (i + 2 * q < m) + (i + 3 * q < m);
                tile(BITS, 4, 1, true, K, j0 + i, q, nr, xq, ldxq, out, ldo);
            }
            return;
        }
        for (int64_t j = j0; j < j1; j += 4)
            tile(BITS, 4, 1, true, K, j, 1, j1 - j < 4 ? (int)(j1 - j) : 4, xq, ldxq, out, ldo);
        return;
    }
    if (n <= DECODE_MAX) {   // each step of 4 weight rows stays in L1 while the x tiles pass
        for (int64_t j = j0; j < j1; j += 4) {
            int nr = j1 - j < 4 ? (int)(j1 - j) : 4;
            for (int64_t i0 = 0; i0 < n; i0 += 4) {
                const uint8_t *xi = xq + (size_t)i0 * ldxq;
                float *oi = out + i0 * ldo;
                switch (n - i0 < 4 ? n - i0 : 4) {
                case 1: tile(BITS, 4, 1, true, K, j, 1, nr, xi, ldxq, oi, ldo); break;
                case 2: tile(BITS, 4, 2, true, K, j, 1, nr, xi, ldxq, oi, ldo); break;
                case 3: tile(BITS, 4, 3, true, K, j, 1, nr, xi, ldxq, oi, ldo); break;
                default: tile(BITS, 4, 4, true, K, j, 1, nr, xi, ldxq, oi, ldo); break;
                }
            }
        }
        return;
    }
    for (int64_t p0 = j0; p0 < j1; p0 += QINT_PANEL) {   // prefill: a panel in L2, every x tile through it
        int64_t p1 = p0 + QINT_PANEL < j1 ? p0 + QINT_PANEL : j1;
        for (int64_t i0 = 0; i0 < n; i0 += 4) {
            const uint8_t *xi = xq + (size_t)i0 * ldxq;
            float *oi = out + i0 * ldo;
            int nx = n - i0 < 4 ? (int)(n - i0) : 4;
            for (int64_t j = p0; j < p1; j += 2) {   // 2 rows x 4: 8-bit codes take 4 registers a row
                int nr = p1 - j < 2 ? (int)(p1 - j) : 2;
                switch (nx) {
                case 1: tile(BITS, 2, 1, false, K, j, 1, nr, xi, ldxq, oi, ldo); break;
                case 2: tile(BITS, 2, 2, false, K, j, 1, nr, xi, ldxq, oi, ldo); break;
                case 3: tile(BITS, 2, 3, false, K, j, 1, nr, xi, ldxq, oi, ldo); break;
                default: tile(BITS, 2, 4, false, K, j, 1, nr, xi, ldxq, oi, ldo); break;
                }
            }
        }
    }
}

static void run4(const struct qint_w *K, int64_t j0, int64_t j1, const uint8_t *xq, size_t ldxq, int64_t n, float *out,
                 int64_t ldo)
{
    run(4, K, j0, j1, xq, ldxq, n, out, ldo);
}

static void run8(const struct qint_w *K, int64_t j0, int64_t j1, const uint8_t *xq, size_t ldxq, int64_t n, float *out,
                 int64_t ldo)
{
    run(8, K, j0, j1, xq, ldxq, n, out, ldo);
}

void cpu_qint_avx512vnni(const struct tensor *w, int64_t j0, int64_t j1, const uint8_t *xq, size_t ldxq, int64_t n,
                         float *out, int64_t ldo)
{
    const struct qint_w K = qint_w_of(w);
    if (w->q->bits == 4) run4(&K, j0, j1, xq, ldxq, n, out, ldo);
    else run8(&K, j0, j1, xq, ldxq, n, out, ldo);
}

#elif defined(__x86_64__)
/* Built without VNNI flags (an old compiler): the portable code, never picked by qint.c. */
void cpu_qint_avx512vnni(const struct tensor *w, int64_t j0, int64_t j1, const uint8_t *xq, size_t ldxq, int64_t n,
                         float *out, int64_t ldo)
{
    cpu_qint_portable(w, j0, j1, xq, ldxq, n, out, ldo);
}
void cpu_qint_quantize_x_avx512(const float *x, int64_t k, int bits, int gs, uint8_t *dst)
{
    cpu_qint_quantize_x(x, k, bits, gs, dst);
}
#endif
