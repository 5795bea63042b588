/* chat: renders a conversation into prompt text with the model's Jinja chat template, exactly as
 * transformers' apply_chat_template(tokenize=False) would (text/jinja.h is the interpreter).
 *
 * The conversation is given as JSON (jansson values: a messages array, an optional tools array and
 * an object of extra kwargs such as enable_thinking), because that is how both HTTP APIs and the
 * CLI receive it. A loaded template is immutable: any number of threads may call chat_render on it
 * at once. Rendering is bounded (memory, output size, steps, recursion), so a hostile template or
 * conversation ends in an error, never a hang or a crash.
 *
 *     struct chat_template *ct;  chat_template_load(dir, tk, &ct);
 *     char *prompt, *err;
 *     if (chat_render(ct, messages, tools, kwargs, true, &prompt, &err) != STATUS_OK) -> 400 with err
 */
#ifndef CAIRN_TEXT_CHAT_H
#define CAIRN_TEXT_CHAT_H

#include <stdbool.h>

#include <jansson.h>

#include "base/status.h"

struct tokenizer;
struct chat_template;

/* Finds the template in dir, in transformers' order: chat_template.jinja (it overrides the config),
 * else tokenizer_config.json "chat_template" (a string, or a list of {name, template}: "default",
 * and "tool_use" for requests with tools), else chat_template.json. bos/eos and the other special
 * tokens come from tokenizer_config.json (strings or AddedToken objects); tk may be NULL and only
 * fills bos/eos the config lacks. ENOTFOUND if there is no template, EFORMAT if it does not parse
 * (logged). */
enum status chat_template_load(const char *dir, const struct tokenizer *tk, struct chat_template **out);
/* The same special tokens, with the template source given (vLLM's and llama.cpp's --chat-template):
 * the directory's own templates are not read. EFORMAT if it does not parse (logged). */
enum status chat_template_load_with(const char *dir, const struct tokenizer *tk, const char *source,
                                    struct chat_template **out);
enum status chat_template_from_source(const char *source, const char *bos, const char *eos,
                                      struct chat_template **out);
void        chat_template_free(struct chat_template *ct);
const char *chat_template_source(const struct chat_template *ct);

/* Renders with the variables messages, tools (None when NULL), documents (None),
 * add_generation_prompt, the special tokens and every kwargs key. On success *out_text is a heap
 * string. On error returns ETEMPLATE (the template raised, or an expression failed: the message
 * is raise_exception's text, or names the template line) or EINVAL (messages not an array, kwargs
 * not an object), and *err_msg (heap, may be NULL) says why. Caller frees both. */
enum status chat_render(const struct chat_template *ct, json_t *messages, json_t *tools, json_t *kwargs,
                        bool add_generation_prompt, char **out_text, char **err_msg);

#endif
