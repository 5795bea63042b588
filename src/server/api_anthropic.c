/* api_anthropic: POST /v1/messages and POST /v1/messages/count_tokens (Anthropic Messages API).
 *
 * Content blocks are mapped onto the OpenAI-style messages the chat templates expect: text ->
 * content, thinking -> reasoning_content, tool_use -> tool_calls (input as the arguments object),
 * tool_result -> a "tool" message (it must answer a tool_use of an earlier assistant turn).
 * Streaming follows the documented event sequence: message_start, ping, per block
 * content_block_start / *_delta / content_block_stop (text_delta, thinking_delta + signature_delta,
 * input_json_delta), message_delta (stop_reason, usage), message_stop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "server/jsonw.h"
#include "server/server_int.h"
#include "text/constraint.h"

enum blk { BLK_NONE = 0, BLK_TEXT, BLK_THINKING, BLK_TOOL };

struct anth_w {
    char      id[64];
    char      model[256];
    bool      started;
    enum blk  open;
    int       n_blocks;          // content block index of the next block
    char      stop_seqs[16][256];
};

/* ==== Request ==== */

/* Claude Code opens `system` with a billing line ("x-anthropic-billing-header: cc_version=2.1.x.HHH;
 * ..."; some versions add a per-request "cch=" nonce) whose hash changes with the conversation. It
 * means nothing to a model, and at the very start of the prompt it would make every session (or
 * every request) miss the prefix cache for Claude Code's 11k-token system prompt and tools. */
static bool is_billing_line(const char *t)
{
    static const char prefix[] = "x-anthropic-billing-header:";
    return t && !strncmp(t, prefix, sizeof prefix - 1);
}

static bool system_text(json_t *sys, struct strbuf *out, struct api_error *e)
{
    if (!sys || json_is_null(sys)) return true;
    json_t *kept = json_incref(sys);
    if (json_is_array(sys)) {   // the line is a block of its own: drop it
        json_decref(kept);
        kept = json_array();
        size_t i;
        json_t *b;
        json_array_foreach(sys, i, b) {
            if (is_billing_line(json_string_value(json_object_get(b, "text")))) LOG_DEBUG("system[%zu]: Claude Code's billing line dropped", i);
            else json_array_append(kept, b);
        }
    }
    char *t;
    bool ok = content_text(kept, "system", false, &t, e);
    json_decref(kept);
    if (!ok) return false;
    const char *start = t;
    if (is_billing_line(start)) {   // a string system: the line up to its newline
        const char *nl = strchr(start, '\n');
        start = nl ? nl + 1 : start + strlen(start);
    }
    strbuf_puts(out, start);
    free(t);
    return true;
}

static bool block_text(json_t *c, const char *field, struct strbuf *out, struct api_error *e)
{
    char *t;
    if (!content_text_media(c, field, true, &t, NULL, e)) return false;
    strbuf_puts(out, t);
    free(t);
    return true;
}

