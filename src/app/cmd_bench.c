/* cmd_bench: `cairn bench` (benchmark an OpenAI-compatible server) and `cairn bench report`
 * (HTML comparison of JSONL results). Flags, the optional local tokenizer, exit codes:
 * 0 every run succeeded, 1 some run failed or was skipped, 2 usage or setup error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/cmd.h"
#include "base/log.h"
#include "bench/bench.h"
#include "bench/client.h"
#include "bench/report.h"
#include "text/tokenizer.h"

static void bench_usage(FILE *f)
{
    fprintf(f,
        "usage: cairn bench --url URL [options]\n"
        "       cairn bench report A.jsonl [B.jsonl ...] -o report.html\n\n"
        "  --url URL             server base URL (default http://127.0.0.1:8080); the only host contacted\n"
        "  --model ID            model id (default: first of GET /v1/models)\n"
        "  --api-key KEY         bearer token\n"
        "  --label NAME          engine label in the JSONL and the report (default: the URL)\n"
        "  --mode M              sweep (default) | agentic | burst\n"
        "  --sizes LIST          sweep prompt sizes in tokens (default 64,512,2048,4096,8192,16384,32768)\n"
        "  --runs N              measured runs per size (default 5)\n"
        "  --no-warmup           skip the discarded warm-up request (sweep: full size; agentic: one\n"
        "                        call of another session, so server start-up costs are not \"cold\")\n"
        "  --max-tokens N        max_tokens per request (default 256)\n"
        "  --temperature T       sampling temperature of every request (default 0: greedy; clients\n"
        "                        such as coding agents send 1, which samples on the host)\n"
        "  --thinking on|off     chat_template_kwargs.enable_thinking (default off)\n"
        "  --no-cache-clear      do not try the servers' cache-reset endpoints\n"
        "  --burst LIST          burst sizes (default 1,5,8,30,60,80)\n"
        "  --burst-prompt N      prompt tokens of each burst request (default 512)\n"
        "  --burst-window MS     all N requests must leave within this window (default 200)\n"
        "  --prefix-runs N       agentic prefix-test calls (default 3)\n"
        "  --agentic-system-bytes N  agentic: cut the ~7 KB system prompt to N bytes (small-context models)\n"
        "  --restart-cmd CMD     agentic: shell command that restarts the server (persistent-cache test)\n"
        "  --restart-wait S      agentic: how long to wait for the server after the restart (default 300)\n"
        "  --timeout S           per-request limit, whole transfer (default 600)\n"
        "  --stall-timeout S     per-request limit on silence between chunks (default: --timeout)\n"
        "  --max-time S          limit for the whole benchmark; later runs are skipped (default 14400)\n"
        "  --tokenizer DIR       count tokens locally (tokenizer.json) when the server sends no usage\n"
        "  --json-out FILE       append one JSON line per run\n"
        "  --summary-out FILE    write the summary statistics as JSON\n"
        "  --seed N              seed for nonces and filler (default: from the clock)\n"
        "  --progress on|off     progress bar on stderr (default: on when stderr is a terminal)\n");
}

static int count_with_tokenizer(void *ctx, const char *text)
{
    int32_t *ids = NULL;
    int n = 0;
    if (tokenizer_encode(ctx, text, strlen(text), false, &ids, &n) != STATUS_OK) return -1;
    free(ids);
    return n;
}

static int parse_list(const char *flag, const char *s, int *out, int cap, int lo, int hi)
{
    int32_t *v = NULL;
    int n = 0;
    if (parse_int_list(s, &v, &n) != STATUS_OK || n < 1 || n > cap) {
        fprintf(stderr, "cairn bench: %s: expected 1 to %d comma-separated integers\n", flag, cap);
        free(v);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if (v[i] < lo || v[i] > hi) {
            fprintf(stderr, "cairn bench: %s: %d is outside %d..%d\n", flag, v[i], lo, hi);
            free(v);
            return -1;
        }
        out[i] = v[i];
    }
    free(v);
    return n;
}

static int parse_int(const char *flag, const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end || v < lo || v > hi) {
        fprintf(stderr, "cairn bench: %s: expected an integer in %d..%d\n", flag, lo, hi);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* A whole string as a number; false on anything else. */
static bool read_real(const char *s, double *v)
{
    char *end;
    *v = strtod(s, &end);
    return *s != '\0' && *end == '\0';
}

