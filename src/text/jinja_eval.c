/* jinja_eval: walks the template tree and renders it (jinja_render).
 *
 * Scoping follows Jinja: a for-loop iteration, a macro call and a caller block each get a frame;
 * `set` writes to the innermost frame, so assignments inside loops do not leak out (templates use
 * namespace() for that); if-blocks share their frame. Undefined values are falsy, iterate as empty
 * and print as "", while arithmetic, attribute or item access on them raises, as with Jinja's
 * default Undefined. Every statement, loop iteration and call counts against the step limit; macro
 * calls against the depth limit. Errors longjmp to jinja_render with a message naming the line.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"
#include "text/jinja_int.h"

struct jmacro {
    const struct jn *def;       // JN_MACRO or JN_CALLBLOCK (caller)
    struct jframe   *closure;   // frame the macro was defined in
};

struct jloop {
    struct jlist    *items;
    size_t           i;
    const struct jn *node;    // the JN_FOR: `loop(xs)` of a recursive loop runs it again over xs
    struct jframe   *frame;   // frame the for statement runs in
    int              depth;   // loop.depth: 1 at the top, +1 per recursive call
};

static void exec_body(struct jctx *c, struct jframe *f, const struct jn *body);
static struct jv call_loop(struct jctx *c, struct jloop *l, struct jv *args, int n_pos);

static struct jframe *frame_new(struct jctx *c, struct jframe *parent)
{
    struct jframe *f = jalloc(c, sizeof *f);
    memset(f, 0, sizeof *f);
    f->parent = parent;
    return f;
}

static void frame_set(struct jctx *c, struct jframe *f, const char *name, struct jv v)
{
    jdict_set(c, &f->vars, jv_cstr(name), v);
}

static struct jv lookup(struct jframe *f, const char *name)
{
    size_t n = strlen(name);
    for (; f; f = f->parent) {
        struct jv v;
        if (jdict_get_str(&f->vars, name, n, &v)) return v;
    }
    return jv_undef(name, n);
}

static _Noreturn void fail_undef(struct jctx *c, struct jv u)
{
    if (u.u.s) jfail(c, "line %d: '%.*s' is undefined", c->line, (int)u.n, u.u.s);
    jfail(c, "line %d: undefined value used", c->line);
}

/* ==== Attribute and item access ==== */
static struct jv loop_attr(struct jctx *c, struct jloop *l, const char *name)
{
    size_t n = l->items->n, i = l->i;
    if (!strcmp(name, "index")) return jv_int((int64_t)i + 1);
    if (!strcmp(name, "index0")) return jv_int((int64_t)i);
    if (!strcmp(name, "revindex")) return jv_int((int64_t)(n - i));
    if (!strcmp(name, "revindex0")) return jv_int((int64_t)(n - i - 1));
    if (!strcmp(name, "first")) return jv_bool(i == 0);
    if (!strcmp(name, "last")) return jv_bool(i + 1 == n);
    if (!strcmp(name, "length")) return jv_int((int64_t)n);
    if (!strcmp(name, "depth")) return jv_int(l->depth);
    if (!strcmp(name, "depth0")) return jv_int(l->depth - 1);
    if (!strcmp(name, "previtem")) return i > 0 ? l->items->items[i - 1] : jv_undef("previtem", 8);
    if (!strcmp(name, "nextitem")) return i + 1 < n ? l->items->items[i + 1] : jv_undef("nextitem", 8);
    (void)c;
    return jv_undef(name, strlen(name));
}

/* obj.name as Jinja's sandbox resolves it: Python's getattr first (so `d.items` is the dict's
 * method even when d has an "items" key; a method the sandbox blocks is undefined), then the item. */
static struct jv get_attr(struct jctx *c, struct jv obj, const char *name)
{
    struct jv v;
    bool unsafe = false;
    if ((obj.kind == JV_DICT || obj.kind == JV_STR || (obj.kind == JV_LIST && !obj.gen)) &&
        jmethod_exists(obj, name, &unsafe)) {
        if (unsafe) return jv_undef(name, strlen(name));
        struct jmethod *m = jalloc(c, sizeof *m);
        m->obj = obj;
        m->name = name;
        v = (struct jv){ .kind = JV_METHOD };
        v.u.method = m;
        return v;
    }
    switch (obj.kind) {
    case JV_UNDEF: fail_undef(c, obj);
    case JV_DICT: case JV_NS:
        if (jdict_get_str(obj.u.dict, name, strlen(name), &v)) return v;
        break;
    case JV_LOOP: return loop_attr(c, obj.u.loop, name);
    case JV_LIST:   // groupby's namedtuple (grouper, list)
        if (obj.group && !strcmp(name, "grouper")) return obj.u.list->items[0];
        if (obj.group && !strcmp(name, "list")) return obj.u.list->items[1];
        break;
    default: break;
    }
    return jv_undef(name, strlen(name));
}

static int64_t as_index(struct jv k, bool *ok)
{
    *ok = k.kind == JV_INT || k.kind == JV_BOOL;
    return k.kind == JV_INT ? k.u.i : k.kind == JV_BOOL ? k.u.b : 0;
}

