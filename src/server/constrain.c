/* constrain: request fields -> compiled grammar, cached (see constrain.h).
 *
 * Design note. The cache key is the kind of source (schema, object, regex, GBNF) plus its text,
 * schemas serialized with sorted keys so that the same schema in another key order hits; the
 * XXH3 hash picks the slot and the stored key confirms it. Eviction is least recently used over a
 * small fixed table (agents send the same few schemas over and over; a linear scan of 256 entries
 * costs nothing next to a compile). Compiling happens outside the lock: two requests with a new
 * schema may both compile it, and the second insert keeps the first.
 */
#include "server/constrain.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "base/mem.h"
#include "text/constraint.h"

struct cache_entry {
    uint64_t                   hash;
    char                      *key;      // kind letter + source text
    struct constraint_grammar *g;        // the cache's reference
    uint64_t                   used;     // LRU clock
};

struct grammar_cache {
    pthread_mutex_t     mu;
    struct cache_entry *e;
    int                 n, cap;
    uint64_t            clock;
    long                hits;
};

struct grammar_cache *grammar_cache_new(int max_entries)
{
    struct grammar_cache *gc = xcalloc(1, sizeof *gc);
    gc->cap = max_entries > 0 ? max_entries : 256;
    gc->e = xcalloc((size_t)gc->cap, sizeof *gc->e);
    pthread_mutex_init(&gc->mu, NULL);
    return gc;
}

void grammar_cache_free(struct grammar_cache *gc)
{
    if (!gc) return;
    for (int i = 0; i < gc->n; i++) {
        free(gc->e[i].key);
        constraint_grammar_free(gc->e[i].g);
    }
    free(gc->e);
    pthread_mutex_destroy(&gc->mu);
    free(gc);
}

void grammar_cache_counts(struct grammar_cache *gc, int *n_entries, long *n_hits)
{
    pthread_mutex_lock(&gc->mu);
    *n_entries = gc->n;
    *n_hits = gc->hits;
    pthread_mutex_unlock(&gc->mu);
}

/* A new reference to the cached grammar of key, or NULL. */
static struct constraint_grammar *cache_get(struct grammar_cache *gc, uint64_t h, const char *key)
{
    struct constraint_grammar *g = NULL;
    pthread_mutex_lock(&gc->mu);
    for (int i = 0; i < gc->n; i++)
        if (gc->e[i].hash == h && !strcmp(gc->e[i].key, key)) {
            g = gc->e[i].g;
            constraint_grammar_ref(g);
            gc->e[i].used = ++gc->clock;
            gc->hits++;
            break;
        }
    pthread_mutex_unlock(&gc->mu);
    return g;
}

static void cache_put(struct grammar_cache *gc, uint64_t h, const char *key, struct constraint_grammar *g)
{
    pthread_mutex_lock(&gc->mu);
    for (int i = 0; i < gc->n; i++)
        if (gc->e[i].hash == h && !strcmp(gc->e[i].key, key)) {   // compiled twice at once: keep the first
            pthread_mutex_unlock(&gc->mu);
            return;
        }
    int slot = gc->n;
    if (gc->n == gc->cap) {
        slot = 0;
        for (int i = 1; i < gc->n; i++)
            if (gc->e[i].used < gc->e[slot].used) slot = i;
        free(gc->e[slot].key);
        constraint_grammar_free(gc->e[slot].g);   // sequences using it keep their own references
    } else {
        gc->n++;
    }
    constraint_grammar_ref(g);
    gc->e[slot] = (struct cache_entry){ .hash = h, .key = xstrdup(key), .g = g, .used = ++gc->clock };
    pthread_mutex_unlock(&gc->mu);
}

enum source_kind { SRC_SCHEMA = 'S', SRC_OBJECT = 'O', SRC_REGEX = 'R', SRC_GBNF = 'G' };

