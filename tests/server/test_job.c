/* The server's job in isolation (no HTTP): the fake provider wrapped by the scripted-output
 * provider (gen_script.c), driven by job.c as the API writers drive it. Checks how choices end
 * (stop string, script over, max_tokens, tool calls), the counts the usage fields report, that
 * the drained events add up to the whole output, and that unscripted prompts pass through. */
#include "harness.h"

#include <unistd.h>

#include "base/log.h"
#include "base/mem.h"
#include "server/gen.h"
#include "server/job.h"

static struct gen *g_fake, *g_gen;

struct run {
    struct strbuf            drained;   // all drained text, in order, tool events as S/A/E marks
    struct strbuf            blocks;
    struct job_choice_info   info[4];
    struct job_usage         usage;
    char                     stop[16];  // info[0].stop_string, which lives as long as the job
};

static void put_events(struct strbuf *sb, const struct output_ev *evs, int n)
{
    for (int i = 0; i < n; i++) {
        const struct output_ev *e = &evs[i];
        if (e->kind == OUTPUT_REASONING || e->kind == OUTPUT_CONTENT) strbuf_append(sb, e->text.data, e->text.len);
        else if (e->kind == OUTPUT_TOOL_START) {   // a block holds the call's whole arguments
            strbuf_printf(sb, "<S%d:%s>", e->tool_index, e->name);
            strbuf_append(sb, e->text.data, e->text.len);
        }
        else if (e->kind == OUTPUT_TOOL_ARGS) strbuf_append(sb, e->text.data, e->text.len);
        else strbuf_printf(sb, "<E%d>", e->tool_index);
    }
}

/* Runs one request of n choices over the prompt text to the end. */
static void run(const char *prompt, int max_tokens, const char *stop, enum tool_family family, int n, struct run *out)
{
    memset(out, 0, sizeof *out);
    int32_t *ids;
    int n_ids;
    CHECK(g_gen->ops->encode(g_gen->self, prompt, strlen(prompt), false, &ids, &n_ids) == STATUS_OK, "encode");
    const char *stops[1] = { stop };
    struct job_cfg jc = {
        .output = { .fmt = &g_gen->fmt, .reasoning = true, .tool_family = family, .stops = stops, .n_stops = stop ? 1 : 0 },
    };
    struct job *j = job_new(g_gen, &jc, n);
    struct gen_req req = { .base = { .prompt = ids, .n_prompt = n_ids, .max_tokens = max_tokens } };
    char msg[128];
    CHECK(job_submit(j, &req, NULL, NULL, msg, sizeof msg) == STATUS_OK, "submit: %s", msg);
    int k;
    const struct output_ev *evs;
    while (!job_done(j)) {
        job_poll(j, 50);
        evs = job_drain(j, 0, &k);
        put_events(&out->drained, evs, k);
    }
    evs = job_drain(j, 0, &k);
    put_events(&out->drained, evs, k);
    evs = job_blocks(j, 0, &k);
    put_events(&out->blocks, evs, k);
    for (int i = 0; i < n && i < 4; i++) job_choice_info(j, i, &out->info[i]);
    snprintf(out->stop, sizeof out->stop, "%s", out->info[0].stop_string ? out->info[0].stop_string : "");
    job_usage(j, n, &out->usage);
    job_free(j);
    free(ids);
    if (!out->drained.data) strbuf_puts(&out->drained, "");
    if (!out->blocks.data) strbuf_puts(&out->blocks, "");
}

static void run_free(struct run *r)
{
    strbuf_free(&r->drained);
    strbuf_free(&r->blocks);
}

TEST(stop_string_ends_the_request)
{
    struct run r;
    run("user: MARK_THINK please", 100, "STOP", TOOL_FAMILY_NONE, 1, &r);
    EXPECTF(!strcmp(r.blocks.data, "hmAnswer "), "<%s>", r.blocks.data);
    EXPECT(!strcmp(r.drained.data, r.blocks.data));
    EXPECT(r.info[0].done && r.info[0].end == JOB_END_STOP_STRING && !strcmp(r.stop, "STOP"));
    // the fake tokenizer: <think> and </think> are one token each, other bytes one each; the
    // token that completes "STOP" is the last one counted
    EXPECTF(r.info[0].n_generated == 15, "%d", r.info[0].n_generated);
    EXPECTF(r.info[0].n_reasoning_tokens == 3, "%d", r.info[0].n_reasoning_tokens);
    EXPECT(r.usage.completion == 15 && r.usage.reasoning == 3 && r.usage.prompt == r.info[0].n_prompt);
    run_free(&r);
}

