/* api_responses: POST /v1/responses (OpenAI Responses API, stateless), what Codex CLI, OpenAI
 * Agents and AI SDK's default provider speak.
 *
 * Input items map onto the chat messages the templates expect: message (input_text /
 * output_text parts; developer -> system) -> a turn, function_call -> an assistant tool call
 * (consecutive calls join one assistant turn), function_call_output -> a "tool" turn, reasoning
 * (summary text) -> the next assistant turn's reasoning_content. `instructions` is a leading
 * system turn. text.format json_object / json_schema constrain the output as response_format does
 * on chat completions (one compiler, server/constrain.c). Nothing is stored: store:true and previous_response_id are a 400 (the client
 * resends the history, as Codex does with store:false).
 *
 * Output: the job's blocks become output items: reasoning (its text as one summary_text),
 * message (one output_text part), function_call. Streaming writes the documented event sequence:
 * response.created, response.in_progress, per item output_item.added, its part/delta/done events
 * (reasoning_summary_text.delta, output_text.delta, function_call_arguments.delta), output_item.done,
 * then response.completed, response.incomplete (max_output_tokens) or response.failed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "server/jsonw.h"
#include "server/server_int.h"
#include "text/constraint.h"

enum item { ITEM_NONE = 0, ITEM_REASONING, ITEM_MESSAGE, ITEM_CALL };

struct resp_w {
    char          id[64];
    char          model[256];
    long long     created;
    json_t       *echo;          // request fields the response object repeats
    bool          started;
    bool          call_cut;          // a function_call was cut before its end (closed "incomplete")
    int           seq;           // sequence_number of the next event
    int           n_items;       // output_index of the next item
    enum item     open;
    char          item_id[80];
    char          call_id[64];
    char          name[256];
    struct strbuf text;          // the open item's text (or arguments) so far
    struct strbuf items;         // finished items, comma-joined, for the final response object
};

/* ==== Request ==== */

/* The assistant turn that function calls join: the last one when it is an assistant turn. */
static json_t *assistant_turn(json_t *out)
{
    json_t *last = json_array_get(out, json_array_size(out) - 1);
    const char *role = json_string_value(json_object_get(last, "role"));
    if (role && !strcmp(role, "assistant")) return last;
    json_t *m = json_pack("{s:s,s:s}", "role", "assistant", "content", "");
    json_array_append_new(out, m);
    return m;
}

static bool input_message(json_t *it, const char *f, json_t *out, bool *media_only, struct api_error *e)
{
    const char *role = json_string_value(json_object_get(it, "role"));
    if (!role || (strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "system") && strcmp(role, "developer"))) {
        *e = api_error_make(STATUS_EINVAL, "input", "%s.role: must be user, assistant, system or developer", f);
        return false;
    }
    char cf[96], *text;
    int n_media;
    snprintf(cf, sizeof cf, "%s.content", f);
    json_t *content = json_object_get(it, "content");
    if (!content_text_media(content, cf, false, &text, &n_media, e)) return false;
    *media_only = !strcmp(role, "user") && n_media && n_media == (int)json_array_size(content);
    json_array_append_new(out, json_pack("{s:s,s:s}", "role", !strcmp(role, "developer") ? "system" : role, "content", text));
    free(text);
    return true;
}

