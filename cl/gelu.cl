// gelu.cl: GELU with the tanh approximation (PyTorch's approximate="tanh", GPT-2's),
// element-wise, forward and backward. OpenCL C 1.2; every kernel guards its tail.
//   y = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
// computed as y = x s with s = 0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u)): the same function, stable
// at both ends (exp overflowing to infinity gives s = 0, y = -0), and an exp instead of a tanh
// (PoCL's tanh took 45 ns an element, 30x its exp). The derivative, with 1 - tanh(u)^2 =
// 4 s (1 - s):
//   dy/dx = s + 2 x s (1 - s) sqrt(2/pi) (1 + 3 * 0.044715 x^2)

#define GELU_K 0.7978845608028654f   // sqrt(2 / pi)
#define GELU_A 0.044715f

inline float8 gelu_s(float8 x) {
  return 1.0f / (1.0f + exp(-2.0f * GELU_K * (x + GELU_A * x * x * x)));
}

// Eight elements per work-item (float8: a vector exp on CPUs, 2x faster than one element per
// work-item on PoCL), the last work-item also taking the n % 8 left over. Range ceil(n / 8).
#define GELU_LOAD(p, i, n) ((i) + 8 <= (n) ? vload8(0, (p) + (i)) : tail8((p) + (i), (n) - (i)))

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

// y[i] = gelu(x[i]), i < n. y may be x.
__kernel void gelu_forward(__global const float *x, const uint x_off, __global float *y,
                           const uint y_off, const uint n) {
  uint i = get_global_id(0) * 8;
  if (i >= n) return;
  float8 v = GELU_LOAD(x + x_off, i, n);
  store8(v * gelu_s(v), y + y_off + i, n - i);
}

// dx[i] = dy[i] * gelu'(x[i]) (acc = 1: added to what dx holds), i < n. With acc = 0 dx may be
// dy.
__kernel void gelu_backward(__global const float *x, const uint x_off, __global const float *dy,
                            const uint dy_off, __global float *dx, const uint dx_off,
                            const uint n, const uint acc) {
  uint i = get_global_id(0) * 8;
  if (i >= n) return;
  float8 v = GELU_LOAD(x + x_off, i, n), s = gelu_s(v);
  float8 d = s + 2.0f * v * s * (1.0f - s) * GELU_K * (1.0f + 3.0f * GELU_A * v * v);
  float8 g = GELU_LOAD(dy + dy_off, i, n) * d;
  if (acc) g += GELU_LOAD(dx + dx_off, i, n);
  store8(g, dx + dx_off + i, n - i);
}
