/* gen_engine: the real model provider (see gen.h): tokenizer.h for ids and streaming detok,
 * chat.h for templates, engine.h for generation. A thin adapter; everything it calls is
 * thread-safe (the engine through its submit queue and streams). */
#include "server/gen.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"
#include "text/chat.h"
#include "text/constraint.h"
#include "text/tokenizer.h"

struct eng_gen {
    struct gen                  g;
    struct engine              *eng;
    const struct tokenizer     *tk;
    const struct chat_template *ct;
    struct constraint_vocab    *cvocab;   // constrained decoding; NULL when the model has no end-of-turn token
    int32_t                     think_close_id;   // the reasoning block's close marker as one token, -1 if none
    int32_t                     markers[DETOK_KEEP_MAX];   // special tokens of the tool-call markup: text here
    int                         n_markers;
};

/* The markup tokens of each family's tool calls. Where the tokenizer marks them special (Mistral,
 * Llama 3), decoding would drop them and the tool parser would never see a call, and a forced call
 * could only be spelled byte by byte; so they are text to the output and the constraint. */
static const char *const family_markers[TOOL_FAMILY_COUNT][6] = {
    [TOOL_FAMILY_HERMES] = { "<tool_call>", "</tool_call>" },
    [TOOL_FAMILY_QWEN3_CODER] = { "<tool_call>", "</tool_call>" },
    [TOOL_FAMILY_LLAMA3] = { "<|python_tag|>" },
    [TOOL_FAMILY_MISTRAL] = { "[TOOL_CALLS]", "[ARGS]" },
    [TOOL_FAMILY_DEEPSEEK_V3] = {
        "<\xEF\xBD\x9Ctool\xE2\x96\x81" "calls\xE2\x96\x81" "begin\xEF\xBD\x9C>",
        "<\xEF\xBD\x9Ctool\xE2\x96\x81" "calls\xE2\x96\x81" "end\xEF\xBD\x9C>",
        "<\xEF\xBD\x9Ctool\xE2\x96\x81" "call\xE2\x96\x81" "begin\xEF\xBD\x9C>",
        "<\xEF\xBD\x9Ctool\xE2\x96\x81" "call\xE2\x96\x81" "end\xEF\xBD\x9C>",
        "<\xEF\xBD\x9Ctool\xE2\x96\x81" "sep\xEF\xBD\x9C>" },
};

static enum status eg_encode(void *self, const char *text, size_t len, bool add_special, int32_t **ids, int *n)
{
    struct eng_gen *e = self;
    return tokenizer_encode(e->tk, text, len, add_special, ids, n);
}

static enum status eg_encode_literal(void *self, const char *text, size_t len, bool add_special,
                                    const struct tk_literal *literal, int n_literal, int32_t **ids, int *n)
{
    struct eng_gen *e = self;
    return tokenizer_encode_literal(e->tk, text, len, add_special, literal, n_literal, ids, n);
}

static const char *const *eg_special_texts(void *self)
{
    struct eng_gen *e = self;
    return tokenizer_special_texts(e->tk);
}

static char *eg_decode(void *self, const int32_t *ids, int n, bool skip_special)
{
    struct eng_gen *e = self;
    char *s = tokenizer_decode(e->tk, ids, n, skip_special);
    return s ? s : xstrdup("");
}

static void *eg_detok_new(void *self)
{
    struct eng_gen *e = self;
    struct detok *d = detok_new(e->tk, true);
    detok_keep_special(d, e->markers, e->n_markers);
    return d;
}

static char *eg_detok_push(void *d, int32_t id)
{
    char *s = detok_push(d, id);
    return s ? s : xstrdup("");
}

static char *eg_detok_flush(void *d)
{
    char *s = detok_flush(d);
    return s ? s : xstrdup("");
}

static void eg_detok_free(void *d) { detok_free(d); }

static const char *eg_token_str(void *self, int32_t id)
{
    struct eng_gen *e = self;
    return tokenizer_token_str(e->tk, id);
}

static enum status eg_render(void *self, json_t *messages, json_t *tools, json_t *kwargs, bool add_gen,
                             char **out, char **err)
{
    struct eng_gen *e = self;
    if (!e->ct) {
        *err = xstrdup("this server was started with --no-chat-template: it serves /v1/completions only");
        return STATUS_ETEMPLATE;
    }
    return chat_render(e->ct, messages, tools, kwargs, add_gen, out, err);
}

