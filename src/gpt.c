// gpt.c: the GPT-2-style language model as a graph of ops (see gpt.h).
#include "cltrain/gpt.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GPT_MAX_LAYERS 40   // 10 nodes and 12 tensors a block: within CT_MAX_NODES/_TENSORS

int ct_gpt_is_spec(const char *spec) {
  return spec && !strncmp(spec, "gpt", 3) && (spec[3] == 0 || spec[3] == ':');
}

ct_status ct_gpt_parse(const char *spec, ct_gpt_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->layers = 4, cfg->channels = 128, cfg->heads = 4, cfg->seq = 64;
  if (!ct_gpt_is_spec(spec))
    return CT_FAIL(CT_ERR_USAGE, "--model: '%.60s' is not gpt or gpt:KEY=VALUE,...", spec);
  static const struct { const char *key; long lo, hi; size_t at; } keys[] = {
      {"layers", 1, GPT_MAX_LAYERS, offsetof(ct_gpt_config, layers)},
      {"channels", 1, 8192, offsetof(ct_gpt_config, channels)},
      {"heads", 1, 8192, offsetof(ct_gpt_config, heads)},
      {"seq", 1, 4096, offsetof(ct_gpt_config, seq)},
  };
  int given[4] = {0};
  const char *p = spec[3] == ':' ? spec + 4 : spec + 3;
  while (*p) {
    const char *end = strchr(p, ','), *eq = strchr(p, '=');
    if (!end) end = p + strlen(p);
    if (!eq || eq > end)
      return CT_FAIL(CT_ERR_USAGE, "--model %s: '%.*s' is not KEY=VALUE (keys layers, channels, "
                     "heads, seq)", spec, (int)(end - p), p);
    int k = -1;
    for (int i = 0; i < 4; i++)
      if ((size_t)(eq - p) == strlen(keys[i].key) && !strncmp(p, keys[i].key, (size_t)(eq - p)))
        k = i;
    if (k < 0)
      return CT_FAIL(CT_ERR_USAGE, "--model %s: unknown key '%.*s' (expected layers, channels, "
                     "heads or seq)", spec, (int)(eq - p), p);
    if (given[k]++)
      return CT_FAIL(CT_ERR_USAGE, "--model %s: %s given twice", spec, keys[k].key);
    long v = 0;
    const char *d = eq + 1;
    int ok = d < end;
    for (; ok && d < end; d++) {
      ok = isdigit((unsigned char)*d) != 0;
      v = v * 10 + (*d - '0');
      if (v > 1000000) ok = 0;
    }
    if (!ok || v < keys[k].lo || v > keys[k].hi)
      return CT_FAIL(CT_ERR_USAGE, "--model %s: %s must be an integer in %ld..%ld, got '%.*s'",
                     spec, keys[k].key, keys[k].lo, keys[k].hi, (int)(end - eq - 1), eq + 1);
    *(int *)((char *)cfg + keys[k].at) = (int)v;
    p = *end ? end + 1 : end;
    if (*end && !*p) return CT_FAIL(CT_ERR_USAGE, "--model %s: empty entry after ','", spec);
  }
  if (cfg->channels % cfg->heads)
    return CT_FAIL(CT_ERR_USAGE, "--model %s: heads=%d do not divide channels=%d", spec,
                   cfg->heads, cfg->channels);
  return CT_OK;
}

// Sets the initialisation and weight decay of the tensors added since `first`: N(0, std) and
// decay for matrices, one (LayerNorm weights) or zero (biases) without.
static void init_since(ct_arch *a, int first, double std) {
  for (int t = first; t < a->nt; t++) {
    ct_tensor *x = &a->tensors[t];
    x->decay = x->nd >= 2;
    if (x->nd >= 2) {
      x->init.kind = CT_INIT_NORMAL;
      x->init.std = std;
    } else {
      int ln = strstr(x->name, "ln_") && strstr(x->name, ".weight");
      x->init.kind = ln ? CT_INIT_ONE : CT_INIT_ZERO;
    }
  }
}

// Appends op `op` configured by `token` on inputs in[0..n), tensors named prefix.<what>, with
// the initialisation std for its matrices; *out: the node's output.
static ct_status add(ct_arch *a, const char *op, const char *token, const int *in, int n,
                     const char *prefix, double std, int *out) {
  int first = a->nt;
  CT_TRY(ct_arch_add(a, op, token, in, n, prefix, NULL, out));
  init_since(a, first, std);
  return CT_OK;
}

