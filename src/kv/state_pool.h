/* state_pool: the recurrent state of hybrid models (Gated DeltaNet layers), in slots.
 *
 * A slot holds one sequence's whole recurrent state: for every linear-attention layer its conv
 * state ((K-1) x conv_dim f32) and its delta-rule state (nv x dk x dv f32), i.e.
 * model_seq_state_bytes(hp, DTYPE_F32) bytes, in one backend buffer. The forward pass reads and
 * advances slot meta->seq_state_slot[s] of each sequence (backend.h, gdn ops); a sequence whose
 * step starts at position 0 needs no clearing (the ops start from zeros there). Who owns which
 * slot is the caller's: the runner keeps slot 0, the engine hands them out with alloc / release.
 * One thread (the engine's).
 *
 *     struct state_pool *sp;  state_pool_new(m, be, 8, &sp);
 *     int slot = state_pool_alloc(sp);          // -1 when all are taken
 *     forward_bind_states(fw, sp->layers, NULL);   ...   state_pool_release(sp, slot);
 */
#ifndef CAIRN_KV_STATE_POOL_H
#define CAIRN_KV_STATE_POOL_H

#include "backend/backend.h"
#include "model/model.h"

struct state_pool {
    int                     n_slots;
    int                     n_layers;      // model layers; entries of attention layers stay empty
    size_t                  bytes;         // total bytes of state storage
    struct gdn_state_layer *layers;        // [n_layers]
    int32_t                *free_slots;    // stack of free slot indices
    int                     n_free;
    struct buffer          *buf;           // owned, from the backend
    struct backend         *be;            // borrowed
};

/* Slots that fit in `bytes` for this model (0 for models without recurrent layers). */
int         state_pool_slots_for_bytes(const struct model *m, size_t bytes);
/* ENOMEM (logged) when the backend cannot hold n_slots slots. The model must have linear layers. */
enum status state_pool_new(const struct model *m, struct backend *be, int n_slots, struct state_pool **out);
void        state_pool_free(struct state_pool *p);
int         state_pool_alloc(struct state_pool *p);            // a free slot, or -1
void        state_pool_release(struct state_pool *p, int slot);
/* Bytes of one slot: model_seq_state_bytes(hp, DTYPE_F32). */
size_t      state_pool_slot_bytes(const struct state_pool *p);
/* Copies slot src_slot of src into slot dst_slot of dst (pools of one model on one backend), in the
 * backend's memory and queued like the compute ops (no host round trip): prefix-cache snapshots
 * (a pool of their own) and their restore. */
void        state_pool_copy(struct state_pool *dst, int dst_slot, const struct state_pool *src, int src_slot);

#endif
