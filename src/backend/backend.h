/* backend: the ops vtable every compute backend implements (ref, cpu, cuda).
 *
 * The forward pass (model/forward.c) is written once against these ops. Each op is one explicit,
 * typed function with a one-line contract. Compute calls are void and asynchronous on the
 * backend's stream; errors surface at sync(). Shapes below are [rows, cols] with cols innermost
 * (tensor ne[0]); activations are f32 unless said otherwise; weights may be f32, f16 or bf16.
 *
 * Threading: a backend is used by one thread at a time (the engine thread). Device state lives in
 * the struct behind `struct backend`, never in file statics.
 *
 * Batches: one step computes a flattened batch of tokens from many sequences (struct batch_meta).
 * batch_begin() stages its index arrays where the ops can read them (a no-op on host backends;
 * an upload on CUDA); every op of the step then receives the same meta pointer.
 *
 *     struct backend *be;  backend_new("cpu", &(struct backend_cfg){ .n_threads = 2 }, &be);
 *     be->ops->batch_begin(be, &meta);
 *     be->ops->rmsnorm(be, &xn, &x, &w, 1e-6f, 0.0f);
 *     be->ops->sync(be);
 *     backend_free(be);
 */
#ifndef CAIRN_BACKEND_BACKEND_H
#define CAIRN_BACKEND_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "base/status.h"
#include "tensor/tensor.h"

/* One step's tokens. All arrays are host memory owned by the caller and valid until the step's
 * ops have been issued (the backend copies what it needs in batch_begin). */
struct batch_meta {
    int            n_tok;          // tokens in this step
    const int32_t *tok_id;         // [n_tok] token ids
    const int32_t *tok_pos;        // [n_tok] position of the token in its sequence
    const int32_t *tok_seq;        // [n_tok] index of its sequence within this batch
    const int64_t *tok_slot;       // [n_tok] KV slot: block_id * block_size + pos % block_size
    int            n_seq;          // sequences in this step
    const int32_t *seq_len;        // [n_seq] tokens of the sequence in the KV cache after this step
    const int32_t *seq_block0;     // [n_seq + 1] CSR offsets of each sequence's blocks in block_ids
    const int32_t *block_ids;      // block tables of all sequences, concatenated
    int            n_out;          // tokens whose logits are wanted
    const int32_t *out_tok;        // [n_out] indices into the step's tokens
    int            block_size;     // tokens per KV block
    const int32_t *seq_state_slot; // [n_seq] recurrent-state slot of each sequence (Gated DeltaNet
                                   // layers, struct gdn_state_layer); NULL for attention-only models
    const int32_t *tok_snap;       // [n_tok] or NULL (all TOK_SNAP_NONE): after a token marked
                                   // TOK_SNAP_CUT or with a slot >= 0 a chunked form ends its piece, and
                                   // after a slot its sequence's recurrent state is also copied to that
                                   // slot of the snapshot store (the prefix cache's snapshots)
};

enum { TOK_SNAP_NONE = -1, TOK_SNAP_CUT = -2 };   // batch_meta.tok_snap entries that are not slots

/* Paged KV storage for one layer: [n_blocks * block_size, n_kv_heads, head_dim]; slot s of the
 * cache is row s. Allocated by kv/ from the backend's buffers. */
struct kv_layer {
    struct tensor k;               // [n_slots, n_kv_heads * head_dim] kv dtype (f32, f16, bf16 or f8e4m3)
    struct tensor v;               // same shape as k
};

struct attn_params {
    int   n_heads;
    int   n_kv_heads;              // n_heads % n_kv_heads == 0 (GQA)
    int   head_dim;
    float scale;                   // multiplies q.k (usually 1/sqrt(head_dim))
    int   window;                  // > 0: token at pos p sees positions > p - window only
    float softcap;                 // > 0: scores = softcap * tanh(scores / softcap)
};

