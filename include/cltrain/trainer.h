// trainer.h: the training loop (synchronous data parallelism), evaluation and metrics.
//
// Defines: ct_train_config (+ ct_train_config_defaults), ct_train_result, ct_train_run,
// ct_params_checksum.
//
// One step, on every rank (see docs/design.md):
//   global batch (same on all ranks) -> this rank's share (--shard) -> forward -> loss scaled by
//   1/GLOBAL batch -> backward -> ring all-reduce (SUM) of the ONE gradient buffer -> non-finite
//   check -> optimizer (same bytes on every rank).
// The global batch order depends only on the seed and the epoch, never on the number of ranks,
// so the math of a step is the same for any rank count and any shares.
#ifndef CLTRAIN_TRAINER_H
#define CLTRAIN_TRAINER_H

#include <stdint.h>

#include "cltrain/comm.h"
#include "cltrain/data.h"
#include "cltrain/optim.h"

typedef enum { CT_DIVERGE_WARN, CT_DIVERGE_RESYNC, CT_DIVERGE_ABORT } ct_divergence;

// How the global batch is shared out (--balance). EVEN: as equal as integers allow. STATIC: in
// proportion to given weights. THROUGHPUT: in proportion to each rank's measured samples per
// second, re-measured while training. AUTO: THROUGHPUT when the ranks' devices differ, EVEN when
// they are all the same model (so that a homogeneous job stays bitwise reproducible).
typedef enum { CT_BALANCE_AUTO, CT_BALANCE_EVEN, CT_BALANCE_THROUGHPUT, CT_BALANCE_STATIC } ct_balance;
#define CT_MAX_STATIC_WEIGHTS 1024

// How the replicas are kept together (--sync). SYNC: every step's gradients are reduced before
// that step's update. STALE: step t's reduction runs while step t+1 computes, and step t's
// update is applied after it (one step late). LOCAL: each rank steps on its own share's gradients
// and the parameters are averaged every K steps (local SGD).
typedef enum { CT_SYNC_SYNC, CT_SYNC_STALE, CT_SYNC_LOCAL } ct_sync;

typedef struct {
  const char *arch;          // "mlp", "cnn" or a token string (model.h)
  const char *data_dir;      // MNIST-format or NumPy folder (data.h)
  int classes;               // 0: the largest label of the data + 1
  const char *device;        // device spec, per-rank lists allowed (device.h)
  int epochs;
  int batch;                 // GLOBAL batch: split over the ranks
  int limit, test_limit;     // use only the first N training / test samples (0 = all)
  float norm_mean, norm_std; // x = (pixel/255 - mean) / std when std > 0
  int shuffle;               // seeded shuffle of the global order each epoch
  ct_shard shard;            // how a global batch is split over the ranks
  ct_optim_config optim;
  ct_schedule sched;
  uint64_t seed;             // initialisation, shuffle, dropout
  long log_every;            // print a line every N steps (0 = never)
  long max_steps;            // stop after N steps in all (0 = run all epochs)
  const char *save_params;   // write the final parameters (raw float32) to this file
  int quiet;                 // no per-step lines
  // reliability (checkpoint.h)
  const char *checkpoint;    // write checkpoints here (atomically)
  long checkpoint_every;     // also every N steps (0 = only at the end of each epoch)
  const char *resume;        // start from this checkpoint
  int max_bad_steps;         // stop after K consecutive non-finite steps
  long check_every;          // compare parameter checksums across ranks every N steps (0 = never)
  ct_divergence on_divergence;
  // parallelism
  ct_balance balance;
  int static_weights[CT_MAX_STATIC_WEIGHTS];   // STATIC: weight of rank r (>= 0, not all 0)
  int n_static_weights;
  ct_sync sync;
  int local_k;               // LOCAL: optimizer steps between averages (>= 1)
  int wire;                  // ct_wire (allreduce.h): the gradients' format on the wire
  double bucket_mb;          // reduce the gradients in buckets of this size as backward
                             // produces them (0: one reduction after backward)
  int shard_update;          // sync: reduce-scatter, each rank updates its segment, all-gather
                             // the parameters, where every rank's device shares host memory
                             // and there are no buckets (1, the default); 0: every rank
                             // updates everything
  int accumulate;            // micro-batches of `batch` per optimizer step (>= 1)
  const char *metrics;       // JSON Lines metrics file (rank 0 writes; docs/metrics.md)
  const char *save_safetensors;   // the final weights as safetensors (export.h)
  const char *trace;         // Chrome trace-event file (trace.h), rank 0 writes
  long trace_first, trace_last;   // steps traced: [first, last)
  long balance_every;        // THROUGHPUT: consider new shares every N steps (after warm-up)
  // speed and measurement
  int profile;               // per-kernel table from OpenCL event profiling at the end
  int timing;                // a barrier before each all-reduce: exact waiting time per rank
  int tune;                  // no tuning cache for the device: tune its GEMMs first (tune.h)
  float tune_budget;         // seconds for that (0: the tuner's default)
  // fault injection for tests (CLTRAIN_INJECT_* environment variables; see tools/cltrain.c)
  long inject_nan_step;      // poison this rank's gradients from this global step (-1 = never)
  long inject_nan_count;     // ... for this many steps
  int inject_nan_rank;
  long inject_diverge_step;  // perturb one parameter of one rank at this step (-1 = never)
  int inject_diverge_rank;
  long inject_exit_step;     // _exit(3) this rank at this step (-1 = never)
  int inject_exit_rank;
  int inject_slow_rank;      // this rank sleeps inject_slow_us per sample of its share, each
  long inject_slow_us;       // step, as if its device were slower (-1 = none)
} ct_train_config;

typedef struct {
  double test_acc;           // after the last epoch (or the last step)
  double last_loss;          // global mean loss of the last logged interval
  double train_s;            // wall time of the training steps (evaluation excluded)
  double samples_per_s;      // global samples per second of training
  long steps, bad_steps, divergences;
  int epochs_done;
  // this rank's time per phase, in seconds, after the warm-up steps when there were enough
  // (as samples_per_s), over phase_s seconds of steps
  double compute_s, copy_s, mpi_s, wait_s, eval_s, phase_s;
  double exposed_s;          // communication the step waited for beyond what overlapped compute
  double sent_bytes;         // bytes this rank's all-reduces sent (over the measured steps)
  double local_samples;      // samples this rank trained on (in those steps)
  double flops_per_sample;   // the model's matrix products per sample and training step
  double gflops;             // achieved by this rank's device (its samples x flops / step time)
  double best_gflops;        // best SGEMM rate measured on this rank's device (0: no cache)
  long share_changes;        // times the shares changed (THROUGHPUT)
  long averages;             // LOCAL: parameter averages done
  int final_share;           // this rank's share of a full global batch at the end
} ct_train_result;

void ct_train_config_defaults(ct_train_config *cfg);
ct_status ct_train_run(const ct_train_config *cfg, ct_comm *comm, ct_train_result *res);
// FNV-1a over the bytes of n floats: replicas compare it across ranks.
uint64_t ct_params_checksum(const float *params, size_t n);

#endif
