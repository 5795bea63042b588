/* api_openai: POST /v1/chat/completions and POST /v1/completions: request validation, prompt
 * building, and the JSON / SSE writers (chat.completion[.chunk], text_completion).
 *
 * Tool calls stream as OpenAI deltas: the first delta of a call carries index, id, type and name
 * with empty arguments, the next ones argument pieces. response_format and the vLLM / llama.cpp
 * constraint fields are read by constrain.c; tool_choice "required" or a named function (and
 * parallel_tool_calls: false) are enforced through the model's tool-call envelope
 * (srv_tool_constraint), never silently ignored.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "server/jsonw.h"
#include "server/server_int.h"
#include "text/constraint.h"

struct oai_w {
    char   id[64];
    char   model[256];
    long long created;
    bool   chat;
    bool   include_usage;
    bool   legacy_lp;            // /v1/completions logprobs shape
    bool  *role_sent, *finish_sent;
    int    n_per;                // choices per prompt
};

static void oai_w_free(void *p)
{
    struct oai_w *w = p;
    if (!w) return;
    free(w->role_sent);
    free(w->finish_sent);
    free(w);
}

/* finish_reason of each way a choice ends. */
static const char *const finish_names[] = {
    [JOB_END_STOP] = "stop", [JOB_END_TOOL_CALLS] = "tool_calls", [JOB_END_STOP_STRING] = "stop",
    [JOB_END_LENGTH] = "length", [JOB_END_ERROR] = "error", [JOB_END_CANCELED] = "abort",   // vLLM's word
};

static const char *finish_str(const struct job_choice_info *c) { return finish_names[c->end]; }

/* ==== Shared writers ==== */

/* n_per: choices per prompt (n); prompts of n choices over one prompt count once. */
static void usage_json(struct strbuf *sb, const struct job *j, int n_per)
{
    struct job_usage u;
    job_usage(j, n_per, &u);
    strbuf_printf(sb, "{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d,"
                      "\"prompt_tokens_details\":{\"cached_tokens\":%d},"
                      "\"completion_tokens_details\":{\"reasoning_tokens\":%d}}",
                  u.prompt, u.completion, u.prompt + u.completion, u.cached, u.reasoning);
}

static void token_json(struct strbuf *sb, struct gen *g, int32_t id)
{
    char *t = g->ops->decode(g->self, &id, 1, false);
    jsonw_cstr(sb, t);
    jsonw_raw(sb, ",\"bytes\":[");
    for (size_t i = 0; t[i]; i++) strbuf_printf(sb, i ? ",%u" : "%u", (unsigned char)t[i]);
    jsonw_raw(sb, "]");
    free(t);
}

/* Chat logprobs: {"content":[{"token","logprob","bytes","top_logprobs":[...]}]}. */
static void chat_logprobs(struct strbuf *sb, struct gen *g, const struct job_lp *lps, int n)
{
    jsonw_raw(sb, "{\"content\":[");
    for (int i = 0; i < n; i++) {
        const struct job_lp *lp = &lps[i];
        if (i) strbuf_putc(sb, ',');
        jsonw_raw(sb, "{\"token\":");
        token_json(sb, g, lp->id);
        jsonw_raw(sb, ",\"logprob\":");
        jsonw_float(sb, lp->logprob);
        jsonw_raw(sb, ",\"top_logprobs\":[");
        for (int k = 0; k < lp->n_top; k++) {
            if (k) strbuf_putc(sb, ',');
            jsonw_raw(sb, "{\"token\":");
            token_json(sb, g, lp->top[k].id);
            jsonw_raw(sb, ",\"logprob\":");
            jsonw_float(sb, lp->top[k].logprob);
            jsonw_raw(sb, "}");
        }
        jsonw_raw(sb, "]}");
    }
    jsonw_raw(sb, "]}");
}

