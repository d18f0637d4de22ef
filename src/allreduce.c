// allreduce.c: the ring all-reduce (SUM of floats) over MPI, on host arrays and on device
// buffers staged through (pinned where possible) host memory. See allreduce.h.
//
// The ring, N = 4, count cut into segments S0..S3 (the remainder spread over the first ones):
//
//        +--------+  S_r sent right   +--------+
//        | rank 0 | ----------------> | rank 1 |        rank r sends to r+1 and
//        +--------+                   +--------+        receives from r-1 (mod N)
//             ^                            |
//             |                            v
//        +--------+                   +--------+
//        | rank 3 | <---------------- | rank 2 |
//        +--------+                   +--------+
//
//   step t (0 .. 2N-3):  send segment (r - t) mod N,  receive segment (r - t - 1) mod N
//   t <  N-1  reduce-scatter: the received chunk is ADDED to ours (receive into a slot, add)
//   t >= N-1  all-gather:     the received chunk is finished, receive it in place
//   after step N-2 rank r holds the finished segment (r + 1) mod N.
//
//   rank:          0          1          2          3
//   t=0 sends     S0         S1         S2         S3       (own data)
//   t=1 sends     S3+S0      S0+S1      S1+S2      S2+S3    (what it received at t=0, + own)
//   t=2 sends     S2+S3+S0   S3+S0+S1   ...                 (t=2: rank 0 finishes S1)
//   t=3..5        the finished segments travel once more round the ring (copies)
//
// What a rank sends at step t+1 is what it received (and added to) at step t, so each segment
// is cut into chunks that flow through the ring on their own: chunk c goes on to step t+1 as
// soon as it arrived at step t, with no step-wide barrier. Messages carry the step as their tag;
// within a step chunks go in order, so MPI's non-overtaking rule matches them. Segment s is
// summed as ((x_s + x_s+1) + x_s+2) + ... over ranks (x_k = rank k's data): a fixed order, the
// same bits on every run, and the same bits on every rank because the all-gather copies.
//
// Device buffers: the range is read into a host staging array chunk by chunk on a copy queue
// of our own (non-blocking reads with one event each, waited for only when a chunk is needed),
// the ring runs on the staging array, and every chunk is written back as soon as it is
// finished (the last reduce-scatter step and each all-gather step), so D2H of chunk k+1, the
// MPI exchange of chunk k and H2D of finished chunks overlap.
//
// Deadlock freedom: a rank blocks only on (a) the receive of the item it processes next,
// whose send the left neighbour has posted or will post without blocking on us first, and
// (b) before an all-gather receive into a region, on the send of that region N-1 steps earlier
// (the right neighbour needs only earlier items to post its receive). All step-0 sends are
// posted before any later step is processed.
#include "cltrain/allreduce.h"

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cltrain/timer.h"

#define RING_SLOTS 4   // receive slots (chunks) of the reduce-scatter; also the posting window
#define WINDOW_CHUNKS 8                      // chunks of an unbalanced window's largest part
#define WINDOW_CHUNK_MIN ((size_t)16 << 10)  // floats (64 KiB): no smaller messages for it

// ---- in-place addition (vectorized; the same bits as the scalar loop) ------------------------

#if defined(__GNUC__)
typedef float ct_v4f __attribute__((vector_size(16), aligned(4), may_alias));
typedef uint32_t ct_v4u __attribute__((vector_size(16), aligned(4), may_alias));
#endif

static void add_f32(float *restrict dst, const float *restrict src, size_t n) {
  size_t i = 0;
#if defined(__GNUC__)
  for (; i + 16 <= n; i += 16) {
    ct_v4f *d = (ct_v4f *)(dst + i);
    const ct_v4f *s = (const ct_v4f *)(src + i);
    ct_v4f a0 = d[0] + s[0], a1 = d[1] + s[1], a2 = d[2] + s[2], a3 = d[3] + s[3];
    d[0] = a0, d[1] = a1, d[2] = a2, d[3] = a3;
  }
#endif
  for (; i < n; i++) dst[i] += src[i];
}

// Is x not finite (exponent bits all set: an infinity or a NaN)?
static uint32_t f32_nonfinite(const float *x) {
  uint32_t u;
  memcpy(&u, x, sizeof u);
  return (u & 0x7f800000u) == 0x7f800000u;
}

// add_f32, and in the same pass whether any sum is not finite (ct_ring_opts.nonfinite).
static int add_f32_nonfinite(float *restrict dst, const float *restrict src, size_t n) {
  size_t i = 0;
  uint32_t any = 0;
#if defined(__GNUC__)
  const ct_v4u e = {0x7f800000u, 0x7f800000u, 0x7f800000u, 0x7f800000u};
  ct_v4u acc = {0, 0, 0, 0};
  for (; i + 16 <= n; i += 16) {
    ct_v4f *d = (ct_v4f *)(dst + i);
    const ct_v4f *s = (const ct_v4f *)(src + i);
    ct_v4f a0 = d[0] + s[0], a1 = d[1] + s[1], a2 = d[2] + s[2], a3 = d[3] + s[3];
    d[0] = a0, d[1] = a1, d[2] = a2, d[3] = a3;
    acc |= (ct_v4u)(((ct_v4u)a0 & e) == e) | (ct_v4u)(((ct_v4u)a1 & e) == e) |
           (ct_v4u)(((ct_v4u)a2 & e) == e) | (ct_v4u)(((ct_v4u)a3 & e) == e);
  }
  any = acc[0] | acc[1] | acc[2] | acc[3];
#endif
  for (; i < n; i++) {
    dst[i] += src[i];
    any |= f32_nonfinite(dst + i);
  }
  return any != 0;
}

// ---- the wire formats -----------------------------------------------------------------------
//
// Round to nearest, ties to even, in integer arithmetic (no float operation a compiler could
// contract or reorder): the same bits on every rank, whatever the compiler or CPU. Overflow
// gives infinity (the trainer's non-finite guard then skips the step), NaN stays NaN.

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
static ct_status wire_tables(ct_wire w) {
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
    const char *off = getenv("CLTRAIN_NO_F16C");   // the tests compare both paths
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
  CT_TRY(wire_tables(w));
  from_wire(w, dst, src, n, add);
  return CT_OK;
}

ct_status ct_wire_round_n(ct_wire w, float *x, size_t n) {
  CT_TRY(wire_tables(w));
  if (w != CT_WIRE_FP32) round_wire(w, x, n);
  return CT_OK;
}

// ---- the ring -------------------------------------------------------------------------------

typedef struct {
  MPI_Comm comm;
  int rank, size;
  float *data;            // (count) the array reduced in place (user array or staging)
  size_t count, chunk;    // chunk: floats per message
  // The window [base, base + count) of a layout of `total` floats (0: total = count): the
  // segments are those of the whole layout, cut to the window, so that an element is summed in
  // the same order whichever window (bucket) it is reduced in.
  size_t base, total;
  ct_wire wire;           // the format of the messages (sums are fp32 on every rank)
  int idle;               // ct_ring_opts.idle: yield between tests instead of napping
  int part;               // ct_ring_opts.part: 0 the whole ring, or one of its halves
  int t_lo, t_hi;         // the steps this call runs: [0, 2N-2), [0, N-1) or [N-1, 2N-2)
  int s0;                 // the segment the first step sends: r, or r+1 (all-gather only)
  unsigned *nf_out;       // ct_ring_opts.nonfinite: segments with a non-finite sum, added to
  size_t nf_end;          // ... among the layout's elements [0, nf_end)
  unsigned nf_seen;       // chunks of our finished segment with a non-finite sum, so far
  unsigned char *slots;   // (RING_SLOTS) receive slots, page-aligned, slot_stride bytes apart
  size_t slot_stride;
  unsigned char *sbuf;    // wire != fp32: (n0 + items) send images, sbuf_stride bytes apart
  size_t sbuf_stride;
  MPI_Request *rreq;      // (items) receive of item i
  MPI_Request *sreq;      // (n0 + items) step-0 sends, then the send that follows item i
  size_t *rstart;         // (2N - 1) first item of each step; rstart[2N-2] = items
  // Device staging (queue NULL: a host array, no copies).
  cl_command_queue queue;
  cl_mem buf;             // the user's device buffer
  size_t offset;          // floats
  cl_event *d2h;          // (N, maxch) read of chunk c of segment s; NULL once waited for
  size_t maxch;
  int whole;              // the range fits in one chunk: one read (d2h[0]) and one write
  int tag0;               // tags tag0 .. tag0 + 2N-3 (rings in flight at once differ)
  // A small window (see ct_allreduce_algo): gathered whole by every rank, summed in the ring's
  // order. gath: (N, count) every rank's window, rank-major; rreq/sreq its N-1 receives and
  // sends.
  int small;
  float *gath;

  // Where the ring stands (ring_advance resumes here): items done, receives posted, the step
  // of the next receive to post, step-0 sends posted, the step of item i.
  size_t i, p, next0;
  int pt, ti, started;

  ct_allreduce_stats st;  // this call's times
} ring;

