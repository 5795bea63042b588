/* qint: the x quantizer, the portable kernel (the 16-lane formula of qint.h written as loops)
 * and the ISA dispatch. See qint.h. */
#include "backend/cpu/qint.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "backend/cpu/qdeq.h"
#include "base/log.h"

bool cpu_qint_takes(const struct tensor *w)
{
    const struct qweight *q = w->q;
    if (w->dtype != DTYPE_QMLX || q->mode != QMODE_AFFINE || (q->bits != 4 && q->bits != 8)) return false;
    if (q->group_size != 32 && q->group_size != 64 && q->group_size != 128) return false;
    enum dtype dt = q->scales.dtype;
    return (dt == DTYPE_BF16 || dt == DTYPE_F16 || dt == DTYPE_F32) && q->biases.dtype == dt;
}

struct qint_geom qint_geom(int64_t k, int bits, int gs)
{
    struct qint_geom g = { .bits = bits, .gs = gs, .k = k, .n_groups = k / gs };
    g.groups_pad = (g.n_groups + QINT_LANES - 1) / QINT_LANES * QINT_LANES;
    g.block_codes = 128;
    g.k_pad = (k + g.block_codes - 1) / g.block_codes * g.block_codes;
    g.xblock_bytes = QINT_LANES * sizeof(float) + 2 * (size_t)g.block_codes;
    g.x_bytes = (size_t)g.groups_pad * sizeof(float) + (size_t)(g.k_pad / g.block_codes) * g.xblock_bytes;
    return g;
}

size_t cpu_qint_x_bytes(int64_t k, int bits, int gs) { return qint_geom(k, bits, gs).x_bytes; }

/* Where code t of a block (0 .. 127; lane L holds codes 8L .. 8L + 7) sits in the block's level
 * bytes. 4-bit: its h level at byte level4_pos(t) (byte t / 2 of the weight block holds codes t and
 * t + 1, low nibble first: the even codes' levels, then the odd ones'), its l level 128 bytes on.
 * 8-bit: v as the int16 v16_pos(t), in four runs of 32 words (what the kernels make of the code
 * bytes: the first and second 4 codes of each lane, each split into its low and high code of a
 * 16-bit pair): lane L's codes 8L, 8L + 2 in words 2L, 2L + 1 of run 0; 8L + 1, 8L + 3 in run 1;
 * 8L + 4, 8L + 6 in run 2; 8L + 5, 8L + 7 in run 3. */
static inline size_t level4_pos(int64_t t) { return (size_t)((t % 2) * 64 + t / 2); }
/* 4-bit as words (cpu_qint_quantize_x_avx2): v as the int16 w4_pos(t), in 8 runs of 16 words, four
 * a half block (codes 0-63, 64-127): a lane's 16-bit word pairs hold its codes 8L + i and 8L + 4 + i
 * in run i (0 .. 3) of its half, as the nibbles at bits 4i of the lane's two 16-bit code words. */
static inline size_t w4_pos(int64_t t)
{
    int64_t e = t % 8;
    return (size_t)(t / 64 * 64 + e % 4 * 16 + t % 64 / 8 * 2 + e / 4);
}
static inline size_t v16_pos(int64_t t)
{
    int64_t r = t % 8;
    return (size_t)((r / 4 * 2 + r % 2) * 32 + t / 8 * 2 + r % 4 / 2);
}

/* words4: 4-bit levels as v words (w4_pos) instead of h and l bytes; the scales, sums and v are
 * the same. */
static void quantize_x(const float *x, int64_t k, int bits, int gs, bool words4, uint8_t *dst)
{
    struct qint_geom g = qint_geom(k, bits, gs);
    float *xs = (float *)dst;
    int64_t per = g.block_codes / QINT_LANES;
    memset(dst, 0, g.x_bytes);
    for (int64_t c0 = 0; c0 < g.k; c0 += g.block_codes) {
        uint8_t *blk = dst + (size_t)g.groups_pad * sizeof(float) + (size_t)(c0 / g.block_codes) * g.xblock_bytes;
        float *sx = (float *)blk;
        int8_t *lv = (int8_t *)(blk + QINT_LANES * sizeof(float));
        for (int L = 0; L < QINT_LANES; L++) {
            int64_t a = c0 + L * per, b = a + per < g.k ? a + per : g.k;
            float m = 0.0f;
            bool bad = false;
            for (int64_t j = a; j < b; j++) {   // (no fmaxf: a libm call at -O2)
                float ax = fabsf(x[j]);
                m = ax > m ? ax : m;
                bad |= !(ax <= FLT_MAX);
            }
            if (bad) {   // Inf or NaN: the outputs it feeds become NaN
                sx[L] = xs[a / gs] = NAN;
                continue;
            }
            if (m < 0x1p-100f) continue;   // zero (or too small for 1 / sx): adds 0
            float inv = QINT_XMAX / m;
            int32_t sum = 0;
            sx[L] = m / QINT_XMAX;
            for (int64_t j = a; j < b; j++) {
                float r = x[j] * inv;
                int32_t v = (int32_t)(r + 0x1.8p23f - 0x1.8p23f);   // round to nearest even (|r| < 2^22)
                int32_t h = (int32_t)((uint32_t)(v + 32896) >> 8) - 128;   // floor((v + 128) / 256)
                if (bits == 8) {
                    ((int16_t *)lv)[v16_pos(j - c0)] = (int16_t)v;
                } else if (words4) {
                    ((int16_t *)lv)[w4_pos(j - c0)] = (int16_t)v;
                } else {
                    lv[level4_pos(j - c0)] = (int8_t)h;
                    lv[level4_pos(j - c0) + 128] = (int8_t)(v - 256 * h);
                }
                sum += v;
            }
            xs[a / gs] += sx[L] * (float)sum;   // the group's sum of x as quantized, lane by lane
        }
    }
}

