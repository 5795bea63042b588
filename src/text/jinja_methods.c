/* jinja_methods: Python methods templates call on values (str.split, dict.get, ...) and the global
 * functions transformers provides (range, dict, namespace, raise_exception, strftime_now).
 *
 * Mutating methods (list.append, dict.update, ...) raise, as in transformers' immutable sandbox.
 * Strings are UTF-8; methods that count or index work on code points like Python's str.
 * Called by jinja_eval.c (method calls) and jinja_filters.c (shared string helpers).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <utf8proc.h>

#include "text/jinja_int.h"

#define MAX_RANGE 100000   // jinja2.sandbox.MAX_RANGE

/* ==== String helpers ==== */
static size_t cp_len(const char *s, size_t n, size_t i)
{
    size_t j = i + 1;
    while (j < n && ((unsigned char)s[j] & 0xC0) == 0x80) j++;
    return j - i;
}

static bool py_space_at(const char *s, size_t n, size_t i, size_t *len)
{
    unsigned char ch = (unsigned char)s[i];
    *len = 1;
    if (ch == ' ' || (ch >= 0x09 && ch <= 0x0d) || (ch >= 0x1c && ch <= 0x1f)) return true;
    if (ch < 0x80) return false;
    utf8proc_int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
    if (k <= 0) return false;
    *len = (size_t)k;
    return cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

static bool in_chars(struct jv chars, const char *s, size_t n, size_t i, size_t *len)
{
    if (chars.kind != JV_STR) return py_space_at(s, n, i, len);
    *len = cp_len(s, n, i);
    for (size_t j = 0; j < chars.n; j += cp_len(chars.u.s, chars.n, j)) {
        size_t k = cp_len(chars.u.s, chars.n, j);
        if (k == *len && !memcmp(chars.u.s + j, s + i, k)) return true;
    }
    return false;
}

/* strip: which = 1 left, 2 right, 3 both; chars: JV_STR set or anything else for whitespace */
struct jv jstr_strip(struct jctx *c, struct jv s, struct jv chars, int which)
{
    (void)c;
    size_t b = 0, e = s.n, k;
    if (which & 1) while (b < e && in_chars(chars, s.u.s, s.n, b, &k)) b += k;
    if (which & 2)
        while (e > b) {
            size_t p = e - 1;
            while (p > b && ((unsigned char)s.u.s[p] & 0xC0) == 0x80) p--;
            if (!in_chars(chars, s.u.s, s.n, p, &k) || p + k != e) break;
            e = p;
        }
    return jv_str(s.u.s + b, e - b);
}

static struct jv map_case(struct jctx *c, struct jv s, int mode)   // 0 lower, 1 upper
{
    struct jbuf b = {0};
    for (size_t i = 0; i < s.n;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s.u.s + i, (utf8proc_ssize_t)(s.n - i), &cp);
        if (k <= 0) { jbuf_putc(c, &b, s.u.s[i]); i++; continue; }
        // Python uses the full (multi-character) mappings for a few code points
        if (mode && cp == 0xDF) { jbuf_put(c, &b, "SS", 2); i += (size_t)k; continue; }
        if (mode && cp >= 0xFB00 && cp <= 0xFB06) {
            static const char *const lig[] = { "FF", "FI", "FL", "FFI", "FFL", "ST", "ST" };
            jbuf_put(c, &b, lig[cp - 0xFB00], strlen(lig[cp - 0xFB00]));
            i += (size_t)k;
            continue;
        }
        if (!mode && cp == 0x130) { jbuf_put(c, &b, "i\xcc\x87", 3); i += (size_t)k; continue; }
        cp = mode ? utf8proc_toupper(cp) : utf8proc_tolower(cp);
        utf8proc_uint8_t enc[4];
        utf8proc_ssize_t m = utf8proc_encode_char(cp, enc);
        jbuf_put(c, &b, (const char *)enc, (size_t)m);
        i += (size_t)k;
    }
    return b.n ? jv_str(b.p, b.n) : jv_str("", 0);
}
struct jv jstr_lower(struct jctx *c, struct jv s) { return map_case(c, s, 0); }
struct jv jstr_upper(struct jctx *c, struct jv s) { return map_case(c, s, 1); }

