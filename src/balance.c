// balance.c: the --balance policies, one table entry each (balance.h), and the throughput
// policy's measurements, proposals and trials.
#include "cltrain/balance.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/args.h"

void ct_balance_full_shares(ct_run_state *s, const uint32_t *w, int *shares) {
  ct_shares_weighted(s->cfg->batch, s->comm->size, w, shares);
}

// ---- the ranks' devices ------------------------------------------------------------------------

static uint64_t fnv1a(const char *text) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (const char *p = text; *p; p++) h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
  return h;
}

// Every rank's device (host, local rank, platform and device) and device model (platform and
// device names), as hashes, into s->bal.ids on every rank: an all-gather. auto compares the
// models; a checkpoint keeps both, so that a run resumed on other ranks finds each device's
// measured rate (ct_balance_resume).
static ct_status identify(ct_run_state *s) {
  int world = s->comm->size;
  char host[MPI_MAX_PROCESSOR_NAME + 1] = "?", id[600];
  int hlen = 0;
  if (MPI_Get_processor_name(host, &hlen) != MPI_SUCCESS)
    return CT_FAIL(CT_ERR_MPI, "MPI_Get_processor_name failed on rank %d", s->comm->rank);
  host[hlen > 0 ? hlen : 1] = 0;
  snprintf(id, sizeof id, "%s|%s", s->dev.info.platform_name, s->dev.info.name);
  uint64_t mine[2] = {0, fnv1a(id)};
  snprintf(id, sizeof id, "%s|%d|%s|%s", host, s->comm->local_rank, s->dev.info.platform_name,
           s->dev.info.name);
  mine[0] = fnv1a(id);
  if (world == 1) {
    s->bal.ids[0] = mine[0], s->bal.ids[1] = mine[1];
    return CT_OK;
  }
  uint64_t *all = malloc(2 * (size_t)world * sizeof *all);
  if (!all) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  int rc = MPI_Allgather(mine, 2, MPI_UINT64_T, all, 2, MPI_UINT64_T, s->comm->comm);
  for (int r = 0; r < world && rc == MPI_SUCCESS; r++)
    s->bal.ids[r] = all[2 * r], s->bal.ids[world + r] = all[2 * r + 1];
  free(all);
  if (rc != MPI_SUCCESS)
    return CT_FAIL(CT_ERR_MPI, "MPI_Allgather of device identities failed on rank %d",
                   s->comm->rank);
  return CT_OK;
}

// ---- auto -----------------------------------------------------------------------------------

static const ct_balance_policy *find(const char *name);

// Throughput when the ranks' device models differ (platform and device names: identify), even
// when they are all the same model.
static ct_status auto_choose(ct_run_state *s, const ct_balance_policy **chosen) {
  int world = s->comm->size;
  const uint64_t *model = s->bal.ids + world;
  *chosen = find("even");
  int differ = 0;
  for (int r = 1; r < world; r++) differ |= model[r] != model[0];
  if (differ) *chosen = find("throughput");
  return CT_OK;
}

// ---- static ---------------------------------------------------------------------------------

static ct_status static_weights(ct_run_state *s, const ct_balance_choice *c, uint32_t *w) {
  int world = s->comm->size;
  if (c->n_weights != world)
    return CT_FAIL(CT_ERR_USAGE, "--balance: static:W0,W1,... needs %d weights (one per rank), "
                   "got %d", world, c->n_weights);
  for (int r = 0; r < world; r++) w[r] = (uint32_t)c->weights[r];
  return CT_OK;
}

// ---- throughput -----------------------------------------------------------------------------
//
// Every step's status words carry every rank's compute time (the same numbers on every rank
// after the all-reduce). Each rank's time per sample over the steps since the last change is
// checked every balance_every steps (and 3 and 6 steps after the warm-up or a change), and the
// weights become samples per millisecond. A change is proposed when the slowest rank's
// predicted time (time per sample x share) drops by 15 % or more (hysteresis: shares do not
// flap on noise). It is then on trial: the step's critical time (the slowest rank's compute
// time, mean over 6 measured steps) with the new shares must beat the one before by 5 %, or
// the old weights come back and balancing holds still for 100 steps (200, 400, ... after each
// change that did not pay). A proposal goes on trial only when two checks in a row make it, and
// shares are multiples of 8 samples (fewer sizes to build kernels for). Why: a device's time is
// not proportional to its share (a share size its GEMM tuning does not cover can run at half
// the rate; a fixed cost per step counts for more on a small share), and on a shared machine
// the per-sample times move from window to window; the trial measures what the prediction can
// only guess. The steps right after a change are not measured (a new shape may build a kernel
// the first time); no rank gets less than 1/(8 N) of the batch, so a rank that has become slow
// is still measured. Every rank computes the same.

