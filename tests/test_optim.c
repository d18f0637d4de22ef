// test_optim.c: optimizers and schedules.
//   - names, defaults and range checks (one-line usage errors naming the flag);
//   - schedules (constant, step, cosine, each with warm-up) at chosen steps against values
//     derived by hand;
//   - SGD (plain, momentum, Nesterov, weight decay) and AdamW against a plain-C reference of the
//     same float formulas, several steps, sizes 1 and 1000003: bit-exact;
//   - the kernels' integer division / sqrt (-DCT_SOFT_DIVSQRT) and those through double
//     precision (-DCT_F64_DIVSQRT, where the device has cl_khr_fp64) against the host's
//     correctly rounded ones on random bit patterns (subnormals, infinities, NaN), and AdamW
//     through every path giving the same bits;
//   - state read/write round trip, and resuming from saved state equals an uninterrupted run;
//   - cross-platform: the same 5 updates on PoCL, Oclgrind and Intel's CPU runtime (those
//     present) give bitwise-identical parameters;
//   - the device-side skip of ct_optim_step_unless.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/optim.h"
#include "cltrain/program.h"
#include "testutil.h"

// ---- helpers --------------------------------------------------------------------------------

// Rounds through memory: keeps the host compiler from fusing a*b+c into an FMA.
static float rnd(float x) {
  volatile float v = x;
  return v;
}

static uint32_t bits_of(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  return u;
}

static float from_bits(uint32_t u) {
  float x;
  memcpy(&x, &u, 4);
  return x;
}

// Number of elements whose bits differ (NaN == NaN); prints the first.
static size_t count_bit_diffs(const float *a, const float *b, size_t n, const char *what) {
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    if (bits_of(a[i]) == bits_of(b[i]) || (isnan(a[i]) && isnan(b[i]))) continue;
    if (!bad)
      fprintf(stderr, "%s: element %zu of %zu: got %.9g (0x%08x), want %.9g (0x%08x)\n", what, i,
              n, (double)a[i], bits_of(a[i]), (double)b[i], bits_of(b[i]));
    bad++;
  }
  return bad;
}

static cl_mem upload(ct_device *dev, const float *x, size_t n) {
  cl_int err;
  cl_mem m = clCreateBuffer(dev->ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, n * sizeof(float),
                            (void *)x, &err);
  ck_assert_int_eq(err, CL_SUCCESS);
  return m;
}

static void download(ct_device *dev, cl_mem m, float *x, size_t n) {
  ck_assert_int_eq(clEnqueueReadBuffer(dev->queue, m, CL_TRUE, 0, n * sizeof(float), x, 0, NULL,
                                       NULL), CL_SUCCESS);
}

static float step_lr(const ct_optim_config *c, int s) {
  return c->lr * (1.0f - 0.1f * (float)s);   // a different learning rate each step
}

// Plain-C reference of the formulas in optim.h; state as the device lays it out.
static void ref_step(const ct_optim_config *c, float *p, const float *g, float *state, size_t n,
                     float lr, long t) {
  if (c->kind == CT_OPT_SGD) {
    for (size_t i = 0; i < n; i++) {
      float gi = g[i];
      if (c->weight_decay != 0) gi = rnd(gi + rnd(c->weight_decay * p[i]));
      if (c->momentum != 0) {
        float m = rnd(rnd(c->momentum * state[i]) + gi);
        state[i] = m;
        gi = c->nesterov ? rnd(gi + rnd(c->momentum * m)) : m;
      }
      p[i] = rnd(p[i] - rnd(lr * gi));
    }
  } else {
    // bias corrections by libm's pow, an independent route to the same double values
    float lrwd = (float)((double)lr * c->weight_decay);
    float omb1 = (float)(1.0 - c->beta1), omb2 = (float)(1.0 - c->beta2);
    float step = (float)((double)lr / (1.0 - pow(c->beta1, (double)t)));
    float c2 = (float)sqrt(1.0 - pow(c->beta2, (double)t));
    for (size_t i = 0; i < n; i++) {
      float m = rnd(rnd(c->beta1 * state[i]) + rnd(omb1 * g[i]));
      float v = rnd(rnd(c->beta2 * state[n + i]) + rnd(omb2 * rnd(g[i] * g[i])));
      state[i] = m;
      state[n + i] = v;
      float w = rnd(p[i] - rnd(lrwd * p[i]));
      float denom = rnd(rnd(sqrtf(v) / c2) + c->eps);
      p[i] = rnd(w - rnd(step * rnd(m / denom)));
    }
  }
}

