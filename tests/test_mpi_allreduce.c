// test_mpi_allreduce.c: the MPI world (comm.h) and the ring all-reduce (allreduce.h), run under
// mpiexec with 1 to 5 ranks (tests/mpi.cmake).
//
// Collectives are checked exactly (nccl-tests "verifiable"): inputs are small integers, so
// every sum is exact in float and a result is either right or wrong; the wrong elements are
// counted. Every rank runs the same tests in the same order (CK_NOFORK) and does all of a
// test's MPI calls before the verdict, which all ranks agree on (agree()), so a failure on one
// rank fails the test everywhere instead of leaving the others waiting. The exit code is 1 if
// any rank failed, 77 (skipped) when no OpenCL device was found (after the host tests passed).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/allreduce.h"
#include "cltrain/comm.h"
#include "testutil.h"

static ct_comm g_comm;
static ct_device g_dev;
static int g_have_dev;
static ct_allreduce *g_ar;          // staging for DEV_MAX floats
#define DEV_MAX (((size_t)1 << 20) + 64)

// ---- helpers ------------------------------------------------------------------------------

// Rank r's input at element i: a small integer in [-15, 15] that varies with i and r.
static float input(int rank, size_t i) {
  uint64_t s = (uint64_t)i * 0x9e3779b97f4a7c15ULL + (uint64_t)rank * 0xbf58476d1ce4e5b9ULL;
  s ^= s >> 29;
  s *= 0x94d049bb133111ebULL;
  s ^= s >> 32;
  return (float)((int)(s % 31) - 15);
}

static float expected(int size, size_t i) {
  float sum = 0;   // exact: at most 5 * 15 in magnitude
  for (int r = 0; r < size; r++) sum += input(r, i);
  return sum;
}

static void fill_input(float *x, size_t n) {
  for (size_t i = 0; i < n; i++) x[i] = input(g_comm.rank, i);
}

static size_t count_wrong(const float *x, size_t n) {
  size_t wrong = 0;
  for (size_t i = 0; i < n; i++) wrong += x[i] != expected(g_comm.size, i);
  return wrong;
}

static uint64_t fnv1a(const void *p, size_t bytes) {
  const unsigned char *b = p;
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < bytes; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
  return h;
}

// All ranks learn whether every rank's `ok` holds; collective.
static int agree(int ok) {
  int bad = !ok;
  if (ct_comm_allreduce_int_max(&g_comm, &bad, 1) != CT_OK) return 0;
  return !bad;
}

// The counts every all-reduce test runs: empty, fewer than N, around N, odd, big.
static size_t test_counts(size_t *c) {
  size_t n = (size_t)g_comm.size, k = 0;
  c[k++] = 0;
  c[k++] = 1;
  if (n > 1) c[k++] = n - 1;
  c[k++] = n;
  c[k++] = n + 1;
  c[k++] = 7;
  c[k++] = 1000;
  c[k++] = 1000003;
  c[k++] = (size_t)1 << 20;
  return k;
}

// ---- comm.h -------------------------------------------------------------------------------

START_TEST(comm_world_and_small_collectives) {
  int n = g_comm.size, r = g_comm.rank, ok = 1;
  ok &= r >= 0 && r < n && g_comm.local_rank >= 0 && g_comm.local_rank < g_comm.local_size &&
        g_comm.local_size <= n;
  // nodes: numbered 0 .. nodes-1, one first rank (local rank 0) per node; over stand-in nodes
  // the test is told how many (CLTRAIN_TEST_NODES), on one machine there is one
  int firsts = g_comm.local_rank == 0;
  ok &= g_comm.node >= 0 && g_comm.node < g_comm.nodes && g_comm.nodes <= n;
  ok &= MPI_Allreduce(MPI_IN_PLACE, &firsts, 1, MPI_INT, MPI_SUM, g_comm.comm) == MPI_SUCCESS;
  ok &= firsts == g_comm.nodes;
  const char *want_nodes = getenv("CLTRAIN_TEST_NODES");
  ok &= g_comm.nodes == (want_nodes && *want_nodes ? atoi(want_nodes) : 1);
  double b[3] = {0, 0, 0};
  if (r == n - 1) b[0] = 1.5, b[1] = -2, b[2] = 1e300;
  ok &= ct_comm_bcast(&g_comm, b, sizeof b, n - 1) == CT_OK;
  ok &= b[0] == 1.5 && b[1] == -2 && b[2] == 1e300;
  double s[2] = {r + 1.0, 0.5};
  ok &= ct_comm_allreduce_double_sum(&g_comm, s, 2) == CT_OK;
  ok &= s[0] == n * (n + 1) / 2.0 && s[1] == 0.5 * n;
  double m[2] = {(double)r, -(double)r};
  ok &= ct_comm_allreduce_double_max(&g_comm, m, 2) == CT_OK;
  ok &= m[0] == n - 1 && m[1] == 0;
  int im[2] = {3 * r, -r};
  ok &= ct_comm_allreduce_int_max(&g_comm, im, 2) == CT_OK;
  ok &= im[0] == 3 * (n - 1) && im[1] == 0;
  double mine[2] = {(double)r, 10.0 * r}, *all = malloc(2 * (size_t)n * sizeof *all);
  ck_assert_ptr_nonnull(all);
  ok &= ct_comm_gather_double(&g_comm, mine, 2, all) == CT_OK;
  for (int k = 0; k < n; k++) ok &= all[2 * k] == k && all[2 * k + 1] == 10.0 * k;
  free(all);
  ok &= ct_comm_barrier(&g_comm) == CT_OK;
  ck_assert_msg(agree(ok), "rank %d: small collectives gave wrong results", r);
}
END_TEST

START_TEST(comm_check_same_detects_a_difference) {
  int n = g_comm.size, r = g_comm.rank;
  ct_status same = ct_comm_check_same_u64(&g_comm, 0x123456789abcdefULL, "seed");
  int ok = same == CT_OK;
  ct_status diff = CT_OK;
  if (n > 1) {
    ct_error_clear();
    diff = ct_comm_check_same_u64(&g_comm, r == n - 1 ? 8 : 7, "layer count");
    ok &= diff == CT_ERR_MISMATCH && strstr(ct_error_text(), "layer count") &&
          strstr(ct_error_text(), "rank 0 has 7") && strstr(ct_error_text(), "has 8");
    if (!ok) fprintf(stderr, "rank %d: %s\n", r, ct_error_message());
    ct_error_clear();
  }
  ck_assert_msg(agree(ok), "rank %d: same -> %s, different -> %s", r, ct_strerror(same),
                ct_strerror(diff));
}
END_TEST

