/* jinja_format: Python's two string-formatting languages as templates use them:
 * "fmt" % args (printf-style: %(name)s, flags -+ #0, width, precision, * from the arguments; the
 * conversions s r a d i u o x X e E f F g G c) and str.format ({} {0} {name}, !r !s, and the format
 * mini-language [[fill]align][sign][#][0][width][,|_][.precision][type]).
 *
 * Floats go through C's printf, whose %e/%f/%g output is the same as Python's for these specs;
 * ints are formatted here because Python prints negative hex/octal with a sign and prefixes 0o,
 * and because ints may be beyond 64 bits (JV_BIGINT). Widths count code points, as Python's do.
 * Called by jinja_eval.c (the % operator), jinja_filters.c (|format) and jinja_methods.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja_int.h"

#define MAX_WIDTH 100000   // a width beyond this is a hostile template, not a layout

struct spec {
    char fill;       // pad character (ASCII)
    char align;      // '<' '>' '^' '=' or 0 (type's default)
    char sign;       // '+' ' ' '-' or 0
    bool alt;        // '#'
    char group;      // ',' '_' or 0
    int  width;      // -1: none
    int  prec;       // -1: none
    char type;       // 0: none
};

static void put_fill(struct jctx *c, struct jbuf *b, char ch, int64_t n)
{
    for (int64_t i = 0; i < n; i++) jbuf_putc(c, b, ch);
}

/* body (n bytes, cp code points; its first prefix_n bytes are sign/prefix) padded to the spec */
static void put_padded(struct jctx *c, struct jbuf *b, const char *body, size_t n, size_t prefix_n, const struct spec *sp,
                       char default_align)
{
    int64_t cp = (int64_t)utf8_count(body, n), pad = sp->width > cp ? sp->width - cp : 0;
    char align = sp->align ? sp->align : default_align;
    if (align == '<') { jbuf_put(c, b, body, n); put_fill(c, b, sp->fill, pad); }
    else if (align == '>') { put_fill(c, b, sp->fill, pad); jbuf_put(c, b, body, n); }
    else if (align == '^') { put_fill(c, b, sp->fill, pad / 2); jbuf_put(c, b, body, n); put_fill(c, b, sp->fill, pad - pad / 2); }
    else { jbuf_put(c, b, body, prefix_n); put_fill(c, b, sp->fill, pad); jbuf_put(c, b, body + prefix_n, n - prefix_n); }
}

/* digits of |v| in base (2, 8, 10, 16; upper for X) into out (reversed build), returns length */
static size_t int_digits(struct jctx *c, struct jv v, int base, bool upper, char *out, size_t cap, bool *neg)
{
    const char *dg = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    __int128 x;
    if (v.kind == JV_BIGINT && base == 10) {   // exact for any length
        *neg = v.u.s[0] == '-';
        size_t n = v.n - *neg;
        if (n >= cap) jfail(c, "line %d: integer too long to format", c->line);
        memcpy(out, v.u.s + *neg, n);
        return n;
    }
    if (!jv_to_i128(v, &x)) jfail(c, "line %d: integer beyond 128 bits in a format", c->line);
    *neg = x < 0;
    char tmp[140];
    size_t k = 0;
    do {
        int d = (int)(x % base);
        tmp[k++] = dg[d < 0 ? -d : d];
        x /= base;
    } while (x);
    for (size_t i = 0; i < k; i++) out[i] = tmp[k - 1 - i];
    return k;
}

/* inserts sep every `every` digits from the right */
static size_t group_digits(const char *d, size_t n, char sep, int every, char *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (i && (n - i) % (size_t)every == 0) out[k++] = sep;
        out[k++] = d[i];
    }
    return k;
}

static bool is_intlike(struct jv v) { return v.kind == JV_INT || v.kind == JV_BIGINT || v.kind == JV_BOOL; }

