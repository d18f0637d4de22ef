// optim.h: optimizers (SGD with momentum / Nesterov / L2 weight decay, AdamW) and learning-rate
// schedules (constant, step, cosine; each with linear warm-up).
//
// Defines: ct_optim_kind, ct_optim_config (+ ct_optim_config_defaults, ct_optim_parse),
// ct_sched_kind, ct_schedule (+ ct_schedule_parse, ct_schedule_lr), ct_optim (+ ct_optim_init /
// _free / _step / _step_unless / _step_range / _count / _set_no_decay / _clip / _clip_set /
// _clip_off / _clip_read / _sgd_predict /
// _read_state / _write_state).
//
// The update kernels (cl/optim.cl) give the SAME BITS on every device for the same inputs, so
// replicas on different vendors stay identical: no contraction into FMA, no native_ or mad
// functions, division and square root correctly rounded (by the device where it reports
// CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT, otherwise by an exact integer implementation in the
// kernel), and every scalar that needs pow or sqrt is computed on the host in double (from plain
// IEEE operations, no transcendental libm calls) and passed as a float. What is not covered: a
// device that flushes single-precision denormals to zero (no CL_FP_DENORM) can differ from the
// others once values fall below 2^-126.
//
// Update formulas, per element (float arithmetic, each operation rounded):
//   SGD    g = grad + wd*p                          (only when wd != 0; PyTorch's SGD L2)
//          v = mu*v + g;  g = nesterov ? g + mu*v : v   (only when mu != 0; dampening 0)
//          p = p - lr*g
//   AdamW  p = p - (lr*wd)*p                        (decoupled decay; lr*wd rounded on the host)
//          m = b1*m + (1-b1)*g
//          v = b2*v + (1-b2)*(g*g)
//          p = p - s*(m / (sqrt(v)/c + eps))        s = lr/(1-b1^t), c = sqrt(1-b2^t), t >= 1
// With the state zeroed, SGD's first momentum step gives v = g, as PyTorch's does.
#ifndef CLTRAIN_OPTIM_H
#define CLTRAIN_OPTIM_H

#include <stddef.h>

#include "cltrain/device.h"

typedef enum { CT_OPT_SGD, CT_OPT_ADAMW } ct_optim_kind;

typedef struct {
  ct_optim_kind kind;
  float lr;                  // base learning rate
  float momentum;            // SGD (0 = plain SGD); PyTorch semantics: v = mu*v + g; p -= lr*v
  int nesterov;              // SGD: PyTorch's nesterov (needs momentum > 0)
  float weight_decay;        // SGD: L2 added to the gradient; AdamW: decoupled, p -= lr*wd*p
  float beta1, beta2, eps;   // AdamW (defaults 0.9, 0.999, 1e-8), with bias correction
} ct_optim_config;

typedef enum { CT_SCHED_CONSTANT, CT_SCHED_STEP, CT_SCHED_COSINE } ct_sched_kind;

typedef struct {
  ct_sched_kind kind;
  long warmup;               // linear warm-up: step k < warmup gets lr*(k+1)/warmup; 0 = none
  long step_size;            // STEP: multiply by gamma every step_size steps (after warm-up)
  float gamma;
  long total;                // COSINE: total steps; lr decays from lr to min_lr over [warmup, total]
  float min_lr;
} ct_schedule;

// "sgd" | "adamw" (case-insensitive); CT_ERR_USAGE naming --optimizer otherwise.
ct_status ct_optim_parse(const char *name, ct_optim_kind *kind);
// "constant" | "step" | "cosine" (case-insensitive); CT_ERR_USAGE naming --schedule otherwise.
ct_status ct_schedule_parse(const char *name, ct_sched_kind *kind);
// Fills every field. sgd: lr 0.05, momentum 0.9, nesterov 0, wd 0; adamw: lr 1e-3, momentum 0,
// wd 0.01. Both: beta1 0.9, beta2 0.999, eps 1e-8.
void ct_optim_config_defaults(ct_optim_kind kind, ct_optim_config *cfg);
// Checks the ranges (lr >= 0 and finite, momentum and betas in [0, 1), wd >= 0, eps > 0,
// nesterov needs momentum); CT_ERR_USAGE naming the flag (--lr, --momentum, --nesterov,
// --weight-decay, --beta1, --beta2, --eps). ct_optim_init calls it.
ct_status ct_optim_config_check(const ct_optim_config *cfg);
// Learning rate at `step` (counting from 0), computed in double and rounded to float.
//   warm-up   step < warmup: base_lr*(step+1)/warmup
//   constant  base_lr
//   step      base_lr * gamma^floor((step-warmup)/step_size)   (step_size <= 0: constant)
//   cosine    min_lr + (base_lr-min_lr)*(1+cos(pi*q))/2, q = (step-warmup)/(total-warmup)
//             clamped to [0, 1] (q = 1 when total <= warmup: min_lr after the warm-up)
float ct_schedule_lr(const ct_schedule *s, float base_lr, long step);
// Checks the schedule's fields (warmup >= 0; STEP: gamma > 0 and finite; COSINE: min_lr >= 0);
// CT_ERR_USAGE naming the flag (--warmup, --gamma, --min-lr).
ct_status ct_schedule_check(const ct_schedule *s);

