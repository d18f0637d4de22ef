// fuzz_arch.c: libFuzzer harness of the architecture string (model.h): ct_arch_parse and
// ct_arch_describe. No OpenCL call is made.
//
// Input: the spec, up to the first NUL. A first byte 0x01..0x04 picks another data shape (and is
// dropped); any other first byte is part of the spec, parsed for 1x28x28 and 10 classes.
// Checks, besides "no crash, no leak, no UB":
//   - a failure is CT_ERR_USAGE with a message;
//   - a success has 1..CT_MAX_LAYERS layers chained shape to shape, from the data shape to
//     `classes` outputs, parameter slices laid end to end, and a canonical text that parses
//     back to the same architecture (model.h promises this).
//   build-fuzz/tests/fuzz/fuzz_arch tests/fuzz/corpus/arch     (see tests/fuzz/CMakeLists.txt)
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) \
  do {              \
    if (!(cond)) __builtin_trap(); \
  } while (0)

static const struct { int c, h, w, classes; } shapes[] = {
    {1, 28, 28, 10},   // Fashion-MNIST
    {3, 32, 32, 10},   // CIFAR-like
    {1, 1, 1, 1},      // the smallest
    {2, 5, 7, 3},      // odd sizes
    {1, 4096, 4096, 1000},
};

static void check_arch(const ct_arch *a, int c, int h, int w, int classes) {
  CHECK(a->n >= 1 && a->n <= CT_MAX_LAYERS);
  CHECK(a->in_c == c && a->in_h == h && a->in_w == w && a->classes == classes);
  CHECK(memchr(a->text, 0, sizeof a->text) != NULL && a->text[0]);
  size_t off = 0;
  long long feat = (long long)c * h * w;
  for (int i = 0; i < a->n; i++) {
    const ct_layer *L = &a->layers[i];
    CHECK((long long)L->in_c * L->in_h * L->in_w == feat);   // dense sees it flattened
    CHECK(L->out_c >= 1 && L->out_h >= 1 && L->out_w >= 1);
    CHECK(L->w_off == off && L->b_off == off + L->w_count);
    off += L->w_count + L->b_count;
    if (L->kind == CT_LAYER_CONV2D)
      CHECK(L->k >= 1 && L->stride >= 1 && L->pad >= 0 && L->pad < L->k);
    if (L->kind == CT_LAYER_MAXPOOL) CHECK(L->k >= 1 && L->stride == L->k);
    if (L->kind == CT_LAYER_DROPOUT) CHECK(L->p >= 0.0f && L->p < 1.0f);
    feat = (long long)L->out_c * L->out_h * L->out_w;
    CHECK(feat <= 0x7fffffff);
  }
  CHECK(feat == classes);
  CHECK(off == a->param_count);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t pick = 0;
  if (size > 0 && data[0] >= 1 && data[0] <= 4) {
    pick = data[0];
    data++, size--;
  }
  int c = shapes[pick].c, h = shapes[pick].h, w = shapes[pick].w, classes = shapes[pick].classes;
  char *spec = malloc(size + 1);
  ct_arch *a = malloc(sizeof *a), *b = malloc(sizeof *b);
  char *desc = malloc(8192);
  if (!spec || !a || !b || !desc) goto out;
  memcpy(spec, data, size);
  spec[size] = 0;

  ct_error_clear();
  ct_status st = ct_arch_parse(spec, c, h, w, classes, a);
  if (st != CT_OK) {
    CHECK(st == CT_ERR_USAGE);
    CHECK(ct_error_message()[0] != 0);
    goto out;
  }
  check_arch(a, c, h, w, classes);
  // The canonical text parses back to the same architecture.
  ct_error_clear();
  CHECK(ct_arch_parse(a->text, c, h, w, classes, b) == CT_OK);
  CHECK(strcmp(a->text, b->text) == 0);
  CHECK(a->n == b->n && a->param_count == b->param_count);
  for (int i = 0; i < a->n; i++) {
    const ct_layer *x = &a->layers[i], *y = &b->layers[i];
    CHECK(x->kind == y->kind && x->out_c == y->out_c && x->out_h == y->out_h &&
          x->out_w == y->out_w && x->k == y->k && x->stride == y->stride && x->pad == y->pad &&
          memcmp(&x->p, &y->p, sizeof x->p) == 0 && x->w_count == y->w_count &&
          x->b_count == y->b_count);
  }
  // Descriptions, whole and truncated at every small size.
  ct_arch_describe(a, desc, 8192);
  CHECK(memchr(desc, 0, 8192) != NULL);
  for (size_t n = 0; n < 40; n++) {
    memset(desc, 'x', 64);
    ct_arch_describe(a, desc, n);
    if (n) CHECK(memchr(desc, 0, n) != NULL);
  }
out:
  ct_error_clear();
  free(spec);
  free(a);
  free(b);
  free(desc);
  return 0;
}
