/* tokenizer_decode: ids back to text (the "decoder" section of tokenizer.json: ByteLevel,
 * Metaspace, ByteFallback, Fuse, Strip, Replace, WordPiece, Sequence; then transformers'
 * clean_up_tokenization when tokenizer_config.json asks for it), the post-processor (what
 * add_special puts around the ids), and the streaming detokenizer.
 *
 * Streaming: struct detok decodes a sliding window of ids, decode(ids[w:]), and emits what grew
 * since the last call, holding back text that later ids could still change: a trailing U+FFFD
 * (an incomplete UTF-8 sequence or pending byte-fallback bytes) and, with clean-up on, a tail that
 * could start one of its patterns (" ." -> "."). The window start moves forward only when the
 * new window decodes to the same tail as the old one, so leading-space rules (Metaspace, Strip)
 * cannot change text already sent: the concatenated deltas equal tokenizer_decode of all ids.
 * A detok belongs to one thread; the tokenizer it reads is shared.
 *
 *     struct detok *d = detok_new(tk, true);
 *     for (...) { char *delta = detok_push(d, id); fputs(delta, stdout); free(delta); }
 *     char *rest = detok_flush(d); ... free(rest); detok_free(d);
 */
#include <string.h>

#include "base/log.h"
#include "text/tokenizer.h"
#include "text/tokenizer_internal.h"

/* ==== Decoder parsing ==== */

static void dec_deinit(struct tk_dec *d)
{
    for (int i = 0; i < d->n_subs; i++) dec_deinit(&d->subs[i]);
    free(d->subs);
    free(d->content);
    tk_regex_free(&d->re);
}

void tk_dec_free(struct tk_dec *d)
{
    if (!d) return;
    dec_deinit(d);
    free(d);
}

static enum status dec_parse_into(json_t *j, struct tk_dec *d, int depth)
{
    memset(d, 0, sizeof *d);
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type || depth > 16) { LOG_ERR("tokenizer: decoder without a type"); return STATUS_EFORMAT; }
    if (!strcmp(type, "Sequence")) {
        d->type = TK_DEC_SEQUENCE;
        json_t *arr = json_object_get(j, "decoders");
        if (!json_is_array(arr)) { LOG_ERR("tokenizer: Sequence decoder without decoders"); return STATUS_EFORMAT; }
        d->subs = xcalloc(json_array_size(arr) + 1, sizeof *d->subs);
        for (size_t i = 0; i < json_array_size(arr); i++) {
            enum status st = dec_parse_into(json_array_get(arr, i), &d->subs[i], depth + 1);
            d->n_subs = (int)i + 1;
            if (st != STATUS_OK) return st;
        }
        return STATUS_OK;
    }
    if (!strcmp(type, "ByteLevel")) { d->type = TK_DEC_BYTELEVEL; return STATUS_OK; }
    if (!strcmp(type, "ByteFallback")) { d->type = TK_DEC_BYTEFALLBACK; return STATUS_OK; }
    if (!strcmp(type, "Fuse")) { d->type = TK_DEC_FUSE; return STATUS_OK; }
    if (!strcmp(type, "Metaspace")) {
        d->type = TK_DEC_METASPACE;
        const char *r = json_string_value(json_object_get(j, "replacement"));
        int k = r ? tk_utf8_valid_len((const unsigned char *)r, strlen(r)) : 0;
        if (k) memcpy(d->repl, r, (size_t)k);
        else memcpy(d->repl, "\xE2\x96\x81", 3);
        return tk_prepend_parse(j, &d->prepend);
    }
    if (!strcmp(type, "Strip")) {
        d->type = TK_DEC_STRIP;
        const char *c = json_string_value(json_object_get(j, "content"));
        d->content = xstrdup(c ? c : " ");
        d->start = (int)json_integer_value(json_object_get(j, "start"));
        d->stop = (int)json_integer_value(json_object_get(j, "stop"));
        return STATUS_OK;
    }
    if (!strcmp(type, "Replace")) {
        d->type = TK_DEC_REPLACE;
        const char *c = json_string_value(json_object_get(j, "content"));
        if (!c) { LOG_ERR("tokenizer: Replace decoder without content"); return STATUS_EFORMAT; }
        d->content = xstrdup(c);
        return tk_pattern_parse(json_object_get(j, "pattern"), &d->re);
    }
    if (!strcmp(type, "WordPiece")) {
        d->type = TK_DEC_WORDPIECE;
        const char *p = json_string_value(json_object_get(j, "prefix"));
        d->content = xstrdup(p ? p : "##");
        json_t *c = json_object_get(j, "cleanup");
        d->cleanup = !c || json_is_true(c);
        return STATUS_OK;
    }
    LOG_ERR("tokenizer: unsupported decoder type '%s'", type);
    return STATUS_EUNSUPPORTED;
}

