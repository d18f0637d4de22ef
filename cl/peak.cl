// peak.cl: the device's peak multiply-add rate, measured by a kernel that does nothing else.
// OpenCL C 1.2. Each work-item runs CT_PEAK_CHAINS independent chains of float8 multiply-adds
// (FP_CONTRACT ON: a*b+c may become one fused instruction, as a GEMM's inner loop does), long
// enough that memory and launch costs vanish; the one store at the end keeps the compiler from
// dropping the work. FLOPs: work-items x iters x CT_PEAK_CHAINS x 8 lanes x 2.
#pragma OPENCL FP_CONTRACT ON

#ifndef CT_PEAK_CHAINS
#define CT_PEAK_CHAINS 8
#endif

__kernel void peak_fma(__global float *out, const uint iters, const float a, const float b) {
  float8 x0 = (float8)(get_global_id(0) * 1e-7f), x1 = x0 + 1e-3f, x2 = x0 + 2e-3f,
         x3 = x0 + 3e-3f, x4 = x0 + 4e-3f, x5 = x0 + 5e-3f, x6 = x0 + 6e-3f, x7 = x0 + 7e-3f;
  for (uint i = 0; i < iters; i++) {
    x0 = x0 * a + b; x1 = x1 * a + b; x2 = x2 * a + b; x3 = x3 * a + b;
    x4 = x4 * a + b; x5 = x5 * a + b; x6 = x6 * a + b; x7 = x7 * a + b;
  }
  float8 s = ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7));
  out[get_global_id(0)] = s.s0 + s.s1 + s.s2 + s.s3 + s.s4 + s.s5 + s.s6 + s.s7;
}
