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
 * One test of a program that cannot run here (an instruction set this CPU lacks) returns through
 * SKIP_CASE("reason") before it checks anything: RUN prints "SKIP case NAME: reason", the summary
 * counts it, tests/run_all.sh lists it under the program's PASS; a program whose every test
 * skipped exits 77.
 */
#ifndef CAIRN_TEST_HARNESS_H
#define CAIRN_TEST_HARNESS_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_failures, t_checks, t_tests, t_test_failed, t_skipped;
static char t_skip_why[256] __attribute__((unused));   // the reason of the running test's SKIP_CASE, "" if none

#define TEST(name) static void test_##name(void)
#define RUN(name) do { \
        int c0_ = t_checks; t_test_failed = 0; t_tests++; t_skip_why[0] = 0; \
        test_##name(); \
        if (t_skip_why[0] && t_checks == c0_) { fprintf(stderr, "SKIP case %s: %s\n", #name, t_skip_why); t_skipped++; } \
        else if (t_checks == c0_) { fprintf(stderr, "FAIL %s: checked nothing\n", #name); t_failures++; } \
        else fprintf(stderr, "%s %s\n", t_test_failed ? "FAIL" : "ok  ", #name); \
    } while (0)
/* Leaves the running test as skipped (before any check: a test that checked something is run). */
#define SKIP_CASE(...) do { snprintf(t_skip_why, sizeof t_skip_why, __VA_ARGS__); return; } while (0)
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
    fprintf(stderr, "%d tests, %d checks, %d failures, %d skipped\n", t_tests, t_checks, t_failures, t_skipped);
    if (!t_failures && t_tests > 0 && t_skipped == t_tests) test_skip("every test of this program skipped");
    return t_failures ? 1 : 0;
}

#endif
