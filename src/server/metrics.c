/* metrics: see metrics.h. Fixed-size tables: endpoints are a short known list (unknown routes
 * count as "other"), statuses per endpoint at most 24 distinct codes. */
#include "server/metrics.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const char *endpoints[] = {
    "/v1/chat/completions", "/v1/completions", "/v1/messages", "/v1/messages/count_tokens",
    "/v1/responses", "/v1/models", "/tokenize", "/detokenize", "/health", "/metrics",
    "/api/chat", "/api/generate", "/api/tags", "/api/show", "/api/version", "/api/ps", "/", "other",
};
#define N_EP     (int)(sizeof endpoints / sizeof endpoints[0])
#define N_CODES  24

static const double ttft_b[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60 };
static const double itl_b[]  = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5 };
#define N_TTFT (int)(sizeof ttft_b / sizeof ttft_b[0])
#define N_ITL  (int)(sizeof itl_b / sizeof itl_b[0])

/* A Prometheus histogram: its bucket bounds, the observations in each bucket (c[n]: above every
 * bound), and their sum and count. */
#define HIST_BOUNDS_MAX 16
_Static_assert(N_TTFT <= HIST_BOUNDS_MAX && N_ITL <= HIST_BOUNDS_MAX, "histogram bounds");
struct hist {
    const double *bounds;
    int           n;
    uint64_t      c[HIST_BOUNDS_MAX + 1];
    double        sum;
    uint64_t      count;
};

struct metrics {
    pthread_mutex_t mu;
    int             codes[N_EP][N_CODES];
    uint64_t        counts[N_EP][N_CODES];
    struct hist     ttft, itl;
    uint64_t        prompt, cached, generated;
    int             inflight;
};

struct metrics *metrics_new(void)
{
    struct metrics *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    pthread_mutex_init(&m->mu, NULL);
    m->ttft = (struct hist){ .bounds = ttft_b, .n = N_TTFT };
    m->itl = (struct hist){ .bounds = itl_b, .n = N_ITL };
    return m;
}

