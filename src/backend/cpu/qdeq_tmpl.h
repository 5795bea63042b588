/* qdeq_tmpl: the SIMD dequantizers and the fused decode GEMV, written once over a small vector
 * vocabulary, for qdeq_avx2.c and qdeq_avx512.c (as kern_tmpl.h is for the kernel families).
 * The including file defines QGEMV_ENTRY, QDEQ_ENTRY and QDEQ_NAME(x), and, when its ISA is
 * compiled in, QDEQ_ISA after including simd_x86.h (VEC / VECI of VLANES lanes, v_fma, v_mul,
 * v_bcast, v_st, v_ldx, v_hsum: the kernel family's own horizontal sum tree, v_splat_i32,
 * v_srlv_i32, v_cvt_i32) and its integer words: q_splat_words(p): VLANES/8 words, each repeated
 * 8 times; q_shifts4(): 0, 4, ..., 28 per word; q_shifts2(): 0, 2, ...; q_and(VECI, mask);
 * q_bytes(p): VLANES bytes zero-extended; q_lut16(codes): E2M1 values; q_codes8(v[VLANES/8],
 * bits): the 8 codes of each 64-bit window v[h] (code i at bit i * bits); q_ld16(p): VLANES
 * 16-bit values; QGEMV_ROWS: the weight rows a GEMV step runs at once (independent accumulator
 * chains, to hide the FMA latency, as many as the registers hold); optionally QDEQ_PERM16 with
 * q_perm16 / q_iota16 / q_e2m1_16 / q_nibbles (16-entry tables, see gemv_rows). Without
 * QDEQ_ISA the entries fall back (no GEMV; the portable row dequantizer).
 * The GEMV computes each dot product with the family tile's operation sequence (kern.h): lane
 * accumulators over k in VLANES chunks, one FMA per chunk with the exactly dequantized chunk, then
 * v_hsum, so it equals the GEMM on the dequantized panel bit for bit (batch invariance).
 * Each group's values are scale * code + bias (affine) or scale * e2m1(code), exact (see qdeq.h).
 */
#ifdef QDEQ_ISA

static void QDEQ_NAME(affine4)(const uint32_t *wr, const float *s, const float *b, int64_t n, int gs, float *dst)
{
    // VLANES codes per step: VLANES/8 words, each word's 8 nibbles low first
    for (int64_t k = 0; k < n; k += VLANES) {
        int64_t g = k / gs;
        VECI c = q_and(v_srlv_i32(q_splat_words(wr + k / 8), q_shifts4()), 0xF);
        v_st(dst + k, v_fma(v_cvt_i32(c), v_bcast(s[g]), v_bcast(b[g])));
    }
}

static void QDEQ_NAME(affine8)(const uint32_t *wr, const float *s, const float *b, int64_t n, int gs, float *dst)
{
    const uint8_t *p = (const uint8_t *)wr;
    for (int64_t k = 0; k < n; k += VLANES) {
        int64_t g = k / gs;
        v_st(dst + k, v_fma(v_cvt_i32(q_bytes(p + k)), v_bcast(s[g]), v_bcast(b[g])));
    }
}

static void QDEQ_NAME(affine2)(const uint32_t *wr, const float *s, const float *b, int64_t n, int gs, float *dst)
{
    for (int64_t k = 0; k < n; k += VLANES) {
        int64_t g = k / gs;
        VECI c = q_and(v_srlv_i32(v_splat_i32(wr[k / 16] >> (2 * (k % 16))), q_shifts2()), 0x3);
        v_st(dst + k, v_fma(v_cvt_i32(c), v_bcast(s[g]), v_bcast(b[g])));
    }
}

/* 3, 5, 6 bits: 8 codes fill `bits` whole bytes (the stream is byte-aligned every 8 codes). */
static inline __attribute__((always_inline)) VECI QDEQ_NAME(odd_codes)(const uint32_t *wr, int64_t k, int bits)
{
    const uint8_t *p = (const uint8_t *)wr + k / 8 * bits;
    uint64_t v[VLANES / 8];
    for (int h = 0; h < VLANES / 8; h++) {
        v[h] = 0;
        memcpy(&v[h], p + h * bits, (size_t)bits);   // never past the row's last byte
    }
    return q_and(q_codes8(v, bits), (1 << bits) - 1);
}