/* Legacy completions logprobs: {"tokens","token_logprobs","top_logprobs":[{tok:lp}],"text_offset"}. */
static void legacy_logprobs(struct strbuf *sb, struct gen *g, const struct job_lp *lps, int n)
{
    struct strbuf toks = {0}, lpv = {0}, tops = {0}, offs = {0};
    size_t offset = 0;
    for (int i = 0; i < n; i++) {
        const struct job_lp *lp = &lps[i];
        char *t = g->ops->decode(g->self, &lp->id, 1, false);
        if (i) { strbuf_putc(&toks, ','); strbuf_putc(&lpv, ','); strbuf_putc(&tops, ','); strbuf_putc(&offs, ','); }
        jsonw_cstr(&toks, t);
        jsonw_float(&lpv, lp->logprob);
        strbuf_putc(&tops, '{');
        for (int k = 0; k < lp->n_top; k++) {
            char *tt = g->ops->decode(g->self, &lp->top[k].id, 1, false);
            if (k) strbuf_putc(&tops, ',');
            jsonw_key(&tops, tt);
            jsonw_float(&tops, lp->top[k].logprob);
            free(tt);
        }
        strbuf_putc(&tops, '}');
        strbuf_printf(&offs, "%zu", offset);
        offset += strlen(t);
        free(t);
    }
    strbuf_printf(sb, "{\"tokens\":[%s],\"token_logprobs\":[%s],\"top_logprobs\":[%s],\"text_offset\":[%s]}",
                  toks.data ? toks.data : "", lpv.data ? lpv.data : "", tops.data ? tops.data : "",
                  offs.data ? offs.data : "");
    strbuf_free(&toks);
    strbuf_free(&lpv);
    strbuf_free(&tops);
    strbuf_free(&offs);
}

/* ",\"logprobs\":..." for lps[0..n), null when there are none. */
static void logprobs_field(struct strbuf *o, struct req *r, const struct oai_w *w, const struct job_lp *lps, int n)
{
    jsonw_raw(o, ",\"logprobs\":");
    if (!n) jsonw_raw(o, "null");
    else if (w->legacy_lp) legacy_logprobs(o, r->g, lps, n);
    else chat_logprobs(o, r->g, lps, n);
}

/* ==== Streaming ==== */

static void chunk_begin(struct strbuf *o, const struct oai_w *w, int index)
{
    jsonw_raw(o, "data: {\"id\":");
    jsonw_cstr(o, w->id);
    strbuf_printf(o, ",\"object\":\"%s\",\"created\":%lld,\"model\":", w->chat ? "chat.completion.chunk" : "text_completion",
                  w->created);
    jsonw_cstr(o, w->model);
    strbuf_printf(o, ",\"choices\":[{\"index\":%d,", index);
}

/* Closes a chunk of choice i; with_lps: carries the logprobs of the tokens since the last chunk. */
static void chunk_end(struct strbuf *o, struct req *r, const struct oai_w *w, int i, const char *finish, bool with_lps)
{
    int n = 0;
    const struct job_lp *lps = with_lps ? job_drain_logprobs(r->job, i, &n) : NULL;
    logprobs_field(o, r, w, lps, n);
    jsonw_raw(o, ",\"finish_reason\":");
    jsonw_cstr(o, finish);
    jsonw_raw(o, "}]}\n\n");
}

/* The message of a stream's error for a tool call cut before its end (OUTPUT_TOOL_CUT). */
static void tool_cut_message(struct strbuf *o, const struct output_ev *ev)
{
    struct strbuf m = {0};
    strbuf_printf(&m, "tool call %d was cut before its end (the output ended inside it); its arguments are incomplete "
                  "and it must not be run", ev->tool_index);
    jsonw_str(o, m.data, m.len);
    strbuf_free(&m);
}

static void chat_delta(struct strbuf *o, const struct output_ev *ev)
{
    jsonw_raw(o, "\"delta\":{");
    switch (ev->kind) {
    case OUTPUT_REASONING:
        jsonw_raw(o, "\"reasoning_content\":");
        jsonw_str(o, ev->text.data, ev->text.len);
        break;
    case OUTPUT_CONTENT:
        jsonw_raw(o, "\"content\":");
        jsonw_str(o, ev->text.data, ev->text.len);
        break;
    case OUTPUT_TOOL_START:
        strbuf_printf(o, "\"tool_calls\":[{\"index\":%d,\"id\":", ev->tool_index);
        jsonw_cstr(o, ev->id);
        jsonw_raw(o, ",\"type\":\"function\",\"function\":{\"name\":");
        jsonw_cstr(o, ev->name);
        jsonw_raw(o, ",\"arguments\":\"\"}}]");
        break;
    case OUTPUT_TOOL_ARGS:
        strbuf_printf(o, "\"tool_calls\":[{\"index\":%d,\"function\":{\"arguments\":", ev->tool_index);
        jsonw_str(o, ev->text.data, ev->text.len);
        jsonw_raw(o, "}}]");
        break;
    case OUTPUT_TOOL_END: case OUTPUT_TOOL_CUT: break;
    }
    jsonw_raw(o, "}");
}

