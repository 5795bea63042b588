/* gen_fake: a test-only model provider (see gen.h) so the HTTP layer is tested without weights.
 *
 * Tokenizer: ids 0..6 are added tokens (<|endoftext|>, <|im_start|>, <|im_end|>, <think>, </think>,
 * <tool_call>, </tool_call>; the first three are special), id 16 + b is byte b. Template: ChatML
 * as Qwen3 renders it (tools listed in the system turn; enable_thinking=false closes an empty think
 * block; think_open=true leaves one open). Generation: a seeded word generator with the engine's
 * stream semantics: at temperature 0 the output depends on the prompt only, otherwise on the seed;
 * max_tokens ends with "length"; gen_req.test_delay_ms delays the first token (a slow prefill). Each stream
 * computes its tokens on the reader's thread, paced at token_us per token. KV usage is simulated
 * (16-token blocks of live streams) so /metrics can show leaks.
 */
#include "server/gen.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/rng.h"
#include "server/jsonw.h"
#include "text/tokenizer.h"

#define FAKE_N_ADDED 7
#define FAKE_BYTE0   16
#define FAKE_VOCAB   (FAKE_BYTE0 + 256)
#define FAKE_EOS     2     // <|im_end|>
#define FAKE_BLOCK   16
#define FAKE_BLOCKS  4096

static const char *fake_added[FAKE_N_ADDED] = {
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
};

static const char *fake_template_src =
    "{# cairn fake ChatML template (test-only) #}{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{{ m.content }}<|im_end|>\n{% endfor %}{% if tools %}<tools></tools> <tool_call>{% endif %}"
    "<|im_start|>assistant\n{% if enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}";

static const char *fake_words[] = {
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "caf\xC3\xA9", "na\xC3\xAFve", "\xE2\x9C\x93", "\"q\"",
};

struct fake {
    struct gen      g;
    int             token_us;
    int             max_live;
    pthread_mutex_t mu;
    int             n_live;           // streams not yet done
    int             blocks_used;
    uint64_t        prompt_tokens, generated_tokens, n_submitted;
    double          last_progress_s;
    char            tokstr[256][2];   // byte tokens as strings
};

struct fake_stream {
    struct fake    *f;
    int32_t        *prompt;
    int             n_prompt;
    int             max_tokens;
    int             n_logprobs;
    int32_t        *stop_ids;
    int             n_stop_ids;
    bool            ignore_eos;
    int             min_tokens;
    struct rng      rng;
    int             n_gen;
    const char     *word;             // current word being spelled, NULL between words
    int             word_pos;
    int64_t         due_ns;           // when the next token is ready
    int64_t         t0_ns;
    double          t_first_s;
    int             blocks;           // simulated KV blocks held
    atomic_bool     canceled;
    bool            done;
};

/* ==== Tokenizer ==== */

static bool fake_in_literal(const struct tk_literal *lit, int n_lit, size_t a, size_t b)
{
    for (int i = 0; i < n_lit; i++)
        if (a < lit[i].end && lit[i].start < b) return true;
    return false;
}

/* The first three added tokens are special: inside a literal range they are bytes. */
static enum status fake_encode_literal(void *self, const char *text, size_t len, bool add_special,
                                       const struct tk_literal *lit, int n_lit, int32_t **ids, int *n)
{
    int32_t *v = malloc((len + 1) * sizeof *v);
    if (!v) return STATUS_ENOMEM;
    int k = 0;
    for (size_t i = 0; i < len;) {
        int hit = -1;
        if (text[i] == '<')
            for (int a = 0; a < FAKE_N_ADDED; a++) {
                size_t al = strlen(fake_added[a]);
                if (al <= len - i && !memcmp(text + i, fake_added[a], al) && !(a < 3 && fake_in_literal(lit, n_lit, i, i + al))) {
                    hit = a;
                    break;
                }
            }
        if (hit >= 0) { v[k++] = hit; i += strlen(fake_added[hit]); }
        else v[k++] = FAKE_BYTE0 + (unsigned char)text[i++];
    }
    *ids = v;
    *n = k;
    return STATUS_OK;
}

static enum status fake_encode(void *self, const char *text, size_t len, bool add_special, int32_t **ids, int *n)
{
    return fake_encode_literal(self, text, len, add_special, NULL, 0, ids, n);
}

