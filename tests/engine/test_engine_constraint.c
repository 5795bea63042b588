/* test_engine_constraint: constrained decoding through the engine, on a random-weight Qwen3 with
 * the default model's tokenizer (tests/engine/tiny_qwen3_v8k.json: vocab 8192, EOS <|im_end|>),
 * sampled at temperature 1: the hardest case, it never wants to close anything.
 * Checks: every output of every schema in tests/text/schemas/valid.jsonl (a subset, several seeds)
 * ends on a stop the constraint accepted, within max_tokens, and parses as JSON; a batch of
 * constrained and free requests (greedy, sampled, penalties, logprobs) gives each the tokens of its
 * solo run, also with 3 sampling threads and mask workers; the tightest max_tokens still closes; a max_tokens below the shortest output is
 * refused; a deferred constraint (after </think>) starts there and is forced in time.
 * Independent validation: with ENGINE_CONSTRAINT_OUT set, the outputs are written as JSONL rows
 * for tests/text/validate_constraint.mjs (ajv): tests/engine/run_engine_constraint.sh. */
#include <jansson.h>

#include "harness.h"
#include "text/grammar_walk.h"
#include "base/log.h"
#include "base/mem.h"
#include "engine/engine.h"
#include "text/constraint.h"
#include "text/tokenizer.h"
#include "model/model.h"
#include "backend/backend.h"

static struct model            *g_m;
static struct backend          *g_be;
static struct tokenizer        *g_tk;
static struct constraint_vocab *g_vocab;
static FILE                    *g_out;
static const int32_t            STOP_ID = 2;    // <|im_end|>, the synthesized model's EOS
static const int32_t            THINK_END = 4;  // </think>

#define MAXG 400

struct job {
    int32_t              prompt[16];
    int                  n_prompt;
    struct gen_request   g;
    struct token_stream *ts;
    int32_t              got[MAXG];
    int                  n_got;
    float                lp[MAXG];
    struct token_event   last;
    bool                 done;
};

static void job_init(struct job *j, uint64_t seed, int max_tokens, struct constraint *c, float temperature)
{
    memset(j, 0, sizeof *j);
    j->n_prompt = 8;
    for (int i = 0; i < j->n_prompt; i++) j->prompt[i] = 10 + (int32_t)((seed * 7919 + (uint64_t)i * 104729) % 8000);
    j->g.prompt = j->prompt;
    j->g.n_prompt = j->n_prompt;
    j->g.max_tokens = max_tokens;
    j->g.sampling = sampling_greedy();
    j->g.sampling.temperature = temperature;
    j->g.sampling.seed = seed;
    j->g.sampling.has_seed = true;
    j->g.constraint = c;
    j->g.constraint_vocab = c ? g_vocab : NULL;
}

static void job_drain(struct job *j)
{
    struct token_event ev;
    while (!j->done && token_stream_next(j->ts, &ev, 0) == STATUS_OK) {
        if (ev.has_token && j->n_got < MAXG) {
            j->lp[j->n_got] = ev.logprob;
            j->got[j->n_got++] = ev.token;
        }
        if (ev.done) {
            j->last = ev;
            j->done = true;
        }
    }
}

/* host_threads: sampling threads and mask workers (engine_cfg.sample_threads; 0: the default). */
static struct engine *new_engine_threads(int host_threads)
{
    struct engine_cfg cfg = engine_cfg_default();
    cfg.sample_threads = host_threads;
    cfg.max_batch_tokens = 128;
    cfg.max_running = 32;
    cfg.kv_cache_bytes = 16 << 20;
    struct engine *e;
    CHECK(engine_new(&cfg, g_m, g_be, &e) == STATUS_OK, "engine_new");
    return e;
}

static struct engine *new_engine(void) { return new_engine_threads(0); }

/* Submits jobs[0..n), steps until all are done, releases the streams. */
static void run_jobs(struct engine *e, struct job **jobs, int n)
{
    for (int i = 0; i < n; i++) ASSERT(engine_submit(e, &jobs[i]->g, &jobs[i]->ts) == STATUS_OK);
    for (int steps = 0; steps < 20000; steps++) {
        bool worked = engine_step(e);
        bool all = true;
        for (int i = 0; i < n; i++) {
            job_drain(jobs[i]);
            all = all && jobs[i]->done;
        }
        if (all || !worked) break;
    }
    for (int i = 0; i < n; i++) {
        EXPECT(jobs[i]->done);
        token_stream_release(jobs[i]->ts);
    }
}

