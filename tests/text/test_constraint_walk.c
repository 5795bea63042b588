/* Random walks under the corpus in tests/text/schemas/: at each step a uniformly random allowed
 * token (the hardest case: like a random-weight model it rarely chooses to close a string), with a
 * random max_tokens budget, seeded. Checks here: every schema in valid.jsonl compiles, every one in
 * invalid.jsonl fails with its expected message, every walk ends within its budget with a stop
 * token allowed (no dead end, no hang), the mask never comes back empty, and the output is what the
 * matcher accepted. Independent validation (ajv for JSON Schema, RegExp for regexes) runs on the
 * JSONL this writes when CONSTRAINT_WALK_OUT is set: tests/text/run_constraint.sh.
 *
 * Tokenizer: CONSTRAINT_TOKENIZER (a directory with tokenizer.json), default models/default.
 * Seeds per entry: CONSTRAINT_WALK_SEEDS (default 4). */
#include <ctype.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "grammar_walk.h"
#include "text/constraint.h"
#include "text/tokenizer.h"
#include "text/toolparse.h"

static struct tokenizer *tk;
static struct walk_cfg walker = { .stop_one_in = 4 };
static FILE *walk_out;
static int n_seeds = 4;
static int64_t longest_step_ns;
static char longest_step_name[128];

/* One walk (grammar_walk.h), its failures and a budget below the minimum reported; returns the
 * output (heap, *len bytes) or NULL. */
static char *walk(const struct constraint_grammar *g, uint64_t seed, int max_tokens, const char *name, size_t *len)
{
    struct walk_result r;
    grammar_walk(&walker, g, seed, max_tokens, &r);
    EXPECTF(r.min_tokens <= max_tokens, "%s: budget %d below minimum %d", name, max_tokens, r.min_tokens);
    EXPECTF(r.out != NULL, "%s seed %llu: %s", name, (unsigned long long)seed, r.why);
    if (r.slowest_mask_ns > longest_step_ns) {
        longest_step_ns = r.slowest_mask_ns;
        snprintf(longest_step_name, sizeof longest_step_name, "%s, step %d", name, r.slowest_mask_step);
    }
    *len = r.len;
    return r.out;
}

static const char *entry_name(json_t *entry) { return json_string_value(json_object_get(entry, "name")); }

static void write_row(const char *kind, json_t *entry, const char *output, size_t len, uint64_t seed)
{
    if (!walk_out) return;
    EXPECTF(walk_write_row(walk_out, kind, entry, output, len, seed), "%s: output is not valid UTF-8",
            entry_name(entry));
}

/* A corpus entry's schema compiled: the grammar (NULL on failure), the status and error, the time. */
struct compiled {
    struct constraint_grammar *g;
    enum status                st;
    double                     ms;
    char                       err[512];
};

static void compile_schema(json_t *entry, struct compiled *c)
{
    char *text = json_dumps(json_object_get(entry, "schema"), JSON_COMPACT | JSON_ENCODE_ANY);
    c->g = NULL;
    double t0 = clock_now_s();
    c->st = constraint_compile_json_schema(text, strlen(text), NULL, NULL, &c->g, c->err, sizeof c->err);
    c->ms = (clock_now_s() - t0) * 1e3;
    free(text);
}

static void walk_entry(const char *kind, json_t *entry, const struct constraint_grammar *g, int *n_walks)
{
    const char *name = entry_name(entry);
    for (int s = 0; s < n_seeds; s++) {
        uint64_t seed = (uint64_t)s * 7919 + strlen(name);
        // Budgets from tight (just above the minimum) to roomy.
        int min = constraint_grammar_min_bytes(g);
        int max_tokens = min + 2 + (int)((seed * 2654435761u) % 160);
        size_t len;
        char *o = walk(g, seed, max_tokens, name, &len);
        if (o) { write_row(kind, entry, o, len, seed); (*n_walks)++; }
        free(o);
    }
}

