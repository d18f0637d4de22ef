// tune.c: the search behind cltrain-tune (and --tune); the cache it writes is tune_cache.c.
//
// The search, per device, for the GEMM shapes a model issues:
//   1. "before": every shape with the device's defaults (CLBlast, cltrain's fixed parameters).
//   2. CLBlast (clblast_search): a seeded random sample of Xgemm parameter sets and of
//      XgemmDirect sets, set through CLBlastOverrideParameters and scored by the total time of
//      the shapes each kernel runs; then the direct/indirect switch point that minimises the
//      total time given both kernels' times per shape.
//   3. cltrain's kernel (own): per shape, a sweep of register tiles (MR x NV vectors of VW) at a
//      work-group size that covers M, then the work-group size and panel depth around the three
//      best tiles.
//   4. Per shape, the best of 3 and CLBlast, measured again side by side in interleaved rounds
//      (this machine's speed drifts by tens of percent between seconds), keeping each one's best.
// Every timing is a throughput: R back-to-back calls, one clFinish, the best of several batches.
#include "cltrain/tune.h"

#include <clblast_c.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/model.h"
#include "cltrain/timer.h"

// ---- the search ---------------------------------------------------------------------------------

const size_t ct_tune_bench_sizes[CT_TUNE_BENCH_SHAPES] = {128, 512, 1024};

void ct_tune_options_defaults(ct_tune_options *o) {
  memset(o, 0, sizeof *o);
  o->budget_s = 240;
  o->clblast_search = 1;
  o->own = 1;
}

typedef struct {
  ct_device *dev;
  const ct_tune_options *o;
  cl_mem a, b, c;          // big enough for every shape
  double t0;               // start of the search
  double deadline;         // no new candidates after this (ct_now() clock)
} tuner;

typedef struct {
  int own;               // 1: cltrain's kernel with `tile`; 0: CLBlast; -1: ct_gemm's own choice
  ct_gemm_tile tile;
} candidate;

static ct_status run_once(tuner *t, const candidate *cand, const ct_tune_shape *s) {
  size_t lda = s->ta ? s->m : s->k, ldb = s->tb ? s->k : s->n;
  if (cand->own < 0)
    return ct_gemm(t->dev, s->role, s->ta, s->tb, s->m, s->n, s->k, 1.0f, t->a, 0, lda, t->b, 0,
                   ldb, 0.0f, t->c, 0, s->n);
  if (cand->own)
    return ct_gemm_own(t->dev, &cand->tile, s->ta, s->tb, s->m, s->n, s->k, 1.0f, t->a, 0, lda,
                       t->b, 0, ldb, 0.0f, t->c, 0, s->n, NULL);
  return ct_gemm_clblast(t->dev, s->ta, s->tb, s->m, s->n, s->k, 1.0f, t->a, 0, lda, t->b, 0,
                         ldb, 0.0f, t->c, 0, s->n, NULL);
}

// Seconds per call: a first call (builds kernels), then `batches` batches of back-to-back calls
// (each batch about 20 ms, at least 2 calls), the best batch. An implementation that fails
// (a parameter set CLBlast rejects, a kernel that does not build) gives +inf.
static double measure(tuner *t, const candidate *cand, const ct_tune_shape *s, int batches) {
  if (run_once(t, cand, s) != CT_OK || clFinish(t->dev->queue) != CL_SUCCESS) {
    ct_error_clear();
    return INFINITY;
  }
  double t0 = ct_now();
  if (run_once(t, cand, s) != CT_OK || clFinish(t->dev->queue) != CL_SUCCESS) {
    ct_error_clear();
    return INFINITY;
  }
  double one = ct_now() - t0;
  int reps = one > 0 ? (int)(0.02 / one) : 100;
  if (reps < 2) reps = 2;
  if (reps > 200) reps = 200;
  double best = INFINITY;
  for (int b = 0; b < batches; b++) {
    t0 = ct_now();
    for (int r = 0; r < reps; r++)
      if (run_once(t, cand, s) != CT_OK) {
        ct_error_clear();
        clFinish(t->dev->queue);
        return INFINITY;
      }
    if (clFinish(t->dev->queue) != CL_SUCCESS) return INFINITY;
    double dt = (ct_now() - t0) / reps;
    if (dt < best) best = dt;
  }
  return best;
}

