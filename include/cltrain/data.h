// data.h: the data subsystem: IDX reader (raw or gzip through zlib) with validation, datasets,
// the epoch order (sampler) and the shard strategies that split a global batch over ranks.
//
// Defines: ct_dataset (+ ct_dataset_load / _free / _limit / _gather / _labels_per_sample),
// ct_text_load, ct_text_gather, ct_idx_parse, ct_idx_read,
// CT_IDX_MAX_BYTES, ct_npy_info (+ ct_npy_parse / _int / _float), CT_NPY_MAX_BYTES,
// CT_NPY_MAX_DIMS, ct_read_file, ct_epoch_order, ct_shard (+ ct_shard_parse, ct_shard_name), ct_shares_even,
// ct_shares_weighted,
// ct_shard_take.
//
// IDX (the MNIST format): a big-endian header, magic 0x000008NN (unsigned bytes, NN dimensions)
// then NN big-endian uint32 sizes, then the bytes row-major. Every problem with a file is one
// line naming the file: CT_ERR_IO when it cannot be opened or read, CT_ERR_FORMAT when its
// content is wrong (magic, dimensions, truncated, trailing bytes, bad gzip, counts that disagree,
// labels out of range).
//
// NumPy (.npy, versions 1.0-3.0, as numpy.save writes them): a folder holding
// train_images.npy, train_labels.npy, test_images.npy and test_labels.npy. Images uint8 (pixel
// values 0..255, scaled by 1/255 like IDX) or float32/float64 (taken as they are), shape
// N x H x W (one channel) or N x H x W x C (channels last, as image libraries write them; stored
// channels first, as the model reads them); labels of any integer type, shape (N,), values
// 0..255. The header parser is strict (see npy.c) and every problem is one line naming the file.
//
// The sampler decides the GLOBAL order independently of the number of ranks; ct_shard_take then
// splits each global batch into the ranks' shares, so the math of a step is the same for any
// world size and any shares.
#ifndef CLTRAIN_DATA_H
#define CLTRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "cltrain/status.h"

// The largest IDX payload accepted (bytes of data after the header): 2^31.
#define CT_IDX_MAX_BYTES ((uint64_t)1 << 31)

typedef struct {
  int count;                  // samples
  int channels, rows, cols;   // 1, 28, 28 for Fashion-MNIST; text: seq, 1, 1
  int classes;                // labels are in [0, classes); text: the vocabulary's size
  uint8_t *pixels;            // (count, channels, rows, cols) bytes, or NULL when fpixels is set
  uint8_t *labels;            // (count); NULL for text
  float *fpixels;             // (count, channels, rows, cols) values of a float .npy, or NULL
  char format[8];             // "idx", "npy" or "text"
  // text (ct_text_load): the split's token ids; sample i is tokens[i*seq .. i*seq+seq]
  int seq;                    // tokens per sample (T); 0 for images
  uint8_t *tokens;            // (count*seq + 1) token ids, or NULL
  uint8_t vocab[256];         // token id -> byte (classes of them)
} ct_dataset;

// Labels per sample: 1 for images, seq for text (one target per position).
int ct_dataset_labels_per_sample(const ct_dataset *ds);

// The largest .npy payload accepted: 2^33 bytes (8 GiB), and at most 8 dimensions.
#define CT_NPY_MAX_BYTES ((uint64_t)1 << 33)
#define CT_NPY_MAX_DIMS 8

typedef struct {
  char kind;                  // 'u' unsigned, 'i' signed integer, 'f' floating point
  int item;                   // bytes per item: 1, 2, 4, 8 (floats: 4, 8)
  int big_endian;             // '>' byte order (items of more than one byte)
  int ndim;                   // 0 (a scalar) .. CT_NPY_MAX_DIMS
  uint64_t shape[CT_NPY_MAX_DIMS];
  uint64_t count;             // product of the shape (1 for a scalar)
  size_t offset;              // where the data starts in the file
} ct_npy_info;

// Parses a .npy file held in memory. On success the data is buf + info->offset, exactly
// count * item bytes to the end of buf. Allocates nothing (for fuzzing). CT_ERR_FORMAT naming
// `name` for anything else: bad magic or version, a header that is not exactly a dict of
// 'descr' (a plain u/i/f dtype), 'fortran_order' (False) and 'shape' (a tuple of integers), a
// size that disagrees with the shape.
ct_status ct_npy_parse(const uint8_t *buf, size_t size, const char *name, ct_npy_info *info);
// Item i of the data (integer kinds; unsigned values beyond int64 give -1), or as a double
// (float kinds).
int64_t ct_npy_int(const ct_npy_info *info, const uint8_t *data, uint64_t i);
double ct_npy_float(const ct_npy_info *info, const uint8_t *data, uint64_t i);
// Reads a whole regular file of at most `limit` bytes into *buf (malloc'ed, *size bytes);
// CT_ERR_IO when it cannot be read, CT_ERR_FORMAT when it is larger than the limit.
ct_status ct_read_file(const char *path, uint64_t limit, uint8_t **buf, size_t *size);

