// test_gpt_kernels.c: the GPT model's kernels (gpt_kernels.h) on every OpenCL device present:
// embedding, layernorm, attention (both implementations), the causal softmax, GELU and the
// residual add, forward and backward, against a plain-C reference in double precision.
//
// - The reference's own backward passes are checked against central finite differences of its
//   forward passes, in double (host only), so the device is compared with a checked gradient.
// - Awkward shapes: T not a multiple of anything, head sizes 1, 3, 9, 13, 16, 24, 41, one row
//   (N = 1), a vocabulary of 2 or 3 tokens and tokens that never occur; plus the default model's
//   size (B 12, T 64, C 128, H 4).
// - Every tensor sits at its own odd offset of a larger buffer whose other elements must stay
//   untouched. Backward passes run with accumulate 0 (the output held NaN before: it must be
//   overwritten, never read) and 1 (it held random values: they must be added to).
// - Determinism: a second backward pass gives the same bits.
// - Attention with all its tensors as slices of one buffer, as a planner may place them.
//
// Devices: every device but the simulator, each opened once. A small subset (one tiny shape per
// op) runs again on Oclgrind in a child process (this executable with --oclgrind-child), with
// its data-race check on; any invalid access or race it reports fails the test. Without
// Oclgrind that part is skipped (and says so); without any device the suite exits 77.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/gpt_kernels.h"
#include "testutil.h"

#define MAX_DEVICES 8
static ct_device g_devs[MAX_DEVICES];
static int g_ndev;
static ct_device *g_dev;   // the device the check functions run on
static int g_small;        // the Oclgrind child: tiny shapes only
static const float SENTINEL = 12345.0f;

// ---- buffers: a slice at an offset, SENTINEL around it --------------------------------------

typedef struct {
  cl_mem mem;
  size_t off, n, total;
  int ints;
} dbuf;

static ct_slice S(dbuf b) { return ct_slice_of(b.mem, b.off); }

static dbuf put_raw(const void *h, size_t n, size_t off, int ints) {
  dbuf b = {NULL, off, n, off + n + 3, ints};
  float *all = malloc(b.total * sizeof *all);
  for (size_t i = 0; i < b.total; i++) all[i] = SENTINEL;
  if (h) memcpy(all + off, h, n * 4);
  cl_int err;
  b.mem = clCreateBuffer(g_dev->ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, b.total * 4, all,
                         &err);
  ck_assert_msg(err == CL_SUCCESS, "clCreateBuffer: %s", ct_cl_errname(err));
  free(all);
  return b;
}
static dbuf put(const float *h, size_t n, size_t off) { return put_raw(h, n, off, 0); }
static dbuf put_int(const int *h, size_t n, size_t off) { return put_raw(h, n, off, 1); }
static dbuf put_value(size_t n, size_t off, float v) {
  float *h = malloc((n ? n : 1) * sizeof *h);
  for (size_t i = 0; i < n; i++) h[i] = v;
  dbuf b = put(h, n, off);
  free(h);
  return b;
}

// The slice's n floats (malloc'ed); fails when anything outside the slice changed.
static float *get(dbuf b, const char *what) {
  float *all = malloc(b.total * sizeof *all);
  ck_assert_int_eq(clEnqueueReadBuffer(g_dev->queue, b.mem, CL_TRUE, 0, b.total * 4, all, 0, NULL,
                                       NULL), CL_SUCCESS);
  for (size_t i = 0; i < b.total; i++)
    if (i < b.off || i >= b.off + b.n)
      ck_assert_msg(all[i] == SENTINEL, "%s on %s: element %zu outside the tensor was written "
                    "(%g)", what, g_dev->info.name, i, (double)all[i]);
  float *h = malloc((b.n ? b.n : 1) * sizeof *h);
  memcpy(h, all + b.off, b.n * sizeof *h);
  free(all);
  return h;
}

static void drop(dbuf b) { clReleaseMemObject(b.mem); }

static float *rand_f(size_t n, uint64_t seed, float lo, float hi) {
  float *x = malloc((n ? n : 1) * sizeof *x);
  ct_test_rand_fill(x, n, seed, lo, hi);
  return x;
}
static double *to_d(const float *x, size_t n) {
  double *d = malloc((n ? n : 1) * sizeof *d);
  for (size_t i = 0; i < n; i++) d[i] = x[i];
  return d;
}
static double *zeros(size_t n) { return calloc(n ? n : 1, sizeof(double)); }

// got vs the double reference: |got - want| <= rtol |want| + atol max(1, max |want|), with
// rtol 1e-4, atol 2e-5 (float sums of up to a few hundred terms).
static void expect_close(const float *got, const double *want, size_t n, const char *what) {
  double scale = 1.0;
  for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
  float *w = malloc((n ? n : 1) * sizeof *w);
  for (size_t i = 0; i < n; i++) w[i] = (float)want[i];
  char name[256];
  snprintf(name, sizeof name, "%s on %s", what, g_dev->info.name);
  int ok = ct_test_close(got, w, n, 1e-4f, (float)(2e-5 * scale), name);
  free(w);
  ck_assert_msg(ok, "%s differs from the reference", name);
}

// For accumulate 1: want + base (the values the output held before).
// NULL when n is 0 (accumulate 0: nothing to add).
static double *plus(const double *want, const float *base, size_t n) {
  if (n == 0) return NULL;
  double *s = malloc(n * sizeof *s);
  for (size_t i = 0; i < n; i++) s[i] = want[i] + base[i];
  return s;
}

static void expect_same_bits(const float *a, const float *b, size_t n, const char *what) {
  ck_assert_msg(memcmp(a, b, n * sizeof *a) == 0, "%s on %s: a second run gave other bits", what,
                g_dev->info.name);
}

// ---- the plain-C reference (double) ---------------------------------------------------------

static void ref_embedding_forward(int B, int T, int C, const int *tok, const double *wte,
                                  const double *wpe, double *out) {
  for (int r = 0; r < B * T; r++)
    for (int c = 0; c < C; c++)
      out[(size_t)r * C + c] = wte[(size_t)tok[r] * C + c] + wpe[(size_t)(r % T) * C + c];
}
static void ref_embedding_backward(int B, int T, int C, const int *tok, const double *dout,
                                   double *dwte, double *dwpe) {
  for (int r = 0; r < B * T; r++)
    for (int c = 0; c < C; c++) {
      dwte[(size_t)tok[r] * C + c] += dout[(size_t)r * C + c];
      dwpe[(size_t)(r % T) * C + c] += dout[(size_t)r * C + c];
    }
}