/* ==== str.format ==== */
static void format_int(struct jctx *c, struct jbuf *b, struct jv v, const struct spec *sp)
{
    char t = sp->type ? sp->type : 'd';
    if (t == 'c') {
        __int128 x;
        if (!jv_to_i128(v, &x) || x < 0 || x > 0x10FFFF) jfail(c, "line %d: %%c arg not in range(0x110000)", c->line);
        char u[8];
        int32_t cp = (int32_t)x;
        size_t n = cp < 0x80 ? (u[0] = (char)cp, 1) : cp < 0x800 ? (u[0] = (char)(0xC0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3F)), 2)
                 : cp < 0x10000 ? (u[0] = (char)(0xE0 | cp >> 12), u[1] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[2] = (char)(0x80 | (cp & 0x3F)), 3)
                 : (u[0] = (char)(0xF0 | cp >> 18), u[1] = (char)(0x80 | ((cp >> 12) & 0x3F)), u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[3] = (char)(0x80 | (cp & 0x3F)), 4);
        put_padded(c, b, u, n, 0, sp, '<');
        return;
    }
    int base = t == 'b' ? 2 : t == 'o' ? 8 : (t == 'x' || t == 'X') ? 16 : 10;
    char d[5000], g[7000], body[7100];
    bool neg;
    size_t n = int_digits(c, v, base, t == 'X', d, sizeof d, &neg);
    if (sp->group) n = group_digits(d, n, sp->group, base == 10 ? 3 : 4, g), memcpy(d, g, n);
    size_t k = 0;
    if (neg) body[k++] = '-';
    else if (sp->sign == '+' || sp->sign == ' ') body[k++] = sp->sign;
    if (sp->alt && base != 10) { body[k++] = '0'; body[k++] = t == 'b' ? 'b' : t == 'o' ? 'o' : t; }
    memcpy(body + k, d, n);
    put_padded(c, b, body, k + n, k, sp, '>');
}

static void format_float(struct jctx *c, struct jbuf *b, double f, const struct spec *sp)
{
    char t = sp->type, cfmt[32], tmp[1024];   // %.300f of 1e308: ~610 bytes
    int prec = sp->prec;
    bool percent = t == '%';
    if (percent) { f *= 100; t = 'f'; }
    if (!t) {   // no type: repr without precision, else 'g' that keeps a ".0"
        if (prec < 0) {
            py_float_repr(f, tmp);
            if (sp->sign == '+' && f >= 0) { memmove(tmp + 1, tmp, strlen(tmp) + 1); tmp[0] = '+'; }
            goto pad;
        }
        t = 'g';
    }
    if (t == 'n') t = 'g';
    if (prec < 0) prec = 6;
    if (prec > 300) jfail(c, "line %d: format precision too large", c->line);
    snprintf(cfmt, sizeof cfmt, "%%%s%s.%d%c", sp->sign == '+' ? "+" : sp->sign == ' ' ? " " : "", sp->alt ? "#" : "", prec, t);
    snprintf(tmp, sizeof tmp, cfmt, f);
    if (sp->group && (t == 'f' || t == 'F') && isfinite(f)) {
        char *s = tmp + (tmp[0] == '-' || tmp[0] == '+' || tmp[0] == ' ');
        size_t ni = strcspn(s, ".");
        char g[1024];
        size_t k = group_digits(s, ni, sp->group, 3, g), rest = strlen(s + ni);
        if ((size_t)(s - tmp) + k + rest >= sizeof tmp) jfail(c, "line %d: formatted number too long", c->line);
        memcpy(g + k, s + ni, rest + 1);
        memcpy(s, g, k + rest + 1);
    }
    if (percent) strncat(tmp, "%", sizeof tmp - strlen(tmp) - 1);
pad:;
    size_t prefix = tmp[0] == '-' || tmp[0] == '+' || tmp[0] == ' ';
    put_padded(c, b, tmp, strlen(tmp), prefix, sp, '>');
}

static void parse_spec(struct jctx *c, const char *s, size_t n, struct spec *sp)
{
    *sp = (struct spec){ .fill = ' ', .width = -1, .prec = -1 };
    size_t i = 0;
    if (n >= 2 && strchr("<>^=", s[1]) && (unsigned char)s[0] < 0x80) { sp->fill = s[0]; sp->align = s[1]; i = 2; }
    else if (n >= 1 && strchr("<>^=", s[0])) { sp->align = s[0]; i = 1; }
    if (i < n && strchr("+- ", s[i])) sp->sign = s[i++];
    if (i < n && s[i] == '#') { sp->alt = true; i++; }
    if (i < n && s[i] == '0') { if (!sp->align) { sp->fill = '0'; sp->align = '='; } i++; }
    if (i < n && s[i] >= '0' && s[i] <= '9') {
        sp->width = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            sp->width = sp->width * 10 + (s[i++] - '0');
            if (sp->width > MAX_WIDTH) jfail(c, "line %d: format width too large", c->line);
        }
    }
    if (i < n && (s[i] == ',' || s[i] == '_')) sp->group = s[i++];
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || s[i] < '0' || s[i] > '9') jfail(c, "line %d: Format specifier missing precision", c->line);
        sp->prec = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            sp->prec = sp->prec * 10 + (s[i++] - '0');
            if (sp->prec > MAX_WIDTH) jfail(c, "line %d: format precision too large", c->line);
        }
    }
    if (i < n) sp->type = s[i++];
    if (i < n) jfail(c, "line %d: Invalid format specifier '%.*s'", c->line, (int)n, s);
}