static json_t *input_items(json_t *body, struct api_error *e)
{
    json_t *input = json_object_get(body, "input");
    json_t *ins = json_object_get(body, "instructions");
    if (ins && !json_is_null(ins) && !json_is_string(ins)) {
        *e = api_error_make(STATUS_EINVAL, "instructions", "'instructions' must be a string");
        return NULL;
    }
    json_t *out = json_array();
    if (json_is_string(ins) && json_string_length(ins)) json_array_append_new(out, json_pack("{s:s,s:O}", "role", "system", "content", ins));
    if (json_is_string(input)) {
        json_array_append_new(out, json_pack("{s:s,s:O}", "role", "user", "content", input));
        return out;
    }
    if (!json_is_array(input) || !json_array_size(input)) {
        *e = api_error_make(STATUS_EINVAL, "input", "'input' must be a string or a non-empty array of items");
        goto fail;
    }
    json_t *call_ids = json_object();
    struct strbuf reasoning = {0};   // a reasoning item's summary, for the next assistant turn
    bool media_only = false;         // the input ends with a user message of images/files alone
    size_t i;
    json_t *it;
    char f[64];
    json_array_foreach(input, i, it) {
        snprintf(f, sizeof f, "input[%zu]", i);
        const char *type = json_string_value(json_object_get(it, "type"));
        if (!json_is_object(it)) {
            *e = api_error_make(STATUS_EINVAL, "input", "'%s' must be an object", f);
            goto fail_items;
        }
        media_only = false;
        if (!type || !strcmp(type, "message")) {   // an EasyInputMessage has no type
            if (!input_message(it, f, out, &media_only, e)) goto fail_items;
            json_t *m = json_array_get(out, json_array_size(out) - 1);
            if (reasoning.len && !strcmp(json_string_value(json_object_get(m, "role")), "assistant")) {
                json_object_set_new(m, "reasoning_content", json_string(reasoning.data));
                strbuf_clear(&reasoning);
            }
        } else if (!strcmp(type, "function_call")) {
            const char *call_id = json_string_value(json_object_get(it, "call_id"));
            const char *name = json_string_value(json_object_get(it, "name"));
            json_t *args = json_object_get(it, "arguments");
            if (!call_id || !name || !json_is_string(args)) {
                *e = api_error_make(STATUS_EINVAL, "input", "'%s': a function_call needs call_id, name and string arguments", f);
                goto fail_items;
            }
            json_t *a = json_loads(json_string_value(args), JSON_DECODE_ANY, NULL);
            if (!json_is_object(a)) {   // the template gets what the model wrote
                json_decref(a);
                a = json_incref(args);
            }
            json_t *m = assistant_turn(out);
            if (reasoning.len) {
                json_object_set_new(m, "reasoning_content", json_string(reasoning.data));
                strbuf_clear(&reasoning);
            }
            json_t *calls = json_object_get(m, "tool_calls");
            if (!calls) json_object_set_new(m, "tool_calls", calls = json_array());
            json_array_append_new(calls, json_pack("{s:s,s:s,s:{s:s,s:o}}", "id", call_id, "type", "function", "function",
                                                   "name", name, "arguments", a));
            json_object_set_new(call_ids, call_id, json_true());
        } else if (!strcmp(type, "function_call_output")) {
            const char *call_id = json_string_value(json_object_get(it, "call_id"));
            if (!call_id || !json_object_get(call_ids, call_id)) {
                *e = api_error_make(STATUS_EINVAL, "input", "'%s' is the output of call '%s', but no earlier function_call made it",
                                    f, call_id ? call_id : "(no call_id)");
                goto fail_items;
            }
            char of[96], *text;
            snprintf(of, sizeof of, "%s.output", f);
            if (!content_text_media(json_object_get(it, "output"), of, false, &text, NULL, e)) goto fail_items;
            json_array_append_new(out, json_pack("{s:s,s:s,s:s}", "role", "tool", "tool_call_id", call_id, "content", text));
            free(text);
        } else if (!strcmp(type, "reasoning")) {
            json_t *summary = json_object_get(it, "summary");
            if (summary && !json_is_array(summary)) {
                *e = api_error_make(STATUS_EINVAL, "input", "'%s.summary' must be an array", f);
                goto fail_items;
            }
            size_t k;
            json_t *s;
            json_array_foreach(summary, k, s) {
                json_t *t = json_object_get(s, "text");
                if (json_is_string(t)) strbuf_append(&reasoning, json_string_value(t), json_string_length(t));
            }
        } else {
            *e = api_error_make(STATUS_EUNSUPPORTED, "input", "'%s': input item type '%s' is not supported", f, type);
            goto fail_items;
        }
    }
    if (media_only) {
        *e = api_error_make(STATUS_EUNSUPPORTED, "input", "the last user message holds only images or files, and this model reads text only");
        goto fail_items;
    }
    json_decref(call_ids);
    strbuf_free(&reasoning);
    return out;
fail_items:
    json_decref(call_ids);
    strbuf_free(&reasoning);
fail:
    json_decref(out);
    return NULL;
}

