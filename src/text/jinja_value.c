/* jinja_value: the arena, values and their Python semantics (truth, equality, ordering, str, repr,
 * json.dumps), for the Jinja interpreter.
 *
 * Printing follows Python exactly where templates can observe it: floats use the shortest repr
 * that round-trips (1.0, 0.1, 1e-05, 1e+16), containers print as Python reprs (['a', 1], {'k': None},
 * (1,)), and tojson is json.dumps(ensure_ascii=False) with the separators/indent transformers uses.
 * Called by the other jinja_*.c files; all memory comes from the render arena.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "text/jinja_int.h"
#include "text/pyjson.h"

/* ==== Arena ==== */
struct jarena_chunk {
    struct jarena_chunk *next;
    size_t               used, cap;
    _Alignas(16) unsigned char data[];
};

void *jarena_alloc(struct jarena *a, size_t bytes)
{
    bytes = (bytes + 15) & ~(size_t)15;
    struct jarena_chunk *c = a->head;
    if (!c || c->cap - c->used < bytes) {
        size_t cap = bytes > (64u << 10) ? bytes : (64u << 10);
        if (a->budget_bytes && a->used_bytes + cap > a->budget_bytes) return NULL;
        c = malloc(sizeof *c + cap);
        if (!c) return NULL;
        c->used = 0;
        c->cap = cap;
        a->used_bytes += cap;
        if (bytes >= (64u << 10) && a->head) {   // big block: keep the current chunk first
            c->next = a->head->next;
            a->head->next = c;
            c->used = bytes;
            return c->data;
        }
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += bytes;
    return p;
}

void jarena_free(struct jarena *a)
{
    struct jarena_chunk *c = a->head;
    while (c) {
        struct jarena_chunk *n = c->next;
        free(c);
        c = n;
    }
    a->head = NULL;
    a->used_bytes = 0;
}

_Noreturn void jfail(struct jctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof c->msg, fmt, ap);
    va_end(ap);
    longjmp(c->jb, 1);
}

void *jalloc(struct jctx *c, size_t bytes)
{
    void *p = jarena_alloc(&c->arena, bytes ? bytes : 1);
    if (!p) jfail(c, "template used more than %zu bytes of memory", c->lim.mem_bytes);
    return p;
}

void jstep(struct jctx *c)
{
    if (++c->steps > c->lim.steps) jfail(c, "template ran more than %lld steps", (long long)c->lim.steps);
}

