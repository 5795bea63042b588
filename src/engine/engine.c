/* engine: the public API, the engine thread, and the step: forward, sample, stop rules, emit.
 * Scheduling lives in sched.c, request validation in request.c, token streams in stream.c.
 *
 * Design note. Submit, cancel and finish are the only entry points from other threads: submit
 * appends to a mutex-protected inbox (the inbox and the requests waiting for admission are
 * bounded by max_queue beyond the running slots free now, since those admit at the next step),
 * cancel/finish set atomic flags on the stream that the engine polls at the start of
 * each step. Everything else is owned by the engine thread, so the KV bookkeeping has no locks.
 * Logits: rows that may not sample every id (a constraint, min_tokens) are masked on the backend
 * first (logits_mask: disallowed ids to -inf; on cuda one upload of the step's bitmasks and one
 * kernel), so whatever reads a row next sees only allowed ids. Rows of plain greedy requests
 * (temperature 0, no penalties, no bias, no logprobs) are then reduced on the backend with argmax
 * (no [n, vocab] download: matters on the GPU); other rows are downloaded one by one into a
 * preallocated host buffer and go through the sampler, so penalties, temperature, top-k/p and
 * logprobs all see the masked row. A constraint's mask is computed by the mask workers while the
 * forward pass runs (with one sampling thread: by the engine thread before it); the engine waits
 * for them once the pass is issued, before masking.
 * Liveness: the engine thread stores a heartbeat (heartbeat_ns) while idle with nothing to do,
 * after each block a step issues (forward_bind_heartbeat) and after each step that did work; a
 * step that cannot schedule anything for waiting requests stores none. So engine_get_stats'
 * last_progress_s goes stale only when work is pending (running, waiting or still in the inbox)
 * and the thread is stuck or cannot advance it: a long step that progresses stays fresh.
 */
#include "engine/engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/threadpool.h"
#include "engine/engine_int.h"
#include "text/constraint.h"

struct engine_cfg engine_cfg_default(void)
{
    return (struct engine_cfg){
        .kv_cache_bytes = 0, .kv_dtype = DTYPE_F32, .block_size = KV_BLOCK_SIZE_DEFAULT,
        .max_batch_tokens = 0, .max_running = 0, .max_queue = 256, .prefix_cache = true,
    };
}

/* ==== Lifetime ==== */

/* The default memory for sequences (cfg->kv_cache_bytes == 0: KV blocks, and the recurrent-state
 * slots of hybrid models). Host backends: 1 GiB (memory is shared with everything else and grows
 * on demand). Backends with mem_info (cuda): the device memory still free, now that the weights
 * and this engine's activations are allocated, minus a margin for what is allocated later (cuBLAS
 * workspaces, the CUDA backend's lazily grown scratch, split-K attention partials, context growth;
 * together well under 1 GiB at the default step sizes): max(1 GiB, 5% of the device). So a GPU
 * serves as many tokens as it can hold without a flag; --kv-cache-bytes overrides. Returns 0
 * (logged) when the margin leaves nothing; *why says where the number came from. */
static size_t seq_memory_default(struct backend *be, char *why, size_t why_len)
{
    const double gib = (double)(1ull << 30);
    snprintf(why, why_len, "default on a host backend");
    if (!be->ops->mem_info) return (size_t)1 << 30;
    size_t free_b = 0, total_b = 0;
    be->ops->mem_info(be, &free_b, &total_b);
    size_t margin = total_b / 20 > ((size_t)1 << 30) ? total_b / 20 : (size_t)1 << 30;
    if (free_b <= margin) {
        LOG_ERR("kv cache: %.2f GiB of %s memory free after weights and activations, not more than the %.2f GiB "
                "kept for workspaces: nothing left for the KV cache (a smaller model, --max-batch-tokens, or "
                "--kv-cache-bytes to force a size)", (double)free_b / gib, be->ops->name, (double)margin / gib);
        return 0;
    }
    snprintf(why, why_len, "%.2f GiB free on %s minus a %.2f GiB margin", (double)free_b / gib, be->ops->name,
             (double)margin / gib);
    return free_b - margin;
}

/* Hybrid models: state slots out of `budget` bytes of sequence memory. cfg->state_slots if set,
 * else as many sequences as the budget holds with 1,024 tokens of KV each (an agent's turn), at
 * least one; never more than max_running (more could never be used). 0 (logged) when the slots
 * leave no room for a KV block. */
static int state_slots_for_budget(const struct engine_cfg *cfg, const struct model *m, size_t budget)
{
    size_t per_slot = model_seq_state_bytes(&m->hp, DTYPE_F32);
    size_t per_block = (size_t)cfg->block_size * model_kv_bytes_per_token(m, cfg->kv_dtype);
    size_t n = cfg->state_slots > 0 ? (size_t)cfg->state_slots
                                    : budget / (per_slot + model_kv_bytes_per_token(m, cfg->kv_dtype) * 1024);
    if (n < 1) n = 1;
    if (n > (size_t)cfg->max_running) n = (size_t)cfg->max_running;
    if (n * per_slot + per_block > budget) {
        LOG_ERR("sequence memory of %zu bytes holds %zu recurrent-state slots of %zu bytes but no KV block of %zu "
                "bytes beside them (--kv-cache-bytes counts both)", budget, n, per_slot, per_block);
        return 0;
    }
    return (int)n;
}

/* Hybrid models with the prefix cache: bytes for its state snapshots, a state pool of their own in
 * the backend's memory, so a snapshot and its restore are device copies. cfg->state_cache_bytes,
 * else 1 GiB. On a device whose sequence memory is the default (what is free), they come out of
 * `budget` (by default at most a quarter of it); on a host backend or beside an explicit
 * --kv-cache-bytes they are extra, as before. 0 (logged) when they would leave nothing. */
