// model.h: the network: architecture spec (`--arch` string and presets), layer list, the flat
// parameter and gradient buffers, and the forward / backward pass of a whole model.
//
// Defines: CT_MAX_LAYERS, ct_layer_kind, ct_layer, ct_arch (+ ct_arch_parse, ct_arch_describe),
// ct_model (+ ct_model_init / _init_tail / _free / _device_bytes), ct_model_init_params,
// ct_model_upload_params / _download_params, ct_model_set_batch / _set_batch_async,
// ct_model_forward, ct_arch_flops,
// ct_model_backward, ct_model_read_losses / _read_logits, ct_model_dropout_seed.
//
// Architecture strings: comma-separated tokens, applied to one sample of shape (C, H, W):
//   dense:N              fully connected, N outputs (a C x H x W input is flattened implicitly)
//   convKxK:N[/sS][/pP]  2-D convolution, N output channels, stride S (1), padding P (K/2 < K)
//   relu                 max(x, 0)
//   maxpoolK             max pooling, window K, stride K (the remainder is dropped)
//   flatten              (C, H, W) -> (C*H*W) features; a no-op on NCHW memory
//   dropout:P            drop with probability P (0 <= P < 1) while training, scale by 1/(1-P)
// Presets: mlp = "flatten,dense:512,relu,dense:512,relu,dense:<classes>",
//          cnn = "conv3x3:32,relu,maxpool2,conv3x3:64,relu,maxpool2,flatten,dense:128,relu,
//                 dense:<classes>" (the PyTorch reference model).
//
// Parameters: one buffer, each layer's weights then bias, layers in order. Dense weights are
// (out, in) row-major, conv weights (out_c, in_c, k, k), as in PyTorch. Activations are NCHW
// (batch first). Initialisation happens on the host from a seeded splitmix64 stream (He normal
// for layers followed by ReLU, Xavier normal otherwise, biases zero): the same seed gives the
// same bytes on every machine.
//
// Everything ct_model_forward / ct_model_backward do is enqueued on dev->queue (in-order)
// without waiting and without host copies; only the read/download functions block.
//
// Dropout masks are a pure function of (dropout_seed, layer, index of the element in the global
// batch): a rank whose share starts at sample s of the global batch sets sample_offset = s, and
// the masks (so the summed gradients) do not depend on how the batch is shared out.
#ifndef CLTRAIN_MODEL_H
#define CLTRAIN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "cltrain/device.h"

#define CT_MAX_LAYERS 64

typedef enum { CT_LAYER_DENSE, CT_LAYER_CONV2D, CT_LAYER_MAXPOOL, CT_LAYER_RELU,
               CT_LAYER_FLATTEN, CT_LAYER_DROPOUT } ct_layer_kind;

typedef struct {
  ct_layer_kind kind;
  int in_c, in_h, in_w;     // input shape of one sample (dense: in_c features, in_h = in_w = 1)
  int out_c, out_h, out_w;  // output shape of one sample
  int k, stride, pad;       // conv kernel size / maxpool window
  float p;                  // dropout probability
  size_t w_off, w_count;    // weights: slice of the parameter buffer, in floats
  size_t b_off, b_count;    // bias
} ct_layer;

typedef struct ct_arch {
  char text[1024];          // canonical architecture string, e.g. "flatten,dense:512,relu,..."
  int in_c, in_h, in_w, classes;
  int n;
  ct_layer layers[CT_MAX_LAYERS];
  size_t param_count;       // floats in the parameter buffer
} ct_arch;

// spec: "mlp", "cnn" or a token string. CT_ERR_USAGE with a one-line message on a bad spec:
// it names the token ("--arch: token 3 'conv3x:32': expected convKxK:N[/sS][/pP]"), and for
// shapes that do not fit, the shapes. Parsing the canonical text gives the same arch.
ct_status ct_arch_parse(const char *spec, int in_c, int in_h, int in_w, int classes,
                        ct_arch *arch);
// One line per layer with its shapes and parameter count, for logs. Truncates to size.
void ct_arch_describe(const ct_arch *arch, char *buf, size_t size);