/* ==== Buffers ==== */
void jbuf_put(struct jctx *c, struct jbuf *b, const char *s, size_t n)
{
    if (!n) return;
    c->out_total += n;   // every buffer counts: captured blocks and temporaries too
    if (c->out_total > c->lim.out_bytes) jfail(c, "template output exceeds %zu bytes", c->lim.out_bytes);
    if (b->cap - b->n < n + 1) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = jalloc(c, cap);
        if (b->n) memcpy(p, b->p, b->n);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void jbuf_putc(struct jctx *c, struct jbuf *b, char ch) { jbuf_put(c, b, &ch, 1); }

void jbuf_printf(struct jctx *c, struct jbuf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    jbuf_put(c, b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* ==== Constructors ==== */
struct jv jv_undef(const char *hint, size_t n) { struct jv v = { .kind = JV_UNDEF, .n = n }; v.u.s = hint; return v; }
struct jv jv_none(void) { struct jv v = { .kind = JV_NONE }; return v; }
struct jv jv_bool(bool b) { struct jv v = { .kind = JV_BOOL }; v.u.b = b; return v; }
struct jv jv_int(int64_t i) { struct jv v = { .kind = JV_INT }; v.u.i = i; return v; }
struct jv jv_float(double f) { struct jv v = { .kind = JV_FLOAT }; v.u.f = f; return v; }
struct jv jv_str(const char *s, size_t n) { struct jv v = { .kind = JV_STR, .n = n }; v.u.s = s; return v; }
struct jv jv_cstr(const char *s) { return jv_str(s, strlen(s)); }

struct jv jv_strdup(struct jctx *c, const char *s, size_t n)
{
    char *d = jalloc(c, n + 1);
    if (n) memcpy(d, s, n);
    d[n] = 0;
    return jv_str(d, n);
}

struct jv jv_list_new(struct jctx *c, size_t cap)
{
    struct jv v = { .kind = JV_LIST };
    v.u.list = jalloc(c, sizeof *v.u.list);
    memset(v.u.list, 0, sizeof *v.u.list);
    v.u.list->cap = cap;
    v.u.list->items = cap ? jalloc(c, cap * sizeof(struct jv)) : NULL;
    return v;
}

struct jv jv_dict_new(struct jctx *c, size_t cap)
{
    struct jv v = { .kind = JV_DICT };
    v.u.dict = jalloc(c, sizeof *v.u.dict);
    memset(v.u.dict, 0, sizeof *v.u.dict);
    if (cap) {
        v.u.dict->cap = cap;
        v.u.dict->keys = jalloc(c, cap * sizeof(struct jv));
        v.u.dict->vals = jalloc(c, cap * sizeof(struct jv));
    }
    return v;
}

void jlist_push(struct jctx *c, struct jlist *l, struct jv v)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        struct jv *items = jalloc(c, cap * sizeof *items);
        if (l->n) memcpy(items, l->items, l->n * sizeof *items);
        l->items = items;
        l->cap = cap;
    }
    l->items[l->n++] = v;
}

static bool key_eq(struct jv a, struct jv b)
{
    if (a.kind == JV_STR && b.kind == JV_STR) return a.n == b.n && !memcmp(a.u.s, b.u.s, a.n);
    return jv_equal(a, b);
}

void jdict_set(struct jctx *c, struct jdict *d, struct jv key, struct jv val)
{
    if (d->n > 64) { c->steps += (int64_t)(d->n / 64); jstep(c); }   // linear scan: charge for it
    for (size_t i = 0; i < d->n; i++)
        if (key_eq(d->keys[i], key)) { d->vals[i] = val; return; }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        struct jv *k = jalloc(c, cap * sizeof *k), *v = jalloc(c, cap * sizeof *v);
        if (d->n) { memcpy(k, d->keys, d->n * sizeof *k); memcpy(v, d->vals, d->n * sizeof *v); }
        d->keys = k;
        d->vals = v;
        d->cap = cap;
    }
    d->keys[d->n] = key;
    d->vals[d->n] = val;
    d->n++;
}

bool jdict_get(const struct jdict *d, struct jv key, struct jv *out)
{
    for (size_t i = 0; i < d->n; i++)
        if (key_eq(d->keys[i], key)) { *out = d->vals[i]; return true; }
    return false;
}

bool jdict_get_str(const struct jdict *d, const char *key, size_t n, struct jv *out)
{
    for (size_t i = d->n; i-- > 0;)   // frames: later entries are more likely (loop variables)
        if (d->keys[i].kind == JV_STR && d->keys[i].n == n && !memcmp(d->keys[i].u.s, key, n)) {
            *out = d->vals[i];
            return true;
        }
    return false;
}

struct jv jv_from_json(struct jctx *c, json_t *j)
{
    const char *lit = pyjson_literal(j);
    if (lit) {
        size_t n = strlen(lit);
        if (!strcmp(lit, "NaN")) return jv_float(NAN);
        if (!strcmp(lit, "Infinity")) return jv_float(INFINITY);
        if (!strcmp(lit, "-Infinity")) return jv_float(-INFINITY);
        bool digits = n > (lit[0] == '-') && lit[lit[0] == '-'] != '0';
        for (size_t i = lit[0] == '-'; i < n && digits; i++) digits = lit[i] >= '0' && lit[i] <= '9';
        if (digits) return jv_int_text(jv_strdup(c, lit, n).u.s, n);
    }   // else a forged wrapper: an ordinary dict
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        struct jv d = jv_dict_new(c, json_object_size(j));
        const char *k;
        json_t *v;
        json_object_foreach(j, k, v) {
            struct jv key = jv_strdup(c, k, strlen(k));
            d.u.dict->keys[d.u.dict->n] = key;
            d.u.dict->vals[d.u.dict->n] = jv_from_json(c, v);
            d.u.dict->n++;
        }
        return d;
    }
    case JSON_ARRAY: {
        struct jv l = jv_list_new(c, json_array_size(j));
        for (size_t i = 0; i < json_array_size(j); i++) l.u.list->items[l.u.list->n++] = jv_from_json(c, json_array_get(j, i));
        return l;
    }
    case JSON_STRING: return jv_strdup(c, json_string_value(j), json_string_length(j));
    case JSON_INTEGER: return jv_int((int64_t)json_integer_value(j));
    case JSON_REAL: return jv_float(json_real_value(j));
    case JSON_TRUE: return jv_bool(true);
    case JSON_FALSE: return jv_bool(false);
    default: return jv_none();
    }
}

