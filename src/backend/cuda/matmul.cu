/* matmul: out[n, m] = x[n, k] @ w[m, k]^T for bf16/f16/f32 weights, and its fused forms.
 *
 * ==== Which kernel runs (choose_matmul_kernel; CAIRN_PROFILE's per-kernel lines use its names) ====
 *
 *  op             | rows n | outputs m | weights, operands            | mode          | kernel
 *  ---------------+--------+-----------+------------------------------+---------------+-----------------------
 *  matmul(_add,   | <= 64  | <= 256    | 16-byte aligned, k % vec     | any           | gemv (n >= 16: gemv_wide
 *   _rows)        |        |           |                              |               |   slices, gemv the rest)
 *                 | > 64   | <= 256    | bf16/f16                     | not determ.   | cublas_hi_lo (f32-accurate)
 *                 | 1-4    | any       |   "                          | any           |   "
 *                 | any    | any       |   "                          | deterministic |   "
 *                 | (same rows as the three lines above, operands not aligned)         | gemv_scalar
 *                 | 5-16   | > 256     | bf16/f16, k % 64, w aligned  | default       | skinny (tensor cores)
 *                 | other  |           |                              | any           | cublas (precise: hi + lo)
 *  matmul, MLX-  | 1-16   | any       | k % 32, 16-byte aligned x    | any           | qgemv (instances and rows a
 *   quantized     | any    | <= 256    |   "                          | any           |   launch: qmatmul.cu)
 *   weights       | any    | any       |   "                          | deterministic |   "
 *                 | other  |           |   "                          | not determ.   | qdeq_cublas (rows dequantized
 *                 |        |           |                              |               |   to bf16, f32 if precise, in
 *                 |        |           |                              |               |   chunks, then cublas)
 *                 | (operands that qgemv does not take)                                 | qdeq_full (dequantized to
 *                 |        |           |                              |               |   f32, then the rows above)
 *  matmul_n       | 1-4    | any       | one dtype, <= 3 matrices     | any           | gemv_multi (one launch)
 *                 | 1-8    |   "       |   "                          | deterministic |   "
 *                 | 17-256 |   "       | 16-bit, back to back in one  | where each    | cublas_fused (one GEMM,
 *                 |        |           | buffer, each takes cublas,   | takes cublas  |   then a column split)
 *                 |        |           | one < 2048 outputs (k, v)    |               |
 *                 | other: each matrix as a matmul above                                | composed
 *  norm_matmul_n  | 1-4    | any       | norm dtype = weights', not   | not determ.   | gemv_norm (RMSNorm fused)
 *                 |        |           | f32, aligned, x contiguous   |               |
 *                 | other: rmsnorm, then matmul_n                                       | composed
 *  matmul_glu     | 1-4    | any       | bf16/f16, aligned, k % 8;    | not determ.   | gemv_glu_norm
 *                 |        |           | norm fits GLU_NORM_SMEM      |               |
 *                 | 1-4    |   "       |   " (no norm or not fused:   | any           | gemv_glu
 *                 |        |           |   rmsnorm first)             |               |
 *                 | other: rmsnorm, matmul_n, glu                                       | composed
 *  matmul_n       | 1-16   | any       | quantized, one format, fits  | any           | qgemv_multi (one launch per
 *                 | any    |   "       | qgemv; biases of one dtype   | deterministic |   8 rows, as qgemv)
 *  norm_matmul_n  | 1      | any       | as qgemv_multi; bf16 norm,   | not determ.   | qgemv_norm (RMSNorm fused)
 *                 |        |           | aligned, x contiguous        |               |
 *  matmul_glu     | 1      | any       | as qgemv_glu; norm as above  | not determ.   | qgemv_glu_norm (fused)
 *                 | 1-16   | any       | quantized, gate and up of    | any           | qgemv_glu (rmsnorm first)
 *                 | any    |   "       | one mode, fit qgemv          | deterministic |   "
 *  (fused ops)    | other quantized weights: the separate ops, each chosen again        | composed
 *
 * gemv (k_gemv): a bandwidth-bound GEMV. Each warp owns one weight row and streams it once with
 * 16-byte loads (eight in flight per lane) that bypass L1, applying it to all n (<= GEMV_MAX_N)
 * activation rows; x is re-read from L1. Launched as a programmatic dependent of the kernel before
 * it: its first weight loads are issued while that kernel drains, and it waits for it only before
 * touching x. Epilogue fusions: bias, out += (residual adds, matmul_add), several matrices sharing
 * x (matmul_n: q/k/v), the GLU of an FFN's gate and up rows (k_gemv_glu: one warp streams both)
 * and the RMSNorm of x (norm_matmul_n, matmul_glu: on, 1.5% faster decode than the separate
 * kernel; not in deterministic mode, where rows beyond the GEMV's batch take the separate norm).
 * Each token's dot product is summed in the same order whatever n is, so a token's result does
 * not depend on the batch (batch invariance within the GEMV path); k_gemv_wide reproduces those
 * sums 16 tokens at a time. Narrow outputs (MoE routers, DeltaNet gates) keep f32-accurate
 * inputs at any n: rounding them to bf16 would flip near-tied expert choices. Up to 64 rows they
 * take this GEMV; beyond, the GEMV re-reads the weights every 16 rows on CUDA cores (65% of a
 * Qwen3.6-35B-A3B 4K prefill's GPU time), so they take cuBLAS with x as hi + lo bf16 halves. skinny (k_gemm_skinny) streams the
 * weights once and multiplies on tensor cores; cublas takes prefill and large batches. Both round
 * the activations to the weight dtype and accumulate in f32; this is where the GPU backend trades
 * bit-exactness for speed. Measured losers (the git history and bench/results have the numbers):
 * two warps per row, four loads in flight, weights through __ldg, GEMV up to 8 rows, skinny at 32
 * rows; bench/kernels/matmul.cu compares the kernels kept here.
 */
#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/mma.cuh"

#include <limits.h>

#define GEMV_MAX_N        8     // rows one k_gemv launch takes
#define GEMV_DECODE_MAX_N 4     // rows a matmul sends to the GEMV: at 5-8 the x re-reads saturate L1
                                // (8 streams of an 8B model: 939 tok/s through cuBLAS, 458 GEMV)
#define GEMV_WARPS    8
#define GEMV_MAX_SEGS 3     // matrices one k_gemv launch takes (q/k/v)
#define GEMV_NARROW_M 256   // outputs this narrow keep f32-accurate inputs: the GEMV, or cublas_hi_lo
#define GEMV_NARROW_MAX_N 64   // rows of a narrow matmul the GEMV takes (beyond: cublas_hi_lo)
#define GEMV_WIDE_N   16    // tokens per k_gemv_wide launch
#define GLU_NORM_SMEM 32768 // most bytes of normed x that matmul_glu stages in shared memory
#define QGEMV_DECODE_MAX_N 16        // rows a quantized matmul sends to k_qgemv outside deterministic mode
#define QDEQ_CHUNK_ELEMS (32 << 20)   // most weights qdeq_cublas dequantizes at once (64 MB as bf16)
#define SK_MAX_N      16    // rows k_gemm_skinny takes. At 32 it measured +7% in model_bench and -9%
                            // in the engine against cuBLAS, and 4,826 vs 6,763 tok/s at 64 with 8 n8 tiles

