/* api_common: the generation set-up both APIs share: tokenize, context check, job creation and submission, and message content normalization. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "server/server_int.h"
#include "text/constraint.h"

/* Media part types of both APIs; a text-only model sees a placeholder in their place. */
static const char *const media_types[] = { "image", "image_url", "input_image", "document", "file", "input_file",
                                           "input_audio", NULL };

bool content_is_media(const char *type)
{
    for (const char *const *t = media_types; type && *t; t++)
        if (!strcmp(type, *t)) return true;
    return false;
}

void content_media_placeholder(struct strbuf *out, const char *type)
{
    // history keeps working after a pasted screenshot: the turn stays, its pixels do not
    LOG_WARN("a '%s' content part was replaced by a placeholder: this model reads text only", type);
    strbuf_printf(out, "[%s omitted: this model reads text only]", type);
}

bool content_text_media(json_t *content, const char *field, bool allow_null, char **out, int *n_media, struct api_error *e)
{
    if (n_media) *n_media = 0;
    if (!content || json_is_null(content)) {
        if (!allow_null) {
            *e = api_error_make(STATUS_EINVAL, field, "'%s' is required", field);
            return false;
        }
        *out = xstrdup("");
        return true;
    }
    if (json_is_string(content)) {
        *out = xstrndup(json_string_value(content), json_string_length(content));
        return true;
    }
    if (!json_is_array(content)) {
        *e = api_error_make(STATUS_EINVAL, field, "'%s' must be a string or an array of content parts", field);
        return false;
    }
    struct strbuf sb = {0};
    size_t i;
    json_t *p;
    json_array_foreach(content, i, p) {
        const char *type = json_string_value(json_object_get(p, "type"));
        json_t *t = json_object_get(p, "text");
        if (content_is_media(type)) {
            content_media_placeholder(&sb, type);
            if (n_media) (*n_media)++;
            continue;
        }
        bool is_text = type && (!strcmp(type, "text") || !strcmp(type, "input_text") || !strcmp(type, "output_text"));
        if (!is_text || !json_is_string(t)) {
            strbuf_free(&sb);
            if (type && !is_text)
                *e = api_error_make(STATUS_EUNSUPPORTED, field, "'%s[%zu]': content part type '%s' is not supported",
                                    field, i, type);
            else *e = api_error_make(STATUS_EINVAL, field, "'%s[%zu]' must be {\"type\":\"text\",\"text\":string}", field, i);
            return false;
        }
        strbuf_append(&sb, json_string_value(t), json_string_length(t));
    }
    if (!sb.data) strbuf_puts(&sb, "");
    *out = strbuf_take(&sb);
    return true;
}

bool content_text(json_t *content, const char *field, bool allow_null, char **out, struct api_error *e)
{
    return content_text_media(content, field, allow_null, out, NULL, e);
}

static bool tool_choice(json_t *body, const struct tool_api *api, bool have_tools, bool *use, struct api_error *e)
{
    json_t *tc = json_object_get(body, "tool_choice");
    const char *mode = tc && !json_is_null(tc) ? api->choice_mode(tc, e) : "auto";
    if (!mode) return false;
    bool forced = false;
    for (const char *const *c = api->constrained; *c; c++) forced = forced || !strcmp(mode, *c);
    if (forced && !have_tools) {
        *e = api_error_make(STATUS_EINVAL, "tool_choice", "tool_choice '%s' forces a tool call but no tools are given", mode);
        return false;
    }
    if (!forced && strcmp(mode, "auto") && strcmp(mode, "none")) {
        *e = api_error_make(STATUS_EINVAL, "tool_choice", "%s", api->invalid_choice);
        return false;
    }
    *use = have_tools && strcmp(mode, "none");
    return true;
}

