/* tokenizer_pretok: the "pre_tokenizer" section of tokenizer.json: Split (regex or string, five
 * behaviours, invert), ByteLevel (add_prefix_space, use_regex with the GPT-2 regex), Metaspace,
 * Digits, Whitespace, WhitespaceSplit, Punctuation, BertPreTokenizer and Sequence.
 *
 * A pre-tokenizer turns a list of pieces into a finer list; the behaviours follow the HF
 * `SplitDelimiterBehavior` folds exactly (see split_fold). ByteLevel does not translate bytes to
 * the GPT-2 alphabet here: the BPE model of a byte-level tokenizer works on raw bytes
 * (tokenizer_internal.h). Parsed pre-tokenizers are immutable; tk_pre_apply is thread-safe given
 * its own match data and scratch pieces.
 *
 *     struct tk_pre *p; tk_pre_parse(json_object_get(root, "pre_tokenizer"), &p);
 *     tk_pre_apply(p, &pieces, md, &scratch);   // pieces: in and out
 */
#include <string.h>

#include "base/log.h"
#include "text/tokenizer_internal.h"

static const char GPT2_RE[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char WHITESPACE_RE[] = "\\w+|[^\\w\\s]+";

static void pre_deinit(struct tk_pre *p)
{
    for (int i = 0; i < p->n_subs; i++) pre_deinit(&p->subs[i]);
    free(p->subs);
    tk_regex_free(&p->re);
}

void tk_pre_free(struct tk_pre *p)
{
    if (!p) return;
    pre_deinit(p);
    free(p);
}

static enum status parse_behavior(json_t *j, enum tk_split_behavior def, enum tk_split_behavior *out)
{
    const char *s = json_string_value(j);
    *out = def;
    if (!s) return STATUS_OK;
    if (!strcmp(s, "Removed")) *out = TK_SPLIT_REMOVED;
    else if (!strcmp(s, "Isolated")) *out = TK_SPLIT_ISOLATED;
    else if (!strcmp(s, "MergedWithPrevious")) *out = TK_SPLIT_MERGED_PREV;
    else if (!strcmp(s, "MergedWithNext")) *out = TK_SPLIT_MERGED_NEXT;
    else if (!strcmp(s, "Contiguous")) *out = TK_SPLIT_CONTIGUOUS;
    else { LOG_ERR("tokenizer: unknown split behavior '%s'", s); return STATUS_EFORMAT; }
    return STATUS_OK;
}

static void copy_utf8_char(char dst[8], const char *s)
{
    memset(dst, 0, 8);
    int k = s ? tk_utf8_valid_len((const unsigned char *)s, strlen(s)) : 0;
    if (k) memcpy(dst, s, (size_t)k);
    else memcpy(dst, "\xE2\x96\x81", 3);   // U+2581, the SentencePiece default
}

enum status tk_prepend_parse(json_t *j, enum tk_prepend *out)
{
    const char *s = json_string_value(json_object_get(j, "prepend_scheme"));
    if (s) {
        if (!strcmp(s, "always")) *out = TK_PREPEND_ALWAYS;
        else if (!strcmp(s, "first")) *out = TK_PREPEND_FIRST;
        else if (!strcmp(s, "never")) *out = TK_PREPEND_NEVER;
        else { LOG_ERR("tokenizer: unknown prepend_scheme '%s'", s); return STATUS_EFORMAT; }
        return STATUS_OK;
    }
    json_t *aps = json_object_get(j, "add_prefix_space");   // older files
    *out = (aps && !json_is_true(aps)) ? TK_PREPEND_NEVER : TK_PREPEND_ALWAYS;
    return STATUS_OK;
}

static enum status pre_parse_into(json_t *j, struct tk_pre *p, int depth)
{
    memset(p, 0, sizeof *p);
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type || depth > 16) { LOG_ERR("tokenizer: pre_tokenizer without a type"); return STATUS_EFORMAT; }
    if (!strcmp(type, "Sequence")) {
        p->type = TK_PRE_SEQUENCE;
        json_t *arr = json_object_get(j, "pretokenizers");
        if (!json_is_array(arr)) { LOG_ERR("tokenizer: Sequence pre_tokenizer without pretokenizers"); return STATUS_EFORMAT; }
        p->subs = xcalloc(json_array_size(arr) + 1, sizeof *p->subs);
        for (size_t i = 0; i < json_array_size(arr); i++) {
            enum status st = pre_parse_into(json_array_get(arr, i), &p->subs[i], depth + 1);
            p->n_subs = (int)i + 1;
            if (st != STATUS_OK) return st;
        }
        return STATUS_OK;
    }
    if (!strcmp(type, "Split")) {
        p->type = TK_PRE_SPLIT;
        p->invert = json_is_true(json_object_get(j, "invert"));
        enum status st = parse_behavior(json_object_get(j, "behavior"), TK_SPLIT_ISOLATED, &p->behavior);
        if (st != STATUS_OK) return st;
        st = tk_pattern_parse(json_object_get(j, "pattern"), &p->re);
        p->has_re = st == STATUS_OK;
        return st;
    }
    if (!strcmp(type, "ByteLevel")) {
        p->type = TK_PRE_BYTELEVEL;
        p->add_prefix_space = json_is_true(json_object_get(j, "add_prefix_space"));
        json_t *ur = json_object_get(j, "use_regex");
        if (!ur || json_is_true(ur)) {
            enum status st = tk_regex_compile(&p->re, GPT2_RE, sizeof GPT2_RE - 1, false);
            if (st != STATUS_OK) return st;
            p->has_re = true;
        }
        return STATUS_OK;
    }
    if (!strcmp(type, "Metaspace")) {
        p->type = TK_PRE_METASPACE;
        copy_utf8_char(p->repl, json_string_value(json_object_get(j, "replacement")));
        json_t *sp = json_object_get(j, "split");
        p->split = !sp || json_is_true(sp);
        return tk_prepend_parse(j, &p->prepend);
    }
    if (!strcmp(type, "Digits")) {
        p->type = TK_PRE_DIGITS;
        p->individual_digits = json_is_true(json_object_get(j, "individual_digits"));
        return STATUS_OK;
    }
    if (!strcmp(type, "Whitespace")) {
        p->type = TK_PRE_WHITESPACE;
        enum status st = tk_regex_compile(&p->re, WHITESPACE_RE, sizeof WHITESPACE_RE - 1, false);
        p->has_re = st == STATUS_OK;
        return st;
    }
    if (!strcmp(type, "WhitespaceSplit")) { p->type = TK_PRE_WHITESPACE_SPLIT; return STATUS_OK; }
    if (!strcmp(type, "BertPreTokenizer")) { p->type = TK_PRE_BERT; return STATUS_OK; }
    if (!strcmp(type, "Punctuation")) {
        p->type = TK_PRE_PUNCTUATION;
        return parse_behavior(json_object_get(j, "behavior"), TK_SPLIT_ISOLATED, &p->behavior);
    }
    LOG_ERR("tokenizer: unsupported pre_tokenizer type '%s'", type);
    return STATUS_EUNSUPPORTED;
}