static size_t snapshot_bytes(const struct engine_cfg *cfg, struct backend *be, size_t *budget)
{
    size_t want = cfg->state_cache_bytes ? cfg->state_cache_bytes : (size_t)1 << 30;
    if (cfg->kv_cache_bytes || !be->ops->mem_info) return want;
    if (!cfg->state_cache_bytes && want > *budget / 4) want = *budget / 4;
    if (want >= *budget) {
        LOG_ERR("state_cache_bytes %zu: the prefix cache's state snapshots would take all of the %zu bytes of "
                "sequence memory", want, *budget);
        return 0;
    }
    *budget -= want;
    return want;
}

enum status engine_new(const struct engine_cfg *cfg, struct model *m, struct backend *be, struct engine **out)
{
    struct engine_shards whole = { .n_ranks = 1, .m = &m, .be = &be };
    return engine_new_sharded(cfg, &whole, out);
}

/* Bytes of the host logits rows (e->logits): one row per running sequence. */
static size_t logits_bytes(const struct engine *e)
{
    return (size_t)e->cfg.max_running * (size_t)e->n_vocab * sizeof *e->logits;
}

enum status engine_new_sharded(const struct engine_cfg *cfg_in, const struct engine_shards *sh, struct engine **out)
{
    struct model *m = sh->m[0];
    struct backend *be = sh->be[0];
    struct engine_cfg cfg = *cfg_in, def = engine_cfg_default();
    // A backend with its own memory is a GPU: big steps pay there, and nothing else shares it.
    bool device = be->ops->mem_info != NULL;
    bool auto_running = cfg.max_running <= 0;
    if (cfg.block_size <= 0) cfg.block_size = def.block_size;
    if (cfg.max_batch_tokens <= 0) cfg.max_batch_tokens = device ? 8192 : 256;
    if (auto_running) cfg.max_running = device ? ENGINE_MAX_RUNNING_AUTO : 64;
    if (cfg.max_queue <= 0) cfg.max_queue = def.max_queue;
    if (cfg.max_running > cfg.max_batch_tokens) cfg.max_running = cfg.max_batch_tokens;
    if (cfg.max_itl_ms == 0 && !device) cfg.max_itl_ms = -1;
    if (cfg.max_prefill_pairs == 0) cfg.max_prefill_pairs = (int64_t)cfg.max_batch_tokens * 512;
    if (cfg.max_prefill_pairs < 0) cfg.max_prefill_pairs = INT64_MAX;
    if (cfg.sample_threads <= 0) {
        int cpus = threadpool_cpu_count();
        cfg.sample_threads = device ? (cpus < ENGINE_SAMPLE_THREADS_AUTO ? cpus : ENGINE_SAMPLE_THREADS_AUTO) : 1;
    }
    const struct hparams *hp = &m->hp;
    int bs = cfg.block_size;
    int model_ctx = cfg.max_context > 0 && cfg.max_context < hp->max_pos ? cfg.max_context : hp->max_pos;
    int ctx_blocks = (model_ctx + bs - 1) / bs;

