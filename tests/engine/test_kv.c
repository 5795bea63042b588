/* test_kv: block allocator (refcounts, free list, LRU of cached blocks, block tables) and the prefix
 * index (hash chains, salts, collision safety, eviction, snapshots with a fake state size). */
#include <stdint.h>
#include <string.h>

#include "base/log.h"
#include "base/rng.h"
#include "harness.h"
#include "kv/blocks.h"
#include "kv/prefix.h"

#define BS 4

static int counts_ok(const struct kv_blocks *kb)
{
    return kv_blocks_n_free(kb) + kv_blocks_n_cached(kb) + kv_blocks_n_used(kb) == kb->n_blocks &&
           kv_blocks_n_free(kb) >= 0 && kv_blocks_n_cached(kb) >= 0 && kv_blocks_n_used(kb) >= 0;
}

TEST(alloc_release_refcount)
{
    struct kv_blocks *kb = kv_blocks_new(4);
    int32_t b[4];
    for (int i = 0; i < 4; i++) b[i] = kv_blocks_alloc(kb);
    EXPECT(b[0] == 0 && b[1] == 1 && b[2] == 2 && b[3] == 3);
    EXPECT(kv_blocks_alloc(kb) == -1);
    EXPECT(kv_blocks_n_used(kb) == 4 && kv_blocks_n_free(kb) == 0);
    kv_blocks_retain(kb, b[2]);
    kv_blocks_release(kb, b[2]);
    EXPECT(kv_blocks_n_used(kb) == 4);
    kv_blocks_release(kb, b[2]);
    EXPECT(kv_blocks_n_free(kb) == 1);
    EXPECT(kv_blocks_alloc(kb) == b[2]);
    for (int i = 0; i < 4; i++) kv_blocks_release(kb, b[i]);
    EXPECT(kv_blocks_n_free(kb) == 4 && counts_ok(kb));
    kv_blocks_free(kb);
}

static int g_evicted[16], g_n_evicted;
static void record_evict(void *ctx, int32_t b)
{
    g_evicted[g_n_evicted++] = b;
    kv_blocks_set_keyed(ctx, b, false);
}

TEST(cached_blocks_lru_eviction)
{
    struct kv_blocks *kb = kv_blocks_new(3);
    kv_blocks_set_evict_hook(kb, record_evict, kb);
    g_n_evicted = 0;
    int32_t a = kv_blocks_alloc(kb), b = kv_blocks_alloc(kb), c = kv_blocks_alloc(kb);
    kv_blocks_set_keyed(kb, a, true);
    kv_blocks_set_keyed(kb, b, true);
    kv_blocks_release(kb, b);   // cached first: oldest
    kv_blocks_release(kb, a);
    kv_blocks_release(kb, c);   // not keyed: free
    EXPECT(kv_blocks_n_cached(kb) == 2 && kv_blocks_n_free(kb) == 1 && counts_ok(kb));
    EXPECT(kv_blocks_alloc(kb) == c);        // free stack before eviction
    kv_blocks_retain(kb, b);                 // a hit pulls b out of the LRU
    EXPECT(kv_blocks_n_cached(kb) == 1 && kb->refcnt[b] == 1);
    EXPECT(kv_blocks_alloc(kb) == a);        // evicts a
    EXPECT(g_n_evicted == 1 && g_evicted[0] == a);
    EXPECT(kv_blocks_alloc(kb) == -1);
    EXPECT(counts_ok(kb));
    kv_blocks_free(kb);
}

TEST(block_table_grow_release)
{
    struct kv_blocks *kb = kv_blocks_new(5);
    struct kv_table t;
    kv_table_init(&t, 8);
    EXPECT(kv_table_grow(kb, &t, 9, BS) == STATUS_OK && t.n == 3);
    EXPECT(kv_table_grow(kb, &t, 12, BS) == STATUS_OK && t.n == 3);
    EXPECT(kv_table_grow(kb, &t, 30, BS) == STATUS_ENOMEM && t.n == 5);
    kv_table_release(kb, &t);
    EXPECT(t.n == 0 && kv_blocks_n_free(kb) == 5);
    kv_table_deinit(&t);
    kv_blocks_free(kb);
}