TEST(valid_schemas)
{
    json_t *rows = walk_load_jsonl("tests/text/schemas/valid.jsonl");
    ASSERT(rows && json_array_size(rows) > 200);
    size_t i;
    json_t *e;
    int n_walks = 0;
    double worst_ms = 0;
    const char *worst = "";
    json_array_foreach(rows, i, e) {
        struct compiled c;
        compile_schema(e, &c);
        if (c.ms > worst_ms) { worst_ms = c.ms; worst = entry_name(e); }
        EXPECTF(c.st == STATUS_OK, "%s: %s", entry_name(e), c.err);
        if (!c.st) walk_entry("schema", e, c.g, &n_walks);
        constraint_grammar_free(c.g);
    }
    fprintf(stderr, "  %zu schemas, %d walks, slowest compile %.2f ms (%s)\n", json_array_size(rows), n_walks, worst_ms, worst);
    json_decref(rows);
}

TEST(invalid_schemas)
{
    json_t *rows = walk_load_jsonl("tests/text/schemas/invalid.jsonl");
    ASSERT(rows && json_array_size(rows) > 20);
    size_t i;
    json_t *e;
    json_array_foreach(rows, i, e) {
        struct compiled c;
        compile_schema(e, &c);
        const char *want = json_string_value(json_object_get(e, "error"));
        EXPECTF(c.st != STATUS_OK && strstr(c.err, want), "%s: got status %d '%s', want an error with '%s'", entry_name(e),
                c.st, c.err, want);
        EXPECTF(c.ms < 1000, "%s: took %.0f ms to fail", entry_name(e), c.ms);
        constraint_grammar_free(c.g);
    }
    json_decref(rows);
}

TEST(regex_and_gbnf)
{
    json_t *rows = walk_load_jsonl("tests/text/schemas/regex.jsonl");
    ASSERT(rows && json_array_size(rows) > 10);
    size_t i;
    json_t *e;
    int n_walks = 0;
    json_array_foreach(rows, i, e) {
        struct constraint_grammar *g = NULL;
        char err[512];
        const char *gb = json_string_value(json_object_get(e, "gbnf")), *re = json_string_value(json_object_get(e, "regex"));
        enum status st = gb ? constraint_compile_gbnf(gb, strlen(gb), NULL, &g, err, sizeof err)
                            : constraint_compile_regex(re, strlen(re), NULL, &g, err, sizeof err);
        EXPECTF(st == STATUS_OK, "%s: %s", entry_name(e), err);
        if (!st) walk_entry(gb ? "gbnf" : "regex", e, g, &n_walks);
        constraint_grammar_free(g);
    }
    fprintf(stderr, "  %zu regexes/grammars, %d walks\n", json_array_size(rows), n_walks);
    json_decref(rows);
}

/* Qwen3-Coder XML tool calls: every corpus schema the XML form takes, walked inside its envelope,
 * read back by the server's tool parser (toolparse) and written as a schema row of the arguments
 * it produced, so ajv judges what a client would receive. */
struct xml_calls { int n_calls; bool stray_text; struct strbuf args; };

static void on_xml_event(void *ctx, const struct tp_event *ev)
{
    struct xml_calls *x = ctx;
    if (ev->kind == TP_CALL_START) x->n_calls++;
    else if (ev->kind == TP_CALL_ARGS && x->n_calls == 1) strbuf_append(&x->args, ev->text, ev->len);
    else if (ev->kind == TP_TEXT)
        for (size_t k = 0; k < ev->len; k++) x->stray_text |= !isspace((unsigned char)ev->text[k]);
}

