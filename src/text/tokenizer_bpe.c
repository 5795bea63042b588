/* tokenizer_bpe: the BPE model of tokenizer.json: vocabulary, merges (both the "a b" string and
 * the ["a", "b"] pair formats), ignore_merges, byte_fallback, unk_token with fuse_unk,
 * continuing_subword_prefix and end_of_word_suffix, and a thread-safe word cache.
 *
 * A word is split into its initial symbols (UTF-8 chars, or bytes for byte-level tokenizers),
 * then the lowest-ranked adjacent pair is merged repeatedly, ties to the leftmost, using a binary
 * heap of candidate merges with lazy invalidation (the algorithm of HF's `Word::merge_all`):
 * O(n log n) in the word length. Results of words up to TK_CACHE_MAX_WORD bytes are kept in a
 * direct-mapped cache whose slots are guarded by striped mutexes, so encoders on many threads
 * share it.
 *
 *     tk_bpe_load(json_object_get(root, "model"), byte_level, &bl, &bpe);
 *     tk_bpe_word(&bpe, "hello", 5, &ids, &n_ids, &cap);   // appends
 */
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "text/tokenizer_internal.h"

/* Key of a vocab string: raw bytes in byte-level mode when every char is in the GPT-2 alphabet. */
static void vocab_key(const struct tk_bytelevel *bl, bool byte_level, const char *s, size_t n, struct strbuf *out)
{
    strbuf_clear(out);
    if (byte_level) {
        for (size_t i = 0; i < n;) {
            int k = tk_utf8_valid_len((const unsigned char *)s + i, n - i);
            if (!k) goto verbatim;
            int kk;
            uint32_t cp = tk_utf8_decode(s + i, &kk);
            if (cp >= 512 || bl->cp_to_byte[cp] < 0) goto verbatim;
            strbuf_putc(out, (char)bl->cp_to_byte[cp]);
            i += (size_t)k;
        }
        if (!out->data) strbuf_append(out, "", 0);
        return;
    }
verbatim:
    strbuf_clear(out);
    strbuf_append(out, s, n);
    if (!out->data) strbuf_append(out, "", 0);
}

static void merges_put(struct tk_bpe *b, int32_t l, int32_t r, int32_t rank, int32_t new_id)
{
    uint64_t key = (((uint64_t)(uint32_t)l << 32) | (uint32_t)r) + 1;
    uint32_t mask = b->merges_cap - 1;
    for (uint32_t i = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & mask;; i = (i + 1) & mask) {
        if (b->merges[i].pair == key) return;   // first (lowest rank) wins, as in HF
        if (!b->merges[i].pair) {
            b->merges[i].pair = key;
            b->merges[i].rank = rank;
            b->merges[i].new_id = new_id;
            return;
        }
    }
}

