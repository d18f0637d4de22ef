// util.cl: small vector kernels used across cltrain (fill, scale, copy, axpy, finite check).
// OpenCL C 1.2. Every kernel takes its element count and guards the tail, so any global size
// that is a multiple of the work-group size may be used.

__kernel void fill_f32(__global float *x, const uint n, const float value) {
  uint i = get_global_id(0);
  if (i < n) x[i] = value;
}

__kernel void scale_f32(__global float *x, const uint n, const float alpha) {
  uint i = get_global_id(0);
  if (i < n) x[i] *= alpha;
}

// y[i] += alpha * x[i]
__kernel void axpy_f32(__global float *y, __global const float *x, const uint n,
                       const float alpha) {
  uint i = get_global_id(0);
  if (i < n) y[i] += alpha * x[i];
}

// Counts the non-finite elements of x[0..n) into *bad (an atomic counter the host zeroes).
// Each work-item checks a strided slice, so a small global size covers any n.
__kernel void count_nonfinite_f32(__global const float *x, const uint n,
                                  volatile __global uint *bad) {
  uint count = 0;
  for (uint i = get_global_id(0); i < n; i += get_global_size(0))
    count += !isfinite(x[i]);
  if (count) atomic_add(bad, count);
}
