// test_model.c: the model (model.h): architecture parsing (presets, good strings, every class
// of bad string), seeded initialisation, the whole forward pass against a plain-C reference,
// finite-difference gradient checks of small whole models, loss_scale semantics, and that the
// gradients of a batch split in two parts sum to those of the whole batch (data parallelism).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/layers.h"
#include "cltrain/model.h"
#include "op_ref.h"
#include "testutil.h"

static ct_device g_dev;

// ---- architecture parsing --------------------------------------------------------------------

// The named tensor `name` of a; fails when there is none.
static const ct_tensor *tensor(const ct_arch *a, const char *name) {
  int t = ct_arch_tensor_find(a, name);
  ck_assert_msg(t >= 0, "%s has no tensor %s", a->text, name);
  return &a->tensors[t];
}
static const ct_shape *in_of(const ct_arch *a, int i) { return &a->values[a->nodes[i].in[0]].shape; }
static const ct_shape *out_of(const ct_arch *a, int i) { return &a->values[a->nodes[i].out].shape; }

START_TEST(presets_have_the_reference_shapes) {
  ct_arch a;
  ck_assert_ct(ct_arch_parse("mlp", 1, 28, 28, 10, &a));
  ck_assert_uint_eq(a.param_count, 669706);
  ck_assert_int_eq(a.n, 7);   // six layers and the loss
  ck_assert_str_eq(a.nodes[6].op->name, "softmax_xent");
  ck_assert_str_eq(a.text, "flatten,dense:512,relu,dense:512,relu,dense:10");
  ck_assert_int_eq(in_of(&a, 1)->nd, 1);
  ck_assert_int_eq(in_of(&a, 1)->d[0], 784);
  ck_assert_uint_eq(tensor(&a, "1.weight")->count, 784 * 512);
  ck_assert_int_eq(tensor(&a, "1.weight")->shape[0], 512);
  ck_assert_int_eq(tensor(&a, "1.weight")->shape[1], 784);
  ck_assert_uint_eq(tensor(&a, "5.bias")->off + tensor(&a, "5.bias")->count, a.param_count);
  ck_assert_int_eq(a.nt, 6);
  ck_assert_int_eq(a.nodes[2].fused, 1);   // the ReLUs after dense are fused into it
  ck_assert_int_eq(a.nodes[4].fused, 1);
  ck_assert_int_eq(a.n_pool, 2);           // a chain's gradient ping-pong

  ck_assert_ct(ct_arch_parse("cnn", 1, 28, 28, 10, &a));
  ck_assert_uint_eq(a.param_count, 421642);
  ck_assert_int_eq(a.n, 11);
  ck_assert_str_eq(a.text, "conv3x3:32,relu,maxpool2,conv3x3:64,relu,maxpool2,flatten,"
                           "dense:128,relu,dense:10");
  ck_assert_str_eq(a.nodes[0].op->name, "conv2d");
  ck_assert_int_eq(out_of(&a, 0)->d[0], 32); ck_assert_int_eq(out_of(&a, 0)->d[1], 28);
  const ct_tensor *w1 = tensor(&a, "0.weight"), *b1 = tensor(&a, "0.bias");
  ck_assert_uint_eq(w1->off, 0); ck_assert_uint_eq(w1->count, 288);
  ck_assert_int_eq(w1->nd, 4); ck_assert_int_eq(w1->shape[1], 1); ck_assert_int_eq(w1->shape[3], 3);
  ck_assert_uint_eq(b1->off, 288); ck_assert_uint_eq(b1->count, 32);
  ck_assert_int_eq(in_of(&a, 3)->d[0], 32); ck_assert_int_eq(in_of(&a, 3)->d[1], 14);
  ck_assert_uint_eq(tensor(&a, "3.weight")->off, 320);
  ck_assert_uint_eq(tensor(&a, "3.weight")->count, 64 * 32 * 9);
  ck_assert_int_eq(out_of(&a, 5)->d[1], 7);
  ck_assert_str_eq(a.nodes[7].op->name, "dense");
  ck_assert_int_eq(tensor(&a, "7.weight")->shape[1], 3136);
  ck_assert_int_eq(tensor(&a, "7.weight")->shape[0], 128);
  for (int t = 0; t < a.nt; t++) ck_assert_int_eq(a.tensors[t].decay, 1);   // as PyTorch's SGD
  // The canonical text parses to the same architecture.
  ct_arch b;
  ck_assert_ct(ct_arch_parse(a.text, 1, 28, 28, 10, &b));
  ck_assert_str_eq(b.text, a.text);
  ck_assert_uint_eq(b.param_count, a.param_count);
  char desc[4096];
  ct_arch_describe(&a, desc, sizeof desc);
  ck_assert_ptr_nonnull(strstr(desc, "total 421642 parameters"));
  ck_assert_ptr_nonnull(strstr(desc, " 7 dense    3136x1x1 -> 128x1x1  params 401536"));
}
END_TEST

