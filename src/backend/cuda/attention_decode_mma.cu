/* attention_decode_mma: split-K decode attention over an fp8 (e4m3) KV cache on tensor cores.
 *
 * An fp8 cache halves the bytes decode attention streams, so the kernel must spend half the
 * instructions per key to stay on the bandwidth limit. The CUDA-core kernel (attention_decode.cu)
 * does not: it multiplies every key by every query head of the group in f16x2, and it reached about
 * the bf16 cache's speed. Here a warp takes 16 keys (a tile) at a time and does S = Q K^T and
 * O^T += V^T P^T as m16n8k16 MMAs (f16 inputs, f32 accumulators). For S the query heads of a KV
 * head are the M rows (up to 16) and the keys N. For O^T the head dims are M, the keys K and the
 * heads N (8 per n-tile). So S's accumulators are P^T's B fragments as they stand, and O^T needs
 * D/16 MMAs per tile.
 *
 * The operand fragments come straight from global memory into registers, with no shared memory.
 * This works by choosing which head dims each MMA position stands for (a sum over dims, or over
 * keys, does not care about the order). For lane (g = lane / 4, c = lane % 4):
 * - K: the lane holds key g of an n8 tile. Its k positions (2c, 2c+1, 2c+8, 2c+9) of k-step s are
 *   dims c * D/4 + 4s + (0..3). So a lane reads D/4 contiguous bytes of one key row, and each
 *   32-bit word is one k-step's pair of B registers. Q's A fragments use the same dims (loaded
 *   once).
 * - V: the A fragment of m-tile mt holds keys (2c, 2c+1 | 2c+8, 2c+9) of rows g and g + 8, which
 *   stand for dims g * D/8 + 2mt and + 1. So a lane reads D/8 contiguous bytes of four key rows,
 *   and one byte permute pairs two keys' bytes into the e4m3x2 that a conversion widens to an A
 *   register.
 * Each warp keeps its own online softmax. Rows and columns past the group's heads stay finite and
 * are not written.
 *
 * Splits are multiples of 16 keys, and a tile never crosses a cache block (block_size % 16 == 0), so
 * a tile takes one block-table lookup. Keys outside the split (or the window) are masked, and
 * their bytes are zeros: an unused slot may hold NaN bytes, and 0 * NaN poisons the sum.
 * A cp.async ring of 2-6 tiles per warp in shared memory was tried in place of the registers: 2-12%
 * slower at 512-32K context on H100 (32-64 KB of shared memory per block).
 *
 * Precision: q and P round to f16 (as the CUDA-core fp8 path did), e4m3 widens to f16 exactly,
 * and products accumulate in f32. The default backend uses this kernel from 1,024 keys
 * (att_mma_min_len); below that the CUDA-core kernel measured up to 2% faster. cuda-precise and cuda-deterministic keep the
 * f32 kernels.
 */
#include "backend/cuda/attention_split.cuh"
#include "backend/cuda/mma.cuh"

#include <cuda_fp8.h>
#include <math.h>

#define MMA_WARPS   4
#define MMA_THREADS (MMA_WARPS * 32)

/* W 32-bit words from the cache (W = 2 or a multiple of 4), not allocating in L1. */
template <int W> __device__ __forceinline__ void ld_words(const uint8_t *p, uint32_t *w)
{
    if constexpr (W == 2) {
        uint2 r;
        ld_cache(p, r);
        w[0] = r.x; w[1] = r.y;
    } else {
#pragma unroll
        for (int i = 0; i < W / 4; i++) {
            uint4 r;
            ld_cache(p + 16 * i, r);
            w[4 * i] = r.x; w[4 * i + 1] = r.y; w[4 * i + 2] = r.z; w[4 * i + 3] = r.w;
        }
    }
}

