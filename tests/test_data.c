// test_data.c: the data subsystem.
//   - the real Fashion-MNIST set loads (60000/10000, 28x28, labels 0..9); when its folder
//     ($CLTRAIN_DATA, else /usr/share/datasets/fashion-mnist) is absent the suite exits 77;
//   - small IDX files written in a temporary folder, raw and gzipped (one and two gzip members),
//     load with the right content;
//   - damaged files (truncated, trailing bytes, wrong magic, wrong dimensions, zero and absurd
//     dimensions, count mismatch, label out of range, a .gz that is not gzip, corrupt and
//     truncated gzip, missing files) give CT_ERR_FORMAT / CT_ERR_IO and a message naming the file;
//     every truncation and many mutations of a header never crash ct_idx_parse;
//   - .npy: headers of versions 1-3 parse (dtypes, byte orders, shapes incl. () and (N,)); bad
//     headers are rejected with the reason; every truncation and byte mutation of a header
//     never crashes; a channels-last uint8 set and a float32 set load channels first with the
//     right values, big-endian labels, classes derived or checked; classes derived for IDX;
//   - gather scaling and normalisation; the epoch order; the shard strategies over world 1..5
//     with uneven shares (partition, share sizes, class mix, determinism).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "cltrain/data.h"
#include "testutil.h"

static const char *real_dir(void) {
  const char *d = getenv("CLTRAIN_DATA");
  return d && *d ? d : "/usr/share/datasets/fashion-mnist";
}

static int have_real_data(void) {
  char p[4096];
  snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte.gz", real_dir());
  if (access(p, R_OK) == 0) return 1;
  snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte", real_dir());
  return access(p, R_OK) == 0;
}

// ---- writing test files ---------------------------------------------------------------------

static char tmp[64];

static void make_tmp(void) {
  snprintf(tmp, sizeof tmp, "/tmp/cltrain-data-XXXXXX");
  ck_assert_ptr_nonnull(mkdtemp(tmp));
}

static void remove_tmp(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
  ck_assert_int_eq(system(cmd), 0);
}

static void path_of(char *out, size_t size, const char *name) {
  snprintf(out, size, "%s/%s", tmp, name);
}

// An IDX image (need 3 dims) or label (1 dim) file in memory: magic, dims, data. *n bytes.
static uint8_t *idx_bytes(uint32_t magic, const uint32_t *dims, int nd, const uint8_t *data,
                          size_t bytes, size_t *n) {
  *n = 4 + 4 * (size_t)nd + bytes;
  uint8_t *b = malloc(*n);
  uint32_t words[4] = {magic, nd > 0 ? dims[0] : 0, nd > 1 ? dims[1] : 0, nd > 2 ? dims[2] : 0};
  for (int w = 0; w <= nd; w++)
    for (int k = 0; k < 4; k++) b[4 * w + k] = (uint8_t)(words[w] >> (24 - 8 * k));
  memcpy(b + 4 + 4 * nd, data, bytes);
  return b;
}

static void write_raw(const char *name, const uint8_t *b, size_t n) {
  char p[256];
  path_of(p, sizeof p, name);
  FILE *f = fopen(p, "wb");
  ck_assert_ptr_nonnull(f);
  ck_assert_uint_eq(fwrite(b, 1, n, f), n);
  ck_assert_int_eq(fclose(f), 0);
}

// Gzipped with zlib's gzopen; `members` > 1 splits the data over that many gzip members.
static void write_gz(const char *name, const uint8_t *b, size_t n, int members) {
  char p[256];
  path_of(p, sizeof p, name);
  size_t done = 0;
  for (int m = 0; m < members; m++) {
    size_t part = m == members - 1 ? n - done : n / members;
    gzFile g = gzopen(p, m == 0 ? "wb" : "ab");
    ck_assert_ptr_nonnull(g);
    ck_assert_int_eq(gzwrite(g, b + done, (unsigned)part), (int)part);
    ck_assert_int_eq(gzclose(g), Z_OK);
    done += part;
  }
}

static uint8_t *read_back(const char *name, size_t *n) {
  char p[256];
  path_of(p, sizeof p, name);
  FILE *f = fopen(p, "rb");
  ck_assert_ptr_nonnull(f);
  fseek(f, 0, SEEK_END);
  *n = (size_t)ftell(f);
  rewind(f);
  uint8_t *b = malloc(*n);
  ck_assert_uint_eq(fread(b, 1, *n, f), *n);
  fclose(f);
  return b;
}

// A small set: count images of rows x cols with pixel (i, j) = (7*i + j) mod 256, labels i mod
// classes.
#define SMALL_COUNT 7
#define SMALL_ROWS 3
#define SMALL_COLS 2
static void small_set(uint8_t **images, size_t *ni, uint8_t **labels, size_t *nl) {
  uint8_t px[SMALL_COUNT * SMALL_ROWS * SMALL_COLS], lb[SMALL_COUNT];
  for (int i = 0; i < SMALL_COUNT; i++) {
    lb[i] = (uint8_t)(i % 5);
    for (int j = 0; j < SMALL_ROWS * SMALL_COLS; j++)
      px[i * SMALL_ROWS * SMALL_COLS + j] = (uint8_t)((37 * i + 11 * j) % 256);
  }
  uint32_t idims[3] = {SMALL_COUNT, SMALL_ROWS, SMALL_COLS}, ldims[1] = {SMALL_COUNT};
  *images = idx_bytes(0x803, idims, 3, px, sizeof px, ni);
  *labels = idx_bytes(0x801, ldims, 1, lb, sizeof lb, nl);
}

static void check_small(const ct_dataset *ds) {
  ck_assert_int_eq(ds->count, SMALL_COUNT);
  ck_assert_int_eq(ds->channels, 1);
  ck_assert_int_eq(ds->rows, SMALL_ROWS);
  ck_assert_int_eq(ds->cols, SMALL_COLS);
  for (int i = 0; i < SMALL_COUNT; i++) {
    ck_assert_int_eq(ds->labels[i], i % 5);
    for (int j = 0; j < SMALL_ROWS * SMALL_COLS; j++)
      ck_assert_int_eq(ds->pixels[i * SMALL_ROWS * SMALL_COLS + j], (37 * i + 11 * j) % 256);
  }
}

