// test_ops.c: one table of op tests, in the manner of ggml's test-backend-ops. Each line is an
// op (by its name in op.h's table) with its settings and awkward shapes; every op kind of the
// table must have at least one line and a plain-C reference (op_ref.c). For each line, on every
// OpenCL device present (Oclgrind in a child process, small lines only, where it checks for
// out-of-bounds accesses and races):
//   - forward against the reference (double precision);
//   - backward with every gradient overwritten, and again added onto what was there, where the
//     op can add (the planner gives ops that cannot a temporary), against the reference;
//   - the reference's backward against central differences of the reference's forward, with
//     the loss sum(y * dy) (for the loss op: loss_scale * sum(losses)).
// A new op joins by adding its lines here and its reference to op_ref.c.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/layers.h"
#include "cltrain/model.h"
#include "op_ref.h"
#include "testutil.h"

typedef struct {
  const char *op, *token;
  int n_in;
  ct_shape in[CT_OP_MAX_IN];
  int int_range;           // an int input (token ids): values in [0, int_range)
  int batch;
  int small;               // also on Oclgrind
} op_case;

#define S1(a) {1, {a, 0, 0}, 0}
#define S2(a, b) {2, {a, b, 0}, 0}
#define S3(a, b, c) {3, {a, b, c}, 0}

static const op_case cases[] = {
    {"dense", "dense:7", 1, {S1(13)}, 0, 3, 1},
    {"dense", "dense:17", 1, {S3(2, 5, 3)}, 0, 1, 0},     // an image, flattened
    {"dense", "dense:9", 1, {S2(5, 11)}, 0, 2, 1},        // a sequence: one row per position
    {"dense", "dense:6/nobias", 1, {S2(3, 4)}, 0, 3, 1},
    {"conv2d", "conv3x3:4", 1, {S3(2, 7, 5)}, 0, 2, 1},
    {"conv2d", "conv5x5:3/s2/p1", 1, {S3(3, 9, 8)}, 0, 3, 0},
    {"conv2d", "conv2x2:5/p0", 1, {S3(1, 5, 5)}, 0, 1, 1},
    {"conv2d", "conv1x1:2", 1, {S3(4, 3, 7)}, 0, 2, 0},
    {"maxpool", "maxpool2", 1, {S3(3, 7, 6)}, 0, 2, 1},
    {"maxpool", "maxpool3", 1, {S3(2, 9, 10)}, 0, 1, 0},
    {"relu", "relu", 1, {S1(37)}, 0, 3, 1},
    {"relu", "relu", 1, {S3(2, 3, 5)}, 0, 1, 0},
    {"flatten", "flatten", 1, {S3(3, 4, 5)}, 0, 2, 1},
    {"dropout", "dropout:0.3", 1, {S1(41)}, 0, 3, 1},
    {"dropout", "dropout:0", 1, {S3(2, 3, 3)}, 0, 2, 0},
    {"softmax_xent", "softmax_xent", 1, {S1(10)}, 0, 5, 1},
    {"softmax_xent", "softmax_xent", 1, {S2(6, 13)}, 0, 2, 1},   // per position: 6 labels a sample
    {"embedding", "embedding:11/13", 1, {{1, {7, 0, 0}, 1}}, 11, 3, 1},
    {"embedding", "embedding:3/16", 1, {{1, {1, 0, 0}, 1}}, 2, 2, 0},   // a token never seen
    {"layernorm", "layernorm", 1, {S2(5, 19)}, 0, 2, 1},
    {"layernorm", "layernorm", 1, {S1(8)}, 0, 3, 0},
    {"attention", "attention:2", 1, {S2(7, 30)}, 0, 2, 1},     // hd 5
    {"attention", "attention:3", 1, {S2(1, 27)}, 0, 2, 0},     // T = 1
    {"attention", "attention:1", 1, {S2(13, 27)}, 0, 1, 0},    // hd 9, one head
    {"attention", "attention:4", 1, {S2(9, 96)}, 0, 2, 0},     // hd 8
    {"gelu", "gelu", 1, {S2(3, 17)}, 0, 2, 1},
    {"add", "add", 2, {S2(4, 6), S2(4, 6)}, 0, 3, 1},
};
#define N_CASES ((int)(sizeof cases / sizeof *cases))