bool srv_tool_constraint(struct req *r, json_t *body, const struct tool_api *api, struct gen_params *p,
                         struct api_error *e)
{
    json_t *tc = json_object_get(body, "tool_choice");
    if (!p->tools || p->family == TOOL_FAMILY_NONE) return true;   // no tools, or tool_choice none
    const char *mode = tc && !json_is_null(tc) ? api->choice_mode(tc, e) : "auto";
    if (!mode) return false;
    bool forced = false;
    for (const char *const *c = api->constrained; *c; c++) forced = forced || !strcmp(mode, *c);
    if (!forced) {
        // auto with a strict tool: calls are still the model's choice, but each one is valid
        bool strict = false;
        size_t i;
        json_t *t;
        json_array_foreach(p->tools, i, t) strict |= json_is_true(json_object_get(json_object_get(t, "function"), "strict"));
        if (!strict) return true;
        json_t *ptc = json_object_get(body, "parallel_tool_calls");
        bool par = !json_is_false(ptc) && !json_is_true(json_object_get(tc, "disable_parallel_tool_use"));
        // beside an output format the answer is either valid calls or the format, never free text
        bool beside = p->grammar != NULL;
        struct constraint_grammar *calls;
        if (!srv_tool_grammar(r->s->grammars, p->family, r->g->fmt.tool_name_first, p->tools, NULL, par, !beside, &calls, e))
            return false;
        if (beside) {
            struct constraint_grammar *both;
            char err[256];
            enum status st = constraint_grammar_union(p->grammar, calls, &both, err, sizeof err);
            constraint_grammar_free(calls);
            if (st != STATUS_OK) {
                *e = api_error_make(STATUS_EINVAL, "tools", "strict tools beside '%s': %s", p->grammar_field, err);
                return false;
            }
            constraint_grammar_free(p->grammar);
            p->grammar = both;
            p->grammar_field = "tools";   // p->grammar_has_text stays false: no free text
            return true;
        }
        p->grammar = calls;
        p->grammar_field = "tools";
        p->grammar_has_text = true;
        return true;
    }
    if (p->grammar) {
        *e = api_error_make(STATUS_EINVAL, "tool_choice", "tool_choice '%s' and '%s' both constrain the output; give one",
                            mode, p->grammar_field);
        return false;
    }
    // the one tool: OpenAI {"function": {"name"}}, Anthropic {"name"}
    const char *only = json_string_value(json_object_get(json_object_get(tc, "function"), "name"));
    if (!only && json_is_object(tc) && json_object_get(tc, "name")) only = json_string_value(json_object_get(tc, "name"));
    if (json_is_object(tc) && !only && (!strcmp(mode, "named") || !strcmp(mode, "tool"))) {
        *e = api_error_make(STATUS_EINVAL, "tool_choice", "tool_choice '%s' needs the tool's name", mode);
        return false;
    }
    json_t *ptc = json_object_get(body, "parallel_tool_calls");
    bool parallel = !json_is_false(ptc) && !json_is_true(json_object_get(tc, "disable_parallel_tool_use"));
    if (only) parallel = false;   // a named tool is called once
    if (!srv_tool_grammar(r->s->grammars, p->family, r->g->fmt.tool_name_first, p->tools, only, parallel, false, &p->grammar, e))
        return false;
    p->grammar_field = "tool_choice";
    return true;
}

bool srv_tools(json_t *body, const struct tool_api *api, json_t **out, bool *use, struct api_error *e)
{
    *out = NULL;
    *use = false;
    json_t *tools = json_object_get(body, "tools");
    if (tools && !json_is_null(tools)) {
        if (!json_is_array(tools)) {
            *e = api_error_make(STATUS_EINVAL, "tools", "%s", api->not_array);
            return false;
        }
        json_t *conv = json_array();
        size_t i;
        json_t *t;
        json_array_foreach(tools, i, t) {
            json_t *c = api->convert(t, i, e);
            if (!c) {
                json_decref(conv);
                return false;
            }
            if (json_is_null(c)) continue;   // a tool the API leaves out (logged by convert)
            json_array_append_new(conv, c);
        }
        if (json_array_size(conv)) *out = conv;
        else json_decref(conv);
    }
    if (tool_choice(body, api, *out != NULL, use, e)) return true;
    json_decref(*out);
    *out = NULL;
    return false;
}

bool srv_render(struct req *r, json_t *msgs, json_t *tools, json_t *kwargs, char **prompt, struct api_error *e)
{
    return srv_render_ex(r, msgs, tools, kwargs, true, prompt, e);
}

