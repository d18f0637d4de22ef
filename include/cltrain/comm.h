// comm.h: the MPI world of cltrain: rank, size, local (per-node) rank, checked MPI calls.
//
// Defines: ct_comm (+ ct_comm_init / ct_comm_free / ct_comm_abort), the agreement check
// ct_comm_check_same_u64, small collectives on host arrays (ct_comm_bcast,
// ct_comm_allreduce_double_sum / _double_max / _int_max, ct_comm_gather_double,
// ct_comm_barrier), ct_mpi_error and the macros MPI_CHECK / MPI_GOTO.
//
// The communicator is a duplicate of MPI_COMM_WORLD with MPI_ERRORS_RETURN, so a failing MPI
// call returns to us: MPI_CHECK records "<call> failed on rank R: <MPI_Error_string>" (with
// file:line) and returns CT_ERR_MPI. Every function here except ct_mpi_error and ct_comm_abort
// is collective over comm->comm: every rank calls it, in the same order.
#ifndef CLTRAIN_COMM_H
#define CLTRAIN_COMM_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "cltrain/status.h"

typedef struct {
  MPI_Comm comm;                // a duplicate of MPI_COMM_WORLD with MPI_ERRORS_RETURN
  int rank, size;
  int local_rank, local_size;   // within the node (MPI_Comm_split_type SHARED)
  int node, nodes;              // this node's number (0 .. nodes-1, in the order of the nodes'
                                // lowest ranks) and the number of nodes in the job
  int owns_mpi;                 // 1 if ct_comm_init called MPI_Init (then ct_comm_free finalizes)
} ct_comm;

// Records "<call> failed on rank R: <MPI_Error_string(err)>" at file:line; returns CT_ERR_MPI.
ct_status ct_mpi_error(int err, const char *call, const char *file, int line);

// Evaluates an MPI call; on failure records the message and returns CT_ERR_MPI.
#define MPI_CHECK(call)                                                  \
  do {                                                                   \
    int ct_mpi_err_ = (call);                                            \
    if (ct_mpi_err_ != MPI_SUCCESS)                                      \
      return ct_mpi_error(ct_mpi_err_, #call, __FILE__, __LINE__);       \
  } while (0)

// The same, but sets `st` and jumps to a cleanup label instead of returning.
#define MPI_GOTO(call, st, label)                                        \
  do {                                                                   \
    int ct_mpi_err_ = (call);                                            \
    if (ct_mpi_err_ != MPI_SUCCESS) {                                    \
      (st) = ct_mpi_error(ct_mpi_err_, #call, __FILE__, __LINE__);       \
      goto label;                                                        \
    }                                                                    \
  } while (0)

// MPI_Init_thread (MPI_THREAD_FUNNELED) unless MPI is already initialized; duplicates
// MPI_COMM_WORLD with MPI_ERRORS_RETURN and finds the local rank. argc/argv may be NULL.
ct_status ct_comm_init(int *argc, char ***argv, ct_comm *comm);
// Frees the duplicate; MPI_Finalize if ct_comm_init initialized MPI. Safe on a zeroed struct.
void ct_comm_free(ct_comm *comm);
// MPI_Abort on the whole job (for a rank that cannot go on while others wait on it).
void ct_comm_abort(ct_comm *comm, int code);

// Every rank passes `value`; CT_ERR_MISMATCH on every rank if they differ (the message names
// `what`, the values and the ranks that hold them).
ct_status ct_comm_check_same_u64(ct_comm *comm, uint64_t value, const char *what);

// Broadcasts `bytes` bytes of buf from `root` (any size; sent in pieces below INT_MAX).
ct_status ct_comm_bcast(ct_comm *comm, void *buf, size_t bytes, int root);
// In-place reductions of small host arrays (metrics), result on every rank.
ct_status ct_comm_allreduce_double_sum(ct_comm *comm, double *values, int n);
ct_status ct_comm_allreduce_double_max(ct_comm *comm, double *values, int n);
ct_status ct_comm_allreduce_int_max(ct_comm *comm, int *values, int n);
// MPI_Allgather: all[r*n + i] = rank r's mine[i], on every rank. all: (size, n).
ct_status ct_comm_gather_double(ct_comm *comm, const double *mine, int n, double *all);
ct_status ct_comm_barrier(ct_comm *comm);

#endif