/* byte offset of code point i in s (i <= count) */
static size_t utf8_offset(const char *s, size_t n, size_t i)
{
    size_t b = 0;
    while (i > 0 && b < n) {
        b++;
        while (b < n && ((unsigned char)s[b] & 0xC0) == 0x80) b++;
        i--;
    }
    return b;
}

static struct jv get_item(struct jctx *c, struct jv obj, struct jv key)
{
    struct jv v;
    bool ok;
    switch (obj.kind) {
    case JV_UNDEF: fail_undef(c, obj);
    case JV_DICT: case JV_NS:
        if (jdict_get(obj.u.dict, key, &v)) return v;
        break;
    case JV_LOOP:
        if (key.kind == JV_STR) return loop_attr(c, obj.u.loop, jv_strdup(c, key.u.s, key.n).u.s);
        break;
    case JV_LIST: {
        int64_t i = as_index(key, &ok), n = (int64_t)obj.u.list->n;
        if (!ok || obj.gen) break;   // an iterator is not subscriptable: the sandbox gives undefined
        if (i < 0) i += n;
        if (i >= 0 && i < n) return obj.u.list->items[i];
        break;
    }
    case JV_STR: {
        int64_t i = as_index(key, &ok), n = (int64_t)utf8_count(obj.u.s, obj.n);
        if (!ok) break;
        if (i < 0) i += n;
        if (i >= 0 && i < n) {
            size_t b = utf8_offset(obj.u.s, obj.n, (size_t)i), e = utf8_offset(obj.u.s, obj.n, (size_t)i + 1);
            return jv_str(obj.u.s + b, e - b);
        }
        break;
    }
    default: break;
    }
    if (key.kind == JV_STR) return jv_undef(key.u.s, key.n);
    return jv_undef(NULL, 0);
}

static int64_t slice_bound(struct jctx *c, struct jv v, int64_t dflt, int64_t n, int64_t step)
{
    if (v.kind == JV_NONE || v.kind == JV_UNDEF) return dflt;
    bool ok;
    int64_t i = as_index(v, &ok);
    if (!ok) jfail(c, "line %d: slice indices must be integers or None", c->line);
    if (i < 0) { i += n; if (i < 0) i = step < 0 ? -1 : 0; }
    else if (i >= n) i = step < 0 ? n - 1 : n;
    return i;
}

static struct jv do_slice(struct jctx *c, struct jv obj, struct jv a, struct jv b, struct jv s)
{
    int64_t step = 1;
    if (s.kind != JV_NONE && s.kind != JV_UNDEF) {
        bool ok;
        step = as_index(s, &ok);
        if (!ok) jfail(c, "line %d: slice indices must be integers or None", c->line);
        if (step == 0) jfail(c, "line %d: slice step cannot be zero", c->line);
    }
    if (obj.kind == JV_UNDEF) fail_undef(c, obj);
    if (obj.kind == JV_LIST && obj.gen) return jv_undef(NULL, 0);
    struct jv items = obj;
    bool is_str = obj.kind == JV_STR;
    if (is_str) items = jv_iter_list(c, obj);
    else if (obj.kind != JV_LIST) jfail(c, "line %d: '%s' object is not subscriptable", c->line, jv_type_name(obj));
    int64_t n = (int64_t)items.u.list->n;
    int64_t lo = slice_bound(c, a, step < 0 ? n - 1 : 0, n, step);
    int64_t hi = slice_bound(c, b, step < 0 ? -1 : n, n, step);
    struct jv out = jv_list_new(c, 0);
    out.tuple = obj.tuple;
    if (step > 0) for (int64_t i = lo; i < hi; i += step) jlist_push(c, out.u.list, items.u.list->items[i]);
    else for (int64_t i = lo; i > hi; i += step) jlist_push(c, out.u.list, items.u.list->items[i]);
    if (!is_str) return out;
    struct jbuf buf = {0};
    for (size_t i = 0; i < out.u.list->n; i++) jbuf_put(c, &buf, out.u.list->items[i].u.s, out.u.list->items[i].n);
    return buf.n ? jv_str(buf.p, buf.n) : jv_str("", 0);
}

/* ==== Operators ==== */
static _Noreturn void fail_operands(struct jctx *c, const char *op, struct jv a, struct jv b)
{
    if (a.kind == JV_UNDEF) fail_undef(c, a);
    if (b.kind == JV_UNDEF) fail_undef(c, b);
    jfail(c, "line %d: unsupported operand type(s) for %s: '%s' and '%s'", c->line, op, jv_type_name(a),
          jv_type_name(b));
}

static int64_t ival(struct jv v) { return v.kind == JV_BOOL ? v.u.b : v.u.i; }

static struct jv str_concat(struct jctx *c, struct jv a, struct jv b)
{
    char *s = jalloc(c, a.n + b.n + 1);
    memcpy(s, a.u.s, a.n);
    memcpy(s + a.n, b.u.s, b.n);
    s[a.n + b.n] = 0;
    c->out_total += a.n + b.n;
    if (c->out_total > c->lim.out_bytes) jfail(c, "template output exceeds %zu bytes", c->lim.out_bytes);
    return jv_str(s, a.n + b.n);
}

