// blas.c: ct_gemm: the plan table (which implementation runs which shape), CLBlast with Xgemm
// parameters for the devices it has not tuned, and cltrain's own kernel (cl/gemm.cl).
#define _GNU_SOURCE   // dladdr
#include "cltrain/blas.h"

#include <clblast_c.h>
#include <dlfcn.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/prof.h"
#include "cltrain/program.h"

const char *const CT_CLBLAST_XGEMM_NAMES[16] = {
    "GEMMK", "KREG", "KWG", "KWI", "MDIMA", "MDIMC", "MWG", "NDIMB",
    "NDIMC", "NWG", "SA", "SB", "STRM", "STRN", "VWM", "VWN"};
const char *const CT_CLBLAST_XGEMM_DIRECT_NAMES[10] = {
    "KWID", "MDIMAD", "MDIMCD", "NDIMBD", "NDIMCD", "PADA", "PADB", "VWMD", "VWND", "WGD"};

const size_t ct_blas_cpu_xgemm[16] = {0, 1, 16, 2, 8, 8, 64, 8, 8, 128, 0, 0, 0, 0, 8, 16};

void ct_clblast_library(char *buf, size_t size) {
  Dl_info info;
  char real[PATH_MAX];
  if (size) buf[0] = 0;
  if (!dladdr((void *)CLBlastSgemm, &info) || !info.dli_fname) return;
  if (!realpath(info.dli_fname, real)) return;
  snprintf(buf, size, "%s", real);
}

void ct_clblast_version(char *buf, size_t size) {
  char real[PATH_MAX];
  ct_clblast_library(real, sizeof real);
  const char *so = strstr(real, ".so.");
  snprintf(buf, size, "%s", so && so[4] ? so + 4 : "unknown");
}

struct ct_gemm_kernel {
  char options[160];
  cl_kernel kernel;
};

// For tuning by hand: "NAME=VALUE,NAME=VALUE" in the environment variable `var` replaces the
// values of those parameters (names as CLBlast's, e.g. CLTRAIN_XGEMM=KWG=32,VWN=8).
static ct_status env_overrides(const char *var, const char *const *names, size_t *values,
                               size_t n) {
  const char *spec = getenv(var);
  if (!spec || !*spec) return CT_OK;
  char buf[512];
  snprintf(buf, sizeof buf, "%s", spec);
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(tok, '='), *end = NULL;
    size_t i = 0;
    if (eq) {
      *eq = 0;
      while (i < n && strcmp(names[i], tok) != 0) i++;
    }
    unsigned long v = eq ? strtoul(eq + 1, &end, 10) : 0;
    if (!eq || i == n || end == eq + 1 || *end)
      return CT_FAIL(CT_ERR_USAGE, "%s: expected NAME=NUMBER,... with CLBlast parameter names, got '%s'",
                     var, spec);
    values[i] = v;
  }
  return CT_OK;
}

ct_status ct_blas_apply_clblast(ct_device *dev, const char *kernel, const char *const *names,
                                const size_t *values, int n) {
  if (n <= 0) return CT_OK;
  CLBlastStatusCode s = CLBlastOverrideParameters(dev->info.id, kernel, CLBlastPrecisionSingle,
                                                  (size_t)n, (const char **)names, values);
  if (s != CLBlastSuccess)
    return CT_FAIL(CT_ERR_CL, "CLBlastOverrideParameters(%s) failed on %s: %s", kernel,
                   dev->info.name, ct_cl_errname(s));
  return CT_OK;
}

// The tile of the own kernel for the shapes without a plan on a CPU. Untuned, CLBlast (even
// with the Xgemm parameters below) ran the mlp's products at 1-9 GFLOP/s on Intel's CPU runtime
// and at 6 on PoCL once a rank's share fell under 128 rows (its direct kernel: PoCL alone 1,207
// samples/s at batch 64, 7,664 at 128; Intel 1,012 at 128); this tile, the one the tuner chose
// most often for them, ran the mlp at 14,200-18,400 samples/s on both (batch 32-128, one thread:
// the tuned rates) and the cnn at 1,246-1,324 on PoCL (CLBlast 416-463) and 1,013-1,118 on
// Intel (100-106). cltrain-tune still measures and replaces it per shape.
static const ct_gemm_tile cpu_default_tile = {4, 2, 8, 16, 256, 0};

