/* stopstr: see stopstr.h. Earliest match wins; held text is the longest suffix that is a proper
 * prefix of some stop string, so any token split gives the same output. */
#include "text/stopstr.h"

#include <stdlib.h>
#include <string.h>


void stopstr_init(struct stopstr *ss, const char *const *stops, int n)
{
    memset(ss, 0, sizeof *ss);
    ss->stops = n ? xcalloc((size_t)n, sizeof *ss->stops) : NULL;
    for (int i = 0; i < n; i++)
        if (stops[i] && stops[i][0]) ss->stops[ss->n++] = xstrdup(stops[i]);
}

void stopstr_feed(struct stopstr *ss, const char *text, size_t len, struct strbuf *out)
{
    if (ss->hit) return;
    if (!ss->n) { strbuf_append(out, text, len); return; }
    strbuf_append(&ss->held, text, len);
    const char *h = ss->held.data;
    size_t n = ss->held.len;
    size_t first = n;
    for (int i = 0; i < ss->n; i++) {
        const char *m = memmem(h, n, ss->stops[i], strlen(ss->stops[i]));
        if (m && (size_t)(m - h) < first) { first = (size_t)(m - h); ss->which = i; }
    }
    if (first < n) {
        strbuf_append(out, h, first);
        ss->hit = true;
        strbuf_clear(&ss->held);
        return;
    }
    size_t keep = 0;
    for (int i = 0; i < ss->n; i++) {
        size_t sl = strlen(ss->stops[i]);
        for (size_t k = sl - 1; k > keep; k--)
            if (k <= n && !memcmp(h + n - k, ss->stops[i], k)) { keep = k; break; }
    }
    // stop strings start with a lead byte, so the cut is on a character boundary
    size_t emit = n - keep;
    strbuf_append(out, h, emit);
    memmove(ss->held.data, h + emit, n - emit);
    ss->held.len = n - emit;
    ss->held.data[ss->held.len] = 0;
}

void stopstr_flush(struct stopstr *ss, struct strbuf *out)
{
    if (!ss->hit && ss->held.len) strbuf_append(out, ss->held.data, ss->held.len);
    strbuf_clear(&ss->held);
}

void stopstr_deinit(struct stopstr *ss)
{
    for (int i = 0; i < ss->n; i++) free(ss->stops[i]);
    free(ss->stops);
    strbuf_free(&ss->held);
    memset(ss, 0, sizeof *ss);
}
