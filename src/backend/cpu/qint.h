/* qint: integer dot products for affine 4- and 8-bit MLX weights on the cpu backend, decode
 * and prefill alike.
 *
 * Each row of x is quantized to 16-bit integers held as two int8 levels, with one scale per run of
 * the 8 inputs one int32 lane sums: with m the run's largest |x|, sx = m / 32512 and
 * v = rint(x / sx) (|v| <= 32512), v = 256 h + l with h = floor((v + 128) / 256) and l = v - 256 h,
 * both int8. x ~= sx v to within sx / 2 = m / 65024: finer than the bf16 activations cuda and the
 * plain cpu bf16 path run on (|x| / 512), not f32, so the cpu-precise backend keeps the f32 path of
 * qdeq.h. Weights stay packed: affine codes q are unsigned, so one vpdpbusd multiplies 64 4-bit
 * codes (a nibble split away) by 64 levels into 16 int32 lanes, and one vpdpwssd 32 8-bit codes (as
 * 16-bit words) by 32 v. For a weight w = s q + b a lane adds s sx sum(q v) and a group b xs, xs
 * the sum of its quantized x (so the result is w . x~, up to f32 roundings); sum(q v) =
 * 256 sum(q h) + sum(q l) is exact in int32, so which instruction adds which product never
 * changes a bit.
 *
 * The float part is one formula on 16 lanes, the same in every ISA and at every batch size (so a
 * row's output never depends on the batch, the thread count or the ISA). Per x row i and weight
 * row j, acc[16] = 0; for each chunk of 16 groups (lane L: group 16 c + L, absent groups 0):
 *     acc[L] = fma(b[L], xs[L], acc[L])                 xs: the lanes' sx * sum(v), in order
 *     for each block of 128 codes of the chunk: lane L holds T = sum(q v) over codes 8L .. 8L+7
 *         of the block, and acc[L] = fma((float)T, s[g] * sx_L, acc[L]), g the group of those codes;
 * then out = acc summed by the tree L + (L + 8), + 4, + 2, + 1.
 *
 * x is prepared once per matmul (cpu_qint_quantize_x, portable C: IEEE operations only, so the
 * AVX-512 version writes the same bytes) into records of cpu_qint_x_bytes: the groups' xs
 * (16-padded), then per block the 16 lanes' sx and the levels in the kernels' order (4-bit: h of
 * the even codes, h of the odd codes, l even, l odd, 64 bytes each; 8-bit: v as 256 bytes of
 * int16, qint.c: v16_pos). The AVX2 kernel reads 4-bit x as v words instead (the same 256 bytes a
 * block, qint.c: w4_pos; cpu_qint_quantize_x_words, and cpu_qint_quantize_x_avx2 with its bytes):
 * the same sx, xs and v, so the same T. Kernels: AVX-512 VNNI (qint_avx512_vnni.c), AVX2
 * (qint_avx2.c: vpmaddwd of code words by v words at both widths) and portable C (qint.c). Pure
 * functions; any thread. A kernel reads the record of its own preparation (cpu_qint_quantize_pick).
 *
 *     if (cpu_qint_takes(w)) { cpu_qint_quantize_pick(isa)(x, k, w->q->bits, w->q->group_size, xq);
 *                              c->qint(w, j0, j1, xq, cpu_qint_x_bytes(...), n, out, ldo); }
 */
#ifndef CAIRN_BACKEND_CPU_QINT_H
#define CAIRN_BACKEND_CPU_QINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/qweight.h"

#define QINT_LANES 16
#define QINT_STREAM_MIN_BYTES ((int64_t)1 << 20)   // decode slices this large walk 4 streams (qint_avx512_vnni.c)
#define QINT_XMAX  32512.0f   // 127 * 256: |v| <= this keeps h and l int8

/* Whether w takes the integer path (affine 4 or 8 bit, group 32 / 64 / 128, f16 / bf16 / f32 scales). */
bool   cpu_qint_takes(const struct tensor *w);
/* Bytes of one prepared x row (a multiple of 64) for k inputs at this width and group size. */
size_t cpu_qint_x_bytes(int64_t k, int bits, int gs);
/* Prepares x[k] (one row) into dst (cpu_qint_x_bytes, 64-byte aligned). A lane holding an Inf
 * or NaN gets sx = NaN, so the outputs it feeds are NaN. */
