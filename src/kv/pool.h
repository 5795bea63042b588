/* kv_pool: the paged KV storage of one model on one backend.
 *
 * The pool is n_blocks blocks of block_size token slots for every layer, K and V, in one backend
 * buffer. Slot s of a layer is row s of its k and v tensors ([n_slots, n_kv_heads * head_dim]).
 * Gated DeltaNet layers of hybrid models keep no KV: their entries stay empty (kv/state_pool.h).
 * Which sequence owns which block is decided above (kv/blocks.h); this module only owns memory.
 *
 *     struct kv_pool *p;  kv_pool_new(m, be, DTYPE_F32, 16, kv_pool_blocks_for_bytes(m, DTYPE_F32, 16, 1 << 30), &p);
 *     forward_step(fw, p->layers, &meta, &logits);
 */
#ifndef CAIRN_KV_POOL_H
#define CAIRN_KV_POOL_H

#include "backend/backend.h"
#include "model/model.h"

#define KV_BLOCK_SIZE_DEFAULT 16

struct kv_pool {
    int              n_layers;
    int              block_size;     // tokens per block
    int              n_blocks;
    enum dtype       dtype;          // f32, f16 or bf16
    size_t           bytes;          // total bytes of K and V storage
    struct kv_layer *layers;         // [n_layers]
    struct buffer   *buf;            // owned, from the backend
    struct backend  *be;             // borrowed
};

/* Number of blocks that fit in `bytes` for this model (at least 0). */
int         kv_pool_blocks_for_bytes(const struct model *m, enum dtype dt, int block_size, size_t bytes);
enum status kv_pool_new(const struct model *m, struct backend *be, enum dtype dt, int block_size,
                        int n_blocks, struct kv_pool **out);
void        kv_pool_free(struct kv_pool *p);

#endif