static struct jv repeat(struct jctx *c, struct jv seq, int64_t k)
{
    if (k < 0) k = 0;
    if (seq.kind == JV_STR) {
        if (!seq.n) return jv_str("", 0);   // "" * 10**18 is "" at once (it looped k times)
        if ((uint64_t)k > c->lim.out_bytes / seq.n) jfail(c, "template output exceeds %zu bytes", c->lim.out_bytes);
        struct jbuf b = {0};
        for (int64_t i = 0; i < k; i++) jbuf_put(c, &b, seq.u.s, seq.n);
        return b.n ? jv_str(b.p, b.n) : jv_str("", 0);
    }
    struct jv out = jv_list_new(c, 0);
    for (int64_t i = 0; i < k; i++) {
        jstep(c);
        for (size_t j = 0; j < seq.u.list->n; j++) jlist_push(c, out.u.list, seq.u.list->items[j]);
    }
    return out;
}

static double py_fmod(double a, double b)
{
    double m = fmod(a, b);
    if (m != 0 && ((b < 0) != (m < 0))) m += b;
    return m;
}

static const char *const OP_NAMES[] = { "", "+", "-", "*", "/", "//", "%", "**", "~" };

/* Integer arithmetic where an operand or the result is beyond int64 (Python ints have no bound):
 * exact through 128 bits, which covers the values real configs and templates hold (int(1e30)). */
static struct jv wide_arith(struct jctx *c, int op, struct jv a, struct jv b)
{
    __int128 x, y, r;
    if (!jv_to_i128(a, &x) || !jv_to_i128(b, &y))
        jfail(c, "line %d: integer beyond 128 bits in '%s'", c->line, OP_NAMES[op]);
    bool of = false;
    switch (op) {
    case JOP_ADD: of = __builtin_add_overflow(x, y, &r); break;
    case JOP_SUB: of = __builtin_sub_overflow(x, y, &r); break;
    case JOP_MUL: of = __builtin_mul_overflow(x, y, &r); break;
    case JOP_DIV:
        if (!y) jfail(c, "line %d: division by zero", c->line);
        return jv_float((double)x / (double)y);
    case JOP_FLOORDIV: case JOP_MOD: {
        if (!y) jfail(c, "line %d: integer division or modulo by zero", c->line);
        if (y == -1) { of = __builtin_sub_overflow((__int128)0, x, &r); if (op == JOP_MOD) r = 0; break; }
        __int128 q = x / y, m = x % y;
        if (m != 0 && ((m < 0) != (y < 0))) { q--; m += y; }
        r = op == JOP_MOD ? m : q;
        break;
    }
    default:
        jfail(c, "line %d: integer beyond 64 bits in '%s'", c->line, OP_NAMES[op]);
    }
    if (of) jfail(c, "line %d: integer result beyond 128 bits in '%s'", c->line, OP_NAMES[op]);
    return jv_from_i128(c, r);
}

