#include "tensor/dtype.h"

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
    case DTYPE_COUNT: break;
    }
    CHECK(0, "bad dtype %d", (int)dt);
}

const char *dtype_name(enum dtype dt)
{
    static const char *names[DTYPE_COUNT] = { "f32", "f16", "bf16", "i32", "i64", "u8" };
    return (unsigned)dt < DTYPE_COUNT ? names[dt] : "?";
}

int dtype_from_safetensors(const char *s)
{
    if (!strcmp(s, "F32")) return DTYPE_F32;
    if (!strcmp(s, "F16")) return DTYPE_F16;
    if (!strcmp(s, "BF16")) return DTYPE_BF16;
    if (!strcmp(s, "I32")) return DTYPE_I32;
    if (!strcmp(s, "I64")) return DTYPE_I64;
    if (!strcmp(s, "U8")) return DTYPE_U8;
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

void dtype_to_f32(enum dtype dt, const void *src, float *dst, size_t n)
{
    switch (dt) {
    case DTYPE_F32: memcpy(dst, src, n * 4); return;
    case DTYPE_BF16: for (size_t i = 0; i < n; i++) dst[i] = bf16_to_f32(((const uint16_t *)src)[i]); return;
    case DTYPE_F16: for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32(((const uint16_t *)src)[i]); return;
    default: CHECK(0, "dtype_to_f32: unsupported dtype %s", dtype_name(dt));
    }
}

void dtype_from_f32(enum dtype dt, const float *src, void *dst, size_t n)
{
    switch (dt) {
    case DTYPE_F32: memcpy(dst, src, n * 4); return;
    case DTYPE_BF16: for (size_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = f32_to_bf16(src[i]); return;
    case DTYPE_F16: for (size_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = f32_to_f16(src[i]); return;
    default: CHECK(0, "dtype_from_f32: unsupported dtype %s", dtype_name(dt));
    }
}
