/* tokenizer_norm: the "normalizer" section of tokenizer.json (NFC, NFD, NFKC, NFKD via utf8proc,
 * Lowercase, Strip, StripAccents, Replace, Prepend, Sequence), parsed once and applied to each
 * segment of text between added tokens. Input is valid UTF-8 (tokenizer_util.c repaired it).
 * Parsed normalizers are immutable; tk_norm_apply is thread-safe (a match data per call).
 *
 *     struct tk_norm *n; tk_norm_parse(json_object_get(root, "normalizer"), &n);
 *     struct strbuf out = {0}; tk_norm_apply(n, s, len, &out);
 */
#include <string.h>

#include <utf8proc.h>

#include "base/log.h"
#include "text/tokenizer_internal.h"

static void norm_deinit(struct tk_norm *n)
{
    for (int i = 0; i < n->n_subs; i++) norm_deinit(&n->subs[i]);
    free(n->subs);
    tk_regex_free(&n->re);
    free(n->content);
    free(n->safe);
}

void tk_norm_free(struct tk_norm *n)
{
    if (!n) return;
    norm_deinit(n);
    free(n);
}

/* ==== Fast path for Unicode normalization ====
 * A code point is "safe" when normalization maps it to itself and it can neither combine with the
 * code point before it nor be reordered: combining class 0, not the second half of a canonical
 * composition (utf8proc marks those with comb_index >= 0x8000; Hangul V/T jamo are algorithmic),
 * and a one-char normalization that is the identity. The boundary before a safe code point is a
 * normalization boundary, so only the runs of unsafe code points (with the starter before them)
 * go through utf8proc; all-safe text (most text) is copied. */

#define N_CODEPOINTS 0x110000

static uint8_t *safe_table(int opts)
{
    uint8_t *t = xcalloc(N_CODEPOINTS / 8, 1);
    for (int32_t c = 0; c < N_CODEPOINTS; c++) {
        if (c >= 0xD800 && c <= 0xDFFF) continue;
        const utf8proc_property_t *p = utf8proc_get_property(c);
        if (p->combining_class != 0) continue;
        if (p->comb_index >= 0x8000 && p->comb_index != 0xFFFF) continue;
        if ((c >= 0x1161 && c <= 0x1175) || (c >= 0x11A8 && c <= 0x11C2)) continue;
        if (p->decomp_seqindex != UINT16_MAX || (c >= 0xAC00 && c <= 0xD7A3)) {
            // Has a decomposition: safe only if normalizing it alone gives it back.
            utf8proc_int32_t buf[8];
            utf8proc_ssize_t k = utf8proc_decompose_char(c, buf, 8, (utf8proc_option_t)((opts & ~UTF8PROC_COMPOSE) | UTF8PROC_DECOMPOSE), NULL);
            if (k != 1 || buf[0] != c) {
                if (!(opts & UTF8PROC_COMPOSE) || k <= 0 || k > 8) continue;
                utf8proc_ssize_t m = utf8proc_normalize_utf32(buf, k, (utf8proc_option_t)(opts | UTF8PROC_STABLE));
                if (m != 1 || buf[0] != c) continue;
            }
        }
        t[c >> 3] |= (uint8_t)(1u << (c & 7));
    }
    return t;
}

static inline bool is_safe(const uint8_t *t, uint32_t c)
{
    return c < N_CODEPOINTS && (t[c >> 3] >> (c & 7)) & 1;
}

/* The string a normalizer of this type requires under key, into n->content. */
static enum status norm_content(json_t *j, const char *type, const char *key, struct tk_norm *n)
{
    const char *s = json_string_value(json_object_get(j, key));
    if (!s) {
        LOG_ERR("tokenizer: %s normalizer without %s", type, key);
        return STATUS_EFORMAT;
    }
    n->content = xstrdup(s);
    return STATUS_OK;
}

