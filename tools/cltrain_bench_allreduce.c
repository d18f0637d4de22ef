// cltrain-bench-allreduce: measures the ring all-reduce against MPI_Allreduce, nccl-tests style.
//
//   mpiexec -n 2 cltrain-bench-allreduce [--min-bytes 4] [--max-bytes 256M] [--factor 2]
//                                        [--iters 20] [--warmup 5] [--chunk B] [--small B]
//                                        [--device auto|SPEC|none] [--median] [--interleave]
//                                        [--wire FMT]
//
// For each size it runs three paths on the same ranks: cltrain's all-reduce on host arrays (a
// handle without a device, ct_allreduce_mapped), on device buffers, mapped where the device
// shares host memory and staged through it elsewhere (ct_allreduce_device_after, device picked
// by --device and the local rank) and MPI_Allreduce on host arrays (the reference). cltrain's
// paths run as the trainer runs them: counts agreed once per size (ct_allreduce_agree), no
// check per call; windows up to the gather size are gathered and summed in the ring's order,
// larger ones take the ring (the algo column; the header line gives the transport's sizes).
// Columns per path: time (us, the mean over --iters of the loop on the slowest rank, as
// nccl-tests; --median: the median over iterations of the slowest rank's time, which a machine
// shared with other jobs disturbs less; --interleave: the paths' calls take turns, each after a
// barrier, medians),
// algbw = bytes / time, busbw = algbw * 2(N-1)/N (what each link carries, comparable across N),
// and #wrong: inputs are small integers (rank+1)*((i%7)+1), so every sum is exact and each
// element is right or wrong; the wrong ones of all ranks are counted, on a separate run with
// fresh inputs. Any wrong element makes the exit code 1. Only rank 0 prints. The last columns:
// the host path's busbw over MPI_Allreduce's (= MPI's time over ours), the device path's time
// over the host path's, the algorithm and the bytes one rank sends per call (halved by --wire fp16|bf16, which puts both rings' messages in that format;
// the inputs stay exact in it, so #wrong still counts every error).
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/allreduce.h"
#include "cltrain/comm.h"
#include "cltrain/device.h"
#include "cltrain/timer.h"
#include "cltrain/version.h"

enum { PATH_HOST, PATH_DEVICE, PATH_MPI, NPATHS };
static const char *path_names[NPATHS] = {"host", "device", "MPI_Allreduce"};

typedef struct {
  size_t min_bytes, max_bytes, chunk, small;
  int factor, iters, warmup, median, interleave, small_set;
  const char *device;
  ct_wire wire;
} options;

static void usage(FILE *f) {
  fprintf(f,
          "usage: mpiexec -n N cltrain-bench-allreduce [options]\n"
          "Times cltrain's all-reduce on host arrays, on device buffers (mapped where the device\n"
          "shares host memory, else staged through it) and MPI_Allreduce, for sizes from\n"
          "--min-bytes to --max-bytes.\n"
          "  --min-bytes B   smallest size (default 4; K, M, G suffixes = KiB, MiB, GiB)\n"
          "  --max-bytes B   largest size (default 256M)\n"
          "  --factor F      size step factor, >= 2 (default 2)\n"
          "  --iters N       timed iterations per size (default 20)\n"
          "  --warmup N      untimed iterations before them (default 5)\n"
          "  --chunk B       ring pipeline chunk in bytes (default: the transport's, see the\n"
          "                  header line; CLTRAIN_ALLREDUCE_CHUNK)\n"
          "  --small B       gather (and sum in the ring's order) windows whose exchange moves at\n"
          "                  most B bytes per rank; larger ones take the ring (default: the\n"
          "                  transport's; CLTRAIN_ALLREDUCE_SMALL; 0: always the ring)\n"
          "  --median        report the median time per call instead of the mean (robust when\n"
          "                  other jobs share the machine)\n"
          "  --interleave    the paths' calls take turns, each after a barrier (implies\n"
          "                  --median): a slow spell of a shared machine hits all paths alike\n"
          "  --device SPEC   device of the device-ring path: auto (default; no device skips the\n"
          "                  path), gpu, cpu, P:D, a name, a per-rank list (0=pocl,1=gpu), or\n"
          "                  none to skip that path\n"
          "  --wire FMT      format of the rings' messages: fp32 (default), fp16 or bf16 (sums stay\n"
          "                  fp32; inputs are refilled before every timed call, untimed, so that\n"
          "                  repeated sums do not overflow the format)\n"
          "  --version       cltrain's version and those of the OpenCL platforms, CLBlast and\n"
          "                  MPI found at run time (needs no mpiexec)\n"
          "  -h, --help      this text\n");
}

