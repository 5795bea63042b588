/* engine_bench: the batching engine end to end (scheduler + prefix cache + forward + sampling) on
 * a synthesized or loaded model, driven by engine_step on this thread so step times are exact.
 *
 *   engine_bench [--config configs/qwen3-0.6b.json | --model DIR] [--backend cpu] [--threads 2]
 *                [--part decode,agentic,gap] [--conc 1,4,8,16] [--gen 32] [--sys 2000] [--user 100]
 *                [--n-user 10] [--long 16384] [--budget 256] [--kv-gb 4] [--pairs N] [--kv-dtype bf16]
 *                [--gap-streams 1] [--itl-ms MS] [--schema FILE] [--tokenizer DIR] [--temperature 1]
 *                [--top-p 1] [--top-k 0]
 *
 * --config (alias --synthetic) synthesizes random weights of that shape, in device memory on cuda.
 * --kv-gb 0: the engine's default budget (free device memory minus a margin on cuda, 1 GiB on cpu).
 * --kv-dtype: f32, f16, bf16 or fp8 (default bf16 on cuda, f32 on cpu, as cairn serve).
 *
 * decode:  C concurrent requests (64-token prompts, --gen tokens, greedy): aggregate decode tok/s
 *          over the steps after every request has its first token, and the ratio to C = 1.
 * sampled: the decode part greedy and sampled (--temperature, --top-p, --top-k, seeded) on the same
 *          prompts: tok/s of each and their ratio, the cost of sampling on the host.
 * agentic: a --sys-token system prompt shared by --n-user requests with different --user-token
 *          messages, its end marked as a message end (a hybrid snapshots its state there, as when
 *          served); TTFT of the first (cold) and of the following ones one at a time (warm prefix):
 *          ratio warm/cold; then the same burst submitted at once to a fresh engine.
 * gap:     --gap-streams running streams decode while a --long-token prompt is ingested in chunks of
 *          the step budget, paced to --itl-ms (engine_cfg.max_itl_ms: 0 the engine's default, -1 off;
 *          engine/pace.h) or capped by --pairs (engine_cfg.max_prefill_pairs: 0 default, -1 off):
 *          worst and median inter-token gap of the streams, vs their gap alone.
 * constrained (needs a tokenizer: --model's, or --tokenizer DIR beside --config, e.g. the Qwen3
 *          tokenizer with configs/qwen3-8b.json): the decode part twice on the same prompts,
 *          free and under a JSON-schema constraint (--schema FILE, default an agent's shell-tool
 *          schema; --temperature, default 1, so the output keeps going instead of closing at once;
 *          0: greedy both ways, the backend's argmax of masked rows with no logits download), masks
 *          on the engine's worker thread as in serving: tok/s of each and their ratio (wall and CPU);
 *          the free run gives each stream the length its constrained run had; after one untimed
 *          constrained run, --rounds pairs (default 3) in alternating order, pooled (tokens over
 *          seconds of all rounds), with the lowest and highest round's ratio; first_run_ratio_wall
 *          is that first run's (matchers new to the schema: the cold start) over the pooled free rate.
 * --budget 0 takes the engine's default step budget (8192 on a GPU, 256 on the CPU).
 * Every time is reported twice: wall seconds, and process CPU seconds (all threads; "cpu_s"),
 * because a shared machine makes wall time noisy: cpu_s / threads is what the wall time would be
 * on idle cores, and ratios of cpu_s are stable under load.
 * Prints key=value lines for bench/engine_bench.sh.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "backend/backend_env.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/rng.h"
#include "engine/engine.h"
#include "model/model.h"
#include "text/constraint.h"
#include "text/tokenizer.h"

#include "bench_args.h"

struct opts {
    const char *config, *model, *backend, *parts, *kv_dtype, *schema, *tokenizer;
    int         threads, gen, sys, user, n_user, long_tok, budget, gap_streams;
    double      itl_ms;
    long long   pairs;
    int         conc[8], n_conc;
    double      kv_gb;
    double      temperature;   // sampled and constrained parts: the sampling temperature
    double      top_p;
    int         top_k;
    int         rounds;        // constrained part: free/constrained pairs, pooled
};

static struct model   *g_m;
static struct backend *g_be;

static double cpu_now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void prompt_fill(uint64_t seed, int32_t *out, int n)
{
    struct rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < n; i++) out[i] = 100 + (int32_t)(rng_next(&r) % (uint64_t)(g_m->hp.n_vocab - 200));
}

static struct engine *engine_make(const struct opts *o, int budget, int max_running)
{
    struct engine_cfg cfg = engine_cfg_default();
    cfg.max_batch_tokens = budget;
    cfg.max_running = max_running;
    cfg.kv_cache_bytes = (size_t)(o->kv_gb * (double)(1ull << 30));
    cfg.max_prefill_pairs = o->pairs;
    cfg.max_itl_ms = o->itl_ms;
    cfg.kv_dtype = (enum dtype)dtype_parse_kv(o->kv_dtype);   // checked in main
    struct engine *e;
    CHECK(engine_new(&cfg, g_m, g_be, &e) == STATUS_OK, "engine_new failed");
    return e;
}

static struct gen_request req_make(const int32_t *p, int n, int max_tokens)
{
    struct gen_request g = { 0 };
    g.prompt = p;
    g.n_prompt = n;
    g.max_tokens = max_tokens;
    g.sampling = sampling_greedy();
    g.ignore_eos = true;
    return g;
}

/* Reads what the stream has now; returns tokens read; *done set at the end. */
static int stream_poll(struct token_stream *ts, struct token_event *last, bool *done)
{
    struct token_event ev;
    int n = 0;
    while (!*done && token_stream_next(ts, &ev, 0) == STATUS_OK) {
        n += ev.has_token;
        if (ev.done) { *done = true; *last = ev; }
    }
    return n;
}