// Parses an IDX file held in memory (already un-gzipped). want_dims: 3 for images (magic
// 0x00000803), 1 for labels (0x00000801). name is the file name used in error messages. On
// success dims[0..want_dims) hold the sizes (the rest are set to 1) and *data points INTO buf
// (after the header). Allocates nothing (for fuzzing).
ct_status ct_idx_parse(const uint8_t *buf, size_t size, const char *name, int want_dims,
                       int dims[3], const uint8_t **data);
// Reads an IDX file, gzip-compressed (detected by its magic bytes 1f 8b, decompressed through
// zlib; concatenated members allowed) or raw. A name ending in ".gz" must hold gzip data.
// *data is malloc'ed (dims[0]*dims[1]*dims[2] bytes).
ct_status ct_idx_read(const char *path, int want_dims, int dims[3], uint8_t **data);
// Loads one split, split "train" or "t10k": <dir>/<s>_images.npy and <dir>/<s>_labels.npy (s
// "train" or "test") when the images file exists, else <dir>/<split>-images-idx3-ubyte[.gz] and
// <dir>/<split>-labels-idx1-ubyte[.gz] (the raw name is preferred when both exist). Checks that
// the counts agree and every label < classes (1..256), or, with classes = 0, sets ds->classes
// to the largest label + 1. On failure *ds is left zeroed.
ct_status ct_dataset_load(const char *dir, const char *split, int classes, ct_dataset *ds);
void ct_dataset_free(ct_dataset *ds);
// Keeps the first `count` samples (for --limit); count <= 0 or >= ds->count changes nothing.
void ct_dataset_limit(ct_dataset *ds, int count);
// Gathers samples idx[0..n) into x (n, channels*rows*cols) floats = pixel/255 (or the float
// value of a float .npy), then
// (x-mean)/std when std > 0 (float arithmetic, the same bits on every host), and y (n). A text
// (ct_text_load): ct_text_gather, the token ids as int32 in x's memory, y (n, seq).
void ct_dataset_gather(const ct_dataset *ds, const int *idx, int n, float mean, float std,
                       float *x, int *y);

// Loads a text for a language model (--text FILE), as cltrain's data contract says:
//   vocabulary  the sorted distinct bytes of the file; a token is a byte's rank in it
//   split       the first floor(0.9 n) bytes train, the rest validate
//   sample i    the window split[i*T .. i*T+T] of T+1 tokens: the input is the first T, the
//               labels (targets) the last T; a split has (len - 1) / T whole windows
// CT_ERR_IO when the file cannot be read, CT_ERR_FORMAT (one line naming the file) when it is
// empty or either split is shorter than one window (T+1 bytes), CT_ERR_USAGE for seq < 1.
ct_status ct_text_load(const char *path, int seq, ct_dataset *train, ct_dataset *valid);
// Gathers text samples idx[0..n): x (n, seq) token ids as int32, y (n, seq) the next tokens.
void ct_text_gather(const ct_dataset *ds, const int *idx, int n, int32_t *x, int *y);

// The epoch's global sample order (count): a seeded permutation of [0, count) (Fisher-Yates over
// a splitmix64 stream seeded from (seed, epoch), unbiased bounded draws); identity when
// shuffle = 0.
void ct_epoch_order(int count, uint64_t seed, int epoch, int shuffle, int *order);

typedef enum { CT_SHARD_SEQUENTIAL, CT_SHARD_RANDOM, CT_SHARD_STRATIFIED } ct_shard;
// "sequential" | "random" | "stratified" (case-insensitive); CT_ERR_USAGE naming --shard.
ct_status ct_shard_parse(const char *name, ct_shard *shard);
const char *ct_shard_name(ct_shard shard);
// Shares of a global batch of n samples over `world` ranks: n/world each, the first n%world
// ranks one more.
void ct_shares_even(int n, int world, int *shares);
// Shares proportional to integer weights w[r] (all 0: even): floor(n*w[r]/sum), then the rest
// one at a time to the largest remainders (lower rank first on ties). Integer arithmetic only,
// so every rank computes the same shares from the same weights. A rank of weight 0 gets 0.
void ct_shares_weighted(int n, int world, const uint32_t *w, int *shares);
// Splits one GLOBAL batch batch[0..n) (sample indices) among ranks; shares[r] samples go to rank
// r (sum = n). Writes this rank's sample indices to out and returns how many (= shares[rank]).
// The union over ranks is exactly the batch (a partition), and every rank computes the same
// split from the same arguments.
//  sequential: rank r takes the contiguous slice after ranks 0..r-1.
//  random: a seeded permutation (seed, step) of the batch positions, then contiguous slices.
//  stratified: each rank's share keeps the class mix of the batch: rank r gets floor or ceil of
//    shares[r]*count_c/n samples of each class c (a controlled rounding of the proportional
//    table, found by augmenting paths, which always exists), dealt within a class in batch
//    order to ranks 0, 1, ...; ds->labels must be < ds->classes (<= 256).
// ds is only read for stratified (may be NULL otherwise). Returns -1 (and writes nothing) when
// the arguments are inconsistent (rank outside [0, world), negative shares, shares not summing
// to n) or host memory runs out.
int ct_shard_take(ct_shard shard, const ct_dataset *ds, const int *batch, int n, uint64_t seed,
                  long step, const int *shares, int world, int rank, int *out);

#endif
