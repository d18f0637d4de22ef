// program.h: building the embedded OpenCL kernels for a device, and kernel lookup.
//
// Defines: ct_cl_source and the embedded table (ct_cl_sources, ct_cl_source_count),
// ct_program_source, ct_program_build, ct_kernel, ct_program_cache_init/_free, CT_CL_OPTIONS.
//
// Kernels live in cl/<family>.cl and are embedded at build time (cmake/embed_cl.cmake). The
// environment variable CLTRAIN_KERNEL_DIR names a folder whose <family>.cl, if present, is used
// instead (for kernel development without rebuilding). Programs are built once per device,
// family and options, and cached with their kernels; a build failure records the device's name
// and the build log.
#ifndef CLTRAIN_PROGRAM_H
#define CLTRAIN_PROGRAM_H

#include "cltrain/device.h"

typedef struct {
  const char *name;    // family: file name without .cl
  const char *source;  // OpenCL C 1.2 text
} ct_cl_source;

extern const ct_cl_source ct_cl_sources[];  // terminated by {0, 0}
extern const int ct_cl_source_count;

// The source of a family (embedded, or from CLTRAIN_KERNEL_DIR). *text is malloc'ed.
ct_status ct_program_source(const char *family, char **text);
// Builds (or returns the cached) program of `family` with `options` appended to the defaults
// ("-cl-std=CL1.2", plus "-cl-fp32-correctly-rounded-divide-sqrt" where the device has it).
ct_status ct_program_build(ct_device *dev, const char *family, const char *options,
                           cl_program *out);
// A kernel of a family built with default options; cached, so call it freely.
ct_status ct_kernel(ct_device *dev, const char *family, const char *name, cl_kernel *out);

ct_status ct_program_cache_init(ct_device *dev);
void ct_program_cache_free(ct_device *dev);

#endif
