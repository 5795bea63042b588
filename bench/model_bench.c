/* model_bench: raw forward-pass speed of one model on one backend, without the scheduler.
 *
 *   model_bench MODEL_DIR [--backend cuda|cpu|ref] [--threads N] [--prefill 512,4096] [--decode-ctx 512,8192]
 *               [--gen 128] [--streams 64] [--stream-ctx 512] [--kv-dtype bf16|fp8] [--bytes-per-s X]
 *               [--gemm-tflops X]
 *               [--quant MODE:BITS:GROUP]   (with --synthetic: MLX-quantized random weights, e.g. affine:4:64)
 *
 * Prefill: one prompt of N tokens in chunks of up to 4096 tokens: tok/s and model TFLOP/s
 * (model_prefill_flops: the matmuls a token really runs, k of E experts, + attention), and given
 * --gemm-tflops (bench/gpu_peak's bf16 GEMM peak) the fraction of it. Decode: a prompt of C tokens,
 * then --gen greedy steps of one token: tok/s and, given --bytes-per-s (the measured read
 * bandwidth), the roofline model_decode_bytes() / bandwidth (the weights one token reads, k of E
 * experts, + KV + recurrent state, model/model_cost.h) and the fraction of it. Streams: S
 * sequences of --stream-ctx tokens decoding together, one token each per step: aggregate tok/s
 * beside the batch-1 rate of the first --decode-ctx. Prints one line per measurement
 * (key=value), for the bench scripts to collect.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/backend_env.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "kv/pool.h"
#include "kv/state_pool.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/model_cost.h"

#include "bench_args.h"

struct seqs {
    int      n;
    int      n_vocab;          // token ids stay below it
    int      blocks_per_seq;
    int32_t *block_ids, *seq_block0, *seq_len;
    int32_t *state_slot;       // [n] recurrent-state slot of each sequence (hybrid models), else NULL
};

/* Runs `n_tok` tokens per sequence for all sequences as one step per token column (decode) or
 * one step for a chunk of a single sequence (prefill). Returns seconds. */
