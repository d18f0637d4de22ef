// device.c: platform/device enumeration, the --device spec, opening a context and queue.
#include "cltrain/device.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cltrain/blas.h"
#include "cltrain/prof.h"
#include "cltrain/program.h"

// ---- enumeration ----------------------------------------------------------------------------

static void info_str(cl_device_id d, cl_device_info what, char *buf, size_t size) {
  buf[0] = 0;
  if (clGetDeviceInfo(d, what, size, buf, NULL) != CL_SUCCESS) snprintf(buf, size, "?");
  buf[size - 1] = 0;
}

static ct_status fill_info(ct_device_info *di) {
  cl_device_id d = di->id;
  char ext[8192];
  info_str(d, CL_DEVICE_NAME, di->name, sizeof di->name);
  info_str(d, CL_DEVICE_VENDOR, di->vendor, sizeof di->vendor);
  info_str(d, CL_DEVICE_VERSION, di->version, sizeof di->version);
  info_str(d, CL_DRIVER_VERSION, di->driver, sizeof di->driver);
  info_str(d, CL_DEVICE_OPENCL_C_VERSION, di->c_version, sizeof di->c_version);
  info_str(d, CL_DEVICE_EXTENSIONS, ext, sizeof ext);
  CL_CHECK(clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof di->type, &di->type, NULL));
  CL_CHECK(clGetDeviceInfo(d, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof di->compute_units,
                           &di->compute_units, NULL));
  CL_CHECK(clGetDeviceInfo(d, CL_DEVICE_MAX_CLOCK_FREQUENCY, sizeof di->clock_mhz,
                           &di->clock_mhz, NULL));
  CL_CHECK(clGetDeviceInfo(d, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof di->global_mem,
                           &di->global_mem, NULL));
  CL_CHECK(clGetDeviceInfo(d, CL_DEVICE_LOCAL_MEM_SIZE, sizeof di->local_mem, &di->local_mem,
                           NULL));
  CL_CHECK(clGetDeviceInfo(d, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof di->max_alloc,
                           &di->max_alloc, NULL));
  CL_CHECK(clGetDeviceInfo(d, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof di->max_wg, &di->max_wg,
                           NULL));
  cl_device_fp_config fp = 0;
  CL_CHECK(clGetDeviceInfo(d, CL_DEVICE_SINGLE_FP_CONFIG, sizeof fp, &fp, NULL));
  di->correct_sqrt = (fp & CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT) != 0;
  cl_bool unified = CL_FALSE;
  CL_CHECK(clGetDeviceInfo(d, CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof unified, &unified, NULL));
  di->host_unified = unified == CL_TRUE;
  di->fp16 = strstr(ext, "cl_khr_fp16") != NULL;
  di->fp64 = strstr(ext, "cl_khr_fp64") != NULL;
  di->simulator = strstr(di->platform_name, "Oclgrind") != NULL;
  return CT_OK;
}