    struct engine *e = xcalloc(1, sizeof *e);
    e->cfg = cfg;
    e->m = m;
    e->be = be;
    e->n_vocab = hp->n_vocab;
    e->bs = bs;
    pace_init(&e->pace, hp, cfg.max_itl_ms);
    // Activations first: the default KV budget is what device memory they leave.
    enum status st = forward_new(m, be, cfg.max_batch_tokens, cfg.max_running, &e->fw);
    if (st != STATUS_OK) goto out_free;
    atomic_store(&e->heartbeat_ns, clock_now_ns());
    forward_bind_heartbeat(e->fw, &e->heartbeat_ns);
    // One budget for sequence memory: the recurrent-state slots of a hybrid model come out of it
    // first, the KV blocks take the rest; admission needs both (sched.c: try_admit).
    char why[160];
    snprintf(why, sizeof why, "--kv-cache-bytes");
    size_t budget = cfg.kv_cache_bytes ? cfg.kv_cache_bytes : seq_memory_default(be, why, sizeof why);
    if (budget == 0) {
        st = STATUS_ENOMEM;
        goto out_free_fw;
    }
    size_t snap_budget = 0;
    if (hp->n_linear_layers > 0 && cfg.prefix_cache && (snap_budget = snapshot_bytes(&cfg, be, &budget)) == 0) {
        st = STATUS_ENOMEM;
        goto out_free_fw;
    }
    if (hp->n_linear_layers > 0) {
        int n_slots = state_slots_for_budget(&cfg, m, budget);
        if (n_slots == 0) {
            st = STATUS_ENOMEM;
            goto out_free_fw;
        }
        if ((st = state_pool_new(m, be, n_slots, &e->states)) != STATUS_OK) goto out_free_fw;
        budget -= e->states->bytes;
        LOG_INFO("recurrent state: %d slots of %.2f MiB (%.2f GiB of the sequence memory)", n_slots,
                 (double)state_pool_slot_bytes(e->states) / (double)(1u << 20),
                 (double)e->states->bytes / (double)(1ull << 30));
    }
    int n_blocks = kv_pool_blocks_for_bytes(m, cfg.kv_dtype, bs, budget);
    if (n_blocks < 1) {
        LOG_ERR("kv cache of %zu bytes holds no block of %d tokens (%zu bytes per token)", budget, bs,
                model_kv_bytes_per_token(m, cfg.kv_dtype));
        st = STATUS_ENOMEM;
        goto out_free_fw;
    }
    long cap = (long)cfg.max_running * ctx_blocks;
    if (cfg.kv_cache_bytes == 0 && n_blocks > cap) {
        n_blocks = cap > INT32_MAX ? INT32_MAX : (int)cap;
        snprintf(why + strlen(why), sizeof why - strlen(why), ", capped at %d full contexts", cfg.max_running);
    }
    LOG_INFO("kv cache: %.2f GiB %s, %d blocks of %d tokens = %lld tokens (%s)",
             (double)n_blocks * bs * (double)model_kv_bytes_per_token(m, cfg.kv_dtype) / (double)(1ull << 30),
             dtype_name(cfg.kv_dtype), n_blocks, bs, (long long)n_blocks * bs, why);
    st = kv_pool_new(m, be, cfg.kv_dtype, bs, n_blocks, &e->pool);
    if (st != STATUS_OK) goto out_free_fw;
    if (e->states) {
        size_t n = snap_budget / state_pool_slot_bytes(e->states);   // snapshots on each rank, of its shard
        int n_snaps = n > (size_t)n_blocks ? n_blocks : (int)n;
        if (n_snaps > 0 && (st = state_pool_new(m, be, n_snaps, &e->snaps)) != STATUS_OK) goto out_free_ranks;
        forward_bind_states(e->fw, e->states->layers, e->snaps ? e->snaps->layers : NULL);
        if (cfg.prefix_cache)
            LOG_INFO("prefix cache: %d state snapshots of %.2f MiB (%.2f GiB of %s memory)", n_snaps,
                     (double)state_pool_slot_bytes(e->states) / (double)(1u << 20),
                     (double)n_snaps * (double)state_pool_slot_bytes(e->states) / (double)(1ull << 30), be->ops->name);
    }
    if (sh->n_ranks > 1) {
        LOG_INFO("ranks: %d, each with its shard of the weights, the kv cache and the recurrent state", sh->n_ranks);
        if ((st = engine_ranks_new(e, sh, n_blocks)) != STATUS_OK) goto out_free_ranks;
    }
    if (auto_running && device) {
        // As many sequences as the cache holds at about 1,024 tokens each (an agent's turn).
        long by_kv = (long)n_blocks * bs / 1024;
        int n = by_kv < 64 ? 64 : by_kv > ENGINE_MAX_RUNNING_AUTO ? ENGINE_MAX_RUNNING_AUTO : (int)by_kv;
        if (n < cfg.max_running) cfg.max_running = e->cfg.max_running = n;
    }
    LOG_INFO("scheduler: up to %d tokens per step, %d sequences at once, inter-token target %s", cfg.max_batch_tokens,
             cfg.max_running, cfg.max_itl_ms > 0 ? "fixed" : cfg.max_itl_ms == 0 ? "2x the decode step" : "off");
    if (cfg.max_itl_ms > 0) LOG_INFO("scheduler: inter-token target %.1f ms", cfg.max_itl_ms);
    e->max_ctx = model_ctx < n_blocks * bs ? model_ctx : n_blocks * bs;
    e->max_blocks_seq = (e->max_ctx + bs - 1) / bs;
    e->kb = kv_blocks_new(n_blocks);
    e->px = kv_prefix_new(e->kb, bs, e->snaps ? e->snaps->n_slots : 0);
    if (cfg.sample_threads > 1) e->sample_pool = threadpool_new(cfg.sample_threads);
    e->scratch = xcalloc((size_t)cfg.sample_threads, sizeof *e->scratch);
    for (int i = 0; i < cfg.sample_threads; i++) e->scratch[i] = sampler_scratch_new(e->n_vocab);
    uint64_t shape[5] = { (uint64_t)hp->n_layers, (uint64_t)hp->d_model, (uint64_t)hp->n_vocab,
                          (uint64_t)hp->n_kv_heads, m->n_params };
    e->salt_model = XXH3_64bits_withSeed(shape, sizeof shape, XXH3_64bits(hp->arch, strlen(hp->arch)));

    size_t mr = (size_t)cfg.max_running, mt = (size_t)cfg.max_batch_tokens;
    e->running = xcalloc(mr, sizeof *e->running);
    e->items = xcalloc(mr, sizeof *e->items);
    e->sampled = xcalloc(mr, sizeof *e->sampled);
    e->sample_items = xcalloc(mr, sizeof *e->sample_items);
    e->tok_id = xcalloc(mt, sizeof *e->tok_id);
    e->tok_pos = xcalloc(mt, sizeof *e->tok_pos);
    e->tok_seq = xcalloc(mt, sizeof *e->tok_seq);
    e->tok_slot = xcalloc(mt, sizeof *e->tok_slot);
    e->seq_len = xcalloc(mr, sizeof *e->seq_len);
    e->seq_block0 = xcalloc(mr + 1, sizeof *e->seq_block0);
    e->seq_state_slot = xcalloc(mr, sizeof *e->seq_state_slot);
    e->block_ids = xcalloc(mr * (size_t)e->max_blocks_seq, sizeof *e->block_ids);
    e->out_tok = xcalloc(mr, sizeof *e->out_tok);
    if (e->states) e->tok_snap = xcalloc(mt, sizeof *e->tok_snap);
    if (e->snaps) e->snap_jobs = xcalloc((size_t)e->snaps->n_slots, sizeof *e->snap_jobs);
    e->argmax_ids = xcalloc(mr, sizeof *e->argmax_ids);
    if (be->ops->sample_cands) {
        e->cand_items = xcalloc(mr, sizeof *e->cand_items);
        e->cand_rows = xcalloc(mr, sizeof *e->cand_rows);
        e->cand_inv_t = xcalloc(mr, sizeof *e->cand_inv_t);
        e->cand_ids = xcalloc(mr * SAMPLER_CANDS, sizeof *e->cand_ids);
        e->cand_vals = xcalloc(mr * SAMPLER_CANDS, sizeof *e->cand_vals);
        e->cand_sums = xcalloc(mr, sizeof *e->cand_sums);
    }
    e->logits = xcalloc(mr * (size_t)e->n_vocab, sizeof *e->logits);
    if (be->ops->host_pin) be->ops->host_pin(be, e->logits, logits_bytes(e), true);
    e->mask_words = (e->n_vocab + 31) / 32;
    e->mask_rows = xcalloc(mr, sizeof *e->mask_rows);
    e->masks = xcalloc(mr * (size_t)e->mask_words, sizeof *e->masks);
    e->hit_blocks = xcalloc((size_t)e->max_blocks_seq, sizeof *e->hit_blocks);
    e->hit_keys = xcalloc((size_t)e->max_blocks_seq, sizeof *e->hit_keys);
    e->mask_jobs = xcalloc(mr, sizeof *e->mask_jobs);
    // as many mask workers as sampling threads, on the host cores a device backend leaves idle;
    // one thread (host backends' default) means the engine thread alone, as for sampling: a worker
    // on the forward pass's cores would preempt one of its threads, and the pass's barrier waits
    if (cfg.sample_threads > 1) e->mw = mask_worker_new(cfg.sample_threads);

