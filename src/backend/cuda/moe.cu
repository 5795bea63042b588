/* moe: mixture-of-experts routing and expert FFNs on the GPU.
 *
 * Routing is one warp per token: softmax over the experts, top-k by repeated warp arg-max (ties to
 * the lower index), optional renormalization. For up to cb->moe_device_n tokens (64: decode
 * batches, short prefill chunks) the expert FFN runs without
 * any host round trip: GEMV kernels read each (token, choice)'s expert id from device memory and
 * index a device table of expert weight pointers, so a decode step's MoE block is three launches
 * per layer whatever experts are picked: k_moe_norm_route (the FFN's RMSNorm, the router GEMV and,
 * in the block that finishes last, the top-k), k_moe_gate_up_glu (gate + up with the GLU) and
 * k_moe_down_combine (down, the weighted combine and the residual add). They are chained as
 * programmatic dependents (cuda_common.cuh): each waits for the one before, then lets the next
 * one launch, so the down kernel, whose expert ids are known two launches back, streams its first
 * weights while gate + up drains. From MOE_GROUP_MIN_N tokens (and always in cuda-deterministic)
 * the slots are grouped by expert on the device first and each picked expert's weights stream
 * once for all its slots (k_moe_group, k_moe_gate_up_grouped, k_moe_down_grouped, the combine).
 * For many tokens (prefill) with bf16/f16 weights (not cuda-precise) all experts run together:
 * the slots are sorted by expert on the device (count, plan, place), x is converted once to the
 * weights' dtype, a grouped tensor-core GEMM (moe_gemm.cuh) runs gate and up with the GLU in its
 * epilogue and one runs down, over a device-made list of (expert, 128 rows) items, and the combine
 * reads the outputs where the sort put them: eight launches a layer whatever the experts, no host
 * round trip. Otherwise the ids come back to the host, tokens are grouped per expert there, and
 * each expert runs through cuBLAS once on its gathered rows.
 *
 * MLX-quantized experts (DTYPE_QMLX) take the same two paths: on the device, gate + up + GLU in
 * one launch (k_moe_qgate_up, qmatmul.cu), down (k_moe_qgemv) and the combine, over a device table
 * of the experts' packed words, scales and biases; on the host path each expert's
 * matmuls choose their kernels as any quantized matmul (matmul.cu).
 *
 * cuda-deterministic runs every token through the device kernels (slices of moe_device_n; 16-bit
 * experts: the grouped ones at every size), whose per-slot sums do not depend on the other slots,
 * so a token's routing and expert outputs do not depend on the batch.
 */
#include "backend/cuda/cuda_common.cuh"
#include "backend/cuda/mma.cuh"
#include "backend/cuda/moe_gemm.cuh"

#include <math.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "base/mem.h"
}

#define MOE_SMALL_N 64   // most tokens the device path may take (cb->moe_device_n: how many it does)
#define MOE_WARPS   8
#define MOE_E_MAX   512   // most experts the fused router ranks (its shared arrays)
#define MOE_U       8     // 16-byte loads in flight per lane and weight row
#define MOE_K_MAX   8     // most experts per token of the fused down + combine kernel

/* A 16-byte load of expert weights that bypasses L1 and asks L2 for 256-byte sectors (matmul.cu's
 * ld_weight16: weights are read once a step; L1 stays free for the activations). */
__device__ __forceinline__ uint4 ld_expert16(const void *p)
{
    uint4 r;
    asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
    return r;
}

/* sum_i w[i] * x[i] over eight bf16/f16 weights in a 16-byte vector and eight floats at x. */
template <typename T>
__device__ __forceinline__ float dot8(const uint4 &u, const float4 a, const float4 b)
{
    const T *h = reinterpret_cast<const T *>(&u);
    return to_f<T>(h[0]) * a.x + to_f<T>(h[1]) * a.y + to_f<T>(h[2]) * a.z + to_f<T>(h[3]) * a.w +
           to_f<T>(h[4]) * b.x + to_f<T>(h[5]) * b.y + to_f<T>(h[6]) * b.z + to_f<T>(h[7]) * b.w;
}

/* Max and sum of exp(x - max) over a row of E router logits, by one warp (lane-strided, then warp
 * trees): both routing kernels use it, so they pick and weigh experts identically. */
__device__ __forceinline__ void softmax_stats(const float *row, int E, int lane, float &mx, float &sum)
{
    mx = -INFINITY;
    for (int e = lane; e < E; e += 32) mx = fmaxf(mx, row[e]);
    mx = warp_max(mx);
    sum = 0.0f;
    for (int e = lane; e < E; e += 32) sum += __expf(row[e] - mx);
    sum = warp_sum(sum);
}

__global__ void k_moe_route(int32_t *ids, float *weights, const float *logits, int E, int k, bool norm)
{
    int t = blockIdx.x, lane = threadIdx.x;
    const float *row = logits + (size_t)t * E;
    float mx, sum;
    softmax_stats(row, E, lane, mx, sum);
    float picked_sum = 0;
    int prev_e = -1;
    float prev_v = INFINITY;
    for (int j = 0; j < k; j++) {
        // next best strictly after (prev_v, prev_e) in (value desc, index asc) order
        float best = -INFINITY;
        int bi = 0x7fffffff;
        for (int e = lane; e < E; e += 32) {
            float v = row[e];
            bool after = v < prev_v || (v == prev_v && e > prev_e);
            if (after && (v > best || (v == best && e < bi))) { best = v; bi = e; }
        }
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, best, o);
            int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (ov > best || (ov == best && oi < bi)) { best = ov; bi = oi; }
        }
        float p = __expf(best - mx) / sum;
        if (lane == 0) { ids[t * k + j] = bi; weights[t * k + j] = p; }
        picked_sum += p;
        prev_v = best;
        prev_e = bi;
    }
    __syncwarp();
    if (norm && lane < k) weights[t * k + lane] /= picked_sum;
}

void cuda_moe_route(struct backend *be, struct tensor *ids, struct tensor *weights, const struct tensor *logits, int k,
                    bool norm_topk)
{
    struct cuda_backend *cb = cuda_of(be);
    CHECK(k <= 32, "cuda moe: top-%d not supported", k);
    int n = (int)tensor_rows(logits), E = (int)logits->ne[0];
    k_moe_route<<<n, 32, 0, cb->stream>>>((int32_t *)dptr(ids), (float *)dptr(weights), (const float *)dptr(logits), E, k,
                                          norm_topk);
    LAUNCH_CHECK();
}

/* RMSNorm, router GEMV and top-k of one token in one launch (decode). Block b of token t computes
 * logits [b * MOE_WARPS, (b + 1) * MOE_WARPS), a warp per router row, on x normalized on the fly:
 * every block recomputes the row's rms from x (8 KB from L2) in a fixed order, and block 0 also
 * writes xn for the expert kernels (the same products the logits used). Each block counts itself
 * done in done[t]; the last one ranks the token's logits and writes ids and weights with
 * k_moe_route's arithmetic, then resets done[t] for the next launch. Whichever block is last, the
 * result is the same: nothing depends on the order in which blocks finish or on the batch.
 * Launched as a programmatic dependent: the router weights are loaded before waiting for x. */
