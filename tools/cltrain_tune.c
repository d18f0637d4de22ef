// cltrain-tune: tunes the matrix products of a model for one OpenCL device and writes the
// device's tuning cache, which cltrain and cltrain-devices --bench then load by themselves.
//
//   cltrain-tune --device pocl --model mlp                 tune, print GFLOP/s before and after
//   cltrain-tune --device pocl --model cnn --ranks 2       at the per-rank batch of 2 ranks
//   cltrain-tune --device intel --model mlp --list         only list the GEMMs the model issues
//   cltrain-tune --device pocl --model mlp --bench         measure them as cltrain runs them now
//
// The cache lives in $XDG_CACHE_HOME/cltrain/ (default ~/.cache/cltrain/), one file per device;
// tuning another model adds its shapes to the same file. See include/cltrain/tune.h.
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/args.h"
#include "cltrain/gpt.h"
#include "cltrain/model.h"
#include "cltrain/tune.h"
#include "cltrain/version.h"

enum { O_DEVICE = 256, O_MODEL, O_BATCH, O_RANKS, O_LIST, O_BENCH, O_BUDGET, O_NO_CLBLAST,
       O_NO_OWN, O_VERBOSE, O_INPUT, O_CLASSES, O_HELP, O_VERSION };

static const struct option options[] = {
    {"device", required_argument, 0, O_DEVICE},   {"model", required_argument, 0, O_MODEL},
    {"arch", required_argument, 0, O_MODEL},      {"batch", required_argument, 0, O_BATCH},
    {"ranks", required_argument, 0, O_RANKS},     {"list", no_argument, 0, O_LIST},
    {"bench", no_argument, 0, O_BENCH},
    {"budget", required_argument, 0, O_BUDGET},   {"no-clblast", no_argument, 0, O_NO_CLBLAST},
    {"no-own", no_argument, 0, O_NO_OWN},         {"verbose", no_argument, 0, O_VERBOSE},
    {"input", required_argument, 0, O_INPUT},     {"classes", required_argument, 0, O_CLASSES},
    {"help", no_argument, 0, O_HELP},             {"version", no_argument, 0, O_VERSION},
    {0, 0, 0, 0}};

static void usage(FILE *f) {
  fprintf(f,
"usage: cltrain-tune --device SPEC --model mlp|cnn|ARCH [options]\n"
"Finds the matrix products (GEMMs) the model issues at the per-rank batch, searches CLBlast's\n"
"parameters and cltrain's own GEMM kernel for each, prints GFLOP/s before and after, and writes\n"
"the device's tuning cache ($XDG_CACHE_HOME/cltrain/, default ~/.cache/cltrain/).\n"
"  --device SPEC      the device to tune (as cltrain --device; see cltrain-devices)  [auto]\n"
"  --model, --arch S  mlp | cnn | a layer list | gpt[:...], as cltrain takes it  [mlp]\n"
"  --batch N          GLOBAL batch, as cltrain --batch                           [128]\n"
"  --ranks R          ranks the batch is split over: tunes the per-rank shares   [1]\n"
"  --input C,H,W      shape of one sample                                        [1,28,28]\n"
"  --classes N        classes (gpt: the vocabulary's size; the corpus has 84)    [10]\n"
"  --list             only list the GEMMs (role, transposes, M, N, K); tune nothing\n"
"  --bench            only measure the GEMMs as cltrain runs them now (the device's cache,\n"
"                     or the defaults); tune nothing\n"
"  --budget S         stop trying new candidates after about S seconds           [240]\n"
"  --no-clblast       do not search CLBlast's parameters (keep its defaults)\n"
"  --no-own           do not try cltrain's own GEMM kernel\n"
"  --verbose          one line per candidate measured\n"
"  --version          cltrain's version and those of the OpenCL platforms, CLBlast and MPI\n"
"                     found at run time\n"
"  -h, --help         this text\n"
"exit codes: 0 done, 1 run-time failure, 2 bad command line\n");
}

typedef struct {
  const char *device, *arch;
  int batch, ranks, list, bench, version, c, h, w, classes;
  ct_tune_options opt;
} tune_args;

