// step.c: the phases of a training step (compute, reduce, apply), the status of a step read back
// and accounted for, and the sharded update. See step.h; the loader (prepare) is loader.c, the
// order of the phases in each --sync mode sync.c, the bucketed reduction buckets.c.
#include "cltrain/step.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/balance.h"
#include "cltrain/buckets.h"
#include "cltrain/hooks.h"
#include "cltrain/layers.h"
#include "cltrain/prof.h"
#include "cltrain/program.h"
#include "cltrain/sync.h"
#include "cltrain/timer.h"

static ct_status enqueue_1d(ct_run_state *s, cl_kernel k, const char *name, size_t global,
                            size_t local) {
  CL_CHECK(clEnqueueNDRangeKernel(s->dev.queue, k, 1, NULL, &global, local ? &local : NULL, 0,
                                  NULL, ct_prof_event(&s->dev, name, 0, CT_PROF_KERNEL)));
  return CT_OK;
}

// ---- compute --------------------------------------------------------------------------------

// The loss sum of a chunk's `rows` samples into its status word dst[P] (the counter zeroed).
static ct_status loss_sum(ct_run_state *s, cl_mem dst, int rows) {
  cl_kernel k;
  CT_TRY(ct_kernel(&s->dev, "util", "loss_sum_f32", &k));
  size_t wg = 1;   // one work-group, a power of two up to 256
  while (wg * 2 <= s->dev.info.max_wg && wg < 256) wg *= 2;
  cl_uint n = (cl_uint)rows, loss_at = (cl_uint)CT_AT_LOSS(s), count_at = (cl_uint)CT_AT_COUNT(s);
  n = (cl_uint)ct_model_loss_count(&s->model, rows);   // a label's loss each
  CL_CHECK(clSetKernelArg(k, 0, sizeof s->model.losses, &s->model.losses));
  CL_CHECK(clSetKernelArg(k, 1, sizeof n, &n));
  CL_CHECK(clSetKernelArg(k, 2, sizeof dst, &dst));
  CL_CHECK(clSetKernelArg(k, 3, sizeof loss_at, &loss_at));
  CL_CHECK(clSetKernelArg(k, 4, sizeof count_at, &count_at));
  return enqueue_1d(s, k, "loss_sum_f32", wg, wg);
}

// grads[0 .. P] += acc[0 .. P] (gradients and loss sum of a later chunk).
static ct_status add_chunk(ct_run_state *s, cl_mem grads) {
  cl_kernel k;
  CT_TRY(ct_kernel(&s->dev, "util", "axpy_f32", &k));
  cl_uint len = (cl_uint)(CT_AT_LOSS(s) + 1);
  float one = 1.0f;
  CL_CHECK(clSetKernelArg(k, 0, sizeof grads, &grads));
  CL_CHECK(clSetKernelArg(k, 1, sizeof s->acc, &s->acc));
  CL_CHECK(clSetKernelArg(k, 2, sizeof len, &len));
  CL_CHECK(clSetKernelArg(k, 3, sizeof one, &one));
  return enqueue_1d(s, k, "axpy_f32", ((size_t)len + 255) / 256 * 256, 0);
}

// The model's part of a chunk: rows samples of slot b from `lo` on, uploaded, forward and
// backward into m->grads (loss scale `scale`).
static ct_status chunk_pass(ct_run_state *s, ct_slot *b, int lo, int rows, float scale) {
  ct_model *m = &s->model;
  ct_release_event(&b->written);   // the last chunk's write covers the earlier ones (in order)
  CT_TRY(ct_model_set_batch_async(m, b->x + (size_t)lo * s->in, b->y + (size_t)lo * s->labels,
                                  rows, &b->written));
  m->sample_offset = b->offset + lo;
  CT_TRY(ct_model_forward(m, rows, 1, s->cfg->seed * 0x9E3779B97F4A7C15ULL + (uint64_t)b->step));
  return ct_model_backward(m, rows, scale);
}

