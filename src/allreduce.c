// allreduce.c: the all-reduce's handle and requests: the algorithm by size and transport, the
// host-array entry for tests, the handle (staging, ring resources per slot), and a request's
// life: claimed, started (mapped, staged or the caller's host memory), moved on, waited for.
// The blocking forms are a request started and waited for. See allreduce.h; the ring itself is
// ring.c, the gathered path gather.c, device staging staging.c, the wire formats wire.c.
#include "cltrain/allreduce.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/ring.h"
#include "cltrain/timer.h"

// ---- the algorithm by size and transport ----------------------------------------------------

// "65536", "64K", "1M" (binary multiples); 0 on a malformed value
static int parse_size(const char *s, size_t *out) {
  char *end = NULL;
  if (!s || !*s || *s == '-') return 0;
  unsigned long long v = strtoull(s, &end, 10), mul = 1;
  if (end == s) return 0;
  if (*end == 'K' || *end == 'k') mul = 1ULL << 10, end++;
  else if (*end == 'M' || *end == 'm') mul = 1ULL << 20, end++;
  if (*end || v > (1ULL << 40) / mul) return 0;
  *out = (size_t)(v * mul);
  return 1;
}

ct_status ct_allreduce_algo_default(const ct_comm *comm, ct_allreduce_algo *a) {
  a->network = comm->nodes > 1;
  a->small_bytes = a->network ? CT_ALLREDUCE_SMALL_NET : CT_ALLREDUCE_SMALL_SHM;
  a->chunk_bytes = a->network ? CT_ALLREDUCE_CHUNK_NET : CT_ALLREDUCE_CHUNK_SHM;
  const char *e = getenv("CLTRAIN_ALLREDUCE_SMALL");
  if (e && *e && !parse_size(e, &a->small_bytes))
    return CT_FAIL(CT_ERR_USAGE, "CLTRAIN_ALLREDUCE_SMALL: expected a size in bytes (K, M "
                   "suffixes allowed; 0: always the ring), got '%s'", e);
  e = getenv("CLTRAIN_ALLREDUCE_CHUNK");
  if (e && *e && (!parse_size(e, &a->chunk_bytes) || a->chunk_bytes < sizeof(float)))
    return CT_FAIL(CT_ERR_USAGE, "CLTRAIN_ALLREDUCE_CHUNK: expected a size of at least 4 bytes "
                   "(K, M suffixes allowed), got '%s'", e);
  return CT_OK;
}

int ct_allreduce_algo_small(const ct_allreduce_algo *a, size_t count, int size) {
  if (!a || size < 2 || count == 0 || count > INT_MAX) return 0;
  return count <= a->small_bytes / sizeof(float) / (size_t)(size - 1);
}

const char *ct_allreduce_algo_name(const ct_allreduce_algo *a, size_t count, int size) {
  return size < 2 || count == 0 ? "none" : ct_allreduce_algo_small(a, count, size) ? "gather"
                                                                                    : "ring";
}

size_t ct_allreduce_sent_bytes(const ct_allreduce_algo *a, size_t count, int rank, int size,
                               ct_wire w) {
  if (ct_allreduce_algo_small(a, count, size)) return (size_t)(size - 1) * count * sizeof(float);
  size_t b = ct_allreduce_ring_bytes(count, rank, size);
  return w == CT_WIRE_FP32 ? b : b / sizeof(float) * ct_wire_bytes(w);
}

static void stats_add(ct_allreduce_stats *out, const ct_allreduce_stats *in, double t0) {
  if (!out) return;
  out->d2h_s += in->d2h_s;
  out->h2d_s += in->h2d_s;
  out->mpi_s += in->mpi_s;
  out->reduce_s += in->reduce_s;
  out->bytes_sent += in->bytes_sent;
  out->total_s += ct_now() - t0;
  out->calls++;
}

static ct_status check_tags(ct_comm *comm) {
  void *attr = NULL;
  int flag = 0;
  MPI_CHECK(MPI_Comm_get_attr(comm->comm, MPI_TAG_UB, &attr, &flag));
  if (flag && attr && *(int *)attr < CT_ALLREDUCE_INFLIGHT * (2 * comm->size - 2))
    return CT_FAIL(CT_ERR_INTERNAL, "MPI_TAG_UB %d is too small for a ring of %d ranks",
                   *(int *)attr, comm->size);
  return CT_OK;
}

// ---- host arrays ----------------------------------------------------------------------------

