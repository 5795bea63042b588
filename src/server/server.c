/* server: libmicrohttpd daemon, routing, auth, limits, SSE plumbing, health, metrics, models,
 * tokenize/detokenize, graceful shutdown; see server.h. The API handlers live in api_*.c.
 *
 * Threading: libmicrohttpd runs event-driven (internal poll) on a small pool of threads that never block
 * on the model, so idle or slow connections cost memory, not threads. A request that needs the
 * model (every POST route) is handed to its own worker thread: the connection is suspended, the
 * worker renders, submits and waits (srv_wait_job) and keeps its response in r->pending; then it
 * resumes the connection and MHD calls on_request again, which queues that response. A stream's
 * reader (on MHD's thread) polls its job for at most SSE_POLL_MS per call, checking whether the
 * peer closed its socket (recv MSG_PEEK == 0) and cancelling the generation when it has. A
 * request struct is shared by MHD's callbacks, the worker and the stream reader: refcounted.
 *
 * Limits: bodies above max_body_bytes answer 413 (from Content-Length before reading, or as soon
 * as a chunked body's running total passes it, then close); a body that trickles in for longer
 * than body_timeout_s answers 408 and closes;
 * a sweeper thread cuts a connection whose request header is not complete header_timeout_s after
 * its first byte, and a body arriving slower than body_min_rate bytes/s on average after its first
 * BODY_RATE_GRACE_S seconds (slowloris); an idle connection (no byte of a request) closes after
 * http_timeout_s; at most per_ip_connections from one address.
 */
#include "server/server_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/tcp.h>   // struct tcp_info with tcpi_bytes_received (glibc's lacks it)

#include "base/clock.h"
#include "base/log.h"
#include "server/jsonw.h"
#include "text/pyjson.h"

#define MHD_THREADS 4   // event-loop threads; none of them ever waits on the model

/* ==== Routes ==== */

static const struct { const char *path; enum route route; const char *method; } routes[] = {
    { "/health", ROUTE_HEALTH, "GET" },
    { "/metrics", ROUTE_METRICS, "GET" },
    { "/v1/models", ROUTE_MODELS, "GET" },
    { "/v1/chat/completions", ROUTE_CHAT, "POST" },
    { "/v1/completions", ROUTE_COMPLETIONS, "POST" },
    { "/v1/messages", ROUTE_MESSAGES, "POST" },
    { "/v1/responses", ROUTE_RESPONSES, "POST" },
    { "/v1/embeddings", ROUTE_EMBEDDINGS, "POST" },
    { "/v1/messages/count_tokens", ROUTE_COUNT_TOKENS, "POST" },
    { "/tokenize", ROUTE_TOKENIZE, "POST" },
    { "/detokenize", ROUTE_DETOKENIZE, "POST" },
    { "/api/chat", ROUTE_OLLAMA_CHAT, "POST" },
    { "/api/generate", ROUTE_OLLAMA_GENERATE, "POST" },
    { "/api/show", ROUTE_OLLAMA_SHOW, "POST" },
    { "/api/tags", ROUTE_OLLAMA_TAGS, "GET" },
    { "/api/ps", ROUTE_OLLAMA_PS, "GET" },
    { "/api/version", ROUTE_OLLAMA_VERSION, "GET" },
    { "/", ROUTE_ROOT, "GET" },
};
#define N_ROUTES (int)(sizeof routes / sizeof routes[0])

/* ==== Requests ==== */

enum { HAND_NONE = 0, HAND_WORKING, HAND_ANSWERED, HAND_QUEUED };

static void req_unref(struct req *r)
{
    if (atomic_fetch_sub(&r->refs, 1) != 1) return;
    if (r->pending) MHD_destroy_response(r->pending);
    pthread_mutex_destroy(&r->hand_mu);
    job_free(r->job);
    if (r->wstate_free) r->wstate_free(r->wstate);
    json_decref(r->tools);
    free(r->lit);
    strbuf_free(&r->body);
    strbuf_free(&r->out);
    free(r);
}

void srv_register(struct req *r)
{
    struct server *s = r->s;
    pthread_mutex_lock(&s->mu);
    if (s->n_live == s->cap_live) {
        s->cap_live = s->cap_live ? s->cap_live * 2 : 64;
        s->live = xrealloc(s->live, (size_t)s->cap_live * sizeof *s->live);
    }
    s->live[s->n_live++] = r;
    pthread_mutex_unlock(&s->mu);
}

static void unregister(struct req *r)
{
    struct server *s = r->s;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n_live; i++)
        if (s->live[i] == r) { s->live[i] = s->live[--s->n_live]; break; }
    pthread_mutex_unlock(&s->mu);
}

static void add_common_headers(struct req *r, struct MHD_Response *resp)
{
    char id[32];
    snprintf(id, sizeof id, "req-%llu", (unsigned long long)r->id);
    MHD_add_response_header(resp, "X-Request-Id", id);
    if (r->s->cors_origin) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", r->s->cors_origin);
        MHD_add_response_header(resp, "Vary", "Origin");
    }
}

/* Queues resp (and drops our reference): at once on MHD's thread, or kept for the resume when a
 * worker answers. */
static enum MHD_Result queue(struct req *r, int code, struct MHD_Response *resp)
{
    r->http_status = code;
    if (r->deferred) {
        if (r->pending) MHD_destroy_response(r->pending);
        r->pending = resp;
        r->pending_code = code;
        return MHD_YES;
    }
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)code, resp);
    MHD_destroy_response(resp);
    return ret;
}

enum MHD_Result srv_send_json(struct req *r, int code, const char *body, size_t len)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "application/json");
    add_common_headers(r, resp);
    return queue(r, code, resp);
}

static enum MHD_Result send_text(struct req *r, int code, const char *ctype, const char *body, size_t len)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", ctype);
    add_common_headers(r, resp);
    return queue(r, code, resp);
}

enum MHD_Result srv_send_error(struct req *r, const struct api_error *e)
{
    struct strbuf sb = {0};
    api_error_body(&sb, r->api, e);
    int code = api_error_http(e);
    LOG_DEBUG("req %llu: %d %s", (unsigned long long)r->id, code, e->message);
    struct MHD_Response *resp = MHD_create_response_from_buffer(sb.len, sb.data, MHD_RESPMEM_MUST_COPY);
    strbuf_free(&sb);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "application/json");
    add_common_headers(r, resp);
    if (e->retry_after_s > 0) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", e->retry_after_s);
        MHD_add_response_header(resp, "Retry-After", ra);
    }
    if (code == 405) {
        for (int i = 0; i < N_ROUTES; i++)
            if (!strcmp(routes[i].path, r->path))
                MHD_add_response_header(resp, "Allow", strcmp(routes[i].method, "GET") ? routes[i].method : "GET, HEAD");
    }
    if (e->close) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    return queue(r, code, resp);
}

bool srv_peer_closed(struct req *r)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return false;
    char c;
    ssize_t n = recv(ci->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return true;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return true;
    return false;
}

bool srv_wait_job(struct req *r)
{
    while (!job_done(r->job)) {
        if (srv_peer_closed(r) || atomic_load(&r->s->cancel_all)) {
            job_cancel(r->job);
            while (!job_done(r->job)) job_poll(r->job, 50);
            r->peer_gone = srv_peer_closed(r);
            return !r->peer_gone;
        }
        job_poll(r->job, 100);
    }
    return true;
}