void metrics_free(struct metrics *m)
{
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void metrics_request(struct metrics *m, const char *endpoint, int code)
{
    int e = N_EP - 1;
    for (int i = 0; i < N_EP - 1; i++)
        if (!strcmp(endpoint, endpoints[i])) { e = i; break; }
    pthread_mutex_lock(&m->mu);
    for (int k = 0; k < N_CODES; k++) {
        if (m->codes[e][k] == code || m->codes[e][k] == 0) {
            m->codes[e][k] = code;
            m->counts[e][k]++;
            break;
        }
    }
    pthread_mutex_unlock(&m->mu);
}

static void observe(struct metrics *m, struct hist *h, double v)
{
    int i = 0;
    while (i < h->n && v > h->bounds[i]) i++;
    pthread_mutex_lock(&m->mu);
    h->c[i]++;
    h->sum += v;
    h->count++;
    pthread_mutex_unlock(&m->mu);
}

void metrics_ttft(struct metrics *m, double s) { observe(m, &m->ttft, s); }
void metrics_itl(struct metrics *m, double s) { observe(m, &m->itl, s); }

void metrics_tokens(struct metrics *m, int prompt, int cached, int generated)
{
    pthread_mutex_lock(&m->mu);
    m->prompt += (uint64_t)prompt;
    m->cached += (uint64_t)cached;
    m->generated += (uint64_t)generated;
    pthread_mutex_unlock(&m->mu);
}

void metrics_inflight(struct metrics *m, int delta)
{
    pthread_mutex_lock(&m->mu);
    m->inflight += delta;
    pthread_mutex_unlock(&m->mu);
}

static void render_hist(struct strbuf *o, const char *name, const char *help, const struct hist *h)
{
    strbuf_printf(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t acc = 0;
    for (int i = 0; i < h->n; i++) {
        acc += h->c[i];
        strbuf_printf(o, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i], (unsigned long long)acc);
    }
    acc += h->c[h->n];
    strbuf_printf(o, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
                  (unsigned long long)acc, name, h->sum, name, (unsigned long long)h->count);
}

void metrics_render(struct metrics *m, const struct engine_stats *st, struct strbuf *o)
{
    pthread_mutex_lock(&m->mu);
    strbuf_puts(o, "# HELP cairn_requests_total HTTP requests by endpoint and status.\n# TYPE cairn_requests_total counter\n");
    for (int e = 0; e < N_EP; e++)
        for (int k = 0; k < N_CODES && m->codes[e][k]; k++)
            strbuf_printf(o, "cairn_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n", endpoints[e],
                          m->codes[e][k], (unsigned long long)m->counts[e][k]);
    render_hist(o, "cairn_time_to_first_token_seconds", "Time from request to first generated token.", &m->ttft);
    render_hist(o, "cairn_inter_token_latency_seconds", "Time between consecutive generated tokens.", &m->itl);
    strbuf_printf(o, "# HELP cairn_prompt_tokens_total Prompt tokens of finished requests.\n# TYPE cairn_prompt_tokens_total counter\n"
                     "cairn_prompt_tokens_total %llu\n", (unsigned long long)m->prompt);
    strbuf_printf(o, "# HELP cairn_cached_tokens_total Prompt tokens served from the prefix cache.\n# TYPE cairn_cached_tokens_total counter\n"
                     "cairn_cached_tokens_total %llu\n", (unsigned long long)m->cached);
    strbuf_printf(o, "# HELP cairn_generated_tokens_total Generated tokens.\n# TYPE cairn_generated_tokens_total counter\n"
                     "cairn_generated_tokens_total %llu\n", (unsigned long long)m->generated);
    strbuf_printf(o, "# HELP cairn_requests_in_flight HTTP requests being served.\n# TYPE cairn_requests_in_flight gauge\n"
                     "cairn_requests_in_flight %d\n", m->inflight);
    pthread_mutex_unlock(&m->mu);
    if (!st) return;
    strbuf_printf(o, "# HELP cairn_kv_blocks KV cache blocks by state.\n# TYPE cairn_kv_blocks gauge\n"
                     "cairn_kv_blocks{state=\"total\"} %d\ncairn_kv_blocks{state=\"used\"} %d\n"
                     "cairn_kv_blocks{state=\"cached\"} %d\ncairn_kv_blocks{state=\"free\"} %d\n",
                  st->kv_blocks_total, st->kv_blocks_used, st->kv_blocks_cached, st->kv_blocks_free);
    if (st->state_slots_total > 0)   // hybrid models: a slot per running sequence, out of the same memory
        strbuf_printf(o, "# HELP cairn_state_slots Recurrent-state slots (hybrid models) by state.\n"
                         "# TYPE cairn_state_slots gauge\ncairn_state_slots{state=\"total\"} %d\n"
                         "cairn_state_slots{state=\"free\"} %d\n", st->state_slots_total, st->state_slots_free);
    strbuf_printf(o, "# HELP cairn_queue_depth Requests waiting for admission.\n# TYPE cairn_queue_depth gauge\n"
                     "cairn_queue_depth %d\n", st->n_waiting);
    strbuf_printf(o, "# HELP cairn_running Requests being generated.\n# TYPE cairn_running gauge\ncairn_running %d\n",
                  st->n_running);
    strbuf_printf(o, "# HELP cairn_preemptions_total Requests preempted for memory.\n# TYPE cairn_preemptions_total counter\n"
                     "cairn_preemptions_total %llu\n", (unsigned long long)st->preemptions);
    strbuf_printf(o, "# HELP cairn_prefix_hit_tokens_total Prompt tokens found in the prefix cache.\n# TYPE cairn_prefix_hit_tokens_total counter\n"
                     "cairn_prefix_hit_tokens_total %llu\n", (unsigned long long)st->prefix_hit_tokens);
}
