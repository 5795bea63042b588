/* test_cuda_synth: synthetic weights made in device memory (backend cuda fill_synthetic,
 * model_synthesize_on) against the host fill (synth_fill_bf16, model_synthesize), and the default
 * KV budget from free device memory. Needs a GPU: run by `make test-cuda` on the GPU machine.
 *
 * The device fill is documented as bit-identical to the host's (backend/cuda/synth.cu): each
 * check reports the number of differing elements (must be 0) and the largest difference in bf16
 * ulps (must be <= 1, the brief's tolerance, so a failure of the first alone says the
 * "bit-identical" claim is wrong but the weights are still usable).
 */
#include "cuda/cuda_util.h"

#include "backend/backend.h"
#include "base/log.h"
#include "engine/engine.h"
#include "engine/runner.h"
#include "model/model.h"
#include "model/synth.h"
#include "model/weights.h"

/* bf16 values as ordered integers, so |a - b| counts ulps (same sign here: tiny values near 0 may
 * straddle it, which this ordering handles too). */
static int32_t ordered(uint16_t v)
{
    return (v & 0x8000) ? -(int32_t)(v & 0x7fff) : (int32_t)v;
}

struct cmp { size_t n_diff; int32_t max_ulp; size_t first; };

static struct cmp compare_bf16(const uint16_t *a, const uint16_t *b, size_t n)
{
    struct cmp c = { 0, 0, (size_t)-1 };
    for (size_t i = 0; i < n; i++) {
        if (a[i] == b[i]) continue;
        if (!c.n_diff) c.first = i;
        c.n_diff++;
        int32_t d = ordered(a[i]) - ordered(b[i]);
        if (d < 0) d = -d;
        if (d > c.max_ulp) c.max_ulp = d;
    }
    return c;
}

/* fill_synthetic on raw tensors: odd lengths (the n % 4 tail), an offset into the buffer, norm
 * bases, other stds and seeds, and one tensor large enough for the grid-stride loop. */
TEST(fill_matches_host)
{
    struct { size_t n; size_t offset; uint64_t tseed; float base, std; } cases[] = {
        { 1, 0, 1, 0.0f, SYNTH_STD }, { 3, 64, 2, 1.0f, SYNTH_STD }, { 4, 0, 3, 0.0f, SYNTH_STD },
        { 5, 128, 4, 0.0f, 1.0f }, { 1000, 0, 5, 1.0f, SYNTH_STD }, { 65537, 64, 6, 0.0f, SYNTH_STD },
        { (1u << 22) + 3, 0, 0x9e3779b97f4a7c15ULL, 0.0f, 0.5f }, { 151936u * 64, 0, 7, 0.0f, SYNTH_STD },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t n = cases[c].n, off = cases[c].offset;
        struct buffer *b;
        ASSERT(g_cuda->ops->buffer_new(g_cuda, off + n * 2, &b) == STATUS_OK);
        struct tensor t = tensor_1d(DTYPE_BF16, (int64_t)n, b, off);
        t.name = "test";
        g_cuda->ops->fill_synthetic(g_cuda, &t, cases[c].tseed, cases[c].base, cases[c].std);
        ASSERT(g_cuda->ops->sync(g_cuda) == STATUS_OK);
        uint16_t *dev = malloc(n * 2), *host = malloc(n * 2);
        g_cuda->ops->download(g_cuda, dev, &t, n * 2);
        synth_fill_bf16(host, n, cases[c].tseed, 0, cases[c].base, cases[c].std);
        struct cmp r = compare_bf16(dev, host, n);
        EXPECTF(r.n_diff == 0, "case %zu (n %zu): %zu of %zu elements differ (first at %zu), max %d ulp", c, n,
                r.n_diff, n, r.first, r.max_ulp);
        EXPECTF(r.max_ulp <= 1, "case %zu: max %d bf16 ulp", c, r.max_ulp);
        free(dev);
        free(host);
        g_cuda->ops->buffer_free(g_cuda, b);
    }
}

