/* api_ollama: Ollama's native API, for the integrations and editor plugins that speak only it:
 * POST /api/chat, POST /api/generate, POST /api/show, GET /api/tags, /api/ps, /api/version and
 * GET / ("Ollama is running").
 *
 * Requests map onto the shared pipeline: Ollama messages become OpenAI chat messages (images ->
 * media parts, so a text-only model sees the same placeholder as on the other APIs; tool results
 * get the id of the call they answer, matched by order and tool_name) and go through
 * srv_chat_messages, tools through the OpenAI chat tool API, "format" through the constraint
 * cache (srv_constraint_format), "options" through param_sampling. Generate renders the prompt as
 * one user turn (with "system"), or takes it as is ("raw"), or around a hole ("suffix": fill in
 * the middle with the model's FIM tokens); "context" ids are put before it, and the final line
 * gives them back with the output's ids.
 *
 * Output is NDJSON when streaming (Ollama's default: "stream" absent means true): one line per
 * piece of text ("message.content" / "message.thinking", or "response" / "thinking"), a tool
 * call as one line once its arguments are complete (Ollama's clients expect whole calls, with
 * arguments as an object), then a final line with done, done_reason and the counts and
 * durations (nanoseconds). A failed generation ends with an {"error": ...} line, as Ollama does.
 * Model names: a served name, or a served name with ":latest" (the tag a bare name means to
 * Ollama); '*' answers to any name. Unknown top-level fields are ignored and unknown options
 * logged, as Ollama does; options that would change sampling in a way this server cannot
 * (mirostat, typical_p) are a 400.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/log.h"
#include "server/jsonw.h"
#include "server/server_int.h"
#include "text/constraint.h"

/* The Ollama API version this implements (think levels, tool-call ids, logprobs): what
 * /api/version says, since clients compare it to enable features. */
#define OLLAMA_API_VERSION "0.12.0"

struct oll_w {
    char          model[256];    // the name the client asked for (Ollama echoes it)
    bool          chat;          // /api/chat ("message") or /api/generate ("response")
    bool          context;       // generate: the final line carries the prompt and output ids
    bool          logprobs;
    bool          in_call;       // collecting a streamed tool call's arguments
    int           call_index;
    char          call_id[48];
    char          call_name[256];
    struct strbuf call_args;
};

static void oll_w_free(void *p)
{
    struct oll_w *w = p;
    strbuf_free(&w->call_args);
    free(w);
}

/* ==== Names ==== */

/* Whether name is one this server answers to: a served name or the model's id, bare or with
 * Ollama's default tag ":latest". */
static bool name_known(struct req *r, const char *name)
{
    if (srv_model_known(r->s, name) || !strcmp(name, r->g->model_id)) return true;
    size_t n = strlen(name);
    if (n <= 7 || strcmp(name + n - 7, ":latest")) return false;
    char *base = xstrndup(name, n - 7);
    bool known = srv_model_known(r->s, base) || !strcmp(base, r->g->model_id);
    free(base);
    return known;
}

/* The request's model ("model", or the older "name"), required as Ollama requires it. */
static bool model_field(struct req *r, json_t *body, const char **out, struct api_error *e)
{
    const char *m;
    if (!param_str(body, "model", false, &m, e)) return false;
    if (!m && !param_str(body, "name", false, &m, e)) return false;
    if (!m || !*m) {
        *e = api_error_make(STATUS_EINVAL, "model", "model is required");
        return false;
    }
    if (!name_known(r, m)) {
        *e = api_error_make(STATUS_ENOTFOUND, "model", "model '%s' not found; this server serves '%s'", m,
                            r->s->served_name ? r->s->served_name : r->g->model_id);
        return false;
    }
    *out = m;
    return true;
}

/* A served name as Ollama lists it: with a tag (":latest" when it has none). */
static void listed_name(struct strbuf *sb, const char *name)
{
    strbuf_puts(sb, name);
    if (!strchr(name, ':')) strbuf_puts(sb, ":latest");
}

/* ==== Request fields ==== */

enum opt_kind { OPT_INT, OPT_NUM, OPT_BOOL, OPT_STRS };

/* Ollama's options. as: the sampling field it sets (param_sampling's name); the load-time ones
 * (how Ollama loads a model: context, GPUs, threads) are checked for type and otherwise this
 * server's start-up flags decide. */
