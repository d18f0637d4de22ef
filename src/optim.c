// optim.c: optimizers (SGD, AdamW) on the device, learning-rate schedules on the host.
//
// The kernels live in cl/optim.cl. Each ct_optim creates its own kernel object (arguments are
// per kernel object, so two optimizers on one device never race on clSetKernelArg), from the
// "optim" program built plainly where the device rounds / and sqrt correctly
// (CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT); otherwise with -DCT_F64_DIVSQRT (through double
// precision, correctly rounded by the spec) where it has cl_khr_fp64, else with
// -DCT_SOFT_DIVSQRT (exact integer division and sqrt in the kernel). Host scalars are derived in double from IEEE + - * /
// and sqrt only (powers by repeated squaring), so every host computes the same floats.
#include "cltrain/optim.h"

#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cltrain/prof.h"
#include "cltrain/program.h"

// ---- names ----------------------------------------------------------------------------------

ct_status ct_optim_parse(const char *name, ct_optim_kind *kind) {
  if (name && !strcasecmp(name, "sgd")) { *kind = CT_OPT_SGD; return CT_OK; }
  if (name && !strcasecmp(name, "adamw")) { *kind = CT_OPT_ADAMW; return CT_OK; }
  return CT_FAIL(CT_ERR_USAGE, "--optimizer: unknown optimizer '%s' (expected sgd or adamw)",
                 name ? name : "");
}

ct_status ct_schedule_parse(const char *name, ct_sched_kind *kind) {
  if (name && !strcasecmp(name, "constant")) { *kind = CT_SCHED_CONSTANT; return CT_OK; }
  if (name && !strcasecmp(name, "step")) { *kind = CT_SCHED_STEP; return CT_OK; }
  if (name && !strcasecmp(name, "cosine")) { *kind = CT_SCHED_COSINE; return CT_OK; }
  return CT_FAIL(CT_ERR_USAGE,
                 "--schedule: unknown schedule '%s' (expected constant, step or cosine)",
                 name ? name : "");
}

void ct_optim_config_defaults(ct_optim_kind kind, ct_optim_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->kind = kind;
  cfg->beta1 = 0.9f;
  cfg->beta2 = 0.999f;
  cfg->eps = 1e-8f;
  if (kind == CT_OPT_ADAMW) {
    cfg->lr = 1e-3f;
    cfg->weight_decay = 0.01f;
  } else {
    cfg->lr = 0.05f;
    cfg->momentum = 0.9f;
  }
}

ct_status ct_optim_config_check(const ct_optim_config *c) {
  if (c->kind != CT_OPT_SGD && c->kind != CT_OPT_ADAMW)
    return CT_FAIL(CT_ERR_USAGE, "--optimizer: unknown optimizer kind %d", (int)c->kind);
  if (!isfinite(c->lr) || c->lr < 0)
    return CT_FAIL(CT_ERR_USAGE, "--lr: expected a finite number >= 0, got %g", (double)c->lr);
  if (!isfinite(c->weight_decay) || c->weight_decay < 0)
    return CT_FAIL(CT_ERR_USAGE, "--weight-decay: expected a finite number >= 0, got %g",
                   (double)c->weight_decay);
  if (c->kind == CT_OPT_SGD) {
    if (!(c->momentum >= 0 && c->momentum < 1))
      return CT_FAIL(CT_ERR_USAGE, "--momentum: expected a number in [0, 1), got %g",
                     (double)c->momentum);
    if (c->nesterov && c->momentum == 0)
      return CT_FAIL(CT_ERR_USAGE, "--nesterov: needs --momentum > 0");
  } else {
    if (!(c->beta1 >= 0 && c->beta1 < 1))
      return CT_FAIL(CT_ERR_USAGE, "--beta1: expected a number in [0, 1), got %g",
                     (double)c->beta1);
    if (!(c->beta2 >= 0 && c->beta2 < 1))
      return CT_FAIL(CT_ERR_USAGE, "--beta2: expected a number in [0, 1), got %g",
                     (double)c->beta2);
    if (!(c->eps > 0) || !isfinite(c->eps))
      return CT_FAIL(CT_ERR_USAGE, "--eps: expected a finite number > 0, got %g", (double)c->eps);
  }
  return CT_OK;
}

