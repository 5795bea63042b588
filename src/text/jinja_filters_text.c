/* jinja_filters_text: Jinja's text-producing filters that need more than a line: truncate,
 * wordcount, striptags, urlencode, filesizeformat, xmlattr and pprint (Python's pprint.pformat:
 * dict keys sorted, containers broken over lines past 80 columns).
 *
 * Each follows jinja2.filters (3.1) and the Python function it calls; widths and lengths count
 * code points. Called by jinja_filters.c through jfilter_text.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "text/jinja_int.h"

static struct jv arg(struct jv *args, int n_pos, const char **kw, int n_kw, int i, const char *name, struct jv dflt)
{
    if (i < n_pos) return args[i];
    for (int k = 0; k < n_kw; k++) if (!strcmp(kw[k], name)) return args[n_pos + k];
    return dflt;
}

static struct jv buf_str(struct jbuf *b) { return b->n ? jv_str(b->p, b->n) : jv_str("", 0); }

/* byte offset of code point i (clamped to the end) */
static size_t cp_offset(struct jv s, int64_t i)
{
    size_t b = 0;
    while (i > 0 && b < s.n) {
        b++;
        while (b < s.n && ((unsigned char)s.u.s[b] & 0xC0) == 0x80) b++;
        i--;
    }
    return b;
}

static int64_t int_arg(struct jctx *c, struct jv v, const char *what)
{
    if (v.kind == JV_INT) return v.u.i;
    if (v.kind == JV_BOOL) return v.u.b;
    jfail(c, "line %d: %s must be an integer, not %s", c->line, what, jv_type_name(v));
}

/* ==== truncate ==== */
static struct jv do_truncate(struct jctx *c, struct jv s, int64_t length, bool killwords, struct jv end, int64_t leeway)
{
    int64_t end_n = (int64_t)utf8_count(end.u.s, end.n), n = (int64_t)utf8_count(s.u.s, s.n);
    if (length < end_n) jfail(c, "line %d: expected length >= %lld, got %lld", c->line, (long long)end_n, (long long)length);
    if (leeway < 0) jfail(c, "line %d: expected leeway >= 0, got %lld", c->line, (long long)leeway);
    if (n <= length + leeway) return s;
    struct jbuf b = {0};
    size_t cut = cp_offset(s, length - end_n);
    if (!killwords) {   // s[:length - len(end)].rsplit(" ", 1)[0]
        const char *sp = NULL;
        for (size_t i = cut; i-- > 0;) if (s.u.s[i] == ' ') { sp = s.u.s + i; break; }
        if (sp) cut = (size_t)(sp - s.u.s);
    }
    jbuf_put(c, &b, s.u.s, cut);
    jbuf_put(c, &b, end.u.s, end.n);
    return buf_str(&b);
}

/* ==== wordcount: len(re.findall(r"\w+", s)) ==== */
static bool is_word_cp(int32_t cp)
{
    if (cp == '_') return true;
    utf8proc_category_t k = utf8proc_category(cp);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) ||
           (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO);
}

static int64_t wordcount(struct jv s)
{
    int64_t k = 0;
    bool in_word = false;
    for (size_t i = 0; i < s.n;) {
        int32_t cp;
        utf8proc_ssize_t m = utf8proc_iterate((const utf8proc_uint8_t *)s.u.s + i, (utf8proc_ssize_t)(s.n - i), &cp);
        if (m <= 0) { m = 1; cp = 0xFFFD; }
        bool w = is_word_cp(cp);
        if (w && !in_word) k++;
        in_word = w;
        i += (size_t)m;
    }
    return k;
}

/* ==== striptags: markupsafe's Markup.striptags ==== */
static bool py_space_cp(int32_t cp)
{
    return cp == ' ' || (cp >= 9 && cp <= 13) || (cp >= 0x1c && cp <= 0x1f) || cp == 0x85 || cp == 0xa0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
           cp == 0x205f || cp == 0x3000;
}

static void put_cp(struct jctx *c, struct jbuf *b, int32_t cp)
{
    utf8proc_uint8_t u[4];
    utf8proc_ssize_t k = utf8proc_encode_char(cp, u);
    jbuf_put(c, b, (const char *)u, (size_t)k);
}

