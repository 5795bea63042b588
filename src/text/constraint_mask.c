/* constraint_mask: the vocabulary as byte strings in a trie, and the per-sequence matcher that
 * turns its state into a token mask.
 *
 * The trie is stored in preorder: node i has a byte, a depth and the index just past its subtree
 * (skip), and the tokens whose bytes end there. A mask is one pass over that array: each node
 * steps the matcher state of its parent by its byte; a dead state skips the whole subtree. Since
 * the matcher memoizes transitions per state, the pass is mostly table lookups, and the mask of a
 * state seen before (the inside of a JSON string, a digit loop) is cached whole: a memcpy.
 *
 * Budget rule: with tokens_left, a token is allowed only if the shortest completion after it (in
 * bytes) fits in tokens_left - 1. Since every byte has a single-byte token in a byte-level
 * vocabulary, the shortest completion can always be emitted one byte per token, so a state that
 * satisfies dist <= tokens_left always has an allowed token (or may end), and the output closes
 * before the budget runs out.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "base/log.h"
#include "text/constraint_int.h"
#include "text/tokenizer.h"

#define PDA_BYTES_MAX        ((size_t)256 << 20)   // matcher memory per sequence
#define MASK_CACHE_BYTES_MAX ((size_t)16 << 20)    // cached masks per sequence (~850 at 151K ids)

/* Tokens' byte strings in a trie, laid out in preorder. */
struct vocab_trie {
    uint32_t  n_nodes;
    uint8_t  *byte;
    uint16_t *depth;        // 1 for children of the root
    uint32_t *skip;         // first node after this subtree
    uint32_t *tok;          // first index into ids of the tokens ending here
    uint32_t *ntok;
    int32_t  *ids;          // token ids in byte order
};

struct constraint_vocab {
    int       n_ids;
    uint32_t *tok_off;      // [n_ids + 1] byte offsets into blob; a special token has length 0
    uint8_t  *blob;
    bool     *is_stop;      // [n_ids]
    int32_t  *stop_ids;
    int       n_stop;
    struct vocab_trie all;      // every token with bytes
    struct vocab_trie rest;     // the tokens that are not plain
    uint32_t *plain;            // [mask words] tokens made of 1..64 whole plain string characters
    uint32_t  plain_off[66];    // plain_ids[plain_off[k] .. plain_off[k + 1]): the plain tokens of k characters
    int32_t  *plain_ids;
    int       max_depth;
    bool      all_bytes;    // every byte value is a token by itself
    uint64_t  hash;         // of what a mask depends on (token bytes, stop ids): idle matchers match by it
};

struct constraint {
    const struct constraint_grammar *cg;
    const struct constraint_vocab   *v;
    uint64_t   v_hash;      // v->hash: an idle matcher's v may be gone, a vocabulary equal to it may come
    struct pda pda;
    uint32_t   state;
    uint32_t   start;
    bool       finished;
    uint32_t  *walk;        // [max_depth + 1] states along the trie path
    size_t     mask_cache_bytes;
};

/* ==== Token bytes ==== */

/* GPT-2's byte <-> unicode alphabet: printable Latin-1 bytes map to themselves, the rest to 256+. */
static void bytelevel_table(int32_t cp_to_byte[512])
{
    for (int i = 0; i < 512; i++) cp_to_byte[i] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        cp_to_byte[printable ? b : 256 + extra++] = b;
    }
}

/* Reverse byte-level mapping of a vocabulary string; false if a char is outside the alphabet. */
static bool bytelevel_reverse(const int32_t *cp_to_byte, const char *s, struct strbuf *out)
{
    const uint8_t *u = (const uint8_t *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int len;
        if (u[i] < 0x80) { cp = u[i]; len = 1; }
        else if ((u[i] >> 5) == 6 && i + 1 < n) { cp = ((u[i] & 0x1F) << 6) | (u[i + 1] & 0x3F); len = 2; }
        else return false;
        if (cp >= 512 || cp_to_byte[cp] < 0) return false;
        char b = (char)cp_to_byte[cp];
        strbuf_append(out, &b, 1);
        i += len;
    }
    return true;
}

