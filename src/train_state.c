// train_state.c: a run's setup and teardown: data, device, model, optimizer, all-reduce, and what
// the sync mode and the balance policy need, before the first step. See train_state.h.
#include "cltrain/train_state.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cltrain/balance.h"
#include "cltrain/blas.h"
#include "cltrain/buckets.h"
#include "cltrain/evaluate.h"
#include "cltrain/gpt.h"
#include "cltrain/peak.h"
#include "cltrain/prof.h"
#include "cltrain/report.h"
#include "cltrain/step.h"
#include "cltrain/sync.h"
#include "cltrain/timer.h"
#include "cltrain/tune.h"

void ct_say(ct_run_state *s, const char *fmt, ...) {
  if (!R0) return;
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  fflush(stdout);
}

void ct_release_event(cl_event *e) {
  if (*e) clReleaseEvent(*e);
  *e = NULL;
}

cl_int ct_event_status(cl_event ev, cl_int *stat) {
  cl_int err = clGetEventInfo(ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof *stat, stat, NULL);
  return err == CL_SUCCESS && *stat < 0 ? *stat : err;
}

// An output path whose folder cannot take a file fails before training, not after it.
static ct_status check_output_path(ct_run_state *s, const char *flag, const char *path) {
  int bad = 0;
  char probe[1200];
  if (R0 && path) {
    snprintf(probe, sizeof probe, "%s.probe.%d", path, (int)getpid());
    FILE *f = fopen(probe, "w");
    bad = !f;
    if (f) fclose(f), remove(probe);
  }
  CT_TRY(ct_comm_allreduce_int_max(s->comm, &bad, 1));
  if (bad)
    return CT_FAIL(CT_ERR_IO, "%s: cannot create a file next to '%s'%s", flag, path ? path : "",
                   R0 ? "" : " (on rank 0)");
  return CT_OK;
}

// ---- GEMM choices ---------------------------------------------------------------------------

// Whether the device's plan table has a plan of exactly this shape for every GEMM in shapes.
static int all_planned(const ct_device *dev, const ct_tune_shape *shapes, int n) {
  const struct ct_blas_state *b = dev->blas;
  for (int i = 0; i < n; i++) {
    int found = 0;
    for (int j = 0; j < b->nplans && !found; j++)
      found = ct_gemm_same_shape(&b->plans[j].shape, &shapes[i].shape);
    if (!found) return 0;
  }
  return 1;
}

// --tune on this rank: the model's products that the cache has no plan for are tuned and added.
static ct_status tune_rank(ct_run_state *s) {
  ct_comm *comm = s->comm;
  int acc = s->cfg->accumulate > 1 ? s->cfg->accumulate : 1;
  int batches[2] = {s->micro, (s->cfg->batch / comm->size + acc - 1) / acc};
  ct_tune_shape *shapes = NULL;
  int n = 0;
  ct_status st = ct_tune_model_shapes(&s->dev, &s->arch, batches,
                                      batches[1] != batches[0] ? 2 : 1, &shapes, &n);
  if (st == CT_OK && !all_planned(&s->dev, shapes, n)) {
    char path[1024];
    ct_tune_options o;
    ct_tune_options_defaults(&o);
    if (s->cfg->tune_budget > 0) o.budget_s = s->cfg->tune_budget;
    o.log = NULL;
    fprintf(stderr, "cltrain: rank %d: tuning the GEMMs of %s on %s (--tune; about %.0f s)\n",
            comm->rank, s->arch.text, s->dev.info.name, o.budget_s);
    st = ct_tune_cache_path(&s->dev.info, path, sizeof path);
    if (st == CT_OK) {
      ct_tune_cache c;
      st = ct_tune_and_save(&s->dev, shapes, n, &o, path, &c);
      if (st == CT_OK)
        fprintf(stderr, "cltrain: rank %d: tuned %d GEMM shapes, wrote %s\n", comm->rank, n,
                path);
      ct_tune_cache_free(&c);
    }
  }
  free(shapes);
  return st;
}