// ---- ring on host arrays ------------------------------------------------------------------

START_TEST(host_ring_is_exact_for_every_count) {
  size_t counts[16], nc = test_counts(counts);
  int ok = 1;
  for (size_t k = 0; k < nc; k++) {
    size_t n = counts[k];
    float *x = malloc((n ? n : 1) * sizeof *x);
    ck_assert_ptr_nonnull(x);
    fill_input(x, n);
    ct_allreduce_stats stats = {0};
    ct_status st = ct_allreduce_host(&g_comm, x, n, 0, &stats);
    size_t wrong = st == CT_OK ? count_wrong(x, n) : n + 1;
    // Same bits on every rank (collective whatever happened above).
    ct_status bits = ct_comm_check_same_u64(&g_comm, fnv1a(x, n * sizeof *x), "result bits");
    ct_allreduce_algo algo;
    ck_assert_int_eq(ct_allreduce_algo_default(&g_comm, &algo), CT_OK);
    size_t want = ct_allreduce_sent_bytes(&algo, n, g_comm.rank, g_comm.size, CT_WIRE_FP32);
    int good = st == CT_OK && wrong == 0 && bits == CT_OK && stats.calls == 1 &&
               stats.bytes_sent == want;
    if (!good)
      fprintf(stderr, "rank %d count %zu: %s, %zu wrong, bits %s, sent %zu (want %zu): %s\n",
              g_comm.rank, n, ct_strerror(st), wrong, ct_strerror(bits), stats.bytes_sent, want,
              ct_error_message());
    ct_error_clear();
    ok &= good;
    free(x);
  }
  ck_assert_msg(agree(ok), "host ring: wrong elements or differing bits (see stderr)");
}
END_TEST

START_TEST(host_ring_bits_do_not_depend_on_chunking) {
  // Tiny chunks (many messages per segment, uneven last chunks) give the same bits as the
  // default, and a second run repeats them.
  const size_t n = 10007;
  const size_t chunks[] = {0, 4, 12, 64, 1000, 0};
  float *x = malloc(n * sizeof *x);
  ck_assert_ptr_nonnull(x);
  uint64_t first = 0;
  int ok = 1;
  for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
    fill_input(x, n);
    ct_status st = ct_allreduce_host(&g_comm, x, n, chunks[k], NULL);
    size_t wrong = st == CT_OK ? count_wrong(x, n) : n;
    uint64_t h = fnv1a(x, n * sizeof *x);
    if (k == 0) first = h;
    if (st != CT_OK || wrong || h != first) {
      fprintf(stderr, "rank %d chunk %zu B: %s, %zu wrong, hash %s: %s\n", g_comm.rank,
              chunks[k], ct_strerror(st), wrong, h == first ? "same" : "differs",
              ct_error_message());
      ok = 0;
    }
    ct_error_clear();
  }
  // A sum that is not exact (random floats): the fixed order still gives the same bits on
  // every rank and on a second run.
  uint64_t hs[2];
  for (int rep = 0; rep < 2; rep++) {
    ct_test_rand_fill(x, n, 1000 + (uint64_t)g_comm.rank, -1, 1);
    ok &= ct_allreduce_host(&g_comm, x, n, rep ? 100 : 0, NULL) == CT_OK;
    hs[rep] = fnv1a(x, n * sizeof *x);
  }
  ok &= hs[0] == hs[1];
  ok &= ct_comm_check_same_u64(&g_comm, hs[0], "inexact result bits") == CT_OK;
  ct_error_clear();
  free(x);
  ck_assert_msg(agree(ok), "host ring: chunk size or repetition changed the result");
}
END_TEST

START_TEST(host_ring_rejects_mismatched_counts) {
  float x[16];
  fill_input(x, 16);
  size_t n = g_comm.size > 1 && g_comm.rank == 0 ? 11 : 10;
  ct_status st = ct_allreduce_host(&g_comm, x, n, 0, NULL);
  int ok = g_comm.size > 1 ? st == CT_ERR_MISMATCH && strstr(ct_error_text(), "count")
                           : st == CT_OK && count_wrong(x, n) == 0;
  if (g_comm.size > 1)
    for (size_t i = 0; i < 16; i++) ok &= x[i] == input(g_comm.rank, i);   // untouched
  if (!ok) fprintf(stderr, "rank %d: %s: %s\n", g_comm.rank, ct_strerror(st), ct_error_message());
  ct_error_clear();
  ck_assert_msg(agree(ok), "mismatched counts must give CT_ERR_MISMATCH on every rank");
}
END_TEST

// ---- ring on device buffers ---------------------------------------------------------------

