/* attention_tiled: causal paged attention for prefill chunks on tensor cores, FlashAttention-2
 * style.
 *
 * Query tiles come from batch_begin: runs of up to ATT_TILE (128) consecutive positions of one
 * sequence. Decode steps (one token per sequence) use the split-K kernels instead (attention.cu's
 * choose_attention_kernel decides).
 *
 * Main kernel (k_attn_fa2; bf16, f16 or f8e4m3 cache, head_dim 64, 128 or 256): a block takes 128 query
 * rows of one query head (head_dim 256: 64), as WARPS warps of MT m16 tiles each (4 x 2: each K/V
 * fragment loaded by ldmatrix feeds two MMAs). Q is converted to the cache's
 * 16-bit type once into shared memory (with one m-tile per warp its A fragments then stay in
 * registers for the whole key walk). K and V tiles of BC keys are gathered from the paged cache
 * (slot per key through the block table, a shift for power-of-two block sizes, so any block_size
 * works) with cp.async into double-buffered shared memory: the next tile loads while this one
 * computes. Per tile and warp: S = Q K^T with mma.sync m16n8k16 (K fragments by ldmatrix), S
 * stays in registers; softcap, causal/window mask and the online softmax in f32 registers (row
 * max across the 4 lanes of a quad by shuffles; scale and log2(e) folded into exp2's FFMA; the O
 * rescale skipped once the warp's row maxima settle); P is repacked from the S accumulator layout
 * straight into A fragments (no shared memory round trip), O += P V with V fragments by
 * ldmatrix.trans, O in f32 registers. Warps whose rows cannot see any key of a tile skip its math
 * (the causal diagonal, window edges); only tiles that cross a row's limits pay for the mask. Rows
 * are padded by 16 bytes in shared memory so ldmatrix's eight row addresses fall in distinct
 * banks. Blocks run in descending tile order (longest key ranges first) with the query heads of
 * one KV head adjacent, so a KV tile is reused from L2 by the heads of its group.
 *
 * f8e4m3 caches: the tensor cores' fp8 MMA would need Q and P in fp8 too, so instead the fp8 K/V
 * tiles are cp.async'd (half the bytes of bf16) into their own double-buffered staging area and,
 * once landed, widened to bf16 (exact: every e4m3 value is a bf16 value) into one K and one V
 * tile that ldmatrix reads as in the bf16 kernel; the math is then the bf16 kernel's. The widening
 * costs a pass over the tile in shared memory and one more barrier per tile.
 *
 * Fallback (k_attn_tiled; f32 cache or other head dims): WMMA with S and O in shared memory,
 * 64 rows per block.
 */
#include "backend/cuda/attention_split.cuh"
#include "backend/cuda/mma.cuh"

#include <mma.h>

using namespace nvcuda;

#define ATT_TILE 128   // query tokens per tile from batch_begin (backend_cuda.cu builds them)

/* ------------------------------------------------------------------------------------------- */
/* FlashAttention-2 kernel                                                                      */

__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

/* 16 bytes global -> shared, asynchronously; zero-filled when !ok (keys past the sequence). */
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool ok)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(ok ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const void *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], const void *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_u32(p)));
}

/* 2^x on the special-function unit (2^-inf = 0). */
__device__ __forceinline__ float fast_exp2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

/* The 16-bit type the MMAs take for a cache element type S: the cache's own, bf16 for fp8. */
template <typename S> struct fa2_math { typedef S T; };
template <> struct fa2_math<__nv_fp8_e4m3> { typedef __nv_bfloat16 T; };

/* Block shape: WARPS warps of MT m16 tiles (16 query rows) each, BC keys per K/V tile, cache
 * elements S. Shared memory: Q, then K[2], V[2] (16-bit caches: cp.async lands in them); fp8:
 * Q, one bf16 K and V, then the fp8 staging K[2], V[2]. */
