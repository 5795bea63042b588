/* gdn: the Gated DeltaNet ops of the cuda backend (contracts in backend/backend.h): the causal
 * conv with its rolling state, the delta rule in its recurrent form, the gated RMSNorm and the
 * sigmoid gate. Plain f32 kernels, the first correct version: the chunked tensor-core prefill and
 * a fused decode step are the next steps (qwen35-arch.md section 3.7).
 *
 * Design note: a sequence's tokens are walked in order by the block that owns its state, so a step
 * may mix prefill chunks and decode tokens of many sequences. gdn_recurrent: one block per
 * (sequence, value head), one thread per column of S ([dk][dv] in the state slot, f32), so every
 * pass over S is a coalesced sweep of its rows; q and k (L2-normalised) sit in shared memory.
 */
#include "backend/cuda/cuda_common.cuh"

#include <math.h>

#define GDN_MAX_CONV_TAPS 16

__device__ __forceinline__ float silu_f(float x) { return x / (1.0f + expf(-x)); }

/* Sum over the block (blockDim.x a multiple of 32, at most 1024); red: 32 floats of shared memory. */
__device__ __forceinline__ float block_sum(float v, float *red)
{
    v = warp_sum(v);
    __syncthreads();   // red may still be read by a previous call
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float s = threadIdx.x < (blockDim.x >> 5) ? red[threadIdx.x] : 0.0f;
    if (threadIdx.x < 32) s = warp_sum(s);
    if (threadIdx.x == 0) red[0] = s;
    __syncthreads();
    return red[0];
}

/* ---- conv: grid (channel blocks, sequences), one thread per channel ---- */
template <typename T>
__global__ void k_gdn_conv(float *out, const float *x, const T *w, float *conv_state, const int32_t *tok_seq,
                           const int32_t *tok_pos, const int32_t *seq_slot, int n_tok, int C, int K)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x, s = blockIdx.y;
    if (c >= C) return;
    float *hist = conv_state + (size_t)seq_slot[s] * (size_t)(K - 1) * C;   // [K-1][C], oldest first
    float taps[GDN_MAX_CONV_TAPS], h[GDN_MAX_CONV_TAPS];
    for (int j = 0; j < K; j++) taps[j] = to_f<T>(w[(size_t)c * K + j]);
    for (int j = 0; j < K - 1; j++) h[j] = hist[(size_t)j * C + c];
    for (int t = 0; t < n_tok; t++) {
        if (tok_seq[t] != s) continue;
        if (tok_pos[t] == 0)
            for (int j = 0; j < K - 1; j++) h[j] = 0.0f;
        float xv = x[(size_t)t * C + c];
        float acc = taps[K - 1] * xv;
        for (int j = 0; j < K - 1; j++) acc += taps[j] * h[j];
        out[(size_t)t * C + c] = silu_f(acc);
        for (int j = 0; j + 1 < K - 1; j++) h[j] = h[j + 1];
        if (K > 1) h[K - 2] = xv;
    }
    for (int j = 0; j < K - 1; j++) hist[(size_t)j * C + c] = h[j];
}

void cuda_gdn_conv(struct backend *be, struct tensor *out, const struct tensor *x, const struct tensor *w,
                   struct gdn_state_layer *st, const struct batch_meta *m)
{
    struct cuda_backend *cb = cuda_of(be);
    int C = (int)x->ne[0], K = (int)w->ne[0];
    CHECK(out->dtype == DTYPE_F32 && x->dtype == DTYPE_F32 && st->conv.dtype == DTYPE_F32, "gdn_conv: f32 only");
    CHECK(w->ne[1] == 1 && w->ne[2] == C && out->ne[0] == C && st->conv.ne[0] == (int64_t)(K - 1) * C,
          "gdn_conv: shapes");
    CHECK(K >= 1 && K <= GDN_MAX_CONV_TAPS, "gdn_conv: %d taps (at most %d)", K, GDN_MAX_CONV_TAPS);
    CHECK(m->seq_state_slot && tensor_is_contiguous(x) && tensor_is_contiguous(out), "gdn_conv: layout");
    dim3 grid((C + 127) / 128, m->n_seq);
    DISPATCH_FLOAT(w->dtype, T, k_gdn_conv<T><<<grid, 128, 0, cb->stream>>>(
        (float *)dptr(out), (const float *)dptr(x), (const T *)dptr(w), (float *)dptr(&st->conv),
        cb->batch.d_tok_seq, cb->batch.d_tok_pos, cb->batch.d_seq_state_slot, m->n_tok, C, K));
    LAUNCH_CHECK();
}

