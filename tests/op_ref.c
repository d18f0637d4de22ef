// op_ref.c: the ops' plain-C references (op_ref.h). One pair of functions per op kind and one
// line in the table at the end; no switch over kinds.
#include "op_ref.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/layers.h"

static size_t count_of(const ct_arch *a, int v) { return ct_shape_count(&a->values[v].shape); }
static const ct_shape *shape_of(const ct_arch *a, int v) { return &a->values[v].shape; }
static size_t off_of(const ct_arch *a, const ct_node *n, int k) {
  return a->tensors[n->param[k]].off;
}

// ---- dense: y = x w^T + b per row --------------------------------------------------------------

static void dense_dims(const ct_arch *a, const ct_node *n, int batch, size_t *rows, size_t *in,
                       size_t *out, int *bias) {
  const ct_tensor *w = &a->tensors[n->param[0]];
  *out = (size_t)w->shape[0], *in = (size_t)w->shape[1];
  *rows = (size_t)batch * count_of(a, n->out) / *out;
  *bias = n->n_param > 1;
}

static void dense_fwd(const ct_arch *a, const ct_node *n, const ct_ref_ctx *c,
                      const double *const *x, const double *p, double *y) {
  size_t rows, in, out;
  int bias;
  dense_dims(a, n, c->batch, &rows, &in, &out, &bias);
  const double *w = p + off_of(a, n, 0), *b = bias ? p + off_of(a, n, 1) : NULL;
  for (size_t r = 0; r < rows; r++)
    for (size_t o = 0; o < out; o++) {
      double s = b ? b[o] : 0;
      for (size_t i = 0; i < in; i++) s += w[o * in + i] * x[0][r * in + i];
      y[r * out + o] = s;
    }
}

static void dense_bwd(const ct_arch *a, const ct_node *n, const ct_ref_ctx *c,
                      const double *const *x, const double *p, const double *y, const double *dy,
                      double *const *dx, double *dp) {
  (void)y;
  size_t rows, in, out;
  int bias;
  dense_dims(a, n, c->batch, &rows, &in, &out, &bias);
  const double *w = p + off_of(a, n, 0);
  for (size_t r = 0; r < rows; r++)
    for (size_t o = 0; o < out; o++) {
      double g = dy[r * out + o];
      if (dp) {
        for (size_t i = 0; i < in; i++) dp[off_of(a, n, 0) + o * in + i] += g * x[0][r * in + i];
        if (bias) dp[off_of(a, n, 1) + o] += g;
      }
      if (dx[0])
        for (size_t i = 0; i < in; i++) dx[0][r * in + i] += g * w[o * in + i];
    }
}

// ---- conv2d and max pooling: windows over NCHW images ------------------------------------------

typedef struct {
  int c, h, w, oc, oh, ow, k, stride, pad;
} win;

static win conv_win(const ct_arch *a, const ct_node *n) {
  const ct_shape *i = shape_of(a, n->in[0]), *o = shape_of(a, n->out);
  win g = {i->d[0], i->d[1], i->d[2], o->d[0], o->d[1], o->d[2], 0, 1, -1};
  int k2, oc;
  const char *s = strchr(n->token, '/');
  if (sscanf(n->token, "conv%dx%d:%d", &g.k, &k2, &oc) != 3) g.k = 1;
  for (; s; s = strchr(s + 1, '/')) {
    if (s[1] == 's') g.stride = atoi(s + 2);
    if (s[1] == 'p') g.pad = atoi(s + 2);
  }
  if (g.pad < 0) g.pad = g.k / 2;
  return g;
}

static void conv_fwd(const ct_arch *a, const ct_node *n, const ct_ref_ctx *c,
                     const double *const *x, const double *p, double *y) {
  win g = conv_win(a, n);
  const double *w = p + off_of(a, n, 0), *b = p + off_of(a, n, 1);
  for (int s = 0; s < c->batch; s++)
    for (int o = 0; o < g.oc; o++)
      for (int oy = 0; oy < g.oh; oy++)
        for (int ox = 0; ox < g.ow; ox++) {
          double acc = b[o];
          for (int ci = 0; ci < g.c; ci++)
            for (int ki = 0; ki < g.k; ki++)
              for (int kj = 0; kj < g.k; kj++) {
                int yy = oy * g.stride - g.pad + ki, xx = ox * g.stride - g.pad + kj;
                if (yy < 0 || yy >= g.h || xx < 0 || xx >= g.w) continue;
                acc += w[(((size_t)o * g.c + ci) * g.k + ki) * g.k + kj] *
                       x[0][(((size_t)s * g.c + ci) * g.h + yy) * g.w + xx];
              }
          y[(((size_t)s * g.oc + o) * g.oh + oy) * g.ow + ox] = acc;
        }
}

