// blas.h: every matrix product of cltrain goes through here (CLBlast underneath).
//
// Defines: ct_gemm, ct_blas_init / ct_blas_free.
//
// Row-major throughout: C(m,n) = alpha * op(A)(m,k) * op(B)(k,n) + beta * C, where op(X) is X or
// its transpose; offsets and leading dimensions are in floats. On devices that CLBlast's tuning
// database does not know (CPUs through PoCL among them), ct_blas_init sets Xgemm parameters
// that were measured to be several times faster than CLBlast's defaults there.
#ifndef CLTRAIN_BLAS_H
#define CLTRAIN_BLAS_H

#include <stddef.h>

#include "cltrain/device.h"

struct ct_blas_state {
  int overridden;  // Xgemm parameters were overridden for this device
};

ct_status ct_blas_init(ct_device *dev);
void ct_blas_free(ct_device *dev);

ct_status ct_gemm(ct_device *dev, int trans_a, int trans_b, size_t m, size_t n, size_t k,
                  float alpha, cl_mem a, size_t a_off, size_t lda, cl_mem b, size_t b_off,
                  size_t ldb, float beta, cl_mem c, size_t c_off, size_t ldc);

#endif