void cpu_qint_quantize_x(const float *x, int64_t k, int bits, int gs, uint8_t *dst)
{
    quantize_x(x, k, bits, gs, false, dst);
}

void cpu_qint_quantize_x_words(const float *x, int64_t k, int bits, int gs, uint8_t *dst)
{
    quantize_x(x, k, bits, gs, true, dst);
}

/* Code c of a packed affine row (4 or 8 bits). */
static inline int code_at(const uint8_t *row, int bits, int64_t c)
{
    return bits == 8 ? row[c] : (row[c / 2] >> (4 * (c % 2))) & 0xF;
}

/* The lanes of qint.h: lane L of a block holds codes [L * per, (L + 1) * per). */
void cpu_qint_portable(const struct tensor *w, int64_t j0, int64_t j1, const uint8_t *xq, size_t ldxq, int64_t n,
                       float *out, int64_t ldo)
{
    const struct qweight *q = w->q;
    struct qint_geom g = qint_geom(w->ne[0], q->bits, q->group_size);
    int64_t per = g.block_codes / QINT_LANES;
    float s[QINT_LANES], b[QINT_LANES];
    for (int64_t j = j0; j < j1; j++) {
        const uint8_t *wr = (const uint8_t *)w->buf->data + w->offset + qint_row_off(w, w, j);
        for (int64_t i = 0; i < n; i++) {
            const uint8_t *xr = xq + (size_t)i * ldxq;
            const float *xs = (const float *)xr;
            float acc[QINT_LANES] = { 0 };
            for (int64_t g0 = 0; g0 < g.n_groups; g0 += QINT_LANES) {
                int64_t ng = g.n_groups - g0 < QINT_LANES ? g.n_groups - g0 : QINT_LANES;
                memset(s, 0, sizeof s);
                memset(b, 0, sizeof b);
                cpu_qdeq_scales(w, j, g0, ng, s, b);
                for (int L = 0; L < QINT_LANES; L++) acc[L] = fmaf(b[L], xs[g0 + L], acc[L]);
                int64_t c_end = (g0 + QINT_LANES) * g.gs < g.k_pad ? (g0 + QINT_LANES) * g.gs : g.k_pad;
                for (int64_t c0 = g0 * g.gs; c0 < c_end; c0 += g.block_codes) {
                    const uint8_t *blk = xr + (size_t)g.groups_pad * sizeof(float) +
                                         (size_t)(c0 / g.block_codes) * g.xblock_bytes;
                    const float *sx = (const float *)blk;
                    const int8_t *lv = (const int8_t *)(blk + QINT_LANES * sizeof(float));
                    for (int L = 0; L < QINT_LANES; L++) {
                        int32_t T = 0;   // sum of code * v, v = 256 h + l
                        for (int64_t e = 0; e < per && c0 + L * per + e < g.k; e++) {
                            int64_t t = L * per + e;
                            int qc = code_at(wr, q->bits, c0 + t);
                            T += qc * (q->bits == 8 ? ((const int16_t *)lv)[v16_pos(t)]
                                                    : 256 * lv[level4_pos(t)] + lv[level4_pos(t) + 128]);
                        }
                        int64_t gl = (c0 + L * per) / g.gs - g0;   // the lane's group, within the chunk
                        float d = (gl < QINT_LANES ? s[gl] : 0.0f) * sx[L];
                        acc[L] = fmaf((float)T, d, acc[L]);
                    }
                }
            }
            for (int h = QINT_LANES / 2; h >= 1; h /= 2)
                for (int L = 0; L < h; L++) acc[L] += acc[L + h];
            out[i * ldo + j] = acc[0];
        }
    }
}

#if !defined(__x86_64__)
void cpu_qint_quantize_x_avx2(const float *x, int64_t k, int bits, int gs, uint8_t *dst)
{
    cpu_qint_quantize_x(x, k, bits, gs, dst);
}
void cpu_qint_quantize_x_avx512(const float *x, int64_t k, int bits, int gs, uint8_t *dst)
{
    cpu_qint_quantize_x(x, k, bits, gs, dst);
}
void cpu_qint_avx512vnni(const struct tensor *w, int64_t j0, int64_t j1, const uint8_t *xq, size_t ldxq, int64_t n,
                         float *out, int64_t ldo)
{
    cpu_qint_portable(w, j0, j1, xq, ldxq, n, out, ldo);
}
void cpu_qint_avx2(const struct tensor *w, int64_t j0, int64_t j1, const uint8_t *xq, size_t ldxq, int64_t n,
                   float *out, int64_t ldo)
{
    cpu_qint_portable(w, j0, j1, xq, ldxq, n, out, ldo);
}
#endif

cpu_qint_quantize_fn cpu_qint_quantize_pick(const char *isa)
{
#if defined(__x86_64__)
    cpu_qint_fn f = cpu_qint_pick(isa);
    if (f == cpu_qint_avx512vnni) return cpu_qint_quantize_x_avx512;
    if (f == cpu_qint_avx2) return cpu_qint_quantize_x_avx2;
#endif
    return cpu_qint_quantize_x;
}

cpu_qint_fn cpu_qint_pick(const char *isa)
{
#if defined(__x86_64__)
    if (!strcmp(isa, "avx512") && __builtin_cpu_supports("avx512vnni")) return cpu_qint_avx512vnni;
    if (!strcmp(isa, "avx512") || !strcmp(isa, "avx2")) return cpu_qint_avx2;   // AVX-512 without VNNI
#endif
    return cpu_qint_portable;
}
