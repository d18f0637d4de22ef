// test_generate.c: text out of a language model (generate.h).
//   - the choice of a token from logits (host only): greedy with its tie rule, top-k with its
//     tie rule, the sampled frequencies against the softmax at two temperatures, one draw per
//     token, the same stream for the same seed, non-finite logits refused;
//   - on every device (no simulator): the logits of position n-1 do not depend on what pads the
//     window after it (causality, which generation relies on); ct_generate gives the tokens of
//     a step-by-step reference (its own windows, sliding once the text is longer than T, and
//     ct_generate_pick), calls emit once per token in order, and leaves the parameters as they
//     were; a classifier, an empty prompt and a token outside the vocabulary are usage errors.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/generate.h"
#include "cltrain/gpt.h"
#include "cltrain/model.h"
#include "testutil.h"

static ct_device g_dev;

// ---- the choice of a token --------------------------------------------------------------------

START_TEST(greedy_takes_the_lowest_id_on_a_tie_and_one_draw) {
  const float l[4] = {1, 3, 3, 2};
  double work[8];
  uint64_t rng = 42, once = 42;
  ct_generate_rng(&once);
  ck_assert_int_eq(ct_generate_pick(l, 4, 0, 0, &rng, work), 1);
  ck_assert_uint_eq(rng, once);   // one draw, also at temperature 0
  ck_assert_int_eq(ct_generate_pick(l, 4, 0, 1, &rng, work), 1);
  const float bad[3] = {0, NAN, 1};
  ck_assert_int_eq(ct_generate_pick(bad, 3, 1, 0, &rng, work), -1);
  const float inf[3] = {0, INFINITY, 1};
  ck_assert_int_eq(ct_generate_pick(inf, 3, 0, 0, &rng, work), -1);
}
END_TEST

START_TEST(top_k_keeps_the_k_largest_lower_ids_first) {
  const float l[5] = {4, 5, 4, 0, 4};   // sorted: 1 (5), then the tie 0, 2, 4 (4), then 3
  double work[10];
  uint64_t rng = 7;
  int seen[5] = {0};
  for (int i = 0; i < 4000; i++) seen[ct_generate_pick(l, 5, 1, 2, &rng, work)]++;
  ck_assert_int_gt(seen[1], 0);
  ck_assert_int_gt(seen[0], 0);
  ck_assert_int_eq(seen[2] + seen[3] + seen[4], 0);   // the tie at place 2: id 0 only
  for (int i = 0; i < 500; i++) ck_assert_int_eq(ct_generate_pick(l, 5, 1, 1, &rng, work), 1);
  memset(seen, 0, sizeof seen);
  for (int i = 0; i < 4000; i++) seen[ct_generate_pick(l, 5, 1, 4, &rng, work)]++;
  ck_assert_int_eq(seen[3], 0);
  ck_assert(seen[0] > 0 && seen[2] > 0 && seen[4] > 0);
}
END_TEST

START_TEST(frequencies_follow_the_softmax_at_the_temperature) {
  const double p[3] = {0.5, 0.3, 0.2};
  float l[3];
  for (int i = 0; i < 3; i++) l[i] = (float)log(p[i]) + 1.5f;   // (a shift changes nothing)
  double work[6];
  const double temps[2] = {1.0, 0.5};
  for (int t = 0; t < 2; t++) {
    double want[3], sum = 0;
    for (int i = 0; i < 3; i++) sum += want[i] = pow(p[i], 1 / temps[t]);
    uint64_t rng = 1234;
    int n = 40000, seen[3] = {0};
    for (int k = 0; k < n; k++) seen[ct_generate_pick(l, 3, temps[t], 0, &rng, work)]++;
    for (int i = 0; i < 3; i++) {
      double f = (double)seen[i] / n, w = want[i] / sum;
      ck_assert_msg(fabs(f - w) < 0.01, "temperature %g: token %d drawn %.4f of the time, "
                    "the softmax says %.4f", temps[t], i, f, w);
    }
  }
  // the same seed, the same stream; another seed, another one
  uint64_t a = 9, b = 9, c = 10;
  int same = 1, other = 0;
  for (int k = 0; k < 64; k++) {
    int x = ct_generate_pick(l, 3, 1, 0, &a, work), y = ct_generate_pick(l, 3, 1, 0, &b, work);
    same &= x == y;
    other |= x != ct_generate_pick(l, 3, 1, 0, &c, work);
  }
  ck_assert(same && other);
}
END_TEST

