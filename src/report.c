// report.c: the run's lines, --metrics records, --profile tables and the per-rank table at the
// end, and the progress line. See report.h.
#include "cltrain/report.h"

#include <math.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/balance.h"
#include "cltrain/blas.h"
#include "cltrain/evaluate.h"
#include "cltrain/prof.h"
#include "cltrain/sync.h"
#include "cltrain/timer.h"
#include "cltrain/version.h"

// ---- --metrics ------------------------------------------------------------------------------

ct_status ct_report_metrics_open(ct_run_state *s) {
  int bad = 0;
  ct_status st = CT_OK;
  if (R0 && s->cfg->metrics) {
    st = ct_metrics_open(&s->metrics, s->cfg->metrics);
    bad = st != CT_OK;
  }
  CT_TRY(ct_comm_allreduce_int_max(s->comm, &bad, 1));
  if (st != CT_OK) return st;
  if (bad) return CT_FAIL(CT_ERR_IO, "--metrics: rank 0 could not create '%s'", s->cfg->metrics);
  return CT_OK;
}

static ct_status metrics_put(ct_run_state *s, ct_json *j) {
  ct_status st = ct_json_end(j);
  if (st == CT_OK) st = ct_metrics_write(&s->metrics, j);
  free(j->buf);
  return st;
}

static void json_shares(ct_run_state *s, ct_json *j) {
  if (s->comm->size < 2) return;
  ct_balance_full_shares(s, s->weights, s->tmp_shares);
  char buf[32];
  ct_json items = {0};
  for (int r = 0; r < s->comm->size; r++) {
    snprintf(buf, sizeof buf, "%d", s->tmp_shares[r]);
    ct_json_raw(&items, NULL, buf);
  }
  ct_json_array(j, "shares", &items);
}

// The first record: what ran, where, with what.
static ct_status metrics_config(ct_run_state *s) {
  if (!R0 || !s->metrics.f) return CT_OK;
  const ct_train_config *c = s->cfg;
  char mpi[256], buf[64];
  CT_TRY(ct_version_mpi(mpi, sizeof mpi));
  ct_clblast_version(buf, sizeof buf);   // the library loaded, as --version says
  ct_json j;
  ct_json_begin(&j);
  ct_json_str(&j, "type", "config");
  ct_json_num(&j, "time", ct_wall_seconds());
  ct_json_str(&j, "cltrain", ct_version());
  ct_json_str(&j, "clblast", buf);
  ct_json_str(&j, "mpi", mpi);
  ct_json_int(&j, "world", s->comm->size);
  ct_json_str(&j, "arch", s->arch.text);
  ct_json_int(&j, "params", (long long)s->arch.param_count);
  ct_json_str(&j, "data", c->data_dir);
  ct_json_str(&j, "data_format", s->train.format);
  char shape[64];
  snprintf(shape, sizeof shape, "[%d,%d,%d]", s->train.channels, s->train.rows, s->train.cols);
  ct_json_raw(&j, "input_shape", shape);
  ct_json_int(&j, "classes", s->train.classes);
  ct_json_int(&j, "train_samples", s->train.count);
  ct_json_int(&j, "test_samples", s->test.count);
  ct_json_int(&j, "epochs", c->epochs);
  ct_json_int(&j, "batch", c->batch / (c->accumulate > 1 ? c->accumulate : 1));
  ct_json_int(&j, "accumulate", c->accumulate > 1 ? c->accumulate : 1);
  ct_json_int(&j, "global_batch", c->batch);
  ct_json_str(&j, "optimizer", c->optim.kind == CT_OPT_SGD ? "sgd" : "adamw");
  ct_json_num(&j, "lr", c->optim.lr);
  ct_json_int(&j, "seed", (long long)c->seed);
  ct_json_str(&j, "sync", ct_sync_name(s->mode, s->mode_k, buf, sizeof buf));
  ct_json_str(&j, "balance", s->policy->name);
  ct_json_str(&j, "wire", ct_wire_name((ct_wire)c->wire));
  ct_json_num(&j, "bucket_mb", c->bucket_mb);
  ct_json_int(&j, "shard_update", s->shard);
  json_shares(s, &j);
  if (s->resumed_from) {   // the checkpoint this run continues
    ct_json from;
    ct_json_begin(&from);
    ct_json_str(&from, "path", s->resumed_from);
    ct_json_int(&from, "step", s->resumed_step);
    ct_json_int(&from, "world", s->resumed_world);
    ct_json_int(&from, "format", s->resumed_format);
    if (ct_json_end(&from) == CT_OK) ct_json_raw(&j, "resumed", from.buf);
    else j.oom = 1;
    free(from.buf);
  } else {
    ct_json_raw(&j, "resumed", "null");
  }
  ct_json_raw(&j, "devices", s->devices_json ? s->devices_json : "[]");
  return metrics_put(s, &j);
}