/* The bytes a token adds to the output. Byte-level vocabularies: the decoded text, except where a
 * token is a piece of a UTF-8 character (decoding alone would give U+FFFD): then the reversed
 * alphabet. SentencePiece: "▁" is a space and <0xHH> a byte. */
static void token_bytes(const struct tokenizer *tk, bool byte_level, const int32_t *cp_to_byte, int32_t id,
                        struct strbuf *out)
{
    const char *s = tokenizer_token_str(tk, id);
    if (!s) return;
    size_t dec_len = 0;
    char *dec = tokenizer_decode_n(tk, &id, 1, false, &dec_len);
    bool lossy = dec && memmem(dec, dec_len, "\xEF\xBF\xBD", 3) && !strstr(s, "\xEF\xBF\xBD");
    if (byte_level) {
        struct strbuf rev = {0};
        if (lossy && bytelevel_reverse(cp_to_byte, s, &rev)) strbuf_append(out, rev.data, rev.len);
        else if (dec) strbuf_append(out, dec, dec_len);
        strbuf_free(&rev);
    } else {
        unsigned hx;
        if (strlen(s) == 6 && sscanf(s, "<0x%2X>", &hx) == 1) {
            char b = (char)hx;
            strbuf_append(out, &b, 1);
        } else if (strstr(s, "\xE2\x96\x81")) {   // ▁ -> space, the rest as written
            for (const char *p = s; *p;) {
                if (!strncmp(p, "\xE2\x96\x81", 3)) { strbuf_putc(out, ' '); p += 3; }
                else strbuf_putc(out, *p++);
            }
        } else if (dec) {
            strbuf_append(out, dec, dec_len);
        }
    }
    free(dec);
}

/* ==== Vocabulary trie ==== */

static int tok_cmp(const void *a, const void *b, void *ctx)
{
    const struct constraint_vocab *v = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    uint32_t lx = v->tok_off[x + 1] - v->tok_off[x], ly = v->tok_off[y + 1] - v->tok_off[y];
    int c = memcmp(v->blob + v->tok_off[x], v->blob + v->tok_off[y], lx < ly ? lx : ly);
    if (c) return c;
    return lx < ly ? -1 : lx > ly ? 1 : (x < y ? -1 : 1);
}

/* Plain: whole UTF-8 characters that a JSON string holds unescaped (>= U+0020, not " or \\).
 * Inside a string every plain character leads to the same next state (the same one, in an open
 * string; the next position, under minLength/maxLength), so a plain token's outcome depends only on
 * how many characters it has: those masks come from precomputed lists, and only the other tokens
 * (quotes, escapes, control bytes, pieces of characters) are walked through the trie.
 * Returns the number of characters (1..64), 0 if the token is not plain. */
static int plain_chars(const uint8_t *s, uint32_t n)
{
    int chars = 0;
    for (uint32_t i = 0; i < n; chars++) {
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c < 0x20 || c == '"' || c == '\\') return 0;
            i++;
            continue;
        }
        int len = (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (!len || i + (uint32_t)len > n) return 0;
        uint32_t cp = len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
        for (int k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += (uint32_t)len;
    }
    return chars <= 64 ? chars : 0;
}

