/* JSONL records round-trip (NaN as null), and the analysis of sweep cells, bursts and the
 * agentic verdict over hand-made runs whose answers are known. */
#include "harness.h"

#include <math.h>

#include "base/mem.h"
#include "bench/analyze.h"
#include "bench/run.h"

static void mk(struct bench_run *r, const char *label, const char *mode, const char *phase, int size, double ttft,
               double dec)
{
    bench_run_init(r);
    r->label = xstrdup(label);
    snprintf(r->mode, sizeof r->mode, "%s", mode);
    snprintf(r->phase, sizeof r->phase, "%s", phase);
    r->size = size;
    r->ttft_ms = ttft;
    r->decode_tps = dec;
    r->completion_tokens = 10;
}

TEST(jsonl_round_trip)
{
    struct bench_run r;
    mk(&r, "eng \"1\"", "sweep", "run", 512, 12.5, NAN);
    r.url = xstrdup("http://x:1");
    r.prompt_tokens = 513;
    r.cached_tokens = 496;
    snprintf(r.prompt_tokens_src, sizeof r.prompt_tokens_src, "usage");
    bench_run_set_error(&r, "stalled: no data for 1 s");
    bench_run_set_error(&r, "second reason is dropped");
    char path[] = "/tmp/cairn_test_run_XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    FILE *f = fdopen(fd, "w");
    EXPECT(bench_run_write_jsonl(&r, f) == STATUS_OK);
    EXPECT(bench_run_write_jsonl(&r, f) == STATUS_OK);
    fclose(f);
    struct bench_runs rs = {0};
    EXPECT(bench_runs_read_jsonl(path, &rs) == STATUS_OK);
    ASSERT(rs.n == 2);
    const struct bench_run *b = &rs.v[1];
    EXPECT(!strcmp(b->label, "eng \"1\""));
    EXPECT(!strcmp(b->url, "http://x:1"));
    EXPECT(!strcmp(b->mode, "sweep") && !strcmp(b->phase, "run"));
    EXPECT(b->size == 512 && b->prompt_tokens == 513 && b->completion_tokens == 10);
    EXPECT(b->ttft_ms == 12.5 && isnan(b->decode_tps) && isnan(b->total_ms));
    EXPECT(b->reasoning_tokens == -1 && b->cached_tokens == 496);
    EXPECT(b->error && !strcmp(b->error, "stalled: no data for 1 s"));
    bench_runs_free(&rs);
    // a line that is not a record is refused with its file
    f = fopen(path, "a");
    fputs("{\"hello\": 1}\n", f);
    fclose(f);
    EXPECT(bench_runs_read_jsonl(path, &rs) == STATUS_EFORMAT);
    bench_runs_free(&rs);
    remove(path);
    bench_run_deinit(&r);
}

TEST(sweep_cells_skip_warmup_and_failures)
{
    struct bench_runs rs = {0};
    struct bench_run r;
    mk(&r, "a", "sweep", "warmup", 512, 1000, 1);
    bench_runs_push(&rs, &r);
    double ttft[] = { 10, 30, 20 }, dec[] = { 100, 90, 110 };
    for (int i = 0; i < 3; i++) {
        mk(&r, "a", "sweep", "run", 64, ttft[i], dec[i]);
        bench_runs_push(&rs, &r);
    }
    mk(&r, "a", "sweep", "run", 64, 5, 500);
    bench_run_set_error(&r, "HTTP 500: x");
    bench_runs_push(&rs, &r);
    mk(&r, "b", "sweep", "run", 64, 1, 1);   // another engine
    bench_runs_push(&rs, &r);
    struct sweep_cell cells[4];
    int n = analyze_sweep(rs.v, rs.n, "a", cells, 4);
    ASSERT(n == 1);   // the warm-up's size 512 is not a cell
    EXPECT(cells[0].size == 64 && cells[0].n_ok == 3 && cells[0].n_failed == 1);
    EXPECT(cells[0].ttft_ms.median == 20 && cells[0].decode_tps.mean == 100);
    EXPECT(cells[0].first_error && !strcmp(cells[0].first_error, "HTTP 500: x"));
    const char *labels[4];
    EXPECT(analyze_labels(rs.v, rs.n, labels, 4) == 2);
    bench_runs_free(&rs);
}

static void burst_run(struct bench_runs *rs, int n, double start, double first, double end)
{
    struct bench_run r;
    mk(&r, "a", "burst", "burst", 64, first - start, 10);
    r.burst_n = n;
    r.start_ms = start;
    r.first_ms = first;
    r.end_ms = end;
    r.total_ms = end - start;
    bench_runs_push(rs, &r);
}

TEST(burst_serialization_is_told_from_batching)
{
    struct bench_runs rs = {0};
    // N=3 batched: all generate together over [10, 100]
    for (int i = 0; i < 3; i++) burst_run(&rs, 3, 0, 10, 100);
    // N=4 serialized: one after another
    for (int i = 0; i < 4; i++) burst_run(&rs, 4, 1000, 1000 + 100 * i + 10, 1000 + 100 * (i + 1));
    struct burst_cell c[4];
    int n = analyze_burst(rs.v, rs.n, NULL, c, 4);
    ASSERT(n == 2);
    EXPECT(c[0].n == 3 && !c[0].serialized && c[0].overlap_share == 1.0);
    EXPECT(c[0].wall_ms == 100 && fabs(c[0].agg_tps - 300.0) < 1e-9);   // 30 tokens in 0.1 s
    EXPECT(c[1].n == 4 && c[1].serialized && c[1].overlap_share == 0.0);
    EXPECT(c[1].latency_ms.max == 400 && c[1].latency_ms.min == 100);
    bench_runs_free(&rs);
}

TEST(agentic_verdict)
{
    struct bench_runs rs = {0};
    struct bench_run r;
    mk(&r, "a", "agentic", "cold", 0, 100, NAN);
    r.tool_calls = 1;
    r.tool_calls_clean = 1;
    bench_runs_push(&rs, &r);
    double pre[] = { 30, 10, 15 };
    for (int i = 0; i < 3; i++) {
        mk(&r, "a", "agentic", "prefix", 0, pre[i], NAN);
        r.tool_calls = 1;
        bench_runs_push(&rs, &r);
    }
    struct agentic_result a;
    EXPECT(analyze_agentic(rs.v, rs.n, "a", &a));
    EXPECT(a.prefix_median_ms == 15 && fabs(a.ratio - 0.15) < 1e-12 && a.verdict == 1);
    EXPECT(a.restart_verdict == -1 && a.tool_calls == 4 && a.tool_calls_clean == 1);
    rs.v[2].ttft_ms = 90;   // median now 30: ratio 0.3
    analyze_agentic(rs.v, rs.n, "a", &a);
    EXPECT(a.verdict == 0);
    EXPECT(!analyze_agentic(rs.v, rs.n, "nobody", &a));
    bench_runs_free(&rs);
}

int main(void)
{
    RUN(jsonl_round_trip);
    RUN(sweep_cells_skip_warmup_and_failures);
    RUN(burst_serialization_is_told_from_batching);
    RUN(agentic_verdict);
    return test_summary();
}
