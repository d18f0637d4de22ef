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
// One query row (or, for dk and dv, one key row) of one (b, h) per work-item; its dot products
// and weighted row sums run on float8 along the head's hd channels (a scalar tail when hd is not
// a multiple of 4): CPU runtimes then keep each work-item's vector code (Intel's vectorizer
// would otherwise pack work-items with strided rows into gathers).

// float8 dot product of a[0..n) and b[0..n) (n8 = n & ~7: the vector part), fixed order.
inline float dot_rows(__global const float *a, __global const float *b, uint n, uint n8) {
  float8 acc = (float8)(0.0f);
  for (uint d = 0; d < n8; d += 8) acc += vload8(0, a + d) * vload8(0, b + d);
  float4 h = acc.lo + acc.hi;
  float s = (h.x + h.y) + (h.z + h.w);
  for (uint d = n8; d < n; d++) s += a[d] * b[d];
  return s;
}

// Forward of query row t of (b, h): att[b,h,t,:] (scores q.k_j * scale for j <= t, softmax, 0
// beyond) and y[b*T + t, h*hd ..] = sum_j att[t,j] v_j. Range (T, B*H).
__kernel VECTORIZED void attn_forward(__global const float *qkv, const uint qkv_off,
                                      __global float *att, const uint att_off, __global float *y,
                                      const uint y_off, const uint seq, const uint channels,
                                      const uint heads, const uint batch, const float scale) {
  uint t = get_global_id(0), bh = get_global_id(1);
  if (t >= seq || bh >= batch * heads) return;
  uint b = bh / heads, h = bh - b * heads, hd = channels / heads, hd8 = hd & ~7u;
  uint c3 = 3 * channels;
  __global const float *q = qkv + qkv_off + (b * seq + t) * c3 + h * hd;
  __global const float *k = qkv + qkv_off + b * seq * c3 + channels + h * hd;
  __global const float *v = k + channels;
  __global float *a = att + att_off + (bh * seq + t) * seq;
  __global float *yr = y + y_off + (b * seq + t) * channels + h * hd;
  float mx = -INFINITY;
  for (uint j = 0; j <= t; j++) {
    float s = dot_rows(q, k + j * c3, hd, hd8) * scale;
    a[j] = s;
    mx = fmax(mx, s);
  }
  row_scale_clear(a, t + 1, seq, 1.0f / row_exp_sum(a, t + 1, mx));
  for (uint d = 0; d < hd8; d += 8) {
    float8 acc = (float8)(0.0f);
    for (uint j = 0; j <= t; j++) acc += a[j] * vload8(0, v + j * c3 + d);
    vstore8(acc, 0, yr + d);
  }
  for (uint d = hd8; d < hd; d++) {
    float acc = 0.0f;
    for (uint j = 0; j <= t; j++) acc += a[j] * v[j * c3 + d];
    yr[d] = acc;
  }
}

// Backward of query row t of (b, h): dS into datt[b,h,t,:] (0 beyond t) and dq of row t
// (acc = 1: added to what dqkv holds). Range (T, B*H).
__kernel VECTORIZED void attn_backward_query(__global const float *qkv, const uint qkv_off,
                                             __global const float *att, const uint att_off,
                                             __global const float *dy, const uint dy_off,
                                             __global float *datt, const uint datt_off,
                                             __global float *dqkv, const uint dqkv_off,
                                             const uint seq, const uint channels, const uint heads,
                                             const uint batch, const float scale, const uint acc) {
  uint t = get_global_id(0), bh = get_global_id(1);
  if (t >= seq || bh >= batch * heads) return;
  uint b = bh / heads, h = bh - b * heads, hd = channels / heads, hd8 = hd & ~7u;
  uint c3 = 3 * channels;
  __global const float *g = dy + dy_off + (b * seq + t) * channels + h * hd;
  __global const float *k = qkv + qkv_off + b * seq * c3 + channels + h * hd;
  __global const float *v = k + channels;
  __global const float *p = att + att_off + (bh * seq + t) * seq;
  __global float *ds = datt + datt_off + (bh * seq + t) * seq;
  __global float *dq = dqkv + dqkv_off + (b * seq + t) * c3 + h * hd;
  float sum = 0.0f;
  for (uint j = 0; j <= t; j++) {
    float s = dot_rows(g, v + j * c3, hd, hd8);
    ds[j] = s;
    sum += p[j] * s;
  }
  row_softmax_grad(ds, p, t + 1, seq, sum, scale);
  for (uint d = 0; d < hd8; d += 8) {
    float8 s = (float8)(0.0f);
    for (uint j = 0; j <= t; j++) s += ds[j] * vload8(0, k + j * c3 + d);
    vstore8(acc ? vload8(0, dq + d) + s : s, 0, dq + d);
  }
  for (uint d = hd8; d < hd; d++) {
    float s = 0.0f;
    for (uint j = 0; j <= t; j++) s += ds[j] * k[j * c3 + d];
    dq[d] = acc ? dq[d] + s : s;
  }
}

// Backward of key row j of (b, h): dk_j = sum_i>=j dS[i,j] q_i, dv_j = sum_i>=j P[i,j] dy_i
// (acc = 1: added to what dqkv holds). Needs attn_backward_query's datt. Range (T, B*H).
__kernel VECTORIZED void attn_backward_key(__global const float *qkv, const uint qkv_off,
                                           __global const float *att, const uint att_off,
                                           __global const float *dy, const uint dy_off,
                                           __global const float *datt, const uint datt_off,
                                           __global float *dqkv, const uint dqkv_off,
                                           const uint seq, const uint channels, const uint heads,
                                           const uint batch, const uint acc) {
  uint j = get_global_id(0), bh = get_global_id(1);
  if (j >= seq || bh >= batch * heads) return;
  uint b = bh / heads, h = bh - b * heads, hd = channels / heads, hd8 = hd & ~7u;
  uint c3 = 3 * channels;
  __global const float *q = qkv + qkv_off + b * seq * c3 + h * hd;
  __global const float *g = dy + dy_off + b * seq * channels + h * hd;
  __global const float *p = att + att_off + bh * seq * seq + j;    // column j: p[i * seq]
  __global const float *ds = datt + datt_off + bh * seq * seq + j;
  __global float *dk = dqkv + dqkv_off + (b * seq + j) * c3 + channels + h * hd;
  __global float *dv = dk + channels;
  for (uint d = 0; d < hd8; d += 8) {
    float8 sk = (float8)(0.0f), sv = (float8)(0.0f);
    for (uint i = j; i < seq; i++) {
      sk += ds[i * seq] * vload8(0, q + i * c3 + d);
      sv += p[i * seq] * vload8(0, g + i * channels + d);
    }
    vstore8(acc ? vload8(0, dk + d) + sk : sk, 0, dk + d);
    vstore8(acc ? vload8(0, dv + d) + sv : sv, 0, dv + d);
  }
  for (uint d = hd8; d < hd; d++) {
    float sk = 0.0f, sv = 0.0f;
    for (uint i = j; i < seq; i++) {
      sk += ds[i * seq] * q[i * c3 + d];
      sv += p[i * seq] * g[i * channels + d];
    }
    dk[d] = acc ? dk[d] + sk : sk;
    dv[d] = acc ? dv[d] + sv : sv;
  }
}
