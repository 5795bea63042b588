#include "model/rope.h"

#include <math.h>

#include "base/log.h"

// Mirrors transformers' modeling_rope_utils: frequencies are computed in float32 from
// base ** (2i / dim), then adjusted per scaling type.
static void rope_default(float theta, int rot_dim, float *inv_freq)
{
    for (int i = 0; i < rot_dim / 2; i++)
        inv_freq[i] = (float)(1.0 / pow((double)theta, (double)(2 * i) / (double)rot_dim));
}

static double yarn_get_mscale(double scale, double mscale)
{
    return scale <= 1.0 ? 1.0 : 0.1 * mscale * log(scale) + 1.0;
}

static double yarn_correction_dim(double n_rot, int dim, double base, double max_pos)
{
    return (dim * log(max_pos / (n_rot * 2.0 * M_PI))) / (2.0 * log(base));
}

static void rope_yarn(const struct rope_cfg *rc, int rot_dim, int max_pos, float *inv_freq, float *mscale)
{
    double factor = rc->factor;
    double orig = rc->orig_max_pos > 0 ? rc->orig_max_pos : max_pos;
    // Like transformers: with an explicit original_max_position_embeddings the scale is the ratio.
    if (rc->orig_max_pos > 0) factor = (double)max_pos / (double)rc->orig_max_pos;
    double attn = rc->attention_factor;
    if (attn <= 0) {
        if (rc->mscale > 0 && rc->mscale_all_dim > 0)
            attn = yarn_get_mscale(factor, rc->mscale) / yarn_get_mscale(factor, rc->mscale_all_dim);
        else
            attn = yarn_get_mscale(factor, 1.0);
    }
    double beta_fast = rc->beta_fast > 0 ? rc->beta_fast : 32.0;
    double beta_slow = rc->beta_slow > 0 ? rc->beta_slow : 1.0;
    double low = yarn_correction_dim(beta_fast, rot_dim, rc->theta, orig);
    double high = yarn_correction_dim(beta_slow, rot_dim, rc->theta, orig);
    if (rc->truncate) {
        low = floor(low);
        high = ceil(high);
    }
    if (low < 0) low = 0;
    if (high > rot_dim - 1) high = rot_dim - 1;
    if (low == high) high += 0.001;
    for (int i = 0; i < rot_dim / 2; i++) {
        float pos_freq = powf(rc->theta, (float)(2 * i) / (float)rot_dim);
        float extrap = 1.0f / pos_freq;
        float interp = 1.0f / ((float)factor * pos_freq);
        float ramp = (float)(((double)i - low) / (high - low));
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        float extrap_factor = 1.0f - ramp;
        inv_freq[i] = interp * (1.0f - extrap_factor) + extrap * extrap_factor;
    }
    *mscale = (float)attn;
}

void rope_inv_freq(const struct rope_cfg *rc, int rot_dim, int max_pos, int seq_len, float *inv_freq,
                   float *mscale)
{
    CHECK(rot_dim > 0 && rot_dim % 2 == 0, "bad rotary dim %d", rot_dim);
    *mscale = 1.0f;
    switch (rc->scaling) {
    case ROPE_SCALING_NONE:
        rope_default(rc->theta, rot_dim, inv_freq);
        return;
    case ROPE_SCALING_LINEAR:
        rope_default(rc->theta, rot_dim, inv_freq);
        for (int i = 0; i < rot_dim / 2; i++) inv_freq[i] /= rc->factor;
        return;
    case ROPE_SCALING_DYNAMIC: {
        // NTK-aware: the base grows once the sequence is longer than the trained context.
        int orig = rc->orig_max_pos > 0 ? rc->orig_max_pos : max_pos;
        double len = seq_len > orig ? seq_len : orig;
        double base = rc->theta * pow(rc->factor * len / orig - (rc->factor - 1.0),
                                      (double)rot_dim / (double)(rot_dim - 2));
        rope_default((float)base, rot_dim, inv_freq);
        return;
    }
    case ROPE_SCALING_LLAMA3: {
        rope_default(rc->theta, rot_dim, inv_freq);
        float orig = (float)rc->orig_max_pos;
        float low_wavelen = orig / rc->low_freq_factor;
        float high_wavelen = orig / rc->high_freq_factor;
        for (int i = 0; i < rot_dim / 2; i++) {
            float f = inv_freq[i];
            float wavelen = 2.0f * (float)M_PI / f;
            float scaled = wavelen > low_wavelen ? f / rc->factor : f;
            if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
                float smooth = (orig / wavelen - rc->low_freq_factor) / (rc->high_freq_factor - rc->low_freq_factor);
                scaled = (1.0f - smooth) * scaled / rc->factor + smooth * scaled;
            }
            inv_freq[i] = scaled;
        }
        return;
    }
    case ROPE_SCALING_YARN:
        rope_yarn(rc, rot_dim, max_pos, inv_freq, mscale);
        return;
    }
    CHECK(0, "bad rope scaling %d", (int)rc->scaling);
}
