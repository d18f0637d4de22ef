// wire.c: the wire formats' conversions (fp16, bf16), scalar and vectorized. See wire.h.
#include "cltrain/wire.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__)
typedef float ct_v4f __attribute__((vector_size(16), aligned(4), may_alias));
typedef uint32_t ct_v4u __attribute__((vector_size(16), aligned(4), may_alias));
#endif

static uint32_t f32_bits(float f) { uint32_t x; memcpy(&x, &f, 4); return x; }
static float bits_f32(uint32_t x) { float f; memcpy(&f, &x, 4); return f; }

static uint16_t f32_to_f16(float f) {
  uint32_t x = f32_bits(f), sign = (x >> 16) & 0x8000, ax = x & 0x7FFFFFFFu;
  if (ax > 0x7F800000u) return (uint16_t)(sign | 0x7E00);   // NaN
  if (ax >= 0x477FF000u) return (uint16_t)(sign | 0x7C00);  // >= 65520: rounds to infinity
  if (ax < 0x38800000u) {                                    // below 2^-14: subnormal or zero
    if (ax < 0x33000000u) return (uint16_t)sign;             // below 2^-25: zero
    uint32_t e = ax >> 23, m = (ax & 0x7FFFFFu) | 0x800000u, shift = 126 - e;
    uint32_t h = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1))) h++;
    return (uint16_t)(sign | h);
  }
  uint32_t h = (ax - 0x38000000u) >> 13, rem = ax & 0x1FFFu;   // exponent 127 -> 15 bias
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;      // a carry into the exponent is right
  return (uint16_t)(sign | h);
}

static float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu, x;
  if (e == 0x1F) {
    x = sign | 0x7F800000u | (m << 13);
  } else if (e) {
    x = sign | ((e + 112) << 23) | (m << 13);
  } else if (!m) {
    x = sign;
  } else {   // subnormal: normalise
    e = 113;
    while (!(m & 0x400u)) m <<= 1, e--;
    x = sign | (e << 23) | ((m & 0x3FFu) << 13);
  }
  return bits_f32(x);
}

static uint16_t f32_to_bf16(float f) {   // branch-free, so that loops of it vectorize
  uint32_t x = f32_bits(f), nan = (x >> 16) | 0x40, r = (x + 0x7FFFu + ((x >> 16) & 1)) >> 16;
  return (uint16_t)((x & 0x7FFFFFFFu) > 0x7F800000u ? nan : r);   // NaN stays a quiet NaN
}

static float bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

// bf16 eight at a time, in the same integer arithmetic as f32_to_bf16 (GCC 12's -O2 vectorizes
// none of the scalar loops: about 1 ns an element, which made a bf16 ring 4x slower than fp32
// on one node; these run at the F16C path's speed). 16-byte vectors (SSE2, NEON); the halves
// are picked by shuffles. The tail goes through the scalar code.
#if defined(__GNUC__) && defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
typedef uint16_t ct_v8h __attribute__((vector_size(16), aligned(2), may_alias));
typedef int32_t ct_v4i __attribute__((vector_size(16), aligned(4), may_alias));
#define CT_HAVE_BF16_VEC 1
static inline ct_v4u bf16_round_bits(ct_v4u x) {   // f32_to_bf16, in the top half of the word
  ct_v4u r = (x + 0x7FFFu + ((x >> 16) & 1u)) & 0xFFFF0000u;
  ct_v4u nan = (x & 0xFFFF0000u) | 0x00400000u;   // a NaN stays a quiet NaN
  ct_v4u is_nan = (ct_v4u)((ct_v4i)(x & 0x7FFFFFFFu) > 0x7F800000);
  return (r & ~is_nan) | (nan & is_nan);
}
static inline ct_v4u bf16_widen(ct_v8h h, int hi) {   // elements 0-3 or 4-7, as fp32 bits
  const ct_v8h z = {0};
  return hi ? (ct_v4u)__builtin_shufflevector(z, h, 0, 12, 1, 13, 2, 14, 3, 15)
            : (ct_v4u)__builtin_shufflevector(z, h, 0, 8, 1, 9, 2, 10, 3, 11);
}
static void to_bf16_vec(uint16_t *restrict dst, const float *restrict src, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    ct_v8h a = (ct_v8h)bf16_round_bits(*(const ct_v4u *)(src + i));
    ct_v8h b = (ct_v8h)bf16_round_bits(*(const ct_v4u *)(src + i + 4));
    *(ct_v8h *)(dst + i) = __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15);
  }
  for (; i < n; i++) dst[i] = f32_to_bf16(src[i]);
}
static void from_bf16_vec(float *restrict dst, const uint16_t *restrict src, size_t n, int add) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    ct_v8h h = *(const ct_v8h *)(src + i);
    ct_v4f *d = (ct_v4f *)(dst + i);
    ct_v4f lo = (ct_v4f)bf16_widen(h, 0), hi = (ct_v4f)bf16_widen(h, 1);
    if (add) lo += d[0], hi += d[1];
    d[0] = lo, d[1] = hi;
  }
  for (; i < n; i++) dst[i] = add ? dst[i] + bf16_to_f32(src[i]) : bf16_to_f32(src[i]);
}
static void round_bf16_vec(float *x, size_t n) {
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    ct_v4u *v = (ct_v4u *)(x + i);
    *v = bf16_round_bits(*v);
  }
  for (; i < n; i++) x[i] = bf16_to_f32(f32_to_bf16(x[i]));
}
#endif
#endif

