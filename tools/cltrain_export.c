// cltrain-export: a checkpoint's weights as safetensors (export.h), for PyTorch and others.
//
//   cltrain-export CHECKPOINT OUT.safetensors [--input C,H,W] [--classes N] [--normalize M,S]
//
// The checkpoint holds the architecture text; its shapes follow from the input shape and the
// class count (Fashion-MNIST's 1,28,28 and 10 unless given), checked against the parameter
// count the checkpoint holds. --normalize records the run's input normalisation in the metadata
// (a checkpoint does not hold it). The output is written atomically. Exit codes: 0 done, 1 a
// file could not be read, parsed or written, 2 bad command line.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cltrain/checkpoint.h"
#include "cltrain/export.h"
#include "cltrain/gpt.h"
#include "cltrain/model.h"
#include "cltrain/version.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: cltrain-export CHECKPOINT OUT.safetensors [options]\n"
          "Writes the weights of a cltrain checkpoint as safetensors, with the names and layouts\n"
          "of a torch.nn.Sequential over the same layers (layer i: \"i.weight\", \"i.bias\").\n"
          "  --input C,H,W      input shape of the model (default 1,28,28)\n"
          "  --classes N        number of classes (default 10)\n"
          "  --normalize M,S    the run's --normalize, recorded in the metadata (default none)\n"
          "  --version          cltrain's version and those of the OpenCL platforms, CLBlast\n"
          "                     and MPI found at run time\n"
          "  -h, --help         this text\n"
          "exit codes: 0 done, 1 a file could not be read, parsed or written, 2 bad command line\n");
}

static int parse_ints(const char *s, int *v, int n) {
  char *end;
  for (int i = 0; i < n; i++) {
    long x = strtol(s, &end, 10);
    if (end == s || x < 1 || x > 1 << 20) return 0;
    v[i] = (int)x;
    if (i + 1 < n) {
      if (*end != ',') return 0;
      s = end + 1;
    }
  }
  return *end == 0;
}

int main(int argc, char **argv) {
  const char *in = NULL, *out = NULL;
  int shape[3] = {1, 28, 28}, classes = 10;
  float mean = 0, std = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    }
    if (!strcmp(a, "--version")) {
      ct_status st = ct_version_print(stdout, "cltrain-export");
      if (st != CT_OK) fprintf(stderr, "cltrain-export: %s\n", ct_error_text());
      return ct_exit_code(st);
    }
    if (!strcmp(a, "--input") || !strcmp(a, "--classes") || !strcmp(a, "--normalize")) {
      if (i + 1 >= argc) {
        fprintf(stderr, "cltrain-export: %s: needs a value (see --help)\n", a);
        return 2;
      }
      const char *v = argv[++i];
      int ok;
      if (!strcmp(a, "--input")) {
        ok = parse_ints(v, shape, 3);
      } else if (!strcmp(a, "--classes")) {
        ok = parse_ints(v, &classes, 1) && classes >= 2;
      } else {
        char *end;
        mean = strtof(v, &end);
        ok = end != v && *end == ',';
        if (ok) {
          const char *t = end + 1;
          std = strtof(t, &end);
          ok = end != t && *end == 0 && std > 0;
        }
      }
      if (!ok) {
        fprintf(stderr, "cltrain-export: %s: expected %s, got '%s'\n", a,
                !strcmp(a, "--input") ? "C,H,W (positive integers)"
                : !strcmp(a, "--classes") ? "an integer >= 2"
                                          : "MEAN,STD with STD > 0",
                v);
        return 2;
      }
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "cltrain-export: unknown option '%s' (see --help)\n", a);
      return 2;
    } else if (!in) {
      in = a;
    } else if (!out) {
      out = a;
    } else {
      fprintf(stderr, "cltrain-export: unexpected argument '%s' (see --help)\n", a);
      return 2;
    }
  }
  if (!in || !out) {
    fprintf(stderr, "cltrain-export: expected CHECKPOINT and OUT.safetensors (see --help)\n");
    return 2;
  }
  FILE *f = fopen(in, "rb");
  struct stat sb;
  if (!f || fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
    fprintf(stderr, "cltrain-export: cannot read checkpoint %s\n", in);
    if (f) fclose(f);
    return 1;
  }
  size_t size = (size_t)sb.st_size;
  uint8_t *buf = malloc(size ? size : 1);
  int code = 1;
  void *st_buf = NULL;
  if (!buf || fread(buf, 1, size, f) != size) {
    fprintf(stderr, "cltrain-export: cannot read checkpoint %s\n", in);
    goto out;
  }
  ct_checkpoint_view v;
  ct_arch arch;
  size_t bytes;
  if (ct_checkpoint_parse(buf, size, in, &v) == CT_OK && ct_gpt_is_spec(v.arch)) {
    fprintf(stderr, "cltrain-export: %s: a language model's checkpoint (%s) holds no vocabulary "
            "(it comes from the training text): write its weights with cltrain "
            "--save-safetensors\n", in, v.arch);
    goto out;
  }
  if (ct_checkpoint_parse(buf, size, in, &v) != CT_OK ||
      ct_arch_parse(v.arch, shape[0], shape[1], shape[2], classes, &arch) != CT_OK) {
    fprintf(stderr, "cltrain-export: %s\n", ct_error_text());
    goto out;
  }
  if (arch.param_count != v.param_count) {
    fprintf(stderr, "cltrain-export: %s: '%s' on input %d,%d,%d with %d classes has %zu "
            "parameters, the checkpoint %llu (give --input / --classes)\n", in, v.arch, shape[0],
            shape[1], shape[2], classes, arch.param_count, (unsigned long long)v.param_count);
    goto out;
  }
  ct_st_meta meta;
  ct_st_classifier_meta(&meta, &arch, mean, std);
  if (ct_safetensors_build(&arch, v.params, meta.kv, meta.n, &st_buf, &bytes) != CT_OK ||
      ct_write_file_atomic(out, st_buf, bytes) != CT_OK) {
    fprintf(stderr, "cltrain-export: %s\n", ct_error_text());
    goto out;
  }
  printf("cltrain-export: %s (%s, %llu parameters, step %ld) -> %s (%zu bytes)\n", in, v.arch,
         (unsigned long long)v.param_count, v.pos.step, out, bytes);
  code = 0;
out:
  fclose(f);
  free(buf);
  free(st_buf);
  return code;
}
