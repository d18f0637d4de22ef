// ring.c: the ring all-reduce's schedule on one window: the segments, the steps, the messages
// (receive slots, send images, tags) and the additions, resumable without waiting; the
// non-finite test folded into the owner's additions. See ring.h; the API is allreduce.h.
//
// The ring, N = 4, count cut into segments S0..S3 (the remainder spread over the first ones):
//
//        +--------+  S_r sent right   +--------+
//        | rank 0 | ----------------> | rank 1 |        rank r sends to r+1 and
//        +--------+                   +--------+        receives from r-1 (mod N)
//             ^                            |
//             |                            v
//        +--------+                   +--------+
//        | rank 3 | <---------------- | rank 2 |
//        +--------+                   +--------+
//
//   step t (0 .. 2N-3):  send segment (r - t) mod N,  receive segment (r - t - 1) mod N
//   t <  N-1  reduce-scatter: the received chunk is ADDED to ours (receive into a slot, add)
//   t >= N-1  all-gather:     the received chunk is finished, receive it in place
//   after step N-2 rank r holds the finished segment (r + 1) mod N.
//
//   rank:          0          1          2          3
//   t=0 sends     S0         S1         S2         S3       (own data)
//   t=1 sends     S3+S0      S0+S1      S1+S2      S2+S3    (what it received at t=0, + own)
//   t=2 sends     S2+S3+S0   S3+S0+S1   ...                 (t=2: rank 0 finishes S1)
//   t=3..5        the finished segments travel once more round the ring (copies)
//
// What a rank sends at step t+1 is what it received (and added to) at step t, so each segment
// is cut into chunks that flow through the ring on their own: chunk c goes on to step t+1 as
// soon as it arrived at step t, with no step-wide barrier. Messages carry the step as their tag;
// within a step chunks go in order, so MPI's non-overtaking rule matches them. Segment s is
// summed as ((x_s + x_s+1) + x_s+2) + ... over ranks (x_k = rank k's data): a fixed order, the
// same bits on every run, and the same bits on every rank because the all-gather copies.
//
// Device buffers: the range is read into a host staging array chunk by chunk on a copy queue
// of our own (non-blocking reads with one event each, waited for only when a chunk is needed),
// the ring runs on the staging array, and every chunk is written back as soon as it is
// finished (the last reduce-scatter step and each all-gather step), so D2H of chunk k+1, the
// MPI exchange of chunk k and H2D of finished chunks overlap.
//
// Deadlock freedom: a rank blocks only on (a) the receive of the item it processes next,
// whose send the left neighbour has posted or will post without blocking on us first, and
// (b) before an all-gather receive into a region, on the send of that region N-1 steps earlier
// (the right neighbour needs only earlier items to post its receive). All step-0 sends are
// posted before any later step is processed.
#include "cltrain/ring.h"

#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cltrain/timer.h"

// ---- in-place addition (vectorized; the same bits as the scalar loop) ------------------------

#if defined(__GNUC__)
typedef float ct_v4f __attribute__((vector_size(16), aligned(4), may_alias));
typedef uint32_t ct_v4u __attribute__((vector_size(16), aligned(4), may_alias));
#endif

void ct_ring_add_f32(float *restrict dst, const float *restrict src, size_t n) {
  size_t i = 0;
#if defined(__GNUC__)
  for (; i + 16 <= n; i += 16) {
    ct_v4f *d = (ct_v4f *)(dst + i);
    const ct_v4f *s = (const ct_v4f *)(src + i);
    ct_v4f a0 = d[0] + s[0], a1 = d[1] + s[1], a2 = d[2] + s[2], a3 = d[3] + s[3];
    d[0] = a0, d[1] = a1, d[2] = a2, d[3] = a3;
  }
#endif
  for (; i < n; i++) dst[i] += src[i];
}

// Is x not finite (exponent bits all set: an infinity or a NaN)?
static uint32_t f32_nonfinite(const float *x) {
  uint32_t u;
  memcpy(&u, x, sizeof u);
  return (u & 0x7f800000u) == 0x7f800000u;
}