/* A finished non-streaming job: when a choice failed, answers the error (*ret) and returns true. */
static bool answer_failed_job(struct req *r, enum MHD_Result *ret)
{
    for (int i = 0; i < job_n_choices(r->job); i++) {
        struct job_choice_info c;
        job_choice_info(r->job, i, &c);
        if (c.failed) {
            struct api_error e = api_error_make(c.error ? c.error : STATUS_EIO, NULL, "generation failed: %s", status_str(c.error));
            *ret = srv_send_error(r, &e);
            return true;
        }
    }
    return false;
}

enum MHD_Result srv_answer_job(struct req *r, void *w, void (*w_free)(void *), bool stream, bool ndjson,
                               void (*fill)(struct req *r), enum MHD_Result (*whole)(struct req *r))
{
    r->wstate = w;
    r->wstate_free = w_free;
    if (stream) {
        r->fill = fill;
        return ndjson ? srv_start_ndjson(r) : srv_start_sse(r);
    }
    if (!srv_wait_job(r)) return MHD_NO;   // client gone: close
    enum MHD_Result ret;
    if (answer_failed_job(r, &ret)) return ret;
    return whole(r);
}

void srv_make_id(struct req *r, const char *prefix, char *out, size_t cap)
{
    snprintf(out, cap, "%s%llx%08llx", prefix, (unsigned long long)time(NULL),
             (unsigned long long)(r->id * 2654435761u & 0xffffffffu));
}

/* ==== SSE ==== */

static void suspend(struct req *r)
{
    atomic_fetch_add(&r->s->n_suspended, 1);
    MHD_suspend_connection(r->conn);
}

static void resume(struct req *r)
{
    MHD_resume_connection(r->conn);
    atomic_fetch_sub(&r->s->n_suspended, 1);
}

/* On MHD's thread: hands out the SSE bytes, polling the job for at most SSE_POLL_MS at a time so
 * that the event loop thread serving this stream serves its other connections between polls.
 * (Suspending the connection here and resuming it from the worker loses wake-ups in MHD 0.9.75's
 * internal polling when the connection is reused: a keep-alive stream then hangs.) */
#define SSE_POLL_MS 5
static ssize_t sse_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct req *r = cls;
    if (r->out_pos < r->out.len) {
        size_t n = r->out.len - r->out_pos;
        if (n > max) n = max;
        memcpy(buf, r->out.data + r->out_pos, n);
        r->out_pos += n;
        r->last_write_s = clock_now_s();
        return (ssize_t)n;
    }
    strbuf_clear(&r->out);
    r->out_pos = 0;
    if (r->sse_done) return MHD_CONTENT_READER_END_OF_STREAM;
    if (atomic_load(&r->s->cancel_all)) job_cancel(r->job);
    if (srv_peer_closed(r)) {
        job_cancel(r->job);
        r->peer_gone = true;
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    job_poll(r->job, SSE_POLL_MS);
    r->fill(r);
    // (NDJSON has no comment syntax: Ollama's clients would choke on a keep-alive line)
    if (!r->out.len && !r->ndjson && clock_now_s() - r->last_write_s >= r->s->cfg.keepalive_s)
        strbuf_puts(&r->out, ": keep-alive\n\n");
    return 0;   // nothing yet: MHD calls again on its next loop
}

static void sse_free(void *cls) { req_unref(cls); }

static enum MHD_Result start_stream(struct req *r, const char *content_type)
{
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, sse_reader, r, sse_free);
    if (!resp) return MHD_NO;
    atomic_fetch_add(&r->refs, 1);
    r->streaming = true;
    r->last_write_s = clock_now_s();
    MHD_add_response_header(resp, "Content-Type", content_type);
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    add_common_headers(r, resp);
    return queue(r, 200, resp);
}

enum MHD_Result srv_start_sse(struct req *r) { return start_stream(r, "text/event-stream"); }

enum MHD_Result srv_start_ndjson(struct req *r)
{
    r->ndjson = true;
    return start_stream(r, "application/x-ndjson");
}

/* ==== Model-dependent helpers ==== */

enum tool_family srv_tool_family(struct server *s)
{
    if (s->family_forced) return s->family;
    struct gen *g = atomic_load(&s->g);
    return g ? g->fmt.tool_family : TOOL_FAMILY_NONE;
}

bool srv_reasoning(struct server *s)
{
    if (s->reasoning_mode >= 0) return s->reasoning_mode;
    struct gen *g = atomic_load(&s->g);
    return g && g->fmt.thinks;
}

static void on_token(void *ctx, double itl_s, bool first, double ttft_s)
{
    struct req *r = ctx;
    if (first) {
        metrics_ttft(r->s->m, clock_now_s() - r->t0_s);
        if (r->ttft_s == 0) r->ttft_s = clock_now_s() - r->t0_s;
    } else metrics_itl(r->s->m, itl_s);
}

void srv_job_hooks(struct req *r, struct job_cfg *jc)
{
    jc->on_token = on_token;
    jc->on_token_ctx = r;
}

/* ==== Small endpoints ==== */

/* A 503 that will pass (loading, stalled, shutting down): says when to ask again. */
static enum MHD_Result send_unavailable(struct req *r, const char *body, size_t len, int retry_s)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "application/json");
    add_common_headers(r, resp);
    char ra[16];
    snprintf(ra, sizeof ra, "%d", retry_s);
    MHD_add_response_header(resp, "Retry-After", ra);
    return queue(r, 503, resp);
}

static enum MHD_Result do_health(struct req *r)
{
    struct gen *g = atomic_load(&r->s->g);
    if (atomic_load(&r->s->shutting_down)) return send_unavailable(r, "{\"status\":\"shutting_down\"}", 26, 5);
    if (!g) return send_unavailable(r, "{\"status\":\"loading\"}", 20, 5);
    struct engine_stats st;
    g->ops->stats(g->self, &st);
    double now = clock_now_s(), idle = now - st.last_progress_s;
    if (st.failed_steps > 0) {   // a backend failed a step (a device error is sticky): requests get errors
        char b[96];
        int n = snprintf(b, sizeof b, "{\"status\":\"failed\",\"failed_steps\":%llu}", (unsigned long long)st.failed_steps);
        return send_unavailable(r, b, (size_t)n, 5);
    }
    if (engine_stats_stalled(&st, now, r->s->cfg.stall_s)) {
        char b[160];
        int n = snprintf(b, sizeof b, "{\"status\":\"stalled\",\"running\":%d,\"waiting\":%d,\"seconds_without_progress\":%.1f}",
                         st.n_running, st.n_pending - st.n_running, idle);
        return send_unavailable(r, b, (size_t)n, 5);
    }
    if (g->embedder) {   // --runner pooling: say what is served
        static const char body[] = "{\"status\":\"ok\",\"chat_template\":false,\"endpoints\":\"embeddings\"}";
        return srv_send_json(r, 200, body, sizeof body - 1);
    }
    if (!g->chat) {   // started with --no-chat-template: say what is served
        static const char body[] = "{\"status\":\"ok\",\"chat_template\":false,\"endpoints\":\"completions_only\"}";
        return srv_send_json(r, 200, body, sizeof body - 1);
    }
    return srv_send_json(r, 200, "{\"status\":\"ok\"}", 15);
}