static const char *const *fake_special_texts(void *self)
{
    static const char *const texts[] = { "<|endoftext|>", "<|im_start|>", "<|im_end|>", NULL };
    return texts;
}

static void piece(struct strbuf *sb, int32_t id, bool skip_special)
{
    if (id >= FAKE_BYTE0 && id < FAKE_VOCAB) strbuf_putc(sb, (char)(id - FAKE_BYTE0));
    else if (id >= 0 && id < FAKE_N_ADDED && !(skip_special && id < 3)) strbuf_puts(sb, fake_added[id]);
}

static char *fake_decode(void *self, const int32_t *ids, int n, bool skip_special)
{
    struct strbuf sb = {0}, out = {0};
    for (int i = 0; i < n; i++) piece(&sb, ids[i], skip_special);
    // like HF: invalid UTF-8 becomes U+FFFD
    size_t i = 0;
    while (i < sb.len) {
        size_t ok = utf8_valid_prefix(sb.data + i, sb.len - i);
        strbuf_append(&out, sb.data + i, ok);
        i += ok;
        if (i < sb.len) { strbuf_puts(&out, "\xEF\xBF\xBD"); i++; }
    }
    strbuf_free(&sb);
    if (!out.data) strbuf_puts(&out, "");
    return strbuf_take(&out);
}

struct fake_detok { struct strbuf held; };

static void *fake_detok_new(void *self) { return xcalloc(1, sizeof(struct fake_detok)); }

static char *fake_detok_push(void *d, int32_t id)
{
    struct fake_detok *dt = d;
    piece(&dt->held, id, true);
    struct strbuf out = {0};
    size_t i = 0;
    while (i < dt->held.len) {
        uint32_t cp;
        int n = utf8_next(dt->held.data + i, dt->held.len - i, &cp);
        if (n < 0) break;   // incomplete character: wait for the next byte
        if (n == 0) { strbuf_puts(&out, "\xEF\xBF\xBD"); i++; continue; }
        strbuf_append(&out, dt->held.data + i, (size_t)n);
        i += (size_t)n;
    }
    if (i) {
        memmove(dt->held.data, dt->held.data + i, dt->held.len - i);
        dt->held.len -= i;
        dt->held.data[dt->held.len] = 0;
    }
    if (!out.data) strbuf_puts(&out, "");
    return strbuf_take(&out);
}

static char *fake_detok_flush(void *d)
{
    struct fake_detok *dt = d;
    struct strbuf out = {0};
    if (dt->held.len) strbuf_puts(&out, "\xEF\xBF\xBD");
    strbuf_clear(&dt->held);
    if (!out.data) strbuf_puts(&out, "");
    return strbuf_take(&out);
}

static void fake_detok_free(void *d)
{
    struct fake_detok *dt = d;
    if (!dt) return;
    strbuf_free(&dt->held);
    free(dt);
}

static const char *fake_token_str(void *self, int32_t id)
{
    struct fake *f = self;
    if (id >= 0 && id < FAKE_N_ADDED) return fake_added[id];
    if (id < FAKE_BYTE0 || id >= FAKE_VOCAB) return NULL;
    return f->tokstr[id - FAKE_BYTE0];
}

/* ==== Template ==== */

static void put_content(struct strbuf *sb, json_t *content)
{
    if (json_is_string(content)) strbuf_append(sb, json_string_value(content), json_string_length(content));
    else if (json_is_array(content)) {
        size_t i;
        json_t *p;
        json_array_foreach(content, i, p) {
            json_t *t = json_object_get(p, "text");
            if (json_is_string(t)) strbuf_append(sb, json_string_value(t), json_string_length(t));
        }
    }
}

