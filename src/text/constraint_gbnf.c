/* constraint_gbnf: the GBNF grammar language of llama.cpp, parsed into the byte grammar.
 *
 *     root  ::= "{" ws pair ("," ws pair)* "}"     # comment
 *     pair  ::= [a-z]+ ":" ws ( "true" | "false" )
 *     ws    ::= [ \t\n]{0,4}
 *
 * Rules are `name ::= alternatives`; a rule ends at the end of its line, except inside ( ) and
 * after `::=` or `|` (a line that starts with `|` continues the previous rule too). Items:
 * "literal", [class] / [^class] (code points), `.` (any code point), a rule name, ( group ); each
 * may be followed by *, +, ?, {m}, {m,}, {m,n}. Escapes: \n \r \t \\ \" \' \[ \] \- \^ \/ \xHH \uHHHH
 * \UHHHHHHHH. Literals and classes are Unicode text: they match its UTF-8 encoding.
 * Repetition is expanded into helper rules (x{2,4} is x x (x (x)?)?), which the budget bounds.
 */
#include <stdio.h>
#include <string.h>

#include "text/constraint_int.h"

struct gp {
    struct cg_grammar *g;
    const char        *s;
    size_t             n, i;
    uint32_t           depth;
};

static int line_of(const struct gp *p)
{
    int line = 1;
    for (size_t k = 0; k < p->i && k < p->n; k++) line += p->s[k] == '\n';
    return line;
}

static enum status gp_err(struct gp *p, const char *what)
{
    return cg_fail(p->g, STATUS_EINVAL, "grammar line %d: %s", line_of(p), what);
}

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

/* Skips blanks and comments; newlines too when nl_ok. */
static void skip_space(struct gp *p, bool nl_ok)
{
    while (p->i < p->n) {
        char c = p->s[p->i];
        if (c == ' ' || c == '\t' || c == '\r' || (nl_ok && c == '\n')) p->i++;
        else if (c == '#') { while (p->i < p->n && p->s[p->i] != '\n') p->i++; }
        else break;
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Reads one (possibly escaped) code point of a literal or class; -1 on error (message set). */
static int64_t read_char(struct gp *p)
{
    if (p->i >= p->n) { gp_err(p, "unexpected end of grammar"); return -1; }
    unsigned char c = (unsigned char)p->s[p->i];
    if (c == '\\') {
        if (p->i + 1 >= p->n) { gp_err(p, "unexpected end after '\\'"); return -1; }
        char e = p->s[p->i + 1];
        p->i += 2;
        int digits = 0;
        switch (e) {
        case 'n': return '\n';
        case 'r': return '\r';
        case 't': return '\t';
        case '\\': case '"': case '\'': case '[': case ']': case '-': case '^': case '/': return e;
        case 'x': digits = 2; break;
        case 'u': digits = 4; break;
        case 'U': digits = 8; break;
        default: gp_err(p, "unknown escape"); return -1;
        }
        uint32_t v = 0;
        for (int k = 0; k < digits; k++) {
            int h = p->i < p->n ? hexval(p->s[p->i]) : -1;
            if (h < 0) { gp_err(p, "bad hex escape"); return -1; }
            v = v * 16 + (uint32_t)h;
            p->i++;
        }
        if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) { gp_err(p, "escape is not a Unicode scalar value"); return -1; }
        return v;
    }
    // A UTF-8 encoded code point of the grammar text itself.
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (!len || p->i + (size_t)len > p->n) { gp_err(p, "invalid UTF-8 in grammar"); return -1; }
    uint32_t v = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; k < len; k++) {
        unsigned char cc = (unsigned char)p->s[p->i + k];
        if ((cc & 0xC0) != 0x80) { gp_err(p, "invalid UTF-8 in grammar"); return -1; }
        v = (v << 6) | (cc & 0x3F);
    }
    p->i += len;
    return v;
}

/* An item ready to be placed or repeated: one element. */
static struct cg_elem item_rule(uint32_t r) { return (struct cg_elem){ CG_RULE, r }; }