// The receive slots and send images of host rings, kept between calls: a fresh allocation of
// this size is mapped anew by malloc each time, and its first touch costs a page fault per page
// in every call. Page-aligned; grows only; one pair per thread.
typedef struct {
  unsigned char *p;
  size_t n;
} scratch_buf;
static _Thread_local scratch_buf scratch_slots, scratch_sends, scratch_gath;
static unsigned char *scratch(scratch_buf *b, size_t bytes) {
  if (bytes > b->n) {
    void *p = NULL;
    if (posix_memalign(&p, 4096, bytes) != 0) return NULL;
    free(b->p);
    b->p = p;
    b->n = bytes;
  }
  return b->p;
}

ct_status ct_allreduce_host(ct_comm *comm, float *buf, size_t count, size_t chunk_bytes,
                            ct_allreduce_stats *stats) {
  return ct_allreduce_host_wire(comm, buf, count, chunk_bytes, CT_WIRE_FP32, stats);
}

ct_status ct_allreduce_host_wire(ct_comm *comm, float *buf, size_t count, size_t chunk_bytes,
                                 ct_wire wire, ct_allreduce_stats *stats) {
  double t0 = ct_now();
  ct_allreduce_stats local = {0};
  CT_TRY(ct_comm_check_same_u64(comm, (uint64_t)count * 4 + (uint64_t)wire,
                                "all-reduce count and wire format"));
  if (comm->size < 2 || count == 0) {   // nothing goes on a wire
    stats_add(stats, &local, t0);
    return CT_OK;
  }
  CT_TRY(check_tags(comm));
  ct_allreduce_algo algo;
  CT_TRY(ct_allreduce_algo_default(comm, &algo));
  ct_ring g = {.comm = comm->comm, .rank = comm->rank, .size = comm->size, .data = buf,
               .count = count, .wire = wire,
               .chunk = ct_ring_chunk_floats(chunk_bytes ? chunk_bytes : algo.chunk_bytes)};
  if (ct_allreduce_algo_small(&algo, count, comm->size)) {
    g.small = 1;
    g.gath = (float *)scratch(&scratch_gath, (size_t)comm->size * count * sizeof(float));
    MPI_Request reqs[2 * 64];
    int heap = comm->size - 1 > 64;   // (N-1 receives, N-1 sends)
    g.rreq = heap ? malloc(2 * (size_t)(comm->size - 1) * sizeof *g.rreq) : reqs;
    if (!g.gath || !g.rreq) {
      if (heap) free(g.rreq);
      return CT_FAIL(CT_ERR_NOMEM, "out of host memory (gather of %zu floats)", count);
    }
    g.sreq = g.rreq + (comm->size - 1);
    ct_status st = ct_ring_run(&g);
    if (heap && st != CT_ERR_MPI) free(g.rreq);   // (after an MPI failure requests may point here)
    if (st == CT_OK) stats_add(stats, &g.st, t0);
    return st;
  }
  g.chunk = ct_ring_clamp_chunk(&g);
  size_t steps = 2 * (size_t)comm->size - 2;
  g.rstart = malloc((steps + 1) * sizeof *g.rstart);
  if (!g.rstart) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  size_t items = ct_ring_layout(&g), n0 = ct_ring_seg_chunks(&g, g.rank);
  g.rreq = malloc(items * sizeof *g.rreq);
  g.sreq = malloc((n0 + items) * sizeof *g.sreq);
  g.slot_stride = ct_ring_pad_stride(g.chunk * ct_wire_bytes(wire));
  g.slots = scratch(&scratch_slots, CT_RING_SLOTS * g.slot_stride);
  int sends_ok = 1;
  if (wire != CT_WIRE_FP32) {
    g.sbuf_stride = ct_ring_pad_stride(g.chunk * 2);
    g.sbuf = scratch(&scratch_sends, (n0 + items) * g.sbuf_stride);
    sends_ok = g.sbuf != NULL;
  }
  ct_status st = CT_OK;
  if (!g.rreq || !g.sreq || !g.slots || !sends_ok) {
    st = CT_FAIL(CT_ERR_NOMEM, "out of host memory (ring of %zu floats)", count);
  } else {
    st = ct_ring_run(&g);
  }
  if (st == CT_OK || st == CT_ERR_NOMEM) {   // after an MPI failure requests may still point here
    free(g.sreq);
    free(g.rreq);
  }
  free(g.rstart);
  if (st == CT_OK) stats_add(stats, &g.st, t0);
  return st;
}

// ---- the handle --------------------------------------------------------------------------------