static void oai_fill(struct req *r)
{
    struct oai_w *w = r->wstate;
    struct job *j = r->job;
    struct strbuf *o = &r->out;
    bool all_done = true;
    for (int i = 0; i < job_n_choices(j); i++) {
        if (w->chat && !w->role_sent[i]) {
            chunk_begin(o, w, i);
            jsonw_raw(o, "\"delta\":{\"role\":\"assistant\",\"content\":\"\"}");
            chunk_end(o, r, w, i, NULL, false);
            w->role_sent[i] = true;
        }
        int n_evs;
        const struct output_ev *evs = job_drain(j, i, &n_evs);
        for (int k = 0; k < n_evs; k++) {
            const struct output_ev *ev = &evs[k];
            if (ev->kind == OUTPUT_TOOL_CUT) {   // its deltas went out already: say it is not a call
                jsonw_raw(o, "data: {\"error\":{\"message\":");
                tool_cut_message(o, ev);
                jsonw_raw(o, ",\"type\":\"server_error\",\"param\":null,\"code\":\"tool_call_incomplete\"}}\n\n");
                continue;
            }
            if (ev->kind == OUTPUT_TOOL_END || (!w->chat && ev->kind != OUTPUT_CONTENT)) continue;
            chunk_begin(o, w, i);
            if (w->chat) chat_delta(o, ev);
            else {
                jsonw_raw(o, "\"text\":");
                jsonw_str(o, ev->text.data, ev->text.len);
            }
            chunk_end(o, r, w, i, NULL, true);
        }
        struct job_choice_info c;
        job_choice_info(j, i, &c);
        if (c.done && !w->finish_sent[i]) {
            if (c.end == JOB_END_ERROR) {
                jsonw_raw(o, "data: {\"error\":{\"message\":");
                jsonw_cstr(o, status_str(c.error));
                jsonw_raw(o, ",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n");
            }
            chunk_begin(o, w, i);
            jsonw_raw(o, w->chat ? "\"delta\":{}" : "\"text\":\"\"");
            chunk_end(o, r, w, i, finish_str(&c), true);
            w->finish_sent[i] = true;
        }
        all_done &= w->finish_sent[i];
    }
    if (all_done && !r->sse_done) {
        if (w->include_usage) {
            jsonw_raw(o, "data: {\"id\":");
            jsonw_cstr(o, w->id);
            strbuf_printf(o, ",\"object\":\"%s\",\"created\":%lld,\"model\":",
                          w->chat ? "chat.completion.chunk" : "text_completion", w->created);
            jsonw_cstr(o, w->model);
            jsonw_raw(o, ",\"choices\":[],\"usage\":");
            usage_json(o, j, w->n_per);
            jsonw_raw(o, "}\n\n");
        }
        jsonw_raw(o, "data: [DONE]\n\n");
        r->sse_done = true;
    }
}

/* ==== Non-streaming ==== */

static void chat_message(struct strbuf *o, const struct output_ev *blocks, int n_blocks)
{
    struct strbuf content = {0}, reasoning = {0};
    int n_tools = 0;
    for (int b = 0; b < n_blocks; b++) {
        const struct output_ev *bl = &blocks[b];
        if (bl->kind == OUTPUT_CONTENT) strbuf_append(&content, bl->text.data, bl->text.len);
        else if (bl->kind == OUTPUT_REASONING) strbuf_append(&reasoning, bl->text.data, bl->text.len);
        else if (bl->kind == OUTPUT_TOOL_START) n_tools++;
    }
    jsonw_raw(o, "\"message\":{\"role\":\"assistant\",\"content\":");
    if (content.len || !n_tools) jsonw_str(o, content.data ? content.data : "", content.len);
    else jsonw_raw(o, "null");
    if (reasoning.len) {
        jsonw_raw(o, ",\"reasoning_content\":");
        jsonw_str(o, reasoning.data, reasoning.len);
    }
    if (n_tools) {
        jsonw_raw(o, ",\"tool_calls\":[");
        int k = 0;
        for (int b = 0; b < n_blocks; b++) {
            const struct output_ev *bl = &blocks[b];
            if (bl->kind != OUTPUT_TOOL_START) continue;
            if (k++) strbuf_putc(o, ',');
            jsonw_raw(o, "{\"id\":");
            jsonw_cstr(o, bl->id);
            jsonw_raw(o, ",\"type\":\"function\",\"function\":{\"name\":");
            jsonw_cstr(o, bl->name);
            jsonw_raw(o, ",\"arguments\":");
            jsonw_str(o, bl->text.data ? bl->text.data : "", bl->text.len);
            jsonw_raw(o, "}}");
        }
        jsonw_raw(o, "]");
    }
    jsonw_raw(o, "}");
    strbuf_free(&content);
    strbuf_free(&reasoning);
}

