// tune.h: per-device GEMM tuning: the search cltrain-tune (and `cltrain --tune`) runs. What it
// finds goes into the device's tuning cache (tune_cache.h), which every later run applies.
//
// Defines: ct_tune_options (+ ct_tune_options_defaults), ct_tune_shape, ct_tune_run,
// ct_tune_bench, ct_tune_model_shapes, ct_tune_add_bench_shapes, ct_tune_and_save,
// ct_tune_bench_sizes.
#ifndef CLTRAIN_TUNE_H
#define CLTRAIN_TUNE_H

#include <stdio.h>

#include "cltrain/blas.h"
#include "cltrain/tune_cache.h"

typedef struct {
  double budget_s;        // the search stops trying new candidates after about this long
  int clblast_search;     // also search CLBlast's Xgemm / XgemmDirect parameters
  int own;                // also try cltrain's own kernel
  int verbose;            // one line per candidate on `log`
  FILE *log;              // progress lines (NULL: quiet)
} ct_tune_options;
void ct_tune_options_defaults(ct_tune_options *o);

typedef struct {
  char role[48];
  CT_GEMM_SHAPE_MEMBER;   // blas.h
  double gflops_before;   // with the device's defaults, before the search
  double gflops_after;    // with the chosen implementation
} ct_tune_shape;

// Tunes dev for shapes[0..n) (the GEMMs a model issues; role, ta, tb, m, n, k filled in) and
// fills gflops_before / gflops_after of each, and *out (platform, device, driver, CLBlast
// version, CLBlast parameters, one plan per shape, best_gflops). Leaves dev with the result
// applied.
ct_status ct_tune_run(ct_device *dev, ct_tune_shape *shapes, int n, const ct_tune_options *o,
                      ct_tune_cache *out);

// Measures each shape as ct_gemm runs it now (the device's plans), `rounds` interleaved rounds,
// the best of each: gflops_after.
ct_status ct_tune_bench(ct_device *dev, ct_tune_shape *shapes, int n, int rounds);

// The GEMMs a model issues in one training step (forward and backward) at each of the per-rank
// batches batches[0..nb): a forward and backward pass with ct_blas_record on. *shapes is
// malloc'ed (free it), roles filled in, deduplicated.
struct ct_arch;
ct_status ct_tune_model_shapes(ct_device *dev, const struct ct_arch *arch, const int *batches,
                               int nb, ct_tune_shape **shapes, int *n);
// Adds the bench's square shapes (below) to a list made by ct_tune_model_shapes (realloc).
ct_status ct_tune_add_bench_shapes(ct_tune_shape **shapes, int *n);
// Runs ct_tune_run and writes the cache for dev to `path`, keeping the plans an existing cache
// (for the same platform, device, driver and CLBlast) has for shapes not tuned now. *out gets
// what was written.
ct_status ct_tune_and_save(ct_device *dev, ct_tune_shape *shapes, int n,
                           const ct_tune_options *o, const char *path, ct_tune_cache *out);

// The square shapes cltrain-devices --bench measures (128^3, 512^3, 1024^3, NN), which the
// tuner adds to a model's shapes so that the bench reports the tuned rate.
#define CT_TUNE_BENCH_SHAPES 3
extern const size_t ct_tune_bench_sizes[CT_TUNE_BENCH_SHAPES];

#endif
