// args.h: strict parsing of command-line values, shared by the tools.
//
// Defines: ct_arg_long, ct_arg_u64, ct_arg_float, ct_arg_choice.
//
// Each accepts the whole text or fails with CT_ERR_USAGE and one line naming the flag and what
// was expected: "--epochs: expected an integer in 1..1000000, got '-3'". No silent wrap-around,
// no trailing junk, no empty values.
#ifndef CLTRAIN_ARGS_H
#define CLTRAIN_ARGS_H

#include <stdint.h>

#include "cltrain/status.h"

ct_status ct_arg_long(const char *flag, const char *text, long min, long max, long *out);
ct_status ct_arg_u64(const char *flag, const char *text, uint64_t *out);
// A finite float in [min, max]; min_open/max_open exclude the bound itself.
ct_status ct_arg_float(const char *flag, const char *text, double min, int min_open, double max,
                       int max_open, float *out);
// The index of text in the NULL-terminated list choices.
ct_status ct_arg_choice(const char *flag, const char *text, const char *const *choices, int *out);

#endif
