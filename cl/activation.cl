// activation.cl: element-wise layers: ReLU and seeded dropout.
//
// Dropout keeps element i when hash(seed, first + i) >= threshold, where threshold = p * 2^32
// (computed on the host) and hash is integer-only, so a seed gives the same mask on every device
// (first lets a share of a batch use the indices it has in the whole batch). Kept elements are
// scaled by 1 / (1 - p); the backward pass recomputes the mask (nothing stored).
// OpenCL C 1.2. Every kernel guards its tail, so global sizes may be rounded up freely.

// y[i] = max(x[i], 0)
__kernel void relu_forward(__global const float *x, __global float *y, const uint n) {
  uint i = get_global_id(0);
  if (i < n) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

// dx[i] = y[i] > 0 ? dy[i] : 0 (y is the forward output; dx may be dy)
__kernel void relu_backward(__global const float *y, __global const float *dy,
                            __global float *dx, const uint n) {
  uint i = get_global_id(0);
  if (i < n) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

// lowbias32 (C. Wellons): a 32-bit integer mixer; must match ct_dropout_hash in layers.c.
uint ct_mix32(uint x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

uint ct_dropout_hash(uint seed_lo, uint seed_hi, uint i) {
  uint key = ct_mix32(seed_lo ^ ct_mix32(seed_hi ^ 0x9e3779b9U));
  return ct_mix32(ct_mix32(i ^ key) + key);
}

// y[i] = keep(first + i) ? x[i] * scale : 0
__kernel void dropout_forward(__global const float *x, __global float *y, const uint n,
                              const uint seed_lo, const uint seed_hi, const uint first,
                              const uint threshold, const float scale) {
  uint i = get_global_id(0);
  if (i < n)
    y[i] = ct_dropout_hash(seed_lo, seed_hi, first + i) >= threshold ? x[i] * scale : 0.0f;
}

// dx[i] = keep(first + i) ? dy[i] * scale : 0
__kernel void dropout_backward(__global const float *dy, __global float *dx, const uint n,
                               const uint seed_lo, const uint seed_hi, const uint first,
                               const uint threshold, const float scale) {
  uint i = get_global_id(0);
  if (i < n)
    dx[i] = ct_dropout_hash(seed_lo, seed_hi, first + i) >= threshold ? dy[i] * scale : 0.0f;
}