// Runs `steps` updates on the device from params p0 with gradients grad(seed 100+s); returns
// params in p and state in state (both host, preallocated).
static void run_device(ct_device *dev, const ct_optim_config *c, size_t n, int steps,
                       const float *p0, float *p, float *state) {
  ct_optim opt;
  ck_assert_ct(ct_optim_init(dev, c, n, &opt));
  ck_assert_int_eq(opt.state_count, c->kind == CT_OPT_ADAMW ? 2 * n : n);
  cl_mem dp = upload(dev, p0, n);
  float *g = malloc(n * sizeof *g);
  cl_mem dg = upload(dev, p0, n);
  for (int s = 0; s < steps; s++) {
    ct_test_rand_fill(g, n, 100 + (uint64_t)s, -1, 1);
    ck_assert_int_eq(clEnqueueWriteBuffer(dev->queue, dg, CL_TRUE, 0, n * sizeof(float), g, 0,
                                          NULL, NULL), CL_SUCCESS);
    ck_assert_ct(ct_optim_step(&opt, dp, dg, step_lr(c, s)));
  }
  ck_assert_int_eq(opt.t, steps);
  download(dev, dp, p, n);
  ck_assert_ct(ct_optim_read_state(&opt, state));
  clReleaseMemObject(dp);
  clReleaseMemObject(dg);
  free(g);
  ct_optim_free(&opt);
}

static void run_reference(const ct_optim_config *c, size_t n, int steps, const float *p0,
                          float *p, float *state) {
  size_t sn = c->kind == CT_OPT_ADAMW ? 2 * n : n;
  memcpy(p, p0, n * sizeof *p);
  memset(state, 0, sn * sizeof *state);
  float *g = malloc(n * sizeof *g);
  for (int s = 0; s < steps; s++) {
    ct_test_rand_fill(g, n, 100 + (uint64_t)s, -1, 1);
    ref_step(c, p, g, state, n, step_lr(c, s), s + 1);
  }
  free(g);
}

static void check_against_reference(ct_device *dev, const ct_optim_config *c, size_t n,
                                    const char *what) {
  const int steps = 5;
  size_t sn = c->kind == CT_OPT_ADAMW ? 2 * n : n;
  float *p0 = malloc(n * 4), *p = malloc(n * 4), *pr = malloc(n * 4);
  float *st = malloc(sn * 4), *str = malloc(sn * 4);
  ct_test_rand_fill(p0, n, 7, -2, 2);
  run_device(dev, c, n, steps, p0, p, st);
  run_reference(c, n, steps, p0, pr, str);
  size_t bp = count_bit_diffs(p, pr, n, what);
  size_t bs = c->kind == CT_OPT_SGD && c->momentum == 0 ? 0 : count_bit_diffs(st, str, sn, what);
  ck_assert_msg(bp == 0 && bs == 0, "%s n=%zu on %s: %zu params and %zu state values differ",
                what, n, dev->info.name, bp, bs);
  free(p0), free(p), free(pr), free(st), free(str);
}

// ---- names, defaults, checks ----------------------------------------------------------------