// Asserts that the last call failed with `want` and that its message names `file` and holds
// `phrase`.
#define ASSERT_FAILS(call, want, file, phrase)                                              \
  do {                                                                                      \
    ct_error_clear();                                                                       \
    ct_status st_ = (call);                                                                 \
    const char *m_ = ct_error_text();                                                       \
    ck_assert_msg(st_ == (want), "%s -> %s (want %s): %s", #call, ct_strerror(st_),        \
                  ct_strerror(want), m_);                                                   \
    ck_assert_msg(strstr(m_, (file)) != NULL, "message '%s' does not name %s", m_, (file)); \
    ck_assert_msg(strstr(m_, (phrase)) != NULL, "message '%s' lacks '%s'", m_, (phrase));   \
    ck_assert_msg(strchr(m_, '\n') == NULL, "message '%s' is not one line", m_);            \
  } while (0)

// ---- the real set ---------------------------------------------------------------------------

START_TEST(real_fashion_mnist_loads) {
  if (!have_real_data()) {
    fprintf(stderr, "SKIP: no Fashion-MNIST in %s\n", real_dir());
    return;
  }
  ct_dataset tr, te;
  ck_assert_ct(ct_dataset_load(real_dir(), "train", 10, &tr));
  ck_assert_ct(ct_dataset_load(real_dir(), "t10k", 10, &te));
  ck_assert_int_eq(tr.count, 60000);
  ck_assert_int_eq(te.count, 10000);
  int hist[10] = {0};
  for (int k = 0; k < 2; k++) {
    const ct_dataset *d = k ? &te : &tr;
    ck_assert_int_eq(d->channels, 1);
    ck_assert_int_eq(d->rows, 28);
    ck_assert_int_eq(d->cols, 28);
    ck_assert_int_eq(d->classes, 10);
    for (int i = 0; i < d->count; i++) {
      ck_assert_int_lt(d->labels[i], 10);
      if (!k) hist[d->labels[i]]++;
    }
  }
  for (int c = 0; c < 10; c++) ck_assert_int_eq(hist[c], 6000);   // Fashion-MNIST is balanced
  long sum = 0;
  for (int j = 0; j < 28 * 28; j++) sum += tr.pixels[j];
  ck_assert_int_gt(sum, 0);   // not all black
  ct_dataset_limit(&tr, 1000);
  ck_assert_int_eq(tr.count, 1000);
  ct_dataset_free(&tr);
  ct_dataset_free(&te);
  ck_assert_ptr_null(tr.pixels);
}
END_TEST

// ---- small files ----------------------------------------------------------------------------

START_TEST(small_files_raw_and_gzip) {
  make_tmp();
  uint8_t *im, *lb;
  size_t ni, nl;
  small_set(&im, &ni, &lb, &nl);
  write_raw("train-images-idx3-ubyte", im, ni);
  write_raw("train-labels-idx1-ubyte", lb, nl);
  write_gz("t10k-images-idx3-ubyte.gz", im, ni, 1);
  write_gz("t10k-labels-idx1-ubyte.gz", lb, nl, 2);   // two gzip members
  ct_dataset ds;
  ck_assert_ct(ct_dataset_load(tmp, "train", 5, &ds));
  check_small(&ds);
  ct_dataset_free(&ds);
  ck_assert_ct(ct_dataset_load(tmp, "t10k", 5, &ds));
  check_small(&ds);
  ct_dataset_limit(&ds, 0);   // no change
  ck_assert_int_eq(ds.count, SMALL_COUNT);
  ct_dataset_limit(&ds, 100);
  ck_assert_int_eq(ds.count, SMALL_COUNT);
  ct_dataset_limit(&ds, 3);
  ck_assert_int_eq(ds.count, 3);
  ct_dataset_free(&ds);

  // ct_idx_read directly, and ct_idx_parse pointing into the buffer
  char p[256];
  int dims[3];
  uint8_t *data;
  path_of(p, sizeof p, "t10k-labels-idx1-ubyte.gz");
  ck_assert_ct(ct_idx_read(p, 1, dims, &data));
  ck_assert_int_eq(dims[0], SMALL_COUNT);
  ck_assert_int_eq(dims[1], 1);
  ck_assert_int_eq(dims[2], 1);
  ck_assert_int_eq(memcmp(data, lb + 8, SMALL_COUNT), 0);
  free(data);
  const uint8_t *inside;
  ck_assert_ct(ct_idx_parse(im, ni, "mem", 3, dims, &inside));
  ck_assert_ptr_eq(inside, im + 16);
  ck_assert_int_eq(dims[0], SMALL_COUNT);
  ck_assert_int_eq(dims[1], SMALL_ROWS);
  ck_assert_int_eq(dims[2], SMALL_COLS);
  free(im);
  free(lb);
  remove_tmp();
}
END_TEST

// ---- damaged files --------------------------------------------------------------------------

// Writes the small set as <split>-*, raw, with the images (or labels) replaced by bad bytes.
static void write_split(const char *split, const uint8_t *im, size_t ni, const uint8_t *lb,
                        size_t nl) {
  char name[128];
  snprintf(name, sizeof name, "%s-images-idx3-ubyte", split);
  write_raw(name, im, ni);
  snprintf(name, sizeof name, "%s-labels-idx1-ubyte", split);
  write_raw(name, lb, nl);
}