static enum status eg_submit(void *self, const struct gen_req *req, void **stream, char *msg, size_t msg_len)
{
    struct eng_gen *e = self;
    struct token_stream *ts;
    char tmp[8];
    struct gen_request base = req->base;
    if (req->grammar) {
        if (!e->cvocab) {
            if (msg) snprintf(msg, msg_len, "constrained decoding needs a model with an end-of-turn token");
            return STATUS_EUNSUPPORTED;
        }
        if (req->grammar_after_think && e->think_close_id < 0) {
            if (msg) snprintf(msg, msg_len, "the reasoning block's close marker is not a single token");
            return STATUS_EUNSUPPORTED;
        }
        base.constraint = constraint_new(req->grammar, e->cvocab);
        base.constraint_vocab = e->cvocab;
        base.constraint_after = req->grammar_after_think ? e->think_close_id : 0;
    }
    enum status st = engine_submit_msg(e->eng, &base, &ts, msg ? msg : tmp, msg ? msg_len : sizeof tmp);
    if (st == STATUS_OK) *stream = ts;
    else constraint_free(base.constraint);   // a failed submit leaves it here
    return st;
}

static enum status eg_next(void *stream, struct token_event *ev, int timeout_ms)
{
    return token_stream_next(stream, ev, timeout_ms);
}

static void eg_cancel(void *self, void *stream)
{
    struct eng_gen *e = self;
    engine_cancel(e->eng, stream);
}

static void eg_end_on_stop_string(void *self, void *stream)
{
    struct eng_gen *e = self;
    engine_end_on_stop_string(e->eng, stream);
}

static void eg_release(void *stream) { token_stream_release(stream); }

static void eg_stats(void *self, struct engine_stats *out)
{
    struct eng_gen *e = self;
    engine_get_stats(e->eng, out);
}

static int eg_embedding(void *stream, const float **out) { return token_stream_embedding(stream, out); }

static void eg_destroy(void *self)
{
    struct eng_gen *e = self;
    constraint_vocab_free(e->cvocab);
    free(e);
}

static const struct gen_ops eng_ops = {
    .encode = eg_encode, .encode_literal = eg_encode_literal, .special_texts = eg_special_texts, .decode = eg_decode, .detok_new = eg_detok_new, .detok_push = eg_detok_push,
    .detok_flush = eg_detok_flush, .detok_free = eg_detok_free, .token_str = eg_token_str, .render = eg_render,
    .submit = eg_submit, .next = eg_next, .cancel = eg_cancel, .end_on_stop_string = eg_end_on_stop_string, .release = eg_release,
    .stats = eg_stats, .embedding = eg_embedding, .destroy = eg_destroy,
};

static bool is_added_token(void *ctx, const char *s) { return tokenizer_token_id(ctx, s) >= 0; }

enum status gen_engine_new(struct engine *eng, const struct tokenizer *tk, const struct chat_template *ct,
                           const char *model_id, struct gen **out)
{
    struct eng_gen *e = xcalloc(1, sizeof *e);
    e->eng = eng;
    e->tk = tk;
    e->ct = ct;
    e->g.ops = &eng_ops;
    e->g.self = e;
    snprintf(e->g.model_id, sizeof e->g.model_id, "%s", model_id ? model_id : "default");
    output_format_detect(ct ? chat_template_source(ct) : NULL, is_added_token, (void *)tk, &e->g.fmt);
    fim_detect(is_added_token, (void *)tk, &e->g.fim);
    e->g.template_src = ct ? chat_template_source(ct) : NULL;
    struct engine_stats st;
    engine_get_stats(eng, &st);
    e->g.n_ctx = st.max_context;
    e->g.chat = ct != NULL;
    e->g.n_vocab = tokenizer_vocab_size(tk);
    e->g.add_bos = true;
    e->g.sampling_default = sampling_api_default();
    const char *eos = tokenizer_eos_str(tk);
    e->g.eot_id = eos ? tokenizer_token_id(tk, eos) : -1;
    for (int k = 0; k < 6 && family_markers[e->g.fmt.tool_family][k]; k++) {
        int32_t id = tokenizer_token_id(tk, family_markers[e->g.fmt.tool_family][k]);
        if (id >= 0 && tokenizer_is_special(tk, id)) e->markers[e->n_markers++] = id;
    }
    if (e->g.eot_id >= 0 &&
        constraint_vocab_new_text(tk, &e->g.eot_id, 1, e->markers, e->n_markers, &e->cvocab) != STATUS_OK)
        e->cvocab = NULL;
    e->think_close_id = e->g.fmt.think_close[0] ? tokenizer_token_id(tk, e->g.fmt.think_close) : -1;
    *out = &e->g;
    return STATUS_OK;
}
