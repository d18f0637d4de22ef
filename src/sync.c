// sync.c: the --sync modes, one table entry each (sync.h): the order of a step's phases, what a
// flush and a checkpoint finish, the loss scale, and local:K's parameter average.
#include "cltrain/sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/args.h"
#include "cltrain/balance.h"
#include "cltrain/program.h"
#include "cltrain/step.h"
#include "cltrain/timer.h"

// The loss scale: the GLOBAL batch (the reduced gradients are the batch's mean), or this rank's
// own share (local SGD: each rank's step is a step of its own).
static float scale_global(int n, int m) { return (void)m, 1.0f / (float)n; }
static float scale_own(int n, int m) { return (void)n, m > 0 ? 1.0f / (float)m : 1.0f; }

// ---- sync -----------------------------------------------------------------------------------

// Compute, reduce and apply this step.
static ct_status sync_step(ct_run_state *s, ct_slot *b, double t0, double *compute_s) {
  int world = s->comm->size;
  ct_computed *c = &s->cur;
  *compute_s = 0;
  CT_TRY(ct_phase_compute(s, b, s->gbuf[0], c));
  if (world > 1 && s->nb == 0 && ct_allreduce_zero_copy(s->ar)) {
    // Map the gradients right behind this step's kernels, on their queue: the map's
    // completion is the end of compute (no marker, no map on another queue after it), and
    // the unmap goes on that queue too, ahead of the update, so nobody waits for it.
    CT_TRY(ct_step_map_grads(s, c->grads));
    CL_CHECK(clFlush(s->dev.queue));
  }
  if (world > 1) CT_TRY(ct_phase_reduce(s, c, t0, compute_s));
  CT_TRY(ct_step_finish(s, &s->status[(c->step + 1) & 1]));   // the previous step's status
  return ct_phase_apply(s, c);
}

// ---- stale ----------------------------------------------------------------------------------

// A second gradient buffer (one reduced while one is computed), and with SGD the predicted
// parameters (CLTRAIN_STALE_NO_PREDICT=1: none, to compare).
//
// Overlap (s->overlap) where the device is not the host's CPU: a CPU device computes on the
// cores the ring's host thread needs, so the two took turns on them and each step got slower
// (mlp, PoCL + Intel's runtime, one core per rank: stale 21,600-24,100 samples/s against
// sync's 27,400-29,800). There the pending step is reduced first, with the device idle, and
// then the step computes: the same operations on the same values (the update still applies
// after the step, the prediction still reads this rank's own gradients), so the same bits.
// Where no rank overlaps (a job of CPU devices), the late update buys nothing and costs the
// prediction's pass (~5 % of an mlp step) and the staleness itself: the pending update then
// applies before the step computes (s->apply_first), which is --sync sync's math, no
// prediction. CLTRAIN_STALE_OVERLAP=1 overlaps on every device, 0 on none and keeps the late
// update (both: stale's math, the same bits; to compare). Collective.
static ct_status stale_setup(ct_run_state *s) {
  cl_int err;
  CL_CHECK((s->gbuf[1] = ct_device_buffer(&s->dev, (s->P + s->tail) * sizeof(float), &err), err));
  const char *ov = getenv("CLTRAIN_STALE_OVERLAP");
  int forced = ov && *ov;
  s->overlap = forced ? strcmp(ov, "0") != 0 : !(s->dev.info.type & CL_DEVICE_TYPE_CPU);
  int world = s->comm->size, n = !s->overlap;
  int *first = calloc((size_t)world, sizeof *first);   // the ranks that reduce first
  if (!first) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  first[s->comm->rank] = !s->overlap;
  ct_status st = world > 1 ? ct_comm_allreduce_int_max(s->comm, first, world) : CT_OK;
  if (st == CT_OK && world > 1) {
    n = 0;
    for (int r = 0; r < world; r++) n += first[r];
  }
  s->apply_first = !forced && n == world;
  if (st == CT_OK && s->comm->rank == 0 && n > 0 && (s->apply_first || world > 1)) {
    if (s->apply_first)
      printf("cltrain: --sync stale: %s (it computes on the cores the ring needs: nothing to "
             "overlap), so each update applies before the next step computes: --sync sync's "
             "math, no prediction\n",
             world > 1 ? "every rank's device is a CPU" : "one rank, on a CPU device");
    else {
      printf("cltrain: --sync stale: %s reduce%s the pending step before computing the next "
             "(a CPU device computes on the cores the ring needs; the same bits)",
             n == world ? "every rank" : "ranks", n == world ? "s" : "");
      if (n < world)
        for (int r = 0; r < world; r++)
          if (first[r]) printf(" %d", r);
      printf("\n");
    }
    fflush(stdout);
  }
  free(first);
  CT_TRY(st);
  const char *off = getenv("CLTRAIN_STALE_NO_PREDICT");
  if (s->cfg->optim.kind == CT_OPT_SGD && !(off && *off) && !s->apply_first)
    CL_CHECK((s->pred = ct_device_buffer(&s->dev, s->P * sizeof(float), &err), err));
  return CT_OK;
}

