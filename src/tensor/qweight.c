/* qweight: MLX quantized weights: decoding, the reference dequantizer and MLX's CPU quantizer.
 * See qweight.h for the layout and the rounding rules. */
#include "tensor/qweight.h"

#include <math.h>
#include <string.h>

#include "base/log.h"
#include "tensor/dtype.h"

/* ==== Modes ==== */

const char *qmode_name(enum qmode m)
{
    switch (m) {
    case QMODE_AFFINE: return "affine";
    case QMODE_MXFP4: return "mxfp4";
    case QMODE_MXFP8: return "mxfp8";
    case QMODE_NVFP4: return "nvfp4";
    }
    return "?";
}

int qmode_parse(const char *s)
{
    for (int m = QMODE_AFFINE; m <= QMODE_NVFP4; m++)
        if (!strcmp(s, qmode_name((enum qmode)m))) return m;
    return -1;
}

void qmode_defaults(enum qmode m, int *group_size, int *bits)
{
    switch (m) {
    case QMODE_AFFINE: *group_size = 64; *bits = 4; return;
    case QMODE_MXFP4: *group_size = 32; *bits = 4; return;
    case QMODE_MXFP8: *group_size = 32; *bits = 8; return;
    case QMODE_NVFP4: *group_size = 16; *bits = 4; return;
    }
    CHECK(0, "bad qmode %d", (int)m);
}

bool qweight_supported(enum qmode m, int bits, int group_size)
{
    if (m == QMODE_AFFINE)
        return ((bits >= 2 && bits <= 6) || bits == 8) &&
               (group_size == 32 || group_size == 64 || group_size == 128);
    if (m != QMODE_MXFP4 && m != QMODE_MXFP8 && m != QMODE_NVFP4) return false;
    int g, b;
    qmode_defaults(m, &g, &b);
    return bits == b && group_size == g;
}

const char *qweight_supported_list(void)
{
    return "affine with bits 2, 3, 4, 5, 6, 8 and group size 32, 64, 128; mxfp4 (4 bit, group 32); "
           "mxfp8 (8 bit, group 32); nvfp4 (4 bit, group 16)";
}

/* ==== Views ==== */

struct tensor qweight_tensor(const struct qweight *q, const struct tensor *packed, int64_t in)
{
    CHECK(packed->dtype == DTYPE_U32, "packed weight must be u32");
    CHECK(in * q->bits == packed->ne[0] * 32, "packed row of %lld words does not hold %lld %d-bit codes",
          (long long)packed->ne[0], (long long)in, q->bits);
    struct tensor t = *packed;
    t.dtype = DTYPE_QMLX;
    t.ne[0] = in;
    t.nb[0] = 0;
    t.q = q;
    return t;
}

size_t qweight_bytes(const struct tensor *w)
{
    size_t b = tensor_bytes(w) + tensor_bytes(&w->q->scales);
    if (w->q->biases.buf) b += tensor_bytes(&w->q->biases);
    return b;
}

/* ==== Decoding ==== */

const float e2m1_to_f32_table[16] = { 0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                                      -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f };