static void conv_bwd(const ct_arch *a, const ct_node *n, const ct_ref_ctx *c,
                     const double *const *x, const double *p, const double *y, const double *dy,
                     double *const *dx, double *dp) {
  (void)y;
  win g = conv_win(a, n);
  const double *w = p + off_of(a, n, 0);
  size_t wo = off_of(a, n, 0), bo = off_of(a, n, 1);
  for (int s = 0; s < c->batch; s++)
    for (int o = 0; o < g.oc; o++)
      for (int oy = 0; oy < g.oh; oy++)
        for (int ox = 0; ox < g.ow; ox++) {
          double d = dy[(((size_t)s * g.oc + o) * g.oh + oy) * g.ow + ox];
          if (dp) dp[bo + o] += d;
          for (int ci = 0; ci < g.c; ci++)
            for (int ki = 0; ki < g.k; ki++)
              for (int kj = 0; kj < g.k; kj++) {
                int yy = oy * g.stride - g.pad + ki, xx = ox * g.stride - g.pad + kj;
                if (yy < 0 || yy >= g.h || xx < 0 || xx >= g.w) continue;
                size_t xi = (((size_t)s * g.c + ci) * g.h + yy) * g.w + xx;
                size_t wi = (((size_t)o * g.c + ci) * g.k + ki) * g.k + kj;
                if (dp) dp[wo + wi] += d * x[0][xi];
                if (dx[0]) dx[0][xi] += d * w[wi];
              }
        }
}

static win pool_win(const ct_arch *a, const ct_node *n) {
  const ct_shape *i = shape_of(a, n->in[0]), *o = shape_of(a, n->out);
  win g = {i->d[0], i->d[1], i->d[2], o->d[0], o->d[1], o->d[2], 1, 1, 0};
  if (sscanf(n->token, "maxpool%d", &g.k) != 1) g.k = 1;
  g.stride = g.k;
  return g;
}

// The window's argmax (first maximum in row-major order, as the kernel), or -1.
static long pool_arg(const win *g, const double *x, int s, int ch, int oy, int ox) {
  long best = -1;
  double m = -INFINITY;
  for (int ki = 0; ki < g->k; ki++)
    for (int kj = 0; kj < g->k; kj++) {
      int yy = oy * g->stride + ki, xx = ox * g->stride + kj;
      long at = (((long)s * g->c + ch) * g->h + yy) * g->w + xx;
      if (best < 0 || x[at] > m) m = x[at], best = at;
    }
  return best;
}

static void pool_fwd(const ct_arch *a, const ct_node *n, const ct_ref_ctx *c,
                     const double *const *x, const double *p, double *y) {
  (void)p;
  win g = pool_win(a, n);
  for (int s = 0; s < c->batch; s++)
    for (int ch = 0; ch < g.c; ch++)
      for (int oy = 0; oy < g.oh; oy++)
        for (int ox = 0; ox < g.ow; ox++)
          y[(((size_t)s * g.c + ch) * g.oh + oy) * g.ow + ox] =
              x[0][pool_arg(&g, x[0], s, ch, oy, ox)];
}

static void pool_bwd(const ct_arch *a, const ct_node *n, const ct_ref_ctx *c,
                     const double *const *x, const double *p, const double *y, const double *dy,
                     double *const *dx, double *dp) {
  (void)p, (void)y, (void)dp;
  win g = pool_win(a, n);
  if (!dx[0]) return;
  for (int s = 0; s < c->batch; s++)
    for (int ch = 0; ch < g.c; ch++)
      for (int oy = 0; oy < g.oh; oy++)
        for (int ox = 0; ox < g.ow; ox++)
          dx[0][pool_arg(&g, x[0], s, ch, oy, ox)] +=
              dy[(((size_t)s * g.c + ch) * g.oh + oy) * g.ow + ox];
}