static int mod(int a, int n) { return ((a % n) + n) % n; }
static size_t seg_start(size_t total, int size, int s) {   // the remainder on the first ones
  size_t rem = total % (size_t)size;
  return (size_t)s * (total / (size_t)size) + ((size_t)s < rem ? (size_t)s : rem);
}
void ct_ring_segment(size_t total, int size, int s, size_t *lo, size_t *hi) {
  *lo = seg_start(total, size, s), *hi = seg_start(total, size, s + 1);
}
static size_t gseg_off(const ring *g, int s) {   // segment s of the whole layout
  return seg_start(g->total ? g->total : g->count, g->size, s);
}
static size_t seg_off(const ring *g, int s) {     // its part of the window, from the window
  size_t lo = gseg_off(g, s), end = g->base + g->count;
  if (lo < g->base) lo = g->base;
  return (lo < end ? lo : end) - g->base;
}
static size_t seg_len(const ring *g, int s) {
  size_t lo = gseg_off(g, s), hi = gseg_off(g, s + 1), end = g->base + g->count;
  if (lo < g->base) lo = g->base;
  if (hi > end) hi = end;
  return hi > lo ? hi - lo : 0;
}
static size_t esz(const ring *g) { return g->wire == CT_WIRE_FP32 ? sizeof(float) : 2; }

// Receive slots and send images are placed so that their addresses agree modulo 4096 with the
// neighbour's (for fp32 with the region of our own array the neighbour sends from its array,
// for the wire formats by the element's place in the layout): AMD Zen's kernel copy (rep movsb,
// which Open MPI's single-copy transport ends in) runs at a third of its speed when the
// destination lies 1..63 bytes after the source modulo 4096, which is where a malloc'ed slot
// (16 bytes into its page) met the page-aligned buffers of Intel's runtime: the device ring ran
// at 1.9x the host ring's time. Strides of 4096 or more get a page of room for the shift.
static size_t pad_stride(size_t bytes) {
  return bytes >= 4096 ? ((bytes + 4095) & ~(size_t)4095) + 4096 : (bytes + 63) & ~(size_t)63;
}
static void *placed(unsigned char *b, size_t stride, uintptr_t like) {
  return stride >= 8192 ? b + (like & 4095) : b;
}
static uintptr_t place_of(const ring *g, const float *region) {
  return g->wire == CT_WIRE_FP32 ? (uintptr_t)region
                                 : (uintptr_t)((g->base + (size_t)(region - g->data)) * 2);
}
static void *slot_ptr(const ring *g, size_t p, const float *region) {
  return placed(g->slots + (p % RING_SLOTS) * g->slot_stride, g->slot_stride, place_of(g, region));
}
static size_t seg_chunks(const ring *g, int s) { return (seg_len(g, s) + g->chunk - 1) / g->chunk; }
static int recv_seg(const ring *g, int t) { return mod(g->rank - t - 1, g->size); }

// Fills rstart (steps outside [t_lo, t_hi) have no items) and the steps and first segment of
// the call's part; returns the number of receive items.
static size_t ring_layout(ring *g) {
  int steps = 2 * g->size - 2;
  g->t_lo = g->part == CT_RING_ALL_GATHER ? g->size - 1 : 0;
  g->t_hi = g->part == CT_RING_REDUCE_SCATTER ? g->size - 1 : steps;
  g->s0 = g->part == CT_RING_ALL_GATHER ? mod(g->rank + 1, g->size) : g->rank;
  size_t n = 0;
  for (int t = 0; t < steps; t++) {
    g->rstart[t] = n;
    if (t >= g->t_lo && t < g->t_hi) n += seg_chunks(g, recv_seg(g, t));
  }
  g->rstart[steps] = n;
  return n;
}

// Has the read of chunk c of segment s landed in staging? block: wait for it.
static ct_status d2h_ready(ring *g, int s, size_t c, int block, int *ready) {
  *ready = 1;
  if (!g->queue) return CT_OK;
  cl_event *ev = &g->d2h[g->whole ? 0 : (size_t)s * g->maxch + c];
  if (!*ev) return CT_OK;
  cl_int err;
  if (block) {
    double t0 = ct_now();
    err = clWaitForEvents(1, ev);
    g->st.d2h_s += ct_now() - t0;
  } else {
    cl_int stat = CL_QUEUED;
    err = clGetEventInfo(*ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof stat, &stat, NULL);
    if (err == CL_SUCCESS && stat < 0) err = stat;
    if (err == CL_SUCCESS && stat != CL_COMPLETE) {
      *ready = 0;
      return CT_OK;
    }
  }
  clReleaseEvent(*ev);
  *ev = NULL;
  CL_CHECK(err);
  return CT_OK;
}

static ct_status write_back(ring *g, const float *region, size_t len) {
  if (!g->queue || g->whole || len == 0) return CT_OK;
  size_t at = (size_t)(region - g->data);
  double t0 = ct_now();
  CL_CHECK(clEnqueueWriteBuffer(g->queue, g->buf, CL_FALSE, (g->offset + at) * sizeof(float),
                                len * sizeof(float), region, 0, NULL, NULL));
  CL_CHECK(clFlush(g->queue));
  g->st.h2d_s += ct_now() - t0;
  return CT_OK;
}

// Sends len floats of region as send j (sreq[j]): as they are, or converted to the wire format
// into send image j.
static ct_status isend(ring *g, const float *region, size_t len, int tag, size_t j) {
  int right = mod(g->rank + 1, g->size);
  const void *buf = region;
  if (g->wire != CT_WIRE_FP32) {
    double t0 = ct_now();
    uint16_t *w = placed(g->sbuf + j * g->sbuf_stride, g->sbuf_stride, place_of(g, region));
    to_wire(g->wire, w, region, len);
    g->st.reduce_s += ct_now() - t0;
    buf = w;
  }
  double t0 = ct_now();
  int err = MPI_Isend(buf, (int)len, g->wire == CT_WIRE_FP32 ? MPI_FLOAT : MPI_UINT16_T, right,
                      g->tag0 + tag, g->comm, &g->sreq[j]);
  g->st.mpi_s += ct_now() - t0;
  if (err != MPI_SUCCESS) return ct_mpi_error(err, "MPI_Isend", __FILE__, __LINE__);
  g->st.bytes_sent += len * esz(g);
  return CT_OK;
}

// Is a request complete? block: wait for it, polling for 200 us, then every 50 us with a sleep
// in between, so a rank waiting long for a slower neighbour leaves the core to whatever shares
// it (its own device threads on a CPU, or another rank) instead of spinning in MPI_Wait.
// An idle call (ct_ring_opts.idle: nothing of this rank computes meanwhile) yields the core
// between tests instead of sleeping: a 50 us nap wakes up to 100 us late (timer slack), after
// the data has come, and that is exposed time; a yield still hands the core to a runnable
// thread (another rank's on an oversubscribed node).
static ct_status mpi_ready_n(ring *g, int n, MPI_Request *req, int block, int *ready,
                             const char *what) {
  double t0 = ct_now();
  int err;
  while ((err = MPI_Testall(n, req, ready, MPI_STATUSES_IGNORE)) == MPI_SUCCESS && !*ready &&
         block) {
    if (ct_now() - t0 > 200e-6) {
      if (g->idle) {
        sched_yield();
      } else {
        struct timespec ts = {0, 50000};
        nanosleep(&ts, NULL);
      }
    }
  }
  g->st.mpi_s += ct_now() - t0;
  if (err != MPI_SUCCESS) return ct_mpi_error(err, what, __FILE__, __LINE__);
  return CT_OK;
}

static ct_status mpi_ready(ring *g, MPI_Request *req, int block, int *ready, const char *what) {
  return mpi_ready_n(g, 1, req, block, ready, what);
}

// Posts the first step's sends (our own segment r; for the all-gather alone, our finished
// segment r+1) of chunks next0 .. upto-1, as far as their reads have landed (all of them with
// block).
static ct_status post_sends0(ring *g, size_t upto, int block) {
  int s = g->s0;
  size_t off = seg_off(g, s), len = seg_len(g, s);
  for (; g->next0 < upto; g->next0++) {
    size_t c = g->next0, lo = c * g->chunk, n = len - lo < g->chunk ? len - lo : g->chunk;
    int ready;
    CT_TRY(d2h_ready(g, s, c, block, &ready));
    if (!ready) break;
    CT_TRY(isend(g, g->data + off + lo, n, g->t_lo, c));
  }
  return CT_OK;
}

// Posts the receive of item p (step t, chunk c).
static ct_status post_recv(ring *g, size_t p, int t) {
  int s = recv_seg(g, t), left = mod(g->rank - 1, g->size);
  size_t c = p - g->rstart[t], lo = c * g->chunk, len = seg_len(g, s) - lo;
  if (len > g->chunk) len = g->chunk;
  // reduce-scatter, or any wire format: a slot; fp32 all-gather: in place
  float *region = g->data + seg_off(g, s) + lo;
  void *dst = t < g->size - 1 || g->wire != CT_WIRE_FP32 ? slot_ptr(g, p, region) : region;
  double t0 = ct_now();
  int err = MPI_Irecv(dst, (int)len, g->wire == CT_WIRE_FP32 ? MPI_FLOAT : MPI_UINT16_T, left,
                      g->tag0 + t, g->comm, &g->rreq[p]);
  g->st.mpi_s += ct_now() - t0;
  if (err != MPI_SUCCESS) return ct_mpi_error(err, "MPI_Irecv", __FILE__, __LINE__);
  return CT_OK;
}

// Index in sreq of the send that last read the region an all-gather item (t >= N-1, chunk c)
// receives into: the send of step t-N+1, chunk c.
static size_t ag_dep(const ring *g, int t, size_t c, size_t n0) {
  int td = t - g->size + 1;
  return td == 0 ? c : n0 + g->rstart[td - 1] + c;
}

