// metrics.h: JSON Lines metrics (--metrics FILE.jsonl), one record per line, flushed per record.
//
// Defines: ct_json (a record being built) + ct_json_begin / _str / _num / _int / _raw / _end /
// _item / _array,
// ct_metrics (+ ct_metrics_open / _write / _close), ct_json_escape.
//
// A record is a JSON object; ct_json_* append "key": value pairs (strings escaped, non-finite
// numbers written as null, which JSON has no other spelling for). The schema of cltrain's
// records is docs/metrics.md. Only rank 0 writes; the file is truncated when opened, and every
// record is written whole and flushed, so a run that dies leaves every record before it intact.
#ifndef CLTRAIN_METRICS_H
#define CLTRAIN_METRICS_H

#include <stdio.h>

#include "cltrain/status.h"

typedef struct {
  char *buf;
  size_t len, cap;
  int n;       // pairs (or array items) so far at the current level
  int oom;     // an allocation failed: the record is dropped, _end says so
} ct_json;

void ct_json_begin(ct_json *j);                          // "{"
void ct_json_str(ct_json *j, const char *key, const char *value);
void ct_json_num(ct_json *j, const char *key, double value);
void ct_json_int(ct_json *j, const char *key, long long value);
// value is already JSON (an array or object built by the caller); key NULL: an array item
void ct_json_raw(ct_json *j, const char *key, const char *value);
// closes the object; CT_ERR_NOMEM if any append failed. The caller frees j->buf.
ct_status ct_json_end(ct_json *j);
// Arrays: items starts zeroed; ct_json_item closes the object `one` (begun with ct_json_begin),
// appends it to items and frees it; ct_json_array adds "key": [items...] to j and frees items.
void ct_json_item(ct_json *items, ct_json *one);
void ct_json_array(ct_json *j, const char *key, ct_json *items);
// JSON string literal of s (with the quotes) into out (size bytes, truncated safely).
void ct_json_escape(const char *s, char *out, size_t size);

typedef struct {
  FILE *f;
  char path[1024];
} ct_metrics;

// CT_ERR_USAGE-free: a file that cannot be created is CT_ERR_IO naming it.
ct_status ct_metrics_open(ct_metrics *m, const char *path);
// one line: the record and a newline, flushed; CT_ERR_IO (naming the file) on a failed write
ct_status ct_metrics_write(ct_metrics *m, const ct_json *record);
ct_status ct_metrics_close(ct_metrics *m);

#endif
