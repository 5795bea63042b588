/* The output pipeline in isolation (text/output.h): tokens through a test detokenizer, stop
 * strings, think blocks and tool calls, as the API writers see them (drained events and blocks).
 * Every case runs under many random token splits (pieces that cut UTF-8 characters and markers
 * anywhere): the merged events must not depend on the split, and must equal the expected ones. */
#include "harness.h"

#include "base/mem.h"
#include "base/rng.h"
#include "text/output.h"

/* ==== A detokenizer over one text cut into pieces: token i is piece i ==== */

struct pieces {
    char  **piece;
    int     n;
};

struct test_detok {
    const struct pieces *p;
    struct strbuf        held;   // bytes of an incomplete UTF-8 character
};

static size_t utf8_len(unsigned char c) { return c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1; }

static char *td_push(void *self, int32_t id)
{
    struct test_detok *d = self;
    strbuf_puts(&d->held, d->p->piece[id]);
    size_t ok = 0;   // the longest prefix of whole characters
    while (ok < d->held.len && ok + utf8_len((unsigned char)d->held.data[ok]) <= d->held.len)
        ok += utf8_len((unsigned char)d->held.data[ok]);
    char *out = xstrndup(d->held.data, ok);
    memmove(d->held.data, d->held.data + ok, d->held.len - ok);
    d->held.len -= ok;
    d->held.data[d->held.len] = 0;
    return out;
}

static char *td_flush(void *self)
{
    struct test_detok *d = self;
    char *out = xstrndup(d->held.data ? d->held.data : "", d->held.len);
    strbuf_clear(&d->held);
    return out;
}

static void td_free(void *self)
{
    struct test_detok *d = self;
    strbuf_free(&d->held);
    free(d);
}

/* Cuts text into pieces of 1..max_len bytes (max_len 0: one piece). */
static struct pieces cut(const char *text, int max_len, struct rng *rg)
{
    struct pieces p = { xcalloc(strlen(text) + 1, sizeof(char *)), 0 };
    size_t len = strlen(text), i = 0;
    while (i < len) {
        size_t k = max_len ? 1 + rng_next(rg) % (uint64_t)max_len : len;
        if (k > len - i) k = len - i;
        p.piece[p.n++] = xstrndup(text + i, k);
        i += k;
    }
    return p;
}

static void pieces_free(struct pieces *p)
{
    for (int i = 0; i < p->n; i++) free(p->piece[i]);
    free(p->piece);
}

/* ==== Running a case ==== */

struct result {
    struct strbuf events;      // drained events, adjacent same-kind text merged: "C[..]R[..]S0:f A0[..] E0 "
    struct strbuf blocks;      // output_blocks: "C[..]" "R[..]" "T0:f(args)"
    int           n_stop_signals;
    int           stop_token;  // the token whose push returned true, -1 if none
    const char   *stop;        // output_stop_string, copied below
    char          stop_copy[32];
    int           n_calls;
    int           n_reasoning_tokens;
    int           last_kind;
};

static void record(struct result *r, const struct output_ev *evs, int n)
{
    static const char tag[] = { 'R', 'C' };
    for (int i = 0; i < n; i++) {
        const struct output_ev *e = &evs[i];
        bool text = e->kind == OUTPUT_REASONING || e->kind == OUTPUT_CONTENT || e->kind == OUTPUT_TOOL_ARGS;
        if (text && (int)e->kind == r->last_kind && r->events.len) r->events.data[--r->events.len] = 0;
        else if (e->kind == OUTPUT_REASONING || e->kind == OUTPUT_CONTENT) strbuf_printf(&r->events, "%c[", tag[e->kind]);
        else if (e->kind == OUTPUT_TOOL_ARGS) strbuf_printf(&r->events, "A%d[", e->tool_index);
        if (text) {
            strbuf_append(&r->events, e->text.data, e->text.len);
            strbuf_puts(&r->events, "]");
        } else if (e->kind == OUTPUT_TOOL_START) {
            strbuf_printf(&r->events, "S%d:%s ", e->tool_index, e->name);
            EXPECTF(!strncmp(e->id, "call_", 5) && strlen(e->id) == 29, "id %s", e->id);
        } else if (e->kind == OUTPUT_TOOL_CUT) {
            strbuf_printf(&r->events, " X%d[", e->tool_index);
            strbuf_append(&r->events, e->text.data, e->text.len);
            strbuf_puts(&r->events, "] ");
        } else strbuf_printf(&r->events, " E%d ", e->tool_index);
        r->last_kind = (int)e->kind;
    }
}