static int g_small;          // the Oclgrind child: small lines only
static ct_device g_dev;

// ---- buffers ---------------------------------------------------------------------------------

static cl_mem buf_of(const void *host, size_t bytes) {
  cl_int err;
  cl_mem m = clCreateBuffer(g_dev.ctx, CL_MEM_READ_WRITE | (host ? CL_MEM_COPY_HOST_PTR : 0),
                            bytes ? bytes : 4, (void *)host, &err);
  ck_assert_msg(err == CL_SUCCESS, "clCreateBuffer(%zu): %s", bytes, ct_cl_errname(err));
  return m;
}

static cl_mem buf_doubles(const double *x, size_t n) {
  float *f = malloc((n ? n : 1) * sizeof *f);
  for (size_t i = 0; i < n; i++) f[i] = (float)x[i];
  cl_mem m = buf_of(f, n * sizeof *f);
  free(f);
  return m;
}

static float *read_floats(cl_mem m, size_t n) {
  float *h = malloc((n ? n : 1) * sizeof *h);
  ck_assert_int_eq(clEnqueueReadBuffer(g_dev.queue, m, CL_TRUE, 0, n * sizeof *h, h, 0, NULL,
                                       NULL), CL_SUCCESS);
  return h;
}

static double *rand_doubles(size_t n, uint64_t *s, double lo, double hi) {
  double *x = calloc(n ? n : 1, sizeof *x);
  for (size_t i = 0; i < n; i++) x[i] = ct_test_rand_uniform(s, (float)lo, (float)hi);
  return x;
}

// got (float, device) against want (double, reference): |d| <= 1e-4 |want| + 1e-5 max|want|.
static void expect_close(const float *got, const double *want, size_t n, const char *what,
                         const op_case *c) {
  double scale = 1e-3;
  for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
  for (size_t i = 0; i < n; i++) {
    double tol = 1e-4 * fabs(want[i]) + 2e-5 * scale;
    if (isnan(want[i]) && isnan(got[i])) continue;
    ck_assert_msg(fabs(got[i] - want[i]) <= tol,
                  "%s %s (batch %d) on %s: %s[%zu] is %.8g, the reference says %.8g", c->op,
                  c->token, c->batch, g_dev.info.name, what, i, (double)got[i], want[i]);
  }
}

// ---- one line of the table -------------------------------------------------------------------

typedef struct {
  ct_arch *a;
  const op_case *c;
  int node;
  size_t nx[CT_OP_MAX_IN], ny, np;
  double *x[CT_OP_MAX_IN], *p, *dy;
  int *labels;
  ct_ref_ctx ctx;
  const ct_ref_op *ref;
} line;

static void line_init(line *L, const op_case *c, uint64_t seed) {
  memset(L, 0, sizeof *L);
  L->c = c;
  L->a = malloc(sizeof *L->a);
  ck_assert_ptr_nonnull(L->a);
  ct_arch_begin(L->a, &c->in[0]);
  int in[CT_OP_MAX_IN] = {0};
  for (int j = 1; j < c->n_in; j++) in[j] = ct_arch_value(L->a, &c->in[j]);
  int out;
  ck_assert_ct(ct_arch_add(L->a, c->op, c->token, in, c->n_in, "t", NULL, &out));
  L->node = L->a->n - 1;
  L->ref = ct_ref_find(c->op);
  ck_assert_msg(L->ref != NULL, "op %s has no reference in op_ref.c", c->op);
  uint64_t s = seed;
  for (int j = 0; j < c->n_in; j++) {
    L->nx[j] = (size_t)c->batch * ct_shape_count(&c->in[j]);
    L->x[j] = rand_doubles(L->nx[j], &s, -1.5, 1.5);
    if (c->in[j].is_int)
      for (size_t i = 0; i < L->nx[j]; i++)
        L->x[j][i] = (double)(ct_test_rand_u64(&s) % (uint64_t)c->int_range);
  }
  L->ny = (size_t)c->batch * ct_shape_count(&L->a->values[out].shape);
  L->np = L->a->param_count;
  L->p = rand_doubles(L->np, &s, -0.8, 0.8);
  L->dy = rand_doubles(L->ny, &s, -1.0, 1.0);
  const ct_node *n = &L->a->nodes[L->node];
  L->ctx.batch = c->batch;
  L->ctx.train = 1;
  L->ctx.seed = 0x1234567ULL + seed;
  L->ctx.offset = 3;
  L->ctx.loss_scale = 0.37;
  if (n->op->is_loss) {   // labels per row; one out of range gives NaN and no gradient
    L->labels = malloc(L->ny * sizeof *L->labels);
    size_t classes = L->nx[0] / L->ny;
    for (size_t r = 0; r < L->ny; r++) L->labels[r] = (int)(ct_test_rand_u64(&s) % classes);
    if (L->ny > 2) L->labels[1] = (int)classes;
    L->ctx.labels = L->labels;
  }
  // a ReLU's or max pooling's kink within the finite differences' reach: move the input away
  for (int j = 0; j < c->n_in; j++)
    for (size_t i = 0; !c->in[j].is_int && i < L->nx[j]; i++)
      if (fabs(L->x[j][i]) < 1e-3) L->x[j][i] += 0.01;
}

