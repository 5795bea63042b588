/* test_config: config.json parsing in the classic and the transformers 5 forms, family defaults,
 * eos merging, and rejection of unsupported or hostile configs. Expected values are the ones
 * written in each config text; the fixtures part compares with the fixtures' ref.json. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "model/arch.h"
#include "model/config.h"

static struct hparams hp;
static struct arch_features f;

static enum status parse2(const char *text, const char *gen)
{
    const struct arch *a = NULL;
    memset(&hp, 0xab, sizeof hp);   // garbage: the parser must set everything
    return config_parse("test", text, strlen(text), gen, gen ? strlen(gen) : 0, &hp, &f, &a);
}

static enum status parse(const char *text) { return parse2(text, NULL); }

#define BASE(arch) "\"architectures\": [\"" arch "\"], \"vocab_size\": 100, \"hidden_size\": 64, " \
                   "\"intermediate_size\": 96, \"num_hidden_layers\": 4, \"num_attention_heads\": 4, " \
                   "\"num_key_value_heads\": 2, \"max_position_embeddings\": 1024"

TEST(classic_llama3)
{
    EXPECT(parse("{" BASE("LlamaForCausalLM") ", \"rope_theta\": 500000.0, \"rms_norm_eps\": 1e-5,"
                 " \"rope_scaling\": {\"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
                 " \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"},"
                 " \"bos_token_id\": 1, \"eos_token_id\": [2, 7], \"torch_dtype\": \"float16\"}") == STATUS_OK);
    EXPECT(!strcmp(hp.arch, "LlamaForCausalLM"));
    EXPECT(hp.n_vocab == 100 && hp.d_model == 64 && hp.n_layers == 4 && hp.n_heads == 4 && hp.n_kv_heads == 2);
    EXPECT(hp.head_dim == 16 && hp.d_ff == 96 && hp.max_pos == 1024);
    EXPECT(hp.rope.theta == 500000.0f && hp.rope.scaling == ROPE_SCALING_LLAMA3 && hp.rope.factor == 8.0f);
    EXPECT(hp.rope.low_freq_factor == 1.0f && hp.rope.high_freq_factor == 4.0f && hp.rope.orig_max_pos == 8192);
    EXPECT(hp.norm_eps == 1e-5f && hp.dtype == DTYPE_F16 && !hp.tie_embed && hp.partial_rotary == 1.0f);
    EXPECT(hp.bos_id == 1 && hp.n_eos == 2 && hp.eos_ids[0] == 2 && hp.eos_ids[1] == 7);
    EXPECT(fabsf(hp.attn_scale - 0.25f) < 1e-7f && hp.sliding_window == 0 && hp.n_experts == 0);
    EXPECT(f.act == ACT_SILU && !f.qk_norm && !f.qkv_bias && !f.moe);
    // the rope of sliding layers defaults to the global one
    EXPECT(hp.rope_local.theta == hp.rope.theta && hp.rope_local.scaling == hp.rope.scaling);
}

TEST(classic_type_key_and_linear)
{
    EXPECT(parse("{" BASE("LlamaForCausalLM") ", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2}}") == STATUS_OK);
    EXPECT(hp.rope.scaling == ROPE_SCALING_LINEAR && hp.rope.factor == 2.0f && hp.rope.theta == 10000.0f);
    EXPECT(parse("{" BASE("LlamaForCausalLM") ", \"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 2,"
                 " \"original_max_position_embeddings\": 512}}") == STATUS_OK);
    // transformers ignores original_max_position_embeddings for dynamic NTK
    EXPECT(hp.rope.scaling == ROPE_SCALING_DYNAMIC && hp.rope.orig_max_pos == 0);
    EXPECT(parse("{" BASE("LlamaForCausalLM") ", \"rope_scaling\": {\"rope_type\": \"default\"}}") == STATUS_OK);
    EXPECT(hp.rope.scaling == ROPE_SCALING_NONE);
}

TEST(rope_parameters_v5)
{
    EXPECT(parse("{" BASE("Qwen3ForCausalLM") ", \"head_dim\": 32, \"dtype\": \"bfloat16\","
                 " \"rope_parameters\": {\"rope_type\": \"yarn\", \"rope_theta\": 1000000.0, \"factor\": 4.0,"
                 " \"original_max_position_embeddings\": 256, \"beta_fast\": 32.0, \"beta_slow\": 1.0,"
                 " \"partial_rotary_factor\": 0.5}}") == STATUS_OK);
    EXPECT(hp.rope.theta == 1000000.0f && hp.rope.scaling == ROPE_SCALING_YARN && hp.rope.factor == 4.0f);
    EXPECT(hp.rope.orig_max_pos == 256 && hp.rope.beta_fast == 32.0f && hp.rope.beta_slow == 1.0f && hp.rope.truncate);
    EXPECT(hp.partial_rotary == 0.5f && hp.head_dim == 32 && hp.dtype == DTYPE_BF16);
    EXPECT(fabsf(hp.attn_scale - 1.0f / sqrtf(32.0f)) < 1e-7f && f.qk_norm);
    EXPECT(parse("{" BASE("Qwen3ForCausalLM") ", \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 5e6}}") == STATUS_OK);
    EXPECT(hp.rope.theta == 5e6f && hp.rope.scaling == ROPE_SCALING_NONE);
}

TEST(gemma3_classic_and_v5)
{
    // classic: pattern 6 (every 6th layer global), rope_local_base_freq, scaled global rope
    EXPECT(parse("{\"architectures\": [\"Gemma3ForCausalLM\"], \"vocab_size\": 100, \"hidden_size\": 64,"
                 " \"intermediate_size\": 96, \"num_hidden_layers\": 12, \"num_attention_heads\": 4,"
                 " \"num_key_value_heads\": 1, \"head_dim\": 32, \"sliding_window_pattern\": 6,"
                 " \"sliding_window\": 512, \"rope_theta\": 1000000.0, \"rope_local_base_freq\": 10000.0,"
                 " \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 8.0},"
                 " \"query_pre_attn_scalar\": 256, \"final_logit_softcapping\": 30.0,"
                 " \"hidden_activation\": \"gelu_pytorch_tanh\"}") == STATUS_OK);
    for (int i = 0; i < 12; i++) EXPECTF(hp.layer_sliding[i] == (i != 5 && i != 11), "layer %d", i);
    EXPECT(hp.sliding_window == 512 && hp.rope_local.theta == 10000.0f && hp.rope_local.scaling == ROPE_SCALING_NONE);
    EXPECT(hp.rope.theta == 1e6f && hp.rope.scaling == ROPE_SCALING_LINEAR && hp.rope.factor == 8.0f);
    EXPECT(hp.attn_scale == 1.0f / 16.0f && hp.final_softcap == 30.0f && hp.attn_softcap == 0);
    EXPECT(hp.tie_embed && hp.bos_id == 2 && hp.n_eos == 1 && hp.eos_ids[0] == 1);   // Gemma3TextConfig defaults
    EXPECT(f.act == ACT_GELU_TANH && f.norm_plus_one && f.sandwich_norm && f.embed_scale && f.qk_norm);
    // transformers 5: layer_types and per-layer-type rope_parameters
    EXPECT(parse("{\"architectures\": [\"Gemma3ForCausalLM\"], \"vocab_size\": 100, \"hidden_size\": 64,"
                 " \"intermediate_size\": 96, \"num_hidden_layers\": 3, \"num_attention_heads\": 4,"
                 " \"num_key_value_heads\": 2, \"head_dim\": 32, \"sliding_window\": 16,"
                 " \"layer_types\": [\"full_attention\", \"sliding_attention\", \"sliding_attention\"],"
                 " \"rope_parameters\": {\"full_attention\": {\"rope_type\": \"linear\", \"factor\": 8.0,"
                 " \"rope_theta\": 1000000.0}, \"sliding_attention\": {\"rope_type\": \"default\", \"rope_theta\": 10000.0}},"
                 " \"tie_word_embeddings\": false, \"eos_token_id\": [1, 50]}") == STATUS_OK);
    EXPECT(!hp.layer_sliding[0] && hp.layer_sliding[1] && hp.layer_sliding[2] && hp.sliding_window == 16);
    EXPECT(hp.rope.theta == 1e6f && hp.rope.scaling == ROPE_SCALING_LINEAR && hp.rope.factor == 8.0f);
    EXPECT(hp.rope_local.theta == 1e4f && hp.rope_local.scaling == ROPE_SCALING_NONE);
    EXPECT(!hp.tie_embed && hp.n_eos == 2 && hp.eos_ids[1] == 50 && hp.attn_scale == 1.0f / 16.0f);
    // the multimodal wrapper: dims in text_config
    EXPECT(parse("{\"architectures\": [\"Gemma3ForConditionalGeneration\"], \"eos_token_id\": [1, 106],"
                 " \"text_config\": {\"vocab_size\": 262208, \"hidden_size\": 64, \"intermediate_size\": 96,"
                 " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2,"
                 " \"head_dim\": 32}, \"vision_config\": {\"hidden_size\": 1152}}") == STATUS_OK);
    EXPECT(hp.n_vocab == 262208 && hp.n_layers == 2 && hp.n_eos == 2 && hp.eos_ids[1] == 106 && hp.tie_embed);
}

TEST(tie_defaults_and_eos_merge)
{
    EXPECT(parse("{" BASE("Qwen3ForCausalLM") "}") == STATUS_OK);
    EXPECT(!hp.tie_embed && hp.bos_id == -1 && hp.n_eos == 0);
    EXPECT(parse("{" BASE("Qwen3ForCausalLM") ", \"tie_word_embeddings\": true}") == STATUS_OK);
    EXPECT(hp.tie_embed);
    EXPECT(parse2("{" BASE("Qwen2ForCausalLM") ", \"eos_token_id\": 5}",
                  "{\"bos_token_id\": 4, \"eos_token_id\": [6, 5, 9, 1000]}") == STATUS_OK);
    EXPECT(hp.bos_id == 4 && hp.n_eos == 3 && hp.eos_ids[0] == 5 && hp.eos_ids[1] == 6 && hp.eos_ids[2] == 9);
    EXPECT(f.qkv_bias && !f.qk_norm);
    EXPECT(parse2("{" BASE("Qwen2ForCausalLM") "}", "{\"eos_token_id\": [1,2") == STATUS_EFORMAT);
}

/* generation_config.json's sampling fields: the server's defaults for omitted request fields. */
TEST(generation_defaults)
{
    const char *cfg = "{" BASE("Qwen3ForCausalLM") "}";
    EXPECT(parse2(cfg, NULL) == STATUS_OK);
    EXPECT(hp.gen.set == 0);
    // Qwen3's published file
    EXPECT(parse2(cfg, "{\"do_sample\": true, \"temperature\": 0.6, \"top_k\": 20, \"top_p\": 0.95, "
                       "\"eos_token_id\": [151645, 151643]}") == STATUS_OK);
    EXPECT(hp.gen.set == (GEN_TEMPERATURE | GEN_TOP_K | GEN_TOP_P));
    EXPECT(hp.gen.temperature == 0.6f && hp.gen.top_k == 20 && hp.gen.top_p == 0.95f);
    EXPECT(parse2(cfg, "{\"min_p\": 0.05, \"repetition_penalty\": 1.05, \"top_k\": 0}") == STATUS_OK);
    EXPECT(hp.gen.set == (GEN_MIN_P | GEN_REPETITION_PENALTY | GEN_TOP_K));
    EXPECT(hp.gen.min_p == 0.05f && hp.gen.repetition_penalty == 1.05f && hp.gen.top_k == 0);
    // do_sample false: greedy, whatever the other fields say (transformers' generate)
    EXPECT(parse2(cfg, "{\"do_sample\": false, \"temperature\": 0.7, \"top_p\": 0.8}") == STATUS_OK);
    EXPECT(hp.gen.set == GEN_TEMPERATURE && hp.gen.temperature == 0.0f);
    // values a request could not send are left out, and the model still loads
    EXPECT(parse2(cfg, "{\"temperature\": -1, \"top_p\": 0, \"top_k\": 2.5, \"min_p\": \"x\", "
                       "\"repetition_penalty\": 0}") == STATUS_OK);
    EXPECT(hp.gen.set == 0);
    EXPECT(parse2(cfg, "{\"temperature\": 2.5, \"top_p\": 1.5, \"top_k\": -3, \"min_p\": 1.1}") == STATUS_OK);
    EXPECT(hp.gen.set == 0);
    EXPECT(parse2(cfg, "{\"temperature\": 0, \"top_p\": 1, \"top_k\": 40.0}") == STATUS_OK);
    EXPECT(hp.gen.set == (GEN_TEMPERATURE | GEN_TOP_P | GEN_TOP_K) && hp.gen.top_k == 40 && hp.gen.temperature == 0.0f);
}