static void QDEQ_NAME(affine_odd)(const uint32_t *wr, const float *s, const float *b, int64_t n, int gs, int bits,
                                  float *dst)
{
    for (int64_t k = 0; k < n; k += VLANES) {
        int64_t g = k / gs;
        v_st(dst + k, v_fma(v_cvt_i32(QDEQ_NAME(odd_codes)(wr, k, bits)), v_bcast(s[g]), v_bcast(b[g])));
    }
}

static void QDEQ_NAME(e2m1)(const uint32_t *wr, const float *s, int64_t n, int gs, float *dst)
{
    for (int64_t k = 0; k < n; k += VLANES) {
        int64_t g = k / gs;
        VECI c = q_and(v_srlv_i32(q_splat_words(wr + k / 8), q_shifts4()), 0xF);
        v_st(dst + k, v_mul(q_lut16(c), v_bcast(s[g])));
    }
}

void QDEQ_ENTRY(const struct tensor *w, int64_t row, float *dst)
{
    const struct qweight *q = w->q;
    int64_t n = w->ne[0];
    int gs = q->group_size;
    bool fast = n % VLANES == 0 && gs % VLANES == 0 && q->mode != QMODE_MXFP8;
    if (!fast) {
        qweight_dequant_row(w, row, dst);
        return;
    }
    float s[8192 / 16], b[8192 / 16];   // scales of up to 8192 groups on the stack, in chunks
    const uint32_t *wr = (const uint32_t *)((const char *)w->buf->data + w->offset);
    int64_t i1 = row % w->ne[1], rest = row / w->ne[1];
    wr = (const uint32_t *)((const char *)wr + (size_t)i1 * w->nb[1] + (size_t)(rest % w->ne[2]) * w->nb[2] +
                            (size_t)(rest / w->ne[2]) * w->nb[3]);
    int64_t n_groups = n / gs, chunk = (int64_t)(sizeof s / sizeof s[0]);
    for (int64_t g0 = 0; g0 < n_groups; g0 += chunk) {
        int64_t ng = n_groups - g0 < chunk ? n_groups - g0 : chunk;
        cpu_qdeq_scales(w, row, g0, ng, s, b);
        int64_t k0 = g0 * gs, nk = ng * gs;
        const uint32_t *wk = wr + k0 * q->bits / 32;
        if (q->mode != QMODE_AFFINE) QDEQ_NAME(e2m1)(wk, s, nk, gs, dst + k0);
        else if (q->bits == 4) QDEQ_NAME(affine4)(wk, s, b, nk, gs, dst + k0);
        else if (q->bits == 8) QDEQ_NAME(affine8)(wk, s, b, nk, gs, dst + k0);
        else if (q->bits == 2) QDEQ_NAME(affine2)(wk, s, b, nk, gs, dst + k0);
        else QDEQ_NAME(affine_odd)((const uint32_t *)((const uint8_t *)wr + k0 / 8 * q->bits), s, b, nk, gs, q->bits,
                                   dst + k0);
    }
}

/* ==== Fused decode GEMV ==== */

enum { QK_AFFINE4, QK_AFFINE8, QK_AFFINE2, QK_AFFINE3, QK_AFFINE5, QK_AFFINE6, QK_E2M1, QK_NONE };

static int QDEQ_NAME(kind)(const struct tensor *w)
{
    const struct qweight *q = w->q;
    if (w->ne[0] % VLANES || q->group_size % VLANES) return QK_NONE;
    if (q->mode == QMODE_MXFP4 || q->mode == QMODE_NVFP4) return QK_E2M1;
    if (q->mode != QMODE_AFFINE) return QK_NONE;
    switch (q->bits) {
    case 2: return QK_AFFINE2;
    case 3: return QK_AFFINE3;
    case 4: return QK_AFFINE4;
    case 5: return QK_AFFINE5;
    case 6: return QK_AFFINE6;
    case 8: return QK_AFFINE8;
    }
    return QK_NONE;
}