static void ref_layernorm_forward(int N, int C, const double *x, const double *w, const double *b,
                                  double *y, double *mean, double *rstd) {
  for (int r = 0; r < N; r++) {
    const double *xr = x + (size_t)r * C;
    double m = 0, v = 0;
    for (int c = 0; c < C; c++) m += xr[c];
    m /= C;
    for (int c = 0; c < C; c++) v += (xr[c] - m) * (xr[c] - m);
    v /= C;
    double s = 1.0 / sqrt(v + 1e-5);
    for (int c = 0; c < C; c++) y[(size_t)r * C + c] = (xr[c] - m) * s * w[c] + b[c];
    if (mean) mean[r] = m;
    if (rstd) rstd[r] = s;
  }
}
static void ref_layernorm_backward(int N, int C, const double *x, const double *w,
                                   const double *dy, double *dx, double *dw, double *db) {
  double *y = zeros((size_t)N * C), *mean = zeros(N), *rstd = zeros(N), *b0 = zeros(C);
  ref_layernorm_forward(N, C, x, w, b0, y, mean, rstd);
  for (int r = 0; r < N; r++) {
    const double *xr = x + (size_t)r * C, *g = dy + (size_t)r * C;
    double sg = 0, sgx = 0;
    for (int c = 0; c < C; c++) {
      double xh = (xr[c] - mean[r]) * rstd[r];
      sg += w[c] * g[c];
      sgx += w[c] * g[c] * xh;
      dw[c] += g[c] * xh;
      db[c] += g[c];
    }
    for (int c = 0; c < C; c++) {
      double xh = (xr[c] - mean[r]) * rstd[r];
      dx[(size_t)r * C + c] = rstd[r] * (w[c] * g[c] - sg / C - xh * sgx / C);
    }
  }
  free(y), free(mean), free(rstd), free(b0);
}

// qkv (B*T, 3C) -> att (B, H, T, T), y (B*T, C)
static void ref_attention_forward(const ct_attn_dims *d, const double *qkv, double *att,
                                  double *y) {
  int B = d->batch, T = d->seq, C = d->channels, H = d->heads, hd = C / H, C3 = 3 * C;
  double scale = 1.0 / sqrt((double)hd);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++)
      for (int t = 0; t < T; t++) {
        double *a = att + (((size_t)b * H + h) * T + t) * T, mx = -INFINITY, sum = 0;
        const double *q = qkv + ((size_t)b * T + t) * C3 + h * hd;
        for (int j = 0; j < T; j++) {
          a[j] = 0;
          if (j > t) continue;
          const double *k = qkv + ((size_t)b * T + j) * C3 + C + h * hd;
          for (int e = 0; e < hd; e++) a[j] += q[e] * k[e];
          a[j] *= scale;
          mx = fmax(mx, a[j]);
        }
        for (int j = 0; j <= t; j++) sum += (a[j] = exp(a[j] - mx));
        for (int j = 0; j <= t; j++) a[j] /= sum;
        for (int e = 0; e < hd; e++) {
          double s = 0;
          for (int j = 0; j <= t; j++)
            s += a[j] * qkv[((size_t)b * T + j) * C3 + 2 * C + h * hd + e];
          y[((size_t)b * T + t) * C + h * hd + e] = s;
        }
      }
}
static void ref_attention_backward(const ct_attn_dims *d, const double *qkv, const double *dy,
                                   double *dqkv) {
  int B = d->batch, T = d->seq, C = d->channels, H = d->heads, hd = C / H, C3 = 3 * C;
  double scale = 1.0 / sqrt((double)hd);
  size_t natt = (size_t)B * H * T * T;
  double *att = zeros(natt), *y = zeros((size_t)B * T * C), *ds = zeros((size_t)T);
  ref_attention_forward(d, qkv, att, y);
#define QKV(b, t, part, h, e) (((size_t)(b) * T + (t)) * C3 + (part) * C + (h) * hd + (e))
  for (int b = 0; b < B; b++)
    for (int h = 0; h < H; h++)
      for (int t = 0; t < T; t++) {
        const double *p = att + (((size_t)b * H + h) * T + t) * T;
        const double *g = dy + ((size_t)b * T + t) * C + h * hd;
        double sum = 0;
        for (int j = 0; j <= t; j++) {
          double dp = 0;
          for (int e = 0; e < hd; e++) {
            dp += g[e] * qkv[QKV(b, j, 2, h, e)];
            dqkv[QKV(b, j, 2, h, e)] += p[j] * g[e];   // dv
          }
          ds[j] = dp;
          sum += p[j] * dp;
        }
        for (int j = 0; j <= t; j++) {
          double s = scale * p[j] * (ds[j] - sum);
          for (int e = 0; e < hd; e++) {
            dqkv[QKV(b, t, 0, h, e)] += s * qkv[QKV(b, j, 1, h, e)];   // dq
            dqkv[QKV(b, j, 1, h, e)] += s * qkv[QKV(b, t, 0, h, e)];   // dk
          }
        }
      }
#undef QKV
  free(att), free(y), free(ds);
}

// s (mats, T, T) scores times alpha -> p; backward: dx = alpha p (g - sum p g)
static void ref_softmax_forward(int mats, int T, double alpha, const double *x, double *p) {
  for (int m = 0; m < mats; m++)
    for (int t = 0; t < T; t++) {
      const double *xr = x + ((size_t)m * T + t) * T;
      double *pr = p + ((size_t)m * T + t) * T, mx = -INFINITY, sum = 0;
      for (int j = 0; j <= t; j++) mx = fmax(mx, alpha * xr[j]);
      for (int j = 0; j < T; j++) pr[j] = j <= t ? exp(alpha * xr[j] - mx) : 0;
      for (int j = 0; j <= t; j++) sum += pr[j];
      for (int j = 0; j <= t; j++) pr[j] /= sum;
    }
}
static void ref_softmax_backward(int mats, int T, double alpha, const double *x, const double *g,
                                 double *dx) {
  size_t n = (size_t)mats * T * T;
  double *p = zeros(n);
  ref_softmax_forward(mats, T, alpha, x, p);
  for (size_t r = 0; r < (size_t)mats * T; r++) {
    double s = 0;
    for (int j = 0; j < T; j++) s += p[r * T + j] * g[r * T + j];
    for (int j = 0; j < T; j++) dx[r * T + j] = alpha * p[r * T + j] * (g[r * T + j] - s);
  }
  free(p);
}