// The window's sums start over (after a change, or a change put back).
static void window_reset(ct_run_state *s) {
  int world = s->comm->size;
  for (int r = 0; r < 2 * world; r++) s->bal.fit[r] = 0;
  s->bal.crit_sum = 0, s->bal.crit_n = 0;
}

// A change on trial, judged on its own window: kept if the slowest rank's mean compute time
// beat the window before it by 5 %, otherwise the old weights come back.
static void judge_trial(ct_run_state *s, long step) {
  ct_balance_state *b = &s->bal;
  int world = s->comm->size;
  double now_crit = b->crit_sum / (double)b->crit_n;
  int keep = now_crit < 0.95 * b->prev_crit;
  b->trial = 0;
  b->est_updates = 0;
  if (!keep) {
    memcpy(s->weights, b->prev_weights, (size_t)world * sizeof *s->weights);
    s->res->share_changes++;
    b->quiet_until = step + 2 + b->hold;   // from the step the loader posts next
    if (b->hold < 100000) b->hold *= 2;
    window_reset(s);
  }
  if (s->comm->rank == 0) {
    ct_balance_full_shares(s, s->weights, s->tmp_shares);
    printf("cltrain: step %ld: shares %s (slowest rank %.2f ms per step, %.2f before)",
           step + 1, keep ? "kept" : "put back to", now_crit, b->prev_crit);
    if (!keep)
      for (int r = 0; r < world; r++) printf(" %d", s->tmp_shares[r]);
    printf("\n");
    fflush(stdout);
  }
}

// The weights the measurements give (b->new_weights) and the shares of a full batch they make
// (s->tmp_shares2; s->tmp_shares: today's). 0 when a rank is not measured yet.
static int measured_shares(ct_run_state *s) {
  ct_balance_state *b = &s->bal;
  int world = s->comm->size;
  double *sum_t = b->fit, *sum_m = b->fit + world;
  uint32_t *w = b->new_weights, most = 1;
  for (int r = 0; r < world; r++) {
    if (!(sum_m[r] > 0) || !(sum_t[r] > 0)) return 0;   // a rank not measured yet
    b->est[r] = sum_t[r] / sum_m[r];                    // ms per sample
    double v = 1024.0 / b->est[r];                      // samples per ms, in 1/1024
    w[r] = v > 4e9 ? 4000000000u : v < 1 ? 1u : (uint32_t)v;
    if (w[r] > most) most = w[r];
  }
  b->est_valid = 1;
  uint32_t floor_w = most / (8u * (uint32_t)world);
  for (int r = 0; r < world; r++)
    if (w[r] < floor_w) w[r] = floor_w;
  ct_balance_full_shares(s, s->weights, s->tmp_shares);
  // Shares in multiples of 8 samples where every rank still gets one: fewer distinct share
  // sizes, so fewer kernel builds, and row counts the GEMM tiles cover well. The weights become
  // the shares themselves (a batch of that size splits exactly so; a short one in proportion).
  int g = 8, units = s->cfg->batch / g;
  ct_shares_weighted(units, world, w, s->tmp_shares2);
  int snapped = 1, given = 0, big = 0;
  for (int r = 0; r < world; r++) {
    if (s->tmp_shares2[r] == 0) snapped = 0;
    given += s->tmp_shares2[r] * g;
    if (w[r] > w[big]) big = r;
  }
  if (snapped) {
    for (int r = 0; r < world; r++) s->tmp_shares2[r] *= g;
    s->tmp_shares2[big] += s->cfg->batch - given;
    for (int r = 0; r < world; r++) w[r] = (uint32_t)s->tmp_shares2[r];
  } else {
    ct_balance_full_shares(s, w, s->tmp_shares2);
  }
  return 1;
}

