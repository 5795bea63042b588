/* engine: continuous batching of generation requests over one model on one backend.
 *
 * One engine thread (engine_start, or a caller looping engine_step) owns the scheduler, the KV
 * cache (kv/pool, kv/blocks, kv/prefix) and the backend: nothing inside them needs a lock. Other
 * threads talk to it only through engine_submit (a bounded, thread-safe queue), engine_cancel /
 * engine_end_on_stop_string (flags the engine reads at its next step) and the per-request
 * token_stream, which they read with token_stream_next until an event with done = true.
 *
 * Each step: admit waiting requests FIFO while KV memory allows (prefix-cache lookup first), give
 * every running decode one token, fill the rest of the per-step token budget (max_batch_tokens)
 * with prefill chunks, run ONE forward pass over the flattened batch, sample one token per
 * sequence that finished its pending tokens, apply the stop rules and publish the tokens.
 * When a running sequence needs a KV block and none is free (after evicting cached prefix blocks),
 * the newest running request is preempted: its blocks are released and it goes back to the head of
 * the queue with its generated tokens appended, so recomputing it (mostly from the prefix cache)
 * continues exactly where it stopped; nothing is emitted twice.
 *
 * Stop rules applied here: EOS ids of the model (unless ignore_eos), stop token ids, max_tokens,
 * the context limit (min(model max_pos, the whole KV cache)). Stop STRINGS are the server's job
 * (it owns the detokenizer and holds back text that may start a stop string); when it sees one it
 * calls engine_end_on_stop_string, and the request ends with FINISH_STOP_MATCHED at the next step
 * and frees its blocks.
 *
 * Recurrent state (hybrid models): each running sequence holds a state slot (kv/state_pool.h),
 * from a pool that shares the sequence-memory budget with the KV blocks (engine_cfg.state_slots);
 * admission needs a free slot and the blocks, and finish, cancel and preemption return both. Its
 * state is snapshotted into the prefix cache
 * (kv/prefix.h) at its snapshot positions: the block-aligned ends of its chat messages
 * (gen_request.msg_ends, from the server's template rendering) and of its prompt, inside the step
 * whose chunk covers them (batch_meta.tok_snap: the Gated DeltaNet ops write the state there, so a
 * prompt with several snapshot positions is still one forward pass). Admission then resumes from
 * the deepest matched block that has a snapshot, not from the deepest matched block. Snapshots
 * live in a state pool of their own in the backend's memory (engine_cfg.state_cache_bytes, LRU),
 * so a restore is a device copy queued with the steps; each is tagged with the hash chain of the
 * tokens it covers, which the engine checks on resume. Attention-only models ignore msg_ends.
 *
 * n > 1 choices: submit n requests with the same prompt. Full prompt blocks are shared copy-free
 * through the prefix cache: a request whose prompt shares full blocks with a request still in
 * prefill waits (at most until that prefill ends) instead of computing them again, so n choices
 * compute the prompt once and hold its blocks once.
 *
 *     struct token_stream *ts;
 *     if (engine_submit(eng, &req, &ts) != STATUS_OK) ...            // EBUSY: queue full, ETOOLONG
 *     struct token_event ev;
 *     while (token_stream_next(ts, &ev, -1) == STATUS_OK) { if (ev.has_token) use(ev.token); if (ev.done) break; }
 *     token_stream_release(ts);
 *
 * Embedding requests (gen_request.embed) are prefill-only: they share steps with generation
 * requests, and their result is the final hidden state of their last token, read from the stream.
 */
#ifndef CAIRN_ENGINE_ENGINE_H
#define CAIRN_ENGINE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "engine/sampler.h"
#include "tensor/dtype.h"

struct backend;
struct collective;
struct model;
struct constraint;
struct constraint_vocab;

enum finish_reason {
    FINISH_NONE = 0,      // still running
    FINISH_STOP_MATCHED,  // an EOS id, a stop id, or a stop string (engine_end_on_stop_string) matched
    FINISH_LENGTH,        // max_tokens or context limit
    FINISH_CANCELED,      // engine_cancel (client gone)
    FINISH_ERROR,         // engine failure (status in the event)
    FINISH_EMBEDDED,      // an embedding request's hidden state is ready (token_stream_embedding)
};

