// run.c: the run loop: epochs, steps, logging, checkpoints, evaluation and the end of a run.
// See run.h.
#include "cltrain/run.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cltrain/blas.h"
#include "cltrain/checkpoint.h"
#include "cltrain/evaluate.h"
#include "cltrain/export.h"
#include "cltrain/hooks.h"
#include "cltrain/prof.h"
#include "cltrain/report.h"
#include "cltrain/resume.h"
#include "cltrain/step.h"
#include "cltrain/sync.h"
#include "cltrain/timer.h"
#include "cltrain/weights.h"

// Where the loop stands, and its running sums.
typedef struct {
  long steps_per_epoch;
  long step;               // global steps done
  int epoch;
  long si;                 // steps of the epoch done
  int k;                   // the slot of this step
  double t_train;          // training time so far (evaluation, checkpoints and checks excluded)
  double train_log, samples_log;   // at the last log line; samples since
  double samples_total, samples_epoch;
  ct_progress prog;
} loop;

// ---- the start ------------------------------------------------------------------------------

// Identical parameters on every rank: seeded initialisation (or a checkpoint), verified by
// checksum; the schedule's length; the run's first lines.
static ct_status start(ct_run_state *s, loop *L) {
  const ct_train_config *cfg = s->cfg;
  int world = s->comm->size;
  L->steps_per_epoch = (s->train.count + cfg->batch - 1) / cfg->batch;
  s->sched = cfg->sched;
  if (s->sched.total <= 0)   // the cosine spans --max-steps when given (nanoGPT's
    s->sched.total = cfg->max_steps > 0 ? cfg->max_steps   // lr_decay_iters), else all epochs
                                        : L->steps_per_epoch * cfg->epochs;
  CT_TRY(ct_schedule_check(&s->sched));
  ct_checkpoint_pos pos;
  CT_TRY(ct_resume_start(s, L->steps_per_epoch, &pos));   // (a checkpoint, or a fresh start)
  CT_TRY(ct_model_upload_params(&s->model, s->host_params));
  uint64_t sum = ct_params_checksum(s->host_params, s->arch.param_count);
  if (world > 1) CT_TRY(ct_comm_check_same_u64(s->comm, sum, "initial parameter checksum"));
  CT_TRY(ct_report_start(s, sum));
  L->step = pos.step, L->epoch = pos.epoch, L->si = pos.step_in_epoch;
  ct_progress_start(&L->prog, R0, pos.step_in_epoch);
  return CT_OK;
}

// ---- between steps --------------------------------------------------------------------------

// Finishing what the steps left running, from tf until now (flush's compute time fc), is
// training time, counted like a step's: its wall time in the training time and (after the
// warm-up) the step time; its compute, with one rank its wall time, in the compute column.
static void count_finishing(ct_run_state *s, double tf, double fc, double *t_train) {
  double df = ct_now() - tf;
  *t_train += df;
  s->res->compute_s += s->comm->size > 1 ? fc : df;
  if (s->measuring) s->step_s += df;
}

// Everything computed is applied and accounted for, and the replicas agree (the mode's flush;
// for a checkpoint its checkpoint hook, which may do more: local:K averages the optimizer
// state too). *compute_s: the compute time of a step finished here, or 0.
static ct_status flush(ct_run_state *s, int for_checkpoint, double *compute_s) {
  ct_status (*f)(ct_run_state *, double *) =
      for_checkpoint && s->mode->checkpoint ? s->mode->checkpoint : s->mode->flush;
  *compute_s = 0;
  if (f) CT_TRY(f(s, compute_s));
  return ct_step_drain(s);
}

// Rank 0 writes the checkpoint; the others wait for it here, so that the write is not counted
// as the next collective's communication on their side (it is no step's time on rank 0 either).
// A failed write ends the job from rank 0 (ct_comm_abort), which ends this barrier too.
static ct_status save_checkpoint(ct_run_state *s, const ct_checkpoint_pos *p) {
  CT_TRY(ct_shard_gather_state(s));
  CT_TRY(ct_resume_save(s, p));
  if (s->comm->size > 1) CT_TRY(ct_comm_barrier(s->comm));
  return CT_OK;
}

