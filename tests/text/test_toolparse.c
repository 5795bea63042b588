/* Tool-call, reasoning and stop-string parsers: every family, fed whole and in random chunkings
 * (all chunkings must give the same merged events). */
#include "harness.h"

#include "base/mem.h"
#include "base/rng.h"
#include "text/chat.h"
#include "text/output.h"
#include "text/reasoning.h"
#include "text/stopstr.h"
#include "text/toolparse.h"

/* The length of the next chunk of text when rest bytes are left: 1 to max drawn from rg, or all
 * of them when rg is NULL; 0 (drawing nothing) at the end. */
static size_t chunk_len(size_t rest, struct rng *rg, int max)
{
    if (!rest) return 0;
    size_t k = rg ? 1 + rng_next(rg) % (uint64_t)max : rest;
    return k < rest ? k : rest;
}

/* What a recorder wrote (heap; "" when it wrote nothing). */
static char *take_text(struct strbuf *sb)
{
    if (!sb->data) strbuf_puts(sb, "");
    return strbuf_take(sb);
}

struct rec { struct strbuf out; int last_kind; int last_index; };

static void on_ev(void *ctx, const struct tp_event *ev)
{
    struct rec *r = ctx;
    bool merge = (int)ev->kind == r->last_kind && (ev->kind == TP_TEXT || (ev->kind == TP_CALL_ARGS && ev->index == r->last_index));
    if (merge && r->out.len) r->out.len--, r->out.data[r->out.len] = 0;   // drop the closing ']'
    switch (ev->kind) {
    case TP_TEXT:       if (!merge) strbuf_puts(&r->out, "T["); strbuf_append(&r->out, ev->text, ev->len); strbuf_puts(&r->out, "]"); break;
    case TP_CALL_START: strbuf_printf(&r->out, "S%d:%s ", ev->index, ev->name); break;
    case TP_CALL_ARGS:  if (!merge) strbuf_printf(&r->out, "A%d[", ev->index); strbuf_append(&r->out, ev->text, ev->len); strbuf_puts(&r->out, "]"); break;
    case TP_CALL_END:   strbuf_printf(&r->out, " E%d ", ev->index); break;
    case TP_CALL_CUT:   strbuf_printf(&r->out, " C%d[", ev->index); strbuf_append(&r->out, ev->text, ev->len); strbuf_puts(&r->out, "] "); break;
    }
    r->last_kind = ev->kind;
    r->last_index = ev->index;
}

static char *parse_chunked(enum tool_family f, const json_t *tools, const char *text, struct rng *rg)
{
    struct rec r = { .last_kind = -1 };
    int n_calls = 0;
    struct toolparse *tp = toolparse_new(f, tools, &n_calls, on_ev, &r);
    for (size_t i = 0, len = strlen(text), k; (k = chunk_len(len - i, rg, 7)); i += k) toolparse_feed(tp, text + i, k);
    toolparse_finish(tp);
    toolparse_free(tp);
    return take_text(&r.out);
}

static void check_family(enum tool_family f, const char *text, const char *want, const json_t *tools)
{
    char *whole = parse_chunked(f, tools, text, NULL);
    EXPECTF(!strcmp(whole, want), "%s: got <%s> want <%s>", tool_family_name(f), whole, want);
    struct rng rg;
    rng_seed(&rg, 7);
    int bad = 0;
    for (int t = 0; t < 200 && !bad; t++) {
        char *c = parse_chunked(f, tools, text, &rg);
        if (strcmp(c, whole)) { bad = 1; fprintf(stderr, "  chunked <%s>\n  whole   <%s>\n", c, whole); }
        free(c);
    }
    EXPECT(!bad);
    free(whole);
}