static double ref_gelu(double x) {
  return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}
static double ref_gelu_grad(double x) {
  double u = sqrt(2 / M_PI) * (x + 0.044715 * x * x * x), th = tanh(u);
  return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * sqrt(2 / M_PI) * (1 + 3 * 0.044715 * x * x);
}

// ---- the reference's backward passes against finite differences ---------------------------
// loss = sum(out * g) for a random g; its gradient by central differences (step 1e-5) in each
// input element, against the reference backward: |fd - grad| <= 1e-6 max(1, max |grad|).

typedef struct {
  int op;                  // 0 embedding, 1 layernorm, 2 attention, 3 softmax, 4 gelu, 5 residual
  int B, T, C, V, H;
  const int *tok;
  double *in[3];           // the inputs the loss depends on
  const double *g;
  size_t nout;
  double alpha;
} fd_case;

static double fd_loss(const fd_case *f) {
  double *out = zeros(f->nout), l = 0;
  ct_attn_dims d = {f->B, f->T, f->C, f->H};
  double *tmp = NULL;
  switch (f->op) {
    case 0: ref_embedding_forward(f->B, f->T, f->C, f->tok, f->in[0], f->in[1], out); break;
    case 1: ref_layernorm_forward(f->B, f->C, f->in[0], f->in[1], f->in[2], out, NULL, NULL); break;
    case 2:
      tmp = zeros((size_t)f->B * f->H * f->T * f->T);
      ref_attention_forward(&d, f->in[0], tmp, out);
      break;
    case 3: ref_softmax_forward(f->B, f->T, f->alpha, f->in[0], out); break;
    case 4: for (size_t i = 0; i < f->nout; i++) out[i] = ref_gelu(f->in[0][i]); break;
    default: for (size_t i = 0; i < f->nout; i++) out[i] = f->in[0][i] + f->in[1][i]; break;
  }
  for (size_t i = 0; i < f->nout; i++) l += out[i] * f->g[i];
  free(out), free(tmp);
  return l;
}

static void fd_expect(fd_case *f, int which, size_t n, const double *grad, const char *what) {
  double scale = 1.0, h = 1e-5;
  for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(grad[i]));
  double *x = f->in[which];
  for (size_t i = 0; i < n; i++) {
    double keep = x[i];
    x[i] = keep + h;
    double lp = fd_loss(f);
    x[i] = keep - h;
    double lm = fd_loss(f);
    x[i] = keep;
    double fd = (lp - lm) / (2 * h);
    ck_assert_msg(fabs(fd - grad[i]) <= 1e-6 * scale, "%s: element %zu: finite difference %.9g, "
                  "reference backward %.9g", what, i, fd, grad[i]);
  }
}

static double *rand_d(size_t n, uint64_t seed, double lo, double hi) {
  float *f = rand_f(n, seed, (float)lo, (float)hi);
  double *d = to_d(f, n);
  free(f);
  return d;
}

START_TEST(reference_backward_matches_finite_differences) {
  // embedding: B 2, T 3, C 4, V 3 (a token occurs twice, one never)
  {
    int B = 2, T = 3, C = 4, V = 3, tok[6] = {0, 2, 0, 0, 2, 0};
    double *wte = rand_d((size_t)V * C, 1, -1, 1), *wpe = rand_d((size_t)T * C, 2, -1, 1);
    double *g = rand_d((size_t)B * T * C, 3, -1, 1);
    double *dwte = zeros((size_t)V * C), *dwpe = zeros((size_t)T * C);
    ref_embedding_backward(B, T, C, tok, g, dwte, dwpe);
    fd_case f = {0, B, T, C, V, 1, tok, {wte, wpe, NULL}, g, (size_t)B * T * C, 0};
    fd_expect(&f, 0, (size_t)V * C, dwte, "embedding dwte");
    fd_expect(&f, 1, (size_t)T * C, dwpe, "embedding dwpe");
    free(wte), free(wpe), free(g), free(dwte), free(dwpe);
  }
  // layernorm: N 3, C 5
  {
    int N = 3, C = 5;
    double *x = rand_d((size_t)N * C, 4, -2, 2), *w = rand_d(C, 5, 0.5, 1.5);
    double *b = rand_d(C, 6, -1, 1), *g = rand_d((size_t)N * C, 7, -1, 1);
    double *dx = zeros((size_t)N * C), *dw = zeros(C), *db = zeros(C);
    ref_layernorm_backward(N, C, x, w, g, dx, dw, db);
    fd_case f = {1, N, 1, C, 0, 1, NULL, {x, w, b}, g, (size_t)N * C, 0};
    fd_expect(&f, 0, (size_t)N * C, dx, "layernorm dx");
    fd_expect(&f, 1, (size_t)C, dw, "layernorm dw");
    fd_expect(&f, 2, (size_t)C, db, "layernorm db");
    free(x), free(w), free(b), free(g), free(dx), free(dw), free(db);
  }
  // attention: B 2, T 5, C 6, H 2 (hd 3)
  {
    ct_attn_dims d = {2, 5, 6, 2};
    size_t n = (size_t)d.batch * d.seq;
    double *qkv = rand_d(n * 3 * d.channels, 8, -1.5, 1.5), *g = rand_d(n * d.channels, 9, -1, 1);
    double *dqkv = zeros(n * 3 * d.channels);
    ref_attention_backward(&d, qkv, g, dqkv);
    fd_case f = {2, d.batch, d.seq, d.channels, 0, d.heads, NULL, {qkv, NULL, NULL}, g,
                 n * d.channels, 0};
    fd_expect(&f, 0, n * 3 * d.channels, dqkv, "attention dqkv");
    free(qkv), free(g), free(dqkv);
  }
  // causal softmax: 2 matrices of 4 x 4, alpha 0.7
  {
    int mats = 2, T = 4;
    size_t n = (size_t)mats * T * T;
    double *x = rand_d(n, 10, -2, 2), *g = rand_d(n, 11, -1, 1), *dx = zeros(n);
    ref_softmax_backward(mats, T, 0.7, x, g, dx);
    fd_case f = {3, mats, T, 0, 0, 1, NULL, {x, NULL, NULL}, g, n, 0.7};
    fd_expect(&f, 0, n, dx, "causal softmax");
    free(x), free(g), free(dx);
  }
  // GELU and residual: 41 elements over [-6, 6]
  {
    size_t n = 41;
    double *x = rand_d(n, 12, -6, 6), *y = rand_d(n, 13, -1, 1), *g = rand_d(n, 14, -1, 1);
    double *dx = zeros(n), *dres = zeros(n);
    for (size_t i = 0; i < n; i++) dx[i] = g[i] * ref_gelu_grad(x[i]), dres[i] = g[i];
    fd_case f = {4, 0, 0, 0, 0, 1, NULL, {x, NULL, NULL}, g, n, 0};
    fd_expect(&f, 0, n, dx, "gelu");
    fd_case r = {5, 0, 0, 0, 0, 1, NULL, {x, y, NULL}, g, n, 0};
    fd_expect(&r, 0, n, dres, "residual da");
    fd_expect(&r, 1, n, dres, "residual db");
    free(x), free(y), free(g), free(dx), free(dres);
  }
}
END_TEST

