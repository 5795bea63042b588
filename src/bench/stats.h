/* stats: summary statistics of a cell of benchmark runs (median, mean, sample standard
 * deviation, min, max, percentiles). Pure functions over a caller's array; NaN values (a metric
 * a failed run could not measure) are skipped. Used by bench/summary.c and bench/report.c.
 *
 *     struct stats s;  stats_compute(ttft_ms, n, &s);
 *     printf("%.1f ± %.1f (n=%d)\n", s.median, s.stddev, s.n);
 */
#ifndef CAIRN_BENCH_STATS_H
#define CAIRN_BENCH_STATS_H

struct stats {
    int    n;        // finite values used
    double median;   // middle value; mean of the two middle ones when n is even
    double mean;
    double stddev;   // sample standard deviation (n - 1 in the denominator); 0 when n < 2
    double min;
    double max;
    double p95;      // linear-interpolated 95th percentile
};

/* Fills *out from the finite values of x[0..n). All fields are NaN when none is finite. */
void   stats_compute(const double *x, int n, struct stats *out);
/* q-th quantile, q in [0, 1], linear interpolation between order statistics (numpy's default);
 * NaN when no value is finite. */
double stats_quantile(const double *x, int n, double q);

#endif
