/* row_max: the largest value of a float row and the first index that holds it, in two passes that
 * vectorize (16 running maxima, then a scan for the first equal entry). A one-pass running argmax
 * waits on its own last load every element: ~1 ms for a 152K-logit row.
 *
 *     float   mx = row_max(x, n);      // NaNs skipped; -inf when there is nothing else
 *     int64_t i  = row_argmax(x, n);   // first index of row_max(x, n); -1 when every entry is NaN
 */
#ifndef CAIRN_BASE_ROW_MAX_H
#define CAIRN_BASE_ROW_MAX_H

#include <stdint.h>

float   row_max(const float *x, int64_t n);
int64_t row_argmax(const float *x, int64_t n);

#endif
