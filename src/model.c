// model.c: a planned graph (graph.c) on a device: initialising the named tensors, allocating
// every buffer the plan asks for, host transfers, and the forward / backward passes that walk
// the nodes. No op kind is known here: everything an op does goes through its table entry.
#include "cltrain/model.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/layers.h"
#include "cltrain/prof.h"

// ---- initialisation -------------------------------------------------------------------------

static uint64_t splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

typedef struct {
  uint64_t state;
  int has_spare;
  double spare;
} normal_gen;

// Standard normal by Box-Muller over splitmix64 (both outputs used).
static double normal_next(normal_gen *g) {
  if (g->has_spare) {
    g->has_spare = 0;
    return g->spare;
  }
  double u1 = (double)((splitmix64(&g->state) >> 11) + 1) * (1.0 / 9007199254740992.0);  // (0,1]
  double u2 = (double)(splitmix64(&g->state) >> 11) * (1.0 / 9007199254740992.0);        // [0,1)
  double r = sqrt(-2.0 * log(u1));
  double a = 6.283185307179586 * u2;
  g->spare = r * sin(a);
  g->has_spare = 1;
  return r * cos(a);
}

void ct_model_init_params(const ct_arch *arch, uint64_t seed, float *params) {
  normal_gen g = {seed, 0, 0.0};   // one stream over the tensors in table order
  for (int t = 0; t < arch->nt; t++) {
    const ct_tensor *x = &arch->tensors[t];
    float *p = params + x->off;
    switch (x->init.kind) {   // (the kinds of initialisation, not of ops)
      case CT_INIT_NORMAL:
      case CT_INIT_HE_OR_XAVIER:   // (resolved to NORMAL by the planner)
        for (size_t j = 0; j < x->count; j++) p[j] = (float)(x->init.std * normal_next(&g));
        break;
      case CT_INIT_ONE:
        for (size_t j = 0; j < x->count; j++) p[j] = 1.0f;
        break;
      case CT_INIT_ZERO:
        for (size_t j = 0; j < x->count; j++) p[j] = 0.0f;
        break;
    }
  }
}

uint64_t ct_model_dropout_seed(uint64_t dropout_seed, int node) {
  uint64_t s = dropout_seed ^ (0xd1b54a32d192ed03ULL * (uint64_t)(node + 1));
  return splitmix64(&s);
}

// The root value whose buffer v uses.
static int root_of(const ct_arch *a, int v) {
  while (a->values[v].alias >= 0) v = a->values[v].alias;
  return v;
}

// ---- device buffers -------------------------------------------------------------------------

static size_t elem_size(const ct_shape *s) { return s->is_int ? sizeof(cl_int) : sizeof(float); }

size_t ct_model_device_bytes(const ct_arch *a, int max_batch) {
  size_t B = max_batch > 0 ? (size_t)max_batch : 0;
  size_t bytes = 2 * 4 * a->param_count;
  bytes += B * a->labels_per_sample * sizeof(cl_int);
  for (int v = 0; v < a->nv; v++)
    if (a->values[v].alias < 0)
      bytes += B * ct_shape_count(&a->values[v].shape) * elem_size(&a->values[v].shape);
  for (int i = 0; i < a->n; i++)
    for (int k = 0; k < a->nodes[i].n_saved; k++) bytes += B * a->nodes[i].saved[k] * 4;
  for (int s = 0; s < CT_SCRATCH_SLOTS; s++) bytes += B * a->scratch[s] * 4;
  bytes += B * a->pool_floats * 4 * (size_t)(a->n_pool + a->need_tmp);
  return bytes;
}