    pthread_mutex_init(&e->q_mu, NULL);
    pthread_cond_init(&e->q_cv, NULL);
    pthread_mutex_init(&e->st_mu, NULL);
    atomic_init(&e->poke, 0);
    e->acc.kv_blocks_total = n_blocks;
    e->acc.kv_blocks_free = n_blocks;
    e->acc.state_slots_total = e->acc.state_slots_free = e->states ? e->states->n_slots : 0;
    e->acc.block_size = bs;
    e->acc.max_context = e->max_ctx;
    e->st = e->acc;
    *out = e;
    return STATUS_OK;

out_free_ranks:
    engine_ranks_free(e);
    kv_pool_free(e->pool);
out_free_fw:
    state_pool_free(e->snaps);
    state_pool_free(e->states);
    forward_free(e->fw);
out_free:
    free(e);
    return st;
}

static void end_all_requests(struct engine *e, enum finish_reason why)
{
    pthread_mutex_lock(&e->q_mu);
    struct request *r = e->inbox_head;
    e->inbox_head = e->inbox_tail = NULL;
    pthread_mutex_unlock(&e->q_mu);
    while (r) {   // never admitted: only in the inbox list
        struct request *next = r->next;
        r->next = NULL;
        stream_end(r->ts, why, STATUS_OK, clock_now_s());
        request_free(e, r);
        r = next;
    }
    while (e->n_running > 0) engine_end_request(e, e->running[e->n_running - 1], why, STATUS_OK);
    while (e->wait_head) engine_end_request(e, e->wait_head, why, STATUS_OK);
}

void engine_free(struct engine *e)
{
    if (!e) return;
    engine_shutdown(e);
    end_all_requests(e, FINISH_CANCELED);
    kv_prefix_free(e->px);
    kv_blocks_free(e->kb);
    engine_ranks_free(e);
    forward_free(e->fw);
    state_pool_free(e->snaps);
    state_pool_free(e->states);
    kv_pool_free(e->pool);
    threadpool_free(e->sample_pool);
    for (int i = 0; e->scratch && i < e->cfg.sample_threads; i++) sampler_scratch_free(e->scratch[i]);
    free(e->scratch);
    free(e->sampled);
    free(e->sample_items);
    free(e->running);
    free(e->items);
    free(e->tok_id);
    free(e->tok_pos);
    free(e->tok_seq);
    free(e->tok_slot);
    free(e->seq_len);
    free(e->seq_block0);
    free(e->seq_state_slot);
    free(e->block_ids);
    free(e->out_tok);
    free(e->tok_snap);
    free(e->snap_jobs);
    free(e->argmax_ids);
    free(e->cand_items);
    free(e->cand_rows);
    free(e->cand_inv_t);
    free(e->cand_ids);
    free(e->cand_vals);
    free(e->cand_sums);
    if (e->logits && e->be->ops->host_pin) e->be->ops->host_pin(e->be, e->logits, logits_bytes(e), false);
    free(e->logits);
    free(e->mask_rows);
    free(e->masks);
    free(e->hit_blocks);
    free(e->hit_keys);
    mask_worker_free(e->mw);
    free(e->mask_jobs);
    pthread_mutex_destroy(&e->q_mu);
    pthread_cond_destroy(&e->q_cv);
    pthread_mutex_destroy(&e->st_mu);
    free(e);
}

/* ==== Thread ==== */

static void *engine_main(void *arg)
{
    struct engine *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->q_mu);
        bool shut = e->shutting_down;
        pthread_mutex_unlock(&e->q_mu);
        if (shut) break;
        if (engine_step(e)) continue;
        pthread_mutex_lock(&e->q_mu);
        if (!e->shutting_down && !e->inbox_head && !atomic_load(&e->poke)) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 50 * 1000000L;   // re-poll now and then: a flag may race the wait
            if (until.tv_nsec >= 1000000000L) { until.tv_sec++; until.tv_nsec -= 1000000000L; }
            pthread_cond_timedwait(&e->q_cv, &e->q_mu, &until);
        }
        atomic_store(&e->poke, 0);
        pthread_mutex_unlock(&e->q_mu);
    }
    return NULL;
}

enum status engine_start(struct engine *e)
{
    CHECK(!e->has_thread, "engine started twice");
    e->shutting_down = false;
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        LOG_ERR("cannot start the engine thread");
        return STATUS_ENOMEM;
    }
    e->has_thread = true;
    return STATUS_OK;
}

