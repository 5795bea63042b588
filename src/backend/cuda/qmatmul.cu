/* qmatmul: the kernels of MLX-quantized weights (DTYPE_QMLX, tensor/qweight.h) on the GPU.
 *
 * Which one runs is decided in matmul.cu (choose_matmul_kernel); this file has:
 *  - k_qgemv: decode rows (up to QGEMV_MAX_N per launch). A warp owns QGEMV_R consecutive weight
 *    rows over all of k (a block QGEMV_WARPS warps); its lanes take consecutive 16-byte chunks of
 *    each row (32 codes at 4 bit, 16 at 8; a 32-code unit at 2/3/5/6 bit), so a warp's loads are
 *    coalesced, and every lane loads its next QGEMV_CH chunks of the QGEMV_R rows (words and raw
 *    scales) before it multiplies the current ones: 8 loads in flight while it computes. (Before: a
 *    warp per 4 rows over all of k measured 0.19 of the bandwidth on H100 at 4 bit, 132.6 tok/s
 *    on the 8B shape; a block per 4 rows with its warps splitting k did one chunk per lane at
 *    k = 4,096, nothing to overlap.) Each code is decoded in registers once and used for every
 *    row of x; per chunk, row and token the kernel sums d = sum v_j x_j (one fma a code: affine
 *    v = 1 + q / 2^bits, built from the bits with a shift and a masked or) and, for affine,
 *    xs = sum x_j, then adds s 2^bits d + (b - s 2^bits) xs: within a few f32 roundings of MLX's
 *    s q + b, the scale and bias applied once a chunk. mxfp8 codes go through the hardware e4m3
 *    -> f16 convert, E2M1 codes are placed into f16 bits (their value times 2^-14): both exact,
 *    as the E8M0 / E4M3 scales. The warp's sums end in one shuffle tree; each row of x is summed
 *    in the same order whatever the launch's row count: batch invariance (cuda-deterministic)
 *    holds as for k_gemv. k_qgemv_glu gives a warp QGEMV_R / 2 rows of gate and the same rows of
 *    up (the GLU in the epilogue). At batch 1 both can take the RMSNorm of x (qnorm: x times the
 *    bf16 norm weight as it is read, the squares summed beside, the sums scaled by 1 / rms at the
 *    end), which saves the norm's launch before q/k/v and before gate + up.
 *  - k_qgemv_mma, k_qgemv_glu_mma: the cuda mode's decode rows at affine 4 bit and 8 bit (groups
 *    of 32 or 64 at 8 bit), outputs wider than 256 (cuda-precise and cuda-deterministic keep
 *    k_qgemv's f32 sums). A block owns a 16-row tile (the GLU: 8 gate rows and the same 8 up rows)
 *    and stages x as bf16 in shared memory once; its 4 or 8 warps split k by scale groups and stream
 *    them, 4 groups a stage with the next 1-3 stages' loads in flight, through m16n8k16 MMAs:
 *    4-bit codes (8-bit codes' two nibbles, two MMAs) exact as bf16 16 + q (a shift and an and-or
 *    per two), the rows of x as the MMA's n (up to 8 a launch), per group s sum (16 + q) x +
 *    (b - 16 s) sum x in f32 (sum x from a ones operand); the warps' sums added in warp order.
 *    Why: k_qgemv spends an f32 fma and a decode per code and row (and re-reads x from L1 per
 *    row of x), which held it near 0.3 of the bandwidth at batch 1 on H100 and made each row of x
 *    cost another pass; here a lane decodes a 4-bit code in about one instruction for all rows of
 *    x and the MMAs do the products. Promise: bf16-class (x rounded to bf16 as the bf16 GEMM
 *    rounds it), f32 sums.
 *  - k_qdequant_chunks: dequantizes rows of a quantized matrix into a bf16 / f32 scratch (a thread
 *    per chunk, the GEMV's decoding; k_qdequant per element for inputs not a multiple of 32), for
 *    the prefill path (rows dequantized, then cuBLAS) and for shapes the GEMV does not take.
 *  - k_qembed: embedding rows of a quantized table.
 *  - k_moe_qgemv, k_moe_qgate_up: the MoE decode path's per-(token, choice) expert GEMVs over a
 *    device table of quantized experts (moe.cu), k_qgemv's and k_qgemv_glu's sums.
 *
 * ==== Which kernel runs ====
 * matmul.cu's choose_matmul_kernel picks the path (its table: qgemv for decode rows and narrow
 * outputs, qdeq_cublas for prefill, qdeq_full for operands the GEMV does not take); here the
 * launchers pick the instance and choose_qdequant_kernel the dequantizer:
 *
 *  call                    | rows of x        | format, operands              | kernel
 *  ------------------------+------------------+-------------------------------+---------------------------
 *  qgemv, qgemv_multi,     | up to 8 a launch | cuda mode, affine 4 bit g32-  | k_qgemv_mma<BITS, GS, NORM>,
 *   qgemv_glu              |   (fewer past 96 |   128, 8 bit g32-64, outputs  |   k_qgemv_glu_mma (gate, up
 *                          |   KB of bf16 x)  |   > 256, as below             |   of one format)
 *  qgemv, qgemv_multi,     | 1, 2, 3-4, 5-8   | k % 32, x and w 16-byte       | k_qgemv<MODE, BITS, N> with
 *   qgemv_glu              | a launch (more:  |   aligned (cuda_qgemv_fits),  |   N = 1, 2, 4, 8 (_glu)
 *                          |   8 at a time)   |   every mode and width        |
 *  moe_qgemv, moe_qgate_up | 1 per slot       |   "                           | k_moe_qgemv, k_moe_qgate_up
 *  qdequant (prefill)      | chunks of rows   | k % 32, w 16-byte aligned,    | k_qdequant_chunks (a thread
 *                          |   (matmul.cu)    |   to bf16 or f32              |   per 16-byte chunk)
 *                          |                  | other                         | k_qdequant (per element)
 *
 * Prefill is dequantize + cuBLAS (rows to bf16 in one bandwidth-bound launch per chunk of up to
 * 32M weights, then the bf16 GEMM a bf16 model runs). The extra cost is the packed read and the
 * bf16 write: for the Qwen3-8B shape about 4 + 15 GB, some 6 ms at 3 TB/s beside a 140 ms 4K bf16
 * step (an estimate; bench/kernels/qmatmul measures it). A GEMM that dequantizes tiles into
 * mma.sync MMAs would skip the write but give up cuBLAS's wgmma speed on sm_90, which costs more.
 */
#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/mma.cuh"

#define QGEMV_WARPS 4   // warps per block
#define QGEMV_R     4   // weight rows per warp (the GLU kernels: 2 gate rows and the same 2 up rows)
#define QGEMV_CH    2   // chunks per row a lane loads at once (a pipeline stage)

enum qdeq_kernel { QDEQ_CHUNKS, QDEQ_ELEMS };

/* ==== Decoding ==== */

/* What one lane loads at a time: 16 bytes of a row at 4 and 8 bit (32 / 16 codes), a 32-code unit
 * (4 * bits bytes, 8- or 4-byte loads) at the other widths. Every chunk lies inside one scale group
 * (groups are 32-128 codes, nvfp4's 16: two groups per chunk). Rows start 16-byte aligned for
 * cuda_qgemv_fits' operands (the tensor's base, and row strides of k * bits / 8 bytes with k % 32 == 0
 * at 4 and 8 bit; 8-byte strides at 2 and 6 bit, 4-byte ones at 3 and 5). */
template <int BITS> struct qchunk {
    static constexpr int codes = BITS % 4 == 0 ? 128 / BITS : 32;
    static constexpr int words = codes * BITS / 32;
};

/* The scale groups one chunk spans (nvfp4: 16-code groups in 32-code chunks). */
template <int MODE> struct qgroups { static constexpr int per_chunk = MODE == QMODE_NVFP4 ? 2 : 1; };

/* A scale (or bias) as stored: bf16 / f16 / f32 for affine (sdt), a byte otherwise. Weights' arrays
 * never change while a kernel runs, so they take the read-only path. */
template <int MODE>
__device__ __forceinline__ uint32_t q_scale_raw(const void *p, int sdt, size_t i)
{
    if constexpr (MODE != QMODE_AFFINE) return __ldg(reinterpret_cast<const uint8_t *>(p) + i);
    if (sdt == QSCALE_F32) return __float_as_uint(__ldg(reinterpret_cast<const float *>(p) + i));
    return __ldg(reinterpret_cast<const unsigned short *>(p) + i);
}

/* The value of a raw scale: E8M0 for mxfp4 / mxfp8 (0xFF -> +Inf, 0 -> 2^-127, as MLX), E4M3 for
 * nvfp4, bf16 / f16 / f32 for affine. */
template <int MODE>
__device__ __forceinline__ float q_scale_val(uint32_t s, int sdt)
{
    if constexpr (MODE == QMODE_NVFP4) {
        return __half2float(__half(__nv_cvt_fp8_to_halfraw((__nv_fp8_storage_t)s, __NV_E4M3)));
    } else if constexpr (MODE != QMODE_AFFINE) {
        return __uint_as_float(s == 0xFF ? 0x7f800000u : s ? s << 23 : 0x00400000u);
    } else {
        return sdt == QSCALE_BF16 ? __uint_as_float(s << 16)
             : sdt == QSCALE_F16  ? __half2float(__ushort_as_half((unsigned short)s))
                                  : __uint_as_float(s);
    }
}

