// balance.h: how the global batch is shared out (--balance), as a table of policies: the share
// weights every rank computes alike, and how (and whether) they change while training. The
// policies' names live only in that table (balance.c).
//
// Defines: ct_balance_policy, ct_balance_policies / ct_balance_npolicies, ct_balance_choice
// (+ ct_balance_parse), ct_balance_usage, ct_balance_setup, ct_balance_update,
// ct_balance_full_shares, ct_balance_save / ct_balance_resume, CT_MAX_STATIC_WEIGHTS.
//
//   even        as equal as integers allow
//   throughput  in proportion to each rank's measured samples per second, re-measured while
//               training (a change is tried, and kept only if the step gets faster)
//   static:W..  in proportion to given integer weights, one per rank
//   auto        throughput when the ranks' devices differ, even when they are all the same
//               model (so that a homogeneous job stays bitwise reproducible)
//
// A step's shares are ct_shares_weighted(batch, world, weights) (data.h): integer arithmetic
// only, the same split on every rank. The loader prepares step t+1 with the weights known when
// it is posted, so no rank ever waits for new shares.
#ifndef CLTRAIN_BALANCE_H
#define CLTRAIN_BALANCE_H

#include "cltrain/checkpoint.h"
#include "cltrain/train_state.h"

#define CT_MAX_STATIC_WEIGHTS 1024

typedef struct ct_balance_choice ct_balance_choice;

typedef struct ct_balance_policy {
  const char *name;        // as --balance spells it
  const char *help;        // what it does, for --help (NULL: nothing to add to the name)
  int takes_weights;       // spelt name:W0,W1,... (integers >= 0, not all 0, one per rank)
  // The policy this job follows (auto: compares the ranks' devices; NULL: itself). Collective.
  ct_status (*choose)(ct_run_state *s, const struct ct_balance_policy **chosen);
  // The first weights (world entries; NULL: equal weights).
  ct_status (*weights)(ct_run_state *s, const ct_balance_choice *c, uint32_t *w);
  // The weights follow the ranks' compute times while training (NULL: they never change): from
  // one step's (or, force, one average's) times ms[r] in ms over shares[r] samples. Every rank
  // computes the same.
  void (*update)(ct_run_state *s, const float *ms, const int *shares, long step, int force);
} ct_balance_policy;

extern const ct_balance_policy ct_balance_policies[];   // the first is the default (auto)
extern const int ct_balance_npolicies;

// A parsed --balance.
struct ct_balance_choice {
  const ct_balance_policy *policy;
  int weights[CT_MAX_STATIC_WEIGHTS];   // takes_weights: rank r's
  int n_weights;
};

// "auto (...) | even | ..." for --help: the policies, in the table's order.
void ct_balance_usage(char *buf, size_t size);
// --balance TEXT (NULL: the default). CT_ERR_USAGE with one line naming the flag and what was
// expected when TEXT is none of the policies or its weights do not parse.
ct_status ct_balance_parse(const char *text, ct_balance_choice *c);
// The policy of this job (s->policy), the first weights, whether they change (s->balancing)
// and the largest share a rank can get (s->max_share, the model's batch). Collective.
ct_status ct_balance_setup(ct_run_state *s);
// The policy's update, when the weights follow measurements (s->balancing) and past the
// warm-up steps; nothing otherwise.
void ct_balance_update(ct_run_state *s, const float *ms, const int *shares, long step, int force);
// The shares of a full global batch under weights w.
void ct_balance_full_shares(ct_run_state *s, const uint32_t *w, int *shares);

// A checkpoint's balance fields (run->balance, weights, rates, devices): they point into s.
void ct_balance_save(ct_run_state *s, ct_checkpoint_run *run);
// A resumed run's first weights, when its policy measures (throughput; even and static take
// this run's weights): the saved weights when the same ranks run on the same devices; else each
// rank the rate the checkpoint measured for its device (host, local rank, device), or the mean
// for its device model; else even. `what`: a few words on which, for the resume line ("" when
// the policy does not measure). Every rank computes the same.
ct_status ct_balance_resume(ct_run_state *s, const ct_checkpoint_run *run, char *what,
                            size_t size);

#endif