void   cpu_qint_quantize_x(const float *x, int64_t k, int bits, int gs, uint8_t *dst);
typedef void (*cpu_qint_quantize_fn)(const float *x, int64_t k, int bits, int gs, uint8_t *dst);
void   cpu_qint_quantize_x_avx512(const float *x, int64_t k, int bits, int gs, uint8_t *dst);   // the same bytes
/* The same record with 4-bit levels as v words (qint.c: w4_pos), which the AVX2 kernel multiplies
 * by the code words (8-bit: the bytes above). */
void   cpu_qint_quantize_x_words(const float *x, int64_t k, int bits, int gs, uint8_t *dst);
void   cpu_qint_quantize_x_avx2(const float *x, int64_t k, int bits, int gs, uint8_t *dst);   // what cpu_qint_avx2 reads
/* The preparation the kernel of cpu_qint_pick(isa) reads: avx512 with VNNI: cpu_qint_quantize_x_avx512;
 * avx2 (or avx512 without VNNI): cpu_qint_quantize_x_avx2; else cpu_qint_quantize_x. */
cpu_qint_quantize_fn cpu_qint_quantize_pick(const char *isa);

/* out[i * ldo + j] = x_i . row j of w for i < n, j in [j0, j1), x_i prepared at xq + i * ldxq. */
typedef void (*cpu_qint_fn)(const struct tensor *w, int64_t j0, int64_t j1, const uint8_t *xq, size_t ldxq,
                            int64_t n, float *out, int64_t ldo);
cpu_qint_fn cpu_qint_pick(const char *isa);   // "avx512" (with VNNI), "avx2", anything else: portable

void cpu_qint_portable(const struct tensor *w, int64_t j0, int64_t j1, const uint8_t *xq, size_t ldxq, int64_t n,
                       float *out, int64_t ldo);
void cpu_qint_avx512vnni(const struct tensor *w, int64_t j0, int64_t j1, const uint8_t *xq, size_t ldxq, int64_t n,
                         float *out, int64_t ldo);
void cpu_qint_avx2(const struct tensor *w, int64_t j0, int64_t j1, const uint8_t *xq, size_t ldxq, int64_t n,
                   float *out, int64_t ldo);

/* The layout both sides share. */
struct qint_geom {
    int     bits, gs;
    int64_t k, n_groups;
    int64_t groups_pad;     // n_groups rounded up to 16
    int64_t block_codes;    // 128: 64 weight bytes at 4 bits, 128 at 8
    int64_t k_pad;          // k rounded up to whole blocks
    size_t  xblock_bytes;   // a block of a prepared x row: 16 lane scales, then the levels
    size_t  x_bytes;        // one prepared x row
};
struct qint_geom qint_geom(int64_t k, int bits, int gs);
/* Byte offset of weight row `row` of t (packed words, scales or biases: tensors with w's rows). */
static inline size_t qint_row_off(const struct tensor *t, const struct tensor *w, int64_t row)
{
    if (w->ne[2] * w->ne[3] == 1) return (size_t)row * t->nb[1];   // 2-D: no divisions (they cost)
    int64_t i1 = row % w->ne[1], rest = row / w->ne[1];
    return (size_t)i1 * t->nb[1] + (size_t)(rest % w->ne[2]) * t->nb[2] + (size_t)(rest / w->ne[2]) * t->nb[3];
}

/* A weight as the ISA kernels read it: its bases (row 0 of the packed codes, scales, biases) and
 * layout. */
struct qint_w {
    const struct tensor *w;
    struct qint_geom     g;
    const uint8_t       *wbase, *sbase, *bbase;
    enum dtype           sdt;                     // of the scales and biases
    int                  ssize;                   // bytes per scale
    int64_t              row_bytes;
    int                  gshift;                  // log2(group size)
};
static inline struct qint_w qint_w_of(const struct tensor *w)
{
    const struct qweight *q = w->q;
    return (struct qint_w){
        .w = w, .g = qint_geom(w->ne[0], q->bits, q->group_size), .sdt = q->scales.dtype,
        .wbase = (const uint8_t *)w->buf->data + w->offset,
        .sbase = (const uint8_t *)q->scales.buf->data + q->scales.offset,
        .bbase = (const uint8_t *)q->biases.buf->data + q->biases.offset,
        .ssize = (int)dtype_size(q->scales.dtype), .row_bytes = w->ne[0] * q->bits / 8,
        .gshift = __builtin_ctz((unsigned)q->group_size),
    };
}

#endif