// The measured shares go on trial.
static void start_trial(ct_run_state *s, long step) {
  ct_balance_state *b = &s->bal;
  int world = s->comm->size;
  b->proposal[0] = -1;
  b->prev_crit = b->crit_sum / (double)b->crit_n;
  memcpy(b->prev_weights, s->weights, (size_t)world * sizeof *s->weights);
  memcpy(s->weights, b->new_weights, (size_t)world * sizeof *s->weights);
  b->trial = 1;
  s->res->share_changes++;
  // the new shares apply from the step the loader prepares next (two steps on); the sums start
  // over after that
  b->quiet_until = step + 4;
  b->est_updates = 0;
  window_reset(s);
  if (s->comm->rank == 0) {
    printf("cltrain: step %ld: shares of a batch of %d now", step + 1, s->cfg->batch);
    for (int r = 0; r < world; r++) printf(" %d", s->tmp_shares2[r]);
    printf(" (measured us per sample:");
    for (int r = 0; r < world; r++) printf(" %.1f", b->est[r] * 1e3);
    printf("; on trial)\n");
    fflush(stdout);
  }
}

// A check: the measured shares are proposed when they cut the slowest rank's predicted time by
// 15 % or more, and go on trial when two checks in a row propose them.
static void check(ct_run_state *s, long step) {
  ct_balance_state *b = &s->bal;
  int world = s->comm->size, g = 8;
  if (!measured_shares(s)) return;
  double now_t = 0, new_t = 0;
  for (int r = 0; r < world; r++) {
    if (b->est[r] * s->tmp_shares[r] > now_t) now_t = b->est[r] * s->tmp_shares[r];
    if (b->est[r] * s->tmp_shares2[r] > new_t) new_t = b->est[r] * s->tmp_shares2[r];
  }
  if (!(new_t < 0.85 * now_t)) {
    b->proposal[0] = -1;
    return;
  }
  // only a proposal two checks in a row make (the same shares, each within half a step of 8
  // samples: shares off the grid of 8, where a rank gets less than 8, are in exact proportion
  // and move by a sample or two with the noise) goes on trial: a trial costs steps at worse
  // shares when it fails, and kernel builds for new sizes
  int same = b->proposal[0] >= 0;
  for (int r = 0; r < world && same; r++)
    same = abs(b->proposal[r] - s->tmp_shares2[r]) <= g / 2;
  if (!same) {
    memcpy(b->proposal, s->tmp_shares2, (size_t)world * sizeof *b->proposal);
    return;
  }
  start_trial(s, step);
}

static void throughput_update(ct_run_state *s, const float *ms, const int *shares, long step,
                              int force) {
  ct_balance_state *b = &s->bal;
  int world = s->comm->size;
  // the first step at shares not seen just before may build kernels for its sizes: not
  // measured (how many steps the loader and, in stale mode, the pending step put between a
  // change and its first step is then no matter)
  if (!force && memcmp(shares, b->seen_shares, (size_t)world * sizeof *shares) != 0) {
    memcpy(b->seen_shares, shares, (size_t)world * sizeof *shares);
    return;
  }
  if (step < b->quiet_until) return;
  // sums over the steps measured since the last change: seconds and samples per rank
  double *sum_t = b->fit, *sum_m = b->fit + world;
  double crit = 0;
  for (int r = 0; r < world; r++) {
    sum_t[r] += ms[r];
    sum_m[r] += shares[r];
    if (ms[r] > crit) crit = ms[r];
  }
  b->crit_sum += crit;
  b->crit_n++;
  long u = ++b->est_updates;
  if (b->trial) {
    if (u >= 6 || (force && u >= 3)) judge_trial(s, step);
    return;
  }
  if (force || u == 3 || u == 6 || u % s->cfg->balance_every == 0) check(s, step);
}

// ---- the table ------------------------------------------------------------------------------

const ct_balance_policy ct_balance_policies[] = {
    {.name = "auto", .help = "throughput when the ranks' devices differ, else even",
     .choose = auto_choose},
    {.name = "even"},
    {.name = "throughput", .help = "in proportion to each rank's measured speed",
     .update = throughput_update},
    {.name = "static", .help = "in proportion to the given weights, one per rank",
     .takes_weights = 1, .weights = static_weights},
};
const int ct_balance_npolicies = sizeof ct_balance_policies / sizeof ct_balance_policies[0];

