// fuzz_checkpoint.c: libFuzzer harness of the checkpoint loader (checkpoint.h):
// ct_checkpoint_parse, on the input as it is and again with the CRC32 trailer recomputed, so
// that mutations get past the CRC check to the validation behind it (positions, finiteness).
// No file, no OpenCL, no MPI.
//
// The input is copied into a malloc'ed buffer of exactly its size (aligned like a file the
// loader reads, and ASan sees any read past its end). Checks, besides "no crash, no leak, no
// UB": a failure is CT_ERR_FORMAT with a message; a success gives a terminated architecture
// text, sizes that account for every byte, parameter and state pointers inside the buffer,
// finite values and a non-negative position; from version 2 a run state that parses, with
// finite rates and weights that are not all 0.
//   build-fuzz/tests/fuzz/fuzz_checkpoint tests/fuzz/corpus/checkpoint   (tests/fuzz/CMakeLists.txt)
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "cltrain/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) \
  do {              \
    if (!(cond)) __builtin_trap(); \
  } while (0)

static void parse_one(const uint8_t *buf, size_t size) {
  ct_checkpoint_view v;
  ct_error_clear();
  ct_status st = ct_checkpoint_parse(buf, size, "fuzz.ckpt", &v);
  if (st != CT_OK) {
    CHECK(st == CT_ERR_FORMAT);
    CHECK(ct_error_message()[0] != 0);
    return;
  }
  CHECK(memchr(v.arch, 0, sizeof v.arch) != NULL);
  CHECK(v.param_count > 0);
  CHECK(v.optim_kind == CT_OPT_SGD || v.optim_kind == CT_OPT_ADAMW);
  const uint8_t *end = buf + size;
  const uint8_t *p0 = (const uint8_t *)v.params, *s0 = (const uint8_t *)v.state;
  CHECK(p0 > buf && p0 + 4 * v.param_count <= end);
  CHECK(v.version == 1 || v.version == 2);
  CHECK(s0 == p0 + 4 * v.param_count);
  if (v.version == 1) {
    CHECK(v.run == NULL && s0 + 4 * v.state_count + 4 == end);   // + CRC32
  } else {   // the run state between the optimizer state and the CRC32
    CHECK(v.run == s0 + 4 * v.state_count && v.run + v.run_bytes + 4 == end);
    ct_checkpoint_run run;
    CHECK(ct_checkpoint_parse_run(&v, &run) == CT_OK && run.present && run.world == v.pos.world);
    CHECK(memchr(run.sync, 0, sizeof run.sync) && memchr(run.balance, 0, sizeof run.balance));
    uint64_t wsum = 0;
    for (int r = 0; r < run.world; r++) {
      CHECK(isfinite(run.ms_per_sample[r]) && run.ms_per_sample[r] >= 0);
      wsum += run.weights[r];
    }
    CHECK(wsum > 0 && run.since_avg >= 0 && (run.pending == 0 || run.pending == 1));
    ct_checkpoint_run_free(&run);
  }
  for (uint64_t i = 0; i < v.param_count; i++) CHECK(isfinite(v.params[i]));
  for (uint64_t i = 0; i < v.state_count; i++) CHECK(isfinite(v.state[i]));
  CHECK(v.pos.step >= 0 && v.pos.epoch >= 0 && v.pos.step_in_epoch >= 0 && v.pos.world >= 1 &&
        v.pos.batch >= 1);
  CHECK(v.optim_t >= 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *buf = malloc(size ? size : 1);
  if (!buf) return 0;
  memcpy(buf, data, size);
  parse_one(buf, size);
  if (size >= 12) {   // the same bytes with a CRC32 that matches them
    uint32_t crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), buf, (uInt)(size - 4));
    memcpy(buf + size - 4, &crc, 4);   // little-endian hosts only, as checkpoint.c
    parse_one(buf, size);
  }
  ct_error_clear();
  free(buf);
  return 0;
}