static enum status fake_render(void *self, json_t *messages, json_t *tools, json_t *kwargs, bool add_gen,
                               char **out_text, char **err_msg)
{
    struct strbuf sb = {0};
    size_t i;
    json_t *m;
    if (json_array_size(tools)) {
        char *ts = json_dumps(tools, JSON_COMPACT);
        strbuf_printf(&sb, "<|im_start|>system\n# Tools\n<tools>%s</tools>\nCall tools in <tool_call></tool_call>.<|im_end|>\n", ts);
        free(ts);
    }
    json_array_foreach(messages, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!role || (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "tool"))) {
            *err_msg = xstrdup("Unexpected message role.");   // as a Jinja raise_exception would say
            strbuf_free(&sb);
            return STATUS_ETEMPLATE;
        }
        json_t *ct = json_object_get(m, "content");
        if (i > 0 && !strcmp(role, "system") && json_is_true(json_object_get(kwargs, "fake_system_first_only"))) {
            // as Gemma's and Mistral's templates refuse a system turn that is not the first
            *err_msg = xstrdup("raise_exception raised: system message must be at the beginning");
            strbuf_free(&sb);
            return STATUS_ETEMPLATE;
        }
        if (json_is_string(ct) && strstr(json_string_value(ct), "RAISE_TEMPLATE_ERROR")) {
            // what a template's raise_exception() looks like to the server
            *err_msg = xstrdup("raise_exception raised: this template refuses RAISE_TEMPLATE_ERROR");
            strbuf_free(&sb);
            return STATUS_ETEMPLATE;
        }
        strbuf_printf(&sb, "<|im_start|>%s\n", role);
        json_t *rc = json_object_get(m, "reasoning_content");
        if (json_is_string(rc)) strbuf_printf(&sb, "<think>\n%s\n</think>\n\n", json_string_value(rc));
        put_content(&sb, json_object_get(m, "content"));
        size_t k;
        json_t *tc;
        json_array_foreach(json_object_get(m, "tool_calls"), k, tc) {
            char *s = json_dumps(json_object_get(tc, "function"), JSON_COMPACT);
            strbuf_printf(&sb, "\n<tool_call>\n%s\n</tool_call>", s ? s : "{}");
            free(s);
        }
        strbuf_puts(&sb, "<|im_end|>\n");
    }
    if (add_gen) {
        strbuf_puts(&sb, "<|im_start|>assistant\n");
        if (json_is_false(json_object_get(kwargs, "enable_thinking"))) strbuf_puts(&sb, "<think>\n\n</think>\n\n");
        else if (json_is_true(json_object_get(kwargs, "think_open"))) strbuf_puts(&sb, "<think>\n");
    }
    if (!sb.data) strbuf_puts(&sb, "");
    *out_text = strbuf_take(&sb);
    return STATUS_OK;
}

/* ==== Generation ==== */

static uint64_t hash_ids(const int32_t *ids, int n)
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++) { h ^= (uint64_t)(uint32_t)ids[i]; h *= 1099511628211ull; }
    return h;
}

static enum status fake_submit(void *self, const struct gen_req *req, void **out, char *msg, size_t msg_len)
{
    struct fake *f = self;
    if (req->base.n_prompt <= 0 || req->base.max_tokens <= 0) return STATUS_EINVAL;
    if (req->grammar) {   // its words would not match: refuse rather than pretend
        if (msg) snprintf(msg, msg_len, "constrained decoding needs a model (the test provider has none)");
        return STATUS_EUNSUPPORTED;
    }
    if (req->base.n_prompt + 1 > f->g.n_ctx) {
        if (msg) snprintf(msg, msg_len, "the prompt has %d tokens; the context holds %d", req->base.n_prompt, f->g.n_ctx);
        return STATUS_ETOOLONG;
    }
    pthread_mutex_lock(&f->mu);
    bool full = f->n_live >= f->max_live;
    pthread_mutex_unlock(&f->mu);
    if (full) return STATUS_EBUSY;
    struct fake_stream *s = xcalloc(1, sizeof *s);
    s->f = f;
    s->n_prompt = req->base.n_prompt;
    s->prompt = xmalloc((size_t)s->n_prompt * sizeof *s->prompt);
    memcpy(s->prompt, req->base.prompt, (size_t)s->n_prompt * sizeof *s->prompt);
    s->ignore_eos = req->base.ignore_eos;
    s->min_tokens = req->base.min_tokens;
    if (req->base.n_stop_ids) {
        s->stop_ids = xmalloc((size_t)req->base.n_stop_ids * sizeof *s->stop_ids);
        memcpy(s->stop_ids, req->base.stop_ids, (size_t)req->base.n_stop_ids * sizeof *s->stop_ids);
        s->n_stop_ids = req->base.n_stop_ids;
    }
    s->max_tokens = req->base.max_tokens;
    s->n_logprobs = req->base.n_logprobs;
    uint64_t seed = hash_ids(s->prompt, s->n_prompt);
    if (req->base.sampling.temperature > 0)
        seed = req->base.sampling.has_seed ? req->base.sampling.seed * 0x9E3779B97F4A7C15ull + 1
                                           : (uint64_t)clock_now_ns() ^ (uint64_t)(uintptr_t)s;
    rng_seed(&s->rng, seed);
    s->t0_ns = clock_now_ns();
    // prefill: 2 us per prompt token, plus the test delay
    s->due_ns = s->t0_ns + (int64_t)s->n_prompt * 2000 + (int64_t)req->test_delay_ms * 1000000;
    pthread_mutex_lock(&f->mu);
    s->blocks = (s->n_prompt + FAKE_BLOCK - 1) / FAKE_BLOCK;
    f->blocks_used += s->blocks;
    if (!f->n_live) f->last_progress_s = clock_now_s();   // it was idle, hence alive, until now
    f->n_live++;
    f->n_submitted++;
    f->prompt_tokens += (uint64_t)s->n_prompt;
    pthread_mutex_unlock(&f->mu);
    *out = s;
    return STATUS_OK;
}