enum status tk_dec_parse(json_t *j, struct tk_dec **out)
{
    *out = NULL;
    if (!j || json_is_null(j)) return STATUS_OK;
    struct tk_dec *d = xcalloc(1, sizeof *d);
    enum status st = dec_parse_into(j, d, 0);
    if (st != STATUS_OK) { tk_dec_free(d); return st; }
    *out = d;
    return STATUS_OK;
}

/* ==== Post-processor ==== */

static enum status post_ids(const struct tokenizer *tk, json_t *ids_json, const char *name, int32_t **v, int *n)
{
    // [token, id] pairs (Roberta/Bert) or a special_tokens entry {"ids": [...]}
    json_t *ids = json_object_get(ids_json, "ids");
    if (json_is_array(ids)) {
        for (size_t i = 0; i < json_array_size(ids); i++) {
            json_t *x = json_array_get(ids, i);
            if (!json_is_integer(x)) goto bad;
            *v = xrealloc(*v, (size_t)(*n + 1) * sizeof **v);
            (*v)[(*n)++] = (int32_t)json_integer_value(x);
        }
        return STATUS_OK;
    }
    if (json_is_array(ids_json) && json_array_size(ids_json) == 2 && json_is_integer(json_array_get(ids_json, 1))) {
        *v = xrealloc(*v, (size_t)(*n + 1) * sizeof **v);
        (*v)[(*n)++] = (int32_t)json_integer_value(json_array_get(ids_json, 1));
        return STATUS_OK;
    }
bad:
    (void)tk;
    LOG_ERR("tokenizer: post_processor: bad special token '%s'", name);
    return STATUS_EFORMAT;
}

static void ids_cat(int32_t **dst, int *nd, const int32_t *a, int na, const int32_t *b, int nb)
{
    int32_t *v = xmalloc((size_t)(na + nb + 1) * sizeof *v);
    if (na) memcpy(v, a, (size_t)na * sizeof *v);
    if (nb) memcpy(v + na, b, (size_t)nb * sizeof *v);
    free(*dst);
    *dst = v;
    *nd = na + nb;
}

enum status tk_post_parse(const struct tokenizer *tk, json_t *j, struct tk_post *out)
{
    memset(out, 0, sizeof *out);
    if (!j || json_is_null(j)) return STATUS_OK;
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) { LOG_ERR("tokenizer: post_processor without a type"); return STATUS_EFORMAT; }
    if (!strcmp(type, "ByteLevel")) return STATUS_OK;
    if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing")) {
        enum status st = post_ids(tk, json_object_get(j, "cls"), "cls", &out->pre, &out->n_pre);
        if (st == STATUS_OK) st = post_ids(tk, json_object_get(j, "sep"), "sep", &out->post, &out->n_post);
        return st;
    }
    if (!strcmp(type, "TemplateProcessing")) {
        json_t *single = json_object_get(j, "single"), *specials = json_object_get(j, "special_tokens");
        if (!json_is_array(single)) { LOG_ERR("tokenizer: TemplateProcessing without single"); return STATUS_EFORMAT; }
        bool seen_seq = false;
        for (size_t i = 0; i < json_array_size(single); i++) {
            json_t *it = json_array_get(single, i);
            json_t *sp = json_object_get(it, "SpecialToken");
            if (json_object_get(it, "Sequence")) { seen_seq = true; continue; }
            const char *name = json_string_value(json_object_get(sp, "id"));
            if (!name) { LOG_ERR("tokenizer: TemplateProcessing item without id"); return STATUS_EFORMAT; }
            enum status st = post_ids(tk, json_object_get(specials, name), name, seen_seq ? &out->post : &out->pre,
                                      seen_seq ? &out->n_post : &out->n_pre);
            if (st != STATUS_OK) return st;
        }
        return STATUS_OK;
    }
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(j, "processors");
        for (size_t i = 0; i < json_array_size(arr); i++) {
            struct tk_post p;
            enum status st = tk_post_parse(tk, json_array_get(arr, i), &p);
            if (st != STATUS_OK) return st;
            ids_cat(&out->pre, &out->n_pre, p.pre, p.n_pre, out->pre, out->n_pre);
            ids_cat(&out->post, &out->n_post, out->post, out->n_post, p.post, p.n_post);
            free(p.pre);
            free(p.post);
        }
        return STATUS_OK;
    }
    LOG_ERR("tokenizer: unsupported post_processor type '%s'", type);
    return STATUS_EUNSUPPORTED;
}