/* The scale number i of an array of scales (sdt: enum qscale_dtype), as f32. */
__device__ __forceinline__ float q_scale(const void *p, int sdt, size_t i)
{
    switch (sdt) {
    case QSCALE_E8M0: return q_scale_val<QMODE_MXFP4>(q_scale_raw<QMODE_MXFP4>(p, sdt, i), sdt);
    case QSCALE_E4M3: return q_scale_val<QMODE_NVFP4>(q_scale_raw<QMODE_NVFP4>(p, sdt, i), sdt);
    default: return q_scale_val<QMODE_AFFINE>(q_scale_raw<QMODE_AFFINE>(p, sdt, i), sdt);
    }
}

/* 1 + code j / 2^BITS of a chunk held in words wd (qweight.h's bit stream), as an f32 (the code as
 * the top mantissa bits of 1.0): one shift and one masked or, the shift amounts known at compile
 * time (codes that straddle two words take a funnel shift first). */
template <int BITS>
__device__ __forceinline__ float code_one_plus(const uint32_t *wd, int j)
{
    const int bit = j * BITS, i = bit >> 5, s = bit & 31, to = 23 - BITS;
    const uint32_t mask = ((1u << BITS) - 1) << to;
    uint32_t v;
    if (s + BITS > 32) v = __funnelshift_r(wd[i], wd[i + 1], s) << to;
    else v = s >= to ? wd[i] >> (s - to) : wd[i] << (to - s);
    return __uint_as_float((v & mask) | 0x3f800000u);
}

/* Codes c0 .. c0 + 7 of a chunk (c0 a multiple of 8) before their scale: affine 1 + q / 2^bits
 * (the value is s 2^bits times it plus b - s 2^bits), E4M3 elements exactly, E2M1 elements times
 * 2^-14 (placed into f16 bits: the f16 holds value * 2^-14). All exact. */
template <int MODE, int BITS>
__device__ __forceinline__ void chunk_decode8(const uint32_t *wd, int c0, float *v)
{
    if constexpr (MODE == QMODE_AFFINE) {
#pragma unroll
        for (int j = 0; j < 8; j++) v[j] = code_one_plus<BITS>(wd, c0 + j);
    } else if constexpr (MODE == QMODE_MXFP8) {
        // codes c0 .. c0 + 7 are bytes of words c0 / 4 and c0 / 4 + 1
#pragma unroll
        for (int h = 0; h < 4; h++) {
            const uint32_t word = wd[c0 / 4 + h / 2];
            const __nv_fp8x2_storage_t pair = (__nv_fp8x2_storage_t)(h & 1 ? word >> 16 : word & 0xffff);
            const float2 f = __half22float2(__half2(__nv_cvt_fp8x2_to_halfraw2(pair, __NV_E4M3)));
            v[2 * h] = f.x;
            v[2 * h + 1] = f.y;
        }
    } else {   // E2M1 (mxfp4, nvfp4): codes c0 .. c0 + 7 are the nibbles of word c0 / 8
        const uint32_t word = wd[c0 / 8];
#pragma unroll
        for (int j = 0; j < 4; j++) {
            // nibbles j and j + 4 into the f16 pair's bits: magnitude (e, m) at 9..11, sign at 15
            const uint32_t t = word >> (4 * j);
            const uint32_t hb = ((t << 9) & 0x0e000e00u) | ((t << 12) & 0x80008000u);
            const float2 f = __half22float2(*reinterpret_cast<const __half2 *>(&hb));
            v[j] = f.x;
            v[j + 4] = f.y;
        }
    }
}

/* What chunk_decode8's values are multiplied by to be elements: 2^14 for E2M1 (exact; applied
 * before the scale, which may be as large as 2^127). */
template <int MODE>
__device__ __forceinline__ constexpr float decode_unit() { return MODE == QMODE_MXFP4 || MODE == QMODE_NVFP4 ? 16384.0f : 1.0f; }

/* The factors that turn chunk_decode8's values into weights: affine w = v sb + bb with sb = s 2^bits,
 * bb = b - s 2^bits; the floating-point modes w = (v decode_unit) sb with sb = s. */
template <int MODE, int BITS>
__device__ __forceinline__ void chunk_factors(uint32_t s_raw, uint32_t b_raw, int sdt, float &sb, float &bb)
{
    const float s = q_scale_val<MODE>(s_raw, sdt);
    if constexpr (MODE == QMODE_AFFINE) {
        sb = s * (float)(1 << BITS);
        bb = q_scale_val<MODE>(b_raw, sdt) - sb;
    } else {
        sb = s;
        bb = 0.0f;
    }
}

/* A chunk's packed words: one 16-byte load at 4 and 8 bit, 8-byte loads at 2 and 6, words at 3
 * and 5; bypassing L1 (weights are read once) and asking L2 for 256-byte sectors. */
template <int BITS>
__device__ __forceinline__ void load_chunk(uint32_t *wd, const uint32_t *p)
{
    constexpr int W = qchunk<BITS>::words;
    if constexpr (W % 4 == 0) {
#pragma unroll
        for (int v = 0; v < W / 4; v++)
            asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
                : "=r"(wd[4 * v]), "=r"(wd[4 * v + 1]), "=r"(wd[4 * v + 2]), "=r"(wd[4 * v + 3]) : "l"(p + 4 * v));
    } else if constexpr (W % 2 == 0) {
#pragma unroll
        for (int v = 0; v < W / 2; v++)
            asm("ld.global.nc.L1::no_allocate.v2.u32 {%0, %1}, [%2];" : "=r"(wd[2 * v]), "=r"(wd[2 * v + 1]) : "l"(p + 2 * v));
    } else {
#pragma unroll
        for (int v = 0; v < W; v++) asm("ld.global.nc.L1::no_allocate.u32 %0, [%1];" : "=r"(wd[v]) : "l"(p + v));
    }
}

/* ==== Decode GEMV ==== */

/* The RMSNorm fused into a batch-1 GEMV (norm_matmul_n, matmul_glu): x is taken as
 * x * (w + w_offset) and the sums scaled by 1 / rms(x) at the end; w NULL: none. */
struct qnorm {
    const __nv_bfloat16 *w;   // [k]
    float                eps, w_offset;
};

/* The QGEMV_R weight rows one warp reduces, of one mode and width: row r is row[r] of qm[r], in
 * format fa for r < QGEMV_R / 2 and fb for the rest (the GLU kernels put gate rows first, up rows
 * second; the plain GEMV passes one format twice). */
struct qwarp_rows {
    qmat qm[QGEMV_R];
    int  row[QGEMV_R];
};

/* Chunk ch of every row of a warp as one lane holds it: packed words and raw scales / biases. */
template <int MODE, int BITS>
struct qstage {
    uint32_t wd[QGEMV_R][qchunk<BITS>::words];
    uint32_t s[QGEMV_R][qgroups<MODE>::per_chunk];
    uint32_t b[QGEMV_R];
};

template <int MODE, int BITS>
__device__ __forceinline__ void qstage_load(qstage<MODE, BITS> &st, const qwarp_rows &wr, const qfmt &fa, const qfmt &fb,
                                            int ch)
{
    using C = qchunk<BITS>;
    const int row_words = fa.k / 32 * BITS;
#pragma unroll
    for (int r = 0; r < QGEMV_R; r++) load_chunk<BITS>(st.wd[r], wr.qm[r].w + (size_t)wr.row[r] * row_words + (size_t)ch * C::words);
#pragma unroll
    for (int r = 0; r < QGEMV_R; r++) {
        const qfmt &f = r < QGEMV_R / 2 ? fa : fb;
        const size_t g = (size_t)wr.row[r] * f.n_groups + (size_t)ch * C::codes / f.group_size;
#pragma unroll
        for (int h = 0; h < qgroups<MODE>::per_chunk; h++) st.s[r][h] = q_scale_raw<MODE>(wr.qm[r].scales, f.sdt, g + h);
        st.b[r] = MODE == QMODE_AFFINE ? q_scale_raw<MODE>(wr.qm[r].biases, f.sdt, g) : 0u;
    }
}

/* acc[r][t] += the weights of the stage's chunk ch of row r . x[t] (t < n), for every r. Per row and
 * token: d = sum of v_j x_j over the chunk's codes in order (one chain of fmas), and for affine also
 * xs = sum of x_j, then acc += sb d + bb xs, so a code costs its decode and one fma per token (the
 * scale and bias once a chunk); E2M1 / E4M3: acc += sb (d decode_unit) per scale group. The same sequence for
 * every token whatever n is: batch invariance. */
