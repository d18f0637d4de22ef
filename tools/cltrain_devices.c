// cltrain-devices: lists the OpenCL platforms and devices of this node, with the indices that
// `--device` takes, and measures them.
//
//   cltrain-devices                 tree of platforms and devices
//   cltrain-devices --json          the same as JSON
//   cltrain-devices --bench         + host<->device bandwidth, SGEMM GFLOP/s (as cltrain runs it:
//                                   the device's GEMM tuning cache, or the defaults), kernel build time
//   cltrain-devices --device SPEC   only the device SPEC selects (see include/cltrain/device.h)
//   cltrain-devices --spec SPEC [--ranks N]
//                                   which device each local rank 0..N-1 of a node would take
//   cltrain-devices --version       cltrain's version, the OpenCL platforms', CLBlast's and MPI's
//                                   (--json carries the same under "versions")
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/blas.h"
#include "cltrain/device.h"
#include "cltrain/peak.h"
#include "cltrain/program.h"
#include "cltrain/timer.h"
#include "cltrain/tune.h"
#include "cltrain/version.h"

typedef struct {
  int ok;
  char error[256];
  double h2d_gbs, d2h_gbs;
  size_t bw_bytes;
  int ngemm;
  size_t gemm_n[4];
  double gemm_gflops[4];
  double build_s;
  double peak_gflops;     // the peak multiply-add rate (peak.h); 0 on a simulator
  char gemms[640];        // where the GEMM choices came from: the tuning cache, or defaults
} bench_result;

static void usage(FILE *f) {
  fprintf(f,
          "usage: cltrain-devices [--json] [--bench] [--device SPEC] [--version]\n"
          "       cltrain-devices --spec SPEC [--ranks N]\n"
          "Lists OpenCL platforms and devices with the indices --device takes.\n"
          "  --json          print JSON instead of a tree\n"
          "  --bench         measure host-to-device and device-to-host bandwidth (GB/s),\n"
          "                  SGEMM (GFLOP/s, with the device's GEMM tuning cache if there is one),\n"
          "                  the peak multiply-add rate (a kernel of float8 chains) and the\n"
          "                  build time of the embedded kernels\n"
          "  --device SPEC   only the device SPEC selects (default: all devices)\n"
          "  --spec SPEC     which device each local rank would take with --device SPEC, and\n"
          "                  why; a per-rank list (0=pocl,1=intel) is read with rank = local rank\n"
          "  --ranks N       local ranks to show with --spec (default: the devices it matches)\n"
          "  --version       cltrain's version and those of the OpenCL platforms, CLBlast and\n"
          "                  MPI found at run time (--json carries them under \"versions\")\n"
          "  -h, --help      this text\n"
          "\nSPEC is one of\n"
          "  auto            GPUs, else accelerators, else CPUs; simulators (Oclgrind) last\n"
          "  gpu, cpu, accelerator   devices of that type on any platform (no simulators)\n"
          "  P:D             platform P, device D (the indices listed here)\n"
          "  NAME            a case-insensitive substring of, first, a platform name; if no\n"
          "                  platform name holds it, a platform vendor; then a device name or\n"
          "                  vendor. intel, amd, nvidia, pocl, oclgrind, rusticl name platforms.\n"
          "                  Matches on several platforms are an error that lists them.\n"
          "  NAME:TYPE       the same among devices of TYPE gpu, cpu or accelerator (intel:gpu)\n"
          "Several devices match: local rank k takes match k mod count (round-robin).\n");
}

static double mib(cl_ulong b) { return (double)b / (1024.0 * 1024.0); }

// ---- measurements ---------------------------------------------------------------------------

