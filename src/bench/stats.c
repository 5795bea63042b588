/* stats: summary statistics. Sorting a copy keeps the caller's order (runs are stored in the
 * order they happened); cells are small (tens of runs), so O(n log n) per call is free.
 * The standard deviation uses the corrected two-pass formula, stable for large means. */
#include "bench/stats.h"

#include <math.h>
#include <stdlib.h>

#include "base/mem.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Copies the finite values of x into a sorted heap array; returns their count.
static int sorted_finite(const double *x, int n, double **out)
{
    double *v = xmalloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    int m = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(x[i])) v[m++] = x[i];
    qsort(v, (size_t)m, sizeof(double), cmp_double);
    *out = v;
    return m;
}

static double quantile_sorted(const double *v, int m, double q)
{
    if (m == 0) return NAN;
    if (q <= 0) return v[0];
    if (q >= 1) return v[m - 1];
    double pos = q * (m - 1);
    int lo = (int)floor(pos);
    double frac = pos - lo;
    return lo + 1 < m ? v[lo] + frac * (v[lo + 1] - v[lo]) : v[lo];
}

double stats_quantile(const double *x, int n, double q)
{
    double *v;
    int m = sorted_finite(x, n, &v);
    double r = quantile_sorted(v, m, q);
    free(v);
    return r;
}

void stats_compute(const double *x, int n, struct stats *out)
{
    double *v;
    int m = sorted_finite(x, n, &v);
    out->n = m;
    if (m == 0) {
        out->median = out->mean = out->stddev = out->min = out->max = out->p95 = NAN;
        free(v);
        return;
    }
    // corrected two-pass: the mean, then squared deviations with the rounding error of the mean
    // folded back in (Chan, Golub and LeVeque); exact enough for 1e9 +- 1 values
    double sum = 0;
    for (int i = 0; i < m; i++) sum += v[i];
    double mean = sum / m, ss = 0, comp = 0;
    for (int i = 0; i < m; i++) {
        double d = v[i] - mean;
        ss += d * d;
        comp += d;
    }
    double m2 = ss - comp * comp / m;
    mean += comp / m;
    out->mean = mean;
    out->stddev = m >= 2 ? sqrt(m2 / (m - 1)) : 0.0;
    out->median = quantile_sorted(v, m, 0.5);
    out->p95 = quantile_sorted(v, m, 0.95);
    out->min = v[0];
    out->max = v[m - 1];
    free(v);
}