void engine_shutdown(struct engine *e)
{
    if (!e->has_thread) return;
    pthread_mutex_lock(&e->q_mu);
    e->shutting_down = true;
    pthread_cond_broadcast(&e->q_cv);
    pthread_mutex_unlock(&e->q_mu);
    pthread_join(e->thread, NULL);
    e->has_thread = false;
}

/* ==== Submit, cancel, finish ==== */

/* Under q_mu. max_queue counts the requests that wait beyond what the engine can admit now: the
 * running slots free at this moment take that many of the queued requests at the next step. */
static bool queue_full(struct engine *e)
{
    int free_slots = e->cfg.max_running - atomic_load(&e->n_running_pub);
    if (free_slots < 0) free_slots = 0;
    return e->n_queued >= e->cfg.max_queue + free_slots;
}

enum status engine_submit_msg(struct engine *e, const struct gen_request *g, struct token_stream **out,
                              char *msg, size_t msg_len)
{
    if (msg && msg_len) msg[0] = '\0';
    pthread_mutex_lock(&e->q_mu);
    bool full = queue_full(e);
    pthread_mutex_unlock(&e->q_mu);
    if (full) goto busy;
    struct request *r;
    enum status st = request_new(e, g, &r, msg, msg_len);
    if (st != STATUS_OK) return st;
    pthread_mutex_lock(&e->q_mu);
    if (queue_full(e)) {
        pthread_mutex_unlock(&e->q_mu);
        stream_unref(r->ts);   // the reference the caller would have had
        r->cons = NULL;        // a failed submit leaves the constraint to the caller
        request_free(e, r);    // and the engine's
        goto busy;
    }
    e->n_queued++;
    atomic_fetch_add(&e->n_pending, 1);
    r->counted_waiting = true;
    r->next = NULL;
    if (e->inbox_tail) e->inbox_tail->next = r; else e->inbox_head = r;
    e->inbox_tail = r;
    pthread_cond_broadcast(&e->q_cv);
    // Read the stream before unlocking: once r is on the inbox the engine thread may finish and
    // free a short request at any moment.
    struct token_stream *ts = r->ts;
    pthread_mutex_unlock(&e->q_mu);
    *out = ts;
    return STATUS_OK;
busy:
    if (msg && msg_len) snprintf(msg, msg_len, "the queue is full (%d requests waiting)", e->cfg.max_queue);
    return STATUS_EBUSY;
}

enum status engine_submit(struct engine *e, const struct gen_request *req, struct token_stream **out)
{
    return engine_submit_msg(e, req, out, NULL, 0);
}

static void poke(struct engine *e)
{
    atomic_store(&e->poke, 1);
    pthread_mutex_lock(&e->q_mu);
    pthread_cond_broadcast(&e->q_cv);
    pthread_mutex_unlock(&e->q_mu);
}

void engine_cancel(struct engine *e, struct token_stream *ts)
{
    atomic_store(&ts->cancel, 1);
    poke(e);
}

void engine_end_on_stop_string(struct engine *e, struct token_stream *ts)
{
    atomic_store(&ts->end_on_stop_string, 1);
    poke(e);
}

/* ==== Ending requests ==== */

void engine_end_request(struct engine *e, struct request *r, enum finish_reason why, enum status err)
{
    bool running = false;
    for (int i = 0; i < e->n_running && !running; i++) running = e->running[i] == r;
    if (running) sched_running_remove(e, r);
    else sched_waiting_remove(e, r);
    if (r->counted_waiting) {
        pthread_mutex_lock(&e->q_mu);
        e->n_queued--;
        pthread_mutex_unlock(&e->q_mu);
        r->counted_waiting = false;
    }
    if (e->states)   // the state must be exactly that of the computed tokens, however it was resumed
        CHECK(r->state == sched_state_of(r->tok, r->n_computed, 0), "request %llu: state out of step with its tokens",
              (unsigned long long)r->id);
    stream_end(r->ts, why, err, clock_now_s());
    atomic_fetch_sub(&e->n_pending, 1);
    e->acc.requests_done++;
    request_free(e, r);   // releases its blocks
}

static void poll_flags(struct engine *e)
{
    for (int i = e->n_running - 1; i >= 0; i--) {
        struct request *r = e->running[i];
        if (atomic_load(&r->ts->cancel)) engine_end_request(e, r, FINISH_CANCELED, STATUS_OK);
        else if (atomic_load(&r->ts->end_on_stop_string)) engine_end_request(e, r, FINISH_STOP_MATCHED, STATUS_OK);
    }
    for (struct request *r = e->wait_head, *next; r; r = next) {
        next = r->next;
        if (atomic_load(&r->ts->cancel)) engine_end_request(e, r, FINISH_CANCELED, STATUS_OK);
        else if (atomic_load(&r->ts->end_on_stop_string)) engine_end_request(e, r, FINISH_STOP_MATCHED, STATUS_OK);
    }
}

static void drain_inbox(struct engine *e)
{
    pthread_mutex_lock(&e->q_mu);
    struct request *r = e->inbox_head;
    e->inbox_head = e->inbox_tail = NULL;
    pthread_mutex_unlock(&e->q_mu);
    while (r) {
        struct request *next = r->next;
        r->next = NULL;
        r->prev = e->wait_tail;
        if (e->wait_tail) e->wait_tail->next = r; else e->wait_head = r;
        e->wait_tail = r;
        e->n_waiting++;
        r = next;
    }
}

/* ==== Sampling and stop rules ==== */