// fp16 -> fp32 by table (256 KiB, built once; the ring's receive side runs it per element)
static float *f16_table;
static pthread_once_t f16_once = PTHREAD_ONCE_INIT;
static void f16_table_build(void) {
  float *t = malloc(65536 * sizeof *t);
  if (!t) return;
  for (uint32_t i = 0; i < 65536; i++) t[i] = f16_to_f32((uint16_t)i);
  f16_table = t;
}

// The fp16 conversion table, built once per process when fp16 is first received.
ct_status ct_wire_prepare(ct_wire w) {
  if (w != CT_WIRE_FP16) return CT_OK;
  pthread_once(&f16_once, f16_table_build);
  if (!f16_table) return CT_FAIL(CT_ERR_NOMEM, "out of host memory (fp16 table)");
  return CT_OK;
}

const char *ct_wire_name(ct_wire w) {
  return w == CT_WIRE_FP16 ? "fp16" : w == CT_WIRE_BF16 ? "bf16" : "fp32";
}

int ct_wire_parse(const char *s, ct_wire *w) {
  if (!strcmp(s, "fp32")) *w = CT_WIRE_FP32;
  else if (!strcmp(s, "fp16")) *w = CT_WIRE_FP16;
  else if (!strcmp(s, "bf16")) *w = CT_WIRE_BF16;
  else return 0;
  return 1;
}

size_t ct_wire_bytes(ct_wire w) { return w == CT_WIRE_FP32 ? 4 : 2; }

float ct_wire_round(ct_wire w, float x) {
  if (w == CT_WIRE_FP16) return f16_to_f32(f32_to_f16(x));
  if (w == CT_WIRE_BF16) return bf16_to_f32(f32_to_bf16(x));
  return x;
}

