// conv.cl: the layout kernels of a 2-D convolution lowered to GEMMs over the whole batch.
//
//   forward:   x (N, C, H, W) --im2col--> col (C*K*K, N*OH*OW): row (c,ki,kj), column (n,oy,ox)
//              t (OC, N*OH*OW) = w (OC, C*K*K) * col                            [ct_gemm]
//              y (N, OC, OH, OW) = t permuted + b                               [conv_out_forward]
//   backward:  dt (OC, N*OH*OW) and dp (N*OH*OW, OC) = dy permuted              [conv_dy_split]
//              db = row sums of dt                                              [bias_grad_rows]
//              colT (N*OH*OW, LD) = im2col transposed, zero beyond C*K*K        [im2col_t]
//              dw (OC, LD) = dp^T * colT                                        [ct_gemm]
//              dcol (C*K*K, N*OH*OW) = w^T * dt;  dx = col2im(dcol)             [ct_gemm, col2im]
// Every product has its big operands in the layout CLBlast uses without copying them
// (row-major: A transposed, B not); LD pads C*K*K so that no padding copy is needed either.
//
// OpenCL C 1.2. Every kernel guards its tail, so global sizes may be rounded up freely.

#ifndef RWG
#define RWG 64   // largest work-group size of bias_grad_rows (a power of two)
#endif

// x (N, C, H, W) -> col (C*K*K, N*OH*OW). Range (OW, OH, N*C): each work-item writes the K*K
// entries of one input channel for one output pixel; for a fixed (ki, kj) adjacent work-items
// write adjacent addresses.
__kernel void im2col(__global const float *x, __global float *col, const uint n_img,
                     const uint c, const uint h, const uint w, const uint oh, const uint ow,
                     const uint k, const uint stride, const uint pad) {
  uint ox = get_global_id(0), oy = get_global_id(1), z = get_global_id(2);
  if (ox >= ow || oy >= oh || z >= n_img * c) return;
  uint n = z / c, ci = z - n * c;
  uint npix = oh * ow, ncol = n_img * npix;
  int y0 = (int)(oy * stride) - (int)pad, x0 = (int)(ox * stride) - (int)pad;
  __global const float *xp = x + (size_t)z * h * w;
  __global float *cp = col + (size_t)ci * k * k * ncol + n * npix + oy * ow + ox;
  for (uint ki = 0; ki < k; ki++) {
    int yy = y0 + (int)ki;
    int row_ok = yy >= 0 && yy < (int)h;
    for (uint kj = 0; kj < k; kj++) {
      int xx = x0 + (int)kj;
      float v = 0.0f;
      if (row_ok && xx >= 0 && xx < (int)w) v = xp[yy * (int)w + xx];
      cp[(size_t)(ki * k + kj) * ncol] = v;
    }
  }
}

// Gathers dcol (C*K*K, N*OH*OW) back into dx (N, C, H, W): each input pixel sums the entries
// of the output pixels whose window covers it (no atomics). Range (W, H, N*C).
__kernel void col2im(__global const float *dcol, __global float *dx, const uint n_img,
                     const uint c, const uint h, const uint w, const uint oh, const uint ow,
                     const uint k, const uint stride, const uint pad) {
  uint xx = get_global_id(0), yy = get_global_id(1), z = get_global_id(2);
  if (xx >= w || yy >= h || z >= n_img * c) return;
  uint n = z / c, ci = z - n * c;
  uint npix = oh * ow, ncol = n_img * npix;
  // output rows oy with 0 <= yy + pad - oy*stride < k, i.e. ki = yy + pad - oy*stride
  uint ty = yy + pad, tx = xx + pad;
  uint oy_lo = ty + 1 > k ? (ty + 1 - k + stride - 1) / stride : 0;
  uint ox_lo = tx + 1 > k ? (tx + 1 - k + stride - 1) / stride : 0;
  uint oy_end = min(ty / stride + 1, oh), ox_end = min(tx / stride + 1, ow);
  __global const float *cp = dcol + (size_t)ci * k * k * ncol + n * npix;
  float s = 0.0f;
  for (uint oy = oy_lo; oy < oy_end; oy++) {
    uint ki = ty - oy * stride;
    for (uint ox = ox_lo; ox < ox_end; ox++) {
      uint kj = tx - ox * stride;
      s += cp[(size_t)(ki * k + kj) * ncol + oy * ow + ox];
    }
  }
  dx[(size_t)z * h * w + yy * w + xx] = s;
}

