/* cmd_info: `cairn info MODEL_DIR`: loads (and so validates) a checkpoint and prints its
 * architecture, shapes, parameter count, dtypes, weight bytes, KV bytes per token, context
 * length, and where it came from (PROVENANCE, else the top of README.md). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cmd.h"
#include "base/log.h"
#include "base/mem.h"
#include "model/config.h"
#include "model/model.h"
#include "model/model_cost.h"
#include "model/safetensors.h"
#include "model/weights.h"
#include "tensor/qweight.h"

static const char *rope_name(enum rope_scaling s)
{
    switch (s) {
    case ROPE_SCALING_NONE: return "default";
    case ROPE_SCALING_LINEAR: return "linear";
    case ROPE_SCALING_DYNAMIC: return "dynamic";
    case ROPE_SCALING_LLAMA3: return "llama3";
    case ROPE_SCALING_YARN: return "yarn";
    }
    return "?";
}

static void print_rope(const char *label, const struct rope_cfg *r)
{
    printf("%-14s theta %g, %s", label, (double)r->theta, rope_name(r->scaling));
    if (r->scaling != ROPE_SCALING_NONE) printf(" factor %g", (double)r->factor);
    if (r->orig_max_pos) printf(", original context %d", r->orig_max_pos);
    printf("\n");
}

/* The layer kinds, one letter each (L: Gated DeltaNet, A: attention), folded to "(LLLA) x 10"
 * when the pattern repeats. */
static void print_layer_pattern(const struct hparams *hp)
{
    char kinds[MODEL_MAX_LAYERS + 1];
    int n = hp->n_layers;
    for (int l = 0; l < n; l++) kinds[l] = hp->layer_linear[l] ? 'L' : 'A';
    kinds[n] = 0;
    int period = n;
    for (int p = 1; p < n && period == n; p++) {
        if (n % p) continue;
        bool same = true;
        for (int l = p; l < n && same; l++) same = kinds[l] == kinds[l - p];
        if (same) period = p;
    }
    printf("%-14s %d Gated DeltaNet (L) + %d attention (A): ", "layer kinds:", hp->n_linear_layers,
           n - hp->n_linear_layers);
    if (period < n) printf("(%.*s) x %d\n", period, kinds, n / period);
    else printf("%s\n", kinds);
}

/* Prints PROVENANCE whole (bounded), else the first lines of README.md. */
static void print_provenance(const char *dir)
{
    static const char *files[] = { "PROVENANCE", "README.md" };
    for (int i = 0; i < 2; i++) {
        struct strbuf p = {0};
        strbuf_printf(&p, "%s/%s", dir, files[i]);
        FILE *f = fopen(p.data, "r");
        strbuf_free(&p);
        if (!f) continue;
        printf("%-14s (%s)\n", "provenance:", files[i]);
        char line[512];
        int max_lines = i == 0 ? 40 : 12, n = 0;
        while (n < max_lines && fgets(line, sizeof line, f)) {
            if (i == 1 && line[0] == '\n') continue;
            printf("  %s%s", line, strchr(line, '\n') ? "" : "\n");
            n++;
        }
        fclose(f);
        return;
    }
}

/* The distinct (mode, bits, group) of a model's quantized tensors, in first-seen order. */
struct quant_kind {
    enum qmode mode;
    int        bits, group_size, n;
};

struct quant_kinds {
    struct quant_kind k[16];
    int               n;
};

static void count_kind(struct tensor *t, void *ctx)
{
    struct quant_kinds *qk = ctx;
    if (t->dtype != DTYPE_QMLX) return;
    const struct qweight *q = t->q;
    int i = 0;
    while (i < qk->n && !(qk->k[i].mode == q->mode && qk->k[i].bits == q->bits && qk->k[i].group_size == q->group_size))
        i++;
    if (i == qk->n) {
        if (qk->n == 16) return;   // more kinds than MLX defines
        qk->k[qk->n++] = (struct quant_kind){ q->mode, q->bits, q->group_size, 0 };
    }
    qk->k[i].n++;
}

static void print_bytes(const char *label, double bytes, const char *what)
{
    if (bytes >= 1e9) printf("%-14s %.3f GB%s\n", label, bytes / 1e9, what);
    else if (bytes >= 1e6) printf("%-14s %.3f MB%s\n", label, bytes / 1e6, what);
    else printf("%-14s %.0f bytes%s\n", label, bytes, what);
}

/* MLX quantization: each (mode, bits, group) with its tensor count, and what one decoded token
 * reads (model/model_cost.h: the used share of the experts, one embedding row, the state). */
static void print_quant(struct model *m)
{
    const struct hparams *hp = &m->hp;
    if (m->n_qw) {
        struct quant_kinds qk = { .n = 0 };
        weights_for_each(m, count_kind, &qk);
        printf("%-14s MLX,", "quantized:");
        for (int i = 0; i < qk.n; i++)
            printf(" %s %d-bit group %d: %d tensors;", qmode_name(qk.k[i].mode), qk.k[i].bits, qk.k[i].group_size,
                   qk.k[i].n);
        printf(" %.2f bits per parameter\n", m->n_params ? 8.0 * (double)m->weight_bytes / (double)m->n_params : 0);
    }
    print_bytes("per token:", model_decode_weight_bytes(m),
                hp->n_experts > 0 ? " of weights read per decoded token (active experts only)"
                                  : " of weights read per decoded token");
    if (hp->n_linear_layers > 0) print_bytes("", model_decode_state_bytes(m), " of recurrent state read and written");
}