enum matmul_kernel {
    MATMUL_GEMV,            // k_gemv, one matrix
    MATMUL_GEMV_WIDE,       // k_gemv_wide on slices of GEMV_WIDE_N rows, k_gemv on the rest
    MATMUL_GEMV_SCALAR,     // k_gemv_scalar: odd k or unaligned operands
    MATMUL_SKINNY,          // k_gemm_skinny
    MATMUL_CUBLAS,          // cublasGemmEx / cublasSgemm (+ k_add_bias)
    MATMUL_CUBLAS_HI_LO,    // the same with x as hi + lo halves (f32-accurate), for narrow outputs
    MATMUL_GEMV_MULTI,      // k_gemv over up to three matrices in one launch
    MATMUL_GEMV_NORM,       // k_gemv with the RMSNorm of x fused
    MATMUL_GEMV_GLU,        // k_gemv_glu
    MATMUL_GEMV_GLU_NORM,   // k_gemv_glu with the RMSNorm of x fused
    MATMUL_QGEMV,           // k_qgemv (qmatmul.cu): quantized weights, decode rows
    MATMUL_QDEQ_CUBLAS,     // quantized weights: chunks of rows dequantized, then cuBLAS
    MATMUL_QDEQ_FULL,       // quantized weights: the matrix dequantized to f32, then the f32 choice
    MATMUL_QGEMV_MULTI,     // k_qgemv over up to three quantized matrices sharing x
    MATMUL_QGEMV_GLU,       // k_qgemv_glu: quantized gate and up with the GLU
    MATMUL_QGEMV_NORM,      // k_qgemv over up to three quantized matrices with the RMSNorm of x fused
    MATMUL_QGEMV_GLU_NORM,  // k_qgemv_glu with the RMSNorm of x fused
    MATMUL_COMPOSED,        // no kernel of its own: the separate ops, each chosen again
    MATMUL_N_KERNELS
};
static const char *const matmul_kernel_name[MATMUL_N_KERNELS] = {
    "matmul gemv", "matmul gemv_wide", "matmul gemv_scalar", "matmul skinny", "matmul cublas", "matmul cublas_hi_lo",
    "matmul gemv_multi", "matmul gemv_norm", "matmul gemv_glu", "matmul gemv_glu_norm", "matmul qgemv",
    "matmul qdeq_cublas", "matmul qdeq_full", "matmul qgemv_multi", "matmul qgemv_glu", "matmul qgemv_norm",
    "matmul qgemv_glu_norm", "matmul composed",
};

enum matmul_op { MATMUL_OP_PLAIN, MATMUL_OP_MULTI, MATMUL_OP_NORM, MATMUL_OP_GLU };

/* One call as choose_matmul_kernel sees it. */
struct matmul_call {
    enum matmul_op             op;
    int                        n, k;      // rows of x, inputs
    const float               *x;         // [n, k] device rows
    bool                       x_contiguous;
    int                        n_w;       // matrices sharing x (GLU: gate, up)
    const struct tensor *const *ws;       // [n_w] weights [m, k]
    const struct tensor       *norm_w;    // RMSNorm weight to fuse ([k]), or NULL
    const struct tensor *const *biases;   // matmul_n: [n_w] or NULL
};

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

static int vec_width(enum dtype dt) { return dt == DTYPE_F32 ? 4 : 8; }   // elements per 16-byte load

/* The one place that decides (the table above). */
static enum matmul_kernel choose_matmul_kernel(const struct cuda_backend *cb, const struct matmul_call *c)
{
    const struct tensor *w = c->ws[0];
    const enum dtype dt = w->dtype;
    const int n = c->n, k = c->k;
    bool same_dtype = true, vec = k % vec_width(dt) == 0 && aligned16(c->x), quantized = false;
    for (int i = 0; i < c->n_w; i++) {
        same_dtype = same_dtype && c->ws[i]->dtype == dt;
        vec = vec && aligned16(dptr(c->ws[i]));
        quantized = quantized || c->ws[i]->dtype == DTYPE_QMLX;
    }
    if (quantized) {
        const bool gemv_rows = n <= QGEMV_DECODE_MAX_N || cb->deterministic;
        if (c->op == MATMUL_OP_MULTI)
            return gemv_rows && cuda_qgemv_fits_multi(c->n_w, c->ws, c->biases, c->x) ? MATMUL_QGEMV_MULTI : MATMUL_COMPOSED;
        // the RMSNorm fused at batch 1 (not in deterministic mode: rows beyond it take the separate norm)
        const bool fuse_norm = c->norm_w && !cb->deterministic && c->x_contiguous && cuda_qgemv_norm_fits(c->norm_w, k, n);
        if (c->op == MATMUL_OP_GLU) {
            if (!gemv_rows || !c->x_contiguous || !cuda_qgemv_glu_fits(w, c->ws[1], c->x)) return MATMUL_COMPOSED;
            return fuse_norm ? MATMUL_QGEMV_GLU_NORM : MATMUL_QGEMV_GLU;
        }
        if (c->op == MATMUL_OP_NORM)
            return fuse_norm && cuda_qgemv_fits_multi(c->n_w, c->ws, c->biases, c->x) ? MATMUL_QGEMV_NORM : MATMUL_COMPOSED;
        if (c->op != MATMUL_OP_PLAIN) return MATMUL_COMPOSED;
        if (!cuda_qgemv_fits(w, c->x)) return MATMUL_QDEQ_FULL;
        return n <= QGEMV_DECODE_MAX_N || (int)w->ne[1] <= GEMV_NARROW_M || cb->deterministic ? MATMUL_QGEMV
                                                                                             : MATMUL_QDEQ_CUBLAS;
    }
    switch (c->op) {
    case MATMUL_OP_PLAIN:
    {
        const bool narrow = (int)w->ne[1] <= GEMV_NARROW_M;
        if (narrow && n > GEMV_NARROW_MAX_N && !cb->deterministic && (dt == DTYPE_BF16 || dt == DTYPE_F16))
            return MATMUL_CUBLAS_HI_LO;
        if (n <= GEMV_DECODE_MAX_N || narrow || cb->deterministic)
            return !vec ? MATMUL_GEMV_SCALAR : n >= GEMV_WIDE_N ? MATMUL_GEMV_WIDE : MATMUL_GEMV;
    }
        if (cb->skinny && !cb->precise && n <= SK_MAX_N && (dt == DTYPE_BF16 || dt == DTYPE_F16) && k % 64 == 0 &&
            aligned16(dptr(w)))
            return MATMUL_SKINNY;
        return MATMUL_CUBLAS;
    case MATMUL_OP_MULTI:
        if (n > (cb->deterministic ? GEMV_MAX_N : GEMV_DECODE_MAX_N) || c->n_w > GEMV_MAX_SEGS || !same_dtype)
            return MATMUL_COMPOSED;
        return vec ? MATMUL_GEMV_MULTI : MATMUL_GEMV_SCALAR;
    case MATMUL_OP_NORM: {
        const struct tensor *nw = c->norm_w;
        bool fuse = !cb->deterministic && n <= GEMV_DECODE_MAX_N && c->n_w <= GEMV_MAX_SEGS && nw->ne[0] == k &&
                    c->x_contiguous && nw->dtype != DTYPE_F32 && vec && aligned16(dptr(nw));
        for (int i = 0; i < c->n_w; i++) fuse = fuse && c->ws[i]->dtype == nw->dtype && c->ws[i]->ne[0] == k;
        return fuse ? MATMUL_GEMV_NORM : MATMUL_COMPOSED;
    }
    case MATMUL_OP_GLU: {
        const struct tensor *wu = c->ws[1], *nw = c->norm_w;
        const bool fuse = n <= GEMV_DECODE_MAX_N && same_dtype && dt != DTYPE_F32 && wu->ne[1] == w->ne[1] &&
                          w->ne[0] == k && wu->ne[0] == k && k % 8 == 0 && c->x_contiguous && vec;
        if (!fuse) return MATMUL_COMPOSED;
        if (nw && !cb->deterministic && nw->dtype == dt && nw->ne[0] == k && sizeof(float) * (size_t)n * k <= GLU_NORM_SMEM)
            return MATMUL_GEMV_GLU_NORM;
        return MATMUL_GEMV_GLU;
    }
    }
    return MATMUL_COMPOSED;
}

template <typename T> struct vec16;   // 16 bytes of T
template <> struct vec16<__nv_bfloat16> { static const int n = 8; };
template <> struct vec16<__half> { static const int n = 8; };
template <> struct vec16<float> { static const int n = 4; };

