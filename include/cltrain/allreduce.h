// allreduce.h: the ring all-reduce (SUM of floats) over MPI, with device buffers staged through
// host memory.
//
// Defines: ct_ring_opts (+ ct_ring_segment),
// ct_allreduce_algo (+ ct_allreduce_algo_default / _small / _name), ct_allreduce_stats,
// ct_allreduce (opaque) + ct_allreduce_init / _free / _agree / _set_algo / _get_algo,
// ct_allreduce_device (+ _after), ct_allreduce_start / _test / _wait (ct_allreduce_req),
// ct_allreduce_mapped, ct_allreduce_host (+ _wire),
// ct_allreduce_pinned, ct_allreduce_zero_copy, ct_allreduce_ring_bytes, ct_allreduce_sent_bytes.
// The wire formats are wire.h's; the insides (the ring's schedule, the gathered path, device
// staging) ring.h's.
//
// N ranks form a ring (rank r sends to r+1 and receives from r-1). The count is cut into N
// segments; N-1 reduce-scatter steps leave rank r with the finished segment r+1, and N-1
// all-gather steps pass the finished segments round. Each segment is cut into chunks that flow
// through the ring independently, so that device->host copies, MPI transfers, host additions
// and host->device copies of different chunks overlap. The order of the additions is fixed
// (segment s is summed as ((x_s + x_s+1) + x_s+2) + ... over ranks), so results are the same
// bits run after run and, because the all-gather copies finished segments, on every rank.
//
// One entry: a request (ct_allreduce_start) reduces a window once an event has completed (its
// producers), and the caller tests it or waits for it; the blocking forms (_device, _device_after,
// _mapped) are a request started and waited for. What the trainer writes into its range (its
// status words) it writes itself, before the request's event.
//
// Wire formats: with fp16 or bf16 the messages carry 16-bit values; every rank adds what it
// receives to its own fp32 values (sums are fp32 on each hop) and rounds only what it sends
// (round to nearest even, in integer arithmetic: the same bits on every rank). The owner of a
// finished segment rounds it in its own array too, so every rank ends with the same values.
//
// Small windows: below a size chosen by transport (ct_allreduce_algo), every rank gathers every
// rank's window (one MPI_Allgather, about log2 N latencies instead of the ring's 2(N-1)) and
// computes the ring's sums itself, in the ring's order (and its wire rounding): the same bits as
// the ring, on every rank, so the choice never changes a result.
//
// Windows (buckets): a call may reduce the window [base, base + count) of a layout of `total`
// floats. The segments are the layout's, cut to the window, so every element is summed in the
// same order whichever window reduces it: reducing a layout window by window gives the same
// bits as reducing it whole.
// Every call is collective over comm: every rank calls it with the same count. A count that
// differs is caught (CT_ERR_MISMATCH on every rank); any other failure on one rank (an MPI or
// OpenCL error mid-ring) can leave the others waiting for it: callers ct_comm_abort then.
#ifndef CLTRAIN_ALLREDUCE_H
#define CLTRAIN_ALLREDUCE_H

#include <stddef.h>
#include <stdint.h>

#include "cltrain/comm.h"
#include "cltrain/device.h"
#include "cltrain/wire.h"

// Options of one request (NULL: fp32, the range is the layout). The wire format, the window and
// idle are the collective's own. The non-finite test and the halves (part) are what a
// trainer's step asks besides the sum; they stay here because they happen inside the ring's
// passes (the test is folded into the owner's additions; a half is the ring's own steps), where
// no caller could do them without another pass over the array.
typedef struct {
  ct_wire wire;     // format of the layout's elements [0, wire_n); those from wire_n on: fp32
  size_t wire_n;
  size_t total;     // the layout the range is a window of (0: the range itself)
  size_t base;      // where the range starts in the layout
  int idle;         // nothing of this rank computes while the call waits: poll, yielding the
                    // core between tests, instead of napping 50 us (which wakes late)
  // The non-finite test, folded into the reduction (NULL: none). The layout's elements
  // [0, nonfinite_n) are tested as their sums are finished: the owner of a finished segment
  // tests its sums (after the wire format's rounding) and, when one is a NaN or an infinity,
  // writes a NaN into the segment's last tested element before it passes that element on.
  // After the ring every rank tests that one element of each segment and adds to *nonfinite
  // the number of segments that hold a non-finite sum, the same number on every rank. So the
  // caller learns whether its result holds a NaN or an infinity (the trainer's guard: such a
  // step is thrown away, which is what makes the marker harmless) without a pass of its own
  // over the array. A window of the layout tests its part (and adds its own count).
  unsigned *nonfinite;
  size_t nonfinite_n;
  // One half of the ring only (0: the whole all-reduce). CT_RING_REDUCE_SCATTER: on return
  // rank r holds the finished sums of the layout's segment r+1 (mod N) within the range (the
  // same bits the whole ring gives there, wire rounding included); the rest of the range holds
  // partial sums. A non-finite test counts that segment only. CT_RING_ALL_GATHER: each rank's
  // segment r+1 holds final values; on return every rank holds every segment as its owner
  // (rank s-1 for segment s) had it. fp32 only (wire_n 0 over the range), no non-finite test.
  // The two together move what the whole ring moves; between them the owner may change its
  // segment (a sharded optimizer step). Host arrays and devices that share host
  // memory (ct_allreduce_zero_copy) only.
  int part;
} ct_ring_opts;
#define CT_RING_REDUCE_SCATTER 1
#define CT_RING_ALL_GATHER 2
// Segment s of a layout of total floats over size ranks, [*lo, *hi): the one rank s-1 finishes
// in the reduce-scatter (the remainder of total / size goes to the first segments).
void ct_ring_segment(size_t total, int size, int s, size_t *lo, size_t *hi);

