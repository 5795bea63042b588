/* constraint_json_number: JSON Schema integer and number bounds as GBNF digit patterns.
 *
 * An integer range [lo, hi] becomes, per digit count, the classic decomposition into equal-length
 * ranges (lo..hi as strings: shared prefix, then lo's tail..99, the whole digits between, 00..hi's
 * tail), with negatives as "-" and a range of magnitudes. Numbers with bounds are the integers in
 * range plus p.ddd (value in [p, p+1)) and -p.ddd (value in (-p-1, -p]) for the p whose whole unit
 * interval fits: a subset of the allowed reals, so every output is valid, and no exponent. Bounds
 * that leave no such integer part (0.1..0.2) are refused. Magnitudes stop at 15 digits, where
 * doubles are still exact integers.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "text/constraint_int.h"

/* ==== Numbers ==== */

#define NUM_CAP 999999999999999.0   // 15 digits: the largest magnitude generated

/* Digits of equal length n, lo <= x <= hi (as strings). */
static void same_len(struct strbuf *o, const char *lo, const char *hi, int n)
{
    if (n == 0) { strbuf_puts(o, "\"\""); return; }
    if (lo[0] == hi[0]) {
        strbuf_printf(o, "\"%c\" ", lo[0]);
        same_len(o, lo + 1, hi + 1, n - 1);
        return;
    }
    bool lo_zeros = true, hi_nines = true;
    for (int k = 1; k < n; k++) { lo_zeros &= lo[k] == '0'; hi_nines &= hi[k] == '9'; }
    if (lo_zeros && hi_nines) {
        strbuf_printf(o, "[%c-%c]", lo[0], hi[0]);
        if (n > 1) strbuf_printf(o, " [0-9]{%d}", n - 1);
        return;
    }
    char nines[32], zeros[32];
    memset(nines, '9', sizeof nines);
    memset(zeros, '0', sizeof zeros);
    strbuf_printf(o, "(\"%c\" (", lo[0]);
    same_len(o, lo + 1, nines, n - 1);
    strbuf_puts(o, ")");
    if (lo[0] + 1 <= hi[0] - 1) {
        strbuf_printf(o, " | [%c-%c]", lo[0] + 1, hi[0] - 1);
        if (n > 1) strbuf_printf(o, " [0-9]{%d}", n - 1);
    }
    strbuf_printf(o, " | \"%c\" (", hi[0]);
    same_len(o, zeros, hi + 1, n - 1);
    strbuf_puts(o, "))");
}

/* Non-negative integers in [a, b] without leading zeros, as a GBNF alternation. */
static void range_nonneg(struct strbuf *o, int64_t a, int64_t b)
{
    strbuf_puts(o, "(");
    const char *sep = "";
    int64_t p10 = 1;
    for (int len = 1; len <= 15; len++, p10 *= 10) {
        int64_t lo = len == 1 ? 0 : p10, hi = p10 * 10 - 1;
        if (a > lo) lo = a;
        if (b < hi) hi = b;
        if (lo > hi) continue;
        char ls[32], hs[32];
        snprintf(ls, sizeof ls, "%lld", (long long)lo);
        snprintf(hs, sizeof hs, "%lld", (long long)hi);
        strbuf_printf(o, "%s(", sep);
        same_len(o, ls, hs, len);
        strbuf_puts(o, ")");
        sep = " | ";
    }
    strbuf_puts(o, ")");
}

/* Integers in [lo, hi]; false if empty. */
static bool int_range(struct strbuf *o, int64_t lo, int64_t hi)
{
    if (lo > hi) return false;
    strbuf_puts(o, "(");
    const char *sep = "";
    if (hi >= 0) { range_nonneg(o, lo > 0 ? lo : 0, hi); sep = " | "; }
    if (lo < 0) {
        strbuf_printf(o, "%s\"-\" ", sep);
        range_nonneg(o, hi < -1 ? -hi : 1, -lo);
    }
    strbuf_puts(o, ")");
    return true;
}

struct bounds {
    bool   has_lo, has_hi, lo_excl, hi_excl;
    double lo, hi;
};

