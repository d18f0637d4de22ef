// model.h: the network: architecture spec (`--arch` string and presets) made into a graph of
// ops (op.h), the named parameter tensors, the flat parameter and gradient buffers, the
// planner that places every device buffer, and the forward / backward pass of a whole model.
//
// Defines: ct_arch (+ ct_arch_parse, ct_arch_begin / _value / _add / _end, ct_arch_describe,
// ct_arch_flops, ct_arch_tensor_find, ct_arch_no_decay),
// ct_model (+ ct_model_init / _init_tail / _free / _device_bytes), ct_model_init_params,
// ct_model_upload_params / _download_params, ct_model_set_batch / _set_batch_async,
// ct_model_forward, ct_model_backward, ct_model_loss, ct_model_read_losses / _read_logits,
// ct_model_loss_count, ct_model_tensor_ready, ct_model_dropout_seed.
//
// Architecture strings: comma-separated tokens, each one op of the table (op.h), applied to one
// sample of shape (C, H, W):
//   dense:N              fully connected, N outputs (a C x H x W input is flattened implicitly)
//   convKxK:N[/sS][/pP]  2-D convolution, N output channels, stride S (1), padding P (K/2 < K)
//   relu                 max(x, 0)
//   maxpoolK             max pooling, window K, stride K (the remainder is dropped)
//   flatten              (C, H, W) -> (C*H*W) features; a no-op on NCHW memory
//   dropout:P            drop with probability P (0 <= P < 1) while training, scale by 1/(1-P)
// Presets: mlp = "flatten,dense:512,relu,dense:512,relu,dense:<classes>",
//          cnn = "conv3x3:32,relu,maxpool2,conv3x3:64,relu,maxpool2,flatten,dense:128,relu,
//                 dense:<classes>" (the PyTorch reference model).
// A classifier ends in a softmax cross-entropy node over the last layer's outputs (the logits)
// and one int label per sample.
//
// Parameters: one buffer carved into named tensors (ct_tensor), in the order the nodes declare
// them; a classifier's layer i gives "i.weight" then "i.bias", the names and layouts of a
// torch.nn.Sequential of the same layers (dense (out, in), conv (out_c, in_c, k, k)).
// Activations are NCHW (batch first). Initialisation happens on the host from a seeded
// splitmix64 stream (each tensor's ct_init: He normal for layers followed by ReLU, Xavier
// normal otherwise, biases zero): the same seed gives the same bytes on every machine.
//
// The planner (ct_model_init): every value gets a device buffer of max_batch samples, except
// the ones that alias another (flatten's output is its input's buffer; a ReLU right after a
// dense or conv node is fused into it and its output is that node's); each node's saved
// activations get their own; scratch slots are shared by all their users (sized for the
// largest); gradients of values come from a small pool of buffers reused as soon as a value's
// gradient has been consumed (a plain chain needs two: the classic ping-pong).
//
// Everything ct_model_forward / ct_model_backward do is enqueued on dev->queue (in-order)
// without waiting and without host copies; only the read/download functions block.
//
// Dropout masks are a pure function of (dropout_seed, node, index of the element in the global
// batch): a rank whose share starts at sample s of the global batch sets sample_offset = s, and
// the masks (so the summed gradients) do not depend on how the batch is shared out.
#ifndef CLTRAIN_MODEL_H
#define CLTRAIN_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "cltrain/device.h"
#include "cltrain/op.h"

#define CT_MAX_POOL 16

// The graph of a model (op.h): nodes in forward order, the loss last.
typedef struct ct_arch {
  char text[1024];          // canonical architecture string, e.g. "flatten,dense:512,relu,..."
  int in_c, in_h, in_w, classes;
  int n;                    // nodes, the loss node included (the last)
  ct_node nodes[CT_MAX_NODES];
  int nv;                   // values; value 0 is the model's input
  ct_value values[CT_MAX_VALUES];
  int nt;                   // parameter tensors
  ct_tensor tensors[CT_MAX_TENSORS];
  size_t param_count;       // floats in the parameter buffer
  int logits;               // the value the loss reads (the classifier's outputs)
  int labels_per_sample;    // int labels the loss reads per sample
  size_t scratch[CT_SCRATCH_SLOTS];   // floats per sample of each shared scratch slot
  int scratch_last[CT_SCRATCH_SLOTS]; // the last node using each slot in forward order
  int n_pool;               // gradient buffers of values (a chain needs two)
  size_t pool_floats;       // floats per sample of each
  int need_tmp;             // some backward's gradient goes through the model's temporary
  // while parsing: the token being shaped, for ct_graph_param's messages
  int plan_index;
  char plan_tok[96];
} ct_arch;

// spec: "mlp", "cnn" or a token string. CT_ERR_USAGE with a one-line message on a bad spec:
// it names the token ("--arch: token 3 'conv3x:32': expected convKxK:N[/sS][/pP]"), and for
// shapes that do not fit, the shapes. Parsing the canonical text gives the same arch.
ct_status ct_arch_parse(const char *spec, int in_c, int in_h, int in_w, int classes,
                        ct_arch *arch);