static bool is_stop(const struct engine *e, const struct request *r, int32_t tok)
{
    if (!r->ignore_eos)
        for (int i = 0; i < e->m->hp.n_eos; i++)
            if (e->m->hp.eos_ids[i] == tok) return true;
    for (int i = 0; i < r->n_stop_ids; i++)
        if (r->stop_ids[i] == tok) return true;
    return false;
}

/* stop: the token ends the request whatever the stop rules say (a constraint accepted its end). */
static void emit(struct engine *e, struct request *r, int32_t tok, float lp, const struct token_logprob *top, int n_top,
                 bool stop)
{
    double now = clock_now_s();
    CHECK(r->n_tok < r->cap_tok, "request %llu token overflow", (unsigned long long)r->id);
    r->tok[r->n_tok++] = tok;
    r->n_gen++;
    sampler_accept(r->smp, tok);
    e->acc.generated_tokens++;
    if (stop || is_stop(e, r, tok)) {
        stream_count_stop(r->ts, tok, now);
        engine_end_request(e, r, FINISH_STOP_MATCHED, STATUS_OK);
        return;
    }
    stream_publish(r->ts, tok, lp, top, n_top, now);
    if (r->n_gen >= r->max_gen) engine_end_request(e, r, FINISH_LENGTH, STATUS_OK);
}

/* Whether item i samples on the host (its own sampler, not the backend's argmax). */
static bool samples_on_host(const struct sched_item *it)
{
    return it->out_row >= 0 && it->hid_tok < 0 && it->mask_st == STATUS_OK && !it->r->plain_greedy;
}

/* Rows the candidates may decide go through the backend's sample_cands (one call); the tokens
 * they decide are drawn here, and only the rest are downloaded. */
static void sample_from_cands(struct engine *e, const struct tensor *logits)
{
    int n = 0;
    for (int i = 0; i < e->n_items; i++) {
        const struct sched_item *it = &e->items[i];
        if (!samples_on_host(it) || it->r->n_logprobs != 0 || !sampler_takes_cands(it->r->smp)) continue;
        e->cand_items[n] = i;
        e->cand_rows[n] = it->out_row;
        e->cand_inv_t[n++] = sampler_inv_temperature(it->r->smp);
    }
    if (n == 0) return;
    e->be->ops->sample_cands(e->be, logits, n, e->cand_rows, e->cand_inv_t, SAMPLER_CANDS, e->cand_ids, e->cand_vals,
                             e->cand_sums);
    for (int j = 0; j < n; j++) {
        struct sampled *d = &e->sampled[e->cand_items[j]];
        struct sampler_cands c = { .ids = e->cand_ids + (size_t)j * SAMPLER_CANDS,
                                   .vals = e->cand_vals + (size_t)j * SAMPLER_CANDS, .sum = e->cand_sums[j] };
        d->from_cands = sampler_sample_cands(e->items[e->cand_items[j]].r->smp, &c, &d->tok);
        if (d->from_cands) {
            d->lp = 0.0f;
            d->n_top = 0;
        }
        if (d->from_cands) e->acc.sampled_by_cands++;
        else e->acc.sampled_cands_full++;
    }
}

static void sample_outputs(struct engine *e, const struct tensor *logits)
{
    bool any_plain = false;
    for (int i = 0; i < e->n_items; i++) e->sampled[i].from_cands = false;
    if (e->be->ops->sample_cands) sample_from_cands(e, logits);
    int lo = -1, hi = -1, n_host = 0;   // the rows the host samples lie in [lo, hi]
    for (int i = 0; i < e->n_items; i++) {
        const struct sched_item *it = &e->items[i];
        if (it->out_row < 0) continue;
        if (it->r->plain_greedy) {
            any_plain = true;
            continue;
        }
        if (e->sampled[i].from_cands) continue;
        if (lo < 0 || it->out_row < lo) lo = it->out_row;
        if (it->out_row > hi) hi = it->out_row;
        n_host++;
    }
    if (any_plain) e->be->ops->argmax(e->be, e->argmax_ids, logits);
    if (lo < 0) return;
    // one download of [lo, hi]; row by row where the candidates decided most of the rows in it
    size_t row_bytes = (size_t)e->n_vocab * sizeof(float);
    if (2 * n_host >= hi - lo + 1) {
        struct tensor rows = tensor_rows_view(logits, lo, hi - lo + 1);
        e->be->ops->download(e->be, e->logits + (size_t)lo * (size_t)e->n_vocab, &rows, (size_t)(hi - lo + 1) * row_bytes);
        return;
    }
    for (int i = 0; i < e->n_items; i++) {
        const struct sched_item *it = &e->items[i];
        if (it->out_row < 0 || it->r->plain_greedy || e->sampled[i].from_cands) continue;
        struct tensor row = tensor_rows_view(logits, it->out_row, 1);
        e->be->ops->download(e->be, e->logits + (size_t)it->out_row * (size_t)e->n_vocab, &row, row_bytes);
    }
}

static void sample_task(void *ctx, int task, int thread)
{
    struct engine *e = ctx;
    int i = e->sample_items[task];
    const struct sched_item *it = &e->items[i];
    struct request *r = it->r;
    struct sampled *d = &e->sampled[i];
    float *row = e->logits + (size_t)it->out_row * (size_t)e->n_vocab;
    d->lp = 0.0f;
    d->n_top = 0;
    d->tok = sampler_sample_top(r->smp, e->scratch[thread], row, r->n_logprobs != 0 ? &d->lp : NULL, r->n_logprobs,
                                d->top, &d->n_top);
}

/* Draws the tokens of the step's items that sample on the host, into e->sampled, over the sampling
 * threads (each item's own sampler and logits row: no two tasks share anything but the scratch
 * of their thread). */
