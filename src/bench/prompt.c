/* prompt: filler, agentic system prompt, tools and user messages (see prompt.h).
 *
 * Design note: the nonce comes first because a prefix cache matches from the first token on; a
 * nonce anywhere later would still let the cache serve everything before it. Chat templates add
 * a few fixed tokens before the user text ("<|im_start|>user\n"); that is below one KV block, so
 * block-granular caches still miss.
 */
#include "bench/prompt.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

static const char *const filler_words[] = {
    "the", "river", "village", "old", "market", "north", "road", "winter", "farmers", "bridge",
    "stone", "people", "water", "small", "town", "light", "morning", "house", "green", "field",
    "long", "year", "hill", "children", "school", "week", "ship", "harbor", "trade", "salt",
    "grain", "wood", "iron", "bread", "letter", "story", "family", "garden", "forest", "path",
    "summer", "rain", "wind", "snow", "night", "day", "city", "wall", "gate", "tower",
    "king", "council", "law", "book", "song", "table", "door", "window", "fire", "horse",
    "cart", "boat", "lake", "island", "coast", "valley", "mill", "church", "square", "street",
    "and", "of", "to", "in", "with", "from", "near", "after", "before", "during",
    "was", "were", "had", "made", "saw", "built", "sold", "found", "kept", "brought",
    "many", "few", "new", "great", "quiet", "busy", "early", "late", "warm", "cold",
};
#define N_FILLER_WORDS (sizeof filler_words / sizeof filler_words[0])

void prompt_nonce(struct rng *r, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < PROMPT_NONCE_LEN; i++) out[i] = hex[rng_next(r) & 15];
    out[PROMPT_NONCE_LEN] = '\0';
}

int prompt_estimate_tokens(const char *text)
{
    int n = 0;
    const unsigned char *s = (const unsigned char *)text;
    while (*s) {
        if (isalnum(*s)) {
            int len = 0, digits = 0;
            while (isalnum(*s)) {
                digits += isdigit(*s) != 0;
                len++;
                s++;
            }
            // words of the filler are one token; long or numeric runs split into pieces
            if (digits) n += (len + 1) / 2;
            else n += len <= 8 ? 1 : (len + 4) / 5;
        } else {
            if (!isspace(*s)) n++;
            s++;
        }
    }
    return n;
}

static void filler_build(int n_words, const char *nonce, uint64_t seed, struct strbuf *out)
{
    struct rng r;
    rng_seed(&r, seed);
    strbuf_clear(out);
    strbuf_printf(out, "[%s] Summarize the following notes in three sentences.\n\n", nonce);
    int in_sentence = 0, sentence_len = 8 + (int)(rng_next(&r) % 9), n_sentences = 0;
    for (int i = 0; i < n_words; i++) {
        const char *w = filler_words[rng_next(&r) % N_FILLER_WORDS];
        if (in_sentence == 0) {
            strbuf_putc(out, (char)toupper((unsigned char)w[0]));
            strbuf_puts(out, w + 1);
        } else {
            strbuf_putc(out, ' ');
            strbuf_puts(out, w);
        }
        if (++in_sentence == sentence_len || i == n_words - 1) {
            strbuf_putc(out, '.');
            i++;   // the period is a token too
            in_sentence = 0;
            sentence_len = 8 + (int)(rng_next(&r) % 9);
            strbuf_puts(out, ++n_sentences % 6 == 0 ? "\n\n" : " ");
        }
    }
    strbuf_puts(out, "\n\nSummary:");
}

// Words to request so that the whole prompt estimates to n_tokens.
static int filler_words_for(int n_tokens, const char *nonce)
{
    struct strbuf tmp = {0};
    filler_build(0, nonce, 1, &tmp);
    int overhead = prompt_estimate_tokens(tmp.data);
    strbuf_free(&tmp);
    int w = n_tokens - overhead;
    return w > 1 ? w : 1;
}

void prompt_filler(int n_tokens, const char *nonce, uint64_t seed, struct strbuf *out)
{
    filler_build(filler_words_for(n_tokens, nonce), nonce, seed, out);
}

void prompt_filler_calibrated(int n_tokens, const char *nonce, uint64_t seed,
                              int (*count)(void *ctx, const char *text), void *ctx, struct strbuf *out)
{
    int words = filler_words_for(n_tokens, nonce);
    filler_build(words, nonce, seed, out);
    if (!count) return;
    // proportional steps: a counter may see several tokens per filler word (a character-level
    // vocabulary sees five), so stepping by the token gap alone could overshoot and oscillate
    for (int iter = 0; iter < 6; iter++) {
        int c = count(ctx, out->data);
        if (c <= 0 || c == n_tokens) return;
        int next = (int)((double)words * n_tokens / c + (n_tokens > c ? 0.5 : -0.5));
        if (next < 1) next = 1;
        if (next == words) next += n_tokens > c ? 1 : -1;
        if (next < 1 || abs(c - n_tokens) * 200 < n_tokens) return;   // within 0.5%: good enough
        words = next;
        filler_build(words, nonce, seed, out);
    }
}

/* ==== Agentic workload ==== */