static ct_status alloc(ct_model *m, size_t bytes, const char *what, cl_mem *out) {
  *out = NULL;
  if (!bytes) return CT_OK;
  if (bytes > m->dev->info.max_alloc)
    return CT_FAIL(CT_ERR_NOMEM, "the model's %s buffer needs %zu bytes (batch %d) but %s allows "
                   "at most %llu bytes per buffer", what, bytes, m->max_batch, m->dev->info.name,
                   (unsigned long long)m->dev->info.max_alloc);
  cl_int err;
  *out = ct_device_buffer(m->dev, bytes, &err);
  if (err != CL_SUCCESS) {
    *out = NULL;
    return CT_FAIL(err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_HOST_MEMORY ||
                           err == CL_OUT_OF_RESOURCES || err == CL_INVALID_BUFFER_SIZE
                       ? CT_ERR_NOMEM
                       : CT_ERR_CL,
                   "allocating the model's %s buffer (%zu bytes) on %s failed: %s", what, bytes,
                   m->dev->info.name, ct_cl_errname(err));
  }
  return CT_OK;
}

ct_status ct_model_init(ct_device *dev, const ct_arch *arch, int max_batch, ct_model *m) {
  return ct_model_init_tail(dev, arch, max_batch, 0, m);
}

ct_status ct_model_init_tail(ct_device *dev, const ct_arch *arch, int max_batch,
                             size_t grad_tail, ct_model *m) {
  memset(m, 0, sizeof *m);
  if (max_batch < 1)
    return CT_FAIL(CT_ERR_USAGE, "batch size %d: expected at least 1", max_batch);
  if (arch->n < 2 || arch->n > CT_MAX_NODES || !arch->nodes[arch->n - 1].op->is_loss)
    return CT_FAIL(CT_ERR_INTERNAL, "ct_model_init: a graph of %d nodes without its loss",
                   arch->n);
  size_t need = ct_model_device_bytes(arch, max_batch);
  if (need > dev->info.global_mem)
    return CT_FAIL(CT_ERR_NOMEM, "the model (%s) with batches of %d needs %zu bytes of device "
                   "memory, but %s has %llu bytes", arch->text, max_batch, need, dev->info.name,
                   (unsigned long long)dev->info.global_mem);
  size_t B = (size_t)max_batch, biggest = B * arch->pool_floats;
  for (int v = 0; v < arch->nv; v++)
    if (B * ct_shape_count(&arch->values[v].shape) > biggest)
      biggest = B * ct_shape_count(&arch->values[v].shape);
  for (int s = 0; s < CT_SCRATCH_SLOTS; s++)
    if (B * arch->scratch[s] > biggest) biggest = B * arch->scratch[s];
  if (biggest > 0xffffffffULL)   // kernels index with 32 bits
    return CT_FAIL(CT_ERR_NOMEM, "the model (%s) with batches of %d needs a buffer of %zu "
                   "elements; at most 2^32-1 are supported", arch->text, max_batch, biggest);
  m->dev = dev;
  m->arch = *arch;
  m->max_batch = max_batch;
  const ct_arch *a = &m->arch;
  ct_status st;
  CT_GOTO(alloc(m, 4 * a->param_count, "parameter", &m->params), st, fail);
  CT_GOTO(alloc(m, 4 * (a->param_count + grad_tail), "gradient", &m->grads), st, fail);
  m->grad_tail = grad_tail;
  CT_GOTO(alloc(m, sizeof(cl_int) * B * (size_t)a->labels_per_sample, "label", &m->labels), st,
          fail);
  for (int v = 0; v < a->nv; v++) {   // aliases come after their roots
    const ct_value *x = &a->values[v];
    if (x->alias >= 0) continue;
    const char *what = v == 0 ? "input" : a->nodes[x->producer].op->is_loss ? "loss"
                                                                            : "activation";
    CT_GOTO(alloc(m, B * ct_shape_count(&x->shape) * elem_size(&x->shape), what, &m->act[v]), st,
            fail);
    m->act_owned[v] = 1;
  }
  for (int v = 0; v < a->nv; v++) m->act[v] = m->act[root_of(a, v)];
  m->input = m->act[0];
  m->logits = m->act[a->logits];
  m->losses = m->act[a->nodes[a->n - 1].out];
  for (int i = 0; i < a->n; i++)
    for (int k = 0; k < a->nodes[i].n_saved; k++)
      CT_GOTO(alloc(m, 4 * B * a->nodes[i].saved[k], "saved activation", &m->saved[i][k]), st,
              fail);
  for (int s = 0; s < CT_SCRATCH_SLOTS; s++)
    CT_GOTO(alloc(m, 4 * B * a->scratch[s], "scratch", &m->scratch[s]), st, fail);
  for (int k = 0; k < a->n_pool; k++)
    CT_GOTO(alloc(m, 4 * B * a->pool_floats, "activation gradient", &m->pool[k]), st, fail);
  if (a->need_tmp)
    CT_GOTO(alloc(m, 4 * B * a->pool_floats, "activation gradient", &m->tmp), st, fail);
  return CT_OK;
fail:
  ct_model_free(m);
  return st;
}