/* Anthropic messages -> template messages. */
static json_t *anth_messages(json_t *body, struct api_error *e)
{
    json_t *msgs = json_object_get(body, "messages");
    if (!json_is_array(msgs) || !json_array_size(msgs)) {
        *e = api_error_make(STATUS_EINVAL, "messages", "messages: must be a non-empty array");
        return NULL;
    }
    json_t *out = json_array();
    json_t *ids = json_object();
    struct strbuf sys = {0};
    if (!system_text(json_object_get(body, "system"), &sys, e)) goto fail;
    if (sys.len) json_array_append_new(out, json_pack("{s:s,s:s}", "role", "system", "content", sys.data));
    size_t i;
    json_t *m;
    char f[96];
    bool last_media_only = false;   // the request ends with a user turn of images/documents alone
    json_array_foreach(msgs, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!json_is_object(m) || !role || (strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "system"))) {
            *e = api_error_make(STATUS_EINVAL, "messages", "messages.%zu.role: must be 'user', 'assistant' or 'system'", i);
            goto fail;
        }
        last_media_only = false;
        if (!strcmp(role, "system")) {
            // Claude Code sends its environment as a system turn mid-conversation: rendered as a
            // system turn, as the OpenAI path does for 'developer'
            char *t;
            snprintf(f, sizeof f, "messages.%zu.content", i);
            if (!content_text(json_object_get(m, "content"), f, true, &t, e)) goto fail;
            json_array_append_new(out, json_pack("{s:s,s:s}", "role", "system", "content", t));
            free(t);
            continue;
        }
        bool asst = !strcmp(role, "assistant");
        json_t *content = json_object_get(m, "content");
        struct strbuf text = {0}, thinking = {0};
        json_t *calls = json_array();
        int n_media = 0;
        if (json_is_string(content)) strbuf_append(&text, json_string_value(content), json_string_length(content));
        else if (json_is_array(content)) {
            size_t k;
            json_t *b;
            json_array_foreach(content, k, b) {
                const char *type = json_string_value(json_object_get(b, "type"));
                snprintf(f, sizeof f, "messages.%zu.content.%zu", i, k);
                if (!type) {
                    *e = api_error_make(STATUS_EINVAL, "messages", "%s.type: Field required", f);
                    goto fail_msg;
                }
                if (!strcmp(type, "text")) {
                    json_t *t = json_object_get(b, "text");
                    if (!json_is_string(t)) {
                        *e = api_error_make(STATUS_EINVAL, "messages", "%s.text: must be a string", f);
                        goto fail_msg;
                    }
                    strbuf_append(&text, json_string_value(t), json_string_length(t));
                } else if (!strcmp(type, "thinking") && asst) {
                    json_t *t = json_object_get(b, "thinking");
                    if (json_is_string(t)) strbuf_append(&thinking, json_string_value(t), json_string_length(t));
                } else if (!strcmp(type, "redacted_thinking") && asst) {
                } else if (content_is_media(type) && !asst) {
                    content_media_placeholder(&text, type);
                    n_media++;
                } else if (asst && (!strcmp(type, "server_tool_use") || strstr(type, "_tool_result"))) {
                    // a server tool's turn (web search...): this server runs none, the model never sees it
                    LOG_INFO("messages.%zu: skipping a '%s' block (server tools are not run here)", i, type);
                } else if (!strcmp(type, "tool_use") && asst) {
                    const char *id = json_string_value(json_object_get(b, "id"));
                    const char *name = json_string_value(json_object_get(b, "name"));
                    json_t *input = json_object_get(b, "input");
                    if (!id || !name || !json_is_object(input)) {
                        *e = api_error_make(STATUS_EINVAL, "messages", "%s: tool_use needs id, name and an input object", f);
                        goto fail_msg;
                    }
                    json_object_set_new(ids, id, json_true());
                    json_array_append_new(calls, json_pack("{s:s,s:s,s:{s:s,s:O}}", "id", id, "type", "function",
                                                           "function", "name", name, "arguments", input));
                } else if (!strcmp(type, "tool_result") && !asst) {
                    const char *tid = json_string_value(json_object_get(b, "tool_use_id"));
                    if (!tid || !json_object_get(ids, tid)) {
                        *e = api_error_make(STATUS_EINVAL, "messages",
                                            "%s: tool_result for '%s' does not answer a tool_use block of an earlier assistant message",
                                            f, tid ? tid : "(missing tool_use_id)");
                        goto fail_msg;
                    }
                    struct strbuf rt = {0};
                    char rf[128];
                    snprintf(rf, sizeof rf, "%s.content", f);
                    if (!block_text(json_object_get(b, "content"), rf, &rt, e)) { strbuf_free(&rt); goto fail_msg; }
                    if (json_is_true(json_object_get(b, "is_error"))) LOG_DEBUG("%s: the tool reported an error", f);
                    json_array_append_new(out, json_pack("{s:s,s:s,s:s}", "role", "tool", "tool_call_id", tid, "content",
                                                         rt.data ? rt.data : ""));
                    strbuf_free(&rt);
                } else {
                    *e = api_error_make(STATUS_EUNSUPPORTED, "messages", "%s: content block type '%s' is not supported in a %s message",
                                        f, type, role);
                    goto fail_msg;
                }
            }
        } else {
            *e = api_error_make(STATUS_EINVAL, "messages", "messages.%zu.content: must be a string or an array of blocks", i);
            goto fail_msg;
        }
        last_media_only = !asst && n_media && n_media == (int)json_array_size(content);
        if (asst || text.len || !json_array_size(calls)) {
            json_t *nm = json_pack("{s:s,s:s}", "role", role, "content", text.data ? text.data : "");
            if (thinking.len) json_object_set_new(nm, "reasoning_content", json_string(thinking.data));
            if (json_array_size(calls)) json_object_set(nm, "tool_calls", calls);
            bool only_tool_results = !asst && !text.len && json_is_array(content) && json_array_size(content);
            if (!only_tool_results) json_array_append_new(out, nm);
            else json_decref(nm);
        }
        strbuf_free(&text);
        strbuf_free(&thinking);
        json_decref(calls);
        continue;