static inline const struct tk_merge_ent *merges_get(const struct tk_bpe *b, int32_t l, int32_t r)
{
    uint64_t key = (((uint64_t)(uint32_t)l << 32) | (uint32_t)r) + 1;
    uint32_t mask = b->merges_cap - 1;
    for (uint32_t i = (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & mask;; i = (i + 1) & mask) {
        if (b->merges[i].pair == key) return &b->merges[i];
        if (!b->merges[i].pair) return NULL;
    }
}

static int32_t lookup(const struct tk_bpe *b, const struct tk_bytelevel *bl, const char *s, size_t n, struct strbuf *key);

int32_t tk_bpe_lookup(const struct tk_bpe *b, const struct tk_bytelevel *bl, const char *s, size_t n)
{
    struct strbuf key = {0};
    int32_t id = lookup(b, bl, s, n, &key);
    strbuf_free(&key);
    return id;
}

static int32_t lookup(const struct tk_bpe *b, const struct tk_bytelevel *bl, const char *s, size_t n, struct strbuf *key)
{
    vocab_key(bl, b->byte_level, s, n, key);
    int32_t id;
    return tk_map_get(&b->vocab, key->data, (uint32_t)key->len, &id) ? id : -1;
}

static char *opt_str(json_t *j)
{
    const char *s = json_string_value(j);
    return s && *s ? xstrdup(s) : NULL;
}

enum status tk_bpe_load(json_t *model, bool byte_level, const struct tk_bytelevel *bl, struct tk_bpe *b)
{
    memset(b, 0, sizeof *b);
    b->unk_id = -1;
    for (int i = 0; i < TK_CACHE_LOCKS; i++) pthread_mutex_init(&b->locks[i], NULL);
    b->cache = xcalloc(TK_CACHE_SLOTS, sizeof *b->cache);
    const char *type = json_string_value(json_object_get(model, "type"));
    json_t *vocab = json_object_get(model, "vocab");
    if (type && strcmp(type, "BPE")) {
        LOG_ERR("tokenizer: model type '%s' is not supported (BPE only)", type);
        return STATUS_EUNSUPPORTED;
    }
    if (!json_is_object(vocab)) { LOG_ERR("tokenizer: model.vocab is not an object"); return STATUS_EFORMAT; }
    b->byte_level = byte_level;
    b->byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    b->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    b->fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
    b->cont_prefix = opt_str(json_object_get(model, "continuing_subword_prefix"));
    b->eow_suffix = opt_str(json_object_get(model, "end_of_word_suffix"));

    const char *k;
    json_t *v;
    int32_t max_id = -1;
    json_object_foreach(vocab, k, v) {
        json_int_t id = json_integer_value(v);
        if (!json_is_integer(v) || id < 0 || id > 16 * 1024 * 1024) {
            LOG_ERR("tokenizer: vocab entry '%.40s' has a bad id", k);
            return STATUS_EFORMAT;
        }
        if (id > max_id) max_id = (int32_t)id;
    }
    b->n_vocab = (int)json_object_size(vocab);
    b->n_ids = max_id + 1;
    b->tok = xcalloc((size_t)b->n_ids + 1, sizeof *b->tok);
    b->tok_len = xcalloc((size_t)b->n_ids + 1, sizeof *b->tok_len);
    b->raw = xcalloc((size_t)b->n_ids + 1, sizeof *b->raw);
    tk_map_init(&b->vocab, (uint32_t)b->n_vocab);
    struct strbuf key = {0};
    json_object_foreach(vocab, k, v) {
        int32_t id = (int32_t)json_integer_value(v);
        size_t len = strlen(k);
        if (b->tok[id]) continue;   // duplicate id: keep the first
        b->tok[id] = xstrndup(k, len);
        b->tok_len[id] = (uint32_t)len;
        vocab_key(bl, byte_level, k, len, &key);
        b->raw[id] = xstrndup(key.data, key.len);
        tk_map_put(&b->vocab, b->raw[id], (uint32_t)key.len, id);
    }
    for (int i = 0; i < 256; i++) {
        char c = (char)i, name[8];
        b->byte_id[i] = -1;
        if (byte_level && !tk_map_get(&b->vocab, &c, 1, &b->byte_id[i])) b->byte_id[i] = -1;
        snprintf(name, sizeof name, "<0x%02X>", i);
        b->fallback_id[i] = lookup(b, bl, name, 6, &key);
    }
    const char *unk = json_string_value(json_object_get(model, "unk_token"));
    if (unk) {
        b->unk_id = lookup(b, bl, unk, strlen(unk), &key);
        if (b->unk_id < 0) LOG_WARN("tokenizer: unk_token '%s' is not in the vocabulary", unk);
    }

    json_t *merges = json_object_get(model, "merges");
    size_t n_merges = json_is_array(merges) ? json_array_size(merges) : 0;
    b->merges_cap = 16;
    while (b->merges_cap < n_merges * 2 + 16) b->merges_cap <<= 1;
    b->merges = xcalloc(b->merges_cap, sizeof *b->merges);
    struct strbuf cat = {0};
    int n_bad = 0;
    for (size_t r = 0; r < n_merges; r++) {
        json_t *m = json_array_get(merges, r);
        const char *a, *c;
        size_t la, lc;
        if (json_is_string(m)) {
            a = json_string_value(m);
            const char *sp = strchr(a, ' ');
            if (!sp) { n_bad++; continue; }
            la = (size_t)(sp - a);
            c = sp + 1;
            lc = strlen(c);
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            la = json_string_length(json_array_get(m, 0));
            c = json_string_value(json_array_get(m, 1));
            lc = json_string_length(json_array_get(m, 1));
        } else {
            n_bad++;
            continue;
        }
        int32_t ia = lookup(b, bl, a, la, &key), ic = lookup(b, bl, c, lc, &key);
        // HF builds the merged token as a + c minus the length of continuing_subword_prefix.
        size_t plen = b->cont_prefix ? strlen(b->cont_prefix) : 0;
        strbuf_clear(&cat);
        strbuf_append(&cat, a, la);
        if (lc >= plen) strbuf_append(&cat, c + plen, lc - plen);
        int32_t inew = lookup(b, bl, cat.data, cat.len, &key);
        if (ia < 0 || ic < 0 || inew < 0) { n_bad++; continue; }
        merges_put(b, ia, ic, (int32_t)r, inew);
    }
    if (n_bad) LOG_WARN("tokenizer: %d merges skipped (malformed or tokens not in the vocabulary)", n_bad);
    strbuf_free(&cat);
    strbuf_free(&key);
    return STATUS_OK;
}

void tk_bpe_free(struct tk_bpe *b)
{
    if (b->tok)
        for (int i = 0; i < b->n_ids; i++) { free(b->tok[i]); free(b->raw[i]); }
    free(b->tok);
    free(b->tok_len);
    free(b->raw);
    tk_map_free(&b->vocab);
    free(b->merges);
    if (b->cache) {
        for (int i = 0; i < TK_CACHE_SLOTS; i++) { free(b->cache[i].key); free(b->cache[i].ids); }
        free(b->cache);
        for (int i = 0; i < TK_CACHE_LOCKS; i++) pthread_mutex_destroy(&b->locks[i]);
    }
    free(b->cont_prefix);
    free(b->eow_suffix);
    memset(b, 0, sizeof *b);
}

/* ==== Encoding one word ==== */

struct sym {
    int32_t id;
    int32_t prev, next;
    int32_t len;   // bytes; 0 once merged into its left neighbour
};
struct cand {
    int32_t rank, pos, new_id;
};

static inline bool cand_less(const struct cand *x, const struct cand *y)
{
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static void heap_push(struct cand *h, int *n, struct cand c)
{
    int i = (*n)++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!cand_less(&c, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
}

static struct cand heap_pop(struct cand *h, int *n)
{
    struct cand top = h[0], last = h[--(*n)];
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        const struct cand *best = &last;
        if (l < *n && cand_less(&h[l], best)) { m = l; best = &h[l]; }
        if (r < *n && cand_less(&h[r], best)) m = r;
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    if (*n > 0) h[i] = last;
    return top;
}

static void out_push(int32_t **ids, int *n, int *cap, int32_t id)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *ids = xrealloc(*ids, (size_t)*cap * sizeof **ids);
    }
    (*ids)[(*n)++] = id;
}

static void sym_add(struct sym **s, int *n, int *cap, int32_t id, int32_t len)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *s = xrealloc(*s, (size_t)*cap * sizeof **s);
    }
    (*s)[*n] = (struct sym){ id, *n - 1, *n + 1, len };
    (*n)++;
}

