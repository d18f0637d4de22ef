// model.c: architecture parsing (presets and token strings), parameter initialisation, device
// buffers of a model, and the forward / backward pass over the layer list (see model.h).
#include "cltrain/model.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/layers.h"
#include "cltrain/prof.h"

// ---- architecture parsing -------------------------------------------------------------------

#define EXPECTED_TOKENS "dense:N, convKxK:N[/sS][/pP], relu, maxpoolK, flatten or dropout:P"

// Parses a decimal integer in [lo, hi] at *s (digits only, no sign); advances *s.
static int parse_int(const char **s, long lo, long hi, int *out) {
  const char *p = *s;
  if (!isdigit((unsigned char)*p)) return 0;
  long v = 0;
  while (isdigit((unsigned char)*p)) {
    v = v * 10 + (*p - '0');
    if (v > 1000000000L) return 0;
    p++;
  }
  if (v < lo || v > hi) return 0;
  *out = (int)v;
  *s = p;
  return 1;
}

// Shortest "%.*g" that reads back as the same float.
static void format_float(float v, char *buf, size_t size) {
  for (int prec = 1; prec <= 9; prec++) {
    snprintf(buf, size, "%.*g", prec, (double)v);
    if ((float)strtod(buf, NULL) == v) return;
  }
}

static const char *kind_name(ct_layer_kind k) {
  switch (k) {
    case CT_LAYER_DENSE: return "dense";
    case CT_LAYER_CONV2D: return "conv2d";
    case CT_LAYER_MAXPOOL: return "maxpool";
    case CT_LAYER_RELU: return "relu";
    case CT_LAYER_FLATTEN: return "flatten";
    case CT_LAYER_DROPOUT: return "dropout";
  }
  return "?";
}