static struct jv binop(struct jctx *c, int op, struct jv a, struct jv b)
{
    const char *const *names = OP_NAMES;
    bool num = jv_is_num(a) && jv_is_num(b);
    bool ints = num && a.kind != JV_FLOAT && b.kind != JV_FLOAT;
    int64_t r;
    if (ints && (a.kind == JV_BIGINT || b.kind == JV_BIGINT) && op != JOP_CONCAT) return wide_arith(c, op, a, b);
    if ((a.markup || b.markup) && a.kind == JV_STR && (op == JOP_ADD || op == JOP_MOD)) {
        // markupsafe.Markup: the other operand is escaped (str + Markup too: Python tries Markup's
        // reflected __radd__ first) and the result is Markup
        if (op == JOP_ADD && b.kind == JV_STR) {
            struct jv m = str_concat(c, a.markup ? a : jstr_escape_html(c, a), b.markup ? b : jstr_escape_html(c, b));
            m.markup = true;
            return m;
        }
        if (op == JOP_MOD && a.markup) {
            struct jv m = jpercent_format(c, a, b, true);
            m.markup = true;
            return m;
        }
    }
    switch (op) {
    case JOP_CONCAT: return str_concat(c, jv_to_str(c, a), jv_to_str(c, b));
    case JOP_ADD:
        if (ints) { if (__builtin_add_overflow(ival(a), ival(b), &r)) break; return jv_int(r); }
        if (num) return jv_float(jv_num(a) + jv_num(b));
        if (a.kind == JV_STR && b.kind == JV_STR) return str_concat(c, a, b);
        if (a.kind == JV_LIST && b.kind == JV_LIST && a.tuple == b.tuple && !a.gen && !b.gen) {
            struct jv l = jv_list_new(c, a.u.list->n + b.u.list->n);
            for (size_t i = 0; i < a.u.list->n; i++) jlist_push(c, l.u.list, a.u.list->items[i]);
            for (size_t i = 0; i < b.u.list->n; i++) jlist_push(c, l.u.list, b.u.list->items[i]);
            l.tuple = a.tuple;
            return l;
        }
        break;
    case JOP_SUB:
        if (ints) { if (__builtin_sub_overflow(ival(a), ival(b), &r)) break; return jv_int(r); }
        if (num) return jv_float(jv_num(a) - jv_num(b));
        break;
    case JOP_MUL:
        if (ints) { if (__builtin_mul_overflow(ival(a), ival(b), &r)) break; return jv_int(r); }
        if (num) return jv_float(jv_num(a) * jv_num(b));
        if ((a.kind == JV_STR || a.kind == JV_LIST) && (b.kind == JV_INT || b.kind == JV_BOOL)) return repeat(c, a, ival(b));
        if ((b.kind == JV_STR || b.kind == JV_LIST) && (a.kind == JV_INT || a.kind == JV_BOOL)) return repeat(c, b, ival(a));
        break;
    case JOP_DIV:
        if (!num) break;
        if (jv_num(b) == 0) jfail(c, "line %d: division by zero", c->line);
        return jv_float(jv_num(a) / jv_num(b));
    case JOP_FLOORDIV:
        if (!num) break;
        if (jv_num(b) == 0) jfail(c, "line %d: integer division or modulo by zero", c->line);
        if (ints) {
            int64_t x = ival(a), y = ival(b);
            if (x == INT64_MIN && y == -1) break;
            int64_t q = x / y;
            if ((x % y != 0) && ((x < 0) != (y < 0))) q--;
            return jv_int(q);
        }
        return jv_float(floor(jv_num(a) / jv_num(b)));
    case JOP_MOD:
        if (a.kind == JV_STR) return jpercent_format(c, a, b, false);
        if (!num) break;
        if (jv_num(b) == 0) jfail(c, "line %d: integer division or modulo by zero", c->line);
        if (ints) {
            int64_t x = ival(a), y = ival(b);
            if (y == -1) return jv_int(0);
            int64_t m = x % y;
            if (m != 0 && ((m < 0) != (y < 0))) m += y;
            return jv_int(m);
        }
        return jv_float(py_fmod(jv_num(a), jv_num(b)));
    case JOP_POW:
        if (!num) break;
        if (ints && ival(b) >= 0) {
            int64_t base = ival(a), e = ival(b), acc = 1;
            bool of = false;
            while (e > 0 && !of) {
                if (e & 1) of |= __builtin_mul_overflow(acc, base, &acc);
                e >>= 1;
                if (e) of |= __builtin_mul_overflow(base, base, &base);
            }
            if (!of) return jv_int(acc);
            jfail(c, "line %d: integer result too large", c->line);
        }
        if (jv_num(a) == 0 && jv_num(b) < 0) jfail(c, "line %d: 0.0 cannot be raised to a negative power", c->line);
        return jv_float(pow(jv_num(a), jv_num(b)));
    }
    if (ints && op != JOP_POW) return wide_arith(c, op, a, b);   // int64 overflow: Python grows the int
    fail_operands(c, names[op], a, b);
}

struct jv jarith(struct jctx *c, int op, struct jv a, struct jv b) { return binop(c, op, a, b); }

static bool contains(struct jctx *c, struct jv item, struct jv coll)
{
    switch (coll.kind) {
    case JV_UNDEF: return false;
    case JV_STR:
        if (item.kind != JV_STR)
            jfail(c, "line %d: 'in <string>' requires string as left operand, not %s", c->line, jv_type_name(item));
        if (!item.n) return true;
        return item.n <= coll.n && memmem(coll.u.s, coll.n, item.u.s, item.n) != NULL;
    case JV_LIST:
        if (coll.gen) coll = jv_iter_list(c, coll);
        c->steps += (int64_t)(coll.u.list->n / 64);   // linear scan: charge for it
        jstep(c);
        for (size_t i = 0; i < coll.u.list->n; i++) if (jv_equal(item, coll.u.list->items[i])) return true;
        return false;
    case JV_DICT: case JV_NS: {
        struct jv v;
        return jdict_get(coll.u.dict, item, &v);
    }
    default:
        jfail(c, "line %d: argument of type '%s' is not iterable", c->line, jv_type_name(coll));
    }
}

static bool compare(struct jctx *c, int op, struct jv a, struct jv b)
{
    switch (op) {
    case JOP_EQ: return jv_equal(a, b);
    case JOP_NE: return !jv_equal(a, b);
    case JOP_LT: return jv_compare(c, a, b) < 0;
    case JOP_LE: return jv_compare(c, a, b) <= 0;
    case JOP_GT: return jv_compare(c, a, b) > 0;
    case JOP_GE: return jv_compare(c, a, b) >= 0;
    case JOP_IN: return contains(c, a, b);
    case JOP_NOTIN: return !contains(c, a, b);
    }
    return false;
}

/* ==== Calls ==== */
struct args { struct jv *v; int n_pos; const char **kw; int n_kw; };