/* Initial symbols of a word for non-byte-level models (HF merge_word). */
static void initial_symbols(const struct tk_bpe *b, const char *w, size_t n, struct sym **s, int *ns, int *cap)
{
    struct strbuf tmp = {0};
    int32_t unk_len = -1;   // pending unk run, -1 if none
    for (size_t i = 0; i < n;) {
        int k = tk_utf8_valid_len((const unsigned char *)w + i, n - i);
        if (!k) k = 1;
        bool first = i == 0, last = i + (size_t)k == n;
        const char *c = w + i;
        size_t cl = (size_t)k;
        if ((!first && b->cont_prefix) || (last && b->eow_suffix)) {
            strbuf_clear(&tmp);
            if (!first && b->cont_prefix) strbuf_puts(&tmp, b->cont_prefix);
            strbuf_append(&tmp, c, cl);
            if (last && b->eow_suffix) strbuf_puts(&tmp, b->eow_suffix);
            c = tmp.data;
            cl = tmp.len;
        }
        int32_t id;
        if (tk_map_get(&b->vocab, c, (uint32_t)cl, &id)) {
            if (unk_len >= 0) { sym_add(s, ns, cap, b->unk_id, unk_len); unk_len = -1; }
            sym_add(s, ns, cap, id, k);
        } else {
            bool done = false;
            if (b->byte_fallback) {
                done = true;
                for (size_t j = 0; j < cl; j++)
                    if (b->fallback_id[(unsigned char)c[j]] < 0) done = false;
                if (done)
                    for (size_t j = 0; j < cl; j++) sym_add(s, ns, cap, b->fallback_id[(unsigned char)c[j]], 1);
            }
            if (!done && b->unk_id >= 0) {
                if (unk_len >= 0 && b->fuse_unk) unk_len += k;
                else {
                    if (unk_len >= 0) sym_add(s, ns, cap, b->unk_id, unk_len);
                    unk_len = k;
                }
            }
        }
        i += (size_t)k;
    }
    if (unk_len >= 0) sym_add(s, ns, cap, b->unk_id, unk_len);
    strbuf_free(&tmp);
}

