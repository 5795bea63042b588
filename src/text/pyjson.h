/* pyjson: reads JSON as Python's json.loads does, into jansson values.
 *
 * Real model files and clients send JSON that jansson refuses but Python (and so transformers)
 * accepts: integers beyond 64 bits (transformers writes "model_max_length":
 * 1000000000000000019884624838656 whenever a model sets none), the literals NaN, Infinity and
 * -Infinity, and floats that overflow to inf (1e400). Such a value becomes a one-key object
 * {PYJSON_LITERAL_KEY: "<text>"} whose string is the literal as written ("NaN", "-Infinity",
 * "123456789012345678901234567890"; an overflowing float becomes "Infinity"/"-Infinity"), so code
 * that wants a number sees a wrong type (and rejects it) while the Jinja interpreter turns it back
 * into the exact Python value (text/jinja_value.c, pyjson_literal). Everything else, errors
 * included, is jansson's own parse. Integers with more than 4300 digits stay an error, as Python's
 * int conversion limit makes them.
 *
 * Stateless and thread-safe. Used for tokenizer_config.json, config.json, chat template kwargs,
 * message files and request bodies: wherever a Python server would call json.loads.
 *
 *     json_error_t e;  json_t *cfg = pyjson_load_file(path, 0, &e);
 *     const char *lit = pyjson_literal(json_object_get(cfg, "model_max_length"));   // "1000...656"
 */
#ifndef CAIRN_TEXT_PYJSON_H
#define CAIRN_TEXT_PYJSON_H

#include <stddef.h>

#include <jansson.h>

#define PYJSON_LITERAL_KEY "__cairn_pyjson_literal__"

/* As json_loadb / json_loads / json_load_file, with the same flags and error reporting. */
json_t *pyjson_loadb(const char *text, size_t len, size_t flags, json_error_t *err);
json_t *pyjson_loads(const char *text, size_t flags, json_error_t *err);
json_t *pyjson_load_file(const char *path, size_t flags, json_error_t *err);

/* The literal text when v stands for a value jansson cannot hold (see above), else NULL. */
const char *pyjson_literal(const json_t *v);

/* JSON Schema's name of v's type ("object", "array", "string", "integer", "number", "boolean",
 * "null"), for error messages that say what a value is. */
const char *pyjson_type_name(const json_t *v);

#endif