START_TEST(names_defaults_and_checks) {
  ct_optim_kind k;
  ck_assert_ct(ct_optim_parse("sgd", &k));
  ck_assert_int_eq(k, CT_OPT_SGD);
  ck_assert_ct(ct_optim_parse("AdamW", &k));
  ck_assert_int_eq(k, CT_OPT_ADAMW);
  ct_error_clear();
  ck_assert_int_eq(ct_optim_parse("adam", &k), CT_ERR_USAGE);
  ck_assert_ptr_nonnull(strstr(ct_error_text(), "--optimizer"));
  ck_assert_ptr_nonnull(strstr(ct_error_text(), "'adam'"));
  ct_sched_kind sk;
  ck_assert_ct(ct_schedule_parse("constant", &sk));
  ck_assert_int_eq(sk, CT_SCHED_CONSTANT);
  ck_assert_ct(ct_schedule_parse("step", &sk));
  ck_assert_int_eq(sk, CT_SCHED_STEP);
  ck_assert_ct(ct_schedule_parse("cosine", &sk));
  ck_assert_int_eq(sk, CT_SCHED_COSINE);
  ct_error_clear();
  ck_assert_int_eq(ct_schedule_parse("linear", &sk), CT_ERR_USAGE);
  ck_assert_ptr_nonnull(strstr(ct_error_text(), "--schedule"));

  ct_optim_config c;
  ct_optim_config_defaults(CT_OPT_SGD, &c);
  ck_assert_int_eq(c.kind, CT_OPT_SGD);
  ck_assert_float_eq(c.lr, 0.05f);
  ck_assert_float_eq(c.momentum, 0.9f);
  ck_assert_float_eq(c.weight_decay, 0.0f);
  ck_assert_int_eq(c.nesterov, 0);
  ck_assert_ct(ct_optim_config_check(&c));
  ct_optim_config_defaults(CT_OPT_ADAMW, &c);
  ck_assert_int_eq(c.kind, CT_OPT_ADAMW);
  ck_assert_float_eq(c.lr, 1e-3f);
  ck_assert_float_eq(c.weight_decay, 0.01f);
  ck_assert_float_eq(c.beta1, 0.9f);
  ck_assert_float_eq(c.beta2, 0.999f);
  ck_assert_float_eq(c.eps, 1e-8f);
  ck_assert_ct(ct_optim_config_check(&c));

  struct { ct_optim_kind kind; int field; float value; const char *flag; } bad[] = {
      {CT_OPT_SGD, 0, -1.0f, "--lr"},        {CT_OPT_SGD, 0, NAN, "--lr"},
      {CT_OPT_SGD, 1, 1.0f, "--momentum"},   {CT_OPT_SGD, 2, -0.5f, "--weight-decay"},
      {CT_OPT_SGD, 3, 1.0f, "--nesterov"},   {CT_OPT_ADAMW, 4, 1.0f, "--beta1"},
      {CT_OPT_ADAMW, 5, -0.1f, "--beta2"},   {CT_OPT_ADAMW, 6, 0.0f, "--eps"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ct_optim_config_defaults(bad[i].kind, &c);
    switch (bad[i].field) {
      case 0: c.lr = bad[i].value; break;
      case 1: c.momentum = bad[i].value; break;
      case 2: c.weight_decay = bad[i].value; break;
      case 3: c.momentum = 0; c.nesterov = 1; break;
      case 4: c.beta1 = bad[i].value; break;
      case 5: c.beta2 = bad[i].value; break;
      case 6: c.eps = bad[i].value; break;
    }
    ct_error_clear();
    ck_assert_int_eq(ct_optim_config_check(&c), CT_ERR_USAGE);
    ck_assert_msg(strstr(ct_error_text(), bad[i].flag), "case %zu: '%s' does not name %s", i,
                  ct_error_text(), bad[i].flag);
  }
  ct_schedule s = {CT_SCHED_STEP, 0, 10, 0.0f, 0, 0};
  ct_error_clear();
  ck_assert_int_eq(ct_schedule_check(&s), CT_ERR_USAGE);
  ck_assert_ptr_nonnull(strstr(ct_error_text(), "--gamma"));
  s.gamma = 0.5f;
  ck_assert_ct(ct_schedule_check(&s));
  ct_error_clear();
}
END_TEST

// ---- schedules ------------------------------------------------------------------------------

#define LR_EQ(s, base, step, want)                                                          \
  do {                                                                                      \
    float got_ = ct_schedule_lr(&(s), (base), (step));                                      \
    ck_assert_msg(fabsf(got_ - (float)(want)) <= 1e-6f * fabsf((float)(want)) + 1e-9f,      \
                  "step %ld: lr %.9g, want %.9g", (long)(step), (double)got_, (double)(want)); \
  } while (0)

START_TEST(schedules_at_chosen_steps) {
  ct_schedule c = {CT_SCHED_CONSTANT, 0, 0, 0, 0, 0};
  LR_EQ(c, 0.1f, 0, 0.1);
  LR_EQ(c, 0.1f, 123456, 0.1);
  c.warmup = 4;   // 0.025, 0.05, 0.075, 0.1, then 0.1
  LR_EQ(c, 0.1f, 0, 0.025);
  LR_EQ(c, 0.1f, 1, 0.05);
  LR_EQ(c, 0.1f, 2, 0.075);
  LR_EQ(c, 0.1f, 3, 0.1);
  LR_EQ(c, 0.1f, 4, 0.1);
  LR_EQ(c, 0.1f, 1000, 0.1);

  ct_schedule st = {CT_SCHED_STEP, 0, 10, 0.5f, 0, 0};
  LR_EQ(st, 1.0f, 0, 1.0);
  LR_EQ(st, 1.0f, 9, 1.0);
  LR_EQ(st, 1.0f, 10, 0.5);
  LR_EQ(st, 1.0f, 19, 0.5);
  LR_EQ(st, 1.0f, 20, 0.25);
  LR_EQ(st, 1.0f, 35, 0.125);
  st.warmup = 5;   // warm-up 0.2, 0.4, .., 1.0 over steps 0..4; decay counts from step 5
  LR_EQ(st, 1.0f, 0, 0.2);
  LR_EQ(st, 1.0f, 4, 1.0);
  LR_EQ(st, 1.0f, 14, 1.0);
  LR_EQ(st, 1.0f, 15, 0.5);
  LR_EQ(st, 1.0f, 25, 0.25);
  st.gamma = 0.1f;
  st.warmup = 0;
  LR_EQ(st, 2.0f, 30, 2.0 * 0.1f * 0.1f * 0.1f);

  // cosine: warm-up 10 steps, decay over [10, 110] from 1 to min_lr
  ct_schedule co = {CT_SCHED_COSINE, 10, 0, 0, 110, 0.0f};
  LR_EQ(co, 1.0f, 0, 0.1);
  LR_EQ(co, 1.0f, 4, 0.5);
  LR_EQ(co, 1.0f, 9, 1.0);
  LR_EQ(co, 1.0f, 10, 1.0);
  LR_EQ(co, 1.0f, 35, (1 + sqrt(0.5)) / 2);   // a quarter of the way: (1+cos(pi/4))/2
  LR_EQ(co, 1.0f, 60, 0.5);                   // half way
  LR_EQ(co, 1.0f, 85, (1 - sqrt(0.5)) / 2);
  LR_EQ(co, 1.0f, 110, 0.0);
  LR_EQ(co, 1.0f, 500, 0.0);
  co.min_lr = 0.1f;
  LR_EQ(co, 1.0f, 60, 0.55);
  LR_EQ(co, 1.0f, 110, 0.1);
  LR_EQ(co, 1.0f, 200, 0.1);
  co.warmup = 0;
  co.total = 4;   // 1, (1+cos(pi/4))/2 scaled, 0.55, ..., 0.1
  LR_EQ(co, 1.0f, 0, 1.0);
  LR_EQ(co, 1.0f, 2, 0.55);
  LR_EQ(co, 1.0f, 4, 0.1);
}
END_TEST

// ---- updates against the reference ----------------------------------------------------------

START_TEST(sgd_matches_reference) {
  ct_device dev;
  ct_test_device("auto", &dev);
  // (on a CPU each work-item updates a chunk of about n / (4 cores): sizes whose chunks end
  // inside an 8-float vector and inside the last chunk)
  const size_t sizes[] = {1, 13, 1001, 1000003};
  for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++)
    for (int v = 0; v < 5; v++) {
      ct_optim_config c;
      ct_optim_config_defaults(CT_OPT_SGD, &c);
      c.lr = 0.1f;
      const char *what = "sgd";
      switch (v) {
        case 0: c.momentum = 0; what = "plain sgd"; break;
        case 1: what = "sgd momentum 0.9"; break;
        case 2: c.nesterov = 1; what = "sgd nesterov"; break;
        case 3: c.weight_decay = 0.01f; what = "sgd momentum + weight decay"; break;
        case 4: c.momentum = 0; c.weight_decay = 0.3f; what = "plain sgd + weight decay"; break;
      }
      check_against_reference(&dev, &c, sizes[si], what);
    }
  ct_device_close(&dev);
}
END_TEST

