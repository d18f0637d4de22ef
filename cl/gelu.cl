// gelu.cl: GELU with the tanh approximation (PyTorch's approximate="tanh", GPT-2's),
// element-wise, forward and backward. OpenCL C 1.2; every kernel guards its tail.
//   y = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
//   dy/dx = 0.5 (1 + tanh(u)) + 0.5 x (1 - tanh(u)^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)

#define GELU_K 0.7978845608028654f   // sqrt(2 / pi)
#define GELU_A 0.044715f

// y[i] = gelu(x[i]), i < n. y may be x.
__kernel void gelu_forward(__global const float *x, const uint x_off, __global float *y,
                           const uint y_off, const uint n) {
  uint i = get_global_id(0);
  if (i >= n) return;
  float v = x[x_off + i];
  y[y_off + i] = 0.5f * v * (1.0f + tanh(GELU_K * (v + GELU_A * v * v * v)));
}

// dx[i] = dy[i] * gelu'(x[i]) (acc = 1: added to what dx holds), i < n. With acc = 0 dx may be
// dy.
__kernel void gelu_backward(__global const float *x, const uint x_off, __global const float *dy,
                            const uint dy_off, __global float *dx, const uint dx_off,
                            const uint n, const uint acc) {
  uint i = get_global_id(0);
  if (i >= n) return;
  float v = x[x_off + i];
  float th = tanh(GELU_K * (v + GELU_A * v * v * v));
  float d = 0.5f * (1.0f + th) +
            0.5f * v * (1.0f - th * th) * GELU_K * (1.0f + 3.0f * GELU_A * v * v);
  float g = dy[dy_off + i] * d;
  dx[dx_off + i] = acc ? dx[dx_off + i] + g : g;
}