// Parses one token into L (kind, k, stride, pad, p, and out_c for dense/conv) and its canonical
// text. Shapes are filled in by the caller.
static ct_status parse_token(const char *tok, int index, ct_layer *L, char *canon, size_t size) {
  memset(L, 0, sizeof *L);
  const char *s = tok;
  int n;
  if (!strcmp(tok, "relu")) {
    L->kind = CT_LAYER_RELU;
    snprintf(canon, size, "relu");
    return CT_OK;
  }
  if (!strcmp(tok, "flatten")) {
    L->kind = CT_LAYER_FLATTEN;
    snprintf(canon, size, "flatten");
    return CT_OK;
  }
  if (!strncmp(tok, "dense", 5)) {
    s += 5;
    if (*s++ != ':' || !parse_int(&s, 1, 1 << 24, &n) || *s)
      return CT_FAIL(CT_ERR_USAGE, "--arch: token %d '%.60s': expected dense:N with 1 <= N <= %d",
                     index, tok, 1 << 24);
    L->kind = CT_LAYER_DENSE;
    L->out_c = n;
    snprintf(canon, size, "dense:%d", n);
    return CT_OK;
  }
  if (!strncmp(tok, "conv", 4)) {
    int k1, k2;
    s += 4;
    if (!parse_int(&s, 1, 1 << 16, &k1) || *s++ != 'x' || !parse_int(&s, 1, 1 << 16, &k2) ||
        *s++ != ':' || !parse_int(&s, 1, 1 << 24, &n))
      return CT_FAIL(CT_ERR_USAGE, "--arch: token %d '%.60s': expected convKxK:N[/sS][/pP]",
                     index, tok);
    if (k1 != k2)
      return CT_FAIL(CT_ERR_USAGE,
                     "--arch: token %d '%.60s': expected a square kernel convKxK:N (got %dx%d)",
                     index, tok, k1, k2);
    int stride = -1, pad = -1;
    while (*s) {
      int v;
      char which = s[0] == '/' ? s[1] : 0;
      if ((which != 's' && which != 'p') || (s += 2, !parse_int(&s, 0, 1 << 16, &v)))
        return CT_FAIL(CT_ERR_USAGE,
                       "--arch: token %d '%.60s': expected convKxK:N with optional /sS (stride) "
                       "and /pP (padding)", index, tok);
      int *slot = which == 's' ? &stride : &pad;
      if (*slot >= 0)
        return CT_FAIL(CT_ERR_USAGE, "--arch: token %d '%.60s': %s given twice", index, tok,
                       which == 's' ? "stride" : "padding");
      *slot = v;
    }
    if (stride < 0) stride = 1;
    if (pad < 0) pad = k1 / 2;
    if (stride < 1)
      return CT_FAIL(CT_ERR_USAGE, "--arch: token %d '%.60s': stride must be >= 1", index, tok);
    if (pad >= k1)
      return CT_FAIL(CT_ERR_USAGE,
                     "--arch: token %d '%.60s': padding %d must be smaller than the kernel size %d",
                     index, tok, pad, k1);
    L->kind = CT_LAYER_CONV2D;
    L->k = k1;
    L->stride = stride;
    L->pad = pad;
    L->out_c = n;
    int len = snprintf(canon, size, "conv%dx%d:%d", k1, k1, n);
    if (stride != 1 && len > 0 && (size_t)len < size)
      len += snprintf(canon + len, size - (size_t)len, "/s%d", stride);
    if (pad != k1 / 2 && len > 0 && (size_t)len < size)
      snprintf(canon + len, size - (size_t)len, "/p%d", pad);
    return CT_OK;
  }
  if (!strncmp(tok, "maxpool", 7)) {
    s += 7;
    if (!parse_int(&s, 1, 1 << 16, &n) || *s)
      return CT_FAIL(CT_ERR_USAGE, "--arch: token %d '%.60s': expected maxpoolK with K >= 1",
                     index, tok);
    L->kind = CT_LAYER_MAXPOOL;
    L->k = L->stride = n;
    snprintf(canon, size, "maxpool%d", n);
    return CT_OK;
  }
  if (!strncmp(tok, "dropout", 7)) {
    s += 7;
    int ok = *s++ == ':' && *s;
    for (const char *c = s; ok && *c; c++)
      if (!isdigit((unsigned char)*c) && !strchr(".eE+-", *c)) ok = 0;
    double p = 0;
    if (ok) {
      char *end;
      errno = 0;
      p = strtod(s, &end);
      ok = !*end && !errno && p >= 0.0 && p < 1.0 && (float)p < 1.0f;
    }
    if (!ok)
      return CT_FAIL(CT_ERR_USAGE, "--arch: token %d '%.60s': expected dropout:P with 0 <= P < 1",
                     index, tok);
    L->kind = CT_LAYER_DROPOUT;
    L->p = p > 0.0 ? (float)p : 0.0f;   // no -0
    char num[32];
    format_float(L->p, num, sizeof num);
    snprintf(canon, size, "dropout:%s", num);
    return CT_OK;
  }
  return CT_FAIL(CT_ERR_USAGE, "--arch: token %d '%.60s': unknown layer (expected %s)", index, tok,
                 EXPECTED_TOKENS);
}