/* A flat function tool {type, name, description, parameters} in the chat shape; other tool types
 * (web_search, file_search, custom, local_shell, mcp...) run nowhere here and are left out. */
static json_t *resp_tool(json_t *t, size_t i, struct api_error *e)
{
    const char *type = json_string_value(json_object_get(t, "type"));
    if (!json_is_object(t) || !type) {
        *e = api_error_make(STATUS_EINVAL, "tools", "'tools[%zu]' must be an object with a type", i);
        return NULL;
    }
    if (strcmp(type, "function")) {
        LOG_INFO("tools[%zu]: leaving out the tool of type '%s' (only function tools run here)", i, type);
        return json_null();
    }
    const char *name = json_string_value(json_object_get(t, "name"));
    json_t *params = json_object_get(t, "parameters");
    if (!name || !*name || (params && !json_is_null(params) && !json_is_object(params))) {
        *e = api_error_make(STATUS_EINVAL, "tools", "'tools[%zu]' must be {\"type\":\"function\",\"name\":string,\"parameters\":object}", i);
        return NULL;
    }
    json_t *fn = json_pack("{s:s}", "name", name);
    if (json_is_object(params)) json_object_set(fn, "parameters", params);
    json_t *d = json_object_get(t, "description");
    if (json_is_string(d)) json_object_set(fn, "description", d);
    if (json_is_true(json_object_get(t, "strict"))) json_object_set_new(fn, "strict", json_true());
    return json_pack("{s:s,s:o}", "type", "function", "function", fn);
}

static const char *resp_tool_choice(json_t *tc, struct api_error *e)
{
    if (json_is_string(tc)) return json_string_value(tc);
    if (json_is_object(tc) && json_is_string(json_object_get(tc, "type"))) return "named";
    *e = api_error_make(STATUS_EINVAL, "tool_choice", "'tool_choice' must be a string or an object with a type");
    return NULL;
}

static const struct tool_api resp_tool_api = {
    .convert = resp_tool, .choice_mode = resp_tool_choice, .not_array = "'tools' must be an array",
    .constrained = (const char *const[]){ "required", "named", NULL },
    .invalid_choice = "'tool_choice' must be auto, none, required or a function",
};

/* Fields of a stateless server: what would need storage is refused, the rest checked. */
static bool stateless_fields(json_t *body, struct api_error *e)
{
    bool store;
    if (!param_bool(body, "store", false, &store, e)) return false;
    if (store) {
        *e = api_error_make(STATUS_EUNSUPPORTED, "store", "'store': true is not supported: this server keeps no responses; send store:false and the whole input");
        return false;
    }
    json_t *prev = json_object_get(body, "previous_response_id");
    if (prev && !json_is_null(prev)) {
        *e = api_error_make(STATUS_EUNSUPPORTED, "previous_response_id",
                            "'previous_response_id' is not supported: this server keeps no responses; send the whole input");
        return false;
    }
    json_t *conv = json_object_get(body, "conversation");
    if (conv && !json_is_null(conv)) {
        *e = api_error_make(STATUS_EUNSUPPORTED, "conversation", "'conversation' is not supported: this server keeps no conversations");
        return false;
    }
    bool background;
    if (!param_bool(body, "background", false, &background, e)) return false;
    if (background) {
        *e = api_error_make(STATUS_EUNSUPPORTED, "background", "'background': true is not supported");
        return false;
    }
    return true;   // text.format: srv_constraint_responses
}

/* ==== Writers ==== */

