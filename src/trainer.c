// trainer.c: the synchronous data-parallel training loop, evaluation and per-phase metrics.
//
//   epoch e: order = permutation(seed, e) of the training set (the same on every rank)
//   step s:  global batch = order[s*B .. s*B+B)        (the last one may be shorter)
//            mine = ct_shard_take(global batch, shares) (this rank's share)
//            forward(mine) -> backward(loss scale 1/|global batch|) -> grads
//            [wait: barrier]  [ring all-reduce SUM of grads]  [non-finite check]
//            optimizer(params, grads, lr(step))
#include "cltrain/trainer.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cltrain/allreduce.h"
#include "cltrain/checkpoint.h"
#include "cltrain/layers.h"
#include "cltrain/model.h"
#include "cltrain/program.h"
#include "cltrain/timer.h"

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

// ---- the state of one run -------------------------------------------------------------------

typedef struct {
  const ct_train_config *cfg;
  ct_comm *comm;
  ct_device dev;
  ct_dataset train, test;
  ct_arch arch;
  ct_model model;
  ct_optim opt;
  ct_allreduce *ar;
  cl_mem bad;              // (1) uint: non-finite counter
  int max_share;           // largest share any rank gets: the model's max batch
  int *order;              // (train.count) this epoch's global order
  int *shares;             // (world) samples per rank in this step
  int *mine;               // (max_share) this rank's sample indices
  float *x;                // (max_share, in) host batch
  int *y;                  // (max_share)
  float *losses;           // (max_share)
  float *host_params;      // (param_count)
  ct_schedule sched;       // cfg->sched, with the cosine's length filled in
  ct_allreduce_stats ars;
  ct_train_result *res;
} run_state;

#define R0 (s->comm->rank == 0)
#define CT_WARMUP_STEPS 5   // steps left out of the throughput figure