/* ==== decode ==== */

struct decode_result {
    int      tokens, steps;   // tokens decoded in the timed steps
    double   wall_s, cpu_s;
    uint64_t by_cands, cands_full;   // sampled rows the backend's candidates decided / sent to the full row
};

/* c streams of 64-token prompts and o->gen new tokens, timed from the first step after every stream
 * has its first token to the end. sampled: temperature 1, seeded (the same sampler with and without
 * a constraint), else greedy. cg NULL: free, full length; else each stream under its own constraint,
 * ending on the stop id its grammar allows. */
/* c streams decoding --gen tokens each (or max_tokens[i]); their token counts into got[i] if given. */
static struct decode_result decode_run(const struct opts *o, int c, bool sampled, const struct constraint_grammar *cg,
                                       const struct constraint_vocab *cv, const int *max_tokens, int *got)
{
    struct engine *e = engine_make(o, 64 * c > 256 ? 64 * c : 256, c);
    int32_t *prompts = xmalloc(sizeof(int32_t) * 64 * (size_t)c);
    struct token_stream **ts = xcalloc((size_t)c, sizeof *ts);
    bool *done = xcalloc((size_t)c, sizeof *done);
    int *n_tok = xcalloc((size_t)c, sizeof *n_tok);
    struct token_event last;
    for (int i = 0; i < c; i++) {
        prompt_fill(1000 + (uint64_t)i, prompts + 64 * i, 64);
        struct gen_request g = req_make(prompts + 64 * i, 64, max_tokens ? max_tokens[i] : o->gen);
        if (sampled) {
            g.sampling.temperature = (float)o->temperature;   // the same sampler both ways
            g.sampling.top_p = (float)o->top_p;
            g.sampling.top_k = o->top_k;
            g.sampling.seed = 7 + (uint64_t)i;
            g.sampling.has_seed = true;
        }
        g.ignore_eos = !cg;
        if (cg) {
            g.constraint = constraint_new(cg, cv);
            g.constraint_vocab = cv;
        }
        CHECK(engine_submit(e, &g, &ts[i]) == STATUS_OK, "submit");
    }
    // prefill (and first tokens) until every stream has a token
    for (;;) {
        engine_step(e);
        int have = 0;
        for (int i = 0; i < c; i++) { n_tok[i] += stream_poll(ts[i], &last, &done[i]); have += n_tok[i] > 0; }
        if (have == c) break;
    }
    struct decode_result r = { 0 };
    int before = 0, after = 0;
    for (int i = 0; i < c; i++) before += n_tok[i];
    double t0 = clock_now_s(), c0 = cpu_now_s();
    while (engine_step(e)) r.steps++;
    r.wall_s = clock_now_s() - t0;
    r.cpu_s = cpu_now_s() - c0;
    for (int i = 0; i < c; i++) { n_tok[i] += stream_poll(ts[i], &last, &done[i]); after += n_tok[i]; }
    r.tokens = after - before;
    for (int i = 0; got && i < c; i++) got[i] = n_tok[i];
    struct engine_stats st;
    engine_get_stats(e, &st);
    r.by_cands = st.sampled_by_cands;
    r.cands_full = st.sampled_cands_full;
    for (int i = 0; i < c; i++) token_stream_release(ts[i]);
    free(prompts);
    free(ts);
    free(done);
    free(n_tok);
    engine_free(e);
    return r;
}