// A log line and its record: exactly the samples and the training time since the previous
// line (evaluation, checkpoint writes and replica checks are not training time, as in the
// final figure).
static ct_status log_line(ct_run_state *s, loop *L) {
  const ct_train_config *cfg = s->cfg;
  ct_train_result *res = s->res;
  double rate = L->t_train > L->train_log ? L->samples_log / (L->t_train - L->train_log) : 0;
  if (!cfg->quiet) ct_progress_end(&L->prog);
  res->last_loss = s->loss_n > 0 ? s->loss_acc / s->loss_n : NAN;
  double lr_now = ct_schedule_lr(&s->sched, cfg->optim.lr, L->step - 1);
  if (!cfg->quiet)
    ct_say(s, "step %6ld  epoch %3d  loss %.4f  lr %.5f  %.1f samples/s\n", L->step,
           L->epoch + 1, res->last_loss, lr_now, rate);
  CT_TRY(ct_report_log(s, L->step, L->epoch, res->last_loss, lr_now, rate, L->t_train));
  s->loss_acc = s->loss_n = L->samples_log = 0;
  L->train_log = L->t_train;
  return CT_OK;
}

// The epoch's end: evaluation, its line and record, a checkpoint.
static ct_status epoch_end(ct_run_state *s, loop *L) {
  const ct_train_config *cfg = s->cfg;
  double value;
  ct_progress_end(&L->prog);
  L->prog.t_epoch = L->t_train, L->prog.si_epoch = 0, L->samples_epoch = 0;
  CT_UNPROFILED(s, ct_evaluate(s, &value));
  s->res->test_acc = value;
  s->res->epochs_done = L->epoch + 1;
  CT_TRY(ct_report_epoch(s, L->epoch, L->step, value, L->t_train));
  if (cfg->sample > 0) {   // --sample: rank 0 prints a language model's text
    char when[32];
    snprintf(when, sizeof when, "epoch %d", L->epoch + 1);
    CT_UNPROFILED(s, ct_sample_text(s, when, (uint64_t)L->epoch + 1));
  }
  if (cfg->checkpoint) {
    ct_checkpoint_pos p = {L->step, L->epoch + 1, 0, s->comm->size, cfg->batch};
    CT_UNPROFILED(s, save_checkpoint(s, &p));
  }
  return CT_OK;
}

// After step L->step (counted already): replica checks, log lines, checkpoints and the epoch's
// end, each after flushing what the mode left running (or draining the status reads).
static ct_status after_step(ct_run_state *s, loop *L) {
  const ct_train_config *cfg = s->cfg;
  long step = L->step;
  int end_of_epoch = L->si + 1 == L->steps_per_epoch;
  int check = s->comm->size > 1 && cfg->check_every > 0 &&
              (s->mode->check_due ? s->mode->check_due(s, step) : step % cfg->check_every == 0);
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
    else if (log || check) CT_TRY(ct_step_drain(s));
    count_finishing(s, tf, fc, &L->t_train);
  }
  if (check) {
    char when[64];
    snprintf(when, sizeof when, "at step %ld", step);
    CT_UNPROFILED(s, ct_replica_check(s, when));
  }
  if (log) CT_TRY(log_line(s, L));
  if (ckpt) {
    ct_checkpoint_pos p = {step, L->epoch, L->si + 1, s->comm->size, cfg->batch};
    CT_UNPROFILED(s, save_checkpoint(s, &p));
  }
  if (end_of_epoch) CT_TRY(epoch_end(s, L));
  return CT_OK;
}

// ---- a step ---------------------------------------------------------------------------------

#define HAS_STEP(cfg, e, st) \
  ((e) < (cfg)->epochs && ((cfg)->max_steps <= 0 || (st) < (cfg)->max_steps))

