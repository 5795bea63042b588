/* server: the HTTP front end of cairn (OpenAI- and Anthropic-compatible APIs, health, metrics).
 *
 * server_new binds the socket and starts serving at once (generation routes and /health answer
 * 503 until server_set_gen hands over a loaded model). libmicrohttpd runs event-driven on a
 * few threads that never wait on the model; a request that needs the model gets a worker thread
 * that renders, tokenizes, submits to the model provider (gen.h) and feeds the response, so the
 * engine thread only computes. server_shutdown stops accepting, gives in-flight requests a grace
 * period, cancels the rest and waits for every worker.
 *
 *     struct server *s;  server_new(&cfg, &s);  server_set_gen(s, g);
 *     wait_for_signal();  server_shutdown(s);  server_free(s);  gen_free(g);
 */
#ifndef CAIRN_SERVER_SERVER_H
#define CAIRN_SERVER_SERVER_H

#include <stddef.h>

#include <jansson.h>

#include "base/status.h"
#include "server/gen.h"

struct server_cfg {
    const char *host;                 // "127.0.0.1"
    int         port;                 // 8080; 0 picks a free port (see server_port)
    const char *api_key;              // NULL: no auth
    const char *served_model_name;    // NULL: the model's id
    const char *chat_template_kwargs; // JSON object text: defaults, a request's keys win
    const char *cors_origin;          // NULL: no CORS headers
    const char *tool_parser;          // NULL: from the chat template
    const char *reasoning_parser;     // NULL: auto (think tags when the template has them); "none"
    size_t      max_body_bytes;       // 413 above this (default 32 MiB)
    int         http_timeout_s;       // idle connection timeout (default 60)
    int         body_timeout_s;       // whole request body must arrive within this (default 60)
    int         keepalive_s;          // SSE comment every this many seconds without data (default 5)
    int         stall_s;              // /health 503 when the engine has work but no progress (default 30)
    int         shutdown_grace_s;     // in-flight requests may finish for this long (default 5)
    int         max_connections;      // default 4096
    int         per_ip_connections;   // connections from one address (default 256)
    int         header_timeout_s;     // a request header must be complete within this (default 10)
    int         body_min_rate;        // bytes/s a body must average after its first 5 s (default 1024)
    /* A special token's text inside message content (<|im_start|>, <|eot_id|>...) is tokenized as
     * text (false, the default: content cannot forge turns) or as the control token (true:
     * --content-special-tokens control). */
    bool        content_special_control;
};

struct server;

enum status server_new(const struct server_cfg *cfg, struct server **out);
/* Hands over the loaded model (borrowed; outlives the server). Until then: 503 "loading". */
enum status server_set_gen(struct server *s, struct gen *g);
int         server_port(const struct server *s);
void        server_shutdown(struct server *s);
void        server_free(struct server *s);

#endif