ct_status ct_phase_compute(ct_run_state *s, ct_slot *b, cl_mem grads, ct_computed *c) {
  ct_model *m = &s->model;
  int marked = s->mode->overlapped;   // its compute timed between device markers
  ct_release_event(&b->written);   // not possible (the loader waited), but never leak an event
  c->step = b->step, c->n = b->n, c->m = b->m, c->grads = grads;
  memcpy(c->shares, b->shares, (size_t)s->comm->size * sizeof *c->shares);
  ct_release_event(&c->begin);
  ct_release_event(&c->end);
  if (marked) CL_CHECK(clEnqueueMarkerWithWaitList(s->dev.queue, 0, NULL, &c->begin));
  // the mean over the global batch's labels (a language model: every position's)
  float scale = s->mode->loss_scale(b->n * s->labels, b->m * s->labels);
  // The share in chunks of at most s->micro rows (one chunk unless --accumulate): the first
  // chunk's gradients and loss sum go straight into `grads`, each later chunk's into s->acc and
  // are added to them (the step's gradient is the sum over its samples, in chunk order).
  for (int lo = 0; lo == 0 || lo < b->m; lo += s->micro) {
    int rows = b->m - lo < s->micro ? b->m - lo : s->micro;
    cl_mem dst = lo == 0 ? grads : s->acc;
    m->grads = dst;
    CT_TRY(chunk_pass(s, b, lo, rows, scale));
    CT_TRY(loss_sum(s, dst, rows));
    if (lo > 0) CT_TRY(add_chunk(s, grads));
    if (b->m == 0) break;
  }
  m->grads = grads;
  const ct_hooks *h = ct_hooks_get();   // (tests: NaNs, a slower device)
  if (h->computed) {
    ct_hook_step hs = {s->comm->rank, b->step, &s->dev, grads, s->P + s->tail, b->m};
    CT_TRY(h->computed(h->ctx, &hs));
  }
  if (marked) CL_CHECK(clEnqueueMarkerWithWaitList(s->dev.queue, 0, NULL, &c->end));
  if (s->nb > 0) CT_TRY(ct_bucket_events(s));
  if (!marked) CL_CHECK(clFlush(s->dev.queue));
  return CT_OK;
}

ct_status ct_step_device_seconds(ct_run_state *s, ct_computed *c, double *sec) {
  cl_ulong t0 = 0, t1 = 0;
  CL_CHECK(clWaitForEvents(1, &c->end));
  CL_CHECK(clGetEventProfilingInfo(c->begin, CL_PROFILING_COMMAND_END, sizeof t0, &t0, NULL));
  CL_CHECK(clGetEventProfilingInfo(c->end, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL));
  *sec = t1 > t0 ? (double)(t1 - t0) * 1e-9 : 0.0;
  return CT_OK;
}

ct_status ct_step_map_grads(ct_run_state *s, cl_mem grads) {
  cl_int err;
  ct_release_event(&s->pend_map_ev);
  s->pend_map = clEnqueueMapBuffer(s->dev.queue, grads, CL_FALSE, CL_MAP_READ | CL_MAP_WRITE, 0,
                                   (CT_AT_COUNT(s) + 1) * sizeof(float), 0, NULL,
                                   &s->pend_map_ev, &err);
  if (err != CL_SUCCESS) {
    s->pend_map = NULL;
    return CT_FAIL(CT_ERR_CL, "clEnqueueMapBuffer(gradients) failed: %s", ct_cl_errname(err));
  }
  return CT_OK;
}

// ---- reduce ---------------------------------------------------------------------------------

// Step c's compute time: overlapped, its markers' device time; otherwise the host's time from
// t_start until its gradients are ready (the map behind its kernels completing, or the queue
// finished).
static ct_status compute_time(ct_run_state *s, ct_computed *c, double t_start, double *compute_s) {
  if (s->mode->overlapped) return ct_step_device_seconds(s, c, compute_s);
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
  return CT_OK;
}

// --clip-norm with --shard-update: the norm of the reduced gradient, of which this rank holds
// its segment only. Each rank's sum of squares (in double, in index order) is gathered and the
// sums added in rank order: every rank computes the same factor from the same numbers.
static ct_status clip_sharded(ct_run_state *s, const float *p) {
  double mine = 0;
  for (size_t i = s->sh_lo; i < s->sh_hi; i++) mine += (double)p[i] * (double)p[i];
  double *all = malloc((size_t)s->comm->size * sizeof *all);
  if (!all) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  ct_status st = ct_comm_gather_double(s->comm, &mine, 1, all);
  double total = 0;
  for (int r = 0; r < s->comm->size; r++) total += all[r];
  free(all);
  double f = (double)s->cfg->clip_norm / (sqrt(total) + 1e-6);
  s->clip_factor = (float)(f < 1.0 ? f : 1.0);
  return st;
}