enum { ENGINE_MAX_RUNNING_AUTO = 256 };   // the most sequences a GPU runs at once by default
enum { ENGINE_SAMPLE_THREADS_AUTO = 8 };  // the most threads that sample a step's rows by default

/* Zero fields take the defaults of engine_cfg_default(), except prefix_cache (false = off). */
struct engine_cfg {
    /* Sequence memory: the KV blocks and, for hybrid models, the recurrent-state slots (one per
     * running sequence, taken first; the blocks get the rest). 0: on a backend with mem_info
     * (cuda), the device memory free after the weights and activations minus max(1 GiB, 5% of the
     * device); elsewhere 1 GiB; the blocks capped to max_running full contexts. Logged. */
    size_t     kv_cache_bytes;
    /* Hybrid models: recurrent-state slots, i.e. sequences that can run at once (out of
     * kv_cache_bytes). 0: as many as the budget holds with 1,024 tokens of KV each, at least 1, at
     * most max_running. A request waits for a free slot as it waits for KV blocks. */
    int        state_slots;
    enum dtype kv_dtype;            // f32 (CPU default; DTYPE_F32 == 0), f16, bf16, f8e4m3 (scale 1.0)
    int        block_size;          // tokens per KV block (16)
    /* Per-step token budget (prefill chunks + decodes). 0: 8192 on a backend with its own device
     * memory (a GPU: a step without decodes takes as much of the waiting prompts as the GEMMs
     * use well), 256 on host backends. */
    int        max_batch_tokens;
    /* Sequences in the batch at once (<= max_batch_tokens). 0: on a GPU, from the KV memory (one
     * per 1,024 cached tokens, between 64 and 256); 64 on host backends. */
    int        max_running;
    /* Requests waiting for admission beyond the running slots free now before submit answers
     * EBUSY (256): with 64 free slots and max_queue 32, 96 requests are taken. */
    int        max_queue;
    /* While decodes run, prefill chunks of a step may cost at most this much attention work,
     * counted as sum of n * (start + n) over chunks of n tokens starting at start: a prompt deep
     * into a long context is ingested in smaller chunks so the running streams' inter-token gap
     * stays bounded (attention cost grows with the context, the token budget does not see it).
     * 0: max_batch_tokens * 512; -1: no cap. Chunks never shrink below 16 tokens. This static rule
     * applies until max_itl_ms's pacing has measured the step costs (engine/pace.h), and always
     * when pacing is off. */
    int64_t    max_prefill_pairs;
    /* Inter-token latency target of running streams while prompts are ingested beside them
     * (engine/pace.h: chunks sized from measured step times). > 0: the target in ms; 0: auto (on a
     * GPU 2x the measured decode-only step; off on host backends); < 0: off. */
    double     max_itl_ms;
    bool       prefix_cache;        // share full blocks across requests
    int        max_context;         // tokens a request may reach (prompt + output); 0: the model's max_pos
    /* Hybrid models: memory for the prefix cache's state snapshots (0: 1 GiB), each
     * model_seq_state_bytes, in the backend's memory. On a device whose sequence memory is the
     * default it comes out of that (the default at most a quarter of it); on host backends and
     * beside an explicit kv_cache_bytes it is extra. Fewer than one snapshot turns resumption off. */
    size_t     state_cache_bytes;
    /* Threads that sample a step's rows (each row's token depends only on its request's sampler,
     * never on the thread), and as many that compute constrained rows' masks during the forward
     * pass; 1: the engine thread does both (masks before the pass). 0: on a backend with its own
     * device (cuda) min(CPUs, 8), since the host is idle there and a step's 64+ rows of a 150K
     * vocabulary would cost more than the step; 1 on host backends, whose threads are the
     * forward pass's. */
    int        sample_threads;
};

/* Defaults, with the prefix cache on. */
struct engine_cfg engine_cfg_default(void);

