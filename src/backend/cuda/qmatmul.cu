/* qmatmul: the kernels of MLX-quantized weights (DTYPE_QMLX, tensor/qweight.h) on the GPU.
 *
 * Which one runs is decided in matmul.cu (choose_matmul_kernel); this file has:
 *  - k_qgemv: decode rows (up to QGEMV_MAX_N per launch). A block owns QGEMV_R consecutive
 *    weight rows and its QGEMV_WARPS warps split their inputs (so a matrix of 1,024 rows still
 *    makes 256 blocks; a warp per 4 rows over all of k measured 0.19 of the bandwidth on H100 at
 *    4 bit, too few loads in flight). The packed words stream once for all the launch's rows of
 *    x, 32 codes per lane and row per "unit" (4 * bits bytes: one 16-byte load at 4 bit, two at
 *    8), lanes on consecutive units, so a warp's loads are coalesced; the scales (and affine
 *    biases) of the unit's group come with it. Each code is dequantized in registers once and
 *    used for every row of x (f32 products and sums, as k_gemv); one x chunk serves the block's
 *    QGEMV_R weight rows. The warps' sums are added in warp order. Affine values are
 *    1 + q / 2^bits built from the bits (no int-to-float convert), times s 2^bits plus
 *    (b - s 2^bits): within an f32 ulp of MLX's s q + b. mxfp8 codes go through the hardware
 *    e4m3 -> f16 convert, E2M1 codes are placed into f16 bits (their value times 2^-14): both
 *    exact, as the E8M0 / E4M3 scales. Each row of x is summed in the same order whatever the
 *    launch's row count: batch invariance (cuda-deterministic) holds as for k_gemv.
 *  - k_qdequant: dequantizes rows of a quantized matrix into a bf16 / f16 / f32 scratch (exactly
 *    qweight_dequant_row's values in f32), for the prefill path (chunks of rows, then cuBLAS: the
 *    first landing of quantized prefill, not a fused dequant-in-MMA GEMM) and for shapes the GEMV
 *    does not take.
 *  - k_qembed: embedding rows of a quantized table.
 *  - k_moe_qgemv: the MoE decode path's per-(token, choice) expert GEMV over a device table of
 *    quantized experts (moe.cu).
 */
#include "backend/cuda/cuda_common.cuh"

#define QGEMV_WARPS 4    // warps per block
#define QGEMV_R     4    // weight rows per warp (x chunks reused for all of them)

/* ==== Decoding ==== */

/* The scale (or bias) number i of a row's group scales, as f32: affine bf16/f16/f32; E8M0 for
 * mxfp4/mxfp8 (0xFF -> +Inf, 0 -> 2^-127, as MLX); E4M3 for nvfp4. */
__device__ __forceinline__ float q_scale(const void *p, int sdt, size_t i)
{
    switch (sdt) {
    case QSCALE_BF16: return __bfloat162float(reinterpret_cast<const __nv_bfloat16 *>(p)[i]);
    case QSCALE_F16: return __half2float(reinterpret_cast<const __half *>(p)[i]);
    case QSCALE_F32: return reinterpret_cast<const float *>(p)[i];
    case QSCALE_E8M0: {
        const uint32_t s = reinterpret_cast<const uint8_t *>(p)[i];
        return __uint_as_float(s == 0xFF ? 0x7f800000u : s ? s << 23 : 0x00400000u);
    }
    default: {   // QSCALE_E4M3
        const __nv_fp8_storage_t s = reinterpret_cast<const uint8_t *>(p)[i];
        return __half2float(__half(__nv_cvt_fp8_to_halfraw(s, __NV_E4M3)));
    }
    }
}

/* 1 + code j / 2^BITS of a 32-code unit held in words wd[BITS] (qweight.h's bit stream), as an
 * f32 (the code as the top mantissa bits of 1.0): one shift and one
 * masked or, the shift amounts known at compile time (codes that straddle two words take a
 * funnel shift first). */
template <int BITS>
__device__ __forceinline__ float unit_code_one_plus(const uint32_t *wd, int j)
{
    const int bit = j * BITS, i = bit >> 5, s = bit & 31, to = 23 - BITS;
    const uint32_t mask = ((1u << BITS) - 1) << to;
    uint32_t v;
    if (s + BITS > 32) v = __funnelshift_r(wd[i], wd[i + 1], s) << to;
    else v = s >= to ? wd[i] >> (s - to) : wd[i] << (to - s);
    return __uint_as_float((v & mask) | 0x3f800000u);
}