// --shard-update's reduction on the mapped gradients p: the reduce-scatter of the gradients
// (this rank's segment finished and tested), then the status words with the count of
// non-finite segments in the count's place (the layout one float longer, so that the sums keep
// the whole ring's order), gathered: every rank learns whether any segment was not finite.
// *bad: that count (with the loss's test).
static ct_status reduce_sharded(ct_run_state *s, float *p, ct_ring_opts o, unsigned *bad) {
  o.part = CT_RING_REDUCE_SCATTER, o.total = CT_REDUCED(s), o.base = 0;
  CT_TRY(ct_allreduce_mapped(s->ar, p, s->P, &o, &s->ars));
  if (s->cfg->clip_norm > 0) CT_TRY(clip_sharded(s, p));
  unsigned bad_loss = 0;
  ct_ring_opts os = {.total = CT_AT_COUNT(s) + 1, .base = s->P, .idle = 1,
                     .nonfinite = &bad_loss, .nonfinite_n = CT_AT_LOSS(s) + 1};
  p[CT_AT_COUNT(s)] = (float)*bad;
  memcpy(p + CT_AT_TIMES(s), s->tail_host, (size_t)s->comm->size * sizeof *s->tail_host);
  CT_TRY(ct_allreduce_mapped(s->ar, p + s->P, CT_AT_COUNT(s) + 1 - s->P, &os, &s->ars));
  *bad = bad_loss + (p[CT_AT_COUNT(s)] != 0.0f);
  return CT_OK;
}

// The zero-copy reduction in place, on the gradients the sync mode mapped (s->pend_map): stale
// mapped them before this step's kernels, sync after them. The guard's test rides on the ring
// (its sums are tested as they are made): the count goes where the count kernel would have put
// it, and that kernel's pass is saved.
static ct_status reduce_mapped(ct_run_state *s, ct_computed *c, ct_ring_opts o) {
  float *p = s->pend_map;
  s->pend_map = NULL;
  // (the map waits for the update of the step before and for the prediction: device work,
  // not communication, so it is not counted as copies)
  cl_int err = clWaitForEvents(1, &s->pend_map_ev);
  ct_status st = err == CL_SUCCESS ? CT_OK
                                   : CT_FAIL(CT_ERR_CL, "mapping the pending gradients failed: %s",
                                             ct_cl_errname(err));
  unsigned bad = 0;
  o.nonfinite = &bad, o.nonfinite_n = CT_AT_LOSS(s) + 1;
  if (st == CT_OK && s->shard) {
    st = reduce_sharded(s, p, o, &bad);
  } else if (st == CT_OK) {
    memcpy(p + CT_AT_TIMES(s), s->tail_host, (size_t)s->comm->size * sizeof *s->tail_host);
    st = ct_allreduce_mapped(s->ar, p, CT_REDUCED(s), &o, &s->ars);
  }
  if (st == CT_OK) {
    cl_uint n = bad;
    memcpy(p + CT_AT_COUNT(s), &n, sizeof n);
    c->counted = 1;
  }
  err = clEnqueueUnmapMemObject(s->dev.queue, c->grads, p, 0, NULL, NULL);
  CT_TRY(st);
  if (err != CL_SUCCESS)
    return CT_FAIL(CT_ERR_CL, "unmapping the pending gradients failed: %s", ct_cl_errname(err));
  return CT_OK;
}

ct_status ct_step_write_status(ct_run_state *s, cl_mem grads, cl_event after, cl_event *written) {
  CL_CHECK(clEnqueueWriteBuffer(s->side, grads, CL_FALSE, CT_AT_TIMES(s) * sizeof(float),
                                (size_t)s->comm->size * sizeof(float), s->tail_host,
                                after ? 1 : 0, after ? &after : NULL, written));
  CL_CHECK(clFlush(s->side));
  return CT_OK;
}

// The reduction of a device buffer (staged, or mapped by the all-reduce itself), once `after`
// has completed: this rank's status words are written first, on the trainer's own queue.
static ct_status reduce_device(ct_run_state *s, ct_computed *c, cl_event after, ct_ring_opts o) {
  cl_event written = NULL;
  CT_TRY(ct_step_write_status(s, c->grads, after, &written));
  ct_status st = ct_allreduce_device_after(s->ar, c->grads, 0, CT_REDUCED(s), written, &o,
                                           &s->ars);
  clReleaseEvent(written);
  return st;
}

// Overlapped (stale): the ring ran while the device computed the next step (s->cur); exposed is
// what it took after that compute had ended (its marker's end, on the host's clock).
static ct_status exposed_after_next(ct_run_state *s, double t2, double t_end) {
  if (!s->cur.end) return CT_OK;
  cl_int stat;
  CL_CHECK(ct_event_status(s->cur.end, &stat));
  if (stat == CL_COMPLETE) {
    cl_ulong e = 0;
    CL_CHECK(clGetEventProfilingInfo(s->cur.end, CL_PROFILING_COMMAND_END, sizeof e, &e, NULL));
    double t_dev = (double)e * 1e-9 + s->clock_off;
    if (t_dev < t2) t_dev = t2;
    if (t_end > t_dev) s->exposed_s += t_end - t_dev;
  }
  return CT_OK;
}

