/* qint_avx2: the integer kernel of qint.h on AVX2 (and AVX-512 CPUs without VNNI), with its x
 * preparation. Compiled with the Makefile's AVX2 flags.
 *
 * The 16 lanes of qint.h are two 8-lane halves (a block's codes 0-63 and 64-127). The int32
 * lane sums are exact, so they equal the other kernels' and the float formula gives the same bits.
 * Both widths multiply code words by v words with vpmaddwd, 4 of them a half block (64 products):
 * 4-bit: the nibbles at bits 0, 4, 8, 12 of each 16-bit word of the packed codes (shift + mask),
 * against x prepared with v as words in that order (cpu_qint_quantize_x_avx2; qint.c: w4_pos).
 * That is 4 multiplies where the h / l byte levels that VNNI's vpdpbusd takes needed 6 (4
 * vpmaddubsw, 2 vpmaddwd to widen them; Zen 3, one core, [3072, 1024] in L2: 10 -> 14.6 GB/s).
 * 8-bit: each lane's first and last 4 codes gathered (vshufps + vpermq), split into the low and
 * high bytes of their 16-bit pairs (vpmaddubsw would saturate: 255 * 127 * 2).
 * Decode (n = 1): 4 weight rows a tile, row by row inside each half block, so only the 8
 * accumulators stay in registers (4 rows with all their code words live spilled: 2x slower);
 * groups of 64 or more codes give a half block one scale, broadcast; the bytes QINT_AHEAD rows
 * on are prefetched (both lines of an 8-bit block); an lm_head-sized slice is walked as four
 * streams as in qint_avx512_vnni.c. Else 2 x 2 tiles, prefill in panels of QINT_PANEL rows.
 */
#include "backend/cpu/qint.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#include <float.h>
#include <string.h>

#include "tensor/dtype.h"

#define QINT_AHEAD 8
#define QINT_PANEL 64
#define DECODE_MAX 8

/* 8 scales (f16 / bf16 / f32) from 8 * ssize bytes at p. */
static inline __m256 scales8(enum dtype dt, const uint8_t *p)
{
    if (dt == DTYPE_BF16)
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
    if (dt == DTYPE_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
    return _mm256_loadu_ps((const float *)p);
}

/* Groups [g0, g0 + ng) of a scale row as two halves; a partial chunk is copied first (never past
 * the row's end). */
static inline void scales16(const struct qint_w *K, const uint8_t *p, int64_t g0, int64_t ng, __m256 out[2])
{
    _Alignas(32) uint8_t buf[64];
    const uint8_t *src = p + g0 * K->ssize;
    if (ng < 16) {
        memset(buf, 0, sizeof buf);
        memcpy(buf, src, (size_t)(ng * K->ssize));
        src = buf;
    }
    out[0] = scales8(K->sdt, src);
    out[1] = scales8(K->sdt, src + 8 * K->ssize);
}

static inline float hsum16(__m256 lo, __m256 hi)
{
    __m256 a = _mm256_add_ps(lo, hi);
    __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
    return _mm_cvtss_f32(_mm_add_ss(c, _mm_movehdup_ps(c)));
}

/* Lanes of a 16-entry table (two halves) picked by idx (0 .. 15). */
static inline __m256 pick16(const __m256 t[2], __m256i idx)
{
    __m256 hi = _mm256_castsi256_ps(_mm256_cmpgt_epi32(idx, _mm256_set1_epi32(7)));
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(t[0], idx), _mm256_permutevar8x32_ps(t[1], idx), hi);
}

/* The code words of half h (codes 64h .. 64h + 63) of a block at wb, in the order of the x runs:
 * 4-bit: the nibbles at bits 4i of each 16-bit word (lane L's codes 8L + i and 8L + 4 + i);
 * 8-bit: dwords 0, 2, 4, 6 of the half's 64 bytes, then 1, 3, 5, 7, each split into the low and
 * high code of its 16-bit pairs. */
/* A row's bytes of the chunk at byte off: in place, or (part: the row ends inside the chunk) its
 * last bytes copied into tail, zero-padded to the chunk's 128 bytes. */
static inline const uint8_t *chunk_bytes(const uint8_t *row, size_t off, bool part, size_t row_bytes, uint8_t tail[128])
{
    if (!part) return row + off;
    memset(tail, 0, 128);
    memcpy(tail, row + off, row_bytes - off);
    return tail;
}