template <typename T>
__global__ void __launch_bounds__(MOE_WARPS * 32) k_moe_norm_route(float *xn, float *logits, int32_t *ids, float *weights,
                                                                   int32_t *done, const float *x, const T *norm_w,
                                                                   const T *w_router, int d, int E, int k, float eps,
                                                                   float w_offset, bool norm_topk)
{
    const int t = blockIdx.y, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int row = blockIdx.x * MOE_WARPS + warp;
    const bool valid = row < E;
    const int n_vec = d / 8;
    const uint4 *wr = reinterpret_cast<const uint4 *>(w_router + (size_t)(valid ? row : 0) * d);
    const uint4 *nw = reinterpret_cast<const uint4 *>(norm_w);
    uint4 u[MOE_U], g[MOE_U];
#pragma unroll
    for (int j = 0; j < MOE_U; j++) {
        const int vi = j * 32 + lane;
        u[j] = valid && vi < n_vec ? ld_expert16(wr + vi) : make_uint4(0, 0, 0, 0);
        g[j] = vi < n_vec ? __ldg(nw + vi) : make_uint4(0, 0, 0, 0);
    }
    pdl_wait();      // x comes from the kernel before (ordinary loads below, never __ldg)
    pdl_trigger();   // the expert kernel may take the SMs as this one drains

    __shared__ float red[MOE_WARPS];
    __shared__ float s_inv;
    __shared__ int s_last;
    const float *xr = x + (size_t)t * d;
    const float4 *x4 = reinterpret_cast<const float4 *>(xr);
    float ss = 0;
    for (int i = threadIdx.x; i < d / 4; i += MOE_WARPS * 32) {
        const float4 a = x4[i];
        ss += a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w;
    }
    ss = warp_sum(ss);
    if (lane == 0) red[warp] = ss;
    __syncthreads();
    if (threadIdx.x == 0) {
        float tot = 0;
        for (int w = 0; w < MOE_WARPS; w++) tot += red[w];
        s_inv = rsqrtf(tot / (float)d + eps);
    }
    __syncthreads();
    const float inv = s_inv;
    if (blockIdx.x == 0)
        for (int i = threadIdx.x; i < d; i += MOE_WARPS * 32)
            xn[(size_t)t * d + i] = xr[i] * inv * (to_f<T>(norm_w[i]) + w_offset);

    float acc = 0;
    for (int base = 0; base < n_vec; base += 32 * MOE_U) {
        if (base > 0)
#pragma unroll
            for (int j = 0; j < MOE_U; j++) {
                const int vi = base + j * 32 + lane;
                u[j] = valid && vi < n_vec ? ld_expert16(wr + vi) : make_uint4(0, 0, 0, 0);
                g[j] = vi < n_vec ? __ldg(nw + vi) : make_uint4(0, 0, 0, 0);
            }
#pragma unroll
        for (int j = 0; j < MOE_U; j++) {
            const int vi = base + j * 32 + lane;
            if (vi >= n_vec) break;
            const T *gn = reinterpret_cast<const T *>(&g[j]);
            const float4 a = x4[2 * vi], b = x4[2 * vi + 1];
            const float4 na = make_float4(a.x * inv * (to_f<T>(gn[0]) + w_offset), a.y * inv * (to_f<T>(gn[1]) + w_offset),
                                          a.z * inv * (to_f<T>(gn[2]) + w_offset), a.w * inv * (to_f<T>(gn[3]) + w_offset));
            const float4 nb = make_float4(b.x * inv * (to_f<T>(gn[4]) + w_offset), b.y * inv * (to_f<T>(gn[5]) + w_offset),
                                          b.z * inv * (to_f<T>(gn[6]) + w_offset), b.w * inv * (to_f<T>(gn[7]) + w_offset));
            acc += dot8<T>(u[j], na, nb);
        }
    }
    acc = warp_sum(acc);
    if (valid && lane == 0) logits[(size_t)t * E + row] = acc;

    // The last block of the token to finish routes it (the grid-sync pattern: the block's writes,
    // then one thread's fence and count).
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        s_last = atomicAdd(&done[t], 1) == (int)gridDim.x - 1;
    }
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    __shared__ float s_lg[MOE_E_MAX], s_key[MOE_E_MAX];
    __shared__ int s_id[32];
    const float *lg = logits + (size_t)t * E;
    for (int e = threadIdx.x; e < E; e += MOE_WARPS * 32) {
        const float v = __ldcg(lg + e);   // from L2: other blocks wrote them
        s_lg[e] = v;
        s_key[e] = v != v ? -INFINITY : v;   // NaN ranks as -inf
    }
    if (threadIdx.x == 0) done[t] = 0;
    __syncthreads();
    // rank of each logit in (value desc, index asc) order
    for (int e = threadIdx.x; e < E; e += MOE_WARPS * 32) {
        const float v = s_key[e];
        int r = 0;
        for (int o = 0; o < E; o++) {
            const float w = s_key[o];
            r += w > v || (w == v && o < e);
        }
        if (r < k) s_id[r] = e;
    }
    __syncthreads();
    if (warp != 0) return;
    float mx, sum;   // softmax over all experts, as k_moe_route
    softmax_stats(s_lg, E, lane, mx, sum);
    const int e = lane < k ? s_id[lane] : 0;
    const float p = lane < k ? __expf(s_lg[e] - mx) / sum : 0.0f;
    float picked_sum = 0;
    for (int j = 0; j < k; j++) picked_sum += __shfl_sync(0xffffffffu, p, j);
    if (lane < k) {
        ids[t * k + lane] = e;
        weights[t * k + lane] = norm_topk ? p / picked_sum : p;
    }
}