// Step t+1's gradients taken where the pending update will take the parameters: that update
// with this rank's own gradients scaled by the number of ranks (one rank: exactly the next
// parameters), into s->pred; the ring must not change the pending gradients before the
// prediction has read them (s->pred_done).
static ct_status stale_predict(ct_run_state *s) {
  float lr = ct_schedule_lr(&s->sched, s->cfg->optim.lr, s->pend.step);
  CT_TRY(ct_optim_sgd_predict(&s->opt, s->pred, s->model.params, s->pend.grads,
                              (float)s->comm->size, lr));
  ct_release_event(&s->pred_done);
  CL_CHECK(clEnqueueMarkerWithWaitList(s->dev.queue, 0, NULL, &s->pred_done));
  return CT_OK;
}

// Reduce and apply the previous step while this one computes.
static ct_status stale_step(ct_run_state *s, ct_slot *b, double t0, double *compute_s) {
  int world = s->comm->size;
  ct_computed *c = &s->cur;
  *compute_s = 0;
  // this step into the buffer the pending one does not use
  cl_mem g = s->pend.valid && s->pend.grads == s->gbuf[0] ? s->gbuf[1] : s->gbuf[0];
  cl_mem own = s->model.params;
  if (s->pend.valid && s->pred) {   // its gradients where the pending update will take us
    CT_TRY(stale_predict(s));
    s->model.params = s->pred;
  }
  if (s->pend.valid && world > 1 && ct_allreduce_zero_copy(s->ar)) {
    // Map the pending gradients now, ahead of this step's kernels: on a device whose worker
    // threads serve every queue (PoCL, Intel's CPU runtime), a map enqueued later would
    // wait for them, and the reduction would not overlap this step's compute at all. The
    // ring runs on the mapped range while the device computes; the unmap follows this
    // step's kernels, before the update that reads the result.
    CT_TRY(ct_step_map_grads(s, s->pend.grads));
  }
  // the previous step, reduced while this one computes (s->overlap), or before it
  double c_prev = 0;
  ct_status cst = CT_OK;
  if (s->pend.valid && !s->overlap && world > 1) {
    cst = ct_phase_reduce(s, &s->pend, 0, &c_prev);
    if (cst == CT_OK) cst = ct_step_finish(s, &s->status[(s->pend.step + 1) & 1]);
  }
  if (cst == CT_OK && s->pend.valid && s->apply_first) {   // and applied, before it
    if (world == 1) cst = ct_step_device_seconds(s, &s->pend, &c_prev);
    if (cst == CT_OK && world == 1) cst = ct_step_finish(s, &s->status[(s->pend.step + 1) & 1]);
    if (cst == CT_OK) cst = ct_phase_apply(s, &s->pend);
    *compute_s = c_prev;
  }
  if (cst == CT_OK) cst = ct_phase_compute(s, b, g, c);
  s->model.params = own;
  CT_TRY(cst);
  if (s->pend.valid && !s->apply_first) {   // then applied, after this step
    if (s->overlap && world > 1) CT_TRY(ct_phase_reduce(s, &s->pend, 0, &c_prev));
    else if (world == 1) CT_TRY(ct_step_device_seconds(s, &s->pend, &c_prev));
    *compute_s = c_prev;
    if (s->overlap || world == 1) CT_TRY(ct_step_finish(s, &s->status[(s->pend.step + 1) & 1]));
    CT_TRY(ct_phase_apply(s, &s->pend));
  }
  ct_computed t = s->pend;   // swap: this step becomes the pending one
  s->pend = *c;
  s->pend.valid = 1;
  *c = t;
  c->valid = 0;
  return CT_OK;
}