int ct_allreduce_pinned(const ct_allreduce *ar) { return ar && ar->pinned != NULL; }
int ct_allreduce_zero_copy(const ct_allreduce *ar) { return ar && ar->zero_copy; }

ct_status ct_allreduce_init(ct_comm *comm, ct_device *dev, size_t max_count, size_t chunk_bytes,
                            ct_allreduce **out) {
  *out = NULL;
  ct_allreduce *ar = calloc(1, sizeof *ar);
  if (!ar) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  ar->comm = comm;
  ar->dev = dev;
  ar->max_count = max_count;
  ct_status st = ct_allreduce_algo_default(comm, &ar->algo);
  if (st != CT_OK) {
    free(ar);
    return st;
  }
  const char *staged = getenv("CLTRAIN_ALLREDUCE_STAGED");   // (ct_allreduce_zero_copy)
  ar->host_only = dev == NULL;
  ar->zero_copy = dev && dev->info.host_unified && !(staged && *staged && strcmp(staged, "0"));
  ar->chunk = ct_ring_chunk_floats(chunk_bytes ? chunk_bytes : ar->algo.chunk_bytes);
  ar->algo.chunk_bytes = ar->chunk * sizeof(float);
  int N = comm->size;
  ct_ring g = {.size = N, .count = max_count, .chunk = ar->chunk};
  size_t seg_max = ct_ring_seg_len(&g, 0);
  if (ar->chunk > seg_max && seg_max > 0) ar->chunk = seg_max;
  g.chunk = ar->chunk;
  // A window of the layout has at most one more chunk per segment than the whole (its pieces
  // start anywhere in a segment).
  ar->maxch = ct_ring_seg_chunks(&g, 0) + 1;
  if (ar->maxch < CT_RING_WINDOW_CHUNKS + 1)   // (window_chunk)
    ar->maxch = CT_RING_WINDOW_CHUNKS + 1;
  size_t steps = N > 1 ? 2 * (size_t)N - 2 : 1;
  ar->items_max = steps * ar->maxch;
  for (int k = 0; k < CT_ALLREDUCE_INFLIGHT; k++) ar->req[k].ar = ar, ar->req[k].slot = k;
  if (N < 2) {   // a ring of one: nothing to stage, the all-reduce is a no-op
    *out = ar;
    return CT_OK;
  }
  cl_int err;
  if (dev)
    CL_GOTO((ar->queue = clCreateCommandQueue(dev->ctx, dev->info.id, 0, &err), err), st, fail);
  // Pinned staging where the device offers it; plain host memory otherwise. Zero-copy devices
  // and host handles stage nothing.
  ct_stage_init(ar);
  int ok = ar->staging || ar->zero_copy || !dev;
  for (int k = 0; k < CT_ALLREDUCE_INFLIGHT && ok; k++) {
    ct_ring_res *r = &ar->res[k];
    r->slot_stride = ct_ring_pad_stride(ar->chunk * sizeof(float));
    void *sl = NULL;
    if (posix_memalign(&sl, 4096, CT_RING_SLOTS * r->slot_stride) != 0) sl = NULL;
    r->slots = sl;
    r->rreq = malloc(ar->items_max * sizeof *r->rreq);
    r->sreq = malloc((ar->maxch + ar->items_max) * sizeof *r->sreq);
    r->rstart = malloc((steps + 1) * sizeof *r->rstart);
    r->d2h = calloc((size_t)N * ar->maxch, sizeof *r->d2h);
    ok = r->slots && r->rreq && r->sreq && r->rstart && r->d2h;
  }
  if (!ok) {
    st = CT_FAIL(CT_ERR_NOMEM, "out of host memory (all-reduce staging for %zu floats)",
                 max_count);
    goto fail;
  }
  if ((st = ct_allreduce_set_algo(ar, &ar->algo)) != CT_OK) goto fail;
  *out = ar;
  return CT_OK;
fail:
  ct_allreduce_free(ar);
  return st;
}

