// hooks.c: the process's test hooks (hooks.h): none unless a tool installs them.
#include "cltrain/hooks.h"

static ct_hooks installed;

void ct_hooks_set(const ct_hooks *hooks) {
  static const ct_hooks none;
  installed = hooks ? *hooks : none;
}

const ct_hooks *ct_hooks_get(void) { return &installed; }
