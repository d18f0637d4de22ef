// conv.cl: the layout kernels of a 2-D convolution lowered to GEMMs over the whole batch.
//
//   forward:   x (N, C, H, W) --im2col--> col (C*K*K, N*OH*OW): row (c,ki,kj), column (n,oy,ox)
//              t (OC, N*OH*OW) = w (OC, C*K*K) * col                            [ct_gemm]
//              y (N, OC, OH, OW) = t permuted + b                               [conv_out_forward]
//   backward:  dt (OC, N*OH*OW) = dy permuted                                   [conv_dy_permute]
//              db = row sums of dt                                              [bias_grad_rows]
//              dw (OC, C*K*K) = dt * col^T                                      [ct_gemm]
//              dcol (C*K*K, N*OH*OW) = w^T * dt;  dx = col2im(dcol)             [ct_gemm, col2im]
//
// OpenCL C 1.2. Every kernel guards its tail, so global sizes may be rounded up freely.

#ifndef RWG
#define RWG 64   // largest work-group size of bias_grad_rows (a power of two)
#endif

// x (N, C, H, W) -> col (C*K*K, N*OH*OW). Range (OH, C*K*K*N): work-item (oy, z) with
// z = ((c*K + ki)*K + kj)*N + n writes the OW entries of output row oy of image n for (c, ki, kj):
// contiguous, and the rows of adjacent work-items follow each other, so every write stream is
// sequential.
__kernel void im2col(__global const float *x, __global float *col, const uint n_img,
                     const uint c, const uint h, const uint w, const uint oh, const uint ow,
                     const uint k, const uint stride, const uint pad) {
  uint oy = get_global_id(0), z = get_global_id(1);
  if (oy >= oh || z >= n_img * c * k * k) return;
  uint r = z / n_img, n = z - r * n_img;          // r = (ci*K + ki)*K + kj
  uint ci = r / (k * k), t = r - ci * k * k, ki = t / k, kj = t - ki * k;
  uint npix = oh * ow;
  __global float *out = col + (size_t)r * n_img * npix + (size_t)n * npix + oy * ow;
  int yy = (int)(oy * stride) - (int)pad + (int)ki;
  if (yy < 0 || yy >= (int)h) {
    for (uint ox = 0; ox < ow; ox++) out[ox] = 0.0f;
    return;
  }
  __global const float *row = x + ((size_t)n * c + ci) * h * w + (size_t)yy * w;
  int x0 = (int)kj - (int)pad;
  for (uint ox = 0; ox < ow; ox++) {
    int xx = x0 + (int)(ox * stride);
    out[ox] = xx >= 0 && xx < (int)w ? row[xx] : 0.0f;
  }
}

// Gathers dcol (C*K*K, N*OH*OW) back into dx (N, C, H, W): each input pixel sums the entries
// of the output pixels whose window covers it (no atomics). Range (H, N*C): a work-item does one
// input row.
__kernel void col2im(__global const float *dcol, __global float *dx, const uint n_img,
                     const uint c, const uint h, const uint w, const uint oh, const uint ow,
                     const uint k, const uint stride, const uint pad) {
  uint yy = get_global_id(0), z = get_global_id(1);
  if (yy >= h || z >= n_img * c) return;
  uint n = z / c, ci = z - n * c;
  uint npix = oh * ow, ncol = n_img * npix;
  // output rows oy with 0 <= yy + pad - oy*stride < k, i.e. ki = yy + pad - oy*stride
  uint ty = yy + pad;
  uint oy_lo = ty + 1 > k ? (ty + 1 - k + stride - 1) / stride : 0;
  uint oy_end = min(ty / stride + 1, oh);
  __global const float *cp = dcol + (size_t)ci * k * k * ncol + n * npix;
  __global float *out = dx + (size_t)z * h * w + yy * w;
  for (uint xx = 0; xx < w; xx++) {
    uint tx = xx + pad;
    uint ox_lo = tx + 1 > k ? (tx + 1 - k + stride - 1) / stride : 0;
    uint ox_end = min(tx / stride + 1, ow);
    float s = 0.0f;
    for (uint oy = oy_lo; oy < oy_end; oy++) {
      uint ki = ty - oy * stride;
      for (uint ox = ox_lo; ox < ox_end; ox++) {
        uint kj = tx - ox * stride;
        s += cp[(size_t)(ki * k + kj) * ncol + oy * ow + ox];
      }
    }
    out[xx] = s;
  }
}

// y (N, OC, P) = t (OC, N*P) permuted, plus b[b_off + o]; relu != 0: max(., 0) as well (a ReLU
// that follows the convolution, fused). Range (OC, N): a work-item moves one plane of P floats.
__kernel void conv_out_forward(__global const float *t, __global const float *b,
                               const uint b_off, __global float *y, const uint n_img,
                               const uint oc, const uint npix, const uint relu) {
  uint o = get_global_id(0), n = get_global_id(1);
  if (o >= oc || n >= n_img) return;
  __global const float *src = t + (size_t)o * n_img * npix + (size_t)n * npix;
  __global float *dst = y + ((size_t)n * oc + o) * npix;
  float bias = b[b_off + o];
  if (relu)
    for (uint p = 0; p < npix; p++) dst[p] = fmax(src[p] + bias, 0.0f);
  else
    for (uint p = 0; p < npix; p++) dst[p] = src[p] + bias;
}

// dy (N, OC, P) -> t (OC, N*P). mask != 0: the convolution's output went through a ReLU whose
// output is y (N, OC, P): dy is taken as zero where y <= 0 (the ReLU's backward pass, fused).
// Range (OC, N): a work-item moves one plane.
__kernel void conv_dy_permute(__global const float *dy, __global float *t, const uint n_img,
                              const uint oc, const uint npix, __global const float *y,
                              const uint mask) {
  uint o = get_global_id(0), n = get_global_id(1);
  if (o >= oc || n >= n_img) return;
  size_t at = ((size_t)n * oc + o) * npix;
  __global float *dst = t + (size_t)o * n_img * npix + (size_t)n * npix;
  if (mask)
    for (uint p = 0; p < npix; p++) dst[p] = y[at + p] > 0.0f ? dy[at + p] : 0.0f;
  else
    for (uint p = 0; p < npix; p++) dst[p] = dy[at + p];
}

// db[db_off + r] = sum of row r of t (rows, len). One work-group per row (a power-of-two size
// <= RWG): each work-item sums a contiguous stretch of the row, then a tree in local memory.
__kernel void bias_grad_rows(__global const float *t, const uint rows, const uint len,
                             __global float *db, const uint db_off) {
  __local float part[RWG];
  uint r = get_group_id(0), l = get_local_id(0), ls = get_local_size(0);
  uint chunk = (len + ls - 1) / ls;
  uint lo = min(l * chunk, len), hi = min(lo + chunk, len);
  float s = 0.0f;
  if (r < rows) {
    __global const float *row = t + (size_t)r * len;
    for (uint i = lo; i < hi; i++) s += row[i];
  }
  part[l] = s;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint step = ls / 2; step > 0; step >>= 1) {
    if (l < step) part[l] += part[l + step];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (l == 0 && r < rows) db[db_off + r] = part[0];
}
