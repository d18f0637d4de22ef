// optim.cl: optimizer updates (SGD with momentum / Nesterov / L2, AdamW), bit-reproducible
// across devices. OpenCL C 1.2.
//
// Same inputs, same bits, on every vendor:
//   - FP_CONTRACT OFF: a*b + c is a rounded product then a rounded sum, never an FMA;
//   - no mad, fma or native_ functions;
//   - + - * are correctly rounded by the OpenCL spec; / and sqrt are correctly rounded either by
//     the device (the host builds with -cl-fp32-correctly-rounded-divide-sqrt where the device
//     reports it), or built with -DCT_F64_DIVSQRT through double precision (devices with
//     cl_khr_fp64), or built with -DCT_SOFT_DIVSQRT by the exact integer code below;
//   - bias corrections and other pow/sqrt scalars come from the host as floats.
// Formulas: see include/cltrain/optim.h.
#pragma OPENCL FP_CONTRACT OFF

#ifdef CT_SOFT_DIVSQRT
// ---- correctly rounded division and square root from integer arithmetic ---------------------

// |x| = m * 2^e with m in [2^23, 2^24), for finite nonzero x (subnormals normalised).
static void ct_unpack(float x, uint *m, int *e) {
  uint bits = as_uint(x) & 0x7fffffffu;
  uint ex = bits >> 23, fr = bits & 0x7fffffu;
  if (ex == 0) {
    int s = (int)clz(fr) - 8;
    *m = fr << s;
    *e = -149 - s;
  } else {
    *m = fr | 0x800000u;
    *e = (int)ex - 150;
  }
}

// The float nearest (ties to even) to sig * 2^e, plus a little more when `sticky` is set, with
// the sign bit `sign`. sig != 0 and sig < 2^62; when sticky is set sig must have at least 25
// bits, so that the dropped bits include the rounding bit. Handles subnormal results and
// overflow to infinity.
static float ct_round_pack(uint sign, ulong sig, int e, int sticky) {
  int b = 64 - (int)clz(sig);          // bit length of sig
  int lead = e + b - 1;                // exponent of the leading bit
  int shift = lead >= -126 ? b - 24 : -149 - e;   // bits to drop (< 0: exact left shift)
  ulong kept;
  if (shift <= 0) {
    kept = sig << (-shift);
  } else {
    if (shift > b) return as_float(sign);          // below half the smallest subnormal
    kept = sig >> shift;
    ulong rest = sig & ((1ul << shift) - 1ul);
    ulong mid = 1ul << (shift - 1);
    if (rest > mid || (rest == mid && (sticky || (kept & 1ul)))) kept++;
  }
  uint bits;
  if (lead >= -126) {
    int biased = lead + 127;
    if (biased >= 255) return as_float(sign | 0x7f800000u);
    // kept is in [2^23, 2^24]; a carry out of the rounding bumps the exponent field.
    bits = ((uint)biased << 23) + (uint)(kept - 0x800000ul);
    if (bits > 0x7f800000u) bits = 0x7f800000u;
  } else {
    bits = (uint)kept;                 // subnormal, or the smallest normal after rounding up
  }
  return as_float(sign | bits);
}

static float ct_soft_sqrt(float x) {
  uint bits = as_uint(x);
  if ((bits & 0x7fffffffu) == 0) return x;               // +-0
  if (bits > 0x7f800000u) return as_float(0x7fc00000u);  // NaN or negative
  if (bits == 0x7f800000u) return x;                     // +inf
  uint m;
  int e;
  ct_unpack(x, &m, &e);
  if (e & 1) { m <<= 1; e -= 1; }                        // e even, m in [2^23, 2^25)
  ulong n = (ulong)m << 26;                              // [2^49, 2^51)
  ulong rem = n, root = 0, one = 1ul << 50;              // floor(sqrt(n)) digit by digit
  while (one > rem) one >>= 2;
  while (one) {
    if (rem >= root + one) {
      rem -= root + one;
      root = (root >> 1) + one;
    } else {
      root >>= 1;
    }
    one >>= 2;
  }
  return ct_round_pack(0u, root, (e - 26) / 2, rem != 0);   // sqrt(n) * 2^((e-26)/2)
}

