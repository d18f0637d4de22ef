// comm.c: the MPI world (see comm.h): initialization with MPI_ERRORS_RETURN, local rank,
// agreement checks and the small collectives the trainer uses for metrics.
#include "cltrain/comm.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ct_status ct_mpi_error(int err, const char *call, const char *file, int line) {
  char text[MPI_MAX_ERROR_STRING + 1];
  int len = 0;
  if (MPI_Error_string(err, text, &len) != MPI_SUCCESS) len = 0;
  text[len] = 0;
  if (!len) snprintf(text, sizeof text, "MPI error %d", err);
  int rank = -1, init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (init && !fin) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return ct_error_set(CT_ERR_MPI, file, line, "%s failed on rank %d: %s", call, rank, text);
}

static int comm_valid(const ct_comm *comm) {
  return comm->comm != MPI_COMM_NULL && comm->comm != (MPI_Comm)0;
}

ct_status ct_comm_init(int *argc, char ***argv, ct_comm *comm) {
  memset(comm, 0, sizeof *comm);
  comm->comm = MPI_COMM_NULL;
  int init = 0;
  MPI_CHECK(MPI_Initialized(&init));
  if (!init) {
    int provided = 0;
    MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
    comm->owns_mpi = 1;
    // Our own world: let errors in calls on it return too (the duplicate below inherits it).
    MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  }
  MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm->comm));
  MPI_CHECK(MPI_Comm_set_errhandler(comm->comm, MPI_ERRORS_RETURN));
  MPI_CHECK(MPI_Comm_rank(comm->comm, &comm->rank));
  MPI_CHECK(MPI_Comm_size(comm->comm, &comm->size));
  MPI_Comm node = MPI_COMM_NULL;
  MPI_CHECK(MPI_Comm_split_type(comm->comm, MPI_COMM_TYPE_SHARED, comm->rank, MPI_INFO_NULL,
                                &node));
  ct_status st = CT_OK;
  MPI_Comm leaders = MPI_COMM_NULL;
  MPI_GOTO(MPI_Comm_rank(node, &comm->local_rank), st, out);
  MPI_GOTO(MPI_Comm_size(node, &comm->local_size), st, out);
  // The node's number: its first rank's place among the nodes' first ranks (ordered by rank),
  // told to the rest of the node.
  int nn[2] = {0, 1};   // node, nodes
  MPI_GOTO(MPI_Comm_split(comm->comm, comm->local_rank == 0 ? 0 : MPI_UNDEFINED, comm->rank,
                          &leaders), st, out);
  if (leaders != MPI_COMM_NULL) {
    MPI_GOTO(MPI_Comm_rank(leaders, &nn[0]), st, out);
    MPI_GOTO(MPI_Comm_size(leaders, &nn[1]), st, out);
  }
  MPI_GOTO(MPI_Bcast(nn, 2, MPI_INT, 0, node), st, out);
  comm->node = nn[0], comm->nodes = nn[1];
out:
  if (leaders != MPI_COMM_NULL) MPI_Comm_free(&leaders);
  MPI_Comm_free(&node);
  return st;
}

void ct_comm_free(ct_comm *comm) {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (init && !fin) {
    if (comm_valid(comm)) MPI_Comm_free(&comm->comm);
    if (comm->owns_mpi) MPI_Finalize();
  }
  memset(comm, 0, sizeof *comm);
  comm->comm = MPI_COMM_NULL;
}

void ct_comm_abort(ct_comm *comm, int code) {
  MPI_Abort(comm && comm_valid(comm) ? comm->comm : MPI_COMM_WORLD, code);
}

// ---- agreement ------------------------------------------------------------------------------

ct_status ct_comm_check_same_u64(ct_comm *comm, uint64_t value, const char *what) {
  if (!what) what = "value";
  // One small all-reduce decides: max(v) and max(~v) = ~min(v) agree with v on every rank iff
  // all values are equal. Every rank gets the same answer, so all take the same branch.
  uint64_t mm[2] = {value, ~value};
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, mm, 2, MPI_UINT64_T, MPI_MAX, comm->comm));
  if (mm[0] == ~mm[1]) return CT_OK;
  // They differ: gather every value so the message can name the ranks.
  uint64_t *all = malloc((size_t)comm->size * sizeof *all);
  if (!all) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  int err = MPI_Allgather(&value, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, comm->comm);
  if (err != MPI_SUCCESS) {
    free(all);
    return ct_mpi_error(err, "MPI_Allgather", __FILE__, __LINE__);
  }
  char list[640];
  size_t len = 0;
  int ndiff = 0, shown = 0;
  for (int r = 1; r < comm->size; r++) {
    if (all[r] == all[0]) continue;
    ndiff++;
    if (shown < 6 && len < sizeof list) {
      int n = snprintf(list + len, sizeof list - len, ", rank %d has %llu", r,
                       (unsigned long long)all[r]);
      if (n > 0) len += (size_t)n;
      shown++;
    }
  }
  if (len >= sizeof list) len = sizeof list - 1;
  list[len] = 0;
  ct_status st = CT_FAIL(CT_ERR_MISMATCH,
                         "%s differs across ranks: rank 0 has %llu%s%s (%d of %d ranks differ "
                         "from rank 0; this is rank %d with %llu)",
                         what, (unsigned long long)all[0], list, ndiff > shown ? ", ..." : "",
                         ndiff, comm->size, comm->rank, (unsigned long long)value);
  free(all);
  return st;
}

// ---- small collectives ----------------------------------------------------------------------

ct_status ct_comm_bcast(ct_comm *comm, void *buf, size_t bytes, int root) {
  if (root < 0 || root >= comm->size)
    return CT_FAIL(CT_ERR_INTERNAL, "broadcast root %d outside 0..%d", root, comm->size - 1);
  char *p = buf;
  const size_t piece = (size_t)1 << 30;
  while (bytes > 0) {
    size_t n = bytes < piece ? bytes : piece;
    MPI_CHECK(MPI_Bcast(p, (int)n, MPI_BYTE, root, comm->comm));
    p += n;
    bytes -= n;
  }
  return CT_OK;
}

ct_status ct_comm_allreduce_double_sum(ct_comm *comm, double *values, int n) {
  if (n <= 0) return CT_OK;
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, values, n, MPI_DOUBLE, MPI_SUM, comm->comm));
  return CT_OK;
}

ct_status ct_comm_allreduce_double_max(ct_comm *comm, double *values, int n) {
  if (n <= 0) return CT_OK;
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, values, n, MPI_DOUBLE, MPI_MAX, comm->comm));
  return CT_OK;
}

ct_status ct_comm_allreduce_int_max(ct_comm *comm, int *values, int n) {
  if (n <= 0) return CT_OK;
  MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, values, n, MPI_INT, MPI_MAX, comm->comm));
  return CT_OK;
}

ct_status ct_comm_gather_double(ct_comm *comm, const double *mine, int n, double *all) {
  if (n <= 0) return CT_OK;
  MPI_CHECK(MPI_Allgather(mine, n, MPI_DOUBLE, all, n, MPI_DOUBLE, comm->comm));
  return CT_OK;
}

ct_status ct_comm_barrier(ct_comm *comm) {
  MPI_CHECK(MPI_Barrier(comm->comm));
  return CT_OK;
}
