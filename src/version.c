// version.c: cltrain's version and the versions of what it finds at run time. See version.h.
#include "cltrain/version.h"

#include <clblast_c.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/blas.h"
#include "cltrain/comm.h"

#ifndef CLTRAIN_VERSION
#error "CLTRAIN_VERSION is set by CMakeLists.txt (git describe, or the project version)"
#endif

const char *ct_version(void) { return CLTRAIN_VERSION; }

ct_status ct_version_mpi(char *buf, size_t size) {
  char text[MPI_MAX_LIBRARY_VERSION_STRING] = "";
  int len = 0;
  snprintf(buf, size, "unknown");
  MPI_CHECK(MPI_Get_library_version(text, &len));
  text[len < MPI_MAX_LIBRARY_VERSION_STRING ? len : MPI_MAX_LIBRARY_VERSION_STRING - 1] = 0;
  char *nl = strchr(text, '\n');
  if (nl) *nl = 0;
  if (text[0]) snprintf(buf, size, "%s", text);
  return CT_OK;
}

// Each platform's name and version; zero platforms is an answer.
static ct_status list_platforms(ct_versions *v) {
  cl_uint np = 0;
  cl_int err = clGetPlatformIDs(0, NULL, &np);
  if (err == CL_PLATFORM_NOT_FOUND_KHR || (err == CL_SUCCESS && np == 0)) return CT_OK;
  CL_CHECK(err);
  cl_platform_id *ids = calloc(np, sizeof *ids);
  v->platforms = calloc(np, sizeof *v->platforms);
  if (!ids || !v->platforms) {
    free(ids);
    return CT_FAIL(CT_ERR_NOMEM, "out of host memory listing %u OpenCL platforms", np);
  }
  ct_status st = CT_OK;
  CL_GOTO(clGetPlatformIDs(np, ids, NULL), st, out);
  for (cl_uint p = 0; p < np; p++) {
    ct_platform_version *pv = &v->platforms[p];
    CL_GOTO(clGetPlatformInfo(ids[p], CL_PLATFORM_NAME, sizeof pv->name, pv->name, NULL), st, out);
    CL_GOTO(clGetPlatformInfo(ids[p], CL_PLATFORM_VERSION, sizeof pv->version, pv->version, NULL),
            st, out);
    pv->name[sizeof pv->name - 1] = pv->version[sizeof pv->version - 1] = 0;
    v->platform_count = (int)p + 1;
  }
out:
  free(ids);
  return st;
}

ct_status ct_versions_init(ct_versions *v) {
  memset(v, 0, sizeof *v);
  v->cltrain = ct_version();
  ct_clblast_version(v->clblast_runtime, sizeof v->clblast_runtime);
  ct_clblast_library(v->clblast_library, sizeof v->clblast_library);
  snprintf(v->clblast_build, sizeof v->clblast_build, "%d.%d.%d", CLBLAST_VERSION_MAJOR,
           CLBLAST_VERSION_MINOR, CLBLAST_VERSION_PATCH);
  ct_status st = list_platforms(v);
  if (st != CT_OK) snprintf(v->opencl_error, sizeof v->opencl_error, "%s", ct_error_text());
  ct_status st_mpi = ct_version_mpi(v->mpi, sizeof v->mpi);
  return st != CT_OK ? st : st_mpi;
}

void ct_versions_free(ct_versions *v) {
  free(v->platforms);
  v->platforms = NULL;
  v->platform_count = 0;
}

void ct_versions_print(FILE *f, const char *tool, const ct_versions *v) {
  fprintf(f, "%s (cltrain) %s\n", tool, v->cltrain);
  for (int p = 0; p < v->platform_count; p++)
    fprintf(f, "OpenCL platform %d: %s, %s\n", p, v->platforms[p].name, v->platforms[p].version);
  if (v->opencl_error[0])
    fprintf(f, "OpenCL platforms: could not be listed: %s\n", v->opencl_error);
  else if (v->platform_count == 0)
    fprintf(f, "OpenCL platforms: none found (the ICD loader reads /etc/OpenCL/vendors/*.icd)\n");
  if (strcmp(v->clblast_runtime, "unknown") != 0)
    fprintf(f, "CLBlast %s (run time: %s; built with %s)\n", v->clblast_runtime,
            v->clblast_library, v->clblast_build);
  else
    fprintf(f, "CLBlast %s (build time: the loaded library does not say its version)\n",
            v->clblast_build);
  fprintf(f, "MPI: %s\n", v->mpi);
}

void ct_versions_json(ct_json *j, const ct_versions *v) {
  ct_json_str(j, "cltrain", v->cltrain);
  ct_json items = {0};
  for (int p = 0; p < v->platform_count; p++) {
    ct_json one;
    ct_json_begin(&one);
    ct_json_str(&one, "name", v->platforms[p].name);
    ct_json_str(&one, "version", v->platforms[p].version);
    ct_json_item(&items, &one);
  }
  ct_json_array(j, "opencl_platforms", &items);
  if (v->opencl_error[0]) ct_json_str(j, "opencl_error", v->opencl_error);
  ct_json_str(j, "clblast", v->clblast_runtime);
  ct_json_str(j, "clblast_library", v->clblast_library);
  ct_json_str(j, "clblast_build", v->clblast_build);
  ct_json_str(j, "mpi", v->mpi);
}

ct_status ct_version_print(FILE *f, const char *tool) {
  ct_versions v;
  ct_status st = ct_versions_init(&v);
  ct_versions_print(f, tool, &v);
  ct_versions_free(&v);
  return st;
}