const ct_gemm_plan *ct_blas_default_plan(const ct_device *dev) {
  return dev->blas && dev->blas->have_dflt ? &dev->blas->dflt : NULL;
}

ct_status ct_blas_init(ct_device *dev) {
  dev->blas = calloc(1, sizeof *dev->blas);
  if (!dev->blas) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  snprintf(dev->blas->source, sizeof dev->blas->source, "defaults");
  if (getenv("CLTRAIN_BLAS_DEFAULTS")) return CT_OK;   // measure CLBlast's own choice
  if ((dev->info.type & CL_DEVICE_TYPE_CPU) && !dev->info.simulator) {
    ct_gemm_plan *d = &dev->blas->dflt;
    d->impl = CT_GEMM_OWN;
    d->tile = cpu_default_tile;
    d->m = (size_t)(cpu_default_tile.lm * cpu_default_tile.mr);   // the rows one group covers
    if (ct_gemm_tile_check(dev, &d->tile) == CT_OK) dev->blas->have_dflt = 1;
    else ct_error_clear();   // a CPU with too little local memory: CLBlast
    // For CLBlast (where a plan chooses it, or without the default above): Xgemm without
    // local memory, wide vectors: on a 2-core AVX2 CPU under PoCL, with the
    // threshold below, training ran about 3x faster than with CLBlast's untuned defaults.
    // cltrain-tune replaces both by what it measures on the device at hand.
    size_t values[16];
    memcpy(values, ct_blas_cpu_xgemm, sizeof values);
    CT_TRY(env_overrides("CLTRAIN_XGEMM", CT_CLBLAST_XGEMM_NAMES, values, 16));
    CT_TRY(ct_blas_apply_clblast(dev, "Xgemm", CT_CLBLAST_XGEMM_NAMES, values, 16));
    // CLBlast's switch from its direct to its indirect GEMM kernel: at its default the conv
    // layers' products (64 x 25088 x 288) take the direct kernel, about 5x slower here.
    const char *const rnames[] = {"XGEMM_MIN_INDIRECT_SIZE"};
    size_t rvalues[] = {320};
    CT_TRY(env_overrides("CLTRAIN_GEMM_ROUTINE", rnames, rvalues, 1));
    CT_TRY(ct_blas_apply_clblast(dev, "GemmRoutine", rnames, rvalues, 1));
    dev->blas->overridden = 1;
  }
  return CT_OK;
}

void ct_blas_free(ct_device *dev) {
  struct ct_blas_state *b = dev->blas;
  if (!b) return;
  for (int i = 0; i < b->nkernels; i++) clReleaseKernel(b->kernels[i].kernel);
  free(b->kernels);
  if (b->scratch) clReleaseMemObject(b->scratch);
  free(b->plans);
  free(b->record);
  if (dev->info.id) CLBlastClearCache();
  free(b);
  dev->blas = NULL;
}

// ---- plans and recording --------------------------------------------------------------------

ct_status ct_blas_set_plans(ct_device *dev, const ct_gemm_plan *plans, int n) {
  struct ct_blas_state *b = dev->blas;
  ct_gemm_plan *copy = NULL;
  if (n > 0) {
    copy = malloc((size_t)n * sizeof *copy);
    if (!copy) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
    memcpy(copy, plans, (size_t)n * sizeof *copy);
  }
  free(b->plans);
  b->plans = copy;
  b->nplans = n > 0 ? n : 0;
  return CT_OK;
}

static double log_ratio(size_t a, size_t b) { return fabs(log((double)a / (double)b)); }

const ct_gemm_plan *ct_blas_find_plan(const ct_device *dev, int ta, int tb, size_t m, size_t n,
                                      size_t k) {
  const struct ct_blas_state *b = dev->blas;
  if (!b || !b->nplans || !m || !n || !k) return NULL;
  const ct_gemm_plan *best = NULL;
  double best_d = 1e300, lim = log(4.0) + 1e-9;
  for (int i = 0; i < b->nplans; i++) {
    const ct_gemm_plan *p = &b->plans[i];
    if (p->ta != !!ta || p->tb != !!tb) continue;
    if (ct_gemm_same_shape(&p->shape, &(ct_gemm_shape){!!ta, !!tb, m, n, k})) return p;
    // M follows the batch share (it varies with the shares and the epoch's last batch): any M;
    // N and K are the model's own sizes: within a factor of 4
    double dm = log_ratio(p->m, m), dn = log_ratio(p->n, n), dk = log_ratio(p->k, k);
    if (dn > lim || dk > lim) continue;
    if (dm + dn + dk < best_d) best_d = dm + dn + dk, best = p;
  }
  return best;
}