struct gen_request {
    const int32_t *prompt;          // [n_prompt] token ids (copied by submit)
    int            n_prompt;
    int            max_tokens;      // generated tokens at most (> 0)
    struct sampling sampling;       // temperature, top-k/p, penalties, seed, logit bias (copied)
    const int32_t *stop_ids;        // extra stop token ids (EOS ids of the model always stop unless ignore_eos)
    int            n_stop_ids;
    bool           ignore_eos;
    int            min_tokens;      // EOS and stop ids are masked out of sampling until this many tokens (0: none)
    int            n_logprobs;      // top log-probabilities per token (0: none; -1: only the chosen one)
    const int32_t *msg_ends;        // positions where chat messages end (snapshot hints), ascending
    int            n_msg_ends;
    uint64_t       cache_salt;      // separates prefix caches (adapters, media, users who opt out)
    /* Constrained decoding (text/constraint.h): every sampled token is drawn under the
     * constraint's mask (disallowed ids, and ids past the vocabulary it was built for, get -inf
     * before the sampler's processing), so the output matches its grammar and closes within
     * max_tokens, stop id included (submit refuses, EINVAL with the count, a max_tokens below the
     * shortest output + 1); once it ends (a stop id it allowed), the request ends with
     * FINISH_STOP_MATCHED.
     * Ownership of constraint passes to the engine when submit succeeds (it is freed at the
     * request's end); on failure the caller keeps it. constraint_vocab is borrowed and outlives the
     * request. constraint_after > 0: the constraint starts after that token id is generated (a
     * thinking model's </think>); before it, sampling is free, but the token is forced once only
     * enough budget is left for the shortest constrained output. */
    struct constraint             *constraint;
    const struct constraint_vocab *constraint_vocab;
    int32_t                        constraint_after;   // 0: from the first token
    /* Embedding request: nothing is generated. The prompt is computed (scheduled like any prefill,
     * beside other requests' decodes) and the request ends with FINISH_EMBEDDED once its last
     * token's final normed hidden state, the input of lm_head, is in the stream
     * (token_stream_embedding); its KV blocks are freed then, never indexed in the prefix cache.
     * The prompt may fill the whole context. max_tokens, sampling, stops, logprobs and
     * constraints are ignored. */
    bool                           embed;
};

struct token_event {
    int32_t            token;           // the generated token when has_token; else the stop token or -1
    bool               has_token;       // false on a final event that carries no text token
    float              logprob;         // of the chosen token, when requested
    struct token_logprob top[SAMPLER_MAX_TOP];   // top alternatives, n_top of them, most likely first
    int                n_top;
    bool               done;            // last event of the stream
    enum finish_reason finish;          // when done
    enum status        error;           // when finish == FINISH_ERROR
    int32_t            stop_token;      // when done with FINISH_STOP_MATCHED on a stop/EOS id: that id (not emitted); else -1
    // counters, valid when done (and kept current otherwise)
    int                n_prompt;
    int                n_cached;        // prompt tokens served from the prefix cache (first admission)
    int                n_generated;     // includes a stop token
    double             t_queued_s;      // submit -> admitted
    double             t_first_s;       // submit -> first token (0 until then)
    double             t_done_s;        // submit -> done (0 until then)
};

struct engine;
struct token_stream;

/* Allocates the KV pool, the forward pass and every per-step array. m must be prepared for be. */
enum status engine_new(const struct engine_cfg *cfg, struct model *m, struct backend *be, struct engine **out);

/* A model split over ranks (model/shard.h; docs/design.md "Parallelism"): rank r's model, prepared
 * for be[r], and its handle of one collective group. Borrowed: they outlive the engine. */
struct engine_shards {
    int                 n_ranks;
    struct model      **m;      // [n_ranks]
    struct backend    **be;     // [n_ranks]
    struct collective **coll;   // [n_ranks]
};
/* engine_new over a sharded model: the engine's thread is rank 0 (its scheduler, prefix cache and
 * sampler are the only ones); every rank owns a forward pass, a KV pool and a state pool of the
 * same block and slot counts (kv_cache_bytes is per rank) and executes each step on a thread of
 * its own, started here. A rank whose backend fails a step fails the step's requests (FINISH_ERROR). */
