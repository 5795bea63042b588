/* Kernel lab: prefill attention (a prompt's tokens in one step) through the production dispatch.
 *
 *   build/bench/kernels/attention_prefill [--reps N]
 *
 * Cases: one causal prompt of 512 and 2,048 tokens, and 4 prompts of 512, for Qwen3-8B's
 * attention (32/8 heads, head_dim 128), head_dim 64 and head_dim 256 (Gemma-like, 8/4 heads), with
 * bf16, fp8 and f32 caches. Versions: cuda (attention.cu's choose_attention_kernel: fa2 for
 * bf16/f16/fp8 and head_dim 64/128/256, the WMMA kernel for f32 caches) and cuda-precise (the f32
 * split-K kernels). bench/attn_bench times the longer prompts (4K, 32K) without a reference.
 * TFLOP/s counts 4 head_dim heads per visible (query, key) pair.
 */
#include "lab_attention.cuh"

int main(int argc, char **argv)
{
    int reps = 10;
    if (!lab_parse_reps(argc, argv, "attention_prefill", &reps)) return 2;
    const struct lab_version versions[] = {
        { "cuda", "cuda", {} },
        { "precise", "cuda-precise", {} },
    };
    const enum dtype dts[] = { DTYPE_BF16, DTYPE_F8E4M3, DTYPE_F32 };
    for (const struct lab_version &v : versions) {
        struct backend *be = lab_backend(&v);
        for (enum dtype dt : dts) {
            const struct att_case cases[] = {
                { "qwen3-8b", 1, 0, 512, 32, 8, 128, dt },
                { "qwen3-8b", 1, 0, 2048, 32, 8, 128, dt },
                { "qwen3-8b", 4, 0, 512, 32, 8, 128, dt },
                { "hd64", 1, 0, 2048, 16, 8, 64, dt },
                { "hd256", 1, 0, 2048, 8, 4, 256, dt },
            };
            // the tensor-core kernels round Q, K, V and P to 16 bits
            for (const struct att_case &c : cases) att_run(be, "attention_prefill", &c, v.name, reps, 2e-2);
        }
        backend_free(be);
    }
    return 0;
}