template <typename S, int D, int WARPS, int MT, int BC>
struct fa2_cfg {
    static constexpr bool F8 = sizeof(S) == 1;
    static constexpr int ROWS = 16 * MT * WARPS;   // query rows per block
    static constexpr int NT = 32 * WARPS;          // threads
    static constexpr int LD = D + 8;               // 16-bit row stride in elements (16-byte pad)
    static constexpr int LDS = F8 ? D + 16 : LD;   // staging row stride in elements (16-byte pad)
    static constexpr bool Q_REGS = MT == 1 && D <= 128;   // Q fragments stay in registers
    static constexpr size_t STAGE = ((size_t)ROWS + (F8 ? 2 : 0) * BC) * LD * 2;   // staging offset (bytes)
    static constexpr size_t SMEM = STAGE + 4 * (size_t)BC * LDS * sizeof(S);
};

/* Sixteen e4m3 codes to sixteen bf16 (exact), in order. */
__device__ __forceinline__ void f8x16_to_bf16(uint4 in, uint4 out[2])
{
    const __nv_fp8x2_storage_t *p = reinterpret_cast<const __nv_fp8x2_storage_t *>(&in);
    uint32_t *o = reinterpret_cast<uint32_t *>(out);
#pragma unroll
    for (int i = 0; i < 8; i++) {
        float2 f = __half22float2(__half2(__nv_cvt_fp8x2_to_halfraw2(p[i], __NV_E4M3)));
        __nv_bfloat162 b = __floats2bfloat162_rn(f.x, f.y);
        o[i] = *reinterpret_cast<uint32_t *>(&b);
    }
}

