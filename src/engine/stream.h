/* stream: the per-request token stream between the engine thread (producer) and a reader thread
 * (the server's connection, a CLI, a test). Internal to src/engine; the public side is
 * token_stream_next / token_stream_release in engine.h.
 *
 * All output storage is allocated at submit (stream_new), sized for max_tokens, so publishing a
 * token allocates nothing: the engine writes token i (and its log-probabilities) into the arrays and
 * bumps n_pub under the stream's mutex; the reader copies entries below n_pub. Entries are never
 * rewritten (a preempted request resumes after its last published token). Two references (the
 * engine's request and the reader); the last one frees. Cancel and finish requests from other
 * threads are atomic flags the engine polls each step.
 *
 *     struct token_stream *ts = stream_new(id, max_tokens, n_top, n_prompt, clock_now_s());
 *     stream_publish(ts, tok, lp, top, n_top, now);  stream_end(ts, FINISH_STOP_MATCHED, STATUS_OK, eos, now);
 *     stream_unref(ts);
 */
#ifndef CAIRN_ENGINE_STREAM_H
#define CAIRN_ENGINE_STREAM_H

#include <pthread.h>
#include <stdatomic.h>

#include "engine/engine.h"

struct token_stream {
    pthread_mutex_t       mu;
    pthread_cond_t        cv;
    int                   refs;          // under mu
    uint64_t              id;
    int                   cap;           // tokens the arrays hold (max_tokens)
    int32_t              *tok;           // [cap]
    float                *lp;            // [cap] or NULL (no logprobs requested)
    struct token_logprob *top;           // [cap * n_top] or NULL
    int                   n_top;         // alternatives per token
    // producer side (under mu)
    int                   n_pub;
    bool                  done;
    enum finish_reason    finish;
    enum status           error;
    int32_t               stop_token;
    int                   n_prompt, n_cached, n_generated;
    double                t_submit_s;    // clock_now_s() at submit
    double                t_queued_s, t_first_s, t_done_s;
    float                *embd;          // [n_embd] an embedding request's hidden state, written by the
    int                   n_embd;        //   engine before stream_end (FINISH_EMBEDDED); else NULL, 0
    // reader side
    int                   n_read;
    // requests from other threads, polled by the engine
    atomic_int            cancel;
    atomic_int            end_on_stop_string;   // a stop string matched (engine_end_on_stop_string)
};

struct token_stream *stream_new(uint64_t id, int cap, int n_logprobs, int n_prompt, double t_submit_s);
void stream_unref(struct token_stream *ts);
void stream_set_admitted(struct token_stream *ts, int n_cached, double now_s);   // first admission only
void stream_publish(struct token_stream *ts, int32_t tok, float lp, const struct token_logprob *top,
                    int n_top, double now_s);
/* Counts a generated token that is not published (a stop token). */
void stream_count_stop(struct token_stream *ts, int32_t tok, double now_s);
void stream_end(struct token_stream *ts, enum finish_reason why, enum status err, double now_s);
/* An embedding request's stream: room for its n floats (at submit). */
void stream_alloc_embedding(struct token_stream *ts, int n);

#endif
