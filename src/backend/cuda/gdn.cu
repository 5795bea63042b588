/* gdn: the Gated DeltaNet ops of the cuda backend (contracts in backend/backend.h): the causal
 * conv with its rolling state, the delta rule, the gated RMSNorm and the sigmoid gate. All f32.
 *
 * Design note: the delta rule has three forms, chosen per step (cuda_gdn_recurrent): a step of one
 * token per sequence takes k_gdn_decode (S read and written once, from registers); a step with a
 * run of GDN_CHUNKED_MIN_RUN tokens of one sequence the chunked WY form of cpu_gdn.c (pieces
 * between multiples of GDN_CHUNK: everything that does not depend on S for all pieces in parallel,
 * then one pass over each sequence's pieces per 32 columns of S); any other step, and every step
 * in cuda-deterministic, k_gdn_recurrent, where the block that owns a (sequence, value head) walks
 * the step's tokens in order, one thread per column of S. The conv runs over the step's tiles when
 * each sequence's tokens are one run of the batch, else one thread per channel walks the step.
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

/* ---- conv, any layout: grid (channel blocks, sequences), one thread per channel walks the step ---- */
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

/* ---- conv over runs: grid (channel blocks, tiles), then the states: grid (channel blocks, sequences) ----
 * When each sequence's tokens are one run of the batch (the engine's layout), a token's K - 1
 * inputs before it are the rows just above it back to the sequence's first token of the step, and
 * the conv state before that: every tile (batch_begin) starts from that history on its own, so a
 * prefill spreads over its tiles instead of one thread walking all its tokens. The states move in
 * a second launch, after every tile has read the old ones. */
__device__ __forceinline__ void conv_history(float *h, const float *x, const float *hist, const int32_t *tok_seq,
                                             const int32_t *tok_pos, int f, int K, int C, int c)
{
    const int s = tok_seq[f];
    int d0 = 1;   // the first distance back that leaves the sequence's run (or the batch)
    while (d0 < K && f - d0 >= 0 && tok_seq[f - d0] == s) d0++;
    const bool fresh = tok_pos[f] - (d0 - 1) == 0;   // the run starts the sequence
    for (int j = 0; j < K - 1; j++) {
        const int d = K - 1 - j;   // h[j]: the input d positions before token f
        if (d < d0) h[j] = x[(size_t)(f - d) * C + c];
        else h[j] = fresh ? 0.0f : hist[(size_t)(K - 1 - (d - d0 + 1)) * C + c];
    }
}

template <typename T>
__global__ void k_gdn_conv_runs(float *out, const float *x, const T *w, const float *conv_state, const int32_t *tiles,
                                const int32_t *tok_seq, const int32_t *tok_pos, const int32_t *seq_slot, int C, int K)
{
    const int c = blockIdx.x * blockDim.x + threadIdx.x, tl = blockIdx.y;
    if (c >= C) return;
    const int f = tiles[3 * tl], n = tiles[3 * tl + 1];
    const float *hist = conv_state + (size_t)seq_slot[tiles[3 * tl + 2]] * (size_t)(K - 1) * C;
    float taps[GDN_MAX_CONV_TAPS], h[GDN_MAX_CONV_TAPS];
    for (int j = 0; j < K; j++) taps[j] = to_f<T>(w[(size_t)c * K + j]);
    conv_history(h, x, hist, tok_seq, tok_pos, f, K, C, c);
    for (int t = f; t < f + n; t++) {
        const float xv = x[(size_t)t * C + c];
        float acc = taps[K - 1] * xv;
        for (int j = 0; j < K - 1; j++) acc += taps[j] * h[j];
        out[(size_t)t * C + c] = silu_f(acc);
        for (int j = 0; j + 1 < K - 1; j++) h[j] = h[j + 1];
        if (K > 1) h[K - 2] = xv;
    }
}

__global__ void k_gdn_conv_state(const float *x, float *conv_state, const int32_t *tiles, int n_tiles,
                                 const int32_t *tok_seq, const int32_t *tok_pos, const int32_t *seq_slot, int C, int K)
{
    const int c = blockIdx.x * blockDim.x + threadIdx.x, s = blockIdx.y;
    if (c >= C || K < 2) return;
    int last = -1;   // the sequence's last token of the step
    for (int tl = 0; tl < n_tiles; tl++)
        if (tiles[3 * tl + 2] == s) last = tiles[3 * tl] + tiles[3 * tl + 1] - 1;
    if (last < 0) return;
    float *hist = conv_state + (size_t)seq_slot[s] * (size_t)(K - 1) * C;
    float h[GDN_MAX_CONV_TAPS];
    conv_history(h, x, hist, tok_seq, tok_pos, last, K, C, c);   // reads this thread's old state first
    for (int j = 0; j + 1 < K - 1; j++) hist[(size_t)j * C + c] = h[j + 1];
    hist[(size_t)(K - 2) * C + c] = x[(size_t)last * C + c];
}