// Per rank, since the start: compute, copies, MPI, waiting, exposed communication (seconds).
static ct_status metrics_ranks(ct_run_state *s, ct_json *j) {
  enum { K = 5 };
  ct_train_result *r = s->res;
  double mine[K] = {r->compute_s, s->ars.d2h_s + s->ars.h2d_s, s->ars.mpi_s, r->wait_s,
                    s->exposed_s};
  int world = s->comm->size;
  double *all = malloc((size_t)world * K * sizeof *all);
  if (!all) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  ct_status st = world > 1 ? ct_comm_gather_double(s->comm, mine, K, all) : CT_OK;
  if (world == 1) memcpy(all, mine, sizeof mine);
  if (st == CT_OK && R0 && s->metrics.f) {
    ct_json items = {0};
    for (int q = 0; q < world; q++) {
      ct_json one;
      ct_json_begin(&one);
      ct_json_int(&one, "rank", q);
      static const char *const names[K] = {"compute_s", "copy_s", "mpi_s", "wait_s", "exposed_s"};
      for (int k = 0; k < K; k++) ct_json_num(&one, names[k], all[(size_t)q * K + k]);
      ct_json_item(&items, &one);
    }
    ct_json_array(j, "ranks", &items);
  }
  free(all);
  return st;
}

static ct_status report_devices(ct_run_state *s);

// The run's first lines and the config record.
ct_status ct_report_start(ct_run_state *s, uint64_t checksum) {
  const ct_train_config *cfg = s->cfg;
  int world = s->comm->size;
  if (s->train.seq > 0)   // a text
    ct_say(s, "cltrain: model %s (%zu parameters), %d rank(s), global batch %d, %s, text %s (a "
           "vocabulary of %d bytes; %d training and %d validation windows of %d+1)\n",
           s->arch.text, s->arch.param_count, world, cfg->batch,
           cfg->optim.kind == CT_OPT_SGD ? "sgd" : "adamw", cfg->text, s->train.classes,
           s->train.count, s->test.count, s->train.seq);
  else
    ct_say(s, "cltrain: model %s (%zu parameters), %d rank(s), global batch %d, %s, data %s (%s, "
           "%dx%dx%d, %d classes; %d train, %d test)\n",
           s->arch.text, s->arch.param_count, world, cfg->batch,
           cfg->optim.kind == CT_OPT_SGD ? "sgd" : "adamw", cfg->data_dir, s->train.format,
           s->train.channels, s->train.rows, s->train.cols, s->train.classes, s->train.count,
           s->test.count);
  CT_TRY(report_devices(s));
  ct_say(s, "cltrain: parameter checksum %016llx on every rank\n", (unsigned long long)checksum);
  if (world > 1) {
    char mode[64];
    ct_balance_full_shares(s, s->weights, s->tmp_shares);
    if (R0) {
      printf("cltrain: --balance %s%s, --sync %s; shares of a batch of %d:", s->policy->name,
             s->policy_chosen ? " (auto)" : "", ct_sync_name(s->mode, s->mode_k, mode,
                                                             sizeof mode), cfg->batch);
      for (int r = 0; r < world; r++) printf(" %d", s->tmp_shares[r]);
      printf("\n");
      fflush(stdout);
    }
  }
  return metrics_config(s);
}

