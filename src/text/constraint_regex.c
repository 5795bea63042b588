/* constraint_regex: ECMAScript regular expressions (the `u`-flag dialect JSON Schema validators
 * use) translated to GBNF. An automaton has no backtracking, so "catastrophic" patterns like
 * (a+)+b cost nothing; only the size of counted repetition is bounded (by the grammar budget).
 *
 * Supported: literals, escapes (\d \D \w \W \s \S \n \r \t \f \v \0 \xHH \uHHHH \u{H..} \cX and
 * escaped punctuation), classes [...] / [^...] with ranges and class escapes, `.`, groups ( ),
 * (?: ), (?<name> ), alternation, quantifiers * + ? {n} {n,} {n,m} (lazy forms match the same
 * language), and ^ / $ at the very start / end. Rejected with an error: lookaround, backreferences,
 * word boundaries, anchors elsewhere.
 *
 * JSON string mode: the regex constrains a string's decoded content, so each character is emitted
 * as it is written inside a JSON string: " and \ escaped, control characters as \n, \t ... or
 * \u00XX. Search mode (JSON Schema `pattern`): without ^ the match may start anywhere, without $
 * end anywhere, so any string characters are allowed around it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/constraint_int.h"

struct rx {
    struct cg_grammar *g;
    const char        *s;
    size_t             n, i;
    bool               json;
    bool               no_lt;     // '<' escaped (JSON) or left out (raw)
    uint32_t           depth;
    struct strbuf     *out;
};

static enum status rx_err(struct rx *x, const char *what)
{
    return cg_fail(x->g, STATUS_EINVAL, "regex /%.*s/ at offset %zu: %s", (int)(x->n > 200 ? 200 : x->n), x->s, x->i, what);
}

static enum status rx_unsupported(struct rx *x, const char *what)
{
    return cg_fail(x->g, STATUS_EUNSUPPORTED, "regex /%.*s/: %s is not supported", (int)(x->n > 200 ? 200 : x->n), x->s, what);
}

/* Emits one code point set as a GBNF item (JSON mode: with the escaped forms). */
static void emit_cpset(struct rx *x, struct cg_cpset *set)
{
    cg_cpset_normalize(set);
    struct strbuf *o = x->out;
    if (!x->json) {
        strbuf_putc(o, '[');
        bool any = false;
        for (uint32_t k = 0; k < set->n; k++) {
            uint32_t lo = set->r[k][0], hi = set->r[k][1];
            if (x->no_lt && lo <= '<' && hi >= '<') {
                if (lo < '<') strbuf_printf(o, "\\U%08X-\\U%08X", lo, (uint32_t)'<' - 1), any = true;
                if (hi > '<') strbuf_printf(o, "\\U%08X-\\U%08X", (uint32_t)'<' + 1, hi), any = true;
                continue;
            }
            strbuf_printf(o, "\\U%08X-\\U%08X", lo, hi);
            any = true;
        }
        strbuf_putc(o, ']');
        if (!any) { o->len -= 2; strbuf_puts(o, "[^\\U00000000-\\U0010FFFF]"); }   // empty: matches nothing
        return;
    }
    // Plain part: everything but controls, quote and backslash.
    bool plain = false, quote = false, bslash = false, lt = false;
    struct strbuf cls = {0};
    strbuf_putc(&cls, '[');
    for (uint32_t k = 0; k < set->n; k++) {
        uint32_t lo = set->r[k][0], hi = set->r[k][1];
        if (lo <= '"' && hi >= '"') quote = true;
        if (lo <= '\\' && hi >= '\\') bslash = true;
        if (x->no_lt && lo <= '<' && hi >= '<') lt = true;
        // the plain bytes: all but controls, quote, backslash and (no_lt) '<'
        uint32_t cuts[][2] = { { 0x20, '"' - 1 }, { '"' + 1, '<' - 1 }, { '<', x->no_lt ? 0 : '<' },
                               { '<' + 1, '\\' - 1 }, { '\\' + 1, 0x10FFFF } };
        for (int c = 0; c < 5; c++) {
            uint32_t a = lo > cuts[c][0] ? lo : cuts[c][0], b = hi < cuts[c][1] ? hi : cuts[c][1];
            if (a <= b) { strbuf_printf(&cls, "\\U%08X-\\U%08X", a, b); plain = true; }
        }
    }
    strbuf_putc(&cls, ']');
    strbuf_puts(o, "(");
    const char *sep = "";
    if (plain) { strbuf_puts(o, cls.data); sep = " | "; }
    if (quote) { strbuf_printf(o, "%s\"\\\\\\\"\"", sep); sep = " | "; }
    if (bslash) { strbuf_printf(o, "%s\"\\\\\\\\\"", sep); sep = " | "; }
    if (lt) { strbuf_printf(o, "%s\"\\\\u003c\"", sep); sep = " | "; }
    static const char *short_esc[32] = { ['\b'] = "b", ['\f'] = "f", ['\n'] = "n", ['\r'] = "r", ['\t'] = "t" };
    for (uint32_t k = 0; k < set->n; k++)
        for (uint32_t c = set->r[k][0]; c <= set->r[k][1] && c < 0x20; c++) {
            if (short_esc[c]) strbuf_printf(o, "%s\"\\\\%s\"", sep, short_esc[c]);
            else strbuf_printf(o, "%s\"\\\\u00%02X\"", sep, c);
            sep = " | ";
        }
    if (!*sep) strbuf_puts(o, "[^\\U00000000-\\U0010FFFF]");   // empty set: matches nothing
    strbuf_puts(o, ")");
    strbuf_free(&cls);
}

