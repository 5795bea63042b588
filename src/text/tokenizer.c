/* tokenizer: loading tokenizer.json (+ tokenizer_config.json, special_tokens_map.json), added
 * tokens, and the encode pipeline: repair invalid UTF-8 -> split on added tokens that match the
 * raw text -> normalize each remaining segment -> split on added tokens that match normalized
 * text -> pre-tokenize -> BPE per piece -> post-process (add_special).
 *
 * Added tokens are matched leftmost-longest over a byte trie (HF uses Aho-Corasick with the same
 * match kind), honouring single_word, lstrip and rstrip as HF's AddedVocabulary::find_matches.
 * The tokenizer is immutable after load and shared between threads; each encode call keeps its
 * scratch state on its own stack/heap; only the BPE word cache is shared (tokenizer_bpe.c).
 *
 *     struct tokenizer *tk; if (tokenizer_load(dir, &tk) != STATUS_OK) return st;
 *     int32_t *ids; int n; tokenizer_encode(tk, "hi", 2, false, &ids, &n); free(ids);
 *     tokenizer_free(tk);
 */
#include "text/tokenizer.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "text/pyjson.h"
#include "text/tokenizer_internal.h"

/* ==== Trie of added tokens ==== */

static int trie_node(struct tk_trie *t, uint8_t byte)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 256;
        t->nodes = xrealloc(t->nodes, (size_t)t->cap * sizeof *t->nodes);
    }
    t->nodes[t->n] = (struct tk_trie_node){ -1, -1, -1, byte };
    return t->n++;
}

static void trie_insert(struct tk_trie *t, const char *s, uint32_t len, int added_idx)
{
    if (!len) return;
    if (!t->n) trie_node(t, 0);
    int cur = 0;
    for (uint32_t i = 0; i < len; i++) {
        uint8_t b = (uint8_t)s[i];
        int c = t->nodes[cur].child;
        while (c >= 0 && t->nodes[c].byte != b) c = t->nodes[c].sibling;
        if (c < 0) {
            c = trie_node(t, b);
            t->nodes[c].sibling = t->nodes[cur].child;
            t->nodes[cur].child = c;
        }
        cur = c;
    }
    if (t->nodes[cur].added < 0) t->nodes[cur].added = added_idx;   // first definition wins
    t->first[(uint8_t)s[0]] = 1;
}

/* Longest token starting at s[i]; returns its added index and sets *end, or -1. */
static int trie_longest(const struct tk_trie *t, const char *s, size_t n, size_t i, size_t *end)
{
    int cur = 0, best = -1;
    for (size_t k = i; k < n; k++) {
        int c = t->nodes[cur].child;
        uint8_t b = (uint8_t)s[k];
        while (c >= 0 && t->nodes[c].byte != b) c = t->nodes[c].sibling;
        if (c < 0) break;
        cur = c;
        if (t->nodes[cur].added >= 0) { best = t->nodes[cur].added; *end = k + 1; }
    }
    return best;
}

/* ==== Loading ==== */

static char *config_token(json_t *cfg, const char *key)
{
    json_t *v = json_object_get(cfg, key);
    if (json_is_string(v)) return xstrdup(json_string_value(v));
    if (json_is_object(v) && json_is_string(json_object_get(v, "content")))
        return xstrdup(json_string_value(json_object_get(v, "content")));
    return NULL;
}

static enum status load_added(struct tokenizer *tk, json_t *arr)
{
    size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
    tk->added = xcalloc(n + 1, sizeof *tk->added);
    for (size_t i = 0; i < n; i++) {
        json_t *a = json_array_get(arr, i);
        json_t *id = json_object_get(a, "id"), *content = json_object_get(a, "content");
        if (!json_is_integer(id) || !json_is_string(content) || json_integer_value(id) < 0 ||
            json_integer_value(id) > 16 * 1024 * 1024) {
            LOG_ERR("tokenizer: added_tokens[%zu] needs an id and a content", i);
            return STATUS_EFORMAT;
        }
        struct tk_added *t = &tk->added[tk->n_added++];
        t->len = (uint32_t)json_string_length(content);
        t->content = xstrndup(json_string_value(content), t->len);
        t->id = (int32_t)json_integer_value(id);
        t->special = json_is_true(json_object_get(a, "special"));
        t->lstrip = json_is_true(json_object_get(a, "lstrip"));
        t->rstrip = json_is_true(json_object_get(a, "rstrip"));
        t->normalized = json_is_true(json_object_get(a, "normalized"));
        t->single_word = json_is_true(json_object_get(a, "single_word"));
    }
    return STATUS_OK;
}

struct cfg_token { long id; json_t *tok; };