static void bench_decode(const struct opts *o)
{
    double base = 0;
    for (int ci = 0; ci < o->n_conc; ci++) {
        int c = o->conc[ci];
        struct decode_result r = decode_run(o, c, false, NULL, NULL, NULL, NULL);
        double tps = r.tokens / r.wall_s, tpc = r.tokens / r.cpu_s;
        if (ci == 0) base = tpc / (double)c;   // the single-stream rate per CPU second (the list starts at 1)
        int steps = r.steps ? r.steps : 1;
        printf("decode conc=%d tokens=%d steps=%d wall_ms_per_step=%.1f tok_s_wall=%.2f cpu_ms_per_step=%.1f "
               "tok_s_idle_est=%.2f x_single_cpu=%.2f\n", c, r.tokens, r.steps, 1e3 * r.wall_s / steps, tps,
               1e3 * r.cpu_s / steps, tpc * o->threads, tpc / base);
        fflush(stdout);
    }
}

static void bench_sampled(const struct opts *o)
{
    for (int ci = 0; ci < o->n_conc; ci++) {
        int c = o->conc[ci];
        struct decode_result g = decode_run(o, c, false, NULL, NULL, NULL, NULL);
        struct decode_result d = decode_run(o, c, true, NULL, NULL, NULL, NULL);
        double gw = g.tokens / g.wall_s, dw = d.tokens / d.wall_s;
        uint64_t via = d.by_cands + d.cands_full;   // rows through the sample_cands op (0: the backend has none)
        printf("sampled conc=%d temperature=%g top_p=%g top_k=%d greedy_tok_s=%.2f sampled_tok_s=%.2f ratio_wall=%.3f "
               "ratio_cpu=%.3f cands_rows=%llu cands_full_frac=%.3f\n", c, o->temperature, o->top_p, o->top_k, gw, dw,
               dw / gw, (d.tokens / d.cpu_s) / (g.tokens / g.cpu_s), (unsigned long long)via,
               via ? (double)d.cands_full / (double)via : 0.0);
        fflush(stdout);
    }
}

/* ==== agentic ==== */

/* An agentic request: the system prompt's end is a message end, as the server's template
 * rendering marks it (gen_request.msg_ends), so a hybrid model snapshots its state there and the
 * next user's request resumes from it; attention-only models ignore the mark. */
static struct gen_request agentic_req(const struct opts *o, const int32_t *p, int n, const int32_t *sys_end)
{
    struct gen_request g = req_make(p, n, 4);
    if (o->sys > 0 && o->user > 0) {
        g.msg_ends = sys_end;
        g.n_msg_ends = 1;
    }
    return g;
}

/* Runs one request alone; returns its wall TTFT and, in *cpu, the process CPU seconds to its first token. */
static double ttft_one(struct engine *e, struct gen_request g, int *cached, double *cpu)
{
    struct token_stream *ts;
    double c0 = cpu_now_s();
    *cpu = 0;
    CHECK(engine_submit(e, &g, &ts) == STATUS_OK, "submit");
    struct token_event last;
    bool done = false;
    int got = 0;
    while (engine_step(e)) {
        got += stream_poll(ts, &last, &done);
        if ((got > 0 || done) && *cpu == 0) *cpu = cpu_now_s() - c0;
    }
    stream_poll(ts, &last, &done);
    CHECK(done, "request did not finish");
    *cached = last.n_cached;
    token_stream_release(ts);
    return last.t_first_s;
}

