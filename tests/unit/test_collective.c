/* The in-process collective (dist/collective.h) and the rank threads (dist/ranks.h): every rank
 * gets the sum over ranks in rank order, bit for bit the same on every rank; gathered column
 * blocks land at their rank's columns, the last one clipped; repeated calls (the barriers between
 * phases) give the same answer. */
#include <stdint.h>

#include "base/log.h"
#include "base/rng.h"
#include "dist/collective.h"
#include "dist/ranks.h"
#include "harness.h"

#define N_RANKS 3
#define ROWS    5
#define COLS    7
#define REPEATS 50

struct world {
    struct collective *c[N_RANKS];
    float              in[N_RANKS][ROWS * COLS];     // each rank's input
    float              sum[N_RANKS][ROWS * COLS];    // all_reduce_sum's output per rank
    float              gathered[N_RANKS][ROWS * 20]; // all_gather_cols' output per rank (out is [ROWS, 20])
};

static struct tensor host_f32(float *p, int64_t cols, int64_t rows, struct buffer *b)
{
    *b = (struct buffer){ .kind = BUF_HOST, .data = p, .bytes = sizeof(float) * (size_t)(cols * rows) };
    return tensor_2d(DTYPE_F32, cols, rows, b, 0);
}

static void on_rank(void *ctx, int r)
{
    struct world *w = ctx;
    for (int rep = 0; rep < REPEATS; rep++) {
        struct buffer b1, b2, b3;
        memcpy(w->sum[r], w->in[r], sizeof w->sum[r]);
        struct tensor t = host_f32(w->sum[r], COLS, ROWS, &b1);
        collective_all_reduce_sum(w->c[r], NULL, &t);
        // blocks of 7 columns from 3 ranks into 20 columns: the last rank's 7th column is padding
        struct tensor in = host_f32(w->in[r], COLS, ROWS, &b2), out = host_f32(w->gathered[r], 20, ROWS, &b3);
        collective_all_gather_cols(w->c[r], NULL, &out, &in);
    }
}

TEST(sum_and_gather)
{
    static struct world w;
    ASSERT(collective_threads_new(N_RANKS, w.c) == STATUS_OK);
    struct rng g;
    rng_seed(&g, 7);
    for (int r = 0; r < N_RANKS; r++)
        for (int i = 0; i < ROWS * COLS; i++)   // magnitudes apart, so the summation order shows in the bits
            w.in[r][i] = (rng_uniform(&g) - 0.5f) * (r == 1 ? 1e8f : 1.0f);
    struct ranks *rk;
    ASSERT(ranks_new(N_RANKS, &rk) == STATUS_OK);
    ranks_run(rk, on_rank, &w);
    ranks_run(rk, on_rank, &w);   // a second step on the same threads
    ranks_free(rk);
    int bad_sum = 0, bad_gather = 0;
    for (int r = 0; r < N_RANKS; r++)
        for (int i = 0; i < ROWS * COLS; i++) {
            float want = (w.in[0][i] + w.in[1][i]) + w.in[2][i];
            bad_sum += memcmp(&w.sum[r][i], &want, sizeof want) != 0;
        }
    for (int r = 0; r < N_RANKS; r++)
        for (int row = 0; row < ROWS; row++)
            for (int col = 0; col < 20; col++)
                bad_gather += w.gathered[r][row * 20 + col] != w.in[col / COLS][row * COLS + col % COLS];
    EXPECTF(bad_sum == 0, "%d sums differ from (r0 + r1) + r2", bad_sum);
    EXPECTF(bad_gather == 0, "%d gathered values misplaced", bad_gather);
    collective_free_group(w.c, N_RANKS);
}

TEST(bad_rank_count)
{
    struct collective *c[1];
    EXPECT(collective_threads_new(0, c) == STATUS_EINVAL);
    EXPECT(collective_threads_new(COLLECTIVE_MAX_RANKS + 1, c) == STATUS_EINVAL);
    struct ranks *rk;
    EXPECT(ranks_new(0, &rk) == STATUS_EINVAL && rk == NULL);
}

int main(void)
{
    log_init_from_env();
    RUN(sum_and_gather);
    RUN(bad_rank_count);
    return test_summary();
}
