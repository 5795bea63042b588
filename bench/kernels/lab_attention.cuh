/* lab_attention: one attention case for the kernel lab (attention_decode.cu, attention_prefill.cu):
 * a paged cache with shuffled blocks (as a pool hands them out), the step's batch_meta as the
 * engine builds it, and a reference kernel.
 *
 * Case: n_seq sequences of ctx cached tokens plus n_new new ones each (decode: n_new = 1; a
 * prompt: ctx = 0). The whole cache is random (the new tokens' K/V count as written by kv_write).
 * Reference: a block per (token, query head): scores in f32 into a scratch row, softmax, P.V.
 */
#ifndef CAIRN_BENCH_KERNELS_LAB_ATTENTION_CUH
#define CAIRN_BENCH_KERNELS_LAB_ATTENTION_CUH

#include "lab.cuh"

struct att_case {
    const char *name;
    int         n_seq, ctx, n_new;
    int         n_heads, n_kv, hd;
    enum dtype  kv_dtype;
};

struct att_setup {
    struct lab_tensor  q, out, ref, k, v, scratch;
    struct kv_layer    kv;
    struct batch_meta  m;
    struct attn_params ap;
    int32_t           *pos, *seq, *seq_len, *seq_block0, *blocks;
    int64_t           *slot;
    int                len;     // tokens per sequence after the step
    double             pairs;   // visible (query, key) pairs
};

template <typename T>
__global__ void ref_attention(float *out, float *scratch, const float *q, const T *kc, const T *vc, const int32_t *pos,
                              const int32_t *seq, const int32_t *blocks, int bps, int bs, int n_heads, int n_kv, int hd,
                              int len, float scale)
{
    const int t = blockIdx.x, h = blockIdx.y, kvh = h / (n_heads / n_kv), p = pos[t];
    const float *qr = q + ((size_t)t * n_heads + h) * hd;
    float *sc = scratch + ((size_t)t * n_heads + h) * len;
    const int32_t *bl = blocks + (size_t)seq[t] * bps;
    __shared__ float red[256];
    float mx = -INFINITY;
    for (int j = threadIdx.x; j <= p; j += blockDim.x) {
        const size_t row = ((size_t)bl[j / bs] * bs + j % bs) * n_kv + kvh;
        float s = 0;
        for (int d = 0; d < hd; d++) s += qr[d] * lab_f<T>(kc[row * hd + d]);
        sc[j] = s * scale;
        mx = fmaxf(mx, sc[j]);
    }
    red[threadIdx.x] = mx;
    __syncthreads();
    for (int o = blockDim.x / 2; o > 0; o >>= 1) {
        if (threadIdx.x < o) red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + o]);
        __syncthreads();
    }
    mx = red[0];
    __syncthreads();
    float sum = 0;
    for (int j = threadIdx.x; j <= p; j += blockDim.x) sum += (sc[j] = expf(sc[j] - mx));
    red[threadIdx.x] = sum;
    __syncthreads();
    for (int o = blockDim.x / 2; o > 0; o >>= 1) {
        if (threadIdx.x < o) red[threadIdx.x] += red[threadIdx.x + o];
        __syncthreads();
    }
    sum = red[0];
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float acc = 0;
        for (int j = 0; j <= p; j++) {
            const size_t row = ((size_t)bl[j / bs] * bs + j % bs) * n_kv + kvh;
            acc += sc[j] * lab_f<T>(vc[row * hd + d]);
        }
        out[((size_t)t * n_heads + h) * hd + d] = acc / sum;
    }
}

static uint64_t att_mix(uint64_t x) { return hash_mix64(x); }

