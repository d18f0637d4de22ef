// trace.c: Chrome trace events. See trace.h.
#include "cltrain/trace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/checkpoint.h"
#include "cltrain/metrics.h"

ct_status ct_trace_init(ct_trace *t, long first, long last) {
  memset(t, 0, sizeof *t);
  t->on = 1, t->first = first, t->last = last, t->max_events = 200000;
  return CT_OK;
}

void ct_trace_span(ct_trace *t, int tid, const char *name, double t0, double t1) {
  ct_trace_span_step(t, tid, name, t0, t1, t->step);
}

void ct_trace_span_step(ct_trace *t, int tid, const char *name, double t0, double t1, long step) {
  if (!t->on || step < t->first || step >= t->last) return;
  if (t->n == t->max_events) {
    t->dropped++;
    return;
  }
  if (t->n == t->cap) {
    size_t cap = t->cap ? 2 * t->cap : 1024;
    ct_trace_event *p = realloc(t->ev, cap * sizeof *p);
    if (!p) {
      t->dropped++;
      return;
    }
    t->ev = p, t->cap = cap;
  }
  ct_trace_event *e = &t->ev[t->n++];
  e->ts = t0, e->dur = t1 > t0 ? t1 - t0 : 0, e->step = step, e->tid = tid;
  snprintf(e->name, sizeof e->name, "%s", name);
}

// This rank's events as JSON objects, comma-separated (times relative to t_origin).
static char *rank_json(const ct_trace *t, int rank, const char *label, double t_origin,
                       size_t *len) {
  ct_json j = {0};
  char buf[512], esc[300];
  ct_json_escape(label, esc, sizeof esc);
  snprintf(buf, sizeof buf,
           "{\"ph\":\"M\",\"pid\":%d,\"name\":\"process_name\",\"args\":{\"name\":%s}}", rank, esc);
  ct_json_raw(&j, NULL, buf);
  snprintf(buf, sizeof buf,
           "{\"ph\":\"M\",\"pid\":%d,\"name\":\"process_sort_index\",\"args\":{\"sort_index\":%d}}",
           rank, rank);
  ct_json_raw(&j, NULL, buf);
  static const char *const tracks[3] = {"host phases", "all-reduce windows",
                                        "device commands (OpenCL events)"};
  int has_device = 0;
  for (size_t i = 0; i < t->n; i++) has_device |= t->ev[i].tid == CT_TRACE_DEVICE;
  for (int k = 0; k < 2 + has_device; k++) {
    snprintf(buf, sizeof buf,
             "{\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"name\":\"thread_name\",\"args\":{\"name\":\"%s\"}}",
             rank, k, tracks[k]);
    ct_json_raw(&j, NULL, buf);
  }
  for (size_t i = 0; i < t->n; i++) {
    const ct_trace_event *e = &t->ev[i];
    ct_json_escape(e->name, esc, sizeof esc);
    snprintf(buf, sizeof buf,
             "{\"ph\":\"X\",\"pid\":%d,\"tid\":%d,\"name\":%s,\"ts\":%.3f,\"dur\":%.3f,"
             "\"args\":{\"step\":%ld}}",
             rank, e->tid, esc, (e->ts - t_origin) * 1e6, e->dur * 1e6, e->step);
    ct_json_raw(&j, NULL, buf);
  }
  if (j.oom) {
    free(j.buf);
    return NULL;
  }
  *len = j.len;
  return j.buf;
}

ct_status ct_trace_write(ct_trace *t, ct_comm *comm, const char *label, const char *path) {
  // the job's origin: the earliest event of any rank
  double first = t->n ? t->ev[0].ts : 1e300;
  for (size_t i = 0; i < t->n; i++)
    if (t->ev[i].ts < first) first = t->ev[i].ts;
  double neg = -first;
  CT_TRY(ct_comm_allreduce_double_max(comm, &neg, 1));
  double origin = -neg;
  if (!(origin < 1e299)) origin = 0;
  size_t len = 0;
  char *mine = rank_json(t, comm->rank, label, origin, &len);
  int bad = mine == NULL || len > (size_t)1 << 30;
  CT_TRY(ct_comm_allreduce_int_max(comm, &bad, 1));
  if (bad) {
    free(mine);
    return CT_FAIL(CT_ERR_NOMEM, "--trace: out of host memory for the events");
  }
  int n = (int)len, world = comm->size;
  int *lens = comm->rank == 0 ? calloc((size_t)world, sizeof *lens) : NULL;
  int *disp = comm->rank == 0 ? calloc((size_t)world, sizeof *disp) : NULL;
  int ok = comm->rank != 0 || (lens && disp);
  int rc = MPI_Gather(&n, 1, MPI_INT, lens, 1, MPI_INT, 0, comm->comm);
  char *all = NULL;
  size_t total = 0;
  if (comm->rank == 0 && ok && rc == MPI_SUCCESS) {
    for (int r = 0; r < world; r++) {
      disp[r] = (int)total;
      total += (size_t)lens[r];
    }
    all = malloc(total + 1);
    ok = all != NULL && total < (size_t)1 << 31;
  }
  int nok = !ok;   // every rank learns whether rank 0 could hold the events
  if (rc == MPI_SUCCESS) rc = MPI_Allreduce(MPI_IN_PLACE, &nok, 1, MPI_INT, MPI_MAX, comm->comm);
  if (rc == MPI_SUCCESS && !nok)
    rc = MPI_Gatherv(mine, n, MPI_CHAR, all, lens, disp, MPI_CHAR, 0, comm->comm);
  free(mine);
  ct_status st = CT_OK;
  if (rc != MPI_SUCCESS) st = CT_FAIL(CT_ERR_MPI, "--trace: gathering the events failed");
  if (st == CT_OK && comm->rank == 0) {
    if (!ok) {
      st = CT_FAIL(CT_ERR_NOMEM, "--trace: out of host memory (%zu bytes of events)", total);
    } else {
      // the ranks' lists, joined with commas, in one object
      ct_json doc = {0};
      for (int r = 0; r < world; r++) {
        if (!lens[r]) continue;
        char *frag = malloc((size_t)lens[r] + 1);
        if (!frag) {
          doc.oom = 1;
          break;
        }
        memcpy(frag, all + disp[r], (size_t)lens[r]);
        frag[lens[r]] = 0;
        ct_json_raw(&doc, NULL, frag);
        free(frag);
      }
      const char *head = "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[", *tail = "]}\n";
      size_t size = strlen(head) + (doc.buf ? doc.len : 0) + strlen(tail);
      char *file = doc.oom ? NULL : malloc(size + 1);
      if (!file) {
        st = CT_FAIL(CT_ERR_NOMEM, "--trace: out of host memory");
      } else {
        snprintf(file, size + 1, "%s%s%s", head, doc.buf ? doc.buf : "", tail);
        st = ct_write_file_atomic(path, file, size);
        if (st != CT_OK) st = ct_error_replace(st, __FILE__, __LINE__, "--trace: %s", ct_error_text());
      }
      free(file);
      free(doc.buf);
    }
  }
  free(all);
  free(lens);
  free(disp);
  return st;
}

void ct_trace_free(ct_trace *t) {
  free(t->ev);
  memset(t, 0, sizeof *t);
}