// ---- schedules ------------------------------------------------------------------------------

// x^k for k >= 0 by repeated squaring: IEEE multiplications only, the same on every host.
static double pow_int(double x, long k) {
  double r = 1.0;
  while (k > 0) {
    if (k & 1) r *= x;
    x *= x;
    k >>= 1;
  }
  return r;
}

float ct_schedule_lr(const ct_schedule *s, float base_lr, long step) {
  double lr = base_lr;
  long warmup = s->warmup > 0 ? s->warmup : 0;
  if (step < 0) step = 0;
  if (step < warmup) return (float)(lr * (double)(step + 1) / (double)warmup);
  long k = step - warmup;
  switch (s->kind) {
    case CT_SCHED_CONSTANT:
      return base_lr;
    case CT_SCHED_STEP:
      if (s->step_size <= 0) return base_lr;
      return (float)(lr * pow_int((double)s->gamma, k / s->step_size));
    case CT_SCHED_COSINE: {
      long span = s->total - warmup;
      double q = span > 0 ? (k >= span ? 1.0 : (double)k / (double)span) : 1.0;
      double lo = s->min_lr;
      // cos from libm: correctly rounded in practice; the float rounding hides any last-bit
      // difference between hosts except in ~2^-29 of the cases (the ranks' parameter checksum
      // comparison would catch that).
      return (float)(lo + (lr - lo) * 0.5 * (1.0 + cos(M_PI * q)));
    }
  }
  return base_lr;
}

ct_status ct_schedule_check(const ct_schedule *s) {
  if (s->kind != CT_SCHED_CONSTANT && s->kind != CT_SCHED_STEP && s->kind != CT_SCHED_COSINE)
    return CT_FAIL(CT_ERR_USAGE, "--schedule: unknown schedule kind %d", (int)s->kind);
  if (s->warmup < 0) return CT_FAIL(CT_ERR_USAGE, "--warmup: expected >= 0, got %ld", s->warmup);
  if (s->kind == CT_SCHED_STEP && (!isfinite(s->gamma) || !(s->gamma > 0)))
    return CT_FAIL(CT_ERR_USAGE, "--gamma: expected a finite number > 0, got %g",
                   (double)s->gamma);
  if (s->kind == CT_SCHED_COSINE && (!isfinite(s->min_lr) || s->min_lr < 0))
    return CT_FAIL(CT_ERR_USAGE, "--min-lr: expected a finite number >= 0, got %g",
                   (double)s->min_lr);
  return CT_OK;
}

// ---- the optimizer --------------------------------------------------------------------------