enum status engine_new_sharded(const struct engine_cfg *cfg, const struct engine_shards *sh, struct engine **out);
/* Stops the thread if started; requests still open end with FINISH_CANCELED; streams stay readable
 * until released. */
void        engine_free(struct engine *e);
/* Runs the engine loop (engine_step, sleeping when idle) on a thread of its own until engine_shutdown. */
enum status engine_start(struct engine *e);
void        engine_shutdown(struct engine *e);
/* Thread-safe. On success *out must be released by the caller. ETOOLONG: prompt + 1 exceeds the
 * context or the whole cache; EBUSY: queue full; EINVAL: bad parameters. Logs nothing per request. */
enum status engine_submit(struct engine *e, const struct gen_request *req, struct token_stream **out);
/* Same; on failure writes a one-line reason (with the token counts for ETOOLONG) into msg. */
enum status engine_submit_msg(struct engine *e, const struct gen_request *req, struct token_stream **out,
                              char *msg, size_t msg_len);
/* Thread-safe; the request ends with FINISH_CANCELED at the next step and frees its blocks. */
void        engine_cancel(struct engine *e, struct token_stream *ts);
/* Thread-safe; the request ends with FINISH_STOP_MATCHED at the next step (a stop string matched in the
 * server), frees its blocks, and emits no further tokens. */
void        engine_end_on_stop_string(struct engine *e, struct token_stream *ts);
/* Waits up to timeout_ms (-1: forever) for the next event. EBUSY on timeout. After the done event,
 * further calls return the done event again. */
enum status token_stream_next(struct token_stream *ts, struct token_event *ev, int timeout_ms);
/* The caller's reference goes; a request still running is canceled. */
void        token_stream_release(struct token_stream *ts);
uint64_t    token_stream_id(const struct token_stream *ts);
/* An embedding request's result once its stream is done with FINISH_EMBEDDED: *out points to
 * d_model floats owned by the stream (valid until release); returns d_model, else 0. */
int         token_stream_embedding(struct token_stream *ts, const float **out);

/* One scheduler step (admit, schedule, forward, sample, emit). Returns false when idle. For tests
 * and single-threaded tools; do not call it while engine_start's thread runs. */
bool        engine_step(struct engine *e);

struct engine_stats {
    int      n_running, n_waiting;
    int      kv_blocks_total, kv_blocks_used, kv_blocks_cached, kv_blocks_free;
    int      state_slots_total, state_slots_free;   // hybrid models' recurrent-state slots (0, 0 otherwise)
    int      block_size;
    int      max_context;           // tokens a request may reach: min(max_pos, whole cache)
    uint64_t prefix_lookups, prefix_hit_tokens, prompt_tokens, generated_tokens;
    uint64_t preemptions, steps, requests_done;
    double   last_step_ms;
    int      last_step_tokens;
    int      n_pending;             // submitted and not yet ended (in the inbox, waiting or running), live
    /* Steps a backend (any rank's) failed at sync: their requests ended with FINISH_ERROR. A device
     * error is sticky (a poisoned CUDA context), so /health answers 503 once this is non-zero. */
    uint64_t failed_steps;
    /* Sampled rows (not plain greedy) the backend's candidates decided (sample_cands: no download), and
     * those that went through the op and still needed their full row (a draw in the tail). */
    uint64_t sampled_by_cands, sampled_cands_full;
    /* clock_now_s() of the engine thread's last sign of progress: an idle loop with nothing to do,
     * a layer of a step issued, a step done. Stale only while work is pending and not advancing. */
    double   last_progress_s;
};
void engine_get_stats(struct engine *e, struct engine_stats *out);   // thread-safe snapshot
/* Whether stats say the engine is stalled: work pending (n_pending: in the inbox, waiting or running) and no
 * sign of progress for more than stall_s seconds (what /health answers 503 for). */
bool engine_stats_stalled(const struct engine_stats *st, double now_s, double stall_s);

#endif