template <typename S, int D, int WARPS, int MT, int BC>
__global__ void __launch_bounds__(32 * WARPS, 8 / WARPS) k_attn_fa2(
    float *out, const float *q, const S *kc, const S *vc, const int32_t *tiles, int n_tiles, const int32_t *tok_pos,
    const int32_t *seq_block0, const int32_t *block_ids, int block_size, int bs_shift, int n_heads, int n_kv,
    float scale, int window, float softcap)
{
    typedef fa2_cfg<S, D, WARPS, MT, BC> C;
    typedef typename fa2_math<S>::T T;
    constexpr int ROWS = C::ROWS, NT = C::NT, LD = C::LD, LDS = C::LDS, NSUB = ATT_TILE / ROWS, WR = 16 * MT;
    extern __shared__ __align__(128) unsigned char smem[];
    T *Qs = (T *)smem;
    S *Kst = (S *)(smem + C::STAGE), *Vst = Kst + 2 * BC * LDS;   // where cp.async lands, [2][BC][LDS]
    T *K16 = Qs + ROWS * LD, *V16 = K16 + BC * LD;                  // fp8: the widened tile

    // Heaviest tiles (latest in the batch, most keys) first; heads of one KV group adjacent.
    const int per_tile = n_heads * NSUB;
    const int tile = n_tiles - 1 - (int)(blockIdx.x / per_tile), rem = (int)(blockIdx.x % per_tile);
    const int h = rem % n_heads, sub = rem / n_heads;
    const int t0 = tiles[tile * 3] + sub * ROWS, s = tiles[tile * 3 + 2];
    const int n_rows = min(ROWS, tiles[tile * 3 + 1] - sub * ROWS);
    if (n_rows <= 0) return;   // whole block: the tile is shorter than this sub-tile
    const int kvh = h / (n_heads / n_kv);
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tq = lane & 3;
    const int p_first = tok_pos[t0], p_last = p_first + n_rows - 1;
    const int32_t *blocks = block_ids + seq_block0[s];
    const size_t krow = (size_t)n_kv * D;
    const S *kbase = kc + (size_t)kvh * D, *vbase = vc + (size_t)kvh * D;

    // Q rows -> 16-bit shared (rows past the tile zero); f32 in, four at a time.
    for (int i = tid; i < ROWS * D / 4; i += NT) {
        int r = i / (D / 4), c = (i % (D / 4)) * 4;
        float4 f = make_float4(0, 0, 0, 0);
        if (r < n_rows) f = *reinterpret_cast<const float4 *>(q + ((size_t)(t0 + r) * n_heads + h) * D + c);
        uint2 u = make_uint2(pack2<T>(f.x, f.y), pack2<T>(f.z, f.w));
        *reinterpret_cast<uint2 *>(Qs + r * LD + c) = u;
    }

    // The key range of the block: [k_lo, p_last], walked in tiles of BC from a multiple of BC.
    int k_lo = window > 0 ? max(0, p_first - window + 1) : 0;
    k_lo -= k_lo % BC;
    const int n_kt = (p_last - k_lo) / BC + 1;

    auto load_kv = [&](int kb, int buf) {
        S *ks = Kst + buf * BC * LDS, *vs = Vst + buf * BC * LDS;
        constexpr int EPC = 16 / sizeof(S), CH = D / EPC;   // elements per 16-byte chunk, chunks per row
#pragma unroll
        for (int i = tid; i < BC * CH; i += NT) {
            int r = i / CH, c = (i % CH) * EPC, pos = kb + r;
            bool ok = pos <= p_last;
            // block_size a power of two (the usual 16): shifts instead of a division
            int blk = bs_shift >= 0 ? pos >> bs_shift : pos / block_size;
            size_t slot = ok ? (size_t)blocks[blk] * block_size + (pos - blk * block_size) : 0;
            cp_async16(ks + r * LDS + c, kbase + slot * krow + c, ok);
            cp_async16(vs + r * LDS + c, vbase + slot * krow + c, ok);
        }
    };
    load_kv(k_lo, 0);
    cp_async_commit();

    // This thread's rows: g and g + 8 of each of the warp's MT m-tiles; rows past the tile act
    // as the last row (finite math, never stored).
    const int wr0 = warp * WR;
    const int w_min = wr0 < n_rows ? p_first + wr0 : p_last;
    const int w_max = wr0 + WR - 1 < n_rows ? p_first + wr0 + WR - 1 : p_last;
    const float LOG2E = 1.4426950408889634f;
    // Without softcap the max is taken on raw q.k and the scale folds into exp2's FFMA; with
    // softcap (or a non-positive scale) scores are transformed to log2 units first.
    const bool transform = softcap > 0 || !(scale > 0);
    const float mult = transform ? 1.0f : scale * LOG2E;

    uint32_t qf[C::Q_REGS ? D / 16 : 1][4];
    float o[MT][D / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int j = 0; j < D / 8; j++) o[mt][j][0] = o[mt][j][1] = o[mt][j][2] = o[mt][j][3] = 0.0f;
    float m[MT][2], l[MT][2];   // row max (score units), this lane's partial row sums
#pragma unroll
    for (int mt = 0; mt < MT; mt++) m[mt][0] = m[mt][1] = -INFINITY, l[mt][0] = l[mt][1] = 0.0f;

    // A fragment of Q for k-step kk of m-tile mt: ldmatrix x4 of rows 0-7/8-15 x cols lo/hi.
    const T *qa = Qs + (wr0 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + (lane >> 4) * 8;
    __syncthreads();
    if (C::Q_REGS) {
#pragma unroll
        for (int kk = 0; kk < (C::Q_REGS ? D / 16 : 0); kk++) ldsm_x4(qf[kk], qa + kk * 16);
    }

    for (int it = 0; it < n_kt; it++) {
        const int kb = k_lo + it * BC, buf = it & 1;
        if (it + 1 < n_kt) {
            load_kv(kb + BC, buf ^ 1);   // its buffer was last read in it - 1, before the closing barrier
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const T *ks, *vs;
        if constexpr (C::F8) {
            // widen the landed fp8 tile into the bf16 one (last read by the previous tile's MMAs,
            // before its closing barrier)
            const S *k8 = Kst + buf * BC * LDS, *v8 = Vst + buf * BC * LDS;
            for (int i = tid; i < BC * D / 16; i += NT) {
                const int r = i / (D / 16), c = (i % (D / 16)) * 16;
                uint4 w[2];
                f8x16_to_bf16(*reinterpret_cast<const uint4 *>(k8 + r * LDS + c), w);
                *reinterpret_cast<uint4 *>(K16 + r * LD + c) = w[0];
                *reinterpret_cast<uint4 *>(K16 + r * LD + c + 8) = w[1];
                f8x16_to_bf16(*reinterpret_cast<const uint4 *>(v8 + r * LDS + c), w);
                *reinterpret_cast<uint4 *>(V16 + r * LD + c) = w[0];
                *reinterpret_cast<uint4 *>(V16 + r * LD + c + 8) = w[1];
            }
            __syncthreads();
            ks = K16;
            vs = V16;
        } else {
            ks = Kst + buf * BC * LD;
            vs = Vst + buf * BC * LD;
        }
        // Warps whose rows see no key of this tile skip it (causal diagonal, before the window,
        // rows past a short tile).
        bool skip = wr0 >= n_rows || kb > w_max || (window > 0 && kb + BC - 1 <= w_min - window);
        if (!skip) {
            float sc[MT][BC / 8][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int j = 0; j < BC / 8; j++) sc[mt][j][0] = sc[mt][j][1] = sc[mt][j][2] = sc[mt][j][3] = 0.0f;
            // S = Q K^T; K fragments: matrices (keys 0-7, d lo), (0-7, hi), (8-15, lo), (8-15, hi).
            const T *kp = ks + ((lane & 7) + (lane >> 4) * 8) * LD + ((lane >> 3) & 1) * 8;
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                uint32_t a[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    if (C::Q_REGS) {
#pragma unroll
                        for (int x = 0; x < 4; x++) a[mt][x] = qf[C::Q_REGS ? kk : 0][x];
                    } else {
                        ldsm_x4(a[mt], qa + mt * 16 * LD + kk * 16);
                    }
                }
#pragma unroll
                for (int nj = 0; nj < BC / 16; nj++) {
                    uint32_t b[4];
                    ldsm_x4(b, kp + nj * 16 * LD + kk * 16);
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) mma16816_n16<T>(sc[mt][2 * nj], sc[mt][2 * nj + 1], a[mt], b);
                }
            }
            const bool need_mask = kb + BC - 1 > w_min || (window > 0 && kb <= w_max - window);
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                // (softcapped) scores, masked; row max over the quad
                float mx[2] = { -INFINITY, -INFINITY };
#pragma unroll
                for (int j = 0; j < BC / 8; j++) {
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        float v = sc[mt][j][e];
                        if (transform) v = softcap > 0 ? softcap * tanhf(v * scale / softcap) * LOG2E : v * scale * LOG2E;
                        if (need_mask) {
                            int r = wr0 + mt * 16 + g + (e >> 1) * 8, p = r < n_rows ? p_first + r : p_last;
                            int kpos = kb + j * 8 + tq * 2 + (e & 1);
                            bool ok = kpos <= p && (window <= 0 || kpos > p - window);
                            v = ok ? v : -INFINITY;
                        }
                        sc[mt][j][e] = v;
                        mx[e >> 1] = fmaxf(mx[e >> 1], v);
                    }
                }
                float al[2], mm[2];
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    mx[e] = fmaxf(mx[e], __shfl_xor_sync(0xffffffffu, mx[e], 1));
                    mx[e] = fmaxf(mx[e], __shfl_xor_sync(0xffffffffu, mx[e], 2));
                    float mn = fmaxf(m[mt][e], mx[e]);
                    // A row with nothing visible yet keeps max -inf: subtract 0 instead (no inf - inf).
                    float mu = mn == -INFINITY ? 0.0f : mn;
                    al[e] = fast_exp2((m[mt][e] - mu) * mult);
                    mm[e] = mu * mult;
                    m[mt][e] = mn;
                }
                float ps[2] = { 0.0f, 0.0f };
#pragma unroll
                for (int j = 0; j < BC / 8; j++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        sc[mt][j][e] = fast_exp2(fmaf(sc[mt][j][e], mult, -mm[e >> 1]));
                        ps[e >> 1] += sc[mt][j][e];
                    }
                l[mt][0] = l[mt][0] * al[0] + ps[0];
                l[mt][1] = l[mt][1] * al[1] + ps[1];
                // Once the row maxima settle, alpha is 1: skip the rescale when the whole warp agrees.
                if (__any_sync(0xffffffffu, al[0] != 1.0f || al[1] != 1.0f)) {
#pragma unroll
                    for (int j = 0; j < D / 8; j++) {
                        o[mt][j][0] *= al[0]; o[mt][j][1] *= al[0];
                        o[mt][j][2] *= al[1]; o[mt][j][3] *= al[1];
                    }
                }
            }
            // O += P V. The S accumulators of key columns 16kk..16kk+15 are exactly the A fragment
            // of k-step kk; V fragments by ldmatrix.trans: (keys 0-7, d lo), (8-15, lo), (0-7, hi), (8-15, hi).
            const T *vp = vs + ((lane & 7) + ((lane >> 3) & 1) * 8) * LD + (lane >> 4) * 8;
