/* model: a loaded checkpoint: hyper-parameters, architecture switches and bound weights.
 *
 * model_load() reads a Hugging Face model directory (config.json + safetensors, single or sharded),
 * validates everything read from disk, picks the architecture from config.json's "architectures"
 * and binds every weight the architecture needs. Weights stay in the mmapped files; a backend may
 * make device copies (backend_ops.weight_prepare) in model_prepare(). The model is read-only
 * afterwards and may be shared by threads. MLX-quantized checkpoints (mlx_lm.convert: u32 `weight`
 * plus `scales` / `biases`, stacked `switch_mlp` experts) bind as DTYPE_QMLX tensors
 * (tensor/qweight.h, model/quant_load.h); backends without quant_weights refuse them at prepare.
 *
 *     struct model *m;
 *     if (model_load("models/tiny", &m) != STATUS_OK) return 1;   // error already logged
 *     model_prepare(m, be);  ...  model_free(m);
 */
#ifndef CAIRN_MODEL_MODEL_H
#define CAIRN_MODEL_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"
#include "base/status.h"
#include "tensor/qweight.h"
#include "tensor/tensor.h"

#define MODEL_MAX_LAYERS 256
#define MODEL_MAX_EOS    8

enum rope_scaling {
    ROPE_SCALING_NONE = 0,
    ROPE_SCALING_LINEAR,           // positions / factor
    ROPE_SCALING_DYNAMIC,          // NTK-aware base growth past original_max_position_embeddings
    ROPE_SCALING_LLAMA3,           // Llama 3.1 frequency-banded scaling
    ROPE_SCALING_YARN,
};

struct rope_cfg {
    float             theta;                 // base
    enum rope_scaling scaling;
    float             factor;
    float             low_freq_factor;       // llama3
    float             high_freq_factor;      // llama3
    int               orig_max_pos;          // llama3, yarn, dynamic: original_max_position_embeddings
    float             beta_fast, beta_slow;  // yarn (defaults 32, 1)
    float             attention_factor;      // yarn mscale; 0 = derive from factor
    float             mscale, mscale_all_dim;// yarn (deepseek-style), 0 if unset
    bool              truncate;              // yarn: truncate correction range (default true)
};

/* The model creator's sampling defaults, from generation_config.json (HF GenerationConfig's
 * names). `set` has a GEN_* bit for each field the file gives with a usable value; a file that
 * says "do_sample": false gives temperature 0 (greedy), as transformers' generate would. A server
 * applies them to the fields a request leaves out. */
enum { GEN_TEMPERATURE = 1, GEN_TOP_P = 2, GEN_TOP_K = 4, GEN_MIN_P = 8, GEN_REPETITION_PENALTY = 16 };
struct gen_defaults {
    unsigned set;
    float    temperature, top_p, min_p, repetition_penalty;
    int      top_k;
};

struct hparams {
    char   arch[64];                 // "Qwen3ForCausalLM", ...
    int    n_vocab;
    int    d_model;                  // hidden_size
    int    n_layers;
    int    n_heads;
    int    n_kv_heads;
    int    head_dim;
    int    d_ff;                     // intermediate_size (dense FFN)
    float  norm_eps;
    int    max_pos;                  // max_position_embeddings
    bool   tie_embed;
    enum dtype dtype;                // torch_dtype / dtype of the checkpoint (informational)

    struct rope_cfg rope;            // global (full-attention) layers
    struct rope_cfg rope_local;      // sliding-window layers (Gemma 3: rope_local_base_freq)
    float  partial_rotary;           // fraction of head_dim that rotates (1.0 default)

    struct gen_defaults gen;         // generation_config.json's sampling fields
    int    bos_id;                   // -1 if none
    int    eos_ids[MODEL_MAX_EOS];   // from config.json and generation_config.json
    int    n_eos;

    // attention variants
    int    sliding_window;           // 0: none
    bool   layer_sliding[MODEL_MAX_LAYERS];   // true: this layer uses the sliding window
    float  attn_scale;               // multiplies q.k; 1/sqrt(head_dim) or query_pre_attn_scalar^-0.5
    float  attn_softcap;             // 0: none
    float  final_softcap;            // 0: none (final_logit_softcapping)

    // MoE
    int    n_experts;                // 0: dense model
    int    n_experts_used;           // num_experts_per_tok
    int    d_ff_expert;              // moe_intermediate_size
    bool   norm_topk;
    bool   layer_moe[MODEL_MAX_LAYERS];       // from decoder_sparse_step and mlp_only_layers
    int    d_ff_shared;              // shared_expert_intermediate_size: 0 none, else a shared SwiGLU
                                     // expert on every MoE layer, scaled by sigmoid(shared_expert_gate)

    // Gated DeltaNet (linear attention) layers: Qwen3-Next, Qwen3.5/3.6 (see qwen35-arch.md)
    bool   layer_linear[MODEL_MAX_LAYERS];    // true: Gated DeltaNet layer ("linear_attention")
    int    n_linear_layers;          // layers with layer_linear set
    int    lin_n_k_heads;            // linear_num_key_heads (nk)
    int    lin_n_v_heads;            // linear_num_value_heads (nv, a multiple of nk)
    int    lin_k_dim;                // linear_key_head_dim (dk)
    int    lin_v_dim;                // linear_value_head_dim (dv)
    int    lin_conv_kernel;          // linear_conv_kernel_dim (K): causal depthwise conv taps

