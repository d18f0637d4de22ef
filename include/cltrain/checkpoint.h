// checkpoint.h: atomic checkpoints of a training run, and resuming from them.
//
// Defines: ct_checkpoint_pos, ct_checkpoint_run (+ ct_checkpoint_run_free), ct_checkpoint_save,
// ct_checkpoint_load, ct_checkpoint_parse, ct_checkpoint_exists, ct_write_file_atomic,
// CT_CHECKPOINT_MAGIC / CT_CHECKPOINT_VERSION.
//
// File layout (little-endian), followed by a CRC32 (zlib) over every byte before it:
//   +---------------------------------------------------------------------------------+
//   | header: magic "CLTRCKPT", version, header size, architecture text, parameter    |
//   |         count, optimizer kind, state count, optimizer steps, step, epoch,       |
//   |         position in the epoch, seed, shuffle flag, world size                   |
//   | params  (param_count float32)                                                   |
//   | state   (state_count float32: SGD momentum, or AdamW m then v)                  |
//   | run state (version 2 on; 96 + 32 x world bytes):                                 |
//   |   "CLTRRUN\0", its size, world size (the header's)                              |
//   |   sync mode: --sync as written (char[32]), steps since local:K's last average,  |
//   |              a pending stale step (0/1), flags (bit 0: rates measured)          |
//   |   balance:   the policy in effect (char[32])                                    |
//   |   per rank:  share weight (u32), 0 (u32), measured ms per sample (f64, 0: none), |
//   |              device id (u64: host, local rank, device), device model (u64)      |
//   | crc32   (uint32)                                                                |
//   +---------------------------------------------------------------------------------+
// The sample order of an epoch depends only on (seed, epoch), and dropout masks on (seed,
// step), so (seed, epoch, position) is the whole RNG state. Written by rank 0 only: temporary
// file in the same folder, fsync, rename, fsync of the folder. A checkpoint never holds a
// non-finite value. Every rank reads the file when resuming (put it on a shared file system).
// Version 1 (no run state) still loads: the run then takes this run's defaults for the shares
// and the sync mode's position. A checkpoint is written where the replicas agree: a stale
// step pending is applied first, and local:K averages first, so both of those fields are 0 in
// every file cltrain writes (a file saying otherwise is refused).
#ifndef CLTRAIN_CHECKPOINT_H
#define CLTRAIN_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "cltrain/comm.h"
#include "cltrain/model.h"
#include "cltrain/optim.h"

#define CT_CHECKPOINT_MAGIC "CLTRCKPT"
#define CT_CHECKPOINT_VERSION 2   // the version written; 1 and 2 are read

typedef struct {
  long step;             // global steps done
  int epoch;             // epoch to continue in (0-based)
  long step_in_epoch;    // steps of that epoch already done
  int world;             // ranks of the run that wrote it
  int batch;             // global batch: the position in the epoch counts steps of it
} ct_checkpoint_pos;

// What a restart with another rank count needs beyond the math: the sync mode's position and
// the balance (format version 2). Saving: the arrays are the caller's. Loading: malloc'ed,
// freed by ct_checkpoint_run_free.
typedef struct {
  int present;             // 0: a version-1 checkpoint, which holds none of this
  char sync[32];           // --sync as written ("local:3")
  long since_avg;          // local:K: steps since the last average (0: a checkpoint averages)
  int pending;             // stale: a step whose update is pending (0: a checkpoint applies it)
  int measured;            // ms_per_sample holds the throughput balance's measurements
  char balance[32];        // the policy in effect ("throughput", "even", "static")
  int world;               // entries of each array: the ranks of the run that wrote it
  uint32_t *weights;       // share weights (ct_shares_weighted)
  double *ms_per_sample;   // measured compute time per sample (0: not measured)
  uint64_t *device;        // the rank's device: host, local rank, platform and device
  uint64_t *model;         // the rank's device model: platform and device names
} ct_checkpoint_run;

void ct_checkpoint_run_free(ct_checkpoint_run *run);

typedef struct {
  int version;           // the file's format version (1 or 2)
  char arch[1024];
  uint64_t param_count, state_count;
  int optim_kind;
  int64_t optim_t;
  ct_checkpoint_pos pos;
  uint64_t seed;
  int shuffle;
  const float *params;   // points into the parsed buffer
  const float *state;
  const uint8_t *run;    // version 2: the run state (ct_checkpoint_parse_run); NULL: version 1
  size_t run_bytes;
} ct_checkpoint_view;

// Writes `size` bytes to `path` atomically: nothing at `path` changes unless all went well.
ct_status ct_write_file_atomic(const char *path, const void *data, size_t size);

// Parses and validates a checkpoint held in memory (header, sizes, CRC, finite values).
// `name` is used in messages. For the loader and the fuzzer.
ct_status ct_checkpoint_parse(const uint8_t *buf, size_t size, const char *name,
                              ct_checkpoint_view *view);

// The run state of a parsed version-2 view, copied into run (arrays malloc'ed); version 1:
// run->present = 0.
ct_status ct_checkpoint_parse_run(const ct_checkpoint_view *view, ct_checkpoint_run *run);

// Whether something is at `path` (lstat): 0 only when nothing is there (ENOENT); anything else,
// a file, a folder, a dangling link or a path that cannot be looked at, counts as there, so
// that loading it says what is wrong.
int ct_checkpoint_exists(const char *path);

// Rank 0 writes params + optimizer state + position + run state (run: its world entries are
// pos->world ranks'); other ranks return at once. host_scratch: param_count floats.
ct_status ct_checkpoint_save(const char *path, ct_model *model, ct_optim *opt,
                             const ct_checkpoint_pos *pos, uint64_t seed, int shuffle,
                             const ct_checkpoint_run *run, ct_comm *comm, float *host_scratch);
// Reads `path`, checks it against this run (architecture, parameter count, optimizer, seed,
// shuffle, global batch),
// loads the optimizer state into opt and the parameters into host_params (param_count floats),
// and the run state into run (free with ct_checkpoint_run_free; present 0 for version 1).
// *version: the file's format version.
ct_status ct_checkpoint_load(const char *path, const ct_arch *arch, ct_optim *opt,
                             float *host_params, ct_checkpoint_pos *pos, uint64_t seed,
                             int shuffle, int batch, ct_checkpoint_run *run, int *version);

#endif