struct tlist { struct tensor *t[4096]; int n; };

static void collect(struct tensor *t, void *ctx)
{
    struct tlist *l = ctx;
    if (l->n < 4096) l->t[l->n++] = t;
}

static const char *moe_json =
    "{\"architectures\": [\"Qwen3MoeForCausalLM\"], \"vocab_size\": 96, \"hidden_size\": 32, \"intermediate_size\": 48,"
    " \"num_hidden_layers\": 3, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 16,"
    " \"num_experts\": 4, \"num_experts_per_tok\": 2, \"moe_intermediate_size\": 16, \"mlp_only_layers\": [0],"
    " \"max_position_embeddings\": 256, \"rope_theta\": 1000000.0, \"eos_token_id\": 5}";

static const char *write_tmp(const char *text, char *path, size_t cap)
{
    snprintf(path, cap, "/tmp/cairn_test_cuda_synth_%d.json", (int)getpid());
    FILE *f = fopen(path, "w");
    if (!f) return NULL;
    fputs(text, f);
    fclose(f);
    return path;
}

/* Whole models: every weight of model_synthesize_on(cuda) equals model_synthesize's, the device
 * model's logits equal those of the host model uploaded by model_prepare, and both free cleanly.
 * A backend per model: the cuda backend keeps the device copies made by weight_prepare keyed by
 * host address until it is destroyed, so a later host model at a reused address must not meet them. */
static void check_model(const char *config, uint64_t seed)
{
    struct model *dm = NULL, *hm = NULL;
    struct backend *be;
    if (backend_new("cuda", NULL, &be) != STATUS_OK) {
        EXPECTF(0, "cannot create a cuda backend");
        return;
    }
    EXPECT(model_synthesize_on(config, seed, be, &dm) == STATUS_OK);
    EXPECT(model_synthesize(config, seed, &hm) == STATUS_OK);
    if (!dm || !hm) goto out;
    EXPECTF(dm->dev_weights && dm->dev_weights->kind == BUF_DEVICE, "%s: weights not in device memory", config);
    EXPECT(dm->n_params == hm->n_params && dm->weight_bytes == hm->weight_bytes);
    static struct tlist dl, hl;
    dl.n = hl.n = 0;
    weights_for_each(dm, collect, &dl);
    weights_for_each(hm, collect, &hl);
    EXPECT(dl.n == hl.n && dl.n > 0);
    size_t n_diff = 0;
    int32_t max_ulp = 0;
    for (int i = 0; i < dl.n && i < hl.n; i++) {
        size_t n = (size_t)tensor_nelem(hl.t[i]);
        EXPECT((size_t)tensor_nelem(dl.t[i]) == n && dl.t[i]->buf->kind == BUF_DEVICE);
        uint16_t *dev = malloc(n * 2);
        be->ops->download(be, dev, dl.t[i], n * 2);
        struct cmp r = compare_bf16(dev, tensor_data(hl.t[i]), n);
        if (r.n_diff) fprintf(stderr, "  %s: %s: %zu of %zu differ, max %d ulp\n", config, hl.t[i]->name, r.n_diff, n, r.max_ulp);
        n_diff += r.n_diff;
        if (r.max_ulp > max_ulp) max_ulp = r.max_ulp;
        free(dev);
    }
    EXPECTF(n_diff == 0, "%s: %zu weight elements differ between device and host synthesis", config, n_diff);
    EXPECTF(max_ulp <= 1, "%s: max %d bf16 ulp", config, max_ulp);

    // Same forward pass on the same device: the logits must be identical.
    EXPECT(model_prepare(dm, be) == STATUS_OK);
    EXPECT(model_prepare(hm, be) == STATUS_OK);
    int32_t ids[6] = { 1, 2, 3, 4, 5, 6 };
    size_t nv = (size_t)hm->hp.n_vocab;
    float *la = malloc(sizeof(float) * 6 * nv), *lb = malloc(sizeof(float) * 6 * nv);
    struct runner *ra = NULL, *rb = NULL;
    EXPECT(runner_new(dm, be, 64, 8, DTYPE_BF16, &ra) == STATUS_OK);
    EXPECT(runner_new(hm, be, 64, 8, DTYPE_BF16, &rb) == STATUS_OK);
    if (ra && rb) {
        EXPECT(runner_feed(ra, ids, 6, la, true) == STATUS_OK);
        EXPECT(runner_feed(rb, ids, 6, lb, true) == STATUS_OK);
        EXPECTF(!memcmp(la, lb, sizeof(float) * 6 * nv), "%s: logits differ between device- and host-made weights", config);
    }
    runner_free(ra);
    runner_free(rb);
    free(la);
    free(lb);
out:
    model_free(dm);   // frees its device buffer through the backend (which outlives it)
    model_free(hm);
    backend_free(be);
}

