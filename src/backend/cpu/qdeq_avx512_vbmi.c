/* qdeq_avx512_vbmi: qdeq_avx512.c compiled again with AVX512_VBMI (the Makefile's flags by file
 * name), for the CPUs that have it (Ice Lake and later, Zen 4 and later): there a 4-bit chunk's
 * nibbles unpack in one vpmultishiftqb (the 4-bit GEMV about 1.05x at one thread on Zen 5).
 * Entry points cpu_qgemv_avx512vbmi and cpu_qdeq_row_avx512vbmi; cpu_qgemv_pick checks the CPU. */
#include "backend/cpu/qdeq_avx512.c"