static void push_elem(struct cg_grammar *g, uint32_t rule, uint32_t alt, struct cg_elem e)
{
    if (e.kind == CG_RULE) cg_push_rule(g, rule, alt, e.arg);
    else cg_push_bytes(g, rule, alt, g->sets[e.arg]);
}

static enum status parse_alternates(struct gp *p, uint32_t rule, bool nested);

/* Literal "..." as its UTF-8 bytes (owned by the caller). */
static enum status parse_literal(struct gp *p, struct strbuf *bytes)
{
    p->i++;   // opening quote
    while (p->i < p->n && p->s[p->i] != '"') {
        int64_t cp = read_char(p);
        if (cp < 0) return STATUS_EINVAL;
        uint32_t v = (uint32_t)cp;
        char b[4];
        int n = v < 0x80 ? 1 : v < 0x800 ? 2 : v < 0x10000 ? 3 : 4;
        if (n == 1) b[0] = (char)v;
        else if (n == 2) { b[0] = (char)(0xC0 | (v >> 6)); b[1] = (char)(0x80 | (v & 0x3F)); }
        else if (n == 3) { b[0] = (char)(0xE0 | (v >> 12)); b[1] = (char)(0x80 | ((v >> 6) & 0x3F)); b[2] = (char)(0x80 | (v & 0x3F)); }
        else { b[0] = (char)(0xF0 | (v >> 18)); b[1] = (char)(0x80 | ((v >> 12) & 0x3F)); b[2] = (char)(0x80 | ((v >> 6) & 0x3F)); b[3] = (char)(0x80 | (v & 0x3F)); }
        strbuf_append(bytes, b, (size_t)n);
    }
    if (p->i >= p->n) return gp_err(p, "unterminated string literal");
    p->i++;
    return STATUS_OK;
}

static void push_byte(struct cg_grammar *g, uint32_t rule, uint32_t alt, uint8_t b)
{
    uint8_t set[32] = {0};
    set[b >> 3] = (uint8_t)(1u << (b & 7));
    cg_push_bytes(g, rule, alt, set);
}

/* A code point set as one item: a byte set when it is pure ASCII, else a helper rule. */
static struct cg_elem cpset_item(struct cg_grammar *g, const struct cg_cpset *set)
{
    if (set->n && set->r[set->n - 1][1] < 0x80) {
        uint8_t bits[32] = {0};
        for (uint32_t i = 0; i < set->n; i++)
            for (uint32_t c = set->r[i][0]; c <= set->r[i][1]; c++) bits[c >> 3] |= (uint8_t)(1u << (c & 7));
        return (struct cg_elem){ CG_BYTES, cg_set_index(g, bits) };
    }
    return item_rule(cg_rule_for_cpset(g, set));
}

static enum status parse_class(struct gp *p, struct cg_elem *out)
{
    p->i++;   // [
    struct cg_cpset set = {0};
    bool negate = p->i < p->n && p->s[p->i] == '^';
    if (negate) p->i++;
    enum status st = STATUS_OK;
    while (p->i < p->n && p->s[p->i] != ']') {
        int64_t lo = read_char(p);
        if (lo < 0) { st = STATUS_EINVAL; goto out; }
        int64_t hi = lo;
        if (p->i + 1 < p->n && p->s[p->i] == '-' && p->s[p->i + 1] != ']') {
            p->i++;
            hi = read_char(p);
            if (hi < 0) { st = STATUS_EINVAL; goto out; }
            if (hi < lo) { st = gp_err(p, "character range out of order"); goto out; }
        }
        cg_cpset_add(&set, (uint32_t)lo, (uint32_t)hi);
    }
    if (p->i >= p->n) { st = gp_err(p, "unterminated character class"); goto out; }
    p->i++;
    if (negate) cg_cpset_negate(&set);
    else cg_cpset_normalize(&set);
    if (!set.n) { st = gp_err(p, "empty character class"); goto out; }
    *out = cpset_item(p->g, &set);
out:
    cg_cpset_free(&set);
    return st;
}

