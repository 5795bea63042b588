/* api_embed: POST /v1/embeddings (OpenAI's shape) for a model served as an embedder.
 *
 * Design note. An embedding is the final normed hidden state of the input's last token (the
 * engine's embedding request: prefill only, no KV kept), truncated to `dimensions` (Matryoshka,
 * where the model was trained for it) and L2-normalised here, in double, as transformers'
 * F.normalize does (divide by max(norm, 1e-12)). That is Qwen3-Embedding's pooling; the
 * instruction format of its queries ("Instruct: ...\nQuery:...") is the client's text, and the
 * tokenizer's own post-processor adds the end-of-text token it ends with. A batch's inputs go to
 * the engine as separate requests, at most EMBED_WINDOW in flight, so a large batch neither fills
 * the engine's queue nor waits behind it: the inputs share steps with each other and with chat
 * requests (continuous batching), and each result is copied out as soon as it is done.
 *
 * Which server computes embeddings is decided at start (cmd_serve: --runner pooling, vLLM's
 * spelling; gen.embedder): an embedder answers this route only, a generator every route but this.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "server/jsonw.h"
#include "text/pyjson.h"
#include "server/server_int.h"

enum {
    EMBED_MAX_INPUTS = 2048,   // OpenAI's limit per request
    EMBED_WINDOW = 64,         // inputs in the engine at once per request
};

/* One request's inputs, as token ids. */
struct embed_inputs {
    int32_t **ids;      // [count] owned
    int      *n;        // [count]
    int       count;
};

static void inputs_free(struct embed_inputs *in)
{
    for (int i = 0; i < in->count; i++) free(in->ids[i]);
    free(in->ids);
    free(in->n);
}

/* input: a string, an array of strings, an array of token ids, or an array of such arrays. */
static bool parse_inputs(struct req *r, json_t *body, struct embed_inputs *in, struct api_error *e)
{
    json_t *v = json_object_get(body, "input");
    if (!v || json_is_null(v)) {
        *e = api_error_make(STATUS_EINVAL, "input", "'input' is required");
        return false;
    }
    if ((!json_is_string(v) && !json_is_array(v)) || (json_is_array(v) && json_array_size(v) == 0)) {
        *e = api_error_make(STATUS_EINVAL, "input", "'input' must be a string, an array of strings, an array of token "
                            "ids or an array of token id arrays, not empty (got %s)",
                            json_is_array(v) ? "an empty array" : pyjson_type_name(v));
        return false;
    }
    // one token-id array, or a list of items
    bool one_ids = json_is_array(v) && json_is_integer(json_array_get(v, 0));
    size_t count = json_is_string(v) || one_ids ? 1 : json_array_size(v);
    if (count > EMBED_MAX_INPUTS) {
        *e = api_error_make(STATUS_EINVAL, "input", "'input' has %zu items; at most %d per request", count,
                            EMBED_MAX_INPUTS);
        return false;
    }
    in->ids = xcalloc(count, sizeof *in->ids);
    in->n = xcalloc(count, sizeof *in->n);
    in->count = (int)count;
    int n_vocab = r->g->n_vocab, n_ctx = r->g->n_ctx;
    for (size_t i = 0; i < count; i++) {
        json_t *item = json_is_string(v) || one_ids ? v : json_array_get(v, i);
        char where[32] = "input";
        if (json_is_array(v) && !one_ids) snprintf(where, sizeof where, "input[%zu]", i);
        if (json_is_string(item)) {
            if (json_string_length(item) == 0) {
                *e = api_error_make(STATUS_EINVAL, "input", "'%s' is an empty string", where);
                return false;
            }
            if (r->g->ops->encode(r->g->self, json_string_value(item), json_string_length(item), true, &in->ids[i],
                                  &in->n[i]) != STATUS_OK) {
                *e = api_error_make(STATUS_EINVAL, "input", "'%s' could not be tokenized", where);
                return false;
            }
        } else if (json_is_array(item)) {
            size_t n = json_array_size(item), k;
            json_t *t;
            if (n == 0) {
                *e = api_error_make(STATUS_EINVAL, "input", "'%s' is an empty token array", where);
                return false;
            }
            in->ids[i] = xmalloc(n * sizeof **in->ids);
            json_array_foreach(item, k, t) {
                if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= n_vocab) {
                    *e = api_error_make(STATUS_EINVAL, "input", "'%s[%zu]' must be a token id, an integer in [0, %d)",
                                        where, k, n_vocab);
                    return false;
                }
                in->ids[i][k] = (int32_t)json_integer_value(t);
            }
            in->n[i] = (int)n;
        } else {
            *e = api_error_make(STATUS_EINVAL, "input", "'%s' must be a string or an array of token ids (got %s)", where,
                                pyjson_type_name(item));
            return false;
        }
        if (in->n[i] == 0) {
            *e = api_error_make(STATUS_EINVAL, "input", "'%s' has no tokens", where);
            return false;
        }
        if (in->n[i] > n_ctx) {
            *e = api_error_make(STATUS_ETOOLONG, "input",
                                "This model's maximum context length is %d tokens, however '%s' has %d tokens", n_ctx,
                                where, in->n[i]);
            return false;
        }
    }
    return true;
}

