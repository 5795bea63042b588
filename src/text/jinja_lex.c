/* jinja_lex: turns template source into tokens, applying Jinja's whitespace rules.
 *
 * Follows jinja2.lexer with transformers' settings: newlines normalized to "\n", one trailing
 * newline dropped (keep_trailing_newline=False), trim_blocks (the first "\n" after a block or
 * comment tag goes), lstrip_blocks (spaces and tabs before a block or comment tag that starts its
 * line go), and "-"/"+" markers on tags. Inside tags, "}}" / "%}" end the tag only when no bracket
 * is open, as in Jinja. {% raw %} sections become data.
 * Called by jinja_parse only; tokens live in the template arena.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/jinja_int.h"

static bool is_ws(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f' ||
           (ch >= 0x1c && ch <= 0x1f);
}

static struct jtoken *push(struct jparse *p, enum jt_kind kind, int line)
{
    if (p->n_toks == p->cap_toks) {
        size_t cap = p->cap_toks ? p->cap_toks * 2 : 256;
        struct jtoken *t = jarena_alloc(p->arena, cap * sizeof *t);
        if (!t) jparse_fail(p, line, "template too large");
        if (p->n_toks) memcpy(t, p->toks, p->n_toks * sizeof *t);
        p->toks = t;
        p->cap_toks = cap;
    }
    struct jtoken *t = &p->toks[p->n_toks++];
    memset(t, 0, sizeof *t);
    t->kind = kind;
    t->line = line;
    return t;
}

static char *dup_bytes(struct jparse *p, const char *s, size_t n, int line)
{
    char *d = jarena_alloc(p->arena, n + 1);
    if (!d) jparse_fail(p, line, "template too large");
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

static void push_data(struct jparse *p, const char *s, size_t n, int line)
{
    if (!n) return;
    struct jtoken *t = push(p, JT_DATA, line);
    t->s = dup_bytes(p, s, n, line);
    t->n = n;
}

static int count_nl(const char *s, size_t n)
{
    int k = 0;
    for (size_t i = 0; i < n; i++) k += s[i] == '\n';
    return k;
}

static void put_utf8(char *d, size_t *k, uint32_t cp)
{
    if (cp < 0x80) d[(*k)++] = (char)cp;
    else if (cp < 0x800) { d[(*k)++] = (char)(0xC0 | cp >> 6); d[(*k)++] = (char)(0x80 | (cp & 63)); }
    else if (cp < 0x10000) {
        d[(*k)++] = (char)(0xE0 | cp >> 12); d[(*k)++] = (char)(0x80 | ((cp >> 6) & 63));
        d[(*k)++] = (char)(0x80 | (cp & 63));
    } else {
        d[(*k)++] = (char)(0xF0 | cp >> 18); d[(*k)++] = (char)(0x80 | ((cp >> 12) & 63));
        d[(*k)++] = (char)(0x80 | ((cp >> 6) & 63)); d[(*k)++] = (char)(0x80 | (cp & 63));
    }
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* A string literal body with Python's unicode-escape rules; unknown escapes stay as written. */
static void lex_string(struct jparse *p, const char *s, size_t n, int line)
{
    char *d = jarena_alloc(p->arena, n + 1);
    if (!d) jparse_fail(p, line, "template too large");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 >= n) { d[k++] = s[i]; continue; }
        char e = s[++i];
        int nhex = 0;
        switch (e) {
        case '\n': break;
        case '\\': d[k++] = '\\'; break;
        case '\'': d[k++] = '\''; break;
        case '"': d[k++] = '"'; break;
        case 'a': d[k++] = '\a'; break;
        case 'b': d[k++] = '\b'; break;
        case 'f': d[k++] = '\f'; break;
        case 'n': d[k++] = '\n'; break;
        case 'r': d[k++] = '\r'; break;
        case 't': d[k++] = '\t'; break;
        case 'v': d[k++] = '\v'; break;
        case 'x': nhex = 2; break;
        case 'u': nhex = 4; break;
        case 'U': nhex = 8; break;
        default:
            if (e >= '0' && e <= '7') {
                uint32_t v = 0;
                int m = 0;
                while (m < 3 && i < n && s[i] >= '0' && s[i] <= '7') { v = v * 8 + (uint32_t)(s[i] - '0'); i++; m++; }
                i--;
                put_utf8(d, &k, v);
            } else {
                d[k++] = '\\';
                d[k++] = e;
            }
        }
        if (nhex) {
            uint32_t v = 0;
            for (int m = 0; m < nhex; m++) {
                int h = i + 1 + (size_t)m < n ? hexval(s[i + 1 + m]) : -1;
                if (h < 0) jparse_fail(p, line, "truncated \\%c escape in string literal", e);
                v = v * 16 + (uint32_t)h;
            }
            if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) jparse_fail(p, line, "invalid escape in string literal");
            i += (size_t)nhex;
            put_utf8(d, &k, v);
        }
    }
    d[k] = 0;
    struct jtoken *t = push(p, JT_STRING, line);
    t->s = d;
    t->n = k;
}

