/* Forced and strict tool-call grammars (server/constrain.c) in every family's markup, both
 * spellings of Mistral and DeepSeek: random walks under each grammar (uniform over the allowed
 * tokens of the default tokenizer, so odd values are common) must be read back by the server's own
 * tool parser (text/toolparse.c) as calls of the given tools, with arguments that are JSON objects
 * holding the required keys, and nothing else; the optional (strict, tool_choice auto) grammars
 * must accept plain text and each family's call spelled by hand, and refuse a marker that is not
 * followed by a valid call. Every schema keyword is checked by ajv in tests/server/constrain.test.mjs
 * and tests/text/run_constraint.sh; this test covers the spellings those cannot reach. */
#include "harness.h"

#include <ctype.h>
#include <jansson.h>
#include <string.h>

#include "server/constrain.h"
#include "text/constraint.h"
#include "text/tokenizer.h"
#include "text/toolparse.h"
#include "text/grammar_walk.h"

static struct tokenizer *tk;
static struct constraint_vocab *vocab;
static struct walk_cfg walker = { .stop_one_in = 8 };
static struct grammar_cache *gc;

static const char *tools_json =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\","
    "\"properties\":{\"city\":{\"type\":\"string\",\"maxLength\":12},\"unit\":{\"enum\":[\"c\",\"f\"]}},"
    "\"required\":[\"city\",\"unit\"],\"additionalProperties\":false}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"add\",\"parameters\":{\"type\":\"object\","
    "\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"integer\"},\"note\":{\"type\":\"string\"}},"
    "\"required\":[\"a\",\"b\"],\"additionalProperties\":false}}}]";

struct calls {
    int           n;
    bool          stray;
    char          name[8][64];
    struct strbuf args[8];
};

static void on_event(void *ctx, const struct tp_event *ev)
{
    struct calls *c = ctx;
    if (ev->kind == TP_CALL_START && c->n < 8) snprintf(c->name[c->n++], sizeof c->name[0], "%s", ev->name);
    else if (ev->kind == TP_CALL_ARGS && c->n > 0 && c->n <= 8) strbuf_append(&c->args[c->n - 1], ev->text, ev->len);
    else if (ev->kind == TP_TEXT)
        for (size_t k = 0; k < ev->len; k++) c->stray |= !isspace((unsigned char)ev->text[k]);
}

static void parse(enum tool_family f, json_t *tools, const char *text, size_t len, struct calls *c)
{
    memset(c, 0, sizeof *c);
    int n_calls = 0;
    struct toolparse *tp = toolparse_new(f, tools, &n_calls, on_event, c);
    toolparse_feed(tp, text, len);
    toolparse_finish(tp);
    toolparse_free(tp);
}

static void calls_free(struct calls *c)
{
    for (int k = 0; k < 8; k++) strbuf_free(&c->args[k]);
}

static bool accepts(const struct constraint_grammar *g, const char *s)
{
    struct constraint *c = constraint_new(g, vocab);
    bool ok = constraint_advance_bytes(c, s, strlen(s)) == STATUS_OK && constraint_can_end(c);
    constraint_free(c);
    return ok;
}

static const struct { enum tool_family f; bool name_first; const char *what; } envelopes[] = {
    { TOOL_FAMILY_HERMES, false, "hermes" },        { TOOL_FAMILY_QWEN3_CODER, false, "qwen3_coder" },
    { TOOL_FAMILY_LLAMA3, false, "llama3" },        { TOOL_FAMILY_MISTRAL, false, "mistral [{..}]" },
    { TOOL_FAMILY_MISTRAL, true, "mistral [ARGS]" }, { TOOL_FAMILY_DEEPSEEK_V3, false, "deepseek v3" },
    { TOOL_FAMILY_DEEPSEEK_V3, true, "deepseek v3.1" },
};

TEST(forced_walks_parse_back)
{
    json_t *tools = json_loads(tools_json, 0, NULL);
    ASSERT(tools != NULL);
    for (size_t e = 0; e < sizeof envelopes / sizeof envelopes[0]; e++)
        for (int parallel = 0; parallel < 2; parallel++) {
            struct constraint_grammar *g = NULL;
            struct api_error err;
            bool ok = srv_tool_grammar(gc, envelopes[e].f, envelopes[e].name_first, tools, NULL, parallel, false, &g, &err);
            EXPECTF(ok, "%s: %s", envelopes[e].what, ok ? "" : err.message);
            if (!ok) continue;
            int n_multi = 0;
            for (uint64_t seed = 0; seed < 24; seed++) {
                struct walk_result w;
                grammar_walk(&walker, g, seed * 31 + e, (int)constraint_grammar_min_bytes(g) + 20 + (int)(seed * 13 % 300), &w);
                EXPECTF(w.out != NULL, "%s seed %llu: walk failed: %s", envelopes[e].what, (unsigned long long)seed, w.why);
                if (!w.out) continue;
                char *o = w.out;
                size_t len = w.len;
                struct calls c;
                parse(envelopes[e].f, tools, o, len, &c);
                EXPECTF(c.n >= 1 && !c.stray && (parallel || c.n == 1), "%s parallel %d seed %llu: %d calls, stray %d: '%.400s'",
                        envelopes[e].what, parallel, (unsigned long long)seed, c.n, c.stray, o);
                n_multi += c.n > 1;
                for (int k = 0; k < c.n && k < 8; k++) {
                    json_t *a = json_loadb(c.args[k].data ? c.args[k].data : "", c.args[k].len, 0, NULL);
                    bool weather = !strcmp(c.name[k], "get_weather"), add = !strcmp(c.name[k], "add");
                    bool keys = a && (weather ? json_is_string(json_object_get(a, "city")) && json_is_string(json_object_get(a, "unit"))
                                              : json_is_integer(json_object_get(a, "a")) && json_is_integer(json_object_get(a, "b")));
                    EXPECTF((weather || add) && json_is_object(a) && keys, "%s seed %llu call %d: %s %.300s", envelopes[e].what,
                            (unsigned long long)seed, k, c.name[k], c.args[k].data ? c.args[k].data : "");
                    json_decref(a);
                }
                calls_free(&c);
                free(o);
            }
            if (parallel) EXPECTF(n_multi > 0, "%s: no walk made several calls", envelopes[e].what);
            constraint_grammar_free(g);
        }
    json_decref(tools);
}