// This rank's GEMM choices: the device's tuning cache, and with --tune a tuning run first when
// the cache is missing or has no plan for some of this model's products (they are added to it).
// Ranks take turns, so that ranks sharing a machine do not disturb each other's measurements
// and a second rank on the same kind of device finds the first one's cache.
static ct_status gemm_setup(ct_run_state *s) {
  ct_comm *comm = s->comm;
  ct_status st = CT_OK;
  for (int r = 0; r < comm->size; r++) {
    if (r == comm->rank) {
      int status;
      char warning[1024];
      st = ct_tune_load(&s->dev, &status, warning, sizeof warning);
      if (st == CT_OK && status < 0)
        fprintf(stderr, "cltrain: rank %d: warning: %s\n", comm->rank, warning);
      if (st == CT_OK && s->cfg->tune) st = tune_rank(s);
    }
    if (comm->size > 1) {   // a failed rank still takes part, then everyone fails together
      int bad = st != CT_OK;
      ct_status st2 = ct_comm_allreduce_int_max(comm, &bad, 1);
      if (st == CT_OK && st2 != CT_OK) st = st2;
      if (st == CT_OK && bad) return CT_FAIL(CT_ERR_INTERNAL, "GEMM setup failed on another rank");
    }
    if (st != CT_OK) return st;
  }
  return CT_OK;
}

// ---- the device's clock ---------------------------------------------------------------------

// --profile with --trace: each device command on the timeline, its OpenCL event times mapped
// onto the host's clock (clock_setup), under the step that enqueued it.
static void trace_device(void *ctx, const char *name, ct_prof_kind kind, long tag, cl_ulong start,
                         cl_ulong end) {
  ct_run_state *s = ctx;
  (void)kind;
  ct_trace_span_step(&s->trace, CT_TRACE_DEVICE, name, (double)start * 1e-9 + s->clock_off,
                     (double)end * 1e-9 + s->clock_off, tag);
}

// The device's profiling clock against the host's: a marker's end time lies between the host
// times before and after waiting for it; the trial with the tightest bracket wins.
static ct_status clock_setup(ct_run_state *s) {
  double best = 1e30;
  for (int k = 0; k < 5; k++) {
    cl_event ev = NULL;
    double t0 = ct_now();
    CL_CHECK(clEnqueueMarkerWithWaitList(s->dev.queue, 0, NULL, &ev));
    cl_int err = clWaitForEvents(1, &ev);
    double t1 = ct_now();
    cl_ulong end = 0;
    if (err == CL_SUCCESS)
      err = clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof end, &end, NULL);
    clReleaseEvent(ev);
    CL_CHECK(err);
    if (t1 - t0 < best) best = t1 - t0, s->clock_off = 0.5 * (t0 + t1) - (double)end * 1e-9;
  }
  return CT_OK;
}

// ---- setup ----------------------------------------------------------------------------------

// Opens this rank's device. A spec that is wrong for one rank only (ambiguous on its node, say)
// is a usage error of the whole job: every rank returns the lowest such rank's message, so that
// rank 0 says it once and no rank waits in a collective for one that has gone.
static ct_status open_device(ct_run_state *s) {
  ct_comm *comm = s->comm;
  ct_status st = ct_device_open_spec(s->cfg->device, comm->rank, comm->local_rank, &s->dev);
  if (comm->size == 1 || (st != CT_OK && st != CT_ERR_USAGE)) return st;   // the job ends
  int bad = st == CT_ERR_USAGE ? comm->size - comm->rank : 0;   // max: the lowest failing rank
  CT_TRY(ct_comm_allreduce_int_max(comm, &bad, 1));
  if (!bad) return CT_OK;
  int from = comm->size - bad;
  char msg[1024] = "";
  if (comm->rank == from) snprintf(msg, sizeof msg, "%s", ct_error_text());
  CT_TRY(ct_comm_bcast(comm, msg, sizeof msg, from));
  msg[sizeof msg - 1] = 0;
  return ct_error_replace(CT_ERR_USAGE, __FILE__, __LINE__, "rank %d: %s", from, msg);
}

