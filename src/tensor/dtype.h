/* dtype: element types of tensors and conversions between them.
 *
 * bf16 and f16 are stored as raw uint16_t bits; conversions to f32 are exact, conversions from
 * f32 round to nearest even (NaN stays NaN). Quantized weights (MLX affine / mxfp4 / mxfp8 / nvfp4)
 * are DTYPE_QMLX tensors described by tensor/qweight.h.
 *
 * f8e4m3 (OCP FP8 E4M3: 1 sign, 4 exponent bits with bias 7, 3 mantissa bits; no infinities,
 * S.1111.111 is NaN, largest finite 448, smallest subnormal 2^-9) is a KV-cache type only
 * (`--kv-dtype fp8`). Values are stored as they are, scale 1.0 (no per-tensor or per-head
 * scales, as vLLM's uncalibrated fp8 cache): K and V of attention layers live well inside
 * [-448, 448]. From f32: round to nearest even, saturating to +-448 (infinities too), NaN to
 * NaN (0x7f) -- what CUDA's __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3) does, so a cache
 * written on the CPU and on the GPU holds the same bytes. To f32: exact (a 256-entry table).
 */
#ifndef CAIRN_TENSOR_DTYPE_H
#define CAIRN_TENSOR_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum dtype {
    DTYPE_F32 = 0,
    DTYPE_F16,
    DTYPE_BF16,
    DTYPE_I32,
    DTYPE_I64,
    DTYPE_U8,
    DTYPE_F8E4M3,   // KV cache only (see above); not a safetensors weight type here
    DTYPE_U32,      // packed words of MLX-quantized weights as stored in safetensors
    DTYPE_QMLX,     // an MLX-quantized weight matrix (tensor/qweight.h); dtype_size 0: not addressable per element
    DTYPE_COUNT
};

size_t      dtype_size(enum dtype dt);         // bytes per element
const char *dtype_name(enum dtype dt);         // "f32", "bf16", ...
/* Parses a KV-cache dtype name as the CLI takes it: "f32", "f16", "bf16", "fp8" or "f8e4m3"
 * (the same type); returns -1 if unknown. */
int         dtype_parse_kv(const char *s);
/* Parses a safetensors dtype ("BF16", "F16", "F32", "I32", "I64", "U8", "U32"); returns -1 if unknown. */
int         dtype_from_safetensors(const char *s);

static inline float bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);   // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1);                                               // round to nearest even
    return (uint16_t)(u >> 16);
}

float    f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

extern const float e4m3_to_f32_table[256];   // every code's value (0x7f, 0xff: NaN)
static inline float e4m3_to_f32(uint8_t c) { return e4m3_to_f32_table[c]; }
uint8_t f32_to_e4m3(float f);

/* Converts n elements of src (dtype dt) to f32. */
void dtype_to_f32(enum dtype dt, const void *src, float *dst, size_t n);
/* Converts n f32 values to dtype dt (F32, F16, BF16 or F8E4M3). */
void dtype_from_f32(enum dtype dt, const float *src, void *dst, size_t n);

#endif