static inline __attribute__((always_inline)) void code_words(const int BITS, const uint8_t *wb, int h, __m256i c[4])
{
    if (BITS == 4) {
        const __m256i nib = _mm256_set1_epi16(0x0F);
        __m256i v = _mm256_loadu_si256((const __m256i *)(wb + 32 * h));
        c[0] = _mm256_and_si256(v, nib);
        c[1] = _mm256_and_si256(_mm256_srli_epi16(v, 4), nib);
        c[2] = _mm256_and_si256(_mm256_srli_epi16(v, 8), nib);
        c[3] = _mm256_srli_epi16(v, 12);
    } else {
        __m256 a = _mm256_loadu_ps((const float *)(wb + 64 * h));
        __m256 b = _mm256_loadu_ps((const float *)(wb + 64 * h + 32));
        __m256i first = _mm256_permute4x64_epi64(_mm256_castps_si256(_mm256_shuffle_ps(a, b, 0x88)), 0xD8);
        __m256i last = _mm256_permute4x64_epi64(_mm256_castps_si256(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8);
        c[0] = _mm256_and_si256(first, _mm256_set1_epi16(0xFF));
        c[1] = _mm256_srli_epi16(first, 8);
        c[2] = _mm256_and_si256(last, _mm256_set1_epi16(0xFF));
        c[3] = _mm256_srli_epi16(last, 8);
    }
}

/* The x runs of half h of the block at blk (its 16 lane scales, then the v words). */
static inline const uint8_t *x_runs(const int BITS, const uint8_t *blk, int h)
{
    return blk + 64 + (BITS == 4 ? 128 : 32) * h;
}

/* T of the half's 8 lanes: code words times v words, exact in int32. */
static inline __attribute__((always_inline)) __m256i dot_half(const int BITS, const __m256i c[4], const uint8_t *xb)
{
    const size_t run = BITS == 4 ? 32 : 64;
    __m256i t0 = _mm256_add_epi32(_mm256_madd_epi16(c[0], _mm256_loadu_si256((const __m256i *)xb)),
                                  _mm256_madd_epi16(c[1], _mm256_loadu_si256((const __m256i *)(xb + run))));
    __m256i t1 = _mm256_add_epi32(_mm256_madd_epi16(c[2], _mm256_loadu_si256((const __m256i *)(xb + 2 * run))),
                                  _mm256_madd_epi16(c[3], _mm256_loadu_si256((const __m256i *)(xb + 3 * run))));
    return _mm256_add_epi32(t0, t1);
}

/* Decode (one x row): weight rows j, j + stride, .. (nr of them, at most 4), row by row inside
 * each half block so that only the 8 accumulators stay in registers. BCAST: groups of 64 or more
 * codes, so a half block has one scale (broadcast), else each lane's is picked from the chunk's 16. */
static inline __attribute__((always_inline)) void gemv_tile(const int BITS, const bool BCAST, const struct qint_w *K,
                                                            int64_t j, int64_t stride, int nr, const uint8_t *xq,
                                                            float *out)
{
    const struct tensor *w = K->w;
    const struct qint_geom *g = &K->g;
    const int64_t BC = 128;   // codes a block
    const uint8_t *wr[4], *sp[4], *bp[4];
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
        int64_t row = j + (r < nr ? r : 0) * stride;
        wr[r] = K->wbase + qint_row_off(w, w, row);
        sp[r] = K->sbase + qint_row_off(&w->q->scales, w, row);
        bp[r] = K->bbase + qint_row_off(&w->q->biases, w, row);
        acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    }
    const __m128i gsh = _mm_cvtsi32_si128(K->gshift);
    const size_t blk_off = (size_t)g->groups_pad * sizeof(float);
    const size_t ahead = QINT_AHEAD * w->nb[1];
    for (int64_t g0 = 0; g0 < g->n_groups; g0 += 16) {
        int64_t ng = g->n_groups - g0 < 16 ? g->n_groups - g0 : 16;
        _Alignas(32) float s_chunk[4][16];
        __m256 s16[4][2];
        const float *xs = (const float *)xq + g0;
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) {
            __m256 b16[2];
            scales16(K, sp[r], g0, ng, s16[r]);
            scales16(K, bp[r], g0, ng, b16);
            if (BCAST) {
                _mm256_store_ps(s_chunk[r], s16[r][0]);
                _mm256_store_ps(s_chunk[r] + 8, s16[r][1]);
            }
            acc[r][0] = _mm256_fmadd_ps(b16[0], _mm256_loadu_ps(xs), acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(b16[1], _mm256_loadu_ps(xs + 8), acc[r][1]);
        }
        int64_t c_end = (g0 + 16) * g->gs < g->k_pad ? (g0 + 16) * g->gs : g->k_pad;
        for (int64_t c0 = g0 * g->gs; c0 < c_end; c0 += BC) {
            bool part = c0 + BC > g->k;
            _Alignas(32) uint8_t tailbuf[4][128];
            const uint8_t *wb[4];
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                const char *next = (const char *)wr[r] + c0 * BITS / 8 + ahead;
                _mm_prefetch(next, _MM_HINT_T0);
                if (BITS == 8) _mm_prefetch(next + 64, _MM_HINT_T0);   // a block's second line
                wb[r] = chunk_bytes(wr[r], (size_t)(c0 * BITS / 8), part, (size_t)K->row_bytes, tailbuf[r]);
            }
            const uint8_t *blk = xq + blk_off + (size_t)(c0 / BC) * g->xblock_bytes;
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                const uint8_t *xb = x_runs(BITS, blk, h);
                __m256 sxl = _mm256_loadu_ps((const float *)blk + 8 * h);
                int64_t cg = c0 - g0 * g->gs + 64 * h;   // the half's first code, within the chunk
                __m256i idx = _mm256_srl_epi32(
                    _mm256_add_epi32(_mm256_set1_epi32((int)cg), _mm256_setr_epi32(0, 8, 16, 24, 32, 40, 48, 56)), gsh);
#pragma GCC unroll 4
                for (int r = 0; r < 4; r++) {
                    __m256i c[4];
                    code_words(BITS, wb[r], h, c);
                    __m256 sl = BCAST ? _mm256_broadcast_ss(&s_chunk[r][cg >> K->gshift]) : pick16(s16[r], idx);
                    acc[r][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_half(BITS, c, xb)), _mm256_mul_ps(sl, sxl),
                                                acc[r][h]);
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)   // constant indices: acc stays in registers
        if (r < nr) out[j + r * stride] = hsum16(acc[r][0], acc[r][1]);
}