/* ---- delta rule: grid (sequences * value heads), one thread per column of S ---- */
template <typename T>
__global__ void k_gdn_recurrent(float *out, const float *q, const float *k, const float *v, const float *a,
                                const float *b, const T *a_log, const T *dt_bias, float *ssm, const int32_t *tok_seq,
                                const int32_t *tok_pos, const int32_t *seq_slot, int n_tok, int nk, int nv, int dk,
                                int dv, size_t ldq, size_t ldk, size_t ldv, size_t lda, size_t ldb)
{
    extern __shared__ float smem[];   // qn[dk], kn[dk]
    __shared__ float red[32];
    float *qn = smem, *kn = smem + dk;
    int s = blockIdx.x / nv, h = blockIdx.x % nv, kh = h / (nv / nk);
    int c = threadIdx.x;
    float *S = ssm + (size_t)seq_slot[s] * (size_t)nv * dk * dv + (size_t)h * dk * dv;   // [dk][dv]
    float neg_a = -expf(to_f<T>(a_log[h])), dtb = to_f<T>(dt_bias[h]);
    float qscale = rsqrtf((float)dk);
    for (int t = 0; t < n_tok; t++) {
        if (tok_seq[t] != s) continue;   // uniform over the block
        float sq = 0.0f, sk = 0.0f;
        for (int i = threadIdx.x; i < dk; i += blockDim.x) {
            float qv = q[(size_t)t * ldq + (size_t)kh * dk + i], kv = k[(size_t)t * ldk + (size_t)kh * dk + i];
            qn[i] = qv;
            kn[i] = kv;
            sq += qv * qv;
            sk += kv * kv;
        }
        sq = block_sum(sq, red);   // its barriers also publish qn, kn
        sk = block_sum(sk, red);
        float iq = qscale * rsqrtf(sq + 1e-6f), ik = rsqrtf(sk + 1e-6f);
        float ah = a[(size_t)t * lda + h] + dtb;
        float g = neg_a * (ah > 20.0f ? ah : log1pf(expf(ah)));
        float beta = 1.0f / (1.0f + expf(-b[(size_t)t * ldb + h])), decay = expf(g);
        if (c < dv) {
            if (tok_pos[t] == 0)
                for (int r = 0; r < dk; r++) S[(size_t)r * dv + c] = 0.0f;
            float mm = 0.0f;
            for (int r = 0; r < dk; r++) {   // S = decay S; m = S^T k
                float sv = S[(size_t)r * dv + c] * decay;
                S[(size_t)r * dv + c] = sv;
                mm += sv * kn[r] * ik;
            }
            float delta = beta * (v[(size_t)t * ldv + (size_t)h * dv + c] - mm);
            float o = 0.0f;
            for (int r = 0; r < dk; r++) {   // S += k delta^T; o = S^T q
                float sv = S[(size_t)r * dv + c] + kn[r] * ik * delta;
                S[(size_t)r * dv + c] = sv;
                o += sv * qn[r] * iq;
            }
            out[(size_t)t * nv * dv + (size_t)h * dv + c] = o;
        }
        __syncthreads();   // qn, kn are rewritten for the next token
    }
}

void cuda_gdn_recurrent(struct backend *be, struct tensor *out, const struct tensor *q, const struct tensor *k,
                        const struct tensor *v, const struct tensor *a, const struct tensor *b,
                        const struct tensor *a_log, const struct tensor *dt_bias, struct gdn_state_layer *st,
                        const struct gdn_params *p, const struct batch_meta *m)
{
    struct cuda_backend *cb = cuda_of(be);
    int nk = p->n_k_heads, nv = p->n_v_heads, dk = p->k_dim, dv = p->v_dim;
    CHECK(nk > 0 && nv % nk == 0, "gdn_recurrent: %d value heads over %d key heads", nv, nk);
    CHECK(out->dtype == DTYPE_F32 && q->dtype == DTYPE_F32 && k->dtype == DTYPE_F32 && v->dtype == DTYPE_F32 &&
          a->dtype == DTYPE_F32 && b->dtype == DTYPE_F32 && st->ssm.dtype == DTYPE_F32 && a_log->dtype == dt_bias->dtype,
          "gdn_recurrent: dtypes");
    CHECK(q->ne[0] == (int64_t)nk * dk && k->ne[0] == (int64_t)nk * dk && v->ne[0] == (int64_t)nv * dv &&
          out->ne[0] == (int64_t)nv * dv && a->ne[0] == nv && b->ne[0] == nv && a_log->ne[0] == nv &&
          dt_bias->ne[0] == nv && st->ssm.ne[0] == (int64_t)nv * dk * dv && tensor_is_contiguous(out),
          "gdn_recurrent: shapes");
    CHECK(dv <= 1024 && m->seq_state_slot, "gdn_recurrent: value head dim %d (at most 1024)", dv);
    int threads = (dv + 31) / 32 * 32;
    size_t smem = sizeof(float) * 2 * (size_t)dk;
    if (smem > 48 * 1024) {
        CHECK(smem <= cb->smem_optin, "gdn_recurrent: key head dim %d too large", dk);
        DISPATCH_FLOAT(a_log->dtype, T, CUDA_CHECK(cudaFuncSetAttribute(
            k_gdn_recurrent<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem)));
    }
    size_t f = sizeof(float);
    DISPATCH_FLOAT(a_log->dtype, T, k_gdn_recurrent<T><<<m->n_seq * nv, threads, smem, cb->stream>>>(
        (float *)dptr(out), (const float *)dptr(q), (const float *)dptr(k), (const float *)dptr(v),
        (const float *)dptr(a), (const float *)dptr(b), (const T *)dptr(a_log), (const T *)dptr(dt_bias),
        (float *)dptr(&st->ssm), cb->batch.d_tok_seq, cb->batch.d_tok_pos, cb->batch.d_seq_state_slot, m->n_tok, nk,
        nv, dk, dv, q->nb[1] / f, k->nb[1] / f, v->nb[1] / f, a->nb[1] / f, b->nb[1] / f));
    LAUNCH_CHECK();
}

