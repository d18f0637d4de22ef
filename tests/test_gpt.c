// test_gpt.c: the language model (gpt.h) against PyTorch, in the manner of llm.c's
// test_gpt2.c: tests/gpt_debug_state.safetensors (written by tests/gpt_debug_state.py, checked
// in: this test needs no PyTorch) holds a tiny model's initial weights (L2 C32 H2 T16, batch 4),
// the tokens of 10 steps, step 0's logits, loss and every gradient, and the losses of 10 AdamW
// steps with global-norm clipping. On every OpenCL device present (Oclgrind: the forward and
// backward only, in a child process, where it checks for invalid accesses and races):
//   - the logits within 1e-4 of their largest magnitude, the loss within 1e-5 relative;
//   - every gradient tensor within 1e-4 of its largest magnitude;
//   - the 10 losses of AdamW (lr 1e-3, betas 0.9/0.99, eps 1e-8, weight decay 0.1 on the
//     matrices and embeddings only, clipping to 1.0) within 1e-4 relative.
// Also: the graph's tensor table has nanoGPT's names, shapes, weight decay and tying.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/data.h"
#include "cltrain/export.h"
#include "cltrain/gpt.h"
#include "cltrain/model.h"
#include "cltrain/optim.h"
#include "testutil.h"

#ifndef CT_TEST_DIR
#define CT_TEST_DIR "tests"
#endif

static int g_small;
static ct_device g_dev;
static uint8_t *g_buf;
static size_t g_size;
static ct_st_file g_st;
static ct_gpt_config g_cfg;
static int g_batch;

static const ct_st_tensor *need(const char *name) {
  const ct_st_tensor *t = ct_safetensors_find(&g_st, name);
  ck_assert_msg(t != NULL, "the debug state has no %s", name);
  return t;
}
static const float *f32(const ct_st_tensor *t) { return (const float *)(g_st.data + t->begin); }
static const int *i32(const ct_st_tensor *t) { return (const int *)(g_st.data + t->begin); }

static void load_state(void) {
  const char *path = CT_TEST_DIR "/gpt_debug_state.safetensors";
  if (ct_read_file(path, 1 << 26, &g_buf, &g_size) != CT_OK) {
    fprintf(stderr, "test_gpt: %s\n", ct_error_text());
    exit(1);
  }
  if (ct_safetensors_parse(g_buf, g_size, path, &g_st) != CT_OK) {
    fprintf(stderr, "test_gpt: %s\n", ct_error_text());
    exit(1);
  }
  g_cfg.layers = atoi(ct_safetensors_meta(&g_st, "n_layer"));
  g_cfg.heads = atoi(ct_safetensors_meta(&g_st, "n_head"));
  g_cfg.channels = atoi(ct_safetensors_meta(&g_st, "n_embd"));
  g_cfg.seq = atoi(ct_safetensors_meta(&g_st, "block_size"));
  g_cfg.vocab = atoi(ct_safetensors_meta(&g_st, "vocab_size"));
  g_batch = atoi(ct_safetensors_meta(&g_st, "batch"));
}

// |got - want| <= tol * max|want| for every element; returns the worst ratio to that bound.
static double worst(const float *got, const float *want, size_t n, double tol, const char *what) {
  double scale = 0, w = 0;
  for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
  for (size_t i = 0; i < n; i++) {
    double e = fabs((double)got[i] - want[i]) / (tol * scale + 1e-30);
    if (e > w) w = e;
    ck_assert_msg(e <= 1.0, "%s on %s: element %zu is %.8g, PyTorch %.8g (bound %.3g)", what,
                  g_dev.info.name, i, (double)got[i], (double)want[i], tol * scale);
  }
  return w;
}

