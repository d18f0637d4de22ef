// blas.h: every matrix product of cltrain goes through ct_gemm, which runs it with CLBlast or
// with cltrain's own kernel (cl/gemm.cl), whichever cltrain-tune measured faster on this device
// at this shape (tune.h holds the cache that records the choice).
//
// Defines: ct_gemm_shape (+ ct_gemm_same_shape, CT_GEMM_SHAPE_MEMBER), ct_gemm_impl, ct_gemm_tile (+ ct_gemm_tile_options, ct_gemm_tile_check),
// ct_gemm_plan, ct_gemm_call, struct ct_blas_state, ct_blas_init / _free, ct_blas_set_plans,
// ct_blas_find_plan, ct_blas_default_plan, ct_gemm_fit_tile, ct_blas_record, ct_gemm,
// ct_gemm_clblast, ct_gemm_own, ct_blas_apply_clblast, ct_clblast_version, ct_clblast_library,
// ct_blas_cpu_xgemm, CT_CLBLAST_XGEMM_NAMES, CT_CLBLAST_XGEMM_DIRECT_NAMES.
//
// Row-major throughout: C(m,n) = alpha * op(A)(m,k) * op(B)(k,n) + beta * C, where op(X) is X or
// its transpose; offsets and leading dimensions are in floats.
//
// Which implementation runs a call: the plan of the same shape and transposes when the device's
// plan table has one; otherwise the plan with the same transposes whose shape is nearest (by the
// sum of log ratios; n and k within a factor of 4, m any: m follows the batch share, which
// changes with the shares and in the epoch's last batch); otherwise the device's default:
// on a CPU (not a simulator) cltrain's own kernel with a fixed tile (ct_blas_default_plan),
// elsewhere CLBlast (with the Xgemm parameters below on CPUs that CLBlast's database does not
// know, where a plan chooses CLBlast).
#ifndef CLTRAIN_BLAS_H
#define CLTRAIN_BLAS_H

#include <stddef.h>

#include "cltrain/device.h"

typedef enum { CT_GEMM_CLBLAST, CT_GEMM_OWN } ct_gemm_impl;

// The -D options of cl/gemm.cl: an MR x (NV*VW) register tile per work-item, LM work-items per
// work-group, KB rows of op(B) per local-memory panel. at: a transposed A is transposed ahead
// (gemm_transpose, into a scratch buffer of the device's) and the product runs as if it were
// not: the kernel's loads of a transposed A step a whole row of A per k, and where that row is
// 2 KiB long (the mlp's 512-wide layers) they fall on few cache sets (ignored when A is not
// transposed; the same operations in the same order, so the same bits).
typedef struct {
  int mr, nv, vw, lm, kb, at;
} ct_gemm_tile;

// A product's shape: C(m, n) = op(A)(m, k) * op(B)(k, n), ta / tb: whether A / B are transposed.
// The plans, the recorded calls and the tuner's shapes hold one (as `shape`, its fields also by
// name) and compare them with ct_gemm_same_shape, the one test of "the same product".
typedef struct {
  int ta, tb;
  size_t m, n, k;
} ct_gemm_shape;
#define CT_GEMM_SHAPE_MEMBER   \
  union {                      \
    ct_gemm_shape shape;       \
    struct {                   \
      int ta, tb;              \
      size_t m, n, k;          \
    };                         \
  }
static inline int ct_gemm_same_shape(const ct_gemm_shape *a, const ct_gemm_shape *b) {
  return a->ta == b->ta && a->tb == b->tb && a->m == b->m && a->n == b->n && a->k == b->k;
}

typedef struct {
  CT_GEMM_SHAPE_MEMBER;  // transposes of A and B, and the sizes
  ct_gemm_impl impl;
  ct_gemm_tile tile;     // impl == CT_GEMM_OWN
  double gflops;         // what cltrain-tune measured for this choice (0: unknown)
  double gflops_default; // ... and for the defaults it replaced (0: unknown)
} ct_gemm_plan;

// A call seen while recording (ct_blas_record): what the model issues.
typedef struct {
  char role[48];         // "dense forward", "conv backward-weights", ...
  CT_GEMM_SHAPE_MEMBER;
  long calls;
} ct_gemm_call;