/* Dequantizes codes c0 .. c0 + 7 of a unit (c0 a multiple of 8; the 8 share one scale and bias:
 * groups are at least 16 codes and start at multiples of 16). Affine: sb = s 2^bits and bb =
 * b - s 2^bits; otherwise sb = the scale. */
template <int MODE, int BITS>
__device__ __forceinline__ void unit_dequant8(const uint32_t *wd, int c0, float sb, float bb, float *w)
{
    if constexpr (MODE == QMODE_AFFINE) {
#pragma unroll
        for (int j = 0; j < 8; j++)
            w[j] = fmaf(unit_code_one_plus<BITS>(wd, c0 + j), sb, bb);
    } else if constexpr (MODE == QMODE_MXFP8) {
        // codes c0 .. c0 + 7 are bytes of words c0 / 4 and c0 / 4 + 1
#pragma unroll
        for (int h = 0; h < 4; h++) {
            const uint32_t word = wd[c0 / 4 + h / 2];
            const __nv_fp8x2_storage_t pair = (__nv_fp8x2_storage_t)(h & 1 ? word >> 16 : word & 0xffff);
            const float2 f = __half22float2(__half2(__nv_cvt_fp8x2_to_halfraw2(pair, __NV_E4M3)));
            w[2 * h] = f.x * sb;
            w[2 * h + 1] = f.y * sb;
        }
    } else {   // E2M1 (mxfp4, nvfp4): codes c0 .. c0 + 7 are the nibbles of word c0 / 8
        const uint32_t word = wd[c0 / 8];
#pragma unroll
        for (int j = 0; j < 4; j++) {
            // nibbles j and j + 4 into the f16 pair's bits: magnitude (e, m) at 9..11, sign at 15
            const uint32_t t = word >> (4 * j);
            const uint32_t hb = ((t << 9) & 0x0e000e00u) | ((t << 12) & 0x80008000u);
            const float2 f = __half22float2(*reinterpret_cast<const __half2 *>(&hb));
            w[j] = f.x * 16384.0f * sb;       // the f16 holds value * 2^-14
            w[j + 4] = f.y * 16384.0f * sb;
        }
    }
}

/* A unit's packed words: 16-byte loads where the unit is a multiple of 16 bytes (4 and 8 bit),
 * words otherwise; bypassing L1 (weights are read once). */
template <int BITS>
__device__ __forceinline__ void load_unit(uint32_t *wd, const uint32_t *p)
{
    if constexpr (BITS % 4 == 0) {
#pragma unroll
        for (int v = 0; v < BITS / 4; v++) {
            uint4 r;
            asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
                : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p + 4 * v));
            wd[4 * v] = r.x; wd[4 * v + 1] = r.y; wd[4 * v + 2] = r.z; wd[4 * v + 3] = r.w;
        }
    } else {
#pragma unroll
        for (int v = 0; v < BITS; v++) asm("ld.global.nc.L1::no_allocate.u32 %0, [%1];" : "=r"(wd[v]) : "l"(p + v));
    }
}

/* The scale pair (sb, bb) for unit_dequant8 of half h (codes 16h .. 16h + 15) of unit u of row r. */
template <int MODE, int BITS>
__device__ __forceinline__ void unit_scales(const qmat &qm, const qfmt &f, int r, int u, int h, float &sb, float &bb)
{
    const size_t gi = (size_t)r * f.n_groups + (size_t)(u * 32 + h * 16) / f.group_size;
    const float s = q_scale(qm.scales, f.sdt, gi);
    if constexpr (MODE == QMODE_AFFINE) {
        sb = s * (float)(1 << BITS);
        bb = q_scale(qm.biases, f.sdt, gi) - sb;
    } else {
        sb = s;
        bb = 0.0f;
    }
}

/* ==== Decode GEMV ==== */

/* acc[r][t] = the lane's partial sums of weight row row0 + r (clamped to m - 1) times x row t
 * (t < n; x rows ldx floats apart, 16-byte aligned) over the units of warp `warp` of the block
 * (units warp * 32 + lane, then every QGEMV_WARPS * 32: the block's warps split k, so a matrix of
 * few rows still fills the GPU). Waits (PDL) after issuing the first weight loads. */