START_TEST(good_strings_parse) {
  ct_arch a, b;
  ck_assert_ct(ct_arch_parse("conv5x5:16/s2/p2,relu,maxpool2,dropout:0.25,dense:10", 1, 28, 28,
                             10, &a));
  ck_assert_str_eq(a.text, "conv5x5:16/s2,relu,maxpool2,dropout:0.25,dense:10");
  ck_assert_int_eq(out_of(&a, 0)->d[1], 14);
  ck_assert_int_eq(out_of(&a, 2)->d[0], 16); ck_assert_int_eq(out_of(&a, 2)->d[1], 7);
  ck_assert_str_eq(a.nodes[3].token, "dropout:0.25");
  ck_assert_int_eq(tensor(&a, "4.weight")->shape[1], 16 * 7 * 7);   // dense flattens implicitly
  ck_assert_uint_eq(a.param_count, 16 * 25 + 16 + 784 * 10 + 10);
  ck_assert_ct(ct_arch_parse(a.text, 1, 28, 28, 10, &b));
  ck_assert_str_eq(b.text, a.text);

  ck_assert_ct(ct_arch_parse("dense:10", 1, 28, 28, 10, &a));
  ck_assert_uint_eq(a.param_count, 7850);
  ck_assert_ct(ct_arch_parse(" dense:32 , relu,dense:10 ", 1, 28, 28, 10, &a));
  ck_assert_str_eq(a.text, "dense:32,relu,dense:10");
  ck_assert_ct(ct_arch_parse("conv3x3:8/p0/s2,flatten,dense:3", 3, 13, 11, 3, &a));
  ck_assert_str_eq(a.text, "conv3x3:8/s2/p0,flatten,dense:3");
  ck_assert_int_eq(out_of(&a, 0)->d[1], 6); ck_assert_int_eq(out_of(&a, 0)->d[2], 5);
  ck_assert_int_eq(out_of(&a, 1)->d[0], 8 * 6 * 5);
  ck_assert_ct(ct_arch_parse("dropout:-0,dense:10", 1, 28, 28, 10, &a));
  ck_assert_str_eq(a.text, "dropout:0,dense:10");
  ck_assert_ct(ct_arch_parse("dropout:0.1,conv1x1:10,maxpool3", 2, 3, 3, 10, &a));
  ck_assert_str_eq(a.text, "dropout:0.1,conv1x1:10,maxpool3");
  ck_assert_int_eq(out_of(&a, 1)->d[1], 3);   // padding 1/2 = 0 keeps 3x3
  // Presets follow the number of classes.
  ck_assert_ct(ct_arch_parse("mlp", 1, 28, 28, 26, &a));
  ck_assert_int_eq(out_of(&a, a.n - 2)->d[0], 26);
}
END_TEST

// spec -> CT_ERR_USAGE with a message containing each of the NULL-terminated fragments.
static void expect_bad(const char *spec, int c, int h, int w, int classes, const char *f1,
                       const char *f2, const char *f3) {
  ct_arch a;
  ct_error_clear();
  ct_status st = ct_arch_parse(spec, c, h, w, classes, &a);
  ck_assert_msg(st == CT_ERR_USAGE, "'%s' gave %s, expected a usage error", spec,
                ct_strerror(st));
  const char *msg = ct_error_text();
  ck_assert_msg(!strchr(msg, '\n'), "'%s': message is not one line: %s", spec, msg);
  ck_assert_msg(!strncmp(msg, "--arch: ", 8), "'%s': message does not name --arch: %s", spec, msg);
  const char *frags[] = {f1, f2, f3};
  for (int i = 0; i < 3; i++)
    ck_assert_msg(!frags[i] || strstr(msg, frags[i]), "'%s': message lacks '%s': %s", spec,
                  frags[i], msg);
  ck_assert_int_eq(a.n, 0);
  ct_error_clear();
}