static struct args eval_args(struct jctx *c, struct jframe *f, const struct jn *n)
{
    struct args a = { NULL, n->n_pos, n->kw, n->n_kids - n->n_pos };
    if (n->n_kids) {
        a.v = jalloc(c, sizeof(struct jv) * (size_t)n->n_kids);
        for (int i = 0; i < n->n_kids; i++) a.v[i] = jeval(c, f, n->kids[i]);
    }
    return a;
}

static struct jv call_macro(struct jctx *c, struct jmacro *m, struct jv *args, int n_pos, const char **kw, int n_kw,
                            struct jv caller)
{
    const struct jn *def = m->def;
    if (++c->depth > c->lim.depth) jfail(c, "line %d: macro calls nested more than %d deep", c->line, c->lim.depth);
    jstep(c);
    struct jframe *f = frame_new(c, m->closure);
    struct jv varargs = jv_list_new(c, 0), kwargs = jv_dict_new(c, 0);
    varargs.tuple = true;
    const char *mname = def->kind == JN_MACRO ? def->name : "caller";
    if (n_pos > def->n_kids && !(def->op & JMACRO_VARARGS))
        jfail(c, "line %d: macro '%s' takes not more than %d argument(s)", c->line, mname, def->n_kids);
    for (int i = 0; i < n_pos; i++) {
        if (i < def->n_kids) frame_set(c, f, def->kw[i], args[i]);
        else jlist_push(c, varargs.u.list, args[i]);
    }
    for (int k = 0; k < n_kw; k++) {
        int i;
        for (i = 0; i < def->n_kids; i++) if (!strcmp(def->kw[i], kw[k])) break;
        if (i < def->n_kids) {
            if (i < n_pos) jfail(c, "line %d: macro '%s' got multiple values for argument '%s'", c->line, mname, kw[k]);
            frame_set(c, f, kw[k], args[n_pos + k]);
        } else if (!strcmp(kw[k], "caller") && def->kind == JN_MACRO) {
            frame_set(c, f, "caller", args[n_pos + k]);
        } else if (!(def->op & JMACRO_KWARGS)) {
            jfail(c, "line %d: macro '%s' takes no keyword argument '%s'", c->line, mname, kw[k]);
        } else jdict_set(c, kwargs.u.dict, jv_cstr(kw[k]), args[n_pos + k]);
    }
    for (int i = 0; i < def->n_kids; i++) {
        struct jv v;
        if (jdict_get_str(&f->vars, def->kw[i], strlen(def->kw[i]), &v)) continue;
        frame_set(c, f, def->kw[i], def->kids[i] ? jeval(c, f, def->kids[i]) : jv_undef(def->kw[i], strlen(def->kw[i])));
    }
    frame_set(c, f, "varargs", varargs);
    frame_set(c, f, "kwargs", kwargs);
    if (caller.kind == JV_MACRO) frame_set(c, f, "caller", caller);
    struct jbuf buf = {0}, *saved = c->out;
    int saved_ctl = c->loop_ctl;
    c->out = &buf;
    exec_body(c, f, def->b);
    c->out = saved;
    c->loop_ctl = saved_ctl;
    c->depth--;
    return buf.n ? jv_str(buf.p, buf.n) : jv_str("", 0);
}

struct jv jcall_value(struct jctx *c, struct jv callee, struct jv *args, int n_pos, const char **kw, int n_kw)
{
    switch (callee.kind) {
    case JV_MACRO: return call_macro(c, callee.u.macro, args, n_pos, kw, n_kw, jv_undef(NULL, 0));
    case JV_FUNC: return jglobal_call(c, callee.u.func, args, n_pos, kw, n_kw);
    case JV_METHOD: {
        bool found;
        struct jv r = jmethod_call(c, callee.u.method->obj, callee.u.method->name, args, n_pos, kw, n_kw, &found);
        if (!found) jfail(c, "line %d: %s.%s() is not supported", c->line, jv_type_name(callee.u.method->obj),
                          callee.u.method->name);
        return r;
    }
    case JV_LOOP: return call_loop(c, callee.u.loop, args, n_pos);
    case JV_UNDEF: fail_undef(c, callee);
    default: jfail(c, "line %d: '%s' object is not callable", c->line, jv_type_name(callee));
    }
}

