/* output: the text pipeline of one generated stream, from token ids to API-neutral events.
 *
 * Per stream: streaming detokenizer -> stop strings (text that could start one is held back; a
 * match and everything after it is never emitted) -> reasoning split (the model's think markers)
 * -> tool-call parser (one on the answer channel and one on the reasoning channel, sharing the
 * call counter, so calls made inside a think block are still calls) -> events. Whatever the token
 * boundaries, the events are the same once adjacent text of one kind is merged. Every API writer
 * (OpenAI chat and completions, Anthropic messages; streaming or not) reads the same events:
 * streaming writers drain what arrived since their last drain, whole-response writers read the
 * blocks (text merged per kind, one block per tool call holding its whole arguments).
 *
 * What a model's output looks like (think markers, tool-call markup) is decided once per model by
 * output_format_detect from its chat template and tokenizer, not per request. One output per
 * generated stream; not thread-safe (the HTTP thread that drives the request owns it).
 *
 *     struct output *o = output_new(&cfg);           // cfg.detok: the provider's streaming detokenizer
 *     if (output_push_token(o, id)) end_request_on_stop_string();
 *     evs = output_drain(o, &n);  ...  output_finish(o);  evs = output_drain(o, &n);
 *     output_free(o);
 */
#ifndef CAIRN_TEXT_OUTPUT_H
#define CAIRN_TEXT_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "base/mem.h"
#include "text/toolparse.h"

/* ==== Per-model format ==== */

struct output_format {
    enum tool_family tool_family;       // markup of tool calls (HERMES when nothing says otherwise)
    bool             thinks;            // the template renders think blocks: split reasoning by default
    char             think_open[16];    // reasoning markers (the <think> pair unless a model says otherwise)
    char             think_close[16];
    /* Of the two spellings of a family, the one this model's template writes: Mistral
     * "[TOOL_CALLS]name[ARGS]{..}" (v11+ tokenizers) rather than "[TOOL_CALLS][{..}]", DeepSeek
     * V3.1 "name<sep>{..}" rather than V3's "function<sep>name" and fenced JSON. Forced tool calls
     * are written in it (server/constrain.c); the parser reads both. */
    bool             tool_name_first;
};

/* From the chat template source (may be NULL: no think markers, HERMES) and, where the template
 * does not say, the tokenizer's added tokens: is_token(ctx, s) tells whether s is one (may be NULL). */
void output_format_detect(const char *template_src, bool (*is_token)(void *ctx, const char *s), void *ctx,
                          struct output_format *out);
/* True when the rendered prompt leaves a think block open (the template ended the generation
 * prompt with the open marker): generation then starts inside it. */
bool output_format_prompt_in_think(const struct output_format *f, const char *prompt);

/* ==== Per-stream pipeline ==== */

/* OUTPUT_TOOL_CUT (drained events only): the call tool_index, already started, was cut before its
 * end (the output ended inside it: max_tokens, shutdown, an end token); it is not a call. Its
 * markup as generated is in text. Streaming writers answer it with their API's error (or
 * incomplete) shape; in the blocks the call is replaced by that text (content or reasoning). */
enum output_ev_kind { OUTPUT_REASONING = 0, OUTPUT_CONTENT, OUTPUT_TOOL_START, OUTPUT_TOOL_ARGS, OUTPUT_TOOL_END,
                      OUTPUT_TOOL_CUT };

struct output_ev {
    enum output_ev_kind kind;
    int                 tool_index;    // TOOL_*: the call's index in this stream (0, 1, ...)
    struct strbuf       text;          // REASONING, CONTENT, TOOL_ARGS; a TOOL_START block: the whole arguments
    char                name[256];     // TOOL_START: function name
    char                id[48];        // TOOL_START: call id (tool_id_prefix + 24 random alphanumerics)
};

/* A streaming detokenizer: push returns the text that became complete (heap, may be "" or NULL),
 * flush the rest at the end; free releases it. The output owns it from output_new on. */
struct output_detok {
    void  *self;
    char *(*push)(void *self, int32_t id);
    char *(*flush)(void *self);
    void  (*free)(void *self);
};

struct output_cfg {
    struct output_detok         detok;
    const struct output_format *fmt;             // borrowed: the think markers
    bool                        reasoning;       // split think blocks by fmt's markers
    bool                        start_in_think;  // the prompt left a think block open
    bool                        constrained;     // a constraint starts after that block (or at once): think
                                                 // markers past it are answer text (a JSON string's "<think>")
    enum tool_family            tool_family;     // NONE: no tool parsing (no tools, tool_choice none)
    const json_t               *tools;           // borrowed: the request's tools (types XML parameters)
    const char *const          *stops;           // stop strings (copied)
    int                         n_stops;
    const char                 *tool_id_prefix;  // "call_" (default) or "toolu_"
    uint64_t                    id_seed;         // tool-call ids
    int                         max_tool_calls;  // 0: any number; else the output ends after that many calls
                                                 // (push returns true as for a stop string; no text follows)
};

struct output;

struct output *output_new(const struct output_cfg *cfg);
/* One generated token. Returns true exactly once: when a stop string matched in the text so far
 * (or max_tool_calls calls ended);
 * the caller then ends the request (engine_end_on_stop_string). Tokens after that are ignored. */
bool output_push_token(struct output *o, int32_t id);
/* Detokenized text, as output_push_token would produce it (for tests and text-only callers). */
bool output_push_text(struct output *o, const char *text, size_t len);
/* End of the stream: flushes the detokenizer, held-back text and an open tool call. */
void output_finish(struct output *o);
/* Events since the last drain, same-kind text merged; valid until the next call on o. */
const struct output_ev *output_drain(struct output *o, int *n);
/* The whole output so far, as blocks (see the top). */
const struct output_ev *output_blocks(const struct output *o, int *n);

bool        output_in_reasoning(const struct output *o);   // inside a think block now
int         output_n_tool_calls(const struct output *o);   // complete calls (a cut one is not counted)
const char *output_stop_string(const struct output *o);    // the stop string that matched, or NULL
void        output_free(struct output *o);

#endif