void ct_allreduce_free(ct_allreduce *ar) {
  if (!ar) return;
  if (ar->queue) clFinish(ar->queue);
  for (int k = 0; k < CT_ALLREDUCE_INFLIGHT; k++) {
    ct_ring_res *r = &ar->res[k];
    ct_allreduce_req *q = &ar->req[k];
    if (q->busy && q->mapped && ar->queue) {   // abandoned mid-flight: give the map back
      if (clEnqueueUnmapMemObject(ar->queue, q->buf, q->mapped, 0, NULL, NULL) == CL_SUCCESS)
        clFinish(ar->queue);
    }
    ct_ring_release(&q->map_ev);
    ct_ring_release(&q->finished);
    if (r->d2h)
      for (size_t i = 0; i < (size_t)ar->comm->size * ar->maxch; i++) ct_ring_release(&r->d2h[i]);
    free(r->slots);
    free(r->sbuf);
    free(r->rreq);
    free(r->sreq);
    free(r->rstart);
    free(r->d2h);
    free(r->gath);
  }
  ct_stage_free(ar);
  if (ar->queue) clReleaseCommandQueue(ar->queue);
  free(ar);
}

// The largest window that is gathered: (small_bytes / 4 / (N-1)) floats, within max_count.
static size_t small_max(const ct_allreduce *ar) {
  int N = ar->comm->size;
  if (N < 2) return 0;
  size_t n = ar->algo.small_bytes / sizeof(float) / (size_t)(N - 1);
  if (n > ar->max_count) n = ar->max_count;
  return n > INT_MAX ? INT_MAX : n;
}

ct_status ct_allreduce_set_algo(ct_allreduce *ar, const ct_allreduce_algo *a) {
  for (int k = 0; k < CT_ALLREDUCE_INFLIGHT; k++)
    if (ar->req[k].busy)
      return CT_FAIL(CT_ERR_INTERNAL, "ct_allreduce_set_algo with a request in flight");
  ar->algo.small_bytes = a->small_bytes;
  size_t n = small_max(ar), N = (size_t)ar->comm->size;
  for (int k = 0; k < CT_ALLREDUCE_INFLIGHT && N > 1; k++) {
    free(ar->res[k].gath);
    ar->res[k].gath = NULL;
    if (n && !(ar->res[k].gath = malloc(N * n * sizeof(float))))
      return CT_FAIL(CT_ERR_NOMEM, "out of host memory (all-reduce gather of %zu floats)", N * n);
  }
  return CT_OK;
}

void ct_allreduce_get_algo(const ct_allreduce *ar, ct_allreduce_algo *a) { *a = ar->algo; }

ct_status ct_allreduce_agree(ct_allreduce *ar, size_t count) {
  CT_TRY(ct_comm_check_same_u64(ar->comm, (uint64_t)count, "all-reduce count"));
  // the path of a window follows these: every rank must take the same one
  CT_TRY(ct_comm_check_same_u64(ar->comm, (uint64_t)ar->algo.small_bytes,
                                "all-reduce gather size (CLTRAIN_ALLREDUCE_SMALL)"));
  CT_TRY(ct_comm_check_same_u64(ar->comm, (uint64_t)ar->chunk,
                                "all-reduce chunk floats (CLTRAIN_ALLREDUCE_CHUNK)"));
  if (count > ar->max_count)
    return CT_FAIL(CT_ERR_INTERNAL, "all-reduce of %zu floats exceeds the staging for %zu", count,
                   ar->max_count);
  return ar->comm->size > 1 ? check_tags(ar->comm) : CT_OK;
}

static ct_status check_range(cl_mem buf, size_t offset, size_t count) {
  size_t mem_size = 0;
  CL_CHECK(clGetMemObjectInfo(buf, CL_MEM_SIZE, sizeof mem_size, &mem_size, NULL));
  if ((offset + count) * sizeof(float) > mem_size)
    return CT_FAIL(CT_ERR_INTERNAL,
                   "all-reduce range [%zu, %zu) floats is outside the buffer of %zu bytes", offset,
                   offset + count, mem_size);
  return CT_OK;
}

static ct_status check_call(ct_allreduce *ar, size_t count, const ct_ring_opts *o) {
  size_t total = o && o->total ? o->total : count, base = o ? o->base : 0;
  if (count > ar->max_count || base + count > total || total > ar->max_count)
    return CT_FAIL(CT_ERR_INTERNAL,
                   "all-reduce of [%zu, %zu) of %zu floats exceeds the staging for %zu", base,
                   base + count, total, ar->max_count);
  int part = o ? o->part : 0;
  if (part != 0 && part != CT_RING_REDUCE_SCATTER && part != CT_RING_ALL_GATHER)
    return CT_FAIL(CT_ERR_INTERNAL, "all-reduce part %d is none of 0, reduce-scatter, all-gather",
                   part);
  if (part && !ar->zero_copy && !ar->host_only && ar->comm->size > 1)
    return CT_FAIL(CT_ERR_INTERNAL, "the reduce-scatter or all-gather alone runs on host arrays "
                   "or mapped device memory only");
  if (part == CT_RING_ALL_GATHER && o->nonfinite)
    return CT_FAIL(CT_ERR_INTERNAL, "the all-gather alone takes no non-finite test");
  return CT_OK;
}