// Building a graph by hand (a model builder; the op tests): an empty graph whose input value
// 0 is one sample of `input`, nodes appended in forward order, then the loss.
void ct_arch_begin(ct_arch *a, const ct_shape *input);
// A value with no producer, one sample of `shape` (the op tests' second and third inputs); its
// id, or -1 when the graph is full. A model reads only value 0.
int ct_arch_value(ct_arch *a, const ct_shape *shape);
// Appends a node of the op called `op` (op.h's table), configured by `token` (what the op's
// parser reads, e.g. "dense:384"), reading the values in[0..n_in), its tensors named
// "<prefix>.<what>". tied: NULL, or CT_OP_MAX_PARAMS entries: for each tensor the op declares,
// in order, the id of an existing tensor it IS (-1: a new one; -1 in the entries past the
// op's). *out: its output value.
ct_status ct_arch_add(ct_arch *a, const char *op, const char *token, const int *in, int n_in,
                      const char *prefix, const int *tied, int *out);
// Appends the loss op `loss` over value `logits`, with `labels` int labels per sample, and plans
// the graph (fusions, gradients, buffers): the graph is then ready for ct_model_init.
ct_status ct_arch_end(ct_arch *a, const char *loss, int logits, int labels);
// One line per node with its shapes and parameter count, for logs. Truncates to size.
void ct_arch_describe(const ct_arch *arch, char *buf, size_t size);
// The runs of the parameter buffer whose tensors get no weight decay, ascending: lo[k], hi[k]
// (room for a->nt each); returns how many. For ct_optim_set_no_decay.
int ct_arch_no_decay(const ct_arch *a, size_t *lo, size_t *hi);
// The tensor called `name`, or -1.
int ct_arch_tensor_find(const ct_arch *arch, const char *name);

typedef struct ct_model {
  ct_device *dev;
  ct_arch arch;
  int max_batch;
  cl_mem params;   // (param_count) every tensor, one buffer
  cl_mem grads;    // (param_count + grad_tail) same layout as params, then the tail
  size_t grad_tail;
  cl_mem input;    // (max_batch, input elements per sample): value 0
  cl_mem labels;   // (max_batch, labels_per_sample) int
  cl_mem losses;   // (max_batch, labels_per_sample) float: each label's loss of the last backward
                   // or ct_model_loss
  cl_mem logits;   // (max_batch, classes): the value the loss reads
  int sample_offset;  // index of this batch's first sample in the global batch (0 after init):
                      // dropout masks sample i of a share as sample sample_offset + i, so how a
                      // global batch is cut into shares does not change the step's math
  // mark_grads = 1: ct_model_backward enqueues a marker after each node that completes some
  // tensor's gradient (ct_model_tensor_ready), so that a reduction of the last tensors'
  // gradients can start while backward goes on (--bucket-mb).
  int mark_grads;
  // ---- private: the planner's buffers ----
  cl_mem act[CT_MAX_VALUES];      // each value's buffer (aliases share one)
  int act_owned[CT_MAX_VALUES];
  cl_mem saved[CT_MAX_NODES][CT_OP_MAX_SAVED];
  cl_mem scratch[CT_SCRATCH_SLOTS];
  cl_mem pool[CT_MAX_POOL];       // gradient buffers of values, each (max_batch, pool_floats)
  cl_mem tmp;                     // a gradient an op cannot add in place is written here first
  int fwd_batch, fwd_train, fwd_offset;   // what the last forward ran
  uint64_t fwd_seed;
  cl_event done[CT_MAX_NODES];    // mark_grads: after node i's backward (nodes that mark)
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

// Writes x (batch, input elements per sample) and y (batch, labels_per_sample) into
// input/labels (blocking).
ct_status ct_model_set_batch(ct_model *model, const float *x, const int *y, int batch);
// The same without blocking: x and y must stay unchanged until *done (the event of the last
// write, or NULL for batch 0; release it) has completed.
ct_status ct_model_set_batch_async(ct_model *model, const float *x, const int *y, int batch,
                                   cl_event *done);
// Forward pass on the current batch up to the loss's input; train = 1 applies dropout with
// dropout_seed.
ct_status ct_model_forward(ct_model *model, int batch, int train, uint64_t dropout_seed);
// The loss of the last forward, losses only (evaluation): `losses` holds one per label.
ct_status ct_model_loss(ct_model *model, int batch);
// The loss and the backward pass on the last forward. losses = each label's loss (unscaled);
// grads is OVERWRITTEN with d(loss_scale * sum(losses))/dparams. (The trainer passes loss_scale
// = 1/(global batch x labels per sample) so that a SUM all-reduce gives the global mean.)
// batch must be the batch of the last forward; batch 0 writes zero gradients and nothing else.
ct_status ct_model_backward(ct_model *model, int batch, float loss_scale);
// Losses of the last ct_model_backward or ct_model_loss: ct_model_loss_count(batch) floats.
ct_status ct_model_read_losses(ct_model *model, int batch, float *losses);   // blocking
ct_status ct_model_read_logits(ct_model *model, int batch, float *logits);   // blocking
size_t ct_model_loss_count(const ct_model *model, int batch);   // batch x labels per sample
// mark_grads: the event after which tensor t's gradient is complete in the last backward (the
// model keeps it; NULL when backward did not mark it).
cl_event ct_model_tensor_ready(const ct_model *model, int t);

// Floating-point operations of the model's matrix products per sample: forward, and a whole
// training step (forward, and backward for the tensors and for the inputs that need a
// gradient; the first layer with parameters needs none).
void ct_arch_flops(const ct_arch *arch, double *forward, double *train);

// The seed the node `node` uses for dropout_seed (a splitmix64 mix of both), so that two
// dropout nodes never share a mask.
uint64_t ct_model_dropout_seed(uint64_t dropout_seed, int node);

#endif
