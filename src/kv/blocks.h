/* kv_blocks: who owns which KV block: refcounts, a free list, the LRU of cached blocks, and the
 * per-sequence block tables built on them.
 *
 * A block is in one of three states:
 *   FREE    refcount 0, content meaningless, on the free stack;
 *   USED    refcount > 0 (one per sequence whose block table holds it; shared prefix blocks > 1);
 *   CACHED  refcount 0 but its content is indexed by the prefix cache (kv/prefix.h): kept in LRU
 *           order and handed out again only when the free stack is empty (the evict hook tells
 *           the prefix index first).
 * The storage itself is kv_pool's (kv/pool.h); this module only does the bookkeeping, on host.
 *
 * Threading: one thread only (the engine thread). Nothing allocates after kv_blocks_new.
 *
 *     struct kv_blocks *kb = kv_blocks_new(pool->n_blocks);
 *     struct kv_table t;  kv_table_init(&t, max_blocks_per_seq);
 *     if (kv_table_grow(kb, &t, n_tokens, 16) != STATUS_OK) ...preempt...;  kv_table_release(kb, &t);
 */
#ifndef CAIRN_KV_BLOCKS_H
#define CAIRN_KV_BLOCKS_H

#include <stdbool.h>
#include <stdint.h>

#include "base/status.h"

enum kv_block_state { KV_BLOCK_FREE = 0, KV_BLOCK_USED, KV_BLOCK_CACHED };

struct kv_blocks {   // the arrays live in the struct's own allocation (kv_blocks_new)
    int       n_blocks;
    int32_t  *refcnt;        // [n_blocks]
    uint8_t  *state;         // [n_blocks] enum kv_block_state
    uint8_t  *keyed;         // [n_blocks] 1: indexed by the prefix cache (goes to LRU at refcount 0)
    int32_t  *free_stack;    // [n_blocks]
    int       n_free;
    int32_t  *lru_prev;      // [n_blocks] LRU links of CACHED blocks (-1 = none)
    int32_t  *lru_next;      // [n_blocks]
    int32_t   lru_head;      // oldest cached block, evicted first (-1 = none)
    int32_t   lru_tail;      // newest
    int       n_cached;
    void    (*evict)(void *ctx, int32_t block);   // called before a CACHED block is reused
    void     *evict_ctx;
};

struct kv_blocks *kv_blocks_new(int n_blocks);
void              kv_blocks_free(struct kv_blocks *kb);
void              kv_blocks_set_evict_hook(struct kv_blocks *kb, void (*fn)(void *, int32_t), void *ctx);

/* A block with refcount 1: from the free stack, else the oldest CACHED block (evicted). -1: none. */
int32_t kv_blocks_alloc(struct kv_blocks *kb);
/* refcount++ (a CACHED block becomes USED again: a prefix hit). */
void    kv_blocks_retain(struct kv_blocks *kb, int32_t block);
/* refcount--; at 0 the block becomes CACHED if keyed, else FREE. */
void    kv_blocks_release(struct kv_blocks *kb, int32_t block);
/* The prefix index marks blocks it indexes (keyed = true) and forgets them (false). */
void    kv_blocks_set_keyed(struct kv_blocks *kb, int32_t block, bool keyed);

static inline int kv_blocks_n_free(const struct kv_blocks *kb) { return kb->n_free; }
static inline int kv_blocks_n_cached(const struct kv_blocks *kb) { return kb->n_cached; }
static inline int kv_blocks_n_used(const struct kv_blocks *kb) { return kb->n_blocks - kb->n_free - kb->n_cached; }
/* Blocks an allocation could get now: free + cached (evictable). */
static inline int kv_blocks_n_available(const struct kv_blocks *kb) { return kb->n_free + kb->n_cached; }

/* ==== Block tables ==== */

/* The block table of one sequence: ids[i] holds positions [i * block_size, (i + 1) * block_size). */
struct kv_table {
    int32_t *ids;            // [cap]
    int      n;              // blocks held
    int      cap;            // most blocks the sequence may hold
};

void        kv_table_init(struct kv_table *t, int cap);
void        kv_table_deinit(struct kv_table *t);   // the table must be released first
/* Appends an already retained block (a prefix hit). */
void        kv_table_push(struct kv_table *t, int32_t block);
/* Allocates blocks until the table covers n_tokens positions. ENOMEM (nothing logged) when the
 * pool runs dry; the blocks allocated so far stay in the table. */
enum status kv_table_grow(struct kv_blocks *kb, struct kv_table *t, int n_tokens, int block_size);
/* Releases every block, last first (so the deepest blocks of a chain are evicted first). */
void        kv_table_release(struct kv_blocks *kb, struct kv_table *t);

#endif
