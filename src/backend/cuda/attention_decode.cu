/* attention_decode: split-K flash decoding (built for one query token per sequence; it also runs
 * every step of the precise and deterministic backends).
 *
 * Decode attention is a stream of the cache: per token and KV head it reads every visible K and V
 * row once, and the arithmetic is small. What limits it is bytes in flight and instructions per
 * key, so this kernel is laid out for loads (the generic kernel in attention.cu synchronizes its
 * block three times per 64 keys and reads V two bytes per thread; it reached a quarter of the
 * bandwidth at 8K context).
 *
 * Grid (token, KV head, split), DEC_WARPS warps per block. A key's row of head_dim values is read
 * by LPK = head_dim / 8 lanes, 8 values each, so one warp-wide load covers 32 / LPK keys. Each
 * warp walks groups of NL such loads: it issues all K and V loads of a group at once (bypassing
 * L1: 4 loads of 16 bytes for bf16/f16, 8 of 8 bytes for f8e4m3) and looks up the next group's
 * cache slots while they fly. Scores are partial dot products over a lane's 8 dims, summed over
 * the key's lanes by a transposing reduction that leaves each lane one or a few whole (key, head)
 * scores; each warp keeps its own online softmax (no block barrier in the loop) and accumulates
 * P.V into 8 dims per lane. fp8 caches widen to f16 and multiply in f16x2. The block's warps merge
 * through shared memory at the end; splits merge as in attention_split.cuh.
 */
#include "backend/cuda/attention_split.cuh"

#include <math.h>

#define DEC_WARPS   8
#define DEC_THREADS (DEC_WARPS * 32)
#define DEC_BLOCKS_PER_SM 2   // what the split count aims at

/* What one lane loads of a key row: 8 values of T, 8 or 16 bytes. */
template <int BYTES> struct lane_raw;
template <> struct lane_raw<8> { typedef uint2 type; };
template <> struct lane_raw<16> { typedef uint4 type; };

/* The DPL bf16/f16 values of a load as floats (fp8 goes through fp8_to_half2). */
template <typename T, int DPL, typename R>
__device__ __forceinline__ void unpack(const R &u, float *f)
{
    const T *h = reinterpret_cast<const T *>(&u);
#pragma unroll
    for (int i = 0; i < DPL; i++) f[i] = to_f<T>(h[i]);
}
/* One round per lane bit below 2 * O of a transposing sum over lane groups: a lane keeps the half
 * of its 2 * H values that its bit O selects, adds its partner's copy of that half (sent in
 * exchange for the other half), and recurses; written recursively so every index is a constant
 * (a loop kept v in local memory). */
template <int O, int H>
__device__ __forceinline__ void transpose_sum(float *v, int lane)
{
    if constexpr (O >= 1) {
        const bool upper = lane & O;
#pragma unroll
        for (int j = 0; j < H; j++) {
            const float send = upper ? v[j] : v[j + H], keep = upper ? v[j + H] : v[j];
            v[j] = keep + __shfl_xor_sync(0xffffffffu, send, O);
        }
        transpose_sum<O / 2, H / 2>(v, lane);
    }
}