/* ==== Big ints ==== */
struct jv jv_int_text(const char *s, size_t n)
{
    bool neg = s[0] == '-';
    size_t nd = n - neg;
    if (nd < 19 || (nd == 19 && memcmp(s + neg, neg ? "9223372036854775808" : "9223372036854775807", 19) <= 0))
        return jv_int((int64_t)strtoll(s, NULL, 10));
    struct jv v = { .kind = JV_BIGINT, .n = n };
    v.u.s = s;
    return v;
}

bool jv_to_i128(struct jv v, __int128 *out)
{
    if (v.kind == JV_INT) { *out = v.u.i; return true; }
    if (v.kind == JV_BOOL) { *out = v.u.b; return true; }
    if (v.kind != JV_BIGINT) return false;
    bool neg = v.u.s[0] == '-';
    __int128 x = 0;
    for (size_t i = neg; i < v.n; i++) {
        int d = v.u.s[i] - '0';
        if (__builtin_mul_overflow(x, 10, &x) || __builtin_add_overflow(x, neg ? -d : d, &x)) return false;
    }
    *out = x;
    return true;
}

struct jv jv_from_i128(struct jctx *c, __int128 x)
{
    if (x >= INT64_MIN && x <= INT64_MAX) return jv_int((int64_t)x);
    char tmp[48];
    size_t k = sizeof tmp;
    tmp[--k] = 0;
    bool neg = x < 0;
    do {
        int d = (int)(x % 10);
        tmp[--k] = (char)('0' + (d < 0 ? -d : d));
        x /= 10;
    } while (x);
    if (neg) tmp[--k] = '-';
    struct jv s = jv_strdup(c, tmp + k, sizeof tmp - 1 - k);
    return jv_int_text(s.u.s, s.n);
}

bool jv_is_int(struct jv v) { return v.kind == JV_INT || v.kind == JV_BIGINT; }

/* ordering of two ints of which at least one is big (texts are normalized: no leading zeros) */
static int wide_compare(struct jv a, struct jv b)
{
    int sa = a.kind == JV_BIGINT ? (a.u.s[0] == '-' ? -1 : 1) : 0;
    int sb = b.kind == JV_BIGINT ? (b.u.s[0] == '-' ? -1 : 1) : 0;
    if (sa != sb) {   // a big int is beyond every int64 in the direction of its sign
        int ra = sa ? sa * 2 : 0, rb = sb ? sb * 2 : 0;
        return ra < rb ? -1 : 1;
    }
    if (a.kind != JV_BIGINT || b.kind != JV_BIGINT) return 0;   // unreachable: differing sign ranks
    int r = a.n != b.n ? (a.n < b.n ? -1 : 1) : (memcmp(a.u.s, b.u.s, a.n) < 0 ? -1 : memcmp(a.u.s, b.u.s, a.n) > 0);
    return sa < 0 ? -r : r;
}

/* ==== Semantics ==== */
bool jv_is_num(struct jv v) { return v.kind == JV_INT || v.kind == JV_FLOAT || v.kind == JV_BOOL || v.kind == JV_BIGINT; }
double jv_num(struct jv v)
{
    switch (v.kind) {
    case JV_FLOAT: return v.u.f;
    case JV_INT: return (double)v.u.i;
    case JV_BOOL: return v.u.b;
    case JV_BIGINT: return strtod(v.u.s, NULL);
    default: return 0;
    }
}