ct_status ct_gpt_build(const ct_gpt_config *g, ct_arch *a) {
  const int L = g->layers, C = g->channels, H = g->heads, T = g->seq, V = g->vocab;
  if (V < 1 || V > 65536 || L < 1 || L > GPT_MAX_LAYERS || C < 1 || H < 1 || C % H || T < 1)
    return CT_FAIL(CT_ERR_USAGE, "--model gpt: layers=%d channels=%d heads=%d seq=%d with a "
                   "vocabulary of %d is not a model", L, C, H, T, V);
  const double std = 0.02, std_proj = 0.02 / sqrt(2.0 * L);
  ct_shape tokens = {1, {T, 0, 0}, 1};
  ct_arch_begin(a, &tokens);
  char tok[64], pre[72];
  int x, h, q, y, p, f, in2[2];
  snprintf(tok, sizeof tok, "embedding:%d/%d", V, C);
  int zero = 0;
  CT_TRY(add(a, "embedding", tok, &zero, 1, "transformer", std, &x));
  for (int l = 0; l < L; l++) {
    snprintf(pre, sizeof pre, "transformer.h.%d.ln_1", l);
    CT_TRY(add(a, "layernorm", "layernorm", &x, 1, pre, std, &h));
    snprintf(pre, sizeof pre, "transformer.h.%d.attn.c_attn", l);
    snprintf(tok, sizeof tok, "dense:%d", 3 * C);
    CT_TRY(add(a, "dense", tok, &h, 1, pre, std, &q));
    snprintf(pre, sizeof pre, "transformer.h.%d.attn", l);
    snprintf(tok, sizeof tok, "attention:%d", H);
    CT_TRY(add(a, "attention", tok, &q, 1, pre, std, &y));
    snprintf(pre, sizeof pre, "transformer.h.%d.attn.c_proj", l);
    snprintf(tok, sizeof tok, "dense:%d", C);
    CT_TRY(add(a, "dense", tok, &y, 1, pre, std_proj, &p));
    in2[0] = x, in2[1] = p;
    snprintf(pre, sizeof pre, "transformer.h.%d.res_1", l);
    CT_TRY(add(a, "add", "add", in2, 2, pre, std, &x));
    snprintf(pre, sizeof pre, "transformer.h.%d.ln_2", l);
    CT_TRY(add(a, "layernorm", "layernorm", &x, 1, pre, std, &h));
    snprintf(pre, sizeof pre, "transformer.h.%d.mlp.c_fc", l);
    snprintf(tok, sizeof tok, "dense:%d", 4 * C);
    CT_TRY(add(a, "dense", tok, &h, 1, pre, std, &f));
    snprintf(pre, sizeof pre, "transformer.h.%d.mlp.gelu", l);
    CT_TRY(add(a, "gelu", "gelu", &f, 1, pre, std, &h));
    snprintf(pre, sizeof pre, "transformer.h.%d.mlp.c_proj", l);
    snprintf(tok, sizeof tok, "dense:%d", C);
    CT_TRY(add(a, "dense", tok, &h, 1, pre, std_proj, &p));
    in2[0] = x, in2[1] = p;
    snprintf(pre, sizeof pre, "transformer.h.%d.res_2", l);
    CT_TRY(add(a, "add", "add", in2, 2, pre, std, &x));
  }
  CT_TRY(add(a, "layernorm", "layernorm", &x, 1, "transformer.ln_f", std, &h));
  int tied[CT_OP_MAX_PARAMS] = {ct_arch_tensor_find(a, "transformer.wte.weight"), -1, -1, -1};
  if (tied[0] < 0) return CT_FAIL(CT_ERR_INTERNAL, "the embedding declared no transformer.wte");
  int logits;
  snprintf(tok, sizeof tok, "dense:%d/nobias", V);
  CT_TRY(ct_arch_add(a, "dense", tok, &h, 1, "lm_head", tied, &logits));
  snprintf(a->text, sizeof a->text, "gpt:layers=%d,channels=%d,heads=%d,seq=%d", L, C, H, T);
  a->classes = V;
  a->in_c = T, a->in_h = a->in_w = 1;
  return ct_arch_end(a, "softmax_xent", logits, T);
}