static void bench_agentic(const struct opts *o)
{
    int n = o->sys + o->user;
    int32_t *p = xmalloc(sizeof(int32_t) * (size_t)n * (size_t)o->n_user);
    for (int i = 0; i < o->n_user; i++) {
        int32_t *pi = p + (size_t)i * (size_t)n;
        prompt_fill(7, pi, o->sys);                         // the same system prompt
        prompt_fill(100 + (uint64_t)i, pi + o->sys, o->user); // a different user message
    }
    const int32_t sys_end[1] = { o->sys };
    struct engine *e = engine_make(o, o->budget, 16);
    int cached;
    double cold_cpu, cpu;
    double cold = ttft_one(e, agentic_req(o, p, n, sys_end), &cached, &cold_cpu);
    printf("agentic cold ttft_s=%.3f ttft_cpu_s=%.3f prompt=%d cached=%d\n", cold, cold_cpu, n, cached);
    fflush(stdout);
    double sum = 0, worst = 0, cpu_sum = 0;
    for (int i = 1; i < o->n_user; i++) {
        double t = ttft_one(e, agentic_req(o, p + (size_t)i * (size_t)n, n, sys_end), &cached, &cpu);
        printf("agentic warm i=%d ttft_s=%.3f ttft_cpu_s=%.3f cached=%d\n", i, t, cpu, cached);
        fflush(stdout);
        sum += t;
        cpu_sum += cpu;
        if (t > worst) worst = t;
    }
    double warm = sum / (o->n_user - 1), warm_cpu = cpu_sum / (o->n_user - 1);
    printf("agentic summary ttft_cold_s=%.3f ttft_warm_mean_s=%.3f ttft_warm_max_s=%.3f ratio_wall=%.4f "
           "ttft_cold_cpu_s=%.3f ttft_warm_cpu_s=%.3f ratio_cpu=%.4f\n", cold, warm, worst, warm / cold, cold_cpu,
           warm_cpu, warm_cpu / cold_cpu);
    fflush(stdout);
    engine_free(e);

    // the burst: all at once on a fresh engine (the first computes the system prompt, the others wait for it and share it)
    e = engine_make(o, o->budget, 16);
    struct token_stream *ts[64];
    bool done[64] = { 0 };
    struct token_event last[64];
    int nb = o->n_user < 64 ? o->n_user : 64;
    double t0 = clock_now_s(), c0 = cpu_now_s();
    for (int i = 0; i < nb; i++) {
        struct gen_request g = agentic_req(o, p + (size_t)i * (size_t)n, n, sys_end);
        CHECK(engine_submit(e, &g, &ts[i]) == STATUS_OK, "submit");
    }
    while (engine_step(e))
        for (int i = 0; i < nb; i++) stream_poll(ts[i], &last[i], &done[i]);
    double total = clock_now_s() - t0, total_cpu = cpu_now_s() - c0, tsum = 0, tmax = 0;
    int csum = 0;
    for (int i = 0; i < nb; i++) {
        stream_poll(ts[i], &last[i], &done[i]);
        tsum += last[i].t_first_s;
        if (last[i].t_first_s > tmax) tmax = last[i].t_first_s;
        csum += last[i].n_cached;
        token_stream_release(ts[i]);
    }
    printf("agentic burst n=%d total_s=%.3f total_cpu_s=%.3f ttft_mean_s=%.3f ttft_max_s=%.3f cached_tokens=%d "
           "prompt_tokens=%d (no-cache estimate: cpu_s ~%.1f)\n", nb, total, total_cpu, tsum / nb, tmax, csum, nb * n,
           cold_cpu * nb);
    fflush(stdout);
    engine_free(e);
    free(p);
}

/* ==== gap ==== */