TEST(hermes)
{
    check_family(TOOL_FAMILY_HERMES, "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"n\": [1, {\"x\": \"}\"}]}}\n</tool_call>",
                 "T[Let me check.\n]S0:get_weather A0[{\"city\": \"Paris\", \"n\": [1, {\"x\": \"}\"}]}] E0 ", NULL);
    // parallel calls, args before name, string arguments
    check_family(TOOL_FAMILY_HERMES, "<tool_call>{\"arguments\": {\"a\": 1}, \"name\": \"f\"}</tool_call>\n<tool_call>{\"name\": \"g\", \"arguments\": \"{\\\"b\\\": 2}\"}</tool_call>",
                 "S0:f A0[{\"a\": 1}] E0 T[\n]S1:g A1[{\"b\": 2}] E1 ", NULL);
    // malformed: not JSON -> text, and text after it survives
    check_family(TOOL_FAMILY_HERMES, "a <tool_call>oops</tool_call> b <tool_ca",
                 "T[a <tool_call>oops</tool_call> b <tool_ca]", NULL);
    // unterminated call at the end (max_tokens, shutdown): cut, its markup given back, never ended as a call
    check_family(TOOL_FAMILY_HERMES, "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": ",
                 "S0:f A0[{\"a\": ] C0[<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": ] ", NULL);
    // the cut one after a complete call: only its own markup comes back
    check_family(TOOL_FAMILY_HERMES, "<tool_call>{\"name\": \"f\"}</tool_call>\n<tool_call>{\"name\": \"g\", \"arguments\": {",
                 "S0:f A0[{}] E0 T[\n]S1:g A1[{] C1[<tool_call>{\"name\": \"g\", \"arguments\": {] ", NULL);
    // no arguments
    check_family(TOOL_FAMILY_HERMES, "<tool_call>{\"name\": \"f\"}</tool_call>done", "S0:f A0[{}] E0 T[done]", NULL);
    // hermes parser also takes XML bodies
    check_family(TOOL_FAMILY_HERMES, "<tool_call><function=f><parameter=x>1</parameter></function></tool_call>",
                 "S0:f A0[{\"x\": 1}] E0 ", NULL);
}

TEST(qwen3_coder)
{
    json_t *tools = json_loads("[{\"type\":\"function\",\"function\":{\"name\":\"write\",\"parameters\":{\"type\":\"object\","
                               "\"properties\":{\"path\":{\"type\":\"string\"},\"n\":{\"type\":\"string\"},\"lines\":{\"type\":\"integer\"}}}}}]", 0, NULL);
    ASSERT(tools);
    check_family(TOOL_FAMILY_QWEN3_CODER,
                 "ok\n<tool_call>\n<function=write>\n<parameter=path>\n/tmp/a \"b\".txt\n</parameter>\n<parameter=n>\n42\n</parameter>\n"
                 "<parameter=lines>\n7\n</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=ls>\n</function>\n</tool_call>",
                 "T[ok\n]S0:write A0[{\"path\": \"/tmp/a \\\"b\\\".txt\", \"n\": \"42\", \"lines\": 7}] E0 T[\n]S1:ls A1[{}] E1 ", tools);
    // string values stream while generated (file contents), newlines and quotes escaped; a call
    // unterminated at the end is cut
    check_family(TOOL_FAMILY_QWEN3_CODER, "<tool_call><function=write><parameter=path>\nline1\n\"q\" </par\n\nend\n</parameter></function></tool_call>",
                 "S0:write A0[{\"path\": \"line1\\n\\\"q\\\" </par\\n\\nend\"}] E0 ", tools);
    check_family(TOOL_FAMILY_QWEN3_CODER, "<tool_call><function=write><parameter=path>\nabc",
                 "S0:write A0[{\"path\": \"abc] C0[<tool_call><function=write><parameter=path>\nabc] ", tools);
    check_family(TOOL_FAMILY_QWEN3_CODER, "<tool_call>\n<function=f>\n<parameter=x>\n{\"a\": [1]}\n</parameter>\n</function>\n</tool_call>",
                 "S0:f A0[{\"x\": {\"a\":[1]}}] E0 ", NULL);
    // missing </parameter> (seen from Qwen3.6): value ends at </function>
    check_family(TOOL_FAMILY_QWEN3_CODER, "<tool_call><function=f><parameter=x>hi</function></tool_call>",
                 "S0:f A0[{\"x\": \"hi\"}] E0 ", NULL);
    check_family(TOOL_FAMILY_QWEN3_CODER, "<tool_call>nope</tool_call>", "T[<tool_call>nope</tool_call>]", NULL);
    json_decref(tools);
}