static enum MHD_Result respond_whole(struct req *r)
{
    struct oai_w *w = r->wstate;
    struct job *j = r->job;
    struct strbuf o = {0};
    jsonw_raw(&o, "{\"id\":");
    jsonw_cstr(&o, w->id);
    strbuf_printf(&o, ",\"object\":\"%s\",\"created\":%lld,\"model\":", w->chat ? "chat.completion" : "text_completion",
                  w->created);
    jsonw_cstr(&o, w->model);
    jsonw_raw(&o, ",\"choices\":[");
    for (int i = 0; i < job_n_choices(j); i++) {
        int n_blocks, n_lps;
        const struct output_ev *blocks = job_blocks(j, i, &n_blocks);
        if (i) strbuf_putc(&o, ',');
        strbuf_printf(&o, "{\"index\":%d,", i);
        if (w->chat) chat_message(&o, blocks, n_blocks);
        else {
            struct strbuf content = {0};
            for (int b = 0; b < n_blocks; b++)
                if (blocks[b].kind == OUTPUT_CONTENT) strbuf_append(&content, blocks[b].text.data, blocks[b].text.len);
            jsonw_raw(&o, "\"text\":");
            jsonw_str(&o, content.data ? content.data : "", content.len);
            strbuf_free(&content);
        }
        const struct job_lp *lps = job_logprobs(j, i, &n_lps);
        logprobs_field(&o, r, w, lps, n_lps);
        struct job_choice_info c;
        job_choice_info(j, i, &c);
        jsonw_raw(&o, ",\"finish_reason\":");
        jsonw_cstr(&o, finish_str(&c));
        jsonw_raw(&o, "}");
    }
    jsonw_raw(&o, "],\"usage\":");
    usage_json(&o, j, w->n_per);
    jsonw_raw(&o, ",\"system_fingerprint\":null}");
    enum MHD_Result ret = srv_send_json(r, 200, o.data, o.len);
    strbuf_free(&o);
    return ret;
}

/* Answers a started job: chat (chat.completion) or completions (text_completion, legacy logprobs),
 * streamed or whole. */
static enum MHD_Result run(struct req *r, bool chat, bool include_usage, bool stream, int n_per)
{
    struct oai_w *w = xcalloc(1, sizeof *w);
    srv_make_id(r, chat ? "chatcmpl-" : "cmpl-", w->id, sizeof w->id);
    snprintf(w->model, sizeof w->model, "%s", r->s->served_name);
    w->created = (long long)time(NULL);
    w->chat = chat;
    w->legacy_lp = !chat;
    w->include_usage = include_usage;
    w->n_per = n_per;
    w->role_sent = xcalloc((size_t)job_n_choices(r->job), sizeof *w->role_sent);
    w->finish_sent = xcalloc((size_t)job_n_choices(r->job), sizeof *w->finish_sent);
    return srv_answer_job(r, w, oai_w_free, stream, false, oai_fill, respond_whole);
}

/* ==== Common fields ==== */