static void item_json(struct strbuf *o, enum item kind, const char *id, const char *text, size_t len, const char *name,
                      const char *call_id, const char *status)
{
    if (kind == ITEM_REASONING) {
        jsonw_raw(o, "{\"type\":\"reasoning\",\"id\":");
        jsonw_cstr(o, id);
        jsonw_raw(o, ",\"summary\":[");
        if (text) {
            jsonw_raw(o, "{\"type\":\"summary_text\",\"text\":");
            jsonw_str(o, text, len);
            jsonw_raw(o, "}");
        }
        jsonw_raw(o, "]}");
    } else if (kind == ITEM_MESSAGE) {
        jsonw_raw(o, "{\"type\":\"message\",\"id\":");
        jsonw_cstr(o, id);
        strbuf_printf(o, ",\"status\":\"%s\",\"role\":\"assistant\",\"content\":[", status);
        if (text) {
            jsonw_raw(o, "{\"type\":\"output_text\",\"text\":");
            jsonw_str(o, text, len);
            jsonw_raw(o, ",\"annotations\":[]}");
        }
        jsonw_raw(o, "]}");
    } else {
        jsonw_raw(o, "{\"type\":\"function_call\",\"id\":");
        jsonw_cstr(o, id);
        jsonw_raw(o, ",\"call_id\":");
        jsonw_cstr(o, call_id);
        jsonw_raw(o, ",\"name\":");
        jsonw_cstr(o, name);
        jsonw_raw(o, ",\"arguments\":");
        jsonw_str(o, text ? text : "", text ? len : 0);
        strbuf_printf(o, ",\"status\":\"%s\"}", status);
    }
}

/* The response object; items: the output array's contents (NULL while in progress). */
static void response_json(struct strbuf *o, const struct resp_w *w, const struct job_choice_info *c, const char *items)
{
    const char *status = !c || !c->done ? "in_progress" : c->failed ? "failed"
                         : c->end == JOB_END_LENGTH || c->end == JOB_END_CANCELED || w->call_cut ? "incomplete" : "completed";
    jsonw_raw(o, "{\"id\":");
    jsonw_cstr(o, w->id);
    strbuf_printf(o, ",\"object\":\"response\",\"created_at\":%lld,\"status\":\"%s\",\"model\":", w->created, status);
    jsonw_cstr(o, w->model);
    strbuf_printf(o, ",\"output\":[%s]", items ? items : "");
    if (c && c->done && c->failed) {
        jsonw_raw(o, ",\"error\":{\"code\":\"server_error\",\"message\":");
        jsonw_cstr(o, status_str(c->error));
        jsonw_raw(o, "}");
    } else jsonw_raw(o, ",\"error\":null");
    if (c && c->done && !c->failed && c->end == JOB_END_LENGTH)
        jsonw_raw(o, ",\"incomplete_details\":{\"reason\":\"max_output_tokens\"}");
    else if (c && c->done && !c->failed && (c->end == JOB_END_CANCELED || w->call_cut))   // cut: never "completed"
        jsonw_raw(o, ",\"incomplete_details\":{\"reason\":\"interrupted\"}");
    else jsonw_raw(o, ",\"incomplete_details\":null");
    const char *k;
    json_t *v;
    json_object_foreach(w->echo, k, v) {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        strbuf_putc(o, ',');
        jsonw_cstr(o, k);
        strbuf_printf(o, ":%s", s);
        free(s);
    }
    if (c && c->done)
        strbuf_printf(o, ",\"usage\":{\"input_tokens\":%d,\"input_tokens_details\":{\"cached_tokens\":%d},\"output_tokens\":%d,"
                         "\"output_tokens_details\":{\"reasoning_tokens\":%d},\"total_tokens\":%d}",
                      c->n_prompt, c->n_cached, c->n_generated, c->n_reasoning_tokens, c->n_prompt + c->n_generated);
    else jsonw_raw(o, ",\"usage\":null");
    jsonw_raw(o, "}");
}

/* "event: TYPE\ndata: {"type":TYPE,"sequence_number":N" — the caller adds its fields and "}\n\n". */
static void ev_open(struct strbuf *o, struct resp_w *w, const char *type)
{
    strbuf_printf(o, "event: %s\ndata: {\"type\":\"%s\",\"sequence_number\":%d", type, type, w->seq++);
}