bool jv_truthy(struct jv v)
{
    switch (v.kind) {
    case JV_UNDEF: case JV_NONE: return false;
    case JV_BOOL: return v.u.b;
    case JV_INT: return v.u.i != 0;
    case JV_FLOAT: return v.u.f != 0;
    case JV_STR: return v.n != 0;
    case JV_LIST: return v.gen || v.u.list->n != 0;   // a Python iterator is always true
    case JV_DICT: return v.u.dict->n != 0;
    default: return true;
    }
}

static bool equal_at(struct jv a, struct jv b, int depth);
bool jv_equal(struct jv a, struct jv b) { return equal_at(a, b, 0); }

/* Python's ==; containers nested deeper than Python's recursion limit compare by identity (a
 * template can nest lists without bound; this keeps the C stack safe). */
static bool equal_at(struct jv a, struct jv b, int depth)
{
    if (depth > 1000) return a.kind == b.kind && a.u.list == b.u.list;
    if (jv_is_num(a) && jv_is_num(b)) {
        if (a.kind != JV_FLOAT && b.kind != JV_FLOAT) {
            if (a.kind == JV_BIGINT || b.kind == JV_BIGINT) return a.kind == b.kind && !wide_compare(a, b);
            int64_t x = a.kind == JV_BOOL ? a.u.b : a.u.i, y = b.kind == JV_BOOL ? b.u.b : b.u.i;
            return x == y;
        }
        return jv_num(a) == jv_num(b);
    }
    if (a.kind != b.kind) return false;
    switch (a.kind) {
    case JV_UNDEF: case JV_NONE: return true;
    case JV_STR: return a.n == b.n && !memcmp(a.u.s, b.u.s, a.n);
    case JV_LIST:
        if (a.gen || b.gen) return a.u.list == b.u.list;
        if (a.tuple != b.tuple || a.u.list->n != b.u.list->n) return false;
        for (size_t i = 0; i < a.u.list->n; i++) if (!equal_at(a.u.list->items[i], b.u.list->items[i], depth + 1)) return false;
        return true;
    case JV_DICT: {
        if (a.u.dict->n != b.u.dict->n) return false;
        for (size_t i = 0; i < a.u.dict->n; i++) {
            struct jv o;
            if (!jdict_get(b.u.dict, a.u.dict->keys[i], &o) || !equal_at(a.u.dict->vals[i], o, depth + 1)) return false;
        }
        return true;
    }
    case JV_NS: return a.u.dict == b.u.dict;
    case JV_MACRO: return a.u.macro == b.u.macro;
    case JV_FUNC: return a.u.func == b.u.func;
    case JV_LOOP: return a.u.loop == b.u.loop;
    case JV_METHOD: return a.u.method == b.u.method;
    default: return false;
    }
}

const char *jv_type_name(struct jv v)
{
    switch (v.kind) {
    case JV_UNDEF: return "Undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_BIGINT: return "int";
    case JV_STR: return "str";
    case JV_LIST: return v.gen ? "generator" : v.tuple ? "tuple" : "list";
    case JV_DICT: return "dict";
    case JV_NS: return "Namespace";
    case JV_MACRO: return "Macro";
    case JV_FUNC: return "function";
    case JV_LOOP: return "LoopContext";
    case JV_METHOD: return "builtin_function_or_method";
    }
    return "object";
}

