// checkpoint.h: atomic checkpoints of a training run, and resuming from them.
//
// Defines: ct_checkpoint_pos, ct_checkpoint_save, ct_checkpoint_load, ct_checkpoint_parse,
// ct_write_file_atomic, CT_CHECKPOINT_MAGIC / CT_CHECKPOINT_VERSION.
//
// File layout (little-endian), followed by a CRC32 (zlib) over every byte before it:
//   +---------------------------------------------------------------------------------+
//   | header: magic "CLTRCKPT", version, header size, architecture text, parameter    |
//   |         count, optimizer kind, state count, optimizer steps, step, epoch,       |
//   |         position in the epoch, seed, shuffle flag, world size                   |
//   | params  (param_count float32)                                                   |
//   | state   (state_count float32: SGD momentum, or AdamW m then v)                  |
//   | crc32   (uint32)                                                                |
//   +---------------------------------------------------------------------------------+
// The sample order of an epoch depends only on (seed, epoch), and dropout masks on (seed,
// step), so (seed, epoch, position) is the whole RNG state. Written by rank 0 only: temporary
// file in the same folder, fsync, rename, fsync of the folder. A checkpoint never holds a
// non-finite value. Every rank reads the file when resuming (put it on a shared file system).
#ifndef CLTRAIN_CHECKPOINT_H
#define CLTRAIN_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "cltrain/comm.h"
#include "cltrain/model.h"
#include "cltrain/optim.h"

#define CT_CHECKPOINT_MAGIC "CLTRCKPT"
#define CT_CHECKPOINT_VERSION 1

typedef struct {
  long step;             // global steps done
  int epoch;             // epoch to continue in (0-based)
  long step_in_epoch;    // steps of that epoch already done
  int world;             // ranks of the run that wrote it
  int batch;             // global batch: the position in the epoch counts steps of it
} ct_checkpoint_pos;

typedef struct {
  char arch[1024];
  uint64_t param_count, state_count;
  int optim_kind;
  int64_t optim_t;
  ct_checkpoint_pos pos;
  uint64_t seed;
  int shuffle;
  const float *params;   // points into the parsed buffer
  const float *state;
} ct_checkpoint_view;

// Writes `size` bytes to `path` atomically: nothing at `path` changes unless all went well.
ct_status ct_write_file_atomic(const char *path, const void *data, size_t size);

// Parses and validates a checkpoint held in memory (header, sizes, CRC, finite values).
// `name` is used in messages. For the loader and the fuzzer.
ct_status ct_checkpoint_parse(const uint8_t *buf, size_t size, const char *name,
                              ct_checkpoint_view *view);

// Rank 0 writes params + optimizer state + position; other ranks return at once.
// host_scratch: param_count floats.
ct_status ct_checkpoint_save(const char *path, ct_model *model, ct_optim *opt,
                             const ct_checkpoint_pos *pos, uint64_t seed, int shuffle,
                             ct_comm *comm, float *host_scratch);
// Reads `path`, checks it against this run (architecture, parameter count, optimizer, seed,
// shuffle, global batch),
// loads the optimizer state into opt and the parameters into host_params (param_count floats).
ct_status ct_checkpoint_load(const char *path, const ct_arch *arch, ct_optim *opt,
                             float *host_params, ct_checkpoint_pos *pos, uint64_t seed,
                             int shuffle, int batch);

#endif