template <typename T>
__device__ __forceinline__ void unpack16(const uint4 &u, float *f);
template <>
__device__ __forceinline__ void unpack16<__nv_bfloat16>(const uint4 &u, float *f)
{
    const uint32_t w[4] = { u.x, u.y, u.z, u.w };
#pragma unroll
    for (int i = 0; i < 4; i++) {
        f[2 * i] = __uint_as_float(w[i] << 16);
        f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
}
template <>
__device__ __forceinline__ void unpack16<__half>(const uint4 &u, float *f)
{
    const uint32_t w[4] = { u.x, u.y, u.z, u.w };
#pragma unroll
    for (int i = 0; i < 4; i++) {
        __half2 h = *reinterpret_cast<const __half2 *>(&w[i]);
        float2 v = __half22float2(h);
        f[2 * i] = v.x;
        f[2 * i + 1] = v.y;
    }
}
template <>
__device__ __forceinline__ void unpack16<float>(const uint4 &u, float *f)
{
    f[0] = __uint_as_float(u.x); f[1] = __uint_as_float(u.y); f[2] = __uint_as_float(u.z); f[3] = __uint_as_float(u.w);
}

/* Up to three weight matrices that share the input (q/k/v, gate/up) in one launch: the grid
 * covers their rows back to back. Optional fusions: norm_w != NULL applies RMSNorm to x on the
 * fly (each block recomputes the rows' inverse rms from x, which sits in L2); accumulate adds the
 * result into out (residual adds). */
template <typename T>
struct gemv_segs {
    const T *w[GEMV_MAX_SEGS];
    const T *bias[GEMV_MAX_SEGS];
    float   *out[GEMV_MAX_SEGS];
    int      m[GEMV_MAX_SEGS];
    int      n_segs;
    const T *norm_w;        // [k] RMSNorm weight, or NULL
    float    eps, w_offset;
    bool     accumulate;    // out += x @ w^T
};

/* Row r of the concatenated segments: its segment and its row within it. */
template <typename T>
__device__ __forceinline__ int seg_locate(const gemv_segs<T> &sg, int &r)
{
    int seg = 0;
#pragma unroll
    for (int i = 0; i < GEMV_MAX_SEGS - 1; i++)
        if (seg == i && i < sg.n_segs - 1 && r >= sg.m[i]) { r -= sg.m[i]; seg = i + 1; }
    return seg;
}

/* A 16-byte weight load that bypasses L1 (weights are read once; keeping them out of L1 leaves it
 * to x, which every warp re-reads) and asks L2 to fetch 256-byte sectors (fewer DRAM requests). */
__device__ __forceinline__ uint4 ld_weight16(const uint4 *p)
{
    uint4 r;
    asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
    return r;
}

/* acc[t] += w[vi-th 16 bytes] . x[t][same columns]. With NORM the weights are taken times the
 * RMSNorm weight (nw + w_offset) and ss[t] collects x's sum of squares: the row's epilogue scales
 * by the inverse rms, so the norm needs neither its own kernel nor a pass over x before the loads
 * (every warp sums the same squares in the same order: all rows see the same rms). */
template <typename T, int N, bool NORM>
__device__ __forceinline__ void gemv_fma(float *acc, float *ss, const uint4 &u, int vi, const float *x, int k,
                                         const uint4 *nw, float w_offset)
{
    const int V = vec16<T>::n;
    float f[V];
    unpack16<T>(u, f);
    if (NORM) {
        float g[V];
        unpack16<T>(__ldg(nw + vi), g);
#pragma unroll
        for (int e = 0; e < V; e++) f[e] *= g[e] + w_offset;
    }
    const int col = vi * V;
#pragma unroll
    for (int t = 0; t < N; t++) {
        const float4 *xv = reinterpret_cast<const float4 *>(x + (size_t)t * k + col);
#pragma unroll
        for (int q = 0; q < V / 4; q++) {
            float4 a = xv[q];   // not __ldg: x is written by the kernel this one overlaps (PDL)
            acc[t] += f[4 * q] * a.x + f[4 * q + 1] * a.y + f[4 * q + 2] * a.z + f[4 * q + 3] * a.w;
            if (NORM) ss[t] += a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w;
        }
    }
}

/* Requires k % vec16<T>::n == 0 and 16-byte aligned rows. One warp per row (rows cut over two
 * warps measured slower on H100, ncu, 4K-12K inputs); U = 8 16-byte loads in flight per lane (8%
 * faster decode than 4); weights through ld_weight16 (faster than __ldg through L1).
 * (Three blocks per SM: 80 registers; four (64 registers) measured 1-3% slower on H100.) */
#define GEMV_U 8
template <typename T, int N, bool NORM>
__global__ void __launch_bounds__(GEMV_WARPS * 32, 3) k_gemv(gemv_segs<T> sg, const float *x, int k)
{
    pdl_trigger();   // the next kernel may take SMs as this one's blocks drain (it waits for us)
    const int V = vec16<T>::n;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int row = blockIdx.x * GEMV_WARPS + warp;
    const int seg = seg_locate(sg, row);
    const bool valid = row < seg_pick(sg.m, seg);
    const int n_vec = k / V;
    const int hi = valid ? n_vec : 0;
    const uint4 *wr = reinterpret_cast<const uint4 *>(seg_pick(sg.w, seg) + (size_t)(valid ? row : 0) * k);
    const uint4 *nw = reinterpret_cast<const uint4 *>(sg.norm_w);
    float acc[N], ss[N];
#pragma unroll
    for (int t = 0; t < N; t++) acc[t] = ss[t] = 0.0f;
    int base = 0;
    for (; base + GEMV_U * 32 <= hi; base += GEMV_U * 32) {   // GEMV_U loads in flight per lane
        uint4 u[GEMV_U];
#pragma unroll
        for (int j = 0; j < GEMV_U; j++) u[j] = ld_weight16(wr + base + j * 32 + lane);
        if (base == 0) pdl_wait();   // the first weights are on their way; x comes from the previous kernel
#pragma unroll
        for (int j = 0; j < GEMV_U; j++) gemv_fma<T, N, NORM>(acc, ss, u[j], base + j * 32 + lane, x, k, nw, sg.w_offset);
    }
    if (base == 0) pdl_wait();   // rows shorter than one batch
    for (int vi = base + lane; vi < hi; vi += 32) gemv_fma<T, N, NORM>(acc, ss, __ldg(wr + vi), vi, x, k, nw, sg.w_offset);
#pragma unroll
    for (int t = 0; t < N; t++) {
        acc[t] = warp_sum(acc[t]);
        if (NORM) acc[t] *= rsqrtf(warp_sum(ss[t]) / (float)k + sg.eps);
    }
    if (!valid || lane != 0) return;
    const T *bias = seg_pick(sg.bias, seg);
    float *out = seg_pick(sg.out, seg);
    const int m = seg_pick(sg.m, seg);
#pragma unroll
    for (int t = 0; t < N; t++) {
        float s = acc[t] + (bias ? to_f<T>(bias[row]) : 0.0f);
        float *o = out + (size_t)t * m + row;
        *o = sg.accumulate ? *o + s : s;
    }
}

/* Gate and up rows of one FFN in one warp, written as act(gate) * up (decode): the GLU costs no
 * launch and no round trip. Each row's sums run in k_gemv's order (lane-strided 16-byte chunks in
 * ascending order, then the warp tree), so the result equals k_gemv's followed by k_glu.
 * NORM: x is RMSNorm'ed in the kernel. After issuing its first weight loads the block stages
 * x * (norm weight + w_offset) in shared memory (dynamic, [N][k]) and sums x's squares; the rows'
 * sums are scaled by the inverse rms at the end. (Scaling the weights in the inner loop instead,
 * as k_gemv does, made this kernel instruction-bound: 8% slower on H100.) */
template <typename T, int N, int U, bool NORM>
__global__ void __launch_bounds__(GEMV_WARPS * 32, 3) k_gemv_glu(float *out, const T *wg, const T *wu, const float *x,
                                                               int m, int k, int act, const T *norm_w, float eps,
                                                               float w_offset)
{
    pdl_trigger();
    extern __shared__ __align__(16) float xs_s[];   // NORM: [N][k]
    __shared__ float red[GEMV_WARPS][N];
    __shared__ float inv_s[N];
    const int V = vec16<T>::n;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, row = blockIdx.x * GEMV_WARPS + warp;
    const bool valid = row < m;
    const int n_vec = k / V, hi = valid ? n_vec : 0;
    const uint4 *rg = reinterpret_cast<const uint4 *>(wg + (size_t)(valid ? row : 0) * k);
    const uint4 *ru = reinterpret_cast<const uint4 *>(wu + (size_t)(valid ? row : 0) * k);
    const float *xp = NORM ? xs_s : x;
    float ag[N], au[N];
#pragma unroll
    for (int t = 0; t < N; t++) ag[t] = au[t] = 0.0f;
    int base = 0;
    if (NORM) {
        const bool full = U * 32 <= hi;
        uint4 g[U], u[U];
        if (full)
#pragma unroll
            for (int j = 0; j < U; j++) {
                g[j] = ld_weight16(rg + j * 32 + lane);
                u[j] = ld_weight16(ru + j * 32 + lane);
            }
        pdl_wait();
#pragma unroll
        for (int t = 0; t < N; t++) {
            const float4 *x4 = reinterpret_cast<const float4 *>(x + (size_t)t * k);
            float4 *s4 = reinterpret_cast<float4 *>(xs_s + (size_t)t * k);
            float ss = 0.0f;
            for (int i = threadIdx.x; i < k / 4; i += GEMV_WARPS * 32) {
                const float4 a = x4[i];
                float gm[4];
#pragma unroll
                for (int e = 0; e < 4; e++) gm[e] = to_f<T>(norm_w[4 * i + e]) + w_offset;
                ss += a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w;
                s4[i] = make_float4(a.x * gm[0], a.y * gm[1], a.z * gm[2], a.w * gm[3]);
            }
            ss = warp_sum(ss);
            if (lane == 0) red[warp][t] = ss;
        }
        __syncthreads();
        if (threadIdx.x < N) {
            float ss = 0.0f;
            for (int w = 0; w < GEMV_WARPS; w++) ss += red[w][threadIdx.x];
            inv_s[threadIdx.x] = rsqrtf(ss / (float)k + eps);
        }
        __syncthreads();
        if (full) {
#pragma unroll
            for (int j = 0; j < U; j++) {
                gemv_fma<T, N, false>(ag, NULL, g[j], j * 32 + lane, xp, k, NULL, 0.0f);
                gemv_fma<T, N, false>(au, NULL, u[j], j * 32 + lane, xp, k, NULL, 0.0f);
            }
            base = U * 32;
        }
    }
    for (; base + U * 32 <= hi; base += U * 32) {   // U loads of each matrix in flight per lane
        uint4 g[U], u[U];
#pragma unroll
        for (int j = 0; j < U; j++) {
            g[j] = ld_weight16(rg + base + j * 32 + lane);
            u[j] = ld_weight16(ru + base + j * 32 + lane);
        }
        if (!NORM && base == 0) pdl_wait();
#pragma unroll
        for (int j = 0; j < U; j++) {
            gemv_fma<T, N, false>(ag, NULL, g[j], base + j * 32 + lane, xp, k, NULL, 0.0f);
            gemv_fma<T, N, false>(au, NULL, u[j], base + j * 32 + lane, xp, k, NULL, 0.0f);
        }
    }
    if (!NORM && base == 0) pdl_wait();
    for (int vi = base + lane; vi < hi; vi += 32) {
        gemv_fma<T, N, false>(ag, NULL, ld_weight16(rg + vi), vi, xp, k, NULL, 0.0f);
        gemv_fma<T, N, false>(au, NULL, ld_weight16(ru + vi), vi, xp, k, NULL, 0.0f);
    }
#pragma unroll
    for (int t = 0; t < N; t++) {
        ag[t] = warp_sum(ag[t]);
        au[t] = warp_sum(au[t]);
        if (NORM) {
            ag[t] *= inv_s[t];
            au[t] *= inv_s[t];
        }
    }
    if (!valid || lane != 0) return;
#pragma unroll
    for (int t = 0; t < N; t++) out[(size_t)t * m + row] = glu_act(ag[t], act) * au[t];
}

/* Any k and alignment: one warp per row, scalar loads. */
template <typename T>
__global__ void k_gemv_scalar(float *out, const float *x, const T *w, const T *bias, int n, int m, int k, bool accumulate)
{
    int row = blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= m) return;
    for (int t = 0; t < n; t++) {
        float acc = 0;
        for (int i = lane; i < k; i += 32) acc += to_f<T>(w[(size_t)row * k + i]) * x[(size_t)t * k + i];
        acc = warp_sum(acc);
        float s = acc + (bias ? to_f<T>(bias[row]) : 0.0f);
        if (lane == 0) out[(size_t)t * m + row] = accumulate ? out[(size_t)t * m + row] + s : s;
    }
}

