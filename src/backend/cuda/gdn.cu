/* gdn: the Gated DeltaNet ops of the cuda backend (contracts in backend/backend.h): the causal
 * conv with its rolling state, the delta rule, the gated RMSNorm and the sigmoid gate. All f32 (the
 * chunked prefill's matrix products are 3xTF32 on tensor cores: f32-class error).
 *
 * Design note: the delta rule has three forms, chosen per step (cuda_gdn_recurrent): a step of one
 * token per sequence takes k_gdn_decode (S read and written once, from registers); a step with a
 * run of GDN_CHUNKED_MIN_RUN tokens of one sequence the chunked WY form of cpu_gdn.c (pieces
 * between multiples of GDN_CHUNK: everything that does not depend on S for all pieces in parallel,
 * then one pass over each sequence's pieces per 32 columns of S, both on tensor cores); any other
 * step, every step in cuda-deterministic and every step with snapshots, k_gdn_recurrent, where the
 * block that owns a (sequence, value head) walks the step's tokens in order, one thread per column
 * of S. The conv runs over the step's tiles when each sequence's tokens are one run of the batch,
 * else one thread per channel walks the step. Snapshots (meta->tok_snap): batch_begin ends a tile
 * after each marked token (a cut or a snapshot), so a chunked piece ends there too, and at a
 * snapshot the kernel that holds the state writes it out (the conv state pass per tile end, the
 * chunked pass per piece end, the walks per token).
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
__global__ void k_gdn_conv(float *out, const float *x, const T *w, float *conv_state, float *snap_conv,
                           const int32_t *tok_snap, const int32_t *tok_seq, const int32_t *tok_pos,
                           const int32_t *seq_slot, int n_tok, int C, int K)
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
        if (tok_snap && tok_snap[t] >= 0)
            for (int j = 0; j < K - 1; j++) snap_conv[((size_t)tok_snap[t] * (K - 1) + j) * C + c] = h[j];
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

/* Channel c of the conv state after token t (its sequence's K - 1 inputs up to t) into dst, a
 * [K-1][C] state; hist: the sequence's state before the step (read first: dst may be hist). */
__device__ __forceinline__ void conv_state_store(float *dst, const float *x, const float *hist, const int32_t *tok_seq,
                                                 const int32_t *tok_pos, int t, int K, int C, int c)
{
    float h[GDN_MAX_CONV_TAPS];
    conv_history(h, x, hist, tok_seq, tok_pos, t, K, C, c);
    for (int j = 0; j + 1 < K - 1; j++) dst[(size_t)j * C + c] = h[j + 1];
    dst[(size_t)(K - 2) * C + c] = x[(size_t)t * C + c];
}

__global__ void k_gdn_conv_state(const float *x, float *conv_state, float *snap_conv, const int32_t *tok_snap,
                                 const int32_t *tiles, int n_tiles, const int32_t *tok_seq, const int32_t *tok_pos,
                                 const int32_t *seq_slot, int C, int K)
{
    const int c = blockIdx.x * blockDim.x + threadIdx.x, s = blockIdx.y;
    if (c >= C || K < 2) return;
    float *hist = conv_state + (size_t)seq_slot[s] * (size_t)(K - 1) * C;
    int last = -1;   // the sequence's last token of the step
    for (int tl = 0; tl < n_tiles; tl++) {
        if (tiles[3 * tl + 2] != s) continue;
        last = tiles[3 * tl] + tiles[3 * tl + 1] - 1;
        if (tok_snap && tok_snap[last] >= 0)   // batch_begin ends a tile after each marked token
            conv_state_store(snap_conv + (size_t)tok_snap[last] * (K - 1) * C, x, hist, tok_seq, tok_pos, last, K, C, c);
    }
    if (last >= 0) conv_state_store(hist, x, hist, tok_seq, tok_pos, last, K, C, c);
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
                   struct gdn_state_layer *st, struct gdn_state_layer *snap, const struct batch_meta *m)
{
    struct cuda_backend *cb = cuda_of(be);
    int C = (int)x->ne[0], K = (int)w->ne[0];
    CHECK(out->dtype == DTYPE_F32 && x->dtype == DTYPE_F32 && st->conv.dtype == DTYPE_F32, "gdn_conv: f32 only");
    CHECK(w->ne[1] == 1 && w->ne[2] == C && out->ne[0] == C && st->conv.ne[0] == (int64_t)(K - 1) * C,
          "gdn_conv: shapes");
    CHECK(K >= 1 && K <= GDN_MAX_CONV_TAPS, "gdn_conv: %d taps (at most %d)", K, GDN_MAX_CONV_TAPS);
    CHECK(m->seq_state_slot && tensor_is_contiguous(x) && tensor_is_contiguous(out), "gdn_conv: layout");
    const struct cuda_batch *b = &cb->batch;
    CHECK(!b->snap_writes || (snap && snap->conv.ne[0] == st->conv.ne[0]), "gdn_conv: snapshots without their store");
    float *snap_conv = b->snap_writes ? (float *)dptr(&snap->conv) : NULL;
    if (m->tok_seq && m->tok_pos && batch_in_runs(m)) {
        DISPATCH_FLOAT(w->dtype, T, k_gdn_conv_runs<T><<<dim3((C + 127) / 128, b->n_tiles), 128, 0, cb->stream>>>(
            (float *)dptr(out), (const float *)dptr(x), (const T *)dptr(w), (const float *)dptr(&st->conv), b->d_tiles,
            b->d_tok_seq, b->d_tok_pos, b->d_seq_state_slot, C, K));
        k_gdn_conv_state<<<dim3((C + 127) / 128, m->n_seq), 128, 0, cb->stream>>>(
            (const float *)dptr(x), (float *)dptr(&st->conv), snap_conv, b->d_tok_snap, b->d_tiles, b->n_tiles,
            b->d_tok_seq, b->d_tok_pos, b->d_seq_state_slot, C, K);
        LAUNCH_CHECK();
        return;
    }
    dim3 grid((C + 127) / 128, m->n_seq);
    DISPATCH_FLOAT(w->dtype, T, k_gdn_conv<T><<<grid, 128, 0, cb->stream>>>(
        (float *)dptr(out), (const float *)dptr(x), (const T *)dptr(w), (float *)dptr(&st->conv), snap_conv,
        b->d_tok_snap, b->d_tok_seq, b->d_tok_pos, b->d_seq_state_slot, m->n_tok, C, K));
    LAUNCH_CHECK();
}