TEST(xml_streams_string_values)
{
    json_t *tools = json_loads("[{\"type\":\"function\",\"function\":{\"name\":\"write\",\"parameters\":{\"properties\":{\"body\":{\"type\":\"string\"}}}}}]", 0, NULL);
    struct rec r = { .last_kind = -1 };
    int n = 0;
    struct toolparse *tp = toolparse_new(TOOL_FAMILY_QWEN3_CODER, tools, &n, on_ev, &r);
    const char *part = "<tool_call>\n<function=write>\n<parameter=body>\nhello wor";
    toolparse_feed(tp, part, strlen(part));
    // the value is visible before its parameter closes
    EXPECTF(r.out.data && strstr(r.out.data, "A0[{\"body\": \"hello wor"), "%s", r.out.data ? r.out.data : "");
    toolparse_feed(tp, "ld\n</parameter>\n</function>\n</tool_call>", 40);
    toolparse_finish(tp);
    EXPECTF(!strcmp(r.out.data, "S0:write A0[{\"body\": \"hello world\"}] E0 "), "%s", r.out.data);
    toolparse_free(tp);
    strbuf_free(&r.out);
    json_decref(tools);
}

/* ==== Qwen3.5/3.6 chat template round trip ==== */

struct calls { int n; char name[4][64]; struct strbuf args[4]; };

static void on_call(void *ctx, const struct tp_event *ev)
{
    struct calls *c = ctx;
    if (ev->kind == TP_CALL_START && ev->index < 4) {
        snprintf(c->name[ev->index], sizeof c->name[0], "%s", ev->name);
        c->n = ev->index + 1;
    }
    if (ev->kind == TP_CALL_ARGS && ev->index < 4) strbuf_append(&c->args[ev->index], ev->text, ev->len);
}

/* Parses text (fed in chunks of `chunk` bytes) with the qwen3_coder parser; the calls land in c. */
static void parse_calls(const char *text, size_t len, const json_t *tools, size_t chunk, struct calls *c)
{
    memset(c, 0, sizeof *c);
    int n_calls = 0;
    struct toolparse *tp = toolparse_new(TOOL_FAMILY_QWEN3_CODER, tools, &n_calls, on_call, c);
    for (size_t i = 0; i < len; i += chunk) toolparse_feed(tp, text + i, len - i < chunk ? len - i : chunk);
    toolparse_finish(tp);
    toolparse_free(tp);
}

/* The Qwen3.5/3.6 chat template (tests/text/golden/tpl_qwen3_5.jinja, as shipped with the
 * checkpoints) renders tool calls in the history and shows the format in its system prompt: both,
 * parsed back by the qwen3_coder parser, give the calls that went in (names, and arguments equal
 * as JSON: strings, integers, floats, booleans, nested objects and arrays, multi-line text). */
