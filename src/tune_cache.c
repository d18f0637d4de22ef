// tune_cache.c: the GEMM tuning cache: its path, reading and writing the file, applying it to a
// device, and finding the right one for a device. See tune.h (the file's format); the search
// that fills it is tune.c.
#include "cltrain/tune_cache.h"

#include <clblast_c.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cltrain/checkpoint.h"

// ---- the cache file ---------------------------------------------------------------------------

void ct_tune_cache_free(ct_tune_cache *c) {
  free(c->plans);
  memset(c, 0, sizeof *c);
}

static void sanitize(const char *in, char *out, size_t size) {
  size_t j = 0;
  for (size_t i = 0; in[i] && j + 1 < size; i++) {
    char ch = in[i];
    int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
             ch == '.' || ch == '-' || ch == '_';
    if (!ok) ch = '_';
    if (ch == '_' && j > 0 && out[j - 1] == '_') continue;
    out[j++] = ch;
  }
  out[j] = 0;
}

static ct_status cache_dir(char *buf, size_t size) {
  const char *own = getenv("CLTRAIN_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"),
             *home = getenv("HOME");
  if (own && *own) snprintf(buf, size, "%s", own);
  else if (xdg && *xdg) snprintf(buf, size, "%s/cltrain", xdg);
  else if (home && *home) snprintf(buf, size, "%s/.cache/cltrain", home);
  else return CT_FAIL(CT_ERR_NOTFOUND, "no tuning cache folder: neither XDG_CACHE_HOME nor HOME is set");
  return CT_OK;
}

ct_status ct_tune_cache_path(const ct_device_info *info, char *buf, size_t size) {
  char dir[512], plat[128], dev[128];
  CT_TRY(cache_dir(dir, sizeof dir));
  sanitize(info->platform_name, plat, sizeof plat);
  sanitize(info->name, dev, sizeof dev);
  // the compute units too: a CPU runtime limited to fewer threads (POCL_MAX_PTHREAD_COUNT,
  // CL_CONFIG_CPU_TBB_NUM_WORKERS) reports fewer, and wants other tiles
  snprintf(buf, size, "%s/%s--%s--%ucu.txt", dir, plat, dev, info->compute_units);
  return CT_OK;
}

static int parse_size(const char *s, size_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (end == s || *end || errno || v > (1ULL << 40) || *s == '-') return 0;
  *out = (size_t)v;
  return 1;
}

// "NAME=V NAME=V ..." with exactly the names in `names`, in any order.
static int parse_params(char *text, const char *const *names, int n, size_t *values) {
  int seen[32] = {0}, count = 0;
  for (char *save = NULL, *tok = strtok_r(text, " \t", &save); tok;
       tok = strtok_r(NULL, " \t", &save)) {
    char *eq = strchr(tok, '=');
    if (!eq) return 0;
    *eq = 0;
    int i = 0;
    while (i < n && strcmp(names[i], tok)) i++;
    if (i == n || seen[i] || !parse_size(eq + 1, &values[i])) return 0;
    seen[i] = 1;
    count++;
  }
  return count == n;
}

static int parse_double(const char *s, double *out) {
  char *end;
  double v = strtod(s, &end);
  if (end == s || *end || !isfinite(v) || v < 0) return 0;
  *out = v;
  return 1;
}

