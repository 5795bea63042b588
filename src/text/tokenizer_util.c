/* tokenizer_util: UTF-8 (validation, lossy repair), Unicode character classes, the GPT-2 byte
 * alphabet, a string->int map, piece lists and PCRE2 regexes for the tokenizer_*.c files.
 *
 * Invalid UTF-8 policy: input bytes are repaired once at the start of encoding with
 * tk_utf8_lossy, which replaces each maximal invalid subsequence by U+FFFD exactly like Rust's
 * String::from_utf8_lossy (and Python's errors="replace"); everything after that sees valid UTF-8.
 * Stateless and thread-safe.
 *
 *     struct strbuf sb = {0}; tk_utf8_lossy(&sb, bytes, n);   // sb.data is valid UTF-8
 */
#include <string.h>

#include <utf8proc.h>
#include <xxhash.h>

#include "base/log.h"
#include "text/tokenizer_internal.h"

/* ==== UTF-8 ==== */

/* Returns the length of the valid sequence at s (> 0), or minus the length of the maximal invalid
 * subpart to replace by one U+FFFD (< 0). n >= 1. */
static int utf8_step(const unsigned char *s, size_t n)
{
    unsigned char b = s[0];
    if (b < 0x80) return 1;
    int need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) need = 1;
    else if (b == 0xE0) { need = 2; lo = 0xA0; }
    else if (b >= 0xE1 && b <= 0xEC) need = 2;
    else if (b == 0xED) { need = 2; hi = 0x9F; }
    else if (b >= 0xEE && b <= 0xEF) need = 2;
    else if (b == 0xF0) { need = 3; lo = 0x90; }
    else if (b >= 0xF1 && b <= 0xF3) need = 3;
    else if (b == 0xF4) { need = 3; hi = 0x8F; }
    else return -1;
    for (int i = 1; i <= need; i++) {
        if ((size_t)i >= n) return -i;
        unsigned char c = s[i];
        if (i == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) return -i;
    }
    return need + 1;
}

int tk_utf8_valid_len(const unsigned char *s, size_t n)
{
    if (n == 0) return 0;
    int k = utf8_step(s, n);
    return k > 0 ? k : 0;
}

uint32_t tk_utf8_decode(const char *s, int *len)
{
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80) { *len = 1; return u[0]; }
    if (u[0] < 0xE0) { *len = 2; return ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F); }
    if (u[0] < 0xF0) {
        *len = 3;
        return ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
    }
    *len = 4;
    return ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) | ((uint32_t)(u[2] & 0x3F) << 6) |
           (u[3] & 0x3F);
}

int tk_utf8_encode(uint32_t cp, char out[4])
{
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12)); out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18)); out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

bool tk_utf8_lossy(struct strbuf *out, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    bool valid = true;
    size_t i = 0, run = 0;   // run: start of the pending valid stretch
    strbuf_reserve(out, n);
    while (i < n) {
        if (u[i] < 0x80) { i++; continue; }
        int k = utf8_step(u + i, n - i);
        if (k > 0) { i += (size_t)k; continue; }
        valid = false;
        strbuf_append(out, s + run, i - run);
        strbuf_append(out, "\xEF\xBF\xBD", 3);
        i += (size_t)(-k);
        run = i;
    }
    strbuf_append(out, s + run, n - run);
    return valid;
}

/* ==== Character classes ==== */

bool tk_is_whitespace(uint32_t c)
{
    return (c >= 9 && c <= 13) || c == ' ' || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

bool tk_is_numeric(uint32_t c)
{
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

bool tk_is_alnum(uint32_t c)
{
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) || k == UTF8PROC_CATEGORY_MC ||
           tk_is_numeric(c);
}

bool tk_is_punct(uint32_t c)
{
    if (c < 0x80) return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

/* ==== GPT-2 byte alphabet ==== */

void tk_bytelevel_init(struct tk_bytelevel *bl)
{
    // Printable bytes map to themselves; the other 68 map to 256, 257, ... in byte order.
    uint32_t next = 256;
    for (int i = 0; i < 512; i++) bl->cp_to_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        bl->byte_to_cp[b] = keep ? (uint32_t)b : next++;
        bl->cp_to_byte[bl->byte_to_cp[b]] = (int16_t)b;
    }
}

/* ==== Map ==== */

uint32_t tk_hash(const char *s, size_t n)
{
    return (uint32_t)XXH3_64bits(s, n);
}

void tk_map_init(struct tk_map *m, uint32_t n_expected)
{
    uint32_t cap = 16;
    while (cap < n_expected * 2u + 16u) cap <<= 1;
    m->ents = xcalloc(cap, sizeof *m->ents);
    m->cap = cap;
    m->n = 0;
}

void tk_map_free(struct tk_map *m)
{
    free(m->ents);
    memset(m, 0, sizeof *m);
}

static void map_grow(struct tk_map *m)
{
    struct tk_map old = *m;
    tk_map_init(m, old.cap);
    for (uint32_t i = 0; i < old.cap; i++)
        if (old.ents[i].key) tk_map_put(m, old.ents[i].key, old.ents[i].len, old.ents[i].val);
    free(old.ents);
}

bool tk_map_put(struct tk_map *m, const char *key, uint32_t len, int32_t val)
{
    if ((m->n + 1) * 2 > m->cap) map_grow(m);
    uint32_t h = tk_hash(key, len), mask = m->cap - 1;
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        struct tk_map_ent *e = &m->ents[i];
        if (!e->key) {
            e->key = key; e->len = len; e->hash = h; e->val = val;
            m->n++;
            return true;
        }
        if (e->hash == h && e->len == len && !memcmp(e->key, key, len)) return false;
    }
}

