/* membw: measures this machine's memory read bandwidth, the roofline of decode.
 *
 * Reads a buffer much larger than the last-level cache (huge pages where the kernel allows) with
 * n_threads threads (each its own contiguous slice, full-width SIMD loads from the cpu backend's
 * kernel family), repeats, and returns the median rate in GB/s (1e9 bytes per second). Benchmarks quote decode tok/s as a
 * fraction of (weight bytes per token / this bandwidth). Takes about a second; allocates and
 * frees its buffer; any thread may call it (it makes its own pool).
 *
 *     double gbs = membw_measure_read_gbs(2, 0);   // 0: default size (1 GiB)
 *     printf("decode roofline %.1f tok/s\n", gbs * 1e9 / (double)weight_bytes);
 */
#ifndef CAIRN_BACKEND_CPU_MEMBW_H
#define CAIRN_BACKEND_CPU_MEMBW_H

#include <stddef.h>

/* n_threads 0 = all CPUs; bytes 0 = 1 GiB. Returns 0 if the buffer cannot be allocated. */
double membw_measure_read_gbs(int n_threads, size_t bytes);

#endif
