/* state_pool: recurrent-state slots of hybrid models. See state_pool.h. */
#include "kv/state_pool.h"

#include <stdlib.h>

#include "base/log.h"
#include "base/mem.h"

int state_pool_slots_for_bytes(const struct model *m, size_t bytes)
{
    size_t per = model_seq_state_bytes(&m->hp, DTYPE_F32);
    if (!per) return 0;
    size_t n = bytes / per;
    return n > (size_t)INT32_MAX ? INT32_MAX : (int)n;
}

enum status state_pool_new(const struct model *m, struct backend *be, int n_slots, struct state_pool **out)
{
    const struct hparams *hp = &m->hp;
    CHECK(hp->n_linear_layers > 0 && n_slots > 0, "state pool of %d slots for %d linear layers", n_slots,
          hp->n_linear_layers);
    size_t conv = model_gdn_conv_state_bytes(hp, DTYPE_F32), ssm = model_gdn_ssm_state_bytes(hp);
    struct state_pool *p = xcalloc(1, sizeof *p);
    p->n_slots = n_slots;
    p->n_layers = hp->n_layers;
    p->be = be;
    p->bytes = (size_t)n_slots * (size_t)hp->n_linear_layers * (conv + ssm);
    enum status st = be->ops->buffer_new(be, p->bytes, &p->buf);
    if (st != STATUS_OK) {
        LOG_ERR("recurrent state: cannot allocate %zu bytes (%d slots of %zu bytes)", p->bytes, n_slots,
                model_seq_state_bytes(hp, DTYPE_F32));
        free(p);
        return st;
    }
    p->layers = xcalloc((size_t)hp->n_layers, sizeof *p->layers);
    size_t off = 0;
    for (int l = 0; l < hp->n_layers; l++) {
        if (!hp->layer_linear[l]) continue;
        p->layers[l].conv = tensor_2d(DTYPE_F32, (int64_t)(conv / 4), n_slots, p->buf, off);
        off += conv * (size_t)n_slots;
        p->layers[l].ssm = tensor_2d(DTYPE_F32, (int64_t)(ssm / 4), n_slots, p->buf, off);
        off += ssm * (size_t)n_slots;
        p->layers[l].conv.name = "state.conv";
        p->layers[l].ssm.name = "state.ssm";
    }
    CHECK(off == p->bytes, "state pool layout");
    p->free_slots = xmalloc(sizeof *p->free_slots * (size_t)n_slots);
    for (int i = 0; i < n_slots; i++) p->free_slots[i] = n_slots - 1 - i;   // slot 0 handed out first
    p->n_free = n_slots;
    *out = p;
    return STATUS_OK;
}

void state_pool_free(struct state_pool *p)
{
    if (!p) return;
    p->be->ops->buffer_free(p->be, p->buf);
    free(p->layers);
    free(p->free_slots);
    free(p);
}

int state_pool_alloc(struct state_pool *p)
{
    return p->n_free > 0 ? p->free_slots[--p->n_free] : -1;
}

void state_pool_release(struct state_pool *p, int slot)
{
    CHECK(slot >= 0 && slot < p->n_slots && p->n_free < p->n_slots, "release of state slot %d", slot);
    for (int i = 0; i < p->n_free; i++) CHECK(p->free_slots[i] != slot, "state slot %d released twice", slot);
    p->free_slots[p->n_free++] = slot;
}

size_t state_pool_slot_bytes(const struct state_pool *p) { return p->bytes / (size_t)p->n_slots; }

void state_pool_copy(struct state_pool *dst, int dst_slot, const struct state_pool *src, int src_slot)
{
    CHECK(dst_slot >= 0 && dst_slot < dst->n_slots && src_slot >= 0 && src_slot < src->n_slots && dst->be == src->be &&
          dst->n_layers == src->n_layers, "state copy from slot %d to slot %d", src_slot, dst_slot);
    struct backend *be = dst->be;
    for (int l = 0; l < dst->n_layers; l++) {
        if (!dst->layers[l].conv.buf) continue;
        struct tensor dc = tensor_rows_view(&dst->layers[l].conv, dst_slot, 1);
        struct tensor ds = tensor_rows_view(&dst->layers[l].ssm, dst_slot, 1);
        struct tensor sc = tensor_rows_view(&src->layers[l].conv, src_slot, 1);
        struct tensor ss = tensor_rows_view(&src->layers[l].ssm, src_slot, 1);
        be->ops->copy(be, &dc, &sc, tensor_bytes(&sc));
        be->ops->copy(be, &ds, &ss, tensor_bytes(&ss));
    }
}
