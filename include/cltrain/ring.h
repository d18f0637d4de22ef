// ring.h: the all-reduce's insides, shared by its files (allreduce.h is the API): the ring's
// schedule on one window (ring.c), the gathered path for small windows (gather.c), device
// staging (staging.c), and the handle and its requests (allreduce.c).
//
// Defines: ct_ring (+ ct_ring_nf, ct_ring_stage, ct_ring_progress), ct_ring_res,
// struct ct_allreduce, struct ct_allreduce_req, CT_RING_SLOTS, the segment arithmetic
// (ct_ring_mod / _seg_off / _seg_len / _seg_chunks), ct_ring_layout, ct_ring_advance,
// ct_ring_run, ct_ring_abandon, ct_ring_mpi_ready_n, ct_ring_nf_tally, ct_ring_add_f32,
// ct_ring_pad_stride, ct_ring_chunk_floats, ct_ring_clamp_chunk, ct_gather_advance,
// ct_stage_ready, ct_stage_write_back, ct_stage_reads, ct_ring_release.
//
// A ring call is a ct_ring: what the schedule needs (the window of the layout, the steps this
// call runs, the tags), the messages' buffers, and apart from those, in sub-structures of their
// own, what it does besides summing (the non-finite test), where its data lives when it is a
// device buffer (staging), and where it stands (progress: ct_ring_advance resumes there).
#ifndef CLTRAIN_RING_H
#define CLTRAIN_RING_H

#include <stddef.h>
#include <stdint.h>

#include "cltrain/allreduce.h"

#define CT_RING_SLOTS 4   // receive slots (chunks) of the reduce-scatter; also the posting window
#define CT_RING_WINDOW_CHUNKS 8   // chunks of an unbalanced window's largest part
#define CT_RING_WINDOW_CHUNK_MIN ((size_t)16 << 10)   // floats (64 KiB): no smaller messages

// The non-finite test (ct_ring_opts.nonfinite), folded into the owner's additions.
typedef struct {
  unsigned *out;          // segments with a non-finite sum, added to (NULL: no test)
  size_t end;             // ... among the layout's elements [0, end)
  unsigned seen;          // chunks of our finished segment with a non-finite sum, so far
} ct_ring_nf;

// Device staging (queue NULL: a host array, or mapped device memory: no copies).
typedef struct {
  cl_command_queue queue;
  cl_mem buf;             // the user's device buffer
  size_t offset;          // floats
  cl_event *d2h;          // (N, maxch) read of chunk c of segment s; NULL once waited for
  size_t maxch;
  int whole;              // the range fits in one chunk: one read (d2h[0]) and one write
} ct_ring_stage;

// Where the ring stands (ct_ring_advance resumes here): items done, receives posted, step-0
// sends posted, the step of the next receive to post, the step of item i.
typedef struct {
  size_t i, p, next0;
  int pt, ti, started;
} ct_ring_progress;

typedef struct ct_ring {
  // ---- the schedule
  MPI_Comm comm;
  int rank, size;
  float *data;            // (count) the array reduced in place (user array or staging)
  size_t count, chunk;    // chunk: floats per message
  // The window [base, base + count) of a layout of `total` floats (0: total = count): the
  // segments are those of the whole layout, cut to the window, so that an element is summed in
  // the same order whichever window (bucket) it is reduced in.
  size_t base, total;
  int part;               // ct_ring_opts.part: 0 the whole ring, or one of its halves
  int t_lo, t_hi;         // the steps this call runs: [0, 2N-2), [0, N-1) or [N-1, 2N-2)
  int s0;                 // the segment the first step sends: r, or r+1 (all-gather only)
  size_t *rstart;         // (2N - 1) first item of each step; rstart[2N-2] = items
  int tag0;               // tags tag0 .. tag0 + 2N-3 (rings in flight at once differ)
  // ---- the messages
  ct_wire wire;           // the format of the messages (sums are fp32 on every rank)
  int idle;               // ct_ring_opts.idle: yield between tests instead of napping
  unsigned char *slots;   // (CT_RING_SLOTS) receive slots, page-aligned, slot_stride apart
  size_t slot_stride;
  unsigned char *sbuf;    // wire != fp32: (n0 + items) send images, sbuf_stride bytes apart
  size_t sbuf_stride;
  MPI_Request *rreq;      // (items) receive of item i
  MPI_Request *sreq;      // (n0 + items) step-0 sends, then the send that follows item i
  // ---- besides the sums
  ct_ring_nf nf;
  ct_ring_stage stage;
  // A small window (see ct_allreduce_algo): gathered whole by every rank, summed in the ring's
  // order (gather.c). gath: (N, count) every rank's window, rank-major; rreq/sreq its N-1
  // receives and sends.
  int small;
  float *gath;
  ct_ring_progress at;
  ct_allreduce_stats st;  // this call's times
} ct_ring;

// ---- the handle and its requests (allreduce.c) ---------------------------------------------
//
// A request reduces one window on one set of ring resources (receive slots, send images,
// request arrays, read events), one of CT_ALLREDUCE_INFLIGHT, with tags of its own, so that
// windows can be in flight together. The blocking calls are a request started and waited for.