static const char agentic_intro[] =
    "You are the orchestrator of a team of software agents working on a large C code base. You plan, "
    "delegate and verify; you never guess at file contents. Every answer you give is either a tool "
    "call or a short status line for the human operator.\n\n"
    "## Operating rules\n"
    "1. Read before you write: call read_file on every file you intend to change, and search_code "
    "when you do not know where a symbol is defined.\n"
    "2. Keep changes small and reviewable. One concern per change; a change that touches more than "
    "three files must be split and delegated.\n"
    "3. Run the tests after each change with run_command. A failing test is reported with its name, "
    "the first error line and the file and line it points to.\n"
    "4. Delegate work that takes more than a few steps with delegate_task. Pick the agent by role: the "
    "coder writes code, the reviewer reads diffs and comments on risks, the tester writes and runs "
    "tests. Give each a self-contained task description: the goal, the files, what done means.\n"
    "5. Never run destructive commands (rm -rf, git reset --hard, force pushes) and never touch files "
    "outside the repository. Commands have a timeout; long builds use timeout_s up to 600.\n"
    "6. Use web_fetch only for public documentation pages; cite the URL you used.\n"
    "7. When a tool fails, read its error, fix the arguments and retry at most twice before reporting.\n"
    "8. Report progress in one line: what was done, what is next, and any blocker.\n\n"
    "## Repository layout\n"
    "src/base holds status codes, logging, memory helpers and the clock. src/tensor describes dtypes "
    "and tensor views. src/backend contains the reference, CPU and CUDA backends behind one ops "
    "table. src/model loads safetensors checkpoints and describes architectures. src/kv owns the "
    "paged KV cache and the prefix index. src/text holds the tokenizer, the chat template engine and "
    "output parsers. src/engine schedules requests with continuous batching. src/server speaks "
    "HTTP. src/bench is the benchmark client. tests mirrors src, one folder per area; tests/run_all.sh "
    "runs everything after make.\n\n"
    "## Coding conventions\n"
    "C11 with warnings as errors. Functions are named module_verb. Structs are never typedef'd. "
    "Errors caused by input return an enum status and are logged once where they happen; broken "
    "invariants abort through CHECK. Files stay under a thousand lines and open with a comment that "
    "says what they own, who calls them and how threads may use them. No global mutable state other "
    "than the logger. Allocate at start-up, not in the hot loop.\n\n"
    "## Tools\n"
    "The tools below are available. Call them with JSON arguments that match their parameter "
    "schemas exactly: no extra properties, every required property present, enum values spelled as "
    "listed, integers where integers are asked for.\n\n";

static const char tools_json[] =
    "["
    "{\"type\":\"function\",\"function\":{\"name\":\"read_file\",\"description\":\"Read a text file of "
    "the repository, optionally a range of lines.\",\"parameters\":{\"type\":\"object\",\"properties\":{"
    "\"path\":{\"type\":\"string\",\"description\":\"Path relative to the repository root.\"},"
    "\"start_line\":{\"type\":\"integer\",\"description\":\"First line, 1-based.\"},"
    "\"max_lines\":{\"type\":\"integer\",\"description\":\"How many lines at most.\"}},"
    "\"required\":[\"path\"],\"additionalProperties\":false}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"search_code\",\"description\":\"Search the "
    "repository for a string or regular expression.\",\"parameters\":{\"type\":\"object\",\"properties\":{"
    "\"query\":{\"type\":\"string\"},\"path\":{\"type\":\"string\",\"description\":\"Folder to search in.\"},"
    "\"regex\":{\"type\":\"boolean\"},\"max_results\":{\"type\":\"integer\"}},"
    "\"required\":[\"query\"],\"additionalProperties\":false}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"write_file\",\"description\":\"Replace the "
    "contents of a file.\",\"parameters\":{\"type\":\"object\",\"properties\":{"
    "\"path\":{\"type\":\"string\"},\"content\":{\"type\":\"string\"}},"
    "\"required\":[\"path\",\"content\"],\"additionalProperties\":false}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"run_command\",\"description\":\"Run a shell "
    "command in the repository root and return its output.\",\"parameters\":{\"type\":\"object\","
    "\"properties\":{\"command\":{\"type\":\"string\"},\"timeout_s\":{\"type\":\"integer\"}},"
    "\"required\":[\"command\"],\"additionalProperties\":false}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"delegate_task\",\"description\":\"Hand a "
    "self-contained task to another agent.\",\"parameters\":{\"type\":\"object\",\"properties\":{"
    "\"agent\":{\"type\":\"string\",\"enum\":[\"coder\",\"reviewer\",\"tester\"]},"
    "\"task\":{\"type\":\"string\"},\"priority\":{\"type\":\"string\",\"enum\":[\"low\",\"normal\",\"high\"]},"
    "\"files\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}}},"
    "\"required\":[\"agent\",\"task\"],\"additionalProperties\":false}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"web_fetch\",\"description\":\"Fetch a public "
    "documentation page as text.\",\"parameters\":{\"type\":\"object\",\"properties\":{"
    "\"url\":{\"type\":\"string\"}},\"required\":[\"url\"],\"additionalProperties\":false}}}"
    "]";