/* ==== Decoding ==== */

static const char *const CLEANUP[][2] = {
    { " .", "." }, { " ?", "?" }, { " !", "!" }, { " ,", "," }, { " ' ", "'" }, { " n't", "n't" },
    { " 'm", "'m" }, { " 's", "'s" }, { " 've", "'ve" }, { " 're", "'re" },
};
#define N_CLEANUP ((int)(sizeof CLEANUP / sizeof CLEANUP[0]))

/* Python's str.replace for each pattern in turn (transformers' clean_up_tokenization). */
static void cleanup_text(struct strbuf *s)
{
    struct strbuf t = {0};
    for (int p = 0; p < N_CLEANUP; p++) {
        const char *from = CLEANUP[p][0], *to = CLEANUP[p][1];
        size_t fl = strlen(from);
        if (!s->len || !memmem(s->data, s->len, from, fl)) continue;
        strbuf_clear(&t);
        for (size_t i = 0; i < s->len;) {
            if (i + fl <= s->len && !memcmp(s->data + i, from, fl)) { strbuf_puts(&t, to); i += fl; }
            else strbuf_putc(&t, s->data[i++]);
        }
        strbuf_clear(s);
        strbuf_append(s, t.data, t.len);
    }
    strbuf_free(&t);
}

static void replace_all(const struct tk_regex *re, const char *content, const char *s, size_t n, struct strbuf *out)
{
    pcre2_match_data *md = pcre2_match_data_create(4, NULL);
    size_t pos = 0, search = 0, ms, me;
    while (search <= n && tk_regex_find(re, md, s, n, search, &ms, &me)) {
        strbuf_append(out, s + pos, ms - pos);
        strbuf_puts(out, content);
        pos = me;
        if (me == ms) {
            if (me >= n) break;
            int k = tk_utf8_valid_len((const unsigned char *)s + me, n - me);
            search = me + (size_t)(k ? k : 1);
            strbuf_append(out, s + me, search - me);
            pos = search;
        } else {
            search = me;
        }
    }
    strbuf_append(out, s + pos, n - pos);
    pcre2_match_data_free(md);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

#define PIECE(p, i) ((p)->buf.data + (p)->sp[i].off)

/* t's text as the next piece (an empty piece when t holds nothing) */
static void push_text(struct tk_pieces *out, const struct strbuf *t)
{
    tk_pieces_push(out, t->data ? t->data : "", t->len, 0);
}

static void dec_apply(const struct tokenizer *tk, const struct tk_dec *d, struct tk_pieces *in, struct tk_pieces *out)
{
    struct strbuf t = {0};
    tk_pieces_clear(out);
    switch (d->type) {
    case TK_DEC_SEQUENCE:
        CHECK(0, "sequence handled by the caller");
        break;
    case TK_DEC_BYTELEVEL: {
        struct strbuf bytes = {0};
        for (int i = 0; i < in->n; i++) {
            const char *s = PIECE(in, i);
            size_t n = in->sp[i].len, mark = bytes.len;
            bool ok = true;
            for (size_t k = 0; k < n;) {
                int l;
                uint32_t cp = tk_utf8_decode(s + k, &l);
                if (cp >= 512 || tk->bl.cp_to_byte[cp] < 0) { ok = false; break; }
                strbuf_putc(&bytes, (char)tk->bl.cp_to_byte[cp]);
                k += (size_t)l;
            }
            if (!ok) {
                bytes.len = mark;
                strbuf_append(&bytes, s, n);
            }
        }
        tk_utf8_lossy(&t, bytes.data ? bytes.data : "", bytes.len);
        push_text(out, &t);
        strbuf_free(&bytes);
        break;
    }
    case TK_DEC_METASPACE: {
        size_t rl = strlen(d->repl);
        for (int i = 0; i < in->n; i++) {
            const char *s = PIECE(in, i);
            size_t n = in->sp[i].len;
            strbuf_clear(&t);
            for (size_t k = 0; k < n;) {
                if (k + rl <= n && !memcmp(s + k, d->repl, rl)) {
                    if (!(i == 0 && d->prepend != TK_PREPEND_NEVER)) strbuf_putc(&t, ' ');
                    k += rl;
                } else {
                    strbuf_putc(&t, s[k++]);
                }
            }
            push_text(out, &t);
        }
        break;
    }
    case TK_DEC_BYTEFALLBACK: {
        struct strbuf pend = {0};
        for (int i = 0; i <= in->n; i++) {
            const char *s = i < in->n ? PIECE(in, i) : NULL;
            size_t n = i < in->n ? in->sp[i].len : 0;
            int hi = -1, lo = -1;
            if (s && n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>') { hi = hexval(s[3]); lo = hexval(s[4]); }
            if (hi >= 0 && lo >= 0) { strbuf_putc(&pend, (char)(hi * 16 + lo)); continue; }
            if (pend.len) {
                if (tk_utf8_lossy(&t, pend.data, pend.len)) tk_pieces_push(out, pend.data, pend.len, 0);
                else
                    for (size_t k = 0; k < pend.len; k++) tk_pieces_push(out, "\xEF\xBF\xBD", 3, 0);
                strbuf_clear(&t);
                strbuf_clear(&pend);
            }
            if (s) tk_pieces_push(out, s, n, 0);
        }
        strbuf_free(&pend);
        break;
    }
    case TK_DEC_FUSE:
        for (int i = 0; i < in->n; i++) strbuf_append(&t, PIECE(in, i), in->sp[i].len);
        push_text(out, &t);
        break;
    case TK_DEC_STRIP: {
        int cl;
        uint32_t c = tk_utf8_decode(d->content, &cl);
        for (int i = 0; i < in->n; i++) {
            const char *s = PIECE(in, i);
            size_t n = in->sp[i].len, a = 0, b = n;
            for (int k = 0; k < d->start && a < n; k++) {
                int l;
                if (tk_utf8_decode(s + a, &l) != c) break;
                a += (size_t)l;
            }
            for (int k = 0; k < d->stop && b > a; k++) {
                size_t p = b - 1;
                while (p > a && ((unsigned char)s[p] & 0xC0) == 0x80) p--;
                int l;
                if (tk_utf8_decode(s + p, &l) != c) break;
                b = p;
            }
            tk_pieces_push(out, s + a, b - a, 0);
        }
        break;
    }
    case TK_DEC_REPLACE:
        for (int i = 0; i < in->n; i++) {
            strbuf_clear(&t);
            replace_all(&d->re, d->content, PIECE(in, i), in->sp[i].len, &t);
            push_text(out, &t);
        }
        break;
    case TK_DEC_WORDPIECE: {
        size_t pl = strlen(d->content);
        for (int i = 0; i < in->n; i++) {
            const char *s = PIECE(in, i);
            size_t n = in->sp[i].len;
            strbuf_clear(&t);
            if (i > 0) {
                if (n >= pl && !memcmp(s, d->content, pl)) { s += pl; n -= pl; }
                else strbuf_putc(&t, ' ');
            }
            strbuf_append(&t, s, n);
            if (d->cleanup) cleanup_text(&t);
            push_text(out, &t);
        }
        break;
    }
    }
    strbuf_free(&t);
}

static void dec_chain(const struct tokenizer *tk, const struct tk_dec *d, struct tk_pieces **a, struct tk_pieces **b)
{
    if (d->type == TK_DEC_SEQUENCE) {
        for (int i = 0; i < d->n_subs; i++) dec_chain(tk, &d->subs[i], a, b);
        return;
    }
    dec_apply(tk, d, *a, *b);
    struct tk_pieces *t = *a;
    *a = *b;
    *b = t;
}

static bool kept(const int32_t *keep, int n_keep, int32_t id)
{
    for (int k = 0; k < n_keep; k++)
        if (keep[k] == id) return true;
    return false;
}

void tk_decode(const struct tokenizer *tk, const int32_t *ids, int n, bool skip_special, const int32_t *keep, int n_keep,
               struct strbuf *out)
{
    struct tk_pieces pa = {0}, pb = {0}, *a = &pa, *b = &pb;
    for (int i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= tk->n_ids_total) continue;
        int ai = tk->added_of_id[id];
        if (ai >= 0) {
            if (skip_special && tk->added[ai].special && !kept(keep, n_keep, id)) continue;
            tk_pieces_push(a, tk->added[ai].content, tk->added[ai].len, 0);
        } else if (id < tk->bpe.n_ids && tk->bpe.tok[id]) {
            tk_pieces_push(a, tk->bpe.tok[id], tk->bpe.tok_len[id], 0);
        }
    }
    size_t start = out->len;
    if (!tk->dec) {
        for (int i = 0; i < a->n; i++) {
            if (i) strbuf_putc(out, ' ');
            strbuf_append(out, PIECE(a, i), a->sp[i].len);
        }
    } else {
        dec_chain(tk, tk->dec, &a, &b);
        for (int i = 0; i < a->n; i++) strbuf_append(out, PIECE(a, i), a->sp[i].len);
    }
    if (tk->cleanup && out->len > start) {
        struct strbuf t = {0};
        strbuf_append(&t, out->data + start, out->len - start);
        cleanup_text(&t);
        out->len = start;
        strbuf_append(out, t.data, t.len);
        strbuf_free(&t);
    }
    if (!out->data) strbuf_append(out, "", 0);
    tk_pieces_free(&pa);
    tk_pieces_free(&pb);
}

char *tokenizer_decode_n(const struct tokenizer *tk, const int32_t *ids, int n, bool skip_special, size_t *len)
{
    struct strbuf sb = {0};
    tk_decode(tk, ids, n, skip_special, NULL, 0, &sb);
    if (len) *len = sb.len;
    return strbuf_take(&sb);
}

char *tokenizer_decode(const struct tokenizer *tk, const int32_t *ids, int n, bool skip_special)
{
    return tokenizer_decode_n(tk, ids, n, skip_special, NULL);
}

/* ==== Streaming ==== */

#define DETOK_WINDOW 8   // ids kept before the unsent tail once the window slides

struct detok {
    const struct tokenizer *tk;
    bool     skip_special;
    int32_t  keep[DETOK_KEEP_MAX];   // special ids decoded anyway (detok_keep_special)
    int      n_keep;
    int32_t *ids;
    int      n, cap;
    int      win;        // window start (index into ids)
    size_t   sent;       // bytes of decode(ids[win:]) already emitted
    struct strbuf text;  // scratch: decode(ids[win:])
    struct strbuf alt;   // scratch: decode of a candidate window
};

struct detok *detok_new(const struct tokenizer *tk, bool skip_special)
{
    struct detok *d = xcalloc(1, sizeof *d);
    d->tk = tk;
    d->skip_special = skip_special;
    return d;
}

void detok_keep_special(struct detok *d, const int32_t *ids, int n)
{
    for (int k = 0; k < n && d->n_keep < DETOK_KEEP_MAX; k++) d->keep[d->n_keep++] = ids[k];
}

void detok_free(struct detok *d)
{
    if (!d) return;
    free(d->ids);
    strbuf_free(&d->text);
    strbuf_free(&d->alt);
    free(d);
}

/* Length of the prefix of t that no later id can change. */
static size_t stable_len(const struct detok *d, const struct strbuf *t)
{
    size_t L = t->len;
    while (L >= 3 && !memcmp(t->data + L - 3, "\xEF\xBF\xBD", 3)) L -= 3;
    if (d->tk->cleanup) {
        // Hold back the longest tail that is a proper prefix of a clean-up pattern.
        size_t hold = 0;
        for (int p = 0; p < N_CLEANUP; p++) {
            size_t fl = strlen(CLEANUP[p][0]);
            for (size_t k = fl - 1; k > hold; k--)
                if (k <= L && !memcmp(t->data + L - k, CLEANUP[p][0], k)) { hold = k; break; }
        }
        L -= hold;
    }
    return L;
}

static bool is_byte_token(const struct tokenizer *tk, int32_t id)
{
    const char *s = tokenizer_token_str(tk, id);
    return s && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[3] && s[4] && s[5] == '>' && !s[6];
}

/* Byte tokens, and skipped special tokens between them, can belong to one byte-fallback run. */
static bool run_part(const struct detok *d, int32_t id)
{
    return is_byte_token(d->tk, id) || (d->skip_special && tokenizer_is_special(d->tk, id) && !kept(d->keep, d->n_keep, id));
}

static char *detok_step(struct detok *d, bool flush, size_t *len)
{
    strbuf_clear(&d->text);
    if (d->n > d->win) tk_decode(d->tk, d->ids + d->win, d->n - d->win, d->skip_special, d->keep, d->n_keep, &d->text);
    else strbuf_append(&d->text, "", 0);
    size_t L = flush ? d->text.len : stable_len(d, &d->text);
    const struct strbuf *src = &d->text;
    int k = d->n;
    while (!flush && k > d->win && run_part(d, d->ids[k - 1])) k--;
    if (k < d->n) {
        // A trailing run of byte-fallback tokens is undecided: HF turns the whole run into
        // U+FFFDs if it ends invalid, so only the text before the run is stable.
        strbuf_clear(&d->alt);
        tk_decode(d->tk, d->ids + d->win, k - d->win, d->skip_special, d->keep, d->n_keep, &d->alt);
        src = &d->alt;
        L = stable_len(d, &d->alt);
        if (L > d->text.len || memcmp(d->alt.data, d->text.data, L)) L = 0;   // not a prefix: wait
    }
    struct strbuf delta = {0};
    if (L > d->sent) {
        strbuf_append(&delta, src->data + d->sent, L - d->sent);
        d->sent = L;
    }
    // Slide the window when it grew: accept the new start only if it decodes to the same tail.
    int nw = d->n - DETOK_WINDOW;
    // ByteFallback turns a whole invalid byte run into U+FFFDs: never start a window inside a run.
    if (!flush && d->n - d->win > 2 * DETOK_WINDOW && !run_part(d, d->ids[nw]) && !run_part(d, d->ids[nw - 1])) {
        strbuf_clear(&d->alt);
        tk_decode(d->tk, d->ids + nw, d->n - nw, d->skip_special, d->keep, d->n_keep, &d->alt);
        size_t unsent = d->text.len - d->sent;
        // The new window must start with text already sent: an empty or all-pending window would
        // let a later token become its "first" one (Metaspace/Strip leading-space rules).
        if (unsent < d->alt.len && d->alt.len <= d->text.len &&
            !memcmp(d->alt.data + d->alt.len - unsent, d->text.data + d->sent, unsent) &&
            !memcmp(d->alt.data, d->text.data + (d->text.len - d->alt.len), d->alt.len)) {
            d->win = nw;
            d->sent = d->alt.len - unsent;
        }
    }
    if (!delta.data) strbuf_append(&delta, "", 0);
    if (len) *len = delta.len;
    return strbuf_take(&delta);
}

char *detok_push(struct detok *d, int32_t id)
{
    return detok_push_n(d, id, NULL);
}

char *detok_flush(struct detok *d)
{
    return detok_flush_n(d, NULL);
}

char *detok_push_n(struct detok *d, int32_t id, size_t *len)
{
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 64;
        d->ids = xrealloc(d->ids, (size_t)d->cap * sizeof *d->ids);
    }
    d->ids[d->n++] = id;
    return detok_step(d, false, len);
}

char *detok_flush_n(struct detok *d, size_t *len)
{
    return detok_step(d, true, len);
}
