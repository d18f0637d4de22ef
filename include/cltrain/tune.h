// tune.h: per-device GEMM tuning: the search cltrain-tune (and `cltrain --tune`) runs, and the
// cache file that records its result for every later run on the same device.
//
// Defines: ct_tune_cache (+ ct_tune_cache_free, ct_tune_cache_path, ct_tune_cache_read,
// ct_tune_cache_write, ct_tune_cache_apply), ct_tune_load, ct_tune_options
// (+ ct_tune_options_defaults), ct_tune_shape, ct_tune_run, ct_tune_bench_shapes.
//
// The cache is a text file, one per device, under $XDG_CACHE_HOME/cltrain/ (default
// ~/.cache/cltrain/), named after the platform, the device and its compute units. It says which platform, device,
// driver and CLBlast version it was measured with; a file written for another driver or CLBlast
// version is stale, and a file that does not parse is damaged: either way ct_tune_load gives one
// warning line and the device keeps its defaults (never a failure). Example:
//
//   # cltrain GEMM tuning cache, written by cltrain-tune; one setting per line
//   format 1
//   platform Portable Computing Language
//   device pthread-haswell-AMD EPYC
//   driver 3.1
//   clblast 1.5.3
//   best_gflops 68.2
//   xgemm GEMMK=0 KREG=1 KWG=16 ...          (CLBlast's Xgemm parameters, all 16)
//   xgemm_direct KWID=2 MDIMAD=8 ...         (XgemmDirect, all 10)
//   gemm_routine XGEMM_MIN_INDIRECT_SIZE=320
//   gemm NT 128 512 784 own MR=4 NV=3 VW=8 LM=32 KB=256 gflops=58.1 default=17.5
//   gemm TN 64 384 25088 clblast gflops=31.0 default=31.0
//
// `gemm` lines are the per-shape plans of blas.h; lines that are absent leave the defaults.
#ifndef CLTRAIN_TUNE_H
#define CLTRAIN_TUNE_H

#include <stdio.h>

#include "cltrain/blas.h"

typedef struct {
  char platform[128], device[128], driver[64], clblast[32];
  double best_gflops;             // best SGEMM rate measured on the device, any shape
  int has_xgemm, has_xgemm_direct, has_routine;
  size_t xgemm[16];               // in CT_CLBLAST_XGEMM_NAMES order
  size_t xgemm_direct[10];        // in CT_CLBLAST_XGEMM_DIRECT_NAMES order
  size_t min_indirect;            // GemmRoutine XGEMM_MIN_INDIRECT_SIZE
  ct_gemm_plan *plans;
  int nplans;
} ct_tune_cache;

void ct_tune_cache_free(ct_tune_cache *c);
// <folder>/<platform>--<device>--<compute units>cu.txt, names reduced to [A-Za-z0-9._-] (a CPU
// runtime limited to fewer threads reports fewer compute units: a cache of its own); the folder is
// $CLTRAIN_CACHE_DIR if set, else $XDG_CACHE_HOME/cltrain, else ~/.cache/cltrain.
// CT_ERR_NOTFOUND when none of the three can be formed.
ct_status ct_tune_cache_path(const ct_device_info *info, char *buf, size_t size);
// CT_ERR_NOTFOUND when the file does not exist, CT_ERR_FORMAT (the message names the line) when
// it does not parse. On failure *c is left empty.
ct_status ct_tune_cache_read(const char *path, ct_tune_cache *c);
// Atomically (temporary file, fsync, rename), creating the folder when needed.
ct_status ct_tune_cache_write(const char *path, const ct_tune_cache *c);
// Applies a cache to an opened device: CLBlast parameters and the plan table.
ct_status ct_tune_cache_apply(ct_device *dev, const ct_tune_cache *c, const char *path);
// Finds, checks and applies this device's cache (ct_tune_cache_path; if there is none, the same
// device's cache for the nearest other number of compute units). *status: 1 applied, 0 no cache,
// -1 stale or
// damaged (then `warning` holds one line saying which file and why, and the device keeps its
// defaults). Fails only when the cache folder cannot be named.
ct_status ct_tune_load(ct_device *dev, int *status, char *warning, size_t size);

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