/* html.unescape for the entities templates meet: the five XML ones, &nbsp; and numeric references */
static size_t unescape_entity(const char *s, size_t n, int32_t *cp)
{
    static const struct { const char *name; int32_t cp; } NAMED[] = {
        { "amp;", '&' }, { "lt;", '<' }, { "gt;", '>' }, { "quot;", '"' }, { "apos;", '\'' }, { "nbsp;", 0xa0 },
        { "amp", '&' }, { "lt", '<' }, { "gt", '>' }, { "quot", '"' }, { "nbsp", 0xa0 },
    };
    if (n < 2 || s[0] != '&') return 0;
    if (s[1] == '#') {
        size_t i = 2;
        int base = 10;
        if (i < n && (s[i] == 'x' || s[i] == 'X')) { base = 16; i++; }
        size_t st = i;
        int64_t v = 0;
        while (i < n && i - st < 8 && (base == 16 ? isxdigit((unsigned char)s[i]) : (s[i] >= '0' && s[i] <= '9'))) {
            v = v * base + (s[i] <= '9' ? s[i] - '0' : (s[i] | 0x20) - 'a' + 10);
            i++;
        }
        if (i == st) return 0;
        if (i < n && s[i] == ';') i++;
        *cp = (v == 0 || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) ? 0xFFFD : (int32_t)v;
        return i;
    }
    for (size_t k = 0; k < sizeof NAMED / sizeof NAMED[0]; k++) {
        size_t l = strlen(NAMED[k].name);
        if (n - 1 >= l && !memcmp(s + 1, NAMED[k].name, l)) { *cp = NAMED[k].cp; return l + 1; }
    }
    return 0;
}

static struct jv striptags(struct jctx *c, struct jv s)
{
    struct jbuf t = {0}, out = {0};
    for (size_t i = 0; i < s.n;) {   // drop <!--...--> then <...> (non-greedy, across lines)
        if (s.n - i >= 4 && !memcmp(s.u.s + i, "<!--", 4)) {
            const char *e = memmem(s.u.s + i + 4, s.n - i - 4, "-->", 3);
            if (e) { i = (size_t)(e - s.u.s) + 3; continue; }
        }
        jbuf_putc(c, &t, s.u.s[i++]);
    }
    struct jbuf u = {0};
    for (size_t i = 0; i < t.n;) {
        if (t.p[i] == '<') {
            const char *e = memchr(t.p + i + 1, '>', t.n - i - 1);
            if (e) { i = (size_t)(e - t.p) + 1; continue; }
        }
        jbuf_putc(c, &u, t.p[i++]);
    }
    bool pending_space = false;   // " ".join(value.split())
    for (size_t i = 0; i < u.n;) {
        int32_t cp;
        utf8proc_ssize_t m = utf8proc_iterate((const utf8proc_uint8_t *)u.p + i, (utf8proc_ssize_t)(u.n - i), &cp);
        if (m <= 0) { m = 1; cp = 0xFFFD; }
        if (py_space_cp(cp)) { pending_space = out.n > 0; i += (size_t)m; continue; }
        if (pending_space) { jbuf_putc(c, &out, ' '); pending_space = false; }
        jbuf_put(c, &out, u.p + i, (size_t)m);
        i += (size_t)m;
    }
    struct jbuf r = {0};   // then unescape entities
    for (size_t i = 0; i < out.n;) {
        int32_t cp;
        size_t k = out.p[i] == '&' ? unescape_entity(out.p + i, out.n - i, &cp) : 0;
        if (k) { put_cp(c, &r, cp); i += k; }
        else jbuf_putc(c, &r, out.p[i++]);
    }
    return buf_str(&r);
}

/* ==== urlencode ==== */
static void url_quote(struct jctx *c, struct jbuf *b, struct jv v, bool for_qs)
{
    struct jv s = jv_to_str(c, v);
    for (size_t i = 0; i < s.n; i++) {
        unsigned char ch = (unsigned char)s.u.s[i];
        bool safe = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
                    ch == '.' || ch == '-' || ch == '~' || (!for_qs && ch == '/');
        if (safe) jbuf_putc(c, b, (char)ch);
        else if (for_qs && ch == ' ') jbuf_putc(c, b, '+');
        else jbuf_printf(c, b, "%%%02X", ch);
    }
}

static struct jv urlencode(struct jctx *c, struct jv v)
{
    struct jbuf b = {0};
    if (v.kind == JV_STR) { url_quote(c, &b, v, false); return buf_str(&b); }
    if (v.kind == JV_DICT) {
        for (size_t i = 0; i < v.u.dict->n; i++) {
            if (i) jbuf_putc(c, &b, '&');
            url_quote(c, &b, v.u.dict->keys[i], true);
            jbuf_putc(c, &b, '=');
            url_quote(c, &b, v.u.dict->vals[i], true);
        }
        return buf_str(&b);
    }
    if (v.kind != JV_LIST) { url_quote(c, &b, v, false); return buf_str(&b); }   // str(value), quoted
    struct jv items = jv_iter_list(c, v);
    for (size_t i = 0; i < items.u.list->n; i++) {
        struct jv kv = items.u.list->items[i];
        if (kv.kind != JV_LIST || kv.u.list->n != 2) jfail(c, "line %d: urlencode: expected (key, value) pairs", c->line);
        if (i) jbuf_putc(c, &b, '&');
        url_quote(c, &b, kv.u.list->items[0], true);
        jbuf_putc(c, &b, '=');
        url_quote(c, &b, kv.u.list->items[1], true);
    }
    return buf_str(&b);
}