static float ct_soft_div(float a, float b) {
  uint ab = as_uint(a), bb = as_uint(b);
  uint sign = (ab ^ bb) & 0x80000000u;
  uint aa = ab & 0x7fffffffu, ba = bb & 0x7fffffffu;
  if (aa > 0x7f800000u || ba > 0x7f800000u) return as_float(0x7fc00000u);
  if (aa == 0x7f800000u) return ba == 0x7f800000u ? as_float(0x7fc00000u) : as_float(sign | 0x7f800000u);
  if (ba == 0x7f800000u) return as_float(sign);
  if (ba == 0) return aa == 0 ? as_float(0x7fc00000u) : as_float(sign | 0x7f800000u);
  if (aa == 0) return as_float(sign);
  uint ma, mb;
  int ea, eb;
  ct_unpack(a, &ma, &ea);
  ct_unpack(b, &mb, &eb);
  ulong num = (ulong)ma << 26;                           // [2^49, 2^50)
  ulong q = num / mb, r = num % mb;                      // q in (2^25, 2^27)
  return ct_round_pack(sign, q, ea - eb - 26, r != 0);
}

#define CT_DIV(a, b) ct_soft_div((a), (b))
#define CT_SQRT(x) ct_soft_sqrt(x)
#elif defined(CT_F64_DIVSQRT)
// ---- correctly rounded division and square root through double precision -------------------
// OpenCL requires double / and sqrt to be correctly rounded whatever the float ones do, and
// rounding that double to float gives the correctly rounded float quotient and root: the
// exact result of a float / or sqrt is never close enough to a float midpoint for the second
// rounding to fall the other way (53 >= 2 * 24 + 2 bits; subnormal results included). A device
// with cl_khr_fp64 but loose float / and sqrt (Intel's CPU runtime) takes this path: an AdamW
// update of the language model ran 6x faster here (4.25 s -> 0.67 s of a profiled run) than
// through the integer code above.
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#define CT_DIV(a, b) convert_float_rte((double)(a) / (double)(b))
#define CT_SQRT(x) convert_float_rte(sqrt((double)(x)))
#define CT_DIV8(a, b) convert_float8_rte(convert_double8(a) / convert_double8(b))
#define CT_SQRT8(x) convert_float8_rte(sqrt(convert_double8(x)))
#else
#define CT_DIV(a, b) ((a) / (b))
#define CT_SQRT(x) sqrt(x)
#define CT_DIV8(a, b) ((a) / (b))
#define CT_SQRT8(x) sqrt(x)
#endif

// ---- updates --------------------------------------------------------------------------------

// Both updates take a skip flag: when skip_at != CT_NO_SKIP and skip[skip_at] != 0 (a count of
// non-finite gradients computed on the device) the kernel changes nothing, so the host need not
// read the count before it enqueues the update.
#define CT_NO_SKIP 0xffffffffu

// Each work-item updates CT_PER_ITEM consecutive elements (range ceil(n / CT_PER_ITEM)): the
// same scalar operations per element either way. 8 suits PoCL (its compiler vectorizes the inner
// loop); 1 suits runtimes that vectorize across work-items (Intel's) and GPUs. The host sets it.
#ifndef CT_PER_ITEM
#define CT_PER_ITEM 1
#endif

// SGD over the elements [i0, i0 + CT_PER_ITEM) of n: out = p - lr * d, d from grad * gscale
// (wd: + wd * p; mu: m = mu * v + g, d = nesterov ? g + mu * m : m), m written back to v when
// write_v. With CT_PER_ITEM == 8 a whole group is one float8 (element-wise the same
// operations, so the same bits). out may be p.
static void sgd_items(__global float *out, __global const float *p, __global const float *grad,
                      __global float *v, const uint n, const uint i0, const float gscale,
                      const float lr, const float mu, const float wd, const int nesterov,
                      const int write_v) {
#if CT_PER_ITEM == 8
  if (i0 + 8 <= n) {
    float8 w = vload8(0, p + i0), g = vload8(0, grad + i0) * gscale;   // (gscale: 1, or the clip)
    if (wd != 0.0f) g = g + wd * w;
    if (mu != 0.0f) {
      float8 m = mu * vload8(0, v + i0) + g;
      if (write_v) vstore8(m, 0, v + i0);
      g = nesterov ? g + mu * m : m;
    }
    vstore8(w - lr * g, 0, out + i0);
    return;
  }
#endif
  uint end = min(i0 + CT_PER_ITEM, n);
  for (uint i = i0; i < end; i++) {
    float w = p[i];
    float g = grad[i] * gscale;
    if (wd != 0.0f) g = g + wd * w;
    if (mu != 0.0f) {
      float m = mu * v[i] + g;
      if (write_v) v[i] = m;
      g = nesterov ? g + mu * m : m;
    }
    out[i] = w - lr * g;
  }
}

