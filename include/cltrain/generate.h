// generate.h: text out of a language model (gpt.h): seeded autoregressive sampling that gives
// the same tokens on every device.
//
// Defines: ct_generate_opts (+ ct_generate_opts_defaults), ct_generate, ct_generate_pick,
// ct_generate_rng.
//
// Each new token is one forward pass over ONE window of the model's T positions: the last
// min(len, T) tokens of the text so far, left-aligned, the rest of the window padded with token
// 0. The attention is causal, so the logits at position min(len, T) - 1 (the row read back) do
// not depend on the padding. The next token is then chosen on the host, in double precision,
// from those V logits (ct_generate_pick):
//   temperature 0   the argmax (the lowest token id on a tie);
//   temperature t   softmax(logits / t) over the top_k largest logits (all when top_k is 0 or
//                   >= V; ties at the k-th place broken by the lower token id), sampled by
//                   inverse transform in token-id order with u in [0, 1) from a splitmix64
//                   stream seeded with opts->seed (the top 53 bits of one draw).
// Every token takes exactly one draw (also at temperature 0), so token i always uses draw i.
// Nothing but the logits comes from the device: devices whose logits round differently give
// different text only where a draw lands within that rounding of a boundary between two
// tokens' cumulative probabilities (or two top logits tie within it at temperature 0).
#ifndef CLTRAIN_GENERATE_H
#define CLTRAIN_GENERATE_H

#include <stdint.h>

#include "cltrain/model.h"

typedef struct {
  int tokens;            // new tokens to generate (>= 0)
  double temperature;    // >= 0; 0: greedy
  int top_k;             // >= 0; 0: every token
  uint64_t seed;         // the sampling stream's seed
  // Called with each new token as soon as it is chosen (streaming output); NULL: none. A
  // failure it returns ends the generation with that status.
  ct_status (*emit)(void *ctx, int token);
  void *ctx;
} ct_generate_opts;

// tokens 0, temperature 0.8, top_k 40, seed 1, no emit.
void ct_generate_opts_defaults(ct_generate_opts *o);

// Generates o->tokens token ids after prompt[0..n_prompt) (n_prompt >= 1, ids in [0, V)) into
// out[0..o->tokens). model: a language model (ct_gpt_build: T int token ids in, T rows of V
// logits out) with max_batch >= 1 and its parameters uploaded; generation uses its buffers
// (input, activations, logits) as an evaluation does and leaves its parameters alone.
// CT_ERR_USAGE for a model that is not a language model, an empty prompt, a token out of range
// or bad options; CT_ERR_NONFINITE when a row of logits is not finite; CT_ERR_CL, ... from the
// device.
ct_status ct_generate(ct_model *model, const int *prompt, int n_prompt, const ct_generate_opts *o,
                      int *out);

// The next token from one row of V logits, as described above, taking one draw from *rng.
// work: room for 2 V doubles. Returns the token id, or -1 when a logit is not finite.
int ct_generate_pick(const float *logits, int vocab, double temperature, int top_k,
                     uint64_t *rng, double *work);

// The sampling stream: the next 64 bits of splitmix64 (state += golden gamma, then mixed).
uint64_t ct_generate_rng(uint64_t *state);

#endif
