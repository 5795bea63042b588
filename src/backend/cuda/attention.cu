/* attention: paged causal attention on the GPU, and the generic split-K kernel.
 *
 * cuda_attention picks a kernel: the tiled tensor-core kernel for prefill (attention_tiled.cu),
 * the streaming split-K kernel for decode and for every step of the precise and deterministic
 * backends (attention_decode.cu), and the generic kernel below for what those do not take (f32
 * caches, more than 8 query heads per KV head, head dims other than 64/128/256).
 *
 * Generic kernel. Grid (token, kv head, split): a block takes one query token and the G =
 * n_heads / n_kv_heads query heads that share a KV head, and walks its split of the token's
 * visible keys in chunks of CHUNK: scores for the chunk (two threads per key), an online-softmax
 * update per head, then P·V with one thread per output dimension (V rows read coalesced). Splits
 * merge as in attention_split.cuh. Splits are short (>= 32 keys) so even a 512-token context
 * yields ~128 blocks (at most cb->att_split_max splits). The kernel is compiled for G <= 4 and
 * G <= 16 query heads per KV head (per-head accumulators in registers). K and V are read from the
 * paged cache through the sequence's block table.
 */
#include "backend/cuda/attention_split.cuh"

#include <math.h>

#define ATT_THREADS 128
#define ATT_CHUNK   64          // keys per inner step (two threads per key)
#define ATT_G_MAX   16
#define ATT_D_MAX   256
#define ATT_SPLIT_MIN_KEYS 32   // fewest keys per split

/* One block = one query token x one KV head (its G query heads) x one split of the keys.
 * Scores: two adjacent threads per key, each a half of head_dim with 16-byte loads, q read from
 * shared memory (a broadcast). P.V: one thread per output dim (D <= 128) or two dims (D = 256),
 * V rows read coalesced, sixteen keys in flight. */