// add_f32, and in the same pass whether any sum is not finite (ct_ring_opts.nonfinite).
static int add_f32_nonfinite(float *restrict dst, const float *restrict src, size_t n) {
  size_t i = 0;
  uint32_t any = 0;
#if defined(__GNUC__)
  const ct_v4u e = {0x7f800000u, 0x7f800000u, 0x7f800000u, 0x7f800000u};
  ct_v4u acc = {0, 0, 0, 0};
  for (; i + 16 <= n; i += 16) {
    ct_v4f *d = (ct_v4f *)(dst + i);
    const ct_v4f *s = (const ct_v4f *)(src + i);
    ct_v4f a0 = d[0] + s[0], a1 = d[1] + s[1], a2 = d[2] + s[2], a3 = d[3] + s[3];
    d[0] = a0, d[1] = a1, d[2] = a2, d[3] = a3;
    acc |= (ct_v4u)(((ct_v4u)a0 & e) == e) | (ct_v4u)(((ct_v4u)a1 & e) == e) |
           (ct_v4u)(((ct_v4u)a2 & e) == e) | (ct_v4u)(((ct_v4u)a3 & e) == e);
  }
  any = acc[0] | acc[1] | acc[2] | acc[3];
#endif
  for (; i < n; i++) {
    dst[i] += src[i];
    any |= f32_nonfinite(dst + i);
  }
  return any != 0;
}

// ---- the ring -------------------------------------------------------------------------------

int ct_ring_mod(int a, int n) { return ((a % n) + n) % n; }
static size_t seg_start(size_t total, int size, int s) {   // the remainder on the first ones
  size_t rem = total % (size_t)size;
  return (size_t)s * (total / (size_t)size) + ((size_t)s < rem ? (size_t)s : rem);
}
void ct_ring_segment(size_t total, int size, int s, size_t *lo, size_t *hi) {
  *lo = seg_start(total, size, s), *hi = seg_start(total, size, s + 1);
}
static size_t gseg_off(const ct_ring *g, int s) {   // segment s of the whole layout
  return seg_start(g->total ? g->total : g->count, g->size, s);
}
size_t ct_ring_seg_off(const ct_ring *g, int s) {     // its part of the window, from the window
  size_t lo = gseg_off(g, s), end = g->base + g->count;
  if (lo < g->base) lo = g->base;
  return (lo < end ? lo : end) - g->base;
}
size_t ct_ring_seg_len(const ct_ring *g, int s) {
  size_t lo = gseg_off(g, s), hi = gseg_off(g, s + 1), end = g->base + g->count;
  if (lo < g->base) lo = g->base;
  if (hi > end) hi = end;
  return hi > lo ? hi - lo : 0;
}
static size_t esz(const ct_ring *g) { return g->wire == CT_WIRE_FP32 ? sizeof(float) : 2; }

// Receive slots and send images are placed so that their addresses agree modulo 4096 with the
// neighbour's (for fp32 with the region of our own array the neighbour sends from its array,
// for the wire formats by the element's place in the layout): AMD Zen's kernel copy (rep movsb,
// which Open MPI's single-copy transport ends in) runs at a third of its speed when the
// destination lies 1..63 bytes after the source modulo 4096, which is where a malloc'ed slot
// (16 bytes into its page) met the page-aligned buffers of Intel's runtime: the device ring ran
// at 1.9x the host ring's time. Strides of 4096 or more get a page of room for the shift.
size_t ct_ring_pad_stride(size_t bytes) {
  return bytes >= 4096 ? ((bytes + 4095) & ~(size_t)4095) + 4096 : (bytes + 63) & ~(size_t)63;
}
static void *placed(unsigned char *b, size_t stride, uintptr_t like) {
  return stride >= 8192 ? b + (like & 4095) : b;
}
static uintptr_t place_of(const ct_ring *g, const float *region) {
  return g->wire == CT_WIRE_FP32 ? (uintptr_t)region
                                 : (uintptr_t)((g->base + (size_t)(region - g->data)) * 2);
}
static void *slot_ptr(const ct_ring *g, size_t p, const float *region) {
  return placed(g->slots + (p % CT_RING_SLOTS) * g->slot_stride, g->slot_stride,
                place_of(g, region));
}
size_t ct_ring_seg_chunks(const ct_ring *g, int s) {
  return (ct_ring_seg_len(g, s) + g->chunk - 1) / g->chunk;
}
static int recv_seg(const ct_ring *g, int t) { return ct_ring_mod(g->rank - t - 1, g->size); }

