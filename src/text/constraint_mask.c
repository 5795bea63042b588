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

#include "base/log.h"
#include "text/constraint_int.h"
#include "text/tokenizer.h"

#define PDA_BYTES_MAX        ((size_t)256 << 20)   // matcher memory per sequence
#define MASK_CACHE_BYTES_MAX ((size_t)64 << 20)    // cached masks per sequence

struct constraint_vocab {
    int       n_ids;
    uint32_t *tok_off;      // [n_ids + 1] byte offsets into blob; a special token has length 0
    uint8_t  *blob;
    bool     *is_stop;      // [n_ids]
    int32_t  *stop_ids;
    int       n_stop;
    // trie in preorder
    uint32_t  n_nodes;
    uint8_t  *node_byte;
    uint16_t *node_depth;   // 1 for children of the root
    uint32_t *node_skip;    // first node after this subtree
    uint32_t *node_tok;     // first index into sorted_ids of the tokens ending here
    uint32_t *node_ntok;
    int32_t  *sorted_ids;
    int       max_depth;
    bool      all_bytes;    // every byte value is a token by itself
};

struct constraint {
    const struct constraint_grammar *cg;
    const struct constraint_vocab   *v;
    struct pda pda;
    uint32_t   state;
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

enum status constraint_vocab_new(const struct tokenizer *tk, const int32_t *stop_ids, int n_stop,
                                 struct constraint_vocab **out)
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
        if (v->is_stop[id] || tokenizer_is_special(tk, id)) continue;
        token_bytes(tk, byte_level, cp_to_byte, id, &blob);
    }
    v->tok_off[v->n_ids] = (uint32_t)blob.len;
    v->blob = (uint8_t *)strbuf_take(&blob);

    // Sort non-empty tokens by bytes, then lay the trie out in preorder.
    int n_sorted = 0;
    v->sorted_ids = xmalloc(((size_t)v->n_ids + 1) * sizeof *v->sorted_ids);
    for (int32_t id = 0; id < v->n_ids; id++)
        if (v->tok_off[id + 1] > v->tok_off[id]) v->sorted_ids[n_sorted++] = id;
    qsort_r(v->sorted_ids, (size_t)n_sorted, sizeof *v->sorted_ids, tok_cmp, v);
    size_t cap = v->tok_off[v->n_ids] + 256;   // nodes <= total bytes
    v->node_byte = xmalloc(cap);
    v->node_depth = xmalloc(cap * sizeof *v->node_depth);
    v->node_skip = xmalloc(cap * sizeof *v->node_skip);
    v->node_tok = xmalloc(cap * sizeof *v->node_tok);
    v->node_ntok = xcalloc(cap, sizeof *v->node_ntok);
    uint32_t *path = xmalloc(65536 * sizeof *path);
    int depth = 0;
    const uint8_t *prev = NULL;
    uint32_t prev_len = 0;
    for (int k = 0; k < n_sorted; k++) {
        int32_t id = v->sorted_ids[k];
        const uint8_t *b = v->blob + v->tok_off[id];
        uint32_t len = v->tok_off[id + 1] - v->tok_off[id];
        if (len > 65535) continue;
        uint32_t lcp = 0;
        while (lcp < len && lcp < prev_len && b[lcp] == prev[lcp]) lcp++;
        while (depth > (int)lcp) v->node_skip[path[--depth]] = v->n_nodes;
        for (uint32_t d = lcp; d < len; d++) {
            uint32_t nd = v->n_nodes++;
            v->node_byte[nd] = b[d];
            v->node_depth[nd] = (uint16_t)(d + 1);
            v->node_tok[nd] = (uint32_t)k;
            path[depth++] = nd;
        }
        v->node_ntok[path[depth - 1]]++;   // tokens ending here are consecutive in sorted order
        if (v->node_ntok[path[depth - 1]] == 1) v->node_tok[path[depth - 1]] = (uint32_t)k;
        if ((int)len > v->max_depth) v->max_depth = (int)len;
        prev = b;
        prev_len = len;
    }
    while (depth > 0) v->node_skip[path[--depth]] = v->n_nodes;
    free(path);
    bool seen[256] = {false};
    for (int32_t id = 0; id < v->n_ids; id++)
        if (v->tok_off[id + 1] - v->tok_off[id] == 1) seen[v->blob[v->tok_off[id]]] = true;
    v->all_bytes = true;
    for (int b = 0; b < 256; b++) v->all_bytes &= seen[b];
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
    free(v->node_byte);
    free(v->node_depth);
    free(v->node_skip);
    free(v->node_tok);
    free(v->node_ntok);
    free(v->sorted_ids);
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