// Fills in shapes and parameter slices of L given the current sample shape (c, h, w) and
// whether it is still an image (spatial) or already a feature vector.
static ct_status shape_layer(ct_layer *L, int index, const char *tok, int *c, int *h, int *w,
                             int *spatial, const char *prev, size_t *params) {
  long long feat = (long long)*c * *h * *w;
  L->in_c = *c, L->in_h = *h, L->in_w = *w;
  switch (L->kind) {
    case CT_LAYER_DENSE:
      L->in_c = (int)feat, L->in_h = L->in_w = 1;
      L->out_h = L->out_w = 1;
      L->w_count = (size_t)feat * (size_t)L->out_c;
      L->b_count = (size_t)L->out_c;
      *spatial = 0;
      break;
    case CT_LAYER_CONV2D:
    case CT_LAYER_MAXPOOL: {
      const char *what = L->kind == CT_LAYER_CONV2D ? "a convolution" : "max pooling";
      if (!*spatial)
        return CT_FAIL(CT_ERR_USAGE,
                       "--arch: token %d '%.60s': %s needs an image (C x H x W) input, but gets "
                       "%lld features (after '%.60s')", index, tok, what, feat, prev);
      int pad = L->kind == CT_LAYER_CONV2D ? L->pad : 0;
      int oh = ct_conv_out_size(*h, L->k, L->stride, pad);
      int ow = ct_conv_out_size(*w, L->k, L->stride, pad);
      if (oh < 1 || ow < 1)
        return CT_FAIL(CT_ERR_USAGE,
                       "--arch: token %d '%.60s': input %dx%dx%d is too small for %s with window "
                       "%d, stride %d and padding %d (the output would be empty)", index, tok,
                       *c, *h, *w, what, L->k, L->stride, pad);
      if (L->kind == CT_LAYER_CONV2D) {
        size_t wc;
        size_t kk = (size_t)L->k * (size_t)L->k;
        if (__builtin_mul_overflow((size_t)L->out_c * (size_t)*c, kk, &wc) || wc > 0xffffffffULL)
          return CT_FAIL(CT_ERR_USAGE,
                         "--arch: token %d '%.60s': the layer would have more than %u parameters",
                         index, tok, 0xffffffffU);
        L->w_count = wc;
        L->b_count = (size_t)L->out_c;
      } else {
        L->out_c = *c;
      }
      L->out_h = oh, L->out_w = ow;
      break;
    }
    case CT_LAYER_FLATTEN:
      if (feat > 0x7fffffff) break;   // reported below
      L->out_c = (int)feat, L->out_h = L->out_w = 1;
      *spatial = 0;
      break;
    case CT_LAYER_RELU:
    case CT_LAYER_DROPOUT:
      L->out_c = *c, L->out_h = *h, L->out_w = *w;
      break;
  }
  long long out = (long long)L->out_c * L->out_h * L->out_w;
  if (feat > 0x7fffffff || out > 0x7fffffff || out < 1)
    return CT_FAIL(CT_ERR_USAGE, "--arch: token %d '%.60s': %lld values per sample is too many",
                   index, tok, feat > out ? feat : out);
  L->w_off = *params;
  L->b_off = *params + L->w_count;
  *params += L->w_count + L->b_count;
  if (*params > 0xffffffffULL)
    return CT_FAIL(CT_ERR_USAGE,
                   "--arch: token %d '%.60s': the model would have %zu parameters (at most %u)",
                   index, tok, *params, 0xffffffffU);
  *c = L->out_c, *h = L->out_h, *w = L->out_w;
  return CT_OK;
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

  arch->in_c = in_c, arch->in_h = in_h, arch->in_w = in_w, arch->classes = classes;
  int c = in_c, h = in_h, w = in_w, spatial = 1;
  size_t params = 0, text_len = 0;
  char prev[96] = "input";
  int index = 0;
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
      memset(arch, 0, sizeof *arch);
      if (index == 1 && !comma)
        return CT_FAIL(CT_ERR_USAGE, "--arch: empty architecture (expected mlp, cnn or a list of "
                       "%s)", EXPECTED_TOKENS);
      return CT_FAIL(CT_ERR_USAGE, "--arch: token %d is empty (expected %s)", index,
                     EXPECTED_TOKENS);
    }
    for (const char *q = tok; *q; q++)
      if (iscntrl((unsigned char)*q)) {
        memset(arch, 0, sizeof *arch);
        return CT_FAIL(CT_ERR_USAGE, "--arch: token %d contains a control character", index);
      }
    if (arch->n == CT_MAX_LAYERS) {
      memset(arch, 0, sizeof *arch);
      return CT_FAIL(CT_ERR_USAGE, "--arch: token %d '%.60s': more than %d layers", index, tok,
                     CT_MAX_LAYERS);
    }
    ct_layer *L = &arch->layers[arch->n];
    char canon[96];
    ct_status st = parse_token(tok, index, L, canon, sizeof canon);
    if (st == CT_OK) st = shape_layer(L, index, tok, &c, &h, &w, &spatial, prev, &params);
    if (st != CT_OK) {
      memset(arch, 0, sizeof *arch);
      return st;
    }
    size_t clen = strlen(canon);
    if (text_len + clen + 2 > sizeof arch->text) {
      memset(arch, 0, sizeof *arch);
      return CT_FAIL(CT_ERR_USAGE, "--arch: the canonical architecture text is longer than %zu "
                     "characters", sizeof arch->text - 1);
    }
    if (text_len) arch->text[text_len++] = ',';
    memcpy(arch->text + text_len, canon, clen + 1);
    text_len += clen;
    snprintf(prev, sizeof prev, "%s", canon);
    arch->n++;
    if (!comma) break;
    tok = comma + 1;
  }
  long long out = (long long)c * h * w;
  if (out != classes) {
    int n = arch->n;
    char last[96];
    snprintf(last, sizeof last, "%s", prev);
    memset(arch, 0, sizeof *arch);
    return CT_FAIL(CT_ERR_USAGE,
                   "--arch: token %d '%s': the last layer gives %lld outputs (%dx%dx%d) but the "
                   "data has %d classes", n, last, out, c, h, w, classes);
  }
  arch->param_count = params;
  return CT_OK;
}