typedef struct ct_optim {
  ct_device *dev;
  ct_optim_config cfg;
  size_t count;              // parameters
  cl_mem state;              // ONE buffer: SGD (count) momentum; AdamW (2*count): m then v
  size_t state_count;        // floats in state
  long t;                    // updates applied so far (AdamW bias correction); set it on resume
  // added
  cl_kernel kernel;          // this optimizer's own update kernel (its arguments are per object)
  int soft_divsqrt;          // division and sqrt: 0 the device's, 1 the kernel's exact integer
                             // code, 2 through double precision (cl_khr_fp64)
  int per_item;              // elements per work-item of the update kernel (CT_PER_ITEM)
  size_t chunk;              // on a CPU: elements per work-item (CT_SGD_CHUNK, CT_ADAMW_CHUNK),
                             // else 0
  cl_kernel predict;         // SGD: sgd_predict (ct_optim_sgd_predict)
  size_t *no_decay;          // ranges [no_decay[2r], no_decay[2r+1]) without weight decay,
  int n_no_decay;            // ascending (ct_optim_set_no_decay); none: decay everywhere
  cl_program prog;           // cl/optim.cl as built for this optimizer
  // gradient clipping (ct_optim_clip): the factor (and the norm) on the device, its parts
  cl_mem clip_buf, clip_parts;
  cl_kernel clip_sum, clip_fac;
  int clip_on;               // the updates multiply the gradient by clip_buf[0]
  float clip_host;           // ct_optim_clip_set's value, until its write has run
} ct_optim;

// Creates the state buffer (zeroed) and the update kernel; t = 0. On failure *opt is left zeroed
// (ct_optim_free is safe on it). The environment variable CLTRAIN_SOFT_DIVSQRT=1 forces the
// integer division/sqrt path even on devices with correctly rounded ones, =f64 the path through
// double precision on devices with cl_khr_fp64 (for tests).
ct_status ct_optim_init(ct_device *dev, const ct_optim_config *cfg, size_t count, ct_optim *opt);
void ct_optim_free(ct_optim *opt);
// One update of params (count) from grads (count) at learning rate lr; enqueued on dev->queue,
// no blocking. Increments t.
ct_status ct_optim_step(ct_optim *opt, cl_mem params, cl_mem grads, float lr);
// The same update, skipped on the device when the uint at index skip_at of buffer `skip` is not
// zero (a count of non-finite gradients the device computed just before): the host need not
// wait for it. Does NOT change t: the host calls ct_optim_count once it knows the update ran.
// The update uses t + 1 as its index (AdamW's bias correction).
ct_status ct_optim_step_unless(ct_optim *opt, cl_mem params, cl_mem grads, float lr, cl_mem skip,
                               size_t skip_at);
// The same update of the parameters [lo, hi) only (a sharded update: each rank its segment;
// the other elements of params and of the state are left as they are). Element by element the
// same operations, so the same bits as the whole update there.
ct_status ct_optim_step_range(ct_optim *opt, cl_mem params, cl_mem grads, float lr, cl_mem skip,
                              size_t skip_at, size_t lo, size_t hi);
void ct_optim_count(ct_optim *opt);   // t++
// Gradient clipping: the updates that follow multiply the gradient by min(1, max_norm /
// (||grads[lo, hi)|| + 1e-6)) (PyTorch's clip_grad_norm_), computed on the device after what
// the queue holds, the same bits on every device (a fixed order of sums, exact sqrt and
// division); no host wait. ct_optim_clip_set: a factor the host computed instead (the sharded
// update, whose norm needs every rank's segment). ct_optim_clip_off: the gradient as it is.
// ct_optim_clip_read: the last factor and norm (blocking; for tests and logs).
ct_status ct_optim_clip(ct_optim *opt, cl_mem grads, size_t lo, size_t hi, float max_norm);
ct_status ct_optim_clip_set(ct_optim *opt, float factor);
void ct_optim_clip_off(ct_optim *opt);
ct_status ct_optim_clip_read(ct_optim *opt, float *factor, float *norm);
// The parameters [lo[r], hi[r]) (ascending, not overlapping) get no weight decay in any update
// (biases and LayerNorm weights of a model whose tensor table says so); the rest gets
// --weight-decay. Each update then runs as one launch per run of the same decay.
ct_status ct_optim_set_no_decay(ct_optim *opt, const size_t *lo, const size_t *hi, int n);
// SGD only (CT_ERR_INTERNAL otherwise): out = the parameters after an update of params with
// gradient grads * gscale at learning rate lr, with the momentum as it is now (read, not
// changed). Enqueued on dev->queue, no blocking. --sync stale computes the next step there.
ct_status ct_optim_sgd_predict(ct_optim *opt, cl_mem out, cl_mem params, cl_mem grads,
                               float gscale, float lr);
ct_status ct_optim_read_state(ct_optim *opt, float *host);        // state_count floats, blocking
ct_status ct_optim_write_state(ct_optim *opt, const float *host); // blocking

#endif
