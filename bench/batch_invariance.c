/* batch_invariance: does a request's greedy output depend on what else is in the batch?
 *
 *   batch_invariance MODEL_DIR | --synthetic CONFIG.json [--backend cuda] [--gen 64] [--prompt 200]
 *
 * Request A (a fixed prompt, greedy, --gen tokens) runs alone through the engine, then again in
 * company: (1) with 7 others submitted at the same time (decode steps of 8 rows), (2) with 31
 * others (steps of 32 rows), (3) submitted while 31 others are already decoding, so its prompt is
 * ingested in steps shared with their decodes, and (4) alone again (run-to-run). Each scenario
 * prints how many of A's tokens differ from the solo run and where the first difference is. The
 * others have prompts of different lengths, so the batch's shapes (rows per step, longest
 * sequence, prefill chunks) all change. The engine is stepped on this thread (engine_step).
 * Prints key=value lines; exit status 0 whatever the outcome (it measures, it does not judge).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend_env.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/rng.h"
#include "engine/engine.h"
#include "model/model.h"

struct job {
    struct token_stream *ts;
    int32_t             *out;
    int                  n_out;
    bool                 done;
};

static struct model   *g_m;
static struct backend *g_be;
static int             g_gen = 64;

static int32_t *random_prompt(uint64_t seed, int n, int vocab)
{
    struct rng r;
    rng_seed(&r, seed);
    int32_t *p = xmalloc(sizeof *p * (size_t)n);
    int hi = vocab < 4000 ? vocab : 4000;   // ordinary ids, away from the special tokens at the end
    for (int i = 0; i < n; i++) p[i] = 10 + (int32_t)(rng_next(&r) % (uint64_t)(hi - 10));
    return p;
}

static void submit(struct engine *e, struct job *j, const int32_t *prompt, int n)
{
    struct gen_request req = { .prompt = prompt, .n_prompt = n, .max_tokens = g_gen, .ignore_eos = true };
    req.sampling.temperature = 0.0f;
    memset(j, 0, sizeof *j);
    j->out = xmalloc(sizeof(int32_t) * (size_t)g_gen);
    if (engine_submit(e, &req, &j->ts) != STATUS_OK) {
        fprintf(stderr, "batch_invariance: submit failed\n");
        exit(1);
    }
}

static void drain(struct job *jobs, int n)
{
    for (int i = 0; i < n; i++) {
        struct token_event ev;
        while (!jobs[i].done && token_stream_next(jobs[i].ts, &ev, 0) == STATUS_OK) {
            if (ev.has_token && jobs[i].n_out < g_gen) jobs[i].out[jobs[i].n_out++] = ev.token;
            if (ev.done) jobs[i].done = true;
        }
    }
}

static bool all_done(const struct job *jobs, int n)
{
    for (int i = 0; i < n; i++)
        if (!jobs[i].done) return false;
    return true;
}

static void run_until_done(struct engine *e, struct job *jobs, int n)
{
    while (!all_done(jobs, n)) {
        engine_step(e);
        drain(jobs, n);
    }
}

static struct engine *new_engine(void)
{
    struct engine_cfg cfg = engine_cfg_default();
    cfg.prefix_cache = false;   // every run computes its prompt
    cfg.kv_dtype = strcmp(g_be->ops->name, "cuda") ? DTYPE_F32 : DTYPE_BF16;
    cfg.kv_cache_bytes = (size_t)2 << 30;
    struct engine *e;
    if (engine_new(&cfg, g_m, g_be, &e) != STATUS_OK) exit(1);
    return e;
}

/* Runs A with n_others companions; delay > 0 submits A after that many steps of the others. */
static void scenario(const char *name, const int32_t *a, int n_a, int n_others, int delay, const int32_t *solo)
{
    struct engine *e = new_engine();
    struct job *jobs = xcalloc((size_t)n_others + 1, sizeof *jobs);
    int32_t **prompts = xcalloc((size_t)n_others + 1, sizeof *prompts);
    for (int i = 1; i <= n_others; i++) {
        int n = 40 + 23 * i % 300;
        prompts[i] = random_prompt(1000 + (uint64_t)i, n, g_m->hp.n_vocab);
        submit(e, &jobs[i], prompts[i], n);
    }
    if (delay > 0) {
        for (int s = 0; s < delay; s++) engine_step(e);
        drain(jobs + 1, n_others);
    }
    submit(e, &jobs[0], a, n_a);
    double t0 = clock_now_s();
    run_until_done(e, jobs, n_others + 1);
    double dt = clock_now_s() - t0;
    int diff = 0, first = -1;
    for (int i = 0; i < g_gen; i++)
        if (i >= jobs[0].n_out || jobs[0].out[i] != solo[i]) {
            diff++;
            if (first < 0) first = i;
        }
    printf("scenario=%s companions=%d delay_steps=%d tokens=%d differing=%d first_difference=%d identical=%s wall_s=%.2f\n",
           name, n_others, delay, g_gen, diff, first, diff ? "no" : "yes", dt);
    for (int i = 0; i <= n_others; i++) {
        token_stream_release(jobs[i].ts);
        free(jobs[i].out);
        free(prompts[i]);
    }
    free(jobs);
    free(prompts);
    engine_free(e);
}

int main(int argc, char **argv)
{
    log_init_from_env();
    const char *dir = NULL, *synthetic = NULL, *backend = "cuda";
    int n_prompt = 200;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--backend") && i + 1 < argc) backend = argv[++i];
        else if (!strcmp(argv[i], "--synthetic") && i + 1 < argc) synthetic = argv[++i];
        else if (!strcmp(argv[i], "--gen") && i + 1 < argc) g_gen = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--prompt") && i + 1 < argc) n_prompt = atoi(argv[++i]);
        else if (argv[i][0] != '-' && !dir) dir = argv[i];
        else { fprintf(stderr, "batch_invariance: bad argument %s\n", argv[i]); return 2; }
    }
    if ((!dir && !synthetic) || g_gen < 1 || n_prompt < 1) {
        fprintf(stderr, "usage: batch_invariance MODEL_DIR | --synthetic CONFIG.json [--backend B] [--gen N] [--prompt N]\n");
        return 2;
    }
    struct backend_cfg bcfg = { .n_threads = 0 };
    backend_cfg_from_env(&bcfg);
    if (backend_new(backend, &bcfg, &g_be) != STATUS_OK) return 1;
    enum status st = dir ? model_load(dir, &g_m) : model_synthesize_on(synthetic, 1, g_be, &g_m);
    if (st == STATUS_OK) st = model_prepare(g_m, g_be);
    if (st != STATUS_OK) { fprintf(stderr, "batch_invariance: cannot open the model: %s\n", status_str(st)); return 1; }

    int32_t *a = random_prompt(7, n_prompt, g_m->hp.n_vocab);
    struct engine *e = new_engine();
    struct job solo;
    submit(e, &solo, a, n_prompt);
    double t0 = clock_now_s();
    run_until_done(e, &solo, 1);
    printf("model=%s backend=%s prompt=%d solo_wall_s=%.2f\n", dir ? dir : synthetic, backend, n_prompt, clock_now_s() - t0);
    token_stream_release(solo.ts);
    engine_free(e);

    scenario("together_8", a, n_prompt, 7, 0, solo.out);
    scenario("together_32", a, n_prompt, 31, 0, solo.out);
    scenario("joins_running_32", a, n_prompt, 31, 12, solo.out);
    scenario("alone_again", a, n_prompt, 0, 0, solo.out);
    free(solo.out);
    free(a);
    model_free(g_m);
    backend_free(g_be);
    return 0;
}