void ct_arch_describe(const ct_arch *arch, char *buf, size_t size) {
  if (!size) return;
  buf[0] = 0;
  size_t len = 0;
  for (int i = 0; i < arch->n && len < size; i++) {
    const ct_layer *L = &arch->layers[i];
    int r = snprintf(buf + len, size - len, "%2d %-8s %dx%dx%d -> %dx%dx%d", i,
                     kind_name(L->kind), L->in_c, L->in_h, L->in_w, L->out_c, L->out_h, L->out_w);
    if (r < 0) return;
    len += (size_t)r;
    if (len >= size) return;
    if (L->kind == CT_LAYER_CONV2D)
      r = snprintf(buf + len, size - len, "  k %d stride %d pad %d", L->k, L->stride, L->pad);
    else if (L->kind == CT_LAYER_MAXPOOL)
      r = snprintf(buf + len, size - len, "  window %d", L->k);
    else if (L->kind == CT_LAYER_DROPOUT)
      r = snprintf(buf + len, size - len, "  p %g", (double)L->p);
    else
      r = 0;
    if (r < 0) return;
    len += (size_t)r;
    if (len >= size) return;
    r = L->w_count ? snprintf(buf + len, size - len, "  params %zu\n", L->w_count + L->b_count)
                   : snprintf(buf + len, size - len, "\n");
    if (r < 0) return;
    len += (size_t)r;
  }
  if (len < size)
    snprintf(buf + len, size - len, "total %zu parameters", arch->param_count);
}

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

// Whether the output of layer i goes through a ReLU next (past flatten and dropout).
static int followed_by_relu(const ct_arch *arch, int i) {
  for (int j = i + 1; j < arch->n; j++) {
    ct_layer_kind k = arch->layers[j].kind;
    if (k == CT_LAYER_RELU) return 1;
    if (k != CT_LAYER_FLATTEN && k != CT_LAYER_DROPOUT) return 0;
  }
  return 0;
}

