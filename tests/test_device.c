// test_device.c: the --device spec (parsing, per-rank lists, selection) over a synthetic device
// list, and selection/opening over the platforms actually present (PoCL and Oclgrind in CI).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/device.h"
#include "testutil.h"

// Synthetic node: an NVIDIA GPU x2, an Intel CPU, Oclgrind (reports every type).
static ct_device_list fake;
static void fake_init(void) {
  static ct_device_info d[5];
  memset(d, 0, sizeof d);
  const struct { int p, i; const char *pname, *name, *vendor; cl_device_type t; int sim; } s[] = {
      {0, 0, "NVIDIA CUDA", "NVIDIA H100", "NVIDIA Corporation", CL_DEVICE_TYPE_GPU, 0},
      {0, 1, "NVIDIA CUDA", "NVIDIA H100", "NVIDIA Corporation", CL_DEVICE_TYPE_GPU, 0},
      {1, 0, "Intel(R) OpenCL", "Intel(R) Xeon(R)", "Intel(R) Corporation", CL_DEVICE_TYPE_CPU, 0},
      {2, 0, "Oclgrind", "Oclgrind Simulator", "University of Bristol",
       CL_DEVICE_TYPE_GPU | CL_DEVICE_TYPE_CPU | CL_DEVICE_TYPE_ACCELERATOR, 1},
  };
  for (int k = 0; k < 4; k++) {
    d[k].platform = s[k].p;
    d[k].index = s[k].i;
    strcpy(d[k].platform_name, s[k].pname);
    strcpy(d[k].platform_vendor, s[k].vendor);
    strcpy(d[k].name, s[k].name);
    strcpy(d[k].vendor, s[k].vendor);
    d[k].type = s[k].t;
    d[k].simulator = s[k].sim;
  }
  fake.dev = d;
  fake.count = 4;
  fake.platform_count = 3;
}

static int pick(const char *spec, int local_rank) {
  int idx = -1;
  ct_error_clear();
  ct_status st = ct_device_select(&fake, spec, local_rank, &idx);
  return st == CT_OK ? idx : -(int)st;
}

START_TEST(select_by_spec) {
  fake_init();
  ck_assert_int_eq(pick("auto", 0), 0);
  ck_assert_int_eq(pick("auto", 1), 1);        // round-robin over the GPUs
  ck_assert_int_eq(pick("auto", 2), 0);
  ck_assert_int_eq(pick("gpu", 3), 1);
  ck_assert_int_eq(pick("cpu", 0), 2);         // the simulator is not a "cpu"
  ck_assert_int_eq(pick("1:0", 5), 2);         // P:D ignores the local rank
  ck_assert_int_eq(pick("2:0", 0), 3);
  ck_assert_int_eq(pick("NVIDIA", 1), 1);      // case-insensitive substring
  ck_assert_int_eq(pick("intel", 0), 2);
  ck_assert_int_eq(pick("oclgrind", 0), 3);
  ck_assert_int_eq(pick("bristol", 0), 3);     // vendor
  ck_assert_int_eq(pick("accelerator", 0), -CT_ERR_NOTFOUND);
  ck_assert_int_eq(pick("nosuchthing", 0), -CT_ERR_NOTFOUND);
  // the error lists what exists
  ck_assert_ptr_nonnull(strstr(ct_error_text(), "0:1 NVIDIA H100 [NVIDIA CUDA]"));
  ck_assert_ptr_nonnull(strstr(ct_error_text(), "2:0 Oclgrind Simulator"));
  ck_assert_int_eq(pick("3:0", 0), -CT_ERR_NOTFOUND);
  ck_assert_int_eq(pick("1:", 0), -CT_ERR_USAGE);
  ck_assert_int_eq(pick(":1", 0), -CT_ERR_USAGE);
  ck_assert_int_eq(pick("a:b", 0), -CT_ERR_USAGE);
  ck_assert_int_eq(pick("", 0), -CT_ERR_USAGE);
}
END_TEST

// ---- hosts of every vendor: a name selects the platform it names first ----------------------

typedef struct {
  const char *pname, *pvendor, *name, *vendor;
  cl_device_type t;
} fake_dev;