static void release(cl_mem *x) {
  if (*x) clReleaseMemObject(*x);
  *x = NULL;
}

void ct_model_free(ct_model *m) {
  if (!m) return;
  release(&m->params);
  release(&m->grads);
  release(&m->labels);
  for (int v = 0; v < CT_MAX_VALUES; v++)
    if (m->act_owned[v]) release(&m->act[v]);
  for (int i = 0; i < CT_MAX_NODES; i++) {
    for (int k = 0; k < CT_OP_MAX_SAVED; k++) release(&m->saved[i][k]);
    if (m->done[i]) clReleaseEvent(m->done[i]);
  }
  for (int s = 0; s < CT_SCRATCH_SLOTS; s++) release(&m->scratch[s]);
  for (int k = 0; k < CT_MAX_POOL; k++) release(&m->pool[k]);
  release(&m->tmp);
  memset(m, 0, sizeof *m);
}

// ---- host transfers -------------------------------------------------------------------------

static ct_status check_batch(const ct_model *m, int batch, const char *what) {
  if (batch < 0 || batch > m->max_batch)
    return CT_FAIL(CT_ERR_INTERNAL, "%s: batch %d outside 0..%d", what, batch, m->max_batch);
  return CT_OK;
}

static size_t sample_size(const ct_model *m) { return ct_shape_count(&m->arch.values[0].shape); }

size_t ct_model_loss_count(const ct_model *m, int batch) {
  return (size_t)batch * (size_t)m->arch.labels_per_sample;
}

ct_status ct_model_upload_params(ct_model *m, const float *params) {
  if (!m->arch.param_count) return CT_OK;
  CL_CHECK(clEnqueueWriteBuffer(m->dev->queue, m->params, CL_TRUE, 0, 4 * m->arch.param_count,
                                params, 0, NULL, NULL));
  return CT_OK;
}

ct_status ct_model_download_params(ct_model *m, float *params) {
  if (!m->arch.param_count) return CT_OK;
  CL_CHECK(clEnqueueReadBuffer(m->dev->queue, m->params, CL_TRUE, 0, 4 * m->arch.param_count,
                               params, 0, NULL, NULL));
  return CT_OK;
}

ct_status ct_model_set_batch(ct_model *m, const float *x, const int *y, int batch) {
  CT_TRY(check_batch(m, batch, "ct_model_set_batch"));
  if (!batch) return CT_OK;
  CL_CHECK(clEnqueueWriteBuffer(m->dev->queue, m->input, CL_TRUE, 0,
                                4 * (size_t)batch * sample_size(m), x, 0, NULL, NULL));
  CL_CHECK(clEnqueueWriteBuffer(m->dev->queue, m->labels, CL_TRUE, 0,
                                sizeof(cl_int) * ct_model_loss_count(m, batch), y, 0, NULL, NULL));
  return CT_OK;
}

