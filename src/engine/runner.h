/* runner: one sequence through the model, step by step, without the scheduler.
 *
 * The command-line tools (`cairn logits`, `cairn run`) and the model reference tests need the
 * simplest possible path: feed token ids, get logits, feed the next token. The runner owns a small
 * paged KV pool with one block table and a forward context; it goes through exactly the same
 * forward pass and backend ops as the batching engine. Single-threaded.
 *
 *     struct runner *r;  runner_new(m, be, 4096, 64, DTYPE_F32, &r);
 *     runner_feed(r, ids, n, logits, false);     // logits[n_vocab] of the last token
 *     runner_free(r);
 */
#ifndef CAIRN_ENGINE_RUNNER_H
#define CAIRN_ENGINE_RUNNER_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"
#include "model/model.h"

struct runner;

/* max_ctx: tokens the sequence may reach; chunk: tokens per forward step. */
enum status runner_new(struct model *m, struct backend *be, int max_ctx, int chunk, enum dtype kv_dtype,
                       struct runner **out);
void        runner_free(struct runner *r);
/* Appends n tokens. all_rows: logits receives [n, n_vocab] (every position), else [n_vocab] of the
 * last token. ETOOLONG if the context would exceed max_ctx. */
enum status runner_feed(struct runner *r, const int32_t *ids, int n, float *logits, bool all_rows);
int         runner_pos(const struct runner *r);   // tokens in the sequence so far
void        runner_reset(struct runner *r);       // empties the sequence
/* The runner's forward pass (borrowed): a rank's runner binds its collective here
 * (forward_bind_collective) before the first feed. */
struct forward *runner_forward(struct runner *r);

#endif
