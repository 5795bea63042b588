/* qdeq_tmpl: the SIMD dequantizers, written once over a small vector vocabulary that
 * qdeq_avx2.c and qdeq_avx512.c define before including this file (as kern_tmpl.h does):
 *   QV / QI (f32 / i32 vectors of QL lanes); q_splat_words(p): QL/8 words, each repeated 8 times;
 *   q_splat_u32(x): x in every lane; q_shifts4(): 0, 4, ..., 28 per word; q_shifts2(): 0, 2, ...;
 *   q_srlv, q_and(QI, mask), q_cvt(QI) -> QV, q_fma(a, b, c) = a * b + c, q_mul, q_set1(f),
 *   q_store(float *, QV), q_bytes(p): QL bytes zero-extended, q_lut16(codes): E2M1 values.
 * Each group's values are scale * code + bias (affine) or scale * e2m1(code), exact (see qdeq.h).
 */

static void QDEQ_NAME(affine4)(const uint32_t *wr, const float *s, const float *b, int64_t n, int gs, float *dst)
{
    // QL codes per step: QL/8 words, each word's 8 nibbles low first
    for (int64_t k = 0; k < n; k += QL) {
        int64_t g = k / gs;
        QI c = q_and(q_srlv(q_splat_words(wr + k / 8), q_shifts4()), 0xF);
        q_store(dst + k, q_fma(q_cvt(c), q_set1(s[g]), q_set1(b[g])));
    }
}

static void QDEQ_NAME(affine8)(const uint32_t *wr, const float *s, const float *b, int64_t n, int gs, float *dst)
{
    const uint8_t *p = (const uint8_t *)wr;
    for (int64_t k = 0; k < n; k += QL) {
        int64_t g = k / gs;
        q_store(dst + k, q_fma(q_cvt(q_bytes(p + k)), q_set1(s[g]), q_set1(b[g])));
    }
}

static void QDEQ_NAME(affine2)(const uint32_t *wr, const float *s, const float *b, int64_t n, int gs, float *dst)
{
    for (int64_t k = 0; k < n; k += QL) {
        int64_t g = k / gs;
        QI c = q_and(q_srlv(q_splat_u32(wr[k / 16] >> (2 * (k % 16))), q_shifts2()), 0x3);
        q_store(dst + k, q_fma(q_cvt(c), q_set1(s[g]), q_set1(b[g])));
    }
}

static void QDEQ_NAME(e2m1)(const uint32_t *wr, const float *s, int64_t n, int gs, float *dst)
{
    for (int64_t k = 0; k < n; k += QL) {
        int64_t g = k / gs;
        QI c = q_and(q_srlv(q_splat_words(wr + k / 8), q_shifts4()), 0xF);
        q_store(dst + k, q_mul(q_lut16(c), q_set1(s[g])));
    }
}

void QDEQ_ENTRY(const struct tensor *w, int64_t row, float *dst)
{
    const struct qweight *q = w->q;
    int64_t n = w->ne[0];
    int gs = q->group_size;
    bool fast = n % QL == 0 && gs % QL == 0 &&
                ((q->mode == QMODE_AFFINE && (q->bits == 2 || q->bits == 4 || q->bits == 8)) ||
                 q->mode == QMODE_MXFP4 || q->mode == QMODE_NVFP4);
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
        else QDEQ_NAME(affine2)(wk, s, b, nk, gs, dst + k0);
    }
}
