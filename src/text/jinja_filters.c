/* jinja_filters: Jinja's built-in filters and tests, as jinja2.filters / jinja2.tests define them,
 * plus transformers' tojson (json.dumps with ensure_ascii=False, indent, separators, sort_keys).
 *
 * Filters take the input value, positional args and keyword args (names in kw, values after the
 * positional ones). Undefined inputs behave as in Jinja: most string filters see "", length is 0,
 * iteration is empty, tojson raises. Called by jinja_eval.c; names checked at parse time.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja_int.h"


static const char *const FILTERS[] = {
    "abs", "attr", "batch", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape", "first", "float",
    "forceescape", "format", "indent", "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min",
    "pprint", "reject", "rejectattr", "replace", "reverse", "round", "safe", "select", "selectattr", "sort", "string",
    "sum", "title", "tojson", "trim", "unique", "upper", "wordcount", "groupby", "slice", "truncate", "striptags",
    "urlencode", "filesizeformat", "xmlattr", NULL,
};
static const char *const TESTS[] = {
    "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "==", "escaped", "even", "false", "filter", "float",
    "ge", ">=", "gt", "greaterthan", ">", "in", "integer", "iterable", "le", "<=", "lower", "lt", "lessthan", "<",
    "mapping", "ne", "!=", "none", "number", "odd", "sameas", "sequence", "string", "test", "true", "undefined", "upper",
    NULL,
};

static bool in_table(const char *const *t, const char *name)
{
    for (int i = 0; t[i]; i++) if (!strcmp(t[i], name)) return true;
    return false;
}
bool jfilter_exists(const char *name) { return in_table(FILTERS, name); }
bool jtest_exists(const char *name) { return in_table(TESTS, name); }

static struct jv arg(struct jv *args, int n_pos, const char **kw, int n_kw, int i, const char *name, struct jv dflt)
{
    if (i < n_pos) return args[i];
    for (int k = 0; k < n_kw; k++) if (!strcmp(kw[k], name)) return args[n_pos + k];
    return dflt;
}

static struct jv kwarg(struct jv *args, int n_pos, const char **kw, int n_kw, const char *name, struct jv dflt)
{
    for (int k = 0; k < n_kw; k++) if (!strcmp(kw[k], name)) return args[n_pos + k];
    return dflt;
}

static struct jv soft_str(struct jctx *c, struct jv v) { return jv_to_str(c, v); }

/* attribute getter as jinja's make_attrgetter: "a.b.0" walks dicts and indexes (digit parts are
 * integers); a default replaces an undefined result after each part. */
static struct jv get_path_d(struct jctx *c, struct jv v, struct jv attr, struct jv dflt)
{
    if (attr.kind == JV_INT) {
        struct jv out = jv_undef(NULL, 0);
        if (v.kind == JV_UNDEF) jfail(c, "line %d: undefined value has no item %lld", c->line, (long long)attr.u.i);
        if (v.kind == JV_LIST) {
            int64_t i = attr.u.i < 0 ? attr.u.i + (int64_t)v.u.list->n : attr.u.i;
            if (i >= 0 && i < (int64_t)v.u.list->n) out = v.u.list->items[i];
        } else if (v.kind == JV_DICT && !jdict_get(v.u.dict, attr, &out)) out = jv_undef(NULL, 0);
        return out.kind == JV_UNDEF && dflt.kind != JV_UNDEF ? dflt : out;
    }
    if (attr.kind != JV_STR) jfail(c, "line %d: attribute must be a string", c->line);
    size_t i = 0;
    while (i <= attr.n) {
        size_t j = i;
        while (j < attr.n && attr.u.s[j] != '.') j++;
        const char *part = attr.u.s + i;
        size_t pn = j - i;
        bool digits = pn > 0 && pn < 18;
        for (size_t k = 0; k < pn; k++) if (part[k] < '0' || part[k] > '9') digits = false;
        if (v.kind == JV_UNDEF) jfail(c, "line %d: '%.*s' is undefined", c->line, (int)v.n, v.u.s ? v.u.s : "");
        struct jv out = jv_undef(part, pn);
        if (digits) {
            int64_t idx = (int64_t)strtoll(part, NULL, 10);
            if (v.kind == JV_LIST && idx < (int64_t)v.u.list->n) out = v.u.list->items[idx];
            else if (v.kind == JV_STR && idx < (int64_t)utf8_count(v.u.s, v.n)) out = jv_iter_list(c, v).u.list->items[idx];
            else if (v.kind == JV_DICT && !jdict_get(v.u.dict, jv_int(idx), &out)) out = jv_undef(part, pn);
        } else if ((v.kind == JV_DICT || v.kind == JV_NS) && !jdict_get_str(v.u.dict, part, pn, &out)) {
            out = jv_undef(part, pn);
        } else if (v.kind == JV_LIST && v.group && pn == 7 && !memcmp(part, "grouper", 7)) {
            out = v.u.list->items[0];
        } else if (v.kind == JV_LIST && v.group && pn == 4 && !memcmp(part, "list", 4)) {
            out = v.u.list->items[1];
        }
        v = out.kind == JV_UNDEF && dflt.kind != JV_UNDEF ? dflt : out;
        i = j + 1;
    }
    return v;
}