// The wire format of a window (one format per request): the layout's elements below wire_n go
// in o->wire, the rest in fp32.
static ct_status window_wire(const ct_ring_opts *o, size_t base, size_t count, ct_wire *w) {
  *w = CT_WIRE_FP32;
  if (!o || o->wire == CT_WIRE_FP32 || count == 0 || base >= o->wire_n) return CT_OK;
  if (base + count > o->wire_n)
    return CT_FAIL(CT_ERR_INTERNAL, "all-reduce window [%zu, %zu) crosses the end of the wire "
                   "format's part (%zu): start one request per part", base, base + count,
                   o->wire_n);
  *w = o->wire;
  return CT_OK;
}

// The message size of a window. A window whose segments are unbalanced (a bucket within one or
// two segments of the layout) is carried by one link direction at a time: at N = 2 its part of
// segment s goes from rank s to s+1 and comes back finished, and without chunks to pipeline
// that is twice the time of the same bytes in both directions at once (a 1.6 MB bucket of the
// mlp took 26-29 ms at 1 Gbit/s, the whole 2.7 MB 21 ms). Its largest part is cut into
// CT_RING_WINDOW_CHUNKS chunks (at least 64 KiB each, at most the transport's chunk), so the
// finished chunks flow back while the rest still flows forward. Balanced windows (the whole
// layout) keep the transport's chunk. The same on every rank (the window's geometry), and
// chunking never changes the bits.
static size_t window_chunk(const ct_ring *g, size_t chunk) {
  size_t mx = 0, sum = 0;
  for (int s = 0; s < g->size; s++) {
    size_t len = ct_ring_seg_len(g, s);
    sum += len;
    if (len > mx) mx = len;
  }
  if (mx == 0 || 2 * mx * (size_t)g->size <= 3 * sum) return chunk;   // largest <= 1.5 x mean
  size_t c = (mx + CT_RING_WINDOW_CHUNKS - 1) / CT_RING_WINDOW_CHUNKS;
  if (c < CT_RING_WINDOW_CHUNK_MIN) c = CT_RING_WINDOW_CHUNK_MIN;
  return c < chunk ? c : chunk;
}

// ---- a request ---------------------------------------------------------------------------------

// Claims the next slot for a window of count floats (o: its place in the layout and its format)
// and sets up its ring on the slot's resources. *out NULL on a failure.
static ct_status req_claim(ct_allreduce *ar, cl_mem buf, size_t offset, size_t count,
                           const ct_ring_opts *o, ct_allreduce_req **out) {
  *out = NULL;
  double t0 = ct_now();
  if (buf) CT_TRY(check_range(buf, offset, count));
  CT_TRY(check_call(ar, count, o));
  size_t base = o ? o->base : 0, total = o && o->total ? o->total : base + count;
  ct_wire wire;
  CT_TRY(window_wire(o, base, count, &wire));
  if (o && o->part == CT_RING_ALL_GATHER && wire != CT_WIRE_FP32)
    return CT_FAIL(CT_ERR_INTERNAL, "the all-gather alone moves fp32 values (the window is in %s)",
                   ct_wire_name(wire));
  // The slot (and so the tags) follows the order of the starts, which every rank shares: the
  // first free slot would depend on which requests a rank happened to finish first.
  ct_allreduce_req *q = &ar->req[ar->seq % CT_ALLREDUCE_INFLIGHT];
  if (q->busy)
    return CT_FAIL(CT_ERR_INTERNAL, "more than %d all-reduce requests in flight (wait for the "
                   "oldest first)", CT_ALLREDUCE_INFLIGHT);
  ar->seq++;
  ct_ring_res *r = &ar->res[q->slot];
  ct_comm *comm = ar->comm;
  q->busy = 1, q->phase = 1, q->t0 = t0, q->buf = buf, q->dev_off = offset;
  q->staged = 0, q->mapped = NULL;
  q->g = (ct_ring){.comm = comm->comm, .rank = comm->rank, .size = comm->size, .count = count,
                   .chunk = ar->chunk, .base = base, .total = total, .wire = wire,
                   .idle = o ? o->idle : 0, .part = o ? o->part : 0,
                   .nf = {.out = o ? o->nonfinite : NULL, .end = o ? o->nonfinite_n : 0},
                   .slots = r->slots, .slot_stride = r->slot_stride, .rreq = r->rreq,
                   .sreq = r->sreq, .rstart = r->rstart,
                   .stage = {.buf = buf, .offset = offset, .d2h = r->d2h, .maxch = ar->maxch},
                   .tag0 = q->slot * (comm->size > 1 ? 2 * comm->size - 2 : 1)};
  ct_ring *g = &q->g;
  if (g->total == g->count && g->base == 0) g->total = 0;
  if (ct_allreduce_algo_small(&ar->algo, count, comm->size) && count <= small_max(ar) && r->gath)
    g->small = 1, g->gath = r->gath;
  else if (comm->size > 1)
    g->chunk = window_chunk(g, ar->chunk);
  *out = q;
  return CT_OK;
}

