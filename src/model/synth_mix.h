/* synth_mix: the integer hash behind synthetic weights (splitmix64's finalizer), shared by the
 * host fill (model/synth.c) and the CUDA fill (backend/cuda/synth.cu) so both make the same values. */
#ifndef CAIRN_MODEL_SYNTH_MIX_H
#define CAIRN_MODEL_SYNTH_MIX_H

#include <stdint.h>

#ifdef __CUDACC__
#define SYNTH_MIX_FN static __host__ __device__ __forceinline__
#else
#define SYNTH_MIX_FN static inline
#endif

SYNTH_MIX_FN uint64_t synth_mix64(uint64_t z)
{
    z ^= z >> 30;
    z *= 0xbf58476d1ce4e5b9ULL;
    z ^= z >> 27;
    z *= 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

#endif
