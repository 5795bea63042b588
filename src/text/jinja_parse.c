/* jinja_parse: tokens to tree, with Jinja2's grammar and operator precedence.
 *
 * Precedence, loosest first (as jinja2.parser): conditional `a if c else b`, or, and, not,
 * comparisons (chained; in, not in), + -, ~, * / // %, **, unary - +, then primary with postfix
 * (.attr, [item], [a:b:c], (call)) and filter/test chains (`| f(args)`, `is [not] t args`).
 * Statements: if/elif/else, for (tuple targets, `if` filter, else), set (plain, tuple, namespace
 * attribute, block with filters), macro, call (with caller args), filter blocks, generation,
 * break/continue. Parse errors carry the line. Also holds jinja_parse/jinja_template_free.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "text/jinja_int.h"

#define MAX_PARSE_DEPTH 200

struct jinja_template {
    struct jarena arena;
    struct jn    *root;
};

_Noreturn void jparse_fail(struct jparse *p, int line, const char *fmt, ...)
{
    va_list ap;
    int k = snprintf(p->msg, sizeof p->msg, "line %d: ", line);
    va_start(ap, fmt);
    vsnprintf(p->msg + k, sizeof p->msg - (size_t)k, fmt, ap);
    va_end(ap);
    longjmp(p->jb, 1);
}

static struct jtoken *peek(struct jparse *p) { return &p->toks[p->pos]; }
static struct jtoken *peek2(struct jparse *p)
{
    return p->pos + 1 < p->n_toks ? &p->toks[p->pos + 1] : &p->toks[p->n_toks - 1];
}
static struct jtoken *next(struct jparse *p)
{
    struct jtoken *t = &p->toks[p->pos];
    if (t->kind != JT_EOF) p->pos++;
    return t;
}
static bool is_op(struct jtoken *t, const char *op) { return t->kind == JT_OP && !strcmp(t->s, op); }
static bool is_name(struct jtoken *t, const char *nm) { return t->kind == JT_NAME && !strcmp(t->s, nm); }
static bool accept_op(struct jparse *p, const char *op)
{
    if (!is_op(peek(p), op)) return false;
    p->pos++;
    return true;
}
static bool accept_name(struct jparse *p, const char *nm)
{
    if (!is_name(peek(p), nm)) return false;
    p->pos++;
    return true;
}
static const char *tok_desc(struct jtoken *t)
{
    switch (t->kind) {
    case JT_EOF: return "end of template";
    case JT_DATA: return "template data";
    case JT_VAR_BEGIN: return "'{{'";
    case JT_VAR_END: return "'}}'";
    case JT_BLOCK_BEGIN: return "'{%'";
    case JT_BLOCK_END: return "'%}'";
    case JT_STRING: return "string";
    case JT_INT: case JT_FLOAT: return "number";
    default: return t->s;
    }
}
static void expect_op(struct jparse *p, const char *op)
{
    if (!accept_op(p, op)) jparse_fail(p, peek(p)->line, "expected '%s', got %s", op, tok_desc(peek(p)));
}
static const char *expect_name(struct jparse *p)
{
    struct jtoken *t = peek(p);
    if (t->kind != JT_NAME) jparse_fail(p, t->line, "expected a name, got %s", tok_desc(t));
    p->pos++;
    return t->s;
}
static void expect_block_end(struct jparse *p)
{
    struct jtoken *t = next(p);
    if (t->kind != JT_BLOCK_END) jparse_fail(p, t->line, "expected end of statement '%%}', got %s", tok_desc(t));
}

static struct jn *node(struct jparse *p, enum jn_kind kind, int line)
{
    struct jn *n = jarena_alloc(p->arena, sizeof *n);
    if (!n) jparse_fail(p, line, "template too large");
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->line = line;
    return n;
}

/* growable child array in the arena */
struct kids { struct jn **v; const char **kw; int n, cap; };
static void kids_push(struct jparse *p, struct kids *k, struct jn *n, const char *kw)
{
    if (k->n == k->cap) {
        int cap = k->cap ? k->cap * 2 : 4;
        struct jn **v = jarena_alloc(p->arena, (size_t)cap * sizeof *v);
        const char **w = jarena_alloc(p->arena, (size_t)cap * sizeof *w);
        if (!v || !w) jparse_fail(p, n ? n->line : 0, "template too large");
        if (k->n) { memcpy(v, k->v, (size_t)k->n * sizeof *v); memcpy(w, k->kw, (size_t)k->n * sizeof *w); }
        k->v = v;
        k->kw = w;
        k->cap = cap;
    }
    k->v[k->n] = n;
    k->kw[k->n] = kw;
    k->n++;
}