ct_status ct_blas_record(ct_device *dev, int on) {
  struct ct_blas_state *b = dev->blas;
  if (on) {
    free(b->record);
    b->record = NULL;
    b->nrecord = b->caprecord = 0;
  }
  b->recording = on;
  return CT_OK;
}

static ct_status record_call(struct ct_blas_state *b, const char *role, int ta, int tb,
                             size_t m, size_t n, size_t k) {
  ct_gemm_shape shape = {ta, tb, m, n, k};
  for (int i = 0; i < b->nrecord; i++) {
    ct_gemm_call *c = &b->record[i];
    if (ct_gemm_same_shape(&c->shape, &shape) && !strcmp(c->role, role)) {
      c->calls++;
      return CT_OK;
    }
  }
  if (b->nrecord == b->caprecord) {
    int cap = b->caprecord ? 2 * b->caprecord : 16;
    ct_gemm_call *p = realloc(b->record, (size_t)cap * sizeof *p);
    if (!p) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
    b->record = p;
    b->caprecord = cap;
  }
  ct_gemm_call *c = &b->record[b->nrecord++];
  memset(c, 0, sizeof *c);
  snprintf(c->role, sizeof c->role, "%s", role);
  c->shape = shape, c->calls = 1;
  return CT_OK;
}

// ---- the implementations -------------------------------------------------------------------

static ct_status check_args(const char *what, size_t m, size_t n, size_t k) {
  if (k == 0) return CT_FAIL(CT_ERR_INTERNAL, "%s with k = 0 (m=%zu n=%zu)", what, m, n);
  return CT_OK;
}

ct_status ct_gemm_clblast(ct_device *dev, int trans_a, int trans_b, size_t m, size_t n, size_t k,
                          float alpha, cl_mem a, size_t a_off, size_t lda, cl_mem b,
                          size_t b_off, size_t ldb, float beta, cl_mem c, size_t c_off,
                          size_t ldc, cl_event *event) {
  if (m == 0 || n == 0) return CT_OK;
  CT_TRY(check_args("CLBlastSgemm", m, n, k));
  CLBlastStatusCode s = CLBlastSgemm(
      CLBlastLayoutRowMajor, trans_a ? CLBlastTransposeYes : CLBlastTransposeNo,
      trans_b ? CLBlastTransposeYes : CLBlastTransposeNo, m, n, k, alpha, a, a_off, lda, b, b_off,
      ldb, beta, c, c_off, ldc, &dev->queue, event);
  if (s != CLBlastSuccess)
    return CT_FAIL(s == CLBlastTempBufferAllocFailure ? CT_ERR_NOMEM : CT_ERR_CL,
                   "CLBlastSgemm(m=%zu n=%zu k=%zu ta=%d tb=%d) on %s failed: %s", m, n, k,
                   trans_a, trans_b, dev->info.name, ct_cl_errname(s));
  return CT_OK;
}

void ct_gemm_tile_options(const ct_gemm_tile *t, int ta, int tb, char *buf, size_t size) {
  snprintf(buf, size, "-DMR=%d -DNV=%d -DVW=%d -DLM=%d -DKB=%d -DTRANS_A=%d -DTRANS_B=%d", t->mr,
           t->nv, t->vw, t->lm, t->kb, !!ta, !!tb);
}

ct_status ct_gemm_tile_check(const ct_device *dev, const ct_gemm_tile *t) {
  if (t->vw != 4 && t->vw != 8 && t->vw != 16)
    return CT_FAIL(CT_ERR_USAGE, "gemm tile: VW %d is not 4, 8 or 16", t->vw);
  if (t->mr < 1 || t->nv < 1 || t->mr * t->nv > 64 || t->lm < 1 || t->kb < 1 || t->kb > 4096)
    return CT_FAIL(CT_ERR_USAGE, "gemm tile: MR %d, NV %d, LM %d, KB %d out of range", t->mr,
                   t->nv, t->lm, t->kb);
  if ((size_t)t->lm > dev->info.max_wg)
    return CT_FAIL(CT_ERR_USAGE, "gemm tile: LM %d exceeds the work-group limit %zu of %s", t->lm,
                   dev->info.max_wg, dev->info.name);
  size_t local = (size_t)t->kb * (size_t)(t->nv * t->vw) * sizeof(float);
  if (local > dev->info.local_mem)
    return CT_FAIL(CT_ERR_USAGE, "gemm tile: a panel of %zu bytes exceeds the %llu bytes of local "
                   "memory of %s", local, (unsigned long long)dev->info.local_mem, dev->info.name);
  return CT_OK;
}