float e8m0_to_f32(uint8_t s)
{
    // the f32 with exponent field s is 2^(s-127); s = 0 is the subnormal 2^-127 (bit 22), as MLX builds it
    uint32_t u = s == 0xFF ? 0x7f800000u : s ? (uint32_t)s << 23 : 0x00400000u;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static const void *row_of(const struct tensor *t, int64_t r)
{
    int64_t i1 = r % t->ne[1], rest = r / t->ne[1];
    int64_t i2 = rest % t->ne[2], i3 = rest / t->ne[2];
    return (const char *)t->buf->data + t->offset + (size_t)i1 * t->nb[1] + (size_t)i2 * t->nb[2] +
           (size_t)i3 * t->nb[3];
}

static float elem_f32(const struct tensor *t, int64_t r, int64_t j)
{
    const void *p = row_of(t, r);
    switch (t->dtype) {
    case DTYPE_BF16: return bf16_to_f32(((const uint16_t *)p)[j]);
    case DTYPE_F16: return f16_to_f32(((const uint16_t *)p)[j]);
    case DTYPE_F32: return ((const float *)p)[j];
    default: CHECK(0, "bad scale dtype %s", dtype_name(t->dtype));
    }
}

float qweight_scale(const struct tensor *w, int64_t r, int64_t j)
{
    const struct qweight *q = w->q;
    switch (q->mode) {
    case QMODE_AFFINE: return elem_f32(&q->scales, r, j);
    case QMODE_MXFP4:
    case QMODE_MXFP8: return e8m0_to_f32(((const uint8_t *)row_of(&q->scales, r))[j]);
    case QMODE_NVFP4: return e4m3_to_f32(((const uint8_t *)row_of(&q->scales, r))[j]);
    }
    CHECK(0, "bad qmode");
}

float qweight_bias(const struct tensor *w, int64_t r, int64_t j) { return elem_f32(&w->q->biases, r, j); }

void qweight_dequant_row(const struct tensor *w, int64_t r, float *dst)
{
    const struct qweight *q = w->q;
    CHECK(w->dtype == DTYPE_QMLX && q, "dequant of a tensor that is not quantized");
    const uint32_t *row = row_of(w, r);
    int64_t n = w->ne[0], gs = q->group_size;
    for (int64_t j = 0; j < n / gs; j++) {
        float s = qweight_scale(w, r, j);
        float b = q->mode == QMODE_AFFINE ? qweight_bias(w, r, j) : 0.0f;
        for (int64_t k = j * gs; k < (j + 1) * gs; k++) {
            uint32_t c = qweight_code(row, k, q->bits);
            switch (q->mode) {
            case QMODE_AFFINE: { float p = s * (float)c; dst[k] = p + b; break; }   // s * c is exact
            case QMODE_MXFP4:
            case QMODE_NVFP4: dst[k] = s * e2m1_to_f32_table[c]; break;
            case QMODE_MXFP8: dst[k] = s * e4m3_to_f32((uint8_t)c); break;
            }
        }
    }
}

/* ==== Quantizer (MLX's CPU rules) ==== */

static void put_code(uint32_t *words, int64_t k, int bits, uint32_t c)
{
    uint64_t off = (uint64_t)k * (uint64_t)bits;
    uint64_t i = off >> 5, s = off & 31;
    words[i] |= c << s;
    if (s + (uint64_t)bits > 32) words[i + 1] |= c >> (32 - s);
}

/* Nearest E2M1 LUT entry, ties to the lower index (MLX's CPU fallback). */
static uint32_t e2m1_encode(float x)
{
    uint32_t best = 0;
    double bd = fabs((double)x - (double)e2m1_to_f32_table[0]);
    for (uint32_t i = 1; i < 16; i++) {
        double d = fabs((double)x - (double)e2m1_to_f32_table[i]);
        if (d < bd) { bd = d; best = i; }
    }
    return best;
}

/* round(log2(s)) + 127 clamped to [0, 254]; log2 never ties, so compare the mantissa with sqrt 2. */
static uint8_t e8m0_encode(float s)
{
    if (!(s > 0)) return 0;
    int e;
    double m = frexp((double)s, &e);   // s = m 2^e, m in [0.5, 1)
    int k = e - 1 + (2 * m > 1.4142135623730951 ? 1 : 0);
    k += 127;
    return (uint8_t)(k < 0 ? 0 : k > 254 ? 254 : k);
}

bool qweight_quantize_row(enum qmode m, int bits, int gs, const float *src, int64_t n,
                          uint32_t *words, float *scales, float *biases, uint8_t *scale_codes)
{
    CHECK(n % gs == 0 && (n * bits) % 32 == 0, "row of %lld does not fit group %d", (long long)n, gs);
    for (int64_t k = 0; k < n; k++)
        if (!isfinite(src[k])) return false;
    memset(words, 0, (size_t)(n * bits / 32) * 4);
    for (int64_t j = 0; j < n / gs; j++) {
        const float *g = src + j * gs;
        if (m == QMODE_AFFINE) {
            float n_bins = (float)((1 << bits) - 1);
            float wmin = g[0], wmax = g[0];
            for (int i = 1; i < gs; i++) {
                wmin = g[i] < wmin ? g[i] : wmin;
                wmax = g[i] > wmax ? g[i] : wmax;
            }
            bool mask = fabsf(wmin) > fabsf(wmax);
            float scale = (wmax - wmin) / n_bins;
            scale = scale > 1e-7f ? scale : 1e-7f;
            scale = mask ? scale : -scale;
            float edge = mask ? wmin : wmax;
            float q0 = rintf(edge / scale), bias = 0.0f;
            if (q0 != 0) {
                scale = edge / q0;
                bias = edge;
            }
            for (int i = 0; i < gs; i++) {
                float q = rintf((g[i] - bias) / scale);
                q = q < 0 ? 0 : q > n_bins ? n_bins : q;
                put_code(words, j * gs + i, bits, (uint32_t)q);
            }
            scales[j] = scale;
            biases[j] = bias;
            continue;
        }
        float amax = 0;
        for (int i = 0; i < gs; i++) amax = fabsf(g[i]) > amax ? fabsf(g[i]) : amax;
        float sval;
        if (m == QMODE_NVFP4) {
            scale_codes[j] = f32_to_e4m3(amax / 6.0f);
            sval = e4m3_to_f32(scale_codes[j]);
        } else {
            scale_codes[j] = e8m0_encode(amax / (bits == 4 ? 6.0f : 448.0f));
            sval = e8m0_to_f32(scale_codes[j]);
        }
        for (int i = 0; i < gs; i++) {
            float el = sval != 0 ? g[i] / sval : 0.0f;
            uint32_t c = bits == 4 ? e2m1_encode(el) : f32_to_e4m3(el);
            put_code(words, j * gs + i, bits, c);
        }
    }
    return true;
}