/* Per-token done counters of k_moe_norm_route (zeroed once; each launch leaves them zero). */
static int32_t *moe_done(struct cuda_backend *cb)
{
    if (!cb->d_moe_done) {
        cb->d_moe_done = (int32_t *)cuda_mem_alloc_or_die(cb, sizeof(int32_t) * MOE_SMALL_N);
        CUDA_CHECK(cudaMemsetAsync(cb->d_moe_done, 0, sizeof(int32_t) * MOE_SMALL_N, cb->stream));
    }
    return cb->d_moe_done;
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

void cuda_norm_moe_route(struct backend *be, struct tensor *ids, struct tensor *weights, struct tensor *logits,
                         struct tensor *xn, const struct tensor *x, const struct tensor *norm_w, float eps, float w_offset,
                         const struct tensor *router, int k, bool norm_topk)
{
    struct cuda_backend *cb = cuda_of(be);
    int n = (int)tensor_rows(x), d = (int)x->ne[0], E = (int)router->ne[1];
    CHECK(router->ne[0] == d && norm_w->ne[0] == d && logits->ne[0] == E && ids->ne[0] == k,
          "cuda norm_moe_route: shapes");
    // The shape decides, never n alone in deterministic mode: a token routes the same in any batch.
    bool fuse = (n <= cb->moe_device_n || cb->deterministic) && router->dtype != DTYPE_F32 && router->dtype == norm_w->dtype &&
                d % 8 == 0 && E <= MOE_E_MAX && k <= 32 && k <= E && tensor_is_contiguous(x) && tensor_is_contiguous(xn) &&
                tensor_is_contiguous(logits) && aligned16(dptr(x)) && aligned16(dptr(router)) && aligned16(dptr(norm_w));
    if (!fuse) {
        cuda_rmsnorm(be, xn, x, norm_w, eps, w_offset);
        cuda_matmul(be, logits, xn, router, NULL);
        cuda_moe_route(be, ids, weights, logits, k, norm_topk);
        return;
    }
    int32_t *done = moe_done(cb);
    for (int r0 = 0; r0 < n; r0 += cb->moe_device_n) {
        int nr = n - r0 < cb->moe_device_n ? n - r0 : cb->moe_device_n;
        dim3 grid((E + MOE_WARPS - 1) / MOE_WARPS, nr), blk(MOE_WARPS * 32);
        DISPATCH_FLOAT(router->dtype, T,
            launch_pdl(cb, k_moe_norm_route<T>, grid, blk, (float *)dptr(xn) + (size_t)r0 * d,
                       (float *)dptr(logits) + (size_t)r0 * E, (int32_t *)dptr(ids) + (size_t)r0 * k,
                       (float *)dptr(weights) + (size_t)r0 * k, done, (const float *)dptr(x) + (size_t)r0 * d,
                       (const T *)dptr(norm_w), (const T *)dptr(router), d, E, k, eps, w_offset, norm_topk));
    }
    LAUNCH_CHECK();
}

/* The device table of expert weight pointers for one layer, made once. A layer is found by its
 * host array of gate tensors and every pointer is checked, so a reused array never hits a stale
 * table (cheap: 3 * n_experts compares per call). */
/* The quantized experts' descriptors into t (host and device copies). */
static void table_set_q(struct cuda_backend *cb, struct moe_table *t, struct qmat *hq, int E)
{
    free(t->h_q);
    t->h_q = hq;
    if (!hq) return;
    if (!t->d_q) t->d_q = (struct qmat *)cuda_mem_alloc_or_die(cb, sizeof(struct qmat) * 3 * (size_t)E);
    CUDA_CHECK(cudaMemcpyAsync(t->d_q, hq, sizeof(struct qmat) * 3 * (size_t)E, cudaMemcpyHostToDevice, cb->stream));
    cuda_stream_wait(cb);
}

static struct moe_table *table_for(struct cuda_backend *cb, const struct tensor *gate, const struct tensor *up,
                                   const struct tensor *down, int E)
{
    const void **h = (const void **)xmalloc(sizeof(void *) * 3 * (size_t)E);
    struct qmat *hq = NULL;   // quantized projections' descriptors (float ones stay zero)
    if (gate[0].dtype == DTYPE_QMLX || up[0].dtype == DTYPE_QMLX || down[0].dtype == DTYPE_QMLX) {
        hq = (struct qmat *)xcalloc(3 * (size_t)E, sizeof *hq);
        const struct tensor *proj[3] = { gate, up, down };
        for (int p = 0; p < 3; p++)
            for (int e = 0; e < E; e++)
                if (proj[p][e].buf && proj[p][e].dtype == DTYPE_QMLX) hq[p * E + e] = cuda_qmat_of(&proj[p][e]);
    }
    for (int e = 0; e < E; e++) {
        if (!gate[e].buf) {   // absent: another rank's expert (expert parallel); the kernels skip NULL
            h[e] = h[E + e] = h[2 * E + e] = NULL;
            continue;
        }
        CHECK(gate[e].buf->kind == BUF_DEVICE && up[e].buf->kind == BUF_DEVICE && down[e].buf->kind == BUF_DEVICE,
              "cuda moe: expert %d weights are not on the device", e);
        h[e] = dptr(&gate[e]);
        h[E + e] = dptr(&up[e]);
        h[2 * E + e] = dptr(&down[e]);
    }
    for (int i = 0; i < cb->n_moe_tables; i++) {
        struct moe_table *t = &cb->moe_tables[i];
        if (t->key != gate || t->n_experts != E) continue;
        if (!memcmp(t->h_ptrs, h, sizeof(void *) * 3 * (size_t)E) && !hq == !t->h_q &&
            (!hq || !memcmp(t->h_q, hq, sizeof *hq * 3 * (size_t)E))) {
            free(h);
            free(hq);
            return t;
        }
        table_set_q(cb, t, hq, E);
        CUDA_CHECK(cudaMemcpyAsync((void *)t->d_gate, h, sizeof(void *) * 3 * (size_t)E, cudaMemcpyHostToDevice, cb->stream));
        cuda_stream_wait(cb);   // h is freed below
        free(t->h_ptrs);
        t->h_ptrs = h;
        t->aligned16 = true;
        for (int i = 0; i < 3 * E; i++) t->aligned16 = t->aligned16 && ((uintptr_t)h[i] & 15) == 0;
        return t;
    }
    if (cb->n_moe_tables == cb->cap_moe_tables) {
        cb->cap_moe_tables = cb->cap_moe_tables ? cb->cap_moe_tables * 2 : 64;
        cb->moe_tables = (struct moe_table *)xrealloc(cb->moe_tables, sizeof(struct moe_table) * (size_t)cb->cap_moe_tables);
    }
    struct moe_table *t = &cb->moe_tables[cb->n_moe_tables++];
    t->key = gate;
    t->n_experts = E;
    t->h_ptrs = h;
    void *d = cuda_mem_alloc_or_die(cb, sizeof(void *) * 3 * (size_t)E);
    CUDA_CHECK(cudaMemcpy(d, h, sizeof(void *) * 3 * (size_t)E, cudaMemcpyHostToDevice));
    t->d_gate = (const void **)d;
    t->d_up = t->d_gate + E;
    t->d_down = t->d_gate + 2 * E;
    t->d_q = t->h_q = NULL;
    table_set_q(cb, t, hq, E);
    t->aligned16 = true;
    for (int i = 0; i < 3 * E; i++) t->aligned16 = t->aligned16 && ((uintptr_t)h[i] & 15) == 0;
    return t;
}

/* out[slot, row] = W_{ids[slot]}[row, :] . x[slot / x_div, :]; slot = token * k + choice.
 * x_div = k when every choice reads its token's row, 1 when each slot has its own input row. */
template <typename T>
__global__ void __launch_bounds__(MOE_WARPS * 32) k_moe_gemv(float *out, const float *x, const void *const *w_tab,
                                                             const int32_t *ids, int m, int kdim, int x_div)
{
    int slot = blockIdx.y;
    int row = blockIdx.x * MOE_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= m) return;
    const void *w_e = w_tab[ids[slot]];
    if (!w_e) {   // an absent expert (expert parallel: another rank's) adds nothing
        if (lane == 0) out[(size_t)slot * m + row] = 0.0f;
        return;
    }
    const T *w = (const T *)w_e + (size_t)row * kdim;
    const float *xr = x + (size_t)(slot / x_div) * kdim;
    float acc = 0;
    for (int i = lane * 2; i < kdim; i += 64) {
        if (i + 1 < kdim) acc += to_f<T>(w[i]) * xr[i] + to_f<T>(w[i + 1]) * xr[i + 1];
        else acc += to_f<T>(w[i]) * xr[i];
    }
    acc = warp_sum(acc);
    if (lane == 0) out[(size_t)slot * m + row] = acc;
}

/* Gate and up of each (token, choice) slot with 16-byte loads (k % 8 == 0, 16-byte aligned
 * experts): one warp streams both rows of its expert and writes act(gate) * up, so the GLU costs no
 * launch. A programmatic dependent of the router: it waits for the expert ids and x, then lets the
 * down kernel launch. */