// "4", "64K", "256M", "1G" (binary multiples). 0 on a malformed value.
static int parse_bytes(const char *s, size_t *out) {
  char *end = NULL;
  unsigned long long v = strtoull(s, &end, 10);
  if (end == s || s[0] == '-') return 0;
  unsigned long long mul = 1;
  if (*end == 'K' || *end == 'k') mul = 1ULL << 10, end++;
  else if (*end == 'M' || *end == 'm') mul = 1ULL << 20, end++;
  else if (*end == 'G' || *end == 'g') mul = 1ULL << 30, end++;
  if (*end == 'i' && end[1] == 'B') end += 2;
  else if (*end == 'B') end++;
  if (*end) return 0;
  *out = (size_t)(v * mul);
  return 1;
}

static int parse_int(const char *s, int lo, int *out) {
  char *end = NULL;
  long v = strtol(s, &end, 10);
  if (end == s || *end || v < lo || v > 1000000) return 0;
  *out = (int)v;
  return 1;
}

// CT_ERR_USAGE (message recorded) for a bad flag; *help = 1 for --help.
static ct_status parse_args(int argc, char **argv, options *o, int *help) {
  static const struct option longs[] = {
      {"min-bytes", required_argument, 0, 'm'}, {"max-bytes", required_argument, 0, 'M'},
      {"factor", required_argument, 0, 'f'},    {"iters", required_argument, 0, 'n'},
      {"warmup", required_argument, 0, 'w'},    {"chunk", required_argument, 0, 'c'},
      {"device", required_argument, 0, 'd'},    {"help", no_argument, 0, 'h'},
      {"median", no_argument, 0, 'a'},        {"wire", required_argument, 0, 'W'},
      {"small", required_argument, 0, 's'},   {"interleave", no_argument, 0, 'i'},
      {0, 0, 0, 0}};
  *o = (options){.min_bytes = 4, .max_bytes = (size_t)256 << 20, .chunk = 0, .factor = 2,
                 .iters = 20, .warmup = 5, .device = "auto"};
  *help = 0;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":h", longs, NULL)) != -1) {
    switch (c) {
      case 'm':
        if (!parse_bytes(optarg, &o->min_bytes) || o->min_bytes < 4)
          return CT_FAIL(CT_ERR_USAGE, "--min-bytes: expected a size of at least 4, got '%s'",
                         optarg);
        break;
      case 'M':
        if (!parse_bytes(optarg, &o->max_bytes) || o->max_bytes < 4 ||
            o->max_bytes > (size_t)1 << 31)
          return CT_FAIL(CT_ERR_USAGE, "--max-bytes: expected a size from 4 to 2G, got '%s'",
                         optarg);
        break;
      case 'f':
        if (!parse_int(optarg, 2, &o->factor))
          return CT_FAIL(CT_ERR_USAGE, "--factor: expected an integer >= 2, got '%s'", optarg);
        break;
      case 'n':
        if (!parse_int(optarg, 1, &o->iters))
          return CT_FAIL(CT_ERR_USAGE, "--iters: expected an integer >= 1, got '%s'", optarg);
        break;
      case 'w':
        if (!parse_int(optarg, 0, &o->warmup))
          return CT_FAIL(CT_ERR_USAGE, "--warmup: expected an integer >= 0, got '%s'", optarg);
        break;
      case 'c':
        if (!parse_bytes(optarg, &o->chunk) || o->chunk < 4)
          return CT_FAIL(CT_ERR_USAGE, "--chunk: expected a size of at least 4 bytes, got '%s'",
                         optarg);
        break;
      case 's':
        if (!parse_bytes(optarg, &o->small))
          return CT_FAIL(CT_ERR_USAGE, "--small: expected a size in bytes (0: always the ring), "
                         "got '%s'", optarg);
        o->small_set = 1;
        break;
      case 'd':
        if (!*optarg) return CT_FAIL(CT_ERR_USAGE, "--device: expected a device spec or none");
        o->device = optarg;
        break;
      case 'a':
        o->median = 1;
        break;
      case 'i':
        o->interleave = o->median = 1;
        break;
      case 'W':
        if (!ct_wire_parse(optarg, &o->wire))
          return CT_FAIL(CT_ERR_USAGE, "--wire: expected fp32, fp16 or bf16, got '%s'", optarg);
        break;
      case 'h':
        *help = 1;
        return CT_OK;
      case ':':
        return CT_FAIL(CT_ERR_USAGE, "%s: expected a value", argv[optind - 1]);
      default:
        return CT_FAIL(CT_ERR_USAGE, "%s: unknown option (see --help)", argv[optind - 1]);
    }
  }
  if (optind < argc) return CT_FAIL(CT_ERR_USAGE, "%s: unexpected argument", argv[optind]);
  if (o->min_bytes > o->max_bytes)
    return CT_FAIL(CT_ERR_USAGE, "--min-bytes %zu is larger than --max-bytes %zu", o->min_bytes,
                   o->max_bytes);
  return CT_OK;
}