TEST(sliding_windows)
{
    EXPECT(parse("{" BASE("MistralForCausalLM") ", \"sliding_window\": 4096}") == STATUS_OK);
    for (int i = 0; i < 4; i++) EXPECT(hp.layer_sliding[i]);
    EXPECT(hp.sliding_window == 4096);
    EXPECT(parse("{" BASE("MistralForCausalLM") ", \"sliding_window\": null}") == STATUS_OK);
    EXPECT(hp.sliding_window == 0 && !hp.layer_sliding[0]);
    // Qwen: a window only with use_sliding_window, from max_window_layers on
    EXPECT(parse("{" BASE("Qwen2ForCausalLM") ", \"sliding_window\": 131072, \"use_sliding_window\": false}") == STATUS_OK);
    EXPECT(hp.sliding_window == 0 && !hp.layer_sliding[3]);
    EXPECT(parse("{" BASE("Qwen2ForCausalLM") ", \"sliding_window\": 64, \"use_sliding_window\": true,"
                 " \"max_window_layers\": 2}") == STATUS_OK);
    EXPECT(!hp.layer_sliding[1] && hp.layer_sliding[2] && hp.layer_sliding[3] && hp.sliding_window == 64);
    EXPECT(parse("{" BASE("Qwen3ForCausalLM") ", \"layer_types\": [\"full_attention\", \"full_attention\","
                 " \"full_attention\", \"full_attention\"], \"sliding_window\": null}") == STATUS_OK);
    EXPECT(hp.sliding_window == 0);
    EXPECT(parse("{" BASE("Qwen3ForCausalLM") ", \"layer_types\": [\"sliding_attention\", \"full_attention\","
                 " \"full_attention\", \"full_attention\"], \"sliding_window\": null}") == STATUS_EFORMAT);
}