// Fills rstart (steps outside [t_lo, t_hi) have no items) and the steps and first segment of
// the call's part; returns the number of receive items.
size_t ct_ring_layout(ct_ring *g) {
  int steps = 2 * g->size - 2;
  g->t_lo = g->part == CT_RING_ALL_GATHER ? g->size - 1 : 0;
  g->t_hi = g->part == CT_RING_REDUCE_SCATTER ? g->size - 1 : steps;
  g->s0 = g->part == CT_RING_ALL_GATHER ? ct_ring_mod(g->rank + 1, g->size) : g->rank;
  size_t n = 0;
  for (int t = 0; t < steps; t++) {
    g->rstart[t] = n;
    if (t >= g->t_lo && t < g->t_hi) n += ct_ring_seg_chunks(g, recv_seg(g, t));
  }
  g->rstart[steps] = n;
  return n;
}

// Sends len floats of region as send j (sreq[j]): as they are, or converted to the wire format
// into send image j.
static ct_status isend(ct_ring *g, const float *region, size_t len, int tag, size_t j) {
  int right = ct_ring_mod(g->rank + 1, g->size);
  const void *buf = region;
  if (g->wire != CT_WIRE_FP32) {
    double t0 = ct_now();
    uint16_t *w = placed(g->sbuf + j * g->sbuf_stride, g->sbuf_stride, place_of(g, region));
    ct_wire_pack(g->wire, w, region, len);
    g->st.reduce_s += ct_now() - t0;
    buf = w;
  }
  double t0 = ct_now();
  int err = MPI_Isend(buf, (int)len, g->wire == CT_WIRE_FP32 ? MPI_FLOAT : MPI_UINT16_T, right,
                      g->tag0 + tag, g->comm, &g->sreq[j]);
  g->st.mpi_s += ct_now() - t0;
  if (err != MPI_SUCCESS) return ct_mpi_error(err, "MPI_Isend", __FILE__, __LINE__);
  g->st.bytes_sent += len * esz(g);
  return CT_OK;
}

// Is a request complete? block: wait for it, polling for 200 us, then every 50 us with a sleep
// in between, so a rank waiting long for a slower neighbour leaves the core to whatever shares
// it (its own device threads on a CPU, or another rank) instead of spinning in MPI_Wait.
// An idle call (ct_ring_opts.idle: nothing of this rank computes meanwhile) yields the core
// between tests instead of sleeping: a 50 us nap wakes up to 100 us late (timer slack), after
// the data has come, and that is exposed time; a yield still hands the core to a runnable
// thread (another rank's on an oversubscribed node).
ct_status ct_ring_mpi_ready_n(ct_ring *g, int n, MPI_Request *req, int block, int *ready,
                             const char *what) {
  double t0 = ct_now();
  int err;
  while ((err = MPI_Testall(n, req, ready, MPI_STATUSES_IGNORE)) == MPI_SUCCESS && !*ready &&
         block) {
    if (ct_now() - t0 > 200e-6) {
      if (g->idle) {
        sched_yield();
      } else {
        struct timespec ts = {0, 50000};
        nanosleep(&ts, NULL);
      }
    }
  }
  g->st.mpi_s += ct_now() - t0;
  if (err != MPI_SUCCESS) return ct_mpi_error(err, what, __FILE__, __LINE__);
  return CT_OK;
}

static ct_status mpi_ready(ct_ring *g, MPI_Request *req, int block, int *ready, const char *what) {
  return ct_ring_mpi_ready_n(g, 1, req, block, ready, what);
}

// Posts the first step's sends (our own segment r; for the all-gather alone, our finished
// segment r+1) of chunks next0 .. upto-1, as far as their reads have landed (all of them with
// block).
static ct_status post_sends0(ct_ring *g, size_t upto, int block) {
  int s = g->s0;
  size_t off = ct_ring_seg_off(g, s), len = ct_ring_seg_len(g, s);
  for (; g->at.next0 < upto; g->at.next0++) {
    size_t c = g->at.next0, lo = c * g->chunk, n = len - lo < g->chunk ? len - lo : g->chunk;
    int ready;
    CT_TRY(ct_stage_ready(g, s, c, block, &ready));
    if (!ready) break;
    CT_TRY(isend(g, g->data + off + lo, n, g->t_lo, c));
  }
  return CT_OK;
}