static const struct { const char *name; enum opt_kind kind; const char *as; } known_options[] = {
    { "temperature", OPT_NUM, "temperature" }, { "top_p", OPT_NUM, "top_p" }, { "top_k", OPT_INT, "top_k" },
    { "min_p", OPT_NUM, "min_p" }, { "presence_penalty", OPT_NUM, "presence_penalty" },
    { "frequency_penalty", OPT_NUM, "frequency_penalty" }, { "repeat_penalty", OPT_NUM, "repetition_penalty" },
    { "seed", OPT_INT, "seed" }, { "num_predict", OPT_INT, NULL }, { "stop", OPT_STRS, NULL },
    { "typical_p", OPT_NUM, NULL }, { "mirostat", OPT_INT, NULL }, { "mirostat_tau", OPT_NUM, NULL },
    { "mirostat_eta", OPT_NUM, NULL }, { "repeat_last_n", OPT_INT, NULL }, { "num_keep", OPT_INT, NULL },
    { "penalize_newline", OPT_BOOL, NULL },
    { "num_ctx", OPT_INT, NULL }, { "num_batch", OPT_INT, NULL }, { "num_gpu", OPT_INT, NULL },
    { "main_gpu", OPT_INT, NULL }, { "num_thread", OPT_INT, NULL }, { "low_vram", OPT_BOOL, NULL },
    { "f16_kv", OPT_BOOL, NULL }, { "logits_all", OPT_BOOL, NULL }, { "vocab_only", OPT_BOOL, NULL },
    { "use_mmap", OPT_BOOL, NULL }, { "use_mlock", OPT_BOOL, NULL }, { "numa", OPT_BOOL, NULL },
    { "embedding_only", OPT_BOOL, NULL },
};

static bool option_type_ok(enum opt_kind kind, json_t *v)
{
    switch (kind) {
    case OPT_INT:  return json_is_integer(v) || (json_is_real(v) && json_real_value(v) == (double)(long long)json_real_value(v));
    case OPT_NUM:  return json_is_number(v);
    case OPT_BOOL: return json_is_boolean(v);
    case OPT_STRS: return json_is_array(v) || json_is_string(v);
    }
    return false;
}

/* "options" -> sampling, stop strings and the output cap (*max: 0 = until the context ends). */
static bool options(struct req *r, json_t *body, struct gen_params *p, long long *max, struct api_error *e)
{
    json_t *o = json_object_get(body, "options");
    *max = 0;
    json_t *sampling = json_object();
    bool ok = false;
    if (o && !json_is_null(o) && !json_is_object(o)) {
        *e = api_error_make(STATUS_EINVAL, "options", "'options' must be an object");
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        size_t k = 0, n = sizeof known_options / sizeof known_options[0];
        while (k < n && strcmp(known_options[k].name, key)) k++;
        if (k == n) {   // Ollama logs and ignores an option it does not know
            LOG_WARN("ignoring unknown Ollama option '%s'", key);
            continue;
        }
        if (json_is_null(v)) continue;
        if (!option_type_ok(known_options[k].kind, v)) {
            static const char *const kinds[] = { "an integer", "a number", "a boolean", "an array of strings" };
            *e = api_error_make(STATUS_EINVAL, "options", "option '%s' must be %s", key, kinds[known_options[k].kind]);
            goto out;
        }
        bool is_int = known_options[k].kind == OPT_INT;
        if (known_options[k].as && !(!strcmp(key, "seed") && json_number_value(v) < 0))   // seed -1: a random seed
            json_object_set_new(sampling, known_options[k].as, is_int ? json_integer((json_int_t)json_number_value(v)) : json_incref(v));
    }
    double typical_p = json_number_value(json_object_get(o, "typical_p"));
    if (json_is_number(json_object_get(o, "typical_p")) && typical_p != 1.0 && typical_p != 0.0) {
        *e = api_error_make(STATUS_EUNSUPPORTED, "options", "option 'typical_p' (locally typical sampling) is not supported; leave it at 1");
        goto out;
    }
    if (json_number_value(json_object_get(o, "mirostat")) != 0) {
        *e = api_error_make(STATUS_EUNSUPPORTED, "options", "option 'mirostat' is not supported; leave it at 0");
        goto out;
    }
    if (!param_sampling(sampling, &r->g->sampling_default, &p->sp, e)) {
        char m[sizeof e->message];
        memcpy(m, e->message, sizeof m);
        snprintf(e->message, sizeof e->message, "options: %.1000s", m);
        goto out;
    }
    if (!param_stops(o, "stop", p->stops, &p->n_stops, e)) goto out;
    json_t *np = json_object_get(o, "num_predict");
    long long n_predict = json_is_number(np) ? (long long)json_number_value(np) : -1;
    if (n_predict < -2 || n_predict > (1 << 30)) {
        *e = api_error_make(STATUS_EINVAL, "options", "option 'num_predict' must be -1 (until the context ends), -2 or a token count");
        goto out;
    }
    *max = n_predict > 0 ? n_predict : 0;
    ok = true;
out:
    json_decref(sampling);
    return ok;
}

/* "think": false turns the template's thinking off; true and the levels need a model that thinks. */
static bool think_field(struct req *r, json_t *body, json_t *kwargs, struct api_error *e)
{
    json_t *t = json_object_get(body, "think");
    if (!t || json_is_null(t)) return true;
    const char *level = json_string_value(t);
    bool known_level = level && (!strcmp(level, "high") || !strcmp(level, "medium") || !strcmp(level, "low"));
    if (!json_is_boolean(t) && !known_level) {
        *e = api_error_make(STATUS_EINVAL, "think", "'think' must be true, false, \"high\", \"medium\" or \"low\"");
        return false;
    }
    if (json_is_false(t)) {
        json_object_set_new(kwargs, "enable_thinking", json_false());
        return true;
    }
    if (!srv_reasoning(r->s)) {
        *e = api_error_make(STATUS_EINVAL, "think", "'%s' does not support thinking", r->s->served_name ? r->s->served_name : r->g->model_id);
        return false;
    }
    json_object_set_new(kwargs, "enable_thinking", json_true());
    return true;
}