static struct jv eval_call(struct jctx *c, struct jframe *f, const struct jn *n, struct jv caller)
{
    const struct jn *fn = n->a;
    if (fn->kind == JN_ATTR) {
        struct jv obj = jeval(c, f, fn->a);
        c->line = n->line;
        if (obj.kind == JV_UNDEF) fail_undef(c, obj);
        if (obj.kind == JV_LOOP && !strcmp(fn->name, "cycle")) {
            struct args a = eval_args(c, f, n);
            if (!a.n_pos) jfail(c, "line %d: no items for cycling given", c->line);
            return a.v[obj.u.loop->i % (size_t)a.n_pos];
        }
        if (obj.kind == JV_STR || obj.kind == JV_LIST || obj.kind == JV_DICT) {
            struct args a = eval_args(c, f, n);
            c->line = n->line;
            bool found;
            struct jv r = jmethod_call(c, obj, fn->name, a.v, a.n_pos, a.kw, a.n_kw, &found);
            if (found) return r;
        }
        struct jv callee = get_attr(c, obj, fn->name);
        struct args a = eval_args(c, f, n);
        c->line = n->line;
        if (callee.kind == JV_UNDEF)
            jfail(c, "line %d: '%s' object has no attribute '%s'", c->line, jv_type_name(obj), fn->name);
        if (callee.kind == JV_MACRO) return call_macro(c, callee.u.macro, a.v, a.n_pos, a.kw, a.n_kw, caller);
        return jcall_value(c, callee, a.v, a.n_pos, a.kw, a.n_kw);
    }
    struct jv callee = jeval(c, f, fn);
    struct args a = eval_args(c, f, n);
    c->line = n->line;
    if (callee.kind == JV_MACRO) return call_macro(c, callee.u.macro, a.v, a.n_pos, a.kw, a.n_kw, caller);
    return jcall_value(c, callee, a.v, a.n_pos, a.kw, a.n_kw);
}

static struct jv apply_filter(struct jctx *c, struct jframe *f, const struct jn *n, struct jv in)
{
    struct args a = eval_args(c, f, n);
    c->line = n->line;
    return jfilter_apply(c, n->name, in, a.v, a.n_pos, a.kw, a.n_kw);
}

/* ==== Expressions ==== */
struct jv jeval(struct jctx *c, struct jframe *f, const struct jn *n)
{
    struct jv a, b;
    c->line = n->line;
    switch (n->kind) {
    case JN_LIT: return n->lit;
    case JN_NAME: return lookup(f, n->name);
    case JN_LIST: case JN_TUPLE: {
        struct jv l = jv_list_new(c, (size_t)n->n_kids);
        for (int i = 0; i < n->n_kids; i++) l.u.list->items[l.u.list->n++] = jeval(c, f, n->kids[i]);
        l.tuple = n->kind == JN_TUPLE;
        return l;
    }
    case JN_DICT: {
        struct jv d = jv_dict_new(c, (size_t)n->n_kids / 2);
        for (int i = 0; i + 1 < n->n_kids; i += 2) {
            struct jv k = jeval(c, f, n->kids[i]);
            if (k.kind == JV_LIST && !k.tuple) jfail(c, "line %d: unhashable type: 'list'", n->line);
            if (k.kind == JV_DICT) jfail(c, "line %d: unhashable type: 'dict'", n->line);
            jdict_set(c, d.u.dict, k, jeval(c, f, n->kids[i + 1]));
        }
        return d;
    }
    case JN_ATTR:
        a = jeval(c, f, n->a);
        c->line = n->line;
        return get_attr(c, a, n->name);
    case JN_ITEM:
        a = jeval(c, f, n->a);
        b = jeval(c, f, n->b);
        c->line = n->line;
        return get_item(c, a, b);
    case JN_SLICE: {
        a = jeval(c, f, n->a);
        struct jv lo = n->b ? jeval(c, f, n->b) : jv_none();
        struct jv hi = n->c ? jeval(c, f, n->c) : jv_none();
        struct jv st = n->d ? jeval(c, f, n->d) : jv_none();
        c->line = n->line;
        return do_slice(c, a, lo, hi, st);
    }
    case JN_CALL: return eval_call(c, f, n, jv_undef(NULL, 0));
    case JN_FILTER: return apply_filter(c, f, n, jeval(c, f, n->a));
    case JN_TEST: {
        a = jeval(c, f, n->a);
        struct args ar = eval_args(c, f, n);
        c->line = n->line;
        bool r = jtest_apply(c, n->name, a, ar.v, ar.n_pos);
        return jv_bool(n->op ? !r : r);
    }
    case JN_NOT: return jv_bool(!jv_truthy(jeval(c, f, n->a)));
    case JN_NEG: case JN_POS:
        a = jeval(c, f, n->a);
        c->line = n->line;
        if (a.kind == JV_INT || a.kind == JV_BOOL) {
            int64_t i = ival(a);
            if (n->kind == JN_NEG && i == INT64_MIN) return jv_int_text("9223372036854775808", 19);
            return jv_int(n->kind == JN_NEG ? -i : i);
        }
        if (a.kind == JV_FLOAT) return jv_float(n->kind == JN_NEG ? -a.u.f : a.u.f);
        if (a.kind == JV_BIGINT) {
            if (n->kind == JN_POS) return a;
            if (a.u.s[0] == '-') return jv_int_text(a.u.s + 1, a.n - 1);
            char *t = jalloc(c, a.n + 2);
            t[0] = '-';
            memcpy(t + 1, a.u.s, a.n + 1);
            return jv_int_text(t, a.n + 1);
        }
        if (a.kind == JV_UNDEF) fail_undef(c, a);
        jfail(c, "line %d: bad operand type for unary %c: '%s'", n->line, n->kind == JN_NEG ? '-' : '+', jv_type_name(a));
    case JN_BIN:
        a = jeval(c, f, n->a);
        b = jeval(c, f, n->b);
        c->line = n->line;
        return binop(c, n->op, a, b);
    case JN_AND:
        a = jeval(c, f, n->a);
        return jv_truthy(a) ? jeval(c, f, n->b) : a;
    case JN_OR:
        a = jeval(c, f, n->a);
        return jv_truthy(a) ? a : jeval(c, f, n->b);
    case JN_CMP:
        a = jeval(c, f, n->kids[0]);
        for (int i = 1; i < n->n_kids; i++) {
            b = jeval(c, f, n->kids[i]);
            c->line = n->line;
            if (!compare(c, n->ops[i - 1], a, b)) return jv_bool(false);
            a = b;
        }
        return jv_bool(true);
    case JN_COND:
        if (jv_truthy(jeval(c, f, n->b))) return jeval(c, f, n->a);
        return n->c ? jeval(c, f, n->c) : jv_undef(NULL, 0);
    default:
        CHECK(false, "jinja: node kind %d is not an expression", n->kind);
    }
    return jv_undef(NULL, 0);
}

