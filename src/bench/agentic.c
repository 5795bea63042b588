/* agentic: the orchestrator pattern. One ~7 KB system prompt with tool definitions stays
 * identical across calls; the ~150-token user message changes. Phases:
 *   warmup  (unless --no-warmup) one discarded call under another session's system prompt, so a
 *           server's first-request costs (allocations, graph capture, autotuning) are not "cold"
 *   cold    first call of the session (the system prompt starts with a session nonce, so no
 *           earlier session can have cached it)
 *   warm    the very same request again (same-prompt cache)
 *   prefix  agentic_prefix_runs calls with the same system prompt and new user messages: the
 *           cross-user prefix reuse an agent fleet depends on
 *   cold_after_restart  after --restart-cmd, one more new user message (persistent cache)
 * The verdict (bench/summary.c): reuse YES when median(prefix TTFT) / cold TTFT < 0.2.
 * Every tool call the model makes is checked against its tool's parameters schema.
 */
#include "bench/bench_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/log.h"
#include "bench/prompt.h"
#include "bench/schema.h"

static const json_t *tool_params(const json_t *tools, const char *name)
{
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t) {
        const json_t *fn = json_object_get(t, "function");
        const json_t *n = json_object_get(fn, "name");
        if (json_is_string(n) && !strcmp(json_string_value(n), name)) return json_object_get(fn, "parameters");
    }
    return NULL;
}

// Counts the clean tool calls of res into r; the first violation goes to r->tool_error.
static void check_tool_calls(const json_t *tools, const struct chat_result *res, struct bench_run *r)
{
    r->tool_calls = res->n_tool_calls;
    for (int i = 0; i < res->n_tool_calls; i++) {
        const struct chat_tool_call *tc = &res->tool_calls[i];
        const char *name = tc->name.data ? tc->name.data : "";
        char why[300] = "";
        const json_t *params = tool_params(tools, name);
        json_error_t jerr;
        json_t *args = NULL;
        if (!params) {
            snprintf(why, sizeof why, "call %d: unknown tool \"%.60s\"", i, name);
        } else if (!(args = json_loads(tc->arguments.data ? tc->arguments.data : "", 0, &jerr))) {
            snprintf(why, sizeof why, "call %d (%s): arguments are not JSON: %s", i, name, jerr.text);
        } else {
            char sub[256];
            if (!schema_check(params, args, sub, sizeof sub))
                snprintf(why, sizeof why, "call %d (%s): %s", i, name, sub);
        }
        json_decref(args);
        if (why[0]) {
            if (!r->tool_error) r->tool_error = xstrdup(why);
        } else {
            r->tool_calls_clean++;
        }
    }
}

/* Sends one agentic request (body; all = its text for local token counts) and records the run. */
static void agentic_send(struct bench_ctx *c, const char *body, const char *all, const json_t *tools,
                         const char *phase, const char *nonce, int run, int64_t t0)
{
    struct chat_result res;
    struct bench_run r;
    bench_measure(c, body, all, t0, &r, &res);
    snprintf(r.mode, sizeof r.mode, "agentic");
    snprintf(r.phase, sizeof r.phase, "%s", phase);
    snprintf(r.nonce, sizeof r.nonce, "%s", nonce);
    r.run = run;
    check_tool_calls(tools, &res, &r);
    bench_record(c, &r);
    chat_result_free(&res);
}

/* A system prompt of a new session (its nonce first), cut to --agentic-system-bytes if set. */
static void agentic_system(struct bench_ctx *c, struct strbuf *out, bool note_cut)
{
    const struct bench_cfg *cfg = c->cfg;
    char session[PROMPT_NONCE_LEN + 1];
    prompt_nonce(&c->rng, session);
    prompt_agentic_system(session, out);
    if (cfg->agentic_system_bytes > 0 && out->len > (size_t)cfg->agentic_system_bytes) {
        // cut at a line end: the nonce stays first and the text stays readable
        size_t cut = (size_t)cfg->agentic_system_bytes;
        while (cut > 64 && out->data[cut - 1] != '\n') cut--;
        out->len = cut;
        out->data[cut] = '\0';
        if (note_cut) bench_note(c, "system prompt cut to %zu bytes (--agentic-system-bytes)", cut);
    }
}