START_TEST(bad_strings_name_the_token) {
  // syntax
  expect_bad("conv3x3:4,relu,conv3x:32,flatten,dense:10", 1, 28, 28, 10,
             "token 3 'conv3x:32'", "expected convKxK:N", NULL);
  expect_bad("conv3x5:8,dense:10", 1, 28, 28, 10, "token 1 'conv3x5:8'", "square", NULL);
  expect_bad("conv3x3:8/s0,dense:10", 1, 28, 28, 10, "token 1", "stride", NULL);
  expect_bad("conv3x3:8/p3,dense:10", 1, 28, 28, 10, "token 1 'conv3x3:8/p3'", "padding", NULL);
  expect_bad("conv3x3:8/s2/s2,dense:10", 1, 28, 28, 10, "token 1", "twice", NULL);
  expect_bad("conv3x3:8/x2,dense:10", 1, 28, 28, 10, "token 1 'conv3x3:8/x2'", "/sS", NULL);
  expect_bad("conv3x3:0,dense:10", 1, 28, 28, 10, "token 1 'conv3x3:0'", NULL, NULL);
  expect_bad("dense:0", 1, 28, 28, 10, "token 1 'dense:0'", "dense:N", NULL);
  expect_bad("relu,dense:", 1, 28, 28, 10, "token 2 'dense:'", "dense:N", NULL);
  expect_bad("dense:10x", 1, 28, 28, 10, "token 1 'dense:10x'", NULL, NULL);
  expect_bad("dense:-5,dense:10", 1, 28, 28, 10, "token 1 'dense:-5'", NULL, NULL);
  expect_bad("dense:99999999999999,dense:10", 1, 28, 28, 10, "token 1", NULL, NULL);
  expect_bad("dense:32,dropout:1,dense:10", 1, 28, 28, 10, "token 2 'dropout:1'", "0 <= P < 1",
             NULL);
  expect_bad("dropout:-0.1,dense:10", 1, 28, 28, 10, "token 1 'dropout:-0.1'", NULL, NULL);
  expect_bad("dropout:nan,dense:10", 1, 28, 28, 10, "token 1 'dropout:nan'", NULL, NULL);
  expect_bad("dropout:,dense:10", 1, 28, 28, 10, "token 1 'dropout:'", NULL, NULL);
  expect_bad("maxpool0,dense:10", 1, 28, 28, 10, "token 1 'maxpool0'", "maxpoolK", NULL);
  expect_bad("maxpool,dense:10", 1, 28, 28, 10, "token 1 'maxpool'", NULL, NULL);
  expect_bad("dense:32,relu6,dense:10", 1, 28, 28, 10, "token 2 'relu6'", "unknown layer", NULL);
  expect_bad("dense:32,,dense:10", 1, 28, 28, 10, "token 2 is empty", NULL, NULL);
  expect_bad("dense:10,", 1, 28, 28, 10, "token 2 is empty", NULL, NULL);
  expect_bad("", 1, 28, 28, 10, "empty architecture", NULL, NULL);
  expect_bad("MLP", 1, 28, 28, 10, "token 1 'MLP'", "unknown layer", NULL);
  // shapes
  expect_bad("dense:32,conv3x3:8,dense:10", 1, 28, 28, 10, "token 2 'conv3x3:8'",
             "32 features", "dense:32");
  expect_bad("flatten,maxpool2,dense:10", 1, 28, 28, 10, "token 2 'maxpool2'", "784 features",
             NULL);
  expect_bad("maxpool2,maxpool2,maxpool2,maxpool2,maxpool2,dense:10", 1, 28, 28, 10,
             "token 5 'maxpool2'", "1x1x1", "empty");
  expect_bad("conv7x7:4/p0,conv7x7:4/p0,conv7x7:4/p0,conv7x7:4/p0,conv7x7:4/p0,dense:10", 1, 28,
             28, 10, "token 5 'conv7x7:4/p0'", "4x4x4", NULL);
  expect_bad("conv5x5:8/p0,dense:10", 1, 3, 9, 10, "token 1", "1x3x9", NULL);
  expect_bad("dense:32,relu,dense:12", 1, 28, 28, 10, "token 3 'dense:12'", "12 outputs",
             "10 classes");
  expect_bad("conv3x3:4", 1, 28, 28, 10, "token 1", "3136 outputs", "10 classes");
  expect_bad("dense:200000,dense:200000,dense:10", 1, 28, 28, 10, "token 2", "parameters", NULL);
  expect_bad("conv1x1:16777216,conv60000x60000:16777216/p59999,dense:10", 1, 1, 1, 10,
             "token 2", "parameters", NULL);
  char many[4096] = "";
  for (int i = 0; i < 520; i++) strcat(many, "relu,");
  strcat(many, "dense:10");
  expect_bad(many, 1, 28, 28, 10, "canonical architecture text is longer than 1023", NULL, NULL);
  expect_bad("dense:10", 0, 28, 28, 10, "data shape", NULL, NULL);
  expect_bad("dense:32,re\nlu,dense:10", 1, 28, 28, 10, "token 2 contains a control character",
             NULL, NULL);
}
END_TEST