// ---- on a device ------------------------------------------------------------------------------

enum { L = 1, C = 16, H = 2, T = 8, V = 11 };

typedef struct {
  ct_arch *a;
  ct_model m;
  float *params;
} lm;

static void lm_init(lm *x, int batch) {
  ct_gpt_config g = {L, C, H, T, V};
  x->a = malloc(sizeof *x->a);
  ck_assert_ct(ct_gpt_build(&g, x->a));
  ck_assert_ct(ct_model_init(&g_dev, x->a, batch, &x->m));
  x->params = malloc(x->a->param_count * sizeof *x->params);
  ct_model_init_params(x->a, 5, x->params);
  for (size_t i = 0; i < x->a->param_count; i++)   // bigger weights: logits far apart
    x->params[i] *= 20;
  ck_assert_ct(ct_model_upload_params(&x->m, x->params));
}

static void lm_free(lm *x) {
  ct_model_free(&x->m);
  free(x->a), free(x->params);
}

// The logits row `row` of a forward pass over the window w (T token ids).
static void row_of(lm *x, const int32_t *w, int row, float *out) {
  int y[T] = {0};
  float all[T * V];
  ck_assert_ct(ct_model_set_batch(&x->m, (const float *)(const void *)w, y, 1));
  ck_assert_ct(ct_model_forward(&x->m, 1, 0, 0));
  ck_assert_ct(ct_model_read_logits(&x->m, 1, all));
  memcpy(out, all + (size_t)row * V, V * sizeof *out);
}

START_TEST(a_row_does_not_see_the_padding_after_it) {
  lm x;
  lm_init(&x, 2);
  uint64_t r = 3;
  for (int n = 1; n <= T; n++) {
    int32_t a[T], b[T];
    for (int p = 0; p < T; p++) a[p] = b[p] = (int32_t)(ct_test_rand_u64(&r) % V);
    for (int p = n; p < T; p++) a[p] = 0;
    float ra[V], rb[V];
    row_of(&x, a, n - 1, ra);
    row_of(&x, b, n - 1, rb);
    ck_assert_msg(ct_test_close(ra, rb, V, 1e-5f, 1e-5f, "row n-1"),
                  "on %s: the logits of position %d change with the tokens after it",
                  g_dev.info.name, n - 1);
  }
  lm_free(&x);
}
END_TEST

typedef struct {
  int n, tokens[64];
} record;

static ct_status keep(void *ctx, int token) {
  record *r = ctx;
  if (r->n < 64) r->tokens[r->n] = token;
  r->n++;
  return CT_OK;
}

