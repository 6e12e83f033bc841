/* store_mem.c: store.h in memory for fuzz_records, and what the fuzzer sets in it. */
#ifndef OTLOGIN_STORE_MEM_H
#define OTLOGIN_STORE_MEM_H

#include "store.h"

/* Every lookup in tbl of a key never written (or deleted) finds text (NULL: none). */
void store_mem_set_default(struct store *s, enum store_table tbl, const char *text);
/* Store text as it is (any bytes, JSON or not) under key. */
void store_mem_put_text(struct store *s, enum store_table tbl, const char *key, const char *text);
/* Remember the records now stored; store_mem_reset goes back to them and drops the defaults. */
void store_mem_mark_baseline(struct store *s);
void store_mem_reset(struct store *s);

#endif
