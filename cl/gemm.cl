// gemm.cl: cltrain's own SGEMM kernel, register-tiled for devices whose work-items run on wide
// SIMD cores (CPUs under PoCL or Intel's runtime). src/blas.c uses it for a shape when
// cltrain-tune measured it faster than CLBlast there. Row-major, as ct_gemm:
//   C (M, N) = alpha * op(A) (M, K) * op(B) (K, N) + beta * C
//
// A work-group of LM work-items covers LM*MR rows of C and NW = NV*VW columns. For each block of
// KB values of k it copies that block of op(B) into local memory as a (KB, NW) panel (zeros
// beyond N), then every work-item runs an MR x NW register tile over it:
//
//            panel (KB, NW) in local memory            acc[r][v] += A(i0+r, k) * panel[k][v]
//            k -> [ v0 | v1 | ... | v(NV-1) ]           (one broadcast of A, NV vector FMAs)
//    A(i0+r, k)   (VW floats each)
//
// Rows past M are computed from a clamped row of A and not stored; columns past N are zero.
// beta == 0 never reads C. Tile sizes and transposes are -D options (MR, NV, VW in {4, 8, 16},
// LM = the work-group size, KB, TRANS_A, TRANS_B); the defaults below build on their own.
// Offsets and leading dimensions are in floats. OpenCL C 1.2. gemm_transpose (at the end): a
// transposed A made plain ahead of the product, for the tiles that measured faster that way.

#ifndef MR
#define MR 4
#endif
#ifndef NV
#define NV 3
#endif
#ifndef VW
#define VW 8
#endif
#ifndef LM
#define LM 32
#endif
#ifndef KB
#define KB 256
#endif
#ifndef TRANS_A
#define TRANS_A 0
#endif
#ifndef UNROLL_K
#define UNROLL_K 1   // steps of k per loop iteration (unrolling measured no faster on PoCL)
#endif
#ifndef TRANS_B
#define TRANS_B 0
#endif
#define NW (NV * VW)

#if VW == 4
#define VT float4
#define VLOAD vload4
#define VSTORE vstore4
#define STORE_COLUMN(d, v) (d[0] = v.s0, d[NW] = v.s1, d[2 * NW] = v.s2, d[3 * NW] = v.s3)
#elif VW == 8
#define VT float8
#define VLOAD vload8
#define VSTORE vstore8
#define STORE_COLUMN(d, v)                                                            \
  (d[0] = v.s0, d[NW] = v.s1, d[2 * NW] = v.s2, d[3 * NW] = v.s3, d[4 * NW] = v.s4, \
   d[5 * NW] = v.s5, d[6 * NW] = v.s6, d[7 * NW] = v.s7)
#elif VW == 16
#define VT float16
#define VLOAD vload16
#define VSTORE vstore16
#define STORE_COLUMN(d, v)                                                            \
  (d[0] = v.s0, d[NW] = v.s1, d[2 * NW] = v.s2, d[3 * NW] = v.s3, d[4 * NW] = v.s4, \
   d[5 * NW] = v.s5, d[6 * NW] = v.s6, d[7 * NW] = v.s7, d[8 * NW] = v.s8,          \
   d[9 * NW] = v.s9, d[10 * NW] = v.sa, d[11 * NW] = v.sb, d[12 * NW] = v.sc,        \
   d[13 * NW] = v.sd, d[14 * NW] = v.se, d[15 * NW] = v.sf)
#else
#error "VW must be 4, 8 or 16"
#endif

#if TRANS_A
#define A_AT(i, k) A[(size_t)(k) * lda + (i)]   // A stored (K, M)
#else
#define A_AT(i, k) A[(size_t)(i) * lda + (k)]   // A stored (M, K)
#endif
#if TRANS_B
#define B_AT(k, j) B[(size_t)(j) * ldb + (k)]   // B stored (N, K)
#else
#define B_AT(k, j) B[(size_t)(k) * ldb + (j)]   // B stored (K, N)
#endif