/* Wide batches on the GEMV path (cuda-deterministic: every row of every step goes through the
 * GEMV, so a 64-stream step used to stream the weights eight times, 8 rows each). A warp owns
 * GEMV_WIDE_R rows and applies each token's x chunk to all of them (k_gemv re-reads x per row).
 * Each (row, token) sum is k_gemv's to the bit: the lane takes the same 16-byte chunks in the
 * same ascending order, computes the same expression per chunk, and ends with the same warp tree.
 * So a token's result is still the same in any batch. The kernel is bound by its f32 FMAs
 * (staging x in shared memory instead of L1 measured no faster). */
#define GEMV_WIDE_R     4    // rows per warp
#define GEMV_WIDE_WARPS 4    // warps per block (three blocks per SM at 170 registers)
template <typename T>
__global__ void __launch_bounds__(GEMV_WIDE_WARPS * 32, 3) k_gemv_wide(float *out, const float *x, const T *w,
                                                                       const T *bias, int m, int k, bool accumulate)
{
    pdl_trigger();
    constexpr int V = vec16<T>::n, N = GEMV_WIDE_N, R = GEMV_WIDE_R;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int row0 = (blockIdx.x * GEMV_WIDE_WARPS + warp) * R;
    const int n_vec = k / V;
    const uint4 *wr[R];
#pragma unroll
    for (int r = 0; r < R; r++) wr[r] = reinterpret_cast<const uint4 *>(w + (size_t)(row0 + r < m ? row0 + r : 0) * k);
    float acc[R][N];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int t = 0; t < N; t++) acc[r][t] = 0.0f;
    for (int vi = lane; vi < n_vec; vi += 32) {
        uint4 u[R];
#pragma unroll
        for (int r = 0; r < R; r++) u[r] = ld_weight16(wr[r] + vi);
        if (vi == lane) pdl_wait();   // x comes from the kernel before
        float f[R][V];
#pragma unroll
        for (int r = 0; r < R; r++) unpack16<T>(u[r], f[r]);
#pragma unroll
        for (int t = 0; t < N; t++) {
            const float4 *xv = reinterpret_cast<const float4 *>(x + (size_t)t * k + vi * V);
#pragma unroll
            for (int q = 0; q < V / 4; q++) {
                const float4 a = xv[q];
#pragma unroll
                for (int r = 0; r < R; r++)   // gemv_fma's expression
                    acc[r][t] += f[r][4 * q] * a.x + f[r][4 * q + 1] * a.y + f[r][4 * q + 2] * a.z + f[r][4 * q + 3] * a.w;
            }
        }
    }
    if (lane >= n_vec) pdl_wait();
#pragma unroll
    for (int r = 0; r < R; r++) {
        const int row = row0 + r;
#pragma unroll
        for (int t = 0; t < N; t++) {
            const float v = warp_sum(acc[r][t]);
            if (lane != 0 || row >= m) continue;
            const float sum = v + (bias ? to_f<T>(bias[row]) : 0.0f);
            float *o = out + (size_t)t * m + row;
            *o = accumulate ? *o + sum : sum;
        }
    }
}

/* n <= GEMV_MAX_N tokens through every segment: k_gemv (kern MATMUL_GEMV_*: choose_matmul_kernel
 * checked the 16-byte loads fit), or k_gemv_scalar (MATMUL_GEMV_SCALAR; never with a fused norm). */
template <typename T>
static void gemv_multi(struct cuda_backend *cb, const gemv_segs<T> &sg, const float *x, int n, int k,
                       enum matmul_kernel kern)
{
    int rows = 0;
    for (int i = 0; i < sg.n_segs; i++) rows += sg.m[i];
    dim3 block(GEMV_WARPS * 32);
    if (kern == MATMUL_GEMV_SCALAR) {
        CHECK(!sg.norm_w, "cuda matmul: a fused norm on the scalar GEMV");
        for (int i = 0; i < sg.n_segs; i++)
            k_gemv_scalar<T><<<(sg.m[i] + GEMV_WARPS - 1) / GEMV_WARPS, block, 0, cb->stream>>>(sg.out[i], x, sg.w[i],
                                                                                               sg.bias[i], n, sg.m[i], k,
                                                                                               sg.accumulate);
        return;
    }
    dim3 grid((rows + GEMV_WARPS - 1) / GEMV_WARPS);
#define GEMV_CASE(NN) case NN: \
        if (sg.norm_w) launch_pdl(cb, k_gemv<T, NN, true>, grid, block, sg, x, k); \
        else launch_pdl(cb, k_gemv<T, NN, false>, grid, block, sg, x, k); \
        break;
    switch (n) {
    GEMV_CASE(1) GEMV_CASE(2) GEMV_CASE(3) GEMV_CASE(4) GEMV_CASE(5) GEMV_CASE(6) GEMV_CASE(7)
    default: GEMV_CASE(8)
    }
#undef GEMV_CASE
}

