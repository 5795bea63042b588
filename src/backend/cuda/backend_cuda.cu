/* backend_cuda: the CUDA backend's vtable, memory, batch staging and synchronization.
 * The ops themselves live in one .cu file per family (elementwise, matmul, attention, moe). */
#include "backend/cuda/cuda_common.cuh"

#include <stdlib.h>
#include <string.h>

extern "C" {
#include "base/clock.h"
#include "base/mem.h"
}

struct prepared_entry {
    struct buffer *buf;       // a weight's device copy, freed with the backend
};

/* A recorded decode step, replayed for every later step of the same shape (see c_step_graph_begin). */
struct step_graph {
    uint64_t        key;          // step_graph_key; 0 = free entry
    const void     *scratch, *kv; // whose buffers the recording uses (step_graph_begin's arguments)
    uint32_t        mem_gen;      // cb->mem_gen when recorded (stale once a workspace moved)
    uint64_t        last_use;
    cudaGraphExec_t exec;         // NULL: seen once, ran op by op (so workspaces have grown to size)
    uint64_t        unsafe_mark;  // cb->graph_unsafe when its first run began
    bool            unsafe;       // its first run made a call a graph cannot record: never recorded
};

#define STEP_GRAPHS        64     // recordings kept (least recently used is dropped)
#define STEP_GRAPH_MAX_TOK 32     // steps up to this many tokens may be recorded (their first run decides)

struct cuda_backend_ext {
    struct cuda_backend    cb;
    struct step_graph      graphs[STEP_GRAPHS];
    uint64_t               graph_clock;
    struct step_graph     *recording;     // the entry being recorded, between begin and end
    struct step_graph     *first_run;     // the entry whose first (op-by-op) run the last step was
    bool                   graphs_off;    // cfg cuda_graphs_off or profile
    struct prepared_entry *prep;
    int                    n_prep, cap_prep;
    struct buffer         *arena;         // weights_reserve's allocation (also in prep), or NULL
    size_t                 arena_used;
    cudaEvent_t            staged;        // recorded after the last batch upload
    bool                   staged_pending;
};

/* ==== Memory and synchronization helpers (the step-graph conventions, cuda_common.cuh) ==== */

/* Makes the backend's GPU the calling thread's current device. A backend may be driven by more than
 * one thread over its life (a rank's weights are prepared on the thread that opens the model, its
 * steps run on the rank's thread), and CUDA's current device is per thread: so every entry point
 * that may begin a thread's use of the backend (memory, copies, batch_begin, sync) sets it; the ops
 * of a step follow its batch_begin on the same thread. Cheap when it is current already. */
static void use_device(const struct cuda_backend *cb)
{
    CUDA_CHECK(cudaSetDevice(cb->device));
}

enum status cuda_mem_alloc(struct cuda_backend *cb, size_t bytes, void **out)
{
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        size_t free_b = 0, total = 0;
        cudaGetLastError();
        cudaMemGetInfo(&free_b, &total);
        LOG_ERR("cuda: cannot allocate %zu bytes of device memory (%zu of %zu free): %s", bytes, free_b, total,
                cudaGetErrorString(e));
        return STATUS_ENOMEM;
    }
    cb->mem_gen++;   // recorded step graphs may point at a buffer this address held before
    *out = p;
    return STATUS_OK;
}

void *cuda_mem_alloc_or_die(struct cuda_backend *cb, size_t bytes)
{
    void *p = NULL;
    CHECK(cuda_mem_alloc(cb, bytes, &p) == STATUS_OK, "cuda: out of device memory for a workspace of %zu bytes", bytes);
    return p;
}

void cuda_mem_free(struct cuda_backend *cb, void *p)
{
    if (!p) return;
    CUDA_CHECK(cudaStreamSynchronize(cb->stream));   // queued kernels may still read it
    CUDA_CHECK(cudaFree(p));
    cb->mem_gen++;
}

void *cuda_pinned_alloc(struct cuda_backend *cb, size_t bytes)
{
    void *p = NULL;
    CUDA_CHECK(cudaMallocHost(&p, bytes));
    cb->mem_gen++;
    return p;
}