// The step's time and samples into the result and the loop's sums; the progress line.
static void count_step(ct_run_state *s, loop *L, ct_slot *b, double t0, double waited,
                       double compute_s) {
  ct_train_result *res = s->res;
  double t1 = ct_now();
  char name[32];
  snprintf(name, sizeof name, "step %ld", L->step);
  ct_trace_span(&s->trace, 0, name, t0, t1);
  res->compute_s += s->comm->size > 1 ? compute_s : t1 - t0;
  L->t_train += t1 - t0;
  L->samples_total += b->n;
  L->samples_log += b->n;
  res->local_samples += b->m;
  if (s->measuring) {
    s->step_s += t1 - t0;
    s->samples_measured += b->n;
    s->wait_loader_s += waited;
    s->prep_s += b->prep_s;
  }
  L->step++;
  res->steps++;
  L->samples_epoch += b->n;
  if (L->prog.on) {
    long done_si = L->si + 1;
    double loss = s->loss_n > 0 ? s->loss_acc / s->loss_n : res->last_loss;
    double dt = L->t_train - L->prog.t_epoch;
    ct_progress_draw(&L->prog, L->epoch, s->cfg->epochs, done_si, L->steps_per_epoch, loss,
                     dt > 0 ? L->samples_epoch / dt : 0, L->t_train,
                     done_si == L->steps_per_epoch);
  }
}

// The warm-up ends (kernels are built on first use: not throughput): the figures so far are
// kept to be taken out at the end.
static ct_status end_warmup(ct_run_state *s, loop *L) {
  ct_train_result *res = s->res;
  CT_TRY(ct_step_drain(s));
  CT_TRY(ct_prof_collect(&s->dev, 1));
  CT_TRY(ct_prof_reset(&s->dev));
  s->measuring = 1;
  s->warm_compute = res->compute_s, s->warm_wait = res->wait_s, s->warm_ars = s->ars;
  s->warm_exposed = s->exposed_s;
  s->warm_train = L->t_train, s->warm_local = res->local_samples;
  return CT_OK;
}

// One step: its batch from the loader (and the next one's posted), the mode's step, then what
// follows it.
static ct_status one_step(ct_run_state *s, loop *L, int *next_epoch, long *next_si) {
  const ct_train_config *cfg = s->cfg;
  const ct_hooks *h = ct_hooks_get();   // (tests: a rank that dies)
  if (h->step_begin) h->step_begin(h->ctx, s->comm->rank, L->step);
  double t0 = ct_now(), waited;
  s->trace.step = L->step;
  ct_prof_set_tag(&s->dev, L->step);
  // prepare: this step's batch is ready (the loader filled it during the last step); start
  // the next one's
  ct_slot *b = &s->slots[L->k];
  CT_TRY(ct_loader_wait(&s->load, &waited));
  ct_trace_span(&s->trace, 0, "waiting for the loader", t0, t0 + waited);
  *next_epoch = L->epoch, *next_si = L->si + 1;
  long next_step = L->step + 1;
  if (*next_si == L->steps_per_epoch) (*next_epoch)++, *next_si = 0;
  if (HAS_STEP(cfg, *next_epoch, next_step))
    ct_loader_post(&s->load, &s->slots[L->k ^ 1], *next_epoch, *next_si, next_step, s->weights);
  // compute, reduce, apply: in the order of the --sync mode
  double compute_s = 0;
  CT_TRY(s->mode->step(s, b, t0, &compute_s));
  CT_TRY(ct_prof_collect(&s->dev, 0));
  count_step(s, L, b, t0, waited, compute_s);
  if (s->res->steps == CT_WARMUP_STEPS) CT_TRY(end_warmup(s, L));
  return after_step(s, L);
}

// ---- the end --------------------------------------------------------------------------------

// The result's figures: throughput and the phase table after the warm-up steps (when there
// were enough), waiting taken out of the MPI and exposed columns, flops achieved.
static void figures(ct_run_state *s, loop *L) {
  ct_train_result *res = s->res;
  res->train_s = L->t_train;
  // throughput after the warm-up steps, as the PyTorch peer measures it (when there are enough)
  if (res->steps > 2 * CT_WARMUP_STEPS && s->step_s > 0)
    res->samples_per_s = s->samples_measured / s->step_s;
  else
    res->samples_per_s = L->t_train > 0 ? L->samples_total / L->t_train : 0;
  res->copy_s = s->ars.d2h_s + s->ars.h2d_s;
  res->mpi_s = s->ars.mpi_s;
  res->phase_s = L->t_train;
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
    res->phase_s = L->t_train - s->warm_train;
  }
  if (s->comm->size > 1 && !s->cfg->timing) {   // the ring's MPI time includes the wait
    res->mpi_s -= res->wait_s;
    if (res->mpi_s < 0) res->mpi_s = 0;
    // and so does the time after compute: exposed communication is what remains beyond
    // waiting for the slowest rank's compute (the wait column)
    res->exposed_s -= res->wait_s;
    if (res->exposed_s < 0) res->exposed_s = 0;
  }
  double fwd;
  ct_arch_flops(&s->arch, &fwd, &res->flops_per_sample);
  res->peak_gflops = s->peak_gflops;
  res->gflops = res->phase_s > 0
                    ? res->local_samples * res->flops_per_sample / res->phase_s / 1e9 : 0;
}