static double run_steps(struct backend *be, struct forward *fw, struct kv_pool *kv, struct seqs *S, int start,
                        int n_new, int chunk, int32_t *scratch_i32, int64_t *scratch_slot)
{
    double t0 = clock_now_s();
    int bs = kv->block_size;
    int n_vocab = S->n_vocab;
    int id_span = n_vocab > 1010 ? 1000 : n_vocab > 11 ? n_vocab - 10 : 1;   // ordinary ids of any vocabulary
    for (int done = 0; done < n_new;) {
        int c = S->n == 1 ? (n_new - done < chunk ? n_new - done : chunk) : 1;
        int n_tok = c * S->n;
        int32_t *id = scratch_i32, *pos = id + n_tok, *seq = pos + n_tok, *out = seq + n_tok;
        for (int s = 0; s < S->n; s++) {
            for (int i = 0; i < c; i++) {
                int t = s * c + i, p = start + done + i;
                id[t] = (p * 7919 + s * 104729) % id_span + (n_vocab > 11 ? 10 : 0);
                pos[t] = p;
                seq[t] = s;
                scratch_slot[t] = (int64_t)S->block_ids[s * S->blocks_per_seq + p / bs] * bs + p % bs;
            }
            S->seq_len[s] = start + done + c;
            out[s] = s * c + c - 1;
        }
        struct batch_meta meta = { .n_tok = n_tok, .tok_id = id, .tok_pos = pos, .tok_seq = seq, .tok_slot = scratch_slot,
                                   .n_seq = S->n, .seq_len = S->seq_len, .seq_block0 = S->seq_block0,
                                   .block_ids = S->block_ids, .n_out = S->n, .out_tok = out, .block_size = bs,
                                   .seq_state_slot = S->state_slot };
        struct tensor logits;
        forward_step(fw, kv->layers, &meta, &logits);
        be->ops->argmax(be, scratch_i32 + 4 * n_tok, &logits);   // what a greedy engine step does
        done += c;
    }
    CHECK(be->ops->sync(be) == STATUS_OK, "device error");
    return clock_now_s() - t0;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *backend = "cpu", *kv_s = NULL, *synthetic = NULL, *quant_s = NULL;
    int threads = 0, gen = 128, streams = 0, stream_ctx = 512;
    int prefill[8], n_prefill = 0, dctx[8], n_dctx = 0;
    double bw = 0, gemm_tflops = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--backend") && i + 1 < argc) backend = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--prefill") && i + 1 < argc) {
            if (!bench_int_list("--prefill", argv[++i], prefill, 8, &n_prefill)) return 2;
        } else if (!strcmp(argv[i], "--decode-ctx") && i + 1 < argc) {
            if (!bench_int_list("--decode-ctx", argv[++i], dctx, 8, &n_dctx)) return 2;
        }
        else if (!strcmp(argv[i], "--gen") && i + 1 < argc) gen = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--streams") && i + 1 < argc) streams = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--stream-ctx") && i + 1 < argc) stream_ctx = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--kv-dtype") && i + 1 < argc) kv_s = argv[++i];
        else if (!strcmp(argv[i], "--bytes-per-s") && i + 1 < argc) bw = atof(argv[++i]);
        else if (!strcmp(argv[i], "--gemm-tflops") && i + 1 < argc) gemm_tflops = atof(argv[++i]);
        else if (!strcmp(argv[i], "--synthetic") && i + 1 < argc) synthetic = argv[++i];
        else if (!strcmp(argv[i], "--quant") && i + 1 < argc) quant_s = argv[++i];
        else if (argv[i][0] != '-' && !dir) dir = argv[i];
        else { fprintf(stderr, "model_bench: bad argument %s\n", argv[i]); return 2; }
    }
    if (!dir && !synthetic) { fprintf(stderr, "usage: model_bench MODEL_DIR | --synthetic CONFIG.json [options]\n"); return 2; }
    if (!dir) dir = synthetic;
    struct synth_quant sq;
    if (quant_s) {
        char mode[16];
        int qm = -1;
        if (!synthetic || sscanf(quant_s, "%15[a-z0-9]:%d:%d", mode, &sq.bits, &sq.group_size) != 3 ||
            (qm = qmode_parse(mode)) < 0) {
            fprintf(stderr, "model_bench: --quant MODE:BITS:GROUP (e.g. affine:4:64) goes with --synthetic\n");
            return 2;
        }
        sq.mode = (enum qmode)qm;
    }
    struct model *m;
    struct backend *be;
    struct backend_cfg bcfg = { .n_threads = threads };
    backend_cfg_from_env(&bcfg);
    if (backend_new(backend, &bcfg, &be) != STATUS_OK) return 1;
    double t_load = clock_now_s();
    // --synthetic CONFIG.json: random weights (no checkpoint on disk), made in device memory on cuda
    if (synthetic ? model_synthesize_quant(synthetic, 1, be, quant_s ? &sq : NULL, &m) != STATUS_OK
                  : model_load(dir, &m) != STATUS_OK)
        return 1;
    if (model_prepare(m, be) != STATUS_OK) return 1;
    fprintf(stderr, "weights ready in %.1f s\n", clock_now_s() - t_load);
    int kv_parsed = kv_s ? dtype_parse_kv(kv_s) : !strcmp(backend, "cuda") ? DTYPE_BF16 : DTYPE_F32;
    if (kv_parsed < 0) { fprintf(stderr, "model_bench: --kv-dtype must be f32, f16, bf16 or fp8\n"); return 2; }
    enum dtype kvdt = (enum dtype)kv_parsed;
    printf("model=%s backend=%s threads=%d params=%.3fB active_params=%.3fB weight_bytes=%llu"
           " decode_weight_bytes=%.0f kv_bytes_per_position=%zu state_bytes_per_token=%.0f quant=%s\n",
           dir, backend, threads, m->n_params / 1e9, model_active_params(m) / 1e9, (unsigned long long)m->weight_bytes,
           model_decode_weight_bytes(m), model_kv_bytes_per_token(m, kvdt), model_decode_state_bytes(m),
           quant_s ? quant_s : "none");

    int max_ctx = 0;
    for (int i = 0; i < n_prefill; i++) max_ctx = prefill[i] > max_ctx ? prefill[i] : max_ctx;
    for (int i = 0; i < n_dctx; i++) max_ctx = dctx[i] + gen + 8 > max_ctx ? dctx[i] + gen + 8 : max_ctx;
    int n_seq_max = streams > 1 ? streams : 1;
    if (max_ctx < 64) max_ctx = 64;   // the warm-up step
    int bs = KV_BLOCK_SIZE_DEFAULT, bps = (max_ctx + bs - 1) / bs;
    int bps_streams = (stream_ctx + gen + bs - 1) / bs;
    int n_blocks = bps > bps_streams * n_seq_max ? bps : bps_streams * n_seq_max;
    struct kv_pool *kv;
    if (kv_pool_new(m, be, kvdt, bs, n_blocks, &kv) != STATUS_OK) return 1;
    int chunk = 4096;
    int max_tok = chunk > n_seq_max ? chunk : n_seq_max;
    struct forward *fw;
    if (forward_new(m, be, max_tok, n_seq_max, &fw) != STATUS_OK) return 1;
    int32_t *scratch = xmalloc(sizeof(int32_t) * (size_t)max_tok * 6);
    int64_t *slots = xmalloc(sizeof(int64_t) * (size_t)max_tok);
    struct seqs S = { .n = 1, .n_vocab = m->hp.n_vocab, .blocks_per_seq = bps };
    S.block_ids = xmalloc(sizeof(int32_t) * (size_t)n_blocks);
    S.seq_block0 = xmalloc(sizeof(int32_t) * (size_t)(n_seq_max + 1));
    S.seq_len = xmalloc(sizeof(int32_t) * (size_t)n_seq_max);
    for (int i = 0; i < n_blocks; i++) S.block_ids[i] = i;
    S.seq_block0[0] = 0;
    S.seq_block0[1] = bps;
    struct state_pool *states = NULL;   // hybrid models: a recurrent-state slot per sequence
    if (m->hp.n_linear_layers > 0) {
        if (state_pool_new(m, be, n_seq_max, &states) != STATUS_OK) return 1;
        forward_bind_states(fw, states->layers, NULL);
        S.state_slot = xmalloc(sizeof(int32_t) * (size_t)n_seq_max);
        for (int i = 0; i < n_seq_max; i++) S.state_slot[i] = i;
    }

    run_steps(be, fw, kv, &S, 0, 64, chunk, scratch, slots);   // warm-up (kernels, cuBLAS heuristics)
    for (int i = 0; i < n_prefill; i++) {
        int n = prefill[i];
        double best = 1e30;
        for (int rep = 0; rep < (n > 8192 ? 1 : 3); rep++) {   // long prompts: one run (minutes on CPUs)
            double t = run_steps(be, fw, kv, &S, 0, n, chunk, scratch, slots);
            best = t < best ? t : best;
        }
        double flops = model_prefill_flops(m, n, n);   // model FLOPs: the lm_head counted for every token
        double tflops = flops / best / 1e12;
        printf("prefill tokens=%d time_s=%.4f tok_s=%.1f flops_per_tok=%.4g tflops=%.4g", n, best, n / best, flops / n, tflops);
        if (gemm_tflops > 0) printf(" gemm_peak_tflops=%.4g frac_gemm_peak=%.3f", gemm_tflops, tflops / gemm_tflops);
        printf("\n");
        fflush(stdout);
    }
    double batch1_tps = 0;   // the first decode context's rate, for the streams' ratio
    for (int i = 0; i < n_dctx; i++) {
        int c = dctx[i];
        double t_prompt = run_steps(be, fw, kv, &S, 0, c, chunk, scratch, slots);
        run_steps(be, fw, kv, &S, c, 8, 1, scratch, slots);   // warm the one-token path
        double t = run_steps(be, fw, kv, &S, c + 8, gen, 1, scratch, slots);   // one token per step
        double tps = gen / t;
        if (i == 0) batch1_tps = tps;
        double bytes = model_decode_bytes(m, kvdt, c + 8 + gen / 2);   // the middle token of the measured ones
        printf("decode ctx=%d gen=%d tok_s=%.2f ms_per_tok=%.3f bytes_per_tok=%.0f prompt_s=%.3f", c, gen, tps, 1e3 * t / gen,
               bytes, t_prompt);
        if (bw > 0) printf(" roofline_tok_s=%.1f frac_roofline=%.3f", bw / bytes, tps * bytes / bw);
        printf("\n");
        fflush(stdout);
    }
    if (streams > 1) {
        S.n = streams;
        S.blocks_per_seq = bps_streams;
        for (int s = 0; s <= streams; s++) S.seq_block0[s] = s * bps_streams;
        run_steps(be, fw, kv, &S, 0, stream_ctx, chunk, scratch, slots);   // one token per sequence per step
        double t = run_steps(be, fw, kv, &S, stream_ctx, gen, chunk, scratch, slots);
        double agg = (double)streams * gen / t;
        printf("streams=%d ctx=%d gen=%d aggregate_tok_s=%.1f step_ms=%.3f", streams, stream_ctx, gen, agg, 1e3 * t / gen);
        if (batch1_tps > 0) printf(" batch1_ctx=%d batch1_tok_s=%.2f aggregate_over_batch1=%.2f", dctx[0], batch1_tps, agg / batch1_tps);
        printf("\n");
    }
    forward_free(fw);
    state_pool_free(states);
    free(S.state_slot);
    kv_pool_free(kv);
    model_free(m);
    backend_free(be);
    return 0;
}
