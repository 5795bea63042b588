/* bench: the session driver (see bench.h): configuration defaults, request bodies, measuring
 * one request into a struct bench_run, recording it, the time budget and the progress bar.
 * The workloads live in sweep.c, agentic.c and burst.c.
 *
 * Design note on token counts: usage.prompt_tokens is the only count that includes the chat
 * template; a local tokenizer counts the message text only, which is a few tokens short, and
 * the summary says so. Completion tokens come from usage when present, else from the number of
 * deltas (servers stream one token per delta, give or take a UTF-8 boundary).
 */
#include "bench/bench_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "bench/prompt.h"

void bench_cfg_defaults(struct bench_cfg *cfg)
{
    static const int sizes[] = { 64, 512, 2048, 4096, 8192, 16384, 32768 };
    static const int bursts[] = { 1, 5, 8, 30, 60, 80 };
    memset(cfg, 0, sizeof *cfg);
    cfg->url = "http://127.0.0.1:8080";
    cfg->mode = BENCH_MODE_SWEEP;
    cfg->n_sizes = (int)(sizeof sizes / sizeof sizes[0]);
    memcpy(cfg->sizes, sizes, sizeof sizes);
    cfg->runs = 5;
    cfg->warmup = true;
    cfg->max_tokens = 256;
    cfg->clear_cache = true;
    cfg->n_bursts = (int)(sizeof bursts / sizeof bursts[0]);
    memcpy(cfg->bursts, bursts, sizeof bursts);
    cfg->burst_prompt_tokens = 512;
    cfg->burst_window_ms = 200;
    cfg->agentic_prefix_runs = 3;
    cfg->restart_wait_s = 300;
    cfg->timeout_s = 600;
    cfg->stall_s = 0;          // 0: same as timeout_s (set in bench_main)
    cfg->max_time_s = 4 * 3600;
}

char *bench_body(struct bench_ctx *c, const char *system, const char *user, const json_t *tools, int max_tokens)
{
    json_t *o = json_object();
    json_object_set_new(o, "model", json_string(c->model));
    json_t *msgs = json_array();
    if (system) json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "system", "content", system));
    json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "user", "content", user));
    json_object_set_new(o, "messages", msgs);
    json_object_set_new(o, "stream", json_true());
    json_object_set_new(o, "stream_options", json_pack("{s:b}", "include_usage", 1));
    json_object_set_new(o, "max_tokens", json_integer(max_tokens > 0 ? max_tokens : c->cfg->max_tokens));
    json_object_set_new(o, "temperature", json_real(c->cfg->temperature));
    json_object_set_new(o, "chat_template_kwargs", json_pack("{s:b}", "enable_thinking", c->cfg->thinking));
    if (tools) json_object_set(o, "tools", (json_t *)tools);
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    CHECK(s, "json_dumps of a request body failed");
    return s;
}

void bench_filler(struct bench_ctx *c, int size, const char *nonce, struct strbuf *out)
{
    const struct bench_cfg *cfg = c->cfg;
    int target = size;
    if (!cfg->count_tokens && c->filler_scale > 0) target = (int)(size / c->filler_scale + 0.5);
    prompt_filler_calibrated(target < 16 ? 16 : target, nonce, rng_next(&c->rng), cfg->count_tokens, cfg->count_ctx,
                             out);
}

void bench_learn_scale(struct bench_ctx *c, const char *prompt, const struct bench_run *r)
{
    if (c->cfg->count_tokens || r->error || strcmp(r->prompt_tokens_src, "usage")) return;
    int est = prompt_estimate_tokens(prompt);
    // too short to measure a ratio, or no longer than what it was learned from: the longer the
    // prompt, the less the chat template's own tokens distort the ratio
    if (est < 200 || r->prompt_tokens <= 0 || est <= c->filler_calib_est) return;
    bool first = !c->filler_calibrated;
    c->filler_scale = (double)r->prompt_tokens / est;
    c->filler_calibrated = true;
    c->filler_calib_est = est;
    if (first && (c->filler_scale < 0.9 || c->filler_scale > 1.1))
        bench_note(c, "this server counts about %.2f tokens per estimated filler token; prompts sized accordingly",
                   c->filler_scale);
}