/* Builds and indexes the full blocks of tok in a fresh table, as the engine does after compute. */
static void index_seq(struct kv_blocks *kb, struct kv_prefix *px, struct kv_table *t, uint64_t salt,
                      const int32_t *tok, int n)
{
    CHECK(kv_table_grow(kb, t, n, BS) == STATUS_OK, "pool too small");
    uint64_t parent = salt;
    for (int i = 0; i < n / BS; i++) {
        uint64_t k = kv_prefix_key(parent, tok + i * BS, BS);
        kv_prefix_insert(px, t->ids[i], parent, k, tok + i * BS);
        parent = k;
    }
}

TEST(prefix_share_and_cache)
{
    struct kv_blocks *kb = kv_blocks_new(16);
    struct kv_prefix *px = kv_prefix_new(kb, BS, 0);
    int32_t tok[14];
    for (int i = 0; i < 14; i++) tok[i] = 100 + i;
    struct kv_table t1, t2;
    kv_table_init(&t1, 8);
    kv_table_init(&t2, 8);
    index_seq(kb, px, &t1, 7, tok, 14);   // 3 full blocks + 1 partial
    EXPECT(kv_prefix_n_indexed(px) == 3);

    int32_t hit[8];
    uint64_t keys[8];
    int32_t other[14];
    memcpy(other, tok, sizeof other);
    other[9] = 5;   // differs in block 2
    EXPECT(kv_prefix_lookup(px, 7, other, 14, 8, hit, keys) == 2);
    EXPECT(hit[0] == t1.ids[0] && hit[1] == t1.ids[1]);
    EXPECT(kv_prefix_lookup(px, 8, tok, 14, 8, hit, keys) == 0);        // another salt
    EXPECT(kv_prefix_lookup(px, 7, tok, 14, 2, hit, keys) == 2);        // max_blocks
    EXPECT(kv_prefix_lookup(px, 7, tok + 4, 10, 8, hit, keys) == 0);    // not from the root
    EXPECT(kv_prefix_lookup(px, 7, tok, 14, 8, hit, keys) == 3);
    for (int i = 0; i < 3; i++) { kv_blocks_retain(kb, hit[i]); kv_table_push(&t2, hit[i]); }
    EXPECT(kb->refcnt[hit[0]] == 2);

    kv_table_release(kb, &t1);   // shared blocks stay used; the partial block is freed
    EXPECT(kv_blocks_n_used(kb) == 3 && kv_blocks_n_cached(kb) == 0);
    kv_table_release(kb, &t2);   // now cached, still found
    EXPECT(kv_blocks_n_cached(kb) == 3 && kv_blocks_n_used(kb) == 0 && counts_ok(kb));
    EXPECT(kv_prefix_lookup(px, 7, tok, 14, 8, hit, keys) == 3);

    // memory pressure evicts the deepest block first (released first), then the others
    struct kv_table big;
    kv_table_init(&big, 16);
    EXPECT(kv_table_grow(kb, &big, 14 * BS, BS) == STATUS_OK);   // 13 free + 1 evicted
    EXPECT(kv_prefix_n_indexed(px) == 2);
    EXPECT(kv_prefix_lookup(px, 7, tok, 14, 8, hit, keys) == 2);
    EXPECT(kv_table_grow(kb, &big, 16 * BS, BS) == STATUS_OK);
    EXPECT(kv_prefix_n_indexed(px) == 0 && kv_blocks_n_cached(kb) == 0);
    EXPECT(kv_prefix_lookup(px, 7, tok, 14, 8, hit, keys) == 0);
    kv_table_release(kb, &big);
    EXPECT(kv_blocks_n_free(kb) == 16 && counts_ok(kb));
    kv_table_deinit(&big);
    kv_table_deinit(&t1);
    kv_table_deinit(&t2);
    kv_prefix_free(px);
    kv_blocks_free(kb);
}

