// weights.h: a run's weights in and out of safetensors files: --init-from (by tensor name) and
// the metadata --save-safetensors writes (a classifier's input and normalisation; a language
// model's sizes and vocabulary, as nanoGPT's checkpoints name them).
//
// Defines: ct_run_init_from, ct_run_st_meta, ct_gpt_st_meta.
#ifndef CLTRAIN_WEIGHTS_H
#define CLTRAIN_WEIGHTS_H

#include "cltrain/export.h"
#include "cltrain/gpt.h"
#include "cltrain/train_state.h"

// s->host_params from the safetensors file at path: every tensor of the model's table by name
// and shape; a language model's file must also hold the run's vocabulary (its "vocab"
// metadata, when present). CT_ERR_IO / CT_ERR_FORMAT, one line naming the file and the tensor.
ct_status ct_run_init_from(ct_run_state *s, const char *path);
// The metadata pairs of the run's model for ct_safetensors_build.
void ct_run_st_meta(const ct_run_state *s, ct_st_meta *m);
// A language model's: n_layer, n_head, n_embd, block_size, vocab_size and vocab (a JSON list
// of the byte values, in token order).
void ct_gpt_st_meta(ct_st_meta *m, const ct_gpt_config *g, const uint8_t *vocab);

#endif
