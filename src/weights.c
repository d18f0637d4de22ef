// weights.c: a run's weights in and out of safetensors files. See weights.h.
#include "cltrain/weights.h"

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

ct_status ct_run_init_from(ct_run_state *s, const char *path) {
  uint8_t *buf = NULL;
  size_t size = 0;
  CT_TRY(ct_read_file(path, (uint64_t)1 << 36, &buf, &size));
  ct_st_file f;
  ct_status st = ct_safetensors_parse(buf, size, path, &f);
  if (st == CT_OK) st = ct_safetensors_to_params(&f, &s->arch, path, 0, s->host_params);
  if (st == CT_OK && s->labels > 1) {   // a language model: the same vocabulary
    ct_st_meta mine;
    ct_run_st_meta(s, &mine);
    const char *theirs = ct_safetensors_meta(&f, "vocab");
    if (theirs && strcmp(theirs, mine.buf[5]))
      st = CT_FAIL(CT_ERR_FORMAT, "%s: its vocabulary %.60s%s is not the text's %.60s%s", path,
                   theirs, strlen(theirs) > 60 ? "..." : "", mine.buf[5],
                   strlen(mine.buf[5]) > 60 ? "..." : "");
  }
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
