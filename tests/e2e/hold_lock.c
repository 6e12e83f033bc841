/*
 * hold_lock DB_DIR TABLE KEY: join otlogin's database environment, take the write lock on one
 * record (store_get for update, as a read-modify-write does) in a transaction, print "held" and
 * keep it until stdin reaches end of file; then abort and exit 0. For the e2e tests of lock
 * conflicts (test_store_conflicts.py): a live process holding a lock, as a long transaction of
 * another worker would. TABLE is a number of enum store_table (store.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "log.h"
#include "store.h"

int main(int argc, char **argv)
{
	struct store *s;
	struct store_txn *t = NULL;
	json_t *rec = NULL;
	char buf[256];
	int table, rc;

	if (argc != 4 || (table = atoi(argv[2])) < 0 || table >= TBL_COUNT) {
		fprintf(stderr, "usage: hold_lock DB_DIR TABLE KEY\n");
		return 2;
	}
	log_init("hold_lock", LOG_LEVEL_INFO);
	if (crypto_init() != 0 || (s = store_open(argv[1], 4, 0)) == NULL)
		return 1;
	if ((rc = store_begin(s, &t)) != 0 ||
	    (rc = store_get(t, (enum store_table)table, argv[3], strlen(argv[3]), &rec, 1)) < 0) {
		fprintf(stderr, "hold_lock: store error %d\n", rc);
		store_abort(t);
		store_close(s);
		return 1;
	}
	printf("held %s\n", rc == STORE_FOUND ? "found" : "notfound");
	fflush(stdout);
	while (fgets(buf, sizeof(buf), stdin) != NULL)
		;
	json_decref(rec);
	store_abort(t);
	store_close(s);
	return 0;
}
