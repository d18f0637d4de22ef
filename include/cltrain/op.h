// op.h: the ops a model is made of, as a table, and the graph of a model.
//
// Defines: CT_MAX_NODES, CT_MAX_TENSORS, CT_MAX_VALUES, CT_OP_MAX_IN / _PARAMS / _SAVED /
// _SCRATCH, ct_shape (+ ct_shape_count), ct_init, ct_tensor, ct_value, ct_node, ct_grad_mode,
// ct_op_io, ct_op (the table entry), ct_ops / ct_op_count / ct_op_find, and what an op's
// shape function calls while the graph is planned: ct_graph_param, ct_node_saved,
// ct_node_scratch; ct_op_list (the --arch tokens, for messages).
//
// An op kind is ONE const table entry (ct_op) in a file of its own under src/ops/, listed in
// src/ops/table.c. The entry holds its name, the parser of its --arch token, its output shape
// from its inputs (which also declares its parameter tensors, the activations it saves for
// backward and the scratch it needs), forward, backward, its FLOPs and a description. Nothing
// else in cltrain knows an op kind: the model's planner (model.c), the trainer, the exporter,
// the checkpoints and the optimizer go through this table and the tensor table.
//
// The graph: values (activations; value 0 is the model's input, a batch of one shape per
// sample) flow through nodes; each node is one op with up to CT_OP_MAX_IN input values and one
// output value. Parameters live in ONE flat buffer carved into named tensors (ct_tensor), in the
// order the nodes declare them; a tensor may be used by several nodes (tied weights: its
// gradient then gets every contribution). The last node is the loss.
//
// Gradients: backward runs the nodes in reverse. The first node (in backward order) that
// contributes to a gradient OVERWRITES it, every later one ADDS (ct_grad_mode), so a tensor or
// a value that feeds several consumers gets the sum. An op may declare that an input's gradient
// is its output's gradient unchanged (flatten, an identity dropout): the planner then lets them
// share a buffer and the op does nothing for it (CT_GRAD_SHARED).
#ifndef CLTRAIN_OP_H
#define CLTRAIN_OP_H

#include <stddef.h>
#include <stdint.h>

#include "cltrain/device.h"

#define CT_MAX_NODES 512
#define CT_MAX_TENSORS 512
#define CT_MAX_VALUES (CT_MAX_NODES + 1)
#define CT_OP_MAX_IN 3
#define CT_OP_MAX_PARAMS 4
#define CT_OP_MAX_SAVED 3
#define CT_OP_MAX_SCRATCH 2
#define CT_OP_CFG_BYTES 64

// One sample's shape; a value over a batch is (batch, d[0], ..., d[nd-1]), row-major.
typedef struct {
  int nd;          // 1..3
  int d[3];        // images (C, H, W); vectors (features); sequences (T, C)
  int is_int;      // 32-bit integer elements (token ids) instead of float
} ct_shape;

// Elements of one sample (the product of the dimensions).
size_t ct_shape_count(const ct_shape *s);

// How a tensor is initialised (model.c draws every NORMAL tensor, in table order, from one
// seeded stream: the same seed gives the same bytes on every machine).
typedef enum {
  CT_INIT_ZERO,
  CT_INIT_ONE,
  CT_INIT_NORMAL,          // N(0, std)
  CT_INIT_HE_OR_XAVIER,    // N(0, sqrt(2/fan_in)) when a ReLU follows the node (past flatten
                           // and dropout), else N(0, sqrt(2/(fan_in+fan_out))); resolved to
                           // NORMAL when the graph is planned
} ct_init_kind;

typedef struct {
  ct_init_kind kind;
  double std;
  double fan_in, fan_out;
} ct_init;

// A named parameter tensor: a slice of the flat parameter (and gradient) buffer.
typedef struct {
  char name[80];           // its PyTorch state_dict name: "3.weight", "transformer.h.0.ln_1.bias"
  size_t off, count;       // floats, in the parameter buffer
  int nd;
  long long shape[4];      // as PyTorch holds it: a dense weight (out, in), a conv weight
                           // (out, in, k, k), a bias (out)
  int decay;               // weight decay applies to it
  int exported;            // written to safetensors (a tensor tied to another may not be)
  ct_init init;
  int owner;               // the node that declared it
  // planned: the node whose backward writes its gradient first (it overwrites; later ones add)
  // and the node after whose backward the gradient is complete (its "gradient ready" event)
  int first_writer, last_writer;
} ct_tensor;

// An activation: the input of the model or a node's output.
typedef struct {
  ct_shape shape;
  int producer;            // node, or -1 (the model's input)
  int alias;               // value whose device buffer this one is (flatten, a fused ReLU), or -1
  int consumers;           // nodes that read it
  int needs_grad;          // some parameter lies upstream: backward produces its gradient
  int grad_buf;            // planned: the gradient pool buffer holding its gradient, or -1
} ct_value;