/* Weight rows [j0, j1) against one x row. A slice of QINT_STREAM_MIN_BYTES or more (an lm_head's)
 * is walked as four sequential streams, a tile's rows a quarter of the slice apart, as in
 * qint_avx512_vnni.c (the hardware prefetcher follows each stream). */
static inline __attribute__((always_inline)) void gemv(const int BITS, const bool BCAST, const struct qint_w *K,
                                                       int64_t j0, int64_t j1, const uint8_t *xq, float *out)
{
    int64_t m = j1 - j0;
    if (m * K->row_bytes >= QINT_STREAM_MIN_BYTES && K->w->ne[2] * K->w->ne[3] == 1) {
        int64_t q = (m + 3) / 4;   // the last stream may be shorter: its tiles past the end have fewer rows
        for (int64_t i = 0; i < q; i++)
            gemv_tile(BITS, BCAST, K, j0 + i, q, 1 + (i + q < m) + (i + 2 * q < m) + (i + 3 * q < m), xq, out);
        return;
    }
    for (int64_t j = j0; j < j1; j += 4) gemv_tile(BITS, BCAST, K, j, 1, j1 - j < 4 ? (int)(j1 - j) : 4, xq, out);
}

/* Prefill and small batches: R weight rows x NX x rows (2 x 2), each row's code words made once
 * a half block and used for every x row. */
