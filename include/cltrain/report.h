// report.h: what a run tells: the lines at its start (model, devices, shares), the --metrics
// records (config, log, epoch, final), the --trace file, the per-rank table at the end,
// --profile's tables, and the progress line on a terminal.
//
// Defines: ct_report_metrics_open, ct_report_start, ct_report_log, ct_report_epoch,
// ct_report_trace, ct_report_end, ct_progress (+ ct_progress_start / _draw / _end).
//
// Rank 0 prints and writes; the per-rank figures are gathered (collective calls are marked).
// The records' schema is docs/metrics.md.
#ifndef CLTRAIN_REPORT_H
#define CLTRAIN_REPORT_H

#include <stdio.h>

#include "cltrain/train_state.h"

// --metrics: rank 0 creates the file, every rank learns whether it could. Collective.
ct_status ct_report_metrics_open(ct_run_state *s);
// The run's first lines (model, data, devices, parameter checksum, shares) and the config
// record. Collective (the devices are gathered).
ct_status ct_report_start(ct_run_state *s, uint64_t checksum);
// A log line's record (rank 0; nothing without --metrics).
ct_status ct_report_log(ct_run_state *s, long step, int epoch, double loss, double lr,
                        double rate, double t_train);
// An epoch's line and record. Collective with --metrics (the per-rank times are gathered).
ct_status ct_report_epoch(ct_run_state *s, int epoch, long step, double value, double t_train);
// --trace: every rank's spans gathered, rank 0 writes the file (each rank named after its
// device). Collective; nothing without --trace.
ct_status ct_report_trace(ct_run_state *s);
// The end: --profile's tables, the per-rank table, the shares, the final record and line.
// Collective.
ct_status ct_report_end(ct_run_state *s);

// Rank 0, when stderr is a terminal: one line per epoch, redrawn at most 5 times a second, that
// the epoch's end (or the next line printed) leaves in place. Elsewhere (logs, mpirun without a
// terminal) nothing: the plain lines are the record.
typedef struct {
  int on, drawn;
  FILE *out;                 // the terminal it is drawn on (ct_progress_start)
  double last, t_epoch;      // last redraw; training time at the epoch's start
  long si_epoch;             // steps of the epoch done when it started (resume mid-epoch)
  double loss_acc, loss_n;   // loss since the epoch started (finished steps)
} ct_progress;

// Rank 0 draws on stderr when it is a terminal, else on stdout when that is one (under mpirun);
// otherwise nothing is drawn (logs get the plain lines only).
void ct_progress_start(ct_progress *p, int rank0, long si_epoch);
void ct_progress_draw(ct_progress *p, int epoch, int epochs, long si, long spe, double loss,
                      double sps, double t_train, int force);
void ct_progress_end(ct_progress *p);

#endif
