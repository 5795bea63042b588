/* constrain: the request fields that ask for constrained decoding, compiled into a grammar
 * (text/constraint.h), with a cache of compiled grammars by the hash of their source.
 *
 * Spellings read (at most one per request; two is a 400):
 *   OpenAI   response_format {type: text | json_object | json_schema {json_schema: {schema, strict}}}
 *            (json_object with a "schema": llama.cpp's spelling, a JSON Schema)
 *   vLLM     guided_json, guided_regex, guided_grammar (GBNF), guided_choice,
 *            structured_outputs {json | regex | grammar | choice | json_object}
 *   llama.cpp grammar (GBNF), json_schema
 * A schema or grammar the engine cannot enforce is a 400 naming the field and the cause (the
 * unsupported keyword, the grammar line); a compile that exceeds its budget too. strict: false
 * schemas are enforced like strict ones (a constraint is never silently loosened).
 *
 * The cache belongs to the server (any thread, under its mutex); grammars handed out are
 * references (constraint_grammar_free when done); evicting one never frees it under a running
 * sequence (each sequence's matcher holds its own reference).
 *
 *     struct constraint_grammar *g;
 *     if (!srv_constraint(r, body, &g, &e)) return 400 with e;   // g: NULL when the body asks for none
 */
#ifndef CAIRN_SERVER_CONSTRAIN_H
#define CAIRN_SERVER_CONSTRAIN_H

#include <stdbool.h>

#include <jansson.h>

#include "server/errors.h"
#include "text/toolparse.h"

struct constraint_grammar;
struct grammar_cache;

struct grammar_cache *grammar_cache_new(int max_entries);
void                  grammar_cache_free(struct grammar_cache *gc);
/* Cached grammars and lookups that hit, for tests and metrics. */
void                  grammar_cache_counts(struct grammar_cache *gc, int *n_entries, long *n_hits);

/* The body's constraint (*out NULL when it asks for none; else a reference the caller frees) and
 * the name of the field it came from (*field, static); false with a 400 in *e. */
bool srv_constraint_parse(struct grammar_cache *gc, json_t *body, struct constraint_grammar **out, const char **field,
                          struct api_error *e);

/* Ollama's "format": "json" (any JSON object), a JSON Schema object, or "" / null (none); errors
 * name 'format'. Same cache and compiler as srv_constraint_parse. */
bool srv_constraint_format(struct grammar_cache *gc, json_t *format, struct constraint_grammar **out, struct api_error *e);

/* A forced tool call (tool_choice required / named, Anthropic any / tool) as the model family's
 * envelope: Hermes "<tool_call>\n{"name": ..., "arguments": ...}\n</tool_call>", one call or
 * (parallel) several separated by a newline, each call's arguments under its tool's parameters
 * schema (tools: OpenAI-shape array). only: the one tool allowed, NULL for any. EUNSUPPORTED
 * (400) for other families. */
bool srv_tool_grammar(struct grammar_cache *gc, enum tool_family family, json_t *tools, const char *only,
                      bool parallel, struct constraint_grammar **out, struct api_error *e);

#endif