START_TEST(damaged_files_are_reported) {
  make_tmp();
  uint8_t *im, *lb;
  size_t ni, nl;
  small_set(&im, &ni, &lb, &nl);
  ct_dataset ds;
  char ip[256], lp[256];

  // truncated images: 5 bytes short
  write_split("trunc", im, ni - 5, lb, nl);
  path_of(ip, sizeof ip, "trunc-images-idx3-ubyte");
  ASSERT_FAILS(ct_dataset_load(tmp, "trunc", 5, &ds), CT_ERR_FORMAT, ip,
               "truncated: holds 37 bytes of data, header says 42");
  ck_assert_ptr_null(ds.pixels);

  // trailing garbage
  uint8_t *longer = malloc(ni + 3);
  memcpy(longer, im, ni);
  memset(longer + ni, 0xAB, 3);
  write_split("trail", longer, ni + 3, lb, nl);
  path_of(ip, sizeof ip, "trail-images-idx3-ubyte");
  ASSERT_FAILS(ct_dataset_load(tmp, "trail", 5, &ds), CT_ERR_FORMAT, ip, "trailing garbage");
  free(longer);

  // wrong magic: the labels file where the images should be, and a random magic
  write_split("swap", lb, nl, lb, nl);
  path_of(ip, sizeof ip, "swap-images-idx3-ubyte");
  ASSERT_FAILS(ct_dataset_load(tmp, "swap", 5, &ds), CT_ERR_FORMAT, ip,
               "has 1 dimensions (magic 0x00000801), expected 3 (magic 0x00000803)");
  uint8_t *bad = malloc(ni);
  memcpy(bad, im, ni);
  bad[0] = 'P', bad[1] = 'K', bad[2] = 3, bad[3] = 4;
  write_split("magic", bad, ni, lb, nl);
  path_of(ip, sizeof ip, "magic-images-idx3-ubyte");
  ASSERT_FAILS(ct_dataset_load(tmp, "magic", 5, &ds), CT_ERR_FORMAT, ip,
               "wrong magic 0x504b0304, expected 0x00000803");
  // element type other than unsigned byte (0x0D = float)
  memcpy(bad, im, ni);
  bad[2] = 0x0D;
  write_split("type", bad, ni, lb, nl);
  path_of(ip, sizeof ip, "type-images-idx3-ubyte");
  ASSERT_FAILS(ct_dataset_load(tmp, "type", 5, &ds), CT_ERR_FORMAT, ip, "wrong magic 0x00000d03");

  // wrong number of dimensions (2) in an images file
  {
    uint32_t d2[2] = {SMALL_COUNT, SMALL_ROWS * SMALL_COLS};
    size_t n2;
    uint8_t *two = idx_bytes(0x802, d2, 2, im + 16, ni - 16, &n2);
    write_split("dims", two, n2, lb, nl);
    path_of(ip, sizeof ip, "dims-images-idx3-ubyte");
    ASSERT_FAILS(ct_dataset_load(tmp, "dims", 5, &ds), CT_ERR_FORMAT, ip, "has 2 dimensions");
    free(two);
  }
  // a zero dimension, and absurd ones
  memcpy(bad, im, ni);
  bad[8] = bad[9] = bad[10] = bad[11] = 0;
  write_split("zero", bad, ni, lb, nl);
  path_of(ip, sizeof ip, "zero-images-idx3-ubyte");
  ASSERT_FAILS(ct_dataset_load(tmp, "zero", 5, &ds), CT_ERR_FORMAT, ip, "dimension 1 is 0");
  memcpy(bad, im, ni);
  bad[4] = 0x7f, bad[8] = 0x7f, bad[12] = 0x7f;   // 2^31-ish in each dimension
  write_split("huge", bad, ni, lb, nl);
  path_of(ip, sizeof ip, "huge-images-idx3-ubyte");
  ASSERT_FAILS(ct_dataset_load(tmp, "huge", 5, &ds), CT_ERR_FORMAT, ip, "absurd");
  memcpy(bad, im, ni);
  bad[4] = 0xff;   // more than INT_MAX samples
  write_split("neg", bad, ni, lb, nl);
  path_of(ip, sizeof ip, "neg-images-idx3-ubyte");
  ASSERT_FAILS(ct_dataset_load(tmp, "neg", 5, &ds), CT_ERR_FORMAT, ip, "dimension 0 is");
  // an empty file, and a header cut short
  write_split("empty", im, 0, lb, nl);
  path_of(ip, sizeof ip, "empty-images-idx3-ubyte");
  ASSERT_FAILS(ct_dataset_load(tmp, "empty", 5, &ds), CT_ERR_FORMAT, ip, "too short");
  write_split("head", im, 10, lb, nl);
  path_of(ip, sizeof ip, "head-images-idx3-ubyte");
  ASSERT_FAILS(ct_dataset_load(tmp, "head", 5, &ds), CT_ERR_FORMAT, ip, "truncated header");
  free(bad);

  // count mismatch: 7 images, 6 labels; the message names both files
  {
    uint32_t d1[1] = {SMALL_COUNT - 1};
    size_t n6;
    uint8_t *six = idx_bytes(0x801, d1, 1, lb + 8, SMALL_COUNT - 1, &n6);
    write_split("count", im, ni, six, n6);
    path_of(ip, sizeof ip, "count-images-idx3-ubyte");
    path_of(lp, sizeof lp, "count-labels-idx1-ubyte");
    ASSERT_FAILS(ct_dataset_load(tmp, "count", 5, &ds), CT_ERR_FORMAT, ip, "holds 7 images");
    ck_assert_ptr_nonnull(strstr(ct_error_text(), lp));
    ck_assert_ptr_nonnull(strstr(ct_error_text(), "holds 6 labels"));
    free(six);
  }
  // label out of range: 12 at index 5 with 10 classes
  {
    uint8_t *l12 = malloc(nl);
    memcpy(l12, lb, nl);
    l12[8 + 5] = 12;
    write_split("label", im, ni, l12, nl);
    path_of(lp, sizeof lp, "label-labels-idx1-ubyte");
    ASSERT_FAILS(ct_dataset_load(tmp, "label", 10, &ds), CT_ERR_FORMAT, lp,
                 "label 12 at index 5 is out of range 0..9");
    // and with 5 classes the first bad label is the 12 as well (i % 5 < 5)
    ASSERT_FAILS(ct_dataset_load(tmp, "label", 5, &ds), CT_ERR_FORMAT, lp,
                 "label 12 at index 5 is out of range 0..4");
    free(l12);
  }

  // a .gz holding garbage, garbage behind the gzip magic, a corrupt CRC, a truncated stream,
  // trailing bytes after the stream
  write_raw("train-labels-idx1-ubyte.gz", lb, nl);
  write_raw("text.gz", (const uint8_t *)"hello, this is not gzip\n", 24);
  int dims[3];
  uint8_t *data = NULL;
  path_of(lp, sizeof lp, "text.gz");
  ASSERT_FAILS(ct_idx_read(lp, 1, dims, &data), CT_ERR_FORMAT, lp,
               "not a valid gzip stream: starts with 68 65");
  {
    const uint8_t junk[] = {0x1f, 0x8b, 0x08, 0x00, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
                            14, 15, 16, 17, 18, 19, 20};
    write_raw("junk.gz", junk, sizeof junk);
    path_of(lp, sizeof lp, "junk.gz");
    ASSERT_FAILS(ct_idx_read(lp, 1, dims, &data), CT_ERR_FORMAT, lp, "not a valid gzip stream: ");
    ck_assert_msg(strlen(strstr(ct_error_text(), "stream: ")) > 8, "no zlib message: %s",
                  ct_error_text());
  }
  write_gz("good.gz", im, ni, 1);
  size_t ng;
  uint8_t *gz = read_back("good.gz", &ng);
  gz[ng - 6] ^= 0x55;   // CRC-32 of the trailer
  write_raw("crc.gz", gz, ng);
  path_of(ip, sizeof ip, "crc.gz");
  ASSERT_FAILS(ct_idx_read(ip, 3, dims, &data), CT_ERR_FORMAT, ip,
               "not a valid gzip stream: incorrect data check");
  gz[ng - 6] ^= 0x55;
  for (size_t cut = 1; cut < ng; cut += (cut < 24 ? 1 : 7)) {   // every kind of truncation
    write_raw("cut.gz", gz, ng - cut);
    path_of(ip, sizeof ip, "cut.gz");
    ASSERT_FAILS(ct_idx_read(ip, 3, dims, &data), CT_ERR_FORMAT, ip, "not a valid gzip stream");
  }
  write_raw("cut.gz", gz, ng / 2);
  ASSERT_FAILS(ct_idx_read(ip, 3, dims, &data), CT_ERR_FORMAT, ip, "unexpected end of file");
  uint8_t *gz2 = malloc(ng + 4);
  memcpy(gz2, gz, ng);
  memcpy(gz2 + ng, "junk", 4);
  write_raw("tail.gz", gz2, ng + 4);
  path_of(ip, sizeof ip, "tail.gz");
  ASSERT_FAILS(ct_idx_read(ip, 3, dims, &data), CT_ERR_FORMAT, ip, "trailing garbage");
  free(gz2);
  // the uncorrupted file still reads, through the dataset loader too
  path_of(ip, sizeof ip, "good.gz");
  ck_assert_ct(ct_idx_read(ip, 3, dims, &data));
  ck_assert_int_eq(memcmp(data, im + 16, ni - 16), 0);
  free(data);
  data = NULL;
  free(gz);

  // a gzipped file whose content is damaged: the message names the .gz
  write_gz("gzt-images-idx3-ubyte.gz", im, ni - 1, 1);
  write_gz("gzt-labels-idx1-ubyte.gz", lb, nl, 1);
  path_of(ip, sizeof ip, "gzt-images-idx3-ubyte.gz");
  ASSERT_FAILS(ct_dataset_load(tmp, "gzt", 5, &ds), CT_ERR_FORMAT, ip, "truncated");

  // missing files: neither name nor name.gz; a missing labels file; ct_idx_read of no file
  path_of(ip, sizeof ip, "none-images-idx3-ubyte");
  ASSERT_FAILS(ct_dataset_load(tmp, "none", 5, &ds), CT_ERR_IO, ip, "or");
  ck_assert_ptr_nonnull(strstr(ct_error_text(), "none-images-idx3-ubyte.gz"));
  ck_assert_ptr_nonnull(strstr(ct_error_text(), "No such file"));
  write_raw("half-images-idx3-ubyte", im, ni);
  path_of(lp, sizeof lp, "half-labels-idx1-ubyte");
  ASSERT_FAILS(ct_dataset_load(tmp, "half", 5, &ds), CT_ERR_IO, lp, "cannot open");
  path_of(ip, sizeof ip, "no-such-file");
  ASSERT_FAILS(ct_idx_read(ip, 3, dims, &data), CT_ERR_IO, ip,
               "cannot open /tmp/cltrain-data-");
  ck_assert_ptr_nonnull(strstr(ct_error_text(), "No such file or directory"));
  ASSERT_FAILS(ct_dataset_load("/nonexistent/folder", "train", 10, &ds), CT_ERR_IO,
               "/nonexistent/folder/train-images-idx3-ubyte", "cannot open");
  // a folder where a file should be
  char dp[256];
  path_of(dp, sizeof dp, "dir-images-idx3-ubyte");
  ck_assert_int_eq(mkdir(dp, 0700), 0);
  ASSERT_FAILS(ct_idx_read(dp, 3, dims, &data), CT_ERR_IO, dp, "not a regular file");

  // compressed data in ct_idx_parse (it takes raw bytes only)
  const uint8_t gzhead[] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0, 0};
  const uint8_t *inside;
  ASSERT_FAILS(ct_idx_parse(gzhead, sizeof gzhead, "mem.idx", 1, dims, &inside), CT_ERR_FORMAT,
               "mem.idx", "gzip");
  free(im);
  free(lb);
  ct_error_clear();
  remove_tmp();
}
END_TEST

