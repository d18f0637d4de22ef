// dense.cl: the non-GEMM parts of a dense (fully connected) layer: bias broadcast-add and the
// bias gradient. The products themselves go through ct_gemm (CLBlast).
// OpenCL C 1.2. Every kernel guards its tail, so global sizes may be rounded up freely.

// y (rows, n) row-major: y[r*n + i] += b[b_off + i]. Range (n, rows).
__kernel void bias_add_rows(__global float *y, __global const float *b, const uint b_off,
                            const uint rows, const uint n) {
  uint i = get_global_id(0), r = get_global_id(1);
  if (i < n && r < rows) y[(size_t)r * n + i] += b[b_off + i];
}

// The same eight columns per work-item where n % 8 == 0 (float8 along a row: the same adds, in
// fewer work-items). Range (n / 8, rows).
__kernel void bias_add_rows8(__global float *y, __global const float *b, const uint b_off,
                             const uint rows, const uint n) {
  uint i = get_global_id(0) * 8, r = get_global_id(1);
  if (i >= n || r >= rows) return;
  __global float *p = y + (size_t)r * n + i;
  vstore8(vload8(0, p) + vload8(0, b + b_off + i), 0, p);
}

// y (rows, n) row-major: y[r*n + i] = max(y[r*n + i] + b[b_off + i], 0): bias and a following
// ReLU in one pass. Range (n, rows): no division per element.
__kernel void bias_relu_rows(__global float *y, __global const float *b, const uint b_off,
                             const uint rows, const uint n) {
  uint i = get_global_id(0), r = get_global_id(1);
  if (i < n && r < rows) y[(size_t)r * n + i] = fmax(y[(size_t)r * n + i] + b[b_off + i], 0.0f);
}

// The same eight columns per work-item where n % 8 == 0. Range (n / 8, rows).
__kernel void bias_relu_rows8(__global float *y, __global const float *b, const uint b_off,
                              const uint rows, const uint n) {
  uint i = get_global_id(0) * 8, r = get_global_id(1);
  if (i >= n || r >= rows) return;
  __global float *p = y + (size_t)r * n + i;
  vstore8(fmax(vload8(0, p) + vload8(0, b + b_off + i), (float8)(0.0f)), 0, p);
}

// The gradient through a ReLU whose output is y, and the bias gradient, in one pass:
// dy[r*n + i] = y[r*n + i] > 0 ? dy[r*n + i] : 0 (in place), db[db_off + i] = sum over r
// (acc != 0: db[db_off + i] += the sum, for a bias used twice).
// Each work-item owns 8 adjacent columns (vector loads along a row), walking the rows in order;
// range ceil(n / 8).
__kernel void relu_bias_grad_cols(__global float *dy, __global const float *y, const uint rows,
                                  const uint n, __global float *db, const uint db_off,
                                  const uint acc) {
  uint i0 = get_global_id(0) * 8;
  if (i0 >= n) return;
  if (i0 + 8 <= n) {
    float8 s = (float8)(0.0f);
    for (uint r = 0; r < rows; r++) {
      size_t at = (size_t)r * n + i0;
      float8 g = select((float8)(0.0f), vload8(0, dy + at), vload8(0, y + at) > (float8)(0.0f));
      vstore8(g, 0, dy + at);
      s += g;
    }
    if (acc) s += vload8(0, db + db_off + i0);
    vstore8(s, 0, db + db_off + i0);
    return;
  }
  for (uint i = i0; i < n; i++) {
    float s = 0.0f;
    for (uint r = 0; r < rows; r++) {
      float g = y[r * n + i] > 0.0f ? dy[r * n + i] : 0.0f;
      dy[r * n + i] = g;
      s += g;
    }
    db[db_off + i] = acc ? db[db_off + i] + s : s;
  }
}

// db[db_off + i] = sum over r of dy[r*n + i] (acc != 0: += the sum); dy (rows, n) row-major.
// Each work-item owns 8 adjacent columns (vector loads along a row); range ceil(n / 8).
__kernel void bias_grad_cols(__global const float *dy, const uint rows, const uint n,
                             __global float *db, const uint db_off, const uint acc) {
  uint i0 = get_global_id(0) * 8;
  if (i0 >= n) return;
  if (i0 + 8 <= n) {
    float8 s = (float8)(0.0f);
    for (uint r = 0; r < rows; r++) s += vload8(0, dy + (size_t)r * n + i0);
    if (acc) s += vload8(0, db + db_off + i0);
    vstore8(s, 0, db + db_off + i0);
    return;
  }
  for (uint i = i0; i < n; i++) {
    float s = 0.0f;
    for (uint r = 0; r < rows; r++) s += dy[r * n + i];
    db[db_off + i] = acc ? db[db_off + i] + s : s;
  }
}