static ct_status bench_bandwidth(ct_device *dev, bench_result *r) {
  size_t bytes = dev->info.simulator ? (size_t)16 << 20 : (size_t)128 << 20;
  if (bytes > dev->info.max_alloc / 2) bytes = (size_t)(dev->info.max_alloc / 2);
  r->bw_bytes = bytes;
  char *host = malloc(bytes);
  if (!host) return CT_FAIL(CT_ERR_NOMEM, "out of host memory (%zu bytes)", bytes);
  memset(host, 1, bytes);
  cl_int err;
  cl_mem buf = clCreateBuffer(dev->ctx, CL_MEM_READ_WRITE, bytes, NULL, &err);
  if (err != CL_SUCCESS) {
    free(host);
    CL_CHECK(err);
  }
  ct_status st = CT_OK;
  double best_h2d = 1e30, best_d2h = 1e30;
  for (int rep = 0; rep < 4; rep++) {   // first round warms up; best of the rest
    double t0 = ct_now();
    CL_GOTO(clEnqueueWriteBuffer(dev->queue, buf, CL_TRUE, 0, bytes, host, 0, NULL, NULL), st, out);
    double t1 = ct_now();
    CL_GOTO(clEnqueueReadBuffer(dev->queue, buf, CL_TRUE, 0, bytes, host, 0, NULL, NULL), st, out);
    double t2 = ct_now();
    if (rep > 0) {
      if (t1 - t0 < best_h2d) best_h2d = t1 - t0;
      if (t2 - t1 < best_d2h) best_d2h = t2 - t1;
    }
  }
  r->h2d_gbs = (double)bytes / best_h2d / 1e9;
  r->d2h_gbs = (double)bytes / best_d2h / 1e9;
out:
  clReleaseMemObject(buf);
  free(host);
  return st;
}

static ct_status bench_gemm(ct_device *dev, bench_result *r) {
  static const size_t real_sizes[] = {128, 512, 1024};
  static const size_t sim_sizes[] = {32, 64};
  const size_t *sizes = dev->info.simulator ? sim_sizes : real_sizes;
  int nsizes = dev->info.simulator ? 2 : 3;
  for (int s = 0; s < nsizes; s++) {
    size_t n = sizes[s];
    size_t bytes = n * n * sizeof(float);
    float *h = malloc(bytes);
    if (!h) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
    for (size_t i = 0; i < n * n; i++) h[i] = (float)((i * 7) % 13) / 13.0f;
    cl_int err;
    cl_mem a = NULL, b = NULL, c = NULL;
    ct_status st = CT_OK;
    CL_GOTO((a = clCreateBuffer(dev->ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, bytes, h, &err), err), st, out);
    CL_GOTO((b = clCreateBuffer(dev->ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, bytes, h, &err), err), st, out);
    CL_GOTO((c = clCreateBuffer(dev->ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, bytes, h, &err), err), st, out);
    // one untimed call builds CLBlast's kernels; then repeat until at least 0.3 s has passed
    CT_GOTO(ct_gemm(dev, "bench", 0, 0, n, n, n, 1.0f, a, 0, n, b, 0, n, 0.0f, c, 0, n), st, out);
    CL_GOTO(clFinish(dev->queue), st, out);
    int reps = 0;
    double t0 = ct_now(), t;
    do {
      CT_GOTO(ct_gemm(dev, "bench", 0, 0, n, n, n, 1.0f, a, 0, n, b, 0, n, 0.0f, c, 0, n), st, out);
      CL_GOTO(clFinish(dev->queue), st, out);
      reps++;
      t = ct_now() - t0;
    } while (t < 0.3 && reps < 100);
    r->gemm_n[r->ngemm] = n;
    r->gemm_gflops[r->ngemm] = 2.0 * (double)n * (double)n * (double)n * reps / t / 1e9;
    r->ngemm++;
  out:
    if (a) clReleaseMemObject(a);
    if (b) clReleaseMemObject(b);
    if (c) clReleaseMemObject(c);
    free(h);
    if (st != CT_OK) return st;
  }
  return CT_OK;
}

// Time to build every embedded kernel family (PoCL caches binaries on disk: a second run is
// faster).
static ct_status bench_build(ct_device *dev, bench_result *r) {
  double t0 = ct_now();
  for (int i = 0; i < ct_cl_source_count; i++) {
    cl_program p;
    CT_TRY(ct_program_build(dev, ct_cl_sources[i].name, "", &p));
  }
  r->build_s = ct_now() - t0;
  return CT_OK;
}

