// trainer.c: the synchronous data-parallel training loop, evaluation and per-phase metrics.
//
//   epoch e: order = permutation(seed, e) of the training set (the same on every rank)
//   step s:  global batch = order[s*B .. s*B+B)        (the last one may be shorter)
//            mine = ct_shard_take(global batch, shares) (this rank's share)
//
// One step, as phases (docs/design.md, "A training step"):
//
//   prepare    the loader thread gathers step t+1's share into the other of two host slots
//              while the device computes step t (double-buffered input)
//   compute    upload (non-blocking), forward, backward (loss scale 1/|global batch|), and the
//              status words: grads[P] = this rank's loss sum, counter zeroed
//   reduce     (N > 1) wait for the gradients, write this rank's compute time into its status
//              slot, ring all-reduce SUM of [gradients | status] as one range
//   apply      count the non-finite values of [gradients | loss] into the counter; the optimizer
//              kernel skips the update on the device when the counter is not zero; read the
//              status words back without blocking
//
//   grads buffer:  [ P gradients | loss sum | compute ms of rank 0 .. N-1 | non-finite counter ]
//                    \____________ reduced together (SUM) ______________/   not reduced
//
// The only blocking point of a one-rank step is waiting for the PREVIOUS step's status read,
// just before this step's optimizer is enqueued (the host must know whether that step was
// applied, for AdamW's step count); the device meanwhile computes this step. With N > 1 the
// all-reduce blocks, as it must. After the all-reduce the status is the same on every rank:
// the global loss sum (no separate loss reduction), every rank's compute time (waiting for the
// slowest = max - own, with no barrier), and a non-finite verdict every rank reaches alike.
#include "cltrain/trainer.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cltrain/allreduce.h"
#include "cltrain/blas.h"
#include "cltrain/checkpoint.h"
#include "cltrain/export.h"
#include "cltrain/metrics.h"
#include "cltrain/trace.h"
#include "cltrain/layers.h"
#include "cltrain/model.h"
#include "cltrain/prof.h"
#include "cltrain/program.h"
#include "cltrain/timer.h"
#include "cltrain/tune.h"
#include "cltrain/version.h"

void ct_train_config_defaults(ct_train_config *c) {
  memset(c, 0, sizeof *c);
  c->arch = "mlp";
  c->data_dir = "/usr/share/datasets/fashion-mnist";
  c->device = "auto";
  c->epochs = 10;
  c->batch = 128;
  c->shuffle = 1;
  c->shard = CT_SHARD_SEQUENTIAL;
  ct_optim_config_defaults(CT_OPT_SGD, &c->optim);
  c->sched.kind = CT_SCHED_CONSTANT;
  c->sched.gamma = 0.1f;
  c->seed = 1;
  c->log_every = 100;
  c->max_bad_steps = 5;
  c->on_divergence = CT_DIVERGE_ABORT;
  c->inject_nan_step = c->inject_diverge_step = c->inject_exit_step = -1;
  c->inject_slow_rank = -1;
  c->local_k = 1;
  c->accumulate = 1;
  c->shard_update = 1;
  c->trace_last = 1L << 62;
  c->balance_every = 10;
}

uint64_t ct_params_checksum(const float *params, size_t n) {
  const unsigned char *p = (const unsigned char *)params;
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n * sizeof(float); i++) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

// ---- the loader thread ---------------------------------------------------------------------------

typedef struct {
  int epoch;
  long si, step;           // step in the epoch, global step
  int n, m, offset;        // global batch, this rank's share, its first position in the batch
  int *mine;               // (max_share) sample indices
  float *x;                // (max_share, in)
  int *y;                  // (max_share)
  cl_event written;        // the device's copy of x and y; the slot is reused once it completed
  double prep_s;           // loader time spent on it
  uint32_t *weights;       // (world) the share weights in effect when it was posted
  int *shares;             // (world) this step's shares (from the weights)
} slot;

typedef struct {
  pthread_t thread;
  int started;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  slot *job;               // the slot to fill, NULL when idle
  int done, quit;
  ct_status st;
  char err[512];
  // read-only inputs
  const ct_dataset *train;
  const ct_train_config *cfg;
  int world, rank;
  int *order, order_epoch; // the loader's own copy of the epoch order
} loader;

static ct_status prepare(loader *L, slot *b) {
  double t0 = ct_now();
  if (b->written) {   // the device may still be reading this slot
    CL_CHECK(clWaitForEvents(1, &b->written));
    clReleaseEvent(b->written);
    b->written = NULL;
  }
  const ct_train_config *cfg = L->cfg;
  if (L->order_epoch != b->epoch) {
    ct_epoch_order(L->train->count, cfg->seed, b->epoch, cfg->shuffle, L->order);
    L->order_epoch = b->epoch;
  }
  long spe = (L->train->count + cfg->batch - 1) / cfg->batch;
  const int *gb = L->order + b->si * cfg->batch;
  b->n = (int)(b->si == spe - 1 ? L->train->count - b->si * cfg->batch : cfg->batch);
  ct_shares_weighted(b->n, L->world, b->weights, b->shares);
  b->m = ct_shard_take(cfg->shard, L->train, gb, b->n, cfg->seed, b->step, b->shares, L->world,
                       L->rank, b->mine);
  if (b->m < 0) return CT_FAIL(CT_ERR_INTERNAL, "ct_shard_take failed at step %ld", b->step);
  b->offset = 0;   // dropout masks follow the position in the global batch
  for (int r = 0; r < L->rank; r++) b->offset += b->shares[r];
  ct_dataset_gather(L->train, b->mine, b->m, cfg->norm_mean, cfg->norm_std, b->x, b->y);
  b->prep_s = ct_now() - t0;
  return CT_OK;
}

static void *loader_main(void *arg) {
  loader *L = arg;
  pthread_mutex_lock(&L->mu);
  for (;;) {
    while (!L->job && !L->quit) pthread_cond_wait(&L->cv, &L->mu);
    if (L->quit) break;
    slot *b = L->job;
    pthread_mutex_unlock(&L->mu);
    ct_status st = prepare(L, b);
    pthread_mutex_lock(&L->mu);
    if (st != CT_OK && L->st == CT_OK) {
      L->st = st;
      snprintf(L->err, sizeof L->err, "%s", ct_error_text());
      ct_error_clear();
    }
    L->job = NULL;
    L->done = 1;
    pthread_cond_broadcast(&L->cv);
  }
  pthread_mutex_unlock(&L->mu);
  return NULL;
}

static ct_status loader_start(loader *L) {
  L->order_epoch = -1;
  if (pthread_mutex_init(&L->mu, NULL) || pthread_cond_init(&L->cv, NULL))
    return CT_FAIL(CT_ERR_INTERNAL, "pthread_mutex_init/pthread_cond_init failed");
  if (pthread_create(&L->thread, NULL, loader_main, L))
    return CT_FAIL(CT_ERR_INTERNAL, "cannot start the loader thread");
  L->started = 1;
  return CT_OK;
}

static void loader_stop(loader *L) {
  if (!L->started) return;
  pthread_mutex_lock(&L->mu);
  while (L->job) pthread_cond_wait(&L->cv, &L->mu);   // never leave it inside a slot
  L->quit = 1;
  pthread_cond_broadcast(&L->cv);
  pthread_mutex_unlock(&L->mu);
  pthread_join(L->thread, NULL);
  pthread_cond_destroy(&L->cv);
  pthread_mutex_destroy(&L->mu);
  L->started = 0;
}

static void loader_post(loader *L, slot *b, int epoch, long si, long step,
                        const uint32_t *weights) {
  pthread_mutex_lock(&L->mu);
  b->epoch = epoch, b->si = si, b->step = step;
  memcpy(b->weights, weights, (size_t)L->world * sizeof *weights);
  L->job = b;
  L->done = 0;
  pthread_cond_broadcast(&L->cv);
  pthread_mutex_unlock(&L->mu);
}

// Waits for the posted job; *waited = host seconds spent waiting.
static ct_status loader_wait(loader *L, double *waited) {
  double t0 = ct_now();
  pthread_mutex_lock(&L->mu);
  while (L->job) pthread_cond_wait(&L->cv, &L->mu);
  ct_status st = L->st;
  char err[512];
  snprintf(err, sizeof err, "%s", L->err);
  pthread_mutex_unlock(&L->mu);
  *waited = ct_now() - t0;
  if (st != CT_OK) return CT_FAIL(st, "%s", err);
  return CT_OK;
}

// ---- the state of one run -------------------------------------------------------------------

typedef struct {
  long step;               // global step
  int n, m;                // global batch, this rank's share
  int *shares;             // (world) every rank's share of the step
  float *host;             // (2 + world) status words read back: loss sum, compute ms, counter
  cl_event ev;             // the read
  int in_flight;
} step_status;

#define CT_MAX_BUCKETS 256   // --bucket-mb: gradient windows at most

// A step whose gradients are computed (or being computed), with what its reduce and apply need.
typedef struct {
  long step;
  int n, m;
  int *shares;             // (world)
  cl_mem grads;            // its gradient buffer
  cl_event begin, end;     // stale: markers around its compute on the device
  int valid;
  int counted;             // the all-reduce wrote its non-finite count (no count kernel)
} computed;

typedef struct {
  const ct_train_config *cfg;
  ct_comm *comm;
  ct_device dev;
  ct_dataset train, test;
  ct_arch arch;
  ct_model model;
  ct_optim opt;
  ct_allreduce *ar;
  ct_ring_opts wire;       // the gradients' wire format (--wire): [0, P) of the reduced range
  // --bucket-mb: windows [bk_lo, bk_hi) of the gradients, from the last layers' to the first's;
  // bucket b may be reduced once bk_ev[b] has completed (its layers' backward; the last
  // bucket, which holds element 0, and the status words wait for compute_end)
  int nb;
  size_t bk_lo[CT_MAX_BUCKETS], bk_hi[CT_MAX_BUCKETS];
  int bk_tensor[CT_MAX_BUCKETS];   // the tensor whose "gradient ready" event the bucket waits for
  cl_event bk_ev[CT_MAX_BUCKETS];
  cl_event compute_end;    // buckets: marker after the step's compute
  double clock_off;        // stale: host clock - device profiling clock (s)
  double exposed_s, warm_exposed;
  ct_metrics metrics;      // --metrics (rank 0)
  ct_trace trace;          // --trace
  char *devices_json;      // rank 0: [{"rank": 0, "platform": ...}, ...]
  loader load;
  slot slots[2];
  step_status status[2];   // step t uses status[t & 1]
  cl_mem gbuf[2];          // gradient buffers: [1] is a second one for --sync stale
  computed cur, pend;      // this step; stale: the step computed but not yet reduced / applied
  // balance (--balance): the weights the shares follow, the same on every rank
  uint32_t *weights, *new_weights;   // (world)
  double *est;             // (world) throughput: measured ms per sample of each rank
  double *fit;             // (2 world) throughput: ms and samples per rank since a change
  long est_updates;
  int balancing;           // throughput balance in effect
  int *tmp_shares, *tmp_shares2;     // (world)
  // local:K
  long since_avg;          // steps since the last average
  double samples_since, compute_since;   // this rank's, since the last average
  int partial_since;       // local:K: a short batch (an epoch's last) since the last average
  double *avg_words;       // (4 + 2 world)
  float *avg_ms;           // (world)
  int *avg_shares;         // (world)
  long avg_count_measured;
  int stop_bad;            // this rank reached --max-bad-steps: stop at the next average
  ct_balance balance_kind; // what --balance (auto) settled on
  long checked_avg;        // local:K: the average the replicas were last compared after
  double warm_compute, warm_wait, warm_train, warm_local;   // at the end of the warm-up
  ct_allreduce_stats warm_ars;
  long balance_quiet_until;   // throughput: steps before this are not measured
  uint32_t *prev_weights;  // (world) throughput: the weights before the change on trial
  int bal_trial;           // a change is on trial: kept only if the measured step gets faster
  double crit_sum;         // sum over the window of the slowest rank's compute time (ms)
  long crit_n;             //   and its count
  double prev_crit;        // the window's mean before the change on trial
  long bal_hold;           // steps to hold still after a change that did not pay (doubles)
  int *proposal;           // (world) the shares the last check proposed (proposal[0] -1: none)
  int *seen_shares;        // (world) the shares of the last step balance_update saw
  cl_mem pred;             // stale, SGD: the parameters after the pending update (predicted)
  cl_event pred_done;      // the prediction has read the pending gradients
  float *pend_map;         // zero-copy: the gradients to reduce, mapped (stale: the pending
                           // ones, before the step; sync: this step's, behind its kernels)
  cl_event pend_map_ev;    //   and the map's event
  size_t P;                // parameters
  int shard;               // --shard-update in effect: this rank updates [sh_lo, sh_hi) only
  size_t sh_lo, sh_hi;     //   its segment of the parameters (the ring's segment rank+1)
  size_t tail;             // status words after the gradients: 2 + world
  int max_share;           // largest share any rank gets
  int micro;               // the model's max batch: rows per forward/backward (--accumulate
                           // cuts a share into chunks of at most this many)
  cl_mem acc;              // --accumulate: gradients of the chunks after the first
                           // ([P | loss]), added into the step's gradient buffer
  int *eval_idx;           // (max_share) evaluation: sample indices
  float *eval_x;           // (max_share, in)
  int *eval_y;             // (max_share)
  float *tail_host;        // (world) this rank's compute time in its slot, zeros elsewhere
  float *host_params;      // (param_count)
  ct_schedule sched;       // cfg->sched, with the cosine's length filled in
  ct_allreduce_stats ars;
  ct_train_result *res;
  // accounting
  int bad_run;
  double loss_acc, loss_n;
  int measuring;           // past the warm-up steps: throughput and profile count
  double step_s;           // wall time of the measured steps
  double wait_loader_s, prep_s, allreduce_s, barrier_s;
  double samples_measured;
} run_state;

#define R0 (s->comm->rank == 0)
static void full_shares(run_state *s, const uint32_t *w, int *shares);
#define CT_WARMUP_STEPS 5   // steps left out of the throughput figure (kernels build on first use)

