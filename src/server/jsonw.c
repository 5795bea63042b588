/* jsonw: JSON text writer; see jsonw.h. The UTF-8 decoder follows the Unicode "well-formed
 * byte sequences" table (Table 3-7), so every byte string maps to valid output. */
#include "server/jsonw.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void jsonw_raw(struct strbuf *sb, const char *s) { strbuf_puts(sb, s); }

/* Length of the well-formed sequence starting at s (1..4), 0 when ill-formed or truncated;
 * *cp gets the code point. */
static int utf8_seq(const unsigned char *s, size_t avail, uint32_t *cp)
{
    unsigned char c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    int n; uint32_t v; unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) { n = 2; v = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3; v = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4; v = c & 0x07;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else return 0;
    if (avail < (size_t)n) {
        // check what is there so callers can tell "truncated" (valid so far) from "bad"
        for (size_t i = 1; i < avail; i++) {
            unsigned char b = s[i];
            if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return 0;
        }
        return -1;
    }
    for (int i = 1; i < n; i++) {
        unsigned char b = s[i];
        if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return 0;
        v = (v << 6) | (b & 0x3F);
    }
    *cp = v;
    return n;
}

size_t utf8_valid_prefix(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        int n = utf8_seq((const unsigned char *)s + i, len - i, &cp);
        if (n <= 0) break;
        i += (size_t)n;
    }
    return i;
}

int utf8_next(const char *s, size_t avail, uint32_t *cp)
{
    return avail ? utf8_seq((const unsigned char *)s, avail, cp) : -1;
}

int utf8_is_valid(const char *s, size_t len) { return utf8_valid_prefix(s, len) == len; }

void jsonw_str(struct strbuf *sb, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    strbuf_reserve(sb, len + 2);
    strbuf_putc(sb, '"');
    size_t run = 0;   // start of a run of bytes copied verbatim
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') { i++; continue; }
        uint32_t cp = 0;
        int n = c < 0x80 ? 1 : utf8_seq(p + i, len - i, &cp);
        if (n > 1 && cp != 0x2028 && cp != 0x2029) { i += (size_t)n; continue; }
        strbuf_append(sb, s + run, i - run);
        if (n <= 0) {
            strbuf_append(sb, "\xEF\xBF\xBD", 3);   // U+FFFD for one bad byte
            i += 1;
        } else if (n > 1) {
            strbuf_puts(sb, cp == 0x2028 ? "\\u2028" : "\\u2029");
            i += (size_t)n;
        } else {
            switch (c) {
            case '"':  strbuf_append(sb, "\\\"", 2); break;
            case '\\': strbuf_append(sb, "\\\\", 2); break;
            case '\n': strbuf_append(sb, "\\n", 2); break;
            case '\r': strbuf_append(sb, "\\r", 2); break;
            case '\t': strbuf_append(sb, "\\t", 2); break;
            case '\b': strbuf_append(sb, "\\b", 2); break;
            case '\f': strbuf_append(sb, "\\f", 2); break;
            default: {
                char u[7] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15], 0 };
                strbuf_append(sb, u, 6);
            }
            }
            i += 1;
        }
        run = i;
    }
    strbuf_append(sb, s + run, len - run);
    strbuf_putc(sb, '"');
}

void jsonw_cstr(struct strbuf *sb, const char *s)
{
    if (!s) strbuf_puts(sb, "null");
    else jsonw_str(sb, s, strlen(s));
}

void jsonw_int(struct strbuf *sb, int64_t v) { strbuf_printf(sb, "%lld", (long long)v); }

void jsonw_double(struct strbuf *sb, double v)
{
    if (!isfinite(v)) { strbuf_puts(sb, "null"); return; }
    char buf[40];
    for (int prec = 6; prec <= 17; prec++) {   // shortest that round-trips
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    // %g never emits a bare "inf"/"nan" here; make sure integers like "1e+20" stay JSON numbers
    strbuf_puts(sb, buf);
}

void jsonw_float(struct strbuf *sb, float v)
{
    if (!isfinite(v)) { strbuf_puts(sb, "null"); return; }
    char buf[32];
    for (int prec = 4; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v) break;
    }
    strbuf_puts(sb, buf);
}

void jsonw_bool(struct strbuf *sb, int v) { strbuf_puts(sb, v ? "true" : "false"); }

void jsonw_key(struct strbuf *sb, const char *key)
{
    jsonw_str(sb, key, strlen(key));
    strbuf_putc(sb, ':');
}