enum status tk_pre_parse(json_t *j, struct tk_pre **out)
{
    *out = NULL;
    if (!j || json_is_null(j)) return STATUS_OK;
    struct tk_pre *p = xcalloc(1, sizeof *p);
    enum status st = pre_parse_into(j, p, 0);
    if (st != STATUS_OK) { tk_pre_free(p); return st; }
    *out = p;
    return STATUS_OK;
}

bool tk_pre_has_bytelevel(const struct tk_pre *p)
{
    if (!p) return false;
    if (p->type == TK_PRE_BYTELEVEL) return true;
    for (int i = 0; i < p->n_subs; i++)
        if (tk_pre_has_bytelevel(&p->subs[i])) return true;
    return false;
}

/* ==== Splitting ==== */

struct span_list {
    struct { uint32_t a, b; bool m; } *v;
    int n, cap;
};

static void spans_push(struct span_list *l, size_t a, size_t b, bool m)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 32;
        l->v = xrealloc(l->v, (size_t)l->cap * sizeof *l->v);
    }
    l->v[l->n].a = (uint32_t)a;
    l->v[l->n].b = (uint32_t)b;
    l->v[l->n].m = m;
    l->n++;
}

/* Applies HF's SplitDelimiterBehavior to the (offsets, is_match) list covering s and appends the
 * non-empty results to out. */