// A synthetic host: one device per entry, platform p = entry index unless the entry repeats the
// platform name of the one before (then the same platform, the next device index).
static ct_device_info host_devs[8];
static ct_device_list host;
static void host_init(const fake_dev *f, int n) {
  memset(host_devs, 0, sizeof host_devs);
  int p = -1, idx = 0;
  for (int k = 0; k < n; k++) {
    ct_device_info *d = &host_devs[k];
    if (k > 0 && !strcmp(f[k].pname, f[k - 1].pname)) idx++;
    else p++, idx = 0;
    d->platform = p;
    d->index = idx;
    snprintf(d->platform_name, sizeof d->platform_name, "%s", f[k].pname);
    snprintf(d->platform_vendor, sizeof d->platform_vendor, "%s", f[k].pvendor);
    snprintf(d->name, sizeof d->name, "%s", f[k].name);
    snprintf(d->vendor, sizeof d->vendor, "%s", f[k].vendor);
    d->type = f[k].t;
    d->simulator = strstr(f[k].pname, "Oclgrind") != NULL;
  }
  host.dev = host_devs;
  host.count = n;
  host.platform_count = p + 1;
}

static int on_host(const char *spec, int local_rank) {
  int idx = -1;
  ct_error_clear();
  ct_status st = ct_device_select(&host, spec, local_rank, &idx);
  return st == CT_OK ? idx : -(int)st;
}

static const fake_dev POCL_INTEL = {"Portable Computing Language", "The pocl project",
                                    "pthread-skylake-avx512-Intel(R) Xeon(R) Processor @ 2.80GHz",
                                    "GenuineIntel", CL_DEVICE_TYPE_CPU};
static const fake_dev POCL_AMD = {"Portable Computing Language", "The pocl project",
                                  "pthread-znver3-AMD EPYC 7763 64-Core Processor",
                                  "AuthenticAMD", CL_DEVICE_TYPE_CPU};
static const fake_dev OCLGRIND = {"Oclgrind", "University of Bristol", "Oclgrind Simulator",
                                  "University of Bristol",
                                  CL_DEVICE_TYPE_GPU | CL_DEVICE_TYPE_CPU |
                                      CL_DEVICE_TYPE_ACCELERATOR};

// An Intel CPU host: PoCL, Intel's CPU runtime, an Intel GPU, Oclgrind.
START_TEST(intel_host) {
  const fake_dev f[] = {
      POCL_INTEL,
      {"Intel(R) OpenCL", "Intel(R) Corporation", "Intel(R) Xeon(R) Processor @ 2.80GHz",
       "Intel(R) Corporation", CL_DEVICE_TYPE_CPU},
      {"Intel(R) OpenCL Graphics", "Intel(R) Corporation", "Intel(R) Arc(TM) A770 Graphics",
       "Intel(R) Corporation", CL_DEVICE_TYPE_GPU},
      OCLGRIND};
  host_init(f, 4);
  ck_assert_int_eq(on_host("pocl", 0), 0);
  ck_assert_int_eq(on_host("pocl", 1), 0);
  ck_assert_int_eq(on_host("intel:cpu", 0), 1);    // Intel's runtime, not PoCL's "...Intel(R)..."
  ck_assert_int_eq(on_host("intel:cpu", 1), 1);
  ck_assert_int_eq(on_host("intel:gpu", 0), 2);
  ck_assert_int_eq(on_host("Intel(R) OpenCL Graphics", 0), 2);
  ck_assert_int_eq(on_host("graphics", 0), 2);
  ck_assert_int_eq(on_host("oclgrind", 0), 3);
  ck_assert_int_eq(on_host("auto", 0), 2);
  ck_assert_int_eq(on_host("cpu", 0), 0);          // a type: every platform's, round-robin
  ck_assert_int_eq(on_host("cpu", 1), 1);
  ck_assert_int_eq(on_host("1:0", 0), 1);
  // two Intel platforms: listed, never picked
  ck_assert_int_eq(on_host("intel", 0), -CT_ERR_USAGE);
  ck_assert_ptr_nonnull(strstr(ct_error_text(), "1:0 Intel(R) Xeon(R) Processor @ 2.80GHz "
                                                "[Intel(R) OpenCL] (CPU)"));
  ck_assert_ptr_nonnull(strstr(ct_error_text(), "2:0 Intel(R) Arc(TM) A770 Graphics "
                                                "[Intel(R) OpenCL Graphics] (GPU)"));
  ck_assert_ptr_null(strstr(ct_error_text(), "Portable"));
  ck_assert_int_eq(on_host("xeon", 0), -CT_ERR_USAGE);   // PoCL's and Intel's device names
  ck_assert_int_eq(on_host("nvidia", 0), -CT_ERR_NOTFOUND);
  ck_assert_int_eq(on_host("intel:fpga", 0), -CT_ERR_USAGE);
  ck_assert_int_eq(on_host(":gpu", 0), -CT_ERR_USAGE);
}
END_TEST