/* Eight e4m3 values as four half2 (exact). */
struct half2x4 { __half2 h[4]; };
__device__ __forceinline__ const __half2 *fp8_to_half2(const uint2 &u, half2x4 &out)
{
    const __nv_fp8x2_storage_t *p = reinterpret_cast<const __nv_fp8x2_storage_t *>(&u);
#pragma unroll
    for (int i = 0; i < 4; i++) out.h[i] = __half2(__nv_cvt_fp8x2_to_halfraw2(p[i], __NV_E4M3));
    return out.h;
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
 * and V (4 measured faster than 8 for bf16 at 8K-32K context on H100: fewer registers, more
 * warps). Each lane holds 8 dims of a key (16 fp8 values per lane with 16-byte loads measured
 * 10-13% slower at 8K-32K on H100: 200 registers, one block per SM). */
template <typename T, int D, int GM, int NL>
__global__ void __launch_bounds__(DEC_THREADS) k_attn_decode(
    float *out, float *part_acc, float *part_ml, int32_t *done, const float *q, const T *kc, const T *vc,
    const int32_t *tok_pos, const int32_t *tok_seq, const int32_t *seq_block0, const int32_t *block_ids, int block_size,
    int n_heads, int n_kv, float scale, int window, float softcap, int split_grid, bool per_token_splits)
{
    pdl_trigger();   // the output projection's GEMV follows
    constexpr int DPL = 8;           // dims per lane
    typedef typename lane_raw<DPL * sizeof(T)>::type raw;
    constexpr int LPK = D / DPL;     // lanes per key
    constexpr int KPI = 32 / LPK;    // keys per warp-wide load
    constexpr int KPG = NL * KPI;    // keys per group
    const int t = blockIdx.x, kvh = blockIdx.y, split = blockIdx.z;
    const int G = n_heads / n_kv;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int sub = lane / LPK, part = lane % LPK;
    // Warps whose state the merge buffer holds: all, or half where GM * D > 1024 (head_dim 256 with
    // 8 heads a KV head: 64 KB for all eight), the other half folded into them first.
    constexpr int WB = GM * D > 1024 ? DEC_WARPS / 2 : DEC_WARPS;
    __shared__ __align__(16) float q_s[GM][D];
    __shared__ __align__(16) float wacc_s[WB][GM][D];
    __shared__ float wm_s[WB][GM], wl_s[WB][GM];
    __shared__ float w_s[GM][ATT_SPLIT_MAX];

    const int p = tok_pos[t], s = tok_seq[t];
    const int lo_all = attn_first_key(p, window), n_keys = p - lo_all + 1;
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
    const T *kb = kc + (size_t)kvh * D + part * DPL, *vb = vc + (size_t)kvh * D + part * DPL;

    int slot[NL];
    if (warp < n_groups) group_slots<NL, KPI, KPG>(slot, warp, lo, hi, sub, blocks, block_size);
    pdl_wait();   // q and this step's cache rows come from the kernel before
    for (int i = tid; i < GM * D; i += DEC_THREADS) {
        const int g = i / D;
        q_s[g][i % D] = g < G ? q[((size_t)t * n_heads + kvh * G) * D + i] * scale : 0.0f;
    }
    __syncthreads();

    constexpr bool FP8 = sizeof(T) == 1;
    // fp8: this lane's 8 dims of q as half2. An 8-dim partial score overflows f16 only if the
    // scaled q (q / sqrt(head_dim)) averaged over 18 against saturated keys (448); P.V partials are
    // at most 8 * 448.
    __half2 qh[GM][4];
    if constexpr (FP8)
#pragma unroll
        for (int g = 0; g < GM; g++)
#pragma unroll
            for (int e = 0; e < 4; e++) qh[g][e] = __floats2half2_rn(q_s[g][part * 8 + 2 * e], q_s[g][part * 8 + 2 * e + 1]);
    float m[GM], l[GM], acc[GM][DPL];
#pragma unroll
    for (int g = 0; g < GM; g++) {
        m[g] = -INFINITY;
        l[g] = 0.0f;
#pragma unroll
        for (int e = 0; e < DPL; e++) acc[g][e] = 0.0f;
    }
    for (int gi = warp; gi < n_groups; gi += DEC_WARPS) {
        raw kr[NL], vr[NL];
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

        // partial dot products over this lane's DPL dims
        float sc[NL][GM];
#pragma unroll
        for (int i = 0; i < NL; i++) {
            if constexpr (FP8) {   // half2 math: e4m3 widens to f16 exactly, two dims per instruction
                half2x4 kx;
                const __half2 *kh = fp8_to_half2(kr[i], kx);
#pragma unroll
                for (int g = 0; g < GM; g++) {
                    __half2 d = __hmul2(qh[g][0], kh[0]);
#pragma unroll
                    for (int e = 1; e < 4; e++) d = __hfma2(qh[g][e], kh[e], d);
                    sc[i][g] = __low2float(d) + __high2float(d);
                }
            } else {
                float kf[DPL];
                unpack<T, DPL>(kr[i], kf);
#pragma unroll
                for (int g = 0; g < GM; g++) {
                    float v = 0.0f;
#pragma unroll
                    for (int e = 0; e < DPL; e += 4) {
                        const float4 qa = *reinterpret_cast<const float4 *>(&q_s[g][part * DPL + e]);
                        v += qa.x * kf[e] + qa.y * kf[e + 1] + qa.z * kf[e + 2] + qa.w * kf[e + 3];
                    }
                    sc[i][g] = v;
                }
            }
        }
        constexpr int C = NL * GM, R = C >= LPK ? C / LPK : 1;   // (key, head) pairs per lane group; per lane
        if constexpr (C >= LPK && C % LPK == 0 && GM % R == 0) {
            // A transposing reduction leaves lane `part` with the whole scores of pairs
            // f = part * R + r (pair f = key i * GM + head g): log2(LPK) rounds of halving instead of
            // a full butterfly per pair (15 shuffles instead of 64 for 16 pairs on 16 lanes). The
            // softmax then runs on R pairs per lane (R exps instead of C), and the probabilities
            // are broadcast back for P.V.
            float v[C];
#pragma unroll
            for (int i = 0; i < NL; i++)
#pragma unroll
                for (int g = 0; g < GM; g++) v[i * GM + g] = sc[i][g];
            transpose_sum<LPK / 2, C / 2>(v, lane);
            float pr[R], sum[R], mn[R];
#pragma unroll
            for (int r = 0; r < R; r++) {
                const int f = part * R + r, fi = f / GM, fg = f % GM;
                bool ok = false;
                float m_old = m[0];
#pragma unroll
                for (int i = 0; i < NL; i++)
                    if (i == fi) ok = valid[i];
#pragma unroll
                for (int g = 1; g < GM; g++)
                    if (g == fg) m_old = m[g];
                float sv = v[r];
                if (softcap > 0) sv = softcap * tanhf(sv / softcap);
                sv = ok ? sv : -INFINITY;
                // over the group's keys of this pair's head: the lanes that differ in key bits
                // (part / (GM / R)), then in sub
                float mx = sv;
#pragma unroll
                for (int o = GM / R; o < 32; o <<= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
                mn[r] = fmaxf(m_old, mx);
                pr[r] = mn[r] == -INFINITY ? 0.0f : __expf(sv - mn[r]);
                sum[r] = pr[r];
#pragma unroll
                for (int o = GM / R; o < 32; o <<= 1) sum[r] += __shfl_xor_sync(0xffffffffu, sum[r], o);
            }
#pragma unroll
            for (int g = 0; g < GM; g++) {   // lane g / R holds head g's new max and sum as pair g % R
                const float mg = __shfl_sync(0xffffffffu, mn[g % R], g / R);
                const float sg = __shfl_sync(0xffffffffu, sum[g % R], g / R);
                const float alpha = m[g] == -INFINITY ? 0.0f : __expf(m[g] - mg);
                l[g] = l[g] * alpha + sg;
                m[g] = mg;
#pragma unroll
                for (int e = 0; e < DPL; e++) acc[g][e] *= alpha;
            }
#pragma unroll
            for (int i = 0; i < NL; i++)
#pragma unroll
                for (int g = 0; g < GM; g++) {
                    const int f = i * GM + g;
                    sc[i][g] = __shfl_sync(0xffffffffu, pr[f % R], sub * LPK + f / R);
                }
        } else {
#pragma unroll
            for (int i = 0; i < NL; i++)
#pragma unroll
                for (int g = 0; g < GM; g++) {
                    float v = sc[i][g];
#pragma unroll
                    for (int o = LPK / 2; o >= 1; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
                    if (softcap > 0) v = softcap * tanhf(v / softcap);
                    sc[i][g] = valid[i] ? v : -INFINITY;
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
                for (int e = 0; e < DPL; e++) acc[g][e] *= alpha;
            }
        }
        if constexpr (FP8) {   // the group's P.V in half2 (NL terms), then into the f32 accumulators
            __half2 pv[GM][4];
#pragma unroll
            for (int i = 0; i < NL; i++) {
                half2x4 vx;
                const __half2 *vh = fp8_to_half2(vr[i], vx);
#pragma unroll
                for (int g = 0; g < GM; g++) {
                    const __half2 p2 = __float2half2_rn(sc[i][g]);
#pragma unroll
                    for (int e = 0; e < 4; e++) pv[g][e] = i == 0 ? __hmul2(p2, vh[e]) : __hfma2(p2, vh[e], pv[g][e]);
                }
            }
#pragma unroll
            for (int g = 0; g < GM; g++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    acc[g][2 * e] += __low2float(pv[g][e]);
                    acc[g][2 * e + 1] += __high2float(pv[g][e]);
                }
        } else {
#pragma unroll
            for (int i = 0; i < NL; i++) {
                float vf[DPL];
                unpack<T, DPL>(vr[i], vf);
#pragma unroll
                for (int g = 0; g < GM; g++)
#pragma unroll
                    for (int e = 0; e < DPL; e++) acc[g][e] += sc[i][g] * vf[e];
            }
        }
    }
    // the keys of a load were spread over 32 / LPK lane groups: sum them, then merge the warps
#pragma unroll
    for (int g = 0; g < GM; g++)
#pragma unroll
        for (int e = 0; e < DPL; e++)
#pragma unroll
            for (int o = LPK; o < 32; o <<= 1) acc[g][e] += __shfl_xor_sync(0xffffffffu, acc[g][e], o);
    if constexpr (WB < DEC_WARPS) {   // warp w + WB's state into warp w's registers
        const int w = warp - WB;
        if (w >= 0 && sub == 0)
#pragma unroll
            for (int g = 0; g < GM; g++)
#pragma unroll
                for (int e = 0; e < DPL; e++) wacc_s[w][g][part * DPL + e] = acc[g][e];
        if (w >= 0 && lane == 0)
#pragma unroll
            for (int g = 0; g < GM; g++) { wm_s[w][g] = m[g]; wl_s[w][g] = l[g]; }
        __syncthreads();
        if (w < 0)
#pragma unroll
            for (int g = 0; g < GM; g++) {
                const float m2 = wm_s[warp][g], mx = fmaxf(m[g], m2);
                const float f1 = m[g] == -INFINITY ? 0.0f : __expf(m[g] - mx);
                const float f2 = m2 == -INFINITY ? 0.0f : __expf(m2 - mx);
                l[g] = l[g] * f1 + wl_s[warp][g] * f2;
                m[g] = mx;
#pragma unroll
                for (int e = 0; e < DPL; e++) acc[g][e] = acc[g][e] * f1 + wacc_s[warp][g][part * DPL + e] * f2;
            }
        __syncthreads();
    }
    if (warp < WB && sub == 0)
#pragma unroll
        for (int g = 0; g < GM; g++)
#pragma unroll
            for (int e = 0; e < DPL; e++) wacc_s[warp][g][part * DPL + e] = acc[g][e];
    if (warp < WB && lane == 0)
#pragma unroll
        for (int g = 0; g < GM; g++) { wm_s[warp][g] = m[g]; wl_s[warp][g] = l[g]; }
    attn_warps_finish<D, WB, GM, DEC_THREADS>(out, part_acc, part_ml, done, wacc_s, wm_s, wl_s, w_s, t, kvh, G, n_heads,
                                              n_kv, split, split_grid, n_split);
}

/* Loads per lane per group (NL) for a cache element size: the same bytes in flight for both. */
static constexpr int dec_loads(size_t elem_bytes) { return elem_bytes == 1 ? 8 : 4; }

/* What every launch of the decode kernel takes beside the shape. */
struct dec_args {
    float *out, *part_acc, *part_ml;
    const float *q;
    const void *kc, *vc;
    int n_split;
};

/* The launch of one cache type T, head_dim D and GM: 4 16-byte loads per group (8 bf16/f16 values
 * each), or 8 8-byte loads for fp8 (the same bytes in flight). */
template <typename T, int D, int GM, int NL>
static void dec_launch(struct cuda_backend *cb, const dec_args &a, const struct attn_params *ap, const struct batch_meta *m)
{
    const struct cuda_batch *b = &cb->batch;
    launch_pdl(cb, k_attn_decode<T, D, GM, NL>, dim3(m->n_tok, ap->n_kv_heads, a.n_split), dim3(DEC_THREADS), a.out,
               a.part_acc, a.part_ml, cb->d_attn_done, a.q, (const T *)a.kc, (const T *)a.vc, b->d_tok_pos, b->d_tok_seq,
               b->d_seq_block0, b->d_block_ids, m->block_size, ap->n_heads, ap->n_kv_heads, ap->scale, ap->window,
               ap->softcap, a.n_split, cb->deterministic);
}

template <typename T, int D, int GM>
static void dec_dispatch(struct cuda_backend *cb, const dec_args &a, const struct attn_params *ap, const struct batch_meta *m)
{
    dec_launch<T, D, GM, dec_loads(sizeof(T))>(cb, a, ap, m);
}

template <typename T>
static void dec_dispatch_shape(struct cuda_backend *cb, const dec_args &a, const struct attn_params *ap,
                               const struct batch_meta *m, int GM)
{
    switch (ap->head_dim) {
    case 64: if (GM == 4) dec_dispatch<T, 64, 4>(cb, a, ap, m); else dec_dispatch<T, 64, 8>(cb, a, ap, m); break;
    case 128: if (GM == 4) dec_dispatch<T, 128, 4>(cb, a, ap, m); else dec_dispatch<T, 128, 8>(cb, a, ap, m); break;
    default: if (GM == 4) dec_dispatch<T, 256, 4>(cb, a, ap, m); else dec_dispatch<T, 256, 8>(cb, a, ap, m); break;
    }
}

void cuda_attention_decode(struct cuda_backend *cb, struct tensor *out, const struct tensor *q, const struct kv_layer *kv,
                           const struct attn_params *ap, const struct batch_meta *m)
{
    const struct cuda_batch *b = &cb->batch;
    const int D = ap->head_dim, G = ap->n_heads / ap->n_kv_heads;
    const enum dtype dt = kv->k.dtype;
    CHECK((dt == DTYPE_BF16 || dt == DTYPE_F16 || dt == DTYPE_F8E4M3) && (D == 64 || D == 128 || D == 256) && G <= 8 &&
          !(dt == DTYPE_F8E4M3 && D == 256 && G > 4),
          "cuda decode attention: %s, head_dim %d, %d heads per KV head",
          dtype_name(dt), D, G);
    const int GM = G <= 4 ? 4 : 8;
    const int kpg = dec_loads(dtype_size(dt)) * (32 / (D / 8));   // keys per group, as the kernel's KPG

    // Splits: about DEC_BLOCKS_PER_SM blocks per SM, each split at least ATT_SPLIT_MIN_KEYS keys
    // (deterministic: the splits the longest token wants; each token takes its own share).
    const int max_len = b->max_seq_len > 0 ? b->max_seq_len : 1;
    const int min_keys = ATT_SPLIT_MIN_KEYS > kpg ? ATT_SPLIT_MIN_KEYS : kpg;
    const int blocks = m->n_tok * ap->n_kv_heads;
    int n_split = 1;
    while (n_split < ATT_SPLITS && (cb->deterministic || blocks * n_split * 2 <= DEC_BLOCKS_PER_SM * cb->n_sm) &&
           max_len / (n_split * 2) >= (cb->deterministic ? kpg : min_keys))
        n_split *= 2;
    dec_args a = { (float *)dptr(out), NULL, NULL, (const float *)dptr(q), dptr(&kv->k), dptr(&kv->v), n_split };
    if (n_split > 1)
        cuda_attn_split_workspace(cb, m->n_tok, ap->n_heads, ap->n_kv_heads, D, n_split, &a.part_acc, &a.part_ml);
    if (dt == DTYPE_BF16) dec_dispatch_shape<__nv_bfloat16>(cb, a, ap, m, GM);
    else if (dt == DTYPE_F16) dec_dispatch_shape<__half>(cb, a, ap, m, GM);
    else dec_dispatch_shape<__nv_fp8_e4m3>(cb, a, ap, m, GM);
    LAUNCH_CHECK();
}