static bool is_system(json_t *m)
{
    const char *role = json_string_value(json_object_get(m, "role"));
    return role && !strcmp(role, "system");
}

/* msgs with every system turn after the first message folded into a leading system turn (new
 * reference), or NULL when there is none to fold. */
static json_t *fold_system_turns(json_t *msgs)
{
    size_t i;
    json_t *m;
    bool late = false;
    json_array_foreach(msgs, i, m) late |= i > 0 && is_system(m);
    if (!late) return NULL;
    struct strbuf sys = {0};
    json_t *rest = json_array();
    json_array_foreach(msgs, i, m) {
        if (!is_system(m)) {
            json_array_append(rest, m);
            continue;
        }
        if (sys.len) strbuf_puts(&sys, "\n\n");
        const char *t = json_string_value(json_object_get(m, "content"));
        strbuf_puts(&sys, t ? t : "");
    }
    json_array_insert_new(rest, 0, json_pack("{s:s,s:s}", "role", "system", "content", sys.data ? sys.data : ""));
    strbuf_free(&sys);
    return rest;
}

/* ==== Special-token text in content ==== */

/* Message content is the client's text: a special token's text inside it (<|im_start|>,
 * <|eot_id|>) must not become the control token, or content could forge turns and system
 * prompts. Before rendering, each such text in a content string becomes a placeholder (U+E000,
 * a per-request nonce, its index, U+E001: private-use characters that templates pass through);
 * after rendering the texts are put back and their byte ranges recorded, and the prompt is encoded
 * with those ranges literal (gen encode_literal). A placeholder a template mangled stays visible
 * as text, never as a control token. */
#define PH_OPEN  "\xEE\x80\x80"   // U+E000
#define PH_CLOSE "\xEE\x80\x81"   // U+E001

struct lit_ctx {
    const char *const *specials;   // NULL-terminated
    bool               first[256]; // bytes a special text starts with (most bytes of content are not)
    char               nonce[20];
    const char       **texts;      // the special texts replaced, by placeholder index
    int                n, cap;
};

/* Longest special text at s[0..n). */
static size_t special_at(const struct lit_ctx *c, const char *s, size_t n, const char **which)
{
    size_t best = 0;
    for (const char *const *sp = c->specials; *sp; sp++) {
        size_t l = strlen(*sp);
        if (l > best && l <= n && **sp == *s && !memcmp(s, *sp, l)) best = l, *which = *sp;
    }
    return best;
}

/* A copy of s with special texts replaced by placeholders, or NULL when s has none. */
static char *neutralize_text(struct lit_ctx *c, const char *s, size_t n)
{
    struct strbuf out = {0};
    size_t done = 0;
    for (size_t i = 0; i < n;) {
        const char *which = NULL;
        size_t l = c->first[(unsigned char)s[i]] ? special_at(c, s + i, n - i, &which) : 0;
        if (!l) { i++; continue; }
        if (c->n == c->cap) {
            c->cap = c->cap ? 2 * c->cap : 8;
            c->texts = xrealloc(c->texts, (size_t)c->cap * sizeof *c->texts);
        }
        strbuf_append(&out, s + done, i - done);
        strbuf_printf(&out, PH_OPEN "%s:%d" PH_CLOSE, c->nonce, c->n);
        c->texts[c->n++] = which;
        i += l;
        done = i;
    }
    if (!done) { strbuf_free(&out); return NULL; }
    strbuf_append(&out, s + done, n - done);
    return strbuf_take(&out);
}

static void neutralize_value(struct lit_ctx *c, json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v)) return;
    char *t = neutralize_text(c, json_string_value(v), json_string_length(v));
    if (t) json_object_set_new(obj, key, json_string(t));
    free(t);
}

/* Every message's content (a string, or the text of its parts), in place. */
static void neutralize_messages(struct lit_ctx *c, json_t *msgs)
{
    size_t i, k;
    json_t *m, *part;
    json_array_foreach(msgs, i, m) {
        json_t *content = json_object_get(m, "content");
        if (json_is_string(content)) neutralize_value(c, m, "content");
        else if (json_is_array(content))
            json_array_foreach(content, k, part) if (json_is_object(part)) neutralize_value(c, part, "text");
    }
}