// Nothing to reduce (one rank, or an empty window): a host array is its own sum (its
// non-finite test still counts).
static ct_status req_trivial(ct_allreduce_req *q, float *host) {
  ct_ring *g = &q->g;
  if (g->nf.out && g->count && !host) {
    q->busy = 0;
    return CT_FAIL(CT_ERR_INTERNAL, "the all-reduce's non-finite test on one rank needs a host "
                   "array");
  }
  if (host && g->count) {
    g->data = host;
    ct_ring_nf_tally(g);
  }
  q->phase = 2;
  return CT_OK;
}

// The ring's schedule for the window, and its send images for a wire format.
static ct_status req_layout(ct_allreduce_req *q) {
  ct_allreduce *ar = q->ar;
  ct_ring *g = &q->g;
  ct_ring_res *r = &ar->res[q->slot];
  size_t items = ct_ring_layout(g), n0 = ct_ring_seg_chunks(g, g->rank);
  if (items > ar->items_max || n0 > ar->maxch)
    return CT_FAIL(CT_ERR_INTERNAL, "all-reduce window of %zu floats needs %zu ring items (%zu)",
                   g->count, items, ar->items_max);
  if (g->wire != CT_WIRE_FP32 && !r->sbuf) {
    size_t stride = ct_ring_pad_stride(ar->chunk * 2);
    void *p = NULL;
    if (posix_memalign(&p, 4096, (ar->maxch + ar->items_max) * stride) != 0)
      return CT_FAIL(CT_ERR_NOMEM, "out of host memory (wire send images)");
    r->sbuf = p;
    r->sbuf_stride = stride;
  }
  g->sbuf = r->sbuf, g->sbuf_stride = r->sbuf_stride;
  return CT_OK;
}

// A device window: once its producers are done (`after`, or everything on the device's queue
// so far), mapped where the device shares host memory, else read into staging.
static ct_status req_device(ct_allreduce_req *q, cl_event after) {
  ct_allreduce *ar = q->ar;
  ct_ring *g = &q->g;
  ct_status st = CT_OK;
  cl_int err;
  cl_event wait = NULL;
  if (after) {
    CL_GOTO(clRetainEvent(after), st, fail);
    wait = after;
  } else {
    CL_GOTO(clEnqueueMarkerWithWaitList(ar->dev->queue, 0, NULL, &wait), st, fail);
    CL_GOTO(clFlush(ar->dev->queue), st, fail);
  }
  if (ar->zero_copy) {
    // The device's memory is the host's: map the window (once the producers are done) and run
    // the ring on it in place. No copies.
    q->mapped = clEnqueueMapBuffer(ar->queue, q->buf, CL_FALSE, CL_MAP_READ | CL_MAP_WRITE,
                                   q->dev_off * sizeof(float), g->count * sizeof(float), 1,
                                   &wait, &q->map_ev, &err);
    ct_ring_release(&wait);
    if (err != CL_SUCCESS) {
      q->mapped = NULL;
      st = CT_FAIL(CT_ERR_CL, "clEnqueueMapBuffer(all-reduce window, %zu floats) failed: %s",
                   g->count, ct_cl_errname(err));
      goto fail;
    }
    CL_GOTO(clFlush(ar->queue), st, fail);
    g->data = q->mapped;
    q->phase = 0;
    return CT_OK;
  }
  // Staged: the window's image at its place in the staging array.
  q->staged = 1;
  g->stage.queue = ar->queue;
  g->data = ar->staging + g->base;
  g->stage.whole = g->count <= ar->chunk || g->small;   // (a gathered window: one read)
  st = ct_stage_reads(ar, g, &wait);
  ct_ring_release(&wait);
  if (st == CT_OK) return CT_OK;
fail:
  ct_ring_release(&wait);
  if (ar->queue) clFinish(ar->queue);
  if (q->mapped) {
    if (clEnqueueUnmapMemObject(ar->queue, q->buf, q->mapped, 0, NULL, NULL) == CL_SUCCESS)
      clFinish(ar->queue);
    q->mapped = NULL;
  }
  ct_ring_release(&q->map_ev);
  ct_ring_res *r = &ar->res[q->slot];
  for (size_t i = 0; i < (size_t)ar->comm->size * ar->maxch; i++) ct_ring_release(&r->d2h[i]);
  return st;
}

