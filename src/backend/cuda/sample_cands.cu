/* sample_cands: each sampled row's largest logits and its sum of probabilities, so the engine
 * downloads n * (k ids + k values + one f64) instead of n whole rows (backend.h has the contract,
 * backend/host.c the reference loop).
 *
 * Design note. One block per row, four kinds of pass over the row (it is in L2 after the LM head):
 * the max (as an order-preserving key), the f64 sum of probabilities (each thread's share in f64,
 * then a fixed-order combination: the same bits every run), a radix select of the k-th largest
 * key (four passes of 8 bits; a warp adds its equal bins once, __match_any_sync, since a row's
 * logits share few exponents), and a gather: keys above the k-th in any order, then the ids equal
 * to it in id order (a block-wide ballot scan that stops once enough are found, so a row of -inf
 * stops early). The k winners are ranked in shared memory by (key desc, id asc).
 * Probabilities repeat base/sample_prob.h operation for operation with rounded intrinsics (no
 * contraction into FMA), so each one has the host's bits.
 */
#include "backend/cuda/cuda_common.cuh"

#include <math.h>
#include <string.h>

#define CANDS_THREADS 1024

/* NaN ranks as -inf, -0 as +0 (so equal floats have equal keys). */
__device__ __forceinline__ float cands_clean(float x) { return x != x ? -INFINITY : x == 0.0f ? 0.0f : x; }

/* Keys order as the floats do (unsigned compare). */
__device__ __forceinline__ uint32_t cands_key(float x)
{
    uint32_t u = __float_as_uint(x);
    return (u & 0x80000000u) ? ~u : u | 0x80000000u;
}

__device__ __forceinline__ float cands_float(uint32_t k)
{
    return __uint_as_float((k & 0x80000000u) ? k & 0x7FFFFFFFu : ~k);
}

/* base/sample_prob.h's exp2_nonpositive, each rounding as the host's. */
__device__ __forceinline__ float d_exp2_nonpositive(float y)
{
    uint32_t yb = __float_as_uint(y);
    uint32_t in = (uint32_t)(yb == 0u) | (uint32_t)(yb - 0x80000000u < 0xC2FC0000u - 0x80000000u);
    uint32_t keep = 0u - in;
    float yc = __uint_as_float((yb & keep) | (0xC2FC0000u & ~keep));
    float t = __fadd_rn(yc, 12582912.0f);
    float n = __fsub_rn(t, 12582912.0f);
    float f = __fsub_rn(yc, n);
    float q = 1.535336188319500e-4f;
    q = __fadd_rn(__fmul_rn(q, f), 1.339887440266574e-3f);
    q = __fadd_rn(__fmul_rn(q, f), 9.618437357674640e-3f);
    q = __fadd_rn(__fmul_rn(q, f), 5.550332471162809e-2f);
    q = __fadd_rn(__fmul_rn(q, f), 2.402264791363012e-1f);
    q = __fadd_rn(__fmul_rn(q, f), 6.931472028550421e-1f);
    float r = __fadd_rn(__fmul_rn(q, f), 1.0f);
    uint32_t sb = (__float_as_uint(t) - 0x4B400000u + 127u) << 23;
    r = __fmul_rn(r, __uint_as_float(sb));
    return __uint_as_float(__float_as_uint(r) & keep);
}

__device__ __forceinline__ float d_sample_prob(float x, float inv_t, float mx)
{
    return d_exp2_nonpositive(__fmul_rn(__fsub_rn(__fmul_rn(x, inv_t), mx), 1.4426950408889634f));
}

/* Block-wide max and sum; every thread gets the result, combined in warp order (deterministic). */
__device__ uint32_t block_max_u32(uint32_t v, uint32_t *s)
{
    for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
    __syncthreads();   // s may still be read from the previous use
    if ((threadIdx.x & 31) == 0) s[threadIdx.x >> 5] = v;
    __syncthreads();
    v = 0;
    for (int w = 0; w < (int)(blockDim.x >> 5); w++) v = max(v, s[w]);
    return v;
}

