/* pyjson: Python-compatible JSON reading on top of jansson (contract in pyjson.h).
 *
 * A pre-scan walks the text once, skipping strings, and finds the number and literal tokens jansson
 * would reject: integers outside int64 (json_int_t), floats that overflow a double, NaN, Infinity,
 * -Infinity. Only when it finds one does it copy the text, replacing each such token with a wrapper
 * object; line numbers in jansson's errors stay right because no newline is added or removed.
 * This keeps jansson as the one JSON grammar (its errors, its duplicate-key and NUL rules) instead
 * of a second parser to keep in step.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "text/pyjson.h"

#define PY_INT_MAX_DIGITS 4300   // sys.int_info.default_max_str_digits: Python refuses longer ints

static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }
static bool is_word(char ch) { return is_digit(ch) || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_'; }

static bool starts_with(const char *s, size_t n, const char *lit)
{
    size_t k = strlen(lit);
    return n >= k && !memcmp(s, lit, k) && (n == k || !is_word(s[k]));
}

/* An integer token (sign, digits) that does not fit int64. */
static bool int_out_of_range(const char *s, size_t n)
{
    bool neg = s[0] == '-';
    const char *d = s + neg;
    size_t nd = n - neg;
    if (nd < 19) return false;
    if (nd > 19) return true;
    return memcmp(d, neg ? "9223372036854775808" : "9223372036854775807", 19) > 0;
}

/* A float token whose value overflows a double (Python makes it inf). */
static bool float_overflows(const char *s, size_t n)
{
    char tmp[64];
    char *heap = NULL, *p = tmp;
    if (n >= sizeof tmp) p = heap = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    double f = strtod(p, NULL);
    free(heap);
    return isinf(f);
}

/* Length of the JSON number token at s (0 if none): -?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?;
 * *is_int says whether it had no fraction or exponent. */
static size_t number_len(const char *s, size_t n, bool *is_int)
{
    size_t i = 0;
    if (i < n && s[i] == '-') i++;
    if (i >= n || !is_digit(s[i])) return 0;
    if (s[i] == '0') i++;
    else while (i < n && is_digit(s[i])) i++;
    *is_int = true;
    if (i < n && s[i] == '.') {
        size_t j = i + 1;
        while (j < n && is_digit(s[j])) j++;
        if (j == i + 1) return 0;
        i = j;
        *is_int = false;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        size_t j = i + 1;
        if (j < n && (s[j] == '+' || s[j] == '-')) j++;
        size_t k = j;
        while (k < n && is_digit(s[k])) k++;
        if (k == j) return 0;
        i = k;
        *is_int = false;
    }
    if (i < n && (is_word(s[i]) || s[i] == '.')) return 0;   // 0123, 1.2.3: jansson reports it
    return i;
}

static void put_wrapped(struct strbuf *out, const char *lit, size_t n)
{
    strbuf_puts(out, "{\"" PYJSON_LITERAL_KEY "\":\"");
    strbuf_append(out, lit, n);
    strbuf_puts(out, "\"}");
}

/* Rewrites text into *out if it holds a token jansson rejects; false (out untouched) if none. */
static bool rewrite(const char *s, size_t n, struct strbuf *out)
{
    size_t done = 0;   // bytes of s already copied to out
    bool changed = false;
    for (size_t i = 0; i < n;) {
        char ch = s[i];
        if (ch == '"') {
            for (i++; i < n && s[i] != '"'; i++)
                if (s[i] == '\\') i++;
            i++;
            continue;
        }
        const char *lit = NULL;
        size_t tok = 0, lit_n = 0;
        bool is_int = false;
        if (i > 0 && is_word(s[i - 1])) { i++; continue; }   // inside a bare word: not a token start
        if (ch == '-' || is_digit(ch)) {
            if (ch == '-' && starts_with(s + i + 1, n - i - 1, "Infinity")) {
                tok = 9; lit = "-Infinity"; lit_n = 9;
            } else if ((tok = number_len(s + i, n - i, &is_int)) != 0) {
                size_t digits = tok - (ch == '-');
                if (is_int && int_out_of_range(s + i, tok) && digits <= PY_INT_MAX_DIGITS) { lit = s + i; lit_n = tok; }
                else if (!is_int && float_overflows(s + i, tok)) { lit = ch == '-' ? "-Infinity" : "Infinity"; lit_n = strlen(lit); }
            } else tok = 1;
        } else if (ch == 'N' && starts_with(s + i, n - i, "NaN")) {
            tok = 3; lit = "NaN"; lit_n = 3;
        } else if (ch == 'I' && starts_with(s + i, n - i, "Infinity")) {
            tok = 8; lit = "Infinity"; lit_n = 8;
        } else tok = 1;
        if (lit) {
            if (!changed) strbuf_reserve(out, n + 64);
            strbuf_append(out, s + done, i - done);
            put_wrapped(out, lit, lit_n);
            done = i + tok;
            changed = true;
        }
        i += tok;
    }
    if (changed) strbuf_append(out, s + done, n - done);
    return changed;
}

json_t *pyjson_loadb(const char *text, size_t len, size_t flags, json_error_t *err)
{
    struct strbuf sb = {0};
    if (!rewrite(text, len, &sb)) return json_loadb(text, len, flags, err);
    json_t *j = json_loadb(sb.data, sb.len, flags, err);
    strbuf_free(&sb);
    return j;
}

json_t *pyjson_loads(const char *text, size_t flags, json_error_t *err)
{
    return pyjson_loadb(text, strlen(text), flags, err);
}

json_t *pyjson_load_file(const char *path, size_t flags, json_error_t *err)
{
    char *text;
    size_t len;
    const char *why;
    if (file_read_quiet(path, &text, &len, &why) != STATUS_OK) {
        if (err) {
            memset(err, 0, sizeof *err);
            err->line = -1;
            snprintf(err->source, sizeof err->source, "%s", path);
            snprintf(err->text, sizeof err->text, "unable to read %s: %s", path, why);
        }
        return NULL;
    }
    json_t *j = pyjson_loadb(text, len, flags, err);
    if (!j && err) snprintf(err->source, sizeof err->source, "%s", path);
    free(text);
    return j;
}

const char *pyjson_literal(const json_t *v)
{
    if (!json_is_object(v) || json_object_size(v) != 1) return NULL;
    return json_string_value(json_object_get(v, PYJSON_LITERAL_KEY));
}

const char *pyjson_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "object";
    case JSON_ARRAY: return "array";
    case JSON_STRING: return "string";
    case JSON_INTEGER: return "integer";
    case JSON_REAL: return "number";
    case JSON_TRUE: case JSON_FALSE: return "boolean";
    case JSON_NULL: return "null";
    }
    return "value";
}
