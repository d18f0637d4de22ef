// loader.h: the prepare phase of a training step: a loader thread that gathers step t+1's
// share of the global batch into one of two host slots while the device computes step t.
//
// Defines: ct_slot, ct_loader (+ ct_loader_start / _stop / _post / _wait).
//
//   epoch e: order = permutation(seed, e) of the training set (the same on every rank)
//   step s:  global batch = order[s*B .. s*B+B)        (the last one may be shorter)
//            mine = ct_shard_take(global batch, shares) (this rank's share)
//
// The shares come from the share weights in effect when the step was posted (balance.h), so
// every rank cuts the same batch the same way. The thread makes no MPI call (MPI stays
// FUNNELED) and waits for the device's copy of a slot (its `written` event) before refilling it.
#ifndef CLTRAIN_LOADER_H
#define CLTRAIN_LOADER_H

#include <pthread.h>
#include <stdint.h>

#include "cltrain/data.h"
#include "cltrain/device.h"

struct ct_train_config;

typedef struct {
  int epoch;
  long si, step;           // step in the epoch, global step
  int n, m, offset;        // global batch, this rank's share, its first position in the batch
  int *mine;               // (max_share) sample indices
  float *x;                // (max_share, in)
  int *y;                  // (max_share)
  cl_event written;        // the device's copy of x and y; the slot is reused once it completed
  double prep_s;           // loader time spent on it
  uint32_t *weights;       // (world) the share weights in effect when it was posted
  int *shares;             // (world) this step's shares (from the weights)
} ct_slot;

typedef struct {
  pthread_t thread;
  int started;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  ct_slot *job;            // the slot to fill, NULL when idle
  int done, quit;
  ct_status st;
  char err[512];
  // read-only inputs
  const ct_dataset *train;
  const struct ct_train_config *cfg;
  int world, rank;
  int *order, order_epoch; // the loader's own copy of the epoch order
} ct_loader;

// Starts the thread (train, cfg, world, rank and order set by the caller).
ct_status ct_loader_start(ct_loader *L);
// Waits for a job in progress, then ends the thread. Safe on a loader never started.
void ct_loader_stop(ct_loader *L);
// Hands the thread slot b to fill for (epoch, step in the epoch, global step) with the share
// weights `weights` (world entries, copied).
void ct_loader_post(ct_loader *L, ct_slot *b, int epoch, long si, long step,
                    const uint32_t *weights);
// Waits for the posted job; *waited = host seconds spent waiting.
ct_status ct_loader_wait(ct_loader *L, double *waited);

#endif