/* Puts the special texts back into the rendered prompt and records their ranges in r. */
static void restore_texts(struct req *r, struct lit_ctx *c, char **prompt)
{
    struct strbuf out = {0};
    char head[40];
    int head_len = snprintf(head, sizeof head, PH_OPEN "%s:", c->nonce);
    const char *s = *prompt, *p;
    free(r->lit);
    r->lit = NULL;
    r->n_lit = 0;
    int cap = 0;
    while ((p = strstr(s, head))) {
        char *end;
        long idx = strtol(p + head_len, &end, 10);
        strbuf_append(&out, s, (size_t)(p - s));
        if (end == p + head_len || idx < 0 || idx >= c->n || strncmp(end, PH_CLOSE, 3)) {
            strbuf_append(&out, p, (size_t)head_len);   // not ours after all: left as it is
            s = p + head_len;
            continue;
        }
        if (r->n_lit == cap) {
            cap = cap ? 2 * cap : 8;
            r->lit = xrealloc(r->lit, (size_t)cap * sizeof *r->lit);
        }
        r->lit[r->n_lit].start = out.len;
        strbuf_puts(&out, c->texts[idx]);
        r->lit[r->n_lit++].end = out.len;
        s = end + 3;
    }
    strbuf_puts(&out, s);
    free(*prompt);
    *prompt = strbuf_take(&out);
    r->lit_prompt = *prompt;
}

bool srv_render_ex(struct req *r, json_t *msgs_in, json_t *tools, json_t *kwargs, bool add_gen_prompt, char **prompt,
                   struct api_error *e)
{
    char *err = NULL;
    struct lit_ctx lc = {0};
    json_t *msgs = msgs_in;
    const struct gen_ops *ops = r->g->ops;
    if (!r->s->cfg.content_special_control && ops->encode_literal && ops->special_texts &&
        (lc.specials = ops->special_texts(r->g->self)) && lc.specials[0]) {
        snprintf(lc.nonce, sizeof lc.nonce, "%08llx%08llx", (unsigned long long)r->id,
                 (unsigned long long)(clock_now_ns() & 0xffffffffu));
        for (const char *const *sp = lc.specials; *sp; sp++) lc.first[(unsigned char)**sp] = true;
        msgs = json_deep_copy(msgs_in);
        neutralize_messages(&lc, msgs);
    }
    enum status st = r->g->ops->render(r->g->self, msgs, tools, kwargs, add_gen_prompt, prompt, &err);
    json_t *folded = st == STATUS_ETEMPLATE ? fold_system_turns(msgs) : NULL;
    if (folded) {
        // templates that allow a system turn only first (Gemma, Mistral...) get Claude Code's
        // mid-conversation system turns joined into the leading one
        LOG_INFO("req-%llu: the chat template refused a system turn after the first message (%s); folding the system turns into one",
                 (unsigned long long)r->id, err ? err : "");
        free(err);
        err = NULL;
        st = r->g->ops->render(r->g->self, folded, tools, kwargs, add_gen_prompt, prompt, &err);
        json_decref(folded);
    }
    if (st != STATUS_OK) *e = api_error_make(STATUS_ETEMPLATE, "messages", "chat template error: %s", err ? err : status_str(st));
    else if (lc.n) restore_texts(r, &lc, prompt);
    free(err);
    free(lc.texts);
    if (msgs != msgs_in) json_decref(msgs);
    return st == STATUS_OK;
}

void srv_chat_params(struct req *r, struct gen_params *p, const char *prompt, json_t **tools, bool use_tools,
                     const char *tool_id_prefix)
{
    r->tools = *tools;
    *tools = NULL;
    p->prompt_text = prompt;
    p->n_prompts = 1;
    p->tools = r->tools;
    p->family = use_tools ? srv_tool_family(r->s) : TOOL_FAMILY_NONE;
    p->reasoning = srv_reasoning(r->s);
    p->tool_id_prefix = tool_id_prefix;
}