void cuda_pinned_free(struct cuda_backend *cb, void *p)
{
    if (!p) return;
    CUDA_CHECK(cudaStreamSynchronize(cb->stream));   // a queued copy may still read it
    CUDA_CHECK(cudaFreeHost(p));
    cb->mem_gen++;
}

void cuda_staging_fit(struct cuda_backend *cb, void **h, void **d, size_t *cap, size_t bytes)
{
    if (bytes <= *cap) return;
    cuda_pinned_free(cb, *h);
    cuda_mem_free(cb, *d);
    *cap = bytes * 2;
    *h = cuda_pinned_alloc(cb, *cap);
    *d = cuda_mem_alloc_or_die(cb, *cap);
}

/* At destroy: errors are ignored (a poisoned context must still let the process free the rest). */
static void mem_release(void *p, bool pinned)
{
    if (!p) return;
    if (pinned) cudaFreeHost(p);
    else cudaFree(p);
    cudaGetLastError();
}

void cuda_stream_wait(struct cuda_backend *cb)
{
    cudaStreamCaptureStatus cs;
    CUDA_CHECK(cudaStreamIsCapturing(cb->stream, &cs));
    CHECK(cs == cudaStreamCaptureStatusNone, "cuda: a host wait while a step graph is being recorded");
    CUDA_CHECK(cudaStreamSynchronize(cb->stream));
}

void cuda_step_roundtrip(struct cuda_backend *cb)
{
    cuda_mark_unrecordable(cb);
    cuda_stream_wait(cb);
}

/* ==== Profile (cfg profile) ==== */

double cuda_prof_begin(struct cuda_backend *cb)
{
    if (!cb->profile) return 0;
    cuda_stream_wait(cb);
    return clock_now_s();
}

void cuda_prof_end(struct cuda_backend *cb, const char *what, double t0)
{
    if (!cb->profile) return;
    cuda_stream_wait(cb);
    const double dt = clock_now_s() - t0;
    int i = 0;
    while (i < cb->n_prof && cb->prof[i].what != what) i++;   // names are the choose_* tables' literals
    if (i == cb->n_prof) {
        CHECK(i < CUDA_PROF_MAX, "cuda profile: more than %d kernel names", CUDA_PROF_MAX);
        cb->prof[cb->n_prof++].what = what;
    }
    cb->prof[i].calls++;
    cb->prof[i].s += dt;
}

static void prof_log(const struct cuda_backend *cb)
{
    double total = 0;
    for (int i = 0; i < cb->n_prof; i++) total += cb->prof[i].s;
    for (int i = 0; i < cb->n_prof; i++)
        LOG_INFO("profile cuda %-22s %9llu calls %9.3f s  %5.1f%%", cb->prof[i].what,
                 (unsigned long long)cb->prof[i].calls, cb->prof[i].s, total > 0 ? 100 * cb->prof[i].s / total : 0.0);
}

void *cuda_grow(struct cuda_backend *cb, void **buf, size_t *cap, size_t bytes)
{
    if (bytes <= *cap) return *buf;
    cuda_mem_free(cb, *buf);
    *cap = bytes + bytes / 4;
    *buf = cuda_mem_alloc_or_die(cb, *cap);
    return *buf;
}

/* ==== Buffers and copies ==== */

static enum status c_buffer_new(struct backend *be, size_t bytes, struct buffer **out)
{
    use_device(cuda_of(be));
    void *p = NULL;
    enum status st = cuda_mem_alloc(cuda_of(be), bytes, &p);
    if (st != STATUS_OK) return st;
    struct buffer *b = (struct buffer *)xcalloc(1, sizeof *b);
    b->kind = BUF_DEVICE;
    b->data = p;
    b->bytes = bytes;
    b->owner = be;
    *out = b;
    return STATUS_OK;
}

static void c_buffer_free(struct backend *be, struct buffer *b)
{
    if (!b) return;
    use_device(cuda_of(be));
    cuda_mem_free(cuda_of(be), b->data);
    free(b);
}