#pragma unroll
            for (int kk = 0; kk < BC / 16; kk++) {
                uint32_t a[MT][4];
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    a[mt][0] = pack2<T>(sc[mt][2 * kk][0], sc[mt][2 * kk][1]);
                    a[mt][1] = pack2<T>(sc[mt][2 * kk][2], sc[mt][2 * kk][3]);
                    a[mt][2] = pack2<T>(sc[mt][2 * kk + 1][0], sc[mt][2 * kk + 1][1]);
                    a[mt][3] = pack2<T>(sc[mt][2 * kk + 1][2], sc[mt][2 * kk + 1][3]);
                }
#pragma unroll
                for (int dj = 0; dj < D / 16; dj++) {
                    uint32_t b[4];
                    ldsm_x4_t(b, vp + kk * 16 * LD + dj * 16);
#pragma unroll
                    for (int mt = 0; mt < MT; mt++) mma16816_n16<T>(o[mt][2 * dj], o[mt][2 * dj + 1], a[mt], b);
                }
            }
        }
        __syncthreads();   // everyone is done with buf before the next iteration refills it
    }

    // Row sums across the quad, then O / l to f32 out (two adjacent columns per store).
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int e = 0; e < 2; e++) {
            float sum = l[mt][e];
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            sum += __shfl_xor_sync(0xffffffffu, sum, 2);
            const float inv = sum > 0 ? 1.0f / sum : 0.0f;
            const int r = wr0 + mt * 16 + g + e * 8;
            if (r >= n_rows) continue;
            float *orow = out + ((size_t)(t0 + r) * n_heads + h) * D + tq * 2;
#pragma unroll
            for (int j = 0; j < D / 8; j++)
                *reinterpret_cast<float2 *>(orow + j * 8) = make_float2(o[mt][j][2 * e] * inv, o[mt][j][2 * e + 1] * inv);
        }
}

