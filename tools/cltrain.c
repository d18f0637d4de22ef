// cltrain: trains a model on one OpenCL device, or data-parallel across ranks under mpirun.
//
//   cltrain --model cnn --epochs 10                       one device (auto: GPU, else CPU)
//   mpirun -np 4 cltrain --model cnn --batch 256          4 ranks, each on its own device
//   mpirun -np 2 cltrain --device 0=pocl,1=oclgrind ...   one job across two OpenCL platforms
//
// Run `cltrain --help` for every flag and its default. Exit codes: 0 done, 1 run-time failure,
// 2 bad command line.
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cltrain/allreduce.h"
#include "cltrain/args.h"
#include "cltrain/balance.h"
#include "cltrain/hooks.h"
#include "cltrain/layers.h"
#include "cltrain/sync.h"
#include "cltrain/trainer.h"
#include "cltrain/version.h"

enum {
  O_MODEL = 256, O_EPOCHS, O_BATCH, O_OPTIM, O_LR, O_MOMENTUM, O_NESTEROV, O_WD, O_BETA1,
  O_BETA2, O_EPS, O_SCHED, O_WARMUP, O_STEP_SIZE, O_GAMMA, O_MIN_LR, O_SEED, O_DEVICE, O_DATA,
  O_LIMIT, O_TEST_LIMIT, O_NORMALIZE, O_SHARD, O_NO_SHUFFLE, O_LOG_EVERY, O_MAX_STEPS,
  O_SAVE_PARAMS, O_QUIET, O_CHECKPOINT, O_CHECKPOINT_EVERY, O_RESUME, O_MAX_BAD, O_CHECK_EVERY,
  O_ON_DIVERGENCE, O_PROFILE, O_TIMING, O_TUNE, O_TUNE_BUDGET, O_BALANCE, O_SYNC, O_WIRE, O_BUCKET_MB, O_SHARD_UPDATE, O_ACCUMULATE, O_METRICS, O_SAVE_ST, O_TRACE, O_TRACE_STEPS, O_CLASSES, O_HELP,
  O_TEXT, O_INIT_FROM, O_CLIP_NORM, O_SAMPLE,
};

static const struct option options[] = {
    {"model", required_argument, 0, O_MODEL},
    {"arch", required_argument, 0, O_MODEL},
    {"epochs", required_argument, 0, O_EPOCHS},
    {"batch", required_argument, 0, O_BATCH},
    {"optimizer", required_argument, 0, O_OPTIM},
    {"lr", required_argument, 0, O_LR},
    {"momentum", required_argument, 0, O_MOMENTUM},
    {"nesterov", no_argument, 0, O_NESTEROV},
    {"weight-decay", required_argument, 0, O_WD},
    {"beta1", required_argument, 0, O_BETA1},
    {"beta2", required_argument, 0, O_BETA2},
    {"eps", required_argument, 0, O_EPS},
    {"schedule", required_argument, 0, O_SCHED},
    {"warmup", required_argument, 0, O_WARMUP},
    {"step-size", required_argument, 0, O_STEP_SIZE},
    {"gamma", required_argument, 0, O_GAMMA},
    {"min-lr", required_argument, 0, O_MIN_LR},
    {"seed", required_argument, 0, O_SEED},
    {"device", required_argument, 0, O_DEVICE},
    {"data", required_argument, 0, O_DATA},
    {"text", required_argument, 0, O_TEXT},
    {"init-from", required_argument, 0, O_INIT_FROM},
    {"clip-norm", required_argument, 0, O_CLIP_NORM},
    {"sample", required_argument, 0, O_SAMPLE},
    {"limit", required_argument, 0, O_LIMIT},
    {"test-limit", required_argument, 0, O_TEST_LIMIT},
    {"classes", required_argument, 0, O_CLASSES},
    {"normalize", required_argument, 0, O_NORMALIZE},
    {"shard", required_argument, 0, O_SHARD},
    {"no-shuffle", no_argument, 0, O_NO_SHUFFLE},
    {"log-every", required_argument, 0, O_LOG_EVERY},
    {"max-steps", required_argument, 0, O_MAX_STEPS},
    {"save-params", required_argument, 0, O_SAVE_PARAMS},
    {"quiet", no_argument, 0, O_QUIET},
    {"checkpoint", required_argument, 0, O_CHECKPOINT},
    {"checkpoint-every", required_argument, 0, O_CHECKPOINT_EVERY},
    {"resume", required_argument, 0, O_RESUME},
    {"max-bad-steps", required_argument, 0, O_MAX_BAD},
    {"check-every", required_argument, 0, O_CHECK_EVERY},
    {"on-divergence", required_argument, 0, O_ON_DIVERGENCE},
    {"profile", no_argument, 0, O_PROFILE},
    {"timing", no_argument, 0, O_TIMING},
    {"tune", no_argument, 0, O_TUNE},
    {"tune-budget", required_argument, 0, O_TUNE_BUDGET},
    {"balance", required_argument, 0, O_BALANCE},
    {"sync", required_argument, 0, O_SYNC},
    {"wire", required_argument, 0, O_WIRE},
    {"bucket-mb", required_argument, 0, O_BUCKET_MB},
    {"shard-update", required_argument, 0, O_SHARD_UPDATE},
    {"accumulate", required_argument, 0, O_ACCUMULATE},
    {"metrics", required_argument, 0, O_METRICS},
    {"save-safetensors", required_argument, 0, O_SAVE_ST},
    {"trace", required_argument, 0, O_TRACE},
    {"trace-steps", required_argument, 0, O_TRACE_STEPS},
    {"help", no_argument, 0, O_HELP},
    {0, 0, 0, 0}};

