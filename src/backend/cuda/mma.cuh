/* mma: the warp-level tensor-core pieces the attention kernels share (attention_tiled.cu,
 * attention_decode_mma.cu): one m16n8k16 MMA with f32 accumulators (and an n16 pair of them), and
 * two floats packed into the 16-bit pair an operand register holds. */
#ifndef CAIRN_BACKEND_CUDA_MMA_CUH
#define CAIRN_BACKEND_CUDA_MMA_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

/* c += a b for one m16n8k16 tile (a: 4 regs, b: 2 regs, c: 4 f32), bf16 or f16 inputs. */
template <typename T> __device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1);
template <> __device__ __forceinline__ void mma16816<__nv_bfloat16>(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <> __device__ __forceinline__ void mma16816<__half>(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* c0 += a b[0..1] and c1 += a b[2..3]: an m16n16k16 tile as two m16n8k16 MMAs, b as one
 * ldmatrix.x4 of a 16x16 B tile gives it (the two n8 halves). */
template <typename T>
__device__ __forceinline__ void mma16816_n16(float c0[4], float c1[4], const uint32_t a[4], const uint32_t b[4])
{
    mma16816<T>(c0, a, b[0], b[1]);
    mma16816<T>(c1, a, b[2], b[3]);
}

/* Two floats as one register of two 16-bit values, the first in the low half (lower column). */
template <typename T> __device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <> __device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}
template <> __device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi)
{
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

#endif
