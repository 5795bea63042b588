/* constraint_json_schema: JSON Schema (draft 2020-12, the subset OpenAI strict mode and the
 * frameworks emit) translated to GBNF.
 *
 * Supported: type (one or a list), properties, required, additionalProperties (false / true /
 * schema), items, prefixItems, minItems, maxItems, enum, const, anyOf, oneOf (when its branches are
 * provably disjoint), allOf with one member, $ref to "#", "#/$defs/..", "#/definitions/.." or any
 * JSON pointer in the document (recursion included), string minLength / maxLength / pattern /
 * format (date, time, date-time, uuid, ipv4, email, uri), integer and number minimum / maximum /
 * exclusiveMinimum / exclusiveMaximum. Annotations (title, description, default, examples, ...)
 * are ignored. Any other keyword is an EUNSUPPORTED error that names it: a constraint is never
 * silently dropped. Where the schema leaves a choice the output takes the tighter one, which is
 * still valid: properties come in schema order; an object with listed properties and no
 * additionalProperties gets no others; numbers have at most 15 integer digits (so they stay exact
 * doubles), 15 fraction digits and a 2-digit exponent; additional property names carry no escapes.
 *
 * Every JSON token may be followed by ws, which is "" in compact mode (the default).
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/constraint_int.h"
#include "text/pyjson.h"

struct js {
    struct cg_grammar *g;
    json_t            *doc;
    struct strbuf      out;
    char             **ref_keys;    // $ref targets already given a rule
    char             **ref_rules;
    uint32_t           n_refs;
    uint32_t           n_names;
    uint32_t           depth;
    bool               raw;         // gen_string writes raw text (no quotes, no escapes)
    bool               no_lt;       // XML envelope: no '<' byte in any value (see constraint_tool_xml_gbnf)
};

static const char *annotations[] = {
    "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly",
    "writeOnly", "$defs", "definitions", "$anchor", "contentMediaType", "contentEncoding", "strict",
    "discriminator",   // OpenAPI hint beside oneOf (pydantic); validators ignore it, oneOf still decides
    NULL,
};

static bool is_annotation(const char *k)
{
    for (int i = 0; annotations[i]; i++)
        if (!strcmp(k, annotations[i])) return true;
    return false;
}

static char *new_name(struct js *j, const char *hint)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%s-%u", hint, j->n_names++);
    return xstrdup(buf);
}

static enum status budget(struct js *j)
{
    if (j->out.len > (size_t)j->g->budget.max_elements * 8)
        return cg_fail(j->g, STATUS_ENOMEM, "schema too large: its grammar exceeds %u elements", j->g->budget.max_elements);
    return cg_check_budget(j->g);
}

/* Appends s as a GBNF string literal (every non-ASCII or special byte sequence escaped). */
static void put_literal(struct strbuf *o, const char *s, size_t n)
{
    strbuf_putc(o, '"');
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') { strbuf_putc(o, (char)c); i++; continue; }
        if (c < 0x80) { strbuf_printf(o, "\\x%02X", c); i++; continue; }
        int len = (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4;
        uint32_t v = len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
        for (int k = 1; k < len && i + k < n; k++) v = (v << 6) | ((unsigned char)s[i + k] & 0x3F);
        strbuf_printf(o, "\\U%08X", v);
        i += len;
    }
    strbuf_putc(o, '"');
}

static enum status gen(struct js *j, json_t *s, const char *path, char **rule);

/* ==== Shared rules ==== */

