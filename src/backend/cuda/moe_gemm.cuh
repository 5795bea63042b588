/* moe_gemm: the grouped tensor-core GEMM of MoE prefill (moe.cu's moe_grouped16), device code only.
 *
 * out[row, n] = sum_k A[row, k] W_e[n, k] over the grouped rows of every expert e in one launch, A
 * and W in one 16-bit dtype T, f32 sums on tensor cores (mma.sync m16n8k16, fragments by
 * ldmatrix). A work item is up to MGM_BM grouped rows of one expert {expert, first row, rows},
 * listed on the device with the sort (n_work of them; blocks past them exit); block b takes item
 * b / n_tiles and output tile b % n_tiles, so the tiles of one item run side by side (its A rows
 * are read from L2 once per item, not once per wave) and an expert's items follow each other (its
 * weight tiles are L2 hits for the second).
 *
 * A block of 4 warps computes 128 rows x 128 weight rows, staging 32-wide k slices of both in a
 * 4-deep cp.async ring in shared memory (rows padded to 40 halves: ldmatrix's eight 16-byte row
 * reads fall in distinct banks). Warp (wm, wn) owns 64 rows and 64 weight rows (per k step: 8
 * ldmatrix for 32 MMAs); m16 slices of rows past the item's end skip their MMAs (the last item of
 * an expert is short), but every warp loads and meets at the barriers.
 *
 * GLU (gate and up, K = d, N = f): the 128 weight rows are 64 of the gate and the same 64 of up,
 * each warp holding matching gate and up columns, and the epilogue writes glu_act(gate) * up in T
 * (the down GEMM's input, [rows, f]); A rows are gathered by a_rows (the token of each grouped row)
 * from the 16-bit copy of x. Down (K = f, N = d): A is the GLU output in grouped order and the
 * epilogue writes f32 rows of N (moe.cu's combine weighs and adds them per token).
 *
 * Requirements (the launcher checks them): K and N multiples of 8, 16-byte aligned operands.
 */
#ifndef CAIRN_BACKEND_CUDA_MOE_GEMM_CUH
#define CAIRN_BACKEND_CUDA_MOE_GEMM_CUH

#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/mma.cuh"

#define MGM_BM      128   // grouped rows per work item (and per block)
#define MGM_BN      128   // weight rows per block (GLU: 64 gate + 64 up)
#define MGM_BK      32    // k per stage
#define MGM_LDS     (MGM_BK + 8)   // padded row, in halves
#define MGM_STAGES  4
#define MGM_THREADS 128
#define MGM_STAGE_HALVES ((MGM_BM + MGM_BN) * MGM_LDS)
#define MGM_SMEM_BYTES   (MGM_STAGES * MGM_STAGE_HALVES * 2)   // 80 KB: two blocks per SM

__device__ __forceinline__ uint32_t mgm_smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

/* 16 bytes global -> shared, asynchronously; zero-filled (nothing read) when !ok. */
__device__ __forceinline__ void mgm_cp_async16(void *dst, const void *src, bool ok)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(mgm_smem_u32(dst)), "l"(src), "r"(ok ? 16 : 0));
}
__device__ __forceinline__ void mgm_cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void mgm_cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ void mgm_ldsm_x4(uint32_t r[4], const void *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(mgm_smem_u32(p)));
}

/* The shared-memory row (of MGM_BN) of a warp's weight group j (of 4 groups of 16 rows): GLU puts
 * warp wn's gate columns [32 wn, 32 wn + 32) in groups 0-1 and the same up columns in groups 2-3. */
template <bool GLU>
__device__ __forceinline__ int mgm_b_row(int wn, int j)
{
    if (GLU) return j < 2 ? wn * 32 + j * 16 : MGM_BN / 2 + wn * 32 + (j - 2) * 16;
    return wn * 64 + j * 16;
}