// Every prefix and many single-byte mutations of a valid file: ct_idx_parse answers OK only for
// the exact file, never reads outside the buffer (run under ASan in the sanitizer build).
START_TEST(idx_parse_never_trusts_the_header) {
  uint8_t *im, *lb;
  size_t ni, nl;
  small_set(&im, &ni, &lb, &nl);
  int dims[3];
  const uint8_t *data;
  for (size_t len = 0; len <= ni; len++) {
    uint8_t *copy = malloc(len ? len : 1);   // exact size, so ASan sees overreads
    memcpy(copy, im, len);
    ct_status st = ct_idx_parse(copy, len, "prefix", 3, dims, &data);
    ck_assert_int_eq(st, len == ni ? CT_OK : CT_ERR_FORMAT);
    free(copy);
  }
  uint64_t s = 1;
  for (int k = 0; k < 20000; k++) {
    uint8_t *copy = malloc(ni);
    memcpy(copy, im, ni);
    int pos = (int)(ct_test_rand_u64(&s) % 16);
    copy[pos] = (uint8_t)ct_test_rand_u64(&s);
    ct_status st = ct_idx_parse(copy, ni, "mutant", 3, dims, &data);
    ck_assert(st == CT_OK || st == CT_ERR_FORMAT);
    if (st == CT_OK) {
      ck_assert_int_eq(memcmp(copy, im, 16), 0);   // only the original header is consistent
      ck_assert_ptr_eq(data, copy + 16);
    }
    free(copy);
  }
  ct_error_clear();
  free(im);
  free(lb);
}
END_TEST


// ---- NumPy .npy -----------------------------------------------------------------------------

// A .npy file in memory (format major.0): magic, version, header length, the dict padded to a
// multiple of 64 bytes with spaces and a newline, then `bytes` of data. *n bytes in all.
static uint8_t *npy_bytes(int major, const char *dict, const void *data, size_t bytes, size_t *n) {
  size_t pre = major == 1 ? 10 : 12, len = strlen(dict);
  size_t hlen = len + 1;
  hlen += (64 - (pre + hlen) % 64) % 64;
  *n = pre + hlen + bytes;
  uint8_t *b = malloc(*n);
  memcpy(b, "\x93NUMPY", 6);
  b[6] = (uint8_t)major, b[7] = 0;
  for (size_t k = 0; k < pre - 8; k++) b[8 + k] = (uint8_t)(hlen >> (8 * k));
  memset(b + pre, ' ', hlen);
  memcpy(b + pre, dict, len);
  b[pre + hlen - 1] = '\n';
  if (bytes) memcpy(b + pre + hlen, data, bytes);
  return b;
}