TEST(qwen35_template_round_trip)
{
    FILE *f = fopen("tests/text/golden/tpl_qwen3_5.jinja", "rb");
    ASSERT(f);
    static char src[32768];
    size_t n_src = fread(src, 1, sizeof src - 1, f);
    fclose(f);
    src[n_src] = 0;
    struct chat_template *ct;
    ASSERT(chat_template_from_source(src, "", "<|im_end|>", &ct) == STATUS_OK);
    json_t *args0 = json_pack("{s:s, s:i, s:b, s:f, s:{s:[i,i]}, s:[s,s], s:s, s:s}", "city", "Paris", "days", 3,
                              "metric", 1, "ratio", 0.5, "opts", "a", 1, 2, "tags", "x", "y", "note",
                              "line1\n  line2 </par\n\nend", "code", "007");
    json_t *args1 = json_pack("{s:b}", "dry_run", 0);
    json_t *tools = json_loads(
        "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\","
        "\"properties\":{\"city\":{\"type\":\"string\"},\"days\":{\"type\":\"integer\"},\"metric\":{\"type\":\"boolean\"},"
        "\"ratio\":{\"type\":\"number\"},\"opts\":{\"type\":\"object\"},\"tags\":{\"type\":\"array\"},"
        "\"note\":{\"type\":\"string\"},\"code\":{\"type\":\"string\"}}}}},"
        "{\"type\":\"function\",\"function\":{\"name\":\"deploy\",\"parameters\":{\"type\":\"object\","
        "\"properties\":{\"dry_run\":{\"type\":\"boolean\"}}}}}]", 0, NULL);
    json_t *msgs = json_pack("[{s:s, s:s}, {s:s, s:s, s:[{s:s, s:{s:s, s:O}}, {s:s, s:{s:s, s:O}}]}, {s:s, s:s}]",
                             "role", "user", "content", "weather in Paris, then deploy",
                             "role", "assistant", "content", "Let me check.", "tool_calls",
                             "type", "function", "function", "name", "get_weather", "arguments", args0,
                             "type", "function", "function", "name", "deploy", "arguments", args1,
                             "role", "tool", "content", "sunny");
    ASSERT(tools && msgs);
    char *text = NULL, *err = NULL;
    ASSERT(chat_render(ct, msgs, tools, NULL, false, &text, &err) == STATUS_OK);
    // the assistant turn as the model would have generated it
    const char *a = strstr(text, "<|im_start|>assistant\n");
    ASSERT(a);
    a += strlen("<|im_start|>assistant\n");
    const char *end = strstr(a, "<|im_end|>");
    ASSERT(end);
    const json_t *want[2] = { args0, args1 };
    const char *want_name[2] = { "get_weather", "deploy" };
    for (size_t chunk = 1; chunk <= 4096; chunk = chunk * 7 + 1) {
        struct calls c;
        parse_calls(a, (size_t)(end - a), tools, chunk, &c);
        EXPECTF(c.n == 2, "chunks of %zu: %d calls", chunk, c.n);
        for (int i = 0; i < c.n && i < 2; i++) {
            json_t *got = json_loads(c.args[i].data ? c.args[i].data : "", 0, NULL);
            EXPECTF(!strcmp(c.name[i], want_name[i]) && got && json_equal(got, want[i]),
                    "chunks of %zu: call %d %s(%s)", chunk, i, c.name[i], c.args[i].data ? c.args[i].data : "");
            json_decref(got);
            strbuf_free(&c.args[i]);
        }
    }
    // the format example of the system prompt
    const char *ex = strstr(text, "<tool_call>\n<function=example_function_name>");
    ASSERT(ex);
    const char *ex_end = strstr(ex, "</tool_call>");
    ASSERT(ex_end);
    struct calls c;
    parse_calls(ex, (size_t)(ex_end + strlen("</tool_call>") - ex), tools, 4096, &c);
    json_t *ex_want = json_pack("{s:s, s:s}", "example_parameter_1", "value_1", "example_parameter_2",
                                "This is the value for the second parameter\nthat can span\nmultiple lines");
    json_t *ex_got = json_loads(c.args[0].data ? c.args[0].data : "", 0, NULL);
    EXPECTF(c.n == 1 && !strcmp(c.name[0], "example_function_name") && ex_got && json_equal(ex_got, ex_want),
            "example: %d calls, %s(%s)", c.n, c.name[0], c.args[0].data ? c.args[0].data : "");
    strbuf_free(&c.args[0]);
    json_decref(ex_got);
    json_decref(ex_want);
    free(text);
    free(err);
    json_decref(msgs);
    json_decref(tools);
    json_decref(args0);
    json_decref(args1);
    chat_template_free(ct);
}

TEST(llama3)
{
    json_t *tools = json_loads("[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{}}}]", 0, NULL);
    check_family(TOOL_FAMILY_LLAMA3, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}",
                 "S0:get_weather A0[{\"city\": \"Oslo\"}] E0 ", tools);
    check_family(TOOL_FAMILY_LLAMA3, "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {}}; {\"name\": \"get_weather\", \"parameters\": {\"c\": 1}}",
                 "S0:get_weather A0[{}] E0 S1:get_weather A1[{\"c\": 1}] E1 ", tools);
    // JSON content that is not a declared tool stays content
    check_family(TOOL_FAMILY_LLAMA3, "{\"name\": \"Bob\", \"age\": 3} is the answer",
                 "T[{\"name\": \"Bob\", \"age\": 3} is the answer]", tools);
    check_family(TOOL_FAMILY_LLAMA3, "Sure: {\"name\": \"get_weather\"}", "T[Sure: {\"name\": \"get_weather\"}]", tools);
    json_decref(tools);
}

