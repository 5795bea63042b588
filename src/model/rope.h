/* rope: rotary-embedding frequency tables, computed on the host exactly as transformers does
 * (rope_init_functions: default, linear, dynamic, llama3, yarn).
 *
 * The forward pass uploads the table once per rope configuration (and again per step only for
 * dynamic NTK scaling, whose base depends on the sequence length).
 *
 *     float inv_freq[64]; float mscale;
 *     rope_inv_freq(&hp->rope, rot_dim, hp->max_pos, 0, inv_freq, &mscale);
 */
#ifndef CAIRN_MODEL_ROPE_H
#define CAIRN_MODEL_ROPE_H

#include "model/model.h"

/* Fills inv_freq[rot_dim / 2] and the attention factor that multiplies cos and sin.
 * max_pos: the model's max_position_embeddings; seq_len: longest sequence of the step (dynamic
 * scaling only; 0 otherwise). */
void rope_inv_freq(const struct rope_cfg *rc, int rot_dim, int max_pos, int seq_len, float *inv_freq,
                   float *mscale);

#endif