void ct_model_init_params(const ct_arch *arch, uint64_t seed, float *params) {
  normal_gen g = {seed, 0, 0.0};
  for (int i = 0; i < arch->n; i++) {
    const ct_layer *L = &arch->layers[i];
    if (!L->w_count) continue;
    double fan_in, fan_out;
    if (L->kind == CT_LAYER_CONV2D) {
      fan_in = (double)L->in_c * L->k * L->k;
      fan_out = (double)L->out_c * L->k * L->k;
    } else {
      fan_in = (double)L->in_c;
      fan_out = (double)L->out_c;
    }
    double std = followed_by_relu(arch, i) ? sqrt(2.0 / fan_in)            // He
                                           : sqrt(2.0 / (fan_in + fan_out));  // Xavier
    for (size_t j = 0; j < L->w_count; j++) params[L->w_off + j] = (float)(std * normal_next(&g));
    for (size_t j = 0; j < L->b_count; j++) params[L->b_off + j] = 0.0f;
  }
}

void ct_arch_flops(const ct_arch *arch, double *forward, double *train) {
  double fwd = 0, bwd = 0;
  int first = 1;
  for (int i = 0; i < arch->n; i++) {
    const ct_layer *L = &arch->layers[i];
    double f = 0;
    if (L->kind == CT_LAYER_DENSE) f = 2.0 * L->in_c * (double)L->out_c;
    else if (L->kind == CT_LAYER_CONV2D)
      f = 2.0 * L->out_c * (double)L->out_h * L->out_w * L->in_c * L->k * L->k;
    if (!f) continue;
    fwd += f;
    bwd += first ? f : 2 * f;   // weights; and inputs, except for the first layer
    first = 0;
  }
  *forward = fwd;
  *train = fwd + bwd;
}

uint64_t ct_model_dropout_seed(uint64_t dropout_seed, int layer) {
  uint64_t s = dropout_seed ^ (0xd1b54a32d192ed03ULL * (uint64_t)(layer + 1));
  return splitmix64(&s);
}

// ---- device buffers -------------------------------------------------------------------------

typedef struct {
  size_t act[CT_MAX_LAYERS + 1];  // floats of act[i], i >= 1; 0 when it aliases act[i-1]
  size_t idx[CT_MAX_LAYERS];      // ints
  ct_conv_scratch_size conv;      // floats, the maximum over the convolutions
  size_t dact;                    // floats
  size_t input;                   // floats
  int first_param;
} buffer_plan;

static ct_conv_geom geom(const ct_layer *L, int batch) {
  ct_conv_geom g = {batch, L->in_c, L->in_h, L->in_w, L->out_c, L->out_h, L->out_w,
                    L->k, L->stride, L->kind == CT_LAYER_CONV2D ? L->pad : 0};
  return g;
}

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

// Layer i is a ReLU right after a dense or conv layer: the two run as one (the bias pass applies
// the ReLU, and the ReLU's output buffer is the layer's own), and in the backward pass the
// ReLU's mask is applied inside the layer's first pass over its output gradient.
static int fused_relu(const ct_arch *arch, int i) {
  return i > 0 && arch->layers[i].kind == CT_LAYER_RELU &&
         (arch->layers[i - 1].kind == CT_LAYER_DENSE || arch->layers[i - 1].kind == CT_LAYER_CONV2D);
}

static void plan_buffers(const ct_arch *arch, int max_batch, buffer_plan *p) {
  memset(p, 0, sizeof *p);
  size_t B = max_batch > 0 ? (size_t)max_batch : 0;
  p->input = B * (size_t)arch->in_c * arch->in_h * arch->in_w;
  p->first_param = arch->n;
  for (int i = 0; i < arch->n; i++) {
    const ct_layer *L = &arch->layers[i];
    if (L->w_count && p->first_param == arch->n) p->first_param = i;
    size_t out = B * (size_t)L->out_c * L->out_h * L->out_w;
    p->act[i + 1] = L->kind == CT_LAYER_FLATTEN || fused_relu(arch, i) ? 0 : out;
    if (out > p->dact) p->dact = out;
    if (L->kind == CT_LAYER_CONV2D) {
      ct_conv_geom g = geom(L, max_batch > 0 ? max_batch : 0);
      ct_conv_scratch_size s = ct_conv2d_scratch_floats(&g);
      p->conv.col = max_size(p->conv.col, s.col);
      p->conv.t = max_size(p->conv.t, s.t);

    }
    if (L->kind == CT_LAYER_MAXPOOL) p->idx[i] = out;
  }
}