static void bench_gap(const struct opts *o)
{
    int n_streams = o->gap_streams;
    struct engine *e = engine_make(o, o->budget, n_streams + 4);
    int32_t pa[64];
    int32_t *pl = xmalloc(sizeof(int32_t) * (size_t)o->long_tok);
    prompt_fill(4, pl, o->long_tok);
    struct token_stream **ts = xcalloc((size_t)n_streams, sizeof *ts), *tl;
    for (int i = 0; i < n_streams; i++) {
        prompt_fill(3 + 100 * (uint64_t)i, pa, 64);
        struct gen_request ga = req_make(pa, 64, 1 << 20 < g_m->hp.max_pos - 65 ? 1 << 20 : g_m->hp.max_pos - 65);
        CHECK(engine_submit(e, &ga, &ts[i]) == STATUS_OK, "submit");
    }
    struct token_stream *ta = ts[0];   // the streams share every step: the first one's gaps are theirs
    struct token_event la, ll;
    bool da = false, dl = false;
    double t_prev = 0, alone_max = 0, alone_sum = 0, c_prev = 0, calone_max = 0;
    int alone_n = 0;
    for (int s = 0; s < 12; s++) {   // the streams alone
        engine_step(e);
        for (int i = 1; i < n_streams; i++) { bool d_i = false; stream_poll(ts[i], &la, &d_i); }
        if (stream_poll(ta, &la, &da) > 0) {
            double t = clock_now_s(), c = cpu_now_s();
            if (t_prev > 0) {
                alone_sum += t - t_prev;
                alone_n++;
                if (t - t_prev > alone_max) alone_max = t - t_prev;
                if (c - c_prev > calone_max) calone_max = c - c_prev;
            }
            t_prev = t;
            c_prev = c;
        }
    }
    struct gen_request gl = req_make(pl, o->long_tok, 1);
    CHECK(engine_submit(e, &gl, &tl) == STATUS_OK, "submit long");
    double t_sub = clock_now_s(), c_sub = cpu_now_s(), worst = 0, cworst = 0;
    static double gaps[1 << 16];
    int n_gaps = 0, steps = 0;
    while (!dl) {
        engine_step(e);
        steps++;
        stream_poll(tl, &ll, &dl);
        for (int i = 1; i < n_streams; i++) { bool d_i = false; stream_poll(ts[i], &la, &d_i); }
        if (stream_poll(ta, &la, &da) > 0) {
            double t = clock_now_s(), c = cpu_now_s();
            if (n_gaps < (1 << 16)) gaps[n_gaps++] = t - t_prev;
            if (t - t_prev > worst) worst = t - t_prev;
            if (c - c_prev > cworst) cworst = c - c_prev;
            t_prev = t;
            c_prev = c;
        }
    }
    double ingest = clock_now_s() - t_sub, ingest_cpu = cpu_now_s() - c_sub;
    // median
    for (int i = 1; i < n_gaps; i++) {
        double x = gaps[i];
        int j = i - 1;
        while (j >= 0 && gaps[j] > x) { gaps[j + 1] = gaps[j]; j--; }
        gaps[j + 1] = x;
    }
    printf("gap long=%d streams=%d budget=%d steps=%d ingest_s=%.2f ingest_cpu_s=%.2f prefill_tok_s_wall=%.1f long_ttft_s=%.2f "
           "gap_alone_mean_s=%.3f gap_alone_max_s=%.3f gap_alone_max_cpu_s=%.3f gap_during_median_s=%.3f "
           "gap_during_max_s=%.3f gap_during_max_cpu_s=%.3f stream_tokens=%d\n",
           o->long_tok, n_streams, o->budget, steps, ingest, ingest_cpu, o->long_tok / ingest, ll.t_first_s,
           alone_n ? alone_sum / alone_n : 0, alone_max, calone_max, n_gaps ? gaps[n_gaps / 2] : 0, worst, cworst, n_gaps);
    fflush(stdout);
    for (int i = 0; i < n_streams; i++) engine_cancel(e, ts[i]);
    engine_step(e);
    for (int i = 0; i < n_streams; i++) token_stream_release(ts[i]);
    free(ts);
    token_stream_release(tl);
    engine_free(e);
    free(pl);
}

/* ==== constrained ==== */

static const char *default_schema =
    "{\"type\":\"object\",\"properties\":{\"command\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
    "\"workdir\":{\"type\":\"string\"},\"timeout_ms\":{\"type\":\"number\"},\"justification\":{\"type\":\"string\"}},"
    "\"required\":[\"command\",\"workdir\",\"timeout_ms\",\"justification\"],\"additionalProperties\":false}";