static ct_status parse(int argc, char **argv, tune_args *a) {
  const char *env = getenv("CLTRAIN_DEVICE");
  a->device = env && *env ? env : "auto";
  a->arch = "mlp";
  a->batch = 128, a->ranks = 1, a->c = 1, a->h = 28, a->w = 28, a->classes = 10;
  ct_tune_options_defaults(&a->opt);
  long v;
  opterr = 0;
  int ch;
  while ((ch = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
    const char *flag = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
    switch (ch) {
      case O_DEVICE: a->device = optarg; break;
      case O_MODEL: a->arch = optarg; break;
      case O_BATCH: CT_TRY(ct_arg_long("--batch", optarg, 1, 1 << 20, &v)); a->batch = (int)v; break;
      case O_RANKS: CT_TRY(ct_arg_long("--ranks", optarg, 1, 1 << 16, &v)); a->ranks = (int)v; break;
      case O_LIST: a->list = 1; break;
      case O_BENCH: a->bench = 1; break;
      case O_BUDGET: {
        float b;
        CT_TRY(ct_arg_float("--budget", optarg, 0, 1, 86400, 0, &b));
        a->opt.budget_s = b;
        break;
      }
      case O_NO_CLBLAST: a->opt.clblast_search = 0; break;
      case O_NO_OWN: a->opt.own = 0; break;
      case O_VERBOSE: a->opt.verbose = 1; break;
      case O_INPUT:
        if (sscanf(optarg, "%d,%d,%d", &a->c, &a->h, &a->w) != 3 || a->c < 1 || a->h < 1 ||
            a->w < 1 || a->c > 65536 || a->h > 65536 || a->w > 65536)
          return CT_FAIL(CT_ERR_USAGE, "--input: expected C,H,W (positive integers), got '%s'", optarg);
        break;
      case O_CLASSES: CT_TRY(ct_arg_long("--classes", optarg, 2, 256, &v)); a->classes = (int)v; break;
      case O_HELP:
      case 'h': usage(stdout); exit(0);
      case O_VERSION: a->version = 1; break;
      case ':': return CT_FAIL(CT_ERR_USAGE, "%s: needs a value (see --help)", flag);
      default: return CT_FAIL(CT_ERR_USAGE, "unknown option '%s' (see --help)", flag);
    }
  }
  if (optind < argc)
    return CT_FAIL(CT_ERR_USAGE, "unexpected argument '%s' (see --help)", argv[optind]);
  if (a->batch < a->ranks)
    return CT_FAIL(CT_ERR_USAGE, "--batch: %d is smaller than --ranks %d", a->batch, a->ranks);
  return CT_OK;
}

// The model: a classifier on --input/--classes, or the language model (--classes its
// vocabulary: 84 for the installed corpus).
static ct_status build_arch(const tune_args *a, ct_arch *arch) {
  if (!ct_gpt_is_spec(a->arch)) return ct_arch_parse(a->arch, a->c, a->h, a->w, a->classes, arch);
  ct_gpt_config g;
  CT_TRY(ct_gpt_parse(a->arch, &g));
  g.vocab = a->classes;
  return ct_gpt_build(&g, arch);
}

static ct_status run(tune_args *a) {
  static ct_arch arch;   // (large: not on the stack)
  CT_TRY(build_arch(a, &arch));
  ct_device dev;
  CT_TRY(ct_device_open_spec(a->device, 0, 0, &dev));
  // the shares of the global batch: ceil and floor of batch / ranks
  int batches[2] = {(a->batch + a->ranks - 1) / a->ranks, a->batch / a->ranks};
  int nb = batches[1] != batches[0] ? 2 : 1;
  ct_tune_shape *shapes = NULL;
  int n = 0;
  ct_tune_cache cache;
  memset(&cache, 0, sizeof cache);
  char path[1024];
  ct_status st = ct_tune_cache_path(&dev.info, path, sizeof path);
  if (st == CT_OK) st = ct_tune_model_shapes(&dev, &arch, batches, nb, &shapes, &n);
  if (st != CT_OK) goto out;
  printf("device: %d:%d %s [%s], driver %s\n", dev.info.platform, dev.info.index, dev.info.name,
         dev.info.platform_name, dev.info.driver);
  printf("model: %s, per-rank batch %d%s (global %d over %d rank%s)\n", arch.text, batches[0],
         nb > 1 ? " and smaller" : "", a->batch, a->ranks, a->ranks > 1 ? "s" : "");
  if (a->list) {
    printf("%-14s %2s %8s %8s %8s %10s\n", "role", "op", "M", "N", "K", "MFLOP");
    for (int i = 0; i < n; i++)
      printf("%-14s %c%c %8zu %8zu %8zu %10.1f\n", shapes[i].role, shapes[i].ta ? 'T' : 'N',
             shapes[i].tb ? 'T' : 'N', shapes[i].m, shapes[i].n, shapes[i].k,
             2e-6 * (double)shapes[i].m * (double)shapes[i].n * (double)shapes[i].k);
    goto out;
  }
  if (a->bench) {
    int status;
    char warning[1024];
    CT_GOTO(ct_tune_load(&dev, &status, warning, sizeof warning), st, out);
    if (status < 0) fprintf(stderr, "cltrain-tune: warning: %s\n", warning);
    printf("GEMMs: %s\n", status > 0 ? path : "defaults (no tuning cache)");
    CT_GOTO(ct_tune_bench(&dev, shapes, n, 3), st, out);
    printf("%-14s %2s %8s %8s %8s %10s  %s\n", "role", "op", "M", "N", "K", "GFLOP/s", "implementation");
    for (int i = 0; i < n; i++) {
      const ct_tune_shape *s = &shapes[i];
      const ct_gemm_plan *p = ct_blas_find_plan(&dev, s->ta, s->tb, s->m, s->n, s->k);
      printf("%-14s %c%c %8zu %8zu %8zu %10.1f  %s\n", s->role, s->ta ? 'T' : 'N', s->tb ? 'T' : 'N',
             s->m, s->n, s->k, s->gflops_after, p && p->impl == CT_GEMM_OWN ? "own" : "clblast");
    }
    goto out;
  }
  CT_GOTO(ct_tune_add_bench_shapes(&shapes, &n), st, out);
  a->opt.log = stderr;
  CT_GOTO(ct_tune_and_save(&dev, shapes, n, &a->opt, path, &cache), st, out);
  printf("%-14s %2s %8s %8s %8s %10s %10s %8s  %s\n", "role", "op", "M", "N", "K", "before",
         "after", "speedup", "chosen (GFLOP/s)");
  for (int i = 0; i < n; i++) {
    const ct_tune_shape *s = &shapes[i];
    const ct_gemm_plan *p = ct_blas_find_plan(&dev, s->ta, s->tb, s->m, s->n, s->k);
    char chosen[96] = "clblast";
    if (p && p->impl == CT_GEMM_OWN)
      snprintf(chosen, sizeof chosen, "own MR=%d NV=%d VW=%d LM=%d KB=%d%s", p->tile.mr,
               p->tile.nv, p->tile.vw, p->tile.lm, p->tile.kb, p->tile.at ? " AT=1" : "");
    printf("%-14s %c%c %8zu %8zu %8zu %10.1f %10.1f %7.2fx  %s\n", s->role, s->ta ? 'T' : 'N',
           s->tb ? 'T' : 'N', s->m, s->n, s->k, s->gflops_before, s->gflops_after,
           s->gflops_before > 0 ? s->gflops_after / s->gflops_before : 0.0, chosen);
  }
  if (cache.has_routine)
    printf("clblast: Xgemm %s, XgemmDirect %s, direct kernel below %zu^3 (m*n*k)\n",
           cache.has_xgemm ? "tuned" : "defaults", cache.has_xgemm_direct ? "tuned" : "defaults",
           cache.min_indirect);
  printf("best SGEMM rate: %.1f GFLOP/s\n", cache.best_gflops);
  printf("wrote %s\n", path);
out:
  free(shapes);
  ct_tune_cache_free(&cache);
  ct_device_close(&dev);
  return st;
}

int main(int argc, char **argv) {
  tune_args a;
  memset(&a, 0, sizeof a);
  ct_status st = parse(argc, argv, &a);
  if (st == CT_OK && a.version) st = ct_version_print(stdout, "cltrain-tune");
  else if (st == CT_OK) st = run(&a);
  if (st != CT_OK) fprintf(stderr, "cltrain-tune: %s\n", ct_error_text());
  return ct_exit_code(st);
}
