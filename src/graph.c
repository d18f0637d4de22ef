// graph.c: a model's graph (model.h, op.h): building it from an --arch string or by hand,
// and planning it once: fusions, which values need gradients, who writes each gradient first,
// which input gradients share their output's buffer, the gradient pool and the scratch slots.
// No op kind is known here: everything an op does goes through its table entry.
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/model.h"

// ---- the graph ----------------------------------------------------------------------------

size_t ct_shape_count(const ct_shape *s) {
  size_t n = 1;
  for (int i = 0; i < s->nd; i++) n *= (size_t)(s->d[i] > 0 ? s->d[i] : 0);
  return s->nd > 0 ? n : 0;
}

const ct_tensor *ct_graph_tensor(const ct_graph *g, int id) { return &g->tensors[id]; }

const ct_tensor *ct_op_io_tensor(const ct_op_io *io, const ct_node *n, int k) {
  return &io->g->tensors[n->param[k]];
}

size_t ct_op_io_value_count(const ct_op_io *io, int value) {
  return ct_shape_count(&io->g->values[value].shape);
}

ct_status ct_graph_param(ct_graph *g, ct_node *n, const char *what, int nd,
                         const long long *shape, int decay, ct_init init) {
  if (n->n_param < CT_OP_MAX_PARAMS && n->tied[n->n_param] > 0) {   // an existing tensor
    int id = n->tied[n->n_param] - 1;
    const ct_tensor *t = id < g->nt ? &g->tensors[id] : NULL;
    int same = t && t->nd == nd;
    for (int d = 0; same && d < nd; d++) same = t->shape[d] == shape[d];
    if (!same)
      return CT_FAIL(CT_ERR_USAGE, "%s.%s: tied to tensor %s of another shape", n->prefix, what,
                     t ? t->name : "?");
    n->param[n->n_param++] = id;
    return CT_OK;
  }
  if (g->nt == CT_MAX_TENSORS || n->n_param == CT_OP_MAX_PARAMS)
    return CT_FAIL(CT_ERR_USAGE, "--arch: token %d '%.60s': more than %d parameter tensors",
                   g->plan_index, g->plan_tok, CT_MAX_TENSORS);
  ct_tensor *t = &g->tensors[g->nt];
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "%s.%s", n->prefix, what);
  t->nd = nd;
  size_t count = 1;
  for (int d = 0; d < nd; d++) t->shape[d] = shape[d], count *= (size_t)shape[d];
  t->off = g->param_count;
  t->count = count;
  t->decay = decay;
  t->exported = 1;
  t->init = init;
  t->owner = (int)(n - g->nodes);
  t->first_writer = t->last_writer = -1;
  g->param_count += count;
  if (g->param_count > 0xffffffffULL)
    return CT_FAIL(CT_ERR_USAGE,
                   "--arch: token %d '%.60s': the model would have %zu parameters (at most %u)",
                   g->plan_index, g->plan_tok, g->param_count, 0xffffffffU);
  n->param[n->n_param++] = g->nt++;
  return CT_OK;
}

void ct_node_saved(ct_node *n, size_t count, int is_int) {
  if (n->n_saved == CT_OP_MAX_SAVED) return;   // (a bug in an op: its saved[] is short)
  n->saved[n->n_saved] = count;
  n->saved_int[n->n_saved] = is_int;
  n->n_saved++;
}

void ct_node_scratch(ct_node *n, int id, size_t count) {
  if (n->n_scratch == CT_OP_MAX_SCRATCH) return;
  n->scratch_id[n->n_scratch] = id;
  n->scratch[n->n_scratch] = count;
  n->n_scratch++;
}

int ct_arch_tensor_find(const ct_arch *arch, const char *name) {
  for (int t = 0; t < arch->nt; t++)
    if (!strcmp(arch->tensors[t].name, name)) return t;
  return -1;
}