/* ---- delta rule: grid (sequences * value heads), one thread per column of S ---- */
template <typename T>
__global__ void k_gdn_recurrent(float *out, const float *q, const float *k, const float *v, const float *a,
                                const float *b, const T *a_log, const T *dt_bias, float *ssm, float *snap_ssm,
                                const int32_t *tok_snap, const int32_t *tok_seq, const int32_t *tok_pos,
                                const int32_t *seq_slot, int n_tok, int nk, int nv, int dk, int dv, size_t ldq,
                                size_t ldk, size_t ldv, size_t lda, size_t ldb)
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
            if (tok_snap && tok_snap[t] >= 0) {   // this thread's column of S after token t
                float *D = snap_ssm + (size_t)tok_snap[t] * nv * dk * dv + (size_t)h * dk * dv;
                for (int r = 0; r < dk; r++) D[(size_t)r * dv + c] = S[(size_t)r * dv + c];
            }
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
 * parallel, into a workspace record per (token, value head): W row [dkp], U row [dvp], P row
 * [GDN_CHUNK], then e^G_i / |q_i| sqrt(dk), e^(G_L - G_i) / |k_i| (the scales of the raw q and k
 * rows) and e^G_L (dk, dv padded with zeros to dkp = 16m, dvp = 4m: every part of a record is a
 * whole number of 16-byte copies). K K^T and Q K^T are tensor-core products; U and W come from
 * one forward substitution (I + A) [U W] = [diag(beta) V, diag(beta e^G) K], a thread per column
 * with the column in registers. k_gdn_chunk_state walks each sequence's pieces in order, one block
 * per (sequence, value head, 32 columns of S; the columns are independent, so a batch-1 prefill
 * still spreads over nv * dv / 32 blocks), S in the MMA accumulators of its warps: per piece
 * [W; Q] S, then P V' and K^T V', with the next piece's operands landing in shared memory
 * (cp.async) while these run. The MMAs are 3xTF32 (a = a_hi + a_lo in tf32, the a_lo b_lo term
 * dropped): f32-class products on tensor cores, so the results match the recurrent form to f32
 * rounding (tests/cuda/test_cuda_gdn), as the f32 loops before them did. */
#define GDN_TILE_MAX 128           // batch_begin's tile cap
#define GDN_TILE_PIECES 3          // pieces of GDN_CHUNK positions a tile of GDN_TILE_MAX can touch
#define GDN_CHUNKED_MIN_RUN 16     // a step with a run this long of one sequence takes the chunked form
#define GDN_CHUNKED_MAX_DK 128     // k_gdn_chunk_state: a warp per 16 rows of S, 8 warps
#define GDN_CHUNKED_MAX_DV 256     // k_gdn_chunk_prep: [U W] columns, at most 2 per thread
#define GDN_CHUNK_THREADS 256      // both kernels: 8 warps
#define GDN_STATE_COLS 32          // columns of S per k_gdn_chunk_state block
#define GDN_P_STRIDE (GDN_CHUNK + 4)   // P and A rows in shared memory: 16-byte rows, MMA loads off distinct banks
#define GDN_V_STRIDE (GDN_STATE_COLS + 8)   // U, V' and S rows: B-operand loads off distinct banks

static_assert(GDN_CHUNK == 64, "the chunked kernels tile a piece as 4 row tiles of 16");

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

/* Sequence s's piece after (tl, j), in order ((0, -1): its first); false past its last. */
__device__ __forceinline__ bool gdn_seq_piece_next(const int32_t *tiles, int n_tiles, const int32_t *tok_pos, int s,
                                                   int *tl, int *j, int *t0, int *L, int *pos0)
{
    for (int t = *tl, jj = *j + 1; t < n_tiles; t++, jj = 0) {
        if (tiles[3 * t + 2] != s) continue;
        if (jj < GDN_TILE_PIECES && gdn_piece(tiles, tok_pos, t, jj, t0, L, pos0)) {
            *tl = t;
            *j = jj;
            return true;
        }
    }
    return false;
}

