// fuzz_npy.c: libFuzzer harness of the NumPy .npy header parser (data.h): ct_npy_parse on the
// input as it is, and on the input behind a valid magic and version 1.0 header length (bytes
// 0..1 of the input become the length), to get past the first checks quickly.
//
// Checks, besides "no crash, no leak, no UB": a failure is CT_ERR_FORMAT with a one-line
// message; a success gives a known kind and item size, at most CT_NPY_MAX_DIMS dimensions whose
// product is count, and exactly count * item bytes of data from offset to the end of the input;
// the first and last items can be read (ASan sees an overread).
//   build-asan/tests/fuzz/fuzz_npy tests/fuzz/corpus/npy     (see tests/fuzz/CMakeLists.txt)
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) \
  do {              \
    if (!(cond)) __builtin_trap(); \
  } while (0)

static void one(const uint8_t *buf, size_t size) {
  ct_npy_info info;
  ct_error_clear();
  ct_status st = ct_npy_parse(buf, size, "fuzz.npy", &info);
  if (st != CT_OK) {
    CHECK(st == CT_ERR_FORMAT);
    const char *m = ct_error_message();
    CHECK(m[0] != 0 && strchr(m, '\n') == NULL);
    return;
  }
  CHECK(info.kind == 'u' || info.kind == 'i' || info.kind == 'f');
  CHECK(info.item == 1 || info.item == 2 || info.item == 4 || info.item == 8);
  CHECK(info.kind != 'f' || info.item >= 4);
  CHECK(info.ndim >= 0 && info.ndim <= CT_NPY_MAX_DIMS);
  uint64_t count = 1;
  for (int i = 0; i < info.ndim; i++) count *= info.shape[i];
  CHECK(count == info.count);
  CHECK(info.offset <= size && info.offset + info.count * (uint64_t)info.item == size);
  if (info.count) {
    const uint8_t *d = buf + info.offset;
    volatile double x;
    if (info.kind == 'f')
      x = ct_npy_float(&info, d, 0) + ct_npy_float(&info, d, info.count - 1);
    else
      x = (double)ct_npy_int(&info, d, 0) + (double)ct_npy_int(&info, d, info.count - 1);
    (void)x;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *buf = malloc(size ? size : 1);   // exactly size bytes: ASan sees any overread
  if (!buf) return 0;
  memcpy(buf, data, size);
  one(buf, size);
  free(buf);
  if (size >= 2) {   // behind a valid prefix: "\x93NUMPY" 1.0, length from the input's bytes 0..1
    size_t n = 8 + size;
    uint8_t *b = malloc(n);
    if (!b) return 0;
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    memcpy(b + 8, data, size);
    one(b, n);
    free(b);
  }
  ct_error_clear();
  return 0;
}
