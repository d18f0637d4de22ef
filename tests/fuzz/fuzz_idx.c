// fuzz_idx.c: libFuzzer harness of the IDX reader (data.h): ct_idx_parse on the input as it is,
// for 1, 2 and 3 dimensions, and ct_idx_read on the input as a file, which takes the gzip path
// (zlib inflate, concatenated members, size limits) when the input starts with 1f 8b. The file
// is an anonymous in-memory one (memfd_create), read through /proc/self/fd/N: no disk I/O.
//
// Checks, besides "no crash, no leak, no UB": a failure is CT_ERR_FORMAT with a message; a
// success gives dimensions >= 1 whose product is exactly the data after the header, data that
// points into the buffer (ct_idx_parse) or equals those bytes (ct_idx_read of raw input).
//   build-fuzz/tests/fuzz/fuzz_idx tests/fuzz/corpus/idx     (see tests/fuzz/CMakeLists.txt)
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cltrain/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) \
  do {              \
    if (!(cond)) __builtin_trap(); \
  } while (0)

static int memfd = -1;
static char memfd_path[64];

static int write_file(const uint8_t *data, size_t size) {
  if (memfd < 0) {
    memfd = memfd_create("cltrain-fuzz-idx", MFD_CLOEXEC);
    if (memfd < 0) return 0;
    snprintf(memfd_path, sizeof memfd_path, "/proc/self/fd/%d", memfd);
  }
  if (ftruncate(memfd, 0) != 0) return 0;
  size_t off = 0;
  while (off < size) {
    ssize_t n = pwrite(memfd, data + off, size - off, (off_t)off);
    if (n <= 0) return 0;
    off += (size_t)n;
  }
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *buf = malloc(size ? size : 1);   // exactly size bytes: ASan sees any overread
  if (!buf) return 0;
  memcpy(buf, data, size);
  int raw_ok[4] = {0, 0, 0, 0};

  for (int want = 1; want <= 3; want++) {
    int dims[3] = {-7, -7, -7};
    const uint8_t *payload = NULL;
    ct_error_clear();
    ct_status st = ct_idx_parse(buf, size, "fuzz.idx", want, dims, &payload);
    if (st != CT_OK) {
      CHECK(st == CT_ERR_FORMAT);
      CHECK(ct_error_message()[0] != 0);
      continue;
    }
    raw_ok[want] = 1;
    uint64_t bytes = 1;
    for (int i = 0; i < 3; i++) {
      CHECK(dims[i] >= 1);
      if (i >= want) CHECK(dims[i] == 1);
      bytes *= (uint64_t)dims[i];
    }
    size_t header = 4 + 4 * (size_t)want;
    CHECK(payload == buf + header);
    CHECK(header + bytes == size);
  }

  // Through a file: raw input whose parse succeeded (the copy-out path), and any gzip input.
  int gz = size >= 2 && buf[0] == 0x1f && buf[1] == 0x8b;
  if ((gz || raw_ok[1] || raw_ok[3]) && write_file(buf, size)) {
    for (int want = 1; want <= 3; want += 2) {
      if (!gz && !raw_ok[want]) continue;
      int dims[3] = {-7, -7, -7};
      uint8_t *out = NULL;
      ct_error_clear();
      ct_status st = ct_idx_read(memfd_path, want, dims, &out);
      if (st != CT_OK) {
        CHECK(st == CT_ERR_FORMAT || st == CT_ERR_NOMEM);
        CHECK(ct_error_message()[0] != 0);
        continue;
      }
      size_t bytes = (size_t)dims[0] * (size_t)dims[1] * (size_t)dims[2];
      CHECK(dims[0] >= 1 && dims[1] >= 1 && dims[2] >= 1);
      if (!gz) CHECK(bytes + 4 + 4 * (size_t)want == size && !memcmp(out, buf + size - bytes, bytes));
      volatile uint8_t last = out[bytes - 1];   // ASan: the buffer holds all `bytes`
      (void)last;
      free(out);
    }
  }
  ct_error_clear();
  free(buf);
  return 0;
}