static bool is_cased_letter(const char *s, size_t n, size_t i)
{
    utf8proc_int32_t cp;
    if (utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp) <= 0) return false;
    utf8proc_category_t cat = utf8proc_category(cp);
    return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT;
}

/* Python str.title(): a cased letter after an uncased char is upper-cased, others lower-cased */
struct jv jstr_pytitle(struct jctx *c, struct jv s)
{
    struct jbuf b = {0};
    bool prev_cased = false;
    for (size_t i = 0; i < s.n;) {
        size_t k = cp_len(s.u.s, s.n, i);
        bool cased = is_cased_letter(s.u.s, s.n, i);
        struct jv ch = jv_str(s.u.s + i, k);
        ch = cased ? map_case(c, ch, prev_cased ? 0 : 1) : ch;
        jbuf_put(c, &b, ch.u.s, ch.n);
        prev_cased = cased;
        i += k;
    }
    return b.n ? jv_str(b.p, b.n) : jv_str("", 0);
}

struct jv jstr_capitalize(struct jctx *c, struct jv s)
{
    if (!s.n) return s;
    size_t k = cp_len(s.u.s, s.n, 0);
    struct jv a = map_case(c, jv_str(s.u.s, k), 1), b = map_case(c, jv_str(s.u.s + k, s.n - k), 0);
    struct jbuf o = {0};
    jbuf_put(c, &o, a.u.s, a.n);
    jbuf_put(c, &o, b.u.s, b.n);
    return jv_str(o.p, o.n);
}

struct jv jstr_replace(struct jctx *c, struct jv s, struct jv old, struct jv new, int64_t count)
{
    struct jbuf b = {0};
    if (!old.n) {   // Python inserts `new` around every character
        int64_t k = 0;
        for (size_t i = 0; i <= s.n;) {
            if (count < 0 || k < count) { jbuf_put(c, &b, new.u.s, new.n); k++; }
            if (i == s.n) break;
            size_t l = cp_len(s.u.s, s.n, i);
            jbuf_put(c, &b, s.u.s + i, l);
            i += l;
        }
        return b.n ? jv_str(b.p, b.n) : jv_str("", 0);
    }
    size_t i = 0;
    int64_t k = 0;
    while (i < s.n && (count < 0 || k < count)) {
        const char *hit = memmem(s.u.s + i, s.n - i, old.u.s, old.n);
        if (!hit) break;
        jbuf_put(c, &b, s.u.s + i, (size_t)(hit - (s.u.s + i)));
        jbuf_put(c, &b, new.u.s, new.n);
        i = (size_t)(hit - s.u.s) + old.n;
        k++;
    }
    jbuf_put(c, &b, s.u.s + i, s.n - i);
    return b.n ? jv_str(b.p, b.n) : jv_str("", 0);
}

