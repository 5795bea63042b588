#include "tensor/dtype.h"

#include <math.h>
#include <string.h>

#include "base/log.h"

size_t dtype_size(enum dtype dt)
{
    switch (dt) {
    case DTYPE_F32: return 4;
    case DTYPE_F16: return 2;
    case DTYPE_BF16: return 2;
    case DTYPE_I32: return 4;
    case DTYPE_I64: return 8;
    case DTYPE_U8: return 1;
    case DTYPE_F8E4M3: return 1;
    case DTYPE_U32: return 4;
    case DTYPE_QMLX: return 0;
    case DTYPE_COUNT: break;
    }
    CHECK(0, "bad dtype %d", (int)dt);
}

const char *dtype_name(enum dtype dt)
{
    static const char *names[DTYPE_COUNT] = { "f32", "f16", "bf16", "i32", "i64", "u8", "f8e4m3", "u32", "mlx-quant" };
    return (unsigned)dt < DTYPE_COUNT ? names[dt] : "?";
}

int dtype_parse_kv(const char *s)
{
    if (!strcmp(s, "f32")) return DTYPE_F32;
    if (!strcmp(s, "f16")) return DTYPE_F16;
    if (!strcmp(s, "bf16")) return DTYPE_BF16;
    if (!strcmp(s, "fp8") || !strcmp(s, "f8e4m3")) return DTYPE_F8E4M3;   // vLLM's name, and ours
    return -1;
}

int dtype_from_safetensors(const char *s)
{
    if (!strcmp(s, "F32")) return DTYPE_F32;
    if (!strcmp(s, "F16")) return DTYPE_F16;
    if (!strcmp(s, "BF16")) return DTYPE_BF16;
    if (!strcmp(s, "I32")) return DTYPE_I32;
    if (!strcmp(s, "I64")) return DTYPE_I64;
    if (!strcmp(s, "U8")) return DTYPE_U8;
    if (!strcmp(s, "U32")) return DTYPE_U32;
    return -1;
}

float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else {   // subnormal: normalize
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000;
    uint32_t absu = u & 0x7fffffff;
    if (absu > 0x7f800000u) return (uint16_t)(sign | 0x7e00);          // NaN
    if (absu >= 0x477ff000u) return (uint16_t)(sign | 0x7c00);         // overflow to inf (incl. rounding)
    if (absu < 0x38800000u) {                                          // subnormal or zero in f16
        if (absu < 0x33000000u) return (uint16_t)sign;                 // rounds to zero
        uint32_t man = (absu & 0x7fffff) | 0x800000;
        int shift = 126 - (int)(absu >> 23);                          // 14..24
        uint32_t half = 1u << (shift - 1);
        uint32_t rest = man & ((1u << shift) - 1);
        uint32_t r = man >> shift;
        if (rest > half || (rest == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = absu + 0xfffu + ((absu >> 13) & 1);                   // round to nearest even
    return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

/* ==== f8e4m3 ==== */

/* The table is spelled out by the format's definition: exponent field e, mantissa m; e = 0 is
 * subnormal (m/8 * 2^-6), else (1 + m/8) * 2^(e-7) = (8 + m) * 2^e / 2^10; S.1111.111 is NaN. */
#define E4M3_MAG(c) (((c) & 0x7f) == 0x7f ? NAN \
                     : ((c) & 0x78) == 0 ? (float)((c) & 7) / 512.0f \
                     : (float)(8 + ((c) & 7)) * (float)(1 << (((c) >> 3) & 15)) / 1024.0f)
#define E4M3(c)    ((c) & 0x80 ? -E4M3_MAG(c) : E4M3_MAG(c))
#define E4M3_8(c)  E4M3(c), E4M3(c + 1), E4M3(c + 2), E4M3(c + 3), E4M3(c + 4), E4M3(c + 5), E4M3(c + 6), E4M3(c + 7)
#define E4M3_32(c) E4M3_8(c), E4M3_8(c + 8), E4M3_8(c + 16), E4M3_8(c + 24)
const float e4m3_to_f32_table[256] = { E4M3_32(0), E4M3_32(32), E4M3_32(64), E4M3_32(96),
                                       E4M3_32(128), E4M3_32(160), E4M3_32(192), E4M3_32(224) };

uint8_t f32_to_e4m3(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint8_t sign = (uint8_t)((u >> 24) & 0x80);
    uint32_t absu = u & 0x7fffffffu;
    if (absu > 0x7f800000u) return 0x7f;                  // NaN (sign dropped, as CUDA does)
    if (absu >= 0x43e00000u) return sign | 0x7e;          // >= 448, inf too: saturate
    if (absu >= 0x3c800000u) {                            // >= 2^-6: normal
        uint32_t r = absu + 0x7ffffu + ((absu >> 20) & 1);   // round 23 mantissa bits to 3, to even
        return (uint8_t)(sign | ((r >> 20) - (120u << 3)));  // rebias 127 -> 7 (a carry bumps e)
    }
    // subnormal: the value in units of 2^-9, rounded to even; 8 becomes the smallest normal
    if (absu <= 0x3a800000u) return sign;                 // <= 2^-10 (the tie rounds to even 0)
    uint32_t man = (absu & 0x7fffffu) | 0x800000u;
    int shift = 141 - (int)(absu >> 23);                  // 2^(e-127) * man / 2^23 / 2^-9
    uint32_t rest = man & ((1u << shift) - 1), half = 1u << (shift - 1), q = man >> shift;
    if (rest > half || (rest == half && (q & 1))) q++;
    return (uint8_t)(sign | q);
}

void dtype_to_f32(enum dtype dt, const void *src, float *dst, size_t n)
{
    switch (dt) {
    case DTYPE_F32: memcpy(dst, src, n * 4); return;
    case DTYPE_BF16: for (size_t i = 0; i < n; i++) dst[i] = bf16_to_f32(((const uint16_t *)src)[i]); return;
    case DTYPE_F16: for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32(((const uint16_t *)src)[i]); return;
    case DTYPE_F8E4M3: for (size_t i = 0; i < n; i++) dst[i] = e4m3_to_f32(((const uint8_t *)src)[i]); return;
    default: CHECK(0, "dtype_to_f32: unsupported dtype %s", dtype_name(dt));
    }
}

void dtype_from_f32(enum dtype dt, const float *src, void *dst, size_t n)
{
    switch (dt) {
    case DTYPE_F32: memcpy(dst, src, n * 4); return;
    case DTYPE_BF16: for (size_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = f32_to_bf16(src[i]); return;
    case DTYPE_F16: for (size_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = f32_to_f16(src[i]); return;
    case DTYPE_F8E4M3: for (size_t i = 0; i < n; i++) ((uint8_t *)dst)[i] = f32_to_e4m3(src[i]); return;
    default: CHECK(0, "dtype_from_f32: unsupported dtype %s", dtype_name(dt));
    }
}
