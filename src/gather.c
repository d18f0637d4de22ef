// gather.c: small windows: gathered, then summed in the ring's order on every rank. See ring.h.
//
// The ring's 2(N-1) steps in sequence cost 2(N-1) message latencies, which is all a small
// window costs. Below the size ct_allreduce_algo gives, every rank sends its window to every
// other rank at once (N-1 sends and receives in flight: one latency) and computes each element
// exactly as the ring would have: segment s as ((x_s + x_s+1) + x_s+2) + ..., and with a wire
// format each partial sum rounded to it before the next addition (the ring rounds what it
// sends) and the finished one rounded too. IEEE addition is commutative, so this is the ring's
// bits, on every rank: a window may take either path (a bucket, the status words) and the
// trainer's replicas and its bucket-for-bucket equality stay bitwise. The exchange moves fp32
// inputs ((N-1) x count x 4 bytes per rank), so it is for windows where latency, not bytes,
// decides. Point-to-point, not MPI_Allgather: a request's messages carry its slot's tag, so
// requests in flight may start their exchanges in any order (collectives must be started in
// the same order on every rank, and a request starts when its data is ready, which differs).
// At hundreds of ranks the N-1 messages per rank would want a log2(N)-step gather instead.
#include "cltrain/ring.h"

#include <string.h>

#include "cltrain/timer.h"

// The ring's sums of the window from all: (N, count), rank k's window in row k. The all-gather
// alone: each segment as its owner (rank s-1) holds it.
static ct_status small_sum(const ct_ring *g, const float *all, float *out) {
  int N = g->size;
  for (int s = 0; s < N; s++) {
    size_t off = ct_ring_seg_off(g, s), len = ct_ring_seg_len(g, s);
    if (len == 0) continue;
    float *o = out + off;
    if (g->part == CT_RING_ALL_GATHER) {
      memcpy(o, all + (size_t)ct_ring_mod(s - 1, N) * g->count + off, len * sizeof(float));
      continue;
    }
    memcpy(o, all + (size_t)s * g->count + off, len * sizeof(float));
    for (int k = 1; k < N; k++) {
      if (g->wire != CT_WIRE_FP32) CT_TRY(ct_wire_round_n(g->wire, o, len));   // as rank s+k-1
                                                                               // sent it
      ct_ring_add_f32(o, all + (size_t)((s + k) % N) * g->count + off, len);
    }
    if (g->wire != CT_WIRE_FP32) CT_TRY(ct_wire_round_n(g->wire, o, len));   // finished
  }
  return CT_OK;
}

ct_status ct_gather_advance(ct_ring *g, int block, int *done) {
  const int N = g->size, r = g->rank;
  ct_status st = CT_OK;
  int ready;
  *done = 0;
  if (!g->at.started) {
    CT_TRY(ct_wire_prepare(g->wire));
    CT_TRY(ct_stage_ready(g, 0, 0, block, &ready));   // staged small windows are read whole
    if (!ready) return CT_OK;
    float *mine = g->gath + (size_t)r * g->count;   // sent from here: g->data gets the sums
    memcpy(mine, g->data, g->count * sizeof(float));
    for (int k = 0; k < N - 1; k++) g->rreq[k] = g->sreq[k] = MPI_REQUEST_NULL;
    g->at.started = 1;
    double t0 = ct_now();
    for (int k = 1; k < N; k++) {   // receives first, then sends, nearest neighbours first
      int from = (r - k + N) % N;
      MPI_GOTO(MPI_Irecv(g->gath + (size_t)from * g->count, (int)g->count, MPI_FLOAT, from,
                         g->tag0, g->comm, &g->rreq[k - 1]), st, fail);
    }
    for (int k = 1; k < N; k++)
      MPI_GOTO(MPI_Isend(mine, (int)g->count, MPI_FLOAT, (r + k) % N, g->tag0, g->comm,
                         &g->sreq[k - 1]), st, fail);
    g->st.mpi_s += ct_now() - t0;
    g->st.bytes_sent += (size_t)(N - 1) * g->count * sizeof(float);
  }
  CT_GOTO(ct_ring_mpi_ready_n(g, N - 1, g->rreq, block, &ready,
                              "MPI_Testall(exchange receives)"), st, fail);
  if (!ready) return CT_OK;
  CT_GOTO(ct_ring_mpi_ready_n(g, N - 1, g->sreq, block, &ready, "MPI_Testall(exchange sends)"),
          st, fail);
  if (!ready) return CT_OK;
  double t0 = ct_now();
  CT_TRY(small_sum(g, g->gath, g->data));
  g->st.reduce_s += ct_now() - t0;
  CT_TRY(ct_stage_write_back(g, g->data, g->count));
  *done = 1;
  return CT_OK;
fail:
  ct_ring_abandon(g, (size_t)N - 1, (size_t)N - 1);
  return st;
}