/* ==== Statements ==== */
static void assign(struct jctx *c, struct jframe *f, const struct jn *target, struct jv v)
{
    if (target->kind == JN_NAME) { frame_set(c, f, target->name, v); return; }
    if (target->kind == JN_ATTR) {
        struct jv ns = jeval(c, f, target->a);
        c->line = target->line;
        if (ns.kind != JV_NS) jfail(c, "line %d: cannot assign attribute on non-namespace object", target->line);
        jdict_set(c, ns.u.dict, jv_cstr(target->name), v);
        return;
    }
    // tuple unpacking
    struct jv items = jv_iter_list(c, v);
    if ((int)items.u.list->n != target->n_kids)
        jfail(c, "line %d: cannot unpack %zu values into %d names", target->line, items.u.list->n, target->n_kids);
    for (int i = 0; i < target->n_kids; i++) assign(c, f, target->kids[i], items.u.list->items[i]);
}

static struct jv capture(struct jctx *c, struct jframe *f, const struct jn *body)
{
    struct jbuf buf = {0}, *saved = c->out;
    c->out = &buf;
    exec_body(c, f, body);
    c->out = saved;
    return buf.n ? jv_str(buf.p, buf.n) : jv_str("", 0);
}

static struct jv filter_chain(struct jctx *c, struct jframe *f, const struct jn *n, struct jv v)
{
    for (int i = 0; i < n->n_kids; i++) v = apply_filter(c, f, n->kids[i], v);
    return v;
}

static void run_loop(struct jctx *c, struct jframe *f, const struct jn *n, struct jv seq, int depth);

static void exec_for(struct jctx *c, struct jframe *f, const struct jn *n)
{
    struct jv seq = jeval(c, f, n->b);
    c->line = n->line;
    run_loop(c, f, n, seq, 1);
}

/* `loop(xs)` in a recursive for: the loop body over xs, one level deeper, as a string */
static struct jv call_loop(struct jctx *c, struct jloop *l, struct jv *args, int n_pos)
{
    if (!l->node || !l->node->op) jfail(c, "line %d: Tried to call non recursive loop.  Maybe you forgot the 'recursive' modifier.", c->line);
    if (n_pos != 1) jfail(c, "line %d: loop() takes exactly one argument", c->line);
    if (++c->depth > c->lim.depth) jfail(c, "line %d: recursive loop nested more than %d deep", c->line, c->lim.depth);
    struct jbuf buf = {0}, *saved = c->out;
    int saved_ctl = c->loop_ctl;
    c->out = &buf;
    run_loop(c, l->frame, l->node, args[0], l->depth + 1);
    c->out = saved;
    c->loop_ctl = saved_ctl;
    c->depth--;
    return buf.n ? jv_str(buf.p, buf.n) : jv_str("", 0);
}

static void run_loop(struct jctx *c, struct jframe *f, const struct jn *n, struct jv seq, int depth)
{
    struct jv items = jv_iter_list(c, seq);
    if (n->n_kids) {   // loop filter: `for x in xs if cond`
        struct jv kept = jv_list_new(c, 0);
        for (size_t i = 0; i < items.u.list->n; i++) {
            jstep(c);
            struct jframe *g = frame_new(c, f);
            assign(c, g, n->a, items.u.list->items[i]);
            if (jv_truthy(jeval(c, g, n->kids[0]))) jlist_push(c, kept.u.list, items.u.list->items[i]);
        }
        items = kept;
    }
    if (!items.u.list->n) {
        if (n->d) exec_body(c, f, n->d);
        return;
    }
    struct jloop *lp = jalloc(c, sizeof *lp);
    lp->items = items.u.list;
    lp->node = n;
    lp->frame = f;
    lp->depth = depth;
    struct jv loopv = { .kind = JV_LOOP };
    loopv.u.loop = lp;
    for (size_t i = 0; i < items.u.list->n; i++) {
        jstep(c);
        lp->i = i;
        struct jframe *g = frame_new(c, f);
        assign(c, g, n->a, items.u.list->items[i]);
        frame_set(c, g, "loop", loopv);
        exec_body(c, g, n->c);
        int ctl = c->loop_ctl;
        c->loop_ctl = 0;
        if (ctl == 1) break;
    }
}