static const char *const OPS[] = {
    "//", "**", "==", "!=", "<=", ">=",
    "+", "-", "/", "*", "%", "~", "<", ">", "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|", ";",
};

/* Lexes the inside of a tag from src[*pos]; returns after the closing marker. Sets *strip_after
 * (a "-" closer) and *closed_nl_ok (trim_blocks may eat one newline). */
static void lex_tag(struct jparse *p, const char *src, size_t len, size_t *pos, int *line, bool block,
                    bool *strip_after, bool *keep_nl)
{
    char stack[64];
    int depth = 0;
    size_t i = *pos;
    *strip_after = false;
    *keep_nl = false;
    for (;;) {
        while (i < len && is_ws(src[i])) { if (src[i] == '\n') (*line)++; i++; }
        if (i >= len) jparse_fail(p, *line, "unexpected end of template, expected '%s'", block ? "%}" : "}}");
        const char *q = src + i;
        size_t rest = len - i;
        if (depth == 0) {
            const char *end = block ? "%}" : "}}";
            if ((q[0] == '-' || q[0] == '+') && rest >= 3 && !memcmp(q + 1, end, 2)) {
                *strip_after = q[0] == '-';
                *keep_nl = q[0] == '+';
                push(p, block ? JT_BLOCK_END : JT_VAR_END, *line);
                *pos = i + 3;
                return;
            }
            if (rest >= 2 && !memcmp(q, end, 2)) {
                push(p, block ? JT_BLOCK_END : JT_VAR_END, *line);
                *pos = i + 2;
                return;
            }
        }
        unsigned char ch = (unsigned char)q[0];
        if (isalpha(ch) || ch == '_') {
            size_t n = 1;
            while (n < rest && (isalnum((unsigned char)q[n]) || q[n] == '_')) n++;
            struct jtoken *t = push(p, JT_NAME, *line);
            t->s = dup_bytes(p, q, n, *line);
            t->n = n;
            i += n;
            continue;
        }
        if (isdigit(ch)) {
            size_t n = 0;
            bool is_float = false;
            while (n < rest && (isdigit((unsigned char)q[n]) || (q[n] == '_' && n + 1 < rest && isdigit((unsigned char)q[n + 1])))) n++;
            if (n + 1 < rest && q[n] == '.' && isdigit((unsigned char)q[n + 1]) &&
                !(p->n_toks && p->toks[p->n_toks - 1].kind == JT_OP && !strcmp(p->toks[p->n_toks - 1].s, "."))) {
                is_float = true;
                n++;
                while (n < rest && (isdigit((unsigned char)q[n]) || (q[n] == '_' && n + 1 < rest && isdigit((unsigned char)q[n + 1])))) n++;
            }
            if (n < rest && (q[n] == 'e' || q[n] == 'E')) {
                size_t m = n + 1;
                if (m < rest && (q[m] == '+' || q[m] == '-')) m++;
                if (m < rest && isdigit((unsigned char)q[m])) {
                    while (m < rest && isdigit((unsigned char)q[m])) m++;
                    n = m;
                    is_float = true;
                }
            }
            char tmp[128];
            size_t k = 0;
            for (size_t j = 0; j < n && k + 1 < sizeof tmp; j++) if (q[j] != '_') tmp[k++] = q[j];
            tmp[k] = 0;
            if (n >= sizeof tmp) jparse_fail(p, *line, "number literal too long");
            struct jtoken *t = push(p, is_float ? JT_FLOAT : JT_INT, *line);
            if (is_float) t->f = strtod(tmp, NULL);
            else {
                char *e;
                errno = 0;
                unsigned long long v = strtoull(tmp, &e, 10);
                if (errno || v > INT64_MAX) {   // a Python int beyond 64 bits: kept as its text
                    size_t z = 0;
                    while (z + 1 < k && tmp[z] == '0') z++;
                    t->s = dup_bytes(p, tmp + z, k - z, *line);
                    t->n = k - z;
                } else t->i = (int64_t)v;
            }
            i += n;
            continue;
        }
        if (ch == '\'' || ch == '"') {
            size_t j = 1;
            while (j < rest && q[j] != (char)ch) { if (q[j] == '\\' && j + 1 < rest) j++; j++; }
            if (j >= rest) jparse_fail(p, *line, "unterminated string literal");
            lex_string(p, q + 1, j - 1, *line);
            *line += count_nl(q, j);
            i += j + 1;
            continue;
        }
        size_t k;
        for (k = 0; k < sizeof OPS / sizeof OPS[0]; k++) {
            size_t on = strlen(OPS[k]);
            if (rest >= on && !memcmp(q, OPS[k], on)) break;
        }
        if (k == sizeof OPS / sizeof OPS[0]) jparse_fail(p, *line, "unexpected character '%c'", q[0]);
        const char *op = OPS[k];
        if (op[1] == 0 && (op[0] == '(' || op[0] == '[' || op[0] == '{')) {
            if (depth >= (int)sizeof stack) jparse_fail(p, *line, "brackets nested too deeply");
            stack[depth++] = op[0] == '(' ? ')' : op[0] == '[' ? ']' : '}';
        } else if (op[1] == 0 && (op[0] == ')' || op[0] == ']' || op[0] == '}')) {
            if (!depth || stack[depth - 1] != op[0]) jparse_fail(p, *line, "unexpected '%c'", op[0]);
            depth--;
        }
        struct jtoken *t = push(p, JT_OP, *line);
        t->s = op;
        t->n = strlen(op);
        i += t->n;
    }
}

