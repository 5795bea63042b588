/* Constraint engine: GBNF/regex/schema compile errors, byte-level matching, and mask exactness:
 * the mask from the trie walk (and its cache) equals a brute-force check of every token's bytes
 * against the automaton from the same state, with and without the max_tokens budget rule.
 * Uses the default model's tokenizer (models/default, byte-level BPE, 8192 ids). */
#include <jansson.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"
#include "base/rng.h"
#include "harness.h"
#include "text/constraint.h"
#include "text/constraint_int.h"   // CG_IDLE_MAX
#include "text/tokenizer.h"

static struct tokenizer *tk;
static struct constraint_vocab *vocab;
static int32_t eos_id;

static bool accepts(struct constraint_grammar *g, const char *s)
{
    struct constraint *c = constraint_new(g, vocab);
    bool ok = constraint_advance_bytes(c, s, strlen(s)) == STATUS_OK && constraint_can_end(c);
    constraint_free(c);
    return ok;
}

static struct constraint_grammar *gbnf(const char *text)
{
    struct constraint_grammar *g = NULL;
    char err[256];
    enum status st = constraint_compile_gbnf(text, strlen(text), NULL, &g, err, sizeof err);
    if (st) fprintf(stderr, "  compile failed: %s\n", err);
    return g;
}

static bool gbnf_error(const char *text, const char *needle)
{
    struct constraint_grammar *g = NULL;
    char err[256];
    enum status st = constraint_compile_gbnf(text, strlen(text), NULL, &g, err, sizeof err);
    constraint_grammar_free(g);
    if (st == STATUS_OK) return false;
    if (!strstr(err, needle)) fprintf(stderr, "  error '%s' lacks '%s'\n", err, needle);
    return strstr(err, needle) != NULL;
}

/* A GBNF grammar's language: it compiles, accepts every string of yes and none of no. */
#define STRINGS(...) ((const char *const[]){ __VA_ARGS__, NULL })
static void expect_gbnf_language(const char *src, const char *const *yes, const char *const *no)
{
    struct constraint_grammar *g = gbnf(src);
    ASSERT(g);
    for (; *yes; yes++) EXPECTF(accepts(g, *yes), "'%s' refused by %s", *yes, src);
    for (; *no; no++) EXPECTF(!accepts(g, *no), "'%s' accepted by %s", *no, src);
    constraint_grammar_free(g);
}

TEST(gbnf_matches)
{
    expect_gbnf_language("root ::= \"a\" [b-d]+ (\"x\" | \"yz\")? # comment\n", STRINGS("ab", "abcdx", "abyz"),
                         STRINGS("a", "abyzx", "ae"));
    expect_gbnf_language("root ::= item{2,3} \"!\"\nitem ::= [0-9]\n  | \"-\"\n", STRINGS("12!", "1-2!"),
                         STRINGS("1!", "1234!"));
    // Unicode classes and negation match UTF-8; '.' is any code point.
    expect_gbnf_language("root ::= [^a\"] [α-ω] . \"é\"\n", STRINGS("bβ\xF0\x9F\x98\x80\xC3\xA9", "\xE4\xB8\xADω\n\xC3\xA9"),
                         STRINGS("aβxé", "bbxé", "b\xCE"));
    // Right recursion and nesting: balanced parentheses.
    expect_gbnf_language("root ::= p\np ::= (\"(\" p \")\")*\n", STRINGS("", "(()())()"), STRINGS("(()", "())"));

    // Save/restore: advance through a "draft", roll back, take another branch.
    struct constraint_grammar *g = gbnf("root ::= \"ab\" (\"c\" | \"d\")\n");
    ASSERT(g);
    struct constraint *sr = constraint_new(g, vocab);
    EXPECT(constraint_advance_bytes(sr, "ab", 2) == STATUS_OK);
    uint64_t saved = constraint_save(sr);
    EXPECT(constraint_advance_bytes(sr, "c", 1) == STATUS_OK && constraint_can_end(sr));
    constraint_restore(sr, saved);
    EXPECT(!constraint_can_end(sr));
    EXPECT(constraint_advance_bytes(sr, "d", 1) == STATUS_OK && constraint_can_end(sr));
    constraint_free(sr);
    constraint_grammar_free(g);

    // A recursive alternative with no base case is pruned; the rest stays.
    g = gbnf("root ::= \"a\" | \"b\" loop\nloop ::= \"c\" loop\n");
    ASSERT(g);
    EXPECT(accepts(g, "a"));
    struct constraint *c = constraint_new(g, vocab);
    EXPECT(constraint_advance_bytes(c, "b", 1) == STATUS_EINVAL);
    constraint_free(c);
    constraint_grammar_free(g);
}