TEST(mistral)
{
    check_family(TOOL_FAMILY_MISTRAL, "[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {\"x\": 1}}, {\"name\": \"b\", \"arguments\": {}}]",
                 "S0:a A0[{\"x\": 1}] E0 S1:b A1[{}] E1 ", NULL);
    check_family(TOOL_FAMILY_MISTRAL, "hi [TOOL_CALLS]get_weather[ARGS]{\"city\": \"[x]\"}[TOOL_CALLS]b[ARGS]{}",
                 "T[hi ]S0:get_weather A0[{\"city\": \"[x]\"}] E0 S1:b A1[{}] E1 ", NULL);
}

TEST(deepseek_v3)
{
    const char *t =
        "Calling.<\xEF\xBD\x9Ctool\xE2\x96\x81" "calls\xE2\x96\x81" "begin\xEF\xBD\x9C>"
        "<\xEF\xBD\x9Ctool\xE2\x96\x81" "call\xE2\x96\x81" "begin\xEF\xBD\x9C>function<\xEF\xBD\x9Ctool\xE2\x96\x81" "sep\xEF\xBD\x9C>get_weather\n```json\n{\"city\": \"Rome\"}\n```"
        "<\xEF\xBD\x9Ctool\xE2\x96\x81" "call\xE2\x96\x81" "end\xEF\xBD\x9C>\n"
        "<\xEF\xBD\x9Ctool\xE2\x96\x81" "call\xE2\x96\x81" "begin\xEF\xBD\x9C>function<\xEF\xBD\x9Ctool\xE2\x96\x81" "sep\xEF\xBD\x9C>now\n```json\n{}\n```"
        "<\xEF\xBD\x9Ctool\xE2\x96\x81" "call\xE2\x96\x81" "end\xEF\xBD\x9C>"
        "<\xEF\xBD\x9Ctool\xE2\x96\x81" "calls\xE2\x96\x81" "end\xEF\xBD\x9C>";
    check_family(TOOL_FAMILY_DEEPSEEK_V3, t, "T[Calling.]S0:get_weather A0[{\"city\": \"Rome\"}] E0 S1:now A1[{}] E1 ", NULL);
}

static bool is_mistral_token(void *ctx, const char *s) { return !strcmp(s, "[TOOL_CALLS]"); }

TEST(family_detect)
{
    struct { const char *tpl; enum tool_family want; } cases[] = {
        { "{{ '<tool_call>' }}", TOOL_FAMILY_HERMES },
        { "<tool_call>\n<function=", TOOL_FAMILY_QWEN3_CODER },
        { "[TOOL_CALLS]", TOOL_FAMILY_MISTRAL },
        { "<|python_tag|>", TOOL_FAMILY_LLAMA3 },
        { "{{ messages }}", TOOL_FAMILY_HERMES },   // nothing says: the default
    };
    struct output_format f0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        output_format_detect(cases[i].tpl, NULL, NULL, &f0);
        EXPECTF(f0.tool_family == cases[i].want, "%s: %d", cases[i].tpl, (int)f0.tool_family);
        EXPECT(!f0.thinks);
    }
    // the tokenizer decides where the template is silent
    output_format_detect("{{ messages }}", is_mistral_token, NULL, &f0);
    EXPECT(f0.tool_family == TOOL_FAMILY_MISTRAL);
    output_format_detect("{{ '<tool_call>' }}", is_mistral_token, NULL, &f0);
    EXPECT(f0.tool_family == TOOL_FAMILY_HERMES);
    // think markers: the template renders them
    output_format_detect("{% if t %}<think>{{ t }}</think>{% endif %}", NULL, NULL, &f0);
    EXPECT(f0.thinks && !strcmp(f0.think_open, "<think>") && !strcmp(f0.think_close, "</think>"));
    EXPECT(output_format_prompt_in_think(&f0, "<|im_start|>assistant\n<think>\n"));
    EXPECT(!output_format_prompt_in_think(&f0, "<think>\n\n</think>\n\n"));
    output_format_detect(NULL, NULL, NULL, &f0);
    EXPECT(f0.tool_family == TOOL_FAMILY_NONE && !f0.thinks);
    enum tool_family f;
    EXPECT(tool_family_from_name("qwen3.5", &f) && f == TOOL_FAMILY_QWEN3_CODER);
    EXPECT(!tool_family_from_name("bogus", &f));
}

