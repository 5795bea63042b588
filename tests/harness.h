/* harness: a tiny test framework for cairn's C tests (one binary per test file).
 *
 *     TEST(parses_ints) { int32_t *v; int n; EXPECT(parse_int_list("1,2", &v, &n) == STATUS_OK); ... }
 *     int main(void) { RUN(parses_ints); return test_summary(); }
 *
 * EXPECT records a failure with file:line and goes on; ASSERT returns from the test on failure.
 * A test that runs no EXPECT/ASSERT at all is reported as a failure: every test must check something.
 *
 * A test program that cannot run here (no GPU, tokenizer files not fetchable) calls
 * test_skip("reason"): it prints "SKIP: reason" and exits with 77, which tests/run_all.sh counts
 * as a skip, apart from passes and failures. Never return 0 for a test that did not run.
 */
#ifndef CAIRN_TEST_HARNESS_H
#define CAIRN_TEST_HARNESS_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_failures, t_checks, t_tests, t_test_failed;

#define TEST(name) static void test_##name(void)
#define RUN(name) do { \
        int c0_ = t_checks; t_test_failed = 0; t_tests++; \
        test_##name(); \
        if (t_checks == c0_) { fprintf(stderr, "FAIL %s: checked nothing\n", #name); t_failures++; } \
        else fprintf(stderr, "%s %s\n", t_test_failed ? "FAIL" : "ok  ", #name); \
    } while (0)
#define EXPECT(cond) do { t_checks++; if (!(cond)) { \
        fprintf(stderr, "  %s:%d: expected %s\n", __FILE__, __LINE__, #cond); t_failures++; t_test_failed = 1; } } while (0)
#define EXPECTF(cond, ...) do { t_checks++; if (!(cond)) { \
        fprintf(stderr, "  %s:%d: expected %s: ", __FILE__, __LINE__, #cond); fprintf(stderr, __VA_ARGS__); \
        fputc('\n', stderr); t_failures++; t_test_failed = 1; } } while (0)
#define ASSERT(cond) do { t_checks++; if (!(cond)) { \
        fprintf(stderr, "  %s:%d: assertion %s\n", __FILE__, __LINE__, #cond); t_failures++; t_test_failed = 1; return; } } while (0)

#define TEST_EXIT_SKIP 77   // the automake convention tests/run_all.sh reads

static inline void test_skip(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static inline void test_skip(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("SKIP: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(TEST_EXIT_SKIP);
}

static inline int test_summary(void)
{
    fprintf(stderr, "%d tests, %d checks, %d failures\n", t_tests, t_checks, t_failures);
    return t_failures ? 1 : 0;
}

#endif