TEST(gbnf_errors)
{
    EXPECT(gbnf_error("root ::= \"a\n", "unterminated"));
    EXPECT(gbnf_error("root ::= foo\n", "'foo' is used but not defined"));
    EXPECT(gbnf_error("start ::= \"a\"\n", "no rule 'root'"));
    EXPECT(gbnf_error("root ::= root \"a\" | \"b\"\n", "left-recursive"));
    EXPECT(gbnf_error("root ::= x | \"b\"\nx ::= \"\"? root \"a\"\n", "left-recursive"));
    EXPECT(gbnf_error("root ::= \"a\" root\n", "no finite output"));
    EXPECT(gbnf_error("root ::= [z-a]\n", "out of order"));
    EXPECT(gbnf_error("root ::= \"a\"\nroot ::= \"b\"\n", "defined twice"));
    EXPECT(gbnf_error("root ::= (((\"a\")\n", "expected ')'"));
    EXPECT(gbnf_error("root ::= \"\\q\"\n", "unknown escape"));
    EXPECT(gbnf_error("root ::= \"a\"{3,1}\n", "below minimum"));
    // Budget: exponential expansion fails fast with a clear error.
    EXPECT(gbnf_error("root ::= \"a\"{3000000}\n", "too large"));
    EXPECT(gbnf_error("root ::= (\"ab\"{1000} | \"c\"){1000} \"d\"{2000000}\n", "too large"));
    // Compact but astronomically long: the shortest output overflows the length arithmetic.
    EXPECT(gbnf_error("root ::= ((((\"a\"{1000}){1000}){1000}){1000})\n", "no finite output"));
}

/* Brute force: the allowed set from state `prefix` by trying every token's bytes (one state object
 * rewound with constraint_reset for each token, separate from the one whose mask is checked). */
static void brute_mask(struct constraint_grammar *g, const char *prefix, int tokens_left, uint32_t *mask)
{
    int words = constraint_mask_words(vocab);
    memset(mask, 0, (size_t)words * 4);
    struct constraint *c = constraint_new(g, vocab);
    CHECK(constraint_advance_bytes(c, prefix, strlen(prefix)) == STATUS_OK, "prefix must match");
    if (constraint_can_end(c)) mask[eos_id >> 5] |= 1u << (eos_id & 31);
    for (int32_t id = 0; id < constraint_vocab_size(vocab) && tokens_left != 0; id++) {
        int len;
        const uint8_t *b = constraint_vocab_token(vocab, id, &len);
        if (!b) continue;
        constraint_reset(c);
        constraint_advance_bytes(c, prefix, strlen(prefix));
        if (constraint_advance_bytes(c, (const char *)b, (size_t)len) == STATUS_OK &&
            (tokens_left < 0 || constraint_min_tokens_to_finish(c) <= tokens_left - 1))
            mask[id >> 5] |= 1u << (id & 31);
    }
    constraint_free(c);
}

static int mask_diff(const uint32_t *a, const uint32_t *b)
{
    int words = constraint_mask_words(vocab), first = -1;
    for (int w = 0; w < words && first < 0; w++)
        if (a[w] != b[w]) first = w * 32 + __builtin_ctz(a[w] ^ b[w]);
    return first;
}