static char *job_text(const struct job *j)
{
    struct strbuf sb = {0};
    for (int i = 0; i < j->n_got; i++) {
        int len;
        const uint8_t *b = constraint_vocab_token(g_vocab, j->got[i], &len);
        if (b) strbuf_append(&sb, (const char *)b, (size_t)len);
    }
    strbuf_putc(&sb, 0);
    return strbuf_take(&sb);
}

static struct constraint_grammar *compile_entry(json_t *entry)
{
    char *s = json_dumps(json_object_get(entry, "schema"), JSON_COMPACT);
    struct constraint_grammar *g = NULL;
    char err[256];
    enum status st = constraint_compile_json_schema(s, strlen(s), NULL, NULL, &g, err, sizeof err);
    free(s);
    return st == STATUS_OK ? g : NULL;
}

/* Every 4th schema of the corpus, 3 seeds each, all in one engine at once beside free requests. */
TEST(corpus_outputs_parse_and_end_on_stop)
{
    json_t *rows = walk_load_jsonl("tests/text/schemas/valid.jsonl");
    ASSERT(rows && json_array_size(rows) > 200);
    enum { SEEDS = 3 };
    size_t n_rows = json_array_size(rows);
    int n_jobs = 0, cap = (int)(n_rows / 4 + 1) * SEEDS + 8;
    struct job *jobs = xcalloc((size_t)cap, sizeof *jobs);
    struct job **ptrs = xcalloc((size_t)cap, sizeof *ptrs);
    struct constraint_grammar **gs = xcalloc(n_rows, sizeof *gs);
    json_t **entry_of = xcalloc((size_t)cap, sizeof *entry_of);
    for (size_t i = 0; i < n_rows; i += 4) {
        gs[i] = compile_entry(json_array_get(rows, i));
        EXPECTF(gs[i] != NULL, "schema %zu does not compile", i);
        if (!gs[i]) continue;
        for (int s = 0; s < SEEDS; s++) {
            int min = (int)constraint_grammar_min_bytes(gs[i]);
            int max_tokens = min + 1 + (int)(((uint64_t)i * 31 + (uint64_t)s * 57) % 120);
            if (max_tokens > MAXG) max_tokens = MAXG;
            job_init(&jobs[n_jobs], (uint64_t)(i * 10 + (size_t)s + 1), max_tokens, constraint_new(gs[i], g_vocab), 1.0f);
            entry_of[n_jobs] = json_array_get(rows, i);
            ptrs[n_jobs] = &jobs[n_jobs];
            n_jobs++;
        }
    }
    int n_constrained = n_jobs;
    for (int k = 0; k < 4; k++, n_jobs++) {   // free requests in the same batches
        job_init(&jobs[n_jobs], 1000 + (uint64_t)k, 40, NULL, 1.0f);
        jobs[n_jobs].g.ignore_eos = true;
        ptrs[n_jobs] = &jobs[n_jobs];
    }
    struct engine *e = new_engine();
    run_jobs(e, ptrs, n_jobs);
    int n_ok = 0;
    for (int i = 0; i < n_constrained; i++) {
        struct job *j = &jobs[i];
        const char *name = json_string_value(json_object_get(entry_of[i], "name"));
        EXPECTF(j->last.finish == FINISH_STOP_MATCHED && j->last.stop_token == STOP_ID,
                "%s seed %d: finish %d stop %d after %d tokens", name, i, j->last.finish, j->last.stop_token, j->n_got);
        EXPECTF(j->n_got < j->g.max_tokens, "%s: %d tokens for max_tokens %d", name, j->n_got, j->g.max_tokens);
        char *text = job_text(j);
        json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
        EXPECTF(v != NULL, "%s: output is not JSON: '%.200s'", name, text);
        if (v) n_ok++;
        json_decref(v);
        // output that is not UTF-8 is not JSON either: the check above has failed it
        if (g_out) walk_write_row(g_out, "schema", entry_of[i], text, strlen(text), (uint64_t)i);
        free(text);
    }
    for (int i = n_constrained; i < n_jobs; i++) EXPECT(jobs[i].n_got == 40);
    printf("  %d constrained outputs parse as JSON (of %d), beside %d free requests\n", n_ok, n_constrained,
           n_jobs - n_constrained);
    engine_free(e);
    for (size_t i = 0; i < n_rows; i++) constraint_grammar_free(gs[i]);
    free(gs);
    free(jobs);
    free(ptrs);
    free(entry_of);
    json_decref(rows);
}