struct ct_op;

typedef struct ct_node {
  const struct ct_op *op;
  char token[96];          // the canonical --arch token ("conv3x3:8/s2"), or what the builder
                           // named the node ("transformer.h.0.ln_1")
  char prefix[72];         // its tensors' names are prefix + "." + what ("3" -> "3.weight")
  int in[CT_OP_MAX_IN], n_in;   // input values
  int out;                 // output value
  int param[CT_OP_MAX_PARAMS], n_param;   // tensors, in the order the op declared them
  int tied[CT_OP_MAX_PARAMS];   // set by a builder: tensor id + 1 that the k-th declared tensor
                                // IS (a tied weight, same shape), 0: a new tensor
  size_t saved[CT_OP_MAX_SAVED];          // elements per sample kept from forward to backward
  int saved_int[CT_OP_MAX_SAVED];         // ... as int32 instead of float
  int n_saved;
  int scratch_id[CT_OP_MAX_SCRATCH];      // shared scratch slots (model.c sizes each slot for
  size_t scratch[CT_OP_MAX_SCRATCH];      // the largest user), floats per sample
  int n_scratch;
  _Alignas(8) unsigned char cfg[CT_OP_CFG_BYTES];   // the op's own settings
  // ---- planned (model.c) ----
  int fused;               // done by the node before it (a ReLU fused into dense or conv)
  int backward;            // backward runs for it (it has parameters, or an input needs a
                           // gradient)
  unsigned char dx_mode[CT_OP_MAX_IN];         // ct_grad_mode of each input's gradient
  unsigned char dp_mode[CT_OP_MAX_PARAMS];     // ... of each tensor's gradient
  unsigned char scratch_valid[CT_OP_MAX_SCRATCH];   // backward finds its forward's scratch
  int marks;               // some tensor's gradient is complete after its backward
} ct_node;

// What a backward does with an input's (or a tensor's) gradient.
typedef enum {
  CT_GRAD_NONE,            // not needed (nothing upstream has parameters)
  CT_GRAD_WRITE,           // overwrite: the first contribution
  CT_GRAD_ADD,             // add to what is there: a later contribution
  CT_GRAD_SHARED,          // the input's gradient IS the output's (the same buffer): nothing to do
} ct_grad_mode;

// Everything a node's forward or backward works on; the model fills it in for each call.
// Buffers are (batch, per-sample shape) and start at offset 0, except params/grads, where the
// node's tensors start at p[k] floats.
typedef struct {
  ct_device *dev;
  const struct ct_arch *g; // the graph (shapes of values, the tensor table)
  int batch;               // samples (>= 1)
  int train;               // the forward runs in training mode (dropout), recorded for backward
  uint64_t seed;           // this node's dropout seed for the step
  uint32_t sample_offset;  // the batch's first sample within the global batch
  cl_mem x[CT_OP_MAX_IN];  // inputs
  cl_mem y;                // output
  cl_mem dx[CT_OP_MAX_IN]; // backward: input gradients (mode dx_mode[i])
  ct_grad_mode dx_mode[CT_OP_MAX_IN];
  cl_mem dy;               // backward: the output's gradient (an op may overwrite it)
  cl_mem params, grads;    // the flat buffers
  size_t p[CT_OP_MAX_PARAMS];   // the node's tensors' offsets in them (floats)
  ct_grad_mode dp_mode[CT_OP_MAX_PARAMS];   // WRITE or ADD
  cl_mem saved[CT_OP_MAX_SAVED];
  cl_mem scratch[CT_OP_MAX_SCRATCH];
  int scratch_valid[CT_OP_MAX_SCRATCH];   // backward: the slot still holds what this node's
                                          // forward left there (nothing used it since)
  cl_mem labels;           // the loss: int labels, (batch, labels per sample)
  cl_mem losses;           // the loss: float, one per label
  float loss_scale;        // the loss: gradients of loss_scale * sum(losses)
} ct_op_io;

typedef struct ct_arch ct_graph;   // the graph an op is part of (model.h)

