// resume.c: the run's starting point (--resume PATH, --resume auto, the seed) and the run state a
// checkpoint holds beyond the math (the sync mode's position, the balance). See resume.h.
#include "cltrain/resume.h"

#include <stdio.h>
#include <string.h>

#include "cltrain/balance.h"
#include "cltrain/sync.h"
#include "cltrain/weights.h"

ct_status ct_resume_save(ct_run_state *s, const ct_checkpoint_pos *pos) {
  const ct_train_config *cfg = s->cfg;
  ct_checkpoint_run run;
  memset(&run, 0, sizeof run);
  run.present = 1;
  ct_sync_name(s->mode, s->mode_k, run.sync, sizeof run.sync);
  // (a checkpoint is written where the replicas agree: the loop's checkpoint flush has applied
  // a pending stale step and made local:K's average; both are 0 here)
  run.since_avg = s->loc.since_avg;
  run.pending = s->pend.valid;
  ct_balance_save(s, &run);
  return ct_checkpoint_save(cfg->checkpoint, &s->model, &s->opt, pos, cfg->seed, cfg->shuffle,
                            &run, s->comm, s->host_params);
}

// Whether --resume auto finds something at --checkpoint: rank 0 looks, every rank follows.
static ct_status auto_finds(ct_run_state *s, const char *path, int *there) {
  *there = R0 ? ct_checkpoint_exists(path) : 0;
  if (s->comm->size > 1) CT_TRY(ct_comm_allreduce_int_max(s->comm, there, 1));
  return CT_OK;
}

ct_status ct_resume_start(ct_run_state *s, long steps_per_epoch, ct_checkpoint_pos *pos) {
  const ct_train_config *cfg = s->cfg;
  const char *path = cfg->resume;
  memset(pos, 0, sizeof *pos);
  s->resumed_from = NULL;
  if (cfg->resume_auto) {
    int there;
    path = cfg->checkpoint;
    CT_TRY(auto_finds(s, path, &there));
    if (!there) {
      ct_say(s, "cltrain: --resume auto: no checkpoint at %s yet: starting from the seed\n", path);
      path = NULL;
    }
  }
  if (!path && cfg->init_from) {   // a fresh start from given weights
    CT_TRY(ct_run_init_from(s, cfg->init_from));
    ct_say(s, "cltrain: initial weights from %s\n", cfg->init_from);
    return CT_OK;
  }
  if (!path) {
    ct_model_init_params(&s->arch, cfg->seed, s->host_params);
    return CT_OK;
  }
  ct_checkpoint_run run;
  int version = 0;
  CT_TRY(ct_checkpoint_load(path, &s->arch, &s->opt, s->host_params, pos, cfg->seed,
                            cfg->shuffle, cfg->batch, &run, &version));
  if (pos->step_in_epoch >= steps_per_epoch) {
    pos->epoch++;
    pos->step_in_epoch = 0;
  }
  // The sync mode's position needs nothing more: a checkpoint holds no pending stale step and
  // no local:K steps since an average (the loader refuses one that does), so a resumed run
  // starts a fresh K-cycle, as the run that wrote it did right after writing it.
  char what[256], saved[96] = "";
  ct_status st = ct_balance_resume(s, &run, what, sizeof what);
  char mode[32];
  if (run.present && strcmp(run.sync, ct_sync_name(s->mode, s->mode_k, mode, sizeof mode)) != 0)
    snprintf(saved, sizeof saved, " under --sync %s", run.sync);
  ct_checkpoint_run_free(&run);
  CT_TRY(st);
  ct_say(s, "resumed from %s at step %ld (epoch %d, step %ld of it), saved by %d rank(s)%s%s%s\n",
         path, pos->step, pos->epoch + 1, pos->step_in_epoch, pos->world, saved,
         cfg->resume_auto ? " (--resume auto)" : "",
         version < 2 ? "; format version 1: it holds no shares or sync state (this run's defaults)"
                     : "");
  if (what[0]) ct_say(s, "cltrain: --balance %s: %s\n", s->policy->name, what);
  s->resumed_from = path;
  s->resumed_step = pos->step;
  s->resumed_world = pos->world;
  s->resumed_format = version;
  return CT_OK;
}
