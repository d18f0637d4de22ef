// export.h: trained weights in the safetensors format, for PyTorch and anything else that reads
// it (https://github.com/huggingface/safetensors).
//
// Defines: ct_safetensors_build.
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

#include "cltrain/model.h"
#include "cltrain/status.h"

// The whole file in memory (*out, *bytes; the caller frees *out). norm_std <= 0: no
// normalisation.
ct_status ct_safetensors_build(const ct_arch *arch, const float *params, float norm_mean,
                               float norm_std, void **out, size_t *bytes);

#endif