template <int MODE, int BITS, int N, bool NORM>
__device__ __forceinline__ void qstage_fma(float (&acc)[QGEMV_R][N], float (&ss)[N], const qstage<MODE, BITS> &st,
                                           const qfmt &fa, const qfmt &fb, const float *x, size_t ldx, int n, int ch,
                                           const qnorm &nm)
{
    using C = qchunk<BITS>;
    constexpr int G = qgroups<MODE>::per_chunk;
    float sb[QGEMV_R][G], bb[QGEMV_R];
#pragma unroll
    for (int r = 0; r < QGEMV_R; r++) {
        const int sdt = (r < QGEMV_R / 2 ? fa : fb).sdt;
#pragma unroll
        for (int h = 0; h < G; h++) chunk_factors<MODE, BITS>(st.s[r][h], st.b[r], sdt, sb[r][h], bb[r]);
    }
    float d[QGEMV_R][N][G], xs[N];
#pragma unroll
    for (int t = 0; t < N; t++) {
        xs[t] = 0.0f;
#pragma unroll
        for (int r = 0; r < QGEMV_R; r++)
#pragma unroll
            for (int h = 0; h < G; h++) d[r][t][h] = 0.0f;
    }
#pragma unroll
    for (int c = 0; c < C::codes / 8; c++) {
        const int h = G == 2 ? c / 2 : 0;   // nvfp4: codes 0-15 in the first group
        float v[QGEMV_R][8], g[8];
#pragma unroll
        for (int r = 0; r < QGEMV_R; r++) chunk_decode8<MODE, BITS>(st.wd[r], 8 * c, v[r]);
        if (NORM) {   // the RMSNorm weight of these 8 inputs (+ w_offset), bf16
            const uint4 u = *reinterpret_cast<const uint4 *>(nm.w + (size_t)ch * C::codes + 8 * c);
            const uint32_t uw[4] = { u.x, u.y, u.z, u.w };
#pragma unroll
            for (int i = 0; i < 4; i++) {
                g[2 * i] = __uint_as_float(uw[i] << 16) + nm.w_offset;
                g[2 * i + 1] = __uint_as_float(uw[i] & 0xffff0000u) + nm.w_offset;
            }
        }
#pragma unroll
        for (int t = 0; t < N; t++) {
            if (t >= n) break;
            // not __ldg: x is written by the kernel this one overlaps (PDL)
            const float4 *xv = reinterpret_cast<const float4 *>(x + (size_t)t * ldx + (size_t)ch * C::codes + 8 * c);
            const float4 a = xv[0], b = xv[1];
            float xe[8] = { a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w };
            if (NORM)
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    ss[t] = fmaf(xe[j], xe[j], ss[t]);
                    xe[j] *= g[j];
                }
            if (MODE == QMODE_AFFINE)
#pragma unroll
                for (int j = 0; j < 8; j++) xs[t] += xe[j];
#pragma unroll
            for (int r = 0; r < QGEMV_R; r++)
#pragma unroll
                for (int j = 0; j < 8; j++) d[r][t][h] = fmaf(v[r][j], xe[j], d[r][t][h]);
        }
    }
#pragma unroll
    for (int r = 0; r < QGEMV_R; r++)
#pragma unroll
        for (int t = 0; t < N; t++) {
            if (MODE == QMODE_AFFINE) {
                acc[r][t] = fmaf(sb[r][0], d[r][t][0], fmaf(bb[r], xs[t], acc[r][t]));
            } else {
#pragma unroll
                for (int h = 0; h < G; h++) acc[r][t] = fmaf(sb[r][h], d[r][t][h] * decode_unit<MODE>(), acc[r][t]);
            }
        }
}

/* acc[r][t] = row r of the warp . x[t] for t < n <= N (x rows ldx floats apart, 16-byte aligned),
 * summed over the warp (every lane holds the sums on return). The lanes take consecutive chunks
 * (each load instruction of a warp reads contiguous bytes), a lane chunks lane, lane + 32, ... in
 * ascending order, QGEMV_CH of them a stage; the next stage's words and scales are loaded before
 * the current stage is multiplied, so a lane has QGEMV_R * QGEMV_CH 16-byte loads in flight while
 * it computes (all of its loads at once for k = 4,096 at 4 bit). Waits (PDL) after issuing the
 * first stage's loads. */
template <int MODE, int BITS, int N, bool NORM = false>
__device__ __forceinline__ void qwarp_dot(float (&acc)[QGEMV_R][N], const qwarp_rows &wr, const qfmt &fa, const qfmt &fb,
                                          const float *x, size_t ldx, int n, int lane, const qnorm &nm = qnorm())
{
    constexpr int CH = QGEMV_CH, STEP = 32 * QGEMV_CH;
    const int n_chunks = fa.k / qchunk<BITS>::codes;
    float ss[N];   // NORM: the lane's sums of x^2
#pragma unroll
    for (int t = 0; t < N; t++) {
        ss[t] = 0.0f;
#pragma unroll
        for (int r = 0; r < QGEMV_R; r++) acc[r][t] = 0.0f;
    }
    qstage<MODE, BITS> cur[CH], nxt[CH];
#pragma unroll
    for (int c = 0; c < CH; c++)
        if (32 * c + lane < n_chunks) qstage_load<MODE, BITS>(cur[c], wr, fa, fb, 32 * c + lane);
    pdl_wait();   // x comes from the kernel before
    for (int base = 0; base < n_chunks; base += STEP) {
        const bool more = base + STEP < n_chunks;
        if (more)
#pragma unroll
            for (int c = 0; c < CH; c++)
                if (base + STEP + 32 * c + lane < n_chunks) qstage_load<MODE, BITS>(nxt[c], wr, fa, fb, base + STEP + 32 * c + lane);
#pragma unroll
        for (int c = 0; c < CH; c++)
            if (base + 32 * c + lane < n_chunks)
                qstage_fma<MODE, BITS, N, NORM>(acc, ss, cur[c], fa, fb, x, ldx, n, base + 32 * c + lane, nm);
        if (more)
#pragma unroll
            for (int c = 0; c < CH; c++) cur[c] = nxt[c];
    }
#pragma unroll
    for (int t = 0; t < N; t++) {
        // NORM: every warp sums the same squares in the same order, so all rows see the same rms
        const float inv = NORM ? rsqrtf(warp_sum(ss[t]) / (float)fa.k + nm.eps) : 1.0f;
#pragma unroll
        for (int r = 0; r < QGEMV_R; r++) acc[r][t] = NORM ? warp_sum(acc[r][t]) * inv : warp_sum(acc[r][t]);
    }
}

/* out_s[t, row] (+)= w_s[row] . x[t] (+ bias_s[row]) for t < n <= N, for up to three matrices of
 * one format sharing x (q/k/v): segment s owns blocks [blk0[s], blk0[s + 1]), a block
 * QGEMV_WARPS * QGEMV_R consecutive rows, a warp QGEMV_R of them over all of k. */
template <int MODE, int BITS, int N, bool NORM>
__global__ void __launch_bounds__(QGEMV_WARPS * 32) k_qgemv(qsegs sg, const float *x, qfmt f, int n, qnorm nm)
{
    pdl_trigger();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int seg = 0;
#pragma unroll
    for (int j = 1; j < QGEMV_MAX_SEGS; j++)
        if (j < sg.n_segs && (int)blockIdx.x >= sg.blk0[j]) seg = j;
    const int m = seg_pick(sg.m, seg);
    const int row0 = (((int)blockIdx.x - seg_pick(sg.blk0, seg)) * QGEMV_WARPS + warp) * QGEMV_R;
    if (row0 >= m) return;   // nothing to read or write (the kernel before is not waited for)
    qwarp_rows wr;
    const qmat qm = seg_pick(sg.qm, seg);
#pragma unroll
    for (int r = 0; r < QGEMV_R; r++) {
        wr.qm[r] = qm;
        wr.row[r] = min(row0 + r, m - 1);
    }
    float acc[QGEMV_R][N];
    qwarp_dot<MODE, BITS, N, NORM>(acc, wr, f, f, x, f.k, n, lane, nm);
    float *out = seg_pick(sg.out, seg);
    const void *bias = seg_pick(sg.bias, seg);
#pragma unroll
    for (int r = 0; r < QGEMV_R; r++)
#pragma unroll
        for (int t = 0; t < N; t++) {
            const int row = row0 + r;
            if (lane != r * N + t || row >= m || t >= n) continue;   // one lane per output
            const float v = acc[r][t] + (bias ? q_scale(bias, sg.bias_dt, row) : 0.0f);
            float *o = out + (size_t)t * m + row;
            *o = sg.accumulate ? *o + v : v;
        }
}

/* out[t, row] = act(gate[row] . x[t]) * (up[row] . x[t]) for t < n <= N (an FFN's gate and up rows
 * in one warp: the GLU costs no launch); a warp owns QGEMV_R / 2 rows of each. Each sum as
 * k_qgemv's. */
template <int MODE, int BITS, int N, bool NORM>
__global__ void __launch_bounds__(QGEMV_WARPS * 32) k_qgemv_glu(float *out, const float *x, qmat g, qmat u, qfmt fg,
                                                               qfmt fu, int n, int m, int act, qnorm nm)
{
    pdl_trigger();
    constexpr int H = QGEMV_R / 2;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int row0 = (blockIdx.x * QGEMV_WARPS + warp) * H;
    if (row0 >= m) return;
    qwarp_rows wr;
#pragma unroll
    for (int r = 0; r < QGEMV_R; r++) {
        wr.qm[r] = r < H ? g : u;
        wr.row[r] = min(row0 + r % H, m - 1);
    }
    float acc[QGEMV_R][N];
    qwarp_dot<MODE, BITS, N, NORM>(acc, wr, fg, fu, x, fg.k, n, lane, nm);
#pragma unroll
    for (int r = 0; r < H; r++)
#pragma unroll
        for (int t = 0; t < N; t++)
            if (lane == r * N + t && row0 + r < m && t < n) out[(size_t)t * m + row0 + r] = glu_act(acc[r][t], act) * acc[H + r][t];
}

/* ==== Tensor-core decode GEMV (affine 4 bit, the cuda mode) ==== */

#define QMMA_WARPS    8            // most warps of a block (4 or 8: qmma_warps); they split k by scale groups
#define QMMA_U        4            // scale groups a lane loads per pipeline stage (= lanes per row)
#define QMMA_MAX_N    8            // rows of x one launch takes (the MMA's n)
#define QMMA_SMEM_MAX (96 << 10)   // most bytes of staged x a block holds
#define QMMA_NARROW_M 256          // outputs this narrow keep the f32 GEMV (matmul.cu's GEMV_NARROW_M)