// Appends node `op` reading `in` (n_in values) and shapes it; its output is a new value.
// tok: the token as written (messages), prev: the one before.
static ct_status add_node(ct_arch *a, ct_node *proto, const int *in, int n_in, const char *tok,
                          const char *prev, int index) {
  if (a->n == CT_MAX_NODES || a->nv == CT_MAX_VALUES)
    return CT_FAIL(CT_ERR_USAGE, "--arch: token %d '%.60s': more than %d layers", index, tok,
                   CT_MAX_NODES - 1);
  ct_node *n = &a->nodes[a->n];
  *n = *proto;
  n->n_in = n_in;
  const ct_shape *shapes[CT_OP_MAX_IN];
  for (int i = 0; i < n_in; i++) n->in[i] = in[i], shapes[i] = &a->values[in[i]].shape;
  a->plan_index = index;
  snprintf(a->plan_tok, sizeof a->plan_tok, "%s", tok);
  ct_shape out;
  memset(&out, 0, sizeof out);
  CT_TRY(n->op->shape(a, n, shapes, tok, prev, index, &out));
  long long feat = (long long)ct_shape_count(shapes[0]), cnt = (long long)ct_shape_count(&out);
  int too_big = feat > 0x7fffffff || cnt > 0x7fffffff || cnt < 1;
  for (int d = 0; d < out.nd; d++) too_big |= out.d[d] < 1;
  if (too_big)
    return CT_FAIL(CT_ERR_USAGE, "--arch: token %d '%.60s': %lld values per sample is too many",
                   index, tok, feat > cnt ? feat : cnt);
  ct_value *v = &a->values[a->nv];
  memset(v, 0, sizeof *v);
  v->shape = out;
  v->producer = a->n;
  v->alias = -1;
  v->grad_buf = -1;
  n->out = a->nv++;
  a->n++;
  return CT_OK;
}

// ---- planning -------------------------------------------------------------------------------

// Whether a ReLU follows node i (past nodes that move no values): He init for it.
static int followed_by_relu(const ct_arch *a, int i) {
  for (int j = i + 1; j < a->n; j++) {
    unsigned f = a->nodes[j].op->flags;
    if (f & CT_OP_RELU) return 1;
    if (!(f & CT_OP_SHAPE_ONLY)) return 0;
  }
  return 0;
}

// Takes a free gradient pool buffer for value v.
static ct_status pool_take(ct_arch *a, int *owner, int v) {
  for (int k = 0; k < a->n_pool; k++)
    if (owner[k] < 0) {
      owner[k] = v;
      a->values[v].grad_buf = k;
      return CT_OK;
    }
  if (a->n_pool == CT_MAX_POOL)
    return CT_FAIL(CT_ERR_USAGE, "the model needs more than %d gradient buffers at once",
                   CT_MAX_POOL);
  owner[a->n_pool] = v;
  a->values[v].grad_buf = a->n_pool++;
  return CT_OK;
}