template <typename T>
static void gemv(struct cuda_backend *cb, float *out, const float *x, const T *w, const T *bias, int n, int m, int k,
                 bool accumulate, enum matmul_kernel kern)
{
    gemv_segs<T> sg = {};
    sg.accumulate = accumulate;
    sg.w[0] = w;
    sg.bias[0] = bias;
    sg.out[0] = out;
    sg.m[0] = m;
    sg.n_segs = 1;
    gemv_multi<T>(cb, sg, x, n, k, kern);
}

template <typename T>
__global__ void k_to_dtype(T *dst, const float *src, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = from_f<T>(src[i]);
}

/* x = hi + lo with hi = x rounded to T and lo = the rest rounded to T: two GEMMs against the
 * same weights give an f32-accurate product (the weights are exact in T; cuBLAS accumulates in f32). */
template <typename T>
__global__ void k_split_hi_lo(T *hi, T *lo, const float *src, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        T h = from_f<T>(src[i]);
        hi[i] = h;
        lo[i] = from_f<T>(src[i] - to_f<T>(h));
    }
}

template <typename T>
__global__ void k_add_bias(float *out, const T *bias, int m, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] += to_f<T>(bias[i % m]);
}

/* out[n, m] (row stride ldo) = x @ w^T (+= with accumulate) by cuBLAS; 16-bit weights take x rounded
 * to their dtype, or as hi + lo halves with hi_lo (f32-accurate). */