TEST(xml_tool_calls)
{
    json_t *rows = walk_load_jsonl("tests/text/schemas/valid.jsonl");
    ASSERT(rows != NULL);
    size_t i;
    json_t *e;
    int n_schemas = 0, n_walks = 0;
    json_array_foreach(rows, i, e) {
        json_t *schema = json_object_get(e, "schema");
        char *text = json_dumps(schema, JSON_COMPACT | JSON_ENCODE_ANY), *body = NULL, err[512];
        enum status st = constraint_tool_xml_gbnf(text, strlen(text), "x-", &body, err, sizeof err);
        free(text);
        if (st == STATUS_EUNSUPPORTED || (st == STATUS_EINVAL && !json_is_object(schema))) continue;   // not an object schema
        const char *name = entry_name(e);
        EXPECTF(st == STATUS_OK, "xml %s: %s", name, err);
        if (st) continue;
        struct strbuf gb = {0};
        strbuf_printf(&gb, "root ::= \"<tool_call>\\n<function=f>\\n\" x-root \"</function>\\n</tool_call>\"\n%s", body);
        free(body);
        struct constraint_grammar *g = NULL;
        st = constraint_compile_gbnf(gb.data, gb.len, NULL, &g, err, sizeof err);
        strbuf_free(&gb);
        EXPECTF(st == STATUS_OK, "xml %s: grammar: %s", name, err);
        if (st) continue;
        n_schemas++;
        json_t *tools = json_pack("[{s:s,s:{s:s,s:O}}]", "type", "function", "function", "name", "f", "parameters", schema);
        json_t *entry = json_deep_copy(e);
        char xname[160];
        snprintf(xname, sizeof xname, "xml:%s", name);
        json_object_set_new(entry, "name", json_string(xname));
        for (int sd = 0; sd < n_seeds; sd++) {
            uint64_t seed = (uint64_t)sd * 104729 + strlen(name);
            int max_tokens = (int)constraint_grammar_min_bytes(g) + 2 + (int)((seed * 2654435761u) % 200);
            size_t len;
            char *o = walk(g, seed, max_tokens, xname, &len);
            if (!o) continue;
            struct xml_calls x = {0};
            int n_calls = 0;
            struct toolparse *tp = toolparse_new(TOOL_FAMILY_QWEN3_CODER, tools, &n_calls, on_xml_event, &x);
            toolparse_feed(tp, o, len);
            toolparse_finish(tp);
            toolparse_free(tp);
            EXPECTF(x.n_calls == 1 && !x.stray_text, "%s seed %d: %d calls, stray text %d: '%.300s'", xname, sd, x.n_calls,
                    x.stray_text, o);
            if (x.n_calls == 1) { write_row("schema", entry, x.args.data ? x.args.data : "", x.args.len, seed); n_walks++; }
            strbuf_free(&x.args);
            free(o);
        }
        json_decref(entry);
        json_decref(tools);
        constraint_grammar_free(g);
    }
    fprintf(stderr, "  %d schemas in the XML tool-call form, %d walks read back by toolparse\n", n_schemas, n_walks);
    EXPECT(n_schemas > 100);
    json_decref(rows);
}

int main(void)
{
    const char *dir = getenv("CONSTRAINT_TOKENIZER") ? getenv("CONSTRAINT_TOKENIZER") : "models/default";
    if (getenv("CONSTRAINT_WALK_SEEDS")) n_seeds = atoi(getenv("CONSTRAINT_WALK_SEEDS"));
    if (tokenizer_load(dir, &tk) != STATUS_OK) { fprintf(stderr, "cannot load tokenizer %s\n", dir); return 1; }
    int32_t stop_id = tokenizer_token_id(tk, "<|im_end|>");
    if (stop_id < 0) stop_id = tokenizer_token_id(tk, "<|eot_id|>");
    struct constraint_vocab *vocab;
    if (stop_id < 0 || constraint_vocab_new(tk, &stop_id, 1, &vocab) != STATUS_OK) { fprintf(stderr, "no stop token\n"); return 1; }
    walker.vocab = vocab;
    walker.stop_id = stop_id;
    const char *path = getenv("CONSTRAINT_WALK_OUT");
    if (path && !(walk_out = fopen(path, "w"))) { fprintf(stderr, "cannot write %s\n", path); return 1; }
    fprintf(stderr, "tokenizer %s: %d ids, %d seeds per entry\n", dir, constraint_vocab_size(vocab), n_seeds);
    RUN(valid_schemas);
    RUN(invalid_schemas);
    RUN(regex_and_gbnf);
    RUN(xml_tool_calls);
    fprintf(stderr, "  slowest mask step %.2f ms (%s)\n", longest_step_ns / 1e6, longest_step_name);
    if (walk_out) fclose(walk_out);
    constraint_vocab_free(vocab);
    tokenizer_free(tk);
    return test_summary();
}