static void c_upload(struct backend *be, struct tensor *t, const void *src, size_t bytes)
{
    struct cuda_backend *cb = cuda_of(be);
    use_device(cb);
    CUDA_CHECK(cudaMemcpyAsync(dptr(t), src, bytes, cudaMemcpyHostToDevice, cb->stream));
    cuda_stream_wait(cb);
}

static void c_download(struct backend *be, void *dst, const struct tensor *t, size_t bytes)
{
    struct cuda_backend *cb = cuda_of(be);
    use_device(cb);
    CUDA_CHECK(cudaMemcpyAsync(dst, dptr(t), bytes, cudaMemcpyDeviceToHost, cb->stream));
    cuda_stream_wait(cb);
}

static void c_copy(struct backend *be, struct tensor *dst, const struct tensor *src, size_t bytes)
{
    struct cuda_backend *cb = cuda_of(be);
    use_device(cb);
    CUDA_CHECK(cudaMemcpyAsync(dptr(dst), dptr(src), bytes, cudaMemcpyDeviceToDevice, cb->stream));
}

/* b is freed with the backend. */
static void keep_prepared(struct cuda_backend_ext *x, struct buffer *b)
{
    if (x->n_prep == x->cap_prep) {
        x->cap_prep = x->cap_prep ? 2 * x->cap_prep : 256;
        x->prep = (struct prepared_entry *)xrealloc(x->prep, sizeof *x->prep * (size_t)x->cap_prep);
    }
    x->prep[x->n_prep].buf = b;
    x->n_prep++;
}

/* Device copy of `bytes` at a host (mmapped) tensor t, in the reserved arena while it has room,
 * else in a buffer of its own; t then points at it. */
static enum status upload_weight(struct backend *be, struct tensor *t, size_t bytes, const char *name)
{
    struct cuda_backend_ext *x = (struct cuda_backend_ext *)be->impl;
    const void *host = tensor_data(t);
    const size_t placed = (bytes + BACKEND_WEIGHT_ALIGN - 1) / BACKEND_WEIGHT_ALIGN * BACKEND_WEIGHT_ALIGN;
    struct buffer *b = x->arena;
    size_t offset = x->arena_used;
    if (b && placed <= b->bytes - offset) {
        x->arena_used += placed;
    } else {
        enum status st = c_buffer_new(be, bytes, &b);
        if (st != STATUS_OK) {
            LOG_ERR("cuda: out of device memory loading weight %s", name ? name : "?");
            return st;
        }
        keep_prepared(x, b);
        offset = 0;
    }
    CUDA_CHECK(cudaMemcpy((char *)b->data + offset, host, bytes, cudaMemcpyHostToDevice));
    t->buf = b;
    t->offset = offset;
    return STATUS_OK;
}

static enum status c_weights_reserve(struct backend *be, size_t bytes)
{
    struct cuda_backend_ext *x = (struct cuda_backend_ext *)be->impl;
    use_device(&x->cb);
    struct buffer *b;
    if (c_buffer_new(be, bytes, &b) != STATUS_OK) return STATUS_ENOMEM;   // c_buffer_new logged it
    keep_prepared(x, b);   // a previous arena's rest stays unused: its weights still point into it
    x->arena = b;
    x->arena_used = 0;
    return STATUS_OK;
}

/* Device copy of a host (mmapped) weight. No sharing by host address: a model's weights never
 * alias (the loader rejects overlapping tensors; a tied lm_head is not visited), and a later model
 * mapped at a freed model's address must not get its copies. An MLX-quantized weight moves its
 * packed words and its scales and biases (its qweight, which the model owns, is repointed). */