// Posts receives ahead of the item being processed (`done` items are finished), up to the
// window; an all-gather receive waits (without blocking) until the send out of its region is
// complete. Stops at the first that cannot be posted yet, so receives stay in order.
static ct_status post_recvs(ring *g, size_t done, size_t n0) {
  const int steps = 2 * g->size - 2;
  const size_t items = g->rstart[steps];
  size_t *p = &g->p;
  int *pt = &g->pt;
  while (*p < items && *p < done + RING_SLOTS) {
    while (*p >= g->rstart[*pt + 1]) (*pt)++;
    int t = *pt;
    if (t >= g->size - 1 && g->part == 0) {   // (the all-gather alone never receives into a
                                              // region it sends from: no such wait)
      int td = t - g->size + 1;
      size_t c = *p - g->rstart[t];
      int posted = td == 0 ? c < g->next0 : g->rstart[td - 1] + c < done;
      if (!posted) break;
      int flag = 0;
      double t0 = ct_now();
      int err = MPI_Test(&g->sreq[ag_dep(g, t, c, n0)], &flag, MPI_STATUS_IGNORE);
      g->st.mpi_s += ct_now() - t0;
      if (err != MPI_SUCCESS) return ct_mpi_error(err, "MPI_Test", __FILE__, __LINE__);
      if (!flag) break;
    }
    CT_TRY(post_recv(g, *p, t));
    (*p)++;
  }
  return CT_OK;
}

// Cancels and frees whatever is still in flight after a failure. The buffers the requests
// point at are not freed by the callers on this path (an MPI error leaves the job broken).
static void ring_abandon(ring *g, size_t nsend, size_t nrecv) {
  for (size_t i = 0; i < nrecv; i++)
    if (g->rreq[i] != MPI_REQUEST_NULL) {
      MPI_Cancel(&g->rreq[i]);
      MPI_Request_free(&g->rreq[i]);
    }
  for (size_t i = 0; i < nsend; i++)
    if (g->sreq[i] != MPI_REQUEST_NULL) MPI_Request_free(&g->sreq[i]);
}

// ---- the non-finite test (ct_ring_opts.nonfinite) -------------------------------------------

static int any_nonfinite(const float *x, size_t n) {
  uint32_t any = 0;
  for (size_t i = 0; i < n; i++) any |= f32_nonfinite(x + i);
  return any != 0;
}

// The tested part of segment s in the window: [*lo, *hi), from the window's start.
static int nf_part(const ring *g, int s, size_t *lo, size_t *hi) {
  *lo = seg_off(g, s), *hi = *lo + seg_len(g, s);
  size_t end = g->nf_end > g->base ? g->nf_end - g->base : 0;
  if (*hi > end) *hi = end;
  return *hi > *lo;
}

// A chunk of our finished segment s, [at, at + n) from the window's start, its sums final:
// notes whether any is not finite (fused >= 0: add_f32_nonfinite found it over the whole
// chunk); the chunk holding the segment's last tested element marks it with a NaN when the
// segment had any (its earlier chunks have gone on already).
static void nf_chunk(ring *g, int s, float *region, size_t at, size_t n, int fused) {
  size_t lo, hi;
  if (!g->nf_out || !nf_part(g, s, &lo, &hi) || at >= hi) return;
  size_t m = at + n < hi ? n : hi - at;
  g->nf_seen += (unsigned)(fused >= 0 && m == n ? fused : any_nonfinite(region, m));
  if (at + n >= hi && g->nf_seen) region[hi - 1 - at] = NAN;
}

// After the ring: every segment's last tested element (the gather path: every segment whole,
// each rank holding all the sums).
static void nf_tally(const ring *g) {
  if (!g->nf_out) return;
  unsigned bad = 0;
  for (int s = 0; s < g->size; s++) {
    size_t lo, hi;
    // the reduce-scatter alone: only the segment this rank finished (r+1) holds sums
    if (g->part == CT_RING_REDUCE_SCATTER && g->size > 1 && s != mod(g->rank + 1, g->size))
      continue;
    if (!nf_part(g, s, &lo, &hi)) continue;
    bad += (unsigned)(g->small || g->size < 2 ? any_nonfinite(g->data + lo, hi - lo)
                                              : any_nonfinite(g->data + hi - 1, 1));
  }
  *g->nf_out += bad;
}

// ---- small windows: gathered, then summed in the ring's order on every rank ----------------
//
// The ring's 2(N-1) steps in sequence cost 2(N-1) message latencies, which is all a small
// window costs. Below the size ct_allreduce_algo gives, every rank sends its window to every
// other rank at once (N-1 sends and receives in flight: one latency) and computes each element
// exactly as the ring would have: segment s as ((x_s + x_s+1) + x_s+2) + ..., and with a wire
// format each partial sum rounded to it before the next addition (the ring rounds what it
// sends) and the finished one rounded too. IEEE addition is commutative, so this is the ring's
// bits, on every rank: a window may take either path (a bucket, the status words) and the
// trainer's replicas and its bucket-for-bucket equality stay bitwise. The exchange moves fp32
// inputs ((N-1) x count x 4 bytes per rank), so it is for windows where latency, not bytes,
// decides. Point-to-point, not MPI_Allgather: a request's messages carry its slot's tag, so
// requests in flight may start their exchanges in any order (collectives must be started in
// the same order on every rank, and a request starts when its data is ready, which differs).
// At hundreds of ranks the N-1 messages per rank would want a log2(N)-step gather instead.

// The ring's sums of the window from all: (N, count), rank k's window in row k. The all-gather
// alone: each segment as its owner (rank s-1) holds it.
static void small_sum(const ring *g, const float *all, float *out) {
  int N = g->size;
  for (int s = 0; s < N; s++) {
    size_t off = seg_off(g, s), len = seg_len(g, s);
    if (len == 0) continue;
    float *o = out + off;
    if (g->part == CT_RING_ALL_GATHER) {
      memcpy(o, all + (size_t)mod(s - 1, N) * g->count + off, len * sizeof(float));
      continue;
    }
    memcpy(o, all + (size_t)s * g->count + off, len * sizeof(float));
    for (int k = 1; k < N; k++) {
      if (g->wire != CT_WIRE_FP32) round_wire(g->wire, o, len);   // as rank s+k-1 sent it
      add_f32(o, all + (size_t)((s + k) % N) * g->count + off, len);
    }
    if (g->wire != CT_WIRE_FP32) round_wire(g->wire, o, len);     // the finished segment
  }
}

// The small path's ring_advance: the window's data (read, where staged), the exchange (rreq,
// sreq: N-1 each), the sums.
static ct_status small_advance(ring *g, int block, int *done) {
  const int N = g->size, r = g->rank;
  ct_status st = CT_OK;
  int ready;
  *done = 0;
  if (!g->started) {
    CT_TRY(wire_tables(g->wire));
    CT_TRY(d2h_ready(g, 0, 0, block, &ready));   // staged small windows are read whole
    if (!ready) return CT_OK;
    float *mine = g->gath + (size_t)r * g->count;   // sent from here: g->data gets the sums
    memcpy(mine, g->data, g->count * sizeof(float));
    for (int k = 0; k < N - 1; k++) g->rreq[k] = g->sreq[k] = MPI_REQUEST_NULL;
    g->started = 1;
    double t0 = ct_now();
    for (int k = 1; k < N; k++) {   // receives first, then sends, nearest neighbours first
      int from = (r - k + N) % N;
      MPI_GOTO(MPI_Irecv(g->gath + (size_t)from * g->count, (int)g->count, MPI_FLOAT, from,
                         g->tag0, g->comm, &g->rreq[k - 1]), st, fail);
    }
    for (int k = 1; k < N; k++)
      MPI_GOTO(MPI_Isend(mine, (int)g->count, MPI_FLOAT, (r + k) % N, g->tag0, g->comm,
                         &g->sreq[k - 1]), st, fail);
    g->st.mpi_s += ct_now() - t0;
    g->st.bytes_sent += (size_t)(N - 1) * g->count * sizeof(float);
  }
  CT_GOTO(mpi_ready_n(g, N - 1, g->rreq, block, &ready, "MPI_Testall(exchange receives)"), st,
          fail);
  if (!ready) return CT_OK;
  CT_GOTO(mpi_ready_n(g, N - 1, g->sreq, block, &ready, "MPI_Testall(exchange sends)"), st,
          fail);
  if (!ready) return CT_OK;
  double t0 = ct_now();
  small_sum(g, g->gath, g->data);
  g->st.reduce_s += ct_now() - t0;
  CT_TRY(write_back(g, g->data, g->count));
  *done = 1;
  return CT_OK;
fail:
  ring_abandon(g, (size_t)N - 1, (size_t)N - 1);
  return st;
}