static struct jv get_path(struct jctx *c, struct jv v, struct jv attr) { return get_path_d(c, v, attr, jv_undef(NULL, 0)); }

/* sort key for sort/unique/dictsort: lower-cased strings unless case_sensitive */
static struct jv sort_key(struct jctx *c, struct jv v, bool case_sensitive)
{
    return !case_sensitive && v.kind == JV_STR ? jstr_lower(c, v) : v;
}

/* stable merge sort of items by keys */
static void msort(struct jctx *c, struct jv *items, struct jv *keys, size_t n, bool reverse)
{
    if (n < 2) return;
    struct jv *ti = jalloc(c, n * sizeof *ti), *tk = jalloc(c, n * sizeof *tk);
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                int r = jv_compare(c, keys[j], keys[i]);
                bool take_right = reverse ? r > 0 : r < 0;
                if (take_right) { ti[k] = items[j]; tk[k++] = keys[j++]; }
                else { ti[k] = items[i]; tk[k++] = keys[i++]; }
            }
            while (i < mid) { ti[k] = items[i]; tk[k++] = keys[i++]; }
            while (j < hi) { ti[k] = items[j]; tk[k++] = keys[j++]; }
        }
        memcpy(items, ti, n * sizeof *ti);
        memcpy(keys, tk, n * sizeof *tk);
    }
}

static struct jv to_int(struct jctx *c, struct jv v, struct jv dflt)
{
    switch (v.kind) {
    case JV_INT: case JV_BIGINT: return v;
    case JV_BOOL: return jv_int(v.u.b);
    case JV_FLOAT:
        if (isnan(v.u.f) || isinf(v.u.f) || fabs(v.u.f) > 9.2e18) return dflt;
        return jv_int((int64_t)v.u.f);
    case JV_STR: {
        char tmp[64];
        size_t k = 0;
        struct jv s = jstr_strip(c, v, jv_none(), 3);
        if (!s.n || s.n >= sizeof tmp) return dflt;
        for (size_t i = 0; i < s.n; i++) if (s.u.s[i] != '_') tmp[k++] = s.u.s[i];
        tmp[k] = 0;
        char *e;
        errno = 0;
        long long x = strtoll(tmp, &e, 10);
        if (!*e && !errno) return jv_int(x);
        if (!*e) {   // beyond int64: Python's int() keeps every digit
            const char *d = tmp + (tmp[0] == '+');
            bool neg = d[0] == '-';
            const char *q = d + neg;
            while (q[0] == '0' && q[1]) q++;
            struct jbuf b = {0};
            if (neg) jbuf_putc(c, &b, '-');
            jbuf_put(c, &b, q, strlen(q));
            return jv_int_text(b.p, b.n);
        }
        double f = strtod(tmp, &e);
        if (!*e && !isnan(f) && !isinf(f) && fabs(f) < 9.2e18) return jv_int((int64_t)f);
        return dflt;
    }
    default: return dflt;
    }
}

static struct jv to_float(struct jctx *c, struct jv v, struct jv dflt)
{
    if (v.kind == JV_FLOAT) return v;
    if (v.kind == JV_INT || v.kind == JV_BOOL || v.kind == JV_BIGINT) return jv_float(jv_num(v));
    if (v.kind == JV_STR) {
        struct jv s = jstr_strip(c, v, jv_none(), 3);
        char tmp[128];
        if (!s.n || s.n >= sizeof tmp) return dflt;
        memcpy(tmp, s.u.s, s.n);
        tmp[s.n] = 0;
        char *e;
        double f = strtod(tmp, &e);
        if (!*e) return jv_float(f);
    }
    return dflt;
}

static struct jv do_round(struct jctx *c, struct jv v, int64_t prec, struct jv method)
{
    if (!jv_is_num(v)) jfail(c, "line %d: round: expected a number, got %s", c->line, jv_type_name(v));
    const char *m = method.kind == JV_STR ? method.u.s : "common";
    if (!strncmp(m, "common", 6)) {
        if (v.kind == JV_BIGINT) return v;
        if (v.kind != JV_FLOAT) return jv_int(v.kind == JV_BOOL ? v.u.b : v.u.i);
        if (prec == 0) return jv_float(nearbyint(v.u.f));
        if (prec < 0 || prec > 300) return jv_float(v.u.f);
        char tmp[400];
        snprintf(tmp, sizeof tmp, "%.*f", (int)prec, v.u.f);
        return jv_float(strtod(tmp, NULL));
    }
    double p = pow(10, (double)prec), x = jv_num(v) * p;
    if (!strncmp(m, "ceil", 4)) return jv_float(ceil(x) / p);
    if (!strncmp(m, "floor", 5)) return jv_float(floor(x) / p);
    jfail(c, "line %d: method must be common, ceil or floor", c->line);
}