static enum status read_bounds(struct cg_grammar *g, json_t *s, const char *path, struct bounds *b)
{
    memset(b, 0, sizeof *b);
    const char *keys[] = { "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum" };
    for (int k = 0; k < 4; k++) {
        json_t *v = json_object_get(s, keys[k]);
        if (!v) continue;
        if (!json_is_number(v)) return cg_fail(g, STATUS_EINVAL, "%s: '%s' must be a number", path, keys[k]);
        double x = json_number_value(v);
        bool lo = k == 0 || k == 2, excl = k >= 2;
        if (lo) {
            if (!b->has_lo || x > b->lo || (x == b->lo && excl)) { b->lo = x; b->lo_excl = excl; }
            b->has_lo = true;
        } else {
            if (!b->has_hi || x < b->hi || (x == b->hi && excl)) { b->hi = x; b->hi_excl = excl; }
            b->has_hi = true;
        }
    }
    json_t *m = json_object_get(s, "multipleOf");
    if (m && !(json_is_number(m) && json_number_value(m) == 1.0))
        return cg_fail(g, STATUS_EUNSUPPORTED, "%s: keyword 'multipleOf' is not supported", path);
    return STATUS_OK;
}

enum status cg_json_integer(struct cg_grammar *g, json_t *s, const char *path, struct strbuf *o)
{
    struct bounds b;
    enum status st = read_bounds(g, s, path, &b);
    if (st) return st;
    if (!b.has_lo && !b.has_hi) { strbuf_puts(o, "jinteger"); return STATUS_OK; }
    double lo = -NUM_CAP, hi = NUM_CAP;
    if (b.has_lo) lo = b.lo_excl ? floor(b.lo) + 1 : ceil(b.lo);
    if (b.has_hi) hi = b.hi_excl ? ceil(b.hi) - 1 : floor(b.hi);
    if (lo < -NUM_CAP) lo = -NUM_CAP;
    if (hi > NUM_CAP) hi = NUM_CAP;
    if (!int_range(o, (int64_t)lo, (int64_t)hi))
        return cg_fail(g, STATUS_EINVAL, "%s: no integer satisfies the bounds", path);
    return STATUS_OK;
}

enum status cg_json_number(struct cg_grammar *g, json_t *s, const char *path, struct strbuf *o)
{
    struct bounds b;
    enum status st = read_bounds(g, s, path, &b);
    if (st) return st;
    if (!b.has_lo && !b.has_hi) { strbuf_puts(o, "jnum"); return STATUS_OK; }
    double lo = b.has_lo ? b.lo : -NUM_CAP, hi = b.has_hi ? b.hi : NUM_CAP;
    // Integers in range, then p.ddd (value in [p, p+1)) and -p.ddd (value in (-p-1, -p]).
    double ilo = b.has_lo && b.lo_excl ? floor(lo) + 1 : ceil(lo), ihi = b.has_hi && b.hi_excl ? ceil(hi) - 1 : floor(hi);
    double plo = b.has_lo && b.lo_excl ? floor(lo) + 1 : ceil(lo), phi = floor(hi) - 1;   // non-negative p
    double nlo = b.has_hi && b.hi_excl ? floor(-hi) + 1 : ceil(-hi), nhi = floor(-lo) - 1; // negative: magnitude p
    if (plo < 0) plo = 0;
    if (nlo < 0) nlo = 0;
    if (ilo < -NUM_CAP) ilo = -NUM_CAP;
    if (ihi > NUM_CAP) ihi = NUM_CAP;
    if (phi > NUM_CAP) phi = NUM_CAP;
    if (nhi > NUM_CAP) nhi = NUM_CAP;
    strbuf_puts(o, "(");
    const char *sep = "";
    if (ilo <= ihi) { int_range(o, (int64_t)ilo, (int64_t)ihi); sep = " | "; }
    if (plo <= phi) {
        strbuf_puts(o, sep);
        range_nonneg(o, (int64_t)plo, (int64_t)phi);
        strbuf_puts(o, " \".\" [0-9]{1,15}");
        sep = " | ";
    }
    if (nlo <= nhi) {
        strbuf_printf(o, "%s\"-\" ", sep);
        range_nonneg(o, (int64_t)nlo, (int64_t)nhi);
        strbuf_puts(o, " \".\" [0-9]{1,15}");
        sep = " | ";
    }
    strbuf_puts(o, ")");
    // Bounds that admit only fractions between two consecutive integers (0.1..0.2) would need
    // digit-level ranges on the fraction; refused rather than loosened.
    if (!*sep) return cg_fail(g, STATUS_EUNSUPPORTED, "%s: number bounds narrower than the integers between them are not supported", path);
    return STATUS_OK;
}