// "  --flag ARG  text [default]", the text wrapped to the help's columns (27 to 92), into out
// (size bytes; cut short if it does not fit).
static void option_help(char *out, size_t size, const char *flag, const char *text,
                        const char *dflt) {
  size_t len = 0, col = 27;
#define PUT(...)                                                              \
  do {                                                                        \
    int w_ = len < size ? snprintf(out + len, size - len, __VA_ARGS__) : 0;   \
    if (w_ > 0) len = len + (size_t)w_ < size ? len + (size_t)w_ : size;      \
  } while (0)
  PUT("  %-25s", flag);
  for (const char *p = text; *p;) {
    size_t word = strcspn(p, " ");
    if (col + word + 1 > 92 && col > 27) {
      PUT("\n%27s", "");
      col = 27;
    }
    PUT("%s%.*s", col > 27 ? " " : "", (int)word, p);
    col += word + (col > 27);
    p += word;
    while (*p == ' ') p++;
  }
  PUT(" [%s]\n", dflt);
#undef PUT
}

static void usage(FILE *f) {
  char modes[512], policies[512], text[600], bal[1024], sync[1024];
  ct_balance_usage(policies, sizeof policies);
  snprintf(text, sizeof text, "how the global batch is shared out: %s", policies);
  option_help(bal, sizeof bal, "--balance KIND", text, ct_balance_policies[0].name);
  ct_sync_usage(modes, sizeof modes);
  option_help(sync, sizeof sync, "--sync MODE", modes, ct_sync_modes[0].name);
  strncat(bal, sync, sizeof bal - strlen(bal) - 1);
  fprintf(f,
"usage: [mpirun -np N] cltrain [options]\n"
"Trains a model on Fashion-MNIST (or any MNIST-format or NumPy set), or a GPT-style language\n"
"model on a text, data-parallel across MPI ranks.\n"
"\nmodel and data\n"
"  --model, --arch SPEC     mlp | cnn | a layer list such as\n"
"                           \"conv3x3:32,relu,maxpool2,flatten,dense:10\"; tokens: dense:N,\n"
"                           convKxK:N[/sS][/pP], relu, maxpoolK, flatten, dropout:P | the\n"
"                           language model gpt[:layers=L,channels=C,heads=H,seq=T] (keys in\n"
"                           any order; defaults layers=4,channels=128,heads=4,seq=64)  [mlp]\n"
"  --text FILE              gpt: the text (vocabulary: its distinct bytes; the first 90 %%\n"
"                           trains, the rest validates; a sample is a window of seq+1 bytes)\n"
"                           [/usr/local/share/cltrain/shakespeare.txt]\n"
"  --init-from FILE         initial weights from a safetensors file, by tensor name (gpt:\n"
"                           nanoGPT's names; classifiers: torch.nn.Sequential's)  [seeded init]\n"
"  --data DIR               folder with {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]\n"
"                           (MNIST format), or with {train,test}_{images,labels}.npy\n"
"                           (images uint8 or float32, N x H x W or N x H x W x C; labels\n"
"                           any integer type, N) [$CLTRAIN_DATA or /usr/share/datasets/fashion-mnist]\n"
"  --classes N              classes (labels 0..N-1)     [the largest label in the data + 1]\n"
"  --limit N                train on the first N samples only                  [all]\n"
"  --test-limit N           evaluate on the first N test samples (gpt: validation windows)\n"
"                           only                                               [all]\n"
"  --normalize MEAN,STD     x = (pixel/255 - MEAN) / STD                      [off]\n"
"\ntraining\n"
"  --epochs N               epochs                                             [10]\n"
"  --batch N                GLOBAL batch, split over the ranks                 [128]\n"
"  --seed N                 initialisation, shuffle and dropout seed           [1]\n"
"  --no-shuffle             keep the data set's order every epoch              [shuffle]\n"
"  --max-steps N            stop after N steps in all (0: run all epochs)      [0]\n"
"\noptimizer and schedule\n"
"  --optimizer sgd|adamw    optimizer                                          [sgd]\n"
"  --lr F                   base learning rate                      [sgd 0.05, adamw 0.001]\n"
"  --momentum F             SGD momentum                                       [0.9]\n"
"  --nesterov               SGD with Nesterov momentum                         [off]\n"
"  --weight-decay F         SGD: L2; AdamW: decoupled weight decay    [sgd 0, adamw 0.01]\n"
"  --beta1 F, --beta2 F     AdamW moments                                      [0.9, 0.999]\n"
"  --eps F                  AdamW epsilon                                      [1e-8]\n"
"  --schedule KIND          constant | step | cosine                           [constant]\n"
"  --warmup N               linear warm-up steps                               [0]\n"
"  --step-size N, --gamma F step schedule: lr *= gamma every N steps          [1000, 0.1]\n"
"  --min-lr F               cosine schedule: final learning rate               [0]\n"
"                           (cosine decays over --max-steps when given, else over the epochs)\n"
"  --clip-norm X            scale the reduced gradient down to a global L2 norm of at most X\n"
"                           (the same scale on every rank)                     [off]\n"
"\nparallelism and devices\n"
"  --device SPEC            auto | gpu | cpu | accelerator | P:D | NAME | NAME:TYPE; per\n"
"                           rank: \"0=pocl,1=intel,gpu\"  [$CLTRAIN_DEVICE or auto]\n"
"                           NAME matches the platform name first, then the platform vendor,\n"
"                           then device names (intel, amd, nvidia, pocl, oclgrind, rusticl\n"
"                           name platforms); matches on several platforms are an error that\n"
"                           lists them; NAME:TYPE keeps devices of TYPE gpu | cpu |\n"
"                           accelerator. cltrain-devices --spec SPEC shows each local rank's\n"
"                           device\n"
"  --shard KIND             how a global batch is split over ranks:\n"
"                           sequential | random | stratified                  [sequential]\n"
"%s"
"  --wire fp32|fp16|bf16    gradients' format on the wire (sums stay fp32 on every rank;\n"
"                           fp16 and bf16 move half the bytes)                  [fp32]\n"
"  --bucket-mb X            reduce the gradients in buckets of about X MiB, each as soon\n"
"                           as backward has written it, while backward goes on (the same\n"
"                           bits as one reduction; 0: one reduction after backward) [0]\n"
"  --shard-update auto|off  sync: each rank applies the optimizer to its segment of the\n"
"                           gradients only (reduce-scatter, update, all-gather of the\n"
"                           parameters; the same bits). auto: where every rank's device\n"
"                           shares host memory (CPUs), with --wire fp32 and no buckets [auto]\n"
"  --accumulate K           K micro-batches of --batch per optimizer step, one reduction\n"
"                           per step (the step of a K x batch batch, in K x less memory) [1]\n"
"  --tune                   when the device's GEMM tuning cache is missing or lacks this\n"
"                           model's matrix products, tune them first (a few minutes; see\n"
"                           cltrain-tune) and add them to the cache               [off]\n"
"  --tune-budget S          --tune stops trying candidates after about S seconds   [240]\n"
"  --timing                 a barrier before each all-reduce, to measure each rank's waiting\n"
"                           exactly (without it: the slowest rank's compute time minus its own)\n"
"\nreliability\n"
"  --checkpoint PATH        write a checkpoint at the end of every epoch (atomically)  [none]\n"
"  --checkpoint-every N     ... and every N steps                              [0: epochs only]\n"
"                           (--sync stale applies its pending step and local:K averages at\n"
"                           each checkpoint: there, the schedule is part of the math)\n"
"  --resume PATH|auto       continue from a checkpoint (any rank count); auto: from\n"
"                           --checkpoint PATH when one is there, else from the seed (a\n"
"                           requeued or relaunched job; a damaged one is refused)  [none]\n"
"  --max-bad-steps K        stop after K consecutive non-finite steps          [5]\n"
"  --check-every N          compare parameter checksums across ranks every N steps [0: never]\n"
"  --on-divergence WHAT     warn | resync | abort, when replicas differ        [abort]\n"
"\noutput\n"
"  --log-every N            a line every N steps (0: none)                     [100]\n"
"  --save-params PATH       write the final parameters as raw float32          [none]\n"
"  --save-safetensors PATH  write the final weights as safetensors, with the names and\n"
"                           layouts of torch.nn.Sequential over the same layers (gpt:\n"
"                           nanoGPT's, the tied lm_head not stored)              [none]\n"
"  --sample N               gpt: after each epoch (and the last step of a --max-steps run),\n"
"                           N bytes the model writes after a piece of the validation text\n"
"                           (temperature 0.8, top-k 40)                        [0: none]\n"
"  --trace FILE.json        a timeline of every rank's phases and all-reduce windows in\n"
"                           Chrome's trace format (Perfetto, chrome://tracing)    [none]\n"
"  --trace-steps A:B        trace only steps A .. B-1                          [all]\n"
"  --metrics FILE.jsonl     JSON Lines: the run's configuration and devices, a record per\n"
"                           log line and per epoch, a final one (docs/metrics.md)  [none]\n"
"  --quiet                  no per-step lines\n"
"  --profile                at the end, a table per rank: time per kernel (OpenCL event\n"
"                           profiling), GEMM GFLOP/s, and the host's waits\n"
"  --version                cltrain's version and those of the OpenCL platforms, CLBlast\n"
"                           and MPI found at run time (needs no device and no mpirun)\n"
"  -h, --help               this text\n"
"\nexit codes: 0 done, 1 run-time failure, 2 bad command line\n", bal);
}

