/*
 * THE options table. Each row: X(id, name, type, default, min, max, unit,
 * doc). Rows are appended as modules need them; the environment variable
 * name is derived (QPROF_ + upper-cased name, dots to underscores). `id`
 * names the row inside the library (QP__OPT_<id>, see internal.h), so that
 * code reading an option by a misspelt name, or with the wrong type, does
 * not compile.
 */
#define QP_OPTIONS_TABLE(X)                                                                        \
  X(STORE, "store", QP_OPT_STRING, "qprof.db", 0, 0, "",                                           \
    "Profile store: a path to an SQLite file (created 0600), or a postgresql:// DSN")              \
  X(DIALECT, "dialect", QP_OPT_STRING, "postgres", 0, 0, "",                                       \
    "SQL dialect for normalization when it cannot be inferred: postgres or sqlite")                \
  X(RULES, "rules", QP_OPT_STRING, "", 0, 0, "",                                                   \
    "Extra normalization rules PATTERN=REPLACEMENT (PCRE2) applied to identifiers, one per line")  \
  X(IGNORE, "ignore", QP_OPT_STRING, "", 0, 0, "",                                                 \
    "PCRE2 pattern on the normalized text; matching queries are not recorded")                     \
  X(SAMPLE, "sample", QP_OPT_BOOL, "false", 0, 0, "",                                              \
    "Keep one sample statement with its literals per fingerprint (after redaction)")               \
  X(REDACT, "redact", QP_OPT_STRING, "", 0, 0, "",                                                 \
    "Rules PATTERN=REPLACEMENT (PCRE2) applied to samples after the default redaction, one per "   \
    "line; a line '-defaults' turns the default redaction off")                                     \
  X(SLOW_MS, "slow_ms", QP_OPT_DOUBLE, "100", 0, 86400000, "ms",                                   \
    "Queries slower than this (strictly), failed ones too with their error code, are logged "    \
    "through the log callback with their fingerprint; 0 turns the log off")                       \
  X(FLUSH_MS, "flush_ms", QP_OPT_INT, "1000", 10, 3600000, "ms",                                   \
    "How often recorded statistics are flushed to the store")                                      \
  X(BUCKET_S, "bucket_s", QP_OPT_INT, "60", 1, 86400, "s", "Width of one statistics time bucket")  \
  X(LOG, "log", QP_OPT_STRING, "", 0, 0, "",                                                       \
    "Where the shim writes diagnostics: a file path or 'stderr'; empty means nowhere")             \
  X(RUN_DIR, "run_dir", QP_OPT_STRING, "", 0, 0, "",                                               \
    "Run directory (0700) the shim records segments into; set by qprof run, read by qprof collect") \
  X(SEGMENT_MB, "segment_mb", QP_OPT_INT, "64", 1, 4095, "MB",                                     \
    "Size of one process's segment file (sparse); statements beyond it count as dropped")          \
  X(CLOCK, "clock", QP_OPT_STRING, "auto", 0, 0, "",                                               \
    "Clock for durations: auto (the TSC when the kernel keeps time with it) or monotonic")         \
  X(POOL_MIN_SIZE, "pool.min_size", QP_OPT_INT, "0", 0, 10000, "", "Connections the pool keeps open when idle") \
  X(POOL_MAX_SIZE, "pool.max_size", QP_OPT_INT, "8", 1, 10000, "", "Most connections the pool opens at once") \
  X(POOL_ACQUIRE_TIMEOUT_MS, "pool.acquire_timeout_ms", QP_OPT_INT, "30000", 0, 86400000, "ms",    \
    "How long an acquire waits for a free connection before QP_EXHAUSTED")                         \
  X(POOL_CONNECT_TIMEOUT_MS, "pool.connect_timeout_ms", QP_OPT_INT, "5000", 1, 86400000, "ms",     \
    "How long one connection attempt may take")                                                    \
  X(POOL_MAX_LIFETIME_MS, "pool.max_lifetime_ms", QP_OPT_INT, "1800000", 0, 864000000, "ms",       \
    "Connections older than this (minus up to 2.5% jitter) are closed when released; 0 = never")   \
  X(POOL_IDLE_TIMEOUT_MS, "pool.idle_timeout_ms", QP_OPT_INT, "600000", 0, 864000000, "ms",        \
    "Idle connections above min_size are closed after this long; 0 = never")                       \
  X(POOL_VALIDATION_MS, "pool.validation_ms", QP_OPT_INT, "500", 0, 86400000, "ms",                \
    "A connection idle for longer than this is checked before it is handed out")                   \
  X(POOL_LEAK_MS, "pool.leak_ms", QP_OPT_INT, "0", 0, 86400000, "ms",                              \
    "Log a connection held longer than this, naming its holder; 0 = off")                          \
  X(POOL_RESET, "pool.reset", QP_OPT_STRING, "auto", 0, 0, "",                                     \
    "Session reset on release: auto (only what changed), always, or never") \
  X(ADVISE_STATEMENT_TIMEOUT_MS, "advise.statement_timeout_ms", QP_OPT_INT, "10000", 1, 86400000, "ms", \
    "statement_timeout of every transaction the index advisor opens")                              \
  X(ADVISE_LOCK_TIMEOUT_MS, "advise.lock_timeout_ms", QP_OPT_INT, "1000", 1, 86400000, "ms",       \
    "lock_timeout of every transaction the index advisor opens")                                   \
  X(ADVISE_MIN_ROWS, "advise.min_rows", QP_OPT_INT, "10000", 0, 1000000000000, "",                 \
    "Tables with fewer rows get no index advice (a scan of them is cheap)")                       \
  X(HOST, "host", QP_OPT_STRING, "", 0, 0, "",                                                     \
    "Host name statements are recorded under (containers); empty = the machine's name")            \
  X(PIPELINE_FLUSH, "pipeline_flush", QP_OPT_BOOL, "false", 0, 0, "",                              \
    "Shim: after each query a program sends in libpq pipeline mode, ask the server for its "       \
    "results at once (PQsendFlushRequest), so that each query is charged by the server's order "  \
    "of work; costs the server a write per query")
