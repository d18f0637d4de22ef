// buckets.h: --bucket-mb: the gradients reduced in windows of whole layers, each as soon as
// backward has written it, while backward goes on (the reduce phase of step.h, in pieces).
//
// Defines: ct_bucket_setup, ct_bucket_events, ct_bucket_reduce.
//
//   gradients [0, P):   | layer 0 | layer 1 | ... | layer n-1 |      status words
//   buckets:             \__ last bucket _/ ...  \_ bucket 0 _/      (after compute)
//   reduced:             last                     first               then these
//
// Every element is summed in the order of one reduction of the whole range (windows of one
// layout, allreduce.h): the same bits as --bucket-mb 0.
#ifndef CLTRAIN_BUCKETS_H
#define CLTRAIN_BUCKETS_H

#include "cltrain/train_state.h"

// Cuts the gradients into windows of about --bucket-mb MiB of whole tensor groups (s->nb,
// bk_lo, bk_hi, bk_tensor) and asks the model for its "gradient ready" markers. Prints them on
// rank 0.
ct_status ct_bucket_setup(ct_run_state *s);
// After a step's compute is enqueued: the events each window's reduction waits for (bk_ev),
// and the marker of the compute's end (compute_end).
ct_status ct_bucket_events(ct_run_state *s);
// The reduce phase in windows (step.h's ct_phase_reduce for s->nb > 0).
ct_status ct_bucket_reduce(ct_run_state *s, ct_computed *c, double t_start, double *compute_s);

#endif
