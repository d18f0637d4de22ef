// weights.h: a run's weights in and out of safetensors files: --init-from (by tensor name) and
// the metadata --save-safetensors writes (a classifier's input and normalisation; a language
// model's sizes and vocabulary, as nanoGPT's checkpoints name them).
//
// Defines: ct_run_init_from, ct_run_st_meta, ct_gpt_st_meta, ct_gpt_st_read.
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
// The reverse, for a reader of such a file (cltrain-generate): *g (vocab set) and the byte
// value of each token, vocab[0..g->vocab). CT_ERR_FORMAT, one line naming `name` and the key,
// when a key is missing (a file that is not a language model's) or its value is not a model's:
// sizes out of range, heads that do not divide the channels, a vocabulary that is not
// vocab_size distinct byte values.
ct_status ct_gpt_st_read(const ct_st_file *f, const char *name, ct_gpt_config *g,
                         uint8_t *vocab);

#endif