TEST(qwen3_moe)
{
    EXPECT(parse("{" BASE("Qwen3MoeForCausalLM") ", \"num_experts\": 8, \"num_experts_per_tok\": 2,"
                 " \"moe_intermediate_size\": 32, \"norm_topk_prob\": true, \"decoder_sparse_step\": 2}") == STATUS_OK);
    EXPECT(hp.n_experts == 8 && hp.n_experts_used == 2 && hp.d_ff_expert == 32 && hp.norm_topk && f.moe);
    EXPECT(!hp.layer_moe[0] && hp.layer_moe[1] && !hp.layer_moe[2] && hp.layer_moe[3]);
    EXPECT(parse("{" BASE("Qwen3MoeForCausalLM") ", \"num_local_experts\": 4, \"num_experts_per_tok\": 4,"
                 " \"moe_intermediate_size\": 16, \"mlp_only_layers\": [0, 2]}") == STATUS_OK);
    EXPECT(hp.n_experts == 4 && !hp.norm_topk && !hp.layer_moe[0] && hp.layer_moe[1] && !hp.layer_moe[2] && hp.layer_moe[3]);
    EXPECT(parse("{" BASE("Qwen3MoeForCausalLM") ", \"num_experts\": 8, \"num_experts_per_tok\": 9,"
                 " \"moe_intermediate_size\": 32}") == STATUS_EFORMAT);
    EXPECT(parse("{" BASE("Qwen3MoeForCausalLM") ", \"num_experts\": 8, \"num_experts_per_tok\": 2,"
                 " \"moe_intermediate_size\": 32, \"mlp_only_layers\": [7]}") == STATUS_EFORMAT);
    // all layers sparse: no dense FFN needed
    EXPECT(parse("{\"architectures\": [\"Qwen3MoeForCausalLM\"], \"vocab_size\": 10, \"hidden_size\": 8,"
                 " \"num_hidden_layers\": 1, \"num_attention_heads\": 1, \"num_experts\": 2,"
                 " \"num_experts_per_tok\": 1, \"moe_intermediate_size\": 4}") == STATUS_OK);
}