typedef struct ct_op {
  const char *name;        // "dense", "conv2d", ...
  const char *syntax;      // its --arch token ("dense:N"), NULL: not an --arch token
  const char *doc;         // one line: what it computes
  // --arch: 1 when tok is this op's token (then parse it), 0 otherwise
  int (*claims)(const char *tok);
  // Parses tok (token number `index`, 1-based, for messages) into n->cfg and the canonical
  // n->token. CT_ERR_USAGE naming the token on a malformed one.
  ct_status (*parse)(const char *tok, int index, ct_node *n);
  // The output shape from the inputs' (*out), and what the node needs: ct_graph_param for each
  // parameter tensor, ct_node_saved, ct_node_scratch. For messages: tok is the token as the
  // user wrote it, index its number, prev the token before. CT_ERR_USAGE naming the token when
  // the inputs do not fit.
  ct_status (*shape)(ct_graph *g, ct_node *n, const ct_shape *const *in, const char *tok,
                     const char *prev, int index, ct_shape *out);
  ct_status (*forward)(const ct_node *n, const ct_op_io *io);
  // Gradients of the inputs (io->dx, modes io->dx_mode) and of the node's tensors (at io->p in
  // io->grads, modes io->dp_mode) from io->dy. The loss node's backward instead computes
  // io->losses and the gradient of loss_scale * sum(losses) into io->dx[0].
  ct_status (*backward)(const ct_node *n, const ct_op_io *io);
  // Matrix-product FLOPs per sample: f[0] forward, f[1] backward for the tensors, f[2]
  // backward for the inputs. NULL: none.
  void (*flops)(const ct_node *n, const ct_graph *g, double f[3]);
  // A line's tail for ct_arch_describe ("  k 3 stride 1 pad 1"); NULL: nothing.
  void (*describe)(const ct_node *n, char *buf, size_t size);
  // Whether input i's gradient equals the output's gradient unchanged (so they may share a
  // buffer); NULL: never.
  int (*passes_grad)(const ct_node *n, int i);
  // The loss: forward computes io->losses only (evaluation); NULL for other ops.
  int is_loss;
  // The op's backward adds into input gradients (CT_GRAD_ADD); otherwise the model gives it a
  // scratch buffer to write and adds that in itself.
  int can_add_dx;
  // The op's backward adds into its tensors' gradients (CT_GRAD_ADD): needed to share one.
  int can_add_dp;
  unsigned flags;          // CT_OP_* below, for the planner's rules
  int out_aliases_in;      // the output is input 0's buffer, read differently (flatten)
  // Planner rule: node n may take over `next`, the only consumer of its output (a ReLU into
  // dense's bias pass); returns 1 when it did (n's cfg now says so; next is then skipped and its
  // output is n's). NULL: never.
  int (*fuse_next)(ct_node *n, const ct_node *next);
} ct_op;

#define CT_OP_RELU 1u        // max(x, 0): the node before it is initialised He-normal
#define CT_OP_SHAPE_ONLY 2u  // moves no value (flatten, dropout): looked through by that rule

// The table (src/ops/table.c), in the order --arch messages list the tokens.
extern const ct_op *const ct_ops[];
extern const int ct_op_count;
const ct_op *ct_op_find(const char *name);   // by name; NULL when none
// "dense:N, convKxK:N[/sS][/pP], relu, maxpoolK, flatten or dropout:P": every --arch token.
void ct_op_list(char *buf, size_t size);

// ---- what an op's shape function calls -----------------------------------------------------

// Declares the node's next parameter tensor, named n->prefix + "." + what, of the given shape
// (nd dimensions); its id is added to n->param. When the builder tied that slot to an existing
// tensor (n->tied), that tensor is used instead (its shape must match). CT_ERR_USAGE when the
// model grows past 2^32 parameters or CT_MAX_TENSORS tensors.
ct_status ct_graph_param(ct_graph *g, ct_node *n, const char *what, int nd,
                         const long long *shape, int decay, ct_init init);
// Declares a buffer the node keeps from forward to backward: `count` elements per sample.
void ct_node_saved(ct_node *n, size_t count, int is_int);
// Declares that the node uses shared scratch slot `id` (0..CT_OP_MAX_SCRATCH-1 of a small
// model-wide set, see CT_SCRATCH_*), `count` floats per sample.
void ct_node_scratch(ct_node *n, int id, size_t count);
#define CT_SCRATCH_CONV_COL 0   // convolutions: im2col (c*k*k, batch*oh*ow), then dcol
#define CT_SCRATCH_CONV_T 1     // convolutions: the GEMM output / the permuted output gradient
#define CT_SCRATCH_ATTN 2       // attention: the scores' gradient (H, T, T)
#define CT_SCRATCH_SLOTS 4

// The graph's tensor table, for ops that need a tensor's shape (a tied weight).
const ct_tensor *ct_graph_tensor(const ct_graph *g, int id);
// In a forward or backward: the node's k-th tensor, and the elements per sample of a value.
const ct_tensor *ct_op_io_tensor(const ct_op_io *io, const ct_node *n, int k);
size_t ct_op_io_value_count(const ct_op_io *io, int value);

#endif