static void check_masks(struct constraint_grammar *g, const char *const *prefixes, int n, int *n_checked)
{
    int words = constraint_mask_words(vocab);
    uint32_t *got = malloc((size_t)words * 4), *want = malloc((size_t)words * 4);
    static const int budgets[] = { -1, 1, 2, 3, 5, 9, 40 };
    for (int k = 0; k < n; k++) {
        struct constraint *c = constraint_new(g, vocab);
        CHECK(constraint_advance_bytes(c, prefixes[k], strlen(prefixes[k])) == STATUS_OK, "prefix '%s'", prefixes[k]);
        // Every budget, then no budget again: served from the mask cache.
        for (int r = 0; r < 2; r++)
            for (size_t b = 0; b < (r ? 1 : sizeof budgets / sizeof *budgets); b++) {
                EXPECT(constraint_mask(c, budgets[b], got) == STATUS_OK);
                brute_mask(g, prefixes[k], budgets[b], want);
                int d = mask_diff(got, want);
                int len = 0;
                const uint8_t *tb = d >= 0 ? constraint_vocab_token(vocab, d, &len) : NULL;
                EXPECTF(d < 0, "prefix '%s' budget %d: token %d '%.*s' differs", prefixes[k], budgets[b], d, len,
                        tb ? (const char *)tb : "");
                (*n_checked)++;
            }
        constraint_free(c);
    }
    free(got);
    free(want);
}

TEST(mask_exact_gbnf)
{
    int n = 0;
    struct constraint_grammar *g = gbnf(
        "root ::= \"{\" ws \"\\\"k\\\":\" ws val (\",\" ws val)* ws \"}\"\n"
        "val ::= [0-9]+ | \"\\\"\" [^\"\\\\]* \"\\\"\" | \"true\" | \"null\"\n"
        "ws ::= [ \\n]?\n");
    ASSERT(g);
    const char *pre[] = { "", "{", "{\"k\":", "{\"k\": 1", "{\"k\":\"ab", "{\"k\":\"\xE4\xB8", "{\"k\":tr", "{\"k\":1,2 " };
    check_masks(g, pre, 8, &n);
    constraint_grammar_free(g);
    g = gbnf("root ::= ([a-z] | \" \" | \"\\n\"){0,40}\n");
    ASSERT(g);
    const char *pre2[] = { "", "hello world", "abcdefghijklmnopqrstuvwxyzabcdefghijkl" };
    check_masks(g, pre2, 3, &n);
    constraint_grammar_free(g);
    EXPECT(n > 0);
}

static struct constraint_grammar *schema(const char *text)
{
    struct constraint_grammar *g = NULL;
    char err[256];
    if (constraint_compile_json_schema(text, strlen(text), NULL, NULL, &g, err, sizeof err)) fprintf(stderr, "  schema: %s\n", err);
    return g;
}

/* Schema strings exercise the plain-character fast path (open strings, minLength chains,
 * maxLength dead ends, patterns) against the brute force. */