TEST(unsupported_named)
{
    static const struct { const char *config; enum status want; } cases[] = {
        { "{" BASE("FalconForCausalLM") "}", STATUS_EUNSUPPORTED },
        { "{" BASE("LlamaForCausalLM") ", \"rope_scaling\": {\"rope_type\": \"longrope\", \"factor\": 2}}", STATUS_EUNSUPPORTED },
        { "{" BASE("LlamaForCausalLM") ", \"hidden_act\": \"relu\"}", STATUS_EUNSUPPORTED },
        { "{" BASE("LlamaForCausalLM") ", \"attention_bias\": true}", STATUS_EUNSUPPORTED },
        { "{" BASE("LlamaForCausalLM") ", \"mlp_bias\": true}", STATUS_EUNSUPPORTED },
        { "{" BASE("Qwen3ForCausalLM") ", \"attention_bias\": true}", STATUS_EUNSUPPORTED },
        { "{" BASE("LlamaForCausalLM") ", \"attention_bias\": false}", STATUS_OK },
        { "{" BASE("Qwen3ForCausalLM") ", \"layer_types\": [\"linear_attention\", \"full_attention\","
          " \"full_attention\", \"full_attention\"]}", STATUS_EUNSUPPORTED },
        { "{" BASE("Qwen3ForCausalLM") ", \"quantization_config\": {\"quant_method\": \"fp8\","
          " \"fmt\": \"e4m3\", \"weight_block_size\": [128, 128]}}", STATUS_EUNSUPPORTED },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        EXPECTF(parse(cases[i].config) == cases[i].want, "case %zu: want %s", i, status_str(cases[i].want));
    char list[512];
    arch_list(list, sizeof list);
    EXPECT(strstr(list, "Qwen3MoeForCausalLM") && strstr(list, "Gemma3ForCausalLM") && strstr(list, "MistralForCausalLM"));
}

TEST(hostile_values)
{
    EXPECT(parse("") == STATUS_EFORMAT);
    EXPECT(parse("[]") == STATUS_EFORMAT);
    EXPECT(parse("{\"vocab_size\": 3}") == STATUS_EFORMAT);                       // no architectures
    EXPECT(parse("{\"architectures\": \"LlamaForCausalLM\"}") == STATUS_EFORMAT);  // not a list
    EXPECT(parse("{\"architectures\": [\"LlamaForCausalLM\"]}") == STATUS_EFORMAT);  // no dims
    EXPECT(parse("{" BASE("LlamaForCausalLM") ", \"num_attention_heads\": 0}") == STATUS_EFORMAT);
    EXPECT(parse("{" BASE("LlamaForCausalLM") ", \"num_key_value_heads\": 3}") == STATUS_EFORMAT);
    EXPECT(parse("{" BASE("LlamaForCausalLM") ", \"num_hidden_layers\": 1000}") == STATUS_EFORMAT);
    EXPECT(parse("{" BASE("LlamaForCausalLM") ", \"hidden_size\": \"64\"}") == STATUS_EFORMAT);
    EXPECT(parse("{" BASE("LlamaForCausalLM") ", \"hidden_size\": 65}") == STATUS_EFORMAT);   // 65 / 4 heads
    EXPECT(parse("{" BASE("LlamaForCausalLM") ", \"head_dim\": 15}") == STATUS_EFORMAT);
    EXPECT(parse("{" BASE("LlamaForCausalLM") ", \"vocab_size\": 1e300}") == STATUS_EFORMAT);
    EXPECT(parse("{" BASE("LlamaForCausalLM") ", \"vocab_size\": -5}") == STATUS_EFORMAT);
    EXPECT(parse("{" BASE("LlamaForCausalLM") ", \"intermediate_size\": 0}") == STATUS_EFORMAT);
    EXPECT(parse("{" BASE("LlamaForCausalLM") ", \"rms_norm_eps\": -1}") == STATUS_EFORMAT);
    EXPECT(parse("{" BASE("LlamaForCausalLM") ", \"rope_theta\": 0}") == STATUS_EFORMAT);
    EXPECT(parse("{" BASE("LlamaForCausalLM") ", \"rope_scaling\": {\"rope_type\": \"linear\"}}") == STATUS_EFORMAT);
    EXPECT(parse("{" BASE("LlamaForCausalLM") ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8}}") == STATUS_EFORMAT);
    EXPECT(parse("{" BASE("LlamaForCausalLM") ", \"rope_scaling\": 7}") == STATUS_EFORMAT);
    EXPECT(parse("{" BASE("LlamaForCausalLM") ", \"partial_rotary_factor\": 2}") == STATUS_EFORMAT);
    EXPECT(parse("{" BASE("LlamaForCausalLM") ", \"eos_token_id\": \"</s>\"}") == STATUS_EFORMAT);
    EXPECT(parse("{" BASE("LlamaForCausalLM") ", \"vocab_size\": 5, \"vocab_size\": 6}") == STATUS_EFORMAT);
    EXPECT(parse("{" BASE("Gemma3ForCausalLM") ", \"query_pre_attn_scalar\": 0}") == STATUS_EFORMAT);
    EXPECT(parse("{" BASE("Gemma3ForCausalLM") ", \"layer_types\": [\"full_attention\"]}") == STATUS_EFORMAT);
    EXPECT(parse("{\"architectures\": [\"Gemma3ForConditionalGeneration\"], \"text_config\": 5}") == STATUS_EFORMAT);
    EXPECT(parse("{" BASE("LlamaForCausalLM") ", \"eos_token_id\": [2, 500, -1]}") == STATUS_OK);   // out of vocab: dropped
    EXPECT(hp.n_eos == 1 && hp.eos_ids[0] == 2);
}

TEST(fixture_configs)
{
    // The fixtures' config.json as transformers 5.17 saved them; rope and layer facts from ref.json.
    static const char *names[] = { "llama_rope_llama3", "llama_rope_yarn", "gemma3", "qwen3_moe", "qwen3_moe_b" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char dir[256];
        snprintf(dir, sizeof dir, "tests/model/fixtures/%s", names[i]);
        const struct arch *a;
        enum status st = config_load(dir, &hp, &f, &a);
        EXPECTF(st == STATUS_OK, "%s: %s", names[i], status_str(st));
    }
    EXPECT(config_load("tests/model/fixtures/gemma3", &hp, &f, NULL) == STATUS_OK);
    EXPECT(hp.rope.theta == 1e6f && hp.rope_local.theta == 1e4f && hp.final_softcap == 5.0f);
    EXPECT(hp.attn_scale == 1.0f / sqrtf(24.0f) && hp.sliding_window == 16);
    EXPECT(hp.layer_sliding[0] && hp.layer_sliding[1] && !hp.layer_sliding[2] && hp.layer_sliding[3]);
    EXPECT(config_load("tests/model/fixtures/llama_rope_yarn", &hp, &f, NULL) == STATUS_OK);
    EXPECT(hp.rope.scaling == ROPE_SCALING_YARN && hp.rope.factor == 4.0f && hp.rope.orig_max_pos == 128);
}

#define HYB(arch) "\"architectures\": [\"" arch "\"], \"vocab_size\": 100, \"hidden_size\": 64, " \
                  "\"num_hidden_layers\": 8, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, " \
                  "\"max_position_embeddings\": 1024"

TEST(hybrid_defaults_and_pattern)
{
    // transformers' defaults: head_dim 256, partial rotary 0.25, linear heads 16/32 x 128, conv 4,
    // full attention every 4th layer, gated attention output; Qwen3-Next: 512 experts top 10.
    EXPECT(parse("{" HYB("Qwen3NextForCausalLM") "}") == STATUS_OK);
    EXPECT(hp.head_dim == 256 && fabsf(hp.attn_scale - 1.0f / 16) < 1e-7f && hp.partial_rotary == 0.25f);
    EXPECT(hp.lin_n_k_heads == 16 && hp.lin_n_v_heads == 32 && hp.lin_k_dim == 128 && hp.lin_v_dim == 128);
    EXPECT(hp.lin_conv_kernel == 4 && hp.n_linear_layers == 6 && !hp.layer_linear[3] && !hp.layer_linear[7]);
    EXPECT(hp.layer_linear[0] && hp.layer_linear[6] && f.attn_out_gate && f.gdn_grouped_proj && f.norm_plus_one);
    EXPECT(hp.n_experts == 512 && hp.n_experts_used == 10 && hp.d_ff_shared == 512 && hp.norm_topk && f.moe);
    EXPECT(hp.layer_moe[0] && hp.layer_moe[7] && hp.n_mtp_layers == 0);
    // Qwen3-Next honours norm_topk_prob and decoder_sparse_step / mlp_only_layers
    EXPECT(parse("{" HYB("Qwen3NextForCausalLM") ", \"norm_topk_prob\": false, \"decoder_sparse_step\": 2,"
                 " \"mlp_only_layers\": [1], \"intermediate_size\": 96, \"num_experts\": 8,"
                 " \"num_experts_per_tok\": 2, \"full_attention_interval\": 2}") == STATUS_OK);
    EXPECT(!hp.norm_topk && !hp.layer_moe[0] && !hp.layer_moe[1] && hp.layer_moe[3] && !hp.layer_moe[4]);
    EXPECT(hp.layer_linear[0] && !hp.layer_linear[1] && hp.n_linear_layers == 4);
    // Qwen3.5-MoE always renormalises (its config class drops norm_topk_prob)
    EXPECT(parse("{" HYB("Qwen3_5MoeForCausalLM") ", \"norm_topk_prob\": false, \"head_dim\": 16,"
                 " \"partial_rotary_factor\": 0.5, \"mtp_num_hidden_layers\": 1}") == STATUS_OK);
    EXPECT(hp.norm_topk && hp.n_experts == 256 && hp.n_experts_used == 8 && hp.head_dim == 16);
    EXPECT(hp.partial_rotary == 0.5f && !f.gdn_grouped_proj && hp.n_mtp_layers == 1 && hp.layer_moe[8]);
    // dense Qwen3.5 in its multimodal wrapper: layer_types (legacy names too), rope_parameters
    EXPECT(parse("{\"architectures\": [\"Qwen3_5ForConditionalGeneration\"], \"vision_config\": {},"
                 " \"tie_word_embeddings\": false, \"text_config\": {" HYB("x") ", \"intermediate_size\": 96,"
                 " \"attn_output_gate\": false, \"linear_num_key_heads\": 2, \"linear_num_value_heads\": 6,"
                 " \"layer_types\": [\"linear_attention\", \"full_attention\", \"mamba\", \"attention\","
                 " \"linear_attention\", \"linear_attention\", \"linear_attention\", \"full_attention\"],"
                 " \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 1e7, \"partial_rotary_factor\": 0.25,"
                 " \"mrope_section\": [11, 11, 10], \"mrope_interleaved\": true}}}") == STATUS_OK);
    EXPECT(!strcmp(hp.arch, "Qwen3_5ForConditionalGeneration") && hp.d_ff == 96 && !f.moe && !f.attn_out_gate);
    EXPECT(hp.layer_linear[0] && !hp.layer_linear[1] && hp.layer_linear[2] && !hp.layer_linear[3]);
    EXPECT(hp.n_linear_layers == 5 && hp.rope.theta == 1e7f && hp.lin_n_v_heads == 6);
}

TEST(hybrid_bad_input)
{
    // an unknown layer kind, value heads not a multiple of key heads, no text_config
    EXPECT(parse("{" HYB("Qwen3_5MoeForCausalLM") ", \"layer_types\": [\"linear_attention\", \"full_attention\","
                 " \"sliding_attention\", \"full_attention\", \"full_attention\", \"full_attention\","
                 " \"full_attention\", \"full_attention\"]}") == STATUS_EUNSUPPORTED);
    EXPECT(parse("{" HYB("Qwen3_5MoeForCausalLM") ", \"layer_types\": [\"linear_attention\"]}") == STATUS_EFORMAT);
    EXPECT(parse("{" HYB("Qwen3_5MoeForCausalLM") ", \"linear_num_key_heads\": 3, \"linear_num_value_heads\": 8}") ==
           STATUS_EFORMAT);
    EXPECT(parse("{\"architectures\": [\"Qwen3_5MoeForConditionalGeneration\"], \"vocab_size\": 100,"
                 " \"hidden_size\": 64, \"num_hidden_layers\": 8, \"num_attention_heads\": 4}") == STATUS_EFORMAT);
    EXPECT(parse("{\"architectures\": [\"Qwen3_5ForConditionalGeneration\"], \"text_config\": 3}") == STATUS_EFORMAT);
    // the dense family needs intermediate_size; experts: k <= E; linear dims bounded
    EXPECT(parse("{" HYB("Qwen3_5ForCausalLM") "}") == STATUS_EFORMAT);
    EXPECT(parse("{" HYB("Qwen3_5MoeForCausalLM") ", \"num_experts\": 4, \"num_experts_per_tok\": 5}") == STATUS_EFORMAT);
    EXPECT(parse("{" HYB("Qwen3_5MoeForCausalLM") ", \"linear_conv_kernel_dim\": 0}") == STATUS_EFORMAT);
    EXPECT(parse("{" HYB("Qwen3_5MoeForCausalLM") ", \"attention_bias\": true}") == STATUS_EUNSUPPORTED);
    // the same layer kinds are not accepted by a family without DeltaNet layers
    EXPECT(parse("{" BASE("Qwen3ForCausalLM") ", \"layer_types\": [\"linear_attention\", \"full_attention\","
                 " \"full_attention\", \"full_attention\"]}") == STATUS_EUNSUPPORTED);
}

int main(void)
{
    RUN(classic_llama3);
    RUN(classic_type_key_and_linear);
    RUN(rope_parameters_v5);
    RUN(gemma3_classic_and_v5);
    RUN(tie_defaults_and_eos_merge);
    RUN(generation_defaults);
    RUN(sliding_windows);
    RUN(qwen3_moe);
    RUN(unsupported_named);
    RUN(hostile_values);
    RUN(fixture_configs);
    RUN(hybrid_defaults_and_pattern);
    RUN(hybrid_bad_input);
    return test_summary();
}