ct_status ct_report_log(ct_run_state *s, long step, int epoch, double loss, double lr,
                        double rate, double t_train) {
  if (!R0 || !s->metrics.f) return CT_OK;
  ct_json j;
  ct_json_begin(&j);
  ct_json_str(&j, "type", "log");
  ct_json_num(&j, "time", ct_wall_seconds());
  ct_json_int(&j, "step", step);
  ct_json_int(&j, "epoch", epoch + 1);
  ct_json_num(&j, "loss", loss);
  ct_json_num(&j, "lr", lr);
  ct_json_num(&j, "samples_per_s", rate);
  ct_json_num(&j, "train_s", t_train);
  json_shares(s, &j);
  return metrics_put(s, &j);
}

ct_status ct_report_epoch(ct_run_state *s, int epoch, long step, double value, double t_train) {
  char v[64];
  s->metric->format(value, v, sizeof v);
  ct_say(s, "epoch %3d  %s %s  (%.1f s training so far)\n", epoch + 1, s->metric->label, v,
         t_train);
  if (!s->cfg->metrics) return CT_OK;   // (collective: the per-rank times are gathered)
  ct_json j;
  ct_json_begin(&j);
  ct_json_str(&j, "type", "epoch");
  ct_json_num(&j, "time", ct_wall_seconds());
  ct_json_int(&j, "epoch", epoch + 1);
  ct_json_int(&j, "step", step);
  ct_json_num(&j, s->metric->key, value);
  ct_json_num(&j, "train_s", t_train);
  ct_json_num(&j, "eval_s", s->res->eval_s);
  ct_status mst = metrics_ranks(s, &j);
  if (mst == CT_OK && R0) mst = metrics_put(s, &j);
  else free(j.buf);
  return mst;
}

// ---- the start: devices ---------------------------------------------------------------------

// Rank 0 prints which device each rank trains on, and where its GEMM choices come from.
static ct_status report_devices(ct_run_state *s) {
  enum { W = 1024 };
  char mine[W];
  const struct ct_blas_state *b = s->dev.blas;
  char host[MPI_MAX_PROCESSOR_NAME + 1] = "?";
  int hlen = 0;
  if (MPI_Get_processor_name(host, &hlen) != MPI_SUCCESS) hlen = 0;
  host[hlen > 0 ? hlen : 1] = 0;
  // which node (hostfile order of first ranks) and local rank: the device follows the local rank
  snprintf(mine, W, "%d:%d %s [%s] (node %d of %d, %s, local rank %d), GEMMs: %s",
           s->dev.info.platform, s->dev.info.index, s->dev.info.name, s->dev.info.platform_name,
           s->comm->node, s->comm->nodes, host, s->comm->local_rank,
           b->nplans ? b->source : "defaults (no tuning cache: cltrain-tune, or --tune)");
  char *all = R0 ? malloc((size_t)s->comm->size * W) : NULL;
  if (R0 && !all) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  int rc = MPI_Gather(mine, W, MPI_CHAR, all, W, MPI_CHAR, 0, s->comm->comm);
  if (rc != MPI_SUCCESS) {
    free(all);
    return CT_FAIL(CT_ERR_MPI, "MPI_Gather of device names failed on rank %d", s->comm->rank);
  }
  for (int r = 0; R0 && r < s->comm->size; r++)
    ct_say(s, "cltrain: rank %d on %s\n", r, all + (size_t)r * W);
  // the same as JSON, for the metrics' first record
  ct_json j;
  ct_json_begin(&j);
  ct_json_int(&j, "rank", s->comm->rank);
  ct_json_int(&j, "node", s->comm->node);
  ct_json_str(&j, "host", host);
  ct_json_int(&j, "local_rank", s->comm->local_rank);
  ct_json_str(&j, "platform", s->dev.info.platform_name);
  ct_json_str(&j, "device", s->dev.info.name);
  ct_json_str(&j, "vendor", s->dev.info.vendor);
  ct_json_str(&j, "driver", s->dev.info.driver);
  ct_json_str(&j, "opencl", s->dev.info.version);
  ct_json_str(&j, "gemm_plans", b->nplans ? b->source : "");
  ct_status st = ct_json_end(&j);
  snprintf(mine, W, "%s", st == CT_OK && j.len < W ? j.buf : "{}");
  free(j.buf);
  rc = MPI_Gather(mine, W, MPI_CHAR, all, W, MPI_CHAR, 0, s->comm->comm);
  if (rc != MPI_SUCCESS) {
    free(all);
    return CT_FAIL(CT_ERR_MPI, "MPI_Gather of device records failed on rank %d", s->comm->rank);
  }
  if (R0) {
    ct_json arr = {0};   // the items, comma-separated
    for (int r = 0; r < s->comm->size; r++) ct_json_raw(&arr, NULL, all + (size_t)r * W);
    free(s->devices_json);
    s->devices_json = NULL;
    if (!arr.oom && arr.buf) {
      size_t n = arr.len + 3;
      s->devices_json = malloc(n);
      if (s->devices_json) snprintf(s->devices_json, n, "[%s]", arr.buf);
    }
    free(arr.buf);
  }
  free(all);
  return CT_OK;
}