START_TEST(generate_follows_the_reference_and_keeps_the_parameters) {
  lm x;
  lm_init(&x, 3);
  const int prompt[3] = {4, 1, 7}, N = 20;   // 3 + 20 tokens: the window slides past T = 8
  const double temps[2] = {0, 0.9};
  for (int t = 0; t < 2; t++) {
    ct_generate_opts o;
    ct_generate_opts_defaults(&o);
    o.tokens = N, o.temperature = temps[t], o.top_k = 6, o.seed = 77;
    record rec = {0};
    o.emit = keep, o.ctx = &rec;
    int out[20];
    ck_assert_ct(ct_generate(&x.m, prompt, 3, &o, out));
    ck_assert_int_eq(rec.n, N);
    // the reference: the text so far, its last min(len, T) tokens left-aligned, padded with 0
    int text[32];
    memcpy(text, prompt, sizeof prompt);
    uint64_t rng = 77;
    double work[2 * V];
    int distinct = 0;
    for (int i = 0; i < N; i++) {
      int len = 3 + i, n = len < T ? len : T;
      int32_t w[T] = {0};
      for (int p = 0; p < n; p++) w[p] = text[len - n + p];
      float row[V];
      row_of(&x, w, n - 1, row);
      text[len] = ct_generate_pick(row, V, o.temperature, o.top_k, &rng, work);
      ck_assert_msg(out[i] == text[len], "on %s, temperature %g: token %d is %d, the reference "
                    "%d", g_dev.info.name, o.temperature, i, out[i], text[len]);
      ck_assert_int_eq(rec.tokens[i], out[i]);
      distinct |= 1 << out[i];
    }
    ck_assert_int_gt(__builtin_popcount((unsigned)distinct), 1);   // (not one token repeated)
  }
  float *after = malloc(x.a->param_count * sizeof *after);
  ck_assert_ct(ct_model_download_params(&x.m, after));
  ck_assert(!memcmp(after, x.params, x.a->param_count * sizeof *after));
  // usage errors
  ct_generate_opts o;
  ct_generate_opts_defaults(&o);
  o.tokens = 2;
  int out[2];
  const int bad[2] = {1, V};
  ct_error_clear();
  ck_assert_int_eq(ct_generate(&x.m, prompt, 0, &o, out), CT_ERR_USAGE);
  ct_error_clear();
  ck_assert_int_eq(ct_generate(&x.m, bad, 2, &o, out), CT_ERR_USAGE);
  ck_assert_ptr_nonnull(strstr(ct_error_text(), "outside the vocabulary"));
  ct_error_clear();
  o.temperature = -1;
  ck_assert_int_eq(ct_generate(&x.m, prompt, 3, &o, out), CT_ERR_USAGE);
  ct_error_clear();
  free(after);
  lm_free(&x);
  // a classifier is not a language model
  ct_arch *a = malloc(sizeof *a);
  ct_model m;
  ck_assert_ct(ct_arch_parse("dense:3", 1, 2, 2, 3, a));
  ck_assert_ct(ct_model_init(&g_dev, a, 1, &m));
  ct_generate_opts_defaults(&o);
  o.tokens = 1;
  ck_assert_int_eq(ct_generate(&m, prompt, 1, &o, out), CT_ERR_USAGE);
  ck_assert_ptr_nonnull(strstr(ct_error_text(), "not a language model"));
  ct_error_clear();
  ct_model_free(&m);
  free(a);
}
END_TEST

static int run_on(const char *spec, int first) {
  ct_test_device(spec, &g_dev);
  Suite *s = suite_create("generate");
  TCase *tc = tcase_create("generate");
  tcase_set_timeout(tc, 600);
  if (first) {
    tcase_add_test(tc, greedy_takes_the_lowest_id_on_a_tie_and_one_draw);
    tcase_add_test(tc, top_k_keeps_the_k_largest_lower_ids_first);
    tcase_add_test(tc, frequencies_follow_the_softmax_at_the_temperature);
  }
  tcase_add_test(tc, a_row_does_not_see_the_padding_after_it);
  tcase_add_test(tc, generate_follows_the_reference_and_keeps_the_parameters);
  suite_add_tcase(s, tc);
  int rc = ct_test_run(s, 1);
  ct_device_close(&g_dev);
  return rc;
}

int main(void) {
  ct_device_list list;
  ct_test_devices(&list);
  int rc = 0, first = 1;
  for (int i = 0; i < list.count; i++) {
    if (list.dev[i].simulator) continue;
    char spec[32];
    snprintf(spec, sizeof spec, "%d:%d", list.dev[i].platform, list.dev[i].index);
    int r = run_on(spec, first);
    first = 0;
    if (r) rc = r;
  }
  ct_device_list_free(&list);
  if (first) {
    fprintf(stderr, "SKIP: no OpenCL device but simulators\n");
    return CT_TEST_SKIP;
  }
  return rc;
}