ct_status ct_model_set_batch_async(ct_model *m, const float *x, const int *y, int batch,
                                   cl_event *done) {
  *done = NULL;
  CT_TRY(check_batch(m, batch, "ct_model_set_batch_async"));
  if (!batch) return CT_OK;
  ct_device *dev = m->dev;
  CL_CHECK(clEnqueueWriteBuffer(dev->queue, m->input, CL_FALSE, 0,
                                4 * (size_t)batch * sample_size(m), x, 0, NULL,
                                ct_prof_event(dev, "write batch (inputs)", 0, CT_PROF_TRANSFER)));
  CL_CHECK(clEnqueueWriteBuffer(dev->queue, m->labels, CL_FALSE, 0,
                                sizeof(cl_int) * ct_model_loss_count(m, batch), y, 0, NULL, done));
  if (dev->prof) {   // the labels' write: profiled through a copy of its event
    cl_event *ev = ct_prof_event(dev, "write batch (labels)", 0, CT_PROF_TRANSFER);
    if (ev) {
      CL_CHECK(clRetainEvent(*done));
      *ev = *done;
    }
  }
  return CT_OK;
}

ct_status ct_model_read_losses(ct_model *m, int batch, float *losses) {
  CT_TRY(check_batch(m, batch, "ct_model_read_losses"));
  if (!batch) return CT_OK;
  CL_CHECK(clEnqueueReadBuffer(m->dev->queue, m->losses, CL_TRUE, 0,
                               4 * ct_model_loss_count(m, batch), losses, 0, NULL, NULL));
  return CT_OK;
}

ct_status ct_model_read_logits(ct_model *m, int batch, float *logits) {
  CT_TRY(check_batch(m, batch, "ct_model_read_logits"));
  if (!batch) return CT_OK;
  CL_CHECK(clEnqueueReadBuffer(m->dev->queue, m->logits, CL_TRUE, 0,
                               4 * (size_t)batch * ct_shape_count(&m->arch.values[m->arch.logits].shape),
                               logits, 0, NULL, NULL));
  return CT_OK;
}

// ---- forward / backward ---------------------------------------------------------------------

// The buffers of node i for a pass over `batch` samples (what the last forward recorded).
static void node_io(ct_model *m, int i, int batch, ct_op_io *io) {
  const ct_arch *a = &m->arch;
  const ct_node *n = &a->nodes[i];
  memset(io, 0, sizeof *io);
  io->dev = m->dev;
  io->g = a;
  io->batch = batch;
  io->train = m->fwd_train;
  io->seed = ct_model_dropout_seed(m->fwd_seed, i);
  io->sample_offset = (uint32_t)m->fwd_offset;
  for (int j = 0; j < n->n_in; j++) io->x[j] = m->act[n->in[j]];
  io->y = m->act[n->out];
  io->params = m->params;
  io->grads = m->grads;
  for (int k = 0; k < n->n_param; k++) {
    io->p[k] = a->tensors[n->param[k]].off;
    io->dp_mode[k] = (ct_grad_mode)n->dp_mode[k];
  }
  for (int k = 0; k < n->n_saved; k++) io->saved[k] = m->saved[i][k];
  for (int k = 0; k < n->n_scratch; k++) {
    io->scratch[k] = m->scratch[n->scratch_id[k]];
    io->scratch_valid[k] = n->scratch_valid[k];
  }
  io->labels = m->labels;
  io->losses = m->losses;
}

ct_status ct_model_forward(ct_model *m, int batch, int train, uint64_t dropout_seed) {
  CT_TRY(check_batch(m, batch, "ct_model_forward"));
  if (m->sample_offset < 0)
    return CT_FAIL(CT_ERR_INTERNAL, "ct_model_forward: sample_offset %d", m->sample_offset);
  m->fwd_batch = batch;
  m->fwd_train = train;
  m->fwd_seed = dropout_seed;
  m->fwd_offset = m->sample_offset;
  if (!batch) return CT_OK;
  for (int i = 0; i < m->arch.n; i++) {
    const ct_node *n = &m->arch.nodes[i];
    if (n->fused || n->op->is_loss) continue;   // (fused: done by the node before)
    ct_op_io io;
    node_io(m, i, batch, &io);
    CT_TRY(n->op->forward(n, &io));
  }
  return CT_OK;
}