/* ==== filesizeformat ==== */
static struct jv filesizeformat(struct jctx *c, struct jv v, bool binary)
{
    static const char *const DEC[] = { "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB" };
    static const char *const BIN[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB" };
    double bytes;
    if (jv_is_num(v)) bytes = jv_num(v);
    else if (v.kind == JV_STR) {
        char tmp[64];
        if (v.n >= sizeof tmp) jfail(c, "line %d: could not convert string to float", c->line);
        memcpy(tmp, v.u.s, v.n);
        tmp[v.n] = 0;
        char *e;
        bytes = strtod(tmp, &e);
        if (e == tmp) jfail(c, "line %d: could not convert string to float: '%s'", c->line, tmp);
    } else jfail(c, "line %d: float() argument must be a string or a real number, not '%s'", c->line, jv_type_name(v));
    double base = binary ? 1024 : 1000;
    struct jbuf b = {0};
    if (bytes == 1) jbuf_put(c, &b, "1 Byte", 6);
    else if (bytes < base) jbuf_printf(c, &b, "%lld Bytes", (long long)bytes);
    else {
        double unit = base;
        int i;
        for (i = 0; i < 8; i++) {
            unit *= base;
            if (bytes < unit) break;
        }
        if (i == 8) i = 7;
        jbuf_printf(c, &b, "%.1f %s", base * bytes / unit, (binary ? BIN : DEC)[i]);
    }
    return buf_str(&b);
}

/* ==== xmlattr ==== */
static struct jv xmlattr(struct jctx *c, struct jv d, bool autospace)
{
    if (d.kind != JV_DICT) jfail(c, "line %d: xmlattr: expected a mapping", c->line);
    struct jbuf b = {0};
    for (size_t i = 0; i < d.u.dict->n; i++) {
        struct jv k = d.u.dict->keys[i], v = d.u.dict->vals[i];
        if (v.kind == JV_NONE || v.kind == JV_UNDEF) continue;
        struct jv ks = jv_to_str(c, k);
        for (size_t j = 0; j < ks.n; j++)
            if (strchr(" \t\n\f/>=", ks.u.s[j]) && ks.u.s[j])
                jfail(c, "line %d: Invalid character in attribute name: '%.*s'", c->line, (int)ks.n, ks.u.s);
        if (b.n) jbuf_putc(c, &b, ' ');
        struct jv ke = jstr_escape_html(c, ks), ve = jstr_escape_html(c, jv_to_str(c, v));
        jbuf_put(c, &b, ke.u.s, ke.n);
        jbuf_put(c, &b, "=\"", 2);
        jbuf_put(c, &b, ve.u.s, ve.n);
        jbuf_putc(c, &b, '"');
    }
    struct jbuf r = {0};
    if (autospace && b.n) jbuf_putc(c, &r, ' ');
    jbuf_put(c, &r, b.p ? b.p : "", b.n);
    struct jv out = buf_str(&r);
    out.markup = true;
    return out;
}

/* ==== pprint: pprint.pformat(value) ==== */
/* repr with dict keys sorted, as pprint's safe_repr writes it */
static void sorted_repr(struct jctx *c, struct jbuf *b, struct jv v, int depth);

static size_t *sorted_keys(struct jctx *c, struct jdict *d)
{
    size_t *order = jalloc(c, (d->n ? d->n : 1) * sizeof *order);
    for (size_t i = 0; i < d->n; i++) order[i] = i;
    for (size_t i = 1; i < d->n; i++)   // insertion sort; pprint falls back to type order for mixed keys
        for (size_t j = i; j > 0; j--) {
            struct jv x = d->keys[order[j - 1]], y = d->keys[order[j]];
            bool same = (jv_is_num(x) && jv_is_num(y)) || x.kind == y.kind;
            int r = same ? jv_compare(c, x, y) : strcmp(jv_type_name(x), jv_type_name(y));
            if (r <= 0) break;
            size_t t = order[j]; order[j] = order[j - 1]; order[j - 1] = t;
        }
    return order;
}

static void sorted_repr(struct jctx *c, struct jbuf *b, struct jv v, int depth)
{
    if (depth > c->lim.depth) jfail(c, "line %d: value nested too deeply to print", c->line);
    if (v.kind == JV_DICT) {
        size_t *order = sorted_keys(c, v.u.dict);
        jbuf_putc(c, b, '{');
        for (size_t k = 0; k < v.u.dict->n; k++) {
            if (k) jbuf_put(c, b, ", ", 2);
            jv_write_repr(c, b, v.u.dict->keys[order[k]]);
            jbuf_put(c, b, ": ", 2);
            sorted_repr(c, b, v.u.dict->vals[order[k]], depth + 1);
        }
        jbuf_putc(c, b, '}');
    } else if (v.kind == JV_LIST && !v.gen) {
        jbuf_putc(c, b, v.tuple ? '(' : '[');
        for (size_t i = 0; i < v.u.list->n; i++) {
            if (i) jbuf_put(c, b, ", ", 2);
            sorted_repr(c, b, v.u.list->items[i], depth + 1);
        }
        if (v.tuple && v.u.list->n == 1) jbuf_putc(c, b, ',');
        jbuf_putc(c, b, v.tuple ? ')' : ']');
    } else jv_write_repr(c, b, v);
}

static void pformat(struct jctx *c, struct jbuf *b, struct jv v, int64_t indent, int64_t allowance, int depth)
{
    struct jbuf r = {0};
    sorted_repr(c, &r, v, depth);
    int64_t max_width = 80 - indent - allowance;
    bool container = (v.kind == JV_DICT && v.u.dict->n) || (v.kind == JV_LIST && !v.gen && v.u.list->n);
    if ((int64_t)utf8_count(r.p, r.n) <= max_width || !container) { jbuf_put(c, b, r.p, r.n); return; }
    if (v.kind == JV_DICT) {   // _pprint_dict + _format_dict_items
        size_t *order = sorted_keys(c, v.u.dict);
        jbuf_putc(c, b, '{');
        int64_t in = indent + 1;
        for (size_t k = 0; k < v.u.dict->n; k++) {
            bool last = k + 1 == v.u.dict->n;
            struct jbuf kr = {0};
            jv_write_repr(c, &kr, v.u.dict->keys[order[k]]);
            jbuf_put(c, b, kr.p, kr.n);
            jbuf_put(c, b, ": ", 2);
            pformat(c, b, v.u.dict->vals[order[k]], in + (int64_t)utf8_count(kr.p, kr.n) + 2, last ? allowance + 1 : 1, depth + 1);
            if (!last) { jbuf_put(c, b, ",\n", 2); for (int64_t i = 0; i < in; i++) jbuf_putc(c, b, ' '); }
        }
        jbuf_putc(c, b, '}');
        return;
    }
    // _pprint_list / _pprint_tuple + _format_items (not compact)
    bool one_tuple = v.tuple && v.u.list->n == 1;
    jbuf_putc(c, b, v.tuple ? '(' : '[');
    int64_t in = indent + 1, allow = allowance + (one_tuple ? 2 : 1);
    for (size_t i = 0; i < v.u.list->n; i++) {
        bool last = i + 1 == v.u.list->n;
        if (i) { jbuf_put(c, b, ",\n", 2); for (int64_t k = 0; k < in; k++) jbuf_putc(c, b, ' '); }
        pformat(c, b, v.u.list->items[i], in, last ? allow : 1, depth + 1);
    }
    jbuf_put(c, b, one_tuple ? ",)" : v.tuple ? ")" : "]", one_tuple ? 2 : 1);
}

/* ==== Dispatch ==== */
bool jfilter_text(struct jctx *c, const char *name, struct jv in, struct jv *a, int np, const char **kw, int nk, struct jv *out)
{
    if (!strcmp(name, "truncate")) {
        struct jv s = jv_to_str(c, in);
        int64_t length = int_arg(c, arg(a, np, kw, nk, 0, "length", jv_int(255)), "length");
        bool killwords = jv_truthy(arg(a, np, kw, nk, 1, "killwords", jv_bool(false)));
        struct jv end = jv_to_str(c, arg(a, np, kw, nk, 2, "end", jv_cstr("...")));
        struct jv lw = arg(a, np, kw, nk, 3, "leeway", jv_none());
        *out = do_truncate(c, s, length, killwords, end, lw.kind == JV_NONE ? 5 : int_arg(c, lw, "leeway"));
    } else if (!strcmp(name, "wordcount")) {
        *out = jv_int(wordcount(jv_to_str(c, in)));
    } else if (!strcmp(name, "striptags")) {
        *out = striptags(c, jv_to_str(c, in));
    } else if (!strcmp(name, "urlencode")) {
        *out = urlencode(c, in);
    } else if (!strcmp(name, "filesizeformat")) {
        *out = filesizeformat(c, in, jv_truthy(arg(a, np, kw, nk, 0, "binary", jv_bool(false))));
    } else if (!strcmp(name, "xmlattr")) {
        *out = xmlattr(c, in, jv_truthy(arg(a, np, kw, nk, 0, "autospace", jv_bool(true))));
    } else if (!strcmp(name, "pprint")) {
        struct jbuf b = {0};
        pformat(c, &b, in, 0, 0, 0);
        *out = buf_str(&b);
    } else return false;
    return true;
}