TEST(models_match_host)
{
    check_model("tests/engine/tiny_qwen3.json", 7);
    check_model("tests/model/fixtures/gemma3/config.json", 3);     // (1 + w) norms: base 0
    check_model("tests/model/fixtures/qwen3_tied/config.json", 1); // tied embeddings
    char path[128];
    if (write_tmp(moe_json, path, sizeof path)) {
        check_model(path, 5);                                      // experts
        unlink(path);
    }
}

/* Greedy tokens of n_req concurrent requests on a synthetic model made on a fresh cuda backend
 * (graphs: step graphs on, or cfg cuda_graphs_off): out[i * n_gen + j] is request i's token j. */
static bool greedy_batch(const char *config, bool graphs, int n_req, int n_gen, int32_t *out)
{
    struct backend *be = NULL;
    enum status st = backend_new("cuda", &(struct backend_cfg){ .cuda_graphs_off = !graphs }, &be);
    if (st != STATUS_OK) return false;
    struct model *m = NULL;
    struct engine *e = NULL;
    bool ok = model_synthesize_on(config, 3, be, &m) == STATUS_OK && model_prepare(m, be) == STATUS_OK;
    struct engine_cfg cfg = engine_cfg_default();
    cfg.kv_cache_bytes = (size_t)256 << 20;
    cfg.prefix_cache = false;
    ok = ok && engine_new(&cfg, m, be, &e) == STATUS_OK && engine_start(e) == STATUS_OK;
    struct token_stream *ts[64] = { 0 };
    for (int i = 0; ok && i < n_req; i++) {
        int32_t prompt[64];
        for (int j = 0; j < 5 + i; j++) prompt[j] = 100 + (i * 37 + j * 11) % 5000;
        struct gen_request req = { .prompt = prompt, .n_prompt = 5 + i, .max_tokens = n_gen, .ignore_eos = true };
        ok = engine_submit(e, &req, &ts[i]) == STATUS_OK;
    }
    for (int i = 0; i < n_req && ts[i]; i++) {
        struct token_event ev;
        int j = 0;
        while (token_stream_next(ts[i], &ev, -1) == STATUS_OK) {
            if (ev.has_token && j < n_gen) out[i * n_gen + j++] = ev.token;
            if (ev.done) break;
        }
        ok = ok && j == n_gen && ev.finish == FINISH_LENGTH;
        token_stream_release(ts[i]);
    }
    if (e) engine_free(e);
    if (m) model_free(m);
    backend_free(be);
    return ok;
}

/* Step graphs replay exactly what they recorded: 8 and 13 greedy requests at once (decode steps
 * of 8 and 13 rows: the skinny tensor-core matmuls, recorded from a shape's second step on) give
 * the same tokens as a backend that runs every step op by op. */