// ---- --profile ------------------------------------------------------------------------------

static int by_seconds(const void *a, const void *b) {
  double x = ((const ct_prof_row *)a)->seconds, y = ((const ct_prof_row *)b)->seconds;
  return x < y ? 1 : x > y ? -1 : 0;
}

// This rank's --profile table as text (rank 0 prints every rank's).
static void profile_text(ct_run_state *s, char *buf, size_t size) {
  int n;
  const ct_prof_row *rows0 = ct_prof_rows(&s->dev, &n);
  ct_prof_row *rows = malloc((size_t)(n + 4) * sizeof *rows);
  size_t len = 0;
#define OUT(...)                                                                    \
  do {                                                                              \
    int w_ = snprintf(buf + len, len < size ? size - len : 0, __VA_ARGS__);         \
    if (w_ > 0) len += (size_t)w_;                                                  \
  } while (0)
  if (!rows) {
    snprintf(buf, size, "rank %d: out of host memory for the profile\n", s->comm->rank);
    return;
  }
  memcpy(rows, rows0, (size_t)n * sizeof *rows);
  // host rows measured by the trainer, on the step's critical path
  int nh = 0;
  ct_prof_row host[3];
  memset(host, 0, sizeof host);
  snprintf(host[nh].name, sizeof host[nh].name, "host: waiting for the loader thread");
  host[nh].kind = CT_PROF_HOST, host[nh].seconds = s->wait_loader_s, host[nh].calls = 0;
  nh++;
  if (s->comm->size > 1) {
    snprintf(host[nh].name, sizeof host[nh].name, "host: all-reduce (staging copies + MPI)");
    host[nh].kind = CT_PROF_HOST, host[nh].seconds = s->allreduce_s;
    nh++;
    if (s->cfg->timing) {
      snprintf(host[nh].name, sizeof host[nh].name, "host: barrier before the all-reduce");
      host[nh].kind = CT_PROF_HOST, host[nh].seconds = s->barrier_s;
      nh++;
    }
  }
  memcpy(rows + n, host, (size_t)nh * sizeof *host);
  n += nh;
  qsort(rows, (size_t)n, sizeof *rows, by_seconds);
  double T = s->step_s, sum = 0, dev_s = 0;
  long steps = s->res->steps - CT_WARMUP_STEPS;
  OUT("\nprofile, rank %d on %s: %ld steps after %d warm-up, %.3f s of steps (%.2f ms per step)\n",
      s->comm->rank, s->dev.info.name, steps, CT_WARMUP_STEPS, T, steps > 0 ? 1e3 * T / steps : 0);
  OUT("%-52s %8s %10s %7s %9s\n", "kernel / phase", "calls", "total ms", "% step", "GFLOP/s");
  for (int i = 0; i < n; i++) {
    const ct_prof_row *r = &rows[i];
    sum += r->seconds;
    if (r->kind != CT_PROF_HOST) dev_s += r->seconds;
    char gf[16] = "";
    if (r->flops > 0 && r->seconds > 0)
      snprintf(gf, sizeof gf, "%.1f", r->flops / r->seconds / 1e9);
    char calls[16] = "-";
    if (r->kind != CT_PROF_HOST) snprintf(calls, sizeof calls, "%ld", r->calls);
    OUT("%-52.52s %8s %10.2f %6.1f%% %9s\n", r->name, calls, 1e3 * r->seconds,
        T > 0 ? 100.0 * r->seconds / T : 0.0, gf);
  }
  OUT("%-52s %8s %10.2f %6.1f%%\n", "sum of the rows", "", 1e3 * sum,
      T > 0 ? 100.0 * sum / T : 0.0);
  OUT("%-52s %8s %10.2f %6.1f%%\n", "(device busy: kernels and transfers)", "", 1e3 * dev_s,
      T > 0 ? 100.0 * dev_s / T : 0.0);
  OUT("%-52s %8s %10.2f %6s  (overlapped, not in the sum)\n", "loader thread: batch preparation",
      "", 1e3 * s->prep_s, "");
  free(rows);
#undef OUT
}