size_t ct_model_device_bytes(const ct_arch *arch, int max_batch) {
  buffer_plan p;
  plan_buffers(arch, max_batch, &p);
  size_t B = max_batch > 0 ? (size_t)max_batch : 0;
  size_t floats = 2 * arch->param_count + p.input + B /* losses */ + p.conv.col + p.conv.t +
                  2 * p.dact;
  size_t ints = B /* labels */;
  for (int i = 0; i < arch->n; i++) floats += p.act[i + 1], ints += p.idx[i];
  return 4 * floats + sizeof(cl_int) * ints;
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
  if (arch->n < 1 || arch->n > CT_MAX_LAYERS)
    return CT_FAIL(CT_ERR_INTERNAL, "ct_model_init: architecture with %d layers", arch->n);
  size_t need = ct_model_device_bytes(arch, max_batch);
  if (need > dev->info.global_mem)
    return CT_FAIL(CT_ERR_NOMEM, "the model (%s) with batches of %d needs %zu bytes of device "
                   "memory, but %s has %llu bytes", arch->text, max_batch, need, dev->info.name,
                   (unsigned long long)dev->info.global_mem);
  buffer_plan p;
  plan_buffers(arch, max_batch, &p);
  // Kernels index with 32 bits.
  size_t biggest = max_size(max_size(p.input, p.dact), max_size(p.conv.col, p.conv.t));
  if (biggest > 0xffffffffULL)
    return CT_FAIL(CT_ERR_NOMEM, "the model (%s) with batches of %d needs a buffer of %zu "
                   "elements; at most 2^32-1 are supported", arch->text, max_batch, biggest);

  m->dev = dev;
  m->arch = *arch;
  m->max_batch = max_batch;
  m->first_param = p.first_param;
  m->last_conv = -1;
  for (int i = 0; i < arch->n; i++)
    if (arch->layers[i].kind == CT_LAYER_CONV2D) m->last_conv = i;
  size_t B = (size_t)max_batch;
  ct_status st;
  CT_GOTO(alloc(m, 4 * arch->param_count, "parameter", &m->params), st, fail);
  CT_GOTO(alloc(m, 4 * (arch->param_count + grad_tail), "gradient", &m->grads), st, fail);
  m->grad_tail = grad_tail;
  CT_GOTO(alloc(m, 4 * p.input, "input", &m->input), st, fail);
  CT_GOTO(alloc(m, sizeof(cl_int) * B, "label", &m->labels), st, fail);
  CT_GOTO(alloc(m, 4 * B, "loss", &m->losses), st, fail);
  m->act[0] = m->input;
  for (int i = 0; i < arch->n; i++) {
    if (p.act[i + 1]) {
      CT_GOTO(alloc(m, 4 * p.act[i + 1], "activation", &m->act[i + 1]), st, fail);
      m->act_owned[i + 1] = 1;
    } else {
      m->act[i + 1] = m->act[i];
    }
    CT_GOTO(alloc(m, sizeof(cl_int) * p.idx[i], "pooling index", &m->idx[i]), st, fail);
  }
  m->logits = m->act[arch->n];
  CT_GOTO(alloc(m, 4 * p.conv.col, "im2col", &m->conv_col), st, fail);
  CT_GOTO(alloc(m, 4 * p.conv.t, "convolution output", &m->conv_t), st, fail);
  CT_GOTO(alloc(m, 4 * p.dact, "activation gradient", &m->dact[0]), st, fail);
  CT_GOTO(alloc(m, 4 * p.dact, "activation gradient", &m->dact[1]), st, fail);
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
  release(&m->losses);
  for (int i = 1; i <= CT_MAX_LAYERS; i++)
    if (m->act_owned[i]) release(&m->act[i]);
  release(&m->input);
  for (int i = 0; i < CT_MAX_LAYERS; i++) release(&m->idx[i]);
  release(&m->conv_col);
  release(&m->conv_t);
  release(&m->dact[0]);
  release(&m->dact[1]);
  for (int i = 0; i < CT_MAX_LAYERS; i++)
    if (m->grad_done[i]) clReleaseEvent(m->grad_done[i]);
  memset(m, 0, sizeof *m);
}