enum status srv_encode_prompt(struct req *r, const char *text, bool add_special, int32_t **ids, int *n)
{
    if (r->n_lit && text == r->lit_prompt)
        return r->g->ops->encode_literal(r->g->self, text, strlen(text), add_special, r->lit, r->n_lit, ids, n);
    return r->g->ops->encode(r->g->self, text, strlen(text), add_special, ids, n);
}

bool srv_start_job(struct req *r, struct gen_params *p, struct api_error *e)
{
    struct gen *g = r->g;
    int n_sets = p->prompt_ids ? p->n_prompts : 1;
    int32_t *own_ids = NULL;
    int own_n = 0;
    int32_t **sets = p->prompt_ids;
    int *set_n = p->n_prompt_ids;
    if (!sets) {
        if (srv_encode_prompt(r, p->prompt_text, p->add_special, &own_ids, &own_n) != STATUS_OK) {
            *e = api_error_make(STATUS_EINVAL, NULL, "could not tokenize the prompt");
            return false;
        }
        sets = &own_ids;
        set_n = &own_n;
    }
    long long max_tokens = p->max_tokens;
    for (int i = 0; i < n_sets; i++) {
        long long m;
        if (!param_prompt_fits(r, set_n[i], p->max_tokens, p->max_given, &m, e)) { free(own_ids); return false; }
        if (i == 0 || m < max_tokens) max_tokens = m;
    }
    bool after_think = p->reasoning && output_format_prompt_in_think(&g->fmt, p->prompt_text);
    if (p->grammar) {
        // the stop token and, when the constraint waits for the reasoning block to close, its marker;
        // the output counted one token per byte: the bound the mask closes within (text/constraint.h,
        // "Budget rule": safe, not the fewest tokens when the shortest output has multi-byte tokens)
        long long need = (long long)constraint_grammar_min_bytes(p->grammar) + 1 + (after_think ? 1 : 0);
        if (need > max_tokens) {
            *e = api_error_make(STATUS_EINVAL, p->max_given ? "max_tokens" : p->grammar_field,
                                "the shortest output that satisfies '%s' needs %lld tokens, but max_tokens is %lld%s",
                                p->grammar_field, need, max_tokens, p->max_given ? "" : " (what the context leaves)");
            free(own_ids);
            return false;
        }
    }
    struct job_cfg jc = {
        .output = {
            .fmt = &g->fmt, .reasoning = p->reasoning,
            .start_in_think = after_think, .constrained = p->grammar && !p->grammar_has_text,
            .tool_family = p->family, .tools = p->tools, .stops = p->stops, .n_stops = p->n_stops,
            .tool_id_prefix = p->tool_id_prefix, .max_tool_calls = p->max_tool_calls,
        },
        .want_logprobs = p->n_logprobs != 0,
        .keep_tokens = p->keep_tokens,
    };
    srv_job_hooks(r, &jc);
    int n_choices = n_sets * p->n;
    struct job *j = job_new(g, &jc, n_choices);
    int32_t **cp = xcalloc((size_t)n_choices, sizeof *cp);
    int *cn = xcalloc((size_t)n_choices, sizeof *cn);
    for (int i = 0; i < n_choices; i++) { cp[i] = sets[i / p->n]; cn[i] = set_n[i / p->n]; }
    // message-end hints for the prefix cache (hybrid models snapshot state there): right after
    // each end-of-turn token of a chat prompt
    int32_t *ends = NULL;
    int n_ends = 0;
    if (!p->prompt_ids && g->eot_id >= 0) {
        for (int i = 0; i < own_n; i++) n_ends += own_ids[i] == g->eot_id;
        ends = n_ends ? xmalloc((size_t)n_ends * sizeof *ends) : NULL;
        n_ends = 0;
        for (int i = 0; i < own_n; i++)
            if (own_ids[i] == g->eot_id) ends[n_ends++] = i + 1;
    }
    struct gen_req req;
    memset(&req, 0, sizeof req);
    req.base.msg_ends = ends;
    req.base.n_msg_ends = n_ends;
    req.base.max_tokens = (int)max_tokens;
    req.base.sampling = p->sp;
    req.base.sampling.bias = p->bias;
    req.base.sampling.n_bias = p->n_bias;
    req.base.n_logprobs = p->n_logprobs;
    req.base.stop_ids = p->stop_ids;
    req.base.n_stop_ids = p->n_stop_ids;
    req.base.ignore_eos = p->ignore_eos;
    req.base.min_tokens = p->min_tokens;
    req.grammar = p->grammar;
    req.grammar_after_think = after_think;
    char msg[256] = "";
    enum status st = job_submit(j, &req, cp, cn, msg, sizeof msg);
    free(cp);
    free(cn);
    free(ends);
    free(own_ids);
    if (st != STATUS_OK) {
        job_free(j);
        if (st == STATUS_EBUSY) *e = api_error_make(st, NULL, "the server is busy (request queue full); retry shortly");
        else if (st == STATUS_ETOOLONG)
            *e = api_error_make(st, "messages", "the prompt does not fit: %s", msg[0] ? msg : "longer than the context or the KV cache");
        else if (st == STATUS_EINVAL) *e = api_error_make(st, NULL, "invalid generation parameters%s%s", msg[0] ? ": " : "", msg);
        else if (st == STATUS_EUNSUPPORTED) *e = api_error_make(st, p->grammar_field, "%s", msg[0] ? msg : status_str(st));
        else *e = api_error_make(st, NULL, "generation failed: %s", status_str(st));
        return false;
    }
    r->job = j;
    srv_register(r);
    return true;
}

