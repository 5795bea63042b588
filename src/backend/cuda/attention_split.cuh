/* attention_split: what the split-K attention kernels share (attention.cu, attention_decode.cu,
 * attention_decode_mma.cu).
 *
 * A split-K kernel cuts each (query token, KV head)'s keys into n_split ranges, one block each.
 * Every block writes its partial softmax state per query head to the workspace: the running max
 * m, the sum l of exp(score - m) and the unnormalized output acc[D]. The last block of a (token,
 * KV head) to finish (a counter per pair, reset by that block) merges the partials, so there is no
 * second launch. Partials are laid out [token][head][split].
 */
#ifndef CAIRN_BACKEND_CUDA_ATTENTION_SPLIT_CUH
#define CAIRN_BACKEND_CUDA_ATTENTION_SPLIT_CUH

#include "backend/cuda/cuda_common.cuh"

#define ATT_SPLIT_MAX 128   // most splits a launch may use (combine weights live in shared memory)
#define ATT_SPLITS    64    // most splits the launchers choose
#define ATT_SPLIT_MIN_KEYS 32   // fewest keys per split (64 measured 3% slower decode at 512 keys)

/* The first key position a query at position p sees: 0, or the start of its sliding window. */
__device__ __forceinline__ int attn_first_key(int p, int window) { return window > 0 ? max(0, p - window + 1) : 0; }

/* Workspace for n_tok tokens' partials with n_split splits and the per-pair counters; grows
 * (with a sync) only when a step needs more than any before it. */
void cuda_attn_split_workspace(struct cuda_backend *cb, int n_tok, int n_heads, int n_kv, int head_dim, int n_split,
                               float **part_acc, float **part_ml);

/* Called by every thread of a block after it wrote its partials: the block that completes the
 * (token t, KV head kvh) pair merges the n_split partials of its G query heads into out.
 * w_s is shared scratch of [G][ATT_SPLIT_MAX]. */
template <int D, int THREADS>
__device__ __forceinline__ void attn_merge_if_last(float *out, const float *part_acc, const float *part_ml,
                                                   int32_t *done, int t, int kvh, int G, int n_heads, int n_kv,
                                                   int split_grid, int n_split, float (*w_s)[ATT_SPLIT_MAX])
{
    __shared__ bool last_s;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    // our partials are visible before the count says so
    __threadfence();
    __syncthreads();
    if (tid == 0) {
        int32_t *cnt = done + (size_t)t * n_kv + kvh;
        last_s = atomicAdd(cnt, 1) == n_split - 1;
        if (last_s) *cnt = 0;   // ready for the next launch
    }
    __syncthreads();
    if (!last_s) return;
    __threadfence();
    for (int g = warp; g < G; g += THREADS / 32) {
        size_t base = ((size_t)t * n_heads + kvh * G + g) * split_grid;
        float M = -INFINITY;
        for (int sp = lane; sp < n_split; sp += 32) M = fmaxf(M, __ldcg(part_ml + (base + sp) * 2));
        M = warp_max(M);
        float L = 0;
        for (int sp = lane; sp < n_split; sp += 32) {
            float m = __ldcg(part_ml + (base + sp) * 2);
            float w = m == -INFINITY ? 0.0f : __expf(m - M);
            w_s[g][sp] = w;
            L += __ldcg(part_ml + (base + sp) * 2 + 1) * w;
        }
        L = warp_sum(L);
        float inv = L > 0 ? 1.0f / L : 0.0f;
        __syncwarp();
        for (int sp = lane; sp < n_split; sp += 32) w_s[g][sp] *= inv;
    }
    __syncthreads();
    // one (head, 4 dims) per thread (for G * D <= 4 * THREADS, one pass), sixteen splits' 16-byte
    // loads in flight: this merge runs after the step's other blocks are done, so its latency
    // rounds are the kernel's tail (one (head, dim) per thread took 4x the rounds)
    static_assert(D % 4 == 0, "head_dim must be a multiple of 4");
    const size_t base0 = ((size_t)t * n_heads + kvh * G) * split_grid;
    for (int idx = tid; idx < G * D / 4; idx += THREADS) {
        const int g = idx / (D / 4), d = 4 * (idx - g * (D / 4));
        const float4 *pa = reinterpret_cast<const float4 *>(part_acc + (base0 + (size_t)g * split_grid) * D + d);
        float4 o = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 16
        for (int sp = 0; sp < n_split; sp++) {
            const float4 v = __ldcg(pa + (size_t)sp * (D / 4));
            const float w = w_s[g][sp];
            o.x += v.x * w;
            o.y += v.y * w;
            o.z += v.z * w;
            o.w += v.w * w;
        }
        *reinterpret_cast<float4 *>(out + ((size_t)t * n_heads + kvh * G + g) * D + d) = o;
    }
}