int jv_compare(struct jctx *c, struct jv a, struct jv b)
{
    if (jv_is_num(a) && jv_is_num(b)) {
        if (a.kind != JV_FLOAT && b.kind != JV_FLOAT) {
            if (a.kind == JV_BIGINT || b.kind == JV_BIGINT) return wide_compare(a, b);
            int64_t x = a.kind == JV_BOOL ? a.u.b : a.u.i, y = b.kind == JV_BOOL ? b.u.b : b.u.i;
            return x < y ? -1 : x > y;
        }
        double x = jv_num(a), y = jv_num(b);
        return x < y ? -1 : x > y;
    }
    if (a.kind == JV_STR && b.kind == JV_STR) {
        size_t n = a.n < b.n ? a.n : b.n;
        int r = memcmp(a.u.s, b.u.s, n);
        if (r) return r < 0 ? -1 : 1;
        return a.n < b.n ? -1 : a.n > b.n;
    }
    if (a.kind == JV_LIST && b.kind == JV_LIST) {
        size_t n = a.u.list->n < b.u.list->n ? a.u.list->n : b.u.list->n;
        for (size_t i = 0; i < n; i++) {
            if (jv_equal(a.u.list->items[i], b.u.list->items[i])) continue;
            if (++c->depth > c->lim.depth) jfail(c, "line %d: values nested too deeply to compare", c->line);
            int r = jv_compare(c, a.u.list->items[i], b.u.list->items[i]);
            c->depth--;
            return r;
        }
        return a.u.list->n < b.u.list->n ? -1 : a.u.list->n > b.u.list->n;
    }
    jfail(c, "line %d: '<' not supported between instances of '%s' and '%s'", c->line, jv_type_name(a), jv_type_name(b));
}

size_t utf8_count(const char *s, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

/* ==== Printing ==== */
void py_float_repr(double f, char buf[40])
{
    if (isnan(f)) { strcpy(buf, "nan"); return; }
    if (isinf(f)) { strcpy(buf, f < 0 ? "-inf" : "inf"); return; }
    if (f == 0) { strcpy(buf, signbit(f) ? "-0.0" : "0.0"); return; }
    char tmp[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, f);
        if (strtod(tmp, NULL) == f) break;
    }
    // tmp: [-]d[.ddd]e[+-]XX
    char digits[24];
    int nd = 0, k = 0;
    bool neg = tmp[0] == '-';
    const char *q = tmp + neg;
    for (; *q && *q != 'e'; q++) if (*q != '.') digits[nd++] = *q;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    int e = atoi(q + 1);
    if (neg) buf[k++] = '-';
    if (e < -4 || e >= 16) {
        buf[k++] = digits[0];
        if (nd > 1) { buf[k++] = '.'; memcpy(buf + k, digits + 1, (size_t)nd - 1); k += nd - 1; }
        k += snprintf(buf + k, 40 - (size_t)k, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
        return;
    }
    if (e < 0) {
        buf[k++] = '0'; buf[k++] = '.';
        for (int i = 0; i < -e - 1; i++) buf[k++] = '0';
        memcpy(buf + k, digits, (size_t)nd); k += nd;
    } else {
        for (int i = 0; i <= e; i++) buf[k++] = i < nd ? digits[i] : '0';
        buf[k++] = '.';
        if (nd > e + 1) { memcpy(buf + k, digits + e + 1, (size_t)(nd - e - 1)); k += nd - e - 1; }
        else buf[k++] = '0';
    }
    buf[k] = 0;
}

static void write_num(struct jctx *c, struct jbuf *b, struct jv v)
{
    if (v.kind == JV_INT) jbuf_printf(c, b, "%lld", (long long)v.u.i);
    else if (v.kind == JV_BIGINT) jbuf_put(c, b, v.u.s, v.n);
    else {
        char tmp[40];
        py_float_repr(v.u.f, tmp);
        jbuf_put(c, b, tmp, strlen(tmp));
    }
}

/* Python's str.isprintable for one code point: not a control, format, surrogate, private-use,
 * unassigned or separator character (the space excepted) */
static bool py_printable(int32_t cp)
{
    if (cp == ' ') return true;
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CS: case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN: case UTF8PROC_CATEGORY_ZL: case UTF8PROC_CATEGORY_ZP: case UTF8PROC_CATEGORY_ZS:
        return false;
    default:
        return true;
    }
}

/* repr(str): quotes as Python picks them, \\ \n \r \t and the quote escaped, every other
 * non-printable code point as \xNN, \uNNNN or \UNNNNNNNN */