// ---- one path at one size -----------------------------------------------------------------

typedef struct {
  ct_comm *comm;
  float *host;                 // (max_count) host array of the host paths and for checking
  float *pristine;             // (max_count) the inputs, to refill from (wire formats)
  ct_wire wire;
  size_t sent;                 // bytes this rank sent in the last ring call
  ct_device dev;
  int have_dev;
  cl_mem dbuf;                 // (dev_max_count) device buffer of the device path
  size_t dev_max_count;
  ct_allreduce *ar;            // the device path's handle
  ct_allreduce *har;           // the host path's (no device)
  size_t chunk;                // 0: the transport's
  const options *o;
} bench;

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static ct_status run_once(bench *b, int path, size_t count) {
  ct_allreduce_stats st = {0};
  ct_ring_opts o = {.wire = b->wire, .wire_n = count};
  ct_status r;
  switch (path) {
    case PATH_HOST:
      r = ct_allreduce_mapped(b->har, b->host, count, &o, &st);
      b->sent = st.bytes_sent;
      return r;
    case PATH_DEVICE:
      r = ct_allreduce_device_after(b->ar, b->dbuf, 0, count, NULL, &o, &st);
      b->sent = st.bytes_sent;
      return r;
    default:
      MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, b->host, (int)count, MPI_FLOAT, MPI_SUM,
                              b->comm->comm));
      return CT_OK;
  }
}

// The wire formats' sums overflow after a dozen calls: their paths start from fresh inputs.
static int fresh_inputs(const bench *b, int path) {
  return b->wire != CT_WIRE_FP32 && path != PATH_MPI;
}

// Fresh inputs (from the pristine copy), untimed.
static ct_status refill(bench *b, int path, size_t count) {
  if (path == PATH_DEVICE)
    CL_CHECK(clEnqueueWriteBuffer(b->dev.queue, b->dbuf, CL_TRUE, 0, count * sizeof(float),
                                  b->pristine, 0, NULL, NULL));
  else
    memcpy(b->host, b->pristine, count * sizeof(float));
  return CT_OK;
}

// Fresh inputs, one all-reduce, count of wrong elements summed over ranks; then the warmup
// calls.
static ct_status prepare_path(bench *b, int path, size_t count, const options *o, double *wrong) {
  int n = b->comm->size;
  if (path == PATH_DEVICE) CT_TRY(ct_allreduce_agree(b->ar, count));
  if (path == PATH_HOST) CT_TRY(ct_allreduce_agree(b->har, count));
  CT_TRY(refill(b, path, count));
  CT_TRY(run_once(b, path, count));
  if (path == PATH_DEVICE)
    CL_CHECK(clEnqueueReadBuffer(b->dev.queue, b->dbuf, CL_TRUE, 0, count * sizeof(float),
                                 b->host, 0, NULL, NULL));
  const float total = (float)(n * (n + 1) / 2);   // exact in every wire format for N <= 9
  double bad = 0;
  for (size_t i = 0; i < count; i++) bad += b->host[i] != total * (float)(i % 7 + 1);
  CT_TRY(ct_comm_allreduce_double_sum(b->comm, &bad, 1));
  *wrong = bad;
  for (int k = 0; k < o->warmup; k++) {
    if (fresh_inputs(b, path)) CT_TRY(refill(b, path, count));
    CT_TRY(run_once(b, path, count));
  }
  return CT_OK;
}

