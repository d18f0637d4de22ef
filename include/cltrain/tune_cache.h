// tune_cache.h: the GEMM tuning cache: the file that records what the tuner (tune.h) found for a
// device, for every later run on the same device.
//
// Defines: ct_tune_cache (+ ct_tune_cache_free, ct_tune_cache_path, ct_tune_cache_read,
// ct_tune_cache_write, ct_tune_cache_apply), ct_tune_load.
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
#ifndef CLTRAIN_TUNE_CACHE_H
#define CLTRAIN_TUNE_CACHE_H

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

#endif