struct rope_params {
    int   head_dim;
    int   rot_dim;                 // leading dims of each head that rotate (partial rotary)
    float mscale;                  // multiplies cos and sin (yarn attention factor; 1 otherwise)
    bool  interleaved;             // false: HF rotate_half (pairs i, i + rot_dim/2); true: (2i, 2i+1)
};

/* Recurrent state of one Gated DeltaNet layer, for every state slot (a sequence owns one slot,
 * meta->seq_state_slot[seq]). Allocated by the engine's state pool from the backend's buffers. */
struct gdn_state_layer {
    struct tensor conv;            // [n_slots, (K-1) * conv_dim] f32: the last K-1 conv inputs, oldest first
    struct tensor ssm;             // [n_slots, nv * dk * dv] f32: S of each value head, [dk][dv] (HF layout)
};

/* Backends that run a prefill in the chunked (WY) form of the delta rule start its chunks at
 * positions that are multiples of this, counted from the sequence start, and end one after every
 * token meta->tok_snap marks (a cut or a snapshot); a prefill step that ends on such a position
 * leaves the same state whatever the steps before it were, bit for bit (the scheduler cuts hybrid
 * prefills there, sched.c: chunk_cut), and a snapshot is the state a step ending at its token
 * would leave. */
enum { GDN_CHUNK = 64 };

struct gdn_params {
    int n_k_heads;                 // nk: q/k heads
    int n_v_heads;                 // nv, a multiple of nk: value head h reads q/k head h / (nv / nk)
    int k_dim;                     // dk
    int v_dim;                     // dv
};

enum { STEP_GRAPH_NONE = 0, STEP_GRAPH_REPLAYED, STEP_GRAPH_RECORDING };

enum act {
    ACT_SILU = 0,                  // SwiGLU: silu(gate) * up
    ACT_GELU_TANH,                 // GeGLU with tanh-approximated gelu
};

struct backend;

struct backend_cfg {
    int  n_threads;                // cpu: worker threads (0 = all cores)
    int  device;                   // cuda: device ordinal
    bool precise;                  // f32-accurate GEMM inputs (backends "cpu-precise": f32 tiles for bf16
                                   //   weights; "cuda-precise": also f32 attention)
    bool deterministic;            // cuda: a row's result never depends on the batch ("cuda-deterministic")
    /* Switches for tests and measurements; zero is the production default (docs/server.md, "CUDA
     * switches"; backend/backend_env.h reads them from CAIRN_* variables for the app and benches). */
    bool cuda_graphs_off;          // cuda: no step graphs, every decode step launches op by op
    bool cuda_skinny_off;          // cuda: 5-16-row matmuls through cuBLAS, not the skinny tensor-core kernel
    int  cuda_fp8_mma_min_len;     // cuda: fp8-cache decode on tensor cores from this longest sequence
                                   //   (rounded down to a power of two; 0: 1024)
    int  cuda_moe_device_n;        // cuda: MoE steps of up to this many tokens on the device path (1-64; 0: 64)
    bool profile;                  // the forward pass times its phases (logged when it is freed); cuda
                                   //   also counts and times every matmul and attention call per kernel
                                   //   chosen (syncs around each; no step graphs), logged at backend_free
};

