// resume.h: where a run starts, and what its checkpoints hold beyond the math.
//
// Defines: ct_resume_start, ct_resume_save.
//
//   --resume PATH    from that checkpoint (refused in one line when it is missing, damaged or
//                    of another run)
//   --resume auto    from --checkpoint PATH when something is there, else from the seed (one
//                    line says which); something there that does not load is refused as with
//                    --resume PATH, never passed over: a requeued or relaunched job continues
//                    where it stopped, and a first run starts
//   (neither)        from the seed
// A checkpoint (format version 2, checkpoint.h) also holds the sync mode's position and the
// balance (the shares' weights, the rates measured, each rank's device), so that a run resumed
// with fewer ranks (a node lost) starts from what the ranks it keeps had measured.
#ifndef CLTRAIN_RESUME_H
#define CLTRAIN_RESUME_H

#include "cltrain/checkpoint.h"
#include "cltrain/train_state.h"

// The run's starting point into s->host_params and the optimizer (not yet on the device), and
// the position to continue from (*pos: zeros from the seed; an epoch's end moved to the next
// epoch's start). Collective: rank 0 decides whether --resume auto finds a checkpoint.
ct_status ct_resume_start(ct_run_state *s, long steps_per_epoch, ct_checkpoint_pos *pos);

// Writes the checkpoint --checkpoint names at position pos (rank 0; the others return at once):
// parameters, optimizer state (gathered already), and the run state.
ct_status ct_resume_save(ct_run_state *s, const ct_checkpoint_pos *pos);

#endif