ct_status ct_model_loss(ct_model *m, int batch) {
  CT_TRY(check_batch(m, batch, "ct_model_loss"));
  if (batch != m->fwd_batch)
    return CT_FAIL(CT_ERR_INTERNAL, "ct_model_loss on a batch of %d after a forward of %d",
                   batch, m->fwd_batch);
  if (!batch) return CT_OK;
  int i = m->arch.n - 1;
  ct_op_io io;
  node_io(m, i, batch, &io);
  io.dx[0] = m->pool[0];   // the loss's gradient, unused: a gradient buffer is free now
  return m->arch.nodes[i].op->forward(&m->arch.nodes[i], &io);
}

static ct_status mark(ct_model *m, int i) {
  if (m->done[i]) clReleaseEvent(m->done[i]);
  m->done[i] = NULL;
  CL_CHECK(clEnqueueMarkerWithWaitList(m->dev->queue, 0, NULL, &m->done[i]));
  return CT_OK;
}

ct_status ct_model_backward(ct_model *m, int batch, float loss_scale) {
  CT_TRY(check_batch(m, batch, "ct_model_backward"));
  ct_device *dev = m->dev;
  const ct_arch *a = &m->arch;
  if (!batch) {   // an empty share: zero gradients (written, for mark_grads, by the fill)
    CT_TRY(ct_fill(dev, m->grads, a->param_count, 0.0f));
    for (int i = 0; m->mark_grads && i < a->n; i++)
      if (a->nodes[i].marks) CT_TRY(mark(m, i));
    return CT_OK;
  }
  if (batch != m->fwd_batch)
    return CT_FAIL(CT_ERR_INTERNAL, "ct_model_backward on a batch of %d after a forward of %d",
                   batch, m->fwd_batch);
  for (int i = a->n - 1; i >= 0; i--) {
    const ct_node *n = &a->nodes[i];
    if (!n->backward) continue;
    if (!n->fused) {   // (fused: the node before applies it; its input's gradient is shared)
      ct_op_io io;
      node_io(m, i, batch, &io);
      io.loss_scale = loss_scale;
      if (!n->op->is_loss) io.dy = m->pool[a->values[n->out].grad_buf];
      int through_tmp = -1;   // an input whose gradient is added through m->tmp
      for (int j = 0; j < n->n_in; j++) {
        io.dx_mode[j] = (ct_grad_mode)n->dx_mode[j];
        if (io.dx_mode[j] == CT_GRAD_NONE) continue;
        io.dx[j] = m->pool[a->values[n->in[j]].grad_buf];
        if (io.dx_mode[j] == CT_GRAD_ADD && !n->op->can_add_dx) {
          io.dx[j] = m->tmp;
          io.dx_mode[j] = CT_GRAD_WRITE;
          through_tmp = j;
        }
      }
      CT_TRY(n->op->backward(n, &io));
      if (through_tmp >= 0) {
        int v = n->in[through_tmp];
        CT_TRY(ct_axpy(dev, m->pool[a->values[v].grad_buf], m->tmp,
                       (size_t)batch * ct_shape_count(&a->values[v].shape), 1.0f));
      }
    }
    if (m->mark_grads && n->marks) {
      CT_TRY(mark(m, i));
      CL_CHECK(clFlush(dev->queue));   // the nodes' kernels start while the host goes on
    }
  }
  return CT_OK;
}

cl_event ct_model_tensor_ready(const ct_model *m, int t) {
  int i = m->arch.tensors[t].last_writer;
  return i >= 0 ? m->done[i] : NULL;
}