static void say(run_state *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(run_state *s, const char *fmt, ...) {
  if (!R0) return;
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  fflush(stdout);
}

static ct_status enqueue_count_nonfinite(run_state *s, cl_mem x, size_t n) {
  cl_kernel k;
  CT_TRY(ct_kernel(&s->dev, "util", "count_nonfinite_f32", &k));
  cl_uint nn = (cl_uint)n;
  CL_CHECK(clSetKernelArg(k, 0, sizeof x, &x));
  CL_CHECK(clSetKernelArg(k, 1, sizeof nn, &nn));
  CL_CHECK(clSetKernelArg(k, 2, sizeof s->bad, &s->bad));
  size_t global = 256 * 16;
  CL_CHECK(clEnqueueNDRangeKernel(s->dev.queue, k, 1, NULL, &global, NULL, 0, NULL, NULL));
  return CT_OK;
}

// Counts non-finite values in the local losses (batch) and the reduced gradients; the answer is
// made the same on every rank (a one-int all-reduce) so every rank skips the same steps.
static ct_status nonfinite_check(run_state *s, int batch, int *bad_any) {
  cl_uint zero = 0, count = 0;
  CL_CHECK(clEnqueueWriteBuffer(s->dev.queue, s->bad, CL_FALSE, 0, sizeof zero, &zero, 0, NULL, NULL));
  if (batch > 0) CT_TRY(enqueue_count_nonfinite(s, s->model.losses, (size_t)batch));
  CT_TRY(enqueue_count_nonfinite(s, s->model.grads, s->arch.param_count));
  CL_CHECK(clEnqueueReadBuffer(s->dev.queue, s->bad, CL_TRUE, 0, sizeof count, &count, 0, NULL, NULL));
  int flag = count > 0;
  if (s->comm->size > 1) CT_TRY(ct_comm_allreduce_int_max(s->comm, &flag, 1));
  *bad_any = flag;
  return CT_OK;
}

// Evaluates the test set: rank r takes a contiguous slice, the correct counts are summed.
static ct_status evaluate(run_state *s, double *acc) {
  double t0 = ct_now();
  int n = s->test.count, world = s->comm->size, r = s->comm->rank;
  int lo = (int)((long)n * r / world), hi = (int)((long)n * (r + 1) / world);
  int classes = s->arch.classes;
  float *logits = malloc((size_t)s->max_share * (size_t)classes * sizeof *logits);
  if (!logits) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  double correct = 0;
  ct_status st = CT_OK;
  for (int b = lo; b < hi; b += s->max_share) {
    int m = hi - b < s->max_share ? hi - b : s->max_share;
    for (int i = 0; i < m; i++) s->mine[i] = b + i;
    ct_dataset_gather(&s->test, s->mine, m, s->cfg->norm_mean, s->cfg->norm_std, s->x, s->y);
    CT_GOTO(ct_model_set_batch(&s->model, s->x, s->y, m), st, out);
    CT_GOTO(ct_model_forward(&s->model, m, 0, 0), st, out);
    CT_GOTO(ct_model_read_logits(&s->model, m, logits), st, out);
    for (int i = 0; i < m; i++) {
      const float *l = logits + (size_t)i * (size_t)classes;
      int best = 0;
      for (int c = 1; c < classes; c++)
        if (l[c] > l[best]) best = c;
      correct += best == s->y[i];
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

static ct_status resync(run_state *s) {
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

// ---- setup ------------------------------------------------------------------------------------

static ct_status setup(run_state *s) {
  const ct_train_config *cfg = s->cfg;
  ct_comm *comm = s->comm;
  CT_TRY(ct_dataset_load(cfg->data_dir, "train", 10, &s->train));
  CT_TRY(ct_dataset_load(cfg->data_dir, "t10k", 10, &s->test));
  if (cfg->limit > 0) ct_dataset_limit(&s->train, cfg->limit);
  if (cfg->test_limit > 0) ct_dataset_limit(&s->test, cfg->test_limit);
  if (cfg->batch > s->train.count)
    return CT_FAIL(CT_ERR_USAGE, "--batch: %d is larger than the training set (%d samples)",
                   cfg->batch, s->train.count);
  if (cfg->batch < comm->size)
    return CT_FAIL(CT_ERR_USAGE, "--batch: %d is smaller than the number of ranks (%d)",
                   cfg->batch, comm->size);
  CT_TRY(ct_arch_parse(cfg->arch, s->train.channels, s->train.rows, s->train.cols,
                       s->train.classes, &s->arch));
  CT_TRY(ct_device_open_spec(cfg->device, comm->rank, comm->local_rank, &s->dev));

  s->max_share = (cfg->batch + comm->size - 1) / comm->size;
  size_t in = (size_t)s->train.channels * (size_t)s->train.rows * (size_t)s->train.cols;
  s->order = malloc((size_t)s->train.count * sizeof *s->order);
  s->shares = malloc((size_t)comm->size * sizeof *s->shares);
  s->mine = malloc((size_t)s->max_share * sizeof *s->mine);
  s->x = malloc((size_t)s->max_share * in * sizeof *s->x);
  s->y = malloc((size_t)s->max_share * sizeof *s->y);
  s->losses = malloc((size_t)s->max_share * sizeof *s->losses);
  s->host_params = malloc(s->arch.param_count * sizeof *s->host_params);
  if (!s->order || !s->shares || !s->mine || !s->x || !s->y || !s->losses || !s->host_params)
    return CT_FAIL(CT_ERR_NOMEM, "out of host memory");

  CT_TRY(ct_model_init(&s->dev, &s->arch, s->max_share, &s->model));
  CT_TRY(ct_optim_init(&s->dev, &cfg->optim, s->arch.param_count, &s->opt));
  cl_int err;
  CL_CHECK((s->bad = clCreateBuffer(s->dev.ctx, CL_MEM_READ_WRITE, sizeof(cl_uint), NULL, &err), err));
  if (comm->size > 1)
    CT_TRY(ct_allreduce_init(comm, &s->dev, s->arch.param_count, 0, &s->ar));
  return CT_OK;
}

static void teardown(run_state *s) {
  if (s->ar) ct_allreduce_free(s->ar);
  if (s->bad) clReleaseMemObject(s->bad);
  if (s->opt.dev) ct_optim_free(&s->opt);
  if (s->model.dev) ct_model_free(&s->model);
  if (s->dev.ctx) ct_device_close(&s->dev);
  ct_dataset_free(&s->train);
  ct_dataset_free(&s->test);
  free(s->order), free(s->shares), free(s->mine), free(s->x), free(s->y), free(s->losses);
  free(s->host_params);
}

// Rank 0 prints which device each rank trains on.
static ct_status report_devices(run_state *s) {
  enum { W = 320 };
  char mine[W];
  snprintf(mine, W, "%d:%d %s [%s]", s->dev.info.platform, s->dev.info.index, s->dev.info.name,
           s->dev.info.platform_name);
  char *all = R0 ? malloc((size_t)s->comm->size * W) : NULL;
  if (R0 && !all) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  int rc = MPI_Gather(mine, W, MPI_CHAR, all, W, MPI_CHAR, 0, s->comm->comm);
  if (rc != MPI_SUCCESS) {
    free(all);
    return CT_FAIL(CT_ERR_MPI, "MPI_Gather of device names failed on rank %d", s->comm->rank);
  }
  for (int r = 0; R0 && r < s->comm->size; r++) say(s, "cltrain: rank %d on %s\n", r, all + (size_t)r * W);
  free(all);
  return CT_OK;
}

// ---- the loop ---------------------------------------------------------------------------------

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

  say(s, "cltrain: model %s (%zu parameters), %d rank(s), global batch %d, %s, data %s (%d train, %d test)\n",
      s->arch.text, s->arch.param_count, world, cfg->batch,
      cfg->optim.kind == CT_OPT_SGD ? "sgd" : "adamw", cfg->data_dir, s->train.count, s->test.count);
  CT_TRY(report_devices(s));
  say(s, "cltrain: parameter checksum %016llx on every rank\n", (unsigned long long)sum);

  long step = pos.step;
  int bad_run = 0;
  double loss_acc = 0, loss_n = 0, t_log = ct_now(), samples_log = 0;
  double t_train = 0, samples_total = 0, t_warm = 0, samples_warm = 0;
  int stop = 0;
  for (int epoch = pos.epoch; epoch < cfg->epochs && !stop; epoch++) {
    ct_epoch_order(s->train.count, cfg->seed, epoch, cfg->shuffle, s->order);
    long first = epoch == pos.epoch ? pos.step_in_epoch : 0;
    for (long si = first; si < steps_per_epoch; si++) {
      if (cfg->max_steps > 0 && step >= cfg->max_steps) { stop = 1; break; }
      if (step == cfg->inject_exit_step && rank == cfg->inject_exit_rank) {
        fprintf(stderr, "cltrain: rank %d exits at step %ld (CLTRAIN_INJECT_EXIT)\n", rank, step);
        _exit(3);
      }
      double t0 = ct_now();
      const int *gb = s->order + si * cfg->batch;
      int n = (int)(si == steps_per_epoch - 1 ? s->train.count - si * cfg->batch : cfg->batch);
      ct_shares_even(n, world, s->shares);
      int m = ct_shard_take(cfg->shard, &s->train, gb, n, cfg->seed, step, s->shares, world, rank,
                            s->mine);
      if (m < 0) return CT_FAIL(CT_ERR_INTERNAL, "ct_shard_take failed at step %ld", step);
      ct_dataset_gather(&s->train, s->mine, m, cfg->norm_mean, cfg->norm_std, s->x, s->y);
      s->model.sample_offset = 0;   // dropout masks follow the position in the global batch
      for (int r = 0; r < rank; r++) s->model.sample_offset += s->shares[r];
      CT_TRY(ct_model_set_batch(&s->model, s->x, s->y, m));
      CT_TRY(ct_model_forward(&s->model, m, 1, cfg->seed * 0x9E3779B97F4A7C15ULL + (uint64_t)step));
      CT_TRY(ct_model_backward(&s->model, m, 1.0f / (float)n));
      if (cfg->inject_nan_step >= 0 && step >= cfg->inject_nan_step &&
          step < cfg->inject_nan_step + cfg->inject_nan_count && rank == cfg->inject_nan_rank) {
        // poison this rank's gradients: the guard must catch it on every rank
        CT_TRY(ct_fill(&s->dev, s->model.grads, 1, NAN));
      }
      if (m > 0) CT_TRY(ct_model_read_losses(&s->model, m, s->losses));   // also waits for compute
      else CL_CHECK(clFinish(s->dev.queue));
      double t1 = ct_now();
      res->compute_s += t1 - t0;
      if (world > 1) {
        CT_TRY(ct_comm_barrier(comm));   // time here is waiting for slower ranks
        double t2 = ct_now();
        res->wait_s += t2 - t1;
        CT_TRY(ct_allreduce_device(s->ar, s->model.grads, 0, s->arch.param_count, &s->ars));
      }
      double t3 = ct_now();
      int bad = 0;
      CT_TRY(nonfinite_check(s, m, &bad));
      if (bad) {
        res->bad_steps++;
        bad_run++;
        say(s, "cltrain: step %ld: non-finite loss or gradient, step skipped (%d in a row, limit %d)\n",
            step, bad_run, cfg->max_bad_steps);
        if (bad_run >= cfg->max_bad_steps)
          return CT_FAIL(CT_ERR_NONFINITE,
                         "stopping: %d consecutive steps with non-finite loss or gradients "
                         "(--max-bad-steps %d); last good checkpoint: %s",
                         bad_run, cfg->max_bad_steps, cfg->checkpoint ? cfg->checkpoint : "none");
      } else {
        bad_run = 0;
        float lr = ct_schedule_lr(&s->sched, cfg->optim.lr, step);
        CT_TRY(ct_optim_step(&s->opt, s->model.params, s->model.grads, lr));
        for (int i = 0; i < m; i++) loss_acc += s->losses[i];
        loss_n += m;
      }
      if (step == cfg->inject_diverge_step && rank == cfg->inject_diverge_rank) {
        float v = 1.0f;   // perturb one parameter of this replica only
        CL_CHECK(clEnqueueWriteBuffer(s->dev.queue, s->model.params, CL_TRUE, 0, sizeof v, &v, 0, NULL, NULL));
      }
      CL_CHECK(clFinish(s->dev.queue));
      double t4 = ct_now();
      res->compute_s += t4 - t3;
      t_train += t4 - t0;
      samples_total += n;
      if (res->steps < CT_WARMUP_STEPS) {   // kernels are built on first use: not throughput
        t_warm += t4 - t0;
        samples_warm += n;
      }
      samples_log += n;
      res->local_samples += m;
      step++;
      res->steps++;

      if (cfg->check_every > 0 && step % cfg->check_every == 0 && world > 1) {
        char when[64];
        snprintf(when, sizeof when, "at step %ld", step);
        CT_TRY(replica_check(s, when));
      }
      if (cfg->log_every > 0 && step % cfg->log_every == 0) {
        double v[2] = {loss_acc, loss_n};
        if (world > 1) CT_TRY(ct_comm_allreduce_double_sum(comm, v, 2));
        double now = ct_now();
        res->last_loss = v[1] > 0 ? v[0] / v[1] : NAN;
        if (!cfg->quiet)
          say(s, "step %6ld  epoch %3d  loss %.4f  lr %.5f  %.1f samples/s\n", step, epoch + 1,
              res->last_loss, ct_schedule_lr(&s->sched, cfg->optim.lr, step - 1),
              samples_log / (now - t_log));
        loss_acc = loss_n = samples_log = 0;
        t_log = now;
      }
      if (cfg->checkpoint && cfg->checkpoint_every > 0 && step % cfg->checkpoint_every == 0) {
        ct_checkpoint_pos p = {step, epoch, si + 1, world, cfg->batch};
        CT_TRY(ct_checkpoint_save(cfg->checkpoint, &s->model, &s->opt, &p, cfg->seed, cfg->shuffle, comm, s->host_params));
      }
    }
    if (stop) break;
    double acc;
    CT_TRY(evaluate(s, &acc));
    res->test_acc = acc;
    res->epochs_done = epoch + 1;
    say(s, "epoch %3d  test accuracy %.4f  (%.1f s training so far)\n", epoch + 1, acc, t_train);
    if (cfg->checkpoint) {
      ct_checkpoint_pos p = {step, epoch + 1, 0, world, cfg->batch};
      CT_TRY(ct_checkpoint_save(cfg->checkpoint, &s->model, &s->opt, &p, cfg->seed, cfg->shuffle, comm, s->host_params));
    }
  }
  if (stop || res->epochs_done == 0) {
    CT_TRY(evaluate(s, &res->test_acc));
  }
  {   // the loss since the last log line; collective on every rank, whatever its own share
    double v[2] = {loss_acc, loss_n};
    if (world > 1) CT_TRY(ct_comm_allreduce_double_sum(comm, v, 2));
    if (v[1] > 0) res->last_loss = v[0] / v[1];
  }
  res->train_s = t_train;
  // throughput after the warm-up steps, as the PyTorch peer measures it (when there are enough)
  if (res->steps > 2 * CT_WARMUP_STEPS)
    res->samples_per_s = (samples_total - samples_warm) / (t_train - t_warm);
  else
    res->samples_per_s = t_train > 0 ? samples_total / t_train : 0;
  res->copy_s = s->ars.d2h_s + s->ars.h2d_s;
  res->mpi_s = s->ars.mpi_s;
  if (cfg->check_every > 0 && world > 1) CT_TRY(replica_check(s, "at the end"));
  if (cfg->save_params) CT_TRY(save_params_file(s, cfg->save_params));
  return CT_OK;
}

// Rank 0 prints each rank's time per phase (gathered) and the mean over ranks.
static ct_status report(run_state *s) {
  enum { K = 7 };
  ct_comm *comm = s->comm;
  ct_train_result *r = s->res;
  double mine[K] = {r->compute_s, r->copy_s, r->mpi_s, r->wait_s, r->train_s, r->eval_s,
                    r->local_samples};
  double *all = malloc((size_t)comm->size * K * sizeof *all);
  if (!all) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  ct_status st = comm->size > 1 ? ct_comm_gather_double(comm, mine, K, all) : CT_OK;
  if (comm->size == 1) memcpy(all, mine, sizeof mine);
  if (st == CT_OK && R0) {
    double mean[K] = {0};
    printf("\nrank  compute_s   copies_s   mpi_s    wait_s   step_s   comm%%   samples/s\n");
    for (int k = 0; k <= comm->size; k++) {
      double *v = k < comm->size ? all + K * k : mean;
      if (k < comm->size)
        for (int j = 0; j < K; j++) mean[j] += v[j] / comm->size;
      char label[16];
      if (k < comm->size) snprintf(label, sizeof label, "%d", k);
      else snprintf(label, sizeof label, "mean");
      double comm_frac = v[4] > 0 ? 100.0 * (v[1] + v[2] + v[3]) / v[4] : 0;
      double sps = v[4] > 0 ? v[6] / v[4] : 0;   // this rank's samples over its step time
      printf("%4s  %9.3f  %9.3f  %7.3f  %7.3f  %7.3f  %5.1f%%  %9.1f\n", label, v[0], v[1],
             v[2], v[3], v[4], comm_frac, sps);
    }
    printf("\nfinal: test accuracy %.4f, loss %.4f, %ld steps (%ld skipped), %ld divergences, "
           "%.1f s training, %.1f s evaluation, %.1f samples/s\n",
           r->test_acc, r->last_loss, r->steps, r->bad_steps, r->divergences, r->train_s,
           r->eval_s, r->samples_per_s);
    fflush(stdout);
  }
  free(all);
  return st;
}

ct_status ct_train_run(const ct_train_config *cfg, ct_comm *comm, ct_train_result *res) {
  run_state s;
  memset(&s, 0, sizeof s);
  memset(res, 0, sizeof *res);
  s.cfg = cfg;
  s.comm = comm;
  s.res = res;
  ct_status st = setup(&s);
  if (st == CT_OK) st = train(&s);
  if (st == CT_OK) st = report(&s);
  teardown(&s);
  return st;
}