// ---- element-wise ------------------------------------------------------------------------------

static void relu_fwd(const ct_arch *a, const ct_node *n, const ct_ref_ctx *c,
                     const double *const *x, const double *p, double *y) {
  (void)p;
  size_t m = (size_t)c->batch * count_of(a, n->out);
  for (size_t i = 0; i < m; i++) y[i] = x[0][i] > 0 ? x[0][i] : 0;
}

static void relu_bwd(const ct_arch *a, const ct_node *n, const ct_ref_ctx *c,
                     const double *const *x, const double *p, const double *y, const double *dy,
                     double *const *dx, double *dp) {
  (void)x, (void)p, (void)dp;
  size_t m = (size_t)c->batch * count_of(a, n->out);
  for (size_t i = 0; dx[0] && i < m; i++) dx[0][i] += y[i] > 0 ? dy[i] : 0;
}

static void copy_fwd(const ct_arch *a, const ct_node *n, const ct_ref_ctx *c,
                     const double *const *x, const double *p, double *y) {
  (void)p;
  memcpy(y, x[0], (size_t)c->batch * count_of(a, n->out) * sizeof *y);
}

static void copy_bwd(const ct_arch *a, const ct_node *n, const ct_ref_ctx *c,
                     const double *const *x, const double *p, const double *y, const double *dy,
                     double *const *dx, double *dp) {
  (void)x, (void)p, (void)y, (void)dp;
  size_t m = (size_t)c->batch * count_of(a, n->out);
  for (size_t i = 0; dx[0] && i < m; i++) dx[0][i] += dy[i];
}

static float drop_p(const ct_node *n) { return (float)atof(n->token + strlen("dropout:")); }

// The mask and scale of element i of the batch: 0, or the kept element's factor.
static double drop_factor(const ct_arch *a, const ct_node *n, const ct_ref_ctx *c, size_t i) {
  float p = drop_p(n);
  if (!c->train) return 1.0;
  size_t per = count_of(a, n->out);
  uint32_t idx = (uint32_t)((size_t)c->offset * per + i);
  return ct_dropout_keeps(c->seed, idx, p) ? (double)ct_dropout_scale(p) : 0.0;
}

static void drop_fwd(const ct_arch *a, const ct_node *n, const ct_ref_ctx *c,
                     const double *const *x, const double *p, double *y) {
  (void)p;
  size_t m = (size_t)c->batch * count_of(a, n->out);
  for (size_t i = 0; i < m; i++) y[i] = x[0][i] * drop_factor(a, n, c, i);
}

static void drop_bwd(const ct_arch *a, const ct_node *n, const ct_ref_ctx *c,
                     const double *const *x, const double *p, const double *y, const double *dy,
                     double *const *dx, double *dp) {
  (void)x, (void)p, (void)y, (void)dp;
  size_t m = (size_t)c->batch * count_of(a, n->out);
  for (size_t i = 0; dx[0] && i < m; i++) dx[0][i] += dy[i] * drop_factor(a, n, c, i);
}

// ---- the loss: softmax cross-entropy per row -------------------------------------------------

static void xent_dims(const ct_arch *a, const ct_node *n, int batch, size_t *rows,
                      size_t *classes) {
  const ct_shape *s = shape_of(a, n->in[0]);
  size_t per = s->nd == 2 ? (size_t)s->d[0] : 1;
  *rows = (size_t)batch * per;
  *classes = ct_shape_count(s) / per;
}

static void xent_fwd(const ct_arch *a, const ct_node *n, const ct_ref_ctx *c,
                     const double *const *x, const double *p, double *y) {
  (void)p;
  size_t rows, k;
  xent_dims(a, n, c->batch, &rows, &k);
  for (size_t r = 0; r < rows; r++) {
    const double *z = x[0] + r * k;
    double m = z[0], s = 0;
    for (size_t j = 1; j < k; j++) m = fmax(m, z[j]);
    for (size_t j = 0; j < k; j++) s += exp(z[j] - m);
    int lab = c->labels[r];
    y[r] = lab < 0 || (size_t)lab >= k ? NAN : log(s) + m - z[lab];
  }
}