// An AMD CPU host: PoCL and AMD's GPU platform with two GPUs.
START_TEST(amd_host) {
  const fake_dev f[] = {
      POCL_AMD,
      {"AMD Accelerated Parallel Processing", "Advanced Micro Devices, Inc.",
       "gfx90a:sramecc+:xnack-", "Advanced Micro Devices, Inc.", CL_DEVICE_TYPE_GPU},
      {"AMD Accelerated Parallel Processing", "Advanced Micro Devices, Inc.",
       "gfx90a:sramecc+:xnack-", "Advanced Micro Devices, Inc.", CL_DEVICE_TYPE_GPU}};
  host_init(f, 3);
  ck_assert_int_eq(host.platform_count, 2);
  ck_assert_int_eq(on_host("amd", 0), 1);          // AMD's platform, not PoCL's "...AMD EPYC..."
  ck_assert_int_eq(on_host("amd", 1), 2);          // round-robin within the platform
  ck_assert_int_eq(on_host("amd", 2), 1);
  ck_assert_int_eq(on_host("AMD:gpu", 1), 2);
  ck_assert_int_eq(on_host("pocl", 1), 0);
  ck_assert_int_eq(on_host("epyc", 0), 0);         // a device name of one platform
  ck_assert_int_eq(on_host("auto", 1), 2);
  ck_assert_int_eq(on_host("amd:cpu", 0), 0);      // no AMD-platform CPU: PoCL's by device name
  ck_assert_int_eq(on_host("intel", 0), -CT_ERR_NOTFOUND);
}
END_TEST

// An NVIDIA GPU beside PoCL on an Intel CPU.
START_TEST(nvidia_host) {
  const fake_dev f[] = {
      {"NVIDIA CUDA", "NVIDIA Corporation", "NVIDIA H100 80GB HBM3", "NVIDIA Corporation",
       CL_DEVICE_TYPE_GPU},
      POCL_INTEL};
  host_init(f, 2);
  ck_assert_int_eq(on_host("nvidia", 0), 0);
  ck_assert_int_eq(on_host("cuda", 3), 0);
  ck_assert_int_eq(on_host("pocl", 0), 1);
  ck_assert_int_eq(on_host("intel", 0), 1);        // the one Intel device is PoCL's
  ck_assert_int_eq(on_host("auto", 0), 0);
  ck_assert_int_eq(on_host("cpu", 0), 1);
  ck_assert_int_eq(on_host("nvidia:cpu", 0), -CT_ERR_NOTFOUND);
}
END_TEST

// Mesa's Rusticl on an AMD GPU beside PoCL on an AMD CPU.
START_TEST(rusticl_host) {
  const fake_dev f[] = {
      POCL_AMD,
      {"rusticl", "Mesa/X.org", "AMD Radeon RX 7900 XTX (radeonsi, navi31, LLVM 15.0.7)", "AMD",
       CL_DEVICE_TYPE_GPU}};
  host_init(f, 2);
  ck_assert_int_eq(on_host("rusticl", 0), 1);
  ck_assert_int_eq(on_host("mesa", 0), 1);
  ck_assert_int_eq(on_host("pocl", 0), 0);
  ck_assert_int_eq(on_host("radeon", 0), 1);
  ck_assert_int_eq(on_host("amd:gpu", 0), 1);
  ck_assert_int_eq(on_host("amd", 0), -CT_ERR_USAGE);   // the GPU and PoCL's CPU: named, not picked
  ck_assert_ptr_nonnull(strstr(ct_error_text(), "[rusticl]"));
  ck_assert_ptr_nonnull(strstr(ct_error_text(), "[Portable Computing Language]"));
  ck_assert_ptr_null(strchr(ct_error_text(), '\n'));   // one line
  // how a spec was matched, for cltrain-devices --spec
  int m[2], n = 0;
  char how[128];
  ck_assert_ct(ct_device_match(&host, "mesa", m, &n, how, sizeof how));
  ck_assert_int_eq(n, 1);
  ck_assert_str_eq(how, "by platform vendor");
}
END_TEST

START_TEST(select_on_empty_node) {
  ct_device_list none = {0};
  int idx = -1;
  ct_error_clear();
  ck_assert_int_eq(ct_device_select(&none, "auto", 0, &idx), CT_ERR_NOTFOUND);
  ck_assert_ptr_nonnull(strstr(ct_error_text(), "no OpenCL devices"));
}
END_TEST

