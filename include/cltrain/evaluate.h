// evaluate.h: the test-set metric, one per kind of model, as a table; and the replicas' checks
// (are the ranks' parameters still the same bytes?).
//
// Defines: ct_eval_metric, ct_eval_metrics / ct_eval_nmetrics, ct_eval_metric_choose,
// ct_evaluate, ct_replica_check, ct_replica_resync, ct_sample_text.
//
// Evaluation is split: rank r evaluates a contiguous slice of the test set (cut by the share
// weights: the same cut on every rank), and each metric's two sums (a numerator and a
// denominator) are summed over the ranks; the metric is their ratio. Classifiers: argmax
// accuracy (correct / samples). Language models: the mean cross-entropy per token, (sum of the
// positions' losses) / (positions), over the validation windows.
#ifndef CLTRAIN_EVALUATE_H
#define CLTRAIN_EVALUATE_H

#include "cltrain/train_state.h"

typedef struct ct_eval_metric {
  const char *key;         // in --metrics records: "test_accuracy"
  const char *label;       // in the output: "test accuracy"
  // Whether it measures models of this architecture (the first entry that does is used).
  int (*fits)(const ct_arch *arch);
  // One batch of m test samples, already forwarded (labels y): adds to sums[0] (numerator)
  // and sums[1] (denominator). scratch: s->micro x max(arch.classes, labels) floats.
  ct_status (*batch)(ct_run_state *s, int m, const int *y, float *scratch, double sums[2]);
  // The value as the output lines print it ("0.8123"; "1.93214 (perplexity 6.903)").
  void (*format)(double value, char *buf, size_t size);
} ct_eval_metric;

extern const ct_eval_metric ct_eval_metrics[];
extern const int ct_eval_nmetrics;

// s->metric for s->arch; CT_ERR_USAGE when no metric measures it.
ct_status ct_eval_metric_choose(ct_run_state *s);
// The metric on the test set (collective), in evaluation time (res->eval_s) and on the trace.
ct_status ct_evaluate(ct_run_state *s, double *value);

// Compares the replicas' parameter checksums and applies --on-divergence: warn, resync from
// rank 0, or abort. `when` says where, for the messages ("at step 40"). Collective.
ct_status ct_replica_check(ct_run_state *s, const char *when);
// Rank 0's parameters and optimizer state on every rank. Collective.
ct_status ct_replica_resync(ct_run_state *s);

// --sample N, a language model: rank 0 prints "sample after WHEN:", then on the next line a
// prompt (the first seq/2 bytes of the validation text, at least one) followed by the N bytes
// the model generates after it (generate.h: temperature 0.8, top-k 40, the stream seeded from
// --seed and `stream`), and a newline. It uses the model's buffers as an evaluation does; the
// parameters, the optimizer and the training's random streams are left as they were. Other
// ranks do nothing (they go on, and wait for rank 0 at the next collective).
ct_status ct_sample_text(ct_run_state *s, const char *when, uint64_t stream);

#endif