static void add_class_escape(struct cg_cpset *s, char e)
{
    switch (e) {
    case 'd': cg_cpset_add(s, '0', '9'); break;
    case 'w': cg_cpset_add(s, '0', '9'); cg_cpset_add(s, 'A', 'Z'); cg_cpset_add(s, 'a', 'z'); cg_cpset_add(s, '_', '_'); break;
    case 's':
        cg_cpset_add(s, 0x09, 0x0D); cg_cpset_add(s, 0x20, 0x20); cg_cpset_add(s, 0xA0, 0xA0);
        cg_cpset_add(s, 0x1680, 0x1680); cg_cpset_add(s, 0x2000, 0x200A); cg_cpset_add(s, 0x2028, 0x2029);
        cg_cpset_add(s, 0x202F, 0x202F); cg_cpset_add(s, 0x205F, 0x205F); cg_cpset_add(s, 0x3000, 0x3000);
        cg_cpset_add(s, 0xFEFF, 0xFEFF);
        break;
    }
}

static int hexv(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static bool read_hex(struct rx *x, int digits, uint32_t *v)
{
    *v = 0;
    for (int k = 0; k < digits; k++) {
        if (x->i >= x->n || hexv(x->s[x->i]) < 0) return false;
        *v = *v * 16 + (uint32_t)hexv(x->s[x->i++]);
    }
    return true;
}

/* Reads a UTF-8 code point of the pattern. */
static bool read_cp(struct rx *x, uint32_t *cp)
{
    unsigned char c = (unsigned char)x->s[x->i];
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (!len || x->i + (size_t)len > x->n) return false;
    uint32_t v = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; k < len; k++) v = (v << 6) | ((unsigned char)x->s[x->i + k] & 0x3F);
    x->i += len;
    *cp = v;
    return true;
}