static ct_status load_images(ct_run_state *s);

// A language model's text: its training and validation windows (data.h's contract).
static ct_status load_text(ct_run_state *s) {
  const ct_train_config *cfg = s->cfg;
  ct_gpt_config g;
  CT_TRY(ct_gpt_parse(cfg->arch, &g));
  if (cfg->shard == CT_SHARD_STRATIFIED)
    return CT_FAIL(CT_ERR_USAGE, "--shard stratified: a language model's samples have no class "
                   "(use sequential or random)");
  ct_status st = ct_text_load(cfg->text, g.seq, &s->train, &s->test);
  if (st != CT_OK) return ct_error_replace(st, __FILE__, __LINE__, "--text: %s", ct_error_text());
  if (cfg->limit > 0) ct_dataset_limit(&s->train, cfg->limit);
  if (cfg->test_limit > 0) ct_dataset_limit(&s->test, cfg->test_limit);
  return CT_OK;
}

// The training and test sets, checked against each other and against the batch.
static ct_status load_data(ct_run_state *s) {
  const ct_train_config *cfg = s->cfg;
  if (ct_gpt_is_spec(cfg->arch)) {
    CT_TRY(load_text(s));
  } else {
    CT_TRY(load_images(s));
  }
  s->labels = ct_dataset_labels_per_sample(&s->train);
  s->in = (size_t)s->train.channels * (size_t)s->train.rows * (size_t)s->train.cols;
  if (cfg->batch > s->train.count)
    return CT_FAIL(CT_ERR_USAGE, "--batch: %d%s is larger than the training set (%d samples)",
                   cfg->batch, cfg->accumulate > 1 ? " (x --accumulate)" : "", s->train.count);
  if (cfg->batch < s->comm->size)
    return CT_FAIL(CT_ERR_USAGE, "--batch: %d is smaller than the number of ranks (%d)",
                   cfg->batch, s->comm->size);
  return CT_OK;
}

// Images: the training and test sets of --data, checked against each other.
static ct_status load_images(ct_run_state *s) {
  const ct_train_config *cfg = s->cfg;
  CT_TRY(ct_dataset_load(cfg->data_dir, "train", cfg->classes, &s->train));
  CT_TRY(ct_dataset_load(cfg->data_dir, "t10k", cfg->classes, &s->test));
  if (s->test.channels != s->train.channels || s->test.rows != s->train.rows ||
      s->test.cols != s->train.cols)
    return CT_FAIL(CT_ERR_FORMAT, "%s: test images are %dx%dx%d (CxHxW) but training images "
                   "%dx%dx%d", cfg->data_dir, s->test.channels, s->test.rows, s->test.cols,
                   s->train.channels, s->train.rows, s->train.cols);
  // classes derived from the data: the largest label of either split + 1
  if (s->test.classes > s->train.classes) s->train.classes = s->test.classes;
  s->test.classes = s->train.classes;
  if (s->train.classes < 2)   // (a softmax over one class has loss 0 whatever the weights)
    return CT_FAIL(CT_ERR_FORMAT, "%s: every label is 0: classification needs at least 2 classes "
                   "(--classes N, N >= 2, if the data really has fewer)", cfg->data_dir);
  if (cfg->limit > 0) ct_dataset_limit(&s->train, cfg->limit);
  if (cfg->test_limit > 0) ct_dataset_limit(&s->test, cfg->test_limit);
  return CT_OK;
}