// One timed call of a path (fresh inputs first where the format needs them, untimed; with
// `sync` a barrier too): its time on this rank.
static ct_status timed_call(bench *b, int path, size_t count, int sync, double *t) {
  if (fresh_inputs(b, path)) CT_TRY(refill(b, path, count));
  if (sync || fresh_inputs(b, path)) CT_TRY(ct_comm_barrier(b->comm));
  double t0 = ct_now();
  CT_TRY(run_once(b, path, count));
  *t = ct_now() - t0;
  return CT_OK;
}

// Times --iters calls of every path that runs (ran[p]): us[p] = the slowest rank's mean per
// call (the loop's time / iters, as nccl-tests), or with --median the median over calls of the
// slowest rank's call time. --interleave: the calls take turns (host, device, MPI, host, ...),
// each after a barrier, so that a slow spell of a shared machine hits every path alike.
static ct_status time_paths(bench *b, const int *ran, size_t count, const options *o,
                            double *us) {
  double *ts[NPATHS] = {0};   // per path: (iters) per call, then the loop
  ct_status st = CT_OK;
  for (int p = 0; p < NPATHS; p++)
    if (ran[p] && !(ts[p] = calloc((size_t)o->iters + 1, sizeof *ts[p])))
      st = CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  if (st == CT_OK && o->interleave) {
    for (int k = 0; k < o->iters && st == CT_OK; k++)
      for (int p = 0; p < NPATHS && st == CT_OK; p++)
        if (ran[p] && (st = timed_call(b, p, count, 1, &ts[p][k])) == CT_OK)
          ts[p][o->iters] += ts[p][k];
  } else {
    for (int p = 0; p < NPATHS && st == CT_OK; p++) {
      if (!ran[p]) continue;
      st = ct_comm_barrier(b->comm);
      double t0 = ct_now(), in_calls = 0;
      for (int k = 0; k < o->iters && st == CT_OK; k++)
        if ((st = timed_call(b, p, count, 0, &ts[p][k])) == CT_OK) in_calls += ts[p][k];
      // fp32 sums of these inputs stay exact and finite over the calls; the wire formats
      // overflow after a dozen, so they start from fresh inputs each call (the loop time is
      // then the sum of the calls' times)
      ts[p][o->iters] = fresh_inputs(b, p) ? in_calls : ct_now() - t0;
    }
  }
  for (int p = 0; p < NPATHS && st == CT_OK; p++) {
    if (!ran[p]) continue;
    st = ct_comm_allreduce_double_max(b->comm, ts[p], o->iters + 1);
    if (st != CT_OK) break;
    if (o->median) {
      qsort(ts[p], (size_t)o->iters, sizeof *ts[p], cmp_double);
      us[p] = 1e6 * (o->iters % 2 ? ts[p][o->iters / 2]
                                  : 0.5 * (ts[p][o->iters / 2 - 1] + ts[p][o->iters / 2]));
    } else {
      us[p] = 1e6 * ts[p][o->iters] / o->iters;
    }
  }
  for (int p = 0; p < NPATHS; p++) free(ts[p]);
  return st;
}

// ---- main -----------------------------------------------------------------------------------

static void fail(ct_comm *comm, ct_status st) {
  fprintf(stderr, "cltrain-bench-allreduce: rank %d: %s\n", comm->rank, ct_error_message());
  ct_comm_abort(comm, ct_exit_code(st));
}

// Every rank learns the largest of the ranks' exit codes (0: all fine); a rank that failed
// prints its own error. Collective.
static int agree_code(ct_comm *comm, ct_status st) {
  int code = ct_exit_code(st);
  if (code) fprintf(stderr, "cltrain-bench-allreduce: rank %d: %s\n", comm->rank,
                    st == CT_ERR_USAGE ? ct_error_text() : ct_error_message());
  if (ct_comm_allreduce_int_max(comm, &code, 1) != CT_OK) return 1;
  return code;
}