START_TEST(adamw_matches_reference) {
  ct_device dev;
  ct_test_device("auto", &dev);
  const size_t sizes[] = {1, 1000003};
  for (size_t si = 0; si < 2; si++)
    for (int v = 0; v < 3; v++) {
      ct_optim_config c;
      ct_optim_config_defaults(CT_OPT_ADAMW, &c);
      c.lr = 0.01f;
      if (v == 1) c.weight_decay = 0;
      if (v == 2) c.beta1 = 0.8f, c.beta2 = 0.95f, c.eps = 1e-3f, c.weight_decay = 0.1f;
      check_against_reference(&dev, &c, sizes[si], v == 0 ? "adamw" : v == 1 ? "adam (wd 0)"
                                                                            : "adamw (0.8, 0.95)");
    }
  ct_device_close(&dev);
}
END_TEST

// ---- integer division and sqrt --------------------------------------------------------------

// Which division and sqrt ct_optim_init chooses for the device (as it does, unforced).
static const char *divsqrt_path(const ct_device *dev) {
  return dev->info.correct_sqrt ? "device div/sqrt" : dev->info.fp64 ? "double div/sqrt" : "integer";
}

static void divsqrt_on(ct_device *dev, const char *options, const float *a, const float *b,
                       float *q, float *s, size_t n) {
  cl_program prog;
  ck_assert_ct(ct_program_build(dev, "optim", options, &prog));
  cl_int err;
  cl_kernel k = clCreateKernel(prog, "divsqrt_check", &err);
  ck_assert_int_eq(err, CL_SUCCESS);
  cl_mem da = upload(dev, a, n), db = upload(dev, b, n), dq = upload(dev, a, n),
         ds = upload(dev, a, n);
  cl_uint nn = (cl_uint)n;
  ck_assert_int_eq(clSetKernelArg(k, 0, sizeof da, &da), CL_SUCCESS);
  ck_assert_int_eq(clSetKernelArg(k, 1, sizeof db, &db), CL_SUCCESS);
  ck_assert_int_eq(clSetKernelArg(k, 2, sizeof dq, &dq), CL_SUCCESS);
  ck_assert_int_eq(clSetKernelArg(k, 3, sizeof ds, &ds), CL_SUCCESS);
  ck_assert_int_eq(clSetKernelArg(k, 4, sizeof nn, &nn), CL_SUCCESS);
  size_t global = (n + 63) / 64 * 64;
  ck_assert_int_eq(clEnqueueNDRangeKernel(dev->queue, k, 1, NULL, &global, NULL, 0, NULL, NULL),
                   CL_SUCCESS);
  download(dev, dq, q, n);
  download(dev, ds, s, n);
  clReleaseMemObject(da), clReleaseMemObject(db), clReleaseMemObject(dq), clReleaseMemObject(ds);
  clReleaseKernel(k);
}