template <typename T>
__global__ void __launch_bounds__(MOE_WARPS * 32) k_moe_gate_up_glu(float *out, const float *x, const void *const *tab_g,
                                                                    const void *const *tab_u, const int32_t *ids, int m,
                                                                    int kdim, int x_div, int act)
{
    pdl_wait();      // ids and x come from the kernel before (ordinary loads, never __ldg)
    pdl_trigger();   // every block has waited: the down kernel may start (it reads the ids too)
    const int slot = blockIdx.y, row = blockIdx.x * MOE_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= m) return;
    const int e = ids[slot];
    if (!tab_g[e]) {   // absent expert: act(0) * 0
        if (lane == 0) out[(size_t)slot * m + row] = 0.0f;
        return;
    }
    const uint4 *wg = reinterpret_cast<const uint4 *>((const T *)tab_g[e] + (size_t)row * kdim);
    const uint4 *wu = reinterpret_cast<const uint4 *>((const T *)tab_u[e] + (size_t)row * kdim);
    const float4 *xr = reinterpret_cast<const float4 *>(x + (size_t)(slot / x_div) * kdim);
    const int n_vec = kdim / 8;
    float ag = 0, au = 0;
    for (int base = 0; base < n_vec; base += 32 * MOE_U) {
        uint4 g[MOE_U], u[MOE_U];
#pragma unroll
        for (int j = 0; j < MOE_U; j++) {
            const bool in = base + j * 32 + lane < n_vec;
            g[j] = in ? ld_expert16(wg + base + j * 32 + lane) : make_uint4(0, 0, 0, 0);
            u[j] = in ? ld_expert16(wu + base + j * 32 + lane) : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int j = 0; j < MOE_U; j++) {
            const int vi = base + j * 32 + lane;
            if (vi >= n_vec) break;
            const float4 a = xr[2 * vi], b = xr[2 * vi + 1];
            ag += dot8<T>(g[j], a, b);
            au += dot8<T>(u[j], a, b);
        }
    }
    ag = warp_sum(ag);
    au = warp_sum(au);
    if (lane == 0) out[(size_t)slot * m + row] = glu_act(ag, act) * au;
}

/* Down projection and the weighted combine in one pass (decode): out[t, row] (+)= sum over choices
 * j (in j order, as k_moe_combine) of weights[t, j] * W_down_{ids[t, j]}[row, :] . h[t * k + j, :];
 * with accumulate, out + that sum (the residual add, as k_add would do it). A block owns
 * R = MOE_DOWN_ROWS consecutive rows of token t; warp j streams them from expert ids[t, j], one
 * contiguous run of rows * f weights, and reuses each lane's slice of h[t * k + j] for all of them.
 * Each row's dot product is summed as a warp per row would (lane-strided 16-byte chunks in
 * ascending order, then the warp tree); the block adds the k products in j order. A programmatic
 * dependent of the gate + up kernel, which let it launch only after its own wait for the router:
 * the ids are final at entry, so the first weights are loaded before waiting for h. */
#define MOE_DOWN_ROWS 8   // output rows per block (measured on H100, 30B-A3B shape: 8 > 4 > 2)
#define MOE_DOWN_V    3   // 16-byte loads per lane and row in one pass (f = 768 in one pass)
template <typename T, int R>
__device__ __forceinline__ void down_load(uint4 (&u)[R][MOE_DOWN_V], const uint4 *w, int n_vec, int n_rows, int base,
                                          int lane)
{
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int c = 0; c < MOE_DOWN_V; c++) {
            const int vi = base + c * 32 + lane;
            u[r][c] = r < n_rows && vi < n_vec ? ld_expert16(w + (size_t)r * n_vec + vi) : make_uint4(0, 0, 0, 0);
        }
}

template <typename T, int R = MOE_DOWN_ROWS>
__global__ void __launch_bounds__(MOE_K_MAX * 32) k_moe_down_combine(float *out, const float *h, const void *const *tab,
                                                                     const int32_t *ids, const float *weights, int d,
                                                                     int f, int k, bool accumulate)
{
    const int t = blockIdx.y, j = threadIdx.x >> 5, lane = threadIdx.x & 31;   // warp j: choice j of token t
    const int row0 = blockIdx.x * R, n_rows = min(R, d - row0), n_vec = f / 8;
    __shared__ float s_dot[MOE_K_MAX][R];
    const void *w_e = tab[ids[t * k + j]];
    const int n_load = w_e ? n_rows : 0;   // an absent expert loads nothing: its products are 0
    const uint4 *w = reinterpret_cast<const uint4 *>(w_e ? (const T *)w_e + (size_t)row0 * f : nullptr);
    const float4 *hr = reinterpret_cast<const float4 *>(h + ((size_t)t * k + j) * f);
    uint4 u[R][MOE_DOWN_V];
    down_load<T, R>(u, w, n_vec, n_load, 0, lane);
    pdl_wait();      // h comes from the kernel before
    pdl_trigger();
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++) acc[r] = 0.0f;
    for (int base = 0; base < n_vec; base += 32 * MOE_DOWN_V) {
        if (base > 0) down_load<T, R>(u, w, n_vec, n_load, base, lane);
#pragma unroll
        for (int c = 0; c < MOE_DOWN_V; c++) {
            const int vi = base + c * 32 + lane;
            if (vi >= n_vec) break;
            const float4 a = hr[2 * vi], b = hr[2 * vi + 1];
#pragma unroll
            for (int r = 0; r < R; r++) acc[r] += dot8<T>(u[r][c], a, b);
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++) {
        const float v = warp_sum(acc[r]);
        if (lane == 0) s_dot[j][r] = v;
    }
    __syncthreads();
    if (threadIdx.x >= n_rows) return;
    float s = 0;
    for (int c = 0; c < k; c++) s += weights[t * k + c] * s_dot[c][threadIdx.x];
    float *o = out + (size_t)t * d + row0 + threadIdx.x;
    *o = accumulate ? *o + s : s;
}

/* ---- the device path with slots grouped by expert (MOE_GROUP_MIN_N tokens and more) ----
 * At 64 decode streams 512 slots pick ~220 of 256 experts: read per slot, as the kernels above
 * do, each expert's weights stream about twice. Grouped, a warp loads a weight row once and
 * multiplies it with every slot of its expert (MOE_GROUP_S at a time). A slot's sums are formed
 * exactly as in k_moe_gate_up_glu (and as a warp per row of k_moe_down_combine does them): each
 * lane adds its 16-byte chunks in ascending order, then the warp tree; nothing depends on which
 * other slots share the expert, so a token's outputs do not depend on the batch (the deterministic
 * mode takes this path at every size). Launches: the grouping, gate + up + GLU, down into y per
 * slot, k_moe_combine. */
#define MOE_GROUP_MAX   (MOE_SMALL_N * MOE_K_MAX)   // slots k_moe_group takes (one block)
#define MOE_GROUP_MIN_N 8   // tokens from which the device path groups (fewer: few experts repeat)
#define MOE_GROUP_S     4   // slots a warp multiplies per pass over its weight rows
#define MOE_GROUP_ROWS  4   // down rows per warp (8 as in k_moe_down_combine: 245 registers, one block an SM)

/* order[p]: the slot at sorted position p (experts ascending, slots ascending within one); group
 * g (the g-th smallest expert picked) is positions [gpos[g], gpos[g] + gcnt[g]); gcnt[g] = 0 for
 * the other g < n_cap (the launch's groups: min(slots, experts) bounds them). One block, a thread
 * per slot counting over all slots in shared memory: no atomics, so the same ids give the same
 * order. A programmatic dependent of the router. */