// Range (ceil(ceil(M / MR) / LM) * LM, ceil(N / NW)), work-group (LM, 1).
__kernel __attribute__((reqd_work_group_size(LM, 1, 1)))
void gemm_tile(const uint M, const uint N, const uint K, const float alpha,
               __global const float *A, const uint a_off, const uint lda,
               __global const float *B, const uint b_off, const uint ldb,
               const float beta, __global float *C, const uint c_off, const uint ldc) {
  __local float panel[KB * NW];
  const uint l = get_local_id(0);
  const uint i0 = get_global_id(0) * MR, j0 = get_group_id(1) * NW;
  A += a_off;
  B += b_off;
  C += c_off;
  uint ia[MR];   // the rows of A this work-item reads
#pragma unroll
  for (int r = 0; r < MR; r++) ia[r] = min(i0 + r, M - 1);
  VT acc[MR][NV];
#pragma unroll
  for (int r = 0; r < MR; r++)
#pragma unroll
    for (int v = 0; v < NV; v++) acc[r][v] = (VT)(0.0f);
  const int full_n = j0 + NW <= N;

  for (uint k0 = 0; k0 < K; k0 += KB) {
    const uint kb = min((uint)KB, K - k0);
    barrier(CLK_LOCAL_MEM_FENCE);   // the previous block is no longer read
#if TRANS_B
    // Rows of B are contiguous in k: read VW of them at a time and store them as a column of
    // the panel. Adjacent work-items take adjacent j, so their stores are adjacent.
    const uint kv = kb / VW;
    for (uint x = l; x < kv * NW; x += LM) {
      uint kc = x / NW, j = x - kc * NW;
      VT v = j0 + j < N ? VLOAD(0, B + (size_t)(j0 + j) * ldb + k0 + kc * VW) : (VT)(0.0f);
      __local float *d = panel + kc * VW * NW + j;
      STORE_COLUMN(d, v);
    }
    for (uint x = kv * VW * NW + l; x < kb * NW; x += LM) {   // the last kb % VW rows
      uint k = x / NW, j = x - k * NW;
      panel[x] = j0 + j < N ? B_AT(k0 + k, j0 + j) : 0.0f;
    }
#else
    if (full_n) {
      for (uint x = l; x < kb * NV; x += LM) {
        uint k = x / NV, v = x - k * NV;
        VSTORE(VLOAD(0, B + (size_t)(k0 + k) * ldb + j0 + v * VW), 0, panel + k * NW + v * VW);
      }
    } else {
      for (uint x = l; x < kb * NW; x += LM) {
        uint k = x / NW, j = x - k * NW;
        panel[x] = j0 + j < N ? B_AT(k0 + k, j0 + j) : 0.0f;
      }
    }
#endif
    barrier(CLK_LOCAL_MEM_FENCE);
    __local const float *bp = panel;
#if TRANS_A
    // A (K, M): the MR values of step k sit at ap[ia[r]], ap moving down a row per k
    __global const float *ap = A + (size_t)k0 * lda;
#define A_NEXT(r) ap[ia[r]]
#define A_STEP() (ap += lda)
#else
    // A (M, K): one pointer per row, moving right per k
    __global const float *ap[MR];
#pragma unroll
    for (int r = 0; r < MR; r++) ap[r] = A + (size_t)ia[r] * lda + k0;
#define A_NEXT(r) *ap[r]
#define A_STEP()                              \
  do {                                        \
    _Pragma("unroll") for (int r_ = 0; r_ < MR; r_++) ap[r_]++; \
  } while (0)
#endif
#pragma unroll UNROLL_K
    for (uint k = 0; k < kb; k++, bp += NW) {
      VT b[NV];
#pragma unroll
      for (int v = 0; v < NV; v++) b[v] = VLOAD(0, bp + v * VW);
#pragma unroll
      for (int r = 0; r < MR; r++) {
        VT a = (VT)(A_NEXT(r));
#pragma unroll
        for (int v = 0; v < NV; v++) acc[r][v] += a * b[v];   // contracted to FMA where it exists
      }
      A_STEP();
    }
#undef A_NEXT
#undef A_STEP
  }

#pragma unroll
  for (int r = 0; r < MR; r++) {
    if (i0 + r < M) {
      __global float *cp = C + (size_t)(i0 + r) * ldc + j0;
      if (full_n) {
#pragma unroll
        for (int v = 0; v < NV; v++) {
          VT out = alpha * acc[r][v];
          if (beta != 0.0f) out += beta * VLOAD(0, cp + v * VW);
          VSTORE(out, 0, cp + v * VW);
        }
      } else {
        float t[NW];
#pragma unroll
        for (int v = 0; v < NV; v++) VSTORE(acc[r][v], 0, t + v * VW);
        for (uint j = 0; j < N - j0; j++)
          cp[j] = beta == 0.0f ? alpha * t[j] : alpha * t[j] + beta * cp[j];
      }
    }
  }
}

// o (m, k) = the transpose of A (k, m) at a_off with leading dimension lda, for tiles with
// `at` (src/blas.c): the product then reads A a row at a time. Range (ceil(m / 8), ceil(k / 8));
// each work-item moves an 8 x 8 block through registers (eight row loads, eight row stores).
__kernel void gemm_transpose(const uint m, const uint k, __global const float *A,
                             const uint a_off, const uint lda, __global float *o) {
  const uint i0 = get_global_id(0) * 8, k0 = get_global_id(1) * 8;
  A += a_off;
  if (i0 + 8 <= m && k0 + 8 <= k) {
    float8 r0 = vload8(0, A + (size_t)(k0 + 0) * lda + i0);
    float8 r1 = vload8(0, A + (size_t)(k0 + 1) * lda + i0);
    float8 r2 = vload8(0, A + (size_t)(k0 + 2) * lda + i0);
    float8 r3 = vload8(0, A + (size_t)(k0 + 3) * lda + i0);
    float8 r4 = vload8(0, A + (size_t)(k0 + 4) * lda + i0);
    float8 r5 = vload8(0, A + (size_t)(k0 + 5) * lda + i0);
    float8 r6 = vload8(0, A + (size_t)(k0 + 6) * lda + i0);
    float8 r7 = vload8(0, A + (size_t)(k0 + 7) * lda + i0);
#define CT_COLUMN(j)                                                                          \
  vstore8((float8)(r0.s##j, r1.s##j, r2.s##j, r3.s##j, r4.s##j, r5.s##j, r6.s##j, r7.s##j), 0, \
          o + (size_t)(i0 + 0x##j) * k + k0)
    CT_COLUMN(0);
    CT_COLUMN(1);
    CT_COLUMN(2);
    CT_COLUMN(3);
    CT_COLUMN(4);
    CT_COLUMN(5);
    CT_COLUMN(6);
    CT_COLUMN(7);
#undef CT_COLUMN
    return;
  }
  for (uint i = i0; i < min(i0 + 8u, m); i++)
    for (uint kk = k0; kk < min(k0 + 8u, k); kk++) o[(size_t)i * k + kk] = A[(size_t)kk * lda + i];
}
