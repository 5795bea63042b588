/* SSE parser against tricky framing: splits at every byte, CRLF split across chunks, bare CR,
 * comments, multi-line data, event names, missing trailing newline, over-long lines. */
#include "harness.h"

#include "bench/sse.h"

struct got {
    char events[16][128];
    char names[16][32];
    int  n;
};

static enum status collect(void *ctx, const char *event, const char *data, size_t len)
{
    struct got *g = ctx;
    if (g->n < 16) {
        snprintf(g->events[g->n], sizeof g->events[0], "%.*s", (int)len, data);
        snprintf(g->names[g->n], sizeof g->names[0], "%s", event);
    }
    g->n++;
    return STATUS_OK;
}

/* The events dispatched are exactly want[] (NULL-terminated), in order. */
#define EVENTS(...) ((const char *const[]){ __VA_ARGS__, NULL })
static void expect_events(const struct got *g, const char *const *want)
{
    int n = 0;
    while (want[n]) n++;
    ASSERT(g->n == n);
    for (int i = 0; i < n; i++) EXPECTF(!strcmp(g->events[i], want[i]), "event %d: '%s', want '%s'", i, g->events[i], want[i]);
}

// Feeds s in pieces of `step` bytes (0: all at once), then finishes.
static void parse(const char *s, size_t step, struct got *g, bool finish)
{
    struct sse_parser p;
    memset(g, 0, sizeof *g);
    sse_init(&p, collect, g);
    size_t n = strlen(s);
    if (step == 0) step = n ? n : 1;
    for (size_t i = 0; i < n; i += step) sse_feed(&p, s + i, i + step <= n ? step : n - i);
    if (finish) sse_finish(&p);
    sse_deinit(&p);
}

TEST(basic_events_lf)
{
    struct got g;
    parse("data: {\"a\":1}\n\ndata: [DONE]\n\n", 0, &g, false);
    expect_events(&g, EVENTS("{\"a\":1}", "[DONE]"));
    EXPECT(!strcmp(g.names[0], "message"));
}

TEST(every_split_point_gives_the_same_events)
{
    const char *s = ": comment\r\ndata: one\r\n\r\nevent: delta\ndata:two\ndata:  three\n\n: ping\n\ndata: four\r\rdata: five\r\n\r\n";
    for (size_t step = 1; step <= strlen(s); step++) {
        struct got g;
        parse(s, step, &g, false);
        EXPECTF(g.n == 4, "step %zu: %d events", step, g.n);
        if (g.n != 4) continue;
        EXPECT(!strcmp(g.events[0], "one"));
        EXPECT(!strcmp(g.events[1], "two\n three"));   // only one leading space is dropped
        EXPECT(!strcmp(g.names[1], "delta"));
        EXPECT(!strcmp(g.names[2], "message"));        // the event name does not stick
        EXPECT(!strcmp(g.events[2], "four"));
        EXPECT(!strcmp(g.events[3], "five"));
    }
}

TEST(crlf_split_across_chunks_is_one_terminator)
{
    struct sse_parser p;
    struct got g = {0};
    sse_init(&p, collect, &g);
    sse_feed(&p, "data: a\r", 8);
    sse_feed(&p, "\n", 1);   // belongs to the CR: not a blank line
    EXPECT(g.n == 0);
    sse_feed(&p, "\r", 1);
    sse_feed(&p, "\ndata: b\n\n", 10);
    expect_events(&g, EVENTS("a", "b"));
    sse_deinit(&p);
}

TEST(no_trailing_newline_is_dispatched_at_finish)
{
    struct got g;
    parse("data: x\n\ndata: [DONE]", 3, &g, false);
    EXPECT(g.n == 1);
    parse("data: x\n\ndata: [DONE]", 3, &g, true);
    ASSERT(g.n == 2);
    EXPECT(!strcmp(g.events[1], "[DONE]"));
}

TEST(comments_and_empty_events_dispatch_nothing)
{
    struct got g;
    parse(": hello\n\n\n\nevent: x\n\nid: 5\nretry: 10\n\n", 1, &g, true);
    EXPECT(g.n == 0);
}