static enum status c_weight_prepare(struct backend *be, struct tensor *w)
{
    if (!w->buf || w->buf->kind == BUF_DEVICE) return STATUS_OK;
    use_device(cuda_of(be));
    if (w->dtype == DTYPE_QMLX) {
        struct qweight *q = (struct qweight *)w->q;   // the model's descriptor (model.qw), writable there
        CHECK(w->nb[2] == w->nb[1] * (size_t)w->ne[1] && w->nb[3] == w->nb[2] * (size_t)w->ne[2],
              "cuda: quantized weight %s is not contiguous", w->name ? w->name : "?");
        CHECK(tensor_is_contiguous(&q->scales) && (!q->biases.buf || tensor_is_contiguous(&q->biases)),
              "cuda: scales of %s are not contiguous", w->name ? w->name : "?");
        enum status st = upload_weight(be, w, tensor_bytes(w), w->name);
        if (st == STATUS_OK) st = upload_weight(be, &q->scales, tensor_bytes(&q->scales), w->name);
        if (st == STATUS_OK && q->biases.buf) st = upload_weight(be, &q->biases, tensor_bytes(&q->biases), w->name);
        return st;
    }
    CHECK(tensor_is_contiguous(w), "cuda: weight %s is not contiguous", w->name ? w->name : "?");
    return upload_weight(be, w, tensor_bytes(w), w->name);
}

/* Stages the step's index arrays on the device: one pinned pack, one copy. */
static void c_batch_begin(struct backend *be, const struct batch_meta *m)
{
    struct cuda_backend_ext *x = (struct cuda_backend_ext *)be->impl;
    struct cuda_backend *cb = &x->cb;
    struct cuda_batch *b = &cb->batch;
    use_device(cb);
    if (x->staged_pending) CUDA_CHECK(cudaEventSynchronize(x->staged));   // pinned pack still in use

    // Query tiles for the tiled prefill kernel (see attention_tiled.cu): up to 128 tokens, its
    // ATT_TILE (one 128-row block there: each K/V tile is fetched once per 128 query rows); the
    // Gated DeltaNet kernels' too, so a tile also ends after each token tok_snap marks (gdn.cu).
    if (m->n_tok > b->cap_tok) {
        free(b->h_tiles);
        b->cap_tok = m->n_tok * 2;
        b->h_tiles = (int32_t *)xmalloc(sizeof(int32_t) * 3 * (size_t)b->cap_tok);
    }
    int n_tiles = 0;
    for (int t = 0; t < m->n_tok; t++) {
        int32_t *cur = b->h_tiles + 3 * (n_tiles - 1);
        bool extend = n_tiles > 0 && m->tok_seq && m->tok_pos && cur[2] == m->tok_seq[t] && cur[1] < 128 &&
                      m->tok_pos[t] == m->tok_pos[cur[0] + cur[1] - 1] + 1 &&
                      !(m->tok_snap && m->tok_snap[t - 1] != TOK_SNAP_NONE);
        if (extend) {
            cur[1]++;
        } else {
            int32_t *nt = b->h_tiles + 3 * n_tiles++;
            nt[0] = t;
            nt[1] = 1;
            nt[2] = m->tok_seq ? m->tok_seq[t] : 0;
        }
    }

    // One pinned pack, one copy. The block table, the only array whose length varies between
    // steps of equal shape, goes last, so a recorded step graph's array addresses stay valid (a
    // step with snapshots, whose tok_snap takes n_tok words instead of one, is never recorded).
    int n_blocks = m->seq_block0 ? m->seq_block0[m->n_seq] : 0;
    enum { N_ARR = 11 };
    size_t sizes[N_ARR] = {
        sizeof(int64_t) * (size_t)m->n_tok, sizeof(int32_t) * (size_t)m->n_tok, sizeof(int32_t) * (size_t)m->n_tok,
        sizeof(int32_t) * (size_t)m->n_tok, sizeof(int32_t) * (size_t)m->n_seq, sizeof(int32_t) * (size_t)(m->n_seq + 1),
        sizeof(int32_t) * (size_t)(m->n_out > 0 ? m->n_out : 1), sizeof(int32_t) * 3 * (size_t)(n_tiles > 0 ? n_tiles : 1),
        sizeof(int32_t) * (size_t)(m->n_seq > 0 ? m->n_seq : 1), sizeof(int32_t) * (size_t)(m->tok_snap ? m->n_tok : 1),
        sizeof(int32_t) * (size_t)(n_blocks > 0 ? n_blocks : 1),
    };
    const void *srcs[N_ARR] = { m->tok_slot, m->tok_id, m->tok_pos, m->tok_seq, m->seq_len, m->seq_block0, m->out_tok,
                                b->h_tiles, m->seq_state_slot, m->tok_snap, m->block_ids };
    int32_t **dsts32[N_ARR - 1] = { &b->d_tok_id, &b->d_tok_pos, &b->d_tok_seq, &b->d_seq_len, &b->d_seq_block0,
                                    &b->d_out_tok, &b->d_tiles, &b->d_seq_state_slot, &b->d_tok_snap,
                                    &b->d_block_ids };
    size_t total = 0, offs[N_ARR];
    for (int i = 0; i < N_ARR; i++) {
        offs[i] = total;
        total += (sizes[i] + 15) & ~(size_t)15;
    }
    cuda_staging_fit(cb, &b->h_pinned, &b->d_pack, &b->h_pinned_bytes, total);
    char *dev = (char *)b->d_pack;
    for (int i = 0; i < N_ARR; i++)
        if (srcs[i] && sizes[i]) memcpy((char *)b->h_pinned + offs[i], srcs[i], sizes[i]);
    CUDA_CHECK(cudaMemcpyAsync(dev, b->h_pinned, total, cudaMemcpyHostToDevice, cb->stream));
    CUDA_CHECK(cudaEventRecord(x->staged, cb->stream));
    x->staged_pending = true;
    b->d_tok_slot = (int64_t *)dev;
    for (int i = 1; i < N_ARR; i++) *dsts32[i - 1] = (int32_t *)(dev + offs[i]);
    if (!m->tok_snap) b->d_tok_snap = NULL;
    b->snap_writes = false;
    for (int t = 0; m->tok_snap && t < m->n_tok && !b->snap_writes; t++) b->snap_writes = m->tok_snap[t] >= 0;
    b->n_tiles = n_tiles;

    b->n_tok = m->n_tok;
    b->n_seq = m->n_seq;
    b->n_out = m->n_out;
    b->block_size = m->block_size;
    b->max_seq_len = 0;
    for (int s = 0; s < m->n_seq; s++)
        if (m->seq_len[s] > b->max_seq_len) b->max_seq_len = m->seq_len[s];
    b->all_single = m->n_tok == m->n_seq;
}