typedef struct {
  unsigned char *slots;     // (CT_RING_SLOTS) receive slots, page-aligned, slot_stride apart
  size_t slot_stride;
  unsigned char *sbuf;      // wire formats: send images (allocated on first use)
  size_t sbuf_stride;
  MPI_Request *rreq, *sreq; // (items_max), (maxch + items_max)
  size_t *rstart;           // (2N - 1)
  cl_event *d2h;            // (N, maxch)
  float *gath;              // (N, small_max) small windows of every rank (ct_allreduce_algo)
} ct_ring_res;

struct ct_allreduce_req {
  ct_allreduce *ar;
  int slot, busy;
  int phase;                // 0: waiting for the map; 1: ring running; 2: done
  int staged, external;     // copies through staging; the caller's own host pointer
  ct_ring g;
  cl_mem buf;
  size_t dev_off;
  float *mapped;            // zero-copy: the mapped window
  cl_event map_ev, finished;
  double t0;
};

struct ct_allreduce {
  ct_comm *comm;
  ct_device *dev;
  cl_command_queue queue;   // in-order queue of our own for maps, unmaps and staging copies
  cl_mem pinned;            // CL_MEM_ALLOC_HOST_PTR buffer mapped as `staging` (NULL: malloc)
  float *staging;           // (max_count) host image of the layout (windows at their offsets)
  size_t max_count, chunk;  // chunk: floats per message (and per copy)
  size_t maxch, items_max;  // chunks of the largest segment of max_count (+1); receive items
  int zero_copy;            // the device shares host memory: map the range, no staging copies
  int host_only;            // no device: ct_allreduce_mapped on host arrays
  ct_allreduce_algo algo;   // gather up to algo.small_bytes (the chunk is fixed: `chunk`)
  ct_ring_res res[CT_ALLREDUCE_INFLIGHT];
  ct_allreduce_req req[CT_ALLREDUCE_INFLIGHT];
  unsigned long seq;        // requests started: request k uses slot k mod CT_ALLREDUCE_INFLIGHT
};

static inline void ct_ring_release(cl_event *e) {
  if (*e) clReleaseEvent(*e);
  *e = NULL;
}

// ---- the schedule (ring.c) ------------------------------------------------------------------

int ct_ring_mod(int a, int n);
// Segment s's part of the window, from the window's start: its offset and length.
size_t ct_ring_seg_off(const ct_ring *g, int s);
size_t ct_ring_seg_len(const ct_ring *g, int s);
size_t ct_ring_seg_chunks(const ct_ring *g, int s);
// Fills rstart (steps outside [t_lo, t_hi) have no items) and the steps and first segment of
// the call's part; returns the number of receive items.
size_t ct_ring_layout(ct_ring *g);
// Advances the 2N-2 steps on g->data as far as they can go without waiting (block: to the
// end); *done = 1 when the ring is complete (its sends too). Needs N >= 2 and ct_ring_layout
// done (or g->small: the gathered path).
ct_status ct_ring_advance(ct_ring *g, int block, int *done);
// The whole ring, blocking, from the start.
ct_status ct_ring_run(ct_ring *g);
// Cancels and frees whatever is still in flight after a failure.
void ct_ring_abandon(ct_ring *g, size_t nsend, size_t nrecv);
// Are n requests complete? block: wait for them (polling, then napping or yielding: g->idle).
ct_status ct_ring_mpi_ready_n(ct_ring *g, int n, MPI_Request *req, int block, int *ready,
                              const char *what);
// After the ring: the count of segments with a non-finite sum, added to *g->nf.out.
void ct_ring_nf_tally(const ct_ring *g);
// dst += src (vectorized; the same bits as the scalar loop).
void ct_ring_add_f32(float *restrict dst, const float *restrict src, size_t n);
// Strides of slots and send images: placed like the neighbour's pages (ring.c says why).
size_t ct_ring_pad_stride(size_t bytes);
// Floats per message for a chunk of chunk_bytes (at least 1, an int count).
size_t ct_ring_chunk_floats(size_t chunk_bytes);
// Chunk floats for a ring over the window: at most the largest segment of it.
size_t ct_ring_clamp_chunk(const ct_ring *g);

// ---- small windows, gathered (gather.c) -----------------------------------------------------

// ct_ring_advance for g->small: the window's data (read, where staged), the exchange (rreq,
// sreq: N-1 each), the sums in the ring's order.
ct_status ct_gather_advance(ct_ring *g, int block, int *done);

// ---- device staging (staging.c) -------------------------------------------------------------

// Has the read of chunk c of segment s landed in staging? block: wait for it.
ct_status ct_stage_ready(ct_ring *g, int s, size_t c, int block, int *ready);
// A finished region of staging written back to the device buffer (not waited for).
ct_status ct_stage_write_back(ct_ring *g, const float *region, size_t len);
// Enqueues the reads of every chunk of the window into staging, in the order the ring needs
// them, the first waiting for *wait (released).
ct_status ct_stage_reads(ct_allreduce *ar, ct_ring *g, cl_event *wait);
// Pinned staging for max_count floats where the device offers it, else page-aligned host
// memory; nothing for zero-copy devices and host handles.
void ct_stage_init(ct_allreduce *ar);
void ct_stage_free(ct_allreduce *ar);

#endif