/* After a backslash: a single code point (*cp) or a class escape (*cls set, returns true). */
static enum status read_escape(struct rx *x, uint32_t *cp, struct cg_cpset *cls, bool *is_class, bool in_class)
{
    *is_class = false;
    if (x->i >= x->n) return rx_err(x, "trailing backslash");
    char e = x->s[x->i++];
    switch (e) {
    case 'd': case 'w': case 's': add_class_escape(cls, e); *is_class = true; return STATUS_OK;
    case 'D': case 'W': case 'S': {
        struct cg_cpset t = {0};
        add_class_escape(&t, (char)(e - 'A' + 'a'));
        cg_cpset_negate(&t);
        for (uint32_t k = 0; k < t.n; k++) cg_cpset_add(cls, t.r[k][0], t.r[k][1]);
        cg_cpset_free(&t);
        *is_class = true;
        return STATUS_OK;
    }
    case 'n': *cp = '\n'; return STATUS_OK;
    case 'r': *cp = '\r'; return STATUS_OK;
    case 't': *cp = '\t'; return STATUS_OK;
    case 'f': *cp = '\f'; return STATUS_OK;
    case 'v': *cp = '\v'; return STATUS_OK;
    case '0':
        if (x->i < x->n && x->s[x->i] >= '0' && x->s[x->i] <= '9') return rx_unsupported(x, "octal escape");
        *cp = 0;
        return STATUS_OK;
    case 'x': if (!read_hex(x, 2, cp)) return rx_err(x, "bad \\x escape"); return STATUS_OK;
    case 'u':
        if (x->i < x->n && x->s[x->i] == '{') {
            x->i++;
            uint32_t v = 0;
            int nd = 0;
            while (x->i < x->n && hexv(x->s[x->i]) >= 0 && nd < 8) { v = v * 16 + (uint32_t)hexv(x->s[x->i++]); nd++; }
            if (!nd || x->i >= x->n || x->s[x->i] != '}' || v > 0x10FFFF) return rx_err(x, "bad \\u{...} escape");
            x->i++;
            *cp = v;
            return STATUS_OK;
        }
        if (!read_hex(x, 4, cp)) return rx_err(x, "bad \\u escape");
        if (*cp >= 0xD800 && *cp <= 0xDFFF) return rx_unsupported(x, "a surrogate \\u escape");
        return STATUS_OK;
    case 'c':
        if (x->i < x->n && ((x->s[x->i] | 0x20) >= 'a' && (x->s[x->i] | 0x20) <= 'z')) { *cp = (uint32_t)(x->s[x->i++] & 0x1F); return STATUS_OK; }
        return rx_err(x, "bad \\c escape");
    case 'b':
        if (in_class) { *cp = '\b'; return STATUS_OK; }
        return rx_unsupported(x, "a word boundary (\\b)");
    case 'B': return rx_unsupported(x, "a word boundary (\\B)");
    case 'k': return rx_unsupported(x, "a named backreference");
    case 'p': case 'P': return rx_unsupported(x, "a Unicode property escape");
    default:
        if (e >= '1' && e <= '9') return rx_unsupported(x, "a backreference");
        if (strchr("^$\\.*+?()[]{}|/-", e)) { *cp = (uint32_t)(unsigned char)e; return STATUS_OK; }
        return rx_err(x, "unknown escape (the u flag allows only syntax characters after \\)");
    }
}

static enum status parse_class(struct rx *x)
{
    x->i++;   // [
    struct cg_cpset set = {0};
    bool negate = x->i < x->n && x->s[x->i] == '^';
    if (negate) x->i++;
    enum status st = STATUS_OK;
    while (x->i < x->n && x->s[x->i] != ']') {
        uint32_t lo, hi;
        bool is_class = false;
        if (x->s[x->i] == '\\') {
            x->i++;
            if ((st = read_escape(x, &lo, &set, &is_class, true))) goto out;
        } else if (!read_cp(x, &lo)) { st = rx_err(x, "invalid UTF-8"); goto out; }
        if (is_class) continue;
        hi = lo;
        if (x->i + 1 < x->n && x->s[x->i] == '-' && x->s[x->i + 1] != ']') {
            x->i++;
            if (x->s[x->i] == '\\') {
                x->i++;
                if ((st = read_escape(x, &hi, &set, &is_class, true))) goto out;
                if (is_class) { st = rx_err(x, "class escape as a range end"); goto out; }
            } else if (!read_cp(x, &hi)) { st = rx_err(x, "invalid UTF-8"); goto out; }
            if (hi < lo) { st = rx_err(x, "range out of order"); goto out; }
        }
        cg_cpset_add(&set, lo, hi);
    }
    if (x->i >= x->n) { st = rx_err(x, "unterminated character class"); goto out; }
    x->i++;
    if (negate) cg_cpset_negate(&set);
    emit_cpset(x, &set);
out:
    cg_cpset_free(&set);
    return st;
}