TEST(field_without_colon_and_empty_data)
{
    struct got g;
    parse("data\n\ndata:\ndata:\n\n", 2, &g, true);
    expect_events(&g, EVENTS("", "\n"));
}

static enum status stop_second(void *ctx, const char *event, const char *data, size_t len)
{
    int *n = ctx;
    return ++*n == 2 ? STATUS_EFORMAT : STATUS_OK;
}

TEST(callback_error_stops_the_parser)
{
    struct sse_parser p;
    int n = 0;
    sse_init(&p, stop_second, &n);
    const char *s = "data: 1\n\ndata: 2\n\ndata: 3\n\n";
    EXPECT(sse_feed(&p, s, strlen(s)) == STATUS_EFORMAT);
    EXPECT(n == 2);
    EXPECT(sse_feed(&p, s, strlen(s)) == STATUS_OK);   // ignored after the stop
    EXPECT(n == 2);
    sse_deinit(&p);
}

TEST(overlong_line_is_refused)
{
    struct sse_parser p;
    struct got g = {0};
    sse_init(&p, collect, &g);
    p.max_bytes = 64;
    char buf[100];
    memset(buf, 'a', sizeof buf);
    memcpy(buf, "data: ", 6);
    EXPECT(sse_feed(&p, buf, 50) == STATUS_OK);
    EXPECT(sse_feed(&p, buf, 50) == STATUS_ETOOLONG);
    sse_deinit(&p);
}

// Property test: random streams over an alphabet of framing pieces give the same events
// whether fed at once or in random chunks (chunk boundaries must never matter), and the parser
// survives arbitrary bytes.
static enum status collect_all(void *ctx, const char *event, const char *data, size_t len)
{
    struct strbuf *sb = ctx;
    strbuf_printf(sb, "<%s|", event);
    strbuf_append(sb, data, len);
    strbuf_putc(sb, '>');
    return STATUS_OK;
}

TEST(random_streams_are_chunking_invariant)
{
    static const char *const pieces[] = { "data:", "data: ", "event: e", ":c", "x", "yz", "\r", "\n", "\r\n",
                                          " ", ":", "\n\n", "id: 1", "\xff\x00" };
    uint64_t seed = 12345;
    int mismatches = 0;
    for (int iter = 0; iter < 2000; iter++) {
        char buf[512];
        size_t n = 0;
        while (n < 400) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            const char *pc = pieces[(seed >> 33) % (sizeof pieces / sizeof pieces[0])];
            size_t l = strcmp(pc, "\xff\x00") ? strlen(pc) : 2;
            memcpy(buf + n, pc, l);
            n += l;
        }
        struct strbuf whole = {0}, chunked = {0};
        struct sse_parser p;
        sse_init(&p, collect_all, &whole);
        sse_feed(&p, buf, n);
        sse_finish(&p);
        sse_deinit(&p);
        sse_init(&p, collect_all, &chunked);
        for (size_t i = 0; i < n;) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t step = 1 + (seed >> 40) % 17;
            if (i + step > n) step = n - i;
            sse_feed(&p, buf + i, step);
            i += step;
        }
        sse_finish(&p);
        sse_deinit(&p);
        if ((whole.len != chunked.len || memcmp(whole.data ? whole.data : "", chunked.data ? chunked.data : "",
                                                whole.len)) && mismatches++ < 3)
            fprintf(stderr, "  iteration %d: chunked parse differs\n", iter);
        strbuf_free(&whole);
        strbuf_free(&chunked);
    }
    EXPECTF(mismatches == 0, "%d of 2000 random streams parsed differently in chunks", mismatches);
}

int main(void)
{
    RUN(basic_events_lf);
    RUN(every_split_point_gives_the_same_events);
    RUN(crlf_split_across_chunks_is_one_terminator);
    RUN(no_trailing_newline_is_dispatched_at_finish);
    RUN(comments_and_empty_events_dispatch_nothing);
    RUN(field_without_colon_and_empty_data);
    RUN(callback_error_stops_the_parser);
    RUN(overlong_line_is_refused);
    RUN(random_streams_are_chunking_invariant);
    return test_summary();
}