static void bench_constrained(const struct opts *o)
{
    const char *tdir = o->tokenizer ? o->tokenizer : o->model;
    if (!tdir) { fprintf(stderr, "constrained: needs --model or --tokenizer\n"); return; }
    struct tokenizer *tk;
    CHECK(tokenizer_load(tdir, &tk) == STATUS_OK, "tokenizer of %s", tdir);
    CHECK(tokenizer_vocab_size(tk) <= g_m->hp.n_vocab, "the tokenizer has more ids than the model");
    const char *eos = tokenizer_eos_str(tk);
    int32_t stop = eos ? tokenizer_token_id(tk, eos) : -1;
    CHECK(stop >= 0, "no end-of-turn token");
    struct constraint_vocab *cv;
    CHECK(constraint_vocab_new(tk, &stop, 1, &cv) == STATUS_OK, "constraint vocab");
    char *schema = NULL;
    size_t len = 0;
    if (o->schema) CHECK(file_read_all(o->schema, &schema, &len) == STATUS_OK, "read %s", o->schema);
    else schema = xstrdup(default_schema), len = strlen(schema);
    struct constraint_grammar *cg;
    char err[256];
    CHECK(constraint_compile_json_schema(schema, len, NULL, NULL, &cg, err, sizeof err) == STATUS_OK, "schema: %s", err);
    if ((int)constraint_grammar_min_bytes(cg) + 1 > o->gen) {
        fprintf(stderr, "constrained: --gen %d is below the schema's shortest output (%u tokens + the stop)\n", o->gen,
                constraint_grammar_min_bytes(cg));
        constraint_grammar_free(cg);
        constraint_vocab_free(cv);
        free(schema);
        tokenizer_free(tk);
        return;
    }
    for (int ci = 0; ci < o->n_conc; ci++) {
        int c = o->conc[ci];
        // the constrained run first, untimed (it warms what the first run of a process pays for);
        // then the free run with each stream's length, so both keep the same number of streams
        // running at every step (a closed constraint ends its stream early); seeded, so every
        // constrained run repeats these lengths. Rounds alternate which of the pair runs first.
        int *lens = xcalloc((size_t)c, sizeof *lens);
        struct decode_result first = decode_run(o, c, true, cg, cv, NULL, lens);
        struct decode_result ft = { 0 }, kt = { 0 };
        double lo = 1e9, hi = 0;
        for (int round = 0; round < o->rounds; round++) {
            struct decode_result k, f;
            if (round % 2 == 0) {
                k = decode_run(o, c, true, cg, cv, NULL, NULL);
                f = decode_run(o, c, true, NULL, NULL, lens, NULL);
            } else {
                f = decode_run(o, c, true, NULL, NULL, lens, NULL);
                k = decode_run(o, c, true, cg, cv, NULL, NULL);
            }
            double r = (k.tokens / k.wall_s) / (f.tokens / f.wall_s);
            lo = r < lo ? r : lo;
            hi = r > hi ? r : hi;
            ft.tokens += f.tokens, ft.wall_s += f.wall_s, ft.cpu_s += f.cpu_s;
            kt.tokens += k.tokens, kt.wall_s += k.wall_s, kt.cpu_s += k.cpu_s;
        }
        free(lens);
        double fw = ft.tokens / ft.wall_s, fc = ft.tokens / ft.cpu_s, cw = kt.tokens / kt.wall_s, cc = kt.tokens / kt.cpu_s;
        printf("constrained conc=%d temperature=%g rounds=%d free_tokens=%d free_tok_s=%.2f constrained_tokens=%d "
               "constrained_tok_s=%.2f ratio_wall=%.3f ratio_cpu=%.3f round_ratio_min=%.3f round_ratio_max=%.3f "
               "first_run_ratio_wall=%.3f\n", c, o->temperature, o->rounds, ft.tokens, fw, kt.tokens, cw, cw / fw, cc / fc,
               lo, hi, first.tokens / first.wall_s / fw);
        fflush(stdout);
    }
    constraint_grammar_free(cg);
    constraint_vocab_free(cv);
    free(schema);
    tokenizer_free(tk);
}

/* ==== main ==== */