static enum MHD_Result do_metrics(struct req *r)
{
    struct gen *g = atomic_load(&r->s->g);
    struct engine_stats st;
    if (g) g->ops->stats(g->self, &st);
    struct strbuf sb = {0};
    metrics_render(r->s->m, g ? &st : NULL, &sb);
    enum MHD_Result ret = send_text(r, 200, "text/plain; version=0.0.4", sb.data, sb.len);
    strbuf_free(&sb);
    return ret;
}

/* ==== Model names ==== */

/* The comma list of --served-model-name: names (the first is what responses say) and '*'. */
static void served_names(struct server *s, const char *list)
{
    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 1 && *p == '*') s->any_model = true;
        else if (len) {
            s->names = xrealloc(s->names, (size_t)(s->n_names + 1) * sizeof *s->names);
            s->names[s->n_names++] = xstrndup(p, len);
        }
        p = end ? end + 1 : p + len;
    }
    s->served_name = s->n_names ? xstrdup(s->names[0]) : NULL;
}

bool srv_model_known(struct server *s, const char *id)
{
    if (s->any_model) return true;
    for (int i = 0; i < s->n_names; i++)
        if (!strcmp(id, s->names[i])) return true;
    return false;
}

/* One model object; Anthropic's shape when the client sent anthropic-version. */
/* One model entry; chat false: started with --no-chat-template (said in the OpenAI shape). */
/* endpoints: NULL when every route is served, else what is ("completions_only", "embeddings"). */
static void model_obj(struct strbuf *sb, const char *id, int n_ctx, const char *endpoints, bool anthropic)
{
    time_t now = time(NULL);
    if (anthropic) {
        char when[32];
        struct tm tm;
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
        jsonw_raw(sb, "{\"type\":\"model\",\"id\":");
        jsonw_cstr(sb, id);
        jsonw_raw(sb, ",\"display_name\":");
        jsonw_cstr(sb, id);
        strbuf_printf(sb, ",\"created_at\":\"%s\"}", when);
        return;
    }
    jsonw_raw(sb, "{\"id\":");
    jsonw_cstr(sb, id);
    strbuf_printf(sb, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"cairn\"", (long long)now);
    if (n_ctx > 0) strbuf_printf(sb, ",\"max_model_len\":%d", n_ctx);
    if (endpoints) strbuf_printf(sb, ",\"chat_template\":false,\"endpoints\":\"%s\"", endpoints);
    strbuf_putc(sb, '}');
}

static enum MHD_Result do_models(struct req *r)
{
    struct gen *g = atomic_load(&r->s->g);
    struct server *s = r->s;
    int n_ctx = g ? g->n_ctx : 0;   // 0 while loading: the field is left out, never reported as 0
    const char *endpoints = !g ? NULL : g->embedder ? "embeddings" : !g->chat ? "completions_only" : NULL;
    bool anthropic = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "anthropic-version") != NULL;
    struct strbuf sb = {0};
    const char *one = !strncmp(r->path, "/v1/models/", 11) ? r->path + 11 : NULL;
    if (one && !srv_model_known(s, one) && (!g || strcmp(one, g->model_id))) {
        struct api_error e = api_error_make(STATUS_ENOTFOUND, "model", "The model '%s' does not exist", one);
        return srv_send_error(r, &e);
    }
    if (one) model_obj(&sb, one, n_ctx, endpoints, anthropic);
    else {
        jsonw_raw(&sb, anthropic ? "{\"data\":[" : "{\"object\":\"list\",\"data\":[");
        for (int i = 0; i < s->n_names; i++) {
            if (i) strbuf_putc(&sb, ',');
            model_obj(&sb, s->names[i], n_ctx, endpoints, anthropic);
        }
        jsonw_raw(&sb, "]");
        if (anthropic) {
            jsonw_raw(&sb, ",\"has_more\":false,\"first_id\":");
            jsonw_cstr(&sb, s->n_names ? s->names[0] : NULL);
            jsonw_raw(&sb, ",\"last_id\":");
            jsonw_cstr(&sb, s->n_names ? s->names[s->n_names - 1] : NULL);
        }
        jsonw_raw(&sb, "}");
    }
    enum MHD_Result ret = srv_send_json(r, 200, sb.data, sb.len);
    strbuf_free(&sb);
    return ret;
}

static enum MHD_Result do_tokenize(struct req *r, json_t *body)
{
    struct api_error e;
    const char *prompt;
    bool add_special;
    if (!param_str(body, "prompt", true, &prompt, &e)) return srv_send_error(r, &e);
    if (!param_bool(body, "add_special_tokens", false, &add_special, &e)) return srv_send_error(r, &e);
    int32_t *ids;
    int n;
    size_t len = json_string_length(json_object_get(body, "prompt"));
    if (r->g->ops->encode(r->g->self, prompt, len, add_special, &ids, &n) != STATUS_OK) {
        e = api_error_make(STATUS_EINVAL, "prompt", "could not tokenize the prompt");
        return srv_send_error(r, &e);
    }
    struct strbuf sb = {0};
    jsonw_raw(&sb, "{\"tokens\":[");
    for (int i = 0; i < n; i++) strbuf_printf(&sb, i ? ",%d" : "%d", ids[i]);
    strbuf_printf(&sb, "],\"count\":%d,\"max_model_len\":%d}", n, r->g->n_ctx);
    free(ids);
    enum MHD_Result ret = srv_send_json(r, 200, sb.data, sb.len);
    strbuf_free(&sb);
    return ret;
}

static enum MHD_Result do_detokenize(struct req *r, json_t *body)
{
    struct api_error e;
    json_t *toks = json_object_get(body, "tokens");
    if (!json_is_array(toks)) {
        e = api_error_make(STATUS_EINVAL, "tokens", "'tokens' must be an array of token ids");
        return srv_send_error(r, &e);
    }
    size_t n = json_array_size(toks), i;
    int32_t *ids = xmalloc((n + 1) * sizeof *ids);
    json_t *v;
    json_array_foreach(toks, i, v) {
        long long x = json_integer_value(v);
        if (!json_is_integer(v) || x < 0 || x >= r->g->n_vocab) {
            free(ids);
            e = api_error_make(STATUS_EINVAL, "tokens", "'tokens[%zu]' must be a token id in [0, %d)", i, r->g->n_vocab);
            return srv_send_error(r, &e);
        }
        ids[i] = (int32_t)x;
    }
    char *text = r->g->ops->decode(r->g->self, ids, (int)n, false);
    free(ids);
    struct strbuf sb = {0};
    jsonw_raw(&sb, "{\"prompt\":");
    jsonw_cstr(&sb, text);
    jsonw_raw(&sb, "}");
    free(text);
    enum MHD_Result ret = srv_send_json(r, 200, sb.data, sb.len);
    strbuf_free(&sb);
    return ret;
}

/* ==== Dispatch ==== */

