/* params: request field validation shared by the OpenAI and Anthropic handlers. Every failure is
 * a 400 that names the field and says what was expected. */
#include <math.h>
#include <string.h>

#include "base/log.h"
#include "server/server_int.h"
#include "text/pyjson.h"

bool param_int(json_t *o, const char *key, long long lo, long long hi, long long def, long long *out, struct api_error *e)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) { *out = def; return true; }
    if (!json_is_integer(v)) {
        *e = api_error_make(STATUS_EINVAL, key, "'%s' must be an integer, got %s", key, pyjson_type_name(v));
        return false;
    }
    long long x = json_integer_value(v);
    if (x < lo || x > hi) {
        *e = api_error_make(STATUS_EINVAL, key, "'%s' must be between %lld and %lld, got %lld", key, lo, hi, x);
        return false;
    }
    *out = x;
    return true;
}

bool param_num(json_t *o, const char *key, double lo, double hi, double def, double *out, struct api_error *e)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) { *out = def; return true; }
    if (!json_is_number(v)) {
        *e = api_error_make(STATUS_EINVAL, key, "'%s' must be a number, got %s", key, pyjson_type_name(v));
        return false;
    }
    double x = json_number_value(v);
    if (!isfinite(x) || x < lo || x > hi) {
        *e = api_error_make(STATUS_EINVAL, key, "'%s' must be between %g and %g, got %g", key, lo, hi, x);
        return false;
    }
    *out = x;
    return true;
}

bool param_bool(json_t *o, const char *key, bool def, bool *out, struct api_error *e)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) { *out = def; return true; }
    if (!json_is_boolean(v)) {
        *e = api_error_make(STATUS_EINVAL, key, "'%s' must be a boolean, got %s", key, pyjson_type_name(v));
        return false;
    }
    *out = json_is_true(v);
    return true;
}

bool param_str(json_t *o, const char *key, bool required, const char **out, struct api_error *e)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = NULL;
        if (required) *e = api_error_make(STATUS_EINVAL, key, "'%s' is required", key);
        return !required;
    }
    if (!json_is_string(v)) {
        *e = api_error_make(STATUS_EINVAL, key, "'%s' must be a string, got %s", key, pyjson_type_name(v));
        return false;
    }
    *out = json_string_value(v);
    return true;
}

bool param_stops(json_t *o, const char *key, const char **out, int *n, struct api_error *e)
{
    json_t *v = json_object_get(o, key);
    *n = 0;
    if (!v || json_is_null(v)) return true;
    if (json_is_string(v)) {
        if (json_string_length(v)) out[(*n)++] = json_string_value(v);
        return true;
    }
    if (!json_is_array(v) || json_array_size(v) > 16) {
        *e = api_error_make(STATUS_EINVAL, key, "'%s' must be a string or an array of at most 16 strings", key);
        return false;
    }
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s) {
        if (!json_is_string(s)) {
            *e = api_error_make(STATUS_EINVAL, key, "'%s[%zu]' must be a string, got %s", key, i, pyjson_type_name(s));
            return false;
        }
        if (json_string_length(s)) out[(*n)++] = json_string_value(s);
    }
    return true;
}

bool param_sampling(json_t *o, const struct sampling *def, struct sampling *sp, struct api_error *e)
{
    double t, p, mp, pp, fp, rp;
    long long k, seed;
    if (!param_num(o, "temperature", 0, 2, def->temperature, &t, e)) return false;
    if (!param_num(o, "top_p", 0, 1, def->top_p, &p, e)) return false;
    if (json_object_get(o, "top_p") && p <= 0) {
        *e = api_error_make(STATUS_EINVAL, "top_p", "'top_p' must be in (0, 1]");
        return false;
    }
    if (!param_int(o, "top_k", -1, 1 << 30, def->top_k, &k, e)) return false;
    if (!param_num(o, "min_p", 0, 1, def->min_p, &mp, e)) return false;
    if (!param_num(o, "presence_penalty", -2, 2, def->presence_penalty, &pp, e)) return false;
    if (!param_num(o, "frequency_penalty", -2, 2, def->frequency_penalty, &fp, e)) return false;
    if (!param_num(o, "repetition_penalty", 0.01, 10, def->repetition_penalty, &rp, e)) return false;
    if (!param_int(o, "seed", INT64_MIN, INT64_MAX, 0, &seed, e)) return false;
    sp->temperature = (float)t;
    sp->top_p = (float)p;
    sp->top_k = k < 0 ? 0 : (int)k;
    sp->min_p = (float)mp;
    sp->presence_penalty = (float)pp;
    sp->frequency_penalty = (float)fp;
    sp->repetition_penalty = (float)rp;
    sp->has_seed = json_object_get(o, "seed") && !json_is_null(json_object_get(o, "seed"));
    sp->seed = (uint64_t)seed;
    return true;
}

bool param_model(struct req *r, json_t *o, struct api_error *e)
{
    const char *m;
    if (!param_str(o, "model", false, &m, e)) return false;
    if (!m || !*m) return true;
    if (srv_model_known(r->s, m) || !strcmp(m, r->g->model_id)) return true;
    *e = api_error_make(STATUS_ENOTFOUND, "model", "The model '%s' does not exist; this server serves '%s'", m,
                        r->s->served_name);
    return false;
}

json_t *param_kwargs(struct req *r, json_t *req_kwargs)
{
    json_t *k = json_deep_copy(r->s->kwargs_default);
    if (json_is_object(req_kwargs)) json_object_update(k, req_kwargs);
    return k;
}

bool param_prompt_fits(struct req *r, int n_prompt, long long max_tokens, bool max_given, long long *max_out,
                       struct api_error *e)
{
    int n_ctx = r->g->n_ctx;
    if (n_prompt <= 0) {
        *e = api_error_make(STATUS_EINVAL, "messages", "the prompt is empty");
        return false;
    }
    if (n_prompt >= n_ctx) {
        *e = api_error_make(STATUS_ETOOLONG, "messages",
                            "This model's maximum context length is %d tokens, but the prompt has %d tokens", n_ctx,
                            n_prompt);
        return false;
    }
    // max_tokens is a cap, not a demand: agents send 32k whatever the context; what does not fit
    // is cut (finish_reason "length" when the output reaches it)
    if (max_given && n_prompt + max_tokens > n_ctx) {
        LOG_DEBUG("max_tokens %lld clamped to the %d tokens left after a %d-token prompt", max_tokens, n_ctx - n_prompt,
                  n_prompt);
        max_tokens = n_ctx - n_prompt;
    }
    *max_out = max_given ? max_tokens : n_ctx - n_prompt;
    return true;
}