static void say(run_state *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(run_state *s, const char *fmt, ...) {
  if (!R0) return;
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  fflush(stdout);
}

// Status words, in floats from the start of the grads buffer.
#define AT_LOSS(s) ((s)->P)
#define AT_TIMES(s) ((s)->P + 1)
#define AT_COUNT(s) ((s)->P + (s)->tail - 1)
#define REDUCED(s) ((s)->P + (s)->tail - 1)   // floats the all-reduce covers

// ---- evaluation, replicas, parameters ------------------------------------------------------

// Evaluates the test set: rank r takes a contiguous slice, the correct counts are summed.
static ct_status evaluate_(run_state *s, double *acc);
static ct_status evaluate(run_state *s, double *acc) {
  double t0 = ct_now();
  ct_status st = evaluate_(s, acc);
  ct_trace_span(&s->trace, 0, "evaluation", t0, ct_now());
  return st;
}
static ct_status evaluate_(run_state *s, double *acc) {
  double t0 = ct_now();
  int n = s->test.count, world = s->comm->size, r = s->comm->rank;
  // split in proportion to the share weights: the same cut on every rank
  ct_shares_weighted(n, world, s->weights, s->tmp_shares);
  int lo = 0;
  for (int q = 0; q < r; q++) lo += s->tmp_shares[q];
  int hi = lo + s->tmp_shares[r];
  int classes = s->arch.classes;
  float *logits = malloc((size_t)s->micro * (size_t)classes * sizeof *logits);
  if (!logits) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  double correct = 0;
  ct_status st = CT_OK;
  for (int b = lo; b < hi; b += s->micro) {
    int m = hi - b < s->micro ? hi - b : s->micro;
    for (int i = 0; i < m; i++) s->eval_idx[i] = b + i;
    ct_dataset_gather(&s->test, s->eval_idx, m, s->cfg->norm_mean, s->cfg->norm_std, s->eval_x,
                      s->eval_y);
    CT_GOTO(ct_model_set_batch(&s->model, s->eval_x, s->eval_y, m), st, out);
    CT_GOTO(ct_model_forward(&s->model, m, 0, 0), st, out);
    CT_GOTO(ct_model_read_logits(&s->model, m, logits), st, out);
    for (int i = 0; i < m; i++) {
      const float *l = logits + (size_t)i * (size_t)classes;
      int best = 0;
      for (int c = 1; c < classes; c++)
        if (l[c] > l[best]) best = c;
      correct += best == s->eval_y[i];
    }
  }
  double tot[2] = {correct, (double)(hi - lo)};
  if (world > 1) CT_GOTO(ct_comm_allreduce_double_sum(s->comm, tot, 2), st, out);
  *acc = tot[1] > 0 ? tot[0] / tot[1] : 0;
out:
  free(logits);
  s->res->eval_s += ct_now() - t0;
  return st;
}

// Parameters identical on every rank: compare the checksum of the bytes.
static ct_status check_replicas(run_state *s, const char *when, int *diverged) {
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
        fprintf(stderr, "cltrain: replicas differ %s: rank %d has parameter checksum %016llx, rank 0 %016llx\n",
                when, r, (unsigned long long)all[r], (unsigned long long)all[0]);
    }
  free(all);
  return CT_OK;
}

static ct_status shard_gather_state(run_state *s);