/* Values k .. k + VLANES - 1 of a row, exactly as the dequantizers above compute them. */
static inline __attribute__((always_inline)) VEC QDEQ_NAME(chunk)(int kind, const uint32_t *wr, int64_t k, VEC s, VEC b)
{
    switch (kind) {
    case QK_AFFINE4: return v_fma(v_cvt_i32(q_and(v_srlv_i32(q_splat_words(wr + k / 8), q_shifts4()), 0xF)), s, b);
    case QK_AFFINE8: return v_fma(v_cvt_i32(q_bytes((const uint8_t *)wr + k)), s, b);
    case QK_AFFINE2:
        return v_fma(v_cvt_i32(q_and(v_srlv_i32(v_splat_i32(wr[k / 16] >> (2 * (k % 16))), q_shifts2()), 0x3)), s, b);
    case QK_AFFINE3: return v_fma(v_cvt_i32(QDEQ_NAME(odd_codes)(wr, k, 3)), s, b);
    case QK_AFFINE5: return v_fma(v_cvt_i32(QDEQ_NAME(odd_codes)(wr, k, 5)), s, b);
    case QK_AFFINE6: return v_fma(v_cvt_i32(QDEQ_NAME(odd_codes)(wr, k, 6)), s, b);
    default: return v_mul(q_lut16(q_and(v_srlv_i32(q_splat_words(wr + k / 8), q_shifts4()), 0xF)), s);
    }
}

/* Byte offset of row `row` of t, a tensor with w's rows (the packed words, scales or biases). */
static inline size_t QDEQ_NAME(row_off)(const struct tensor *t, const struct tensor *w, int64_t row)
{
    if (w->ne[2] * w->ne[3] == 1) return (size_t)row * t->nb[1];   // 2-D: no divisions (they cost)
    int64_t i1 = row % w->ne[1], rest = row / w->ne[1];
    return (size_t)i1 * t->nb[1] + (size_t)(rest % w->ne[2]) * t->nb[2] + (size_t)(rest / w->ne[2]) * t->nb[3];
}

/* Prefetch distance of the GEMV, in weight rows: the same bytes of the rows two steps on. */
#define QGEMV_AHEAD 8

/* Scales and biases (0 for the fp modes) of groups [g0, g0 + ng) of weight rows j ..
 * j + rows - 1 (rows past nr repeat row j): row r's group g0 + g at s[r * ng + g]. 16-bit
 * affine scales go through vector converts (exact), in one run when the rows' scales are
 * adjacent, and the same bytes QGEMV_AHEAD rows on are prefetched; anything else through
 * cpu_qdeq_scales. */
static void QDEQ_NAME(scales_rows)(const struct tensor *w, int64_t j, int rows, int nr, int64_t g0, int64_t ng,
                                   float *s, float *b)
{
    const struct qweight *q = w->q;
    enum dtype dt = q->scales.dtype;
    if (q->mode != QMODE_AFFINE || (dt != DTYPE_BF16 && dt != DTYPE_F16) || q->biases.dtype != dt) {
        for (int r = 0; r < rows; r++) cpu_qdeq_scales(w, j + (r < nr ? r : 0), g0, ng, s + r * ng, b + r * ng);
        return;
    }
    const struct tensor *t[2] = { &q->scales, &q->biases };
    float *dst[2] = { s, b };
    int64_t n_groups = w->ne[0] / q->group_size;
    for (int h = 0; h < 2; h++) {
        bool run = nr == rows && ng == n_groups && w->ne[2] * w->ne[3] == 1 && t[h]->nb[1] == (size_t)ng * 2;
        int64_t len = run ? rows * ng : ng;
        for (int r = 0; r < (run ? 1 : rows); r++) {
            const uint16_t *p = (const uint16_t *)((const char *)t[h]->buf->data + t[h]->offset +
                                                   QDEQ_NAME(row_off)(t[h], w, j + (r < nr ? r : 0))) + g0;
            for (int64_t off = 0; off < len * 2; off += 64)
                _mm_prefetch((const char *)p + QGEMV_AHEAD * t[h]->nb[1] + off, _MM_HINT_T0);
            float *d = dst[h] + r * ng;
            int64_t i = 0;
            for (; i + VLANES <= len; i += VLANES) v_st(d + i, v_cvt16(dt, q_ld16(p + i)));
            for (; i < len; i++) d[i] = dt == DTYPE_BF16 ? bf16_to_f32(p[i]) : f16_to_f32(p[i]);
        }
    }
}

/* R weight rows (j ..; rows past nr repeat row j and are not stored) against NX rows of x (R,
 * NX and kind constants after inlining): one accumulator chain per (x row, weight row), as the
 * tile's, held in registers; each weight chunk is dequantized once for the NX x rows. The scales
 * are decoded ahead of the groups (scales_rows); with a 16-entry register table (QDEQ_PERM16) a
 * 4-bit group's 16 possible values are computed once per row (the same fma / mul the
 * dequantizer does per value, so the same bits) and each chunk's values are one permute of its
 * codes. */
