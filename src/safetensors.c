// safetensors.c: reading safetensors files (export.h): a strict parser of the JSON header and
// the model's tensors taken from a file by name.
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cltrain/export.h"

#define ST_MAX_HEADER ((uint64_t)64 << 20)

// ---- a small JSON reader, for the header: objects, arrays, strings, integers -------------------

typedef struct {
  const char *p, *end, *start;
  const char *name;     // the file, for messages
} jr;

static void ws(jr *j) {
  while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
    j->p++;
}

static ct_status bad(jr *j, const char *what) {
  return CT_FAIL(CT_ERR_FORMAT, "%s: the safetensors header is not valid JSON (%s at byte %ld)",
                 j->name, what, (long)(j->p - j->start) + 8);
}

static ct_status expect(jr *j, char c) {
  ws(j);
  if (j->p >= j->end || *j->p != c) {
    char what[32];
    snprintf(what, sizeof what, "'%c' expected", c);
    return bad(j, what);
  }
  j->p++;
  return CT_OK;
}

// A string into out (size bytes; longer ones are an error). \uXXXX outside ASCII becomes '?'.
static ct_status string(jr *j, char *out, size_t size) {
  CT_TRY(expect(j, '"'));
  size_t n = 0;
  while (j->p < j->end && *j->p != '"') {
    char c = *j->p++;
    if ((unsigned char)c < 0x20) return bad(j, "a control character in a string");
    if (c == '\\') {
      if (j->p >= j->end) return bad(j, "an unfinished escape");
      char e = *j->p++;
      const char *map = "\"\"\\\\//b\bf\fn\nr\rt\t";
      const char *m = strchr(map, e);
      if (e == 'u') {
        if (j->end - j->p < 4) return bad(j, "a short \\u escape");
        unsigned v = 0;
        for (int i = 0; i < 4; i++) {
          char h = *j->p++;
          if (!isxdigit((unsigned char)h)) return bad(j, "a bad \\u escape");
          v = v * 16 + (unsigned)(isdigit((unsigned char)h) ? h - '0' : (tolower(h) - 'a' + 10));
        }
        c = v < 0x80 ? (char)v : '?';
      } else if (m && (m - map) % 2 == 0) {
        c = m[1];
      } else {
        return bad(j, "an unknown escape");
      }
    }
    if (n + 1 >= size) return bad(j, "a string too long");
    out[n++] = c;
  }
  if (j->p >= j->end) return bad(j, "an unfinished string");
  j->p++;
  out[n] = 0;
  return CT_OK;
}

static ct_status integer(jr *j, long long *v) {
  ws(j);
  const char *s = j->p;
  if (s < j->end && *s == '-') s++;
  if (s >= j->end || !isdigit((unsigned char)*s)) return bad(j, "an integer expected");
  long long x = 0;
  int neg = *j->p == '-';
  for (j->p = s; j->p < j->end && isdigit((unsigned char)*j->p); j->p++) {
    if (x > (long long)1e17) return bad(j, "an integer too large");
    x = x * 10 + (*j->p - '0');
  }
  *v = neg ? -x : x;
  return CT_OK;
}

static ct_status int_array(jr *j, long long *out, int max, int *n) {
  CT_TRY(expect(j, '['));
  *n = 0;
  ws(j);
  if (j->p < j->end && *j->p == ']') {
    j->p++;
    return CT_OK;
  }
  for (;;) {
    if (*n == max) return bad(j, "too many dimensions");
    CT_TRY(integer(j, &out[(*n)++]));
    ws(j);
    if (j->p < j->end && *j->p == ',') {
      j->p++;
      continue;
    }
    return expect(j, ']');
  }
}