static void xent_bwd(const ct_arch *a, const ct_node *n, const ct_ref_ctx *c,
                     const double *const *x, const double *p, const double *y, const double *dy,
                     double *const *dx, double *dp) {
  (void)p, (void)y, (void)dy, (void)dp;
  size_t rows, k;
  xent_dims(a, n, c->batch, &rows, &k);
  for (size_t r = 0; r < rows && dx[0]; r++) {
    const double *z = x[0] + r * k;
    int lab = c->labels[r];
    if (lab < 0 || (size_t)lab >= k) continue;
    double m = z[0], s = 0;
    for (size_t j = 1; j < k; j++) m = fmax(m, z[j]);
    for (size_t j = 0; j < k; j++) s += exp(z[j] - m);
    for (size_t j = 0; j < k; j++)
      dx[0][r * k + j] += c->loss_scale * (exp(z[j] - m) / s - (j == (size_t)lab ? 1.0 : 0.0));
  }
}

// ---- the language model's ops --------------------------------------------------------------

static void emb_dims(const ct_arch *a, const ct_node *n, int batch, size_t *N, size_t *T,
                     size_t *C) {
  *T = (size_t)shape_of(a, n->in[0])->d[0];
  *C = (size_t)shape_of(a, n->out)->d[1];
  *N = (size_t)batch * *T;
}

static void emb_fwd(const ct_arch *a, const ct_node *n, const ct_ref_ctx *c,
                    const double *const *x, const double *p, double *y) {
  size_t N, T, C;
  emb_dims(a, n, c->batch, &N, &T, &C);
  const double *wte = p + off_of(a, n, 0), *wpe = p + off_of(a, n, 1);
  for (size_t r = 0; r < N; r++) {
    size_t tok = (size_t)x[0][r];
    for (size_t ch = 0; ch < C; ch++) y[r * C + ch] = wte[tok * C + ch] + wpe[(r % T) * C + ch];
  }
}

static void emb_bwd(const ct_arch *a, const ct_node *n, const ct_ref_ctx *c,
                    const double *const *x, const double *p, const double *y, const double *dy,
                    double *const *dx, double *dp) {
  (void)p, (void)y, (void)dx;
  size_t N, T, C;
  emb_dims(a, n, c->batch, &N, &T, &C);
  if (!dp) return;
  size_t te = off_of(a, n, 0), pe = off_of(a, n, 1);
  for (size_t r = 0; r < N; r++) {
    size_t tok = (size_t)x[0][r];
    for (size_t ch = 0; ch < C; ch++) {
      dp[te + tok * C + ch] += dy[r * C + ch];
      dp[pe + (r % T) * C + ch] += dy[r * C + ch];
    }
  }
}

static void ln_dims(const ct_arch *a, const ct_node *n, int batch, size_t *rows, size_t *C) {
  const ct_shape *s = shape_of(a, n->in[0]);
  *C = (size_t)s->d[s->nd - 1];
  *rows = (size_t)batch * ct_shape_count(s) / *C;
}

static void ln_stats(const double *x, size_t C, double *mean, double *rstd) {
  double m = 0, v = 0;
  for (size_t i = 0; i < C; i++) m += x[i];
  m /= (double)C;
  for (size_t i = 0; i < C; i++) v += (x[i] - m) * (x[i] - m);
  *mean = m;
  *rstd = 1.0 / sqrt(v / (double)C + 1e-5);
}

static void ln_fwd(const ct_arch *a, const ct_node *n, const ct_ref_ctx *c,
                   const double *const *x, const double *p, double *y) {
  size_t rows, C;
  ln_dims(a, n, c->batch, &rows, &C);
  const double *w = p + off_of(a, n, 0), *b = p + off_of(a, n, 1);
  for (size_t r = 0; r < rows; r++) {
    double m, rs;
    ln_stats(x[0] + r * C, C, &m, &rs);
    for (size_t i = 0; i < C; i++) y[r * C + i] = (x[0][r * C + i] - m) * rs * w[i] + b[i];
  }
}