ct_status ct_optim_init(ct_device *dev, const ct_optim_config *cfg, size_t count, ct_optim *opt) {
  memset(opt, 0, sizeof *opt);
  CT_TRY(ct_optim_config_check(cfg));
  if (count == 0) return CT_FAIL(CT_ERR_INTERNAL, "optimizer over 0 parameters");
  if (count > (size_t)UINT32_MAX)
    return CT_FAIL(CT_ERR_USAGE, "the model has %zu parameters; the optimizer kernels address at "
                   "most %u", count, (unsigned)UINT32_MAX);
  // / and sqrt correctly rounded: by the device, else through double precision where the device
  // has it, else by the integer code. CLTRAIN_SOFT_DIVSQRT=1 forces the integer code, =f64 the
  // double path (where cl_khr_fp64 is there), =0 (or unset) chooses as above.
  const char *env = getenv("CLTRAIN_SOFT_DIVSQRT");
  int force_f64 = env && strcmp(env, "f64") == 0;
  int force_int = env && *env && strcmp(env, "0") != 0 && !force_f64;
  int soft = force_int ? 1 : !dev->info.correct_sqrt || force_f64 ? (dev->info.fp64 ? 2 : 1) : 0;
  size_t state_count = cfg->kind == CT_OPT_ADAMW ? 2 * count : count;

  // elements per work-item: 8 (explicit float8 in sgd_step) on CPUs, 1 on GPUs (coalescing)
  int per_item = (dev->info.type & CL_DEVICE_TYPE_CPU) ? 8 : 1;
  // SGD on a CPU: a few contiguous chunks per core, in work-groups of one (see launch)
  size_t chunk = 0;
  if ((dev->info.type & CL_DEVICE_TYPE_CPU) && cfg->kind == CT_OPT_SGD) {
    size_t groups = 4 * (size_t)(dev->info.compute_units ? dev->info.compute_units : 1);
    size_t vecs = (count + 7) / 8;
    chunk = (vecs + groups - 1) / groups * 8;
  }
  // AdamW on a CPU: chunks of 1,024 elements (a matrix of the language model is dozens of
  // them), each as float8s, in groups of one (see adamw_items in cl/optim.cl)
  if ((dev->info.type & CL_DEVICE_TYPE_CPU) && cfg->kind == CT_OPT_ADAMW) chunk = 1024;
  char opts[128];
  snprintf(opts, sizeof opts, "%s-DCT_PER_ITEM=%d",
           soft == 2 ? "-DCT_F64_DIVSQRT " : soft ? "-DCT_SOFT_DIVSQRT " : "", per_item);
  if (chunk)
    snprintf(opts + strlen(opts), sizeof opts - strlen(opts), " -DCT_%s_CHUNK=%zuu",
             cfg->kind == CT_OPT_ADAMW ? "ADAMW" : "SGD", chunk);
  cl_program prog;
  CT_TRY(ct_program_build(dev, "optim", opts, &prog));
  const char *name = cfg->kind == CT_OPT_ADAMW ? "adamw_step" : "sgd_step";
  cl_int err;
  cl_kernel k = clCreateKernel(prog, name, &err);
  if (err != CL_SUCCESS)
    return CT_FAIL(CT_ERR_CL, "clCreateKernel(cl/optim.cl, \"%s\") failed: %s", name,
                   ct_cl_errname(err));
  cl_kernel kp = NULL;
  if (cfg->kind == CT_OPT_SGD) {
    kp = clCreateKernel(prog, "sgd_predict", &err);
    if (err != CL_SUCCESS) {
      clReleaseKernel(k);
      return CT_FAIL(CT_ERR_CL, "clCreateKernel(cl/optim.cl, \"sgd_predict\") failed: %s",
                     ct_cl_errname(err));
    }
  }
  cl_mem state = ct_device_buffer(dev, state_count * sizeof(float), &err);
  if (err != CL_SUCCESS) {
    if (kp) clReleaseKernel(kp);
    clReleaseKernel(k);
    return CT_FAIL(err == CL_OUT_OF_HOST_MEMORY || err == CL_MEM_OBJECT_ALLOCATION_FAILURE ||
                           err == CL_INVALID_BUFFER_SIZE
                       ? CT_ERR_NOMEM
                       : CT_ERR_CL,
                   "clCreateBuffer(optimizer state, %zu floats) failed: %s", state_count,
                   ct_cl_errname(err));
  }
  float zero = 0.0f;
  err = clEnqueueFillBuffer(dev->queue, state, &zero, sizeof zero, 0, state_count * sizeof(float),
                            0, NULL, NULL);
  if (err == CL_SUCCESS) err = clFinish(dev->queue);
  if (err != CL_SUCCESS) {
    clReleaseMemObject(state);
    if (kp) clReleaseKernel(kp);
    clReleaseKernel(k);
    return CT_FAIL(CT_ERR_CL, "zeroing the optimizer state failed: %s", ct_cl_errname(err));
  }
  opt->dev = dev;
  opt->cfg = *cfg;
  opt->count = count;
  opt->state = state;
  opt->state_count = state_count;
  opt->t = 0;
  opt->kernel = k;
  opt->soft_divsqrt = soft;
  opt->per_item = per_item;
  opt->chunk = chunk;
  opt->predict = kp;
  opt->prog = prog;
  return CT_OK;
}

