// attention.cl: multi-head causal self-attention of a GPT, from a fused qkv tensor, and the
// causal softmax that its CLBlast variant uses between batched GEMMs. OpenCL C 1.2; every kernel
// guards its tail. No atomics: every sum runs in a fixed order within one work-item.
//
//   qkv (N, 3C), N = B*T rows r = b*T + t:   | q: H heads x hd | k: H x hd | v: H x hd |
//   att (B, H, T, T): att[b,h,t,j] = softmax_j<=t(scale q[b,t,h,:] . k[b,j,h,:]), 0 for j > t
//   y (N, C): y[b,t,h*hd + d] = sum_j<=t att[b,h,t,j] v[b,j,h,d]
//   scale = 1/sqrt(hd)
// Backward, from dy (N, C) and the saved att (P):
//   dP[t,j] = dy[t,:] . v[j,:],  dS[t,j] = scale P[t,j] (dP[t,j] - sum_j' P[t,j'] dP[t,j'])
//   dq[t] = sum_j dS[t,j] k[j],  dk[j] = sum_t dS[t,j] q[t],  dv[j] = sum_t P[t,j] dy[t]
// Sizes come as arguments: B (batch), T (seq), C (channels), H (heads), hd = C / H.

// Each work-item's code is already vectorized along a row (float8): the hint keeps Intel's
// compiler from vectorizing across work-items as well (rows a stride apart: gathers), which ran
// attn_backward_query 2.5x slower there. Other compilers may ignore it.
#define VECTORIZED __attribute__((vec_type_hint(float8)))

// ---- row helpers: float8 over a row's first n entries, a scalar tail, fixed order -----------
// (exp on float8 runs PoCL's vector exp: the softmax of a row was half the forward pass's time
// with a scalar exp per entry)

// a[j] = exp(a[j] - mx) for j < n; returns their sum.
inline float row_exp_sum(__global float *a, uint n, float mx) {
  uint n8 = n & ~7u;
  float8 s8 = (float8)(0.0f);
  for (uint j = 0; j < n8; j += 8) {
    float8 e = exp(vload8(0, a + j) - mx);
    vstore8(e, 0, a + j);
    s8 += e;
  }
  float4 s4 = s8.lo + s8.hi;
  float sum = (s4.x + s4.y) + (s4.z + s4.w);
  for (uint j = n8; j < n; j++) {
    float e = exp(a[j] - mx);
    a[j] = e;
    sum += e;
  }
  return sum;
}

// a[j] *= f for j < n, a[j] = 0 for n <= j < len.
inline void row_scale_clear(__global float *a, uint n, uint len, float f) {
  uint n8 = n & ~7u;
  for (uint j = 0; j < n8; j += 8) vstore8(vload8(0, a + j) * f, 0, a + j);
  for (uint j = n8; j < n; j++) a[j] *= f;
  for (uint j = n; j < len; j++) a[j] = 0.0f;
}

// g[j] = alpha p[j] (g[j] - s) for j < n, g[j] = 0 for n <= j < len: the softmax's backward.
inline void row_softmax_grad(__global float *g, __global const float *p, uint n, uint len, float s,
                             float alpha) {
  uint n8 = n & ~7u;
  for (uint j = 0; j < n8; j += 8)
    vstore8(alpha * vload8(0, p + j) * (vload8(0, g + j) - s), 0, g + j);
  for (uint j = n8; j < n; j++) g[j] = alpha * p[j] * (g[j] - s);
  for (uint j = n; j < len; j++) g[j] = 0.0f;
}

// ---- the causal softmax: mats matrices of (T, T), row t keeps columns j <= t ---------------

// In place: s holds scores; row t becomes softmax over j <= t (max subtracted), 0 for j > t.
// Range (T, mats).
__kernel VECTORIZED void causal_softmax_forward(__global float *s, const uint s_off, const uint seq,
                                                const uint mats) {
  uint t = get_global_id(0), m = get_global_id(1);
  if (t >= seq || m >= mats) return;
  __global float *a = s + s_off + (m * seq + t) * seq;
  float mx = a[0];
  for (uint j = 1; j <= t; j++) mx = fmax(mx, a[j]);
  row_scale_clear(a, t + 1, seq, 1.0f / row_exp_sum(a, t + 1, mx));
}

