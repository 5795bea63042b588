/* row_max: see row_max.h. */
#include "base/row_max.h"

#include <math.h>

#include "base/simd_clones.h"

enum { LANES = 16 };   // fixed lanes (the compiler maps them to any vector width)

VECTOR_CLONES float row_max(const float *x, int64_t n)
{
    float lane[LANES];
    for (int j = 0; j < LANES; j++) lane[j] = -INFINITY;
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) lane[j] = x[i + j] > lane[j] ? x[i + j] : lane[j];
    float mx = -INFINITY;
    for (int j = 0; j < LANES; j++) mx = lane[j] > mx ? lane[j] : mx;
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    return mx;
}

int64_t row_argmax(const float *x, int64_t n)
{
    float mx = row_max(x, n);
    for (int64_t i = 0; i < n; i++)
        if (x[i] == mx) return i;
    return -1;   // every entry NaN (an all -inf row finds its first -inf)
}