/* The two e4m3 pairs of a word (bytes 0-1, bytes 2-3) as two f16x2 registers (exact). */
__device__ __forceinline__ void e4m3x4_to_f16x2(uint32_t w, uint32_t &lo, uint32_t &hi)
{
    const __half2_raw a = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(w & 0xffffu), __NV_E4M3);
    const __half2_raw b = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(w >> 16), __NV_E4M3);
    lo = a.x | ((uint32_t)a.y << 16);
    hi = b.x | ((uint32_t)b.y << 16);
}

/* Cache slot of the first key of each of the KT 16-key tiles of iteration it (-1 past the end). */
template <int KT>
__device__ __forceinline__ void tile_slots(int *slot, int it, int tile0, int n_tiles, const int32_t *blocks,
                                           int block_size)
{
#pragma unroll
    for (int k = 0; k < KT; k++) {
        const int tl = it * KT + k, key = (tile0 + tl) * 16;
        slot[k] = tl < n_tiles ? blocks[key / block_size] * block_size + key % block_size : -1;
    }
}

/* One head's online-softmax step for a tile: mx is this lane's max of the head's scores, the quad
 * (lanes 4h..4h+3, which hold head h's other keys) takes the max; the running max m and this lane's
 * share of the sum l move to it; the O^T columns of heads 2c and 2c+1 take those heads' rescale
 * from their quads. */
template <int MT>
__device__ __forceinline__ void softmax_step(float &m, float &l, float mx, float (*o)[4], int c)
{
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float mn = fmaxf(m, mx), a = m == -INFINITY ? 0.0f : __expf(m - mn);
    m = mn;
    l *= a;
    const float a_lo = __shfl_sync(0xffffffffu, a, 8 * c), a_hi = __shfl_sync(0xffffffffu, a, 8 * c + 4);
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        o[mt][0] *= a_lo;
        o[mt][1] *= a_hi;
        o[mt][2] *= a_lo;
        o[mt][3] *= a_hi;
    }
}

/* D: head_dim (64, 128); HI: more than 8 query heads per KV head (S rows and O^T columns 8-15); KT: 16-key
 * tiles per warp iteration. */