fail_msg:
        strbuf_free(&text);
        strbuf_free(&thinking);
        json_decref(calls);
        goto fail;
    }
    if (last_media_only) {
        *e = api_error_make(STATUS_EUNSUPPORTED, "messages",
                            "the last user message holds only images or documents, and this model reads text only");
        goto fail;
    }
    strbuf_free(&sys);
    json_decref(ids);
    return out;
fail:
    strbuf_free(&sys);
    json_decref(ids);
    json_decref(out);
    return NULL;
}

/* A tool {name, description, input_schema} in the OpenAI shape the templates expect. */
static json_t *anth_tool(json_t *t, size_t i, struct api_error *e)
{
    const char *type = json_string_value(json_object_get(t, "type"));
    if (type && strcmp(type, "custom")) {
        // server tools (web_search_20250305, ...) run on Anthropic's side; none runs here
        LOG_INFO("tools.%zu: leaving out the server tool of type '%s' (this server runs no server tools)", i, type);
        return json_null();
    }
    const char *name = json_string_value(json_object_get(t, "name"));
    json_t *schema = json_object_get(t, "input_schema");
    if (!name || !*name || !json_is_object(schema)) {
        *e = api_error_make(STATUS_EINVAL, "tools", "tools.%zu: needs a name and an input_schema object", i);
        return NULL;
    }
    json_t *fn = json_pack("{s:s,s:O}", "name", name, "parameters", schema);
    json_t *d = json_object_get(t, "description");
    if (json_is_string(d)) json_object_set(fn, "description", d);
    if (json_is_true(json_object_get(t, "strict"))) json_object_set_new(fn, "strict", json_true());   // structured outputs
    return json_pack("{s:s,s:o}", "type", "function", "function", fn);
}

static const char *anth_tool_choice(json_t *tc, struct api_error *e)
{
    const char *type = json_string_value(json_object_get(tc, "type"));
    if (!json_is_object(tc) || !type)
        *e = api_error_make(STATUS_EINVAL, "tool_choice", "tool_choice: must be an object with a type");
    return type;
}

static const struct tool_api anth_tool_api = {
    .convert = anth_tool, .choice_mode = anth_tool_choice, .not_array = "tools: must be an array",
    .constrained = (const char *const[]){ "any", "tool", NULL },
    .invalid_choice = "tool_choice.type: must be auto, any, tool or none",
};

/* Shared by messages and count_tokens: render the prompt. */
static bool anth_render(struct req *r, json_t *body, char **prompt, json_t **tools, bool *use_tools,
                        struct api_error *e)
{
    json_t *msgs = NULL, *kwargs = NULL;
    bool ok = false;
    if (!srv_tools(body, &anth_tool_api, tools, use_tools, e)) return false;
    if (!(msgs = anth_messages(body, e))) goto out;
    kwargs = param_kwargs(r, json_object_get(body, "chat_template_kwargs"));
    json_t *th = json_object_get(body, "thinking");
    if (json_is_object(th)) {
        const char *t = json_string_value(json_object_get(th, "type"));
        if (t && !strcmp(t, "disabled")) json_object_set_new(kwargs, "enable_thinking", json_false());
        if (t && !strcmp(t, "enabled")) json_object_set_new(kwargs, "enable_thinking", json_true());
    }
    ok = srv_render(r, msgs, *use_tools ? *tools : NULL, kwargs, prompt, e);
out:
    json_decref(msgs);
    json_decref(kwargs);
    return ok;
}