static struct jv split(struct jctx *c, struct jv s, struct jv sep, int64_t maxsplit, bool from_right)
{
    struct jv out = jv_list_new(c, 0);
    if (sep.kind == JV_STR) {
        if (!sep.n) jfail(c, "line %d: empty separator", c->line);
        if (from_right) {
            // collect pieces from the right, then reverse
            size_t e = s.n;
            int64_t k = 0;
            struct jv rev = jv_list_new(c, 0);
            while (maxsplit < 0 || k < maxsplit) {
                const char *hit = NULL;
                for (size_t p = e >= sep.n ? e - sep.n + 1 : 0; p-- > 0;)
                    if (!memcmp(s.u.s + p, sep.u.s, sep.n)) { hit = s.u.s + p; break; }
                if (!hit) break;
                size_t h = (size_t)(hit - s.u.s);
                jlist_push(c, rev.u.list, jv_str(s.u.s + h + sep.n, e - h - sep.n));
                e = h;
                k++;
            }
            jlist_push(c, out.u.list, jv_str(s.u.s, e));
            for (size_t i = rev.u.list->n; i-- > 0;) jlist_push(c, out.u.list, rev.u.list->items[i]);
            return out;
        }
        size_t i = 0;
        int64_t k = 0;
        while (maxsplit < 0 || k < maxsplit) {
            const char *hit = memmem(s.u.s + i, s.n - i, sep.u.s, sep.n);
            if (!hit) break;
            jlist_push(c, out.u.list, jv_str(s.u.s + i, (size_t)(hit - (s.u.s + i))));
            i = (size_t)(hit - s.u.s) + sep.n;
            k++;
        }
        jlist_push(c, out.u.list, jv_str(s.u.s + i, s.n - i));
        return out;
    }
    // whitespace split (rsplit without sep handled the same way unless maxsplit limits it)
    size_t i = 0, k;
    int64_t m = 0;
    if (from_right && maxsplit >= 0) {
        struct jv all = split(c, s, jv_none(), -1, false);
        size_t n = all.u.list->n;
        if ((int64_t)n <= maxsplit + 1) return all;
        // join the leading pieces back with the original text
        size_t keep = n - (size_t)maxsplit;
        struct jv first = all.u.list->items[0], last = all.u.list->items[keep - 1];
        jlist_push(c, out.u.list, jv_str(first.u.s, (size_t)(last.u.s + last.n - first.u.s)));
        for (size_t j = keep; j < n; j++) jlist_push(c, out.u.list, all.u.list->items[j]);
        return out;
    }
    for (;;) {
        while (i < s.n && py_space_at(s.u.s, s.n, i, &k)) i += k;
        if (i >= s.n) break;
        if (maxsplit >= 0 && m >= maxsplit) {
            size_t e = s.n;
            while (e > i && py_space_at(s.u.s, s.n, e - 1, &k)) e--;
            jlist_push(c, out.u.list, jv_str(s.u.s + i, e - i));
            break;
        }
        size_t j = i;
        while (j < s.n && !py_space_at(s.u.s, s.n, j, &k)) j += cp_len(s.u.s, s.n, j);
        jlist_push(c, out.u.list, jv_str(s.u.s + i, j - i));
        m++;
        i = j;
    }
    return out;
}

static bool str_is(struct jv s, int (*pred)(utf8proc_int32_t))
{
    if (!s.n) return false;
    for (size_t i = 0; i < s.n;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s.u.s + i, (utf8proc_ssize_t)(s.n - i), &cp);
        if (k <= 0 || !pred(cp)) return false;
        i += (size_t)k;
    }
    return true;
}
static int p_digit(utf8proc_int32_t cp) { return utf8proc_category(cp) == UTF8PROC_CATEGORY_ND; }
static int p_alpha(utf8proc_int32_t cp)
{
    utf8proc_category_t k = utf8proc_category(cp);
    return k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO;
}
static int p_alnum(utf8proc_int32_t cp) { return p_alpha(cp) || p_digit(cp); }
static int p_space(utf8proc_int32_t cp)
{
    return cp == ' ' || (cp >= 9 && cp <= 13) || (cp >= 0x1c && cp <= 0x1f) || cp == 0x85 || cp == 0xa0 ||
           utf8proc_category(cp) == UTF8PROC_CATEGORY_ZS || cp == 0x2028 || cp == 0x2029;
}

/* str.istitle: upper/titlecase letters only after uncased ones, lowercase only after cased ones */
static bool str_istitle(struct jv s)
{
    bool cased = false, prev_cased = false;
    for (size_t i = 0; i < s.n;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s.u.s + i, (utf8proc_ssize_t)(s.n - i), &cp);
        if (k <= 0) return false;
        utf8proc_category_t cat = utf8proc_category(cp);
        if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LT) {
            if (prev_cased) return false;
            prev_cased = cased = true;
        } else if (cat == UTF8PROC_CATEGORY_LL) {
            if (!prev_cased) return false;
            prev_cased = cased = true;
        } else prev_cased = false;
        i += (size_t)k;
    }
    return cased;
}

