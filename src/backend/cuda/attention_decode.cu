/* attention_decode: split-K flash decoding when every sequence of the step has one query token.
 *
 * Decode attention is a stream of the cache: per token and KV head it reads every visible K and V
 * row once, and the arithmetic is tiny. What limits it is how many bytes are in flight, so this
 * kernel is laid out for loads, not for math (the generic kernel in attention.cu synchronizes its
 * block three times per 64 keys and reads V two bytes per thread; it reached a quarter of the
 * bandwidth at 8K context).
 *
 * Grid (token, KV head, split), DEC_WARPS warps per block. A key's row of head_dim values is read
 * by LPK = head_dim / 8 lanes, 16 bytes each, so one warp-wide load covers 32 / LPK keys. Each warp
 * walks groups of NL such loads (NL * 32 / LPK keys): it issues all K and V loads of a group at
 * once (2 * NL loads in flight per lane, bypassing L1: NL = 4 loads of 16 bytes for bf16/f16, 8 of
 * 8 bytes for f8e4m3) and looks up the next group's cache slots while they fly, then computes scores (a dot product over the lane's 8 dims and a
 * shuffle sum over its LPK lanes), updates its own online softmax (no block barrier in the loop)
 * and accumulates P.V into 8 dims per lane. The block's warps merge through shared memory at the
 * end; splits merge as in attention_split.cuh.
 */
#include "backend/cuda/attention_split.cuh"

#include <math.h>

#define DEC_WARPS   8
#define DEC_THREADS (DEC_WARPS * 32)

/* Eight cache values, as loaded by one lane: 16 bytes of bf16/f16, 8 bytes of f8e4m3. */
template <typename T> struct kv8 { typedef uint4 raw; };
template <> struct kv8<__nv_fp8_e4m3> { typedef uint2 raw; };

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

/* The eight values of a load as floats. */
template <typename T>
__device__ __forceinline__ void unpack8(const typename kv8<T>::raw &u, float *f)
{
    const T *h = reinterpret_cast<const T *>(&u);
#pragma unroll
    for (int i = 0; i < 8; i++) f[i] = to_f<T>(h[i]);
}
template <>
__device__ __forceinline__ void unpack8<__nv_fp8_e4m3>(const uint2 &u, float *f)
{
    const __nv_fp8x2_storage_t *p = reinterpret_cast<const __nv_fp8x2_storage_t *>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) {   // pairs through the f16x2 convert (exact: e4m3 fits in f16)
        const float2 v = __half22float2(__half2(__nv_cvt_fp8x2_to_halfraw2(p[i], __NV_E4M3)));
        f[2 * i] = v.x;
        f[2 * i + 1] = v.y;
    }
}

/* Cache slots of the keys this lane loads in group gi (-1 past the split's end). */
template <int NL, int KPI, int KPG>
__device__ __forceinline__ void group_slots(int *slot, int gi, int lo, int hi, int sub, const int32_t *blocks,
                                            int block_size)
{
#pragma unroll
    for (int i = 0; i < NL; i++) {
        const int key = lo + gi * KPG + i * KPI + sub;
        slot[i] = key < hi ? blocks[key / block_size] * block_size + key % block_size : -1;
    }
}

/* GM: query heads per KV head compiled for (G <= GM); NL: loads per lane per group for each of K
 * and V (4 measured faster than 8 for bf16 at 8K-32K context on H100: fewer registers, more warps). */
