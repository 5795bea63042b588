/* test_dtype: src/tensor/dtype.c's f16 and bf16 conversions against an independent reference.
 *
 * The reference never touches bit fields the way dtype.c does: decoding builds each of the 65536
 * codes' values from the format's definition with ldexp in double; encoding rounds in double
 * arithmetic (scale by the quantum of the binade, rint: ties to even) and then finds the code by
 * binary search among the decoded positive values (their codes are in value order). Checked:
 * every code decodes exactly; every finite code survives f32 and back; every midpoint between
 * neighbours (a tie) and one f32 ulp either side, every f32 binade boundary, f32 subnormals,
 * overflow thresholds, infinities, NaNs of every kind, and millions of random f32 bit patterns.
 * (f8e4m3 is covered the same way in tests/ops/test_ops.c.)
 */
#include "harness.h"

#include <float.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/log.h"
#include "base/rng.h"
#include "tensor/dtype.h"

/* A 16-bit float format: exponent bits, mantissa bits (bias 2^(ebits-1) - 1). */
struct fmt {
    const char *name;
    int         ebits, mbits;
    float     (*to_f32)(uint16_t);
    uint16_t  (*from_f32)(float);
    double      value[0x8000];   // value of each positive code, NAN for NaN codes
    int         n_finite;        // codes 0 .. n_finite-1 are the finite non-negative values, in order
};

static float bf16_to_f32_fn(uint16_t h) { return bf16_to_f32(h); }
static uint16_t f32_to_bf16_fn(float f) { return f32_to_bf16(f); }

static struct fmt F16 = { "f16", 5, 10, f16_to_f32, f32_to_f16, { 0 }, 0 };
static struct fmt BF16 = { "bf16", 8, 7, bf16_to_f32_fn, f32_to_bf16_fn, { 0 }, 0 };

static int bias(const struct fmt *f) { return (1 << (f->ebits - 1)) - 1; }

/* The value of a positive code from the definition: subnormal m * 2^(1 - bias - mbits), normal
 * (2^mbits + m) * 2^(e - bias - mbits), the top exponent infinity (m = 0) or NaN. */
static double ref_decode(const struct fmt *f, int code)
{
    int e = code >> f->mbits, m = code & ((1 << f->mbits) - 1), emax = (1 << f->ebits) - 1;
    if (e == emax) return m ? NAN : INFINITY;
    if (e == 0) return ldexp(m, 1 - bias(f) - f->mbits);
    return ldexp((1 << f->mbits) + m, e - bias(f) - f->mbits);
}

static void fmt_init(struct fmt *f)
{
    for (int c = 0; c < 0x8000; c++) f->value[c] = ref_decode(f, c);
    f->n_finite = ((1 << f->ebits) - 1) << f->mbits;
}

/* The code of a finite non-negative value that the format holds exactly (binary search). */
static int code_of(const struct fmt *f, double v)
{
    int lo = 0, hi = f->n_finite - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (f->value[mid] < v) lo = mid + 1;
        else hi = mid;
    }
    CHECK(f->value[lo] == v, "%s: %g is not representable", f->name, v);
    return lo;
}

/* Round-to-nearest-even of x into the format, as bits: the reference for from_f32. NaN: -1
 * (any NaN code of x's sign is right). */
static int ref_encode(const struct fmt *f, float x)
{
    if (isnan(x)) return -1;
    int sign = signbit(x) ? 0x8000 : 0;
    double ax = fabs((double)x);
    int inf = ((1 << f->ebits) - 1) << f->mbits;
    if (isinf(x)) return sign | inf;
    if (ax == 0) return sign;
    int k;
    frexp(ax, &k);                                    // ax in [2^(k-1), 2^k)
    int emin = 1 - bias(f), e = k - 1 < emin ? emin : k - 1;
    double quantum = ldexp(1.0, e - f->mbits);       // spacing of the format's values near ax
    double v = rint(ax / quantum) * quantum;          // exact: ax has 24 bits; rint ties to even
    if (v > f->value[f->n_finite - 1]) return sign | inf;
    return sign | code_of(f, v);
}

static bool same_bits(float a, float b) { return !memcmp(&a, &b, 4); }