bool jstr_has_case(struct jv s, bool upper)   // islower / isupper
{
    bool any = false;
    for (size_t i = 0; i < s.n;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s.u.s + i, (utf8proc_ssize_t)(s.n - i), &cp);
        if (k <= 0) return false;
        utf8proc_category_t cat = utf8proc_category(cp);
        if (cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LT) { if (!upper) return false; any = true; }
        if (cat == UTF8PROC_CATEGORY_LL) { if (upper) return false; any = true; }
        i += (size_t)k;
    }
    return any;
}

/* ==== Methods ==== */
static struct jv arg(struct jv *args, int n_pos, const char **kw, int n_kw, int i, const char *name, struct jv dflt)
{
    if (i < n_pos) return args[i];
    for (int k = 0; k < n_kw; k++) if (!strcmp(kw[k], name)) return args[n_pos + k];
    return dflt;
}

static struct jv need_str(struct jctx *c, struct jv v, const char *what)
{
    if (v.kind != JV_STR) jfail(c, "line %d: %s: expected a string, got %s", c->line, what, jv_type_name(v));
    return v;
}

static int64_t need_int(struct jctx *c, struct jv v, const char *what)
{
    if (v.kind == JV_INT) return v.u.i;
    if (v.kind == JV_BOOL) return v.u.b;
    if (v.kind == JV_NONE) return -1;
    jfail(c, "line %d: %s: expected an integer, got %s", c->line, what, jv_type_name(v));
}

static bool affix_match(struct jctx *c, struct jv s, struct jv a, bool start)
{
    if (a.kind == JV_LIST && a.tuple) {
        for (size_t i = 0; i < a.u.list->n; i++) if (affix_match(c, s, a.u.list->items[i], start)) return true;
        return false;
    }
    need_str(c, a, start ? "startswith" : "endswith");
    if (a.n > s.n) return false;
    return !memcmp(start ? s.u.s : s.u.s + s.n - a.n, a.u.s, a.n);
}

static int64_t cp_index(struct jv s, const char *at)   // code-point index of a byte position
{
    return (int64_t)utf8_count(s.u.s, (size_t)(at - s.u.s));
}