// Starts a request on the device buffer buf (host == NULL) or on the caller's host image `host`
// of the window (a host array, or device memory the caller mapped).
static ct_status req_start(ct_allreduce *ar, cl_mem buf, float *host, size_t offset,
                           size_t count, cl_event after, const ct_ring_opts *o,
                           ct_allreduce_req **out) {
  ct_allreduce_req *q;
  *out = NULL;
  CT_TRY(req_claim(ar, buf, offset, count, o, &q));
  q->external = host != NULL;
  ct_status st;
  if (ar->comm->size < 2 || count == 0) {
    st = req_trivial(q, host);
  } else if ((st = req_layout(q)) == CT_OK && host) {   // the caller's image
    q->g.data = host;
  } else if (st == CT_OK) {
    st = req_device(q, after);
  }
  if (st != CT_OK) q->busy = 0;
  else *out = q;
  return st;
}

// The ring is done: the results go back (unmap, or the last writes), with `finished` after them.
static ct_status req_finish(ct_allreduce_req *q) {
  ct_allreduce *ar = q->ar;
  ct_ring *g = &q->g;
  ct_ring_nf_tally(g);   // (before the unmap: the mapped window is the data)
  double t0 = ct_now();
  if (q->mapped) {
    CL_CHECK(clEnqueueUnmapMemObject(ar->queue, q->buf, q->mapped, 0, NULL, &q->finished));
    q->mapped = NULL;
    CL_CHECK(clFlush(ar->queue));
  } else if (q->staged) {
    if (g->stage.whole) {
      g->stage.whole = 0;
      CT_TRY(ct_stage_write_back(g, g->data, g->count));
    }
    CL_CHECK(clEnqueueMarkerWithWaitList(ar->queue, 0, NULL, &q->finished));
    CL_CHECK(clFlush(ar->queue));
  }
  g->st.h2d_s += ct_now() - t0;
  q->phase = 2;
  return CT_OK;
}

// Moves the request on: the map, then the ring, without waiting (block: to the end).
static ct_status req_advance(ct_allreduce_req *q, int block) {
  ct_ring *g = &q->g;
  if (q->phase == 0) {
    cl_int stat = CL_QUEUED, err;
    if (block) {
      double t0 = ct_now();
      err = clWaitForEvents(1, &q->map_ev);
      g->st.d2h_s += ct_now() - t0;
      stat = CL_COMPLETE;
    } else {
      err = clGetEventInfo(q->map_ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof stat, &stat, NULL);
      if (err == CL_SUCCESS && stat < 0) err = stat;
    }
    if (err != CL_SUCCESS)
      return CT_FAIL(CT_ERR_CL, "mapping the all-reduce window failed: %s", ct_cl_errname(err));
    if (stat != CL_COMPLETE) return CT_OK;
    ct_ring_release(&q->map_ev);
    q->phase = 1;
  }
  if (q->phase == 1) {
    int done = 0;
    CT_TRY(ct_ring_advance(g, block, &done));
    if (done) CT_TRY(req_finish(q));
  }
  return CT_OK;
}

ct_status ct_allreduce_start(ct_allreduce *ar, cl_mem buf, size_t offset, size_t count,
                             cl_event after, const ct_ring_opts *o, ct_allreduce_req **req) {
  CT_TRY(req_start(ar, buf, NULL, offset, count, after, o, req));
  return ct_allreduce_test(*req, NULL);
}

ct_status ct_allreduce_test(ct_allreduce_req *q, int *done) {
  ct_status st = q->phase < 2 ? req_advance(q, 0) : CT_OK;
  if (done) *done = st == CT_OK && q->phase == 2;
  return st;
}