// The backward plan: who writes each gradient first (it overwrites, later ones add), which
// input gradients share the output's buffer, and the pool buffers of the values' gradients,
// each freed once its producer's backward has consumed it.
static ct_status plan_backward(ct_arch *a) {
  int owner[CT_MAX_POOL], written[CT_MAX_VALUES] = {0}, touched[CT_SCRATCH_SLOTS] = {0};
  for (int k = 0; k < CT_MAX_POOL; k++) owner[k] = -1;
  a->n_pool = 0;
  a->pool_floats = 0;
  a->need_tmp = 0;
  for (int v = 0; v < a->nv; v++) {
    a->values[v].grad_buf = -1;
    if (a->values[v].needs_grad) {
      size_t c = ct_shape_count(&a->values[v].shape);
      if (c > a->pool_floats) a->pool_floats = c;
    }
  }
  {   // evaluation's loss writes its (unused) gradient into pool buffer 0
    size_t c = ct_shape_count(&a->values[a->logits].shape);
    if (c > a->pool_floats) a->pool_floats = c;
  }
  for (int i = a->n - 1; i >= 0; i--) {
    ct_node *n = &a->nodes[i];
    const ct_op *op = n->op;
    memset(n->dx_mode, CT_GRAD_NONE, sizeof n->dx_mode);
    memset(n->scratch_valid, 0, sizeof n->scratch_valid);
    if (!n->backward) continue;
    if (!op->is_loss && !written[n->out])
      return CT_FAIL(CT_ERR_USAGE, "node %d (%s) does not reach the loss", i, n->token);
    for (int k = 0; k < n->n_scratch; k++) {
      int slot = n->scratch_id[k];
      n->scratch_valid[k] = !touched[slot] && a->scratch_last[slot] == i;
      touched[slot] = 1;
    }
    for (int k = 0; k < n->n_param; k++) {
      ct_tensor *t = &a->tensors[n->param[k]];
      if (t->first_writer < 0) {
        t->first_writer = i;
        n->dp_mode[k] = CT_GRAD_WRITE;
      } else {
        if (!op->can_add_dp)
          return CT_FAIL(CT_ERR_USAGE, "tensor %s is used twice, but op %s cannot add to its "
                         "gradient", t->name, op->name);
        n->dp_mode[k] = CT_GRAD_ADD;
      }
      t->last_writer = i;
    }
    int given = 0;   // the output's gradient buffer went to an input
    for (int j = 0; j < n->n_in; j++) {
      int u = n->in[j];
      if (!a->values[u].needs_grad) continue;
      if (written[u]) {
        n->dx_mode[j] = CT_GRAD_ADD;
        if (!op->can_add_dx) a->need_tmp = 1;
      } else if (!op->is_loss && !given &&
                 (n->fused || (op->passes_grad && op->passes_grad(n, j)))) {
        int k = a->values[n->out].grad_buf;
        owner[k] = u;
        a->values[u].grad_buf = k;
        n->dx_mode[j] = CT_GRAD_SHARED;
        given = 1;
      } else {
        CT_TRY(pool_take(a, owner, u));
        n->dx_mode[j] = CT_GRAD_WRITE;
      }
      written[u] = 1;
    }
    if (!op->is_loss && !given) owner[a->values[n->out].grad_buf] = -1;
  }
  // the nodes after whose backward some tensor's gradient is complete
  for (int i = 0; i < a->n; i++) a->nodes[i].marks = 0;
  for (int t = 0; t < a->nt; t++)
    if (a->tensors[t].last_writer >= 0) a->nodes[a->tensors[t].last_writer].marks = 1;
  if (a->n_pool == 0) a->n_pool = 1;
  return CT_OK;
}

// Everything the graph implies once its nodes are there: consumers, fusions, aliases, which
// values need gradients, the tensors' initialisation, the scratch slots and the backward plan.
static ct_status plan_graph(ct_arch *a) {
  for (int v = 0; v < a->nv; v++) a->values[v].consumers = 0, a->values[v].needs_grad = 0;
  for (int i = 0; i < a->n; i++)
    for (int j = 0; j < a->nodes[i].n_in; j++) a->values[a->nodes[i].in[j]].consumers++;
  // fusions: a node takes over the only consumer of its output, right after it
  for (int i = 0; i + 1 < a->n; i++) {
    ct_node *n = &a->nodes[i], *next = &a->nodes[i + 1];
    if (n->fused || !n->op->fuse_next || a->values[n->out].consumers != 1 || next->n_in != 1 ||
        next->in[0] != n->out || next->op->is_loss)
      continue;
    if (n->op->fuse_next(n, next)) {
      next->fused = 1;
      a->values[next->out].alias = n->out;
    }
  }
  for (int i = 0; i < a->n; i++) {
    ct_node *n = &a->nodes[i];
    if (n->op->out_aliases_in) a->values[n->out].alias = n->in[0];
    int grad = n->n_param > 0;
    for (int j = 0; j < n->n_in; j++) grad |= a->values[n->in[j]].needs_grad;
    n->backward = grad;
    a->values[n->out].needs_grad = grad && !n->op->is_loss;
  }
  for (int t = 0; t < a->nt; t++) {
    ct_tensor *x = &a->tensors[t];
    if (x->init.kind != CT_INIT_HE_OR_XAVIER) continue;
    x->init.std = followed_by_relu(a, x->owner) ? sqrt(2.0 / x->init.fan_in)
                                                : sqrt(2.0 / (x->init.fan_in + x->init.fan_out));
    x->init.kind = CT_INIT_NORMAL;
  }
  for (int s = 0; s < CT_SCRATCH_SLOTS; s++) a->scratch[s] = 0, a->scratch_last[s] = -1;
  for (int i = 0; i < a->n; i++) {
    const ct_node *n = &a->nodes[i];
    for (int k = 0; k < n->n_scratch; k++) {
      int slot = n->scratch_id[k];
      if (n->scratch[k] > a->scratch[slot]) a->scratch[slot] = n->scratch[k];
      a->scratch_last[slot] = i;
    }
  }
  for (int t = 0; t < a->nt; t++) a->tensors[t].first_writer = a->tensors[t].last_writer = -1;
  return plan_backward(a);
}