static const char *for_rank(const char *spec, int rank) {
  static char out[64];
  ct_error_clear();
  ct_status st = ct_device_spec_for_rank(spec, rank, out, sizeof out);
  return st == CT_OK ? out : st == CT_ERR_USAGE ? "<usage>" : "<other>";
}

START_TEST(per_rank_specs) {
  ck_assert_str_eq(for_rank("gpu", 3), "gpu");
  ck_assert_str_eq(for_rank("0=pocl,1=oclgrind", 0), "pocl");
  ck_assert_str_eq(for_rank("0=pocl,1=oclgrind", 1), "oclgrind");
  ck_assert_str_eq(for_rank("0=pocl,1=oclgrind", 2), "auto");   // not named: auto
  ck_assert_str_eq(for_rank("1=0:0,cpu", 0), "cpu");            // a bare entry is the default
  ck_assert_str_eq(for_rank("1=0:0,cpu", 1), "0:0");
  ck_assert_str_eq(for_rank("", 0), "<usage>");
  ck_assert_str_eq(for_rank("0=pocl,,1=x", 0), "<usage>");
  ck_assert_str_eq(for_rank("x=pocl", 0), "<usage>");
  ck_assert_str_eq(for_rank("0=", 0), "<usage>");
  ck_assert_str_eq(for_rank("gpu,cpu", 0), "<usage>");
}
END_TEST

// ---- the devices present ---------------------------------------------------------------------

START_TEST(enumerate_and_open_every_device) {
  ct_device_list list;
  ct_test_devices(&list);
  for (int i = 0; i < list.count; i++) {
    const ct_device_info *d = &list.dev[i];
    ck_assert_int_ge(d->platform, 0);
    ck_assert_int_lt(d->platform, list.platform_count);
    ck_assert_int_gt(d->compute_units, 0);
    ck_assert_uint_gt(d->global_mem, 0);
    ck_assert_uint_gt(d->max_alloc, 0);
    char spec[32];
    snprintf(spec, sizeof spec, "%d:%d", d->platform, d->index);
    int idx = -1;
    ck_assert_ct(ct_device_select(&list, spec, 0, &idx));
    ck_assert_int_eq(idx, i);
    ct_device dev;
    ck_assert_ct(ct_device_open(d, &dev));
    ck_assert_ptr_nonnull(dev.ctx);
    ck_assert_ptr_nonnull(dev.queue);
    ct_device_close(&dev);
  }
  ct_device_list_free(&list);
}
END_TEST

// CI has PoCL and Oclgrind: both must be selectable by name, and auto must not pick the
// simulator while a real device exists.
START_TEST(pocl_and_oclgrind_selectable) {
  ct_device_list list;
  ct_test_devices(&list);
  int pocl = -1, ocl = -1, any = -1;
  if (ct_device_select(&list, "pocl", 0, &pocl) != CT_OK ||
      ct_device_select(&list, "oclgrind", 0, &ocl) != CT_OK) {
    ct_device_list_free(&list);
    fprintf(stderr, "SKIP: PoCL or Oclgrind not present\n");
    exit(CT_TEST_SKIP);
  }
  ck_assert_ptr_nonnull(strstr(list.dev[pocl].platform_name, "Portable"));
  ck_assert_int_eq(list.dev[ocl].simulator, 1);
  ck_assert_ct(ct_device_select(&list, "auto", 0, &any));
  ck_assert_int_eq(list.dev[any].simulator, 0);
  ct_device dev;
  ck_assert_ct(ct_device_open_spec("0=oclgrind,pocl", 0, 0, &dev));
  ck_assert_int_eq(dev.info.simulator, 1);
  ct_device_close(&dev);
  ck_assert_ct(ct_device_open_spec("0=oclgrind,pocl", 1, 0, &dev));
  ck_assert_int_eq(dev.info.simulator, 0);
  ct_device_close(&dev);
  ct_error_clear();
  ck_assert_int_eq(ct_device_open_spec("nosuchthing", 0, 0, &dev), CT_ERR_NOTFOUND);
  ct_device_list_free(&list);
}
END_TEST

// Transparent huge pages on this kernel, for madvise'd memory (the sysfs file says so).
static int thp_madvise(void) {
  FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
  char line[128] = "";
  if (!f) return 0;
  if (!fgets(line, sizeof line, f)) line[0] = 0;
  fclose(f);
  return strstr(line, "[always]") || strstr(line, "[madvise]");
}