static void split_fold(struct span_list *l, enum tk_split_behavior beh, bool invert, const char *s, uint32_t orig,
                       struct tk_pieces *out)
{
    if (invert)
        for (int i = 0; i < l->n; i++) l->v[i].m = !l->v[i].m;
    int n_out = 0;   // fold in place: entries [0, n_out) are the results
    bool prev = false;
    switch (beh) {
    case TK_SPLIT_REMOVED:
        for (int i = 0; i < l->n; i++)
            if (!l->v[i].m) l->v[n_out++] = l->v[i];
        break;
    case TK_SPLIT_ISOLATED:
        n_out = l->n;
        break;
    case TK_SPLIT_MERGED_PREV:
        for (int i = 0; i < l->n; i++) {
            bool m = l->v[i].m;
            if (m && !prev && n_out > 0) l->v[n_out - 1].b = l->v[i].b;
            else l->v[n_out++] = l->v[i];
            prev = m;
        }
        break;
    case TK_SPLIT_MERGED_NEXT:
        // Folded from the right: a match joins the piece that follows it.
        for (int i = l->n - 1; i >= 0; i--) {
            bool m = l->v[i].m;
            int w = l->n - 1 - n_out;   // write position, from the right
            if (m && !prev && n_out > 0) l->v[w + 1].a = l->v[i].a;
            else { l->v[w] = l->v[i]; n_out++; }
            prev = m;
        }
        memmove(l->v, l->v + (l->n - n_out), (size_t)n_out * sizeof *l->v);
        break;
    case TK_SPLIT_CONTIGUOUS:
        for (int i = 0; i < l->n; i++) {
            bool m = l->v[i].m;
            if (m == prev && n_out > 0) l->v[n_out - 1].b = l->v[i].b;
            else l->v[n_out++] = l->v[i];
            prev = m;
        }
        break;
    }
    for (int i = 0; i < n_out; i++)
        if (l->v[i].b > l->v[i].a) tk_pieces_push(out, s + l->v[i].a, l->v[i].b - l->v[i].a, orig + l->v[i].a);
}

static void find_regex(const struct tk_regex *re, pcre2_match_data *md, const char *s, size_t n, struct span_list *l)
{
    size_t prev = 0, search = 0, ms, me;
    while (search <= n && tk_regex_find(re, md, s, n, search, &ms, &me)) {
        if (ms > prev) spans_push(l, prev, ms, false);
        spans_push(l, ms, me, true);
        prev = me;
        if (me == ms) {
            if (me >= n) break;
            int k = tk_utf8_valid_len((const unsigned char *)s + me, n - me);
            search = me + (size_t)(k ? k : 1);
        } else {
            search = me;
        }
    }
    if (prev < n) spans_push(l, prev, n, false);
}

enum char_class { CC_NUMERIC, CC_WHITESPACE, CC_PUNCT };

static void find_chars(enum char_class cc, const char *s, size_t n, struct span_list *l)
{
    size_t prev = 0;
    for (size_t i = 0; i < n;) {
        int k;
        uint32_t c = tk_utf8_decode(s + i, &k);
        bool m = cc == CC_NUMERIC ? tk_is_numeric(c) : cc == CC_WHITESPACE ? tk_is_whitespace(c) : tk_is_punct(c);
        if (m) {
            if (i > prev) spans_push(l, prev, i, false);
            spans_push(l, i, i + (size_t)k, true);
            prev = i + (size_t)k;
        }
        i += (size_t)k;
    }
    if (prev < n) spans_push(l, prev, n, false);
}

