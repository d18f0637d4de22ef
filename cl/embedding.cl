// embedding.cl: token + position embedding of a GPT, forward and backward.
// OpenCL C 1.2. Every kernel guards its tail. Rows: r = b*seq + t (N = batch*seq rows of C
// channels). No atomics: every sum runs in a fixed order within one work-item. Each work-item
// owns 8 adjacent channels (float8; the last one of a row fewer): dimension 0 of every range is
// ceil(C / 8).

inline float8 load8(__global const float *p, uint m) {   // m <= 8 elements, the rest 0
  if (m >= 8) return vload8(0, p);
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

// out[r, c] = wte[tok[r], c] + wpe[r % seq, c]; tok (N) int, wte (vocab, C), wpe (>= seq, C),
// out (N, C). A token outside [0, vocab) gives NaN (and no read out of bounds). Range
// (ceil(C / 8), N).
__kernel void embedding_forward(__global const int *tok, const uint tok_off,
                                __global const float *wte, const uint wte_off,
                                __global const float *wpe, const uint wpe_off,
                                __global float *out, const uint out_off, const uint n,
                                const uint seq, const uint channels, const uint vocab) {
  uint c = get_global_id(0) * 8, r = get_global_id(1);
  if (c >= channels || r >= n) return;
  uint m = channels - c;
  int v = tok[tok_off + r];
  float8 e = v >= 0 && v < (int)vocab ? load8(wte + wte_off + (uint)v * channels + c, m)
                                      : (float8)(NAN);
  store8(e + load8(wpe + wpe_off + (r % seq) * channels + c, m), out + out_off + r * channels + c,
         m);
}

// dwte[v, c] = sum of dout[r, c] over the rows r holding token v, in increasing r (acc = 1:
// added to what dwte holds). index (vocab + 1 + N) int, from the host (ct_embedding_index):
// index[v] .. index[v+1] is where token v's rows lie in index[vocab + 1 ..], which lists the
// rows sorted by token, each token's rows in increasing order. A token with no row gets 0
// (acc = 0) or keeps its gradient (acc = 1). Range (ceil(C / 8), vocab).
__kernel void embedding_backward_wte(__global const int *index, const uint index_off,
                                     __global const float *dout, const uint dout_off,
                                     __global float *dwte, const uint dwte_off,
                                     const uint channels, const uint vocab, const uint acc) {
  uint c = get_global_id(0) * 8, v = get_global_id(1);
  if (c >= channels || v >= vocab) return;
  uint m = channels - c;
  __global const int *start = index + index_off;
  __global const int *rows = start + vocab + 1;
  float8 s = (float8)(0.0f);
  for (int i = start[v]; i < start[v + 1]; i++)
    s += load8(dout + dout_off + (uint)rows[i] * channels + c, m);
  __global float *at = dwte + dwte_off + v * channels + c;
  store8(acc ? load8(at, m) + s : s, at, m);
}

// dwpe[t, c] = sum over b of dout[b*seq + t, c], in increasing b (acc = 1: added to what dwpe
// holds). Rows of wpe at seq and beyond are not written. Range (ceil(C / 8), seq).
__kernel void embedding_backward_wpe(__global const float *dout, const uint dout_off,
                                     __global float *dwpe, const uint dwpe_off,
                                     const uint batch, const uint seq, const uint channels,
                                     const uint acc) {
  uint c = get_global_id(0) * 8, t = get_global_id(1);
  if (c >= channels || t >= seq) return;
  uint m = channels - c;
  float8 s = (float8)(0.0f);
  for (uint b = 0; b < batch; b++) s += load8(dout + dout_off + (b * seq + t) * channels + c, m);
  __global float *at = dwpe + dwpe_off + t * channels + c;
  store8(acc ? load8(at, m) + s : s, at, m);
}

// The embedding's index on the device, the same as ct_embedding_index's on the host: a stable
// counting sort of the n rows by token. index[v] (v = 0..vocab) = the rows whose token is below
// v; index[vocab + 1 + index[v] ..] lists token v's rows in increasing order. Work-item v
// (0..vocab) scans the tokens twice: no atomics, the same result on every device. A token
// outside [0, vocab) is in no list (the forward pass gave its row NaN). Range vocab + 1.
__kernel void embedding_index(__global const int *tok, const uint tok_off, const uint n,
                              const uint vocab, __global int *index, const uint index_off) {
  uint v = get_global_id(0);
  if (v > vocab) return;
  __global const int *t = tok + tok_off;
  __global int *out = index + index_off;
  uint below = 0;
  for (uint r = 0; r < n; r++) below += (uint)t[r] < v;   // (a negative token counts as large)
  out[v] = (int)below;
  if (v == vocab) return;
  uint at = vocab + 1 + below;
  for (uint r = 0; r < n; r++)
    if (t[r] == (int)v) out[at++] = (int)r;
}