// "gemm NT M N K own MR=.. NV=.. VW=.. LM=.. KB=.. [AT=1] gflops=G default=D" or "... clblast
// gflops=..". (AT=1: the transposed A transposed ahead; absent: 0.)
static int parse_plan(char *text, ct_gemm_plan *p) {
  memset(p, 0, sizeof *p);
  char *save = NULL;
  char *tr = strtok_r(text, " \t", &save);
  char *ms = strtok_r(NULL, " \t", &save), *ns = strtok_r(NULL, " \t", &save);
  char *ks = strtok_r(NULL, " \t", &save), *impl = strtok_r(NULL, " \t", &save);
  if (!tr || !ms || !ns || !ks || !impl || strlen(tr) != 2) return 0;
  if ((tr[0] != 'N' && tr[0] != 'T') || (tr[1] != 'N' && tr[1] != 'T')) return 0;
  p->ta = tr[0] == 'T', p->tb = tr[1] == 'T';
  if (!parse_size(ms, &p->m) || !parse_size(ns, &p->n) || !parse_size(ks, &p->k)) return 0;
  if (!p->m || !p->n || !p->k) return 0;
  if (!strcmp(impl, "own")) p->impl = CT_GEMM_OWN;
  else if (!strcmp(impl, "clblast")) p->impl = CT_GEMM_CLBLAST;
  else return 0;
  int have = 0;
  for (char *tok; (tok = strtok_r(NULL, " \t", &save));) {
    char *eq = strchr(tok, '=');
    if (!eq) return 0;
    *eq++ = 0;
    size_t v;
    if (!strcmp(tok, "gflops")) { if (!parse_double(eq, &p->gflops)) return 0; continue; }
    if (!strcmp(tok, "default")) { if (!parse_double(eq, &p->gflops_default)) return 0; continue; }
    if (p->impl != CT_GEMM_OWN || !parse_size(eq, &v) || v > 4096) return 0;
    if (!strcmp(tok, "MR")) p->tile.mr = (int)v, have |= 1;
    else if (!strcmp(tok, "NV")) p->tile.nv = (int)v, have |= 2;
    else if (!strcmp(tok, "VW")) p->tile.vw = (int)v, have |= 4;
    else if (!strcmp(tok, "LM")) p->tile.lm = (int)v, have |= 8;
    else if (!strcmp(tok, "KB")) p->tile.kb = (int)v, have |= 16;
    else if (!strcmp(tok, "AT") && v <= 1) p->tile.at = (int)v;
    else return 0;
  }
  return p->impl == CT_GEMM_CLBLAST || have == 31;
}

ct_status ct_tune_cache_read(const char *path, ct_tune_cache *c) {
  memset(c, 0, sizeof *c);
  FILE *f = fopen(path, "r");
  if (!f) {
    if (errno == ENOENT) return CT_FAIL(CT_ERR_NOTFOUND, "%s: no such file", path);
    return CT_FAIL(CT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  }
  char line[1024];
  int lineno = 0, format = 0, cap = 0;
  ct_status st = CT_OK;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    size_t len = strlen(line);
    if (len == sizeof line - 1 && line[len - 1] != '\n') {
      st = CT_FAIL(CT_ERR_FORMAT, "%s: line %d is too long", path, lineno);
      break;
    }
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
    char *s = line;
    while (*s == ' ' || *s == '\t') s++;
    if (!*s || *s == '#') continue;
    char *val = s + strcspn(s, " \t");
    if (*val) *val++ = 0;
    while (*val == ' ' || *val == '\t') val++;
    int ok = 1;
    if (!strcmp(s, "format")) ok = !strcmp(val, "1") && (format = 1);
    else if (!strcmp(s, "platform")) ok = snprintf(c->platform, sizeof c->platform, "%s", val) > 0;
    else if (!strcmp(s, "device")) ok = snprintf(c->device, sizeof c->device, "%s", val) > 0;
    else if (!strcmp(s, "driver")) ok = snprintf(c->driver, sizeof c->driver, "%s", val) > 0;
    else if (!strcmp(s, "clblast")) ok = snprintf(c->clblast, sizeof c->clblast, "%s", val) > 0;
    else if (!strcmp(s, "best_gflops")) ok = parse_double(val, &c->best_gflops);
    else if (!strcmp(s, "xgemm"))
      ok = (c->has_xgemm = parse_params(val, CT_CLBLAST_XGEMM_NAMES, 16, c->xgemm));
    else if (!strcmp(s, "xgemm_direct"))
      ok = (c->has_xgemm_direct = parse_params(val, CT_CLBLAST_XGEMM_DIRECT_NAMES, 10,
                                               c->xgemm_direct));
    else if (!strcmp(s, "gemm_routine")) {
      static const char *const rn[] = {"XGEMM_MIN_INDIRECT_SIZE"};
      ok = (c->has_routine = parse_params(val, rn, 1, &c->min_indirect));
    } else if (!strcmp(s, "gemm")) {
      if (c->nplans == cap) {
        cap = cap ? 2 * cap : 16;
        ct_gemm_plan *p = realloc(c->plans, (size_t)cap * sizeof *p);
        if (!p) { st = CT_FAIL(CT_ERR_NOMEM, "out of host memory"); break; }
        c->plans = p;
      }
      ok = parse_plan(val, &c->plans[c->nplans]);
      if (ok) c->nplans++;
    } else {
      st = CT_FAIL(CT_ERR_FORMAT, "%s: line %d: unknown setting '%.40s'", path, lineno, s);
      break;
    }
    if (!ok) {
      st = CT_FAIL(CT_ERR_FORMAT, "%s: line %d: malformed '%.40s' setting", path, lineno, s);
      break;
    }
  }
  if (st == CT_OK && ferror(f)) st = CT_FAIL(CT_ERR_IO, "%s: read error", path);
  fclose(f);
  if (st == CT_OK && (!format || !c->platform[0] || !c->device[0] || !c->driver[0] || !c->clblast[0]))
    st = CT_FAIL(CT_ERR_FORMAT, "%s: incomplete: format, platform, device, driver and clblast "
                 "lines are required", path);
  if (st != CT_OK) ct_tune_cache_free(c);
  return st;
}

