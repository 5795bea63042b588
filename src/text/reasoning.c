/* reasoning: <think> splitting; see reasoning.h. A tiny two-state machine over a held buffer. */
#include "text/reasoning.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

struct reasoning {
    char         *open, *close;
    bool          inside;
    bool          seg_start;    // drop whitespace until the first other byte of a segment
    bool          single;       // one block only: after its close, no marker is looked for
    bool          closed;
    struct strbuf held;         // undecided text (a possible marker prefix)
    void        (*emit)(void *ctx, bool is_reasoning, const char *text, size_t len);
    void         *ctx;
};

struct reasoning *reasoning_new(const char *open, const char *close, bool start_inside,
                                void (*emit)(void *, bool, const char *, size_t), void *ctx)
{
    struct reasoning *r = xcalloc(1, sizeof *r);
    r->open = xstrdup(open);
    r->close = xstrdup(close);
    r->inside = start_inside;
    r->seg_start = start_inside;
    r->emit = emit;
    r->ctx = ctx;
    return r;
}

static void out(struct reasoning *r, const char *s, size_t n)
{
    if (r->seg_start) {
        while (n && isspace((unsigned char)*s)) { s++; n--; }
        if (!n) return;
        r->seg_start = false;
    }
    if (!n) return;
    r->emit(r->ctx, r->inside, s, n);
}

static void run(struct reasoning *r, bool final)
{
    size_t pos = 0;
    for (;;) {
        const char *m = r->inside ? r->close : r->open;
        size_t ml = strlen(m);
        const char *s = r->held.data + pos;
        size_t n = r->held.len - pos;
        if (r->closed) {   // single block, closed: the rest is answer as it comes
            out(r, s, n);
            pos += n;
            break;
        }
        const char *hit = n ? memmem(s, n, m, ml) : NULL;
        if (hit) {
            out(r, s, (size_t)(hit - s));
            pos += (size_t)(hit - s) + ml;
            r->inside = !r->inside;
            r->closed = r->single && !r->inside;
            r->seg_start = true;
            continue;
        }
        size_t keep = 0;
        if (!final)
            for (size_t k = ml - 1; k > 0; k--)
                if (k <= n && !memcmp(s + n - k, m, k)) { keep = k; break; }
        out(r, s, n - keep);
        pos += n - keep;
        break;
    }
    memmove(r->held.data, r->held.data + pos, r->held.len - pos);
    r->held.len -= pos;
    r->held.data[r->held.len] = 0;
}

void reasoning_feed(struct reasoning *r, const char *text, size_t len)
{
    if (!len) return;
    strbuf_append(&r->held, text, len);
    run(r, false);
}

void reasoning_finish(struct reasoning *r)
{
    if (r->held.data) run(r, true);
}

bool reasoning_inside(const struct reasoning *r) { return r->inside; }

void reasoning_single_block(struct reasoning *r) { r->single = true; }

void reasoning_free(struct reasoning *r)
{
    if (!r) return;
    free(r->open);
    free(r->close);
    strbuf_free(&r->held);
    free(r);
}

bool reasoning_prompt_open(const char *prompt, const char *open, const char *close)
{
    const char *lo = NULL, *lc = NULL;
    for (const char *p = prompt; (p = strstr(p, open)); p++) lo = p;
    if (!lo) return false;
    for (const char *p = prompt; (p = strstr(p, close)); p++) lc = p;
    return !lc || lc < lo;
}
