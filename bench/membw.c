/* membw: prints the machine's memory read bandwidth (GB/s) for 1..N threads, median of repeats
 * over a 1 GiB buffer (see src/backend/cpu/membw.h). Usage: membw [max_threads] */
#include <stdio.h>
#include <stdlib.h>

#include "backend/cpu/membw.h"
#include "base/threadpool.h"

int main(int argc, char **argv)
{
    int max_t = argc > 1 ? atoi(argv[1]) : threadpool_cpu_count();
    for (int t = 1; t <= max_t; t++) printf("membw read t=%d %.1fGB/s\n", t, membw_measure_read_gbs(t, 0));
    return 0;
}
