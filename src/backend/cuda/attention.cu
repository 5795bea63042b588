/* attention: paged causal attention on the GPU (split-K flash decoding).
 *
 * Grid (token, kv head, split): a block takes one query token and the G = n_heads / n_kv_heads
 * query heads that share a KV head, and walks its split of the token's visible keys in chunks of
 * CHUNK: scores for the chunk (8 lanes per key, each lane a slice of head_dim), an online-softmax
 * update per head, then P·V with one thread per output dimension (V rows read coalesced). Each
 * split writes (max, sum, acc) partials; a second kernel combines the splits. Splitting the key
 * range keeps long-context decode spread over all SMs (a batch-1 step has only n_kv_heads blocks
 * per split). K and V are read from the paged cache through the sequence's block table.
 */
#include "backend/cuda/cuda_common.cuh"

#include <math.h>

#define ATT_THREADS 128
#define ATT_CHUNK   64          // keys per inner step (two threads per key)
#define ATT_G_MAX   16
#define ATT_D_MAX   256
#define ATT_SPLIT_MAX 32

/* One block = one query token x one KV head (its G query heads) x one split of the keys.
 * Scores: two adjacent threads per key, each a half of head_dim with 16-byte loads, q read from
 * shared memory (a broadcast). P.V: one thread per output dim (D <= 128) or two dims (D = 256),
 * V rows read coalesced, sixteen keys in flight. */