/* Compiles (or finds) the grammar of one source. text: the schema's JSON, the regex or the GBNF. */
static bool compile(struct grammar_cache *gc, enum source_kind kind, const char *text, const char *field,
                    struct constraint_grammar **out, struct api_error *e)
{
    struct strbuf key = {0};
    strbuf_putc(&key, (char)kind);
    strbuf_puts(&key, text);
    uint64_t h = XXH3_64bits(key.data, key.len);
    struct constraint_grammar *g = cache_get(gc, h, key.data);
    if (g) {
        strbuf_free(&key);
        *out = g;
        return true;
    }
    char err[512] = "";
    enum status st;
    switch (kind) {
    case SRC_SCHEMA: st = constraint_compile_json_schema(text, strlen(text), NULL, NULL, &g, err, sizeof err); break;
    case SRC_OBJECT: st = constraint_compile_json_object(NULL, &g, err, sizeof err); break;
    case SRC_REGEX:  st = constraint_compile_regex(text, strlen(text), NULL, &g, err, sizeof err); break;
    default:         st = constraint_compile_gbnf(text, strlen(text), NULL, &g, err, sizeof err); break;
    }
    if (st != STATUS_OK) {
        strbuf_free(&key);
        // every compile failure is the request's: a budget exceeded (ENOMEM) too
        *e = api_error_make(st == STATUS_EUNSUPPORTED ? STATUS_EUNSUPPORTED : STATUS_EINVAL, field, "'%s': %s", field,
                            err[0] ? err : status_str(st));
        return false;
    }
    cache_put(gc, h, key.data, g);
    strbuf_free(&key);
    *out = g;
    return true;
}

/* A schema given as an object, or as a string holding one (vLLM accepts both). */
static bool schema_source(json_t *v, const char *field, char **out, struct api_error *e)
{
    json_t *parsed = NULL;
    if (json_is_string(v)) {
        parsed = json_loads(json_string_value(v), JSON_DECODE_ANY, NULL);
        if (!parsed) {
            *e = api_error_make(STATUS_EINVAL, field, "'%s' is a string that does not hold JSON", field);
            return false;
        }
        v = parsed;
    }
    if (!json_is_object(v) && !json_is_boolean(v)) {
        json_decref(parsed);
        *e = api_error_make(STATUS_EINVAL, field, "'%s' must be a JSON Schema object", field);
        return false;
    }
    *out = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    json_decref(parsed);
    return true;
}

static bool string_source(json_t *v, const char *field, struct api_error *e)
{
    if (json_is_string(v) && json_string_length(v) > 0) return true;
    *e = api_error_make(STATUS_EINVAL, field, "'%s' must be a non-empty string", field);
    return false;
}

/* guided_choice: the output is exactly one of the strings, as a GBNF alternation. */
static bool choice_source(json_t *v, const char *field, char **out, struct api_error *e)
{
    if (!json_is_array(v) || !json_array_size(v)) {
        *e = api_error_make(STATUS_EINVAL, field, "'%s' must be a non-empty array of strings", field);
        return false;
    }
    struct strbuf sb = {0};
    strbuf_puts(&sb, "root ::= ");
    size_t i;
    json_t *c;
    json_array_foreach(v, i, c) {
        if (!json_is_string(c) || !json_string_length(c)) {
            strbuf_free(&sb);
            *e = api_error_make(STATUS_EINVAL, field, "'%s[%zu]' must be a non-empty string", field, i);
            return false;
        }
        strbuf_puts(&sb, i ? " | \"" : "\"");
        const unsigned char *s = (const unsigned char *)json_string_value(c);
        for (size_t k = 0; k < json_string_length(c); k++) {
            if (s[k] == '"' || s[k] == '\\') strbuf_printf(&sb, "\\%c", s[k]);
            else if (s[k] < 0x20) strbuf_printf(&sb, "\\x%02x", s[k]);
            else strbuf_putc(&sb, (char)s[k]);
        }
        strbuf_putc(&sb, '"');
    }
    *out = strbuf_take(&sb);
    return true;
}