START_TEST(npy_headers_parse) {
  uint8_t data[64] = {0};
  struct {
    int major;
    const char *dict;
    size_t bytes;
    char kind;
    int item, big, ndim;
    uint64_t count;
  } ok[] = {
      {1, "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3, 4), }", 24, 'u', 1, 0, 3, 24},
      {2, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 12, 'f', 4, 0, 1, 3},
      {3, "{'descr': '>i8', 'fortran_order': False, 'shape': (2, 1), }", 16, 'i', 8, 1, 2, 2},
      {1, "{\"shape\": (5,), \"descr\": \"<u2\", \"fortran_order\": False}", 10, 'u', 2, 0, 1, 5},
      {1, "{'descr': '<f8', 'fortran_order': False, 'shape': (), }", 8, 'f', 8, 0, 0, 1},
      {1, "{'descr': '|i1', 'fortran_order': False, 'shape': (0, 7), }", 0, 'i', 1, 0, 2, 0},
  };
  for (size_t t = 0; t < sizeof ok / sizeof ok[0]; t++) {
    size_t n;
    uint8_t *b = npy_bytes(ok[t].major, ok[t].dict, data, ok[t].bytes, &n);
    ct_npy_info info;
    ct_status st = ct_npy_parse(b, n, "mem.npy", &info);
    ck_assert_msg(st == CT_OK, "case %zu: %s", t, ct_error_text());
    ck_assert_int_eq(info.kind, ok[t].kind);
    ck_assert_int_eq(info.item, ok[t].item);
    ck_assert_int_eq(info.big_endian, ok[t].big);
    ck_assert_int_eq(info.ndim, ok[t].ndim);
    ck_assert_uint_eq(info.count, ok[t].count);
    ck_assert_uint_eq(info.offset + ok[t].count * (uint64_t)ok[t].item, n);
    ck_assert_uint_eq(info.offset % 64, 0);
    free(b);
  }
  struct {
    const char *dict;
    size_t bytes;
    const char *phrase;
  } bad[] = {
      {"{'descr': '|u1', 'fortran_order': True, 'shape': (4,), }", 4, "Fortran order"},
      {"{'descr': '|u1', 'fortran_order': False, 'shape': (4,), }", 5, "trailing garbage"},
      {"{'descr': '|u1', 'fortran_order': False, 'shape': (4,), }", 3, "truncated"},
      {"{'descr': '<u4', 'fortran_order': False, 'shape': (4,), }", 4, "truncated: holds 4 bytes"},
      {"{'descr': '|u1', 'fortran_order': False, 'shape': (4), }", 4, "'(N,)'"},
      {"{'descr': '|u1', 'fortran_order': False}", 1, "lacks 'shape'"},
      {"{'descr': '|u1', 'descr': '|u1', 'fortran_order': False, 'shape': (1,)}", 1, "repeats"},
      {"{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (1,)}", 4, "structured"},
      {"{'descr': '<U4', 'fortran_order': False, 'shape': (1,)}", 16, "not a plain number"},
      {"{'descr': '|f4', 'fortran_order': False, 'shape': (1,)}", 4, "byte order"},
      {"{'descr': '<f2', 'fortran_order': False, 'shape': (1,)}", 2, "no supported item size"},
      {"{'descr': '=i4', 'fortran_order': False, 'shape': (1,)}", 4, "native byte order"},
      {"{'descr': '|u1', 'fortran_order': False, 'shape': (-1,)}", 0, "non-negative integer"},
      {"{'descr': '|u1', 'fortran_order': False, 'shape': (1,)} x", 1, "only spaces"},
      {"{'descr': '|u1', 'fortran_order': 0, 'shape': (1,)}", 1, "True or False"},
      {"{'descr': '|u1', 'fortran_order': False, 'shape': (9999999999, 9999999999)}", 0,
       "more than"},
      {"{'descr': '|u1', 'fortran_order': False, 'shape': (65536, 65536, 65536)}", 0, "absurd"},
      {"{'descr': '|u1', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1)}", 1,
       "more than 8 dimensions"},
      {"['descr', '|u1']", 1, "a dict"},
  };
  for (size_t t = 0; t < sizeof bad / sizeof bad[0]; t++) {
    size_t n;
    uint8_t *b = npy_bytes(1, bad[t].dict, data, bad[t].bytes, &n);
    ct_npy_info info;
    ct_error_clear();
    ck_assert_int_eq(ct_npy_parse(b, n, "mem.npy", &info), CT_ERR_FORMAT);
    ck_assert_msg(strstr(ct_error_text(), "mem.npy") && strstr(ct_error_text(), bad[t].phrase),
                  "case %zu: '%s' lacks '%s'", t, ct_error_text(), bad[t].phrase);
    free(b);
  }
  // magic, version, header length, newline
  size_t n;
  uint8_t *b = npy_bytes(1, "{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }", data, 2, &n);
  ct_npy_info info;
  ck_assert_ct(ct_npy_parse(b, n, "mem.npy", &info));
  b[7] = 1;
  ASSERT_FAILS(ct_npy_parse(b, n, "mem.npy", &info), CT_ERR_FORMAT, "mem.npy", "version 1.1");
  size_t hlen = (size_t)b[8] | (size_t)b[9] << 8;
  b[7] = 0, b[9] = 0xff;
  ASSERT_FAILS(ct_npy_parse(b, n, "mem.npy", &info), CT_ERR_FORMAT, "mem.npy", "truncated header");
  b[9] = 0, b[10 + hlen - 1] = ' ';
  ASSERT_FAILS(ct_npy_parse(b, n, "mem.npy", &info), CT_ERR_FORMAT, "mem.npy", "newline");
  b[10 + hlen - 1] = '\n', b[0] = 'x';
  ASSERT_FAILS(ct_npy_parse(b, n, "mem.npy", &info), CT_ERR_FORMAT, "mem.npy", "not a .npy");
  ASSERT_FAILS(ct_npy_parse(b, 9, "mem.npy", &info), CT_ERR_FORMAT, "mem.npy", "too short");
  // every truncation and every single-byte change of the header: no crash, an answer either way
  b[0] = 0x93;
  for (size_t cut = 0; cut <= n; cut++) {
    uint8_t *c = malloc(cut ? cut : 1);
    memcpy(c, b, cut);
    ct_status st = ct_npy_parse(c, cut, "cut.npy", &info);
    ck_assert(cut == n ? st == CT_OK : st == CT_ERR_FORMAT);
    free(c);
  }
  for (size_t i = 0; i < n; i++)
    for (int v = 0; v < 256; v += 17) {
      uint8_t *c = malloc(n);
      memcpy(c, b, n);
      c[i] = (uint8_t)v;
      ct_status st = ct_npy_parse(c, n, "mut.npy", &info);
      ck_assert(st == CT_OK || st == CT_ERR_FORMAT);
      if (st == CT_OK) ck_assert_uint_eq(info.offset + info.count * (uint64_t)info.item, n);
      free(c);
    }
  free(b);
}
END_TEST

