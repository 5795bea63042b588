/* run: struct bench_run and its JSONL form (see run.h). jansson writes and reads the lines;
 * NaN metrics are written as null (JSON has no NaN) and read back as NaN. */
#include "bench/run.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"

void bench_run_init(struct bench_run *r)
{
    memset(r, 0, sizeof *r);
    r->ttft_ms = r->total_ms = r->decode_ms = r->prefill_tps = r->decode_tps = NAN;
    r->start_ms = r->first_ms = r->end_ms = NAN;
    r->prompt_tokens = r->completion_tokens = r->reasoning_tokens = r->content_tokens = r->cached_tokens = -1;
    snprintf(r->prompt_tokens_src, sizeof r->prompt_tokens_src, "none");
}

void bench_run_deinit(struct bench_run *r)
{
    free(r->url);
    free(r->model);
    free(r->label);
    free(r->tool_error);
    free(r->error);
    memset(r, 0, sizeof *r);
}

void bench_run_set_error(struct bench_run *r, const char *reason)
{
    if (!r->error) r->error = xstrdup(reason);
}

static json_t *num_or_null(double x)
{
    return isfinite(x) ? json_real(x) : json_null();
}

static json_t *int_or_null(int x)
{
    return x >= 0 ? json_integer(x) : json_null();
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

enum status bench_run_write_jsonl(const struct bench_run *r, FILE *f)
{
    json_t *o = json_object();
    json_object_set_new(o, "url", str_or_null(r->url));
    json_object_set_new(o, "model", str_or_null(r->model));
    json_object_set_new(o, "label", str_or_null(r->label));
    json_object_set_new(o, "mode", json_string(r->mode));
    json_object_set_new(o, "phase", json_string(r->phase));
    json_object_set_new(o, "size", json_integer(r->size));
    json_object_set_new(o, "burst_n", json_integer(r->burst_n));
    json_object_set_new(o, "run", json_integer(r->run));
    json_object_set_new(o, "nonce", json_string(r->nonce));
    json_object_set_new(o, "ttft_ms", num_or_null(r->ttft_ms));
    json_object_set_new(o, "total_ms", num_or_null(r->total_ms));
    json_object_set_new(o, "decode_ms", num_or_null(r->decode_ms));
    json_object_set_new(o, "prefill_tps", num_or_null(r->prefill_tps));
    json_object_set_new(o, "decode_tps", num_or_null(r->decode_tps));
    json_object_set_new(o, "prompt_tokens", int_or_null(r->prompt_tokens));
    json_object_set_new(o, "prompt_tokens_src", json_string(r->prompt_tokens_src));
    json_object_set_new(o, "completion_tokens", int_or_null(r->completion_tokens));
    json_object_set_new(o, "reasoning_tokens", int_or_null(r->reasoning_tokens));
    json_object_set_new(o, "cached_tokens", int_or_null(r->cached_tokens));
    json_object_set_new(o, "content_tokens", int_or_null(r->content_tokens));
    json_object_set_new(o, "tool_calls", json_integer(r->tool_calls));
    json_object_set_new(o, "tool_calls_clean", json_integer(r->tool_calls_clean));
    json_object_set_new(o, "tool_error", str_or_null(r->tool_error));
    json_object_set_new(o, "start_ms", num_or_null(r->start_ms));
    json_object_set_new(o, "first_ms", num_or_null(r->first_ms));
    json_object_set_new(o, "end_ms", num_or_null(r->end_ms));
    json_object_set_new(o, "http_status", json_integer(r->http_status));
    json_object_set_new(o, "finish_reason", json_string(r->finish_reason));
    json_object_set_new(o, "thinking", json_boolean(r->thinking));
    json_object_set_new(o, "max_tokens", json_integer(r->max_tokens));
    json_object_set_new(o, "temperature", num_or_null(r->temperature));   // null: a record from before the field
    json_object_set_new(o, "error", str_or_null(r->error));
    char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    json_decref(o);
    CHECK(line, "json_dumps failed");
    int ok = fprintf(f, "%s\n", line) > 0 && fflush(f) == 0;
    free(line);
    if (!ok) {
        LOG_ERR("bench: writing the JSONL output failed");
        return STATUS_EIO;
    }
    return STATUS_OK;
}

static double get_num(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static int get_int(const json_t *o, const char *k, int dflt)
{
    const json_t *v = json_object_get(o, k);
    return json_is_number(v) ? (int)json_number_value(v) : dflt;
}

static char *get_str(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    return json_is_string(v) ? xstrdup(json_string_value(v)) : NULL;
}

static void get_fixed(const json_t *o, const char *k, char *dst, size_t cap)
{
    const json_t *v = json_object_get(o, k);
    if (json_is_string(v)) snprintf(dst, cap, "%s", json_string_value(v));
}

enum status bench_run_from_json(const char *line, struct bench_run *out)
{
    bench_run_init(out);
    json_t *o = json_loads(line, 0, NULL);
    if (!json_is_object(o) || !json_is_string(json_object_get(o, "mode"))) {
        json_decref(o);
        return STATUS_EFORMAT;
    }
    out->url = get_str(o, "url");
    out->model = get_str(o, "model");
    out->label = get_str(o, "label");
    get_fixed(o, "mode", out->mode, sizeof out->mode);
    get_fixed(o, "phase", out->phase, sizeof out->phase);
    out->size = get_int(o, "size", 0);
    out->burst_n = get_int(o, "burst_n", 0);
    out->run = get_int(o, "run", 0);
    get_fixed(o, "nonce", out->nonce, sizeof out->nonce);
    out->ttft_ms = get_num(o, "ttft_ms");
    out->total_ms = get_num(o, "total_ms");
    out->decode_ms = get_num(o, "decode_ms");
    out->prefill_tps = get_num(o, "prefill_tps");
    out->decode_tps = get_num(o, "decode_tps");
    out->prompt_tokens = get_int(o, "prompt_tokens", -1);
    get_fixed(o, "prompt_tokens_src", out->prompt_tokens_src, sizeof out->prompt_tokens_src);
    out->completion_tokens = get_int(o, "completion_tokens", -1);
    out->reasoning_tokens = get_int(o, "reasoning_tokens", -1);
    out->cached_tokens = get_int(o, "cached_tokens", -1);
    out->content_tokens = get_int(o, "content_tokens", -1);
    out->tool_calls = get_int(o, "tool_calls", 0);
    out->tool_calls_clean = get_int(o, "tool_calls_clean", 0);
    out->tool_error = get_str(o, "tool_error");
    out->start_ms = get_num(o, "start_ms");
    out->first_ms = get_num(o, "first_ms");
    out->end_ms = get_num(o, "end_ms");
    out->http_status = get_int(o, "http_status", 0);
    get_fixed(o, "finish_reason", out->finish_reason, sizeof out->finish_reason);
    out->thinking = json_is_true(json_object_get(o, "thinking"));
    out->max_tokens = get_int(o, "max_tokens", 0);
    out->temperature = get_num(o, "temperature");
    out->error = get_str(o, "error");
    json_decref(o);
    return STATUS_OK;
}

void bench_runs_push(struct bench_runs *rs, struct bench_run *r)
{
    if (rs->n == rs->cap) {
        rs->cap = rs->cap ? rs->cap * 2 : 64;
        rs->v = xrealloc(rs->v, sizeof *rs->v * (size_t)rs->cap);
    }
    rs->v[rs->n++] = *r;
    memset(r, 0, sizeof *r);   // the strings now belong to rs
}

enum status bench_runs_read_jsonl(const char *path, struct bench_runs *rs)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        LOG_ERR("bench report: cannot open %s", path);
        return STATUS_EIO;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0;
    enum status st = STATUS_OK;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (len <= 1) continue;
        struct bench_run r;
        if (bench_run_from_json(line, &r) != STATUS_OK) {
            LOG_ERR("bench report: %s:%d: not a bench run record", path, lineno);
            bench_run_deinit(&r);
            st = STATUS_EFORMAT;
            break;
        }
        if (!r.label) r.label = xstrdup(path);   // unlabeled: name it after its file
        bench_runs_push(rs, &r);
    }
    free(line);
    fclose(f);
    return st;
}

void bench_runs_free(struct bench_runs *rs)
{
    for (int i = 0; i < rs->n; i++) bench_run_deinit(&rs->v[i]);
    free(rs->v);
    memset(rs, 0, sizeof *rs);
}