// Posts the receive of item p (step t, chunk c).
static ct_status post_recv(ct_ring *g, size_t p, int t) {
  int s = recv_seg(g, t), left = ct_ring_mod(g->rank - 1, g->size);
  size_t c = p - g->rstart[t], lo = c * g->chunk, len = ct_ring_seg_len(g, s) - lo;
  if (len > g->chunk) len = g->chunk;
  // reduce-scatter, or any wire format: a slot; fp32 all-gather: in place
  float *region = g->data + ct_ring_seg_off(g, s) + lo;
  void *dst = t < g->size - 1 || g->wire != CT_WIRE_FP32 ? slot_ptr(g, p, region) : region;
  double t0 = ct_now();
  int err = MPI_Irecv(dst, (int)len, g->wire == CT_WIRE_FP32 ? MPI_FLOAT : MPI_UINT16_T, left,
                      g->tag0 + t, g->comm, &g->rreq[p]);
  g->st.mpi_s += ct_now() - t0;
  if (err != MPI_SUCCESS) return ct_mpi_error(err, "MPI_Irecv", __FILE__, __LINE__);
  return CT_OK;
}

// Index in sreq of the send that last read the region an all-gather item (t >= N-1, chunk c)
// receives into: the send of step t-N+1, chunk c.
static size_t ag_dep(const ct_ring *g, int t, size_t c, size_t n0) {
  int td = t - g->size + 1;
  return td == 0 ? c : n0 + g->rstart[td - 1] + c;
}

// Posts receives ahead of the item being processed (`done` items are finished), up to the
// window; an all-gather receive waits (without blocking) until the send out of its region is
// complete. Stops at the first that cannot be posted yet, so receives stay in order.
static ct_status post_recvs(ct_ring *g, size_t done, size_t n0) {
  const int steps = 2 * g->size - 2;
  const size_t items = g->rstart[steps];
  size_t *p = &g->at.p;
  int *pt = &g->at.pt;
  while (*p < items && *p < done + CT_RING_SLOTS) {
    while (*p >= g->rstart[*pt + 1]) (*pt)++;
    int t = *pt;
    if (t >= g->size - 1 && g->part == 0) {   // (the all-gather alone never receives into a
                                              // region it sends from: no such wait)
      int td = t - g->size + 1;
      size_t c = *p - g->rstart[t];
      int posted = td == 0 ? c < g->at.next0 : g->rstart[td - 1] + c < done;
      if (!posted) break;
      int flag = 0;
      double t0 = ct_now();
      int err = MPI_Test(&g->sreq[ag_dep(g, t, c, n0)], &flag, MPI_STATUS_IGNORE);
      g->st.mpi_s += ct_now() - t0;
      if (err != MPI_SUCCESS) return ct_mpi_error(err, "MPI_Test", __FILE__, __LINE__);
      if (!flag) break;
    }
    CT_TRY(post_recv(g, *p, t));
    (*p)++;
  }
  return CT_OK;
}

// Cancels and frees whatever is still in flight after a failure. The buffers the requests
// point at are not freed by the callers on this path (an MPI error leaves the job broken).
void ct_ring_abandon(ct_ring *g, size_t nsend, size_t nrecv) {
  for (size_t i = 0; i < nrecv; i++)
    if (g->rreq[i] != MPI_REQUEST_NULL) {
      MPI_Cancel(&g->rreq[i]);
      MPI_Request_free(&g->rreq[i]);
    }
  for (size_t i = 0; i < nsend; i++)
    if (g->sreq[i] != MPI_REQUEST_NULL) MPI_Request_free(&g->sreq[i]);
}

// ---- the non-finite test (ct_ring_opts.nonfinite) -------------------------------------------

static int any_nonfinite(const float *x, size_t n) {
  uint32_t any = 0;
  for (size_t i = 0; i < n; i++) any |= f32_nonfinite(x + i);
  return any != 0;
}

// The tested part of segment s in the window: [*lo, *hi), from the window's start.
static int nf_part(const ct_ring *g, int s, size_t *lo, size_t *hi) {
  *lo = ct_ring_seg_off(g, s), *hi = *lo + ct_ring_seg_len(g, s);
  size_t end = g->nf.end > g->base ? g->nf.end - g->base : 0;
  if (*hi > end) *hi = end;
  return *hi > *lo;
}

