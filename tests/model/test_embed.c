/* Embeddings (engine gen_request.embed: last-token pooling of the final normed hidden state)
 * against transformers, on ref and cpu (CAIRN_TEST_BACKENDS=cuda,... for the GPU):
 *  - qwen3 fixture (tools/make_model_fixtures.py): its hidden_0.f32 holds transformers' final
 *    normed hidden state of every position of prompt 0, so the embedding of the prefix of length n
 *    is row n-1. Prefixes of several lengths run as one engine batch, mixed with a greedy chat
 *    request whose tokens must equal the solo run; every embedding must equal its solo run (cpu:
 *    bit for bit) and the KV blocks must all be free afterwards.
 *  - qwen3_embed fixture (tools/make_embed_fixtures.py): a Qwen3Model checkpoint saved without
 *    "model." and lm_head, as Qwen3-Embedding ships; transformers' left-padded batch, pooled and
 *    L2-normalised, and its 32-dim Matryoshka truncation. Skipped (with a note) when absent.
 * Bound: max |Δ| / max |ref| <= 1e-3 per vector (the dense fixtures' logits bound); cuda 2e-2. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend_env.h"
#include "base/log.h"
#include "base/mem.h"
#include "engine/engine.h"
#include "engine/runner.h"
#include "harness.h"
#include "model/fixture_model.h"

#define FIXTURES "tests/model/fixtures"



static float *read_f32(const char *path, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    float *v = xmalloc(n * sizeof *v);
    size_t got = fread(v, sizeof *v, n, f);
    fclose(f);
    if (got != n) {
        free(v);
        return NULL;
    }
    return v;
}

/* L2-normalised first dims entries of h (the pooling the server applies). */
static void normalize(const float *h, int dims, float *out)
{
    double ss = 0;
    for (int i = 0; i < dims; i++) ss += (double)h[i] * h[i];
    double inv = ss > 0 ? 1.0 / sqrt(ss) : 0;
    for (int i = 0; i < dims; i++) out[i] = (float)(h[i] * inv);
}

static double rel_err(const float *got, const float *ref, int n)
{
    double max_ref = 0, max_diff = 0;
    for (int i = 0; i < n; i++) {
        if (fabs(ref[i]) > max_ref) max_ref = fabs(ref[i]);
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= max_diff)) max_diff = d;   // NaN fails
    }
    return max_ref > 0 ? max_diff / max_ref : max_diff;
}

static double tol_of(const char *be) { return backend_rounds_bf16(be) ? 2e-2 : 1e-3; }

static struct engine *new_engine(struct opened *o, int max_batch_tokens)
{
    struct engine_cfg cfg = engine_cfg_default();
    cfg.kv_cache_bytes = (size_t)8 << 20;
    cfg.max_batch_tokens = max_batch_tokens;   // small: long inputs take several prefill chunks
    struct engine *e;
    CHECK(engine_new(&cfg, o->m, o->be, &e) == STATUS_OK, "engine_new");
    return e;
}

static struct gen_request embed_req(const int32_t *ids, int n)
{
    return (struct gen_request){ .prompt = ids, .n_prompt = n, .embed = true };
}

/* Runs the engine until every stream is done; copies each embedding (d floats) into out. */
static void drain(struct engine *e, struct token_stream **ts, int n, int d, float *out)
{
    for (int steps = 0; steps < 10000 && engine_step(e); steps++) {}
    for (int i = 0; i < n; i++) {
        struct token_event ev;
        EXPECT(token_stream_next(ts[i], &ev, 0) == STATUS_OK && ev.done);
        EXPECTF(ev.finish == FINISH_EMBEDDED, "stream %d ended with %d", i, (int)ev.finish);
        const float *v;
        int got = token_stream_embedding(ts[i], &v);
        EXPECTF(got == d, "stream %d: %d floats", i, got);
        if (got == d) memcpy(out + (size_t)i * d, v, sizeof(float) * (size_t)d);
        token_stream_release(ts[i]);
    }
}

/* Embeddings hold no block once done and index none in the prefix cache (a chat request's
 * prompt blocks stay cached: max_cached). */
static void check_kv_free(struct engine *e, int max_cached)
{
    struct engine_stats st;
    engine_get_stats(e, &st);
    EXPECTF(st.kv_blocks_used == 0 && st.kv_blocks_cached <= max_cached, "KV after embeddings: %d used, %d cached",
            st.kv_blocks_used, st.kv_blocks_cached);
}

/* ==== qwen3: prefixes of prompt 0 against transformers' final hidden states ==== */