static ct_status own_kernel(ct_device *dev, const ct_gemm_tile *t, int ta, int tb, cl_kernel *out) {
  struct ct_blas_state *b = dev->blas;
  char opts[160];
  ct_gemm_tile_options(t, ta, tb, opts, sizeof opts);
  for (int i = 0; i < b->nkernels; i++)
    if (!strcmp(b->kernels[i].options, opts)) {
      *out = b->kernels[i].kernel;
      return CT_OK;
    }
  CT_TRY(ct_gemm_tile_check(dev, t));
  cl_program prog;
  CT_TRY(ct_program_build(dev, "gemm", opts, &prog));
  cl_int err;
  cl_kernel k = clCreateKernel(prog, "gemm_tile", &err);
  if (err != CL_SUCCESS)
    return CT_FAIL(CT_ERR_CL, "clCreateKernel(cl/gemm.cl, \"gemm_tile\", %s) failed: %s", opts,
                   ct_cl_errname(err));
  if (b->nkernels == b->capkernels) {
    int cap = b->capkernels ? 2 * b->capkernels : 8;
    struct ct_gemm_kernel *p = realloc(b->kernels, (size_t)cap * sizeof *p);
    if (!p) {
      clReleaseKernel(k);
      return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
    }
    b->kernels = p;
    b->capkernels = cap;
  }
  struct ct_gemm_kernel *e = &b->kernels[b->nkernels++];
  snprintf(e->options, sizeof e->options, "%s", opts);
  e->kernel = k;
  *out = k;
  return CT_OK;
}

// A (k, m) at a_off with leading dimension lda, transposed into the device's scratch buffer as
// (m, k) with leading dimension k, on its queue (in order: the product enqueued after it reads
// it, and the next transpose is enqueued after that product).
static ct_status transpose_a(ct_device *dev, size_t m, size_t k, cl_mem a, size_t a_off,
                             size_t lda) {
  struct ct_blas_state *b = dev->blas;
  cl_int err;
  cl_kernel kt;
  CT_TRY(ct_kernel(dev, "gemm", "gemm_transpose", &kt));
  if (b->scratch_floats < m * k) {
    if (b->scratch) clReleaseMemObject(b->scratch);   // (freed once the commands using it ran)
    b->scratch_floats = 0;
    b->scratch = ct_device_buffer(dev, m * k * sizeof(float), &err);
    if (err != CL_SUCCESS) {
      b->scratch = NULL;
      return CT_FAIL(err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_RESOURCES ||
                             err == CL_OUT_OF_HOST_MEMORY ? CT_ERR_NOMEM : CT_ERR_CL,
                     "clCreateBuffer(%zu bytes, the GEMM's transposed A) on %s failed: %s",
                     m * k * sizeof(float), dev->info.name, ct_cl_errname(err));
    }
    b->scratch_floats = m * k;
  }
  cl_uint u[4] = {(cl_uint)m, (cl_uint)k, (cl_uint)a_off, (cl_uint)lda};
  CL_CHECK(clSetKernelArg(kt, 0, sizeof(cl_uint), &u[0]));
  CL_CHECK(clSetKernelArg(kt, 1, sizeof(cl_uint), &u[1]));
  CL_CHECK(clSetKernelArg(kt, 2, sizeof(cl_mem), &a));
  CL_CHECK(clSetKernelArg(kt, 3, sizeof(cl_uint), &u[2]));
  CL_CHECK(clSetKernelArg(kt, 4, sizeof(cl_uint), &u[3]));
  CL_CHECK(clSetKernelArg(kt, 5, sizeof(cl_mem), &b->scratch));
  size_t global[2] = {(m + 7) / 8, (k + 7) / 8};
  err = clEnqueueNDRangeKernel(dev->queue, kt, 2, NULL, global, NULL, 0, NULL, NULL);
  if (err != CL_SUCCESS)
    return CT_FAIL(err == CL_OUT_OF_RESOURCES || err == CL_OUT_OF_HOST_MEMORY ? CT_ERR_NOMEM
                                                                              : CT_ERR_CL,
                   "clEnqueueNDRangeKernel(gemm_transpose m=%zu k=%zu) on %s failed: %s", m, k,
                   dev->info.name, ct_cl_errname(err));
  return CT_OK;
}