bool tk_map_get(const struct tk_map *m, const char *key, uint32_t len, int32_t *val)
{
    if (!m->cap) return false;
    uint32_t h = tk_hash(key, len), mask = m->cap - 1;
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        const struct tk_map_ent *e = &m->ents[i];
        if (!e->key) return false;
        if (e->hash == h && e->len == len && !memcmp(e->key, key, len)) { *val = e->val; return true; }
    }
}

/* ==== Pieces ==== */

void tk_pieces_push(struct tk_pieces *p, const char *s, size_t len, uint32_t orig)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 64;
        p->sp = xrealloc(p->sp, (size_t)p->cap * sizeof *p->sp);
    }
    p->sp[p->n].off = (uint32_t)p->buf.len;
    p->sp[p->n].len = (uint32_t)len;
    p->sp[p->n].orig = orig;
    p->n++;
    strbuf_append(&p->buf, s, len);
}

void tk_pieces_clear(struct tk_pieces *p)
{
    p->n = 0;
    strbuf_clear(&p->buf);
}

void tk_pieces_free(struct tk_pieces *p)
{
    strbuf_free(&p->buf);
    free(p->sp);
    memset(p, 0, sizeof *p);
}

/* ==== Regex ==== */

enum status tk_regex_compile(struct tk_regex *re, const char *pattern, size_t len, bool literal)
{
    int err;
    PCRE2_SIZE off;
    uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);
    struct strbuf modern = {0};
    if (!literal && tk_regex_modernize(pattern, len, &modern))
        re->code = pcre2_compile((PCRE2_SPTR)modern.data, modern.len, opts, &err, &off, NULL);
    else re->code = pcre2_compile((PCRE2_SPTR)pattern, len, opts, &err, &off, NULL);
    strbuf_free(&modern);
    if (!re->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        LOG_ERR("tokenizer: regex /%.*s/ at %zu: %s", (int)(len > 200 ? 200 : len), pattern, (size_t)off,
                (const char *)msg);
        return STATUS_EFORMAT;
    }
    pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);   // falls back to the interpreter if unavailable
    return STATUS_OK;
}

void tk_regex_free(struct tk_regex *re)
{
    if (re->code) pcre2_code_free(re->code);
    re->code = NULL;
}

bool tk_regex_find(const struct tk_regex *re, pcre2_match_data *md, const char *s, size_t n, size_t start,
                   size_t *m_start, size_t *m_end)
{
    if (start > n) return false;
    int rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK, md, NULL);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT || rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT) {
        // Long runs can exhaust the default 32 KiB JIT stack: retry with a large one.
        pcre2_match_context *mc = pcre2_match_context_create(NULL);
        pcre2_jit_stack *js = pcre2_jit_stack_create(64 * 1024, 256 * 1024 * 1024, NULL);
        if (mc && js) {
            pcre2_jit_stack_assign(mc, NULL, js);
            rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, start, PCRE2_NO_UTF_CHECK, md, mc);
        }
        if (js) pcre2_jit_stack_free(js);
        if (mc) pcre2_match_context_free(mc);
    }
    if (rc < 0) {
        if (rc != PCRE2_ERROR_NOMATCH) LOG_WARN("tokenizer: regex match failed (%d); treating as no match", rc);
        return false;
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    if (ov[0] > ov[1] || ov[1] > n) return false;   // \K tricks: ignore
    *m_start = ov[0];
    *m_end = ov[1];
    return true;
}

enum status tk_pattern_parse(json_t *pattern, struct tk_regex *re)
{
    json_t *s = json_object_get(pattern, "String");
    if (json_is_string(s)) return tk_regex_compile(re, json_string_value(s), json_string_length(s), true);
    json_t *r = json_object_get(pattern, "Regex");
    if (json_is_string(r)) return tk_regex_compile(re, json_string_value(r), json_string_length(r), false);
    LOG_ERR("tokenizer: pattern is neither {\"String\"} nor {\"Regex\"}");
    return STATUS_EFORMAT;
}
