/* test_constrained_greedy: constrained decoding through the engine on each backend
 * (CAIRN_TEST_BACKENDS, default "ref,cpu"; make test-cuda runs it on cuda), with the default model
 * (trained, so its logits are not flat) and its tokenizer, against a reference made on the same
 * backend without the engine's masking: one sequence through the runner, every logits row
 * downloaded, the constraint's mask applied on the host, argmax over the allowed ids.
 * One batch holds: the constrained greedy request (masked by the backend's logits_mask, then its
 * argmax), the same with logprobs (masked, downloaded, the host sampler), a free greedy request and
 * a sampled constrained one with penalties (a mixed batch). Both greedy ones must give the
 * reference's tokens and stop: exactly on ref and cpu (their rows do not depend on the batch); on
 * cuda up to the first step where the reference's two best allowed logits are within TIE of the
 * largest |logit| (the batch's kernels round differently from the runner's), at least 8 tokens.
 * The sampled one must be JSON with the schema's fields and end on the stop id. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"
#include "engine/engine.h"
#include "engine/runner.h"
#include "harness.h"
#include "model/fixture_model.h"
#include "text/constraint.h"
#include "text/tokenizer.h"

#define MODEL   "models/default"
#define MAX_GEN 48
#define TIE     2e-2

static const char *SCHEMA =
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":16},"
    "\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":150},\"lang\":{\"enum\":[\"python\",\"c\",\"rust\"]}},"
    "\"required\":[\"name\",\"age\",\"lang\"],\"additionalProperties\":false}";
static const char *PROMPT = "<|im_start|>user\nDescribe a programmer as JSON with a name, an age and a language."
                            "<|im_end|>\n<|im_start|>assistant\n";

struct reference {
    int32_t tok[MAX_GEN];   // generated tokens, the stop id last
    int     n;
    int     exact;          // tokens before the first near-tie (all of them when there is none)
};

/* Host-masked greedy on the runner: the oracle the engine's backend masking must reproduce. */
static void reference_run(struct opened *o, const struct constraint_grammar *g, const struct constraint_vocab *v,
                          const int32_t *prompt, int n_prompt, struct reference *ref)
{
    int n_vocab = o->m->hp.n_vocab, n_ids = constraint_vocab_size(v);
    int lim = n_ids < n_vocab ? n_ids : n_vocab;
    float *logits = xmalloc((size_t)n_vocab * sizeof *logits);
    uint32_t *mask = xmalloc((size_t)constraint_mask_words(v) * sizeof *mask);
    struct runner *run;
    CHECK(runner_new(o->m, o->be, 512, 64, DTYPE_F32, &run) == STATUS_OK, "runner_new");
    struct constraint *c = constraint_new(g, v);
    CHECK(runner_feed(run, prompt, n_prompt, logits, false) == STATUS_OK, "runner_feed");
    ref->n = 0;
    ref->exact = -1;
    for (int k = 0; k < MAX_GEN; k++) {
        CHECK(constraint_mask(c, MAX_GEN - k - 1, mask) == STATUS_OK, "constraint_mask");
        int best = -1, second = -1;
        float amax = 0;
        for (int i = 0; i < n_vocab; i++) amax = fmaxf(amax, fabsf(logits[i]));
        for (int i = 0; i < lim; i++) {
            if (!(mask[i >> 5] >> (i & 31) & 1)) continue;
            if (best < 0 || logits[i] > logits[best]) second = best, best = i;
            else if (second < 0 || logits[i] > logits[second]) second = i;
        }
        CHECK(best >= 0, "the constraint allows nothing at step %d", k);
        if (ref->exact < 0 && second >= 0 && logits[best] - logits[second] < TIE * amax) ref->exact = k;
        ref->tok[ref->n++] = best;
        CHECK(constraint_advance(c, best) == STATUS_OK, "advance");
        if (constraint_is_finished(c)) break;
        CHECK(runner_feed(run, &best, 1, logits, false) == STATUS_OK, "runner_feed");
    }
    if (ref->exact < 0) ref->exact = ref->n;
    constraint_free(c);
    runner_free(run);
    free(mask);
    free(logits);
}

struct job {
    struct gen_request   g;
    struct token_stream *ts;
    int32_t              got[MAX_GEN + 1];
    int                  n;
    struct token_event   last;
    bool                 done;
};

static void job_drain(struct job *j)
{
    struct token_event ev;
    while (!j->done && token_stream_next(j->ts, &ev, 0) == STATUS_OK) {
        if (ev.has_token && j->n < MAX_GEN) j->got[j->n++] = ev.token;
        if (ev.done) j->last = ev, j->done = true;
    }
}

/* The engine's tokens as the reference counts them: the generated ones, then the stop id. */
static int job_tokens(const struct job *j, int32_t *out)
{
    memcpy(out, j->got, (size_t)j->n * sizeof *out);
    int n = j->n;
    if (j->last.finish == FINISH_STOP_MATCHED && j->last.stop_token >= 0) out[n++] = j->last.stop_token;
    return n;
}

static bool same_tokens(const char *be, const char *what, const struct job *j, const struct reference *ref, bool exact)
{
    int32_t got[MAX_GEN + 1];
    int n = job_tokens(j, got);
    int need = exact ? ref->n : (ref->exact > 8 ? ref->exact : 8);
    if (need > ref->n) need = ref->n;
    int same = 0;
    while (same < n && same < ref->n && got[same] == ref->tok[same]) same++;
    bool ok = same >= need && (!exact || n == ref->n);
    if (!ok)
        fprintf(stderr, "  %s %s: %d tokens, the first %d as the reference's %d (%d needed)\n", be, what, n, same, ref->n,
                need);
    return ok;
}