static ct_status resync(run_state *s) {
  CT_TRY(shard_gather_state(s));
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

// Compares the replicas and applies --on-divergence: warn, resync from rank 0, or abort.
static ct_status replica_check(run_state *s, const char *when) {
  int div;
  CT_TRY(check_replicas(s, when, &div));
  if (!div) return CT_OK;
  s->res->divergences++;
  if (s->cfg->on_divergence == CT_DIVERGE_ABORT)
    return CT_FAIL(CT_ERR_MISMATCH, "replicas diverged %s (--on-divergence abort)", when);
  if (s->cfg->on_divergence == CT_DIVERGE_RESYNC) {
    CT_TRY(resync(s));
    say(s, "cltrain: replicas resynchronised from rank 0 %s\n", when);
  }
  return CT_OK;
}

static ct_status save_params_file(run_state *s, const char *path) {
  CT_TRY(ct_model_download_params(&s->model, s->host_params));
  if (!R0) return CT_OK;
  return ct_write_file_atomic(path, s->host_params, s->arch.param_count * sizeof(float));
}

// --save-safetensors: the final weights with PyTorch's names and layouts (export.h), atomically.
static ct_status save_safetensors_file(run_state *s, const char *path) {
  CT_TRY(ct_model_download_params(&s->model, s->host_params));
  if (!R0) return CT_OK;
  void *buf;
  size_t bytes;
  CT_TRY(ct_safetensors_build(&s->arch, s->host_params, s->cfg->norm_mean, s->cfg->norm_std, &buf,
                              &bytes));
  ct_status st = ct_write_file_atomic(path, buf, bytes);
  free(buf);
  if (st != CT_OK)
    st = ct_error_replace(st, __FILE__, __LINE__, "--save-safetensors: %s", ct_error_text());
  return st;
}

// An output path whose folder cannot take a file fails before training, not after it.
static ct_status check_output_path(run_state *s, const char *flag, const char *path) {
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

// ---- setup ------------------------------------------------------------------------------------

// Whether the device's plan table has a plan of exactly this shape for every GEMM in shapes.
static int all_planned(const ct_device *dev, const ct_tune_shape *shapes, int n) {
  const struct ct_blas_state *b = dev->blas;
  for (int i = 0; i < n; i++) {
    int found = 0;
    for (int j = 0; j < b->nplans && !found; j++) {
      const ct_gemm_plan *p = &b->plans[j];
      found = p->ta == shapes[i].ta && p->tb == shapes[i].tb && p->m == shapes[i].m &&
              p->n == shapes[i].n && p->k == shapes[i].k;
    }
    if (!found) return 0;
  }
  return 1;
}

// This rank's GEMM choices: the device's tuning cache, and with --tune a tuning run first when
// the cache is missing or has no plan for some of this model's products (they are added to it).
// Ranks take turns, so that ranks sharing a machine do not disturb each other's measurements
// and a second rank on the same kind of device finds the first one's cache.
static ct_status gemm_setup(run_state *s) {
  ct_comm *comm = s->comm;
  ct_status st = CT_OK;
  for (int r = 0; r < comm->size; r++) {
    if (r == comm->rank) {
      int status;
      char warning[1024];
      st = ct_tune_load(&s->dev, &status, warning, sizeof warning);
      if (st == CT_OK && status < 0)
        fprintf(stderr, "cltrain: rank %d: warning: %s\n", comm->rank, warning);
      if (st == CT_OK && s->cfg->tune) {
        int acc = s->cfg->accumulate > 1 ? s->cfg->accumulate : 1;
        int batches[2] = {s->micro, (s->cfg->batch / comm->size + acc - 1) / acc};
        ct_tune_shape *shapes = NULL;
        int n = 0;
        st = ct_tune_model_shapes(&s->dev, &s->arch, batches, batches[1] != batches[0] ? 2 : 1,
                                  &shapes, &n);
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
              fprintf(stderr, "cltrain: rank %d: tuned %d GEMM shapes, wrote %s\n", comm->rank,
                      n, path);
            ct_tune_cache_free(&c);
          }
        }
        free(shapes);
      }
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

// The share weights, and the largest share a rank can get (the model's batch): even: equal
// weights; static: the given ones; throughput: equal at first, then measured (any rank may get
// up to the whole batch); auto: throughput when the ranks' devices differ, else even.
static ct_status balance_setup(run_state *s) {
  const ct_train_config *cfg = s->cfg;
  int world = s->comm->size;
  ct_balance kind = cfg->balance;
  if (kind == CT_BALANCE_STATIC && cfg->n_static_weights != world)
    return CT_FAIL(CT_ERR_USAGE, "--balance: static:W0,W1,... needs %d weights (one per rank), "
                   "got %d", world, cfg->n_static_weights);
  if (kind == CT_BALANCE_AUTO) {
    kind = CT_BALANCE_EVEN;
    if (world > 1) {   // the same model everywhere? platform and device names compared
      char id[300];
      snprintf(id, sizeof id, "%s|%s", s->dev.info.platform_name, s->dev.info.name);
      uint64_t h = 0xcbf29ce484222325ULL;   // FNV-1a of the text
      for (const char *p = id; *p; p++) h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
      uint64_t *all = malloc((size_t)world * sizeof *all);
      if (!all) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
      int rc = MPI_Allgather(&h, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, s->comm->comm);
      int differ = 0;
      for (int r = 1; r < world; r++) differ |= all[r] != all[0];
      free(all);
      if (rc != MPI_SUCCESS)
        return CT_FAIL(CT_ERR_MPI, "MPI_Allgather of device identities failed on rank %d",
                       s->comm->rank);
      if (differ) kind = CT_BALANCE_THROUGHPUT;
    }
  }
  for (int r = 0; r < world; r++)
    s->weights[r] = kind == CT_BALANCE_STATIC ? (uint32_t)cfg->static_weights[r] : 1u;
  s->balancing = kind == CT_BALANCE_THROUGHPUT && world > 1;
  s->balance_kind = kind;
  if (s->balancing) {
    s->max_share = cfg->batch;
  } else {
    full_shares(s, s->weights, s->tmp_shares);
    s->max_share = 1;
    for (int r = 0; r < world; r++)
      if (s->tmp_shares[r] > s->max_share) s->max_share = s->tmp_shares[r];
    // a shorter batch (the epoch's last) never gives a rank more: floor(n w / W) + 1 at most
    for (int r = 0; r < world; r++) {
      uint64_t tot = 0;
      for (int q = 0; q < world; q++) tot += s->weights[q];
      int bound = (int)((uint64_t)cfg->batch * s->weights[r] / tot) + 1;
      if (bound > s->max_share) s->max_share = bound;
    }
    if (s->max_share > cfg->batch) s->max_share = cfg->batch;
  }
  return CT_OK;
}

static ct_status prebuild_share_sizes(run_state *s);
static ct_status shard_setup(run_state *s);
static ct_status metrics_open(run_state *s);
static ct_status check_output_path(run_state *s, const char *flag, const char *path);

// --shard-update (sync, no buckets, fp32 on the wire, every rank's device sharing host memory):
// the gradients are reduce-scattered, rank r applies the optimizer to the parameters of the
// ring's segment r+1 only, and the parameters are all-gathered (the owner's values, copied).
// Every element goes through the same operations as when every rank updates everything, so the
// bits are the same; what changes is that each rank runs 1/N of the update (on a CPU device a
// few % of a step, taken from the cores that compute), and that the optimizer state of the
// other segments is not kept current on this rank: it is gathered before a checkpoint or a
// resync, the only readers of the whole state. Devices with their own memory keep the whole
// update (the halves of the ring run on host memory, and staging them would add a copy each
// way). Collective.
static ct_status shard_setup(run_state *s) {
  const ct_train_config *cfg = s->cfg;
  int N = s->comm->size, r = s->comm->rank;
  int bad = !ct_allreduce_zero_copy(s->ar);
  CT_TRY(ct_comm_allreduce_int_max(s->comm, &bad, 1));   // every rank, or none
  // (a 16-bit wire is for slow links: the parameters' all-gather in fp32 would send 1.5 times
  // the bytes of the gradients' in fp16)
  s->shard = cfg->shard_update && cfg->sync == CT_SYNC_SYNC && !(cfg->bucket_mb > 0) &&
             cfg->wire == CT_WIRE_FP32 && !bad;
  if (!s->shard) return CT_OK;
  size_t lo, hi;
  ct_ring_segment(REDUCED(s), N, (r + 1) % N, &lo, &hi);
  s->sh_lo = lo < s->P ? lo : s->P, s->sh_hi = hi < s->P ? hi : s->P;
  if (r == 0) {
    printf("cltrain: optimizer update sharded over %d ranks (reduce-scatter, each rank its "
           "segment of about %zu parameters, all-gather)\n", N, REDUCED(s) / (size_t)N);
    fflush(stdout);
  }
  return CT_OK;
}

// The optimizer state of every segment from its owner (before a checkpoint or a resync reads
// it whole). Collective.
static ct_status shard_gather_state(run_state *s) {
  if (!s->shard) return CT_OK;
  ct_ring_opts o = {.total = REDUCED(s), .part = CT_RING_ALL_GATHER, .idle = 1};
  for (size_t off = 0; off < s->opt.state_count; off += s->P)
    CT_TRY(ct_allreduce_device_after(s->ar, s->opt.state, off, s->P, NULL, NULL, 0, 0, &o,
                                     NULL));
  return CT_OK;
}

// --bucket-mb X: the gradients cut into windows of whole groups of tensors (the tensors whose
// gradients complete together: a layer's weight and bias), from the end of the parameter
// buffer back, each closed once it holds X MiB (the first tensors' remainder is the last
// window). The tensor table lays the parameters out so that the later a tensor's gradient is
// complete in backward, the nearer the buffer's start it lies: every window is contiguous and
// ready once its earliest-placed group is.
static ct_status bucket_setup(run_state *s) {
  double cap_f = s->cfg->bucket_mb * 1048576.0 / sizeof(float);
  size_t cap = cap_f < 1 ? 1 : (size_t)cap_f, hi = s->P;
  const ct_arch *a = &s->arch;
  int open = -1;   // the window's group that completes last (its first tensor), if any
  s->nb = 0;
  for (int t = a->nt - 1; t >= 0; t--) {
    if (t > 0 && a->tensors[t - 1].last_writer == a->tensors[t].last_writer)
      continue;   // not the group's first tensor
    size_t lo = a->tensors[t].off;
    open = t;
    if (hi - lo >= cap) {
      if (s->nb == CT_MAX_BUCKETS)
        return CT_FAIL(CT_ERR_USAGE, "--bucket-mb %g: more than %d buckets", s->cfg->bucket_mb,
                       CT_MAX_BUCKETS);
      s->bk_lo[s->nb] = lo, s->bk_hi[s->nb] = hi, s->bk_tensor[s->nb] = t;
      s->nb++;
      hi = lo;
      open = -1;
    }
  }
  if (hi > 0 && open >= 0) {
    if (s->nb == CT_MAX_BUCKETS)
      return CT_FAIL(CT_ERR_USAGE, "--bucket-mb %g: more than %d buckets", s->cfg->bucket_mb,
                     CT_MAX_BUCKETS);
    s->bk_lo[s->nb] = 0, s->bk_hi[s->nb] = hi, s->bk_tensor[s->nb] = open;
    s->nb++;
  } else if (hi > 0 && s->nb > 0) {   // (parameters below the first tensor's: none in practice)
    s->bk_lo[s->nb - 1] = 0;
  }
  // markers per layer; with --accumulate the gradients are complete only after the last chunk's
  // addition, so every window waits for the compute's end (no overlap, the same bits)
  s->model.mark_grads = s->cfg->accumulate <= 1;
  if (s->comm->rank == 0 && s->nb > 0) {
    printf("cltrain: gradients in %d bucket%s of about %.2f MiB (reduced while backward runs):",
           s->nb, s->nb == 1 ? "" : "s", s->cfg->bucket_mb);
    for (int b = 0; b < s->nb; b++)
      printf(" [%zu, %zu)", s->bk_lo[b], s->bk_hi[b]);
    printf("\n");
    fflush(stdout);
  }
  return CT_OK;
}

// --profile with --trace: each device command on the timeline, its OpenCL event times mapped
// onto the host's clock (clock_setup), under the step that enqueued it.
static void trace_device(void *ctx, const char *name, ct_prof_kind kind, long tag, cl_ulong start,
                         cl_ulong end) {
  run_state *s = ctx;
  (void)kind;
  ct_trace_span_step(&s->trace, CT_TRACE_DEVICE, name, (double)start * 1e-9 + s->clock_off,
                     (double)end * 1e-9 + s->clock_off, tag);
}

// The device's profiling clock against the host's: a marker's end time lies between the host
// times before and after waiting for it; the trial with the tightest bracket wins.
static ct_status clock_setup(run_state *s) {
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

// Weight decay follows the tensor table: the runs of tensors that the table says not to decay.
static ct_status optim_decay_setup(run_state *s) {
  const ct_arch *a = &s->arch;
  size_t *lo = malloc((size_t)(a->nt + 1) * 2 * sizeof *lo), *hi = lo ? lo + a->nt + 1 : NULL;
  if (!lo) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  int n = 0;
  for (int t = 0; t < a->nt; t++) {
    const ct_tensor *x = &a->tensors[t];
    if (x->decay) continue;
    if (n > 0 && hi[n - 1] == x->off) hi[n - 1] += x->count;
    else lo[n] = x->off, hi[n] = x->off + x->count, n++;
  }
  ct_status st = ct_optim_set_no_decay(&s->opt, lo, hi, n);
  free(lo);
  return st;
}

// Opens this rank's device. A spec that is wrong for one rank only (ambiguous on its node, say)
// is a usage error of the whole job: every rank returns the lowest such rank's message, so that
// rank 0 says it once and no rank waits in a collective for one that has gone.
static ct_status open_device(run_state *s) {
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

static ct_status setup(run_state *s) {
  const ct_train_config *cfg = s->cfg;
  ct_comm *comm = s->comm;
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
  if (cfg->batch > s->train.count)
    return CT_FAIL(CT_ERR_USAGE, "--batch: %d%s is larger than the training set (%d samples)",
                   cfg->batch, cfg->accumulate > 1 ? " (x --accumulate)" : "", s->train.count);
  if (cfg->batch < comm->size)
    return CT_FAIL(CT_ERR_USAGE, "--batch: %d is smaller than the number of ranks (%d)",
                   cfg->batch, comm->size);
  CT_TRY(ct_arch_parse(cfg->arch, s->train.channels, s->train.rows, s->train.cols,
                       s->train.classes, &s->arch));
  CT_TRY(open_device(s));
  CT_TRY(metrics_open(s));
  if (cfg->trace) CT_TRY(ct_trace_init(&s->trace, cfg->trace_first, cfg->trace_last));
  if (cfg->save_safetensors)
    CT_TRY(check_output_path(s, "--save-safetensors", cfg->save_safetensors));

  s->P = s->arch.param_count;
  s->tail = 2 + (size_t)comm->size;
  int world = comm->size;
  s->weights = calloc((size_t)world, sizeof *s->weights);
  s->new_weights = calloc((size_t)world, sizeof *s->new_weights);
  s->prev_weights = calloc((size_t)world, sizeof *s->prev_weights);
  s->proposal = calloc((size_t)world, sizeof *s->proposal);
  if (s->proposal) s->proposal[0] = -1;
  s->seen_shares = calloc((size_t)world, sizeof *s->seen_shares);
  s->bal_hold = 100;
  s->est = calloc((size_t)world, sizeof *s->est);
  s->fit = calloc(2 * (size_t)world, sizeof *s->fit);
  s->tmp_shares = calloc((size_t)world, sizeof *s->tmp_shares);
  s->tmp_shares2 = calloc((size_t)world, sizeof *s->tmp_shares2);
  s->avg_words = calloc(4 + 2 * (size_t)world, sizeof *s->avg_words);
  s->avg_ms = calloc((size_t)world, sizeof *s->avg_ms);
  s->avg_shares = calloc((size_t)world, sizeof *s->avg_shares);
  s->cur.shares = calloc((size_t)world, sizeof(int));
  s->pend.shares = calloc((size_t)world, sizeof(int));
  if (!s->weights || !s->new_weights || !s->prev_weights || !s->proposal || !s->seen_shares || !s->est || !s->fit || !s->tmp_shares || !s->tmp_shares2 ||
      !s->avg_words || !s->avg_ms || !s->avg_shares || !s->cur.shares || !s->pend.shares)
    return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  CT_TRY(balance_setup(s));
  {
    int acc = cfg->accumulate > 1 ? cfg->accumulate : 1;
    s->micro = (s->max_share + acc - 1) / acc;
  }
  size_t in = (size_t)s->train.channels * (size_t)s->train.rows * (size_t)s->train.cols;
  size_t ms = (size_t)s->max_share;
  for (int k = 0; k < 2; k++) {
    s->slots[k].mine = malloc(ms * sizeof(int));
    s->slots[k].x = malloc(ms * in * sizeof(float));
    s->slots[k].y = malloc(ms * sizeof(int));
    s->slots[k].weights = calloc((size_t)world, sizeof(uint32_t));
    s->slots[k].shares = calloc((size_t)world, sizeof(int));
    s->status[k].host = malloc(s->tail * sizeof(float));
    s->status[k].shares = calloc((size_t)world, sizeof(int));
    if (!s->slots[k].mine || !s->slots[k].x || !s->slots[k].y || !s->status[k].host ||
        !s->slots[k].weights || !s->slots[k].shares || !s->status[k].shares)
      return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  }
  s->eval_idx = malloc(ms * sizeof *s->eval_idx);
  s->eval_x = malloc(ms * in * sizeof *s->eval_x);
  s->eval_y = malloc(ms * sizeof *s->eval_y);
  s->tail_host = calloc((size_t)world, sizeof *s->tail_host);
  s->host_params = malloc(s->arch.param_count * sizeof *s->host_params);
  s->load.order = malloc((size_t)s->train.count * sizeof *s->load.order);
  if (!s->eval_idx || !s->eval_x || !s->eval_y || !s->tail_host || !s->host_params ||
      !s->load.order)
    return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  if (REDUCED(s) + 1 > 0xffffffffULL)
    return CT_FAIL(CT_ERR_USAGE, "the model has %zu parameters; at most 2^32 - %zu are supported",
                   s->P, s->tail + 1);

  CT_TRY(gemm_setup(s));
  if (cfg->profile) CT_TRY(ct_prof_init(&s->dev));
  CT_TRY(ct_model_init_tail(&s->dev, &s->arch, s->micro, s->tail, &s->model));
  if (cfg->accumulate > 1) {
    cl_int err;
    CL_CHECK((s->acc = ct_device_buffer(&s->dev, (s->P + s->tail) * sizeof(float), &err), err));
  }
  s->gbuf[0] = s->gbuf[1] = s->model.grads;
  if (cfg->sync == CT_SYNC_STALE) {   // a second gradient buffer: one reduced while one computed
    cl_int err;
    CL_CHECK((s->gbuf[1] = ct_device_buffer(&s->dev, (s->P + s->tail) * sizeof(float), &err), err));
  }
  CT_TRY(ct_optim_init(&s->dev, &cfg->optim, s->arch.param_count, &s->opt));
  CT_TRY(optim_decay_setup(s));
  if (cfg->sync == CT_SYNC_STALE && cfg->optim.kind == CT_OPT_SGD &&
      !(getenv("CLTRAIN_STALE_NO_PREDICT") && *getenv("CLTRAIN_STALE_NO_PREDICT"))) {
    cl_int err;
    CL_CHECK((s->pred = ct_device_buffer(&s->dev, s->P * sizeof(float), &err), err));
  }
  CT_TRY(prebuild_share_sizes(s));
  if (comm->size > 1) {   // (one float more: the sharded update's status window, shard_setup)
    CT_TRY(ct_allreduce_init(comm, &s->dev, REDUCED(s) + 1, 0, &s->ar));
    CT_TRY(ct_allreduce_agree(s->ar, REDUCED(s) + 1));
  }
  s->wire = (ct_ring_opts){.wire = (ct_wire)cfg->wire, .wire_n = s->P};
  if (comm->size > 1) CT_TRY(shard_setup(s));
  if (comm->size > 1 && cfg->bucket_mb > 0 && cfg->sync == CT_SYNC_SYNC) CT_TRY(bucket_setup(s));
  if ((comm->size > 1 && cfg->sync == CT_SYNC_STALE) || (cfg->profile && cfg->trace)) {
    CT_TRY(clock_setup(s));
    if (cfg->profile && cfg->trace) ct_prof_set_sink(&s->dev, trace_device, s);
  }
  s->load.train = &s->train;
  s->load.cfg = cfg;
  s->load.world = comm->size;
  s->load.rank = comm->rank;
  CT_TRY(loader_start(&s->load));
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
static ct_status prebuild_share_sizes(run_state *s) {
  int world = s->comm->size, rank = s->comm->rank, n = 0, want[4];
  full_shares(s, s->weights, s->tmp_shares);
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
  // the chunk sizes phase_compute runs each share in (--accumulate): full chunks and the rest
  int sizes[8], ns = 0;
  for (int i = 0; i < n; i++) {
    int c[2] = {want[i] < s->micro ? want[i] : s->micro,
                want[i] > s->micro ? want[i] % s->micro : 0};
    for (int k = 0; k < 2; k++) {
      int dup = c[k] <= 0;
      for (int j = 0; j < ns && !dup; j++) dup = sizes[j] == c[k];
      if (!dup) sizes[ns++] = c[k];
    }
  }
  if (ns == 0) return CT_OK;
  int most = 0;
  for (int i = 0; i < ns; i++)
    if (sizes[i] > most) most = sizes[i];
  size_t in = (size_t)s->train.channels * (size_t)s->train.rows * (size_t)s->train.cols;
  float *x = calloc((size_t)most * in, sizeof *x);
  int *y = calloc((size_t)most, sizeof *y);
  if (!x || !y) {
    free(x), free(y);
    return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  }
  struct ct_prof *saved = s->dev.prof;   // not part of any profile
  s->dev.prof = NULL;
  s->model.grads = s->gbuf[0];
  s->model.sample_offset = 0;
  ct_status st = CT_OK;
  for (int k = 0; k < ns && st == CT_OK; k++) {
    st = ct_model_set_batch(&s->model, x, y, sizes[k]);
    if (st == CT_OK) st = ct_model_forward(&s->model, sizes[k], 1, 0);
    if (st == CT_OK) st = ct_model_backward(&s->model, sizes[k], 1.0f / (float)s->cfg->batch);
  }
  cl_int err = clFinish(s->dev.queue);
  s->dev.prof = saved;
  free(x), free(y);
  CT_TRY(st);
  if (err != CL_SUCCESS)
    return CT_FAIL(CT_ERR_CL, "clFinish(building the kernels of the share sizes) failed: %s",
                   ct_cl_errname(err));
  return CT_OK;
}

static void teardown(run_state *s) {
  ct_trace_free(&s->trace);
  ct_metrics_close(&s->metrics);
  free(s->devices_json);
  s->devices_json = NULL;
  loader_stop(&s->load);
  if (s->dev.queue) clFinish(s->dev.queue);
  for (int k = 0; k < 2; k++) {
    if (s->slots[k].written) clReleaseEvent(s->slots[k].written);
    if (s->status[k].ev) clReleaseEvent(s->status[k].ev);
    free(s->slots[k].mine), free(s->slots[k].x), free(s->slots[k].y);
    free(s->slots[k].weights), free(s->slots[k].shares);
    free(s->status[k].host), free(s->status[k].shares);
  }
  computed *cs[2] = {&s->cur, &s->pend};
  for (int k = 0; k < 2; k++) {
    if (cs[k]->begin) clReleaseEvent(cs[k]->begin);
    if (cs[k]->end) clReleaseEvent(cs[k]->end);
    free(cs[k]->shares);
  }
  if (s->gbuf[1] && s->gbuf[1] != s->gbuf[0]) clReleaseMemObject(s->gbuf[1]);
  if (s->pred) clReleaseMemObject(s->pred);
  if (s->acc) clReleaseMemObject(s->acc);
  if (s->compute_end) clReleaseEvent(s->compute_end);
  if (s->pred_done) clReleaseEvent(s->pred_done);
  if (s->pend_map_ev) clReleaseEvent(s->pend_map_ev);
  s->model.grads = s->gbuf[0] ? s->gbuf[0] : s->model.grads;   // the model frees its own
  free(s->weights), free(s->new_weights), free(s->prev_weights), free(s->proposal), free(s->seen_shares), free(s->est), free(s->fit), free(s->tmp_shares), free(s->tmp_shares2);
  free(s->avg_words), free(s->avg_ms), free(s->avg_shares);
  if (s->ar) ct_allreduce_free(s->ar);
  if (s->opt.dev) ct_optim_free(&s->opt);
  if (s->model.dev) ct_model_free(&s->model);
  if (s->dev.ctx) ct_device_close(&s->dev);
  ct_dataset_free(&s->train);
  ct_dataset_free(&s->test);
  free(s->eval_idx), free(s->eval_x), free(s->eval_y), free(s->tail_host);
  free(s->host_params), free(s->load.order);
}

// Rank 0 prints which device each rank trains on, and where its GEMM choices come from.
static ct_status report_devices(run_state *s) {
  enum { W = 1024 };
  char mine[W];
  const struct ct_blas_state *b = s->dev.blas;
  char host[MPI_MAX_PROCESSOR_NAME + 1] = "?";
  int hlen = 0;
  if (MPI_Get_processor_name(host, &hlen) != MPI_SUCCESS) hlen = 0;
  host[hlen > 0 ? hlen : 1] = 0;
  // which node (hostfile order of first ranks) and local rank: the device follows the local rank
  snprintf(mine, W, "%d:%d %s [%s] (node %d of %d, %s, local rank %d), GEMMs: %s",
           s->dev.info.platform, s->dev.info.index, s->dev.info.name, s->dev.info.platform_name,
           s->comm->node, s->comm->nodes, host, s->comm->local_rank,
           b->nplans ? b->source : "defaults (no tuning cache: cltrain-tune, or --tune)");
  char *all = R0 ? malloc((size_t)s->comm->size * W) : NULL;
  if (R0 && !all) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  int rc = MPI_Gather(mine, W, MPI_CHAR, all, W, MPI_CHAR, 0, s->comm->comm);
  if (rc != MPI_SUCCESS) {
    free(all);
    return CT_FAIL(CT_ERR_MPI, "MPI_Gather of device names failed on rank %d", s->comm->rank);
  }
  for (int r = 0; R0 && r < s->comm->size; r++) say(s, "cltrain: rank %d on %s\n", r, all + (size_t)r * W);
  // the same as JSON, for the metrics' first record
  ct_json j;
  ct_json_begin(&j);
  ct_json_int(&j, "rank", s->comm->rank);
  ct_json_int(&j, "node", s->comm->node);
  ct_json_str(&j, "host", host);
  ct_json_int(&j, "local_rank", s->comm->local_rank);
  ct_json_str(&j, "platform", s->dev.info.platform_name);
  ct_json_str(&j, "device", s->dev.info.name);
  ct_json_str(&j, "vendor", s->dev.info.vendor);
  ct_json_str(&j, "driver", s->dev.info.driver);
  ct_json_str(&j, "opencl", s->dev.info.version);
  ct_json_str(&j, "gemm_plans", b->nplans ? b->source : "");
  ct_status st = ct_json_end(&j);
  snprintf(mine, W, "%s", st == CT_OK && j.len < W ? j.buf : "{}");
  free(j.buf);
  rc = MPI_Gather(mine, W, MPI_CHAR, all, W, MPI_CHAR, 0, s->comm->comm);
  if (rc != MPI_SUCCESS) {
    free(all);
    return CT_FAIL(CT_ERR_MPI, "MPI_Gather of device records failed on rank %d", s->comm->rank);
  }
  if (R0) {
    ct_json arr = {0};   // the items, comma-separated
    for (int r = 0; r < s->comm->size; r++) ct_json_raw(&arr, NULL, all + (size_t)r * W);
    free(s->devices_json);
    s->devices_json = NULL;
    if (!arr.oom && arr.buf) {
      size_t n = arr.len + 3;
      s->devices_json = malloc(n);
      if (s->devices_json) snprintf(s->devices_json, n, "[%s]", arr.buf);
    }
    free(arr.buf);
  }
  free(all);
  return CT_OK;
}

// ---- the phases of a step -----------------------------------------------------------------------

static ct_status enqueue_1d(run_state *s, cl_kernel k, const char *name, size_t global,
                            size_t local) {
  CL_CHECK(clEnqueueNDRangeKernel(s->dev.queue, k, 1, NULL, &global, local ? &local : NULL, 0,
                                  NULL, ct_prof_event(&s->dev, name, 0, CT_PROF_KERNEL)));
  return CT_OK;
}

static void release_event(cl_event *e) {
  if (*e) clReleaseEvent(*e);
  *e = NULL;
}

// compute: upload, forward, backward into `grads`, this rank's loss sum into its status words.
// c records what apply and reduce need later (the slot is refilled by the loader meanwhile).
static ct_status phase_compute(run_state *s, slot *b, cl_mem grads, computed *c) {
  const ct_train_config *cfg = s->cfg;
  ct_model *m = &s->model;
  release_event(&b->written);   // not possible (the loader waited), but never leak an event
  c->step = b->step, c->n = b->n, c->m = b->m, c->grads = grads;
  memcpy(c->shares, b->shares, (size_t)s->comm->size * sizeof *c->shares);
  release_event(&c->begin);
  release_event(&c->end);
  if (cfg->sync == CT_SYNC_STALE)
    CL_CHECK(clEnqueueMarkerWithWaitList(s->dev.queue, 0, NULL, &c->begin));
  // the loss is scaled by the GLOBAL batch (local SGD: by this rank's own share)
  float scale = cfg->sync == CT_SYNC_LOCAL ? (b->m > 0 ? 1.0f / (float)b->m : 1.0f)
                                           : 1.0f / (float)b->n;
  // The share in chunks of at most s->micro rows (one chunk unless --accumulate): the first
  // chunk's gradients and loss sum go straight into `grads`, each later chunk's into s->acc and
  // are added to them (the step's gradient is the sum over its samples, in chunk order).
  size_t in = (size_t)s->train.channels * (size_t)s->train.rows * (size_t)s->train.cols;
  for (int lo = 0; lo == 0 || lo < b->m; lo += s->micro) {
    int rows = b->m - lo < s->micro ? b->m - lo : s->micro;
    cl_mem dst = lo == 0 ? grads : s->acc;
    m->grads = dst;
    release_event(&b->written);   // the last chunk's write covers the earlier ones (in order)
    CT_TRY(ct_model_set_batch_async(m, b->x + (size_t)lo * in, b->y + lo, rows, &b->written));
    m->sample_offset = b->offset + lo;
    CT_TRY(ct_model_forward(m, rows, 1, cfg->seed * 0x9E3779B97F4A7C15ULL + (uint64_t)b->step));
    CT_TRY(ct_model_backward(m, rows, scale));
    cl_kernel k;
    CT_TRY(ct_kernel(&s->dev, "util", "loss_sum_f32", &k));
    size_t wg = 1;   // one work-group, a power of two up to 256
    while (wg * 2 <= s->dev.info.max_wg && wg < 256) wg *= 2;
    cl_uint n = (cl_uint)rows, loss_at = (cl_uint)AT_LOSS(s), count_at = (cl_uint)AT_COUNT(s);
    CL_CHECK(clSetKernelArg(k, 0, sizeof m->losses, &m->losses));
    CL_CHECK(clSetKernelArg(k, 1, sizeof n, &n));
    CL_CHECK(clSetKernelArg(k, 2, sizeof dst, &dst));
    CL_CHECK(clSetKernelArg(k, 3, sizeof loss_at, &loss_at));
    CL_CHECK(clSetKernelArg(k, 4, sizeof count_at, &count_at));
    CT_TRY(enqueue_1d(s, k, "loss_sum_f32", wg, wg));
    if (lo > 0) {   // grads[0 .. P] += acc[0 .. P] (gradients and loss sum)
      CT_TRY(ct_kernel(&s->dev, "util", "axpy_f32", &k));
      cl_uint len = (cl_uint)(AT_LOSS(s) + 1);
      float one = 1.0f;
      CL_CHECK(clSetKernelArg(k, 0, sizeof grads, &grads));
      CL_CHECK(clSetKernelArg(k, 1, sizeof s->acc, &s->acc));
      CL_CHECK(clSetKernelArg(k, 2, sizeof len, &len));
      CL_CHECK(clSetKernelArg(k, 3, sizeof one, &one));
      CT_TRY(enqueue_1d(s, k, "axpy_f32", ((size_t)len + 255) / 256 * 256, 0));
    }
    if (b->m == 0) break;
  }
  m->grads = grads;
  if (cfg->inject_nan_step >= 0 && b->step >= cfg->inject_nan_step &&
      b->step < cfg->inject_nan_step + cfg->inject_nan_count && s->comm->rank == cfg->inject_nan_rank) {
    // poison this rank's gradients: the guard must catch it on every rank
    CT_TRY(ct_fill(&s->dev, grads, 1, NAN));
  }
  if (cfg->sync == CT_SYNC_STALE)
    CL_CHECK(clEnqueueMarkerWithWaitList(s->dev.queue, 0, NULL, &c->end));
  if (s->nb > 0) {   // buckets: the events their reductions wait for
    release_event(&s->compute_end);
    CL_CHECK(clEnqueueMarkerWithWaitList(s->dev.queue, 0, NULL, &s->compute_end));
    for (int k = 0; k < s->nb; k++)
      s->bk_ev[k] = s->model.mark_grads && s->bk_lo[k] > 0
                        ? ct_model_tensor_ready(&s->model, s->bk_tensor[k])
                        : s->compute_end;
  }
  if (cfg->sync != CT_SYNC_STALE) CL_CHECK(clFlush(s->dev.queue));
  if (s->comm->rank == cfg->inject_slow_rank && cfg->inject_slow_us > 0 && b->m > 0)
    usleep((useconds_t)(cfg->inject_slow_us * b->m));   // a slower device, for the tests
  return CT_OK;
}

// The device time of a computed step (stale: between its two markers), in seconds. The tests'
// slower device (CLTRAIN_INJECT_SLOW_*) sleeps on the host after enqueueing the step, which
// the device's markers do not see: its time is added here, so that stale mode measures the
// injected device as slow as sync mode does (where the host's clock spans the sleep).
static ct_status marker_seconds(run_state *s, computed *c, double *sec) {
  cl_ulong t0 = 0, t1 = 0;
  CL_CHECK(clWaitForEvents(1, &c->end));
  CL_CHECK(clGetEventProfilingInfo(c->begin, CL_PROFILING_COMMAND_END, sizeof t0, &t0, NULL));
  CL_CHECK(clGetEventProfilingInfo(c->end, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL));
  *sec = t1 > t0 ? (double)(t1 - t0) * 1e-9 : 0.0;
  if (s->comm->rank == s->cfg->inject_slow_rank && s->cfg->inject_slow_us > 0)
    *sec += s->cfg->inject_slow_us * 1e-6 * c->m;
  return CT_OK;
}

// reduce (N > 1): [gradients | loss | compute times] of step c summed over the ranks. sync: after
// the device finished it (the step's host time is its compute time); stale: while the device
// computes the next step (its own marker time is the compute time).
static cl_int event_status(cl_event ev, cl_int *stat) {
  cl_int err = clGetEventInfo(ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof *stat, stat, NULL);
  return err == CL_SUCCESS && *stat < 0 ? *stat : err;
}

// reduce with buckets (sync): each window's reduction starts as soon as backward has written it
// and moves on (ct_allreduce_test) while the device computes the layers before it; up to
// CT_ALLREDUCE_INFLIGHT windows in flight. The status words go last, once compute is done.
// Every element is summed in the order of one reduction of the whole range (windows of one
// layout): the same bits as --bucket-mb 0. Exposed: the time from the device's end of compute
// (seen by polling its marker between ring moves) to the end of the last reduction.
static void bucket_span(run_state *s, int k, double t0) {
  char name[40];
  snprintf(name, sizeof name, "bucket %d (%.2f MB)", k,
           (double)(s->bk_hi[k] - s->bk_lo[k]) * sizeof(float) / 1e6);
  ct_trace_span(&s->trace, 1, name, t0, ct_now());
}

static ct_status reduce_buckets(run_state *s, computed *c, double t_start, double *compute_s) {
  ct_comm *comm = s->comm;
  int nb = s->nb, next = 0, first = 0;
  ct_allreduce_req *q[CT_MAX_BUCKETS];
  cl_event fin[CT_MAX_BUCKETS];
  double t_bk[CT_MAX_BUCKETS];
  double t_done = 0, t2 = ct_now();
  ct_status st = CT_OK;
  cl_int err, stat;
  while (first < nb) {
    if (!t_done) {
      CL_CHECK(event_status(s->compute_end, &stat));
      if (stat == CL_COMPLETE) t_done = ct_now();
    }
    if (next < nb && next - first < CT_ALLREDUCE_INFLIGHT) {
      if (first == next) {   // nothing in flight: sleep until the next window is written
        CL_CHECK(clWaitForEvents(1, &s->bk_ev[next]));
        if (!t_done && s->bk_ev[next] == s->compute_end) t_done = ct_now();
      }
      CL_CHECK(event_status(s->bk_ev[next], &stat));
      if (stat == CL_COMPLETE) {
        ct_ring_opts o = s->wire;
        o.total = REDUCED(s), o.base = s->bk_lo[next];
        t_bk[next] = ct_now();
        CT_TRY(ct_allreduce_start(s->ar, c->grads, s->bk_lo[next], s->bk_hi[next] - s->bk_lo[next],
                                  s->bk_ev[next], &o, &q[next]));
        next++;
        continue;
      }
    }
    if (next == nb) {   // every window started: finish the oldest (waiting in the ring)
      CT_TRY(ct_allreduce_wait(q[first], &s->ars, &fin[first]));
      bucket_span(s, first, t_bk[first]);
      first++;
      continue;
    }
    // a window in flight while backward goes on: move every one on; if the next window is
    // not written yet, finish the oldest (its ring waits spinning briefly, then sleeping, so
    // the device's threads keep the cores; polling in naps here lost whole scheduler slices
    // on the 2-core machine, with both ranks' device threads busy)
    int done = 0;
    for (int j = next - 1; j >= first; j--) CT_TRY(ct_allreduce_test(q[j], j == first ? &done : NULL));
    CL_CHECK(event_status(s->bk_ev[next], &stat));
    if (done || stat != CL_COMPLETE) {
      CT_TRY(ct_allreduce_wait(q[first], &s->ars, &fin[first]));
      bucket_span(s, first, t_bk[first]);
      first++;
    }
  }
  if (!t_done) {
    CL_CHECK(clWaitForEvents(1, &s->compute_end));
    t_done = ct_now();
  }
  *compute_s = t_done - t_start;
  ct_trace_span(&s->trace, 0, "compute", t_start, t_done);
  double t_tail = ct_now();
  memset(s->tail_host, 0, (size_t)comm->size * sizeof *s->tail_host);
  s->tail_host[comm->rank] = (float)(*compute_s * 1e3);
  if (s->cfg->timing) {   // exact waiting time, at the price of a barrier
    double t3 = ct_now();
    CT_TRY(ct_comm_barrier(comm));
    s->res->wait_s += ct_now() - t3;
    if (s->measuring) s->barrier_s += ct_now() - t3;
  }
  ct_ring_opts o = s->wire;
  o.total = REDUCED(s), o.base = s->P;
  o.idle = 1;   // after compute
  st = ct_allreduce_device_after(s->ar, c->grads, s->P, REDUCED(s) - s->P, s->compute_end,
                                 s->tail_host, AT_TIMES(s) - s->P, (size_t)comm->size, &o,
                                 &s->ars);
  // the optimizer (on dev->queue) after every window's results are back
  int nf = 0;
  for (int k = 0; k < nb; k++)
    if (fin[k]) fin[nf++] = fin[k];
  err = nf ? clEnqueueBarrierWithWaitList(s->dev.queue, (cl_uint)nf, fin, NULL) : CL_SUCCESS;
  for (int k = 0; k < nf; k++) clReleaseEvent(fin[k]);
  CT_TRY(st);
  CL_CHECK(err);
  double t_end = ct_now();
  ct_trace_span(&s->trace, 1, "status words", t_tail, t_end);
  ct_trace_span(&s->trace, 0, "all-reduce after compute", t_done, t_end);
  if (s->measuring) {
    s->allreduce_s += t_end - t2;
    s->exposed_s += t_end - t_done;
  }
  return CT_OK;
}

static ct_status phase_reduce(run_state *s, computed *c, double t_start, double *compute_s) {
  ct_comm *comm = s->comm;
  cl_event after = NULL;
  c->counted = 0;
  if (s->nb > 0 && s->cfg->sync == CT_SYNC_SYNC) return reduce_buckets(s, c, t_start, compute_s);
  if (s->cfg->sync == CT_SYNC_STALE) {
    CT_TRY(marker_seconds(s, c, compute_s));
    after = c->end;
    if (s->pred_done && c == &s->pend) after = s->pred_done;   // after the prediction read it
  } else {
    if (s->pend_map) {   // mapped behind the step's kernels: the map completing ends compute
      cl_int err = clWaitForEvents(1, &s->pend_map_ev);
      if (err != CL_SUCCESS) {
        float *p = s->pend_map;
        s->pend_map = NULL;
        if (clEnqueueUnmapMemObject(s->dev.queue, c->grads, p, 0, NULL, NULL) == CL_SUCCESS)
          clFinish(s->dev.queue);
        return CT_FAIL(CT_ERR_CL, "mapping the gradients failed: %s", ct_cl_errname(err));
      }
    } else {
      CL_CHECK(clFinish(s->dev.queue));   // this rank's gradients are ready
    }
    *compute_s = ct_now() - t_start;
    ct_trace_span(&s->trace, 0, "compute", t_start, t_start + *compute_s);
  }
  memset(s->tail_host, 0, (size_t)comm->size * sizeof *s->tail_host);
  s->tail_host[comm->rank] = (float)(*compute_s * 1e3);
  double t2 = ct_now();
  if (s->cfg->timing) {   // exact waiting time, at the price of a barrier
    CT_TRY(ct_comm_barrier(comm));
    double t3 = ct_now();
    s->res->wait_s += t3 - t2;
    if (s->measuring) s->barrier_s += t3 - t2;
    t2 = t3;
  }
  // sync: the device has finished, nothing of this rank computes while the ring waits;
  // stale: the next step computes beside it
  ct_ring_opts o = s->wire;
  o.idle = s->cfg->sync != CT_SYNC_STALE;
  if (s->pend_map) {   // zero-copy: stale, mapped before this step's kernels; sync, after them
    float *p = s->pend_map;
    s->pend_map = NULL;
    // (the map waits for the update of the step before and for the prediction: device work,
    // not communication, so it is not counted as copies)
    cl_int err = clWaitForEvents(1, &s->pend_map_ev);
    ct_status st = err == CL_SUCCESS ? CT_OK
                                     : CT_FAIL(CT_ERR_CL, "mapping the pending gradients failed: %s",
                                               ct_cl_errname(err));
    // the guard's test rides on the ring (its sums are tested as they are made): the count
    // goes where the count kernel would have put it, and that kernel's pass is saved
    unsigned bad = 0;
    o.nonfinite = &bad, o.nonfinite_n = AT_LOSS(s) + 1;
    if (st == CT_OK && s->shard) {
      // --shard-update: the reduce-scatter of the gradients (this rank's segment finished and
      // tested), then the status words with the count of non-finite segments in the count's
      // place (the layout one float longer, so that the sums keep the whole ring's order),
      // gathered: every rank learns whether any segment was not finite
      o.part = CT_RING_REDUCE_SCATTER, o.total = REDUCED(s), o.base = 0;
      st = ct_allreduce_mapped(s->ar, p, s->P, NULL, 0, 0, &o, &s->ars);
      unsigned bad_loss = 0;
      ct_ring_opts os = {.total = AT_COUNT(s) + 1, .base = s->P, .idle = 1,
                         .nonfinite = &bad_loss, .nonfinite_n = AT_LOSS(s) + 1};
      p[AT_COUNT(s)] = (float)bad;
      if (st == CT_OK)
        st = ct_allreduce_mapped(s->ar, p + s->P, AT_COUNT(s) + 1 - s->P, s->tail_host,
                                 AT_TIMES(s) - s->P, (size_t)comm->size, &os, &s->ars);
      bad = bad_loss + (p[AT_COUNT(s)] != 0.0f);
    } else if (st == CT_OK) {
      st = ct_allreduce_mapped(s->ar, p, REDUCED(s), s->tail_host, AT_TIMES(s),
                               (size_t)comm->size, &o, &s->ars);
    }
    if (st == CT_OK) {
      cl_uint n = bad;
      memcpy(p + AT_COUNT(s), &n, sizeof n);
      c->counted = 1;
    }
    err = clEnqueueUnmapMemObject(s->dev.queue, c->grads, p, 0, NULL, NULL);
    CT_TRY(st);
    if (err != CL_SUCCESS)
      return CT_FAIL(CT_ERR_CL, "unmapping the pending gradients failed: %s", ct_cl_errname(err));
  } else {
    CT_TRY(ct_allreduce_device_after(s->ar, c->grads, 0, REDUCED(s), after, s->tail_host,
                                     AT_TIMES(s), (size_t)comm->size, &o, &s->ars));
  }
  double t_end = ct_now();
  ct_trace_span(&s->trace, 0, s->cfg->sync == CT_SYNC_STALE ? "all-reduce (previous step)"
                                                            : "all-reduce", t2, t_end);
  if (s->measuring) s->allreduce_s += t_end - t2;
  if (s->measuring && s->cfg->sync != CT_SYNC_STALE) {
    s->exposed_s += t_end - t2;   // after the device finished: all of it
  } else if (s->measuring && s->cur.end) {
    // stale: the ring ran while the device computed the next step (s->cur); exposed is what
    // it took after that compute had ended (its marker's end, on the host's clock)
    cl_int stat;
    CL_CHECK(event_status(s->cur.end, &stat));
    if (stat == CL_COMPLETE) {
      cl_ulong e = 0;
      CL_CHECK(clGetEventProfilingInfo(s->cur.end, CL_PROFILING_COMMAND_END, sizeof e, &e, NULL));
      double t_dev = (double)e * 1e-9 + s->clock_off;
      if (t_dev < t2) t_dev = t2;
      if (t_end > t_dev) s->exposed_s += t_end - t_dev;
    }
  }
  return CT_OK;
}

// apply: the non-finite count (unless the all-reduce made it), the optimizer (skipped on the
// device when the count is not zero), the status read (not waited for here).
static ct_status phase_apply(run_state *s, computed *c) {
  ct_model *mod = &s->model;
  cl_mem g = c->grads;
  if (!c->counted) CT_TRY(ct_count_nonfinite(&s->dev, g, AT_LOSS(s) + 1, g, AT_COUNT(s)));
  float lr = ct_schedule_lr(&s->sched, s->cfg->optim.lr, c->step);
  if (s->shard) {   // this rank's segment, then every segment from its owner
    CT_TRY(ct_optim_step_range(&s->opt, mod->params, g, lr, g, AT_COUNT(s), s->sh_lo, s->sh_hi));
    // mapped behind the update on its queue (the map completing ends the update, which is
    // compute, not communication), and unmapped there ahead of the next step's kernels
    cl_int err;
    cl_event ev = NULL;
    float *p = clEnqueueMapBuffer(s->dev.queue, mod->params, CL_FALSE, CL_MAP_READ | CL_MAP_WRITE,
                                  0, s->P * sizeof(float), 0, NULL, &ev, &err);
    if (err != CL_SUCCESS)
      return CT_FAIL(CT_ERR_CL, "mapping the parameters failed: %s", ct_cl_errname(err));
    err = clFlush(s->dev.queue);
    if (err == CL_SUCCESS) err = clWaitForEvents(1, &ev);
    clReleaseEvent(ev);
    double t0 = ct_now();
    ct_ring_opts o = {.total = REDUCED(s), .part = CT_RING_ALL_GATHER, .idle = 1};
    ct_status st = err == CL_SUCCESS ? ct_allreduce_mapped(s->ar, p, s->P, NULL, 0, 0, &o, &s->ars)
                                     : CT_FAIL(CT_ERR_CL, "mapping the parameters failed: %s",
                                               ct_cl_errname(err));
    err = clEnqueueUnmapMemObject(s->dev.queue, mod->params, p, 0, NULL, NULL);
    CT_TRY(st);
    if (err != CL_SUCCESS)
      return CT_FAIL(CT_ERR_CL, "unmapping the parameters failed: %s", ct_cl_errname(err));
    double t1 = ct_now();
    ct_trace_span(&s->trace, 0, "all-gather (parameters)", t0, t1);
    if (s->measuring) {
      s->allreduce_s += t1 - t0;
      s->exposed_s += t1 - t0;
    }
  } else {
    CT_TRY(ct_optim_step_unless(&s->opt, mod->params, g, lr, g, AT_COUNT(s)));
  }
  step_status *st = &s->status[c->step & 1];
  st->step = c->step, st->n = c->n, st->m = c->m;
  memcpy(st->shares, c->shares, (size_t)s->comm->size * sizeof *st->shares);
  CL_CHECK(clEnqueueReadBuffer(s->dev.queue, g, CL_FALSE, AT_LOSS(s) * sizeof(float),
                               s->tail * sizeof(float), st->host, 0, NULL, &st->ev));
  st->in_flight = 1;
  if (c->step == s->cfg->inject_diverge_step && s->comm->rank == s->cfg->inject_diverge_rank) {
    float v = 1.0f;   // perturb one parameter of this replica only
    CL_CHECK(clEnqueueWriteBuffer(s->dev.queue, mod->params, CL_TRUE, 0, sizeof v, &v, 0, NULL, NULL));
  }
  return CT_OK;
}

// ---- throughput balance ---------------------------------------------------------------------------

// The shares of a full global batch under weights w.
static void full_shares(run_state *s, const uint32_t *w, int *shares) {
  ct_shares_weighted(s->cfg->batch, s->comm->size, w, shares);
}

// Throughput balance. Every step's status words carry every rank's compute time (the same
// numbers on every rank after the all-reduce). Each rank's time per sample over the steps since
// the last change is checked every balance_every steps (and 3 and 6 steps after the warm-up or
// a change), and the weights become samples per millisecond. A change is proposed when the
// slowest rank's predicted time (time per sample x share) drops by 15 % or more (hysteresis:
// shares do not flap on noise). It is then on trial: the step's critical time (the slowest
// rank's compute time, mean over 6 measured steps) with the new shares must beat the one
// before by 5 %, or the old weights come back and balancing holds still for 100 steps (200,
// 400, ... after each change that did not pay). A proposal goes on trial only when two checks
// in a row make it, and shares are multiples of 8 samples (fewer sizes to build kernels for). Why: a device's time is not proportional to its
// share (a share size its GEMM tuning does not cover can run at half the rate; a fixed cost
// per step counts for more on a small share), and on a shared machine the per-sample times
// move from window to window; the trial measures what the prediction can only guess. The steps
// right after a change are not measured (a new shape may build a kernel the first time); no
// rank gets less than 1/(8 N) of the batch, so a rank that has become slow is still measured.
// Every rank computes the same.
static void balance_update(run_state *s, const float *ms, const int *shares, long step,
                           int force) {
  int world = s->comm->size;
  if (!s->balancing || step < CT_WARMUP_STEPS) return;
  // the first step at shares not seen just before may build kernels for its sizes: not
  // measured (how many steps the loader and, in stale mode, the pending step put between a
  // change and its first step is then no matter)
  if (!force && memcmp(shares, s->seen_shares, (size_t)world * sizeof *shares) != 0) {
    memcpy(s->seen_shares, shares, (size_t)world * sizeof *shares);
    return;
  }
  if (step < s->balance_quiet_until) return;
  // sums over the steps measured since the last change: seconds and samples per rank
  double *sum_t = s->fit, *sum_m = s->fit + world;
  double crit = 0;
  for (int r = 0; r < world; r++) {
    sum_t[r] += ms[r];
    sum_m[r] += shares[r];
    if (ms[r] > crit) crit = ms[r];
  }
  s->crit_sum += crit;
  s->crit_n++;
  s->est_updates++;
  long u = s->est_updates;
  if (s->bal_trial) {   // a change on trial: judge it on its own window
    if (u < 6 && !(force && u >= 3)) return;
    double now_crit = s->crit_sum / (double)s->crit_n;
    int keep = now_crit < 0.95 * s->prev_crit;
    s->bal_trial = 0;
    s->est_updates = 0;
    if (!keep) {
      memcpy(s->weights, s->prev_weights, (size_t)world * sizeof *s->weights);
      s->res->share_changes++;
      s->balance_quiet_until = step + 2 + s->bal_hold;   // from the step the loader posts next
      if (s->bal_hold < 100000) s->bal_hold *= 2;
      for (int r = 0; r < world; r++) sum_t[r] = sum_m[r] = 0;
      s->crit_sum = 0, s->crit_n = 0;
    }
    if (s->comm->rank == 0) {
      full_shares(s, s->weights, s->tmp_shares);
      printf("cltrain: step %ld: shares %s (slowest rank %.2f ms per step, %.2f before)",
             step + 1, keep ? "kept" : "put back to", now_crit, s->prev_crit);
      if (!keep)
        for (int r = 0; r < world; r++) printf(" %d", s->tmp_shares[r]);
      printf("\n");
      fflush(stdout);
    }
    return;
  }
  int due = force || u == 3 || u == 6 || u % s->cfg->balance_every == 0;
  if (!due) return;
  uint32_t *w = s->new_weights, most = 1;
  for (int r = 0; r < world; r++) {
    if (!(sum_m[r] > 0) || !(sum_t[r] > 0)) return;   // a rank not measured yet
    s->est[r] = sum_t[r] / sum_m[r];                    // ms per sample
    double v = 1024.0 / s->est[r];                      // samples per ms, in 1/1024
    w[r] = v > 4e9 ? 4000000000u : v < 1 ? 1u : (uint32_t)v;
    if (w[r] > most) most = w[r];
  }
  uint32_t floor_w = most / (8u * (uint32_t)world);
  for (int r = 0; r < world; r++)
    if (w[r] < floor_w) w[r] = floor_w;
  full_shares(s, s->weights, s->tmp_shares);
  // Shares in multiples of 8 samples where every rank still gets one: fewer distinct share
  // sizes, so fewer kernel builds, and row counts the GEMM tiles cover well. The weights become
  // the shares themselves (a batch of that size splits exactly so; a short one in proportion).
  int g = 8, units = s->cfg->batch / g;
  ct_shares_weighted(units, world, w, s->tmp_shares2);
  int snapped = 1, given = 0, big = 0;
  for (int r = 0; r < world; r++) {
    if (s->tmp_shares2[r] == 0) snapped = 0;
    given += s->tmp_shares2[r] * g;
    if (w[r] > w[big]) big = r;
  }
  if (snapped) {
    for (int r = 0; r < world; r++) s->tmp_shares2[r] *= g;
    s->tmp_shares2[big] += s->cfg->batch - given;
    for (int r = 0; r < world; r++) w[r] = (uint32_t)s->tmp_shares2[r];
  } else {
    full_shares(s, w, s->tmp_shares2);
  }
  // the slowest rank's predicted time now and with the new shares: change only for a gain of
  // 15 % or more
  double now_t = 0, new_t = 0;
  for (int r = 0; r < world; r++) {
    if (s->est[r] * s->tmp_shares[r] > now_t) now_t = s->est[r] * s->tmp_shares[r];
    if (s->est[r] * s->tmp_shares2[r] > new_t) new_t = s->est[r] * s->tmp_shares2[r];
  }
  if (!(new_t < 0.85 * now_t)) {
    s->proposal[0] = -1;
    return;
  }
  // only a proposal two checks in a row make (the same shares, each within half a step of 8
  // samples: shares off the grid of 8, where a rank gets less than 8, are in exact proportion
  // and move by a sample or two with the noise) goes on trial: a trial costs steps at worse
  // shares when it fails, and kernel builds for new sizes
  int same = s->proposal[0] >= 0;
  for (int r = 0; r < world && same; r++) same = abs(s->proposal[r] - s->tmp_shares2[r]) <= g / 2;
  if (!same) {
    memcpy(s->proposal, s->tmp_shares2, (size_t)world * sizeof *s->proposal);
    return;
  }
  s->proposal[0] = -1;
  s->prev_crit = s->crit_sum / (double)s->crit_n;
  memcpy(s->prev_weights, s->weights, (size_t)world * sizeof *w);
  memcpy(s->weights, w, (size_t)world * sizeof *w);
  s->bal_trial = 1;
  s->res->share_changes++;
  // the new shares apply from the step the loader prepares next (two steps on); the sums start
  // over after that
  s->balance_quiet_until = step + 4;
  s->est_updates = 0;
  for (int r = 0; r < world; r++) sum_t[r] = sum_m[r] = 0;
  s->crit_sum = 0, s->crit_n = 0;
  if (s->comm->rank == 0) {
    printf("cltrain: step %ld: shares of a batch of %d now", step + 1, s->cfg->batch);
    for (int r = 0; r < world; r++) printf(" %d", s->tmp_shares2[r]);
    printf(" (measured us per sample:");
    for (int r = 0; r < world; r++) printf(" %.1f", s->est[r] * 1e3);
    printf("; on trial)\n");
    fflush(stdout);
  }
}

// Waits for a step's status and accounts for it: loss, waiting time, skipped steps, balance.
static ct_status finish(run_state *s, step_status *st) {
  if (!st->in_flight) return CT_OK;
  CL_CHECK(clWaitForEvents(1, &st->ev));
  clReleaseEvent(st->ev);
  st->ev = NULL;
  st->in_flight = 0;
  const ct_train_config *cfg = s->cfg;
  int world = s->comm->size, local = cfg->sync == CT_SYNC_LOCAL;
  float loss = st->host[0];
  cl_uint count;
  memcpy(&count, &st->host[s->tail - 1], sizeof count);
  if (world > 1 && !local) {   // every rank's compute time of the step: the same numbers
    if (!cfg->timing) {        // waiting for the slowest rank: max - own compute time
      float most = 0, mine = st->host[1 + s->comm->rank];
      for (int r = 0; r < world; r++)
        if (st->host[1 + r] > most) most = st->host[1 + r];
      s->res->wait_s += (double)(most - mine) * 1e-3;
    }
    // an epoch's short last batch is not measured: its share sizes build kernels the first time
    if (st->n == cfg->batch) balance_update(s, st->host + 1, st->shares, st->step, 0);
  }
  if (count) {
    s->res->bad_steps++;
    s->bad_run++;
    if (!local || s->comm->rank == 0)
      say(s, "cltrain: step %ld: non-finite loss or gradient, step skipped (%d in a row, limit %d)\n",
          st->step, s->bad_run, cfg->max_bad_steps);
    if (s->bad_run >= cfg->max_bad_steps) {
      if (local) {   // the ranks stop together, at the next average
        s->stop_bad = 1;
        return CT_OK;
      }
      return CT_FAIL(CT_ERR_NONFINITE,
                     "stopping: %d consecutive steps with non-finite loss or gradients "
                     "(--max-bad-steps %d); last good checkpoint: %s",
                     s->bad_run, cfg->max_bad_steps, cfg->checkpoint ? cfg->checkpoint : "none");
    }
  } else {
    s->bad_run = 0;
    ct_optim_count(&s->opt);
    s->loss_acc += loss;
    s->loss_n += world > 1 && !local ? st->n : st->m;   // reduced: the loss word is the global sum
  }
  return CT_OK;
}

static ct_status drain(run_state *s) {
  // the older one first
  step_status *a = &s->status[0], *b = &s->status[1];
  if (a->in_flight && b->in_flight && b->step < a->step) {
    step_status *t = a;
    a = b, b = t;
  }
  CT_TRY(finish(s, a));
  CT_TRY(finish(s, b));
  return ct_prof_collect(&s->dev, 1);
}

// local:K: the parameters averaged over the ranks, weighted by the samples each processed since
// the last average; a stop request (non-finite steps) travels along, and so do the ranks'
// compute times for the throughput balance. Replicas are identical afterwards (the optimizer
// state stays each rank's own). The loss printed in local:K is rank 0's, over its own share.
// with_state = 1 (checkpoints): the optimizer state is averaged the same way, so that the one
// state a checkpoint holds is every rank's, and a resumed run continues exactly.
static ct_status local_average_(run_state *s, int with_state);
static ct_status local_average(run_state *s, int with_state) {
  double t0 = ct_now();
  ct_status st = local_average_(s, with_state);
  ct_trace_span(&s->trace, 0, "parameter average", t0, ct_now());
  return st;
}
static ct_status local_average_(run_state *s, int with_state) {
  int world = s->comm->size;
  CT_TRY(drain(s));
  if (world == 1) {
    s->since_avg = 0;
    s->samples_since = 0;
    if (s->stop_bad) goto stop;
    return CT_OK;
  }
  double t0 = ct_now();
  // [samples, (unused), (unused), stop, compute s of rank r (world), samples of rank r (world)]
  double *v = s->avg_words;
  size_t nv = 4 + 2 * (size_t)world;
  memset(v, 0, nv * sizeof *v);
  v[0] = s->samples_since;
  v[3] = s->stop_bad;
  v[4 + s->comm->rank] = s->compute_since;
  v[4 + world + s->comm->rank] = s->samples_since;
  CT_TRY(ct_comm_allreduce_double_sum(s->comm, v, (int)nv));
  // these few words' collective ends when the slowest rank arrives: its time is waiting (MPI
  // time that the end takes out of the MPI and exposed columns, as for sync's)
  double t_words = ct_now() - t0;
  s->res->wait_s += t_words;
  s->ars.mpi_s += t_words;
  float mine = v[0] > 0 ? (float)(s->samples_since / v[0]) : (float)(1.0 / world);
  cl_kernel k;
  CT_TRY(ct_kernel(&s->dev, "util", "scale_f32", &k));
  cl_uint np = (cl_uint)s->P;
  CL_CHECK(clSetKernelArg(k, 0, sizeof s->model.params, &s->model.params));
  CL_CHECK(clSetKernelArg(k, 1, sizeof np, &np));
  CL_CHECK(clSetKernelArg(k, 2, sizeof mine, &mine));
  size_t global = (s->P + 255) / 256 * 256;
  CL_CHECK(clEnqueueNDRangeKernel(s->dev.queue, k, 1, NULL, &global, NULL, 0, NULL, NULL));
  // (counts the ranks agreed at set-up, with the arch: no per-call count check)
  CT_TRY(ct_allreduce_device_after(s->ar, s->model.params, 0, s->P, NULL, NULL, 0, 0, NULL,
                                   &s->ars));
  if (with_state) {   // in pieces the all-reduce's staging holds
    cl_uint ns = (cl_uint)s->opt.state_count;
    size_t gs = (s->opt.state_count + 255) / 256 * 256;
    CL_CHECK(clSetKernelArg(k, 0, sizeof s->opt.state, &s->opt.state));
    CL_CHECK(clSetKernelArg(k, 1, sizeof ns, &ns));
    CL_CHECK(clSetKernelArg(k, 2, sizeof mine, &mine));
    CL_CHECK(clEnqueueNDRangeKernel(s->dev.queue, k, 1, NULL, &gs, NULL, 0, NULL, NULL));
    for (size_t off = 0; off < s->opt.state_count; off += s->P) {
      size_t len = s->opt.state_count - off < s->P ? s->opt.state_count - off : s->P;
      CT_TRY(ct_allreduce_device_after(s->ar, s->opt.state, off, len, NULL, NULL, 0, 0, NULL,
                                       &s->ars));
    }
  }
  if (s->measuring) s->allreduce_s += ct_now() - t0, s->exposed_s += ct_now() - t0;
  s->res->averages++;
  // throughput balance from the compute time per sample of each rank since the last average
  // (not across an epoch's short last batch: new share sizes build kernels the first time)
  if (s->balancing && s->avg_count_measured++ > 0 && !s->partial_since) {
    float *ms = s->avg_ms;
    for (int r = 0; r < world; r++) {
      ms[r] = (float)(v[4 + r] * 1e3);
      s->avg_shares[r] = (int)v[4 + world + r];
    }
    balance_update(s, ms, s->avg_shares, CT_WARMUP_STEPS + s->avg_count_measured, 1);
  }
  s->since_avg = 0;
  s->samples_since = 0;
  s->compute_since = 0;
  s->partial_since = 0;
  if (v[3] > 0) goto stop;
  return CT_OK;
stop:
  return CT_FAIL(CT_ERR_NONFINITE,
                 "stopping: %d or more consecutive steps with non-finite loss or gradients on a "
                 "rank (--max-bad-steps %d); last good checkpoint: %s",
                 s->cfg->max_bad_steps, s->cfg->max_bad_steps,
                 s->cfg->checkpoint ? s->cfg->checkpoint : "none");
}

// Everything computed is applied and accounted for, and the replicas agree: stale applies its
// pending step, local:K averages (for a checkpoint, state = 1: the optimizer state too). Before
// evaluation, checkpoints, replica checks and the end.
// *compute_s: the pending step's compute time (as run_step gives it for a step), or 0.
static ct_status flush(run_state *s, int state, double *compute_s) {
  *compute_s = 0;
  if (s->cfg->sync == CT_SYNC_STALE && s->pend.valid) {
    // nothing computes beside this reduction: it starts once the step is computed, so that
    // waiting for the device is not counted as communication
    if (s->pend.end) CL_CHECK(clWaitForEvents(1, &s->pend.end));
    if (s->comm->size > 1) CT_TRY(phase_reduce(s, &s->pend, 0, compute_s));
    step_status *prev = &s->status[(s->pend.step + 1) & 1];
    CT_TRY(finish(s, prev));
    CT_TRY(phase_apply(s, &s->pend));
    s->pend.valid = 0;
  }
  if (s->cfg->sync == CT_SYNC_LOCAL && (s->since_avg > 0 || state))
    CT_TRY(local_average(s, state));
  return drain(s);
}

// Finishing what the steps left running, from tf until now (flush's compute time fc), is
// training time, counted like a step's: its wall time in the training time and (after the
// warm-up) the step time; its compute, with one rank its wall time, in the compute column.
static void count_finishing(run_state *s, double tf, double fc, double *t_train) {
  double df = ct_now() - tf;
  *t_train += df;
  s->res->compute_s += s->comm->size > 1 ? fc : df;
  if (s->measuring) s->step_s += df;
}

// Rank 0 writes the checkpoint; the others wait for it here, so that the write is not counted
// as the next collective's communication on their side (it is no step's time on rank 0 either).
// A failed write ends the job from rank 0 (ct_comm_abort), which ends this barrier too.
static ct_status save_checkpoint(run_state *s, const ct_checkpoint_pos *p) {
  const ct_train_config *cfg = s->cfg;
  CT_TRY(shard_gather_state(s));
  CT_TRY(ct_checkpoint_save(cfg->checkpoint, &s->model, &s->opt, p, cfg->seed, cfg->shuffle,
                            s->comm, s->host_params));
  if (s->comm->size > 1) CT_TRY(ct_comm_barrier(s->comm));
  return CT_OK;
}

// Runs f with profiling paused (evaluation, checkpoints and checks are not part of a step).
#define UNPROFILED(s, call)                         \
  do {                                              \
    struct ct_prof *ct_saved_ = (s)->dev.prof;      \
    (s)->dev.prof = NULL;                           \
    ct_status ct_st_ = (call);                      \
    (s)->dev.prof = ct_saved_;                      \
    if (ct_st_ != CT_OK) return ct_st_;             \
  } while (0)

// Maps the reduced range of `grads` on the device's queue behind what is enqueued there
// (not waited for: pend_map_ev), for a zero-copy reduction in place (phase_reduce).
static ct_status map_grads(run_state *s, cl_mem grads) {
  cl_int err;
  release_event(&s->pend_map_ev);
  s->pend_map = clEnqueueMapBuffer(s->dev.queue, grads, CL_FALSE, CL_MAP_READ | CL_MAP_WRITE, 0,
                                   (AT_COUNT(s) + 1) * sizeof(float), 0, NULL, &s->pend_map_ev,
                                   &err);
  if (err != CL_SUCCESS) {
    s->pend_map = NULL;
    return CT_FAIL(CT_ERR_CL, "clEnqueueMapBuffer(gradients) failed: %s", ct_cl_errname(err));
  }
  return CT_OK;
}

// One step, in the order the mode needs: sync reduces and applies it; stale reduces and applies
// the previous one while this one computes; local applies it alone. Returns this step's
// compute time for the phase table.
static ct_status run_step(run_state *s, slot *b, double t0, double *compute_s) {
  int world = s->comm->size;
  *compute_s = 0;
  switch (s->cfg->sync) {
    case CT_SYNC_SYNC: {
      computed *c = &s->cur;
      CT_TRY(phase_compute(s, b, s->gbuf[0], c));
      if (world > 1 && s->nb == 0 && ct_allreduce_zero_copy(s->ar)) {
        // Map the gradients right behind this step's kernels, on their queue: the map's
        // completion is the end of compute (no marker, no map on another queue after it), and
        // the unmap goes on that queue too, ahead of the update, so nobody waits for it.
        CT_TRY(map_grads(s, c->grads));
        CL_CHECK(clFlush(s->dev.queue));
      }
      if (world > 1) CT_TRY(phase_reduce(s, c, t0, compute_s));
      CT_TRY(finish(s, &s->status[(c->step + 1) & 1]));   // the previous step's status
      CT_TRY(phase_apply(s, c));
      break;
    }
    case CT_SYNC_STALE: {
      // this step into the buffer the pending one does not use
      computed *c = &s->cur;
      cl_mem g = s->pend.valid && s->pend.grads == s->gbuf[0] ? s->gbuf[1] : s->gbuf[0];
      cl_mem own = s->model.params;
      if (s->pend.valid && s->pred) {   // its gradients where the pending update will take us
        float lr = ct_schedule_lr(&s->sched, s->cfg->optim.lr, s->pend.step);
        CT_TRY(ct_optim_sgd_predict(&s->opt, s->pred, own, s->pend.grads, (float)world, lr));
        // the ring must not change the pending gradients before the prediction has read them
        release_event(&s->pred_done);
        CL_CHECK(clEnqueueMarkerWithWaitList(s->dev.queue, 0, NULL, &s->pred_done));
        s->model.params = s->pred;
      }
      if (s->pend.valid && world > 1 && ct_allreduce_zero_copy(s->ar)) {
        // Map the pending gradients now, ahead of this step's kernels: on a device whose worker
        // threads serve every queue (PoCL, Intel's CPU runtime), a map enqueued later would
        // wait for them, and the reduction would not overlap this step's compute at all. The
        // ring runs on the mapped range while the device computes; the unmap follows this
        // step's kernels, before the update that reads the result.
        CT_TRY(map_grads(s, s->pend.grads));
      }
      ct_status cst = phase_compute(s, b, g, c);
      s->model.params = own;
      CT_TRY(cst);
      if (s->pend.valid) {   // the previous step: reduced while this one computes, then applied
        double c_prev = 0;
        if (world > 1) CT_TRY(phase_reduce(s, &s->pend, 0, &c_prev));
        else CT_TRY(marker_seconds(s, &s->pend, &c_prev));
        *compute_s = c_prev;
        CT_TRY(finish(s, &s->status[(s->pend.step + 1) & 1]));
        CT_TRY(phase_apply(s, &s->pend));
      }
      computed t = s->pend;   // swap: this step becomes the pending one
      s->pend = *c;
      s->pend.valid = 1;
      *c = t;
      c->valid = 0;
      break;
    }
    case CT_SYNC_LOCAL: {
      computed *c = &s->cur;
      CT_TRY(phase_compute(s, b, s->gbuf[0], c));
      CT_TRY(finish(s, &s->status[(c->step + 1) & 1]));
      CT_TRY(phase_apply(s, c));
      s->since_avg++;
      s->samples_since += c->m;
      if (c->n != s->cfg->batch) s->partial_since = 1;   // not measured for the balance
      if (world > 1) {   // this rank's compute time, for the balance at the next average
        CL_CHECK(clFinish(s->dev.queue));
        *compute_s = ct_now() - t0;
        s->compute_since += *compute_s;
      }
      if (s->since_avg >= s->cfg->local_k) CT_TRY(local_average(s, 0));
      break;
    }
  }
  return CT_OK;
}

// ---- the loop ---------------------------------------------------------------------------------

// ---- progress -------------------------------------------------------------------------------

// Rank 0, when stderr is a terminal: one line per epoch, redrawn at most 5 times a second, that
// the epoch's end (or the next line printed) leaves in place. Elsewhere (logs, mpirun without a
// terminal) nothing: the plain lines are the record.
typedef struct {
  int on, drawn;
  double last, t_epoch;      // last redraw; training time at the epoch's start
  long si_epoch;             // steps of the epoch done when it started (resume mid-epoch)
  double loss_acc, loss_n;   // loss since the epoch started (finished steps)
} progress;

static void progress_draw(progress *p, int epoch, int epochs, long si, long spe, double loss,
                          double sps, double t_train, int force) {
  double now = ct_now();
  if (!p->on || (!force && now - p->last < 0.2)) return;
  p->last = now;
  enum { W = 24 };
  char bar[W + 1];
  int fill = spe > 0 ? (int)((double)W * (double)si / (double)spe) : W;
  for (int i = 0; i < W; i++) bar[i] = i < fill ? '#' : '-';
  bar[W] = 0;
  double per = si > p->si_epoch ? (t_train - p->t_epoch) / (double)(si - p->si_epoch) : 0;
  double eta = per * (double)(spe - si);
  char l[32] = "-", r[32] = "-";   // not known yet: no step finished, too short to measure
  if (isfinite(loss) && loss > 0) snprintf(l, sizeof l, "%.4f", loss);
  if (t_train - p->t_epoch > 0.05) snprintf(r, sizeof r, "%.0f", sps);
  fprintf(stderr, "\repoch %d/%d [%s] %ld/%ld  loss %s  %s samples/s  ETA %d:%02d \033[K",
          epoch + 1, epochs, bar, si, spe, l, r, (int)eta / 60, (int)eta % 60);
  fflush(stderr);
  p->drawn = 1;
}

static void progress_end(progress *p) {
  if (p->on && p->drawn) {
    fputc('\n', stderr);
    fflush(stderr);
  }
  p->drawn = 0;
}

// ---- --metrics -------------------------------------------------------------------------------

static ct_status metrics_open(run_state *s) {
  int bad = 0;
  ct_status st = CT_OK;
  if (R0 && s->cfg->metrics) {
    st = ct_metrics_open(&s->metrics, s->cfg->metrics);
    bad = st != CT_OK;
  }
  CT_TRY(ct_comm_allreduce_int_max(s->comm, &bad, 1));
  if (st != CT_OK) return st;
  if (bad) return CT_FAIL(CT_ERR_IO, "--metrics: rank 0 could not create '%s'", s->cfg->metrics);
  return CT_OK;
}

static ct_status metrics_put(run_state *s, ct_json *j) {
  ct_status st = ct_json_end(j);
  if (st == CT_OK) st = ct_metrics_write(&s->metrics, j);
  free(j->buf);
  return st;
}

static void json_shares(run_state *s, ct_json *j) {
  if (s->comm->size < 2) return;
  full_shares(s, s->weights, s->tmp_shares);
  char buf[32];
  ct_json items = {0};
  for (int r = 0; r < s->comm->size; r++) {
    snprintf(buf, sizeof buf, "%d", s->tmp_shares[r]);
    ct_json_raw(&items, NULL, buf);
  }
  ct_json_array(j, "shares", &items);
}

static const char *sync_name(const ct_train_config *c, char *buf, size_t n) {
  if (c->sync == CT_SYNC_LOCAL) snprintf(buf, n, "local:%d", c->local_k);
  else snprintf(buf, n, "%s", c->sync == CT_SYNC_STALE ? "stale" : "sync");
  return buf;
}

// The first record: what ran, where, with what.
static ct_status metrics_config(run_state *s) {
  if (!R0 || !s->metrics.f) return CT_OK;
  const ct_train_config *c = s->cfg;
  static const char *const bn[] = {"auto", "even", "throughput", "static"};
  char mpi[256], buf[64];
  CT_TRY(ct_version_mpi(mpi, sizeof mpi));
  ct_clblast_version(buf, sizeof buf);   // the library loaded, as --version says
  ct_json j;
  ct_json_begin(&j);
  ct_json_str(&j, "type", "config");
  ct_json_num(&j, "time", ct_wall_seconds());
  ct_json_str(&j, "cltrain", ct_version());
  ct_json_str(&j, "clblast", buf);
  ct_json_str(&j, "mpi", mpi);
  ct_json_int(&j, "world", s->comm->size);
  ct_json_str(&j, "arch", s->arch.text);
  ct_json_int(&j, "params", (long long)s->arch.param_count);
  ct_json_str(&j, "data", c->data_dir);
  ct_json_str(&j, "data_format", s->train.format);
  char shape[64];
  snprintf(shape, sizeof shape, "[%d,%d,%d]", s->train.channels, s->train.rows, s->train.cols);
  ct_json_raw(&j, "input_shape", shape);
  ct_json_int(&j, "classes", s->train.classes);
  ct_json_int(&j, "train_samples", s->train.count);
  ct_json_int(&j, "test_samples", s->test.count);
  ct_json_int(&j, "epochs", c->epochs);
  ct_json_int(&j, "batch", c->batch / (c->accumulate > 1 ? c->accumulate : 1));
  ct_json_int(&j, "accumulate", c->accumulate > 1 ? c->accumulate : 1);
  ct_json_int(&j, "global_batch", c->batch);
  ct_json_str(&j, "optimizer", c->optim.kind == CT_OPT_SGD ? "sgd" : "adamw");
  ct_json_num(&j, "lr", c->optim.lr);
  ct_json_int(&j, "seed", (long long)c->seed);
  ct_json_str(&j, "sync", sync_name(c, buf, sizeof buf));
  ct_json_str(&j, "balance", bn[s->balance_kind]);
  ct_json_str(&j, "wire", ct_wire_name((ct_wire)c->wire));
  ct_json_num(&j, "bucket_mb", c->bucket_mb);
  ct_json_int(&j, "shard_update", s->shard);
  json_shares(s, &j);
  ct_json_raw(&j, "devices", s->devices_json ? s->devices_json : "[]");
  return metrics_put(s, &j);
}

// Per rank, since the start: compute, copies, MPI, waiting, exposed communication (seconds).
static ct_status metrics_ranks(run_state *s, ct_json *j) {
  enum { K = 5 };
  ct_train_result *r = s->res;
  double mine[K] = {r->compute_s, s->ars.d2h_s + s->ars.h2d_s, s->ars.mpi_s, r->wait_s,
                    s->exposed_s};
  int world = s->comm->size;
  double *all = malloc((size_t)world * K * sizeof *all);
  if (!all) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  ct_status st = world > 1 ? ct_comm_gather_double(s->comm, mine, K, all) : CT_OK;
  if (world == 1) memcpy(all, mine, sizeof mine);
  if (st == CT_OK && R0 && s->metrics.f) {
    ct_json items = {0};
    for (int q = 0; q < world; q++) {
      ct_json one;
      ct_json_begin(&one);
      ct_json_int(&one, "rank", q);
      static const char *const names[K] = {"compute_s", "copy_s", "mpi_s", "wait_s", "exposed_s"};
      for (int k = 0; k < K; k++) ct_json_num(&one, names[k], all[(size_t)q * K + k]);
      ct_json_item(&items, &one);
    }
    ct_json_array(j, "ranks", &items);
  }
  free(all);
  return st;
}

static ct_status train(run_state *s) {
  const ct_train_config *cfg = s->cfg;
  ct_comm *comm = s->comm;
  ct_train_result *res = s->res;
  int world = comm->size, rank = comm->rank;
  long steps_per_epoch = (s->train.count + cfg->batch - 1) / cfg->batch;
  s->sched = cfg->sched;
  if (s->sched.total <= 0)   // the cosine spans all epochs (--max-steps only stops early)
    s->sched.total = steps_per_epoch * cfg->epochs;
  CT_TRY(ct_schedule_check(&s->sched));

  // identical parameters on every rank: seeded init (or a checkpoint), verified by checksum
  ct_checkpoint_pos pos = {0};
  if (cfg->resume) {
    CT_TRY(ct_checkpoint_load(cfg->resume, &s->arch, &s->opt, s->host_params, &pos, cfg->seed, cfg->shuffle, cfg->batch));
    if (pos.step_in_epoch >= steps_per_epoch) {
      pos.epoch++;
      pos.step_in_epoch = 0;
    }
    say(s, "resumed from %s at step %ld (epoch %d, step %ld of it), saved by %d rank(s)\n",
        cfg->resume, pos.step, pos.epoch + 1, pos.step_in_epoch, pos.world);
  } else {
    ct_model_init_params(&s->arch, cfg->seed, s->host_params);
  }
  CT_TRY(ct_model_upload_params(&s->model, s->host_params));
  uint64_t sum = ct_params_checksum(s->host_params, s->arch.param_count);
  if (world > 1) CT_TRY(ct_comm_check_same_u64(comm, sum, "initial parameter checksum"));

  say(s, "cltrain: model %s (%zu parameters), %d rank(s), global batch %d, %s, data %s (%s, "
      "%dx%dx%d, %d classes; %d train, %d test)\n",
      s->arch.text, s->arch.param_count, world, cfg->batch,
      cfg->optim.kind == CT_OPT_SGD ? "sgd" : "adamw", cfg->data_dir, s->train.format,
      s->train.channels, s->train.rows, s->train.cols, s->train.classes, s->train.count,
      s->test.count);
  CT_TRY(report_devices(s));
  say(s, "cltrain: parameter checksum %016llx on every rank\n", (unsigned long long)sum);
  if (world > 1) {
    static const char *const bn[] = {"auto", "even", "throughput", "static"};
    full_shares(s, s->weights, s->tmp_shares);
    if (R0) {
      printf("cltrain: --balance %s%s, --sync ", bn[s->balance_kind],
             cfg->balance == CT_BALANCE_AUTO ? " (auto)" : "");
      if (cfg->sync == CT_SYNC_LOCAL) printf("local:%d", cfg->local_k);
      else printf("%s", cfg->sync == CT_SYNC_STALE ? "stale" : "sync");
      printf("; shares of a batch of %d:", cfg->batch);
      for (int r = 0; r < world; r++) printf(" %d", s->tmp_shares[r]);
      printf("\n");
      fflush(stdout);
    }
  }
  CT_TRY(metrics_config(s));

  long step = pos.step;
  int epoch = pos.epoch;
  long si = pos.step_in_epoch;
  double train_log = 0, samples_log = 0, t_train = 0, samples_total = 0, samples_epoch = 0;
  progress prog = {.on = R0 && isatty(STDERR_FILENO), .si_epoch = pos.step_in_epoch};
  int stop = 0, k = 0;
#define HAS_STEP(e, st) ((e) < cfg->epochs && (cfg->max_steps <= 0 || (st) < cfg->max_steps))
  if (HAS_STEP(epoch, step)) loader_post(&s->load, &s->slots[0], epoch, si, step, s->weights);
  for (;;) {
    if (!HAS_STEP(epoch, step)) {
      stop = epoch < cfg->epochs;   // --max-steps ended it mid-run
      break;
    }
    if (step == cfg->inject_exit_step && rank == cfg->inject_exit_rank) {
      fprintf(stderr, "cltrain: rank %d exits at step %ld (CLTRAIN_INJECT_EXIT)\n", rank, step);
      _exit(3);
    }
    double t0 = ct_now(), waited;
    s->trace.step = step;
    ct_prof_set_tag(&s->dev, step);
    // prepare: this step's batch is ready (the loader filled it during the last step); start
    // the next one's
    slot *b = &s->slots[k];
    CT_TRY(loader_wait(&s->load, &waited));
    ct_trace_span(&s->trace, 0, "waiting for the loader", t0, t0 + waited);
    int next_epoch = epoch;
    long next_si = si + 1, next_step = step + 1;
    if (next_si == steps_per_epoch) next_epoch++, next_si = 0;
    if (HAS_STEP(next_epoch, next_step))
      loader_post(&s->load, &s->slots[k ^ 1], next_epoch, next_si, next_step, s->weights);
    // compute, reduce, apply: in the order of the --sync mode
    double compute_s = 0;
    CT_TRY(run_step(s, b, t0, &compute_s));
    CT_TRY(ct_prof_collect(&s->dev, 0));
    double t1 = ct_now();
    {
      char name[32];
      snprintf(name, sizeof name, "step %ld", step);
      ct_trace_span(&s->trace, 0, name, t0, t1);
    }
    res->compute_s += world > 1 ? compute_s : t1 - t0;
    t_train += t1 - t0;
    samples_total += b->n;
    samples_log += b->n;
    res->local_samples += b->m;
    if (s->measuring) {
      s->step_s += t1 - t0;
      s->samples_measured += b->n;
      s->wait_loader_s += waited;
      s->prep_s += b->prep_s;
    }
    step++;
    res->steps++;
    samples_epoch += b->n;
    if (prog.on) {
      long done_si = si + 1;
      double loss = s->loss_n > 0 ? s->loss_acc / s->loss_n : res->last_loss, dt = t_train - prog.t_epoch;
      progress_draw(&prog, epoch, cfg->epochs, done_si, steps_per_epoch, loss,
                    dt > 0 ? samples_epoch / dt : 0, t_train, done_si == steps_per_epoch);
    }
    if (res->steps == CT_WARMUP_STEPS) {   // kernels are built on first use: not throughput
      CT_TRY(drain(s));
      CT_TRY(ct_prof_collect(&s->dev, 1));
      CT_TRY(ct_prof_reset(&s->dev));
      s->measuring = 1;
      s->warm_compute = res->compute_s, s->warm_wait = res->wait_s, s->warm_ars = s->ars;
      s->warm_exposed = s->exposed_s;
      s->warm_train = t_train, s->warm_local = res->local_samples;
    }

    int end_of_epoch = si + 1 == steps_per_epoch;
    // replicas are compared at every average in local:K (they differ in between, on purpose)
    int check = world > 1 && cfg->check_every > 0 &&
                (cfg->sync == CT_SYNC_LOCAL ? s->since_avg == 0 && s->res->averages > s->checked_avg
                                            : step % cfg->check_every == 0);
    int log = cfg->log_every > 0 && step % cfg->log_every == 0;
    int ckpt = cfg->checkpoint && cfg->checkpoint_every > 0 && step % cfg->checkpoint_every == 0;
    int saving = ckpt || (end_of_epoch && cfg->checkpoint);
    // (stale: the replicas agree also with an update pending, so a check needs no flush)
    {
      // finishing what the steps left running (stale: the pending step's reduction and update;
      // local:K: the average; the last status reads) is training time: counted, like a step's
      // (a stale run checkpointing every step did all its reducing here, unseen: its samples/s
      // came out 30x too high)
      double tf = ct_now(), fc = 0;
      if (ckpt || end_of_epoch) CT_TRY(flush(s, saving, &fc));
      else if (log || check) CT_TRY(drain(s));
      count_finishing(s, tf, fc, &t_train);
    }
    if (check) s->checked_avg = s->res->averages;
    if (check) {
      char when[64];
      snprintf(when, sizeof when, "at step %ld", step);
      UNPROFILED(s, replica_check(s, when));
    }
    if (log) {
      // exactly the samples and the training time since the previous line (evaluation,
      // checkpoint writes and replica checks are not training time, as in the final figure)
      double rate = t_train > train_log ? samples_log / (t_train - train_log) : 0;
      if (!cfg->quiet) progress_end(&prog);
      res->last_loss = s->loss_n > 0 ? s->loss_acc / s->loss_n : NAN;
      double lr_now = ct_schedule_lr(&s->sched, cfg->optim.lr, step - 1);
      if (!cfg->quiet)
        say(s, "step %6ld  epoch %3d  loss %.4f  lr %.5f  %.1f samples/s\n", step, epoch + 1,
            res->last_loss, lr_now, rate);
      if (R0 && s->metrics.f) {
        ct_json j;
        ct_json_begin(&j);
        ct_json_str(&j, "type", "log");
        ct_json_num(&j, "time", ct_wall_seconds());
        ct_json_int(&j, "step", step);
        ct_json_int(&j, "epoch", epoch + 1);
        ct_json_num(&j, "loss", res->last_loss);
        ct_json_num(&j, "lr", lr_now);
        ct_json_num(&j, "samples_per_s", rate);
        ct_json_num(&j, "train_s", t_train);
        json_shares(s, &j);
        CT_TRY(metrics_put(s, &j));
      }
      s->loss_acc = s->loss_n = samples_log = 0;
      train_log = t_train;
    }
    if (ckpt) {
      ct_checkpoint_pos p = {step, epoch, si + 1, world, cfg->batch};
      UNPROFILED(s, save_checkpoint(s, &p));
    }
    if (end_of_epoch) {
      double acc;
      progress_end(&prog);
      prog.t_epoch = t_train, prog.si_epoch = 0, samples_epoch = 0;
      UNPROFILED(s, evaluate(s, &acc));
      res->test_acc = acc;
      res->epochs_done = epoch + 1;
      say(s, "epoch %3d  test accuracy %.4f  (%.1f s training so far)\n", epoch + 1, acc, t_train);
      if (cfg->metrics) {   // (collective: the per-rank times are gathered)
        ct_json j;
        ct_json_begin(&j);
        ct_json_str(&j, "type", "epoch");
        ct_json_num(&j, "time", ct_wall_seconds());
        ct_json_int(&j, "epoch", epoch + 1);
        ct_json_int(&j, "step", step);
        ct_json_num(&j, "test_accuracy", acc);
        ct_json_num(&j, "train_s", t_train);
        ct_json_num(&j, "eval_s", res->eval_s);
        ct_status mst = metrics_ranks(s, &j);
        if (mst == CT_OK && R0) mst = metrics_put(s, &j);
        else free(j.buf);
        CT_TRY(mst);
      }
      if (cfg->checkpoint) {
        ct_checkpoint_pos p = {step, epoch + 1, 0, world, cfg->batch};
        UNPROFILED(s, save_checkpoint(s, &p));
      }
    }
    epoch = next_epoch, si = next_si;
    k ^= 1;
  }
#undef HAS_STEP
  progress_end(&prog);
  {
    double tf = ct_now(), fc = 0;
    CT_TRY(flush(s, 0, &fc));
    count_finishing(s, tf, fc, &t_train);
  }
  if (stop || res->epochs_done == 0) UNPROFILED(s, evaluate(s, &res->test_acc));
  if (s->loss_n > 0) res->last_loss = s->loss_acc / s->loss_n;   // since the last log line
  if (res->steps == 0) res->last_loss = NAN;                        // (none: null in metrics)
  res->train_s = t_train;
  // throughput after the warm-up steps, as the PyTorch peer measures it (when there are enough)
  if (res->steps > 2 * CT_WARMUP_STEPS && s->step_s > 0)
    res->samples_per_s = s->samples_measured / s->step_s;
  else
    res->samples_per_s = t_train > 0 ? samples_total / t_train : 0;
  res->copy_s = s->ars.d2h_s + s->ars.h2d_s;
  res->mpi_s = s->ars.mpi_s;
  res->phase_s = t_train;
  res->exposed_s = s->exposed_s;
  res->sent_bytes = (double)s->ars.bytes_sent;
  if (res->steps > 2 * CT_WARMUP_STEPS) {   // the phase table, like samples/s: after the warm-up
    res->compute_s -= s->warm_compute;
    res->wait_s -= s->warm_wait;
    res->copy_s -= s->warm_ars.d2h_s + s->warm_ars.h2d_s;
    res->mpi_s -= s->warm_ars.mpi_s;
    res->exposed_s -= s->warm_exposed;
    res->sent_bytes -= (double)s->warm_ars.bytes_sent;
    res->local_samples -= s->warm_local;
    res->phase_s = t_train - s->warm_train;
  }
  if (world > 1 && !cfg->timing) {   // the ring's MPI time includes the wait: take it out
    res->mpi_s -= res->wait_s;
    if (res->mpi_s < 0) res->mpi_s = 0;
    // and so does the time after compute: exposed communication is what remains beyond
    // waiting for the slowest rank's compute (the wait column)
    res->exposed_s -= res->wait_s;
    if (res->exposed_s < 0) res->exposed_s = 0;
  }
  double fwd;
  ct_arch_flops(&s->arch, &fwd, &res->flops_per_sample);
  res->best_gflops = s->dev.blas->best_gflops;
  res->gflops = res->phase_s > 0 ? res->local_samples * res->flops_per_sample / res->phase_s / 1e9 : 0;
  if (cfg->check_every > 0 && world > 1) UNPROFILED(s, replica_check(s, "at the end"));
  if (cfg->save_params) CT_TRY(save_params_file(s, cfg->save_params));
  if (cfg->save_safetensors) CT_TRY(save_safetensors_file(s, cfg->save_safetensors));
  if (cfg->trace) {
    char label[400];
    snprintf(label, sizeof label, "rank %d: %s [%s]", comm->rank, s->dev.info.name,
             s->dev.info.platform_name);
    CT_TRY(ct_trace_write(&s->trace, comm, label, cfg->trace));
  }
  return CT_OK;
}

// ---- reports ----------------------------------------------------------------------------------

static int by_seconds(const void *a, const void *b) {
  double x = ((const ct_prof_row *)a)->seconds, y = ((const ct_prof_row *)b)->seconds;
  return x < y ? 1 : x > y ? -1 : 0;
}

// This rank's --profile table as text (rank 0 prints every rank's).
static void profile_text(run_state *s, char *buf, size_t size) {
  int n;
  const ct_prof_row *rows0 = ct_prof_rows(&s->dev, &n);
  ct_prof_row *rows = malloc((size_t)(n + 4) * sizeof *rows);
  size_t len = 0;
#define OUT(...)                                                                    \
  do {                                                                              \
    int w_ = snprintf(buf + len, len < size ? size - len : 0, __VA_ARGS__);         \
    if (w_ > 0) len += (size_t)w_;                                                  \
  } while (0)
  if (!rows) {
    snprintf(buf, size, "rank %d: out of host memory for the profile\n", s->comm->rank);
    return;
  }
  memcpy(rows, rows0, (size_t)n * sizeof *rows);
  // host rows measured by the trainer, on the step's critical path
  int nh = 0;
  ct_prof_row host[3];
  memset(host, 0, sizeof host);
  snprintf(host[nh].name, sizeof host[nh].name, "host: waiting for the loader thread");
  host[nh].kind = CT_PROF_HOST, host[nh].seconds = s->wait_loader_s, host[nh].calls = 0;
  nh++;
  if (s->comm->size > 1) {
    snprintf(host[nh].name, sizeof host[nh].name, "host: all-reduce (staging copies + MPI)");
    host[nh].kind = CT_PROF_HOST, host[nh].seconds = s->allreduce_s;
    nh++;
    if (s->cfg->timing) {
      snprintf(host[nh].name, sizeof host[nh].name, "host: barrier before the all-reduce");
      host[nh].kind = CT_PROF_HOST, host[nh].seconds = s->barrier_s;
      nh++;
    }
  }
  memcpy(rows + n, host, (size_t)nh * sizeof *host);
  n += nh;
  qsort(rows, (size_t)n, sizeof *rows, by_seconds);
  double T = s->step_s, sum = 0, dev_s = 0;
  long steps = s->res->steps - CT_WARMUP_STEPS;
  OUT("\nprofile, rank %d on %s: %ld steps after %d warm-up, %.3f s of steps (%.2f ms per step)\n",
      s->comm->rank, s->dev.info.name, steps, CT_WARMUP_STEPS, T, steps > 0 ? 1e3 * T / steps : 0);
  OUT("%-52s %8s %10s %7s %9s\n", "kernel / phase", "calls", "total ms", "% step", "GFLOP/s");
  for (int i = 0; i < n; i++) {
    const ct_prof_row *r = &rows[i];
    sum += r->seconds;
    if (r->kind != CT_PROF_HOST) dev_s += r->seconds;
    char gf[16] = "";
    if (r->flops > 0 && r->seconds > 0) snprintf(gf, sizeof gf, "%.1f", r->flops / r->seconds / 1e9);
    char calls[16] = "-";
    if (r->kind != CT_PROF_HOST) snprintf(calls, sizeof calls, "%ld", r->calls);
    OUT("%-52.52s %8s %10.2f %6.1f%% %9s\n", r->name, calls, 1e3 * r->seconds,
        T > 0 ? 100.0 * r->seconds / T : 0.0, gf);
  }
  OUT("%-52s %8s %10.2f %6.1f%%\n", "sum of the rows", "", 1e3 * sum, T > 0 ? 100.0 * sum / T : 0.0);
  OUT("%-52s %8s %10.2f %6.1f%%\n", "(device busy: kernels and transfers)", "", 1e3 * dev_s,
      T > 0 ? 100.0 * dev_s / T : 0.0);
  OUT("%-52s %8s %10.2f %6s  (overlapped, not in the sum)\n", "loader thread: batch preparation",
      "", 1e3 * s->prep_s, "");
  free(rows);
#undef OUT
}

static ct_status report_profile(run_state *s) {
  enum { W = 16384 };
  char *mine = malloc(W);
  char *all = R0 ? malloc((size_t)s->comm->size * W) : NULL;
  ct_status st = CT_OK;
  if (!mine || (R0 && !all)) {
    st = CT_FAIL(CT_ERR_NOMEM, "out of host memory");
    goto out;
  }
  profile_text(s, mine, W);
  mine[W - 1] = 0;
  if (s->comm->size > 1) {
    int rc = MPI_Gather(mine, W, MPI_CHAR, all, W, MPI_CHAR, 0, s->comm->comm);
    if (rc != MPI_SUCCESS) {
      st = CT_FAIL(CT_ERR_MPI, "MPI_Gather of profiles failed on rank %d", s->comm->rank);
      goto out;
    }
  } else {
    memcpy(all, mine, W);
  }
  for (int r = 0; R0 && r < s->comm->size; r++) fputs(all + (size_t)r * W, stdout);
  fflush(stdout);
out:
  free(mine), free(all);
  return st;
}

// Rank 0 prints each rank's time per phase (gathered) and the mean over ranks.
static ct_status report(run_state *s) {
  enum { K = 11 };
  ct_comm *comm = s->comm;
  ct_train_result *r = s->res;
  if (s->cfg->profile) CT_TRY(report_profile(s));
  double mine[K] = {r->compute_s, r->copy_s, r->mpi_s, r->wait_s, r->phase_s, r->eval_s,
                    r->local_samples, r->gflops, r->best_gflops, r->exposed_s, r->sent_bytes};
  double *all = malloc((size_t)comm->size * K * sizeof *all);
  if (!all) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  ct_status st = comm->size > 1 ? ct_comm_gather_double(comm, mine, K, all) : CT_OK;
  if (comm->size == 1) memcpy(all, mine, sizeof mine);
  if (st == CT_OK && R0) {
    double mean[K] = {0};
    if (r->steps > 2 * CT_WARMUP_STEPS)
      printf("\nper rank, after the %d warm-up steps (kernels build in them):", CT_WARMUP_STEPS);
    if (r->steps > 0)   // (a resumed run with nothing left to train has no table)
      printf("\nrank  compute_s   copies_s   mpi_s    wait_s   step_s   comm%%  exposed%%   samples/s   GFLOP/s  util%%\n");
    for (int k = 0; k <= comm->size; k++) {
      double *v = k < comm->size ? all + K * k : mean;
      if (k < comm->size)
        for (int j = 0; j < K; j++) mean[j] += v[j] / comm->size;
      if (r->steps == 0) continue;
      char label[16], util[16] = "    -";
      if (k < comm->size) snprintf(label, sizeof label, "%d", k);
      else snprintf(label, sizeof label, "mean");
      double comm_frac = v[4] > 0 ? 100.0 * (v[1] + v[2] + v[3]) / v[4] : 0;
      double sps = v[4] > 0 ? v[6] / v[4] : 0;   // this rank's samples over its step time
      if (k < comm->size && v[8] > 0) snprintf(util, sizeof util, "%5.1f", 100.0 * v[7] / v[8]);
      double exposed = v[4] > 0 ? 100.0 * v[9] / v[4] : 0;
      printf("%4s  %9.3f  %9.3f  %7.3f  %7.3f  %7.3f  %5.1f%%  %7.1f%%  %9.1f  %8.1f  %s\n", label,
             v[0], v[1], v[2], v[3], v[4], comm_frac, exposed, sps, v[7], util);
    }
    if (comm->size > 1) {
      full_shares(s, s->weights, s->tmp_shares);
      printf("\nshares of a batch of %d at the end:", s->cfg->batch);
      for (int k = 0; k < comm->size; k++) printf(" %d", s->tmp_shares[k]);
      printf(" (%ld changes", r->share_changes);
      if (s->cfg->sync == CT_SYNC_LOCAL) printf(", %ld parameter averages", r->averages);
      printf(")\n");
      long measured = r->steps > 2 * CT_WARMUP_STEPS ? r->steps - CT_WARMUP_STEPS : r->steps;
      double sent = 0;
      for (int k = 0; k < comm->size; k++) sent += all[K * k + 10] / comm->size;
      if (measured > 0 && s->cfg->sync != CT_SYNC_LOCAL)
        printf("all-reduce: %.4g MB sent per step and rank (gradients as %s on the wire%s)\n",
               sent / (double)measured / 1e6, ct_wire_name((ct_wire)s->cfg->wire),
               s->nb > 0   ? ", in buckets"
               : s->shard ? "; reduce-scattered, parameters all-gathered"
                          : "");
    }
    if (s->metrics.f) {
      ct_json j;
      ct_json_begin(&j);
      ct_json_str(&j, "type", "final");
      ct_json_num(&j, "time", ct_wall_seconds());
      ct_json_num(&j, "test_accuracy", r->test_acc);
      ct_json_num(&j, "loss", r->last_loss);
      ct_json_int(&j, "steps", r->steps);
      ct_json_int(&j, "skipped", r->bad_steps);
      ct_json_int(&j, "divergences", r->divergences);
      ct_json_int(&j, "share_changes", r->share_changes);
      ct_json_num(&j, "train_s", r->train_s);
      ct_json_num(&j, "eval_s", r->eval_s);
      ct_json_num(&j, "samples_per_s", r->samples_per_s);
      ct_json items = {0};   // the per-rank table (after the warm-up steps)
      for (int q = 0; q < comm->size; q++) {
        const double *v = all + (size_t)K * q;
        ct_json one;
        ct_json_begin(&one);
        ct_json_int(&one, "rank", q);
        ct_json_num(&one, "compute_s", v[0]);
        ct_json_num(&one, "copy_s", v[1]);
        ct_json_num(&one, "mpi_s", v[2]);
        ct_json_num(&one, "wait_s", v[3]);
        ct_json_num(&one, "step_s", v[4]);
        ct_json_num(&one, "exposed_s", v[9]);
        ct_json_num(&one, "sent_bytes", v[10]);
        ct_json_num(&one, "samples", v[6]);
        ct_json_num(&one, "gflops", v[7]);
        ct_json_item(&items, &one);
      }
      ct_json_array(&j, "ranks", &items);
      st = metrics_put(s, &j);
      if (st == CT_OK) st = ct_metrics_close(&s->metrics);
    }
    if (r->steps == 0) {   // resumed at or past the end: the checkpoint's model, evaluated
      printf("\nfinal: test accuracy %.4f, 0 steps (the checkpoint is already at the end of "
             "--epochs %d%s), %.1f s evaluation\n", r->test_acc, s->cfg->epochs,
             s->cfg->max_steps > 0 ? " or --max-steps" : "", r->eval_s);
      fflush(stdout);
      free(all);
      return st;
    }
    printf("\nfinal: test accuracy %.4f, loss %.4f, %ld steps (%ld skipped), %ld divergences, "
           "%.1f s training, %.1f s evaluation, %.1f samples/s\n",
           r->test_acc, r->last_loss, r->steps, r->bad_steps, r->divergences, r->train_s,
           r->eval_s, r->samples_per_s);
    double g = r->samples_per_s * r->flops_per_sample / 1e9;
    printf("flops: %.3f MFLOP per sample and step (matrix products), %.1f GFLOP/s achieved in all",
           r->flops_per_sample / 1e6, g);
    if (mean[8] > 0)
      printf(", device utilisation %.1f%% of the best SGEMM rate measured (%.1f GFLOP/s per "
             "device, tuning cache)\n", 100.0 * g / comm->size / mean[8], mean[8]);
    else
      printf(", device utilisation unknown (no tuning cache: cltrain-tune measures the best rate)\n");
    fflush(stdout);
  }
  free(all);
  return st;
}

ct_status ct_train_run(const ct_train_config *cfg, ct_comm *comm, ct_train_result *res) {
  run_state s;
  memset(&s, 0, sizeof s);
  memset(res, 0, sizeof *res);
  // --accumulate K: an optimizer step takes K global batches of --batch, computed in K chunks.
  // The loader, the shares, the schedule, the checkpoints and the logs see one global batch of
  // K x --batch (a checkpoint so made resumes as --batch K x B, or as K' x B' with the same
  // product); only the model's buffers stay the size of one chunk.
  ct_train_config eff = *cfg;
  if (eff.accumulate < 1) eff.accumulate = 1;
  if ((long long)eff.batch * eff.accumulate > (1 << 24))
    return CT_FAIL(CT_ERR_USAGE, "--accumulate: %d x --batch %d exceeds %d samples per step",
                   eff.accumulate, eff.batch, 1 << 24);
  eff.batch *= eff.accumulate;
  s.cfg = &eff;
  s.comm = comm;
  s.res = res;
  ct_status st = setup(&s);
  if (st == CT_OK) st = train(&s);
  if (st == CT_OK) st = report(&s);
  teardown(&s);
  return st;
}
