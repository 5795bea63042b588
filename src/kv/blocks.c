/* kv_blocks: refcounted KV blocks, free stack and LRU of cached blocks (see blocks.h).
 *
 * Design note. The free stack hands out the most recently freed block first (its memory is the
 * warmest). Cached blocks form a doubly linked list through two index arrays so that a prefix hit
 * can pull a block out of the middle in O(1); eviction takes the head (least recently released).
 */
#include "kv/blocks.h"

#include <stdlib.h>

#include "base/log.h"
#include "base/mem.h"

struct kv_blocks *kv_blocks_new(int n_blocks)
{
    CHECK(n_blocks > 0, "bad block count %d", n_blocks);
    // One allocation, zeroed: the struct, its four int32 arrays, then its two byte arrays.
    size_t n = (size_t)n_blocks;
    struct kv_blocks *kb = xcalloc(1, sizeof *kb + n * (4 * sizeof(int32_t) + 2));
    int32_t *i32 = (int32_t *)(kb + 1);
    kb->n_blocks = n_blocks;
    kb->refcnt = i32;
    kb->free_stack = i32 + n;
    kb->lru_prev = i32 + 2 * n;
    kb->lru_next = i32 + 3 * n;
    kb->state = (uint8_t *)(i32 + 4 * n);
    kb->keyed = kb->state + n;
    for (int i = 0; i < n_blocks; i++) {
        kb->free_stack[i] = n_blocks - 1 - i;   // block 0 handed out first
        kb->lru_prev[i] = kb->lru_next[i] = -1;
    }
    kb->n_free = n_blocks;
    kb->lru_head = kb->lru_tail = -1;
    return kb;
}

void kv_blocks_free(struct kv_blocks *kb) { free(kb); }

void kv_blocks_set_evict_hook(struct kv_blocks *kb, void (*fn)(void *, int32_t), void *ctx)
{
    kb->evict = fn;
    kb->evict_ctx = ctx;
}

static void lru_unlink(struct kv_blocks *kb, int32_t b)
{
    int32_t p = kb->lru_prev[b], n = kb->lru_next[b];
    if (p >= 0) kb->lru_next[p] = n; else kb->lru_head = n;
    if (n >= 0) kb->lru_prev[n] = p; else kb->lru_tail = p;
    kb->lru_prev[b] = kb->lru_next[b] = -1;
    kb->n_cached--;
}

static void lru_push_tail(struct kv_blocks *kb, int32_t b)
{
    kb->lru_prev[b] = kb->lru_tail;
    kb->lru_next[b] = -1;
    if (kb->lru_tail >= 0) kb->lru_next[kb->lru_tail] = b; else kb->lru_head = b;
    kb->lru_tail = b;
    kb->n_cached++;
}

int32_t kv_blocks_alloc(struct kv_blocks *kb)
{
    int32_t b;
    if (kb->n_free > 0) {
        b = kb->free_stack[--kb->n_free];
        CHECK(kb->state[b] == KV_BLOCK_FREE && kb->refcnt[b] == 0, "free block %d in state %d", b, kb->state[b]);
    } else if (kb->lru_head >= 0) {
        b = kb->lru_head;
        lru_unlink(kb, b);
        kb->state[b] = KV_BLOCK_USED;   // no longer CACHED while the hook runs
        if (kb->evict) kb->evict(kb->evict_ctx, b);   // the index forgets it (clears keyed)
        CHECK(!kb->keyed[b], "evicted block %d still keyed", b);
    } else {
        return -1;
    }
    kb->state[b] = KV_BLOCK_USED;
    kb->refcnt[b] = 1;
    return b;
}

void kv_blocks_retain(struct kv_blocks *kb, int32_t block)
{
    CHECK(block >= 0 && block < kb->n_blocks, "block %d out of range", block);
    if (kb->state[block] == KV_BLOCK_CACHED) {
        lru_unlink(kb, block);
        kb->state[block] = KV_BLOCK_USED;
    }
    CHECK(kb->state[block] == KV_BLOCK_USED, "retain of free block %d", block);
    kb->refcnt[block]++;
}

void kv_blocks_release(struct kv_blocks *kb, int32_t block)
{
    CHECK(block >= 0 && block < kb->n_blocks, "block %d out of range", block);
    CHECK(kb->state[block] == KV_BLOCK_USED && kb->refcnt[block] > 0, "release of unused block %d", block);
    if (--kb->refcnt[block] > 0) return;
    if (kb->keyed[block]) {
        kb->state[block] = KV_BLOCK_CACHED;
        lru_push_tail(kb, block);
    } else {
        kb->state[block] = KV_BLOCK_FREE;
        kb->free_stack[kb->n_free++] = block;
    }
}

void kv_blocks_set_keyed(struct kv_blocks *kb, int32_t block, bool keyed)
{
    CHECK(block >= 0 && block < kb->n_blocks, "block %d out of range", block);
    kb->keyed[block] = keyed;
    if (!keyed && kb->state[block] == KV_BLOCK_CACHED) {   // forgotten while cached: now free
        lru_unlink(kb, block);
        kb->state[block] = KV_BLOCK_FREE;
        kb->free_stack[kb->n_free++] = block;
    }
}

/* ==== Block tables ==== */

void kv_table_init(struct kv_table *t, int cap)
{
    CHECK(cap > 0, "bad block table capacity %d", cap);
    t->ids = xmalloc((size_t)cap * sizeof *t->ids);
    t->n = 0;
    t->cap = cap;
}

void kv_table_deinit(struct kv_table *t)
{
    CHECK(t->n == 0, "block table freed while holding %d blocks", t->n);
    free(t->ids);
    t->ids = NULL;
    t->cap = 0;
}

void kv_table_push(struct kv_table *t, int32_t block)
{
    CHECK(t->n < t->cap, "block table full (%d)", t->cap);
    t->ids[t->n++] = block;
}

enum status kv_table_grow(struct kv_blocks *kb, struct kv_table *t, int n_tokens, int block_size)
{
    int need = (n_tokens + block_size - 1) / block_size;
    CHECK(need <= t->cap, "sequence of %d tokens exceeds its table (%d blocks)", n_tokens, t->cap);
    while (t->n < need) {
        int32_t b = kv_blocks_alloc(kb);
        if (b < 0) return STATUS_ENOMEM;
        t->ids[t->n++] = b;
    }
    return STATUS_OK;
}

void kv_table_release(struct kv_blocks *kb, struct kv_table *t)
{
    while (t->n > 0) kv_blocks_release(kb, t->ids[--t->n]);
}