static __host__ __device__ int gdn_dk_padded(int dk) { return (dk + 15) / 16 * 16; }
static __host__ __device__ int gdn_dv_padded(int dv) { return (dv + 3) / 4 * 4; }
static size_t gdn_rec_floats(int dk, int dv) { return (size_t)gdn_dk_padded(dk) + gdn_dv_padded(dv) + GDN_CHUNK + 4; }

/* ---- 3xTF32 MMA pieces (m16n8k8, row.col). Lane l: g = l / 4, t = l % 4; A[16][8] regs (g, t),
 * (g + 8, t), (g, t + 4), (g + 8, t + 4); B[8][8] regs (t, g), (t + 4, g); C[16][8] regs (g, 2t),
 * (g, 2t + 1), (g + 8, 2t), (g + 8, 2t + 1). ---- */
__device__ __forceinline__ uint32_t tf32_round(float x)
{
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}

__device__ __forceinline__ void tf32_split(float x, uint32_t *hi, uint32_t *lo)
{
    *hi = tf32_round(x);
    *lo = tf32_round(x - __uint_as_float(*hi));   // x - hi is exact in f32
}

__device__ __forceinline__ void mma_tf32(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    asm("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* An A operand, split: ahi[4], alo[4]. */
struct tf32_a { uint32_t hi[4], lo[4]; };
/* A B operand, split. */
struct tf32_b { uint32_t hi[2], lo[2]; };

/* c += a b, the small terms first. */
__device__ __forceinline__ void mma_3xtf32(float c[4], const struct tf32_a &a, const struct tf32_b &b)
{
    mma_tf32(c, a.lo, b.hi[0], b.hi[1]);
    mma_tf32(c, a.hi, b.lo[0], b.lo[1]);
    mma_tf32(c, a.hi, b.hi[0], b.hi[1]);
}

/* A = M[m0 .. m0 + 16][k0 .. k0 + 8] of a row-major M with row stride ld. */
__device__ __forceinline__ struct tf32_a tf32_load_a(const float *M, int ld, int m0, int k0, int lane)
{
    const float *p = M + (m0 + (lane >> 2)) * ld + k0 + (lane & 3);
    struct tf32_a a;
    tf32_split(p[0], &a.hi[0], &a.lo[0]);
    tf32_split(p[8 * ld], &a.hi[1], &a.lo[1]);
    tf32_split(p[4], &a.hi[2], &a.lo[2]);
    tf32_split(p[8 * ld + 4], &a.hi[3], &a.lo[3]);
    return a;
}

/* A = M^T: A[m][k] = M[k0 + k][m0 + m] of a row-major M. */
__device__ __forceinline__ struct tf32_a tf32_load_at(const float *M, int ld, int m0, int k0, int lane)
{
    const float *p = M + (k0 + (lane & 3)) * ld + m0 + (lane >> 2);
    struct tf32_a a;
    tf32_split(p[0], &a.hi[0], &a.lo[0]);
    tf32_split(p[8], &a.hi[1], &a.lo[1]);
    tf32_split(p[4 * ld], &a.hi[2], &a.lo[2]);
    tf32_split(p[4 * ld + 8], &a.hi[3], &a.lo[3]);
    return a;
}

/* B = M[k0 .. k0 + 8][n0 .. n0 + 8] of a row-major M. */
__device__ __forceinline__ struct tf32_b tf32_load_b(const float *M, int ld, int k0, int n0, int lane)
{
    const float *p = M + (k0 + (lane & 3)) * ld + n0 + (lane >> 2);
    struct tf32_b b;
    tf32_split(p[0], &b.hi[0], &b.lo[0]);
    tf32_split(p[4 * ld], &b.hi[1], &b.lo[1]);
    return b;
}

/* B = M^T: B[k][n] = M[n0 + n][k0 + k] of a row-major M. */
__device__ __forceinline__ struct tf32_b tf32_load_bt(const float *M, int ld, int k0, int n0, int lane)
{
    const float *p = M + (n0 + (lane >> 2)) * ld + k0 + (lane & 3);
    struct tf32_b b;
    tf32_split(p[0], &b.hi[0], &b.lo[0]);
    tf32_split(p[4], &b.hi[1], &b.lo[1]);
    return b;
}

/* B from pre-split halves Mhi, Mlo (row-major, as tf32_load_b). */
__device__ __forceinline__ struct tf32_b tf32_load_b_split(const uint32_t *Mhi, const uint32_t *Mlo, int ld, int k0,
                                                           int n0, int lane)
{
    const int o = (k0 + (lane & 3)) * ld + n0 + (lane >> 2);
    struct tf32_b b;
    b.hi[0] = Mhi[o];
    b.hi[1] = Mhi[o + 4 * ld];
    b.lo[0] = Mlo[o];
    b.lo[1] = Mlo[o + 4 * ld];
    return b;
}

/* ---- cp.async: 16 or 4 bytes, zero-filled where !ok (src then is not read) ---- */
__device__ __forceinline__ void gdn_cp16(float *dst, const float *src, bool ok)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"((uint32_t)__cvta_generic_to_shared(dst)),
                 "l"(src), "r"(ok ? 16 : 0));
}
__device__ __forceinline__ void gdn_cp4(float *dst, const float *src, bool ok)
{
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"((uint32_t)__cvta_generic_to_shared(dst)),
                 "l"(src), "r"(ok ? 4 : 0));
}
__device__ __forceinline__ void gdn_cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void gdn_cp_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

