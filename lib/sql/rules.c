/*
 * User rules: PCRE2 rewrites of unquoted identifiers ("tmp_[0-9a-f]{6,}=tmp_?").
 *
 * Each rule is compiled once, with JIT when the platform has it. Matching
 * needs a pcre2_match_data, which is mutable; the normalizer is shared by
 * threads, so each rule set keeps a small pool of match data blocks that a
 * thread claims with one atomic exchange and gives back after the word. Only
 * when more threads than the pool holds are inside one word at once does a
 * call allocate a temporary block.
 */
#include <stdatomic.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "internal.h"
#include "sql_int.h"

#define QP_RULES_MD_POOL 16

typedef struct qp_rule {
  pcre2_code *code;
  char *replacement;
  size_t replacement_len;
} qp_rule;

struct qp_rules {
  qp_hooks hooks;
  pcre2_general_context *gctx;
  size_t n;
  qp_rule *rule;
  uint32_t max_pairs;
  pcre2_match_data *md[QP_RULES_MD_POOL];
  atomic_int busy[QP_RULES_MD_POOL];
};

static void *pcre_alloc(size_t n, void *ud) { return qp__malloc((const qp_hooks *)ud, n); }
static void pcre_free(void *p, void *ud) { qp__free((const qp_hooks *)ud, p); }

/* The last '=' not preceded by a backslash, or NULL. */
static const char *split_at(const char *rule) {
  const char *eq = NULL;
  for (const char *p = rule; *p; p++)
    if (*p == '=' && (p == rule || p[-1] != '\\')) eq = p;
  return eq;
}

void qp__rules_free(qp_rules *r) {
  if (r == NULL) return;
  for (size_t i = 0; i < QP_RULES_MD_POOL; i++) pcre2_match_data_free(r->md[i]);
  if (r->rule != NULL) {
    for (size_t i = 0; i < r->n; i++) {
      pcre2_code_free(r->rule[i].code);
      qp__free(&r->hooks, r->rule[i].replacement);
    }
    qp__free(&r->hooks, r->rule);
  }
  pcre2_general_context_free(r->gctx);
  qp__free(&r->hooks, r);
}

qp_status qp__rules_new(qp_rules **out, const char *const *rules, size_t nrules,
                        const qp_hooks *hooks, char *errbuf, size_t errlen) {
  *out = NULL;
  qp_hooks h;
  qp__hooks_init(&h, hooks);
  qp_rules *r = qp__calloc(&h, 1, sizeof *r);
  if (r == NULL) return qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
  r->hooks = h;
  for (size_t i = 0; i < QP_RULES_MD_POOL; i++) atomic_init(&r->busy[i], 0);
  qp_status st = QP_NOMEM;
  r->gctx = pcre2_general_context_create(pcre_alloc, pcre_free, &r->hooks);
  if (r->gctx == NULL) goto nomem;
  r->rule = qp__calloc(&r->hooks, nrules ? nrules : 1, sizeof *r->rule);
  if (r->rule == NULL) goto nomem;
  pcre2_compile_context *cctx = NULL;
  r->max_pairs = 1;
  for (size_t i = 0; i < nrules; i++) {
    const char *text = rules[i] != NULL ? rules[i] : "";
    const char *eq = split_at(text);
    if (eq == NULL || eq == text) {
      st = qp__errbuf_set(errbuf, errlen, QP_INVALID,
                          "rule %zu '%s': expected PATTERN=REPLACEMENT with a non-empty pattern",
                          i + 1, text);
      goto fail;
    }
    cctx = pcre2_compile_context_create(r->gctx);
    if (cctx == NULL) goto nomem;
    int err = 0;
    PCRE2_SIZE erroff = 0;
    r->rule[i].code = pcre2_compile((PCRE2_SPTR)text, (PCRE2_SIZE)(eq - text), PCRE2_UTF | PCRE2_MATCH_INVALID_UTF,
                                    &err, &erroff, cctx);
    pcre2_compile_context_free(cctx);
    cctx = NULL;
    r->n = i + 1;
    if (r->rule[i].code == NULL) {
      if (err == PCRE2_ERROR_HEAP_FAILED || err == PCRE2_ERROR_NOMEMORY) goto nomem;
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      st = qp__errbuf_set(errbuf, errlen, QP_PATTERN, "rule %zu '%s': %s at offset %zu", i + 1,
                          text, (const char *)msg, (size_t)erroff);
      goto fail;
    }
    /* JIT is an optimisation: without it (or out of executable memory) the
     * interpreter gives the same results. */
    (void)pcre2_jit_compile(r->rule[i].code, PCRE2_JIT_COMPLETE);
    uint32_t caps = 0;
    pcre2_pattern_info(r->rule[i].code, PCRE2_INFO_CAPTURECOUNT, &caps);
    if (caps + 1 > r->max_pairs) r->max_pairs = caps + 1;
    r->rule[i].replacement = qp__strdup(&r->hooks, eq + 1);
    if (r->rule[i].replacement == NULL) goto nomem;
    r->rule[i].replacement_len = strlen(eq + 1);
  }
  for (size_t i = 0; i < QP_RULES_MD_POOL && nrules > 0; i++) {
    r->md[i] = pcre2_match_data_create(r->max_pairs, r->gctx);
    if (r->md[i] == NULL) goto nomem;
  }
  *out = r;
  return QP_OK;
nomem:
  st = qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory compiling rules");
fail:
  qp__rules_free(r);
  return st;
}

static pcre2_match_data *md_claim(qp_rules *r, int *slot) {
  for (int i = 0; i < QP_RULES_MD_POOL; i++) {
    if (atomic_load_explicit(&r->busy[i], memory_order_relaxed) == 0 &&
        atomic_exchange_explicit(&r->busy[i], 1, memory_order_acquire) == 0) {
      *slot = i;
      return r->md[i];
    }
  }
  *slot = -1;
  return pcre2_match_data_create(r->max_pairs, r->gctx);
}

static void md_release(qp_rules *r, pcre2_match_data *md, int slot) {
  if (slot >= 0)
    atomic_store_explicit(&r->busy[slot], 0, memory_order_release);
  else
    pcre2_match_data_free(md);
}

size_t qp__rules_apply(const qp_rules *rc, const char *word, size_t n, char *buf, size_t cap) {
  /* The pool's flags are the only mutable part; they are atomics. */
  qp_rules *r = (qp_rules *)(uintptr_t)rc;
  if (n >= cap) n = cap - 1;
  memcpy(buf, word, n);
  if (r == NULL || r->n == 0) return n;
  int slot;
  pcre2_match_data *md = md_claim(r, &slot);
  if (md == NULL) return n;
  /* Each rule reads buf and writes tmp; a result that fits goes back to buf. */
  char tmp[512];
  size_t cur = n;
  for (size_t i = 0; i < r->n; i++) {
    PCRE2_SIZE outlen = sizeof tmp;
    int rc2 = pcre2_substitute(r->rule[i].code, (PCRE2_SPTR)buf, cur, 0,
                               PCRE2_SUBSTITUTE_GLOBAL, md, NULL,
                               (PCRE2_SPTR)r->rule[i].replacement, r->rule[i].replacement_len,
                               (PCRE2_UCHAR *)tmp, &outlen);
    if (rc2 > 0 && outlen < cap) {
      memcpy(buf, tmp, outlen);
      cur = outlen;
    }
  }
  md_release(r, md, slot);
  return cur;
}