static struct jn *node_of_kids(struct jparse *p, enum jn_kind kind, int line, const struct kids *k)
{
    struct jn *n = node(p, kind, line);
    n->kids = k->v;
    n->n_kids = k->n;
    return n;
}

static struct jn *parse_expr(struct jparse *p, bool with_cond);
static struct jn *parse_unary(struct jparse *p, bool with_filter);

/* A list [a, b] or dict {k: v} literal after its opening bracket (a trailing comma allowed); a
 * dict's kids alternate key, value. */
static struct jn *parse_display(struct jparse *p, enum jn_kind kind, const char *close, int line)
{
    struct kids k = {0};
    while (!accept_op(p, close)) {
        if (k.n) { expect_op(p, ","); if (accept_op(p, close)) break; }
        kids_push(p, &k, parse_expr(p, true), NULL);
        if (kind == JN_DICT) {
            expect_op(p, ":");
            kids_push(p, &k, parse_expr(p, true), NULL);
        }
    }
    return node_of_kids(p, kind, line, &k);
}

static void enter(struct jparse *p)
{
    if (++p->depth > MAX_PARSE_DEPTH) jparse_fail(p, peek(p)->line, "template nested too deeply");
}

/* (args) after the '(' : positional then keyword arguments */
static void parse_args(struct jparse *p, struct jn *n)
{
    struct kids k = {0};
    int n_pos = 0;
    while (!accept_op(p, ")")) {
        if (k.n) expect_op(p, ",");
        if (accept_op(p, ")")) break;
        if (accept_op(p, "*")) accept_op(p, "*");   // *args / **kwargs: treat as plain value
        if (peek(p)->kind == JT_NAME && is_op(peek2(p), "=")) {
            const char *kw = next(p)->s;
            p->pos++;
            kids_push(p, &k, parse_expr(p, true), kw);
        } else {
            if (k.n > n_pos) jparse_fail(p, peek(p)->line, "positional argument after keyword argument");
            kids_push(p, &k, parse_expr(p, true), NULL);
            n_pos++;
        }
    }
    n->kids = k.v;
    n->n_kids = k.n;
    n->n_pos = n_pos;
    n->kw = k.kw ? k.kw + n_pos : NULL;
}

static struct jn *parse_primary(struct jparse *p)
{
    struct jtoken *t = next(p);
    struct jn *n;
    switch (t->kind) {
    case JT_NAME:
        if (!strcmp(t->s, "true") || !strcmp(t->s, "True")) { n = node(p, JN_LIT, t->line); n->lit = jv_bool(true); return n; }
        if (!strcmp(t->s, "false") || !strcmp(t->s, "False")) { n = node(p, JN_LIT, t->line); n->lit = jv_bool(false); return n; }
        if (!strcmp(t->s, "none") || !strcmp(t->s, "None")) { n = node(p, JN_LIT, t->line); n->lit = jv_none(); return n; }
        n = node(p, JN_NAME, t->line);
        n->name = t->s;
        return n;
    case JT_STRING: {
        // adjacent literals concatenate
        size_t total = t->n, start = p->pos;
        while (peek(p)->kind == JT_STRING) total += next(p)->n;
        char *s = jarena_alloc(p->arena, total + 1);
        if (!s) jparse_fail(p, t->line, "template too large");
        memcpy(s, t->s, t->n);
        size_t k = t->n;
        for (size_t i = start; i < p->pos; i++) { memcpy(s + k, p->toks[i].s, p->toks[i].n); k += p->toks[i].n; }
        s[k] = 0;
        n = node(p, JN_LIT, t->line);
        n->lit = jv_str(s, k);
        return n;
    }
    case JT_INT: n = node(p, JN_LIT, t->line); n->lit = t->s ? jv_int_text(t->s, t->n) : jv_int(t->i); return n;
    case JT_FLOAT: n = node(p, JN_LIT, t->line); n->lit = jv_float(t->f); return n;
    case JT_OP:
        if (!strcmp(t->s, "(")) {
            if (accept_op(p, ")")) return node(p, JN_TUPLE, t->line);
            struct jn *e = parse_expr(p, true);
            if (accept_op(p, ")")) return e;
            struct kids k = {0};
            kids_push(p, &k, e, NULL);
            while (accept_op(p, ",")) {
                if (is_op(peek(p), ")")) break;
                kids_push(p, &k, parse_expr(p, true), NULL);
            }
            expect_op(p, ")");
            return node_of_kids(p, JN_TUPLE, t->line, &k);
        }
        if (!strcmp(t->s, "[")) return parse_display(p, JN_LIST, "]", t->line);
        if (!strcmp(t->s, "{")) return parse_display(p, JN_DICT, "}", t->line);
        break;
    default: break;
    }
    jparse_fail(p, t->line, "unexpected %s", tok_desc(t));
}