// p (n), grad (n), v (n; momentum, untouched when mu == 0).
// The elements [base, n) (all of them: base 0; a sharded update: one rank's segment).
// clip: the gradient's clipping factor at clip[0] (ct_optim_clip), or NULL-like when clip_on is
// 0 (the gradient taken as it is: g * 1 would be the same bits, but nothing is multiplied).
__kernel void sgd_step(__global float *p, __global const float *grad, __global float *v,
                       const uint n, const float lr, const float mu, const float wd,
                       const int nesterov, __global const uint *skip, const uint skip_at,
                       const uint base, __global const float *clip, const uint clip_on) {
  if (skip_at != CT_NO_SKIP && skip[skip_at] != 0u) return;
  float gs = clip_on ? clip[0] : 1.0f;
#ifdef CT_SGD_CHUNK   // CPUs: a contiguous chunk per work-item, CT_PER_ITEM at a time
  uint lo = base + (uint)get_global_id(0) * CT_SGD_CHUNK, hi = min(lo + CT_SGD_CHUNK, n);
  for (uint i0 = lo; i0 < hi; i0 += CT_PER_ITEM)
    sgd_items(p, p, grad, v, n, i0, gs, lr, mu, wd, nesterov, 1);
#else
  sgd_items(p, p, grad, v, n, base + (uint)get_global_id(0) * CT_PER_ITEM, gs, lr, mu, wd,
            nesterov, 1);
#endif
}

// --sync stale's prediction: out = the parameters after the SGD update that is still pending,
// taken with grad * gscale as that update's gradient (v is read, not written). One rank:
// exactly the next parameters; several: this rank's share of the gradient, scaled up, stands
// for the reduced one.
// The elements [base, n), as sgd_step.
__kernel void sgd_predict(__global float *out, __global const float *p,
                          __global const float *grad, __global float *v, const uint n,
                          const float gscale, const float lr, const float mu, const float wd,
                          const int nesterov, const uint base) {
#ifdef CT_SGD_CHUNK
  uint lo = base + (uint)get_global_id(0) * CT_SGD_CHUNK, hi = min(lo + CT_SGD_CHUNK, n);
  for (uint i0 = lo; i0 < hi; i0 += CT_PER_ITEM)
    sgd_items(out, p, grad, v, n, i0, gscale, lr, mu, wd, nesterov, 0);
#else
  sgd_items(out, p, grad, v, n, base + (uint)get_global_id(0) * CT_PER_ITEM, gscale, lr, mu, wd,
            nesterov, 0);
#endif
}

// p (n), grad (n), state (2n): m = state[0..n), v = state[n..2n).
// lrwd = lr*wd, omb1 = 1-b1, omb2 = 1-b2, step = lr/(1-b1^t), c2 = sqrt(1-b2^t): host floats.
// AdamW over the elements [i0, end) of n (none when end <= i0). Eight of them, with / and sqrt
// not from the integer code, are one float8: element-wise the same operations, so the same
// bits, and a runtime that runs each work-item alone (CT_ADAMW_CHUNK, groups of one) keeps the
// vector (Intel's CPU runtime, vectorizing the scalar loop across work-items, loaded every
// operand with gathers: its update of the language model ran 5.8 ms a step).
static void adamw_items(__global float *p, __global const float *grad, __global float *state,
                        const uint n, const uint i0, const uint end, const float gs,
                        const uint clip_on, const float lrwd, const float b1, const float omb1,
                        const float b2, const float omb2, const float step, const float c2,
                        const float eps) {
#ifndef CT_SOFT_DIVSQRT
  if (i0 < end && end - i0 == 8) {
    size_t iv = (size_t)n + i0;
    float8 w = vload8(0, p + i0), g = vload8(0, grad + i0);
    if (clip_on) g = g * gs;
    float8 m = b1 * vload8(0, state + i0) + omb1 * g;
    float8 v = b2 * vload8(0, state + iv) + omb2 * (g * g);
    vstore8(m, 0, state + i0);
    vstore8(v, 0, state + iv);
    w = w - lrwd * w;
    float8 denom = CT_DIV8(CT_SQRT8(v), (float8)(c2)) + eps;
    vstore8(w - step * CT_DIV8(m, denom), 0, p + i0);
    return;
  }
#endif
  for (uint i = i0; i < end; i++) {
    size_t iv = (size_t)n + i;
    float w = p[i];
    float g = clip_on ? grad[i] * gs : grad[i];
    float m = b1 * state[i] + omb1 * g;
    float v = b2 * state[iv] + omb2 * (g * g);
    state[i] = m;
    state[iv] = v;
    w = w - lrwd * w;
    float denom = CT_DIV(CT_SQRT(v), c2) + eps;
    p[i] = w - step * CT_DIV(m, denom);
  }
}