/* A lane's two weight rows: rows g and g + 8 of its block's 16-row tile (g = lane / 4), as the
 * m16n8k16 A operand holds them. */
struct qmma_rows {
    const uint32_t *w[2];          // the rows' packed words
    const void     *s[2], *b[2];   // the scales and biases arrays of their matrices
    size_t          g0[2];         // index of each row's first group in them
};

/* Words of a row a lane holds per group: its quarter of the group's codes (lane % 4 takes it). */
template <int BITS, int GS>
__host__ __device__ constexpr int qmma_words() { return GS * BITS / 128; }

/* What a lane loads for QMMA_U consecutive groups G0.. of its two rows: its words of each, and
 * the raw scale and bias of both rows for group G0 + lane % 4 (the row's four lanes load one group
 * each; qmma_stage_mma shuffles). */
template <int BITS, int GS>
struct qmma_stage {
    uint32_t a[QMMA_U][2][qmma_words<BITS, GS>()];
    uint32_t s[2], b[2];
};

/* Stages a lane holds (D - 1 in flight while it multiplies one): 2-4 KB of a warp's weights in
 * flight, 12-16 warps an SM (Little: ~3 TB/s x ~1.5 us under load / 132 SMs = 34 KB an SM). */
template <int BITS, int GS>
__host__ __device__ constexpr int qmma_depth() { return qmma_words<BITS, GS>() == 1 ? 4 : qmma_words<BITS, GS>() == 2 ? 3 : 2; }

template <int W>
__device__ __forceinline__ void load_words(uint32_t *wd, const uint32_t *p)
{
    if constexpr (W == 4)
        asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
            : "=r"(wd[0]), "=r"(wd[1]), "=r"(wd[2]), "=r"(wd[3]) : "l"(p));
    else if constexpr (W == 2)
        asm("ld.global.nc.L1::no_allocate.L2::256B.v2.u32 {%0, %1}, [%2];" : "=r"(wd[0]), "=r"(wd[1]) : "l"(p));
    else
        asm("ld.global.nc.L1::no_allocate.L2::256B.u32 %0, [%1];" : "=r"(wd[0]) : "l"(p));
}

/* Groups G0 .. G0 + QMMA_U - 1 (those below G1) into st. */
template <int BITS, int GS>
__device__ __forceinline__ void qmma_stage_load(qmma_stage<BITS, GS> &st, const qmma_rows &rw, int sdt, int G0, int G1,
                                                int t)
{
    constexpr int W = qmma_words<BITS, GS>();
#pragma unroll
    for (int u = 0; u < QMMA_U; u++)
        if (G0 + u < G1)
#pragma unroll
            for (int r = 0; r < 2; r++) load_words<W>(st.a[u][r], rw.w[r] + (size_t)(G0 + u) * (4 * W) + t * W);
    if (G0 + t < G1)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            st.s[r] = q_scale_raw<QMODE_AFFINE>(rw.s[r], sdt, rw.g0[r] + G0 + t);
            st.b[r] = q_scale_raw<QMODE_AFFINE>(rw.b[r], sdt, rw.g0[r] + G0 + t);
        }
}

/* Nibbles J and J + 4 of a word w as the bf16 pair (16 + n_J, 16 + n_J+4), exact: shifted so that
 * their bits sit at 3..6 of each half, the mantissa's top under 16's exponent (a shift and an
 * and-or). At 4 bit the nibbles are codes j, j + 4; at 8 bit J = 0..3 give the low nibbles of
 * codes 0, 2, the high ones of 0, 2, the low of 1, 3, the high of 1, 3. The 16 comes off in the
 * group's epilogue; 128 + n with the bits unshifted would save the shift but leave the MMA's f32
 * sums ten times larger than the result they cancel to, and subtracting it in bf16 costs an fma a
 * pair. */
template <int J>
__device__ __forceinline__ uint32_t code_pair_bf16(uint32_t w)
{
    return ((J == 0 ? w << 3 : w >> (4 * J - 3)) & 0x00780078u) | 0x41804180u;
}

/* c = a b for one m16n8k16 tile of bf16 inputs, the f32 sums started from zero (a zero register
 * as the C operand: no per-tile clearing). */
__device__ __forceinline__ void mma16816_bf16_from0(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%10,%10,%10,%10};\n"
                 : "=f"(c[0]), "=f"(c[1]), "=f"(c[2]), "=f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "f"(0.0f));
}

/* acc (the lane's C fragment: rows g, g + 8 by rows of x 2t, 2t + 1) += the stage's groups . x.
 * 4 bit: a register of the A operand holds codes j and j + 4 of a word (x is staged in that
 * order), a word two k-steps; per group the MMAs give c = sum (16 + q) x~ and, from a ones
 * operand, o = sum x~ (x~: x rounded to bf16), and acc += s c + (b - 16 s) o = s sum q x~ +
 * b sum x~: the scale and bias applied once a group in f32. 8 bit: a word (codes 0-3) is one
 * k-step, its codes' low nibbles one MMA (c) and high nibbles another (h), x staged as codes
 * 0, 2, 1, 3: acc += s (16 h + c) + (b - 272 s) o. xs: the staged row of x this lane's B operand
 * reads (lane / 4 < rows of x), or NULL (zeros). Groups at and past G1 are skipped. */
template <int BITS, int GS>
__device__ __forceinline__ void qmma_stage_mma(float (&acc)[4], const qmma_stage<BITS, GS> &st, const uint32_t *xs,
                                               int sdt, int G0, int G1, int lane)
{
    constexpr int W = qmma_words<BITS, GS>();
    const int t = lane & 3;
    const uint32_t ones[4] = { 0x3f803f80u, 0x3f803f80u, 0x3f803f80u, 0x3f803f80u };   // bf16 1.0 pairs
#pragma unroll
    for (int u = 0; u < QMMA_U; u++) {
        if (G0 + u >= G1) break;   // the same for the whole warp
        const int G = G0 + u, src = (lane & ~3) | u;
        float sc[2], bb[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            sc[r] = q_scale_val<QMODE_AFFINE>(__shfl_sync(0xffffffffu, st.s[r], src), sdt);
            bb[r] = fmaf(BITS == 4 ? -16.0f : -272.0f, sc[r], q_scale_val<QMODE_AFFINE>(__shfl_sync(0xffffffffu, st.b[r], src), sdt));
        }
        float c[4], o[4], h[4];
#pragma unroll
        for (int v = 0; v < W; v++) {
            // the lane's x for this word: 4 bit the unit of its 8 codes, 8 bit half a unit
            const size_t code0 = (size_t)G * GS + t * (GS / 4) + v * (32 / BITS);
            uint4 xb = make_uint4(0u, 0u, 0u, 0u);
            if (BITS == 4 && xs) xb = *reinterpret_cast<const uint4 *>(xs + code0 / 2);
            if (BITS == 8 && xs) {
                const uint2 x2 = *reinterpret_cast<const uint2 *>(xs + code0 / 2);
                xb.x = x2.x;
                xb.y = x2.y;
            }
            uint32_t p[2][4];
#pragma unroll
            for (int r = 0; r < 2; r++) {
                const uint32_t w = st.a[u][r][v];
                p[r][0] = code_pair_bf16<0>(w);
                p[r][1] = code_pair_bf16<1>(w);
                p[r][2] = code_pair_bf16<2>(w);
                p[r][3] = code_pair_bf16<3>(w);
            }
            // A: {row g k 2t..2t+1, row g+8 k 2t..2t+1, row g k 2t+8.., row g+8 k 2t+8..}; B: k 2t.., k 2t+8..
            if (BITS == 4) {
                const uint32_t a0[4] = { p[0][0], p[1][0], p[0][1], p[1][1] }, a1[4] = { p[0][2], p[1][2], p[0][3], p[1][3] };
                if (v == 0) {
                    mma16816_bf16_from0(c, a0, xb.x, xb.y);
                    mma16816_bf16_from0(o, ones, xb.x, xb.y);
                } else {
                    mma16816<__nv_bfloat16>(c, a0, xb.x, xb.y);
                    mma16816<__nv_bfloat16>(o, ones, xb.x, xb.y);
                }
                mma16816<__nv_bfloat16>(c, a1, xb.z, xb.w);
                mma16816<__nv_bfloat16>(o, ones, xb.z, xb.w);
            } else {
                const uint32_t lo[4] = { p[0][0], p[1][0], p[0][2], p[1][2] }, hi[4] = { p[0][1], p[1][1], p[0][3], p[1][3] };
                if (v == 0) {
                    mma16816_bf16_from0(c, lo, xb.x, xb.y);
                    mma16816_bf16_from0(h, hi, xb.x, xb.y);
                    mma16816_bf16_from0(o, ones, xb.x, xb.y);
                } else {
                    mma16816<__nv_bfloat16>(c, lo, xb.x, xb.y);
                    mma16816<__nv_bfloat16>(h, hi, xb.x, xb.y);
                    mma16816<__nv_bfloat16>(o, ones, xb.x, xb.y);
                }
            }
        }
        if (BITS == 8)
#pragma unroll
            for (int i = 0; i < 4; i++) c[i] = fmaf(16.0f, h[i], c[i]);
#pragma unroll
        for (int i = 0; i < 4; i++) acc[i] = fmaf(sc[i / 2], c[i], fmaf(bb[i / 2], o[i], acc[i]));
    }
}

