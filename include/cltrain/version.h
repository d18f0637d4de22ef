// version.h: what cltrain is and what it runs on, for `--version` of every tool and for
// `cltrain-devices --json`.
//
// Defines: ct_version, ct_versions (+ ct_versions_init / _free / _print / _json),
// ct_version_mpi, ct_version_print.
//
// cltrain's own version is fixed at configure time: the project version, then
// "+git<commits>.g<hash>" (and ".dirty") when built from a git checkout, so that it is also a
// valid Debian version that grows with the history. Everything else is found at run time:
//   - every OpenCL platform the ICD loader lists: CL_PLATFORM_NAME and CL_PLATFORM_VERSION
//     (no platform is an answer: zero platforms, not an error);
//   - CLBlast: it has no version query, so the run-time version is read from the file name of
//     the library the process loaded (libclblast.so.1.5.3); the version of the headers cltrain
//     was compiled with is given beside it and marked as the build-time one;
//   - MPI: the first line of MPI_Get_library_version (callable before MPI_Init, so no mpirun).
// Nothing here opens a device or initializes MPI.
#ifndef CLTRAIN_VERSION_H
#define CLTRAIN_VERSION_H

#include <stdio.h>

#include "cltrain/metrics.h"
#include "cltrain/status.h"

typedef struct {
  char name[128];
  char version[128];    // CL_PLATFORM_VERSION: "OpenCL 3.0 PoCL 3.1+debian ..."
} ct_platform_version;

typedef struct {
  const char *cltrain;                 // ct_version()
  int platform_count;
  ct_platform_version *platforms;      // (platform_count)
  char opencl_error[256];              // "" or why the platforms could not be listed
  char clblast_runtime[32];            // "1.5.3", or "unknown"
  char clblast_library[256];           // the loaded library's path, or ""
  char clblast_build[32];              // from clblast_c.h when cltrain was compiled
  char mpi[256];                       // first line of MPI_Get_library_version, or "unknown"
} ct_versions;

// cltrain's version string ("0.1.0+git46.gded8ede").
const char *ct_version(void);

// The first line of MPI_Get_library_version ("Open MPI v4.1.4, package: ..."); CT_ERR_MPI
// (message recorded) if the call fails, with buf "unknown".
ct_status ct_version_mpi(char *buf, size_t size);

// Fills v. Everything that can be found is filled even when a part fails: then the first
// failure is returned with its message recorded (the OpenCL one also in v->opencl_error).
// CT_ERR_NOMEM when the platform list cannot be allocated.
ct_status ct_versions_init(ct_versions *v);
void ct_versions_free(ct_versions *v);

// The lines of --version, the first "<tool> (cltrain) <version>":
//   cltrain-devices (cltrain) 0.1.0+git46.gded8ede
//   OpenCL platform 0: Portable Computing Language, OpenCL 3.0 PoCL 3.1+debian ...
//   CLBlast 1.5.3 (run time: /usr/lib/x86_64-linux-gnu/libclblast.so.1.5.3; built with 1.5.3)
//   MPI: Open MPI v4.1.4, package: Debian OpenMPI, ident: 4.1.4, repo rev: v4.1.4, May 26, 2022
void ct_versions_print(FILE *f, const char *tool, const ct_versions *v);

// Adds to the object j: "cltrain", "opencl_platforms": [{"name", "version"}, ...],
// "opencl_error" (only when listing failed), "clblast" (run time), "clblast_library",
// "clblast_build" (build time), "mpi".
void ct_versions_json(ct_json *j, const ct_versions *v);

// --version of a tool: collects, prints to f, frees. The status is ct_versions_init's (the
// lines are printed either way; the caller prints the error and exits ct_exit_code(st)).
ct_status ct_version_print(FILE *f, const char *tool);

#endif