/* The fields Ollama takes and that need no work here, checked for type: keep_alive (a duration
 * string or seconds; the model stays loaded anyway), stream (default true), logprobs. */
static bool plain_fields(json_t *body, bool *stream, struct gen_params *p, bool *lp, struct api_error *e)
{
    json_t *ka = json_object_get(body, "keep_alive");
    if (ka && !json_is_null(ka) && !json_is_string(ka) && !json_is_number(ka)) {
        *e = api_error_make(STATUS_EINVAL, "keep_alive", "'keep_alive' must be a duration string (\"5m\") or a number of seconds");
        return false;
    }
    if (!param_bool(body, "stream", true, stream, e)) return false;
    long long top;
    if (!param_bool(body, "logprobs", false, lp, e)) return false;
    if (!param_int(body, "top_logprobs", 0, 20, 0, &top, e)) return false;
    p->n_logprobs = *lp ? (top ? (int)top : -1) : 0;
    const char *tmpl;
    if (!param_str(body, "template", false, &tmpl, e)) return false;
    if (tmpl && *tmpl) {
        *e = api_error_make(STATUS_EUNSUPPORTED, "template", "'template' overrides are not supported: the model's chat template renders the prompt (use raw for a prompt of your own)");
        return false;
    }
    return true;
}

/* Ollama messages -> OpenAI chat messages: images -> image parts after the text, thinking ->
 * reasoning_content, calls get ids, a tool result gets the id of the oldest unanswered call (of
 * its tool_name when given). New reference, or NULL with a 400. */
static json_t *openai_messages(json_t *msgs, struct api_error *e)
{
    if (!json_is_array(msgs)) {
        *e = api_error_make(STATUS_EINVAL, "messages", "'messages' must be an array");
        return NULL;
    }
    json_t *out = json_array(), *pending = json_array();   // pending: [id, name] of calls not yet answered
    size_t i;
    json_t *m;
    char f[64];
    json_array_foreach(msgs, i, m) {
        snprintf(f, sizeof f, "messages[%zu]", i);
        if (!json_is_object(m)) {   // srv_chat_messages names the problem
            json_array_append(out, m);
            continue;
        }
        json_t *nm = json_deep_copy(m);
        json_array_append_new(out, nm);
        json_t *content = json_object_get(m, "content");
        if (!content || json_is_null(content)) json_object_set_new(nm, "content", json_string(""));   // Ollama's default
        json_t *images = json_object_get(m, "images");
        if (images && !json_is_null(images)) {
            if (!json_is_array(images)) goto bad_images;
            json_t *parts = json_array();
            if (json_is_string(content) && json_string_length(content))
                json_array_append_new(parts, json_pack("{s:s,s:O}", "type", "text", "text", content));
            size_t k;
            json_t *img;
            json_array_foreach(images, k, img) {
                if (!json_is_string(img)) {
                    json_decref(parts);
                    goto bad_images;
                }
                json_array_append_new(parts, json_pack("{s:s}", "type", "image"));
            }
            json_object_set_new(nm, "content", parts);
            json_object_del(nm, "images");
        }
        json_t *thinking = json_object_get(m, "thinking");
        if (json_is_string(thinking)) json_object_set(nm, "reasoning_content", thinking);
        json_t *calls = json_object_get(nm, "tool_calls");
        size_t k;
        json_t *c;
        json_array_foreach(calls, k, c) {
            if (!json_is_object(c)) continue;
            if (!json_is_string(json_object_get(c, "id"))) {
                char id[48];
                snprintf(id, sizeof id, "call_%zu_%zu", i, k);
                json_object_set_new(c, "id", json_string(id));
            }
            json_object_set_new(c, "type", json_string("function"));
            const char *name = json_string_value(json_object_get(json_object_get(c, "function"), "name"));
            json_array_append_new(pending, json_pack("[O,s]", json_object_get(c, "id"), name ? name : ""));
        }
        const char *role = json_string_value(json_object_get(m, "role"));
        if (role && !strcmp(role, "tool") && !json_is_string(json_object_get(m, "tool_call_id"))) {
            const char *tool_name = json_string_value(json_object_get(m, "tool_name"));
            if (!tool_name) tool_name = json_string_value(json_object_get(m, "name"));
            for (size_t p = 0; p < json_array_size(pending); p++) {
                json_t *call = json_array_get(pending, p);
                if (tool_name && strcmp(tool_name, json_string_value(json_array_get(call, 1)))) continue;
                json_object_set(nm, "tool_call_id", json_array_get(call, 0));
                json_array_remove(pending, p);
                break;
            }
        }
    }
    json_decref(pending);
    if (!json_array_size(out)) {   // (an empty list is a load request, answered before this)
        json_decref(out);
        *e = api_error_make(STATUS_EINVAL, "messages", "'messages' must not be empty");
        return NULL;
    }
    json_t *norm = srv_chat_messages(out, e);
    json_decref(out);
    return norm;
bad_images:
    json_decref(pending);
    json_decref(out);
    *e = api_error_make(STATUS_EINVAL, "messages", "'%s.images' must be an array of base64 strings", f);
    return NULL;
}