// ---- --arch strings -------------------------------------------------------------------------

static const ct_op *op_for_token(const char *tok) {
  for (int i = 0; i < ct_op_count; i++)
    if (ct_ops[i]->syntax && ct_ops[i]->claims(tok)) return ct_ops[i];
  return NULL;
}

static ct_status parse_chain(char *buf, ct_arch *arch) {
  char expected[256];
  ct_op_list(expected, sizeof expected);
  size_t text_len = 0;
  char prev[96] = "input";
  int index = 0, last = 0;
  // strtok_r would skip empty tokens; walk the commas by hand so "a,,b" is an error.
  char *tok = buf;
  for (;;) {
    char *comma = strchr(tok, ',');
    if (comma) *comma = 0;
    index++;
    while (isspace((unsigned char)*tok)) tok++;
    char *end = tok + strlen(tok);
    while (end > tok && isspace((unsigned char)end[-1])) *--end = 0;
    if (!*tok) {
      if (index == 1 && !comma)
        return CT_FAIL(CT_ERR_USAGE, "--arch: empty architecture (expected mlp, cnn or a list of "
                       "%s)", expected);
      return CT_FAIL(CT_ERR_USAGE, "--arch: token %d is empty (expected %s)", index, expected);
    }
    for (const char *q = tok; *q; q++)
      if (iscntrl((unsigned char)*q))
        return CT_FAIL(CT_ERR_USAGE, "--arch: token %d contains a control character", index);
    if (arch->n == CT_MAX_NODES - 1)
      return CT_FAIL(CT_ERR_USAGE, "--arch: token %d '%.60s': more than %d layers", index, tok,
                     CT_MAX_NODES - 1);
    const ct_op *op = op_for_token(tok);
    if (!op)
      return CT_FAIL(CT_ERR_USAGE, "--arch: token %d '%.60s': unknown layer (expected %s)", index,
                     tok, expected);
    ct_node proto;
    memset(&proto, 0, sizeof proto);
    proto.op = op;
    snprintf(proto.prefix, sizeof proto.prefix, "%d", arch->n);
    CT_TRY(op->parse(tok, index, &proto));
    CT_TRY(add_node(arch, &proto, &last, 1, tok, prev, index));
    last = arch->nodes[arch->n - 1].out;
    const char *canon = arch->nodes[arch->n - 1].token;
    size_t clen = strlen(canon);
    if (text_len + clen + 2 > sizeof arch->text)
      return CT_FAIL(CT_ERR_USAGE, "--arch: the canonical architecture text is longer than %zu "
                     "characters", sizeof arch->text - 1);
    if (text_len) arch->text[text_len++] = ',';
    memcpy(arch->text + text_len, canon, clen + 1);
    text_len += clen;
    snprintf(prev, sizeof prev, "%s", canon);
    if (!comma) break;
    tok = comma + 1;
  }
  const ct_shape *o = &arch->values[last].shape;
  long long out = (long long)ct_shape_count(o);
  if (out != arch->classes) {
    int c = o->d[0], h = o->nd == 3 ? o->d[1] : 1, w = o->nd == 3 ? o->d[2] : 1;
    if (o->nd == 2) c = o->d[0], h = o->d[1];
    return CT_FAIL(CT_ERR_USAGE,
                   "--arch: token %d '%s': the last layer gives %lld outputs (%dx%dx%d) but the "
                   "data has %d classes", arch->n, prev, out, c, h, w, arch->classes);
  }
  // the loss: softmax cross-entropy of the logits against one label per sample
  return ct_arch_end(arch, "softmax_xent", last, 1);
}