struct tcase {
    const char *text;
    const char *stops[2];
    bool        reasoning, start_in_think;
    enum tool_family family;
    const char *want_events;
    const char *want_blocks;
    const char *want_stop;     // NULL: no stop string matches
};

static void run_case(const struct tcase *tc, const struct output_format *fmt, int max_piece, struct rng *rg,
                     struct result *r)
{
    memset(r, 0, sizeof *r);
    r->last_kind = -1;
    r->stop_token = -1;
    struct pieces p = cut(tc->text, max_piece, rg);
    struct test_detok *d = xcalloc(1, sizeof *d);
    d->p = &p;
    int n_stops = tc->stops[0] ? (tc->stops[1] ? 2 : 1) : 0;
    struct output_cfg cfg = {
        .detok = { d, td_push, td_flush, td_free }, .fmt = fmt, .reasoning = tc->reasoning,
        .start_in_think = tc->start_in_think, .tool_family = tc->family, .stops = tc->stops, .n_stops = n_stops,
        .id_seed = rng_next(rg),
    };
    struct output *o = output_new(&cfg);
    for (int i = 0; i < p.n; i++) {
        if (output_in_reasoning(o) && r->stop_token < 0) r->n_reasoning_tokens++;
        if (output_push_token(o, i)) {
            r->n_stop_signals++;
            r->stop_token = i;
        }
        int n;
        const struct output_ev *evs = output_drain(o, &n);
        record(r, evs, n);
        output_drain(o, &n);
        EXPECT(n == 0);   // drained once
    }
    output_finish(o);
    int n;
    const struct output_ev *evs = output_drain(o, &n);
    record(r, evs, n);
    const struct output_ev *bl = output_blocks(o, &n);
    for (int i = 0; i < n; i++) {
        if (bl[i].kind == OUTPUT_TOOL_START)
            strbuf_printf(&r->blocks, "T%d:%s(%s)", bl[i].tool_index, bl[i].name, bl[i].text.data ? bl[i].text.data : "");
        else strbuf_printf(&r->blocks, "%c[%s]", bl[i].kind == OUTPUT_REASONING ? 'R' : 'C', bl[i].text.data ? bl[i].text.data : "");
    }
    const char *s = output_stop_string(o);
    if (s) snprintf(r->stop_copy, sizeof r->stop_copy, "%s", s);
    r->stop = s ? r->stop_copy : NULL;
    r->n_calls = output_n_tool_calls(o);
    output_free(o);
    pieces_free(&p);
    if (!r->events.data) strbuf_puts(&r->events, "");
    if (!r->blocks.data) strbuf_puts(&r->blocks, "");
}

static void result_free(struct result *r)
{
    strbuf_free(&r->events);
    strbuf_free(&r->blocks);
}

static const struct tcase cases[] = {
    // plain text, a stop string cut anywhere: nothing from the match on, the signal exactly once
    { "Hello wor" "ld! STOP and more", { "STOP", NULL }, false, false, TOOL_FAMILY_NONE,
      "C[Hello world! ]", "C[Hello world! ]", "STOP" },
    // a stop prefix that never completes is released at the end
    { "almost ST", { "STOP", NULL }, false, false, TOOL_FAMILY_NONE, "C[almost ST]", "C[almost ST]", NULL },
    // multi-byte stop string across token pieces; the earliest of two stops wins
    { "caf\xC3\xA9" "a and \n\n", { "\n\n", "\xC3\xA9" "a" }, false, false, TOOL_FAMILY_NONE, "C[caf]", "C[caf]",
      "\xC3\xA9" "a" },
    // think block, whitespace after the markers dropped
    { "<think>\nLet me see.\n</think>\n\nIt is 4.", { NULL, NULL }, true, false, TOOL_FAMILY_NONE,
      "R[Let me see.\n]C[It is 4.]", "R[Let me see.\n]C[It is 4.]", NULL },
    // the prompt opened the think block
    { "deep thought</think>Yes", { NULL, NULL }, true, true, TOOL_FAMILY_NONE, "R[deep thought]C[Yes]",
      "R[deep thought]C[Yes]", NULL },
    // reasoning off: the markers are plain text
    { "<think>x</think>y", { NULL, NULL }, false, false, TOOL_FAMILY_NONE, "C[<think>x</think>y]",
      "C[<think>x</think>y]", NULL },
    // Hermes tool calls after text (text between calls stays text); the arguments stream, the
    // blocks hold them whole
    { "Checking.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n"
      "<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>", { NULL, NULL }, true, false, TOOL_FAMILY_HERMES,
      // the newline between the calls is the format's: it never becomes content (issue 18)
      "C[Checking.\n]S0:get_weather A0[{\"city\": \"Paris\"}] E0 S1:now A1[{}] E1 ",
      "C[Checking.\n]T0:get_weather({\"city\": \"Paris\"})T1:now({})", NULL },
    // a call cut before its end (the output ended inside it): the stream says so (X), the blocks
    // hold its markup as text, and it is not counted as a call (issue 20)
    { "Sure.\n<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par",
      { NULL, NULL }, true, false, TOOL_FAMILY_HERMES,
      "C[Sure.\n]S0:now A0[{}] E0 S1:get_weather A1[{\"city\": \"Par] X1[<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par] ",
      "C[Sure.\n]T0:now({})C[<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Par]", NULL },
    // text after a call keeps the whitespace before it; whitespace before the next call or the end is dropped
    { "<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>\nDone.\n<tool_call>\n{\"name\": \"now\", \"arguments\": {}}\n</tool_call>\n\n",
      { NULL, NULL }, true, false, TOOL_FAMILY_HERMES,
      "S0:now A0[{}] E0 C[\nDone.]S1:now A1[{}] E1 ", "T0:now({})C[\nDone.]T1:now({})", NULL },
    // a call inside the think block is still a call
    { "<think>I need it. <tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}}</tool_call></think>Calling.",
      { NULL, NULL }, true, false, TOOL_FAMILY_HERMES,
      "R[I need it. ]S0:f A0[{\"a\": 1}] E0 C[Calling.]", "R[I need it. ]T0:f({\"a\": 1})C[Calling.]", NULL },
    // a stop string ends the text before a call starts
    { "Sure. END <tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>", { "END", NULL }, false, false,
      TOOL_FAMILY_HERMES, "C[Sure. ]", "C[Sure. ]", "END" },
};

