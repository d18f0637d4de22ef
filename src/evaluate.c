// evaluate.c: the test-set metrics (one table entry per kind of model) and the replicas'
// checks. See evaluate.h.
#include "cltrain/evaluate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cltrain/generate.h"
#include "cltrain/step.h"
#include "cltrain/timer.h"

// ---- classifiers: argmax accuracy -------------------------------------------------------------

static int is_classifier(const ct_arch *arch) {
  return arch->classes >= 2 && arch->labels_per_sample == 1;
}

static void accuracy_format(double v, char *buf, size_t size) { snprintf(buf, size, "%.4f", v); }

static ct_status accuracy_batch(ct_run_state *s, int m, const int *y, float *logits,
                                double sums[2]) {
  int classes = s->arch.classes;
  CT_TRY(ct_model_read_logits(&s->model, m, logits));
  for (int i = 0; i < m; i++) {
    const float *l = logits + (size_t)i * (size_t)classes;
    int best = 0;
    for (int c = 1; c < classes; c++)
      if (l[c] > l[best]) best = c;
    sums[0] += best == y[i];
  }
  sums[1] += m;
  return CT_OK;
}

// ---- language models: the mean cross-entropy per token ---------------------------------------

static int is_language_model(const ct_arch *arch) { return arch->labels_per_sample > 1; }

// The losses of every position of the m windows: sums[0] their sum, sums[1] their count.
static ct_status token_loss_batch(ct_run_state *s, int m, const int *y, float *losses,
                                  double sums[2]) {
  (void)y;
  CT_TRY(ct_model_loss(&s->model, m));
  CT_TRY(ct_model_read_losses(&s->model, m, losses));
  size_t n = ct_model_loss_count(&s->model, m);
  for (size_t i = 0; i < n; i++) sums[0] += losses[i];
  sums[1] += (double)n;
  return CT_OK;
}

static void loss_format(double v, char *buf, size_t size) {
  snprintf(buf, size, "%.5f (perplexity %.3f)", v, exp(v));
}

// ---- the table ------------------------------------------------------------------------------

const ct_eval_metric ct_eval_metrics[] = {
    {.key = "test_accuracy", .label = "test accuracy", .fits = is_classifier,
     .batch = accuracy_batch, .format = accuracy_format},
    {.key = "val_loss", .label = "validation loss", .fits = is_language_model,
     .batch = token_loss_batch, .format = loss_format},
};
const int ct_eval_nmetrics = sizeof ct_eval_metrics / sizeof ct_eval_metrics[0];

ct_status ct_eval_metric_choose(ct_run_state *s) {
  for (int i = 0; i < ct_eval_nmetrics; i++)
    if (ct_eval_metrics[i].fits(&s->arch)) {
      s->metric = &ct_eval_metrics[i];
      return CT_OK;
    }
  return CT_FAIL(CT_ERR_USAGE, "--model: no test metric measures '%s'", s->arch.text);
}

// ---- evaluation -------------------------------------------------------------------------------

// The model's forward pass on m test samples (eval_x, eval_y), without dropout.
static ct_status forward_test(ct_run_state *s, int m) {
  CT_TRY(ct_model_set_batch(&s->model, s->eval_x, s->eval_y, m));
  return ct_model_forward(&s->model, m, 0, 0);
}

// This rank's slice [lo, hi) of the test set, in batches of at most s->micro: sums[2].
static ct_status evaluate_slice(ct_run_state *s, int lo, int hi, double sums[2]) {
  size_t per = (size_t)(s->arch.classes > s->labels ? s->arch.classes : s->labels);
  float *scratch = malloc((size_t)s->micro * per * sizeof *scratch);
  if (!scratch) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  ct_status st = CT_OK;
  for (int b = lo; b < hi && st == CT_OK; b += s->micro) {
    int m = hi - b < s->micro ? hi - b : s->micro;
    for (int i = 0; i < m; i++) s->eval_idx[i] = b + i;
    ct_dataset_gather(&s->test, s->eval_idx, m, s->cfg->norm_mean, s->cfg->norm_std, s->eval_x,
                      s->eval_y);
    st = forward_test(s, m);
    if (st == CT_OK) st = s->metric->batch(s, m, s->eval_y, scratch, sums);
  }
  free(scratch);
  return st;
}

// Rank r takes a contiguous slice, in proportion to the share weights (the same cut on every
// rank), and the sums are summed.
static ct_status evaluate_(ct_run_state *s, double *value) {
  int n = s->test.count, world = s->comm->size, r = s->comm->rank;
  ct_shares_weighted(n, world, s->weights, s->tmp_shares);
  int lo = 0;
  for (int q = 0; q < r; q++) lo += s->tmp_shares[q];
  int hi = lo + s->tmp_shares[r];
  double sums[2] = {0, 0};
  CT_TRY(evaluate_slice(s, lo, hi, sums));
  if (world > 1) CT_TRY(ct_comm_allreduce_double_sum(s->comm, sums, 2));
  *value = sums[1] > 0 ? sums[0] / sums[1] : 0;
  return CT_OK;
}

