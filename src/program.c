// program.c: per-device cache of built programs and created kernels.
#include "cltrain/program.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  char family[64];
  char options[256];
  cl_program program;
} prog_entry;

typedef struct {
  char family[64];
  char name[64];
  cl_kernel kernel;
} kern_entry;

struct ct_program_cache {
  prog_entry *progs;
  int nprogs, capprogs;
  kern_entry *kerns;
  int nkerns, capkerns;
};

ct_status ct_program_cache_init(ct_device *dev) {
  dev->programs = calloc(1, sizeof *dev->programs);
  if (!dev->programs) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  return CT_OK;
}

void ct_program_cache_free(ct_device *dev) {
  struct ct_program_cache *c = dev->programs;
  if (!c) return;
  for (int i = 0; i < c->nkerns; i++) clReleaseKernel(c->kerns[i].kernel);
  for (int i = 0; i < c->nprogs; i++) clReleaseProgram(c->progs[i].program);
  free(c->kerns);
  free(c->progs);
  free(c);
  dev->programs = NULL;
}

static ct_status read_file(const char *path, char **text, int *found) {
  *found = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return CT_OK;
  *found = 1;
  if (fseek(f, 0, SEEK_END) != 0) { fclose(f); return CT_FAIL(CT_ERR_IO, "%s: cannot seek", path); }
  long n = ftell(f);
  rewind(f);
  char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
  if (!buf) { fclose(f); return CT_FAIL(CT_ERR_NOMEM, "%s: cannot read", path); }
  size_t got = fread(buf, 1, (size_t)n, f);
  fclose(f);
  if (got != (size_t)n) { free(buf); return CT_FAIL(CT_ERR_IO, "%s: short read", path); }
  buf[n] = 0;
  *text = buf;
  return CT_OK;
}

ct_status ct_program_source(const char *family, char **text) {
  const char *dir = getenv("CLTRAIN_KERNEL_DIR");
  if (dir && *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.cl", dir, family);
    int found;
    CT_TRY(read_file(path, text, &found));
    if (found) return CT_OK;
  }
  for (int i = 0; i < ct_cl_source_count; i++) {
    if (strcmp(ct_cl_sources[i].name, family) == 0) {
      *text = strdup(ct_cl_sources[i].source);
      if (!*text) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
      return CT_OK;
    }
  }
  return CT_FAIL(CT_ERR_NOTFOUND, "no kernel family '%s' (cl/%s.cl) embedded", family, family);
}

ct_status ct_program_build(ct_device *dev, const char *family, const char *options,
                           cl_program *out) {
  struct ct_program_cache *c = dev->programs;
  if (!options) options = "";
  for (int i = 0; i < c->nprogs; i++)
    if (!strcmp(c->progs[i].family, family) && !strcmp(c->progs[i].options, options)) {
      *out = c->progs[i].program;
      return CT_OK;
    }
  if (strlen(family) >= sizeof c->progs[0].family || strlen(options) >= sizeof c->progs[0].options)
    return CT_FAIL(CT_ERR_INTERNAL, "kernel family or options too long: %s %s", family, options);
  char *src = NULL;
  CT_TRY(ct_program_source(family, &src));
  cl_int err;
  cl_program prog = clCreateProgramWithSource(dev->ctx, 1, (const char **)&src, NULL, &err);
  free(src);
  CL_CHECK(err);
  char opts[512];
  snprintf(opts, sizeof opts, "-cl-std=CL1.2%s %s",
           dev->info.correct_sqrt ? " -cl-fp32-correctly-rounded-divide-sqrt" : "", options);
  err = clBuildProgram(prog, 1, &dev->info.id, opts, NULL, NULL);
  if (err != CL_SUCCESS) {
    size_t n = 0;
    clGetProgramBuildInfo(prog, dev->info.id, CL_PROGRAM_BUILD_LOG, 0, NULL, &n);
    char *log = malloc(n + 1);
    if (log) {
      log[0] = 0;
      clGetProgramBuildInfo(prog, dev->info.id, CL_PROGRAM_BUILD_LOG, n, log, NULL);
      log[n] = 0;
      fprintf(stderr, "cltrain: build log of cl/%s.cl on %s:\n%s\n", family, dev->info.name, log);
      free(log);
    }
    clReleaseProgram(prog);
    return CT_FAIL(CT_ERR_CL, "building cl/%s.cl for %s (%s) failed: %s", family,
                   dev->info.name, dev->info.platform_name, ct_cl_errname(err));
  }
  if (c->nprogs == c->capprogs) {
    int cap = c->capprogs ? 2 * c->capprogs : 16;
    prog_entry *p = realloc(c->progs, (size_t)cap * sizeof *p);
    if (!p) { clReleaseProgram(prog); return CT_FAIL(CT_ERR_NOMEM, "out of host memory"); }
    c->progs = p;
    c->capprogs = cap;
  }
  prog_entry *e = &c->progs[c->nprogs++];
  snprintf(e->family, sizeof e->family, "%s", family);
  snprintf(e->options, sizeof e->options, "%s", options);
  e->program = prog;
  *out = prog;
  return CT_OK;
}

ct_status ct_kernel(ct_device *dev, const char *family, const char *name, cl_kernel *out) {
  struct ct_program_cache *c = dev->programs;
  for (int i = 0; i < c->nkerns; i++)
    if (!strcmp(c->kerns[i].name, name) && !strcmp(c->kerns[i].family, family)) {
      *out = c->kerns[i].kernel;
      return CT_OK;
    }
  if (strlen(family) >= sizeof c->kerns[0].family || strlen(name) >= sizeof c->kerns[0].name)
    return CT_FAIL(CT_ERR_INTERNAL, "kernel name too long: %s/%s", family, name);
  cl_program prog;
  CT_TRY(ct_program_build(dev, family, "", &prog));
  cl_int err;
  cl_kernel k = clCreateKernel(prog, name, &err);
  if (err != CL_SUCCESS)
    return CT_FAIL(CT_ERR_CL, "clCreateKernel(cl/%s.cl, \"%s\") failed: %s", family, name,
                   ct_cl_errname(err));
  if (c->nkerns == c->capkerns) {
    int cap = c->capkerns ? 2 * c->capkerns : 32;
    kern_entry *p = realloc(c->kerns, (size_t)cap * sizeof *p);
    if (!p) { clReleaseKernel(k); return CT_FAIL(CT_ERR_NOMEM, "out of host memory"); }
    c->kerns = p;
    c->capkerns = cap;
  }
  kern_entry *e = &c->kerns[c->nkerns++];
  snprintf(e->family, sizeof e->family, "%s", family);
  snprintf(e->name, sizeof e->name, "%s", name);
  e->kernel = k;
  *out = k;
  return CT_OK;
}