/* A response.* event carrying the response object (response_json's c and items). */
static void ev_response(struct strbuf *o, struct resp_w *w, const char *type, const struct job_choice_info *c,
                        const char *items)
{
    ev_open(o, w, type);
    jsonw_raw(o, ",\"response\":");
    response_json(o, w, c, items);
    jsonw_raw(o, "}\n\n");
}

static void ev_item(struct strbuf *o, struct resp_w *w, const char *type, const char *status)
{
    ev_open(o, w, type);
    strbuf_printf(o, ",\"output_index\":%d,\"item\":", w->n_items);
    bool done = strcmp(status, "in_progress");
    item_json(o, w->open, w->item_id, done || w->open == ITEM_CALL ? w->text.data ? w->text.data : "" : NULL,
              done ? w->text.len : 0, w->name, w->call_id, status);
    jsonw_raw(o, "}\n\n");
}

static void ev_part(struct strbuf *o, struct resp_w *w, const char *type, bool with_text)
{
    ev_open(o, w, type);
    jsonw_raw(o, ",\"item_id\":");
    jsonw_cstr(o, w->item_id);
    if (w->open == ITEM_REASONING) strbuf_printf(o, ",\"output_index\":%d,\"summary_index\":0,\"part\":{\"type\":\"summary_text\",\"text\":", w->n_items);
    else strbuf_printf(o, ",\"output_index\":%d,\"content_index\":0,\"part\":{\"type\":\"output_text\",\"annotations\":[],\"text\":", w->n_items);
    jsonw_str(o, with_text ? w->text.data : "", with_text ? w->text.len : 0);
    jsonw_raw(o, "}}\n\n");
}

static const char *delta_type(enum item kind)
{
    return kind == ITEM_REASONING ? "response.reasoning_summary_text" : kind == ITEM_MESSAGE ? "response.output_text"
                                                                       : "response.function_call_arguments";
}

static void ev_text(struct strbuf *o, struct resp_w *w, bool done, const char *text, size_t len)
{
    char type[80];
    snprintf(type, sizeof type, "%s.%s", delta_type(w->open), done ? "done" : "delta");
    ev_open(o, w, type);
    jsonw_raw(o, ",\"item_id\":");
    jsonw_cstr(o, w->item_id);
    strbuf_printf(o, ",\"output_index\":%d", w->n_items);
    if (w->open == ITEM_REASONING) jsonw_raw(o, ",\"summary_index\":0");
    else if (w->open == ITEM_MESSAGE) jsonw_raw(o, ",\"content_index\":0");
    jsonw_raw(o, done ? (w->open == ITEM_CALL ? ",\"arguments\":" : ",\"text\":") : ",\"delta\":");
    jsonw_str(o, text, len);
    if (w->open == ITEM_MESSAGE) jsonw_raw(o, ",\"logprobs\":[]");
    jsonw_raw(o, "}\n\n");
}

/* status: "completed", or "incomplete" for the item the output cap cut. */
static void close_item(struct resp_w *w, struct strbuf *o, const char *status)
{
    if (w->open == ITEM_NONE) return;
    const char *text = w->text.data ? w->text.data : "";
    ev_text(o, w, true, text, w->text.len);
    if (w->open != ITEM_CALL)
        ev_part(o, w, w->open == ITEM_REASONING ? "response.reasoning_summary_part.done" : "response.content_part.done", true);
    ev_item(o, w, "response.output_item.done", status);
    if (w->items.len) strbuf_putc(&w->items, ',');
    item_json(&w->items, w->open, w->item_id, text, w->text.len, w->name, w->call_id, status);
    w->n_items++;
    w->open = ITEM_NONE;
    strbuf_clear(&w->text);
}