static struct jn *parse_subscript(struct jparse *p, struct jn *obj)
{
    int line = peek(p)->line;
    struct jn *parts[3] = {0};
    bool is_slice = false;
    int i = 0;
    for (;;) {
        if (is_op(peek(p), ":")) {
            p->pos++;
            is_slice = true;
            if (++i > 2) jparse_fail(p, line, "invalid slice");
            continue;
        }
        if (is_op(peek(p), "]")) break;
        if (parts[i]) jparse_fail(p, line, "invalid subscript");
        parts[i] = parse_expr(p, true);
        if (!is_slice && is_op(peek(p), ",")) {   // x[a, b]: tuple index
            struct kids k = {0};
            kids_push(p, &k, parts[i], NULL);
            while (accept_op(p, ",")) { if (is_op(peek(p), "]")) break; kids_push(p, &k, parse_expr(p, true), NULL); }
            parts[i] = node_of_kids(p, JN_TUPLE, line, &k);
        }
    }
    expect_op(p, "]");
    struct jn *n;
    if (is_slice) {
        n = node(p, JN_SLICE, line);
        n->b = parts[0]; n->c = parts[1]; n->d = parts[2];
    } else {
        if (!parts[0]) jparse_fail(p, line, "empty subscript");
        n = node(p, JN_ITEM, line);
        n->b = parts[0];
    }
    n->a = obj;
    return n;
}

/* `callee(args)`, the '(' already taken */
static struct jn *parse_call(struct jparse *p, struct jn *callee, int line)
{
    struct jn *m = node(p, JN_CALL, line);
    m->a = callee;
    parse_args(p, m);
    return m;
}

static struct jn *parse_postfix(struct jparse *p, struct jn *n)
{
    for (;;) {
        struct jtoken *t = peek(p);
        if (accept_op(p, ".")) {
            struct jtoken *a = next(p);
            if (a->kind == JT_NAME) {
                struct jn *m = node(p, JN_ATTR, a->line);
                m->a = n;
                m->name = a->s;
                n = m;
            } else if (a->kind == JT_INT) {
                struct jn *m = node(p, JN_ITEM, a->line);
                m->a = n;
                m->b = node(p, JN_LIT, a->line);
                m->b->lit = jv_int(a->i);
                n = m;
            } else jparse_fail(p, a->line, "expected attribute name after '.'");
        } else if (accept_op(p, "[")) n = parse_subscript(p, n);
        else if (accept_op(p, "(")) n = parse_call(p, n, t->line);
        else return n;
    }
}

static struct jn *parse_filter_tail(struct jparse *p, struct jn *in)
{
    struct jtoken *t = peek(p);
    const char *nm = expect_name(p);
    while (accept_op(p, ".")) {   // dotted filter names: join with '.'
        const char *more = expect_name(p);
        size_t a = strlen(nm), b = strlen(more);
        char *s = jarena_alloc(p->arena, a + b + 2);
        if (!s) jparse_fail(p, t->line, "template too large");
        memcpy(s, nm, a); s[a] = '.'; memcpy(s + a + 1, more, b + 1);
        nm = s;
    }
    if (!jfilter_exists(nm)) jparse_fail(p, t->line, "No filter named '%s'.", nm);
    struct jn *f = node(p, JN_FILTER, t->line);
    f->a = in;
    f->name = nm;
    if (accept_op(p, "(")) parse_args(p, f);
    return f;
}