static enum status parse_alt(struct rx *x);

static bool parse_count(struct rx *x, uint32_t *v)
{
    size_t start = x->i;
    uint64_t n = 0;
    while (x->i < x->n && x->s[x->i] >= '0' && x->s[x->i] <= '9') {
        n = n * 10 + (uint64_t)(x->s[x->i++] - '0');
        if (n > 100000000) n = 100000000;
    }
    *v = (uint32_t)n;
    return x->i > start;
}

static enum status parse_seq(struct rx *x)
{
    while (x->i < x->n && x->s[x->i] != '|' && x->s[x->i] != ')') {
        char c = x->s[x->i];
        size_t item_start = x->out->len;
        enum status st = STATUS_OK;
        if (c == '(') {
            x->i++;
            if (++x->depth > x->g->budget.max_depth) return cg_fail(x->g, STATUS_ENOMEM, "regex nests deeper than %u", x->g->budget.max_depth);
            if (x->i < x->n && x->s[x->i] == '?') {
                if (x->i + 1 < x->n && x->s[x->i + 1] == ':') x->i += 2;
                else if (x->i + 2 < x->n && x->s[x->i + 1] == '<' && x->s[x->i + 2] != '=' && x->s[x->i + 2] != '!') {
                    x->i += 2;
                    while (x->i < x->n && x->s[x->i] != '>') x->i++;
                    if (x->i >= x->n) return rx_err(x, "unterminated group name");
                    x->i++;
                } else return rx_unsupported(x, "lookaround");
            }
            strbuf_puts(x->out, "(");
            if ((st = parse_alt(x))) return st;
            if (x->i >= x->n || x->s[x->i] != ')') return rx_err(x, "missing ')'");
            x->i++;
            x->depth--;
            strbuf_puts(x->out, ")");
        } else if (c == '[') {
            if ((st = parse_class(x))) return st;
        } else if (c == '.') {
            x->i++;
            struct cg_cpset set = {0};
            cg_cpset_add(&set, '\n', '\n');
            cg_cpset_add(&set, '\r', '\r');
            cg_cpset_add(&set, 0x2028, 0x2029);
            cg_cpset_negate(&set);
            emit_cpset(x, &set);
            cg_cpset_free(&set);
        } else if (c == '^' || c == '$') {
            return rx_unsupported(x, "an anchor (^ or $) inside the pattern");
        } else if (c == '*' || c == '+' || c == '?' || c == '{') {
            return rx_err(x, "nothing to repeat");
        } else if (c == ']' || c == '}') {
            return rx_err(x, "lone bracket (not allowed with the u flag)");
        } else {
            uint32_t cp;
            struct cg_cpset set = {0};
            bool is_class = false;
            if (c == '\\') {
                x->i++;
                st = read_escape(x, &cp, &set, &is_class, false);
            } else if (!read_cp(x, &cp)) st = rx_err(x, "invalid UTF-8");
            if (!st && !is_class) cg_cpset_add(&set, cp, cp);
            if (!st) emit_cpset(x, &set);
            cg_cpset_free(&set);
            if (st) return st;
        }
        // Quantifier: wrap the item in a group and repeat it.
        if (x->i < x->n && strchr("*+?{", x->s[x->i])) {
            char q = x->s[x->i++];
            char buf[48];
            if (q == '{') {
                uint32_t lo, hi;
                if (!parse_count(x, &lo)) return rx_err(x, "bad {n,m} quantifier");
                hi = lo;
                if (x->i < x->n && x->s[x->i] == ',') {
                    x->i++;
                    hi = UINT32_MAX;
                    if (x->i < x->n && x->s[x->i] != '}' && !parse_count(x, &hi)) return rx_err(x, "bad {n,m} quantifier");
                }
                if (x->i >= x->n || x->s[x->i] != '}') return rx_err(x, "bad {n,m} quantifier");
                x->i++;
                if (hi < lo) return rx_err(x, "numbers out of order in {} quantifier");
                if (hi == UINT32_MAX) snprintf(buf, sizeof buf, "{%u,}", lo);
                else snprintf(buf, sizeof buf, "{%u,%u}", lo, hi);
            } else {
                snprintf(buf, sizeof buf, "%c", q);
            }
            if (x->i < x->n && x->s[x->i] == '?') x->i++;   // lazy: same language
            // Group the item: copy it out, then write ( item ) quantifier.
            char *item = xstrndup(x->out->data + item_start, x->out->len - item_start);
            x->out->len = item_start;
            x->out->data[item_start] = 0;
            strbuf_printf(x->out, "(%s)%s", item, buf);
            free(item);
        }
        strbuf_putc(x->out, ' ');
        if (x->out->len > (size_t)x->g->budget.max_elements * 8)
            return cg_fail(x->g, STATUS_ENOMEM, "regex too large");
    }
    return STATUS_OK;
}

