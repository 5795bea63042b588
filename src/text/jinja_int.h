/* jinja_int: internals shared by the jinja_*.c files (lexer, parser, values, evaluator, filters).
 *
 * Memory: the parsed tree lives in the template's arena; every value made while rendering lives in
 * the render's arena (struct jctx), freed in one go when jinja_render returns. Errors unwind with
 * longjmp to jinja_parse / jinja_render, so no code in between cleans up: nothing but arena memory
 * may be allocated between the setjmp and the longjmp.
 *
 * Values (struct jv) are small and passed by value; strings are immutable byte ranges (UTF-8, not
 * NUL-terminated); lists and dicts are shared by pointer (Jinja's sandbox forbids mutating them,
 * except namespace attributes).
 */
#ifndef CAIRN_TEXT_JINJA_INT_H
#define CAIRN_TEXT_JINJA_INT_H

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "text/jinja.h"

/* ==== Arena ==== */
struct jarena_chunk;
struct jarena {
    struct jarena_chunk *head;
    size_t used_bytes;    // total allocated from malloc
    size_t budget_bytes;  // 0: unlimited
};
/* Returns NULL when over budget or out of memory. */
void *jarena_alloc(struct jarena *a, size_t bytes);
void  jarena_free(struct jarena *a);

/* ==== Values ==== */
enum jv_kind {
    JV_UNDEF = 0, JV_NONE, JV_BOOL, JV_INT, JV_FLOAT, JV_STR, JV_LIST, JV_DICT,
    JV_NS,        // namespace(): a dict whose attributes can be set
    JV_MACRO,     // macro or caller
    JV_FUNC,      // built-in global function
    JV_LOOP,      // the `loop` variable of a for
    JV_BIGINT,    // a Python int beyond int64: u.s is its decimal text ("-123..."), NUL-terminated
    JV_METHOD,    // a bound method (`d.items`, `s.upper` without the call): u.method
};

struct jlist;
struct jdict;
struct jmacro;
struct jloop;
struct jmethod;

struct jv {
    enum jv_kind kind;
    bool         tuple;   // JV_LIST printed as a tuple
    bool         gen;     // JV_LIST that is a Python iterator (map, select, ...): always true, no len(),
                          // not subscriptable, and iterating it once exhausts it
    bool         group;   // JV_LIST tuple made by groupby: also has .grouper and .list
    bool         markup;  // JV_STR that is a markupsafe.Markup (|safe, |escape): `+` and `%` escape the
                          // other operand, |escape leaves it as it is
    size_t       n;       // JV_STR: bytes; JV_UNDEF: length of the name hint
    union {
        bool           b;
        int64_t        i;
        double         f;
        const char    *s;     // JV_STR bytes; JV_UNDEF: name hint (may be NULL)
        struct jlist  *list;
        struct jdict  *dict;  // JV_DICT, JV_NS
        struct jmacro *macro;
        int            func;
        struct jloop  *loop;
        struct jmethod *method;
    } u;
};

struct jlist { struct jv *items; size_t n, cap; bool exhausted; /* a gen list already iterated */ };
struct jmethod { struct jv obj; const char *name; };
struct jdict { struct jv *keys; struct jv *vals; size_t n, cap; };

/* ==== Tree ==== */
enum jn_kind {
    // expressions
    JN_LIT, JN_NAME, JN_LIST, JN_TUPLE, JN_DICT, JN_ATTR, JN_ITEM, JN_SLICE, JN_CALL, JN_FILTER,
    JN_TEST, JN_NOT, JN_NEG, JN_POS, JN_BIN, JN_AND, JN_OR, JN_CMP, JN_COND,
    // statements
    JN_BODY, JN_TEXT, JN_OUT, JN_IF, JN_FOR, JN_SET, JN_SETBLOCK, JN_MACRO, JN_CALLBLOCK,
    JN_FILTERBLOCK, JN_BREAK, JN_CONTINUE,
};

enum jop {
    JOP_ADD = 1, JOP_SUB, JOP_MUL, JOP_DIV, JOP_FLOORDIV, JOP_MOD, JOP_POW, JOP_CONCAT,
    JOP_EQ, JOP_NE, JOP_LT, JOP_LE, JOP_GT, JOP_GE, JOP_IN, JOP_NOTIN,
};

