/* attention_tiled: causal paged attention for prefill chunks on tensor cores (WMMA, bf16 in,
 * f32 accumulate), FlashAttention-2 style.
 *
 * A block takes a tile of up to 64 consecutive query tokens of one sequence and one query head
 * (four warps, 16 query rows each) and walks the keys the tile can see in tiles of 64: S = Q K^T
 * on tensor cores into shared memory, masking (causal, window) and the online softmax per row in
 * f32, then O += P V on tensor cores with O kept in shared memory. K and V come from the paged
 * cache through the block table, converted to bf16 on load. Query tiles are built on the host
 * in batch_begin (runs of consecutive positions of one sequence). Decode steps (one token per
 * sequence) use the split-K kernel in attention.cu instead.
 */
#include "backend/cuda/cuda_common.cuh"

#include <mma.h>

using namespace nvcuda;

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

    const int t0 = tiles[blockIdx.x * 3], n_rows = tiles[blockIdx.x * 3 + 1], s = tiles[blockIdx.x * 3 + 2];
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
    CUDA_CHECK(cudaFuncSetAttribute(k_attn_tiled<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    dim3 grid(b->n_tiles, ap->n_heads);
    k_attn_tiled<T, D><<<grid, TW * 32, smem, cb->stream>>>(
        (float *)dptr(out), (const float *)dptr(q), (const T *)dptr(&kv->k), (const T *)dptr(&kv->v), b->d_tiles,
        b->d_tok_pos, b->d_seq_block0, b->d_block_ids, m->block_size, ap->n_heads, ap->n_kv_heads, ap->scale,
        ap->window, ap->softcap);
    LAUNCH_CHECK();
}

bool cuda_attention_tiled(struct cuda_backend *cb, struct tensor *out, const struct tensor *q, const struct kv_layer *kv,
                          const struct attn_params *ap, const struct batch_meta *m)
{
    int D = ap->head_dim;
    if (D % 16 || tiled_layout(D).total > cb->smem_optin) return false;
#define TILED_CASE(DD) case DD: DISPATCH_FLOAT(kv->k.dtype, T, launch<T, DD>(cb, out, q, kv, ap, m)); return true;
    switch (D) {
    TILED_CASE(16)
    TILED_CASE(32)
    TILED_CASE(64)
    TILED_CASE(80)
    TILED_CASE(96)
    TILED_CASE(128)
    TILED_CASE(256)
    }
#undef TILED_CASE
    return false;
}
