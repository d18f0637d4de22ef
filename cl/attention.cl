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

// ---- the causal softmax: mats matrices of (T, T), row t keeps columns j <= t ---------------

// In place: s holds scores; row t becomes softmax over j <= t (max subtracted), 0 for j > t.
// Range (T, mats).
__kernel void causal_softmax_forward(__global float *s, const uint s_off, const uint seq,
                                     const uint mats) {
  uint t = get_global_id(0), m = get_global_id(1);
  if (t >= seq || m >= mats) return;
  __global float *a = s + s_off + (m * seq + t) * seq;
  float mx = a[0];
  for (uint j = 1; j <= t; j++) mx = fmax(mx, a[j]);
  float sum = 0.0f;
  for (uint j = 0; j <= t; j++) {
    float e = exp(a[j] - mx);
    a[j] = e;
    sum += e;
  }
  float inv = 1.0f / sum;
  for (uint j = 0; j <= t; j++) a[j] *= inv;
  for (uint j = t + 1; j < seq; j++) a[j] = 0.0f;
}

// In place: dp holds dL/dP; row t becomes alpha P (dp - sum_j<=t P dp) for j <= t, 0 beyond:
// the gradient of the scores before the softmax, times alpha (the scale that multiplied them).
// Range (T, mats).
__kernel void causal_softmax_backward(__global const float *p, const uint p_off,
                                      __global float *dp, const uint dp_off, const uint seq,
                                      const uint mats, const float alpha) {
  uint t = get_global_id(0), m = get_global_id(1);
  if (t >= seq || m >= mats) return;
  __global const float *pr = p + p_off + (m * seq + t) * seq;
  __global float *g = dp + dp_off + (m * seq + t) * seq;
  float s = 0.0f;
  for (uint j = 0; j <= t; j++) s += pr[j] * g[j];
  for (uint j = 0; j <= t; j++) g[j] = alpha * pr[j] * (g[j] - s);
  for (uint j = t + 1; j < seq; j++) g[j] = 0.0f;
}

// ---- cltrain's own attention kernels -------------------------------------------------------

// Scores and softmax of one query row per work-item: att[b,h,t,:]. Range (T, B*H).
__kernel void attn_forward_scores(__global const float *qkv, const uint qkv_off,
                                  __global float *att, const uint att_off, const uint seq,
                                  const uint channels, const uint heads, const uint batch,
                                  const float scale) {
  uint t = get_global_id(0), bh = get_global_id(1);
  if (t >= seq || bh >= batch * heads) return;
  uint b = bh / heads, h = bh - b * heads, hd = channels / heads, c3 = 3 * channels;
  __global const float *q = qkv + qkv_off + (b * seq + t) * c3 + h * hd;
  __global const float *k = qkv + qkv_off + b * seq * c3 + channels + h * hd;
  __global float *a = att + att_off + (bh * seq + t) * seq;
  float mx = -INFINITY;
  for (uint j = 0; j <= t; j++) {
    __global const float *kj = k + j * c3;
    float s = 0.0f;
    for (uint d = 0; d < hd; d++) s += q[d] * kj[d];
    s *= scale;
    a[j] = s;
    mx = fmax(mx, s);
  }
  float sum = 0.0f;
  for (uint j = 0; j <= t; j++) {
    float e = exp(a[j] - mx);
    a[j] = e;
    sum += e;
  }
  float inv = 1.0f / sum;
  for (uint j = 0; j <= t; j++) a[j] *= inv;
  for (uint j = t + 1; j < seq; j++) a[j] = 0.0f;
}

// y[r, c] = sum_j<=t att[b,h,t,j] v[b,j,c], one output element per work-item. Range (C, N).
__kernel void attn_forward_values(__global const float *qkv, const uint qkv_off,
                                  __global const float *att, const uint att_off,
                                  __global float *y, const uint y_off, const uint seq,
                                  const uint channels, const uint heads, const uint rows) {
  uint c = get_global_id(0), r = get_global_id(1);
  if (c >= channels || r >= rows) return;
  uint b = r / seq, t = r - b * seq, hd = channels / heads, h = c / hd, c3 = 3 * channels;
  __global const float *a = att + att_off + ((b * heads + h) * seq + t) * seq;
  __global const float *v = qkv + qkv_off + b * seq * c3 + 2 * channels + c;
  float s = 0.0f;
  for (uint j = 0; j <= t; j++) s += a[j] * v[j * c3];
  y[y_off + r * channels + c] = s;
}