ct_status ct_arch_parse(const char *spec, int in_c, int in_h, int in_w, int classes,
                        ct_arch *arch) {
  memset(arch, 0, sizeof *arch);
  if (in_c < 1 || in_h < 1 || in_w < 1 || classes < 1 ||
      (long long)in_c * in_h * in_w > 0x7fffffff)
    return CT_FAIL(CT_ERR_USAGE, "--arch: data shape %dx%dx%d with %d classes is not usable",
                   in_c, in_h, in_w, classes);
  if (!spec) spec = "";
  char buf[4096];
  if (!strcmp(spec, "mlp"))
    snprintf(buf, sizeof buf, "flatten,dense:512,relu,dense:512,relu,dense:%d", classes);
  else if (!strcmp(spec, "cnn"))
    snprintf(buf, sizeof buf,
             "conv3x3:32,relu,maxpool2,conv3x3:64,relu,maxpool2,flatten,dense:128,relu,dense:%d",
             classes);
  else if (strlen(spec) >= sizeof buf)
    return CT_FAIL(CT_ERR_USAGE, "--arch: the architecture string is too long (%zu characters, "
                   "at most %zu)", strlen(spec), sizeof buf - 1);
  else
    snprintf(buf, sizeof buf, "%s", spec);
  ct_shape input = {3, {in_c, in_h, in_w}, 0};
  ct_arch_begin(arch, &input);
  arch->in_c = in_c, arch->in_h = in_h, arch->in_w = in_w, arch->classes = classes;
  ct_status st = parse_chain(buf, arch);
  if (st != CT_OK) memset(arch, 0, sizeof *arch);
  return st;
}

void ct_arch_begin(ct_arch *a, const ct_shape *input) {
  memset(a, 0, sizeof *a);
  ct_value *in = &a->values[0];
  in->shape = *input;
  in->producer = in->alias = in->grad_buf = -1;
  a->nv = 1;
}

int ct_arch_value(ct_arch *a, const ct_shape *shape) {
  if (a->nv == CT_MAX_VALUES) return -1;
  ct_value *v = &a->values[a->nv];
  memset(v, 0, sizeof *v);
  v->shape = *shape;
  v->producer = v->alias = v->grad_buf = -1;
  return a->nv++;
}

ct_status ct_arch_add(ct_arch *a, const char *op_name, const char *token, const int *in,
                      int n_in, const char *prefix, const int *tied, int *out) {
  const ct_op *op = ct_op_find(op_name);
  if (!op) return CT_FAIL(CT_ERR_INTERNAL, "no op called '%s'", op_name);
  if (n_in < 1 || n_in > CT_OP_MAX_IN)
    return CT_FAIL(CT_ERR_INTERNAL, "op %s with %d inputs", op_name, n_in);
  for (int j = 0; j < n_in; j++)
    if (in[j] < 0 || in[j] >= a->nv)
      return CT_FAIL(CT_ERR_INTERNAL, "op %s reads value %d of %d", op_name, in[j], a->nv);
  ct_node proto;
  memset(&proto, 0, sizeof proto);
  proto.op = op;
  snprintf(proto.prefix, sizeof proto.prefix, "%s", prefix);
  for (int k = 0; tied && k < CT_OP_MAX_PARAMS; k++) proto.tied[k] = tied[k] + 1;
  int index = a->n + 1;
  CT_TRY(op->parse(token, index, &proto));
  CT_TRY(add_node(a, &proto, in, n_in, token, a->n ? a->nodes[a->n - 1].token : "input", index));
  *out = a->nodes[a->n - 1].out;
  return CT_OK;
}