static void open_item(struct resp_w *w, struct strbuf *o, enum item kind, const struct output_ev *ev)
{
    static const char *const prefix[] = { [ITEM_REASONING] = "rs_", [ITEM_MESSAGE] = "msg_", [ITEM_CALL] = "fc_" };
    close_item(w, o, "completed");
    w->open = kind;
    snprintf(w->item_id, sizeof w->item_id, "%s%s_%d", prefix[kind], w->id + 5, w->n_items);
    if (kind == ITEM_CALL) {
        snprintf(w->call_id, sizeof w->call_id, "%s", ev->id);
        snprintf(w->name, sizeof w->name, "%s", ev->name);
    }
    ev_item(o, w, "response.output_item.added", "in_progress");
    if (kind != ITEM_CALL)
        ev_part(o, w, kind == ITEM_REASONING ? "response.reasoning_summary_part.added" : "response.content_part.added", false);
}

static void resp_fill(struct req *r)
{
    struct resp_w *w = r->wstate;
    struct strbuf *o = &r->out;
    struct job_choice_info c;
    job_choice_info(r->job, 0, &c);
    if (!w->started) {
        ev_response(o, w, "response.created", NULL, NULL);
        ev_response(o, w, "response.in_progress", NULL, NULL);
        w->started = true;
    }
    int n_evs;
    const struct output_ev *evs = job_drain(r->job, 0, &n_evs);
    for (int k = 0; k < n_evs; k++) {
        const struct output_ev *ev = &evs[k];
        enum item want = ev->kind == OUTPUT_REASONING ? ITEM_REASONING : ev->kind == OUTPUT_CONTENT ? ITEM_MESSAGE : ITEM_CALL;
        if (ev->kind == OUTPUT_TOOL_START) open_item(w, o, ITEM_CALL, ev);
        else if (ev->kind == OUTPUT_TOOL_END) close_item(w, o, "completed");
        else if (ev->kind == OUTPUT_TOOL_CUT) {   // its arguments went out already: the item is incomplete
            if (w->open == ITEM_CALL) close_item(w, o, "incomplete");
            w->call_cut = true;
        }
        else if (ev->text.len && (w->open == want || ev->kind != OUTPUT_TOOL_ARGS)) {
            if (w->open != want) open_item(w, o, want, ev);
            strbuf_append(&w->text, ev->text.data, ev->text.len);
            ev_text(o, w, false, ev->text.data, ev->text.len);
        }
    }
    if (c.done && !r->sse_done) {
        bool cut = c.end == JOB_END_LENGTH || c.end == JOB_END_CANCELED || w->call_cut;
        close_item(w, o, !c.failed && cut ? "incomplete" : "completed");
        const char *type = c.failed ? "response.failed" : cut ? "response.incomplete" : "response.completed";
        ev_response(o, w, type, &c, w->items.data ? w->items.data : "");
        r->sse_done = true;
    }
}

static enum MHD_Result resp_whole(struct req *r)
{
    struct resp_w *w = r->wstate;
    struct job_choice_info c;
    job_choice_info(r->job, 0, &c);
    int n_blocks;
    const struct output_ev *blocks = job_blocks(r->job, 0, &n_blocks);
    struct strbuf items = {0};
    for (int b = 0; b < n_blocks; b++) {
        const struct output_ev *bl = &blocks[b];
        enum item kind = bl->kind == OUTPUT_REASONING ? ITEM_REASONING : bl->kind == OUTPUT_CONTENT ? ITEM_MESSAGE : ITEM_CALL;
        static const char *const prefix[] = { [ITEM_REASONING] = "rs_", [ITEM_MESSAGE] = "msg_", [ITEM_CALL] = "fc_" };
        char id[80];
        snprintf(id, sizeof id, "%s%s_%d", prefix[kind], w->id + 5, b);
        if (b) strbuf_putc(&items, ',');
        bool cut = b == n_blocks - 1 && (c.end == JOB_END_LENGTH || c.end == JOB_END_CANCELED);
        item_json(&items, kind, id, bl->text.data ? bl->text.data : "", bl->text.len, bl->name, bl->id, cut ? "incomplete" : "completed");
    }
    struct strbuf o = {0};
    response_json(&o, w, &c, items.data ? items.data : "");
    enum MHD_Result ret = srv_send_json(r, 200, o.data, o.len);
    strbuf_free(&o);
    strbuf_free(&items);
    return ret;
}