static int cmp_cfg_token(const void *a, const void *b)
{
    long x = ((const struct cfg_token *)a)->id, y = ((const struct cfg_token *)b)->id;
    return x < y ? -1 : x > y;
}

/* transformers adds the tokens that tokenizer_config.json's added_tokens_decoder lists and
 * tokenizer.json's added_tokens lack (by content), in id order, through tokenizers' add_tokens:
 * a content that is a vocabulary entry keeps that entry's id, any other gets the next id after the
 * vocabulary and the added tokens. AddedToken's defaults apply to missing flags (normalized = not
 * special). */
static void add_config_tokens(struct tokenizer *tk, json_t *cfg)
{
    json_t *dec = json_object_get(cfg, "added_tokens_decoder");
    size_t n = json_is_object(dec) ? json_object_size(dec) : 0;
    if (!n) return;
    struct cfg_token *v = xcalloc(n, sizeof *v);
    size_t k = 0;
    const char *key;
    json_t *val;
    json_object_foreach(dec, key, val) {
        char *end;
        long id = strtol(key, &end, 10);
        if (*end || end == key || !json_is_string(json_object_get(val, "content"))) continue;
        v[k++] = (struct cfg_token){ id, val };
    }
    qsort(v, k, sizeof *v, cmp_cfg_token);
    int32_t next = tk->bpe.n_vocab;
    for (int i = 0; i < tk->n_added; i++) if (tk->added[i].id + 1 > next) next = tk->added[i].id + 1;
    for (size_t i = 0; i < k; i++) {
        json_t *c = json_object_get(v[i].tok, "content");
        const char *content = json_string_value(c);
        size_t len = json_string_length(c);
        bool have = false;
        for (int j = 0; j < tk->n_added && !have; j++)
            have = tk->added[j].len == len && !memcmp(tk->added[j].content, content, len);
        if (have || !len) continue;
        int32_t id = tk_bpe_lookup(&tk->bpe, &tk->bl, content, len);
        if (id >= 0 && (tk->bpe.tok_len[id] != len || memcmp(tk->bpe.tok[id], content, len))) id = -1;
        if (id < 0) id = next++;
        tk->added = xrealloc(tk->added, ((size_t)tk->n_added + 2) * sizeof *tk->added);
        struct tk_added *t = &tk->added[tk->n_added++];
        memset(t, 0, sizeof *t);
        t->content = xstrndup(content, len);
        t->len = (uint32_t)len;
        t->id = id;
        t->special = json_is_true(json_object_get(v[i].tok, "special"));
        json_t *norm = json_object_get(v[i].tok, "normalized");
        t->normalized = norm ? json_is_true(norm) : !t->special;
        t->lstrip = json_is_true(json_object_get(v[i].tok, "lstrip"));
        t->rstrip = json_is_true(json_object_get(v[i].tok, "rstrip"));
        t->single_word = json_is_true(json_object_get(v[i].tok, "single_word"));
        LOG_DEBUG("tokenizer: added %s (id %d) from tokenizer_config.json added_tokens_decoder", t->content, id);
    }
    free(v);
}

enum status tokenizer_load_json(const char *tokenizer_json, size_t len, const char *config_json,
                                struct tokenizer **out)
{
    *out = NULL;
    json_error_t err;
    json_t *root = json_loadb(tokenizer_json, len, JSON_ALLOW_NUL, &err);
    if (!root || !json_is_object(root)) {
        LOG_ERR("tokenizer.json: line %d: %s", err.line, root ? "not an object" : err.text);
        json_decref(root);
        return STATUS_EFORMAT;
    }
    json_t *cfg = NULL;
    if (config_json) {
        cfg = pyjson_loads(config_json, 0, &err);
        if (!cfg) LOG_WARN("tokenizer_config.json: line %d: %s (ignored)", err.line, err.text);
    }
    struct tokenizer *tk = xcalloc(1, sizeof *tk);
    tk_bytelevel_init(&tk->bl);
    enum status st = tk_norm_parse(json_object_get(root, "normalizer"), &tk->norm);
    if (st == STATUS_OK) st = tk_pre_parse(json_object_get(root, "pre_tokenizer"), &tk->pre);
    if (st == STATUS_OK) st = tk_dec_parse(json_object_get(root, "decoder"), &tk->dec);
    if (st == STATUS_OK) {
        json_t *model = json_object_get(root, "model");
        if (!json_is_object(model)) { LOG_ERR("tokenizer.json: no model"); st = STATUS_EFORMAT; }
        else st = tk_bpe_load(model, tk_pre_has_bytelevel(tk->pre), &tk->bl, &tk->bpe);
    }
    if (st == STATUS_OK) st = load_added(tk, json_object_get(root, "added_tokens"));
    if (st == STATUS_OK && cfg) add_config_tokens(tk, cfg);
    if (st == STATUS_OK) st = tk_post_parse(tk, json_object_get(root, "post_processor"), &tk->post);
    if (st != STATUS_OK) goto out_fail;