static bool auth_ok(struct req *r)
{
    const char *key = r->s->api_key;
    if (!key) return true;
    const char *got = NULL, *auth = NULL;
    size_t a = 0, auth_len = 0, b = strlen(key);
    MHD_lookup_connection_value_n(r->conn, MHD_HEADER_KIND, "x-api-key", 9, &got, &a);
    MHD_lookup_connection_value_n(r->conn, MHD_HEADER_KIND, "Authorization", 13, &auth, &auth_len);
    if (!got && auth && auth_len >= 7 && !strncasecmp(auth, "Bearer ", 7)) got = auth + 7, a = auth_len - 7;
    if (!got) return false;
    while (a && (got[a - 1] == ' ' || got[a - 1] == '\t')) a--;   // trailing whitespace is not the field's (RFC 9110)
    unsigned diff = (unsigned)(a ^ b);
    for (size_t i = 0; i < a && i < b; i++) diff |= (unsigned)(got[i] ^ key[i]);
    return diff == 0;
}

static enum MHD_Result dispatch(struct req *r)
{
    struct api_error e;
    switch (r->route) {
    case ROUTE_HEALTH:  return do_health(r);
    case ROUTE_METRICS: return do_metrics(r);
    case ROUTE_MODELS:  return do_models(r);
    case ROUTE_OLLAMA_TAGS:
    case ROUTE_OLLAMA_PS:
    case ROUTE_OLLAMA_VERSION: return api_ollama_get(r);
    case ROUTE_ROOT:    return send_text(r, 200, "text/plain; charset=utf-8", "Ollama is running", 17);   // Ollama's liveness probe
    default: break;
    }
    r->g = atomic_load(&r->s->g);
    if (!r->g) {
        e = api_error_kind_make(API_ERROR_LOADING, "the model is still loading");
        return srv_send_error(r, &e);
    }
    if (!r->body.len) {
        e = api_error_make(STATUS_EINVAL, NULL, "the request body is empty; expected a JSON object");
        return srv_send_error(r, &e);
    }
    json_error_t jerr;
    json_t *body = pyjson_loadb(r->body.data, r->body.len, 0, &jerr);
    if (!body) {
        e = api_error_make(STATUS_EFORMAT, NULL, "Invalid JSON at line %d, column %d: %s", jerr.line, jerr.column,
                           jerr.text);
        return srv_send_error(r, &e);
    }
    if (!json_is_object(body)) {
        json_decref(body);
        e = api_error_make(STATUS_EINVAL, NULL, "the request body must be a JSON object");
        return srv_send_error(r, &e);
    }
    enum MHD_Result ret = MHD_NO;
    bool generates = r->route == ROUTE_CHAT || r->route == ROUTE_COMPLETIONS || r->route == ROUTE_MESSAGES ||
                     r->route == ROUTE_RESPONSES || r->route == ROUTE_COUNT_TOKENS;
    if (generates && r->g->embedder) {
        json_decref(body);
        e = api_error_make(STATUS_EUNSUPPORTED, NULL, "the model '%s' is served for embeddings (--runner pooling): "
                           "%s is not served; POST /v1/embeddings", r->s->served_name, r->path);
        return srv_send_error(r, &e);
    }
    switch (r->route) {
    case ROUTE_EMBEDDINGS:   ret = api_openai_embeddings(r, body); break;
    case ROUTE_CHAT:         ret = api_openai_chat(r, body); break;
    case ROUTE_COMPLETIONS:  ret = api_openai_completions(r, body); break;
    case ROUTE_MESSAGES:     ret = api_anthropic_messages(r, body); break;
    case ROUTE_RESPONSES:    ret = api_responses(r, body); break;
    case ROUTE_COUNT_TOKENS: ret = api_anthropic_count_tokens(r, body); break;
    case ROUTE_TOKENIZE:     ret = do_tokenize(r, body); break;
    case ROUTE_DETOKENIZE:   ret = do_detokenize(r, body); break;
    case ROUTE_OLLAMA_CHAT:  ret = api_ollama_chat(r, body); break;
    case ROUTE_OLLAMA_GENERATE: ret = api_ollama_generate(r, body); break;
    case ROUTE_OLLAMA_SHOW:  ret = api_ollama_show(r, body); break;
    default: break;
    }
    json_decref(body);
    return ret;
}

/* ==== Connection timers (slowloris) ==== */

/* One per TCP connection, made by MHD's connection notification: which phase its current request
 * is in and since when. The sweeper cuts the slow ones by shutting their socket down (MHD then
 * sees the close and cleans up on its own thread); the fd stays valid while watch_mu is held,
 * because MHD tells us a connection closed before it closes the socket. */
enum watch_phase { WATCH_HEADER, WATCH_BODY, WATCH_BUSY, WATCH_LINGER };
struct conn_watch {
    struct conn_watch *prev, *next;
    int                fd;
    enum watch_phase   phase;
    double             t_phase;       // when the phase began
    size_t             body_bytes;
    uint64_t           rx_base;       // HEADER: bytes the socket had received when the phase began
    double             t_header;      // HEADER: when its first byte was seen (0: none yet)
    bool               cut;
    // the request line's target as sent, before MHD unescapes it (note_raw_uri; read and written
    // on the connection's MHD thread only)
    const char        *uri_raw;
    size_t             uri_raw_len;
};

#define BODY_RATE_GRACE_S 5.0
/* After a 413 sent mid-body the rest of the body is read and dropped this long before the
 * connection closes: closing a socket with unread bytes sends a reset, which can reach the
 * client before it has read the answer (the lingering close of nginx and Apache). */
#define LINGER_S 2.0

static struct conn_watch *watch_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* Bytes the kernel has received on the socket so far (0 when it cannot tell). MHD reads them
 * as they come, so this is how the sweeper sees that a request header has begun. */
static uint64_t rx_bytes(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    memset(&ti, 0, sizeof ti);
    if (fd < 0 || getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) return 0;
    return len >= offsetof(struct tcp_info, tcpi_bytes_received) + sizeof ti.tcpi_bytes_received ? ti.tcpi_bytes_received : 0;
}

static void watch_set(struct server *s, struct conn_watch *w, enum watch_phase ph)
{
    if (!w) return;
    pthread_mutex_lock(&s->watch_mu);
    w->phase = ph;
    w->t_phase = clock_now_s();
    w->body_bytes = 0;
    w->t_header = 0;
    if (ph == WATCH_HEADER) w->rx_base = rx_bytes(w->fd);
    pthread_mutex_unlock(&s->watch_mu);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct server *s = cls;
    pthread_mutex_lock(&s->watch_mu);
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        struct conn_watch *w = xcalloc(1, sizeof *w);
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        w->fd = ci ? ci->connect_fd : -1;
        w->phase = WATCH_HEADER;
        w->t_phase = clock_now_s();
        w->next = s->watches;
        if (s->watches) s->watches->prev = w;
        s->watches = w;
        *socket_context = w;
    } else if (*socket_context) {
        struct conn_watch *w = *socket_context;
        if (w->prev) w->prev->next = w->next;
        else s->watches = w->next;
        if (w->next) w->next->prev = w->prev;
        free(w);
        *socket_context = NULL;
    }
    pthread_mutex_unlock(&s->watch_mu);
}