// ---- gradient clipping ------------------------------------------------------------------------

#define CT_CLIP_PARTS 64   // the same in cl/optim.cl

// The clip's buffers and kernels, made on first use.
static ct_status clip_ready(ct_optim *opt) {
  if (opt->clip_buf) return CT_OK;
  cl_int err;
  CL_CHECK((opt->clip_buf = clCreateBuffer(opt->dev->ctx, CL_MEM_READ_WRITE, 2 * sizeof(float),
                                           NULL, &err), err));
  CL_CHECK((opt->clip_parts = clCreateBuffer(opt->dev->ctx, CL_MEM_READ_WRITE,
                                             CT_CLIP_PARTS * sizeof(float), NULL, &err), err));
  CL_CHECK((opt->clip_sum = clCreateKernel(opt->prog, "clip_sqsum", &err), err));
  CL_CHECK((opt->clip_fac = clCreateKernel(opt->prog, "clip_factor", &err), err));
  return CT_OK;
}

ct_status ct_optim_clip(ct_optim *opt, cl_mem grads, size_t lo, size_t hi, float max_norm) {
  CT_TRY(clip_ready(opt));
  cl_uint a = (cl_uint)lo, b = (cl_uint)hi;
  size_t parts = CT_CLIP_PARTS, one = 1;
  CL_CHECK(clSetKernelArg(opt->clip_sum, 0, sizeof grads, &grads));
  CL_CHECK(clSetKernelArg(opt->clip_sum, 1, sizeof a, &a));
  CL_CHECK(clSetKernelArg(opt->clip_sum, 2, sizeof b, &b));
  CL_CHECK(clSetKernelArg(opt->clip_sum, 3, sizeof opt->clip_parts, &opt->clip_parts));
  CL_CHECK(clEnqueueNDRangeKernel(opt->dev->queue, opt->clip_sum, 1, NULL, &parts, &one, 0, NULL,
                                  ct_prof_event(opt->dev, "clip_sqsum", 0, CT_PROF_KERNEL)));
  CL_CHECK(clSetKernelArg(opt->clip_fac, 0, sizeof opt->clip_parts, &opt->clip_parts));
  CL_CHECK(clSetKernelArg(opt->clip_fac, 1, sizeof max_norm, &max_norm));
  CL_CHECK(clSetKernelArg(opt->clip_fac, 2, sizeof opt->clip_buf, &opt->clip_buf));
  CL_CHECK(clEnqueueNDRangeKernel(opt->dev->queue, opt->clip_fac, 1, NULL, &one, &one, 0, NULL,
                                  ct_prof_event(opt->dev, "clip_factor", 0, CT_PROF_KERNEL)));
  opt->clip_on = 1;
  return CT_OK;
}

ct_status ct_optim_clip_set(ct_optim *opt, float factor) {
  CT_TRY(clip_ready(opt));
  opt->clip_host = factor;   // (the write reads it when it runs: it stays until the next step)
  CL_CHECK(clEnqueueWriteBuffer(opt->dev->queue, opt->clip_buf, CL_FALSE, 0, sizeof(float),
                                &opt->clip_host, 0, NULL, NULL));
  opt->clip_on = 1;
  return CT_OK;
}

void ct_optim_clip_off(ct_optim *opt) { opt->clip_on = 0; }

ct_status ct_optim_clip_read(ct_optim *opt, float *factor, float *norm) {
  float h[2] = {1.0f, 0.0f};
  if (opt->clip_buf)
    CL_CHECK(clEnqueueReadBuffer(opt->dev->queue, opt->clip_buf, CL_TRUE, 0, sizeof h, h, 0, NULL,
                                 NULL));
  *factor = h[0], *norm = h[1];
  return CT_OK;
}