static void stream_end(struct fake_stream *s)
{
    if (s->done) return;
    s->done = true;
    pthread_mutex_lock(&s->f->mu);
    s->f->blocks_used -= s->blocks;
    s->blocks = 0;
    s->f->n_live--;
    pthread_mutex_unlock(&s->f->mu);
}

static int32_t next_token(struct fake_stream *s)
{
    if (!s->word) {
        s->word = fake_words[rng_next(&s->rng) % (sizeof fake_words / sizeof fake_words[0])];
        s->word_pos = 0;
    }
    int32_t id;
    if (s->word[s->word_pos]) id = FAKE_BYTE0 + (unsigned char)s->word[s->word_pos++];
    else { id = FAKE_BYTE0 + ' '; s->word = NULL; }
    return id;
}

static enum status fake_next(void *stream, struct token_event *ev, int timeout_ms)
{
    struct fake_stream *s = stream;
    memset(ev, 0, sizeof *ev);
    ev->n_prompt = s->n_prompt;
    ev->n_generated = s->n_gen;
    CHECK(!s->done, "fake stream read after its end");
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : clock_now_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        if (atomic_load(&s->canceled)) {
            ev->done = true;
            ev->finish = FINISH_CANCELED;
            break;
        }
        int64_t now = clock_now_ns();
        if (now >= s->due_ns) {
            int32_t id = next_token(s);
            bool eos;
            for (;;) {   // before min_tokens, an ending token is not drawn: the next id is
                eos = id == FAKE_EOS && !s->ignore_eos;
                for (int i = 0; i < s->n_stop_ids; i++) eos |= id == s->stop_ids[i];
                if (!eos || s->n_gen >= s->min_tokens) break;
                id = (id + 1) % FAKE_VOCAB;
            }
            if (eos) { ev->done = true; ev->finish = FINISH_STOP_MATCHED; break; }
            ev->token = id;
            ev->has_token = true;
            s->n_gen++;
            if (s->n_gen == 1) s->t_first_s = (double)(now - s->t0_ns) * 1e-9;
            if (s->n_logprobs) {
                ev->logprob = -(float)(rng_next(&s->rng) % 3000) / 1000.0f;
                int nt = s->n_logprobs > 20 ? 20 : s->n_logprobs < 0 ? 0 : s->n_logprobs;
                for (int i = 0; i < nt; i++) {
                    ev->top[i].id = i == 0 ? id : FAKE_BYTE0 + 'a' + (int)((unsigned)(id + i) % 26);
                    ev->top[i].logprob = i == 0 ? ev->logprob : ev->logprob - (float)i;
                }
                ev->n_top = nt;
            }
            s->due_ns = now + (int64_t)s->f->token_us * 1000;
            pthread_mutex_lock(&s->f->mu);
            int nb = (s->n_prompt + s->n_gen + FAKE_BLOCK - 1) / FAKE_BLOCK;
            s->f->blocks_used += nb - s->blocks;
            s->blocks = nb;
            s->f->generated_tokens++;
            s->f->last_progress_s = clock_now_s();
            pthread_mutex_unlock(&s->f->mu);
            if (s->n_gen >= s->max_tokens || s->n_prompt + s->n_gen >= s->f->g.n_ctx) {
                ev->done = true;
                ev->finish = FINISH_LENGTH;
            }
            break;
        }
        if (now >= deadline) return STATUS_EBUSY;
        int64_t wait = s->due_ns - now;
        if (wait > deadline - now) wait = deadline - now;
        if (wait > 5000000) wait = 5000000;   // re-check cancellation every 5 ms
        struct timespec ts = { 0, (long)wait };
        nanosleep(&ts, NULL);
    }
    ev->n_generated = s->n_gen;
    ev->t_first_s = s->t_first_s;
    ev->t_done_s = (double)(clock_now_ns() - s->t0_ns) * 1e-9;
    if (ev->done) stream_end(s);
    return STATUS_OK;
}