/* Every key this endpoint reads; anything else is refused by name. */
static bool known_keys(json_t *body, struct api_error *e)
{
    static const char *const keys[] = { "model", "input", "encoding_format", "dimensions", "user", NULL };
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v) {
        bool ok = false;
        for (int i = 0; keys[i] && !ok; i++) ok = !strcmp(k, keys[i]);
        if (!ok) {
            *e = api_error_make(STATUS_EINVAL, k, "'%s' is not a field of /v1/embeddings (fields: model, input, "
                                "encoding_format, dimensions, user)", k);
            return false;
        }
    }
    return true;
}

/* The output width: the model's, or `dimensions` where the model allows Matryoshka truncation. */
static bool parse_dims(struct req *r, json_t *body, int *dims, struct api_error *e)
{
    int d = r->g->n_embd;
    long long v;
    if (!param_int(body, "dimensions", LLONG_MIN, LLONG_MAX, d, &v, e)) return false;
    if (v != d && !r->g->matryoshka) {
        *e = api_error_make(STATUS_EINVAL, "dimensions", "this model does not support 'dimensions' (its embeddings "
                            "have %d dimensions and were not trained to be truncated; got %lld)", d, v);
        return false;
    }
    if (!param_int(body, "dimensions", 1, d, d, &v, e)) return false;
    bool listed = r->g->n_matryoshka_dims == 0 || v == d;
    for (int i = 0; i < r->g->n_matryoshka_dims && !listed; i++) listed = r->g->matryoshka_dims[i] == v;
    if (!listed) {
        char list[160] = "";
        for (int i = 0; i < r->g->n_matryoshka_dims; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", i ? ", " : "", r->g->matryoshka_dims[i]);
        *e = api_error_make(STATUS_EINVAL, "dimensions", "this model's 'dimensions' are %s or %d (got %lld)", list, d, v);
        return false;
    }
    *dims = (int)v;
    return true;
}

/* out[0..dims) = h[0..dims) / max(||h[0..dims)||, 1e-12) (F.normalize). False when not finite. */
static bool pool_normalize(const float *h, int dims, float *out)
{
    double ss = 0;
    for (int i = 0; i < dims; i++) ss += (double)h[i] * h[i];
    double norm = sqrt(ss);
    if (!isfinite(norm)) return false;
    double inv = 1.0 / (norm > 1e-12 ? norm : 1e-12);
    for (int i = 0; i < dims; i++) out[i] = (float)(h[i] * inv);
    return true;
}

static void put_base64(struct strbuf *sb, const float *v, int n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t bytes = (size_t)n * 4;
    strbuf_reserve(sb, (bytes + 2) / 3 * 4 + 2);
    uint8_t buf[3];
    int have = 0;
    for (int i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        for (int b = 0; b < 4; b++) {   // little-endian, whatever the host
            buf[have++] = (uint8_t)(u >> (8 * b));
            if (have == 3) {
                char q[4] = { tab[buf[0] >> 2], tab[(buf[0] & 3) << 4 | buf[1] >> 4],
                              tab[(buf[1] & 15) << 2 | buf[2] >> 6], tab[buf[2] & 63] };
                strbuf_append(sb, q, 4);
                have = 0;
            }
        }
    }
    if (have) {
        if (have == 1) buf[1] = 0;
        char q[4] = { tab[buf[0] >> 2], tab[(buf[0] & 3) << 4 | buf[1] >> 4],
                      have == 2 ? tab[(buf[1] & 15) << 2] : '=', '=' };
        strbuf_append(sb, q, 4);
    }
}

/* Runs every input through the engine, at most EMBED_WINDOW at once, and writes the normalised
 * vectors into out [count, dims]. False with *e (or the client gone: r->peer_gone). */
static bool compute(struct req *r, const struct embed_inputs *in, int dims, float *out, struct api_error *e)
{
    struct gen *g = r->g;
    void *live[EMBED_WINDOW] = { 0 };
    int live_idx[EMBED_WINDOW];
    int n_live = 0, next = 0, done = 0;
    bool ok = true;
    char msg[256];
    while (ok && done < in->count) {
        while (next < in->count && n_live < EMBED_WINDOW) {
            struct gen_req q = { .base = { .prompt = in->ids[next], .n_prompt = in->n[next], .embed = true } };
            void *s;
            enum status st = g->ops->submit(g->self, &q, &s, msg, sizeof msg);
            if (st == STATUS_EBUSY && n_live > 0) break;   // wait for one of ours, then go on
            if (st != STATUS_OK) {
                *e = api_error_make(st, st == STATUS_EBUSY ? NULL : "input", "input %d: %s", next, msg);
                ok = false;
                break;
            }
            live[n_live] = s;
            live_idx[n_live++] = next++;
        }
        if (!ok) break;
        // wait for the oldest; the others keep running meanwhile
        struct token_event ev;
        enum status st = g->ops->next(live[0], &ev, 100);
        if (st == STATUS_EBUSY || !ev.done) {
            if (srv_peer_closed(r) || atomic_load(&r->s->cancel_all)) {
                r->peer_gone = srv_peer_closed(r);
                *e = api_error_kind_make(API_ERROR_SHUTDOWN, "the server is shutting down");
                ok = false;
            }
            continue;
        }
        const float *h;
        int n = ev.finish == FINISH_EMBEDDED ? g->ops->embedding(live[0], &h) : 0;
        if (n < dims || !pool_normalize(h, dims, out + (size_t)live_idx[0] * dims)) {
            *e = ev.finish == FINISH_CANCELED ? api_error_kind_make(API_ERROR_SHUTDOWN, "the server is shutting down")
                 : api_error_make(ev.finish == FINISH_ERROR && ev.error ? ev.error : STATUS_EIO, NULL,
                                  "input %d: the embedding could not be computed", live_idx[0]);
            ok = false;
            break;
        }
        g->ops->release(live[0]);
        memmove(live, live + 1, (size_t)(n_live - 1) * sizeof *live);
        memmove(live_idx, live_idx + 1, (size_t)(n_live - 1) * sizeof *live_idx);
        n_live--;
        done++;
    }
    for (int i = 0; i < n_live; i++) {   // failed or cut short: the rest end now (release cancels)
        g->ops->cancel(g->self, live[i]);
        g->ops->release(live[i]);
    }
    return ok;
}

enum MHD_Result api_openai_embeddings(struct req *r, json_t *body)
{
    struct api_error e;
    struct embed_inputs in = { 0 };
    float *vec = NULL;
    struct strbuf sb = { 0 };
    enum MHD_Result ret;
    const char *fmt = NULL, *user;
    int dims = 0;
    if (!r->g->embedder || !r->g->ops->embedding) {
        e = api_error_make(STATUS_EUNSUPPORTED, NULL, "the model '%s' is served for generation; start the server with "
                           "--runner pooling (or --task embed) to serve /v1/embeddings", r->s->served_name);
        goto fail;
    }
    if (!known_keys(body, &e) || !param_model(r, body, &e) || !param_str(body, "encoding_format", false, &fmt, &e) ||
        !param_str(body, "user", false, &user, &e) || !parse_dims(r, body, &dims, &e))
        goto fail;
    bool b64 = fmt && !strcmp(fmt, "base64");
    if (fmt && !b64 && strcmp(fmt, "float")) {
        e = api_error_make(STATUS_EINVAL, "encoding_format", "'encoding_format' must be 'float' or 'base64' (got '%s')",
                           fmt);
        goto fail;
    }
    if (!parse_inputs(r, body, &in, &e)) goto fail;
    vec = xmalloc(sizeof *vec * (size_t)in.count * (size_t)dims);
    if (!compute(r, &in, dims, vec, &e)) goto fail;

    long long total = 0;
    for (int i = 0; i < in.count; i++) total += in.n[i];
    r->n_prompt = (int)(total > INT32_MAX ? INT32_MAX : total);
    jsonw_raw(&sb, "{\"object\":\"list\",\"data\":[");
    for (int i = 0; i < in.count; i++) {
        const float *v = vec + (size_t)i * dims;
        jsonw_raw(&sb, i ? ",{\"object\":\"embedding\",\"index\":" : "{\"object\":\"embedding\",\"index\":");
        jsonw_int(&sb, i);
        jsonw_raw(&sb, ",\"embedding\":");
        if (b64) {
            strbuf_putc(&sb, '"');
            put_base64(&sb, v, dims);
            strbuf_putc(&sb, '"');
        } else {
            strbuf_putc(&sb, '[');
            for (int k = 0; k < dims; k++) {
                if (k) strbuf_putc(&sb, ',');
                jsonw_float(&sb, v[k]);
            }
            strbuf_putc(&sb, ']');
        }
        strbuf_putc(&sb, '}');
    }
    jsonw_raw(&sb, "],\"model\":");
    jsonw_cstr(&sb, r->s->served_name);
    jsonw_raw(&sb, ",\"usage\":{\"prompt_tokens\":");
    jsonw_int(&sb, total);
    jsonw_raw(&sb, ",\"total_tokens\":");
    jsonw_int(&sb, total);
    jsonw_raw(&sb, "}}");
    ret = srv_send_json(r, 200, sb.data, sb.len);
    goto out;
fail:
    ret = srv_send_error(r, &e);
out:
    strbuf_free(&sb);
    free(vec);
    inputs_free(&in);
    return ret;
}