void bench_calibrate(struct bench_ctx *c, int size)
{
    // below ~200 tokens the chat template's own tokens would dominate the ratio: no probe
    if (c->cfg->count_tokens || c->filler_calibrated || size < 200) return;
    char nonce[PROMPT_NONCE_LEN + 1];
    prompt_nonce(&c->rng, nonce);
    struct strbuf prompt = {0};
    bench_filler(c, size, nonce, &prompt);
    char *body = bench_body(c, NULL, prompt.data, NULL, 1);
    struct bench_run r;
    bench_measure(c, body, prompt.data, clock_now_ns(), &r, NULL);
    bench_learn_scale(c, prompt.data, &r);
    if (!c->filler_calibrated)
        bench_note(c, "the size probe gave no token count (%.120s): prompt sizes are estimates",
                   r.error ? r.error : "no usage");
    bench_run_deinit(&r);
    free(body);
    strbuf_free(&prompt);
}

static double ms_between(int64_t a_ns, int64_t b_ns)
{
    return (double)(b_ns - a_ns) / 1e6;
}

void bench_measure(struct bench_ctx *c, const char *body, const char *prompt_text, int64_t mode_t0_ns,
                   struct bench_run *r, struct chat_result *res_out)
{
    const struct bench_cfg *cfg = c->cfg;
    struct chat_result res;
    client_chat(&c->http, body, &res);
    bench_run_init(r);
    r->thinking = cfg->thinking;
    r->max_tokens = cfg->max_tokens;
    r->temperature = cfg->temperature;
    r->http_status = res.http_status;
    snprintf(r->finish_reason, sizeof r->finish_reason, "%s", res.finish_reason);
    r->start_ms = ms_between(mode_t0_ns, res.t_start_ns);
    r->end_ms = ms_between(mode_t0_ns, res.t_end_ns);
    r->total_ms = ms_between(res.t_start_ns, res.t_end_ns);
    if (res.t_first_ns) {
        r->first_ms = ms_between(mode_t0_ns, res.t_first_ns);
        r->ttft_ms = ms_between(res.t_start_ns, res.t_first_ns);
        r->decode_ms = ms_between(res.t_first_ns, res.t_last_ns);
    }
    if (res.error) bench_run_set_error(r, res.error);

    // prompt tokens: the server's count, else our tokenizer's, else an error
    if (res.prompt_tokens >= 0) {
        r->prompt_tokens = res.prompt_tokens;
        snprintf(r->prompt_tokens_src, sizeof r->prompt_tokens_src, "usage");
    } else if (cfg->count_tokens && prompt_text) {
        int n = cfg->count_tokens(cfg->count_ctx, prompt_text);
        if (n >= 0) {
            r->prompt_tokens = n;
            snprintf(r->prompt_tokens_src, sizeof r->prompt_tokens_src, "tokenizer");
        }
    }
    int n_deltas = res.n_content_deltas + res.n_reasoning_deltas;
    r->cached_tokens = res.cached_tokens;
    if (res.completion_tokens >= 0) r->completion_tokens = res.completion_tokens;
    else if (res.t_first_ns) r->completion_tokens = n_deltas + (res.n_tool_deltas > 0);
    if (r->completion_tokens >= 0) {
        r->reasoning_tokens = res.reasoning_tokens >= 0 ? res.reasoning_tokens : res.n_reasoning_deltas;
        if (r->reasoning_tokens > r->completion_tokens) r->reasoning_tokens = r->completion_tokens;
        r->content_tokens = r->completion_tokens - r->reasoning_tokens;
    }
    if (!res.error && !res.got_usage && !cfg->count_tokens)
        bench_run_set_error(r, "missing usage: the server sent no usage.prompt_tokens "
                               "(pass --tokenizer DIR to count tokens locally)");
    if (r->prompt_tokens > 0 && r->ttft_ms > 0) r->prefill_tps = r->prompt_tokens / (r->ttft_ms / 1e3);
    if (r->completion_tokens > 1 && r->decode_ms > 0)
        r->decode_tps = (r->completion_tokens - 1) / (r->decode_ms / 1e3);
    if (r->error) {   // a failed run's rates are not measurements
        r->prefill_tps = r->decode_tps = NAN;
    }

    if (res_out) *res_out = res;
    else chat_result_free(&res);
}

void bench_progress(struct bench_ctx *c)
{
    if (!c->cfg->progress || c->n_planned <= 0) return;
    int done = c->n_done + c->n_skipped;
    double el = ms_between(c->t0_ns, clock_now_ns()) / 1e3;
    double eta = done > 0 ? el / done * (c->n_planned - done) : NAN;
    int width = 30, fill = c->n_planned ? done * width / c->n_planned : 0;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '-';
    bar[width] = '\0';
    if (isfinite(eta))
        fprintf(stderr, "\r[%s] %d/%d runs, %d failed, %.0fs elapsed, ETA %.0fs   ", bar, done, c->n_planned,
                c->n_failed, el, eta);
    else
        fprintf(stderr, "\r[%s] %d/%d runs, %.0fs elapsed   ", bar, done, c->n_planned, el);
    c->progress_drawn = true;
}