static bool common_fields(struct req *r, json_t *body, struct gen_params *p, bool *stream, bool *include_usage,
                          struct logit_bias **bias, struct api_error *e)
{
    if (!param_model(r, body, e)) return false;
    if (!param_sampling(body, &r->g->sampling_default, &p->sp, e)) return false;
    long long n;
    if (!param_int(body, "n", 1, 16, 1, &n, e)) return false;
    p->n = (int)n;
    if (!param_bool(body, "stream", false, stream, e)) return false;
    json_t *so = json_object_get(body, "stream_options");
    *include_usage = false;
    if (so && !json_is_null(so)) {
        if (!json_is_object(so)) {
            *e = api_error_make(STATUS_EINVAL, "stream_options", "'stream_options' must be an object");
            return false;
        }
        if (!param_bool(so, "include_usage", false, include_usage, e)) return false;
    }
    if (!param_stops(body, "stop", p->stops, &p->n_stops, e)) return false;
    const char *user;
    if (!param_str(body, "user", false, &user, e)) return false;
    json_t *lb = json_object_get(body, "logit_bias");
    if (lb && !json_is_null(lb)) {
        if (!json_is_object(lb)) {
            *e = api_error_make(STATUS_EINVAL, "logit_bias", "'logit_bias' must be an object of token id -> bias");
            return false;
        }
        *bias = xcalloc(json_object_size(lb) + 1, sizeof **bias);
        const char *key;
        json_t *v;
        json_object_foreach(lb, key, v) {
            char *end;
            long id = strtol(key, &end, 10);
            if (!*key || *end || id < 0 || id >= r->g->n_vocab) {
                *e = api_error_make(STATUS_EINVAL, "logit_bias", "'logit_bias' key '%s' is not a token id in [0, %d)", key,
                                    r->g->n_vocab);
                return false;
            }
            if (!json_is_number(v) || json_number_value(v) < -100 || json_number_value(v) > 100) {
                *e = api_error_make(STATUS_EINVAL, "logit_bias", "'logit_bias[%s]' must be a number in [-100, 100]", key);
                return false;
            }
            (*bias)[p->n_bias].id = (int32_t)id;
            (*bias)[p->n_bias].bias = (float)json_number_value(v);
            p->n_bias++;
        }
        p->bias = *bias;
    }
    return true;
}

/* vLLM's generation limits: stop_token_ids, ignore_eos, min_tokens (EOS and stop ids masked in
 * the sampler until then; stop strings still end the output). */
static bool gen_limits(struct req *r, json_t *body, struct gen_params *p, int32_t **stop_ids, struct api_error *e)
{
    long long min_tokens;
    if (!srv_stop_token_ids(r, body, stop_ids, &p->n_stop_ids, e)) return false;
    p->stop_ids = *stop_ids;
    if (!param_bool(body, "ignore_eos", false, &p->ignore_eos, e)) return false;
    if (!param_int(body, "min_tokens", 0, 1 << 30, 0, &min_tokens, e)) return false;
    if (p->max_given && min_tokens > p->max_tokens) {
        *e = api_error_make(STATUS_EINVAL, "min_tokens", "'min_tokens' (%lld) must not exceed max_tokens (%lld)", min_tokens,
                            p->max_tokens);
        return false;
    }
    p->min_tokens = (int)min_tokens;
    return true;
}

/* ==== Chat ==== */

/* Validates messages and returns a normalized copy for the template (content as text, tool call
 * arguments as objects when they parse). */
