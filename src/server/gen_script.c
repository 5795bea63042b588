/* gen_script: test-only scripted output (`cairn serve --test-script FILE`), as a provider that
 * wraps another one (see gen.h), so neither the engine nor the HTTP layer knows about it.
 *
 * The script is [{"match": "MARKER", "output": "text", "delay_ms": 0, "last": false}]. When a
 * request's prompt, decoded, contains MARKER (first entry that matches wins), the wrapped provider still runs the
 * request (prefill, decode steps, KV, metrics: the server path cannot tell it from a model), but
 * for exactly as many tokens as the output text has, with EOS and stop ids off; each generated
 * token is replaced by the output's token at that position, and the request then ends as a model's
 * would at EOS (FINISH_STOP_MATCHED), unless max_tokens or the context ended it first (LENGTH).
 * delay_ms goes to the wrapped provider as gen_req.test_delay_ms (the fake provider delays its
 * first token; the engine ignores it). Requests without a marker pass through unchanged.
 *
 * "last": true scripts a whole agent turn: such an entry matches only when its marker is the
 * script's marker that occurs latest in the prompt, i.e. it sits in the newest message that holds
 * any marker, whatever its role. The user's marker asks for a tool call; once the tool's result
 * (which prints another marker) is in the history, that marker is the latest and its entry answers.
 * No state is kept between requests, so retries and side requests see the same script.
 */
#include "server/gen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"
#include "text/tokenizer.h"

struct script_entry {
    char *match;
    char *output;
    int   delay_ms;
    bool  last;    // matches only as the latest marker of the prompt
};

struct gen_script {
    struct script_entry *entries;
    int                  n_entries;
};

struct scripted {
    struct gen         g;
    struct gen_ops     ops;       // the wrapped provider's, with the stream functions replaced
    struct gen        *inner;     // borrowed
    struct gen_script *script;    // owned
};

struct script_stream {
    struct gen *g;                // the wrapped provider
    void       *inner;            // its stream
    int32_t *out;                 // [n_out] scripted token ids; NULL: pass-through
    int      n_out;
    int      n_emitted;
    bool     scripted;
};

enum status gen_script_load(const char *path, struct gen_script **out)
{
    json_error_t jerr;
    json_t *a = json_load_file(path, 0, &jerr);
    if (!json_is_array(a)) {
        LOG_ERR("%s:%d: test script must be a JSON array: %s", path, jerr.line, jerr.text);
        json_decref(a);
        return STATUS_EFORMAT;
    }
    struct gen_script *sc = xcalloc(1, sizeof *sc);
    sc->entries = xcalloc(json_array_size(a) + 1, sizeof *sc->entries);
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *e = json_array_get(a, i);
        const char *m = json_string_value(json_object_get(e, "match"));
        const char *o = json_string_value(json_object_get(e, "output"));
        if (!m || !*m || !o) {
            LOG_ERR("%s: entry %zu needs a non-empty string 'match' and a string 'output'", path, i);
            json_decref(a);
            gen_script_free(sc);
            return STATUS_EFORMAT;
        }
        struct script_entry *se = &sc->entries[sc->n_entries++];
        se->match = xstrdup(m);
        se->output = xstrdup(o);
        se->delay_ms = (int)json_integer_value(json_object_get(e, "delay_ms"));
        se->last = json_is_true(json_object_get(e, "last"));
    }
    json_decref(a);
    LOG_WARN("test-only scripted outputs loaded from %s (%d entries)", path, sc->n_entries);
    *out = sc;
    return STATUS_OK;
}

void gen_script_free(struct gen_script *sc)
{
    if (!sc) return;
    for (int i = 0; i < sc->n_entries; i++) {
        free(sc->entries[i].match);
        free(sc->entries[i].output);
    }
    free(sc->entries);
    free(sc);
}

/* ==== Pass-through ==== */

#define INNER(self) (((struct scripted *)(self))->inner)

static enum status sg_encode(void *self, const char *text, size_t len, bool add_special, int32_t **ids, int *n)
{
    struct gen *in = INNER(self);
    return in->ops->encode(in->self, text, len, add_special, ids, n);
}

static enum status sg_encode_literal(void *self, const char *text, size_t len, bool add_special,
                                    const struct tk_literal *literal, int n_literal, int32_t **ids, int *n)
{
    struct gen *in = INNER(self);
    if (!in->ops->encode_literal) return in->ops->encode(in->self, text, len, add_special, ids, n);
    return in->ops->encode_literal(in->self, text, len, add_special, literal, n_literal, ids, n);
}

static const char *const *sg_special_texts(void *self)
{
    struct gen *in = INNER(self);
    return in->ops->special_texts ? in->ops->special_texts(in->self) : NULL;
}

static char *sg_decode(void *self, const int32_t *ids, int n, bool skip_special)
{
    struct gen *in = INNER(self);
    return in->ops->decode(in->self, ids, n, skip_special);
}

static void *sg_detok_new(void *self)
{
    struct gen *in = INNER(self);
    return in->ops->detok_new(in->self);
}

static const char *sg_token_str(void *self, int32_t id)
{
    struct gen *in = INNER(self);
    return in->ops->token_str(in->self, id);
}

static enum status sg_render(void *self, json_t *messages, json_t *tools, json_t *kwargs, bool add_gen, char **out,
                             char **err)
{
    struct gen *in = INNER(self);
    return in->ops->render(in->self, messages, tools, kwargs, add_gen, out, err);
}

