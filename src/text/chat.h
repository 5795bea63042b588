/* chat: renders a conversation into prompt text with the model's Jinja chat template, exactly as
 * transformers' apply_chat_template would.
 *
 * The conversation is given as JSON (jansson values: a messages array, an optional tools array and
 * an object of extra kwargs), because that is how both HTTP APIs and the CLI receive it.
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

/* Finds the template: tokenizer_config.json "chat_template" (string or named list: "default"),
 * else chat_template.jinja, else chat_template.json beside it. ENOTFOUND if none. */
enum status chat_template_load(const char *dir, const struct tokenizer *tk, struct chat_template **out);
enum status chat_template_from_source(const char *source, const char *bos, const char *eos,
                                      struct chat_template **out);
void        chat_template_free(struct chat_template *ct);
const char *chat_template_source(const struct chat_template *ct);

/* Renders; on error returns ETEMPLATE (or EINVAL) and *err_msg (heap) says why. */
enum status chat_render(const struct chat_template *ct, json_t *messages, json_t *tools, json_t *kwargs,
                        bool add_generation_prompt, char **out_text, char **err_msg);

#endif
