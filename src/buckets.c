// buckets.c: the reduction in windows while backward runs (--bucket-mb). See buckets.h.
#include "cltrain/buckets.h"

#include <stdio.h>
#include <string.h>

#include "cltrain/step.h"
#include "cltrain/timer.h"

// --bucket-mb X: the gradients cut into windows of whole groups of tensors (the tensors whose
// gradients complete together: a layer's weight and bias), from the end of the parameter
// buffer back, each closed once it holds X MiB (the first tensors' remainder is the last
// window). The tensor table lays the parameters out so that the later a tensor's gradient is
// complete in backward, the nearer the buffer's start it lies: every window is contiguous and
// ready once its earliest-placed group is.
ct_status ct_bucket_setup(ct_run_state *s) {
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
  // markers per group; with --accumulate the gradients are complete only after the last chunk's
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

ct_status ct_bucket_events(ct_run_state *s) {
  ct_release_event(&s->compute_end);
  CL_CHECK(clEnqueueMarkerWithWaitList(s->dev.queue, 0, NULL, &s->compute_end));
  for (int k = 0; k < s->nb; k++)
    s->bk_ev[k] = s->model.mark_grads && s->bk_lo[k] > 0
                      ? ct_model_tensor_ready(&s->model, s->bk_tensor[k])
                      : s->compute_end;
  return CT_OK;
}

static void bucket_span(ct_run_state *s, int k, double t0) {
  char name[40];
  snprintf(name, sizeof name, "bucket %d (%.2f MB)", k,
           (double)(s->bk_hi[k] - s->bk_lo[k]) * sizeof(float) / 1e6);
  ct_trace_span(&s->trace, 1, name, t0, ct_now());
}

// The windows in flight: q[first .. next) started, fin[] their results' events, t_bk[] when
// each started; *t_done the host time the compute's end was seen (0: not yet).
typedef struct {
  int next, first;
  ct_allreduce_req *q[CT_MAX_BUCKETS];
  cl_event fin[CT_MAX_BUCKETS];
  double t_bk[CT_MAX_BUCKETS];
  double t_done;
} windows;

static ct_status finish_oldest(ct_run_state *s, windows *w) {
  CT_TRY(ct_allreduce_wait(w->q[w->first], &s->ars, &w->fin[w->first]));
  bucket_span(s, w->first, w->t_bk[w->first]);
  w->first++;
  return CT_OK;
}

// Each window's reduction starts as soon as backward has written it and moves on
// (ct_allreduce_test) while the device computes the layers before it; up to
// CT_ALLREDUCE_INFLIGHT windows in flight.
static ct_status reduce_windows(ct_run_state *s, ct_computed *c, windows *w) {
  int nb = s->nb;
  cl_int stat;
  while (w->first < nb) {
    if (!w->t_done) {
      CL_CHECK(ct_event_status(s->compute_end, &stat));
      if (stat == CL_COMPLETE) w->t_done = ct_now();
    }
    int next = w->next;
    if (next < nb && next - w->first < CT_ALLREDUCE_INFLIGHT) {
      if (w->first == next) {   // nothing in flight: sleep until the next window is written
        CL_CHECK(clWaitForEvents(1, &s->bk_ev[next]));
        if (!w->t_done && s->bk_ev[next] == s->compute_end) w->t_done = ct_now();
      }
      CL_CHECK(ct_event_status(s->bk_ev[next], &stat));
      if (stat == CL_COMPLETE) {
        ct_ring_opts o = s->wire;
        o.total = CT_REDUCED(s), o.base = s->bk_lo[next];
        w->t_bk[next] = ct_now();
        CT_TRY(ct_allreduce_start(s->ar, c->grads, s->bk_lo[next],
                                  s->bk_hi[next] - s->bk_lo[next], s->bk_ev[next], &o,
                                  &w->q[next]));
        w->next++;
        continue;
      }
    }
    if (next == nb) {   // every window started: finish the oldest (waiting in the ring)
      CT_TRY(finish_oldest(s, w));
      continue;
    }
    // a window in flight while backward goes on: move every one on; if the next window is
    // not written yet, finish the oldest (its ring waits spinning briefly, then sleeping, so
    // the device's threads keep the cores; polling in naps here lost whole scheduler slices
    // on the 2-core machine, with both ranks' device threads busy)
    int done = 0;
    for (int j = next - 1; j >= w->first; j--)
      CT_TRY(ct_allreduce_test(w->q[j], j == w->first ? &done : NULL));
    CL_CHECK(ct_event_status(s->bk_ev[next], &stat));
    if (done || stat != CL_COMPLETE) CT_TRY(finish_oldest(s, w));
  }
  return CT_OK;
}

// The status words, once compute is done (this rank's compute time written first), and the
// optimizer (on dev->queue) made to wait for every window's results.
static ct_status reduce_status(ct_run_state *s, ct_computed *c, windows *w) {
  ct_ring_opts o = s->wire;
  o.total = CT_REDUCED(s), o.base = s->P;
  o.idle = 1;   // after compute
  cl_event written = NULL;
  ct_status st = ct_step_write_status(s, c->grads, s->compute_end, &written);
  if (st == CT_OK)
    st = ct_allreduce_device_after(s->ar, c->grads, s->P, CT_REDUCED(s) - s->P, written, &o,
                                   &s->ars);
  if (written) clReleaseEvent(written);
  int nf = 0;
  for (int k = 0; k < s->nb; k++)
    if (w->fin[k]) w->fin[nf++] = w->fin[k];
  cl_int err = nf ? clEnqueueBarrierWithWaitList(s->dev.queue, (cl_uint)nf, w->fin, NULL)
                  : CL_SUCCESS;
  for (int k = 0; k < nf; k++) clReleaseEvent(w->fin[k]);
  CT_TRY(st);
  CL_CHECK(err);
  return CT_OK;
}

// Exposed: the time from the device's end of compute (seen by polling its marker between ring
// moves) to the end of the last reduction.
ct_status ct_bucket_reduce(ct_run_state *s, ct_computed *c, double t_start, double *compute_s) {
  ct_comm *comm = s->comm;
  windows w;
  memset(&w, 0, sizeof w);
  double t2 = ct_now();
  CT_TRY(reduce_windows(s, c, &w));
  if (!w.t_done) {
    CL_CHECK(clWaitForEvents(1, &s->compute_end));
    w.t_done = ct_now();
  }
  *compute_s = w.t_done - t_start;
  ct_trace_span(&s->trace, 0, "compute", t_start, w.t_done);
  double t_tail = ct_now();
  memset(s->tail_host, 0, (size_t)comm->size * sizeof *s->tail_host);
  s->tail_host[comm->rank] = (float)(*compute_s * 1e3);
  if (s->cfg->timing) {   // exact waiting time, at the price of a barrier
    double t3 = ct_now();
    CT_TRY(ct_comm_barrier(comm));
    s->res->wait_s += ct_now() - t3;
    if (s->measuring) s->barrier_s += ct_now() - t3;
  }
  CT_TRY(reduce_status(s, c, &w));
  double t_end = ct_now();
  ct_trace_span(&s->trace, 1, "status words", t_tail, t_end);
  ct_trace_span(&s->trace, 0, "all-reduce after compute", w.t_done, t_end);
  if (s->measuring) {
    s->allreduce_s += t_end - t2;
    s->exposed_s += t_end - w.t_done;
  }
  return CT_OK;
}