int cmd_info(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(argc == 2 ? stdout : stderr, "usage: cairn info MODEL_DIR\n");
        return argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) ? 0 : 2;
    }
    struct model *m;
    enum status st = model_load(argv[1], &m);
    if (st != STATUS_OK) {
        fprintf(stderr, "cairn info: %s: %s\n", argv[1], status_str(st));
        return 1;
    }
    const struct hparams *hp = &m->hp;
    printf("%-14s %s\n", "model:", argv[1]);
    printf("%-14s %s\n", "architecture:", hp->arch);
    printf("%-14s %d (d_model %d, heads %d, kv heads %d, head_dim %d, ffn %d)\n", "layers:", hp->n_layers,
           hp->d_model, hp->n_heads, hp->n_kv_heads, hp->head_dim, hp->d_ff);
    if (m->f.moe) {
        int n_sparse = 0;
        for (int l = 0; l < hp->n_layers; l++) n_sparse += hp->layer_moe[l];
        printf("%-14s %d, %d per token, ffn %d, %s; %d of %d layers sparse\n", "experts:", hp->n_experts,
               hp->n_experts_used, hp->d_ff_expert, hp->norm_topk ? "renormalized" : "not renormalized",
               n_sparse, hp->n_layers);
    }
    printf("%-14s %d\n", "vocab:", hp->n_vocab);
    printf("%-14s %d tokens\n", "context:", hp->max_pos);
    print_rope("rope:", &hp->rope);
    if (hp->sliding_window > 0) {
        int n_sl = 0;
        for (int l = 0; l < hp->n_layers; l++) n_sl += hp->layer_sliding[l];
        printf("%-14s window %d on %d of %d layers\n", "sliding:", hp->sliding_window, n_sl, hp->n_layers);
        print_rope("rope (local):", &hp->rope_local);
    }
    if (m->f.attn_out_gate) printf("%-14s output * sigmoid(gate) (q_proj holds [q | gate] per head)\n", "attn gate:");
    if (hp->n_linear_layers > 0) {
        print_layer_pattern(hp);
        printf("%-14s key heads %d x %d, value heads %d x %d, conv kernel %d%s\n", "deltanet:", hp->lin_n_k_heads,
               hp->lin_k_dim, hp->lin_n_v_heads, hp->lin_v_dim, hp->lin_conv_kernel,
               m->f.gdn_grouped_proj ? ", projections grouped by key head" : "");
        size_t conv32 = model_gdn_conv_state_bytes(hp, DTYPE_F32), ssm = model_gdn_ssm_state_bytes(hp);
        size_t seq = model_seq_state_bytes(hp, DTYPE_F32);
        printf("%-14s %zu bytes/sequence (%.2f MiB): per layer conv %zu + recurrent %zu, f32\n", "state:", seq,
               (double)seq / (double)(1u << 20), conv32, ssm);
    }
    if (m->f.moe && hp->d_ff_shared > 0)
        printf("%-14s ffn %d, times sigmoid(shared_expert_gate)\n", "shared expert:", hp->d_ff_shared);
    if (hp->n_mtp_layers > 0)
        printf("%-14s %d layer%s, %s\n", "mtp head:", hp->n_mtp_layers, hp->n_mtp_layers > 1 ? "s" : "",
               m->has_mtp ? "loaded (kept for speculative decoding)" : "not in the checkpoint");
    if (hp->partial_rotary < 1.0f) printf("%-14s %g of head_dim\n", "rotary:", (double)hp->partial_rotary);
    printf("%-14s %s\n", "tied embed:", hp->tie_embed ? "yes" : "no");
    printf("%-14s %.3f B (%llu)\n", "parameters:", (double)m->n_params / 1e9, (unsigned long long)m->n_params);
    int per_dtype[DTYPE_COUNT] = { 0 };
    for (int i = 0; i < m->files->n_tensors; i++) per_dtype[m->files->tensors[i].dtype]++;
    printf("%-14s %.3f GB (%.3f GiB);", "weights:", (double)m->weight_bytes / 1e9,
           (double)m->weight_bytes / (double)(1ull << 30));
    for (int d = 0; d < DTYPE_COUNT; d++)
        if (per_dtype[d]) printf(" %s: %d tensors", dtype_name((enum dtype)d), per_dtype[d]);
    printf(" in %d file%s\n", m->files->n_shards, m->files->n_shards > 1 ? "s" : "");
    print_quant(m);
    size_t kv16 = model_kv_bytes_per_token(m, DTYPE_BF16), kv32 = model_kv_bytes_per_token(m, DTYPE_F32);
    printf("%-14s %zu bytes/token bf16, %zu f32; %.2f GiB bf16 at full context\n", "kv cache:", kv16, kv32,
           (double)kv16 * hp->max_pos / (double)(1ull << 30));
    printf("%-14s %d / ", "bos / eos:", hp->bos_id);
    for (int i = 0; i < hp->n_eos; i++) printf("%s%d", i ? "," : "", hp->eos_ids[i]);
    printf("%s\n", hp->n_eos ? "" : "none");
    char gen[160];   // generation_config.json's defaults, as cairn serve applies them
    gen_defaults_describe(&hp->gen, gen, sizeof gen);
    printf("%-14s%s\n", "sampling:", hp->gen.set ? gen : " (no generation_config.json defaults)");
    print_provenance(argv[1]);
    model_free(m);
    return 0;
}