/* response_format: text, json_object (with an optional llama.cpp "schema"), json_schema. */
static bool response_format(struct grammar_cache *gc, json_t *rf, struct constraint_grammar **out,
                            struct api_error *e)
{
    const char *type = json_string_value(json_object_get(rf, "type"));
    if (!json_is_object(rf) || !type) {
        *e = api_error_make(STATUS_EINVAL, "response_format", "'response_format' must be an object with a 'type'");
        return false;
    }
    if (!strcmp(type, "text")) return true;
    json_t *schema = NULL;
    const char *field = "response_format";
    if (!strcmp(type, "json_object")) {
        schema = json_object_get(rf, "schema");
        if (!schema || json_is_null(schema)) return compile(gc, SRC_OBJECT, "", field, out, e);
        field = "response_format.schema";
    } else if (!strcmp(type, "json_schema")) {
        json_t *js = json_object_get(rf, "json_schema");
        if (!json_is_object(js)) {
            *e = api_error_make(STATUS_EINVAL, "response_format.json_schema",
                                "response_format type 'json_schema' needs a 'json_schema' object with a 'schema'");
            return false;
        }
        schema = json_object_get(js, "schema");
        field = "response_format.json_schema.schema";
        if (!schema || json_is_null(schema)) {   // OpenAI: no schema means any JSON object
            return compile(gc, SRC_OBJECT, "", field, out, e);
        }
    } else {
        *e = api_error_make(STATUS_EINVAL, "response_format",
                            "unknown response_format type '%s' (text, json_object or json_schema)", type);
        return false;
    }
    char *src;
    if (!schema_source(schema, field, &src, e)) return false;
    bool ok = compile(gc, SRC_SCHEMA, src, field, out, e);
    free(src);
    return ok;
}

bool srv_constraint_format(struct grammar_cache *gc, json_t *format, struct constraint_grammar **out, struct api_error *e)
{
    *out = NULL;
    if (!format || json_is_null(format) || (json_is_string(format) && !json_string_length(format))) return true;
    if (json_is_string(format) && !strcmp(json_string_value(format), "json")) return compile(gc, SRC_OBJECT, "", "format", out, e);
    if (!json_is_object(format)) {
        *e = api_error_make(STATUS_EINVAL, "format", "'format' must be \"json\" or a JSON Schema object");
        return false;
    }
    char *src;
    if (!schema_source(format, "format", &src, e)) return false;
    bool ok = compile(gc, SRC_SCHEMA, src, "format", out, e);
    free(src);
    return ok;
}

/* One of the vLLM / llama.cpp fields (name), value v. */
static bool one_field(struct grammar_cache *gc, const char *name, json_t *v, struct constraint_grammar **out,
                      struct api_error *e)
{
    char *src = NULL;
    bool ok;
    if (!strcmp(name, "guided_json") || !strcmp(name, "json_schema") || !strcmp(name, "structured_outputs.json")) {
        if (!schema_source(v, name, &src, e)) return false;
        ok = compile(gc, SRC_SCHEMA, src, name, out, e);
    } else if (!strcmp(name, "guided_regex") || !strcmp(name, "structured_outputs.regex")) {
        ok = string_source(v, name, e) && compile(gc, SRC_REGEX, json_string_value(v), name, out, e);
    } else if (!strcmp(name, "guided_grammar") || !strcmp(name, "grammar") || !strcmp(name, "structured_outputs.grammar")) {
        ok = string_source(v, name, e) && compile(gc, SRC_GBNF, json_string_value(v), name, out, e);
    } else if (!strcmp(name, "guided_choice") || !strcmp(name, "structured_outputs.choice")) {
        if (!choice_source(v, name, &src, e)) return false;
        ok = compile(gc, SRC_GBNF, src, name, out, e);
    } else {   // structured_outputs.json_object
        if (!json_is_true(v)) return true;
        ok = compile(gc, SRC_OBJECT, "", name, out, e);
    }
    free(src);
    return ok;
}

bool srv_constraint_parse(struct grammar_cache *gc, json_t *body, struct constraint_grammar **out, const char **field,
                          struct api_error *e)
{
    static const char *const top[] = { "guided_json", "guided_regex", "guided_grammar", "guided_choice", "grammar",
                                       "json_schema", NULL };
    static const char *const so_keys[] = { "json", "regex", "grammar", "choice", "json_object", NULL };
    static const char *const so_names[] = { "structured_outputs.json", "structured_outputs.regex",
                                            "structured_outputs.grammar", "structured_outputs.choice",
                                            "structured_outputs.json_object", NULL };
    *out = NULL;
    *field = NULL;
    const char *given[8];
    json_t *vals[8];
    int n = 0;
    for (int i = 0; top[i]; i++) {
        json_t *v = json_object_get(body, top[i]);
        if (v && !json_is_null(v)) { given[n] = top[i]; vals[n++] = v; }
    }
    json_t *so = json_object_get(body, "structured_outputs");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) {
            *e = api_error_make(STATUS_EINVAL, "structured_outputs", "'structured_outputs' must be an object");
            return false;
        }
        for (int i = 0; so_keys[i]; i++) {
            json_t *v = json_object_get(so, so_keys[i]);
            if (v && !json_is_null(v) && n < 7) { given[n] = so_names[i]; vals[n++] = v; }
        }
    }
    json_t *rf = json_object_get(body, "response_format");
    bool rf_on = rf && !json_is_null(rf) &&
                 !(json_is_object(rf) && !strcmp(json_string_value(json_object_get(rf, "type")) ?: "", "text"));
    if (n + (rf_on ? 1 : 0) > 1) {
        *e = api_error_make(STATUS_EINVAL, rf_on ? "response_format" : given[1],
                            "only one output constraint per request (got '%s' and '%s')", rf_on ? "response_format" : given[0],
                            rf_on ? given[0] : given[1]);
        return false;
    }
    if (rf && !json_is_null(rf)) {
        *field = "response_format";
        return response_format(gc, rf, out, e);
    }
    if (n == 0) return true;
    *field = given[0];
    return one_field(gc, given[0], vals[0], out, e);
}