void ct_optim_free(ct_optim *opt) {
  free(opt->no_decay);
  if (opt->clip_buf) clReleaseMemObject(opt->clip_buf);
  if (opt->clip_parts) clReleaseMemObject(opt->clip_parts);
  if (opt->clip_sum) clReleaseKernel(opt->clip_sum);
  if (opt->clip_fac) clReleaseKernel(opt->clip_fac);
  if (opt->state) clReleaseMemObject(opt->state);
  if (opt->kernel) clReleaseKernel(opt->kernel);
  if (opt->predict) clReleaseKernel(opt->predict);
  memset(opt, 0, sizeof *opt);
}

void ct_optim_count(ct_optim *opt) { opt->t++; }

// One launch of an update kernel over the parameters [lo, hi): per_item elements per
// work-item. On a CPU (chunk > 0): chunk elements per work-item, in groups of one, so that
// a runtime that vectorizes across work-items (Intel's) does not turn each item's float8 into
// gathers.
static ct_status launch(ct_optim *opt, cl_kernel k, const char *name, size_t lo, size_t hi) {
  int chunked = opt->chunk > 0;   // (on CPUs: SGD's and AdamW's kernels)
  size_t per = chunked ? opt->chunk : (size_t)opt->per_item, one = 1;
  size_t items = (hi - lo + per - 1) / per;
  if (items == 0) return CT_OK;
  size_t global = chunked ? items : (items + 63) / 64 * 64;
  CL_CHECK(clEnqueueNDRangeKernel(opt->dev->queue, k, 1, NULL, &global, chunked ? &one : NULL,
                                  0, NULL,
                                  ct_prof_event(opt->dev, name, 0, CT_PROF_KERNEL)));
  return CT_OK;
}

// SGD's four scalars (lr, momentum, weight decay, nesterov) from argument `first` on.
static ct_status set_sgd_args(cl_kernel k, cl_uint first, float lr, const ct_optim_config *c) {
  cl_int nesterov = c->nesterov ? 1 : 0;
  CL_CHECK(clSetKernelArg(k, first, sizeof lr, &lr));
  CL_CHECK(clSetKernelArg(k, first + 1, sizeof c->momentum, &c->momentum));
  CL_CHECK(clSetKernelArg(k, first + 2, sizeof c->weight_decay, &c->weight_decay));
  CL_CHECK(clSetKernelArg(k, first + 3, sizeof nesterov, &nesterov));
  return CT_OK;
}

// Calls piece(lo', hi', decay) for the runs of [lo, hi) with and without weight decay.
typedef ct_status (*piece_fn)(ct_optim *opt, const void *ctx, size_t lo, size_t hi, int decay);
static ct_status by_decay(ct_optim *opt, size_t lo, size_t hi, piece_fn piece, const void *ctx) {
  size_t at = lo;
  for (int r = 0; r < opt->n_no_decay && at < hi; r++) {
    size_t a = opt->no_decay[2 * r], b = opt->no_decay[2 * r + 1];
    if (b <= at) continue;
    if (a >= hi) break;
    if (a > at) CT_TRY(piece(opt, ctx, at, a, 1));
    size_t e = b < hi ? b : hi;
    CT_TRY(piece(opt, ctx, a > at ? a : at, e, 0));
    at = e;
  }
  if (at < hi) CT_TRY(piece(opt, ctx, at, hi, 1));
  return CT_OK;
}

ct_status ct_optim_set_no_decay(ct_optim *opt, const size_t *lo, const size_t *hi, int n) {
  free(opt->no_decay);
  opt->no_decay = NULL;
  opt->n_no_decay = 0;
  if (n <= 0) return CT_OK;
  opt->no_decay = malloc(2 * (size_t)n * sizeof *opt->no_decay);
  if (!opt->no_decay) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  for (int r = 0; r < n; r++) {
    if (lo[r] > hi[r] || hi[r] > opt->count || (r > 0 && lo[r] < hi[r - 1]))
      return CT_FAIL(CT_ERR_INTERNAL, "no-decay range %d [%zu, %zu) out of order", r, lo[r], hi[r]);
    opt->no_decay[2 * r] = lo[r], opt->no_decay[2 * r + 1] = hi[r];
  }
  opt->n_no_decay = n;
  return CT_OK;
}