struct jv jstr_escape_html(struct jctx *c, struct jv s)
{
    if (s.markup) return s;
    struct jbuf b = {0};
    for (size_t i = 0; i < s.n; i++) {
        switch (s.u.s[i]) {
        case '&': jbuf_put(c, &b, "&amp;", 5); break;
        case '<': jbuf_put(c, &b, "&lt;", 4); break;
        case '>': jbuf_put(c, &b, "&gt;", 4); break;
        case '"': jbuf_put(c, &b, "&#34;", 5); break;
        case '\'': jbuf_put(c, &b, "&#39;", 5); break;
        default: jbuf_putc(c, &b, s.u.s[i]);
        }
    }
    struct jv r = b.n ? jv_str(b.p, b.n) : jv_str("", 0);
    r.markup = true;
    return r;
}

static struct jv do_indent(struct jctx *c, struct jv s, struct jv width, bool first, bool blank)
{
    struct jv ind;
    if (width.kind == JV_STR) ind = width;
    else {
        int64_t w = width.kind == JV_INT ? width.u.i : 4;
        if (w < 0) w = 0;
        if (w > 1000) jfail(c, "line %d: indent width too large", c->line);
        char *sp = jalloc(c, (size_t)w + 1);
        memset(sp, ' ', (size_t)w);
        ind = jv_str(sp, (size_t)w);
    }
    // Jinja splits s + "\n" into lines: every "\n"-separated piece of s, the last one included
    struct jbuf b = {0};
    for (size_t i = 0;;) {
        size_t j = i;
        while (j < s.n && s.u.s[j] != '\n') j++;
        size_t ln = j - i;
        if (i) jbuf_putc(c, &b, '\n');
        if ((i == 0 && first) || (i > 0 && (blank || ln))) jbuf_put(c, &b, ind.u.s, ind.n);
        jbuf_put(c, &b, s.u.s + i, ln);
        if (j >= s.n) break;
        i = j + 1;
    }
    return b.n ? jv_str(b.p, b.n) : jv_str("", 0);
}

static struct jv do_tojson(struct jctx *c, struct jv v, struct jv *a, int np, const char **kw, int nk)
{
    struct jv indent = arg(a, np, kw, nk, 1, "indent", jv_none());
    struct jv seps = arg(a, np, kw, nk, 2, "separators", jv_none());
    bool sort_keys = jv_truthy(arg(a, np, kw, nk, 3, "sort_keys", jv_bool(false)));
    const char *ind = NULL;
    size_t ind_n = 0;
    if (indent.kind == JV_INT || indent.kind == JV_BOOL) {
        int64_t w = indent.kind == JV_INT ? indent.u.i : indent.u.b;
        if (w < 0) w = 0;
        if (w > 1000) jfail(c, "line %d: tojson indent too large", c->line);
        char *sp = jalloc(c, (size_t)w + 1);
        memset(sp, ' ', (size_t)w);
        sp[w] = 0;
        ind = sp;
        ind_n = (size_t)w;
    } else if (indent.kind == JV_STR) {
        ind = jv_strdup(c, indent.u.s, indent.n).u.s;
        ind_n = indent.n;
    } else if (indent.kind != JV_NONE) jfail(c, "line %d: tojson: bad indent", c->line);
    const char *item_sep = ind ? "," : ", ", *key_sep = ": ";
    if (seps.kind == JV_LIST && seps.u.list->n == 2 && seps.u.list->items[0].kind == JV_STR &&
        seps.u.list->items[1].kind == JV_STR) {
        item_sep = jv_strdup(c, seps.u.list->items[0].u.s, seps.u.list->items[0].n).u.s;
        key_sep = jv_strdup(c, seps.u.list->items[1].u.s, seps.u.list->items[1].n).u.s;
    } else if (seps.kind != JV_NONE) jfail(c, "line %d: tojson: separators must be a pair of strings", c->line);
    struct jjson_opts o = { ind, ind_n, item_sep, key_sep, sort_keys,
                            jv_truthy(arg(a, np, kw, nk, 0, "ensure_ascii", jv_bool(false))) };
    struct jbuf b = {0};
    jv_write_json(c, &b, v, &o, 0);
    return jv_str(b.p, b.n);
}

/* select/reject/selectattr/rejectattr */
static struct jv do_select(struct jctx *c, struct jv seq, struct jv *a, int np, bool by_attr, bool keep_true)
{
    struct jv items = jv_iter_list(c, seq), out = jv_list_new(c, 0);
    int off = by_attr ? 1 : 0;
    if (by_attr && np < 1) jfail(c, "line %d: missing attribute", c->line);
    const char *test = NULL;
    if (np > off) {
        if (a[off].kind != JV_STR) jfail(c, "line %d: test name must be a string", c->line);
        test = jv_strdup(c, a[off].u.s, a[off].n).u.s;
        if (!jtest_exists(test)) jfail(c, "line %d: No test named '%s'.", c->line, test);
    }
    for (size_t i = 0; i < items.u.list->n; i++) {
        jstep(c);
        struct jv it = items.u.list->items[i], x = by_attr ? get_path(c, it, a[0]) : it;
        bool r = test ? jtest_apply(c, test, x, a + off + 1, np - off - 1) : jv_truthy(x);
        if (r == keep_true) jlist_push(c, out.u.list, it);
    }
    return out;
}