/* Applies one non-sequence pre-tokenizer to one piece, appending results to out. */
static void pre_piece(const struct tk_pre *p, const char *s, size_t n, uint32_t orig, pcre2_match_data *md,
                      struct tk_pieces *out, struct strbuf *scratch, struct span_list *lp)
{
    struct span_list l = *lp;   // reused between pieces; handed back below
    l.n = 0;
    switch (p->type) {
    case TK_PRE_SEQUENCE:
        CHECK(0, "sequence handled by tk_pre_apply");
        break;
    case TK_PRE_SPLIT:
        find_regex(&p->re, md, s, n, &l);
        split_fold(&l, p->behavior, p->invert, s, orig, out);
        break;
    case TK_PRE_BYTELEVEL:
        if (p->add_prefix_space && (n == 0 || s[0] != ' ')) {
            strbuf_clear(scratch);
            strbuf_putc(scratch, ' ');
            strbuf_append(scratch, s, n);
            s = scratch->data;
            n = scratch->len;
        }
        if (!p->has_re) { if (n) tk_pieces_push(out, s, n, orig); break; }
        find_regex(&p->re, md, s, n, &l);
        split_fold(&l, TK_SPLIT_ISOLATED, false, s, orig, out);
        break;
    case TK_PRE_METASPACE: {
        size_t rl = strlen(p->repl);
        strbuf_clear(scratch);
        bool starts = n >= 1 && (s[0] == ' ' || (n >= rl && !memcmp(s, p->repl, rl)));
        if (!starts && (p->prepend == TK_PREPEND_ALWAYS || (p->prepend == TK_PREPEND_FIRST && orig == 0)))
            strbuf_puts(scratch, p->repl);
        for (size_t i = 0; i < n; i++) {
            if (s[i] == ' ') strbuf_puts(scratch, p->repl);
            else strbuf_putc(scratch, s[i]);
        }
        if (!p->split) { if (scratch->len) tk_pieces_push(out, scratch->data, scratch->len, orig); break; }
        size_t prev = 0;
        for (size_t i = 0; i + rl <= scratch->len;) {
            if (!memcmp(scratch->data + i, p->repl, rl)) {
                if (i > prev) spans_push(&l, prev, i, false);
                spans_push(&l, i, i + rl, true);
                prev = i + rl;
                i += rl;
            } else {
                i++;
            }
        }
        if (prev < scratch->len) spans_push(&l, prev, scratch->len, false);
        split_fold(&l, TK_SPLIT_MERGED_NEXT, false, scratch->data, orig, out);
        break;
    }
    case TK_PRE_DIGITS:
        find_chars(CC_NUMERIC, s, n, &l);
        split_fold(&l, p->individual_digits ? TK_SPLIT_ISOLATED : TK_SPLIT_CONTIGUOUS, false, s, orig, out);
        break;
    case TK_PRE_WHITESPACE:
        find_regex(&p->re, md, s, n, &l);
        split_fold(&l, TK_SPLIT_REMOVED, true, s, orig, out);
        break;
    case TK_PRE_WHITESPACE_SPLIT:
        find_chars(CC_WHITESPACE, s, n, &l);
        split_fold(&l, TK_SPLIT_REMOVED, false, s, orig, out);
        break;
    case TK_PRE_PUNCTUATION:
        find_chars(CC_PUNCT, s, n, &l);
        split_fold(&l, p->behavior, false, s, orig, out);
        break;
    case TK_PRE_BERT: {
        struct tk_pieces tmp = {0};
        find_chars(CC_WHITESPACE, s, n, &l);
        split_fold(&l, TK_SPLIT_REMOVED, false, s, orig, &tmp);
        for (int i = 0; i < tmp.n; i++) {
            l.n = 0;
            find_chars(CC_PUNCT, tmp.buf.data + tmp.sp[i].off, tmp.sp[i].len, &l);
            split_fold(&l, TK_SPLIT_ISOLATED, false, tmp.buf.data + tmp.sp[i].off, tmp.sp[i].orig, out);
        }
        tk_pieces_free(&tmp);
        break;
    }
    }
    *lp = l;
}

void tk_pre_apply(const struct tk_pre *p, struct tk_pieces *pcs, pcre2_match_data *md, struct tk_pieces *tmp)
{
    if (!p) return;
    if (p->type == TK_PRE_SEQUENCE) {
        for (int i = 0; i < p->n_subs; i++) tk_pre_apply(&p->subs[i], pcs, md, tmp);
        return;
    }
    struct strbuf scratch = {0};
    struct span_list l = {0};
    tk_pieces_clear(tmp);
    for (int i = 0; i < pcs->n; i++)
        pre_piece(p, pcs->buf.data + pcs->sp[i].off, pcs->sp[i].len, pcs->sp[i].orig, md, tmp, &scratch, &l);
    free(l.v);
    strbuf_free(&scratch);
    struct tk_pieces t = *pcs;
    *pcs = *tmp;
    *tmp = t;
}