static void fake_cancel(void *self, void *stream)
{
    struct fake_stream *s = stream;
    atomic_store(&s->canceled, true);
}

static void fake_release(void *stream)
{
    struct fake_stream *s = stream;
    if (!s) return;
    stream_end(s);
    free(s->prompt);
    free(s->stop_ids);
    free(s);
}

static void fake_stats(void *self, struct engine_stats *out)
{
    struct fake *f = self;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&f->mu);
    out->n_running = f->n_live;
    out->n_pending = f->n_live;
    out->kv_blocks_total = FAKE_BLOCKS;
    out->kv_blocks_used = f->blocks_used;
    out->kv_blocks_free = FAKE_BLOCKS - f->blocks_used;
    out->prompt_tokens = f->prompt_tokens;
    out->generated_tokens = f->generated_tokens;
    // as the engine's heartbeat: nothing to do is alive; a stream held back by its test delay is
    // work without progress (how the tests make /health see a stalled engine)
    out->last_progress_s = f->n_live ? f->last_progress_s : clock_now_s();
    pthread_mutex_unlock(&f->mu);
}

static void fake_destroy(void *self)
{
    struct fake *f = self;
    pthread_mutex_destroy(&f->mu);
    free(f);
}

static const struct gen_ops fake_ops = {
    .encode = fake_encode, .encode_literal = fake_encode_literal, .special_texts = fake_special_texts, .decode = fake_decode,
    .detok_new = fake_detok_new, .detok_push = fake_detok_push, .detok_flush = fake_detok_flush,
    .detok_free = fake_detok_free, .token_str = fake_token_str, .render = fake_render,
    .submit = fake_submit, .next = fake_next, .cancel = fake_cancel, .end_on_stop_string = fake_cancel, .release = fake_release,
    .stats = fake_stats, .destroy = fake_destroy,
};

static bool fake_is_added(void *ctx, const char *s)
{
    for (int a = 0; a < FAKE_N_ADDED; a++)
        if (!strcmp(s, fake_added[a])) return true;
    return false;
}

enum status gen_fake_new(const struct gen_fake_cfg *cfg, struct gen **out)
{
    struct fake *f = xcalloc(1, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    f->token_us = cfg && cfg->token_us > 0 ? cfg->token_us : 1000;
    f->max_live = cfg && cfg->max_live > 0 ? cfg->max_live : 256;
    f->g.ops = &fake_ops;
    f->g.self = f;
    snprintf(f->g.model_id, sizeof f->g.model_id, "cairn-fake");
    output_format_detect(fake_template_src, fake_is_added, NULL, &f->g.fmt);
    fim_detect(fake_is_added, NULL, &f->g.fim);   // the fake has no FIM tokens: suffix requests answer 400
    f->g.template_src = fake_template_src;
    f->g.n_ctx = cfg && cfg->n_ctx > 0 ? cfg->n_ctx : 4096;
    f->g.sampling_default = sampling_api_default();
    f->g.chat = true;
    f->g.n_vocab = FAKE_VOCAB;
    f->g.eot_id = FAKE_EOS;
    f->last_progress_s = clock_now_s();
    for (int b = 0; b < 256; b++) f->tokstr[b][0] = (char)b;
    *out = &f->g;
    return STATUS_OK;
}

void gen_free(struct gen *g)
{
    if (g) g->ops->destroy(g->self);
}
