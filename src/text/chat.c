/* chat: finds a model's chat template and renders conversations with it, as transformers'
 * apply_chat_template(tokenize=False) does.
 *
 * Template source, in transformers' order of precedence: chat_template.jinja beside the tokenizer
 * (it overrides the config when present), else tokenizer_config.json "chat_template" (a string, or a
 * list of {name, template}: "default", and "tool_use" when tools are given), else
 * chat_template.json {"chat_template": ...}; additional_chat_templates/tool_use.jinja is the named
 * "tool_use" template beside them. As in transformers, a set of named templates without a
 * "default" renders only requests with tools (tool_use); others raise. The special tokens
 * (bos_token, eos_token, ..., additional_special_tokens and extra_special_tokens) come from
 * tokenizer_config.json (strings or AddedToken objects), so rendering never needs the tokenizer.
 * Variables: the special tokens, then kwargs, then messages, tools (None when absent), documents
 * (None) and add_generation_prompt. A loaded template is immutable: threads may render at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"
#include "text/chat.h"
#include "text/jinja.h"
#include "text/pyjson.h"
#include "text/tokenizer.h"

struct chat_template {
    char                  *source;        // default template text, NULL when only named ones exist
    char                  *tool_source;   // "tool_use" template, NULL if none
    char                  *names;         // named templates without a default: "['tool_use', ...]" for the error
    struct jinja_template *tpl;
    struct jinja_template *tool_tpl;
    json_t                *tokens;        // object: special token name -> string
};

static const char *token_str(json_t *v)
{
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v)) return json_string_value(json_object_get(v, "content"));
    return NULL;
}

static void collect_tokens(json_t *cfg, json_t *tokens)
{
    const char *k;
    json_t *v;
    json_object_foreach(cfg, k, v) {
        size_t n = strlen(k);
        if (n < 6 || strcmp(k + n - 6, "_token")) continue;
        const char *s = token_str(v);
        if (s && !json_object_get(tokens, k)) json_object_set_new(tokens, k, json_string(s));
    }
    json_t *add = json_object_get(cfg, "additional_special_tokens");   // special_tokens_map has it as a list
    if (json_is_array(add) && !json_object_get(tokens, "additional_special_tokens")) {
        json_t *list = json_array();
        size_t i;
        json_array_foreach(add, i, v) {
            const char *s = token_str(v);
            if (s) json_array_append_new(list, json_string(s));
        }
        json_object_set_new(tokens, "additional_special_tokens", list);
    }
    json_t *extra = json_object_get(cfg, "extra_special_tokens");
    if (json_is_object(extra))
        json_object_foreach(extra, k, v) {
            const char *s = token_str(v);
            if (s && !json_object_get(tokens, k)) json_object_set_new(tokens, k, json_string(s));
        }
}

static json_t *load_json_if_exists(const char *dir, const char *name, bool *bad)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fclose(f);
    json_error_t jerr;
    json_t *j = pyjson_load_file(path, 0, &jerr);
    if (!j) {
        LOG_ERR("%s:%d: %s", path, jerr.line, jerr.text);
        *bad = true;
    }
    return j;
}

static enum status parse_source(const char *src, struct jinja_template **out, const char *what)
{
    char *err = NULL;
    enum status st = jinja_parse(src, strlen(src), out, &err);
    if (st != STATUS_OK) {
        LOG_ERR("%s: chat template does not parse: %s", what, err ? err : "?");
        free(err);
    }
    return st;
}

static enum status finish(struct chat_template *ct, const char *what, struct chat_template **out)
{
    enum status st = ct->source ? parse_source(ct->source, &ct->tpl, what) : STATUS_OK;
    if (st == STATUS_OK && ct->tool_source) st = parse_source(ct->tool_source, &ct->tool_tpl, what);
    if (st != STATUS_OK) {
        chat_template_free(ct);
        return st;
    }
    *out = ct;
    return STATUS_OK;
}

enum status chat_template_load(const char *dir, const struct tokenizer *tk, struct chat_template **out)
{
    return chat_template_load_with(dir, tk, NULL, out);
}

enum status chat_template_load_with(const char *dir, const struct tokenizer *tk, const char *source,
                                    struct chat_template **out)
{
    *out = NULL;
    bool bad = false;
    struct chat_template *ct = xcalloc(1, sizeof *ct);
    ct->tokens = json_object();
    json_t *cfg = load_json_if_exists(dir, "tokenizer_config.json", &bad);
    if (bad) { chat_template_free(ct); return STATUS_EFORMAT; }
    if (cfg) collect_tokens(cfg, ct->tokens);
    json_t *stm = load_json_if_exists(dir, "special_tokens_map.json", &bad);
    if (stm) { collect_tokens(stm, ct->tokens); json_decref(stm); }
    if (tk) {
        if (!json_object_get(ct->tokens, "bos_token") && tokenizer_bos_str(tk))
            json_object_set_new(ct->tokens, "bos_token", json_string(tokenizer_bos_str(tk)));
        if (!json_object_get(ct->tokens, "eos_token") && tokenizer_eos_str(tk))
            json_object_set_new(ct->tokens, "eos_token", json_string(tokenizer_eos_str(tk)));
    }
    if (source) {   // the user's template replaces every one the directory has
        json_decref(cfg);
        ct->source = xstrdup(source);
        return finish(ct, "--chat-template", out);
    }

    char path[4096];
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    char *text = NULL;
    size_t len;
    FILE *f = fopen(path, "rb");
    if (f) {
        fclose(f);
        if (file_read_all(path, &text, &len) != STATUS_OK) { json_decref(cfg); chat_template_free(ct); return STATUS_EIO; }
        ct->source = text;
    }
    json_t *t = cfg ? json_object_get(cfg, "chat_template") : NULL;
    if (!ct->source && json_is_string(t)) ct->source = xstrdup(json_string_value(t));
    else if (!ct->source && json_is_array(t)) {
        size_t i;
        json_t *e;
        json_array_foreach(t, i, e) {
            const char *name = json_string_value(json_object_get(e, "name"));
            const char *tpl = json_string_value(json_object_get(e, "template"));
            if (!name || !tpl) continue;
            if (!strcmp(name, "default")) ct->source = xstrdup(tpl);
            else if (!strcmp(name, "tool_use")) ct->tool_source = xstrdup(tpl);
        }
    }
    json_decref(cfg);
    if (!ct->source && !ct->tool_source) {
        json_t *cj = load_json_if_exists(dir, "chat_template.json", &bad);
        const char *s = cj ? json_string_value(json_object_get(cj, "chat_template")) : NULL;
        if (s) ct->source = xstrdup(s);
        json_decref(cj);
    }
    snprintf(path, sizeof path, "%s/additional_chat_templates/tool_use.jinja", dir);
    f = fopen(path, "rb");
    if (f) {   // a named template file overrides the config's entry of that name
        fclose(f);
        if (file_read_all(path, &text, &len) != STATUS_OK) { chat_template_free(ct); return STATUS_EIO; }
        free(ct->tool_source);
        ct->tool_source = text;
    }
    if (!ct->source && ct->tool_source) ct->names = xstrdup("['tool_use']");
    if (!ct->source && !ct->tool_source) {
        LOG_ERR("%s: no chat template (tokenizer_config.json chat_template, chat_template.jinja or chat_template.json)", dir);
        chat_template_free(ct);
        return bad ? STATUS_EFORMAT : STATUS_ENOTFOUND;
    }
    return finish(ct, dir, out);
}

enum status chat_template_from_source(const char *source, const char *bos, const char *eos,
                                      struct chat_template **out)
{
    *out = NULL;
    struct chat_template *ct = xcalloc(1, sizeof *ct);
    ct->tokens = json_object();
    if (bos) json_object_set_new(ct->tokens, "bos_token", json_string(bos));
    if (eos) json_object_set_new(ct->tokens, "eos_token", json_string(eos));
    ct->source = xstrdup(source);
    return finish(ct, "template", out);
}

void chat_template_free(struct chat_template *ct)
{
    if (!ct) return;
    jinja_template_free(ct->tpl);
    jinja_template_free(ct->tool_tpl);
    free(ct->source);
    free(ct->tool_source);
    free(ct->names);
    json_decref(ct->tokens);
    free(ct);
}

const char *chat_template_source(const struct chat_template *ct) { return ct->source ? ct->source : ct->tool_source; }

enum status chat_render(const struct chat_template *ct, json_t *messages, json_t *tools, json_t *kwargs,
                        bool add_generation_prompt, char **out_text, char **err_msg)
{
    *out_text = NULL;
    if (err_msg) *err_msg = NULL;
    if (!json_is_array(messages)) {
        if (err_msg) *err_msg = xstrdup("messages must be an array");
        return STATUS_EINVAL;
    }
    if (kwargs && !json_is_object(kwargs)) {
        if (err_msg) *err_msg = xstrdup("chat template kwargs must be an object");
        return STATUS_EINVAL;
    }
    if (json_is_null(tools)) tools = NULL;   // JSON null is tools=None
    json_t *ctx = json_object();
    const char *k;
    json_t *v;
    // fresh copies: ct is shared between threads, so its values' refcounts are not touched
    json_object_foreach(ct->tokens, k, v) json_object_set_new(ctx, k, json_deep_copy(v));
    if (kwargs) json_object_update(ctx, kwargs);
    json_object_set(ctx, "messages", messages);
    json_object_set_new(ctx, "tools", tools ? json_incref(tools) : json_null());
    json_object_set_new(ctx, "documents", json_null());
    json_object_set_new(ctx, "add_generation_prompt", json_boolean(add_generation_prompt));
    const struct jinja_template *tpl = tools && ct->tool_tpl ? ct->tool_tpl : ct->tpl;
    if (!tpl) {   // transformers: named templates, no "default", no tools
        json_decref(ctx);
        if (err_msg) {
            struct strbuf sb = {0};
            strbuf_printf(&sb, "This model has multiple chat templates with no default specified! Please either pass a "
                               "chat template or the name of the template you wish to use to the `chat_template` "
                               "argument. Available template names are %s.", ct->names);
            *err_msg = strbuf_take(&sb);
        }
        return STATUS_ETEMPLATE;
    }
    char *err = NULL;
    enum status st = jinja_render(tpl, ctx, NULL, out_text, NULL, &err);
    json_decref(ctx);
    if (st != STATUS_OK) {
        LOG_DEBUG("chat template: %s", err ? err : status_str(st));
        if (err_msg) *err_msg = err;
        else free(err);
    }
    return st;
}