    // Multi-token-prediction head (mtp.*): loaded and kept for speculative decoding, not run.
    // Its decoder layers live at layer indices n_layers .. n_layers + n_mtp_layers - 1.
    int    n_mtp_layers;             // mtp_num_hidden_layers
};

/* Architecture switches: what the forward pass does differently per family. */
struct arch_features {
    bool     qk_norm;                // RMSNorm over each head of q and k (Qwen3, Gemma 3)
    bool     qkv_bias;               // q/k/v projections have biases (Qwen2)
    bool     norm_plus_one;          // RMSNorm multiplies by (1 + w) (Gemma)
    bool     sandwich_norm;          // post-attention and post-FFN norms before the residual add (Gemma 3)
    bool     embed_scale;            // embeddings times sqrt(d_model), rounded to the weight dtype (Gemma)
    enum act act;
    bool     moe;                    // layers flagged in layer_moe use routed experts
    bool     attn_out_gate;          // q_proj yields [q_h | gate_h] per head; o_proj(attn * sigmoid(gate))
    bool     gdn_grouped_proj;       // Qwen3-Next: in_proj_qkvz / in_proj_ba grouped by key head
};

/* Weights of one decoder layer. A tensor whose buf is NULL is absent. */
struct layer_weights {
    struct tensor attn_norm;         // [d]   input_layernorm
    struct tensor wq, wk, wv, wo;    // [n_heads*hd, d], [n_kv*hd, d], [n_kv*hd, d], [d, n_heads*hd]
    struct tensor wq_gate;           // [n_heads*hd, d] gated attention (attn_out_gate): the gate rows of
                                     // q_proj, split from wq at load (weights_repack_hybrid)
    struct tensor bq, bk, bv;        // qkv biases (Qwen2)
    struct tensor q_norm, k_norm;    // [hd]
    struct tensor attn_post_norm;    // [d] (Gemma 3 post_attention_layernorm)
    struct tensor ffn_norm;          // [d] pre-FFN norm (Llama post_attention_layernorm; Gemma pre_feedforward_layernorm)
    struct tensor ffn_post_norm;     // [d] (Gemma 3 post_feedforward_layernorm)
    struct tensor w_gate, w_up, w_down;   // dense FFN: [f, d], [f, d], [d, f]
    struct tensor router;            // [n_experts, d]
    struct tensor *exp_gate, *exp_up, *exp_down;   // [n_experts] arrays: [fe, d], [fe, d], [d, fe]
    struct tensor shared_gate, shared_up, shared_down;   // shared expert: [fs, d], [fs, d], [d, fs]
    struct tensor shared_expert_gate;  // [1, d]: the shared expert's output times sigmoid(x . w)

    // Gated DeltaNet (linear_attn), layers with layer_linear. conv_dim = 2 nk dk + nv dv.
    struct tensor gdn_qkv;           // [conv_dim, d] rows [q | k | v], head-major (Qwen3.5)
    struct tensor gdn_z;             // [nv dv, d] (Qwen3.5)
    struct tensor gdn_b, gdn_a;      // [nv, d] each (Qwen3.5)
    struct tensor gdn_qkvz;          // [2 nk dk + 2 nv dv, d] grouped by key head (Qwen3-Next)
    struct tensor gdn_ba;            // [2 nv, d] grouped by key head (Qwen3-Next)
    struct tensor gdn_conv;          // [conv_dim, 1, K] depthwise causal conv taps
    struct tensor gdn_a_log;         // [nv] decay rate: g = -exp(A_log) softplus(a + dt_bias)
    struct tensor gdn_dt_bias;       // [nv]
    struct tensor gdn_norm;          // [dv] gated RMSNorm weight (plain w, not 1 + w)
    struct tensor gdn_out;           // [d, nv dv] out_proj
};

/* The MTP head's own tensors (its decoder layers are in model.layers after the main ones). */
struct mtp_weights {
    struct tensor norm_embed;        // [d] pre_fc_norm_embedding ((1 + w) norm)
    struct tensor norm_hidden;       // [d] pre_fc_norm_hidden
    struct tensor fc;                // [d, 2d]: concat[embedding, hidden] -> d
    struct tensor norm;              // [d] final norm before the shared lm_head
};

/* A rank's share of a sharded model (model/shard.h); n_ranks 0: the whole model. */
struct model_shard {
    int  rank;
    int  n_ranks;
    bool expert_parallel;            // MoE experts whole per rank; the others' tensors are absent
    int  vocab0;                     // first vocabulary id of this rank's embedding / lm_head rows
    int  n_vocab_local;              // lm_head rows (ids past n_vocab: zero padding); the embedding
                                     // has one more zero row, for other ranks' tokens
};

struct arch;
struct model_file;
struct qweight;
struct quant_cfg;