/* Contract details where the one-liners below leave a choice (HF-compatible readings; ref is the
 * executable statement of each, backend/ref/ref.c):
 *  - Tensors: rows are ne[0] contiguous elements; row r of an N-d tensor is found through nb[1..3]
 *    (views from tensor_rows_view are fine). Activations, out, q, logits are f32.
 *  - rmsnorm: out = x * (1 / sqrt(mean(x^2) + eps)) * (w + w_offset), computed in f32 or better,
 *    as HF's RMSNorm (which upcasts to f32); every row of x, so per-head q/k norms pass
 *    x reshaped to [n_tok * n_heads, head_dim].
 *  - matmul / matmul_rows: bias dtype may be any float dtype; on cpu every output row is
 *    bit-identical whatever the batch size, the row's position in the batch and the thread count.
 *  - rope: angle = (f32)pos * inv_freq[i] rounded to f32 (as HF computes freqs in f32), then
 *    cos/sin of that f32 angle, times mscale; x[i], x[i + rot_dim/2] (or x[2i], x[2i+1]) rotate.
 *  - attention: token t of sequence s at position p reads positions j in [max(0, p - window + 1), p]
 *    (all of [0, p] when window <= 0) at slot block_ids[seq_block0[s] + j / block_size] *
 *    block_size + j % block_size; softcap applies to the scaled scores; softmax in f32 or better.
 *    The step's own K/V must have been written by kv_write before (causal within the step).
 *  - moe_route: the top k are chosen on the logits (softmax is monotonic, so no rounding ties);
 *    ids come out in descending order of probability; weights are the softmax probabilities of
 *    the chosen experts, divided by their sum when norm_topk.
 *  - moe_ffn: each token's output is the sum over its chosen experts in ascending expert index
 *    (HF's loop order) of weight * down(act(gate x) * up x).
 *  - glu gelu_tanh: 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))) * up.
 *  - argmax: the lowest index among equal maxima; NaNs are never chosen over numbers.
 */
#define BACKEND_WEIGHT_ALIGN 256   // weights_reserve: bytes each prepared copy is rounded up to
#define BACKEND_CANDS_MAX    128   // sample_cands: the most candidates per row

struct backend_ops {
    const char *name;
    void        (*destroy)(struct backend *);   // frees the backend and its state

    /* ---- memory ---- */
    enum status (*buffer_new)(struct backend *, size_t bytes, struct buffer **out);   // zeroed? no; ENOMEM on failure
    void        (*buffer_free)(struct backend *, struct buffer *);
    /* Copies bytes from host memory into t's storage (starting at t's offset). Synchronous. */
    void        (*upload)(struct backend *, struct tensor *t, const void *src, size_t bytes);
    /* Copies bytes of t's storage into host memory. Synchronous (waits for queued work). */
    void        (*download)(struct backend *, void *dst, const struct tensor *t, size_t bytes);
    /* Copies bytes of src's storage into dst's (both this backend's, from each tensor's offset; not
     * overlapping). Asynchronous like the compute ops: no host round trip. */
    void        (*copy)(struct backend *, struct tensor *dst, const struct tensor *src, size_t bytes);
    /* Optional: makes a weight usable by this backend (device copy or repack); may replace *w.
     * Host backends use the mmapped bytes as they are. NULL means nothing to do. */
    enum status (*weight_prepare)(struct backend *, struct tensor *w);
    /* Optional: the next weight_prepare copies, in call order, take consecutive places (each
     * rounded up to BACKEND_WEIGHT_ALIGN bytes) of one allocation of `bytes` while it has room
     * (model_prepare reserves what a model's weights need; past that each copy is allocated on its
     * own), so weights prepared one after another (a layer's q, k and v) are adjacent in memory
     * and a backend may multiply them as one matrix. NULL: no such arena. */
    enum status (*weights_reserve)(struct backend *, size_t bytes);

    /* ---- step ---- */
    void        (*batch_begin)(struct backend *, const struct batch_meta *);
    enum status (*sync)(struct backend *);   // waits for queued work; reports a sticky device error