static inline __attribute__((always_inline)) void tile(const int BITS, const int R, const int NX,
                                                       const struct qint_w *K, int64_t j, int nr, const uint8_t *xq,
                                                       size_t ldxq, float *out, int64_t ldo)
{
    const struct tensor *w = K->w;
    const struct qint_geom *g = &K->g;
    const int64_t BC = 128;   // codes a block
    const uint8_t *wr[2], *sp[2], *bp[2];
    __m256 acc[2][2][2];
#pragma GCC unroll 2
    for (int r = 0; r < R; r++) {
        int64_t row = j + (r < nr ? r : 0);
        wr[r] = K->wbase + qint_row_off(w, w, row);
        sp[r] = K->sbase + qint_row_off(&w->q->scales, w, row);
        bp[r] = K->bbase + qint_row_off(&w->q->biases, w, row);
#pragma GCC unroll 2
        for (int i = 0; i < NX; i++) acc[i][r][0] = acc[i][r][1] = _mm256_setzero_ps();
    }
    const __m128i gsh = _mm_cvtsi32_si128(K->gshift);
    const size_t blk_off = (size_t)g->groups_pad * sizeof(float);
    for (int64_t g0 = 0; g0 < g->n_groups; g0 += 16) {
        int64_t ng = g->n_groups - g0 < 16 ? g->n_groups - g0 : 16;
        __m256 s16[2][2];
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            __m256 b16[2];
            scales16(K, sp[r], g0, ng, s16[r]);
            scales16(K, bp[r], g0, ng, b16);
#pragma GCC unroll 2
            for (int i = 0; i < NX; i++) {
                const float *xs = (const float *)(xq + (size_t)i * ldxq) + g0;
#pragma GCC unroll 2
                for (int h = 0; h < 2; h++)
                    acc[i][r][h] = _mm256_fmadd_ps(b16[h], _mm256_loadu_ps(xs + 8 * h), acc[i][r][h]);
            }
        }
        int64_t c_end = (g0 + 16) * g->gs < g->k_pad ? (g0 + 16) * g->gs : g->k_pad;
        for (int64_t c0 = g0 * g->gs; c0 < c_end; c0 += BC) {
            bool part = c0 + BC > g->k;
            _Alignas(32) uint8_t tailbuf[2][128];
            const uint8_t *wb[2];
#pragma GCC unroll 2
            for (int r = 0; r < R; r++)
                wb[r] = chunk_bytes(wr[r], (size_t)(c0 * BITS / 8), part, (size_t)K->row_bytes, tailbuf[r]);
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                __m256i idx = _mm256_srl_epi32(_mm256_add_epi32(_mm256_set1_epi32((int)(c0 - g0 * g->gs + 64 * h)),
                                                                _mm256_setr_epi32(0, 8, 16, 24, 32, 40, 48, 56)),
                                               gsh);   // each lane's group within the chunk
                __m256 sl[2];
                __m256i c[2][4];
#pragma GCC unroll 2
                for (int r = 0; r < R; r++) {
                    code_words(BITS, wb[r], h, c[r]);
                    sl[r] = pick16(s16[r], idx);
                }
#pragma GCC unroll 2
                for (int i = 0; i < NX; i++) {
                    const uint8_t *blk = xq + (size_t)i * ldxq + blk_off + (size_t)(c0 / BC) * g->xblock_bytes;
                    const uint8_t *xb = x_runs(BITS, blk, h);
                    __m256 sxl = _mm256_loadu_ps((const float *)blk + 8 * h);
#pragma GCC unroll 2
                    for (int r = 0; r < R; r++)
                        acc[i][r][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_half(BITS, c[r], xb)),
                                                       _mm256_mul_ps(sl[r], sxl), acc[i][r][h]);
                }
            }
        }
    }
#pragma GCC unroll 2
    for (int i = 0; i < NX; i++)
#pragma GCC unroll 2
        for (int r = 0; r < R; r++)   // constant indices: acc stays in registers
            if (r < nr) out[i * ldo + j + r] = hsum16(acc[i][r][0], acc[i][r][1]);
}