__global__ void __launch_bounds__(MOE_GROUP_MAX) k_moe_group(int32_t *order, int32_t *gpos, int32_t *gcnt,
                                                             const int32_t *ids, int slots, int n_cap)
{
    __shared__ int32_t s_ids[MOE_GROUP_MAX];
    __shared__ bool s_first[MOE_GROUP_MAX];   // the slot is its expert's first
    pdl_wait();      // ids come from the router
    pdl_trigger();
    const int i = threadIdx.x;
    if (i < slots) s_ids[i] = ids[i];
    __syncthreads();
    const int e = i < slots ? s_ids[i] : 0;
    int before = 0, same = 0, rank = 0;
    for (int j = 0; j < slots && i < slots; j++) {
        const int o = s_ids[j];
        before += o < e;
        same += o == e;
        rank += o == e && j < i;
    }
    if (i < slots) s_first[i] = rank == 0;
    __syncthreads();
    int group = 0, n_groups = 0;   // experts picked below e; experts picked
    for (int j = 0; j < slots; j++) {
        group += s_first[j] && s_ids[j] < e;
        n_groups += s_first[j];
    }
    if (i < slots) {
        order[before + rank] = i;
        if (rank == 0) {
            gpos[group] = before;
            gcnt[group] = same;
        }
    }
    if (i >= n_groups && i < n_cap) gcnt[i] = 0;
}

/* out[slot, row] = act(gate_e[row] . x[slot / x_div]) * (up_e[row] . x[slot / x_div]) for the
 * slots of group blockIdx.y (k_moe_group's; blocks past the last group exit): a warp per row, its
 * gate and up chunks loaded once per MOE_GROUP_S slots. A programmatic dependent of k_moe_group;
 * lets the down kernel launch once the groups are known. */
template <typename T>
__global__ void __launch_bounds__(MOE_WARPS * 32)
k_moe_gate_up_grouped(float *out, const float *x, const void *const *tab_g, const void *const *tab_u, const int32_t *ids,
                      const int32_t *order, const int32_t *gpos, const int32_t *gcnt, int m, int kdim, int x_div,
                      int act)
{
    pdl_wait();      // the groups come from the kernel before, x from the router
    pdl_trigger();
    const int c = gcnt[blockIdx.y], row = blockIdx.x * MOE_WARPS + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (!c || row >= m) return;
    const int p = gpos[blockIdx.y];
    const int e = ids[order[p]];
    if (!tab_g[e]) {   // absent expert: act(0) * 0
        if (lane == 0)
            for (int s = 0; s < c; s++) out[(size_t)order[p + s] * m + row] = 0.0f;
        return;
    }
    const uint4 *wg = reinterpret_cast<const uint4 *>((const T *)tab_g[e] + (size_t)row * kdim);
    const uint4 *wu = reinterpret_cast<const uint4 *>((const T *)tab_u[e] + (size_t)row * kdim);
    const int n_vec = kdim / 8;
    const bool one_pass = n_vec <= 32 * MOE_U;   // the chunks stay in registers for every slot
    uint4 g[MOE_U], u[MOE_U];
    for (int s0 = 0; s0 < c; s0 += MOE_GROUP_S) {
        const int ns = min(MOE_GROUP_S, c - s0);
        int slot[MOE_GROUP_S];
        const float4 *xr[MOE_GROUP_S];
        float ag[MOE_GROUP_S], au[MOE_GROUP_S];
#pragma unroll
        for (int s = 0; s < MOE_GROUP_S; s++) {
            slot[s] = order[p + s0 + min(s, ns - 1)];
            xr[s] = reinterpret_cast<const float4 *>(x + (size_t)(slot[s] / x_div) * kdim);
            ag[s] = au[s] = 0.0f;
        }
        for (int base = 0; base < n_vec; base += 32 * MOE_U) {
            if (s0 == 0 || !one_pass)
#pragma unroll
                for (int j = 0; j < MOE_U; j++) {
                    const bool in = base + j * 32 + lane < n_vec;
                    g[j] = in ? ld_expert16(wg + base + j * 32 + lane) : make_uint4(0, 0, 0, 0);
                    u[j] = in ? ld_expert16(wu + base + j * 32 + lane) : make_uint4(0, 0, 0, 0);
                }
#pragma unroll
            for (int j = 0; j < MOE_U; j++) {
                const int vi = base + j * 32 + lane;
                if (vi >= n_vec) break;
#pragma unroll
                for (int s = 0; s < MOE_GROUP_S; s++) {
                    if (s >= ns) break;
                    const float4 a = xr[s][2 * vi], b = xr[s][2 * vi + 1];
                    ag[s] += dot8<T>(g[j], a, b);
                    au[s] += dot8<T>(u[j], a, b);
                }
            }
        }
#pragma unroll
        for (int s = 0; s < MOE_GROUP_S; s++) {
            if (s >= ns) break;
            const float gs = warp_sum(ag[s]), us = warp_sum(au[s]);
            if (lane == 0) out[(size_t)slot[s] * m + row] = glu_act(gs, act) * us;
        }
    }
}

/* y[slot, row] = W_down_e[row] . h[slot] for the slots of group blockIdx.y: warp w of the block
 * owns MOE_GROUP_ROWS consecutive rows, streamed as k_moe_down_combine streams them (down_load)
 * once per MOE_GROUP_S slots. The groups are final at entry (k_moe_group finished before the gate
 * + up kernel let this one launch), so the first weights load before waiting for h. */
template <typename T, int R = MOE_GROUP_ROWS>
__global__ void __launch_bounds__(MOE_WARPS * 32)
k_moe_down_grouped(float *y, const float *h, const void *const *tab, const int32_t *ids, const int32_t *order,
                   const int32_t *gpos, const int32_t *gcnt, int d, int f)
{
    const int c = gcnt[blockIdx.y], warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int row0 = (blockIdx.x * MOE_WARPS + warp) * R;
    if (!c || row0 >= d) return;
    const int p = gpos[blockIdx.y];
    const int n_rows = min(R, d - row0), n_vec = f / 8;
    const void *w_e = tab[ids[order[p]]];
    const int n_load = w_e ? n_rows : 0;   // an absent expert loads nothing: its rows are 0
    const uint4 *w = reinterpret_cast<const uint4 *>(w_e ? (const T *)w_e + (size_t)row0 * f : nullptr);
    uint4 u[R][MOE_DOWN_V];
    down_load<T, R>(u, w, n_vec, n_load, 0, lane);
    pdl_wait();      // h comes from the kernel before
    pdl_trigger();
    for (int s0 = 0; s0 < c; s0 += MOE_GROUP_S) {
        const int ns = min(MOE_GROUP_S, c - s0);
        int slot[MOE_GROUP_S];
        const float4 *hr[MOE_GROUP_S];
        float acc[MOE_GROUP_S][R];
#pragma unroll
        for (int s = 0; s < MOE_GROUP_S; s++) {
            slot[s] = order[p + s0 + min(s, ns - 1)];
            hr[s] = reinterpret_cast<const float4 *>(h + (size_t)slot[s] * f);
#pragma unroll
            for (int r = 0; r < R; r++) acc[s][r] = 0.0f;
        }
        for (int base = 0; base < n_vec; base += 32 * MOE_DOWN_V) {
            if (base > 0 || (s0 > 0 && n_vec > 32 * MOE_DOWN_V)) down_load<T, R>(u, w, n_vec, n_load, base, lane);
#pragma unroll
            for (int cc = 0; cc < MOE_DOWN_V; cc++) {
                const int vi = base + cc * 32 + lane;
                if (vi >= n_vec) break;
#pragma unroll
                for (int s = 0; s < MOE_GROUP_S; s++) {
                    if (s >= ns) break;
                    const float4 a = hr[s][2 * vi], b = hr[s][2 * vi + 1];
#pragma unroll
                    for (int r = 0; r < R; r++) acc[s][r] += dot8<T>(u[r][cc], a, b);
                }
            }
        }
#pragma unroll
        for (int s = 0; s < MOE_GROUP_S; s++) {
            if (s >= ns) break;
#pragma unroll
            for (int r = 0; r < R; r++) {
                const float v = warp_sum(acc[s][r]);
                if (lane == 0 && r < n_rows) y[(size_t)slot[s] * d + row0 + r] = v;
            }
        }
    }
}