// The pending step, reduced and applied. Nothing computes beside this reduction: it starts
// once the step is computed, so that waiting for the device is not counted as communication.
static ct_status stale_flush(ct_run_state *s, double *compute_s) {
  *compute_s = 0;
  if (!s->pend.valid) return CT_OK;
  if (s->pend.end) CL_CHECK(clWaitForEvents(1, &s->pend.end));
  if (s->comm->size > 1) CT_TRY(ct_phase_reduce(s, &s->pend, 0, compute_s));
  CT_TRY(ct_step_finish(s, &s->status[(s->pend.step + 1) & 1]));
  CT_TRY(ct_phase_apply(s, &s->pend));
  s->pend.valid = 0;
  return CT_OK;
}

// ---- local:K --------------------------------------------------------------------------------

// Compute and apply this step alone; every K steps the average.
static ct_status local_step(ct_run_state *s, ct_slot *b, double t0, double *compute_s) {
  int world = s->comm->size;
  ct_local_state *l = &s->loc;
  ct_computed *c = &s->cur;
  *compute_s = 0;
  CT_TRY(ct_phase_compute(s, b, s->gbuf[0], c));
  CT_TRY(ct_step_finish(s, &s->status[(c->step + 1) & 1]));
  CT_TRY(ct_phase_apply(s, c));
  l->since_avg++;
  l->samples_since += c->m;
  if (c->n != s->cfg->batch) l->partial_since = 1;   // not measured for the balance
  if (world > 1) {   // this rank's compute time, for the balance at the next average
    CL_CHECK(clFinish(s->dev.queue));
    *compute_s = ct_now() - t0;
    l->compute_since += *compute_s;
  }
  if (l->since_avg >= s->mode_k) CT_TRY(ct_local_average(s, 0));
  return CT_OK;
}

static ct_status local_flush(ct_run_state *s, double *compute_s) {
  *compute_s = 0;
  return s->loc.since_avg > 0 ? ct_local_average(s, 0) : CT_OK;
}

static ct_status local_checkpoint(ct_run_state *s, double *compute_s) {
  *compute_s = 0;
  return ct_local_average(s, 1);
}

// The replicas differ between averages, on purpose: compared after every average.
static int local_check_due(ct_run_state *s, long step) {
  (void)step;
  if (s->loc.since_avg != 0 || s->res->averages <= s->loc.checked_avg) return 0;
  s->loc.checked_avg = s->res->averages;
  return 1;
}

// x *= f on n floats of buf, on the device's queue.
static ct_status scale(ct_run_state *s, cl_mem buf, size_t n, float f) {
  cl_kernel k;
  CT_TRY(ct_kernel(&s->dev, "util", "scale_f32", &k));
  cl_uint nn = (cl_uint)n;
  CL_CHECK(clSetKernelArg(k, 0, sizeof buf, &buf));
  CL_CHECK(clSetKernelArg(k, 1, sizeof nn, &nn));
  CL_CHECK(clSetKernelArg(k, 2, sizeof f, &f));
  size_t global = (n + 255) / 256 * 256;
  CL_CHECK(clEnqueueNDRangeKernel(s->dev.queue, k, 1, NULL, &global, NULL, 0, NULL, NULL));
  return CT_OK;
}

// The weighted sum: every rank's parameters (and state) scaled by its fraction `mine` of the
// samples, then summed.
static ct_status average_buffers(ct_run_state *s, float mine, int with_state) {
  CT_TRY(scale(s, s->model.params, s->P, mine));
  // (counts the ranks agreed at set-up, with the arch: no per-call count check)
  CT_TRY(ct_allreduce_device_after(s->ar, s->model.params, 0, s->P, NULL, NULL, &s->ars));
  if (!with_state) return CT_OK;
  CT_TRY(scale(s, s->opt.state, s->opt.state_count, mine));
  for (size_t off = 0; off < s->opt.state_count; off += s->P) {   // in pieces staging holds
    size_t len = s->opt.state_count - off < s->P ? s->opt.state_count - off : s->P;
    CT_TRY(ct_allreduce_device_after(s->ar, s->opt.state, off, len, NULL, NULL, &s->ars));
  }
  return CT_OK;
}

