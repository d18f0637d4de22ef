// text.c: a text for a language model (data.h): the vocabulary, the split and the windows.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/data.h"

// ---- text -------------------------------------------------------------------------------------

#define CT_TEXT_MAX_BYTES ((uint64_t)1 << 31)   // token offsets stay within int windows

static ct_status text_split(const char *path, const char *what, const uint8_t *map,
                            const uint8_t *bytes, size_t n, int seq, int vocab,
                            const uint8_t *vocab_bytes, ct_dataset *ds) {
  memset(ds, 0, sizeof *ds);
  if (n < (size_t)seq + 1)
    return CT_FAIL(CT_ERR_FORMAT, "%s: the %s split has %zu bytes, shorter than one window of "
                   "--model gpt's seq+1 = %d tokens", path, what, n, seq + 1);
  ds->tokens = malloc(n);
  if (!ds->tokens) return CT_FAIL(CT_ERR_NOMEM, "out of host memory (%zu bytes of text)", n);
  for (size_t i = 0; i < n; i++) ds->tokens[i] = map[bytes[i]];
  ds->count = (int)((n - 1) / (size_t)seq);
  ds->seq = seq;
  ds->channels = seq, ds->rows = ds->cols = 1;
  ds->classes = vocab;
  memcpy(ds->vocab, vocab_bytes, 256);
  snprintf(ds->format, sizeof ds->format, "text");
  return CT_OK;
}

ct_status ct_text_load(const char *path, int seq, ct_dataset *train, ct_dataset *valid) {
  memset(train, 0, sizeof *train);
  memset(valid, 0, sizeof *valid);
  if (seq < 1) return CT_FAIL(CT_ERR_USAGE, "--model gpt: seq must be >= 1, got %d", seq);
  if (!path || !*path) return CT_FAIL(CT_ERR_USAGE, "--text: no file given");
  uint8_t *buf = NULL;
  size_t n = 0;
  CT_TRY(ct_read_file(path, CT_TEXT_MAX_BYTES, &buf, &n));
  if (n == 0) {
    free(buf);
    return CT_FAIL(CT_ERR_FORMAT, "%s: the text is empty", path);
  }
  int seen[256] = {0}, vocab = 0;
  uint8_t map[256] = {0}, bytes[256] = {0};
  for (size_t i = 0; i < n; i++) seen[buf[i]] = 1;
  for (int b = 0; b < 256; b++)   // the sorted distinct bytes
    if (seen[b]) map[b] = (uint8_t)vocab, bytes[vocab++] = (uint8_t)b;
  size_t cut = (size_t)(0.9 * (double)n);   // floor(0.9 n)
  ct_status st = text_split(path, "training", map, buf, cut, seq, vocab, bytes, train);
  if (st == CT_OK)
    st = text_split(path, "validation", map, buf + cut, n - cut, seq, vocab, bytes, valid);
  free(buf);
  if (st != CT_OK) {
    ct_dataset_free(train);
    ct_dataset_free(valid);
  }
  return st;
}

void ct_text_gather(const ct_dataset *ds, const int *idx, int n, int32_t *x, int *y) {
  size_t T = (size_t)ds->seq;
  for (int k = 0; k < n; k++) {
    const uint8_t *w = ds->tokens + (size_t)idx[k] * T;
    for (size_t t = 0; t < T; t++) {
      x[(size_t)k * T + t] = w[t];
      y[(size_t)k * T + t] = w[t + 1];
    }
  }
}