// A chunk of our finished segment s, [at, at + n) from the window's start, its sums final:
// notes whether any is not finite (fused >= 0: add_f32_nonfinite found it over the whole
// chunk); the chunk holding the segment's last tested element marks it with a NaN when the
// segment had any (its earlier chunks have gone on already).
static void nf_chunk(ct_ring *g, int s, float *region, size_t at, size_t n, int fused) {
  size_t lo, hi;
  if (!g->nf.out || !nf_part(g, s, &lo, &hi) || at >= hi) return;
  size_t m = at + n < hi ? n : hi - at;
  g->nf.seen += (unsigned)(fused >= 0 && m == n ? fused : any_nonfinite(region, m));
  if (at + n >= hi && g->nf.seen) region[hi - 1 - at] = NAN;
}

// After the ring: every segment's last tested element (the gather path: every segment whole,
// each rank holding all the sums).
void ct_ring_nf_tally(const ct_ring *g) {
  if (!g->nf.out) return;
  unsigned bad = 0;
  for (int s = 0; s < g->size; s++) {
    size_t lo, hi;
    // the reduce-scatter alone: only the segment this rank finished (r+1) holds sums
    if (g->part == CT_RING_REDUCE_SCATTER && g->size > 1 && s != ct_ring_mod(g->rank + 1, g->size))
      continue;
    if (!nf_part(g, s, &lo, &hi)) continue;
    bad += (unsigned)(g->small || g->size < 2 ? any_nonfinite(g->data + lo, hi - lo)
                                              : any_nonfinite(g->data + hi - 1, 1));
  }
  *g->nf.out += bad;
}