/* dst[i][c] = src[i * lds + c] for i < rows, c < cols, zero up to [GDN_CHUNK][colp] (colp a
 * multiple of 4); 16-byte copies when vec (cols, lds and src 16-byte multiples), else 4-byte ones.
 * A thread's (row, column) steps by blockDim.x elements without a division per copy. */
__device__ __forceinline__ void gdn_rows_async(float *dst, int ldd, const float *src, size_t lds, int rows, int cols,
                                               int colp, bool vec)
{
    const int wd = vec ? 4 : 1, per_row = colp / wd, step = blockDim.x, di = step / per_row, dc = step % per_row;
    int i = threadIdx.x / per_row, c = threadIdx.x % per_row;
    for (int e = threadIdx.x; e < GDN_CHUNK * per_row; e += step) {
        const int col = c * wd;
        const bool ok = i < rows && col < cols;
        if (vec) gdn_cp16(dst + i * ldd + col, ok ? src + i * lds + col : src, ok);
        else gdn_cp4(dst + i * ldd + col, ok ? src + i * lds + col : src, ok);
        i += di;
        c += dc;
        if (c >= per_row) {
            c -= per_row;
            i++;
        }
    }
}

/* grid (tiles * GDN_TILE_PIECES, value heads): one block per (piece, value head). */
template <typename T>
__global__ void __launch_bounds__(GDN_CHUNK_THREADS, 2)
k_gdn_chunk_prep(float *ws, const float *q, const float *k, const float *v, const float *a, const float *b,
                 const T *a_log, const T *dt_bias, const int32_t *tiles, const int32_t *tok_pos, int nk, int nv,
                 int dk, int dv, size_t ldq, size_t ldk, size_t ldv, size_t lda, size_t ldb, bool vec_qk)
{
    constexpr int C = GDN_CHUNK, PS = GDN_P_STRIDE;
    const int h = blockIdx.y, kh = h / (nv / nk);
    int t0, L, pos0;
    if (!gdn_piece(tiles, tok_pos, blockIdx.x / GDN_TILE_PIECES, blockIdx.x % GDN_TILE_PIECES, &t0, &L, &pos0)) return;
    const int dkp = gdn_dk_padded(dk), dvp = gdn_dv_padded(dv), dks = dkp + 4;   // dks: A loads off distinct banks
    const size_t rec = (size_t)dkp + dvp + C + 4;
    extern __shared__ __align__(16) float smem[];
    float *Qn = smem;             // [C][dks]: q rows, normalised, zero padded
    float *Kn = Qn + C * dks;     // [C][dks]: k rows, the same
    float *A = Kn + C * dks;      // [C][PS]: strictly lower A
    double *G = (double *)(A + C * PS);   // gate prefix sums in f64: their rounding would feed every e^(G_i - G_j)
    float *beta = (float *)(G + C), *iq = beta + C, *ik = iq + C, *bw = ik + C;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, n_warps = blockDim.x >> 5;

    gdn_rows_async(Qn, dks, q + (size_t)t0 * ldq + (size_t)kh * dk, ldq, L, dk, dkp, vec_qk);   // all in flight at once
    gdn_rows_async(Kn, dks, k + (size_t)t0 * ldk + (size_t)kh * dk, ldk, L, dk, dkp, vec_qk);
    gdn_cp_commit();
    gdn_cp_wait<0>();
    __syncthreads();
    const float neg_a = -expf(to_f<T>(a_log[h])), dtb = to_f<T>(dt_bias[h]), qscale = rsqrtf((float)dk);
    for (int i = warp; i < C; i += n_warps) {   // the norms and gates, as k_gdn_recurrent computes them
        float sq = 0.0f, sk2 = 0.0f;
        for (int r = lane; r < dk; r += 32) {
            sq += Qn[i * dks + r] * Qn[i * dks + r];
            sk2 += Kn[i * dks + r] * Kn[i * dks + r];
        }
        sq = warp_sum(sq);
        sk2 = warp_sum(sk2);
        if (lane == 0) {   // rows past the piece: zero scales, gate and beta (they add nothing below)
            const size_t t = (size_t)(t0 + i);
            const float ah = i < L ? a[t * lda + h] + dtb : 0.0f;
            iq[i] = i < L ? qscale * rsqrtf(sq + 1e-6f) : 0.0f;
            ik[i] = i < L ? rsqrtf(sk2 + 1e-6f) : 0.0f;
            G[i] = i < L ? neg_a * (ah > 20.0f ? ah : log1pf(expf(ah))) : 0.0f;
            beta[i] = i < L ? 1.0f / (1.0f + expf(-b[t * ldb + h])) : 0.0f;
        }
    }
    __syncthreads();
    if (tid == 0)
        for (int i = 1; i < C; i++) G[i] += G[i - 1];
    for (int e = tid; e < C * dkp; e += blockDim.x) {   // iq, ik are published; G is not read here
        const int i = e / dkp, r = e % dkp;
        Qn[i * dks + r] *= iq[i];
        Kn[i * dks + r] *= ik[i];
    }
    __syncthreads();
    if (tid < C) bw[tid] = beta[tid] * expf((float)G[tid]);   // read after the barrier below
    {   // K K^T and Q K^T: warp (rt, ch) owns rows 16 rt.. and columns 32 ch.. (n-tiles wholly above the diagonal skipped)
        const int rt = warp & 3, ch = warp >> 2, g = lane >> 2, t = lane & 3;
        float kk[4][4], qk[4][4];
#pragma unroll
        for (int nn = 0; nn < 4; nn++)
#pragma unroll
            for (int e = 0; e < 4; e++) kk[nn][e] = qk[nn][e] = 0.0f;
#pragma unroll 2
        for (int k0 = 0; k0 < dkp; k0 += 8) {   // dkp / 8 even: the next step's loads overlap these MMAs
            const struct tf32_a ak = tf32_load_a(Kn, dks, 16 * rt, k0, lane), aq = tf32_load_a(Qn, dks, 16 * rt, k0, lane);
#pragma unroll
            for (int nn = 0; nn < 4; nn++) {
                const int n0 = 32 * ch + 8 * nn;
                if (n0 > 16 * rt + 15) continue;   // uniform over the warp
                const struct tf32_b bk = tf32_load_bt(Kn, dks, k0, n0, lane);
                mma_3xtf32(kk[nn], ak, bk);
                mma_3xtf32(qk[nn], aq, bk);
            }
        }
#pragma unroll
        for (int nn = 0; nn < 4; nn++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int i = 16 * rt + g + (e >= 2 ? 8 : 0), j = 32 * ch + 8 * nn + 2 * t + (e & 1);
                const float d = j <= i ? expf((float)(G[i] - G[j])) : 0.0f;
                A[i * PS + j] = j < i ? beta[i] * kk[nn][e] * d : 0.0f;
                if (i < L) ws[((size_t)(t0 + i) * nv + h) * rec + dkp + dvp + j] = qk[nn][e] * d;   // P, zero past L
            }
    }
    __syncthreads();
    /* [U W] = (I + A)^-1 [diag(beta) V, diag(beta e^G) K], a column per thread: rows in order,
     * the column in registers (every index a constant once unrolled). Padding columns stay 0. */
    const int rs = nv * (int)rec;   // floats from a token's record to the next token's (same head)
    for (int col = tid; col < dvp + dkp; col += blockDim.x) {
        int rsc = rs;
        size_t ldvc = ldv;
        asm volatile("" : "+r"(rsc), "+l"(ldvc));   // opaque per column, so the 64 row offsets are not hoisted
        // out of this loop (128 registers held across it: the column would spill)
        float *dst = ws + ((size_t)t0 * nv + h) * rec + (col < dvp ? dkp + col : col - dvp);   // U after W in the record
        float u[C];
        if (col < dvp) {
            const float *src = v + (size_t)t0 * ldv + (size_t)h * dv + col;
#pragma unroll
            for (int i = 0; i < C; i++) u[i] = i < L && col < dv ? beta[i] * src[(size_t)i * ldvc] : 0.0f;
        } else {
#pragma unroll
            for (int i = 0; i < C; i++) u[i] = bw[i] * Kn[i * dks + col - dvp];
        }
#pragma unroll
        for (int i = 1; i < C; i++) {
            float acc = u[i];
#pragma unroll
            for (int j4 = 0; j4 < i; j4 += 4) {
                const float4 a4 = *reinterpret_cast<const float4 *>(A + i * PS + j4);
                acc -= a4.x * u[j4];
                if (j4 + 1 < i) acc -= a4.y * u[j4 + 1];
                if (j4 + 2 < i) acc -= a4.z * u[j4 + 2];
                if (j4 + 3 < i) acc -= a4.w * u[j4 + 3];
            }
            u[i] = acc;
        }
#pragma unroll
        for (int i = 0; i < C; i++)
            if (i < L) dst[i * rsc] = u[i];
    }
    if (tid < L) {
        float *sc3 = ws + ((size_t)(t0 + tid) * nv + h) * rec + dkp + dvp + C;
        sc3[0] = iq[tid] * expf((float)G[tid]);
        sc3[1] = ik[tid] * expf((float)(G[L - 1] - G[tid]));
        sc3[2] = expf((float)G[L - 1]);
        sc3[3] = 0.0f;
    }
}

