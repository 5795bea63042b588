/* elementwise: the CUDA ops that touch each element a bounded number of times: embedding,
 * RMSNorm, RoPE, KV-cache writes, GLU activations, residual adds, soft-capping, argmax, and the
 * constrained-decoding logits mask.
 * All compute in f32; one block per row where a row-wide reduction is needed. */
#include "backend/cuda/cuda_common.cuh"

#include <math.h>
#include <string.h>

/* ---- embed ---- */
template <typename T>
__global__ void k_embed(float *out, const T *table, const int32_t *ids, int d, float scale)
{
    int t = blockIdx.x;
    const T *row = table + (size_t)ids[t] * d;
    for (int i = threadIdx.x; i < d; i += blockDim.x) out[(size_t)t * d + i] = to_f<T>(row[i]) * scale;
}

void cuda_embed(struct backend *be, struct tensor *out, const struct tensor *table, const struct batch_meta *m, float scale)
{
    struct cuda_backend *cb = cuda_of(be);
    int d = (int)table->ne[0];
    if (table->dtype == DTYPE_QMLX) {   // MLX-quantized table: rows dequantized as ref does
        cuda_qembed(cb, (float *)dptr(out), table, m->n_tok, cb->batch.d_tok_id, scale);
        return;
    }
    DISPATCH_FLOAT(table->dtype, T, k_embed<T><<<m->n_tok, 256, 0, cb->stream>>>(
        (float *)dptr(out), (const T *)dptr(table), cb->batch.d_tok_id, d, scale));
    LAUNCH_CHECK();
}

/* ---- rmsnorm: one block per row ---- */
template <typename T>
__global__ void k_rmsnorm(float *out, const float *x, const T *w, int d, float eps, float w_offset)
{
    pdl_trigger();   // a GEMV usually follows (see cuda_common.cuh)
    pdl_wait();
    const float *xr = x + (size_t)blockIdx.x * d;
    float *orow = out + (size_t)blockIdx.x * d;
    float ss = 0;
    for (int i = threadIdx.x; i < d; i += blockDim.x) ss += xr[i] * xr[i];
    __shared__ float red[32];
    ss = warp_sum(ss);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
    __syncthreads();
    if (threadIdx.x < 32) {
        float v = threadIdx.x < (blockDim.x >> 5) ? red[threadIdx.x] : 0.0f;
        v = warp_sum(v);
        if (threadIdx.x == 0) red[0] = v;
    }
    __syncthreads();
    float inv = rsqrtf(red[0] / (float)d + eps);
    for (int i = threadIdx.x; i < d; i += blockDim.x) orow[i] = xr[i] * inv * (to_f<T>(w[i]) + w_offset);
}

void cuda_rmsnorm(struct backend *be, struct tensor *out, const struct tensor *x, const struct tensor *w, float eps,
                  float w_offset)
{
    struct cuda_backend *cb = cuda_of(be);
    int d = (int)x->ne[0];
    int rows = (int)tensor_rows(x);
    int threads = d >= 1024 ? 1024 : d >= 256 ? 256 : d >= 128 ? 128 : 64;
    if (threads > 1024) threads = 1024;
    DISPATCH_FLOAT(w->dtype, T, launch_pdl(cb, k_rmsnorm<T>, dim3(rows), dim3(threads), (float *)dptr(out),
                                           (const float *)dptr(x), (const T *)dptr(w), d, eps, w_offset));
    LAUNCH_CHECK();
}

/* ---- rope (HF rotate_half or interleaved pairs), in place ---- */
__global__ void k_rope(float *x, const int32_t *pos, const float *inv_freq, int n_heads, int head_dim, int rot_dim,
                       float mscale, bool interleaved)
{
    // grid (token, head): one block per head keeps a one-token step spread over the SMs
    int t = blockIdx.x, h = blockIdx.y;
    int half = rot_dim / 2;
    float p = (float)pos[t];
    float *hx = x + ((size_t)t * n_heads + h) * head_dim;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        float ang = p * inv_freq[i];
        float s, c;
        sincosf(ang, &s, &c);
        c *= mscale;
        s *= mscale;
        int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
        float x0 = hx[a], x1 = hx[b];
        hx[a] = x0 * c - x1 * s;
        hx[b] = x1 * c + x0 * s;
    }
}

void cuda_rope(struct backend *be, struct tensor *x, int n_heads, const struct tensor *inv_freq, const struct rope_params *rp,
               const struct batch_meta *m)
{
    struct cuda_backend *cb = cuda_of(be);
    int half = rp->rot_dim / 2;
    int threads = half >= 128 ? 128 : half >= 64 ? 64 : 32;
    k_rope<<<dim3(m->n_tok, n_heads), threads, 0, cb->stream>>>((float *)dptr(x), cb->batch.d_tok_pos,
                                                               (const float *)dptr(inv_freq), n_heads, rp->head_dim,
                                                               rp->rot_dim, rp->mscale, rp->interleaved);
    LAUNCH_CHECK();
}