__device__ double block_sum_f64(double v, double *s)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    if ((threadIdx.x & 31) == 0) s[threadIdx.x >> 5] = v;
    __syncthreads();
    v = 0.0;
    for (int w = 0; w < (int)(blockDim.x >> 5); w++) v += s[w];
    return v;
}

/* Block b: row rows[b] of logits (n entries, rows row_stride floats apart) -> ids/vals[b * k ..],
 * sums[b]. Launched with CANDS_THREADS threads (a multiple of 32: the scans ballot whole warps). */
__global__ void __launch_bounds__(CANDS_THREADS)
k_sample_cands(const float *logits, size_t row_stride, int n, const int32_t *rows, const float *inv_t, int k,
               int32_t *ids, float *vals, double *sums)
{
    __shared__ uint32_t s_hist[256];
    __shared__ uint32_t s_u[32];
    __shared__ double   s_d[32];
    __shared__ uint32_t s_key[BACKEND_CANDS_MAX];
    __shared__ int32_t  s_id[BACKEND_CANDS_MAX];
    __shared__ uint32_t s_prefix, s_need, s_count;
    const float *x = logits + (size_t)rows[blockIdx.x] * row_stride;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, n_warps = blockDim.x >> 5;

    // 1. the max
    uint32_t best = 0;
    for (int i = tid; i < n; i += blockDim.x) best = max(best, cands_key(cands_clean(x[i])));
    best = block_max_u32(best, s_u);
    const float mx = cands_float(best);

    // 2. the sum of probabilities
    double sum = 0.0;
    if (mx > -INFINITY) {
        const float it = inv_t[blockIdx.x], mxs = __fmul_rn(mx, it);
        for (int i = tid; i < n; i += blockDim.x) sum += (double)d_sample_prob(x[i], it, mxs);
    }
    sum = block_sum_f64(sum, s_d);

    // 3. radix select: the kk-th largest key (prefix), and how many equal to it are taken (need)
    const int kk = k < n ? k : n;
    uint32_t prefix = 0, mask = 0, need = (uint32_t)kk;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int b = tid; b < 256; b += blockDim.x) s_hist[b] = 0;
        __syncthreads();
        for (int c0 = 0; c0 < n; c0 += blockDim.x) {   // uniform trip count: whole warps match
            const int i = c0 + tid;
            const uint32_t key = i < n ? cands_key(cands_clean(x[i])) : 0u;
            const bool act = i < n && (key & mask) == prefix;
            const uint32_t bin = act ? (key >> shift) & 0xFFu : 256u;
            const uint32_t peers = __match_any_sync(0xffffffffu, bin);
            if (act && __ffs(peers) - 1 == lane) atomicAdd(&s_hist[bin], (uint32_t)__popc(peers));
        }
        __syncthreads();
        if (tid == 0) {
            int d = 255;
            uint32_t above = 0;
            for (; d > 0 && above + s_hist[d] < need; d--) above += s_hist[d];
            s_prefix = prefix | (uint32_t)d << shift;
            s_need = need - above;
        }
        __syncthreads();
        prefix = s_prefix;
        need = s_need;
        mask |= 0xFFu << shift;
    }

    // 4. gather: keys above the kk-th (there are kk - need), then the need lowest ids equal to it
    if (tid == 0) s_count = 0;
    __syncthreads();
    for (int i = tid; i < n; i += blockDim.x) {
        const uint32_t key = cands_key(cands_clean(x[i]));
        if (key > prefix) {
            const uint32_t pos = atomicAdd(&s_count, 1u);
            if (pos < (uint32_t)kk) {   // always (kk - need of them): a guard, not a case
                s_key[pos] = key;
                s_id[pos] = i;
            }
        }
    }
    const int base = kk - (int)need;
    uint32_t taken = 0;   // the same in every thread
    for (int c0 = 0; c0 < n && taken < need; c0 += blockDim.x) {
        const int i = c0 + tid;
        const bool hit = i < n && cands_key(cands_clean(x[i])) == prefix;
        const uint32_t bal = __ballot_sync(0xffffffffu, hit);
        __syncthreads();   // s_u's previous readers are done
        if (lane == 0) s_u[warp] = (uint32_t)__popc(bal);
        __syncthreads();
        uint32_t before = taken + (uint32_t)__popc(bal & ((1u << lane) - 1u)), total = 0;
        for (int w = 0; w < n_warps; w++) {
            if (w < warp) before += s_u[w];
            total += s_u[w];
        }
        if (hit && before < need) {
            s_key[base + before] = prefix;
            s_id[base + before] = i;
        }
        taken += total;
    }
    __syncthreads();

    // 5. rank the kk winners by (key desc, id asc); entries past the row's end are empty
    int32_t *out_id = ids + (size_t)blockIdx.x * k;
    float *out_val = vals + (size_t)blockIdx.x * k;
    for (int j = tid; j < k; j += blockDim.x) {
        if (j >= kk) {
            out_id[j] = -1;
            out_val[j] = -INFINITY;
            continue;
        }
        const uint32_t kj = s_key[j];
        const int32_t ij = s_id[j];
        int rank = 0;
        for (int m = 0; m < kk; m++) rank += s_key[m] > kj || (s_key[m] == kj && s_id[m] < ij);
        out_id[rank] = ij;
        out_val[rank] = cands_float(kj);
    }
    if (tid == 0) sums[blockIdx.x] = sum;
}