static struct jn *parse_filter_expr(struct jparse *p, struct jn *n)
{
    for (;;) {
        struct jtoken *t = peek(p);
        if (accept_op(p, "|")) n = parse_filter_tail(p, n);
        else if (accept_name(p, "is")) {
            struct jn *m = node(p, JN_TEST, t->line);
            m->op = accept_name(p, "not");
            m->a = n;
            m->name = expect_name(p);
            if (!jtest_exists(m->name)) jparse_fail(p, t->line, "No test named '%s'.", m->name);
            struct jtoken *u = peek(p);
            if (accept_op(p, "(")) parse_args(p, m);
            else if ((u->kind == JT_NAME || u->kind == JT_STRING || u->kind == JT_INT || u->kind == JT_FLOAT ||
                      is_op(u, "[") || is_op(u, "{")) &&
                     !(u->kind == JT_NAME && (!strcmp(u->s, "else") || !strcmp(u->s, "or") || !strcmp(u->s, "and")))) {
                if (is_name(u, "is")) jparse_fail(p, u->line, "you cannot chain multiple tests with is");
                struct jn *arg = parse_postfix(p, parse_primary(p));
                m->kids = jarena_alloc(p->arena, sizeof *m->kids);
                if (!m->kids) jparse_fail(p, u->line, "template too large");
                m->kids[0] = arg;
                m->n_kids = m->n_pos = 1;
            }
            n = m;
        } else if (accept_op(p, "(")) n = parse_call(p, n, t->line);
        else return n;
    }
}

static struct jn *parse_unary(struct jparse *p, bool with_filter)
{
    struct jtoken *t = peek(p);
    struct jn *n;
    enter(p);
    if (is_op(t, "-") || is_op(t, "+")) {
        p->pos++;
        n = node(p, is_op(t, "-") ? JN_NEG : JN_POS, t->line);
        n->a = parse_unary(p, false);
    } else n = parse_postfix(p, parse_primary(p));
    if (with_filter) n = parse_filter_expr(p, n);
    p->depth--;
    return n;
}

static struct jn *bin(struct jparse *p, int op, struct jn *a, struct jn *b, int line)
{
    struct jn *n = node(p, JN_BIN, line);
    n->op = op; n->a = a; n->b = b;
    return n;
}

/* The arithmetic operators by level, tightest first (Jinja's parse_pow,
 * parse_math2, parse_concat, parse_math1). Every level is left-associative
 * and takes its operands from the level before it. */
struct binop { const char *tok; int op; };
static const struct binop arith_levels[][5] = {
    { { "**", JOP_POW } },
    { { "*", JOP_MUL }, { "/", JOP_DIV }, { "//", JOP_FLOORDIV }, { "%", JOP_MOD } },
    { { "~", JOP_CONCAT } },
    { { "+", JOP_ADD }, { "-", JOP_SUB } },
};
#define ARITH_LOOSEST ((int)(sizeof arith_levels / sizeof arith_levels[0]) - 1)

static struct jn *parse_arith(struct jparse *p, int level)
{
    if (level < 0) return parse_unary(p, true);
    struct jn *n = parse_arith(p, level - 1);
    for (;;) {
        struct jtoken *t = peek(p);
        const struct binop *b = arith_levels[level];
        while (b->tok && !is_op(t, b->tok)) b++;
        if (!b->tok) return n;
        p->pos++;
        n = bin(p, b->op, n, parse_arith(p, level - 1), t->line);
    }
}

static struct jn *parse_compare(struct jparse *p)
{
    struct jn *first = parse_arith(p, ARITH_LOOSEST);
    struct kids k = {0};
    int ops[64], n_ops = 0;
    for (;;) {
        struct jtoken *t = peek(p);
        int op = is_op(t, "==") ? JOP_EQ : is_op(t, "!=") ? JOP_NE : is_op(t, "<") ? JOP_LT :
                 is_op(t, "<=") ? JOP_LE : is_op(t, ">") ? JOP_GT : is_op(t, ">=") ? JOP_GE : 0;
        if (op) p->pos++;
        else if (is_name(t, "in")) { p->pos++; op = JOP_IN; }
        else if (is_name(t, "not") && is_name(peek2(p), "in")) { p->pos += 2; op = JOP_NOTIN; }
        else break;
        if (n_ops == 64) jparse_fail(p, t->line, "comparison chain too long");
        if (!k.n) kids_push(p, &k, first, NULL);
        kids_push(p, &k, parse_arith(p, ARITH_LOOSEST), NULL);
        ops[n_ops++] = op;
    }
    if (!n_ops) return first;
    struct jn *n = node(p, JN_CMP, first->line);
    n->kids = k.v;
    n->n_kids = k.n;
    n->ops = jarena_alloc(p->arena, sizeof(int) * (size_t)n_ops);
    if (!n->ops) jparse_fail(p, n->line, "template too large");
    memcpy(n->ops, ops, sizeof(int) * (size_t)n_ops);
    return n;
}