static void *sweeper_main(void *arg)
{
    struct server *s = arg;
    while (!atomic_load(&s->sweeper_stop)) {
        struct timespec ts = { 0, 200000000 };
        nanosleep(&ts, NULL);
        double now = clock_now_s();
        pthread_mutex_lock(&s->watch_mu);
        for (struct conn_watch *w = s->watches; w; w = w->next) {
            if (w->cut || w->fd < 0) continue;
            double age = now - w->t_phase;
            const char *why = NULL;
            // An idle connection (no byte of a next request) is MHD's to close after http_timeout_s;
            // a header is timed from its first byte, however slowly the rest comes.
            if (w->phase == WATCH_HEADER && !w->t_header && rx_bytes(w->fd) > w->rx_base) w->t_header = now;
            if (w->phase == WATCH_HEADER && w->t_header && now - w->t_header > s->cfg.header_timeout_s)
                why = "request header incomplete";
            else if (w->phase == WATCH_BODY && age > BODY_RATE_GRACE_S && (double)w->body_bytes < s->cfg.body_min_rate * age)
                why = "request body below the minimum rate";
            else if (w->phase == WATCH_LINGER && age > LINGER_S)
                why = "answered, and the client still sends its body";
            if (!why) continue;
            w->cut = true;
            LOG_DEBUG("closing a connection: %s after %.1f s", why, age);
            shutdown(w->fd, SHUT_RDWR);
        }
        pthread_mutex_unlock(&s->watch_mu);
    }
    return NULL;
}

/* ==== Request workers ==== */

/* The worker's thread: answers a request that needs the model, with the connection suspended. */
static void *worker_main(void *arg)
{
    struct req *r = arg;
    struct server *s = r->s;
    r->deferred = true;
    atomic_fetch_add(&s->n_active, 1);
    enum MHD_Result ret = dispatch(r);
    atomic_fetch_sub(&s->n_active, 1);
    pthread_mutex_lock(&r->hand_mu);
    r->answer_ret = ret;
    r->hand = HAND_ANSWERED;
    resume(r);
    pthread_mutex_unlock(&r->hand_mu);
    req_unref(r);
    atomic_fetch_sub(&s->n_workers, 1);
    return NULL;
}

static enum MHD_Result start_worker(struct req *r)
{
    struct server *s = r->s;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    atomic_fetch_add(&r->refs, 1);
    atomic_fetch_add(&s->n_workers, 1);
    r->hand = HAND_WORKING;
    suspend(r);
    pthread_t t;
    int rc = pthread_create(&t, &at, worker_main, r);
    pthread_attr_destroy(&at);
    if (rc) {   // no thread: answer on this one rather than fail the request
        LOG_WARN("req-%llu: cannot start a worker thread (%s)", (unsigned long long)r->id, strerror(rc));
        resume(r);
        atomic_fetch_sub(&s->n_workers, 1);
        atomic_fetch_sub(&r->refs, 1);
        r->hand = HAND_QUEUED;
        struct api_error e = api_error_make(STATUS_EBUSY, NULL, "the server is out of threads; retry later");
        return srv_send_error(r, &e);
    }
    return MHD_YES;
}

/* ==== The access handler ==== */

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool has_ctl(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) return true;
    return false;
}

/* Decodes %HH like MHD's default, but never into a NUL or another control byte: those become
 * 0x01 so that on_request can refuse the path instead of acting on a truncated one. */
static size_t unescape(void *cls, struct MHD_Connection *c, char *str)
{
    char *w = str;
    for (const char *p = str; *p; p++) {
        int hi, lo;
        if (*p == '%' && (hi = hexval(p[1])) >= 0 && (lo = hexval(p[2])) >= 0) {
            unsigned char b = (unsigned char)(hi * 16 + lo);
            *w++ = (char)(b < 0x20 || b == 0x7f ? 0x01 : b);
            p += 2;
        } else *w++ = *p;
    }
    *w = 0;
    return (size_t)(w - str);
}

struct framing { int n_cl, n_te; const char *te; };

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct framing *f = cls;
    if (!strcasecmp(key, "Content-Length")) f->n_cl++;
    if (!strcasecmp(key, "Transfer-Encoding")) f->n_te++, f->te = value;
    return MHD_YES;
}

/* ==== Request head bytes ==== */

/* libmicrohttpd 0.9 parses the request head in place and hands out C strings: each line end
 * becomes one NUL per byte (CRLF two, a bare LF one), each header's colon a NUL, and a NUL sent
 * inside a value silently cuts it ("Bearer KEY\0junk" reads as "Bearer KEY"). So the head is read
 * where MHD left it, [method, method + header size): after each value only its line end may come
 * before the next header's name (anything else was hidden behind a NUL, or is an obs-fold
 * continuation, which RFC 9112 5.2 lets a server refuse), and every line end must be as long as
 * the request line's, which MHD parses by length and so is exact: a NUL sent right before a line
 * end shows as one byte too many. Mixed line ends are refused with it (a proxy may split such a
 * head differently). The one shape this cannot see: a NUL right before a bare LF in a head whose
 * other lines all end in CRLF, since "\0\n" and "\r\n" leave the same two NULs. */
struct head_walk {
    const char *at;    // the previous line's value ended here: its line end comes next
    const char *end;   // the head's end
    size_t      eol;   // bytes per line end: 1 or 2
    const char *why;   // the first fault found
};

static bool in_head(const char *p, const char *lo, const char *hi)
{
    return (uintptr_t)p >= (uintptr_t)lo && (uintptr_t)p <= (uintptr_t)hi;
}

/* [p, q) is one line end: exactly n bytes, all NULs. */
static bool is_line_end(const char *p, const char *q, size_t n)
{
    if ((uintptr_t)q < (uintptr_t)p || (size_t)(q - p) != n) return false;
    for (; p < q; p++)
        if (*p) return false;
    return true;
}

static enum MHD_Result walk_header(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
                                   const char *value, size_t value_size)
{
    struct head_walk *w = cls;
    if (!in_head(key, w->at, w->end) || !in_head(value, key, w->end) || !in_head(value + value_size, value, w->end)) {
        w->why = "a header line is folded onto the next (obs-fold)";
        return MHD_NO;
    }
    if (!is_line_end(w->at, key, w->eol)) {
        w->why = "the request head holds a NUL byte, a folded line or mixed line ends";
        return MHD_NO;
    }
    if (!key_size || (uintptr_t)(key + key_size) >= (uintptr_t)value || key[key_size]) {
        w->why = "a header line has no name";
        return MHD_NO;
    }
    for (const char *p = key + key_size + 1; p < value; p++)   // the colon (a NUL now), then blanks
        if (*p != ' ' && *p != '\t') {
            w->why = "the request head holds a NUL byte";
            return MHD_NO;
        }
    w->at = value + value_size;
    return MHD_YES;
}

/* NULL when the head holds no NUL byte that MHD's parsing hid, else why. */
static const char *head_bytes_error(struct req *r, const char *method, const char *version)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    if (!ci || !method || !version) return NULL;
    const char *end = method + ci->header_size;
    const char *line_end = version + strlen(version);
    if (!in_head(version, method, end) || !in_head(line_end, version, end)) return NULL;   // cannot tell
    size_t n = 0;
    while (line_end + n < end && !line_end[n]) n++;
    // the request line's end; without header lines the empty line's end follows at once
    bool no_headers = line_end + n == end;
    if (no_headers ? n != 2 && n != 4 : n != 1 && n != 2) return "the request line ends in a NUL byte or mixed line ends";
    struct head_walk w = { line_end, end, no_headers ? n / 2 : n, NULL };
    MHD_get_connection_values_n(r->conn, MHD_HEADER_KIND, walk_header, &w);
    if (!w.why && !is_line_end(w.at, end, 2 * w.eol)) w.why = "the request head holds a NUL byte or mixed line ends";
    return w.why;
}