ct_status ct_device_list_init(ct_device_list *list) {
  memset(list, 0, sizeof *list);
  cl_uint np = 0;
  cl_int err = clGetPlatformIDs(0, NULL, &np);
  if (err == CL_PLATFORM_NOT_FOUND_KHR || (err == CL_SUCCESS && np == 0)) return CT_OK;
  CL_CHECK(err);
  cl_platform_id *plats = calloc(np, sizeof *plats);
  list->platform_names = calloc(np, sizeof *list->platform_names);
  if (!plats || !list->platform_names) {
    free(plats);
    return CT_FAIL(CT_ERR_NOMEM, "out of host memory listing %u platforms", np);
  }
  ct_status st = CT_OK;
  CL_GOTO(clGetPlatformIDs(np, plats, NULL), st, done);
  list->platform_count = (int)np;
  for (cl_uint p = 0; p < np; p++) {
    char pname[128] = "?", pvendor[128] = "?", pversion[128] = "?";
    clGetPlatformInfo(plats[p], CL_PLATFORM_NAME, sizeof pname, pname, NULL);
    clGetPlatformInfo(plats[p], CL_PLATFORM_VENDOR, sizeof pvendor, pvendor, NULL);
    clGetPlatformInfo(plats[p], CL_PLATFORM_VERSION, sizeof pversion, pversion, NULL);
    pname[127] = pvendor[127] = pversion[127] = 0;
    memcpy(list->platform_names[p], pname, sizeof pname);
    cl_uint nd = 0;
    err = clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd);
    if (err == CL_DEVICE_NOT_FOUND || nd == 0) continue;   // zero devices is an answer
    CL_GOTO(err, st, done);
    cl_device_id *ids = calloc(nd, sizeof *ids);
    ct_device_info *grown = realloc(list->dev, (size_t)(list->count + (int)nd) * sizeof *grown);
    if (!ids || !grown) {
      free(ids);
      if (grown) list->dev = grown;
      st = CT_FAIL(CT_ERR_NOMEM, "out of host memory listing devices");
      goto done;
    }
    list->dev = grown;
    err = clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, nd, ids, NULL);
    if (err != CL_SUCCESS) {
      free(ids);
      CL_GOTO(err, st, done);
    }
    for (cl_uint i = 0; i < nd; i++) {
      ct_device_info *di = &list->dev[list->count];
      memset(di, 0, sizeof *di);
      di->platform = (int)p;
      di->index = (int)i;
      di->platform_id = plats[p];
      di->id = ids[i];
      memcpy(di->platform_name, pname, sizeof pname);
      memcpy(di->platform_vendor, pvendor, sizeof pvendor);
      memcpy(di->platform_version, pversion, sizeof pversion);
      st = fill_info(di);
      if (st != CT_OK) {
        free(ids);
        goto done;
      }
      list->count++;
    }
    free(ids);
  }
done:
  free(plats);
  if (st != CT_OK) ct_device_list_free(list);
  return st;
}

void ct_device_list_free(ct_device_list *list) {
  free(list->dev);
  free(list->platform_names);
  memset(list, 0, sizeof *list);
}

const char *ct_device_type_name(cl_device_type t) {
  if (t & CL_DEVICE_TYPE_GPU) return "GPU";
  if (t & CL_DEVICE_TYPE_ACCELERATOR) return "accelerator";
  if (t & CL_DEVICE_TYPE_CPU) return "CPU";
  if (t & CL_DEVICE_TYPE_CUSTOM) return "custom";
  return "unknown";
}

void ct_device_list_describe(const ct_device_list *list, char *buf, size_t size) {
  if (size == 0) return;
  buf[0] = 0;
  if (list->count == 0) {
    snprintf(buf, size, "no OpenCL devices");
    return;
  }
  size_t off = 0;
  for (int i = 0; i < list->count && off < size; i++) {
    const ct_device_info *d = &list->dev[i];
    int n = snprintf(buf + off, size - off, "%s%d:%d %s [%s]", i ? "; " : "", d->platform,
                     d->index, d->name, d->platform_name);
    if (n < 0) break;
    off += (size_t)n;
  }
}

// ---- the --device spec ----------------------------------------------------------------------