static struct jn *parse_not(struct jparse *p)
{
    struct jtoken *t = peek(p);
    if (is_name(t, "not")) {
        p->pos++;
        enter(p);
        struct jn *n = node(p, JN_NOT, t->line);
        n->a = parse_not(p);
        p->depth--;
        return n;
    }
    return parse_compare(p);
}

/* `operand (word operand)*` as a left-leaning chain of `kind` nodes: and, or */
static struct jn *parse_logic(struct jparse *p, const char *word, enum jn_kind kind,
                              struct jn *(*operand)(struct jparse *))
{
    struct jn *n = operand(p);
    while (is_name(peek(p), word)) {
        struct jn *m = node(p, kind, next(p)->line);
        m->a = n;
        m->b = operand(p);
        n = m;
    }
    return n;
}

static struct jn *parse_and(struct jparse *p) { return parse_logic(p, "and", JN_AND, parse_not); }
static struct jn *parse_or(struct jparse *p) { return parse_logic(p, "or", JN_OR, parse_and); }

static struct jn *parse_expr(struct jparse *p, bool with_cond)
{
    enter(p);
    struct jn *n = parse_or(p);
    while (with_cond && is_name(peek(p), "if")) {
        struct jn *m = node(p, JN_COND, next(p)->line);
        m->a = n;
        m->b = parse_or(p);
        if (accept_name(p, "else")) m->c = parse_expr(p, true);
        n = m;
    }
    p->depth--;
    return n;
}

/* expression or bare tuple `a, b` */
static struct jn *parse_tuple(struct jparse *p, bool with_cond)
{
    struct jn *e = parse_expr(p, with_cond);
    if (!is_op(peek(p), ",")) return e;
    struct kids k = {0};
    kids_push(p, &k, e, NULL);
    while (accept_op(p, ",")) {
        struct jtoken *t = peek(p);
        if (t->kind == JT_BLOCK_END || t->kind == JT_VAR_END || is_op(t, ")") || is_name(t, "in") || is_op(t, "=")) break;
        kids_push(p, &k, parse_expr(p, with_cond), NULL);
    }
    return node_of_kids(p, JN_TUPLE, e->line, &k);
}

/* assignment target: name, name.attr, or tuple of names */
static struct jn *parse_target(struct jparse *p, bool allow_attr)
{
    struct kids k = {0};
    bool paren = accept_op(p, "(");
    for (;;) {
        struct jtoken *t = peek(p);
        struct jn *n = node(p, JN_NAME, t->line);
        n->name = expect_name(p);
        if (allow_attr && !paren && !k.n && is_op(peek(p), ".")) {
            p->pos++;
            struct jn *a = node(p, JN_ATTR, t->line);
            a->a = n;
            a->name = expect_name(p);
            return a;
        }
        kids_push(p, &k, n, NULL);
        if (!accept_op(p, ",")) break;
        if (!paren && peek(p)->kind != JT_NAME) break;
        if (paren && is_op(peek(p), ")")) break;
    }
    if (paren) expect_op(p, ")");
    if (k.n == 1 && !paren) return k.v[0];
    return node_of_kids(p, JN_TUPLE, k.v[0]->line, &k);
}

static struct jn *parse_body(struct jparse *p, const char *const *ends, const char **found);

/* `%} body {% end %}`: the rest of an opening tag, its body, and the closing tag named end */
static struct jn *parse_block_until(struct jparse *p, const char *end)
{
    expect_block_end(p);
    const char *const ends[] = { end, NULL };
    const char *found;
    struct jn *body = parse_body(p, ends, &found);
    expect_block_end(p);
    return body;
}