static void resp_w_free(void *p)
{
    struct resp_w *w = p;
    json_decref(w->echo);
    strbuf_free(&w->text);
    strbuf_free(&w->items);
    free(w);
}

/* ==== Handler ==== */

/* The request fields the response object repeats (with the defaults the API documents). */
static json_t *echo_fields(json_t *body, long long max_out, bool parallel)
{
    json_t *echo = json_object();
    static const char *const keys[] = { "instructions", "tool_choice", "temperature", "top_p", "metadata", "reasoning", "text", NULL };
    for (const char *const *k = keys; *k; k++) {
        json_t *v = json_object_get(body, *k);
        json_object_set(echo, *k, v ? v : json_null());
    }
    if (!json_object_get(body, "tool_choice")) json_object_set_new(echo, "tool_choice", json_string("auto"));
    json_t *tools = json_object_get(body, "tools");
    if (json_is_array(tools)) json_object_set(echo, "tools", tools);
    else json_object_set_new(echo, "tools", json_array());
    json_object_set_new(echo, "parallel_tool_calls", json_boolean(parallel));
    json_object_set_new(echo, "max_output_tokens", max_out ? json_integer(max_out) : json_null());
    json_object_set_new(echo, "store", json_false());
    return echo;
}

enum MHD_Result api_responses(struct req *r, json_t *body)
{
    struct api_error e;
    struct gen_params p;
    memset(&p, 0, sizeof p);
    char *prompt = NULL;
    json_t *tools = NULL, *msgs = NULL, *kwargs = NULL;
    bool use_tools, stream, parallel;
    long long max_out;
    enum MHD_Result ret;
    if (!param_model(r, body, &e)) goto fail;
    if (!stateless_fields(body, &e)) goto fail;
    if (!param_int(body, "max_output_tokens", 1, 1 << 30, 0, &max_out, &e)) goto fail;
    if (!param_sampling(body, &r->g->sampling_default, &p.sp, &e)) goto fail;
    if (!param_bool(body, "stream", false, &stream, &e)) goto fail;
    if (!param_bool(body, "parallel_tool_calls", true, &parallel, &e)) goto fail;
    if (!srv_tools(body, &resp_tool_api, &tools, &use_tools, &e)) goto fail;
    if (!(msgs = input_items(body, &e))) goto fail;
    kwargs = param_kwargs(r, json_object_get(body, "chat_template_kwargs"));
    json_t *reasoning = json_object_get(body, "reasoning");
    if (reasoning && !json_is_null(reasoning) && !json_is_object(reasoning)) {
        e = api_error_make(STATUS_EINVAL, "reasoning", "'reasoning' must be an object {effort, summary}");
        goto fail;
    }
    if (!srv_reasoning_effort(json_object_get(reasoning, "effort"), "reasoning.effort", kwargs, &e)) goto fail;
    if (!srv_render(r, msgs, use_tools ? tools : NULL, kwargs, &prompt, &e)) goto fail;
    srv_chat_params(r, &p, prompt, &tools, use_tools, "call_");
    if (!srv_constraint_responses(r->s->grammars, body, &p.grammar, &p.grammar_field, &e)) goto fail;
    if (!srv_tool_constraint(r, body, &resp_tool_api, &p, &e)) goto fail;
    p.n = 1;
    p.max_tokens = max_out;
    p.max_given = max_out > 0;
    p.max_tool_calls = parallel ? 0 : 1;
    if (!srv_start_job(r, &p, &e)) goto fail;
    struct resp_w *w = xcalloc(1, sizeof *w);
    srv_make_id(r, "resp_", w->id, sizeof w->id);
    snprintf(w->model, sizeof w->model, "%s", r->s->served_name);
    w->created = (long long)time(NULL);
    w->echo = echo_fields(body, max_out, parallel);
    ret = srv_answer_job(r, w, resp_w_free, stream, false, resp_fill, resp_whole);
    goto out;
fail:
    ret = srv_send_error(r, &e);
out:
    constraint_grammar_free(p.grammar);
    json_decref(tools);
    json_decref(msgs);
    json_decref(kwargs);
    free(prompt);
    return ret;
}
