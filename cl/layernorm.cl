// layernorm.cl: LayerNorm over the channels of each row (GPT-2's, with weight and bias),
// forward and backward. OpenCL C 1.2; every kernel guards its tail. x (rows, C) row-major.
//   mean = sum_c x / C,  var = sum_c (x - mean)^2 / C (biased),  rstd = 1 / sqrt(var + eps)
//   xhat = (x - mean) rstd,  y = xhat w + b
// Backward, with g = w dy:
//   dx = rstd (g - mean_c(g) - xhat mean_c(g xhat)),  dw = sum_rows dy xhat,  db = sum_rows dy
// Every sum runs in a fixed order within one work-item: no atomics, the same bits every run.

#ifndef LN_EPS
#define LN_EPS 1e-5f
#endif

// The per-row kernels run float8 along the row (a scalar tail when C is not a multiple of 8); the
// hint keeps Intel's compiler from vectorizing across rows as well (gathers). Other compilers may
// ignore it.
#define VECTORIZED __attribute__((vec_type_hint(float8)))

inline float hsum8(float8 v) {
  float4 h = v.lo + v.hi;
  return (h.x + h.y) + (h.z + h.w);
}

// One work-item per row: two passes for the statistics (mean, then squared deviations), one to
// write y. mean (rows) and rstd (rows) are saved for the backward pass. Range (rows).
__kernel VECTORIZED void layernorm_forward(__global const float *x, const uint x_off,
                                           __global const float *w, const uint w_off,
                                           __global const float *b, const uint b_off,
                                           __global float *y, const uint y_off,
                                           __global float *mean, const uint mean_off,
                                           __global float *rstd, const uint rstd_off,
                                           const uint rows, const uint channels) {
  uint r = get_global_id(0);
  if (r >= rows) return;
  __global const float *xr = x + x_off + r * channels;
  __global float *yr = y + y_off + r * channels;
  uint c8 = channels & ~7u;
  float8 a8 = (float8)(0.0f);
  for (uint c = 0; c < c8; c += 8) a8 += vload8(0, xr + c);
  float m = hsum8(a8);
  for (uint c = c8; c < channels; c++) m += xr[c];
  m /= (float)channels;
  a8 = (float8)(0.0f);
  for (uint c = 0; c < c8; c += 8) {
    float8 d = vload8(0, xr + c) - m;
    a8 += d * d;
  }
  float v = hsum8(a8);
  for (uint c = c8; c < channels; c++) v += (xr[c] - m) * (xr[c] - m);
  v /= (float)channels;
  float s = 1.0f / sqrt(v + LN_EPS);
  for (uint c = 0; c < c8; c += 8)
    vstore8((vload8(0, xr + c) - m) * s * vload8(0, w + w_off + c) + vload8(0, b + b_off + c), 0,
            yr + c);
  for (uint c = c8; c < channels; c++) yr[c] = (xr[c] - m) * s * w[w_off + c] + b[b_off + c];
  mean[mean_off + r] = m;
  rstd[rstd_off + r] = s;
}

// dx of one row per work-item (acc = 1: added to what dx holds). Range (rows).
__kernel VECTORIZED void layernorm_backward_dx(__global const float *x, const uint x_off,
                                               __global const float *w, const uint w_off,
                                               __global const float *mean, const uint mean_off,
                                               __global const float *rstd, const uint rstd_off,
                                               __global const float *dy, const uint dy_off,
                                               __global float *dx, const uint dx_off,
                                               const uint rows, const uint channels,
                                               const uint acc) {
  uint r = get_global_id(0);
  if (r >= rows) return;
  __global const float *xr = x + x_off + r * channels;
  __global const float *gr = dy + dy_off + r * channels;
  __global const float *wr = w + w_off;
  __global float *dr = dx + dx_off + r * channels;
  uint c8 = channels & ~7u;
  float m = mean[mean_off + r], s = rstd[rstd_off + r];
  float8 g8 = (float8)(0.0f), gx8 = (float8)(0.0f);
  for (uint c = 0; c < c8; c += 8) {
    float8 g = vload8(0, wr + c) * vload8(0, gr + c);
    g8 += g;
    gx8 += g * ((vload8(0, xr + c) - m) * s);
  }
  float sg = hsum8(g8), sgx = hsum8(gx8);
  for (uint c = c8; c < channels; c++) {
    float g = wr[c] * gr[c];
    sg += g;
    sgx += g * ((xr[c] - m) * s);
  }
  sg /= (float)channels;
  sgx /= (float)channels;
  for (uint c = 0; c < c8; c += 8) {
    float8 g = vload8(0, wr + c) * vload8(0, gr + c);
    float8 d = s * (g - sg - (vload8(0, xr + c) - m) * s * sgx);
    if (acc) d += vload8(0, dr + c);
    vstore8(d, 0, dr + c);
  }
  for (uint c = c8; c < channels; c++) {
    float g = wr[c] * gr[c];
    float d = s * (g - sg - (xr[c] - m) * s * sgx);
    dr[c] = acc ? dr[c] + d : d;
  }
}

// dw[c] = sum over rows of dy xhat, db[c] = sum over rows of dy (overwritten, as every parameter
// gradient): each work-item owns 8 adjacent columns (float8 along a row; the last one fewer),
// walking the rows in increasing order. Range ceil(C / 8).
__kernel VECTORIZED void layernorm_backward_dwdb(__global const float *x, const uint x_off,
                                                 __global const float *mean, const uint mean_off,
                                                 __global const float *rstd, const uint rstd_off,
                                                 __global const float *dy, const uint dy_off,
                                                 __global float *dw, const uint dw_off,
                                                 __global float *db, const uint db_off,
                                                 const uint rows, const uint channels) {
  uint c0 = get_global_id(0) * 8;
  if (c0 >= channels) return;
  if (c0 + 8 <= channels) {
    float8 sw = (float8)(0.0f), sb = (float8)(0.0f);
    for (uint r = 0; r < rows; r++) {
      float8 g = vload8(0, dy + dy_off + r * channels + c0);
      float8 xh = (vload8(0, x + x_off + r * channels + c0) - mean[mean_off + r]) *
                  rstd[rstd_off + r];
      sw += g * xh;
      sb += g;
    }
    vstore8(sw, 0, dw + dw_off + c0);
    vstore8(sb, 0, db + db_off + c0);
    return;
  }
  for (uint c = c0; c < channels; c++) {
    float sw = 0.0f, sb = 0.0f;
    for (uint r = 0; r < rows; r++) {
      float g = dy[dy_off + r * channels + c];
      sw += g * ((x[x_off + r * channels + c] - mean[mean_off + r]) * rstd[rstd_off + r]);
      sb += g;
    }
    dw[dw_off + c] = sw;
    db[db_off + c] = sb;
  }
}
