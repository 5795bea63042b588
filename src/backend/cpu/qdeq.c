/* qdeq: portable dequantization and the ISA dispatch. See qdeq.h. */
#include "backend/cpu/qdeq.h"

#include <string.h>

#include "base/log.h"
#include "tensor/dtype.h"

static const void *row_ptr(const struct tensor *t, int64_t r)
{
    int64_t i1 = r % t->ne[1], rest = r / t->ne[1];
    return (const char *)t->buf->data + t->offset + (size_t)i1 * t->nb[1] + (size_t)(rest % t->ne[2]) * t->nb[2] +
           (size_t)(rest / t->ne[2]) * t->nb[3];
}

static void decode_f(enum dtype dt, const void *p, int64_t g0, int64_t n, float *out)
{
    switch (dt) {
    case DTYPE_BF16: for (int64_t j = 0; j < n; j++) out[j] = bf16_to_f32(((const uint16_t *)p)[g0 + j]); return;
    case DTYPE_F16: for (int64_t j = 0; j < n; j++) out[j] = f16_to_f32(((const uint16_t *)p)[g0 + j]); return;
    case DTYPE_F32: memcpy(out, (const float *)p + g0, (size_t)n * sizeof *out); return;
    default: CHECK(0, "bad scale dtype %s", dtype_name(dt));
    }
}

void cpu_qdeq_scales(const struct tensor *w, int64_t row, int64_t g0, int64_t n, float *scales, float *biases)
{
    const struct qweight *q = w->q;
    const void *sp = row_ptr(&q->scales, row);
    switch (q->mode) {
    case QMODE_AFFINE:
        decode_f(q->scales.dtype, sp, g0, n, scales);
        decode_f(q->biases.dtype, row_ptr(&q->biases, row), g0, n, biases);
        return;
    case QMODE_MXFP4:
    case QMODE_MXFP8:
        for (int64_t j = 0; j < n; j++) scales[j] = e8m0_to_f32(((const uint8_t *)sp)[g0 + j]);
        break;
    case QMODE_NVFP4:
        for (int64_t j = 0; j < n; j++) scales[j] = e4m3_to_f32(((const uint8_t *)sp)[g0 + j]);
        break;
    }
    for (int64_t j = 0; j < n; j++) biases[j] = 0.0f;
}

void cpu_qdeq_row_portable(const struct tensor *w, int64_t row, float *dst)
{
    qweight_dequant_row(w, row, dst);
}

static bool qgemv_none(const struct tensor *w, int64_t j0, int64_t j1, const float *x, int64_t ldx, int n,
                       float *out, int64_t ldo)
{
    return false;
}

/* The SIMD families with dequantizers of their own (the others use the portable row and the GEMM). */
static const struct qdeq_family {
    const char  *isa;
    cpu_qgemv_fn gemv;
    cpu_qdeq_fn  deq;
} families[] = {
#if defined(__x86_64__)
    { "avx512", cpu_qgemv_avx512, cpu_qdeq_row_avx512 },
    { "avx2", cpu_qgemv_avx2, cpu_qdeq_row_avx2 },
#endif
    { NULL, qgemv_none, cpu_qdeq_row_portable },
};

static const struct qdeq_family *family(const char *isa)
{
    const struct qdeq_family *f = families;
    while (f->isa && strcmp(f->isa, isa)) f++;
    return f;
}

cpu_qgemv_fn cpu_qgemv_pick(const char *isa)
{
#if defined(__x86_64__)
    if (!strcmp(isa, "avx512") && __builtin_cpu_supports("avx512vbmi")) return cpu_qgemv_avx512vbmi;
#endif
    return family(isa)->gemv;
}
cpu_qdeq_fn  cpu_qdeq_pick(const char *isa) { return family(isa)->deq; }