// y (N, OC, P) = t (OC, N*P) permuted, plus b[b_off + o]; relu != 0: max(., 0) as well (a ReLU
// that follows the convolution, fused). Range (P, OC, N).
__kernel void conv_out_forward(__global const float *t, __global const float *b,
                               const uint b_off, __global float *y, const uint n_img,
                               const uint oc, const uint npix, const uint relu) {
  uint p = get_global_id(0), o = get_global_id(1), n = get_global_id(2);
  if (p >= npix || o >= oc || n >= n_img) return;
  float v = t[(size_t)o * n_img * npix + n * npix + p] + b[b_off + o];
  y[(size_t)(n * oc + o) * npix + p] = relu ? fmax(v, 0.0f) : v;
}

// dy (N, OC, P) -> t (OC, N*P) and pt (N*P, OC). mask != 0: the convolution's output went
// through a ReLU whose output is y (N, OC, P): dy is taken as zero where y <= 0 (the ReLU's
// backward pass, fused). Range (P, OC, N).
__kernel void conv_dy_split(__global const float *dy, __global float *t, __global float *pt,
                            const uint n_img, const uint oc, const uint npix,
                            __global const float *y, const uint mask) {
  uint p = get_global_id(0), o = get_global_id(1), n = get_global_id(2);
  if (p >= npix || o >= oc || n >= n_img) return;
  size_t at = (size_t)(n * oc + o) * npix + p;
  float g = mask && !(y[at] > 0.0f) ? 0.0f : dy[at];
  t[(size_t)o * n_img * npix + n * npix + p] = g;
  pt[(size_t)(n * npix + p) * oc + o] = g;
}

// x (N, C, H, W) -> colT (N*OH*OW, ld): row (n, oy, ox), column (c, ki, kj); the columns
// C*K*K..ld-1 are zero. Range (OW, OH, N*C): each work-item writes K*K contiguous entries.
__kernel void im2col_t(__global const float *x, __global float *colt, const uint n_img,
                       const uint c, const uint h, const uint w, const uint oh, const uint ow,
                       const uint k, const uint stride, const uint pad, const uint ld) {
  uint ox = get_global_id(0), oy = get_global_id(1), z = get_global_id(2);
  if (ox >= ow || oy >= oh || z >= n_img * c) return;
  uint n = z / c, ci = z - n * c;
  int y0 = (int)(oy * stride) - (int)pad, x0 = (int)(ox * stride) - (int)pad;
  __global const float *xp = x + (size_t)z * h * w;
  __global float *row = colt + (size_t)((n * oh + oy) * ow + ox) * ld;
  __global float *cp = row + ci * k * k;
  for (uint ki = 0; ki < k; ki++) {
    int yy = y0 + (int)ki;
    int row_ok = yy >= 0 && yy < (int)h;
    for (uint kj = 0; kj < k; kj++) {
      int xx = x0 + (int)kj;
      float v = 0.0f;
      if (row_ok && xx >= 0 && xx < (int)w) v = xp[yy * (int)w + xx];
      cp[ki * k + kj] = v;
    }
  }
  if (ci == c - 1)
    for (uint j = c * k * k; j < ld; j++) row[j] = 0.0f;
}

// db[db_off + r] = sum of row r of t (rows, len). One work-group per row (a power-of-two size
// <= RWG): strided partial sums, then a tree in local memory.
__kernel void bias_grad_rows(__global const float *t, const uint rows, const uint len,
                             __global float *db, const uint db_off) {
  __local float part[RWG];
  uint r = get_group_id(0), l = get_local_id(0), ls = get_local_size(0);
  float s = 0.0f;
  if (r < rows)
    for (uint i = l; i < len; i += ls) s += t[(size_t)r * len + i];
  part[l] = s;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint step = ls / 2; step > 0; step >>= 1) {
    if (l < step) part[l] += part[l + step];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (l == 0 && r < rows) db[db_off + r] = part[0];
}