// In place: dp holds dL/dP; row t becomes alpha P (dp - sum_j<=t P dp) for j <= t, 0 beyond:
// the gradient of the scores before the softmax, times alpha (the scale that multiplied them).
// Range (T, mats).
__kernel VECTORIZED void causal_softmax_backward(__global const float *p, const uint p_off,
                                                 __global float *dp, const uint dp_off,
                                                 const uint seq, const uint mats,
                                                 const float alpha) {
  uint t = get_global_id(0), m = get_global_id(1);
  if (t >= seq || m >= mats) return;
  __global const float *pr = p + p_off + (m * seq + t) * seq;
  __global float *g = dp + dp_off + (m * seq + t) * seq;
  float s = 0.0f;
  for (uint j = 0; j <= t; j++) s += pr[j] * g[j];
  row_softmax_grad(g, pr, t + 1, seq, s, alpha);
}

// ---- cltrain's own attention kernels -------------------------------------------------------
// One query row (or, for dk and dv, one key row) of one (b, h) per work-item. Its dot products
// and weighted row sums run on float8 along the head's hd channels, in blocks of up to 4 float8
// (32 channels) held in registers: a block of x for all the dot products with it, a block of
// accumulators for a weighted sum of rows (each weight loaded once per block); a scalar tail
// when hd is not a multiple of 8. Fixed orders throughout.

// out[j] = x . r_j for j < n, r_j = r + j * rs, over hd channels (out is written, not added to).
inline void row_dots(__global float *out, __global const float *x, __global const float *r,
                     uint rs, uint n, uint hd) {
  uint hd8 = hd & ~7u;
  for (uint d0 = 0; d0 < hd8; d0 += 32) {
    uint m = min(4u, (hd8 - d0) / 8);
    float8 x0 = vload8(0, x + d0), x1 = (float8)(0.0f), x2 = (float8)(0.0f), x3 = (float8)(0.0f);
    if (m > 1) x1 = vload8(1, x + d0);
    if (m > 2) x2 = vload8(2, x + d0);
    if (m > 3) x3 = vload8(3, x + d0);
    for (uint j = 0; j < n; j++) {
      __global const float *rj = r + j * rs + d0;
      float8 acc = x0 * vload8(0, rj);
      if (m > 1) acc += x1 * vload8(1, rj);
      if (m > 2) acc += x2 * vload8(2, rj);
      if (m > 3) acc += x3 * vload8(3, rj);
      float4 h = acc.lo + acc.hi;
      float s = (h.x + h.y) + (h.z + h.w);
      out[j] = d0 ? out[j] + s : s;
    }
  }
  if (hd8 < hd)
    for (uint j = 0; j < n; j++) {
      __global const float *rj = r + j * rs;
      float s = hd8 ? out[j] : 0.0f;
      for (uint d = hd8; d < hd; d++) s += x[d] * rj[d];
      out[j] = s;
    }
}

// y[d] = sum_i<n w[i * ws] r_i[d] for d < hd, r_i = r + i * rs; acc = 1: added to what y holds.
inline void weighted_rows(__global float *y, __global const float *w, uint ws,
                          __global const float *r, uint rs, uint n, uint hd, uint acc) {
  uint hd8 = hd & ~7u;
  for (uint d0 = 0; d0 < hd8; d0 += 32) {
    uint m = min(4u, (hd8 - d0) / 8);
    float8 y0 = (float8)(0.0f), y1 = (float8)(0.0f), y2 = (float8)(0.0f), y3 = (float8)(0.0f);
    for (uint i = 0; i < n; i++) {
      float p = w[i * ws];
      __global const float *ri = r + i * rs + d0;
      y0 += p * vload8(0, ri);
      if (m > 1) y1 += p * vload8(1, ri);
      if (m > 2) y2 += p * vload8(2, ri);
      if (m > 3) y3 += p * vload8(3, ri);
    }
    __global float *yd = y + d0;
    if (acc) {
      y0 += vload8(0, yd);
      if (m > 1) y1 += vload8(1, yd);
      if (m > 2) y2 += vload8(2, yd);
      if (m > 3) y3 += vload8(3, yd);
    }
    vstore8(y0, 0, yd);
    if (m > 1) vstore8(y1, 1, yd);
    if (m > 2) vstore8(y2, 2, yd);
    if (m > 3) vstore8(y3, 3, yd);
  }
  for (uint d = hd8; d < hd; d++) {
    float s = 0.0f;
    for (uint i = 0; i < n; i++) s += w[i * ws] * r[i * rs + d];
    y[d] = acc ? y[d] + s : s;
  }
}