/* grid (sequences * value heads * column tiles of GDN_STATE_COLS): the sequence's pieces in
 * order over its state's columns [c0, c0 + 32). Warp w keeps rows 16 w.. of S (all 32 columns) in
 * its MMA accumulators, and a tf32 hi/lo copy in shared memory for [W; Q] S. Per piece: phase 1,
 * warp (rt, ch) = (w % 4, w / 4) takes rows 16 rt.. and columns 16 ch.. of W S and Q S: V' = U -
 * W S, O = diag(sq) Q S; phase 2, the same warp O += P V' (stored), and warp w S = e^G_L S +
 * K^T diag(sk) V'. Operands land by cp.async in two groups: W, Q, U, scales (read in phase 1, the
 * next piece's load during phase 2) and K, P (read in phase 2, the next load during phase 1). */
__global__ void __launch_bounds__(GDN_CHUNK_THREADS, 1)
k_gdn_chunk_state(float *out, const float *ws, const float *q, const float *k, float *ssm, float *snap_ssm,
                  const int32_t *tok_snap, const int32_t *tiles, int n_tiles, const int32_t *tok_pos,
                  const int32_t *seq_slot, int nk, int nv, int dk, int dv, size_t ldq, size_t ldk, bool vec_qk)
{
    constexpr int C = GDN_CHUNK, TC = GDN_STATE_COLS, PS = GDN_P_STRIDE, VS = GDN_V_STRIDE;
    const int n_ct = (dv + TC - 1) / TC;
    const int s = blockIdx.x / (nv * n_ct), h = blockIdx.x / n_ct % nv, c0 = blockIdx.x % n_ct * TC;
    const int kh = h / (nv / nk), dkp = gdn_dk_padded(dk), dvp = gdn_dv_padded(dv);
    const int dks = dkp + 4, kst = dkp + 8;   // A loads (W, Q rows), A^T loads (K rows): distinct banks
    const size_t rec = (size_t)dkp + dvp + C + 4, rstride = (size_t)nv * rec;
    const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5, g = lane >> 2, t = lane & 3;
    const int rt = w & 3, ch = w >> 2;
    extern __shared__ __align__(16) float smem[];
    float *Wb = smem;               // [C][dks]
    float *Qb = Wb + C * dks;       // [C][dks]: raw q rows
    float *Kb = Qb + C * dks;       // [C][kst]: raw k rows
    float *Pb = Kb + C * kst;       // [C][PS]
    float *Ub = Pb + C * PS;        // [C][VS]: U columns c0..
    float *Sc = Ub + C * VS;        // [C][4]: sq, sk, e^G_L, 0
    float *Vb = Sc + C * 4;         // [C][VS]: V'
    float *Vs = Vb + C * VS;        // [C][VS]: diag(sk) V'
    uint32_t *Shi = (uint32_t *)(Vs + C * VS), *Slo = Shi + dkp * VS;   // [dkp][VS]: S in tf32 halves
    float *Sg = ssm + (size_t)seq_slot[s] * nv * dk * dv + (size_t)h * dk * dv;
    const bool own_s = 16 * w < dkp;   // warps past dkp own no rows of S

    float sacc[4][4];   // S rows 16 w + g (+ 8), columns 8 nn + 2 t (+ 1)
#pragma unroll
    for (int nn = 0; nn < 4; nn++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int r = 16 * w + g + (e >= 2 ? 8 : 0), cc = 8 * nn + 2 * t + (e & 1);
            sacc[nn][e] = r < dk && c0 + cc < dv ? Sg[(size_t)r * dv + c0 + cc] : 0.0f;
        }
    auto s_store = [&](float *dst) {   // this warp's rows of S, columns c0.., into a [dk][dv] state
#pragma unroll
        for (int nn = 0; nn < 4; nn++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int r = 16 * w + g + (e >= 2 ? 8 : 0), cc = 8 * nn + 2 * t + (e & 1);
                if (r < dk && c0 + cc < dv) dst[(size_t)r * dv + c0 + cc] = sacc[nn][e];
            }
    };
    auto s_publish = [&]() {   // this warp's rows of S into Shi / Slo
        if (!own_s) return;
#pragma unroll
        for (int nn = 0; nn < 4; nn++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int o = (16 * w + g + (e >= 2 ? 8 : 0)) * VS + 8 * nn + 2 * t + (e & 1);
                tf32_split(sacc[nn][e], &Shi[o], &Slo[o]);
            }
    };
    auto load_wqu = [&](int pt0, int pL) {   // group 1: W, Q, U, scales of the piece at token pt0
        const float *r0 = ws + ((size_t)pt0 * nv + h) * rec;
        gdn_rows_async(Wb, dks, r0, rstride, pL, dkp, dkp, true);
        gdn_rows_async(Qb, dks, q + (size_t)pt0 * ldq + (size_t)kh * dk, ldq, pL, dk, dkp, vec_qk);
        gdn_rows_async(Ub, VS, r0 + dkp + c0, rstride, pL, dvp - c0, TC, true);
        gdn_rows_async(Sc, 4, r0 + dkp + dvp + C, rstride, pL, 4, 4, true);
    };
    auto load_kp = [&](int pt0, int pL) {   // group 2: K, P
        const float *r0 = ws + ((size_t)pt0 * nv + h) * rec;
        gdn_rows_async(Kb, kst, k + (size_t)pt0 * ldk + (size_t)kh * dk, ldk, pL, dk, dkp, vec_qk);
        gdn_rows_async(Pb, PS, r0 + dkp + dvp, rstride, pL, C, C, true);
    };

    int tl = 0, pj = -1, t0, L, pos0;
    bool have = gdn_seq_piece_next(tiles, n_tiles, tok_pos, s, &tl, &pj, &t0, &L, &pos0);
    if (have) {
        load_wqu(t0, L);
        gdn_cp_commit();
        load_kp(t0, L);
        gdn_cp_commit();
    }
    s_publish();
    while (have) {
        if (pos0 == 0) {   // the piece starts its sequence: S from zero
#pragma unroll
            for (int nn = 0; nn < 4; nn++)
#pragma unroll
                for (int e = 0; e < 4; e++) sacc[nn][e] = 0.0f;
            s_publish();
        }
        gdn_cp_wait<1>();   // this piece's group 1
        __syncthreads();

        /* phase 1: X = W S, Y = Q S over rows 16 rt.., columns 16 ch.. */
        float xw[2][4], xq[2][4];
#pragma unroll
        for (int nn = 0; nn < 2; nn++)
#pragma unroll
            for (int e = 0; e < 4; e++) xw[nn][e] = xq[nn][e] = 0.0f;
#pragma unroll 2
        for (int k0 = 0; k0 < dkp; k0 += 8) {   // dkp / 8 even: the next step's loads overlap these MMAs
            const struct tf32_a aw = tf32_load_a(Wb, dks, 16 * rt, k0, lane), aq = tf32_load_a(Qb, dks, 16 * rt, k0, lane);
#pragma unroll
            for (int nn = 0; nn < 2; nn++) {
                const struct tf32_b bs = tf32_load_b_split(Shi, Slo, VS, k0, 16 * ch + 8 * nn, lane);
                mma_3xtf32(xw[nn], aw, bs);
                mma_3xtf32(xq[nn], aq, bs);
            }
        }
        const float eL = Sc[2];   // e^G_L (row 0's copy), before the next piece's scales land
        float o[2][4];
#pragma unroll
        for (int nn = 0; nn < 2; nn++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int i = 16 * rt + g + (e >= 2 ? 8 : 0), cc = 16 * ch + 8 * nn + 2 * t + (e & 1);
                const float vp = Ub[i * VS + cc] - xw[nn][e];   // rows past L: 0 - 0
                Vb[i * VS + cc] = vp;
                Vs[i * VS + cc] = Sc[4 * i + 1] * vp;
                o[nn][e] = Sc[4 * i] * xq[nn][e];
            }
        gdn_cp_wait<0>();   // this piece's group 2
        __syncthreads();    // V' published; W, Q, U, scales and S's copy read

        const int cur_t0 = t0, cur_L = L;
        have = gdn_seq_piece_next(tiles, n_tiles, tok_pos, s, &tl, &pj, &t0, &L, &pos0);
        if (have) load_wqu(t0, L);
        gdn_cp_commit();   // empty past the last piece: the group count stays uniform

        /* phase 2: O += P V' (causal: k-steps up to the row tile's end), stored */
#pragma unroll 2
        for (int k0 = 0; k0 < 16 * rt + 16; k0 += 8) {
            const struct tf32_a ap = tf32_load_a(Pb, PS, 16 * rt, k0, lane);
#pragma unroll
            for (int nn = 0; nn < 2; nn++) mma_3xtf32(o[nn], ap, tf32_load_b(Vb, VS, k0, 16 * ch + 8 * nn, lane));
        }
#pragma unroll
        for (int nn = 0; nn < 2; nn++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int i = 16 * rt + g + (e >= 2 ? 8 : 0), col = c0 + 16 * ch + 8 * nn + 2 * t + (e & 1);
                if (i < cur_L && col < dv) out[(size_t)(cur_t0 + i) * nv * dv + (size_t)h * dv + col] = o[nn][e];
            }
        /* S = e^G_L S + K^T diag(sk) V' over this warp's rows */
        if (own_s) {
#pragma unroll
            for (int nn = 0; nn < 4; nn++)
#pragma unroll
                for (int e = 0; e < 4; e++) sacc[nn][e] *= eL;
#pragma unroll 2
            for (int k0 = 0; k0 < C; k0 += 8) {
                const struct tf32_a ak = tf32_load_at(Kb, kst, 16 * w, k0, lane);
#pragma unroll
                for (int nn = 0; nn < 4; nn++) mma_3xtf32(sacc[nn], ak, tf32_load_b(Vs, VS, k0, 8 * nn, lane));
            }
        }
        const int snap = tok_snap ? tok_snap[cur_t0 + cur_L - 1] : -1;   // batch_begin ends a tile there
        if (snap >= 0) s_store(snap_ssm + (size_t)snap * nv * dk * dv + (size_t)h * dk * dv);
        s_publish();        // nobody reads Shi / Slo in phase 2
        __syncthreads();    // K, P, V' read
        if (have) load_kp(t0, L);
        gdn_cp_commit();
    }
    gdn_cp_wait<0>();
    s_store(Sg);
}

