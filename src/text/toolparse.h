/* toolparse: incremental tool-call parsers, one per model family, over generated text.
 *
 * The server feeds detokenized text (any chunking) and gets events back through a callback:
 * plain text, and for each call CALL_START (index, name), CALL_ARGS (argument JSON text in pieces
 * that concatenate to the call's arguments object) and CALL_END. Whatever the chunking, the events
 * are the same once adjacent TEXT pieces and adjacent ARGS pieces of one call are merged; text
 * that could still become a marker is held back until it is decided.
 *
 * A call is committed when its name is known; text that turns out not to be a well-formed call
 * before that point is given back as plain TEXT (with a logged warning), never dropped. A committed
 * call whose tail is malformed is closed with the arguments seen so far, and the rest goes back to
 * TEXT. A committed call still open when the output ends (max_tokens, shutdown, an end token in
 * the middle) ends with CALL_CUT instead of CALL_END, carrying the call's markup as generated: it
 * is not a call (its arguments are incomplete) and the caller gives it back as text. Families: Hermes/Qwen3 (<tool_call>{json}</tool_call>), Qwen3-Coder/Qwen3.5 XML
 * (<tool_call><function=f><parameter=p>v</parameter></function></tool_call>), Llama 3 JSON
 * ({"name":..,"parameters":..} at the start of a message or after <|python_tag|>), Mistral
 * ([TOOL_CALLS][{..}] and [TOOL_CALLS]name[ARGS]{..}), DeepSeek-V3 (<｜tool▁calls▁begin｜>...).
 * One parser per generation stream; not thread-safe.
 *
 *     struct toolparse *tp = toolparse_new(TOOL_FAMILY_HERMES, tools, &n_calls, on_event, ctx);
 *     toolparse_feed(tp, text, len);  ...  toolparse_finish(tp);  toolparse_free(tp);
 */
#ifndef CAIRN_TEXT_TOOLPARSE_H
#define CAIRN_TEXT_TOOLPARSE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

enum tool_family {
    TOOL_FAMILY_NONE = 0,
    TOOL_FAMILY_HERMES,        // also Qwen2.5/Qwen3
    TOOL_FAMILY_QWEN3_CODER,   // also Qwen3.5/3.6 (XML parameters)
    TOOL_FAMILY_LLAMA3,
    TOOL_FAMILY_MISTRAL,
    TOOL_FAMILY_DEEPSEEK_V3,
    TOOL_FAMILY_COUNT
};

/* "hermes"/"qwen3", "qwen3_coder"/"qwen3.5"/"xml", "llama3", "mistral", "deepseek_v3", "none".
 * Returns false for an unknown name. */
bool             tool_family_from_name(const char *name, enum tool_family *out);
const char      *tool_family_name(enum tool_family f);
/* A model's family is picked once at load: output_format_detect (text/output.h). */

enum tp_event_kind { TP_TEXT = 0, TP_CALL_START, TP_CALL_ARGS, TP_CALL_END, TP_CALL_CUT };

struct tp_event {
    enum tp_event_kind kind;
    int                index;   // call index (CALL_*), counted across the streams sharing the counter
    const char        *text;    // TEXT, CALL_ARGS: the piece; CALL_CUT: the call's markup (not NUL-terminated)
    size_t             len;
    const char        *name;    // CALL_START: function name (NUL-terminated)
};

struct toolparse;

/* tools: the request's tools (OpenAI or Anthropic shape; borrowed, may be NULL) to type XML
 * parameters and to tell Llama 3 calls from JSON content. n_calls: shared call counter. */
struct toolparse *toolparse_new(enum tool_family f, const json_t *tools, int *n_calls,
                                void (*emit)(void *ctx, const struct tp_event *ev), void *ctx);
void              toolparse_feed(struct toolparse *tp, const char *text, size_t len);
/* End of the stream: flushes held-back text; an open call ends with CALL_CUT. */
void              toolparse_finish(struct toolparse *tp);
void              toolparse_free(struct toolparse *tp);

#endif