/* ---- gated RMSNorm: grid (rows, heads), one block per head of dv ---- */
template <typename T>
__global__ void k_rmsnorm_gated(float *out, const float *x, const float *z, const T *w, int width, int dv, float eps)
{
    __shared__ float red[32];
    size_t base = (size_t)blockIdx.x * width + (size_t)blockIdx.y * dv;
    float ss = 0.0f;
    for (int j = threadIdx.x; j < dv; j += blockDim.x) ss += x[base + j] * x[base + j];
    ss = block_sum(ss, red);
    float inv = rsqrtf(ss / (float)dv + eps);
    for (int j = threadIdx.x; j < dv; j += blockDim.x)
        out[base + j] = to_f<T>(w[j]) * (x[base + j] * inv) * silu_f(z[base + j]);
}

void cuda_rmsnorm_gated(struct backend *be, struct tensor *out, const struct tensor *x, const struct tensor *z,
                        const struct tensor *w, float eps)
{
    struct cuda_backend *cb = cuda_of(be);
    int dv = (int)w->ne[0], width = (int)x->ne[0], rows = (int)tensor_rows(x);
    CHECK(out->dtype == DTYPE_F32 && x->dtype == DTYPE_F32 && z->dtype == DTYPE_F32, "rmsnorm_gated: f32 only");
    CHECK(width % dv == 0 && z->ne[0] == width && out->ne[0] == width && tensor_is_contiguous(x) &&
          tensor_is_contiguous(z) && tensor_is_contiguous(out), "rmsnorm_gated: shapes");
    if (rows == 0) return;
    int threads = dv >= 256 ? 256 : dv >= 128 ? 128 : dv >= 64 ? 64 : 32;
    DISPATCH_FLOAT(w->dtype, T, k_rmsnorm_gated<T><<<dim3(rows, width / dv), threads, 0, cb->stream>>>(
        (float *)dptr(out), (const float *)dptr(x), (const float *)dptr(z), (const T *)dptr(w), width, dv, eps));
    LAUNCH_CHECK();
}

/* ---- sigmoid gate ---- */
__global__ void k_sigmoid_mul(float *out, const float *x, const float *g, size_t n, int m, int gm)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        size_t row = i / m;
        float gv = gm == 1 ? g[row] : g[i];
        out[i] = x[i] / (1.0f + expf(-gv));
    }
}

void cuda_sigmoid_mul(struct backend *be, struct tensor *out, const struct tensor *x, const struct tensor *g)
{
    struct cuda_backend *cb = cuda_of(be);
    int m = (int)x->ne[0], gm = (int)g->ne[0];
    size_t n = (size_t)tensor_nelem(x);
    CHECK(out->dtype == DTYPE_F32 && x->dtype == DTYPE_F32 && g->dtype == DTYPE_F32, "sigmoid_mul: f32 only");
    CHECK(out->ne[0] == m && (gm == m || gm == 1) && tensor_is_contiguous(x) && tensor_is_contiguous(g) &&
          tensor_is_contiguous(out), "sigmoid_mul: shapes");
    if (n == 0) return;
    int blocks = (int)((n + 255) / 256 < 4096 ? (n + 255) / 256 : 4096);
    k_sigmoid_mul<<<blocks, 256, 0, cb->stream>>>((float *)dptr(out), (const float *)dptr(x), (const float *)dptr(g),
                                                  n, m, gm);
    LAUNCH_CHECK();
}
