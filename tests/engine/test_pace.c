/* test_pace: the prefill pacing rule (engine/pace.h) on a Qwen3-8B-shaped hparams: token
 * equivalents, nothing paced before both costs are measured, the budget from the auto and fixed
 * targets and the burst share, chunks that fit the budget (shorter deep in a prompt), the 16-token
 * floor when the target cannot be met, and estimates that follow changing step times. */
#include "engine/pace.h"
#include "harness.h"
#include "model/model.h"

static struct hparams qwen3_8b(void)
{
    struct hparams hp = { .d_model = 4096, .n_layers = 36, .n_heads = 32, .n_kv_heads = 8, .head_dim = 128,
                          .d_ff = 12288 };
    return hp;
}

TEST(units_count_attention_pairs)
{
    struct hparams hp = qwen3_8b();
    struct pace p;
    pace_init(&p, &hp, 0);
    // per layer: q/k/v/o 2*4096*(4096+2048) + 2*4096*4096 = 83.9M, FFN 6*4096*12288 = 302M; pairs 4*4096
    double tok = 2.0 * 4096 * (4096 + 2048) + 2.0 * 4096 * 4096 + 6.0 * 4096 * 12288;
    EXPECTF(fabs(p.pair_units - 4.0 * 4096 / tok) < 1e-12, "pair_units %g", p.pair_units);
    EXPECT(fabs(pace_units(&p, 0, 100) - (100 + p.pair_units * 100 * 100)) < 1e-9);
    // a token 30K deep costs about twice a token at the start on this shape
    double deep = pace_units(&p, 30000, 1), shallow = pace_units(&p, 0, 1);
    EXPECTF(deep > 1.9 * shallow && deep < 2.5 * shallow, "deep %g shallow %g", deep, shallow);
}

TEST(not_paced_before_measured_or_when_off)
{
    struct hparams hp = qwen3_8b();
    struct pace p;
    pace_init(&p, &hp, 0);
    EXPECT(pace_budget(&p, 16, 1) < 0);
    pace_observe(&p, 10.0, 16, 0);                   // decode-only step: dec_ms known
    EXPECT(pace_budget(&p, 16, 1) < 0);              // prefill cost still unknown
    pace_observe(&p, 50.0, 16, 100.0);               // mixed step: 40 ms for 100 units
    EXPECT(pace_budget(&p, 16, 1) >= 0);
    EXPECT(pace_budget(&p, 0, 1) < 0);               // no decodes: nobody to pace for
    struct pace off;
    pace_init(&off, &hp, -1);
    pace_observe(&off, 10.0, 16, 0);
    pace_observe(&off, 100.0, 0, 1000.0);
    EXPECT(pace_budget(&off, 16, 1) < 0);
}

TEST(budget_from_targets_and_share)
{
    struct hparams hp = qwen3_8b();
    struct pace p;
    pace_init(&p, &hp, 0);
    pace_observe(&p, 100.0, 0, 1000.0);              // prefill alone: 0.1 ms per unit
    pace_observe(&p, 10.0, 16, 0);                   // decodes alone: 10 ms
    EXPECT(fabs(pace_budget(&p, 16, 1) - 100.0) < 1e-9);    // auto: 2 x 10 ms -> 10 ms of prefill
    EXPECT(fabs(pace_budget(&p, 16, 64) - 700.0) < 1e-9);   // 64 waiting beside 16: 4 x 20 ms
    struct pace f;
    pace_init(&f, &hp, 30.0);
    pace_observe(&f, 100.0, 0, 1000.0);
    pace_observe(&f, 10.0, 16, 0);
    EXPECT(fabs(pace_budget(&f, 16, 1) - 200.0) < 1e-9);    // fixed 30 ms: 20 ms of prefill
}

TEST(chunks_fit_the_budget)
{
    struct hparams hp = qwen3_8b();
    struct pace p;
    pace_init(&p, &hp, 0);
    double b = 500;
    int n0 = pace_cut(&p, &b, 0, 4096);
    EXPECTF(n0 > 400 && n0 <= 500 && b >= 0 && b < pace_units(&p, 0, n0 + 1) - pace_units(&p, 0, n0),
            "n0 %d left %g", n0, b);
    double b2 = 500;
    int n_deep = pace_cut(&p, &b2, 30000, 4096);
    EXPECTF(n_deep < n0 / 1.8 && n_deep >= 16 && b2 >= 0, "deep chunk %d vs %d", n_deep, n0);
    double b3 = 500;
    EXPECT(pace_cut(&p, &b3, 0, 100) == 100 && fabs(b3 - (500 - pace_units(&p, 0, 100))) < 1e-9);
    double b4 = 3;                                   // cannot be met: the floor keeps prompts moving
    EXPECT(pace_cut(&p, &b4, 0, 4096) == PACE_MIN_CHUNK);
    double b5 = 0;
    EXPECT(pace_cut(&p, &b5, 0, 5) == 5);            // a shorter remainder is taken whole
}

TEST(unmeetable_target_gives_zero_budget)
{
    struct hparams hp = qwen3_8b();
    struct pace p;
    pace_init(&p, &hp, 1.0);                         // 1 ms: below the decode step itself
    pace_observe(&p, 100.0, 0, 1000.0);
    pace_observe(&p, 10.0, 16, 0);
    EXPECT(pace_budget(&p, 16, 1) == 0 && p.warned);
}

TEST(estimates_follow_the_steps)
{
    struct hparams hp = qwen3_8b();
    struct pace p;
    pace_init(&p, &hp, 0);
    pace_observe(&p, 10.0, 16, 0);
    for (int i = 0; i < 40; i++) pace_observe(&p, 20.0, 16, 0);
    EXPECTF(fabs(p.dec_ms - 20.0) < 0.01, "dec_ms %g", p.dec_ms);
    for (int i = 0; i < 40; i++) pace_observe(&p, 20.0 + 50.0, 16, 1000.0);   // 50 ms per 1000 units beside decodes
    EXPECTF(fabs(p.ms_per_unit - 0.05) < 1e-4, "ms_per_unit %g", p.ms_per_unit);
}

int main(void)
{
    RUN(units_count_attention_pairs);
    RUN(not_paced_before_measured_or_when_off);
    RUN(budget_from_targets_and_share);
    RUN(chunks_fit_the_budget);
    RUN(unmeetable_target_gives_zero_budget);
    RUN(estimates_follow_the_steps);
    return test_summary();
}