static struct jv str_method(struct jctx *c, struct jv s, const char *m, struct jv *a, int np, const char **kw, int nk,
                            bool *found)
{
    struct jv none = jv_none();
    *found = true;
    if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
        if (np < 1) jfail(c, "line %d: %s takes at least 1 argument", c->line, m);
        return jv_bool(affix_match(c, s, a[0], m[0] == 's'));
    }
    if (!strcmp(m, "split") || !strcmp(m, "rsplit")) {
        struct jv sep = arg(a, np, kw, nk, 0, "sep", none);
        if (sep.kind != JV_NONE) need_str(c, sep, m);
        return split(c, s, sep, need_int(c, arg(a, np, kw, nk, 1, "maxsplit", jv_int(-1)), m), m[0] == 'r');
    }
    if (!strcmp(m, "strip") || !strcmp(m, "lstrip") || !strcmp(m, "rstrip")) {
        struct jv chars = arg(a, np, kw, nk, 0, "chars", none);
        if (chars.kind != JV_NONE) need_str(c, chars, m);
        return jstr_strip(c, s, chars, m[0] == 'l' ? 1 : m[0] == 'r' ? 2 : 3);
    }
    if (!strcmp(m, "upper")) return jstr_upper(c, s);
    if (!strcmp(m, "lower") || !strcmp(m, "casefold")) return jstr_lower(c, s);
    if (!strcmp(m, "title")) return jstr_pytitle(c, s);
    if (!strcmp(m, "capitalize")) return jstr_capitalize(c, s);
    if (!strcmp(m, "replace")) {
        if (np < 2) jfail(c, "line %d: replace takes at least 2 arguments", c->line);
        return jstr_replace(c, s, need_str(c, a[0], m), need_str(c, a[1], m),
                            need_int(c, arg(a, np, kw, nk, 2, "count", jv_int(-1)), m));
    }
    if (!strcmp(m, "format")) return jstr_format(c, s, a, np, kw, nk);
    if (!strcmp(m, "find") || !strcmp(m, "rfind") || !strcmp(m, "index") || !strcmp(m, "rindex") || !strcmp(m, "count")) {
        if (np < 1) jfail(c, "line %d: %s takes at least 1 argument", c->line, m);
        struct jv sub = need_str(c, a[0], m);
        if (!strcmp(m, "count")) {
            if (!sub.n) return jv_int((int64_t)utf8_count(s.u.s, s.n) + 1);
            int64_t k = 0;
            for (const char *p = s.u.s; (p = memmem(p, s.n - (size_t)(p - s.u.s), sub.u.s, sub.n)); p += sub.n) k++;
            return jv_int(k);
        }
        const char *hit = NULL;
        if (m[0] == 'r') {
            for (size_t p = s.n >= sub.n ? s.n - sub.n + 1 : 0; p-- > 0;)
                if (!memcmp(s.u.s + p, sub.u.s, sub.n)) { hit = s.u.s + p; break; }
        } else hit = sub.n ? memmem(s.u.s, s.n, sub.u.s, sub.n) : s.u.s;
        if (!hit && strstr(m, "index")) jfail(c, "line %d: substring not found", c->line);
        return jv_int(hit ? cp_index(s, hit) : -1);
    }
    if (!strcmp(m, "join")) {
        if (np < 1) jfail(c, "line %d: join takes 1 argument", c->line);
        struct jv items = jv_iter_list(c, a[0]);
        struct jbuf b = {0};
        for (size_t i = 0; i < items.u.list->n; i++) {
            if (i) jbuf_put(c, &b, s.u.s, s.n);
            struct jv it = items.u.list->items[i];
            if (it.kind != JV_STR) jfail(c, "line %d: sequence item %zu: expected str instance, %s found", c->line, i, jv_type_name(it));
            jbuf_put(c, &b, it.u.s, it.n);
        }
        return b.n ? jv_str(b.p, b.n) : jv_str("", 0);
    }
    if (!strcmp(m, "splitlines")) {
        struct jv out = jv_list_new(c, 0);
        size_t i = 0, st = 0;
        while (i < s.n) {
            char ch = s.u.s[i];
            if (ch == '\n' || ch == '\r') {
                jlist_push(c, out.u.list, jv_str(s.u.s + st, i - st));
                if (ch == '\r' && i + 1 < s.n && s.u.s[i + 1] == '\n') i++;
                st = ++i;
            } else i++;
        }
        if (st < s.n) jlist_push(c, out.u.list, jv_str(s.u.s + st, s.n - st));
        return out;
    }
    if (!strcmp(m, "isdigit") || !strcmp(m, "isnumeric") || !strcmp(m, "isdecimal")) return jv_bool(str_is(s, p_digit));
    if (!strcmp(m, "isalpha")) return jv_bool(str_is(s, p_alpha));
    if (!strcmp(m, "isalnum")) return jv_bool(str_is(s, p_alnum));
    if (!strcmp(m, "isspace")) return jv_bool(str_is(s, p_space));
    if (!strcmp(m, "islower")) return jv_bool(jstr_has_case(s, false));
    if (!strcmp(m, "isupper")) return jv_bool(jstr_has_case(s, true));
    if (!strcmp(m, "istitle")) return jv_bool(str_istitle(s));
    if (!strcmp(m, "isascii")) { for (size_t i = 0; i < s.n; i++) if ((unsigned char)s.u.s[i] >= 0x80) return jv_bool(false); return jv_bool(true); }
    if (!strcmp(m, "zfill") || !strcmp(m, "ljust") || !strcmp(m, "rjust") || !strcmp(m, "center")) {
        if (np < 1) jfail(c, "line %d: %s expected at least 1 argument, got 0", c->line, m);
        if (a[0].kind != JV_INT && a[0].kind != JV_BOOL) jfail(c, "line %d: '%s' object cannot be interpreted as an integer", c->line, jv_type_name(a[0]));
        int64_t w = need_int(c, a[0], m), len = (int64_t)utf8_count(s.u.s, s.n), pad = w - len;
        if (w > 1000000) jfail(c, "line %d: %s: width too large", c->line, m);
        if (pad <= 0) return s;
        struct jv fill = m[0] == 'z' ? jv_cstr("0") : arg(a, np, kw, nk, 1, "fillchar", jv_cstr(" "));
        if (fill.kind != JV_STR || utf8_count(fill.u.s, fill.n) != 1)
            jfail(c, "line %d: The fill character must be exactly one character long", c->line);
        int64_t left = m[0] == 'r' || m[0] == 'z' ? pad : m[0] == 'l' ? 0 : pad / 2 + (pad & w & 1);
        struct jbuf b = {0};
        size_t sign = m[0] == 'z' && s.n && (s.u.s[0] == '+' || s.u.s[0] == '-');
        jbuf_put(c, &b, s.u.s, sign);
        for (int64_t i = 0; i < left; i++) jbuf_put(c, &b, fill.u.s, fill.n);
        jbuf_put(c, &b, s.u.s + sign, s.n - sign);
        for (int64_t i = 0; i < pad - left; i++) jbuf_put(c, &b, fill.u.s, fill.n);
        return jv_str(b.p, b.n);
    }
    if (!strcmp(m, "partition") || !strcmp(m, "rpartition")) {
        if (np < 1) jfail(c, "line %d: %s() takes exactly one argument (0 given)", c->line, m);
        struct jv sep = need_str(c, a[0], m);
        if (!sep.n) jfail(c, "line %d: empty separator", c->line);
        const char *hit = NULL;
        if (m[0] == 'r') {
            for (size_t p = s.n >= sep.n ? s.n - sep.n + 1 : 0; p-- > 0;)
                if (!memcmp(s.u.s + p, sep.u.s, sep.n)) { hit = s.u.s + p; break; }
        } else hit = memmem(s.u.s, s.n, sep.u.s, sep.n);
        struct jv t = jv_list_new(c, 3);
        t.tuple = true;
        if (!hit) {
            struct jv e = jv_str("", 0);
            jlist_push(c, t.u.list, m[0] == 'r' ? e : s);
            jlist_push(c, t.u.list, e);
            jlist_push(c, t.u.list, m[0] == 'r' ? s : e);
        } else {
            jlist_push(c, t.u.list, jv_str(s.u.s, (size_t)(hit - s.u.s)));
            jlist_push(c, t.u.list, sep);
            jlist_push(c, t.u.list, jv_str(hit + sep.n, s.n - (size_t)(hit - s.u.s) - sep.n));
        }
        return t;
    }
    if (!strcmp(m, "removeprefix") || !strcmp(m, "removesuffix")) {
        if (np < 1) jfail(c, "line %d: %s() takes exactly one argument (0 given)", c->line, m);
        struct jv x = need_str(c, a[0], m);
        if (x.n > s.n) return s;
        if (m[6] == 'p') return memcmp(s.u.s, x.u.s, x.n) ? s : jv_str(s.u.s + x.n, s.n - x.n);
        return memcmp(s.u.s + s.n - x.n, x.u.s, x.n) ? s : jv_str(s.u.s, s.n - x.n);
    }
    *found = false;
    return jv_undef(NULL, 0);
}

