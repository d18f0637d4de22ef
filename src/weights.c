// weights.c: a run's weights in and out of safetensors files. See weights.h.
#include "cltrain/weights.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/data.h"

void ct_gpt_st_meta(ct_st_meta *m, const ct_gpt_config *g, const uint8_t *vocab) {
  static const char *const keys[] = {"n_layer", "n_head", "n_embd", "block_size", "vocab_size",
                                     "vocab"};
  int v[5] = {g->layers, g->heads, g->channels, g->seq, g->vocab};
  for (int k = 0; k < 5; k++) snprintf(m->buf[k], sizeof m->buf[k], "%d", v[k]);
  size_t len = 0;
  char *b = m->buf[5];
  len += (size_t)snprintf(b, sizeof m->buf[5], "[");
  for (int i = 0; i < g->vocab && len < sizeof m->buf[5]; i++)
    len += (size_t)snprintf(b + len, sizeof m->buf[5] - len, "%s%d", i ? ", " : "", vocab[i]);
  if (len < sizeof m->buf[5]) snprintf(b + len, sizeof m->buf[5] - len, "]");
  for (int k = 0; k < 6; k++) m->kv[2 * k] = keys[k], m->kv[2 * k + 1] = m->buf[k];
  m->n = 6;
}

void ct_run_st_meta(const ct_run_state *s, ct_st_meta *m) {
  ct_gpt_config g;
  if (ct_gpt_is_spec(s->cfg->arch) && ct_gpt_parse(s->cfg->arch, &g) == CT_OK) {
    g.vocab = s->train.classes;
    ct_gpt_st_meta(m, &g, s->train.vocab);
  } else {
    ct_st_classifier_meta(m, &s->arch, s->cfg->norm_mean, s->cfg->norm_std);
  }
}

// The "vocab" metadata: a JSON list of distinct byte values, into vocab[0..*n).
static ct_status parse_vocab(const char *v, const char *name, uint8_t *vocab, int *n) {
  int seen[256] = {0}, V = 0;
  const char *p = v;
  while (*p == ' ') p++;
  int ok = *p++ == '[';
  while (*p == ' ') p++;
  while (ok && *p != ']') {
    char *end = NULL;
    long b = isdigit((unsigned char)*p) ? strtol(p, &end, 10) : -1;
    ok = end && b >= 0 && b <= 255 && !seen[b] && V < 256;
    if (!ok) break;
    seen[b] = 1;
    vocab[V++] = (uint8_t)b;
    for (p = end; *p == ' ';) p++;
    if (*p == ',') {
      for (p++; *p == ' ';) p++;
      ok = *p != ']';
    } else {
      ok = *p == ']';
    }
  }
  if (ok) {
    for (p++; *p == ' ';) p++;
    ok = *p == 0 && V >= 1;
  }
  if (!ok)
    return CT_FAIL(CT_ERR_FORMAT, "%s: metadata vocab '%.40s%s' is not a JSON list of distinct "
                   "byte values 0..255", name, v, strlen(v) > 40 ? "..." : "");
  *n = V;
  return CT_OK;
}

// A byte for messages: 65 ('A'), 10.
static void byte_name(int b, char *buf, size_t size) {
  if (b >= 0x20 && b < 0x7f && b != '\'') snprintf(buf, size, "%d ('%c')", b, b);
  else snprintf(buf, size, "%d", b);
}

// A language model's file must hold the text's vocabulary, when it holds one.
static ct_status same_vocab(const ct_run_state *s, const ct_st_file *f, const char *path) {
  const char *theirs = ct_safetensors_meta(f, "vocab");
  if (!theirs) return CT_OK;
  uint8_t v[256];
  int n, mine = s->train.classes;
  CT_TRY(parse_vocab(theirs, path, v, &n));
  for (int t = 0; t < n || t < mine; t++) {
    if (t < n && t < mine && v[t] == s->train.vocab[t]) continue;
    char a[16] = "none", b[16] = "none";
    if (t < n) byte_name(v[t], a, sizeof a);
    if (t < mine) byte_name(s->train.vocab[t], b, sizeof b);
    return CT_FAIL(CT_ERR_FORMAT, "%s: its vocabulary (%d bytes) is not the text's (%d bytes): "
                   "token %d is byte %s in the file, %s in the text", path, n, mine, t, a, b);
  }
  return CT_OK;
}