/* Inputs (rows, inv_t) and outputs (sums, ids, vals) share one pinned staging buffer and one device
 * buffer: [rows n][inv_t n][pad to 16][sums n f64][ids n * k][vals n * k]; one copy each way. The
 * op is synchronous, so nothing is in flight when the staging is rewritten or grown. */
void cuda_sample_cands(struct backend *be, const struct tensor *logits, int n, const int32_t *rows, const float *inv_t,
                       int k, int32_t *ids, float *vals, double *sums)
{
    struct cuda_backend *cb = cuda_of(be);
    if (n <= 0) return;
    CHECK(logits->dtype == DTYPE_F32 && logits->nb[0] == sizeof(float), "sample_cands: f32 rows expected");
    CHECK(k >= 1 && k <= BACKEND_CANDS_MAX, "sample_cands: k = %d", k);
    const int n_ids = (int)logits->ne[0], n_rows = (int)tensor_rows(logits);
    for (int i = 0; i < n; i++) CHECK(rows[i] >= 0 && rows[i] < n_rows, "sample_cands: row %d of %d", rows[i], n_rows);
    const size_t in_bytes = ((size_t)n * 8 + 15) & ~(size_t)15;
    const size_t sums_bytes = (size_t)n * sizeof(double), ids_bytes = (size_t)n * k * sizeof(int32_t);
    const size_t out_bytes = sums_bytes + ids_bytes + (size_t)n * k * sizeof(float);
    cuda_staging_fit(cb, &cb->h_cands, &cb->d_cands, &cb->cands_bytes, in_bytes + out_bytes);
    char *h = (char *)cb->h_cands, *d = (char *)cb->d_cands;
    memcpy(h, rows, (size_t)n * sizeof(int32_t));
    memcpy(h + (size_t)n * 4, inv_t, (size_t)n * sizeof(float));
    CUDA_CHECK(cudaMemcpyAsync(d, h, in_bytes, cudaMemcpyHostToDevice, cb->stream));
    char *d_out = d + in_bytes;
    k_sample_cands<<<n, CANDS_THREADS, 0, cb->stream>>>((const float *)dptr(logits), logits->nb[1] / sizeof(float), n_ids,
                                                        (const int32_t *)d, (const float *)(d + (size_t)n * 4), k,
                                                        (int32_t *)(d_out + sums_bytes),
                                                        (float *)(d_out + sums_bytes + ids_bytes), (double *)d_out);
    LAUNCH_CHECK();
    CUDA_CHECK(cudaMemcpyAsync(h + in_bytes, d_out, out_bytes, cudaMemcpyDeviceToHost, cb->stream));
    cuda_stream_wait(cb);   // synchronous by contract, outside a step's recorded part
    memcpy(sums, h + in_bytes, sums_bytes);
    memcpy(ids, h + in_bytes + sums_bytes, ids_bytes);
    memcpy(vals, h + in_bytes + sums_bytes + ids_bytes, (size_t)n * k * sizeof(float));
}