// ---- host transfers -------------------------------------------------------------------------

static ct_status check_batch(const ct_model *m, int batch, const char *what) {
  if (batch < 0 || batch > m->max_batch)
    return CT_FAIL(CT_ERR_INTERNAL, "%s: batch %d outside 0..%d", what, batch, m->max_batch);
  return CT_OK;
}

static size_t sample_size(const ct_model *m) {
  return (size_t)m->arch.in_c * m->arch.in_h * m->arch.in_w;
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
                                sizeof(cl_int) * (size_t)batch, y, 0, NULL, NULL));
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
                                sizeof(cl_int) * (size_t)batch, y, 0, NULL, done));
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
  CL_CHECK(clEnqueueReadBuffer(m->dev->queue, m->losses, CL_TRUE, 0, 4 * (size_t)batch, losses,
                               0, NULL, NULL));
  return CT_OK;
}

ct_status ct_model_read_logits(ct_model *m, int batch, float *logits) {
  CT_TRY(check_batch(m, batch, "ct_model_read_logits"));
  if (!batch) return CT_OK;
  CL_CHECK(clEnqueueReadBuffer(m->dev->queue, m->logits, CL_TRUE, 0,
                               4 * (size_t)batch * m->arch.classes, logits, 0, NULL, NULL));
  return CT_OK;
}

// ---- forward / backward ---------------------------------------------------------------------

static size_t out_elems(const ct_layer *L, int batch) {
  return (size_t)batch * L->out_c * L->out_h * L->out_w;
}

// Index (mod 2^32) of the first element of a share starting at sample `offset` of the batch.
static uint32_t dropout_first(const ct_layer *L, int offset) {
  return (uint32_t)offset * (uint32_t)((size_t)L->out_c * L->out_h * L->out_w);
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
  ct_device *dev = m->dev;
  ct_conv_scratch cs = {m->conv_col, m->conv_t};
  for (int i = 0; i < m->arch.n; i++) {
    const ct_layer *L = &m->arch.layers[i];
    cl_mem x = m->act[i], y = m->act[i + 1];
    ct_conv_geom g = geom(L, batch);
    switch (L->kind) {
      case CT_LAYER_DENSE:
        CT_TRY(ct_dense_forward(dev, batch, L->in_c, L->out_c, x, m->params, L->w_off, m->params,
                                L->b_off, y, fused_relu(&m->arch, i + 1)));
        break;
      case CT_LAYER_CONV2D:
        CT_TRY(ct_conv2d_forward(dev, &g, x, m->params, L->w_off, m->params, L->b_off, &cs, y,
                                 fused_relu(&m->arch, i + 1)));
        break;
      case CT_LAYER_MAXPOOL:
        CT_TRY(ct_maxpool_forward(dev, &g, x, y, m->idx[i]));
        break;
      case CT_LAYER_RELU:
        if (!fused_relu(&m->arch, i)) CT_TRY(ct_relu_forward(dev, out_elems(L, batch), x, y));
        break;   // fused: done by the layer before, y aliases x
      case CT_LAYER_FLATTEN:
        break;   // y aliases x
      case CT_LAYER_DROPOUT:
        CT_TRY(ct_dropout_forward(dev, out_elems(L, batch), train ? L->p : 0.0f,
                                  ct_model_dropout_seed(dropout_seed, i),
                                  dropout_first(L, m->fwd_offset), x, y));
        break;
    }
  }
  return CT_OK;
}