template <int D, bool HI, int KT>
__global__ void __launch_bounds__(MMA_THREADS) k_attn_decode_mma(
    float *out, float *part_acc, float *part_ml, int32_t *done, const float *q, const uint8_t *kc, const uint8_t *vc,
    const int32_t *tok_pos, const int32_t *tok_seq, const int32_t *seq_block0, const int32_t *block_ids, int block_size,
    int n_heads, int n_kv, float scale, int window, float softcap, int n_split)
{
    pdl_trigger();   // the output projection's GEMV follows
    constexpr int GM = HI ? 16 : 8;   // query-head rows kept
    constexpr int KS = D / 16;        // k-steps of Q K^T
    constexpr int MT = D / 16;        // m-tiles of V^T P^T
    constexpr int KW = D / 16;        // words of a key's K row a lane reads (D/4 bytes)
    constexpr int VW = D / 32;        // words of a key's V row a lane reads (D/8 bytes)
    const int t = blockIdx.x, kvh = blockIdx.y, split = blockIdx.z;
    const int G = n_heads / n_kv;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, c = lane & 3;
    __shared__ __align__(16) float wacc_s[MMA_WARPS][GM][D];
    __shared__ float wm_s[MMA_WARPS][GM], wl_s[MMA_WARPS][GM];
    __shared__ float w_s[GM][ATT_SPLIT_MAX];

    const int p = tok_pos[t], s = tok_seq[t];
    const int lo_all = attn_first_key(p, window), n_keys = p - lo_all + 1;
    const int per_split = ((n_keys + n_split - 1) / n_split + 15) & ~15;
    const int lo = lo_all + split * per_split, hi = min(p + 1, lo + per_split);
    const int tile0 = lo >> 4;
    const int n_tiles = hi > lo ? ((hi - 1) >> 4) - tile0 + 1 : 0;
    const int n_iter = (n_tiles + KT - 1) / KT;
    const int32_t *blocks = block_ids + seq_block0[s];
    const size_t row = (size_t)n_kv * D;
    const uint8_t *kb = kc + (size_t)kvh * D + c * (D / 4), *vb = vc + (size_t)kvh * D + g * (D / 8);

    int slot[KT];
    if (warp < n_iter) tile_slots<KT>(slot, warp, tile0, n_tiles, blocks, block_size);
    pdl_wait();   // q and this step's cache rows come from the kernel before

    // Q's A fragments: rows g and g + 8, k positions (2c, 2c+1 | 2c+8, 2c+9) of step ks = dims
    // c * D/4 + 4ks + (0, 1 | 2, 3), scaled and rounded to f16
    uint32_t qa[KS][4];
    {
        const float *q0 = q + ((size_t)t * n_heads + kvh * G) * D + c * (D / 4);
#pragma unroll
        for (int ks = 0; ks < KS; ks++) {
            float4 r0 = make_float4(0, 0, 0, 0), r1 = r0;
            if (g < G) r0 = *reinterpret_cast<const float4 *>(q0 + (size_t)g * D + 4 * ks);
            if (HI && g + 8 < G) r1 = *reinterpret_cast<const float4 *>(q0 + (size_t)(g + 8) * D + 4 * ks);
            qa[ks][0] = pack2<__half>(r0.x * scale, r0.y * scale);
            qa[ks][1] = pack2<__half>(r1.x * scale, r1.y * scale);
            qa[ks][2] = pack2<__half>(r0.z * scale, r0.w * scale);
            qa[ks][3] = pack2<__half>(r1.z * scale, r1.w * scale);
        }
    }
    // O^T accumulators: o[mt] = dims (row g, row g, row g+8, row g+8) of m-tile mt x heads (2c,
    // 2c+1, 2c, 2c+1); oh: heads 8 + the same
    float o[MT][4], oh[HI ? MT : 1][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        o[mt][0] = o[mt][1] = o[mt][2] = o[mt][3] = 0.0f;
        oh[HI ? mt : 0][0] = oh[HI ? mt : 0][1] = oh[HI ? mt : 0][2] = oh[HI ? mt : 0][3] = 0.0f;
    }
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;   // heads g, g + 8 (this lane's share of l)

    for (int it = warp; it < n_iter; it += MMA_WARPS) {
        uint32_t kw[KT][2][KW], vw[KT][4][VW];
#pragma unroll
        for (int k = 0; k < KT; k++) {
            const int key0 = (tile0 + it * KT + k) * 16;
#pragma unroll
            for (int n = 0; n < 2; n++) {   // K: key 8n + g of the tile
                const int off = 8 * n + g, key = key0 + off;
                if (slot[k] >= 0 && key >= lo && key < hi) ld_words<KW>(kb + (size_t)(slot[k] + off) * row, kw[k][n]);
                else
#pragma unroll
                    for (int i = 0; i < KW; i++) kw[k][n][i] = 0;
            }
#pragma unroll
            for (int j = 0; j < 4; j++) {   // V: keys 2c, 2c+1, 2c+8, 2c+9 of the tile
                const int off = (j >> 1) * 8 + 2 * c + (j & 1), key = key0 + off;
                if (slot[k] >= 0 && key >= lo && key < hi) ld_words<VW>(vb + (size_t)(slot[k] + off) * row, vw[k][j]);
                else
#pragma unroll
                    for (int i = 0; i < VW; i++) vw[k][j][i] = 0;
            }
        }
        if (it + MMA_WARPS < n_iter) tile_slots<KT>(slot, it + MMA_WARPS, tile0, n_tiles, blocks, block_size);

        // S = Q K^T per n8 tile: sc[k][n] = rows (g, g, g+8, g+8) x keys 8n + (2c, 2c+1, 2c, 2c+1)
        float sc[KT][2][4];
#pragma unroll
        for (int k = 0; k < KT; k++)
#pragma unroll
            for (int n = 0; n < 2; n++) {
                sc[k][n][0] = sc[k][n][1] = sc[k][n][2] = sc[k][n][3] = 0.0f;
#pragma unroll
                for (int ks = 0; ks < KS; ks++) {
                    uint32_t b0, b1;
                    e4m3x4_to_f16x2(kw[k][n][ks], b0, b1);
                    mma16816<__half>(sc[k][n], qa[ks], b0, b1);
                }
            }
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int k = 0; k < KT; k++) {
            const int key0 = (tile0 + it * KT + k) * 16;
#pragma unroll
            for (int n = 0; n < 2; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int key = key0 + 8 * n + 2 * c + (e & 1);
                    float v = sc[k][n][e];
                    if (softcap > 0) v = softcap * tanhf(v / softcap);
                    v = key >= lo && key < hi ? v : -INFINITY;
                    sc[k][n][e] = v;
                    if (e < 2) mx0 = fmaxf(mx0, v);
                    else mx1 = fmaxf(mx1, v);
                }
        }
        softmax_step<MT>(m0, l0, mx0, o, c);
        if constexpr (HI) softmax_step<MT>(m1, l1, mx1, oh, c);
#pragma unroll
        for (int k = 0; k < KT; k++) {
            // P^T as B fragments: keys (2c, 2c+1 | 2c+8, 2c+9) x head g (pbh: head g + 8)
            uint32_t pb[2], pbh[2];
#pragma unroll
            for (int n = 0; n < 2; n++) {
                const float p0 = m0 == -INFINITY ? 0.0f : __expf(sc[k][n][0] - m0);
                const float p1 = m0 == -INFINITY ? 0.0f : __expf(sc[k][n][1] - m0);
                l0 += p0 + p1;
                pb[n] = pack2<__half>(p0, p1);
                if constexpr (HI) {
                    const float p2 = m1 == -INFINITY ? 0.0f : __expf(sc[k][n][2] - m1);
                    const float p3 = m1 == -INFINITY ? 0.0f : __expf(sc[k][n][3] - m1);
                    l1 += p2 + p3;
                    pbh[n] = pack2<__half>(p2, p3);
                }
            }
            // O^T += V^T P^T: bytes (4w, 4w+1) of keys (2c, 2c+1), paired by a permute, are a0 and
            // a1 of m-tile 2w, bytes (4w+2, 4w+3) those of m-tile 2w+1; keys (2c+8, 2c+9) give a2, a3
#pragma unroll
            for (int w = 0; w < VW; w++) {
                uint32_t va[4], vb2[4];   // A fragments of m-tiles 2w and 2w + 1
                e4m3x4_to_f16x2(__byte_perm(vw[k][0][w], vw[k][1][w], 0x5140), va[0], va[1]);
                e4m3x4_to_f16x2(__byte_perm(vw[k][0][w], vw[k][1][w], 0x7362), vb2[0], vb2[1]);
                e4m3x4_to_f16x2(__byte_perm(vw[k][2][w], vw[k][3][w], 0x5140), va[2], va[3]);
                e4m3x4_to_f16x2(__byte_perm(vw[k][2][w], vw[k][3][w], 0x7362), vb2[2], vb2[3]);
                mma16816<__half>(o[2 * w], va, pb[0], pb[1]);
                mma16816<__half>(o[2 * w + 1], vb2, pb[0], pb[1]);
                if constexpr (HI) {
                    mma16816<__half>(oh[2 * w], va, pbh[0], pbh[1]);
                    mma16816<__half>(oh[2 * w + 1], vb2, pbh[0], pbh[1]);
                }
            }
        }
    }
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    // o[mt] = dims g * D/8 + 2mt + (0, 0, 1, 1) x heads 2c + (0, 1, 0, 1)
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        const int d = g * (D / 8) + 2 * mt;
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int h = 2 * c + (e & 1), dd = d + (e >> 1);
            if (h < G) wacc_s[warp][h][dd] = o[mt][e];
            if (HI && h + 8 < G) wacc_s[warp][h + 8][dd] = oh[HI ? mt : 0][e];
        }
    }
    if (c == 0) {
        if (g < G) { wm_s[warp][g] = m0; wl_s[warp][g] = l0; }
        if (HI && g + 8 < G) { wm_s[warp][g + 8] = m1; wl_s[warp][g + 8] = l1; }
    }
    attn_warps_finish<D, MMA_WARPS, GM>(out, part_acc, part_ml, done, wacc_s, wm_s, wl_s, w_s, t, kvh, G, n_heads,
                                        n_kv, split, n_split, n_split);
}