static void qwen3_prefixes(const char *be)
{
    char dir[256], path[320];
    snprintf(dir, sizeof dir, "%s/qwen3", FIXTURES);
    struct opened o;
    ASSERT(open_model(dir, be, &o) == STATUS_OK);
    int d = o.m->hp.d_model, L = o.m->hp.n_layers;
    EXPECT(!model_is_embedder(o.m));   // a ForCausalLM with its head: generation by default

    snprintf(path, sizeof path, "%s/ref.json", dir);
    json_t *ref = json_load_file(path, 0, NULL);
    ASSERT(ref);
    json_t *p0 = json_array_get(json_object_get(ref, "prompts"), 0);
    int n0 = (int)json_array_size(p0);
    int32_t *prompt = xmalloc(sizeof *prompt * (size_t)n0);
    for (int i = 0; i < n0; i++) prompt[i] = (int32_t)json_integer_value(json_array_get(p0, (size_t)i));
    snprintf(path, sizeof path, "%s/hidden_0.f32", dir);
    float *hid = read_f32(path, (size_t)(L + 1) * n0 * d);
    ASSERT(hid);
    const float *last = hid + (size_t)L * n0 * d;   // after the final norm

    enum { N = 5 };
    const int lens[N] = { 1, 7, 16, 33, 40 };
    float got[N * 64], solo[N * 64], want[64], g[64];
    ASSERT(d <= 64 && n0 >= 40);

    // one engine, all prefixes at once, with a chat request beside them; small steps, so the
    // longer inputs are prefilled in several chunks while the chat request decodes
    struct engine *e = new_engine(&o, 24);
    struct token_stream *ts[N], *chat;
    for (int i = 0; i < N; i++) {
        struct gen_request r = embed_req(prompt, lens[i]);
        ASSERT(engine_submit(e, &r, &ts[i]) == STATUS_OK);
    }
    struct gen_request cr = { .prompt = prompt, .n_prompt = 12, .max_tokens = 6, .sampling = sampling_greedy(),
                              .ignore_eos = true };
    ASSERT(engine_submit(e, &cr, &chat) == STATUS_OK);
    drain(e, ts, N, d, got);
    int32_t toks[6];
    int n_tok = 0;
    struct token_event ev;
    while (n_tok < 6 && token_stream_next(chat, &ev, 0) == STATUS_OK && ev.has_token) toks[n_tok++] = ev.token;
    token_stream_release(chat);
    check_kv_free(e, 1);   // the chat prompt's one full block
    engine_free(e);

    // the chat request's tokens are those of its solo run
    struct runner *rn;
    ASSERT(runner_new(o.m, o.be, 64, 64, DTYPE_F32, &rn) == STATUS_OK);
    float *lg = xmalloc(sizeof *lg * (size_t)o.m->hp.n_vocab);
    int32_t cur[1];
    EXPECT(runner_feed(rn, prompt, 12, lg, false) == STATUS_OK);
    bool same = n_tok == 6;
    for (int i = 0; i < 6 && same; i++) {
        int b = 0;
        for (int v = 1; v < o.m->hp.n_vocab; v++)
            if (lg[v] > lg[b]) b = v;
        same = toks[i] == b;
        cur[0] = b;
        if (i < 5) EXPECT(runner_feed(rn, cur, 1, lg, false) == STATUS_OK);
    }
    // (on cuda a row may change with the batch and the chunking around it: checked on the host backends)
    if (!strcmp(be, "ref") || !strcmp(be, "cpu"))
        EXPECTF(same, "%s: the chat request beside embeddings differs from its solo run", be);
    runner_free(rn);
    free(lg);

    // each embedding alone
    for (int i = 0; i < N; i++) {
        struct engine *e1 = new_engine(&o, 256);
        struct token_stream *t1;
        struct gen_request r = embed_req(prompt, lens[i]);
        ASSERT(engine_submit(e1, &r, &t1) == STATUS_OK);
        drain(e1, &t1, 1, d, solo + (size_t)i * d);
        check_kv_free(e1, 0);
        engine_free(e1);
    }

    double worst = 0, worst_solo = 0;
    for (int i = 0; i < N; i++) {
        normalize(last + (size_t)(lens[i] - 1) * d, d, want);
        normalize(got + (size_t)i * d, d, g);
        double err = rel_err(g, want, d);
        EXPECTF(err <= tol_of(be), "%s: prefix %d: embedding off by %.3e", be, lens[i], err);
        if (err > worst) worst = err;
        double bs = rel_err(got + (size_t)i * d, solo + (size_t)i * d, d);
        if (bs > worst_solo) worst_solo = bs;
        if (!strcmp(be, "cpu") || !strcmp(be, "ref"))
            EXPECTF(!memcmp(got + (size_t)i * d, solo + (size_t)i * d, sizeof(float) * (size_t)d),
                    "%s: prefix %d: batched embedding differs from its solo run (%.3e)", be, lens[i], bs);
    }
    fprintf(stderr, "  qwen3 %-4s prefixes 1..40: max rel err vs transformers %.2e, batch vs solo %.2e\n", be, worst,
            worst_solo);
    free(hid);
    free(prompt);
    json_decref(ref);
    close_model(&o);
}

