// residual.cl: the residual connection y = a + b, and its backward routing: the output's
// gradient goes to both inputs' gradients. OpenCL C 1.2; every kernel guards its tail.

// y[i] = a[i] + b[i], i < n. y may be a or b.
__kernel void residual_forward(__global const float *a, const uint a_off, __global const float *b,
                               const uint b_off, __global float *y, const uint y_off,
                               const uint n) {
  uint i = get_global_id(0);
  if (i < n) y[y_off + i] = a[a_off + i] + b[b_off + i];
}

// da[i] = dy[i] (acc_a = 1: da[i] += dy[i]) when has_a; db likewise when has_b; i < n. Each
// work-item reads dy[i] before it writes, so da or db may be dy itself.
__kernel void residual_backward(__global const float *dy, const uint dy_off, __global float *da,
                                const uint da_off, const uint has_a, const uint acc_a,
                                __global float *db, const uint db_off, const uint has_b,
                                const uint acc_b, const uint n) {
  uint i = get_global_id(0);
  if (i >= n) return;
  float g = dy[dy_off + i];
  if (has_a) da[da_off + i] = acc_a ? da[da_off + i] + g : g;
  if (has_b) db[db_off + i] = acc_b ? db[db_off + i] + g : g;
}