void jlex(struct jparse *p, const char *src0, size_t len0)
{
    // Normalize newlines and drop one trailing newline, as Jinja does before lexing.
    char *src = jarena_alloc(p->arena, len0 + 1);
    if (!src) jparse_fail(p, 1, "template too large");
    size_t len = 0;
    for (size_t i = 0; i < len0; i++) {
        if (src0[i] == '\r') { src[len++] = '\n'; if (i + 1 < len0 && src0[i + 1] == '\n') i++; }
        else src[len++] = src0[i];
    }
    if (len && src[len - 1] == '\n') len--;
    src[len] = 0;

    size_t pos = 0;
    int line = 1;
    bool strip_next = false;
    while (pos < len) {
        // find next tag start
        size_t t = pos;
        while (t + 1 < len && !(src[t] == '{' && (src[t + 1] == '{' || src[t + 1] == '%' || src[t + 1] == '#'))) t++;
        if (t + 1 >= len) t = len;
        size_t d0 = pos, d1 = t;
        if (strip_next) while (d0 < d1 && is_ws(src[d0])) d0++;
        strip_next = false;
        if (t == len) {
            push_data(p, src + d0, d1 - d0, line);
            break;
        }
        char kind = src[t + 1];
        char sign = t + 2 < len ? src[t + 2] : 0;
        if (sign == '-') {
            while (d1 > d0 && is_ws(src[d1 - 1])) d1--;
        } else if (sign != '+' && kind != '{') {
            // lstrip_blocks: only spaces/tabs between the line start and the tag
            size_t l = d1;
            while (l > d0 && src[l - 1] != '\n') l--;
            if (l == 0 || src[l - 1] == '\n') {   // Jinja: a newline in the data, or line_starting
                size_t k = l;
                while (k < d1 && is_ws(src[k])) k++;
                if (k == d1) d1 = l;
            }
        }
        push_data(p, src + d0, d1 - d0, line);
        line += count_nl(src + pos, t - pos);
        size_t body = t + 2 + (sign == '-' || sign == '+');
        if (kind == '#') {
            // comment: find "#}"
            size_t e = body;
            while (e + 1 < len && !(src[e] == '#' && src[e + 1] == '}')) e++;
            if (e + 1 >= len) jparse_fail(p, line, "unclosed comment");
            bool strip = e > body && src[e - 1] == '-';
            bool keep = e > body && src[e - 1] == '+';
            line += count_nl(src + t, e + 2 - t);
            pos = e + 2;
            strip_next = strip;
            if (!strip && !keep && pos < len && src[pos] == '\n') { pos++; line++; }
            continue;
        }
        bool strip_after, keep_nl;
        if (kind == '%') {
            // {% raw %}: the text up to {% endraw %} is data
            size_t q = body;
            while (q < len && is_ws(src[q])) q++;
            if (len - q >= 3 && !memcmp(src + q, "raw", 3) && (q + 3 >= len || !isalnum((unsigned char)src[q + 3]))) {
                size_t r = q + 3;
                while (r < len && is_ws(src[r])) r++;
                bool rs = r < len && src[r] == '-';
                if (rs || (r < len && src[r] == '+')) r++;
                if (len - r < 2 || memcmp(src + r, "%}", 2)) jparse_fail(p, line, "expected '%%}' after raw");
                size_t b0 = r + 2;
                if (rs) while (b0 < len && is_ws(src[b0])) b0++;   // no trim_blocks after {% raw %}, as Jinja
                // find {%-? endraw -?%}
                size_t e = b0;
                for (;; e++) {
                    if (e + 1 >= len) jparse_fail(p, line, "missing endraw");
                    if (src[e] != '{' || src[e + 1] != '%') continue;
                    size_t f = e + 2;
                    if (f < len && (src[f] == '-' || src[f] == '+')) f++;
                    while (f < len && is_ws(src[f])) f++;
                    if (len - f >= 6 && !memcmp(src + f, "endraw", 6)) break;
                }
                size_t e1 = e;
                bool ls = e + 2 < len && src[e + 2] == '-';
                if (ls) while (e1 > b0 && is_ws(src[e1 - 1])) e1--;
                else if (!(e + 2 < len && src[e + 2] == '+')) {
                    size_t l = e1;
                    while (l > b0 && src[l - 1] != '\n') l--;
                    size_t k = l;
                    while (k < e1 && is_ws(src[k])) k++;
                    if (k == e1 && (l > b0 || src[l - 1] == '\n')) e1 = l;
                }
                push_data(p, src + b0, e1 - b0, line);
                size_t f = e + 2;
                while (f + 1 < len && !(src[f] == '%' && src[f + 1] == '}')) f++;
                if (f + 1 >= len) jparse_fail(p, line, "unclosed endraw tag");
                bool ss = src[f - 1] == '-';
                line += count_nl(src + t, f + 2 - t);
                pos = f + 2;
                strip_next = ss;
                if (!ss && src[f - 1] != '+' && pos < len && src[pos] == '\n') { pos++; line++; }
                continue;
            }
        }
        push(p, kind == '%' ? JT_BLOCK_BEGIN : JT_VAR_BEGIN, line);
        pos = body;
        lex_tag(p, src, len, &pos, &line, kind == '%', &strip_after, &keep_nl);
        strip_next = strip_after;
        if (kind == '%' && !strip_after && !keep_nl && pos < len && src[pos] == '\n') { pos++; line++; }
    }
    push(p, JT_EOF, line);
}
