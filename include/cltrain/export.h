// export.h: trained weights in the safetensors format, for PyTorch and anything else that reads
// it (https://github.com/huggingface/safetensors).
//
// Defines: ct_safetensors_build, ct_st_meta (+ ct_st_classifier_meta); reading: ct_st_tensor, ct_st_file, ct_safetensors_parse /
// _free / _find / _meta / _to_params.
//
// The tensors are the model's tensor table (model.h), with their names and shapes: for a
// classifier those of a torch.nn.Sequential built from the same layer list: layer i of the
// architecture (0-based; flatten, relu, maxpool and dropout count) gives "i.weight" and
// "i.bias"; a dense weight is [out, in], a convolution's [out, in, kh, kw] (cltrain's own
// layouts, which are PyTorch's), biases [out]; all F32. A tensor the table marks as not
// exported is left out. __metadata__ holds the architecture
// string ("arch"), the input normalisation ("normalize": "MEAN,STD" or "none": x = (pixel/255 -
// MEAN) / STD) and the input shape ("input": "C,H,W"), so that a reader can rebuild the model
// and its preprocessing. The file: a little-endian u64 header length, the JSON header (padded
// with spaces to a multiple of 8 bytes), then the exported tensors' data in table order
// (exactly the tensors in header order).
#ifndef CLTRAIN_EXPORT_H
#define CLTRAIN_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "cltrain/model.h"
#include "cltrain/status.h"

// The whole file in memory (*out, *bytes; the caller frees *out). meta: n_meta pairs of key and
// value strings for __metadata__ after "format", "arch" and "producer" (a classifier's
// "normalize" and "input"; the language model's sizes and vocabulary).
ct_status ct_safetensors_build(const ct_arch *arch, const float *params, const char *const *meta,
                               int n_meta, void **out, size_t *bytes);

// Metadata pairs for ct_safetensors_build: kv[0..2n) point into buf.
typedef struct {
  char buf[8][1200];
  const char *kv[16];
  int n;
} ct_st_meta;
// A classifier's: "normalize" ("MEAN,STD", or "none": x = (pixel/255 - MEAN) / STD) and
// "input" ("C,H,W").
void ct_st_classifier_meta(ct_st_meta *m, const ct_arch *arch, float norm_mean, float norm_std);

// ---- reading -----------------------------------------------------------------------------------
#define CT_ST_NAME 160
#define CT_ST_MAX_META 32
typedef struct {
  char name[CT_ST_NAME];
  char dtype[8];            // "F32", "I32", ...
  int nd;
  long long shape[8];
  size_t count;             // elements
  size_t begin, end;        // bytes of the data section
} ct_st_tensor;
typedef struct {
  int n;
  ct_st_tensor *t;          // (n), in the header's order
  int n_meta;
  char meta_key[CT_ST_MAX_META][64], meta_val[CT_ST_MAX_META][4096];
  const uint8_t *data;      // the data section (inside the parsed buffer)
  size_t data_size;
} ct_st_file;
// Parses a safetensors file held in memory (the header strictly: one object of tensor entries
// {dtype, shape, data_offsets} and an optional __metadata__ of strings; every tensor's bytes
// inside the data and matching its shape). `name` is used in messages. CT_ERR_FORMAT, one line,
// otherwise. f points into buf; free with ct_safetensors_free.
ct_status ct_safetensors_parse(const uint8_t *buf, size_t size, const char *name, ct_st_file *f);
void ct_safetensors_free(ct_st_file *f);
const ct_st_tensor *ct_safetensors_find(const ct_st_file *f, const char *name);
const char *ct_safetensors_meta(const ct_st_file *f, const char *key);   // NULL: none
// The model's tensors from the file, by name: every tensor of the table must be there, F32, of
// its shape, and (others_ok = 0) every tensor of the file must be the model's (a stored tied
// "lm_head.weight" is allowed and ignored). CT_ERR_FORMAT naming the tensor otherwise.
ct_status ct_safetensors_to_params(const ct_st_file *f, const ct_arch *arch, const char *name,
                                   int others_ok, float *params);

#endif
