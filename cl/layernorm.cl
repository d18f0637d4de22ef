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

// One work-item per row: two passes for the statistics (mean, then squared deviations), one to
// write y. mean (rows) and rstd (rows) are saved for the backward pass. Range (rows).
__kernel void layernorm_forward(__global const float *x, const uint x_off,
                                __global const float *w, const uint w_off,
                                __global const float *b, const uint b_off, __global float *y,
                                const uint y_off, __global float *mean, const uint mean_off,
                                __global float *rstd, const uint rstd_off, const uint rows,
                                const uint channels) {
  uint r = get_global_id(0);
  if (r >= rows) return;
  __global const float *xr = x + x_off + r * channels;
  __global float *yr = y + y_off + r * channels;
  float m = 0.0f;
  for (uint c = 0; c < channels; c++) m += xr[c];
  m /= (float)channels;
  float v = 0.0f;
  for (uint c = 0; c < channels; c++) {
    float d = xr[c] - m;
    v += d * d;
  }
  v /= (float)channels;
  float s = 1.0f / sqrt(v + LN_EPS);
  for (uint c = 0; c < channels; c++) yr[c] = (xr[c] - m) * s * w[w_off + c] + b[b_off + c];
  mean[mean_off + r] = m;
  rstd[rstd_off + r] = s;
}

// dx of one row per work-item (acc = 1: added to what dx holds). Range (rows).
__kernel void layernorm_backward_dx(__global const float *x, const uint x_off,
                                    __global const float *w, const uint w_off,
                                    __global const float *mean, const uint mean_off,
                                    __global const float *rstd, const uint rstd_off,
                                    __global const float *dy, const uint dy_off,
                                    __global float *dx, const uint dx_off, const uint rows,
                                    const uint channels, const uint acc) {
  uint r = get_global_id(0);
  if (r >= rows) return;
  __global const float *xr = x + x_off + r * channels;
  __global const float *gr = dy + dy_off + r * channels;
  __global float *dr = dx + dx_off + r * channels;
  float m = mean[mean_off + r], s = rstd[rstd_off + r];
  float sg = 0.0f, sgx = 0.0f;
  for (uint c = 0; c < channels; c++) {
    float g = w[w_off + c] * gr[c];
    sg += g;
    sgx += g * ((xr[c] - m) * s);
  }
  sg /= (float)channels;
  sgx /= (float)channels;
  for (uint c = 0; c < channels; c++) {
    float g = w[w_off + c] * gr[c];
    float d = s * (g - sg - (xr[c] - m) * s * sgx);
    dr[c] = acc ? dr[c] + d : d;
  }
}

// dw[c] = sum over rows of dy xhat, db[c] = sum over rows of dy, one column per work-item, rows
// in increasing order (overwritten, as every parameter gradient). Range (C).
__kernel void layernorm_backward_dwdb(__global const float *x, const uint x_off,
                                      __global const float *mean, const uint mean_off,
                                      __global const float *rstd, const uint rstd_off,
                                      __global const float *dy, const uint dy_off,
                                      __global float *dw, const uint dw_off, __global float *db,
                                      const uint db_off, const uint rows, const uint channels) {
  uint c = get_global_id(0);
  if (c >= channels) return;
  float sw = 0.0f, sb = 0.0f;
  for (uint r = 0; r < rows; r++) {
    float g = dy[dy_off + r * channels + c];
    sw += g * ((x[x_off + r * channels + c] - mean[mean_off + r]) * rstd[rstd_off + r]);
    sb += g;
  }
  dw[dw_off + c] = sw;
  db[db_off + c] = sb;
}