ct_status ct_phase_reduce(ct_run_state *s, ct_computed *c, double t_start, double *compute_s) {
  ct_comm *comm = s->comm;
  int over = s->mode->overlapped && s->overlap;   // stale on a CPU device: before the step
  c->counted = 0;
  if (s->nb > 0) return ct_bucket_reduce(s, c, t_start, compute_s);
  cl_event after = NULL;
  if (s->mode->overlapped) {
    after = c->end;
    if (s->pred_done && c == &s->pend) after = s->pred_done;   // after the prediction read it
  }
  CT_TRY(compute_time(s, c, t_start, compute_s));
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
  // not overlapped: the device has finished, nothing of this rank computes while the ring
  // waits; overlapped: the next step computes beside it
  ct_ring_opts o = s->wire;
  o.idle = !over;
  if (s->pend_map) CT_TRY(reduce_mapped(s, c, o));
  else CT_TRY(reduce_device(s, c, after, o));
  double t_end = ct_now();
  ct_trace_span(&s->trace, 0, over ? "all-reduce (previous step)" : "all-reduce", t2, t_end);
  if (s->measuring) s->allreduce_s += t_end - t2;
  if (s->measuring && !over) s->exposed_s += t_end - t2;   // after the device finished: all
  else if (s->measuring) CT_TRY(exposed_after_next(s, t2, t_end));
  return CT_OK;
}

// ---- apply ----------------------------------------------------------------------------------

// --shard-update: the parameters mapped behind the update on its queue (the map completing
// ends the update, which is compute, not communication), every segment all-gathered from its
// owner, and unmapped there ahead of the next step's kernels.
static ct_status gather_params(ct_run_state *s) {
  ct_model *mod = &s->model;
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
  ct_ring_opts o = {.total = CT_REDUCED(s), .part = CT_RING_ALL_GATHER, .idle = 1};
  ct_status st = err == CL_SUCCESS ? ct_allreduce_mapped(s->ar, p, s->P, &o, &s->ars)
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
  return CT_OK;
}

// The optimizer on the reduced gradients g (skipped on the device when the count at
// CT_AT_COUNT is not zero): --shard-update this rank's segment, else every parameter.
static ct_status optimizer_update(ct_run_state *s, cl_mem g, float lr) {
  if (s->shard)
    return ct_optim_step_range(&s->opt, s->model.params, g, lr, g, CT_AT_COUNT(s), s->sh_lo,
                               s->sh_hi);
  return ct_optim_step_unless(&s->opt, s->model.params, g, lr, g, CT_AT_COUNT(s));
}

ct_status ct_phase_apply(ct_run_state *s, ct_computed *c) {
  cl_mem g = c->grads;
  if (!c->counted) CT_TRY(ct_count_nonfinite(&s->dev, g, CT_AT_LOSS(s) + 1, g, CT_AT_COUNT(s)));
  float lr = ct_schedule_lr(&s->sched, s->cfg->optim.lr, c->step);
  if (s->cfg->clip_norm > 0 && s->shard)   // the factor the reduction computed
    CT_TRY(ct_optim_clip_set(&s->opt, s->clip_factor));
  else if (s->cfg->clip_norm > 0)          // on the device, from the whole reduced gradient
    CT_TRY(ct_optim_clip(&s->opt, g, 0, s->P, s->cfg->clip_norm));
  CT_TRY(optimizer_update(s, g, lr));
  if (s->shard) CT_TRY(gather_params(s));   // every segment from its owner
  ct_step_status *st = &s->status[c->step & 1];
  st->step = c->step, st->n = c->n, st->m = c->m;
  memcpy(st->shares, c->shares, (size_t)s->comm->size * sizeof *st->shares);
  CL_CHECK(clEnqueueReadBuffer(s->dev.queue, g, CL_FALSE, CT_AT_LOSS(s) * sizeof(float),
                               s->tail * sizeof(float), st->host, 0, NULL, &st->ev));
  st->in_flight = 1;
  const ct_hooks *h = ct_hooks_get();   // (tests: a replica that diverges)
  if (h->applied) {
    ct_hook_step hs = {s->comm->rank, c->step, &s->dev, s->model.params, s->P, c->m};
    CT_TRY(h->applied(h->ctx, &hs));
  }
  return CT_OK;
}

// ---- the status of a step -------------------------------------------------------------------