static int parse_seconds(const char *flag, const char *s, double *out)
{
    double v;
    if (!read_real(s, &v) || !(v > 0) || v > 7 * 86400) {
        fprintf(stderr, "cairn bench: %s: expected seconds > 0\n", flag);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_temperature(const char *flag, const char *s, double *out)
{
    double v;
    if (!read_real(s, &v) || !(v >= 0 && v <= 2)) {
        fprintf(stderr, "cairn bench: %s: expected a temperature in [0, 2]\n", flag);
        return -1;
    }
    *out = v;
    return 0;
}

static int on_off(const char *flag, const char *s, bool *out)
{
    if (!strcmp(s, "on")) *out = true;
    else if (!strcmp(s, "off")) *out = false;
    else {
        fprintf(stderr, "cairn bench: %s: expected on or off\n", flag);
        return -1;
    }
    return 0;
}

static int cmd_bench_report(int argc, char **argv)
{
    const char *out = "report.html";
    const char **in = calloc((size_t)argc, sizeof *in);
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-o") || !strcmp(argv[i], "--out")) && i + 1 < argc) out = argv[++i];
        else if (argv[i][0] == '-') {
            fprintf(stderr, "cairn bench report: unknown flag %s\n", argv[i]);
            free(in);
            return 2;
        } else in[n++] = argv[i];
    }
    if (n == 0) {
        bench_usage(stderr);
        free(in);
        return 2;
    }
    enum status st = bench_report_html(in, n, out);
    free(in);
    if (st != STATUS_OK) return 2;
    fprintf(stderr, "wrote %s\n", out);
    return 0;
}

int cmd_bench(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "report")) return cmd_bench_report(argc - 1, argv + 1);
    struct bench_cfg cfg;
    bench_cfg_defaults(&cfg);
    cfg.progress = isatty(2);
    const char *tok_dir = NULL;
    int bad = 0;
    for (int i = 1; i < argc && !bad; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            bench_usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--no-warmup")) { cfg.warmup = false; continue; }
        if (!strcmp(a, "--no-cache-clear")) { cfg.clear_cache = false; continue; }
        if (!v) {
            fprintf(stderr, "cairn bench: %s needs a value (or is unknown)\n", a);
            bad = 1;
            break;
        }
        i++;
        if (!strcmp(a, "--url")) cfg.url = v;
        else if (!strcmp(a, "--model")) cfg.model = v;
        else if (!strcmp(a, "--api-key")) cfg.api_key = v;
        else if (!strcmp(a, "--label")) cfg.label = v;
        else if (!strcmp(a, "--mode")) {
            if (!strcmp(v, "sweep")) cfg.mode = BENCH_MODE_SWEEP;
            else if (!strcmp(v, "agentic")) cfg.mode = BENCH_MODE_AGENTIC;
            else if (!strcmp(v, "burst")) cfg.mode = BENCH_MODE_BURST;
            else { fprintf(stderr, "cairn bench: --mode: sweep, agentic or burst\n"); bad = 1; }
        }
        else if (!strcmp(a, "--sizes")) bad = (cfg.n_sizes = parse_list(a, v, cfg.sizes, BENCH_SIZES_MAX, 16, 1 << 20)) < 0;
        else if (!strcmp(a, "--burst")) bad = (cfg.n_bursts = parse_list(a, v, cfg.bursts, BENCH_BURSTS_MAX, 1, 512)) < 0;
        else if (!strcmp(a, "--runs")) bad = parse_int(a, v, 1, 1000, &cfg.runs);
        else if (!strcmp(a, "--max-tokens")) bad = parse_int(a, v, 1, 1 << 20, &cfg.max_tokens);
        else if (!strcmp(a, "--temperature")) bad = parse_temperature(a, v, &cfg.temperature);
        else if (!strcmp(a, "--burst-prompt")) bad = parse_int(a, v, 16, 1 << 20, &cfg.burst_prompt_tokens);
        else if (!strcmp(a, "--prefix-runs")) bad = parse_int(a, v, 1, 100, &cfg.agentic_prefix_runs);
        else if (!strcmp(a, "--agentic-system-bytes")) bad = parse_int(a, v, 256, 1 << 20, &cfg.agentic_system_bytes);
        else if (!strcmp(a, "--burst-window")) {
            bad = parse_seconds(a, v, &cfg.burst_window_ms);   // milliseconds here; same bounds check
        }
        else if (!strcmp(a, "--thinking")) bad = on_off(a, v, &cfg.thinking);
        else if (!strcmp(a, "--progress")) bad = on_off(a, v, &cfg.progress);
        else if (!strcmp(a, "--restart-cmd")) cfg.restart_cmd = v;
        else if (!strcmp(a, "--restart-wait")) bad = parse_seconds(a, v, &cfg.restart_wait_s);
        else if (!strcmp(a, "--timeout")) bad = parse_seconds(a, v, &cfg.timeout_s);
        else if (!strcmp(a, "--stall-timeout")) bad = parse_seconds(a, v, &cfg.stall_s);
        else if (!strcmp(a, "--max-time")) bad = parse_seconds(a, v, &cfg.max_time_s);
        else if (!strcmp(a, "--tokenizer")) tok_dir = v;
        else if (!strcmp(a, "--json-out")) cfg.json_out = v;
        else if (!strcmp(a, "--summary-out")) cfg.summary_out = v;
        else if (!strcmp(a, "--seed")) cfg.seed = strtoull(v, NULL, 10);
        else {
            fprintf(stderr, "cairn bench: unknown flag %s\n", a);
            bad = 1;
        }
    }
    if (bad) {
        fprintf(stderr, "(cairn bench --help lists the flags)\n");
        return 2;
    }
    struct tokenizer *tk = NULL;
    if (tok_dir) {
        if (tokenizer_load(tok_dir, &tk) != STATUS_OK) {
            fprintf(stderr, "cairn bench: cannot load the tokenizer in %s\n", tok_dir);
            return 2;
        }
        cfg.count_tokens = count_with_tokenizer;
        cfg.count_ctx = tk;
    }
    client_global_init();
    int failed = bench_main(&cfg);
    client_global_cleanup();
    if (tk) tokenizer_free(tk);
    if (failed < 0) return 2;
    return failed > 0 ? 1 : 0;
}