static void line_free(line *L) {
  for (int j = 0; j < CT_OP_MAX_IN; j++) free(L->x[j]);
  free(L->p), free(L->dy), free(L->labels), free(L->a);
}

// The reference's forward at the line's inputs and parameters.
static void ref_forward(const line *L, double *const *x, const double *p, double *y) {
  const double *xs[CT_OP_MAX_IN];
  for (int j = 0; j < CT_OP_MAX_IN; j++) xs[j] = x[j];
  L->ref->forward(L->a, &L->a->nodes[L->node], &L->ctx, xs, p, y);
}

// The loss the finite differences see: sum(y * dy), or the scaled sum of the loss op's losses.
static double ref_loss(const line *L, double *const *x, const double *p) {
  double *y = calloc(L->ny, sizeof *y), l = 0;
  ref_forward(L, x, p, y);
  int loss = L->a->nodes[L->node].op->is_loss;
  for (size_t i = 0; i < L->ny; i++)
    if (!isnan(y[i])) l += loss ? L->ctx.loss_scale * y[i] : y[i] * L->dy[i];
  free(y);
  return l;
}

// The reference's backward: dx[j] and dp, zero first.
static void ref_backward(const line *L, double **dx, double *dp) {
  double *y = calloc(L->ny, sizeof *y);
  ref_forward(L, L->x, L->p, y);
  for (int j = 0; j < L->c->n_in; j++) dx[j] = calloc(L->nx[j] ? L->nx[j] : 1, sizeof **dx);
  const double *xs[CT_OP_MAX_IN] = {L->x[0], L->x[1], L->x[2]};
  L->ref->backward(L->a, &L->a->nodes[L->node], &L->ctx, xs, L->p, y, L->dy, dx, dp);
  free(y);
}

// Central differences of ref_loss against the reference's backward, for every float input
// element and parameter (or a strided sample of big ones).
static void check_reference_gradients(line *L) {
  double *dx[CT_OP_MAX_IN] = {0}, *dp = calloc(L->np ? L->np : 1, sizeof *dp);
  ref_backward(L, dx, dp);
  const double eps = 1e-6;
  int bad = 0;
  for (int j = 0; j <= L->c->n_in; j++) {
    int params = j == L->c->n_in;
    if (!params && L->c->in[j].is_int) continue;
    double *v = params ? L->p : L->x[j], *g = params ? dp : dx[j];
    size_t n = params ? L->np : L->nx[j], step = n > 400 ? n / 200 : 1;
    for (size_t i = 0; i < n; i += step) {
      double keep = v[i];
      v[i] = keep + eps;
      double lp = ref_loss(L, L->x, L->p);
      v[i] = keep - eps;
      double lm = ref_loss(L, L->x, L->p);
      v[i] = keep;
      double fd = (lp - lm) / (2 * eps);
      if (fabs(fd - g[i]) > 1e-5 + 1e-4 * fabs(g[i])) {
        if (bad++ < 5)
          fprintf(stderr, "%s %s: d loss / d %s[%zu]: reference %.9g, differences %.9g\n",
                  L->c->op, L->c->token, params ? "param" : "input", i, g[i], fd);
      }
    }
  }
  ck_assert_msg(!bad, "%s %s: the reference's backward disagrees with finite differences at %d "
                "places", L->c->op, L->c->token, bad);
  for (int j = 0; j < CT_OP_MAX_IN; j++) free(dx[j]);
  free(dp);
}