/* Shared memory of k_gdn_chunk_prep and k_gdn_chunk_state (bytes), as their layouts carve it. */
static size_t gdn_prep_smem(int dk)
{
    return sizeof(float) * (2 * (size_t)GDN_CHUNK * (gdn_dk_padded(dk) + 4) + (size_t)GDN_CHUNK * GDN_P_STRIDE +
                            6 * (size_t)GDN_CHUNK);   // G in f64
}

static size_t gdn_state_smem(int dk)
{
    const size_t C = GDN_CHUNK, dkp = (size_t)gdn_dk_padded(dk), VS = GDN_V_STRIDE;
    return sizeof(float) * (2 * C * (dkp + 4) + C * (dkp + 8) + C * GDN_P_STRIDE + 3 * C * VS + 4 * C + 2 * dkp * VS);
}

/* The chunked form for this step? Not in cuda-deterministic (a decode token's arithmetic must not
 * depend on a prefill beside it), not for pure decode, only when some sequence brings a run of
 * GDN_CHUNKED_MIN_RUN tokens, and only where the state pass's shared memory fits (dk 128 takes
 * 193 KB: H100, not A100). Tiles come from batch_begin (host copy kept in h_tiles). */
static bool gdn_chunked_pays(const struct cuda_backend *cb, const struct gdn_params *p)
{
    const struct cuda_batch *b = &cb->batch;
    if (cb->deterministic || b->all_single || p->k_dim > GDN_CHUNKED_MAX_DK || p->v_dim > GDN_CHUNKED_MAX_DV ||
        gdn_state_smem(p->k_dim) > cb->smem_optin)
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
                        float *snap_ssm, const struct gdn_params *p, const struct batch_meta *m)
{
    const struct cuda_batch *bt = &cb->batch;
    const int nk = p->n_k_heads, nv = p->n_v_heads, dk = p->k_dim, dv = p->v_dim;
    const size_t f = sizeof(float), ldq = q->nb[1] / f, ldk = k->nb[1] / f;
    float *ws = (float *)cuda_grow(cb, &cb->d_gdn_work, &cb->gdn_work_bytes, f * (size_t)m->n_tok * nv * gdn_rec_floats(dk, dv));
    const size_t smem1 = gdn_prep_smem(dk), smem2 = gdn_state_smem(dk);
    // q and k rows in 16-byte copies when every row starts on 16 bytes (dkp pads the rest with zeros)
    const bool vec_qk = dk % 4 == 0 && ldq % 4 == 0 && ldk % 4 == 0 && ((uintptr_t)dptr(q) & 15) == 0 &&
                        ((uintptr_t)dptr(k) & 15) == 0;
    double t0 = cuda_prof_begin(cb);
    DISPATCH_FLOAT(a_log->dtype, T, {
        gdn_smem_optin(cb, k_gdn_chunk_prep<T>, smem1, "gdn chunked prefill");
        k_gdn_chunk_prep<T><<<dim3(bt->n_tiles * GDN_TILE_PIECES, nv), GDN_CHUNK_THREADS, smem1, cb->stream>>>(
            ws, (const float *)dptr(q), (const float *)dptr(k), (const float *)dptr(v), (const float *)dptr(a),
            (const float *)dptr(b), (const T *)dptr(a_log), (const T *)dptr(dt_bias), bt->d_tiles, bt->d_tok_pos, nk, nv,
            dk, dv, ldq, ldk, v->nb[1] / f, a->nb[1] / f, b->nb[1] / f, vec_qk);
    });
    LAUNCH_CHECK();
    cuda_prof_end(cb, "gdn_chunk_prep", t0);
    const int n_ct = (dv + GDN_STATE_COLS - 1) / GDN_STATE_COLS;
    gdn_smem_optin(cb, k_gdn_chunk_state, smem2, "gdn chunked prefill");
    t0 = cuda_prof_begin(cb);
    k_gdn_chunk_state<<<m->n_seq * nv * n_ct, GDN_CHUNK_THREADS, smem2, cb->stream>>>(
        (float *)dptr(out), ws, (const float *)dptr(q), (const float *)dptr(k), (float *)dptr(&st->ssm), snap_ssm,
        bt->d_tok_snap, bt->d_tiles, bt->n_tiles, bt->d_tok_pos, bt->d_seq_state_slot, nk, nv, dk, dv, ldq, ldk, vec_qk);
    LAUNCH_CHECK();
    cuda_prof_end(cb, "gdn_chunk_state", t0);
}