__kernel void adamw_step(__global float *p, __global const float *grad, __global float *state,
                         const uint n, const float lrwd, const float b1, const float omb1,
                         const float b2, const float omb2, const float step, const float c2,
                         const float eps, __global const uint *skip, const uint skip_at,
                         const uint base, const uint hi, __global const float *clip,
                         const uint clip_on) {
  if (skip_at != CT_NO_SKIP && skip[skip_at] != 0u) return;
  float gs = clip_on ? clip[0] : 1.0f;
#ifdef CT_ADAMW_CHUNK   // CPUs: a contiguous chunk per work-item (in groups of one), 8 at a time
  uint lo = base + (uint)get_global_id(0) * CT_ADAMW_CHUNK, end = min(lo + CT_ADAMW_CHUNK, hi);
  for (uint i0 = lo; i0 < end; i0 += 8)
    adamw_items(p, grad, state, n, i0, min(i0 + 8, end), gs, clip_on, lrwd, b1, omb1, b2, omb2,
                step, c2, eps);
#else
  uint i0 = base + (uint)get_global_id(0) * CT_PER_ITEM;   // the elements [base, hi) of n
  adamw_items(p, grad, state, n, i0, min(i0 + CT_PER_ITEM, hi), gs, clip_on, lrwd, b1, omb1, b2,
              omb2, step, c2, eps);
#endif
}

// ---- gradient clipping (--clip-norm) ---------------------------------------------------------
// The factor min(1, max_norm / (||g|| + 1e-6)) (PyTorch's clip_grad_norm_) of g[lo, hi), the
// same bits on every device: CT_CLIP_PARTS work-items each sum the squares of a fixed slice in
// index order (FP_CONTRACT OFF: a rounded square, then a rounded sum), then one work-item sums
// the parts in order and takes the square root and the quotient exactly (CT_SQRT, CT_DIV).
#define CT_CLIP_PARTS 64
// x, whose bits pass through an integer OR with `opaque` (a zero the compiler cannot see as
// one): a sum of such values cannot be reassociated, nor a product fused into the sum after it.
// Intel's CPU runtime, running these loops one work-item to a work-group, reorders a plain
// `s = s + g[k] * g[k]` (its bits differed from PoCL's and the documented order in 27 of 64
// slices of a model's gradient), and replicas on the two runtimes then clipped by factors one
// unit in the last place apart.
#define CT_ROUNDED(x, opaque) as_float(as_uint(x) | (opaque))

// parts[i] = sum of g[k]^2 over slice i of [lo, hi). Range CT_CLIP_PARTS.
__kernel void clip_sqsum(__global const float *g, const uint lo, const uint hi,
                         __global float *parts) {
  uint i = get_global_id(0);
  if (i >= CT_CLIP_PARTS) return;
  uint len = (hi - lo + CT_CLIP_PARTS - 1) / CT_CLIP_PARTS;
  uint a = lo + i * len, b = min(a + len, hi);
  uint opaque = (uint)(hi < lo);   // 0, but not to the compiler: see CT_ROUNDED
  float s = 0.0f;
  for (uint k = a; k < b; k++) s = CT_ROUNDED(s + CT_ROUNDED(g[k] * g[k], opaque), opaque);
  parts[i] = s;
}

// clip[0] = min(1, max_norm / (sqrt(sum of parts) + 1e-6)), and clip[1] the norm. One work-item.
__kernel void clip_factor(__global const float *parts, const float max_norm, __global float *clip) {
  if (get_global_id(0) != 0) return;
  uint opaque = (uint)(max_norm < 0.0f);   // 0 (max_norm > 0), not to the compiler
  float s = 0.0f;
  for (uint i = 0; i < CT_CLIP_PARTS; i++) s = CT_ROUNDED(s + parts[i], opaque);
  float norm = CT_SQRT(s);
  float f = CT_DIV(max_norm, norm + 1e-6f);
  clip[0] = f < 1.0f ? f : 1.0f;   // (NaN stays NaN: the step is skipped anyway)
  clip[1] = norm;
}

// For tests: q = a/b and s = sqrt(a), through the same CT_DIV / CT_SQRT the updates use.
// a, b, q, s (n).
__kernel void divsqrt_check(__global const float *a, __global const float *b, __global float *q,
                            __global float *s, const uint n) {
  uint i = get_global_id(0);
  if (i < n) {
    q[i] = CT_DIV(a[i], b[i]);
    s[i] = CT_SQRT(a[i]);
  }
}