static int ci_contains(const char *hay, const char *needle) {
  size_t n = strlen(needle);
  if (n == 0) return 0;
  for (; *hay; hay++) {
    size_t i = 0;
    while (i < n && hay[i] && tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
      i++;
    if (i == n) return 1;
  }
  return 0;
}

static int parse_uint(const char *s, const char *end, int *out) {
  if (s == end) return 0;
  long v = 0;
  for (const char *p = s; p < end; p++) {
    if (!isdigit((unsigned char)*p)) return 0;
    v = v * 10 + (*p - '0');
    if (v > 1000000) return 0;
  }
  *out = (int)v;
  return 1;
}

ct_status ct_device_spec_for_rank(const char *spec, int rank, char *out, size_t size) {
  if (!spec || !*spec)
    return CT_FAIL(CT_ERR_USAGE, "--device: empty spec (expected " CT_DEVICE_SPEC_FORMS ")");
  const char *fallback = NULL, *chosen = NULL;
  size_t fallback_len = 0, chosen_len = 0;
  const char *p = spec;
  while (1) {
    const char *end = strchr(p, ',');
    if (!end) end = p + strlen(p);
    if (end == p) return CT_FAIL(CT_ERR_USAGE, "--device '%s': empty entry in the list", spec);
    const char *eq = memchr(p, '=', (size_t)(end - p));
    if (eq) {
      int r;
      if (!parse_uint(p, eq, &r))
        return CT_FAIL(CT_ERR_USAGE, "--device '%s': '%.*s' is not a rank number before '='",
                       spec, (int)(eq - p), p);
      if (eq + 1 == end)
        return CT_FAIL(CT_ERR_USAGE, "--device '%s': no spec after '%.*s'", spec,
                       (int)(eq + 1 - p), p);
      if (r == rank && !chosen) { chosen = eq + 1; chosen_len = (size_t)(end - eq - 1); }
    } else {
      if (fallback)
        return CT_FAIL(CT_ERR_USAGE, "--device '%s': more than one entry without 'RANK='", spec);
      fallback = p;
      fallback_len = (size_t)(end - p);
    }
    if (!*end) break;
    p = end + 1;
  }
  if (!chosen) { chosen = fallback; chosen_len = fallback_len; }
  if (!chosen) { chosen = "auto"; chosen_len = 4; }
  if (chosen_len + 1 > size) return CT_FAIL(CT_ERR_USAGE, "--device '%s': spec too long", spec);
  memcpy(out, chosen, chosen_len);
  out[chosen_len] = 0;
  return CT_OK;
}

// Rank of a device for `auto`: lower is better.
static int auto_rank(const ct_device_info *d) {
  if (d->simulator) return 3;
  if (d->type & CL_DEVICE_TYPE_GPU) return 0;
  if (d->type & CL_DEVICE_TYPE_ACCELERATOR) return 1;
  return 2;
}

static cl_device_type type_word(const char *s, size_t n) {
  if (n == 3 && !strncmp(s, "gpu", 3)) return CL_DEVICE_TYPE_GPU;
  if (n == 3 && !strncmp(s, "cpu", 3)) return CL_DEVICE_TYPE_CPU;
  if (n == 11 && !strncmp(s, "accelerator", 11)) return CL_DEVICE_TYPE_ACCELERATOR;
  return 0;
}

static const char *const tier_names[] = {"", "platform name", "platform vendor",
                                         "device name or vendor"};

// The first name tier that TEXT matches for device d: 1 platform name, 2 platform vendor, 3 device
// name or device vendor; 0 none. Case-insensitive substrings.
static int name_tier(const ct_device_info *d, const char *text) {
  if (ci_contains(d->platform_name, text)) return 1;
  if (ci_contains(d->platform_vendor, text)) return 2;
  if (ci_contains(d->name, text) || ci_contains(d->vendor, text)) return 3;
  return 0;
}

ct_status ct_device_match(const ct_device_list *list, const char *spec, int *match, int *count,
                          char *how, size_t how_size) {
  *count = 0;
  if (how_size) how[0] = 0;
  if (!spec || !*spec)
    return CT_FAIL(CT_ERR_USAGE, "--device: empty spec (expected " CT_DEVICE_SPEC_FORMS ")");
  if (strchr(spec, ',') || strchr(spec, '='))
    return CT_FAIL(CT_ERR_USAGE, "--device '%s': a per-rank list must be resolved first", spec);
  char avail[2048];
  ct_device_list_describe(list, avail, sizeof avail);

  // NAME:TYPE or P:D
  char name[256];
  cl_device_type want = 0;
  const char *colon = strrchr(spec, ':');
  if (colon) {
    int p, d;
    if (parse_uint(spec, colon, &p) && parse_uint(colon + 1, colon + strlen(colon), &d)) {
      for (int i = 0; i < list->count; i++)
        if (list->dev[i].platform == p && list->dev[i].index == d) {
          match[(*count)++] = i;
          snprintf(how, how_size, "platform %d, device %d", p, d);
          return CT_OK;
        }
      return CT_FAIL(CT_ERR_NOTFOUND, "--device '%s': no such device; devices: %s", spec, avail);
    }
    want = type_word(colon + 1, strlen(colon + 1));
    if (!want || colon == spec || (size_t)(colon - spec) >= sizeof name)
      return CT_FAIL(CT_ERR_USAGE, "--device '%s': expected P:D with two numbers, or NAME:TYPE "
                     "with TYPE gpu, cpu or accelerator", spec);
    memcpy(name, spec, (size_t)(colon - spec));
    name[colon - spec] = 0;
  } else if (strlen(spec) >= sizeof name) {
    return CT_FAIL(CT_ERR_USAGE, "--device '%.40s...': spec too long", spec);
  } else {
    snprintf(name, sizeof name, "%s", spec);
  }

  int is_auto = !want && !strcmp(name, "auto");
  cl_device_type only_type = want ? 0 : type_word(name, strlen(name));
  if (is_auto || only_type) {   // a kind of device: every platform's, round-robin
    int best = 99;
    for (int i = 0; i < list->count; i++) {
      const ct_device_info *d = &list->dev[i];
      if (is_auto) {
        int r = auto_rank(d);
        if (r < best) { best = r; *count = 0; }
        if (r == best) match[(*count)++] = i;
      } else if ((d->type & only_type) && !d->simulator) {
        match[(*count)++] = i;
      }
    }
    snprintf(how, how_size, "%s", is_auto ? "auto: GPUs, else accelerators, else CPUs, else "
             "simulators" : "devices of that type, simulators excluded");
    if (*count == 0)
      return CT_FAIL(CT_ERR_NOTFOUND, "--device '%s' matches no device; devices: %s", spec, avail);
    return CT_OK;
  }

  // a name: the first tier with a match wins
  int tier = 4;
  for (int i = 0; i < list->count; i++) {
    const ct_device_info *d = &list->dev[i];
    if (want && !(d->type & want)) continue;
    int t = name_tier(d, name);
    if (!t || t > tier) continue;
    if (t < tier) { tier = t; *count = 0; }
    match[(*count)++] = i;
  }
  if (*count == 0)
    return CT_FAIL(CT_ERR_NOTFOUND, "--device '%s' matches no device; devices: %s", spec, avail);
  snprintf(how, how_size, "by %s", tier_names[tier]);
  int platforms = 0;
  for (int k = 0; k < *count; k++) {
    int seen = 0;
    for (int j = 0; j < k; j++)
      if (list->dev[match[j]].platform == list->dev[match[k]].platform) seen = 1;
    platforms += !seen;
  }
  if (platforms > 1) {   // never picked silently: name the candidates
    char cand[2048];
    size_t off = 0;
    cand[0] = 0;
    for (int k = 0; k < *count && off < sizeof cand; k++) {
      const ct_device_info *d = &list->dev[match[k]];
      int n = snprintf(cand + off, sizeof cand - off, "%s%d:%d %s [%s] (%s)", k ? ", " : "",
                       d->platform, d->index, d->name, d->platform_name,
                       d->simulator ? "simulator" : ct_device_type_name(d->type));
      if (n < 0) break;
      off += (size_t)n;
    }
    int n = *count;
    *count = 0;
    return CT_FAIL(CT_ERR_USAGE, "--device '%s' is ambiguous: by %s it matches %d devices of %d "
                   "platforms: %s; name the platform, add :gpu or :cpu, or give P:D", spec,
                   tier_names[tier], n, platforms, cand);
  }
  return CT_OK;
}

ct_status ct_device_select(const ct_device_list *list, const char *spec, int local_rank,
                           int *index) {
  int *match = malloc((size_t)(list->count > 0 ? list->count : 1) * sizeof *match);
  if (!match) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  int n = 0;
  char how[128];
  ct_status st = ct_device_match(list, spec, match, &n, how, sizeof how);
  if (st == CT_OK) *index = match[(local_rank < 0 ? 0 : local_rank) % n];
  free(match);
  return st;
}

// ---- an opened device -----------------------------------------------------------------------

ct_status ct_device_open(const ct_device_info *info, ct_device *dev) {
  memset(dev, 0, sizeof *dev);
  dev->info = *info;
  cl_int err;
  cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)info->platform_id,
                                   0};
  ct_status st = CT_OK;
  CL_GOTO((dev->ctx = clCreateContext(props, 1, &info->id, NULL, NULL, &err), err), st, fail);
  CL_GOTO((dev->queue = clCreateCommandQueue(dev->ctx, info->id, CL_QUEUE_PROFILING_ENABLE, &err),
           err), st, fail);
  CT_GOTO(ct_program_cache_init(dev), st, fail);
  CT_GOTO(ct_blas_init(dev), st, fail);
  return CT_OK;