// The graph builder: a tied tensor is one tensor whose gradient gets both contributions (the
// first in backward order writes, the next adds), a dangling branch is refused, and the graph
// has a cap that is one line. (A value with two consumers: the residual add's lines.)
START_TEST(builder_shares_values_and_tensors) {
  ct_arch *a = malloc(sizeof *a);
  ct_shape in = {1, {12, 0, 0}, 0};
  ct_arch_begin(a, &in);
  int x = 0, h, r, y, z, tied[CT_OP_MAX_PARAMS] = {-1, -1, -1, -1};
  ck_assert_ct(ct_arch_add(a, "dense", "dense:8", &x, 1, "fc", NULL, &h));
  ck_assert_ct(ct_arch_add(a, "relu", "relu", &h, 1, "act", NULL, &r));
  ck_assert_ct(ct_arch_add(a, "dense", "dense:8/nobias", &r, 1, "p1", NULL, &y));
  tied[0] = ct_arch_tensor_find(a, "p1.weight");
  ck_assert_int_ge(tied[0], 0);
  ck_assert_ct(ct_arch_add(a, "dense", "dense:8/nobias", &y, 1, "p2", tied, &z));
  ck_assert_ct(ct_arch_end(a, "softmax_xent", z, 1));
  ck_assert_int_eq(a->nt, 3);                       // fc.weight, fc.bias, p1.weight
  ck_assert_int_eq(ct_arch_tensor_find(a, "p2.weight"), -1);
  ck_assert_int_eq(a->nodes[1].fused, 1);           // the relu, into fc
  const ct_node *p1 = &a->nodes[2], *p2 = &a->nodes[3];
  // backward runs p2 first: it writes p1.weight's gradient, p1 adds to it
  ck_assert_int_eq(p2->dp_mode[0], CT_GRAD_WRITE);
  ck_assert_int_eq(p1->dp_mode[0], CT_GRAD_ADD);
  ck_assert_int_eq(a->tensors[tied[0]].first_writer, 3);
  ck_assert_int_eq(a->tensors[tied[0]].last_writer, 2);   // complete after p1's backward
  ck_assert_int_eq(a->nodes[2].marks, 1);
  ck_assert_int_eq(a->nodes[3].marks, 0);
  // through the model: the tied weight's gradient is the sum of both uses (finite differences)
  ct_model *m = malloc(sizeof *m);
  ck_assert_ct(ct_model_init(&g_dev, a, 3, m));
  float *p = malloc(a->param_count * 4), xin[36], g0;
  int lab[3] = {1, 5, 7};
  ct_model_init_params(a, 4, p);
  ct_test_rand_fill(xin, 36, 8, -1, 1);
  ck_assert_ct(ct_model_set_batch(m, xin, lab, 3));
  double l[2];
  size_t j = a->tensors[tied[0]].off + 11;
  for (int k = 0; k < 3; k++) {
    if (k < 2) p[j] += k ? -2e-3f : 1e-3f;   // +eps, then -eps, then back
    else p[j] += 1e-3f;
    ck_assert_ct(ct_model_upload_params(m, p));
    ck_assert_ct(ct_model_forward(m, 3, 0, 0));
    ck_assert_ct(ct_model_backward(m, 3, 1.0f));
    float losses[3];
    ck_assert_ct(ct_model_read_losses(m, 3, losses));
    if (k < 2) l[k] = (double)losses[0] + losses[1] + losses[2];
  }
  ck_assert_int_eq(clEnqueueReadBuffer(g_dev.queue, m->grads, CL_TRUE, j * 4, 4, &g0, 0, NULL,
                                       NULL), CL_SUCCESS);
  double fd = (l[0] - l[1]) / 2e-3;
  ck_assert_msg(fabs(fd - g0) <= 2e-3 + 2e-2 * fabs(g0), "tied weight: gradient %g, finite "
                "differences %g", (double)g0, fd);
  ct_model_free(m);
  free(m), free(p);
  // a graph with a dangling branch is refused
  ct_arch_begin(a, &in);
  ck_assert_ct(ct_arch_add(a, "dense", "dense:8", &x, 1, "fc", NULL, &h));
  ck_assert_ct(ct_arch_add(a, "dense", "dense:4", &x, 1, "dangling", NULL, &y));
  ct_error_clear();
  ck_assert_int_eq(ct_arch_end(a, "softmax_xent", h, 1), CT_ERR_USAGE);
  ck_assert_ptr_nonnull(strstr(ct_error_text(), "does not reach the loss"));
  ct_error_clear();
  // the node cap
  ct_arch_begin(a, &in);
  int v = 0;
  ct_status st = CT_OK;
  for (int i = 0; i < CT_MAX_NODES + 2 && st == CT_OK; i++)
    st = ct_arch_add(a, "relu", "relu", &v, 1, "r", NULL, &v);
  ck_assert_int_eq(st, CT_ERR_USAGE);
  char want[64];
  snprintf(want, sizeof want, "more than %d layers", CT_MAX_NODES - 1);
  ck_assert_ptr_nonnull(strstr(ct_error_text(), want));
  ct_error_clear();
  free(a);
}
END_TEST

// ---- initialisation --------------------------------------------------------------------------

static double std_of(const float *x, size_t n) {
  double s = 0, s2 = 0;
  for (size_t i = 0; i < n; i++) s += x[i], s2 += (double)x[i] * x[i];
  double m = s / (double)n;
  return sqrt(s2 / (double)n - m * m);
}

START_TEST(init_is_seeded) {
  ct_arch a;
  ck_assert_ct(ct_arch_parse("cnn", 1, 28, 28, 10, &a));
  size_t n = a.param_count;
  float *p1 = malloc(n * 4), *p2 = malloc(n * 4), *p3 = malloc(n * 4);
  ct_model_init_params(&a, 1, p1);
  ct_model_init_params(&a, 1, p2);
  ct_model_init_params(&a, 2, p3);
  ck_assert_int_eq(memcmp(p1, p2, n * 4), 0);
  size_t same = 0;
  for (size_t i = 0; i < n; i++) same += p1[i] == p3[i];
  ck_assert_msg(same < n / 100, "seeds 1 and 2 agree on %zu of %zu parameters", same, n);
  for (int t = 0; t < a.nt; t++) {
    const ct_tensor *x = &a.tensors[t];
    int bias = strstr(x->name, ".bias") != NULL;
    for (size_t j = 0; j < x->count; j++)
      if (bias) ck_assert_float_eq(p1[x->off + j], 0.0f);
      else ck_assert(isfinite(p1[x->off + j]));
  }
  // He normal before ReLU: conv2 (fan_in 288), dense 3136->128; Xavier for the last dense.
  double s_conv2 = std_of(p1 + tensor(&a, "3.weight")->off, tensor(&a, "3.weight")->count);
  double s_dense = std_of(p1 + tensor(&a, "7.weight")->off, tensor(&a, "7.weight")->count);
  double s_last = std_of(p1 + tensor(&a, "9.weight")->off, tensor(&a, "9.weight")->count);
  ck_assert_msg(fabs(s_conv2 / sqrt(2.0 / 288) - 1) < 0.03, "conv2 std %g", s_conv2);
  ck_assert_msg(fabs(s_dense / sqrt(2.0 / 3136) - 1) < 0.02, "dense std %g", s_dense);
  ck_assert_msg(fabs(s_last / sqrt(2.0 / 138) - 1) < 0.1, "last dense std %g", s_last);
  free(p1), free(p2), free(p3);
}
END_TEST

