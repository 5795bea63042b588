/* mem: allocation helpers, growable byte buffers and small vectors.
 *
 * xmalloc/xcalloc/xrealloc/xstrdup abort on failure: use them for small bookkeeping whose failure
 * means the process is broken. Allocations sized by input (weights, KV pools, request bodies)
 * use plain malloc and return STATUS_ENOMEM instead.
 *
 * struct strbuf is an owned, NUL-terminated, growable string:
 *     struct strbuf sb = {0};
 *     strbuf_printf(&sb, "%d tokens", n);
 *     puts(sb.data);  strbuf_free(&sb);
 */
#ifndef CAIRN_BASE_MEM_H
#define CAIRN_BASE_MEM_H

#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

void *xmalloc(size_t bytes);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t bytes);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

struct strbuf {
    char  *data;   // NUL-terminated when non-NULL
    size_t len;    // bytes, excluding the NUL
    size_t cap;    // bytes allocated
};

void strbuf_reserve(struct strbuf *sb, size_t extra);
void strbuf_append(struct strbuf *sb, const char *s, size_t n);
void strbuf_puts(struct strbuf *sb, const char *s);
void strbuf_putc(struct strbuf *sb, char c);
void strbuf_printf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strbuf_clear(struct strbuf *sb);          // len = 0, keeps memory
char *strbuf_take(struct strbuf *sb);          // hands the buffer over (never NULL); sb is reset
void strbuf_free(struct strbuf *sb);

/* Reads a whole file into a NUL-terminated heap buffer. Logs and returns EIO/ENOTFOUND on error. */
enum status file_read_all(const char *path, char **out, size_t *out_len);
/* The same without logging: on error *why says what failed ("No such file...", "read error"). */
enum status file_read_quiet(const char *path, char **out, size_t *out_len, const char **why);

/* Parses a comma-separated list of integers ("5,17,42"). Caller frees *out. */
enum status parse_int_list(const char *s, int32_t **out, int *out_n);

#endif