// ---- device checks --------------------------------------------------------------------------

static void check_embedding(int B, int T, int C, int V) {
  char what[128];
  snprintf(what, sizeof what, "embedding B %d T %d C %d V %d", B, T, C, V);
  size_t n = (size_t)B * T, nw = (size_t)V * C, np = (size_t)T * C, no = n * C;
  int *tok = malloc(n * sizeof *tok);
  uint64_t s = 40 + (uint64_t)V;
  // tokens in [0, V-1) when V > 2: token V-1 never occurs (its gradient: 0 or kept)
  for (size_t i = 0; i < n; i++)
    tok[i] = (int)(ct_test_rand_u64(&s) % (uint64_t)(V > 2 ? V - 1 : V));
  float *wte = rand_f(nw, 41, -1, 1), *wpe = rand_f(np, 42, -1, 1), *g = rand_f(no, 43, -1, 1);
  double *wte_d = to_d(wte, nw), *wpe_d = to_d(wpe, np), *g_d = to_d(g, no);
  double *out_ref = zeros(no), *dwte_ref = zeros(nw), *dwpe_ref = zeros(np);
  ref_embedding_forward(B, T, C, tok, wte_d, wpe_d, out_ref);
  ref_embedding_backward(B, T, C, tok, g_d, dwte_ref, dwpe_ref);

  size_t nidx = ct_embedding_index_len((int)n, V);
  int *index = malloc(nidx * sizeof *index);
  ck_assert_ct(ct_embedding_index(tok, (int)n, V, index));
  dbuf dtok = put_int(tok, n, 5), dwte = put(wte, nw, 3), dwpe = put(wpe, np, 7);
  dbuf dout = put_value(no, 1, NAN), didx = put_int(index, nidx, 2), dg = put(g, no, 9);
  ck_assert_ct(ct_embedding_forward(g_dev, B, T, C, V, S(dtok), S(dwte), S(dwpe), S(dout)));
  float *out = get(dout, what);
  expect_close(out, out_ref, no, what);

  for (int acc = 0; acc < 2; acc++) {
    float *base_w = rand_f(nw, 44, -1, 1), *base_p = rand_f(np, 45, -1, 1);
    dbuf gw = acc ? put(base_w, nw, 4) : put_value(nw, 4, NAN);
    dbuf gp = acc ? put(base_p, np, 6) : put_value(np, 6, NAN);
    ck_assert_ct(ct_embedding_backward(g_dev, B, T, C, V, S(didx), S(dg), S(gw), acc, S(gp), acc));
    float *dw = get(gw, what), *dp = get(gp, what);
    double *want_w = plus(dwte_ref, base_w, acc ? nw : 0);
    double *want_p = plus(dwpe_ref, base_p, acc ? np : 0);
    char name[160];
    snprintf(name, sizeof name, "%s dwte acc %d", what, acc);
    expect_close(dw, acc ? want_w : dwte_ref, nw, name);
    snprintf(name, sizeof name, "%s dwpe acc %d", what, acc);
    expect_close(dp, acc ? want_p : dwpe_ref, np, name);
    if (!acc) {   // again: the same bits; only dwte this time (dwpe skipped: NULL)
      dbuf gw2 = put_value(nw, 4, NAN);
      ck_assert_ct(ct_embedding_backward(g_dev, B, T, C, V, S(didx), S(dg), S(gw2), 0,
                                         ct_slice_of(NULL, 0), 0));
      float *dw2 = get(gw2, what);
      expect_same_bits(dw, dw2, nw, "embedding dwte");
      free(dw2);
      drop(gw2);
    }
    free(base_w), free(base_p), free(dw), free(dp), free(want_w), free(want_p);
    drop(gw), drop(gp);
  }
  // a token outside [0, V): its row is NaN, the others right, nothing read out of bounds
  if (n >= 2) {
    int keep0 = tok[0], keep1 = tok[n - 1];
    tok[0] = -1, tok[n - 1] = V;
    dbuf bad = put_int(tok, n, 5);
    ck_assert_ct(ct_embedding_forward(g_dev, B, T, C, V, S(bad), S(dwte), S(dwpe), S(dout)));
    float *o = get(dout, what);
    for (int c = 0; c < C; c++) {
      ck_assert_msg(isnan(o[c]) && isnan(o[(n - 1) * C + c]), "%s: a bad token's row is not NaN",
                    what);
    }
    expect_close(o + C, out_ref + C, (n - 2) * C, what);
    free(o);
    drop(bad);
    tok[0] = keep0, tok[n - 1] = keep1;
  }
  drop(dtok), drop(dwte), drop(dwpe), drop(dout), drop(didx), drop(dg);
  free(tok), free(wte), free(wpe), free(g), free(wte_d), free(wpe_d), free(g_d), free(out);
  free(out_ref), free(dwte_ref), free(dwpe_ref), free(index);
}

