/* Statistics against values worked out by hand (and, for the large case, a naive two-pass
 * computation in long double), including NaN skipping and percentiles. */
#include "harness.h"

#include <math.h>

#include "bench/stats.h"

#define NEAR(a, b, tol) (fabs((double)(a) - (double)(b)) <= (tol))

TEST(odd_count)
{
    // 2,4,4,4,5,5,7,9 plus 10: mean 50/9, median 5
    double x[] = { 9, 2, 4, 10, 4, 5, 4, 7, 5 };
    struct stats s;
    stats_compute(x, 9, &s);
    EXPECT(s.n == 9);
    EXPECT(s.median == 5);
    EXPECT(NEAR(s.mean, 50.0 / 9, 1e-12));
    // sum of squared deviations: sum x^2 = 332, 332 - 9 * (50/9)^2 = 332 - 2500/9 = 488/9
    EXPECT(NEAR(s.stddev, sqrt(488.0 / 9 / 8), 1e-12));
    EXPECT(s.min == 2 && s.max == 10);
}

TEST(even_count_median_is_mean_of_middle)
{
    double x[] = { 1, 100, 3, 2 };
    struct stats s;
    stats_compute(x, 4, &s);
    EXPECT(s.median == 2.5);
    EXPECT(s.mean == 26.5);
    EXPECT(s.min == 1 && s.max == 100);
}

TEST(nan_values_are_skipped)
{
    double x[] = { NAN, 4, NAN, 6, INFINITY };
    struct stats s;
    stats_compute(x, 5, &s);
    EXPECT(s.n == 2);
    EXPECT(s.median == 5 && s.mean == 5);
    EXPECT(NEAR(s.stddev, sqrt(2.0), 1e-12));
}

TEST(empty_and_single)
{
    struct stats s;
    stats_compute(NULL, 0, &s);
    EXPECT(s.n == 0 && isnan(s.median) && isnan(s.stddev));
    double one = 7;
    stats_compute(&one, 1, &s);
    EXPECT(s.n == 1 && s.median == 7 && s.stddev == 0 && s.p95 == 7);
}

TEST(quantiles_interpolate_like_numpy)
{
    double x[] = { 10, 20, 30, 40, 50 };   // numpy.percentile(x, 95) = 48, (x, 25) = 20
    EXPECT(NEAR(stats_quantile(x, 5, 0.95), 48, 1e-12));
    EXPECT(NEAR(stats_quantile(x, 5, 0.25), 20, 1e-12));
    EXPECT(stats_quantile(x, 5, 0) == 10 && stats_quantile(x, 5, 1) == 50);
    struct stats s;
    stats_compute(x, 5, &s);
    EXPECT(NEAR(s.p95, 48, 1e-12));
}

TEST(large_mean_small_spread_is_stable)
{
    double x[1000];
    long double sum = 0, ss = 0;
    for (int i = 0; i < 1000; i++) {
        x[i] = 1e9 + (i % 7) * 0.5;
        sum += x[i];
    }
    long double mean = sum / 1000;
    for (int i = 0; i < 1000; i++) ss += (x[i] - mean) * (x[i] - mean);
    struct stats s;
    stats_compute(x, 1000, &s);
    EXPECT(NEAR(s.mean, (double)mean, 1e-6));
    EXPECTF(NEAR(s.stddev, sqrtl(ss / 999), 1e-7), "%.12g vs %.12Lg", s.stddev, sqrtl(ss / 999));
}

int main(void)
{
    RUN(odd_count);
    RUN(even_count_median_is_mean_of_middle);
    RUN(nan_values_are_skipped);
    RUN(empty_and_single);
    RUN(quantiles_interpolate_like_numpy);
    RUN(large_mean_small_spread_is_stable);
    return test_summary();
}