static bool in_list(const char *const *names, const char *name)
{
    for (int i = 0; names[i]; i++) if (!strcmp(names[i], name)) return true;
    return false;
}

bool jmethod_exists(struct jv obj, const char *name, bool *unsafe)
{
    static const char *const STR[] = {
        "capitalize", "casefold", "center", "count", "encode", "endswith", "expandtabs", "find", "format", "format_map",
        "index", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit", "isidentifier", "islower", "isnumeric",
        "isprintable", "isspace", "istitle", "isupper", "join", "ljust", "lower", "lstrip", "maketrans", "partition",
        "removeprefix", "removesuffix", "replace", "rfind", "rindex", "rjust", "rpartition", "rsplit", "rstrip", "split",
        "splitlines", "startswith", "strip", "swapcase", "title", "translate", "upper", "zfill", NULL };
    static const char *const DICT[] = { "copy", "fromkeys", "get", "items", "keys", "values", NULL };
    static const char *const DICT_UNSAFE[] = { "clear", "pop", "popitem", "setdefault", "update", NULL };
    static const char *const LIST[] = { "copy", "count", "index", NULL };
    static const char *const LIST_UNSAFE[] = { "append", "clear", "extend", "insert", "pop", "remove", "reverse", "sort", NULL };
    *unsafe = false;
    switch (obj.kind) {
    case JV_STR: return in_list(STR, name);
    case JV_DICT:
        if (in_list(DICT_UNSAFE, name)) { *unsafe = true; return true; }
        return in_list(DICT, name);
    case JV_LIST:
        if (obj.tuple) return !strcmp(name, "count") || !strcmp(name, "index");
        if (in_list(LIST_UNSAFE, name)) { *unsafe = true; return true; }
        return in_list(LIST, name);
    default: return false;
    }
}