// ---- a plain-C forward pass of a whole model ---------------------------------------------------

// logits (batch, classes) of the model on x, double precision, dropout as the device does it:
// the ops' references (op_ref.c) node by node.
static void ref_forward(const ct_arch *a, const float *params, const float *x, int batch,
                        int train, uint64_t seed, int offset, double *logits) {
  double **val = calloc((size_t)a->nv, sizeof *val);
  double *p = malloc((a->param_count ? a->param_count : 1) * sizeof *p);
  for (size_t i = 0; i < a->param_count; i++) p[i] = params[i];
  size_t in = ct_shape_count(&a->values[0].shape);
  val[0] = malloc((size_t)batch * in * sizeof **val);
  for (size_t i = 0; i < (size_t)batch * in; i++) val[0][i] = x[i];
  for (int i = 0; i < a->n; i++) {
    const ct_node *n = &a->nodes[i];
    if (n->op->is_loss) continue;
    const ct_ref_op *r = ct_ref_find(n->op->name);
    ck_assert_msg(r != NULL, "no reference for op %s", n->op->name);
    ct_ref_ctx c = {batch, train, ct_model_dropout_seed(seed, i), (uint32_t)offset, NULL, 1.0};
    const double *xs[CT_OP_MAX_IN] = {0};
    for (int j = 0; j < n->n_in; j++) xs[j] = val[n->in[j]];
    val[n->out] = calloc((size_t)batch * ct_shape_count(&a->values[n->out].shape), sizeof **val);
    r->forward(a, n, &c, xs, p, val[n->out]);
  }
  memcpy(logits, val[a->logits], (size_t)batch * a->classes * sizeof *logits);
  for (int v = 0; v < a->nv; v++) free(val[v]);
  free(val), free(p);
}

// ---- a small model on the device -------------------------------------------------------------

typedef struct {
  ct_arch arch;
  ct_model m;
  int batch;
  float *params, *x;
  int *y;
} fixture;

static void fixture_init(fixture *f, const char *spec, int c, int h, int w, int classes,
                         int batch, uint64_t seed) {
  memset(f, 0, sizeof *f);
  ck_assert_ct(ct_arch_parse(spec, c, h, w, classes, &f->arch));
  ck_assert_ct(ct_model_init(&g_dev, &f->arch, batch, &f->m));
  f->batch = batch;
  size_t np = f->arch.param_count, nx = (size_t)batch * c * h * w;
  f->params = malloc(np * 4);
  f->x = malloc(nx * 4);
  f->y = malloc((size_t)batch * sizeof(int));
  ct_model_init_params(&f->arch, seed, f->params);
  uint64_t s = seed * 7 + 1;
  for (int t = 0; t < f->arch.nt; t++)   // non-zero biases exercise the bias paths
    if (strstr(f->arch.tensors[t].name, ".bias"))
      for (size_t j = 0; j < f->arch.tensors[t].count; j++)
        f->params[f->arch.tensors[t].off + j] = ct_test_rand_uniform(&s, -0.2f, 0.2f);
  ct_test_rand_fill(f->x, nx, seed + 100, -1, 1);
  for (int i = 0; i < batch; i++) f->y[i] = (int)(ct_test_rand_u64(&s) % (uint64_t)classes);
  ck_assert_ct(ct_model_upload_params(&f->m, f->params));
  ck_assert_ct(ct_model_set_batch(&f->m, f->x, f->y, batch));
}

static void fixture_free(fixture *f) {
  ct_model_free(&f->m);
  free(f->params), free(f->x), free(f->y);
}

static float *read_grads(ct_model *m) {
  size_t n = m->arch.param_count;
  float *g = malloc(n * 4);
  ck_assert_int_eq(clEnqueueReadBuffer(g_dev.queue, m->grads, CL_TRUE, 0, n * 4, g, 0, NULL, NULL),
                   CL_SUCCESS);
  return g;
}

static double loss_sum(fixture *f, int train, uint64_t seed) {
  float losses[64];
  ck_assert_ct(ct_model_forward(&f->m, f->batch, train, seed));
  ck_assert_ct(ct_model_backward(&f->m, f->batch, 1.0f));
  ck_assert_ct(ct_model_read_losses(&f->m, f->batch, losses));
  double s = 0;
  for (int i = 0; i < f->batch; i++) s += losses[i];
  return s;
}

