// data.c: IDX reader (raw or gzip through zlib) with validation, dataset loading and gathering,
// the seeded epoch order, and the shard strategies that split a global batch over ranks.
//
// ct_idx_parse only looks at a buffer (no allocation), so it can be fuzzed on its own;
// ct_idx_read reads the whole file, inflates it when it starts with the gzip magic 1f 8b, and
// hands the result to ct_idx_parse. Random streams are splitmix64 (the same numbers on every
// host); bounded draws reject the biased tail, so a permutation is uniform.
#include "cltrain/data.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

// ---- IDX parsing ----------------------------------------------------------------------------

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

ct_status ct_idx_parse(const uint8_t *buf, size_t size, const char *name, int want_dims,
                       int dims[3], const uint8_t **data) {
  if (want_dims < 1 || want_dims > 3)
    return CT_FAIL(CT_ERR_INTERNAL, "%s: asked for an IDX file of %d dimensions (1..3)", name,
                   want_dims);
  uint32_t want_magic = 0x800u | (uint32_t)want_dims;
  if (size < 4)
    return CT_FAIL(CT_ERR_FORMAT, "%s: holds %zu bytes, too short for an IDX header", name, size);
  uint32_t magic = be32(buf);
  if (buf[0] == 0x1f && buf[1] == 0x8b)
    return CT_FAIL(CT_ERR_FORMAT, "%s: is gzip-compressed; expected raw IDX data (magic 0x%08x)",
                   name, want_magic);
  if (buf[0] != 0 || buf[1] != 0 || buf[2] != 0x08)
    return CT_FAIL(CT_ERR_FORMAT,
                   "%s: wrong magic 0x%08x, expected 0x%08x (IDX of unsigned bytes, %d "
                   "dimension%s)",
                   name, magic, want_magic, want_dims, want_dims == 1 ? "" : "s");
  if (buf[3] != want_dims)
    return CT_FAIL(CT_ERR_FORMAT,
                   "%s: has %d dimensions (magic 0x%08x), expected %d (magic 0x%08x)", name,
                   buf[3], magic, want_dims, want_magic);
  size_t header = 4 + 4 * (size_t)want_dims;
  if (size < header)
    return CT_FAIL(CT_ERR_FORMAT, "%s: truncated header: holds %zu bytes, the header takes %zu",
                   name, size, header);
  uint64_t bytes = 1;
  char shape[64] = "";
  for (int i = 0; i < want_dims; i++) {
    uint32_t d = be32(buf + 4 + 4 * i);
    size_t len = strlen(shape);
    snprintf(shape + len, sizeof shape - len, "%s%u", i ? "x" : "", d);
    if (d == 0) return CT_FAIL(CT_ERR_FORMAT, "%s: dimension %d is 0", name, i);
    if (d > (uint32_t)INT_MAX)
      return CT_FAIL(CT_ERR_FORMAT, "%s: dimension %d is %u, more than %d", name, i, d, INT_MAX);
    bytes *= d;   // <= 2^31 * 2^31: no overflow
    if (bytes > CT_IDX_MAX_BYTES) {
      for (int j = i + 1; j < want_dims; j++) {
        len = strlen(shape);
        snprintf(shape + len, sizeof shape - len, "x%u", be32(buf + 4 + 4 * j));
      }
      return CT_FAIL(CT_ERR_FORMAT,
                     "%s: dimensions %s are absurd: more than the limit of %llu bytes", name,
                     shape, (unsigned long long)CT_IDX_MAX_BYTES);
    }
    dims[i] = (int)d;
  }
  for (int i = want_dims; i < 3; i++) dims[i] = 1;
  size_t have = size - header;
  if (have < bytes)
    return CT_FAIL(CT_ERR_FORMAT, "%s: truncated: holds %zu bytes of data, header says %llu (%s)",
                   name, have, (unsigned long long)bytes, shape);
  if (have > bytes)
    return CT_FAIL(CT_ERR_FORMAT,
                   "%s: trailing garbage: holds %zu bytes of data, header says %llu (%s)", name,
                   have, (unsigned long long)bytes, shape);
  *data = buf + header;
  return CT_OK;
}

// ---- IDX files ------------------------------------------------------------------------------