// Advances the 2N-2 steps on g->data as far as they can go without waiting (block: to the
// end); *done = 1 when the ring is complete (its sends too). Needs N >= 2 and ring_layout done.
// Resumable: everything it waits for is checked before an item is processed, and an item is
// processed once. Deadlock-free as ring_run was (see the top): before any item of a step >= 1
// all step-0 sends are posted, and a rank never waits on anything its neighbours wait for.
static ct_status ring_advance(ring *g, int block, int *done) {
  if (g->small) return small_advance(g, block, done);
  const int N = g->size, steps = 2 * N - 2;
  const size_t items = g->rstart[steps], n0 = seg_chunks(g, g->s0);
  ct_status st = CT_OK;
  int ready;
  *done = 0;
  if (!g->started) {
    CT_TRY(wire_tables(g->wire));
    for (size_t i = 0; i < items; i++) g->rreq[i] = MPI_REQUEST_NULL;
    for (size_t i = 0; i < n0 + items; i++) g->sreq[i] = MPI_REQUEST_NULL;
    g->i = g->p = g->next0 = 0;
    g->pt = g->ti = 0;
    g->started = 1;
    // Receives first, so that the neighbour's first chunks find them posted.
    CT_GOTO(post_recvs(g, 0, n0), st, fail);
    CT_GOTO(post_sends0(g, n0 < RING_SLOTS ? n0 : RING_SLOTS, block), st, fail);
  }
  while (g->i < items) {
    size_t i = g->i;
    while (i >= g->rstart[g->ti + 1]) g->ti++;
    int t = g->ti, s = recv_seg(g, t);
    size_t c = i - g->rstart[t], len = seg_len(g, s), lo = c * g->chunk;
    size_t n = len - lo < g->chunk ? len - lo : g->chunk;
    float *region = g->data + seg_off(g, s) + lo;
    if (t > g->t_lo) {
      CT_GOTO(post_sends0(g, n0, block), st, fail);
      if (g->next0 < n0) return CT_OK;
    } else {   // the first step: our sends up to RING_SLOTS ahead (a start that found reads still
               // landing posted fewer; waiting for a receive without them would deadlock)
      CT_GOTO(post_sends0(g, c + RING_SLOTS < n0 ? c + RING_SLOTS : n0, block), st, fail);
    }
    if (g->p == i) {   // an all-gather receive that could not be posted ahead: post it now
      if (g->part == 0) {
        CT_GOTO(mpi_ready(g, &g->sreq[ag_dep(g, t, c, n0)], block, &ready, "MPI_Wait(send)"), st,
                fail);
        if (!ready) return CT_OK;
      }
      CT_GOTO(post_recv(g, g->p, t), st, fail);
      g->p++;
    }
    if (t < N - 1) {
      CT_GOTO(d2h_ready(g, s, c, block, &ready), st, fail);
      if (!ready) return CT_OK;
    }
    CT_GOTO(mpi_ready(g, &g->rreq[i], block, &ready, "MPI_Wait(recv)"), st, fail);
    if (!ready) return CT_OK;
    if (t < N - 1 || g->wire != CT_WIRE_FP32) {
      double t0 = ct_now();
      void *slot = slot_ptr(g, i, region);
      int fused = -1;   // finished here: tested in the addition's pass
      if (g->wire == CT_WIRE_FP32 && t == N - 2 && g->nf_out)
        fused = add_f32_nonfinite(region, slot, n);
      else if (g->wire == CT_WIRE_FP32)
        add_f32(region, slot, n);
      else
        from_wire(g->wire, region, slot, n, t < N - 1);
      // finished here: round to what every other rank will receive
      if (g->wire != CT_WIRE_FP32 && t == N - 2) round_wire(g->wire, region, n);
      if (t == N - 2) nf_chunk(g, s, region, seg_off(g, s) + lo, n, fused);
      g->st.reduce_s += ct_now() - t0;
    }
    if (t >= N - 2) CT_GOTO(write_back(g, region, n), st, fail);   // finished
    if (t + 1 < g->t_hi) CT_GOTO(isend(g, region, n, t + 1, n0 + i), st, fail);
    g->i++;
    if (t == g->t_lo) {
      size_t want = c + 1 + RING_SLOTS;
      CT_GOTO(post_sends0(g, want < n0 ? want : n0, block), st, fail);
    }
    CT_GOTO(post_recvs(g, i + 1, n0), st, fail);
  }
  CT_GOTO(post_sends0(g, n0, block), st, fail);
  if (g->next0 < n0) return CT_OK;
  {
    double t0 = ct_now();
    int err, all = 1;
    if (block)
      err = MPI_Waitall((int)(n0 + items), g->sreq, MPI_STATUSES_IGNORE);
    else
      err = MPI_Testall((int)(n0 + items), g->sreq, &all, MPI_STATUSES_IGNORE);
    g->st.mpi_s += ct_now() - t0;
    if (err != MPI_SUCCESS) {
      st = ct_mpi_error(err, block ? "MPI_Waitall(sends)" : "MPI_Testall(sends)", __FILE__,
                        __LINE__);
      goto fail;
    }
    if (!all) return CT_OK;
  }
  *done = 1;
  return CT_OK;
fail:
  ring_abandon(g, n0 + items, items);
  return st;
}

static ct_status ring_run(ring *g) {
  int done;
  g->started = 0;
  return ring_advance(g, 1, &done);
}

size_t ct_allreduce_ring_bytes(size_t count, int rank, int size) {
  if (size < 2) return 0;
  ring g = {.rank = rank, .size = size, .count = count, .chunk = 1};
  // Sends every segment twice except (r+1) in the reduce-scatter and (r+2) in the all-gather.
  return (2 * count - seg_len(&g, mod(rank + 1, size)) - seg_len(&g, mod(rank + 2, size))) *
         sizeof(float);
}

static size_t chunk_floats(size_t chunk_bytes) {
  size_t n = chunk_bytes / sizeof(float);
  if (n > (size_t)1 << 28) n = (size_t)1 << 28;   // an int count per message
  return n ? n : 1;
}

// ---- the algorithm by size and transport ----------------------------------------------------

// "65536", "64K", "1M" (binary multiples); 0 on a malformed value
static int parse_size(const char *s, size_t *out) {
  char *end = NULL;
  if (!s || !*s || *s == '-') return 0;
  unsigned long long v = strtoull(s, &end, 10), mul = 1;
  if (end == s) return 0;
  if (*end == 'K' || *end == 'k') mul = 1ULL << 10, end++;
  else if (*end == 'M' || *end == 'm') mul = 1ULL << 20, end++;
  if (*end || v > (1ULL << 40) / mul) return 0;
  *out = (size_t)(v * mul);
  return 1;
}

ct_status ct_allreduce_algo_default(const ct_comm *comm, ct_allreduce_algo *a) {
  a->network = comm->nodes > 1;
  a->small_bytes = a->network ? CT_ALLREDUCE_SMALL_NET : CT_ALLREDUCE_SMALL_SHM;
  a->chunk_bytes = a->network ? CT_ALLREDUCE_CHUNK_NET : CT_ALLREDUCE_CHUNK_SHM;
  const char *e = getenv("CLTRAIN_ALLREDUCE_SMALL");
  if (e && *e && !parse_size(e, &a->small_bytes))
    return CT_FAIL(CT_ERR_USAGE, "CLTRAIN_ALLREDUCE_SMALL: expected a size in bytes (K, M "
                   "suffixes allowed; 0: always the ring), got '%s'", e);
  e = getenv("CLTRAIN_ALLREDUCE_CHUNK");
  if (e && *e && (!parse_size(e, &a->chunk_bytes) || a->chunk_bytes < sizeof(float)))
    return CT_FAIL(CT_ERR_USAGE, "CLTRAIN_ALLREDUCE_CHUNK: expected a size of at least 4 bytes "
                   "(K, M suffixes allowed), got '%s'", e);
  return CT_OK;
}

int ct_allreduce_algo_small(const ct_allreduce_algo *a, size_t count, int size) {
  if (!a || size < 2 || count == 0 || count > INT_MAX) return 0;
  return count <= a->small_bytes / sizeof(float) / (size_t)(size - 1);
}

const char *ct_allreduce_algo_name(const ct_allreduce_algo *a, size_t count, int size) {
  return size < 2 || count == 0 ? "none" : ct_allreduce_algo_small(a, count, size) ? "gather"
                                                                                    : "ring";
}

size_t ct_allreduce_sent_bytes(const ct_allreduce_algo *a, size_t count, int rank, int size,
                               ct_wire w) {
  if (ct_allreduce_algo_small(a, count, size)) return (size_t)(size - 1) * count * sizeof(float);
  size_t b = ct_allreduce_ring_bytes(count, rank, size);
  return w == CT_WIRE_FP32 ? b : b / sizeof(float) * ct_wire_bytes(w);
}

static void stats_add(ct_allreduce_stats *out, const ct_allreduce_stats *in, double t0) {
  if (!out) return;
  out->d2h_s += in->d2h_s;
  out->h2d_s += in->h2d_s;
  out->mpi_s += in->mpi_s;
  out->reduce_s += in->reduce_s;
  out->bytes_sent += in->bytes_sent;
  out->total_s += ct_now() - t0;
  out->calls++;
}

static ct_status check_tags(ct_comm *comm) {
  void *attr = NULL;
  int flag = 0;
  MPI_CHECK(MPI_Comm_get_attr(comm->comm, MPI_TAG_UB, &attr, &flag));
  if (flag && attr && *(int *)attr < CT_ALLREDUCE_INFLIGHT * (2 * comm->size - 2))
    return CT_FAIL(CT_ERR_INTERNAL, "MPI_TAG_UB %d is too small for a ring of %d ranks",
                   *(int *)attr, comm->size);
  return CT_OK;
}

// ---- host arrays ----------------------------------------------------------------------------