// local:K: the parameters averaged over the ranks, weighted by the samples each processed since
// the last average; a stop request (non-finite steps) travels along, and so do the ranks'
// compute times for the throughput balance. Replicas are identical afterwards (the optimizer
// state stays each rank's own). The loss printed in local:K is rank 0's, over its own share.
// with_state = 1 (checkpoints): the optimizer state is averaged the same way, so that the one
// state a checkpoint holds is every rank's, and a resumed run continues exactly.
static ct_status local_average_(ct_run_state *s, int with_state, int *stop) {
  int world = s->comm->size;
  ct_local_state *l = &s->loc;
  CT_TRY(ct_step_drain(s));
  *stop = s->stop_bad;
  if (world == 1) {
    l->since_avg = 0;
    l->samples_since = 0;
    return CT_OK;
  }
  double t0 = ct_now();
  // [samples, (unused), (unused), stop, compute s of rank r (world), samples of rank r (world)]
  double *v = l->words;
  size_t nv = 4 + 2 * (size_t)world;
  memset(v, 0, nv * sizeof *v);
  v[0] = l->samples_since;
  v[3] = s->stop_bad;
  v[4 + s->comm->rank] = l->compute_since;
  v[4 + world + s->comm->rank] = l->samples_since;
  CT_TRY(ct_comm_allreduce_double_sum(s->comm, v, (int)nv));
  // these few words' collective ends when the slowest rank arrives: its time is waiting (MPI
  // time that the end takes out of the MPI and exposed columns, as for sync's)
  double t_words = ct_now() - t0;
  s->res->wait_s += t_words;
  s->ars.mpi_s += t_words;
  float mine = v[0] > 0 ? (float)(l->samples_since / v[0]) : (float)(1.0 / world);
  CT_TRY(average_buffers(s, mine, with_state));
  if (s->measuring) s->allreduce_s += ct_now() - t0, s->exposed_s += ct_now() - t0;
  s->res->averages++;
  // throughput balance from the compute time per sample of each rank since the last average
  // (not across an epoch's short last batch: new share sizes build kernels the first time)
  if (s->balancing && l->count_measured++ > 0 && !l->partial_since) {
    for (int r = 0; r < world; r++) {
      l->ms[r] = (float)(v[4 + r] * 1e3);
      l->shares[r] = (int)v[4 + world + r];
    }
    ct_balance_update(s, l->ms, l->shares, CT_WARMUP_STEPS + l->count_measured, 1);
  }
  l->since_avg = 0;
  l->samples_since = 0;
  l->compute_since = 0;
  l->partial_since = 0;
  *stop = v[3] > 0;
  return CT_OK;
}

ct_status ct_local_average(ct_run_state *s, int with_state) {
  double t0 = ct_now();
  int stop = 0;
  ct_status st = local_average_(s, with_state, &stop);
  ct_trace_span(&s->trace, 0, "parameter average", t0, ct_now());
  CT_TRY(st);
  if (stop)
    return CT_FAIL(CT_ERR_NONFINITE,
                   "stopping: %d or more consecutive steps with non-finite loss or gradients on "
                   "a rank (--max-bad-steps %d); last good checkpoint: %s",
                   s->cfg->max_bad_steps, s->cfg->max_bad_steps,
                   s->cfg->checkpoint ? s->cfg->checkpoint : "none");
  return CT_OK;
}

// ---- the table ------------------------------------------------------------------------------