template <int MODE, int BITS, int N>
__device__ __forceinline__ void qrows_dot(float (&acc)[QGEMV_R][N], const qmat &qm, const qfmt &f, int row0, int m,
                                          const float *x, size_t ldx, int n, int warp, int lane)
{
    const int n_units = f.k / 32, row_words = f.k / 32 * BITS;
    const uint32_t *wr[QGEMV_R];
#pragma unroll
    for (int r = 0; r < QGEMV_R; r++) wr[r] = qm.w + (size_t)min(row0 + r, m - 1) * row_words;
#pragma unroll
    for (int r = 0; r < QGEMV_R; r++)
#pragma unroll
        for (int t = 0; t < N; t++) acc[r][t] = 0.0f;
    bool waited = false;
    for (int u = warp * 32 + lane; u < n_units; u += QGEMV_WARPS * 32) {
        uint32_t wd[QGEMV_R][BITS];
#pragma unroll
        for (int r = 0; r < QGEMV_R; r++) load_unit<BITS>(wd[r], wr[r] + (size_t)u * BITS);
        float sb[QGEMV_R][2], bb[QGEMV_R][2];
        const bool one_group = f.group_size >= 32;   // the unit's 32 codes share one scale (all but nvfp4)
#pragma unroll
        for (int r = 0; r < QGEMV_R; r++) {
            unit_scales<MODE, BITS>(qm, f, min(row0 + r, m - 1), u, 0, sb[r][0], bb[r][0]);
            if (one_group) {
                sb[r][1] = sb[r][0];
                bb[r][1] = bb[r][0];
            } else {
                unit_scales<MODE, BITS>(qm, f, min(row0 + r, m - 1), u, 1, sb[r][1], bb[r][1]);
            }
        }
        if (!waited) { pdl_wait(); waited = true; }   // x comes from the kernel before
#pragma unroll
        for (int c = 0; c < 4; c++) {   // 8 codes at a time
            float w[QGEMV_R][8];
#pragma unroll
            for (int r = 0; r < QGEMV_R; r++) unit_dequant8<MODE, BITS>(wd[r], 8 * c, sb[r][c / 2], bb[r][c / 2], w[r]);
#pragma unroll
            for (int t = 0; t < N; t++) {
                if (t >= n) break;
                const float4 *xv = reinterpret_cast<const float4 *>(x + (size_t)t * ldx + u * 32 + 8 * c);
                const float4 a = xv[0], b = xv[1];   // not __ldg: x is written by the kernel this one overlaps (PDL)
#pragma unroll
                for (int r = 0; r < QGEMV_R; r++)
                    acc[r][t] += w[r][0] * a.x + w[r][1] * a.y + w[r][2] * a.z + w[r][3] * a.w +
                                 w[r][4] * b.x + w[r][5] * b.y + w[r][6] * b.z + w[r][7] * b.w;
            }
        }
    }
    if (!waited) pdl_wait();
}

/* Sums the warps' partial sums of a block in warp order (the same order at any n: batch
 * invariance) into s[r][t], visible to the whole block on return. */
template <int N>
__device__ __forceinline__ void qblock_sum(float (&acc)[QGEMV_R][N], float (&part)[QGEMV_WARPS][QGEMV_R][N],
                                           float (&s)[QGEMV_R][N], int warp, int lane)
{
#pragma unroll
    for (int r = 0; r < QGEMV_R; r++)
#pragma unroll
        for (int t = 0; t < N; t++) {
            const float v = warp_sum(acc[r][t]);
            if (lane == 0) part[warp][r][t] = v;
        }
    __syncthreads();
    for (int i = threadIdx.x; i < QGEMV_R * N; i += blockDim.x) {
        float v = 0.0f;
        for (int w = 0; w < QGEMV_WARPS; w++) v += part[w][i / N][i % N];
        s[i / N][i % N] = v;
    }
    __syncthreads();
}

/* out_s[t, row] (+)= w_s[row] . x[t] (+ bias_s[row]) for t < n <= N, for up to three matrices of
 * one format sharing x (q/k/v): segment s owns blocks [blk0[s], blk0[s + 1]). */