int main(int argc, char **argv)
{
    log_init_from_env();
    struct opts o = { .config = "configs/qwen3-0.6b.json", .backend = "cpu", .parts = "decode,agentic,gap",
                      .threads = 2, .gen = 32, .sys = 2000, .user = 100, .n_user = 10, .long_tok = 16384,
                      .budget = 256, .kv_gb = 4.0, .gap_streams = 1, .temperature = 1.0, .top_p = 1.0, .rounds = 3, .conc = { 1, 4, 8, 16 }, .n_conc = 4 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) { fprintf(stderr, "missing value for %s\n", a); return 2; }
        if (!strcmp(a, "--config") || !strcmp(a, "--synthetic")) o.config = v;
        else if (!strcmp(a, "--kv-dtype")) o.kv_dtype = v;
        else if (!strcmp(a, "--model")) o.model = v;
        else if (!strcmp(a, "--backend")) o.backend = v;
        else if (!strcmp(a, "--threads")) o.threads = atoi(v);
        else if (!strcmp(a, "--part")) o.parts = v;
        else if (!strcmp(a, "--conc")) { if (!bench_int_list(a, v, o.conc, 8, &o.n_conc)) return 2; }
        else if (!strcmp(a, "--gen")) o.gen = atoi(v);
        else if (!strcmp(a, "--sys")) o.sys = atoi(v);
        else if (!strcmp(a, "--user")) o.user = atoi(v);
        else if (!strcmp(a, "--n-user")) o.n_user = atoi(v);
        else if (!strcmp(a, "--long")) o.long_tok = atoi(v);
        else if (!strcmp(a, "--budget")) o.budget = atoi(v);
        else if (!strcmp(a, "--kv-gb")) o.kv_gb = atof(v);
        else if (!strcmp(a, "--pairs")) o.pairs = atoll(v);
        else if (!strcmp(a, "--gap-streams")) o.gap_streams = atoi(v) > 0 ? atoi(v) : 1;
        else if (!strcmp(a, "--itl-ms")) o.itl_ms = atof(v);
        else if (!strcmp(a, "--schema")) o.schema = v;
        else if (!strcmp(a, "--tokenizer")) o.tokenizer = v;
        else if (!strcmp(a, "--temperature")) o.temperature = atof(v);
        else if (!strcmp(a, "--top-p")) o.top_p = atof(v);
        else if (!strcmp(a, "--top-k")) o.top_k = atoi(v);
        else if (!strcmp(a, "--rounds")) o.rounds = atoi(v) > 0 ? atoi(v) : 1;
        else { fprintf(stderr, "unknown flag %s\n", a); return 2; }
        i++;
    }
    if (o.kv_dtype && dtype_parse_kv(o.kv_dtype) < 0) {
        fprintf(stderr, "--kv-dtype must be f32, f16, bf16 or fp8\n");
        return 2;
    }
    if (!o.kv_dtype) o.kv_dtype = !strcmp(o.backend, "cuda") ? "bf16" : "f32";
    struct backend_cfg bcfg = { .n_threads = o.threads };
    backend_cfg_from_env(&bcfg);
    if (backend_new(o.backend, &bcfg, &g_be) != STATUS_OK) return 1;
    // the backend first: synthetic weights are made in its memory (device memory on cuda)
    enum status st = o.model ? model_load(o.model, &g_m) : model_synthesize_on(o.config, 1, g_be, &g_m);
    if (st != STATUS_OK) return 1;
    if (model_prepare(g_m, g_be) != STATUS_OK) return 1;
    printf("model %s layers=%d d=%d vocab=%d params=%.3gB backend=%s threads=%d kv_dtype=%s\n", o.model ? o.model : o.config,
           g_m->hp.n_layers, g_m->hp.d_model, g_m->hp.n_vocab, (double)g_m->n_params / 1e9, o.backend, o.threads, o.kv_dtype);
    fflush(stdout);
    if (strstr(o.parts, "decode")) bench_decode(&o);
    if (strstr(o.parts, "sampled")) bench_sampled(&o);
    if (strstr(o.parts, "agentic")) bench_agentic(&o);
    if (strstr(o.parts, "gap")) bench_gap(&o);
    if (strstr(o.parts, "constrained")) bench_constrained(&o);
    model_free(g_m);   // before the backend that owns its device memory
    backend_free(g_be);
    return 0;
}