static void put_common(struct js *j, int ws_max)
{
    struct strbuf *o = &j->out;
    if (ws_max > 0) strbuf_printf(o, "ws ::= [ \\t\\n]{0,%d}\n", ws_max);
    else strbuf_puts(o, "ws ::= \"\"\n");
    // no \u0000 (C parsers of the output, jansson among them, refuse it); with no_lt, '<' only as \u003c
    strbuf_puts(o, j->no_lt ? "jplain ::= [^\"\\\\\\x00-\\x1F<]\n" : "jplain ::= [^\"\\\\\\x00-\\x1F]\n");
    strbuf_puts(o,
        "jhex ::= [0-9a-fA-F]\n"
        "jchar ::= jplain | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" ( [1-9a-cA-CeEfF] jhex jhex jhex | \"0\" jnz3 | [dD] [0-7] jhex jhex ) )\n"
        "jnz3 ::= [1-9a-fA-F] jhex jhex | \"0\" ( [1-9a-fA-F] jhex | \"0\" [1-9a-fA-F] )\n"
        "jstr ::= \"\\\"\" jchar* \"\\\"\"\n"
        "jint ::= \"0\" | [1-9] [0-9]{0,14}\n"
        "jinteger ::= \"-\"? jint\n"
        "jnum ::= \"-\"? jint (\".\" [0-9]{1,15})? ([eE] [-+]? [0-9]{1,2})?\n"
        "jbool ::= \"true\" | \"false\"\n"
        "jnull ::= \"null\"\n"
        "jvalue ::= jobject | jarray | jstr | jnum | jbool | jnull\n"
        "jobject ::= \"{\" ws ( jstr ws \":\" ws jvalue ws ( \",\" ws jstr ws \":\" ws jvalue ws )* )? \"}\"\n"
        "jarray ::= \"[\" ws ( jvalue ws ( \",\" ws jvalue ws )* )? \"]\"\n");
    // raw text of an XML parameter: "</" never occurs (it would close the element early)
    if (j->no_lt)
        strbuf_puts(o, "xchar ::= [^<\\x00]\n"
                       "xtext ::= ( [^<\\x00] | \"<\"+ [^</\\x00] )* \"<\"*\n");
}

/* ==== Strings ==== */

static const struct { const char *name, *re; } formats[] = {
    { "date", "^\\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\\d|30)|02-(?:0[1-9]|1\\d|2[0-8]))$" },
    { "time", "^(?:[01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(?:\\.\\d{1,9})?(?:Z|[+-](?:[01]\\d|2[0-3]):[0-5]\\d)$" },
    { "uuid", "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$" },
    { "ipv4", "^(?:(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)\\.){3}(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)$" },
    { "email", "^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$" },
    // uri: the http(s) URLs with plain host and path characters, a strict subset of RFC 3986.
    { "uri", "^https?://[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*(?::\\d{1,5})?(?:/[A-Za-z0-9._~-]*)*$" },
    { NULL, NULL },
};

/* Leap days: Feb 29 in years divisible by 4, except centuries not divisible by 400. */
static const char *leap_date =
    "(\\d\\d(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26]|00)00)-02-29";

/* Strings are JSON string contents, or raw text (an XML parameter value) while j->raw is set. */
static int rx_mode(struct js *j) { return (j->raw ? CG_RX_RAW : CG_RX_JSON) | (j->no_lt ? CG_RX_NO_LT : 0); }

static enum status gen_regex_rule(struct js *j, const char *re, bool search, char **rule)
{
    *rule = new_name(j, "re");
    return cg_regex_to_gbnf(j->g, re, strlen(re), rx_mode(j), search, *rule, &j->out);
}

static const char *q_open(struct js *j) { return j->raw ? "" : "\"\\\"\" "; }
static const char *q_close(struct js *j) { return j->raw ? "" : " \"\\\"\""; }

static enum status gen_string(struct js *j, json_t *s, const char *path, struct strbuf *o)
{
    json_t *fmt = json_object_get(s, "format"), *pat = json_object_get(s, "pattern");
    json_t *minl = json_object_get(s, "minLength"), *maxl = json_object_get(s, "maxLength");
    if ((fmt || pat) && (minl || maxl))
        return cg_fail(j->g, STATUS_EUNSUPPORTED, "%s: 'minLength'/'maxLength' together with '%s' is not supported", path,
                       fmt ? "format" : "pattern");
    if (fmt && pat) return cg_fail(j->g, STATUS_EUNSUPPORTED, "%s: 'format' together with 'pattern' is not supported", path);
    char *rule = NULL;
    enum status st = STATUS_OK;
    if (fmt) {
        const char *f = json_string_value(fmt);
        if (!f) return cg_fail(j->g, STATUS_EINVAL, "%s: 'format' must be a string", path);
        const char *re = NULL;
        for (int k = 0; formats[k].name; k++)
            if (!strcmp(formats[k].name, f)) re = formats[k].re;
        if (!strcmp(f, "date-time")) {
            // date "T" time, with the date and time rules of the table (and leap days).
            char *d1, *d2, *t;
            if ((st = gen_regex_rule(j, formats[0].re, true, &d1))) return st;
            if ((st = gen_regex_rule(j, leap_date, false, &d2))) { free(d1); return st; }
            if ((st = gen_regex_rule(j, formats[1].re, true, &t))) { free(d1); free(d2); return st; }
            strbuf_printf(o, "%s(%s | %s) \"T\" %s%s", q_open(j), d1, d2, t, q_close(j));
            free(d1); free(d2); free(t);
            return STATUS_OK;
        }
        if (!re) return cg_fail(j->g, STATUS_EUNSUPPORTED, "%s: string format '%s' is not supported", path, f);
        if ((st = gen_regex_rule(j, re, true, &rule))) return st;
        if (!strcmp(f, "date")) {
            char *leap;
            if ((st = gen_regex_rule(j, leap_date, false, &leap))) { free(rule); return st; }
            strbuf_printf(o, "%s(%s | %s)%s", q_open(j), rule, leap, q_close(j));
            free(leap);
            free(rule);
            return STATUS_OK;
        }
    } else if (pat) {
        const char *p = json_string_value(pat);
        if (!p) return cg_fail(j->g, STATUS_EINVAL, "%s: 'pattern' must be a string", path);
        rule = new_name(j, "pat");
        st = cg_regex_to_gbnf(j->g, p, strlen(p), rx_mode(j), true, rule, &j->out);
        if (st) { free(rule); return st; }
    }
    if (rule) {
        strbuf_printf(o, "%s%s%s", q_open(j), rule, q_close(j));
        free(rule);
        return STATUS_OK;
    }
    if (!minl && !maxl) { strbuf_puts(o, j->raw ? "xtext" : "jstr"); return STATUS_OK; }
    if ((minl && !json_is_integer(minl)) || (maxl && !json_is_integer(maxl)))
        return cg_fail(j->g, STATUS_EINVAL, "%s: minLength/maxLength must be integers", path);
    long long lo = minl ? json_integer_value(minl) : 0, hi = maxl ? json_integer_value(maxl) : -1;
    if (lo < 0) lo = 0;
    if (maxl && hi < lo) return cg_fail(j->g, STATUS_EINVAL, "%s: maxLength below minLength", path);
    if (lo > 100000 || hi > 100000) return cg_fail(j->g, STATUS_ENOMEM, "%s: string length bounds over 100000 are not supported", path);
    // raw text under length bounds leaves '<' out altogether (a simple count, and "</" cannot occur)
    const char *ch = j->raw ? "xchar" : "jchar";
    if (maxl) strbuf_printf(o, "%s%s{%lld,%lld}%s", q_open(j), ch, lo, hi, q_close(j));
    else strbuf_printf(o, "%s%s{%lld,}%s", q_open(j), ch, lo, q_close(j));
    return STATUS_OK;
}

/* ==== Objects ==== */

/* A JSON value as a GBNF literal of its compact encoding; with no_lt, '<' as \u003c (JSON has
 * '<' only inside strings, so the value is the same). */
static void put_json_literal(struct js *j, struct strbuf *o, json_t *v)
{
    char *enc = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    struct strbuf sb = {0};
    for (const char *p = enc; *p; p++) {
        if (*p == '<' && j->no_lt) strbuf_puts(&sb, "\\u003c");
        else strbuf_putc(&sb, *p);
    }
    put_literal(o, sb.data, sb.len);
    strbuf_free(&sb);
    free(enc);
}

/* JSON-encodes a property name as a GBNF literal of its quoted form. */
static void put_key(struct js *j, struct strbuf *o, const char *name)
{
    json_t *js = json_string(name);
    put_json_literal(j, o, js);
    json_decref(js);
}

static int cp_decode(const char *s, uint32_t *cp)
{
    unsigned char c = (unsigned char)s[0];
    int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : 4;
    uint32_t v = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
    for (int k = 1; k < len && s[k]; k++) v = (v << 6) | ((unsigned char)s[k] & 0x3F);
    *cp = v;
    return len;
}

/* A key (string content, no escapes) equal to none of names[0..n) past their common prefix of
 * `off` bytes: stop here (unless a name ends here), continue along a name, or leave them all. */
static void key_excl(struct js *j, const char *rule, const char **names, int n, size_t off)
{
    struct strbuf body = {0};
    bool ends = false;
    const char *sep = "";
    uint32_t cps[256];
    int n_cps = 0;
    for (int a = 0; a < n;) {
        if (!names[a][off]) { ends = true; a++; continue; }
        uint32_t cp;
        int len = cp_decode(names[a] + off, &cp);
        int b = a + 1;
        while (b < n && names[b][off] && !strncmp(names[b] + off, names[a] + off, (size_t)len)) b++;
        if (cp < 0x20 || cp == '"' || cp == '\\') { a = b; continue; }   // unreachable: extra keys are plain
        char *sub = new_name(j, "key");
        strbuf_printf(&body, "%s", sep);
        put_literal(&body, names[a] + off, (size_t)len);
        strbuf_printf(&body, " %s", sub);
        sep = " | ";
        if (n_cps < 256) cps[n_cps++] = cp;
        key_excl(j, sub, names + a, b - a, off + (size_t)len);
        free(sub);
        a = b;
    }
    strbuf_printf(&j->out, "%s ::= %s", rule, body.data ? body.data : "");
    if (!ends) strbuf_printf(&j->out, "%s\"\"", sep), sep = " | ";
    strbuf_printf(&j->out, "%s[^\"\\\\\\x00-\\x1F%s", sep, j->no_lt ? "<" : "");
    for (int k = 0; k < n_cps; k++) strbuf_printf(&j->out, "\\U%08X", cps[k]);
    strbuf_puts(&j->out, "] jplain*\n");
    strbuf_free(&body);
}

static int str_cmp(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static enum status gen_object(struct js *j, json_t *s, const char *path, struct strbuf *o)
{
    static const char *unsupported[] = { "patternProperties", "propertyNames", "minProperties", "maxProperties",
                                         "dependentRequired", "dependentSchemas", "unevaluatedProperties", "dependencies", NULL };
    for (int k = 0; unsupported[k]; k++)
        if (json_object_get(s, unsupported[k]))
            return cg_fail(j->g, STATUS_EUNSUPPORTED, "%s: keyword '%s' is not supported", path, unsupported[k]);
    json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
    json_t *addl = json_object_get(s, "additionalProperties");
    if (props && !json_is_object(props)) return cg_fail(j->g, STATUS_EINVAL, "%s: 'properties' must be an object", path);
    if (req && !json_is_array(req)) return cg_fail(j->g, STATUS_EINVAL, "%s: 'required' must be an array", path);
    if (addl && !json_is_boolean(addl) && !json_is_object(addl))
        return cg_fail(j->g, STATUS_EINVAL, "%s: 'additionalProperties' must be a boolean or a schema", path);
    size_t n_props = props ? json_object_size(props) : 0;
    if (!n_props && !req && (!addl || json_is_true(addl))) { strbuf_puts(o, "jobject"); return STATUS_OK; }

    // Listed properties (schema order), then required names not listed.
    size_t n_req = req ? json_array_size(req) : 0, n = 0;
    const char **names = xcalloc(n_props + n_req + 1, sizeof *names);
    char **rules = xcalloc(n_props + n_req + 1, sizeof *rules);
    bool *required = xcalloc(n_props + n_req + 1, sizeof *required);
    enum status st = STATUS_OK;
    const char *key;
    json_t *sub;
    char sub_path[512];
    json_object_foreach(props, key, sub) {
        snprintf(sub_path, sizeof sub_path, "%s/properties/%s", path, key);
        names[n] = key;
        if ((st = gen(j, sub, sub_path, &rules[n]))) goto out;
        n++;
    }
    for (size_t r = 0; r < n_req; r++) {
        const char *rn = json_string_value(json_array_get(req, r));
        if (!rn) { st = cg_fail(j->g, STATUS_EINVAL, "%s: 'required' must list strings", path); goto out; }
        size_t k = 0;
        while (k < n && strcmp(names[k], rn)) k++;
        if (k == n) {
            if (json_is_false(addl)) { st = cg_fail(j->g, STATUS_EINVAL, "%s: required property '%s' is forbidden by additionalProperties:false", path, rn); goto out; }
            names[n] = rn;
            snprintf(sub_path, sizeof sub_path, "%s/additionalProperties", path);
            if ((st = addl ? gen(j, addl, sub_path, &rules[n]) : (rules[n] = xstrdup("jvalue"), STATUS_OK))) goto out;
            n++;
        }
        required[k] = true;
    }
    // Additional properties only where the schema asks for them (true/schema with listed ones,
    // anything when nothing is listed); otherwise none, which is still valid.
    char *addl_rule = NULL;
    if (addl && !json_is_false(addl)) {
        snprintf(sub_path, sizeof sub_path, "%s/additionalProperties", path);
        if (json_is_true(addl)) addl_rule = xstrdup("jvalue");
        else if ((st = gen(j, addl, sub_path, &addl_rule))) goto out;
    }
    char *base = new_name(j, "obj");
    if (addl_rule) {
        // akv ::= key-not-listed ws ":" ws value ws
        char *kr = new_name(j, "key");
        if (n) {
            const char **sorted = xmalloc(n * sizeof *sorted);
            memcpy(sorted, names, n * sizeof *sorted);
            qsort(sorted, n, sizeof *sorted, str_cmp);
            char *kc = new_name(j, "key");
            key_excl(j, kc, sorted, (int)n, 0);
            strbuf_printf(&j->out, "%s ::= \"\\\"\" %s \"\\\"\"\n", kr, kc);
            free(kc);
            free(sorted);
        } else {
            strbuf_printf(&j->out, "%s ::= jstr\n", kr);
        }
        strbuf_printf(&j->out, "%s-akv ::= %s ws \":\" ws %s ws\n", base, kr, addl_rule);
        free(kr);
    }
    // base-s<i>-<f>: the rest from property i; f = 1 while nothing has been written yet.
    for (size_t i = n + 1; i-- > 0;)
        for (int first = 0; first < 2; first++) {
            strbuf_printf(&j->out, "%s-s%zu-%d ::= ", base, i, first);
            if (i == n) {
                if (!addl_rule) strbuf_puts(&j->out, "\"\"\n");
                else if (first) strbuf_printf(&j->out, "( %s-akv ( \",\" ws %s-akv )* )?\n", base, base);
                else strbuf_printf(&j->out, "( \",\" ws %s-akv )*\n", base);
                continue;
            }
            strbuf_printf(&j->out, "%s", first ? "" : "\",\" ws ");
            put_key(j, &j->out, names[i]);
            strbuf_printf(&j->out, " ws \":\" ws %s ws %s-s%zu-0", rules[i], base, i + 1);
            if (!required[i]) strbuf_printf(&j->out, " | %s-s%zu-%d", base, i + 1, first);
            strbuf_putc(&j->out, '\n');
        }
    strbuf_printf(o, "\"{\" ws %s-s0-1 \"}\"", base);
    free(base);
    free(addl_rule);
out:
    for (size_t k = 0; k < n_props + n_req; k++) free(rules[k]);
    free(rules);
    free(names);
    free(required);
    return st;
}

/* ==== Arrays ==== */

static enum status gen_array(struct js *j, json_t *s, const char *path, struct strbuf *o)
{
    static const char *unsupported[] = { "contains", "minContains", "maxContains", "unevaluatedItems", "additionalItems", NULL };
    for (int k = 0; unsupported[k]; k++)
        if (json_object_get(s, unsupported[k]))
            return cg_fail(j->g, STATUS_EUNSUPPORTED, "%s: keyword '%s' is not supported", path, unsupported[k]);
    json_t *uniq = json_object_get(s, "uniqueItems");
    if (uniq && !json_is_false(uniq)) return cg_fail(j->g, STATUS_EUNSUPPORTED, "%s: keyword 'uniqueItems' is not supported", path);
    json_t *items = json_object_get(s, "items"), *prefix = json_object_get(s, "prefixItems");
    json_t *mini = json_object_get(s, "minItems"), *maxi = json_object_get(s, "maxItems");
    if (items && json_is_array(items))
        return cg_fail(j->g, STATUS_EUNSUPPORTED, "%s: array-valued 'items' (draft 4-7 tuples) is not supported; use prefixItems", path);
    if (prefix && !json_is_array(prefix)) return cg_fail(j->g, STATUS_EINVAL, "%s: 'prefixItems' must be an array", path);
    if ((mini && !json_is_integer(mini)) || (maxi && !json_is_integer(maxi)))
        return cg_fail(j->g, STATUS_EINVAL, "%s: minItems/maxItems must be integers", path);
    long long lo = mini ? json_integer_value(mini) : 0, hi = maxi ? json_integer_value(maxi) : -1;
    if (lo < 0) lo = 0;
    if (lo > 100000 || hi > 100000) return cg_fail(j->g, STATUS_ENOMEM, "%s: item counts over 100000 are not supported", path);
    size_t k = prefix ? json_array_size(prefix) : 0;
    char sub_path[512];
    char *item = NULL;
    enum status st = STATUS_OK;
    bool items_false = items && json_is_false(items);
    if (items && !items_false) {
        snprintf(sub_path, sizeof sub_path, "%s/items", path);
        if ((st = gen(j, items, sub_path, &item))) return st;
    } else if (!items) {
        item = xstrdup("jvalue");
    }
    long long max_total = hi;
    if (items_false && (max_total < 0 || max_total > (long long)k)) max_total = (long long)k;
    if (max_total >= 0 && lo > max_total) { free(item); return cg_fail(j->g, STATUS_EINVAL, "%s: minItems exceeds the items allowed", path); }
    char *base = new_name(j, "arr");
    // base-a<i>: the rest after i items (i < k: prefix positions; i == k: repeated items).
    size_t stop = max_total >= 0 && (size_t)max_total < k ? (size_t)max_total : k;
    for (size_t i = 0; i <= stop && !st; i++) {
        const char *sep = i ? "\",\" ws " : "";
        if (i < stop) {
            char *pr;
            snprintf(sub_path, sizeof sub_path, "%s/prefixItems/%zu", path, i);
            if ((st = gen(j, json_array_get(prefix, i), sub_path, &pr))) break;
            strbuf_printf(&j->out, "%s-a%zu ::= %s%s ws %s-a%zu", base, i, sep, pr, base, i + 1);
            if ((long long)i >= lo) strbuf_puts(&j->out, " | \"\"");
            strbuf_putc(&j->out, '\n');
            free(pr);
            continue;
        }
        // Past the prefix (or at the maximum): r more items, r in [rlo, rhi].
        strbuf_printf(&j->out, "%s-a%zu ::= ", base, i);
        long long rlo = lo - (long long)i, rhi = max_total < 0 ? -1 : max_total - (long long)i;
        if (rlo < 0) rlo = 0;
        if (!item || rhi == 0) { strbuf_puts(&j->out, "\"\"\n"); continue; }
        char rep[64];
        if (i == 0) {
            // The first item has no comma before it.
            if (rhi < 0) snprintf(rep, sizeof rep, "{%lld,}", rlo ? rlo - 1 : 0);
            else snprintf(rep, sizeof rep, "{%lld,%lld}", rlo ? rlo - 1 : 0, rhi - 1);
            strbuf_printf(&j->out, "%s%s ws ( \",\" ws %s ws )%s%s\n", rlo ? "" : "( ", item, item, rep, rlo ? "" : " )?");
        } else {
            if (rhi < 0) snprintf(rep, sizeof rep, "{%lld,}", rlo);
            else snprintf(rep, sizeof rep, "{%lld,%lld}", rlo, rhi);
            strbuf_printf(&j->out, "( \",\" ws %s ws )%s\n", item, rep);
        }
    }
    if (!st) strbuf_printf(o, "\"[\" ws %s-a0 \"]\"", base);
    free(base);
    free(item);
    return st;
}

/* ==== Enum, const, composition, references ==== */

static bool type_allows(json_t *type, json_t *v)
{
    if (!type) return true;
    const char *t = pyjson_type_name(v);
    json_t *list = json_is_array(type) ? type : NULL;
    size_t n = list ? json_array_size(list) : 1;
    for (size_t k = 0; k < n; k++) {
        const char *want = json_string_value(list ? json_array_get(list, k) : type);
        if (!want) continue;
        if (!strcmp(want, t)) return true;
        if (!strcmp(want, "number") && !strcmp(t, "integer")) return true;
        if (!strcmp(want, "integer") && json_is_real(v) && json_real_value(v) == floor(json_real_value(v))) return true;
    }
    return false;
}

static enum status gen_enum(struct js *j, json_t *s, const char *path, json_t *values, struct strbuf *o)
{
    static const char *allowed[] = { "enum", "const", "type", NULL };
    const char *key;
    json_t *v;
    json_object_foreach(s, key, v) {
        bool ok = is_annotation(key);
        for (int k = 0; allowed[k]; k++) ok |= !strcmp(key, allowed[k]);
        if (!ok) return cg_fail(j->g, STATUS_EUNSUPPORTED, "%s: keyword '%s' beside enum/const is not supported", path, key);
    }
    json_t *type = json_object_get(s, "type");
    strbuf_puts(o, "(");
    const char *sep = "";
    for (size_t k = 0; k < json_array_size(values); k++) {
        json_t *val = json_array_get(values, k);
        if (!type_allows(type, val)) continue;
        if (j->raw) {   // raw text: the string itself, unless it could close the XML element
            const char *str = json_string_value(val);
            if (!str || strstr(str, "</") || strlen(str) != json_string_length(val)) continue;
            strbuf_puts(o, sep);
            put_literal(o, str, strlen(str));
        } else {
            strbuf_puts(o, sep);
            put_json_literal(j, o, val);
        }
        sep = " | ";
    }
    strbuf_puts(o, ")");
    if (!*sep) return cg_fail(j->g, STATUS_EINVAL, "%s: no enum/const value has the schema's type", path);
    return STATUS_OK;
}

static json_t *resolve_ref(struct js *j, const char *ref)
{
    if (ref[0] != '#') return NULL;
    json_t *cur = j->doc;
    const char *p = ref + 1;
    while (*p == '/') {
        p++;
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        // JSON pointer unescaping: ~1 is '/', ~0 is '~'; also %xx from URI fragments.
        char *tok = xmalloc(len + 1);
        size_t w = 0;
        for (size_t i = 0; i < len; i++) {
            if (p[i] == '~' && i + 1 < len && (p[i + 1] == '0' || p[i + 1] == '1')) { tok[w++] = p[i + 1] == '0' ? '~' : '/'; i++; }
            else if (p[i] == '%' && i + 2 < len) { unsigned x; sscanf(p + i + 1, "%2x", &x); tok[w++] = (char)x; i += 2; }
            else tok[w++] = p[i];
        }
        tok[w] = 0;
        if (json_is_object(cur)) cur = json_object_get(cur, tok);
        else if (json_is_array(cur)) cur = json_array_get(cur, (size_t)strtoul(tok, NULL, 10));
        else cur = NULL;
        free(tok);
        if (!cur) return NULL;
        p += len;
    }
    return *p ? NULL : cur;
}

/* The JSON types a schema can produce (bit per type), for oneOf disjointness. */
enum { T_NULL = 1, T_BOOL = 2, T_OBJ = 4, T_ARR = 8, T_STR = 16, T_NUM = 32, T_ALL = 63 };

static unsigned type_bit(const char *t)
{
    if (!t) return 0;
    if (!strcmp(t, "null")) return T_NULL;
    if (!strcmp(t, "boolean")) return T_BOOL;
    if (!strcmp(t, "object")) return T_OBJ;
    if (!strcmp(t, "array")) return T_ARR;
    if (!strcmp(t, "string")) return T_STR;
    if (!strcmp(t, "number") || !strcmp(t, "integer")) return T_NUM;
    return 0;
}

static unsigned types_of(struct js *j, json_t *s, int depth)
{
    if (!json_is_object(s) || depth > 16) return T_ALL;
    json_t *ref = json_object_get(s, "$ref");
    if (ref && json_string_value(ref)) return types_of(j, resolve_ref(j, json_string_value(ref)), depth + 1);
    json_t *vals = json_object_get(s, "enum"), *c = json_object_get(s, "const");
    if (c || vals) {
        unsigned t = 0;
        size_t n = c ? 1 : json_array_size(vals);
        for (size_t k = 0; k < n; k++) t |= type_bit(pyjson_type_name(c ? c : json_array_get(vals, k)));
        return t;
    }
    json_t *type = json_object_get(s, "type");
    if (type) {
        unsigned t = 0;
        if (json_is_string(type)) return type_bit(json_string_value(type));
        for (size_t k = 0; k < json_array_size(type); k++) t |= type_bit(json_string_value(json_array_get(type, k)));
        return t;
    }
    json_t *alts = json_object_get(s, "anyOf");
    if (!alts) alts = json_object_get(s, "oneOf");
    if (alts) {
        unsigned t = 0;
        for (size_t k = 0; k < json_array_size(alts); k++) t |= types_of(j, json_array_get(alts, k), depth + 1);
        return t;
    }
    if (json_object_get(s, "properties")) return T_OBJ;
    if (json_object_get(s, "items") || json_object_get(s, "prefixItems")) return T_ARR;
    return T_ALL;
}

static json_t *deref(struct js *j, json_t *s)
{
    for (int k = 0; k < 16 && json_is_object(s) && json_object_get(s, "$ref"); k++)
        s = resolve_ref(j, json_string_value(json_object_get(s, "$ref")) ? json_string_value(json_object_get(s, "$ref")) : "");
    return s;
}

/* Values a schema allows for a property, when it lists them (const/enum), else NULL. */
static json_t *listed_values(json_t *s, json_t **one)
{
    *one = json_object_get(s, "const");
    return *one ? NULL : json_object_get(s, "enum");
}

static bool values_disjoint(json_t *a, json_t *b)
{
    json_t *a1, *b1;
    json_t *av = listed_values(a, &a1), *bv = listed_values(b, &b1);
    if (!(a1 || av) || !(b1 || bv)) return false;
    size_t na = a1 ? 1 : json_array_size(av), nb = b1 ? 1 : json_array_size(bv);
    for (size_t x = 0; x < na; x++)
        for (size_t y = 0; y < nb; y++)
            if (json_equal(a1 ? a1 : json_array_get(av, x), b1 ? b1 : json_array_get(bv, y))) return false;
    return true;
}

static bool is_required(json_t *s, const char *name)
{
    json_t *req = json_object_get(s, "required");
    for (size_t k = 0; k < json_array_size(req); k++)
        if (json_string_value(json_array_get(req, k)) && !strcmp(json_string_value(json_array_get(req, k)), name)) return true;
    return false;
}

/* True when no instance can satisfy both a and b (checked cheaply; false means "not shown"). */
static bool disjoint(struct js *j, json_t *a, json_t *b)
{
    if (!(types_of(j, a, 0) & types_of(j, b, 0))) return true;
    a = deref(j, a);
    b = deref(j, b);
    if (!json_is_object(a) || !json_is_object(b)) return false;
    if (values_disjoint(a, b)) return true;
    for (int pass = 0; pass < 2; pass++) {
        json_t *x = pass ? b : a, *y = pass ? a : b;
        json_t *xp = json_object_get(x, "properties"), *yp = json_object_get(y, "properties");
        const char *key;
        json_t *xs;
        json_object_foreach(xp, key, xs) {
            if (!is_required(x, key)) continue;
            json_t *ys = json_object_get(yp, key);
            if (!ys && json_is_false(json_object_get(y, "additionalProperties"))) return true;
            if (ys && values_disjoint(deref(j, xs), deref(j, ys))) return true;
        }
    }
    return false;
}

static enum status gen_alternatives(struct js *j, json_t *s, const char *path, const char *kw, struct strbuf *o)
{
    json_t *alts = json_object_get(s, kw);
    if (!json_is_array(alts) || !json_array_size(alts))
        return cg_fail(j->g, STATUS_EINVAL, "%s: '%s' must be a non-empty array", path, kw);
    const char *key;
    json_t *v;
    json_object_foreach(s, key, v)
        if (strcmp(key, kw) && !is_annotation(key))
            return cg_fail(j->g, STATUS_EUNSUPPORTED, "%s: keyword '%s' beside '%s' is not supported", path, key, kw);
    if (!strcmp(kw, "oneOf"))
        for (size_t a = 0; a < json_array_size(alts); a++)
            for (size_t b = a + 1; b < json_array_size(alts); b++)
                if (!disjoint(j, json_array_get(alts, a), json_array_get(alts, b)))
                    return cg_fail(j->g, STATUS_EUNSUPPORTED,
                                   "%s: 'oneOf' whose alternatives %zu and %zu may overlap is not supported (use anyOf)", path, a, b);
    strbuf_puts(o, "(");
    for (size_t k = 0; k < json_array_size(alts); k++) {
        char sub_path[512], *rule;
        snprintf(sub_path, sizeof sub_path, "%s/%s/%zu", path, kw, k);
        enum status st = gen(j, json_array_get(alts, k), sub_path, &rule);
        if (st) return st;
        strbuf_printf(o, "%s%s", k ? " | " : "", rule);
        free(rule);
    }
    strbuf_puts(o, ")");
    return STATUS_OK;
}

static enum status gen_ref(struct js *j, json_t *s, const char *path, char **rule)
{
    const char *ref = json_string_value(json_object_get(s, "$ref"));
    if (!ref) return cg_fail(j->g, STATUS_EINVAL, "%s: '$ref' must be a string", path);
    const char *key;
    json_t *v;
    json_object_foreach(s, key, v)
        if (strcmp(key, "$ref") && !is_annotation(key))
            return cg_fail(j->g, STATUS_EUNSUPPORTED, "%s: keyword '%s' beside '$ref' is not supported", path, key);
    for (uint32_t k = 0; k < j->n_refs; k++)
        if (!strcmp(j->ref_keys[k], ref)) { *rule = xstrdup(j->ref_rules[k]); return STATUS_OK; }
    json_t *target = resolve_ref(j, ref);
    if (!target) return cg_fail(j->g, STATUS_EUNSUPPORTED, "%s: '$ref' '%s' does not resolve in this document", path, ref);
    // Name the rule before generating it, so recursive references find it.
    j->ref_keys = xrealloc(j->ref_keys, (j->n_refs + 1) * sizeof *j->ref_keys);
    j->ref_rules = xrealloc(j->ref_rules, (j->n_refs + 1) * sizeof *j->ref_rules);
    j->ref_keys[j->n_refs] = xstrdup(ref);
    char *name = new_name(j, "ref");
    j->ref_rules[j->n_refs++] = name;
    char *body;
    enum status st = gen(j, target, ref, &body);
    if (st) return st;
    strbuf_printf(&j->out, "%s ::= %s\n", name, body);
    free(body);
    *rule = xstrdup(name);
    return STATUS_OK;
}

/* ==== Schema -> rule ==== */

static const char *known_keywords[] = {
    "type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref",
    "properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems", "uniqueItems",
    "minLength", "maxLength", "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "multipleOf", NULL,
};

/* Writes the rule for s (a fresh helper or a shared one) into *rule (caller frees). */
static enum status gen(struct js *j, json_t *s, const char *path, char **rule)
{
    *rule = NULL;
    enum status st = budget(j);
    if (st) return st;
    if (json_is_true(s)) { *rule = xstrdup("jvalue"); return STATUS_OK; }
    if (json_is_false(s)) return cg_fail(j->g, STATUS_EINVAL, "%s: schema 'false' matches nothing", path);
    if (!json_is_object(s)) return cg_fail(j->g, STATUS_EINVAL, "%s: a schema must be an object or a boolean", path);
    if (++j->depth > j->g->budget.max_depth) return cg_fail(j->g, STATUS_ENOMEM, "schema nests deeper than %u levels (at %.100s...)", j->g->budget.max_depth, path);
    const char *key;
    json_t *v;
    json_object_foreach(s, key, v) {
        if (is_annotation(key)) continue;
        bool known = false;
        for (int k = 0; known_keywords[k] && !known; k++) known = !strcmp(key, known_keywords[k]);
        if (!known) { j->depth--; return cg_fail(j->g, STATUS_EUNSUPPORTED, "%s: keyword '%s' is not supported", path, key); }
    }
    struct strbuf body = {0};
    json_t *type = json_object_get(s, "type");
    json_t *all = json_object_get(s, "allOf");
    if (json_object_get(s, "$ref")) {
        st = gen_ref(j, s, path, rule);
        j->depth--;
        return st;
    } else if (all) {
        if (!json_is_array(all) || json_array_size(all) != 1 || json_object_size(s) - 1 > 0) {
            json_object_foreach(s, key, v)
                if (strcmp(key, "allOf") && !is_annotation(key)) { st = cg_fail(j->g, STATUS_EUNSUPPORTED, "%s: keyword 'allOf' (beside '%s') is not supported", path, key); goto out; }
            if (json_array_size(all) != 1) { st = cg_fail(j->g, STATUS_EUNSUPPORTED, "%s: keyword 'allOf' with more than one schema is not supported", path); goto out; }
        }
        char sub_path[512];
        snprintf(sub_path, sizeof sub_path, "%s/allOf/0", path);
        st = gen(j, json_array_get(all, 0), sub_path, rule);
        j->depth--;
        return st;
    } else if (json_object_get(s, "anyOf")) {
        st = gen_alternatives(j, s, path, "anyOf", &body);
    } else if (json_object_get(s, "oneOf")) {
        st = gen_alternatives(j, s, path, "oneOf", &body);
    } else if (json_object_get(s, "const")) {
        json_t *one = json_array();
        json_array_append(one, json_object_get(s, "const"));
        st = gen_enum(j, s, path, one, &body);
        json_decref(one);
    } else if (json_object_get(s, "enum")) {
        if (!json_is_array(json_object_get(s, "enum"))) st = cg_fail(j->g, STATUS_EINVAL, "%s: 'enum' must be an array", path);
        else st = gen_enum(j, s, path, json_object_get(s, "enum"), &body);
    } else {
        // By type; without one, the type the keywords imply (or any value).
        const char *types[8];
        int n_types = 0;
        if (json_is_string(type)) types[n_types++] = json_string_value(type);
        else if (json_is_array(type)) {
            for (size_t k = 0; k < json_array_size(type) && n_types < 8; k++)
                if (json_string_value(json_array_get(type, k))) types[n_types++] = json_string_value(json_array_get(type, k));
            if (!n_types) { st = cg_fail(j->g, STATUS_EINVAL, "%s: empty 'type' list", path); goto out; }
        } else if (type) {
            st = cg_fail(j->g, STATUS_EINVAL, "%s: 'type' must be a string or an array", path);
            goto out;
        } else if (json_object_get(s, "properties") || json_object_get(s, "required") || json_object_get(s, "additionalProperties")) types[n_types++] = "object";
        else if (json_object_get(s, "items") || json_object_get(s, "prefixItems") || json_object_get(s, "minItems") || json_object_get(s, "maxItems")) types[n_types++] = "array";
        else if (json_object_get(s, "minLength") || json_object_get(s, "maxLength") || json_object_get(s, "pattern") || json_object_get(s, "format")) types[n_types++] = "string";
        else if (json_object_get(s, "minimum") || json_object_get(s, "maximum") || json_object_get(s, "exclusiveMinimum") || json_object_get(s, "exclusiveMaximum")) types[n_types++] = "number";
        if (!n_types) { *rule = xstrdup("jvalue"); j->depth--; return STATUS_OK; }
        strbuf_puts(&body, "(");
        for (int k = 0; k < n_types && !st; k++) {
            const char *t = types[k];
            if (k) strbuf_puts(&body, " | ");
            if (!strcmp(t, "string")) st = gen_string(j, s, path, &body);
            else if (!strcmp(t, "integer")) st = cg_json_integer(j->g, s, path, &body);
            else if (!strcmp(t, "number")) st = cg_json_number(j->g, s, path, &body);
            else if (!strcmp(t, "boolean")) strbuf_puts(&body, "jbool");
            else if (!strcmp(t, "null")) strbuf_puts(&body, "jnull");
            else if (!strcmp(t, "object")) st = gen_object(j, s, path, &body);
            else if (!strcmp(t, "array")) st = gen_array(j, s, path, &body);
            else st = cg_fail(j->g, STATUS_EINVAL, "%s: unknown type '%s'", path, t);
        }
        strbuf_puts(&body, ")");
    }
    if (!st) {
        *rule = new_name(j, "s");
        strbuf_printf(&j->out, "%s ::= %s\n", *rule, body.data);
    }
out:
    strbuf_free(&body);
    j->depth--;
    return st;
}

/* The GBNF text of a schema document (NULL: any object), top rule "root". */
static enum status doc_to_gbnf(json_t *doc, const struct constraint_json_opts *opts, const struct constraint_budget *budget,
                               struct strbuf *text, char *err, size_t err_cap)
{
    struct cg_grammar tmp;
    cg_init(&tmp, budget, err, err_cap);
    struct js j = { .g = &tmp, .doc = doc };
    put_common(&j, opts ? opts->ws_max : 0);
    char *rule = NULL;
    enum status st = doc ? gen(&j, doc, "#", &rule) : STATUS_OK;
    if (!st) strbuf_printf(&j.out, "root ::= %s\n", doc ? rule : "jobject");
    free(rule);
    for (uint32_t k = 0; k < j.n_refs; k++) { free(j.ref_keys[k]); free(j.ref_rules[k]); }
    free(j.ref_keys);
    free(j.ref_rules);
    cg_deinit(&tmp);
    *text = j.out;
    return st;
}

static enum status compile_doc(json_t *doc, const struct constraint_json_opts *opts, const struct constraint_budget *budget,
                               struct constraint_grammar **out, char *err, size_t err_cap)
{
    struct strbuf text = {0};
    enum status st = doc_to_gbnf(doc, opts, budget, &text, err, err_cap);
    if (!st) st = cg_compile_text(text.data, text.len, budget, out, err, err_cap);
    else *out = NULL;
    strbuf_free(&text);
    return st;
}

/* Prefixes every rule name of generated GBNF (names start with a letter; literals, classes and
 * repetition counts are copied as they are). */
static void prefix_names(const char *s, size_t n, const char *prefix, struct strbuf *out)
{
    for (size_t i = 0; i < n;) {
        char c = s[i];
        if (c == '"' || c == '[') {
            char close = c == '"' ? '"' : ']';
            size_t k = i + 1;
            while (k < n && s[k] != close) k += s[k] == '\\' ? 2 : 1;
            k = k < n ? k + 1 : n;
            strbuf_append(out, s + i, k - i);
            i = k;
        } else if (c == '{') {
            size_t k = i;
            while (k < n && s[k] != '}') k++;
            k = k < n ? k + 1 : n;
            strbuf_append(out, s + i, k - i);
            i = k;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
            size_t k = i;
            while (k < n && ((s[k] >= 'a' && s[k] <= 'z') || (s[k] >= 'A' && s[k] <= 'Z') || (s[k] >= '0' && s[k] <= '9') ||
                             s[k] == '-' || s[k] == '_' || s[k] == '.'))
                k++;
            strbuf_puts(out, prefix);
            strbuf_append(out, s + i, k - i);
            i = k;
        } else {
            strbuf_putc(out, c);
            i++;
        }
    }
}

/* The schema text parsed, or NULL with the parse error in err. */
static json_t *schema_load(const char *schema, size_t len, char *err, size_t err_cap)
{
    json_error_t jerr;
    json_t *doc = json_loadb(schema, len, JSON_DECODE_ANY, &jerr);
    if (!doc && err && err_cap) snprintf(err, err_cap, "schema is not valid JSON: %s (line %d)", jerr.text, jerr.line);
    return doc;
}

enum status constraint_json_schema_gbnf(const char *schema, size_t len, const struct constraint_json_opts *opts,
                                        const char *prefix, char **out, char *err, size_t err_cap)
{
    *out = NULL;
    json_t *doc = NULL;
    if (schema && !(doc = schema_load(schema, len, err, err_cap))) return STATUS_EINVAL;
    for (const char *p = prefix; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_')) {
            json_decref(doc);
            if (err && err_cap) snprintf(err, err_cap, "rule prefix '%s' has characters other than [A-Za-z0-9_-]", prefix);
            return STATUS_EINVAL;
        }
    struct strbuf text = {0}, named = {0};
    enum status st = doc_to_gbnf(doc, opts, NULL, &text, err, err_cap);
    json_decref(doc);
    if (!st) {
        prefix_names(text.data, text.len, prefix, &named);
        *out = strbuf_take(&named);
    }
    strbuf_free(&text);
    return st;
}

enum status constraint_compile_json_schema(const char *schema, size_t len, const struct constraint_json_opts *opts,
                                           const struct constraint_budget *budget,
                                           struct constraint_grammar **out, char *err, size_t err_cap)
{
    json_t *doc = schema_load(schema, len, err, err_cap);
    if (!doc) {
        *out = NULL;
        return STATUS_EINVAL;
    }
    enum status st = compile_doc(doc, opts, budget, out, err, err_cap);
    json_decref(doc);
    return st;
}

enum status constraint_compile_json_object(const struct constraint_json_opts *opts,
                                           struct constraint_grammar **out, char *err, size_t err_cap)
{
    return compile_doc(NULL, opts, NULL, out, err, err_cap);
}

/* ==== Qwen3-Coder XML parameters ==== */

/* A parameter name as the XML form can carry it (what toolparse reads back as one name). */
static bool xml_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (!n || n > 120) return false;
    for (const char *p = name; *p; p++)   // (toolparse trims spaces and ends a name at these)
        if ((unsigned char)*p <= ' ' || strchr("<>{=\"\\", *p)) return false;
    return true;
}

/* The value rule of one parameter: raw text when the schema's type is exactly "string" (how the
 * parser reads the value back: as text), JSON otherwise (the parser decodes it). */
static enum status xml_value(struct js *j, json_t *sub, const char *path, char **rule)
{
    const char *type = json_string_value(json_object_get(sub, "type"));
    if (!type || strcmp(type, "string")) return gen(j, sub, path, rule);
    static const char *composite[] = { "anyOf", "oneOf", "allOf", "$ref", NULL };
    for (int k = 0; composite[k]; k++)
        if (json_object_get(sub, composite[k]))
            return cg_fail(j->g, STATUS_EUNSUPPORTED, "%s: '%s' beside type 'string' is not supported in the XML tool-call form", path, composite[k]);
    j->raw = true;
    enum status st = gen(j, sub, path, rule);
    j->raw = false;
    return st;
}

static enum status xml_params(struct js *j, json_t *doc, struct strbuf *o)
{
    if (!doc || json_is_true(doc)) return STATUS_OK;   // no parameters: an empty body
    if (!json_is_object(doc)) return cg_fail(j->g, STATUS_EINVAL, "#: the parameters must be an object schema");
    const char *key;
    json_t *v;
    json_object_foreach(doc, key, v) {
        if (is_annotation(key) || !strcmp(key, "properties") || !strcmp(key, "required") ||
            !strcmp(key, "additionalProperties"))
            continue;
        if (!strcmp(key, "type") && json_is_string(v) && !strcmp(json_string_value(v), "object")) continue;
        return cg_fail(j->g, STATUS_EUNSUPPORTED, "#: keyword '%s' at the top of the parameters is not supported in the XML tool-call form (an object schema with 'properties')", key);
    }
    json_t *props = json_object_get(doc, "properties"), *req = json_object_get(doc, "required");
    json_t *addl = json_object_get(doc, "additionalProperties");
    if (props && !json_is_object(props)) return cg_fail(j->g, STATUS_EINVAL, "#: 'properties' must be an object");
    if (req && !json_is_array(req)) return cg_fail(j->g, STATUS_EINVAL, "#: 'required' must be an array");
    char path[512];
    json_t *sub;
    // listed properties in schema order, optional ones may be left out; other names are not written
    json_object_foreach(props, key, sub) {
        bool required = false;
        for (size_t r = 0; r < json_array_size(req); r++)
            required |= json_is_string(json_array_get(req, r)) && !strcmp(json_string_value(json_array_get(req, r)), key);
        if (!xml_name_ok(key)) {
            if (required) return cg_fail(j->g, STATUS_EUNSUPPORTED, "#/properties/%s: this name cannot be written as an XML parameter", key);
            continue;
        }
        snprintf(path, sizeof path, "#/properties/%s", key);
        char *rule;
        enum status st = xml_value(j, sub, path, &rule);
        if (st) return st;
        strbuf_printf(o, " %s\"<parameter=%s>\\n\" %s \"\\n</parameter>\\n\"%s", required ? "" : "(", key, rule,
                      required ? "" : ")?");
        free(rule);
    }
    for (size_t r = 0; r < json_array_size(req); r++) {
        const char *rn = json_string_value(json_array_get(req, r));
        if (!rn) return cg_fail(j->g, STATUS_EINVAL, "#: 'required' must list strings");
        if (json_object_get(props, rn)) continue;
        if (json_is_false(addl)) return cg_fail(j->g, STATUS_EINVAL, "#: required property '%s' is forbidden by additionalProperties:false", rn);
        if (!xml_name_ok(rn)) return cg_fail(j->g, STATUS_EUNSUPPORTED, "#/required: '%s' cannot be written as an XML parameter", rn);
        char *rule = xstrdup("jvalue");
        if (json_is_object(addl)) {
            free(rule);
            enum status st = xml_value(j, addl, "#/additionalProperties", &rule);
            if (st) return st;
        }
        strbuf_printf(o, " \"<parameter=%s>\\n\" %s \"\\n</parameter>\\n\"", rn, rule);
        free(rule);
    }
    return STATUS_OK;
}

enum status constraint_tool_xml_gbnf(const char *schema, size_t len, const char *prefix, char **out, char *err,
                                     size_t err_cap)
{
    *out = NULL;
    json_t *doc = NULL;
    if (schema && !(doc = schema_load(schema, len, err, err_cap))) return STATUS_EINVAL;
    struct cg_grammar tmp;
    cg_init(&tmp, NULL, err, err_cap);
    struct js j = { .g = &tmp, .doc = doc, .no_lt = true };
    put_common(&j, 0);
    struct strbuf body = {0};
    enum status st = xml_params(&j, doc, &body);
    if (!st) strbuf_printf(&j.out, "root ::= \"\"%s\n", body.data ? body.data : "");
    strbuf_free(&body);
    for (uint32_t k = 0; k < j.n_refs; k++) { free(j.ref_keys[k]); free(j.ref_rules[k]); }
    free(j.ref_keys);
    free(j.ref_rules);
    cg_deinit(&tmp);
    json_decref(doc);
    if (!st) {
        struct strbuf named = {0};
        prefix_names(j.out.data, j.out.len, prefix, &named);
        *out = strbuf_take(&named);
    }
    strbuf_free(&j.out);
    return st;
}