// One tensor's entry: {"dtype": ..., "shape": [...], "data_offsets": [a, b]}.
static ct_status tensor_entry(jr *j, ct_st_tensor *t) {
  CT_TRY(expect(j, '{'));
  int have = 0;
  for (;;) {
    char key[32];
    CT_TRY(string(j, key, sizeof key));
    CT_TRY(expect(j, ':'));
    if (!strcmp(key, "dtype")) {
      CT_TRY(string(j, t->dtype, sizeof t->dtype));
      have |= 1;
    } else if (!strcmp(key, "shape")) {
      CT_TRY(int_array(j, t->shape, 8, &t->nd));
      have |= 2;
    } else if (!strcmp(key, "data_offsets")) {
      long long off[2];
      int n;
      CT_TRY(int_array(j, off, 2, &n));
      if (n != 2 || off[0] < 0 || off[1] < off[0]) return bad(j, "bad data_offsets");
      t->begin = (size_t)off[0], t->end = (size_t)off[1];
      have |= 4;
    } else {
      return bad(j, "an unknown key in a tensor's entry");
    }
    ws(j);
    if (j->p < j->end && *j->p == ',') {
      j->p++;
      continue;
    }
    CT_TRY(expect(j, '}'));
    if (have != 7) return bad(j, "a tensor without dtype, shape or data_offsets");
    return CT_OK;
  }
}

static ct_status metadata(jr *j, ct_st_file *f) {
  CT_TRY(expect(j, '{'));
  ws(j);
  if (j->p < j->end && *j->p == '}') {
    j->p++;
    return CT_OK;
  }
  for (;;) {
    if (f->n_meta == CT_ST_MAX_META) return bad(j, "too many metadata entries");
    CT_TRY(string(j, f->meta_key[f->n_meta], sizeof f->meta_key[0]));
    CT_TRY(expect(j, ':'));
    CT_TRY(string(j, f->meta_val[f->n_meta], sizeof f->meta_val[0]));
    f->n_meta++;
    ws(j);
    if (j->p < j->end && *j->p == ',') {
      j->p++;
      continue;
    }
    return expect(j, '}');
  }
}

static size_t dtype_bytes(const char *d) {
  if (!strcmp(d, "F32") || !strcmp(d, "I32") || !strcmp(d, "U32")) return 4;
  if (!strcmp(d, "F64") || !strcmp(d, "I64") || !strcmp(d, "U64")) return 8;
  if (!strcmp(d, "F16") || !strcmp(d, "BF16") || !strcmp(d, "I16") || !strcmp(d, "U16")) return 2;
  if (!strcmp(d, "I8") || !strcmp(d, "U8") || !strcmp(d, "BOOL")) return 1;
  return 0;
}