// Inputs: special values crossed with each other, then random bit patterns of every kind.
static size_t divsqrt_inputs(float *a, float *b, size_t n) {
  const uint32_t special[] = {0x00000000, 0x80000000, 0x00000001, 0x80000001, 0x007fffff,
                              0x00800000, 0x00400000, 0x3f800000, 0xbf800000, 0x3f800001,
                              0x3f7fffff, 0x40000000, 0x7f7fffff, 0xff7fffff, 0x7f800000,
                              0xff800000, 0x7fc00000, 0x34000000, 0x0c000000, 0x5f800000,
                              0x1e3ce508 /* ~1e-20 */, 0x322bcc77 /* 1e-8 */};
  const size_t ns = sizeof special / sizeof special[0];
  size_t k = 0;
  for (size_t i = 0; i < ns; i++)
    for (size_t j = 0; j < ns && k < n; j++, k++) {
      a[k] = from_bits(special[i]);
      b[k] = from_bits(special[j]);
    }
  uint64_t st = 99;
  for (; k < n; k++) {
    uint64_t r = ct_test_rand_u64(&st);
    uint32_t ua = (uint32_t)r, ub = (uint32_t)(r >> 32);
    switch (k % 4) {
      case 0: break;                                             // anything, NaNs included
      case 1: ua &= 0x807fffff; break;                           // a subnormal
      case 2: ua = (ua & 0x80ffffff) | 0x3f000000; ub = (ub & 0x80ffffff) | 0x3f000000; break;
      case 3: ub = (ub & 0x807fffff) | 0x00800000; break;        // b near the normal minimum
    }
    a[k] = from_bits(ua);
    b[k] = from_bits(ub);
  }
  return k;
}

static void check_divsqrt(ct_device *dev, const char *options, size_t n) {
  float *a = malloc(n * 4), *b = malloc(n * 4), *q = malloc(n * 4), *s = malloc(n * 4);
  float *wq = malloc(n * 4), *ws = malloc(n * 4);
  divsqrt_inputs(a, b, n);
  for (size_t i = 0; i < n; i++) {   // the host's SSE division and sqrt are correctly rounded
    wq[i] = a[i] / b[i];
    ws[i] = sqrtf(a[i]);
  }
  divsqrt_on(dev, options, a, b, q, s, n);
  size_t bq = count_bit_diffs(q, wq, n, "division"), bs = count_bit_diffs(s, ws, n, "sqrt");
  ck_assert_msg(bq == 0 && bs == 0, "%s on %s: %zu quotients and %zu square roots of %zu differ",
                options[0] ? options : "hardware / and sqrt", dev->info.name, bq, bs, n);
  free(a), free(b), free(q), free(s), free(wq), free(ws);
}

START_TEST(soft_divsqrt_is_correctly_rounded) {
  ct_device dev;
  ct_test_device("auto", &dev);
  check_divsqrt(&dev, "-DCT_SOFT_DIVSQRT", 1 << 21);
  if (dev.info.fp64) check_divsqrt(&dev, "-DCT_F64_DIVSQRT", 1 << 21);
  if (dev.info.correct_sqrt) check_divsqrt(&dev, "", 1 << 21);
  ct_device_close(&dev);
}
END_TEST

START_TEST(adamw_same_bits_through_soft_divsqrt) {
  ct_device dev;
  ct_test_device("auto", &dev);
  const size_t n = 100003;
  ct_optim_config c;
  ct_optim_config_defaults(CT_OPT_ADAMW, &c);
  float *p0 = malloc(n * 4), *p1 = malloc(n * 4), *p2 = malloc(n * 4);
  float *s1 = malloc(2 * n * 4), *s2 = malloc(2 * n * 4);
  ct_test_rand_fill(p0, n, 3, -1, 1);
  setenv("CLTRAIN_SOFT_DIVSQRT", "0", 1);
  run_device(&dev, &c, n, 5, p0, p1, s1);
  setenv("CLTRAIN_SOFT_DIVSQRT", "1", 1);
  ct_optim probe;
  ck_assert_ct(ct_optim_init(&dev, &c, 4, &probe));
  ck_assert_int_eq(probe.soft_divsqrt, 1);
  ct_optim_free(&probe);
  run_device(&dev, &c, n, 5, p0, p2, s2);
  ck_assert_uint_eq(count_bit_diffs(p2, p1, n, "adamw soft vs hardware"), 0);
  ck_assert_uint_eq(count_bit_diffs(s2, s1, 2 * n, "adamw state soft vs hardware"), 0);
  if (dev.info.fp64) {   // the same through double precision
    setenv("CLTRAIN_SOFT_DIVSQRT", "f64", 1);
    ck_assert_ct(ct_optim_init(&dev, &c, 4, &probe));
    ck_assert_int_eq(probe.soft_divsqrt, 2);
    ct_optim_free(&probe);
    run_device(&dev, &c, n, 5, p0, p2, s2);
    ck_assert_uint_eq(count_bit_diffs(p2, p1, n, "adamw f64 vs hardware"), 0);
    ck_assert_uint_eq(count_bit_diffs(s2, s1, 2 * n, "adamw state f64 vs hardware"), 0);
  }
  unsetenv("CLTRAIN_SOFT_DIVSQRT");
  free(p0), free(p1), free(p2), free(s1), free(s2);
  ct_device_close(&dev);
}
END_TEST