static struct jn *parse_if(struct jparse *p, int line)
{
    struct jn *n = node(p, JN_IF, line);
    n->a = parse_tuple(p, true);
    expect_block_end(p);
    static const char *const ends[] = { "elif", "else", "endif", NULL };
    const char *end;
    n->b = parse_body(p, ends, &end);
    if (!strcmp(end, "elif")) {
        n->c = parse_if(p, peek(p)->line);
        return n;
    }
    if (!strcmp(end, "else")) n->c = parse_block_until(p, "endif");
    else expect_block_end(p);
    return n;
}

static void parse_params(struct jparse *p, struct jn *n)
{
    struct kids k = {0};
    if (accept_op(p, "(")) {
        while (!accept_op(p, ")")) {
            if (k.n) { expect_op(p, ","); if (accept_op(p, ")")) break; }
            const char *nm = expect_name(p);
            struct jn *def = accept_op(p, "=") ? parse_expr(p, true) : NULL;
            kids_push(p, &k, def, nm);
        }
    }
    n->kids = k.v;
    n->kw = k.kw;
    n->n_kids = k.n;
}

static struct jn *parse_filter_chain(struct jparse *p, struct jn *n)
{
    struct kids k = {0};
    do kids_push(p, &k, parse_filter_tail(p, NULL), NULL);
    while (accept_op(p, "|"));
    n->kids = k.v;
    n->n_kids = k.n;
    return n;
}

/* Whether the tree uses the name (Jinja gives a macro *varargs / **kwargs only if its body does). */
static bool uses_name(const struct jn *n, const char *name, int depth)
{
    if (!n || depth > 10000) return false;
    if (n->kind == JN_NAME && !strcmp(n->name, name)) return true;
    if (uses_name(n->a, name, depth + 1) || uses_name(n->b, name, depth + 1) || uses_name(n->c, name, depth + 1) ||
        uses_name(n->d, name, depth + 1))
        return true;
    for (int i = 0; i < n->n_kids; i++) if (uses_name(n->kids[i], name, depth + 1)) return true;
    return false;
}

static void mark_catch_all(struct jn *n)
{
    n->op = (uses_name(n->b, "varargs", 0) ? JMACRO_VARARGS : 0) | (uses_name(n->b, "kwargs", 0) ? JMACRO_KWARGS : 0);
}

static struct jn *parse_statement(struct jparse *p)
{
    struct jtoken *t = peek(p);
    const char *kw = expect_name(p);
    int line = t->line;
    const char *end;
    struct jn *n;
    if (!strcmp(kw, "if")) return parse_if(p, line);
    if (!strcmp(kw, "for")) {
        n = node(p, JN_FOR, line);
        n->a = parse_target(p, false);
        if (!accept_name(p, "in")) jparse_fail(p, line, "expected 'in' in for loop");
        n->b = parse_tuple(p, false);
        if (accept_name(p, "if")) {
            n->kids = jarena_alloc(p->arena, sizeof *n->kids);
            if (!n->kids) jparse_fail(p, line, "template too large");
            n->kids[0] = parse_expr(p, true);
            n->n_kids = 1;
        }
        if (accept_name(p, "recursive")) n->op = 1;
        expect_block_end(p);
        static const char *const ends[] = { "else", "endfor", NULL };
        n->c = parse_body(p, ends, &end);
        if (!strcmp(end, "else")) n->d = parse_block_until(p, "endfor");
        else expect_block_end(p);
        return n;
    }
    if (!strcmp(kw, "set")) {
        struct jn *target = parse_target(p, true);
        if (accept_op(p, "=")) {
            n = node(p, JN_SET, line);
            n->a = target;
            n->b = parse_tuple(p, true);
            expect_block_end(p);
            return n;
        }
        n = node(p, JN_SETBLOCK, line);
        n->a = target;
        if (accept_op(p, "|")) parse_filter_chain(p, n);
        n->b = parse_block_until(p, "endset");
        return n;
    }
    if (!strcmp(kw, "macro")) {
        n = node(p, JN_MACRO, line);
        n->name = expect_name(p);
        if (!is_op(peek(p), "(")) jparse_fail(p, line, "expected '(' after macro name");
        parse_params(p, n);
        expect_block_end(p);
        static const char *const ends[] = { "endmacro", NULL };
        n->b = parse_body(p, ends, &end);
        if (peek(p)->kind == JT_NAME) p->pos++;   // {% endmacro name %}
        expect_block_end(p);
        mark_catch_all(n);
        return n;
    }
    if (!strcmp(kw, "call")) {
        n = node(p, JN_CALLBLOCK, line);
        n->name = "caller";
        if (is_op(peek(p), "(")) parse_params(p, n);
        n->a = parse_expr(p, true);
        if (n->a->kind != JN_CALL) jparse_fail(p, line, "expected a call after 'call'");
        n->b = parse_block_until(p, "endcall");
        mark_catch_all(n);
        return n;
    }
    if (!strcmp(kw, "filter")) {
        n = node(p, JN_FILTERBLOCK, line);
        parse_filter_chain(p, n);
        n->b = parse_block_until(p, "endfilter");
        return n;
    }
    if (!strcmp(kw, "generation")) return parse_block_until(p, "endgeneration");
    if (!strcmp(kw, "break") || !strcmp(kw, "continue")) {
        n = node(p, kw[0] == 'b' ? JN_BREAK : JN_CONTINUE, line);
        expect_block_end(p);
        return n;
    }
    jparse_fail(p, line, "unknown or unsupported tag '%s'", kw);
}