static const ct_balance_policy *find(const char *name) {
  for (int i = 0; i < ct_balance_npolicies; i++)
    if (!strcmp(ct_balance_policies[i].name, name)) return &ct_balance_policies[i];
  return NULL;
}

// "auto, even, throughput or static:W0,W1,..."
static void names(char *buf, size_t size) {
  size_t len = 0;
  buf[0] = 0;
  for (int i = 0; i < ct_balance_npolicies && len < size; i++) {
    const ct_balance_policy *p = &ct_balance_policies[i];
    const char *join = i == 0 ? "" : i == ct_balance_npolicies - 1 ? " or " : ", ";
    int w = snprintf(buf + len, size - len, "%s%s%s", join, p->name,
                     p->takes_weights ? ":W0,W1,..." : "");
    if (w > 0) len += (size_t)w;
  }
}

void ct_balance_usage(char *buf, size_t size) {
  size_t len = 0;
  buf[0] = 0;
  for (int i = 0; i < ct_balance_npolicies && len < size; i++) {
    const ct_balance_policy *p = &ct_balance_policies[i];
    int w = snprintf(buf + len, size - len, "%s%s%s%s%s%s", i ? " | " : "", p->name,
                     p->takes_weights ? ":W0,W1,..." : "", p->help ? " (" : "",
                     p->help ? p->help : "", p->help ? ")" : "");
    if (w > 0) len += (size_t)w;
  }
}

// W0,W1,... of --balance TEXT (the part after "name:").
static ct_status parse_weights(const char *text, const char *p, ct_balance_choice *c) {
  long sum = 0;
  c->n_weights = 0;
  for (;;) {
    char num[32];
    size_t len = strcspn(p, ",");
    long v;
    if (len == 0 || len >= sizeof num || c->n_weights >= CT_MAX_STATIC_WEIGHTS)
      return CT_FAIL(CT_ERR_USAGE, "--balance: expected %s:W0,W1,... with integer weights "
                     ">= 0, one per rank, got '%s'", c->policy->name, text);
    memcpy(num, p, len);
    num[len] = 0;
    CT_TRY(ct_arg_long("--balance (static weight)", num, 0, 1000000, &v));
    c->weights[c->n_weights++] = (int)v;
    sum += v;
    p += len;
    if (!*p) break;
    p++;
  }
  if (sum == 0)
    return CT_FAIL(CT_ERR_USAGE, "--balance: %s weights '%s' are all 0", c->policy->name,
                   strchr(text, ':') + 1);
  return CT_OK;
}

ct_status ct_balance_parse(const char *text, ct_balance_choice *c) {
  c->policy = &ct_balance_policies[0], c->n_weights = 0;
  if (!text) return CT_OK;
  for (int i = 0; i < ct_balance_npolicies; i++) {
    const ct_balance_policy *p = &ct_balance_policies[i];
    size_t n = strlen(p->name);
    if (!p->takes_weights && !strcmp(text, p->name)) {
      c->policy = p;
      return CT_OK;
    }
    if (p->takes_weights && !strncmp(text, p->name, n) && text[n] == ':') {
      c->policy = p;
      return parse_weights(text, text + n + 1, c);
    }
  }
  char all[256];
  names(all, sizeof all);
  return CT_FAIL(CT_ERR_USAGE, "--balance: expected %s, got '%s'", all, text);
}

// The largest share a rank can get under fixed weights: its share of a full batch, and a
// shorter batch (the epoch's last) never gives a rank more than floor(n w / W) + 1.
static int fixed_max_share(ct_run_state *s) {
  int world = s->comm->size, most = 1, batch = s->cfg->batch;
  ct_balance_full_shares(s, s->weights, s->tmp_shares);
  for (int r = 0; r < world; r++)
    if (s->tmp_shares[r] > most) most = s->tmp_shares[r];
  uint64_t tot = 0;
  for (int q = 0; q < world; q++) tot += s->weights[q];
  for (int r = 0; r < world; r++) {
    int bound = (int)((uint64_t)batch * s->weights[r] / tot) + 1;
    if (bound > most) most = bound;
  }
  return most > batch ? batch : most;
}