static void check_layernorm(int N, int C) {
  char what[128];
  snprintf(what, sizeof what, "layernorm N %d C %d", N, C);
  size_t nx = (size_t)N * C;
  float *x = rand_f(nx, 50 + C, -2, 3), *w = rand_f(C, 51, 0.5f, 1.5f), *b = rand_f(C, 52, -1, 1);
  float *g = rand_f(nx, 53, -1, 1);
  double *xd = to_d(x, nx), *wd = to_d(w, C), *bd = to_d(b, C), *gd = to_d(g, nx);
  double *y_ref = zeros(nx), *mean_ref = zeros(N), *rstd_ref = zeros(N);
  double *dx_ref = zeros(nx), *dw_ref = zeros(C), *db_ref = zeros(C);
  ref_layernorm_forward(N, C, xd, wd, bd, y_ref, mean_ref, rstd_ref);
  ref_layernorm_backward(N, C, xd, wd, gd, dx_ref, dw_ref, db_ref);
  dbuf dx_in = put(x, nx, 3), dw_in = put(w, C, 5), db_in = put(b, C, 2), dg = put(g, nx, 4);
  dbuf dy = put_value(nx, 1, NAN), dmean = put_value(N, 6, NAN), drstd = put_value(N, 2, NAN);
  ck_assert_ct(ct_layernorm_forward(g_dev, N, C, S(dx_in), S(dw_in), S(db_in), S(dy), S(dmean),
                                    S(drstd)));
  float *y = get(dy, what), *mean = get(dmean, what), *rstd = get(drstd, what);
  expect_close(y, y_ref, nx, what);
  expect_close(mean, mean_ref, N, "layernorm mean");
  expect_close(rstd, rstd_ref, N, "layernorm rstd");
  for (int acc = 0; acc < 2; acc++) {
    float *base = rand_f(nx, 54, -1, 1);
    dbuf gx = acc ? put(base, nx, 7) : put_value(nx, 7, NAN);
    dbuf gw = put_value(C, 1, NAN), gb = put_value(C, 8, NAN);
    ck_assert_ct(ct_layernorm_backward(g_dev, N, C, S(dx_in), S(dw_in), S(dmean), S(drstd), S(dg),
                                       S(gx), acc, S(gw), S(gb)));
    float *dx = get(gx, what), *dw = get(gw, what), *db = get(gb, what);
    double *want = plus(dx_ref, base, acc ? nx : 0);
    char name[160];
    snprintf(name, sizeof name, "%s dx acc %d", what, acc);
    expect_close(dx, acc ? want : dx_ref, nx, name);
    expect_close(dw, dw_ref, C, "layernorm dw");
    expect_close(db, db_ref, C, "layernorm db");
    if (!acc) {   // again, without dx: the same bits for dw, db
      dbuf gw2 = put_value(C, 1, NAN), gb2 = put_value(C, 8, NAN);
      ck_assert_ct(ct_layernorm_backward(g_dev, N, C, S(dx_in), S(dw_in), S(dmean), S(drstd),
                                         S(dg), ct_slice_of(NULL, 0), 0, S(gw2), S(gb2)));
      float *dw2 = get(gw2, what), *db2 = get(gb2, what);
      expect_same_bits(dw, dw2, C, "layernorm dw");
      expect_same_bits(db, db2, C, "layernorm db");
      free(dw2), free(db2);
      drop(gw2), drop(gb2);
    }
    free(base), free(dx), free(dw), free(db), free(want);
    drop(gx), drop(gw), drop(gb);
  }
  drop(dx_in), drop(dw_in), drop(db_in), drop(dg), drop(dy), drop(dmean), drop(drstd);
  free(x), free(w), free(b), free(g), free(xd), free(wd), free(bd), free(gd), free(y), free(mean);
  free(rstd), free(y_ref), free(mean_ref), free(rstd_ref), free(dx_ref), free(dw_ref), free(db_ref);
}

static void check_attention(int B, int T, int C, int H, ct_attn_impl impl) {
  char what[128];
  snprintf(what, sizeof what, "attention (%s) B %d T %d C %d H %d", ct_attn_impl_name(impl), B,
           T, C, H);
  ct_attn_dims d = {B, T, C, H};
  size_t n = (size_t)B * T, nqkv = n * 3 * C, ny = n * C, natt = (size_t)B * H * T * T;
  float *qkv = rand_f(nqkv, 60 + T, -1.5f, 1.5f), *g = rand_f(ny, 61, -1, 1);
  double *qkv_d = to_d(qkv, nqkv), *g_d = to_d(g, ny);
  double *att_ref = zeros(natt), *y_ref = zeros(ny), *dqkv_ref = zeros(nqkv);
  ref_attention_forward(&d, qkv_d, att_ref, y_ref);
  ref_attention_backward(&d, qkv_d, g_d, dqkv_ref);
  dbuf dqkv_in = put(qkv, nqkv, 3), dg = put(g, ny, 5);
  dbuf datt = put_value(natt, 2, NAN), dy = put_value(ny, 4, NAN);
  dbuf scratch = put_value(natt, 1, NAN);
  ck_assert_ct(ct_attention_forward(g_dev, &d, impl, S(dqkv_in), S(datt), S(dy)));
  float *att = get(datt, what), *y = get(dy, what);
  expect_close(att, att_ref, natt, "attention att");
  expect_close(y, y_ref, ny, what);
  for (int acc = 0; acc < 2; acc++) {
    float *base = rand_f(nqkv, 62, -1, 1);
    dbuf gq = acc ? put(base, nqkv, 6) : put_value(nqkv, 6, NAN);
    ck_assert_ct(ct_attention_backward(g_dev, &d, impl, S(dqkv_in), S(datt), S(dg), S(scratch),
                                       S(gq), acc));
    float *dq = get(gq, what);
    double *want = plus(dqkv_ref, base, acc ? nqkv : 0);
    char name[160];
    snprintf(name, sizeof name, "%s dqkv acc %d", what, acc);
    expect_close(dq, acc ? want : dqkv_ref, nqkv, name);
    if (!acc) {
      dbuf gq2 = put_value(nqkv, 6, NAN);
      ck_assert_ct(ct_attention_backward(g_dev, &d, impl, S(dqkv_in), S(datt), S(dg), S(scratch),
                                         S(gq2), 0));
      float *dq2 = get(gq2, what);
      expect_same_bits(dq, dq2, nqkv, what);
      free(dq2);
      drop(gq2);
    }
    free(base), free(dq), free(want);
    drop(gq);
  }
  float *sc = get(scratch, what);   // only the sentinels around the scratch matter
  free(sc);
  drop(dqkv_in), drop(dg), drop(datt), drop(dy), drop(scratch);
  free(qkv), free(g), free(qkv_d), free(g_d), free(att), free(y), free(att_ref), free(y_ref);
  free(dqkv_ref);
}