static struct jv apply_eager(struct jctx *c, const char *name, struct jv in, struct jv *a, int np, const char **kw, int nk);

/* Filters that Jinja writes as generators return an iterator (struct jv.gen); map and the select
 * family start with `if value:`, so None and undefined give an empty one. */
struct jv jfilter_apply(struct jctx *c, const char *name, struct jv in, struct jv *a, int np, const char **kw, int nk)
{
    static const char *const GUARDED[] = { "map", "select", "reject", "selectattr", "rejectattr", NULL };
    static const char *const GENERATORS[] = { "map", "select", "reject", "selectattr", "rejectattr", "unique", "batch",
                                              "slice", "items", NULL };
    jstep(c);
    if (in_table(GUARDED, name) && !jv_truthy(in)) return jv_gen(jv_list_new(c, 0));
    struct jv r = apply_eager(c, name, in, a, np, kw, nk);
    if (in_table(GENERATORS, name)) r = jv_gen(r);
    return r;
}

static struct jv apply_eager(struct jctx *c, const char *name, struct jv in, struct jv *a, int np, const char **kw, int nk)
{
    struct jv none = jv_none();
    struct jv text_out;
    if (jfilter_text(c, name, in, a, np, kw, nk, &text_out)) return text_out;
    if (!strcmp(name, "tojson")) return do_tojson(c, in, a, np, kw, nk);
    if (!strcmp(name, "safe")) {   // Markup(str(value))
        struct jv r = soft_str(c, in);
        if (in.kind != JV_STR) r = jv_strdup(c, r.u.s, r.n);
        r.markup = true;
        return r;
    }
    if (!strcmp(name, "trim")) {
        struct jv chars = arg(a, np, kw, nk, 0, "chars", none);
        return jstr_strip(c, soft_str(c, in), chars, 3);
    }
    if (!strcmp(name, "length") || !strcmp(name, "count")) {
        switch (in.kind) {
        case JV_UNDEF: return jv_int(0);
        case JV_STR: return jv_int((int64_t)utf8_count(in.u.s, in.n));
        case JV_LIST:
            if (in.gen) jfail(c, "line %d: object of type 'generator' has no len()", c->line);
            return jv_int((int64_t)in.u.list->n);
        case JV_DICT: case JV_NS: return jv_int((int64_t)in.u.dict->n);
        default: jfail(c, "line %d: object of type '%s' has no len()", c->line, jv_type_name(in));
        }
    }
    if (!strcmp(name, "lower")) return jstr_lower(c, soft_str(c, in));
    if (!strcmp(name, "upper")) return jstr_upper(c, soft_str(c, in));
    if (!strcmp(name, "capitalize")) return jstr_capitalize(c, soft_str(c, in));
    if (!strcmp(name, "title")) {
        // jinja: words start after runs of [-\s({[<]
        struct jv s = soft_str(c, in);
        struct jbuf b = {0};
        bool start = true;
        for (size_t i = 0; i < s.n;) {
            size_t k = 1;
            while (i + k < s.n && ((unsigned char)s.u.s[i + k] & 0xC0) == 0x80) k++;
            char ch = s.u.s[i];
            bool sep = ch == '-' || ch == ' ' || (ch >= 9 && ch <= 13) || ch == '(' || ch == '{' || ch == '[' || ch == '<';
            struct jv piece = jv_str(s.u.s + i, k);
            if (!sep) piece = start ? jstr_upper(c, piece) : jstr_lower(c, piece);
            jbuf_put(c, &b, piece.u.s, piece.n);
            start = sep;
            i += k;
        }
        return b.n ? jv_str(b.p, b.n) : jv_str("", 0);
    }
    if (!strcmp(name, "string")) return soft_str(c, in);
    if (!strcmp(name, "e") || !strcmp(name, "escape")) return jstr_escape_html(c, soft_str(c, in));
    if (!strcmp(name, "forceescape")) {
        struct jv s = soft_str(c, in);
        s.markup = false;
        return jstr_escape_html(c, s);
    }
    if (!strcmp(name, "default") || !strcmp(name, "d")) {
        struct jv dflt = arg(a, np, kw, nk, 0, "default_value", jv_str("", 0));
        bool boolean = jv_truthy(arg(a, np, kw, nk, 1, "boolean", jv_bool(false)));
        if (in.kind == JV_UNDEF || (boolean && !jv_truthy(in))) return dflt;
        return in;
    }
    if (!strcmp(name, "join")) {
        struct jv d = arg(a, np, kw, nk, 0, "d", jv_str("", 0)), attr = arg(a, np, kw, nk, 1, "attribute", none);
        d = soft_str(c, d);
        struct jv items = jv_iter_list(c, in);
        struct jbuf b = {0};
        for (size_t i = 0; i < items.u.list->n; i++) {
            if (i) jbuf_put(c, &b, d.u.s, d.n);
            struct jv it = items.u.list->items[i];
            if (attr.kind != JV_NONE) it = get_path(c, it, attr);
            jv_write_str(c, &b, it);
        }
        return b.n ? jv_str(b.p, b.n) : jv_str("", 0);
    }
    if (!strcmp(name, "first") || !strcmp(name, "last")) {
        if (name[0] == 'l' && in.kind == JV_LIST && in.gen) jfail(c, "line %d: 'generator' object is not reversible", c->line);
        struct jv items = jv_iter_list(c, in);
        if (!items.u.list->n) return jv_undef(NULL, 0);
        return items.u.list->items[name[0] == 'f' ? 0 : items.u.list->n - 1];
    }
    if (!strcmp(name, "list")) {
        struct jv items = jv_iter_list(c, in), out = jv_list_new(c, items.u.list->n);
        for (size_t i = 0; i < items.u.list->n; i++) out.u.list->items[out.u.list->n++] = items.u.list->items[i];
        return out;
    }
    if (!strcmp(name, "reverse")) {
        if (in.kind == JV_STR) {
            struct jv chars = jv_iter_list(c, in);
            struct jbuf b = {0};
            for (size_t i = chars.u.list->n; i-- > 0;) jbuf_put(c, &b, chars.u.list->items[i].u.s, chars.u.list->items[i].n);
            return b.n ? jv_str(b.p, b.n) : jv_str("", 0);
        }
        bool was_gen = in.kind == JV_LIST && in.gen;   // reversed() of a list is an iterator; of a generator, a list
        struct jv items = jv_iter_list(c, in), out = jv_list_new(c, items.u.list->n);
        for (size_t i = items.u.list->n; i-- > 0;) out.u.list->items[out.u.list->n++] = items.u.list->items[i];
        return in.kind == JV_LIST && !was_gen ? jv_gen(out) : out;
    }
    if (!strcmp(name, "items")) {
        if (in.kind == JV_UNDEF) return jv_list_new(c, 0);
        if (in.kind != JV_DICT && in.kind != JV_NS) jfail(c, "line %d: items: can only get item pairs from a mapping", c->line);
        struct jv out = jv_list_new(c, in.u.dict->n);
        for (size_t i = 0; i < in.u.dict->n; i++) {
            struct jv t = jv_list_new(c, 2);
            t.tuple = true;
            jlist_push(c, t.u.list, in.u.dict->keys[i]);
            jlist_push(c, t.u.list, in.u.dict->vals[i]);
            jlist_push(c, out.u.list, t);
        }
        return out;
    }
    if (!strcmp(name, "dictsort")) {
        if (in.kind != JV_DICT) jfail(c, "line %d: dictsort: expected a mapping", c->line);
        bool cs = jv_truthy(arg(a, np, kw, nk, 0, "case_sensitive", jv_bool(false)));
        struct jv by = arg(a, np, kw, nk, 1, "by", jv_cstr("key"));
        bool rev = jv_truthy(arg(a, np, kw, nk, 2, "reverse", jv_bool(false)));
        bool by_value = by.kind == JV_STR && by.n == 5 && !memcmp(by.u.s, "value", 5);
        struct jv items = apply_eager(c, "items", in, NULL, 0, NULL, 0);
        size_t n = items.u.list->n;
        struct jv *keys = jalloc(c, (n ? n : 1) * sizeof *keys);
        for (size_t i = 0; i < n; i++) keys[i] = sort_key(c, items.u.list->items[i].u.list->items[by_value], cs);
        msort(c, items.u.list->items, keys, n, rev);
        return items;
    }
    if (!strcmp(name, "sort") || !strcmp(name, "unique") || !strcmp(name, "min") || !strcmp(name, "max")) {
        bool is_sort = name[0] == 's';
        bool rev = is_sort && jv_truthy(arg(a, np, kw, nk, 0, "reverse", jv_bool(false)));
        bool cs = jv_truthy(arg(a, np, kw, nk, is_sort ? 1 : 0, "case_sensitive", jv_bool(false)));
        struct jv attr = arg(a, np, kw, nk, is_sort ? 2 : 1, "attribute", none);
        struct jv items = jv_iter_list(c, in), out = jv_list_new(c, items.u.list->n);
        size_t n = items.u.list->n;
        struct jv *keys = jalloc(c, (n ? n : 1) * sizeof *keys);
        for (size_t i = 0; i < n; i++) {
            struct jv it = items.u.list->items[i];
            keys[i] = sort_key(c, attr.kind != JV_NONE ? get_path(c, it, attr) : it, cs);
        }
        if (name[0] == 'u') {
            struct jv seen = jv_list_new(c, 0);
            for (size_t i = 0; i < n; i++) {
                bool dup = false;
                c->steps += (int64_t)(seen.u.list->n / 64);   // quadratic: charge for it
                jstep(c);
                for (size_t j = 0; j < seen.u.list->n && !dup; j++) dup = jv_equal(seen.u.list->items[j], keys[i]);
                if (dup) continue;
                jlist_push(c, seen.u.list, keys[i]);
                jlist_push(c, out.u.list, items.u.list->items[i]);
            }
            return out;
        }
        if (name[0] == 'm') {
            if (!n) return jv_undef(NULL, 0);
            size_t best = 0;
            for (size_t i = 1; i < n; i++) {
                int r = jv_compare(c, keys[i], keys[best]);
                if (name[1] == 'i' ? r < 0 : r > 0) best = i;
            }
            return items.u.list->items[best];
        }
        for (size_t i = 0; i < n; i++) out.u.list->items[out.u.list->n++] = items.u.list->items[i];
        msort(c, out.u.list->items, keys, n, rev);
        return out;
    }
    if (!strcmp(name, "map")) {
        struct jv items = jv_iter_list(c, in), out = jv_list_new(c, items.u.list->n);
        struct jv attr = kwarg(a, np, kw, nk, "attribute", none);
        if (attr.kind != JV_NONE) {
            struct jv dflt = kwarg(a, np, kw, nk, "default", jv_undef(NULL, 0));
            for (size_t i = 0; i < items.u.list->n; i++) jlist_push(c, out.u.list, get_path_d(c, items.u.list->items[i], attr, dflt));
            return out;
        }
        if (np < 1 || a[0].kind != JV_STR) jfail(c, "line %d: map requires a filter name or attribute=", c->line);
        const char *f = jv_strdup(c, a[0].u.s, a[0].n).u.s;
        if (!jfilter_exists(f)) jfail(c, "line %d: No filter named '%s'.", c->line, f);
        for (size_t i = 0; i < items.u.list->n; i++)
            jlist_push(c, out.u.list, jfilter_apply(c, f, items.u.list->items[i], a + 1, np - 1, kw, nk));
        return out;
    }
    if (!strcmp(name, "select")) return do_select(c, in, a, np, false, true);
    if (!strcmp(name, "reject")) return do_select(c, in, a, np, false, false);
    if (!strcmp(name, "selectattr")) return do_select(c, in, a, np, true, true);
    if (!strcmp(name, "rejectattr")) return do_select(c, in, a, np, true, false);
    if (!strcmp(name, "attr")) {
        if (np < 1) jfail(c, "line %d: attr requires a name", c->line);
        if (in.kind == JV_DICT || in.kind == JV_NS) {
            struct jv v;
            if (a[0].kind == JV_STR && jdict_get_str(in.u.dict, a[0].u.s, a[0].n, &v)) return v;
        }
        return jv_undef(NULL, 0);
    }
    if (!strcmp(name, "int")) {
        struct jv dflt = arg(a, np, kw, nk, 0, "default", jv_int(0));
        return to_int(c, in, dflt);
    }
    if (!strcmp(name, "float")) return to_float(c, in, arg(a, np, kw, nk, 0, "default", jv_float(0)));
    if (!strcmp(name, "abs")) {
        if (in.kind == JV_INT) { if (in.u.i == INT64_MIN) jfail(c, "line %d: integer overflow", c->line); return jv_int(in.u.i < 0 ? -in.u.i : in.u.i); }
        if (in.kind == JV_BOOL) return jv_int(in.u.b);
        if (in.kind == JV_FLOAT) return jv_float(fabs(in.u.f));
        if (in.kind == JV_BIGINT) return in.u.s[0] == '-' ? jv_int_text(in.u.s + 1, in.n - 1) : in;
        jfail(c, "line %d: bad operand type for abs(): '%s'", c->line, jv_type_name(in));
    }
    if (!strcmp(name, "round")) {
        struct jv prec = arg(a, np, kw, nk, 0, "precision", jv_int(0));
        if (prec.kind != JV_INT) jfail(c, "line %d: round: precision must be an integer", c->line);
        return do_round(c, in, prec.u.i, arg(a, np, kw, nk, 1, "method", jv_cstr("common")));
    }
    if (!strcmp(name, "replace")) {
        if (np < 2) jfail(c, "line %d: replace takes at least 2 arguments", c->line);
        struct jv cnt = arg(a, np, kw, nk, 2, "count", none);
        return jstr_replace(c, soft_str(c, in), soft_str(c, a[0]), soft_str(c, a[1]),
                            cnt.kind == JV_INT ? cnt.u.i : -1);
    }
    if (!strcmp(name, "indent")) {
        struct jv w = arg(a, np, kw, nk, 0, "width", jv_int(4));
        bool first = jv_truthy(arg(a, np, kw, nk, 1, "first", jv_bool(false)));
        bool blank = jv_truthy(arg(a, np, kw, nk, 2, "blank", jv_bool(false)));
        return do_indent(c, soft_str(c, in), w, first, blank);
    }
    if (!strcmp(name, "batch")) {
        struct jv cnt = arg(a, np, kw, nk, 0, "linecount", none), fill = arg(a, np, kw, nk, 1, "fill_with", none);
        if (cnt.kind != JV_INT || cnt.u.i <= 0) jfail(c, "line %d: batch: linecount must be a positive integer", c->line);
        bool do_fill = fill.kind != JV_NONE;
        struct jv items = jv_iter_list(c, in), out = jv_list_new(c, 0), cur = jv_list_new(c, 0);
        for (size_t i = 0; i < items.u.list->n; i++) {
            jlist_push(c, cur.u.list, items.u.list->items[i]);
            if ((int64_t)cur.u.list->n == cnt.u.i) { jlist_push(c, out.u.list, cur); cur = jv_list_new(c, 0); }
        }
        if (cur.u.list->n) {
            while (do_fill && (int64_t)cur.u.list->n < cnt.u.i) jlist_push(c, cur.u.list, fill);
            jlist_push(c, out.u.list, cur);
        }
        return out;
    }
    if (!strcmp(name, "slice")) {   // `slices` columns, the first len % slices one longer; fill_with pads the rest
        struct jv cnt = arg(a, np, kw, nk, 0, "slices", none), fill = arg(a, np, kw, nk, 1, "fill_with", none);
        if (cnt.kind != JV_INT || cnt.u.i <= 0 || cnt.u.i > 100000) jfail(c, "line %d: slice: slices must be a positive integer", c->line);
        struct jv items = jv_iter_list(c, in), out = jv_list_new(c, (size_t)cnt.u.i);
        int64_t len = (int64_t)items.u.list->n, per = len / cnt.u.i, extra = len % cnt.u.i, offset = 0;
        for (int64_t k = 0; k < cnt.u.i; k++) {
            jstep(c);
            int64_t start = offset + k * per;
            if (k < extra) offset++;
            int64_t end = offset + (k + 1) * per;
            struct jv col = jv_list_new(c, (size_t)(end - start + 1));
            for (int64_t i = start; i < end; i++) jlist_push(c, col.u.list, items.u.list->items[i]);
            if (fill.kind != JV_NONE && k >= extra) jlist_push(c, col.u.list, fill);
            jlist_push(c, out.u.list, col);
        }
        return out;
    }
    if (!strcmp(name, "groupby")) {   // sorted by the attribute, then grouped: [(grouper, list), ...]
        struct jv attr = arg(a, np, kw, nk, 0, "attribute", none), dflt = arg(a, np, kw, nk, 1, "default", jv_undef(NULL, 0));
        bool cs = jv_truthy(arg(a, np, kw, nk, 2, "case_sensitive", jv_bool(false)));
        struct jv items = jv_iter_list(c, in), sorted = jv_list_new(c, items.u.list->n);
        size_t n = items.u.list->n;
        struct jv *keys = jalloc(c, (n ? n : 1) * sizeof *keys);
        for (size_t i = 0; i < n; i++) {
            sorted.u.list->items[sorted.u.list->n++] = items.u.list->items[i];
            keys[i] = sort_key(c, get_path_d(c, items.u.list->items[i], attr, dflt), cs);
        }
        msort(c, sorted.u.list->items, keys, n, false);
        struct jv out = jv_list_new(c, 0);
        for (size_t i = 0; i < n;) {
            size_t j = i + 1;
            while (j < n && jv_equal(keys[j], keys[i])) j++;
            struct jv members = jv_list_new(c, j - i), g = jv_list_new(c, 2);
            for (size_t k = i; k < j; k++) jlist_push(c, members.u.list, sorted.u.list->items[k]);
            // the grouper shown is the first member's own value (not lower-cased)
            jlist_push(c, g.u.list, cs ? keys[i] : get_path_d(c, sorted.u.list->items[i], attr, dflt));
            jlist_push(c, g.u.list, members);
            g.tuple = g.group = true;
            jlist_push(c, out.u.list, g);
            i = j;
        }
        return out;
    }
    if (!strcmp(name, "sum")) {
        struct jv attr = arg(a, np, kw, nk, 0, "attribute", none), acc = arg(a, np, kw, nk, 1, "start", jv_int(0));
        struct jv items = jv_iter_list(c, in);
        for (size_t i = 0; i < items.u.list->n; i++) {
            struct jv v = attr.kind != JV_NONE ? get_path(c, items.u.list->items[i], attr) : items.u.list->items[i];
            acc = jarith(c, JOP_ADD, acc, v);
        }
        return acc;
    }
    if (!strcmp(name, "center")) {   // str.center(width), padding split as CPython does
        struct jv s = soft_str(c, in), w = arg(a, np, kw, nk, 0, "width", jv_int(80));
        if (w.kind != JV_INT) jfail(c, "line %d: center: width must be an integer", c->line);
        int64_t len = (int64_t)utf8_count(s.u.s, s.n), pad = w.u.i - len;
        if (pad <= 0) return s;
        if (w.u.i > 100000) jfail(c, "line %d: center: width too large", c->line);
        int64_t left = pad / 2 + (pad & w.u.i & 1);   // CPython: left = pad/2 + (pad & width & 1)
        struct jbuf b = {0};
        for (int64_t i = 0; i < left; i++) jbuf_putc(c, &b, ' ');
        jbuf_put(c, &b, s.u.s, s.n);
        for (int64_t i = 0; i < pad - left; i++) jbuf_putc(c, &b, ' ');
        return jv_str(b.p, b.n);
    }
    if (!strcmp(name, "format")) {   // soft_str(value) % (kwargs or args)
        struct jv s = soft_str(c, in);
        if (np && nk) jfail(c, "line %d: can't handle positional and keyword arguments at the same time", c->line);
        struct jv t;
        if (nk) {
            t = jv_dict_new(c, (size_t)nk);
            for (int i = 0; i < nk; i++) jdict_set(c, t.u.dict, jv_cstr(kw[i]), a[i]);
        } else {
            t = jv_list_new(c, (size_t)np);
            t.tuple = true;
            for (int i = 0; i < np; i++) t.u.list->items[t.u.list->n++] = a[i];
        }
        struct jv r = jpercent_format(c, s, t, in.markup);
        r.markup = in.markup;
        return r;
    }
    jfail(c, "line %d: No filter named '%s'.", c->line, name);
}