ct_status ct_run_init_from(ct_run_state *s, const char *path) {
  uint8_t *buf = NULL;
  size_t size = 0;
  ct_status st = ct_read_file(path, (uint64_t)1 << 36, &buf, &size);
  if (st != CT_OK)
    return ct_error_replace(st, __FILE__, __LINE__, "--init-from: %s", ct_error_text());
  ct_st_file f;
  st = ct_safetensors_parse(buf, size, path, &f);
  // (a language model's vocabulary first: another one also gives the embedding another shape)
  if (st == CT_OK && s->labels > 1) st = same_vocab(s, &f, path);
  if (st == CT_OK) st = ct_safetensors_to_params(&f, &s->arch, path, 0, s->host_params);
  if (st == CT_OK && s->arch.param_count)   // never a non-finite starting point
    for (size_t i = 0; i < s->arch.param_count && st == CT_OK; i++)
      if (!(s->host_params[i] == s->host_params[i]) || s->host_params[i] > 3.4e38f ||
          s->host_params[i] < -3.4e38f)
        st = CT_FAIL(CT_ERR_FORMAT, "%s: parameter %zu is not finite", path, i);
  ct_safetensors_free(&f);
  free(buf);
  if (st != CT_OK)
    st = ct_error_replace(st, __FILE__, __LINE__, "--init-from: %s", ct_error_text());
  return st;
}

// A metadata value that is a whole decimal number in [lo, hi].
static ct_status meta_int(const ct_st_file *f, const char *name, const char *key, long lo,
                          long hi, int *out) {
  const char *v = ct_safetensors_meta(f, key);
  if (!v)
    return CT_FAIL(CT_ERR_FORMAT, "%s: no \"%s\" in its metadata: not a language model's weights "
                   "(cltrain --model gpt --save-safetensors writes them)", name, key);
  char *end = NULL;
  long x = isdigit((unsigned char)v[0]) ? strtol(v, &end, 10) : -1;
  if (!end || *end || x < lo || x > hi)
    return CT_FAIL(CT_ERR_FORMAT, "%s: metadata %s is '%.40s', not an integer in %ld..%ld", name,
                   key, v, lo, hi);
  *out = (int)x;
  return CT_OK;
}

ct_status ct_gpt_st_read(const ct_st_file *f, const char *name, ct_gpt_config *g,
                         uint8_t *vocab) {
  int L, H, C, T, V;
  CT_TRY(meta_int(f, name, "n_layer", 1, 1 << 20, &L));
  CT_TRY(meta_int(f, name, "n_head", 1, 1 << 20, &H));
  CT_TRY(meta_int(f, name, "n_embd", 1, 1 << 20, &C));
  CT_TRY(meta_int(f, name, "block_size", 1, 1 << 20, &T));
  // the ranges and the heads' fit are the model's own (ct_gpt_parse), said of the file
  char spec[128];
  snprintf(spec, sizeof spec, "gpt:layers=%d,channels=%d,heads=%d,seq=%d", L, C, H, T);
  if (ct_gpt_parse(spec, g) != CT_OK)
    return ct_error_replace(CT_ERR_FORMAT, __FILE__, __LINE__, "%s: its metadata (n_layer %d, "
                            "n_head %d, n_embd %d, block_size %d) is not a model: %s", name, L, H,
                            C, T, ct_error_text());
  const char *v = ct_safetensors_meta(f, "vocab");
  if (!v)
    return CT_FAIL(CT_ERR_FORMAT, "%s: no \"vocab\" in its metadata (the byte of each token)",
                   name);
  CT_TRY(parse_vocab(v, name, vocab, &V));
  if (ct_safetensors_meta(f, "vocab_size")) {
    int vs;
    CT_TRY(meta_int(f, name, "vocab_size", 1, 256, &vs));
    if (vs != V)
      return CT_FAIL(CT_ERR_FORMAT, "%s: metadata vocab_size is %d, its vocab lists %d bytes",
                     name, vs, V);
  }
  g->vocab = V;
  return CT_OK;
}
