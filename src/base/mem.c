#include "base/mem.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    CHECK(p, "out of memory allocating %zu bytes", bytes);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    CHECK(p, "out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

void *xrealloc(void *p, size_t bytes)
{
    void *q = realloc(p, bytes ? bytes : 1);
    CHECK(q, "out of memory reallocating %zu bytes", bytes);
    return q;
}

char *xstrdup(const char *s) { return xstrndup(s, strlen(s)); }

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void strbuf_reserve(struct strbuf *sb, size_t extra)
{
    size_t need = sb->len + extra + 1;
    if (need <= sb->cap) return;
    size_t cap = sb->cap ? sb->cap : 64;
    while (cap < need) cap *= 2;
    sb->data = xrealloc(sb->data, cap);
    sb->cap = cap;
}

void strbuf_append(struct strbuf *sb, const char *s, size_t n)
{
    strbuf_reserve(sb, n);
    if (n) memcpy(sb->data + sb->len, s, n);
    sb->len += n;
    sb->data[sb->len] = 0;
}

void strbuf_puts(struct strbuf *sb, const char *s) { strbuf_append(sb, s, strlen(s)); }
void strbuf_putc(struct strbuf *sb, char c) { strbuf_append(sb, &c, 1); }

void strbuf_printf(struct strbuf *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    CHECK(n >= 0, "bad format %s", fmt);
    strbuf_reserve(sb, (size_t)n);
    vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    sb->len += (size_t)n;
}

void strbuf_clear(struct strbuf *sb)
{
    sb->len = 0;
    if (sb->data) sb->data[0] = 0;
}

char *strbuf_take(struct strbuf *sb)
{
    char *p = sb->data ? sb->data : xstrdup("");
    sb->data = NULL;
    sb->len = sb->cap = 0;
    return p;
}

void strbuf_free(struct strbuf *sb)
{
    free(sb->data);
    sb->data = NULL;
    sb->len = sb->cap = 0;
}

enum status file_read_quiet(const char *path, char **out, size_t *out_len, const char **why)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *why = strerror(errno);
        return errno == ENOENT ? STATUS_ENOTFOUND : STATUS_EIO;
    }
    struct strbuf sb = {0};
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) strbuf_append(&sb, chunk, n);
    int err = ferror(f);
    fclose(f);
    if (err) {
        *why = "read error";
        strbuf_free(&sb);
        return STATUS_EIO;
    }
    if (out_len) *out_len = sb.len;
    *out = strbuf_take(&sb);
    return STATUS_OK;
}

enum status file_read_all(const char *path, char **out, size_t *out_len)
{
    const char *why;
    enum status st = file_read_quiet(path, out, out_len, &why);
    if (st != STATUS_OK) LOG_ERR("%s: %s", path, why);
    return st;
}

enum status parse_int_list(const char *s, int32_t **out, int *out_n)
{
    int cap = 16, n = 0;
    int32_t *v = xmalloc(sizeof *v * (size_t)cap);
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < INT32_MIN || x > INT32_MAX) {
            LOG_ERR("bad integer list near \"%.20s\"", p);
            free(v);
            return STATUS_EINVAL;
        }
        if (n == cap) v = xrealloc(v, sizeof *v * (size_t)(cap *= 2));
        v[n++] = (int32_t)x;
        p = end;
        while (*p == ' ') p++;
        if (*p == ',') p++;
        else if (*p) {
            LOG_ERR("bad integer list near \"%.20s\"", p);
            free(v);
            return STATUS_EINVAL;
        }
    }
    *out = v;
    *out_n = n;
    return STATUS_OK;
}