template <typename T, int D, int WARPS, int MT, int BC>
static void launch_fa2(struct cuda_backend *cb, struct tensor *out, const struct tensor *q, const struct kv_layer *kv,
                       const struct attn_params *ap, const struct batch_meta *m)
{
    typedef fa2_cfg<T, D, WARPS, MT, BC> C;
    static_assert(ATT_TILE % C::ROWS == 0, "a tile must split into whole blocks");
    const struct cuda_batch *b = &cb->batch;
    auto kern = k_attn_fa2<T, D, WARPS, MT, BC>;
    CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)C::SMEM));
    int bs = m->block_size, shift = -1;
    if (bs > 0 && (bs & (bs - 1)) == 0)
        for (shift = 0; (1 << shift) < bs; shift++) {}
    unsigned n_blocks = (unsigned)b->n_tiles * (unsigned)ap->n_heads * (ATT_TILE / C::ROWS);
    kern<<<n_blocks, C::NT, C::SMEM, cb->stream>>>(
        (float *)dptr(out), (const float *)dptr(q), (const T *)dptr(&kv->k), (const T *)dptr(&kv->v), b->d_tiles,
        b->n_tiles, b->d_tok_pos, b->d_seq_block0, b->d_block_ids, bs, shift, ap->n_heads, ap->n_kv_heads,
        ap->scale, ap->window, ap->softcap);
    LAUNCH_CHECK();
}