static ct_status report_profile(ct_run_state *s) {
  enum { W = 16384 };
  char *mine = malloc(W);
  char *all = R0 ? malloc((size_t)s->comm->size * W) : NULL;
  ct_status st = CT_OK;
  if (!mine || (R0 && !all)) {
    st = CT_FAIL(CT_ERR_NOMEM, "out of host memory");
    goto out;
  }
  profile_text(s, mine, W);
  mine[W - 1] = 0;
  if (s->comm->size > 1) {
    int rc = MPI_Gather(mine, W, MPI_CHAR, all, W, MPI_CHAR, 0, s->comm->comm);
    if (rc != MPI_SUCCESS) {
      st = CT_FAIL(CT_ERR_MPI, "MPI_Gather of profiles failed on rank %d", s->comm->rank);
      goto out;
    }
  } else {
    memcpy(all, mine, W);
  }
  for (int r = 0; R0 && r < s->comm->size; r++) fputs(all + (size_t)r * W, stdout);
  fflush(stdout);
out:
  free(mine), free(all);
  return st;
}

// ---- the end --------------------------------------------------------------------------------

ct_status ct_report_trace(ct_run_state *s) {
  if (!s->cfg->trace) return CT_OK;
  char label[400];
  snprintf(label, sizeof label, "rank %d: %s [%s]", s->comm->rank, s->dev.info.name,
           s->dev.info.platform_name);
  return ct_trace_write(&s->trace, s->comm, label, s->cfg->trace);
}

enum { K = 11 };   // the per-rank figures gathered at the end

// The per-rank table (after the warm-up steps when there were enough) and its mean (mean[K]).
static void print_table(ct_run_state *s, const double *all, double *mean) {
  ct_comm *comm = s->comm;
  ct_train_result *r = s->res;
  if (r->steps > 2 * CT_WARMUP_STEPS)
    printf("\nper rank, after the %d warm-up steps (kernels build in them):", CT_WARMUP_STEPS);
  if (r->steps > 0)   // (a resumed run with nothing left to train has no table)
    printf("\nrank  compute_s   copies_s   mpi_s    wait_s   step_s   comm%%  exposed%%   "
           "samples/s   GFLOP/s  util%%\n");
  for (int k = 0; k <= comm->size; k++) {
    const double *v = k < comm->size ? all + K * k : mean;
    if (k < comm->size)
      for (int j = 0; j < K; j++) mean[j] += v[j] / comm->size;
    if (r->steps == 0) continue;
    char label[16], util[16] = "    -";
    if (k < comm->size) snprintf(label, sizeof label, "%d", k);
    else snprintf(label, sizeof label, "mean");
    double comm_frac = v[4] > 0 ? 100.0 * (v[1] + v[2] + v[3]) / v[4] : 0;
    double sps = v[4] > 0 ? v[6] / v[4] : 0;   // this rank's samples over its step time
    if (k < comm->size && v[8] > 0) snprintf(util, sizeof util, "%5.1f", 100.0 * v[7] / v[8]);
    double exposed = v[4] > 0 ? 100.0 * v[9] / v[4] : 0;
    printf("%4s  %9.3f  %9.3f  %7.3f  %7.3f  %7.3f  %5.1f%%  %7.1f%%  %9.1f  %8.1f  %s\n", label,
           v[0], v[1], v[2], v[3], v[4], comm_frac, exposed, sps, v[7], util);
  }
}