static void sample_rows(struct engine *e)
{
    int n = 0;
    for (int i = 0; i < e->n_items; i++)
        if (samples_on_host(&e->items[i]) && !e->sampled[i].from_cands) e->sample_items[n++] = i;
    if (n > 1 && e->sample_pool) {
        threadpool_run(e->sample_pool, n, sample_task, e);
        return;
    }
    for (int t = 0; t < n; t++) sample_task(e, t, 0);
}

/* Embedding requests that end in this step: their last token's row of the final normed hidden
 * states goes straight into their stream (d_model floats; synchronous, like the logits rows). */
static void download_hidden(struct engine *e, const struct tensor *hidden)
{
    for (int i = 0; i < e->n_items; i++) {
        const struct sched_item *it = &e->items[i];
        if (it->hid_tok < 0) continue;
        struct token_stream *ts = it->r->ts;
        struct tensor row = tensor_rows_view(hidden, it->hid_tok, 1);
        e->be->ops->download(e->be, ts->embd, &row, (size_t)ts->n_embd * sizeof(float));
    }
}

/* ==== Masked rows ==== */

static void mask_clear(uint32_t *m, int32_t id, int n_vocab)
{
    if (id >= 0 && id < n_vocab) m[id >> 5] &= ~(1u << (id & 31));
}

/* m = the first n ids allowed (n <= n_vocab), no other. */
static void mask_first(uint32_t *m, int n, int n_words)
{
    int full = n / 32;
    for (int w = 0; w < full; w++) m[w] = ~0u;
    for (int w = full; w < n_words; w++) m[w] = 0;
    if (n % 32) m[full] = (1u << (n % 32)) - 1;
}

static void mask_clear_stops(const struct engine *e, const struct request *r, uint32_t *m)
{
    if (!r->ignore_eos)
        for (int i = 0; i < e->m->hp.n_eos; i++) mask_clear(m, e->m->hp.eos_ids[i], e->n_vocab);
    for (int i = 0; i < r->n_stop_ids; i++) mask_clear(m, r->stop_ids[i], e->n_vocab);
}

/* The ids r may sample next, into m (e->mask_words words); false when it may sample any. Before its
 * constraint starts: no stop id, and only the start token once the budget left is just enough for
 * the shortest constrained output; after: what the constraint's mask allows (ids past its
 * vocabulary never). min_tokens: no stop id yet. EINVAL in *st: nothing is allowed (the mask came
 * back empty), which ends the request rather than sampling garbage; the mask's own failure too. */
static bool compose_mask(struct engine *e, struct request *r, uint32_t *m, enum status *st)
{
    int n = e->n_vocab, nw = e->mask_words;
    *st = STATUS_OK;
    if (!r->cons && r->n_gen >= r->min_gen) return false;
    if (r->cons && r->cons_after < 0) {
        request_mask_compute(r);   // normally done by the worker
        if (r->mask_st != STATUS_OK) {
            LOG_ERR("request %llu: constraint mask failed: %s", (unsigned long long)r->id, status_str(r->mask_st));
            *st = r->mask_st;
            return true;
        }
        int lim = r->cons_ids < n ? r->cons_ids : n;
        mask_first(m, lim, nw);
        for (int w = 0; w < (lim + 31) / 32; w++) m[w] &= r->mask[w];
    } else if (r->cons && r->max_gen - r->n_gen <= constraint_min_tokens_to_finish(r->cons) + 2) {
        // + </think> + the stop id: only the token that starts the constraint still fits
        mask_first(m, 0, nw);
        if (r->cons_after < n) m[r->cons_after >> 5] |= 1u << (r->cons_after & 31);
    } else {
        mask_first(m, n, nw);   // the output may not end before its constrained part (or min_tokens)
    }
    if (r->cons_after >= 0 || r->n_gen < r->min_gen) mask_clear_stops(e, r, m);
    uint32_t any = 0;
    for (int w = 0; w < nw; w++) any |= m[w];
    if (!any) {
        LOG_ERR("request %llu: its constraint allows no token of the model's vocabulary", (unsigned long long)r->id);
        *st = STATUS_EINVAL;
    }
    return true;
}

/* Masks the logits rows of the step's requests that may not sample every id, in one backend call. */
static void mask_logits(struct engine *e, struct tensor *logits)
{
    int n = 0;
    for (int i = 0; i < e->n_items; i++) {
        struct sched_item *it = &e->items[i];
        it->mask_idx = -1;
        it->mask_st = STATUS_OK;
        if (it->out_row < 0) continue;
        uint32_t *m = e->masks + (size_t)n * (size_t)e->mask_words;
        if (!compose_mask(e, it->r, m, &it->mask_st) || it->mask_st != STATUS_OK) continue;
        it->mask_idx = n;
        e->mask_rows[n++] = it->out_row;
    }
    if (n > 0) e->be->ops->logits_mask(e->be, logits, n, e->mask_rows, e->masks);
}

/* Moves r's constraint past tok; *stop when it accepted its end. */
static enum status constrain_advance(struct request *r, int32_t tok, bool *stop)
{
    if (r->cons_after >= 0) {
        if (tok == r->cons_after) r->cons_after = -1;
        return STATUS_OK;
    }
    enum status st = constraint_advance(r->cons, tok);
    if (st != STATUS_OK) return st;
    r->mask_ready = false;
    *stop = constraint_is_finished(r->cons);
    return STATUS_OK;
}

/* ==== Step ==== */

