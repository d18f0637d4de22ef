// loader.c: the loader thread (the prepare phase of a step). See loader.h.
#include "cltrain/loader.h"

#include <stdio.h>
#include <string.h>

#include "cltrain/timer.h"
#include "cltrain/trainer.h"

// Fills slot b: waits until the device has read it, cuts this rank's share of the step's global
// batch (the shares from the weights posted with it) and gathers and normalises its samples.
static ct_status prepare(ct_loader *L, ct_slot *b) {
  double t0 = ct_now();
  if (b->written) {   // the device may still be reading this slot
    CL_CHECK(clWaitForEvents(1, &b->written));
    clReleaseEvent(b->written);
    b->written = NULL;
  }
  const ct_train_config *cfg = L->cfg;
  if (L->order_epoch != b->epoch) {
    ct_epoch_order(L->train->count, cfg->seed, b->epoch, cfg->shuffle, L->order);
    L->order_epoch = b->epoch;
  }
  long spe = (L->train->count + cfg->batch - 1) / cfg->batch;
  const int *gb = L->order + b->si * cfg->batch;
  b->n = (int)(b->si == spe - 1 ? L->train->count - b->si * cfg->batch : cfg->batch);
  ct_shares_weighted(b->n, L->world, b->weights, b->shares);
  b->m = ct_shard_take(cfg->shard, L->train, gb, b->n, cfg->seed, b->step, b->shares, L->world,
                       L->rank, b->mine);
  if (b->m < 0) return CT_FAIL(CT_ERR_INTERNAL, "ct_shard_take failed at step %ld", b->step);
  b->offset = 0;   // dropout masks follow the position in the global batch
  for (int r = 0; r < L->rank; r++) b->offset += b->shares[r];
  ct_dataset_gather(L->train, b->mine, b->m, cfg->norm_mean, cfg->norm_std, b->x, b->y);
  b->prep_s = ct_now() - t0;
  return CT_OK;
}

static void *loader_main(void *arg) {
  ct_loader *L = arg;
  pthread_mutex_lock(&L->mu);
  for (;;) {
    while (!L->job && !L->quit) pthread_cond_wait(&L->cv, &L->mu);
    if (L->quit) break;
    ct_slot *b = L->job;
    pthread_mutex_unlock(&L->mu);
    ct_status st = prepare(L, b);
    pthread_mutex_lock(&L->mu);
    if (st != CT_OK && L->st == CT_OK) {
      L->st = st;
      snprintf(L->err, sizeof L->err, "%s", ct_error_text());
      ct_error_clear();
    }
    L->job = NULL;
    L->done = 1;
    pthread_cond_broadcast(&L->cv);
  }
  pthread_mutex_unlock(&L->mu);
  return NULL;
}

ct_status ct_loader_start(ct_loader *L) {
  L->order_epoch = -1;
  if (pthread_mutex_init(&L->mu, NULL) || pthread_cond_init(&L->cv, NULL))
    return CT_FAIL(CT_ERR_INTERNAL, "pthread_mutex_init/pthread_cond_init failed");
  if (pthread_create(&L->thread, NULL, loader_main, L))
    return CT_FAIL(CT_ERR_INTERNAL, "cannot start the loader thread");
  L->started = 1;
  return CT_OK;
}

void ct_loader_stop(ct_loader *L) {
  if (!L->started) return;
  pthread_mutex_lock(&L->mu);
  while (L->job) pthread_cond_wait(&L->cv, &L->mu);   // never leave it inside a slot
  L->quit = 1;
  pthread_cond_broadcast(&L->cv);
  pthread_mutex_unlock(&L->mu);
  pthread_join(L->thread, NULL);
  pthread_cond_destroy(&L->cv);
  pthread_mutex_destroy(&L->mu);
  L->started = 0;
}

void ct_loader_post(ct_loader *L, ct_slot *b, int epoch, long si, long step,
                        const uint32_t *weights) {
  pthread_mutex_lock(&L->mu);
  b->epoch = epoch, b->si = si, b->step = step;
  memcpy(b->weights, weights, (size_t)L->world * sizeof *weights);
  L->job = b;
  L->done = 0;
  pthread_cond_broadcast(&L->cv);
  pthread_mutex_unlock(&L->mu);
}

ct_status ct_loader_wait(ct_loader *L, double *waited) {
  double t0 = ct_now();
  pthread_mutex_lock(&L->mu);
  while (L->job) pthread_cond_wait(&L->cv, &L->mu);
  ct_status st = L->st;
  char err[512];
  snprintf(err, sizeof err, "%s", L->err);
  pthread_mutex_unlock(&L->mu);
  *waited = ct_now() - t0;
  if (st != CT_OK) return CT_FAIL(st, "%s", err);
  return CT_OK;
}
