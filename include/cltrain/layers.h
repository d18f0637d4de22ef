// layers.h: the layers of cltrain, each a forward / backward pair that enqueues OpenCL kernels
// (cl/dense.cl, conv.cl, pool.cl, activation.cl, loss.cl) and ct_gemm products on dev->queue.
//
// Defines: ct_conv_geom (+ ct_conv_out_size), ct_dense_forward/_backward/_backward_acc,
// ct_conv_scratch (+ ct_conv2d_scratch_floats), ct_conv2d_forward/_backward,
// ct_maxpool_forward/_backward, ct_relu_forward/_backward,
// ct_dropout_forward/_backward (+ ct_dropout_hash, ct_dropout_threshold, ct_dropout_keeps),
// ct_softmax_xent, ct_fill, ct_axpy, ct_count_nonfinite.
//
// Conventions: activations are float, NCHW for images and (batch, features) row-major for
// vectors (so flatten is a no-op). Parameters live in one flat buffer: each function takes the
// buffer and the offset (in floats) of its weights and bias. Nothing here blocks or copies
// between host and device; the queue is in-order, so calls may follow each other freely.
// Gradients of parameters are OVERWRITTEN (not accumulated). A NULL dx skips the input
// gradient (the first layer of a model needs none). batch (or n) must be >= 1.
#ifndef CLTRAIN_LAYERS_H
#define CLTRAIN_LAYERS_H

#include <stddef.h>
#include <stdint.h>

#include "cltrain/device.h"

// Shapes of a convolution or pooling over a batch: input (batch, c, h, w), output
// (batch, oc, oh, ow), square window k, stride, zero padding pad (pooling: oc = c, pad = 0).
typedef struct {
  int batch;
  int c, h, w;
  int oc, oh, ow;
  int k, stride, pad;
} ct_conv_geom;

// (in + 2*pad - k) / stride + 1, or <= 0 when the window does not fit.
int ct_conv_out_size(int in, int k, int stride, int pad);

// ---- dense: y = x w^T + b ----------------------------------------------------------------
// x (batch, in), w (out, in) at w_off, b (out) at b_off, y (batch, out). relu = 1: y = max(., 0),
// a following ReLU fused into the bias pass.
ct_status ct_dense_forward(ct_device *dev, int batch, int in, int out, cl_mem x, cl_mem w,
                           size_t w_off, cl_mem b, size_t b_off, cl_mem y, int relu);
// dy (batch, out) -> dw (out, in) at dw_off, db (out) at db_off, dx (batch, in) or NULL.
// relu_y (batch, out) or NULL: the layer's output went through a ReLU whose output is relu_y;
// dy is then the gradient AFTER the ReLU and is overwritten (in place) by the gradient before it
// (zero where relu_y <= 0): the ReLU's backward pass fused into the bias-gradient pass.
ct_status ct_dense_backward(ct_device *dev, int batch, int in, int out, cl_mem x, cl_mem w,
                            size_t w_off, cl_mem dy, cl_mem dw, size_t dw_off, cl_mem db,
                            size_t db_off, cl_mem dx, cl_mem relu_y);
// The same, adding into the gradients instead of overwriting them where asked: dw_add for dw
// and db (a weight used twice), dx_add for dx (an input that feeds several nodes). b = NULL in
// ct_dense_forward, db = NULL here: no bias.
ct_status ct_dense_backward_acc(ct_device *dev, int batch, int in, int out, cl_mem x, cl_mem w,
                                size_t w_off, cl_mem dy, cl_mem dw, size_t dw_off, cl_mem db,
                                size_t db_off, cl_mem dx, cl_mem relu_y, int dw_add,
                                int dx_add);

// ---- conv2d: im2col over the whole batch, one GEMM per product, permutes + bias -------------
// Scratch buffers of a convolution (contents need not survive between calls; sizes in floats
// from ct_conv2d_scratch_floats). One set may serve every convolution of a model.
typedef struct {
  cl_mem col;    // (c*k*k, batch*oh*ow): im2col of the input; in the backward pass then dcol
  cl_mem t;      // (oc, batch*oh*ow): GEMM output (forward), dy permuted (backward)
} ct_conv_scratch;
typedef struct {
  size_t col, t;
} ct_conv_scratch_size;
// Floats each scratch buffer needs for g (a maximum over geometries serves them all).
ct_conv_scratch_size ct_conv2d_scratch_floats(const ct_conv_geom *g);

