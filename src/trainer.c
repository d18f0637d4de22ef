// trainer.c: a training run from the tools' side: the defaults of what a user sets, and the run
// itself (setup, the loop, the report, teardown). See trainer.h for the parts and where each
// lives.
#include "cltrain/trainer.h"

#include <string.h>

#include "cltrain/report.h"
#include "cltrain/run.h"
#include "cltrain/sync.h"
#include "cltrain/train_state.h"

void ct_train_config_defaults(ct_train_config *c) {
  memset(c, 0, sizeof *c);
  c->arch = "mlp";
  c->data_dir = "/usr/share/datasets/fashion-mnist";
  c->text = "/usr/local/share/cltrain/shakespeare.txt";
  c->device = "auto";
  c->epochs = 10;
  c->batch = 128;
  c->shuffle = 1;
  c->shard = CT_SHARD_SEQUENTIAL;
  ct_optim_config_defaults(CT_OPT_SGD, &c->optim);
  c->sched.kind = CT_SCHED_CONSTANT;
  c->sched.gamma = 0.1f;
  c->seed = 1;
  c->log_every = 100;
  c->max_bad_steps = 5;
  c->on_divergence = CT_DIVERGE_ABORT;
  c->accumulate = 1;
  c->shard_update = 1;
  c->trace_last = 1L << 62;
  c->balance_every = 10;
}

uint64_t ct_params_checksum(const float *params, size_t n) {
  const unsigned char *p = (const unsigned char *)params;
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n * sizeof(float); i++) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

ct_status ct_train_run(const ct_train_config *cfg, ct_comm *comm, ct_train_result *res) {
  ct_run_state s;
  memset(&s, 0, sizeof s);
  memset(res, 0, sizeof *res);
  CT_TRY(ct_sync_parse(cfg->sync, &s.mode, &s.mode_k));
  CT_TRY(ct_sync_check_buckets(s.mode, cfg->bucket_mb));
  // --accumulate K: an optimizer step takes K global batches of --batch, computed in K chunks.
  // The loader, the shares, the schedule, the checkpoints and the logs see one global batch of
  // K x --batch (a checkpoint so made resumes as --batch K x B, or as K' x B' with the same
  // product); only the model's buffers stay the size of one chunk.
  ct_train_config eff = *cfg;
  if (eff.accumulate < 1) eff.accumulate = 1;
  if ((long long)eff.batch * eff.accumulate > (1 << 24))
    return CT_FAIL(CT_ERR_USAGE, "--accumulate: %d x --batch %d exceeds %d samples per step",
                   eff.accumulate, eff.batch, 1 << 24);
  eff.batch *= eff.accumulate;
  s.cfg = &eff;
  s.comm = comm;
  s.res = res;
  ct_status st = ct_run_setup(&s);
  if (st == CT_OK) st = ct_run_train(&s);
  if (st == CT_OK) st = ct_report_end(&s);
  ct_run_teardown(&s);
  return st;
}