static void trie_build(const struct constraint_vocab *v, struct vocab_trie *t, int32_t *ids, int n)
{
    memset(t, 0, sizeof *t);
    qsort_r(ids, (size_t)n, sizeof *ids, tok_cmp, (void *)v);
    t->ids = ids;
    size_t cap = 256;
    for (int k = 0; k < n; k++) cap += v->tok_off[ids[k] + 1] - v->tok_off[ids[k]];   // nodes <= total bytes
    t->byte = xmalloc(cap);
    t->depth = xmalloc(cap * sizeof *t->depth);
    t->skip = xmalloc(cap * sizeof *t->skip);
    t->tok = xmalloc(cap * sizeof *t->tok);
    t->ntok = xcalloc(cap, sizeof *t->ntok);
    uint32_t *path = xmalloc(65536 * sizeof *path);
    int depth = 0;
    const uint8_t *prev = NULL;
    uint32_t prev_len = 0;
    for (int k = 0; k < n; k++) {
        const uint8_t *b = v->blob + v->tok_off[ids[k]];
        uint32_t len = v->tok_off[ids[k] + 1] - v->tok_off[ids[k]];
        uint32_t lcp = 0;
        while (lcp < len && lcp < prev_len && b[lcp] == prev[lcp]) lcp++;
        while (depth > (int)lcp) t->skip[path[--depth]] = t->n_nodes;
        for (uint32_t d = lcp; d < len; d++) {
            uint32_t nd = t->n_nodes++;
            t->byte[nd] = b[d];
            t->depth[nd] = (uint16_t)(d + 1);
            path[depth++] = nd;
        }
        // Tokens ending at a node are consecutive in byte order.
        if (!t->ntok[path[depth - 1]]++) t->tok[path[depth - 1]] = (uint32_t)k;
        prev = b;
        prev_len = len;
    }
    while (depth > 0) t->skip[path[--depth]] = t->n_nodes;
    free(path);
}

static void trie_free(struct vocab_trie *t)
{
    free(t->byte);
    free(t->depth);
    free(t->skip);
    free(t->tok);
    free(t->ntok);
    free(t->ids);
}

enum status constraint_vocab_new(const struct tokenizer *tk, const int32_t *stop_ids, int n_stop,
                                 struct constraint_vocab **out)
{
    return constraint_vocab_new_text(tk, stop_ids, n_stop, NULL, 0, out);
}

enum status constraint_vocab_new_text(const struct tokenizer *tk, const int32_t *stop_ids, int n_stop,
                                      const int32_t *text_ids, int n_text, struct constraint_vocab **out)
{
    struct constraint_vocab *v = xcalloc(1, sizeof *v);
    v->n_ids = tokenizer_vocab_size(tk);
    int32_t cp_to_byte[512];
    bytelevel_table(cp_to_byte);
    // Byte-level if the space token is spelled "Ġ" and decodes to a space.
    int32_t space_id = tokenizer_token_id(tk, "\xC4\xA0");
    bool byte_level = false;
    if (space_id >= 0) {
        char *d = tokenizer_decode(tk, &space_id, 1, false);
        byte_level = d && !strcmp(d, " ");
        free(d);
    }
    v->is_stop = xcalloc((size_t)v->n_ids, sizeof *v->is_stop);
    v->stop_ids = xmalloc(((size_t)n_stop + 1) * sizeof *v->stop_ids);
    for (int k = 0; k < n_stop; k++) {
        if (stop_ids[k] < 0 || stop_ids[k] >= v->n_ids) {
            LOG_ERR("constraint: stop id %d outside the vocabulary (%d ids)", stop_ids[k], v->n_ids);
            constraint_vocab_free(v);
            return STATUS_EINVAL;
        }
        if (!v->is_stop[stop_ids[k]]) v->stop_ids[v->n_stop++] = stop_ids[k];
        v->is_stop[stop_ids[k]] = true;
    }
    struct strbuf blob = {0};
    v->tok_off = xmalloc(((size_t)v->n_ids + 1) * sizeof *v->tok_off);
    for (int32_t id = 0; id < v->n_ids; id++) {
        v->tok_off[id] = (uint32_t)blob.len;
        bool as_text = false;
        for (int k = 0; k < n_text; k++) as_text |= text_ids[k] == id;
        if (v->is_stop[id] || (tokenizer_is_special(tk, id) && !as_text)) continue;
        token_bytes(tk, byte_level, cp_to_byte, id, &blob);
    }
    v->tok_off[v->n_ids] = (uint32_t)blob.len;
    v->blob = (uint8_t *)strbuf_take(&blob);
    XXH3_state_t *h = XXH3_createState();
    CHECK(h, "out of memory");
    XXH3_64bits_reset(h);
    XXH3_64bits_update(h, v->tok_off, ((size_t)v->n_ids + 1) * sizeof *v->tok_off);
    XXH3_64bits_update(h, v->blob, v->tok_off[v->n_ids]);
    XXH3_64bits_update(h, v->is_stop, (size_t)v->n_ids * sizeof *v->is_stop);
    v->hash = XXH3_64bits_digest(h);
    XXH3_freeState(h);

    v->plain = xcalloc((size_t)constraint_mask_words(v), sizeof *v->plain);
    int32_t *all_ids = xmalloc(((size_t)v->n_ids + 1) * sizeof *all_ids), *rest_ids = xmalloc(((size_t)v->n_ids + 1) * sizeof *rest_ids);
    uint8_t *chars = xcalloc((size_t)v->n_ids + 1, 1);
    int n_all = 0, n_rest = 0;
    for (int32_t id = 0; id < v->n_ids; id++) {
        uint32_t len = v->tok_off[id + 1] - v->tok_off[id];
        if (!len || len > 65535) continue;   // (no real token is this long; the trie depth is 16-bit)
        all_ids[n_all++] = id;
        chars[id] = (uint8_t)plain_chars(v->blob + v->tok_off[id], len);
        if (chars[id]) { v->plain[id >> 5] |= 1u << (id & 31); v->plain_off[chars[id] + 1]++; }
        else rest_ids[n_rest++] = id;
        if ((int)len > v->max_depth) v->max_depth = (int)len;
    }
    for (int k = 1; k < 66; k++) v->plain_off[k] += v->plain_off[k - 1];
    v->plain_ids = xmalloc(((size_t)v->plain_off[65] + 1) * sizeof *v->plain_ids);
    uint32_t fill[66];
    memcpy(fill, v->plain_off, sizeof fill);
    for (int32_t id = 0; id < v->n_ids; id++)
        if (chars[id]) v->plain_ids[fill[chars[id]]++] = id;
    free(chars);
    trie_build(v, &v->all, all_ids, n_all);
    trie_build(v, &v->rest, rest_ids, n_rest);
    bool seen[256] = {false};
    for (int32_t id = 0; id < v->n_ids; id++)
        if (v->tok_off[id + 1] - v->tok_off[id] == 1) seen[v->blob[v->tok_off[id]]] = true;
    v->all_bytes = true;
    for (int b = 0; b < 256; b++) v->all_bytes &= seen[b];
    if (!v->all_bytes)
        LOG_WARN("constraint: the vocabulary lacks some single-byte tokens; closing within max_tokens "
                 "is then not guaranteed (min_tokens_to_finish counts one byte per token)");
    *out = v;
    return STATUS_OK;
}

