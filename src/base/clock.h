/* clock: monotonic time for latency measurement. */
#ifndef CAIRN_BASE_CLOCK_H
#define CAIRN_BASE_CLOCK_H

#include <stdint.h>

int64_t clock_now_ns(void);   // CLOCK_MONOTONIC, nanoseconds
double  clock_now_s(void);    // CLOCK_MONOTONIC, seconds

#endif