// Forward and backward on the device against the reference; add = 1: every gradient the op can
// add to starts from random values and must end at those plus the reference's.
static void check_device(line *L, int add) {
  const op_case *c = L->c;
  const ct_node *n = &L->a->nodes[L->node];
  const ct_op *op = n->op;
  ct_op_io io;
  memset(&io, 0, sizeof io);
  io.dev = &g_dev;
  io.g = L->a;
  io.batch = c->batch;
  io.train = L->ctx.train;
  io.seed = L->ctx.seed;
  io.sample_offset = L->ctx.offset;
  for (int j = 0; j < c->n_in; j++) {
    if (c->in[j].is_int) {
      int *t = malloc(L->nx[j] * sizeof *t);
      for (size_t i = 0; i < L->nx[j]; i++) t[i] = (int)L->x[j][i];
      io.x[j] = buf_of(t, L->nx[j] * sizeof *t);
      free(t);
    } else {
      io.x[j] = buf_doubles(L->x[j], L->nx[j]);
    }
  }
  if (op->out_aliases_in) {   // its output is its input's buffer, as the planner makes it
    io.y = io.x[0];
    clRetainMemObject(io.y);
  } else {
    io.y = buf_of(NULL, L->ny * sizeof(float));
  }
  io.params = buf_doubles(L->p, L->np);
  for (int k = 0; k < n->n_param; k++) io.p[k] = L->a->tensors[n->param[k]].off;
  for (int k = 0; k < n->n_saved; k++)
    io.saved[k] = buf_of(NULL, (size_t)c->batch * n->saved[k] * 4);
  for (int k = 0; k < n->n_scratch; k++)
    io.scratch[k] = buf_of(NULL, (size_t)c->batch * n->scratch[k] * 4);
  if (op->is_loss) {
    io.labels = buf_of(L->labels, L->ny * sizeof(int));
    io.losses = io.y;
    io.loss_scale = (float)L->ctx.loss_scale;
  }
  // forward
  if (op->is_loss) io.dx[0] = buf_of(NULL, L->nx[0] * sizeof(float));   // (written, unused)
  ck_assert_ct(op->forward(n, &io));
  double *want = calloc(L->ny, sizeof *want);
  ref_forward(L, L->x, L->p, want);
  float *got = read_floats(io.y, L->ny);
  expect_close(got, want, L->ny, op->is_loss ? "loss" : "y", c);
  free(got), free(want);
  // backward
  double *rdx[CT_OP_MAX_IN] = {0}, *rdp = calloc(L->np ? L->np : 1, sizeof *rdp);
  ref_backward(L, rdx, rdp);
  uint64_t s = 991;
  double *start_dx[CT_OP_MAX_IN] = {0}, *start_dp = rand_doubles(L->np, &s, -0.5, 0.5);
  int add_dx = add && op->can_add_dx, add_dp = add && op->can_add_dp;
  for (int j = 0; j < c->n_in; j++) {
    if (io.dx[j]) clReleaseMemObject(io.dx[j]);
    io.dx[j] = NULL;
    if (c->in[j].is_int) continue;   // no gradient for token ids
    start_dx[j] = rand_doubles(L->nx[j], &s, -0.5, 0.5);
    io.dx[j] = buf_doubles(start_dx[j], L->nx[j]);
    io.dx_mode[j] = add_dx ? CT_GRAD_ADD : CT_GRAD_WRITE;
  }
  for (int k = 0; k < n->n_param; k++) io.dp_mode[k] = add_dp ? CT_GRAD_ADD : CT_GRAD_WRITE;
  io.grads = buf_doubles(start_dp, L->np);
  io.dy = buf_doubles(L->dy, L->ny);
  ck_assert_ct(op->backward(n, &io));
  for (int j = 0; j < c->n_in; j++) {
    if (!io.dx[j]) continue;
    if (add_dx)
      for (size_t i = 0; i < L->nx[j]; i++) rdx[j][i] += start_dx[j][i];
    got = read_floats(io.dx[j], L->nx[j]);
    char what[32];
    snprintf(what, sizeof what, "dx%d%s", j, add_dx ? " (added)" : "");
    expect_close(got, rdx[j], L->nx[j], what, c);
    free(got);
  }
  if (n->n_param) {   // the tensors' gradients; everything else in grads stays as it was
    for (size_t i = 0; i < L->np; i++) rdp[i] += add_dp ? start_dp[i] : 0;
    got = read_floats(io.grads, L->np);
    expect_close(got, rdp, L->np, add_dp ? "dparams (added)" : "dparams", c);
    free(got);
  }
  for (int j = 0; j < CT_OP_MAX_IN; j++) {
    free(rdx[j]), free(start_dx[j]);
    if (io.x[j]) clReleaseMemObject(io.x[j]);
    if (io.dx[j]) clReleaseMemObject(io.dx[j]);
  }
  free(rdp), free(start_dp);
  for (int k = 0; k < n->n_saved; k++) clReleaseMemObject(io.saved[k]);
  for (int k = 0; k < n->n_scratch; k++) clReleaseMemObject(io.scratch[k]);
  if (io.labels) clReleaseMemObject(io.labels);
  clReleaseMemObject(io.y);
  clReleaseMemObject(io.params);
  clReleaseMemObject(io.grads);
  clReleaseMemObject(io.dy);
}

