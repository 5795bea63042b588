/* kv_prefix: the prefix cache: an index from token-prefix hashes to full KV blocks, plus
 * snapshots of fixed-size per-sequence (recurrent) state at block-aligned positions.
 *
 * Every FULL block of a sequence is keyed by a hash chain:
 *     key(0) = H(salt;      tokens[0, bs))           H = XXH3_64 with the parent as seed
 *     key(i) = H(key(i-1);  tokens[i*bs, (i+1)*bs))
 * The salt separates caches that must not mix (model, adapter, media, a request's cache_salt).
 * The index keeps, per block, its key, its parent key and its token ids, and a lookup verifies
 * both on every hit, walking from the root: since the index holds one block per key, a verified
 * chain is an exact match of the whole prefix, so a hash collision can cost a miss, never wrong KV.
 * Indexed blocks stay in the index while used and while CACHED (refcount 0, LRU in kv_blocks);
 * when kv_blocks reuses a cached block, its evict hook removes it here (and drops its snapshot).
 *
 * Snapshots (hybrid models: Gated DeltaNet / Mamba layers keep a fixed-size state per sequence):
 * a snapshot attached to block i is the state after positions [0, (i + 1) * bs), i.e. at the end
 * of that block. This index keeps which of n_snaps snapshot slots belongs to which block, with
 * the caller's 64-bit tag of its content; the state itself lives in the caller's store, slot for
 * slot (the engine's: a state pool in the backend's memory). Slots are evicted least recently
 * used; a block's eviction frees its snapshot. A hybrid model resumes from the deepest
 * matched block that has a snapshot (kv_prefix_snap_depth); the engine places snapshots at the
 * block-aligned ends of chat messages (gen_request.msg_ends) and of prompts.
 *
 * Threading: the engine thread only. Nothing allocates after kv_prefix_new.
 *
 *     uint64_t keys[64];  int32_t hit[64];
 *     int n = kv_prefix_lookup(px, salt, tok, n_tok, 64, hit, keys);   // then kv_blocks_retain each
 *     kv_prefix_insert(px, block, parent_key, kv_prefix_key(parent_key, tok + i * bs, bs), tok + i * bs);
 */
#ifndef CAIRN_KV_PREFIX_H
#define CAIRN_KV_PREFIX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kv/blocks.h"

struct kv_prefix;

/* kb: the allocator whose blocks are indexed (its evict hook is taken). n_snaps: snapshot slots
 * (0 without recurrent state). */
struct kv_prefix *kv_prefix_new(struct kv_blocks *kb, int block_size, int n_snaps);
void              kv_prefix_free(struct kv_prefix *px);

/* The chain key of a block of block_size tokens whose parent key is `parent` (the salt for the first). */
uint64_t kv_prefix_key(uint64_t parent, const int32_t *tok, int block_size);

/* Matches the full blocks of tok[0, n_tok) from the root, at most max_blocks: writes the blocks and
 * their keys and returns how many matched. Does not retain them (the caller does, if it uses them). */
int  kv_prefix_lookup(struct kv_prefix *px, uint64_t salt, const int32_t *tok, int n_tok, int max_blocks,
                      int32_t *blocks, uint64_t *keys);
/* Indexes a full, computed block. False (nothing changes) if the key is already indexed. */
bool kv_prefix_insert(struct kv_prefix *px, int32_t block, uint64_t parent, uint64_t key, const int32_t *tok);
int  kv_prefix_n_indexed(const struct kv_prefix *px);

/* ==== Snapshots ==== */

/* Taking a snapshot: hold a slot, write the state there, then attach it to its block once the
 * block is indexed (or release it). A held slot is nobody's snapshot: gets and evictions skip it.
 * kv_prefix_snap_hold: a slot for a snapshot about to be written, a free one, else the least
 * recently used snapshot's (evicted); -1 if snapshots are off or every slot is held. */
int  kv_prefix_snap_hold(struct kv_prefix *px);
/* Makes held slot the snapshot at the end of block, tagged tag (replacing the block's previous
 * one). False, and the slot is free again, if the block is not indexed. */
bool kv_prefix_snap_attach(struct kv_prefix *px, int slot, int32_t block, uint64_t tag);
/* Frees a held slot (its snapshot was not taken). */
void kv_prefix_snap_release(struct kv_prefix *px, int slot);
/* The slot of the snapshot at the end of block, with its tag (a use, for LRU); -1 if none. */
int  kv_prefix_snap_get(struct kv_prefix *px, int32_t block, uint64_t *tag);
bool kv_prefix_snap_has(const struct kv_prefix *px, int32_t block);
/* The largest d <= n such that blocks[d - 1] has a snapshot (0: none): resume at d * block_size. */
int  kv_prefix_snap_depth(const struct kv_prefix *px, const int32_t *blocks, int n);
int  kv_prefix_n_snaps_used(const struct kv_prefix *px);

#endif
