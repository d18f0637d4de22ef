// timer.h: wall-clock time for measurements (CLOCK_MONOTONIC), in seconds.
//
// Defines: ct_now, ct_wall_seconds.
#ifndef CLTRAIN_TIMER_H
#define CLTRAIN_TIMER_H

#include <time.h>

static inline double ct_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Seconds since the Unix epoch (CLOCK_REALTIME): timestamps in records, not for intervals.
static inline double ct_wall_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