// Forward of query row t of (b, h): att[b,h,t,:] (scores q.k_j * scale for j <= t, softmax, 0
// beyond) and y[b*T + t, h*hd ..] = sum_j att[t,j] v_j. Range (T, B*H).
__kernel VECTORIZED void attn_forward(__global const float *qkv, const uint qkv_off,
                                      __global float *att, const uint att_off, __global float *y,
                                      const uint y_off, const uint seq, const uint channels,
                                      const uint heads, const uint batch, const float scale) {
  uint t = get_global_id(0), bh = get_global_id(1);
  if (t >= seq || bh >= batch * heads) return;
  uint b = bh / heads, h = bh - b * heads, hd = channels / heads, c3 = 3 * channels;
  __global const float *q = qkv + qkv_off + (b * seq + t) * c3 + h * hd;
  __global const float *k = qkv + qkv_off + b * seq * c3 + channels + h * hd;
  __global const float *v = k + channels;
  __global float *a = att + att_off + (bh * seq + t) * seq;
  row_dots(a, q, k, c3, t + 1, hd);
  float mx = -INFINITY;
  for (uint j = 0; j <= t; j++) mx = fmax(mx, a[j] *= scale);
  row_scale_clear(a, t + 1, seq, 1.0f / row_exp_sum(a, t + 1, mx));
  weighted_rows(y + y_off + (b * seq + t) * channels + h * hd, a, 1, v, c3, t + 1, hd, 0);
}

// Backward of query row t of (b, h): dS into datt[b,h,t,:] (0 beyond t) and dq of row t
// (acc = 1: added to what dqkv holds). Range (T, B*H).
__kernel VECTORIZED void attn_backward_query(__global const float *qkv, const uint qkv_off,
                                             __global const float *att, const uint att_off,
                                             __global const float *dy, const uint dy_off,
                                             __global float *datt, const uint datt_off,
                                             __global float *dqkv, const uint dqkv_off,
                                             const uint seq, const uint channels,
                                             const uint heads, const uint batch,
                                             const float scale, const uint acc) {
  uint t = get_global_id(0), bh = get_global_id(1);
  if (t >= seq || bh >= batch * heads) return;
  uint b = bh / heads, h = bh - b * heads, hd = channels / heads, c3 = 3 * channels;
  __global const float *k = qkv + qkv_off + b * seq * c3 + channels + h * hd;
  __global const float *p = att + att_off + (bh * seq + t) * seq;
  __global float *ds = datt + datt_off + (bh * seq + t) * seq;
  row_dots(ds, dy + dy_off + (b * seq + t) * channels + h * hd, k + channels, c3, t + 1, hd);
  float sum = 0.0f;
  for (uint j = 0; j <= t; j++) sum += p[j] * ds[j];
  row_softmax_grad(ds, p, t + 1, seq, sum, scale);
  weighted_rows(dqkv + dqkv_off + (b * seq + t) * c3 + h * hd, ds, 1, k, c3, t + 1, hd, acc);
}

// Backward of key row j of (b, h): dk_j = sum_i>=j dS[i,j] q_i, dv_j = sum_i>=j P[i,j] dy_i
// (acc = 1: added to what dqkv holds). Needs attn_backward_query's datt. Range (T, B*H).
__kernel VECTORIZED void attn_backward_key(__global const float *qkv, const uint qkv_off,
                                           __global const float *att, const uint att_off,
                                           __global const float *dy, const uint dy_off,
                                           __global const float *datt, const uint datt_off,
                                           __global float *dqkv, const uint dqkv_off,
                                           const uint seq, const uint channels,
                                           const uint heads, const uint batch, const uint acc) {
  uint j = get_global_id(0), bh = get_global_id(1);
  if (j >= seq || bh >= batch * heads) return;
  uint b = bh / heads, h = bh - b * heads, hd = channels / heads, c3 = 3 * channels;
  uint col = bh * seq * seq + j * seq + j;   // [b,h,j,j]: column j from row j down, stride seq
  __global float *dk = dqkv + dqkv_off + (b * seq + j) * c3 + channels + h * hd;
  weighted_rows(dk, datt + datt_off + col, seq, qkv + qkv_off + (b * seq + j) * c3 + h * hd, c3,
                seq - j, hd, acc);
  weighted_rows(dk + channels, att + att_off + col, seq,
                dy + dy_off + (b * seq + j) * channels + h * hd, channels, seq - j, hd, acc);
}