void constraint_vocab_free(struct constraint_vocab *v)
{
    if (!v) return;
    free(v->tok_off);
    free(v->blob);
    free(v->is_stop);
    free(v->stop_ids);
    trie_free(&v->all);
    trie_free(&v->rest);
    free(v->plain);
    free(v->plain_ids);
    free(v);
}

int constraint_vocab_size(const struct constraint_vocab *v) { return v->n_ids; }
int constraint_mask_words(const struct constraint_vocab *v) { return (v->n_ids + 31) / 32; }

const uint8_t *constraint_vocab_token(const struct constraint_vocab *v, int32_t id, int *len)
{
    if (id < 0 || id >= v->n_ids || v->tok_off[id + 1] == v->tok_off[id]) { *len = 0; return NULL; }
    *len = (int)(v->tok_off[id + 1] - v->tok_off[id]);
    return v->blob + v->tok_off[id];
}

/* ==== Per-sequence state ==== */

/* One of g's idle matchers made for a vocabulary equal to v, or NULL. */
static struct constraint *idle_take(struct constraint_grammar *g, const struct constraint_vocab *v)
{
    struct constraint *c = NULL;
    pthread_mutex_lock(&g->idle_mu);
    for (int i = g->n_idle - 1; i >= 0; i--) {
        if (g->idle[i]->v_hash != v->hash) continue;
        c = g->idle[i];
        g->n_idle--;
        g->idle[i] = g->idle[g->n_idle];
        g->idle_bytes[i] = g->idle_bytes[g->n_idle];
        break;
    }
    pthread_mutex_unlock(&g->idle_mu);
    return c;
}