struct jn {
    enum jn_kind kind;
    int          line;
    int          op;        // JN_BIN: enum jop; JN_TEST: negated; JN_FOR: recursive; JN_MACRO, JN_CALLBLOCK: JMACRO_*
    struct jv    lit;       // JN_LIT
    const char  *name;      // JN_NAME, JN_ATTR, JN_FILTER, JN_TEST, JN_MACRO: NUL-terminated
    struct jn   *a, *b, *c, *d;   // children; meaning per kind (see jinja_parse.c)
    struct jn  **kids;      // list items, call args (positional first), statements, dict k,v pairs
    int          n_kids;
    int          n_pos;     // calls: positional args; the rest are keyword args named in kw
    const char **kw;        // keyword names, n_kids - n_pos of them; JN_MACRO: parameter names
    int         *ops;       // JN_CMP: the n_kids-1 comparison operators
};

enum { JMACRO_VARARGS = 1, JMACRO_KWARGS = 2 };   // the body uses varargs / kwargs, so extra arguments go there

struct jtemplate_tree { struct jn *root; };

/* ==== Lexer ==== */
enum jt_kind {
    JT_EOF = 0, JT_DATA, JT_VAR_BEGIN, JT_VAR_END, JT_BLOCK_BEGIN, JT_BLOCK_END,
    JT_NAME, JT_STRING, JT_INT, JT_FLOAT, JT_OP,
};
struct jtoken {
    enum jt_kind kind;
    int          line;
    const char  *s;   // JT_DATA, JT_NAME, JT_STRING (unescaped), JT_OP: bytes (arena; NUL-terminated)
    size_t       n;
    int64_t      i;
    double       f;
};

struct jparse {
    struct jarena  *arena;
    jmp_buf         jb;
    char            msg[256];
    struct jtoken  *toks;
    size_t          n_toks, cap_toks, pos;
    int             depth;
};