ct_status ct_balance_setup(ct_run_state *s) {
  int world = s->comm->size;
  ct_balance_choice c;
  CT_TRY(ct_balance_parse(s->cfg->balance, &c));
  const ct_balance_policy *p = c.policy;
  if (p->weights) CT_TRY(p->weights(s, &c, s->weights));   // (checked before the collective)
  CT_TRY(identify(s));
  if (p->choose) CT_TRY(p->choose(s, &p));
  if (!p->weights)
    for (int r = 0; r < world; r++) s->weights[r] = 1u;
  s->policy = p;
  s->policy_chosen = p != c.policy;
  s->balancing = p->update != NULL && world > 1;
  // throughput: any rank may get up to the whole batch
  s->max_share = s->balancing ? s->cfg->batch : fixed_max_share(s);
  return CT_OK;
}

void ct_balance_update(ct_run_state *s, const float *ms, const int *shares, long step,
                       int force) {
  if (!s->balancing || step < CT_WARMUP_STEPS) return;
  s->policy->update(s, ms, shares, step, force);
}

// ---- checkpoints ------------------------------------------------------------------------------

void ct_balance_save(ct_run_state *s, ct_checkpoint_run *run) {
  int world = s->comm->size;
  snprintf(run->balance, sizeof run->balance, "%s", s->policy->name);
  run->world = world;
  run->weights = s->weights;
  run->measured = s->bal.est_valid;
  run->ms_per_sample = s->bal.est_valid ? s->bal.est : NULL;
  run->device = s->bal.ids;
  run->model = s->bal.ids + world;
}

// Weights from measured ms per sample, as a check makes them (samples per ms in 1/1024, no
// rank under 1/(8N) of the largest).
static void weights_from_rates(ct_run_state *s, const double *est) {
  int world = s->comm->size;
  uint32_t most = 1;
  for (int r = 0; r < world; r++) {
    double v = 1024.0 / est[r];
    s->weights[r] = v > 4e9 ? 4000000000u : v < 1 ? 1u : (uint32_t)v;
    if (s->weights[r] > most) most = s->weights[r];
  }
  uint32_t floor_w = most / (8u * (uint32_t)world);
  for (int r = 0; r < world; r++)
    if (s->weights[r] < floor_w) s->weights[r] = floor_w;
}

ct_status ct_balance_resume(ct_run_state *s, const ct_checkpoint_run *run, char *what,
                            size_t size) {
  int world = s->comm->size;
  const uint64_t *dev = s->bal.ids, *model = s->bal.ids + world;
  what[0] = 0;
  if (!s->balancing) return CT_OK;   // even and static: this run's weights
  if (!run->present) {
    snprintf(what, size, "shares measured again from even (a version-1 checkpoint holds none)");
    return CT_OK;
  }
  int same = run->world == world && !strcmp(run->balance, s->policy->name);
  for (int r = 0; r < world && same; r++) same = run->device[r] == dev[r];
  if (same) {   // the same ranks on the same devices: the shares as they were
    memcpy(s->weights, run->weights, (size_t)world * sizeof *s->weights);
    snprintf(what, size, "shares as saved (the same %d ranks on the same devices)", world);
    return CT_OK;
  }
  if (!run->measured) {
    snprintf(what, size, "shares measured again from even (the checkpoint holds no measured "
             "rates)");
    return CT_OK;
  }
  // each rank its device's measured rate, else the mean of its device model's
  double *est = s->bal.est;
  int exact = 0, by_model = 0;
  for (int r = 0; r < world; r++) {
    double sum_d = 0, sum_m = 0;
    int n_d = 0, n_m = 0;
    for (int q = 0; q < run->world; q++) {
      if (!(run->ms_per_sample[q] > 0)) continue;
      if (run->device[q] == dev[r]) sum_d += run->ms_per_sample[q], n_d++;
      if (run->model[q] == model[r]) sum_m += run->ms_per_sample[q], n_m++;
    }
    if (n_d) est[r] = sum_d / n_d, exact++;
    else if (n_m) est[r] = sum_m / n_m, by_model++;
    else {
      snprintf(what, size, "shares measured again from even (rank %d's device model has no "
               "measured rate in the checkpoint)", r);
      return CT_OK;
    }
  }
  weights_from_rates(s, est);
  snprintf(what, size, "shares from the rates the checkpoint measured (%d rank(s) on a device it "
           "measured, %d on a model it measured)", exact, by_model);
  return CT_OK;
}