/* Mixed batches equal solo runs: each job alone in a fresh engine, then all together. */
TEST(mixed_batch_equals_solo)
{
    const char *schema = "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":12},"
                         "\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"bc\",\"d\"]},\"maxItems\":4},"
                         "\"n\":{\"type\":\"integer\"}},\"required\":[\"name\",\"tags\",\"n\"],\"additionalProperties\":false}";
    struct constraint_grammar *g;
    char err[256];
    ASSERT(constraint_compile_json_schema(schema, strlen(schema), NULL, NULL, &g, err, sizeof err) == STATUS_OK);
    enum { N = 8 };
    static struct job solo[N], mixed[N], threaded[N];
    for (int pass = 0; pass < 3; pass++) {   // solo, mixed, mixed on 3 sampling threads and mask workers
        struct job *js = pass == 0 ? solo : pass == 1 ? mixed : threaded;
        for (int i = 0; i < N; i++) {
            bool cons = i % 2 == 0;
            job_init(&js[i], 500 + (uint64_t)i, 60, cons ? constraint_new(g, g_vocab) : NULL, i % 4 == 2 ? 0.0f : 1.0f);
            if (i == 4) js[i].g.sampling.presence_penalty = 0.7f, js[i].g.sampling.repetition_penalty = 1.3f;
            if (i == 2 || i == 3) js[i].g.n_logprobs = 3;
            if (!cons) js[i].g.ignore_eos = true;
        }
        if (pass == 0) {
            for (int i = 0; i < N; i++) {
                struct engine *e = new_engine();
                struct job *p = &js[i];
                run_jobs(e, &p, 1);
                engine_free(e);
            }
        } else {
            struct job *ptrs[N];
            for (int i = 0; i < N; i++) ptrs[i] = &js[i];
            struct engine *e = new_engine_threads(pass == 2 ? 3 : 0);
            run_jobs(e, ptrs, N);
            engine_free(e);
        }
    }
    for (int i = 0; i < N; i++) {
        EXPECTF(solo[i].n_got == mixed[i].n_got && !memcmp(solo[i].got, mixed[i].got, (size_t)solo[i].n_got * 4),
                "job %d: solo %d tokens, mixed %d", i, solo[i].n_got, mixed[i].n_got);
        EXPECT(solo[i].last.finish == mixed[i].last.finish);
        EXPECTF(solo[i].n_got == threaded[i].n_got && !memcmp(solo[i].got, threaded[i].got, (size_t)solo[i].n_got * 4) &&
                solo[i].last.finish == threaded[i].last.finish,
                "job %d on 3 host threads: %d tokens, solo %d", i, threaded[i].n_got, solo[i].n_got);
        if (i % 2 == 0) {
            char *text = job_text(&solo[i]);
            json_t *v = json_loads(text, 0, NULL);
            EXPECTF(v && json_is_string(json_object_get(v, "name")) && json_is_array(json_object_get(v, "tags")) &&
                    json_is_integer(json_object_get(v, "n")) && json_object_size(v) == 3, "job %d: '%s'", i, text);
            json_decref(v);
            free(text);
        }
        if (i == 2) {   // greedy with logprobs under the mask: the chosen token is the most likely allowed one
            for (int k = 0; k < solo[i].n_got; k++) EXPECT(solo[i].lp[k] <= 0.0f && solo[i].lp[k] > -INFINITY);
        }
    }
    constraint_grammar_free(g);
}

