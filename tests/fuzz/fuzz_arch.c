// fuzz_arch.c: libFuzzer harness of the architecture string (model.h): ct_arch_parse and
// ct_arch_describe. No OpenCL call is made.
//
// Input: the spec, up to the first NUL. A first byte 0x01..0x04 picks another data shape (and is
// dropped); any other first byte is part of the spec, parsed for 1x28x28 and 10 classes.
// Checks, besides "no crash, no leak, no UB":
//   - a failure is CT_ERR_USAGE with a message;
//   - a success has 2..CT_MAX_NODES nodes (the layers, then the loss) chained value to value,
//     from the data shape to `classes` outputs, tensors laid end to end in the parameter
//     buffer, a backward plan that writes every needed gradient, and a canonical text that
//     parses back to the same architecture (model.h promises this).
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
  CHECK(a->n >= 2 && a->n <= CT_MAX_NODES);
  CHECK(a->in_c == c && a->in_h == h && a->in_w == w && a->classes == classes);
  CHECK(memchr(a->text, 0, sizeof a->text) != NULL && a->text[0]);
  CHECK(ct_shape_count(&a->values[0].shape) == (size_t)c * h * w);
  for (int i = 0; i < a->n; i++) {
    const ct_node *n = &a->nodes[i];
    CHECK(n->op != NULL && n->n_in == 1);
    CHECK(n->in[0] == (i == 0 ? 0 : a->nodes[i - 1].out));   // a chain
    CHECK(n->op->is_loss == (i == a->n - 1));
    size_t feat = ct_shape_count(&a->values[n->out].shape);
    CHECK(feat >= 1 && feat <= 0x7fffffff);
    for (int d = 0; d < a->values[n->out].shape.nd; d++) CHECK(a->values[n->out].shape.d[d] >= 1);
    if (n->fused) CHECK(i > 0 && a->values[n->out].alias == a->nodes[i - 1].out);
    for (int j = 0; j < n->n_in; j++)   // a needed gradient is written or shared
      CHECK(!n->backward || !a->values[n->in[j]].needs_grad ||
            n->dx_mode[j] == CT_GRAD_WRITE || n->dx_mode[j] == CT_GRAD_SHARED);
  }
  CHECK(ct_shape_count(&a->values[a->logits].shape) == (size_t)classes);
  size_t off = 0;
  for (int t = 0; t < a->nt; t++) {
    const ct_tensor *x = &a->tensors[t];
    CHECK(x->off == off && x->count >= 1);
    CHECK(x->first_writer >= 0 && x->last_writer == x->first_writer);   // a chain: once
    CHECK(x->init.kind != CT_INIT_HE_OR_XAVIER);                          // resolved
    off += x->count;
  }
  CHECK(off == a->param_count);
  CHECK(a->n_pool >= 1 && a->n_pool <= 2);   // a chain's ping-pong
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
  CHECK(a->nt == b->nt && a->nv == b->nv);
  for (int i = 0; i < a->n; i++)
    CHECK(a->nodes[i].op == b->nodes[i].op && !strcmp(a->nodes[i].token, b->nodes[i].token) &&
          memcmp(a->nodes[i].cfg, b->nodes[i].cfg, sizeof a->nodes[i].cfg) == 0);
  for (int v = 0; v < a->nv; v++)
    CHECK(memcmp(&a->values[v].shape, &b->values[v].shape, sizeof a->values[v].shape) == 0);
  for (int t = 0; t < a->nt; t++)
    CHECK(!strcmp(a->tensors[t].name, b->tensors[t].name) &&
          a->tensors[t].count == b->tensors[t].count);
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