/* Splits for a launch of blocks (token, KV head) pairs: as many as fill the GPU's resident
 * blocks in one wave (a second, partial wave measured up to 20% slower at 32K context), each at
 * least ATT_SPLIT_MIN_KEYS keys of the longest sequence. Any count is correct for any length: a step graph
 * replayed for a longer sequence keeps the count it was recorded with. */
static int mma_splits(const struct cuda_backend *cb, int blocks, int resident_per_sm, int max_len)
{
    int n = resident_per_sm * cb->n_sm / blocks;
    if (n > max_len / ATT_SPLIT_MIN_KEYS) n = max_len / ATT_SPLIT_MIN_KEYS;
    if (n > ATT_SPLITS) n = ATT_SPLITS;
    return n > 1 ? n : 1;
}

template <int D, bool HI, int KT>
static void mma_launch(struct cuda_backend *cb, float *out, const float *q, const struct kv_layer *kv,
                       const struct attn_params *ap, const struct batch_meta *m)
{
    const struct cuda_batch *b = &cb->batch;
    auto kern = k_attn_decode_mma<D, HI, KT>;
    static int resident;   // blocks per SM, from the kernel's registers and shared memory
    if (!resident) CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&resident, kern, MMA_THREADS, 0));
    const int n_split = mma_splits(cb, m->n_tok * ap->n_kv_heads, resident, b->max_seq_len > 0 ? b->max_seq_len : 1);
    float *part_acc = NULL, *part_ml = NULL;
    if (n_split > 1) cuda_attn_split_workspace(cb, m->n_tok, ap->n_heads, ap->n_kv_heads, D, n_split, &part_acc, &part_ml);
    launch_pdl(cb, kern, dim3(m->n_tok, ap->n_kv_heads, n_split), dim3(MMA_THREADS), out, part_acc, part_ml,
               cb->d_attn_done, q, (const uint8_t *)dptr(&kv->k), (const uint8_t *)dptr(&kv->v), b->d_tok_pos,
               b->d_tok_seq, b->d_seq_block0, b->d_block_ids, m->block_size, ap->n_heads, ap->n_kv_heads, ap->scale,
               ap->window, ap->softcap, n_split);
}