/* h[i] = act(g[i]) * u[i], in H (f32 in place over g, or the 16-bit input of the down GEMM) */
template <typename H>
__global__ void k_moe_glu(H *h, const float *g, const float *u, size_t n, int act)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float x = g[i];
        float a = act == ACT_SILU ? x / (1.0f + __expf(-x))
                                  : 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
        h[i] = from_f<H>(a * u[i]);
    }
}

static int moe_grid(size_t n) { return (int)((n + 255) / 256 > 65535 ? 65535 : (n + 255) / 256); }

/* out[t, :] (+)= sum_j weights[t, j] * y[row, :] with row = at[t * k + j] (at NULL: t * k + j), in a
 * fixed j order */
__global__ void k_moe_combine(float *out, const float *y, const int32_t *at, const float *weights, int k, int d,
                              bool accumulate)
{
    int t = blockIdx.x;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        float s = 0;
        for (int j = 0; j < k; j++) {
            const size_t row = at ? (size_t)at[t * k + j] : (size_t)t * k + j;
            s += weights[t * k + j] * y[row * d + i];
        }
        float *o = out + (size_t)t * d + i;
        *o = accumulate ? *o + s : s;
    }
}

/* dst[r, :] = src[rows[r], :], in D (f32, or the 16-bit input of a GEMM) */
template <typename D>
__global__ void k_gather(D *dst, const float *src, const int32_t *rows, int d)
{
    int r = blockIdx.x;
    for (int i = threadIdx.x; i < d; i += blockDim.x) dst[(size_t)r * d + i] = from_f<D>(src[(size_t)rows[r] * d + i]);
}

/* ---- the sort of the grouped path, on the device (no host round trip) ----
 * cnt[e] = slots of expert e (atomics: a count does not depend on their order); k_moe_plan turns
 * the counts into each expert's first grouped row (in place) and the work items of
 * k_moe_grouped_mma; k_moe_place gives each slot a row of its expert (which row, atomics decide:
 * every row's products and the combine's sum are the same wherever it lands). */
__global__ void k_moe_count(int32_t *cnt, const int32_t *ids, int slots)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < slots; i += gridDim.x * blockDim.x) atomicAdd(&cnt[ids[i]], 1);
}

/* One thread: a few hundred experts and items, cheaper than a scan's launches. */
__global__ void k_moe_plan(int32_t *cnt_to_first, int32_t *work, int32_t *n_work, int E)
{
    if (threadIdx.x || blockIdx.x) return;
    int row = 0, w = 0;
    for (int e = 0; e < E; e++) {
        const int c = cnt_to_first[e];
        cnt_to_first[e] = row;
        for (int r0 = 0; r0 < c; r0 += MGM_BM, w++) {
            work[3 * w] = e;
            work[3 * w + 1] = row + r0;
            work[3 * w + 2] = c - r0 < MGM_BM ? c - r0 : MGM_BM;
        }
        row += c;
    }
    *n_work = w;
}

/* rows[r] = the token of grouped row r, at[slot] = the slot's grouped row. */
__global__ void k_moe_place(int32_t *rows, int32_t *at, int32_t *fill, const int32_t *first, const int32_t *ids, int slots,
                            int k)
{
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < slots; i += gridDim.x * blockDim.x) {
        const int e = ids[i], r = first[e] + atomicAdd(&fill[e], 1);
        rows[r] = i / k;
        at[i] = r;
    }
}

/* dst[i] = src[i] in H, eight at a time (n8 groups of eight): x once in the GEMM's dtype. */
template <typename H>
__global__ void k_to16(H *dst, const float *src, size_t n8)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n8; i += (size_t)gridDim.x * blockDim.x) {
        const float4 a = reinterpret_cast<const float4 *>(src)[2 * i], b = reinterpret_cast<const float4 *>(src)[2 * i + 1];
        uint4 v;
        v.x = pack2<H>(a.x, a.y);
        v.y = pack2<H>(a.z, a.w);
        v.z = pack2<H>(b.x, b.y);
        v.w = pack2<H>(b.z, b.w);
        reinterpret_cast<uint4 *>(dst)[i] = v;
    }
}

/* The experts of 16-bit weights over their grouped rows (work: *n_work items of MGM_BM rows,
 * moe_gemm.cuh, at most max_work; idx: the token of each grouped row): x once in the weights'
 * dtype (as cuBLAS would take it; the gate + up GEMM gathers its rows through idx), gate and up
 * with the GLU in one GEMM launch, down in another; y in grouped order. Profile: "moe_grouped16
 * gate_up" (with x's conversion), "moe_grouped16 down". */
template <typename H>
static void moe_grouped16(struct cuda_backend *cb, float *y, void *work16, const float *x, int n, const int32_t *idx,
                          const int32_t *work, const int32_t *n_work, int max_work, const struct moe_table *tab, int d,
                          int f, enum act act)
{
    H *xh = (H *)work16, *hh = xh + (size_t)n * d;   // [n, d], then [slots, f] in grouped order
    const int tiles_gu = (f + MGM_BN / 2 - 1) / (MGM_BN / 2), tiles_down = (d + MGM_BN - 1) / MGM_BN;
    CUDA_CHECK(cudaFuncSetAttribute(k_moe_grouped_mma<H, true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    MGM_SMEM_BYTES));
    CUDA_CHECK(cudaFuncSetAttribute(k_moe_grouped_mma<H, false>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    MGM_SMEM_BYTES));
    double t0 = cuda_prof_begin(cb);
    k_to16<H><<<moe_grid((size_t)n * d / 8), 256, 0, cb->stream>>>(xh, x, (size_t)n * d / 8);
    k_moe_grouped_mma<H, true><<<max_work * tiles_gu, MGM_THREADS, MGM_SMEM_BYTES, cb->stream>>>(
        hh, xh, idx, tab->d_gate, tab->d_up, work, n_work, tiles_gu, f, d, (int)act);
    LAUNCH_CHECK();
    cuda_prof_end(cb, "moe_grouped16 gate_up", t0);
    t0 = cuda_prof_begin(cb);
    k_moe_grouped_mma<H, false><<<max_work * tiles_down, MGM_THREADS, MGM_SMEM_BYTES, cb->stream>>>(
        y, hh, NULL, tab->d_down, NULL, work, n_work, tiles_down, d, f, (int)act);
    LAUNCH_CHECK();
    cuda_prof_end(cb, "moe_grouped16 down", t0);
}

__global__ void k_scatter_slots(float *y, const float *src, const int32_t *slots, int d)
{
    int r = blockIdx.x;
    for (int i = threadIdx.x; i < d; i += blockDim.x) y[(size_t)slots[r] * d + i] = src[(size_t)r * d + i];
}