TEST(prefix_collision_is_a_miss)
{
    struct kv_blocks *kb = kv_blocks_new(4);
    struct kv_prefix *px = kv_prefix_new(kb, BS, 0);
    int32_t a[BS] = { 1, 2, 3, 4 }, b[BS] = { 9, 9, 9, 9 };
    int32_t blk = kv_blocks_alloc(kb);
    // pretend b's content hashed to a's key (a collision)
    EXPECT(kv_prefix_insert(px, blk, 0, kv_prefix_key(0, a, BS), b));
    int32_t hit[2];
    uint64_t keys[2];
    EXPECT(kv_prefix_lookup(px, 0, a, BS, 2, hit, keys) == 0);
    // the same key cannot be indexed twice
    int32_t blk2 = kv_blocks_alloc(kb);
    EXPECT(!kv_prefix_insert(px, blk2, 0, kv_prefix_key(0, a, BS), a));
    // a parent mismatch is a miss too
    int32_t blk3 = kv_blocks_alloc(kb);
    EXPECT(kv_prefix_insert(px, blk3, 12345, kv_prefix_key(0, b, BS), b));
    EXPECT(kv_prefix_lookup(px, 0, b, BS, 2, hit, keys) == 0);
    kv_blocks_release(kb, blk);
    kv_blocks_release(kb, blk2);
    kv_blocks_release(kb, blk3);
    EXPECT(kv_blocks_n_cached(kb) == 2 && kv_blocks_n_free(kb) == 2);
    kv_prefix_free(px);
    kv_blocks_free(kb);
}

TEST(snapshots_slots_and_tags)
{
    struct kv_blocks *kb = kv_blocks_new(12);
    struct kv_prefix *px = kv_prefix_new(kb, BS, 2);
    int32_t tok[5 * BS];
    for (int i = 0; i < 5 * BS; i++) tok[i] = i * 3 + 1;
    struct kv_table t;
    kv_table_init(&t, 8);
    index_seq(kb, px, &t, 1, tok, 5 * BS);
    // message ends at positions 2*BS+1 and 5*BS: snapshots at the block-aligned ends 2*BS and 5*BS
    int s1 = kv_prefix_snap_hold(px), s4 = kv_prefix_snap_hold(px);
    EXPECT(s1 >= 0 && s1 < 2 && s4 >= 0 && s4 < 2 && s1 != s4);
    EXPECT(kv_prefix_snap_hold(px) == -1);   // both held: nothing to evict
    EXPECT(kv_prefix_n_snaps_used(px) == 0 && !kv_prefix_snap_has(px, t.ids[1]));   // held is nobody's yet
    EXPECT(kv_prefix_snap_attach(px, s1, t.ids[1], 0xa1) && kv_prefix_snap_attach(px, s4, t.ids[4], 0xb2));
    int32_t hit[8];
    uint64_t keys[8], tag = 0;
    int n = kv_prefix_lookup(px, 1, tok, 5 * BS, 8, hit, keys);
    EXPECT(n == 5 && kv_prefix_snap_depth(px, hit, n) == 5);
    EXPECT(kv_prefix_snap_depth(px, hit, 4) == 2);   // a request diverging in block 4 resumes at 2*BS
    EXPECT(kv_prefix_snap_get(px, hit[1], &tag) == s1 && tag == 0xa1);
    EXPECT(kv_prefix_snap_get(px, hit[0], &tag) == -1);
    // a third snapshot evicts the least recently used one (block 4's: block 1's was just read) and
    // takes its slot
    int s2 = kv_prefix_snap_hold(px);
    EXPECT(s2 == s4 && kv_prefix_n_snaps_used(px) == 1 && !kv_prefix_snap_has(px, t.ids[4]));
    EXPECT(kv_prefix_snap_attach(px, s2, t.ids[2], 0xc3));
    EXPECT(kv_prefix_n_snaps_used(px) == 2);
    EXPECT(!kv_prefix_snap_has(px, t.ids[4]) && kv_prefix_snap_has(px, t.ids[1]));
    EXPECT(kv_prefix_snap_get(px, t.ids[4], &tag) == -1 && kv_prefix_snap_get(px, t.ids[2], &tag) == s4 && tag == 0xc3);
    EXPECT(kv_prefix_snap_depth(px, hit, 5) == 3);
    // a block's newer snapshot replaces its older one; a released slot is free again
    int s5 = kv_prefix_snap_hold(px);   // the LRU: block 1's
    EXPECT(s5 == s1 && kv_prefix_snap_attach(px, s5, t.ids[1], 0xa5));
    EXPECT(kv_prefix_snap_get(px, t.ids[1], &tag) == s1 && tag == 0xa5 && kv_prefix_n_snaps_used(px) == 2);
    int s6 = kv_prefix_snap_hold(px);
    kv_prefix_snap_release(px, s6);
    EXPECT(kv_prefix_n_snaps_used(px) == 1);   // its snapshot was evicted by the hold, the slot is free
    // a block's eviction drops its snapshot; an unindexed block takes none
    kv_table_release(kb, &t);
    struct kv_table big;
    kv_table_init(&big, 12);
    EXPECT(kv_table_grow(kb, &big, 12 * BS, BS) == STATUS_OK);
    EXPECT(kv_prefix_n_snaps_used(px) == 0 && kv_prefix_n_indexed(px) == 0);
    int s7 = kv_prefix_snap_hold(px);
    EXPECT(s7 >= 0 && !kv_prefix_snap_attach(px, s7, big.ids[0], 0xd4) && kv_prefix_n_snaps_used(px) == 0);
    int s8 = kv_prefix_snap_hold(px), s9 = kv_prefix_snap_hold(px);   // s7's slot was freed: both slots again
    EXPECT(s8 >= 0 && s9 >= 0 && s8 != s9);
    kv_prefix_snap_release(px, s8);
    kv_prefix_snap_release(px, s9);
    kv_table_release(kb, &big);
    kv_table_deinit(&big);
    kv_table_deinit(&t);
    kv_prefix_free(px);
    kv_blocks_free(kb);
}