    tk->n_ids_total = tk->bpe.n_ids;
    for (int i = 0; i < tk->n_added; i++)
        if (tk->added[i].id + 1 > tk->n_ids_total) tk->n_ids_total = tk->added[i].id + 1;
    tk->added_of_id = xmalloc(((size_t)tk->n_ids_total + 1) * sizeof *tk->added_of_id);
    for (int i = 0; i < tk->n_ids_total; i++) tk->added_of_id[i] = -1;
    for (int i = 0; i < tk->n_added; i++) {
        struct tk_added *a = &tk->added[i];
        if (tk->added_of_id[a->id] < 0) tk->added_of_id[a->id] = i;
        if (a->normalized && tk->norm) {
            // HF matches (and decodes) a normalized added token by its normalized content.
            struct strbuf nb = {0};
            tk_norm_apply(tk->norm, a->content, a->len, &nb);
            free(a->content);
            a->len = (uint32_t)nb.len;
            a->content = strbuf_take(&nb);
        }
        trie_insert(a->normalized ? &tk->trie_norm : &tk->trie_raw, a->content, a->len, i);
    }
    tk->special_texts = xcalloc((size_t)tk->n_added + 1, sizeof *tk->special_texts);
    for (int i = 0, k = 0; i < tk->n_added; i++)
        if (tk->added[i].special && tk->added[i].len) tk->special_texts[k++] = tk->added[i].content;
    for (int i = 0; i < tk->post.n_pre; i++)
        if (tk->post.pre[i] < 0 || tk->post.pre[i] >= tk->n_ids_total) goto out_bad_post;
    for (int i = 0; i < tk->post.n_post; i++)
        if (tk->post.post[i] < 0 || tk->post.post[i] >= tk->n_ids_total) goto out_bad_post;

    if (cfg) {
        // transformers 5 ignores clean_up_tokenization_spaces for BPE models ("destructive for
        // BPE"), and BPE is the only model here: decode never cleans up. tk_decode keeps the code
        // path for a future WordPiece model.
        tk->cleanup = false;
        tk->bos = config_token(cfg, "bos_token");
        tk->eos = config_token(cfg, "eos_token");
        tk->pad = config_token(cfg, "pad_token");
        tk->unk = config_token(cfg, "unk_token");
        tk->config_json = xstrdup(config_json);
    }
    json_decref(cfg);
    json_decref(root);
    *out = tk;
    return STATUS_OK;

out_bad_post:
    LOG_ERR("tokenizer.json: post_processor refers to an id outside the vocabulary");
    st = STATUS_EFORMAT;
out_fail:
    json_decref(cfg);
    json_decref(root);
    tokenizer_free(tk);
    return st;
}

static char *read_optional(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (access(path, R_OK) != 0) return NULL;
    char *s = NULL;
    if (file_read_all(path, &s, NULL) != STATUS_OK) return NULL;
    return s;
}

enum status tokenizer_load(const char *dir, struct tokenizer **out)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    char *js;
    size_t len;
    enum status st = file_read_all(path, &js, &len);
    if (st != STATUS_OK) return st;
    char *cfg = read_optional(dir, "tokenizer_config.json");
    st = tokenizer_load_json(js, len, cfg, out);
    if (st == STATUS_OK && (!(*out)->bos || !(*out)->eos)) {
        // special_tokens_map.json fills what tokenizer_config.json left unset.
        char *stm = read_optional(dir, "special_tokens_map.json");
        json_t *j = stm ? pyjson_loads(stm, 0, NULL) : NULL;
        if (j) {
            if (!(*out)->bos) (*out)->bos = config_token(j, "bos_token");
            if (!(*out)->eos) (*out)->eos = config_token(j, "eos_token");
            if (!(*out)->pad) (*out)->pad = config_token(j, "pad_token");
            if (!(*out)->unk) (*out)->unk = config_token(j, "unk_token");
        }
        json_decref(j);
        free(stm);
    }
    if (st != STATUS_OK) LOG_ERR("%s: cannot load the tokenizer", path);
    free(js);
    free(cfg);
    return st;
}