ct_status ct_safetensors_parse(const uint8_t *buf, size_t size, const char *name,
                               ct_st_file *f) {
  memset(f, 0, sizeof *f);
  if (size < 8) return CT_FAIL(CT_ERR_FORMAT, "%s: %zu bytes, too short for safetensors", name, size);
  uint64_t hl = 0;
  for (int b = 7; b >= 0; b--) hl = hl << 8 | buf[b];
  if (hl < 2 || hl > ST_MAX_HEADER || hl > size - 8)
    return CT_FAIL(CT_ERR_FORMAT, "%s: a safetensors header of %llu bytes does not fit a file of "
                   "%zu bytes", name, (unsigned long long)hl, size);
  f->data = buf + 8 + hl;
  f->data_size = size - 8 - (size_t)hl;
  jr j = {(const char *)buf + 8, (const char *)buf + 8 + hl, (const char *)buf + 8, name};
  ct_status st = expect(&j, '{');
  int cap = 0;
  ws(&j);
  int empty = st == CT_OK && j.p < j.end && *j.p == '}';
  while (st == CT_OK && !empty) {
    char key[CT_ST_NAME];
    st = string(&j, key, sizeof key);
    if (st == CT_OK) st = expect(&j, ':');
    if (st != CT_OK) break;
    if (!strcmp(key, "__metadata__")) {
      st = metadata(&j, f);
    } else {
      if (f->n == cap) {
        cap = cap ? 2 * cap : 64;
        ct_st_tensor *t = realloc(f->t, (size_t)cap * sizeof *t);
        if (!t) {
          st = CT_FAIL(CT_ERR_NOMEM, "out of host memory reading %s", name);
          break;
        }
        f->t = t;
      }
      ct_st_tensor *t = &f->t[f->n];
      memset(t, 0, sizeof *t);
      snprintf(t->name, sizeof t->name, "%s", key);
      st = tensor_entry(&j, t);
      if (st == CT_OK) {
        size_t item = dtype_bytes(t->dtype), count = 1;
        for (int d = 0; d < t->nd; d++) {
          if (t->shape[d] < 0 || (t->shape[d] && count > SIZE_MAX / (size_t)t->shape[d]))
            st = CT_FAIL(CT_ERR_FORMAT, "%s: tensor %s has a bad shape", name, t->name);
          count *= (size_t)t->shape[d];
        }
        if (st == CT_OK && !item)
          st = CT_FAIL(CT_ERR_FORMAT, "%s: tensor %s has an unknown dtype '%s'", name, t->name,
                       t->dtype);
        if (st == CT_OK && (t->end > f->data_size || t->end - t->begin != count * item))
          st = CT_FAIL(CT_ERR_FORMAT, "%s: tensor %s's bytes [%zu, %zu) do not hold its shape or "
                       "lie past the file's end (%zu bytes of data)", name, t->name, t->begin,
                       t->end, f->data_size);
        t->count = count;
        f->n++;
      }
    }
    if (st != CT_OK) break;
    ws(&j);
    if (j.p < j.end && *j.p == ',') {
      j.p++;
      continue;
    }
    break;
  }
  if (st == CT_OK) st = expect(&j, '}');
  if (st == CT_OK) {
    ws(&j);
    if (j.p != j.end) st = bad(&j, "bytes after the header's object");
  }
  if (st != CT_OK) ct_safetensors_free(f);
  return st;
}

void ct_safetensors_free(ct_st_file *f) {
  free(f->t);
  memset(f, 0, sizeof *f);
}

const ct_st_tensor *ct_safetensors_find(const ct_st_file *f, const char *name) {
  for (int i = 0; i < f->n; i++)
    if (!strcmp(f->t[i].name, name)) return &f->t[i];
  return NULL;
}

const char *ct_safetensors_meta(const ct_st_file *f, const char *key) {
  for (int i = 0; i < f->n_meta; i++)
    if (!strcmp(f->meta_key[i], key)) return f->meta_val[i];
  return NULL;
}

ct_status ct_safetensors_to_params(const ct_st_file *f, const ct_arch *arch, const char *name,
                                   int others_ok, float *params) {
  for (int i = 0; i < arch->nt; i++) {
    const ct_tensor *x = &arch->tensors[i];
    const ct_st_tensor *t = ct_safetensors_find(f, x->name);
    if (!t)
      return CT_FAIL(CT_ERR_FORMAT, "%s: no tensor %s (the model has %d tensors)", name, x->name,
                     arch->nt);
    int same = t->nd == x->nd;
    for (int d = 0; same && d < x->nd; d++) same = t->shape[d] == x->shape[d];
    if (!same || strcmp(t->dtype, "F32")) {
      char got[96] = "", want[96] = "";
      for (int d = 0; d < t->nd; d++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "", t->shape[d]);
      for (int d = 0; d < x->nd; d++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? ", " : "",
                 x->shape[d]);
      return CT_FAIL(CT_ERR_FORMAT, "%s: tensor %s is %s (%s), the model's is F32 (%s)", name,
                     x->name, t->dtype, got, want);
    }
    memcpy(params + x->off, f->data + t->begin, x->count * sizeof(float));
  }
  // every tensor of the file belongs to the model (a tied lm_head stored anyway may be there)
  for (int i = 0; i < f->n && !others_ok; i++) {
    const char *n = f->t[i].name;
    if (ct_arch_tensor_find(arch, n) < 0 && strcmp(n, "lm_head.weight"))
      return CT_FAIL(CT_ERR_FORMAT, "%s: tensor %s is not one of the model's (%s)", name, n,
                     arch->text);
  }
  return CT_OK;
}