bool srv_fim_prompt(struct req *r, const char *prefix, const char *suffix, const char *field, char **out, struct api_error *e)
{
    if (!r->g->fim.supported) {
        *e = api_error_make(STATUS_EUNSUPPORTED, field,
                            "'%s' (fill in the middle) needs a model with FIM tokens (Qwen's <|fim_prefix|>, StarCoder's "
                            "<fim_prefix>, DeepSeek-Coder's or Codestral's), and this model's tokenizer has none", field);
        return false;
    }
    *out = fim_prompt(&r->g->fim, prefix, suffix);
    return true;
}

bool srv_reasoning_effort(json_t *effort, const char *field, json_t *kwargs, struct api_error *e)
{
    if (!effort || json_is_null(effort)) return true;
    static const char *const off[] = { "none", "minimal", "low", NULL }, *const on[] = { "medium", "high", NULL };
    const char *v = json_string_value(effort);
    for (const char *const *k = off; v && *k; k++)
        if (!strcmp(v, *k)) {
            // the template's switch (Qwen3's enable_thinking); an explicit chat_template_kwargs wins
            if (!json_object_get(kwargs, "enable_thinking")) json_object_set_new(kwargs, "enable_thinking", json_false());
            return true;
        }
    for (const char *const *k = on; v && *k; k++)
        if (!strcmp(v, *k)) return true;
    *e = api_error_make(STATUS_EINVAL, field, "'%s' must be none, minimal, low, medium or high", field);
    return false;
}

bool srv_stop_token_ids(struct req *r, json_t *body, int32_t **ids, int *n, struct api_error *e)
{
    *ids = NULL;
    *n = 0;
    json_t *a = json_object_get(body, "stop_token_ids");
    if (!a || json_is_null(a)) return true;
    if (!json_is_array(a) || json_array_size(a) > 64) {
        *e = api_error_make(STATUS_EINVAL, "stop_token_ids", "'stop_token_ids' must be an array of at most 64 token ids");
        return false;
    }
    *ids = xcalloc(json_array_size(a) + 1, sizeof **ids);
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) {
        json_int_t id = json_is_integer(v) ? json_integer_value(v) : -1;
        if (id < 0 || id >= r->g->n_vocab) {
            *e = api_error_make(STATUS_EINVAL, "stop_token_ids", "'stop_token_ids[%zu]' is not a token id in [0, %d)", i,
                                r->g->n_vocab);
            free(*ids);
            *ids = NULL;
            return false;
        }
        (*ids)[(*n)++] = (int32_t)id;
    }
    return true;
}