// x (batch, c, h, w), w (oc, c, k, k) at w_off, b (oc) at b_off -> y (batch, oc, oh, ow).
// relu = 1: y = max(., 0) (a following ReLU, fused). Leaves s->col holding x's im2col.
ct_status ct_conv2d_forward(ct_device *dev, const ct_conv_geom *g, cl_mem x, cl_mem w,
                            size_t w_off, cl_mem b, size_t b_off, const ct_conv_scratch *s,
                            cl_mem y, int relu);
// x: the forward input; dy (batch, oc, oh, ow) -> dw (oc, c, k, k) at dw_off, db (oc) at
// db_off, dx (batch, c, h, w) or NULL. relu_y as in ct_dense_backward (dy is not modified here).
// col_valid = 1: s->col still holds x's im2col from the forward pass (nothing used the scratch
// since), so it is not computed again.
ct_status ct_conv2d_backward(ct_device *dev, const ct_conv_geom *g, cl_mem x, cl_mem w,
                             size_t w_off, cl_mem dy, cl_mem dw, size_t dw_off, cl_mem db,
                             size_t db_off, const ct_conv_scratch *s, cl_mem dx, cl_mem relu_y,
                             int col_valid);

// ---- max pooling (window k, stride, no padding; g->oc = g->c, g->pad = 0) ------------------
// x (batch, c, h, w) -> y (batch, c, oh, ow), idx (batch, c, oh, ow) int: argmax yy*w + xx.
ct_status ct_maxpool_forward(ct_device *dev, const ct_conv_geom *g, cl_mem x, cl_mem y,
                             cl_mem idx);
// dy, idx (batch, c, oh, ow) -> dx (batch, c, h, w).
ct_status ct_maxpool_backward(ct_device *dev, const ct_conv_geom *g, cl_mem dy, cl_mem idx,
                              cl_mem dx);

// ---- ReLU (n elements) ---------------------------------------------------------------------
ct_status ct_relu_forward(ct_device *dev, size_t n, cl_mem x, cl_mem y);
// y: the forward output; dx may be dy.
ct_status ct_relu_backward(ct_device *dev, size_t n, cl_mem y, cl_mem dy, cl_mem dx);

// ---- dropout (n elements, probability p in [0, 1)) -------------------------------------------
// Element i is kept when ct_dropout_hash(seed, first + i) >= ct_dropout_threshold(p) (32-bit
// index arithmetic), and then scaled by 1 / (1 - p). Integer arithmetic only: the same seed
// gives the same mask on any device. `first` is the index of element 0 in a larger tensor, so a
// batch cut in shares masks each sample as the whole batch would.
uint32_t ct_dropout_hash(uint64_t seed, uint32_t i);
uint32_t ct_dropout_threshold(float p);          // p * 2^32, rounded down
float ct_dropout_scale(float p);                 // 1 / (1 - p)
int ct_dropout_keeps(uint64_t seed, uint32_t i, float p);   // host mirror of the kernels' mask
ct_status ct_dropout_forward(ct_device *dev, size_t n, float p, uint64_t seed, uint32_t first,
                             cl_mem x, cl_mem y);
// dx may be dy.
ct_status ct_dropout_backward(ct_device *dev, size_t n, float p, uint64_t seed, uint32_t first,
                              cl_mem dy, cl_mem dx);

// ---- softmax cross-entropy -------------------------------------------------------------------
// logits (batch, classes), labels (batch) int -> losses (batch): -log softmax(z_i)[y_i]
// (unscaled, numerically stable), dlogits (batch, classes) = scale * (softmax(z_i) - onehot).
// A label outside [0, classes) gives a NaN loss and zero gradients for that sample.
ct_status ct_softmax_xent(ct_device *dev, int batch, int classes, cl_mem logits, cl_mem labels,
                          float scale, cl_mem losses, cl_mem dlogits);

// ---- helpers ---------------------------------------------------------------------------------
// x[0..n) = value (fill_f32 of cl/util.cl).
ct_status ct_fill(ct_device *dev, cl_mem x, size_t n, float value);
// y[0..n) += alpha * x[0..n) (axpy_f32).
ct_status ct_axpy(ct_device *dev, cl_mem y, cl_mem x, size_t n, float alpha);
// counter[at] (a uint, zeroed before) becomes non-zero when x[0..n) holds a NaN or an infinity
// (count_nonfinite_f32 of cl/util.cl; the value counts the work-items that found one). x and
// counter may be the same buffer when `at` lies outside [0, n).
ct_status ct_count_nonfinite(ct_device *dev, cl_mem x, size_t n, cl_mem counter, size_t at);

#endif
