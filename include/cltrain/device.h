// device.h: OpenCL platform/device discovery, the `--device` spec, and an opened device.
//
// Defines: ct_device_info, ct_device_list (+ _init/_free/_describe), the device-spec functions
// (CT_DEVICE_SPEC_FORMS, ct_device_spec_for_rank, ct_device_match, ct_device_select), ct_device
// (+ ct_device_open/_open_spec/_close), ct_device_buffer.
//
// Indices: device i of platform p is "p:d", in the order the ICD loader reports them; the same
// numbers cltrain-devices prints. A spec is one of
//   auto          best device: GPU, then accelerator, then CPU; simulators (Oclgrind) last
//   gpu | cpu | accelerator   devices of that type on any platform (simulators excluded)
//   P:D           platform P, device D
//   NAME          a name, matched case-insensitively as a substring in tiers: (1) the platform
//                 name, (2) the platform vendor, (3) the device name or device vendor; the
//                 first tier where any device matches wins. So `intel` is Intel's OpenCL
//                 platform even where PoCL's CPU device is called "...-Intel(R) Xeon(R)...",
//                 `amd` is AMD's platform, `nvidia` NVIDIA CUDA, `pocl` PoCL (its vendor is
//                 "The pocl project"), `oclgrind` Oclgrind, `rusticl` Mesa's Rusticl. When the
//                 winning tier's matches lie on more than one platform, the spec is ambiguous:
//                 CT_ERR_USAGE, one line naming the candidates (never a silent pick).
//   NAME:TYPE     the same among devices of TYPE gpu, cpu or accelerator (`intel:gpu`)
// When a spec matches several devices, local rank k takes match k mod count (round-robin), so
// `mpirun -np 4 cltrain --device gpu` spreads four ranks over the GPUs of a node.
// Per-rank specs: "0=pocl,1=oclgrind,gpu" gives rank 0 PoCL, rank 1 Oclgrind, others a GPU.
// `cltrain-devices --spec SPEC --ranks N` shows which device each local rank would take.
#ifndef CLTRAIN_DEVICE_H
#define CLTRAIN_DEVICE_H

#include <stddef.h>

#include "cltrain/status.h"

// For messages: the forms a --device spec takes.
#define CT_DEVICE_SPEC_FORMS "auto, gpu, cpu, accelerator, P:D, NAME or NAME:TYPE"

typedef struct {
  int platform, index;              // "platform:index", as --device takes it
  cl_platform_id platform_id;
  cl_device_id id;
  char platform_name[128], platform_vendor[128], platform_version[128];
  char name[128], vendor[128], version[128], driver[64], c_version[64];
  cl_device_type type;
  int simulator;                    // an instruction-level simulator (Oclgrind): never "fast"
  cl_uint compute_units, clock_mhz;
  cl_ulong global_mem, local_mem, max_alloc;
  size_t max_wg;
  int fp16, fp64, correct_sqrt;     // cl_khr_fp16, cl_khr_fp64, correctly rounded divide/sqrt
  int host_unified;                 // CL_DEVICE_HOST_UNIFIED_MEMORY
} ct_device_info;

typedef struct {
  ct_device_info *dev;              // all devices of all platforms, platform-major
  int count;
  int platform_count;
  char (*platform_names)[128];      // platform_count names (platforms without devices too)
} ct_device_list;

// Enumerates every platform and device. Zero platforms or devices is an answer (count 0).
ct_status ct_device_list_init(ct_device_list *list);
void ct_device_list_free(ct_device_list *list);
// "0:0 Oclgrind Simulator [Oclgrind]; 1:0 pthread-haswell [Portable Computing Language]" or
// "no OpenCL devices".
void ct_device_list_describe(const ct_device_list *list, char *buf, size_t size);
const char *ct_device_type_name(cl_device_type type);   // "GPU", "CPU", "accelerator", ...

// Picks this rank's spec out of a per-rank list ("0=pocl,1=oclgrind,gpu"); a plain spec is
// returned as it is. CT_ERR_USAGE for an empty or malformed list.
ct_status ct_device_spec_for_rank(const char *spec, int rank, char *out, size_t size);
// The devices a resolved spec matches, in the order local ranks take them: match[0..*count)
// (match holds list->count entries), and how they were chosen ("by platform name", ...) in how.
// CT_ERR_USAGE for a malformed or ambiguous spec, CT_ERR_NOTFOUND when nothing matches (the
// message lists the devices that exist).
ct_status ct_device_match(const ct_device_list *list, const char *spec, int *match, int *count,
                          char *how, size_t how_size);
// Selects a device: *index into list->dev, local rank k taking match k mod count.
ct_status ct_device_select(const ct_device_list *list, const char *spec, int local_rank,
                           int *index);

struct ct_program_cache;
struct ct_prof;
typedef struct ct_device {
  ct_device_info info;
  cl_context ctx;
  cl_command_queue queue;           // in-order, profiling enabled
  struct ct_program_cache *programs; // built programs and kernels (program.h)
  struct ct_blas_state *blas;        // GEMM plans and kernels, CLBlast settings (blas.h)
  struct ct_prof *prof;              // event profiling, NULL when off (prof.h)
} ct_device;

ct_status ct_device_open(const ct_device_info *info, ct_device *dev);
// Enumerates, applies ct_device_spec_for_rank(rank) and ct_device_select(local_rank), opens.
ct_status ct_device_open_spec(const char *spec, int rank, int local_rank, ct_device *dev);
void ct_device_close(ct_device *dev);

// A read-write buffer of `bytes`, as clCreateBuffer(dev->ctx, CL_MEM_READ_WRITE, bytes, NULL,
// err) gives one (NULL and *err set on failure). On a device that shares host memory (not a
// simulator), a buffer of CT_HUGE_MIN bytes or more is host memory aligned to 2 MiB and advised
// for transparent huge pages (madvise), handed over with CL_MEM_USE_HOST_PTR and freed when the
// runtime destroys the buffer. Why: the all-reduce maps the gradients in place and Open MPI's
// single-copy transport pins the sender's pages one by one; on 2 MiB pages it pins a 512th of
// them (the ring of the mlp's 2.68 MB ran 30-40 % faster). CLTRAIN_HUGEPAGES=0 turns it off;
// where madvise refuses (no THP), the buffer is an ordinary one.
#define CT_HUGE_MIN ((size_t)1 << 20)
cl_mem ct_device_buffer(const ct_device *dev, size_t bytes, cl_int *err);

#endif
