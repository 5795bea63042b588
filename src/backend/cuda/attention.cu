/* attention: paged causal attention on the GPU: which kernel runs, and the generic split-K kernel.
 *
 * ==== Which kernel runs (choose_attention_kernel; CAIRN_PROFILE's per-kernel lines use its names) ====
 *
 *  step                | longest seq | cache dtype        | head_dim, G = heads / KV head | mode    | kernel
 *  --------------------+-------------+--------------------+-------------------------------+---------+-----------
 *  prefill (a sequence | any         | bf16, f16, fp8     | 64, 128, 256                  | default | fa2
 *   has > 1 token)     | any         | any                | 16-256 built, smem fits       | default | wmma
 *  any                 | >= 1,024 *  | fp8, block % 16    | 64, 128; G <= 16              | default | decode_mma
 *  any                 | any         | bf16, f16, fp8     | 64, 128, 256; G <= 8 (fp8 at  | any     | decode
 *                      |             |                    | 256: G <= 4)                  |         |
 *  any                 | any         | any                | G <= 16; 16-256 built         | any     | split
 *
 * (* cfg cuda_fp8_mma_min_len, a power of two so that a step graph replayed at other lengths of
 * its class keeps the choice.) Rows apply top down; "default" is neither cuda-precise nor
 * cuda-deterministic, which take the f32-softmax split-K kernels for every step (the tiled ones
 * compute P in bf16, and how a prompt is cut into steps would change their tiles).
 * fa2, wmma: attention_tiled.cu; decode: attention_decode.cu (streaming split-K, built for one
 * token per sequence; it also runs every step of the precise and deterministic backends);
 * decode_mma: attention_decode_mma.cu (tensor cores for fp8 caches); split: below, for what the
 * others do not take (f32 caches, more than 8 query heads per KV head, other head dims).
 * bench/kernels/attention_decode.cu and attention_prefill.cu compare them.
 *
 * Generic kernel. Grid (token, kv head, split): a block takes one query token and the G =
 * n_heads / n_kv_heads query heads that share a KV head, and walks its split of the token's
 * visible keys in chunks of CHUNK: scores for the chunk (two threads per key), an online-softmax
 * update per head, then P·V with one thread per output dimension (V rows read coalesced). Splits
 * merge as in attention_split.cuh. Splits are short (>= 32 keys) so even a 512-token context
 * yields ~128 blocks (at most ATT_SPLITS splits). The kernel is compiled for G <= 4 and
 * G <= 16 query heads per KV head (per-head accumulators in registers). K and V are read from the
 * paged cache through the sequence's block table.
 */
#include "backend/cuda/attention_split.cuh"

#include <math.h>

#define ATT_THREADS 128
#define ATT_CHUNK   64          // keys per inner step (two threads per key)
#define ATT_G_MAX   16
#define ATT_D_MAX   256

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
    const int lo_all = attn_first_key(p, window), n_keys = p - lo_all + 1;
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
        cuda_mem_free(cb, cb->d_attn_part);
        cb->attn_part_bytes = bytes + bytes / 2;
        cb->d_attn_part = (float *)cuda_mem_alloc_or_die(cb, cb->attn_part_bytes);
    }
    size_t n_pairs = (size_t)n_tok * n_kv;
    if (n_pairs > cb->attn_done_cap) {
        cuda_mem_free(cb, cb->d_attn_done);
        cb->attn_done_cap = n_pairs * 2;
        cb->d_attn_done = (int32_t *)cuda_mem_alloc_or_die(cb, sizeof(int32_t) * cb->attn_done_cap);
        CUDA_CHECK(cudaMemsetAsync(cb->d_attn_done, 0, sizeof(int32_t) * cb->attn_done_cap, cb->stream));
    }
    *part_acc = (float *)cb->d_attn_part;
    *part_ml = *part_acc + n_part * head_dim;
}