static void bench_device(const ct_device_info *info, bench_result *r) {
  memset(r, 0, sizeof *r);
  ct_device dev;
  ct_error_clear();
  ct_status st = ct_device_open(info, &dev);
  if (st == CT_OK) {
    int status;
    char warning[512];
    st = ct_tune_load(&dev, &status, warning, sizeof warning);   // as cltrain would run
    snprintf(r->gemms, sizeof r->gemms, "%s",
             status > 0 ? dev.blas->source : status < 0 ? warning : "defaults (no tuning cache)");
  }
  if (st == CT_OK) {
    st = bench_build(&dev, r);
    if (st == CT_OK) st = bench_bandwidth(&dev, r);
    if (st == CT_OK) st = bench_gemm(&dev, r);
    if (st == CT_OK) st = ct_device_peak_gflops(&dev, 12, &r->peak_gflops);
  }
  if (dev.ctx) {
    ct_device_close(&dev);
  }
  r->ok = st == CT_OK;
  if (!r->ok) snprintf(r->error, sizeof r->error, "%s", ct_error_text());
  ct_error_clear();
}

// ---- printing -------------------------------------------------------------------------------

static void json_str(const char *s) {
  putchar('"');
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') printf("\\%c", ch);
    else if (ch < 0x20) printf("\\u%04x", ch);
    else putchar(ch);
  }
  putchar('"');
}

static void print_tree_device(const ct_device_info *d, const bench_result *r, int last) {
  const char *b = last ? "    " : " |  ";
  printf(" %s-- %d:%d  %s\n", last ? "`" : "|", d->platform, d->index, d->name);
  printf("%s     vendor %s, type %s%s\n", b, d->vendor, ct_device_type_name(d->type),
         d->simulator ? " (simulator)" : "");
  printf("%s     %s, driver %s, %s\n", b, d->version, d->driver, d->c_version);
  printf("%s     %u compute units at %u MHz, max work-group %zu\n", b, d->compute_units,
         d->clock_mhz, d->max_wg);
  printf("%s     global memory %.0f MiB, local memory %.0f KiB, max allocation %.0f MiB\n", b,
         mib(d->global_mem), (double)d->local_mem / 1024.0, mib(d->max_alloc));
  printf("%s     fp16 %s, fp64 %s, correctly rounded sqrt %s\n", b, d->fp16 ? "yes" : "no",
         d->fp64 ? "yes" : "no", d->correct_sqrt ? "yes" : "no");
  if (!r) return;
  if (!r->ok) {
    printf("%s     bench: failed: %s\n", b, r->error);
    return;
  }
  printf("%s     bench: host->device %.2f GB/s, device->host %.2f GB/s (%zu MiB)\n", b, r->h2d_gbs,
         r->d2h_gbs, r->bw_bytes >> 20);
  printf("%s     bench: SGEMM", b);
  for (int i = 0; i < r->ngemm; i++)
    printf("%s %zu^3 %.3g GFLOP/s", i ? "," : "", r->gemm_n[i], r->gemm_gflops[i]);
  printf(" (GEMMs: %s)\n", r->gemms);
  if (r->peak_gflops > 0)
    printf("%s     bench: peak multiply-add rate %.3g GFLOP/s (float8 chains; SGEMM 1024^3 at "
           "%.0f %% of it)\n", b, r->peak_gflops,
           r->ngemm ? 100.0 * r->gemm_gflops[r->ngemm - 1] / r->peak_gflops : 0.0);
  printf("%s     bench: kernel build %.3f s (%d families)\n", b, r->build_s, ct_cl_source_count);
}

static void print_json_device(const ct_device_info *d, const bench_result *r) {
  printf("{\"index\": \"%d:%d\", \"platform\": %d, \"device\": %d, \"name\": ", d->platform,
         d->index, d->platform, d->index);
  json_str(d->name);
  printf(", \"vendor\": ");
  json_str(d->vendor);
  printf(", \"platform_name\": ");
  json_str(d->platform_name);
  printf(", \"type\": \"%s\", \"simulator\": %s, \"version\": ", ct_device_type_name(d->type),
         d->simulator ? "true" : "false");
  json_str(d->version);
  printf(", \"driver\": ");
  json_str(d->driver);
  printf(", \"opencl_c\": ");
  json_str(d->c_version);
  printf(", \"compute_units\": %u, \"clock_mhz\": %u, \"global_mem\": %llu, \"local_mem\": %llu, "
         "\"max_alloc\": %llu, \"max_work_group\": %zu, \"fp16\": %s, \"fp64\": %s, "
         "\"correctly_rounded_sqrt\": %s",
         d->compute_units, d->clock_mhz, (unsigned long long)d->global_mem,
         (unsigned long long)d->local_mem, (unsigned long long)d->max_alloc, d->max_wg,
         d->fp16 ? "true" : "false", d->fp64 ? "true" : "false",
         d->correct_sqrt ? "true" : "false");
  if (r) {
    printf(", \"bench\": {\"ok\": %s", r->ok ? "true" : "false");
    if (!r->ok) {
      printf(", \"error\": ");
      json_str(r->error);
    } else {
      printf(", \"h2d_gbs\": %.3f, \"d2h_gbs\": %.3f, \"bytes\": %zu, \"build_s\": %.4f, "
             "\"peak_gflops\": %.6g, \"gemms\": ",
             r->h2d_gbs, r->d2h_gbs, r->bw_bytes, r->build_s, r->peak_gflops);
      json_str(r->gemms);
      printf(", \"sgemm\": [");
      for (int i = 0; i < r->ngemm; i++)
        printf("%s{\"n\": %zu, \"gflops\": %.6g}", i ? ", " : "", r->gemm_n[i], r->gemm_gflops[i]);
      printf("]");
    }
    printf("}");
  }
  printf("}");
}