static inline __attribute__((always_inline)) void run(const int BITS, const struct qint_w *K, int64_t j0, int64_t j1,
                                                      const uint8_t *xq, size_t ldxq, int64_t n, float *out,
                                                      int64_t ldo)
{
    if (n == 1) {
        if (K->g.gs >= 64) gemv(BITS, true, K, j0, j1, xq, out);
        else gemv(BITS, false, K, j0, j1, xq, out);
        return;
    }
    bool decode = n <= DECODE_MAX;
    int64_t panel = decode ? 2 : QINT_PANEL;   // decode: 2 weight rows stay in L1 while x passes
    for (int64_t p0 = j0; p0 < j1; p0 += panel) {
        int64_t p1 = p0 + panel < j1 ? p0 + panel : j1;
        for (int64_t i0 = 0; i0 < n; i0 += 2) {
            const uint8_t *xi = xq + (size_t)i0 * ldxq;
            float *oi = out + i0 * ldo;
            for (int64_t j = p0; j < p1; j += 2) {
                int nr = p1 - j < 2 ? (int)(p1 - j) : 2;
                if (n - i0 == 1) tile(BITS, 2, 1, K, j, nr, xi, ldxq, oi, ldo);
                else tile(BITS, 2, 2, K, j, nr, xi, ldxq, oi, ldo);
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

/* ==== x preparation ==== */

/* cpu_qint_quantize_x_words a lane (8 values) a step: the same IEEE operations (max, divide,
 * multiply, round to nearest even), so the same bytes; rows with Inf / NaN or a partial last
 * block take the portable loops. */
void cpu_qint_quantize_x_avx2(const float *x, int64_t k, int bits, int gs, uint8_t *dst)
{
    struct qint_geom g = qint_geom(k, bits, gs);
    const __m256 fmax = _mm256_set1_ps(FLT_MAX), absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 bad = _mm256_setzero_ps();
    for (int64_t j = 0; j + 8 <= k; j += 8)
        bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_and_ps(_mm256_loadu_ps(x + j), absm), fmax, _CMP_NLE_UQ));
    if (k % g.block_codes || !_mm256_testz_ps(bad, bad)) {
        cpu_qint_quantize_x_words(x, k, bits, gs, dst);
        return;
    }
    // where a lane's (v_e, v_e') int16 pairs go: 4-bit (w4_pos): (v_e, v_e+4) to dword e * 8 + L of its
    // half; 8-bit (v16_pos): (v0, v2), (v1, v3), (v4, v6), (v5, v7) to dword 16 run + L
    const __m256i order = bits == 8 ? _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7) : _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const int run_dwords = bits == 8 ? 16 : 8;
    float *xs = (float *)dst;
    memset(xs, 0, (size_t)g.groups_pad * sizeof(float));
    for (int64_t c0 = 0; c0 < k; c0 += g.block_codes) {
        uint8_t *blk = dst + (size_t)g.groups_pad * sizeof(float) + (size_t)(c0 / g.block_codes) * g.xblock_bytes;
        float *sxl = (float *)blk;
        int32_t *lv = (int32_t *)(blk + 64);
        for (int L = 0; L < QINT_LANES; L++) {
            __m256 xv = _mm256_loadu_ps(x + c0 + 8 * L);
            __m256 m = _mm256_and_ps(xv, absm);   // max is exact: any tree gives the loops' value
            m = _mm256_max_ps(m, _mm256_permute_ps(m, 0xB1));
            m = _mm256_max_ps(m, _mm256_permute_ps(m, 0x4E));
            m = _mm256_max_ps(m, _mm256_permute2f128_ps(m, m, 0x01));
            float mf = _mm256_cvtss_f32(m);
            int32_t *d = lv + (bits == 8 ? L : L / 8 * 32 + L % 8);
            if (mf < 0x1p-100f) {   // zero (or too small for 1 / sx): adds 0
                sxl[L] = 0.0f;
                for (int e = 0; e < 4; e++) d[e * run_dwords] = 0;
                continue;
            }
            __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(xv, _mm256_div_ps(_mm256_set1_ps(QINT_XMAX), m)));
            __m256i p = _mm256_permutevar8x32_epi32(v, order);
            __m128i w = _mm_or_si128(_mm_and_si128(_mm256_castsi256_si128(p), _mm_set1_epi32(0xFFFF)),
                                     _mm_slli_epi32(_mm256_extracti128_si256(p, 1), 16));
            d[0] = _mm_cvtsi128_si32(w);
            d[run_dwords] = _mm_extract_epi32(w, 1);
            d[2 * run_dwords] = _mm_extract_epi32(w, 2);
            d[3 * run_dwords] = _mm_extract_epi32(w, 3);
            __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
            sxl[L] = mf / QINT_XMAX;
            xs[(c0 + 8 * L) / gs] += sxl[L] * (float)_mm_cvtsi128_si32(s4);
        }
    }
}

void cpu_qint_avx2(const struct tensor *w, int64_t j0, int64_t j1, const uint8_t *xq, size_t ldxq, int64_t n,
                   float *out, int64_t ldo)
{
    const struct qint_w K = qint_w_of(w);
    if (w->q->bits == 4) run4(&K, j0, j1, xq, ldxq, n, out, ldo);
    else run8(&K, j0, j1, xq, ldxq, n, out, ldo);
}

#elif defined(__x86_64__)
void cpu_qint_quantize_x_avx2(const float *x, int64_t k, int bits, int gs, uint8_t *dst)
{
    cpu_qint_quantize_x(x, k, bits, gs, dst);
}

void cpu_qint_avx2(const struct tensor *w, int64_t j0, int64_t j1, const uint8_t *xq, size_t ldxq, int64_t n,
                   float *out, int64_t ldo)
{
    cpu_qint_portable(w, j0, j1, xq, ldxq, n, out, ldo);
}
#endif