template <typename T, int D>
__global__ void __launch_bounds__(ATT_THREADS) k_attn_split(
    float *part_acc, float *part_ml, const float *q, const T *kc, const T *vc, const int32_t *tok_pos,
    const int32_t *tok_seq, const int32_t *seq_block0, const int32_t *block_ids, int block_size, int n_heads,
    int n_kv, float scale, int window, float softcap, int n_split)
{
    constexpr int DPT = D > ATT_THREADS ? D / ATT_THREADS : 1;   // output dims per thread
    constexpr int HALF = D / 2;                                  // dims per thread in the score phase
    const int t = blockIdx.x, kvh = blockIdx.y, split = blockIdx.z;
    const int G = n_heads / n_kv;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    __shared__ __align__(16) float q_s[ATT_G_MAX][D];
    __shared__ float s_s[ATT_G_MAX][ATT_CHUNK];
    __shared__ int64_t slot_s[ATT_CHUNK];
    __shared__ float m_s[ATT_G_MAX], l_s[ATT_G_MAX], alpha_s[ATT_G_MAX];

    const int p = tok_pos[t], s = tok_seq[t];
    const int lo_all = window > 0 ? max(0, p - window + 1) : 0;
    const int n_keys = p - lo_all + 1;
    const int per_split = (n_keys + n_split - 1) / n_split;
    const int lo = lo_all + split * per_split;
    const int hi = min(p + 1, lo + per_split);   // exclusive
    const int32_t *blocks = block_ids + seq_block0[s];
    const size_t row = (size_t)n_kv * D;
    const T *kbase = kc + (size_t)kvh * D, *vbase = vc + (size_t)kvh * D;

    for (int i = tid; i < G * D; i += ATT_THREADS) q_s[i / D][i % D] = q[((size_t)t * n_heads + kvh * G) * D + i];
    if (tid < G) { m_s[tid] = -INFINITY; l_s[tid] = 0.0f; }
    float acc[ATT_G_MAX][DPT];
#pragma unroll
    for (int g = 0; g < ATT_G_MAX; g++)
#pragma unroll
        for (int r = 0; r < DPT; r++) acc[g][r] = 0.0f;
    __syncthreads();

    for (int c0 = lo; c0 < hi; c0 += ATT_CHUNK) {
        const int n_c = min(ATT_CHUNK, hi - c0);
        // scores: key j = tid / 2, half h = tid % 2 of head_dim
        {
            const int j = tid >> 1, h = tid & 1;
            float part[ATT_G_MAX];
#pragma unroll
            for (int g = 0; g < ATT_G_MAX; g++) part[g] = 0.0f;
            if (j < n_c) {
                const int pos = c0 + j;
                const int64_t slot = (int64_t)blocks[pos / block_size] * block_size + pos % block_size;
                if (h == 0) slot_s[j] = slot;
                const T *kr = kbase + slot * row + h * HALF;
#pragma unroll
                for (int i0 = 0; i0 < HALF; i0 += 8) {
                    float kf[8];
                    load8<T>(kr + i0, kf);
#pragma unroll
                    for (int g = 0; g < ATT_G_MAX; g++) {
                        if (g < G) {
                            const float *qg = &q_s[g][h * HALF + i0];
#pragma unroll
                            for (int i = 0; i < 8; i++) part[g] += qg[i] * kf[i];
                        }
                    }
                }
            }
#pragma unroll
            for (int g = 0; g < ATT_G_MAX; g++) {
                if (g >= G) break;
                float v = part[g] + __shfl_xor_sync(0xffffffffu, part[g], 1);
                if (h == 0 && j < ATT_CHUNK) {
                    float sc = v * scale;
                    if (softcap > 0) sc = softcap * tanhf(sc / softcap);
                    s_s[g][j] = j < n_c ? sc : -INFINITY;
                }
            }
        }
        __syncthreads();
        // online softmax per head: warp w takes heads w, w + 4, ...
        for (int g = warp; g < G; g += ATT_THREADS / 32) {
            float a = s_s[g][lane], b = s_s[g][lane + 32];
            float mx = warp_max(fmaxf(a, b));
            float m_old = m_s[g];
            float m_new = fmaxf(m_old, mx);
            float pa = m_new == -INFINITY ? 0.0f : __expf(a - m_new);
            float pb = m_new == -INFINITY ? 0.0f : __expf(b - m_new);
            float sum = warp_sum(pa + pb);
            s_s[g][lane] = pa;
            s_s[g][lane + 32] = pb;
            if (lane == 0) {
                float alpha = m_old == -INFINITY ? 0.0f : __expf(m_old - m_new);
                alpha_s[g] = alpha;
                l_s[g] = l_s[g] * alpha + sum;
                m_s[g] = m_new;
            }
        }
        __syncthreads();
        // acc = acc * alpha + P V
#pragma unroll
        for (int r = 0; r < DPT; r++) {
            const int d = tid + r * ATT_THREADS;
            if (d >= D) break;
#pragma unroll
            for (int g = 0; g < ATT_G_MAX; g++)
                if (g < G) acc[g][r] *= alpha_s[g];
            int j = 0;
            for (; j + 16 <= n_c; j += 16) {
                float v[16];
#pragma unroll
                for (int u = 0; u < 16; u++) v[u] = to_f<T>(vbase[slot_s[j + u] * row + d]);
#pragma unroll
                for (int u = 0; u < 16; u++)
#pragma unroll
                    for (int g = 0; g < ATT_G_MAX; g++)
                        if (g < G) acc[g][r] += s_s[g][j + u] * v[u];
            }
            for (; j < n_c; j++) {
                float v = to_f<T>(vbase[slot_s[j] * row + d]);
#pragma unroll
                for (int g = 0; g < ATT_G_MAX; g++)
                    if (g < G) acc[g][r] += s_s[g][j] * v;
            }
        }
        __syncthreads();
    }
    // partials: [t][head][split]
#pragma unroll
    for (int g = 0; g < ATT_G_MAX; g++) {
        if (g >= G) break;
        size_t base = ((size_t)t * n_heads + kvh * G + g) * n_split + split;
#pragma unroll
        for (int r = 0; r < DPT; r++) {
            int d = tid + r * ATT_THREADS;
            if (d < D) part_acc[base * D + d] = acc[g][r];
        }
        if (tid == 0) {
            part_ml[base * 2] = m_s[g];
            part_ml[base * 2 + 1] = l_s[g];
        }
    }
}

