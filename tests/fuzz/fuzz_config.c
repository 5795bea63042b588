/* fuzz_config: libFuzzer target for config.json parsing (config_parse).
 * Input: config text, optionally followed by a 0 byte and generation_config.json text. Must never
 * crash; on OK, the invariants later stages rely on must hold.
 *     make fuzz && build-fuzz/fuzz_config -max_total_time=300 tests/fuzz/corpus_config */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/log.h"
#include "model/config.h"

#include "fuzz_quiet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    const uint8_t *nul = memchr(data, 0, size);
    size_t len = nul ? (size_t)(nul - data) : size;
    const char *gen = nul ? (const char *)nul + 1 : NULL;
    size_t gen_len = nul ? size - len - 1 : 0;
    struct hparams hp;
    struct arch_features f;
    const struct arch *a;
    if (config_parse("fuzz", text, len, gen, gen_len, &hp, &f, &a) != STATUS_OK) return 0;
    CHECK(hp.n_layers >= 1 && hp.n_layers <= MODEL_MAX_LAYERS, "layers %d", hp.n_layers);
    CHECK(hp.n_heads >= 1 && hp.n_kv_heads >= 1 && hp.n_heads % hp.n_kv_heads == 0, "heads");
    CHECK(hp.head_dim >= 2 && hp.head_dim % 2 == 0 && hp.d_model >= 1 && hp.n_vocab >= 1, "dims");
    CHECK(hp.n_eos >= 0 && hp.n_eos <= MODEL_MAX_EOS, "eos");
    for (int i = 0; i < hp.n_eos; i++) CHECK(hp.eos_ids[i] >= 0 && hp.eos_ids[i] < hp.n_vocab, "eos id");
    CHECK(hp.rope.theta > 1 && hp.rope_local.theta > 1, "rope theta");
    CHECK(hp.partial_rotary > 0 && hp.partial_rotary <= 1, "partial rotary");
    if (f.moe)
        CHECK(hp.n_experts == 0 || (hp.n_experts_used >= 1 && hp.n_experts_used <= hp.n_experts), "experts");
    return 0;
}