/* A cache load that does not allocate in L1 (each row is read once). Coherent (no .nc): the
 * kernel before this one (PDL) wrote this step's rows. volatile keeps it after pdl_wait. */
__device__ __forceinline__ void ld_cache(const void *p, uint4 &r)
{
    asm volatile("ld.global.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
}
__device__ __forceinline__ void ld_cache(const void *p, uint2 &r)
{
    asm volatile("ld.global.L1::no_allocate.v2.u32 {%0, %1}, [%2];" : "=r"(r.x), "=r"(r.y) : "l"(p));
}
__device__ __forceinline__ void zero(uint4 &r) { r = make_uint4(0, 0, 0, 0); }
__device__ __forceinline__ void zero(uint2 &r) { r = make_uint2(0, 0); }

/* Called by every thread of a block of THREADS threads after each of W warps wrote its own softmax state for
 * the block's G query heads (running max wm_s, sum wl_s, unnormalized output wacc_s): merges the
 * warps and writes the output (one split) or this split's partials, then merges the splits if this
 * block is the last. split_grid: the splits the partials are laid out for; n_split: this token's. */
template <int D, int W, int GM, int THREADS = W * 32>
__device__ __forceinline__ void attn_warps_finish(float *out, float *part_acc, float *part_ml, int32_t *done,
                                                  const float (*wacc_s)[GM][D], const float (*wm_s)[GM],
                                                  const float (*wl_s)[GM], float (*w_s)[ATT_SPLIT_MAX], int t, int kvh,
                                                  int G, int n_heads, int n_kv, int split, int split_grid, int n_split)
{
    __syncthreads();
    for (int idx = threadIdx.x; idx < G * D; idx += THREADS) {
        const int g = idx / D, d = idx - g * D;
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < W; w++) M = fmaxf(M, wm_s[w][g]);
        float a = 0.0f, L = 0.0f;
#pragma unroll
        for (int w = 0; w < W; w++) {
            const float f = wm_s[w][g] == -INFINITY ? 0.0f : __expf(wm_s[w][g] - M);
            a += wacc_s[w][g][d] * f;
            L += wl_s[w][g] * f;
        }
        const size_t head = (size_t)t * n_heads + kvh * G + g;
        if (n_split == 1) {
            out[head * D + d] = L > 0 ? a / L : 0.0f;
        } else {
            const size_t base = head * split_grid + split;
            part_acc[base * D + d] = a;
            if (d == 0) { part_ml[base * 2] = M; part_ml[base * 2 + 1] = L; }
        }
    }
    if (n_split > 1)
        attn_merge_if_last<D, THREADS>(out, part_acc, part_ml, done, t, kvh, G, n_heads, n_kv, split_grid, n_split, w_s);
}

/* The kernels' launchers; choose_attention_kernel (attention.cu) decides which one runs and has
 * checked the shape each takes. */
void cuda_attention_decode(struct cuda_backend *cb, struct tensor *out, const struct tensor *q, const struct kv_layer *kv,
                           const struct attn_params *ap, const struct batch_meta *m);
void cuda_attention_decode_mma(struct cuda_backend *cb, struct tensor *out, const struct tensor *q,
                               const struct kv_layer *kv, const struct attn_params *ap, const struct batch_meta *m);
void cuda_attention_fa2(struct cuda_backend *cb, struct tensor *out, const struct tensor *q, const struct kv_layer *kv,
                        const struct attn_params *ap, const struct batch_meta *m);
void cuda_attention_wmma(struct cuda_backend *cb, struct tensor *out, const struct tensor *q, const struct kv_layer *kv,
                         const struct attn_params *ap, const struct batch_meta *m);
/* Dynamic shared memory the WMMA prefill kernel needs at head_dim d (0: a head_dim it is not built for). */
size_t cuda_attention_wmma_smem(int head_dim);

#endif