json_t *srv_chat_messages(json_t *msgs, struct api_error *e)
{
    if (!json_is_array(msgs) || !json_array_size(msgs)) {
        *e = api_error_make(STATUS_EINVAL, "messages", "'messages' must be a non-empty array");
        return NULL;
    }
    json_t *out = json_array();
    json_t *call_ids = json_object();
    size_t i;
    json_t *m;
    char field[64];
    bool last_media_only = false;   // the request ends with a user turn that is media alone
    json_array_foreach(msgs, i, m) {
        snprintf(field, sizeof field, "messages[%zu]", i);
        if (!json_is_object(m)) {
            *e = api_error_make(STATUS_EINVAL, field, "'%s' must be an object", field);
            goto fail;
        }
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!role) {
            *e = api_error_make(STATUS_EINVAL, field, "'%s.role' must be a string", field);
            goto fail;
        }
        if (strcmp(role, "system") && strcmp(role, "developer") && strcmp(role, "user") && strcmp(role, "assistant") &&
            strcmp(role, "tool")) {
            *e = api_error_make(STATUS_EINVAL, field, "'%s.role' must be system, developer, user, assistant or tool, got '%s'",
                                field, role);
            goto fail;
        }
        json_t *tcs = json_object_get(m, "tool_calls");
        bool is_asst = !strcmp(role, "assistant");
        char cf[80];
        snprintf(cf, sizeof cf, "%s.content", field);
        char *text;
        int n_media;
        json_t *content = json_object_get(m, "content");
        if (!content_text_media(content, cf, is_asst, &text, &n_media, e)) goto fail;
        last_media_only = !strcmp(role, "user") && n_media && n_media == (int)json_array_size(content);
        json_t *nm = json_object();
        json_object_set_new(nm, "role", json_string(!strcmp(role, "developer") ? "system" : role));
        json_object_set_new(nm, "content", json_string(text));
        free(text);
        json_t *rc = json_object_get(m, "reasoning_content");
        if (is_asst && json_is_string(rc)) json_object_set(nm, "reasoning_content", rc);
        if (tcs && !json_is_null(tcs)) {
            if (!is_asst || !json_is_array(tcs)) {
                json_decref(nm);
                *e = api_error_make(STATUS_EINVAL, field, "'%s.tool_calls' must be an array on an assistant message", field);
                goto fail;
            }
            json_t *ntcs = json_array();
            size_t k;
            json_t *tc;
            json_array_foreach(tcs, k, tc) {
                json_t *fn = json_object_get(tc, "function");
                const char *name = json_string_value(json_object_get(fn, "name"));
                json_t *args = json_object_get(fn, "arguments");
                if (!name || (args && !json_is_string(args) && !json_is_object(args))) {
                    json_decref(ntcs);
                    json_decref(nm);
                    *e = api_error_make(STATUS_EINVAL, field, "'%s.tool_calls[%zu]' needs function.name and string arguments",
                                        field, k);
                    goto fail;
                }
                json_t *a = json_is_string(args) ? json_loads(json_string_value(args), 0, NULL) : json_incref(args);
                if (!a) a = json_incref(args ? args : json_object());
                if (!a) a = json_object();
                const char *id = json_string_value(json_object_get(tc, "id"));
                if (id) json_object_set_new(call_ids, id, json_true());
                json_t *ntc = json_pack("{s:s,s:{s:s,s:o}}", "type", "function", "function", "name", name, "arguments", a);
                if (id) json_object_set_new(ntc, "id", json_string(id));
                json_array_append_new(ntcs, ntc);
            }
            json_object_set_new(nm, "tool_calls", ntcs);
        }
        if (!strcmp(role, "tool")) {
            const char *tid = json_string_value(json_object_get(m, "tool_call_id"));
            if (!tid || !json_object_get(call_ids, tid)) {
                json_decref(nm);
                *e = api_error_make(STATUS_EINVAL, field, "'%s' is a tool result for '%s', but no earlier assistant message made that call",
                                    field, tid ? tid : "(no tool_call_id)");
                goto fail;
            }
            json_object_set_new(nm, "tool_call_id", json_string(tid));
        }
        json_array_append_new(out, nm);
    }
    if (last_media_only) {
        *e = api_error_make(STATUS_EUNSUPPORTED, "messages",
                            "the last user message holds only images or files, and this model reads text only");
        goto fail;
    }
    json_decref(call_ids);
    return out;
fail:
    json_decref(call_ids);
    json_decref(out);
    return NULL;
}

static json_t *chat_tool(json_t *t, size_t i, struct api_error *e)
{
    json_t *fn = json_object_get(t, "function");
    const char *type = json_string_value(json_object_get(t, "type"));
    const char *name = json_string_value(json_object_get(fn, "name"));
    json_t *params = json_object_get(fn, "parameters");
    if (!type || strcmp(type, "function") || !name || !*name || (params && !json_is_object(params))) {
        *e = api_error_make(STATUS_EINVAL, "tools", "'tools[%zu]' must be {\"type\":\"function\",\"function\":{\"name\":string,\"parameters\":object}}", i);
        return NULL;
    }
    return json_incref(t);
}

static const char *chat_tool_choice(json_t *tc, struct api_error *e)
{
    if (json_is_string(tc)) return json_string_value(tc);
    if (json_is_object(tc)) return "named";
    *e = api_error_make(STATUS_EINVAL, "tool_choice", "'tool_choice' must be a string or an object");
    return NULL;
}

const struct tool_api srv_chat_tool_api = {
    .convert = chat_tool, .choice_mode = chat_tool_choice, .not_array = "'tools' must be an array",
    .constrained = (const char *const[]){ "required", "named", NULL },
    .invalid_choice = "'tool_choice' must be auto, none, required or a function",
};

