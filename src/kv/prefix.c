/* kv_prefix: hash-chain index of full KV blocks and the snapshot store (see prefix.h).
 *
 * Design note. The index is an open-addressing table of block ids (linear probing, at most half
 * full: capacity is the power of two >= 2 * n_blocks), keyed by the block's chain key; deletion
 * shifts back the following run, so there are no tombstones and a lookup stays short however long
 * the server runs. Token ids of every indexed block are kept (4 bytes x block_size per block) so a
 * hit is verified exactly, not trusted to the hash.
 */
#include "kv/prefix.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "base/log.h"
#include "base/mem.h"

struct kv_prefix {
    struct kv_blocks *kb;
    int               block_size;
    int               n_blocks;
    uint64_t         *key;        // [n_blocks] chain key of an indexed block
    uint64_t         *parent;     // [n_blocks] its parent's key (the salt for a first block)
    int32_t          *tok;        // [n_blocks * block_size] its token ids
    uint8_t          *indexed;    // [n_blocks]
    int               n_indexed;
    int32_t          *slots;      // [cap] block id or -1
    uint32_t          mask;       // cap - 1
    // snapshots (their state lives in the caller's store, slot for slot)
    int               n_snaps;
    uint64_t         *snap_tag;   // [n_snaps] the caller's tag of what the slot holds
    int32_t          *snap_block; // [n_snaps] block it belongs to, SNAP_FREE or SNAP_HELD
    uint64_t         *snap_tick;  // [n_snaps] last use
    int32_t          *block_snap; // [n_blocks] its snapshot slot, -1 = none
    uint64_t          tick;
    int               n_snaps_used;
};

enum { SNAP_FREE = -1, SNAP_HELD = -2 };   // snap_block of a slot that holds no block's snapshot

uint64_t kv_prefix_key(uint64_t parent, const int32_t *tok, int block_size)
{
    return XXH3_64bits_withSeed(tok, (size_t)block_size * sizeof *tok, parent);
}

static void on_evict(void *ctx, int32_t block);

struct kv_prefix *kv_prefix_new(struct kv_blocks *kb, int block_size, int n_snaps)
{
    CHECK(block_size > 0, "bad block size %d", block_size);
    struct kv_prefix *px = xcalloc(1, sizeof *px);
    size_t n = (size_t)kb->n_blocks;
    px->kb = kb;
    px->block_size = block_size;
    px->n_blocks = kb->n_blocks;
    px->key = xcalloc(n, sizeof *px->key);
    px->parent = xcalloc(n, sizeof *px->parent);
    px->tok = xcalloc(n * (size_t)block_size, sizeof *px->tok);
    px->indexed = xcalloc(n, 1);
    uint32_t cap = 16;
    while (cap < 2 * n) cap <<= 1;
    px->mask = cap - 1;
    px->slots = xmalloc((size_t)cap * sizeof *px->slots);
    memset(px->slots, 0xff, (size_t)cap * sizeof *px->slots);
    px->block_snap = xmalloc(n * sizeof *px->block_snap);
    memset(px->block_snap, 0xff, n * sizeof *px->block_snap);
    if (n_snaps > 0) {
        px->n_snaps = n_snaps;
        px->snap_tag = xcalloc((size_t)n_snaps, sizeof *px->snap_tag);
        px->snap_block = xmalloc((size_t)n_snaps * sizeof *px->snap_block);
        memset(px->snap_block, 0xff, (size_t)n_snaps * sizeof *px->snap_block);
        px->snap_tick = xcalloc((size_t)n_snaps, sizeof *px->snap_tick);
    }
    kv_blocks_set_evict_hook(kb, on_evict, px);
    return px;
}

void kv_prefix_free(struct kv_prefix *px)
{
    if (!px) return;
    kv_blocks_set_evict_hook(px->kb, NULL, NULL);
    free(px->key);
    free(px->parent);
    free(px->tok);
    free(px->indexed);
    free(px->slots);
    free(px->block_snap);
    free(px->snap_tag);
    free(px->snap_block);
    free(px->snap_tick);
    free(px);
}

int kv_prefix_n_indexed(const struct kv_prefix *px) { return px->n_indexed; }

/* ==== Hash table ==== */

static uint32_t home(const struct kv_prefix *px, uint64_t key) { return (uint32_t)(key ^ (key >> 32)) & px->mask; }

/* Slot holding key, or -1. */
static int64_t find_slot(const struct kv_prefix *px, uint64_t key)
{
    for (uint32_t i = home(px, key);; i = (i + 1) & px->mask) {
        int32_t b = px->slots[i];
        if (b < 0) return -1;
        if (px->key[b] == key) return i;
    }
}

static void remove_slot(struct kv_prefix *px, uint32_t i)
{
    // backward-shift deletion: move later entries of the run into the hole when their home allows
    px->slots[i] = -1;
    for (uint32_t j = (i + 1) & px->mask;; j = (j + 1) & px->mask) {
        int32_t b = px->slots[j];
        if (b < 0) return;
        uint32_t h = home(px, px->key[b]);
        // can b move to i? only if i lies cyclically in [h, j)
        bool movable = i <= j ? (h <= i || h > j) : (h <= i && h > j);
        if (movable) {
            px->slots[i] = b;
            px->slots[j] = -1;
            i = j;
        }
    }
}