// ct_device_buffer on every device, with huge pages and with CLTRAIN_HUGEPAGES=0: what is
// written reads back, through a map and through reads and writes, at sizes below, at and above
// CT_HUGE_MIN; with huge pages (where the kernel offers them), a large buffer on a device that
// shares host memory is the 2 MiB-aligned host memory it advised (the map of a
// CL_MEM_USE_HOST_PTR buffer returns it).
START_TEST(device_buffers) {
  ct_device_list list;
  ct_test_devices(&list);
  const size_t sizes[] = {4096, CT_HUGE_MIN, 3 * CT_HUGE_MIN + 12};
  int thp = thp_madvise(), checked = 0;
  for (int off = 0; off < 2; off++) {
    if (off) setenv("CLTRAIN_HUGEPAGES", "0", 1);
    for (int i = 0; i < list.count; i++) {
      ct_device dev;
      if (list.dev[i].simulator) continue;   // (Oclgrind: ordinary buffers, and slow)
      ck_assert_ct(ct_device_open(&list.dev[i], &dev));
      for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k] / sizeof(float);
        float *h = malloc(n * sizeof *h), *back = malloc(n * sizeof *back);
        ck_assert_ptr_nonnull(h);
        ck_assert_ptr_nonnull(back);
        for (size_t j = 0; j < n; j++) h[j] = (float)j * 0.5f - 3.0f;
        cl_int err = CL_SUCCESS;
        cl_mem m = ct_device_buffer(&dev, n * sizeof(float), &err);
        ck_assert_int_eq(err, CL_SUCCESS);
        ck_assert_ptr_nonnull(m);
        ck_assert_int_eq(clEnqueueWriteBuffer(dev.queue, m, CL_TRUE, 0, n * sizeof(float), h, 0,
                                              NULL, NULL), CL_SUCCESS);
        float *p = clEnqueueMapBuffer(dev.queue, m, CL_TRUE, CL_MAP_READ | CL_MAP_WRITE, 0,
                                      n * sizeof(float), 0, NULL, NULL, &err);
        ck_assert_int_eq(err, CL_SUCCESS);
        ck_assert_int_eq(memcmp(p, h, n * sizeof(float)), 0);
        if (!off && thp && dev.info.host_unified && n * sizeof(float) >= CT_HUGE_MIN) {
          ck_assert_msg(((uintptr_t)p & (((uintptr_t)2 << 20) - 1)) == 0,
                        "%s: a %zu-byte buffer is not on the 2 MiB-aligned host memory",
                        dev.info.name, n * sizeof(float));
          checked++;
        }
        p[n - 1] = 42.0f;   // through the map, back through a read
        ck_assert_int_eq(clEnqueueUnmapMemObject(dev.queue, m, p, 0, NULL, NULL), CL_SUCCESS);
        ck_assert_int_eq(clEnqueueReadBuffer(dev.queue, m, CL_TRUE, 0, n * sizeof(float), back, 0,
                                             NULL, NULL), CL_SUCCESS);
        h[n - 1] = 42.0f;
        ck_assert_int_eq(memcmp(back, h, n * sizeof(float)), 0);
        ck_assert_int_eq(clReleaseMemObject(m), CL_SUCCESS);   // frees the host memory (LSan)
        free(h);
        free(back);
      }
      ct_device_close(&dev);
    }
  }
  unsetenv("CLTRAIN_HUGEPAGES");
  if (thp) printf("device_buffers: %d large buffers on huge-page host memory\n", checked);
  ct_device_list_free(&list);
}
END_TEST

int main(void) {
  Suite *s = suite_create("device");
  TCase *spec = tcase_create("spec");
  tcase_add_test(spec, select_by_spec);
  tcase_add_test(spec, select_on_empty_node);
  tcase_add_test(spec, per_rank_specs);
  tcase_add_test(spec, intel_host);
  tcase_add_test(spec, amd_host);
  tcase_add_test(spec, nvidia_host);
  tcase_add_test(spec, rusticl_host);
  suite_add_tcase(s, spec);
  TCase *real = tcase_create("present");
  tcase_set_timeout(real, 300);
  tcase_add_test(real, enumerate_and_open_every_device);
  tcase_add_test(real, pocl_and_oclgrind_selectable);
  tcase_add_test(real, device_buffers);
  suite_add_tcase(s, real);
  return ct_test_run(s, 1);
}