/* ==== Forced tool calls ==== */

/* s as a GBNF string literal's contents. */
static void gbnf_escape(struct strbuf *sb, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') strbuf_printf(sb, "\\%c", *p);
        else if (*p < 0x20) strbuf_printf(sb, "\\x%02x", *p);
        else strbuf_putc(sb, (char)*p);
    }
}

bool srv_tool_grammar(struct grammar_cache *gc, enum tool_family family, json_t *tools, const char *only,
                      bool parallel, struct constraint_grammar **out, struct api_error *e)
{
    *out = NULL;
    if (family != TOOL_FAMILY_HERMES) {
        *e = api_error_make(STATUS_EUNSUPPORTED, "tool_choice",
                            "a forced tool call is enforced for the hermes tool-call format only; this model uses '%s'",
                            tool_family_name(family));
        return false;
    }
    struct strbuf rules = {0}, alts = {0};
    size_t i;
    json_t *t;
    int n = 0;
    json_array_foreach(tools, i, t) {
        json_t *fn = json_object_get(t, "function");
        const char *name = json_string_value(json_object_get(fn, "name"));
        if (!name || (only && strcmp(name, only))) continue;
        json_t *params = json_object_get(fn, "parameters");
        char *schema = params && json_is_object(params) ? json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        char prefix[32], err[512] = "";
        snprintf(prefix, sizeof prefix, "t%zu-", i);
        char *args = NULL;
        enum status st = constraint_json_schema_gbnf(schema, schema ? strlen(schema) : 0, NULL, prefix, &args, err, sizeof err);
        free(schema);
        if (st != STATUS_OK) {
            strbuf_free(&rules);
            strbuf_free(&alts);
            *e = api_error_make(st == STATUS_EUNSUPPORTED ? st : STATUS_EINVAL, "tools",
                                "tools[%zu] ('%s') parameters: %s", i, name, err[0] ? err : status_str(st));
            return false;
        }
        // {"name": "<name>", "arguments": <args>}: the spelling Hermes templates render
        json_t *js = json_string(name);
        char *quoted = json_dumps(js, JSON_ENCODE_ANY);
        json_decref(js);
        strbuf_printf(&alts, "%st%zu", n ? " | " : "", i);
        strbuf_printf(&rules, "t%zu ::= \"{\\\"name\\\": ", i);
        gbnf_escape(&rules, quoted);
        strbuf_printf(&rules, ", \\\"arguments\\\": \" t%zu-root \"}\"\n%s\n", i, args);
        free(quoted);
        free(args);
        n++;
    }
    if (n == 0) {
        strbuf_free(&rules);
        strbuf_free(&alts);
        *e = api_error_make(STATUS_EINVAL, "tool_choice", only ? "tool_choice names '%s', which is not in tools"
                                                               : "tool_choice forces a tool call but no tools are given%s", only ? only : "");
        return false;
    }
    struct strbuf g = {0};
    strbuf_printf(&g, "root ::= call%s\ncall ::= \"<tool_call>\\n\" ( %s ) \"\\n</tool_call>\"\n%s",
                  parallel ? " (\"\\n\" call)*" : "", alts.data, rules.data);
    strbuf_free(&rules);
    strbuf_free(&alts);
    bool ok = compile(gc, SRC_GBNF, g.data, "tool_choice", out, e);
    strbuf_free(&g);
    return ok;
}
