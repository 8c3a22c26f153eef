/*
 * What other parts of the library (the cache, the advisor) may do on a
 * lease besides the public calls: run their own statements without them
 * showing up in the user's profile, ask for a plan, and see what the
 * backend can do. Private to the library.
 */
#ifndef QPROF_LEASE_H
#define QPROF_LEASE_H

#include "backend/backend.h"
#include "qprof/pool.h"

/* qp_conn_exec for the library's own statements: run, timed by no one,
 * never recorded into the profile nor logged as slow, and not counted in
 * the pool's statement counters. Session-change tracking still applies (a
 * SET here is reset on release like any other). Errors as qp_conn_exec. */
qp_status qp__conn_exec_quiet(qp_conn *c, const char *sql, const qp_param *params,
                              size_t nparams, qp_result **out);

/* The plan of one statement (qp__explain_opts in backend.h), never
 * recorded; with o->analyze the statement runs inside a transaction or
 * savepoint that is rolled back. *out is freed with qp__conn_plan_free.
 * Errors: as qp_conn_exec (the lease's message and SQLSTATE tell why). */
qp_status qp__conn_explain(qp_conn *c, const char *sql, const qp_param *params, size_t nparams,
                           const qp__explain_opts *o, qp__plan *out);
void qp__conn_plan_free(qp_conn *c, qp__plan *plan);

/* The lease's backend: its dialect and capabilities (QP__CAP_*). */
const qp__backend_ops *qp__conn_ops(const qp_conn *c);

#endif
