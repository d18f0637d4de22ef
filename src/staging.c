// staging.c: device buffers staged through host memory for the ring: the reads of a window's
// chunks into staging (in the order the ring needs them), each waited for only when the ring
// needs that chunk, and the finished chunks written back as they are finished. See ring.h.
//
// The range is read into a host staging array chunk by chunk on a copy queue of our own
// (non-blocking reads with one event each), the ring runs on the staging array, and every chunk
// is written back as soon as it is finished (the last reduce-scatter step and each all-gather
// step), so D2H of chunk k+1, the MPI exchange of chunk k and H2D of finished chunks overlap.
// Devices that share host memory (CPUs) are not staged: the window is mapped (allreduce.c).
#include "cltrain/ring.h"

#include <stdlib.h>

#include "cltrain/timer.h"

ct_status ct_stage_ready(ct_ring *g, int s, size_t c, int block, int *ready) {
  *ready = 1;
  if (!g->stage.queue) return CT_OK;
  cl_event *ev = &g->stage.d2h[g->stage.whole ? 0 : (size_t)s * g->stage.maxch + c];
  if (!*ev) return CT_OK;
  cl_int err;
  if (block) {
    double t0 = ct_now();
    err = clWaitForEvents(1, ev);
    g->st.d2h_s += ct_now() - t0;
  } else {
    cl_int stat = CL_QUEUED;
    err = clGetEventInfo(*ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof stat, &stat, NULL);
    if (err == CL_SUCCESS && stat < 0) err = stat;
    if (err == CL_SUCCESS && stat != CL_COMPLETE) {
      *ready = 0;
      return CT_OK;
    }
  }
  clReleaseEvent(*ev);
  *ev = NULL;
  CL_CHECK(err);
  return CT_OK;
}

ct_status ct_stage_write_back(ct_ring *g, const float *region, size_t len) {
  const ct_ring_stage *sg = &g->stage;
  if (!sg->queue || sg->whole || len == 0) return CT_OK;
  size_t at = (size_t)(region - g->data);
  double t0 = ct_now();
  CL_CHECK(clEnqueueWriteBuffer(sg->queue, sg->buf, CL_FALSE, (sg->offset + at) * sizeof(float),
                                len * sizeof(float), region, 0, NULL, NULL));
  CL_CHECK(clFlush(sg->queue));
  g->st.h2d_s += ct_now() - t0;
  return CT_OK;
}

// The read of chunk c of segment s; the first waits for `wait` (the producers), the rest follow
// on the in-order queue.
static ct_status enqueue_read(ct_allreduce *ar, ct_ring *g, int s, size_t c, cl_event *wait) {
  const ct_ring_stage *sg = &g->stage;
  size_t len = ct_ring_seg_len(g, s), lo = c * g->chunk;
  if (lo >= len) return CT_OK;
  size_t n = len - lo < g->chunk ? len - lo : g->chunk, at = ct_ring_seg_off(g, s) + lo;
  CL_CHECK(clEnqueueReadBuffer(ar->queue, sg->buf, CL_FALSE, (sg->offset + at) * sizeof(float),
                               n * sizeof(float), g->data + at, *wait ? 1 : 0,
                               *wait ? wait : NULL, &sg->d2h[(size_t)s * sg->maxch + c]));
  ct_ring_release(wait);
  return CT_OK;
}

// In the order the ring needs them: step 0 needs our own segment r (sent) and segment r-1
// (added to) chunk by chunk, then segments r-2, r-3, ...
ct_status ct_stage_reads(ct_allreduce *ar, ct_ring *g, cl_event *wait) {
  const ct_ring_stage *sg = &g->stage;
  if (sg->whole) {   // small: one command each way (the per-command latency dominates)
    CL_CHECK(clEnqueueReadBuffer(ar->queue, sg->buf, CL_FALSE, sg->offset * sizeof(float),
                                 g->count * sizeof(float), g->data, *wait ? 1 : 0,
                                 *wait ? wait : NULL, &sg->d2h[0]));
    ct_ring_release(wait);
    CL_CHECK(clFlush(ar->queue));
    return CT_OK;
  }
  int N = g->size, r = g->rank, prev = ct_ring_mod(r - 1, N);
  size_t nr = ct_ring_seg_chunks(g, r), np = ct_ring_seg_chunks(g, prev), n = nr > np ? nr : np;
  for (size_t c = 0; c < n; c++) {   // step 0: segments r and r-1, interleaved
    CT_TRY(enqueue_read(ar, g, r, c, wait));
    CT_TRY(enqueue_read(ar, g, prev, c, wait));
  }
  for (int j = 2; j < N; j++) {      // steps 1 .. N-2: segments r-2, r-3, ..., r+1
    int s = ct_ring_mod(r - j, N);
    for (size_t c = 0; c < ct_ring_seg_chunks(g, s); c++) CT_TRY(enqueue_read(ar, g, s, c, wait));
  }
  ct_ring_release(wait);   // (an empty window read nothing)
  CL_CHECK(clFlush(ar->queue));
  return CT_OK;
}

void ct_stage_init(ct_allreduce *ar) {
  ct_device *dev = ar->dev;
  cl_int err;
  size_t bytes = (ar->max_count ? ar->max_count : 1) * sizeof(float);
  if (dev && !ar->zero_copy && bytes <= dev->info.max_alloc) {
    ar->pinned = clCreateBuffer(dev->ctx, CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR, bytes, NULL,
                                &err);
    if (err != CL_SUCCESS) ar->pinned = NULL;
    if (ar->pinned) {
      ar->staging = clEnqueueMapBuffer(ar->queue, ar->pinned, CL_TRUE,
                                       CL_MAP_READ | CL_MAP_WRITE, 0, bytes, 0, NULL, NULL, &err);
      if (err != CL_SUCCESS || !ar->staging) {
        ar->staging = NULL;
        clReleaseMemObject(ar->pinned);
        ar->pinned = NULL;
      }
    }
  }
  if (dev && !ar->staging && !ar->zero_copy) {
    void *p = NULL;
    if (posix_memalign(&p, 4096, bytes) != 0) p = NULL;
    ar->staging = p;
  }
}

void ct_stage_free(ct_allreduce *ar) {
  if (ar->pinned) {
    if (ar->staging && ar->queue) {
      cl_event ev = NULL;
      if (clEnqueueUnmapMemObject(ar->queue, ar->pinned, ar->staging, 0, NULL, &ev) ==
          CL_SUCCESS) {
        clWaitForEvents(1, &ev);
        clReleaseEvent(ev);
      }
    }
    clReleaseMemObject(ar->pinned);
  } else {
    free(ar->staging);
  }
  ar->pinned = NULL, ar->staging = NULL;
}
