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

#include "base/log.h"
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

/* Compiles (or finds) the JSON Schema v, given as schema_source takes it. */
static bool compile_schema(struct grammar_cache *gc, json_t *v, const char *field, struct constraint_grammar **out,
                           struct api_error *e)
{
    char *src;
    if (!schema_source(v, field, &src, e)) return false;
    bool ok = compile(gc, SRC_SCHEMA, src, field, out, e);
    free(src);
    return ok;
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
    return compile_schema(gc, schema, field, out, e);
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
    return compile_schema(gc, format, "format", out, e);
}

/* One of the vLLM / llama.cpp fields (name), value v. */
static bool one_field(struct grammar_cache *gc, const char *name, json_t *v, struct constraint_grammar **out,
                      struct api_error *e)
{
    char *src = NULL;
    bool ok;
    if (!strcmp(name, "guided_json") || !strcmp(name, "json_schema") || !strcmp(name, "structured_outputs.json")) {
        ok = compile_schema(gc, v, name, out, e);
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

/* A {type: json_schema | json_object | text, schema} object of the Responses API (text.format,
 * flat: name, schema and strict beside type) or Anthropic (output_config.format / output_format). */
static bool flat_format(struct grammar_cache *gc, json_t *fmt, const char *field, const char *schema_field,
                        struct constraint_grammar **out, struct api_error *e)
{
    const char *type = json_string_value(json_object_get(fmt, "type"));
    if (!json_is_object(fmt) || !type) {
        *e = api_error_make(STATUS_EINVAL, field, "'%s' must be an object with a 'type'", field);
        return false;
    }
    if (!strcmp(type, "text")) return true;
    if (!strcmp(type, "json_object")) return compile(gc, SRC_OBJECT, "", field, out, e);
    if (strcmp(type, "json_schema")) {
        *e = api_error_make(STATUS_EINVAL, field, "unknown %s type '%s' (text, json_object or json_schema)", field, type);
        return false;
    }
    json_t *schema = json_object_get(fmt, "schema");
    if (!schema || json_is_null(schema)) {
        *e = api_error_make(STATUS_EINVAL, schema_field, "%s type 'json_schema' needs a 'schema'", field);
        return false;
    }
    return compile_schema(gc, schema, schema_field, out, e);
}

bool srv_constraint_responses(struct grammar_cache *gc, json_t *body, struct constraint_grammar **out,
                              const char **field, struct api_error *e)
{
    *out = NULL;
    *field = NULL;
    json_t *text = json_object_get(body, "text");
    if (!text || json_is_null(text)) return true;
    if (!json_is_object(text)) {
        *e = api_error_make(STATUS_EINVAL, "text", "'text' must be an object");
        return false;
    }
    json_t *fmt = json_object_get(text, "format");
    if (!fmt || json_is_null(fmt)) return true;
    *field = "text.format";
    return flat_format(gc, fmt, "text.format", "text.format.schema", out, e);
}

bool srv_constraint_anthropic(struct grammar_cache *gc, json_t *body, struct constraint_grammar **out,
                              const char **field, struct api_error *e)
{
    *out = NULL;
    *field = NULL;
    json_t *cfg = json_object_get(body, "output_config"), *beta = json_object_get(body, "output_format");
    json_t *fmt = NULL;
    if (cfg && !json_is_null(cfg)) {
        if (!json_is_object(cfg)) {
            *e = api_error_make(STATUS_EINVAL, "output_config", "'output_config' must be an object");
            return false;
        }
        const char *k;
        json_t *v;
        json_object_foreach(cfg, k, v)
            if (strcmp(k, "format") && strcmp(k, "effort")) {
                *e = api_error_make(STATUS_EUNSUPPORTED, "output_config", "'output_config.%s' is not supported", k);
                return false;
            }
        fmt = json_object_get(cfg, "format");
        if (fmt && !json_is_null(fmt)) *field = "output_config.format";
    }
    if (beta && !json_is_null(beta)) {
        if (*field) {
            *e = api_error_make(STATUS_EINVAL, "output_format", "give one of 'output_config.format' and 'output_format'");
            return false;
        }
        fmt = beta;
        *field = "output_format";
    }
    if (!*field) return true;
    return flat_format(gc, fmt, *field, !strcmp(*field, "output_format") ? "output_format.schema" : "output_config.format.schema",
                       out, e);
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

/* A tool name written bare inside markup (XML, Mistral [ARGS], DeepSeek): the parsers end it at
 * these bytes, so a name holding one could not be read back. */
static bool bare_name_ok(const char *name)
{
    if (!*name || strlen(name) > 200) return false;
    for (const char *p = name; *p; p++)
        if (strchr("<>\n{}[] \"", *p) || (unsigned char)*p < 0x20) return false;
    return true;
}

#define DS_CALLS_BEGIN "<\xEF\xBD\x9Ctool\xE2\x96\x81" "calls\xE2\x96\x81" "begin\xEF\xBD\x9C>"
#define DS_CALLS_END   "<\xEF\xBD\x9Ctool\xE2\x96\x81" "calls\xE2\x96\x81" "end\xEF\xBD\x9C>"
#define DS_CALL_BEGIN  "<\xEF\xBD\x9Ctool\xE2\x96\x81" "call\xE2\x96\x81" "begin\xEF\xBD\x9C>"
#define DS_CALL_END    "<\xEF\xBD\x9Ctool\xE2\x96\x81" "call\xE2\x96\x81" "end\xEF\xBD\x9C>"
#define DS_SEP         "<\xEF\xBD\x9Ctool\xE2\x96\x81" "sep\xEF\xBD\x9C>"

/* One call of tool i (rule t<i>) in the family's spelling, its arguments rule t<i>-root appended
 * after it. name_json: the name as a JSON string. */
static void call_rule(struct strbuf *rules, enum tool_family family, bool name_first, size_t i, const char *name,
                      const char *name_json)
{
    struct strbuf lit = {0};
    switch (family) {
    case TOOL_FAMILY_HERMES:   // {"name": "<name>", "arguments": <args>}, as Hermes templates render it
        strbuf_printf(&lit, "{\"name\": %s, \"arguments\": ", name_json);
        break;
    case TOOL_FAMILY_LLAMA3:   // Llama 3.1-3.3 templates: {"name": ..., "parameters": ...}
        strbuf_printf(&lit, "{\"name\": %s, \"parameters\": ", name_json);
        break;
    case TOOL_FAMILY_MISTRAL:
        if (name_first) strbuf_printf(&lit, "[TOOL_CALLS]%s[ARGS]", name);
        else strbuf_printf(&lit, "{\"name\": %s, \"arguments\": ", name_json);
        break;
    case TOOL_FAMILY_DEEPSEEK_V3:
        if (name_first) strbuf_printf(&lit, DS_CALL_BEGIN "%s" DS_SEP, name);
        else strbuf_printf(&lit, DS_CALL_BEGIN "function" DS_SEP "%s\n```json\n", name);
        break;
    case TOOL_FAMILY_QWEN3_CODER:
    default:
        strbuf_printf(&lit, "<function=%s>\n", name);
        break;
    }
    strbuf_printf(rules, "t%zu ::= \"", i);
    gbnf_escape(rules, lit.data);
    strbuf_printf(rules, "\" t%zu-root", i);
    const char *close = family == TOOL_FAMILY_QWEN3_CODER ? "</function>"
                      : family == TOOL_FAMILY_DEEPSEEK_V3 ? (name_first ? DS_CALL_END : "\n```" DS_CALL_END)
                      : family == TOOL_FAMILY_MISTRAL && name_first ? "" : "}";
    if (*close) {
        strbuf_puts(rules, " \"");
        gbnf_escape(rules, close);
        strbuf_puts(rules, "\"");
    }
    strbuf_puts(rules, "\n");
    strbuf_free(&lit);
}

/* Rule <name>: any text in which marker never occurs, as a DFA over the marker's code points
 * (right-linear rules, which the matcher runs in constant stack): state k has matched k of them.
 * The marker's first code point occurs once in it, so a mismatch goes back to state 0, or to 1
 * when it is that first code point. Every state may end: a text may stop on a partial marker. */
static void text_without(struct strbuf *g, const char *name, const char *marker)
{
    uint32_t cp[64];
    int n = 0;
    for (const unsigned char *p = (const unsigned char *)marker; *p && n < 64;) {
        int len = *p < 0x80 ? 1 : (*p >> 5) == 6 ? 2 : (*p >> 4) == 14 ? 3 : 4;
        uint32_t v = len == 1 ? *p : len == 2 ? (*p & 0x1Fu) : len == 3 ? (*p & 0x0Fu) : (*p & 0x07u);
        for (int k = 1; k < len; k++) v = (v << 6) | (p[k] & 0x3Fu);
        cp[n++] = v;
        p += len;
    }
    for (int k = 1; k < n; k++) CHECK(cp[k] != cp[0], "marker '%s' repeats its first character", marker);
    strbuf_printf(g, "%s ::= \"\" | [^\\U%08X] %s | \"\\U%08X\" %s-1\n", name, cp[0], name, cp[0], name);
    for (int k = 1; k < n; k++) {
        strbuf_printf(g, "%s-%d ::= \"\" | [^\\U%08X\\U%08X] %s | \"\\U%08X\" %s-1", name, k, cp[k], cp[0], name, cp[0], name);
        if (k + 1 < n) strbuf_printf(g, " | \"\\U%08X\" %s-%d", cp[k], name, k + 1);
        strbuf_puts(g, "\n");
    }
}

/* The rule "forced": one call, or (parallel) several, in the family's outer markup; and "root":
 * forced alone, or (optional) the text the parser reads as text with such calls where its markup
 * says (Hermes/XML anywhere, Llama 3 instead of text, Mistral/DeepSeek after the text). */
static void envelope_root(struct strbuf *g, enum tool_family family, bool name_first, bool parallel, bool optional)
{
    const char *open = "", *sep = "\n", *close = "";
    switch (family) {
    case TOOL_FAMILY_HERMES: open = "<tool_call>\n", close = "\n</tool_call>", sep = "\n"; break;
    case TOOL_FAMILY_QWEN3_CODER: open = "<tool_call>\n", close = "\n</tool_call>", sep = "\n"; break;
    case TOOL_FAMILY_LLAMA3: sep = "; "; break;
    case TOOL_FAMILY_MISTRAL:
        if (name_first) sep = "";
        else open = "[TOOL_CALLS][", sep = ", ", close = "]";
        break;
    case TOOL_FAMILY_DEEPSEEK_V3: open = DS_CALLS_BEGIN, sep = name_first ? "" : "\n", close = DS_CALLS_END; break;
    default: break;
    }
    // Hermes and XML wrap each call in <tool_call>; the others wrap the list
    bool wrap_each = family == TOOL_FAMILY_HERMES || family == TOOL_FAMILY_QWEN3_CODER;
    strbuf_puts(g, "forced ::= ");
    if (!wrap_each) { strbuf_putc(g, '"'); gbnf_escape(g, open); strbuf_puts(g, "\" "); }
    strbuf_puts(g, "call");
    if (parallel) { strbuf_puts(g, " (\""); gbnf_escape(g, sep); strbuf_puts(g, "\" call)*"); }
    if (!wrap_each) { strbuf_puts(g, " \""); gbnf_escape(g, close); strbuf_putc(g, '"'); }
    strbuf_puts(g, "\ncall ::= ");
    if (wrap_each) { strbuf_putc(g, '"'); gbnf_escape(g, open); strbuf_puts(g, "\" "); }
    strbuf_puts(g, "( calls )");
    if (wrap_each) { strbuf_puts(g, " \""); gbnf_escape(g, close); strbuf_putc(g, '"'); }
    strbuf_puts(g, "\n");
    if (!optional) {
        strbuf_puts(g, "root ::= forced\n");
        return;
    }
    switch (family) {
    case TOOL_FAMILY_HERMES:
    case TOOL_FAMILY_QWEN3_CODER:
        strbuf_printf(g, "root ::= free ( call free )%s\n", parallel ? "*" : "?");
        text_without(g, "free", "<tool_call>");
        break;
    case TOOL_FAMILY_LLAMA3:   // a message is calls (it starts with '{') or text
        strbuf_puts(g, "root ::= forced | \"\" | [^{ \\t\\n\\r<] free | \"<\" free-1\n");
        text_without(g, "free", "<|python_tag|>");
        break;
    case TOOL_FAMILY_MISTRAL:
        strbuf_puts(g, "root ::= free forced?\n");
        text_without(g, "free", "[TOOL_CALLS]");
        break;
    default:   // DeepSeek: every marker begins with this
        strbuf_puts(g, "root ::= free forced?\n");
        text_without(g, "free", "<\xEF\xBD\x9Ctool\xE2\x96\x81");
        break;
    }
}

bool srv_tool_grammar(struct grammar_cache *gc, enum tool_family family, bool name_first, json_t *tools,
                      const char *only, bool parallel, bool optional, struct constraint_grammar **out,
                      struct api_error *e)
{
    *out = NULL;
    if (family <= TOOL_FAMILY_NONE || family >= TOOL_FAMILY_COUNT) {
        *e = api_error_make(STATUS_EUNSUPPORTED, "tool_choice", "this model has no tool-call format to force a call in");
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
        bool bare = family == TOOL_FAMILY_QWEN3_CODER || (family == TOOL_FAMILY_MISTRAL && name_first) ||
                    family == TOOL_FAMILY_DEEPSEEK_V3;
        if (bare && !bare_name_ok(name)) {
            strbuf_free(&rules);
            strbuf_free(&alts);
            *e = api_error_make(STATUS_EUNSUPPORTED, "tools", "tools[%zu]: the name '%s' cannot be written in the %s tool-call format",
                                i, name, tool_family_name(family));
            return false;
        }
        json_t *params = json_object_get(fn, "parameters");
        char *schema = params && (json_is_object(params) || json_is_boolean(params))
                           ? json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;
        char prefix[32], err[512] = "";
        snprintf(prefix, sizeof prefix, "t%zu-", i);
        char *args = NULL;
        enum status st = family == TOOL_FAMILY_QWEN3_CODER
                             ? constraint_tool_xml_gbnf(schema, schema ? strlen(schema) : 0, prefix, &args, err, sizeof err)
                             : constraint_json_schema_gbnf(schema, schema ? strlen(schema) : 0, NULL, prefix, &args, err, sizeof err);
        free(schema);
        if (st != STATUS_OK) {
            strbuf_free(&rules);
            strbuf_free(&alts);
            *e = api_error_make(st == STATUS_EUNSUPPORTED ? st : STATUS_EINVAL, "tools",
                                "tools[%zu] ('%s') parameters: %s", i, name, err[0] ? err : status_str(st));
            return false;
        }
        json_t *js = json_string(name);
        char *quoted = json_dumps(js, JSON_ENCODE_ANY);
        json_decref(js);
        strbuf_printf(&alts, "%st%zu", n ? " | " : "", i);
        call_rule(&rules, family, name_first, i, name, quoted);
        strbuf_printf(&rules, "%s\n", args);
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
    envelope_root(&g, family, name_first, parallel, optional);
    strbuf_printf(&g, "calls ::= %s\n%s", alts.data, rules.data);
    strbuf_free(&rules);
    strbuf_free(&alts);
    bool ok = compile(gc, SRC_GBNF, g.data, "tool_choice", out, e);
    strbuf_free(&g);
    return ok;
}