static void gemm_cublas(struct cuda_backend *cb, float *out, const float *x, const struct tensor *w, int n, int m, int k,
                        bool accumulate, int ldo, bool hi_lo)
{
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    cuda_mark_unrecordable(cb);   // cuBLAS may allocate its workspace on a call
    if (w->dtype == DTYPE_F32) {
        CUBLAS_CHECK(cublasSgemm(cb->cublas, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, (const float *)dptr(w), k, x, k,
                                 &beta, out, ldo));
        return;
    }
    cudaDataType dt = w->dtype == DTYPE_BF16 ? CUDA_R_16BF : CUDA_R_16F;
    size_t nel = (size_t)n * k;
    int grid = (int)((nel + 255) / 256 > 65535 ? 65535 : (nel + 255) / 256);
    if (hi_lo) {   // hi and lo copies of x (cuda_matmul_rows leaves room for both)
        uint16_t *hi = (uint16_t *)cuda_workspace(cb, 2 * sizeof(uint16_t) * nel), *lo = hi + nel;
        if (w->dtype == DTYPE_BF16)
            k_split_hi_lo<__nv_bfloat16><<<grid, 256, 0, cb->stream>>>((__nv_bfloat16 *)hi, (__nv_bfloat16 *)lo, x, nel);
        else k_split_hi_lo<__half><<<grid, 256, 0, cb->stream>>>((__half *)hi, (__half *)lo, x, nel);
        LAUNCH_CHECK();
        const float one = 1.0f;
        CUBLAS_CHECK(cublasGemmEx(cb->cublas, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, dptr(w), dt, k, hi, dt, k, &beta,
                                  out, CUDA_R_32F, ldo, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        CUBLAS_CHECK(cublasGemmEx(cb->cublas, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, dptr(w), dt, k, lo, dt, k, &one,
                                  out, CUDA_R_32F, ldo, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        return;
    }
    void *xb = cuda_workspace(cb, sizeof(uint16_t) * nel);
    if (w->dtype == DTYPE_BF16) k_to_dtype<__nv_bfloat16><<<grid, 256, 0, cb->stream>>>((__nv_bfloat16 *)xb, x, nel);
    else k_to_dtype<__half><<<grid, 256, 0, cb->stream>>>((__half *)xb, x, nel);
    LAUNCH_CHECK();
    CUBLAS_CHECK(cublasGemmEx(cb->cublas, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, dptr(w), dt, k, xb, dt, k, &beta,
                              out, CUDA_R_32F, ldo, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

/* Decode batches of 5-16 rows (agents' bursts of parallel calls): the weights stream once, as in
 * the GEMV, but the products run on tensor cores (x rounded to the weight dtype, as cuBLAS takes
 * it, f32 sums). cuBLAS's small-n GEMMs read the weights at well under the bandwidth, and the
 * GEMV's CUDA-core FMAs run out at a few rows. A block owns one m16 tile of rows, and its SK_WARPS
 * warps cut k into equal runs of 64-wide chunks (summed at the end in warp order). The operands
 * come straight from global memory by choosing which k each MMA position stands for (the sum over
 * k does not care about the order): lane (g = lane / 4, c = lane % 4) reads elements c * 16 ..
 * c * 16 + 15 of each chunk, 32 contiguous bytes, for rows g and g + 8 (A) and for token g of
 * every n8 tile (B). Word 2s of them gives k-step s's (2c, 2c+1) positions and word 2s+1 its
 * (2c+8, 2c+9) positions, for A and B alike. */
#define SK_WARPS 8
template <typename T, int NT>
__global__ void __launch_bounds__(SK_WARPS * 32) k_gemm_skinny(float *out, const T *xb, const T *w, const T *bias,
                                                               int n, int m, int k, bool accumulate)
{
    pdl_trigger();
    __shared__ float red_s[SK_WARPS][NT][4][32];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
    const int row0 = blockIdx.x * 16;
    const int n_chunks = k / 64, per = (n_chunks + SK_WARPS - 1) / SK_WARPS;
    const int lo = warp * per, hi = min(n_chunks, lo + per);
    // 16-byte units: element c * 16 of chunk ch of row r is unit r * k / 8 + ch * 8 + c * 2
    const uint4 *wa0 = reinterpret_cast<const uint4 *>(w) + (size_t)min(row0 + g, m - 1) * (k / 8) + c * 2;
    const uint4 *wa1 = reinterpret_cast<const uint4 *>(w) + (size_t)min(row0 + g + 8, m - 1) * (k / 8) + c * 2;
    const uint4 *xp[NT];
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
        xp[nt] = reinterpret_cast<const uint4 *>(xb) + (size_t)min(nt * 8 + g, n - 1) * (k / 8) + c * 2;
    float acc[NT][4];
#pragma unroll
    for (int nt = 0; nt < NT; nt++) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;
    bool waited = false;
    for (int ch = lo; ch < hi; ch += 2) {   // two chunks' loads in flight
        uint4 a[2][2][2], b[2][NT][2];
#pragma unroll
        for (int u = 0; u < 2; u++) {
            const int cc = min(ch + u, hi - 1) * 8;
#pragma unroll
            for (int h = 0; h < 2; h++) {
                a[u][0][h] = ld_weight16(wa0 + cc + h);
                a[u][1][h] = ld_weight16(wa1 + cc + h);
            }
        }
        if (!waited) { pdl_wait(); waited = true; }   // x comes from the kernel before
#pragma unroll
        for (int u = 0; u < 2; u++) {
            const int cc = min(ch + u, hi - 1) * 8;
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int h = 0; h < 2; h++) b[u][nt][h] = xp[nt][cc + h];
        }
#pragma unroll
        for (int u = 0; u < 2; u++) {
            if (ch + u >= hi) break;
#pragma unroll
            for (int s = 0; s < 4; s++) {
                // words 2s and 2s+1 of the lane's 32 bytes: word i is component i % 4 of half i / 4
                const int h = s / 2, i0 = (2 * s) % 4;
                const uint32_t *r0 = reinterpret_cast<const uint32_t *>(&a[u][0][h]);
                const uint32_t *r1 = reinterpret_cast<const uint32_t *>(&a[u][1][h]);
                const uint32_t af[4] = { r0[i0], r1[i0], r0[i0 + 1], r1[i0 + 1] };
#pragma unroll
                for (int nt = 0; nt < NT; nt++) {
                    const uint32_t *bx = reinterpret_cast<const uint32_t *>(&b[u][nt][h]);
                    mma16816<T>(acc[nt], af, bx[i0], bx[i0 + 1]);
                }
            }
        }
    }
    if (!waited) pdl_wait();
#pragma unroll
    for (int nt = 0; nt < NT; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) red_s[warp][nt][e][lane] = acc[nt][e];
    __syncthreads();
    // thread -> (n-tile, element, lane): acc element e of lane (g, c) is row g + 8 * (e / 2), token
    // nt * 8 + 2c + e % 2
    for (int idx = threadIdx.x; idx < NT * 4 * 32; idx += SK_WARPS * 32) {
        const int nt = idx / 128, e = (idx / 32) % 4, l = idx % 32;
        float v = 0.0f;
#pragma unroll
        for (int wp = 0; wp < SK_WARPS; wp++) v += red_s[wp][nt][e][l];
        const int row = row0 + (l >> 2) + 8 * (e >> 1), tok = nt * 8 + 2 * (l & 3) + (e & 1);
        if (row >= m || tok >= n) continue;
        const float sum = v + (bias ? to_f<T>(bias[row]) : 0.0f);
        float *o = out + (size_t)tok * m + row;
        *o = accumulate ? *o + sum : sum;
    }
}

static void gemm_skinny(struct cuda_backend *cb, float *out, const float *x, const struct tensor *w,
                        const struct tensor *bias, int n, int m, int k, bool accumulate)
{
    size_t nel = (size_t)n * k;
    int grid = (int)((nel + 255) / 256 > 65535 ? 65535 : (nel + 255) / 256);
    void *xb = cuda_workspace(cb, sizeof(uint16_t) * nel);
    const int NT = (n + 7) / 8;
#define SK_LAUNCH(TT) { \
        k_to_dtype<TT><<<grid, 256, 0, cb->stream>>>((TT *)xb, x, nel); \
        const TT *b = bias ? (const TT *)dptr(bias) : (const TT *)NULL; \
        dim3 g((m + 15) / 16), blk(SK_WARPS * 32); \
        if (NT == 1) launch_pdl(cb, k_gemm_skinny<TT, 1>, g, blk, out, (const TT *)xb, (const TT *)dptr(w), b, n, m, k, accumulate); \
        else if (NT == 2) launch_pdl(cb, k_gemm_skinny<TT, 2>, g, blk, out, (const TT *)xb, (const TT *)dptr(w), b, n, m, k, accumulate); \
        else if (NT == 3) launch_pdl(cb, k_gemm_skinny<TT, 3>, g, blk, out, (const TT *)xb, (const TT *)dptr(w), b, n, m, k, accumulate); \
        else launch_pdl(cb, k_gemm_skinny<TT, 4>, g, blk, out, (const TT *)xb, (const TT *)dptr(w), b, n, m, k, accumulate); }
    if (w->dtype == DTYPE_BF16) SK_LAUNCH(__nv_bfloat16)
    else SK_LAUNCH(__half)
#undef SK_LAUNCH
    LAUNCH_CHECK();
}

static void linear(struct cuda_backend *cb, float *out, const float *x, int n, const struct tensor *w,
                   const struct tensor *bias, bool accumulate);

/* Quantized weights for prefill (qdeq_cublas: chunks of rows dequantized into a scratch, bf16 or
 * f32 when precise, each chunk's output columns by cuBLAS) and for operands k_qgemv does not take
 * (qdeq_full: the whole matrix as f32, then whatever linear picks for f32 weights). The first
 * landing of quantized prefill; a GEMM that dequantizes tiles into its MMAs would skip the scratch. */
static void qdeq_linear(struct cuda_backend *cb, float *out, const float *x, int n, const struct tensor *w,
                        const struct tensor *bias, bool accumulate, enum matmul_kernel kern)
{
    const int m = (int)w->ne[1], k = (int)w->ne[0];
    const enum dtype dt = kern == MATMUL_QDEQ_FULL || cb->precise ? DTYPE_F32 : DTYPE_BF16;
    // chunks of at most QDEQ_CHUNK_ELEMS weights, of equal size (multiples of 64 rows: aligned cuBLAS outputs)
    const int64_t max_rows = kern == MATMUL_QDEQ_FULL ? m : (QDEQ_CHUNK_ELEMS / k > 0 ? QDEQ_CHUNK_ELEMS / k : 1);
    const int64_t n_chunks = (m + max_rows - 1) / max_rows;
    int64_t rows = ((m + n_chunks - 1) / n_chunks + 63) & ~(int64_t)63;
    if (rows > max_rows) rows = max_rows;
    if (rows > m) rows = m;
    struct buffer scratch = { BUF_DEVICE, NULL, 0, NULL };
    scratch.bytes = (size_t)rows * k * dtype_size(dt);
    scratch.data = cuda_grow(cb, &cb->d_qdeq, &cb->qdeq_bytes, scratch.bytes);
    for (int64_t r0 = 0; r0 < m; r0 += rows) {
        const int mc = (int)(m - r0 < rows ? m - r0 : rows);
        cuda_qdequant(cb, scratch.data, dt, w, r0, mc);
        struct tensor wd = tensor_2d(dt, k, mc, &scratch, 0);
        wd.name = w->name;
        if (kern == MATMUL_QDEQ_FULL)   // the f32 matrix through the usual choice (GEMV rows stay batch-invariant);
            linear(cb, out, x, n, &wd, NULL, accumulate);   // the bias below: linear takes it in the weights' dtype
        else
            gemm_cublas(cb, out + r0, x, &wd, n, mc, k, accumulate, m, cb->precise);
    }
    if (bias) {
        size_t nel = (size_t)n * m;
        int grid = (int)((nel + 255) / 256 > 65535 ? 65535 : (nel + 255) / 256);
        DISPATCH_FLOAT(bias->dtype, T, k_add_bias<T><<<grid, 256, 0, cb->stream>>>(out, (const T *)dptr(bias), m, nel));
        LAUNCH_CHECK();
    }
}

static void linear(struct cuda_backend *cb, float *out, const float *x, int n, const struct tensor *w,
                   const struct tensor *bias, bool accumulate)
{
    const int m = (int)w->ne[1], k = (int)w->ne[0];
    const struct matmul_call c = { MATMUL_OP_PLAIN, n, k, x, true, 1, &w, NULL };
    const enum matmul_kernel kern = choose_matmul_kernel(cb, &c);
    const double t0 = cuda_prof_begin(cb);
    switch (kern) {
    case MATMUL_GEMV:
    case MATMUL_GEMV_WIDE:
    case MATMUL_GEMV_SCALAR: {
        int r0 = 0;
        // whole slices of GEMV_WIDE_N tokens through the wide kernel (the same sums), the rest as before
        if (kern == MATMUL_GEMV_WIDE)
            for (; r0 + GEMV_WIDE_N <= n; r0 += GEMV_WIDE_N) {
                const int rows_per_block = GEMV_WIDE_WARPS * GEMV_WIDE_R;
                dim3 grid((m + rows_per_block - 1) / rows_per_block), block(GEMV_WIDE_WARPS * 32);
                DISPATCH_FLOAT(w->dtype, T, launch_pdl(cb, k_gemv_wide<T>, grid, block, out + (size_t)r0 * m,
                                                       x + (size_t)r0 * k, (const T *)dptr(w),
                                                       bias ? (const T *)dptr(bias) : (const T *)NULL, m, k, accumulate));
            }
        for (; r0 < n; r0 += GEMV_MAX_N) {
            int nr = n - r0 < GEMV_MAX_N ? n - r0 : GEMV_MAX_N;
            DISPATCH_FLOAT(w->dtype, T, gemv<T>(cb, out + (size_t)r0 * m, x + (size_t)r0 * k, (const T *)dptr(w),
                                                bias ? (const T *)dptr(bias) : (const T *)NULL, nr, m, k, accumulate,
                                                kern == MATMUL_GEMV_SCALAR ? MATMUL_GEMV_SCALAR : MATMUL_GEMV));
        }
        LAUNCH_CHECK();
        break;
    }
    case MATMUL_SKINNY:
        gemm_skinny(cb, out, x, w, bias, n, m, k, accumulate);
        break;
    case MATMUL_QGEMV:
        cuda_qgemv(cb, out, x, n, w, bias, accumulate);
        break;
    case MATMUL_QDEQ_CUBLAS:
    case MATMUL_QDEQ_FULL:
        qdeq_linear(cb, out, x, n, w, bias, accumulate, kern);
        break;
    default:
        CHECK(kern == MATMUL_CUBLAS || kern == MATMUL_CUBLAS_HI_LO, "cuda matmul: %s for a plain matmul",
              matmul_kernel_name[kern]);
        gemm_cublas(cb, out, x, w, n, m, k, accumulate, m, cb->precise || kern == MATMUL_CUBLAS_HI_LO);
        if (bias) {
            size_t nel = (size_t)n * m;
            int grid = (int)((nel + 255) / 256 > 65535 ? 65535 : (nel + 255) / 256);
            DISPATCH_FLOAT(bias->dtype, T, k_add_bias<T><<<grid, 256, 0, cb->stream>>>(out, (const T *)dptr(bias), m, nel));
            LAUNCH_CHECK();
        }
    }
    cuda_prof_end(cb, matmul_kernel_name[kern], t0);
}

void cuda_linear(struct cuda_backend *cb, float *d_out, const float *d_x, int n, const struct tensor *w)
{
    linear(cb, d_out, d_x, n, w, NULL, false);
}

void cuda_matmul(struct backend *be, struct tensor *out, const struct tensor *x, const struct tensor *w,
                 const struct tensor *bias)
{
    struct cuda_backend *cb = cuda_of(be);
    CHECK(x->ne[0] == w->ne[0] && out->ne[0] == w->ne[1], "cuda matmul: shapes [%lld] x [%lld, %lld] -> [%lld]",
          (long long)x->ne[0], (long long)w->ne[1], (long long)w->ne[0], (long long)out->ne[0]);
    linear(cb, (float *)dptr(out), (const float *)dptr(x), (int)tensor_rows(x), w, bias, false);
}

void cuda_matmul_add(struct backend *be, struct tensor *out, const struct tensor *x, const struct tensor *w)
{
    struct cuda_backend *cb = cuda_of(be);
    CHECK(x->ne[0] == w->ne[0] && out->ne[0] == w->ne[1], "cuda matmul_add: shapes [%lld] x [%lld, %lld] -> [%lld]",
          (long long)x->ne[0], (long long)w->ne[1], (long long)w->ne[0], (long long)out->ne[0]);
    linear(cb, (float *)dptr(out), (const float *)dptr(x), (int)tensor_rows(x), w, NULL, true);
}

__global__ void k_gather_rows(float *dst, const float *src, const int32_t *idx, int k)
{
    pdl_trigger();   // the logits GEMV follows
    pdl_wait();
    int r = blockIdx.x;
    const float *s = src + (size_t)idx[r] * k;
    for (int i = threadIdx.x; i < k; i += blockDim.x) dst[(size_t)r * k + i] = s[i];
}

void cuda_matmul_rows(struct backend *be, struct tensor *out, const struct tensor *x, const struct tensor *w,
                      const struct batch_meta *m)
{
    struct cuda_backend *cb = cuda_of(be);
    int k = (int)x->ne[0], n = m->n_out;
    // The gathered rows sit at the end of the workspace's first half so gemm_cublas's bf16 copy
    // (which also uses the workspace) cannot overlap them.
    size_t gather_bytes = sizeof(float) * (size_t)n * k;
    size_t conv_bytes = 2 * sizeof(uint16_t) * (size_t)n * k;   // gemm_cublas's copies of x (hi + lo at most)
    char *ws = (char *)cuda_workspace(cb, gather_bytes + conv_bytes + 256);
    float *rows = (float *)(ws + ((conv_bytes + 255) & ~(size_t)255));
    launch_pdl(cb, k_gather_rows, dim3(n), dim3(256), rows, (const float *)dptr(x), cb->batch.d_out_tok, k);
    LAUNCH_CHECK();
    linear(cb, (float *)dptr(out), rows, n, w, NULL, false);
}

#define FUSE_MAX_SEGS 4      // matrices one fused cuBLAS call takes
#define FUSE_MAX_N    256    // most rows it takes: its [n, sum m] output is staged in the workspace
#define FUSE_NARROW_M 2048   // fused only when a matrix has fewer outputs (k, v): wider ones fill the
                             // GPU alone, and the split's extra pass costs more than fusing saves
                             // (gate + up fused: 64 streams of an 8B model 0.89x, 128 streams 0.81x)

/* The columns of a fused GEMM's [n, m_total] output into each matrix's own [n, m] output, with its
 * bias: a block row per row of x, four columns a thread (every m a multiple of 4). */
template <typename T>
struct fused_split {
    float   *out[FUSE_MAX_SEGS];
    const T *bias[FUSE_MAX_SEGS];
    int      col0[FUSE_MAX_SEGS + 1];   // segment s owns columns [col0[s], col0[s + 1])
    int      n_segs;
};

template <typename T>
__global__ void k_fused_split(fused_split<T> s, const float *src)
{
    const int m_total = s.col0[s.n_segs], r = blockIdx.y, c = 4 * (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (c >= m_total) return;
    int seg = 0;
    while (c >= s.col0[seg + 1]) seg++;
    const int m = s.col0[seg + 1] - s.col0[seg], j = c - s.col0[seg];
    float4 v = *reinterpret_cast<const float4 *>(src + (size_t)r * m_total + c);
    if (s.bias[seg]) {
        const T *b = s.bias[seg] + j;
        v.x += to_f<T>(b[0]);
        v.y += to_f<T>(b[1]);
        v.z += to_f<T>(b[2]);
        v.w += to_f<T>(b[3]);
    }
    *reinterpret_cast<float4 *>(s.out[seg] + (size_t)r * m + j) = v;
}

/* matmul_n as ONE cuBLAS GEMM when every matrix would take cuBLAS on its own, they lie back to
 * back in memory (one 16-bit dtype and width; model_prepare's weights_reserve puts a layer's q, k
 * and v next to each other) and one has fewer than FUSE_NARROW_M outputs. Why: at 17-256 rows
 * cuBLAS streams a [4096, 4096] matrix at ~2.2 TB/s but a [1024, 4096] one at ~0.55 TB/s (too few
 * tiles to fill the GPU), so q, k and v of an 8B model take 48 us as three calls and 22 us as
 * one (H100, 64 rows: bench/cublas_algos.cu). The output goes through the workspace and
 * k_fused_split. False: not applicable, nothing done. */
static bool matmul_n_fused(struct cuda_backend *cb, int n_w, struct tensor *const *outs, const struct tensor *x,
                           const struct tensor *const *ws, const struct tensor *const *biases)
{
    const int n = (int)tensor_rows(x), k = (int)x->ne[0];
    if (n_w < 2 || n_w > FUSE_MAX_SEGS || n > FUSE_MAX_N || !tensor_is_contiguous(x)) return false;
    const enum dtype dt = ws[0]->dtype;
    if (dt != DTYPE_BF16 && dt != DTYPE_F16) return false;
    int m_total = 0, m_min = INT_MAX;
    for (int i = 0; i < n_w; i++) {
        const struct tensor *w = ws[i];
        const struct matmul_call one = { MATMUL_OP_PLAIN, n, k, (const float *)dptr(x), true, 1, &ws[i], NULL };
        const bool same = w->dtype == dt && w->ne[0] == k && w->buf == ws[0]->buf && (!biases || !biases[i] ||
                                                                                   biases[i]->dtype == dt);
        if (!same || w->ne[1] % 4 != 0 || !tensor_is_contiguous(w) || !tensor_is_contiguous(outs[i]) ||
            !aligned16(dptr(outs[i])) || choose_matmul_kernel(cb, &one) != MATMUL_CUBLAS)
            return false;
        if (i + 1 < n_w && (const char *)dptr(w) + tensor_bytes(w) != (const char *)dptr(ws[i + 1])) return false;
        m_total += (int)w->ne[1];
        m_min = (int)w->ne[1] < m_min ? (int)w->ne[1] : m_min;
    }
    if (m_min >= FUSE_NARROW_M) return false;
    const double t0 = cuda_prof_begin(cb);
    // the workspace: gemm_cublas's copies of x (hi + lo at most) first, the fused output after them
    const size_t conv_bytes = ((2 * sizeof(uint16_t) * (size_t)n * k) + 255) & ~(size_t)255;
    char *work = (char *)cuda_workspace(cb, conv_bytes + sizeof(float) * (size_t)n * m_total);
    float *fused = (float *)(work + conv_bytes);
    const struct tensor whole = tensor_2d(dt, k, m_total, ws[0]->buf, ws[0]->offset);   // the matrices as one
    gemm_cublas(cb, fused, (const float *)dptr(x), &whole, n, m_total, k, false, m_total, cb->precise);
    DISPATCH_FLOAT(dt, T, {
        fused_split<T> s = {};
        s.n_segs = n_w;
        for (int i = 0; i < n_w; i++) {
            s.out[i] = (float *)dptr(outs[i]);
            s.bias[i] = biases && biases[i] ? (const T *)dptr(biases[i]) : (const T *)NULL;
            s.col0[i + 1] = s.col0[i] + (int)ws[i]->ne[1];
        }
        k_fused_split<T><<<dim3((m_total / 4 + 255) / 256, n), 256, 0, cb->stream>>>(s, fused);
    });
    LAUNCH_CHECK();
    cuda_prof_end(cb, "matmul cublas_fused", t0);
    return true;
}

void cuda_matmul_n(struct backend *be, int n_w, struct tensor *const *outs, const struct tensor *x,
                   const struct tensor *const *ws, const struct tensor *const *biases)
{
    struct cuda_backend *cb = cuda_of(be);
    int n = (int)tensor_rows(x), k = (int)x->ne[0];
    const struct matmul_call c = { MATMUL_OP_MULTI, n, k, (const float *)dptr(x), tensor_is_contiguous(x), n_w, ws, NULL,
                                   biases };
    const enum matmul_kernel kern = choose_matmul_kernel(cb, &c);
    if (kern == MATMUL_COMPOSED) {
        if (matmul_n_fused(cb, n_w, outs, x, ws, biases)) return;
        for (int i = 0; i < n_w; i++) cuda_matmul(be, outs[i], x, ws[i], biases ? biases[i] : NULL);
        return;
    }
    const double t0 = cuda_prof_begin(cb);
    if (kern == MATMUL_QGEMV_MULTI) {
        float *o[QGEMV_MAX_SEGS];
        for (int i = 0; i < n_w; i++) o[i] = (float *)dptr(outs[i]);
        cuda_qgemv_multi(cb, n_w, o, (const float *)dptr(x), n, ws, biases, false, NULL, 0.0f, 0.0f);
        cuda_prof_end(cb, matmul_kernel_name[kern], t0);
        return;
    }
    DISPATCH_FLOAT(ws[0]->dtype, T, {
        gemv_segs<T> sg = {};
        for (int i = 0; i < n_w; i++) {
            CHECK(ws[i]->ne[0] == k, "cuda matmul_n: weight %d has %lld inputs, x has %d", i, (long long)ws[i]->ne[0], k);
            sg.w[i] = (const T *)dptr(ws[i]);
            sg.bias[i] = biases && biases[i] ? (const T *)dptr(biases[i]) : (const T *)NULL;
            sg.out[i] = (float *)dptr(outs[i]);
            sg.m[i] = (int)ws[i]->ne[1];
        }
        sg.n_segs = n_w;
        gemv_multi<T>(cb, sg, (const float *)dptr(x), n, k, kern);
    });
    LAUNCH_CHECK();
    cuda_prof_end(cb, matmul_kernel_name[kern], t0);
}

/* Decode: the RMSNorm runs inside the GEMV (no launch, no xn round trip); otherwise two ops. */
void cuda_norm_matmul_n(struct backend *be, int n_w, struct tensor *const *outs, struct tensor *xn, const struct tensor *x,
                        const struct tensor *norm_w, float eps, float w_offset, const struct tensor *const *ws,
                        const struct tensor *const *biases)
{
    struct cuda_backend *cb = cuda_of(be);
    int n = (int)tensor_rows(x), k = (int)x->ne[0];
    const struct matmul_call c = { MATMUL_OP_NORM, n, k, (const float *)dptr(x), tensor_is_contiguous(x), n_w, ws, norm_w,
                                   biases };
    const enum matmul_kernel kern = choose_matmul_kernel(cb, &c);
    if (kern == MATMUL_COMPOSED) {
        cuda_rmsnorm(be, xn, x, norm_w, eps, w_offset);
        cuda_matmul_n(be, n_w, outs, xn, ws, biases);
        return;
    }
    const double t0 = cuda_prof_begin(cb);
    if (kern == MATMUL_QGEMV_NORM) {
        float *o[QGEMV_MAX_SEGS];
        for (int i = 0; i < n_w; i++) o[i] = (float *)dptr(outs[i]);
        cuda_qgemv_multi(cb, n_w, o, (const float *)dptr(x), n, ws, biases, false, norm_w, eps, w_offset);
        cuda_prof_end(cb, matmul_kernel_name[kern], t0);
        return;
    }
    DISPATCH_FLOAT(norm_w->dtype, T, {
        gemv_segs<T> sg = {};
        for (int i = 0; i < n_w; i++) {
            sg.w[i] = (const T *)dptr(ws[i]);
            sg.bias[i] = biases && biases[i] ? (const T *)dptr(biases[i]) : (const T *)NULL;
            sg.out[i] = (float *)dptr(outs[i]);
            sg.m[i] = (int)ws[i]->ne[1];
        }
        sg.n_segs = n_w;
        sg.norm_w = (const T *)dptr(norm_w);
        sg.eps = eps;
        sg.w_offset = w_offset;
        gemv_multi<T>(cb, sg, (const float *)dptr(x), n, k, kern);
    });
    LAUNCH_CHECK();
    cuda_prof_end(cb, matmul_kernel_name[kern], t0);
}

void cuda_matmul_glu(struct backend *be, struct tensor *out, struct tensor *up, struct tensor *xn, const struct tensor *x,
                     const struct tensor *norm_w, float eps, float w_offset, const struct tensor *w_gate,
                     const struct tensor *w_up, enum act act)
{
    struct cuda_backend *cb = cuda_of(be);
    int n = (int)tensor_rows(x), k = (int)x->ne[0], m = (int)w_gate->ne[1];
    const struct tensor *ws[2] = { w_gate, w_up };
    const struct matmul_call c = { MATMUL_OP_GLU, n, k, (const float *)dptr(x), tensor_is_contiguous(x), 2, ws, norm_w };
    const enum matmul_kernel kern = choose_matmul_kernel(cb, &c);
    const bool fuse_norm = kern == MATMUL_GEMV_GLU_NORM || kern == MATMUL_QGEMV_GLU_NORM;
    const struct tensor *in = x;
    if (norm_w && !fuse_norm) {
        cuda_rmsnorm(be, xn, x, norm_w, eps, w_offset);
        in = xn;
    }
    if (kern == MATMUL_QGEMV_GLU || kern == MATMUL_QGEMV_GLU_NORM) {
        CHECK(cuda_qgemv_glu_fits(w_gate, w_up, (const float *)dptr(in)), "cuda matmul_glu: normed x unaligned");
        const double t0 = cuda_prof_begin(cb);
        cuda_qgemv_glu(cb, (float *)dptr(out), (const float *)dptr(in), n, w_gate, w_up, act, fuse_norm ? norm_w : NULL, eps,
                       w_offset);
        cuda_prof_end(cb, matmul_kernel_name[kern], t0);
        return;
    }
    if (kern == MATMUL_COMPOSED) {   // the separate ops
        struct tensor *outs[2] = { out, up };
        const struct tensor *bs[2] = { NULL, NULL };
        cuda_matmul_n(be, 2, outs, in, ws, bs);
        cuda_glu(be, out, out, up, act);
        return;
    }
    const double t0 = cuda_prof_begin(cb);
    dim3 grid((m + GEMV_WARPS - 1) / GEMV_WARPS), block(GEMV_WARPS * 32);
    size_t smem = fuse_norm ? sizeof(float) * (size_t)n * k : 0;
#define GLU_LAUNCH(NN, NORM) { launch_pdl_smem(cb, k_gemv_glu<T, NN, 4, NORM>, grid, block, smem, (float *)dptr(out), \
        (const T *)dptr(w_gate), (const T *)dptr(w_up), (const float *)dptr(in), m, k, (int)act, \
        fuse_norm ? (const T *)dptr(norm_w) : (const T *)NULL, eps, w_offset); }
#define GLU_CASE(NN) case NN: DISPATCH_FLOAT(w_gate->dtype, T, \
        if (fuse_norm) GLU_LAUNCH(NN, true) else GLU_LAUNCH(NN, false)); break;
    switch (n) {
    GLU_CASE(1) GLU_CASE(2) GLU_CASE(3) GLU_CASE(4) GLU_CASE(5) GLU_CASE(6) GLU_CASE(7)
    default: GLU_CASE(8)
    }
#undef GLU_CASE
#undef GLU_LAUNCH
    LAUNCH_CHECK();
    cuda_prof_end(cb, matmul_kernel_name[kern], t0);
}