ct_status ct_allreduce_wait(ct_allreduce_req *q, ct_allreduce_stats *stats, cl_event *finished) {
  ct_allreduce *ar = q->ar;
  ct_status st = q->phase < 2 ? req_advance(q, 1) : CT_OK;
  if (st == CT_OK && q->finished) {
    if (finished) {
      *finished = q->finished;   // the caller's now
      q->finished = NULL;
    } else {
      double t0 = ct_now();
      cl_int err = clWaitForEvents(1, &q->finished);
      q->g.st.h2d_s += ct_now() - t0;
      if (err != CL_SUCCESS)
        st = CT_FAIL(CT_ERR_CL, "all-reduce write-back failed: %s", ct_cl_errname(err));
    }
  } else if (finished) {
    *finished = NULL;
  }
  if (st != CT_OK && ar->queue) {   // failed: reads, writes and maps settle before the slot is
    clFinish(ar->queue);            // free again
    if (q->mapped && clEnqueueUnmapMemObject(ar->queue, q->buf, q->mapped, 0, NULL, NULL) ==
                         CL_SUCCESS)
      clFinish(ar->queue);
    q->mapped = NULL;
  }
  ct_ring_release(&q->map_ev);
  ct_ring_release(&q->finished);
  ct_ring_res *r = &ar->res[q->slot];
  if (r->d2h)
    for (size_t i = 0; i < (size_t)ar->comm->size * ar->maxch; i++) ct_ring_release(&r->d2h[i]);
  if (st == CT_OK) stats_add(stats, &q->g.st, q->t0);
  q->busy = 0;
  return st;
}

// A blocking call: one request per part of the range (the wire format's part, the rest).
static ct_status run_blocking(ct_allreduce *ar, cl_mem buf, float *host, size_t offset,
                              size_t count, cl_event after, const ct_ring_opts *o,
                              ct_allreduce_stats *stats) {
  ct_ring_opts none = {0};
  if (!o) o = &none;
  size_t base = o->base, end = base + count;
  size_t cut = o->wire == CT_WIRE_FP32 || o->wire_n <= base ? base
               : o->wire_n >= end                           ? end
                                                            : o->wire_n;
  size_t lens[2] = {cut - base, end - cut}, at = 0;
  ct_allreduce_stats sum = {0};
  double t0 = ct_now();
  for (int k = 0; k < 2; k++) {
    if (lens[k] == 0 && !(k == 1 && lens[0] == 0)) continue;   // (an empty range: one request)
    ct_ring_opts ok = *o;
    ok.base = base + at;
    if (ok.total == 0) ok.total = end;
    ct_allreduce_req *q;
    CT_TRY(req_start(ar, host ? NULL : buf, host ? host + at : NULL, offset + at, lens[k],
                     after, &ok, &q));
    if (q) CT_TRY(ct_allreduce_wait(q, &sum, NULL));
    at += lens[k];
  }
  sum.calls = 0, sum.total_s = 0;
  stats_add(stats, &sum, t0);
  return CT_OK;
}

ct_status ct_allreduce_mapped(ct_allreduce *ar, float *p, size_t count, const ct_ring_opts *o,
                              ct_allreduce_stats *stats) {
  if (!ar->zero_copy && !ar->host_only && ar->comm->size > 1)
    return CT_FAIL(CT_ERR_INTERNAL, "ct_allreduce_mapped on a device without shared host memory");
  return run_blocking(ar, NULL, p, 0, count, NULL, o, stats);
}

ct_status ct_allreduce_device(ct_allreduce *ar, cl_mem buf, size_t offset, size_t count,
                              ct_allreduce_stats *stats) {
  // a local argument error still takes part in the count check, with a count no rank can
  // have, so that the other ranks fail with CT_ERR_MISMATCH instead of waiting for us
  ct_status bad = check_range(buf, offset, count);
  if (bad == CT_OK) bad = check_call(ar, count, NULL);
  ct_status st = ct_comm_check_same_u64(ar->comm, bad ? UINT64_MAX : (uint64_t)count,
                                        "all-reduce count (18446744073709551615: bad arguments)");
  if (bad != CT_OK) return bad;
  CT_TRY(st);
  if (ar->comm->size > 1) CT_TRY(check_tags(ar->comm));
  return run_blocking(ar, buf, NULL, offset, count, NULL, NULL, stats);
}

ct_status ct_allreduce_device_after(ct_allreduce *ar, cl_mem buf, size_t offset, size_t count,
                                    cl_event after, const ct_ring_opts *o,
                                    ct_allreduce_stats *stats) {
  return run_blocking(ar, buf, NULL, offset, count, after, o, stats);
}