/* Keeps c among g's idle matchers if there is room; false: the caller frees it. */
static bool idle_put(struct constraint_grammar *g, struct constraint *c)
{
    size_t bytes = constraint_bytes(c), sum = 0;
    if (c->pda.oom || bytes > CG_IDLE_BYTES_MAX) return false;
    pthread_mutex_lock(&g->idle_mu);
    for (int i = 0; i < g->n_idle; i++) sum += g->idle_bytes[i];
    bool room = g->n_idle < CG_IDLE_MAX && sum + bytes <= CG_IDLE_BYTES_MAX;
    if (room) {
        g->idle[g->n_idle] = c;
        g->idle_bytes[g->n_idle++] = bytes;
    }
    pthread_mutex_unlock(&g->idle_mu);
    return room;
}

static void matcher_free(struct constraint *c)
{
    pda_deinit(&c->pda);
    free(c->walk);
    free(c);
}

int constraint_grammar_n_idle(struct constraint_grammar *g)
{
    pthread_mutex_lock(&g->idle_mu);
    int n = g->n_idle;
    pthread_mutex_unlock(&g->idle_mu);
    return n;
}

size_t constraint_bytes(const struct constraint *c) { return c->pda.bytes_used + c->mask_cache_bytes; }

void cg_idle_free(struct constraint_grammar *cg)
{
    for (int i = 0; i < cg->n_idle; i++) matcher_free(cg->idle[i]);
    cg->n_idle = 0;
}

struct constraint *constraint_new(const struct constraint_grammar *cg, const struct constraint_vocab *v)
{
    struct constraint_grammar *g = (struct constraint_grammar *)cg;   // refs and idle are not its value
    atomic_fetch_add(&g->refs, 1);
    struct constraint *c = idle_take(g, v);
    if (c) {   // a finished sequence's matcher: its states, transitions and masks stay warm
        c->v = v;
        constraint_reset(c);
        return c;
    }
    c = xcalloc(1, sizeof *c);
    c->cg = cg;
    c->v = v;
    c->v_hash = v->hash;
    pda_init(&c->pda, &cg->g, PDA_BYTES_MAX);
    c->state = c->start = pda_start(&c->pda);
    c->walk = xmalloc(((size_t)v->max_depth + 1) * sizeof *c->walk);
    return c;
}

void constraint_reset(struct constraint *c)
{
    c->state = c->start;
    c->finished = false;
}

void constraint_free(struct constraint *c)
{
    if (!c) return;
    struct constraint_grammar *g = (struct constraint_grammar *)c->cg;
    if (!idle_put(g, c)) matcher_free(c);
    constraint_grammar_free(g);   // the last reference frees the idle ones, c among them
}

/* The state every plain character leads to from s (DEAD included), or -1 when they differ.
 * Computed once per state by stepping the ASCII bytes and every UTF-8 lead/continuation range. */