static double loss_at(fixture *f, size_t j, float value, int train, uint64_t seed) {
  float keep = f->params[j];
  f->params[j] = value;
  ck_assert_ct(ct_model_upload_params(&f->m, f->params));
  double l = loss_sum(f, train, seed);
  f->params[j] = keep;
  return l;
}

// The device's forward pass against ref_forward: logits and losses.
static void check_forward(fixture *f, int train, uint64_t seed) {
  int B = f->batch, C = f->arch.classes;
  double *want = malloc((size_t)B * C * sizeof *want);
  ref_forward(&f->arch, f->params, f->x, B, train, seed, f->m.sample_offset, want);
  float *got = malloc((size_t)B * C * 4), losses[64];
  ck_assert_ct(ct_model_upload_params(&f->m, f->params));
  ck_assert_ct(ct_model_forward(&f->m, B, train, seed));
  ck_assert_ct(ct_model_backward(&f->m, B, 1.0f));
  ck_assert_ct(ct_model_read_logits(&f->m, B, got));
  ck_assert_ct(ct_model_read_losses(&f->m, B, losses));
  for (int i = 0; i < B * C; i++)
    ck_assert_msg(fabs(got[i] - want[i]) <= 1e-4 * fabs(want[i]) + 1e-5,
                  "%s: logit %d is %g, the reference says %g", f->arch.text, i, (double)got[i],
                  want[i]);
  for (int i = 0; i < B; i++) {
    const double *z = want + (size_t)i * C;
    double m = z[0], s = 0;
    for (int j = 1; j < C; j++) m = fmax(m, z[j]);
    for (int j = 0; j < C; j++) s += exp(z[j] - m);
    double l = log(s) + m - z[f->y[i]];
    ck_assert_msg(fabs(losses[i] - l) <= 1e-4 * fabs(l) + 1e-5, "%s: loss %d is %g, want %g",
                  f->arch.text, i, (double)losses[i], l);
  }
  free(want), free(got);
}

// Central differences of the summed loss against ct_model_backward(scale 1) for every
// parameter, at eps = 1e-2 and, where that disagrees (a ReLU or max-pool kink within eps), at
// eps/4. Where the two quotients also disagree with each other the loss is not smooth there and
// the parameter is not judged (at most 10% may be, and more than half of every layer's
// parameters must be verified).
static void gradcheck(const char *spec, int c, int h, int w, int classes, int batch, int train) {
  fixture f;
  const uint64_t seed = 5;
  fixture_init(&f, spec, c, h, w, classes, batch, 3);
  check_forward(&f, train, seed);
  ck_assert_ct(ct_model_upload_params(&f.m, f.params));
  loss_sum(&f, train, seed);
  float *g = read_grads(&f.m);
  const double eps = 1e-2;
  size_t kinks = 0, checked = 0;
  for (int li = 0; li < f.arch.nt; li++) {   // per tensor
    const ct_tensor *L = &f.arch.tensors[li];
    size_t layer_checked = 0;
    for (size_t j = L->off; j < L->off + L->count; j++) {
      double p = f.params[j];
      double fd = (loss_at(&f, j, (float)(p + eps), train, seed) -
                   loss_at(&f, j, (float)(p - eps), train, seed)) / (2 * eps);
      double tol = 2e-3 + 1e-2 * fabs(g[j]);
      if (fabs(fd - g[j]) <= tol) {
        layer_checked++;
        continue;
      }
      // A ReLU or max-pool kink within eps: try again closer.
      double e2 = eps / 4;
      double fd2 = (loss_at(&f, j, (float)(p + e2), train, seed) -
                    loss_at(&f, j, (float)(p - e2), train, seed)) / (2 * e2);
      if (fabs(fd2 - g[j]) <= tol) {
        layer_checked++;
        continue;
      }
      if (fabs(fd2 - fd) > tol) {   // not smooth within eps/4 either: cannot judge
        kinks++;
        continue;
      }
      ck_assert_msg(0, "%s: d loss / d param %zu (tensor %s) is %.6g, central differences "
                    "give %.6g", f.arch.text, j, L->name, (double)g[j], fd);
    }
    ck_assert_msg(layer_checked > L->count / 2,
                  "%s: only %zu of tensor %s's parameters could be checked", f.arch.text,
                  layer_checked, L->name);
    checked += layer_checked;
  }
  ck_assert_msg(kinks * 10 <= f.arch.param_count, "%s: %zu of %zu parameters sit on kinks",
                f.arch.text, kinks, f.arch.param_count);
  fprintf(stderr, "gradcheck %s: %zu parameters agree, %zu near a kink skipped\n", f.arch.text,
          checked, kinks);
  free(g);
  fixture_free(&f);
}

