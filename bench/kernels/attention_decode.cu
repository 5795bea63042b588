/* Kernel lab: decode attention (one new token per sequence) through the production dispatch.
 *
 *   build/bench/kernels/attention_decode [--reps N]
 *
 * Cases: Qwen3-8B's attention (32 query heads, 8 KV heads, head_dim 128) and a head_dim 64 shape
 * with 16 query heads per KV head, at 512 / 8K / 32K keys, 1 and 16 sequences, bf16 and fp8 caches.
 * Versions: cuda (attention.cu's choose_attention_kernel: the streaming split-K kernel, fp8 on
 * tensor cores from 1,024 keys), cuda with cuda_fp8_mma_min_len = 2^24 (fp8 on the CUDA-core
 * streaming kernel), cuda with cuda_fp8_mma_min_len = 1, and cuda-deterministic (per-token splits).
 * GB/s counts the visible cache once; at decode that stream is the whole cost.
 */
#include "lab_attention.cuh"

int main(int argc, char **argv)
{
    int reps = 20;
    if (!lab_parse_reps(argc, argv, "attention_decode", &reps)) return 2;
    const struct lab_version versions[] = {
        { "cuda", "cuda", {} },
        { "cuda/fp8-cores", "cuda", { .cuda_fp8_mma_min_len = 1 << 24 } },
        { "cuda/fp8-mma-1", "cuda", { .cuda_fp8_mma_min_len = 1 } },
        { "deterministic", "cuda-deterministic", {} },
    };
    const int ctxs[] = { 511, 8191, 32767 }, seqs[] = { 1, 16 };
    const enum dtype dts[] = { DTYPE_BF16, DTYPE_F8E4M3 };
    for (const struct lab_version &v : versions) {
        struct backend *be = lab_backend(&v);
        for (enum dtype dt : dts)
            for (int n_seq : seqs)
                for (int ctx : ctxs) {
                    const struct att_case cases[] = {
                        { "qwen3-8b", n_seq, ctx, 1, 32, 8, 128, dt },
                        { "g16-hd64", n_seq, ctx, 1, 16, 1, 64, dt },
                    };
                    // fp8 K/V are exact in the reference too; the kernels round P (and fp8 math) to 16 bits
                    for (const struct att_case &c : cases) att_run(be, "attention_decode", &c, v.name, reps, 2e-2);
                }
        backend_free(be);
    }
    return 0;
}