// --spec SPEC: the device of each local rank 0..ranks-1 (rank = local rank for per-rank lists).
static ct_status show_spec(const ct_device_list *list, const char *spec, int ranks) {
  int *match = malloc((size_t)(list->count > 0 ? list->count : 1) * sizeof *match);
  if (!match) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  ct_status st = CT_OK;
  char mine[256], how[128];
  int n = 0, plain = !strchr(spec, '=');
  if (plain) {   // one spec for all: say how it matched
    CT_GOTO(ct_device_spec_for_rank(spec, 0, mine, sizeof mine), st, out);
    CT_GOTO(ct_device_match(list, mine, match, &n, how, sizeof how), st, out);
    printf("--device %s: %d device%s (%s)\n", spec, n, n == 1 ? "" : "s", how);
    if (!ranks) ranks = n;
  } else if (!ranks) {
    ranks = 1;
    for (const char *p = spec; *p; p++) ranks += *p == ',';
  }
  for (int r = 0; r < ranks; r++) {
    CT_GOTO(ct_device_spec_for_rank(spec, r, mine, sizeof mine), st, out);
    CT_GOTO(ct_device_match(list, mine, match, &n, how, sizeof how), st, out);
    const ct_device_info *d = &list->dev[match[r % n]];
    printf("local rank %d: %d:%d %s [%s] (%s)", r, d->platform, d->index, d->name,
           d->platform_name, d->simulator ? "simulator" : ct_device_type_name(d->type));
    if (!plain) printf("  spec %s, %s", mine, how);
    printf("\n");
  }
out:
  free(match);
  return st;
}