fail:
  ct_device_close(dev);
  return st;
}

ct_status ct_device_open_spec(const char *spec, int rank, int local_rank, ct_device *dev) {
  char mine[256];
  CT_TRY(ct_device_spec_for_rank(spec, rank, mine, sizeof mine));
  ct_device_list list;
  CT_TRY(ct_device_list_init(&list));
  int idx = -1;
  ct_status st = ct_device_select(&list, mine, local_rank, &idx);
  if (st == CT_OK) st = ct_device_open(&list.dev[idx], dev);
  ct_device_list_free(&list);
  return st;
}

void ct_device_close(ct_device *dev) {
  if (dev->queue) clFinish(dev->queue);
  ct_prof_free(dev);
  ct_blas_free(dev);
  ct_program_cache_free(dev);
  if (dev->queue) clReleaseCommandQueue(dev->queue);
  if (dev->ctx) clReleaseContext(dev->ctx);
  memset(dev, 0, sizeof *dev);
}

// ---- buffers ------------------------------------------------------------------------------------

static void CL_CALLBACK free_host_memory(cl_mem mem, void *p) {
  (void)mem;
  free(p);
}

static int huge_pages_wanted(void) {
  const char *e = getenv("CLTRAIN_HUGEPAGES");
  return !(e && !strcmp(e, "0"));
}

