/* fuzz_toolparse: libFuzzer target for the server's output parsers (tool calls of every family,
 * <think> splitting, stop strings) and the JSON writer.
 * Input: byte 0 picks the family, byte 1 seeds the chunking, the rest is model output text.
 * Invariants: never crash; fed whole or in chunks the merged events are identical; calls are
 * balanced (START ... END, ARGS only inside a call); the JSON writer's output always parses.
 *     make fuzz && build-fuzz/fuzz_toolparse -max_total_time=300 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "base/log.h"
#include "base/mem.h"
#include "server/jsonw.h"
#include "text/reasoning.h"
#include "text/stopstr.h"
#include "text/toolparse.h"

#include "fuzz_quiet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct rec { struct strbuf out; int last_kind, last_index, open; };

static void on_ev(void *ctx, const struct tp_event *ev)
{
    struct rec *r = ctx;
    bool merge = (int)ev->kind == r->last_kind && (ev->kind == TP_TEXT || (ev->kind == TP_CALL_ARGS && ev->index == r->last_index));
    if (!merge) strbuf_printf(&r->out, "|%d:%d:%s:", ev->kind, ev->index, ev->kind == TP_CALL_START ? ev->name : "");
    if (ev->kind == TP_TEXT || ev->kind == TP_CALL_ARGS) strbuf_append(&r->out, ev->text, ev->len);
    if (ev->kind == TP_CALL_START) { CHECK(r->open < 0, "call %d started inside call %d", ev->index, r->open); r->open = ev->index; }
    if (ev->kind == TP_CALL_ARGS) CHECK(r->open == ev->index, "args of %d outside its call (%d)", ev->index, r->open);
    if (ev->kind == TP_CALL_CUT) { CHECK(r->open == ev->index, "cut of %d, open %d", ev->index, r->open); r->open = -1; }
    if (ev->kind == TP_CALL_END) { CHECK(r->open == ev->index, "end of %d, open %d", ev->index, r->open); r->open = -1; }
    r->last_kind = ev->kind;
    r->last_index = ev->index;
}

static char *run(enum tool_family f, const char *text, size_t len, unsigned seed)
{
    struct rec r = { .last_kind = -1, .open = -1 };
    int n_calls = 0;
    json_t *tools = json_loads("[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"properties\":{\"s\":{\"type\":\"string\"}}}}}]", 0, NULL);
    struct toolparse *tp = toolparse_new(f, tools, &n_calls, on_ev, &r);
    size_t i = 0;
    while (i < len) {
        size_t k = seed ? 1 + (seed = seed * 1103515245u + 12345u) % 9 : len;
        if (k > len - i) k = len - i;
        toolparse_feed(tp, text + i, k);
        i += k;
    }
    toolparse_finish(tp);
    CHECK(r.open < 0, "call %d left open", r.open);
    toolparse_free(tp);
    json_decref(tools);
    strbuf_puts(&r.out, "");
    return strbuf_take(&r.out);
}

static void on_r(void *ctx, bool is_r, const char *t, size_t n) { strbuf_append(ctx, is_r ? "R" : "C", 1); strbuf_append(ctx, t, n); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    enum tool_family f = (enum tool_family)(data[0] % TOOL_FAMILY_COUNT);
    unsigned seed = data[1] | 1u;
    const char *text = (const char *)data + 2;
    size_t len = size - 2;
    char *whole = run(f, text, len, 0);
    char *chunked = run(f, text, len, seed);
    CHECK(!strcmp(whole, chunked), "chunking changed the events");
    free(whole);
    free(chunked);
    // reasoning: the concatenated output never loses non-marker text beyond dropped whitespace
    struct strbuf a = {0};
    struct reasoning *rs = reasoning_new("<think>", "</think>", data[1] & 1, on_r, &a);
    for (size_t i = 0; i < len; i += 3) reasoning_feed(rs, text + i, len - i < 3 ? len - i : 3);
    reasoning_finish(rs);
    CHECK(a.len <= 2 * len + 1, "reasoning grew the text");
    reasoning_free(rs);
    strbuf_free(&a);
    // stop strings: output is a prefix of the input
    const char *stops[] = { "</s>", "\n\n" };
    struct stopstr ss;
    stopstr_init(&ss, stops, 2);
    struct strbuf o = {0};
    for (size_t i = 0; i < len; i += 2) stopstr_feed(&ss, text + i, len - i < 2 ? len - i : 2, &o);
    stopstr_flush(&ss, &o);
    CHECK(o.len <= len && (!o.len || !memcmp(o.data, text, o.len)), "stop strings changed the text");
    stopstr_deinit(&ss);
    strbuf_free(&o);
    // JSON writer: always valid JSON
    struct strbuf j = {0};
    jsonw_str(&j, text, len);
    json_t *v = json_loadb(j.data, j.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    CHECK(json_is_string(v), "jsonw output does not parse");
    json_decref(v);
    strbuf_free(&j);
    return 0;
}
