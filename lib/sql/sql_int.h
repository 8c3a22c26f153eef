/*
 * Private to lib/sql: the single-pass lexer shared by the normalizer, the
 * splitter and the classifier, and the keyword table.
 *
 * The lexer is a byte loop over a 256-entry character-class table. It never
 * recurses and never allocates: each call skips white space, reads one token
 * and returns the position after it. Unterminated strings, comments, quoted
 * identifiers and dollar quotes run to the end of the input.
 */
#ifndef QP_SQL_INT_H
#define QP_SQL_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "qprof/sql.h"

typedef enum qp_tok_type {
  QP_T_EOF = 0,
  QP_T_WORD,    /* keyword or unquoted identifier */
  QP_T_QIDENT,  /* "x", U&"x", `x`, [x] */
  QP_T_STRING,  /* every string literal form, blobs and dollar quotes */
  QP_T_NUMBER,  /* 1, 1.5, .5, 1e-3, 0x1F, 1_000 */
  QP_T_PARAM,   /* $1, ?, ?3, :name, @name, $name */
  QP_T_OP,      /* operators: = <> + - * / || ->> ... */
  QP_T_LPAREN,
  QP_T_RPAREN,
  QP_T_LBRACK,
  QP_T_RBRACK,
  QP_T_COMMA,
  QP_T_SEMI,
  QP_T_DOT,
  QP_T_CAST,    /* :: (PostgreSQL) */
  QP_T_COLON,   /* a lone ':' (array slices) */
  QP_T_COMMENT, /* -- ... or a block comment */
  QP_T_OTHER    /* a byte that starts nothing else */
} qp_tok_type;

typedef struct qp_tok {
  qp_tok_type type;
  size_t start, end; /* [start, end) in the input */
} qp_tok;

/* Character classes. */
enum {
  QP_C_OTHER = 0,
  QP_C_SPACE,   /* white space and control bytes, NUL included */
  QP_C_IDENT,   /* a-z A-Z _ and every byte >= 0x80 */
  QP_C_DIGIT,   /* IDENT, DIGIT and DOLLAR are adjacent: see qp__sql_idchar */
  QP_C_DOLLAR,
  QP_C_QUOTE,   /* ' */
  QP_C_DQUOTE,  /* " */
  QP_C_BTICK,   /* ` */
  QP_C_OP,      /* + - * / < > = ~ ! @ # % ^ & | ? */
  QP_C_LPAREN,
  QP_C_RPAREN,
  QP_C_LBRACK,
  QP_C_RBRACK,
  QP_C_COMMA,
  QP_C_SEMI,
  QP_C_DOT,
  QP_C_COLON
};

extern const uint8_t qp__sql_cclass[256];
extern const uint8_t qp__sql_lower[256];

/* Byte may continue an unquoted identifier: letters, digits, _, $, >= 0x80. */
static inline bool qp__sql_idchar(unsigned char c) {
  return (uint8_t)(qp__sql_cclass[c] - QP_C_IDENT) <= (uint8_t)(QP_C_DOLLAR - QP_C_IDENT);
}

/* Reads the token at or after `pos` (white space skipped) into *t and returns
 * the position after it. At the end, t->type is QP_T_EOF and the result is len. */
size_t qp__sql_lex(qp_dialect d, const char *s, size_t len, size_t pos, qp_tok *t);

/* Like qp__sql_lex but skips comments. */
static inline size_t qp__sql_lex_sig(qp_dialect d, const char *s, size_t len, size_t pos,
                                     qp_tok *t) {
  do {
    pos = qp__sql_lex(d, s, len, pos, t);
  } while (t->type == QP_T_COMMENT);
  return pos;
}

/* ---- keywords ----------------------------------------------------------
 * Only words the normalizer, splitter or classifier treat specially. */