template <int MODE, int BITS, int N>
__global__ void __launch_bounds__(QGEMV_WARPS * 32) k_qgemv(qsegs sg, const float *x, qfmt f, int n)
{
    pdl_trigger();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int seg = 0;
#pragma unroll
    for (int j = 1; j < QGEMV_MAX_SEGS; j++)
        if (j < sg.n_segs && (int)blockIdx.x >= sg.blk0[j]) seg = j;
    const int m = seg_pick(sg.m, seg);
    const int row0 = ((int)blockIdx.x - seg_pick(sg.blk0, seg)) * QGEMV_R;
    __shared__ float part[QGEMV_WARPS][QGEMV_R][N], sum[QGEMV_R][N];
    float acc[QGEMV_R][N];
    qrows_dot<MODE, BITS, N>(acc, seg_pick(sg.qm, seg), f, row0, m, x, f.k, n, warp, lane);
    qblock_sum<N>(acc, part, sum, warp, lane);
    float *out = seg_pick(sg.out, seg);
    const void *bias = seg_pick(sg.bias, seg);
    if (threadIdx.x >= QGEMV_R * N) return;
    const int r = threadIdx.x / N, t = threadIdx.x % N, row = row0 + r;
    if (row >= m || t >= n) return;
    const float v = sum[r][t] + (bias ? q_scale(bias, sg.bias_dt, row) : 0.0f);
    float *o = out + (size_t)t * m + row;
    *o = sg.accumulate ? *o + v : v;
}

/* out[t, row] = act(gate[row] . x[t]) * (up[row] . x[t]) for t < n <= N (an FFN's gate and up
 * rows in one warp: the GLU costs no launch). Each sum as k_qgemv's. */