static inline __attribute__((always_inline)) void QDEQ_NAME(gemv_tile)(const int kind, const int R, const int NX,
                                                                        const struct tensor *w, int64_t j, int nr,
                                                                        const float *x, int64_t ldx, float *out,
                                                                        int64_t ldo)
{
    enum { RMAX = QGEMV_ROWS, CH = 128 };
    const struct qweight *q = w->q;
    int64_t k = w->ne[0], gs = q->group_size, n_groups = k / gs;
    float s[RMAX * CH], b[RMAX * CH];
    const uint8_t *wr[RMAX];
    VEC acc[QGEMV_XROWS][RMAX];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        wr[r] = (const uint8_t *)w->buf->data + w->offset + QDEQ_NAME(row_off)(w, w, j + (r < nr ? r : 0));
#pragma GCC unroll 4
        for (int i = 0; i < NX; i++) acc[i][r] = v_bcast(0.0f);
    }
    size_t ahead = QGEMV_AHEAD * w->nb[1];
    for (int64_t g0 = 0; g0 < n_groups; g0 += CH) {
        int64_t ng = n_groups - g0 < CH ? n_groups - g0 : CH;
        QDEQ_NAME(scales_rows)(w, j, R, nr, g0, ng, s, b);
        for (int64_t g = 0; g < ng; g++) {
            int64_t kk0 = (g0 + g) * gs;
#pragma GCC unroll 8
            for (int r = 0; r < R; r++)   // the same group QGEMV_AHEAD rows on
                _mm_prefetch((const char *)wr[r] + ahead + kk0 * q->bits / 8, _MM_HINT_T0);
#ifdef QDEQ_PERM16
            if (kind == QK_AFFINE4 || kind == QK_E2M1) {
                VEC t[RMAX];
#pragma GCC unroll 8
                for (int r = 0; r < R; r++)
                    t[r] = kind == QK_AFFINE4 ? v_fma(q_iota16(), v_bcast(s[r * ng + g]), v_bcast(b[r * ng + g]))
                                              : v_mul(q_e2m1_16(), v_bcast(s[r * ng + g]));
                for (int64_t kk = kk0; kk < kk0 + gs; kk += VLANES) {
                    VEC wv[RMAX];
#pragma GCC unroll 8
                    for (int r = 0; r < R; r++) wv[r] = q_perm16(q_nibbles(wr[r] + kk / 2), t[r]);
#pragma GCC unroll 4
                    for (int i = 0; i < NX; i++) {
                        VEC xv = v_ldx(x + i * ldx + kk);
#pragma GCC unroll 8
                        for (int r = 0; r < R; r++) acc[i][r] = v_fma(xv, wv[r], acc[i][r]);
                    }
                }
                continue;
            }
#endif
            VEC sv[RMAX], bv[RMAX];
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                sv[r] = v_bcast(s[r * ng + g]);
                bv[r] = v_bcast(b[r * ng + g]);
            }
            for (int64_t kk = kk0; kk < kk0 + gs; kk += VLANES) {
                VEC wv[RMAX];
#pragma GCC unroll 8
                for (int r = 0; r < R; r++) wv[r] = QDEQ_NAME(chunk)(kind, (const uint32_t *)wr[r], kk, sv[r], bv[r]);
#pragma GCC unroll 4
                for (int i = 0; i < NX; i++) {
                    VEC xv = v_ldx(x + i * ldx + kk);
#pragma GCC unroll 8
                    for (int r = 0; r < R; r++) acc[i][r] = v_fma(xv, wv[r], acc[i][r]);
                }
            }
        }
    }
    for (int i = 0; i < NX; i++)
        for (int r = 0; r < nr; r++) out[i * ldo + j + r] = v_hsum(acc[i][r]);
}