// fp16 with the x86 F16C instructions where the CPU has them (chosen at run time; the build
// assumes nothing about the CPU): IEEE round to nearest even, the same bits as f32_to_f16
// (checked by the tests) except the payload of a NaN, about 10x faster than the integer code.
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define CT_HAVE_F16C_PATH 1
__attribute__((target("avx,f16c"))) static void to_f16_f16c(uint16_t *dst, const float *src,
                                                            size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128((__m128i *)(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; i++) dst[i] = f32_to_f16(src[i]);
}
__attribute__((target("avx,f16c"))) static void from_f16_f16c(float *dst, const uint16_t *src,
                                                              size_t n, int add) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i)));
    if (add) v = _mm256_add_ps(_mm256_loadu_ps(dst + i), v);
    _mm256_storeu_ps(dst + i, v);
  }
  for (; i < n; i++) dst[i] = add ? dst[i] + f16_to_f32(src[i]) : f16_to_f32(src[i]);
}
static int have_f16c(void) {
  static int v = -1;
  if (v < 0) {
    const char *off = getenv("CLTRAIN_NO_F16C");   // (the integer code instead, to compare)
    // CPUID leaf 1: ECX bit 29 F16C, 28 AVX, 27 OSXSAVE; XCR0 bits 1-2: the OS saves YMM
    // (clang 14's __builtin_cpu_supports does not know "f16c")
    unsigned a, b, c, d;
    int cpu = __get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1) && (c >> 28 & 1) && (c >> 27 & 1);
    if (cpu) {
      unsigned lo, hi;
      __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
      cpu = (lo & 6) == 6;
    }
    v = !(off && *off && strcmp(off, "0")) && cpu;
  }
  return v;
}
#endif

static void to_wire(ct_wire w, uint16_t *restrict dst, const float *restrict src, size_t n) {
#ifdef CT_HAVE_F16C_PATH
  if (w == CT_WIRE_FP16 && have_f16c()) {
    to_f16_f16c(dst, src, n);
    return;
  }
#endif
  if (w == CT_WIRE_FP16) {
    for (size_t i = 0; i < n; i++) dst[i] = f32_to_f16(src[i]);
  } else {
#ifdef CT_HAVE_BF16_VEC
    to_bf16_vec(dst, src, n);
#else
    for (size_t i = 0; i < n; i++) dst[i] = f32_to_bf16(src[i]);
#endif
  }
}

void ct_wire_pack(ct_wire w, uint16_t *dst, const float *src, size_t n) {
  to_wire(w, dst, src, n);
}

// dst (+)= the wire values of src
static void from_wire(ct_wire w, float *restrict dst, const uint16_t *restrict src, size_t n,
                      int add) {
#ifdef CT_HAVE_F16C_PATH
  if (w == CT_WIRE_FP16 && have_f16c()) {
    from_f16_f16c(dst, src, n, add);
    return;
  }
#endif
  if (w == CT_WIRE_FP16) {
    const float *t = f16_table;
    if (add)
      for (size_t i = 0; i < n; i++) dst[i] += t[src[i]];
    else
      for (size_t i = 0; i < n; i++) dst[i] = t[src[i]];
  } else {
#ifdef CT_HAVE_BF16_VEC
    from_bf16_vec(dst, src, n, add);
#else
    for (size_t i = 0; i < n; i++)
      dst[i] = add ? dst[i] + bf16_to_f32(src[i]) : bf16_to_f32(src[i]);
#endif
  }
}

// the finished values, rounded as every other rank receives them
static void round_wire(ct_wire w, float *x, size_t n) {
#ifdef CT_HAVE_F16C_PATH
  if (w == CT_WIRE_FP16 && have_f16c()) {
    uint16_t tmp[256];
    for (size_t i = 0; i < n; i += 256) {
      size_t k = n - i < 256 ? n - i : 256;
      to_f16_f16c(tmp, x + i, k);
      from_f16_f16c(x + i, tmp, k, 0);
    }
    return;
  }
#endif
  if (w == CT_WIRE_FP16) {
    const float *t = f16_table;
    for (size_t i = 0; i < n; i++) x[i] = t[f32_to_f16(x[i])];
  } else {
#ifdef CT_HAVE_BF16_VEC
    round_bf16_vec(x, n);
#else
    for (size_t i = 0; i < n; i++) x[i] = bf16_to_f32(f32_to_bf16(x[i]));
#endif
  }
}

ct_status ct_wire_unpack(ct_wire w, float *dst, const uint16_t *src, size_t n, int add) {
  CT_TRY(ct_wire_prepare(w));
  from_wire(w, dst, src, n, add);
  return CT_OK;
}

ct_status ct_wire_round_n(ct_wire w, float *x, size_t n) {
  CT_TRY(ct_wire_prepare(w));
  if (w != CT_WIRE_FP32) round_wire(w, x, n);
  return CT_OK;
}