static void ln_bwd(const ct_arch *a, const ct_node *n, const ct_ref_ctx *c,
                   const double *const *x, const double *p, const double *y, const double *dy,
                   double *const *dx, double *dp) {
  (void)y;
  size_t rows, C;
  ln_dims(a, n, c->batch, &rows, &C);
  const double *w = p + off_of(a, n, 0);
  size_t wo = off_of(a, n, 0), bo = off_of(a, n, 1);
  for (size_t r = 0; r < rows; r++) {
    const double *xr = x[0] + r * C, *g = dy + r * C;
    double m, rs, s1 = 0, s2 = 0;
    ln_stats(xr, C, &m, &rs);
    for (size_t i = 0; i < C; i++) {
      double xh = (xr[i] - m) * rs, gw = g[i] * w[i];
      s1 += gw, s2 += gw * xh;
      if (dp) dp[wo + i] += g[i] * xh, dp[bo + i] += g[i];
    }
    s1 /= (double)C, s2 /= (double)C;
    for (size_t i = 0; dx[0] && i < C; i++) {
      double xh = (xr[i] - m) * rs;
      dx[0][r * C + i] += rs * (g[i] * w[i] - s1 - xh * s2);
    }
  }
}

typedef struct {
  size_t B, T, C, H, hd;
} attn_dims;

static attn_dims attn_of(const ct_arch *a, const ct_node *n, int batch) {
  const ct_shape *o = shape_of(a, n->out);
  attn_dims d = {(size_t)batch, (size_t)o->d[0], (size_t)o->d[1], 1, 1};
  d.H = (size_t)atoi(n->token + strlen("attention:"));
  d.hd = d.C / d.H;
  return d;
}

// The probabilities of (b, h): p[t*T + j], j <= t.
static void attn_probs(const attn_dims *d, const double *qkv, size_t b, size_t h, double *pr) {
  double scale = 1.0 / sqrt((double)d->hd);
  for (size_t t = 0; t < d->T; t++) {
    const double *q = qkv + ((b * d->T + t) * 3 * d->C) + h * d->hd;
    double m = -INFINITY, s = 0;
    for (size_t j = 0; j <= t; j++) {
      const double *k = qkv + ((b * d->T + j) * 3 * d->C) + d->C + h * d->hd;
      double dot = 0;
      for (size_t e = 0; e < d->hd; e++) dot += q[e] * k[e];
      pr[t * d->T + j] = dot * scale;
      m = fmax(m, pr[t * d->T + j]);
    }
    for (size_t j = 0; j <= t; j++) s += pr[t * d->T + j] = exp(pr[t * d->T + j] - m);
    for (size_t j = 0; j <= t; j++) pr[t * d->T + j] /= s;
  }
}

static void attn_fwd(const ct_arch *a, const ct_node *n, const ct_ref_ctx *c,
                     const double *const *x, const double *p, double *y) {
  (void)p;
  attn_dims d = attn_of(a, n, c->batch);
  double *pr = calloc(d.T * d.T, sizeof *pr);
  for (size_t b = 0; b < d.B; b++)
    for (size_t h = 0; h < d.H; h++) {
      attn_probs(&d, x[0], b, h, pr);
      for (size_t t = 0; t < d.T; t++)
        for (size_t e = 0; e < d.hd; e++) {
          double s = 0;
          for (size_t j = 0; j <= t; j++)
            s += pr[t * d.T + j] * x[0][(b * d.T + j) * 3 * d.C + 2 * d.C + h * d.hd + e];
          y[(b * d.T + t) * d.C + h * d.hd + e] = s;
        }
    }
  free(pr);
}