template <int MODE, int BITS, int N>
__global__ void __launch_bounds__(QGEMV_WARPS * 32) k_qgemv_glu(float *out, const float *x, qmat g, qmat u, qfmt fg,
                                                               qfmt fu, int n, int m, int act)
{
    pdl_trigger();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int row0 = blockIdx.x * QGEMV_R;
    __shared__ float part[QGEMV_WARPS][QGEMV_R][N], sg[QGEMV_R][N], su[QGEMV_R][N];
    float acc[QGEMV_R][N];
    qrows_dot<MODE, BITS, N>(acc, g, fg, row0, m, x, fg.k, n, warp, lane);
    qblock_sum<N>(acc, part, sg, warp, lane);
    qrows_dot<MODE, BITS, N>(acc, u, fu, row0, m, x, fu.k, n, warp, lane);
    qblock_sum<N>(acc, part, su, warp, lane);
    if (threadIdx.x >= QGEMV_R * N) return;
    const int r = threadIdx.x / N, t = threadIdx.x % N;
    if (row0 + r < m && t < n) out[(size_t)t * m + row0 + r] = glu_act(sg[r][t], act) * su[r][t];
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

void cuda_qgemv_multi(struct cuda_backend *cb, int n_w, float *const *outs, const float *x, int n,
                      const struct tensor *const *ws, const struct tensor *const *biases, bool accumulate)
{
    const qfmt f = fmt_of(ws[0]);
    const int rows_per_block = QGEMV_R;   // the block's warps split k
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
    dim3 grid(blocks), block(QGEMV_WARPS * 32);
    for (int r0 = 0; r0 < n; r0 += QGEMV_MAX_N) {   // each x row's sums are the same in any slice
        const int nr = n - r0 < QGEMV_MAX_N ? n - r0 : QGEMV_MAX_N;
        for (int i = 0; i < n_w; i++) sg.out[i] = outs[i] + (size_t)r0 * sg.m[i];
        const float *xr = x + (size_t)r0 * f.k;
        DISPATCH_QFMT(f, {
            if (nr == 1) launch_pdl(cb, k_qgemv<MODE, BITS, 1>, grid, block, sg, xr, f, nr);
            else if (nr == 2) launch_pdl(cb, k_qgemv<MODE, BITS, 2>, grid, block, sg, xr, f, nr);
            else if (nr <= 4) launch_pdl(cb, k_qgemv<MODE, BITS, 4>, grid, block, sg, xr, f, nr);
            else launch_pdl(cb, k_qgemv<MODE, BITS, 8>, grid, block, sg, xr, f, nr);
        });
    }
    LAUNCH_CHECK();
}

void cuda_qgemv(struct cuda_backend *cb, float *out, const float *x, int n, const struct tensor *w,
                const struct tensor *bias, bool accumulate)
{
    cuda_qgemv_multi(cb, 1, &out, x, n, &w, &bias, accumulate);
}

bool cuda_qgemv_glu_fits(const struct tensor *gate, const struct tensor *up, const float *x)
{
    if (gate->dtype != DTYPE_QMLX || up->dtype != DTYPE_QMLX || !cuda_qgemv_fits(gate, x) || !cuda_qgemv_fits(up, x))
        return false;
    const qfmt fg = fmt_of(gate), fu = fmt_of(up);
    return fg.mode == fu.mode && fg.bits == fu.bits && fg.k == fu.k && gate->ne[1] == up->ne[1];
}

void cuda_qgemv_glu(struct cuda_backend *cb, float *out, const float *x, int n, const struct tensor *gate,
                    const struct tensor *up, enum act act)
{
    const qfmt fg = fmt_of(gate), fu = fmt_of(up);
    const qmat g = cuda_qmat_of(gate), u = cuda_qmat_of(up);
    const int m = (int)gate->ne[1], rows_per_block = QGEMV_R;
    dim3 grid((m + rows_per_block - 1) / rows_per_block), block(QGEMV_WARPS * 32);
    for (int r0 = 0; r0 < n; r0 += QGEMV_MAX_N) {
        const int nr = n - r0 < QGEMV_MAX_N ? n - r0 : QGEMV_MAX_N;
        float *o = out + (size_t)r0 * m;
        const float *xr = x + (size_t)r0 * fg.k;
        DISPATCH_QFMT(fg, {
            if (nr == 1) launch_pdl(cb, k_qgemv_glu<MODE, BITS, 1>, grid, block, o, xr, g, u, fg, fu, nr, m, (int)act);
            else if (nr == 2) launch_pdl(cb, k_qgemv_glu<MODE, BITS, 2>, grid, block, o, xr, g, u, fg, fu, nr, m, (int)act);
            else if (nr <= 4) launch_pdl(cb, k_qgemv_glu<MODE, BITS, 4>, grid, block, o, xr, g, u, fg, fu, nr, m, (int)act);
            else launch_pdl(cb, k_qgemv_glu<MODE, BITS, 8>, grid, block, o, xr, g, u, fg, fu, nr, m, (int)act);
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

/* The prefill path's dequantizer (inputs a multiple of 32): a thread per 32-code unit, decoded as
 * the GEMV decodes it (so bf16 / f32 rows come out at a few instructions per weight; the
 * per-element kernel above divides its way to every element). */
template <int MODE, int BITS, typename T>
__global__ void k_qdequant_units(T *dst, qmat qm, qfmt f, int64_t row0, int64_t rows)
{
    const int64_t n_units = f.k / 32;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < rows * n_units; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / n_units;
        const int u = (int)(i - r * n_units);
        uint32_t wd[BITS];
        load_unit<BITS>(wd, qm.w + (size_t)(row0 + r) * (size_t)(n_units * BITS) + (size_t)u * BITS);
        float sb[2], bb[2];
        unit_scales<MODE, BITS>(qm, f, (int)(row0 + r), u, 0, sb[0], bb[0]);
        unit_scales<MODE, BITS>(qm, f, (int)(row0 + r), u, 1, sb[1], bb[1]);
        T *o = dst + (size_t)r * f.k + (size_t)u * 32;
#pragma unroll
        for (int c = 0; c < 4; c++) {
            float w[8];
            unit_dequant8<MODE, BITS>(wd, 8 * c, sb[c / 2], bb[c / 2], w);
            store8(o + 8 * c, w);
        }
    }
}

void cuda_qdequant(struct cuda_backend *cb, void *dst, enum dtype dt, const struct tensor *w, int64_t row0, int64_t rows)
{
    const qmat qm = cuda_qmat_of(w);
    const qfmt f = fmt_of(w);
    if (f.k % 32 == 0 && (dt == DTYPE_BF16 || dt == DTYPE_F32)) {
        const size_t n = (size_t)rows * (f.k / 32);
        const int grid = (int)((n + 255) / 256 > 65535 ? 65535 : (n + 255) / 256);
        if (dt == DTYPE_BF16)
            DISPATCH_QFMT(f, k_qdequant_units<MODE, BITS, __nv_bfloat16><<<grid, 256, 0, cb->stream>>>(
                (__nv_bfloat16 *)dst, qm, f, row0, rows));
        else
            DISPATCH_QFMT(f, k_qdequant_units<MODE, BITS, float><<<grid, 256, 0, cb->stream>>>((float *)dst, qm, f, row0, rows));
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

/* out[slot, row] = W_{ids[slot]}[row] . x[slot / x_div] (MoE decode: one block column per slot). */
template <int MODE, int BITS>
__global__ void __launch_bounds__(QGEMV_WARPS * 32) k_moe_qgemv(float *out, const float *x, const qmat *tab, qfmt f,
                                                               const int32_t *ids, int m, int x_div)
{
    pdl_wait();      // ids and x come from the kernels before
    pdl_trigger();
    const int slot = blockIdx.y, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int row0 = blockIdx.x * QGEMV_R;
    const qmat qm = tab[ids[slot]];
    __shared__ float part[QGEMV_WARPS][QGEMV_R][1], sum[QGEMV_R][1];
    float acc[QGEMV_R][1];
    qrows_dot<MODE, BITS, 1>(acc, qm, f, row0, m, x + (size_t)(slot / x_div) * f.k, f.k, 1, warp, lane);
    qblock_sum<1>(acc, part, sum, warp, lane);
    if (threadIdx.x < QGEMV_R && row0 + (int)threadIdx.x < m) out[(size_t)slot * m + row0 + threadIdx.x] = sum[threadIdx.x][0];
}

/* out[slot, row] = act(gate . x) * (up . x) with x = x[slot / x_div] (gate, up of the slot's expert). */
template <int MODE, int BITS>
__global__ void __launch_bounds__(QGEMV_WARPS * 32) k_moe_qgate_up(float *out, const float *x, const qmat *tab_g,
                                                                  const qmat *tab_u, qfmt fg, qfmt fu,
                                                                  const int32_t *ids, int m, int x_div, int act)
{
    pdl_wait();      // ids and x come from the kernels before
    pdl_trigger();
    const int slot = blockIdx.y, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int row0 = blockIdx.x * QGEMV_R, e = ids[slot];
    const float *xr = x + (size_t)(slot / x_div) * fg.k;
    __shared__ float part[QGEMV_WARPS][QGEMV_R][1], sg[QGEMV_R][1], su[QGEMV_R][1];
    float acc[QGEMV_R][1];
    qrows_dot<MODE, BITS, 1>(acc, tab_g[e], fg, row0, m, xr, fg.k, 1, warp, lane);
    qblock_sum<1>(acc, part, sg, warp, lane);
    qrows_dot<MODE, BITS, 1>(acc, tab_u[e], fu, row0, m, xr, fu.k, 1, warp, lane);
    qblock_sum<1>(acc, part, su, warp, lane);
    if (threadIdx.x < QGEMV_R && row0 + (int)threadIdx.x < m)
        out[(size_t)slot * m + row0 + threadIdx.x] = glu_act(sg[threadIdx.x][0], act) * su[threadIdx.x][0];
}

void cuda_moe_qgate_up(struct cuda_backend *cb, float *out, const float *x, const qmat *d_tab_g, const qmat *d_tab_u,
                       const struct tensor *g0, const struct tensor *u0, const int32_t *d_ids, int n_slots, int x_div,
                       enum act act)
{
    const qfmt fg = fmt_of(g0), fu = fmt_of(u0);
    const int m = (int)g0->ne[1], rows_per_block = QGEMV_R;
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
    const int m = (int)w0->ne[1], rows_per_block = QGEMV_R;
    CHECK(f.k % 32 == 0, "cuda moe: quantized experts need inputs in multiples of 32 (%d)", f.k);
    dim3 grid((m + rows_per_block - 1) / rows_per_block, n_slots), block(QGEMV_WARPS * 32);
    DISPATCH_QFMT(f, launch_pdl(cb, k_moe_qgemv<MODE, BITS>, grid, block, out, x, d_tab, f, d_ids, m, x_div));
    LAUNCH_CHECK();
}
