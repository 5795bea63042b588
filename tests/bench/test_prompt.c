/* Prompt builder: the nonce is the very first thing, sizes come out about right (by the
 * estimate, and by an independent word counter written here), prompts differ per nonce,
 * calibration converges with a counter of a different ratio, agentic sizes match the brief. */
#include "harness.h"

#include <ctype.h>
#include <stdbool.h>

#include "bench/prompt.h"

// Independent count: whitespace-separated words, plus one per '.' or ':' or '[' or ']'.
static int words_and_marks(const char *s)
{
    int n = 0;
    bool in = false;
    for (; *s; s++) {
        if (isalnum((unsigned char)*s)) {
            if (!in) n++;
            in = true;
        } else {
            in = false;
            if (*s == '.' || *s == ':' || *s == '[' || *s == ']') n++;
        }
    }
    return n;
}

TEST(nonce_is_hex_and_unique)
{
    struct rng r;
    rng_seed(&r, 1);
    char a[PROMPT_NONCE_LEN + 1], b[PROMPT_NONCE_LEN + 1];
    prompt_nonce(&r, a);
    prompt_nonce(&r, b);
    EXPECT(strlen(a) == PROMPT_NONCE_LEN);
    EXPECT(strcmp(a, b) != 0);
    for (int i = 0; i < PROMPT_NONCE_LEN; i++) EXPECT(isxdigit((unsigned char)a[i]));
}

TEST(nonce_at_the_very_start)
{
    struct strbuf p = {0};
    prompt_filler(512, "0123456789abcdef", 3, &p);
    EXPECT(!strncmp(p.data, "[0123456789abcdef] ", 19));
    struct strbuf u = {0};
    prompt_agentic_user(4, "fedcba9876543210", &u);
    EXPECT(!strncmp(u.data, "[fedcba9876543210] ", 19));
    struct strbuf sys = {0};
    prompt_agentic_system("00112233445566ff", &sys);
    EXPECT(!strncmp(sys.data, "[00112233445566ff] ", 19));
    strbuf_free(&p);
    strbuf_free(&u);
    strbuf_free(&sys);
}

TEST(sizes_are_about_right)
{
    static const int sizes[] = { 64, 512, 2048, 4096, 8192, 16384, 32768 };
    struct strbuf p = {0};
    for (int i = 0; i < 7; i++) {
        prompt_filler(sizes[i], "0123456789abcdef", (uint64_t)i, &p);
        int est = prompt_estimate_tokens(p.data), words = words_and_marks(p.data);
        EXPECTF(abs(est - sizes[i]) <= sizes[i] / 50 + 4, "size %d: estimate %d", sizes[i], est);
        EXPECTF(abs(words - sizes[i]) <= sizes[i] / 10 + 12, "size %d: independent count %d", sizes[i], words);
    }
    strbuf_free(&p);
}

TEST(same_size_different_nonce_different_text_after_the_nonce)
{
    struct strbuf a = {0}, b = {0};
    prompt_filler(256, "aaaaaaaaaaaaaaaa", 1, &a);
    prompt_filler(256, "bbbbbbbbbbbbbbbb", 2, &b);
    EXPECT(strcmp(a.data + 18, b.data + 18) != 0);
    EXPECT(a.data[1] != b.data[1]);   // they differ from the first character after '['
    strbuf_free(&a);
    strbuf_free(&b);
}

// A counter that sees 1.3 tokens per word, as a real tokenizer might.
static int count_13(void *ctx, const char *text)
{
    (void)ctx;
    return (int)(prompt_estimate_tokens(text) * 1.3);
}

TEST(calibration_converges_with_a_real_counter)
{
    struct strbuf p = {0};
    prompt_filler_calibrated(4096, "0123456789abcdef", 9, count_13, NULL, &p);
    int c = count_13(NULL, p.data);
    EXPECTF(abs(c - 4096) <= 4096 / 50, "calibrated count %d", c);
    strbuf_free(&p);
}

static int count_chars(void *ctx, const char *text)
{
    (void)ctx;
    return (int)strlen(text);
}

TEST(calibration_converges_with_a_character_level_counter)
{
    struct strbuf p = {0};
    static const int sizes[] = { 256, 2048, 32768 };   // the fixed header alone is ~90 characters
    for (int i = 0; i < 3; i++) {
        prompt_filler_calibrated(sizes[i], "0123456789abcdef", 5, count_chars, NULL, &p);
        int c = count_chars(NULL, p.data);
        EXPECTF(abs(c - sizes[i]) <= sizes[i] / 100 + 8, "size %d: calibrated count %d", sizes[i], c);
    }
    strbuf_free(&p);
}

TEST(agentic_sizes)
{
    struct strbuf sys = {0}, u = {0};
    prompt_agentic_system("0123456789abcdef", &sys);
    EXPECTF(sys.len >= 6000 && sys.len <= 8500, "system prompt %zu bytes", sys.len);
    prompt_agentic_user(1, "0123456789abcdef", &u);
    int t = prompt_estimate_tokens(u.data);
    EXPECTF(t >= 120 && t <= 200, "user message %d tokens", t);
    struct strbuf u2 = {0};
    prompt_agentic_user(2, "0123456789abcdef", &u2);
    EXPECT(strcmp(u.data, u2.data) != 0);
    struct strbuf sys2 = {0};
    prompt_agentic_system("0123456789abcdef", &sys2);
    EXPECT(!strcmp(sys.data, sys2.data));   // identical across calls of a session
    strbuf_free(&sys);
    strbuf_free(&sys2);
    strbuf_free(&u);
    strbuf_free(&u2);
}

int main(void)
{
    RUN(nonce_is_hex_and_unique);
    RUN(nonce_at_the_very_start);
    RUN(sizes_are_about_right);
    RUN(same_size_different_nonce_different_text_after_the_nonce);
    RUN(calibration_converges_with_a_real_counter);
    RUN(calibration_converges_with_a_character_level_counter);
    RUN(agentic_sizes);
    return test_summary();
}