// A step with a non-finite loss or gradient: skipped (on the device already), counted, and
// after --max-bad-steps in a row the end (in a mode whose verdicts are each rank's own, at the
// mode's next collective point: s->stop_bad).
static ct_status bad_step(ct_run_state *s, ct_step_status *st) {
  const ct_train_config *cfg = s->cfg;
  int own = !s->mode->reduces_gradients;
  s->res->bad_steps++;
  s->bad_run++;
  if (!own || s->comm->rank == 0)
    ct_say(s, "cltrain: step %ld: non-finite loss or gradient, step skipped (%d in a row, "
           "limit %d)\n", st->step, s->bad_run, cfg->max_bad_steps);
  if (s->bad_run < cfg->max_bad_steps) return CT_OK;
  if (own) {   // the ranks stop together
    s->stop_bad = 1;
    return CT_OK;
  }
  return CT_FAIL(CT_ERR_NONFINITE,
                 "stopping: %d consecutive steps with non-finite loss or gradients "
                 "(--max-bad-steps %d); last good checkpoint: %s",
                 s->bad_run, cfg->max_bad_steps, cfg->checkpoint ? cfg->checkpoint : "none");
}

ct_status ct_step_finish(ct_run_state *s, ct_step_status *st) {
  if (!st->in_flight) return CT_OK;
  CL_CHECK(clWaitForEvents(1, &st->ev));
  clReleaseEvent(st->ev);
  st->ev = NULL;
  st->in_flight = 0;
  int world = s->comm->size, reduced = world > 1 && s->mode->reduces_gradients;
  float loss = st->host[0];
  cl_uint count;
  memcpy(&count, &st->host[s->tail - 1], sizeof count);
  if (reduced) {                // every rank's compute time of the step: the same numbers
    if (!s->cfg->timing) {      // waiting for the slowest rank: max - own compute time
      float most = 0, mine = st->host[1 + s->comm->rank];
      for (int r = 0; r < world; r++)
        if (st->host[1 + r] > most) most = st->host[1 + r];
      s->res->wait_s += (double)(most - mine) * 1e-3;
    }
    // an epoch's short last batch is not measured: its share sizes build kernels the first time
    if (st->n == s->cfg->batch) ct_balance_update(s, st->host + 1, st->shares, st->step, 0);
  }
  if (count) return bad_step(s, st);
  s->bad_run = 0;
  ct_optim_count(&s->opt);
  s->loss_acc += loss;
  // reduced: the loss word is the global sum; a mean per label
  s->loss_n += (double)(reduced ? st->n : st->m) * s->labels;
  return CT_OK;
}

ct_status ct_step_drain(ct_run_state *s) {
  // the older one first
  ct_step_status *a = &s->status[0], *b = &s->status[1];
  if (a->in_flight && b->in_flight && b->step < a->step) {
    ct_step_status *t = a;
    a = b, b = t;
  }
  CT_TRY(ct_step_finish(s, a));
  CT_TRY(ct_step_finish(s, b));
  return ct_prof_collect(&s->dev, 1);
}

// ---- the sharded update -----------------------------------------------------------------------

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
ct_status ct_shard_setup(ct_run_state *s) {
  const ct_train_config *cfg = s->cfg;
  int N = s->comm->size, r = s->comm->rank;
  int bad = !ct_allreduce_zero_copy(s->ar);
  CT_TRY(ct_comm_allreduce_int_max(s->comm, &bad, 1));   // every rank, or none
  // (a 16-bit wire is for slow links: the parameters' all-gather in fp32 would send 1.5 times
  // the bytes of the gradients' in fp16)
  s->shard = cfg->shard_update && s->mode->shard_update && !(cfg->bucket_mb > 0) &&
             cfg->wire == CT_WIRE_FP32 && !bad;
  if (!s->shard) return CT_OK;
  size_t lo, hi;
  ct_ring_segment(CT_REDUCED(s), N, (r + 1) % N, &lo, &hi);
  s->sh_lo = lo < s->P ? lo : s->P, s->sh_hi = hi < s->P ? hi : s->P;
  if (r == 0) {
    printf("cltrain: optimizer update sharded over %d ranks (reduce-scatter, each rank its "
           "segment of about %zu parameters, all-gather)\n", N, CT_REDUCED(s) / (size_t)N);
    fflush(stdout);
  }
  return CT_OK;
}

ct_status ct_shard_gather_state(ct_run_state *s) {
  if (!s->shard) return CT_OK;
  ct_ring_opts o = {.total = CT_REDUCED(s), .part = CT_RING_ALL_GATHER, .idle = 1};
  for (size_t off = 0; off < s->opt.state_count; off += s->P)
    CT_TRY(ct_allreduce_device_after(s->ar, s->opt.state, off, s->P, NULL, &o, NULL));
  return CT_OK;
}
