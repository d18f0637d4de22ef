// trace.h: a timeline of where each rank spends a step, in Chrome's trace-event format
// (--trace FILE.json; load it in Perfetto, https://ui.perfetto.dev, or chrome://tracing).
//
// Defines: ct_trace (+ ct_trace_init / _span / _span_step / _write / _free), CT_TRACE_DEVICE.
//
// Each rank records complete ("X") events in memory: a name, a track (tid: 0 the host's
// phases, 1 the all-reduce windows, CT_TRACE_DEVICE the device's commands with --profile,
// their OpenCL event times mapped onto the host's clock), the start on the host's monotonic clock and a duration.
// At the end rank 0 gathers every rank's events and writes one file atomically: one process
// per rank (named after its device), timestamps in microseconds from the earliest event of the
// job (ranks on one node share the clock; on several nodes each rank's clock is its own).
// Bounded: events are kept only for steps in [first, last) and at most max_events per rank.
#ifndef CLTRAIN_TRACE_H
#define CLTRAIN_TRACE_H

#include <stddef.h>

#include "cltrain/comm.h"
#include "cltrain/status.h"

typedef struct {
  double ts, dur;   // seconds (host monotonic clock)
  long step;
  int tid;
  char name[64];
} ct_trace_event;

typedef struct {
  int on;
  long first, last;          // steps recorded: [first, last)
  long step;                 // the step the spans belong to (set by the trainer)
  ct_trace_event *ev;
  size_t n, cap, max_events;
  size_t dropped;            // over max_events
} ct_trace;

#define CT_TRACE_DEVICE 2

ct_status ct_trace_init(ct_trace *t, long first, long last);
// A span of the current step (t->step).
void ct_trace_span(ct_trace *t, int tid, const char *name, double t0, double t1);
// A span of a given step (device commands are collected after the step that enqueued them).
void ct_trace_span_step(ct_trace *t, int tid, const char *name, double t0, double t1, long step);
// Collective over comm. label: this rank's process name (its device). Rank 0 writes path.
ct_status ct_trace_write(ct_trace *t, ct_comm *comm, const char *label, const char *path);
void ct_trace_free(ct_trace *t);

#endif