__global__ void k_attn_combine(float *out, const float *part_acc, const float *part_ml, int n_heads, int D, int n_split)
{
    const int t = blockIdx.x, h = blockIdx.y;
    size_t base = ((size_t)t * n_heads + h) * n_split;
    float M = -INFINITY;
    for (int s = 0; s < n_split; s++) M = fmaxf(M, part_ml[(base + s) * 2]);
    float L = 0;
    for (int s = 0; s < n_split; s++) {
        float m = part_ml[(base + s) * 2];
        if (m != -INFINITY) L += part_ml[(base + s) * 2 + 1] * __expf(m - M);
    }
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float o = 0;
        for (int s = 0; s < n_split; s++) {
            float m = part_ml[(base + s) * 2];
            if (m != -INFINITY) o += part_acc[(base + s) * D + d] * __expf(m - M);
        }
        out[((size_t)t * n_heads + h) * D + d] = L > 0 ? o / L : 0.0f;
    }
}

void cuda_attention(struct backend *be, struct tensor *out, const struct tensor *q, const struct kv_layer *kv,
                    const struct attn_params *ap, const struct batch_meta *m)
{
    struct cuda_backend *cb = cuda_of(be);
    const struct cuda_batch *b = &cb->batch;
    if (!b->all_single && cuda_attention_tiled(cb, out, q, kv, ap, m)) return;
    int G = ap->n_heads / ap->n_kv_heads;
    CHECK(G <= ATT_G_MAX, "cuda attention: %d query heads per KV head (at most %d)", G, ATT_G_MAX);
    // Enough splits to fill the GPU at decode; few when many tokens already fill it.
    int max_len = b->max_seq_len > 0 ? b->max_seq_len : 1;
    int n_split = 1;
    int blocks = m->n_tok * ap->n_kv_heads;
    while (n_split < ATT_SPLIT_MAX && blocks * n_split < 2 * cb->n_sm && max_len / (n_split * 2) >= ATT_CHUNK) n_split *= 2;

    size_t n_part = (size_t)m->n_tok * ap->n_heads * n_split;
    size_t bytes = n_part * ((size_t)ap->head_dim + 2) * sizeof(float);
    if (bytes > cb->attn_part_bytes) {
        if (cb->d_attn_part) {
            CUDA_CHECK(cudaStreamSynchronize(cb->stream));
            CUDA_CHECK(cudaFree(cb->d_attn_part));
        }
        cb->attn_part_bytes = bytes + bytes / 2;
        CUDA_CHECK(cudaMalloc(&cb->d_attn_part, cb->attn_part_bytes));
    }
    float *part_acc = cb->d_attn_part;
    float *part_ml = part_acc + n_part * ap->head_dim;
    dim3 grid(m->n_tok, ap->n_kv_heads, n_split);
#define SPLIT_CASE(DD) case DD: DISPATCH_FLOAT(kv->k.dtype, T, k_attn_split<T, DD><<<grid, ATT_THREADS, 0, cb->stream>>>( \
        part_acc, part_ml, (const float *)dptr(q), (const T *)dptr(&kv->k), (const T *)dptr(&kv->v), b->d_tok_pos, \
        b->d_tok_seq, b->d_seq_block0, b->d_block_ids, m->block_size, ap->n_heads, ap->n_kv_heads, ap->scale, \
        ap->window, ap->softcap, n_split)); break;
    switch (ap->head_dim) {
    SPLIT_CASE(16)
    SPLIT_CASE(32)
    SPLIT_CASE(64)
    SPLIT_CASE(80)
    SPLIT_CASE(96)
    SPLIT_CASE(128)
    SPLIT_CASE(256)
    default: CHECK(0, "cuda attention: head_dim %d not supported (16, 32, 64, 80, 96, 128, 256)", ap->head_dim);
    }
#undef SPLIT_CASE
    LAUNCH_CHECK();
    k_attn_combine<<<dim3(m->n_tok, ap->n_heads), 128, 0, cb->stream>>>((float *)dptr(out), part_acc, part_ml, ap->n_heads,
                                                                         ap->head_dim, n_split);
    LAUNCH_CHECK();
}
