// wire.h: the formats a reduction's messages may carry (--wire): fp32, or fp16 / bf16 (half the
// bytes; sums stay fp32 on every rank, and only what is sent is rounded).
//
// Defines: ct_wire (+ ct_wire_name / _parse / _bytes / _round / _pack / _unpack / _prepare /
// _round_n).
//
// Round to nearest, ties to even, in integer arithmetic (no float operation a compiler could
// contract or reorder): the same bits on every rank, whatever the compiler or CPU. Overflow
// gives infinity (the trainer's non-finite guard then skips the step), NaN stays NaN. The
// vectorized paths (bf16 by vector extensions, fp16 by x86's F16C where the CPU has it) give
// the same bits (but for a NaN's payload).
#ifndef CLTRAIN_WIRE_H
#define CLTRAIN_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "cltrain/status.h"

typedef enum { CT_WIRE_FP32 = 0, CT_WIRE_FP16, CT_WIRE_BF16 } ct_wire;
const char *ct_wire_name(ct_wire w);
int ct_wire_parse(const char *s, ct_wire *w);   // "fp32", "fp16", "bf16"; 0 if none of them
size_t ct_wire_bytes(ct_wire w);                // bytes per element on the wire
float ct_wire_round(ct_wire w, float x);        // x as the wire carries it (integer code)
// fp32 -> wire (fp16 or bf16) as the ring sends it (F16C instructions where the CPU has them,
// unless CLTRAIN_NO_F16C=1): the same bits as ct_wire_round but for NaN payloads.
void ct_wire_pack(ct_wire w, uint16_t *dst, const float *src, size_t n);
// wire -> fp32 as the ring receives it: dst = the values of src, or dst += them (add).
// CT_ERR_NOMEM when fp16's table cannot be built.
ct_status ct_wire_unpack(ct_wire w, float *dst, const uint16_t *src, size_t n, int add);
// What receiving w needs, built once per process (fp16's table): CT_ERR_NOMEM when it cannot
// be. _unpack and _round_n call it themselves.
ct_status ct_wire_prepare(ct_wire w);
// x[i] = ct_wire_round(w, x[i]) for n floats, as the owner of a finished segment rounds it
// (vectorized where it can be: the same bits as ct_wire_round but for NaN payloads).
ct_status ct_wire_round_n(ct_wire w, float *x, size_t n);

#endif