/* MHD's early URI logger: the request target before MHD unescapes it in place. A NUL sent in it
 * would cut the path MHD hands out ("/metrics\0x" reads as "/metrics"); framing_error compares
 * its length with where the request line puts the version. */
static void *note_raw_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    struct conn_watch *w = watch_of(conn);
    if (w) {
        w->uri_raw = uri;
        w->uri_raw_len = uri ? strlen(uri) : 0;
    }
    return NULL;
}

static bool raw_uri_has_nul(struct req *r, const char *url, const char *version)
{
    const struct conn_watch *w = r->watch;
    if (!w || !w->uri_raw || w->uri_raw != url || (uintptr_t)version <= (uintptr_t)url) return false;
    return w->uri_raw + w->uri_raw_len != version - 1;   // MHD ends the target at the space before the version
}

/* RFC 9112 framing and header sanity known before the body: a 400/501 that closes the
 * connection, since what follows on it cannot be trusted to be the next request. */
static bool framing_error(struct req *r, const char *method, const char *url, const char *version, struct api_error *e)
{
    struct framing f = {0};
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, count_framing, &f);
    if (has_ctl(url, strlen(url)) || raw_uri_has_nul(r, url, version)) {
        *e = api_error_kind_make(API_ERROR_PROTOCOL, "the request path holds a NUL or control byte");
        return true;
    }
    const char *why = head_bytes_error(r, method, version);
    if (why) {
        *e = api_error_kind_make(API_ERROR_PROTOCOL, "%s", why);
        return true;
    }
    if (f.n_cl > 1) {
        *e = api_error_kind_make(API_ERROR_PROTOCOL, "more than one Content-Length header");
        return true;
    }
    if (f.n_cl && f.n_te) {
        *e = api_error_kind_make(API_ERROR_PROTOCOL, "both Content-Length and Transfer-Encoding");
        return true;
    }
    if (f.n_te > 1 || (f.te && strcasecmp(f.te, "chunked"))) {
        *e = api_error_kind_make(API_ERROR_UNSUPPORTED, "Transfer-Encoding '%s' is not supported (only chunked)",
                                 f.te ? f.te : "");
        return true;
    }
    if (!strcmp(version, MHD_HTTP_VERSION_1_1) &&
        !MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST)) {
        *e = api_error_kind_make(API_ERROR_PROTOCOL, "HTTP/1.1 request without a Host header");
        return true;
    }
    static const char *const auth_headers[] = { "x-api-key", "Authorization" };
    for (int i = 0; i < 2; i++) {
        const char *v;
        size_t n;
        if (MHD_lookup_connection_value_n(r->conn, MHD_HEADER_KIND, auth_headers[i], strlen(auth_headers[i]), &v, &n) &&
            (has_ctl(v, n) || strlen(v) != n)) {
            *e = api_error_kind_make(API_ERROR_PROTOCOL, "the %s header holds a NUL or control byte", auth_headers[i]);
            return true;
        }
    }
    return false;
}

/* Answers on the socket itself and ends our side of it. MHD 0.9 queues a response only before a
 * body is read or after all of it, so a chunked body over the limit would be read to its end
 * before its 413 (under load, past the client's patience), and a body that is too slow could only
 * be dropped. Nothing has been written on the connection yet (at most a 100 Continue, already
 * sent), and a few hundred bytes fit the empty send buffer whole. linger: the rest of the body is
 * read and dropped for LINGER_S (the sweeper then cuts it), else MHD closes the connection now. */