/* Two 16-key tiles per warp iteration (KT = 2: 1-2% faster than one at 32K on H100). */
void cuda_attention_decode_mma(struct cuda_backend *cb, struct tensor *out, const struct tensor *q,
                               const struct kv_layer *kv, const struct attn_params *ap, const struct batch_meta *m)
{
    const int D = ap->head_dim, G = ap->n_heads / ap->n_kv_heads;
    // head_dim 256 would spill (its Q fragments and accumulators alone take 128 registers)
    CHECK(kv->k.dtype == DTYPE_F8E4M3 && m->block_size % 16 == 0 && (D == 64 || D == 128) && G <= 16,
          "cuda fp8 decode attention: %s, block_size %d, head_dim %d, %d heads per KV head", dtype_name(kv->k.dtype),
          m->block_size, D, G);
    float *o = (float *)dptr(out);
    const float *qd = (const float *)dptr(q);
    if (D == 64 && G > 8) mma_launch<64, true, 2>(cb, o, qd, kv, ap, m);
    else if (D == 64) mma_launch<64, false, 2>(cb, o, qd, kv, ap, m);
    else if (D == 128 && G > 8) mma_launch<128, true, 2>(cb, o, qd, kv, ap, m);
    else mma_launch<128, false, 2>(cb, o, qd, kv, ap, m);
    LAUNCH_CHECK();
}
