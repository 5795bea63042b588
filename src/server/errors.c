/* errors: status -> HTTP code and OpenAI / Anthropic error bodies; see errors.h.
 *
 * OpenAI:    {"error":{"message":"...","type":"invalid_request_error","param":"max_tokens","code":null}}
 * Anthropic: {"type":"error","error":{"type":"invalid_request_error","message":"..."}}
 * Ollama:    {"error":"..."}
 */
#include "server/errors.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "server/jsonw.h"

struct api_error api_error_make(enum status st, const char *param, const char *fmt, ...)
{
    struct api_error e;
    memset(&e, 0, sizeof e);
    e.kind = API_ERROR_STATUS;
    e.st = st;
    if (param) snprintf(e.param, sizeof e.param, "%s", param);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    if (st == STATUS_EBUSY) e.retry_after_s = 1;
    return e;
}

struct api_error api_error_kind_make(enum api_error_kind kind, const char *fmt, ...)
{
    struct api_error e;
    memset(&e, 0, sizeof e);
    e.kind = kind;
    e.st = STATUS_EINVAL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    if (kind == API_ERROR_LOADING || kind == API_ERROR_SHUTDOWN) e.retry_after_s = 5;
    if (kind == API_ERROR_PROTOCOL || kind == API_ERROR_UNSUPPORTED) e.close = true;
    return e;
}

int api_error_http(const struct api_error *e)
{
    switch (e->kind) {
    case API_ERROR_NO_ROUTE:       return 404;
    case API_ERROR_METHOD:         return 405;
    case API_ERROR_BODY_TOO_LARGE: return 413;
    case API_ERROR_TIMEOUT:        return 408;
    case API_ERROR_PROTOCOL:       return 400;
    case API_ERROR_UNSUPPORTED:    return 501;
    case API_ERROR_LOADING:
    case API_ERROR_SHUTDOWN:       return 503;
    case API_ERROR_STATUS:         break;
    }
    switch (e->st) {
    case STATUS_OK:           return 200;
    case STATUS_EINVAL:
    case STATUS_EFORMAT:
    case STATUS_EUNSUPPORTED:
    case STATUS_ETOOLONG:
    case STATUS_ETEMPLATE:    return 400;
    case STATUS_EAUTH:        return 401;
    case STATUS_ENOTFOUND:    return 404;
    case STATUS_EBUSY:        return 429;
    case STATUS_ECANCELED:    return 499;
    case STATUS_ENOMEM:
    case STATUS_EIO:
    case STATUS_EDEVICE:
    case STATUS_COUNT:        return 500;
    }
    return 500;
}

static const char *openai_type(int http)
{
    switch (http) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    case 503: return "overloaded_error";
    default:  return http >= 500 ? "server_error" : "invalid_request_error";
    }
}

static const char *anthropic_type(int http)
{
    switch (http) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 503: return "overloaded_error";
    default:  return http >= 500 ? "api_error" : "invalid_request_error";
    }
}

static const char *openai_code(const struct api_error *e, int http)
{
    if (http == 401) return "invalid_api_key";
    if (http == 404 && e->kind == API_ERROR_STATUS) return "model_not_found";
    if (http == 413) return "request_too_large";
    if (http == 429) return "rate_limit_exceeded";
    if (e->kind == API_ERROR_STATUS && e->st == STATUS_ETOOLONG) return "context_length_exceeded";
    return NULL;
}

void api_error_body(struct strbuf *sb, enum api_kind api, const struct api_error *e)
{
    int http = api_error_http(e);
    if (api == API_OLLAMA) {
        jsonw_raw(sb, "{\"error\":");
        jsonw_cstr(sb, e->message);
        jsonw_raw(sb, "}");
        return;
    }
    if (api == API_ANTHROPIC) {
        jsonw_raw(sb, "{\"type\":\"error\",\"error\":{\"type\":");
        jsonw_cstr(sb, anthropic_type(http));
        jsonw_raw(sb, ",\"message\":");
        jsonw_cstr(sb, e->message);
        jsonw_raw(sb, "}}");
        return;
    }
    jsonw_raw(sb, "{\"error\":{\"message\":");
    jsonw_cstr(sb, e->message);
    jsonw_raw(sb, ",\"type\":");
    jsonw_cstr(sb, openai_type(http));
    jsonw_raw(sb, ",\"param\":");
    jsonw_cstr(sb, e->param[0] ? e->param : NULL);
    jsonw_raw(sb, ",\"code\":");
    jsonw_cstr(sb, openai_code(e, http));
    jsonw_raw(sb, "}}");
}
