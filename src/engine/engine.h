/* engine: continuous batching of generation requests over one model on one backend.
 *
 * One engine thread (engine_run, or a caller looping engine_step) owns the scheduler, the KV cache
 * and the backend: nothing inside needs a lock. Other threads talk to it only through
 * engine_submit (a bounded, thread-safe queue), engine_cancel and the per-request token_stream,
 * which they read with token_stream_next until it reports the end.
 *
 *     struct token_stream *ts;
 *     if (engine_submit(eng, &req, &ts) != STATUS_OK) ...            // EBUSY: queue full, ETOOLONG
 *     struct token_event ev;
 *     while (token_stream_next(ts, &ev, -1) == STATUS_OK && !ev.done) use(ev.token);
 *     token_stream_release(ts);
 */
#ifndef CAIRN_ENGINE_ENGINE_H
#define CAIRN_ENGINE_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"
#include "base/status.h"
#include "engine/sampler.h"
#include "model/model.h"

enum finish_reason {
    FINISH_NONE = 0,      // still running
    FINISH_STOP,          // EOS, stop token or stop string
    FINISH_LENGTH,        // max_tokens or context limit
    FINISH_CANCELED,      // engine_cancel (client gone)
    FINISH_ERROR,         // engine failure (status in the event)
};

struct engine_cfg {
    size_t     kv_cache_bytes;      // KV memory budget; 0 = default for the backend
    enum dtype kv_dtype;            // f32 (CPU default), f16, bf16
    int        block_size;          // tokens per KV block (16)
    int        max_batch_tokens;    // per-step token budget (prefill chunks + decodes)
    int        max_running;         // sequences decoding at once
    int        max_queue;           // waiting requests before submit answers EBUSY
    bool       prefix_cache;        // share full blocks across requests (default on)
};

struct gen_request {
    const int32_t *prompt;          // [n_prompt] token ids (copied by submit)
    int            n_prompt;
    int            max_tokens;      // generated tokens at most (> 0)
    struct sampling sampling;       // temperature, top-k/p, penalties, seed, logit bias
    const int32_t *stop_ids;        // extra stop token ids (EOS ids of the model always stop unless ignore_eos)
    int            n_stop_ids;
    bool           ignore_eos;
    int            n_logprobs;      // top log-probabilities to report per token (0 = none, -1: only chosen)
    const int32_t *msg_ends;        // positions where chat messages end (snapshot hints), ascending
    int            n_msg_ends;
    uint64_t       cache_salt;      // separates prefix caches (adapters, media, users who opt out)
};

struct token_event {
    int32_t            token;           // valid when has_token
    bool               has_token;
    float              logprob;         // of the chosen token, when requested
    struct token_logprob top[SAMPLER_MAX_TOP];       // top alternatives, n_top of them
    int                n_top;
    bool               done;            // last event of the stream
    enum finish_reason finish;          // when done
    enum status        error;           // when finish == FINISH_ERROR
    // counters, valid when done (and kept current otherwise)
    int                n_prompt;
    int                n_cached;        // prompt tokens served from the prefix cache
    int                n_generated;
    double             t_queued_s;      // submit -> admitted
    double             t_first_s;       // submit -> first token
    double             t_done_s;        // submit -> done
};

struct engine;
struct token_stream;

enum status engine_new(const struct engine_cfg *cfg, struct model *m, struct backend *be, struct engine **out);
void        engine_free(struct engine *e);
/* Runs the engine loop on a thread of its own until engine_stop. */
enum status engine_start(struct engine *e);
void        engine_stop(struct engine *e);
/* Thread-safe. On success *out must be released by the caller. ETOOLONG: prompt + 1 exceeds the
 * context or the whole cache; EBUSY: queue full; EINVAL: bad parameters. Logs nothing per request. */
enum status engine_submit(struct engine *e, const struct gen_request *req, struct token_stream **out);
/* Thread-safe; the request ends with FINISH_CANCELED at the next step and frees its blocks. */
void        engine_cancel(struct engine *e, struct token_stream *ts);
/* Waits up to timeout_ms (-1: forever) for the next event. ETIMEDOUT-like: returns EBUSY on timeout. */
enum status token_stream_next(struct token_stream *ts, struct token_event *ev, int timeout_ms);
void        token_stream_release(struct token_stream *ts);

/* One scheduler step (admit, schedule, forward, sample, emit). Returns false when idle. For tests
 * and single-threaded tools; engine_start runs this in a loop. */
bool        engine_step(struct engine *e);

struct engine_stats {
    int      n_running, n_waiting;
    int      kv_blocks_total, kv_blocks_used, kv_blocks_cached, kv_blocks_free;
    uint64_t prefix_lookups, prefix_hit_tokens, prompt_tokens, generated_tokens;
    uint64_t preemptions, steps;
    double   last_step_ms;
    int      last_step_tokens;
    double   last_progress_s;       // clock_now_s() of the last step that did work
};
void engine_get_stats(struct engine *e, struct engine_stats *out);   // thread-safe snapshot

#endif