static void sg_stats(void *self, struct engine_stats *out)
{
    struct gen *in = INNER(self);
    in->ops->stats(in->self, out);
}

/* ==== Generation ==== */

/* Start of the last occurrence of needle in text; -1 if none. */
static long last_occurrence(const char *text, const char *needle)
{
    long at = -1;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle)) at = p - text;
    return at;
}

static const struct script_entry *match_prompt(struct scripted *s, const struct gen_request *req)
{
    const struct gen_script *sc = s->script;
    if (!sc->n_entries) return NULL;
    char *text = s->inner->ops->decode(s->inner->self, req->prompt, req->n_prompt, false);
    long *at = xcalloc(sc->n_entries, sizeof *at);
    long latest = -1;
    for (int i = 0; i < sc->n_entries; i++) {
        at[i] = last_occurrence(text, sc->entries[i].match);
        if (at[i] > latest) latest = at[i];
    }
    const struct script_entry *hit = NULL;
    for (int i = 0; i < sc->n_entries && !hit; i++)
        if (at[i] >= 0 && (!sc->entries[i].last || at[i] == latest)) hit = &sc->entries[i];
    free(at);
    free(text);
    return hit;
}

static enum status sg_submit(void *self, const struct gen_req *req, void **stream, char *msg, size_t msg_len)
{
    struct scripted *s = self;
    struct gen *in = s->inner;
    struct script_stream *ss = xcalloc(1, sizeof *ss);
    ss->g = in;
    struct gen_req r = *req;
    const struct script_entry *se = req->base.embed ? NULL : match_prompt(s, &req->base);   // embeddings: as they are
    if (se) {
        if (in->ops->encode(in->self, se->output, strlen(se->output), false, &ss->out, &ss->n_out) != STATUS_OK) {
            free(ss);
            if (msg) snprintf(msg, msg_len, "the scripted output for '%s' does not tokenize", se->match);
            return STATUS_EINVAL;
        }
        ss->scripted = true;
        // exactly the scripted length (at least one step, so the request still runs), nothing ends it early
        if (r.base.max_tokens > ss->n_out) r.base.max_tokens = ss->n_out > 0 ? ss->n_out : 1;
        r.base.ignore_eos = true;
        r.base.stop_ids = NULL;
        r.base.n_stop_ids = 0;
        r.test_delay_ms = se->delay_ms;
        r.grammar = NULL;   // the script is the output
    }
    enum status st = in->ops->submit(in->self, &r, &ss->inner, msg, msg_len);
    if (st != STATUS_OK) {
        free(ss->out);
        free(ss);
        return st;
    }
    *stream = ss;
    return STATUS_OK;
}

static enum status sg_next(void *stream, struct token_event *ev, int timeout_ms)
{
    struct script_stream *ss = stream;
    enum status st = ss->g->ops->next(ss->inner, ev, timeout_ms);
    if (st != STATUS_OK || !ss->scripted) return st;
    if (ev->has_token) {
        if (ss->n_emitted < ss->n_out) ev->token = ss->out[ss->n_emitted++];
        else ev->has_token = false;   // an empty script still ran one step
    }
    if (ev->done && ev->finish == FINISH_LENGTH && ss->n_emitted >= ss->n_out) {
        ev->finish = FINISH_STOP_MATCHED;   // the script is over: as a model's EOS would end it
        ev->stop_token = -1;
        if (!ev->has_token) ev->token = -1;
    }
    return STATUS_OK;
}

static void sg_cancel(void *self, void *stream)
{
    struct script_stream *ss = stream;
    ss->g->ops->cancel(ss->g->self, ss->inner);
}

static void sg_end_on_stop_string(void *self, void *stream)
{
    struct script_stream *ss = stream;
    ss->g->ops->end_on_stop_string(ss->g->self, ss->inner);
}

static int sg_embedding(void *stream, const float **out)
{
    struct script_stream *ss = stream;
    *out = NULL;
    return ss->g->ops->embedding ? ss->g->ops->embedding(ss->inner, out) : 0;
}

static void sg_release(void *stream)
{
    struct script_stream *ss = stream;
    if (!ss) return;
    ss->g->ops->release(ss->inner);
    free(ss->out);
    free(ss);
}

static void sg_destroy(void *self)
{
    struct scripted *s = self;
    gen_script_free(s->script);
    free(s);
}

static const struct gen_ops script_ops = {
    .encode = sg_encode, .encode_literal = sg_encode_literal, .special_texts = sg_special_texts, .decode = sg_decode, .detok_new = sg_detok_new, .token_str = sg_token_str,
    .render = sg_render, .submit = sg_submit, .next = sg_next, .cancel = sg_cancel,
    .end_on_stop_string = sg_end_on_stop_string, .release = sg_release, .stats = sg_stats,
    .embedding = sg_embedding, .destroy = sg_destroy,
};

struct gen *gen_script_wrap(struct gen_script *sc, struct gen *inner)
{
    struct scripted *s = xcalloc(1, sizeof *s);
    s->inner = inner;
    s->script = sc;
    s->g = *inner;
    s->ops = script_ops;
    // the detokenizer objects are the inner provider's: its functions without self work on them as they are
    s->ops.detok_push = inner->ops->detok_push;
    s->ops.detok_flush = inner->ops->detok_flush;
    s->ops.detok_free = inner->ops->detok_free;
    if (!inner->ops->embedding) s->ops.embedding = NULL;
    s->g.ops = &s->ops;
    s->g.self = s;
    return &s->g;
}
