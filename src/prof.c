// prof.c: --profile: OpenCL event times folded into rows by command name (see prof.h).
#include "cltrain/prof.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
  char name[80];
  ct_prof_kind kind;
  double flops;
  long tag;
  cl_event begin;   // span: the marker before it; NULL for a single command
  cl_event ev;      // the command (span: its last command); NULL if the enqueue failed
} pending;

struct ct_prof {
  pending *pend;
  int npend, cappend;
  ct_prof_row *rows;
  int nrows, caprows;
  long tag;
  ct_prof_sink sink;
  void *sink_ctx;
};

void ct_prof_set_sink(ct_device *dev, ct_prof_sink sink, void *ctx) {
  if (!dev->prof) return;
  dev->prof->sink = sink;
  dev->prof->sink_ctx = ctx;
}

void ct_prof_set_tag(ct_device *dev, long tag) {
  if (dev->prof) dev->prof->tag = tag;
}

ct_status ct_prof_init(ct_device *dev) {
  if (dev->prof) return CT_OK;
  dev->prof = calloc(1, sizeof *dev->prof);
  if (!dev->prof) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  return CT_OK;
}

static void release_pending(pending *p) {
  if (p->begin) clReleaseEvent(p->begin);
  if (p->ev) clReleaseEvent(p->ev);
  p->begin = p->ev = NULL;
}

void ct_prof_free(ct_device *dev) {
  struct ct_prof *p = dev->prof;
  if (!p) return;
  for (int i = 0; i < p->npend; i++) release_pending(&p->pend[i]);
  free(p->pend);
  free(p->rows);
  free(p);
  dev->prof = NULL;
}

static pending *push(struct ct_prof *p, const char *name, double flops, ct_prof_kind kind) {
  if (p->npend == p->cappend) {
    int cap = p->cappend ? 2 * p->cappend : 256;
    pending *q = realloc(p->pend, (size_t)cap * sizeof *q);
    if (!q) return NULL;
    p->pend = q;
    p->cappend = cap;
  }
  pending *e = &p->pend[p->npend++];
  memset(e, 0, sizeof *e);
  strncpy(e->name, name, sizeof e->name - 1);
  e->kind = kind;
  e->flops = flops;
  e->tag = p->tag;
  return e;
}

cl_event *ct_prof_event(ct_device *dev, const char *name, double flops, ct_prof_kind kind) {
  if (!dev->prof) return NULL;
  pending *e = push(dev->prof, name, flops, kind);
  return e ? &e->ev : NULL;   // out of memory: that command goes unprofiled
}

ct_status ct_prof_span(ct_device *dev, const char *name, double flops, ct_prof_kind kind,
                       cl_event **ev) {
  *ev = NULL;
  if (!dev->prof) return CT_OK;
  pending *e = push(dev->prof, name, flops, kind);
  if (!e) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  CL_CHECK(clEnqueueMarkerWithWaitList(dev->queue, 0, NULL, &e->begin));
  *ev = &e->ev;
  return CT_OK;
}

static ct_prof_row *row_for(struct ct_prof *p, const char *name, ct_prof_kind kind) {
  for (int i = 0; i < p->nrows; i++)
    if (p->rows[i].kind == kind && !strcmp(p->rows[i].name, name)) return &p->rows[i];
  if (p->nrows == p->caprows) {
    int cap = p->caprows ? 2 * p->caprows : 32;
    ct_prof_row *q = realloc(p->rows, (size_t)cap * sizeof *q);
    if (!q) return NULL;
    p->rows = q;
    p->caprows = cap;
  }
  ct_prof_row *r = &p->rows[p->nrows++];
  memset(r, 0, sizeof *r);
  strncpy(r->name, name, sizeof r->name - 1);
  r->kind = kind;
  return r;
}

void ct_prof_host(ct_device *dev, const char *name, double seconds) {
  if (!dev->prof) return;
  ct_prof_row *r = row_for(dev->prof, name, CT_PROF_HOST);
  if (!r) return;
  r->calls++;
  r->seconds += seconds;
}

static ct_status event_time(cl_event ev, cl_profiling_info what, cl_ulong *t) {
  CL_CHECK(clGetEventProfilingInfo(ev, what, sizeof *t, t, NULL));
  return CT_OK;
}

ct_status ct_prof_collect(ct_device *dev, int wait) {
  struct ct_prof *p = dev->prof;
  if (!p) return CT_OK;
  int done = 0;
  ct_status st = CT_OK;
  for (; done < p->npend; done++) {
    pending *e = &p->pend[done];
    if (e->ev) {
      if (wait) {
        CL_GOTO(clWaitForEvents(1, &e->ev), st, out);
      } else {
        cl_int s;
        CL_GOTO(clGetEventInfo(e->ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof s, &s, NULL), st, out);
        if (s < 0) {
          st = CT_FAIL(CT_ERR_CL, "profiled command '%s' failed: %s", e->name, ct_cl_errname(s));
          goto out;
        }
        if (s != CL_COMPLETE) break;
      }
      cl_ulong t0 = 0, t1 = 0;
      if (e->begin) CT_GOTO(event_time(e->begin, CL_PROFILING_COMMAND_END, &t0), st, out);
      else CT_GOTO(event_time(e->ev, CL_PROFILING_COMMAND_START, &t0), st, out);
      CT_GOTO(event_time(e->ev, CL_PROFILING_COMMAND_END, &t1), st, out);
      if (p->sink) p->sink(p->sink_ctx, e->name, e->kind, e->tag, t0, t1);
      ct_prof_row *r = row_for(p, e->name, e->kind);
      if (r) {
        r->calls++;
        r->seconds += t1 > t0 ? (double)(t1 - t0) * 1e-9 : 0.0;
        r->flops += e->flops;
      }
    }
    release_pending(e);
  }
out:
  if (st != CT_OK) {   // drop what could not be measured
    for (int i = done; i < p->npend; i++) release_pending(&p->pend[i]);
    done = p->npend;
  }
  memmove(p->pend, p->pend + done, (size_t)(p->npend - done) * sizeof *p->pend);
  p->npend -= done;
  return st;
}

ct_status ct_prof_reset(ct_device *dev) {
  struct ct_prof *p = dev->prof;
  if (!p) return CT_OK;
  ct_status st = ct_prof_collect(dev, 1);
  p->nrows = 0;
  return st;
}

const ct_prof_row *ct_prof_rows(const ct_device *dev, int *n) {
  *n = dev->prof ? dev->prof->nrows : 0;
  return dev->prof ? dev->prof->rows : NULL;
}