// Opens the device of the device-ring path on every rank, or on none. Returns an exit code
// (0: fine, also when the path is skipped), the same on every rank.
static int open_device(bench *b, const options *o, size_t max_count) {
  ct_comm *comm = b->comm;
  int none = strcmp(o->device, "none") == 0;
  ct_status st = CT_ERR_NOTFOUND;
  char why[512] = "--device none";
  if (!none) {
    st = ct_device_open_spec(o->device, comm->rank, comm->local_rank, &b->dev);
    if (st != CT_OK) snprintf(why, sizeof why, "%s", ct_error_text());
    // No device for "auto" skips the path; a spec the user named must match.
    if (st == CT_ERR_NOTFOUND && strcmp(o->device, "auto") != 0)
      st = ct_error_replace(CT_ERR_USAGE, __FILE__, __LINE__, "%s", why);
  }
  int opened = st == CT_OK;
  int code = agree_code(comm, st == CT_ERR_NOTFOUND ? CT_OK : st);
  int missing = !opened;
  if (!code && ct_comm_allreduce_int_max(comm, &missing, 1) != CT_OK) code = 1;
  if (code || missing) {   // every rank runs the device path, or none does
    if (opened) ct_device_close(&b->dev);
    if (!code && comm->rank == 0)
      printf("# device path: skipped (%s)\n", opened ? "another rank found no device" : why);
    ct_error_clear();
    return code;
  }
  b->have_dev = 1;
  // The largest buffer every rank's device can hold.
  double lim = -(double)(b->dev.info.max_alloc / sizeof(float));
  if (ct_comm_allreduce_double_max(comm, &lim, 1) != CT_OK) return agree_code(comm, CT_ERR_MPI);
  b->dev_max_count = max_count < (size_t)-lim ? max_count : (size_t)-lim;
  cl_int err;
  b->dbuf = ct_device_buffer(&b->dev, b->dev_max_count * sizeof(float), &err);
  if (err != CL_SUCCESS) {
    b->dbuf = NULL;
    st = CT_FAIL(CT_ERR_NOMEM, "device buffer of %zu bytes: %s", b->dev_max_count * sizeof(float),
                 ct_cl_errname(err));
  } else {
    st = ct_allreduce_init(comm, &b->dev, b->dev_max_count, b->chunk, &b->ar);
  }
  if (st == CT_OK && b->o->small_set) {
    ct_allreduce_algo a;
    ct_allreduce_get_algo(b->ar, &a);
    a.small_bytes = b->o->small;
    st = ct_allreduce_set_algo(b->ar, &a);
  }
  if ((code = agree_code(comm, st)) != 0) return code;
  if (comm->rank == 0)
    printf("# device path: rank 0 on %s [%s], %s staging, buffers up to %zu bytes\n",
           b->dev.info.name, b->dev.info.platform_name,
           comm->size < 2                ? "no"
           : ct_allreduce_zero_copy(b->ar) ? "no (zero-copy: mapped)"
           : ct_allreduce_pinned(b->ar)    ? "pinned"
                                           : "malloc'ed",
           b->dev_max_count * sizeof(float));
  return 0;
}