template <typename T, int D, int GM>
__global__ void __launch_bounds__(ATT_THREADS) k_attn_split(
    float *out, float *part_acc, float *part_ml, int32_t *done, const float *q, const T *kc, const T *vc, const int32_t *tok_pos,
    const int32_t *tok_seq, const int32_t *seq_block0, const int32_t *block_ids, int block_size, int n_heads,
    int n_kv, float scale, int window, float softcap, int split_grid, bool per_token_splits)
{
    pdl_trigger();   // the output projection's GEMV follows
    constexpr int DPT = D > ATT_THREADS ? D / ATT_THREADS : 1;   // output dims per thread
    constexpr int HALF = D / 2;                                  // dims per thread in the score phase
    const int t = blockIdx.x, kvh = blockIdx.y, split = blockIdx.z;
    const int G = n_heads / n_kv;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    __shared__ __align__(16) float q_s[GM][D];
    __shared__ float s_s[GM][ATT_CHUNK];
    __shared__ int64_t slot_s[ATT_CHUNK];
    __shared__ float m_s[GM], l_s[GM], alpha_s[GM];
    __shared__ float w_s[GM][ATT_SPLIT_MAX];   // combine: weight of each split

    const int p = tok_pos[t], s = tok_seq[t];
    const int lo_all = window > 0 ? max(0, p - window + 1) : 0;
    const int n_keys = p - lo_all + 1;
    // Splits of this token: the launch's count, or (deterministic mode) a function of this token's
    // keys alone, so its result does not depend on what else is in the batch.
    int n_split = split_grid;
    if (per_token_splits) {
        n_split = 1;
        while (n_split < split_grid && n_keys / (n_split * 2) >= ATT_SPLIT_MIN_KEYS) n_split *= 2;
        if (split >= n_split) return;
    }
    const int per_split = (n_keys + n_split - 1) / n_split;
    const int lo = lo_all + split * per_split;
    const int hi = min(p + 1, lo + per_split);   // exclusive
    const int32_t *blocks = block_ids + seq_block0[s];
    const size_t row = (size_t)n_kv * D;
    const T *kbase = kc + (size_t)kvh * D, *vbase = vc + (size_t)kvh * D;

    for (int i = tid; i < G * D; i += ATT_THREADS) q_s[i / D][i % D] = q[((size_t)t * n_heads + kvh * G) * D + i];
    if (tid < G) { m_s[tid] = -INFINITY; l_s[tid] = 0.0f; }
    float acc[GM][DPT];
#pragma unroll
    for (int g = 0; g < GM; g++)
#pragma unroll
        for (int r = 0; r < DPT; r++) acc[g][r] = 0.0f;
    __syncthreads();

    for (int c0 = lo; c0 < hi; c0 += ATT_CHUNK) {
        const int n_c = min(ATT_CHUNK, hi - c0);
        // scores: key j = tid / 2, half h = tid % 2 of head_dim
        {
            const int j = tid >> 1, h = tid & 1;
            float part[GM];
#pragma unroll
            for (int g = 0; g < GM; g++) part[g] = 0.0f;
            if (j < n_c) {
                const int pos = c0 + j;
                const int64_t slot = (int64_t)blocks[pos / block_size] * block_size + pos % block_size;
                if (h == 0) slot_s[j] = slot;
                const T *kr = kbase + slot * row + h * HALF;
#pragma unroll
                for (int i0 = 0; i0 < HALF; i0 += 8) {
                    float kf[8];
                    if (HALF % 8 == 0) load8<T>(kr + i0, kf);   // else scalar (head_dim 72: unaligned halves)
                    else
#pragma unroll
                        for (int i = 0; i < 8; i++) kf[i] = i0 + i < HALF ? to_f<T>(kr[i0 + i]) : 0.0f;
#pragma unroll
                    for (int g = 0; g < GM; g++) {
                        if (g < G) {
                            const float *qg = &q_s[g][h * HALF + i0];
#pragma unroll
                            for (int i = 0; i < 8; i++)
                                if (HALF % 8 == 0 || i0 + i < HALF) part[g] += qg[i] * kf[i];
                        }
                    }
                }
            }
#pragma unroll
            for (int g = 0; g < GM; g++) {
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
            __syncwarp();   // every lane has read m_s[g] before lane 0 replaces it
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
            for (int g = 0; g < GM; g++)
                if (g < G) acc[g][r] *= alpha_s[g];
            int j = 0;
            for (; j + 16 <= n_c; j += 16) {
                float v[16];
#pragma unroll
                for (int u = 0; u < 16; u++) v[u] = to_f<T>(vbase[slot_s[j + u] * row + d]);
#pragma unroll
                for (int u = 0; u < 16; u++)
#pragma unroll
                    for (int g = 0; g < GM; g++)
                        if (g < G) acc[g][r] += s_s[g][j + u] * v[u];
            }
            for (; j < n_c; j++) {
                float v = to_f<T>(vbase[slot_s[j] * row + d]);
#pragma unroll
                for (int g = 0; g < GM; g++)
                    if (g < G) acc[g][r] += s_s[g][j] * v;
            }
        }
        __syncthreads();
    }
    if (n_split == 1) {
#pragma unroll
        for (int g = 0; g < GM; g++) {
            if (g >= G) break;
            float l = l_s[g];
#pragma unroll
            for (int r = 0; r < DPT; r++) {
                int d = tid + r * ATT_THREADS;
                if (d < D) out[((size_t)t * n_heads + kvh * G + g) * D + d] = l > 0 ? acc[g][r] / l : 0.0f;
            }
        }
        return;
    }
    // partials: [t][head][split]
#pragma unroll
    for (int g = 0; g < GM; g++) {
        if (g >= G) break;
        size_t base = ((size_t)t * n_heads + kvh * G + g) * split_grid + split;
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
    attn_merge_if_last<D, ATT_THREADS>(out, part_acc, part_ml, done, t, kvh, G, n_heads, n_kv, split_grid, n_split, w_s);
}

void cuda_attn_split_workspace(struct cuda_backend *cb, int n_tok, int n_heads, int n_kv, int head_dim, int n_split,
                               float **part_acc, float **part_ml)
{
    size_t n_part = (size_t)n_tok * n_heads * n_split;
    size_t bytes = n_part * ((size_t)head_dim + 2) * sizeof(float);
    if (bytes > cb->attn_part_bytes) {
        if (cb->d_attn_part) {
            CUDA_CHECK(cudaStreamSynchronize(cb->stream));
            CUDA_CHECK(cudaFree(cb->d_attn_part));
        }
        cb->attn_part_bytes = bytes + bytes / 2;
        CUDA_CHECK(cudaMalloc(&cb->d_attn_part, cb->attn_part_bytes));
        cb->mem_gen++;
    }
    size_t n_pairs = (size_t)n_tok * n_kv;
    if (n_pairs > cb->attn_done_cap) {
        if (cb->d_attn_done) {
            CUDA_CHECK(cudaStreamSynchronize(cb->stream));
            CUDA_CHECK(cudaFree(cb->d_attn_done));
        }
        cb->attn_done_cap = n_pairs * 2;
        CUDA_CHECK(cudaMalloc(&cb->d_attn_done, sizeof(int32_t) * cb->attn_done_cap));
        cb->mem_gen++;
        CUDA_CHECK(cudaMemsetAsync(cb->d_attn_done, 0, sizeof(int32_t) * cb->attn_done_cap, cb->stream));
    }
    *part_acc = (float *)cb->d_attn_part;
    *part_ml = *part_acc + n_part * head_dim;
}

void cuda_attention(struct backend *be, struct tensor *out, const struct tensor *q, const struct kv_layer *kv,
                    const struct attn_params *ap, const struct batch_meta *m)
{
    struct cuda_backend *cb = cuda_of(be);
    const struct cuda_batch *b = &cb->batch;
    // precise, deterministic: an f32 split-K kernel for every step (the tiled kernel computes in
    // bf16, and how a prompt is cut into steps would change its tiles)
    if (!b->all_single && !cb->precise && !cb->deterministic && cuda_attention_tiled(cb, out, q, kv, ap, m)) return;
    if (cuda_attention_decode_mma(cb, out, q, kv, ap, m)) return;
    if (cuda_attention_decode(cb, out, q, kv, ap, m)) return;
    int G = ap->n_heads / ap->n_kv_heads;
    CHECK(G <= ATT_G_MAX, "cuda attention: %d query heads per KV head (at most %d)", G, ATT_G_MAX);
    // Enough splits to fill the GPU at decode; few when many tokens already fill it.
    int max_len = b->max_seq_len > 0 ? b->max_seq_len : 1;
    int n_split = 1;
    int blocks = m->n_tok * ap->n_kv_heads;
    int split_max = cb->att_split_max < ATT_SPLIT_MAX ? cb->att_split_max : ATT_SPLIT_MAX;
    // deterministic: the splits the longest token wants; each token then takes its own share
    while (n_split < split_max && (cb->deterministic || blocks * n_split < 4 * cb->n_sm) &&
           max_len / (n_split * 2) >= ATT_SPLIT_MIN_KEYS)
        n_split *= 2;

    float *part_acc, *part_ml;
    cuda_attn_split_workspace(cb, m->n_tok, ap->n_heads, ap->n_kv_heads, ap->head_dim, n_split, &part_acc, &part_ml);
    dim3 grid(m->n_tok, ap->n_kv_heads, n_split);
    // GM: query heads per KV head the kernel is compiled for (4 covers most GQA models in few
    // registers; 16 the rest)
#define SPLIT_LAUNCH(DD, GG) k_attn_split<T, DD, GG><<<grid, ATT_THREADS, 0, cb->stream>>>( \
        (float *)dptr(out), part_acc, part_ml, cb->d_attn_done, (const float *)dptr(q), (const T *)dptr(&kv->k), \
        (const T *)dptr(&kv->v), b->d_tok_pos, b->d_tok_seq, b->d_seq_block0, b->d_block_ids, m->block_size, ap->n_heads, \
        ap->n_kv_heads, ap->scale, ap->window, ap->softcap, n_split, cb->deterministic)
#define SPLIT_CASE(DD) case DD: DISPATCH_KV(kv->k.dtype, T, { \
        if (G <= 4) SPLIT_LAUNCH(DD, 4); else SPLIT_LAUNCH(DD, ATT_G_MAX); }); break;
    switch (ap->head_dim) {
    SPLIT_CASE(16)
    SPLIT_CASE(32)
    SPLIT_CASE(64)
    SPLIT_CASE(72)
    SPLIT_CASE(80)
    SPLIT_CASE(96)
    SPLIT_CASE(128)
    SPLIT_CASE(256)
    default: CHECK(0, "cuda attention: head_dim %d not supported (16, 32, 64, 72, 80, 96, 128, 256)", ap->head_dim);
    }
#undef SPLIT_CASE
#undef SPLIT_LAUNCH
    LAUNCH_CHECK();
}