/* Statements until a block tag named in ends (its name is consumed, *found says which) or EOF
 * when ends is NULL. */
static struct jn *parse_body(struct jparse *p, const char *const *ends, const char **found)
{
    enter(p);
    struct kids k = {0};
    int line = peek(p)->line;
    for (;;) {
        struct jtoken *t = next(p);
        if (t->kind == JT_EOF) {
            if (ends) {
                int last = 0;
                while (ends[last + 1]) last++;
                jparse_fail(p, t->line, "unexpected end of template, expected '%s'", ends[last]);
            }
            break;
        }
        if (t->kind == JT_DATA) {
            struct jn *n = node(p, JN_TEXT, t->line);
            n->lit = jv_str(t->s, t->n);
            kids_push(p, &k, n, NULL);
        } else if (t->kind == JT_VAR_BEGIN) {
            struct jn *n = node(p, JN_OUT, t->line);
            n->a = parse_tuple(p, true);
            struct jtoken *e = next(p);
            if (e->kind != JT_VAR_END) jparse_fail(p, e->line, "expected '}}', got %s", tok_desc(e));
            kids_push(p, &k, n, NULL);
        } else if (t->kind == JT_BLOCK_BEGIN) {
            struct jtoken *nm = peek(p);
            if (nm->kind == JT_NAME && ends) {
                bool hit = false;
                for (int i = 0; ends[i]; i++) if (!strcmp(nm->s, ends[i])) { *found = ends[i]; hit = true; }
                if (hit) { p->pos++; break; }
            }
            if (nm->kind == JT_NAME && (!strncmp(nm->s, "end", 3) || !strcmp(nm->s, "else") || !strcmp(nm->s, "elif")))
                jparse_fail(p, nm->line, "unexpected '%s'", nm->s);
            kids_push(p, &k, parse_statement(p), NULL);
        } else jparse_fail(p, t->line, "unexpected %s", tok_desc(t));
    }
    p->depth--;
    return node_of_kids(p, JN_BODY, line, &k);
}

struct jn *jparse_template(struct jparse *p)
{
    return parse_body(p, NULL, NULL);
}

enum status jinja_parse(const char *src, size_t len, struct jinja_template **out, char **err)
{
    *out = NULL;
    if (err) *err = NULL;
    struct jinja_template *t = xcalloc(1, sizeof *t);
    t->arena.budget_bytes = 64u << 20;
    struct jparse *p = xcalloc(1, sizeof *p);
    p->arena = &t->arena;
    if (setjmp(p->jb)) {
        if (err) *err = xstrdup(p->msg);
        free(p);
        jarena_free(&t->arena);
        free(t);
        return STATUS_EFORMAT;
    }
    jlex(p, src, len);
    t->root = jparse_template(p);
    free(p);
    *out = t;
    return STATUS_OK;
}

void jinja_template_free(struct jinja_template *t)
{
    if (!t) return;
    jarena_free(&t->arena);
    free(t);
}

const struct jn *jinja_template_root(const struct jinja_template *t) { return t->root; }
