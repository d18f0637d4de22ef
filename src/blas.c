// blas.c: ct_gemm over CLBlast, with Xgemm parameters for devices CLBlast has not tuned.
#include "cltrain/blas.h"

#include <clblast_c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// For tuning: "NAME=VALUE,NAME=VALUE" in the environment variable `var` replaces the values of
// those parameters (names as CLBlast's, e.g. CLTRAIN_XGEMM=KWG=32,VWN=8).
static ct_status env_overrides(const char *var, const char **names, size_t *values, size_t n) {
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

ct_status ct_blas_init(ct_device *dev) {
  dev->blas = calloc(1, sizeof *dev->blas);
  if (!dev->blas) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  if (getenv("CLTRAIN_BLAS_DEFAULTS")) return CT_OK;   // measure CLBlast's own choice
  if ((dev->info.type & CL_DEVICE_TYPE_CPU) && !dev->info.simulator) {
    // Xgemm without local memory, wide vectors: on a 2-core AVX2 CPU under PoCL, with the
    // threshold below, training ran about 3x faster than with CLBlast's untuned defaults
    // (README, "Next to PyTorch").
    const char *names[] = {"GEMMK", "KREG", "KWG", "KWI", "MDIMA", "MDIMC", "MWG", "NDIMB",
                           "NDIMC", "NWG", "SA", "SB", "STRM", "STRN", "VWM", "VWN"};
    size_t values[] = {0, 1, 16, 2, 8, 8, 64, 8, 8, 128, 0, 0, 0, 0, 8, 16};
    CT_TRY(env_overrides("CLTRAIN_XGEMM", names, values, sizeof names / sizeof names[0]));
    CLBlastStatusCode s = CLBlastOverrideParameters(dev->info.id, "Xgemm", CLBlastPrecisionSingle,
                                                    sizeof names / sizeof names[0], names, values);
    if (s != CLBlastSuccess)
      return CT_FAIL(CT_ERR_CL, "CLBlastOverrideParameters(Xgemm) failed on %s: %s",
                     dev->info.name, ct_cl_errname(s));
    // CLBlast's switch from its direct to its indirect GEMM kernel: at its default the conv
    // layers' products (64 x 25088 x 288) take the direct kernel, about 5x slower here.
    const char *rnames[] = {"XGEMM_MIN_INDIRECT_SIZE"};
    size_t rvalues[] = {320};
    CT_TRY(env_overrides("CLTRAIN_GEMM_ROUTINE", rnames, rvalues, 1));
    s = CLBlastOverrideParameters(dev->info.id, "GemmRoutine", CLBlastPrecisionSingle, 1, rnames,
                                  rvalues);
    if (s != CLBlastSuccess)
      return CT_FAIL(CT_ERR_CL, "CLBlastOverrideParameters(GemmRoutine) failed on %s: %s",
                     dev->info.name, ct_cl_errname(s));
    dev->blas->overridden = 1;
  }
  return CT_OK;
}

void ct_blas_free(ct_device *dev) {
  if (dev->blas && dev->info.id) CLBlastClearCache();
  free(dev->blas);
  dev->blas = NULL;
}

ct_status ct_gemm(ct_device *dev, int trans_a, int trans_b, size_t m, size_t n, size_t k,
                  float alpha, cl_mem a, size_t a_off, size_t lda, cl_mem b, size_t b_off,
                  size_t ldb, float beta, cl_mem c, size_t c_off, size_t ldc) {
  if (m == 0 || n == 0) return CT_OK;
  if (k == 0)
    return CT_FAIL(CT_ERR_INTERNAL, "ct_gemm with k = 0 (m=%zu n=%zu)", m, n);
  CLBlastStatusCode s = CLBlastSgemm(
      CLBlastLayoutRowMajor, trans_a ? CLBlastTransposeYes : CLBlastTransposeNo,
      trans_b ? CLBlastTransposeYes : CLBlastTransposeNo, m, n, k, alpha, a, a_off, lda, b, b_off,
      ldb, beta, c, c_off, ldc, &dev->queue, NULL);
  if (s != CLBlastSuccess)
    return CT_FAIL(s == CLBlastTempBufferAllocFailure ? CT_ERR_NOMEM : CT_ERR_CL,
                   "CLBlastSgemm(m=%zu n=%zu k=%zu ta=%d tb=%d) on %s failed: %s", m, n, k,
                   trans_a, trans_b, dev->info.name, ct_cl_errname(s));
  return CT_OK;
}