TEST(mask_exact_schema_regex)
{
    int n = 0;
    struct constraint_grammar *g = schema(
        "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"minLength\":3},"
        "\"b\":{\"type\":\"string\",\"maxLength\":4},\"c\":{\"type\":\"string\",\"pattern\":\"^x[0-9]+\"},"
        "\"d\":{\"type\":\"integer\",\"minimum\":-20,\"maximum\":300},\"e\":{\"enum\":[\"on\",\"off\",null]}},"
        "\"required\":[\"a\",\"b\"],\"additionalProperties\":{\"type\":\"boolean\"}}");
    ASSERT(g);
    const char *pre[] = { "", "{\"a\":\"", "{\"a\":\"x", "{\"a\":\"xyz", "{\"a\":\"\\", "{\"a\":\"abc\",\"b\":\"",
                          "{\"a\":\"abc\",\"b\":\"123", "{\"a\":\"abc\",\"b\":\"1\",\"c\":\"x1",
                          "{\"a\":\"abc\",\"b\":\"1\",\"d\":-", "{\"a\":\"abc\",\"b\":\"1\",\"d\":29",
                          "{\"a\":\"abc\",\"b\":\"1\",\"e\":", "{\"a\":\"abc\",\"b\":\"1\",\"", "{\"a\":\"abc\",\"b\":\"1\",\"e" };
    check_masks(g, pre, 13, &n);
    constraint_grammar_free(g);
    struct constraint_grammar *r = NULL;
    char err[256];
    const char *re = "(\\d{1,3}\\.){3}\\d{1,3}|[a-z ]+!?";
    ASSERT(constraint_compile_regex(re, strlen(re), NULL, &r, err, sizeof err) == STATUS_OK);
    const char *pre2[] = { "", "12", "12.3", "hello wor" };
    check_masks(r, pre2, 4, &n);
    constraint_grammar_free(r);
    EXPECT(n > 0);
}

TEST(json_modes)
{
    char err[256];
    struct constraint_grammar *g = NULL;
    ASSERT(constraint_compile_json_object(NULL, &g, err, sizeof err) == STATUS_OK);
    EXPECT(accepts(g, "{}"));
    EXPECT(accepts(g, "{\"a\":[1,-2.5e3,{\"b\":null}],\"c\":\"\\u00e9\"}"));
    EXPECT(!accepts(g, "[]"));
    EXPECT(!accepts(g, "{ }"));   // compact by default
    EXPECT(!accepts(g, "{\"a\":01}"));
    constraint_grammar_free(g);
    struct constraint_json_opts ws = { .ws_max = 2 };
    ASSERT(constraint_compile_json_object(&ws, &g, err, sizeof err) == STATUS_OK);
    EXPECT(accepts(g, "{ \"a\" : [ 1 , 2 ] }"));
    EXPECT(!accepts(g, "{   \"a\":1}"));   // 3 spaces > ws_max
    constraint_grammar_free(g);
    // A schema's rules embedded in a tool-call envelope under a prefix.
    const char *sch = "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"],\"additionalProperties\":false}";
    char *rules = NULL;
    ASSERT(constraint_json_schema_gbnf(sch, strlen(sch), NULL, "w-", &rules, err, sizeof err) == STATUS_OK);
    struct strbuf text = {0};
    strbuf_puts(&text, "root ::= \"<tool_call>\\n{\\\"name\\\": \\\"get_weather\\\", \\\"arguments\\\": \" w-root \"}\\n</tool_call>\"\n");
    strbuf_puts(&text, rules);
    free(rules);
    ASSERT(constraint_compile_gbnf(text.data, text.len, NULL, &g, err, sizeof err) == STATUS_OK);
    EXPECT(accepts(g, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\":\"Paris\"}}\n</tool_call>"));
    EXPECT(!accepts(g, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"town\":\"Paris\"}}\n</tool_call>"));
    constraint_grammar_free(g);
    strbuf_free(&text);
    EXPECT(constraint_json_schema_gbnf(sch, strlen(sch), NULL, "bad prefix", &rules, err, sizeof err) == STATUS_EINVAL);
}

TEST(regex_errors)
{
    const char *bad[][2] = { { "(?=a)", "lookaround" }, { "(a)\\1", "backreference" }, { "a{2,1}", "out of order" },
                             { "[b-a]", "out of order" }, { "(ab", "missing ')'" }, { "ab)", "unmatched ')'" },
                             { "*a", "nothing to repeat" }, { "a^b", "anchor" }, { "\\bx", "word boundary" },
                             { "\\p{L}", "Unicode property" }, { "a{99999999}", "too large" } };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        struct constraint_grammar *g = NULL;
        char err[256];
        enum status st = constraint_compile_regex(bad[k][0], strlen(bad[k][0]), NULL, &g, err, sizeof err);
        EXPECTF(st != STATUS_OK && strstr(err, bad[k][1]), "/%s/: got '%s', want '%s'", bad[k][0], st ? err : "ok", bad[k][1]);
        constraint_grammar_free(g);
    }
}