static inline void att_setup_new(struct backend *be, const struct att_case *c, struct att_setup *s)
{
    const int bs = 16;
    s->len = c->ctx + c->n_new;
    const int bps = (s->len + bs - 1) / bs, n_blocks = bps * c->n_seq, n_tok = c->n_new * c->n_seq;
    s->blocks = (int32_t *)malloc(sizeof(int32_t) * (size_t)n_blocks);
    for (int i = 0; i < n_blocks; i++) s->blocks[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) {
        int j = (int)(att_mix((uint64_t)i + 77) % (uint64_t)(i + 1));
        int32_t t = s->blocks[i]; s->blocks[i] = s->blocks[j]; s->blocks[j] = t;
    }
    s->seq_len = (int32_t *)malloc(sizeof(int32_t) * (size_t)c->n_seq);
    s->seq_block0 = (int32_t *)malloc(sizeof(int32_t) * (size_t)(c->n_seq + 1));
    for (int i = 0; i <= c->n_seq; i++) s->seq_block0[i] = i * bps;
    for (int i = 0; i < c->n_seq; i++) s->seq_len[i] = s->len;
    s->pos = (int32_t *)malloc(sizeof(int32_t) * (size_t)n_tok);
    s->seq = (int32_t *)malloc(sizeof(int32_t) * (size_t)n_tok);
    s->slot = (int64_t *)malloc(sizeof(int64_t) * (size_t)n_tok);
    s->pairs = 0;
    for (int q = 0, t = 0; q < c->n_seq; q++)
        for (int p = c->ctx; p < s->len; p++, t++) {
            s->pos[t] = p;
            s->seq[t] = q;
            s->slot[t] = (int64_t)s->blocks[q * bps + p / bs] * bs + p % bs;
            s->pairs += p + 1;
        }
    const int64_t qw = (int64_t)c->n_heads * c->hd, kw = (int64_t)c->n_kv * c->hd;
    s->q = lab_tensor_new(be, DTYPE_F32, qw, n_tok);
    s->out = lab_tensor_new(be, DTYPE_F32, qw, n_tok);
    s->ref = lab_tensor_new(be, DTYPE_F32, qw, n_tok);
    s->k = lab_tensor_new(be, c->kv_dtype, kw, (int64_t)n_blocks * bs);
    s->v = lab_tensor_new(be, c->kv_dtype, kw, (int64_t)n_blocks * bs);
    s->scratch = lab_tensor_new(be, DTYPE_F32, s->len, (int64_t)n_tok * c->n_heads);
    lab_fill(&s->q, 1, 2.0f);
    lab_fill(&s->k, 2, 1.0f);
    lab_fill(&s->v, 3, 1.0f);
    s->kv.k = s->k.t;
    s->kv.v = s->v.t;
    s->m = { n_tok, s->pos, s->pos, s->seq, s->slot, c->n_seq, s->seq_len, s->seq_block0,
                                s->blocks, 0, s->pos, bs };
    s->ap = { c->n_heads, c->n_kv, c->hd, 1.0f / sqrtf((float)c->hd), 0, 0.0f };

    // the reference reads the block table per sequence: upload it (and positions) once
    int32_t *d_pos, *d_seq, *d_blocks;
    LAB_CHECK(cudaMalloc(&d_pos, sizeof(int32_t) * (size_t)n_tok));
    LAB_CHECK(cudaMalloc(&d_seq, sizeof(int32_t) * (size_t)n_tok));
    LAB_CHECK(cudaMalloc(&d_blocks, sizeof(int32_t) * (size_t)n_blocks));
    LAB_CHECK(cudaMemcpy(d_pos, s->pos, sizeof(int32_t) * (size_t)n_tok, cudaMemcpyHostToDevice));
    LAB_CHECK(cudaMemcpy(d_seq, s->seq, sizeof(int32_t) * (size_t)n_tok, cudaMemcpyHostToDevice));
    LAB_CHECK(cudaMemcpy(d_blocks, s->blocks, sizeof(int32_t) * (size_t)n_blocks, cudaMemcpyHostToDevice));
    dim3 grid(n_tok, c->n_heads);
#define REF(T) ref_attention<T><<<grid, 256>>>((float *)lab_ptr(&s->ref), (float *)lab_ptr(&s->scratch), \
        (const float *)lab_ptr(&s->q), (const T *)lab_ptr(&s->k), (const T *)lab_ptr(&s->v), d_pos, d_seq, d_blocks, bps, \
        bs, c->n_heads, c->n_kv, c->hd, s->len, s->ap.scale)
    switch (c->kv_dtype) {
    case DTYPE_F32: REF(float); break;
    case DTYPE_F16: REF(__half); break;
    case DTYPE_BF16: REF(__nv_bfloat16); break;
    default: REF(__nv_fp8_e4m3); break;
    }
#undef REF
    LAB_CHECK(cudaDeviceSynchronize());
    LAB_CHECK(cudaFree(d_pos));
    LAB_CHECK(cudaFree(d_seq));
    LAB_CHECK(cudaFree(d_blocks));
}

static inline void att_setup_free(struct backend *be, struct att_setup *s)
{
    lab_tensor_free(be, &s->q); lab_tensor_free(be, &s->out); lab_tensor_free(be, &s->ref);
    lab_tensor_free(be, &s->k); lab_tensor_free(be, &s->v); lab_tensor_free(be, &s->scratch);
    free(s->pos); free(s->seq); free(s->slot); free(s->seq_len); free(s->seq_block0); free(s->blocks);
}

/* Times the backend's attention on the case and prints one lab line. Bytes: every visible K and V
 * row once per (token, KV head) for decode-like steps (the cache stream), q and out once. */
static inline void att_run(struct backend *be, const char *kernel, const struct att_case *c, const char *version,
                           int reps, double tol)
{
    struct att_setup s;
    att_setup_new(be, c, &s);
    be->ops->batch_begin(be, &s.m);
    double t = lab_time(be, reps, [&] { be->ops->attention(be, &s.out.t, &s.q.t, &s.kv, &s.ap, &s.m); });
    const size_t n_out = (size_t)s.m.n_tok * c->n_heads * c->hd;
    double err = lab_rel_err((const float *)lab_ptr(&s.out), (const float *)lab_ptr(&s.ref), n_out);
    double kv_bytes = (double)c->n_seq * s.len * c->n_kv * c->hd * 2.0 * dtype_size(c->kv_dtype);
    char name[80];
    snprintf(name, sizeof name, "%s %s seqs=%d ctx=%d new=%d", c->name, dtype_name(c->kv_dtype), c->n_seq, c->ctx,
             c->n_new);
    lab_print(kernel, name, version, t, kv_bytes + 8.0 * n_out, 4.0 * c->hd * c->n_heads * s.pairs, err, tol);
    att_setup_free(be, &s);
}

#endif