/* ==== qwen3_embed: a Qwen3Model checkpoint against transformers' pooled, normalised batch ==== */

static bool qwen3_embed(const char *be)
{
    char dir[256], path[320];
    snprintf(dir, sizeof dir, "%s/qwen3_embed", FIXTURES);
    snprintf(path, sizeof path, "%s/ref.json", dir);
    json_t *ref = json_load_file(path, 0, NULL);
    if (!ref) return false;
    struct opened o;
    EXPECT(open_model(dir, be, &o) == STATUS_OK);
    if (t_test_failed) {
        json_decref(ref);
        return true;
    }
    EXPECT(model_is_embedder(o.m));
    EXPECT(!model_has_lm_head(o.m));
    int d = o.m->hp.d_model;
    json_t *inputs = json_object_get(ref, "inputs");
    int n = (int)json_array_size(inputs);
    int dims32 = (int)json_integer_value(json_array_get(json_object_get(ref, "dims"), 1));
    snprintf(path, sizeof path, "%s/embed.f32", dir);
    float *want = read_f32(path, (size_t)n * d);
    snprintf(path, sizeof path, "%s/embed_dim32.f32", dir);
    float *want32 = read_f32(path, (size_t)n * dims32);
    EXPECT(want && want32 && n > 0 && dims32 > 0 && dims32 <= d);

    int32_t **ids = xcalloc((size_t)n, sizeof *ids);
    struct token_stream **ts = xcalloc((size_t)n, sizeof *ts);
    float *got = xmalloc(sizeof *got * (size_t)n * d), *g = xmalloc(sizeof *g * (size_t)d);
    struct engine *e = new_engine(&o, 128);
    for (int i = 0; i < n; i++) {
        json_t *a = json_array_get(inputs, (size_t)i);
        int len = (int)json_array_size(a);
        ids[i] = xmalloc(sizeof **ids * (size_t)len);
        for (int k = 0; k < len; k++) ids[i][k] = (int32_t)json_integer_value(json_array_get(a, (size_t)k));
        struct gen_request r = embed_req(ids[i], len);
        EXPECT(engine_submit(e, &r, &ts[i]) == STATUS_OK);
    }
    drain(e, ts, n, d, got);
    check_kv_free(e, 0);
    // generation is refused on a model without lm_head, with a reason
    struct gen_request gr = { .prompt = ids[0], .n_prompt = 1, .max_tokens = 1, .sampling = sampling_greedy() };
    struct token_stream *gts = NULL;
    char msg[256];
    EXPECT(engine_submit_msg(e, &gr, &gts, msg, sizeof msg) == STATUS_EUNSUPPORTED && strstr(msg, "lm_head"));
    engine_free(e);

    double worst = 0, worst32 = 0;
    for (int i = 0; i < n && want && want32; i++) {
        normalize(got + (size_t)i * d, d, g);
        double err = rel_err(g, want + (size_t)i * d, d);
        EXPECTF(err <= tol_of(be), "%s: qwen3_embed input %d: off by %.3e", be, i, err);
        if (err > worst) worst = err;
        normalize(got + (size_t)i * d, dims32, g);
        err = rel_err(g, want32 + (size_t)i * dims32, dims32);
        EXPECTF(err <= tol_of(be), "%s: qwen3_embed input %d, %d dims: off by %.3e", be, i, dims32, err);
        if (err > worst32) worst32 = err;
    }
    fprintf(stderr, "  qwen3_embed %-4s %d inputs: max rel err vs transformers %.2e (%d dims: %.2e)\n", be, n, worst,
            dims32, worst32);
    for (int i = 0; i < n; i++) free(ids[i]);
    free(ids);
    free(ts);
    free(got);
    free(g);
    free(want);
    free(want32);
    json_decref(ref);
    close_model(&o);
    return true;
}

/* Refusals with their reasons, a cancelled embedding, and a preempted one (a tiny cache): the
 * cache ends empty and a preempted input still gets the vector of its solo run. */