// ---- tests -----------------------------------------------------------------------------------

START_TEST(every_op_has_lines_and_a_reference) {
  for (int i = 0; i < ct_op_count; i++) {
    int lines = 0;
    for (int k = 0; k < N_CASES; k++) lines += !strcmp(cases[k].op, ct_ops[i]->name);
    ck_assert_msg(lines > 0, "op %s has no line in test_ops.c's table", ct_ops[i]->name);
    ck_assert_msg(ct_ref_find(ct_ops[i]->name) != NULL, "op %s has no reference in op_ref.c",
                  ct_ops[i]->name);
  }
}
END_TEST

START_TEST(references_match_finite_differences) {
  for (int k = 0; k < N_CASES; k++) {
    line L;
    line_init(&L, &cases[k], 100 + (uint64_t)k);
    check_reference_gradients(&L);
    line_free(&L);
  }
}
END_TEST

// Every line on the device the suite runs on (all devices: the suite runs once per device).
START_TEST(ops_match_their_references) {
  int done = 0;
  for (int k = 0; k < N_CASES; k++) {
    if (g_small && !cases[k].small) continue;
    line L;
    line_init(&L, &cases[k], 100 + (uint64_t)k);
    check_device(&L, 0);
    check_device(&L, 1);
    line_free(&L);
    done++;
  }
  fprintf(stderr, "ops: %d lines on %s [%s]\n", done, g_dev.info.name, g_dev.info.platform_name);
}
END_TEST

START_TEST(oclgrind_finds_no_invalid_access) {
  ct_test_oclgrind_child("test_ops", 0);
}
END_TEST

// The suite on one device: `spec` (P:D) names it.
static int run_on(const char *spec, int with_host_checks) {
  ct_test_device(spec, &g_dev);
  Suite *s = suite_create(g_small ? "ops-oclgrind" : "ops");
  TCase *tc = tcase_create("ops");
  tcase_set_timeout(tc, 900);
  if (with_host_checks) {
    tcase_add_test(tc, every_op_has_lines_and_a_reference);
    tcase_add_test(tc, references_match_finite_differences);
  }
  tcase_add_test(tc, ops_match_their_references);
  if (with_host_checks) tcase_add_test(tc, oclgrind_finds_no_invalid_access);
  suite_add_tcase(s, tc);
  int rc = ct_test_run(s, 1);
  ct_device_close(&g_dev);
  return rc;
}

int main(int argc, char **argv) {
  g_small = argc > 1 && !strcmp(argv[1], "--oclgrind-child");
  if (g_small) return run_on("oclgrind", 0);
  ct_device_list list;
  ct_test_devices(&list);
  int rc = 0, first = 1;
  for (int i = 0; i < list.count; i++) {
    if (list.dev[i].simulator) continue;   // (Oclgrind: the child process, small lines)
    char spec[32];
    snprintf(spec, sizeof spec, "%d:%d", list.dev[i].platform, list.dev[i].index);
    int r = run_on(spec, first);
    first = 0;
    if (r) rc = r;
  }
  ct_device_list_free(&list);
  return rc;
}