// Advances the 2N-2 steps on g->data as far as they can go without waiting (block: to the
// end); *done = 1 when the ring is complete (its sends too). Needs N >= 2 and ring_layout done.
// Resumable: everything it waits for is checked before an item is processed, and an item is
// processed once. Deadlock-free as ring_run was (see the top): before any item of a step >= 1
// all step-0 sends are posted, and a rank never waits on anything its neighbours wait for.
ct_status ct_ring_advance(ct_ring *g, int block, int *done) {
  if (g->small) return ct_gather_advance(g, block, done);
  const int N = g->size, steps = 2 * N - 2;
  const size_t items = g->rstart[steps], n0 = ct_ring_seg_chunks(g, g->s0);
  ct_status st = CT_OK;
  int ready;
  *done = 0;
  if (!g->at.started) {
    CT_TRY(ct_wire_prepare(g->wire));
    for (size_t i = 0; i < items; i++) g->rreq[i] = MPI_REQUEST_NULL;
    for (size_t i = 0; i < n0 + items; i++) g->sreq[i] = MPI_REQUEST_NULL;
    g->at.i = g->at.p = g->at.next0 = 0;
    g->at.pt = g->at.ti = 0;
    g->at.started = 1;
    // Receives first, so that the neighbour's first chunks find them posted.
    CT_GOTO(post_recvs(g, 0, n0), st, fail);
    CT_GOTO(post_sends0(g, n0 < CT_RING_SLOTS ? n0 : CT_RING_SLOTS, block), st, fail);
  }
  while (g->at.i < items) {
    size_t i = g->at.i;
    while (i >= g->rstart[g->at.ti + 1]) g->at.ti++;
    int t = g->at.ti, s = recv_seg(g, t);
    size_t c = i - g->rstart[t], len = ct_ring_seg_len(g, s), lo = c * g->chunk;
    size_t n = len - lo < g->chunk ? len - lo : g->chunk;
    float *region = g->data + ct_ring_seg_off(g, s) + lo;
    if (t > g->t_lo) {
      CT_GOTO(post_sends0(g, n0, block), st, fail);
      if (g->at.next0 < n0) return CT_OK;
    } else {   // the first step: our sends up to CT_RING_SLOTS ahead (a start that found reads
               // still landing posted fewer; waiting for a receive without them would deadlock)
      CT_GOTO(post_sends0(g, c + CT_RING_SLOTS < n0 ? c + CT_RING_SLOTS : n0, block), st, fail);
    }
    if (g->at.p == i) {   // an all-gather receive that could not be posted ahead: post it now
      if (g->part == 0) {
        CT_GOTO(mpi_ready(g, &g->sreq[ag_dep(g, t, c, n0)], block, &ready, "MPI_Wait(send)"), st,
                fail);
        if (!ready) return CT_OK;
      }
      CT_GOTO(post_recv(g, g->at.p, t), st, fail);
      g->at.p++;
    }
    if (t < N - 1) {
      CT_GOTO(ct_stage_ready(g, s, c, block, &ready), st, fail);
      if (!ready) return CT_OK;
    }
    CT_GOTO(mpi_ready(g, &g->rreq[i], block, &ready, "MPI_Wait(recv)"), st, fail);
    if (!ready) return CT_OK;
    if (t < N - 1 || g->wire != CT_WIRE_FP32) {
      double t0 = ct_now();
      void *slot = slot_ptr(g, i, region);
      int fused = -1;   // finished here: tested in the addition's pass
      if (g->wire == CT_WIRE_FP32 && t == N - 2 && g->nf.out)
        fused = add_f32_nonfinite(region, slot, n);
      else if (g->wire == CT_WIRE_FP32)
        ct_ring_add_f32(region, slot, n);
      else
        CT_GOTO(ct_wire_unpack(g->wire, region, slot, n, t < N - 1), st, fail);
      // finished here: round to what every other rank will receive
      if (g->wire != CT_WIRE_FP32 && t == N - 2)
        CT_GOTO(ct_wire_round_n(g->wire, region, n), st, fail);
      if (t == N - 2) nf_chunk(g, s, region, ct_ring_seg_off(g, s) + lo, n, fused);
      g->st.reduce_s += ct_now() - t0;
    }
    if (t >= N - 2) CT_GOTO(ct_stage_write_back(g, region, n), st, fail);   // finished
    if (t + 1 < g->t_hi) CT_GOTO(isend(g, region, n, t + 1, n0 + i), st, fail);
    g->at.i++;
    if (t == g->t_lo) {
      size_t want = c + 1 + CT_RING_SLOTS;
      CT_GOTO(post_sends0(g, want < n0 ? want : n0, block), st, fail);
    }
    CT_GOTO(post_recvs(g, i + 1, n0), st, fail);
  }
  CT_GOTO(post_sends0(g, n0, block), st, fail);
  if (g->at.next0 < n0) return CT_OK;
  {
    double t0 = ct_now();
    int err, all = 1;
    if (block)
      err = MPI_Waitall((int)(n0 + items), g->sreq, MPI_STATUSES_IGNORE);
    else
      err = MPI_Testall((int)(n0 + items), g->sreq, &all, MPI_STATUSES_IGNORE);
    g->st.mpi_s += ct_now() - t0;
    if (err != MPI_SUCCESS) {
      st = ct_mpi_error(err, block ? "MPI_Waitall(sends)" : "MPI_Testall(sends)", __FILE__,
                        __LINE__);
      goto fail;
    }
    if (!all) return CT_OK;
  }
  *done = 1;
  return CT_OK;
fail:
  ct_ring_abandon(g, n0 + items, items);
  return st;
}

ct_status ct_ring_run(ct_ring *g) {
  int done;
  g->at.started = 0;
  return ct_ring_advance(g, 1, &done);
}

size_t ct_allreduce_ring_bytes(size_t count, int rank, int size) {
  if (size < 2) return 0;
  ct_ring g = {.rank = rank, .size = size, .count = count, .chunk = 1};
  // Sends every segment twice except (r+1) in the reduce-scatter and (r+2) in the all-gather.
  return (2 * count - ct_ring_seg_len(&g, ct_ring_mod(rank + 1, size)) -
          ct_ring_seg_len(&g, ct_ring_mod(rank + 2, size))) * sizeof(float);
}

size_t ct_ring_chunk_floats(size_t chunk_bytes) {
  size_t n = chunk_bytes / sizeof(float);
  if (n > (size_t)1 << 28) n = (size_t)1 << 28;   // an int count per message
  return n ? n : 1;
}

// Chunk floats for a ring over the window: at most the largest segment of it.
size_t ct_ring_clamp_chunk(const ct_ring *g) {
  size_t seg_max = 0;
  for (int s = 0; s < g->size; s++)
    if (ct_ring_seg_len(g, s) > seg_max) seg_max = ct_ring_seg_len(g, s);
  return g->chunk > seg_max && seg_max > 0 ? seg_max : g->chunk;
}
