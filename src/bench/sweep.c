/* sweep: the default workload. For each prompt size, --runs streaming requests of a filler
 * prompt led by a fresh nonce, after one discarded warm-up at the largest size (it loads
 * kernels, weights and allocator pools, so that the first measured cell is not penalized).
 * Before each request the known cache-reset endpoints are tried (best effort). Without
 * --tokenizer, the warm-up's usage also teaches how this server's tokenizer counts the filler,
 * so that the measured prompts come out at their sizes (bench_learn_scale).
 */
#include "bench/bench_int.h"

#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "bench/prompt.h"

static void sweep_one(struct bench_ctx *c, int size, int run, bool warmup, int64_t t0_ns)
{
    char nonce[PROMPT_NONCE_LEN + 1];
    prompt_nonce(&c->rng, nonce);
    struct strbuf prompt = {0};
    bench_filler(c, size, nonce, &prompt);
    char *body = bench_body(c, NULL, prompt.data, NULL, 0);
    bench_clear_cache(c);
    struct bench_run r;
    bench_measure(c, body, prompt.data, t0_ns, &r, NULL);
    snprintf(r.mode, sizeof r.mode, "sweep");
    snprintf(r.phase, sizeof r.phase, warmup ? "warmup" : "run");
    snprintf(r.nonce, sizeof r.nonce, "%s", nonce);
    r.size = size;
    r.run = run;
    bench_learn_scale(c, prompt.data, &r);   // the warm-up sizes every later prompt
    bench_record(c, &r);
    free(body);
    strbuf_free(&prompt);
}

enum status bench_sweep(struct bench_ctx *c)
{
    const struct bench_cfg *cfg = c->cfg;
    int64_t t0 = clock_now_ns();
    int largest = 0;
    for (int i = 0; i < cfg->n_sizes; i++)
        if (cfg->sizes[i] > largest) largest = cfg->sizes[i];
    c->n_planned = cfg->n_sizes * cfg->runs + (cfg->warmup ? 1 : 0);
    // a short probe first, so that even the warm-up has the right size in this server's tokens
    // (a 32768-token warm-up that the server counts as 60000 would only meet the context limit)
    if (bench_time_left(c, 0)) bench_calibrate(c, largest < 512 ? largest : 512);
    if (cfg->warmup && bench_time_left(c, 1)) sweep_one(c, largest, 0, true, t0);
    for (int i = 0; i < cfg->n_sizes; i++) {
        for (int k = 0; k < cfg->runs; k++) {
            if (!bench_time_left(c, 1)) continue;
            sweep_one(c, cfg->sizes[i], k, false, t0);
        }
    }
    return STATUS_OK;
}
