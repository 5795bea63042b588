/* constrain: the request fields that ask for constrained decoding, compiled into a grammar
 * (text/constraint.h), with a cache of compiled grammars by the hash of their source.
 *
 * Spellings read (at most one per request; two is a 400):
 *   OpenAI   response_format {type: text | json_object | json_schema {json_schema: {schema, strict}}}
 *            (json_object with a "schema": llama.cpp's spelling, a JSON Schema)
 *   vLLM     guided_json, guided_regex, guided_grammar (GBNF), guided_choice,
 *            structured_outputs {json | regex | grammar | choice | json_object}
 *   llama.cpp grammar (GBNF), json_schema
 *   Responses text.format (srv_constraint_responses); Anthropic output_config.format / output_format
 *   (srv_constraint_anthropic)
 * A schema or grammar the engine cannot enforce is a 400 naming the field and the cause (the
 * unsupported keyword, the grammar line); a compile that exceeds its budget too. strict: false
 * schemas are enforced like strict ones (a constraint is never silently loosened).
 *
 * The cache belongs to the server (any thread, under its mutex); grammars handed out are
 * references (constraint_grammar_free when done); evicting one never frees it under a running
 * sequence (each sequence's matcher holds its own reference).
 *
 * Other front ends (the Ollama API's `format`) compile through srv_constraint_parse on a body
 * they build with the equivalent field (response_format or guided_json), so every spelling shares
 * one cache and one set of errors.
 *
 *     struct constraint_grammar *g; const char *field;
 *     if (!srv_constraint_parse(gc, body, &g, &field, &e)) return 400 with e;   // g: NULL when none
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

/* The same for the Responses API's text.format ({type: json_schema, name, schema, strict} flat, or
 * json_object / text) and for Anthropic Messages' output_config.format (GA) or output_format (the
 * structured-outputs beta), {type: "json_schema", schema}. Same contract as srv_constraint_parse. */
bool srv_constraint_responses(struct grammar_cache *gc, json_t *body, struct constraint_grammar **out,
                              const char **field, struct api_error *e);
bool srv_constraint_anthropic(struct grammar_cache *gc, json_t *body, struct constraint_grammar **out,
                              const char **field, struct api_error *e);

/* A forced tool call (tool_choice required / named, Anthropic any / tool) in the model family's
 * own markup, each call's arguments under its tool's parameters schema (tools: OpenAI-shape
 * array), one call or (parallel) several:
 *   hermes       <tool_call>\n{"name": N, "arguments": A}\n</tool_call>, calls joined by \n
 *   qwen3_coder  <tool_call>\n<function=N>\n<parameter=P>\nV\n</parameter>\n...</function>\n</tool_call>
 *                (V raw text for string-typed parameters, JSON otherwise; constraint_tool_xml_gbnf)
 *   llama3       {"name": N, "parameters": A}, joined by "; "
 *   mistral      [TOOL_CALLS][{"name": N, "arguments": A}, ...], or with name_first
 *                [TOOL_CALLS]N[ARGS]A repeated
 *   deepseek_v3  <｜tool▁calls▁begin｜> calls <｜tool▁calls▁end｜>, each call
 *                <｜tool▁call▁begin｜>function<｜tool▁sep｜>N\n```json\nA\n```<｜tool▁call▁end｜> (joined
 *                by \n), or with name_first <｜tool▁call▁begin｜>N<｜tool▁sep｜>A<｜tool▁call▁end｜>
 * name_first: the model's output_format.tool_name_first. only: the one tool allowed, NULL for any.
 * optional (tool_choice auto with strict tools): text as well, with no call or calls where the
 * family's markup puts them (Hermes/XML anywhere, Llama 3 instead of text, Mistral/DeepSeek
 * after it); the text never holds the call marker, so every call the parser finds is valid.
 * A parameters schema or a tool name the markup cannot carry is a 400 naming the tool. */
bool srv_tool_grammar(struct grammar_cache *gc, enum tool_family family, bool name_first, json_t *tools,
                      const char *only, bool parallel, bool optional, struct constraint_grammar **out,
                      struct api_error *e);

#endif