static int64_t int_of(struct jctx *c, struct jv v, const char *what)
{
    if (v.kind == JV_INT) return v.u.i;
    if (v.kind == JV_BOOL) return v.u.b;
    jfail(c, "line %d: %s: expected an integer, got %s", c->line, what, jv_type_name(v));
}

bool jtest_apply(struct jctx *c, const char *name, struct jv v, struct jv *a, int n)
{
    struct jv x = n > 0 ? a[0] : jv_undef(NULL, 0);
    if (!strcmp(name, "defined")) return v.kind != JV_UNDEF;
    if (!strcmp(name, "undefined")) return v.kind == JV_UNDEF;
    if (!strcmp(name, "none")) return v.kind == JV_NONE;
    if (!strcmp(name, "string")) return v.kind == JV_STR;
    if (!strcmp(name, "number")) return jv_is_num(v);
    if (!strcmp(name, "integer")) return jv_is_int(v);
    if (!strcmp(name, "float")) return v.kind == JV_FLOAT;
    if (!strcmp(name, "boolean")) return v.kind == JV_BOOL;
    if (!strcmp(name, "true")) return v.kind == JV_BOOL && v.u.b;
    if (!strcmp(name, "false")) return v.kind == JV_BOOL && !v.u.b;
    if (!strcmp(name, "mapping")) return v.kind == JV_DICT;
    if (!strcmp(name, "iterable")) return v.kind == JV_UNDEF || v.kind == JV_STR || v.kind == JV_LIST || v.kind == JV_DICT;
    if (!strcmp(name, "sequence")) return v.kind == JV_UNDEF || v.kind == JV_STR || v.kind == JV_LIST || v.kind == JV_DICT;
    if (!strcmp(name, "callable")) return v.kind == JV_MACRO || v.kind == JV_FUNC || v.kind == JV_METHOD;
    if (!strcmp(name, "escaped")) return false;
    if (!strcmp(name, "odd") || !strcmp(name, "even")) {
        int64_t i = int_of(c, v, name);
        return (i % 2 != 0) == (name[0] == 'o');
    }
    if (!strcmp(name, "divisibleby")) {
        int64_t d = int_of(c, x, name), i = int_of(c, v, name);
        if (d == 0) jfail(c, "line %d: integer division or modulo by zero", c->line);
        return d == -1 || i % d == 0;
    }
    if (!strcmp(name, "eq") || !strcmp(name, "equalto") || !strcmp(name, "==")) return jv_equal(v, x);
    if (!strcmp(name, "ne") || !strcmp(name, "!=")) return !jv_equal(v, x);
    if (!strcmp(name, "lt") || !strcmp(name, "lessthan") || !strcmp(name, "<")) return jv_compare(c, v, x) < 0;
    if (!strcmp(name, "le") || !strcmp(name, "<=")) return jv_compare(c, v, x) <= 0;
    if (!strcmp(name, "gt") || !strcmp(name, "greaterthan") || !strcmp(name, ">")) return jv_compare(c, v, x) > 0;
    if (!strcmp(name, "ge") || !strcmp(name, ">=")) return jv_compare(c, v, x) >= 0;
    if (!strcmp(name, "in")) {
        if (x.kind == JV_STR) return v.kind == JV_STR && (!v.n || memmem(x.u.s, x.n, v.u.s, v.n));
        if (x.kind == JV_LIST) { for (size_t i = 0; i < x.u.list->n; i++) if (jv_equal(v, x.u.list->items[i])) return true; return false; }
        if (x.kind == JV_DICT) { struct jv o; return jdict_get(x.u.dict, v, &o); }
        return false;
    }
    if (!strcmp(name, "lower")) return v.kind == JV_STR && jstr_has_case(v, false);
    if (!strcmp(name, "upper")) return v.kind == JV_STR && jstr_has_case(v, true);
    if (!strcmp(name, "sameas")) {
        if (v.kind != x.kind) return false;
        if (v.kind == JV_NONE || v.kind == JV_UNDEF) return true;
        if (v.kind == JV_BOOL) return v.u.b == x.u.b;
        if (v.kind == JV_LIST) return v.u.list == x.u.list;
        if (v.kind == JV_DICT || v.kind == JV_NS) return v.u.dict == x.u.dict;
        return jv_equal(v, x);
    }
    if (!strcmp(name, "filter")) return v.kind == JV_STR && jfilter_exists(jv_strdup(c, v.u.s, v.n).u.s);
    if (!strcmp(name, "test")) return v.kind == JV_STR && jtest_exists(jv_strdup(c, v.u.s, v.n).u.s);
    jfail(c, "line %d: No test named '%s'.", c->line, name);
}