static ct_status parse(int argc, char **argv, ct_train_config *c) {
  const char *env;
  if ((env = getenv("CLTRAIN_DEVICE")) && *env) c->device = env;
  if ((env = getenv("CLTRAIN_DATA")) && *env) c->data_dir = env;
  // the optimizer's defaults apply first; flags given explicitly override them
  float lr = -1, wd = -1, momentum = -1, beta1 = -1, beta2 = -1, eps = -1;
  int nesterov = 0;
  long v;
  float bucket = 0;
  static ct_balance_choice balance;   // (checked here, parsed again by the run)
  const ct_sync_mode *mode = NULL;
  int k = 1;
  opterr = 0;
  optind = 1;
  int ch;
  while ((ch = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
    const char *flag = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
    switch (ch) {
      case O_MODEL: c->arch = optarg; break;
      case O_EPOCHS: CT_TRY(ct_arg_long("--epochs", optarg, 1, 100000, &v)); c->epochs = (int)v; break;
      case O_BATCH: CT_TRY(ct_arg_long("--batch", optarg, 1, 1 << 20, &v)); c->batch = (int)v; break;
      case O_OPTIM: CT_TRY(ct_optim_parse(optarg, &c->optim.kind)); break;
      case O_LR: CT_TRY(ct_arg_float("--lr", optarg, 0, 1, 10, 0, &lr)); break;
      case O_MOMENTUM: CT_TRY(ct_arg_float("--momentum", optarg, 0, 0, 1, 1, &momentum)); break;
      case O_NESTEROV: nesterov = 1; break;
      case O_WD: CT_TRY(ct_arg_float("--weight-decay", optarg, 0, 0, 1, 0, &wd)); break;
      case O_BETA1: CT_TRY(ct_arg_float("--beta1", optarg, 0, 0, 1, 1, &beta1)); break;
      case O_BETA2: CT_TRY(ct_arg_float("--beta2", optarg, 0, 0, 1, 1, &beta2)); break;
      case O_EPS: CT_TRY(ct_arg_float("--eps", optarg, 0, 1, 1, 0, &eps)); break;
      case O_SCHED: CT_TRY(ct_schedule_parse(optarg, &c->sched.kind)); break;
      case O_WARMUP: CT_TRY(ct_arg_long("--warmup", optarg, 0, 1L << 40, &c->sched.warmup)); break;
      case O_STEP_SIZE: CT_TRY(ct_arg_long("--step-size", optarg, 1, 1L << 40, &c->sched.step_size)); break;
      case O_GAMMA: CT_TRY(ct_arg_float("--gamma", optarg, 0, 1, 1, 0, &c->sched.gamma)); break;
      case O_MIN_LR: CT_TRY(ct_arg_float("--min-lr", optarg, 0, 0, 10, 0, &c->sched.min_lr)); break;
      case O_SEED: CT_TRY(ct_arg_u64("--seed", optarg, &c->seed)); break;
      case O_DEVICE: c->device = optarg; break;
      case O_DATA: c->data_dir = optarg; break;
      case O_TEXT:
        if (!*optarg) return CT_FAIL(CT_ERR_USAGE, "--text: empty path");
        c->text = optarg;
        break;
      case O_INIT_FROM:
        if (!*optarg) return CT_FAIL(CT_ERR_USAGE, "--init-from: empty path");
        c->init_from = optarg;
        break;
      case O_CLIP_NORM: CT_TRY(ct_arg_float("--clip-norm", optarg, 0, 1, 1e9, 0, &c->clip_norm)); break;
      case O_SAMPLE: CT_TRY(ct_arg_long("--sample", optarg, 0, 1 << 20, &v)); c->sample = (int)v; break;
      case O_LIMIT: CT_TRY(ct_arg_long("--limit", optarg, 1, INT_MAX, &v)); c->limit = (int)v; break;
      case O_CLASSES: CT_TRY(ct_arg_long("--classes", optarg, 2, 256, &v)); c->classes = (int)v; break;
      case O_TEST_LIMIT: CT_TRY(ct_arg_long("--test-limit", optarg, 1, INT_MAX, &v)); c->test_limit = (int)v; break;
      case O_NORMALIZE: {
        const char *comma = strchr(optarg, ',');
        char mean[64];
        if (!comma || (size_t)(comma - optarg) >= sizeof mean)
          return CT_FAIL(CT_ERR_USAGE, "--normalize: expected MEAN,STD (e.g. 0.286,0.353), got '%s'", optarg);
        memcpy(mean, optarg, (size_t)(comma - optarg));
        mean[comma - optarg] = 0;
        CT_TRY(ct_arg_float("--normalize (mean)", mean, -1e6, 0, 1e6, 0, &c->norm_mean));
        CT_TRY(ct_arg_float("--normalize (std)", comma + 1, 0, 1, 1e6, 0, &c->norm_std));
        break;
      }
      case O_SHARD: CT_TRY(ct_shard_parse(optarg, &c->shard)); break;
      case O_NO_SHUFFLE: c->shuffle = 0; break;
      case O_LOG_EVERY: CT_TRY(ct_arg_long("--log-every", optarg, 0, 1L << 40, &c->log_every)); break;
      case O_MAX_STEPS: CT_TRY(ct_arg_long("--max-steps", optarg, 0, 1L << 40, &c->max_steps)); break;
      case O_SAVE_PARAMS: c->save_params = optarg; break;
      case O_QUIET: c->quiet = 1; break;
      case O_CHECKPOINT: c->checkpoint = optarg; break;
      case O_CHECKPOINT_EVERY: CT_TRY(ct_arg_long("--checkpoint-every", optarg, 0, 1L << 40, &c->checkpoint_every)); break;
      case O_RESUME:   // (a file named "auto": --resume ./auto)
        c->resume_auto = !strcmp(optarg, "auto");
        c->resume = c->resume_auto ? NULL : optarg;
        break;
      case O_MAX_BAD: CT_TRY(ct_arg_long("--max-bad-steps", optarg, 1, 1000000, &v)); c->max_bad_steps = (int)v; break;
      case O_CHECK_EVERY: CT_TRY(ct_arg_long("--check-every", optarg, 0, 1L << 40, &c->check_every)); break;
      case O_ON_DIVERGENCE: {
        static const char *const kinds[] = {"warn", "resync", "abort", NULL};
        int d;
        CT_TRY(ct_arg_choice("--on-divergence", optarg, kinds, &d));
        c->on_divergence = (ct_divergence)d;
        break;
      }
      case O_PROFILE: c->profile = 1; break;
      case O_TIMING: c->timing = 1; break;
      case O_TUNE: c->tune = 1; break;
      case O_BALANCE: CT_TRY(ct_balance_parse(optarg, &balance)); c->balance = optarg; break;
      case O_SYNC: CT_TRY(ct_sync_parse(optarg, &mode, &k)); c->sync = optarg; break;
      case O_WIRE: {
        ct_wire w;
        if (!ct_wire_parse(optarg, &w))
          return CT_FAIL(CT_ERR_USAGE, "--wire: expected fp32, fp16 or bf16, got '%s'", optarg);
        c->wire = (int)w;
        break;
      }
      case O_BUCKET_MB: CT_TRY(ct_arg_float("--bucket-mb", optarg, 0, 0, 1 << 20, 0, &bucket)); c->bucket_mb = bucket; break;
      case O_SHARD_UPDATE: {
        static const char *const kinds[] = {"auto", "off", NULL};
        int d;
        CT_TRY(ct_arg_choice("--shard-update", optarg, kinds, &d));
        c->shard_update = d == 0;
        break;
      }
      case O_TRACE:
        if (!*optarg) return CT_FAIL(CT_ERR_USAGE, "--trace: empty path");
        c->trace = optarg;
        break;
      case O_TRACE_STEPS: {
        const char *colon = strchr(optarg, ':');
        char a[32];
        long first, last;
        if (!colon || (size_t)(colon - optarg) >= sizeof a)
          return CT_FAIL(CT_ERR_USAGE, "--trace-steps: expected A:B (steps A .. B-1), got '%s'", optarg);
        memcpy(a, optarg, (size_t)(colon - optarg));
        a[colon - optarg] = 0;
        CT_TRY(ct_arg_long("--trace-steps (A)", a, 0, 1L << 40, &first));
        CT_TRY(ct_arg_long("--trace-steps (B)", colon + 1, first + 1, 1L << 40, &last));
        c->trace_first = first, c->trace_last = last;
        break;
      }
      case O_SAVE_ST:
        if (!*optarg) return CT_FAIL(CT_ERR_USAGE, "--save-safetensors: empty path");
        c->save_safetensors = optarg;
        break;
      case O_METRICS:
        if (!*optarg) return CT_FAIL(CT_ERR_USAGE, "--metrics: empty path");
        c->metrics = optarg;
        break;
      case O_ACCUMULATE: CT_TRY(ct_arg_long("--accumulate", optarg, 1, 1 << 16, &v)); c->accumulate = (int)v; break;
      case O_TUNE_BUDGET: CT_TRY(ct_arg_float("--tune-budget", optarg, 0, 1, 86400, 0, &c->tune_budget)); break;
      case O_HELP:
      case 'h': usage(stdout); exit(0);
      case ':': return CT_FAIL(CT_ERR_USAGE, "%s: needs a value (see --help)", flag);
      default:
        return CT_FAIL(CT_ERR_USAGE, "unknown option '%s' (see --help)", flag);
    }
  }
  if (optind < argc)
    return CT_FAIL(CT_ERR_USAGE, "unexpected argument '%s' (see --help)", argv[optind]);
  if (!*c->arch) return CT_FAIL(CT_ERR_USAGE, "--model: empty architecture");
  if (!*c->data_dir) return CT_FAIL(CT_ERR_USAGE, "--data: empty folder name");
  if (c->checkpoint && !*c->checkpoint) return CT_FAIL(CT_ERR_USAGE, "--checkpoint: empty path");
  if (c->checkpoint_every > 0 && !c->checkpoint)
    return CT_FAIL(CT_ERR_USAGE, "--checkpoint-every: needs --checkpoint PATH");
  if (c->resume_auto && !c->checkpoint)
    return CT_FAIL(CT_ERR_USAGE, "--resume auto: needs --checkpoint PATH (where to look, and "
                   "where to write)");
  // optimizer: its defaults, then what was given
  ct_optim_kind kind = c->optim.kind;
  ct_optim_config_defaults(kind, &c->optim);
  if (lr >= 0) c->optim.lr = lr;
  if (wd >= 0) c->optim.weight_decay = wd;
  if (momentum >= 0) c->optim.momentum = momentum;
  if (beta1 >= 0) c->optim.beta1 = beta1;
  if (beta2 >= 0) c->optim.beta2 = beta2;
  if (eps >= 0) c->optim.eps = eps;
  c->optim.nesterov = nesterov;
  if (nesterov && (kind != CT_OPT_SGD || c->optim.momentum <= 0))
    return CT_FAIL(CT_ERR_USAGE, "--nesterov: needs --optimizer sgd with --momentum > 0");
  if (c->sched.kind == CT_SCHED_STEP && c->sched.step_size == 0) c->sched.step_size = 1000;
  if (c->trace_last < (1L << 62) && !c->trace)
    return CT_FAIL(CT_ERR_USAGE, "--trace-steps: needs --trace FILE.json");
  CT_TRY(ct_sync_parse(c->sync, &mode, &k));
  CT_TRY(ct_sync_check_buckets(mode, c->bucket_mb));
  return CT_OK;
}

// ---- test hooks (hooks.h): the reliability tests' faults, from CLTRAIN_INJECT_* ---------------
//
//   CLTRAIN_INJECT_NAN_STEP=S [_COUNT=C] [_RANK=R]   rank R's gradients poisoned (a NaN) in
//                                                    steps S .. S+C-1 (C 1, R 0)
//   CLTRAIN_INJECT_DIVERGE_STEP=S [_RANK=R]          one parameter of rank R's replica changed
//                                                    after step S's update (R 1)
//   CLTRAIN_INJECT_EXIT_STEP=S [_RANK=R]             rank R exits (code 3) as step S begins (R 1)
//   CLTRAIN_INJECT_SLOW_RANK=R CLTRAIN_INJECT_SLOW_US=U   rank R's device held U us per sample
//                                                    of its share, each step: a slower device
//   CLTRAIN_INJECT_WRITE_KILL=1                      the process killed (SIGKILL) in the middle
//                                                    of its first atomic file write

typedef struct {
  long nan_step, nan_count, diverge_step, exit_step, slow_us;
  int nan_rank, diverge_rank, exit_rank, slow_rank, write_kill;
} injections;

static void inject_step_begin(void *ctx, int rank, long step) {
  const injections *in = ctx;
  if (step == in->exit_step && rank == in->exit_rank) {
    fprintf(stderr, "cltrain: rank %d exits at step %ld (CLTRAIN_INJECT_EXIT)\n", rank, step);
    _exit(3);
  }
}

// A slower device: its queue held for `us` microseconds behind the step's work, by a marker
// that waits for a user event the host completes after sleeping. The host's clock (sync) and
// the device's markers around the step (stale) both see a step at least that long, as they
// would on a slower device: the trainer's timing needs no correction.
static ct_status hold_device(ct_device *dev, long us) {
  cl_int err;
  cl_event gate = clCreateUserEvent(dev->ctx, &err);
  if (err != CL_SUCCESS)
    return CT_FAIL(CT_ERR_CL, "clCreateUserEvent failed: %s", ct_cl_errname(err));
  err = clEnqueueMarkerWithWaitList(dev->queue, 1, &gate, NULL);
  if (err == CL_SUCCESS) err = clFlush(dev->queue);   // (the step's kernels run meanwhile)
  if (err == CL_SUCCESS) usleep((useconds_t)us);
  cl_int done = clSetUserEventStatus(gate, CL_COMPLETE);
  clReleaseEvent(gate);
  if (err != CL_SUCCESS)
    return CT_FAIL(CT_ERR_CL, "holding the device (CLTRAIN_INJECT_SLOW_*) failed: %s",
                   ct_cl_errname(err));
  if (done != CL_SUCCESS)
    return CT_FAIL(CT_ERR_CL, "clSetUserEventStatus failed: %s", ct_cl_errname(done));
  return CT_OK;
}

static ct_status inject_computed(void *ctx, const ct_hook_step *h) {
  const injections *in = ctx;
  if (in->nan_step >= 0 && h->step >= in->nan_step && h->step < in->nan_step + in->nan_count &&
      h->rank == in->nan_rank)   // the guard must catch it on every rank
    CT_TRY(ct_fill(h->dev, h->buf, 1, NAN));
  if (h->rank == in->slow_rank && in->slow_us > 0 && h->samples > 0)
    CT_TRY(hold_device(h->dev, in->slow_us * h->samples));
  return CT_OK;
}

static ct_status inject_applied(void *ctx, const ct_hook_step *h) {
  const injections *in = ctx;
  if (h->step == in->diverge_step && h->rank == in->diverge_rank) {
    float v = 1.0f;   // one parameter of this replica only
    CL_CHECK(clEnqueueWriteBuffer(h->dev->queue, h->buf, CL_TRUE, 0, sizeof v, &v, 0, NULL,
                                  NULL));
  }
  return CT_OK;
}

static void inject_file_part(void *ctx, const char *path, int part) {
  const injections *in = ctx;
  (void)path;
  if (in->write_kill && part == 0) kill(getpid(), SIGKILL);
}

static long env_long(const char *name, long dflt, int *any) {
  const char *v = getenv(name);
  if (v && *v) *any = 1;
  return v && *v ? strtol(v, NULL, 10) : dflt;
}

// Installs the hooks when any CLTRAIN_INJECT_* variable is set.
static void install_injections(void) {
  static injections in;
  int any = 0;
  in.nan_step = env_long("CLTRAIN_INJECT_NAN_STEP", -1, &any);
  in.nan_count = env_long("CLTRAIN_INJECT_NAN_COUNT", 1, &any);
  in.nan_rank = (int)env_long("CLTRAIN_INJECT_NAN_RANK", 0, &any);
  in.diverge_step = env_long("CLTRAIN_INJECT_DIVERGE_STEP", -1, &any);
  in.diverge_rank = (int)env_long("CLTRAIN_INJECT_DIVERGE_RANK", 1, &any);
  in.exit_step = env_long("CLTRAIN_INJECT_EXIT_STEP", -1, &any);
  in.exit_rank = (int)env_long("CLTRAIN_INJECT_EXIT_RANK", 1, &any);
  in.slow_rank = (int)env_long("CLTRAIN_INJECT_SLOW_RANK", -1, &any);
  in.slow_us = env_long("CLTRAIN_INJECT_SLOW_US", 0, &any);
  in.write_kill = getenv("CLTRAIN_INJECT_WRITE_KILL") != NULL;
  if (!any && !in.write_kill) return;
  ct_hooks h = {.ctx = &in, .step_begin = inject_step_begin, .computed = inject_computed,
                .applied = inject_applied, .file_part = inject_file_part};
  ct_hooks_set(&h);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {   // --help and --version need no MPI
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    }
    if (!strcmp(argv[i], "--version")) {
      ct_status st = ct_version_print(stdout, "cltrain");
      if (st != CT_OK) fprintf(stderr, "cltrain: %s\n", ct_error_text());
      return ct_exit_code(st);
    }
  }
  ct_comm comm;
  ct_status st = ct_comm_init(&argc, &argv, &comm);
  if (st != CT_OK) {
    fprintf(stderr, "cltrain: %s\n", ct_error_text());
    return 1;
  }
  ct_train_config cfg;
  ct_train_config_defaults(&cfg);
  st = parse(argc, argv, &cfg);
  if (st != CT_OK) {
    if (comm.rank == 0) fprintf(stderr, "cltrain: %s\n", ct_error_text());
    ct_comm_free(&comm);
    return ct_exit_code(st);
  }
  install_injections();   // fault injection, for the reliability tests only

  ct_train_result res;
  st = ct_train_run(&cfg, &comm, &res);
  if (st != CT_OK) {
    // a usage error found later (batch larger than the data, architecture vs data) is the same
    // on every rank: say it once. Anything else may be one rank's alone: say which, and end the
    // job so that no rank waits forever in a collective.
    if (st == CT_ERR_USAGE) {
      if (comm.rank == 0) fprintf(stderr, "cltrain: %s\n", ct_error_text());
    } else if (comm.size > 1) {
      fprintf(stderr, "cltrain: rank %d: %s\n", comm.rank, ct_error_text());
      fflush(stderr);
      ct_comm_abort(&comm, ct_exit_code(st));
    } else {
      fprintf(stderr, "cltrain: %s\n", ct_error_text());
    }
  }
  ct_comm_free(&comm);
  return ct_exit_code(st);
}