// ---- state ----------------------------------------------------------------------------------

START_TEST(state_round_trip_and_resume) {
  ct_device dev;
  ct_test_device("auto", &dev);
  for (int kind = 0; kind < 2; kind++) {
    ct_optim_config c;
    ct_optim_config_defaults(kind ? CT_OPT_ADAMW : CT_OPT_SGD, &c);
    const size_t n = 1001;
    ct_optim opt;
    ck_assert_ct(ct_optim_init(&dev, &c, n, &opt));
    float *st = malloc(opt.state_count * 4), *back = malloc(opt.state_count * 4);
    ck_assert_ct(ct_optim_read_state(&opt, back));   // zeroed at init
    for (size_t i = 0; i < opt.state_count; i++) ck_assert_uint_eq(bits_of(back[i]), 0);
    ct_test_rand_fill(st, opt.state_count, 11, -3, 3);
    ck_assert_ct(ct_optim_write_state(&opt, st));
    ck_assert_ct(ct_optim_read_state(&opt, back));
    ck_assert_int_eq(memcmp(st, back, opt.state_count * 4), 0);
    ct_optim_free(&opt);
    ck_assert_ptr_null(opt.state);

    // 5 steps straight == 3 steps, save (params, state, t), restore into a fresh optimizer, 2 more
    float *p0 = malloc(n * 4), *g = malloc(n * 4), *pa = malloc(n * 4), *pb = malloc(n * 4);
    ct_test_rand_fill(p0, n, 5, -1, 1);
    ct_optim a, b;
    ck_assert_ct(ct_optim_init(&dev, &c, n, &a));
    cl_mem da = upload(&dev, p0, n), dg = upload(&dev, p0, n);
    for (int s = 0; s < 5; s++) {
      ct_test_rand_fill(g, n, 200 + (uint64_t)s, -1, 1);
      ck_assert_int_eq(clEnqueueWriteBuffer(dev.queue, dg, CL_TRUE, 0, n * 4, g, 0, NULL, NULL),
                       CL_SUCCESS);
      ck_assert_ct(ct_optim_step(&a, da, dg, 0.01f));
      if (s == 2) {   // checkpoint
        download(&dev, da, pb, n);
        ck_assert_ct(ct_optim_read_state(&a, st));
      }
    }
    download(&dev, da, pa, n);
    ck_assert_ct(ct_optim_init(&dev, &c, n, &b));
    ck_assert_ct(ct_optim_write_state(&b, st));
    b.t = 3;
    cl_mem db = upload(&dev, pb, n);
    for (int s = 3; s < 5; s++) {
      ct_test_rand_fill(g, n, 200 + (uint64_t)s, -1, 1);
      ck_assert_int_eq(clEnqueueWriteBuffer(dev.queue, dg, CL_TRUE, 0, n * 4, g, 0, NULL, NULL),
                       CL_SUCCESS);
      ck_assert_ct(ct_optim_step(&b, db, dg, 0.01f));
    }
    download(&dev, db, pb, n);
    ck_assert_uint_eq(count_bit_diffs(pb, pa, n, "resumed vs straight"), 0);
    clReleaseMemObject(da), clReleaseMemObject(db), clReleaseMemObject(dg);
    ct_optim_free(&a);
    ct_optim_free(&b);
    free(st), free(back), free(p0), free(g), free(pa), free(pb);
  }
  ct_device_close(&dev);
}
END_TEST

// ---- across platforms -----------------------------------------------------------------------

