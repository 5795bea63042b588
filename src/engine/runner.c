#include "engine/runner.h"

#include <stdlib.h>

#include "base/log.h"
#include "base/mem.h"
#include "kv/pool.h"
#include "kv/state_pool.h"
#include "model/forward.h"

struct runner {
    struct model   *m;
    struct backend *be;
    struct forward *fw;
    struct kv_pool *kv;
    struct state_pool *states;    // hybrid models: one recurrent-state slot (slot 0), else NULL
    int32_t         state_slot;
    int             max_ctx;
    int             chunk;
    int             pos;          // tokens already in the cache
    // the arrays live in the runner's own allocation (runner_new)
    int32_t        *block_ids;    // [n_blocks]: block i holds positions [i*bs, (i+1)*bs)
    int32_t         seq_block0[2];
    int32_t        *tok_pos, *tok_seq, *out_tok;   // [chunk]
    int64_t        *tok_slot;                      // [chunk]
};

enum status runner_new(struct model *m, struct backend *be, int max_ctx, int chunk, enum dtype kv_dtype,
                       struct runner **out)
{
    CHECK(max_ctx > 0 && chunk > 0, "bad runner sizes");
    if (!model_has_lm_head(m)) {
        LOG_ERR("%s has no lm_head (a base model saved without it): it computes embeddings only "
                "(cairn serve --runner pooling)", m->dir ? m->dir : "the model");
        return STATUS_EUNSUPPORTED;
    }
    int bs = KV_BLOCK_SIZE_DEFAULT;
    int n_blocks = (max_ctx + bs - 1) / bs;
    // One allocation, zeroed: the struct, then its batch arrays (the int64 one first).
    size_t n_tok = (size_t)chunk;
    struct runner *r = xcalloc(1, sizeof *r + n_tok * sizeof(int64_t) + (3 * n_tok + (size_t)n_blocks) * sizeof(int32_t));
    r->tok_slot = (int64_t *)(r + 1);
    r->tok_pos = (int32_t *)(r->tok_slot + n_tok);
    r->tok_seq = r->tok_pos + n_tok;
    r->out_tok = r->tok_seq + n_tok;
    r->block_ids = r->out_tok + n_tok;
    r->m = m;
    r->be = be;
    r->max_ctx = max_ctx;
    r->chunk = chunk;
    enum status st = kv_pool_new(m, be, kv_dtype, bs, n_blocks, &r->kv);
    if (st != STATUS_OK) goto out_free;
    st = forward_new(m, be, chunk, chunk, &r->fw);
    if (st != STATUS_OK) goto out_free_kv;
    if (m->hp.n_linear_layers > 0) {
        if ((st = state_pool_new(m, be, 1, &r->states)) != STATUS_OK) goto out_free_fw;
        r->state_slot = state_pool_alloc(r->states);
        forward_bind_states(r->fw, r->states->layers, NULL);
    }
    for (int i = 0; i < n_blocks; i++) r->block_ids[i] = i;
    r->seq_block0[0] = 0;
    r->seq_block0[1] = n_blocks;
    *out = r;
    return STATUS_OK;

out_free_fw:
    forward_free(r->fw);
out_free_kv:
    kv_pool_free(r->kv);
out_free:
    free(r);
    return st;
}

void runner_free(struct runner *r)
{
    if (!r) return;
    forward_free(r->fw);
    state_pool_free(r->states);
    kv_pool_free(r->kv);
    free(r);
}

int  runner_pos(const struct runner *r) { return r->pos; }
void runner_reset(struct runner *r) { r->pos = 0; }

enum status runner_feed(struct runner *r, const int32_t *ids, int n, float *logits, bool all_rows)
{
    if (n <= 0) return STATUS_EINVAL;
    if (r->pos + n > r->max_ctx) {
        LOG_ERR("sequence of %d tokens exceeds the context of %d", r->pos + n, r->max_ctx);
        return STATUS_ETOOLONG;
    }
    size_t vocab = (size_t)r->m->hp.n_vocab;
    for (int done = 0; done < n;) {
        int c = n - done < r->chunk ? n - done : r->chunk;
        bool last_chunk = done + c == n;
        int n_out = all_rows ? c : last_chunk ? 1 : 0;
        for (int i = 0; i < c; i++) {
            int p = r->pos + i;
            r->tok_pos[i] = p;
            r->tok_slot[i] = (int64_t)r->block_ids[p / r->kv->block_size] * r->kv->block_size + p % r->kv->block_size;
            r->out_tok[i] = all_rows ? i : c - 1;
        }
        int32_t seq_len = r->pos + c;
        struct batch_meta meta = {
            .n_tok = c, .tok_id = ids + done, .tok_pos = r->tok_pos, .tok_seq = r->tok_seq,
            .tok_slot = r->tok_slot, .n_seq = 1, .seq_len = &seq_len, .seq_block0 = r->seq_block0,
            .block_ids = r->block_ids, .n_out = n_out, .out_tok = r->out_tok, .block_size = r->kv->block_size,
            .seq_state_slot = r->states ? &r->state_slot : NULL,   // its state restarts at position 0
        };
        struct tensor lg;
        forward_step(r->fw, r->kv->layers, &meta, &lg);
        if (n_out > 0) {
            float *dst = all_rows ? logits + (size_t)done * vocab : logits;
            r->be->ops->download(r->be, dst, &lg, sizeof(float) * vocab * (size_t)n_out);
        }
        enum status st = r->be->ops->sync(r->be);
        if (st != STATUS_OK) return st;
        r->pos += c;
        done += c;
    }
    return STATUS_OK;
}

struct forward *runner_forward(struct runner *r) { return r->fw; }