static struct jv make_macro(struct jctx *c, struct jframe *f, const struct jn *def)
{
    struct jmacro *m = jalloc(c, sizeof *m);
    m->def = def;
    m->closure = f;
    struct jv v = { .kind = JV_MACRO };
    v.u.macro = m;
    return v;
}

static void exec_stmt(struct jctx *c, struct jframe *f, const struct jn *n)
{
    jstep(c);
    c->line = n->line;
    switch (n->kind) {
    case JN_TEXT: jbuf_put(c, c->out, n->lit.u.s, n->lit.n); return;
    case JN_OUT: {
        struct jv v = jeval(c, f, n->a);
        jv_write_str(c, c->out, v);
        return;
    }
    case JN_BODY: exec_body(c, f, n); return;
    case JN_IF:
        for (;;) {
            if (jv_truthy(jeval(c, f, n->a))) { exec_body(c, f, n->b); return; }
            if (!n->c) return;
            if (n->c->kind != JN_IF) { exec_body(c, f, n->c); return; }
            n = n->c;
        }
    case JN_FOR: exec_for(c, f, n); return;
    case JN_SET: assign(c, f, n->a, jeval(c, f, n->b)); return;
    case JN_SETBLOCK: assign(c, f, n->a, filter_chain(c, f, n, capture(c, f, n->b))); return;
    case JN_MACRO: frame_set(c, f, n->name, make_macro(c, f, n)); return;
    case JN_CALLBLOCK: {
        struct jv caller = make_macro(c, f, n);
        struct jv r = eval_call(c, f, n->a, caller);
        jv_write_str(c, c->out, r);
        return;
    }
    case JN_FILTERBLOCK: {
        struct jv v = filter_chain(c, f, n, capture(c, f, n->b));
        jv_write_str(c, c->out, v);
        return;
    }
    case JN_BREAK: c->loop_ctl = 1; return;
    case JN_CONTINUE: c->loop_ctl = 2; return;
    default: CHECK(false, "jinja: node kind %d is not a statement", n->kind);
    }
}

static void exec_body(struct jctx *c, struct jframe *f, const struct jn *body)
{
    if (body->kind != JN_BODY) { exec_stmt(c, f, body); return; }
    for (int i = 0; i < body->n_kids && !c->loop_ctl; i++) exec_stmt(c, f, body->kids[i]);
}

/* ==== Entry ==== */
void jinja_limits_default(struct jinja_limits *lim)
{
    lim->mem_bytes = 256u << 20;
    lim->out_bytes = 64u << 20;
    lim->steps = 50 * 1000 * 1000;
    lim->depth = 200;
}

static void set_global_func(struct jctx *c, const char *name, int func)
{
    struct jv v = { .kind = JV_FUNC };
    v.u.func = func;
    frame_set(c, c->globals, name, v);
}

enum status jinja_render(const struct jinja_template *t, json_t *ctx, const struct jinja_limits *lim,
                         char **out_text, size_t *out_len, char **err)
{
    *out_text = NULL;
    if (out_len) *out_len = 0;
    if (err) *err = NULL;
    struct jctx *c = xcalloc(1, sizeof *c);
    if (lim) c->lim = *lim;
    else jinja_limits_default(&c->lim);
    c->arena.budget_bytes = c->lim.mem_bytes;
    if (setjmp(c->jb)) {
        if (err) *err = xstrdup(c->msg);
        jarena_free(&c->arena);
        free(c);
        return STATUS_ETEMPLATE;
    }
    struct jbuf *out = jalloc(c, sizeof *out);
    memset(out, 0, sizeof *out);
    c->out = out;
    c->globals = frame_new(c, NULL);
    set_global_func(c, "range", JF_RANGE);
    set_global_func(c, "dict", JF_DICT);
    set_global_func(c, "namespace", JF_NAMESPACE);
    set_global_func(c, "raise_exception", JF_RAISE);
    set_global_func(c, "strftime_now", JF_STRFTIME);
    if (ctx && json_is_object(ctx)) {
        const char *k;
        json_t *v;
        json_object_foreach(ctx, k, v) frame_set(c, c->globals, jv_strdup(c, k, strlen(k)).u.s, jv_from_json(c, v));
    }
    struct jframe *top = frame_new(c, c->globals);
    exec_body(c, top, jinja_template_root(t));
    char *s = malloc(out->n + 1);
    if (!s) {
        jarena_free(&c->arena);
        free(c);
        if (err) *err = xstrdup("out of memory");
        return STATUS_ENOMEM;
    }
    if (out->n) memcpy(s, out->p, out->n);
    s[out->n] = 0;
    if (out_len) *out_len = out->n;
    *out_text = s;
    jarena_free(&c->arena);
    free(c);
    return STATUS_OK;
}