    /* ---- ops ---- */
    // out[n_tok, d] = table[tok_id[i], :] * scale   (table [n_vocab, d], any float dtype)
    void (*embed)(struct backend *, struct tensor *out, const struct tensor *table,
                  const struct batch_meta *, float scale);
    // out[r, :] = x[r, :] / rms(x[r, :]) * (w + w_offset); rows = all rows of x; w: [ne0]
    void (*rmsnorm)(struct backend *, struct tensor *out, const struct tensor *x,
                    const struct tensor *w, float eps, float w_offset);
    // out[n, m] = x[n, k] @ w[m, k]^T (+ bias[m] if bias != NULL); w any float dtype
    void (*matmul)(struct backend *, struct tensor *out, const struct tensor *x,
                   const struct tensor *w, const struct tensor *bias);
    // out[n, m] = x[row_idx[i], k] @ w^T for i < n  (logits of selected tokens; rows in meta->out_tok)
    void (*matmul_rows)(struct backend *, struct tensor *out, const struct tensor *x,
                        const struct tensor *w, const struct batch_meta *);
    // x[n_tok, n_heads * head_dim] rotated in place at positions tok_pos; inv_freq: [rot_dim/2] f32
    void (*rope)(struct backend *, struct tensor *x, int n_heads, const struct tensor *inv_freq,
                 const struct rope_params *, const struct batch_meta *);
    // writes k, v [n_tok, n_kv_heads * head_dim] into the cache rows tok_slot
    void (*kv_write)(struct backend *, struct kv_layer *, const struct tensor *k,
                     const struct tensor *v, const struct batch_meta *);
    // out[n_tok, n_heads * head_dim]: causal paged attention of each token over its sequence's
    // cache positions [0, tok_pos] (within the window); q: [n_tok, n_heads * head_dim]
    void (*attention)(struct backend *, struct tensor *out, const struct tensor *q,
                      const struct kv_layer *, const struct attn_params *, const struct batch_meta *);
    // out[n, f] = act(gate[n, f]) * up[n, f]
    void (*glu)(struct backend *, struct tensor *out, const struct tensor *gate,
                const struct tensor *up, enum act);
    // out = a + b (same shapes; out may alias a)
    void (*add)(struct backend *, struct tensor *out, const struct tensor *a, const struct tensor *b);
    // x = cap * tanh(x / cap), in place
    void (*softcap)(struct backend *, struct tensor *x, float cap);
    // MoE routing: probs = softmax(logits[n, E]); picks the top k per row (ties: lower index);
    // weights renormalized to sum 1 when norm_topk. ids: [n, k] i32, weights: [n, k] f32.
    void (*moe_route)(struct backend *, struct tensor *ids, struct tensor *weights,
                      const struct tensor *logits, int k, bool norm_topk);
    // out[n, d] = sum_j weights[i, j] * down_e(act(gate_e(x_i)) * up_e(x_i)), e = ids[i, j];
    // gate/up/down: arrays of n_experts weight tensors ([f, d], [f, d], [d, f]); with
    // moe_expert_subset, an expert whose tensors are absent (buf NULL) adds nothing (expert parallelism)
    void (*moe_ffn)(struct backend *, struct tensor *out, const struct tensor *x,
                    const struct tensor *ids, const struct tensor *weights,
                    const struct tensor *gate, const struct tensor *up, const struct tensor *down,
                    int n_experts, enum act);
    // out_ids[i] = argmax(logits[i, :]) (ties: lower index); out_ids host memory [n]. Synchronous.
    void (*argmax)(struct backend *, int32_t *out_ids, const struct tensor *logits);
    // Constrained decoding: logits[rows[i], j] = -inf for every j whose bit is clear in row i's mask
    // (bit j % 32 of words[i * n_words + j / 32], n_words = ceil(ne[0] / 32)), for i < n; other rows
    // and allowed ids keep their values. rows and words are host memory, read before the call
    // returns; asynchronous like the compute ops (cuda: one copy from pinned staging, one kernel),
    // issued outside step graphs, before the argmax or download that reads the rows.
    void (*logits_mask)(struct backend *, struct tensor *logits, int n, const int32_t *rows, const uint32_t *words);
    // Optional (NULL: the engine downloads sampled rows; cpu leaves it so). Sampling candidates of n
    // rows of logits (rows[i], host array), k <= BACKEND_CANDS_MAX: ids/vals[i * k + j] = row
    // rows[i]'s k largest logits, largest first (ties: lower id; NaN ranks and is reported as
    // -inf, -0 as +0; past the row's end id -1, -inf), and sums[i] = the sum over the row of
    // sample_prob(x, inv_t[i], vals[i * k] * inv_t[i]) (base/sample_prob.h, the same f32 bits)
    // in f64, in any order (0 when the max is -inf). Outputs host memory; synchronous.
    void (*sample_cands)(struct backend *, const struct tensor *logits, int n, const int32_t *rows, const float *inv_t,
                         int k, int32_t *ids, float *vals, double *sums);
    /* ---- fused ops ----
     * Several plain ops in one pass. Every backend has them: cuda implements all seven fused; cpu
     * implements matmul_n; backend.c composes each one a backend leaves NULL from the plain ops
     * above (the "composed:" line says how), and backend_new installs those compositions. Scratch
     * tensors named below (xn, up, logits) are the caller's: a fused implementation may use them or
     * leave them as they were, so callers never read them afterwards unless the line says so. */
    // outs[i] = x @ ws[i]^T (+ biases[i]) for i < n (n <= 3): several projections of one input in
    // one pass (q/k/v, gate/up); biases, or any entry of it, may be NULL.
    // composed: matmul n times.
    void (*matmul_n)(struct backend *, int n, struct tensor *const *outs, const struct tensor *x,
                     const struct tensor *const *ws, const struct tensor *const *biases);
    // outs[i] = rmsnorm(x; norm_w, eps, w_offset) @ ws[i]^T (+ biases[i]) for i < n (n <= 3); xn
    // [rows of x, d] is scratch that the backend may fill with rmsnorm(x) or leave as it was
    // (callers must not read it afterwards).
    // composed: rmsnorm into xn, then matmul_n.
    void (*norm_matmul_n)(struct backend *, int n, struct tensor *const *outs, struct tensor *xn,
                          const struct tensor *x, const struct tensor *norm_w, float eps, float w_offset,
                          const struct tensor *const *ws, const struct tensor *const *biases);
    // out[n, m] += x[n, k] @ w[m, k]^T (residual adds).
    // composed: matmul into a scratch buffer backend.c owns (grow-only), then add.
    void (*matmul_add)(struct backend *, struct tensor *out, const struct tensor *x, const struct tensor *w);

