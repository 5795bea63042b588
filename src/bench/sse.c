/* sse: incremental Server-Sent Events parser (see sse.h for the framing rules).
 *
 * Design note: input is consumed byte-run by byte-run; a line is only interpreted once its
 * terminator arrives, so chunk boundaries never matter. The only cross-chunk state beyond the
 * partial line is skip_lf, for a CRLF split between two chunks.
 */
#include "bench/sse.h"

#include <string.h>

#include "base/log.h"

void sse_init(struct sse_parser *p, sse_event_fn on_event, void *ctx)
{
    memset(p, 0, sizeof *p);
    p->on_event = on_event;
    p->ctx = ctx;
    p->max_bytes = (size_t)16 << 20;
}

void sse_deinit(struct sse_parser *p)
{
    strbuf_free(&p->line);
    strbuf_free(&p->data);
    strbuf_free(&p->event);
}

static enum status sse_dispatch(struct sse_parser *p)
{
    if (!p->has_data) {            // spec: an event with no data is not dispatched
        strbuf_clear(&p->event);
        return STATUS_OK;
    }
    if (p->data.len && p->data.data[p->data.len - 1] == '\n')
        p->data.data[--p->data.len] = '\0';
    const char *name = p->event.len ? p->event.data : "message";
    enum status st = p->on_event(p->ctx, name, p->data.data ? p->data.data : "", p->data.len);
    p->n_events++;
    strbuf_clear(&p->data);
    strbuf_clear(&p->event);
    p->has_data = false;
    return st;
}

// Interprets one complete line (without terminator).
static enum status sse_line(struct sse_parser *p, const char *s, size_t n)
{
    if (n == 0) return sse_dispatch(p);
    if (s[0] == ':') {
        p->n_comments++;
        return STATUS_OK;
    }
    const char *colon = memchr(s, ':', n);
    size_t name_len = colon ? (size_t)(colon - s) : n;
    const char *val = colon ? colon + 1 : s + n;
    size_t val_len = (size_t)(s + n - val);
    if (val_len && val[0] == ' ') {
        val++;
        val_len--;
    }
    if (name_len == 4 && !memcmp(s, "data", 4)) {
        if (p->data.len + val_len + 1 > p->max_bytes) {
            LOG_ERR("sse: event data longer than %zu bytes", p->max_bytes);
            return STATUS_ETOOLONG;
        }
        strbuf_append(&p->data, val, val_len);
        strbuf_putc(&p->data, '\n');
        p->has_data = true;
    } else if (name_len == 5 && !memcmp(s, "event", 5)) {
        strbuf_clear(&p->event);
        strbuf_append(&p->event, val, val_len);
    }
    // id, retry and unknown fields do not matter to a benchmark client
    return STATUS_OK;
}

enum status sse_feed(struct sse_parser *p, const char *buf, size_t n)
{
    if (p->stopped) return STATUS_OK;
    size_t i = 0;
    if (p->skip_lf && n > 0) {
        if (buf[0] == '\n') i = 1;
        p->skip_lf = false;
    }
    while (i < n) {
        // find the next terminator
        size_t j = i;
        while (j < n && buf[j] != '\n' && buf[j] != '\r') j++;
        if (p->line.len + (j - i) > p->max_bytes) {
            LOG_ERR("sse: line longer than %zu bytes", p->max_bytes);
            p->stopped = true;
            return STATUS_ETOOLONG;
        }
        if (j == n) {              // no terminator yet: keep the partial line
            strbuf_append(&p->line, buf + i, j - i);
            break;
        }
        enum status st;
        if (p->line.len) {
            strbuf_append(&p->line, buf + i, j - i);
            st = sse_line(p, p->line.data, p->line.len);
            strbuf_clear(&p->line);
        } else {
            st = sse_line(p, buf + i, j - i);
        }
        if (st != STATUS_OK) {
            p->stopped = true;
            return st;
        }
        if (buf[j] == '\r') {
            if (j + 1 < n) {
                if (buf[j + 1] == '\n') j++;
            } else {
                p->skip_lf = true;
            }
        }
        i = j + 1;
    }
    return STATUS_OK;
}

enum status sse_finish(struct sse_parser *p)
{
    if (p->stopped) return STATUS_OK;
    enum status st = STATUS_OK;
    if (p->line.len) {
        st = sse_line(p, p->line.data, p->line.len);
        strbuf_clear(&p->line);
    }
    if (st == STATUS_OK) st = sse_dispatch(p);
    p->stopped = true;
    return st;
}