static enum MHD_Result answer_mid_body(struct req *r, const struct api_error *e, bool linger)
{
    int code = api_error_http(e);
    struct strbuf body = {0}, msg = {0};
    api_error_body(&body, r->api, e);
    char date[64];
    struct tm tm;
    time_t now = time(NULL);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", gmtime_r(&now, &tm));
    const char *reason = MHD_get_reason_phrase_for((unsigned)code);
    strbuf_printf(&msg, "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                        "X-Request-Id: req-%llu\r\n", code, reason ? reason : "", date, body.len, (unsigned long long)r->id);
    if (r->s->cors_origin) strbuf_printf(&msg, "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n", r->s->cors_origin);
    strbuf_puts(&msg, "Connection: close\r\n\r\n");
    strbuf_append(&msg, body.data, body.len);
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci) {
        size_t off = 0;
        while (off < msg.len) {
            ssize_t n = send(ci->connect_fd, msg.data + off, msg.len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n <= 0 && errno == EINTR) continue;
            if (n <= 0) break;   // the client is gone or not reading: it loses the answer only
            off += (size_t)n;
        }
        shutdown(ci->connect_fd, SHUT_WR);
    }
    strbuf_free(&msg);
    strbuf_free(&body);
    LOG_WARN("req-%llu: %d %s", (unsigned long long)r->id, code, e->message);
    r->http_status = code;
    if (!linger) return MHD_NO;
    watch_set(r->s, r->watch, WATCH_LINGER);
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    struct server *s = cls;
    struct req *r = *con_cls;
    struct api_error e;
    if (!r) {
        r = xcalloc(1, sizeof *r);
        atomic_init(&r->refs, 1);
        pthread_mutex_init(&r->hand_mu, NULL);
        r->s = s;
        r->conn = conn;
        r->watch = watch_of(conn);
        r->id = atomic_fetch_add(&s->next_id, 1) + 1;
        r->t0_s = clock_now_s();
        snprintf(r->method, sizeof r->method, "%s", method);
        snprintf(r->path, sizeof r->path, "%s", url);
        *con_cls = r;
        watch_set(s, r->watch, WATCH_BODY);
        metrics_inflight(s->m, 1);
        r->api = !strncmp(url, "/v1/messages", 12) ? API_ANTHROPIC : !strncmp(url, "/api/", 5) ? API_OLLAMA : API_OPENAI;
        if (framing_error(r, method, url, version, &e)) return srv_send_error(r, &e);
        // HEAD is GET without the body (MHD drops the body of a HEAD response)
        const char *as = !strcmp(method, "HEAD") ? "GET" : method;
        bool path_known = false;
        for (int i = 0; i < N_ROUTES; i++) {
            if (strcmp(routes[i].path, url)) continue;
            path_known = true;
            if (!strcmp(routes[i].method, as)) r->route = routes[i].route;
        }
        if (!strncmp(url, "/v1/models/", 11) && url[11]) {   // GET /v1/models/{id}
            path_known = true;
            if (!strcmp(as, "GET")) r->route = ROUTE_MODELS;
        }
        // Errors known from the headers are answered after the body has been read and dropped:
        // answering before would make MHD close the connection, which breaks keep-alive clients.
        if (!strcmp(method, "OPTIONS") && s->cors_origin && path_known) r->is_preflight = true;
        else if (!path_known) {
            r->early_err = api_error_kind_make(API_ERROR_NO_ROUTE, "no route %s %s", method, url);
            r->has_early = true;
        } else if (r->route == ROUTE_NONE) {
            r->early_err = api_error_kind_make(API_ERROR_METHOD, "method %s is not allowed on %s", method, url);
            r->has_early = true;
        } else if (atomic_load(&s->shutting_down)) {
            r->early_err = api_error_kind_make(API_ERROR_SHUTDOWN, "the server is shutting down");
            r->has_early = true;
        } else if (r->route != ROUTE_HEALTH && r->route != ROUTE_METRICS && !auth_ok(r)) {
            r->early_err = api_error_make(STATUS_EAUTH, NULL, "missing or invalid API key (send 'Authorization: Bearer KEY' or 'x-api-key: KEY')");
            r->has_early = true;
        }
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > s->cfg.max_body_bytes) {
            e = api_error_kind_make(API_ERROR_BODY_TOO_LARGE, "request body of %s bytes is over the limit of %zu bytes",
                                    cl, s->cfg.max_body_bytes);
            return srv_send_error(r, &e);
        }
        return MHD_YES;
    }
    if (r->hand == HAND_ANSWERED) {   // resumed by the worker: queue what it answered
        r->hand = HAND_QUEUED;
        if (!r->pending) return MHD_NO;   // no answer (the client left): close
        struct MHD_Response *resp = r->pending;
        r->pending = NULL;
        enum MHD_Result ret = MHD_queue_response(conn, (unsigned)r->pending_code, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    if (r->hand != HAND_NONE) return MHD_YES;
    if (r->http_status) {   // already answered (early error, or a 413 mid-body); discard the rest
        if (r->too_large && !*upload_size) return MHD_NO;   // the 413 went out on the socket: close
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        if (r->watch) {
            pthread_mutex_lock(&s->watch_mu);
            r->watch->body_bytes += *upload_size;
            pthread_mutex_unlock(&s->watch_mu);
        }
        r->n_body += *upload_size;
        r->too_large = r->n_body > s->cfg.max_body_bytes;
        r->too_slow = clock_now_s() - r->t0_s > s->cfg.body_timeout_s;
        if (!r->too_large && !r->too_slow && !r->has_early && !r->is_preflight) strbuf_append(&r->body, upload, *upload_size);
        *upload_size = 0;
        // answered now, not once the body ends: a client that sends too much or too slowly
        // learns it at once, and no poll thread keeps reading for it
        if (r->too_large) {
            e = api_error_kind_make(API_ERROR_BODY_TOO_LARGE, "request body is over the limit of %zu bytes", s->cfg.max_body_bytes);
            return answer_mid_body(r, &e, true);
        }
        if (r->too_slow) {
            e = api_error_kind_make(API_ERROR_TIMEOUT, "the request body took longer than %d s to arrive", s->cfg.body_timeout_s);
            return answer_mid_body(r, &e, false);   // a slow client has little unread: close now
        }
        return MHD_YES;
    }
    watch_set(s, r->watch, WATCH_BUSY);
    if (r->has_early) return srv_send_error(r, &r->early_err);
    if (r->is_preflight) {
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (!resp) return MHD_NO;
        add_common_headers(r, resp);
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
        MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                                "Authorization, Content-Type, x-api-key, anthropic-version, anthropic-beta");
        MHD_add_response_header(resp, "Access-Control-Max-Age", "86400");
        return queue(r, 204, resp);
    }
    // Health, metrics and models answer here at once; anything that may wait on the model goes
    // to a worker so that MHD's threads stay free.
    if (r->route == ROUTE_HEALTH || r->route == ROUTE_METRICS || r->route == ROUTE_MODELS || r->route == ROUTE_OLLAMA_TAGS ||
        r->route == ROUTE_OLLAMA_PS || r->route == ROUTE_OLLAMA_VERSION || r->route == ROUTE_ROOT)
        return dispatch(r);
    return start_worker(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    struct server *s = cls;
    struct req *r = *con_cls;
    if (!r) return;
    *con_cls = NULL;
    unregister(r);
    bool cut = false;
    if (r->watch) {
        pthread_mutex_lock(&s->watch_mu);
        cut = r->watch->cut;
        pthread_mutex_unlock(&s->watch_mu);
        watch_set(s, r->watch, WATCH_HEADER);   // keep-alive: the next request's header timer
    }
    // anything but a clean end, a timeout, a cut or our own shutdown is the client's doing (a
    // failed write to a closed socket shows up as TERMINATED_WITH_ERROR)
    bool client_gone = r->peer_gone ||
                       (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && toe != MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN &&
                        toe != MHD_REQUEST_TERMINATED_TIMEOUT_REACHED && !r->too_slow && !r->too_large && !cut);
    if (r->job) {
        if (!job_done(r->job)) job_cancel(r->job);
        for (int i = 0; i < job_n_choices(r->job); i++) {
            struct job_choice_info c;
            job_choice_info(r->job, i, &c);
            r->n_prompt += c.n_prompt;
            r->n_cached += c.n_cached;
            r->n_generated += c.n_generated;
        }
    }
    // What happened, as logs and metrics count it: 499 (nginx's "client closed the request") for a
    // client that left, 408 for one cut as too slow, else what was answered.
    int code = r->http_status ? r->http_status : 500;
    if (!r->too_large && (cut || toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED)) code = 408;
    else if (client_gone) code = 499;
    metrics_request(s->m, r->route ? r->path : "other", code);
    metrics_tokens(s->m, r->n_prompt, r->n_cached, r->n_generated);
    metrics_inflight(s->m, -1);
    double dur = clock_now_s() - r->t0_s;
    if (r->job) {
        double dec = 0;
        struct job_choice_info c0;
        job_choice_info(r->job, 0, &c0);
        if (c0.n_generated > 1 && c0.t_last_s > c0.t_first_s) dec = (c0.n_generated - 1) / (c0.t_last_s - c0.t_first_s);
        // ttft split: the request's arrival to the job (body, parse, template, tokenizer), the engine's
        // queue, then admission to the first token (prefix restore, prefill, first sample)
        LOG_INFO("req-%llu %s %s %d%s prompt=%d cached=%d gen=%d ttft=%.1fms (request %.1f, queue %.1f) "
                 "decode=%.1ftok/s time=%.3fs",
                 (unsigned long long)r->id, r->method, r->path, code, client_gone ? " (client gone)" : "",
                 r->n_prompt, r->n_cached, r->n_generated, r->ttft_s * 1e3, (c0.t_start_s - r->t0_s) * 1e3,
                 c0.t_queued_s * 1e3, dec, dur);
    } else {
        LOG_INFO("req-%llu %s %s %d time=%.3fs", (unsigned long long)r->id, r->method, r->path, code, dur);
    }
    req_unref(r);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    if (log_get_level() > LOG_LEVEL_DEBUG) return;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    while (n && buf[n - 1] == '\n') buf[--n] = 0;
    LOG_DEBUG("microhttpd: %s", buf);
}

/* ==== Lifecycle ==== */

enum status server_new(const struct server_cfg *cfg, struct server **out)
{
    struct server *s = xcalloc(1, sizeof *s);
    s->cfg = *cfg;
    if (!s->cfg.max_body_bytes) s->cfg.max_body_bytes = 32u << 20;
    if (s->cfg.http_timeout_s <= 0) s->cfg.http_timeout_s = 60;
    if (s->cfg.body_timeout_s <= 0) s->cfg.body_timeout_s = 60;
    if (s->cfg.keepalive_s <= 0) s->cfg.keepalive_s = 5;
    if (s->cfg.stall_s <= 0) s->cfg.stall_s = 30;
    if (s->cfg.shutdown_grace_s < 0) s->cfg.shutdown_grace_s = 0;
    if (s->cfg.max_connections <= 0) s->cfg.max_connections = 4096;
    if (s->cfg.per_ip_connections <= 0) s->cfg.per_ip_connections = 256;
    if (s->cfg.header_timeout_s <= 0) s->cfg.header_timeout_s = 10;
    if (s->cfg.body_min_rate <= 0) s->cfg.body_min_rate = 1024;
    s->host = xstrdup(cfg->host ? cfg->host : "127.0.0.1");
    s->grammars = grammar_cache_new(256);
    s->api_key = cfg->api_key && *cfg->api_key ? xstrdup(cfg->api_key) : NULL;
    s->cors_origin = cfg->cors_origin ? xstrdup(cfg->cors_origin) : NULL;
    served_names(s, cfg->served_model_name);
    s->m = metrics_new();
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->watch_mu, NULL);
    s->reasoning_mode = -1;
    enum status st = STATUS_EINVAL;
    if (cfg->reasoning_parser) {
        if (!strcmp(cfg->reasoning_parser, "none")) s->reasoning_mode = 0;
        else if (!strcmp(cfg->reasoning_parser, "qwen3") || !strcmp(cfg->reasoning_parser, "deepseek_r1") ||
                 !strcmp(cfg->reasoning_parser, "think")) s->reasoning_mode = 1;
        else if (strcmp(cfg->reasoning_parser, "auto")) {
            LOG_ERR("unknown --reasoning-parser '%s' (auto, none, qwen3, deepseek_r1)", cfg->reasoning_parser);
            goto out_free;
        }
    }
    if (cfg->tool_parser && strcmp(cfg->tool_parser, "auto")) {
        if (!tool_family_from_name(cfg->tool_parser, &s->family)) {
            LOG_ERR("unknown --tool-parser '%s' (hermes, qwen3, qwen3_coder, qwen3.5, llama3, mistral, deepseek_v3, none)",
                    cfg->tool_parser);
            goto out_free;
        }
        s->family_forced = true;
    }
    json_error_t jerr;
    s->kwargs_default = cfg->chat_template_kwargs ? pyjson_loads(cfg->chat_template_kwargs, 0, &jerr) : json_object();
    if (!json_is_object(s->kwargs_default)) {
        LOG_ERR("--chat-template-kwargs must be a JSON object");
        goto out_free;
    }
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)cfg->port) };
    if (inet_pton(AF_INET, s->host, &addr.sin_addr) != 1) {
        LOG_ERR("--host %s: not an IPv4 address", s->host);
        st = STATUS_EINVAL;
        goto out_free;
    }
    s->d = MHD_start_daemon(MHD_USE_POLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG,
                            (uint16_t)cfg->port, NULL, NULL, on_request, s,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                            MHD_OPTION_THREAD_POOL_SIZE, (unsigned)MHD_THREADS,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
                            MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
                            MHD_OPTION_URI_LOG_CALLBACK, note_raw_uri, NULL,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->cfg.http_timeout_s,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->cfg.max_connections,
                            MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)s->cfg.per_ip_connections,
                            MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                            MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1,
                            MHD_OPTION_END);
    if (!s->d) {
        LOG_ERR("cannot listen on %s:%d (port in use?)", s->host, cfg->port);
        st = STATUS_EIO;
        goto out_free;
    }
    if (pthread_create(&s->sweeper, NULL, sweeper_main, s) != 0) {
        LOG_ERR("cannot start the connection sweeper thread");
        st = STATUS_EIO;
        goto out_free;
    }
    s->sweeper_started = true;
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : cfg->port;
    LOG_INFO("listening on http://%s:%d", s->host, s->port);
    *out = s;
    return STATUS_OK;