static void check_backend(const char *name, struct tokenizer *tk, const struct constraint_grammar *g)
{
    struct opened o;
    if (open_model(MODEL, name, &o) != STATUS_OK) {
        fprintf(stderr, "FAIL: cannot open %s on %s\n", MODEL, name);
        EXPECT(0);
        return;
    }
    int32_t stop = o.m->hp.eos_ids[0];
    struct constraint_vocab *v;
    CHECK(constraint_vocab_new(tk, &stop, 1, &v) == STATUS_OK, "constraint_vocab_new");
    int32_t *prompt;
    int n_prompt;
    CHECK(tokenizer_encode(tk, PROMPT, strlen(PROMPT), false, &prompt, &n_prompt) == STATUS_OK, "encode");
    struct reference ref;
    reference_run(&o, g, v, prompt, n_prompt, &ref);

    struct engine_cfg cfg = engine_cfg_default();
    cfg.max_batch_tokens = 256;
    cfg.max_running = 8;
    cfg.kv_cache_bytes = 32 << 20;
    struct engine *e;
    CHECK(engine_new(&cfg, o.m, o.be, &e) == STATUS_OK, "engine_new");
    enum { GREEDY, GREEDY_LOGPROBS, FREE, SAMPLED, N };
    static struct job jobs[N];
    memset(jobs, 0, sizeof jobs);
    for (int i = 0; i < N; i++) {
        struct gen_request *q = &jobs[i].g;
        q->prompt = prompt;
        q->n_prompt = n_prompt;
        q->max_tokens = MAX_GEN;
        q->sampling = sampling_greedy();
        if (i != FREE) {
            q->constraint = constraint_new(g, v);
            q->constraint_vocab = v;
        }
        if (i == GREEDY_LOGPROBS) q->n_logprobs = 2;
        if (i == FREE) q->ignore_eos = true;
        if (i == SAMPLED) {
            q->sampling.temperature = 1.0f;
            q->sampling.seed = 7;
            q->sampling.has_seed = true;
            q->sampling.presence_penalty = 0.5f;
            q->sampling.repetition_penalty = 1.2f;
        }
        CHECK(engine_submit(e, q, &jobs[i].ts) == STATUS_OK, "submit");
    }
    for (int steps = 0; steps < 1000; steps++) {
        bool worked = engine_step(e);
        bool all = true;
        for (int i = 0; i < N; i++) {
            job_drain(&jobs[i]);
            all = all && jobs[i].done;
        }
        if (all || !worked) break;
    }
    bool exact = strncmp(name, "cuda", 4) != 0;
    for (int i = 0; i < N; i++) EXPECTF(jobs[i].done, "%s job %d did not finish", name, i);
    EXPECTF(same_tokens(name, "greedy", &jobs[GREEDY], &ref, exact), "%s: constrained greedy differs", name);
    EXPECTF(same_tokens(name, "greedy + logprobs", &jobs[GREEDY_LOGPROBS], &ref, exact),
            "%s: constrained greedy with logprobs differs", name);
    EXPECTF(jobs[FREE].n == MAX_GEN, "%s: free request gave %d tokens", name, jobs[FREE].n);
    EXPECTF(jobs[GREEDY].last.finish == FINISH_STOP_MATCHED && jobs[GREEDY_LOGPROBS].last.finish == FINISH_STOP_MATCHED,
            "%s: greedy finishes %d %d", name, jobs[GREEDY].last.finish, jobs[GREEDY_LOGPROBS].last.finish);
    // the sampled one: JSON with the schema's fields, ended by the constraint
    struct strbuf sb = {0};
    for (int k = 0; k < jobs[SAMPLED].n; k++) {
        int len;
        const uint8_t *b = constraint_vocab_token(v, jobs[SAMPLED].got[k], &len);
        if (b) strbuf_append(&sb, (const char *)b, (size_t)len);
    }
    strbuf_putc(&sb, 0);
    json_t *js = json_loads(sb.data, 0, NULL);
    EXPECTF(js && json_is_string(json_object_get(js, "name")) && json_is_integer(json_object_get(js, "age")) &&
            json_is_string(json_object_get(js, "lang")) && jobs[SAMPLED].last.finish == FINISH_STOP_MATCHED,
            "%s: sampled output '%s' (finish %d)", name, sb.data, jobs[SAMPLED].last.finish);
    json_decref(js);
    printf("  %s: constrained greedy %d tokens (reference %d, %d before a near-tie), sampled '%s'\n", name,
           jobs[GREEDY].n, ref.n, ref.exact, sb.data);
    strbuf_free(&sb);
    for (int i = 0; i < N; i++) token_stream_release(jobs[i].ts);
    engine_free(e);
    free(prompt);
    constraint_vocab_free(v);
    close_model(&o);
}

int main(void)
{
    log_init_from_env();
    struct tokenizer *tk;
    CHECK(tokenizer_load(MODEL, &tk) == STATUS_OK, "no tokenizer in " MODEL);
    struct constraint_grammar *g;
    char err[256];
    CHECK(constraint_compile_json_schema(SCHEMA, strlen(SCHEMA), NULL, NULL, &g, err, sizeof err) == STATUS_OK,
          "schema: %s", err);
    const char *env = getenv("CAIRN_TEST_BACKENDS");
    char *list = xstrdup(env && *env ? env : "ref,cpu");
    for (char *save = NULL, *b = strtok_r(list, ",", &save); b; b = strtok_r(NULL, ",", &save)) check_backend(b, tk, g);
    free(list);
    constraint_grammar_free(g);
    tokenizer_free(tk);
    return test_summary();
}