TEST(step_graphs_equal_op_by_op)
{
    const int n_gen = 24, sizes[2] = { 8, 13 };
    for (int c = 0; c < 2; c++) {
        const int n = sizes[c];
        int32_t *with = (int32_t *)calloc((size_t)n * n_gen, sizeof(int32_t));
        int32_t *without = (int32_t *)calloc((size_t)n * n_gen, sizeof(int32_t));
        ASSERT(with && without);
        EXPECT(greedy_batch("configs/qwen3-0.6b.json", true, n, n_gen, with));
        EXPECT(greedy_batch("configs/qwen3-0.6b.json", false, n, n_gen, without));
        EXPECTF(!memcmp(with, without, sizeof(int32_t) * (size_t)n * n_gen),
                "%d requests: tokens with step graphs differ from op by op", n);
        free(with);
        free(without);
    }
}

/* A shape that cannot fit: a clear ENOMEM (with the sizes logged), no crash, nothing leaked. */
TEST(too_large_is_enomem)
{
    static const char *huge =
        "{\"architectures\": [\"Qwen3ForCausalLM\"], \"vocab_size\": 151936, \"hidden_size\": 8192,"
        " \"intermediate_size\": 65536, \"num_hidden_layers\": 200, \"num_attention_heads\": 64,"
        " \"num_key_value_heads\": 8, \"head_dim\": 128, \"max_position_embeddings\": 4096, \"rope_theta\": 1000000.0}";
    char path[128];
    ASSERT(write_tmp(huge, path, sizeof path));
    size_t free0, total;
    g_cuda->ops->mem_info(g_cuda, &free0, &total);
    struct model *m = NULL;
    EXPECT(model_synthesize_on(path, 1, g_cuda, &m) == STATUS_ENOMEM);
    EXPECT(m == NULL);
    size_t free1;
    g_cuda->ops->mem_info(g_cuda, &free1, &total);
    EXPECTF(free1 + (64u << 20) >= free0, "device memory leaked: %zu -> %zu free", free0, free1);
    unlink(path);
}

/* kv_cache_bytes == 0 on cuda: the pool takes what is free minus max(1 GiB, 5%), capped at
 * max_running contexts; an explicit size still wins. */
TEST(kv_default_from_free_memory)
{
    struct model *m = NULL;
    ASSERT(model_synthesize_on("configs/qwen3-0.6b.json", 1, g_cuda, &m) == STATUS_OK);
    ASSERT(model_prepare(m, g_cuda) == STATUS_OK);
    size_t free0, total;
    g_cuda->ops->mem_info(g_cuda, &free0, &total);
    size_t margin = total / 20 > (1ull << 30) ? total / 20 : (1ull << 30);
    struct engine_cfg cfg = engine_cfg_default();
    cfg.kv_dtype = DTYPE_BF16;
    cfg.max_running = 64;
    struct engine *e = NULL;
    EXPECT(engine_new(&cfg, m, g_cuda, &e) == STATUS_OK);
    if (e) {
        struct engine_stats s;
        engine_get_stats(e, &s);
        size_t per_block = model_kv_bytes_per_token(m, DTYPE_BF16) * (size_t)s.block_size;
        size_t kv = (size_t)s.kv_blocks_total * per_block;
        size_t free1;
        g_cuda->ops->mem_info(g_cuda, &free1, &total);
        fprintf(stderr, "  kv %.2f GiB (%d blocks); free before %.2f GiB, after %.2f GiB, margin %.2f GiB\n",
                (double)kv / (1 << 30), s.kv_blocks_total, (double)free0 / (1 << 30), (double)free1 / (1 << 30),
                (double)margin / (1 << 30));
        long cap_blocks = (long)cfg.max_running * ((m->hp.max_pos + s.block_size - 1) / s.block_size);
        EXPECT(kv > (2ull << 30) || s.kv_blocks_total == cap_blocks);   // far more than the old fixed 1 GiB
        EXPECT(kv + margin <= free0);                                     // the margin is kept
        EXPECTF(free1 + (256u << 20) >= margin || s.kv_blocks_total == cap_blocks,
                "only %.2f GiB free after the engine", (double)free1 / (1 << 30));
        engine_free(e);
    }
    cfg.kv_cache_bytes = 256u << 20;   // explicit: exactly that
    e = NULL;
    EXPECT(engine_new(&cfg, m, g_cuda, &e) == STATUS_OK);
    if (e) {
        struct engine_stats s;
        engine_get_stats(e, &s);
        size_t per_block = model_kv_bytes_per_token(m, DTYPE_BF16) * (size_t)s.block_size;
        EXPECT((size_t)s.kv_blocks_total == (256u << 20) / per_block);
        engine_free(e);
    }
    model_free(m);
}