// N > 1: the shares at the end, and the bytes the all-reduce sent per step.
static void print_shares(ct_run_state *s, const double *all) {
  ct_comm *comm = s->comm;
  ct_train_result *r = s->res;
  ct_balance_full_shares(s, s->weights, s->tmp_shares);
  printf("\nshares of a batch of %d at the end:", s->cfg->batch);
  for (int k = 0; k < comm->size; k++) printf(" %d", s->tmp_shares[k]);
  printf(" (%ld changes", r->share_changes);
  if (!s->mode->reduces_gradients) printf(", %ld parameter averages", r->averages);
  printf(")\n");
  long measured = r->steps > 2 * CT_WARMUP_STEPS ? r->steps - CT_WARMUP_STEPS : r->steps;
  double sent = 0;
  for (int k = 0; k < comm->size; k++) sent += all[K * k + 10] / comm->size;
  if (measured > 0 && s->mode->reduces_gradients)
    printf("all-reduce: %.4g MB sent per step and rank (gradients as %s on the wire%s)\n",
           sent / (double)measured / 1e6, ct_wire_name((ct_wire)s->cfg->wire),
           s->nb > 0   ? ", in buckets"
           : s->shard ? "; reduce-scattered, parameters all-gathered"
                      : "");
}

// The final record, with the per-rank table (after the warm-up steps), and the file closed.
static ct_status final_record(ct_run_state *s, const double *all) {
  ct_train_result *r = s->res;
  ct_json j;
  ct_json_begin(&j);
  ct_json_str(&j, "type", "final");
  ct_json_num(&j, "time", ct_wall_seconds());
  ct_json_num(&j, s->metric->key, r->test_acc);
  ct_json_num(&j, "loss", r->last_loss);
  ct_json_int(&j, "steps", r->steps);
  ct_json_int(&j, "skipped", r->bad_steps);
  ct_json_int(&j, "divergences", r->divergences);
  ct_json_int(&j, "share_changes", r->share_changes);
  ct_json_num(&j, "train_s", r->train_s);
  ct_json_num(&j, "eval_s", r->eval_s);
  ct_json_num(&j, "samples_per_s", r->samples_per_s);
  ct_json items = {0};
  static const char *const names[] = {"compute_s", "copy_s", "mpi_s", "wait_s", "step_s",
                                      "exposed_s", "sent_bytes", "samples", "gflops"};
  static const int at[] = {0, 1, 2, 3, 4, 9, 10, 6, 7};   // (their places in the gathered rows)
  for (int q = 0; q < s->comm->size; q++) {
    ct_json one;
    ct_json_begin(&one);
    ct_json_int(&one, "rank", q);
    for (int k = 0; k < (int)(sizeof at / sizeof at[0]); k++)
      ct_json_num(&one, names[k], all[(size_t)K * q + at[k]]);
    ct_json_item(&items, &one);
  }
  ct_json_array(&j, "ranks", &items);
  CT_TRY(metrics_put(s, &j));
  return ct_metrics_close(&s->metrics);
}