/* ---- qk_rope_kv: per-head norm + rope of q and k, k and v into the cache, one launch ---- */
/* Grid (token, head) over the n_heads query heads then the n_kv KV heads; a block stages its head
 * in shared memory, normalizes it (same f32 formula as k_rmsnorm, summed in block order), rotates
 * it (as k_rope), and writes q back or k and v to the cache. */
template <typename T, typename W>
__global__ void k_qk_rope_kv(float *q, const float *k, const float *v, T *kc, T *vc, const W *qn, const W *kn, float eps,
                             float w_offset, const int32_t *pos, const int64_t *slot, const float *inv_freq, int n_heads,
                             int n_kv, int hd, int rot_dim, float mscale, bool interleaved)
{
    extern __shared__ float xs[];   // [hd]
    __shared__ float red[32];
    pdl_trigger();   // attention follows
    pdl_wait();
    const int t = blockIdx.x, h = blockIdx.y;
    const bool is_q = h < n_heads;
    const int kh = h - n_heads;
    float *src = is_q ? q + ((size_t)t * n_heads + h) * hd : (float *)k + ((size_t)t * n_kv + kh) * hd;
    const W *nw = is_q ? qn : kn;
    float ss = 0;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        float a = src[i];
        xs[i] = a;
        ss += a * a;
    }
    if (nw) {
        ss = warp_sum(ss);
        if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
        __syncthreads();
        float tot = 0;
        for (int w = 0; w < (int)(blockDim.x >> 5); w++) tot += red[w];
        const float inv = rsqrtf(tot / (float)hd + eps);
        for (int i = threadIdx.x; i < hd; i += blockDim.x) xs[i] = xs[i] * inv * (to_f<W>(nw[i]) + w_offset);
    }
    __syncthreads();
    const int half = rot_dim / 2;
    const float p = (float)pos[t];
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        float s, c;
        sincosf(p * inv_freq[i], &s, &c);
        c *= mscale;
        s *= mscale;
        const int a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
        const float x0 = xs[a], x1 = xs[b];
        xs[a] = x0 * c - x1 * s;
        xs[b] = x1 * c + x0 * s;
    }
    __syncthreads();
    if (is_q) {
        for (int i = threadIdx.x; i < hd; i += blockDim.x) src[i] = xs[i];
        return;
    }
    const size_t row = (size_t)n_kv * hd, dst = (size_t)slot[t] * row + (size_t)kh * hd;
    const float *vr = v + ((size_t)t * n_kv + kh) * hd;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        kc[dst + i] = from_f<T>(xs[i]);
        vc[dst + i] = from_f<T>(vr[i]);
    }
}

void cuda_qk_rope_kv(struct backend *be, struct tensor *q, struct tensor *k, const struct tensor *v,
                     const struct tensor *q_norm, const struct tensor *k_norm, float eps, float w_offset, int n_heads,
                     int n_kv, const struct tensor *inv_freq, const struct rope_params *rp, struct kv_layer *kv,
                     const struct batch_meta *m)
{
    struct cuda_backend *cb = cuda_of(be);
    const int hd = rp->head_dim;
    CHECK(!q_norm == !k_norm && (!q_norm || q_norm->dtype == k_norm->dtype), "cuda qk_rope_kv: q and k norms differ");
    const int threads = hd >= 128 ? 128 : hd >= 64 ? 64 : 32;
    dim3 grid(m->n_tok, n_heads + n_kv);
    size_t smem = sizeof(float) * (size_t)hd;
    enum dtype wdt = q_norm ? q_norm->dtype : DTYPE_F32;
    DISPATCH_KV(kv->k.dtype, T, DISPATCH_FLOAT(wdt, W, launch_pdl_smem(cb, k_qk_rope_kv<T, W>, grid,
        dim3(threads), smem, (float *)dptr(q), (const float *)dptr(k), (const float *)dptr(v), (T *)dptr(&kv->k), (T *)dptr(&kv->v),
        q_norm ? (const W *)dptr(q_norm) : (const W *)NULL, k_norm ? (const W *)dptr(k_norm) : (const W *)NULL, eps,
        w_offset, cb->batch.d_tok_pos, cb->batch.d_tok_slot, (const float *)dptr(inv_freq), n_heads, n_kv, hd,
        rp->rot_dim, rp->mscale, rp->interleaved)));
    LAUNCH_CHECK();
}