/* Block shapes measured on H100 (bench/attn_bench, Qwen3-8B shape, causal 4K / 32K tokens,
 * TFLOP/s): 4 warps x 32 rows, 64-key tiles 225 / 265; the same with 32-key tiles 220 / 256; 8
 * warps x 16 rows 187 / 216; 4 warps x 16 rows 185 / 205. Two m-tiles per warp halve the K/V
 * fragment loads per MMA; the 128-row shape spills ~130 bytes at 255 registers and is still the
 * fastest. head_dim 256: 4 warps x 16 rows, 32-key tiles (the accumulators of 32 rows would not
 * fit in registers; 8 warps x 16 rows was slower). The losers are in the git history. */
template <typename T>
static void fa2_dispatch(struct cuda_backend *cb, struct tensor *out, const struct tensor *q, const struct kv_layer *kv,
                         const struct attn_params *ap, const struct batch_meta *m)
{
    switch (ap->head_dim) {
    case 64: launch_fa2<T, 64, 4, 2, 64>(cb, out, q, kv, ap, m); return;
    case 128: launch_fa2<T, 128, 4, 2, 64>(cb, out, q, kv, ap, m); return;
    case 256: launch_fa2<T, 256, 4, 1, 32>(cb, out, q, kv, ap, m); return;
    }
    CHECK(0, "cuda prefill attention: head_dim %d", ap->head_dim);
}

void cuda_attention_fa2(struct cuda_backend *cb, struct tensor *out, const struct tensor *q, const struct kv_layer *kv,
                        const struct attn_params *ap, const struct batch_meta *m)
{
    switch (kv->k.dtype) {
    case DTYPE_BF16: fa2_dispatch<__nv_bfloat16>(cb, out, q, kv, ap, m); return;
    case DTYPE_F16: fa2_dispatch<__half>(cb, out, q, kv, ap, m); return;
    case DTYPE_F8E4M3: fa2_dispatch<__nv_fp8_e4m3>(cb, out, q, kv, ap, m); return;
    default: CHECK(0, "cuda prefill attention: %s cache", dtype_name(kv->k.dtype));
    }
}

/* ------------------------------------------------------------------------------------------- */
/* Fallback: WMMA, S and O staged in shared memory (f32 caches, head dims other than 64/128/256;
 * f16/bf16/f8e4m3 caches are widened on load by load8) */

#define TQ 64          // query rows per block
#define TK 64          // keys per tile
#define TW 4           // warps

struct tiled_smem_layout {
    size_t q, k, v, s, p, o, ml, total;
};

static __host__ __device__ tiled_smem_layout tiled_layout(int D)
{
    tiled_smem_layout L;
    size_t off = 0;
    L.q = off; off += (size_t)TQ * D * 2;
    L.k = off; off += (size_t)TK * D * 2;
    L.v = off; off += (size_t)TK * D * 2;
    L.s = off; off += (size_t)TQ * TK * 4;
    L.p = off; off += (size_t)TQ * TK * 2;
    L.o = off; off += (size_t)TQ * D * 4;
    L.ml = off; off += (size_t)TQ * 3 * 4;
    L.total = off;
    return L;
}

