/* hash: a 64-bit integer mixer (splitmix64's finalizer), header-only so that host C and CUDA
 * device code compute the same bits: synthetic weights (model/synth.c on the host,
 * backend/cuda/synth.cu on the GPU, compared element by element in tests/cuda) and rng seeding.
 * Integer arithmetic only, so it is exact on every compiler and device.
 *
 *     uint64_t h = hash_mix64(seed + i * HASH_GOLDEN64);
 */
#ifndef CAIRN_BASE_HASH_H
#define CAIRN_BASE_HASH_H

#include <stdint.h>

#define HASH_GOLDEN64 0x9e3779b97f4a7c15ULL   // 2^64 / golden ratio: splitmix64's increment

#ifdef __CUDACC__
#define HASH_FN static __host__ __device__ __forceinline__
#else
#define HASH_FN static inline
#endif

HASH_FN uint64_t hash_mix64(uint64_t z)
{
    z ^= z >> 30;
    z *= 0xbf58476d1ce4e5b9ULL;
    z ^= z >> 27;
    z *= 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

#undef HASH_FN

#endif