START_TEST(every_platform_gives_the_same_bits) {
  // PoCL, Oclgrind and Intel's CPU runtime, those that are here: each must give the first one's
  // bits for the same 5 updates (the replicas of a mixed-vendor job stay identical).
  static const char *const specs[] = {"pocl", "oclgrind", "intel"};
  ct_device devs[3];
  int have[3] = {0}, n_have = 0;
  for (int d = 0; d < 3; d++) {
    ct_status st = ct_device_open_spec(specs[d], 0, 0, &devs[d]);
    if (st == CT_ERR_NOTFOUND) {
      fprintf(stderr, "note: no %s device; not in the cross-platform check\n", specs[d]);
      ct_error_clear();
      continue;
    }
    ck_assert_ct(st);
    have[d] = 1;
    n_have++;
  }
  if (n_have < 2) fprintf(stderr, "note: fewer than two platforms; cross-platform check skipped\n");
  const size_t n = 1000;
  float *p0 = malloc(n * 4), *pa = malloc(n * 4), *pb = malloc(n * 4);
  float *sa = malloc(2 * n * 4), *sb = malloc(2 * n * 4);
  ct_test_rand_fill(p0, n, 17, -1, 1);
  int first = -1;
  for (int d = 0; d < 3; d++)
    if (have[d] && first < 0) first = d;
  for (int d = first + 1; d < 3 && first >= 0; d++) {
    if (!have[d]) continue;
    for (int v = 0; v < 3; v++) {
      ct_optim_config c;
      ct_optim_config_defaults(v == 2 ? CT_OPT_ADAMW : CT_OPT_SGD, &c);
      if (v == 1) c.nesterov = 1, c.weight_decay = 5e-4f;
      run_device(&devs[first], &c, n, 5, p0, pa, sa);
      run_device(&devs[d], &c, n, 5, p0, pb, sb);
      const char *what = v == 0 ? "sgd momentum" : v == 1 ? "sgd nesterov + wd" : "adamw";
      size_t sn = c.kind == CT_OPT_ADAMW ? 2 * n : n;
      size_t bp = count_bit_diffs(pb, pa, n, what), bs = count_bit_diffs(sb, sa, sn, what);
      ck_assert_msg(bp == 0 && bs == 0,
                    "%s: %zu params and %zu state values differ between %s [%s] (%s) and %s [%s] (%s)",
                    what, bp, bs, devs[first].info.name, devs[first].info.platform_name,
                    divsqrt_path(&devs[first]), devs[d].info.name, devs[d].info.platform_name,
                    divsqrt_path(&devs[d]));
    }
    fprintf(stderr, "note: %s and %s give the same bits\n", devs[first].info.platform_name,
            devs[d].info.platform_name);
  }
  free(p0), free(pa), free(pb), free(sa), free(sb);
  for (int d = 0; d < 3; d++)
    if (have[d]) ct_device_close(&devs[d]);
}
END_TEST

// --clip-norm's factor on the device: the order cl/optim.cl documents (64 slices, each summed in
// index order as rounded squares and rounded sums, the slices summed in order, a correctly
// rounded square root and quotient), bit for bit, on every platform here: replicas on several
// vendors clip by the same factor. Gradients of log-uniform magnitudes, as a model's are.
static void clip_reference(const float *g, size_t n, float max_norm, float *factor, float *norm) {
  size_t len = (n + 63) / 64;
  volatile float total = 0.0f;
  for (size_t i = 0; i < 64; i++) {
    volatile float s = 0.0f;
    for (size_t k = i * len; k < (i + 1) * len && k < n; k++) {
      volatile float sq = g[k] * g[k];
      s = s + sq;
    }
    total = total + s;
  }
  *norm = sqrtf(total);
  volatile float den = *norm + 1e-6f;
  float f = max_norm / den;
  *factor = f < 1.0f ? f : 1.0f;
}