/* Random walk: sample uniformly among allowed tokens under the budget; the output must end
 * (stop token allowed) within the budget. */
TEST(walk_gbnf_closes_within_budget)
{
    struct constraint_grammar *g = gbnf(
        "root ::= obj\nobj ::= \"{\" (pair (\",\" pair)*)? \"}\"\n"
        "pair ::= \"\\\"\" [a-z ]* \"\\\":\" (obj | \"[\" [0-9]* \"]\")\n");
    ASSERT(g);
    int words = constraint_mask_words(vocab);
    uint32_t *mask = malloc((size_t)words * 4);
    int32_t *ids = malloc(sizeof(int32_t) * 65536);
    struct rng r;
    for (int seed = 0; seed < 40; seed++) {
        rng_seed(&r, (uint64_t)seed);
        int max_tokens = 5 + seed * 3;
        struct constraint *c = constraint_new(g, vocab);
        int n_out = 0;
        bool ended = false;
        while (n_out < max_tokens) {
            EXPECT(constraint_mask(c, max_tokens - n_out, mask) == STATUS_OK);
            int n = 0;
            for (int32_t id = 0; id < constraint_vocab_size(vocab); id++)
                if (mask[id >> 5] >> (id & 31) & 1) ids[n++] = id;
            if (!n) break;
            int32_t pick = ids[rng_next(&r) % (uint64_t)n];
            // Prefer not stopping so the walk runs into the budget.
            if (pick == eos_id && n > 1 && (rng_next(&r) % 4)) { pick = ids[(rng_next(&r) % (uint64_t)(n - 1))]; if (pick == eos_id) pick = ids[n - 1]; }
            ASSERT(constraint_advance(c, pick) == STATUS_OK);
            n_out++;
            if (pick == eos_id) { ended = true; break; }
        }
        EXPECTF(ended || constraint_can_end(c), "seed %d: output not closed within %d tokens", seed, max_tokens);
        constraint_free(c);
    }
    free(mask);
    free(ids);
    constraint_grammar_free(g);
}

static bool use_tokenizer(const char *dir)
{
    if (vocab) constraint_vocab_free(vocab);
    if (tk) tokenizer_free(tk);
    vocab = NULL;
    tk = NULL;
    if (tokenizer_load(dir, &tk) != STATUS_OK) return false;
    eos_id = tokenizer_token_id(tk, "<|im_end|>");
    return eos_id >= 0 && constraint_vocab_new(tk, &eos_id, 1, &vocab) == STATUS_OK;
}

/* A special added token that is a model's tool-call marker ([TOOL_CALLS]): dropped by a plain
 * detokenizer and refused by a plain constraint vocabulary, it is text to both when named. Made
 * from the default tokenizer plus one added token. */