enum MHD_Result api_openai_chat(struct req *r, json_t *body)
{
    struct api_error e;
    struct gen_params p;
    memset(&p, 0, sizeof p);
    bool stream, include_usage, use_tools, lp;
    struct logit_bias *bias = NULL;
    json_t *msgs = NULL, *kwargs = NULL, *tools = NULL;
    char *prompt = NULL;
    int32_t *stop_ids = NULL;
    long long max_tokens, mct, top_lp;
    enum MHD_Result ret;
    if (!common_fields(r, body, &p, &stream, &include_usage, &bias, &e)) goto fail;
    if (!param_int(body, "max_tokens", 1, 1 << 30, 0, &max_tokens, &e)) goto fail;
    if (!param_int(body, "max_completion_tokens", 1, 1 << 30, 0, &mct, &e)) goto fail;
    if (mct) max_tokens = mct;
    p.max_tokens = max_tokens;
    p.max_given = max_tokens > 0;
    if (!param_bool(body, "logprobs", false, &lp, &e)) goto fail;
    if (!param_int(body, "top_logprobs", 0, 20, 0, &top_lp, &e)) goto fail;
    if (top_lp && !lp) {
        e = api_error_make(STATUS_EINVAL, "top_logprobs", "'top_logprobs' needs 'logprobs': true");
        goto fail;
    }
    p.n_logprobs = lp ? (top_lp ? (int)top_lp : -1) : 0;
    if (!srv_tools(body, &srv_chat_tool_api, &tools, &use_tools, &e)) goto fail;
    if (!srv_constraint_parse(r->s->grammars, body, &p.grammar, &p.grammar_field, &e)) goto fail;
    json_t *ck = json_object_get(body, "chat_template_kwargs");
    if (ck && !json_is_null(ck) && !json_is_object(ck)) {
        e = api_error_make(STATUS_EINVAL, "chat_template_kwargs", "'chat_template_kwargs' must be an object");
        goto fail;
    }
    if (!(msgs = srv_chat_messages(json_object_get(body, "messages"), &e))) goto fail;
    kwargs = param_kwargs(r, ck);
    if (!srv_reasoning_effort(json_object_get(body, "reasoning_effort"), "reasoning_effort", kwargs, &e)) goto fail;
    bool parallel, add_gen, cont_final;
    if (!param_bool(body, "parallel_tool_calls", true, &parallel, &e)) goto fail;
    if (!param_bool(body, "add_generation_prompt", true, &add_gen, &e)) goto fail;
    if (!param_bool(body, "continue_final_message", false, &cont_final, &e)) goto fail;
    if (cont_final) {
        e = api_error_make(STATUS_EUNSUPPORTED, "continue_final_message",
                           "'continue_final_message' is not supported by this server; end the conversation with a user turn");
        goto fail;
    }
    if (!gen_limits(r, body, &p, &stop_ids, &e)) goto fail;
    if (!srv_render_ex(r, msgs, use_tools ? tools : NULL, kwargs, add_gen, &prompt, &e)) goto fail;
    srv_chat_params(r, &p, prompt, &tools, use_tools, "call_");
    p.max_tool_calls = parallel ? 0 : 1;
    if (!srv_tool_constraint(r, body, &srv_chat_tool_api, &p, &e)) goto fail;
    if (!srv_start_job(r, &p, &e)) goto fail;
    ret = run(r, true, include_usage, stream, p.n);
    goto out;
fail:
    ret = srv_send_error(r, &e);
out:
    constraint_grammar_free(p.grammar);
    free(bias);
    free(stop_ids);
    free(prompt);
    json_decref(msgs);
    json_decref(kwargs);
    json_decref(tools);
    return ret;
}

/* ==== Completions ==== */