ct_status ct_gemm_own(ct_device *dev, const ct_gemm_tile *t, int trans_a, int trans_b, size_t m,
                      size_t n, size_t k, float alpha, cl_mem a, size_t a_off, size_t lda,
                      cl_mem b, size_t b_off, size_t ldb, float beta, cl_mem c, size_t c_off,
                      size_t ldc, cl_event *event) {
  if (m == 0 || n == 0) return CT_OK;
  CT_TRY(check_args("gemm_tile", m, n, k));
  const size_t lim = 0xffffffffu;
  size_t a_end = a_off + (trans_a ? (k - 1) * lda + m : (m - 1) * lda + k);
  size_t b_end = b_off + (trans_b ? (n - 1) * ldb + k : (k - 1) * ldb + n);
  size_t c_end = c_off + (m - 1) * ldc + n;
  if (m > lim || n > lim || k > lim || lda > lim || ldb > lim || ldc > lim || a_end > lim ||
      b_end > lim || c_end > lim)
    return CT_FAIL(CT_ERR_INTERNAL, "gemm_tile: m=%zu n=%zu k=%zu with its offsets exceeds 32-bit "
                   "indexing", m, n, k);
  if (trans_a && t->at && k > 0) {   // then the product of an A that is not transposed
    if (m * k > lim)
      return CT_FAIL(CT_ERR_INTERNAL, "gemm_transpose: m=%zu k=%zu exceeds 32-bit indexing", m, k);
    CT_TRY(transpose_a(dev, m, k, a, a_off, lda));
    trans_a = 0, a = dev->blas->scratch, a_off = 0, lda = k;
  }
  cl_kernel kern = NULL;
  CT_TRY(own_kernel(dev, t, trans_a, trans_b, &kern));
  cl_uint u[3] = {(cl_uint)m, (cl_uint)n, (cl_uint)k};
  cl_uint offs[3] = {(cl_uint)a_off, (cl_uint)b_off, (cl_uint)c_off};
  cl_uint lds[3] = {(cl_uint)lda, (cl_uint)ldb, (cl_uint)ldc};
  CL_CHECK(clSetKernelArg(kern, 0, sizeof(cl_uint), &u[0]));
  CL_CHECK(clSetKernelArg(kern, 1, sizeof(cl_uint), &u[1]));
  CL_CHECK(clSetKernelArg(kern, 2, sizeof(cl_uint), &u[2]));
  CL_CHECK(clSetKernelArg(kern, 3, sizeof(float), &alpha));
  CL_CHECK(clSetKernelArg(kern, 4, sizeof(cl_mem), &a));
  CL_CHECK(clSetKernelArg(kern, 5, sizeof(cl_uint), &offs[0]));
  CL_CHECK(clSetKernelArg(kern, 6, sizeof(cl_uint), &lds[0]));
  CL_CHECK(clSetKernelArg(kern, 7, sizeof(cl_mem), &b));
  CL_CHECK(clSetKernelArg(kern, 8, sizeof(cl_uint), &offs[1]));
  CL_CHECK(clSetKernelArg(kern, 9, sizeof(cl_uint), &lds[1]));
  CL_CHECK(clSetKernelArg(kern, 10, sizeof(float), &beta));
  CL_CHECK(clSetKernelArg(kern, 11, sizeof(cl_mem), &c));
  CL_CHECK(clSetKernelArg(kern, 12, sizeof(cl_uint), &offs[2]));
  CL_CHECK(clSetKernelArg(kern, 13, sizeof(cl_uint), &lds[2]));
  size_t rows = (m + (size_t)t->mr - 1) / (size_t)t->mr;
  size_t global[2] = {(rows + (size_t)t->lm - 1) / (size_t)t->lm * (size_t)t->lm,
                      (n + (size_t)(t->nv * t->vw) - 1) / (size_t)(t->nv * t->vw)};
  size_t local[2] = {(size_t)t->lm, 1};
  cl_int err = clEnqueueNDRangeKernel(dev->queue, kern, 2, NULL, global, local, 0, NULL, event);
  if (err != CL_SUCCESS)
    return CT_FAIL(err == CL_OUT_OF_RESOURCES || err == CL_OUT_OF_HOST_MEMORY ? CT_ERR_NOMEM
                                                                              : CT_ERR_CL,
                   "clEnqueueNDRangeKernel(gemm_tile m=%zu n=%zu k=%zu) on %s failed: %s", m, n,
                   k, dev->info.name, ct_cl_errname(err));
  return CT_OK;
}

