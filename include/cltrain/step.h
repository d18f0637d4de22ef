// step.h: the phases of a training step, and what waits for a step's status afterwards.
//
// Defines: ct_phase_compute, ct_phase_reduce, ct_phase_apply, ct_step_finish, ct_step_drain,
// ct_step_map_grads, ct_step_write_status, ct_step_device_seconds, ct_shard_setup,
// ct_shard_gather_state.
//
// One step, as phases (docs/design.md, "A training step"); the sync mode (sync.h) puts them in
// its order:
//
//   prepare    the loader thread gathers step t+1's share into the other of two host slots
//              while the device computes step t (double-buffered input: loader.h)
//   compute    upload (non-blocking), forward, backward (the mode's loss scale), and the
//              status words: grads[P] = this rank's loss sum, counter zeroed
//   reduce     (N > 1) wait for the gradients, write this rank's compute time into its status
//              slot, ring all-reduce SUM of [gradients | status] as one range (buckets.h: in
//              windows while backward runs)
//   apply      count the non-finite values of [gradients | loss] into the counter; the optimizer
//              kernel skips the update on the device when the counter is not zero; read the
//              status words back without blocking
//
// The only blocking point of a one-rank step is waiting for the PREVIOUS step's status read,
// just before this step's optimizer is enqueued (the host must know whether that step was
// applied, for AdamW's step count); the device meanwhile computes this step. With N > 1 the
// all-reduce blocks, as it must. After the all-reduce the status is the same on every rank:
// the global loss sum (no separate loss reduction), every rank's compute time (waiting for the
// slowest = max - own, with no barrier), and a non-finite verdict every rank reaches alike.
#ifndef CLTRAIN_STEP_H
#define CLTRAIN_STEP_H

#include "cltrain/train_state.h"

// compute: upload, forward, backward into `grads`, this rank's loss sum into its status words.
// c records what apply and reduce need later (the slot is refilled by the loader meanwhile).
ct_status ct_phase_compute(ct_run_state *s, ct_slot *b, cl_mem grads, ct_computed *c);
// reduce (N > 1): [gradients | loss | compute times] of step c summed over the ranks. Not
// overlapped (sync): after the device finished it (the host's time since t_start is its
// compute time); overlapped (stale): while the device computes the next step (its markers'
// time is the compute time). *compute_s: step c's compute time.
ct_status ct_phase_reduce(ct_run_state *s, ct_computed *c, double t_start, double *compute_s);
// apply: the non-finite count (unless the all-reduce made it), the optimizer (skipped on the
// device when the count is not zero), the status read (not waited for here).
ct_status ct_phase_apply(ct_run_state *s, ct_computed *c);

// Waits for a step's status and accounts for it: loss, waiting time, skipped steps, balance.
ct_status ct_step_finish(ct_run_state *s, ct_step_status *st);
// Finishes both status reads in flight, the older first, and collects the profile.
ct_status ct_step_drain(ct_run_state *s);
// Maps the reduced range of `grads` on the device's queue behind what is enqueued there
// (not waited for: s->pend_map_ev), for a zero-copy reduction in place (ct_phase_reduce).
ct_status ct_step_map_grads(ct_run_state *s, cl_mem grads);
// This rank's status words (its compute time in its slot: s->tail_host) into grads, on the
// trainer's own queue once `after` has completed (NULL: at once); *written: the write's event,
// for the reduction to wait for (the caller's to release).
ct_status ct_step_write_status(ct_run_state *s, cl_mem grads, cl_event after, cl_event *written);
// The device time of a computed step (between its two markers), in seconds.
ct_status ct_step_device_seconds(ct_run_state *s, ct_computed *c, double *sec);

// --shard-update: decides whether it is in effect and this rank's segment. Collective.
ct_status ct_shard_setup(ct_run_state *s);
// The optimizer state of every segment from its owner (before a checkpoint or a resync reads
// it whole). Collective; nothing without --shard-update.
ct_status ct_shard_gather_state(ct_run_state *s);

#endif