/* Places item e repeated min..max times (max UINT32_MAX: unbounded) into rule/alt. */
static enum status place_repeat(struct gp *p, uint32_t rule, uint32_t alt, struct cg_elem e, uint32_t min, uint32_t max)
{
    struct cg_grammar *g = p->g;
    if ((uint64_t)min + (max == UINT32_MAX ? 0 : max - min) > g->budget.max_elements)
        return cg_fail(g, STATUS_ENOMEM, "repetition too large (more than %u elements)", g->budget.max_elements);
    for (uint32_t k = 0; k < min; k++) push_elem(g, rule, alt, e);
    if (max == UINT32_MAX) {   // star ::= e star | ""
        uint32_t star = cg_rule_new_anon(g, "star");
        uint32_t a = cg_alt_add(g, star);
        push_elem(g, star, a, e);
        cg_push_rule(g, star, a, star);
        cg_alt_add(g, star);
        cg_push_rule(g, rule, alt, star);
    } else if (max > min) {    // opt_k ::= e opt_{k-1} | ""
        uint32_t next = UINT32_MAX;
        for (uint32_t k = 0; k < max - min; k++) {
            uint32_t opt = cg_rule_new_anon(g, "opt");
            uint32_t a = cg_alt_add(g, opt);
            push_elem(g, opt, a, e);
            if (next != UINT32_MAX) cg_push_rule(g, opt, a, next);
            cg_alt_add(g, opt);
            next = opt;
        }
        cg_push_rule(g, rule, alt, next);
    }
    return cg_check_budget(g);
}

static bool read_uint(struct gp *p, uint32_t *v)
{
    size_t start = p->i;
    uint64_t x = 0;
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
        x = x * 10 + (uint64_t)(p->s[p->i++] - '0');
        if (x > 100000000) return false;
    }
    *v = (uint32_t)x;
    return p->i > start;
}