START_TEST(clip_factor_has_the_same_bits_everywhere) {
  static const char *const specs[] = {"pocl", "oclgrind", "intel"};
  const size_t sizes[] = {1288, 4176, 10007};
  int checked = 0;
  for (int d = 0; d < 3; d++) {
    ct_device dev;
    ct_status st = ct_device_open_spec(specs[d], 0, 0, &dev);
    if (st == CT_ERR_NOTFOUND) {
      ct_error_clear();
      continue;
    }
    ck_assert_ct(st);
    for (int si = 0; si < 3; si++) {
      size_t n = sizes[si];
      if (dev.info.simulator && n > 2000) continue;
      ct_optim_config c;
      ct_optim_config_defaults(CT_OPT_ADAMW, &c);
      ct_optim opt;
      ck_assert_ct(ct_optim_init(&dev, &c, n, &opt));
      float *g = malloc(n * sizeof *g);
      uint64_t r = 40 + si;
      int mismatched = 0;
      for (int trial = 0; trial < 8; trial++) {
        for (size_t i = 0; i < n; i++) {
          uint64_t u = ct_test_rand_u64(&r);
          float mag = powf(10.0f, -7.0f + 7.0f * (float)((u >> 11) * 0x1.0p-53));
          g[i] = (u & 1) ? -mag : mag;
        }
        cl_mem b = upload(&dev, g, n);
        float max_norm = trial & 1 ? 0.25f : 3.0f, f, nm, rf, rn;
        ck_assert_ct(ct_optim_clip(&opt, b, 0, n, max_norm));
        ck_assert_ct(ct_optim_clip_read(&opt, &f, &nm));
        clip_reference(g, n, max_norm, &rf, &rn);
        if (bits_of(nm) != bits_of(rn) || bits_of(f) != bits_of(rf)) {
          if (!mismatched++)
            fprintf(stderr, "%s [%s], %zu gradients, trial %d: norm %.9g, factor %.9g; in the "
                    "documented order %.9g, %.9g\n", dev.info.name, dev.info.platform_name, n,
                    trial, (double)nm, (double)f, (double)rn, (double)rf);
        }
        clReleaseMemObject(b);
      }
      ck_assert_msg(mismatched == 0, "%s [%s]: %d of 8 clip norms of %zu gradients are not the "
                    "documented order's bits", dev.info.name, dev.info.platform_name, mismatched,
                    n);
      free(g);
      ct_optim_free(&opt);
      checked++;
    }
    ct_device_close(&dev);
  }
  if (!checked) fprintf(stderr, "note: no PoCL, Oclgrind or Intel device: clip not checked\n");
}
END_TEST

// ct_optim_step_unless: a non-zero flag on the device leaves everything as it was; a zero flag
// gives ct_optim_step's bits; t is the caller's to advance.
START_TEST(step_unless_skips_on_the_device) {
  ct_device dev;
  ct_test_device("auto", &dev);
  const size_t n = 777;
  for (int kind = 0; kind < 2; kind++) {
    ct_optim_config c;
    ct_optim_config_defaults(kind ? CT_OPT_ADAMW : CT_OPT_SGD, &c);
    float *p0 = malloc(n * 4), *g = malloc(n * 4), *pa = malloc(n * 4), *pb = malloc(n * 4);
    ct_test_rand_fill(p0, n, 3, -1, 1);
    ct_test_rand_fill(g, n, 4, -1, 1);
    ct_optim a, b;
    ck_assert_ct(ct_optim_init(&dev, &c, n, &a));
    ck_assert_ct(ct_optim_init(&dev, &c, n, &b));
    cl_mem da = upload(&dev, p0, n), db = upload(&dev, p0, n), dg = upload(&dev, g, n);
    cl_uint flags[3] = {0, 5, 0};
    cl_int err;
    cl_mem df = clCreateBuffer(dev.ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof flags,
                               flags, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    ck_assert_ct(ct_optim_step_unless(&b, db, dg, 0.01f, df, 1));   // flag 5: skipped
    ck_assert_int_eq((int)b.t, 0);
    download(&dev, db, pb, n);
    ck_assert_uint_eq(count_bit_diffs(pb, p0, n, "skipped step"), 0);
    ck_assert_ct(ct_optim_step_unless(&b, db, dg, 0.01f, df, 2));   // flag 0: applied
    ct_optim_count(&b);
    ck_assert_ct(ct_optim_step(&a, da, dg, 0.01f));
    ck_assert_int_eq((int)a.t, 1);
    ck_assert_int_eq((int)b.t, 1);
    download(&dev, da, pa, n);
    download(&dev, db, pb, n);
    ck_assert_uint_eq(count_bit_diffs(pb, pa, n, "applied step"), 0);
    clReleaseMemObject(da), clReleaseMemObject(db), clReleaseMemObject(dg), clReleaseMemObject(df);
    ct_optim_free(&a);
    ct_optim_free(&b);
    free(p0), free(g), free(pa), free(pb);
  }
  ct_device_close(&dev);
}
END_TEST

int main(void) {
  Suite *s = suite_create("optim");
  TCase *host = tcase_create("host");
  tcase_add_test(host, names_defaults_and_checks);
  tcase_add_test(host, schedules_at_chosen_steps);
  suite_add_tcase(s, host);
  TCase *tc = tcase_create("device");
  tcase_set_timeout(tc, 600);
  tcase_add_test(tc, sgd_matches_reference);
  tcase_add_test(tc, adamw_matches_reference);
  tcase_add_test(tc, soft_divsqrt_is_correctly_rounded);
  tcase_add_test(tc, adamw_same_bits_through_soft_divsqrt);
  tcase_add_test(tc, state_round_trip_and_resume);
  tcase_add_test(tc, step_unless_skips_on_the_device);
  tcase_add_test(tc, every_platform_gives_the_same_bits);
  tcase_add_test(tc, clip_factor_has_the_same_bits_everywhere);
  suite_add_tcase(s, tc);
  return ct_test_run(s, 1);
}