/* The block's 16-row tile . x[0 .. n) (n <= QMMA_MAX_N). The block stages x as bf16 in shared
 * memory (dynamic, n * (k / 8 + 1) 16-byte units: each 8 codes' values in the order 0,4,1,5,2,6,3,7,
 * a unit of padding a row against bank conflicts) once, after issuing its first weight loads
 * (PDL: x is the kernel before's), with the RMSNorm when NORM (x times the norm weight; the sums
 * scaled by 1 / rms at the end, n = 1). Warp w takes scale groups [w NG / 4, (w + 1) NG / 4) and
 * streams them QMMA_U a stage, the next stage's loads in flight while it multiplies; the warps'
 * sums are added in warp order (shared memory). Returns true on warp 0, whose c is the tile's
 * C fragment: c[0], c[1] row g, rows of x 2t, 2t + 1; c[2], c[3] row g + 8. */
template <int BITS, int GS, bool NORM>
__device__ __forceinline__ bool qmma_tile(float (&c)[4], const qmma_rows &rw, const float *x, int k, int sdt, int n,
                                          const qnorm &nm)
{
    extern __shared__ __align__(16) uint4 xs_s[];
    __shared__ float red[QMMA_WARPS][32][4];
    __shared__ float ss_s[QMMA_WARPS];
    const int n_warps = blockDim.x >> 5;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, t = lane & 3;
    const int n_groups = k / GS, G_lo = warp * n_groups / n_warps, G_hi = (warp + 1) * n_groups / n_warps;
    const int units = k / 8, row_units = units + 1;
    constexpr int D = qmma_depth<BITS, GS>();
    qmma_stage<BITS, GS> st[D];
#pragma unroll
    for (int d = 0; d < D - 1; d++)
        if (G_lo + d * QMMA_U < G_hi) qmma_stage_load<BITS, GS>(st[d], rw, sdt, G_lo + d * QMMA_U, G_hi, t);
    pdl_wait();   // x comes from the kernel before
    float ss = 0.0f;
#pragma unroll 4
    for (int i = threadIdx.x; i < n * units; i += blockDim.x) {
        const int tok = i / units, u = i - tok * units;
        const float4 *xp = reinterpret_cast<const float4 *>(x + (size_t)tok * k + 8 * u);
        float4 a = xp[0], b = xp[1];
        if (NORM) {
            ss += a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w + b.x * b.x + b.y * b.y + b.z * b.z + b.w * b.w;
            const uint4 gw = *reinterpret_cast<const uint4 *>(nm.w + 8 * u);
            a.x *= __uint_as_float(gw.x << 16) + nm.w_offset;
            a.y *= __uint_as_float(gw.x & 0xffff0000u) + nm.w_offset;
            a.z *= __uint_as_float(gw.y << 16) + nm.w_offset;
            a.w *= __uint_as_float(gw.y & 0xffff0000u) + nm.w_offset;
            b.x *= __uint_as_float(gw.z << 16) + nm.w_offset;
            b.y *= __uint_as_float(gw.z & 0xffff0000u) + nm.w_offset;
            b.z *= __uint_as_float(gw.w << 16) + nm.w_offset;
            b.w *= __uint_as_float(gw.w & 0xffff0000u) + nm.w_offset;
        }
        // the A operand's code order: 4 bit 0,4 1,5 2,6 3,7; 8 bit 0,2 1,3 4,6 5,7
        xs_s[tok * row_units + u] =
            BITS == 4 ? make_uint4(pack2<__nv_bfloat16>(a.x, b.x), pack2<__nv_bfloat16>(a.y, b.y),
                                   pack2<__nv_bfloat16>(a.z, b.z), pack2<__nv_bfloat16>(a.w, b.w))
                      : make_uint4(pack2<__nv_bfloat16>(a.x, a.z), pack2<__nv_bfloat16>(a.y, a.w),
                                   pack2<__nv_bfloat16>(b.x, b.z), pack2<__nv_bfloat16>(b.y, b.w));
    }
    if (NORM) {
        ss = warp_sum(ss);
        if (lane == 0) ss_s[warp] = ss;
    }
    __syncthreads();
    const int tok = lane >> 2;
    const uint32_t *xs = tok < n ? reinterpret_cast<const uint32_t *>(xs_s + tok * row_units) : NULL;
    float acc[4] = { 0.0f, 0.0f, 0.0f, 0.0f };
    for (int G0 = G_lo; G0 < G_hi; G0 += D * QMMA_U) {   // D stages a turn: the buffers rotate, no copies
#pragma unroll
        for (int d = 0; d < D; d++) {
            const int G_mul = G0 + d * QMMA_U, G_load = G_mul + (D - 1) * QMMA_U;
            if (G_load < G_hi) qmma_stage_load<BITS, GS>(st[(d + D - 1) % D], rw, sdt, G_load, G_hi, t);
            if (G_mul < G_hi) qmma_stage_mma<BITS, GS>(acc, st[d], xs, sdt, G_mul, G_hi, lane);
        }
    }
#pragma unroll
    for (int i = 0; i < 4; i++) red[warp][lane][i] = acc[i];
    __syncthreads();
    if (warp != 0) return false;
    float inv = 1.0f;
    if (NORM) {
        float s = 0.0f;
        for (int w = 0; w < n_warps; w++) s += ss_s[w];
        inv = rsqrtf(s / (float)k + nm.eps);
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float s = 0.0f;
#pragma unroll
        for (int w = 0; w < n_warps; w++) s += red[w][lane][i];
        c[i] = s * inv;
    }
    return true;
}

/* out_s[t, row] (+)= w_s[row] . x[t] (+ bias_s[row]) for t < n <= QMMA_MAX_N, for up to three
 * matrices of one format sharing x (q/k/v): segment s owns blocks [blk0[s], blk0[s + 1]), a block
 * 16 consecutive rows. */
template <int BITS, int GS, bool NORM>
__global__ void __launch_bounds__(QMMA_WARPS * 32, 2) k_qgemv_mma(qsegs sg, const float *x, qfmt f, int n, qnorm nm)
{
    pdl_trigger();
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    int seg = 0;
#pragma unroll
    for (int j = 1; j < QGEMV_MAX_SEGS; j++)
        if (j < sg.n_segs && (int)blockIdx.x >= sg.blk0[j]) seg = j;
    const int m = seg_pick(sg.m, seg), row0 = ((int)blockIdx.x - seg_pick(sg.blk0, seg)) * 16;
    const qmat qm = seg_pick(sg.qm, seg);
    qmma_rows rw;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int row = min(row0 + g + 8 * r, m - 1);
        rw.w[r] = qm.w + (size_t)row * (f.k / 32 * BITS);
        rw.s[r] = qm.scales;
        rw.b[r] = qm.biases;
        rw.g0[r] = (size_t)row * f.n_groups;
    }
    float c[4];
    if (!qmma_tile<BITS, GS, NORM>(c, rw, x, f.k, f.sdt, n, nm)) return;
    float *out = seg_pick(sg.out, seg);
    const void *bias = seg_pick(sg.bias, seg);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int row = row0 + g + 8 * (i / 2), tok = 2 * t + (i & 1);
        if (row >= m || tok >= n) continue;
        const float v = c[i] + (bias ? q_scale(bias, sg.bias_dt, row) : 0.0f);
        float *o = out + (size_t)tok * m + row;
        *o = sg.accumulate ? *o + v : v;
    }
}

/* out[t, row] = act(gate[row] . x[t]) * (up[row] . x[t]) for t < n <= QMMA_MAX_N: a block's tile is
 * 8 gate rows (A rows 0-7) and the same 8 up rows (A rows 8-15), so a lane holds both sums. */
template <int BITS, int GS, bool NORM>
__global__ void __launch_bounds__(QMMA_WARPS * 32, 2) k_qgemv_glu_mma(float *out, const float *x, qmat gq, qmat uq, qfmt f,
                                                                   int n, int m, int act, qnorm nm)
{
    pdl_trigger();
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int row0 = (int)blockIdx.x * 8, row = min(row0 + g, m - 1);
    qmma_rows rw;
    rw.w[0] = gq.w + (size_t)row * (f.k / 32 * BITS);
    rw.w[1] = uq.w + (size_t)row * (f.k / 32 * BITS);
    rw.s[0] = gq.scales;
    rw.s[1] = uq.scales;
    rw.b[0] = gq.biases;
    rw.b[1] = uq.biases;
    rw.g0[0] = rw.g0[1] = (size_t)row * f.n_groups;
    float c[4];
    if (!qmma_tile<BITS, GS, NORM>(c, rw, x, f.k, f.sdt, n, nm)) return;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const int tok = 2 * t + i;
        if (row0 + g < m && tok < n) out[(size_t)tok * m + row0 + g] = glu_act(c[i], act) * c[2 + i];
    }
}

/* Whether the tensor-core GEMV takes a format in this mode: affine 4 bit (groups of 32-128) and
 * 8 bit (32, 64: a lane's 16 bytes a group at most) in the cuda mode (x as bf16: cuda-precise
 * and cuda-deterministic keep k_qgemv's f32 sums), for x rows of at most QMMA_SMEM_MAX bytes
 * staged, outputs wider than QMMA_NARROW_M. */
static bool qmma_takes(const struct cuda_backend *cb, const qfmt &f, int m)
{
    const bool fmt = f.mode == QMODE_AFFINE && ((f.bits == 4 && f.group_size >= 32 && f.group_size <= 128) ||
                                                (f.bits == 8 && f.group_size >= 32 && f.group_size <= 64));
    return !cb->precise && !cb->deterministic && fmt && m > QMMA_NARROW_M && (size_t)(f.k / 8 + 1) * 16 <= QMMA_SMEM_MAX;
}