static enum status parse_alt(struct rx *x)
{
    strbuf_puts(x->out, "(");
    for (;;) {
        enum status st = parse_seq(x);
        if (st) return st;
        if (x->i < x->n && x->s[x->i] == '|') {
            x->i++;
            strbuf_puts(x->out, " | ");
            continue;
        }
        strbuf_puts(x->out, ")");
        return STATUS_OK;
    }
}

enum status cg_regex_to_gbnf(struct cg_grammar *g, const char *re, size_t len, int mode, bool search,
                             const char *name, struct strbuf *out)
{
    struct rx x = { .g = g, .s = re, .n = len, .json = mode & CG_RX_JSON, .no_lt = mode & CG_RX_NO_LT, .out = out };
    bool start_anchor = len && re[0] == '^';
    bool end_anchor = len && re[len - 1] == '$' && !(len >= 2 && re[len - 2] == '\\');
    if (start_anchor) x.i = 1;
    if (end_anchor) x.n = len - 1;
    strbuf_printf(out, "%s ::= ", name);
    struct cg_cpset any = {0};
    cg_cpset_add(&any, 0, 0x10FFFF);
    if (search && !start_anchor) { emit_cpset(&x, &any); strbuf_puts(out, "* "); }
    enum status st = parse_alt(&x);
    if (!st && x.i < x.n) st = rx_err(&x, "unmatched ')'");
    if (!st && search && !end_anchor) { strbuf_puts(out, " "); emit_cpset(&x, &any); strbuf_puts(out, "*"); }
    cg_cpset_free(&any);
    strbuf_putc(out, '\n');
    return st;
}

enum status constraint_compile_regex(const char *re, size_t len, const struct constraint_budget *budget,
                                     struct constraint_grammar **out, char *err, size_t err_cap)
{
    struct cg_grammar tmp;
    cg_init(&tmp, budget, err, err_cap);
    struct strbuf text = {0};
    enum status st = cg_regex_to_gbnf(&tmp, re, len, CG_RX_RAW, false, "root", &text);
    cg_deinit(&tmp);
    if (!st) st = cg_compile_text(text.data, text.len, budget, out, err, err_cap);
    else *out = NULL;
    strbuf_free(&text);
    return st;
}
