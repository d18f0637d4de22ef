// peak.c: the device's peak multiply-add rate (peak.h), measured with
// cl/peak.cl: the rate a kernel of nothing but independent float8 multiply-adds reaches, the
// fastest of a few timed launches (device event times). The figure utilisation is quoted
// against; a GEMM cannot exceed it.
#include "cltrain/peak.h"

#include <stdlib.h>

#include "cltrain/program.h"

ct_status ct_device_peak_gflops(ct_device *dev, int rounds, double *gflops) {
  *gflops = 0;
  if (dev->info.simulator) return CT_OK;   // (an instruction simulator has no peak to speak of)
  cl_kernel k;
  CT_TRY(ct_kernel(dev, "peak", "peak_fma", &k));
  size_t cus = dev->info.compute_units ? dev->info.compute_units : 1;
  int cpu = (dev->info.type & CL_DEVICE_TYPE_CPU) != 0;
  // enough work-items for every lane of every compute unit (a GPU's many in flight)
  size_t local = dev->info.max_wg >= 64 ? 64 : dev->info.max_wg;
  size_t global = cus * local * (cpu ? 1 : 32);
  cl_int err;
  cl_mem out = clCreateBuffer(dev->ctx, CL_MEM_WRITE_ONLY, global * sizeof(float), NULL, &err);
  CL_CHECK(err);
  ct_status st = CT_OK;
  cl_uint iters = 64;
  float a = 0.999999f, b = 1e-6f;
  double best = 0;
  for (int round = 0; round < rounds && st == CT_OK; round++) {
    cl_event ev = NULL;
    CL_GOTO(clSetKernelArg(k, 0, sizeof out, &out), st, done);
    CL_GOTO(clSetKernelArg(k, 1, sizeof iters, &iters), st, done);
    CL_GOTO(clSetKernelArg(k, 2, sizeof a, &a), st, done);
    CL_GOTO(clSetKernelArg(k, 3, sizeof b, &b), st, done);
    CL_GOTO(clEnqueueNDRangeKernel(dev->queue, k, 1, NULL, &global, &local, 0, NULL, &ev), st,
            done);
    cl_ulong t0 = 0, t1 = 0;
    err = clWaitForEvents(1, &ev);
    if (err == CL_SUCCESS)
      err = clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL);
    if (err == CL_SUCCESS)
      err = clGetEventProfilingInfo(ev, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL);
    clReleaseEvent(ev);
    CL_GOTO(err, st, done);
    double sec = (double)(t1 - t0) * 1e-9;
    if (sec < 0.01 && iters < (1u << 28)) {   // too short to time: longer (not a sample)
      iters *= sec > 0 ? (cl_uint)(0.015 / sec) + 1 : 16;
      round--;
      continue;
    }
    double r = (double)global * iters * 8 * 8 * 2 / sec / 1e9;
    if (r > best) best = r;
  }
  *gflops = best;
done:
  clReleaseMemObject(out);
  return st;
}