// A planner may place every activation in one buffer: attention's qkv, att, y, dy, datt and dqkv
// as slices of a single buffer (odd offsets, gaps of SENTINEL between them), both
// implementations; the results match the reference and the gaps stay untouched.
static void check_attention_one_buffer(ct_attn_impl impl) {
  ct_attn_dims d = {2, 7, 26, 2};
  size_t n = (size_t)d.batch * d.seq, nqkv = n * 3 * d.channels, ny = n * d.channels;
  size_t natt = (size_t)d.batch * d.heads * d.seq * d.seq;
  size_t o_qkv = 3, o_att = o_qkv + nqkv + 5, o_y = o_att + natt + 1, o_dy = o_y + ny + 2;
  size_t o_datt = o_dy + ny + 7, o_dqkv = o_datt + natt + 3, total = o_dqkv + nqkv;
  float *qkv = rand_f(nqkv, 64, -1.5f, 1.5f), *g = rand_f(ny, 65, -1, 1);
  float *h = malloc(total * sizeof *h);
  for (size_t i = 0; i < total; i++) h[i] = SENTINEL;
  memcpy(h + o_qkv, qkv, nqkv * sizeof *h);
  memcpy(h + o_dy, g, ny * sizeof *h);
  dbuf all = put(h, total, 0);   // the sentinels inside are the gaps; 3 more after
  ck_assert_ct(ct_attention_forward(g_dev, &d, impl, ct_slice_of(all.mem, o_qkv),
                                    ct_slice_of(all.mem, o_att), ct_slice_of(all.mem, o_y)));
  ck_assert_ct(ct_attention_backward(g_dev, &d, impl, ct_slice_of(all.mem, o_qkv),
                                     ct_slice_of(all.mem, o_att), ct_slice_of(all.mem, o_dy),
                                     ct_slice_of(all.mem, o_datt), ct_slice_of(all.mem, o_dqkv),
                                     0));
  float *got = get(all, "attention in one buffer");
  double *qkv_d = to_d(qkv, nqkv), *g_d = to_d(g, ny);
  double *att_ref = zeros(natt), *y_ref = zeros(ny), *dqkv_ref = zeros(nqkv);
  ref_attention_forward(&d, qkv_d, att_ref, y_ref);
  ref_attention_backward(&d, qkv_d, g_d, dqkv_ref);
  expect_close(got + o_y, y_ref, ny, "attention in one buffer: y");
  expect_close(got + o_att, att_ref, natt, "attention in one buffer: att");
  expect_close(got + o_dqkv, dqkv_ref, nqkv, "attention in one buffer: dqkv");
  const size_t gaps[][2] = {{0, o_qkv}, {o_qkv + nqkv, o_att}, {o_att + natt, o_y},
                            {o_y + ny, o_dy}, {o_dy + ny, o_datt}, {o_datt + natt, o_dqkv}};
  for (int k = 0; k < 6; k++)
    for (size_t i = gaps[k][0]; i < gaps[k][1]; i++)
      ck_assert_msg(got[i] == SENTINEL, "attention (%s) in one buffer on %s: gap element %zu "
                    "written", ct_attn_impl_name(impl), g_dev->info.name, i);
  for (size_t i = 0; i < nqkv; i++) ck_assert(got[o_qkv + i] == qkv[i]);   // inputs untouched
  for (size_t i = 0; i < ny; i++) ck_assert(got[o_dy + i] == g[i]);
  drop(all);
  free(qkv), free(g), free(h), free(got), free(qkv_d), free(g_d), free(att_ref), free(y_ref);
  free(dqkv_ref);
}

static void check_causal_softmax(int mats, int T) {
  char what[96];
  snprintf(what, sizeof what, "causal softmax %d x %d x %d", mats, T, T);
  size_t n = (size_t)mats * T * T;
  const double alpha = 0.7;
  // scores as the attention's GEMM gives them: alpha times x (the above-diagonal ones junk)
  float *x = rand_f(n, 70 + T, -3, 3), *g = rand_f(n, 71, -1, 1), *s = malloc(n * sizeof *s);
  for (size_t i = 0; i < n; i++) s[i] = (float)(alpha * x[i]);
  double *xd = to_d(x, n), *gd = to_d(g, n), *p_ref = zeros(n), *dx_ref = zeros(n);
  // the reference from the float scores the device sees (alpha 1 on s), its gradient w.r.t. x
  double *sd = to_d(s, n);
  ref_softmax_forward(mats, T, 1.0, sd, p_ref);
  ref_softmax_backward(mats, T, alpha, xd, gd, dx_ref);
  dbuf ds = put(s, n, 3), dg = put(g, n, 5);
  ck_assert_ct(ct_causal_softmax_forward(g_dev, mats, T, S(ds)));
  float *p = get(ds, what);
  expect_close(p, p_ref, n, what);
  ck_assert_ct(ct_causal_softmax_backward(g_dev, mats, T, (float)alpha, S(ds), S(dg)));
  float *dx = get(dg, what);
  expect_close(dx, dx_ref, n, "causal softmax backward");
  drop(ds), drop(dg);
  free(x), free(g), free(s), free(xd), free(gd), free(p_ref), free(dx_ref), free(sd), free(p);
  free(dx);
}

