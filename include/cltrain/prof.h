// prof.h: where a device's time goes (--profile): OpenCL event profiling of every command
// cltrain enqueues, folded into rows by name, plus host-side rows the trainer adds.
//
// Defines: ct_prof_kind, ct_prof_row, struct ct_prof (opaque), ct_prof_init / _free,
// ct_prof_event, ct_prof_span, ct_prof_host, ct_prof_collect, ct_prof_reset, ct_prof_rows,
// ct_prof_sink (+ ct_prof_set_sink, ct_prof_set_tag).
//
// Off by default (dev->prof == NULL): every function below is then a no-op that returns NULL or
// CT_OK, so enqueue sites call them unconditionally. On, each enqueue site asks for an event slot
// (ct_prof_event) and passes it to its clEnqueue* call; a sequence of commands that gives no
// event of its own for each command (a CLBlast routine) is measured as a span from a marker
// enqueued before it to the end of its last command (ct_prof_span). The queue is in-order, so a
// command's time is END - START of its event, and a span's END(last) - END(marker).
// ct_prof_collect turns finished events into rows (calls, seconds, flops) and releases them.
#ifndef CLTRAIN_PROF_H
#define CLTRAIN_PROF_H

#include "cltrain/device.h"

typedef enum { CT_PROF_KERNEL, CT_PROF_GEMM, CT_PROF_TRANSFER, CT_PROF_HOST } ct_prof_kind;

typedef struct {
  char name[80];
  ct_prof_kind kind;
  long calls;
  double seconds;            // device time (host time for CT_PROF_HOST rows)
  double flops;              // floating-point operations done (GEMMs), 0 otherwise
} ct_prof_row;

struct ct_prof;

// Turns profiling on for dev (the queue already has CL_QUEUE_PROFILING_ENABLE).
ct_status ct_prof_init(ct_device *dev);
void ct_prof_free(ct_device *dev);   // releases pending events; safe when off
// An event slot for the next command of this name (NULL when profiling is off). The pointer is
// valid until the next ct_prof_* call on dev.
cl_event *ct_prof_event(ct_device *dev, const char *name, double flops, ct_prof_kind kind);
// Enqueues a marker and returns (in *ev) the slot for the LAST command of the span that follows.
// *ev = NULL when profiling is off.
ct_status ct_prof_span(ct_device *dev, const char *name, double flops, ct_prof_kind kind,
                       cl_event **ev);
// Adds host time to a row of its own (kind CT_PROF_HOST), one call.
void ct_prof_host(ct_device *dev, const char *name, double seconds);
// Folds finished events into rows, in enqueue order; wait = 1 waits for all pending ones,
// wait = 0 stops at the first that has not finished.
ct_status ct_prof_collect(ct_device *dev, int wait);
// Forgets the rows (after warm-up steps); pending events are collected first and dropped.
ct_status ct_prof_reset(ct_device *dev);
// A function that sees every command as it is collected (before it is folded into its row):
// its name, kind, the tag in force when it was enqueued (ct_prof_set_tag: the trainer's step),
// and its start and end on the device's profiling clock (ns). For a span, start is the end of
// the marker before it. --trace puts them on the timeline.
typedef void (*ct_prof_sink)(void *ctx, const char *name, ct_prof_kind kind, long tag,
                             cl_ulong start, cl_ulong end);
void ct_prof_set_sink(ct_device *dev, ct_prof_sink sink, void *ctx);
// The tag given to the commands enqueued from now on.
void ct_prof_set_tag(ct_device *dev, long tag);
// The rows so far, in order of first appearance.
const ct_prof_row *ct_prof_rows(const ct_device *dev, int *n);

#endif
