/*
 * purge_rules: every flow's rule for its records without "exp" (store_purge_rule), in one
 * call, for each process that purges: the maintainer, a worker doing its own upkeep and a
 * site's replication process. A process that purges without them would keep those records
 * for good, so a new rule goes here, once.
 */
#ifndef OTLOGIN_PURGE_RULES_H
#define OTLOGIN_PURGE_RULES_H

#include "store.h"

/* Register the rules of link.c, session.c and lockout.c with s. 0, or -1 (logged). */
int purge_rules_register(struct store *s);

#endif