/* Random tables sharing random prefixes: the counts always add up and every block goes back. */
TEST(random_stress)
{
    enum { NB = 64, NS = 6, CAP = 32 };
    struct kv_blocks *kb = kv_blocks_new(NB);
    struct kv_prefix *px = kv_prefix_new(kb, BS, 4);
    struct kv_table t[NS];
    for (int i = 0; i < NS; i++) kv_table_init(&t[i], CAP);
    struct rng r;
    rng_seed(&r, 5);
    int32_t tok[CAP * BS];
    int bad = 0;
    for (int it = 0; it < 3000; it++) {
        int s = (int)(rng_next(&r) % NS);
        kv_table_release(kb, &t[s]);
        int n = 1 + (int)(rng_next(&r) % (CAP * BS / 4));
        int variant = (int)(rng_next(&r) % 3);
        for (int i = 0; i < n; i++) tok[i] = i < 2 * BS ? i : (int32_t)(i * 7 + variant);
        int32_t hit[CAP];
        uint64_t keys[CAP];
        int h = kv_prefix_lookup(px, 3, tok, n, CAP, hit, keys);
        for (int i = 0; i < h; i++) {
            kv_blocks_retain(kb, hit[i]);
            kv_table_push(&t[s], hit[i]);
        }
        if (kv_table_grow(kb, &t[s], n, BS) != STATUS_OK) { kv_table_release(kb, &t[s]); continue; }
        uint64_t parent = h ? keys[h - 1] : 3;
        for (int i = h; i < n / BS; i++) {
            uint64_t k = kv_prefix_key(parent, tok + i * BS, BS);
            kv_prefix_insert(px, t[s].ids[i], parent, k, tok + i * BS);
            parent = k;
        }
        if (n / BS > 0) {
            int snap = kv_prefix_snap_hold(px);
            if (snap < 0 || snap >= 4) bad++;
            else kv_prefix_snap_attach(px, snap, t[s].ids[n / BS - 1], (uint64_t)it);   // false: indexed elsewhere
        }
        if (!counts_ok(kb)) bad++;
    }
    EXPECT(bad == 0);
    for (int i = 0; i < NS; i++) { kv_table_release(kb, &t[i]); kv_table_deinit(&t[i]); }
    EXPECT(kv_blocks_n_used(kb) == 0 && kv_blocks_n_free(kb) + kv_blocks_n_cached(kb) == NB);
    EXPECT(kv_prefix_n_indexed(px) == kv_blocks_n_cached(kb));
    kv_prefix_free(px);
    kv_blocks_free(kb);
}

int main(void)
{
    RUN(alloc_release_refcount);
    RUN(cached_blocks_lru_eviction);
    RUN(block_table_grow_release);
    RUN(prefix_share_and_cache);
    RUN(prefix_collision_is_a_miss);
    RUN(snapshots_slots_and_tags);
    RUN(random_stress);
    return test_summary();
}