/* What decides a step's launches on the host: its token, sequence and logits-row counts, and the
 * longest sequence's power of two (decode attention picks its key splits from it). Everything
 * else is read from the staged arrays at run time, which keep their addresses between steps. */
static uint64_t step_graph_key(const struct batch_meta *m, int max_seq_len)
{
    int lg = 0;
    while (lg < 40 && (1ll << (lg + 1)) <= max_seq_len) lg++;
    return 1ull << 63 | (uint64_t)m->n_tok | (uint64_t)m->n_seq << 16 | (uint64_t)m->n_out << 32 | (uint64_t)lg << 48;
}

static void step_graph_drop(struct step_graph *g)
{
    if (g->exec) CUDA_CHECK(cudaGraphExecDestroy(g->exec));
    memset(g, 0, sizeof *g);
}

/* Decode steps (one token per sequence, few sequences) are recorded into a CUDA graph the second
 * time their shape is seen (the first run, op by op, grows every workspace to size, so recording
 * never allocates or synchronizes) and replayed from then on: one launch instead of ~500. A shape
 * whose first run called cuBLAS or went through the host (cb->graph_unsafe moved: a matmul shape
 * the skinny kernel does not take, the MoE host path) is never recorded; a recording is dropped
 * once any device memory was allocated or freed after it (cb->mem_gen moved). Both counters move
 * only in the helpers of cuda_common.cuh's "Step-graph conventions". Off with cfg cuda_graphs_off
 * or profile. */