static void bpe_merge(const struct tk_bpe *b, const char *w, size_t n, int32_t **ids, int *n_ids, int *cap)
{
    struct sym stack_syms[128];
    struct cand stack_heap[128];
    struct sym *s = stack_syms;
    int ns = 0;
    struct sym *heap_syms = NULL;
    if (b->byte_level) {
        if (n > 128) { heap_syms = xmalloc(n * sizeof *heap_syms); s = heap_syms; }
        for (size_t i = 0; i < n; i++) {
            int32_t id = b->byte_id[(unsigned char)w[i]];
            if (id < 0) id = b->unk_id;
            if (id < 0) continue;   // no token and no unk: dropped, as HF does
            s[ns] = (struct sym){ id, ns - 1, ns + 1, 1 };
            ns++;
        }
    } else {
        int c0 = 0;
        struct sym *dyn = NULL;
        initial_symbols(b, w, n, &dyn, &ns, &c0);
        heap_syms = dyn;
        s = dyn;
    }
    if (ns > 0) s[ns - 1].next = -1;
    struct cand *h = ns <= 128 ? stack_heap : xmalloc((size_t)ns * 2 * sizeof *h);
    int hn = 0;
    for (int i = 0; i + 1 < ns; i++) {
        const struct tk_merge_ent *m = merges_get(b, s[i].id, s[i + 1].id);
        if (m) heap_push(h, &hn, (struct cand){ m->rank, i, m->new_id });
    }
    int hcap = ns <= 128 ? 128 : ns * 2;
    while (hn > 0) {
        struct cand top = heap_pop(h, &hn);
        struct sym *cur = &s[top.pos];
        if (cur->len == 0 || cur->next < 0) continue;
        struct sym right = s[cur->next];
        const struct tk_merge_ent *m = merges_get(b, cur->id, right.id);
        if (!m || m->new_id != top.new_id) continue;
        s[cur->next].len = 0;
        cur->id = top.new_id;
        cur->len += right.len;
        cur->next = right.next;
        if (right.next >= 0) s[right.next].prev = top.pos;
        if (hn + 2 > hcap) {   // each merge adds at most two candidates
            struct cand *nh = xmalloc((size_t)hcap * 2 * sizeof *nh);
            memcpy(nh, h, (size_t)hn * sizeof *h);
            if (h != stack_heap) free(h);
            h = nh;
            hcap *= 2;
        }
        if (cur->prev >= 0) {
            const struct tk_merge_ent *pm = merges_get(b, s[cur->prev].id, cur->id);
            if (pm) heap_push(h, &hn, (struct cand){ pm->rank, cur->prev, pm->new_id });
        }
        if (cur->next >= 0) {
            const struct tk_merge_ent *nm = merges_get(b, cur->id, s[cur->next].id);
            if (nm) heap_push(h, &hn, (struct cand){ nm->rank, top.pos, nm->new_id });
        }
    }
    for (int i = 0; i < ns; i++)
        if (s[i].len) out_push(ids, n_ids, cap, s[i].id);
    if (h != stack_heap) free(h);
    free(heap_syms);
}

void tk_bpe_word(struct tk_bpe *b, const char *w, size_t n, int32_t **ids, int *n_ids, int *cap)
{
    if (n == 0) return;
    int32_t id;
    if (b->ignore_merges && tk_map_get(&b->vocab, w, (uint32_t)n, &id)) {
        out_push(ids, n_ids, cap, id);
        return;
    }
    uint32_t h = 0;
    struct tk_cache_ent *e = NULL;
    pthread_mutex_t *lock = NULL;
    if (n <= TK_CACHE_MAX_WORD) {
        h = tk_hash(w, n);
        e = &b->cache[h & (TK_CACHE_SLOTS - 1)];
        // Slots map to locks by slot index so that one lock always guards a given slot.
        lock = &b->locks[(h & (TK_CACHE_SLOTS - 1)) & (TK_CACHE_LOCKS - 1)];
        pthread_mutex_lock(lock);
        if (e->key && e->hash == h && e->len == n && !memcmp(e->key, w, n)) {
            for (int i = 0; i < e->n_ids; i++) out_push(ids, n_ids, cap, e->ids[i]);
            pthread_mutex_unlock(lock);
            return;
        }
        pthread_mutex_unlock(lock);
    }
    int start = *n_ids;
    bpe_merge(b, w, n, ids, n_ids, cap);
    if (e) {
        int k = *n_ids - start;
        char *key = xmalloc(n);
        memcpy(key, w, n);
        int32_t *cp = xmalloc((size_t)(k > 0 ? k : 1) * sizeof *cp);
        if (k > 0) memcpy(cp, *ids + start, (size_t)k * sizeof *cp);
        pthread_mutex_lock(lock);
        free(e->key);
        free(e->ids);
        e->key = key;
        e->len = (uint32_t)n;
        e->hash = h;
        e->ids = cp;
        e->n_ids = k;
        pthread_mutex_unlock(lock);
    }
}