START_TEST(forward_matches_reference) {
  fixture f;
  fixture_init(&f, "conv5x5:3/s2/p2,relu,maxpool2,conv3x3:4,relu,flatten,dropout:0.3,dense:5,"
               "relu,dense:4", 2, 13, 11, 4, 7, 11);
  check_forward(&f, 0, 0);
  check_forward(&f, 1, 99);
  check_forward(&f, 1, 100);
  f.m.sample_offset = 5;   // dropout masks of samples 5.. of a larger batch
  check_forward(&f, 1, 100);
  f.m.sample_offset = 0;
  fixture_free(&f);
  fixture_init(&f, "mlp", 1, 28, 28, 10, 5, 12);
  check_forward(&f, 0, 0);
  fixture_free(&f);
}
END_TEST

START_TEST(gradients_match_finite_differences) {
  gradcheck("conv3x3:4,relu,maxpool2,dense:6,relu,dense:3", 1, 6, 6, 3, 3, 0);
  // conv after conv (input gradient of a convolution), stride, dropout with a fixed mask
  gradcheck("conv3x3:3/s2/p1,relu,conv2x2:2/p0,flatten,dropout:0.4,dense:5,relu,dense:3", 2, 7,
            5, 3, 2, 1);
  // leading layers without parameters are skipped by the backward pass
  gradcheck("maxpool2,dense:4,relu,dense:3", 1, 4, 5, 3, 3, 0);
}
END_TEST

START_TEST(loss_scale_scales_gradients) {
  fixture f;
  fixture_init(&f, "conv3x3:4,relu,maxpool2,dense:6,relu,dense:3", 1, 6, 6, 3, 4, 21);
  size_t n = f.arch.param_count;
  ck_assert_ct(ct_model_forward(&f.m, 4, 0, 0));
  ck_assert_ct(ct_model_backward(&f.m, 4, 1.0f));
  float *g1 = read_grads(&f.m);
  float l1[4], l2[4];
  ck_assert_ct(ct_model_read_losses(&f.m, 4, l1));
  ck_assert_ct(ct_model_backward(&f.m, 4, 0.25f));
  float *g2 = read_grads(&f.m);
  ck_assert_ct(ct_model_read_losses(&f.m, 4, l2));
  ck_assert_ct(ct_model_backward(&f.m, 4, 1.0f / 3.0f));
  float *g3 = read_grads(&f.m);
  double norm = 0;
  for (size_t i = 0; i < n; i++) {
    norm += fabs(g1[i]);
    ck_assert_msg(fabsf(g2[i] - 0.25f * g1[i]) <= 1e-6f * fabsf(g1[i]), "grad %zu: %g vs %g / 4",
                  i, (double)g2[i], (double)g1[i]);
    ck_assert_msg(fabsf(g3[i] - g1[i] / 3.0f) <= 1e-5f * fabsf(g1[i]) + 1e-9f,
                  "grad %zu: %g vs %g / 3", i, (double)g3[i], (double)g1[i]);
  }
  ck_assert(norm > 0);
  for (int i = 0; i < 4; i++) ck_assert_float_eq(l1[i], l2[i]);   // losses stay unscaled
  free(g1), free(g2), free(g3);
  fixture_free(&f);
}
END_TEST

// Gradients of a batch split into parts (each with loss_scale 1/total, sample_offset = where
// the part starts) sum to the gradients of the whole batch, dropout included: what the SUM
// all-reduce of data parallelism relies on.
START_TEST(split_batch_gradients_sum_to_whole) {
  const int total = 7;
  const uint64_t seed = 77;
  fixture f;
  fixture_init(&f, "conv3x3:4,relu,maxpool2,dropout:0.2,dense:6,relu,dense:3", 1, 6, 6, 3, total,
               31);
  size_t n = f.arch.param_count, sample = 36;
  ck_assert_ct(ct_model_forward(&f.m, total, 1, seed));
  ck_assert_ct(ct_model_backward(&f.m, total, 1.0f / total));
  float *whole = read_grads(&f.m);
  float lw[7], lp[7];
  ck_assert_ct(ct_model_read_losses(&f.m, total, lw));
  const int splits[][2] = {{3, 4}, {1, 6}, {6, 1}};
  for (int s = 0; s < 3; s++) {
    double *sum = calloc(n, sizeof *sum);
    int start = 0;
    for (int part = 0; part < 2; part++) {
      int b = splits[s][part];
      ck_assert_ct(ct_model_set_batch(&f.m, f.x + (size_t)start * sample, f.y + start, b));
      f.m.sample_offset = start;
      ck_assert_ct(ct_model_forward(&f.m, b, 1, seed));
      ck_assert_ct(ct_model_backward(&f.m, b, 1.0f / total));
      ck_assert_ct(ct_model_read_losses(&f.m, b, lp + start));
      float *g = read_grads(&f.m);
      for (size_t i = 0; i < n; i++) sum[i] += g[i];
      free(g);
      start += b;
    }
    for (int i = 0; i < total; i++)
      ck_assert_msg(fabsf(lp[i] - lw[i]) <= 1e-5f * fabsf(lw[i]) + 1e-6f,
                    "split %d+%d: loss %d is %g, whole batch %g", splits[s][0], splits[s][1], i,
                    (double)lp[i], (double)lw[i]);
    for (size_t i = 0; i < n; i++)
      ck_assert_msg(fabs(sum[i] - whole[i]) <= 1e-4 * fabs(whole[i]) + 1e-6,
                    "split %d+%d: grad %zu sums to %g, whole batch %g", splits[s][0],
                    splits[s][1], i, sum[i], (double)whole[i]);
    free(sum);
  }
  // Without the offset the second part would reuse the first part's masks: different losses.
  f.m.sample_offset = 0;
  ck_assert_ct(ct_model_set_batch(&f.m, f.x + 3 * sample, f.y + 3, 4));
  ck_assert_ct(ct_model_forward(&f.m, 4, 1, seed));
  ck_assert_ct(ct_model_backward(&f.m, 4, 1.0f / total));
  ck_assert_ct(ct_model_read_losses(&f.m, 4, lp));
  int differ = 0;
  for (int i = 0; i < 4; i++) differ += fabsf(lp[i] - lw[3 + i]) > 1e-5f * fabsf(lw[3 + i]);
  ck_assert_msg(differ > 0, "dropout masks do not depend on sample_offset");
  free(whole);
  fixture_free(&f);
}
END_TEST