// The host arrays of the balance, local:K and the two steps in flight (world entries each).
static ct_status alloc_world(ct_run_state *s) {
  size_t world = (size_t)s->comm->size;
  ct_balance_state *b = &s->bal;
  ct_local_state *l = &s->loc;
  s->weights = calloc(world, sizeof *s->weights);
  b->new_weights = calloc(world, sizeof *b->new_weights);
  b->prev_weights = calloc(world, sizeof *b->prev_weights);
  b->proposal = calloc(world, sizeof *b->proposal);
  if (b->proposal) b->proposal[0] = -1;
  b->seen_shares = calloc(world, sizeof *b->seen_shares);
  b->hold = 100;
  b->est = calloc(world, sizeof *b->est);
  b->fit = calloc(2 * world, sizeof *b->fit);
  b->ids = calloc(2 * world, sizeof *b->ids);
  s->tmp_shares = calloc(world, sizeof *s->tmp_shares);
  s->tmp_shares2 = calloc(world, sizeof *s->tmp_shares2);
  l->words = calloc(4 + 2 * world, sizeof *l->words);
  l->ms = calloc(world, sizeof *l->ms);
  l->shares = calloc(world, sizeof *l->shares);
  s->cur.shares = calloc(world, sizeof(int));
  s->pend.shares = calloc(world, sizeof(int));
  if (!s->weights || !b->new_weights || !b->prev_weights || !b->proposal || !b->seen_shares ||
      !b->est || !b->fit || !b->ids || !s->tmp_shares || !s->tmp_shares2 || !l->words || !l->ms ||
      !l->shares || !s->cur.shares || !s->pend.shares)
    return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  return CT_OK;
}

// The host buffers of the largest share: the loader's slots, the status reads, evaluation.
static ct_status alloc_shares(ct_run_state *s) {
  size_t world = (size_t)s->comm->size;
  size_t in = s->in;
  size_t ms = (size_t)s->max_share;
  for (int k = 0; k < 2; k++) {
    s->slots[k].mine = malloc(ms * sizeof(int));
    s->slots[k].x = malloc(ms * in * sizeof(float));
    s->slots[k].y = malloc(ms * (size_t)s->labels * sizeof(int));
    s->slots[k].weights = calloc(world, sizeof(uint32_t));
    s->slots[k].shares = calloc(world, sizeof(int));
    s->status[k].host = malloc(s->tail * sizeof(float));
    s->status[k].shares = calloc(world, sizeof(int));
    if (!s->slots[k].mine || !s->slots[k].x || !s->slots[k].y || !s->status[k].host ||
        !s->slots[k].weights || !s->slots[k].shares || !s->status[k].shares)
      return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  }
  s->eval_idx = malloc(ms * sizeof *s->eval_idx);
  s->eval_x = malloc(ms * in * sizeof *s->eval_x);
  s->eval_y = malloc(ms * (size_t)s->labels * sizeof *s->eval_y);
  s->tail_host = calloc(world, sizeof *s->tail_host);
  s->host_params = malloc(s->arch.param_count * sizeof *s->host_params);
  s->load.order = malloc((size_t)s->train.count * sizeof *s->load.order);
  if (!s->eval_idx || !s->eval_x || !s->eval_y || !s->tail_host || !s->host_params ||
      !s->load.order)
    return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  if (CT_REDUCED(s) + 1 > 0xffffffffULL)
    return CT_FAIL(CT_ERR_USAGE, "the model has %zu parameters; at most 2^32 - %zu are supported",
                   s->P, s->tail + 1);
  return CT_OK;
}

// The device side: GEMM plans, model, gradient buffers, optimizer, the mode's own buffers.

// Weight decay follows the tensor table: the runs of tensors that the table says not to decay.
static ct_status optim_decay_setup(ct_run_state *s) {
  size_t *lo = malloc((size_t)(s->arch.nt + 1) * 2 * sizeof *lo);
  if (!lo) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  int n = ct_arch_no_decay(&s->arch, lo, lo + s->arch.nt + 1);
  ct_status st = ct_optim_set_no_decay(&s->opt, lo, lo + s->arch.nt + 1, n);
  free(lo);
  return st;
}