static void check_gelu(size_t n) {
  char what[64];
  snprintf(what, sizeof what, "gelu n %zu", n);
  float *x = rand_f(n, 80 + n, -6, 6), *g = rand_f(n, 81, -1, 1);
  const float extremes[] = {-100, -30, 30, 100, 0};   // exp overflowing, saturation, 0
  for (size_t i = 0; n > 10 && i < 5; i++) x[5 + i] = extremes[i];
  double *y_ref = zeros(n), *dx_ref = zeros(n);
  for (size_t i = 0; i < n; i++) y_ref[i] = ref_gelu(x[i]), dx_ref[i] = g[i] * ref_gelu_grad(x[i]);
  dbuf dxin = put(x, n, 3), dg = put(g, n, 2), dy = put_value(n, 5, NAN);
  ck_assert_ct(ct_gelu_forward(g_dev, n, S(dxin), S(dy)));
  float *y = get(dy, what);
  expect_close(y, y_ref, n, what);
  for (int acc = 0; acc < 2; acc++) {
    float *base = rand_f(n, 82, -1, 1);
    dbuf gx = acc ? put(base, n, 4) : put_value(n, 4, NAN);
    ck_assert_ct(ct_gelu_backward(g_dev, n, S(dxin), S(dg), S(gx), acc));
    float *dx = get(gx, what);
    double *want = plus(dx_ref, base, acc ? n : 0);
    expect_close(dx, acc ? want : dx_ref, n, acc ? "gelu backward acc 1" : "gelu backward acc 0");
    free(base), free(dx), free(want);
    drop(gx);
  }
  // in place: y = gelu(x) into x's own slice, dx into dy's
  ck_assert_ct(ct_gelu_backward(g_dev, n, S(dxin), S(dg), S(dg), 0));
  ck_assert_ct(ct_gelu_forward(g_dev, n, S(dxin), S(dxin)));
  float *y2 = get(dxin, what), *dx2 = get(dg, what);
  expect_close(y2, y_ref, n, "gelu forward in place");
  expect_close(dx2, dx_ref, n, "gelu backward in place");
  drop(dxin), drop(dg), drop(dy);
  free(x), free(g), free(y), free(y_ref), free(dx_ref), free(y2), free(dx2);
}

static void check_residual(size_t n) {
  char what[64];
  snprintf(what, sizeof what, "residual n %zu", n);
  float *a = rand_f(n, 90 + n, -1, 1), *b = rand_f(n, 91, -1, 1), *g = rand_f(n, 92, -1, 1);
  double *y_ref = zeros(n), *g_ref = to_d(g, n);
  for (size_t i = 0; i < n; i++) y_ref[i] = (double)a[i] + b[i];
  dbuf da_in = put(a, n, 3), db_in = put(b, n, 5), dg = put(g, n, 2), dy = put_value(n, 4, NAN);
  ck_assert_ct(ct_residual_forward(g_dev, n, S(da_in), S(db_in), S(dy)));
  float *y = get(dy, what);
  expect_close(y, y_ref, n, what);
  for (int acc_a = 0; acc_a < 2; acc_a++)
    for (int acc_b = 0; acc_b < 2; acc_b++) {
      float *base_a = rand_f(n, 93, -1, 1), *base_b = rand_f(n, 94, -1, 1);
      dbuf ga = acc_a ? put(base_a, n, 1) : put_value(n, 1, NAN);
      dbuf gb = acc_b ? put(base_b, n, 6) : put_value(n, 6, NAN);
      ck_assert_ct(ct_residual_backward(g_dev, n, S(dg), S(ga), acc_a, S(gb), acc_b));
      float *ra = get(ga, what), *rb = get(gb, what);
      double *wa = plus(g_ref, base_a, acc_a ? n : 0), *wb = plus(g_ref, base_b, acc_b ? n : 0);
      expect_close(ra, acc_a ? wa : g_ref, n, "residual da");
      expect_close(rb, acc_b ? wb : g_ref, n, "residual db");
      free(base_a), free(base_b), free(ra), free(rb), free(wa), free(wb);
      drop(ga), drop(gb);
    }
  // one output skipped; the other aliasing dy itself (accumulate: 2 dy)
  dbuf gy = put(g, n, 2);
  ck_assert_ct(ct_residual_backward(g_dev, n, S(gy), S(gy), 1, ct_slice_of(NULL, 0), 0));
  float *twice = get(gy, what);
  double *want = plus(g_ref, g, n);
  expect_close(twice, want, n, "residual backward into dy");
  // in place forward: y into a's slice
  ck_assert_ct(ct_residual_forward(g_dev, n, S(da_in), S(db_in), S(da_in)));
  float *y2 = get(da_in, what);
  expect_close(y2, y_ref, n, "residual forward in place");
  drop(da_in), drop(db_in), drop(dg), drop(dy), drop(gy);
  free(a), free(b), free(g), free(y_ref), free(g_ref), free(y), free(twice), free(want), free(y2);
}

// ---- the tests: each check on every device ---------------------------------------------------

#define ON_EVERY_DEVICE for (int dev_i_ = 0; dev_i_ < g_ndev && (g_dev = &g_devs[dev_i_]); dev_i_++)

START_TEST(embedding_matches_reference) {
  ON_EVERY_DEVICE {
    if (g_small) {
      check_embedding(2, 3, 5, 3);
      continue;
    }
    check_embedding(2, 7, 5, 3);     // tokens repeat; token 2 never occurs
    check_embedding(1, 1, 4, 2);     // one row
    check_embedding(3, 13, 33, 11);
    check_embedding(12, 64, 128, 65);   // the default model (Shakespeare: 84 tokens, about)
  }
}
END_TEST

START_TEST(embedding_index_sorts_rows_by_token) {
  const int tok[5] = {2, 0, 2, 1, 0};
  const int want[4 + 1 + 5] = {0, 2, 3, 5, 5, 1, 4, 3, 0, 2};
  int index[10];
  ck_assert_int_eq((int)ct_embedding_index_len(5, 4), 10);
  ck_assert_ct(ct_embedding_index(tok, 5, 4, index));
  for (int i = 0; i < 10; i++) ck_assert_int_eq(index[i], want[i]);
  const int bad[3] = {0, 3, 1};
  ck_assert_int_eq(ct_embedding_index(bad, 3, 3, index), CT_ERR_INTERNAL);
  ck_assert_ptr_nonnull(strstr(ct_error_message(), "token 3 at row 1"));
  ct_error_clear();
}
END_TEST

