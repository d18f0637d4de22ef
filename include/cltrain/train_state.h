// train_state.h: the state of one training run, which the trainer's files share (the run's
// own header: not an API beyond the trainer), and its setup and teardown (train_state.c).
//
// Defines: ct_run_state (+ ct_run_setup / ct_run_teardown), ct_computed, ct_step_status,
// ct_balance_state, ct_local_state, the status words' places (CT_AT_LOSS, CT_AT_TIMES,
// CT_AT_COUNT, CT_REDUCED), CT_WARMUP_STEPS, ct_say, ct_release_event, ct_event_status,
// CT_UNPROFILED.
//
// The gradient buffer of a step, as every phase sees it:
//
//   grads:  [ P gradients | loss sum | compute ms of rank 0 .. N-1 | non-finite counter ]
//             \____________ reduced together (SUM) ______________/   not reduced
//
// Who writes what: setup (train_state.c) everything that lives as long as the run; the loader
// (loader.h) the slots; the phases (step.h) cur / pend, the status reads and the accounting;
// the sync mode (sync.h) the order of the phases and its own state (local:K: `loc`); the
// balance policy (balance.h) the weights and `bal`; the loop (run.h) the rest.
#ifndef CLTRAIN_TRAIN_STATE_H
#define CLTRAIN_TRAIN_STATE_H

#include <stdint.h>

#include "cltrain/allreduce.h"
#include "cltrain/loader.h"
#include "cltrain/metrics.h"
#include "cltrain/model.h"
#include "cltrain/optim.h"
#include "cltrain/trace.h"
#include "cltrain/trainer.h"

struct ct_sync_mode;
struct ct_balance_policy;
struct ct_eval_metric;

#define CT_WARMUP_STEPS 5   // steps left out of the throughput figure (kernels build on first use)
#define CT_MAX_BUCKETS 256  // --bucket-mb: gradient windows at most

// A step's status words read back to the host (not waited for until the next step needs them).
typedef struct {
  long step;               // global step
  int n, m;                // global batch, this rank's share
  int *shares;             // (world) every rank's share of the step
  float *host;             // (2 + world) status words read back: loss sum, compute ms, counter
  cl_event ev;             // the read
  int in_flight;
} ct_step_status;

// A step whose gradients are computed (or being computed), with what its reduce and apply need.
typedef struct {
  long step;
  int n, m;
  int *shares;             // (world)
  cl_mem grads;            // its gradient buffer
  cl_event begin, end;     // overlapped modes (stale): markers around its compute on the device
  int valid;
  int counted;             // the all-reduce wrote its non-finite count (no count kernel)
} ct_computed;

// --balance throughput (balance.c): what it measured since the last change of shares.
typedef struct {
  uint32_t *new_weights;   // (world) the weights a check computes
  uint32_t *prev_weights;  // (world) the weights before the change on trial
  double *est;             // (world) measured ms per sample of each rank
  double *fit;             // (2 world) ms and samples per rank since a change
  long est_updates;
  long quiet_until;        // steps before this are not measured
  int trial;               // a change is on trial: kept only if the measured step gets faster
  double crit_sum;         // sum over the window of the slowest rank's compute time (ms)
  long crit_n;             //   and its count
  double prev_crit;        // the window's mean before the change on trial
  long hold;               // steps to hold still after a change that did not pay (doubles)
  int *proposal;           // (world) the shares the last check proposed (proposal[0] -1: none)
  int *seen_shares;        // (world) the shares of the last step the update saw
  int est_valid;           // est holds a measurement of every rank (checkpoints save it)
  uint64_t *ids;           // (2 world) each rank's device (host, local rank, device) at r, its
                           // device model (platform, device) at world + r: the same everywhere
} ct_balance_state;

// --sync local:K (sync.c): what happened since the last average.
typedef struct {
  long since_avg;          // steps since the last average
  double samples_since, compute_since;   // this rank's, since the last average
  int partial_since;       // a short batch (an epoch's last) since the last average
  double *words;           // (4 + 2 world) the average's status words
  float *ms;               // (world)
  int *shares;             // (world)
  long count_measured;
  long checked_avg;        // the average the replicas were last compared after
} ct_local_state;