/* ---- kv_write ---- */
template <typename T>
__global__ void k_kv_write(T *kc, T *vc, const float *k, const float *v, const int64_t *slot, int row)
{
    int t = blockIdx.x;
    size_t dst = (size_t)slot[t] * row;
    for (int i = blockIdx.y * blockDim.x + threadIdx.x; i < row; i += gridDim.y * blockDim.x) {
        kc[dst + i] = from_f<T>(k[(size_t)t * row + i]);
        vc[dst + i] = from_f<T>(v[(size_t)t * row + i]);
    }
}

void cuda_kv_write(struct backend *be, struct kv_layer *kv, const struct tensor *k, const struct tensor *v,
                   const struct batch_meta *m)
{
    struct cuda_backend *cb = cuda_of(be);
    int row = (int)kv->k.ne[0];
    int parts = m->n_tok >= 64 ? 1 : (row + 127) / 128;   // few tokens: spread each row over blocks
    DISPATCH_KV(kv->k.dtype, T, k_kv_write<T><<<dim3(m->n_tok, parts), 128, 0, cb->stream>>>(
        (T *)dptr(&kv->k), (T *)dptr(&kv->v), (const float *)dptr(k), (const float *)dptr(v), cb->batch.d_tok_slot, row));
    LAUNCH_CHECK();
}

/* ---- glu, add, softcap ---- */
__global__ void k_glu(float *out, const float *gate, const float *up, size_t n, int act)
{
    pdl_trigger();   // a GEMV usually follows (see cuda_common.cuh)
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = glu_act(gate[i], act) * up[i];
}

static int grid_for(size_t n) { size_t g = (n + 255) / 256; return (int)(g > 65535 ? 65535 : g ? g : 1); }

void cuda_glu(struct backend *be, struct tensor *out, const struct tensor *gate, const struct tensor *up, enum act act)
{
    size_t n = (size_t)tensor_nelem(out);
    k_glu<<<grid_for(n), 256, 0, cuda_of(be)->stream>>>((float *)dptr(out), (const float *)dptr(gate),
                                                        (const float *)dptr(up), n, (int)act);
    LAUNCH_CHECK();
}

__global__ void k_add(float *out, const float *a, const float *b, size_t n)
{
    pdl_trigger();   // a GEMV usually follows (see cuda_common.cuh)
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = a[i] + b[i];
}

void cuda_add(struct backend *be, struct tensor *out, const struct tensor *a, const struct tensor *b)
{
    size_t n = (size_t)tensor_nelem(out);
    k_add<<<grid_for(n), 256, 0, cuda_of(be)->stream>>>((float *)dptr(out), (const float *)dptr(a),
                                                        (const float *)dptr(b), n);
    LAUNCH_CHECK();
}

__global__ void k_softcap(float *x, size_t n, float cap)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] = cap * tanhf(x[i] / cap);
}

void cuda_softcap(struct backend *be, struct tensor *x, float cap)
{
    size_t n = (size_t)tensor_nelem(x);
    k_softcap<<<grid_for(n), 256, 0, cuda_of(be)->stream>>>((float *)dptr(x), n, cap);
    LAUNCH_CHECK();
}

/* ---- argmax: one block per row; ties go to the lower index ---- */
/* Index of each row's largest value (the lowest index among equals). One block per row; 16-byte
 * loads, eight in flight per thread (a scalar loop took 63 us for a 152K vocabulary on H100). */
#define ARGMAX_U 8
__device__ __forceinline__ void argmax_take(float v, int i, float &best, int &bi)
{
    if (v > best || (v == best && i < bi)) { best = v; bi = i; }
}

__global__ void k_argmax(int32_t *out, const float *x, int n)
{
    const float *row = x + (size_t)blockIdx.x * n;
    float best = -INFINITY;
    int bi = 0x7fffffff;
    const bool vec = ((uintptr_t)row & 15) == 0;
    const int n4 = vec ? n / 4 : 0;
    const float4 *r4 = reinterpret_cast<const float4 *>(row);
    for (int i0 = threadIdx.x; i0 < n4; i0 += blockDim.x * ARGMAX_U) {
        float4 v[ARGMAX_U];
#pragma unroll
        for (int u = 0; u < ARGMAX_U; u++) {
            const int i = i0 + u * blockDim.x;
            v[u] = i < n4 ? r4[i] : make_float4(-INFINITY, -INFINITY, -INFINITY, -INFINITY);
        }
#pragma unroll
        for (int u = 0; u < ARGMAX_U; u++) {
            const int i = 4 * (i0 + u * blockDim.x);
            argmax_take(v[u].x, i, best, bi);
            argmax_take(v[u].y, i + 1, best, bi);
            argmax_take(v[u].z, i + 2, best, bi);
            argmax_take(v[u].w, i + 3, best, bi);
        }
    }
    for (int i = 4 * n4 + threadIdx.x; i < n; i += blockDim.x) argmax_take(row[i], i, best, bi);
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, best, o);
        int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        argmax_take(ov, oi, best, bi);
    }
    __shared__ float sv[32];
    __shared__ int si[32];
    if ((threadIdx.x & 31) == 0) { sv[threadIdx.x >> 5] = best; si[threadIdx.x >> 5] = bi; }
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < (int)(blockDim.x >> 5); w++) argmax_take(sv[w], si[w], best, bi);
        out[blockIdx.x] = bi == 0x7fffffff ? 0 : bi;
    }
}