static _Noreturn void unsafe(struct jctx *c, const char *m, struct jv obj)
{
    jfail(c, "line %d: access to attribute '%s' of '%s' object is unsafe.", c->line, m, jv_type_name(obj));
}

struct jv jmethod_call(struct jctx *c, struct jv obj, const char *m, struct jv *a, int np, const char **kw, int nk,
                       bool *found)
{
    *found = true;
    if (obj.kind == JV_STR) return str_method(c, obj, m, a, np, kw, nk, found);
    if (obj.kind == JV_LIST) {
        if (!strcmp(m, "index") || !strcmp(m, "count")) {
            if (np < 1) jfail(c, "line %d: %s takes 1 argument", c->line, m);
            int64_t k = 0;
            for (size_t i = 0; i < obj.u.list->n; i++)
                if (jv_equal(obj.u.list->items[i], a[0])) {
                    if (m[0] == 'i') return jv_int((int64_t)i);
                    k++;
                }
            if (m[0] == 'i') jfail(c, "line %d: value is not in list", c->line);
            return jv_int(k);
        }
        if (!obj.tuple && (!strcmp(m, "append") || !strcmp(m, "extend") || !strcmp(m, "pop") || !strcmp(m, "insert") ||
                           !strcmp(m, "remove") || !strcmp(m, "clear") || !strcmp(m, "sort") || !strcmp(m, "reverse")))
            unsafe(c, m, obj);
    } else if (obj.kind == JV_DICT) {
        if (!strcmp(m, "get")) {
            if (np < 1) jfail(c, "line %d: get expected at least 1 argument", c->line);
            struct jv v;
            if (jdict_get(obj.u.dict, a[0], &v)) return v;
            return np > 1 ? a[1] : jv_none();
        }
        if (!strcmp(m, "items") || !strcmp(m, "keys") || !strcmp(m, "values")) {
            struct jv out = jv_list_new(c, obj.u.dict->n);
            for (size_t i = 0; i < obj.u.dict->n; i++) {
                struct jv item;
                if (m[0] == 'k') item = obj.u.dict->keys[i];
                else if (m[0] == 'v') item = obj.u.dict->vals[i];
                else {
                    item = jv_list_new(c, 2);
                    item.tuple = true;
                    item.u.list->items[0] = obj.u.dict->keys[i];
                    item.u.list->items[1] = obj.u.dict->vals[i];
                    item.u.list->n = 2;
                }
                out.u.list->items[out.u.list->n++] = item;
            }
            return out;
        }
        if (!strcmp(m, "copy")) {
            struct jv d = jv_dict_new(c, obj.u.dict->n);
            for (size_t i = 0; i < obj.u.dict->n; i++) jdict_set(c, d.u.dict, obj.u.dict->keys[i], obj.u.dict->vals[i]);
            return d;
        }
        if (!strcmp(m, "update") || !strcmp(m, "pop") || !strcmp(m, "popitem") || !strcmp(m, "setdefault") ||
            !strcmp(m, "clear"))
            unsafe(c, m, obj);
    }
    *found = false;
    return jv_undef(NULL, 0);
}