cl_mem ct_device_buffer(const ct_device *dev, size_t bytes, cl_int *err) {
  const size_t align = (size_t)2 << 20;
  int huge = dev->info.host_unified && !dev->info.simulator && bytes >= CT_HUGE_MIN &&
             huge_pages_wanted();
  if (!huge)
    return clCreateBuffer(dev->ctx, CL_MEM_READ_WRITE, bytes, NULL, err);
  size_t span = (bytes + align - 1) / align * align;
  void *p = NULL;
  if (posix_memalign(&p, align, span) != 0) {
    *err = CL_OUT_OF_HOST_MEMORY;
    return NULL;
  }
  if (madvise(p, span, MADV_HUGEPAGE) != 0) {   // no transparent huge pages here: no gain
    free(p);
    return clCreateBuffer(dev->ctx, CL_MEM_READ_WRITE, bytes, NULL, err);
  }
  cl_mem m = clCreateBuffer(dev->ctx, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR, bytes, p, err);
  if (!m) {
    free(p);
    return NULL;
  }
  cl_int e = clSetMemObjectDestructorCallback(m, free_host_memory, p);
  if (e != CL_SUCCESS) {   // nobody would free p: do without
    clReleaseMemObject(m);
    free(p);
    *err = e;
    return NULL;
  }
  return m;
}