TEST(strict_auto_text_and_calls)
{
    json_t *tools = json_loads(tools_json, 0, NULL);
    ASSERT(tools != NULL);
    static const struct { size_t env; const char *good, *bad; } cases[] = {
        { 0, "I will call it. <tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\":1,\"b\":2}}\n</tool_call>\ndone <tool_cal",
          "text <tool_call>\n{\"name\": \"nope\"" },
        { 1, "ok <<tool_call>\n<function=add>\n<parameter=a>\n1\n</parameter>\n<parameter=b>\n-2\n</parameter>\n</function>\n</tool_call>",
          "<tool_call>\n<function=add>\n</function>\n</tool_call>" },
        { 2, "{\"name\": \"add\", \"parameters\": {\"a\":1,\"b\":2}}", "Sure <|python_tag|>{}" },
        { 3, "Calling [TOOL_CALLS [x] [TOOL_CALLS][{\"name\": \"add\", \"arguments\": {\"a\":1,\"b\":2}}]",
          "a [TOOL_CALLS][{\"name\": \"add\", \"arguments\": {}}]" },
        { 4, "x [TOOL_CALLS]add[ARGS]{\"a\":1,\"b\":2}[TOOL_CALLS]get_weather[ARGS]{\"city\":\"Oslo\",\"unit\":\"c\"}",
          "x [TOOL_CALLS]mul[ARGS]{}" },
        { 6, "hm <\xEF\xBD\x9Ctool\xE2\x96\x81" "calls\xE2\x96\x81" "begin\xEF\xBD\x9C><\xEF\xBD\x9Ctool\xE2\x96\x81" "call\xE2\x96\x81"
             "begin\xEF\xBD\x9C>add<\xEF\xBD\x9Ctool\xE2\x96\x81" "sep\xEF\xBD\x9C>{\"a\":1,\"b\":2}<\xEF\xBD\x9Ctool\xE2\x96\x81" "call\xE2\x96\x81"
             "end\xEF\xBD\x9C><\xEF\xBD\x9Ctool\xE2\x96\x81" "calls\xE2\x96\x81" "end\xEF\xBD\x9C>",
          "<\xEF\xBD\x9Ctool\xE2\x96\x81" "call\xE2\x96\x81" "begin\xEF\xBD\x9C>" },
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        size_t e = cases[k].env;
        struct constraint_grammar *g = NULL;
        struct api_error err;
        ASSERT(srv_tool_grammar(gc, envelopes[e].f, envelopes[e].name_first, tools, NULL, true, true, &g, &err));
        EXPECTF(accepts(g, "") && accepts(g, "Plain text, no call."), "%s: plain text refused", envelopes[e].what);
        EXPECTF(accepts(g, cases[k].good), "%s: refused %s", envelopes[e].what, cases[k].good);
        EXPECTF(!accepts(g, cases[k].bad), "%s: accepted %s", envelopes[e].what, cases[k].bad);
        // what it accepts, the parser reads: the hand-written good case holds valid calls only
        struct calls c;
        parse(envelopes[e].f, tools, cases[k].good, strlen(cases[k].good), &c);
        EXPECTF(c.n >= 1, "%s: the parser found no call in %s", envelopes[e].what, cases[k].good);
        calls_free(&c);
        constraint_grammar_free(g);
    }
    json_decref(tools);
}

TEST(names_and_schemas_refused)
{
    struct constraint_grammar *g = NULL;
    struct api_error err;
    json_t *t = json_loads("[{\"type\":\"function\",\"function\":{\"name\":\"bad name\",\"parameters\":{}}}]", 0, NULL);
    EXPECT(!srv_tool_grammar(gc, TOOL_FAMILY_QWEN3_CODER, false, t, NULL, false, false, &g, &err) && strstr(err.message, "bad name"));
    EXPECT(srv_tool_grammar(gc, TOOL_FAMILY_HERMES, false, t, NULL, false, false, &g, &err));   // JSON carries any name
    constraint_grammar_free(g);
    json_decref(t);
    t = json_loads("[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"anyOf\":[{\"type\":\"object\"}]}}}]", 0, NULL);
    EXPECT(!srv_tool_grammar(gc, TOOL_FAMILY_QWEN3_CODER, false, t, NULL, false, false, &g, &err) && strstr(err.message, "anyOf"));
    json_decref(t);
}

int main(void)
{
    if (tokenizer_load("models/default", &tk) != STATUS_OK) return 1;
    int32_t stop_id = tokenizer_token_id(tk, "<|im_end|>");
    if (stop_id < 0 || constraint_vocab_new(tk, &stop_id, 1, &vocab) != STATUS_OK) return 1;
    walker.vocab = vocab;
    walker.stop_id = stop_id;
    gc = grammar_cache_new(64);
    RUN(forced_walks_parse_back);
    RUN(strict_auto_text_and_calls);
    RUN(names_and_schemas_refused);
    grammar_cache_free(gc);
    constraint_vocab_free(vocab);
    tokenizer_free(tk);
    return test_summary();
}