static void attn_bwd(const ct_arch *a, const ct_node *n, const ct_ref_ctx *c,
                     const double *const *x, const double *p, const double *y, const double *dy,
                     double *const *dx, double *dp) {
  (void)p, (void)y, (void)dp;
  if (!dx[0]) return;
  attn_dims d = attn_of(a, n, c->batch);
  double scale = 1.0 / sqrt((double)d.hd);
  double *pr = calloc(d.T * d.T, sizeof *pr), *dpr = calloc(d.T, sizeof *dpr);
  const double *qkv = x[0];
  for (size_t b = 0; b < d.B; b++)
    for (size_t h = 0; h < d.H; h++) {
      attn_probs(&d, qkv, b, h, pr);
      for (size_t t = 0; t < d.T; t++) {
        const double *g = dy + (b * d.T + t) * d.C + h * d.hd;
        double dot = 0;
        for (size_t j = 0; j <= t; j++) {   // dP[t, j] = dy_t . v_j;  dv_j += P[t, j] dy_t
          const double *v = qkv + (b * d.T + j) * 3 * d.C + 2 * d.C + h * d.hd;
          double *dv = dx[0] + (b * d.T + j) * 3 * d.C + 2 * d.C + h * d.hd;
          double s = 0;
          for (size_t e = 0; e < d.hd; e++) s += g[e] * v[e], dv[e] += pr[t * d.T + j] * g[e];
          dpr[j] = s;
          dot += pr[t * d.T + j] * s;
        }
        const double *q = qkv + (b * d.T + t) * 3 * d.C + h * d.hd;
        double *dq = dx[0] + (b * d.T + t) * 3 * d.C + h * d.hd;
        for (size_t j = 0; j <= t; j++) {   // dS = P (dP - sum P dP), through the scale
          double ds = pr[t * d.T + j] * (dpr[j] - dot) * scale;
          const double *k = qkv + (b * d.T + j) * 3 * d.C + d.C + h * d.hd;
          double *dk = dx[0] + (b * d.T + j) * 3 * d.C + d.C + h * d.hd;
          for (size_t e = 0; e < d.hd; e++) dq[e] += ds * k[e], dk[e] += ds * q[e];
        }
      }
    }
  free(pr), free(dpr);
}

static double gelu_u(double v) { return sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v); }

static void gelu_fwd(const ct_arch *a, const ct_node *n, const ct_ref_ctx *c,
                     const double *const *x, const double *p, double *y) {
  (void)p;
  size_t m = (size_t)c->batch * count_of(a, n->out);
  for (size_t i = 0; i < m; i++) y[i] = 0.5 * x[0][i] * (1 + tanh(gelu_u(x[0][i])));
}

static void gelu_bwd(const ct_arch *a, const ct_node *n, const ct_ref_ctx *c,
                     const double *const *x, const double *p, const double *y, const double *dy,
                     double *const *dx, double *dp) {
  (void)p, (void)y, (void)dp;
  size_t m = (size_t)c->batch * count_of(a, n->out);
  for (size_t i = 0; dx[0] && i < m; i++) {
    double v = x[0][i], th = tanh(gelu_u(v));
    double du = sqrt(2.0 / M_PI) * (1 + 3 * 0.044715 * v * v);
    dx[0][i] += dy[i] * (0.5 * (1 + th) + 0.5 * v * (1 - th * th) * du);
  }
}

static void add_fwd(const ct_arch *a, const ct_node *n, const ct_ref_ctx *c,
                    const double *const *x, const double *p, double *y) {
  (void)p;
  size_t m = (size_t)c->batch * count_of(a, n->out);
  for (size_t i = 0; i < m; i++) y[i] = x[0][i] + x[1][i];
}

static void add_bwd(const ct_arch *a, const ct_node *n, const ct_ref_ctx *c,
                    const double *const *x, const double *p, const double *y, const double *dy,
                    double *const *dx, double *dp) {
  (void)x, (void)p, (void)y, (void)dp;
  size_t m = (size_t)c->batch * count_of(a, n->out);
  for (int j = 0; j < 2; j++)
    for (size_t i = 0; dx[j] && i < m; i++) dx[j][i] += dy[i];
}

// ---- the table -------------------------------------------------------------------------------

static const ct_ref_op refs[] = {
    {"dense", dense_fwd, dense_bwd},
    {"conv2d", conv_fwd, conv_bwd},
    {"maxpool", pool_fwd, pool_bwd},
    {"relu", relu_fwd, relu_bwd},
    {"flatten", copy_fwd, copy_bwd},
    {"dropout", drop_fwd, drop_bwd},
    {"softmax_xent", xent_fwd, xent_bwd},
    {"embedding", emb_fwd, emb_bwd},
    {"layernorm", ln_fwd, ln_bwd},
    {"attention", attn_fwd, attn_bwd},
    {"gelu", gelu_fwd, gelu_bwd},
    {"add", add_fwd, add_bwd},
};

const ct_ref_op *ct_ref_find(const char *op) {
  for (size_t i = 0; i < sizeof refs / sizeof *refs; i++)
    if (!strcmp(refs[i].op, op)) return &refs[i];
  return NULL;
}