static void write_npy(const char *name, const char *dict, const void *data, size_t bytes) {
  size_t n;
  uint8_t *b = npy_bytes(1, dict, data, bytes, &n);
  write_raw(name, b, n);
  free(b);
}

START_TEST(npy_sets_load_channels_first) {
  make_tmp();
  // 2 images of 2 x 3 pixels x 3 channels, channels last: value = 100*i + 10*channel + pixel
  uint8_t im[2 * 6 * 3];
  for (int i = 0; i < 2; i++)
    for (int p = 0; p < 6; p++)
      for (int c = 0; c < 3; c++) im[(i * 6 + p) * 3 + c] = (uint8_t)(100 * i + 10 * c + p);
  uint16_t lb[2] = {(uint16_t)(1 << 8), 0};   // big-endian 1 and 0
  write_npy("train_images.npy", "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2, 3, 3), }",
            im, sizeof im);
  write_npy("train_labels.npy", "{'descr': '>u2', 'fortran_order': False, 'shape': (2,), }", lb,
            sizeof lb);
  // the test split: float32, one channel (N x H x W), labels int8
  float fim[2 * 4] = {0.5f, -1.25f, 3.0f, 0.0f, 1e-3f, 2.0f, -7.5f, 4.0f};
  int8_t fl[2] = {1, 0};
  write_npy("test_images.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 2), }",
            fim, sizeof fim);
  write_npy("test_labels.npy", "{'descr': '|i1', 'fortran_order': False, 'shape': (2,), }", fl,
            sizeof fl);
  ct_dataset ds;
  ck_assert_ct(ct_dataset_load(tmp, "train", 0, &ds));
  ck_assert_int_eq(ds.count, 2);
  ck_assert_int_eq(ds.channels, 3);
  ck_assert_int_eq(ds.rows, 2);
  ck_assert_int_eq(ds.cols, 3);
  ck_assert_int_eq(ds.classes, 2);   // derived: the largest label + 1
  ck_assert_str_eq(ds.format, "npy");
  ck_assert_ptr_null(ds.fpixels);
  for (int i = 0; i < 2; i++)
    for (int c = 0; c < 3; c++)
      for (int p = 0; p < 6; p++)
        ck_assert_int_eq(ds.pixels[(i * 3 + c) * 6 + p], 100 * i + 10 * c + p);
  ck_assert_int_eq(ds.labels[0], 1);
  ck_assert_int_eq(ds.labels[1], 0);
  int idx[1] = {1}, y[1];
  float x[18];
  ct_dataset_gather(&ds, idx, 1, 0.5f, 2.0f, x, y);
  ck_assert_int_eq(y[0], 0);
  ck_assert_float_eq(x[6], ((float)110 / 255.0f - 0.5f) / 2.0f);   // image 1, channel 1, pixel 0
  ct_dataset_free(&ds);
  ck_assert_ct(ct_dataset_load(tmp, "train", 5, &ds));   // --classes 5: more than the labels need
  ck_assert_int_eq(ds.classes, 5);
  ct_dataset_free(&ds);
  ASSERT_FAILS(ct_dataset_load(tmp, "train", 1, &ds), CT_ERR_FORMAT, "train_labels.npy",
               "label 1 at index 0 is out of range 0..0");
  ck_assert_ct(ct_dataset_load(tmp, "t10k", 0, &ds));   // "t10k" reads test_*.npy
  ck_assert_int_eq(ds.channels, 1);
  ck_assert_int_eq(ds.classes, 2);
  ck_assert_ptr_null(ds.pixels);
  ck_assert_ptr_nonnull(ds.fpixels);
  int both[2] = {0, 1}, y2[2];
  float x2[8];
  ct_dataset_gather(&ds, both, 2, 0, 0, x2, y2);   // std 0: the values as they are
  ck_assert_int_eq(memcmp(x2, fim, sizeof fim), 0);
  ck_assert_int_eq(y2[0], 1);
  ck_assert_int_eq(y2[1], 0);
  ct_dataset_gather(&ds, both, 2, 1.0f, 0.5f, x2, y2);
  ck_assert_float_eq(x2[2], (3.0f - 1.0f) / 0.5f);
  ct_dataset_free(&ds);
  // a NaN in a float set, a float label file, a missing test split of a NumPy folder
  fim[5] = 0.0f / 0.0f;
  write_npy("test_images.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2, 2), }",
            fim, sizeof fim);
  ASSERT_FAILS(ct_dataset_load(tmp, "t10k", 0, &ds), CT_ERR_FORMAT, "test_images.npy",
               "image 1 holds a value that is not a finite float32");
  char p[256];
  path_of(p, sizeof p, "test_images.npy");
  ck_assert_int_eq(unlink(p), 0);
  ASSERT_FAILS(ct_dataset_load(tmp, "t10k", 0, &ds), CT_ERR_IO, "test_images.npy", "cannot open");
  remove_tmp();
}
END_TEST

START_TEST(idx_classes_are_derived) {
  make_tmp();
  uint8_t *im, *lb;
  size_t ni, nl;
  small_set(&im, &ni, &lb, &nl);
  write_raw("train-images-idx3-ubyte", im, ni);
  write_raw("train-labels-idx1-ubyte", lb, nl);
  ct_dataset ds;
  ck_assert_ct(ct_dataset_load(tmp, "train", 0, &ds));
  int top = 0;
  for (int i = 0; i < ds.count; i++) top = ds.labels[i] > top ? ds.labels[i] : top;
  ck_assert_int_eq(ds.classes, top + 1);
  ck_assert_str_eq(ds.format, "idx");
  ct_dataset_free(&ds);
  // a label above labels that never occur: refused when derived, out of range when given
  lb[8 + 5] = 9;   // labels i % 5: index 5 held a 0, which index 0 holds too
  write_raw("train-labels-idx1-ubyte", lb, nl);
  char lp[256];
  path_of(lp, sizeof lp, "train-labels-idx1-ubyte");
  ASSERT_FAILS(ct_dataset_load(tmp, "train", 0, &ds), CT_ERR_FORMAT, lp,
               "label 9 at index 5 lies above labels that never occur (5, 6, 7, 8);");
  ASSERT_FAILS(ct_dataset_load(tmp, "train", 5, &ds), CT_ERR_FORMAT, lp,
               "label 9 at index 5 is out of range 0..4");
  ck_assert_ct(ct_dataset_load(tmp, "train", 10, &ds));   // --classes 10: accepted
  ck_assert_int_eq(ds.classes, 10);
  ct_dataset_free(&ds);
  free(im);
  free(lb);
  remove_tmp();
}
END_TEST