static int64_t plain_next(struct pda *p, uint32_t s)
{
    if (p->states[s].plain_next != -2) return p->states[s].plain_next;
    int64_t t = -2;   // -2: nothing seen yet
    bool uniform = true;
#define MERGE(r) do { if (t == -2) t = (r); else if (t != (int64_t)(r)) uniform = false; } while (0)
    for (int b = 0x20; b < 0x80 && uniform; b++)
        if (b != '"' && b != '\\') MERGE(pda_step(p, s, (uint8_t)b));
    static const uint8_t seqs[][4][2] = {
        { { 0xC2, 0xDF }, { 0x80, 0xBF } },
        { { 0xE0, 0xE0 }, { 0xA0, 0xBF }, { 0x80, 0xBF } },
        { { 0xE1, 0xEC }, { 0x80, 0xBF }, { 0x80, 0xBF } },
        { { 0xED, 0xED }, { 0x80, 0x9F }, { 0x80, 0xBF } },
        { { 0xEE, 0xEF }, { 0x80, 0xBF }, { 0x80, 0xBF } },
        { { 0xF0, 0xF0 }, { 0x90, 0xBF }, { 0x80, 0xBF }, { 0x80, 0xBF } },
        { { 0xF1, 0xF3 }, { 0x80, 0xBF }, { 0x80, 0xBF }, { 0x80, 0xBF } },
        { { 0xF4, 0xF4 }, { 0x80, 0x8F }, { 0x80, 0xBF }, { 0x80, 0xBF } },
    };
    for (size_t q = 0; q < sizeof seqs / sizeof *seqs && uniform; q++) {
        // The distinct live states after each position (few: usually one).
        uint32_t front[16], next[16];
        int n_front = 1, n_next;
        front[0] = s;
        int k = 0;
        for (; k < 4 && seqs[q][k][0] && uniform; k++) {
            n_next = 0;
            for (int f = 0; f < n_front && uniform; f++)
                for (int b = seqs[q][k][0]; b <= seqs[q][k][1] && uniform; b++) {
                    uint32_t r = pda_step(p, front[f], (uint8_t)b);
                    if (r == PDA_DEAD) { MERGE(PDA_DEAD); continue; }   // the character ends dead
                    int x = 0;
                    while (x < n_next && next[x] != r) x++;
                    if (x == n_next && n_next == 16) uniform = false;
                    else if (x == n_next) next[n_next++] = r;
                }
            memcpy(front, next, sizeof next);
            n_front = n_next;
        }
        for (int f = 0; f < n_front && uniform; f++) MERGE(front[f]);
    }
#undef MERGE
    int64_t out = uniform && t >= 0 ? t : -1;
    p->states[s].plain_next = (int32_t)out;
    return out;
}

/* One pass over trie t from state s: allowed tokens are those whose end state is live and whose
 * shortest completion is <= limit. Returns the largest such completion among allowed tokens. */
static uint32_t trie_walk(struct constraint *c, const struct vocab_trie *t, uint32_t s, uint32_t limit, uint32_t *mask)
{
    struct pda *p = &c->pda;
    uint32_t max_dist = 0;
    c->walk[0] = s;
    for (uint32_t i = 0; i < t->n_nodes;) {
        uint32_t st = pda_step(p, c->walk[t->depth[i] - 1], t->byte[i]);
        if (st == PDA_DEAD) { i = t->skip[i]; continue; }
        c->walk[t->depth[i]] = st;
        uint32_t nt = t->ntok[i];
        if (nt) {
            uint32_t d = p->states[st].dist;
            if (d <= limit) {
                if (d > max_dist) max_dist = d;
                for (uint32_t k = 0; k < nt; k++) {
                    int32_t id = t->ids[t->tok[i] + k];
                    mask[id >> 5] |= 1u << (id & 31);
                }
            }
        }
        i++;
    }
    return max_dist;
}

/* The allowed tokens (stop ids aside) from state s under limit. Returns the largest shortest
 * completion after an allowed token. */
static uint32_t compute_mask(struct constraint *c, uint32_t s, uint32_t limit, uint32_t *mask)
{
    const struct constraint_vocab *v = c->v;
    struct pda *p = &c->pda;
    int words = constraint_mask_words(v);
    // Follow plain characters from s: chain[k] is where k of them lead (DEAD past a dead end).
    uint32_t chain[65];
    chain[0] = s;
    bool uniform = true;
    for (int k = 0; k < 64 && uniform; k++) {
        int64_t nx = chain[k] == PDA_DEAD ? PDA_DEAD : plain_next(p, chain[k]);
        if (nx < 0) uniform = false;
        else chain[k + 1] = (uint32_t)nx;
    }
    if (!uniform) {
        memset(mask, 0, (size_t)words * sizeof *mask);
        return trie_walk(c, &v->all, s, limit, mask);
    }
    bool all = true;
    uint32_t max_dist = 0;
    for (int k = 1; k <= 64; k++) {
        if (v->plain_off[k + 1] == v->plain_off[k]) continue;
        bool ok = chain[k] != PDA_DEAD && p->states[chain[k]].dist <= limit;
        all &= ok;
        if (ok && p->states[chain[k]].dist > max_dist) max_dist = p->states[chain[k]].dist;
    }
    if (all) {
        memcpy(mask, v->plain, (size_t)words * sizeof *mask);
    } else {
        memset(mask, 0, (size_t)words * sizeof *mask);
        for (int k = 1; k <= 64; k++) {
            if (chain[k] == PDA_DEAD || p->states[chain[k]].dist > limit) continue;
            for (uint32_t i = v->plain_off[k]; i < v->plain_off[k + 1]; i++)
                mask[v->plain_ids[i] >> 5] |= 1u << (v->plain_ids[i] & 31);
        }
    }
    uint32_t m = trie_walk(c, &v->rest, s, limit, mask);
    return m > max_dist ? m : max_dist;
}