static void snap_drop(struct kv_prefix *px, int32_t block)
{
    int32_t s = px->block_snap[block];
    if (s < 0) return;
    px->snap_block[s] = SNAP_FREE;
    px->block_snap[block] = -1;
    px->n_snaps_used--;
}

static void on_evict(void *ctx, int32_t block)
{
    struct kv_prefix *px = ctx;
    CHECK(px->indexed[block], "evicting block %d the index does not hold", block);
    int64_t i = find_slot(px, px->key[block]);
    CHECK(i >= 0 && px->slots[i] == block, "index lost block %d", block);
    remove_slot(px, (uint32_t)i);
    snap_drop(px, block);
    px->indexed[block] = 0;
    px->n_indexed--;
    kv_blocks_set_keyed(px->kb, block, false);
}

bool kv_prefix_insert(struct kv_prefix *px, int32_t block, uint64_t parent, uint64_t key, const int32_t *tok)
{
    CHECK(block >= 0 && block < px->n_blocks, "block %d out of range", block);
    CHECK(!px->indexed[block], "block %d indexed twice", block);
    uint32_t i = home(px, key);
    for (;; i = (i + 1) & px->mask) {
        int32_t b = px->slots[i];
        if (b < 0) break;
        if (px->key[b] == key) return false;
    }
    px->slots[i] = block;
    px->key[block] = key;
    px->parent[block] = parent;
    memcpy(px->tok + (size_t)block * (size_t)px->block_size, tok, (size_t)px->block_size * sizeof *tok);
    px->indexed[block] = 1;
    px->n_indexed++;
    kv_blocks_set_keyed(px->kb, block, true);
    return true;
}

int kv_prefix_lookup(struct kv_prefix *px, uint64_t salt, const int32_t *tok, int n_tok, int max_blocks,
                     int32_t *blocks, uint64_t *keys)
{
    int bs = px->block_size;
    int n_full = n_tok / bs;
    if (n_full > max_blocks) n_full = max_blocks;
    uint64_t parent = salt;
    int i = 0;
    for (; i < n_full; i++) {
        const int32_t *t = tok + (size_t)i * (size_t)bs;
        uint64_t k = kv_prefix_key(parent, t, bs);
        int64_t s = find_slot(px, k);
        if (s < 0) break;
        int32_t b = px->slots[s];
        if (px->parent[b] != parent || memcmp(px->tok + (size_t)b * (size_t)bs, t, (size_t)bs * sizeof *t) != 0)
            break;   // a hash collision: treat as a miss
        blocks[i] = b;
        keys[i] = k;
        parent = k;
    }
    return i;
}

/* ==== Snapshots ==== */

int    kv_prefix_n_snaps_used(const struct kv_prefix *px) { return px->n_snaps_used; }

bool kv_prefix_snap_has(const struct kv_prefix *px, int32_t block)
{
    return block >= 0 && block < px->n_blocks && px->block_snap[block] >= 0;
}

int kv_prefix_snap_hold(struct kv_prefix *px)
{
    int32_t s = -1, lru = -1;
    for (int i = 0; i < px->n_snaps; i++) {
        if (px->snap_block[i] == SNAP_FREE) { s = i; break; }
        if (px->snap_block[i] >= 0 && (lru < 0 || px->snap_tick[i] < px->snap_tick[lru])) lru = i;
    }
    if (s < 0 && lru < 0) return -1;   // none, or every slot held
    if (s < 0) {
        s = lru;
        snap_drop(px, px->snap_block[s]);
    }
    px->snap_block[s] = SNAP_HELD;
    return s;
}

bool kv_prefix_snap_attach(struct kv_prefix *px, int slot, int32_t block, uint64_t tag)
{
    CHECK(slot >= 0 && slot < px->n_snaps && px->snap_block[slot] == SNAP_HELD, "snapshot slot %d is not held", slot);
    if (block < 0 || block >= px->n_blocks || !px->indexed[block]) {
        px->snap_block[slot] = SNAP_FREE;
        return false;
    }
    snap_drop(px, block);   // a newer snapshot of the same block replaces it
    px->snap_block[slot] = block;
    px->block_snap[block] = slot;
    px->n_snaps_used++;
    px->snap_tag[slot] = tag;
    px->snap_tick[slot] = ++px->tick;
    return true;
}

void kv_prefix_snap_release(struct kv_prefix *px, int slot)
{
    CHECK(slot >= 0 && slot < px->n_snaps && px->snap_block[slot] == SNAP_HELD, "snapshot slot %d is not held", slot);
    px->snap_block[slot] = SNAP_FREE;
}

int kv_prefix_snap_get(struct kv_prefix *px, int32_t block, uint64_t *tag)
{
    if (!kv_prefix_snap_has(px, block)) return -1;
    int32_t s = px->block_snap[block];
    *tag = px->snap_tag[s];
    px->snap_tick[s] = ++px->tick;
    return s;
}

int kv_prefix_snap_depth(const struct kv_prefix *px, const int32_t *blocks, int n)
{
    for (int d = n; d > 0; d--)
        if (kv_prefix_snap_has(px, blocks[d - 1])) return d;
    return 0;
}