struct rrec { struct strbuf out; int last; };

static void on_r(void *ctx, bool is_r, const char *t, size_t n)
{
    struct rrec *r = ctx;
    if (r->last == (int)is_r && r->out.len) r->out.data[--r->out.len] = 0;
    else strbuf_puts(&r->out, is_r ? "R[" : "C[");
    strbuf_append(&r->out, t, n);
    strbuf_puts(&r->out, "]");
    r->last = is_r;
}

static char *split(const char *text, bool inside, struct rng *rg)
{
    struct rrec r = { .last = -1 };
    struct reasoning *rs = reasoning_new("<think>", "</think>", inside, on_r, &r);
    for (size_t i = 0, len = strlen(text), k; (k = chunk_len(len - i, rg, 5)); i += k) reasoning_feed(rs, text + i, k);
    reasoning_finish(rs);
    reasoning_free(rs);
    return take_text(&r.out);
}

TEST(reasoning_split)
{
    struct { const char *in; bool inside; const char *want; } cases[] = {
        { "<think>\nhmm <b> </thin\n</think>\n\nAnswer <", false, "R[hmm <b> </thin\n]C[Answer <]" },
        { "deep thought</think>Yes", true, "R[deep thought]C[Yes]" },
        { "no thinking here", false, "C[no thinking here]" },
        { "<think>unfinished", false, "R[unfinished]" },
    };
    struct rng rg;
    rng_seed(&rg, 3);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char *w = split(cases[c].in, cases[c].inside, NULL);
        EXPECTF(!strcmp(w, cases[c].want), "got <%s> want <%s>", w, cases[c].want);
        for (int t = 0; t < 100; t++) {
            char *x = split(cases[c].in, cases[c].inside, &rg);
            EXPECTF(!strcmp(x, w), "chunked <%s>", x);
            free(x);
        }
        free(w);
    }
    EXPECT(reasoning_prompt_open("<|im_start|>assistant\n<think>\n", "<think>", "</think>"));
    EXPECT(!reasoning_prompt_open("<think>\n\n</think>\n\n", "<think>", "</think>"));
    EXPECT(!reasoning_prompt_open("plain", "<think>", "</think>"));
}

TEST(stop_strings)
{
    const char *stops[] = { "STOP", "\n\n", "éa" };
    struct rng rg;
    rng_seed(&rg, 5);
    const char *in[] = { "hello ST world STOP after", "one\ntwo\n\nthree", "caf\xC3\xA9" "a!", "no stop at all ST" };
    const char *want[] = { "hello ST world ", "one\ntwo", "caf", "no stop at all ST" };
    for (int c = 0; c < 4; c++) {
        for (int t = 0; t < 50; t++) {
            struct stopstr ss;
            stopstr_init(&ss, stops, 3);
            struct strbuf out = {0};
            size_t len = strlen(in[c]);
            for (size_t i = 0, k; (k = chunk_len(len - i, &rg, 4)); i += k) stopstr_feed(&ss, in[c] + i, k, &out);
            stopstr_flush(&ss, &out);
            EXPECTF(out.data && !strcmp(out.data, want[c]), "case %d got <%s>", c, out.data ? out.data : "");
            EXPECT(ss.hit == (c < 3));
            strbuf_free(&out);
            stopstr_deinit(&ss);
        }
    }
}

int main(void)
{
    RUN(hermes);
    RUN(qwen3_coder);
    RUN(xml_streams_string_values);
    RUN(qwen35_template_round_trip);
    RUN(llama3);
    RUN(mistral);
    RUN(deepseek_v3);
    RUN(family_detect);
    RUN(reasoning_split);
    RUN(stop_strings);
    return test_summary();
}
