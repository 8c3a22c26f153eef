/*
 * qprof: where database time goes. The only header applications include.
 *
 * Areas: status codes (status.h), hooks and versions (core.h), options
 * (config.h), SQL normalization (sql.h), profiles and stores (profile.h,
 * store.h), PostgreSQL server logs into a profile (ingest.h), reports over a
 * store (report.h), statement parameters and results
 * (result.h), the connection pool (pool.h), the SELECT result cache
 * (cache.h), the index advisor (advise.h).
 */
#ifndef QPROF_QPROF_H
#define QPROF_QPROF_H

#include "qprof/version.h"
#include "export.h"
#include "status.h"
#include "core.h"
#include "config.h"
#include "sql.h"
#include "profile.h"
#include "store.h"
#include "report.h"
#include "segment.h"
#include "ingest.h"
#include "result.h"
#include "pool.h"
#include "cache.h"
#include "advise.h"

#endif