typedef struct {
  double d2h_s, h2d_s;    // time in device<->host copies (host wall time waiting on them)
  double mpi_s;           // time in MPI calls (including waiting for neighbours)
  double reduce_s;        // host time adding received chunks
  double total_s;         // wall time of the whole call
  size_t bytes_sent;      // bytes this rank sent
  long calls;
} ct_allreduce_stats;     // accumulated over calls; the caller may zero it

// ---- the algorithm by size and transport ----------------------------------------------------
//
// A window whose gather moves at most `small_bytes` per rank ((N-1) x count x 4 bytes) is
// gathered and summed by every rank; a larger one takes the ring, in messages of `chunk_bytes`.
// The transport is TCP (or whatever links the nodes) when the job spans several nodes
// (comm->nodes > 1: the ring crosses a node boundary somewhere, and the slowest link sets its
// pace), shared memory otherwise. Defaults per transport below (measured: docs/data-parallel.md,
// "The all-reduce benchmark"); CLTRAIN_ALLREDUCE_SMALL=B and CLTRAIN_ALLREDUCE_CHUNK=B (bytes, K/M
// suffixes) override them, and must then be the same on every rank (mpirun -x), which
// ct_allreduce_agree checks.
typedef struct {
  size_t small_bytes;    // gather up to this many bytes per rank (0: always the ring)
  size_t chunk_bytes;    // ring message size
  int network;           // 1: the job spans nodes (the defaults for TCP), 0: one node
} ct_allreduce_algo;
#define CT_ALLREDUCE_SMALL_SHM ((size_t)2 << 10)
#define CT_ALLREDUCE_SMALL_NET ((size_t)64 << 10)
#define CT_ALLREDUCE_CHUNK_SHM ((size_t)128 << 10)
#define CT_ALLREDUCE_CHUNK_NET ((size_t)2 << 20)
#define CT_ALLREDUCE_DEFAULT_CHUNK CT_ALLREDUCE_CHUNK_SHM
// The defaults for comm's transport, with the environment's overrides; CT_ERR_USAGE (one line
// naming the variable) for a malformed override. Not collective.
ct_status ct_allreduce_algo_default(const ct_comm *comm, ct_allreduce_algo *a);
// 1 when a window of count floats over `size` ranks is gathered, 0 when it takes the ring.
int ct_allreduce_algo_small(const ct_allreduce_algo *a, size_t count, int size);
// "gather" or "ring": the path a window of count floats takes (for printing).
const char *ct_allreduce_algo_name(const ct_allreduce_algo *a, size_t count, int size);

typedef struct ct_allreduce ct_allreduce;   // opaque: staging buffers, requests

// Staging for up to max_count floats; chunk_bytes = pipeline chunk size (0 = the transport's,
// ct_allreduce_algo_default). Pinned staging (CL_MEM_ALLOC_HOST_PTR + clEnqueueMapBuffer)
// where the device offers it, else malloc. Not collective (no MPI call). Staging copies run on
// a command queue of its own on dev->ctx; comm and dev must outlive ar. dev NULL: a handle for
// host arrays (ct_allreduce_mapped on any host array; no staging, no queue).
ct_status ct_allreduce_init(ct_comm *comm, ct_device *dev, size_t max_count, size_t chunk_bytes,
                            ct_allreduce **ar);
// The size up to which windows are gathered (a->small_bytes; a->chunk_bytes is ignored: the
// chunk is fixed at init). Call on every rank with the same value, before ct_allreduce_agree,
// with no request in flight.
ct_status ct_allreduce_set_algo(ct_allreduce *ar, const ct_allreduce_algo *a);
void ct_allreduce_get_algo(const ct_allreduce *ar, ct_allreduce_algo *a);
void ct_allreduce_free(ct_allreduce *ar);
// Collective: every rank means to reduce ranges of layouts of `count` floats, with the same
// algorithm settings (checked once here; the _after and _mapped forms then trust their counts
// and check nothing across ranks).
ct_status ct_allreduce_agree(ct_allreduce *ar, size_t count);
// 1 when the staging buffer is pinned (mapped CL_MEM_ALLOC_HOST_PTR), 0 when malloc'ed or
// when there is none (a ring of one rank stages nothing).
int ct_allreduce_pinned(const ct_allreduce *ar);
// 1 when device ranges are reduced in place, mapped, without staging copies: devices that share
// host memory (CL_DEVICE_HOST_UNIFIED_MEMORY: CPUs under PoCL or Intel's runtime), unless
// CLTRAIN_ALLREDUCE_STAGED=1 asks for the staged path.
int ct_allreduce_zero_copy(const ct_allreduce *ar);