/* ==== Globals ==== */
struct jv jglobal_call(struct jctx *c, int func, struct jv *a, int np, const char **kw, int nk)
{
    switch (func) {
    case JF_RANGE: {
        int64_t lo = 0, hi, st = 1;
        if (np < 1 || np > 3) jfail(c, "line %d: range expected 1 to 3 arguments, got %d", c->line, np);
        for (int i = 0; i < np; i++)
            if (a[i].kind != JV_INT && a[i].kind != JV_BOOL)
                jfail(c, "line %d: '%s' object cannot be interpreted as an integer", c->line, jv_type_name(a[i]));
        if (np == 1) hi = need_int(c, a[0], "range");
        else { lo = need_int(c, a[0], "range"); hi = need_int(c, a[1], "range"); }
        if (np == 3) st = need_int(c, a[2], "range");
        if (st == 0) jfail(c, "line %d: range() arg 3 must not be zero", c->line);
        double n = st > 0 ? ((double)hi - (double)lo) / (double)st : ((double)lo - (double)hi) / (double)-st;
        if (n > MAX_RANGE) jfail(c, "line %d: Range too big. The sandbox blocks ranges larger than MAX_RANGE (%d).", c->line, MAX_RANGE);
        struct jv out = jv_list_new(c, n > 0 ? (size_t)n + 1 : 0);
        for (int64_t i = lo; st > 0 ? i < hi : i > hi; i += st) jlist_push(c, out.u.list, jv_int(i));
        return out;
    }
    case JF_DICT: case JF_NAMESPACE: {
        struct jv d = jv_dict_new(c, 0);
        if (func == JF_NAMESPACE) d.kind = JV_NS;
        if (np > 1) jfail(c, "line %d: %s expected at most 1 positional argument", c->line, func == JF_DICT ? "dict" : "namespace");
        if (np == 1) {
            struct jv src = a[0];
            if (src.kind == JV_DICT || src.kind == JV_NS) {
                for (size_t i = 0; i < src.u.dict->n; i++) jdict_set(c, d.u.dict, src.u.dict->keys[i], src.u.dict->vals[i]);
            } else {
                struct jv items = jv_iter_list(c, src);
                for (size_t i = 0; i < items.u.list->n; i++) {
                    struct jv kv = items.u.list->items[i];
                    if (kv.kind != JV_LIST || kv.u.list->n != 2)
                        jfail(c, "line %d: dictionary update sequence element #%zu has the wrong length", c->line, i);
                    jdict_set(c, d.u.dict, kv.u.list->items[0], kv.u.list->items[1]);
                }
            }
        }
        for (int k = 0; k < nk; k++) jdict_set(c, d.u.dict, jv_cstr(kw[k]), a[np + k]);
        return d;
    }
    case JF_RAISE: {
        struct jv msg = np ? jv_to_str(c, a[0]) : jv_str("", 0);
        jfail(c, "%.*s", (int)msg.n, msg.u.s);
    }
    case JF_STRFTIME: {
        if (np < 1 || a[0].kind != JV_STR) jfail(c, "line %d: strftime_now expects a format string", c->line);
        char fmt[256], out[512];
        if (a[0].n >= sizeof fmt) jfail(c, "line %d: strftime_now format too long", c->line);
        memcpy(fmt, a[0].u.s, a[0].n);
        fmt[a[0].n] = 0;
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        size_t n = strftime(out, sizeof out, fmt, &tm);
        return jv_strdup(c, out, n);
    }
    }
    jfail(c, "line %d: unknown function", c->line);
}