static enum status norm_parse_into(json_t *j, struct tk_norm *n, int depth)
{
    memset(n, 0, sizeof *n);
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type || depth > 16) {
        LOG_ERR("tokenizer: normalizer without a type");
        return STATUS_EFORMAT;
    }
    if (!strcmp(type, "Sequence")) {
        n->type = TK_NORM_SEQUENCE;
        json_t *arr = json_object_get(j, "normalizers");
        if (!json_is_array(arr)) { LOG_ERR("tokenizer: Sequence normalizer without normalizers"); return STATUS_EFORMAT; }
        n->subs = xcalloc(json_array_size(arr) + 1, sizeof *n->subs);
        for (size_t i = 0; i < json_array_size(arr); i++) {
            enum status st = norm_parse_into(json_array_get(arr, i), &n->subs[i], depth + 1);
            n->n_subs = (int)i + 1;
            if (st != STATUS_OK) return st;
        }
        return STATUS_OK;
    }
    if (!strcmp(type, "NFC")) { n->type = TK_NORM_NFC; n->safe = safe_table(UTF8PROC_COMPOSE); return STATUS_OK; }
    if (!strcmp(type, "NFD")) { n->type = TK_NORM_NFD; n->safe = safe_table(UTF8PROC_DECOMPOSE); return STATUS_OK; }
    if (!strcmp(type, "NFKC")) { n->type = TK_NORM_NFKC; n->safe = safe_table(UTF8PROC_COMPOSE | UTF8PROC_COMPAT); return STATUS_OK; }
    if (!strcmp(type, "NFKD")) { n->type = TK_NORM_NFKD; n->safe = safe_table(UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT); return STATUS_OK; }
    if (!strcmp(type, "Lowercase")) { n->type = TK_NORM_LOWERCASE; return STATUS_OK; }
    if (!strcmp(type, "StripAccents")) { n->type = TK_NORM_STRIP_ACCENTS; return STATUS_OK; }
    if (!strcmp(type, "Strip")) {
        n->type = TK_NORM_STRIP;
        n->left = json_is_true(json_object_get(j, "strip_left"));
        n->right = json_is_true(json_object_get(j, "strip_right"));
        return STATUS_OK;
    }
    if (!strcmp(type, "Prepend")) {
        n->type = TK_NORM_PREPEND;
        return norm_content(j, type, "prepend", n);
    }
    if (!strcmp(type, "Replace")) {
        n->type = TK_NORM_REPLACE;
        enum status st = norm_content(j, type, "content", n);
        return st != STATUS_OK ? st : tk_pattern_parse(json_object_get(j, "pattern"), &n->re);
    }
    LOG_ERR("tokenizer: unsupported normalizer type '%s'", type);
    return STATUS_EUNSUPPORTED;
}

enum status tk_norm_parse(json_t *j, struct tk_norm **out)
{
    *out = NULL;
    if (!j || json_is_null(j)) return STATUS_OK;
    struct tk_norm *n = xcalloc(1, sizeof *n);
    enum status st = norm_parse_into(j, n, 0);
    if (st != STATUS_OK) { tk_norm_free(n); return st; }
    *out = n;
    return STATUS_OK;
}

static bool all_ascii(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) return false;
    return true;
}

static void map_run(int opts, const char *s, size_t len, struct strbuf *out)
{
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &dst,
                                      (utf8proc_option_t)(UTF8PROC_STABLE | opts));
    if (n < 0) strbuf_append(out, s, len);   // cannot happen on valid UTF-8; keep the text
    else strbuf_append(out, (const char *)dst, (size_t)n);
    free(dst);
}

static void apply_unicode(const struct tk_norm *nm, int opts, const char *s, size_t len, struct strbuf *out)
{
    if (all_ascii(s, len)) { strbuf_append(out, s, len); return; }
    size_t i = 0, prev = 0, done = 0;   // prev: start of the char before i
    while (i < len) {
        if ((unsigned char)s[i] < 0x80) { prev = i++; continue; }
        int k;
        uint32_t c = tk_utf8_decode(s + i, &k);
        if (is_safe(nm->safe, c)) { prev = i; i += (size_t)k; continue; }
        size_t start = i > done ? prev : i;   // include the starter this run may compose with
        if (start < done) start = done;
        strbuf_append(out, s + done, start - done);
        size_t end = i + (size_t)k;
        while (end < len) {
            int kk;
            uint32_t cc = tk_utf8_decode(s + end, &kk);
            if (cc < 0x80 || is_safe(nm->safe, cc)) break;
            end += (size_t)kk;
        }
        map_run(opts, s + start, end - start, out);
        done = i = end;
        prev = end;
    }
    strbuf_append(out, s + done, len - done);
}

