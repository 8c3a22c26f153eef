/*
 * QP_EXPORT marks the symbols that are qprof's ABI. The library is built with
 * hidden visibility, so anything not marked stays private to it.
 */
#ifndef QPROF_EXPORT_H
#define QPROF_EXPORT_H

#if defined(QP_BUILDING_LIBRARY) && defined(__GNUC__)
#define QP_EXPORT __attribute__((visibility("default")))
#else
#define QP_EXPORT
#endif

#if defined(__GNUC__)
#define QP_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define QP_PRINTF(fmt, args)
#endif

#endif
