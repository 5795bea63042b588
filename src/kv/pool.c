#include "kv/pool.h"

#include <stdlib.h>

#include "base/log.h"
#include "base/mem.h"

static size_t layer_row_bytes(const struct model *m, enum dtype dt)
{
    return (size_t)m->hp.n_kv_heads * (size_t)m->hp.head_dim * dtype_size(dt);
}

int kv_pool_blocks_for_bytes(const struct model *m, enum dtype dt, int block_size, size_t bytes)
{
    size_t per_block = 2 * (size_t)(m->hp.n_layers - m->hp.n_linear_layers) * layer_row_bytes(m, dt) * (size_t)block_size;
    size_t n = bytes / per_block;
    return n > (size_t)INT32_MAX ? INT32_MAX : (int)n;
}

enum status kv_pool_new(const struct model *m, struct backend *be, enum dtype dt, int block_size,
                        int n_blocks, struct kv_pool **out)
{
    CHECK(dt == DTYPE_F32 || dt == DTYPE_F16 || dt == DTYPE_BF16 || dt == DTYPE_F8E4M3, "bad kv dtype %s",
          dtype_name(dt));
    CHECK(block_size > 0 && n_blocks > 0, "bad kv pool shape %d x %d", n_blocks, block_size);
    struct kv_pool *p = xcalloc(1, sizeof *p);
    p->n_layers = m->hp.n_layers;
    p->block_size = block_size;
    p->n_blocks = n_blocks;
    p->dtype = dt;
    p->be = be;
    size_t n_slots = (size_t)n_blocks * (size_t)block_size;
    size_t plane = n_slots * layer_row_bytes(m, dt);
    p->bytes = plane * 2 * (size_t)(p->n_layers - m->hp.n_linear_layers);   // Gated DeltaNet layers keep no KV
    enum status st = be->ops->buffer_new(be, p->bytes, &p->buf);
    if (st != STATUS_OK) {
        LOG_ERR("kv cache: cannot allocate %zu bytes (%d blocks of %d tokens)", p->bytes, n_blocks, block_size);
        free(p);
        return st;
    }
    p->layers = xcalloc((size_t)p->n_layers, sizeof *p->layers);
    int64_t row = (int64_t)m->hp.n_kv_heads * m->hp.head_dim;
    for (int l = 0, a = 0; l < p->n_layers; l++) {
        if (m->hp.layer_linear[l]) continue;   // empty k, v
        p->layers[l].k = tensor_2d(dt, row, (int64_t)n_slots, p->buf, (size_t)(2 * a) * plane);
        p->layers[l].v = tensor_2d(dt, row, (int64_t)n_slots, p->buf, (size_t)(2 * a + 1) * plane);
        a++;
        p->layers[l].k.name = "kv.k";
        p->layers[l].v.name = "kv.v";
    }
    *out = p;
    return STATUS_OK;
}

void kv_pool_free(struct kv_pool *p)
{
    if (!p) return;
    p->be->ops->buffer_free(p->be, p->buf);
    free(p->layers);
    free(p);
}