static int c_step_graph_begin(struct backend *be, const struct batch_meta *m, const void *scratch, const void *kv)
{
    struct cuda_backend_ext *x = (struct cuda_backend_ext *)be->impl;
    struct cuda_backend *cb = &x->cb;
    if (x->first_run) {   // the verdict on the step that ran last: did it make an unrecordable call?
        x->first_run->unsafe = cb->graph_unsafe != x->first_run->unsafe_mark;
        x->first_run = NULL;
    }
    if (x->graphs_off || m->n_tok != m->n_seq || m->n_tok > STEP_GRAPH_MAX_TOK) return STEP_GRAPH_NONE;
    uint64_t key = step_graph_key(m, cb->batch.max_seq_len);
    struct step_graph *g = NULL, *victim = &x->graphs[0];
    for (int i = 0; i < STEP_GRAPHS; i++) {
        if (x->graphs[i].key == key && x->graphs[i].scratch == scratch && x->graphs[i].kv == kv) g = &x->graphs[i];
        if (x->graphs[i].last_use < victim->last_use) victim = &x->graphs[i];
    }
    if (g && g->exec && g->mem_gen != cb->mem_gen) step_graph_drop(g), g = NULL;
    if (!g) {   // first sight: run op by op, remember the shape
        step_graph_drop(victim);
        victim->key = key;
        victim->scratch = scratch;
        victim->kv = kv;
        victim->last_use = ++x->graph_clock;
        victim->unsafe_mark = cb->graph_unsafe;
        x->first_run = victim;
        return STEP_GRAPH_NONE;
    }
    g->last_use = ++x->graph_clock;
    if (g->unsafe) return STEP_GRAPH_NONE;
    if (g->exec) {
        CUDA_CHECK(cudaGraphLaunch(g->exec, cb->stream));
        return STEP_GRAPH_REPLAYED;
    }
    CUDA_CHECK(cudaStreamBeginCapture(cb->stream, cudaStreamCaptureModeThreadLocal));
    g->mem_gen = cb->mem_gen;
    x->recording = g;
    return STEP_GRAPH_RECORDING;
}

static void c_step_graph_end(struct backend *be)
{
    struct cuda_backend_ext *x = (struct cuda_backend_ext *)be->impl;
    struct cuda_backend *cb = &x->cb;
    struct step_graph *g = x->recording;
    CHECK(g, "cuda: step_graph_end without a recording");
    x->recording = NULL;
    cudaGraph_t graph = NULL;
    CUDA_CHECK(cudaStreamEndCapture(cb->stream, &graph));
    CHECK(g->mem_gen == cb->mem_gen, "cuda: a workspace moved while a step was being recorded");
    CUDA_CHECK(cudaGraphInstantiate(&g->exec, graph, 0));
    CUDA_CHECK(cudaGraphDestroy(graph));
    CUDA_CHECK(cudaGraphLaunch(g->exec, cb->stream));
}

static enum status c_sync(struct backend *be)
{
    cudaSetDevice(cuda_of(be)->device);   // an error here shows at the synchronize
    cudaError_t e = cudaStreamSynchronize(cuda_of(be)->stream);
    if (e != cudaSuccess) {
        LOG_ERR("cuda: %s", cudaGetErrorString(e));
        return STATUS_EDEVICE;
    }
    return STATUS_OK;
}

static void c_mem_info(struct backend *be, size_t *free_bytes, size_t *total_bytes)
{
    use_device(cuda_of(be));
    CUDA_CHECK(cudaMemGetInfo(free_bytes, total_bytes));
}

static void c_host_pin(struct backend *be, void *p, size_t bytes, bool pin)
{
    use_device(cuda_of(be));
    cudaError_t e = pin ? cudaHostRegister(p, bytes, cudaHostRegisterDefault) : cudaHostUnregister(p);
    if (e != cudaSuccess) {
        cudaGetLastError();   // not sticky: clear it so the next check does not see it
        LOG_WARN("cuda: %s %.1f MiB of host memory failed (%s); downloads into it are staged", pin ? "pinning" : "unpinning",
                 (double)bytes / (double)(1u << 20), cudaGetErrorString(e));
    }
}

