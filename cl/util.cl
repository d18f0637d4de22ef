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

// The step's status words, one work-group (any power-of-two size up to 256):
//   status[loss_at] = sum of losses[0..n) (a fixed tree order: the same bits for the same inputs)
//   status[count_at] = 0 (the non-finite counter that count_nonfinite_f32 adds to next)
__kernel void loss_sum_f32(__global const float *losses, const uint n, __global float *status,
                           const uint loss_at, const uint count_at) {
  __local float part[256];
  uint l = get_local_id(0), ls = get_local_size(0);
  float s = 0.0f;
  for (uint i = l; i < n; i += ls) s += losses[i];
  part[l] = s;
  barrier(CLK_LOCAL_MEM_FENCE);
  for (uint step = ls / 2; step > 0; step >>= 1) {
    if (l < step) part[l] += part[l + step];
    barrier(CLK_LOCAL_MEM_FENCE);
  }
  if (l == 0) {
    status[loss_at] = part[0];
    ((__global uint *)status)[count_at] = 0u;
  }
}

// Flags non-finite elements of x[0..n): bad[bad_at] grows when any is found (an atomic counter,
// zeroed before; its value counts the work-items that found one). Each work-item scans one
// contiguous chunk, 8 floats at a time, testing the exponent bits (no float compare), so a
// small global size covers any n at memory speed.
__kernel void count_nonfinite_f32(__global const float *x, const uint n,
                                  volatile __global uint *bad, const uint bad_at) {
  uint gs = (uint)get_global_size(0), gid = (uint)get_global_id(0);
  uint chunk = ((n + gs - 1) / gs + 7u) & ~7u;
  uint lo = min(gid * chunk, n), hi = min(lo + chunk, n);
  __global const uint *u = (__global const uint *)x;
  uint8 any = (uint8)(0u);
  uint i = lo;
  for (; i + 8 <= hi; i += 8) {
    uint8 v = vload8(0, u + i) & (uint8)(0x7f800000u);
    any |= as_uint8(v == (uint8)(0x7f800000u));
  }
  uint tail = 0;
  for (; i < hi; i++) tail |= (u[i] & 0x7f800000u) == 0x7f800000u;
  uint4 a = any.lo | any.hi;
  uint2 b = a.lo | a.hi;
  if (b.x | b.y | tail) atomic_add(bad + bad_at, 1u);
}