struct ct_blas_state {
  int overridden;            // Xgemm parameters were overridden for this device
  ct_gemm_plan dflt;         // the shapes without a plan: own kernel when have_dflt, else CLBlast
  int have_dflt;
  ct_gemm_plan *plans;       // per-shape choices (ct_blas_set_plans), may be NULL
  int nplans;
  double best_gflops;        // best SGEMM rate measured on this device (tuning cache), 0 = unknown
  char source[512];          // where the choices come from: "defaults" or the cache's path
  ct_gemm_call *record;      // recorded calls (ct_blas_record), NULL when not recording
  int nrecord, caprecord, recording;
  struct ct_gemm_kernel *kernels;   // built cl/gemm.cl kernels, one per option set
  int nkernels, capkernels;
  cl_mem scratch;            // tiles with at: the transposed A (gemm_transpose), grown as needed
  size_t scratch_floats;
};

ct_status ct_blas_init(ct_device *dev);
void ct_blas_free(ct_device *dev);

// What runs a shape that has no plan: cltrain's own kernel with a fixed tile on a CPU (NULL
// elsewhere: CLBlast; and everywhere with CLTRAIN_BLAS_DEFAULTS set, to measure CLBlast's own
// choice).
const ct_gemm_plan *ct_blas_default_plan(const ct_device *dev);

// Replaces the device's plan table by a copy of plans[0..n) (n = 0 clears it).
ct_status ct_blas_set_plans(ct_device *dev, const ct_gemm_plan *plans, int n);
// The plan of the tuning cache ct_gemm would use for this shape, or NULL (the device's default).
const ct_gemm_plan *ct_blas_find_plan(const ct_device *dev, int ta, int tb, size_t m, size_t n,
                                      size_t k);
// The tile ct_gemm runs plan p's own kernel with at m rows (p->tile at p->m; another row count
// changes the work-group size LM to suit it).
ct_gemm_tile ct_gemm_fit_tile(const ct_device *dev, const ct_gemm_plan *p, size_t m);
// on = 1: from now on every ct_gemm call is also recorded (deduplicated by role and shape);
// on = 0: stops. The record stays in dev->blas->record until the next start.
ct_status ct_blas_record(ct_device *dev, int on);

// The product, by the implementation the plan table chooses. `role` names the call for
// recording and profiling (a string that outlives the call, e.g. a literal).
ct_status ct_gemm(ct_device *dev, const char *role, int trans_a, int trans_b, size_t m, size_t n,
                  size_t k, float alpha, cl_mem a, size_t a_off, size_t lda, cl_mem b,
                  size_t b_off, size_t ldb, float beta, cl_mem c, size_t c_off, size_t ldc);
// The same product through one implementation, for the tuner and the tests.
ct_status ct_gemm_clblast(ct_device *dev, int trans_a, int trans_b, size_t m, size_t n, size_t k,
                          float alpha, cl_mem a, size_t a_off, size_t lda, cl_mem b,
                          size_t b_off, size_t ldb, float beta, cl_mem c, size_t c_off,
                          size_t ldc, cl_event *event);
ct_status ct_gemm_own(ct_device *dev, const ct_gemm_tile *tile, int trans_a, int trans_b,
                      size_t m, size_t n, size_t k, float alpha, cl_mem a, size_t a_off,
                      size_t lda, cl_mem b, size_t b_off, size_t ldb, float beta, cl_mem c,
                      size_t c_off, size_t ldc, cl_event *event);

// cl/gemm.cl's build options for a tile and transposes ("-DMR=4 -DNV=3 ...").
void ct_gemm_tile_options(const ct_gemm_tile *t, int ta, int tb, char *buf, size_t size);
// CT_ERR_USAGE when the tile is not one cl/gemm.cl accepts on this device (VW in {4, 8, 16},
// MR and NV >= 1, MR*NV <= 64, LM within the work-group limit, the panel within local memory).
ct_status ct_gemm_tile_check(const ct_device *dev, const ct_gemm_tile *t);

// CLBlast's tunable parameters of one kernel ("Xgemm", "XgemmDirect" or "GemmRoutine"):
// CLBlastOverrideParameters for this device. n = 0 does nothing.
ct_status ct_blas_apply_clblast(ct_device *dev, const char *kernel, const char *const *names,
                                const size_t *values, int n);
// CLBlast's version as found at run time ("1.5.3", from the loaded library's file name), or
// "unknown" (CLBlast has no version query; a static or unversioned library gives "unknown").
void ct_clblast_version(char *buf, size_t size);
// The real path of the CLBlast library this process loaded, or "" when it cannot be told.
void ct_clblast_library(char *buf, size_t size);
// The Xgemm parameters ct_blas_init sets on CPUs CLBlast has no tuning for (names below).
extern const size_t ct_blas_cpu_xgemm[16];

// The parameter names CLBlast 1.5 expects for each kernel, in its order.
extern const char *const CT_CLBLAST_XGEMM_NAMES[16];
extern const char *const CT_CLBLAST_XGEMM_DIRECT_NAMES[10];

#endif