struct model {
    struct hparams          hp;
    const struct arch      *arch;
    struct arch_features    f;
    struct tensor           tok_embed;      // [n_vocab, d]
    struct tensor           out_norm;       // [d]
    struct tensor           lm_head;        // [n_vocab, d]; aliases tok_embed when tied
    struct layer_weights   *layers;         // [n_layers + hp.n_mtp_layers] (MTP layers last)
    struct mtp_weights      mtp;            // bound when has_mtp
    bool                    has_mtp;        // the checkpoint holds the mtp.* tensors (kept, not run)
    bool                    saved_as_base;  // tensor names lack "model.": saved by the base model
                                            // (Qwen3Model, sentence-transformers), an embedder
    struct model_file      *files;          // mmapped safetensors, owned
    struct buffer           repacked;       // host copies of re-laid-out weights (weights_repack_hybrid);
                                            // data owned (free), NULL when none
    struct buffer          *dev_weights;    // synthesized weights in backend memory, owned (NULL otherwise);
                                            // freed through dev_weights->owner, which must outlive the model
    char                   *dir;            // model directory, owned
    uint64_t                n_params;
    uint64_t                weight_bytes;           // quantized weights: packed words + scales + biases
    struct qweight         *qw;             // descriptors of the MLX-quantized weights (tensor.q points here), owned
    int                     n_qw;           // quantized weight tensors (0: a float checkpoint)
    struct qweight         *qw_split;       // descriptors of the row blocks weights_repack_hybrid cut from
                                            // quantized projections (scales' rows follow), owned; NULL if none
    struct quant_cfg       *quant;          // config.json's quantization block (model/quant_load.h), owned; NULL if none
    struct model_shard      shard;          // a rank's model: its share (hp holds the rank's local counts)
};

enum status model_load(const char *dir, struct model **out);
/* An empty model of these hyper-parameters (layers and expert arrays allocated, no weights bound):
 * for the loaders in model/ (model.c, synthesis, shard.c). */
struct model *model_alloc(const struct hparams *hp, const struct arch_features *f, const struct arch *a);
/* False for a base model saved without lm_head (e.g. Qwen3Model): hidden states only, no logits. */
static inline bool model_has_lm_head(const struct model *m) { return m->lm_head.buf != NULL; }
/* True when the checkpoint is an embedder by default: a base-model architecture ("Qwen3Model"), no
 * lm_head, or tensors saved by the base model (no "model." prefix: how Qwen3-Embedding ships). The
 * server then runs it for embeddings (docs/server.md, "Embeddings"). */
bool model_is_embedder(const struct model *m);
/* Lets the backend make weights usable (device copies, repacking). Call once per backend. */
enum status model_prepare(struct model *m, struct backend *be);
void        model_free(struct model *m);

/* A model with random bf16 weights in host memory (no files): config.json-style file at
 * config_json_path (with "architectures"); same values as `cairn synth` with the same seed.
 * Used by engine tests and synthetic benchmarks. */
enum status model_synthesize(const char *config_json_path, uint64_t seed, struct model **out);
/* The same weights, made where backend be computes: when be has fill_synthetic (cuda) they are
 * allocated in its memory (one buffer_new) and filled there, so no host copy ever exists and an
 * 8B-30B shape needs no disk and no host RAM; otherwise (be NULL, ref, cpu) in host memory as
 * model_synthesize does, filled by several threads. Call model_prepare(m, be) afterwards as for a
 * loaded model (nothing to do for device weights). be must outlive the model. ENOMEM (logged with
 * the sizes) when the backend's memory cannot hold the weights. */
enum status model_synthesize_on(const char *config_json_path, uint64_t seed, struct backend *be, struct model **out);
/* Synthetic MLX-quantized weights (benchmarks of quantized shapes without a checkpoint): every
 * matrix MLX would quantize (2-D, not a norm, inputs a multiple of the group) as random codes in
 * format q, with scales and biases that keep the values near synth's; the rest as
 * model_synthesize_on. Always in host memory (model_prepare moves them). q NULL: exactly
 * model_synthesize_on. EINVAL (logged) for a format MLX does not define. */
struct synth_quant { enum qmode mode; int bits, group_size; };
enum status model_synthesize_quant(const char *config_json_path, uint64_t seed, struct backend *be,
                                   const struct synth_quant *q, struct model **out);

/* KV cache bytes per token for this model and KV dtype (attention layers only, K and V). */
size_t model_kv_bytes_per_token(const struct model *m, enum dtype kv_dtype);
/* Recurrent state bytes of one sequence (Gated DeltaNet layers: the conv state, (K-1) inputs of
 * conv_dim channels in conv_dtype, and the f32 delta-rule state nv * dk * dv); 0 without them. */
size_t model_seq_state_bytes(const struct hparams *hp, enum dtype conv_dtype);
/* Bytes of the conv state / of the recurrent (SSM) state of one Gated DeltaNet layer, one sequence. */
size_t model_gdn_conv_state_bytes(const struct hparams *hp, enum dtype conv_dtype);
size_t model_gdn_ssm_state_bytes(const struct hparams *hp);

#endif
