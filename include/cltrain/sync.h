// sync.h: how the replicas are kept together (--sync), as a table: one entry per mode, in the
// manner of nccl-tests' `struct testColl`. The modes' names live only in that table (sync.c).
//
// Defines: ct_sync_mode, ct_sync_modes / ct_sync_nmodes, ct_sync_parse, ct_sync_name,
// ct_sync_usage, ct_sync_check_buckets, ct_local_average.
//
//   sync      every step's gradients are reduced before that step's update
//   stale     step t's reduction runs while step t+1 computes, and step t's update is applied
//             after it (one step late; SGD computes step t+1 at predicted parameters)
//   local:K   each rank steps on its own share's gradients; the parameters are averaged every
//             K steps (local SGD)
//
// A mode is its step (the phases of step.h in its order), what it must finish before anything
// looks at the parameters (flush: evaluation, logs, the end) and before a checkpoint, its loss
// scale, its own setup, and a few properties the phases and the loop read. Adding a mode is an
// entry in the table and its functions, in sync.c alone (docs/design-notes.md shows one).
#ifndef CLTRAIN_SYNC_H
#define CLTRAIN_SYNC_H

#include "cltrain/train_state.h"

typedef struct ct_sync_mode {
  const char *name;        // as --sync spells it
  const char *help;        // what it does, for --help (NULL: nothing to add to the name)
  int takes_k;             // spelt name:K, K in 1..1000000 (s->mode_k)
  // Every step's gradients and status words are summed over the ranks before its update: the
  // loss, the waiting time, the non-finite verdict and the balance's times are the job's, each
  // step. 0: each rank's own (the mode brings the ranks together itself).
  int reduces_gradients;
  // A step's reduction runs while the next step computes: its compute is timed between device
  // markers (on the host's clock: clock_setup), the ring waits beside the device's work.
  int overlapped;
  int buckets;             // --bucket-mb applies; 0: why not (for the usage error):
  const char *no_buckets;
  int shard_update;        // --shard-update applies
  // The mode's own buffers and state, after the model and the optimizer (NULL: none).
  ct_status (*setup)(ct_run_state *s);
  // One step on slot b (t0: when it started on the host). *compute_s: the compute time of the
  // step whose gradients it reduced (stale: the previous one), or 0.
  ct_status (*step)(ct_run_state *s, ct_slot *b, double t0, double *compute_s);
  // Everything computed is applied and the replicas agree (NULL: nothing to do). *compute_s:
  // the compute time of a step finished here, or 0.
  ct_status (*flush)(ct_run_state *s, double *compute_s);
  // The same before a checkpoint, which holds one optimizer state for every rank (NULL: flush).
  ct_status (*checkpoint)(ct_run_state *s, double *compute_s);
  // The backward pass's loss scale for a step of global batch n and this rank's share m.
  float (*loss_scale)(int n, int m);
  // Whether the replicas are compared after step `step` (--check-every N > 0; NULL: every N
  // steps). Called before the flush of that step.
  int (*check_due)(ct_run_state *s, long step);
} ct_sync_mode;

extern const ct_sync_mode ct_sync_modes[];   // the first is the default
extern const int ct_sync_nmodes;

// --sync TEXT (NULL: the default): the mode and its K (1 when it takes none). CT_ERR_USAGE with
// one line naming the flag and the modes when TEXT is none of them.
ct_status ct_sync_parse(const char *text, const ct_sync_mode **mode, int *k);
// The mode as --sync spells it ("local:4"), into buf.
const char *ct_sync_name(const ct_sync_mode *mode, int k, char *buf, size_t size);
// "sync (...) | stale (...) | local:K (...)" for --help: the modes, in the table's order.
void ct_sync_usage(char *buf, size_t size);
// CT_ERR_USAGE when --bucket-mb > 0 does not go with the mode (one line saying why).
ct_status ct_sync_check_buckets(const ct_sync_mode *mode, double bucket_mb);

// local:K's average of the parameters (with_state: and of the optimizer state) over the ranks.
ct_status ct_local_average(ct_run_state *s, int with_state);

#endif
