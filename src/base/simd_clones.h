/* simd_clones: VECTOR_CLONES, the attribute that compiles a row loop for AVX-512 and AVX2 too and
 * picks the clone at load time (gcc's target_clones; nothing elsewhere). A function that wears it
 * must do the same operations in the same order in every clone, so every clone gives the same bits.
 *
 *     VECTOR_CLONES static float sum_of(const float *x, int n) { ... }
 */
#ifndef CAIRN_BASE_SIMD_CLONES_H
#define CAIRN_BASE_SIMD_CLONES_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define VECTOR_CLONES
#endif

#endif