static enum status parse_sequence(struct gp *p, uint32_t rule, uint32_t alt, bool nested)
{
    struct cg_grammar *g = p->g;
    for (;;) {
        skip_space(p, nested);
        if (p->i >= p->n) return STATUS_OK;
        char c = p->s[p->i];
        struct cg_elem e = {0};
        struct strbuf lit = {0};
        bool is_lit = false;
        enum status st = STATUS_OK;
        if (c == '"') { st = parse_literal(p, &lit); is_lit = true; }
        else if (c == '[') st = parse_class(p, &e);
        else if (c == '.') {
            p->i++;
            struct cg_cpset any = {0};
            cg_cpset_add(&any, 0, 0x10FFFF);
            e = cpset_item(g, &any);
            cg_cpset_free(&any);
        } else if (c == '(') {
            p->i++;
            if (++p->depth > g->budget.max_depth) return cg_fail(g, STATUS_ENOMEM, "grammar nests deeper than %u", g->budget.max_depth);
            uint32_t grp = cg_rule_new_anon(g, "group");
            st = parse_alternates(p, grp, true);
            if (st) return st;
            skip_space(p, true);
            if (p->i >= p->n || p->s[p->i] != ')') return gp_err(p, "expected ')'");
            p->i++;
            p->depth--;
            e = item_rule(grp);
        } else if (is_name_char(c)) {
            size_t start = p->i;
            while (p->i < p->n && is_name_char(p->s[p->i])) p->i++;
            // A name followed by ::= starts the next rule: this sequence ended at the newline.
            size_t save = p->i;
            skip_space(p, false);
            if (p->i + 3 <= p->n && !memcmp(p->s + p->i, "::=", 3)) return gp_err(p, "missing newline before rule");
            p->i = save;
            e = item_rule(cg_rule_get(g, p->s + start, p->i - start));
        } else {
            return STATUS_OK;   // '|', ')', newline, or something the caller reports
        }
        if (st) { strbuf_free(&lit); return st; }
        // Postfix operators.
        uint32_t min = 1, max = 1;
        if (p->i < p->n) {
            char q = p->s[p->i];
            if (q == '*') { min = 0; max = UINT32_MAX; p->i++; }
            else if (q == '+') { min = 1; max = UINT32_MAX; p->i++; }
            else if (q == '?') { min = 0; max = 1; p->i++; }
            else if (q == '{') {
                p->i++;
                skip_space(p, false);
                if (!read_uint(p, &min)) { strbuf_free(&lit); return gp_err(p, "expected a number after '{'"); }
                skip_space(p, false);
                max = min;
                if (p->i < p->n && p->s[p->i] == ',') {
                    p->i++;
                    skip_space(p, false);
                    max = UINT32_MAX;
                    if (p->i < p->n && p->s[p->i] != '}' && !read_uint(p, &max)) { strbuf_free(&lit); return gp_err(p, "bad repetition bound"); }
                    skip_space(p, false);
                }
                if (p->i >= p->n || p->s[p->i] != '}') { strbuf_free(&lit); return gp_err(p, "expected '}'"); }
                p->i++;
                if (max < min) { strbuf_free(&lit); return gp_err(p, "repetition maximum below minimum"); }
            }
        }
        if (is_lit) {
            // Placed once: its bytes go inline. Repeated: one byte is a byte set, more a helper rule.
            if (min == 1 && max == 1) {
                for (size_t k = 0; k < lit.len; k++) push_byte(g, rule, alt, (uint8_t)lit.data[k]);
                strbuf_free(&lit);
                continue;
            }
            if (lit.len == 1) {
                uint8_t set[32] = {0};
                set[(uint8_t)lit.data[0] >> 3] = (uint8_t)(1u << ((uint8_t)lit.data[0] & 7));
                e = (struct cg_elem){ CG_BYTES, cg_set_index(g, set) };
            } else {
                uint32_t r = cg_rule_new_anon(g, "lit");
                uint32_t a = cg_alt_add(g, r);
                for (size_t k = 0; k < lit.len; k++) push_byte(g, r, a, (uint8_t)lit.data[k]);
                e = item_rule(r);
            }
            strbuf_free(&lit);
        }
        st = place_repeat(p, rule, alt, e, min, max);
        if (st) return st;
    }
}

static enum status parse_alternates(struct gp *p, uint32_t rule, bool nested)
{
    for (;;) {
        uint32_t alt = cg_alt_add(p->g, rule);
        enum status st = parse_sequence(p, rule, alt, nested);
        if (st) return st;
        size_t save = p->i;
        skip_space(p, true);
        if (p->i < p->n && p->s[p->i] == '|') {
            p->i++;
            skip_space(p, true);
            continue;
        }
        p->i = save;
        return STATUS_OK;
    }
}

enum status cg_parse_gbnf(struct cg_grammar *g, const char *text, size_t len)
{
    struct gp p = { .g = g, .s = text, .n = len };
    for (;;) {
        skip_space(&p, true);
        if (p.i >= p.n) break;
        size_t start = p.i;
        while (p.i < p.n && is_name_char(p.s[p.i])) p.i++;
        if (p.i == start) return gp_err(&p, "expected a rule name");
        uint32_t r = cg_rule_get(g, p.s + start, p.i - start);
        if (g->rules[r].defined) return cg_fail(g, STATUS_EINVAL, "grammar line %d: rule '%s' defined twice", line_of(&p), g->rules[r].name);
        g->rules[r].defined = true;
        skip_space(&p, false);
        if (p.i + 3 > p.n || memcmp(p.s + p.i, "::=", 3)) return gp_err(&p, "expected '::='");
        p.i += 3;
        skip_space(&p, true);
        enum status st = parse_alternates(&p, r, false);
        if (st) return st;
        skip_space(&p, false);
        if (p.i < p.n && p.s[p.i] != '\n') return gp_err(&p, "unexpected character");
        st = cg_check_budget(g);
        if (st) return st;
    }
    return STATUS_OK;
}