static void publish_stats(struct engine *e, double step_ms, int n_tok, bool worked)
{
    struct engine_stats *a = &e->acc;
    a->n_running = e->n_running;
    a->n_waiting = e->n_waiting;
    a->kv_blocks_used = kv_blocks_n_used(e->kb);
    a->kv_blocks_cached = kv_blocks_n_cached(e->kb);
    a->kv_blocks_free = kv_blocks_n_free(e->kb);
    a->state_slots_free = e->states ? e->states->n_free : 0;
    if (worked) {
        a->steps++;
        a->last_step_ms = step_ms;
        a->last_step_tokens = n_tok;
        atomic_store(&e->heartbeat_ns, clock_now_ns());
    }
    pthread_mutex_lock(&e->st_mu);
    e->st = *a;
    pthread_mutex_unlock(&e->st_mu);
}

bool engine_step(struct engine *e)
{
    int64_t t0 = clock_now_ns();
    drain_inbox(e);
    poll_flags(e);
    if (e->n_running == 0 && !e->wait_head) {
        atomic_store(&e->heartbeat_ns, clock_now_ns());   // idle with nothing to do is alive
        publish_stats(e, 0, 0, false);
        return false;
    }
    int n_tok = sched_build(e);
    publish_stats(e, 0, 0, false);   // what this step runs is visible while it runs
    if (n_tok == 0) return false;
    struct batch_meta meta = {
        .n_tok = n_tok, .tok_id = e->tok_id, .tok_pos = e->tok_pos, .tok_seq = e->tok_seq,
        .tok_slot = e->tok_slot, .n_seq = e->n_items, .seq_len = e->seq_len, .seq_block0 = e->seq_block0,
        .block_ids = e->block_ids, .n_out = e->n_out, .out_tok = e->out_tok, .block_size = e->bs,
        .seq_state_slot = e->states ? e->seq_state_slot : NULL, .tok_snap = e->n_tok_marks ? e->tok_snap : NULL,
    };
    int n_jobs = 0;
    for (int i = 0; i < e->n_items; i++) {
        struct request *r = e->items[i].r;
        if (e->items[i].out_row >= 0 && r->cons && r->cons_after < 0 && !r->mask_ready) e->mask_jobs[n_jobs++] = r;
    }
    mask_worker_post(e->mw, e->mask_jobs, n_jobs);
    struct tensor logits, hidden;
    enum status st_ranks = engine_ranks_forward(e, &meta, &logits, &hidden);
    if (e->want_hidden && st_ranks == STATUS_OK) download_hidden(e, &hidden);
    mask_worker_wait(e->mw);   // the device (if any) is still busy with the forward pass
    if (e->n_out > 0 && st_ranks == STATUS_OK) {   // a failed rank's step has nothing to sample
        mask_logits(e, &logits);
        sample_outputs(e, &logits);
    }
    enum status st = e->be->ops->sync(e->be);
    if (st == STATUS_OK) st = st_ranks;
    if (st != STATUS_OK) {
        LOG_ERR("engine step failed: %s; ending the %d requests of the step", status_str(st), e->n_items);
        sched_snaps_release(e);
        for (int i = 0; i < e->n_items; i++) engine_end_request(e, e->items[i].r, FINISH_ERROR, st);
        e->acc.failed_steps++;
        publish_stats(e, (double)(clock_now_ns() - t0) / 1e6, n_tok, true);
        return true;
    }
    sample_rows(e);
    // items are visited in order; finishing one never touches another's item
    for (int i = 0; i < e->n_items; i++) {
        struct sched_item *it = &e->items[i];
        struct request *r = it->r;
        r->n_computed += it->n;
        sched_index_blocks(e, r);
        sched_state_advance(e, i);
        if (it->hid_tok >= 0) {   // its blocks go back to the free list now (never indexed)
            engine_end_request(e, r, FINISH_EMBEDDED, STATUS_OK);
            continue;
        }
        if (it->out_row < 0) continue;
        int32_t tok;
        float lp = 0.0f;
        const struct token_logprob *top = NULL;
        int n_top = 0;
        bool stop = false;
        if (it->mask_st != STATUS_OK) {
            engine_end_request(e, r, FINISH_ERROR, it->mask_st);
            continue;
        }
        if (r->plain_greedy) {
            tok = e->argmax_ids[it->out_row];
        } else {
            const struct sampled *d = &e->sampled[i];
            tok = d->tok;
            lp = d->lp;
            top = d->top;
            n_top = d->n_top;
        }
        // a row whose allowed ids all had -inf logits comes back with some id: never emit it
        const uint32_t *m = it->mask_idx >= 0 ? e->masks + (size_t)it->mask_idx * (size_t)e->mask_words : NULL;
        bool allowed = !m || (tok >= 0 && tok < e->n_vocab && (m[tok >> 5] >> (tok & 31) & 1));
        if (!allowed || (r->cons && constrain_advance(r, tok, &stop) != STATUS_OK)) {
            LOG_ERR("request %llu: sampled token %d is outside its mask", (unsigned long long)r->id, tok);
            engine_end_request(e, r, FINISH_ERROR, STATUS_EINVAL);
            continue;
        }
        emit(e, r, tok, lp, top, n_top, stop);
    }
    double step_ms = (double)(clock_now_ns() - t0) / 1e6;
    pace_observe(&e->pace, step_ms, e->n_dec, e->prefill_units);
    publish_stats(e, step_ms, n_tok, true);
    return true;
}

void engine_get_stats(struct engine *e, struct engine_stats *out)
{
    pthread_mutex_lock(&e->st_mu);
    *out = e->st;
    pthread_mutex_unlock(&e->st_mu);
    out->n_pending = atomic_load(&e->n_pending);
    out->last_progress_s = (double)atomic_load(&e->heartbeat_ns) * 1e-9;
}

bool engine_stats_stalled(const struct engine_stats *st, double now_s, double stall_s)
{
    return st->n_pending > 0 && now_s - st->last_progress_s > stall_s;
}
