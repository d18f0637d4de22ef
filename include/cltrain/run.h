// run.h: the run loop: the starting point (a checkpoint or the seeded initialisation), the
// epochs and their steps, and what happens between steps (replica checks, log lines,
// checkpoints, evaluation at an epoch's end), then the end of a run (the result's figures,
// the saved parameters, the trace).
//
// Defines: ct_run_train.
//
//   for each step:  loader wait (prepare) -> the sync mode's step (compute, reduce, apply)
//                   -> after the step: check? log? checkpoint? epoch's end? (each flushes what
//                      the mode left running first; the flush is training time)
//
// The loop never looks at a mode or a policy: it calls the mode's step, flush and checkpoint
// (sync.h) and lets the status of each step (step.h) drive the balance (balance.h).
#ifndef CLTRAIN_RUN_H
#define CLTRAIN_RUN_H

#include "cltrain/train_state.h"

// Trains from s->cfg->resume or the seed until --epochs or --max-steps, filling s->res.
// Collective.
ct_status ct_run_train(ct_run_state *s);

#endif
