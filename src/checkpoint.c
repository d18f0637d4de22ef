// checkpoint.c: atomic checkpoint files (header, parameters, optimizer state, run state, CRC32).
#include "cltrain/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "cltrain/hooks.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoint.c stores float32 as little-endian bytes: add byte swapping for this host"
#endif

#define HEADER_BYTES 1120
#define RUN_MAGIC "CLTRRUN"      // 8 bytes with its NUL
#define RUN_FIXED 96             // the run state's bytes before the per-rank entries
#define RUN_PER_RANK 32
#define MAX_WORLD (1 << 20)      // a world size beyond this is a damaged header

static const char *optim_name(int kind) { return kind == CT_OPT_SGD ? "sgd" : kind == CT_OPT_ADAMW ? "adamw" : "?"; }

// ---- atomic writes ----------------------------------------------------------------------------

typedef struct {
  const void *data;
  size_t size;
} part;

static ct_status write_all(int fd, const void *data, size_t size, const char *path) {
  const char *p = data;
  while (size > 0) {
    ssize_t n = write(fd, p, size > (1u << 30) ? (1u << 30) : size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return CT_FAIL(CT_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    p += n;
    size -= (size_t)n;
  }
  return CT_OK;
}

static ct_status write_parts_atomic(const char *path, const part *parts, int nparts) {
  size_t len = strlen(path);
  char *tmp = malloc(len + 32), *dircopy = strdup(path);
  if (!tmp || !dircopy) {
    free(tmp), free(dircopy);
    return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  }
  snprintf(tmp, len + 32, "%s.tmp.%ld", path, (long)getpid());
  ct_status st = CT_OK;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    st = CT_FAIL(CT_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    goto out;
  }
  for (int i = 0; i < nparts && st == CT_OK; i++) {
    st = write_all(fd, parts[i].data, parts[i].size, tmp);
    const ct_hooks *h = ct_hooks_get();   // (a test may kill the writer here: hooks.h)
    if (st == CT_OK && h->file_part) h->file_part(h->ctx, path, i);
  }
  if (st == CT_OK && fsync(fd) != 0) st = CT_FAIL(CT_ERR_IO, "cannot fsync %s: %s", tmp, strerror(errno));
  if (close(fd) != 0 && st == CT_OK) st = CT_FAIL(CT_ERR_IO, "cannot close %s: %s", tmp, strerror(errno));
  if (st == CT_OK && rename(tmp, path) != 0)
    st = CT_FAIL(CT_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
  if (st != CT_OK) {
    unlink(tmp);
    goto out;
  }
  // make the rename itself durable
  int dfd = open(dirname(dircopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    if (fsync(dfd) != 0 && errno != EINVAL)
      st = CT_FAIL(CT_ERR_IO, "cannot fsync the folder of %s: %s", path, strerror(errno));
    close(dfd);
  }
out:
  free(tmp);
  free(dircopy);
  return st;
}

ct_status ct_write_file_atomic(const char *path, const void *data, size_t size) {
  part p = {data, size};
  return write_parts_atomic(path, &p, 1);
}

// ---- header encoding --------------------------------------------------------------------------

static void put32(uint8_t **p, uint32_t v) { memcpy(*p, &v, 4); *p += 4; }
static void put64(uint8_t **p, uint64_t v) { memcpy(*p, &v, 8); *p += 8; }
static uint32_t get32(const uint8_t **p) { uint32_t v; memcpy(&v, *p, 4); *p += 4; return v; }
static uint64_t get64(const uint8_t **p) { uint64_t v; memcpy(&v, *p, 8); *p += 8; return v; }

static void encode_header(uint8_t *h, const char *arch, uint64_t pc, uint64_t sc, int kind,
                          int64_t t, const ct_checkpoint_pos *pos, uint64_t seed, int shuffle) {
  memset(h, 0, HEADER_BYTES);
  uint8_t *p = h;
  memcpy(p, CT_CHECKPOINT_MAGIC, 8);
  p += 8;
  put32(&p, CT_CHECKPOINT_VERSION);   // (the run state follows the optimizer state)
  put32(&p, HEADER_BYTES);
  snprintf((char *)p, 1024, "%s", arch);
  p += 1024;
  put64(&p, pc);
  put64(&p, sc);
  put32(&p, (uint32_t)kind);
  put32(&p, (uint32_t)shuffle);
  put64(&p, (uint64_t)t);
  put64(&p, (uint64_t)pos->step);
  put64(&p, (uint64_t)(int64_t)pos->epoch);
  put64(&p, (uint64_t)pos->step_in_epoch);
  put64(&p, seed);
  put32(&p, (uint32_t)pos->world);
  put32(&p, (uint32_t)pos->batch);
}

static int all_finite(const float *x, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!isfinite(x[i])) return 0;
  return 1;
}

// ---- the run state (version 2) --------------------------------------------------------------

void ct_checkpoint_run_free(ct_checkpoint_run *run) {
  free(run->weights), free(run->ms_per_sample), free(run->device), free(run->model);
  memset(run, 0, sizeof *run);
}

static void put_text(uint8_t **p, const char *text) {
  memset(*p, 0, 32);
  snprintf((char *)*p, 32, "%s", text ? text : "");
  *p += 32;
}

// The section for a run of `world` ranks (run->world must be world).
static void encode_run(uint8_t *out, const ct_checkpoint_run *run, int world) {
  uint8_t *p = out;
  memset(out, 0, RUN_FIXED + (size_t)RUN_PER_RANK * (size_t)world);
  memcpy(p, RUN_MAGIC, 8);
  p += 8;
  put32(&p, (uint32_t)(RUN_FIXED + RUN_PER_RANK * world));
  put32(&p, (uint32_t)world);
  put_text(&p, run->sync);
  put64(&p, (uint64_t)run->since_avg);
  put32(&p, (uint32_t)run->pending);
  put32(&p, run->measured ? 1u : 0u);
  put_text(&p, run->balance);
  for (int r = 0; r < world; r++) {
    uint64_t ms;
    double d = run->ms_per_sample ? run->ms_per_sample[r] : 0;
    memcpy(&ms, &d, 8);
    put32(&p, run->weights ? run->weights[r] : 1u);
    put32(&p, 0);
    put64(&p, ms);
    put64(&p, run->device ? run->device[r] : 0);
    put64(&p, run->model ? run->model[r] : 0);
  }
}

static int text_ok(const uint8_t *p) {
  if (!memchr(p, 0, 32)) return 0;
  for (; *p; p++)
    if (*p < 0x20 || *p > 0x7e) return 0;
  return 1;
}

// The section of a parsed view, validated (after the CRC: a damaged field here is a file that
// was written so, not a torn one).
static ct_status check_run(const ct_checkpoint_view *v, const char *name) {
  const uint8_t *p = v->run;
  if (memcmp(p, RUN_MAGIC, 8) != 0)
    return CT_FAIL(CT_ERR_FORMAT, "%s: no run state ('%s') after the optimizer state", name,
                   RUN_MAGIC);
  p += 8;
  uint32_t bytes = get32(&p), world = get32(&p);
  if (bytes != v->run_bytes || world != (uint32_t)v->pos.world)
    return CT_FAIL(CT_ERR_FORMAT, "%s: run state of %u bytes for %u ranks, the header says %zu "
                   "bytes for %d", name, bytes, world, v->run_bytes, v->pos.world);
  const uint8_t *sync = p;
  p += 32;
  int64_t since = (int64_t)get64(&p);
  uint32_t pending = get32(&p), flags = get32(&p);
  const uint8_t *balance = p;
  p += 32;
  if (!text_ok(sync) || !text_ok(balance))
    return CT_FAIL(CT_ERR_FORMAT, "%s: the run state's sync mode or balance policy is not a "
                   "terminated text", name);
  if (since < 0 || pending > 1 || flags > 1)
    return CT_FAIL(CT_ERR_FORMAT, "%s: run state out of range (steps since the average %lld, "
                   "pending %u, flags %u)", name, (long long)since, pending, flags);
  uint64_t wsum = 0;
  for (uint32_t r = 0; r < world; r++) {
    uint32_t w = get32(&p), zero = get32(&p);
    uint64_t bits = get64(&p);
    double ms;
    memcpy(&ms, &bits, 8);
    p += 16;
    wsum += w;
    if (zero != 0 || !isfinite(ms) || ms < 0)
      return CT_FAIL(CT_ERR_FORMAT, "%s: rank %u's run state is out of range (ms per sample %g)",
                     name, r, ms);
  }
  if (wsum == 0) return CT_FAIL(CT_ERR_FORMAT, "%s: every share weight is 0", name);
  return CT_OK;
}

ct_status ct_checkpoint_parse_run(const ct_checkpoint_view *v, ct_checkpoint_run *run) {
  memset(run, 0, sizeof *run);
  if (!v->run) return CT_OK;
  int world = v->pos.world;
  run->weights = malloc((size_t)world * sizeof *run->weights);
  run->ms_per_sample = malloc((size_t)world * sizeof *run->ms_per_sample);
  run->device = malloc((size_t)world * sizeof *run->device);
  run->model = malloc((size_t)world * sizeof *run->model);
  if (!run->weights || !run->ms_per_sample || !run->device || !run->model) {
    ct_checkpoint_run_free(run);
    return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  }
  const uint8_t *p = v->run + 16;
  memcpy(run->sync, p, 32);
  p += 32;
  run->since_avg = (long)(int64_t)get64(&p);
  run->pending = (int)get32(&p);
  run->measured = (int)(get32(&p) & 1);
  memcpy(run->balance, p, 32);
  p += 32;
  for (int r = 0; r < world; r++) {
    run->weights[r] = get32(&p);
    p += 4;
    uint64_t bits = get64(&p);
    memcpy(&run->ms_per_sample[r], &bits, 8);
    run->device[r] = get64(&p);
    run->model[r] = get64(&p);
  }
  run->world = world;
  run->present = 1;
  return CT_OK;
}

int ct_checkpoint_exists(const char *path) {
  struct stat sb;
  return !(lstat(path, &sb) != 0 && errno == ENOENT);
}

ct_status ct_checkpoint_parse(const uint8_t *buf, size_t size, const char *name,
                              ct_checkpoint_view *v) {
  memset(v, 0, sizeof *v);
  if (size < 8 || memcmp(buf, CT_CHECKPOINT_MAGIC, 8) != 0)
    return CT_FAIL(CT_ERR_FORMAT, "%s: not a cltrain checkpoint (no '%s' magic at the start)",
                   name, CT_CHECKPOINT_MAGIC);
  if (size < HEADER_BYTES + 4)
    return CT_FAIL(CT_ERR_FORMAT, "%s: truncated: %zu bytes, the header alone is %d", name, size,
                   HEADER_BYTES);
  const uint8_t *p = buf + 8;
  uint32_t version = get32(&p), hbytes = get32(&p);
  if (version < 1 || version > CT_CHECKPOINT_VERSION)
    return CT_FAIL(CT_ERR_FORMAT, "%s: format version %u, this build reads versions up to %d",
                   name, version, CT_CHECKPOINT_VERSION);
  v->version = (int)version;
  if (hbytes != HEADER_BYTES)
    return CT_FAIL(CT_ERR_FORMAT, "%s: header size %u, expected %d", name, hbytes, HEADER_BYTES);
  memcpy(v->arch, p, 1024);
  p += 1024;
  if (memchr(v->arch, 0, sizeof v->arch) == NULL)
    return CT_FAIL(CT_ERR_FORMAT, "%s: architecture text is not terminated", name);
  v->param_count = get64(&p);
  v->state_count = get64(&p);
  v->optim_kind = (int)get32(&p);
  v->shuffle = (int)get32(&p);
  v->optim_t = (int64_t)get64(&p);
  v->pos.step = (long)(int64_t)get64(&p);
  v->pos.epoch = (int)(int64_t)get64(&p);
  v->pos.step_in_epoch = (long)(int64_t)get64(&p);
  v->seed = get64(&p);
  v->pos.world = (int)get32(&p);
  v->pos.batch = (int)get32(&p);
  if (v->optim_kind != CT_OPT_SGD && v->optim_kind != CT_OPT_ADAMW)
    return CT_FAIL(CT_ERR_FORMAT, "%s: unknown optimizer kind %d", name, v->optim_kind);
  if (v->param_count == 0 || v->param_count > (1ULL << 34) || v->state_count > (1ULL << 36))
    return CT_FAIL(CT_ERR_FORMAT, "%s: implausible sizes: %llu parameters, %llu state values",
                   name, (unsigned long long)v->param_count, (unsigned long long)v->state_count);
  if (version >= 2 && (v->pos.world < 1 || v->pos.world > MAX_WORLD))
    return CT_FAIL(CT_ERR_FORMAT, "%s: implausible world size %d in the header", name,
                   v->pos.world);
  uint64_t run_bytes =
      version >= 2 ? RUN_FIXED + (uint64_t)RUN_PER_RANK * (uint64_t)v->pos.world : 0;
  uint64_t want = (uint64_t)HEADER_BYTES + 4 * (v->param_count + v->state_count) + run_bytes + 4;
  if ((uint64_t)size != want)
    return CT_FAIL(CT_ERR_FORMAT, "%s: %s: %zu bytes, the header says %llu", name,
                   (uint64_t)size < want ? "truncated" : "trailing bytes", size,
                   (unsigned long long)want);
  uint32_t stored;
  memcpy(&stored, buf + size - 4, 4);
  uint32_t crc = (uint32_t)crc32(0L, Z_NULL, 0);
  for (size_t off = 0; off < size - 4;) {   // zlib's crc32 takes uInt lengths
    size_t n = size - 4 - off > (1u << 30) ? (1u << 30) : size - 4 - off;
    crc = (uint32_t)crc32(crc, buf + off, (uInt)n);
    off += n;
  }
  if (crc != stored)
    return CT_FAIL(CT_ERR_FORMAT, "%s: CRC32 mismatch (stored %08x, computed %08x): the file is corrupted",
                   name, stored, crc);
  if (v->pos.step < 0 || v->pos.epoch < 0 || v->pos.step_in_epoch < 0 || v->pos.world < 1 || v->pos.batch < 1 ||
      v->optim_t < 0)
    return CT_FAIL(CT_ERR_FORMAT, "%s: negative step, epoch or world size in the header", name);
  v->params = (const float *)(const void *)(buf + HEADER_BYTES);
  v->state = v->params + v->param_count;
  if (!all_finite(v->params, v->param_count) || !all_finite(v->state, v->state_count))
    return CT_FAIL(CT_ERR_FORMAT, "%s: holds non-finite values", name);
  if (run_bytes) {
    v->run = (const uint8_t *)(v->state + v->state_count);
    v->run_bytes = (size_t)run_bytes;
    CT_TRY(check_run(v, name));
  }
  return CT_OK;
}

// ---- save and load ------------------------------------------------------------------------------

ct_status ct_checkpoint_save(const char *path, ct_model *model, ct_optim *opt,
                             const ct_checkpoint_pos *pos, uint64_t seed, int shuffle,
                             const ct_checkpoint_run *run, ct_comm *comm, float *host_scratch) {
  if (comm && comm->rank != 0) return CT_OK;
  size_t pc = model->arch.param_count, sc = opt->state_count;
  if (pos->world < 1 || pos->world > MAX_WORLD || (run && run->world != pos->world))
    return CT_FAIL(CT_ERR_INTERNAL, "checkpoint %s: run state of %d ranks for a world of %d",
                   path, run ? run->world : 0, pos->world);
  CT_TRY(ct_model_download_params(model, host_scratch));
  size_t run_bytes = RUN_FIXED + (size_t)RUN_PER_RANK * (size_t)pos->world;
  float *state = malloc(sc * sizeof *state + 1);
  uint8_t *runsec = malloc(run_bytes);
  if (!state || !runsec) {
    free(state), free(runsec);
    return CT_FAIL(CT_ERR_NOMEM, "out of host memory");
  }
  ct_checkpoint_run none = {.world = pos->world};
  encode_run(runsec, run ? run : &none, pos->world);
  ct_status st = ct_optim_read_state(opt, state);
  if (st == CT_OK && (!all_finite(host_scratch, pc) || !all_finite(state, sc)))
    st = CT_FAIL(CT_ERR_NONFINITE, "not writing checkpoint %s: the parameters or optimizer state "
                 "hold non-finite values (the previous checkpoint is kept)", path);
  if (st == CT_OK) {
    uint8_t header[HEADER_BYTES];
    encode_header(header, model->arch.text, pc, sc, opt->cfg.kind, opt->t, pos, seed, shuffle);
    uint32_t crc = (uint32_t)crc32(0L, Z_NULL, 0);
    crc = (uint32_t)crc32(crc, header, HEADER_BYTES);
    crc = (uint32_t)crc32(crc, (const Bytef *)host_scratch, (uInt)(pc * sizeof(float)));
    if (sc) crc = (uint32_t)crc32(crc, (const Bytef *)state, (uInt)(sc * sizeof(float)));
    crc = (uint32_t)crc32(crc, runsec, (uInt)run_bytes);
    part parts[] = {{header, HEADER_BYTES},
                    {host_scratch, pc * sizeof(float)},
                    {state, sc * sizeof(float)},
                    {runsec, run_bytes},
                    {&crc, 4}};
    st = write_parts_atomic(path, parts, 5);
  }
  free(state);
  free(runsec);
  return st;
}

ct_status ct_checkpoint_load(const char *path, const ct_arch *arch, ct_optim *opt,
                             float *host_params, ct_checkpoint_pos *pos, uint64_t seed,
                             int shuffle, int batch, ct_checkpoint_run *run, int *version) {
  memset(run, 0, sizeof *run);
  FILE *f = fopen(path, "rb");
  if (!f) return CT_FAIL(CT_ERR_IO, "--resume: cannot open %s: %s", path, strerror(errno));
  uint8_t *buf = NULL;
  ct_status st = CT_OK;
  struct stat sb;
  if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
    st = CT_FAIL(CT_ERR_IO, "--resume: %s is not a regular file", path);
    goto out;
  }
  size_t size = (size_t)sb.st_size;
  buf = malloc(size ? size : 1);
  if (!buf) {
    st = CT_FAIL(CT_ERR_NOMEM, "--resume: %s: out of host memory (%zu bytes)", path, size);
    goto out;
  }
  if (fread(buf, 1, size, f) != size) {
    st = CT_FAIL(CT_ERR_IO, "--resume: cannot read %s: %s", path, strerror(errno));
    goto out;
  }
  ct_checkpoint_view v;
  CT_GOTO(ct_checkpoint_parse(buf, size, path, &v), st, out);
  if (strcmp(v.arch, arch->text) != 0) {
    st = CT_FAIL(CT_ERR_MISMATCH, "%s: architecture differs: checkpoint '%s', this run '%s'", path,
                 v.arch, arch->text);
  } else if (v.param_count != arch->param_count) {
    st = CT_FAIL(CT_ERR_MISMATCH, "%s: parameter count differs: checkpoint %llu, this run %zu",
                 path, (unsigned long long)v.param_count, arch->param_count);
  } else if (v.optim_kind != (int)opt->cfg.kind) {
    st = CT_FAIL(CT_ERR_MISMATCH, "%s: optimizer differs: checkpoint %s, this run %s", path,
                 optim_name(v.optim_kind), optim_name(opt->cfg.kind));
  } else if (v.state_count != opt->state_count) {
    st = CT_FAIL(CT_ERR_MISMATCH, "%s: optimizer state size differs: checkpoint %llu, this run %zu",
                 path, (unsigned long long)v.state_count, opt->state_count);
  } else if (v.seed != seed) {
    st = CT_FAIL(CT_ERR_MISMATCH, "%s: seed differs: checkpoint --seed %llu, this run %llu", path,
                 (unsigned long long)v.seed, (unsigned long long)seed);
  } else if (batch > 0 && v.pos.batch != batch) {
    st = CT_FAIL(CT_ERR_MISMATCH, "%s: global batch differs: checkpoint --batch %d, this run %d "
                 "(the position in the epoch counts steps of the checkpoint's batch)", path,
                 v.pos.batch, batch);
  } else if (v.shuffle != shuffle) {
    st = CT_FAIL(CT_ERR_MISMATCH, "%s: shuffling differs: checkpoint %s, this run %s", path,
                 v.shuffle ? "shuffled" : "--no-shuffle", shuffle ? "shuffled" : "--no-shuffle");
  }
  if (st != CT_OK) goto out;
  CT_GOTO(ct_checkpoint_parse_run(&v, run), st, out);
  if (run->pending || run->since_avg > 0) {   // (cltrain writes neither: checkpoint.h)
    st = CT_FAIL(CT_ERR_FORMAT, "%s: saved with %s (--sync %s): this build resumes only from "
                 "a checkpoint where the replicas agree", path,
                 run->pending ? "a stale step pending" : "steps since the last average",
                 run->sync);
    ct_checkpoint_run_free(run);
    goto out;
  }
  *version = v.version;
  memcpy(host_params, v.params, v.param_count * sizeof(float));
  CT_GOTO(ct_optim_write_state(opt, v.state), st, out);
  opt->t = (long)v.optim_t;
  *pos = v.pos;
out:
  free(buf);
  fclose(f);
  return st;
}