// Runs the device all-reduce on count floats at offset `off` of a buffer with `tail` more
// floats after them; the floats outside the range hold sentinels that must survive.
// slow_bytes > 0: a write of that many bytes is queued on dev->queue before the input.
static int device_case(ct_allreduce *ar, size_t n, size_t off, size_t tail, size_t slow_bytes) {
  size_t total = off + n + tail;
  float *h = malloc((total + 1) * sizeof *h), *back = malloc((total + 1) * sizeof *back);
  ck_assert(h && back);
  for (size_t i = 0; i < off; i++) h[i] = 1000.0f + (float)i;
  fill_input(h + off, n);
  for (size_t i = 0; i < tail; i++) h[off + n + i] = -1000.0f - (float)i;
  cl_int err;
  cl_mem buf = clCreateBuffer(g_dev.ctx, CL_MEM_READ_WRITE, (total ? total : 1) * sizeof *h, NULL,
                              &err);
  ck_assert_int_eq(err, CL_SUCCESS);
  // Non-blocking writes on the trainer's queue, optionally a slow one first: the all-reduce
  // must wait for them before it reads.
  cl_mem slow = NULL;
  float *junk = NULL;
  if (slow_bytes) {
    junk = calloc(slow_bytes, 1);
    ck_assert_ptr_nonnull(junk);
    slow = clCreateBuffer(g_dev.ctx, CL_MEM_READ_WRITE, slow_bytes, NULL, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
    ck_assert_int_eq(clEnqueueWriteBuffer(g_dev.queue, slow, CL_FALSE, 0, slow_bytes, junk, 0,
                                          NULL, NULL), CL_SUCCESS);
  }
  if (total)
    ck_assert_int_eq(clEnqueueWriteBuffer(g_dev.queue, buf, CL_FALSE, 0, total * sizeof *h, h, 0,
                                          NULL, NULL), CL_SUCCESS);
  ct_allreduce_stats stats = {0};
  ct_status st = ct_allreduce_device(ar, buf, off, n, &stats);
  if (total)
    ck_assert_int_eq(clEnqueueReadBuffer(g_dev.queue, buf, CL_TRUE, 0, total * sizeof *h, back, 0,
                                         NULL, NULL), CL_SUCCESS);
  size_t wrong = st == CT_OK ? count_wrong(back + off, n) : n + 1, outside = 0;
  for (size_t i = 0; i < off; i++) outside += back[i] != h[i];
  for (size_t i = off + n; i < total; i++) outside += back[i] != h[i];
  ct_status bits = ct_comm_check_same_u64(&g_comm, fnv1a(back + off, n * sizeof *back),
                                          "device result bits");
  ct_allreduce_algo algo;
  ct_allreduce_get_algo(ar, &algo);
  int good = st == CT_OK && wrong == 0 && outside == 0 && bits == CT_OK && stats.calls == 1 &&
             stats.bytes_sent ==
                 ct_allreduce_sent_bytes(&algo, n, g_comm.rank, g_comm.size, CT_WIRE_FP32);
  if (!good)
    fprintf(stderr, "rank %d device count %zu offset %zu: %s, %zu wrong, %zu outside changed, "
            "bits %s: %s\n", g_comm.rank, n, off, ct_strerror(st), wrong, outside,
            ct_strerror(bits), ct_error_message());
  ct_error_clear();
  clReleaseMemObject(buf);
  if (slow) clReleaseMemObject(slow);
  free(junk);
  free(h);
  free(back);
  return good;
}

START_TEST(device_ring_is_exact_for_every_count) {
  size_t counts[16], nc = test_counts(counts);
  int ok = 1;
  for (size_t k = 0; k < nc; k++) ok &= device_case(g_ar, counts[k], 0, 0, 0);
  ck_assert_msg(agree(ok), "device ring: wrong elements or differing bits (see stderr)");
}
END_TEST

START_TEST(device_ring_leaves_the_rest_of_the_buffer_alone) {
  int ok = 1;
  ok &= device_case(g_ar, 1000003, 5, 59, 0);
  ok &= device_case(g_ar, (size_t)g_comm.size + 1, 17, 3, 0);
  ok &= device_case(g_ar, 0, 8, 8, 0);
  ck_assert_msg(agree(ok), "device ring with an offset: wrong or changed elements");
}
END_TEST

START_TEST(device_ring_waits_for_the_trainers_queue) {
  // The input is written behind a slow write on dev->queue without waiting: reading it
  // before dev->queue is done would see stale data.
  int ok = device_case(g_ar, 100003, 0, 0, (size_t)32 << 20);
  ok &= device_case(g_ar, 77, 2, 2, (size_t)32 << 20);
  ck_assert_msg(agree(ok), "device ring read the buffer before dev->queue finished");
}
END_TEST

START_TEST(device_ring_with_small_chunks) {
  ct_allreduce *ar = NULL;
  ct_status st = ct_allreduce_init(&g_comm, &g_dev, 20000, 64, &ar);
  int ok = st == CT_OK;
  if (ok) {
    ok &= device_case(ar, 10007, 3, 1, 0);
    ok &= device_case(ar, 20000, 0, 0, 0);
    ok &= device_case(ar, 5, 1, 0, 0);
    ct_allreduce_free(ar);
  } else {
    fprintf(stderr, "rank %d: %s\n", g_comm.rank, ct_error_message());
  }
  ck_assert_msg(agree(ok), "device ring with 64-byte chunks failed");
}
END_TEST

START_TEST(device_ring_rejects_mismatched_counts_and_bad_ranges) {
  int n = g_comm.size, r = g_comm.rank, ok = 1;
  float h[64];
  fill_input(h, 64);
  cl_int err;
  cl_mem buf = clCreateBuffer(g_dev.ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof h, h,
                              &err);
  ck_assert_int_eq(err, CL_SUCCESS);
  // Different counts: CT_ERR_MISMATCH everywhere, buffer untouched.
  ct_status st = ct_allreduce_device(g_ar, buf, 0, n > 1 && r == n - 1 ? 33 : 32, NULL);
  ok &= n > 1 ? st == CT_ERR_MISMATCH : st == CT_OK;
  if (!ok) fprintf(stderr, "rank %d counts: %s: %s\n", r, ct_strerror(st), ct_error_message());
  ct_error_clear();
  // A range past the end of the buffer on rank 0: its own error there, a mismatch elsewhere.
  st = ct_allreduce_device(g_ar, buf, r == 0 ? 40 : 0, 32, NULL);
  int ok2 = r == 0 ? st == CT_ERR_INTERNAL : st == CT_ERR_MISMATCH;
  if (!ok2) fprintf(stderr, "rank %d range: %s: %s\n", r, ct_strerror(st), ct_error_message());
  ok &= ok2;
  ct_error_clear();
  float back[64];
  ck_assert_int_eq(clEnqueueReadBuffer(g_dev.queue, buf, CL_TRUE, 0, sizeof back, back, 0, NULL,
                                       NULL), CL_SUCCESS);
  if (n > 1) ok &= memcmp(back, h, sizeof h) == 0;
  clReleaseMemObject(buf);
  ck_assert_msg(agree(ok), "bad all-reduce arguments must fail on every rank, not hang");
}
END_TEST

// ---- wire formats and windows -------------------------------------------------------------

// A value with a fractional part and a wide range of magnitudes, different on every rank.
static float rough(int rank, size_t i) {
  uint64_t s = (uint64_t)i * 0xd1b54a32d192ed03ULL + (uint64_t)(rank + 1) * 0x9e3779b97f4a7c15ULL;
  s ^= s >> 31;
  s *= 0xbf58476d1ce4e5b9ULL;
  s ^= s >> 29;
  return (float)((double)(s % 2000001) / 1000000.0 - 1.0) * (float)(1u << (s >> 60));
}

// fp16 and bf16 rings: the inputs are small integers (every partial sum is representable in
// both formats), so the result must be exact; the bytes sent are half the fp32 ring's; and
// on arbitrary values every rank ends with the same bits.
START_TEST(host_ring_wire_formats_are_exact_on_representable_values) {
  size_t counts[16], nc = test_counts(counts);
  int ok = 1;
  for (int w = CT_WIRE_FP16; w <= CT_WIRE_BF16; w++)
    for (size_t k = 0; k < nc; k++) {
      size_t n = counts[k];
      float *x = malloc((n ? n : 1) * sizeof *x);
      ck_assert_ptr_nonnull(x);
      fill_input(x, n);
      ct_allreduce_stats st = {0};
      ct_status rc = ct_allreduce_host_wire(&g_comm, x, n, 4096, (ct_wire)w, &st);
      size_t wrong = rc == CT_OK ? count_wrong(x, n) : n + 1;
      // the ring sends half the fp32 ring's bytes; a gathered (small) window sends fp32 inputs
      ct_allreduce_algo algo;
      ck_assert_int_eq(ct_allreduce_algo_default(&g_comm, &algo), CT_OK);
      size_t fp32_bytes = ct_allreduce_ring_bytes(n, g_comm.rank, g_comm.size);
      size_t want = ct_allreduce_sent_bytes(&algo, n, g_comm.rank, g_comm.size, (ct_wire)w);
      int good = rc == CT_OK && wrong == 0 && st.bytes_sent == want &&
                 (ct_allreduce_algo_small(&algo, n, g_comm.size) || want * 2 == fp32_bytes);
      for (size_t i = 0; i < n; i++) x[i] = rough(g_comm.rank, i);
      rc = ct_allreduce_host_wire(&g_comm, x, n, 4096, (ct_wire)w, NULL);
      good &= rc == CT_OK && ct_comm_check_same_u64(&g_comm, fnv1a(x, n * sizeof *x),
                                                   "wire result bits") == CT_OK;
      for (size_t i = 0; i < n && good && g_comm.size > 1; i++)   // ranks hold wire values
                                                                     // (one rank: no wire)
        good &= ct_wire_round((ct_wire)w, x[i]) == x[i] || x[i] != x[i];
      if (!good)
        fprintf(stderr, "rank %d %s count %zu: %s, %zu wrong, %zu bytes sent (fp32 %zu): %s\n",
                g_comm.rank, ct_wire_name((ct_wire)w), n, ct_strerror(rc), wrong, st.bytes_sent,
                fp32_bytes, ct_error_message());
      ct_error_clear();
      ok &= good;
      free(x);
    }
  ck_assert_msg(agree(ok), "fp16/bf16 ring: wrong elements, bytes or differing bits");
}
END_TEST

// The fast fp16 conversion (F16C where the CPU has it) gives the integer code's bits.
START_TEST(wire_pack_matches_the_reference_rounding) {
  size_t n = 1 << 20, bad = 0;
  float *x = malloc(n * sizeof *x);
  uint16_t *h = malloc(n * sizeof *h);
  ck_assert_ptr_nonnull(x);
  ck_assert_ptr_nonnull(h);
  for (size_t i = 0; i < n; i++) {   // every exponent, random mantissas, both signs
    uint32_t b = (uint32_t)(i * 2654435761u) ^ (uint32_t)(i << 13);
    if ((b & 0x7F800000u) == 0x7F800000u) b &= ~0x00400000u, b |= 0x00000001u;   // some NaNs
    memcpy(&x[i], &b, 4);
  }
  x[0] = 65520.0f, x[1] = 65519.996f, x[2] = 5.9604645e-8f, x[3] = 2.9802322e-8f;
  x[4] = -0.0f, x[5] = 1.0f / 0.0f;
  for (int w = CT_WIRE_FP16; w <= CT_WIRE_BF16; w++) {
    ct_wire_pack((ct_wire)w, h, x, n);
    for (size_t i = 0; i < n; i++) {   // one at a time: the integer code
      uint16_t r;
      ct_wire_pack((ct_wire)w, &r, &x[i], 1);
      if (r != h[i] && x[i] == x[i]) bad++;
    }
  }
  free(x);
  free(h);
  ck_assert_msg(bad == 0, "%zu conversions differ from the reference rounding", bad);
}
END_TEST

// The receive side's conversions (vectorized for bf16, F16C or a table for fp16) and the
// rounding of finished sums give the scalar code's bits: every exponent, both signs, NaNs,
// infinities, subnormals, halfway cases; odd lengths and offsets (the vector loops' tails).
START_TEST(wire_unpack_and_round_match_the_scalar_code) {
  size_t n = (1 << 18) + 7, bad = 0;
  float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *acc = malloc(n * sizeof *acc);
  uint16_t *h = malloc(n * sizeof *h);
  ck_assert_ptr_nonnull(x);
  ck_assert_ptr_nonnull(y);
  ck_assert_ptr_nonnull(acc);
  ck_assert_ptr_nonnull(h);
  for (size_t i = 0; i < n; i++) {
    uint32_t b = (uint32_t)(i * 2654435761u) ^ (uint32_t)(i << 13);
    if (i % 7 == 3) b = (b & 0xFFFF0000u) | 0x8000u;    // halfway for bf16
    if (i % 11 == 5) b = (b & 0xFFFFE000u) | 0x1000u;   // halfway for fp16
    memcpy(&x[i], &b, 4);
    h[i] = (uint16_t)(b ^ (b >> 16));
    acc[i] = (float)((int)(i % 2001) - 1000) * 0.125f;
  }
  for (int w = CT_WIRE_FP16; w <= CT_WIRE_BF16; w++) {
    for (size_t off = 0; off < 3; off++) {
      size_t m = n - off;
      memcpy(y, x, n * sizeof *y);
      ck_assert_ct(ct_wire_round_n((ct_wire)w, y + off, m));
      for (size_t i = off; i < n; i++) {
        float r = ct_wire_round((ct_wire)w, x[i]);
        if (memcmp(&r, &y[i], 4) && !(r != r && y[i] != y[i])) bad++;
      }
      for (int add = 0; add <= 1; add++) {
        memcpy(y, acc, n * sizeof *y);
        ck_assert_ct(ct_wire_unpack((ct_wire)w, y + off, h + off, m, add));
        for (size_t i = off; i < n; i++) {   // one at a time: the scalar code
          float r = acc[i];
          bad += ct_wire_unpack((ct_wire)w, &r, &h[i], 1, add) != CT_OK;
          if (memcmp(&r, &y[i], 4) && !(r != r && y[i] != y[i])) bad++;
          float v;   // and the wire value is what rounding a float to it gives back
          bad += ct_wire_unpack((ct_wire)w, &v, &h[i], 1, 0) != CT_OK;
          if (!add && v == v && ct_wire_round((ct_wire)w, v) != v) bad++;
        }
      }
    }
  }
  free(x);
  free(y);
  free(acc);
  free(h);
  ck_assert_msg(bad == 0, "%zu conversions differ from the scalar code", bad);
}
END_TEST

// A layout reduced window by window (buckets) gives the same bits as reduced whole, for any
// cut, in fp32 and fp16 (with the wire format ending inside a window).
START_TEST(device_windows_give_the_bits_of_the_whole) {
  if (!ct_allreduce_zero_copy(g_ar) && g_comm.size > 1) return;   // the mapped form
  size_t n = 300007;
  float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
  ck_assert_ptr_nonnull(a);
  ck_assert_ptr_nonnull(b);
  int ok = 1;
  for (int w = CT_WIRE_FP32; w <= CT_WIRE_FP16; w++) {
    for (size_t i = 0; i < n; i++) a[i] = b[i] = rough(g_comm.rank, i);
    size_t wire_n = n - 1000;
    ct_ring_opts whole = {.wire = (ct_wire)w, .wire_n = wire_n};
    ct_status st = ct_allreduce_mapped(g_ar, a, n, &whole, NULL);
    size_t cuts[] = {0, 1, 4097, 100000, 250000, 299500, n};
    for (size_t k = 0; k + 1 < sizeof cuts / sizeof *cuts && st == CT_OK; k++) {
      ct_ring_opts o = {.wire = (ct_wire)w, .wire_n = wire_n, .total = n, .base = cuts[k]};
      st = ct_allreduce_mapped(g_ar, b + cuts[k], cuts[k + 1] - cuts[k], &o, NULL);
    }
    int good = st == CT_OK && memcmp(a, b, n * sizeof *a) == 0;
    if (!good)
      fprintf(stderr, "rank %d windows (%s): %s %s\n", g_comm.rank, ct_wire_name((ct_wire)w),
              ct_strerror(st), ct_error_message());
    ct_error_clear();
    ok &= good;
  }
  free(a);
  free(b);
  ck_assert_msg(agree(ok), "windows of a layout must give the bits of the whole");
}
END_TEST

// Windows of a device buffer in flight together (start / test / wait), the last one's
// producer a marker event: the same bits as one blocking reduction of the whole buffer, in fp32
// and in fp16 (the wire format ending at a window boundary), zero-copy or staged.
START_TEST(device_requests_in_flight_give_the_bits_of_the_whole) {
  size_t n = 250003, cuts[] = {0, 3, 70001, 200000, 249000, n};
  int nw = (int)(sizeof cuts / sizeof *cuts) - 1;   // 5 windows: more than can be in flight
  float *h = malloc(n * sizeof *h), *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
  ck_assert_ptr_nonnull(h);
  ck_assert_ptr_nonnull(a);
  ck_assert_ptr_nonnull(b);
  for (size_t i = 0; i < n; i++) h[i] = rough(g_comm.rank, i);
  cl_int err;
  cl_mem bufs[2];
  for (int k = 0; k < 2; k++) {
    bufs[k] = clCreateBuffer(g_dev.ctx, CL_MEM_READ_WRITE, n * sizeof *h, NULL, &err);
    ck_assert_int_eq(err, CL_SUCCESS);
  }
  int ok = 1;
  for (int w = CT_WIRE_FP32; w <= CT_WIRE_FP16 && ok; w++) {
    ct_ring_opts whole = {.wire = (ct_wire)w, .wire_n = cuts[4]};
    for (int k = 0; k < 2; k++)
      ck_assert_int_eq(clEnqueueWriteBuffer(g_dev.queue, bufs[k], CL_FALSE, 0, n * sizeof *h, h, 0,
                                            NULL, NULL), CL_SUCCESS);
    ct_status st = ct_allreduce_device_after(g_ar, bufs[0], 0, n, NULL, &whole, NULL);
    ct_allreduce_req *q[8] = {0};
    cl_event user = NULL;
    int first = 0;   // oldest in flight
    for (int k = 0; k < nw && st == CT_OK; k++) {
      if (k - first == CT_ALLREDUCE_INFLIGHT) st = ct_allreduce_wait(q[first++], NULL, NULL);
      cl_event after = NULL;
      if (st == CT_OK && k == nw - 1)
        st = clEnqueueMarkerWithWaitList(g_dev.queue, 0, NULL, &after) == CL_SUCCESS ? CT_OK
                                                                                     : CT_ERR_CL;
      if (st == CT_OK && k == 0) {   // producers not done at the start: nothing can be read yet
        user = clCreateUserEvent(g_dev.ctx, &err);
        st = err == CL_SUCCESS ? CT_OK : CT_ERR_CL;
        after = user;
        if (st == CT_OK) clRetainEvent(user);
      }
      if (st == CT_OK && k == CT_ALLREDUCE_INFLIGHT - 1 && user) {
        clSetUserEventStatus(user, CL_COMPLETE);   // (before the first wait below)
        clReleaseEvent(user);
        user = NULL;
      }
      ct_ring_opts o = {.wire = (ct_wire)w, .wire_n = cuts[4], .total = n, .base = cuts[k]};
      if (st == CT_OK)
        st = ct_allreduce_start(g_ar, bufs[1], cuts[k], cuts[k + 1] - cuts[k], after, &o, &q[k]);
      if (after) clReleaseEvent(after);
      for (int j = first; j <= k && st == CT_OK; j++) {   // move every one on a little
        int done;
        st = ct_allreduce_test(q[j], &done);
      }
    }
    for (int k = first; k < nw && st == CT_OK; k++) {
      cl_event fin = NULL;
      st = ct_allreduce_wait(q[k], NULL, &fin);
      if (st == CT_OK && fin) {
        st = clEnqueueBarrierWithWaitList(g_dev.queue, 1, &fin, NULL) == CL_SUCCESS ? CT_OK
                                                                                    : CT_ERR_CL;
        clReleaseEvent(fin);
      }
    }
    if (st == CT_OK) {
      ck_assert_int_eq(clEnqueueReadBuffer(g_dev.queue, bufs[0], CL_TRUE, 0, n * sizeof *a, a, 0,
                                           NULL, NULL), CL_SUCCESS);
      ck_assert_int_eq(clEnqueueReadBuffer(g_dev.queue, bufs[1], CL_TRUE, 0, n * sizeof *b, b, 0,
                                           NULL, NULL), CL_SUCCESS);
    }
    int good = st == CT_OK && memcmp(a, b, n * sizeof *a) == 0 &&
               ct_comm_check_same_u64(&g_comm, fnv1a(b, n * sizeof *b), "request bits") == CT_OK;
    if (!good)
      fprintf(stderr, "rank %d requests (%s): %s %s\n", g_comm.rank, ct_wire_name((ct_wire)w),
              ct_strerror(st), ct_error_message());
    ct_error_clear();
    ok &= good;
  }
  for (int k = 0; k < 2; k++) clReleaseMemObject(bufs[k]);
  free(h), free(a), free(b);
  ck_assert_msg(agree(ok), "windows in flight must give the bits of the whole");
}
END_TEST

// ---- small windows: gathered, summed in the ring's order ---------------------------------------

// One reduction of x (n floats) through a host handle whose windows are all gathered (gather 1)
// or all ringed (gather 0); stats say which path ran. bad: the non-finite test of [0, nf_n)
// (ct_ring_opts.nonfinite), NULL for none.
static ct_status handle_reduce(float *x, size_t n, ct_wire w, int gather, unsigned *bad,
                               size_t nf_n, ct_allreduce_stats *stats) {
  ct_allreduce *ar = NULL;
  CT_TRY(ct_allreduce_init(&g_comm, NULL, n, 0, &ar));
  ct_allreduce_algo a;
  ct_allreduce_get_algo(ar, &a);
  a.small_bytes = gather ? (size_t)1 << 30 : 0;
  ct_status st = ct_allreduce_set_algo(ar, &a);
  if (st == CT_OK) st = ct_allreduce_agree(ar, n);
  ct_ring_opts o = {.wire = w, .wire_n = n, .nonfinite = bad, .nonfinite_n = bad ? nf_n : 0};
  if (st == CT_OK) st = ct_allreduce_mapped(ar, x, n, &o, stats);
  ct_allreduce_free(ar);
  return st;
}

static ct_status host_handle_reduce(float *x, size_t n, ct_wire w, int gather,
                                    ct_allreduce_stats *stats) {
  return handle_reduce(x, n, w, gather, NULL, 0, stats);
}

// The ring's halves (ct_ring_opts.part), by the ring and by the gather path, for fp32 and
// fp16, whole layouts and a window of a larger one: after the reduce-scatter, rank r's segment
// r+1 holds the whole ring's bits; the owner then doubles it (a sharded update) and after the
// all-gather every rank holds every owner's segment: twice the whole ring's result, bitwise.
// The non-finite test of the reduce-scatter counts the owner's segment only: a NaN on one rank
// is counted once over all ranks.
START_TEST(ring_halves_give_the_whole_rings_bits) {
  int N = g_comm.size, r = g_comm.rank, ok = 1;
  size_t counts[16], nc = test_counts(counts);
  for (int gather = 0; gather <= 1; gather++)
    for (int w = CT_WIRE_FP32; w <= CT_WIRE_FP16; w++)
      for (size_t k = 0; k < nc; k++)
        for (size_t extra = 0; extra <= 5; extra += 5) {
          size_t n = counts[k], total = n + extra;
          if (gather && n > 5000) continue;   // the gather path is for small windows
          size_t alloc = total ? total : 1;
          float *a = malloc(alloc * sizeof *a), *b = malloc(alloc * sizeof *b);
          ck_assert(a && b);
          for (size_t i = 0; i < total; i++)   // (for fp16 small enough that no sum overflows)
            a[i] = b[i] = w == CT_WIRE_FP16 ? ldexpf(rough(r, i), -12) : rough(r, i);
          if (n > 0 && r == N - 1) b[n / 2] = NAN;   // b only: the non-finite test
          ct_allreduce *ar = NULL;
          ct_status st = ct_allreduce_init(&g_comm, NULL, total ? total : 1, 0, &ar);
          ct_allreduce_algo al;
          if (st == CT_OK) {
            ct_allreduce_get_algo(ar, &al);
            al.small_bytes = gather ? (size_t)1 << 30 : 0;
            st = ct_allreduce_set_algo(ar, &al);
          }
          if (st == CT_OK) st = ct_allreduce_agree(ar, total ? total : 1);
          ct_ring_opts o = {.wire = (ct_wire)w, .wire_n = n, .total = total};
          if (st == CT_OK) st = ct_allreduce_mapped(ar, a, n, &o, NULL);   // whole
          unsigned bad = 0;
          ct_ring_opts rs = o;
          rs.part = CT_RING_REDUCE_SCATTER, rs.nonfinite = &bad, rs.nonfinite_n = n;
          if (st == CT_OK) st = ct_allreduce_mapped(ar, b, n, &rs, NULL);
          size_t lo, hi;
          ct_ring_segment(total, N, (r + 1) % N, &lo, &hi);
          if (hi > n) hi = n;
          // the NaN's owner finds it and marks its segment's last element too: skip both
          int nan_here = n > 0 && n / 2 >= lo && n / 2 < hi;
          size_t wrong = 0;
          for (size_t i = lo; i < hi; i++) {
            int skip = nan_here && (i == n / 2 || i == hi - 1);
            wrong += !skip && memcmp(&a[i], &b[i], sizeof *a) != 0;
            b[i] = skip ? 2.0f * a[i] : 2.0f * b[i];   // the owner's update
          }
          ct_ring_opts ag = {.total = total, .part = CT_RING_ALL_GATHER};
          if (st == CT_OK) st = ct_allreduce_mapped(ar, b, n, &ag, NULL);
          for (size_t i = 0; i < n; i++) wrong += !(b[i] == 2.0f * a[i]);
          int sum_bad = (int)bad;
          if (MPI_Allreduce(MPI_IN_PLACE, &sum_bad, 1, MPI_INT, MPI_SUM, g_comm.comm) !=
              MPI_SUCCESS)
            sum_bad = -1;
          int good = st == CT_OK && wrong == 0 && (int)bad == nan_here && sum_bad == (n > 0);
          if (!good)
            fprintf(stderr, "rank %d: halves, %s, %s, count %zu of %zu: %s, %zu wrong, bad %u "
                    "(sum %d)\n", r, gather ? "gather" : "ring", ct_wire_name((ct_wire)w), n,
                    total, ct_strerror(st), wrong, bad, sum_bad);
          ct_error_clear();
          ok &= good;
          ct_allreduce_free(ar);
          free(a), free(b);
        }
  ck_assert_msg(agree(ok), "the ring's halves must give the whole ring's bits");
}
END_TEST

// The gather path gives the ring's bits: exact on small integers, the same bits as the ring on
// values whose sums round (the order and, for fp16 and bf16, the rounding of every partial sum
// are the ring's), on every rank; and it is the path that ran (its bytes: (N-1) x count x 4).
START_TEST(small_path_gives_the_rings_bits) {
  int n_ranks = g_comm.size, ok = 1;
  size_t counts[] = {1, (size_t)(n_ranks > 1 ? n_ranks - 1 : 1), (size_t)n_ranks,
                     (size_t)n_ranks + 1, 7, 1000, 4099};
  for (int w = CT_WIRE_FP32; w <= CT_WIRE_BF16; w++)
    for (size_t k = 0; k < sizeof counts / sizeof *counts; k++) {
      size_t n = counts[k];
      float *ring = malloc(n * sizeof *ring), *gath = malloc(n * sizeof *gath);
      ck_assert(ring && gath);
      ct_allreduce_stats sr = {0}, sg = {0};
      fill_input(gath, n);   // exact
      ct_status st = host_handle_reduce(gath, n, (ct_wire)w, 1, &sg);
      size_t wrong = st == CT_OK ? count_wrong(gath, n) : n + 1;
      for (size_t i = 0; i < n; i++) ring[i] = gath[i] = rough(g_comm.rank, i);   // inexact
      if (st == CT_OK) st = host_handle_reduce(ring, n, (ct_wire)w, 0, &sr);
      sg.bytes_sent = 0;
      if (st == CT_OK) st = host_handle_reduce(gath, n, (ct_wire)w, 1, &sg);
      int same = memcmp(ring, gath, n * sizeof *ring) == 0;
      ct_status bits = ct_comm_check_same_u64(&g_comm, fnv1a(gath, n * sizeof *gath),
                                              "gathered bits");
      size_t want_g = n_ranks > 1 ? (size_t)(n_ranks - 1) * n * sizeof(float) : 0;
      int good = st == CT_OK && wrong == 0 && same && bits == CT_OK && sg.bytes_sent == want_g &&
                 sr.bytes_sent == ct_allreduce_sent_bytes(NULL, n, g_comm.rank, n_ranks,
                                                          (ct_wire)w);
      if (!good)
        fprintf(stderr, "rank %d %s count %zu: %s, %zu wrong, ring bits %s, across ranks %s, "
                "sent %zu / %zu: %s\n", g_comm.rank, ct_wire_name((ct_wire)w), n,
                ct_strerror(st), wrong, same ? "same" : "DIFFER", ct_strerror(bits),
                sg.bytes_sent, sr.bytes_sent, ct_error_message());
      ct_error_clear();
      ok &= good;
      free(ring), free(gath);
    }
  ck_assert_msg(agree(ok), "the gathered path must give the ring's bits on every rank");
}
END_TEST

// ---- the non-finite test folded into the reduction ---------------------------------------------

// ct_ring_opts.nonfinite: a NaN or an infinity that one rank puts anywhere in the tested range,
// and sums that overflow, are reported on every rank, by both paths, in every wire format and
// for counts of one chunk and of several; one beyond the tested range is not; and without one,
// the result is the plain reduction's bits (nothing marked).
START_TEST(nonfinite_sums_are_reported_on_every_rank) {
  int N = g_comm.size, r = g_comm.rank, ok = 1;
  size_t counts[] = {1, (size_t)N, 1000, 70001};
  for (int w = CT_WIRE_FP32; w <= CT_WIRE_BF16; w++)
    for (int gather = 0; gather <= 1; gather++)
      for (size_t k = 0; k < sizeof counts / sizeof *counts; k++) {
        size_t n = counts[k], nf_n = n > 3 ? n - 3 : n;
        float *x = malloc(n * sizeof *x), *ref = malloc(n * sizeof *ref);
        ck_assert(x && ref);
        // case 0: all finite; 1-3: NaN from rank c % N at the first, a middle and the last tested
        // element; 4: +Inf; 5: every rank 3e38 at one place (overflows when N >= 2); 6: a NaN
        // after the tested range
        for (int c = 0; c <= 6; c++) {
          if (c == 6 && nf_n == n) continue;
          for (size_t i = 0; i < n; i++) x[i] = (float)((i % 7) + (size_t)r) * 0.25f;
          size_t at = c == 1 ? 0 : c == 2 ? nf_n / 2 : c == 3 ? nf_n - 1 : c == 6 ? n - 1 : nf_n / 3;
          int from = c % N;
          if (c >= 1 && c <= 3 && r == from) x[at] = NAN;
          if (c == 4 && r == from) x[at] = INFINITY;
          if (c == 5) x[at] = 3e38f;
          if (c == 6 && r == from) x[at] = NAN;
          memcpy(ref, x, n * sizeof *x);
          unsigned bad = 0;
          ct_status st = handle_reduce(x, n, (ct_wire)w, gather, &bad, nf_n, NULL);
          int want = c >= 1 && c <= 4 ? 1 : c == 5 ? N >= 2 : 0;
          ct_status same = ct_comm_check_same_u64(&g_comm, bad, "non-finite segments");
          int good = st == CT_OK && same == CT_OK && (want ? bad >= 1 : bad == 0);
          if (good && c == 0) {   // nothing found: the plain reduction's bits
            st = host_handle_reduce(ref, n, (ct_wire)w, gather, NULL);
            good = st == CT_OK && memcmp(ref, x, n * sizeof *x) == 0;
          }
          if (!good)
            fprintf(stderr, "rank %d %s %s count %zu case %d: %s, %u segment(s) reported, want %s; "
                    "across ranks %s %s\n", r, ct_wire_name((ct_wire)w), gather ? "gather" : "ring",
                    n, c, ct_strerror(st), bad, want ? ">= 1" : "0", ct_strerror(same),
                    ct_error_message());
          ct_error_clear();
          ok &= good;
        }
        free(x), free(ref);
      }
  ck_assert_msg(agree(ok), "non-finite sums must be reported alike on every rank");
}
END_TEST

// The sizes the algorithm takes from the environment, and a malformed one (one line naming it).
START_TEST(algo_sizes_from_the_environment) {
  ct_allreduce_algo a;
  int ok = 1;
  setenv("CLTRAIN_ALLREDUCE_SMALL", "8K", 1);
  setenv("CLTRAIN_ALLREDUCE_CHUNK", "96K", 1);   // (not a default)
  ok &= ct_allreduce_algo_default(&g_comm, &a) == CT_OK && a.small_bytes == 8192 &&
        a.chunk_bytes == 98304 && a.network == (g_comm.nodes > 1);
  // 8 KiB of gather per rank: 2048 floats from one other rank, 512 from four
  size_t edge = 8192 / 4 / (size_t)(g_comm.size > 1 ? g_comm.size - 1 : 1);
  ok &= g_comm.size < 2 || (ct_allreduce_algo_small(&a, edge, g_comm.size) &&
                            !ct_allreduce_algo_small(&a, edge + 1, g_comm.size) &&
                            !strcmp(ct_allreduce_algo_name(&a, edge + 1, g_comm.size), "ring"));
  setenv("CLTRAIN_ALLREDUCE_SMALL", "lots", 1);
  ok &= ct_allreduce_algo_default(&g_comm, &a) == CT_ERR_USAGE &&
        strstr(ct_error_text(), "CLTRAIN_ALLREDUCE_SMALL") && strstr(ct_error_text(), "lots");
  ct_error_clear();
  unsetenv("CLTRAIN_ALLREDUCE_SMALL");
  unsetenv("CLTRAIN_ALLREDUCE_CHUNK");
  ok &= ct_allreduce_algo_default(&g_comm, &a) == CT_OK &&
        a.small_bytes == (a.network ? CT_ALLREDUCE_SMALL_NET : CT_ALLREDUCE_SMALL_SHM) &&
        a.chunk_bytes == (a.network ? CT_ALLREDUCE_CHUNK_NET : CT_ALLREDUCE_CHUNK_SHM);
  ck_assert_msg(agree(ok), "algorithm sizes from the environment");
}
END_TEST

// ---- main ---------------------------------------------------------------------------------

static void open_device(void) {
  const char *spec = getenv("CLTRAIN_TEST_DEVICE");
  if (!spec || !*spec) spec = "auto";
  ct_status st = ct_device_open_spec(spec, g_comm.rank, g_comm.local_rank, &g_dev);
  if (st != CT_OK && st != CT_ERR_NOTFOUND) {
    fprintf(stderr, "rank %d: cannot open device '%s': %s\n", g_comm.rank, spec,
            ct_error_message());
    ct_comm_abort(&g_comm, 1);
  }
  if (st == CT_OK) {
    st = ct_allreduce_init(&g_comm, &g_dev, DEV_MAX, 0, &g_ar);
    if (st != CT_OK) {
      fprintf(stderr, "rank %d: ct_allreduce_init: %s\n", g_comm.rank, ct_error_message());
      ct_comm_abort(&g_comm, 1);
    }
  }
  // Every rank runs the device tests, or none does.
  int missing = st != CT_OK;
  if (ct_comm_allreduce_int_max(&g_comm, &missing, 1) != CT_OK) ct_comm_abort(&g_comm, 1);
  g_have_dev = !missing;
  if (!g_have_dev) {
    if (g_comm.rank == 0) fprintf(stderr, "SKIP device tests: no OpenCL device for '%s'\n", spec);
    ct_allreduce_free(g_ar);
    g_ar = NULL;
    if (st == CT_OK) ct_device_close(&g_dev);
    ct_error_clear();
  }
}

int main(int argc, char **argv) {
  if (ct_comm_init(&argc, &argv, &g_comm) != CT_OK) {
    fprintf(stderr, "ct_comm_init: %s\n", ct_error_message());
    return 1;
  }
  open_device();
  Suite *s = suite_create("mpi_allreduce");
  TCase *tc = tcase_create("comm");
  tcase_add_test(tc, comm_world_and_small_collectives);
  tcase_add_test(tc, comm_check_same_detects_a_difference);
  suite_add_tcase(s, tc);
  tc = tcase_create("host");
  tcase_add_test(tc, host_ring_is_exact_for_every_count);
  tcase_add_test(tc, host_ring_bits_do_not_depend_on_chunking);
  tcase_add_test(tc, host_ring_rejects_mismatched_counts);
  tcase_add_test(tc, host_ring_wire_formats_are_exact_on_representable_values);
  tcase_add_test(tc, wire_pack_matches_the_reference_rounding);
  tcase_add_test(tc, wire_unpack_and_round_match_the_scalar_code);
  tcase_add_test(tc, small_path_gives_the_rings_bits);
  tcase_add_test(tc, ring_halves_give_the_whole_rings_bits);
  tcase_add_test(tc, nonfinite_sums_are_reported_on_every_rank);
  tcase_add_test(tc, algo_sizes_from_the_environment);
  suite_add_tcase(s, tc);
  if (g_have_dev) {
    tc = tcase_create("device");
    tcase_add_test(tc, device_ring_is_exact_for_every_count);
    tcase_add_test(tc, device_ring_leaves_the_rest_of_the_buffer_alone);
    tcase_add_test(tc, device_ring_waits_for_the_trainers_queue);
    tcase_add_test(tc, device_ring_with_small_chunks);
    tcase_add_test(tc, device_ring_rejects_mismatched_counts_and_bad_ranges);
    tcase_add_test(tc, device_windows_give_the_bits_of_the_whole);
    tcase_add_test(tc, device_requests_in_flight_give_the_bits_of_the_whole);
    suite_add_tcase(s, tc);
  }
  SRunner *sr = srunner_create(s);
  srunner_set_fork_status(sr, CK_NOFORK);
  srunner_run_all(sr, g_comm.rank == 0 ? CK_NORMAL : CK_SILENT);
  int failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  // The job fails if any rank failed.
  if (ct_comm_allreduce_int_max(&g_comm, &failed, 1) != CT_OK) failed = 1;
  if (g_have_dev) {
    ct_allreduce_free(g_ar);
    ct_device_close(&g_dev);
  }
  ct_comm_free(&g_comm);
  if (failed) return 1;
  return g_have_dev ? 0 : CT_TEST_SKIP;
}
