/*
 * store: the transactional record store shared by every worker process. Records are JSON
 * objects under byte-string keys in a fixed set of tables. One implementation, store_bdb.c
 * (Berkeley DB 5.3 transactional data store).
 *
 * Lookups return STORE_FOUND (1), STORE_NOTFOUND (0) or a negative error, and set their
 * out-pointer only when found. STORE_RETRY means the transaction lost a deadlock or timed
 * out on a lock and must be aborted and run again (store_run does that); STORE_FATAL means the
 * environment needs recovery: answer 503 and let the worker exit.
 */
#ifndef OTLOGIN_STORE_H
#define OTLOGIN_STORE_H

#include <jansson.h>
#include <stddef.h>

enum store_table {
	TBL_CLIENTS,  /* client_id -> client record */
	TBL_USERS,    /* user_id -> user record */
	TBL_USER_IDX, /* "email:<addr>" / "phone:<e164>" / "username:<name>" -> {"user_id"} */
	TBL_CODES,    /* hex HMAC of (client, identifier) -> pending passcode */
	TBL_COUNTERS, /* failure counters, lockouts and rate-limit windows */
	TBL_SESSIONS, /* hex HMAC of session id -> session */
	TBL_REFRESH,  /* hex HMAC of refresh token -> refresh token record */
	TBL_KEYS,     /* kid -> signing key (private, 0600 files only) */
	TBL_COUNT
};

enum store_rc {
	STORE_FOUND = 1,
	STORE_NOTFOUND = 0,
	STORE_ERR = -1,
	STORE_RETRY = -2,
	STORE_FATAL = -3
};

struct store;
struct store_txn;

/*
 * Open (with create != 0: create, mode 0700 directory / 0600 files) the environment in dir,
 * with recovery when a previous process died. Returns a new handle or NULL (logged).
 */
struct store *store_open(const char *dir, unsigned cache_mb, int create);
void store_close(struct store *s);

/* Begin a transaction. Returns 0 or a negative store_rc. */
int store_begin(struct store *s, struct store_txn **t);
/* Commit durably (synchronous log flush). Returns 0 or a negative store_rc. The txn is gone. */
int store_commit(struct store_txn *t);
/* Abort; the txn is gone. NULL is fine. */
void store_abort(struct store_txn *t);

/*
 * Get the record under key. for_update != 0 takes a write lock at once (DB_RMW) so that a
 * read-modify-write cannot deadlock on lock upgrade. On STORE_FOUND *out is a new reference.
 */
int store_get(struct store_txn *t, enum store_table tbl, const void *key, size_t klen, json_t **out,
	      int for_update);
/* Insert or replace. Returns 0 or a negative store_rc. */
int store_put(struct store_txn *t, enum store_table tbl, const void *key, size_t klen, json_t *val);
/* Delete. Returns STORE_FOUND, STORE_NOTFOUND or a negative store_rc. */
int store_del(struct store_txn *t, enum store_table tbl, const void *key, size_t klen);

/*
 * Call fn(key, klen, val (borrowed), arg) for each record of tbl in key order, starting at
 * the first key >= start (NULL: from the beginning). fn returns 0 to go on, 1 to stop, or a
 * negative store_rc to fail. Returns 0 or the negative store_rc.
 */
int store_each(struct store_txn *t, enum store_table tbl, const void *start, size_t startlen,
	       int (*fn)(const void *key, size_t klen, json_t *val, void *arg), void *arg);

/*
 * Run fn(txn, arg) in a transaction: commit when it returns >= 0, abort otherwise, and run it
 * again (a bounded number of times) when it or the commit returned STORE_RETRY. fn must
 * not have side effects outside the store, since it may run more than once.
 * Returns fn's result after a successful commit, or a negative store_rc.
 */
int store_run(struct store *s, int (*fn)(struct store_txn *t, void *arg), void *arg);

/*
 * A transaction function that refuses (an outcome the caller reports, not a store error) but
 * must not commit what it wrote returns STORE_REFUSE(outcome); store_run aborts and returns it
 * unchanged, and store_refused() recovers the outcome (or -1 when rc is not a refusal).
 */
#define STORE_REFUSE(outcome) (-1000 - (outcome))
static inline int store_refused(int rc)
{
	return rc <= -1000 ? -(rc + 1000) : -1;
}

/* Checkpoint and remove unneeded log files when due (cheap when not). */
void store_maintain(struct store *s);

/* 1 when the environment answers a read, else 0 (for /health). */
int store_ping(struct store *s);

/* 1 once a STORE_FATAL was seen: the process must stop using the environment. */
int store_failed(const struct store *s);

#endif