START_TEST(tensor_table_is_nanogpts) {
  ct_arch *a = malloc(sizeof *a);
  ck_assert_ct(ct_gpt_build(&g_cfg, a));
  ck_assert_str_eq(a->text, "gpt:layers=2,channels=32,heads=2,seq=16");
  for (int t = 0; t < a->nt; t++) {   // every tensor of the table is in the file, same shape
    const ct_tensor *x = &a->tensors[t];
    const ct_st_tensor *f = need(x->name);
    ck_assert_int_eq(f->nd, x->nd);
    for (int d = 0; d < x->nd; d++) ck_assert_int_eq(f->shape[d], x->shape[d]);
    ck_assert_int_eq(x->decay, x->nd >= 2);   // matrices and embeddings only
  }
  int n_file = 0;   // and every weight of the file is in the table (the tied lm_head is not)
  for (int i = 0; i < g_st.n; i++)
    if (!strncmp(g_st.t[i].name, "transformer.", 12)) n_file++;
  ck_assert_int_eq(n_file, a->nt);
  ck_assert_int_eq(ct_arch_tensor_find(a, "lm_head.weight"), -1);
  int wte = ct_arch_tensor_find(a, "transformer.wte.weight");
  ck_assert_int_eq(a->tensors[wte].off, 0);
  // tied: the lm_head writes wte's gradient first, the embedding adds to it and completes it
  ck_assert_int_eq(a->nodes[a->tensors[wte].first_writer].op->name[0], 'd');   // dense
  ck_assert_str_eq(a->nodes[a->tensors[wte].last_writer].op->name, "embedding");
  ct_gpt_config bad = g_cfg;
  bad.heads = 3;   // 3 does not divide 32
  ct_error_clear();
  ck_assert_int_eq(ct_gpt_build(&bad, a), CT_ERR_USAGE);
  ct_error_clear();
  free(a);
}
END_TEST

typedef struct {
  ct_arch *a;
  ct_model *m;
  float *params;
} gpt_fixture;

static void fixture_init(gpt_fixture *f) {
  f->a = malloc(sizeof *f->a);
  f->m = malloc(sizeof *f->m);
  ck_assert_ct(ct_gpt_build(&g_cfg, f->a));
  ck_assert_ct(ct_model_init(&g_dev, f->a, g_batch, f->m));
  f->params = malloc(f->a->param_count * sizeof *f->params);
  ck_assert_ct(ct_safetensors_to_params(&g_st, f->a, "debug state", 1, f->params));
}

// Step k's batch: the model's input (token ids) and targets.
static void set_step(gpt_fixture *f, int k) {
  size_t n = (size_t)g_batch * g_cfg.seq;
  const int *x = i32(need("debug.inputs")) + (size_t)k * n;
  const int *y = i32(need("debug.targets")) + (size_t)k * n;
  ck_assert_ct(ct_model_set_batch(f->m, (const float *)(const void *)x, y, g_batch));
}

static double step_loss(gpt_fixture *f) {
  size_t n = (size_t)g_batch * g_cfg.seq;
  float *l = malloc(n * sizeof *l);
  ck_assert_ct(ct_model_read_losses(f->m, g_batch, l));
  double s = 0;
  for (size_t i = 0; i < n; i++) s += l[i];
  free(l);
  return s / (double)n;
}

static void fixture_free(gpt_fixture *f) {
  ct_model_free(f->m);
  free(f->m), free(f->a), free(f->params);
}

START_TEST(forward_and_gradients_match_pytorch) {
  gpt_fixture f;
  fixture_init(&f);
  size_t n = (size_t)g_batch * g_cfg.seq;
  ck_assert_ct(ct_model_upload_params(f.m, f.params));
  set_step(&f, 0);
  ck_assert_ct(ct_model_forward(f.m, g_batch, 1, 0));
  ck_assert_ct(ct_model_backward(f.m, g_batch, 1.0f / (float)n));
  // logits and loss
  size_t nl = n * (size_t)g_cfg.vocab;
  float *logits = malloc(nl * sizeof *logits);
  ck_assert_ct(ct_model_read_logits(f.m, g_batch, logits));
  double wl = worst(logits, f32(need("debug.logits")), nl, 1e-4, "logits");
  double loss = step_loss(&f), want = f32(need("debug.loss"))[0];
  ck_assert_msg(fabs(loss - want) <= 1e-5 * fabs(want), "loss on %s: %.8f, PyTorch %.8f",
                g_dev.info.name, loss, want);
  // every gradient tensor
  float *g = malloc(f.a->param_count * sizeof *g);
  ck_assert_int_eq(clEnqueueReadBuffer(g_dev.queue, f.m->grads, CL_TRUE, 0,
                                       f.a->param_count * sizeof *g, g, 0, NULL, NULL),
                   CL_SUCCESS);
  double wg = 0;
  for (int t = 0; t < f.a->nt; t++) {
    const ct_tensor *x = &f.a->tensors[t];
    char name[200];
    snprintf(name, sizeof name, "grad.%s", x->name);
    double w = worst(g + x->off, f32(need(name)), x->count, 1e-4, name);
    if (w > wg) wg = w;
  }
  fprintf(stderr, "gpt on %s: loss %.7f (PyTorch %.7f), logits at %.3f and gradients at %.3f of "
          "their bounds\n", g_dev.info.name, loss, want, wl, wg);
  free(logits), free(g);
  fixture_free(&f);
}
END_TEST

