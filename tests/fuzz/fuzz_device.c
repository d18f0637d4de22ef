// fuzz_device.c: libFuzzer harness of the --device spec (device.h): ct_device_spec_for_rank and
// ct_device_select over a synthetic node (two NVIDIA GPUs, an Intel CPU, Oclgrind; and a node
// with no device at all). No OpenCL call is made.
//
// Input: byte 0 = rank (low 4 bits) and local rank (high 4 bits); the rest, up to the first NUL,
// is the spec. Checks, besides "no crash, no leak, no UB": a successful call returns a
// non-empty, NUL-terminated spec that fits the output buffer and holds no ','; selection gives
// an index into the list; every failure is CT_ERR_USAGE / CT_ERR_NOTFOUND with a message.
//   build-fuzz/tests/fuzz/fuzz_device tests/fuzz/corpus/device     (see tests/fuzz/CMakeLists.txt)
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/device.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) \
  do {              \
    if (!(cond)) __builtin_trap(); \
  } while (0)

// The same node as tests/test_device.c.
static ct_device_info fake_dev[4];
static ct_device_list fake = {fake_dev, 4, 3, NULL};

static void fake_init(void) {
  static int done;
  if (done) return;
  done = 1;
  const struct { int p, i; const char *pname, *name, *vendor; cl_device_type t; int sim; } s[] = {
      {0, 0, "NVIDIA CUDA", "NVIDIA H100", "NVIDIA Corporation", CL_DEVICE_TYPE_GPU, 0},
      {0, 1, "NVIDIA CUDA", "NVIDIA H100", "NVIDIA Corporation", CL_DEVICE_TYPE_GPU, 0},
      {1, 0, "Intel(R) OpenCL", "Intel(R) Xeon(R)", "Intel(R) Corporation", CL_DEVICE_TYPE_CPU, 0},
      {2, 0, "Oclgrind", "Oclgrind Simulator", "University of Bristol",
       CL_DEVICE_TYPE_GPU | CL_DEVICE_TYPE_CPU | CL_DEVICE_TYPE_ACCELERATOR, 1},
  };
  for (int k = 0; k < 4; k++) {
    ct_device_info *d = &fake_dev[k];
    memset(d, 0, sizeof *d);
    d->platform = s[k].p;
    d->index = s[k].i;
    strcpy(d->platform_name, s[k].pname);
    strcpy(d->platform_vendor, s[k].vendor);
    strcpy(d->name, s[k].name);
    strcpy(d->vendor, s[k].vendor);
    d->type = s[k].t;
    d->simulator = s[k].sim;
  }
}

static void select_on(const ct_device_list *list, const char *spec, int local_rank) {
  int idx = -1;
  ct_error_clear();
  ct_status st = ct_device_select(list, spec, local_rank, &idx);
  if (st == CT_OK) {
    CHECK(idx >= 0 && idx < list->count);
  } else {
    CHECK(st == CT_ERR_USAGE || st == CT_ERR_NOTFOUND);
    CHECK(ct_error_message()[0] != 0);   // every failure says why
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fake_init();
  if (size == 0) return 0;
  int rank = data[0] & 0x0f, local_rank = data[0] >> 4;
  char *spec = malloc(size);   // size - 1 bytes of spec + NUL
  if (!spec) return 0;
  memcpy(spec, data + 1, size - 1);
  spec[size - 1] = 0;

  // The per-rank list, into a buffer as big as ct_device_open_spec's and into a tiny one.
  static const size_t out_sizes[] = {256, 5, 1, 0};
  char out[256];
  for (size_t k = 0; k < sizeof out_sizes / sizeof *out_sizes; k++) {
    size_t n = out_sizes[k];
    memset(out, 'x', sizeof out);
    ct_error_clear();
    ct_status st = ct_device_spec_for_rank(spec, rank, out, n);
    if (st == CT_OK) {
      size_t len = strnlen(out, sizeof out);
      CHECK(len < n);                    // terminated inside the buffer
      CHECK(len > 0);                    // never an empty spec
      CHECK(strchr(out, ',') == NULL);   // one entry of the list
      if (n == sizeof out) select_on(&fake, out, local_rank);
    } else {
      CHECK(st == CT_ERR_USAGE);
      CHECK(ct_error_message()[0] != 0);
    }
  }
  // The spec as ct_device_select sees it when given unresolved (it must refuse lists).
  select_on(&fake, spec, local_rank);
  ct_device_list none = {NULL, 0, 0, NULL};
  select_on(&none, spec, local_rank);
  // A local rank that is negative or huge.
  select_on(&fake, spec, -1 - rank);
  select_on(&fake, spec, 0x7fffffff - rank);

  ct_error_clear();
  free(spec);
  return 0;
}