// The tile a plan runs m rows with. CPUs (a work-group is a loop on one thread, any size works):
// the number of work-groups the plan's rows per group make nearest to m (at least one), each
// just big enough. A plan for 64 rows (LM*MR = 64) at its own group size would run 72 rows as
// two groups, the second mostly idle; as two groups of 36 rows (the rule before) it ran the
// mlp's 72x512x784 product at 31-41 GFLOP/s against 60-64 at 64 rows on PoCL and Intel's
// runtime; as one group of 72 rows at 65-69: the shares that --balance throughput hands out are
// seldom the tuned sizes. Other devices: a plan tuned for at least twice the rows shrinks its
// group to the rows there are (a power of two, at least 4; not for small differences, as every
// new size is a new kernel build).
ct_gemm_tile ct_gemm_fit_tile(const ct_device *dev, const ct_gemm_plan *p, size_t m) {
  ct_gemm_tile t = p->tile;
  if (m == p->m || m == 0) return t;
  size_t tiles = (m + (size_t)t.mr - 1) / (size_t)t.mr;
  if (dev->info.type & CL_DEVICE_TYPE_CPU) {
    size_t groups = (2 * tiles + (size_t)t.lm) / (2 * (size_t)t.lm);   // rounded to nearest
    if (groups < 1) groups = 1;
    size_t lm = (tiles + groups - 1) / groups;
    if (lm <= dev->info.max_wg) t.lm = (int)lm;
  } else if (2 * m <= p->m) {
    int lm = 1;
    while ((size_t)lm < tiles && lm < t.lm) lm *= 2;
    if (lm >= 4 && lm < t.lm) t.lm = lm;
  }
  return t;
}

// ---- dispatch -------------------------------------------------------------------------------

ct_status ct_gemm(ct_device *dev, const char *role, int trans_a, int trans_b, size_t m, size_t n,
                  size_t k, float alpha, cl_mem a, size_t a_off, size_t lda, cl_mem b,
                  size_t b_off, size_t ldb, float beta, cl_mem c, size_t c_off, size_t ldc) {
  if (m == 0 || n == 0) return CT_OK;
  trans_a = !!trans_a, trans_b = !!trans_b;
  if (dev->blas->recording) CT_TRY(record_call(dev->blas, role, trans_a, trans_b, m, n, k));
  const ct_gemm_plan *p = ct_blas_find_plan(dev, trans_a, trans_b, m, n, k);
  if (!p) p = ct_blas_default_plan(dev);
  int own = p && p->impl == CT_GEMM_OWN;
  int one_cmd = own && !(trans_a && p->tile.at);   // (at: a transpose, then the product)
  // Profiling: our kernel is one command with its own event; CLBlast may run several (padding,
  // transposes), and so does ours with a transpose ahead: the span starts at a marker.
  char name[96];
  double flops = 2.0 * (double)m * (double)n * (double)k;
  cl_event *ev = NULL;
  if (dev->prof) {
    snprintf(name, sizeof name, "gemm %s %c%c %zux%zux%zu %s", role, trans_a ? 'T' : 'N',
             trans_b ? 'T' : 'N', m, n, k, own ? "(own)" : "(clblast)");
    if (one_cmd) ev = ct_prof_event(dev, name, flops, CT_PROF_GEMM);
    else CT_TRY(ct_prof_span(dev, name, flops, CT_PROF_GEMM, &ev));
  }
  if (own) {
    ct_gemm_tile t = ct_gemm_fit_tile(dev, p, m);
    return ct_gemm_own(dev, &t, trans_a, trans_b, m, n, k, alpha, a, a_off, lda, b, b_off, ldb,
                       beta, c, c_off, ldc, ev);
  }
  return ct_gemm_clblast(dev, trans_a, trans_b, m, n, k, alpha, a, a_off, lda, b, b_off, ldb,
                         beta, c, c_off, ldc, ev);
}