typedef struct ct_model {
  ct_device *dev;
  ct_arch arch;
  int max_batch;
  cl_mem params;   // (param_count) every layer's weights and bias, one buffer
  cl_mem grads;    // (param_count + grad_tail) same layout as params, then the tail
  size_t grad_tail;
  cl_mem input;    // (max_batch, in_c*in_h*in_w) float
  cl_mem labels;   // (max_batch) int
  cl_mem losses;   // (max_batch) float, per-sample loss of the last backward
  cl_mem logits;   // (max_batch, classes): output of the last forward (may alias an activation)
  int sample_offset;  // index of this batch's first sample in the global batch (0 after init):
                      // dropout masks sample i of a share as sample sample_offset + i, so how a
                      // global batch is cut into shares does not change the step's math
  // ---- private ----
  cl_mem act[CT_MAX_LAYERS + 1];  // act[i]: input of layer i, (max_batch, in size of layer i);
                                  // act[0] = input, act[n] = logits; flatten aliases its input
  int act_owned[CT_MAX_LAYERS + 1];
  cl_mem idx[CT_MAX_LAYERS];      // maxpool: (max_batch, c, oh, ow) int, argmax in the plane
  cl_mem conv_col, conv_t;        // scratch shared by every convolution: the ct_conv_scratch
                                  // of layers.h, sized for the largest layer
  int last_conv;                  // the last convolution (its im2col survives until backward)
  cl_mem dact[2];                 // (max_batch * largest layer output): gradient ping-pong
  int first_param;                // first layer with parameters (backward stops there); n if none
  int fwd_batch, fwd_train, fwd_offset;   // what the last forward ran
  uint64_t fwd_seed;
  // mark_grads = 1: ct_model_backward enqueues a marker after the kernels of each layer with
  // parameters, grad_done[i] (the gradients of layer i are written once it completes), so that
  // a reduction of the last layers' gradients can start while backward goes on (--bucket-mb).
  int mark_grads;
  cl_event grad_done[CT_MAX_LAYERS];
} ct_model;

// Allocates every device buffer for batches up to max_batch. If the device cannot hold it, the
// error says how many bytes were asked and how much the device has (CT_ERR_NOMEM).
ct_status ct_model_init(ct_device *dev, const ct_arch *arch, int max_batch, ct_model *model);
// The same with `grad_tail` extra floats after the gradients in the grads buffer (the trainer's
// per-step status words, reduced together with the gradients); the model never touches them.
ct_status ct_model_init_tail(ct_device *dev, const ct_arch *arch, int max_batch,
                             size_t grad_tail, ct_model *model);
void ct_model_free(ct_model *model);
size_t ct_model_device_bytes(const ct_arch *arch, int max_batch);  // what init will allocate

// Seeded host-side initialisation of a host parameter array (param_count floats).
void ct_model_init_params(const ct_arch *arch, uint64_t seed, float *params);
ct_status ct_model_upload_params(ct_model *model, const float *params);   // blocking
ct_status ct_model_download_params(ct_model *model, float *params);       // blocking

// Writes x (batch, in_c*in_h*in_w) and y (batch) into input/labels (blocking).
ct_status ct_model_set_batch(ct_model *model, const float *x, const int *y, int batch);
// The same without blocking: x and y must stay unchanged until *done (the event of the last
// write, or NULL for batch 0; release it) has completed.
ct_status ct_model_set_batch_async(ct_model *model, const float *x, const int *y, int batch,
                                   cl_event *done);
// Forward pass on the current batch; train = 1 applies dropout with dropout_seed.
ct_status ct_model_forward(ct_model *model, int batch, int train, uint64_t dropout_seed);
// Softmax cross-entropy on the logits of the last forward and backward pass. losses[i] = the
// i-th sample's loss (unscaled); grads is OVERWRITTEN with d(loss_scale * sum_i losses[i])/dparams.
// (The trainer passes loss_scale = 1/global_batch so that a SUM all-reduce gives the global mean.)
// batch must be the batch of the last forward; batch 0 writes zero gradients and nothing else.
ct_status ct_model_backward(ct_model *model, int batch, float loss_scale);
ct_status ct_model_read_losses(ct_model *model, int batch, float *losses);   // blocking
ct_status ct_model_read_logits(ct_model *model, int batch, float *logits);   // blocking

// Floating-point operations of the model's matrix products per sample: forward, and a whole
// training step (forward, and backward for weights and inputs; the first layer with parameters
// needs no input gradient).
void ct_arch_flops(const ct_arch *arch, double *forward, double *train);

// The seed the dropout layer `layer` uses for dropout_seed (a splitmix64 mix of both), so that
// two dropout layers never share a mask.
uint64_t ct_model_dropout_seed(uint64_t dropout_seed, int layer);

#endif
