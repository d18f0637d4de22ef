// generate.c: seeded autoregressive sampling from a language model. See generate.h.
#include "cltrain/generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void ct_generate_opts_defaults(ct_generate_opts *o) {
  memset(o, 0, sizeof *o);
  o->temperature = 0.8;
  o->top_k = 40;
  o->seed = 1;
}

uint64_t ct_generate_rng(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// (value, token id) pairs: the larger value first, then the lower id.
static int by_value_then_id(const void *pa, const void *pb) {
  const double *a = pa, *b = pb;
  if (a[0] != b[0]) return a[0] > b[0] ? -1 : 1;
  return (a[1] > b[1]) - (a[1] < b[1]);
}

int ct_generate_pick(const float *logits, int vocab, double temperature, int top_k,
                     uint64_t *rng, double *work) {
  // the draw first: token i uses draw i whatever happens below
  double u = (double)(ct_generate_rng(rng) >> 11) * 0x1.0p-53;
  int best = 0;
  for (int i = 0; i < vocab; i++) {
    if (!isfinite(logits[i])) return -1;
    if (logits[i] > logits[best]) best = i;
  }
  if (temperature <= 0) return best;
  // the k-th place (value, id): a token is kept when it comes before it or is it
  double kv = -INFINITY, kid = (double)vocab;
  if (top_k > 0 && top_k < vocab) {
    for (int i = 0; i < vocab; i++) work[2 * i] = logits[i], work[2 * i + 1] = i;
    qsort(work, (size_t)vocab, 2 * sizeof *work, by_value_then_id);
    kv = work[2 * (top_k - 1)], kid = work[2 * (top_k - 1) + 1];
  }
  double m = (double)logits[best] / temperature, sum = 0;
  for (int i = 0; i < vocab; i++) {
    double l = logits[i];
    int kept = l > kv || (l == kv && i <= kid);
    work[i] = kept ? exp(l / temperature - m) : 0;
    sum += work[i];
  }
  double target = u * sum, cum = 0;
  int last = best;
  for (int i = 0; i < vocab; i++) {
    if (work[i] <= 0) continue;
    cum += work[i];
    last = i;
    if (target < cum) return i;
  }
  return last;   // (rounding: u * sum at the very top)
}

// The model's window size and vocabulary, when it is a language model.
static ct_status lm_sizes(const ct_model *m, int *T, int *V) {
  const ct_arch *a = &m->arch;
  const ct_shape *in = &a->values[0].shape;
  if (!m->dev || !in->is_int || in->nd != 1 || a->labels_per_sample != in->d[0] ||
      a->classes < 1 || ct_shape_count(&a->values[a->logits].shape) !=
                            (size_t)in->d[0] * (size_t)a->classes)
    return CT_FAIL(CT_ERR_USAGE, "generation: '%s' is not a language model", a->text);
  *T = in->d[0], *V = a->classes;
  return CT_OK;
}

ct_status ct_generate(ct_model *model, const int *prompt, int n_prompt, const ct_generate_opts *o,
                      int *out) {
  int T = 0, V = 0;
  CT_TRY(lm_sizes(model, &T, &V));
  if (n_prompt < 1) return CT_FAIL(CT_ERR_USAGE, "generation: the prompt is empty");
  if (o->tokens < 0 || o->top_k < 0 || !(o->temperature >= 0) || !isfinite(o->temperature))
    return CT_FAIL(CT_ERR_USAGE, "generation: tokens %d, top-k %d, temperature %g: each must be "
                   ">= 0 (and finite)", o->tokens, o->top_k, o->temperature);
  for (int i = 0; i < n_prompt; i++)
    if (prompt[i] < 0 || prompt[i] >= V)
      return CT_FAIL(CT_ERR_USAGE, "generation: prompt token %d is %d, outside the vocabulary "
                     "0..%d", i, prompt[i], V - 1);
  if (o->tokens == 0) return CT_OK;
  size_t Ts = (size_t)T, Vs = (size_t)V;
  int32_t *x = calloc(Ts, sizeof *x);
  int *y = calloc(Ts, sizeof *y);   // targets: unused by a forward pass, but valid ids
  float *row = malloc(Vs * sizeof *row);
  double *work = malloc(2 * Vs * sizeof *work);
  ct_status st = CT_OK;
  if (!x || !y || !row || !work) st = CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  uint64_t rng = o->seed;
  for (int i = 0; i < o->tokens && st == CT_OK; i++) {
    // the window: the last min(len, T) tokens of prompt + out[0..i), padded with 0
    int len = n_prompt + i, n = len < T ? len : T;
    for (int p = 0; p < n; p++) {
      int at = len - n + p;
      x[p] = at < n_prompt ? prompt[at] : out[at - n_prompt];
    }
    for (int p = n; p < T; p++) x[p] = 0;
    st = ct_model_set_batch(model, (const float *)(const void *)x, y, 1);
    if (st == CT_OK) st = ct_model_forward(model, 1, 0, 0);
    if (st != CT_OK) break;
    cl_int err = clEnqueueReadBuffer(model->dev->queue, model->logits, CL_TRUE,
                                     (size_t)(n - 1) * Vs * sizeof *row, Vs * sizeof *row, row, 0,
                                     NULL, NULL);
    if (err != CL_SUCCESS) {
      st = CT_FAIL(err == CL_OUT_OF_HOST_MEMORY ? CT_ERR_NOMEM : CT_ERR_CL,
                   "clEnqueueReadBuffer(logits of position %d) failed: %s", n - 1,
                   ct_cl_errname(err));
      break;
    }
    int tok = ct_generate_pick(row, V, o->temperature, o->top_k, &rng, work);
    if (tok < 0) {
      st = CT_FAIL(CT_ERR_NONFINITE, "generation: the logits of new token %d are not finite "
                   "(are the weights?)", i);
      break;
    }
    out[i] = tok;
    if (o->emit) st = o->emit(o->ctx, tok);
  }
  free(x), free(y), free(row), free(work);
  return st;
}