void cuda_argmax(struct backend *be, int32_t *out_ids, const struct tensor *logits)
{
    struct cuda_backend *cb = cuda_of(be);
    int rows = (int)tensor_rows(logits), n = (int)logits->ne[0];
    if (rows > cb->argmax_cap) {
        cuda_mem_free(cb, cb->d_argmax);
        cb->argmax_cap = rows * 2;
        cb->d_argmax = (int32_t *)cuda_mem_alloc_or_die(cb, sizeof(int32_t) * (size_t)cb->argmax_cap);
    }
    k_argmax<<<rows, 1024, 0, cb->stream>>>(cb->d_argmax, (const float *)dptr(logits), n);
    LAUNCH_CHECK();
    CUDA_CHECK(cudaMemcpyAsync(out_ids, cb->d_argmax, sizeof(int32_t) * (size_t)rows, cudaMemcpyDeviceToHost, cb->stream));
    cuda_stream_wait(cb);   // synchronous by contract, outside a step's recorded part
}

/* ---- logits_mask: constrained rows' disallowed ids to -inf ---- */
/* A thread per logit: the 32 threads of a warp read one mask word (a broadcast) and write only
 * the ids it disallows. */
__global__ void k_logits_mask(float *logits, size_t row_stride, int n_ids, const int32_t *rows, const uint32_t *words,
                              int n_words)
{
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n_ids) return;
    const uint32_t w = words[(size_t)blockIdx.y * n_words + (j >> 5)];
    if (!(w >> (j & 31) & 1u)) logits[(size_t)rows[blockIdx.y] * row_stride + j] = -INFINITY;
}

/* Rows and masks go through one pinned pack [n rows][pad to 16 bytes][n * n_words words] and one
 * copy. The pack is rewritten only once the previous copy has finished (an event; the step's own
 * argmax or download has normally waited for it already), and grows rarely (each growth is a
 * device allocation, which makes recorded step graphs stale once). */
void cuda_logits_mask(struct backend *be, struct tensor *logits, int n, const int32_t *rows, const uint32_t *words)
{
    struct cuda_backend *cb = cuda_of(be);
    if (n <= 0) return;
    CHECK(logits->dtype == DTYPE_F32 && logits->nb[0] == sizeof(float), "logits_mask: f32 rows expected");
    const int n_ids = (int)logits->ne[0], n_words = (n_ids + 31) / 32, n_rows = (int)tensor_rows(logits);
    for (int i = 0; i < n; i++) CHECK(rows[i] >= 0 && rows[i] < n_rows, "logits_mask: row %d of %d", rows[i], n_rows);
    const size_t words_off = ((size_t)n * sizeof(int32_t) + 15) & ~(size_t)15;
    const size_t bytes = words_off + (size_t)n * n_words * sizeof(uint32_t);
    if (!cb->mask_copied) CUDA_CHECK(cudaEventCreateWithFlags(&cb->mask_copied, cudaEventDisableTiming));
    cuda_staging_fit(cb, &cb->h_mask, &cb->d_mask, &cb->mask_bytes, bytes);
    CUDA_CHECK(cudaEventSynchronize(cb->mask_copied));
    memcpy(cb->h_mask, rows, (size_t)n * sizeof(int32_t));
    memcpy((char *)cb->h_mask + words_off, words, (size_t)n * n_words * sizeof(uint32_t));
    CUDA_CHECK(cudaMemcpyAsync(cb->d_mask, cb->h_mask, bytes, cudaMemcpyHostToDevice, cb->stream));
    CUDA_CHECK(cudaEventRecord(cb->mask_copied, cb->stream));
    dim3 grid((unsigned)((n_ids + 255) / 256), (unsigned)n);
    k_logits_mask<<<grid, 256, 0, cb->stream>>>((float *)dptr(logits), logits->nb[1] / sizeof(float), n_ids,
                                                (const int32_t *)cb->d_mask,
                                                (const uint32_t *)((const char *)cb->d_mask + words_off), n_words);
    LAUNCH_CHECK();
}