static void c_destroy(struct backend *be)
{
    struct cuda_backend_ext *x = (struct cuda_backend_ext *)be->impl;
    struct cuda_backend *cb = &x->cb;
    cudaSetDevice(cb->device);   // errors ignored, as below
    cudaStreamSynchronize(cb->stream);
    if (cb->profile) prof_log(cb);
    for (int i = 0; i < STEP_GRAPHS; i++)
        if (x->graphs[i].exec) cudaGraphExecDestroy(x->graphs[i].exec);
    for (int i = 0; i < x->n_prep; i++) {
        mem_release(x->prep[i].buf->data, false);
        free(x->prep[i].buf);
    }
    free(x->prep);
    mem_release(cb->batch.h_pinned, true);
    mem_release(cb->batch.d_pack, false);
    free(cb->batch.h_tiles);
    mem_release(cb->d_work, false);
    mem_release(cb->d_moe_work, false);
    mem_release(cb->d_gdn_work, false);
    mem_release(cb->d_qdeq, false);
    for (int i = 0; i < cb->n_moe_tables; i++) {
        mem_release((void *)cb->moe_tables[i].d_gate, false);
        mem_release(cb->moe_tables[i].d_q, false);
        free(cb->moe_tables[i].h_ptrs);
        free(cb->moe_tables[i].h_q);
    }
    free(cb->moe_tables);
    mem_release(cb->d_attn_part, false);
    mem_release(cb->d_attn_done, false);
    mem_release(cb->d_moe_done, false);
    mem_release(cb->d_argmax, false);
    mem_release(cb->h_mask, true);
    mem_release(cb->d_mask, false);
    mem_release(cb->h_cands, true);
    mem_release(cb->d_cands, false);
    if (cb->mask_copied) cudaEventDestroy(cb->mask_copied);
    cudaEventDestroy(x->staged);
    cublasDestroy(cb->cublas);
    cudaStreamDestroy(cb->stream);
    free(x);
    free(be);
}

static const struct backend_ops cuda_ops = {
    /* .name = */ "cuda",
    /* .destroy = */ c_destroy,
    /* .buffer_new = */ c_buffer_new,
    /* .buffer_free = */ c_buffer_free,
    /* .upload = */ c_upload,
    /* .download = */ c_download,
    /* .copy = */ c_copy,
    /* .weight_prepare = */ c_weight_prepare,
    /* .weights_reserve = */ c_weights_reserve,
    /* .batch_begin = */ c_batch_begin,
    /* .sync = */ c_sync,
    /* .embed = */ cuda_embed,
    /* .rmsnorm = */ cuda_rmsnorm,
    /* .matmul = */ cuda_matmul,
    /* .matmul_rows = */ cuda_matmul_rows,
    /* .rope = */ cuda_rope,
    /* .kv_write = */ cuda_kv_write,
    /* .attention = */ cuda_attention,
    /* .glu = */ cuda_glu,
    /* .add = */ cuda_add,
    /* .softcap = */ cuda_softcap,
    /* .moe_route = */ cuda_moe_route,
    /* .moe_ffn = */ cuda_moe_ffn,
    /* .argmax = */ cuda_argmax,
    /* .logits_mask = */ cuda_logits_mask,
    /* .sample_cands = */ cuda_sample_cands,
    /* .matmul_n = */ cuda_matmul_n,
    /* .norm_matmul_n = */ cuda_norm_matmul_n,
    /* .matmul_add = */ cuda_matmul_add,
    /* .qk_rope_kv = */ cuda_qk_rope_kv,
    /* .matmul_glu = */ cuda_matmul_glu,
    /* .norm_moe_route = */ cuda_norm_moe_route,
    /* .moe_ffn_add = */ cuda_moe_ffn_add,
    /* .step_graph_begin = */ c_step_graph_begin,
    /* .step_graph_end = */ c_step_graph_end,
    /* .mem_info = */ c_mem_info,
    /* .host_pin = */ c_host_pin,
    /* .fill_synthetic = */ cuda_fill_synthetic,
    /* .gdn_conv = */ cuda_gdn_conv,
    /* .gdn_recurrent = */ cuda_gdn_recurrent,
    /* .rmsnorm_gated = */ cuda_rmsnorm_gated,
    /* .sigmoid_mul = */ cuda_sigmoid_mul,
    /* .quant_weights = */ true,
    /* .moe_expert_subset = */ true,
};