/* format(v, spec) */
static void format_value(struct jctx *c, struct jbuf *b, struct jv v, const char *s, size_t n)
{
    if (!n) { jv_write_str(c, b, v); return; }
    struct spec sp;
    parse_spec(c, s, n, &sp);
    if (is_intlike(v)) {
        if (sp.type && strchr("eEfFgG%", sp.type)) format_float(c, b, jv_num(v), &sp);
        else if (!sp.type || strchr("bcdoxXn", sp.type)) format_int(c, b, v, &sp);
        else jfail(c, "line %d: Unknown format code '%c' for object of type 'int'", c->line, sp.type);
    } else if (v.kind == JV_FLOAT) {
        if (sp.type && !strchr("eEfFgGn%", sp.type))
            jfail(c, "line %d: Unknown format code '%c' for object of type 'float'", c->line, sp.type);
        format_float(c, b, v.u.f, &sp);
    } else if (v.kind == JV_STR) {
        if (sp.type && sp.type != 's') jfail(c, "line %d: Unknown format code '%c' for object of type 'str'", c->line, sp.type);
        if (sp.sign) jfail(c, "line %d: Sign not allowed in string format specifier", c->line);
        size_t len = v.n;
        if (sp.prec >= 0) {
            size_t k = 0, i = 0;
            while (i < v.n && k < (size_t)sp.prec) { i++; while (i < v.n && ((unsigned char)v.u.s[i] & 0xC0) == 0x80) i++; k++; }
            len = i;
        }
        if (sp.align == '=') jfail(c, "line %d: '=' alignment not allowed in string format specifier", c->line);
        put_padded(c, b, v.u.s, len, 0, &sp, '<');
    } else {
        jfail(c, "line %d: unsupported format string passed to %s.__format__", c->line, jv_type_name(v));
    }
}

struct jv jstr_format(struct jctx *c, struct jv fmt, struct jv *args, int n_pos, const char **kw, int n_kw)
{
    struct jbuf b = {0};
    int auto_i = 0;
    for (size_t i = 0; i < fmt.n; i++) {
        char ch = fmt.u.s[i];
        if (ch == '}') {
            if (i + 1 < fmt.n && fmt.u.s[i + 1] == '}') { jbuf_putc(c, &b, '}'); i++; continue; }
            jfail(c, "line %d: Single '}' encountered in format string", c->line);
        }
        if (ch != '{') { jbuf_putc(c, &b, ch); continue; }
        if (i + 1 < fmt.n && fmt.u.s[i + 1] == '{') { jbuf_putc(c, &b, '{'); i++; continue; }
        const char *close = memchr(fmt.u.s + i, '}', fmt.n - i);
        if (!close) jfail(c, "line %d: Single '{' encountered in format string", c->line);
        const char *field = fmt.u.s + i + 1;
        size_t fl = (size_t)(close - field);
        const char *colon = memchr(field, ':', fl), *bang = memchr(field, '!', fl);
        if (bang && colon && bang > colon) bang = NULL;
        size_t name_n = bang ? (size_t)(bang - field) : colon ? (size_t)(colon - field) : fl;
        struct jv v;
        if (!name_n) {
            if (auto_i >= n_pos) jfail(c, "line %d: Replacement index %d out of range for positional args tuple", c->line, auto_i);
            v = args[auto_i++];
        } else if (field[0] >= '0' && field[0] <= '9') {
            long long idx = 0;   // digits only as far as they go; any index past the arguments is out of range
            for (size_t d = 0; d < name_n && field[d] >= '0' && field[d] <= '9' && idx <= n_pos; d++)
                idx = idx * 10 + (field[d] - '0');
            if (idx >= n_pos)
                jfail(c, "line %d: Replacement index %.*s out of range for positional args tuple", c->line, (int)name_n, field);
            v = args[idx];
        } else {
            int k;
            for (k = 0; k < n_kw; k++) if (strlen(kw[k]) == name_n && !memcmp(kw[k], field, name_n)) break;
            if (k == n_kw) jfail(c, "line %d: '%.*s'", c->line, (int)name_n, field);
            v = args[n_pos + k];
        }
        if (bang) {
            char conv = bang + 1 < field + fl ? bang[1] : 0;
            struct jbuf t = {0};
            if (conv == 'r' || conv == 'a') jv_write_repr(c, &t, v);
            else if (conv == 's') jv_write_str(c, &t, v);
            else jfail(c, "line %d: Unknown conversion specifier %c", c->line, conv ? conv : ' ');
            v = t.n ? jv_str(t.p, t.n) : jv_str("", 0);
        }
        if (colon) format_value(c, &b, v, colon + 1, (size_t)(field + fl - colon - 1));
        else jv_write_str(c, &b, v);
        i = (size_t)(close - fmt.u.s);
    }
    return b.n ? jv_str(b.p, b.n) : jv_str("", 0);
}