    // The attention inputs' per-token work in one pass. Per head of q [n_tok, n_heads * hd] and k
    // [n_tok, n_kv_heads * hd]: RMSNorm with q_norm / k_norm ([hd]; skipped when NULL), then rope
    // at tok_pos; q is rotated in place, the rotated k and v go to the cache rows tok_slot. k's
    // scratch is left in an unspecified state.
    // composed: rmsnorm of q's and k's heads, rope of q and k, then kv_write.
    void (*qk_rope_kv)(struct backend *, struct tensor *q, struct tensor *k, const struct tensor *v,
                       const struct tensor *q_norm, const struct tensor *k_norm, float eps, float w_offset,
                       int n_heads, int n_kv_heads, const struct tensor *inv_freq, const struct rope_params *,
                       struct kv_layer *, const struct batch_meta *);

    // out[n, f] = act(h @ w_gate^T) * (h @ w_up^T) with h = rmsnorm(x; norm_w, eps, w_offset), or
    // h = x when norm_w is NULL; xn [n, d] and up [n, f] are scratch the backend may use or leave.
    // composed: norm_matmul_n (matmul_n without norm_w) of w_gate and w_up into out and up, then glu.
    void (*matmul_glu)(struct backend *, struct tensor *out, struct tensor *up, struct tensor *xn,
                       const struct tensor *x, const struct tensor *norm_w, float eps, float w_offset,
                       const struct tensor *w_gate, const struct tensor *w_up, enum act);