// In-place SUM over all ranks of count floats at offset (floats) of the device buffer buf.
// Blocking: on return buf holds the sum on every rank, visible to commands enqueued on
// dev->queue afterwards. Waits for the work already enqueued on dev->queue before reading.
// Checks that all ranks pass the same count (CT_ERR_MISMATCH on every rank otherwise).
// Any N >= 1 and any count (0, < N, not divisible by N); count <= max_count. stats may be NULL.
ct_status ct_allreduce_device(ct_allreduce *ar, cl_mem buf, size_t offset, size_t count,
                              ct_allreduce_stats *stats);

// The same, with the range's producers given by an event: it waits for `after` (instead of
// everything on dev->queue) and uses only a queue of its own, so the device may compute other
// work meanwhile (--sync stale). On return the result is in buf. o: wire format and window
// (NULL: fp32, the whole range). No count check across ranks (see ct_allreduce_agree): every
// rank must pass the same count and options.
ct_status ct_allreduce_device_after(ct_allreduce *ar, cl_mem buf, size_t offset, size_t count,
                                    cl_event after, const ct_ring_opts *o,
                                    ct_allreduce_stats *stats);

// Non-blocking: start / test / wait on a window of a device buffer.
//
// ct_allreduce_start reduces [offset, offset + count) of buf (the window [o->base, o->base +
// count) of the layout o->total; one wire format: the window must lie on one side of
// o->wire_n) once `after` has completed (NULL: once everything enqueued on dev->queue so far
// has). It enqueues the map (zero-copy) or the reads (staged) on a queue of its own, posts what
// it can and returns. ct_allreduce_test moves the ring on as far as it can without waiting
// (MPI_Test, event status) and sets *done; ct_allreduce_wait finishes it, adds to stats, frees
// the request and gives the event after which buf holds the result (*finished, the caller's
// to release: make dev->queue wait for it), or with finished NULL waits for that too.
// Progress is made only inside these calls, by the calling thread (MPI stays FUNNELED: no
// progress thread competing with a CPU device's own threads for the cores). Up to
// CT_ALLREDUCE_INFLIGHT requests may be in flight at once; each has its own receive slots,
// send images and MPI tags, and staging is indexed by the window's place in the layout, so
// windows of one layout do not touch each other. Every rank starts the same windows in the same
// order (counts agreed with ct_allreduce_agree): request k takes slot k mod
// CT_ALLREDUCE_INFLIGHT (its tags), so the oldest request must be waited for before a fifth
// starts. The blocking calls are requests too.
#define CT_ALLREDUCE_INFLIGHT 4
typedef struct ct_allreduce_req ct_allreduce_req;
ct_status ct_allreduce_start(ct_allreduce *ar, cl_mem buf, size_t offset, size_t count,
                             cl_event after, const ct_ring_opts *o, ct_allreduce_req **req);
ct_status ct_allreduce_test(ct_allreduce_req *req, int *done);
ct_status ct_allreduce_wait(ct_allreduce_req *req, ct_allreduce_stats *stats,
                            cl_event *finished);

// The ring in place on count floats the caller has mapped from a device buffer (zero-copy
// devices only: ct_allreduce_zero_copy), or on any host array with a handle made without a
// device. The caller maps before and unmaps after, on whichever queue orders them right (--sync
// stale maps the pending gradients on dev->queue before the next step's kernels, so the map is
// not queued behind them on a device whose one worker thread runs every queue). Collective;
// counts and options as for ct_allreduce_device_after (p points at the range's first float).
ct_status ct_allreduce_mapped(ct_allreduce *ar, float *p, size_t count, const ct_ring_opts *o,
                              ct_allreduce_stats *stats);

// The same ring on a host array buf (count floats), no device, no handle: for tests. Checks the
// count across ranks on every call (one more collective). chunk_bytes 0 = the transport's;
// windows are gathered below ct_allreduce_algo_default's size. stats may be NULL.
ct_status ct_allreduce_host(ct_comm *comm, float *buf, size_t count, size_t chunk_bytes,
                            ct_allreduce_stats *stats);
// The same with a wire format (every rank passes the same; checked with the count).
ct_status ct_allreduce_host_wire(ct_comm *comm, float *buf, size_t count, size_t chunk_bytes,
                                 ct_wire wire, ct_allreduce_stats *stats);

// Bytes rank `rank` of `size` sends in one ring all-reduce of count floats (2(N-1)/N of the
// buffer, give or take the remainder): what stats->bytes_sent grows by per fp32 ring call.
size_t ct_allreduce_ring_bytes(size_t count, int rank, int size);
// What stats->bytes_sent grows by per call with algorithm a (NULL: the ring) and wire format w:
// the ring's bytes (halved by a 16-bit wire format), or a gather's (N-1) x count x 4.
size_t ct_allreduce_sent_bytes(const ct_allreduce_algo *a, size_t count, int rank, int size,
                               ct_wire w);

#endif