template <typename T, int D>
__global__ void __launch_bounds__(TW * 32) k_attn_tiled(
    float *out, const float *q, const T *kc, const T *vc, const int32_t *tiles, const int32_t *tok_pos,
    const int32_t *seq_block0, const int32_t *block_ids, int block_size, int n_heads, int n_kv, float scale,
    int window, float softcap)
{
    extern __shared__ __align__(128) unsigned char smem[];
    const tiled_smem_layout L = tiled_layout(D);
    __nv_bfloat16 *Qs = (__nv_bfloat16 *)(smem + L.q), *Ks = (__nv_bfloat16 *)(smem + L.k);
    __nv_bfloat16 *Vs = (__nv_bfloat16 *)(smem + L.v), *Ps = (__nv_bfloat16 *)(smem + L.p);
    float *Ss = (float *)(smem + L.s), *Os = (float *)(smem + L.o);
    float *row_m = (float *)(smem + L.ml), *row_l = row_m + TQ, *row_a = row_l + TQ;
    __shared__ int64_t slot_s[TK];

    // blockIdx.z: which 64-row part of the (up to ATT_TILE-row) tile
    const int t0 = tiles[blockIdx.x * 3] + blockIdx.z * TQ, s = tiles[blockIdx.x * 3 + 2];
    const int n_rows = min(TQ, tiles[blockIdx.x * 3 + 1] - (int)blockIdx.z * TQ);
    if (n_rows <= 0) return;   // whole block
    const int h = blockIdx.y, kvh = h / (n_heads / n_kv);
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int p_first = tok_pos[t0], p_last = tok_pos[t0 + n_rows - 1];
    const int32_t *blocks = block_ids + seq_block0[s];
    const size_t row = (size_t)n_kv * D;

    for (int i = tid; i < TQ * D / 8; i += TW * 32) {
        int r = i / (D / 8), c = (i % (D / 8)) * 8;
        float f[8] = { 0, 0, 0, 0, 0, 0, 0, 0 };
        if (r < n_rows) load8<float>(q + ((size_t)(t0 + r) * n_heads + h) * D + c, f);
#pragma unroll
        for (int u = 0; u < 8; u++) {
            Qs[r * D + c + u] = __float2bfloat16(f[u]);
            Os[r * D + c + u] = 0.0f;
        }
    }
    for (int r = tid; r < TQ; r += TW * 32) { row_m[r] = -INFINITY; row_l[r] = 0.0f; }

    int k_lo = window > 0 ? max(0, p_first - window + 1) : 0;
    k_lo -= k_lo % TK;
    for (int kb = k_lo; kb <= p_last; kb += TK) {
        __syncthreads();
        if (tid < TK) {
            int pos = kb + tid;
            slot_s[tid] = pos <= p_last ? (int64_t)blocks[pos / block_size] * block_size + pos % block_size : -1;
        }
        __syncthreads();
        for (int i = tid; i < TK * D / 8; i += TW * 32) {
            int j = i / (D / 8), c = (i % (D / 8)) * 8;
            float fk[8] = { 0, 0, 0, 0, 0, 0, 0, 0 }, fv[8] = { 0, 0, 0, 0, 0, 0, 0, 0 };
            int64_t slot = slot_s[j];
            if (slot >= 0) {
                load8<T>(kc + slot * row + (size_t)kvh * D + c, fk);
                load8<T>(vc + slot * row + (size_t)kvh * D + c, fv);
            }
#pragma unroll
            for (int u = 0; u < 8; u++) {
                Ks[j * D + c + u] = __float2bfloat16(fk[u]);
                Vs[j * D + c + u] = __float2bfloat16(fv[u]);
            }
        }
        __syncthreads();
        // S[16 rows of this warp][TK] = Q K^T
        for (int c = 0; c < TK / 16; c++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
            for (int kk = 0; kk < D / 16; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> b;
                wmma::load_matrix_sync(a, Qs + (size_t)warp * 16 * D + kk * 16, D);
                wmma::load_matrix_sync(b, Ks + (size_t)c * 16 * D + kk * 16, D);
                wmma::mma_sync(acc, a, b, acc);
            }
            wmma::store_matrix_sync(Ss + (size_t)warp * 16 * TK + c * 16, acc, TK, wmma::mem_row_major);
        }
        __syncwarp();
        // online softmax: two lanes per row, 32 columns each
        {
            int r = warp * 16 + (lane >> 1), half = lane & 1;
            int qp = r < n_rows ? p_first + r : -1;
            float mx = -INFINITY;
            float *srow = Ss + (size_t)r * TK + half * 32;
            for (int j = 0; j < 32; j++) {
                int kp = kb + half * 32 + j;
                float v = srow[j] * scale;
                if (softcap > 0) v = softcap * tanhf(v / softcap);
                bool ok = qp >= 0 && kp <= qp && (window <= 0 || kp > qp - window);
                v = ok ? v : -INFINITY;
                srow[j] = v;
                mx = fmaxf(mx, v);
            }
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            float m_old = row_m[r], m_new = fmaxf(m_old, mx);
            float sum = 0;
            __nv_bfloat16 *prow = Ps + (size_t)r * TK + half * 32;
            for (int j = 0; j < 32; j++) {
                float p = m_new == -INFINITY ? 0.0f : __expf(srow[j] - m_new);
                prow[j] = __float2bfloat16(p);
                sum += p;
            }
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            float alpha = m_old == -INFINITY ? 0.0f : __expf(m_old - m_new);
            __syncwarp();
            if (half == 0) {
                row_l[r] = row_l[r] * alpha + sum;
                row_m[r] = m_new;
                row_a[r] = alpha;
            }
        }
        __syncwarp();
        for (int i = lane; i < 16 * D; i += 32) {
            int r = warp * 16 + i / D;
            Os[(size_t)warp * 16 * D + i] *= row_a[r];
        }
        __syncwarp();
        // O[16 rows][D] += P V
        for (int c = 0; c < D / 16; c++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            float *optr = Os + (size_t)warp * 16 * D + c * 16;
            wmma::load_matrix_sync(acc, optr, D, wmma::mem_row_major);
            for (int kk = 0; kk < TK / 16; kk++) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> b;
                wmma::load_matrix_sync(a, Ps + (size_t)warp * 16 * TK + kk * 16, TK);
                wmma::load_matrix_sync(b, Vs + (size_t)kk * 16 * D + c * 16, D);
                wmma::mma_sync(acc, a, b, acc);
            }
            wmma::store_matrix_sync(optr, acc, D, wmma::mem_row_major);
        }
    }
    __syncthreads();
    for (int i = tid; i < TQ * D; i += TW * 32) {
        int r = i / D, d = i % D;
        if (r >= n_rows) continue;
        float l = row_l[r];
        out[((size_t)(t0 + r) * n_heads + h) * D + d] = l > 0 ? Os[i] / l : 0.0f;
    }
}