// The final lines: the metric, the loss, the steps, the times, and the flops achieved.
static void print_final(ct_run_state *s, const double *mean) {
  ct_train_result *r = s->res;
  const char *label = s->metric->label;
  char v[64];
  s->metric->format(r->test_acc, v, sizeof v);
  if (r->steps == 0) {   // resumed at or past the end: the checkpoint's model, evaluated
    printf("\nfinal: %s %s, 0 steps (the checkpoint is already at the end of --epochs %d%s), "
           "%.1f s evaluation\n", label, v, s->cfg->epochs,
           s->cfg->max_steps > 0 ? " or --max-steps" : "", r->eval_s);
    fflush(stdout);
    return;
  }
  char tokens[48] = "";
  if (s->labels > 1) snprintf(tokens, sizeof tokens, " (%.0f tokens/s)", r->samples_per_s * s->labels);
  printf("\nfinal: %s %s, loss %.4f, %ld steps (%ld skipped), %ld divergences, "
         "%.1f s training, %.1f s evaluation, %.1f samples/s%s\n",
         label, v, r->last_loss, r->steps, r->bad_steps, r->divergences, r->train_s,
         r->eval_s, r->samples_per_s, tokens);
  double g = r->samples_per_s * r->flops_per_sample / 1e9;
  printf("flops: %.3f MFLOP per sample and step (matrix products), %.1f GFLOP/s achieved in all",
         r->flops_per_sample / 1e6, g);
  if (mean[8] > 0)
    printf(", device utilisation %.1f%% of the peak multiply-add rate (%.1f GFLOP/s per device, "
           "measured at start)\n", 100.0 * g / s->comm->size / mean[8], mean[8]);
  else
    printf(", device utilisation unknown (no peak rate: a simulator)\n");
  fflush(stdout);
}

// Rank 0 prints each rank's time per phase (gathered) and the mean over ranks.
ct_status ct_report_end(ct_run_state *s) {
  ct_comm *comm = s->comm;
  ct_train_result *r = s->res;
  if (s->cfg->profile) CT_TRY(report_profile(s));
  double mine[K] = {r->compute_s, r->copy_s, r->mpi_s, r->wait_s, r->phase_s, r->eval_s,
                    r->local_samples, r->gflops, r->peak_gflops, r->exposed_s, r->sent_bytes};
  double *all = malloc((size_t)comm->size * K * sizeof *all);
  if (!all) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  ct_status st = comm->size > 1 ? ct_comm_gather_double(comm, mine, K, all) : CT_OK;
  if (comm->size == 1) memcpy(all, mine, sizeof mine);
  if (st == CT_OK && R0) {
    double mean[K] = {0};
    print_table(s, all, mean);
    if (comm->size > 1) print_shares(s, all);
    if (s->metrics.f) st = final_record(s, all);
    print_final(s, mean);
  }
  free(all);
  return st;
}

// ---- the progress line ----------------------------------------------------------------------

void ct_progress_start(ct_progress *p, int rank0, long si_epoch) {
  memset(p, 0, sizeof *p);
  p->si_epoch = si_epoch;
  // a terminal: stderr's, or stdout's (under mpirun only stdout is one: Open MPI gives the
  // ranks a pseudo-terminal for it and a pipe for stderr)
  p->out = !rank0 ? NULL : isatty(STDERR_FILENO) ? stderr : isatty(STDOUT_FILENO) ? stdout : NULL;
  p->on = p->out != NULL;
}

void ct_progress_draw(ct_progress *p, int epoch, int epochs, long si, long spe, double loss,
                          double sps, double t_train, int force) {
  double now = ct_now();
  if (!p->on || (!force && now - p->last < 0.2)) return;
  p->last = now;
  enum { W = 24 };
  char bar[W + 1];
  int fill = spe > 0 ? (int)((double)W * (double)si / (double)spe) : W;
  for (int i = 0; i < W; i++) bar[i] = i < fill ? '#' : '-';
  bar[W] = 0;
  double per = si > p->si_epoch ? (t_train - p->t_epoch) / (double)(si - p->si_epoch) : 0;
  double eta = per * (double)(spe - si);
  char l[32] = "-", r[32] = "-";   // not known yet: no step finished, too short to measure
  if (isfinite(loss) && loss > 0) snprintf(l, sizeof l, "%.4f", loss);
  if (t_train - p->t_epoch > 0.05) snprintf(r, sizeof r, "%.0f", sps);
  fprintf(p->out, "\repoch %d/%d [%s] %ld/%ld  loss %s  %s samples/s  ETA %d:%02d \033[K",
          epoch + 1, epochs, bar, si, spe, l, r, (int)eta / 60, (int)eta % 60);
  fflush(p->out);
  p->drawn = 1;
}

void ct_progress_end(ct_progress *p) {
  if (p->on && p->drawn) {
    fputc('\n', p->out);
    fflush(p->out);
  }
  p->drawn = 0;
}