enum MHD_Result api_openai_completions(struct req *r, json_t *body)
{
    struct api_error e;
    struct gen_params p;
    memset(&p, 0, sizeof p);
    bool stream, include_usage, echo;
    struct logit_bias *bias = NULL;
    long long max_tokens, lp, best_of;
    int32_t **sets = NULL;
    int *set_n = NULL, n_sets = 0;
    int32_t *stop_ids = NULL;
    enum MHD_Result ret;
    if (!common_fields(r, body, &p, &stream, &include_usage, &bias, &e)) goto fail;
    if (!param_int(body, "max_tokens", 1, 1 << 30, 16, &max_tokens, &e)) goto fail;
    p.max_tokens = max_tokens;
    p.max_given = true;
    if (!param_int(body, "logprobs", 0, 20, 0, &lp, &e)) goto fail;
    p.n_logprobs = json_object_get(body, "logprobs") && !json_is_null(json_object_get(body, "logprobs")) ? (lp ? (int)lp : -1) : 0;
    if (!param_bool(body, "echo", false, &echo, &e)) goto fail;
    if (echo) { e = api_error_make(STATUS_EUNSUPPORTED, "echo", "'echo' is not supported"); goto fail; }
    if (!param_int(body, "best_of", 1, 1, 1, &best_of, &e)) goto fail;
    if (!gen_limits(r, body, &p, &stop_ids, &e)) goto fail;
    const char *suffix;
    if (!param_str(body, "suffix", false, &suffix, &e)) goto fail;
    if (suffix && !*suffix && !r->g->fim.supported) suffix = NULL;   // nothing after the hole: a plain completion
    json_t *pr = json_object_get(body, "prompt");
    // prompt: string | [string] | [int] | [[int]]
    json_t *list = json_is_array(pr) && json_array_size(pr) && !json_is_integer(json_array_get(pr, 0)) ? pr : NULL;
    size_t n_items = list ? json_array_size(list) : 1;
    if (!pr || (!json_is_string(pr) && !json_is_array(pr)) || (json_is_array(pr) && !json_array_size(pr)) || n_items > 64) {
        e = api_error_make(STATUS_EINVAL, "prompt", "'prompt' must be a string, an array of strings, or token ids (at most 64 prompts)");
        goto fail;
    }
    sets = xcalloc(n_items, sizeof *sets);
    set_n = xcalloc(n_items, sizeof *set_n);
    for (size_t i = 0; i < n_items; i++, n_sets++) {
        json_t *item = list ? json_array_get(list, i) : pr;
        if (json_is_string(item)) {
            // suffix: the prompt is the text before a hole, the suffix the text after (fill in the middle)
            char *fim = NULL;
            if (suffix && !srv_fim_prompt(r, json_string_value(item), suffix, "suffix", &fim, &e)) goto fail;
            const char *text = fim ? fim : json_string_value(item);
            enum status st = r->g->ops->encode(r->g->self, text, fim ? strlen(fim) : json_string_length(item), r->g->add_bos,
                                               &sets[i], &set_n[i]);
            free(fim);
            if (st != STATUS_OK) {
                e = api_error_make(STATUS_EINVAL, "prompt", "could not tokenize prompt %zu", i);
                goto fail;
            }
        } else if (suffix) {
            e = api_error_make(STATUS_EINVAL, "suffix", "'suffix' needs text prompts (the text before the hole), not token ids");
            goto fail;
        } else if (json_is_array(item)) {
            size_t k;
            json_t *v;
            sets[i] = xmalloc((json_array_size(item) + 1) * sizeof **sets);
            json_array_foreach(item, k, v) {
                if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= r->g->n_vocab) {
                    e = api_error_make(STATUS_EINVAL, "prompt", "'prompt' token ids must be integers in [0, %d)", r->g->n_vocab);
                    n_sets++;
                    goto fail;
                }
                sets[i][k] = (int32_t)json_integer_value(v);
            }
            set_n[i] = (int)json_array_size(item);
        } else {
            e = api_error_make(STATUS_EINVAL, "prompt", "'prompt[%zu]' must be a string or an array of token ids", i);
            goto fail;
        }
    }
    if (n_sets * p.n > 64) { e = api_error_make(STATUS_EINVAL, "n", "too many choices (prompts x n > 64)"); goto fail; }
    p.prompt_ids = sets;
    p.n_prompt_ids = set_n;
    p.n_prompts = n_sets;
    p.family = TOOL_FAMILY_NONE;
    p.reasoning = false;
    if (!srv_constraint_parse(r->s->grammars, body, &p.grammar, &p.grammar_field, &e)) goto fail;
    if (!srv_start_job(r, &p, &e)) goto fail;
    ret = run(r, false, include_usage, stream, p.n);
    goto out;
fail:
    ret = srv_send_error(r, &e);
out:
    for (int i = 0; i < n_sets; i++) free(sets[i]);
    free(sets);
    free(set_n);
    free(bias);
    free(stop_ids);
    constraint_grammar_free(p.grammar);
    return ret;
}
