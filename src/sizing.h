/*
 * sizing: how big the Berkeley DB cache ([server] db_cache_mb) should be for a database, from
 * the size of its tables. A login or a refresh reads and writes pages at random places in
 * users, user_idx, sessions and refresh (their keys are user ids and keyed hashes), so the
 * requests keep their speed as the tables grow only while the whole tables fit in the cache
 * (bench/README.md, "Scale", measures it). otloginctl db size prints the report.
 */
#ifndef OTLOGIN_SIZING_H
#define OTLOGIN_SIZING_H

#include <jansson.h>
#include <stdint.h>

#include "store.h"

/* The cache's size over the tables' (page overhead and room to grow), in percent. */
#define SIZING_HEADROOM_PCT 125
/* The largest db_cache_mb the configuration takes and the environment can be made with. */
#define SIZING_MAX_MB 65536

/*
 * The db_cache_mb that holds data_bytes of tables: data_bytes × SIZING_HEADROOM_PCT / 100 in
 * MiB, rounded up, at least min_mb (the default) and at most SIZING_MAX_MB.
 */
unsigned sizing_cache_mb(uint64_t data_bytes, unsigned min_mb);

/*
 * The report for the environment s in db_dir, whose configuration asks for configured_mb:
 * each table's file size, their sum, the cache the environment has and its hit rate since it
 * was created, the records of users and refresh, and the recommended db_cache_mb (with
 * per-million figures and what to do when the cache is smaller). Returns a new reference, or
 * NULL when the files or the environment cannot be read (logged).
 */
json_t *sizing_report(struct store *s, const char *db_dir, unsigned configured_mb);

#endif