const ct_sync_mode ct_sync_modes[] = {
    {.name = "sync", .help = "reduce, then update", .reduces_gradients = 1, .buckets = 1,
     .shard_update = 1, .step = sync_step, .loss_scale = scale_global},
    {.name = "stale",
     .help = "reduce step t while step t+1 computes; updates one step late; where every "
             "rank's device is a CPU, sync's schedule",
     .reduces_gradients = 1, .overlapped = 1,
     .no_buckets = "stale already reduces while the next step computes",
     .setup = stale_setup, .step = stale_step, .flush = stale_flush, .loss_scale = scale_global},
    {.name = "local", .help = "local SGD: parameters averaged every K steps", .takes_k = 1,
     .no_buckets = "local:K averages parameters",
     .step = local_step, .flush = local_flush, .checkpoint = local_checkpoint,
     .loss_scale = scale_own, .check_due = local_check_due},
};
const int ct_sync_nmodes = sizeof ct_sync_modes / sizeof ct_sync_modes[0];

const char *ct_sync_name(const ct_sync_mode *mode, int k, char *buf, size_t size) {
  if (mode->takes_k) snprintf(buf, size, "%s:%d", mode->name, k);
  else snprintf(buf, size, "%s", mode->name);
  return buf;
}

// "sync, stale or local:K" (sep between all but the last two, " or " before the last).
static void names(char *buf, size_t size, const char *sep) {
  size_t len = 0;
  buf[0] = 0;
  for (int i = 0; i < ct_sync_nmodes && len < size; i++) {
    const char *join = i == 0 ? "" : i == ct_sync_nmodes - 1 ? " or " : sep;
    int w = snprintf(buf + len, size - len, "%s%s%s", join, ct_sync_modes[i].name,
                     ct_sync_modes[i].takes_k ? ":K" : "");
    if (w > 0) len += (size_t)w;
  }
}

void ct_sync_usage(char *buf, size_t size) {
  size_t len = 0;
  buf[0] = 0;
  for (int i = 0; i < ct_sync_nmodes && len < size; i++) {
    const ct_sync_mode *m = &ct_sync_modes[i];
    int w = snprintf(buf + len, size - len, "%s%s%s%s%s%s", i ? " | " : "", m->name,
                     m->takes_k ? ":K" : "", m->help ? " (" : "", m->help ? m->help : "",
                     m->help ? ")" : "");
    if (w > 0) len += (size_t)w;
  }
}

ct_status ct_sync_parse(const char *text, const ct_sync_mode **mode, int *k) {
  *mode = &ct_sync_modes[0], *k = 1;
  if (!text) return CT_OK;
  for (int i = 0; i < ct_sync_nmodes; i++) {
    const ct_sync_mode *m = &ct_sync_modes[i];
    size_t n = strlen(m->name);
    if (!m->takes_k && !strcmp(text, m->name)) {
      *mode = m;
      return CT_OK;
    }
    if (m->takes_k && !strncmp(text, m->name, n) && text[n] == ':') {
      long v;
      if (ct_arg_long("--sync (K)", text + n + 1, 1, 1000000, &v) != CT_OK) {
        ct_error_clear();
        return CT_FAIL(CT_ERR_USAGE, "--sync: expected %s:K with an integer K in 1..1000000, "
                       "got '%s'", m->name, text);
      }
      *mode = m, *k = (int)v;
      return CT_OK;
    }
  }
  char all[256];
  names(all, sizeof all, ", ");
  return CT_FAIL(CT_ERR_USAGE, "--sync: expected %s, got '%s'", all, text);
}

ct_status ct_sync_check_buckets(const ct_sync_mode *mode, double bucket_mb) {
  if (!(bucket_mb > 0) || mode->buckets) return CT_OK;
  char with[128] = "", why[512] = "";
  size_t lw = 0, ly = 0;
  for (int i = 0; i < ct_sync_nmodes; i++) {
    const ct_sync_mode *m = &ct_sync_modes[i];
    int w = m->buckets ? snprintf(with + lw, sizeof with - lw, "%s%s", lw ? ", " : "", m->name)
                       : snprintf(why + ly, sizeof why - ly, "%s%s", ly ? "; " : "",
                                  m->no_buckets);
    if (w > 0 && m->buckets) lw += (size_t)w;
    else if (w > 0) ly += (size_t)w;
    if (lw >= sizeof with || ly >= sizeof why) break;
  }
  return CT_FAIL(CT_ERR_USAGE, "--bucket-mb: only with --sync %s (%s)", with, why);
}
