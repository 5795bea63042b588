/* jsonw: a small JSON writer for the server's hot path (SSE chunks, responses).
 *
 * Appends JSON text to a struct strbuf. Strings are escaped so that the output is always valid
 * JSON and valid UTF-8 whatever the input bytes are: '"', '\\' and control characters are
 * escaped (\n, \t, ..., \u00XX), U+2028/U+2029 are escaped for JavaScript consumers, and bytes
 * that are not well-formed UTF-8 (overlongs, surrogates, truncated sequences, > U+10FFFF) become
 * U+FFFD. Numbers: integers exactly; doubles with enough digits to round-trip, non-finite ones
 * as null. Used by any server thread; no state beyond the strbuf.
 *
 *     struct strbuf sb = {0};
 *     jsonw_raw(&sb, "{\"text\":"); jsonw_str(&sb, text, len); jsonw_raw(&sb, "}");
 *     send(sb.data, sb.len); strbuf_free(&sb);
 */
#ifndef CAIRN_SERVER_JSONW_H
#define CAIRN_SERVER_JSONW_H

#include <stddef.h>
#include <stdint.h>

#include "base/mem.h"

void jsonw_raw(struct strbuf *sb, const char *s);                  // appends s as is
void jsonw_str(struct strbuf *sb, const char *s, size_t len);      // "escaped"
void jsonw_cstr(struct strbuf *sb, const char *s);                 // NULL writes null
void jsonw_int(struct strbuf *sb, int64_t v);
void jsonw_double(struct strbuf *sb, double v);                    // shortest %.17g that round-trips
void jsonw_float(struct strbuf *sb, float v);                     // shortest that round-trips as a float
void jsonw_bool(struct strbuf *sb, int v);
/* "key": with the key escaped; caller writes the value next. */
void jsonw_key(struct strbuf *sb, const char *key);

/* Length of the longest prefix of s[0..len) that is well-formed UTF-8 and does not end inside
 * a sequence (used to hold back partial characters). */
size_t utf8_valid_prefix(const char *s, size_t len);
/* Decodes one sequence: its length (1..4), 0 when ill-formed, -1 when truncated but valid so far. */
int    utf8_next(const char *s, size_t avail, uint32_t *cp);
/* True when s[0..len) is entirely well-formed UTF-8. */
int    utf8_is_valid(const char *s, size_t len);

#endif