enum attention_kernel {
    ATTENTION_FA2,          // k_attn_fa2
    ATTENTION_WMMA,         // k_attn_tiled
    ATTENTION_DECODE_MMA,   // k_attn_decode_mma
    ATTENTION_DECODE,       // k_attn_decode
    ATTENTION_SPLIT,        // k_attn_split
    ATTENTION_N_KERNELS
};
static const char *const attention_kernel_name[ATTENTION_N_KERNELS] = {
    "attention fa2", "attention wmma", "attention decode_mma", "attention decode", "attention split",
};

/* The one place that decides (the table above). */
static enum attention_kernel choose_attention_kernel(const struct cuda_backend *cb, enum dtype kv_dtype,
                                                     const struct attn_params *ap, int block_size)
{
    const struct cuda_batch *b = &cb->batch;
    const int D = ap->head_dim, G = ap->n_heads / ap->n_kv_heads;
    const bool fast = !cb->precise && !cb->deterministic;
    const bool f16_or_f8 = kv_dtype == DTYPE_BF16 || kv_dtype == DTYPE_F16 || kv_dtype == DTYPE_F8E4M3;
    if (!b->all_single && fast) {
        if (f16_or_f8 && (D == 64 || D == 128 || D == 256)) return ATTENTION_FA2;
        const size_t smem = cuda_attention_wmma_smem(D);
        if (smem && smem <= cb->smem_optin) return ATTENTION_WMMA;
    }
    if (fast && kv_dtype == DTYPE_F8E4M3 && block_size % 16 == 0 && b->max_seq_len >= cb->att_mma_min_len &&
        (D == 64 || D == 128) && G <= 16)
        return ATTENTION_DECODE_MMA;
    // fp8 at head_dim 256 with more than 4 heads a KV head: f16x2 math missed test_cuda_attention's
    // bound on one output (H100), so the f32 split kernel
    const bool decode_fits =
        (D == 64 || D == 128 || D == 256) && G <= 8 && !(kv_dtype == DTYPE_F8E4M3 && D == 256 && G > 4);
    if (f16_or_f8 && decode_fits) return ATTENTION_DECODE;
    return ATTENTION_SPLIT;
}

static void attention_split(struct cuda_backend *cb, struct tensor *out, const struct tensor *q, const struct kv_layer *kv,
                            const struct attn_params *ap, const struct batch_meta *m);

void cuda_attention(struct backend *be, struct tensor *out, const struct tensor *q, const struct kv_layer *kv,
                    const struct attn_params *ap, const struct batch_meta *m)
{
    struct cuda_backend *cb = cuda_of(be);
    const enum attention_kernel kern = choose_attention_kernel(cb, kv->k.dtype, ap, m->block_size);
    const double t0 = cuda_prof_begin(cb);
    switch (kern) {
    case ATTENTION_FA2: cuda_attention_fa2(cb, out, q, kv, ap, m); break;
    case ATTENTION_WMMA: cuda_attention_wmma(cb, out, q, kv, ap, m); break;
    case ATTENTION_DECODE_MMA: cuda_attention_decode_mma(cb, out, q, kv, ap, m); break;
    case ATTENTION_DECODE: cuda_attention_decode(cb, out, q, kv, ap, m); break;
    default: attention_split(cb, out, q, kv, ap, m); break;
    }
    cuda_prof_end(cb, attention_kernel_name[kern], t0);
}

static void attention_split(struct cuda_backend *cb, struct tensor *out, const struct tensor *q, const struct kv_layer *kv,
                            const struct attn_params *ap, const struct batch_meta *m)
{
    const struct cuda_batch *b = &cb->batch;
    int G = ap->n_heads / ap->n_kv_heads;
    CHECK(G <= ATT_G_MAX, "cuda attention: %d query heads per KV head (at most %d)", G, ATT_G_MAX);
    // Enough splits to fill the GPU at decode; few when many tokens already fill it.
    int max_len = b->max_seq_len > 0 ? b->max_seq_len : 1;
    int n_split = 1;
    int blocks = m->n_tok * ap->n_kv_heads;
    // deterministic: the splits the longest token wants; each token then takes its own share
    while (n_split < ATT_SPLITS && (cb->deterministic || blocks * n_split < 4 * cb->n_sm) &&
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