static ct_status device_setup(ct_run_state *s) {
  const ct_train_config *cfg = s->cfg;
  CT_TRY(gemm_setup(s));
  CT_TRY(ct_device_peak_gflops(&s->dev, 3, &s->peak_gflops));   // (about 0.05 s)
  if (cfg->profile) CT_TRY(ct_prof_init(&s->dev));
  CT_TRY(ct_model_init_tail(&s->dev, &s->arch, s->micro, s->tail, &s->model));
  if (cfg->accumulate > 1) {
    cl_int err;
    CL_CHECK((s->acc = ct_device_buffer(&s->dev, (s->P + s->tail) * sizeof(float), &err), err));
  }
  s->gbuf[0] = s->gbuf[1] = s->model.grads;
  CT_TRY(ct_optim_init(&s->dev, &cfg->optim, s->arch.param_count, &s->opt));
  CT_TRY(optim_decay_setup(s));
  if (s->mode->setup) CT_TRY(s->mode->setup(s));
  return CT_OK;
}

// N > 1: the all-reduce, the trainer's own queue, the sharded update and the buckets.
static ct_status comm_setup(ct_run_state *s) {
  ct_comm *comm = s->comm;
  if (comm->size > 1) {   // (one float more: the sharded update's status window, shard_setup)
    cl_int err;
    CT_TRY(ct_allreduce_init(comm, &s->dev, CT_REDUCED(s) + 1, 0, &s->ar));
    CT_TRY(ct_allreduce_agree(s->ar, CT_REDUCED(s) + 1));
    CL_CHECK((s->side = clCreateCommandQueue(s->dev.ctx, s->dev.info.id, 0, &err), err));
  }
  s->wire = (ct_ring_opts){.wire = (ct_wire)s->cfg->wire, .wire_n = s->P};
  if (comm->size > 1) CT_TRY(ct_shard_setup(s));
  if (comm->size > 1 && s->cfg->bucket_mb > 0 && s->mode->buckets) CT_TRY(ct_bucket_setup(s));
  return CT_OK;
}

// Kernels build on first use, and a share size no step has had yet builds the GEMM kernels for
// its row count (cltrain's own kernel takes its work-group size from the rows: ct_gemm_fit_tile).
// Build them now, before training, for the sizes a run will meet: one forward and backward pass
// at each size on zeros. Parameters and optimizer state are not touched; the gradients it
// leaves are overwritten by the first step. The sizes:
// - this rank's share of a full batch: the first step then holds no builds (Intel's runtime
//   alone, mlp: the first step took 1.9-2.1 s, 0.15-0.23 s with its kernels built before; the
//   throughput figures leave the first steps out anyway, the training time and the time to an
//   accuracy no longer count the builds);
// - the epoch's short last batch: Intel's CPU runtime took about 2 s to build its GEMM kernels
//   for that share, in the middle of the measured steps while the other ranks waited (a 40 %
//   "wait" in a 2-epoch run);
// - with --balance throughput, this rank's share +- 8 samples (the smallest move a change of
//   shares makes: shares are multiples of 8 where the batch allows; larger moves, and moves
//   from shares that are not, still build when they happen): a change from 64/64 to 56/72
//   stalled the step after it 1.3-1.6 s while Intel's runtime built (PoCL+Intel, mlp, 60,000
//   images, a test build moving the shares at step 50 and back at step 100, three alternating
//   rounds: 11,023-11,638 samples/s; with these sizes built first 16,868-19,696 and no step
//   over 14 ms; without the move 14,399-16,269).
// The chunk sizes the compute phase runs these shares in (--accumulate: full chunks and the
// rest) go into sizes[0 .. *ns).
static void prebuild_sizes(ct_run_state *s, int *sizes, int *ns) {
  int world = s->comm->size, rank = s->comm->rank, n = 0, want[4];
  ct_balance_full_shares(s, s->weights, s->tmp_shares);
  int m = s->tmp_shares[rank];
  want[n++] = m;
  int n_last = (int)(s->train.count % (size_t)s->cfg->batch);
  if (n_last > 0) {
    ct_shares_weighted(n_last, world, s->weights, s->tmp_shares);
    want[n++] = s->tmp_shares[rank];
  }
  if (s->balancing) {
    if (m - 8 >= 1) want[n++] = m - 8;
    if (m + 8 <= s->max_share) want[n++] = m + 8;
  }
  *ns = 0;
  for (int i = 0; i < n; i++) {
    int c[2] = {want[i] < s->micro ? want[i] : s->micro,
                want[i] > s->micro ? want[i] % s->micro : 0};
    for (int k = 0; k < 2; k++) {
      int dup = c[k] <= 0;
      for (int j = 0; j < *ns && !dup; j++) dup = sizes[j] == c[k];
      if (!dup) sizes[(*ns)++] = c[k];
    }
  }
}

