// dense.cl: the non-GEMM parts of a dense (fully connected) layer: bias broadcast-add and the
// bias gradient. The products themselves go through ct_gemm (CLBlast).
// OpenCL C 1.2. Every kernel guards its tail, so global sizes may be rounded up freely.

// y (rows, n) row-major: y[r*n + i] += b[b_off + i]
__kernel void bias_add_rows(__global float *y, __global const float *b, const uint b_off,
                            const uint rows, const uint n) {
  uint g = get_global_id(0);
  if (g < rows * n) y[g] += b[b_off + g % n];
}

// db[db_off + i] = sum over r of dy[r*n + i]; dy (rows, n) row-major. One work-item per output
// column, looping over the rows: adjacent work-items read adjacent addresses (coalesced).
__kernel void bias_grad_cols(__global const float *dy, const uint rows, const uint n,
                             __global float *db, const uint db_off) {
  uint i = get_global_id(0);
  if (i >= n) return;
  float s = 0.0f;
  for (uint r = 0; r < rows; r++) s += dy[r * n + i];
  db[db_off + i] = s;
}