template <typename T, int D, int GM, int NL>
__global__ void __launch_bounds__(DEC_THREADS) k_attn_decode(
    float *out, float *part_acc, float *part_ml, int32_t *done, const float *q, const T *kc, const T *vc,
    const int32_t *tok_pos, const int32_t *tok_seq, const int32_t *seq_block0, const int32_t *block_ids, int block_size,
    int n_heads, int n_kv, float scale, int window, float softcap, int split_grid, bool per_token_splits)
{
    pdl_trigger();   // the output projection's GEMV follows
    constexpr int LPK = D / 8;       // lanes per key
    constexpr int KPI = 32 / LPK;    // keys per warp-wide load
    constexpr int KPG = NL * KPI;    // keys per group
    const int t = blockIdx.x, kvh = blockIdx.y, split = blockIdx.z;
    const int G = n_heads / n_kv;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int sub = lane / LPK, part = lane % LPK;
    __shared__ __align__(16) float q_s[GM][D];
    __shared__ __align__(16) float wacc_s[DEC_WARPS][GM][D];
    __shared__ float wm_s[DEC_WARPS][GM], wl_s[DEC_WARPS][GM];
    __shared__ float w_s[GM][ATT_SPLIT_MAX];

    const int p = tok_pos[t], s = tok_seq[t];
    const int lo_all = window > 0 ? max(0, p - window + 1) : 0;
    const int n_keys = p - lo_all + 1;
    int n_split = split_grid;
    if (per_token_splits) {   // deterministic mode: splits from this token's keys alone (as attention.cu)
        n_split = 1;
        while (n_split < split_grid && n_keys / (n_split * 2) >= KPG) n_split *= 2;
        if (split >= n_split) return;
    }
    const int per_split = (n_keys + n_split - 1) / n_split;
    const int lo = lo_all + split * per_split;
    const int hi = min(p + 1, lo + per_split);
    const int n_groups = hi > lo ? (hi - lo + KPG - 1) / KPG : 0;
    const int32_t *blocks = block_ids + seq_block0[s];
    const size_t row = (size_t)n_kv * D;
    const T *kb = kc + (size_t)kvh * D + part * 8, *vb = vc + (size_t)kvh * D + part * 8;

    int slot[NL];
    if (warp < n_groups) group_slots<NL, KPI, KPG>(slot, warp, lo, hi, sub, blocks, block_size);
    pdl_wait();   // q and this step's cache rows come from the kernel before
    for (int i = tid; i < GM * D; i += DEC_THREADS) {
        const int g = i / D;
        q_s[g][i % D] = g < G ? q[((size_t)t * n_heads + kvh * G) * D + i] * scale : 0.0f;
    }
    __syncthreads();

    float m[GM], l[GM], acc[GM][8];
#pragma unroll
    for (int g = 0; g < GM; g++) {
        m[g] = -INFINITY;
        l[g] = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; e++) acc[g][e] = 0.0f;
    }
    for (int gi = warp; gi < n_groups; gi += DEC_WARPS) {
        typename kv8<T>::raw kr[NL], vr[NL];
        bool valid[NL];
#pragma unroll
        for (int i = 0; i < NL; i++) {
            // past the split's end: zeros (any slot's bytes could be NaN, and 0 * NaN poisons P.V)
            valid[i] = slot[i] >= 0;
            zero(kr[i]);
            zero(vr[i]);
            if (valid[i]) {
                ld_cache(kb + (size_t)slot[i] * row, kr[i]);
                ld_cache(vb + (size_t)slot[i] * row, vr[i]);
            }
        }
        if (gi + DEC_WARPS < n_groups) group_slots<NL, KPI, KPG>(slot, gi + DEC_WARPS, lo, hi, sub, blocks, block_size);

        float sc[NL][GM];
#pragma unroll
        for (int i = 0; i < NL; i++) {
            float kf[8];
            unpack8<T>(kr[i], kf);
#pragma unroll
            for (int g = 0; g < GM; g++) {
                const float4 qa = *reinterpret_cast<const float4 *>(&q_s[g][part * 8]);
                const float4 qb = *reinterpret_cast<const float4 *>(&q_s[g][part * 8 + 4]);
                float v = qa.x * kf[0] + qa.y * kf[1] + qa.z * kf[2] + qa.w * kf[3] + qb.x * kf[4] + qb.y * kf[5] +
                          qb.z * kf[6] + qb.w * kf[7];
#pragma unroll
                for (int o = LPK / 2; o >= 1; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
                if (softcap > 0) v = softcap * tanhf(v / softcap);
                sc[i][g] = valid[i] ? v : -INFINITY;
            }
        }
        // online softmax per head over the group's keys (every lane ends with the same m, l)
#pragma unroll
        for (int g = 0; g < GM; g++) {
            float mx = sc[0][g];
#pragma unroll
            for (int i = 1; i < NL; i++) mx = fmaxf(mx, sc[i][g]);
#pragma unroll
            for (int o = LPK; o < 32; o <<= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
            const float m_new = fmaxf(m[g], mx);
            const float alpha = m[g] == -INFINITY ? 0.0f : __expf(m[g] - m_new);
            float sum = 0.0f;
#pragma unroll
            for (int i = 0; i < NL; i++) {
                const float pr = m_new == -INFINITY ? 0.0f : __expf(sc[i][g] - m_new);
                sc[i][g] = pr;
                sum += pr;
            }
#pragma unroll
            for (int o = LPK; o < 32; o <<= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
            l[g] = l[g] * alpha + sum;
            m[g] = m_new;
#pragma unroll
            for (int e = 0; e < 8; e++) acc[g][e] *= alpha;
        }
#pragma unroll
        for (int i = 0; i < NL; i++) {
            float vf[8];
            unpack8<T>(vr[i], vf);
#pragma unroll
            for (int g = 0; g < GM; g++)
#pragma unroll
                for (int e = 0; e < 8; e++) acc[g][e] += sc[i][g] * vf[e];
        }
    }
    // the keys of a load were spread over 32 / LPK lane groups: sum them, then merge the warps
#pragma unroll
    for (int g = 0; g < GM; g++)
#pragma unroll
        for (int e = 0; e < 8; e++)
#pragma unroll
            for (int o = LPK; o < 32; o <<= 1) acc[g][e] += __shfl_xor_sync(0xffffffffu, acc[g][e], o);
    if (sub == 0)
#pragma unroll
        for (int g = 0; g < GM; g++)
#pragma unroll
            for (int e = 0; e < 8; e++) wacc_s[warp][g][part * 8 + e] = acc[g][e];
    if (lane == 0)
#pragma unroll
        for (int g = 0; g < GM; g++) { wm_s[warp][g] = m[g]; wl_s[warp][g] = l[g]; }
    __syncthreads();
    for (int idx = tid; idx < G * D; idx += DEC_THREADS) {
        const int g = idx / D, d = idx - g * D;
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < DEC_WARPS; w++) M = fmaxf(M, wm_s[w][g]);
        float a = 0.0f, L = 0.0f;
#pragma unroll
        for (int w = 0; w < DEC_WARPS; w++) {
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
        attn_merge_if_last<D, DEC_THREADS>(out, part_acc, part_ml, done, t, kvh, G, n_heads, n_kv, split_grid, n_split, w_s);
}

/* Keys per group of a (head_dim, loads) pair. */
static int dec_keys_per_group(int D, int nl) { return nl * (32 / (D / 8)); }

bool cuda_attention_decode(struct cuda_backend *cb, struct tensor *out, const struct tensor *q, const struct kv_layer *kv,
                           const struct attn_params *ap, const struct batch_meta *m)
{
    const struct cuda_batch *b = &cb->batch;
    const int D = ap->head_dim, G = ap->n_heads / ap->n_kv_heads;
    const enum dtype dt = kv->k.dtype;
    if (cb->att_dec_off || (dt != DTYPE_BF16 && dt != DTYPE_F16 && dt != DTYPE_F8E4M3)) return false;
    // GM * D <= 1024 keeps the block's shared memory under 48 KB
    if (!((D == 64 || D == 128) && G <= 8) && !(D == 256 && G <= 4)) return false;
    const int GM = G <= 4 ? 4 : 8;
    // fp8: twice the loads of half the size (the same bytes and registers in flight)
    const int NL = dt == DTYPE_F8E4M3 ? 8 : 4;
    const int kpg = dec_keys_per_group(D, NL);

    // Splits: enough blocks to cover the SMs about twice, each split at least att_dec_min_keys
    // keys (deterministic: the splits the longest token wants; each token takes its own share).
    const int max_len = b->max_seq_len > 0 ? b->max_seq_len : 1;
    const int split_max = cb->att_split_max < ATT_SPLIT_MAX ? cb->att_split_max : ATT_SPLIT_MAX;
    const int min_keys = cb->att_dec_min_keys > kpg ? cb->att_dec_min_keys : kpg;
    const int blocks = m->n_tok * ap->n_kv_heads;
    int n_split = 1;
    while (n_split < split_max && (cb->deterministic || blocks * n_split * 2 <= 2 * cb->n_sm) &&
           max_len / (n_split * 2) >= (cb->deterministic ? kpg : min_keys))
        n_split *= 2;
    float *part_acc = NULL, *part_ml = NULL;
    if (n_split > 1)
        cuda_attn_split_workspace(cb, m->n_tok, ap->n_heads, ap->n_kv_heads, D, n_split, &part_acc, &part_ml);

    dim3 grid(m->n_tok, ap->n_kv_heads, n_split), block(DEC_THREADS);
#define DEC_LAUNCH(DD, GG, LL) launch_pdl(cb, k_attn_decode<T, DD, GG, LL>, grid, block, (float *)dptr(out), part_acc, \
        part_ml, cb->d_attn_done, (const float *)dptr(q), (const T *)dptr(&kv->k), (const T *)dptr(&kv->v), \
        b->d_tok_pos, b->d_tok_seq, b->d_seq_block0, b->d_block_ids, m->block_size, ap->n_heads, ap->n_kv_heads, \
        ap->scale, ap->window, ap->softcap, n_split, cb->deterministic)
#define DEC_NL(DD, GG) DEC_LAUNCH(DD, GG, (sizeof(T) == 1 ? 8 : 4));
#define DEC_CASE(T_) { typedef T_ T; \
        switch (D) { \
        case 64: if (GM == 4) { DEC_NL(64, 4) } else { DEC_NL(64, 8) } break; \
        case 128: if (GM == 4) { DEC_NL(128, 4) } else { DEC_NL(128, 8) } break; \
        default: DEC_NL(256, 4) break; \
        } }
    if (dt == DTYPE_BF16) DEC_CASE(__nv_bfloat16) else if (dt == DTYPE_F16) DEC_CASE(__half) else DEC_CASE(__nv_fp8_e4m3)
#undef DEC_CASE
#undef DEC_NL
#undef DEC_LAUNCH
    LAUNCH_CHECK();
    return true;
}