static ct_status save_params_file(ct_run_state *s, const char *path) {
  CT_TRY(ct_model_download_params(&s->model, s->host_params));
  if (!R0) return CT_OK;
  return ct_write_file_atomic(path, s->host_params, s->arch.param_count * sizeof(float));
}

// --save-safetensors: the final weights with PyTorch's names and layouts (export.h), atomically.
static ct_status save_safetensors_file(ct_run_state *s, const char *path) {
  CT_TRY(ct_model_download_params(&s->model, s->host_params));
  if (!R0) return CT_OK;
  void *buf;
  size_t bytes;
  ct_st_meta meta;
  ct_run_st_meta(s, &meta);
  CT_TRY(ct_safetensors_build(&s->arch, s->host_params, meta.kv, meta.n, &buf, &bytes));
  ct_status st = ct_write_file_atomic(path, buf, bytes);
  free(buf);
  if (st != CT_OK)
    st = ct_error_replace(st, __FILE__, __LINE__, "--save-safetensors: %s", ct_error_text());
  return st;
}

// The end: what the steps left running, the last evaluation (when the epochs did not end with
// one), the figures, the last replica check, the saved parameters and the trace.
static ct_status finish_run(ct_run_state *s, loop *L, int stopped) {
  const ct_train_config *cfg = s->cfg;
  ct_train_result *res = s->res;
  ct_progress_end(&L->prog);
  {
    double tf = ct_now(), fc = 0;
    CT_TRY(flush(s, 0, &fc));
    count_finishing(s, tf, fc, &L->t_train);
  }
  if (stopped || res->epochs_done == 0) {
    CT_UNPROFILED(s, ct_evaluate(s, &res->test_acc));
    if (cfg->sample > 0) {   // (a run that --max-steps ended mid-epoch: its last sample)
      char when[40];
      snprintf(when, sizeof when, "step %ld", L->step);
      CT_UNPROFILED(s, ct_sample_text(s, when, ((uint64_t)1 << 32) + (uint64_t)L->step));
    }
  }
  if (s->loss_n > 0) res->last_loss = s->loss_acc / s->loss_n;   // since the last log line
  if (res->steps == 0) res->last_loss = NAN;                        // (none: null in metrics)
  figures(s, L);
  if (cfg->check_every > 0 && s->comm->size > 1)
    CT_UNPROFILED(s, ct_replica_check(s, "at the end"));
  if (cfg->save_params) CT_TRY(save_params_file(s, cfg->save_params));
  if (cfg->save_safetensors) CT_TRY(save_safetensors_file(s, cfg->save_safetensors));
  return ct_report_trace(s);
}

ct_status ct_run_train(ct_run_state *s) {
  const ct_train_config *cfg = s->cfg;
  loop L;
  memset(&L, 0, sizeof L);
  CT_TRY(start(s, &L));
  if (HAS_STEP(cfg, L.epoch, L.step))
    ct_loader_post(&s->load, &s->slots[0], L.epoch, L.si, L.step, s->weights);
  while (HAS_STEP(cfg, L.epoch, L.step)) {
    int next_epoch;
    long next_si;
    CT_TRY(one_step(s, &L, &next_epoch, &next_si));
    L.epoch = next_epoch, L.si = next_si;
    L.k ^= 1;
  }
  return finish_run(s, &L, L.epoch < cfg->epochs);   // (--max-steps ended it mid-run)
}