TEST(embedding_requests_in_the_engine)
{
    struct opened o;
    ASSERT(open_model(FIXTURES "/qwen3", "cpu", &o) == STATUS_OK);
    int d = o.m->hp.d_model;
    int32_t ids[600];
    for (int i = 0; i < 600; i++) ids[i] = 3 + (int32_t)((i * 7919) % 300);
    struct engine_cfg cfg = engine_cfg_default();
    cfg.kv_cache_bytes = (size_t)12 * 16 * model_kv_bytes_per_token(o.m, DTYPE_F32);   // 12 blocks of 16 tokens
    cfg.max_batch_tokens = 4;   // long prefills: the chat request's decodes outgrow the cache meanwhile
    struct engine *e;
    ASSERT(engine_new(&cfg, o.m, o.be, &e) == STATUS_OK);
    char msg[256];
    struct token_stream *ts = NULL;
    struct gen_request r = embed_req(ids, 0);
    EXPECT(engine_submit_msg(e, &r, &ts, msg, sizeof msg) == STATUS_EINVAL && strstr(msg, "empty"));
    r = embed_req(ids, 12 * 16 + 1);   // more than the whole cache
    EXPECT(engine_submit_msg(e, &r, &ts, msg, sizeof msg) == STATUS_ETOOLONG && strstr(msg, "193 tokens"));
    int32_t bad_id = 100000;
    r = embed_req(&bad_id, 1);
    EXPECT(engine_submit_msg(e, &r, &ts, msg, sizeof msg) == STATUS_EINVAL && strstr(msg, "vocabulary"));
    r = embed_req(ids, 12 * 16);   // exactly the whole cache: allowed (no generated token to make room for)
    EXPECT(engine_submit(e, &r, &ts) == STATUS_OK);
    float full[64];
    drain(e, &ts, 1, d, full);

    // cancelled before and during its prefill
    struct token_stream *c1, *c2;
    r = embed_req(ids, 150);
    ASSERT(engine_submit(e, &r, &c1) == STATUS_OK && engine_submit(e, &r, &c2) == STATUS_OK);
    token_stream_release(c1);
    engine_step(e);
    token_stream_release(c2);
    for (int i = 0; i < 100 && engine_step(e); i++) {}
    check_kv_free(e, 0);

    // a chat request decoding while embeddings take the rest of the cache: someone is preempted,
    // and every embedding still equals its solo run
    struct token_stream *chat, *emb[3];
    struct gen_request cr = { .prompt = ids, .n_prompt = 16, .max_tokens = 100, .sampling = sampling_greedy(),
                              .ignore_eos = true };
    const int lens[3] = { 140, 60, 60 };
    ASSERT(engine_submit(e, &cr, &chat) == STATUS_OK);
    for (int i = 0; i < 3; i++) {
        r = embed_req(ids + 10 * i, lens[i]);
        ASSERT(engine_submit(e, &r, &emb[i]) == STATUS_OK);
    }
    float got[3 * 64], solo[64];
    drain(e, emb, 3, d, got);
    struct engine_stats st;
    engine_get_stats(e, &st);
    struct token_event ev;
    int n = 0;
    while (token_stream_next(chat, &ev, 0) == STATUS_OK && ev.has_token) n++;
    EXPECTF(n == 100 && ev.done, "the chat request produced %d tokens", n);
    token_stream_release(chat);
    fprintf(stderr, "  tiny cache: %llu preemptions\n", (unsigned long long)st.preemptions);
    EXPECT(st.preemptions > 0);
    check_kv_free(e, 12);
    engine_free(e);
    for (int i = 0; i < 3; i++) {
        struct engine *e1 = new_engine(&o, 256);
        struct token_stream *t1;
        r = embed_req(ids + 10 * i, lens[i]);
        ASSERT(engine_submit(e1, &r, &t1) == STATUS_OK);
        drain(e1, &t1, 1, d, solo);
        engine_free(e1);
        EXPECTF(!memcmp(solo, got + (size_t)i * d, sizeof(float) * (size_t)d), "embedding %d differs from its solo run", i);
    }
    close_model(&o);
}

TEST(embeddings_match_transformers)
{
    const char *backends = getenv("CAIRN_TEST_BACKENDS");
    if (!backends) backends = "ref,cpu";
    char *list = xstrdup(backends), *save = NULL;
    bool have_embed_fixture = true;
    for (char *be = strtok_r(list, ",", &save); be; be = strtok_r(NULL, ",", &save)) {
        qwen3_prefixes(be);
        have_embed_fixture = qwen3_embed(be) && have_embed_fixture;
    }
    if (!have_embed_fixture)
        fprintf(stderr, "  note: %s/qwen3_embed absent (tools/make_embed_fixtures.py makes it): Qwen3Model part "
                "not run\n", FIXTURES);
    free(list);
}

int main(void)
{
    log_init_from_env();
    RUN(embeddings_match_transformers);
    RUN(embedding_requests_in_the_engine);
    return test_summary();
}