/* Weight rows [j0, j1) against one x row (R = QGEMV_ROWS), every kind. */
static void QDEQ_NAME(gemv1)(int kind, const struct tensor *w, int64_t j0, int64_t j1, const float *x, float *out)
{
    for (int64_t j = j0; j < j1; j += QGEMV_ROWS) {
        int nr = j1 - j < QGEMV_ROWS ? (int)(j1 - j) : QGEMV_ROWS;
        switch (kind) {
        case QK_AFFINE4: QDEQ_NAME(gemv_tile)(QK_AFFINE4, QGEMV_ROWS, 1, w, j, nr, x, 0, out, 0); break;
        case QK_AFFINE8: QDEQ_NAME(gemv_tile)(QK_AFFINE8, QGEMV_ROWS, 1, w, j, nr, x, 0, out, 0); break;
        case QK_AFFINE2: QDEQ_NAME(gemv_tile)(QK_AFFINE2, QGEMV_ROWS, 1, w, j, nr, x, 0, out, 0); break;
        case QK_AFFINE3: QDEQ_NAME(gemv_tile)(QK_AFFINE3, QGEMV_ROWS, 1, w, j, nr, x, 0, out, 0); break;
        case QK_AFFINE5: QDEQ_NAME(gemv_tile)(QK_AFFINE5, QGEMV_ROWS, 1, w, j, nr, x, 0, out, 0); break;
        case QK_AFFINE6: QDEQ_NAME(gemv_tile)(QK_AFFINE6, QGEMV_ROWS, 1, w, j, nr, x, 0, out, 0); break;
        default: QDEQ_NAME(gemv_tile)(QK_E2M1, QGEMV_ROWS, 1, w, j, nr, x, 0, out, 0); break;
        }
    }
}

/* Weight rows [j0, j1) against n x rows (2 .. 8) for one kind: 4 weight rows a step, the x rows
 * in blocks of QGEMV_XROWS (the registers hold 4 x QGEMV_XROWS accumulators; the step's weight
 * rows stay in L1 between blocks). */
#define QGEMV_MULTI(KIND)                                                                                          \
    static void QDEQ_NAME(gemv_multi_##KIND)(const struct tensor *w, int64_t j0, int64_t j1, const float *x,      \
                                             int64_t ldx, int n, float *out, int64_t ldo)                          \
    {                                                                                                             \
        for (int64_t j = j0; j < j1; j += 4) {                                                                    \
            int nr = j1 - j < 4 ? (int)(j1 - j) : 4;                                                              \
            for (int i0 = 0; i0 < n; i0 += QGEMV_XROWS) {                                                         \
                const float *xi = x + i0 * ldx;                                                                   \
                float *oi = out + i0 * ldo;                                                                       \
                switch (n - i0 < QGEMV_XROWS ? n - i0 : QGEMV_XROWS) {                                            \
                case 1: QDEQ_NAME(gemv_tile)(KIND, 4, 1, w, j, nr, xi, ldx, oi, ldo); break;                      \
                case 2: QDEQ_NAME(gemv_tile)(KIND, 4, 2, w, j, nr, xi, ldx, oi, ldo); break;                      \
                case 3: QDEQ_NAME(gemv_tile)(KIND, 4, QGEMV_XROWS < 3 ? 2 : 3, w, j, nr, xi, ldx, oi, ldo); break; \
                default: QDEQ_NAME(gemv_tile)(KIND, 4, QGEMV_XROWS, w, j, nr, xi, ldx, oi, ldo); break;          \
                }                                                                                                 \
            }                                                                                                     \
        }                                                                                                         \
    }
QGEMV_MULTI(QK_AFFINE4)
QGEMV_MULTI(QK_AFFINE8)
QGEMV_MULTI(QK_E2M1)

/* One x row (batch-1 decode): every kind. 2 .. 8 rows (batched decode): 4- and 8-bit affine and
 * the E2M1 modes; the other widths decline there (the panel GEMM). */
bool QGEMV_ENTRY(const struct tensor *w, int64_t j0, int64_t j1, const float *x, int64_t ldx, int n, float *out,
                 int64_t ldo)
{
    int kind = QDEQ_NAME(kind)(w);
    if (kind == QK_NONE) return false;
    if (n == 1) QDEQ_NAME(gemv1)(kind, w, j0, j1, x, out);
    else if (kind == QK_AFFINE4) QDEQ_NAME(gemv_multi_QK_AFFINE4)(w, j0, j1, x, ldx, n, out, ldo);
    else if (kind == QK_AFFINE8) QDEQ_NAME(gemv_multi_QK_AFFINE8)(w, j0, j1, x, ldx, n, out, ldo);
    else if (kind == QK_E2M1) QDEQ_NAME(gemv_multi_QK_E2M1)(w, j0, j1, x, ldx, n, out, ldo);
    else return false;
    return true;
}

#else
bool QGEMV_ENTRY(const struct tensor *w, int64_t j0, int64_t j1, const float *x, int64_t ldx, int n, float *out,
                 int64_t ldo)
{
    return false;
}
void QDEQ_ENTRY(const struct tensor *w, int64_t row, float *dst) { cpu_qdeq_row_portable(w, row, dst); }
#endif