struct constraint *constraint_new(const struct constraint_grammar *cg, const struct constraint_vocab *v)
{
    struct constraint *c = xcalloc(1, sizeof *c);
    c->cg = cg;
    c->v = v;
    pda_init(&c->pda, &cg->g, PDA_BYTES_MAX);
    c->state = pda_start(&c->pda);
    c->walk = xmalloc(((size_t)v->max_depth + 1) * sizeof *c->walk);
    return c;
}

void constraint_free(struct constraint *c)
{
    if (!c) return;
    pda_deinit(&c->pda);
    free(c->walk);
    free(c);
}

/* One pass over the trie from state s: allowed tokens are those whose end state is live and whose
 * shortest completion is <= limit. Returns the largest such completion among allowed tokens. */
static uint32_t trie_walk(struct constraint *c, uint32_t s, uint32_t limit, uint32_t *mask)
{
    const struct constraint_vocab *v = c->v;
    struct pda *p = &c->pda;
    uint32_t max_dist = 0;
    c->walk[0] = s;
    for (uint32_t i = 0; i < v->n_nodes;) {
        uint32_t t = pda_step(p, c->walk[v->node_depth[i] - 1], v->node_byte[i]);
        if (t == PDA_DEAD) { i = v->node_skip[i]; continue; }
        c->walk[v->node_depth[i]] = t;
        uint32_t nt = v->node_ntok[i];
        if (nt) {
            uint32_t d = p->states[t].dist;
            if (d <= limit) {
                if (d > max_dist) max_dist = d;
                for (uint32_t k = 0; k < nt; k++) {
                    int32_t id = v->sorted_ids[v->node_tok[i] + k];
                    mask[id >> 5] |= 1u << (id & 31);
                }
            }
        }
        i++;
    }
    return max_dist;
}

enum status constraint_mask(struct constraint *c, int tokens_left, uint32_t *mask)
{
    const struct constraint_vocab *v = c->v;
    int words = constraint_mask_words(v);
    size_t bytes = (size_t)words * sizeof *mask;
    struct pda *p = &c->pda;
    memset(mask, 0, bytes);
    if (!c->finished && tokens_left != 0) {
        uint32_t limit = tokens_left < 0 ? CG_INF : (uint32_t)tokens_left - 1;
        struct pda_state *st = &p->states[c->state];
        if (st->mask && limit >= st->mask_max_dist) {
            memcpy(mask, st->mask, bytes);
        } else {
            uint32_t max_dist = trie_walk(c, c->state, limit, mask);
            st = &p->states[c->state];   // the walk may have grown the state array
            if (p->oom) return STATUS_ENOMEM;
            if (limit >= CG_INF && !st->mask && c->mask_cache_bytes + bytes <= MASK_CACHE_BYTES_MAX) {
                st->mask = xmalloc(bytes);
                memcpy(st->mask, mask, bytes);
                st->mask_max_dist = max_dist;
                c->mask_cache_bytes += bytes;
            }
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

int constraint_min_tokens_to_finish(const struct constraint *c)
{
    return c->finished ? 0 : (int)c->pda.states[c->state].dist;
}