template <typename T, bool GLU>
__global__ void __launch_bounds__(MGM_THREADS, 2)
k_moe_grouped_mma(void *out, const T *a, const int32_t *a_rows, const void *const *w_tab, const void *const *w2_tab,
                  const int32_t *work, const int32_t *n_work, int n_tiles, int N, int K, int act)
{
    extern __shared__ __align__(16) unsigned char mgm_smem[];
    T *sm = reinterpret_cast<T *>(mgm_smem);   // [MGM_STAGES][A: MGM_BM rows, then W: MGM_BN rows][MGM_LDS]
    const int item = blockIdx.x / n_tiles, tile = blockIdx.x % n_tiles;
    if (item >= *n_work) return;   // the grid is sized for the most items there can be
    const int e = work[3 * item], row0 = work[3 * item + 1], rows = work[3 * item + 2];
    const int n0 = tile * (GLU ? MGM_BN / 2 : MGM_BN);   // first output column
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = (warp >> 1) * 64, wn = warp & 1;

    // Each thread copies four 16-byte pieces of A and four of W per stage: rows tid / 4 + 32 i,
    // piece tid % 4 of the 32-wide k slice. Their global rows are fixed for the block.
    constexpr int PIECES = MGM_BM / (MGM_THREADS / 4);
    static_assert(MGM_BM == MGM_BN && PIECES * MGM_THREADS / 4 == MGM_BM, "one loop stages A and W");
    const int lr = tid >> 2, lc = (tid & 3) * 8;
    const T *a_src[PIECES], *w_src[PIECES];
    bool a_ok[PIECES], w_ok[PIECES];
#pragma unroll
    for (int i = 0; i < PIECES; i++) {
        const int r = lr + i * (MGM_THREADS / 4);
        a_ok[i] = r < rows;
        const size_t ar = a_ok[i] ? (size_t)(a_rows ? a_rows[row0 + r] : row0 + r) : 0;
        a_src[i] = a + ar * K + lc;
        int n, p = 0;
        if (GLU) { p = r >= MGM_BN / 2; n = n0 + (r & (MGM_BN / 2 - 1)); }
        else n = n0 + r;
        w_ok[i] = n < N;
        w_src[i] = (const T *)(p ? w2_tab[e] : w_tab[e]) + (size_t)(w_ok[i] ? n : 0) * K + lc;
    }
    const int n_k = (K + MGM_BK - 1) / MGM_BK;
    auto load_stage = [&](int kt, int stage) {
        T *as = sm + stage * MGM_STAGE_HALVES, *ws = as + MGM_BM * MGM_LDS;
        const int k0 = kt * MGM_BK;
        const bool kin = k0 + lc < K;   // K % 8 == 0: a piece is wholly in or out
#pragma unroll
        for (int i = 0; i < PIECES; i++) {
            const int r = lr + i * (MGM_THREADS / 4);
            const bool ao = a_ok[i] && kin, wo = w_ok[i] && kin;
            mgm_cp_async16(as + r * MGM_LDS + lc, ao ? a_src[i] + k0 : a, ao);
            mgm_cp_async16(ws + r * MGM_LDS + lc, wo ? w_src[i] + k0 : a, wo);
        }
    };

    float acc[4][8][4];
#pragma unroll
    for (int mi = 0; mi < 4; mi++)
#pragma unroll
        for (int ni = 0; ni < 8; ni++) acc[mi][ni][0] = acc[mi][ni][1] = acc[mi][ni][2] = acc[mi][ni][3] = 0.0f;

#pragma unroll
    for (int s = 0; s < MGM_STAGES - 1; s++) {
        if (s < n_k) load_stage(s, s);
        mgm_cp_async_commit();   // empty groups keep the count: stage s is group s
    }
    // m16 slices of this warp's rows with any row of the item (warp-uniform)
    const int n_mi = rows <= wm ? 0 : rows - wm >= 64 ? 4 : (rows - wm + 15) / 16;
    // ldmatrix lanes: A rows (lane & 15) at k (lane >> 4) * 8; W rows (lane & 7) + (lane >> 4) * 8 at
    // k ((lane >> 3) & 1) * 8, the matrices (n 0-7, k lo), (0-7, hi), (8-15, lo), (8-15, hi).
    const int a_off = (wm + (lane & 15)) * MGM_LDS + (lane >> 4) * 8;
    const int b_off = ((lane & 7) + (lane >> 4) * 8) * MGM_LDS + ((lane >> 3) & 1) * 8;
    for (int kt = 0; kt < n_k; kt++) {
        mgm_cp_async_wait<MGM_STAGES - 2>();   // this thread's pieces of stage kt have landed
        __syncthreads();                       // everyone's have; stage kt - 1 is free again
        if (kt + MGM_STAGES - 1 < n_k) load_stage(kt + MGM_STAGES - 1, (kt + MGM_STAGES - 1) % MGM_STAGES);
        mgm_cp_async_commit();
        if (!n_mi) continue;
        const T *as = sm + (kt % MGM_STAGES) * MGM_STAGE_HALVES, *ws = as + MGM_BM * MGM_LDS;
#pragma unroll
        for (int kk = 0; kk < MGM_BK; kk += 16) {
            uint32_t bf[4][4];
#pragma unroll
            for (int j = 0; j < 4; j++) mgm_ldsm_x4(bf[j], ws + mgm_b_row<GLU>(wn, j) * MGM_LDS + b_off + kk);
#pragma unroll
            for (int mi = 0; mi < 4; mi++) {
                if (mi >= n_mi) break;
                uint32_t af[4];
                mgm_ldsm_x4(af, as + a_off + mi * 16 * MGM_LDS + kk);
#pragma unroll
                for (int j = 0; j < 4; j++) mma16816_n16<T>(acc[mi][2 * j], acc[mi][2 * j + 1], af, bf[j]);
            }
        }
    }
    mgm_cp_async_wait<0>();

    // Epilogue. acc[mi][ni]: rows wm + 16 mi + g (+ 8 for [2], [3]), weight rows of group ni / 2,
    // n8 half ni % 2, columns c2, c2 + 1. N % 8 == 0, so a column pair is wholly in or out.
    const int g = lane >> 2, c2 = (lane & 3) * 2;
#pragma unroll
    for (int mi = 0; mi < 4; mi++)
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const int r = wm + mi * 16 + g + half * 8;
            if (r >= rows) continue;
            const size_t o = (size_t)(row0 + r) * N;
            if (GLU) {
#pragma unroll
                for (int ni = 0; ni < 4; ni++) {   // gate n8 tile ni, up n8 tile ni + 4: the same columns
                    const int col = n0 + wn * 32 + ni * 8 + c2;
                    if (col >= N) continue;
                    const float h0 = glu_act(acc[mi][ni][2 * half], act) * acc[mi][ni + 4][2 * half];
                    const float h1 = glu_act(acc[mi][ni][2 * half + 1], act) * acc[mi][ni + 4][2 * half + 1];
                    *reinterpret_cast<uint32_t *>((T *)out + o + col) = pack2<T>(h0, h1);
                }
            } else {
#pragma unroll
                for (int ni = 0; ni < 8; ni++) {
                    const int col = n0 + wn * 64 + ni * 8 + c2;
                    if (col >= N) continue;
                    *reinterpret_cast<float2 *>((float *)out + o + col) =
                        make_float2(acc[mi][ni][2 * half], acc[mi][ni][2 * half + 1]);
                }
            }
        }
}

#endif