out_free:
    server_free(s);
    return st;
}

enum status server_set_gen(struct server *s, struct gen *g)
{
    if (!s->served_name) {
        s->served_name = xstrdup(g->model_id);
        s->names = xrealloc(s->names, (size_t)(s->n_names + 1) * sizeof *s->names);
        s->names[s->n_names++] = xstrdup(g->model_id);
    }
    atomic_store(&s->g, g);
    LOG_INFO("serving model '%s' (context %d tokens, tool parser %s, reasoning %s)", s->served_name, g->n_ctx,
             tool_family_name(srv_tool_family(s)), srv_reasoning(s) ? "on" : "off");
    return STATUS_OK;
}

int server_port(const struct server *s) { return s->port; }

void server_shutdown(struct server *s)
{
    if (!s->d) return;
    atomic_store(&s->shutting_down, true);   // new requests get 503; streams end at their next poll
    double t0 = clock_now_s();
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int n = s->n_live;
        pthread_mutex_unlock(&s->mu);
        if (!n || clock_now_s() - t0 > s->cfg.shutdown_grace_s) break;
        struct timespec ts = { 0, 50000000 };
        nanosleep(&ts, NULL);
    }
    atomic_store(&s->cancel_all, true);
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n_live; i++)
        if (s->live[i]->job) job_cancel(s->live[i]->job);
    pthread_mutex_unlock(&s->mu);
    // let cancelled streams write their last chunk before connections are torn down; MHD must not
    // be stopped with a suspended connection, and every worker resumes its own soon after cancel_all
    for (t0 = clock_now_s(); clock_now_s() - t0 < 10;) {
        pthread_mutex_lock(&s->mu);
        int n = s->n_live;
        pthread_mutex_unlock(&s->mu);
        if (!n && !atomic_load(&s->n_suspended)) break;
        struct timespec ts = { 0, 20000000 };
        nanosleep(&ts, NULL);
    }
    if (atomic_load(&s->n_suspended)) LOG_WARN("%d connections still suspended at shutdown", atomic_load(&s->n_suspended));
    MHD_stop_daemon(s->d);
    s->d = NULL;
    // workers still pumping a stream saw their request end in MHD_stop_daemon; wait for them to let go
    for (t0 = clock_now_s(); atomic_load(&s->n_workers) && clock_now_s() - t0 < 5;) {
        struct timespec ts = { 0, 10000000 };
        nanosleep(&ts, NULL);
    }
    LOG_INFO("server stopped");
}

void server_free(struct server *s)
{
    if (!s) return;
    if (s->d) server_shutdown(s);
    if (s->sweeper_started) {
        atomic_store(&s->sweeper_stop, true);
        pthread_join(s->sweeper, NULL);
    }
    pthread_mutex_destroy(&s->watch_mu);
    json_decref(s->kwargs_default);
    grammar_cache_free(s->grammars);
    metrics_free(s->m);
    pthread_mutex_destroy(&s->mu);
    free(s->live);
    free(s->host);
    free(s->api_key);
    free(s->cors_origin);
    free(s->served_name);
    for (int i = 0; i < s->n_names; i++) free(s->names[i]);
    free(s->names);
    free(s);
}