START_TEST(adamw_steps_match_pytorch) {
  gpt_fixture f;
  fixture_init(&f);
  size_t n = (size_t)g_batch * g_cfg.seq;
  ck_assert_ct(ct_model_upload_params(f.m, f.params));
  ct_optim_config oc;
  ct_optim_config_defaults(CT_OPT_ADAMW, &oc);
  oc.lr = (float)atof(ct_safetensors_meta(&g_st, "lr"));
  oc.beta1 = (float)atof(ct_safetensors_meta(&g_st, "beta1"));
  oc.beta2 = (float)atof(ct_safetensors_meta(&g_st, "beta2"));
  oc.eps = (float)atof(ct_safetensors_meta(&g_st, "eps"));
  oc.weight_decay = (float)atof(ct_safetensors_meta(&g_st, "weight_decay"));
  float clip = (float)atof(ct_safetensors_meta(&g_st, "clip_norm"));
  ct_optim opt;
  ck_assert_ct(ct_optim_init(&g_dev, &oc, f.a->param_count, &opt));
  size_t *lo = malloc(2 * (size_t)f.a->nt * sizeof *lo), *hi = lo + f.a->nt;
  int nr = ct_arch_no_decay(f.a, lo, hi);
  ck_assert_int_gt(nr, 0);
  ck_assert_ct(ct_optim_set_no_decay(&opt, lo, hi, nr));
  const float *want = f32(need("debug.losses"));
  int steps = (int)need("debug.losses")->count;
  double worst_rel = 0;
  for (int k = 0; k < steps; k++) {
    set_step(&f, k);
    ck_assert_ct(ct_model_forward(f.m, g_batch, 1, 0));
    ck_assert_ct(ct_model_backward(f.m, g_batch, 1.0f / (float)n));
    double loss = step_loss(&f), rel = fabs(loss - want[k]) / fabs(want[k]);
    if (rel > worst_rel) worst_rel = rel;
    ck_assert_msg(rel <= 1e-4, "step %d on %s: loss %.7f, PyTorch %.7f", k, g_dev.info.name, loss,
                  (double)want[k]);
    ck_assert_ct(ct_optim_clip(&opt, f.m->grads, 0, f.a->param_count, clip));
    ck_assert_ct(ct_optim_step(&opt, f.m->params, f.m->grads, oc.lr));
  }
  float factor, norm;
  ck_assert_ct(ct_optim_clip_read(&opt, &factor, &norm));
  ck_assert(norm > 0 && factor > 0 && factor <= 1);
  fprintf(stderr, "gpt on %s: %d AdamW steps with clipping, losses within %.2e relative (the last "
          "step's gradient norm %.4f, factor %.4f)\n", g_dev.info.name, steps, worst_rel,
          (double)norm, (double)factor);
  free(lo);
  ct_optim_free(&opt);
  fixture_free(&f);
}
END_TEST

START_TEST(oclgrind_finds_no_invalid_access) {
  ct_test_oclgrind_child("test_gpt", 0);
}
END_TEST

static int run_on(const char *spec, int first) {
  ct_test_device(spec, &g_dev);
  Suite *s = suite_create(g_small ? "gpt-oclgrind" : "gpt");
  TCase *tc = tcase_create("gpt");
  tcase_set_timeout(tc, 900);
  if (first) tcase_add_test(tc, tensor_table_is_nanogpts);
  tcase_add_test(tc, forward_and_gradients_match_pytorch);
  if (!g_small) tcase_add_test(tc, adamw_steps_match_pytorch);
  if (first) tcase_add_test(tc, oclgrind_finds_no_invalid_access);
  suite_add_tcase(s, tc);
  int rc = ct_test_run(s, 1);
  ct_device_close(&g_dev);
  return rc;
}

int main(int argc, char **argv) {
  g_small = argc > 1 && !strcmp(argv[1], "--oclgrind-child");
  load_state();
  int rc = 0;
  if (g_small) {
    rc = run_on("oclgrind", 0);
  } else {
    ct_device_list list;
    ct_test_devices(&list);
    int first = 1;
    for (int i = 0; i < list.count; i++) {
      if (list.dev[i].simulator) continue;
      char spec[32];
      snprintf(spec, sizeof spec, "%d:%d", list.dev[i].platform, list.dev[i].index);
      int r = run_on(spec, first);
      first = 0;
      if (r) rc = r;
    }
    ct_device_list_free(&list);
  }
  ct_safetensors_free(&g_st);
  free(g_buf);
  return rc;
}