TEST(pipeline_cases)
{
    struct output_format fmt;
    output_format_detect("{{ '<think>' }}{{ '</think>' }}<tool_call>", NULL, NULL, &fmt);
    ASSERT(fmt.thinks && fmt.tool_family == TOOL_FAMILY_HERMES);
    struct rng rg;
    rng_seed(&rg, 11);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const struct tcase *tc = &cases[c];
        for (int t = 0; t < 120; t++) {
            int max_piece = t == 0 ? 0 : 1 + t % 7;   // whole, then pieces of 1..7 bytes
            struct result r;
            run_case(tc, &fmt, max_piece, &rg, &r);
            EXPECTF(!strcmp(r.events.data, tc->want_events), "case %zu split %d: events <%s>", c, max_piece, r.events.data);
            EXPECTF(!strcmp(r.blocks.data, tc->want_blocks), "case %zu split %d: blocks <%s>", c, max_piece, r.blocks.data);
            EXPECTF(tc->want_stop ? r.stop && !strcmp(r.stop, tc->want_stop) : !r.stop, "case %zu: stop %s", c,
                    r.stop ? r.stop : "(none)");
            EXPECT(r.n_stop_signals == (tc->want_stop ? 1 : 0));
            int want_calls = 0;
            for (const char *s = tc->want_blocks; (s = strchr(s, 'T')) && s[1] >= '0' && s[1] <= '9'; s++) want_calls++;
            EXPECTF(r.n_calls == want_calls, "case %zu: %d calls", c, r.n_calls);
            result_free(&r);
        }
    }
}

TEST(reasoning_tokens_and_ignored_tail)
{
    struct output_format fmt;
    output_format_detect("</think>", NULL, NULL, &fmt);
    struct rng rg;
    rng_seed(&rg, 2);
    // one-byte tokens: a token counts as reasoning when the block is open before it; "<think>" opens
    // at its 7th byte, then a, b and the 8 bytes of "</think>" (closed only by its last) count: 10
    struct tcase tc = { "<think>ab</think>cd", { NULL, NULL }, true, false, TOOL_FAMILY_NONE, "", "", NULL };
    struct result r;
    run_case(&tc, &fmt, 1, &rg, &r);
    EXPECTF(r.n_reasoning_tokens == 10, "%d", r.n_reasoning_tokens);
    result_free(&r);
    // after the stop signal, further tokens change nothing
    struct tcase ts = { "xSTOPyyyy", { "STOP", NULL }, false, false, TOOL_FAMILY_NONE, "", "", NULL };
    run_case(&ts, &fmt, 1, &rg, &r);
    EXPECT(r.stop_token == 4 && r.n_stop_signals == 1 && !strcmp(r.events.data, "C[x]"));
    result_free(&r);
}

int main(void)
{
    RUN(pipeline_cases);
    RUN(reasoning_tokens_and_ignored_tail);
    return test_summary();
}
