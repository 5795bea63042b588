/* jinja: a Jinja2 interpreter for chat templates, matching what transformers renders.
 *
 * Owns parsing a template source into an immutable tree (jinja_parse) and rendering it against a
 * JSON context (jinja_render). The environment is the one transformers' apply_chat_template uses:
 * an ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks, the loopcontrols extension
 * (break/continue), its own tojson (json.dumps with ensure_ascii=False), raise_exception and
 * strftime_now globals, and `{% generation %}` blocks rendered as their content.
 *
 * Called by text/chat.c (and the template fuzzer). A parsed template is immutable, so several
 * threads may render it at once; each render keeps its own memory arena, freed before it returns.
 * Hostile templates are bounded by struct jinja_limits (memory, output bytes, steps, call depth):
 * exceeding one is an ordinary render error, never a crash or a hang.
 *
 *     struct jinja_template *t;  char *err;
 *     if (jinja_parse(src, strlen(src), &t, &err) != STATUS_OK) { puts(err); free(err); }
 *     jinja_render(t, ctx_json_object, NULL, &text, &err);  ...  jinja_template_free(t);
 */
#ifndef CAIRN_TEXT_JINJA_H
#define CAIRN_TEXT_JINJA_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "base/status.h"

struct jinja_template;

struct jinja_limits {
    size_t  mem_bytes;     // render arena budget (values, strings, buffers)
    size_t  out_bytes;     // bytes written by all output, captured blocks included
    int64_t steps;         // statements run + loop iterations + calls
    int     depth;         // nesting of macro calls / evaluation recursion
};

/* Defaults: 256 MiB memory, 64 MiB output, 50M steps, depth 200. */
void jinja_limits_default(struct jinja_limits *lim);

/* Parses src. On a syntax error returns EFORMAT and *err (heap, caller frees) says why, with the
 * line number. */
enum status jinja_parse(const char *src, size_t len, struct jinja_template **out, char **err);
void        jinja_template_free(struct jinja_template *t);

/* Renders with the variables of the JSON object ctx (NULL: none). lim NULL: defaults.
 * On success *out_text is a heap string (caller frees); on failure returns ETEMPLATE and *err (heap)
 * is the message: raise_exception's text, or an evaluation error with its line. */
enum status jinja_render(const struct jinja_template *t, json_t *ctx, const struct jinja_limits *lim,
                         char **out_text, size_t *out_len, char **err);

#endif
