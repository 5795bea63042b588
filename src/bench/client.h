/* client: the benchmark's HTTP side. One streaming chat completion per call (libcurl easy
 * handle + bench/sse.c), timed on the monotonic clock: request start, first token, last token,
 * end of stream. Everything that can go wrong with a server (unreachable, HTTP error, stall,
 * malformed SSE, an error event, a stream cut before [DONE], missing usage) becomes
 * chat_result.error, a one-line reason; the call itself never fails the process.
 *
 * Threading: client_global_init() once per process before any thread starts (libcurl's rule);
 * after that any number of threads may each run their own client_chat() (burst mode does).
 * It talks only to h->base_url.
 *
 *     struct chat_result r;  client_chat(&h, body, &r);
 *     if (!r.error) printf("ttft %.1f ms\n", (r.t_first_ns - r.t_start_ns) / 1e6);
 *     chat_result_free(&r);
 */
#ifndef CAIRN_BENCH_CLIENT_H
#define CAIRN_BENCH_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include "base/mem.h"
#include "base/status.h"

struct bench_http {
    const char *base_url;    // "http://host:port" (a trailing "/v1" or "/" is accepted)
    const char *api_key;     // Bearer token, or NULL
    double      timeout_s;   // whole request, connect to last byte
    double      stall_s;     // longest silence allowed between two received chunks
};

#define CHAT_TOOL_CALLS_MAX 16

struct chat_tool_call {
    struct strbuf name;
    struct strbuf arguments;  // concatenated argument deltas (a JSON document when well formed)
};

struct chat_result {
    int64_t t_start_ns;       // request handed to libcurl
    int64_t t_first_ns;       // first delta with content, reasoning or a tool call; 0 if none
    int64_t t_last_ns;        // last such delta
    int64_t t_end_ns;         // transfer finished (or failed)
    int     http_status;      // 0 when no response
    int     n_content_deltas;
    int     n_reasoning_deltas;
    int     n_tool_deltas;
    int     prompt_tokens;        // from usage; -1 when absent
    int     completion_tokens;    // from usage; -1 when absent
    int     reasoning_tokens;     // usage.completion_tokens_details.reasoning_tokens; -1 when absent
    int     cached_tokens;        // usage.prompt_tokens_details.cached_tokens; -1 when absent
    bool    got_done;             // saw "data: [DONE]"
    bool    got_usage;
    char    finish_reason[32];
    struct strbuf content;        // concatenated content deltas
    int     n_tool_calls;
    struct chat_tool_call tool_calls[CHAT_TOOL_CALLS_MAX];
    char   *error;                // heap, one line; NULL when the request succeeded
};

void        client_global_init(void);
void        client_global_cleanup(void);
/* POSTs body (a chat completion request with "stream": true) to /v1/chat/completions. Always
 * fills *out (zeroed first); failure shows as out->error. Returns STATUS_OK or STATUS_EIO. */
enum status client_chat(const struct bench_http *h, const char *body, struct chat_result *out);
void        chat_result_free(struct chat_result *r);

/* A small non-streaming request: method "GET" or "POST", path like "/v1/models"; body may be
 * NULL. *status gets the HTTP status (0 if unreachable); *resp (may be NULL) the body, which
 * the caller frees. Returns STATUS_EIO when there was no HTTP response at all. */
enum status client_simple(const struct bench_http *h, const char *method, const char *path,
                          const char *body, double timeout_s, int *status, char **resp);

/* The first model id from GET /v1/models, heap string, or NULL. */
char       *client_first_model(const struct bench_http *h);

#endif