static void apply_one(const struct tk_norm *n, const char *s, size_t len, struct strbuf *out)
{
    switch (n->type) {
    case TK_NORM_SEQUENCE: {
        struct strbuf a = {0}, b = {0};
        strbuf_append(&a, s, len);
        for (int i = 0; i < n->n_subs; i++) {
            strbuf_clear(&b);
            apply_one(&n->subs[i], a.data, a.len, &b);
            struct strbuf t = a; a = b; b = t;
        }
        strbuf_append(out, a.data, a.len);
        strbuf_free(&a);
        strbuf_free(&b);
        return;
    }
    case TK_NORM_NFC: apply_unicode(n, UTF8PROC_COMPOSE, s, len, out); return;
    case TK_NORM_NFD: apply_unicode(n, UTF8PROC_DECOMPOSE, s, len, out); return;
    case TK_NORM_NFKC: apply_unicode(n, UTF8PROC_COMPOSE | UTF8PROC_COMPAT, s, len, out); return;
    case TK_NORM_NFKD: apply_unicode(n, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, s, len, out); return;
    case TK_NORM_LOWERCASE:
        for (size_t i = 0; i < len;) {
            int k;
            uint32_t c = tk_utf8_decode(s + i, &k);
            char buf[4];
            if (c == 0x130) strbuf_append(out, "i\xCC\x87", 3);   // Rust: U+0130 -> "i\u0307"
            else strbuf_append(out, buf, (size_t)tk_utf8_encode((uint32_t)utf8proc_tolower((utf8proc_int32_t)c), buf));
            i += (size_t)k;
        }
        return;
    case TK_NORM_STRIP_ACCENTS:
        for (size_t i = 0; i < len;) {
            int k;
            uint32_t c = tk_utf8_decode(s + i, &k);
            utf8proc_category_t cat = utf8proc_category((utf8proc_int32_t)c);   // HF drops every Mark (M*)
            if (cat != UTF8PROC_CATEGORY_MN && cat != UTF8PROC_CATEGORY_MC && cat != UTF8PROC_CATEGORY_ME)
                strbuf_append(out, s + i, (size_t)k);
            i += (size_t)k;
        }
        return;
    case TK_NORM_STRIP: {
        size_t a = 0, b = len;
        while (n->left && a < b) {
            int k;
            if (!tk_is_whitespace(tk_utf8_decode(s + a, &k))) break;
            a += (size_t)k;
        }
        while (n->right && b > a) {
            size_t p = b - 1;
            while (p > a && ((unsigned char)s[p] & 0xC0) == 0x80) p--;
            int k;
            if (!tk_is_whitespace(tk_utf8_decode(s + p, &k))) break;
            b = p;
        }
        strbuf_append(out, s + a, b - a);
        return;
    }
    case TK_NORM_PREPEND:
        if (len) strbuf_puts(out, n->content);
        strbuf_append(out, s, len);
        return;
    case TK_NORM_REPLACE: {
        pcre2_match_data *md = pcre2_match_data_create(4, NULL);
        size_t pos = 0, ms, me;
        size_t search = 0;
        while (search <= len && tk_regex_find(&n->re, md, s, len, search, &ms, &me)) {
            strbuf_append(out, s + pos, ms - pos);
            strbuf_puts(out, n->content);
            pos = me;
            if (me == ms) {   // empty match: step over one char
                if (me >= len) break;
                int k = tk_utf8_valid_len((const unsigned char *)s + me, len - me);
                search = me + (size_t)(k ? k : 1);
                strbuf_append(out, s + me, search - me);
                pos = search;
            } else {
                search = me;
            }
        }
        strbuf_append(out, s + pos, len - pos);
        pcre2_match_data_free(md);
        return;
    }
    }
}

void tk_norm_apply(const struct tk_norm *n, const char *s, size_t len, struct strbuf *out)
{
    strbuf_clear(out);
    if (!n) { strbuf_append(out, s, len); return; }
    apply_one(n, s, len, out);
    if (!out->data) strbuf_append(out, "", 0);
}