_Noreturn void jparse_fail(struct jparse *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void jlex(struct jparse *p, const char *src, size_t len);
struct jn *jparse_template(struct jparse *p);

/* ==== Render context ==== */
struct jframe {
    struct jframe *parent;
    struct jdict   vars;
};

struct jbuf { char *p; size_t n, cap; };

struct jctx {
    jmp_buf              jb;
    struct jarena        arena;
    struct jinja_limits  lim;
    char                 msg[1024];
    int64_t              steps;
    size_t               out_total;
    int                  depth;
    int                  line;       // line being evaluated, for messages
    struct jframe       *globals;
    struct jbuf         *out;        // where output goes now
    int                  loop_ctl;   // 1 break, 2 continue, pending
};

_Noreturn void jfail(struct jctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void *jalloc(struct jctx *c, size_t bytes);
void  jstep(struct jctx *c);

/* buffers (arena-backed) */
void jbuf_put(struct jctx *c, struct jbuf *b, const char *s, size_t n);
void jbuf_putc(struct jctx *c, struct jbuf *b, char ch);
void jbuf_printf(struct jctx *c, struct jbuf *b, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* constructors */
struct jv jv_undef(const char *hint, size_t n);
struct jv jv_none(void);
struct jv jv_bool(bool b);
struct jv jv_int(int64_t i);
struct jv jv_float(double f);
struct jv jv_str(const char *s, size_t n);           // borrows s (must outlive the render)
struct jv jv_strdup(struct jctx *c, const char *s, size_t n);
struct jv jv_cstr(const char *s);                    // borrows a literal
struct jv jv_list_new(struct jctx *c, size_t cap);
struct jv jv_dict_new(struct jctx *c, size_t cap);
void      jlist_push(struct jctx *c, struct jlist *l, struct jv v);
void      jdict_set(struct jctx *c, struct jdict *d, struct jv key, struct jv val);
bool      jdict_get(const struct jdict *d, struct jv key, struct jv *out);
bool      jdict_get_str(const struct jdict *d, const char *key, size_t n, struct jv *out);
struct jv jv_from_json(struct jctx *c, json_t *j);
/* ints of any size: JV_INT when the decimal text (optional '-', digits, no leading zeros) fits
 * int64, else JV_BIGINT borrowing s (NUL-terminated, must outlive the render) */
struct jv jv_int_text(const char *s, size_t n);
struct jv jv_from_i128(struct jctx *c, __int128 x);
bool      jv_to_i128(struct jv v, __int128 *out);   // int, bool or big int within 128 bits
bool      jv_is_int(struct jv v);                   // int or big int (not bool)

/* semantics */
bool        jv_truthy(struct jv v);
bool        jv_equal(struct jv a, struct jv b);
int         jv_compare(struct jctx *c, struct jv a, struct jv b);   // <0, 0, >0; fails if unordered
const char *jv_type_name(struct jv v);
bool        jv_is_num(struct jv v);   // int, float or bool
double      jv_num(struct jv v);
size_t      utf8_count(const char *s, size_t n);
/* str(v) as Python/Jinja prints it (undefined: ""); returns arena bytes */
struct jv   jv_to_str(struct jctx *c, struct jv v);
void        jv_write_str(struct jctx *c, struct jbuf *b, struct jv v);   // str(v)
void        jv_write_repr(struct jctx *c, struct jbuf *b, struct jv v);  // repr(v)
/* json.dumps(v, ensure_ascii=ascii, indent=indent, separators=(item_sep, key_sep), sort_keys=...) */
struct jjson_opts {
    const char *indent;     // NULL: one line
    size_t      indent_n;
    const char *item_sep;
    const char *key_sep;
    bool        sort_keys;
    bool        ascii;      // escape non-ASCII as \uXXXX
};
void        jv_write_json(struct jctx *c, struct jbuf *b, struct jv v, const struct jjson_opts *o, int level);
void        py_float_repr(double f, char buf[40]);
/* iteration: lists, tuples, dict keys, string characters; undefined is empty */
struct jv   jv_iter_list(struct jctx *c, struct jv v);

/* ==== Evaluator entry points used by filters ==== */
struct jv jeval(struct jctx *c, struct jframe *f, const struct jn *n);
struct jv jcall_value(struct jctx *c, struct jv callee, struct jv *args, int n_pos, const char **kw, int n_kw);

/* ==== Filters, tests, methods, globals (jinja_filters.c) ==== */
enum jfunc { JF_RANGE = 1, JF_DICT, JF_NAMESPACE, JF_RAISE, JF_STRFTIME, JF_LOOP_CYCLE };
struct jv jfilter_apply(struct jctx *c, const char *name, struct jv in, struct jv *args, int n_pos,
                        const char **kw, int n_kw);
bool      jtest_apply(struct jctx *c, const char *name, struct jv in, struct jv *args, int n_args);
bool      jtest_exists(const char *name);
/* the text filters of jinja_filters_text.c (truncate, wordcount, pprint, ...): false if name is not one */
bool      jfilter_text(struct jctx *c, const char *name, struct jv in, struct jv *args, int n_pos, const char **kw,
                       int n_kw, struct jv *out);
bool      jfilter_exists(const char *name);
struct jv jmethod_call(struct jctx *c, struct jv obj, const char *name, struct jv *args, int n_pos,
                       const char **kw, int n_kw, bool *found);
struct jv jglobal_call(struct jctx *c, int func, struct jv *args, int n_pos, const char **kw, int n_kw);

/* strings (jinja_methods.c) */
struct jv jstr_lower(struct jctx *c, struct jv s);
struct jv jstr_upper(struct jctx *c, struct jv s);
struct jv jstr_strip(struct jctx *c, struct jv s, struct jv chars, int which);   // which: 1 left, 2 right, 3 both
struct jv jstr_capitalize(struct jctx *c, struct jv s);
struct jv jstr_pytitle(struct jctx *c, struct jv s);
struct jv jstr_replace(struct jctx *c, struct jv s, struct jv old, struct jv new_, int64_t count);
bool      jstr_has_case(struct jv s, bool upper);
bool      jmethod_exists(struct jv obj, const char *name, bool *unsafe);   // Python has obj.name; unsafe: sandbox blocks it
struct jv jstr_escape_html(struct jctx *c, struct jv s);   // markupsafe.escape: a Markup result
struct jv jv_gen(struct jv list);                          // the list as an iterator (filters' generators)
/* "fmt" % args; escape: fmt is Markup, so str/repr arguments are HTML-escaped (jinja_format.c) */
struct jv jpercent_format(struct jctx *c, struct jv fmt, struct jv args, bool escape);
/* fmt.format(*args, **kwargs) */
struct jv jstr_format(struct jctx *c, struct jv fmt, struct jv *args, int n_pos, const char **kw, int n_kw);
/* a <op> b with Python's semantics (enum jop arithmetic operators) */
struct jv jarith(struct jctx *c, int op, struct jv a, struct jv b);

const struct jn *jinja_template_root(const struct jinja_template *t);

#endif