static ct_status mkdir_p(const char *dir) {
  char buf[1024];
  snprintf(buf, sizeof buf, "%s", dir);
  for (char *p = buf + 1; ; p++) {
    if (*p == '/' || !*p) {
      char save = *p;
      *p = 0;
      if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return CT_FAIL(CT_ERR_IO, "%s: cannot create the folder: %s", buf, strerror(errno));
      *p = save;
      if (!save) break;
    }
  }
  return CT_OK;
}

static void append(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void append(char **buf, size_t *len, size_t *cap, const char *fmt, ...) {
  if (!*buf) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < *cap - *len) {
      *len += (size_t)n;
      return;
    }
    char *p = realloc(*buf, *cap * 2 + (size_t)n);
    if (!p) {
      free(*buf);
      *buf = NULL;
      return;
    }
    *buf = p;
    *cap = *cap * 2 + (size_t)n;
  }
}

ct_status ct_tune_cache_write(const char *path, const ct_tune_cache *c) {
  char dir[1024];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash && slash != dir) {
    *slash = 0;
    CT_TRY(mkdir_p(dir));
  }
  size_t len = 0, cap = 4096;
  char *buf = malloc(cap);
  append(&buf, &len, &cap, "# cltrain GEMM tuning cache, written by cltrain-tune; one setting per line.\n"
                           "# gemm lines: transposes M N K, the implementation and its measured GFLOP/s\n"
                           "# (default = CLBlast with cltrain's defaults, before tuning).\n");
  append(&buf, &len, &cap, "format 1\nplatform %s\ndevice %s\ndriver %s\nclblast %s\n", c->platform,
         c->device, c->driver, c->clblast);
  append(&buf, &len, &cap, "best_gflops %.2f\n", c->best_gflops);
  if (c->has_xgemm) {
    append(&buf, &len, &cap, "xgemm");
    for (int i = 0; i < 16; i++) append(&buf, &len, &cap, " %s=%zu", CT_CLBLAST_XGEMM_NAMES[i], c->xgemm[i]);
    append(&buf, &len, &cap, "\n");
  }
  if (c->has_xgemm_direct) {
    append(&buf, &len, &cap, "xgemm_direct");
    for (int i = 0; i < 10; i++)
      append(&buf, &len, &cap, " %s=%zu", CT_CLBLAST_XGEMM_DIRECT_NAMES[i], c->xgemm_direct[i]);
    append(&buf, &len, &cap, "\n");
  }
  if (c->has_routine) append(&buf, &len, &cap, "gemm_routine XGEMM_MIN_INDIRECT_SIZE=%zu\n", c->min_indirect);
  for (int i = 0; i < c->nplans; i++) {
    const ct_gemm_plan *p = &c->plans[i];
    append(&buf, &len, &cap, "gemm %c%c %zu %zu %zu ", p->ta ? 'T' : 'N', p->tb ? 'T' : 'N', p->m,
           p->n, p->k);
    if (p->impl == CT_GEMM_OWN)
      append(&buf, &len, &cap, "own MR=%d NV=%d VW=%d LM=%d KB=%d%s", p->tile.mr, p->tile.nv,
             p->tile.vw, p->tile.lm, p->tile.kb, p->tile.at ? " AT=1" : "");
    else
      append(&buf, &len, &cap, "clblast");
    append(&buf, &len, &cap, " gflops=%.2f default=%.2f\n", p->gflops, p->gflops_default);
  }
  if (!buf) return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  ct_status st = ct_write_file_atomic(path, buf, len);
  free(buf);
  return st;
}

ct_status ct_tune_cache_apply(ct_device *dev, const ct_tune_cache *c, const char *path) {
  if (c->has_xgemm) CT_TRY(ct_blas_apply_clblast(dev, "Xgemm", CT_CLBLAST_XGEMM_NAMES, c->xgemm, 16));
  if (c->has_xgemm_direct)
    CT_TRY(ct_blas_apply_clblast(dev, "XgemmDirect", CT_CLBLAST_XGEMM_DIRECT_NAMES,
                                 c->xgemm_direct, 10));
  if (c->has_routine) {
    static const char *const rn[] = {"XGEMM_MIN_INDIRECT_SIZE"};
    CT_TRY(ct_blas_apply_clblast(dev, "GemmRoutine", rn, &c->min_indirect, 1));
  }
  if (c->has_xgemm || c->has_xgemm_direct || c->has_routine) CLBlastClearCache();
  CT_TRY(ct_blas_set_plans(dev, c->plans, c->nplans));
  dev->blas->best_gflops = c->best_gflops;
  snprintf(dev->blas->source, sizeof dev->blas->source, "%s", path ? path : "tuned");
  return CT_OK;
}