typedef struct {
  cl_mem out, params, grads;
  float gscale, lr;
} predict_ctx;

static ct_status predict_piece(ct_optim *opt, const void *ctx, size_t lo, size_t hi, int decay) {
  const predict_ctx *c = ctx;
  cl_kernel k = opt->predict;
  cl_uint n = (cl_uint)hi, base = (cl_uint)lo;
  ct_optim_config cfg = opt->cfg;
  if (!decay) cfg.weight_decay = 0.0f;
  CL_CHECK(clSetKernelArg(k, 0, sizeof c->out, &c->out));
  CL_CHECK(clSetKernelArg(k, 1, sizeof c->params, &c->params));
  CL_CHECK(clSetKernelArg(k, 2, sizeof c->grads, &c->grads));
  CL_CHECK(clSetKernelArg(k, 3, sizeof opt->state, &opt->state));
  CL_CHECK(clSetKernelArg(k, 4, sizeof n, &n));
  CL_CHECK(clSetKernelArg(k, 5, sizeof c->gscale, &c->gscale));
  CT_TRY(set_sgd_args(k, 6, c->lr, &cfg));
  CL_CHECK(clSetKernelArg(k, 10, sizeof base, &base));
  return launch(opt, k, "sgd_predict", lo, hi);
}

ct_status ct_optim_sgd_predict(ct_optim *opt, cl_mem out, cl_mem params, cl_mem grads,
                               float gscale, float lr) {
  if (!opt->predict) return CT_FAIL(CT_ERR_INTERNAL, "the prediction is for SGD only");
  predict_ctx c = {out, params, grads, gscale, lr};
  return by_decay(opt, 0, opt->count, predict_piece, &c);
}

// The skip-flag arguments: a buffer (any valid one when there is no flag) and the index, or
// 0xffffffff (CT_NO_SKIP in cl/optim.cl) for none.
static cl_int set_skip(cl_kernel k, cl_uint first, cl_mem buf, cl_mem skip, size_t at) {
  cl_uint idx = skip ? (cl_uint)at : 0xffffffffu;
  cl_int err = clSetKernelArg(k, first, sizeof buf, &buf);
  if (err == CL_SUCCESS) err = clSetKernelArg(k, first + 1, sizeof idx, &idx);
  return err;
}

ct_status ct_optim_step(ct_optim *opt, cl_mem params, cl_mem grads, float lr) {
  CT_TRY(ct_optim_step_unless(opt, params, grads, lr, NULL, 0));
  opt->t++;
  return CT_OK;
}

ct_status ct_optim_step_unless(ct_optim *opt, cl_mem params, cl_mem grads, float lr, cl_mem skip,
                               size_t skip_at) {
  return ct_optim_step_range(opt, params, grads, lr, skip, skip_at, 0, opt->count);
}

typedef struct {
  cl_mem params, grads, skip;
  size_t skip_at;
  float lr;
} step_ctx;

// The clip's arguments from `first` on: its factor's buffer and whether to use it (a valid
// buffer either way: `any`).
static ct_status set_clip(ct_optim *opt, cl_kernel k, cl_uint first, cl_mem any) {
  cl_mem buf = opt->clip_on ? opt->clip_buf : any;
  cl_uint on = (cl_uint)opt->clip_on;
  CL_CHECK(clSetKernelArg(k, first, sizeof buf, &buf));
  CL_CHECK(clSetKernelArg(k, first + 1, sizeof on, &on));
  return CT_OK;
}