ct_status ct_read_file(const char *path, uint64_t limit, uint8_t **buf, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return CT_FAIL(CT_ERR_IO, "cannot open %s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) != 0) {
    int e = errno;
    fclose(f);
    return CT_FAIL(CT_ERR_IO, "cannot read %s: %s", path, strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    fclose(f);
    return CT_FAIL(CT_ERR_IO, "cannot read %s: not a regular file", path);
  }
  if ((uint64_t)st.st_size > limit) {
    fclose(f);
    return CT_FAIL(CT_ERR_FORMAT, "%s: is %lld bytes, more than a data file may hold (%llu)", path,
                   (long long)st.st_size, (unsigned long long)limit);
  }
  size_t n = (size_t)st.st_size;
  uint8_t *b = malloc(n ? n : 1);
  if (!b) {
    fclose(f);
    return CT_FAIL(CT_ERR_NOMEM, "%s: out of host memory for %zu bytes", path, n);
  }
  size_t got = fread(b, 1, n, f);
  int e = ferror(f) ? errno : 0;
  fclose(f);
  if (got != n) {
    free(b);
    return CT_FAIL(CT_ERR_IO, "cannot read %s: %s", path,
                   e ? strerror(e) : "the file shrank while it was read");
  }
  *buf = b;
  *size = n;
  return CT_OK;
}

// Inflates gzip data (one or more members) into *out (malloc'ed, *out_size bytes).
static ct_status gunzip(const char *path, const uint8_t *in, size_t in_size, uint8_t **out,
                        size_t *out_size) {
  const size_t limit = (size_t)CT_IDX_MAX_BYTES + 16;   // the largest IDX file: data + header
  // The trailer's ISIZE (size mod 2^32 of the last member) is a good first guess.
  size_t cap = 1 << 20;
  if (in_size >= 18) {
    const uint8_t *t = in + in_size - 4;
    size_t isize = (size_t)t[0] | (size_t)t[1] << 8 | (size_t)t[2] << 16 | (size_t)t[3] << 24;
    // deflate expands at most ~1032:1, so a damaged trailer cannot ask for a huge buffer
    size_t bound = in_size > limit / 1032 ? limit + 1 : in_size * 1032 + 64;
    if (isize > 0 && isize < bound) cap = isize + 1;
  }
  uint8_t *o = malloc(cap);
  if (!o) return CT_FAIL(CT_ERR_NOMEM, "%s: out of host memory", path);
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  int ret = inflateInit2(&zs, 16 + MAX_WBITS);
  if (ret != Z_OK) {
    free(o);
    return CT_FAIL(ret == Z_MEM_ERROR ? CT_ERR_NOMEM : CT_ERR_INTERNAL,
                   "%s: inflateInit2 failed: %s", path, zError(ret));
  }
  zs.next_in = (Bytef *)in;
  zs.avail_in = (uInt)in_size;   // in_size <= 2^31 + 64 (read_whole)
  size_t len = 0;
  ct_status st = CT_OK;
  for (;;) {
    if (len == cap) {
      if (cap > limit) {
        st = CT_FAIL(CT_ERR_FORMAT, "%s: decompresses to more than %zu bytes, the limit of an "
                     "IDX file", path, limit);
        break;
      }
      size_t ncap = cap * 2 > limit + 1 ? limit + 1 : cap * 2;
      uint8_t *p = realloc(o, ncap);
      if (!p) {
        st = CT_FAIL(CT_ERR_NOMEM, "%s: out of host memory for %zu bytes", path, ncap);
        break;
      }
      o = p;
      cap = ncap;
    }
    size_t room = cap - len;
    if (room > UINT_MAX) room = UINT_MAX;
    zs.next_out = o + len;
    zs.avail_out = (uInt)room;
    ret = inflate(&zs, Z_NO_FLUSH);
    len += room - zs.avail_out;
    if (ret == Z_STREAM_END) {
      if (zs.avail_in == 0) break;
      if (zs.avail_in >= 2 && zs.next_in[0] == 0x1f && zs.next_in[1] == 0x8b) {
        inflateReset(&zs);   // another gzip member follows
        continue;
      }
      st = CT_FAIL(CT_ERR_FORMAT,
                   "%s: not a valid gzip stream: %u bytes of trailing garbage after the "
                   "compressed data", path, zs.avail_in);
      break;
    }
    if (ret == Z_OK) continue;
    if (ret == Z_BUF_ERROR && zs.avail_out == 0) continue;   // needs more room
    if (ret == Z_BUF_ERROR) {
      st = CT_FAIL(CT_ERR_FORMAT, "%s: not a valid gzip stream: unexpected end of file "
                   "(truncated after %zu compressed bytes)", path, in_size);
      break;
    }
    st = CT_FAIL(ret == Z_MEM_ERROR ? CT_ERR_NOMEM : CT_ERR_FORMAT,
                 "%s: not a valid gzip stream: %s", path, zs.msg ? zs.msg : zError(ret));
    break;
  }
  inflateEnd(&zs);
  if (st != CT_OK) {
    free(o);
    return st;
  }
  *out = o;
  *out_size = len;
  return CT_OK;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && !strcmp(s + n - m, suffix);
}

ct_status ct_idx_read(const char *path, int want_dims, int dims[3], uint8_t **data) {
  uint8_t *file = NULL;
  size_t size = 0;
  CT_TRY(ct_read_file(path, CT_IDX_MAX_BYTES + 64, &file, &size));
  uint8_t *buf = file;
  int gz = size >= 2 && file[0] == 0x1f && file[1] == 0x8b;
  if (!gz && ends_with(path, ".gz")) {
    ct_status st;
    if (size < 2)
      st = CT_FAIL(CT_ERR_FORMAT, "%s: not a valid gzip stream: the file holds only %zu byte%s",
                   path, size, size == 1 ? "" : "s");
    else
      st = CT_FAIL(CT_ERR_FORMAT, "%s: not a valid gzip stream: starts with %02x %02x, not the "
                   "gzip magic 1f 8b", path, file[0], file[1]);
    free(file);
    return st;
  }
  if (gz) {
    ct_status st = gunzip(path, file, size, &buf, &size);
    free(file);
    if (st != CT_OK) return st;
  }
  const uint8_t *payload;
  ct_status st = ct_idx_parse(buf, size, path, want_dims, dims, &payload);
  if (st != CT_OK) {
    free(buf);
    return st;
  }
  size_t bytes = (size_t)dims[0] * (size_t)dims[1] * (size_t)dims[2];
  memmove(buf, payload, bytes);
  uint8_t *shrunk = realloc(buf, bytes);
  *data = shrunk ? shrunk : buf;
  return CT_OK;
}

// ---- datasets -------------------------------------------------------------------------------

// <dir>/<base> if it exists, else <dir>/<base>.gz; CT_ERR_IO naming both when neither does.
static ct_status find_file(const char *dir, const char *base, char *path, size_t size) {
  int n = snprintf(path, size, "%s/%s", dir, base);
  if (n < 0 || (size_t)n + 4 > size)
    return CT_FAIL(CT_ERR_USAGE, "--data: folder name too long: %s", dir);
  struct stat st;
  if (stat(path, &st) == 0) return CT_OK;
  int e = errno;
  if (e != ENOENT && e != ENOTDIR) return CT_FAIL(CT_ERR_IO, "cannot open %s: %s", path, strerror(e));
  strcat(path, ".gz");
  if (stat(path, &st) == 0) return CT_OK;
  e = errno;
  path[strlen(path) - 3] = 0;
  if (e != ENOENT && e != ENOTDIR)
    return CT_FAIL(CT_ERR_IO, "cannot open %s.gz: %s", path, strerror(e));
  return CT_FAIL(CT_ERR_IO, "cannot open %s or %s.gz: %s", path, path, strerror(ENOENT));
}

// Checks labels against classes (> 0), or sets *classes to the largest + 1 (classes = 0).
static ct_status check_labels(const uint8_t *labels, int count, const char *path, int *classes) {
  if (*classes > 0) {
    for (int i = 0; i < count; i++)
      if (labels[i] >= *classes)
        return CT_FAIL(CT_ERR_FORMAT, "%s: label %d at index %d is out of range 0..%d", path,
                       labels[i], i, *classes - 1);
    return CT_OK;
  }
  // derived: the largest label + 1, but only when every smaller label occurs too; a label above
  // labels that never occur is more likely a damaged file than a class with no samples
  int top = 0, at = 0, seen[256] = {0};
  for (int i = 0; i < count; i++) {
    seen[labels[i]] = 1;
    if (labels[i] > top) top = labels[i], at = i;
  }
  char missing[96] = "";
  int nmissing = 0;
  for (int c = 0; c < top; c++)
    if (!seen[c] && nmissing++ < 4) {
      size_t len = strlen(missing);
      snprintf(missing + len, sizeof missing - len, "%s%d", len ? ", " : "", c);
    }
  if (nmissing)
    return CT_FAIL(CT_ERR_FORMAT, "%s: label %d at index %d lies above labels that never occur "
                   "(%s%s); a damaged file? (--classes N trains with N classes anyway)", path, top,
                   at, missing, nmissing > 4 ? ", ..." : "");
  *classes = top + 1;
  return CT_OK;
}

static ct_status load_idx(const char *dir, const char *split, int classes, ct_dataset *ds) {
  char ipath[4096], lpath[4096], base[256];
  snprintf(base, sizeof base, "%s-images-idx3-ubyte", split);
  CT_TRY(find_file(dir, base, ipath, sizeof ipath));
  snprintf(base, sizeof base, "%s-labels-idx1-ubyte", split);
  CT_TRY(find_file(dir, base, lpath, sizeof lpath));
  int idims[3], ldims[3];
  uint8_t *pixels = NULL, *labels = NULL;
  CT_TRY(ct_idx_read(ipath, 3, idims, &pixels));
  ct_status st = ct_idx_read(lpath, 1, ldims, &labels);
  if (st != CT_OK) {
    free(pixels);
    return st;
  }
  if (idims[0] != ldims[0]) {
    st = CT_FAIL(CT_ERR_FORMAT, "%s holds %d images but %s holds %d labels", ipath, idims[0],
                 lpath, ldims[0]);
    goto fail;
  }
  if ((st = check_labels(labels, ldims[0], lpath, &classes)) != CT_OK) goto fail;
  ds->count = idims[0];
  ds->channels = 1;
  ds->rows = idims[1];
  ds->cols = idims[2];
  ds->classes = classes;
  ds->pixels = pixels;
  ds->labels = labels;
  snprintf(ds->format, sizeof ds->format, "idx");
  return CT_OK;
fail:
  free(pixels);
  free(labels);
  return st;
}

// Reads and parses one .npy file: *file is the whole file (the caller frees it).
static ct_status read_npy(const char *path, uint8_t **file, ct_npy_info *info) {
  size_t size = 0;
  CT_TRY(ct_read_file(path, CT_NPY_MAX_BYTES + 65536, file, &size));
  ct_status st = ct_npy_parse(*file, size, path, info);
  if (st != CT_OK) {
    free(*file);
    *file = NULL;
  }
  return st;
}

// The images' and labels' headers checked against what a data set needs: N x H x W [x C] images
// of uint8 or a float type, N integer labels.
static ct_status check_npy(const char *ipath, const char *lpath, const ct_npy_info *ii,
                           const ct_npy_info *li) {
  if (ii->ndim != 3 && ii->ndim != 4)
    return CT_FAIL(CT_ERR_FORMAT, "%s: images of %d dimensions; expected N x H x W or N x H x W "
                   "x C", ipath, ii->ndim);
  if (!(ii->kind == 'u' && ii->item == 1) && ii->kind != 'f')
    return CT_FAIL(CT_ERR_FORMAT, "%s: images of dtype %c%d; expected uint8 ('|u1') or float32 "
                   "('<f4', float64 taken too)", ipath, ii->kind, ii->item);
  uint64_t n = ii->shape[0], h = ii->shape[1], w = ii->shape[2];
  uint64_t c = ii->ndim == 4 ? ii->shape[3] : 1;
  if (n == 0 || h == 0 || w == 0 || c == 0)
    return CT_FAIL(CT_ERR_FORMAT, "%s: a dimension of the images is 0", ipath);
  if (h * w * c > (uint64_t)INT_MAX)
    return CT_FAIL(CT_ERR_FORMAT, "%s: %llu values per image, more than %d", ipath,
                   (unsigned long long)(h * w * c), INT_MAX);
  if (li->kind == 'f')
    return CT_FAIL(CT_ERR_FORMAT, "%s: labels of a float dtype; expected an integer type", lpath);
  if (li->ndim != 1)
    return CT_FAIL(CT_ERR_FORMAT, "%s: labels of %d dimensions; expected shape (N,)", lpath,
                   li->ndim);
  if (li->shape[0] != n)
    return CT_FAIL(CT_ERR_FORMAT, "%s holds %llu images but %s holds %llu labels", ipath,
                   (unsigned long long)n, lpath, (unsigned long long)li->shape[0]);
  return CT_OK;
}

// n labels of any integer type, narrowed to one byte (0..255).
static ct_status npy_labels(const char *lpath, const ct_npy_info *li, const uint8_t *ld,
                            uint64_t n, uint8_t *labels) {
  for (uint64_t i = 0; i < n; i++) {
    int64_t v = ct_npy_int(li, ld, i);
    if (v < 0 || v > 255)
      return CT_FAIL(CT_ERR_FORMAT, "%s: label %lld at index %llu is out of range 0..255", lpath,
                     (long long)v, (unsigned long long)i);
    labels[i] = (uint8_t)v;
  }
  return CT_OK;
}

// The images, channels last (N, H, W, C) in the file -> channels first (N, C, H, W) in memory:
// as bytes into pixels, or (pixels NULL) as float32 into fpixels, each value checked finite.
static ct_status npy_images(const char *ipath, const ct_npy_info *ii, const uint8_t *id,
                            uint8_t *pixels, float *fpixels) {
  uint64_t n = ii->shape[0], h = ii->shape[1], w = ii->shape[2];
  uint64_t c = ii->ndim == 4 ? ii->shape[3] : 1;
  size_t hw = (size_t)(h * w), d = hw * (size_t)c;
  for (uint64_t i = 0; i < n; i++)
    for (size_t p = 0; p < hw; p++)
      for (size_t k = 0; k < (size_t)c; k++) {
        uint64_t src = i * d + p * (size_t)c + k, dst = i * d + k * hw + p;
        if (pixels) {
          pixels[dst] = id[src];
          continue;
        }
        double v = ct_npy_float(ii, id, src);
        if (!(v >= -3.4e38 && v <= 3.4e38))   // NaN, infinite, or beyond float32
          return CT_FAIL(CT_ERR_FORMAT, "%s: image %llu holds a value that is not a finite "
                         "float32 (%g at item %llu)", ipath, (unsigned long long)i, v,
                         (unsigned long long)src);
        fpixels[dst] = (float)v;
      }
  return CT_OK;
}

static ct_status load_npy(const char *ipath, const char *lpath, int classes, ct_dataset *ds) {
  uint8_t *ifile = NULL, *lfile = NULL, *pixels = NULL, *labels = NULL;
  float *fpixels = NULL;
  ct_npy_info ii, li;
  CT_TRY(read_npy(ipath, &ifile, &ii));
  ct_status st = read_npy(lpath, &lfile, &li);
  if (st != CT_OK) goto fail;
  if ((st = check_npy(ipath, lpath, &ii, &li)) != CT_OK) goto fail;
  uint64_t n = ii.shape[0], h = ii.shape[1], w = ii.shape[2], c = ii.ndim == 4 ? ii.shape[3] : 1;
  labels = malloc(n);
  if (ii.kind == 'f')
    fpixels = malloc(ii.count * sizeof *fpixels);
  else
    pixels = malloc(ii.count);
  if (!labels || (!fpixels && !pixels)) {
    st = CT_FAIL(CT_ERR_NOMEM, "%s: out of host memory for %llu images", ipath,
                 (unsigned long long)n);
    goto fail;
  }
  if ((st = npy_labels(lpath, &li, lfile + li.offset, n, labels)) != CT_OK) goto fail;
  if ((st = npy_images(ipath, &ii, ifile + ii.offset, pixels, fpixels)) != CT_OK) goto fail;
  if (n > (uint64_t)INT_MAX) {
    st = CT_FAIL(CT_ERR_FORMAT, "%s: %llu images, more than %d", ipath, (unsigned long long)n,
                 INT_MAX);
    goto fail;
  }
  if ((st = check_labels(labels, (int)n, lpath, &classes)) != CT_OK) goto fail;
  free(ifile);
  free(lfile);
  ds->count = (int)n;
  ds->channels = (int)c, ds->rows = (int)h, ds->cols = (int)w;
  ds->classes = classes;
  ds->pixels = pixels, ds->fpixels = fpixels, ds->labels = labels;
  snprintf(ds->format, sizeof ds->format, "npy");
  return CT_OK;
fail:
  free(ifile);
  free(lfile);
  free(pixels);
  free(fpixels);
  free(labels);
  return st;
}

ct_status ct_dataset_load(const char *dir, const char *split, int classes, ct_dataset *ds) {
  memset(ds, 0, sizeof *ds);
  if (!dir || !*dir) return CT_FAIL(CT_ERR_USAGE, "--data: no data folder given");
  if (classes < 0 || classes > 256)
    return CT_FAIL(CT_ERR_USAGE, "dataset: %d classes; byte labels allow 1..256", classes);
  char ipath[4096], lpath[4096];
  const char *s = !strcmp(split, "t10k") ? "test" : split;
  int n = snprintf(ipath, sizeof ipath, "%s/%s_images.npy", dir, s);
  snprintf(lpath, sizeof lpath, "%s/%s_labels.npy", dir, s);
  if (n < 0 || (size_t)n + 4 > sizeof ipath)
    return CT_FAIL(CT_ERR_USAGE, "--data: folder name too long: %s", dir);
  // The folder's format is decided by train_images.npy, so that a missing test split of a
  // NumPy folder is named as such and not as missing IDX files.
  char probe[4096];
  snprintf(probe, sizeof probe, "%s/train_images.npy", dir);
  struct stat st;
  if (stat(probe, &st) == 0) return load_npy(ipath, lpath, classes, ds);
  return load_idx(dir, split, classes, ds);
}

int ct_dataset_labels_per_sample(const ct_dataset *ds) { return ds->seq > 0 ? ds->seq : 1; }

void ct_dataset_free(ct_dataset *ds) {
  free(ds->tokens);
  free(ds->pixels);
  free(ds->fpixels);
  free(ds->labels);
  memset(ds, 0, sizeof *ds);
}

void ct_dataset_limit(ct_dataset *ds, int count) {
  if (count > 0 && count < ds->count) ds->count = count;
}

void ct_dataset_gather(const ct_dataset *ds, const int *idx, int n, float mean, float std,
                       float *x, int *y) {
  if (ds->tokens) {   // a text: token ids (int32 in x's memory) and the next tokens
    ct_text_gather(ds, idx, n, (int32_t *)(void *)x, y);
    return;
  }
  float lut[256];
  for (int v = 0; v < 256; v++) {
    float f = (float)v / 255.0f;
    if (std > 0) f = (f - mean) / std;
    lut[v] = f;
  }
  size_t d = (size_t)ds->channels * (size_t)ds->rows * (size_t)ds->cols;
  for (int k = 0; k < n; k++) {
    float *o = x + (size_t)k * d;
    if (ds->fpixels) {
      const float *p = ds->fpixels + (size_t)idx[k] * d;
      for (size_t j = 0; j < d; j++) o[j] = std > 0 ? (p[j] - mean) / std : p[j];
    } else {
      const uint8_t *p = ds->pixels + (size_t)idx[k] * d;
      for (size_t j = 0; j < d; j++) o[j] = lut[p[j]];
    }
    y[k] = ds->labels[idx[k]];
  }
}

// ---- random streams and the epoch order -----------------------------------------------------

static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static uint64_t splitmix_next(uint64_t *s) { return mix64(*s += 0x9e3779b97f4a7c15ULL); }

// A stream's starting state from (seed, purpose, k): different purposes never share a stream.
static uint64_t stream_seed(uint64_t seed, uint64_t purpose, uint64_t k) {
  return mix64(mix64(seed ^ purpose) + k * 0x9e3779b97f4a7c15ULL);
}

// Uniform in [0, bound), bound >= 1: rejects the top 2^64 mod bound values.
static uint64_t bounded(uint64_t *s, uint64_t bound) {
  uint64_t threshold = (0 - bound) % bound;
  for (;;) {
    uint64_t r = splitmix_next(s);
    if (r >= threshold) return r % bound;
  }
}

static void shuffle_ints(int *a, int n, uint64_t state) {
  for (int i = n - 1; i > 0; i--) {
    int j = (int)bounded(&state, (uint64_t)i + 1);
    int t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
}

#define PURPOSE_EPOCH 0x45504f4348ULL    // "EPOCH"
#define PURPOSE_SHARD 0x5348415244ULL    // "SHARD"

void ct_epoch_order(int count, uint64_t seed, int epoch, int shuffle, int *order) {
  for (int i = 0; i < count; i++) order[i] = i;
  if (shuffle) shuffle_ints(order, count, stream_seed(seed, PURPOSE_EPOCH, (uint64_t)(int64_t)epoch));
}

// ---- shards ---------------------------------------------------------------------------------

ct_status ct_shard_parse(const char *name, ct_shard *shard) {
  static const char *names[] = {"sequential", "random", "stratified"};
  for (int i = 0; i < 3; i++)
    if (name && !strcasecmp(name, names[i])) {
      *shard = (ct_shard)i;
      return CT_OK;
    }
  return CT_FAIL(CT_ERR_USAGE,
                 "--shard: unknown strategy '%s' (expected sequential, random or stratified)",
                 name ? name : "");
}

const char *ct_shard_name(ct_shard shard) {
  switch (shard) {
    case CT_SHARD_SEQUENTIAL: return "sequential";
    case CT_SHARD_RANDOM: return "random";
    case CT_SHARD_STRATIFIED: return "stratified";
  }
  return "unknown";
}

void ct_shares_even(int n, int world, int *shares) {
  for (int r = 0; r < world; r++) shares[r] = n / world + (r < n % world ? 1 : 0);
}

void ct_shares_weighted(int n, int world, const uint32_t *w, int *shares) {
  uint64_t total = 0;
  for (int r = 0; r < world; r++) total += w[r];
  if (total == 0) {
    ct_shares_even(n, world, shares);
    return;
  }
  // floor(n * w / total) each (exact in 64 bits: n < 2^31, w < 2^32), then the rest one by one
  // to the largest remainders, lower rank first on ties
  int given = 0;
  for (int r = 0; r < world; r++) {
    shares[r] = (int)((uint64_t)n * w[r] / total);
    given += shares[r];
  }
  while (given < n) {
    int best = -1;
    uint64_t best_rem = 0;
    for (int r = 0; r < world; r++) {
      if (!w[r]) continue;
      uint64_t rem = (uint64_t)n * w[r] - (uint64_t)shares[r] * total;   // in [0, total) at first
      if (best < 0 || rem > best_rem) best = r, best_rem = rem;
    }
    shares[best]++;
    given++;
  }
}

// Controlled rounding of P[r][c] = shares[r]*cnt[c]/n: x[r*C+c] in {floor, ceil} with row sums
// shares[r] and column sums cnt[c]. Such a table always exists (the bounds floor/ceil hold the
// fractional table P, so the transportation polytope has an integer vertex inside them); it is
// found by augmenting paths from each row that still needs units. Returns 0, or -1 on failure.
static int controlled_rounding(const int *shares, int world, const int *cnt, int classes, int n,
                               int *x) {
  int nodes = world + classes;
  int *need = calloc((size_t)nodes, sizeof *need);       // rows then columns
  unsigned char *frac = calloc((size_t)world * classes, 1);
  unsigned char *extra = calloc((size_t)world * classes, 1);
  int *parent = malloc((size_t)nodes * sizeof *parent), *queue = malloc((size_t)nodes * sizeof *queue);
  int rc = -1;
  if (!need || !frac || !extra || !parent || !queue) goto done;
  for (int c = 0; c < classes; c++) need[world + c] = cnt[c];
  for (int r = 0; r < world; r++) {
    need[r] = shares[r];
    for (int c = 0; c < classes; c++) {
      long long p = (long long)shares[r] * cnt[c];
      int f = (int)(p / n);
      x[r * classes + c] = f;
      frac[r * classes + c] = p % n != 0;
      need[r] -= f;
      need[world + c] -= f;
    }
  }
  for (int r0 = 0; r0 < world; r0++)
    while (need[r0] > 0) {
      // BFS over the residual graph: row r -> column c when (r, c) may still take its extra unit;
      // column c -> row r when (r, c) has taken it (the path would move it elsewhere).
      for (int i = 0; i < nodes; i++) parent[i] = -2;
      int head = 0, tail = 0, found = -1;
      parent[r0] = -1;
      queue[tail++] = r0;
      while (head < tail && found < 0) {
        int u = queue[head++];
        if (u < world) {
          for (int c = 0; c < classes; c++) {
            int v = world + c;
            if (parent[v] != -2 || !frac[u * classes + c] || extra[u * classes + c]) continue;
            parent[v] = u;
            if (need[v] > 0) { found = v; break; }
            queue[tail++] = v;
          }
        } else {
          int c = u - world;
          for (int r = 0; r < world; r++) {
            if (parent[r] != -2 || !extra[r * classes + c]) continue;
            parent[r] = u;
            queue[tail++] = r;
          }
        }
      }
      if (found < 0) goto done;   // cannot happen (see above)
      for (int v = found; v != r0;) {
        int r = parent[v];                       // row -> column v: take the unit
        extra[r * classes + (v - world)] = 1;
        if (r == r0) break;
        int u = parent[r];                       // column u -> row r: give its unit back
        extra[r * classes + (u - world)] = 0;
        v = u;
      }
      need[r0]--;
      need[found]--;
    }
  for (int i = 0; i < world * classes; i++) x[i] += extra[i];
  rc = 0;
done:
  free(need), free(frac), free(extra), free(parent), free(queue);
  return rc;
}

static int take_stratified(const ct_dataset *ds, const int *batch, int n, const int *shares,
                           int world, int rank, int *out) {
  if (!ds || !ds->labels || ds->classes < 1 || ds->classes > 256) return -1;
  int classes = ds->classes;
  int cnt[256] = {0}, seen[256] = {0}, lo[256], hi[256];
  for (int i = 0; i < n; i++) {
    int c = ds->labels[batch[i]];
    if (c >= classes) return -1;
    cnt[c]++;
  }
  int *x = malloc((size_t)world * classes * sizeof *x);   // (world, classes) samples per cell
  if (!x) return -1;
  if (controlled_rounding(shares, world, cnt, classes, n, x) != 0) {
    free(x);
    return -1;
  }
  // Within a class, the samples go in batch order to rank 0, then rank 1, ...
  for (int c = 0; c < classes; c++) {
    lo[c] = 0;
    for (int r = 0; r < rank; r++) lo[c] += x[r * classes + c];
    hi[c] = lo[c] + x[rank * classes + c];
  }
  free(x);
  int m = 0;
  for (int i = 0; i < n; i++) {
    int c = ds->labels[batch[i]];
    int k = seen[c]++;
    if (k >= lo[c] && k < hi[c]) out[m++] = batch[i];
  }
  return m;
}

int ct_shard_take(ct_shard shard, const ct_dataset *ds, const int *batch, int n, uint64_t seed,
                  long step, const int *shares, int world, int rank, int *out) {
  if (n < 0 || world < 1 || rank < 0 || rank >= world) return -1;
  long long sum = 0, offset = 0;
  for (int r = 0; r < world; r++) {
    if (shares[r] < 0) return -1;
    if (r < rank) offset += shares[r];
    sum += shares[r];
  }
  if (sum != n) return -1;
  int mine = shares[rank];
  if (n == 0 || mine == 0) return 0;
  switch (shard) {
    case CT_SHARD_SEQUENTIAL:
      memcpy(out, batch + offset, (size_t)mine * sizeof *out);
      return mine;
    case CT_SHARD_RANDOM: {
      int *perm = malloc((size_t)n * sizeof *perm);
      if (!perm) return -1;
      for (int i = 0; i < n; i++) perm[i] = i;
      shuffle_ints(perm, n, stream_seed(seed, PURPOSE_SHARD, (uint64_t)(int64_t)step));
      for (int k = 0; k < mine; k++) out[k] = batch[perm[offset + k]];
      free(perm);
      return mine;
    }
    case CT_SHARD_STRATIFIED: {
      int m = take_stratified(ds, batch, n, shares, world, rank, out);
      return m == mine ? m : -1;
    }
  }
  return -1;
}