/* ==== Writers ==== */

/* stop_reason of each way a choice ends (an error is reported by its own event first). */
static const char *const stop_reasons[] = {
    [JOB_END_STOP] = "end_turn", [JOB_END_TOOL_CALLS] = "tool_use", [JOB_END_STOP_STRING] = "stop_sequence",
    [JOB_END_LENGTH] = "max_tokens", [JOB_END_ERROR] = "max_tokens",
    [JOB_END_CANCELED] = "max_tokens",   // cut short: the API has no reason for it; never end_turn
};

static const char *stop_reason(const struct job_choice_info *c) { return stop_reasons[c->end]; }

/* Anthropic's usage: input_tokens counts the prompt tokens not read from the cache, so that
 * input + cache_read + cache_creation is the whole prompt (clients add them up). */
static void usage(struct strbuf *o, const struct job_choice_info *c, int n_out)
{
    strbuf_printf(o, "{\"input_tokens\":%d,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":%d,"
                     "\"output_tokens\":%d}", c->n_prompt - c->n_cached, c->n_cached, n_out);
}

/* "stop_reason":..,"stop_sequence":..(closing the delta object when streaming),"usage":{..}: the
 * tail of a whole message and of the streamed message_delta. */
static void stop_and_usage(struct strbuf *o, const struct job_choice_info *c, const char *between)
{
    jsonw_raw(o, "\"stop_reason\":");
    jsonw_cstr(o, stop_reason(c));
    jsonw_raw(o, ",\"stop_sequence\":");
    jsonw_cstr(o, c->stop_string);
    strbuf_printf(o, "%s,\"usage\":", between);
    usage(o, c, c->n_generated);
    strbuf_putc(o, '}');
}

static void event(struct strbuf *o, const char *name)
{
    strbuf_printf(o, "event: %s\ndata: ", name);
}

static void close_block(struct anth_w *w, struct strbuf *o)
{
    if (w->open == BLK_NONE) return;
    if (w->open == BLK_THINKING) {
        event(o, "content_block_delta");
        strbuf_printf(o, "{\"type\":\"content_block_delta\",\"index\":%d,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"\"}}\n\n",
                      w->n_blocks - 1);
    }
    event(o, "content_block_stop");
    strbuf_printf(o, "{\"type\":\"content_block_stop\",\"index\":%d}\n\n", w->n_blocks - 1);
    w->open = BLK_NONE;
}

static void open_block(struct anth_w *w, struct strbuf *o, enum blk kind, const struct output_ev *ev)
{
    close_block(w, o);
    event(o, "content_block_start");
    strbuf_printf(o, "{\"type\":\"content_block_start\",\"index\":%d,\"content_block\":", w->n_blocks);
    if (kind == BLK_TEXT) jsonw_raw(o, "{\"type\":\"text\",\"text\":\"\"}");
    else if (kind == BLK_THINKING) jsonw_raw(o, "{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}");
    else {
        jsonw_raw(o, "{\"type\":\"tool_use\",\"id\":");
        jsonw_cstr(o, ev->id);
        jsonw_raw(o, ",\"name\":");
        jsonw_cstr(o, ev->name);
        jsonw_raw(o, ",\"input\":{}}");
    }
    jsonw_raw(o, "}\n\n");
    w->n_blocks++;
    w->open = kind;
}

static void delta(struct anth_w *w, struct strbuf *o, const char *type, const char *key, const struct strbuf *t)
{
    event(o, "content_block_delta");
    strbuf_printf(o, "{\"type\":\"content_block_delta\",\"index\":%d,\"delta\":{\"type\":\"%s\",\"%s\":", w->n_blocks - 1,
                  type, key);
    jsonw_str(o, t->data ? t->data : "", t->len);
    jsonw_raw(o, "}}\n\n");
}

