/* metrics: the server's Prometheus counters and histograms, rendered by GET /metrics.
 *
 * Requests by endpoint and HTTP status, TTFT and inter-token-latency histograms, prompt / cached /
 * generated token counters; gauges (KV blocks, queue, running, preemptions) come from the engine's
 * stats at render time. Thread-safe (one mutex); updates are a few adds.
 *
 *     metrics_request(m, "/v1/chat/completions", 200);
 *     metrics_ttft(m, 0.05);  metrics_itl(m, 0.01);  metrics_render(m, &stats, &sb);
 */
#ifndef CAIRN_SERVER_METRICS_H
#define CAIRN_SERVER_METRICS_H

#include <stdint.h>

#include "base/mem.h"
#include "engine/engine.h"

struct metrics;

struct metrics *metrics_new(void);
void            metrics_free(struct metrics *m);
void            metrics_request(struct metrics *m, const char *endpoint, int http_status);
void            metrics_ttft(struct metrics *m, double s);
void            metrics_itl(struct metrics *m, double s);
void            metrics_tokens(struct metrics *m, int prompt, int cached, int generated);
void            metrics_inflight(struct metrics *m, int delta);
/* stats may be NULL while the model loads. */
void            metrics_render(struct metrics *m, const struct engine_stats *stats, struct strbuf *out);

#endif