/* max_tokens exactly the shortest output closes; one less is refused at submit, with the count. */
TEST(budget_tight_and_too_small)
{
    const char *schema = "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\",\"minLength\":3},"
                         "\"days\":{\"type\":\"integer\"}},\"required\":[\"city\",\"days\"]}";
    struct constraint_grammar *g;
    ASSERT(constraint_compile_json_schema(schema, strlen(schema), NULL, NULL, &g, NULL, 0) == STATUS_OK);
    int min = (int)constraint_grammar_min_bytes(g);
    struct engine *e = new_engine();
    for (int s = 0; s < 4; s++) {
        struct job j;
        job_init(&j, 70 + (uint64_t)s, min + 1, constraint_new(g, g_vocab), 1.0f);   // + 1: the stop token
        struct job *p = &j;
        run_jobs(e, &p, 1);
        char *text = job_text(&j);
        json_t *v = json_loads(text, 0, NULL);
        EXPECTF(v && json_string_length(json_object_get(v, "city")) >= 3 && json_is_integer(json_object_get(v, "days")),
                "tight budget %d: '%s' (finish %d)", min + 1, text, j.last.finish);
        EXPECT(j.last.finish == FINISH_STOP_MATCHED);
        json_decref(v);
        free(text);
    }
    struct job j;
    struct constraint *c = constraint_new(g, g_vocab);
    job_init(&j, 1, min, c, 1.0f);   // no room for the stop token
    char msg[256];
    EXPECT(engine_submit_msg(e, &j.g, &j.ts, msg, sizeof msg) == STATUS_EINVAL);
    EXPECTF(strstr(msg, "max_tokens") != NULL, "message: %s", msg);
    constraint_free(c);   // a failed submit leaves it to the caller
    engine_free(e);
    constraint_grammar_free(g);
}

/* constraint_after: free tokens until </think>, the constraint from there; forced in time. */
TEST(deferred_after_think)
{
    struct constraint_grammar *g;
    ASSERT(constraint_compile_regex("(yes|no)", 8, NULL, &g, NULL, 0) == STATUS_OK);
    struct engine *e = new_engine();
    for (int s = 0; s < 4; s++) {
        struct job j;
        job_init(&j, 90 + (uint64_t)s, 12 + s, constraint_new(g, g_vocab), 1.0f);
        j.g.constraint_after = THINK_END;
        // odd seeds: the model wants to stop at once; it may not before the constrained part
        struct logit_bias eos_bias = { .id = STOP_ID, .bias = 100.0f };
        if (s % 2) j.g.sampling.bias = &eos_bias, j.g.sampling.n_bias = 1;
        struct job *p = &j;
        run_jobs(e, &p, 1);
        int at = -1;
        for (int k = 0; k < j.n_got && at < 0; k++)
            if (j.got[k] == THINK_END) at = k;
        EXPECTF(at >= 0, "seed %d: no </think> in %d tokens", s, j.n_got);
        struct strbuf sb = {0};
        for (int k = at + 1; k < j.n_got; k++) {
            int len;
            const uint8_t *b = constraint_vocab_token(g_vocab, j.got[k], &len);
            if (b) strbuf_append(&sb, (const char *)b, (size_t)len);
        }
        strbuf_putc(&sb, 0);
        EXPECTF(!strcmp(sb.data, "yes") || !strcmp(sb.data, "no"), "seed %d: after </think>: '%s'", s, sb.data);
        EXPECT(j.last.finish == FINISH_STOP_MATCHED);
        strbuf_free(&sb);
    }
    engine_free(e);
    constraint_grammar_free(g);
}

int main(void)
{
    log_init_from_env();
    CHECK(model_synthesize("tests/engine/tiny_qwen3_v8k.json", 11, &g_m) == STATUS_OK, "cannot synthesize");
    CHECK(backend_new("cpu", &(struct backend_cfg){ .n_threads = 2 }, &g_be) == STATUS_OK, "no cpu backend");
    CHECK(model_prepare(g_m, g_be) == STATUS_OK, "model_prepare failed");
    CHECK(tokenizer_load("models/default", &g_tk) == STATUS_OK, "no tokenizer in models/default");
    CHECK(constraint_vocab_new(g_tk, &STOP_ID, 1, &g_vocab) == STATUS_OK, "constraint_vocab_new");
    const char *out = getenv("ENGINE_CONSTRAINT_OUT");
    if (out) g_out = fopen(out, "w");
    RUN(corpus_outputs_parse_and_end_on_stop);
    RUN(mixed_batch_equals_solo);
    RUN(budget_tight_and_too_small);
    RUN(deferred_after_think);
    if (g_out) fclose(g_out);
    constraint_vocab_free(g_vocab);
    tokenizer_free(g_tk);
    model_free(g_m);
    backend_free(g_be);
    return test_summary();
}
