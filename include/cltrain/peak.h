// peak.h: the device's peak multiply-add rate, measured by a kernel of its own (cl/peak.cl).
// cltrain-devices --bench prints it; the trainer measures it at start and quotes its device
// utilisation against it (the achieved GFLOP/s of the model's products over this peak).
//
// Defines: ct_device_peak_gflops.
#ifndef CLTRAIN_PEAK_H
#define CLTRAIN_PEAK_H

#include "cltrain/device.h"

// *gflops: the fastest rate of `rounds` timed launches of independent float8 multiply-adds (each
// long enough to time: the iterations grow first until a launch takes 10 ms or more). A
// simulator (Oclgrind) gets 0: it has no meaningful peak.
ct_status ct_device_peak_gflops(ct_device *dev, int rounds, double *gflops);

#endif