static void write_str_repr(struct jctx *c, struct jbuf *b, const char *s, size_t n)
{
    bool has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    jbuf_putc(c, b, q);
    size_t run = 0;
    for (size_t i = 0; i < n;) {
        int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0) { i++; continue; }   // not UTF-8: the byte passes as it is
        const char *esc = NULL;
        char tmp[16];
        if (cp == '\\') esc = "\\\\";
        else if (cp == q) esc = q == '\'' ? "\\'" : "\\\"";
        else if (cp == '\n') esc = "\\n";
        else if (cp == '\r') esc = "\\r";
        else if (cp == '\t') esc = "\\t";
        else if (!py_printable(cp)) {
            if (cp < 0x100) snprintf(tmp, sizeof tmp, "\\x%02x", (unsigned)cp);
            else if (cp < 0x10000) snprintf(tmp, sizeof tmp, "\\u%04x", (unsigned)cp);
            else snprintf(tmp, sizeof tmp, "\\U%08x", (unsigned)cp);
            esc = tmp;
        }
        if (esc) {
            jbuf_put(c, b, s + run, i - run);
            jbuf_put(c, b, esc, strlen(esc));
            run = i + (size_t)k;
        }
        i += (size_t)k;
    }
    jbuf_put(c, b, s + run, n - run);
    jbuf_putc(c, b, q);
}

void jv_write_repr(struct jctx *c, struct jbuf *b, struct jv v)
{
    if (++c->depth > c->lim.depth) jfail(c, "line %d: value nested too deeply to print", c->line);
    switch (v.kind) {
    case JV_STR:
        if (v.markup) jbuf_put(c, b, "Markup(", 7);
        write_str_repr(c, b, v.u.s, v.n);
        if (v.markup) jbuf_putc(c, b, ')');
        break;
    case JV_LIST:
        if (v.gen) { jv_write_str(c, b, v); break; }
        jbuf_putc(c, b, v.tuple ? '(' : '[');
        for (size_t i = 0; i < v.u.list->n; i++) {
            if (i) jbuf_put(c, b, ", ", 2);
            jv_write_repr(c, b, v.u.list->items[i]);
        }
        if (v.tuple && v.u.list->n == 1) jbuf_putc(c, b, ',');
        jbuf_putc(c, b, v.tuple ? ')' : ']');
        break;
    case JV_DICT: case JV_NS:
        if (v.kind == JV_NS) jbuf_put(c, b, "<Namespace ", 11);
        jbuf_putc(c, b, '{');
        for (size_t i = 0; i < v.u.dict->n; i++) {
            if (i) jbuf_put(c, b, ", ", 2);
            jv_write_repr(c, b, v.u.dict->keys[i]);
            jbuf_put(c, b, ": ", 2);
            jv_write_repr(c, b, v.u.dict->vals[i]);
        }
        jbuf_putc(c, b, '}');
        if (v.kind == JV_NS) jbuf_putc(c, b, '>');
        break;
    default: jv_write_str(c, b, v);
    }
    c->depth--;
}

void jv_write_str(struct jctx *c, struct jbuf *b, struct jv v)
{
    switch (v.kind) {
    case JV_UNDEF: return;
    case JV_NONE: jbuf_put(c, b, "None", 4); return;
    case JV_BOOL: if (v.u.b) jbuf_put(c, b, "True", 4); else jbuf_put(c, b, "False", 5); return;
    case JV_INT: case JV_FLOAT: case JV_BIGINT: write_num(c, b, v); return;
    case JV_STR: jbuf_put(c, b, v.u.s, v.n); return;
    case JV_LIST:
        if (v.gen) { jbuf_put(c, b, "<generator object>", 18); return; }   // Python adds an address
        jv_write_repr(c, b, v);
        return;
    case JV_DICT: case JV_NS: jv_write_repr(c, b, v); return;
    case JV_METHOD:
        jbuf_printf(c, b, "<built-in method %s of %s object>", v.u.method->name, jv_type_name(v.u.method->obj));
        return;
    case JV_MACRO: jbuf_put(c, b, "<Macro>", 7); return;
    case JV_FUNC: jbuf_put(c, b, "<function>", 10); return;
    case JV_LOOP: jbuf_put(c, b, "<LoopContext>", 13); return;
    }
}