// ---- gather ---------------------------------------------------------------------------------

START_TEST(gather_scales_and_normalises) {
  uint8_t px[4 * 3], lb[4] = {3, 1, 4, 1};
  for (int i = 0; i < 12; i++) px[i] = (uint8_t)(i * 23);
  px[0] = 0, px[11] = 255;
  ct_dataset ds = {.count = 4, .channels = 1, .rows = 1, .cols = 3, .classes = 5, .pixels = px, .labels = lb};
  int idx[3] = {3, 0, 3};
  float x[9];
  int y[3];
  ct_dataset_gather(&ds, idx, 3, 0.0f, 0.0f, x, y);   // std 0: plain pixel/255
  ck_assert_int_eq(y[0], 1);
  ck_assert_int_eq(y[1], 3);
  ck_assert_int_eq(y[2], 1);
  for (int k = 0; k < 3; k++)
    for (int j = 0; j < 3; j++)
      ck_assert_float_eq(x[k * 3 + j], (float)px[idx[k] * 3 + j] / 255.0f);
  ck_assert_float_eq(x[3], 0.0f);   // px[0]
  ck_assert_float_eq(x[2], 1.0f);   // px[11]
  ct_dataset_gather(&ds, idx, 3, 0.2860f, 0.3530f, x, y);   // Fashion-MNIST's mean and std
  for (int k = 0; k < 3; k++)
    for (int j = 0; j < 3; j++) {
      float want = ((float)px[idx[k] * 3 + j] / 255.0f - 0.2860f) / 0.3530f;
      ck_assert_float_eq(x[k * 3 + j], want);
    }
  ck_assert_float_eq_tol(x[3], -0.2860f / 0.3530f, 1e-6f);
  ck_assert_float_eq_tol(x[2], (1.0f - 0.2860f) / 0.3530f, 1e-6f);
}
END_TEST

// ---- epoch order ----------------------------------------------------------------------------

static int is_permutation(const int *a, int n) {
  char *seen = calloc((size_t)n + 1, 1);
  int ok = 1;
  for (int i = 0; i < n && ok; i++) {
    if (a[i] < 0 || a[i] >= n || seen[a[i]]) ok = 0;
    else seen[a[i]] = 1;
  }
  free(seen);
  return ok;
}

START_TEST(epoch_order_is_a_seeded_permutation) {
  const int n = 10007;
  int *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
  ct_epoch_order(n, 42, 0, 0, a);
  for (int i = 0; i < n; i++) ck_assert_int_eq(a[i], i);   // no shuffle: identity
  ct_epoch_order(n, 42, 0, 1, a);
  ck_assert(is_permutation(a, n));
  int fixed = 0;
  for (int i = 0; i < n; i++) fixed += a[i] == i;
  ck_assert_int_lt(fixed, 20);   // ~1 expected for a random permutation
  ct_epoch_order(n, 42, 0, 1, b);
  ck_assert_int_eq(memcmp(a, b, n * sizeof *a), 0);   // deterministic per (seed, epoch)
  ct_epoch_order(n, 42, 1, 1, b);
  ck_assert(is_permutation(b, n));
  ck_assert_int_ne(memcmp(a, b, n * sizeof *a), 0);   // differs across epochs
  ct_epoch_order(n, 43, 0, 1, b);
  ck_assert_int_ne(memcmp(a, b, n * sizeof *a), 0);   // and across seeds
  ct_epoch_order(1, 5, 3, 1, a);
  ck_assert_int_eq(a[0], 0);
  ct_epoch_order(0, 5, 3, 1, a);   // nothing to do, nothing written
  // uniform: over 6000 epochs each of the 6 orders of 3 items shows up about 1000 times
  int hist[6] = {0};
  for (int e = 0; e < 6000; e++) {
    int p[3];
    ct_epoch_order(3, 7, e, 1, p);
    ck_assert(is_permutation(p, 3));
    hist[p[0] * 2 + (p[1] > p[2])]++;
  }
  for (int k = 0; k < 6; k++) ck_assert_msg(hist[k] > 850 && hist[k] < 1150, "order %d: %d", k, hist[k]);
  free(a);
  free(b);
}
END_TEST

// ---- shards ---------------------------------------------------------------------------------

START_TEST(shard_names_and_even_shares) {
  ct_shard s;
  ck_assert_ct(ct_shard_parse("sequential", &s));
  ck_assert_int_eq(s, CT_SHARD_SEQUENTIAL);
  ck_assert_ct(ct_shard_parse("random", &s));
  ck_assert_int_eq(s, CT_SHARD_RANDOM);
  ck_assert_ct(ct_shard_parse("Stratified", &s));
  ck_assert_int_eq(s, CT_SHARD_STRATIFIED);
  ck_assert_str_eq(ct_shard_name(CT_SHARD_STRATIFIED), "stratified");
  ct_error_clear();
  ck_assert_int_eq(ct_shard_parse("roundrobin", &s), CT_ERR_USAGE);
  ck_assert_ptr_nonnull(strstr(ct_error_text(), "--shard"));
  ck_assert_ptr_nonnull(strstr(ct_error_text(), "roundrobin"));
  ct_error_clear();
  int sh[5];
  ct_shares_even(10, 4, sh);
  ck_assert_int_eq(sh[0], 3);
  ck_assert_int_eq(sh[1], 3);
  ck_assert_int_eq(sh[2], 2);
  ck_assert_int_eq(sh[3], 2);
  ct_shares_even(3, 5, sh);
  ck_assert_int_eq(sh[0] + sh[1] + sh[2], 3);
  ck_assert_int_eq(sh[3] + sh[4], 0);
}
END_TEST

// Labels skewed towards class 0, so that the class mix is uneven.
static void skewed_labels(uint8_t *labels, int count, int classes) {
  uint64_t s = 77;
  for (int i = 0; i < count; i++) {
    uint64_t r = ct_test_rand_u64(&s) % 100;
    labels[i] = (uint8_t)(r < 40 ? 0 : r < 55 ? 1 : 2 + (int)(r % (uint64_t)(classes - 2)));
  }
}