// One forward and backward pass of `rows` samples of (x, y), for the kernels it builds.
static ct_status prebuild_pass(ct_run_state *s, const float *x, const int *y, int rows) {
  CT_TRY(ct_model_set_batch(&s->model, x, y, rows));
  CT_TRY(ct_model_forward(&s->model, rows, 1, 0));
  return ct_model_backward(&s->model, rows, 1.0f / (float)(s->cfg->batch * s->labels));
}

static ct_status prebuild_share_sizes(ct_run_state *s) {
  int sizes[8], ns = 0;
  prebuild_sizes(s, sizes, &ns);
  if (ns == 0) return CT_OK;
  int most = 0;
  for (int i = 0; i < ns; i++)
    if (sizes[i] > most) most = sizes[i];
  float *x = calloc((size_t)most * s->in, sizeof *x);   // (token 0 for a language model)
  int *y = calloc((size_t)most * (size_t)s->labels, sizeof *y);
  if (!x || !y) {
    free(x), free(y);
    return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  }
  struct ct_prof *saved = s->dev.prof;   // not part of any profile
  s->dev.prof = NULL;
  s->model.grads = s->gbuf[0];
  s->model.sample_offset = 0;
  ct_status st = CT_OK;
  for (int k = 0; k < ns && st == CT_OK; k++) st = prebuild_pass(s, x, y, sizes[k]);
  cl_int err = clFinish(s->dev.queue);
  s->dev.prof = saved;
  free(x), free(y);
  CT_TRY(st);
  if (err != CL_SUCCESS)
    return CT_FAIL(CT_ERR_CL, "clFinish(building the kernels of the share sizes) failed: %s",
                   ct_cl_errname(err));
  return CT_OK;
}

ct_status ct_run_setup(ct_run_state *s) {
  const ct_train_config *cfg = s->cfg;
  ct_comm *comm = s->comm;
  if (cfg->sample > 0 && !ct_gpt_is_spec(cfg->arch))
    return CT_FAIL(CT_ERR_USAGE, "--sample: only a language model (--model gpt) writes text; "
                   "'%s' is a classifier", cfg->arch);
  CT_TRY(load_data(s));
  if (ct_gpt_is_spec(cfg->arch)) {
    ct_gpt_config g;
    CT_TRY(ct_gpt_parse(cfg->arch, &g));
    g.vocab = s->train.classes;
    CT_TRY(ct_gpt_build(&g, &s->arch));
  } else {
    CT_TRY(ct_arch_parse(cfg->arch, s->train.channels, s->train.rows, s->train.cols,
                         s->train.classes, &s->arch));
  }
  CT_TRY(ct_eval_metric_choose(s));
  CT_TRY(open_device(s));
  CT_TRY(ct_report_metrics_open(s));
  if (cfg->trace) CT_TRY(ct_trace_init(&s->trace, cfg->trace_first, cfg->trace_last));
  if (cfg->save_safetensors)
    CT_TRY(check_output_path(s, "--save-safetensors", cfg->save_safetensors));

  s->P = s->arch.param_count;
  s->tail = 2 + (size_t)comm->size;
  CT_TRY(alloc_world(s));
  CT_TRY(ct_balance_setup(s));
  {
    int acc = cfg->accumulate > 1 ? cfg->accumulate : 1;
    s->micro = (s->max_share + acc - 1) / acc;
  }
  CT_TRY(alloc_shares(s));
  CT_TRY(device_setup(s));
  CT_TRY(prebuild_share_sizes(s));
  CT_TRY(comm_setup(s));
  if ((comm->size > 1 && s->mode->overlapped) || (cfg->profile && cfg->trace)) {
    CT_TRY(clock_setup(s));
    if (cfg->profile && cfg->trace) ct_prof_set_sink(&s->dev, trace_device, s);
  }
  s->load.train = &s->train;
  s->load.cfg = cfg;
  s->load.world = comm->size;
  s->load.rank = comm->rank;
  CT_TRY(ct_loader_start(&s->load));
  return CT_OK;
}