TEST(special_markers_as_text)
{
    json_error_t jerr;
    json_t *doc = json_load_file("models/default/tokenizer.json", 0, &jerr);
    ASSERT(doc != NULL);
    int32_t id = tokenizer_vocab_size(tk);
    json_array_append_new(json_object_get(doc, "added_tokens"),
                          json_pack("{s:i,s:s,s:b,s:b,s:b,s:b,s:b}", "id", (int)id, "content", "[TOOL_CALLS]", "single_word", 0,
                                    "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 1));
    char dir[] = "/tmp/cairn_markersXXXXXX", path[64];
    ASSERT(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    ASSERT(json_dump_file(doc, path, 0) == 0);
    json_decref(doc);
    struct tokenizer *mt = NULL;
    ASSERT(tokenizer_load(dir, &mt) == STATUS_OK);
    remove(path);
    rmdir(dir);
    EXPECT(tokenizer_token_id(mt, "[TOOL_CALLS]") == id && tokenizer_is_special(mt, id));
    struct constraint_vocab *plain = NULL, *marked = NULL;
    ASSERT(constraint_vocab_new(mt, &eos_id, 1, &plain) == STATUS_OK);
    ASSERT(constraint_vocab_new_text(mt, &eos_id, 1, &id, 1, &marked) == STATUS_OK);
    struct constraint_grammar *g = gbnf("root ::= \"[TOOL_CALLS]\" [a-z]+");
    ASSERT(g != NULL);
    uint32_t *m = xcalloc((size_t)constraint_mask_words(marked), sizeof *m);
    struct constraint *c = constraint_new(g, plain);
    EXPECT(constraint_mask(c, -1, m) == STATUS_OK && !(m[id >> 5] >> (id & 31) & 1));   // spelled byte by byte only
    EXPECT(constraint_advance(c, id) != STATUS_OK);
    constraint_free(c);
    c = constraint_new(g, marked);
    EXPECT(constraint_mask(c, -1, m) == STATUS_OK && (m[id >> 5] >> (id & 31) & 1));
    EXPECT(constraint_advance(c, id) == STATUS_OK && !constraint_can_end(c));
    EXPECT(constraint_advance_bytes(c, "ab", 2) == STATUS_OK && constraint_can_end(c));
    constraint_free(c);
    free(m);
    constraint_grammar_free(g);
    // the detokenizer: dropped by default, text when kept
    int32_t x = tokenizer_token_id(mt, "x");
    ASSERT(x >= 0);
    for (int keep = 0; keep < 2; keep++) {
        struct detok *d = detok_new(mt, true);
        if (keep) detok_keep_special(d, &id, 1);
        struct strbuf out = {0};
        int32_t seq[] = { id, x, id };
        for (int k = 0; k < 3; k++) { char *p = detok_push(d, seq[k]); strbuf_puts(&out, p ? p : ""); free(p); }
        char *p = detok_flush(d);
        strbuf_puts(&out, p ? p : "");
        free(p);
        EXPECTF(!strcmp(out.data ? out.data : "", keep ? "[TOOL_CALLS]x[TOOL_CALLS]" : "x"), "keep %d: '%s'", keep, out.data);
        strbuf_free(&out);
        detok_free(d);
    }
    constraint_vocab_free(plain);
    constraint_vocab_free(marked);
    tokenizer_free(mt);
}

/* The union of a JSON Schema and a tool-call grammar (strict tools beside response_format): either
 * language, nothing else; its shortest output is the shorter one's; at the start its mask is the OR
 * of the two masks; the parts stay usable after. */
TEST(grammar_union)
{
    const char *schema = "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\",\"maxLength\":8}},"
                         "\"required\":[\"city\"],\"additionalProperties\":false}";
    struct constraint_grammar *a = NULL, *u = NULL;
    char err[256];
    ASSERT(constraint_compile_json_schema(schema, strlen(schema), NULL, NULL, &a, err, sizeof err) == STATUS_OK);
    struct constraint_grammar *b = gbnf("root ::= \"<tool_call>\" args \"</tool_call>\"\nargs ::= \"{\" [a-z]* \"}\"\n");
    ASSERT(b);
    ASSERT(constraint_grammar_union(a, b, &u, err, sizeof err) == STATUS_OK);
    EXPECT(accepts(u, "{\"city\":\"Paris\"}"));
    EXPECT(accepts(u, "<tool_call>{go}</tool_call>"));
    EXPECT(!accepts(u, "{\"city\":\"Paris\"}</tool_call>"));
    EXPECT(!accepts(u, "<tool_call>{\"city\":\"Paris\"}</tool_call>"));
    EXPECT(!accepts(u, "hello"));
    uint32_t ma = constraint_grammar_min_bytes(a), mb = constraint_grammar_min_bytes(b);
    EXPECTF(constraint_grammar_min_bytes(u) == (ma < mb ? ma : mb), "min bytes %u of %u, %u", constraint_grammar_min_bytes(u), ma, mb);
    int words = constraint_mask_words(vocab);
    uint32_t *m[3];
    struct constraint_grammar *gs[3] = { a, b, u };
    for (int i = 0; i < 3; i++) {
        m[i] = xcalloc((size_t)words, sizeof *m[i]);
        struct constraint *c = constraint_new(gs[i], vocab);
        EXPECT(constraint_mask(c, -1, m[i]) == STATUS_OK);
        constraint_free(c);
    }
    int bad = 0;
    for (int w = 0; w < words; w++) bad += m[2][w] != (m[0][w] | m[1][w]);
    EXPECTF(bad == 0, "%d mask words differ from the OR of the parts", bad);
    for (int i = 0; i < 3; i++) free(m[i]);
    // unions of unions: thousands of copied rules (the rule-name table grows past them at once)
    for (int k = 0; k < 6; k++) {
        struct constraint_grammar *uu = NULL;
        ASSERT(constraint_grammar_union(u, u, &uu, err, sizeof err) == STATUS_OK);
        constraint_grammar_free(u);
        u = uu;
    }
    EXPECT(accepts(u, "{\"city\":\"Oslo\"}") && accepts(u, "<tool_call>{x}</tool_call>") && !accepts(u, "{}"));
    constraint_grammar_free(u);
    EXPECT(accepts(a, "{\"city\":\"Rome\"}") && accepts(b, "<tool_call>{}</tool_call>"));
    constraint_grammar_free(a);
    constraint_grammar_free(b);
}

/* The mask of g after prefix from matcher c (advanced from its start). */
static void mask_after(struct constraint *c, const char *prefix, uint32_t *m)
{
    EXPECT(constraint_advance_bytes(c, prefix, strlen(prefix)) == STATUS_OK);
    EXPECT(constraint_mask(c, -1, m) == STATUS_OK);
}

/* A finished sequence's matcher goes back to its grammar and the next sequence of an equal
 * vocabulary starts from it, rewound and warm: its masks equal a new matcher's (one from a
 * separate compile of the same schema); at most CG_IDLE_MAX wait; live matchers are never shared;
 * a different vocabulary (other stop ids) never takes one. */
TEST(idle_matchers)
{
    const char *src = "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},"
                      "\"n\":{\"type\":\"integer\"}},\"required\":[\"name\",\"n\"],\"additionalProperties\":false}";
    const char *prefixes[] = { "", "{\"name\":\"ab", "{\"name\":\"x\",\"n\":1", "{\"name\":\"x\",\"n\":12}" };
    struct constraint_grammar *g = schema(src), *ref = schema(src);
    ASSERT(g && ref);
    int words = constraint_mask_words(vocab);
    uint32_t *got = xcalloc((size_t)words, sizeof *got), *want = xcalloc((size_t)words, sizeof *want);
    struct constraint *c = constraint_new(g, vocab);
    size_t fresh = constraint_bytes(c);
    for (int i = 0; i < 4; i++) {   // warm c up on every prefix
        constraint_reset(c);
        mask_after(c, prefixes[i], got);
    }
    size_t warm = constraint_bytes(c);
    EXPECTF(warm > fresh, "caches %zu bytes after the walks, %zu new", warm, fresh);
    constraint_free(c);
    EXPECT(constraint_grammar_n_idle(g) == 1);
    for (int i = 0; i < 4; i++) {
        struct constraint *a = constraint_new(g, vocab), *b = constraint_new(ref, vocab);
        EXPECTF(constraint_bytes(a) >= warm, "prefix %d: the next sequence started cold (%zu bytes)", i, constraint_bytes(a));
        EXPECT(!constraint_is_finished(a) && constraint_min_tokens_to_finish(a) == constraint_min_tokens_to_finish(b));
        mask_after(a, prefixes[i], got);
        mask_after(b, prefixes[i], want);
        EXPECTF(mask_diff(got, want) < 0, "prefix '%s': id %d differs from a new matcher's", prefixes[i], mask_diff(got, want));
        constraint_free(a);
        constraint_free(b);
    }
    struct constraint *live[CG_IDLE_MAX + 4];
    for (int i = 0; i < CG_IDLE_MAX + 4; i++) live[i] = constraint_new(g, vocab);
    for (int i = 1; i < CG_IDLE_MAX + 4; i++) EXPECT(live[i] != live[0]);
    EXPECT(constraint_grammar_n_idle(g) == 0);
    for (int i = 0; i < CG_IDLE_MAX + 4; i++) constraint_free(live[i]);
    EXPECTF(constraint_grammar_n_idle(g) == CG_IDLE_MAX, "%d idle", constraint_grammar_n_idle(g));
    // an equal vocabulary (another object) takes one; one with other stop ids does not
    struct constraint_vocab *same, *other;
    int32_t other_stop = eos_id == 0 ? 1 : 0;
    ASSERT(constraint_vocab_new(tk, &eos_id, 1, &same) == STATUS_OK);
    ASSERT(constraint_vocab_new(tk, &other_stop, 1, &other) == STATUS_OK);
    c = constraint_new(g, same);
    EXPECT(constraint_grammar_n_idle(g) == CG_IDLE_MAX - 1);
    constraint_free(c);
    c = constraint_new(g, other);
    EXPECT(constraint_grammar_n_idle(g) == CG_IDLE_MAX);
    mask_after(c, prefixes[3], got);   // the object is closed: only the stop id may follow
    EXPECTF((got[other_stop >> 5] >> (other_stop & 31) & 1) && !(got[eos_id >> 5] >> (eos_id & 31) & 1),
            "after a complete object: stop %d allowed %d, old stop %d allowed %d", other_stop,
            (int)(got[other_stop >> 5] >> (other_stop & 31) & 1), eos_id, (int)(got[eos_id >> 5] >> (eos_id & 31) & 1));
    constraint_free(c);   // no room: freed
    EXPECT(constraint_grammar_n_idle(g) == CG_IDLE_MAX);
    constraint_grammar_free(g);   // the idle matchers go with it (ASan: no leak)
    constraint_grammar_free(ref);
    constraint_vocab_free(same);
    constraint_vocab_free(other);
    free(got);
    free(want);
}

int main(void)
{
    if (!use_tokenizer("models/default")) {
        fprintf(stderr, "cannot load the models/default tokenizer\n");
        return 1;
    }
    RUN(gbnf_matches);
    RUN(gbnf_errors);
    RUN(mask_exact_gbnf);
    RUN(mask_exact_schema_regex);
    RUN(regex_errors);
    RUN(json_modes);
    RUN(walk_gbnf_closes_within_budget);
    RUN(special_markers_as_text);
    RUN(grammar_union);
    RUN(idle_matchers);
    // The Qwen3 vocabulary (151669 ids, many partial UTF-8 tokens) when tests/text/fetch_tokenizers.sh cached it.
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tokenizers/qwen3", getenv("BUILD") ? getenv("BUILD") : "build");
    if (use_tokenizer(dir)) {
        fprintf(stderr, "with %s (%d ids):\n", dir, constraint_vocab_size(vocab));
        RUN(mask_exact_gbnf);
        RUN(mask_exact_schema_regex);
        RUN(walk_gbnf_closes_within_budget);
    } else {
        fprintf(stderr, "note: %s not cached (tests/text/fetch_tokenizers.sh qwen3): Qwen3 mask checks not run\n", dir);
    }
    constraint_vocab_free(vocab);
    tokenizer_free(tk);
    return test_summary();
}