/* ==== printf-style ==== */
struct jv jpercent_format(struct jctx *c, struct jv fmt, struct jv args, bool escape)
{
    struct jbuf b = {0};
    size_t ai = 0;
    bool tuple = args.kind == JV_LIST && args.tuple;
    bool mapping = args.kind == JV_DICT;
    bool used_map = false;
    size_t n_args = tuple ? args.u.list->n : 1;
    const char *s = fmt.u.s;
    for (size_t i = 0; i < fmt.n; i++) {
        if (s[i] != '%') {
            size_t j = i;
            while (j < fmt.n && s[j] != '%') j++;
            jbuf_put(c, &b, s + i, j - i);
            i = j - 1;
            continue;
        }
        if (++i >= fmt.n) jfail(c, "line %d: incomplete format", c->line);
        struct jv a = jv_undef(NULL, 0);
        bool have = false;
        if (s[i] == '(') {
            if (!mapping) jfail(c, "line %d: format requires a mapping", c->line);
            size_t j = i + 1;
            int depth = 1;
            while (j < fmt.n && depth) { if (s[j] == '(') depth++; else if (s[j] == ')') depth--; j++; }
            if (depth) jfail(c, "line %d: incomplete format key", c->line);
            if (!jdict_get(args.u.dict, jv_str(s + i + 1, j - i - 2), &a))
                jfail(c, "line %d: '%.*s'", c->line, (int)(j - i - 2), s + i + 1);
            have = used_map = true;
            i = j;
        }
        struct spec sp = { .fill = ' ', .width = -1, .prec = -1 };
        bool left = false, zero = false;
        for (; i < fmt.n && strchr("-+ #0", s[i]); i++) {
            if (s[i] == '-') left = true;
            else if (s[i] == '+') sp.sign = '+';
            else if (s[i] == ' ') { if (sp.sign != '+') sp.sign = ' '; }
            else if (s[i] == '#') sp.alt = true;
            else zero = true;
        }
        for (int which = 0; which < 2; which++) {   // width, then .precision
            if (which == 1) { if (i < fmt.n && s[i] == '.') { i++; sp.prec = 0; } else break; }
            int *dst = which ? &sp.prec : &sp.width;
            if (i < fmt.n && s[i] == '*') {
                if (!tuple || ai >= n_args) jfail(c, "line %d: not enough arguments for format string", c->line);
                struct jv w = args.u.list->items[ai++];
                if (w.kind != JV_INT) jfail(c, "line %d: * wants int", c->line);
                if (w.u.i > MAX_WIDTH || w.u.i < -MAX_WIDTH) jfail(c, "line %d: format width too large", c->line);
                *dst = (int)w.u.i;
                if (!which && *dst < 0) { left = true; *dst = -*dst; }
                if (which && *dst < 0) *dst = 0;
                i++;
            } else if (i < fmt.n && s[i] >= '0' && s[i] <= '9') {
                *dst = 0;
                while (i < fmt.n && s[i] >= '0' && s[i] <= '9') {
                    *dst = *dst * 10 + (s[i++] - '0');
                    if (*dst > MAX_WIDTH) jfail(c, "line %d: format width too large", c->line);
                }
            }
        }
        while (i < fmt.n && strchr("hlL", s[i])) i++;   // length modifiers: ignored, as Python does
        if (i >= fmt.n) jfail(c, "line %d: incomplete format", c->line);
        char conv = s[i];
        if (conv == '%') { jbuf_putc(c, &b, '%'); continue; }
        if (!have) {
            if (tuple) {
                if (ai >= n_args) jfail(c, "line %d: not enough arguments for format string", c->line);
                a = args.u.list->items[ai++];
            } else {
                if (ai++) jfail(c, "line %d: not enough arguments for format string", c->line);
                a = args;
            }
        }
        sp.align = left ? '<' : (zero && !strchr("srac", conv)) ? '=' : '>';
        sp.fill = sp.align == '=' ? '0' : ' ';
        if (conv == 's' || conv == 'r' || conv == 'a') {
            struct jbuf t = {0};
            if (conv == 's') jv_write_str(c, &t, a);
            else jv_write_repr(c, &t, a);
            struct jv v = t.n ? jv_str(t.p, t.n) : jv_str("", 0);
            if (escape && !(a.kind == JV_STR && a.markup)) v = jstr_escape_html(c, v);
            size_t len = v.n;
            if (sp.prec >= 0) {
                size_t k = 0, j = 0;
                while (j < v.n && k < (size_t)sp.prec) { j++; while (j < v.n && ((unsigned char)v.u.s[j] & 0xC0) == 0x80) j++; k++; }
                len = j;
            }
            put_padded(c, &b, v.u.s, len, 0, &sp, '>');
        } else if (strchr("diuoxX", conv)) {
            if (!jv_is_num(a)) jfail(c, "line %d: %%%c format: %s is required, not %s", c->line, conv,
                                     strchr("oxX", conv) ? "an integer" : "a real number", jv_type_name(a));
            if (a.kind == JV_FLOAT) {
                if (strchr("oxX", conv)) jfail(c, "line %d: %%%c format: an integer is required, not float", c->line, conv);
                if (!isfinite(a.u.f)) jfail(c, "line %d: cannot convert float %s to integer", c->line, isnan(a.u.f) ? "NaN" : "infinity");
                double t = trunc(a.u.f);
                if (fabs(t) >= 1.7e38) jfail(c, "line %d: %%d of a float beyond 128 bits", c->line);
                a = jv_from_i128(c, (__int128)t);
            }
            struct spec is = sp;
            is.type = conv == 'o' ? 'o' : conv == 'x' ? 'x' : conv == 'X' ? 'X' : 'd';
            is.prec = -1;
            if (sp.prec > 0) {   // precision: at least that many digits
                bool neg;
                char d[5000];
                size_t n = int_digits(c, a, is.type == 'o' ? 8 : is.type == 'd' ? 10 : 16, conv == 'X', d, sizeof d, &neg);
                struct jbuf t = {0};
                if (neg) jbuf_putc(c, &t, '-');
                else if (sp.sign) jbuf_putc(c, &t, sp.sign);
                if (sp.alt && is.type != 'd') { jbuf_putc(c, &t, '0'); jbuf_putc(c, &t, is.type == 'o' ? 'o' : conv); }
                size_t pre = t.n;
                for (int64_t z = sp.prec - (int64_t)n; z > 0; z--) jbuf_putc(c, &t, '0');
                jbuf_put(c, &t, d, n);
                put_padded(c, &b, t.p, t.n, pre, &sp, '>');
            } else format_int(c, &b, a, &is);
        } else if (strchr("eEfFgG", conv)) {
            if (!jv_is_num(a)) jfail(c, "line %d: must be real number, not %s", c->line, jv_type_name(a));
            struct spec fs = sp;
            fs.type = conv;
            format_float(c, &b, jv_num(a), &fs);
        } else if (conv == 'c') {
            struct spec cs = sp;
            if (a.kind == JV_STR) {
                if (utf8_count(a.u.s, a.n) != 1) jfail(c, "line %d: %%c requires an int or a unicode character, not a string of length %zu", c->line, utf8_count(a.u.s, a.n));
                put_padded(c, &b, a.u.s, a.n, 0, &cs, '>');
            } else if (is_intlike(a)) { cs.type = 'c'; cs.align = sp.align == '=' ? '>' : sp.align; cs.fill = ' '; format_int(c, &b, a, &cs); }
            else jfail(c, "line %d: %%c requires an int or a unicode character, not %s", c->line, jv_type_name(a));
        } else {
            jfail(c, "line %d: unsupported format character '%c' (0x%x) at index %zu", c->line, conv, (unsigned char)conv, i);
        }
    }
    if (!used_map && (tuple ? ai < n_args : ai == 0) && !mapping)
        jfail(c, "line %d: not all arguments converted during string formatting", c->line);
    return b.n ? jv_str(b.p, b.n) : jv_str("", 0);
}
