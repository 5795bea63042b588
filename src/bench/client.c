/* client: streaming chat completions over libcurl, parsed with bench/sse.c (see client.h).
 *
 * Design note: timing is taken in libcurl's write callback, the first place our process sees the
 * bytes; curl buffers nothing of its own for a chunked response, so the first-token time is the
 * arrival of the chunk that carries it. Stall detection runs in the progress callback, which
 * libcurl calls about once a second even when no data flows.
 */
#include "bench/client.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "bench/sse.h"

#define ERR_BODY_MAX 2048

struct stream_ctx {
    struct chat_result      *r;
    const struct bench_http *h;
    CURL                    *curl;
    struct sse_parser        sse;
    struct strbuf            err_body;    // body of an HTTP error response (bounded)
    int64_t                  last_rx_ns;  // last chunk received (or start)
    bool                     stalled;
};

void client_global_init(void)
{
    CHECK(curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK, "curl_global_init failed");
}

void client_global_cleanup(void)
{
    curl_global_cleanup();
}

static void set_error(struct chat_result *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(struct chat_result *r, const char *fmt, ...)
{
    if (r->error) return;   // the first reason is the real one
    struct strbuf sb = {0};
    va_list ap;
    va_start(ap, fmt);
    char tmp[600];
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    // one line: newlines from server bodies would break the table and the log
    for (char *p = tmp; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t') *p = ' ';
    strbuf_puts(&sb, tmp);
    r->error = strbuf_take(&sb);
}

// "http://h:1/v1/" -> "http://h:1" into out.
static void base_url(const char *url, struct strbuf *out)
{
    strbuf_clear(out);
    strbuf_puts(out, url);
    while (out->len && out->data[out->len - 1] == '/') out->data[--out->len] = '\0';
    if (out->len >= 3 && !strcmp(out->data + out->len - 3, "/v1")) {
        out->len -= 3;
        out->data[out->len] = '\0';
    }
}

static void on_delta_time(struct chat_result *r)
{
    int64_t now = clock_now_ns();
    if (!r->t_first_ns) r->t_first_ns = now;
    r->t_last_ns = now;
}

static void take_usage(struct chat_result *r, const json_t *usage)
{
    if (!json_is_object(usage)) return;
    const json_t *pt = json_object_get(usage, "prompt_tokens");
    const json_t *ct = json_object_get(usage, "completion_tokens");
    if (json_is_integer(pt)) r->prompt_tokens = (int)json_integer_value(pt);
    if (json_is_integer(ct)) r->completion_tokens = (int)json_integer_value(ct);
    const json_t *det = json_object_get(usage, "completion_tokens_details");
    const json_t *rt = json_is_object(det) ? json_object_get(det, "reasoning_tokens") : NULL;
    if (json_is_integer(rt)) r->reasoning_tokens = (int)json_integer_value(rt);
    const json_t *pdet = json_object_get(usage, "prompt_tokens_details");
    const json_t *cached = json_is_object(pdet) ? json_object_get(pdet, "cached_tokens") : NULL;
    if (json_is_integer(cached)) r->cached_tokens = (int)json_integer_value(cached);
    r->got_usage = json_is_integer(pt) || json_is_integer(ct);
}

static void take_tool_deltas(struct chat_result *r, const json_t *tcs)
{
    size_t i;
    const json_t *tc;
    json_array_foreach(tcs, i, tc) {
        const json_t *jidx = json_object_get(tc, "index");
        int idx = json_is_integer(jidx) ? (int)json_integer_value(jidx) : (int)i;
        if (idx < 0 || idx >= CHAT_TOOL_CALLS_MAX) continue;
        if (idx >= r->n_tool_calls) r->n_tool_calls = idx + 1;
        const json_t *fn = json_object_get(tc, "function");
        const json_t *name = json_object_get(fn, "name");
        const json_t *args = json_object_get(fn, "arguments");
        if (json_is_string(name)) strbuf_puts(&r->tool_calls[idx].name, json_string_value(name));
        if (json_is_string(args)) strbuf_puts(&r->tool_calls[idx].arguments, json_string_value(args));
        r->n_tool_deltas++;
        on_delta_time(r);
    }
}

static enum status on_event(void *ud, const char *event, const char *data, size_t len)
{
    struct stream_ctx *c = ud;
    struct chat_result *r = c->r;
    if (r->got_done) return STATUS_OK;   // nothing after [DONE] counts
    if (!strcmp(data, "[DONE]")) {
        r->got_done = true;
        return STATUS_OK;
    }
    json_error_t jerr;
    json_t *root = json_loadb(data, len, 0, &jerr);
    if (!root || !json_is_object(root)) {
        set_error(r, "malformed SSE: event data is not a JSON object (%s): %.80s",
                  root ? "not an object" : jerr.text, data);
        json_decref(root);
        return STATUS_EFORMAT;
    }
    const json_t *err = json_object_get(root, "error");
    if (err) {
        const json_t *msg = json_is_object(err) ? json_object_get(err, "message") : err;
        set_error(r, "server error event: %.200s", json_is_string(msg) ? json_string_value(msg) : "(no message)");
        json_decref(root);
        return STATUS_EIO;
    }
    const json_t *choices = json_object_get(root, "choices");
    const json_t *ch = json_is_array(choices) ? json_array_get(choices, 0) : NULL;
    if (ch) {
        const json_t *delta = json_object_get(ch, "delta");
        const json_t *content = json_object_get(delta, "content");
        const json_t *reasoning = json_object_get(delta, "reasoning_content");
        if (!json_is_string(reasoning)) reasoning = json_object_get(delta, "reasoning");
        const json_t *tcs = json_object_get(delta, "tool_calls");
        if (json_is_string(reasoning) && json_string_length(reasoning)) {
            r->n_reasoning_deltas++;
            on_delta_time(r);
        }
        if (json_is_string(content) && json_string_length(content)) {
            r->n_content_deltas++;
            strbuf_append(&r->content, json_string_value(content), json_string_length(content));
            on_delta_time(r);
        }
        if (json_is_array(tcs)) take_tool_deltas(r, tcs);
        const json_t *fr = json_object_get(ch, "finish_reason");
        if (json_is_string(fr)) snprintf(r->finish_reason, sizeof r->finish_reason, "%s", json_string_value(fr));
    }
    take_usage(r, json_object_get(root, "usage"));
    json_decref(root);
    (void)event;
    return STATUS_OK;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct stream_ctx *c = ud;
    size_t n = size * nmemb;
    c->last_rx_ns = clock_now_ns();
    if (!c->r->http_status) {
        long code = 0;
        curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &code);
        c->r->http_status = (int)code;
    }
    if (c->r->http_status >= 400) {
        if (c->err_body.len < ERR_BODY_MAX) strbuf_append(&c->err_body, ptr, n < ERR_BODY_MAX ? n : ERR_BODY_MAX);
        return n;
    }
    return sse_feed(&c->sse, ptr, n) == STATUS_OK ? n : 0;
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    struct stream_ctx *c = ud;
    if (c->h->stall_s > 0 && (double)(clock_now_ns() - c->last_rx_ns) > c->h->stall_s * 1e9) {
        c->stalled = true;
        return 1;
    }
    return 0;
}

static struct curl_slist *make_headers(const struct bench_http *h, bool json_body)
{
    struct curl_slist *hd = NULL;
    if (json_body) hd = curl_slist_append(hd, "Content-Type: application/json");
    // no "Expect: 100-continue" for large bodies: a server that ignores it would add up to a
    // second of curl's waiting to the measured TTFT of long prompts
    hd = curl_slist_append(hd, "Expect:");
    hd = curl_slist_append(hd, "Accept: text/event-stream, application/json");
    if (h->api_key && *h->api_key) {
        struct strbuf sb = {0};
        strbuf_printf(&sb, "Authorization: Bearer %s", h->api_key);
        hd = curl_slist_append(hd, sb.data);
        strbuf_free(&sb);
    }
    return hd;
}

// Reason for a failed transfer, in the words a benchmark reader wants.
static void transfer_error(struct stream_ctx *c, CURLcode res, const char *errbuf)
{
    struct chat_result *r = c->r;
    const char *detail = errbuf[0] ? errbuf : curl_easy_strerror(res);
    switch (res) {
    case CURLE_ABORTED_BY_CALLBACK:
        if (c->stalled) set_error(r, "stalled: no data for %.0f s", c->h->stall_s);
        else set_error(r, "aborted: %s", detail);
        break;
    case CURLE_OPERATION_TIMEDOUT:
        set_error(r, "timeout: no complete response within %.0f s (%s)", c->h->timeout_s, detail);
        break;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        set_error(r, "unreachable: %s", detail);
        break;
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
        set_error(r, "connection lost: %s", detail);
        break;
    default:
        set_error(r, "transfer failed: %s", detail);   // a write error already set its reason
        break;
    }
}

enum status client_chat(const struct bench_http *h, const char *body, struct chat_result *out)
{
    memset(out, 0, sizeof *out);
    out->prompt_tokens = out->completion_tokens = out->reasoning_tokens = out->cached_tokens = -1;
    struct stream_ctx c = { .r = out, .h = h };
    sse_init(&c.sse, on_event, &c);
    struct strbuf url = {0};
    base_url(h->base_url, &url);
    strbuf_puts(&url, "/v1/chat/completions");
    char errbuf[CURL_ERROR_SIZE] = "";

    c.curl = curl_easy_init();
    CHECK(c.curl, "curl_easy_init failed");
    struct curl_slist *hd = make_headers(h, true);
    curl_easy_setopt(c.curl, CURLOPT_URL, url.data);
    curl_easy_setopt(c.curl, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(c.curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c.curl, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c.curl, CURLOPT_WRITEDATA, &c);
    curl_easy_setopt(c.curl, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c.curl, CURLOPT_XFERINFODATA, &c);
    curl_easy_setopt(c.curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c.curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c.curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c.curl, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(c.curl, CURLOPT_TIMEOUT_MS, (long)(h->timeout_s * 1000));
    curl_easy_setopt(c.curl, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c.curl, CURLOPT_FOLLOWLOCATION, 0L);   // only the given URL
    curl_easy_setopt(c.curl, CURLOPT_PROTOCOLS_STR, "http,https");

    out->t_start_ns = clock_now_ns();
    c.last_rx_ns = out->t_start_ns;
    CURLcode res = curl_easy_perform(c.curl);
    out->t_end_ns = clock_now_ns();
    long code = 0;
    curl_easy_getinfo(c.curl, CURLINFO_RESPONSE_CODE, &code);
    out->http_status = (int)code;

    if (res == CURLE_OK && out->http_status >= 400) {
        set_error(out, "HTTP %d: %.300s", out->http_status, c.err_body.data ? c.err_body.data : "");
    } else if (res != CURLE_OK) {
        if (out->http_status >= 400)
            set_error(out, "HTTP %d: %.300s", out->http_status, c.err_body.data ? c.err_body.data : "");
        transfer_error(&c, res, errbuf);
    } else {
        sse_finish(&c.sse);   // a last event without its blank line still counts
        if (!out->error && !out->got_done) {
            if (c.sse.n_events == 0) {
                char *ctype = NULL;
                curl_easy_getinfo(c.curl, CURLINFO_CONTENT_TYPE, &ctype);
                set_error(out, "no SSE events in the %d response (content type %s; does the server stream?)",
                          out->http_status, ctype ? ctype : "none");
            }
            else set_error(out, "stream ended without [DONE] (connection closed by the server)");
        }
        if (!out->error && !out->t_first_ns) set_error(out, "stream carried no tokens");
    }
    curl_slist_free_all(hd);
    curl_easy_cleanup(c.curl);
    sse_deinit(&c.sse);
    strbuf_free(&c.err_body);
    strbuf_free(&url);
    return out->error ? STATUS_EIO : STATUS_OK;
}

void chat_result_free(struct chat_result *r)
{
    strbuf_free(&r->content);
    for (int i = 0; i < CHAT_TOOL_CALLS_MAX; i++) {
        strbuf_free(&r->tool_calls[i].name);
        strbuf_free(&r->tool_calls[i].arguments);
    }
    free(r->error);
    r->error = NULL;
}

static size_t on_write_buf(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct strbuf *sb = ud;
    size_t n = size * nmemb;
    if (sb->len < ((size_t)1 << 20)) strbuf_append(sb, ptr, n);
    return n;
}

enum status client_simple(const struct bench_http *h, const char *method, const char *path,
                          const char *body, double timeout_s, int *status, char **resp)
{
    struct strbuf url = {0}, rb = {0};
    base_url(h->base_url, &url);
    strbuf_puts(&url, path);
    CURL *curl = curl_easy_init();
    CHECK(curl, "curl_easy_init failed");
    struct curl_slist *hd = make_headers(h, body != NULL);
    curl_easy_setopt(curl, CURLOPT_URL, url.data);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hd);
    if (!strcmp(method, "POST")) curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body ? body : "");
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_write_buf);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &rb);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)(timeout_s * 1000));
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    CURLcode res = curl_easy_perform(curl);
    long code = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    *status = res == CURLE_OK ? (int)code : 0;
    curl_slist_free_all(hd);
    curl_easy_cleanup(curl);
    strbuf_free(&url);
    if (resp) *resp = res == CURLE_OK ? strbuf_take(&rb) : NULL;
    strbuf_free(&rb);
    return res == CURLE_OK ? STATUS_OK : STATUS_EIO;
}

char *client_first_model(const struct bench_http *h)
{
    int st = 0;
    char *body = NULL;
    if (client_simple(h, "GET", "/v1/models", NULL, 10, &st, &body) != STATUS_OK || st != 200) {
        free(body);
        return NULL;
    }
    json_t *root = json_loads(body, 0, NULL);
    free(body);
    const json_t *data = json_object_get(root, "data");
    const json_t *id = json_object_get(json_array_get(data, 0), "id");
    char *r = json_is_string(id) ? xstrdup(json_string_value(id)) : NULL;
    json_decref(root);
    return r;
}
