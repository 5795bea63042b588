/* errors: the one place that maps failures to HTTP status codes and to each API's error body.
 *
 * Request handlers describe a failure as a struct api_error (a status, a message, optionally the
 * offending field) and never pick HTTP codes themselves. Route/method/body-size failures that have
 * no enum status of their own get their own constructors here. Pure functions; any thread.
 *
 *     struct api_error e = api_error_make(STATUS_EINVAL, "max_tokens", "max_tokens must be > 0");
 *     int code = api_error_http(&e);
 *     api_error_body(&sb, API_OPENAI, &e);   // {"error":{"message":...,"type":...,"param":...,"code":...}}
 *     api_error_body(&sb, API_OLLAMA, &e);   // {"error":"..."}
 */
#ifndef CAIRN_SERVER_ERRORS_H
#define CAIRN_SERVER_ERRORS_H

#include <stdbool.h>

#include "base/mem.h"
#include "base/status.h"

enum api_kind { API_OPENAI = 0, API_ANTHROPIC, API_OLLAMA };

enum api_error_kind {
    API_ERROR_STATUS = 0,     // mapped from st
    API_ERROR_NO_ROUTE,       // 404
    API_ERROR_METHOD,         // 405
    API_ERROR_BODY_TOO_LARGE, // 413
    API_ERROR_LOADING,        // 503: model still loading
    API_ERROR_SHUTDOWN,       // 503: server shutting down
    API_ERROR_TIMEOUT,        // 408: request body too slow
    API_ERROR_PROTOCOL,       // 400: malformed HTTP framing (sent with Connection: close)
    API_ERROR_UNSUPPORTED,    // 501: a transfer coding we do not implement (closes too)
};

struct api_error {
    enum api_error_kind kind;
    enum status         st;
    char                param[64];      // offending field, "" if none
    char                message[1024];
    int                 retry_after_s;  // > 0: send Retry-After
    bool                close;          // answer with Connection: close (framing cannot be trusted)
};

struct api_error api_error_make(enum status st, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
struct api_error api_error_kind_make(enum api_error_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int  api_error_http(const struct api_error *e);
/* Appends the JSON error body of the given API to sb. */
void api_error_body(struct strbuf *sb, enum api_kind api, const struct api_error *e);

#endif