void cuda_gdn_recurrent(struct backend *be, struct tensor *out, const struct tensor *q, const struct tensor *k,
                        const struct tensor *v, const struct tensor *a, const struct tensor *b,
                        const struct tensor *a_log, const struct tensor *dt_bias, struct gdn_state_layer *st,
                        struct gdn_state_layer *snap, const struct gdn_params *p, const struct batch_meta *m)
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
    const int32_t *tok_snap = cb->batch.d_tok_snap;
    const bool writes = cb->batch.snap_writes;
    CHECK(!writes || (snap && snap->ssm.ne[0] == st->ssm.ne[0]), "gdn_recurrent: snapshots without their store");
    float *snap_ssm = writes ? (float *)dptr(&snap->ssm) : NULL;
    if (gdn_chunked_pays(cb, p)) {   // profiled per kernel: gdn_chunk_prep, gdn_chunk_state
        gdn_chunked(cb, out, q, k, v, a, b, a_log, dt_bias, st, snap_ssm, p, m);
        return;
    }
    const double t0 = cuda_prof_begin(cb);
    size_t f = sizeof(float);
    // deterministic, and steps with snapshots: the walk below for all
    if (cb->batch.all_single && !cb->deterministic && !writes && dk <= GDN_DECODE_MAX_DK) {
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
        (float *)dptr(&st->ssm), snap_ssm, tok_snap, cb->batch.d_tok_seq, cb->batch.d_tok_pos,
        cb->batch.d_seq_state_slot, m->n_tok, nk, nv, dk, dv, q->nb[1] / f, k->nb[1] / f, v->nb[1] / f, a->nb[1] / f,
        b->nb[1] / f));
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