ct_status ct_evaluate(ct_run_state *s, double *value) {
  double t0 = ct_now();
  ct_status st = evaluate_(s, value);
  s->res->eval_s += ct_now() - t0;
  ct_trace_span(&s->trace, 0, "evaluation", t0, ct_now());
  return st;
}

// ---- replicas -------------------------------------------------------------------------------

// Parameters identical on every rank: compare the checksum of the bytes.
static ct_status check_replicas(ct_run_state *s, const char *when, int *diverged) {
  *diverged = 0;
  if (s->comm->size == 1) return CT_OK;
  CT_TRY(ct_model_download_params(&s->model, s->host_params));
  uint64_t mine = ct_params_checksum(s->host_params, s->arch.param_count);
  uint64_t *all = malloc((size_t)s->comm->size * sizeof *all);
  if (!all) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  int rc = MPI_Allgather(&mine, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, s->comm->comm);
  if (rc != MPI_SUCCESS) {
    free(all);
    return CT_FAIL(CT_ERR_MPI, "MPI_Allgather of parameter checksums failed on rank %d",
                   s->comm->rank);
  }
  for (int r = 1; r < s->comm->size; r++)
    if (all[r] != all[0]) {
      *diverged = 1;
      if (R0)
        fprintf(stderr, "cltrain: replicas differ %s: rank %d has parameter checksum %016llx, "
                "rank 0 %016llx\n", when, r, (unsigned long long)all[r],
                (unsigned long long)all[0]);
    }
  free(all);
  return CT_OK;
}

ct_status ct_replica_resync(ct_run_state *s) {
  CT_TRY(ct_shard_gather_state(s));
  CT_TRY(ct_model_download_params(&s->model, s->host_params));
  CT_TRY(ct_comm_bcast(s->comm, s->host_params, s->arch.param_count * sizeof(float), 0));
  CT_TRY(ct_model_upload_params(&s->model, s->host_params));
  float *state = malloc(s->opt.state_count * sizeof *state + 1);
  if (!state) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  ct_status st = ct_optim_read_state(&s->opt, state);
  if (st == CT_OK) st = ct_comm_bcast(s->comm, state, s->opt.state_count * sizeof(float), 0);
  if (st == CT_OK) st = ct_optim_write_state(&s->opt, state);
  free(state);
  if (st == CT_OK) st = ct_comm_bcast(s->comm, &s->opt.t, sizeof s->opt.t, 0);
  return st;
}

ct_status ct_replica_check(ct_run_state *s, const char *when) {
  int div;
  CT_TRY(check_replicas(s, when, &div));
  if (!div) return CT_OK;
  s->res->divergences++;
  if (s->cfg->on_divergence == CT_DIVERGE_ABORT)
    return CT_FAIL(CT_ERR_MISMATCH, "replicas diverged %s (--on-divergence abort)", when);
  if (s->cfg->on_divergence == CT_DIVERGE_RESYNC) {
    CT_TRY(ct_replica_resync(s));
    ct_say(s, "cltrain: replicas resynchronised from rank 0 %s\n", when);
  }
  return CT_OK;
}

// ---- a language model's sample ----------------------------------------------------------------

#define SAMPLE_TEMPERATURE 0.8
#define SAMPLE_TOP_K 40

static ct_status put_byte(void *ctx, int token) {
  const ct_run_state *s = ctx;
  if (fputc(s->test.vocab[token], stdout) == EOF)
    return CT_FAIL(CT_ERR_IO, "--sample: cannot write to stdout");
  return CT_OK;
}

ct_status ct_sample_text(ct_run_state *s, const char *when, uint64_t stream) {
  const ct_train_config *cfg = s->cfg;
  if (!R0 || cfg->sample <= 0) return CT_OK;
  if (s->labels <= 1 || !s->test.tokens)
    return CT_FAIL(CT_ERR_USAGE, "--sample: '%s' is not a language model", s->arch.text);
  int n = s->test.seq / 2 > 0 ? s->test.seq / 2 : 1;
  int *prompt = malloc((size_t)n * sizeof *prompt);
  int *out = malloc((size_t)cfg->sample * sizeof *out);
  ct_status st = CT_OK;
  if (!prompt || !out) st = CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  ct_generate_opts o;
  ct_generate_opts_defaults(&o);
  o.tokens = cfg->sample;
  o.temperature = SAMPLE_TEMPERATURE;
  o.top_k = SAMPLE_TOP_K;
  uint64_t mix = cfg->seed ^ 0x73616d706c65ULL;   // "sample": not the training's streams
  mix += stream * 0x9e3779b97f4a7c15ULL;
  o.seed = ct_generate_rng(&mix);
  o.emit = put_byte, o.ctx = s;
  if (st == CT_OK) {
    printf("sample after %s:\n", when);
    for (int i = 0; i < n; i++) {
      prompt[i] = s->test.tokens[i];
      putchar(s->test.vocab[prompt[i]]);
    }
    st = ct_generate(&s->model, prompt, n, &o, out);
    putchar('\n');
    fflush(stdout);
  }
  free(prompt), free(out);
  return st;
}