// The receive slots and send images of host rings, kept between calls: a fresh allocation of
// this size is mapped anew by malloc each time, and its first touch costs a page fault per page
// in every call. Page-aligned; grows only; one pair per thread.
typedef struct {
  unsigned char *p;
  size_t n;
} scratch_buf;
static _Thread_local scratch_buf scratch_slots, scratch_sends, scratch_gath;
static unsigned char *scratch(scratch_buf *b, size_t bytes) {
  if (bytes > b->n) {
    void *p = NULL;
    if (posix_memalign(&p, 4096, bytes) != 0) return NULL;
    free(b->p);
    b->p = p;
    b->n = bytes;
  }
  return b->p;
}

// Chunk floats for a ring over the window: at most the largest segment of it.
static size_t clamp_chunk(ring *g) {
  size_t seg_max = 0;
  for (int s = 0; s < g->size; s++)
    if (seg_len(g, s) > seg_max) seg_max = seg_len(g, s);
  return g->chunk > seg_max && seg_max > 0 ? seg_max : g->chunk;
}

ct_status ct_allreduce_host(ct_comm *comm, float *buf, size_t count, size_t chunk_bytes,
                            ct_allreduce_stats *stats) {
  return ct_allreduce_host_wire(comm, buf, count, chunk_bytes, CT_WIRE_FP32, stats);
}

ct_status ct_allreduce_host_wire(ct_comm *comm, float *buf, size_t count, size_t chunk_bytes,
                                 ct_wire wire, ct_allreduce_stats *stats) {
  double t0 = ct_now();
  ct_allreduce_stats local = {0};
  CT_TRY(ct_comm_check_same_u64(comm, (uint64_t)count * 4 + (uint64_t)wire,
                                "all-reduce count and wire format"));
  if (comm->size < 2 || count == 0) {   // nothing goes on a wire
    stats_add(stats, &local, t0);
    return CT_OK;
  }
  CT_TRY(check_tags(comm));
  ct_allreduce_algo algo;
  CT_TRY(ct_allreduce_algo_default(comm, &algo));
  ring g = {.comm = comm->comm, .rank = comm->rank, .size = comm->size, .data = buf,
            .count = count, .chunk = chunk_floats(chunk_bytes ? chunk_bytes : algo.chunk_bytes),
            .wire = wire};
  if (ct_allreduce_algo_small(&algo, count, comm->size)) {
    g.small = 1;
    g.gath = (float *)scratch(&scratch_gath, (size_t)comm->size * count * sizeof(float));
    MPI_Request reqs[2 * 64];
    int heap = comm->size - 1 > 64;   // (N-1 receives, N-1 sends)
    g.rreq = heap ? malloc(2 * (size_t)(comm->size - 1) * sizeof *g.rreq) : reqs;
    if (!g.gath || !g.rreq) {
      if (heap) free(g.rreq);
      return CT_FAIL(CT_ERR_NOMEM, "out of host memory (gather of %zu floats)", count);
    }
    g.sreq = g.rreq + (comm->size - 1);
    ct_status st = ring_run(&g);
    if (heap && st != CT_ERR_MPI) free(g.rreq);   // (after an MPI failure requests may point here)
    if (st == CT_OK) stats_add(stats, &g.st, t0);
    return st;
  }
  g.chunk = clamp_chunk(&g);
  size_t steps = 2 * (size_t)comm->size - 2;
  g.rstart = malloc((steps + 1) * sizeof *g.rstart);
  if (!g.rstart) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  size_t items = ring_layout(&g), n0 = seg_chunks(&g, g.rank);
  g.rreq = malloc(items * sizeof *g.rreq);
  g.sreq = malloc((n0 + items) * sizeof *g.sreq);
  g.slot_stride = pad_stride(g.chunk * esz(&g));
  g.slots = scratch(&scratch_slots, RING_SLOTS * g.slot_stride);
  int sends_ok = 1;
  if (wire != CT_WIRE_FP32) {
    g.sbuf_stride = pad_stride(g.chunk * 2);
    g.sbuf = scratch(&scratch_sends, (n0 + items) * g.sbuf_stride);
    sends_ok = g.sbuf != NULL;
  }
  ct_status st = CT_OK;
  if (!g.rreq || !g.sreq || !g.slots || !sends_ok) {
    st = CT_FAIL(CT_ERR_NOMEM, "out of host memory (ring of %zu floats)", count);
  } else {
    st = ring_run(&g);
  }
  if (st == CT_OK || st == CT_ERR_NOMEM) {   // after an MPI failure requests may still point here
    free(g.sreq);
    free(g.rreq);
  }
  free(g.rstart);
  if (st == CT_OK) stats_add(stats, &g.st, t0);
  return st;
}

// ---- device buffers -------------------------------------------------------------------------
//
// A request reduces one window on one set of ring resources (receive slots, send images,
// request arrays, read events), one of CT_ALLREDUCE_INFLIGHT, with tags of its own, so that
// windows can be in flight together. The blocking calls are a request started and waited for.

typedef struct {
  unsigned char *slots;     // (RING_SLOTS) receive slots, page-aligned, slot_stride apart
  size_t slot_stride;
  unsigned char *sbuf;      // wire formats: send images (allocated on first use)
  size_t sbuf_stride;
  MPI_Request *rreq, *sreq; // (items_max), (maxch + items_max)
  size_t *rstart;           // (2N - 1)
  cl_event *d2h;            // (N, maxch)
  float *gath;              // (N, small_max) small windows of every rank (ct_allreduce_algo)
} ring_res;

struct ct_allreduce_req {
  ct_allreduce *ar;
  int slot, busy;
  int phase;                // 0: waiting for the map; 1: ring running; 2: done
  int staged, external;     // copies through staging; the caller's own host pointer
  ring g;
  cl_mem buf;
  size_t dev_off;
  float *mapped;            // zero-copy: the mapped window
  cl_event map_ev, finished;
  const float *patch;       // written into the window before the ring (zero-copy: at the map)
  size_t patch_at, patch_n;
  double t0;
};

struct ct_allreduce {
  ct_comm *comm;
  ct_device *dev;
  cl_command_queue queue;   // in-order queue of our own for maps, unmaps and staging copies
  cl_mem pinned;            // CL_MEM_ALLOC_HOST_PTR buffer mapped as `staging` (NULL: malloc)
  float *staging;           // (max_count) host image of the layout (windows at their offsets)
  size_t max_count, chunk;  // chunk: floats per message (and per copy)
  size_t maxch, items_max;  // chunks of the largest segment of max_count (+1); receive items
  int zero_copy;            // the device shares host memory: map the range, no staging copies
  int host_only;            // no device: ct_allreduce_mapped on host arrays
  ct_allreduce_algo algo;   // gather up to algo.small_bytes (the chunk is fixed: `chunk`)
  ring_res res[CT_ALLREDUCE_INFLIGHT];
  ct_allreduce_req req[CT_ALLREDUCE_INFLIGHT];
  unsigned long seq;        // requests started: request k uses slot k mod CT_ALLREDUCE_INFLIGHT
};

int ct_allreduce_pinned(const ct_allreduce *ar) { return ar && ar->pinned != NULL; }
int ct_allreduce_zero_copy(const ct_allreduce *ar) { return ar && ar->zero_copy; }

ct_status ct_allreduce_init(ct_comm *comm, ct_device *dev, size_t max_count, size_t chunk_bytes,
                            ct_allreduce **out) {
  *out = NULL;
  ct_allreduce *ar = calloc(1, sizeof *ar);
  if (!ar) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  ar->comm = comm;
  ar->dev = dev;
  ar->max_count = max_count;
  ct_status st = ct_allreduce_algo_default(comm, &ar->algo);
  if (st != CT_OK) {
    free(ar);
    return st;
  }
  const char *staged = getenv("CLTRAIN_ALLREDUCE_STAGED");
  ar->host_only = dev == NULL;
  ar->zero_copy = dev && dev->info.host_unified && !(staged && *staged && strcmp(staged, "0"));
  ar->chunk = chunk_floats(chunk_bytes ? chunk_bytes : ar->algo.chunk_bytes);
  ar->algo.chunk_bytes = ar->chunk * sizeof(float);
  int N = comm->size;
  ring g = {.size = N, .count = max_count, .chunk = ar->chunk};
  size_t seg_max = seg_len(&g, 0);
  if (ar->chunk > seg_max && seg_max > 0) ar->chunk = seg_max;
  g.chunk = ar->chunk;
  // A window of the layout has at most one more chunk per segment than the whole (its pieces
  // start anywhere in a segment).
  ar->maxch = seg_chunks(&g, 0) + 1;
  if (ar->maxch < WINDOW_CHUNKS + 1) ar->maxch = WINDOW_CHUNKS + 1;   // (window_chunk)
  size_t steps = N > 1 ? 2 * (size_t)N - 2 : 1;
  ar->items_max = steps * ar->maxch;
  for (int k = 0; k < CT_ALLREDUCE_INFLIGHT; k++) ar->req[k].ar = ar, ar->req[k].slot = k;
  if (N < 2) {   // a ring of one: nothing to stage, the all-reduce is a no-op
    *out = ar;
    return CT_OK;
  }
  cl_int err;
  if (dev)
    CL_GOTO((ar->queue = clCreateCommandQueue(dev->ctx, dev->info.id, 0, &err), err), st, fail);
  // Pinned staging where the device offers it; plain host memory otherwise. Zero-copy devices
  // and host handles stage nothing.
  size_t bytes = (max_count ? max_count : 1) * sizeof(float);
  if (dev && !ar->zero_copy && bytes <= dev->info.max_alloc) {
    ar->pinned = clCreateBuffer(dev->ctx, CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR, bytes, NULL,
                                &err);
    if (err != CL_SUCCESS) ar->pinned = NULL;
    if (ar->pinned) {
      ar->staging = clEnqueueMapBuffer(ar->queue, ar->pinned, CL_TRUE,
                                       CL_MAP_READ | CL_MAP_WRITE, 0, bytes, 0, NULL, NULL, &err);
      if (err != CL_SUCCESS || !ar->staging) {
        ar->staging = NULL;
        clReleaseMemObject(ar->pinned);
        ar->pinned = NULL;
      }
    }
  }
  if (dev && !ar->staging && !ar->zero_copy) {
    void *p = NULL;
    if (posix_memalign(&p, 4096, bytes) != 0) p = NULL;
    ar->staging = p;
  }
  int ok = ar->staging || ar->zero_copy || !dev;
  for (int k = 0; k < CT_ALLREDUCE_INFLIGHT && ok; k++) {
    ring_res *r = &ar->res[k];
    r->slot_stride = pad_stride(ar->chunk * sizeof(float));
    void *sl = NULL;
    if (posix_memalign(&sl, 4096, RING_SLOTS * r->slot_stride) != 0) sl = NULL;
    r->slots = sl;
    r->rreq = malloc(ar->items_max * sizeof *r->rreq);
    r->sreq = malloc((ar->maxch + ar->items_max) * sizeof *r->sreq);
    r->rstart = malloc((steps + 1) * sizeof *r->rstart);
    r->d2h = calloc((size_t)N * ar->maxch, sizeof *r->d2h);
    ok = r->slots && r->rreq && r->sreq && r->rstart && r->d2h;
  }
  if (!ok) {
    st = CT_FAIL(CT_ERR_NOMEM, "out of host memory (all-reduce staging for %zu floats)",
                 max_count);
    goto fail;
  }
  if ((st = ct_allreduce_set_algo(ar, &ar->algo)) != CT_OK) goto fail;
  *out = ar;
  return CT_OK;
fail:
  ct_allreduce_free(ar);
  return st;
}

