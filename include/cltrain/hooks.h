// hooks.h: test hooks: faults and a slow device that a test tool puts into a run, behind one
// interface. The library calls the hooks at fixed points and has none of its own; a tool
// installs them (tools/cltrain.c does, from environment variables the reliability tests set).
//
// Defines: ct_hook_step, ct_hooks (+ ct_hooks_set / _get).
//
// The points, on every rank (each hook may be NULL):
//   step_begin  before a step does anything (a rank that dies at step S ends itself here)
//   computed    the step's forward and backward are enqueued on dev->queue, its gradients
//               (buf: P gradients, then the status words) are not reduced yet, and the step's
//               end is not marked yet: work enqueued here (NaNs written into the gradients, a
//               user event that holds the device back for a while) counts as the step's
//               compute, for the host's clock and for the device's markers alike
//   applied     the step's update is enqueued (buf: the P parameters)
//   file_part   an atomic file write (checkpoint.h) has written part `part` of its file to the
//               temporary file, which is not renamed yet
// A hook that returns an error ends the run with it, as any other failure would.
#ifndef CLTRAIN_HOOKS_H
#define CLTRAIN_HOOKS_H

#include <stddef.h>

#include "cltrain/device.h"

typedef struct {
  int rank;           // this rank
  long step;          // the global step
  ct_device *dev;     // its device (enqueue on dev->queue)
  cl_mem buf;         // computed: the gradient buffer; applied: the parameters
  size_t count;       // floats of buf the hook may touch
  int samples;        // this rank's share of the step
} ct_hook_step;

typedef struct ct_hooks {
  void *ctx;
  void (*step_begin)(void *ctx, int rank, long step);
  ct_status (*computed)(void *ctx, const ct_hook_step *h);
  ct_status (*applied)(void *ctx, const ct_hook_step *h);
  void (*file_part)(void *ctx, const char *path, int part);
} ct_hooks;

// Installs hooks for the whole process (copied; NULL: none, the default). Set before a run.
void ct_hooks_set(const ct_hooks *hooks);
// The installed hooks: never NULL (a table of NULL hooks when none are installed).
const ct_hooks *ct_hooks_get(void);

#endif