START_TEST(layernorm_matches_reference) {
  ON_EVERY_DEVICE {
    if (g_small) {
      check_layernorm(3, 13);   // a float8 part and a tail
      continue;
    }
    check_layernorm(1, 7);
    check_layernorm(5, 1);     // one channel: var 0, xhat 0
    check_layernorm(13, 33);
    check_layernorm(768, 128);
  }
}
END_TEST

START_TEST(attention_matches_reference) {
  for (ct_attn_impl impl = CT_ATTN_OWN; impl <= CT_ATTN_CLBLAST; impl++) ON_EVERY_DEVICE {
      if (g_small) {
        if (impl == CT_ATTN_OWN) check_attention(2, 3, 18, 2, impl);   // hd 9; CLBlast: not here
        continue;
      }
      check_attention(1, 1, 3, 1, impl);    // one row
      check_attention(2, 7, 9, 3, impl);    // hd 3
      check_attention(3, 13, 26, 2, impl);  // hd 13: float8 part and tail
      check_attention(2, 5, 4, 4, impl);    // hd 1
      check_attention(2, 4, 32, 2, impl);   // hd 16, 24, 41: blocks of 2, 3, and 4 + 1 float8
      check_attention(2, 5, 48, 2, impl);   // (the last with a tail)
      check_attention(1, 6, 82, 2, impl);
      check_attention(12, 64, 128, 4, impl);   // the default model
      check_attention_one_buffer(impl);
    }
}
END_TEST

START_TEST(causal_softmax_matches_reference) {
  ON_EVERY_DEVICE {
    check_causal_softmax(2, g_small ? 3 : 7);
    if (!g_small) check_causal_softmax(5, 1);
  }
}
END_TEST

START_TEST(gelu_matches_reference) {
  ON_EVERY_DEVICE {
    check_gelu(g_small ? 37 : 1);
    if (!g_small) check_gelu(1003);
  }
}
END_TEST

START_TEST(residual_matches_reference) {
  ON_EVERY_DEVICE {
    check_residual(g_small ? 37 : 1);
    if (!g_small) check_residual(1003);
  }
}
END_TEST

START_TEST(attention_impl_names) {
  ct_attn_impl impl;
  ck_assert_ct(ct_attn_impl_parse("OWN", &impl));
  ck_assert_int_eq(impl, CT_ATTN_OWN);
  ck_assert_ct(ct_attn_impl_parse("clblast", &impl));
  ck_assert_int_eq(impl, CT_ATTN_CLBLAST);
  ck_assert_int_eq(ct_attn_impl_parse("fast", &impl), CT_ERR_USAGE);
  ct_error_clear();
  ck_assert_str_eq(ct_attn_impl_name(CT_ATTN_CLBLAST), "clblast");
  // the default: the own kernels, CLBlast when the environment asks for it
  unsetenv("CLTRAIN_ATTENTION");
  ck_assert_int_eq(ct_attn_impl_default(&g_devs[0]), CT_ATTN_OWN);
  setenv("CLTRAIN_ATTENTION", "clblast", 1);
  ck_assert_int_eq(ct_attn_impl_default(&g_devs[0]), CT_ATTN_CLBLAST);
  unsetenv("CLTRAIN_ATTENTION");
  // a bad size is refused in one line, nothing enqueued
  g_dev = &g_devs[0];
  ct_attn_dims d = {2, 4, 10, 3};
  ck_assert_int_eq(ct_attention_forward(g_dev, &d, CT_ATTN_OWN, ct_slice_of(NULL, 0),
                                        ct_slice_of(NULL, 0), ct_slice_of(NULL, 0)),
                   CT_ERR_INTERNAL);
  ck_assert_ptr_nonnull(strstr(ct_error_message(), "3 heads do not divide 10 channels"));
  ct_error_clear();
}
END_TEST

START_TEST(oclgrind_subset_has_no_invalid_access) {
  ct_test_oclgrind_child("test_gpt_kernels", 0);
}
END_TEST

static Suite *gpt_kernels_suite(void) {
  Suite *s = suite_create(g_small ? "gpt-kernels-oclgrind" : "gpt-kernels");
  TCase *tc = tcase_create("gpt-kernels");
  tcase_set_timeout(tc, 900);
  tcase_add_test(tc, embedding_matches_reference);
  tcase_add_test(tc, layernorm_matches_reference);
  tcase_add_test(tc, attention_matches_reference);
  tcase_add_test(tc, causal_softmax_matches_reference);
  tcase_add_test(tc, gelu_matches_reference);
  tcase_add_test(tc, residual_matches_reference);
  if (!g_small) {
    tcase_add_test(tc, reference_backward_matches_finite_differences);
    tcase_add_test(tc, embedding_index_sorts_rows_by_token);
    tcase_add_test(tc, attention_impl_names);
    tcase_add_test(tc, oclgrind_subset_has_no_invalid_access);
  }
  suite_add_tcase(s, tc);
  return s;
}

int main(int argc, char **argv) {
  g_small = argc > 1 && !strcmp(argv[1], "--oclgrind-child");
  if (g_small) {
    ct_test_device("oclgrind", &g_devs[0]);
    g_ndev = 1;
  } else {
    ct_device_list list;
    ct_test_devices(&list);
    for (int i = 0; i < list.count && g_ndev < MAX_DEVICES; i++) {
      if (list.dev[i].simulator) continue;   // Oclgrind: the child (tiny shapes)
      ct_status st = ct_device_open(&list.dev[i], &g_devs[g_ndev]);
      if (st != CT_OK) {
        fprintf(stderr, "cannot open %s: %s\n", list.dev[i].name, ct_error_message());
        return 1;
      }
      fprintf(stderr, "test_gpt_kernels: device %d:%d %s [%s]\n", list.dev[i].platform,
              list.dev[i].index, list.dev[i].name, list.dev[i].platform_name);
      g_ndev++;
    }
    ct_device_list_free(&list);
    if (g_ndev == 0) {
      fprintf(stderr, "SKIP: no OpenCL device but the simulator\n");
      return CT_TEST_SKIP;
    }
  }
  int rc = ct_test_run(gpt_kernels_suite(), 1);
  for (int i = 0; i < g_ndev; i++) ct_device_close(&g_devs[i]);
  return rc;
}