TEST(script_end_is_a_stop_and_max_tokens_a_length)
{
    struct run r;
    run("MARK_SHORT", 100, NULL, TOOL_FAMILY_NONE, 1, &r);
    EXPECT(!strcmp(r.blocks.data, "short") && r.info[0].end == JOB_END_STOP && r.info[0].n_generated == 5 &&
           !r.stop[0] && !r.info[0].failed);
    run_free(&r);
    run("MARK_SHORT", 3, NULL, TOOL_FAMILY_NONE, 1, &r);
    EXPECT(!strcmp(r.blocks.data, "sho") && r.info[0].end == JOB_END_LENGTH && r.info[0].n_generated == 3);
    run_free(&r);
}

TEST(tool_calls_and_choices)
{
    struct run r;
    run("MARK_TOOL", 200, NULL, TOOL_FAMILY_HERMES, 2, &r);
    EXPECTF(!strcmp(r.blocks.data, "Calling.\n<S0:f>{\"a\": 1}"), "<%s>", r.blocks.data);
    EXPECTF(!strcmp(r.drained.data, "Calling.\n<S0:f>{\"a\": 1}<E0>"), "<%s>", r.drained.data);
    EXPECT(r.info[0].end == JOB_END_TOOL_CALLS && r.info[1].end == JOB_END_TOOL_CALLS);
    EXPECT(r.info[0].n_generated == r.info[1].n_generated && r.info[0].n_generated > 0);
    // two choices over one prompt: the prompt counts once
    EXPECT(r.usage.prompt == r.info[0].n_prompt && r.usage.completion == 2 * r.info[0].n_generated);
    run_free(&r);
    // without tool parsing the markup is text
    run("MARK_TOOL", 200, NULL, TOOL_FAMILY_NONE, 1, &r);
    EXPECT(strstr(r.blocks.data, "<tool_call>") && r.info[0].end == JOB_END_STOP);
    run_free(&r);
}

TEST(unscripted_prompts_pass_through)
{
    struct run a, b;
    run("no marker here", 8, NULL, TOOL_FAMILY_NONE, 1, &a);
    run("no marker here", 8, NULL, TOOL_FAMILY_NONE, 1, &b);
    EXPECT(a.info[0].end == JOB_END_LENGTH && a.info[0].n_generated == 8 && strlen(a.blocks.data) > 0);
    EXPECT(!strcmp(a.blocks.data, b.blocks.data));   // the fake is deterministic at temperature 0
    EXPECT(!strstr(a.blocks.data, "short"));
    run_free(&a);
    run_free(&b);
}

int main(void)
{
    char path[] = "/tmp/cairn_test_job_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return 1;
    const char *script =
        "[{\"match\": \"MARK_THINK\", \"output\": \"<think>hm</think>Answer STOP tail\"},"
        " {\"match\": \"MARK_SHORT\", \"output\": \"short\"},"
        " {\"match\": \"MARK_TOOL\", \"output\": \"Calling.\\n<tool_call>{\\\"name\\\": \\\"f\\\", \\\"arguments\\\": {\\\"a\\\": 1}}</tool_call>\"}]";
    if (write(fd, script, strlen(script)) != (ssize_t)strlen(script)) return 1;
    close(fd);
    struct gen_fake_cfg fc = { .token_us = 50, .n_ctx = 4096 };
    struct gen_script *sc;
    if (gen_fake_new(&fc, &g_fake) != STATUS_OK || gen_script_load(path, &sc) != STATUS_OK) return 1;
    unlink(path);
    g_gen = gen_script_wrap(sc, g_fake);
    RUN(stop_string_ends_the_request);
    RUN(script_end_is_a_stop_and_max_tokens_a_length);
    RUN(tool_calls_and_choices);
    RUN(unscripted_prompts_pass_through);
    gen_free(g_gen);
    gen_free(g_fake);
    return test_summary();
}
