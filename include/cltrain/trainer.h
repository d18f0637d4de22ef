// trainer.h: the training run as the tools see it: what a user sets, what a run reports.
//
// Defines: ct_train_config (+ ct_train_config_defaults), ct_train_result, ct_train_run,
// ct_params_checksum, ct_divergence.
//
// The trainer's parts, each in its own file (train_state.h has the run's state they share):
//   loader.h     prepare: the loader thread fills the next step's share
//   step.h       one step's phases: compute, reduce, apply (and the buckets, the sharded update)
//   sync.h       the --sync modes as a table: the order of the phases, what a flush does
//   balance.h    the --balance policies as a table: the share weights
//   evaluate.h   the test-set metric per model kind, and the replicas' checks
//   report.h     the per-rank report, --metrics records, --profile, the progress line
//   run.h        the loop: epochs, logging, checkpoints, the end of a run
//   hooks.h      test hooks (faults, a slow device) that the tools may install
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

typedef struct ct_train_config {
  const char *arch;          // "mlp", "cnn", a token string (model.h) or "gpt:..." (gpt.h)
  const char *data_dir;      // MNIST-format or NumPy folder (data.h)
  const char *text;          // the language model's text (data.h's contract)
  const char *init_from;     // initial weights from a safetensors file (by tensor name)
  float clip_norm;           // > 0: clip the reduced gradient's global norm to this
  int sample;                // a language model: print a sample of this many bytes after each
                             // epoch (0: none)
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
  int resume_auto;           // --resume auto: start from `checkpoint` when something is there
                             // (resume.h), else from the seed
  int max_bad_steps;         // stop after K consecutive non-finite steps
  long check_every;          // compare parameter checksums across ranks every N steps (0 = never)
  ct_divergence on_divergence;
  // parallelism
  const char *balance;       // --balance: a policy of balance.h's table, as the user wrote it
                             // ("static:3,1"); NULL: the table's default (auto)
  const char *sync;          // --sync: a mode of sync.h's table, as the user wrote it
                             // ("local:4"); NULL: the table's default (sync)
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
  long balance_every;        // throughput: consider new shares every N steps (after warm-up)
  // speed and measurement
  int profile;               // per-kernel table from OpenCL event profiling at the end
  int timing;                // a barrier before each all-reduce: exact waiting time per rank
  int tune;                  // no tuning cache for the device: tune its GEMMs first (tune.h)
  float tune_budget;         // seconds for that (0: the tuner's default)
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
  double peak_gflops;        // this rank's device's peak multiply-add rate, measured at start
                             // (peak.h; 0: a simulator)
  long share_changes;        // times the shares changed (THROUGHPUT)
  long averages;             // LOCAL: parameter averages done
  int final_share;           // this rank's share of a full global batch at the end
} ct_train_result;

void ct_train_config_defaults(ct_train_config *cfg);
ct_status ct_train_run(const ct_train_config *cfg, ct_comm *comm, ct_train_result *res);
// FNV-1a over the bytes of n floats: replicas compare it across ranks.
uint64_t ct_params_checksum(const float *params, size_t n);

#endif