// The cache of the same platform and device tuned at another number of compute units (the
// nearest), when there is none for this one: its choices are still this device's.
static int other_cu_path(const char *path, unsigned cu, char *out, size_t size) {
  char dir[1024], prefix[512];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (!slash) return 0;
  *slash = 0;
  snprintf(prefix, sizeof prefix, "%s", slash + 1);
  char *cut = strrchr(prefix, '-');   // ".../<plat>--<dev>--<N>cu.txt": keep "<plat>--<dev>--"
  if (!cut) return 0;
  cut[1] = 0;
  DIR *d = opendir(dir);
  if (!d) return 0;
  long best = -1;
  unsigned best_cu = 0;
  for (struct dirent *e; (e = readdir(d));) {
    size_t pl = strlen(prefix);
    unsigned n;
    char tail[16];
    if (strncmp(e->d_name, prefix, pl) || sscanf(e->d_name + pl, "%ucu%15s", &n, tail) != 2 ||
        strcmp(tail, ".txt"))
      continue;
    long dist = labs((long)n - (long)cu);
    if (best < 0 || dist < best || (dist == best && n > best_cu)) {
      int w = snprintf(out, size, "%s/%s", dir, e->d_name);
      if (w < 0 || (size_t)w >= size) continue;
      best = dist;
      best_cu = n;
    }
  }
  closedir(d);
  return best >= 0;
}

ct_status ct_tune_load(ct_device *dev, int *status, char *warning, size_t size) {
  *status = 0;
  if (size) warning[0] = 0;
  char path[1024];
  CT_TRY(ct_tune_cache_path(&dev->info, path, sizeof path));
  ct_tune_cache c;
  ct_status st = ct_tune_cache_read(path, &c);
  if (st == CT_ERR_NOTFOUND) {
    ct_error_clear();
    char other[1024];
    if (!other_cu_path(path, dev->info.compute_units, other, sizeof other)) return CT_OK;
    snprintf(path, sizeof path, "%s", other);
    st = ct_tune_cache_read(path, &c);
    if (st == CT_ERR_NOTFOUND) {
      ct_error_clear();
      return CT_OK;
    }
  }
  if (st != CT_OK) {
    snprintf(warning, size, "GEMM tuning cache damaged, using defaults: %s", ct_error_text());
    ct_error_clear();
    *status = -1;
    return CT_OK;
  }
  char clblast[32];
  ct_clblast_version(clblast, sizeof clblast);
  const char *what = strcmp(c.platform, dev->info.platform_name) ? "platform"
                     : strcmp(c.device, dev->info.name)           ? "device"
                     : strcmp(c.driver, dev->info.driver)         ? "driver"
                     : strcmp(c.clblast, clblast)                 ? "CLBlast version"
                                                                  : NULL;
  if (what) {
    const char *had = !strcmp(what, "platform") ? c.platform
                      : !strcmp(what, "device") ? c.device
                      : !strcmp(what, "driver") ? c.driver : c.clblast;
    const char *now = !strcmp(what, "platform") ? dev->info.platform_name
                      : !strcmp(what, "device") ? dev->info.name
                      : !strcmp(what, "driver") ? dev->info.driver : clblast;
    snprintf(warning, size, "GEMM tuning cache stale, using defaults (run cltrain-tune again): "
             "%s: written for %s '%s', this is '%s'", path, what, had, now);
    ct_tune_cache_free(&c);
    *status = -1;
    return CT_OK;
  }
  st = ct_tune_cache_apply(dev, &c, path);
  ct_tune_cache_free(&c);
  if (st != CT_OK) {   // e.g. CLBlast refuses a parameter: defaults again
    snprintf(warning, size, "GEMM tuning cache %s not applied, using defaults: %s", path,
             ct_error_text());
    ct_error_clear();
    ct_blas_set_plans(dev, NULL, 0);
    dev->blas->best_gflops = 0;
    snprintf(dev->blas->source, sizeof dev->blas->source, "defaults");
    *status = -1;
    return CT_OK;
  }
  *status = 1;
  return CT_OK;
}