void bench_record(struct bench_ctx *c, struct bench_run *r)
{
    free(r->url);
    free(r->model);
    free(r->label);
    r->url = xstrdup(c->cfg->url);
    r->model = xstrdup(c->model);
    r->label = xstrdup(c->cfg->label ? c->cfg->label : c->cfg->url);
    if (c->jsonl) bench_run_write_jsonl(r, c->jsonl);
    if (r->error) {
        c->n_failed++;
        if (!c->cfg->progress) LOG_WARN("bench: %s %s size %d run %d failed: %s", r->mode, r->phase, r->size,
                                        r->run, r->error);
    }
    c->n_done++;
    bench_runs_push(&c->runs, r);
    bench_progress(c);
}

bool bench_time_left(struct bench_ctx *c, int n_would_run)
{
    if (ms_between(c->t0_ns, clock_now_ns()) / 1e3 < c->cfg->max_time_s) return true;
    if (c->n_skipped == 0) bench_note(c, "time budget of %g s spent: remaining runs skipped", c->cfg->max_time_s);
    c->n_skipped += n_would_run;
    return false;
}

void bench_note(struct bench_ctx *c, const char *fmt, ...)
{
    if (c->n_notes >= (int)(sizeof c->notes / sizeof c->notes[0])) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->notes[c->n_notes++], sizeof c->notes[0], fmt, ap);
    va_end(ap);
}

void bench_clear_cache(struct bench_ctx *c)
{
    // vLLM and SGLang spell it differently; any 2xx will do, 404/405 just means "none" (cairn,
    // llama.cpp and Ollama have no such endpoint: the nonce alone defeats their caches)
    static const char *const paths[] = { "/reset_prefix_cache", "/flush_cache" };
    if (!c->cfg->clear_cache || c->cache_clear_dead) return;
    bool any = false;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        int st = 0;
        client_simple(&c->http, "POST", paths[i], NULL, 10, &st, NULL);
        if (st >= 200 && st < 300) any = true;
    }
    if (!any) {
        c->cache_clear_dead = true;
        bench_note(c, "no cache-clear endpoint answered; relying on the leading nonce alone");
    }
}

int bench_main(const struct bench_cfg *cfg_in)
{
    struct bench_cfg cfg = *cfg_in;
    if (cfg.stall_s <= 0) cfg.stall_s = cfg.timeout_s;
    struct bench_ctx c = { .cfg = &cfg, .filler_scale = 1.0 };
    c.http = (struct bench_http){ .base_url = cfg.url, .api_key = cfg.api_key, .timeout_s = cfg.timeout_s,
                                  .stall_s = cfg.stall_s };
    c.t0_ns = clock_now_ns();
    rng_seed(&c.rng, cfg.seed ? cfg.seed : (uint64_t)c.t0_ns ^ ((uint64_t)getpid() << 32));
    if (cfg.json_out) {
        c.jsonl = fopen(cfg.json_out, "a");
        if (!c.jsonl) {
            LOG_ERR("bench: cannot open %s for writing", cfg.json_out);
            return -1;
        }
    }
    c.model = cfg.model ? xstrdup(cfg.model) : client_first_model(&c.http);
    if (!c.model) {
        // an unreachable server still gets its runs recorded as failures, under a placeholder
        LOG_WARN("bench: no --model and GET %s/v1/models gave none; using \"default\"", cfg.url);
        c.model = xstrdup("default");
    }
    enum status st;
    switch (cfg.mode) {
    case BENCH_MODE_AGENTIC: st = bench_agentic(&c); break;
    case BENCH_MODE_BURST:   st = bench_burst(&c); break;
    default:                 st = bench_sweep(&c); break;
    }
    if (c.progress_drawn) fputc('\n', stderr);
    bench_summary_print(&c, stdout);
    if (cfg.summary_out && bench_summary_write_json(&c, cfg.summary_out) != STATUS_OK) st = STATUS_EIO;
    int failed = c.n_failed + c.n_skipped;
    if (c.jsonl) fclose(c.jsonl);
    bench_runs_free(&c.runs);
    free(c.model);
    if (st != STATUS_OK && failed == 0) failed = 1;
    return failed;
}