/* Rows of x one launch takes: up to QMMA_MAX_N, as many as QMMA_SMEM_MAX holds. */
static int qmma_rows_per_launch(const qfmt &f)
{
    const int r = (int)(QMMA_SMEM_MAX / ((size_t)(f.k / 8 + 1) * 16));
    return r < QMMA_MAX_N ? r : QMMA_MAX_N;
}

/* Warps a block of a grid of `blocks` tiles: 8 when the grid fits one wave of 2 such blocks an SM
 * (o and down of an 8B model at batch 1: 256 tiles, 16 warps an SM instead of 8), else 4 (4
 * blocks an SM: qkv's 384 tiles in one wave; 8 would take two). */
static int qmma_warps(const struct cuda_backend *cb, int blocks) { return blocks <= 2 * cb->n_sm ? 8 : 4; }

/* Launches kernel on `blocks` tiles with smem bytes of dynamic shared memory, raising its limit
 * past the default 48 KB when it needs more. */
template <typename... KArgs, typename... Args>
static void qmma_launch(struct cuda_backend *cb, void (*kernel)(KArgs...), int blocks, size_t smem, Args... args)
{
    if (smem > (48 << 10))
        CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, QMMA_SMEM_MAX));
    launch_pdl_smem(cb, kernel, dim3(blocks), dim3(qmma_warps(cb, blocks) * 32), smem, args...);
}

/* Calls F with BITS and GS as constants for a format qmma_takes. */
#define DISPATCH_QMMA(f, ...) do { \
        switch ((f).bits * 1000 + (f).group_size) { \
        case 4032: { constexpr int BITS = 4, GS = 32; __VA_ARGS__; break; } \
        case 4064: { constexpr int BITS = 4, GS = 64; __VA_ARGS__; break; } \
        case 4128: { constexpr int BITS = 4, GS = 128; __VA_ARGS__; break; } \
        case 8032: { constexpr int BITS = 8, GS = 32; __VA_ARGS__; break; } \
        case 8064: { constexpr int BITS = 8, GS = 64; __VA_ARGS__; break; } \
        default: CHECK(0, "cuda: no tensor-core GEMV for %d bit g%d", (f).bits, (f).group_size); \
        } } while (0)

/* cuda_qgemv_multi on the tensor-core GEMV (sg: everything but blk0 and out filled). */
static void qgemv_mma_multi(struct cuda_backend *cb, qsegs sg, float *const *outs, const float *x, int n, const qfmt &f,
                            const qnorm &nm)
{
    int blocks = 0;
    for (int i = 0; i < sg.n_segs; i++) {
        sg.blk0[i] = blocks;
        blocks += (sg.m[i] + 15) / 16;
    }
    const int per = qmma_rows_per_launch(f);
    for (int r0 = 0; r0 < n; r0 += per) {
        const int nr = n - r0 < per ? n - r0 : per;
        for (int i = 0; i < sg.n_segs; i++) sg.out[i] = outs[i] + (size_t)r0 * sg.m[i];
        const float *xr = x + (size_t)r0 * f.k;
        const size_t smem = (size_t)nr * (f.k / 8 + 1) * 16;
        DISPATCH_QMMA(f, {
            if (nm.w) qmma_launch(cb, k_qgemv_mma<BITS, GS, true>, blocks, smem, sg, xr, f, nr, nm);
            else qmma_launch(cb, k_qgemv_mma<BITS, GS, false>, blocks, smem, sg, xr, f, nr, nm);
        });
    }
    LAUNCH_CHECK();
}

/* cuda_qgemv_glu on the tensor-core GEMV (gate and up of one format). */
static void qgemv_mma_glu(struct cuda_backend *cb, float *out, const float *x, int n, const qmat &g, const qmat &u,
                          const qfmt &f, int m, enum act act, const qnorm &nm)
{
    const int per = qmma_rows_per_launch(f);
    for (int r0 = 0; r0 < n; r0 += per) {
        const int nr = n - r0 < per ? n - r0 : per;
        float *o = out + (size_t)r0 * m;
        const float *xr = x + (size_t)r0 * f.k;
        const size_t smem = (size_t)nr * (f.k / 8 + 1) * 16;
        const int grid = (m + 7) / 8;
        DISPATCH_QMMA(f, {
            if (nm.w) qmma_launch(cb, k_qgemv_glu_mma<BITS, GS, true>, grid, smem, o, xr, g, u, f, nr, m, (int)act, nm);
            else qmma_launch(cb, k_qgemv_glu_mma<BITS, GS, false>, grid, smem, o, xr, g, u, f, nr, m, (int)act, nm);
        });
    }
    LAUNCH_CHECK();
}

/* The format of a quantized weight on the device, and its three arrays. */
static qfmt fmt_of(const struct tensor *w)
{
    const struct qweight *q = w->q;
    qfmt f;
    f.mode = q->mode;
    f.bits = q->bits;
    f.group_size = q->group_size;
    f.k = (int)w->ne[0];
    f.n_groups = (int)(w->ne[0] / q->group_size);
    switch (q->mode) {
    case QMODE_AFFINE:
        f.sdt = q->scales.dtype == DTYPE_BF16 ? QSCALE_BF16 : q->scales.dtype == DTYPE_F16 ? QSCALE_F16 : QSCALE_F32;
        CHECK(q->biases.buf && q->biases.dtype == q->scales.dtype, "cuda: affine weight %s: biases missing or of another dtype",
              w->name ? w->name : "?");
        break;
    case QMODE_NVFP4: f.sdt = QSCALE_E4M3; break;
    default: f.sdt = QSCALE_E8M0;
    }
    return f;
}

qmat cuda_qmat_of(const struct tensor *w)
{
    const struct qweight *q = w->q;
    CHECK(w->dtype == DTYPE_QMLX && q && w->buf->kind == BUF_DEVICE && q->scales.buf->kind == BUF_DEVICE,
          "cuda: quantized weight %s is not on the device", w->name ? w->name : "?");
    CHECK(q->scales.nb[1] == dtype_size(q->scales.dtype) * (size_t)(w->ne[0] / q->group_size),
          "cuda: scales of %s are not contiguous rows", w->name ? w->name : "?");
    qmat m;
    m.w = (const uint32_t *)dptr(w);
    m.scales = dptr(&q->scales);
    m.biases = q->biases.buf ? dptr(&q->biases) : NULL;
    return m;
}

qfmt cuda_qfmt_of(const struct tensor *w) { return fmt_of(w); }

bool cuda_qgemv_fits(const struct tensor *w, const float *x)
{
    return w->ne[0] % 32 == 0 && ((uintptr_t)x & 15) == 0 && ((uintptr_t)dptr(w) & 15) == 0;
}

/* Calls F with MODE and BITS as constants for a supported format (qweight_supported). */
#define DISPATCH_QFMT(f, ...) do { \
        switch ((f).mode * 16 + (f).bits) { \
        case QMODE_AFFINE * 16 + 2: { constexpr int MODE = QMODE_AFFINE, BITS = 2; __VA_ARGS__; break; } \
        case QMODE_AFFINE * 16 + 3: { constexpr int MODE = QMODE_AFFINE, BITS = 3; __VA_ARGS__; break; } \
        case QMODE_AFFINE * 16 + 4: { constexpr int MODE = QMODE_AFFINE, BITS = 4; __VA_ARGS__; break; } \
        case QMODE_AFFINE * 16 + 5: { constexpr int MODE = QMODE_AFFINE, BITS = 5; __VA_ARGS__; break; } \
        case QMODE_AFFINE * 16 + 6: { constexpr int MODE = QMODE_AFFINE, BITS = 6; __VA_ARGS__; break; } \
        case QMODE_AFFINE * 16 + 8: { constexpr int MODE = QMODE_AFFINE, BITS = 8; __VA_ARGS__; break; } \
        case QMODE_MXFP4 * 16 + 4: { constexpr int MODE = QMODE_MXFP4, BITS = 4; __VA_ARGS__; break; } \
        case QMODE_MXFP8 * 16 + 8: { constexpr int MODE = QMODE_MXFP8, BITS = 8; __VA_ARGS__; break; } \
        case QMODE_NVFP4 * 16 + 4: { constexpr int MODE = QMODE_NVFP4, BITS = 4; __VA_ARGS__; break; } \
        default: CHECK(0, "cuda: quantized format %s %d bit has no kernel", qmode_name((enum qmode)(f).mode), (f).bits); \
        } } while (0)

static int bias_dtype(const struct tensor *bias)
{
    if (!bias) return QSCALE_F32;
    CHECK(bias->dtype == DTYPE_BF16 || bias->dtype == DTYPE_F16 || bias->dtype == DTYPE_F32, "cuda: bias dtype %s",
          dtype_name(bias->dtype));
    return bias->dtype == DTYPE_BF16 ? QSCALE_BF16 : bias->dtype == DTYPE_F16 ? QSCALE_F16 : QSCALE_F32;
}

static bool same_fmt(const qfmt &a, const qfmt &b)
{
    return a.mode == b.mode && a.bits == b.bits && a.group_size == b.group_size && a.k == b.k && a.sdt == b.sdt;
}

bool cuda_qgemv_fits_multi(int n_w, const struct tensor *const *ws, const struct tensor *const *biases, const float *x)
{
    if (n_w > QGEMV_MAX_SEGS) return false;
    for (int i = 0; i < n_w; i++) {
        if (ws[i]->dtype != DTYPE_QMLX || !cuda_qgemv_fits(ws[i], x) || !same_fmt(fmt_of(ws[i]), fmt_of(ws[0])))
            return false;
        if (biases && biases[i] && (!biases[0] || biases[i]->dtype != biases[0]->dtype)) return false;
    }
    return true;
}