struct jv jv_to_str(struct jctx *c, struct jv v)
{
    if (v.kind == JV_STR) return v;
    if (v.kind == JV_UNDEF) return jv_str("", 0);
    struct jbuf b = {0};
    jv_write_str(c, &b, v);
    return b.n ? jv_str(b.p, b.n) : jv_str("", 0);
}

static void write_json_str(struct jctx *c, struct jbuf *b, const char *s, size_t n, bool ascii)
{
    jbuf_putc(c, b, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        const char *esc = NULL;
        char tmp[16];
        size_t skip = 0;
        if (ch == '"') esc = "\\\"";
        else if (ch == '\\') esc = "\\\\";
        else if (ch == '\n') esc = "\\n";
        else if (ch == '\r') esc = "\\r";
        else if (ch == '\t') esc = "\\t";
        else if (ch == '\b') esc = "\\b";
        else if (ch == '\f') esc = "\\f";
        else if (ch < 0x20 || (ascii && ch == 0x7f)) { snprintf(tmp, sizeof tmp, "\\u%04x", ch); esc = tmp; }
        else if (ascii && ch >= 0x80) {
            // decode one UTF-8 sequence (malformed bytes pass as U+FFFD) and write \uXXXX (surrogate pairs)
            uint32_t cp = 0xFFFD;
            size_t len = ch >= 0xF0 ? 4 : ch >= 0xE0 ? 3 : ch >= 0xC0 ? 2 : 1;
            if (len > 1 && i + len <= n) {
                cp = ch & (0x7F >> len);
                for (size_t k = 1; k < len; k++) cp = cp << 6 | ((unsigned char)s[i + k] & 0x3F);
            }
            if (cp >= 0x10000) {
                cp -= 0x10000;
                snprintf(tmp, sizeof tmp, "\\u%04x\\u%04x", 0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF));
            } else snprintf(tmp, sizeof tmp, "\\u%04x", cp);
            esc = tmp;
            skip = (len > 1 && i + len <= n) ? len - 1 : 0;
        }
        if (!esc) continue;
        jbuf_put(c, b, s + run, i - run);
        jbuf_put(c, b, esc, strlen(esc));
        i += skip;
        run = i + 1;
    }
    jbuf_put(c, b, s + run, n - run);
    jbuf_putc(c, b, '"');
}

static void json_newline(struct jctx *c, struct jbuf *b, const char *indent, size_t indent_n, int level)
{
    jbuf_putc(c, b, '\n');
    for (int i = 0; i < level; i++) jbuf_put(c, b, indent, indent_n);
}