static ct_status step_piece(ct_optim *opt, const void *ctx, size_t lo, size_t hi, int decay) {
  const step_ctx *x = ctx;
  cl_kernel k = opt->kernel;
  ct_optim_config cfg = opt->cfg;
  if (!decay) cfg.weight_decay = 0.0f;
  const ct_optim_config *c = &cfg;
  cl_mem params = x->params, grads = x->grads, skip = x->skip;
  size_t skip_at = x->skip_at;
  float lr = x->lr;
  cl_uint n = (cl_uint)(c->kind == CT_OPT_SGD ? hi : opt->count), base = (cl_uint)lo;
  cl_uint end = (cl_uint)hi;
  CL_CHECK(clSetKernelArg(k, 0, sizeof params, &params));
  CL_CHECK(clSetKernelArg(k, 1, sizeof grads, &grads));
  CL_CHECK(clSetKernelArg(k, 2, sizeof opt->state, &opt->state));
  CL_CHECK(clSetKernelArg(k, 3, sizeof n, &n));
  if (c->kind == CT_OPT_SGD) {
    CT_TRY(set_sgd_args(k, 4, lr, c));
    CL_CHECK(set_skip(k, 8, skip ? skip : grads, skip, skip_at));
    CL_CHECK(clSetKernelArg(k, 10, sizeof base, &base));
    CT_TRY(set_clip(opt, k, 11, grads));
  } else {
    long t = opt->t + 1;   // this update's index, from 1
    double b1 = c->beta1, b2 = c->beta2;
    float lrwd = (float)((double)lr * (double)c->weight_decay);
    float omb1 = (float)(1.0 - b1), omb2 = (float)(1.0 - b2);
    float step = (float)((double)lr / (1.0 - pow_int(b1, t)));
    float c2 = (float)sqrt(1.0 - pow_int(b2, t));
    CL_CHECK(clSetKernelArg(k, 4, sizeof lrwd, &lrwd));
    CL_CHECK(clSetKernelArg(k, 5, sizeof c->beta1, &c->beta1));
    CL_CHECK(clSetKernelArg(k, 6, sizeof omb1, &omb1));
    CL_CHECK(clSetKernelArg(k, 7, sizeof c->beta2, &c->beta2));
    CL_CHECK(clSetKernelArg(k, 8, sizeof omb2, &omb2));
    CL_CHECK(clSetKernelArg(k, 9, sizeof step, &step));
    CL_CHECK(clSetKernelArg(k, 10, sizeof c2, &c2));
    CL_CHECK(clSetKernelArg(k, 11, sizeof c->eps, &c->eps));
    CL_CHECK(set_skip(k, 12, skip ? skip : grads, skip, skip_at));
    CL_CHECK(clSetKernelArg(k, 14, sizeof base, &base));
    CL_CHECK(clSetKernelArg(k, 15, sizeof end, &end));
    CT_TRY(set_clip(opt, k, 16, grads));
  }
  return launch(opt, k, c->kind == CT_OPT_SGD ? "sgd_step" : "adamw_step", lo, hi);
}

ct_status ct_optim_step_range(ct_optim *opt, cl_mem params, cl_mem grads, float lr, cl_mem skip,
                              size_t skip_at, size_t lo, size_t hi) {
  if (!opt->kernel) return CT_FAIL(CT_ERR_INTERNAL, "ct_optim_step on an uninitialised optimizer");
  if (lo > hi || hi > opt->count)
    return CT_FAIL(CT_ERR_INTERNAL, "optimizer range [%zu, %zu) of %zu parameters", lo, hi,
                   opt->count);
  step_ctx x = {params, grads, skip, skip_at, lr};
  return by_decay(opt, lo, hi, step_piece, &x);
}

ct_status ct_optim_read_state(ct_optim *opt, float *host) {
  CL_CHECK(clEnqueueReadBuffer(opt->dev->queue, opt->state, CL_TRUE, 0,
                               opt->state_count * sizeof(float), host, 0, NULL, NULL));
  return CT_OK;
}

ct_status ct_optim_write_state(ct_optim *opt, const float *host) {
  CL_CHECK(clEnqueueWriteBuffer(opt->dev->queue, opt->state, CL_TRUE, 0,
                                opt->state_count * sizeof(float), host, 0, NULL, NULL));
  return CT_OK;
}
