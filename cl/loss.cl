// loss.cl: softmax cross-entropy, forward and backward in one pass.
// OpenCL C 1.2. Every kernel guards its tail, so global sizes may be rounded up freely.

// logits (batch, classes), labels (batch) -> losses (batch), dlogits (batch, classes).
//   loss_i = log(sum_j exp(z_ij - m_i)) - (z_iy - m_i),  m_i = max_j z_ij   (no overflow)
//   dlogits_ij = scale * (softmax(z_i)_j - [j == y_i])
// A label outside [0, classes) gives a NaN loss and zero gradients. One work-item per sample.
__kernel void softmax_xent(__global const float *logits, __global const int *labels,
                           __global float *losses, __global float *dlogits, const uint batch,
                           const uint classes, const float scale) {
  uint i = get_global_id(0);
  if (i >= batch) return;
  __global const float *z = logits + (size_t)i * classes;
  __global float *dz = dlogits + (size_t)i * classes;
  int y = labels[i];
  float m = z[0];
  for (uint j = 1; j < classes; j++) m = fmax(m, z[j]);
  float sum = 0.0f;
  for (uint j = 0; j < classes; j++) sum += exp(z[j] - m);
  if (y < 0 || y >= (int)classes) {
    losses[i] = NAN;
    for (uint j = 0; j < classes; j++) dz[j] = 0.0f;
    return;
  }
  losses[i] = log(sum) - (z[y] - m);
  float inv = 1.0f / sum;
  for (uint j = 0; j < classes; j++)
    dz[j] = scale * (exp(z[j] - m) * inv - (j == (uint)y ? 1.0f : 0.0f));
}