ct_status ct_arch_end(ct_arch *a, const char *loss, int logits, int labels) {
  int out;
  CT_TRY(ct_arch_add(a, loss, loss, &logits, 1, "loss", NULL, &out));
  if (!a->nodes[a->n - 1].op->is_loss)
    return CT_FAIL(CT_ERR_INTERNAL, "op %s is not a loss", loss);
  a->logits = logits;
  a->labels_per_sample = labels;
  return plan_graph(a);
}

void ct_arch_describe(const ct_arch *arch, char *buf, size_t size) {
  if (!size) return;
  buf[0] = 0;
  size_t len = 0;
#define OUT(...)                                                                  \
  do {                                                                            \
    int r_ = snprintf(buf + len, size - len, __VA_ARGS__);                        \
    if (r_ < 0) return;                                                           \
    len += (size_t)r_;                                                            \
    if (len >= size) return;                                                      \
  } while (0)
  for (int i = 0; i < arch->n; i++) {
    const ct_node *n = &arch->nodes[i];
    if (n->op->is_loss) continue;
    const ct_shape *x = &arch->values[n->in[0]].shape, *y = &arch->values[n->out].shape;
    int xc = x->nd == 1 ? x->d[0] : x->d[0], xh = x->nd >= 2 ? x->d[1] : 1, xw = x->nd == 3 ? x->d[2] : 1;
    int yc = y->d[0], yh = y->nd >= 2 ? y->d[1] : 1, yw = y->nd == 3 ? y->d[2] : 1;
    if (n->param[0] >= 0 && n->n_param && arch->tensors[n->param[0]].nd == 2 && x->nd != 2)
      xc = (int)ct_shape_count(x), xh = xw = 1;   // a dense node flattens its input
    OUT("%2d %-8s %dx%dx%d -> %dx%dx%d", i, n->op->name, xc, xh, xw, yc, yh, yw);
    if (n->op->describe) {
      char tail[128];
      n->op->describe(n, tail, sizeof tail);
      OUT("%s", tail);
    }
    size_t params = 0;
    for (int k = 0; k < n->n_param; k++) params += arch->tensors[n->param[k]].count;
    if (params) OUT("  params %zu\n", params);
    else OUT("\n");
  }
  OUT("total %zu parameters", arch->param_count);
#undef OUT
}

void ct_arch_flops(const ct_arch *arch, double *forward, double *train) {
  double fwd = 0, bwd = 0;
  for (int i = 0; i < arch->n; i++) {
    const ct_node *n = &arch->nodes[i];
    if (!n->op->flops || n->fused) continue;
    double f[3] = {0, 0, 0};
    n->op->flops(n, arch, f);
    fwd += f[0];
    if (!n->backward) continue;
    if (n->n_param) bwd += f[1];
    int dx = 0;
    for (int j = 0; j < n->n_in; j++) dx |= arch->values[n->in[j]].needs_grad;
    if (dx) bwd += f[2];
  }
  *forward = fwd;
  *train = fwd + bwd;
}

int ct_arch_no_decay(const ct_arch *a, size_t *lo, size_t *hi) {
  int n = 0;
  for (int t = 0; t < a->nt; t++) {
    const ct_tensor *x = &a->tensors[t];
    if (x->decay) continue;
    if (n > 0 && hi[n - 1] == x->off) hi[n - 1] += x->count;
    else lo[n] = x->off, hi[n] = x->off + x->count, n++;
  }
  return n;
}