START_TEST(batch_zero_writes_zero_gradients) {
  fixture f;
  fixture_init(&f, "conv3x3:4,relu,maxpool2,dense:6,relu,dense:3", 1, 6, 6, 3, 3, 41);
  ck_assert_ct(ct_model_forward(&f.m, 3, 0, 0));
  ck_assert_ct(ct_model_backward(&f.m, 3, 1.0f));
  float *g = read_grads(&f.m);
  size_t nonzero = 0;
  for (size_t i = 0; i < f.arch.param_count; i++) nonzero += g[i] != 0;
  ck_assert(nonzero > f.arch.param_count / 2);
  free(g);
  ck_assert_ct(ct_model_set_batch(&f.m, NULL, NULL, 0));
  ck_assert_ct(ct_model_forward(&f.m, 0, 1, 0));
  ck_assert_ct(ct_model_backward(&f.m, 0, 1.0f));
  g = read_grads(&f.m);
  for (size_t i = 0; i < f.arch.param_count; i++) ck_assert_float_eq(g[i], 0.0f);
  free(g);
  // A backward whose batch differs from the forward's is a bug, reported as such.
  ck_assert_ct(ct_model_forward(&f.m, 2, 0, 0));
  ck_assert_int_eq(ct_model_backward(&f.m, 3, 1.0f), CT_ERR_INTERNAL);
  ct_error_clear();
  ck_assert_int_eq(ct_model_forward(&f.m, 4, 0, 0), CT_ERR_INTERNAL);   // > max_batch
  ct_error_clear();
  fixture_free(&f);
}
END_TEST

START_TEST(too_large_a_model_says_how_much) {
  ct_arch a;
  ck_assert_ct(ct_arch_parse("cnn", 1, 28, 28, 10, &a));
  size_t b1 = ct_model_device_bytes(&a, 1), b128 = ct_model_device_bytes(&a, 128);
  ck_assert(b1 > 2 * 4 * a.param_count);
  ck_assert(b128 > b1);
  ct_model m;
  ct_error_clear();
  ck_assert_int_eq(ct_model_init(&g_dev, &a, 1 << 24, &m), CT_ERR_NOMEM);
  char want[64];
  snprintf(want, sizeof want, "needs %zu bytes", ct_model_device_bytes(&a, 1 << 24));
  ck_assert_msg(strstr(ct_error_text(), want) && strstr(ct_error_text(), "has"), "%s",
                ct_error_text());
  ct_error_clear();
  ck_assert_ptr_null(m.params);
  // A reasonable size works, and the same parameters come back.
  ck_assert_ct(ct_model_init(&g_dev, &a, 128, &m));
  float *p = malloc(a.param_count * 4), *q = malloc(a.param_count * 4);
  ct_model_init_params(&a, 9, p);
  ck_assert_ct(ct_model_upload_params(&m, p));
  ck_assert_ct(ct_model_download_params(&m, q));
  ck_assert_int_eq(memcmp(p, q, a.param_count * 4), 0);
  free(p), free(q);
  ct_model_free(&m);
}
END_TEST

int main(void) {
  ct_test_device("auto", &g_dev);
  Suite *s = suite_create("model");
  TCase *parse = tcase_create("arch");
  tcase_add_test(parse, presets_have_the_reference_shapes);
  tcase_add_test(parse, good_strings_parse);
  tcase_add_test(parse, bad_strings_name_the_token);
  tcase_add_test(parse, builder_shares_values_and_tensors);
  tcase_add_test(parse, init_is_seeded);
  suite_add_tcase(s, parse);
  TCase *dev = tcase_create("device");
  tcase_set_timeout(dev, 900);
  tcase_add_test(dev, forward_matches_reference);
  tcase_add_test(dev, gradients_match_finite_differences);
  tcase_add_test(dev, loss_scale_scales_gradients);
  tcase_add_test(dev, split_batch_gradients_sum_to_whole);
  tcase_add_test(dev, batch_zero_writes_zero_gradients);
  tcase_add_test(dev, too_large_a_model_says_how_much);
  suite_add_tcase(s, dev);
  int rc = ct_test_run(s, 1);
  ct_device_close(&g_dev);
  return rc;
}