void tokenizer_free(struct tokenizer *tk)
{
    if (!tk) return;
    tk_norm_free(tk->norm);
    tk_pre_free(tk->pre);
    tk_dec_free(tk->dec);
    tk_bpe_free(&tk->bpe);
    for (int i = 0; i < tk->n_added; i++) free(tk->added[i].content);
    free(tk->added);
    free(tk->trie_raw.nodes);
    free(tk->trie_norm.nodes);
    free(tk->added_of_id);
    free(tk->special_texts);
    free(tk->post.pre);
    free(tk->post.post);
    free(tk->bos);
    free(tk->eos);
    free(tk->pad);
    free(tk->unk);
    free(tk->config_json);
    free(tk);
}

/* ==== Encoding ==== */

struct enc {
    const struct tokenizer *tk;
    const struct tk_literal *lit;        // literal ranges of the raw text (special tokens not matched there)
    int                   n_lit;
    int32_t           *ids;
    int                n_ids, cap;
    pcre2_match_data  *md;
    struct tk_pieces   pcs, tmp;
    struct strbuf      norm;
};

static bool ends_with_word(const char *s, size_t n)
{
    if (!n) return false;
    size_t p = n - 1;
    while (p > 0 && ((unsigned char)s[p] & 0xC0) == 0x80) p--;
    int k;
    return tk_is_alnum(tk_utf8_decode(s + p, &k));
}

static bool starts_with_word(const char *s, size_t n)
{
    int k;
    return n > 0 && tk_is_alnum(tk_utf8_decode(s, &k));
}

typedef void (*segment_fn)(struct enc *e, const char *s, size_t n, uint32_t orig);

/* Whether [a, b) of the raw text overlaps a literal range. */
static bool in_literal(const struct enc *e, size_t a, size_t b)
{
    for (int i = 0; i < e->n_lit; i++)
        if (a < e->lit[i].end && e->lit[i].start < b) return true;
    return false;
}

/* Splits s on the added tokens of trie t (HF find_matches): text between matches goes to fn,
 * each match appends its id. */
static void split_added(struct enc *e, const struct tk_trie *t, const char *s, size_t n, uint32_t orig, segment_fn fn)
{
    size_t done = 0;   // end of the last emitted piece
    if (t->n) {
        for (size_t i = 0; i < n;) {
            size_t end = i;
            int ai = t->first[(uint8_t)s[i]] ? trie_longest(t, s, n, i, &end) : -1;
            if (ai < 0) { i++; continue; }
            const struct tk_added *a = &e->tk->added[ai];
            size_t start = i;
            i = end;   // matches do not overlap, discarded or not
            if (start < done) continue;   // swallowed by the previous token's rstrip
            if (a->special && t == &e->tk->trie_raw && in_literal(e, orig + start, orig + end)) continue;
            if (a->single_word && ((start > 0 && ends_with_word(s, start)) || (end < n && starts_with_word(s + end, n - end))))
                continue;
            if (a->lstrip) {
                size_t ns = start;
                while (ns > done) {
                    size_t p = ns - 1;
                    while (p > done && ((unsigned char)s[p] & 0xC0) == 0x80) p--;
                    int k;
                    if (!tk_is_whitespace(tk_utf8_decode(s + p, &k))) break;
                    ns = p;
                }
                start = ns;
            }
            if (a->rstrip) {
                while (end < n) {
                    int k;
                    if (!tk_is_whitespace(tk_utf8_decode(s + end, &k))) break;
                    end += (size_t)k;
                }
                i = end;
            }
            if (start > done) fn(e, s + done, start - done, orig + (uint32_t)done);
            if (e->n_ids == e->cap) {
                e->cap = e->cap ? e->cap * 2 : 64;
                e->ids = xrealloc(e->ids, (size_t)e->cap * sizeof *e->ids);
            }
            e->ids[e->n_ids++] = a->id;
            done = end;
        }
    }
    if (n > done) fn(e, s + done, n - done, orig + (uint32_t)done);
}

static void model_segment(struct enc *e, const char *s, size_t n, uint32_t orig)
{
    tk_pieces_clear(&e->pcs);
    tk_pieces_push(&e->pcs, s, n, orig);
    tk_pre_apply(e->tk->pre, &e->pcs, e->md, &e->tmp);
    struct tk_bpe *bpe = (struct tk_bpe *)&e->tk->bpe;   // only the internally locked cache is written
    for (int i = 0; i < e->pcs.n; i++)
        tk_bpe_word(bpe, e->pcs.buf.data + e->pcs.sp[i].off, e->pcs.sp[i].len, &e->ids, &e->n_ids, &e->cap);
}