typedef enum qp_kw {
  QP_KW_NONE = 0,
#define QP_KW_LIST(X)                                                                           \
  X(ABORT, "abort", 1) X(ALL, "all", 1) X(ALTER, "alter", 1) X(ANALYZE, "analyze", 1)           \
  X(AND, "and", 1) X(ANY, "any", 1) X(ARRAY, "array", 0) X(AS, "as", 1) X(ASC, "asc", 1)         \
  X(ATOMIC, "atomic", 1) X(ATTACH, "attach", 1) X(BEGIN, "begin", 1) X(BETWEEN, "between", 1)    \
  X(BY, "by", 1) X(CALL, "call", 1) X(CASE, "case", 1) X(CHECKPOINT, "checkpoint", 1)           \
  X(CLUSTER, "cluster", 1) X(COMMENT, "comment", 1) X(COMMIT, "commit", 1)                      \
  X(CONCURRENTLY, "concurrently", 1) X(CONFLICT, "conflict", 1) X(COPY, "copy", 1)              \
  X(CREATE, "create", 1) X(CROSS, "cross", 1) X(CURRENT_DATE, "current_date", 0)               \
  X(CURRENT_TIME, "current_time", 0) X(CURRENT_TIMESTAMP, "current_timestamp", 0)             \
  X(DEALLOCATE, "deallocate", 1) X(DECLARE, "declare", 1) X(DEFAULT, "default", 0)              \
  X(DELETE, "delete", 1) X(DESC, "desc", 1) X(DETACH, "detach", 1) X(DISCARD, "discard", 1)     \
  X(DISTINCT, "distinct", 1) X(DO, "do", 1) X(DROP, "drop", 1) X(ELSE, "else", 1)               \
  X(END, "end", 0) X(ESCAPE, "escape", 1) X(EXCEPT, "except", 1) X(EXCLUSIVE, "exclusive", 1)   \
  X(EXECUTE, "execute", 1) X(EXISTS, "exists", 1) X(EXPLAIN, "explain", 1) X(FALSE, "false", 0) \
  X(FETCH, "fetch", 1) X(FILTER, "filter", 1) X(FOR, "for", 1) X(FOREIGN, "foreign", 1)         \
  X(FROM, "from", 1) X(FULL, "full", 1) X(FUNCTION, "function", 1) X(GLOB, "glob", 1)           \
  X(GRANT, "grant", 1) X(GROUP, "group", 1) X(HAVING, "having", 1) X(IF, "if", 1)               \
  X(ILIKE, "ilike", 1) X(IMMEDIATE, "immediate", 1) X(IN, "in", 1) X(INDEX, "index", 1)         \
  X(INNER, "inner", 1) X(INSERT, "insert", 1) X(INTERSECT, "intersect", 1) X(INTO, "into", 1)   \
  X(IS, "is", 1) X(ISNULL, "isnull", 0) X(JOIN, "join", 1) X(KEY, "key", 1)                     \
  X(LATERAL, "lateral", 1) X(LIKE, "like", 1) X(LIMIT, "limit", 1) X(LISTEN, "listen", 1)       \
  X(LOAD, "load", 1) X(LOCALTIME, "localtime", 0) X(LOCALTIMESTAMP, "localtimestamp", 0)        \
  X(LOCK, "lock", 1) X(MATCH, "match", 1) X(MATERIALIZED, "materialized", 1)                    \
  X(MERGE, "merge", 1) X(NATURAL, "natural", 1) X(NO, "no", 1) X(NOT, "not", 1)                 \
  X(NOTIFY, "notify", 1) X(NOTNULL, "notnull", 0) X(NULL, "null", 0) X(NULLS, "nulls", 1)       \
  X(OFFSET, "offset", 1) X(ON, "on", 1) X(ONLY, "only", 1) X(OR, "or", 1) X(ORDER, "order", 1)  \
  X(OUTER, "outer", 1) X(OVER, "over", 1) X(PARTITION, "partition", 1) X(PRAGMA, "pragma", 1)   \
  X(PREPARE, "prepare", 1) X(PREPARED, "prepared", 1) X(RECURSIVE, "recursive", 1)              \
  X(REFRESH, "refresh", 1) X(REGEXP, "regexp", 1) X(REINDEX, "reindex", 1)                      \
  X(RELEASE, "release", 1) X(RENAME, "rename", 1) X(REPLACE, "replace", 0) X(RESET, "reset", 1) \
  X(RETURN, "return", 1) X(RETURNING, "returning", 1) X(REVOKE, "revoke", 1)                    \
  X(ROLLBACK, "rollback", 1) X(ROWS, "rows", 1) X(SAVEPOINT, "savepoint", 1)                    \
  X(SECURITY, "security", 1) X(SELECT, "select", 1) X(SET, "set", 1) X(SHARE, "share", 1)       \
  X(SHOW, "show", 1) X(SIMILAR, "similar", 1) X(SOME, "some", 1) X(START, "start", 1)           \
  X(TABLE, "table", 1) X(TEMP, "temp", 1) X(TEMPORARY, "temporary", 1) X(THEN, "then", 1)       \
  X(TO, "to", 1) X(TRANSACTION, "transaction", 1) X(TRIGGER, "trigger", 1) X(TRUE, "true", 0)   \
  X(TRUNCATE, "truncate", 1) X(UNION, "union", 1) X(UNIQUE, "unique", 1)                        \
  X(UNLISTEN, "unlisten", 1) X(UNLOGGED, "unlogged", 1) X(UPDATE, "update", 1)                  \
  X(USING, "using", 1) X(VACUUM, "vacuum", 1) X(VALUES, "values", 1) X(VIEW, "view", 1)         \
  X(WHEN, "when", 1) X(WHERE, "where", 1) X(WINDOW, "window", 1) X(WITH, "with", 1)             \
  X(WITHIN, "within", 1)
#define QP_KW_ENUM_(id, text, op) QP_KW_##id,
  QP_KW_LIST(QP_KW_ENUM_)
#undef QP_KW_ENUM_
  QP_KW_COUNT_
} qp_kw;