// dS of one query row per work-item, into datt[b,h,t,:] (0 for j > t). Range (T, B*H).
__kernel void attn_backward_scores(__global const float *qkv, const uint qkv_off,
                                   __global const float *att, const uint att_off,
                                   __global const float *dy, const uint dy_off,
                                   __global float *datt, const uint datt_off, const uint seq,
                                   const uint channels, const uint heads, const uint batch,
                                   const float scale) {
  uint t = get_global_id(0), bh = get_global_id(1);
  if (t >= seq || bh >= batch * heads) return;
  uint b = bh / heads, h = bh - b * heads, hd = channels / heads, c3 = 3 * channels;
  __global const float *g = dy + dy_off + (b * seq + t) * channels + h * hd;
  __global const float *v = qkv + qkv_off + b * seq * c3 + 2 * channels + h * hd;
  __global const float *p = att + att_off + (bh * seq + t) * seq;
  __global float *ds = datt + datt_off + (bh * seq + t) * seq;
  float sum = 0.0f;
  for (uint j = 0; j <= t; j++) {
    __global const float *vj = v + j * c3;
    float s = 0.0f;
    for (uint d = 0; d < hd; d++) s += g[d] * vj[d];
    ds[j] = s;
    sum += p[j] * s;
  }
  for (uint j = 0; j <= t; j++) ds[j] = scale * p[j] * (ds[j] - sum);
  for (uint j = t + 1; j < seq; j++) ds[j] = 0.0f;
}

// dqkv[r, c3] for c3 in [0, 3C): dq, dk or dv, one element per work-item (acc = 1: added to what
// dqkv holds). Position t of row r is the query (dq: j <= t) or the key (dk, dv: queries i >= t).
// Range (3C, N).
__kernel void attn_backward_qkv(__global const float *qkv, const uint qkv_off,
                                __global const float *att, const uint att_off,
                                __global const float *datt, const uint datt_off,
                                __global const float *dy, const uint dy_off,
                                __global float *dqkv, const uint dqkv_off, const uint seq,
                                const uint channels, const uint heads, const uint rows,
                                const uint acc) {
  uint c3 = get_global_id(0), r = get_global_id(1), w = 3 * channels;
  if (c3 >= w || r >= rows) return;
  uint b = r / seq, t = r - b * seq, part = c3 / channels, c = c3 - part * channels;
  uint hd = channels / heads, h = c / hd;
  uint m0 = (b * heads + h) * seq * seq;   // the (b, h) matrix of att and datt
  float s = 0.0f;
  if (part == 0) {          // dq[t] = sum_j<=t dS[t,j] k[j]
    __global const float *ds = datt + datt_off + m0 + t * seq;
    __global const float *k = qkv + qkv_off + b * seq * w + channels + c;
    for (uint j = 0; j <= t; j++) s += ds[j] * k[j * w];
  } else if (part == 1) {   // dk[t] = sum_i>=t dS[i,t] q[i]
    __global const float *ds = datt + datt_off + m0 + t;
    __global const float *q = qkv + qkv_off + b * seq * w + c;
    for (uint i = t; i < seq; i++) s += ds[i * seq] * q[i * w];
  } else {                  // dv[t] = sum_i>=t P[i,t] dy[i]
    __global const float *p = att + att_off + m0 + t;
    __global const float *g = dy + dy_off + b * seq * channels + c;
    for (uint i = t; i < seq; i++) s += p[i * seq] * g[i * channels];
  }
  uint at = dqkv_off + r * w + c3;
  dqkv[at] = acc ? dqkv[at] + s : s;
}