/* The fused RMSNorm's arguments (a bf16 norm weight, batch 1: cuda_qgemv_norm_fits). */
static qnorm qnorm_of(const struct tensor *norm_w, float eps, float w_offset, int n)
{
    qnorm nm = { NULL, eps, w_offset };
    if (!norm_w) return nm;
    CHECK(n == 1 && norm_w->dtype == DTYPE_BF16 && ((uintptr_t)dptr(norm_w) & 15) == 0,
          "cuda qgemv: a fused norm needs 1 row and an aligned bf16 weight");
    nm.w = (const __nv_bfloat16 *)dptr(norm_w);
    return nm;
}

bool cuda_qgemv_norm_fits(const struct tensor *norm_w, int k, int n)
{
    return n == 1 && norm_w->dtype == DTYPE_BF16 && norm_w->ne[0] == k && ((uintptr_t)dptr(norm_w) & 15) == 0;
}

void cuda_qgemv_multi(struct cuda_backend *cb, int n_w, float *const *outs, const float *x, int n,
                      const struct tensor *const *ws, const struct tensor *const *biases, bool accumulate,
                      const struct tensor *norm_w, float eps, float w_offset)
{
    const qfmt f = fmt_of(ws[0]);
    const qnorm nm = qnorm_of(norm_w, eps, w_offset, n);
    const int rows_per_block = QGEMV_WARPS * QGEMV_R;
    qsegs sg = {};
    sg.n_segs = n_w;
    sg.accumulate = accumulate;
    int blocks = 0;
    for (int i = 0; i < n_w; i++) {
        CHECK(same_fmt(fmt_of(ws[i]), f), "cuda qgemv: matrices of one launch differ in format");
        sg.qm[i] = cuda_qmat_of(ws[i]);
        sg.m[i] = (int)ws[i]->ne[1];
        sg.bias[i] = biases && biases[i] ? dptr(biases[i]) : NULL;
        sg.blk0[i] = blocks;
        blocks += (sg.m[i] + rows_per_block - 1) / rows_per_block;
    }
    sg.bias_dt = bias_dtype(biases ? biases[0] : NULL);
    for (int i = 1; i < n_w; i++) CHECK(!sg.bias[i] || bias_dtype(biases[i]) == sg.bias_dt, "cuda qgemv: bias dtypes differ");
    bool mma = true;
    for (int i = 0; i < n_w; i++) mma = mma && qmma_takes(cb, f, sg.m[i]);
    if (mma) {
        qgemv_mma_multi(cb, sg, outs, x, n, f, nm);
        return;
    }
    dim3 grid(blocks), block(QGEMV_WARPS * 32);
    for (int r0 = 0; r0 < n; r0 += QGEMV_MAX_N) {   // each x row's sums are the same in any slice
        const int nr = n - r0 < QGEMV_MAX_N ? n - r0 : QGEMV_MAX_N;
        for (int i = 0; i < n_w; i++) sg.out[i] = outs[i] + (size_t)r0 * sg.m[i];
        const float *xr = x + (size_t)r0 * f.k;
        DISPATCH_QFMT(f, {
            if (nm.w) launch_pdl(cb, k_qgemv<MODE, BITS, 1, true>, grid, block, sg, xr, f, nr, nm);
            else if (nr == 1) launch_pdl(cb, k_qgemv<MODE, BITS, 1, false>, grid, block, sg, xr, f, nr, nm);
            else if (nr == 2) launch_pdl(cb, k_qgemv<MODE, BITS, 2, false>, grid, block, sg, xr, f, nr, nm);
            else if (nr <= 4) launch_pdl(cb, k_qgemv<MODE, BITS, 4, false>, grid, block, sg, xr, f, nr, nm);
            else launch_pdl(cb, k_qgemv<MODE, BITS, 8, false>, grid, block, sg, xr, f, nr, nm);
        });
    }
    LAUNCH_CHECK();
}

void cuda_qgemv(struct cuda_backend *cb, float *out, const float *x, int n, const struct tensor *w,
                const struct tensor *bias, bool accumulate)
{
    cuda_qgemv_multi(cb, 1, &out, x, n, &w, &bias, accumulate, NULL, 0.0f, 0.0f);
}

bool cuda_qgemv_glu_fits(const struct tensor *gate, const struct tensor *up, const float *x)
{
    if (gate->dtype != DTYPE_QMLX || up->dtype != DTYPE_QMLX || !cuda_qgemv_fits(gate, x) || !cuda_qgemv_fits(up, x))
        return false;
    const qfmt fg = fmt_of(gate), fu = fmt_of(up);
    return fg.mode == fu.mode && fg.bits == fu.bits && fg.k == fu.k && gate->ne[1] == up->ne[1];
}

void cuda_qgemv_glu(struct cuda_backend *cb, float *out, const float *x, int n, const struct tensor *gate,
                    const struct tensor *up, enum act act, const struct tensor *norm_w, float eps, float w_offset)
{
    const qnorm nm = qnorm_of(norm_w, eps, w_offset, n);
    const qfmt fg = fmt_of(gate), fu = fmt_of(up);
    const qmat g = cuda_qmat_of(gate), u = cuda_qmat_of(up);
    const int m = (int)gate->ne[1], rows_per_block = QGEMV_WARPS * QGEMV_R / 2;   // of gate and of up
    if (qmma_takes(cb, fg, m) && same_fmt(fg, fu)) {
        qgemv_mma_glu(cb, out, x, n, g, u, fg, m, act, nm);
        return;
    }
    dim3 grid((m + rows_per_block - 1) / rows_per_block), block(QGEMV_WARPS * 32);
    for (int r0 = 0; r0 < n; r0 += QGEMV_MAX_N) {
        const int nr = n - r0 < QGEMV_MAX_N ? n - r0 : QGEMV_MAX_N;
        float *o = out + (size_t)r0 * m;
        const float *xr = x + (size_t)r0 * fg.k;
        DISPATCH_QFMT(fg, {
            if (nm.w) launch_pdl(cb, k_qgemv_glu<MODE, BITS, 1, true>, grid, block, o, xr, g, u, fg, fu, nr, m, (int)act, nm);
            else if (nr == 1) launch_pdl(cb, k_qgemv_glu<MODE, BITS, 1, false>, grid, block, o, xr, g, u, fg, fu, nr, m, (int)act, nm);
            else if (nr == 2) launch_pdl(cb, k_qgemv_glu<MODE, BITS, 2, false>, grid, block, o, xr, g, u, fg, fu, nr, m, (int)act, nm);
            else if (nr <= 4) launch_pdl(cb, k_qgemv_glu<MODE, BITS, 4, false>, grid, block, o, xr, g, u, fg, fu, nr, m, (int)act, nm);
            else launch_pdl(cb, k_qgemv_glu<MODE, BITS, 8, false>, grid, block, o, xr, g, u, fg, fu, nr, m, (int)act, nm);
        });
    }
    LAUNCH_CHECK();
}

/* ==== Dequantization (prefill, odd shapes, embeddings) ==== */

/* Element k of row r, exactly as qweight_dequant_row computes it (s q + b is one fma: s q is exact). */
__device__ __forceinline__ float q_elem(const qmat &qm, const qfmt &f, size_t r, int k)
{
    const uint32_t *row = qm.w + r * ((size_t)f.k * f.bits / 32);
    const uint64_t off = (uint64_t)k * f.bits;
    const uint32_t i = (uint32_t)(off >> 5), s = (uint32_t)(off & 31);
    uint32_t v = row[i] >> s;
    if (s + f.bits > 32) v |= row[i + 1] << (32 - s);
    v &= (1u << f.bits) - 1;
    const size_t gi = r * f.n_groups + (size_t)(k / f.group_size);
    const float sc = q_scale(qm.scales, f.sdt, gi);
    switch (f.mode) {
    case QMODE_AFFINE: return fmaf(sc, (float)v, q_scale(qm.biases, f.sdt, gi));
    case QMODE_MXFP8: return sc * __half2float(__half(__nv_cvt_fp8_to_halfraw((__nv_fp8_storage_t)v, __NV_E4M3)));
    default: {
        const uint32_t hb = ((v & 7u) << 9) | ((v & 8u) << 12);
        return __half2float(__ushort_as_half((unsigned short)hb)) * 16384.0f * sc;
    }
    }
}

template <typename T>
__global__ void k_qdequant(T *dst, qmat qm, qfmt f, int64_t row0, int64_t rows)
{
    const size_t n = (size_t)rows * f.k;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = from_f<T>(q_elem(qm, f, (size_t)row0 + i / f.k, (int)(i % f.k)));
}

/* Eight values as one 16-byte store (bf16) or two (f32); 16-byte aligned. */
__device__ __forceinline__ void store8(__nv_bfloat16 *o, const float *w)
{
    uint4 v;
    uint32_t *p = reinterpret_cast<uint32_t *>(&v);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const __nv_bfloat162 h = __floats2bfloat162_rn(w[2 * i], w[2 * i + 1]);
        p[i] = *reinterpret_cast<const uint32_t *>(&h);
    }
    *reinterpret_cast<uint4 *>(o) = v;
}

__device__ __forceinline__ void store8(float *o, const float *w)
{
    reinterpret_cast<float4 *>(o)[0] = make_float4(w[0], w[1], w[2], w[3]);
    reinterpret_cast<float4 *>(o)[1] = make_float4(w[4], w[5], w[6], w[7]);
}