// ---- teardown -------------------------------------------------------------------------------

static void free_host(ct_run_state *s) {
  for (int k = 0; k < 2; k++) {
    free(s->slots[k].mine), free(s->slots[k].x), free(s->slots[k].y);
    free(s->slots[k].weights), free(s->slots[k].shares);
    free(s->status[k].host), free(s->status[k].shares);
  }
  free(s->cur.shares), free(s->pend.shares);
  ct_balance_state *b = &s->bal;
  free(s->weights), free(b->new_weights), free(b->prev_weights), free(b->proposal);
  free(b->seen_shares), free(b->est), free(b->fit), free(s->tmp_shares), free(s->tmp_shares2);
  free(b->ids);
  free(s->loc.words), free(s->loc.ms), free(s->loc.shares);
  free(s->eval_idx), free(s->eval_x), free(s->eval_y), free(s->tail_host);
  free(s->host_params), free(s->load.order);
}

void ct_run_teardown(ct_run_state *s) {
  ct_trace_free(&s->trace);
  ct_metrics_close(&s->metrics);
  free(s->devices_json);
  s->devices_json = NULL;
  ct_loader_stop(&s->load);
  if (s->dev.queue) clFinish(s->dev.queue);
  if (s->side) clFinish(s->side);
  for (int k = 0; k < 2; k++) {
    if (s->slots[k].written) clReleaseEvent(s->slots[k].written);
    if (s->status[k].ev) clReleaseEvent(s->status[k].ev);
  }
  ct_computed *cs[2] = {&s->cur, &s->pend};
  for (int k = 0; k < 2; k++) {
    if (cs[k]->begin) clReleaseEvent(cs[k]->begin);
    if (cs[k]->end) clReleaseEvent(cs[k]->end);
  }
  if (s->gbuf[1] && s->gbuf[1] != s->gbuf[0]) clReleaseMemObject(s->gbuf[1]);
  if (s->pred) clReleaseMemObject(s->pred);
  if (s->acc) clReleaseMemObject(s->acc);
  if (s->compute_end) clReleaseEvent(s->compute_end);
  if (s->pred_done) clReleaseEvent(s->pred_done);
  if (s->pend_map_ev) clReleaseEvent(s->pend_map_ev);
  if (s->side) clReleaseCommandQueue(s->side);
  s->model.grads = s->gbuf[0] ? s->gbuf[0] : s->model.grads;   // the model frees its own
  if (s->ar) ct_allreduce_free(s->ar);
  if (s->opt.dev) ct_optim_free(&s->opt);
  if (s->model.dev) ct_model_free(&s->model);
  if (s->dev.ctx) ct_device_close(&s->dev);
  ct_dataset_free(&s->train);
  ct_dataset_free(&s->test);
  free_host(s);
}