static void release_ev(cl_event *e) {
  if (*e) clReleaseEvent(*e);
  *e = NULL;
}

void ct_allreduce_free(ct_allreduce *ar) {
  if (!ar) return;
  if (ar->queue) clFinish(ar->queue);
  for (int k = 0; k < CT_ALLREDUCE_INFLIGHT; k++) {
    ring_res *r = &ar->res[k];
    ct_allreduce_req *q = &ar->req[k];
    if (q->busy && q->mapped && ar->queue) {   // abandoned mid-flight: give the map back
      if (clEnqueueUnmapMemObject(ar->queue, q->buf, q->mapped, 0, NULL, NULL) == CL_SUCCESS)
        clFinish(ar->queue);
    }
    release_ev(&q->map_ev);
    release_ev(&q->finished);
    if (r->d2h)
      for (size_t i = 0; i < (size_t)ar->comm->size * ar->maxch; i++) release_ev(&r->d2h[i]);
    free(r->slots);
    free(r->sbuf);
    free(r->rreq);
    free(r->sreq);
    free(r->rstart);
    free(r->d2h);
    free(r->gath);
  }
  if (ar->pinned) {
    if (ar->staging && ar->queue) {
      cl_event ev = NULL;
      if (clEnqueueUnmapMemObject(ar->queue, ar->pinned, ar->staging, 0, NULL, &ev) ==
          CL_SUCCESS) {
        clWaitForEvents(1, &ev);
        clReleaseEvent(ev);
      }
    }
    clReleaseMemObject(ar->pinned);
  } else {
    free(ar->staging);
  }
  if (ar->queue) clReleaseCommandQueue(ar->queue);
  free(ar);
}

// The largest window that is gathered: (small_bytes / 4 / (N-1)) floats, within max_count.
static size_t small_max(const ct_allreduce *ar) {
  int N = ar->comm->size;
  if (N < 2) return 0;
  size_t n = ar->algo.small_bytes / sizeof(float) / (size_t)(N - 1);
  if (n > ar->max_count) n = ar->max_count;
  return n > INT_MAX ? INT_MAX : n;
}

ct_status ct_allreduce_set_algo(ct_allreduce *ar, const ct_allreduce_algo *a) {
  for (int k = 0; k < CT_ALLREDUCE_INFLIGHT; k++)
    if (ar->req[k].busy)
      return CT_FAIL(CT_ERR_INTERNAL, "ct_allreduce_set_algo with a request in flight");
  ar->algo.small_bytes = a->small_bytes;
  size_t n = small_max(ar), N = (size_t)ar->comm->size;
  for (int k = 0; k < CT_ALLREDUCE_INFLIGHT && N > 1; k++) {
    free(ar->res[k].gath);
    ar->res[k].gath = NULL;
    if (n && !(ar->res[k].gath = malloc(N * n * sizeof(float))))
      return CT_FAIL(CT_ERR_NOMEM, "out of host memory (all-reduce gather of %zu floats)", N * n);
  }
  return CT_OK;
}

void ct_allreduce_get_algo(const ct_allreduce *ar, ct_allreduce_algo *a) { *a = ar->algo; }

ct_status ct_allreduce_agree(ct_allreduce *ar, size_t count) {
  CT_TRY(ct_comm_check_same_u64(ar->comm, (uint64_t)count, "all-reduce count"));
  // the path of a window follows these: every rank must take the same one
  CT_TRY(ct_comm_check_same_u64(ar->comm, (uint64_t)ar->algo.small_bytes,
                                "all-reduce gather size (CLTRAIN_ALLREDUCE_SMALL)"));
  CT_TRY(ct_comm_check_same_u64(ar->comm, (uint64_t)ar->chunk,
                                "all-reduce chunk floats (CLTRAIN_ALLREDUCE_CHUNK)"));
  if (count > ar->max_count)
    return CT_FAIL(CT_ERR_INTERNAL, "all-reduce of %zu floats exceeds the staging for %zu", count,
                   ar->max_count);
  return ar->comm->size > 1 ? check_tags(ar->comm) : CT_OK;
}

// Enqueues the reads of every chunk, in the order the ring needs them: step 0 needs our own
// segment r (sent) and segment r-1 (added to) chunk by chunk, then segments r-2, r-3, ...
// The first waits for `wait` (the producers), the rest follow on the in-order queue.
static ct_status enqueue_read(ct_allreduce *ar, ring *g, int s, size_t c, cl_event *wait) {
  size_t len = seg_len(g, s), lo = c * g->chunk;
  if (lo >= len) return CT_OK;
  size_t n = len - lo < g->chunk ? len - lo : g->chunk, at = seg_off(g, s) + lo;
  CL_CHECK(clEnqueueReadBuffer(ar->queue, g->buf, CL_FALSE, (g->offset + at) * sizeof(float),
                               n * sizeof(float), g->data + at, *wait ? 1 : 0,
                               *wait ? wait : NULL, &g->d2h[(size_t)s * g->maxch + c]));
  release_ev(wait);
  return CT_OK;
}

static ct_status enqueue_reads(ct_allreduce *ar, ring *g, cl_event *wait) {
  if (g->whole) {   // small: one command each way (the per-command latency dominates)
    CL_CHECK(clEnqueueReadBuffer(ar->queue, g->buf, CL_FALSE, g->offset * sizeof(float),
                                 g->count * sizeof(float), g->data, *wait ? 1 : 0,
                                 *wait ? wait : NULL, &g->d2h[0]));
    release_ev(wait);
    CL_CHECK(clFlush(ar->queue));
    return CT_OK;
  }
  int N = g->size, r = g->rank, prev = mod(r - 1, N);
  size_t n = seg_chunks(g, r) > seg_chunks(g, prev) ? seg_chunks(g, r) : seg_chunks(g, prev);
  for (size_t c = 0; c < n; c++) {   // step 0: segments r and r-1, interleaved
    CT_TRY(enqueue_read(ar, g, r, c, wait));
    CT_TRY(enqueue_read(ar, g, prev, c, wait));
  }
  for (int j = 2; j < N; j++) {      // steps 1 .. N-2: segments r-2, r-3, ..., r+1
    int s = mod(r - j, N);
    for (size_t c = 0; c < seg_chunks(g, s); c++) CT_TRY(enqueue_read(ar, g, s, c, wait));
  }
  release_ev(wait);   // (an empty window read nothing)
  CL_CHECK(clFlush(ar->queue));
  return CT_OK;
}

static ct_status check_range(cl_mem buf, size_t offset, size_t count) {
  size_t mem_size = 0;
  CL_CHECK(clGetMemObjectInfo(buf, CL_MEM_SIZE, sizeof mem_size, &mem_size, NULL));
  if ((offset + count) * sizeof(float) > mem_size)
    return CT_FAIL(CT_ERR_INTERNAL,
                   "all-reduce range [%zu, %zu) floats is outside the buffer of %zu bytes", offset,
                   offset + count, mem_size);
  return CT_OK;
}