extern "C" int backend_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

extern "C" void *backend_cuda_stream(struct backend *be)
{
    CHECK(be->ops->destroy == c_destroy, "backend_cuda_stream on the %s backend", be->ops->name);
    return cuda_of(be)->stream;
}

extern "C" enum status backend_cuda_new(const struct backend_cfg *cfg, struct backend **out)
{
    int n_dev = 0;
    cudaError_t e = cudaGetDeviceCount(&n_dev);
    if (e != cudaSuccess || n_dev == 0) {
        cudaGetLastError();
        LOG_ERR("cuda: no usable GPU (%s)", e != cudaSuccess ? cudaGetErrorString(e) : "no device found");
        return STATUS_EUNSUPPORTED;
    }
    int dev = cfg ? cfg->device : 0;
    if (dev < 0 || dev >= n_dev) {
        LOG_ERR("cuda: device %d does not exist (%d found)", dev, n_dev);
        return STATUS_EINVAL;
    }
    if (cudaSetDevice(dev) != cudaSuccess) {
        cudaGetLastError();
        LOG_ERR("cuda: cannot use device %d", dev);
        return STATUS_EDEVICE;
    }
    struct cuda_backend_ext *x = (struct cuda_backend_ext *)xcalloc(1, sizeof *x);
    struct cuda_backend *cb = &x->cb;
    cb->device = dev;
    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
    cb->n_sm = prop.multiProcessorCount;
    cb->smem_optin = prop.sharedMemPerBlockOptin;
    cb->precise = cfg && cfg->precise;
    cb->deterministic = cfg && cfg->deterministic;
    cb->profile = cfg && cfg->profile;
    x->graphs_off = (cfg && cfg->cuda_graphs_off) || cb->profile;   // profiling waits around calls
    cb->pdl = prop.major >= 9;
    cb->skinny = !(cfg && cfg->cuda_skinny_off);
    // 64: Qwen3-30B-A3B at 24-64 streams 201-380 -> 743-776 tok/s on H100 (the host path regroups
    // tokens per expert through a sync and cuBLAS per expert; 16 was the old cut); 1..64 (moe.cu's MOE_SMALL_N)
    const int moe_n = cfg ? cfg->cuda_moe_device_n : 0;
    cb->moe_device_n = moe_n >= 1 && moe_n <= 64 ? moe_n : 64;
    // from 1,024 keys by default (shorter fp8 decode runs on the CUDA-core kernel); rounded down to a
    // power of two, as step graphs' length classes are
    const int mma_min = cfg && cfg->cuda_fp8_mma_min_len >= 1 ? (cfg->cuda_fp8_mma_min_len < (1 << 24) ? cfg->cuda_fp8_mma_min_len : 1 << 24) : 1024;
    cb->att_mma_min_len = 1;
    while (cb->att_mma_min_len * 2 <= mma_min) cb->att_mma_min_len *= 2;
    CUDA_CHECK(cudaStreamCreateWithFlags(&cb->stream, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&x->staged, cudaEventDisableTiming));
    if (cublasCreate(&cb->cublas) != CUBLAS_STATUS_SUCCESS) {
        LOG_ERR("cuda: cannot create a cuBLAS handle");
        cudaStreamDestroy(cb->stream);
        free(x);
        return STATUS_EDEVICE;
    }
    CUBLAS_CHECK(cublasSetStream(cb->cublas, cb->stream));
    CUBLAS_CHECK(cublasSetMathMode(cb->cublas, CUBLAS_DEFAULT_MATH));
    struct backend *be = (struct backend *)xcalloc(1, sizeof *be);
    be->ops = &cuda_ops;
    be->impl = x;
    LOG_INFO("cuda: %s, %d SMs, %.1f GiB%s", prop.name, cb->n_sm, (double)prop.totalGlobalMem / (1 << 30),
             cb->precise ? " (precise: hi + lo GEMM inputs, f32 attention)"
             : cb->deterministic ? " (deterministic: batch-invariant GEMV and f32 attention for every step)" : "");
    *out = be;
    return STATUS_OK;
}