/* Each sequence's tokens one run of consecutive positions, the sequences in batch order (the
 * engine's add_item, the runner, the benchmarks)? */
static bool batch_in_runs(const struct batch_meta *m)
{
    for (int t = 1; t < m->n_tok; t++) {
        if (m->tok_seq[t] < m->tok_seq[t - 1]) return false;
        if (m->tok_seq[t] == m->tok_seq[t - 1] && m->tok_pos[t] != m->tok_pos[t - 1] + 1) return false;
    }
    return true;
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
    const struct cuda_batch *b = &cb->batch;
    if (m->tok_seq && m->tok_pos && batch_in_runs(m)) {
        DISPATCH_FLOAT(w->dtype, T, k_gdn_conv_runs<T><<<dim3((C + 127) / 128, b->n_tiles), 128, 0, cb->stream>>>(
            (float *)dptr(out), (const float *)dptr(x), (const T *)dptr(w), (const float *)dptr(&st->conv), b->d_tiles,
            b->d_tok_seq, b->d_tok_pos, b->d_seq_state_slot, C, K));
        k_gdn_conv_state<<<dim3((C + 127) / 128, m->n_seq), 128, 0, cb->stream>>>(
            (const float *)dptr(x), (float *)dptr(&st->conv), b->d_tiles, b->n_tiles, b->d_tok_seq, b->d_tok_pos,
            b->d_seq_state_slot, C, K);
        LAUNCH_CHECK();
        return;
    }
    dim3 grid((C + 127) / 128, m->n_seq);
    DISPATCH_FLOAT(w->dtype, T, k_gdn_conv<T><<<grid, 128, 0, cb->stream>>>(
        (float *)dptr(out), (const float *)dptr(x), (const T *)dptr(w), (float *)dptr(&st->conv),
        b->d_tok_seq, b->d_tok_pos, b->d_seq_state_slot, m->n_tok, C, K));
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

/* ---- delta rule, one decode token per sequence: grid (tokens, value heads, column groups of 32) ----
 * The state is read and written once, from registers: thread (c, rg) holds rows rg, rg + 8, ... of
 * column c (a warp reads 32 consecutive floats of a row), and the two sums over rows (S^T k, S^T q)
 * meet in shared memory. A batch-1 decode still spreads over nv * dv / 32 blocks, where
 * k_gdn_recurrent's block per head walks S twice with one thread per column. */
#define GDN_DECODE_ROW_GROUPS 8
#define GDN_DECODE_MAX_DK 128   // 16 rows of S per thread

template <typename T>
__global__ void __launch_bounds__(32 * GDN_DECODE_ROW_GROUPS)
k_gdn_decode(float *out, const float *q, const float *k, const float *v, const float *a, const float *b, const T *a_log,
             const T *dt_bias, float *ssm, const int32_t *tok_seq, const int32_t *tok_pos, const int32_t *seq_slot,
             int nk, int nv, int dk, int dv, size_t ldq, size_t ldk, size_t ldv, size_t lda, size_t ldb)
{
    constexpr int RG = GDN_DECODE_ROW_GROUPS, M = GDN_DECODE_MAX_DK / RG;
    __shared__ float qn[GDN_DECODE_MAX_DK], kn[GDN_DECODE_MAX_DK], part[RG][32], delta[32], red[32];
    const int t = blockIdx.x, h = blockIdx.y, kh = h / (nv / nk), tid = threadIdx.x;
    const int c = tid & 31, rg = tid >> 5, cg = blockIdx.z * 32 + c;
    const bool col_ok = cg < dv, fresh = tok_pos[t] == 0;
    float sq = 0.0f, sk = 0.0f;
    if (tid < dk) {
        const float qv = q[(size_t)t * ldq + (size_t)kh * dk + tid], kv = k[(size_t)t * ldk + (size_t)kh * dk + tid];
        qn[tid] = qv;
        kn[tid] = kv;
        sq = qv * qv;
        sk = kv * kv;
    }
    float *S = ssm + (size_t)seq_slot[tok_seq[t]] * nv * dk * dv + (size_t)h * dk * dv;
    float sv[M];
#pragma unroll
    for (int m = 0; m < M; m++) {
        const int r = rg + RG * m;
        sv[m] = r < dk && col_ok && !fresh ? S[(size_t)r * dv + cg] : 0.0f;
    }
    sq = block_sum(sq, red);   // its barriers also publish qn, kn
    sk = block_sum(sk, red);
    const float iq = rsqrtf((float)dk) * rsqrtf(sq + 1e-6f), ik = rsqrtf(sk + 1e-6f);
    const float ah = a[(size_t)t * lda + h] + to_f<T>(dt_bias[h]);
    const float g = -expf(to_f<T>(a_log[h])) * (ah > 20.0f ? ah : log1pf(expf(ah)));
    const float beta = 1.0f / (1.0f + expf(-b[(size_t)t * ldb + h])), decay = expf(g);
    float mm = 0.0f;
#pragma unroll
    for (int m = 0; m < M; m++) {   // S = decay S; m = S^T k
        const int r = rg + RG * m;
        sv[m] *= decay;
        if (r < dk) mm += sv[m] * kn[r] * ik;
    }
    part[rg][c] = mm;
    __syncthreads();
    if (rg == 0) {
        float s = 0.0f;
        for (int j = 0; j < RG; j++) s += part[j][c];
        delta[c] = col_ok ? beta * (v[(size_t)t * ldv + (size_t)h * dv + cg] - s) : 0.0f;
    }
    __syncthreads();
    const float dl = delta[c];
    float o = 0.0f;
#pragma unroll
    for (int m = 0; m < M; m++) {   // S += k delta^T; o = S^T q
        const int r = rg + RG * m;
        if (r < dk) {
            sv[m] += kn[r] * ik * dl;
            o += sv[m] * qn[r] * iq;
            if (col_ok) S[(size_t)r * dv + cg] = sv[m];
        }
    }
    part[rg][c] = o;   // every thread read part before the barrier above
    __syncthreads();
    if (rg == 0 && col_ok) {
        float s = 0.0f;
        for (int j = 0; j < RG; j++) s += part[j][c];
        out[(size_t)t * nv * dv + (size_t)h * dv + cg] = s;
    }
}

/* ---- delta rule, chunked (WY) form for prefill: qwen35-arch.md 3.7, cpu_gdn.c: rec_chunk ----
 * A piece is up to GDN_CHUNK consecutive positions of one sequence between multiples of GDN_CHUNK:
 * the step's tiles (batch_begin: runs of consecutive positions of one sequence, at most
 * GDN_TILE_MAX tokens) cut at those multiples, so a tile holds at most GDN_TILE_PIECES pieces. With
 * G_i = g_1 + ... + g_i inside a piece of L tokens, q and k L2-normalised (q times dk^-0.5):
 *   A_ij = beta_i (k_i.k_j) e^(G_i - G_j) (j < i);  T = (I + A)^-1;
 *   U = T diag(beta) V;  W = T diag(beta e^G) K;  P_ij = (q_i.k_j) e^(G_i - G_j) (j <= i);
 *   V' = U - W S;  O = diag(e^G) Q S + P V';  S = e^(G_L) S + (diag(e^(G_L - G)) K)^T V'.
 * k_gdn_chunk_prep computes everything that does not depend on S, every (piece, value head) in
 * parallel, into a workspace record per (token, value head): W row [dk], U row [dv], P row
 * [GDN_CHUNK], then e^G_i / |q_i| sqrt(dk), e^(G_L - G_i) / |k_i| (the scales of the raw q and k
 * rows) and e^G_L. k_gdn_chunk_state walks each sequence's pieces in order, one block per
 * (sequence, value head, 32 columns of S): the columns of S are independent, so a batch-1 prefill
 * still fills the GPU with nv * dv / 32 blocks. All f32: the results match the recurrent form to f32
 * rounding (tests/cuda/test_cuda_gdn). */
#define GDN_TILE_MAX 128           // batch_begin's tile cap
#define GDN_TILE_PIECES 3          // pieces of GDN_CHUNK positions a tile of GDN_TILE_MAX can touch
#define GDN_CHUNKED_MIN_RUN 16     // a step with a run this long of one sequence takes the chunked form
#define GDN_CHUNKED_MAX_DK 128     // k_gdn_chunk_state keeps dk / 8 rows of S per thread, 16 at most
#define GDN_CHUNKED_MAX_DV 256     // k_gdn_chunk_prep keeps 64 rows of v in shared memory
#define GDN_PREP_THREADS 256
#define GDN_STATE_RG 8             // k_gdn_chunk_state: row groups, a warp each, over 32 columns of S
#define GDN_STATE_THREADS (32 * GDN_STATE_RG)
#define GDN_STATE_COLS 32

/* Piece j of tile tl: its first token t0, length L and first position pos0; false if the tile
 * has fewer pieces. */
__device__ __forceinline__ bool gdn_piece(const int32_t *tiles, const int32_t *tok_pos, int tl, int j, int *t0, int *L,
                                          int *pos0)
{
    const int f = tiles[3 * tl], n = tiles[3 * tl + 1], p0 = tok_pos[f];
    const int start = j == 0 ? p0 : (p0 / GDN_CHUNK + j) * GDN_CHUNK;
    const int end = min(p0 + n, (p0 / GDN_CHUNK + j + 1) * GDN_CHUNK);
    if (start >= end) return false;
    *t0 = f + start - p0;
    *L = end - start;
    *pos0 = start;
    return true;
}

static size_t gdn_rec_floats(int dk, int dv) { return (size_t)dk + dv + GDN_CHUNK + 4; }
static int gdn_dk_padded(int dk) { return (dk + 4 * GDN_STATE_RG - 1) / (4 * GDN_STATE_RG) * (4 * GDN_STATE_RG); }

/* grid (tiles * GDN_TILE_PIECES, value heads): one block per (piece, value head). */
template <typename T>
__global__ void __launch_bounds__(GDN_PREP_THREADS)
k_gdn_chunk_prep(float *ws, const float *q, const float *k, const float *v, const float *a, const float *b,
                 const T *a_log, const T *dt_bias, const int32_t *tiles, const int32_t *tok_pos, int nk, int nv,
                 int dk, int dv, size_t ldq, size_t ldk, size_t ldv, size_t lda, size_t ldb)
{
    const int C = GDN_CHUNK, h = blockIdx.y, kh = h / (nv / nk);
    int t0, L, pos0;
    if (!gdn_piece(tiles, tok_pos, blockIdx.x / GDN_TILE_PIECES, blockIdx.x % GDN_TILE_PIECES, &t0, &L, &pos0)) return;
    extern __shared__ float smem[];
    const int dx = max(dk, dv) + 1, sk = dk + 1, sc = C + 1;   // odd row strides: column sweeps hit distinct banks
    float *X = smem;              // [C][dx]: q rows, later v rows
    float *Kn = X + C * dx;       // [C][sk]: normalised k rows
    float *A = Kn + C * sk;       // [C][sc]: strictly lower A
    float *Tm = A + C * sc;       // [C][sc]: T = (I + A)^-1
    float *G = Tm + C * sc, *beta = G + C, *bw = beta + C, *iq = bw + C, *ik = iq + C;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, n_warps = blockDim.x >> 5;
    const size_t rec = (size_t)dk + dv + C + 4;

    for (int e = tid; e < L * dk; e += blockDim.x) {
        const int i = e / dk, r = e % dk;
        X[i * dx + r] = q[(size_t)(t0 + i) * ldq + (size_t)kh * dk + r];
        Kn[i * sk + r] = k[(size_t)(t0 + i) * ldk + (size_t)kh * dk + r];
    }
    __syncthreads();
    const float neg_a = -expf(to_f<T>(a_log[h])), dtb = to_f<T>(dt_bias[h]), qscale = rsqrtf((float)dk);
    for (int i = warp; i < L; i += n_warps) {   // the norms and gates, as k_gdn_recurrent computes them
        float sq = 0.0f, sk2 = 0.0f;
        for (int r = lane; r < dk; r += 32) {
            sq += X[i * dx + r] * X[i * dx + r];
            sk2 += Kn[i * sk + r] * Kn[i * sk + r];
        }
        sq = warp_sum(sq);
        sk2 = warp_sum(sk2);
        if (lane == 0) {
            const size_t t = (size_t)(t0 + i);
            const float ah = a[t * lda + h] + dtb;
            iq[i] = qscale * rsqrtf(sq + 1e-6f);
            ik[i] = rsqrtf(sk2 + 1e-6f);
            G[i] = neg_a * (ah > 20.0f ? ah : log1pf(expf(ah)));
            beta[i] = 1.0f / (1.0f + expf(-b[t * ldb + h]));
        }
    }
    __syncthreads();
    if (tid == 0)
        for (int i = 1; i < L; i++) G[i] += G[i - 1];
    __syncthreads();
    for (int e = tid; e < L * dk; e += blockDim.x) {
        const int i = e / dk, r = e % dk;
        X[i * dx + r] *= iq[i];
        Kn[i * sk + r] *= ik[i];
    }
    if (tid < L) bw[tid] = beta[tid] * expf(G[tid]);
    __syncthreads();
    for (int e = tid; e < L * L; e += blockDim.x) {   // A and P
        const int i = e / L, j = e % L;
        float kk = 0.0f, qk = 0.0f;
        if (j <= i)
            for (int r = 0; r < dk; r++) {
                kk += Kn[i * sk + r] * Kn[j * sk + r];
                qk += X[i * dx + r] * Kn[j * sk + r];
            }
        const float d = j <= i ? expf(G[i] - G[j]) : 0.0f;
        A[i * sc + j] = j < i ? beta[i] * kk * d : 0.0f;
        ws[((size_t)(t0 + i) * nv + h) * rec + dk + dv + j] = qk * d;
    }
    __syncthreads();
    for (int e = tid; e < L * dv; e += blockDim.x) {   // q is done: v rows take its place
        const int i = e / dv, c = e % dv;
        X[i * dx + c] = v[(size_t)(t0 + i) * ldv + (size_t)h * dv + c];
    }
    if (tid < L) {   // column tid of T by forward substitution: rows below T[j][tid] = 0 for j < tid
        const int c = tid;
        for (int i = 0; i < L; i++) {
            float t = i == c ? 1.0f : 0.0f;
            for (int j = 0; j < i; j++) t -= A[i * sc + j] * Tm[j * sc + c];
            Tm[i * sc + c] = t;
        }
    }
    __syncthreads();
    for (int e = tid; e < L * dv; e += blockDim.x) {   // U = T diag(beta) V
        const int i = e / dv, c = e % dv;
        float u = 0.0f;
        for (int j = 0; j <= i; j++) u += Tm[i * sc + j] * beta[j] * X[j * dx + c];
        ws[((size_t)(t0 + i) * nv + h) * rec + dk + c] = u;
    }
    for (int e = tid; e < L * dk; e += blockDim.x) {   // W = T diag(beta e^G) K
        const int i = e / dk, r = e % dk;
        float w = 0.0f;
        for (int j = 0; j <= i; j++) w += Tm[i * sc + j] * bw[j] * Kn[j * sk + r];
        ws[((size_t)(t0 + i) * nv + h) * rec + r] = w;
    }
    if (tid < L) {
        float *sc3 = ws + ((size_t)(t0 + tid) * nv + h) * rec + dk + dv + C;
        sc3[0] = iq[tid] * expf(G[tid]);
        sc3[1] = ik[tid] * expf(G[L - 1] - G[tid]);
        sc3[2] = expf(G[L - 1]);
    }
}

/* acc[m] = row rq + RG m of R [., dkp] times column c of S [dkp][GDN_STATE_COLS] (dkp a multiple of 4) */
template <int MO, int RG>
__device__ __forceinline__ void rows_times_state(float *acc, const float *R, const float *S, int dkp, int rq, int c)
{
    constexpr int TC = GDN_STATE_COLS;
#pragma unroll
    for (int m = 0; m < MO; m++) acc[m] = 0.0f;
    for (int r = 0; r < dkp; r += 4) {
        const float s0 = S[r * TC + c], s1 = S[(r + 1) * TC + c], s2 = S[(r + 2) * TC + c], s3 = S[(r + 3) * TC + c];
#pragma unroll
        for (int m = 0; m < MO; m++) {
            const float4 w = *reinterpret_cast<const float4 *>(R + (rq + RG * m) * dkp + r);
            acc[m] += w.x * s0 + w.y * s1 + w.z * s2 + w.w * s3;
        }
    }
}

/* grid (sequences * value heads * column tiles of GDN_STATE_COLS): the sequence's pieces in
 * order over its state's columns [c0, c0 + 32). Thread (c, rq) owns the S rows [rq rpg, (rq + 1)
 * rpg) of column c (dk padded to dkp, a multiple of 4 rows per group) and rows rq, rq + RG, ... of
 * the piece's outputs. */
__global__ void __launch_bounds__(GDN_STATE_THREADS, 2)
k_gdn_chunk_state(float *out, const float *ws, const float *q, const float *k, float *ssm, const int32_t *tiles,
                  int n_tiles, const int32_t *tok_pos, const int32_t *seq_slot, int nk, int nv, int dk, int dv,
                  size_t ldq, size_t ldk)
{
    const int C = GDN_CHUNK, TC = GDN_STATE_COLS, n_ct = (dv + TC - 1) / TC;
    const int s = blockIdx.x / (nv * n_ct), h = blockIdx.x / n_ct % nv, c0 = blockIdx.x % n_ct * TC;
    constexpr int RG = GDN_STATE_RG, MO = GDN_CHUNK / RG, MS = GDN_CHUNKED_MAX_DK / RG;
    const int kh = h / (nv / nk), dkp = (dk + 4 * RG - 1) / (4 * RG) * (4 * RG), rpg = dkp / RG;
    const int tid = threadIdx.x, c = tid & 31, rq = tid >> 5, cg = c0 + c;
    const bool col_ok = cg < dv;
    const size_t rec = (size_t)dk + dv + C + 4;
    extern __shared__ __align__(16) float state_smem[];
    float *S = state_smem;      // [dkp][TC]
    float *Vp = S + dkp * TC;   // [C][TC]: U, then V'
    float *R = Vp + C * TC;     // [C][dkp]: W, then the scaled q, then the scaled k (zero padded)
    float *Sg = ssm + (size_t)seq_slot[s] * nv * dk * dv + (size_t)h * dk * dv;
    for (int m = 0; m < rpg; m++) {
        const int r = rq * rpg + m;
        S[r * TC + c] = r < dk && col_ok ? Sg[(size_t)r * dv + cg] : 0.0f;
    }
    for (int tl = 0; tl < n_tiles; tl++) {
        if (tiles[3 * tl + 2] != s) continue;   // uniform over the block
        int t0, L, pos0;
        for (int j = 0; j < GDN_TILE_PIECES && gdn_piece(tiles, tok_pos, tl, j, &t0, &L, &pos0); j++) {
            const float *rec0 = ws + ((size_t)t0 * nv + h) * rec;   // token t0 + i: rec0 + i nv rec
            const size_t rstride = (size_t)nv * rec;
            if (pos0 == 0)
                for (int m = 0; m < rpg; m++) S[(rq * rpg + m) * TC + c] = 0.0f;
            for (int e = tid; e < L * dkp; e += blockDim.x) {
                const int i = e / dkp, r = e % dkp;
                R[i * dkp + r] = r < dk ? rec0[i * rstride + r] : 0.0f;
            }
            for (int e = tid; e < L * TC; e += blockDim.x) {
                const int i = e / TC, cc = e % TC;
                Vp[i * TC + cc] = c0 + cc < dv ? rec0[i * rstride + dk + c0 + cc] : 0.0f;
            }
            __syncthreads();
            float acc[MO];
            rows_times_state<MO, RG>(acc, R, S, dkp, rq, c);   // W S
#pragma unroll
            for (int m = 0; m < MO; m++)
                if (rq + RG * m < L) Vp[(rq + RG * m) * TC + c] -= acc[m];   // V' = U - W S
            __syncthreads();
            for (int e = tid; e < L * dkp; e += blockDim.x) {
                const int i = e / dkp, r = e % dkp;
                R[i * dkp + r] = r < dk ? q[(size_t)(t0 + i) * ldq + (size_t)kh * dk + r] * rec0[i * rstride + dk + dv + C] : 0.0f;
            }
            __syncthreads();
            rows_times_state<MO, RG>(acc, R, S, dkp, rq, c);   // diag(e^G) Q S
#pragma unroll
            for (int m = 0; m < MO; m++) {
                const int i = rq + RG * m;
                if (i >= L) break;
                const float *P = rec0 + i * rstride + dk + dv;
                float o = acc[m];
                for (int jj = 0; jj <= i; jj++) o += P[jj] * Vp[jj * TC + c];   // + P V'
                if (col_ok) out[(size_t)(t0 + i) * nv * dv + (size_t)h * dv + cg] = o;
            }
            __syncthreads();   // S and R are read above, rewritten below
            for (int e = tid; e < L * dkp; e += blockDim.x) {
                const int i = e / dkp, r = e % dkp;
                R[i * dkp + r] = r < dk ? k[(size_t)(t0 + i) * ldk + (size_t)kh * dk + r] * rec0[i * rstride + dk + dv + C + 1] : 0.0f;
            }
            const float eL = rec0[dk + dv + C + 2];
            __syncthreads();
            float acc2[MS];
#pragma unroll
            for (int m = 0; m < MS; m++) acc2[m] = 0.0f;
            for (int i = 0; i < L; i++) {   // (diag(e^(G_L - G)) K)^T V'
                const float vv = Vp[i * TC + c];
                const float *kr = R + i * dkp + rq * rpg;
#pragma unroll
                for (int m4 = 0; m4 < MS / 4; m4++) {
                    if (4 * m4 >= rpg) break;
                    const float4 kv = *reinterpret_cast<const float4 *>(kr + 4 * m4);
                    acc2[4 * m4] += kv.x * vv;
                    acc2[4 * m4 + 1] += kv.y * vv;
                    acc2[4 * m4 + 2] += kv.z * vv;
                    acc2[4 * m4 + 3] += kv.w * vv;
                }
            }
#pragma unroll
            for (int m = 0; m < MS; m++) {
                if (m >= rpg) break;
                float *sp = S + (rq * rpg + m) * TC + c;
                *sp = eL * *sp + acc2[m];
            }
            __syncthreads();   // the next piece reads all of S and rewrites R and Vp
        }
    }
    for (int m = 0; m < rpg; m++) {
        const int r = rq * rpg + m;
        if (r < dk && col_ok) Sg[(size_t)r * dv + cg] = S[r * TC + c];
    }
}

/* The chunked form for this step? Not in cuda-deterministic (a decode token's arithmetic must not
 * depend on a prefill beside it), not for pure decode, only when some sequence brings a run of
 * GDN_CHUNKED_MIN_RUN tokens. Tiles come from batch_begin (host copy kept in h_tiles). */
static bool gdn_chunked_pays(const struct cuda_backend *cb, const struct gdn_params *p)
{
    const struct cuda_batch *b = &cb->batch;
    if (cb->deterministic || b->all_single || p->k_dim > GDN_CHUNKED_MAX_DK || p->v_dim > GDN_CHUNKED_MAX_DV)
        return false;
    bool long_run = false;
    for (int i = 0; i < b->n_tiles; i++) {
        CHECK(b->h_tiles[3 * i + 1] <= GDN_TILE_MAX, "gdn: a tile of %d tokens (at most %d)", b->h_tiles[3 * i + 1],
              GDN_TILE_MAX);
        long_run |= b->h_tiles[3 * i + 1] >= GDN_CHUNKED_MIN_RUN;
    }
    return long_run;
}

template <typename KernelT>
static void gdn_smem_optin(const struct cuda_backend *cb, KernelT kernel, size_t smem, const char *what)
{
    if (smem <= 48 * 1024) return;
    CHECK(smem <= cb->smem_optin, "%s: %zu bytes of shared memory (at most %zu)", what, smem, cb->smem_optin);
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
}

static void gdn_chunked(struct cuda_backend *cb, struct tensor *out, const struct tensor *q, const struct tensor *k,
                        const struct tensor *v, const struct tensor *a, const struct tensor *b,
                        const struct tensor *a_log, const struct tensor *dt_bias, struct gdn_state_layer *st,
                        const struct gdn_params *p, const struct batch_meta *m)
{
    const struct cuda_batch *bt = &cb->batch;
    const int nk = p->n_k_heads, nv = p->n_v_heads, dk = p->k_dim, dv = p->v_dim, C = GDN_CHUNK;
    const size_t f = sizeof(float);
    float *ws = (float *)cuda_grow(cb, &cb->d_gdn_work, &cb->gdn_work_bytes, f * (size_t)m->n_tok * nv * gdn_rec_floats(dk, dv));
    const int dx = (dk > dv ? dk : dv) + 1;
    size_t smem1 = f * ((size_t)C * dx + (size_t)C * (dk + 1) + 2 * (size_t)C * (C + 1) + 5 * (size_t)C);
    double t0 = cuda_prof_begin(cb);
    DISPATCH_FLOAT(a_log->dtype, T, {
        gdn_smem_optin(cb, k_gdn_chunk_prep<T>, smem1, "gdn chunked prefill");
        k_gdn_chunk_prep<T><<<dim3(bt->n_tiles * GDN_TILE_PIECES, nv), GDN_PREP_THREADS, smem1, cb->stream>>>(
            ws, (const float *)dptr(q), (const float *)dptr(k), (const float *)dptr(v), (const float *)dptr(a),
            (const float *)dptr(b), (const T *)dptr(a_log), (const T *)dptr(dt_bias), bt->d_tiles, bt->d_tok_pos, nk, nv,
            dk, dv, q->nb[1] / f, k->nb[1] / f, v->nb[1] / f, a->nb[1] / f, b->nb[1] / f);
    });
    LAUNCH_CHECK();
    cuda_prof_end(cb, "gdn_chunk_prep", t0);
    const int dkp = gdn_dk_padded(dk), n_ct = (dv + GDN_STATE_COLS - 1) / GDN_STATE_COLS;
    size_t smem2 = f * ((size_t)dkp * GDN_STATE_COLS + (size_t)C * GDN_STATE_COLS + (size_t)C * dkp);
    gdn_smem_optin(cb, k_gdn_chunk_state, smem2, "gdn chunked prefill");
    t0 = cuda_prof_begin(cb);
    k_gdn_chunk_state<<<m->n_seq * nv * n_ct, GDN_STATE_THREADS, smem2, cb->stream>>>(
        (float *)dptr(out), ws, (const float *)dptr(q), (const float *)dptr(k), (float *)dptr(&st->ssm), bt->d_tiles,
        bt->n_tiles, bt->d_tok_pos, bt->d_seq_state_slot, nk, nv, dk, dv, q->nb[1] / f, k->nb[1] / f);
    LAUNCH_CHECK();
    cuda_prof_end(cb, "gdn_chunk_state", t0);
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
    if (gdn_chunked_pays(cb, p)) {   // profiled per kernel: gdn_chunk_prep, gdn_chunk_state
        gdn_chunked(cb, out, q, k, v, a, b, a_log, dt_bias, st, p, m);
        return;
    }
    const double t0 = cuda_prof_begin(cb);
    size_t f = sizeof(float);
    if (cb->batch.all_single && !cb->deterministic && dk <= GDN_DECODE_MAX_DK) {   // deterministic: the walk below for all
        DISPATCH_FLOAT(a_log->dtype, T,
            k_gdn_decode<T><<<dim3(m->n_tok, nv, (dv + 31) / 32), 32 * GDN_DECODE_ROW_GROUPS, 0, cb->stream>>>(
                (float *)dptr(out), (const float *)dptr(q), (const float *)dptr(k), (const float *)dptr(v),
                (const float *)dptr(a), (const float *)dptr(b), (const T *)dptr(a_log), (const T *)dptr(dt_bias),
                (float *)dptr(&st->ssm), cb->batch.d_tok_seq, cb->batch.d_tok_pos, cb->batch.d_seq_state_slot, nk, nv,
                dk, dv, q->nb[1] / f, k->nb[1] / f, v->nb[1] / f, a->nb[1] / f, b->nb[1] / f));
        LAUNCH_CHECK();
        cuda_prof_end(cb, "gdn_decode", t0);
        return;
    }
    int threads = (dv + 31) / 32 * 32;
    size_t smem = sizeof(float) * 2 * (size_t)dk;
    if (smem > 48 * 1024) {
        CHECK(smem <= cb->smem_optin, "gdn_recurrent: key head dim %d too large", dk);
        DISPATCH_FLOAT(a_log->dtype, T, CUDA_CHECK(cudaFuncSetAttribute(
            k_gdn_recurrent<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem)));
    }
    DISPATCH_FLOAT(a_log->dtype, T, k_gdn_recurrent<T><<<m->n_seq * nv, threads, smem, cb->stream>>>(
        (float *)dptr(out), (const float *)dptr(q), (const float *)dptr(k), (const float *)dptr(v),
        (const float *)dptr(a), (const float *)dptr(b), (const T *)dptr(a_log), (const T *)dptr(dt_bias),
        (float *)dptr(&st->ssm), cb->batch.d_tok_seq, cb->batch.d_tok_pos, cb->batch.d_seq_state_slot, m->n_tok, nk,
        nv, dk, dv, q->nb[1] / f, k->nb[1] / f, v->nb[1] / f, a->nb[1] / f, b->nb[1] / f));
    LAUNCH_CHECK();
    cuda_prof_end(cb, "gdn_recurrent", t0);
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