static void anth_fill(struct req *r)
{
    struct anth_w *w = r->wstate;
    struct strbuf *o = &r->out;
    struct job_choice_info c;
    job_choice_info(r->job, 0, &c);
    // message_start waits for the first token: the prefix cache's share of the prompt is known then
    if (!w->started && !c.done && !c.n_generated) return;
    if (!w->started) {
        event(o, "message_start");
        jsonw_raw(o, "{\"type\":\"message_start\",\"message\":{\"id\":");
        jsonw_cstr(o, w->id);
        jsonw_raw(o, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
        jsonw_cstr(o, w->model);
        jsonw_raw(o, ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":");
        usage(o, &c, 0);
        jsonw_raw(o, "}}\n\n");
        event(o, "ping");
        jsonw_raw(o, "{\"type\":\"ping\"}\n\n");
        w->started = true;
    }
    int n_evs;
    const struct output_ev *evs = job_drain(r->job, 0, &n_evs);
    for (int k = 0; k < n_evs; k++) {
        const struct output_ev *ev = &evs[k];
        switch (ev->kind) {
        case OUTPUT_REASONING:
            if (w->open != BLK_THINKING) open_block(w, o, BLK_THINKING, ev);
            delta(w, o, "thinking_delta", "thinking", &ev->text);
            break;
        case OUTPUT_CONTENT:
            if (w->open != BLK_TEXT) open_block(w, o, BLK_TEXT, ev);
            delta(w, o, "text_delta", "text", &ev->text);
            break;
        case OUTPUT_TOOL_START:
            open_block(w, o, BLK_TOOL, ev);
            break;
        case OUTPUT_TOOL_ARGS:
            if (w->open == BLK_TOOL) delta(w, o, "input_json_delta", "partial_json", &ev->text);
            break;
        case OUTPUT_TOOL_END:
            close_block(w, o);
            break;
        case OUTPUT_TOOL_CUT:   // its input went out already: an error says it is not a tool use
            close_block(w, o);
            event(o, "error");
            strbuf_printf(o, "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"tool use %d was cut "
                          "before its end (the output ended inside it); its input is incomplete and it must not be run\"}}\n\n",
                          ev->tool_index);
            break;
        }
    }
    if (c.done && !r->sse_done) {
        close_block(w, o);
        if (c.failed) {
            event(o, "error");
            jsonw_raw(o, "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":");
            jsonw_cstr(o, status_str(c.error));
            jsonw_raw(o, "}}\n\n");
        }
        event(o, "message_delta");
        jsonw_raw(o, "{\"type\":\"message_delta\",\"delta\":{");
        stop_and_usage(o, &c, "}");
        jsonw_raw(o, "\n\n");
        event(o, "message_stop");
        jsonw_raw(o, "{\"type\":\"message_stop\"}\n\n");
        r->sse_done = true;
    }
}

/* A tool call's arguments as the "input" object ({} when they are not one). */
static void tool_input(struct strbuf *o, struct req *r, const struct output_ev *call)
{
    json_t *in = call->text.len ? json_loadb(call->text.data, call->text.len, 0, NULL) : NULL;
    if (json_is_object(in)) {
        char *s = json_dumps(in, JSON_COMPACT);
        jsonw_raw(o, s);
        free(s);
    } else {
        LOG_WARN("req-%llu: tool call %s arguments are not a JSON object; sending {}", (unsigned long long)r->id, call->name);
        jsonw_raw(o, "{}");
    }
    json_decref(in);
}

static enum MHD_Result anth_whole(struct req *r)
{
    struct anth_w *w = r->wstate;
    struct job_choice_info c;
    job_choice_info(r->job, 0, &c);
    struct strbuf o = {0};
    jsonw_raw(&o, "{\"id\":");
    jsonw_cstr(&o, w->id);
    jsonw_raw(&o, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    jsonw_cstr(&o, w->model);
    jsonw_raw(&o, ",\"content\":[");
    int n_blocks;
    const struct output_ev *blocks = job_blocks(r->job, 0, &n_blocks);
    for (int b = 0; b < n_blocks; b++) {
        const struct output_ev *bl = &blocks[b];
        if (b) strbuf_putc(&o, ',');
        if (bl->kind == OUTPUT_REASONING) {
            jsonw_raw(&o, "{\"type\":\"thinking\",\"thinking\":");
            jsonw_str(&o, bl->text.data, bl->text.len);
            jsonw_raw(&o, ",\"signature\":\"\"}");
        } else if (bl->kind == OUTPUT_CONTENT) {
            jsonw_raw(&o, "{\"type\":\"text\",\"text\":");
            jsonw_str(&o, bl->text.data, bl->text.len);
            jsonw_raw(&o, "}");
        } else {
            jsonw_raw(&o, "{\"type\":\"tool_use\",\"id\":");
            jsonw_cstr(&o, bl->id);
            jsonw_raw(&o, ",\"name\":");
            jsonw_cstr(&o, bl->name);
            jsonw_raw(&o, ",\"input\":");
            tool_input(&o, r, bl);
            jsonw_raw(&o, "}");
        }
    }
    jsonw_raw(&o, "],");
    stop_and_usage(&o, &c, "");
    enum MHD_Result ret = srv_send_json(r, 200, o.data, o.len);
    strbuf_free(&o);
    return ret;
}

static void anth_w_free(void *p) { free(p); }

/* ==== Handlers ==== */

enum MHD_Result api_anthropic_messages(struct req *r, json_t *body)
{
    struct api_error e;
    struct gen_params p;
    memset(&p, 0, sizeof p);
    char *prompt = NULL;
    json_t *tools = NULL;
    bool use_tools, stream;
    long long max_tokens;
    enum MHD_Result ret;
    if (!param_model(r, body, &e)) goto fail;
    if (!json_object_get(body, "max_tokens")) {
        e = api_error_make(STATUS_EINVAL, "max_tokens", "max_tokens: Field required");
        goto fail;
    }
    if (!param_int(body, "max_tokens", 1, 1 << 30, 0, &max_tokens, &e)) goto fail;
    if (!param_sampling(body, &r->g->sampling_default, &p.sp, &e)) goto fail;
    if (!param_bool(body, "stream", false, &stream, &e)) goto fail;
    if (!param_stops(body, "stop_sequences", p.stops, &p.n_stops, &e)) goto fail;
    if (!anth_render(r, body, &prompt, &tools, &use_tools, &e)) goto fail;
    srv_chat_params(r, &p, prompt, &tools, use_tools, "toolu_");
    json_t *tc = json_object_get(body, "tool_choice");
    p.max_tool_calls = json_is_true(json_object_get(tc, "disable_parallel_tool_use")) ? 1 : 0;
    if (!srv_constraint_anthropic(r->s->grammars, body, &p.grammar, &p.grammar_field, &e)) goto fail;
    if (!srv_tool_constraint(r, body, &anth_tool_api, &p, &e)) goto fail;
    p.n = 1;
    p.max_tokens = max_tokens;
    p.max_given = true;
    if (!srv_start_job(r, &p, &e)) goto fail;
    struct anth_w *w = xcalloc(1, sizeof *w);
    srv_make_id(r, "msg_", w->id, sizeof w->id);
    snprintf(w->model, sizeof w->model, "%s", r->s->served_name);
    ret = srv_answer_job(r, w, anth_w_free, stream, false, anth_fill, anth_whole);
    goto out;
fail:
    ret = srv_send_error(r, &e);
out:
    constraint_grammar_free(p.grammar);
    json_decref(tools);
    free(prompt);
    return ret;
}

enum MHD_Result api_anthropic_count_tokens(struct req *r, json_t *body)
{
    struct api_error e;
    char *prompt = NULL;
    json_t *tools = NULL;
    bool use_tools;
    int32_t *ids = NULL;
    int n = 0;
    bool ok = param_model(r, body, &e) && anth_render(r, body, &prompt, &tools, &use_tools, &e);
    json_decref(tools);
    if (ok && srv_encode_prompt(r, prompt, false, &ids, &n) != STATUS_OK) {
        e = api_error_make(STATUS_EINVAL, "messages", "could not tokenize the prompt");
        ok = false;
    }
    free(ids);
    free(prompt);
    if (!ok) return srv_send_error(r, &e);
    char b[64];
    int len = snprintf(b, sizeof b, "{\"input_tokens\":%d}", n);
    return srv_send_json(r, 200, b, (size_t)len);
}