void jv_write_json(struct jctx *c, struct jbuf *b, struct jv v, const struct jjson_opts *o, int level)
{
    const char *indent = o->indent, *item_sep = o->item_sep, *key_sep = o->key_sep;
    size_t indent_n = o->indent_n;
    bool sort_keys = o->sort_keys;
    if (level > c->lim.depth) jfail(c, "line %d: tojson: value nested too deeply", c->line);
    switch (v.kind) {
    case JV_NONE: jbuf_put(c, b, "null", 4); return;
    case JV_BOOL: if (v.u.b) jbuf_put(c, b, "true", 4); else jbuf_put(c, b, "false", 5); return;
    case JV_INT: case JV_BIGINT: write_num(c, b, v); return;
    case JV_FLOAT:
        if (isnan(v.u.f)) jbuf_put(c, b, "NaN", 3);
        else if (isinf(v.u.f)) { if (v.u.f < 0) jbuf_put(c, b, "-Infinity", 9); else jbuf_put(c, b, "Infinity", 8); }
        else write_num(c, b, v);
        return;
    case JV_STR: write_json_str(c, b, v.u.s, v.n, o->ascii); return;
    case JV_LIST: {
        size_t n = v.u.list->n;
        if (v.gen) jfail(c, "line %d: Object of type generator is not JSON serializable", c->line);
        if (!n) { jbuf_put(c, b, "[]", 2); return; }
        jbuf_putc(c, b, '[');
        for (size_t i = 0; i < n; i++) {
            if (i) jbuf_put(c, b, item_sep, strlen(item_sep));
            if (indent) json_newline(c, b, indent, indent_n, level + 1);
            jv_write_json(c, b, v.u.list->items[i], o, level + 1);
        }
        if (indent) json_newline(c, b, indent, indent_n, level);
        jbuf_putc(c, b, ']');
        return;
    }
    case JV_DICT: {
        struct jdict *d = v.u.dict;
        if (!d->n) { jbuf_put(c, b, "{}", 2); return; }
        size_t *order = jalloc(c, d->n * sizeof *order);
        for (size_t i = 0; i < d->n; i++) order[i] = i;
        if (sort_keys)   // insertion sort: dicts in templates are small
            for (size_t i = 1; i < d->n; i++)
                for (size_t j = i; j > 0 && jv_compare(c, d->keys[order[j - 1]], d->keys[order[j]]) > 0; j--) {
                    size_t t = order[j]; order[j] = order[j - 1]; order[j - 1] = t;
                }
        jbuf_putc(c, b, '{');
        for (size_t k = 0; k < d->n; k++) {
            size_t i = order[k];
            if (k) jbuf_put(c, b, item_sep, strlen(item_sep));
            if (indent) json_newline(c, b, indent, indent_n, level + 1);
            struct jv key = d->keys[i];
            if (key.kind == JV_STR) write_json_str(c, b, key.u.s, key.n, o->ascii);
            else if (key.kind == JV_NONE) jbuf_put(c, b, "\"null\"", 6);
            else if (key.kind == JV_BOOL) { if (key.u.b) jbuf_put(c, b, "\"true\"", 6); else jbuf_put(c, b, "\"false\"", 7); }
            else if (key.kind == JV_INT || key.kind == JV_FLOAT || key.kind == JV_BIGINT) { jbuf_putc(c, b, '"'); write_num(c, b, key); jbuf_putc(c, b, '"'); }
            else jfail(c, "line %d: keys must be str, int, float, bool or None, not %s", c->line, jv_type_name(key));
            jbuf_put(c, b, key_sep, strlen(key_sep));
            jv_write_json(c, b, d->vals[i], o, level + 1);
        }
        if (indent) json_newline(c, b, indent, indent_n, level);
        jbuf_putc(c, b, '}');
        return;
    }
    default:
        jfail(c, "line %d: Object of type %s is not JSON serializable", c->line, jv_type_name(v));
    }
}

struct jv jv_gen(struct jv list)
{
    list.gen = true;
    list.tuple = false;
    return list;
}

struct jv jv_iter_list(struct jctx *c, struct jv v)
{
    switch (v.kind) {
    case JV_UNDEF: return jv_list_new(c, 0);
    case JV_LIST: {
        struct jv l = v;
        l.tuple = false;
        if (v.gen) {   // an iterator runs once
            if (v.u.list->exhausted) return jv_list_new(c, 0);
            v.u.list->exhausted = true;
            l.gen = false;
        }
        return l;
    }
    case JV_DICT: {
        struct jv l = jv_list_new(c, v.u.dict->n);
        for (size_t i = 0; i < v.u.dict->n; i++) l.u.list->items[l.u.list->n++] = v.u.dict->keys[i];
        return l;
    }
    case JV_STR: {
        struct jv l = jv_list_new(c, utf8_count(v.u.s, v.n));
        size_t i = 0;
        while (i < v.n) {
            size_t j = i + 1;
            while (j < v.n && ((unsigned char)v.u.s[j] & 0xC0) == 0x80) j++;
            jlist_push(c, l.u.list, jv_str(v.u.s + i, j - i));
            i = j;
        }
        return l;
    }
    default:
        jfail(c, "line %d: '%s' object is not iterable", c->line, jv_type_name(v));
    }
}