enum status constraint_mask(struct constraint *c, int tokens_left, uint32_t *mask)
{
    const struct constraint_vocab *v = c->v;
    int words = constraint_mask_words(v);
    size_t bytes = (size_t)words * sizeof *mask;
    struct pda *p = &c->pda;
    if (c->finished || tokens_left == 0) {
        memset(mask, 0, bytes);
    } else {
        uint32_t limit = tokens_left < 0 ? CG_INF : (uint32_t)tokens_left - 1;
        // The unlimited mask is cached per state; a budget only matters when some allowed token
        // would leave a completion longer than it (then one filtered walk, uncached).
        if (p->states[c->state].mask) {
            memcpy(mask, p->states[c->state].mask, bytes);
        } else {
            uint32_t max_dist = compute_mask(c, c->state, CG_INF, mask);
            if (p->oom) return STATUS_ENOMEM;
            struct pda_state *st = &p->states[c->state];   // the walk may have moved the array
            st->mask_max_dist = max_dist;
            if (c->mask_cache_bytes + bytes <= MASK_CACHE_BYTES_MAX) {
                st->mask = xmalloc(bytes);
                memcpy(st->mask, mask, bytes);
                c->mask_cache_bytes += bytes;
            }
        }
        if (limit < p->states[c->state].mask_max_dist) {
            compute_mask(c, c->state, limit, mask);
            if (p->oom) return STATUS_ENOMEM;
        }
    }
    if (c->finished || pda_accepts(p, c->state))
        for (int k = 0; k < v->n_stop; k++) mask[v->stop_ids[k] >> 5] |= 1u << (v->stop_ids[k] & 31);
    return STATUS_OK;
}

enum status constraint_advance_bytes(struct constraint *c, const char *s, size_t n)
{
    if (c->finished) return n ? STATUS_EINVAL : STATUS_OK;
    uint32_t st = c->state;
    for (size_t i = 0; i < n && st != PDA_DEAD; i++) st = pda_step(&c->pda, st, (uint8_t)s[i]);
    if (c->pda.oom) return STATUS_ENOMEM;
    if (st == PDA_DEAD) return STATUS_EINVAL;
    c->state = st;
    return STATUS_OK;
}

enum status constraint_advance(struct constraint *c, int32_t id)
{
    const struct constraint_vocab *v = c->v;
    if (id < 0 || id >= v->n_ids) return STATUS_EINVAL;
    if (v->is_stop[id]) {
        if (!c->finished && !pda_accepts(&c->pda, c->state)) return STATUS_EINVAL;
        c->finished = true;
        return STATUS_OK;
    }
    int len;
    const uint8_t *b = constraint_vocab_token(v, id, &len);
    if (!b || c->finished) return STATUS_EINVAL;
    return constraint_advance_bytes(c, (const char *)b, (size_t)len);
}

bool constraint_can_end(const struct constraint *c)
{
    return c->finished || pda_accepts(&c->pda, c->state);
}

bool constraint_is_finished(const struct constraint *c) { return c->finished; }

uint64_t constraint_save(const struct constraint *c)
{
    return (uint64_t)c->state << 1 | c->finished;
}

void constraint_restore(struct constraint *c, uint64_t saved)
{
    CHECK((saved >> 1) < c->pda.n_states, "state %llu was not saved from this constraint", (unsigned long long)saved);
    c->state = (uint32_t)(saved >> 1);
    c->finished = saved & 1;
}

int constraint_min_tokens_to_finish(const struct constraint *c)
{
    return c->finished ? 0 : (int)c->pda.states[c->state].dist;
}