/* End to end through the binary: `cairn run --synthetic` at the real 8B and 30B-A3B shapes on the
 * GPU (weights made in device memory, KV sized from what is left), greedy ids out, exit 0. */
static char g_cairn[512];

static void run_cli(const char *config, size_t need_total_gib)
{
    size_t free_b, total_b;
    g_cuda->ops->mem_info(g_cuda, &free_b, &total_b);
    if (total_b < (need_total_gib << 30)) {
        fprintf(stderr, "  skip %s: needs a %zu GiB device\n", config, need_total_gib);
        EXPECT(1);
        return;
    }
    char cmd[1024], log[128], out[128];
    snprintf(log, sizeof log, "/tmp/cairn_test_cuda_synth_%d.log", (int)getpid());
    snprintf(out, sizeof out, "/tmp/cairn_test_cuda_synth_%d.out", (int)getpid());
    snprintf(cmd, sizeof cmd, "CAIRN_LOG=info %s run --synthetic %s --prompt-ids 1,2,3,4,5 --max-tokens 6 --temperature 0 "
             "--ignore-eos --backend cuda > %s 2> %s", g_cairn, config, out, log);
    int rc = system(cmd);
    EXPECTF(rc == 0, "%s: exit status %d (log %s)", cmd, rc, log);
    char buf[4096] = "";
    FILE *f = fopen(out, "r");
    if (f) { size_t n = fread(buf, 1, sizeof buf - 1, f); buf[n] = 0; fclose(f); }
    int commas = 0;
    for (char *p = buf; *p; p++) commas += *p == ',';
    EXPECTF(commas == 5, "%s: want 6 ids, got '%s'", config, buf);
    f = fopen(log, "r");
    char lg[16384] = "";
    if (f) { size_t n = fread(lg, 1, sizeof lg - 1, f); lg[n] = 0; fclose(f); }
    EXPECTF(strstr(lg, "in cuda memory") != NULL, "%s: weights not made in device memory:\n%s", config, lg);
    EXPECTF(strstr(lg, "kv cache:") && strstr(lg, "bf16"), "%s: no bf16 kv cache log line:\n%s", config, lg);
    fprintf(stderr, "  %s -> %s", config, buf);
    if (!t_test_failed) { unlink(log); unlink(out); }
}

TEST(cli_big_shapes)
{
    run_cli("configs/qwen3-8b.json", 24);
    run_cli("configs/qwen3-30b-a3b.json", 70);
}

int main(int argc, char **argv)
{
    log_init_from_env();
    // build*/tests/cuda/test_cuda_synth -> build*/cairn
    snprintf(g_cairn, sizeof g_cairn, "%s", argc > 0 ? argv[0] : "build/tests/cuda/test_cuda_synth");
    char *cut = strstr(g_cairn, "tests/cuda/");
    if (cut) strcpy(cut, "cairn");
    else snprintf(g_cairn, sizeof g_cairn, "build/cairn");
    cuda_tests_open(false);
    if (!g_cuda->ops->fill_synthetic || !g_cuda->ops->mem_info) {
        fprintf(stderr, "FAIL: the cuda backend has no fill_synthetic / mem_info op\n");
        return 1;
    }
    RUN(fill_matches_host);
    RUN(models_match_host);
    RUN(step_graphs_equal_op_by_op);
    RUN(too_large_is_enomem);
    RUN(kv_default_from_free_memory);
    RUN(cli_big_shapes);
    backend_free(g_cuda);
    return test_summary();
}