template <typename T, int D>
static void launch(struct cuda_backend *cb, struct tensor *out, const struct tensor *q, const struct kv_layer *kv,
                   const struct attn_params *ap, const struct batch_meta *m)
{
    const struct cuda_batch *b = &cb->batch;
    size_t smem = tiled_layout(D).total;
    static_assert(D % 16 == 0, "head_dim must be a multiple of 16");
    static_assert(ATT_TILE % TQ == 0, "a tile must split into whole blocks");
    CUDA_CHECK(cudaFuncSetAttribute(k_attn_tiled<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid(b->n_tiles, ap->n_heads, ATT_TILE / TQ);
    k_attn_tiled<T, D><<<grid, TW * 32, smem, cb->stream>>>(
        (float *)dptr(out), (const float *)dptr(q), (const T *)dptr(&kv->k), (const T *)dptr(&kv->v), b->d_tiles,
        b->d_tok_pos, b->d_seq_block0, b->d_block_ids, m->block_size, ap->n_heads, ap->n_kv_heads, ap->scale,
        ap->window, ap->softcap);
    LAUNCH_CHECK();
}

size_t cuda_attention_wmma_smem(int head_dim)
{
    switch (head_dim) {
    case 16: case 32: case 64: case 80: case 96: case 128: case 256: return tiled_layout(head_dim).total;
    }
    return 0;
}

void cuda_attention_wmma(struct cuda_backend *cb, struct tensor *out, const struct tensor *q, const struct kv_layer *kv,
                         const struct attn_params *ap, const struct batch_meta *m)
{
#define TILED_CASE(DD) case DD: DISPATCH_KV(kv->k.dtype, T, launch<T, DD>(cb, out, q, kv, ap, m)); return;
    switch (ap->head_dim) {
    TILED_CASE(16)
    TILED_CASE(32)
    TILED_CASE(64)
    TILED_CASE(80)
    TILED_CASE(96)
    TILED_CASE(128)
    TILED_CASE(256)
    }
#undef TILED_CASE
    CHECK(0, "cuda prefill attention (wmma): head_dim %d", ap->head_dim);
}