static void print_bw(double bytes, double us, double factor) {
  double algbw = bytes / (us * 1e-6) / 1e9;
  printf(" %10.1f %7.3f %7.3f", us, algbw, algbw * factor);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++)   // --version needs no MPI
    if (!strcmp(argv[i], "--version")) {
      ct_status st = ct_version_print(stdout, "cltrain-bench-allreduce");
      if (st != CT_OK) fprintf(stderr, "cltrain-bench-allreduce: %s\n", ct_error_text());
      return ct_exit_code(st);
    }
  ct_comm comm;
  if (ct_comm_init(&argc, &argv, &comm) != CT_OK) {
    fprintf(stderr, "cltrain-bench-allreduce: %s\n", ct_error_message());
    return 1;
  }
  options o;
  int help = 0;
  ct_status st = parse_args(argc, argv, &o, &help);
  if (st != CT_OK || help) {   // every rank parsed the same arguments
    if (comm.rank == 0) {
      if (help) usage(stdout);
      else fprintf(stderr, "cltrain-bench-allreduce: %s\n", ct_error_text());
    }
    ct_comm_free(&comm);
    return ct_exit_code(st);
  }
  int n = comm.size;
  double bus_factor = n > 1 ? 2.0 * (n - 1) / n : 0.0;
  size_t max_count = o.max_bytes / sizeof(float);
  bench b = {.comm = &comm, .chunk = o.chunk, .o = &o};
  b.wire = o.wire;
  b.host = malloc(max_count * sizeof(float));
  b.pristine = malloc(max_count * sizeof(float));
  if (!b.host || !b.pristine) {
    fprintf(stderr, "cltrain-bench-allreduce: rank %d: out of host memory (%zu bytes)\n",
            comm.rank, o.max_bytes);
    ct_comm_abort(&comm, 1);
  }
  // the host path's handle: the transport's sizes, or --chunk / --small
  ct_allreduce_algo algo;
  st = ct_allreduce_init(&comm, NULL, max_count, b.chunk, &b.har);
  if (st == CT_OK) {
    ct_allreduce_get_algo(b.har, &algo);
    if (o.small_set) algo.small_bytes = o.small;
    st = ct_allreduce_set_algo(b.har, &algo);
  }
  int code = agree_code(&comm, st);
  if (code) {
    ct_allreduce_free(b.har);
    free(b.host);
    free(b.pristine);
    ct_comm_free(&comm);
    return code;
  }
  if (comm.rank == 0)
    printf("# cltrain-bench-allreduce: %d ranks on %d node(s) (%d on this one), iters %d, "
           "warmup %d, time = %s, wire: %s\n"
           "# algorithm (%s%s): windows whose exchange moves <= %zu bytes per rank are gathered "
           "(%zu floats here), larger ones take the ring in chunks of %zu bytes\n",
           n, comm.nodes, comm.local_size, o.iters, o.warmup,
           o.interleave ? "median per call, paths interleaved"
           : o.median   ? "median per call"
                        : "mean per call",
           ct_wire_name(o.wire),
           algo.network ? "transport: network, the job spans nodes" : "transport: shared memory",
           o.small_set || o.chunk || getenv("CLTRAIN_ALLREDUCE_SMALL") ||
                   getenv("CLTRAIN_ALLREDUCE_CHUNK")
               ? "; sizes set by hand"
               : "",
           algo.small_bytes, n > 1 ? algo.small_bytes / sizeof(float) / (size_t)(n - 1) : 0,
           algo.chunk_bytes);
  for (size_t i = 0; i < max_count; i++)
    b.pristine[i] = (float)((comm.rank + 1) * (int)(i % 7 + 1));
  code = open_device(&b, &o, max_count);
  if (code) {
    ct_allreduce_free(b.har);
    if (b.ar) ct_allreduce_free(b.ar);
    if (b.dbuf) clReleaseMemObject(b.dbuf);
    if (b.have_dev) ct_device_close(&b.dev);
    free(b.host);
    free(b.pristine);
    ct_comm_free(&comm);
    return code;
  }
  if (comm.rank == 0) {
    printf("#%37s", "");
    for (int p = 0; p < NPATHS; p++) printf("  %-34s", path_names[p]);
    printf("\n# %10s %12s %6s", "size", "count", "type");
    for (int p = 0; p < NPATHS; p++)
      printf(" %10s %7s %7s %6s", "time(us)", "algbw", "busbw", "#wrong");
    printf(" %9s %9s %6s %12s\n", "host/MPI", "dev/host", "algo", "sent");
    printf("# %10s %12s %6s", "(B)", "(elements)", "");
    for (int p = 0; p < NPATHS; p++) printf(" %10s %7s %7s %6s", "", "(GB/s)", "(GB/s)", "");
    printf(" %9s %9s %6s %12s\n", "busbw", "time", "", "(B/rank)");
  }
  double sum_bus[NPATHS] = {0}, total_wrong = 0, ratio_min = 1e30, ratio_sum = 0;
  int nsizes[NPATHS] = {0}, nratio = 0, dev_skipped = 0, n_dev_host = 0;
  double dev_host_max = 0, first_us[2] = {0, 0};
  size_t first_bytes = 0;
  int n_first = 0;
  for (size_t bytes = o.min_bytes; bytes <= o.max_bytes;) {
    size_t count = bytes / sizeof(float);
    double us[NPATHS] = {0}, wrong[NPATHS] = {0};
    int ran[NPATHS] = {1, b.have_dev && count <= b.dev_max_count, 1};
    if (b.have_dev && !ran[PATH_DEVICE]) dev_skipped = 1;
    size_t host_sent = 0;
    for (int p = 0; p < NPATHS; p++) {
      if (ran[p] && (st = prepare_path(&b, p, count, &o, &wrong[p])) != CT_OK) fail(&comm, st);
      if (p == PATH_HOST) host_sent = b.sent;
    }
    if ((st = time_paths(&b, ran, count, &o, us)) != CT_OK) fail(&comm, st);
    if (comm.rank == 0) {
      printf("  %10zu %12zu %6s", count * sizeof(float), count, "float");
      for (int p = 0; p < NPATHS; p++) {
        if (!ran[p]) {
          printf(" %10s %7s %7s %6s", "-", "-", "-", "-");
          continue;
        }
        print_bw((double)(count * sizeof(float)), us[p], bus_factor);
        printf(" %6.0f", wrong[p]);
      }
      double ratio = us[PATH_HOST] > 0 ? us[PATH_MPI] / us[PATH_HOST] : 0;
      double dev_host = ran[PATH_DEVICE] && us[PATH_HOST] > 0 ? us[PATH_DEVICE] / us[PATH_HOST] : 0;
      if (n > 1) printf(" %9.2f", ratio);
      else printf(" %9s", "-");   // one rank: no bus, nothing to compare
      if (dev_host > 0) printf(" %9.2f", dev_host);
      else printf(" %9s", "-");
      ct_allreduce_algo ha;
      ct_allreduce_get_algo(b.har, &ha);
      printf(" %6s %12zu\n", ct_allreduce_algo_name(&ha, count, n), host_sent);
      fflush(stdout);
      if (n > 1 && !n_first) {   // the smallest size: latency
        first_bytes = count * sizeof(float), first_us[0] = us[PATH_HOST];
        first_us[1] = us[PATH_MPI], n_first = 1;
      }
      if (dev_host > 0 && count * sizeof(float) >= (size_t)16 << 20) {
        if (dev_host > dev_host_max) dev_host_max = dev_host;
        n_dev_host++;
      }
      if (n > 1 && count * sizeof(float) >= (size_t)64 << 10) {
        ratio_sum += ratio;
        nratio++;
        if (ratio < ratio_min) ratio_min = ratio;
      }
    }
    for (int p = 0; p < NPATHS; p++)
      if (ran[p]) {
        sum_bus[p] += (double)(count * sizeof(float)) / (us[p] * 1e-6) / 1e9 * bus_factor;
        nsizes[p]++;
        total_wrong += wrong[p];
      }
    if (bytes > o.max_bytes / (size_t)o.factor) break;
    bytes *= (size_t)o.factor;
  }
  if (comm.rank == 0) {
    if (dev_skipped)
      printf("# device path: sizes above %zu bytes skipped (the device's largest buffer)\n",
             b.dev_max_count * sizeof(float));
    printf("# Out of bounds values : %.0f %s\n", total_wrong, total_wrong ? "FAILED" : "OK");
    printf("# Avg bus bandwidth (GB/s):");
    for (int p = 0; p < NPATHS; p++)
      if (nsizes[p]) printf(" %s %.3f%s", path_names[p], sum_bus[p] / nsizes[p],
                            p + 1 < NPATHS ? "," : "");
    printf("\n");
    if (n_first)
      printf("# %zu bytes: host %.1f us, MPI_Allreduce %.1f us: host / MPI_Allreduce time "
             "%.2f\n", first_bytes, first_us[0], first_us[1],
             first_us[1] > 0 ? first_us[0] / first_us[1] : 0);
    if (nratio)
      printf("# host / MPI_Allreduce busbw, sizes >= 64 KiB: mean %.2f, min %.2f (%d sizes)\n",
             ratio_sum / nratio, ratio_min, nratio);
    if (n_dev_host)
      printf("# device / host time, sizes >= 16 MiB: max %.2f (%d sizes)\n", dev_host_max,
             n_dev_host);
  }
  ct_allreduce_free(b.har);
  if (b.ar) ct_allreduce_free(b.ar);
  if (b.dbuf) clReleaseMemObject(b.dbuf);
  if (b.have_dev) ct_device_close(&b.dev);
  free(b.host);
  free(b.pristine);
  ct_comm_free(&comm);
  return total_wrong > 0 ? 1 : 0;
}