START_TEST(shards_partition_the_batch) {
  enum { COUNT = 3000, CLASSES = 10 };
  uint8_t *labels = malloc(COUNT);
  skewed_labels(labels, COUNT, CLASSES);
  ct_dataset ds = {.count = COUNT, .channels = 1, .rows = 28, .cols = 28, .classes = CLASSES, .labels = labels};
  int *order = malloc(COUNT * sizeof *order);
  ct_epoch_order(COUNT, 9, 0, 1, order);
  const int sizes[] = {1, 2, 7, 64, 100, 257, 1000};
  int owner[COUNT], out[1000], again[1000];
  uint64_t s = 3;
  for (int shard = 0; shard < 3; shard++)
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++)
      for (int world = 1; world <= 5; world++)
        for (int uneven = 0; uneven < 2; uneven++) {
          int n = sizes[si];
          const int *batch = order + (int)(si * 37 % 500);   // distinct sample indices
          int shares[5];
          if (!uneven) {
            ct_shares_even(n, world, shares);
          } else {   // random shares, some possibly 0, summing to n
            int left = n;
            for (int r = 0; r < world - 1; r++) {
              shares[r] = (int)(ct_test_rand_u64(&s) % (uint64_t)(left + 1));
              left -= shares[r];
            }
            shares[world - 1] = left;
          }
          for (int i = 0; i < COUNT; i++) owner[i] = -1;
          for (int rank = 0; rank < world; rank++) {
            int m = ct_shard_take((ct_shard)shard, &ds, batch, n, 11, 5 + si, shares, world,
                                  rank, out);
            ck_assert_msg(m == shares[rank], "%s n=%d world=%d rank=%d: took %d, share %d",
                          ct_shard_name(shard), n, world, rank, m, shares[rank]);
            for (int k = 0; k < m; k++) {
              ck_assert_int_ge(out[k], 0);
              ck_assert_int_lt(out[k], COUNT);
              ck_assert_msg(owner[out[k]] == -1, "sample %d taken twice", out[k]);
              owner[out[k]] = rank;
            }
            // the same arguments give the same share
            int m2 = ct_shard_take((ct_shard)shard, &ds, batch, n, 11, 5 + si, shares, world,
                                   rank, again);
            ck_assert_int_eq(m2, m);
            ck_assert_int_eq(memcmp(out, again, (size_t)m * sizeof *out), 0);
            if (shard == CT_SHARD_SEQUENTIAL) {
              int off = 0;
              for (int r = 0; r < rank; r++) off += shares[r];
              ck_assert_int_eq(memcmp(out, batch + off, (size_t)m * sizeof *out), 0);
            }
            if (shard == CT_SHARD_STRATIFIED) {   // class mix: floor or ceil of the proportion
              int cb[CLASSES] = {0}, cr[CLASSES] = {0};
              for (int i = 0; i < n; i++) cb[labels[batch[i]]]++;
              for (int k = 0; k < m; k++) cr[labels[out[k]]]++;
              for (int c = 0; c < CLASSES; c++) {
                long long scaled = (long long)cr[c] * n - (long long)shares[rank] * cb[c];
                ck_assert_msg(scaled > -n && scaled < n,
                              "n=%d world=%d rank=%d class %d: %d of %d, share %d", n, world,
                              rank, c, cr[c], cb[c], shares[rank]);
              }
            }
          }
          for (int i = 0; i < n; i++)   // every batch sample went to exactly one rank
            ck_assert_msg(owner[batch[i]] >= 0, "%s n=%d world=%d: sample %d not taken",
                          ct_shard_name(shard), n, world, batch[i]);
        }
  free(order);
  free(labels);
}
END_TEST

START_TEST(random_shard_is_seeded_by_step) {
  int batch[200], a[100], b[100];
  for (int i = 0; i < 200; i++) batch[i] = 1000 + i;
  int shares[2] = {100, 100};
  ck_assert_int_eq(ct_shard_take(CT_SHARD_RANDOM, NULL, batch, 200, 1, 7, shares, 2, 0, a), 100);
  ck_assert_int_eq(ct_shard_take(CT_SHARD_RANDOM, NULL, batch, 200, 1, 7, shares, 2, 0, b), 100);
  ck_assert_int_eq(memcmp(a, b, sizeof a), 0);
  ck_assert_int_eq(ct_shard_take(CT_SHARD_RANDOM, NULL, batch, 200, 1, 8, shares, 2, 0, b), 100);
  ck_assert_int_ne(memcmp(a, b, sizeof a), 0);   // another step, another split
  ck_assert_int_eq(ct_shard_take(CT_SHARD_RANDOM, NULL, batch, 200, 2, 7, shares, 2, 0, b), 100);
  ck_assert_int_ne(memcmp(a, b, sizeof a), 0);   // another seed, another split
  int contiguous = 1;
  for (int k = 0; k < 100; k++) contiguous &= a[k] == batch[k];
  ck_assert(!contiguous);   // not the sequential split
  // bad arguments: -1
  int bad[2] = {100, 99};
  ck_assert_int_eq(ct_shard_take(CT_SHARD_RANDOM, NULL, batch, 200, 1, 7, bad, 2, 0, a), -1);
  ck_assert_int_eq(ct_shard_take(CT_SHARD_SEQUENTIAL, NULL, batch, 200, 1, 7, shares, 2, 2, a), -1);
  ck_assert_int_eq(ct_shard_take(CT_SHARD_STRATIFIED, NULL, batch, 200, 1, 7, shares, 2, 0, a), -1);
}
END_TEST

int main(void) {
  Suite *s = suite_create("data");
  TCase *tc = tcase_create("data");
  tcase_set_timeout(tc, 120);
  tcase_add_test(tc, real_fashion_mnist_loads);
  tcase_add_test(tc, small_files_raw_and_gzip);
  tcase_add_test(tc, damaged_files_are_reported);
  tcase_add_test(tc, idx_parse_never_trusts_the_header);
  tcase_add_test(tc, npy_headers_parse);
  tcase_add_test(tc, npy_sets_load_channels_first);
  tcase_add_test(tc, idx_classes_are_derived);
  tcase_add_test(tc, gather_scales_and_normalises);
  tcase_add_test(tc, epoch_order_is_a_seeded_permutation);
  tcase_add_test(tc, shard_names_and_even_shares);
  tcase_add_test(tc, shards_partition_the_batch);
  tcase_add_test(tc, random_shard_is_seeded_by_step);
  suite_add_tcase(s, tc);
  int rc = ct_test_run(s, 0);
  if (rc == 0 && !have_real_data()) {
    fprintf(stderr, "SKIP: the other data tests passed, but Fashion-MNIST is absent from %s\n",
                    real_dir());
    return CT_TEST_SKIP;
  }
  return rc;
}