/* ==== Writers ==== */

/* "key":"2025-05-01T12:00:00.123456789Z" (now, UTC, as Go writes times). */
static void stamp(struct strbuf *o, const char *key)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", gmtime_r(&ts.tv_sec, &tm));
    strbuf_printf(o, "\"%s\":\"%s.%09ldZ\"", key, when, ts.tv_nsec);
}

/* {"model":...,"created_at":..., — the caller adds the rest. */
static void line_open(struct strbuf *o, const struct oll_w *w)
{
    jsonw_raw(o, "{\"model\":");
    jsonw_cstr(o, w->model);
    strbuf_putc(o, ',');
    stamp(o, "created_at");
}

static void tool_call_json(struct strbuf *o, const char *id, int index, const char *name, const char *args, size_t len)
{
    // arguments as an object, as Ollama's clients read them (the text the model wrote when it does not parse)
    json_t *a = json_loadb(args ? args : "{}", args ? len : 2, JSON_DECODE_ANY, NULL);
    char *s = a ? json_dumps(a, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    jsonw_raw(o, "{\"id\":");
    jsonw_cstr(o, id);
    strbuf_printf(o, ",\"function\":{\"index\":%d,\"name\":", index);
    jsonw_cstr(o, name);
    jsonw_raw(o, ",\"arguments\":");
    if (s) jsonw_raw(o, s);
    else jsonw_str(o, args ? args : "", args ? len : 0);
    jsonw_raw(o, "}}");
    free(s);
    json_decref(a);
}

/* "message":{...} (chat) or "response":...,"thinking":... (generate) with this text. */
static void text_fields(struct strbuf *o, const struct oll_w *w, const char *content, size_t clen, const char *thinking,
                        size_t tlen, const char *calls)
{
    if (w->chat) {
        jsonw_raw(o, ",\"message\":{\"role\":\"assistant\",\"content\":");
        jsonw_str(o, content ? content : "", clen);
        if (tlen) {
            jsonw_raw(o, ",\"thinking\":");
            jsonw_str(o, thinking, tlen);
        }
        if (calls) strbuf_printf(o, ",\"tool_calls\":[%s]", calls);
        jsonw_raw(o, "}");
        return;
    }
    jsonw_raw(o, ",\"response\":");
    jsonw_str(o, content ? content : "", clen);
    if (tlen) {
        jsonw_raw(o, ",\"thinking\":");
        jsonw_str(o, thinking, tlen);
    }
}

/* ,"logprobs":[{"token","logprob","top_logprobs":[...]}] for lps[0..n) (nothing when none). */
static void logprobs_json(struct strbuf *o, struct gen *g, const struct job_lp *lps, int n)
{
    if (!n) return;
    jsonw_raw(o, ",\"logprobs\":[");
    for (int i = 0; i < n; i++) {
        char *t = g->ops->decode(g->self, &lps[i].id, 1, false);
        strbuf_printf(o, "%s{\"token\":", i ? "," : "");
        jsonw_cstr(o, t);
        free(t);
        jsonw_raw(o, ",\"logprob\":");
        jsonw_float(o, lps[i].logprob);
        jsonw_raw(o, ",\"top_logprobs\":[");
        for (int k = 0; k < lps[i].n_top; k++) {
            char *tt = g->ops->decode(g->self, &lps[i].top[k].id, 1, false);
            strbuf_printf(o, "%s{\"token\":", k ? "," : "");
            jsonw_cstr(o, tt);
            free(tt);
            jsonw_raw(o, ",\"logprob\":");
            jsonw_float(o, lps[i].top[k].logprob);
            jsonw_raw(o, "}");
        }
        jsonw_raw(o, "]}");
    }
    jsonw_raw(o, "]");
}

/* The closing fields: done, done_reason, counts and durations (ns), context. */
static void done_fields(struct strbuf *o, struct req *r, const struct oll_w *w, const struct job_choice_info *c)
{
    double total_s = clock_now_s() - r->t0_s;
    double eval_s = c->t_last_s > c->t_first_s ? c->t_last_s - c->t_first_s : 0;
    strbuf_printf(o, ",\"done\":true,\"done_reason\":\"%s\",\"total_duration\":%lld,\"load_duration\":0,"
                     "\"prompt_eval_count\":%d,\"prompt_eval_duration\":%lld,\"eval_count\":%d,\"eval_duration\":%lld",
                  c->end == JOB_END_LENGTH ? "length" : "stop", (long long)(total_s * 1e9), c->n_prompt,
                  (long long)(c->t_first_s * 1e9), c->n_generated, (long long)(eval_s * 1e9));
    if (!w->context) return;
    int n;
    const int32_t *ids = job_tokens(r->job, 0, &n);
    jsonw_raw(o, ",\"context\":[");
    for (int i = 0; i < n; i++) strbuf_printf(o, i ? ",%d" : "%d", ids[i]);
    jsonw_raw(o, "]");
}

/* A generation that did not end as the model ended it: Ollama's clients read an "error" line. */
static const char *cut_reason(const struct job_choice_info *c)
{
    if (c->failed) return status_str(c->error);
    if (c->end == JOB_END_CANCELED) return "the generation was cut short: the server is shutting down";
    return NULL;
}

static void oll_fill(struct req *r)
{
    struct oll_w *w = r->wstate;
    struct strbuf *o = &r->out;
    int n_evs, n_lps = 0;
    const struct output_ev *evs = job_drain(r->job, 0, &n_evs);
    const struct job_lp *lps;
    for (int k = 0; k < n_evs; k++) {
        const struct output_ev *ev = &evs[k];
        if (ev->kind == OUTPUT_TOOL_START) {
            w->in_call = true;
            w->call_index = ev->tool_index;
            snprintf(w->call_id, sizeof w->call_id, "%s", ev->id);
            snprintf(w->call_name, sizeof w->call_name, "%s", ev->name);
            strbuf_clear(&w->call_args);
            continue;
        }
        if (ev->kind == OUTPUT_TOOL_ARGS) {
            strbuf_append(&w->call_args, ev->text.data, ev->text.len);
            continue;
        }
        struct strbuf call = {0};
        if (ev->kind == OUTPUT_TOOL_END) {
            if (!w->in_call) continue;
            tool_call_json(&call, w->call_id, w->call_index, w->call_name, w->call_args.data, w->call_args.len);
            w->in_call = false;
        } else if (!ev->text.len) continue;
        bool think = ev->kind == OUTPUT_REASONING;
        line_open(o, w);
        text_fields(o, w, think ? NULL : ev->text.data, think ? 0 : ev->text.len, ev->text.data, think ? ev->text.len : 0,
                    call.data);
        // the tokens since the last line (those of a tool call's arguments ride on the call's line)
        lps = w->logprobs ? job_drain_logprobs(r->job, 0, &n_lps) : NULL;
        logprobs_json(o, r->g, lps, w->logprobs ? n_lps : 0);
        jsonw_raw(o, ",\"done\":false}\n");
        strbuf_free(&call);
    }
    struct job_choice_info c;
    job_choice_info(r->job, 0, &c);
    if (!c.done || r->sse_done) return;
    const char *cut = cut_reason(&c);
    if (cut) {
        jsonw_raw(o, "{\"error\":");
        jsonw_cstr(o, cut);
        jsonw_raw(o, "}\n");
    } else {
        line_open(o, w);
        text_fields(o, w, "", 0, NULL, 0, NULL);
        lps = w->logprobs ? job_drain_logprobs(r->job, 0, &n_lps) : NULL;
        logprobs_json(o, r->g, lps, w->logprobs ? n_lps : 0);
        done_fields(o, r, w, &c);
        jsonw_raw(o, "}\n");
    }
    r->sse_done = true;
}

static enum MHD_Result oll_whole(struct req *r)
{
    struct oll_w *w = r->wstate;
    struct job_choice_info c;
    job_choice_info(r->job, 0, &c);
    if (c.end == JOB_END_CANCELED) {
        struct api_error e = api_error_kind_make(API_ERROR_SHUTDOWN, "%s", cut_reason(&c));
        return srv_send_error(r, &e);
    }
    struct strbuf content = {0}, thinking = {0}, calls = {0};
    int n_blocks;
    const struct output_ev *blocks = job_blocks(r->job, 0, &n_blocks);
    for (int b = 0; b < n_blocks; b++) {
        const struct output_ev *bl = &blocks[b];
        if (bl->kind == OUTPUT_CONTENT) strbuf_append(&content, bl->text.data, bl->text.len);
        else if (bl->kind == OUTPUT_REASONING) strbuf_append(&thinking, bl->text.data, bl->text.len);
        else if (bl->kind == OUTPUT_TOOL_START) {
            if (calls.len) strbuf_putc(&calls, ',');
            tool_call_json(&calls, bl->id, bl->tool_index, bl->name, bl->text.data, bl->text.len);
        }
    }
    struct strbuf o = {0};
    line_open(&o, w);
    text_fields(&o, w, content.data, content.len, thinking.data, thinking.len, calls.data);
    int n_lps;
    const struct job_lp *lps = w->logprobs ? job_logprobs(r->job, 0, &n_lps) : NULL;
    logprobs_json(&o, r->g, lps, lps ? n_lps : 0);
    done_fields(&o, r, w, &c);
    jsonw_raw(&o, "}");
    enum MHD_Result ret = srv_send_json(r, 200, o.data, o.len);
    strbuf_free(&o);
    strbuf_free(&content);
    strbuf_free(&thinking);
    strbuf_free(&calls);
    return ret;
}

/* Ollama's answer to a request with nothing to generate (no messages, an empty prompt): the
 * model is loaded (it always is here), or "unloaded" for keep_alive 0 (it stays loaded). */
static enum MHD_Result load_reply(struct req *r, json_t *body, const char *model, bool chat)
{
    json_t *ka = json_object_get(body, "keep_alive");
    bool unload = (json_is_number(ka) && json_number_value(ka) == 0) || (json_is_string(ka) && !strcmp(json_string_value(ka), "0"));
    struct oll_w w = { .chat = chat };
    snprintf(w.model, sizeof w.model, "%s", model);
    struct strbuf o = {0};
    line_open(&o, &w);
    text_fields(&o, &w, "", 0, NULL, 0, NULL);
    strbuf_printf(&o, ",\"done\":true,\"done_reason\":\"%s\"}", unload ? "unload" : "load");
    bool stream;
    struct api_error e;
    if (!param_bool(body, "stream", true, &stream, &e)) {
        strbuf_free(&o);
        return srv_send_error(r, &e);
    }
    if (stream) strbuf_putc(&o, '\n');
    enum MHD_Result ret = srv_send_json(r, 200, o.data, o.len);
    strbuf_free(&o);
    return ret;
}

/* Answers a started job, streamed as NDJSON or whole. */
static enum MHD_Result run(struct req *r, const char *model, bool chat, bool context, bool logprobs, bool stream)
{
    struct oll_w *w = xcalloc(1, sizeof *w);
    snprintf(w->model, sizeof w->model, "%s", model);
    w->chat = chat;
    w->context = context;
    w->logprobs = logprobs;
    return srv_answer_job(r, w, oll_w_free, stream, true, oll_fill, oll_whole);
}

/* ==== /api/chat ==== */

enum MHD_Result api_ollama_chat(struct req *r, json_t *body)
{
    struct api_error e;
    struct gen_params p;
    memset(&p, 0, sizeof p);
    const char *model;
    bool stream, use_tools, lp;
    long long max_out;
    json_t *msgs = NULL, *kwargs = NULL, *tools = NULL;
    char *prompt = NULL;
    enum MHD_Result ret;
    if (!model_field(r, body, &model, &e)) goto fail;
    json_t *in = json_object_get(body, "messages");
    if (!in || json_is_null(in) || (json_is_array(in) && !json_array_size(in))) return load_reply(r, body, model, true);
    if (!plain_fields(body, &stream, &p, &lp, &e)) goto fail;
    if (!options(r, body, &p, &max_out, &e)) goto fail;
    if (!srv_tools(body, &srv_chat_tool_api, &tools, &use_tools, &e)) goto fail;
    if (!srv_constraint_format(r->s->grammars, json_object_get(body, "format"), &p.grammar, &e)) goto fail;
    p.grammar_field = "format";
    if (!(msgs = openai_messages(in, &e))) goto fail;
    kwargs = param_kwargs(r, NULL);
    if (!think_field(r, body, kwargs, &e)) goto fail;
    if (!srv_render(r, msgs, use_tools ? tools : NULL, kwargs, &prompt, &e)) goto fail;
    srv_chat_params(r, &p, prompt, &tools, use_tools, "call_");
    if (!srv_tool_constraint(r, body, &srv_chat_tool_api, &p, &e)) goto fail;
    p.n = 1;
    p.max_tokens = max_out;
    p.max_given = max_out > 0;
    if (!srv_start_job(r, &p, &e)) goto fail;
    ret = run(r, model, true, false, lp, stream);
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

/* ==== /api/generate ==== */

/* "context": token ids of an earlier exchange, put before this prompt. *ids: caller frees. */
static bool context_field(struct req *r, json_t *body, int32_t **ids, int *n, struct api_error *e)
{
    json_t *c = json_object_get(body, "context");
    *ids = NULL;
    *n = 0;
    if (!c || json_is_null(c)) return true;
    if (!json_is_array(c) || json_array_size(c) >= (size_t)r->g->n_ctx) {
        *e = api_error_make(STATUS_EINVAL, "context", "'context' must be an array of token ids shorter than the context (%d)", r->g->n_ctx);
        return false;
    }
    *ids = xmalloc((json_array_size(c) + 1) * sizeof **ids);
    size_t i;
    json_t *v;
    json_array_foreach(c, i, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= r->g->n_vocab) {
            *e = api_error_make(STATUS_EINVAL, "context", "'context[%zu]' is not a token id in [0, %d)", i, r->g->n_vocab);
            free(*ids);
            *ids = NULL;
            return false;
        }
        (*ids)[(*n)++] = (int32_t)json_integer_value(v);
    }
    return true;
}

/* The prompt text: raw, around a hole (suffix), or one user turn (with system and images)
 * through the chat template. *templated: the template rendered it (its own BOS). */
static bool generate_prompt(struct req *r, json_t *body, struct gen_params *p, char **prompt, bool *templated,
                            struct api_error *e)
{
    const char *text, *suffix, *system;
    bool raw;
    if (!param_str(body, "prompt", false, &text, e) || !param_str(body, "suffix", false, &suffix, e) ||
        !param_str(body, "system", false, &system, e) || !param_bool(body, "raw", false, &raw, e))
        return false;
    *templated = false;
    if (suffix && *suffix) return srv_fim_prompt(r, text ? text : "", suffix, "suffix", prompt, e);
    if (raw) {
        *prompt = xstrdup(text ? text : "");
        return true;
    }
    if (!r->g->chat) {
        *e = api_error_make(STATUS_EUNSUPPORTED, "raw", "this server runs without a chat template: send raw: true");
        return false;
    }
    json_t *turn = json_pack("{s:s,s:s}", "role", "user", "content", text ? text : "");
    json_t *images = json_object_get(body, "images");
    if (images) json_object_set(turn, "images", images);
    json_t *in = json_array();
    if (system && *system) json_array_append_new(in, json_pack("{s:s,s:s}", "role", "system", "content", system));
    json_array_append_new(in, turn);
    json_t *msgs = openai_messages(in, e);
    json_decref(in);
    if (!msgs) return false;
    json_t *kwargs = param_kwargs(r, NULL);
    bool ok = think_field(r, body, kwargs, e) && srv_render(r, msgs, NULL, kwargs, prompt, e);
    json_decref(kwargs);
    json_decref(msgs);
    *templated = ok;
    p->reasoning = srv_reasoning(r->s);
    return ok;
}

enum MHD_Result api_ollama_generate(struct req *r, json_t *body)
{
    struct api_error e;
    struct gen_params p;
    memset(&p, 0, sizeof p);
    const char *model, *text;
    bool stream, lp, templated;
    long long max_out;
    char *prompt = NULL;
    int32_t *ctx = NULL, *ids = NULL, *all = NULL;
    int n_ctx_ids = 0, n_ids = 0;
    enum MHD_Result ret;
    if (!model_field(r, body, &model, &e)) goto fail;
    if (!param_str(body, "prompt", false, &text, &e)) goto fail;
    json_t *images = json_object_get(body, "images"), *suffix = json_object_get(body, "suffix");
    bool nothing = (!text || !*text) && (!json_is_array(images) || !json_array_size(images)) &&
                   (!json_is_string(suffix) || !json_string_length(suffix));
    if (nothing && !json_object_get(body, "context")) return load_reply(r, body, model, false);
    if (!plain_fields(body, &stream, &p, &lp, &e)) goto fail;
    if (!options(r, body, &p, &max_out, &e)) goto fail;
    if (!srv_constraint_format(r->s->grammars, json_object_get(body, "format"), &p.grammar, &e)) goto fail;
    p.grammar_field = "format";
    if (!context_field(r, body, &ctx, &n_ctx_ids, &e)) goto fail;
    if (!generate_prompt(r, body, &p, &prompt, &templated, &e)) goto fail;
    if (r->g->ops->encode(r->g->self, prompt, strlen(prompt), templated ? false : r->g->add_bos, &ids, &n_ids) != STATUS_OK) {
        e = api_error_make(STATUS_EINVAL, "prompt", "could not tokenize the prompt");
        goto fail;
    }
    all = xmalloc((size_t)(n_ctx_ids + n_ids + 1) * sizeof *all);
    if (n_ctx_ids) memcpy(all, ctx, (size_t)n_ctx_ids * sizeof *all);
    if (n_ids) memcpy(all + n_ctx_ids, ids, (size_t)n_ids * sizeof *all);
    int n_all = n_ctx_ids + n_ids;
    p.prompt_text = prompt;   // the ids below are what runs; the text tells whether it opened a think block
    p.prompt_ids = &all;
    p.n_prompt_ids = &n_all;
    p.n_prompts = 1;
    p.n = 1;
    p.max_tokens = max_out;
    p.max_given = max_out > 0;
    p.keep_tokens = true;
    if (!srv_start_job(r, &p, &e)) goto fail;
    ret = run(r, model, false, true, lp, stream);
    goto out;
fail:
    ret = srv_send_error(r, &e);
out:
    constraint_grammar_free(p.grammar);
    free(prompt);
    free(ctx);
    free(ids);
    free(all);
    return ret;
}

/* ==== Model listing ==== */

static void details_json(struct strbuf *o, const struct gen *g)
{
    const struct gen_model_info *in = g ? &g->info : NULL;
    char size[32] = "";
    if (in && in->n_params >= 1000000000ull) snprintf(size, sizeof size, "%.1fB", (double)in->n_params / 1e9);
    else if (in && in->n_params) snprintf(size, sizeof size, "%.0fM", (double)in->n_params / 1e6);
    jsonw_raw(o, "{\"parent_model\":\"\",\"format\":\"safetensors\",\"family\":");
    jsonw_cstr(o, in ? in->family : "");
    jsonw_raw(o, ",\"families\":[");
    if (in && in->family[0]) jsonw_cstr(o, in->family);
    jsonw_raw(o, "],\"parameter_size\":");
    jsonw_cstr(o, size);
    jsonw_raw(o, ",\"quantization_level\":");
    jsonw_cstr(o, in ? in->quant : "");
    jsonw_raw(o, "}");
}

/* One entry of /api/tags (ps: /api/ps's, with expiry, memory and context). */
static void model_entry(struct strbuf *o, const struct gen *g, const char *name, bool ps)
{
    struct strbuf n = {0};
    listed_name(&n, name);
    uint64_t h = 1469598103934665603ull;   // a stable id for the name (FNV-1a), where Ollama has a manifest digest
    for (const char *c = n.data; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ull;
    jsonw_raw(o, "{\"name\":");
    jsonw_cstr(o, n.data);
    jsonw_raw(o, ",\"model\":");
    jsonw_cstr(o, n.data);
    uint64_t bytes = g ? g->info.weight_bytes : 0;
    strbuf_printf(o, ",\"size\":%llu,\"digest\":\"%016llx\",\"details\":", (unsigned long long)bytes, (unsigned long long)h);
    details_json(o, g);
    if (ps) strbuf_printf(o, ",\"expires_at\":\"2318-01-01T00:00:00Z\",\"size_vram\":0,\"context_length\":%d", g ? g->n_ctx : 0);
    else {
        strbuf_putc(o, ',');
        stamp(o, "modified_at");
    }
    strbuf_putc(o, '}');
    strbuf_free(&n);
}

/* The names listed: the served names, or the model's id when only '*' was given. */
static int listed_names(const struct server *s, const struct gen *g, const char **names, int cap)
{
    int n = 0;
    for (int i = 0; i < s->n_names && n < cap; i++) names[n++] = s->names[i];
    if (!n && g) names[n++] = g->model_id;
    return n;
}

static enum MHD_Result list_models(struct req *r, bool ps)
{
    struct gen *g = atomic_load(&r->s->g);
    const char *names[64];
    int n = listed_names(r->s, g, names, 64);
    struct strbuf o = {0};
    jsonw_raw(&o, "{\"models\":[");
    for (int i = 0; i < n; i++) {
        if (i) strbuf_putc(&o, ',');
        model_entry(&o, g, names[i], ps);
    }
    jsonw_raw(&o, "]}");
    enum MHD_Result ret = srv_send_json(r, 200, o.data, o.len);
    strbuf_free(&o);
    return ret;
}

enum MHD_Result api_ollama_get(struct req *r)
{
    if (r->route == ROUTE_OLLAMA_TAGS || r->route == ROUTE_OLLAMA_PS) return list_models(r, r->route == ROUTE_OLLAMA_PS);
    static const char body[] = "{\"version\":\"" OLLAMA_API_VERSION "\"}";
    return srv_send_json(r, 200, body, sizeof body - 1);
}

/* ==== /api/show ==== */

enum MHD_Result api_ollama_show(struct req *r, json_t *body)
{
    struct api_error e;
    const char *model;
    if (!model_field(r, body, &model, &e)) return srv_send_error(r, &e);
    struct gen *g = r->g;
    struct strbuf o = {0};
    jsonw_raw(&o, "{\"license\":\"\",\"modelfile\":");
    struct strbuf mf = {0};
    strbuf_printf(&mf, "# served by cairn\nFROM %s\n", model);
    jsonw_str(&o, mf.data, mf.len);
    strbuf_free(&mf);
    jsonw_raw(&o, ",\"parameters\":\"\",\"template\":");
    jsonw_cstr(&o, g->template_src ? g->template_src : "");
    jsonw_raw(&o, ",\"details\":");
    details_json(&o, g);
    const char *family = g->info.family[0] ? g->info.family : "unknown";
    jsonw_raw(&o, ",\"model_info\":{\"general.architecture\":");
    jsonw_cstr(&o, family);
    strbuf_printf(&o, ",\"general.parameter_count\":%llu,", (unsigned long long)g->info.n_params);
    struct strbuf key = {0};
    strbuf_printf(&key, "%s.context_length", family);
    jsonw_key(&o, key.data);
    strbuf_free(&key);
    // what clients check before sending tools, think or suffix
    strbuf_printf(&o, "%d},\"capabilities\":[\"completion\"", g->n_ctx);
    if (g->chat && srv_tool_family(r->s) != TOOL_FAMILY_NONE) jsonw_raw(&o, ",\"tools\"");
    if (g->chat && srv_reasoning(r->s)) jsonw_raw(&o, ",\"thinking\"");
    if (g->fim.supported) jsonw_raw(&o, ",\"insert\"");
    jsonw_raw(&o, "],");
    stamp(&o, "modified_at");
    jsonw_raw(&o, "}");
    enum MHD_Result ret = srv_send_json(r, 200, o.data, o.len);
    strbuf_free(&o);
    return ret;
}