static float f32_bits(uint32_t u)
{
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static uint32_t bits_f32(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

/* from_f32(x) against the reference; prints the first few mismatches. */
static int check_encode(const struct fmt *f, float x, int *shown)
{
    uint16_t got = f->from_f32(x);
    int want = ref_encode(f, x);
    int emax_bits = ((1 << f->ebits) - 1) << f->mbits;
    bool ok = want < 0 ? (got & 0x7fff) > emax_bits && (got & 0x8000) == (signbit(x) ? 0x8000 : 0)   // NaN, sign kept
                       : got == want;
    if (!ok && (*shown)++ < 5)
        fprintf(stderr, "    %s: %.9g (0x%08x) -> 0x%04x, want 0x%04x\n", f->name, x, bits_f32(x), got, want & 0xffff);
    return !ok;
}

static void decode_every_code(struct fmt *f)
{
    int bad = 0;
    for (int h = 0; h < 0x10000; h++) {
        double want = f->value[h & 0x7fff];
        if (h & 0x8000) want = -want;
        float got = f->to_f32((uint16_t)h);
        bool ok = isnan(want) ? isnan(got) && !signbit(got) == !(h & 0x8000)
                              : (double)got == want && !signbit(got) == !(h & 0x8000);   // -0 stays -0
        if (!ok && bad++ < 5) fprintf(stderr, "    %s 0x%04x -> %.9g, want %.9g\n", f->name, h, got, want);
    }
    EXPECTF(bad == 0, "%s: %d of 65536 codes decode wrong", f->name, bad);
}

static void round_trip_every_code(struct fmt *f)
{
    int bad = 0, nan_bad = 0;
    for (int h = 0; h < 0x10000; h++) {
        float x = f->to_f32((uint16_t)h);
        uint16_t back = f->from_f32(x);
        if (isnan(x)) nan_bad += (back & 0x7fff) <= (((1 << f->ebits) - 1) << f->mbits) || (back & 0x8000) != (h & 0x8000);
        else if (back != h && bad++ < 5) fprintf(stderr, "    %s 0x%04x -> %.9g -> 0x%04x\n", f->name, h, x, back);
    }
    EXPECTF(bad == 0, "%s: %d finite codes do not survive f32 and back", f->name, bad);
    EXPECTF(nan_bad == 0, "%s: %d NaN codes do not come back as a NaN of their sign", f->name, nan_bad);
}

/* Every boundary the rounding has: the midpoint of each pair of neighbours (a tie), one f32 ulp
 * either side, and the neighbours themselves, both signs; past the largest finite value the
 * overflow threshold (the midpoint to the next power of two, which rounds up to infinity). */
static void encode_boundaries(struct fmt *f)
{
    int bad = 0, shown = 0;
    for (int c = 0; c + 1 < f->n_finite + 1; c++) {
        double hi = c + 1 < f->n_finite ? f->value[c + 1] : ldexp(1.0, bias(f) + 1);   // 2^(emax+1): "infinity"
        float mid = (float)((f->value[c] + hi) / 2);
        CHECK((double)mid == (f->value[c] + hi) / 2, "%s: midpoint of code %d is not an f32", f->name, c);
        const float xs[] = { (float)f->value[c], mid, nextafterf(mid, 0), nextafterf(mid, INFINITY) };
        for (int i = 0; i < 4; i++) bad += check_encode(f, xs[i], &shown) + check_encode(f, -xs[i], &shown);
    }
    EXPECTF(bad == 0, "%s: %d conversions at rounding boundaries differ from the reference", f->name, bad);
}

static void encode_specials(struct fmt *f)
{
    int bad = 0, shown = 0;
    const float xs[] = { 0.0f, -0.0f, INFINITY, -INFINITY, FLT_MAX, -FLT_MAX, FLT_MIN, -FLT_MIN,
                         1e-45f /* smallest f32 subnormal */, 1e-40f, 5.9604645e-8f /* 2^-24 */, 2.9802322e-8f /* 2^-25: tie to 0 */,
                         65504.0f, 65519.996f, 65520.0f, 65536.0f, 1.0f, 1.00390625f, 1.0078125f, 3.3895314e38f };
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) bad += check_encode(f, xs[i], &shown);
    // NaNs: quiet and signalling, every payload bit alone (a truncating conversion would turn
    // 0x7f800001 into infinity), both signs
    for (int b = 0; b < 23; b++) {
        bad += check_encode(f, f32_bits(0x7f800000u | (1u << b)), &shown);
        bad += check_encode(f, f32_bits(0xff800000u | (1u << b)), &shown);
    }
    bad += check_encode(f, NAN, &shown) + check_encode(f, -NAN, &shown);
    // every binade edge of f32 (2^e and the values just below), normals and subnormals
    for (uint32_t e = 0; e < 255; e++)
        for (int d = -2; d <= 2; d++) {
            uint32_t u = (e << 23) + (uint32_t)d;
            if (d < 0 && e == 0) continue;
            bad += check_encode(f, f32_bits(u), &shown) + check_encode(f, f32_bits(u | 0x80000000u), &shown);
        }
    EXPECTF(bad == 0, "%s: %d special values convert differently from the reference", f->name, bad);
}

static void encode_random(struct fmt *f)
{
    struct rng r;
    rng_seed(&r, 2024);
    int bad = 0, shown = 0;
    for (int i = 0; i < 1000000; i++) {
        uint64_t x = rng_next(&r);
        bad += check_encode(f, f32_bits((uint32_t)x), &shown);
        // and values inside the format's range, where the rounding is not to 0 or infinity
        uint32_t near = (uint32_t)(x >> 32);
        int e_lo = 127 - bias(f) - f->mbits - 1, e_span = (1 << f->ebits) + f->mbits;
        int e = e_lo + (int)((near >> 23) % (uint32_t)e_span);
        e = e < 0 ? 0 : e > 254 ? 254 : e;
        bad += check_encode(f, f32_bits((near & 0x807fffffu) | ((uint32_t)e << 23)), &shown);
    }
    EXPECTF(bad == 0, "%s: %d of 2M random f32 values convert differently from the reference", f->name, bad);
}

TEST(f16)
{
    fmt_init(&F16);
    EXPECT(F16.value[0x3c00] == 1.0 && F16.value[0x7bff] == 65504.0 && F16.value[1] == ldexp(1, -24));
    decode_every_code(&F16);
    round_trip_every_code(&F16);
    encode_boundaries(&F16);
    encode_specials(&F16);
    encode_random(&F16);
}

TEST(bf16)
{
    fmt_init(&BF16);
    EXPECT(BF16.value[0x3f80] == 1.0 && BF16.value[1] == ldexp(1, -133) && BF16.value[0x7f7f] == ldexp(255, 127 - 7));
    decode_every_code(&BF16);
    round_trip_every_code(&BF16);
    encode_boundaries(&BF16);
    encode_specials(&BF16);
    encode_random(&BF16);
}

TEST(array_conversions_and_names)
{
    // the array forms use the same conversions as the scalar ones
    const float xs[6] = { 1.0f, -2.5f, 65520.0f, 1e-40f, INFINITY, 0.1f };
    uint16_t h[6], b[6];
    float back[6];
    dtype_from_f32(DTYPE_F16, xs, h, 6);
    dtype_from_f32(DTYPE_BF16, xs, b, 6);
    int bad = 0;
    for (int i = 0; i < 6; i++) bad += h[i] != f32_to_f16(xs[i]) || b[i] != f32_to_bf16(xs[i]);
    dtype_to_f32(DTYPE_F16, h, back, 6);
    for (int i = 0; i < 6; i++) bad += !same_bits(back[i], f16_to_f32(h[i]));
    dtype_to_f32(DTYPE_BF16, b, back, 6);
    for (int i = 0; i < 6; i++) bad += !same_bits(back[i], bf16_to_f32(b[i]));
    float copy[6];
    dtype_from_f32(DTYPE_F32, xs, copy, 6);
    dtype_to_f32(DTYPE_F32, copy, back, 6);
    bad += memcmp(back, xs, sizeof xs) != 0;
    EXPECT(bad == 0);
    EXPECT(h[2] == 0x7c00 && b[0] == 0x3f80);   // 65520 rounds to infinity in f16

    // an MLX-quantized weight has no element size: its bytes are packed u32 words (tensor/qweight.h)
    const size_t sizes[DTYPE_COUNT] = { 4, 2, 2, 4, 8, 1, 1, 4, 0 };
    const char *names[DTYPE_COUNT] = { "f32", "f16", "bf16", "i32", "i64", "u8", "f8e4m3", "u32", "mlx-quant" };
    for (int d = 0; d < DTYPE_COUNT; d++)
        EXPECTF(dtype_size((enum dtype)d) == sizes[d] && !strcmp(dtype_name((enum dtype)d), names[d]), "dtype %d", d);
    EXPECT(!strcmp(dtype_name(DTYPE_COUNT), "?"));
    EXPECT(dtype_parse_kv("f32") == DTYPE_F32 && dtype_parse_kv("f16") == DTYPE_F16 && dtype_parse_kv("bf16") == DTYPE_BF16 &&
           dtype_parse_kv("fp8") == DTYPE_F8E4M3 && dtype_parse_kv("BF16") == -1 && dtype_parse_kv("") == -1);
    EXPECT(dtype_from_safetensors("F32") == DTYPE_F32 && dtype_from_safetensors("F16") == DTYPE_F16 &&
           dtype_from_safetensors("BF16") == DTYPE_BF16 && dtype_from_safetensors("I32") == DTYPE_I32 &&
           dtype_from_safetensors("I64") == DTYPE_I64 && dtype_from_safetensors("U8") == DTYPE_U8 &&
           dtype_from_safetensors("F8_E4M3") == -1 && dtype_from_safetensors("bf16") == -1);
}

int main(void)
{
    RUN(f16);
    RUN(bf16);
    RUN(array_conversions_and_names);
    return test_summary();
}