/* The prefill path's dequantizer (inputs a multiple of 32): a thread per chunk, decoded as the
 * GEMV decodes it (so bf16 / f32 rows come out at a few instructions per weight; the per-element
 * kernel above divides its way to every element). w = v sb + bb in one fma (affine: exactly MLX's
 * s q + b up to an f32 rounding); E2M1 values are scaled back from their 2^-14 first (exact). */
template <int MODE, int BITS, typename T>
__global__ void k_qdequant_chunks(T *dst, qmat qm, qfmt f, int64_t row0, int64_t rows)
{
    using C = qchunk<BITS>;
    constexpr int G = qgroups<MODE>::per_chunk;
    const int64_t n_chunks = f.k / C::codes;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < rows * n_chunks; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / n_chunks;
        const int ch = (int)(i - r * n_chunks);
        const size_t row = (size_t)(row0 + r);
        uint32_t wd[C::words];
        load_chunk<BITS>(wd, qm.w + row * (size_t)(f.k / 32 * BITS) + (size_t)ch * C::words);
        const size_t g = row * f.n_groups + (size_t)ch * C::codes / f.group_size;
        float sb[G], bb = 0.0f;
#pragma unroll
        for (int h = 0; h < G; h++)
            chunk_factors<MODE, BITS>(q_scale_raw<MODE>(qm.scales, f.sdt, g + h),
                                      MODE == QMODE_AFFINE ? q_scale_raw<MODE>(qm.biases, f.sdt, g) : 0u, f.sdt, sb[h], bb);
        T *o = dst + (size_t)r * f.k + (size_t)ch * C::codes;
#pragma unroll
        for (int c = 0; c < C::codes / 8; c++) {
            float v[8];
            chunk_decode8<MODE, BITS>(wd, 8 * c, v);
            const float s = sb[G == 2 ? c / 2 : 0];
#pragma unroll
            for (int j = 0; j < 8; j++) v[j] = MODE == QMODE_AFFINE ? fmaf(v[j], s, bb) : v[j] * decode_unit<MODE>() * s;
            store8(o + 8 * c, v);
        }
    }
}

/* The dequantizer (the table at the top of this file). */
static enum qdeq_kernel choose_qdequant_kernel(const qfmt &f, const qmat &qm, enum dtype dt)
{
    const bool chunks = f.k % 32 == 0 && ((uintptr_t)qm.w & 15) == 0 && (dt == DTYPE_BF16 || dt == DTYPE_F32);
    return chunks ? QDEQ_CHUNKS : QDEQ_ELEMS;
}

void cuda_qdequant(struct cuda_backend *cb, void *dst, enum dtype dt, const struct tensor *w, int64_t row0, int64_t rows)
{
    const qmat qm = cuda_qmat_of(w);
    const qfmt f = fmt_of(w);
    if (choose_qdequant_kernel(f, qm, dt) == QDEQ_CHUNKS) {
        const size_t n = (size_t)rows * (f.k / 32) * (f.bits == 8 ? 2 : 1);   // chunks
        const int grid = (int)((n + 255) / 256 > 65535 ? 65535 : (n + 255) / 256);
        if (dt == DTYPE_BF16)
            DISPATCH_QFMT(f, k_qdequant_chunks<MODE, BITS, __nv_bfloat16><<<grid, 256, 0, cb->stream>>>(
                (__nv_bfloat16 *)dst, qm, f, row0, rows));
        else
            DISPATCH_QFMT(f, k_qdequant_chunks<MODE, BITS, float><<<grid, 256, 0, cb->stream>>>((float *)dst, qm, f, row0, rows));
        LAUNCH_CHECK();
        return;
    }
    const size_t n = (size_t)rows * f.k;
    const int grid = (int)((n + 255) / 256 > 65535 ? 65535 : (n + 255) / 256);
    DISPATCH_FLOAT(dt, T, k_qdequant<T><<<grid, 256, 0, cb->stream>>>((T *)dst, qm, f, row0, rows));
    LAUNCH_CHECK();
}

__global__ void k_qembed(float *out, qmat qm, qfmt f, const int32_t *ids, float scale)
{
    const int t = blockIdx.x;
    for (int i = threadIdx.x; i < f.k; i += blockDim.x) out[(size_t)t * f.k + i] = q_elem(qm, f, (size_t)ids[t], i) * scale;
}

void cuda_qembed(struct cuda_backend *cb, float *out, const struct tensor *table, int n_tok, const int32_t *d_ids, float scale)
{
    k_qembed<<<n_tok, 256, 0, cb->stream>>>(out, cuda_qmat_of(table), fmt_of(table), d_ids, scale);
    LAUNCH_CHECK();
}

/* ==== MoE experts ==== */

/* out[slot, row] = W_{ids[slot]}[row] . x[slot / x_div] (MoE decode: one block column per slot),
 * each row as k_qgemv sums it. */
template <int MODE, int BITS>
__global__ void __launch_bounds__(QGEMV_WARPS * 32) k_moe_qgemv(float *out, const float *x, const qmat *tab, qfmt f,
                                                               const int32_t *ids, int m, int x_div)
{
    pdl_wait();      // ids and x come from the kernels before
    pdl_trigger();
    const int slot = blockIdx.y, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int row0 = (blockIdx.x * QGEMV_WARPS + warp) * QGEMV_R;
    if (row0 >= m) return;
    const qmat qm = tab[ids[slot]];
    qwarp_rows wr;
#pragma unroll
    for (int r = 0; r < QGEMV_R; r++) {
        wr.qm[r] = qm;
        wr.row[r] = min(row0 + r, m - 1);
    }
    float acc[QGEMV_R][1];
    qwarp_dot<MODE, BITS, 1>(acc, wr, f, f, x + (size_t)(slot / x_div) * f.k, f.k, 1, lane);
#pragma unroll
    for (int r = 0; r < QGEMV_R; r++)
        if (lane == r && row0 + r < m) out[(size_t)slot * m + row0 + r] = acc[r][0];
}

/* out[slot, row] = act(gate . x) * (up . x) with x = x[slot / x_div] (gate, up of the slot's expert;
 * a warp owns QGEMV_R / 2 rows of each, as k_qgemv_glu). */
template <int MODE, int BITS>
__global__ void __launch_bounds__(QGEMV_WARPS * 32) k_moe_qgate_up(float *out, const float *x, const qmat *tab_g,
                                                                  const qmat *tab_u, qfmt fg, qfmt fu,
                                                                  const int32_t *ids, int m, int x_div, int act)
{
    pdl_wait();      // ids and x come from the kernels before
    pdl_trigger();
    constexpr int H = QGEMV_R / 2;
    const int slot = blockIdx.y, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int row0 = (blockIdx.x * QGEMV_WARPS + warp) * H;
    if (row0 >= m) return;
    const int e = ids[slot];
    const qmat g = tab_g[e], u = tab_u[e];
    qwarp_rows wr;
#pragma unroll
    for (int r = 0; r < QGEMV_R; r++) {
        wr.qm[r] = r < H ? g : u;
        wr.row[r] = min(row0 + r % H, m - 1);
    }
    float acc[QGEMV_R][1];
    qwarp_dot<MODE, BITS, 1>(acc, wr, fg, fu, x + (size_t)(slot / x_div) * fg.k, fg.k, 1, lane);
#pragma unroll
    for (int r = 0; r < H; r++)
        if (lane == r && row0 + r < m) out[(size_t)slot * m + row0 + r] = glu_act(acc[r][0], act) * acc[H + r][0];
}

void cuda_moe_qgate_up(struct cuda_backend *cb, float *out, const float *x, const qmat *d_tab_g, const qmat *d_tab_u,
                       const struct tensor *g0, const struct tensor *u0, const int32_t *d_ids, int n_slots, int x_div,
                       enum act act)
{
    const qfmt fg = fmt_of(g0), fu = fmt_of(u0);
    const int m = (int)g0->ne[1], rows_per_block = QGEMV_WARPS * QGEMV_R / 2;   // of gate and of up
    CHECK(fg.mode == fu.mode && fg.bits == fu.bits && fg.k == fu.k && fg.k % 32 == 0 && g0->ne[1] == u0->ne[1],
          "cuda moe: gate and up of different formats or shapes");
    dim3 grid((m + rows_per_block - 1) / rows_per_block, n_slots), block(QGEMV_WARPS * 32);
    DISPATCH_QFMT(fg, launch_pdl(cb, k_moe_qgate_up<MODE, BITS>, grid, block, out, x, d_tab_g, d_tab_u, fg, fu, d_ids, m,
                                 x_div, (int)act));
    LAUNCH_CHECK();
}

void cuda_moe_qgemv(struct cuda_backend *cb, float *out, const float *x, const qmat *d_tab, const struct tensor *w0,
                    const int32_t *d_ids, int n_slots, int x_div)
{
    const qfmt f = fmt_of(w0);
    const int m = (int)w0->ne[1], rows_per_block = QGEMV_WARPS * QGEMV_R;
    CHECK(f.k % 32 == 0, "cuda moe: quantized experts need inputs in multiples of 32 (%d)", f.k);
    dim3 grid((m + rows_per_block - 1) / rows_per_block, n_slots), block(QGEMV_WARPS * 32);
    DISPATCH_QFMT(f, launch_pdl(cb, k_moe_qgemv<MODE, BITS>, grid, block, out, x, d_tab, f, d_ids, m, x_div));
    LAUNCH_CHECK();
}