/* One request with a fresh nonce and user turn user_idx after the shared system prompt; with
 * repeat_warm, the identical bytes are sent again as the "warm" phase. */
static void agentic_call(struct bench_ctx *c, const char *system, const json_t *tools, int user_idx,
                         const char *phase, int run, bool repeat_warm, int64_t t0)
{
    char nonce[PROMPT_NONCE_LEN + 1];
    prompt_nonce(&c->rng, nonce);
    struct strbuf user = {0}, all = {0};
    prompt_agentic_user(user_idx, nonce, &user);
    strbuf_printf(&all, "%s\n%s", system, user.data);
    char *body = bench_body(c, system, user.data, tools, 0);
    agentic_send(c, body, all.data, tools, phase, nonce, run, t0);
    if (repeat_warm && bench_time_left(c, 1)) agentic_send(c, body, all.data, tools, "warm", nonce, 0, t0);
    free(body);
    strbuf_free(&user);
    strbuf_free(&all);
}

// Runs the restart command, then waits until the server lists its models again.
static bool agentic_restart(struct bench_ctx *c)
{
    const struct bench_cfg *cfg = c->cfg;
    int rc = system(cfg->restart_cmd);
    if (rc != 0) {
        bench_note(c, "--restart-cmd exited with status %d", rc);
        LOG_WARN("bench: restart command exited with status %d", rc);
    }
    double t_end = clock_now_s() + cfg->restart_wait_s;
    while (clock_now_s() < t_end) {
        int st = 0;
        client_simple(&c->http, "GET", "/v1/models", NULL, 5, &st, NULL);
        if (st == 200) return true;
        nanosleep(&(struct timespec){ .tv_nsec = 250 * 1000 * 1000 }, NULL);
    }
    bench_note(c, "server did not answer within %.0f s of the restart", cfg->restart_wait_s);
    return false;
}

enum status bench_agentic(struct bench_ctx *c)
{
    const struct bench_cfg *cfg = c->cfg;
    int64_t t0 = clock_now_ns();
    struct strbuf system = {0};
    agentic_system(c, &system, true);
    json_t *tools = prompt_agentic_tools();
    c->n_planned = 2 + cfg->agentic_prefix_runs + (cfg->restart_cmd ? 1 : 0) + (cfg->warmup ? 1 : 0);

    if (cfg->warmup && bench_time_left(c, c->n_planned)) {
        struct strbuf other = {0};
        agentic_system(c, &other, false);   // its own session nonce: it shares no prefix with the measured calls
        agentic_call(c, other.data, tools, 0, "warmup", 0, false, t0);
        strbuf_free(&other);
    }

    // cold, then warm: the identical request
    if (bench_time_left(c, c->n_planned)) agentic_call(c, system.data, tools, 0, "cold", 0, true, t0);
    for (int k = 0; k < cfg->agentic_prefix_runs; k++)
        if (bench_time_left(c, 1)) agentic_call(c, system.data, tools, 1 + k, "prefix", k, false, t0);
    if (cfg->restart_cmd && bench_time_left(c, 1)) {
        if (agentic_restart(c)) {
            agentic_call(c, system.data, tools, 1 + cfg->agentic_prefix_runs, "cold_after_restart", 0, false, t0);
        } else {
            struct bench_run r;
            bench_run_init(&r);
            snprintf(r.mode, sizeof r.mode, "agentic");
            snprintf(r.phase, sizeof r.phase, "cold_after_restart");
            bench_run_set_error(&r, "server did not come back after --restart-cmd");
            bench_record(c, &r);
        }
    }
    json_decref(tools);
    strbuf_free(&system);
    return STATUS_OK;
}