json_t *prompt_agentic_tools(void)
{
    json_error_t err;
    json_t *t = json_loads(tools_json, 0, &err);
    CHECK(t, "built-in tools JSON: %s at %d", err.text, err.position);   // our constant: a bug
    return t;
}

void prompt_agentic_system(const char *session_nonce, struct strbuf *out)
{
    strbuf_clear(out);
    strbuf_printf(out, "[%s] ", session_nonce);
    strbuf_puts(out, agentic_intro);
    // The tool list in prose as well (servers differ in how they render "tools"), which also
    // brings the prompt to the size of a real orchestrator's: about 7 KB.
    json_t *tools = prompt_agentic_tools();
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        json_t *fn = json_object_get(t, "function");
        char *params = json_dumps(json_object_get(fn, "parameters"), JSON_COMPACT | JSON_SORT_KEYS);
        strbuf_printf(out, "### %s\n%s\nParameters: %s\n\n", json_string_value(json_object_get(fn, "name")),
                      json_string_value(json_object_get(fn, "description")), params);
        free(params);
    }
    json_decref(tools);
    strbuf_puts(out,
        "## Examples of good calls\n"
        "To read the first 80 lines of the scheduler: read_file with {\"path\": \"src/engine/sched.c\", "
        "\"max_lines\": 80}. To find where a status code is mapped to HTTP: search_code with "
        "{\"query\": \"STATUS_EBUSY\", \"path\": \"src/server\"}. To ask the tester for a regression "
        "test: delegate_task with {\"agent\": \"tester\", \"task\": \"Add a test that ...\", "
        "\"priority\": \"high\", \"files\": [\"tests/unit/test_kv.c\"]}.\n\n"
        "## Review checklist for delegated work\n"
        "Before you accept a change from another agent, check each point and send it back when one fails:\n"
        "- The change does one thing, and its description says what and why in two or three sentences.\n"
        "- New functions follow the naming rule and have a comment stating their contract: inputs, outputs, "
        "ownership of returned memory, and which errors they return.\n"
        "- Every error path frees what was allocated before it, in reverse order, through one cleanup ladder.\n"
        "- No new global state; no new dependency without a note in the design document.\n"
        "- Tests cover the new behaviour and at least one failure case, and they fail without the change.\n"
        "- Benchmarks that touch the hot path report numbers before and after on the same machine, as a "
        "median over several runs with the spread, never a single run.\n"
        "- Public headers changed only additively; nothing renamed or removed without a migration.\n"
        "- Logs say what failed and where, once, at the place of failure, without the request contents.\n\n"
        "## Priorities this week\n"
        "First, correctness bugs reported by users, newest crash reports before older ones. Second, the "
        "prefix cache hit rate for long shared system prompts, which dominates the cost of agent traffic. "
        "Third, time to first token on long prompts, which suffers when prefill chunks are too small. "
        "Documentation fixes can be delegated to the reviewer at low priority at any time.\n\n"
        "## Reporting\n"
        "After the last tool result of a task, write one status line: DONE, BLOCKED or NEXT, then "
        "a short reason. Do not repeat file contents back to the operator; they can read the diff.\n");
}

static const char *const user_subjects[] = {
    "the prefix cache", "the tokenizer", "the HTTP server", "the CUDA attention kernel", "the scheduler",
    "the safetensors loader", "the chat template engine", "the sampler", "the KV block pool", "the benchmark client",
};
static const char *const user_problems[] = {
    "returns a wrong result when the input is empty",
    "leaks memory when a request is cancelled half way",
    "is slower than last week by about a fifth on long prompts",
    "crashes with an assertion on a prompt of exactly one block",
    "logs the same error twice for one bad request",
    "ignores the timeout that the operator configured",
};
static const char *const user_files[] = {
    "src/kv/prefix.c", "src/text/bpe.c", "src/server/routes.c", "src/backend/cuda/attn.cu",
    "src/engine/sched.c", "src/model/safetensors.c", "src/text/jinja.c", "src/engine/sampler.c",
};

void prompt_agentic_user(int index, const char *nonce, struct strbuf *out)
{
    unsigned u = (unsigned)index * 2654435761u;
    const char *subject = user_subjects[u % 10];
    const char *problem = user_problems[(u >> 8) % 6];
    const char *file = user_files[(u >> 16) % 8];
    strbuf_clear(out);
    strbuf_printf(out,
        "[%s] Ticket %d: a user reports that %s %s. The report came with a log excerpt that points at "
        "%s, around the function that handles the end of a request. Nobody has reproduced it yet. "
        "Please start by reading the relevant part of %s, then search the code for other callers of "
        "that function, and decide whether this needs a fix from the coder, a regression test from "
        "the tester, or both. If you delegate, give the agent the file names, a one-paragraph "
        "description of the suspected cause and a clear definition of done. Keep the priority "
        "normal unless the problem can crash the server, in which case it is high. Make one tool "
        "call now; the results will come back in the next message.",
        nonce, 100 + index, subject, problem, file, file);
}