    // The MoE router in one pass. xn [n, d] = rmsnorm(x; norm_w, eps, w_offset) is written (moe_ffn
    // reads it); ids and weights as moe_route on logits = xn @ router^T ([E, d]); logits [n, E] is
    // scratch the backend may fill or leave as it was.
    // composed: rmsnorm into xn, matmul of xn with router into logits, then moe_route.
    void (*norm_moe_route)(struct backend *, struct tensor *ids, struct tensor *weights, struct tensor *logits,
                           struct tensor *xn, const struct tensor *x, const struct tensor *norm_w, float eps,
                           float w_offset, const struct tensor *router, int k, bool norm_topk);
    // x[n, d] += moe_ffn(xn, ids, weights, ...), the MoE FFN with the residual add in its epilogue
    // (xn must not alias x).
    // composed: moe_ffn into a scratch buffer backend.c owns (grow-only), then add.
    void (*moe_ffn_add)(struct backend *, struct tensor *x, const struct tensor *xn, const struct tensor *ids,
                        const struct tensor *weights, const struct tensor *gate, const struct tensor *up,
                        const struct tensor *down, int n_experts, enum act);

    /* ---- step graphs ---- */
    // Every backend has them (backend.c's stand-ins for a backend without: begin returns
    // STEP_GRAPH_NONE, so ops launch one by one). A backend with step graphs implements matmul_add
    // and moe_ffn_add (their compositions allocate scratch, which would make recordings stale;
    // backend_new checks it). Called after batch_begin for a whole forward step
    // that uses the caller's scratch and KV cache (identified by the two pointers: recordings bake
    // their addresses in; any buffer_new or buffer_free makes earlier recordings stale):
    // STEP_GRAPH_REPLAYED: a recording of an equivalent step (same shapes; the staged batch arrays
    // differ) was launched, so the caller issues none of the step's ops; STEP_GRAPH_RECORDING: the
    // caller issues them (they are recorded, not run) and then calls step_graph_end, which runs the
    // recording; STEP_GRAPH_NONE: the caller issues them as usual.
    int  (*step_graph_begin)(struct backend *, const struct batch_meta *, const void *scratch, const void *kv);
    void (*step_graph_end)(struct backend *);

    /* ---- device memory ---- */
    // Optional (NULL: host memory, no fixed budget): bytes of device memory free now and in all.
    void (*mem_info)(struct backend *, size_t *free_bytes, size_t *total_bytes);
    // Optional (NULL: nothing to do): pins (pin) or unpins host memory [p, p + bytes) that downloads
    // write often (the engine's logits rows), so they copy at the bus's rate without staging. A pin
    // that fails is logged and leaves the memory as it was (downloads still work).
    void (*host_pin)(struct backend *, void *p, size_t bytes, bool pin);

    /* ---- synthetic weights ---- */
    // Optional (NULL: fill on the host and upload): t[i] = synth value i of the tensor with seed
    // tseed (model/synth.h synth_fill_bf16(dst, n, tseed, 0, base, std), bit-identical) for every
    // element of the contiguous bf16 tensor t in this backend's memory. Async like the compute ops.
    void (*fill_synthetic)(struct backend *, struct tensor *t, uint64_t tseed, float base, float std);