static void raw_segment(struct enc *e, const char *s, size_t n, uint32_t orig)
{
    if (!e->tk->norm) {
        split_added(e, &e->tk->trie_norm, s, n, orig, model_segment);
        return;
    }
    tk_norm_apply(e->tk->norm, s, n, &e->norm);   // e->norm is free: model_segment never uses it
    split_added(e, &e->tk->trie_norm, e->norm.data, e->norm.len, orig, model_segment);
}

enum status tokenizer_encode(const struct tokenizer *tk, const char *text, size_t len, bool add_special,
                             int32_t **ids, int *n_ids)
{
    return tokenizer_encode_literal(tk, text, len, add_special, NULL, 0, ids, n_ids);
}

const char *const *tokenizer_special_texts(const struct tokenizer *tk) { return tk->special_texts; }

enum status tokenizer_encode_literal(const struct tokenizer *tk, const char *text, size_t len, bool add_special,
                                     const struct tk_literal *literal, int n_literal, int32_t **ids, int *n_ids)
{
    *ids = NULL;
    *n_ids = 0;
    if (len > (size_t)INT32_MAX / 2) {
        LOG_ERR("tokenizer: input of %zu bytes is too long", len);
        return STATUS_ETOOLONG;
    }
    struct enc e = { .tk = tk };
    e.md = pcre2_match_data_create(4, NULL);
    struct strbuf clean = {0};
    tk_utf8_lossy(&clean, text ? text : "", text ? len : 0);
    if (clean.len == len) e.lit = literal, e.n_lit = n_literal;   // repaired UTF-8 moves the ranges: cannot apply
    else if (n_literal) e.lit = &(struct tk_literal){ 0, clean.len }, e.n_lit = 1;   // then no special token matches at all
    const char *s = clean.data ? clean.data : "";
    if (add_special) {
        for (int i = 0; i < tk->post.n_pre; i++) {
            if (e.n_ids == e.cap) { e.cap = e.cap ? e.cap * 2 : 64; e.ids = xrealloc(e.ids, (size_t)e.cap * sizeof *e.ids); }
            e.ids[e.n_ids++] = tk->post.pre[i];
        }
    }
    split_added(&e, &tk->trie_raw, s, clean.len, 0, raw_segment);
    if (add_special) {
        for (int i = 0; i < tk->post.n_post; i++) {
            if (e.n_ids == e.cap) { e.cap = e.cap ? e.cap * 2 : 64; e.ids = xrealloc(e.ids, (size_t)e.cap * sizeof *e.ids); }
            e.ids[e.n_ids++] = tk->post.post[i];
        }
    }
    pcre2_match_data_free(e.md);
    strbuf_free(&e.norm);
    tk_pieces_free(&e.pcs);
    tk_pieces_free(&e.tmp);
    strbuf_free(&clean);
    if (!e.ids) e.ids = xmalloc(sizeof *e.ids);
    *ids = e.ids;
    *n_ids = e.n_ids;
    return STATUS_OK;
}

/* ==== Queries ==== */

int tokenizer_vocab_size(const struct tokenizer *tk)
{
    return tk->n_ids_total;
}

const char *tokenizer_token_str(const struct tokenizer *tk, int32_t id)
{
    if (id < 0 || id >= tk->n_ids_total) return NULL;
    if (tk->added_of_id[id] >= 0) return tk->added[tk->added_of_id[id]].content;
    return id < tk->bpe.n_ids ? tk->bpe.tok[id] : NULL;
}

int32_t tokenizer_token_id(const struct tokenizer *tk, const char *token)
{
    size_t n = strlen(token);
    for (int i = 0; i < tk->n_added; i++)
        if (tk->added[i].len == n && !memcmp(tk->added[i].content, token, n)) return tk->added[i].id;
    int32_t id0 = tk_bpe_lookup(&tk->bpe, &tk->bl, token, n);
    if (id0 >= 0 && tk->bpe.tok_len[id0] == n && !memcmp(tk->bpe.tok[id0], token, n)) return id0;
    for (int32_t id = 0; id < tk->bpe.n_ids; id++)   // duplicate raw keys only: scan
        if (tk->bpe.tok[id] && tk->bpe.tok_len[id] == n && !memcmp(tk->bpe.tok[id], token, n)) return id;
    return -1;
}

bool tokenizer_is_special(const struct tokenizer *tk, int32_t id)
{
    return id >= 0 && id < tk->n_ids_total && tk->added_of_id[id] >= 0 && tk->added[tk->added_of_id[id]].special;
}

const char *tokenizer_bos_str(const struct tokenizer *tk) { return tk->bos; }
const char *tokenizer_eos_str(const struct tokenizer *tk) { return tk->eos; }
const char *tokenizer_config_json(const struct tokenizer *tk) { return tk->config_json; }