typedef struct ct_run_state {
  const ct_train_config *cfg;
  ct_comm *comm;
  ct_device dev;
  ct_dataset train, test;
  float clip_factor;       // --clip-norm with --shard-update: the step's factor (step.c)
  double peak_gflops;      // the device's peak multiply-add rate (peak.h), at start
  int labels;              // labels (targets) per sample: 1, or a language model's T
  size_t in;               // input elements per sample (floats, or token ids as int32)
  ct_arch arch;
  ct_model model;
  ct_optim opt;
  ct_allreduce *ar;
  ct_ring_opts wire;       // the gradients' wire format (--wire): [0, P) of the reduced range
  const struct ct_sync_mode *mode;          // --sync (sync.h)
  int mode_k;                               //   its K (local:K)
  const struct ct_balance_policy *policy;   // --balance (balance.h), after auto chose
  int policy_chosen;                        //   chosen by auto
  const struct ct_eval_metric *metric;      // the test-set metric of this model (evaluate.h)
  // --bucket-mb: windows [bk_lo, bk_hi) of the gradients, from the last tensors' to the first's;
  // bucket b may be reduced once bk_ev[b] has completed (its tensors' backward; the last
  // bucket, which holds element 0, and the status words wait for compute_end)
  int nb;
  size_t bk_lo[CT_MAX_BUCKETS], bk_hi[CT_MAX_BUCKETS];
  int bk_tensor[CT_MAX_BUCKETS];   // the tensor whose "gradient ready" event the bucket waits for
  cl_event bk_ev[CT_MAX_BUCKETS];
  cl_event compute_end;    // buckets: marker after the step's compute
  double clock_off;        // host clock - device profiling clock (s): markers, --profile
  ct_metrics metrics;      // --metrics (rank 0)
  ct_trace trace;          // --trace
  char *devices_json;      // rank 0: [{"rank": 0, "platform": ...}, ...]
  ct_loader load;
  ct_slot slots[2];
  ct_step_status status[2];   // step t uses status[t & 1]
  cl_mem gbuf[2];          // gradient buffers: [1] is a second one for --sync stale
  ct_computed cur, pend;   // this step; stale: the step computed but not yet reduced / applied
  // the shares (balance.h): the weights they follow, the same on every rank
  uint32_t *weights;       // (world)
  int balancing;           // the weights change while training (throughput)
  int *tmp_shares, *tmp_shares2;     // (world)
  ct_balance_state bal;
  ct_local_state loc;
  cl_mem pred;             // stale, SGD: the parameters after the pending update (predicted)
  int overlap;             // stale: the ring runs while the next step computes (0 on a CPU
                           // device: its reduction first, then the step; sync.c, the same bits)
  int apply_first;         // stale where no rank overlaps: the pending update applies before
                           // the step computes (sync's math, no prediction; sync.c)
  cl_event pred_done;      // the prediction has read the pending gradients
  float *pend_map;         // zero-copy: the gradients to reduce, mapped (stale: the pending
                           // ones, before the step; sync: this step's, behind its kernels)
  cl_event pend_map_ev;    //   and the map's event
  cl_command_queue side;   // N > 1: a queue of the trainer's own, for writing this rank's
                           // status words where the device's queue holds the next step
  size_t P;                // parameters
  int shard;               // --shard-update in effect: this rank updates [sh_lo, sh_hi) only
  size_t sh_lo, sh_hi;     //   its segment of the parameters (the ring's segment rank+1)
  size_t tail;             // status words after the gradients: 2 + world
  int max_share;           // largest share any rank gets
  int micro;               // the model's max batch: rows per forward/backward (--accumulate
                           // cuts a share into chunks of at most this many)
  cl_mem acc;              // --accumulate: gradients of the chunks after the first
                           // ([P | loss]), added into the step's gradient buffer
  int *eval_idx;           // (max_share) evaluation: sample indices
  float *eval_x;           // (max_share, in)
  int *eval_y;             // (max_share)
  float *tail_host;        // (world) this rank's compute time in its slot, zeros elsewhere
  float *host_params;      // (param_count)
  ct_schedule sched;       // cfg->sched, with the cosine's length filled in
  ct_allreduce_stats ars;
  ct_train_result *res;
  // where the run started (resume.c): the checkpoint (NULL: the seed), its step, the ranks that
  // wrote it, its format version
  const char *resumed_from;
  long resumed_step;
  int resumed_world, resumed_format;
  // accounting
  int bad_run;
  int stop_bad;            // this rank reached --max-bad-steps in a mode whose verdicts are
                           // each rank's own (local:K): the ranks stop together, at the mode's
                           // next collective point
  double loss_acc, loss_n;
  int measuring;           // past the warm-up steps: throughput and profile count
  double step_s;           // wall time of the measured steps
  double wait_loader_s, prep_s, allreduce_s, barrier_s;
  double samples_measured;
  double exposed_s;        // communication the steps waited for beyond compute
  // at the end of the warm-up
  double warm_compute, warm_wait, warm_train, warm_local, warm_exposed;
  ct_allreduce_stats warm_ars;
} ct_run_state;

#define R0 (s->comm->rank == 0)

// Status words, in floats from the start of the grads buffer.
#define CT_AT_LOSS(s) ((s)->P)
#define CT_AT_TIMES(s) ((s)->P + 1)
#define CT_AT_COUNT(s) ((s)->P + (s)->tail - 1)
#define CT_REDUCED(s) ((s)->P + (s)->tail - 1)   // floats the all-reduce covers

// Everything a run needs before its first step: data, model, device, optimizer, all-reduce,
// the sync mode's and the balance policy's own, the loader thread. Collective.
ct_status ct_run_setup(ct_run_state *s);
// Frees what setup made (also after a failed setup).
void ct_run_teardown(ct_run_state *s);

// printf on rank 0 only, flushed.
void ct_say(ct_run_state *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ct_release_event(cl_event *e);
// The execution status of ev (*stat: CL_COMPLETE, ...); a failed command's status is the error.
cl_int ct_event_status(cl_event ev, cl_int *stat);

// Runs call (a ct_status expression) with profiling paused (evaluation, checkpoints and checks
// are not part of a step), and returns its failure.
#define CT_UNPROFILED(s, call)                      \
  do {                                              \
    struct ct_prof *ct_saved_ = (s)->dev.prof;      \
    (s)->dev.prof = NULL;                           \
    ct_status ct_st_ = (call);                      \
    (s)->dev.prof = ct_saved_;                      \
    if (ct_st_ != CT_OK) return ct_st_;             \
  } while (0)

#endif
