/* report: `cairn bench report A.jsonl B.jsonl ... -o report.html`. Reads the runs of each file,
 * groups them by engine label, and writes one self-contained HTML page (inline CSS and SVG, no
 * scripts, no external fetches) that compares the engines side by side: decode tok/s vs context,
 * the same normalized to each engine's smallest-prompt value, TTFT on a log axis, run-to-run
 * spread, prefill tok/s, burst latency and throughput, the agentic verdict, and the raw tables.
 * Charts are drawn by bench/svg.c. Main thread only.
 *
 *     const char *in[] = { "cairn.jsonl", "llamacpp.jsonl" };
 *     bench_report_html(in, 2, "report.html");
 */
#ifndef CAIRN_BENCH_REPORT_H
#define CAIRN_BENCH_REPORT_H

#include "base/status.h"

/* Logs and returns EIO/EFORMAT on an unreadable input or output file, EINVAL on no runs. */
enum status bench_report_html(const char *const *jsonl_paths, int n_paths, const char *out_path);

#endif