static ct_status check_call(ct_allreduce *ar, size_t count, const float *patch, size_t patch_at,
                            size_t patch_n, const ct_ring_opts *o) {
  size_t total = o && o->total ? o->total : count, base = o ? o->base : 0;
  if (count > ar->max_count || base + count > total || total > ar->max_count)
    return CT_FAIL(CT_ERR_INTERNAL,
                   "all-reduce of [%zu, %zu) of %zu floats exceeds the staging for %zu", base,
                   base + count, total, ar->max_count);
  if (patch && patch_at + patch_n > count)
    return CT_FAIL(CT_ERR_INTERNAL, "all-reduce patch [%zu, %zu) is outside the range of %zu",
                   patch_at, patch_at + patch_n, count);
  int part = o ? o->part : 0;
  if (part != 0 && part != CT_RING_REDUCE_SCATTER && part != CT_RING_ALL_GATHER)
    return CT_FAIL(CT_ERR_INTERNAL, "all-reduce part %d is none of 0, reduce-scatter, all-gather",
                   part);
  if (part && !ar->zero_copy && !ar->host_only && ar->comm->size > 1)
    return CT_FAIL(CT_ERR_INTERNAL, "the reduce-scatter or all-gather alone runs on host arrays "
                   "or mapped device memory only");
  if (part == CT_RING_ALL_GATHER && (o->nonfinite || patch))
    return CT_FAIL(CT_ERR_INTERNAL, "the all-gather alone takes no patch and no non-finite test");
  return CT_OK;
}

// The wire format of a window (one format per request): the layout's elements below wire_n go
// in o->wire, the rest in fp32.
static ct_status window_wire(const ct_ring_opts *o, size_t base, size_t count, ct_wire *w) {
  *w = CT_WIRE_FP32;
  if (!o || o->wire == CT_WIRE_FP32 || count == 0 || base >= o->wire_n) return CT_OK;
  if (base + count > o->wire_n)
    return CT_FAIL(CT_ERR_INTERNAL, "all-reduce window [%zu, %zu) crosses the end of the wire "
                   "format's part (%zu): start one request per part", base, base + count,
                   o->wire_n);
  *w = o->wire;
  return CT_OK;
}

// The message size of a window. A window whose segments are unbalanced (a bucket within one or
// two segments of the layout) is carried by one link direction at a time: at N = 2 its part of
// segment s goes from rank s to s+1 and comes back finished, and without chunks to pipeline
// that is twice the time of the same bytes in both directions at once (a 1.6 MB bucket of the
// mlp took 26-29 ms at 1 Gbit/s, the whole 2.7 MB 21 ms). Its largest part is cut into
// WINDOW_CHUNKS chunks (at least 64 KiB each, at most the transport's chunk), so the finished
// chunks flow back while the rest still flows forward. Balanced windows (the whole layout) keep
// the transport's chunk. The same on every rank (the window's geometry), and chunking never
// changes the bits.
static size_t window_chunk(const ring *g, size_t chunk) {
  size_t mx = 0, sum = 0;
  for (int s = 0; s < g->size; s++) {
    size_t len = seg_len(g, s);
    sum += len;
    if (len > mx) mx = len;
  }
  if (mx == 0 || 2 * mx * (size_t)g->size <= 3 * sum) return chunk;   // largest <= 1.5 x mean
  size_t c = (mx + WINDOW_CHUNKS - 1) / WINDOW_CHUNKS;
  if (c < WINDOW_CHUNK_MIN) c = WINDOW_CHUNK_MIN;
  return c < chunk ? c : chunk;
}

// Starts a request on buf (host == NULL) or on the caller's host image `host` of the window.
static ct_status req_start(ct_allreduce *ar, cl_mem buf, float *host, size_t offset,
                           size_t count, cl_event after, const float *patch, size_t patch_at,
                           size_t patch_n, const ct_ring_opts *o, ct_allreduce_req **out) {
  *out = NULL;
  double t0 = ct_now();
  if (buf) CT_TRY(check_range(buf, offset, count));
  CT_TRY(check_call(ar, count, patch, patch_at, patch_n, o));
  size_t base = o ? o->base : 0, total = o && o->total ? o->total : base + count;
  ct_wire wire;
  CT_TRY(window_wire(o, base, count, &wire));
  if (o && o->part == CT_RING_ALL_GATHER && wire != CT_WIRE_FP32)
    return CT_FAIL(CT_ERR_INTERNAL, "the all-gather alone moves fp32 values (the window is in %s)",
                   ct_wire_name(wire));
  // The slot (and so the tags) follows the order of the starts, which every rank shares: the
  // first free slot would depend on which requests a rank happened to finish first.
  ct_allreduce_req *q = &ar->req[ar->seq % CT_ALLREDUCE_INFLIGHT];
  if (q->busy)
    return CT_FAIL(CT_ERR_INTERNAL, "more than %d all-reduce requests in flight (wait for the "
                   "oldest first)", CT_ALLREDUCE_INFLIGHT);
  ar->seq++;
  ring_res *r = &ar->res[q->slot];
  ct_comm *comm = ar->comm;
  q->busy = 1, q->phase = 1, q->t0 = t0, q->buf = buf, q->dev_off = offset;
  q->external = host != NULL, q->staged = 0, q->mapped = NULL;
  q->patch = patch, q->patch_at = patch_at, q->patch_n = patch ? patch_n : 0;
  q->g = (ring){.comm = comm->comm, .rank = comm->rank, .size = comm->size, .count = count,
                .chunk = ar->chunk, .base = base, .total = total, .wire = wire,
                .idle = o ? o->idle : 0, .part = o ? o->part : 0,
                .nf_out = o ? o->nonfinite : NULL, .nf_end = o ? o->nonfinite_n : 0,
                .slots = r->slots, .slot_stride = r->slot_stride, .rreq = r->rreq,
                .sreq = r->sreq, .rstart = r->rstart, .buf = buf, .offset = offset,
                .d2h = r->d2h, .maxch = ar->maxch,
                .tag0 = q->slot * (comm->size > 1 ? 2 * comm->size - 2 : 1)};
  ring *g = &q->g;
  if (g->total == g->count && g->base == 0) g->total = 0;
  if (ct_allreduce_algo_small(&ar->algo, count, comm->size) && count <= small_max(ar) && r->gath)
    g->small = 1, g->gath = r->gath;
  else if (comm->size > 1)
    g->chunk = window_chunk(g, ar->chunk);
  if (comm->size < 2 || count == 0) {   // nothing to reduce: only the patch
    ct_status st = CT_OK;
    if (g->nf_out && count && !host) {
      q->busy = 0;
      return CT_FAIL(CT_ERR_INTERNAL, "the all-reduce's non-finite test on one rank needs a host "
                     "array");
    }
    if (patch && q->patch_n) {
      if (host) {
        memcpy(host + patch_at, patch, q->patch_n * sizeof(float));
      } else if (buf) {
        cl_int err = clEnqueueWriteBuffer(ar->dev->queue, buf, CL_TRUE, (offset + patch_at) * sizeof(float),
                                          q->patch_n * sizeof(float), patch, after ? 1 : 0,
                                          after ? &after : NULL, NULL);
        if (err != CL_SUCCESS)
          st = CT_FAIL(CT_ERR_CL, "writing the all-reduce patch failed: %s", ct_cl_errname(err));
      }
    }
    if (host && count) {   // one rank: its own array is the sum
      g->data = host;
      nf_tally(g);
    }
    q->phase = 2;
    if (st != CT_OK) q->busy = 0;
    else *out = q;
    return st;
  }
  size_t items = ring_layout(g), n0 = seg_chunks(g, g->rank);
  if (items > ar->items_max || n0 > ar->maxch) {
    q->busy = 0;
    return CT_FAIL(CT_ERR_INTERNAL, "all-reduce window of %zu floats needs %zu ring items (%zu)",
                   count, items, ar->items_max);
  }
  if (wire != CT_WIRE_FP32 && !r->sbuf) {
    size_t stride = pad_stride(ar->chunk * 2);
    void *p = NULL;
    if (posix_memalign(&p, 4096, (ar->maxch + ar->items_max) * stride) != 0) {
      q->busy = 0;
      return CT_FAIL(CT_ERR_NOMEM, "out of host memory (wire send images)");
    }
    r->sbuf = p;
    r->sbuf_stride = stride;
  }
  g->sbuf = r->sbuf, g->sbuf_stride = r->sbuf_stride;
  ct_status st = CT_OK;
  cl_int err;
  if (host) {   // the caller's image (mapped by the caller)
    g->data = host;
    if (q->patch_n) memcpy(host + patch_at, patch, q->patch_n * sizeof(float));
    *out = q;
    return CT_OK;
  }
  // The producers: `after`, or everything on the device's queue so far.
  cl_event wait = NULL;
  if (after) {
    CL_GOTO(clRetainEvent(after), st, fail);
    wait = after;
  } else {
    CL_GOTO(clEnqueueMarkerWithWaitList(ar->dev->queue, 0, NULL, &wait), st, fail);
    CL_GOTO(clFlush(ar->dev->queue), st, fail);
  }
  if (ar->zero_copy) {
    // The device's memory is the host's: map the window (once the producers are done) and run
    // the ring on it in place. No copies.
    q->mapped = clEnqueueMapBuffer(ar->queue, buf, CL_FALSE, CL_MAP_READ | CL_MAP_WRITE,
                                   offset * sizeof(float), count * sizeof(float), 1, &wait,
                                   &q->map_ev, &err);
    release_ev(&wait);
    if (err != CL_SUCCESS) {
      q->mapped = NULL;
      st = CT_FAIL(CT_ERR_CL, "clEnqueueMapBuffer(all-reduce window, %zu floats) failed: %s",
                   count, ct_cl_errname(err));
      goto fail;
    }
    CL_GOTO(clFlush(ar->queue), st, fail);
    g->data = q->mapped;
    q->phase = 0;
    *out = q;
    return CT_OK;
  }
  // Staged: the window's image at its place in the staging array.
  q->staged = 1;
  g->queue = ar->queue;
  g->data = ar->staging + base;
  if (q->patch_n) {   // on our copy queue, before the reads that follow it
    cl_event w2 = NULL;
    err = clEnqueueWriteBuffer(ar->queue, buf, CL_FALSE, (offset + patch_at) * sizeof(float),
                               q->patch_n * sizeof(float), patch, 1, &wait, &w2);
    release_ev(&wait);
    wait = w2;
    if (err != CL_SUCCESS) {
      st = CT_FAIL(CT_ERR_CL, "writing the all-reduce patch failed: %s", ct_cl_errname(err));
      goto fail;
    }
  }
  g->whole = count <= ar->chunk || g->small;   // (a gathered window: one read)
  st = enqueue_reads(ar, g, &wait);
  release_ev(&wait);
  if (st != CT_OK) goto fail;
  *out = q;
  return CT_OK;
fail:
  release_ev(&wait);
  if (ar->queue) clFinish(ar->queue);
  if (q->mapped) {
    if (clEnqueueUnmapMemObject(ar->queue, buf, q->mapped, 0, NULL, NULL) == CL_SUCCESS)
      clFinish(ar->queue);
    q->mapped = NULL;
  }
  release_ev(&q->map_ev);
  for (size_t i = 0; i < (size_t)comm->size * ar->maxch; i++) release_ev(&r->d2h[i]);
  q->busy = 0;
  return st;
}