/* out (+)= the experts' weighted sum (accumulate: moe_ffn_add, the residual add). */
static void moe_ffn(struct backend *be, struct tensor *out, const struct tensor *x, const struct tensor *ids,
                    const struct tensor *weights, const struct tensor *gate, const struct tensor *up,
                    const struct tensor *down, int n_experts, enum act act, bool accumulate)
{
    struct cuda_backend *cb = cuda_of(be);
    // Shapes and dtypes from the first expert present (expert parallel: other ranks' are absent, buf NULL).
    int e0 = 0;
    while (e0 < n_experts - 1 && !gate[e0].buf) e0++;
    bool subset = false;
    for (int e = 0; e < n_experts; e++) subset = subset || !gate[e].buf;
    const struct tensor *g0 = &gate[e0], *u0 = &up[e0], *d0 = &down[e0];
    int n = (int)tensor_rows(x), d = (int)x->ne[0], k = (int)ids->ne[0], f = (int)g0->ne[1];
    if (cb->deterministic && n > cb->moe_device_n) {   // the per-token device path, a slice of tokens at a time
        for (int r0 = 0; r0 < n; r0 += cb->moe_device_n) {
            int nr = n - r0 < cb->moe_device_n ? n - r0 : cb->moe_device_n;
            struct tensor o = tensor_rows_view(out, r0, nr), xv = tensor_rows_view(x, r0, nr);
            struct tensor iv = tensor_rows_view(ids, r0, nr), wv = tensor_rows_view(weights, r0, nr);
            moe_ffn(be, &o, &xv, &iv, &wv, gate, up, down, n_experts, act, accumulate);
        }
        return;
    }
    size_t slots = (size_t)n * k;
    // workspace: g [slots, f], u [slots, f], y [slots, d], gathered rows [slots, d] (f32, or the
    // 16-bit rows of x and of the GLU), then index lists
    const size_t h16_bytes = (sizeof(uint16_t) * slots * f + 15) & ~(size_t)15;   // the 16-bit GLU rows
    const size_t max_work = slots / MGM_BM + (size_t)n_experts + 1;   // k_moe_grouped_mma's items
    size_t bytes = sizeof(float) * (slots * (2 * (size_t)f + 2 * (size_t)d)) + h16_bytes +
                   sizeof(int32_t) * (3 * slots + 3 * max_work + 2 * (size_t)n_experts + 1) + 1024;
    char *ws = (char *)cuda_grow(cb, &cb->d_moe_work, &cb->moe_work_bytes, bytes);
    float *g = (float *)ws, *u = g + slots * f, *y = u + slots * f, *xg = y + slots * d;
    int32_t *idx = (int32_t *)((char *)(xg + slots * d) + h16_bytes), *slot_of = idx + slots;
    int32_t *at = slot_of + slots, *work = at + slots;
    int32_t *cnt = work + 3 * max_work, *fill = cnt + n_experts, *n_work = fill + n_experts;   // the device sort's
    int gl = moe_grid(slots * f);
    const int32_t *combine_at = NULL;   // y in (token, choice) order

    // MLX-quantized projections (mlx-lm may leave one float, e.g. a down_proj whose inputs no group divides)
    const bool qg = g0->dtype == DTYPE_QMLX, qu = u0->dtype == DTYPE_QMLX, qd = d0->dtype == DTYPE_QMLX;
    const bool quantized = qg || qu || qd;
    const bool q_device = (qg && qu ? cuda_qgemv_glu_fits(g0, u0, (const float *)dptr(x)) : !qg && !qu) &&
                          (!qd || cuda_qgemv_fits(d0, g));
    if (n <= cb->moe_device_n && (!quantized || q_device)) {   // else per expert, as any quantized matmul
        struct moe_table *tab = table_for(cb, gate, up, down, n_experts);
        dim3 blk(MOE_WARPS * 32);
        if (quantized) {
            const int32_t *d_ids = (const int32_t *)dptr(ids);
            if (qg) {
                cuda_moe_qgate_up(cb, g, (const float *)dptr(x), tab->d_q, tab->d_q + n_experts, g0, u0, d_ids,
                                  (int)slots, k, act);
            } else {
                DISPATCH_FLOAT(g0->dtype, T,
                    k_moe_gemv<T><<<dim3((f + MOE_WARPS - 1) / MOE_WARPS, (unsigned)slots), blk, 0, cb->stream>>>(
                        g, (const float *)dptr(x), tab->d_gate, d_ids, f, d, k));
                DISPATCH_FLOAT(u0->dtype, T,
                    k_moe_gemv<T><<<dim3((f + MOE_WARPS - 1) / MOE_WARPS, (unsigned)slots), blk, 0, cb->stream>>>(
                        u, (const float *)dptr(x), tab->d_up, d_ids, f, d, k));
                k_moe_glu<float><<<gl, 256, 0, cb->stream>>>(g, g, u, slots * f, (int)act);
                LAUNCH_CHECK();
            }
            if (qd) {
                cuda_moe_qgemv(cb, y, g, tab->d_q + 2 * n_experts, d0, d_ids, (int)slots, 1);
            } else {
                DISPATCH_FLOAT(d0->dtype, T,
                    k_moe_gemv<T><<<dim3((d + MOE_WARPS - 1) / MOE_WARPS, (unsigned)slots), blk, 0, cb->stream>>>(
                        y, g, tab->d_down, d_ids, d, f, 1));
                LAUNCH_CHECK();
            }
        } else {
            bool vec = tab->aligned16 && aligned16(dptr(x)) && d % 8 == 0 && f % 8 == 0 && k <= MOE_K_MAX &&
                       g0->dtype != DTYPE_F32 && g0->dtype == u0->dtype && g0->dtype == d0->dtype;
            if (vec && (n >= MOE_GROUP_MIN_N || cb->deterministic)) {   // slots grouped by expert
                CHECK(slots <= MOE_GROUP_MAX, "cuda moe: %zu slots on the device path", slots);
                const double t0 = cuda_prof_begin(cb);
                int32_t *order = idx, *gpos = slot_of, *gcnt = at;
                const int32_t *d_ids = (const int32_t *)dptr(ids);
                const int n_cap = (int)slots < n_experts ? (int)slots : n_experts;   // most groups there can be
                launch_pdl(cb, k_moe_group, dim3(1), dim3(MOE_GROUP_MAX), order, gpos, gcnt, d_ids, (int)slots, n_cap);
                DISPATCH_FLOAT(g0->dtype, T,
                    launch_pdl(cb, k_moe_gate_up_grouped<T>, dim3((f + MOE_WARPS - 1) / MOE_WARPS, (unsigned)n_cap), blk, g,
                               (const float *)dptr(x), tab->d_gate, tab->d_up, d_ids, (const int32_t *)order,
                               (const int32_t *)gpos, (const int32_t *)gcnt, f, d, k, (int)act);
                    launch_pdl(cb, k_moe_down_grouped<T>,
                               dim3((d + MOE_WARPS * MOE_GROUP_ROWS - 1) / (MOE_WARPS * MOE_GROUP_ROWS), (unsigned)n_cap), blk,
                               y, (const float *)g, tab->d_down, d_ids, (const int32_t *)order, (const int32_t *)gpos,
                               (const int32_t *)gcnt, d, f));
                k_moe_combine<<<n, 256, 0, cb->stream>>>((float *)dptr(out), y, NULL, (const float *)dptr(weights), k, d,
                                                         accumulate);
                LAUNCH_CHECK();
                cuda_prof_end(cb, "moe_decode grouped", t0);
                return;
            }
            if (vec) {   // gate + up + GLU in one launch, down + combine (+ residual) in one launch
                const double t0 = cuda_prof_begin(cb);
                DISPATCH_FLOAT(g0->dtype, T,
                    launch_pdl(cb, k_moe_gate_up_glu<T>, dim3((f + MOE_WARPS - 1) / MOE_WARPS, (unsigned)slots), blk, g,
                               (const float *)dptr(x), tab->d_gate, tab->d_up, (const int32_t *)dptr(ids), f, d, k, (int)act));
                DISPATCH_FLOAT(d0->dtype, T,
                    launch_pdl(cb, k_moe_down_combine<T>, dim3((d + MOE_DOWN_ROWS - 1) / MOE_DOWN_ROWS, (unsigned)n),
                               dim3(32 * k), (float *)dptr(out), (const float *)g, tab->d_down, (const int32_t *)dptr(ids),
                               (const float *)dptr(weights), d, f, k, accumulate));
                LAUNCH_CHECK();
                cuda_prof_end(cb, "moe_decode fused", t0);
                return;
            }
            DISPATCH_FLOAT(g0->dtype, T,
                k_moe_gemv<T><<<dim3((f + MOE_WARPS - 1) / MOE_WARPS, (unsigned)slots), blk, 0, cb->stream>>>(
                    g, (const float *)dptr(x), tab->d_gate, (const int32_t *)dptr(ids), f, d, k);
                k_moe_gemv<T><<<dim3((f + MOE_WARPS - 1) / MOE_WARPS, (unsigned)slots), blk, 0, cb->stream>>>(
                    u, (const float *)dptr(x), tab->d_up, (const int32_t *)dptr(ids), f, d, k));
            LAUNCH_CHECK();
            k_moe_glu<float><<<gl, 256, 0, cb->stream>>>(g, g, u, slots * f, (int)act);
            DISPATCH_FLOAT(d0->dtype, T,
                k_moe_gemv<T><<<dim3((d + MOE_WARPS - 1) / MOE_WARPS, (unsigned)slots), blk, 0, cb->stream>>>(
                    y, g, tab->d_down, (const int32_t *)dptr(ids), d, f, 1));
            LAUNCH_CHECK();
        }
    } else {
        const enum dtype wdt = g0->dtype;
        const struct moe_table *tab = NULL;
        // the grouped kernel reads every expert's weights from its table: a rank without all
        // experts (expert parallel) takes the per-expert loop
        if (!subset && !quantized && !cb->precise && (wdt == DTYPE_BF16 || wdt == DTYPE_F16) && u0->dtype == wdt &&
            d0->dtype == wdt && d % 8 == 0 && f % 8 == 0) {
            tab = table_for(cb, gate, up, down, n_experts);
            if (!tab->aligned16 || !aligned16(dptr(x))) tab = NULL;
        }
        if (tab) {   // 16-bit rows of x and of the GLU: 16-byte loads need rows of a multiple of 8
            // cudaFuncSetAttribute (moe_grouped16) is not a stream operation: keep such steps out of
            // step graphs, as the host sort did (steps this large are never recorded anyway)
            cuda_mark_unrecordable(cb);
            const double t_sort = cuda_prof_begin(cb);
            const int32_t *d_ids = (const int32_t *)dptr(ids);
            CUDA_CHECK(cudaMemsetAsync(cnt, 0, sizeof(int32_t) * 2 * (size_t)n_experts, cb->stream));   // cnt, fill
            k_moe_count<<<moe_grid(slots), 256, 0, cb->stream>>>(cnt, d_ids, (int)slots);
            k_moe_plan<<<1, 32, 0, cb->stream>>>(cnt, work, n_work, n_experts);
            k_moe_place<<<moe_grid(slots), 256, 0, cb->stream>>>(idx, at, fill, cnt, d_ids, (int)slots, k);
            LAUNCH_CHECK();
            cuda_prof_end(cb, "moe_sort", t_sort);
            if (wdt == DTYPE_BF16)
                moe_grouped16<__nv_bfloat16>(cb, y, xg, (const float *)dptr(x), n, idx, work, n_work, (int)max_work, tab,
                                             d, f, act);
            else
                moe_grouped16<__half>(cb, y, xg, (const float *)dptr(x), n, idx, work, n_work, (int)max_work, tab, d, f,
                                      act);
            combine_at = at;
        } else {   // f32, quantized, precise or partial experts: each expert's matmuls as any matmul
            // Group (token, choice) slots by expert on the host: expert e's slots become grouped
            // rows [count[e], count[e + 1]); slot_of[row] says which slot each row holds.
            int32_t *h_ids = (int32_t *)xmalloc(sizeof(int32_t) * slots);
            CUDA_CHECK(cudaMemcpyAsync(h_ids, dptr(ids), sizeof(int32_t) * slots, cudaMemcpyDeviceToHost, cb->stream));
            cuda_step_roundtrip(cb);
            int *count = (int *)xcalloc((size_t)n_experts + 1, sizeof(int));
            for (size_t i = 0; i < slots; i++) count[h_ids[i] + 1]++;
            for (int e = 0; e < n_experts; e++) count[e + 1] += count[e];
            int32_t *h_rows = (int32_t *)xmalloc(sizeof(int32_t) * 2 * slots), *h_slot = h_rows + slots;
            int *h_fill = (int *)xcalloc((size_t)n_experts, sizeof(int));
            for (size_t i = 0; i < slots; i++) {
                int e = h_ids[i], row = count[e] + h_fill[e]++;
                h_rows[row] = (int32_t)(i / k);
                h_slot[row] = (int32_t)i;
            }
            CUDA_CHECK(cudaMemcpyAsync(idx, h_rows, sizeof(int32_t) * 2 * slots, cudaMemcpyHostToDevice, cb->stream));
            cuda_step_roundtrip(cb);   // h_rows is pageable and freed below
            if (subset)   // an absent expert's slots stay 0
                CUDA_CHECK(cudaMemsetAsync(y, 0, sizeof(float) * slots * (size_t)d, cb->stream));
            for (int e = 0; e < n_experts; e++) {
                int c = count[e + 1] - count[e];
                if (!c || !gate[e].buf) continue;
                float *xe = xg + (size_t)count[e] * d;
                float *ge = g + (size_t)count[e] * f, *ue = u + (size_t)count[e] * f;
                k_gather<float><<<c, 256, 0, cb->stream>>>(xe, (const float *)dptr(x), idx + count[e], d);
                cuda_linear(cb, ge, xe, c, &gate[e]);
                cuda_linear(cb, ue, xe, c, &up[e]);
                k_moe_glu<float><<<moe_grid((size_t)c * f), 256, 0, cb->stream>>>(ge, ge, ue, (size_t)c * f, (int)act);
                cuda_linear(cb, xe, ge, c, &down[e]);   // expert output, in grouped order
                k_scatter_slots<<<c, 256, 0, cb->stream>>>(y, xe, slot_of + count[e], d);
            }
            LAUNCH_CHECK();
            free(h_ids);
            free(count);
            free(h_rows);
            free(h_fill);
        }
    }
    const double t0 = cuda_prof_begin(cb);
    k_moe_combine<<<n, 256, 0, cb->stream>>>((float *)dptr(out), y, combine_at, (const float *)dptr(weights), k, d,
                                             accumulate);
    LAUNCH_CHECK();
    cuda_prof_end(cb, "moe_combine", t0);
}

void cuda_moe_ffn(struct backend *be, struct tensor *out, const struct tensor *x, const struct tensor *ids,
                  const struct tensor *weights, const struct tensor *gate, const struct tensor *up,
                  const struct tensor *down, int n_experts, enum act act)
{
    moe_ffn(be, out, x, ids, weights, gate, up, down, n_experts, act, false);
}

void cuda_moe_ffn_add(struct backend *be, struct tensor *x, const struct tensor *xn, const struct tensor *ids,
                      const struct tensor *weights, const struct tensor *gate, const struct tensor *up,
                      const struct tensor *down, int n_experts, enum act act)
{
    CHECK(x->buf != xn->buf || x->offset != xn->offset, "cuda moe_ffn_add: x and xn alias");
    moe_ffn(be, x, xn, ids, weights, gate, up, down, n_experts, act, true);
}