    /* ---- Gated DeltaNet (hybrid models; optional: NULL where not implemented) ---- */
    // A sequence's tokens appear in the step in increasing, consecutive positions; its state lives
    // in slot seq_state_slot[tok_seq]: the ops read it (zeros instead when the token's position is
    // 0) and leave it advanced past the step's last token. Prefill chunks and decode alike. After
    // a token with meta->tok_snap[t] = j >= 0 each op also writes its part of the state as it stands
    // there into slot j of snap (the snapshot store's layer; NULL when meta->tok_snap is).
    // out[n_tok, C] = silu(x conv w): the causal depthwise conv over each sequence's last K inputs
    // (x [n_tok, C], taps w [C, 1, K] any float dtype, ne {K, 1, C}); out must not alias x.
    void (*gdn_conv)(struct backend *, struct tensor *out, const struct tensor *x, const struct tensor *w,
                     struct gdn_state_layer *, struct gdn_state_layer *snap, const struct batch_meta *);
    // out[n_tok, nv*dv]: the gated delta rule per value head h (q/k head h / (nv/nk)): q, k
    // L2-normalised (x / sqrt(sum x^2 + 1e-6)), q times dk^-0.5; g = -exp(A_log[h]) softplus(a[h] +
    // dt_bias[h]), beta = sigmoid(b[h]); S = exp(g) S; S += k (beta (v - S^T k))^T; out = S^T q.
    // q, k [n_tok, nk*dk], v [n_tok, nv*dv], a, b [n_tok, nv] f32, may be column views (row stride nb[1]).
    void (*gdn_recurrent)(struct backend *, struct tensor *out, const struct tensor *q, const struct tensor *k,
                          const struct tensor *v, const struct tensor *a, const struct tensor *b,
                          const struct tensor *a_log, const struct tensor *dt_bias, struct gdn_state_layer *,
                          struct gdn_state_layer *snap, const struct gdn_params *, const struct batch_meta *);
    // out[n, H*dv] = w * (x / rms(x) per head of dv, eps) * silu(z); w [dv] plain weight; out may alias x
    void (*rmsnorm_gated)(struct backend *, struct tensor *out, const struct tensor *x, const struct tensor *z,
                          const struct tensor *w, float eps);
    // out[n, m] = x[n, m] * sigmoid(g[n, j]), j = c or 0 when g has one column (gated attention
    // output; shared-expert gate); out may alias x. Optional like the ops above.
    void (*sigmoid_mul)(struct backend *, struct tensor *out, const struct tensor *x, const struct tensor *g);

    /* ---- quantized weights ---- */
    // true: every op that takes a weight (matmul*, embed, moe_*, the fused ops) accepts DTYPE_QMLX
    // weights (MLX-quantized, tensor/qweight.h); false: model_prepare refuses quantized models.
    bool quant_weights;

    /* ---- capabilities (last: cuda initialises the table by position) ---- */
    bool moe_expert_subset;   // moe_ffn(_add) skip absent experts (buf NULL): runs expert-parallel ranks
};

struct backend {
    const struct backend_ops *ops; // = &all_ops once backend_new returns
    void *impl;                    // the backend's own state
    /* Owned by backend.c (the constructors leave them zeroed): */
    struct backend_ops  all_ops;   // the backend's table with backend.c's composed ops where it had NULL
    struct buffer      *compose_buf;   // grow-only scratch of the composed matmul_add / moe_ffn_add
    bool                profile;       // cfg->profile, for the forward pass's phase timing
};

/* Creates a backend by name ("ref", "cpu", "cpu-precise" (cpu with cfg->precise), "cuda",
 * "cuda-precise" or "cuda-deterministic" (cuda with cfg->precise or cfg->deterministic)), with every fused op and step-graph member non-NULL (composed
 * ones filled in). Logs and returns EUNSUPPORTED for an unknown or unavailable one (e.g. "cuda"
 * without a GPU). */
enum status backend_new(const char *name, const struct backend_cfg *cfg, struct backend **out);
void        backend_free(struct backend *be);   // frees backend.c's scratch, then be->ops->destroy(be); NULL is fine
/* Comma-separated list of backends compiled into this binary. */
const char *backend_list(void);

/* Per-backend constructors: only backend_new calls them (their tables may leave the fused ops NULL). */
enum status backend_ref_new(const struct backend_cfg *cfg, struct backend **out);
enum status backend_cpu_new(const struct backend_cfg *cfg, struct backend **out);
enum status backend_cuda_new(const struct backend_cfg *cfg, struct backend **out);

/* The cuda backend's extras for dist/collective_nccl.c. GPUs this process sees (0 without CUDA or
 * a driver); a cuda backend's stream (a cudaStream_t), where a collective queues its calls behind
 * the backend's ops. */
int   backend_cuda_device_count(void);
void *backend_cuda_stream(struct backend *be);

#endif