// The ring is done: the results go back (unmap, or the last writes), with `finished` after them.
static ct_status req_finish(ct_allreduce_req *q) {
  ct_allreduce *ar = q->ar;
  ring *g = &q->g;
  nf_tally(g);   // (before the unmap: the mapped window is the data)
  double t0 = ct_now();
  if (q->mapped) {
    CL_CHECK(clEnqueueUnmapMemObject(ar->queue, q->buf, q->mapped, 0, NULL, &q->finished));
    q->mapped = NULL;
    CL_CHECK(clFlush(ar->queue));
  } else if (q->staged) {
    if (g->whole) {
      g->whole = 0;
      CT_TRY(write_back(g, g->data, g->count));
    }
    CL_CHECK(clEnqueueMarkerWithWaitList(ar->queue, 0, NULL, &q->finished));
    CL_CHECK(clFlush(ar->queue));
  }
  g->st.h2d_s += ct_now() - t0;
  q->phase = 2;
  return CT_OK;
}

// Moves the request on: the map, then the ring, without waiting (block: to the end).
static ct_status req_advance(ct_allreduce_req *q, int block) {
  ring *g = &q->g;
  if (q->phase == 0) {
    cl_int stat = CL_QUEUED, err;
    if (block) {
      double t0 = ct_now();
      err = clWaitForEvents(1, &q->map_ev);
      g->st.d2h_s += ct_now() - t0;
      stat = CL_COMPLETE;
    } else {
      err = clGetEventInfo(q->map_ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof stat, &stat, NULL);
      if (err == CL_SUCCESS && stat < 0) err = stat;
    }
    if (err != CL_SUCCESS)
      return CT_FAIL(CT_ERR_CL, "mapping the all-reduce window failed: %s", ct_cl_errname(err));
    if (stat != CL_COMPLETE) return CT_OK;
    release_ev(&q->map_ev);
    if (q->patch_n) memcpy(g->data + q->patch_at, q->patch, q->patch_n * sizeof(float));
    q->phase = 1;
  }
  if (q->phase == 1) {
    int done = 0;
    CT_TRY(ring_advance(g, block, &done));
    if (done) CT_TRY(req_finish(q));
  }
  return CT_OK;
}

ct_status ct_allreduce_start(ct_allreduce *ar, cl_mem buf, size_t offset, size_t count,
                             cl_event after, const ct_ring_opts *o, ct_allreduce_req **req) {
  CT_TRY(req_start(ar, buf, NULL, offset, count, after, NULL, 0, 0, o, req));
  return ct_allreduce_test(*req, NULL);
}

ct_status ct_allreduce_test(ct_allreduce_req *q, int *done) {
  ct_status st = q->phase < 2 ? req_advance(q, 0) : CT_OK;
  if (done) *done = st == CT_OK && q->phase == 2;
  return st;
}

ct_status ct_allreduce_wait(ct_allreduce_req *q, ct_allreduce_stats *stats, cl_event *finished) {
  ct_allreduce *ar = q->ar;
  ct_status st = q->phase < 2 ? req_advance(q, 1) : CT_OK;
  if (st == CT_OK && q->finished) {
    if (finished) {
      *finished = q->finished;   // the caller's now
      q->finished = NULL;
    } else {
      double t0 = ct_now();
      cl_int err = clWaitForEvents(1, &q->finished);
      q->g.st.h2d_s += ct_now() - t0;
      if (err != CL_SUCCESS)
        st = CT_FAIL(CT_ERR_CL, "all-reduce write-back failed: %s", ct_cl_errname(err));
    }
  } else if (finished) {
    *finished = NULL;
  }
  if (st != CT_OK && ar->queue) {   // failed: reads, writes and maps settle before the slot is
    clFinish(ar->queue);            // free again
    if (q->mapped && clEnqueueUnmapMemObject(ar->queue, q->buf, q->mapped, 0, NULL, NULL) ==
                         CL_SUCCESS)
      clFinish(ar->queue);
    q->mapped = NULL;
  }
  release_ev(&q->map_ev);
  release_ev(&q->finished);
  ring_res *r = &ar->res[q->slot];
  if (r->d2h)
    for (size_t i = 0; i < (size_t)ar->comm->size * ar->maxch; i++) release_ev(&r->d2h[i]);
  if (st == CT_OK) stats_add(stats, &q->g.st, q->t0);
  q->busy = 0;
  return st;
}

// A blocking call: one request per part of the range (the wire format's part, the rest).
static ct_status run_blocking(ct_allreduce *ar, cl_mem buf, float *host, size_t offset,
                              size_t count, cl_event after, const float *patch, size_t patch_at,
                              size_t patch_n, const ct_ring_opts *o, ct_allreduce_stats *stats) {
  ct_ring_opts none = {0};
  if (!o) o = &none;
  size_t base = o->base, end = base + count;
  size_t cut = o->wire == CT_WIRE_FP32 || o->wire_n <= base ? base
               : o->wire_n >= end                           ? end
                                                            : o->wire_n;
  if (!patch) patch_n = 0;
  if (patch_n && patch_at < cut - base && patch_at + patch_n > cut - base)
    return CT_FAIL(CT_ERR_INTERNAL, "all-reduce patch crosses the end of the wire format's part");
  size_t lens[2] = {cut - base, end - cut}, at = 0;
  ct_allreduce_stats sum = {0};
  double t0 = ct_now();
  for (int k = 0; k < 2; k++) {
    if (lens[k] == 0 && !(k == 1 && lens[0] == 0)) continue;   // (an empty range: one request)
    ct_ring_opts ok = *o;
    ok.base = base + at;
    if (ok.total == 0) ok.total = end;
    int mine = patch_n && patch_at >= at && patch_at + patch_n <= at + lens[k];
    ct_allreduce_req *q;
    CT_TRY(req_start(ar, host ? NULL : buf, host ? host + at : NULL, offset + at, lens[k],
                     after, mine ? patch : NULL, mine ? patch_at - at : 0, patch_n, &ok, &q));
    if (q) CT_TRY(ct_allreduce_wait(q, &sum, NULL));
    at += lens[k];
  }
  sum.calls = 0, sum.total_s = 0;
  stats_add(stats, &sum, t0);
  return CT_OK;
}

ct_status ct_allreduce_mapped(ct_allreduce *ar, float *p, size_t count, const float *patch,
                              size_t patch_at, size_t patch_n, const ct_ring_opts *o,
                              ct_allreduce_stats *stats) {
  if (!ar->zero_copy && !ar->host_only && ar->comm->size > 1)
    return CT_FAIL(CT_ERR_INTERNAL, "ct_allreduce_mapped on a device without shared host memory");
  return run_blocking(ar, NULL, p, 0, count, NULL, patch, patch_at, patch_n, o, stats);
}

ct_status ct_allreduce_device(ct_allreduce *ar, cl_mem buf, size_t offset, size_t count,
                              ct_allreduce_stats *stats) {
  // a local argument error still takes part in the count check, with a count no rank can
  // have, so that the other ranks fail with CT_ERR_MISMATCH instead of waiting for us
  ct_status bad = check_range(buf, offset, count);
  if (bad == CT_OK) bad = check_call(ar, count, NULL, 0, 0, NULL);
  ct_status st = ct_comm_check_same_u64(ar->comm, bad ? UINT64_MAX : (uint64_t)count,
                                        "all-reduce count (18446744073709551615: bad arguments)");
  if (bad != CT_OK) return bad;
  CT_TRY(st);
  if (ar->comm->size > 1) CT_TRY(check_tags(ar->comm));
  return run_blocking(ar, buf, NULL, offset, count, NULL, NULL, 0, 0, NULL, stats);
}

ct_status ct_allreduce_device_after(ct_allreduce *ar, cl_mem buf, size_t offset, size_t count,
                                    cl_event after, const float *patch, size_t patch_at,
                                    size_t patch_n, const ct_ring_opts *o,
                                    ct_allreduce_stats *stats) {
  return run_blocking(ar, buf, NULL, offset, count, after, patch, patch_at, patch_n, o, stats);
}