static double gflops(const ct_tune_shape *s, double sec) {
  return isfinite(sec) && sec > 0 ? 2.0 * (double)s->m * (double)s->n * (double)s->k / sec / 1e9 : 0;
}

static int over_budget(const tuner *t) { return ct_now() > t->deadline; }

static void say(const tuner *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const tuner *t, const char *fmt, ...) {
  if (!t->o->log) return;
  va_list ap;
  va_start(ap, fmt);
  vfprintf(t->o->log, fmt, ap);
  va_end(ap);
  fflush(t->o->log);
}

// splitmix64 for the seeded samples of CLBlast's parameter space
static uint64_t mix(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
static size_t pick(uint64_t *rng, const size_t *v, int n) { return v[mix(rng) % (uint64_t)n]; }

// A random Xgemm set satisfying CLBlast's constraints (GEMMK 0), in CT_CLBLAST_XGEMM_NAMES order:
// GEMMK KREG KWG KWI MDIMA MDIMC MWG NDIMB NDIMC NWG SA SB STRM STRN VWM VWN.
static void random_xgemm(uint64_t *rng, const ct_device *dev, size_t *v) {
  static const size_t wg[] = {16, 32, 64, 128}, dim[] = {8, 16, 32}, vw[] = {1, 2, 4, 8},
                      kwg[] = {16, 32}, bit[] = {0, 1};
  for (int tries = 0; tries < 10000; tries++) {
    size_t mwg = pick(rng, wg, 4), nwg = pick(rng, wg, 4), k = pick(rng, kwg, 2);
    size_t mdimc = pick(rng, dim, 3), ndimc = pick(rng, dim, 3);
    size_t mdima = pick(rng, dim, 3), ndimb = pick(rng, dim, 3);
    size_t vwm = pick(rng, vw, 4), vwn = pick(rng, vw, 4);
    size_t sa = pick(rng, bit, 2), sb = pick(rng, bit, 2);
    if (dev->info.type & CL_DEVICE_TYPE_CPU) sa = sb = 0, vwm = vwm < 4 ? 4 : vwm, vwn = vwn < 4 ? 8 : vwn;
    if (mdimc * ndimc > dev->info.max_wg || mdimc * ndimc > 1024) continue;
    if (mwg % (mdimc * vwm) || nwg % (ndimc * vwn) || mwg % (mdima * vwm) || nwg % (ndimb * vwn))
      continue;
    if (k % ((mdimc * ndimc) / mdima) || k % ((mdimc * ndimc) / ndimb)) continue;
    size_t local = (sa ? k * mwg : 0) + (sb ? k * nwg : 0);
    if (local * 4 > dev->info.local_mem) continue;
    size_t out[16] = {0, 1, k, 2, mdima, mdimc, mwg, ndimb, ndimc, nwg, sa, sb,
                      pick(rng, bit, 2), pick(rng, bit, 2), vwm, vwn};
    memcpy(v, out, sizeof out);
    return;
  }
  static const size_t safe[16] = {0, 1, 16, 2, 8, 8, 64, 8, 8, 64, 0, 0, 0, 0, 1, 1};
  memcpy(v, safe, sizeof safe);
}

// XgemmDirect, in CT_CLBLAST_XGEMM_DIRECT_NAMES order: KWID MDIMAD MDIMCD NDIMBD NDIMCD PADA PADB
// VWMD VWND WGD.
static void random_xgemm_direct(uint64_t *rng, const ct_device *dev, size_t *v) {
  static const size_t wgd[] = {8, 16, 32, 64}, dim[] = {8, 16, 32}, vw[] = {1, 2, 4, 8},
                      kwi[] = {2, 8}, bit[] = {0, 1};
  for (int tries = 0; tries < 10000; tries++) {
    size_t w = pick(rng, wgd, 4), mc = pick(rng, dim, 3), nc = pick(rng, dim, 3);
    size_t ma = pick(rng, dim, 3), nb = pick(rng, dim, 3), vm = pick(rng, vw, 4),
           vn = pick(rng, vw, 4), kw = pick(rng, kwi, 2);
    if (mc * nc > dev->info.max_wg || mc * nc > 1024) continue;
    if (w % (mc * vm) || w % (nc * vn) || w % (ma * vm) || w % (nb * vn) || w % kw) continue;
    if (w % ((mc * nc) / ma) || w % ((mc * nc) / nb)) continue;
    if (2 * w * (w + 1) * 4 > dev->info.local_mem) continue;
    size_t out[10] = {kw, ma, mc, nb, nc, pick(rng, bit, 2), pick(rng, bit, 2), vm, vn, w};
    memcpy(v, out, sizeof out);
    return;
  }
  static const size_t safe[10] = {2, 8, 8, 8, 8, 1, 1, 1, 1, 8};
  memcpy(v, safe, sizeof safe);
}

static ct_status set_indirect(ct_device *dev, size_t min_indirect) {
  static const char *const rn[] = {"XGEMM_MIN_INDIRECT_SIZE"};
  CT_TRY(ct_blas_apply_clblast(dev, "GemmRoutine", rn, &min_indirect, 1));
  CLBlastClearCache();
  return CT_OK;
}

// Total time of the shapes with CLBlast as it is set now; per-shape times in sec[] (may be NULL).
static double clblast_total(tuner *t, ct_tune_shape *shapes, int n, double *sec, int batches) {
  static const candidate cl = {0, {0, 0, 0, 0, 0, 0}};
  double total = 0;
  for (int i = 0; i < n; i++) {
    double s = measure(t, &cl, &shapes[i], batches);
    if (sec) sec[i] = s;
    total += s;
  }
  return total;
}

// CLBlast: Xgemm on the shapes it runs indirectly, XgemmDirect on the others, then the switch.
static ct_status search_clblast(tuner *t, ct_tune_shape *shapes, int n, ct_tune_cache *out,
                                double *cl_sec) {
  ct_device *dev = t->dev;
  uint64_t rng = 0x636c747261696eULL;   // seeded: the same candidates on every run
  double *direct = calloc((size_t)n, sizeof *direct), *indirect = calloc((size_t)n, sizeof *indirect);
  if (!direct || !indirect) {
    free(direct), free(indirect);
    return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  }
  ct_status st = CT_OK;
  // Xgemm, every shape forced through the indirect kernel
  CT_GOTO(set_indirect(dev, 0), st, out);
  size_t best[16];
  double best_t = INFINITY;
  int have_current = dev->blas->overridden;
  int tried = 0;
  for (int c = 0; c < 48 && !over_budget(t); c++) {
    size_t v[16];
    if (c == 0 && have_current) {
      memcpy(v, ct_blas_cpu_xgemm, sizeof v);
    } else {
      random_xgemm(&rng, dev, v);
    }
    if (ct_blas_apply_clblast(dev, "Xgemm", CT_CLBLAST_XGEMM_NAMES, v, 16) != CT_OK) {
      ct_error_clear();
      continue;
    }
    CLBlastClearCache();
    double tt = clblast_total(t, shapes, n, NULL, 1);
    tried++;
    if (t->o->verbose)
      say(t, "  xgemm MWG=%zu NWG=%zu KWG=%zu MDIMC=%zu NDIMC=%zu VWM=%zu VWN=%zu SA=%zu SB=%zu: %.2f ms\n",
          v[6], v[9], v[2], v[5], v[8], v[14], v[15], v[10], v[11], tt * 1e3);
    if (tt < best_t) best_t = tt, memcpy(best, v, sizeof best);
  }
  if (isfinite(best_t)) {
    CT_GOTO(ct_blas_apply_clblast(dev, "Xgemm", CT_CLBLAST_XGEMM_NAMES, best, 16), st, out);
    memcpy(out->xgemm, best, sizeof best);
    out->has_xgemm = 1;
  }
  CLBlastClearCache();
  clblast_total(t, shapes, n, indirect, 3);
  say(t, "clblast: Xgemm, %d parameter sets tried\n", tried);
  // XgemmDirect, every shape forced through the direct kernel
  CT_GOTO(set_indirect(dev, 4096), st, out);   // m*n*k < 4096^3: every shape here
  best_t = INFINITY;
  tried = 0;
  for (int c = 0; c < 32 && !over_budget(t); c++) {
    size_t v[10];
    random_xgemm_direct(&rng, dev, v);
    if (ct_blas_apply_clblast(dev, "XgemmDirect", CT_CLBLAST_XGEMM_DIRECT_NAMES, v, 10) != CT_OK) {
      ct_error_clear();
      continue;
    }
    CLBlastClearCache();
    double tt = clblast_total(t, shapes, n, NULL, 1);
    tried++;
    if (tt < best_t) best_t = tt, memcpy(out->xgemm_direct, v, sizeof v);
  }
  if (isfinite(best_t)) {
    CT_GOTO(ct_blas_apply_clblast(dev, "XgemmDirect", CT_CLBLAST_XGEMM_DIRECT_NAMES,
                                  out->xgemm_direct, 10), st, out);
    out->has_xgemm_direct = 1;
  }
  CLBlastClearCache();
  clblast_total(t, shapes, n, direct, 3);
  say(t, "clblast: XgemmDirect, %d parameter sets tried\n", tried);
  // the switch: direct below cbrt(m*n*k) < T
  {
    static const size_t cand[] = {0, 64, 128, 192, 256, 320, 384, 512, 768, 1024, 1536, 2048, 4096};
    double best_total = INFINITY;
    size_t best_th = 320;
    for (size_t c = 0; c < sizeof cand / sizeof cand[0]; c++) {
      double tot = 0;
      for (int i = 0; i < n; i++) {
        double size = (double)shapes[i].m * (double)shapes[i].n * (double)shapes[i].k;
        tot += size < (double)cand[c] * cand[c] * cand[c] ? direct[i] : indirect[i];
      }
      if (tot < best_total) best_total = tot, best_th = cand[c];
    }
    for (int i = 0; i < n; i++) {
      double size = (double)shapes[i].m * (double)shapes[i].n * (double)shapes[i].k;
      cl_sec[i] = size < (double)best_th * best_th * best_th ? direct[i] : indirect[i];
    }
    out->min_indirect = best_th;
    out->has_routine = 1;
    CT_GOTO(set_indirect(dev, best_th), st, out);
    say(t, "clblast: direct below %zu^3, indirect above\n", best_th);
  }
out:
  free(direct), free(indirect);
  return st;
}

// Work-group size along M that covers M rows with tiles of mr, between 4 and 64.
static int lm_for(size_t m, int mr, size_t max_wg) {
  size_t tiles = (m + (size_t)mr - 1) / (size_t)mr;
  int lm = 4;
  while ((size_t)lm < tiles && lm < 64) lm *= 2;
  while ((size_t)lm > max_wg && lm > 1) lm /= 2;
  return lm;
}

typedef struct {
  ct_gemm_tile tile;
  double sec;
} scored;

static int by_time(const void *a, const void *b) {
  double x = ((const scored *)a)->sec, y = ((const scored *)b)->sec;
  return x < y ? -1 : x > y;
}

// cltrain's kernel at one shape: tiles, then work-group size and panel depth around the best.
static ct_status search_own(tuner *t, const ct_tune_shape *s, ct_gemm_tile *best, double *best_sec) {
  ct_device *dev = t->dev;
  cl_uint pref = 0;
  clGetDeviceInfo(dev->info.id, CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT, sizeof pref, &pref, NULL);
  int vws[2], nvw = 0;
  if (dev->info.type & CL_DEVICE_TYPE_CPU) {
    vws[nvw++] = 8;
    if (pref >= 16) vws[nvw++] = 16;
  } else {
    vws[nvw++] = 4;
    vws[nvw++] = 8;
  }
  static const int tiles[][2] = {{2, 4}, {3, 2}, {3, 3}, {3, 4}, {4, 2}, {4, 3}, {5, 2},
                                 {6, 2}, {8, 1}, {4, 1}, {6, 1}, {2, 6}, {4, 4}};
  scored *sc = calloc(64, sizeof *sc);
  if (!sc) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  int nsc = 0;
  for (int v = 0; v < nvw; v++)
    for (size_t i = 0; i < sizeof tiles / sizeof tiles[0] && nsc < 64; i++) {
      int mr = tiles[i][0], nv = tiles[i][1] * 8 / vws[v];
      if (nv < 1) continue;
      candidate c = {1, {mr, nv, vws[v], lm_for(s->m, mr, dev->info.max_wg), 256, 0}};
      while (c.tile.kb > 32 && ct_gemm_tile_check(dev, &c.tile) != CT_OK) c.tile.kb /= 2;
      if (ct_gemm_tile_check(dev, &c.tile) != CT_OK) {
        ct_error_clear();
        continue;
      }
      int dup = 0;
      for (int j = 0; j < nsc; j++) dup |= !memcmp(&sc[j].tile, &c.tile, sizeof c.tile);
      if (dup) continue;
      sc[nsc].tile = c.tile;
      sc[nsc].sec = nsc > 0 && over_budget(t) ? INFINITY : measure(t, &c, s, 2);
      if (t->o->verbose)
        say(t, "  own MR=%d NV=%d VW=%d LM=%d KB=%d: %.1f GFLOP/s\n", c.tile.mr, c.tile.nv,
            c.tile.vw, c.tile.lm, c.tile.kb, gflops(s, sc[nsc].sec));
      nsc++;
    }
  qsort(sc, (size_t)nsc, sizeof *sc, by_time);
  // around the best three: work-group size x 1/2, 2 and panel depth 128, 512
  int top = nsc < 3 ? nsc : 3;
  scored *more = calloc((size_t)top * 8 + 1, sizeof *more);
  int nmore = 0;
  for (int i = 0; i < top && more && isfinite(sc[i].sec); i++) {
    more[nmore++] = sc[i];
    static const int lmul[] = {1, 2, 1, 1}, ldiv[] = {2, 1, 1, 1}, kbs[] = {0, 0, 128, 512};
    for (int j = 0; j < 4; j++) {
      candidate c = {1, sc[i].tile};
      c.tile.lm = c.tile.lm * lmul[j] / ldiv[j];
      if (kbs[j]) c.tile.kb = kbs[j];
      if (c.tile.lm < 1 || ct_gemm_tile_check(dev, &c.tile) != CT_OK) {
        ct_error_clear();
        continue;
      }
      if (over_budget(t)) break;
      more[nmore].tile = c.tile;
      more[nmore].sec = measure(t, &c, s, 2);
      if (t->o->verbose)
        say(t, "  own MR=%d NV=%d VW=%d LM=%d KB=%d: %.1f GFLOP/s\n", c.tile.mr, c.tile.nv,
            c.tile.vw, c.tile.lm, c.tile.kb, gflops(s, more[nmore].sec));
      nmore++;
    }
  }
  // a transposed A: the best tile again with A transposed ahead (tile.at), the two measured in
  // turns, three times each (even past the budget: a fraction of a second). The gain is 5-20 %
  // and the machines this runs on move by more than that between two measurements, so the
  // choice is made on the pair, not against a time measured earlier.
  if (s->ta && more && nmore) {
    qsort(more, (size_t)nmore, sizeof *more, by_time);
    candidate plain = {1, more[0].tile}, ahead = {1, more[0].tile};
    ahead.tile.at = 1;
    double sp = INFINITY, sa = INFINITY;
    for (int r = 0; r < 3 && isfinite(more[0].sec); r++) {
      double x = measure(t, &plain, s, 1), y = measure(t, &ahead, s, 1);
      if (x < sp) sp = x;
      if (y < sa) sa = y;
    }
    if (t->o->verbose)
      say(t, "  own MR=%d NV=%d VW=%d LM=%d KB=%d: %.1f GFLOP/s, with AT=1: %.1f (in turns)\n",
          plain.tile.mr, plain.tile.nv, plain.tile.vw, plain.tile.lm, plain.tile.kb,
          gflops(s, sp), gflops(s, sa));
    if (sa < sp) more[0].tile = ahead.tile, more[0].sec = sa;
    else if (sp < more[0].sec) more[0].sec = sp;
  }
  ct_status st = CT_OK;
  if (more && nmore) {
    qsort(more, (size_t)nmore, sizeof *more, by_time);
    *best = more[0].tile;
    *best_sec = more[0].sec;
  } else if (nsc) {
    *best = sc[0].tile;
    *best_sec = sc[0].sec;
  } else {
    *best_sec = INFINITY;
  }
  free(more);
  free(sc);
  return st;
}

static ct_status alloc_buffers(tuner *t, const ct_tune_shape *shapes, int n) {
  size_t na = 1, nb = 1, nc = 1;
  for (int i = 0; i < n; i++) {
    const ct_tune_shape *s = &shapes[i];
    if (s->m * s->k > na) na = s->m * s->k;
    if (s->k * s->n > nb) nb = s->k * s->n;
    if (s->m * s->n > nc) nc = s->m * s->n;
  }
  size_t most = na > nb ? na : nb;
  if (nc > most) most = nc;
  float *h = malloc(most * sizeof *h);
  if (!h) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  uint64_t rng = 1;
  for (size_t i = 0; i < most; i++) h[i] = (float)((mix(&rng) >> 40) & 0xffff) / 65536.0f - 0.5f;
  cl_int err;
  ct_status st = CT_OK;
  CL_GOTO((t->a = clCreateBuffer(t->dev->ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                                 na * sizeof(float), h, &err), err), st, out);
  CL_GOTO((t->b = clCreateBuffer(t->dev->ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                                 nb * sizeof(float), h, &err), err), st, out);
  CL_GOTO((t->c = clCreateBuffer(t->dev->ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                                 nc * sizeof(float), h, &err), err), st, out);
out:
  free(h);
  return st;
}

ct_status ct_tune_run(ct_device *dev, ct_tune_shape *shapes, int n, const ct_tune_options *o,
                      ct_tune_cache *out) {
  memset(out, 0, sizeof *out);
  snprintf(out->platform, sizeof out->platform, "%s", dev->info.platform_name);
  snprintf(out->device, sizeof out->device, "%s", dev->info.name);
  snprintf(out->driver, sizeof out->driver, "%s", dev->info.driver);
  ct_clblast_version(out->clblast, sizeof out->clblast);
  if (n <= 0) return CT_OK;
  tuner t = {dev, o, NULL, NULL, NULL, ct_now(), 0};
  ct_status st = CT_OK;
  double *cl_sec = calloc((size_t)n, sizeof *cl_sec);
  ct_gemm_tile *tiles = calloc((size_t)n, sizeof *tiles);
  double *own_sec = calloc((size_t)n, sizeof *own_sec);
  if (!cl_sec || !tiles || !own_sec) {
    st = CT_FAIL(CT_ERR_NOMEM, "out of host memory");
    goto done;
  }
  CT_GOTO(ct_blas_set_plans(dev, NULL, 0), st, done);
  CT_GOTO(alloc_buffers(&t, shapes, n), st, done);

  // 1. before
  say(&t, "measuring %d shapes with the defaults\n", n);
  clblast_total(&t, shapes, n, cl_sec, 3);
  for (int i = 0; i < n; i++) shapes[i].gflops_before = gflops(&shapes[i], cl_sec[i]);
  // 2. cltrain's kernel, shape by shape, each with an equal share of its part of the budget
  //    (CLBlast's kernels take seconds each to build on a CPU: it gets what is left, at least
  //    a third)
  double own_budget = o->budget_s * (o->clblast_search ? 0.6 : 1.0);
  for (int i = 0; i < n; i++) {
    own_sec[i] = INFINITY;
    if (!o->own) continue;
    t.deadline = ct_now() + own_budget / n;
    say(&t, "own kernel: %s %c%c %zux%zux%zu\n", shapes[i].role, shapes[i].ta ? 'T' : 'N',
        shapes[i].tb ? 'T' : 'N', shapes[i].m, shapes[i].n, shapes[i].k);
    CT_GOTO(search_own(&t, &shapes[i], &tiles[i], &own_sec[i]), st, done);
  }
  // 3. CLBlast's parameters
  t.deadline = t.t0 + o->budget_s;
  if (ct_now() + o->budget_s / 3 > t.deadline) t.deadline = ct_now() + o->budget_s / 3;
  if (o->clblast_search) CT_GOTO(search_clblast(&t, shapes, n, out, cl_sec), st, done);
  // 4. side by side, interleaved rounds, best of each
  out->plans = calloc((size_t)n, sizeof *out->plans);
  if (!out->plans) {
    st = CT_FAIL(CT_ERR_NOMEM, "out of host memory");
    goto done;
  }
  for (int i = 0; i < n; i++) {
    ct_tune_shape *s = &shapes[i];
    candidate cl = {0, {0, 0, 0, 0, 0, 0}}, own = {1, tiles[i]};
    double best_cl = INFINITY, best_own = INFINITY;
    for (int round = 0; round < 3; round++) {
      double x = measure(&t, &cl, s, 2);
      if (x < best_cl) best_cl = x;
      if (isfinite(own_sec[i])) {
        double y = measure(&t, &own, s, 2);
        if (y < best_own) best_own = y;
      }
    }
    ct_gemm_plan *p = &out->plans[out->nplans++];
    p->ta = s->ta, p->tb = s->tb, p->m = s->m, p->n = s->n, p->k = s->k;
    p->gflops_default = s->gflops_before;
    if (best_own < best_cl) {
      p->impl = CT_GEMM_OWN;
      p->tile = tiles[i];
      s->gflops_after = gflops(s, best_own);
    } else {
      p->impl = CT_GEMM_CLBLAST;
      s->gflops_after = gflops(s, best_cl);
    }
    p->gflops = s->gflops_after;
    if (p->gflops > out->best_gflops) out->best_gflops = p->gflops;
  }
  CT_GOTO(ct_blas_set_plans(dev, out->plans, out->nplans), st, done);
  dev->blas->best_gflops = out->best_gflops;
  say(&t, "tuned in %.0f s\n", ct_now() - t.t0);
done:
  if (t.a) clReleaseMemObject(t.a);
  if (t.b) clReleaseMemObject(t.b);
  if (t.c) clReleaseMemObject(t.c);
  free(cl_sec), free(tiles), free(own_sec);
  return st;
}

// ---- shapes of a model, and the whole job ------------------------------------------------------

ct_status ct_tune_model_shapes(ct_device *dev, const ct_arch *arch, const int *batches, int nb,
                               ct_tune_shape **shapes, int *n) {
  *shapes = NULL;
  *n = 0;
  ct_status st = CT_OK;
  ct_model m;
  memset(&m, 0, sizeof m);
  float *x = NULL;
  int *y = NULL;
  CT_TRY(ct_blas_record(dev, 1));
  for (int b = 0; b < nb && st == CT_OK; b++) {
    int batch = batches[b];
    if (batch < 1) continue;
    size_t in = (size_t)arch->in_c * (size_t)arch->in_h * (size_t)arch->in_w;
    x = calloc((size_t)batch * in, sizeof *x);
    y = calloc((size_t)batch, sizeof *y);
    if (!x || !y) {
      st = CT_FAIL(CT_ERR_NOMEM, "out of host memory");
      break;
    }
    for (int i = 0; i < batch; i++) y[i] = i % arch->classes;
    CT_GOTO(ct_model_init(dev, arch, batch, &m), st, next);
    CT_GOTO(ct_model_set_batch(&m, x, y, batch), st, next);
    CT_GOTO(ct_model_forward(&m, batch, 1, 1), st, next);
    CT_GOTO(ct_model_backward(&m, batch, 1.0f), st, next);
    CL_GOTO(clFinish(dev->queue), st, next);
  next:
    ct_model_free(&m);
    free(x), free(y);
    x = NULL, y = NULL;
  }
  ct_blas_record(dev, 0);
  if (st != CT_OK) return st;
  const struct ct_blas_state *bs = dev->blas;
  ct_tune_shape *out = calloc((size_t)bs->nrecord + 1, sizeof *out);
  if (!out) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  int k = 0;
  for (int i = 0; i < bs->nrecord; i++) {
    const ct_gemm_call *c = &bs->record[i];
    int dup = 0;   // the same shape under two roles is tuned once
    for (int j = 0; j < k; j++)
      dup |= ct_gemm_same_shape(&out[j].shape, &c->shape);
    if (dup) continue;
    snprintf(out[k].role, sizeof out[k].role, "%s", c->role);
    out[k].shape = c->shape;
    k++;
  }
  *shapes = out;
  *n = k;
  return CT_OK;
}

ct_status ct_tune_add_bench_shapes(ct_tune_shape **shapes, int *n) {
  ct_tune_shape *p = realloc(*shapes, (size_t)(*n + CT_TUNE_BENCH_SHAPES) * sizeof *p);
  if (!p) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  *shapes = p;
  for (int i = 0; i < CT_TUNE_BENCH_SHAPES; i++) {
    size_t s = ct_tune_bench_sizes[i];
    int dup = 0;
    for (int j = 0; j < *n; j++)
      dup |= !p[j].ta && !p[j].tb && p[j].m == s && p[j].n == s && p[j].k == s;
    if (dup) continue;
    ct_tune_shape *x = &p[(*n)++];
    memset(x, 0, sizeof *x);
    snprintf(x->role, sizeof x->role, "bench %zu^3", s);
    x->m = x->n = x->k = s;
  }
  return CT_OK;
}

ct_status ct_tune_and_save(ct_device *dev, ct_tune_shape *shapes, int n,
                           const ct_tune_options *o, const char *path, ct_tune_cache *out) {
  CT_TRY(ct_tune_run(dev, shapes, n, o, out));
  ct_tune_cache old;
  if (ct_tune_cache_read(path, &old) == CT_OK) {
    if (!strcmp(old.platform, out->platform) && !strcmp(old.device, out->device) &&
        !strcmp(old.driver, out->driver) && !strcmp(old.clblast, out->clblast)) {
      int keep = 0;
      for (int i = 0; i < old.nplans; i++) {
        const ct_gemm_plan *p = &old.plans[i];
        int tuned = 0;
        for (int j = 0; j < out->nplans; j++) {
          const ct_gemm_plan *q = &out->plans[j];
          tuned |= ct_gemm_same_shape(&p->shape, &q->shape);
        }
        if (!tuned) old.plans[keep++] = *p;
      }
      if (keep) {
        ct_gemm_plan *all = realloc(out->plans, (size_t)(out->nplans + keep) * sizeof *all);
        if (!all) {
          ct_tune_cache_free(&old);
          return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
        }
        memcpy(all + out->nplans, old.plans, (size_t)keep * sizeof *all);
        out->plans = all;
        out->nplans += keep;
      }
      if (old.best_gflops > out->best_gflops) out->best_gflops = old.best_gflops;
    }
    ct_tune_cache_free(&old);
  } else {
    ct_error_clear();
  }
  CT_TRY(ct_tune_cache_write(path, out));
  return ct_tune_cache_apply(dev, out, path);
}

ct_status ct_tune_bench(ct_device *dev, ct_tune_shape *shapes, int n, int rounds) {
  ct_tune_options o;
  ct_tune_options_defaults(&o);
  tuner t = {dev, &o, NULL, NULL, NULL, ct_now(), 0};
  CT_TRY(alloc_buffers(&t, shapes, n));
  static const candidate chosen = {-1, {0, 0, 0, 0, 0, 0}};
  for (int i = 0; i < n; i++) shapes[i].gflops_after = 0;
  for (int r = 0; r < rounds; r++)
    for (int i = 0; i < n; i++) {
      double g = gflops(&shapes[i], measure(&t, &chosen, &shapes[i], 2));
      if (g > shapes[i].gflops_after) shapes[i].gflops_after = g;
    }
  clReleaseMemObject(t.a), clReleaseMemObject(t.b), clReleaseMemObject(t.c);
  return CT_OK;
}