int main(int argc, char **argv) {
  int json = 0, bench = 0, ranks = 0;
  const char *spec = NULL, *show = NULL;
  static const struct option opts[] = {{"json", no_argument, 0, 'j'},
                                       {"bench", no_argument, 0, 'b'},
                                       {"device", required_argument, 0, 'd'},
                                       {"spec", required_argument, 0, 's'},
                                       {"ranks", required_argument, 0, 'r'},
                                       {"help", no_argument, 0, 'h'},
                                       {"version", no_argument, 0, 'V'},
                                       {0, 0, 0, 0}};
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    switch (c) {
      case 'j': json = 1; break;
      case 'b': bench = 1; break;
      case 'd': spec = optarg; break;
      case 's': show = optarg; break;
      case 'r': {
        char *end;
        long v = strtol(optarg, &end, 10);
        if (*optarg < '0' || *optarg > '9' || *end || v < 1 || v > 4096) {
          fprintf(stderr, "cltrain-devices: --ranks: expected a number of local ranks in "
                  "1..4096, got '%s'\n", optarg);
          return 2;
        }
        ranks = (int)v;
        break;
      }
      case 'h': usage(stdout); return 0;
      case 'V': {
        ct_status vst = ct_version_print(stdout, "cltrain-devices");
        if (vst != CT_OK) fprintf(stderr, "cltrain-devices: %s\n", ct_error_text());
        return ct_exit_code(vst);
      }
      case ':':
        fprintf(stderr, "cltrain-devices: %s needs a value (see --help)\n", argv[optind - 1]);
        return 2;
      default:
        fprintf(stderr, "cltrain-devices: unknown option '%s' (see --help)\n", argv[optind - 1]);
        return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "cltrain-devices: unexpected argument '%s' (see --help)\n", argv[optind]);
    return 2;
  }

  if (ranks && !show) {
    fprintf(stderr, "cltrain-devices: --ranks: needs --spec SPEC\n");
    return 2;
  }
  if (show && (spec || bench || json)) {
    fprintf(stderr, "cltrain-devices: --spec: not with --device, --bench or --json\n");
    return 2;
  }
  ct_device_list list;
  ct_status st = ct_device_list_init(&list);
  if (st != CT_OK) {
    fprintf(stderr, "cltrain-devices: %s\n", ct_error_text());
    return 1;
  }
  if (show) {
    st = show_spec(&list, show, ranks);
    if (st != CT_OK) fprintf(stderr, "cltrain-devices: %s\n", ct_error_text());
    ct_device_list_free(&list);
    return ct_exit_code(st);
  }
  int only = -1;
  if (spec) {
    char mine[256];
    st = ct_device_spec_for_rank(spec, 0, mine, sizeof mine);
    if (st == CT_OK) st = ct_device_select(&list, mine, 0, &only);
    if (st != CT_OK) {
      fprintf(stderr, "cltrain-devices: %s\n", ct_error_text());
      ct_device_list_free(&list);
      return ct_exit_code(st);
    }
  }
  int failed_versions = 0;
  bench_result *res = NULL;
  if (bench && list.count) {
    res = calloc((size_t)list.count, sizeof *res);
    if (!res) { fprintf(stderr, "cltrain-devices: out of host memory\n"); return 1; }
    for (int i = 0; i < list.count; i++)
      if (only < 0 || only == i) {
        if (!json) fprintf(stderr, "measuring %d:%d %s ...\n", list.dev[i].platform, list.dev[i].index, list.dev[i].name);
        bench_device(&list.dev[i], &res[i]);
      }
  }

  if (json) {
    printf("{\"platforms\": [");
    for (int p = 0; p < list.platform_count; p++) {
      printf("%s\n  {\"index\": %d, \"name\": ", p ? "," : "", p);
      json_str(list.platform_names[p]);
      printf(", \"devices\": [");
      int first = 1;
      for (int i = 0; i < list.count; i++) {
        if (list.dev[i].platform != p || (only >= 0 && only != i)) continue;
        printf("%s\n    ", first ? "" : ",");
        print_json_device(&list.dev[i], res ? &res[i] : NULL);
        first = 0;
      }
      printf("]}");
    }
    printf("\n], \"device_count\": %d", only >= 0 ? 1 : list.count);
    // the same versions as --version: cltrain's, and those of what this node runs it on
    ct_versions v;
    ct_json vj;
    ct_status vst = ct_versions_init(&v);
    ct_json_begin(&vj);
    ct_versions_json(&vj, &v);
    ct_versions_free(&v);
    if (ct_json_end(&vj) == CT_OK) printf(", \"versions\": %s", vj.buf);
    else vst = CT_ERR_NOMEM;
    free(vj.buf);
    printf("}\n");
    if (vst != CT_OK) {
      fprintf(stderr, "cltrain-devices: versions: %s\n", ct_error_text());
      failed_versions = 1;
    }
  } else if (list.platform_count == 0) {
    printf("No OpenCL platforms found. The ICD loader reads /etc/OpenCL/vendors/*.icd (or the\n"
           "folder named by OCL_ICD_VENDORS): install a driver's ICD package, e.g.\n"
           "pocl-opencl-icd for CPUs, or the GPU vendor's OpenCL driver.\n");
  } else {
    for (int p = 0; p < list.platform_count; p++) {
      int ndev = 0, last = -1;
      for (int i = 0; i < list.count; i++)
        if (list.dev[i].platform == p && (only < 0 || only == i)) { ndev++; last = i; }
      if (only >= 0 && ndev == 0) continue;
      printf("Platform %d: %s%s\n", p, list.platform_names[p], ndev ? "" : " (no devices)");
      for (int i = 0; i < list.count; i++)
        if (list.dev[i].platform == p && (only < 0 || only == i))
          print_tree_device(&list.dev[i], res ? &res[i] : NULL, i == last);
    }
  }
  int failed = failed_versions;
  if (res)
    for (int i = 0; i < list.count; i++)
      if ((only < 0 || only == i) && !res[i].ok) failed = 1;
  free(res);
  ct_device_list_free(&list);
  return failed;
}
