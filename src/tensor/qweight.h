/* qweight: MLX-format quantized weight matrices (affine 2-8 bit, mxfp4, mxfp8, nvfp4).
 *
 * Representation (the contract every backend reads): a quantized weight is an ordinary struct
 * tensor with dtype DTYPE_QMLX and a non-NULL `q` pointing at a struct qweight. Its ne are the
 * *logical* dims of the dequantized matrix ([in, out] or [in, out, E] for stacked experts:
 * ne[0] = in_features, as any weight), so shape checks of matmul/embed/moe_ffn stay the same and
 * no op signature changes. buf/offset address the packed uint32 words exactly as MLX stores them:
 * row r (flat over ne[1..3]) starts at nb[1] * r bytes with nb[1] = in * bits / 8; nb[0] = 0 (not
 * addressable per element; dtype_size(DTYPE_QMLX) = 0). Scales (and affine biases) are tensors of
 * their own, [rows, in / group_size], in the qweight. Backends that do not handle DTYPE_QMLX fail
 * the same CHECK as for any other unknown weight dtype; the model refuses them earlier.
 *
 * Packing (mlx-quant-format.md 2.3): each row is one little-endian bit stream; code k occupies
 * stream bits [k*bits, (k+1)*bits), stream bit b is bit b%32 of word b/32 (3/5/6-bit codes
 * straddle words). Affine: w = scale * q + bias (scales may be negative). mxfp4 / nvfp4: E2M1
 * codes, mxfp8: E4M3 codes; w = scale * element, scales E8M0 (2^(s-127); 0xFF decodes to +Inf as
 * in MLX, so loaders refuse it) or E4M3 (nvfp4). Every dequantized value is exact in f32 (the
 * product of two short significands, plus one rounding for the affine bias), so the ref backend's
 * f32 values are bit-identical to MLX's math in f32.
 *
 * The quantizer (qweight_quantize_row) follows MLX's CPU rules (spec 2.2 / 3, as
 * tools/mlx_quant_ref.py does): affine with rint (ties to even), E2M1 to the nearest LUT entry
 * with ties to the lower index, E4M3 round-to-nearest-even saturating, E8M0 = round(log2).
 * Pure functions; any thread.
 *
 *     struct qweight q = { QMODE_AFFINE, 4, 64, scales, biases };
 *     struct tensor w = qweight_tensor(&q, &packed_u32, in);     // logical [out, in]
 *     float row[in];  qweight_dequant_row(&w, 3, row);
 */
#ifndef CAIRN_TENSOR_QWEIGHT_H
#define CAIRN_TENSOR_QWEIGHT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/tensor.h"

enum qmode {
    QMODE_AFFINE = 1,
    QMODE_MXFP4,
    QMODE_MXFP8,
    QMODE_NVFP4,
};

struct qweight {
    enum qmode    mode;
    int           bits;          // affine 2, 3, 4, 5, 6, 8; mxfp4 / nvfp4 4; mxfp8 8
    int           group_size;    // affine 32, 64, 128; mxfp4 / mxfp8 32; nvfp4 16
    struct tensor scales;        // [rows, in / group_size]: bf16/f16/f32 (affine), u8 E8M0 (mx*), u8 E4M3 (nvfp4)
    struct tensor biases;        // affine: as scales; otherwise absent (buf NULL)
};

const char *qmode_name(enum qmode m);             // "affine", "mxfp4", ...
int         qmode_parse(const char *s);           // -1 if unknown
/* True if MLX defines this combination (affine bits 2-6, 8 x groups 32/64/128; mxfp4 4/32; mxfp8 8/32;
 * nvfp4 4/16). */
bool        qweight_supported(enum qmode m, int bits, int group_size);
/* "affine bits 2,3,4,5,6,8 x group 32,64,128; mxfp4 (4 bit, group 32); ..." for error messages. */
const char *qweight_supported_list(void);
/* The mode's own group size and bits (MLX's defaults for `"group_size": null`). */
void        qmode_defaults(enum qmode m, int *group_size, int *bits);

/* The logical view (dtype DTYPE_QMLX, ne = [in, rows of packed...]) of packed words `packed`
 * (u32, [.., rows, in * bits / 32]). q must outlive the view. */
struct tensor qweight_tensor(const struct qweight *q, const struct tensor *packed, int64_t in);

/* Bytes of a quantized weight: packed words + scales + biases. */
size_t qweight_bytes(const struct tensor *w);

/* Dequantizes flat row r of the quantized tensor w into dst[w->ne[0]] (exact f32). */
void qweight_dequant_row(const struct tensor *w, int64_t r, float *dst);
/* Code k of a packed row (any width 1..8). */
static inline uint32_t qweight_code(const uint32_t *row, int64_t k, int bits)
{
    uint64_t off = (uint64_t)k * (uint64_t)bits;
    uint64_t i = off >> 5, s = off & 31;
    uint32_t v = row[i] >> s;
    if (s + (uint64_t)bits > 32) v |= row[i + 1] << (32 - s);
    return v & ((1u << bits) - 1);
}

extern const float e2m1_to_f32_table[16];
float e8m0_to_f32(uint8_t s);                     // 2^(s-127); 0xFF -> +Inf (MLX's decoding)
/* The decoded scale j of row r of a quantized weight (any mode). */
float qweight_scale(const struct tensor *w, int64_t r, int64_t j);
float qweight_bias(const struct tensor *w, int64_t r, int64_t j);   // affine only

/* Quantizes one row src[n] (n a multiple of group_size) as MLX's CPU quantizer does: writes
 * n * bits / 32 words and n / group_size scales: affine: f32 scales and biases as computed (the
 * caller rounds them to the storage dtype, as MLX stores them in the model dtype); other modes:
 * E8M0 / E4M3 scale codes (scales / biases unused). Returns false for a non-finite input. */
bool qweight_quantize_row(enum qmode m, int bits, int group_size, const float *src, int64_t n,
                          uint32_t *words, float *scales, float *biases, uint8_t *scale_codes);

#endif