typedef struct qp_kw_entry {
  const char *text; /* lower case */
  uint8_t len;
  uint8_t op; /* an expression starts after it */
} qp_kw_entry;
extern const qp_kw_entry qp__sql_kw_table[QP_KW_COUNT_];

/* The keyword for s[0..n) (any case), or QP_KW_NONE. */
qp_kw qp__sql_keyword(const char *s, size_t n);
/* True for keywords after which an expression starts (a sign there is unary,
 * and a '(' after them is not a call). */
static inline bool qp__sql_kw_operator(qp_kw kw) {
  return kw > QP_KW_NONE && kw < QP_KW_COUNT_ && qp__sql_kw_table[kw].op;
}

/* Appends s[0..n) to the NUL-terminated string in dst[0..cap), lower-cased
 * (ASCII only) when `lower`; used for table names. Returns false, leaving dst
 * unchanged, when it would not fit. */
bool qp__sql_copy_name(char *dst, size_t cap, const char *s, size_t n, bool lower);

/* ---- list blocks (normalize_list.c) --------------------------------------
 * One bit per byte of a 64-byte block, per class of byte, as used to skip
 * the bodies of literal lists. Exposed so that tests can check the SSE2
 * classifier against its scalar twin. */
typedef struct qp_sql_blk_classes {
  uint64_t digit, dot, exp, sign, comma, space, dollar, quote, lparen, rparen;
  uint64_t t, r, u, f, a, l, s; /* letters of TRUE and FALSE, either case */
  uint64_t x, bn, amp, bslash;  /* string prefixes X B N U& (either case), '\\' */
} qp_sql_blk_classes;
/* Classifies p[0..64) with implementation `impl`: 0 byte by byte, 1 SSE2,
 * 2 AVX-512BW. Returns false when this build or CPU lacks that one. */
bool qp__sql_blk_classes(const char *p, int impl, qp_sql_blk_classes *m);

/* ---- sample redaction (redact.c) ----------------------------------------
 * The default redaction set of sample statements (described at the top of
 * redact.c and in docs/profiles.md): a copy of sql[0..len), NUL-terminated,
 * allocated with `hooks`, with card numbers, e-mail addresses and the
 * values of secret-named columns replaced by '?'; NULL on out-of-memory. */
char *qp__sql_redact(qp_dialect d, const char *sql, size_t len, const qp_hooks *hooks);

/* ---- user rules (rules.c) ----------------------------------------------
 * PCRE2 rewrites of unquoted identifiers, compiled once with JIT. */
typedef struct qp_rules qp_rules;
qp_status qp__rules_new(qp_rules **out, const char *const *rules, size_t nrules,
                        const qp_hooks *hooks, char *errbuf, size_t errlen);
void qp__rules_free(qp_rules *r);
/* Rewrites word[0..n) with every rule in order into buf[0..cap) and returns
 * the new length; returns n with buf holding the word unchanged when no rule
 * matched or a result would not fit in cap. Allocation-free in steady state:
 * match data comes from a small per-normalizer pool. */
size_t qp__rules_apply(const qp_rules *r, const char *word, size_t n, char *buf, size_t cap);

#endif
