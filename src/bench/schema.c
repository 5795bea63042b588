/* schema: a small JSON Schema checker for tool-call arguments (subset listed in schema.h).
 * Recursion depth follows the schema, which is ours (bench/prompt.c) or the caller's; a depth
 * bound keeps a self-similar document from recursing without end. */
#include "bench/schema.h"
#include "text/pyjson.h"

#include <stdio.h>
#include <string.h>

#define SCHEMA_DEPTH_MAX 64

static bool type_matches(const char *want, const json_t *v)
{
    if (!strcmp(want, "object"))  return json_is_object(v);
    if (!strcmp(want, "array"))   return json_is_array(v);
    if (!strcmp(want, "string"))  return json_is_string(v);
    if (!strcmp(want, "number"))  return json_is_number(v);
    if (!strcmp(want, "integer")) {
        if (json_is_integer(v)) return true;
        // 3.0 is an integer in JSON Schema
        return json_is_real(v) && json_real_value(v) == (double)(long long)json_real_value(v);
    }
    if (!strcmp(want, "boolean")) return json_is_boolean(v);
    if (!strcmp(want, "null"))    return json_is_null(v);
    return true;                  // unknown type name: not ours to reject
}

static bool fail(char *why, size_t why_len, const char *path, const char *fmt, const char *a, const char *b)
{
    if (why && why_len) {
        char msg[200];
        snprintf(msg, sizeof msg, fmt, a, b);
        snprintf(why, why_len, "%s: %s", path, msg);
    }
    return false;
}

static bool check(const json_t *s, const json_t *v, const char *path, int depth, char *why, size_t why_len)
{
    if (!s || !json_is_object(s)) return true;   // true/absent schema
    if (depth > SCHEMA_DEPTH_MAX) return fail(why, why_len, path, "%s%s", "schema nested too deeply", "");

    const json_t *type = json_object_get(s, "type");
    if (json_is_string(type)) {
        if (!type_matches(json_string_value(type), v))
            return fail(why, why_len, path, "expected %s, got %s", json_string_value(type), pyjson_type_name(v));
    } else if (json_is_array(type)) {
        size_t i;
        const json_t *t;
        bool ok = false;
        json_array_foreach(type, i, t) if (json_is_string(t) && type_matches(json_string_value(t), v)) ok = true;
        if (!ok) return fail(why, why_len, path, "type %s not among the allowed types%s", pyjson_type_name(v), "");
    }

    const json_t *en = json_object_get(s, "enum");
    if (json_is_array(en)) {
        size_t i;
        const json_t *e;
        bool ok = false;
        json_array_foreach(en, i, e) if (json_equal((json_t *)e, (json_t *)v)) ok = true;
        if (!ok) {
            char *dump = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
            bool r = fail(why, why_len, path, "value %.80s not in enum%s", dump ? dump : "?", "");
            free(dump);
            return r;
        }
    }

    if (json_is_object(v)) {
        const json_t *props = json_object_get(s, "properties");
        const json_t *req = json_object_get(s, "required");
        const json_t *addl = json_object_get(s, "additionalProperties");
        if (json_is_array(req)) {
            size_t i;
            const json_t *r;
            json_array_foreach(req, i, r) {
                if (json_is_string(r) && !json_object_get(v, json_string_value(r)))
                    return fail(why, why_len, path, "missing required property \"%s\"%s", json_string_value(r), "");
            }
        }
        const char *key;
        const json_t *val;
        json_object_foreach((json_t *)v, key, val) {
            char sub[512];
            snprintf(sub, sizeof sub, "%s.%s", path, key);
            const json_t *ps = json_is_object(props) ? json_object_get(props, key) : NULL;
            if (ps) {
                if (!check(ps, val, sub, depth + 1, why, why_len)) return false;
            } else if (json_is_false(addl)) {
                return fail(why, why_len, path, "unexpected property \"%s\"%s", key, "");
            } else if (json_is_object(addl)) {
                if (!check(addl, val, sub, depth + 1, why, why_len)) return false;
            }
        }
    }

    if (json_is_array(v)) {
        const json_t *items = json_object_get(s, "items");
        if (json_is_object(items)) {
            size_t i;
            const json_t *e;
            json_array_foreach(v, i, e) {
                char sub[512];
                snprintf(sub, sizeof sub, "%s[%zu]", path, i);
                if (!check(items, e, sub, depth + 1, why, why_len)) return false;
            }
        }
    }
    return true;
}

bool schema_check(const json_t *schema, const json_t *value, char *why, size_t why_len)
{
    if (why && why_len) why[0] = '\0';
    if (!value) return fail(why, why_len, "$", "%s%s", "no value", "");
    return check(schema, value, "$", 0, why, why_len);
}