ct_status ct_model_backward(ct_model *m, int batch, float loss_scale) {
  CT_TRY(check_batch(m, batch, "ct_model_backward"));
  ct_device *dev = m->dev;
  if (!batch) {   // an empty share: zero gradients (written, for mark_grads, by the fill)
    CT_TRY(ct_fill(dev, m->grads, m->arch.param_count, 0.0f));
    for (int i = m->first_param; m->mark_grads && i < m->arch.n; i++) {
      if (m->grad_done[i]) clReleaseEvent(m->grad_done[i]);
      m->grad_done[i] = NULL;
      if (m->arch.layers[i].w_count + m->arch.layers[i].b_count > 0)
        CL_CHECK(clEnqueueMarkerWithWaitList(dev->queue, 0, NULL, &m->grad_done[i]));
    }
    return CT_OK;
  }
  if (batch != m->fwd_batch)
    return CT_FAIL(CT_ERR_INTERNAL, "ct_model_backward on a batch of %d after a forward of %d",
                   batch, m->fwd_batch);
  cl_mem g = m->dact[0], other = m->dact[1], tmp;
  ct_conv_scratch cs = {m->conv_col, m->conv_t};
  CT_TRY(ct_softmax_xent(dev, batch, m->arch.classes, m->logits, m->labels, loss_scale,
                         m->losses, g));
  for (int i = m->arch.n - 1; i >= m->first_param; i--) {
    const ct_layer *L = &m->arch.layers[i];
    int need_dx = i > m->first_param;
    cl_mem dx = need_dx ? other : NULL;
    ct_conv_geom gm = geom(L, batch);
    // the ReLU after this layer, fused: its output masks this layer's output gradient
    cl_mem relu_y = i + 1 < m->arch.n && fused_relu(&m->arch, i + 1) ? m->act[i + 2] : NULL;
    switch (L->kind) {
      case CT_LAYER_DENSE:
        CT_TRY(ct_dense_backward(dev, batch, L->in_c, L->out_c, m->act[i], m->params, L->w_off, g,
                                 m->grads, L->w_off, m->grads, L->b_off, dx, relu_y));
        break;
      case CT_LAYER_CONV2D:
        CT_TRY(ct_conv2d_backward(dev, &gm, m->act[i], m->params, L->w_off, g, m->grads,
                                  L->w_off, m->grads, L->b_off, &cs, dx, relu_y,
                                  i == m->last_conv));
        break;
      case CT_LAYER_MAXPOOL:
        CT_TRY(ct_maxpool_backward(dev, &gm, g, m->idx[i], other));
        break;
      case CT_LAYER_RELU:
        if (fused_relu(&m->arch, i)) dx = NULL;   // the layer before applies the mask
        else CT_TRY(ct_relu_backward(dev, out_elems(L, batch), m->act[i + 1], g, other));
        break;
      case CT_LAYER_FLATTEN:
        dx = NULL;   // the gradient passes through unchanged
        break;
      case CT_LAYER_DROPOUT:
        if (m->fwd_train && L->p > 0.0f)
          CT_TRY(ct_dropout_backward(dev, out_elems(L, batch), L->p,
                                     ct_model_dropout_seed(m->fwd_seed, i),
                                     dropout_first(L, m->fwd_offset), g, other));
        else
          dx = NULL;   // identity
        break;
    }
    if (dx) tmp = g, g = other, other = tmp;
    if (m->mark_grads && L->w_count + L->b_count > 0) {
      if (m->grad_done[i]) clReleaseEvent(m->grad_done[i]);
      m->grad_done[i] = NULL;
      CL_CHECK(clEnqueueMarkerWithWaitList(dev->queue, 0, NULL, &m->grad_done[i]));
      CL_CHECK(clFlush(dev->queue));   // the layers' kernels start while the host goes on
    }
  }
  return CT_OK;
}
