/*
 * store_bdb: the store on a Berkeley DB 5.3 transactional environment shared by all worker
 * processes: the tables, the transactions and the purge. Opening the environment, recovering
 * it after a crash and reopening it in place are in store_recover.c, the watchdog in
 * store_watchdog.c.
 *
 * Transactions never wait for locks (DB_TXN_NOWAIT): a conflict is retried here, and after
 * repeated conflicts (and every few seconds) live processes run failchk too, so a dead
 * worker's locks do not wait for the web server to start its replacement. A process that died
 * holding a latch can leave others blocked on it for good (Debian's build uses plain
 * process-shared pthread mutexes, which do not notice an owner's death): the optional watchdog
 * (store_watchdog) ends such a process, and the environment is recovered around it.
 */
#include "store.h"

#include <db.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "clock.h"
#include "crypto.h"
#include "log.h"
#include "metrics.h"
#include "store_bdb_int.h"

/*
 * Transactions never wait for a lock (DB_TXN_NOWAIT): a conflict is retried here, with a
 * growing pause, for at most RUN_BUDGET_MS. Waiting inside Berkeley DB is what a killed process
 * must not be doing: failchk then destroys the condition variable it waited on, which glibc
 * (>= 2.25) blocks on for good; and a lone waiter on a dead process's lock is never woken.
 */
#define RUN_BUDGET_MS 8000
#define RUN_MAX_PAUSE_US 20000
/* After this many conflicts in a row, and every RUN_FAILCHK_EVERY after, run failchk. */
#define RUN_FAILCHK_AFTER 8
#define RUN_FAILCHK_EVERY 32
/* A transaction interrupted by a recovery is run again on the reopened environment. */
#define REOPEN_ATTEMPTS 3
/* A checkpoint once this much log was written, or this many minutes passed. */
#define CHECKPOINT_KB 1024
#define CHECKPOINT_MIN 1
/* A replicated site's longest wait for a moment without a transaction to checkpoint in. */
#define CHECKPOINT_QUIET_MAX_S 600
#define FAILCHK_EVERY_S 5
/* Purge: one pass over the tables every PURGE_EVERY_S (one worker does it), in batches. */
#define PURGE_EVERY_S 600
#define PURGE_CHECK_S 60
#define PURGE_BATCH 200
#define PURGE_BATCHES_PER_CALL 5
#define PURGE_KEY "store:purge"

static const char *const table_files[TBL_COUNT] = {
    [TBL_CLIENTS] = "clients.db", [TBL_USERS] = "users.db",	  [TBL_USER_IDX] = "user_idx.db",
    [TBL_CODES] = "codes.db",	  [TBL_COUNTERS] = "counters.db", [TBL_SESSIONS] = "sessions.db",
    [TBL_REFRESH] = "refresh.db", [TBL_KEYS] = "keys.db",
};

const char *store_table_file(enum store_table tbl)
{
	return (unsigned)tbl < TBL_COUNT ? table_files[tbl] : NULL;
}

/* The tables whose records expire, in the order a purge pass visits them. */
static const enum store_table purge_tables[] = {TBL_CODES, TBL_REFRESH, TBL_SESSIONS, TBL_COUNTERS};
#define PURGE_TABLES (int)(sizeof(purge_tables) / sizeof(purge_tables[0]))

int bdb_map_rc(struct store *s, int rc, const char *what)
{
	switch (rc) {
	case 0:
		return 0;
	case DB_NOTFOUND:
		return STORE_NOTFOUND;
	case DB_LOCK_NOTGRANTED:
		/* A timeout of an operation that waited (not a transaction's: they do not). */
		s->lock_timedout = 1;
		return STORE_RETRY;
	case DB_LOCK_DEADLOCK:
		/* With DB_TXN_NOWAIT: the lock is taken (by a live or a dead process). */
		return STORE_RETRY;
	case DB_REP_HANDLE_DEAD:
		/* A client's rollback or sync replaced the tables: open them again next time. */
		s->tables_dead = 1;
		return STORE_UNAVAILABLE;
	case DB_REP_LOCKOUT:
	case DB_REP_UNAVAIL:
	case DB_REP_JOIN_FAILURE:
		return STORE_UNAVAILABLE;
	case EACCES:
		/* A write on a replication client: this site stopped being the master. */
		if (store_replicated())
			return STORE_UNAVAILABLE;
		log_err("%s: %s", what, db_strerror(rc));
		return STORE_ERR;
	case DB_RUNRECOVERY:
		if (!s->failed)
			log_err("%s: %s: the environment needs recovery", what, db_strerror(rc));
		s->failed = 1;
		return STORE_FATAL;
	default:
		log_err("%s: %s", what, db_strerror(rc));
		return STORE_ERR;
	}
}

int bdb_open_tables(struct store *s, int create)
{
	for (int i = 0; i < TBL_COUNT; i++) {
		DB *db;
		int rc;

		if ((rc = db_create(&db, s->env, 0)) != 0) {
			log_err("db_create: %s", db_strerror(rc));
			return rc == DB_RUNRECOVERY ? bdb_map_rc(s, rc, "db_create") : -1;
		}
		s->db[i] = db;
		if ((rc = db->set_flags(db, DB_CHKSUM)) != 0 ||
		    (rc = db->open(db, NULL, table_files[i], NULL, DB_BTREE,
				   DB_AUTO_COMMIT | (create ? DB_CREATE : 0), 0600)) != 0) {
			/* A replicated site's open can lose a lock to a sync: tables_ready retries.
			 */
			if (rc == DB_LOCK_DEADLOCK || rc == DB_LOCK_NOTGRANTED)
				return STORE_RETRY;
			log_err("opening %s: %s%s", table_files[i], db_strerror(rc),
				rc == ENOENT ? " (run otloginctl init)" : "");
			if (rc == DB_RUNRECOVERY)
				s->failed = 1;
			return -1;
		}
	}
	return 0;
}

static void free_store(struct store *s)
{
	free(s->region);
	free(s->dir);
	free(s->realdir);
	free(s->purge_key);
	free(s);
}

struct store *store_open(const char *dir, unsigned cache_mb, int create)
{
	struct store *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->cache_mb = cache_mb;
	s->create = create;
	s->purge_table = -1;
	if (create) {
		if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
			log_err("mkdir %s: %s", dir, strerror(errno));
			free(s);
			return NULL;
		}
		chmod(dir, 0700);
	}
	s->dir = strdup(dir);
	s->realdir = realpath(dir, NULL);
	watchdog_arm(WD_SLOW_FACTOR);
	if (s->dir == NULL || bdb_open_all(s, create) < 0) {
		watchdog_disarm();
		bdb_drop_handles(s);
		free_store(s);
		return NULL;
	}
	watchdog_disarm();
	s->last_maintain = s->last_failchk = time(NULL);
	watchdog_note_region(s);
	return s;
}

void store_close(struct store *s)
{
	if (s == NULL)
		return;
	/* Closing takes latches too: one a killed process held must not keep this one for good. */
	watchdog_arm(WD_SLOW_FACTOR);
	bdb_drop_handles(s);
	watchdog_disarm();
	free_store(s);
}

/* Close the tables' handles (after a failed open, or when replication replaced the tables). */
static void close_tables(struct store *s)
{
	for (int i = 0; i < TBL_COUNT; i++) {
		if (s->db[i] != NULL)
			s->db[i]->close(s->db[i], 0);
		s->db[i] = NULL;
	}
}

/*
 * The tables' handles, opened when missing: a replicated site opens them only once it may
 * serve (a new client has no tables until it copied the master's), and again after a client's
 * sync or rollback made the old handles dead. 0 or a negative store_rc.
 *
 * And again when the site became the master, or a client that caught up with a new one, since
 * they were opened (rep_tables_epoch): a master writes only through handles opened while it is
 * one. Berkeley DB tells the handles that a client's internal init replaced (the files, and so
 * their pages in the cache) by a time stamp of whole seconds: a handle opened in the second in
 * which the init began (a restarted site: recovery, open, init) is not told, and goes on
 * reading the replaced file's pages. A write through it logs a change to a page the group's
 * log has moved past, and every client fails to apply it.
 */
static int tables_ready(struct store *s)
{
	uint32_t epoch = rep_tables_epoch(s);
	int rc;

	if (s->db[0] != NULL && !s->tables_dead && (epoch == 0 || epoch == s->tables_epoch))
		return 0;
	close_tables(s);
	s->tables_dead = 0;
	s->tables_epoch = epoch;
	if ((rc = bdb_open_tables(s, s->create)) == 0)
		return 0;
	if (!s->failed)
		close_tables(s);
	return s->failed ? STORE_FATAL : rc == STORE_RETRY ? rc : STORE_UNAVAILABLE;
}

int store_begin(struct store *s, struct store_txn **t)
{
	struct store_txn *txn;
	int rc;

	if (s->failed || s->env == NULL)
		return STORE_FATAL;
	if ((rc = rep_gate(s)) < 0 || (rc = tables_ready(s)) < 0)
		return rc;
	txn = calloc(1, sizeof(*txn));
	if (txn == NULL)
		return STORE_ERR;
	txn->s = s;
	rc = s->env->txn_begin(s->env, NULL, &txn->txn, DB_TXN_NOWAIT);
	if (rc != 0) {
		free(txn);
		return bdb_map_rc(s, rc, "txn_begin");
	}
	*t = txn;
	return 0;
}

/*
 * 1 when a recovery has begun replacing the environment this process has open: it removes the
 * region files before it reads the log.
 */
static int region_replaced(const struct store *s)
{
	return s->region != NULL && region_id_differs(s->region, &s->region_id);
}

/*
 * Whether the environment is panicked, that is, whether a recovery has begun: DB_REGISTER's
 * recovery panics it before it waits for live processes and reads the log. Any call that
 * enters the environment answers DB_RUNRECOVERY then; a locker id is about the cheapest.
 */
static int env_panicked(const struct store *s)
{
	u_int32_t id;
	int rc = s->env->lock_id(s->env, &id);

	if (rc == 0)
		s->env->lock_id_free(s->env, id);
	return rc == DB_RUNRECOVERY;
}

int store_commit(struct store_txn *t)
{
	struct store *s = t->s;
	int rc;

	rep_commit_begin();
	/* Flags 0: a synchronous, durable commit (no no-sync flag anywhere in the environment). */
	rc = t->txn->commit(t->txn, 0);
	free(t);
	/* Committed here but not acknowledged by a quorum: a failover may undo it. */
	if (rc == 0 && rep_commit_failed()) {
		log_warn("commit: not acknowledged by a quorum of the group; outcome unknown");
		return STORE_UNAVAILABLE;
	}
	/*
	 * Berkeley DB's DB_REGISTER window: a commit can be written after a recovery (started by
	 * another process) has read the log, and be lost. Such a commit returns after that
	 * recovery panicked the environment (and maybe removed its region files): its outcome is
	 * unknown, and the caller must not answer as if it were stored. A commit that returns
	 * before the panic was flushed before the recovery reads the log.
	 */
	if (rc == 0 && (region_replaced(s) || env_panicked(s))) {
		log_err("commit: the environment was recovered meanwhile; outcome unknown");
		s->failed = 1;
		return STORE_FATAL;
	}
	return bdb_map_rc(s, rc, "commit");
}

void store_abort(struct store_txn *t)
{
	if (t == NULL)
		return;
	t->txn->abort(t->txn);
	free(t);
}

static void set_key(DBT *k, const void *key, size_t klen)
{
	memset(k, 0, sizeof(*k));
	k->data = (void *)key;
	k->size = (u_int32_t)klen;
}

int store_get(struct store_txn *t, enum store_table tbl, const void *key, size_t klen, json_t **out,
	      int for_update)
{
	DBT k, d;
	json_t *val;
	int rc;

	set_key(&k, key, klen);
	memset(&d, 0, sizeof(d));
	d.flags = DB_DBT_MALLOC;
	rc = t->s->db[tbl]->get(t->s->db[tbl], t->txn, &k, &d, for_update ? DB_RMW : 0);
	if (rc != 0)
		return bdb_map_rc(t->s, rc, table_files[tbl]);
	val = json_loadb(d.data, d.size, 0, NULL);
	crypto_wipe(d.data, d.size);
	free(d.data);
	if (val == NULL) {
		log_err("%s: a record is not valid JSON", table_files[tbl]);
		return STORE_ERR;
	}
	*out = val;
	return STORE_FOUND;
}

int store_put(struct store_txn *t, enum store_table tbl, const void *key, size_t klen, json_t *val)
{
	DBT k, d;
	char *text = json_dumps(val, JSON_COMPACT);
	int rc;

	if (text == NULL)
		return STORE_ERR;
	set_key(&k, key, klen);
	memset(&d, 0, sizeof(d));
	d.data = text;
	d.size = (u_int32_t)strlen(text);
	rc = t->s->db[tbl]->put(t->s->db[tbl], t->txn, &k, &d, 0);
	crypto_free_str(text);
	return bdb_map_rc(t->s, rc, table_files[tbl]);
}

int store_del(struct store_txn *t, enum store_table tbl, const void *key, size_t klen)
{
	DBT k;
	int rc;

	set_key(&k, key, klen);
	rc = t->s->db[tbl]->del(t->s->db[tbl], t->txn, &k, 0);
	if (rc == 0)
		return STORE_FOUND;
	return bdb_map_rc(t->s, rc, table_files[tbl]);
}

int store_each(struct store_txn *t, enum store_table tbl, const void *start, size_t startlen,
	       int (*fn)(const void *key, size_t klen, json_t *val, void *arg), void *arg)
{
	DBC *cur;
	DBT k, d;
	int rc, out = 0;
	u_int32_t flag;

	rc = t->s->db[tbl]->cursor(t->s->db[tbl], t->txn, &cur, 0);
	if (rc != 0)
		return bdb_map_rc(t->s, rc, "cursor");
	memset(&k, 0, sizeof(k));
	memset(&d, 0, sizeof(d));
	if (start != NULL) {
		set_key(&k, start, startlen);
		flag = DB_SET_RANGE;
	} else {
		flag = DB_FIRST;
	}
	while ((rc = cur->get(cur, &k, &d, flag)) == 0) {
		json_t *val = json_loadb(d.data, d.size, 0, NULL);
		flag = DB_NEXT;
		if (val == NULL) {
			log_err("%s: a record is not valid JSON", table_files[tbl]);
			out = STORE_ERR;
			break;
		}
		out = fn(k.data, k.size, val, arg);
		json_decref(val);
		if (out != 0)
			break;
	}
	if (rc != 0 && rc != DB_NOTFOUND)
		out = bdb_map_rc(t->s, rc, "cursor get");
	cur->close(cur);
	return out < 0 ? out : 0;
}

int store_count(struct store_txn *t, enum store_table tbl, size_t *n)
{
	DBC *cur;
	DBT k, d;
	int rc;

	*n = 0;
	rc = t->s->db[tbl]->cursor(t->s->db[tbl], t->txn, &cur, DB_READ_COMMITTED);
	if (rc != 0)
		return bdb_map_rc(t->s, rc, "cursor");
	memset(&k, 0, sizeof(k));
	memset(&d, 0, sizeof(d));
	/* Keys only: a zero-length partial read copies none of the record. */
	d.flags = DB_DBT_PARTIAL;
	while ((rc = cur->get(cur, &k, &d, DB_NEXT)) == 0)
		(*n)++;
	cur->close(cur);
	return rc == DB_NOTFOUND ? 0 : bdb_map_rc(t->s, rc, "cursor get");
}

/*
 * A random pause before a retry, growing with the attempts, so that the losers of a conflict
 * do not collide again.
 */
static void backoff(int attempt)
{
	unsigned r, cap = 250u << (attempt < 7 ? attempt : 7), us;

	crypto_random(&r, sizeof(r));
	if (cap > RUN_MAX_PAUSE_US)
		cap = RUN_MAX_PAUSE_US;
	us = cap / 2 + r % (cap / 2 + 1);
	usleep(us);
}

/*
 * Release what dead processes hold (their locks, their open transactions). Cheap: it walks
 * the thread table and asks is_alive only about processes that are in it.
 */
static void run_failchk(struct store *s)
{
	int rc;

	s->lock_timedout = 0;
	s->last_failchk = time(NULL);
	/* Its log records would start replication in a process that must not (rep_log_ok). */
	if (s->failed || s->env == NULL || !rep_log_ok())
		return;
	/* It spins while a live process holds a latch it needs: bounded like a transaction. */
	watchdog_arm(1);
	rc = s->env->failchk(s->env, 0);
	watchdog_disarm();
	if (rc != 0)
		bdb_map_rc(s, rc, "failchk");
}

int store_failchk(struct store *s)
{
	int rc;

	run_failchk(s);
	if (s->failed || s->env == NULL)
		return STORE_FATAL;
	/* A lone waiter's lock timeout is only enforced when some process runs the detector. */
	rc = s->env->lock_detect(s->env, 0, DB_LOCK_EXPIRE, NULL);
	return rc == 0 ? 0 : bdb_map_rc(s, rc, "lock_detect");
}

int store_run(struct store *s, int (*fn)(struct store_txn *t, void *arg), void *arg)
{
	struct timespec start;
	int reopens = 0, conflicts = 0;

	/*
	 * The budget is time since the start, not the pauses' sum: when every attempt is slow
	 * (a loaded machine, valgrind), losers that only counted their pauses retried for minutes
	 * and took the CPU from the transaction that held the lock.
	 */
	clock_gettime(CLOCK_MONOTONIC, &start);

	for (int attempt = 0;; attempt++) {
		struct store_txn *t;
		int rc, result = 0, committed = 0;

		watchdog_arm(1);
		metrics_txn_begin();
		audit_txn_begin();
		rc = store_begin(s, &t);
		if (rc == 0) {
			result = fn(t, arg);
			if (result >= 0) {
				rc = store_commit(t);
				committed = 1;
			} else {
				store_abort(t);
				rc = result;
			}
		}
		watchdog_disarm();
		/* What the attempt noted counts if it committed (throttles: also if refused). */
		metrics_txn_end(committed && rc == 0, store_refused(result) >= 0);
		audit_txn_end(committed && rc == 0, store_refused(result) >= 0);
		if (committed && rc == 0)
			return result;
		/*
		 * A recovery interrupted the transaction before its commit: it is as if it had
		 * aborted, so run it again on the reopened environment. A failed commit is not
		 * retried: whether it reached the log is unknown, and the caller answers 503.
		 */
		if (rc == STORE_FATAL && !committed && reopens++ < REOPEN_ATTEMPTS &&
		    store_reopen(s) == 0)
			continue;
		if (rc != STORE_RETRY)
			return rc;
		/* Held that long, a lock may belong to a killed process: release what they hold. */
		conflicts++;
		metrics_count(METRIC_STORE_RETRIES);
		if (s->lock_timedout || conflicts == RUN_FAILCHK_AFTER ||
		    (conflicts > RUN_FAILCHK_AFTER && conflicts % RUN_FAILCHK_EVERY == 0))
			run_failchk(s);
		if (ms_since(&start) >= RUN_BUDGET_MS)
			break;
		backoff(attempt);
	}
	log_warn("a transaction lost every lock conflict for %d ms", RUN_BUDGET_MS);
	return STORE_RETRY;
}

/* ---- purge -------------------------------------------------------------------------------- */

int store_purge_rule(struct store *s, enum store_table tbl, store_purge_fn fn)
{
	for (int i = 0; i < PURGE_TABLES; i++) {
		if (purge_tables[i] != tbl)
			continue;
		for (int j = 0; j < STORE_PURGE_RULES; j++)
			if (s->purge_rules[tbl][j] == NULL) {
				s->purge_rules[tbl][j] = fn;
				return 0;
			}
	}
	return -1;
}

int store_dead(struct store_txn *t, enum store_table tbl, const void *key, size_t klen,
	       time_t cutoff)
{
	json_t *val, *exp;
	DBT k, d;
	int rc;

	set_key(&k, key, klen);
	memset(&d, 0, sizeof(d));
	d.flags = DB_DBT_MALLOC;
	rc = t->s->db[tbl]->get(t->s->db[tbl], t->txn, &k, &d, 0);
	if (rc == DB_NOTFOUND)
		return 1;
	if (rc != 0)
		return bdb_map_rc(t->s, rc, "purge");
	val = json_loadb(d.data, d.size, 0, NULL);
	free(d.data);
	exp = json_object_get(val, "exp");
	rc = json_is_integer(exp) && json_integer_value(exp) <= (json_int_t)cutoff;
	json_decref(val);
	return rc;
}

/*
 * Whether a record is dead (see store_purge): by its "exp", else by the rules of its table.
 * 1 or 0, or a negative store_rc.
 */
static int purge_dead(struct store *s, DB_TXN *txn, enum store_table tbl, const void *key,
		      size_t klen, json_t *val, time_t cutoff)
{
	struct store_txn t = {s, txn};
	json_t *exp = json_object_get(val, "exp");
	int rc = 0;

	if (json_is_integer(exp))
		return json_integer_value(exp) <= (json_int_t)cutoff;
	for (int i = 0; i < STORE_PURGE_RULES && rc == 0 && s->purge_rules[tbl][i] != NULL; i++)
		rc = s->purge_rules[tbl][i](&t, key, klen, val, cutoff);
	return rc > 0 ? 1 : rc;
}

/* Remember key as the place where the running pass goes on. */
static int purge_save_pos(struct store *s, const void *key, size_t klen)
{
	char *copy = malloc(klen ? klen : 1);
	if (copy == NULL)
		return -1;
	memcpy(copy, key, klen);
	free(s->purge_key);
	s->purge_key = copy;
	s->purge_klen = klen;
	return 0;
}

struct purge_victim {
	char *key;
	size_t klen;
};

/*
 * One transaction of the running pass: look at up to PURGE_BATCH records of the current table
 * after the saved position (a read-committed cursor, so that the scan holds no locks on what
 * it passed), then delete those found dead, each read again with a write lock and judged
 * again, since a worker may have replaced it meanwhile. Moves the position on. Returns the
 * number deleted or a negative store_rc.
 */
static int purge_batch(struct store *s, time_t cutoff)
{
	enum store_table tbl = purge_tables[s->purge_table];
	struct purge_victim victims[PURGE_BATCH];
	DB *db;
	DB_TXN *txn = NULL;
	DBC *cur = NULL;
	DBT k, d;
	int rc, nvictims = 0, seen = 0, deleted = 0, end = 0, dead = 0;
	u_int32_t flag = DB_FIRST;

	if (s->failed || s->env == NULL)
		return STORE_FATAL;
	/* A pass goes on across calls, and this site may have become the master between them. */
	if ((rc = tables_ready(s)) < 0)
		return rc;
	db = s->db[tbl];
	if ((rc = s->env->txn_begin(s->env, NULL, &txn, DB_TXN_NOWAIT)) != 0)
		goto out;
	if ((rc = db->cursor(db, txn, &cur, DB_READ_COMMITTED)) != 0)
		goto out;
	memset(&k, 0, sizeof(k));
	memset(&d, 0, sizeof(d));
	if (s->purge_key != NULL) {
		set_key(&k, s->purge_key, s->purge_klen);
		flag = DB_SET_RANGE;
	}
	while (seen < PURGE_BATCH && (rc = cur->get(cur, &k, &d, flag)) == 0) {
		json_t *val;

		flag = DB_NEXT;
		/* The saved position itself was judged by the previous batch. */
		if (s->purge_key != NULL && k.size == s->purge_klen &&
		    memcmp(k.data, s->purge_key, k.size) == 0)
			continue;
		seen++;
		if (purge_save_pos(s, k.data, k.size) < 0) {
			rc = ENOMEM;
			goto out;
		}
		if (tbl == TBL_COUNTERS && k.size == strlen(PURGE_KEY) &&
		    memcmp(k.data, PURGE_KEY, k.size) == 0)
			continue;
		val = json_loadb(d.data, d.size, 0, NULL);
		if (val == NULL)
			continue; /* not ours to judge */
		dead = purge_dead(s, txn, tbl, k.data, k.size, val, cutoff);
		json_decref(val);
		if (dead < 0)
			goto out;
		if (dead) {
			victims[nvictims].key = malloc(k.size ? k.size : 1);
			if (victims[nvictims].key == NULL) {
				rc = ENOMEM;
				goto out;
			}
			memcpy(victims[nvictims].key, k.data, k.size);
			victims[nvictims++].klen = k.size;
		}
	}
	if (rc == DB_NOTFOUND) {
		end = 1;
		rc = 0;
	}
	cur->close(cur);
	cur = NULL;
	if (rc != 0)
		goto out;
	for (int i = 0; i < nvictims; i++) {
		json_t *val;

		set_key(&k, victims[i].key, victims[i].klen);
		memset(&d, 0, sizeof(d));
		d.flags = DB_DBT_MALLOC;
		rc = db->get(db, txn, &k, &d, DB_RMW);
		if (rc == DB_NOTFOUND) {
			rc = 0;
			continue;
		}
		if (rc != 0)
			goto out;
		val = json_loadb(d.data, d.size, 0, NULL);
		free(d.data);
		dead = val == NULL
			   ? 0
			   : purge_dead(s, txn, tbl, victims[i].key, victims[i].klen, val, cutoff);
		json_decref(val);
		if (dead < 0)
			goto out;
		if (dead && (rc = db->del(db, txn, &k, 0)) != 0 && rc != DB_NOTFOUND)
			goto out;
		rc = 0;
		deleted += dead;
	}
	rc = txn->commit(txn, 0);
	txn = NULL;
	if (rc == 0 && end) {
		free(s->purge_key);
		s->purge_key = NULL;
		if (++s->purge_table >= PURGE_TABLES)
			s->purge_table = -1;
	}
out:
	if (cur != NULL)
		cur->close(cur);
	if (txn != NULL)
		txn->abort(txn);
	for (int i = 0; i < nvictims; i++)
		free(victims[i].key);
	/* A rule's error is a store_rc already. */
	if (dead < 0)
		return dead;
	if (rc != 0)
		return bdb_map_rc(s, rc, "purge");
	s->purged += (unsigned)deleted;
	return deleted;
}

/* Claim this period's pass: 1 when this process should run it, 0 when it is not due. */
static int purge_claim_txn(struct store_txn *t, void *arg)
{
	time_t now = *(const time_t *)arg;
	json_t *v;
	int rc = store_get(t, TBL_COUNTERS, PURGE_KEY, strlen(PURGE_KEY), &v, 1);

	if (rc < 0)
		return rc;
	if (rc == STORE_FOUND) {
		json_int_t next = json_integer_value(json_object_get(v, "next"));
		json_decref(v);
		/* A clock set back by more than a period must not stop the purge for long. */
		if (next > (json_int_t)now && next <= (json_int_t)now + PURGE_EVERY_S)
			return 0;
	}
	v = json_pack("{s:I}", "next", (json_int_t)(now + PURGE_EVERY_S));
	rc = v == NULL ? STORE_ERR : store_put(t, TBL_COUNTERS, PURGE_KEY, strlen(PURGE_KEY), v);
	json_decref(v);
	return rc < 0 ? rc : 1;
}

int store_purge(struct store *s, time_t now)
{
	int total = 0, rc, failures = 0;

	free(s->purge_key);
	s->purge_key = NULL;
	s->purge_table = 0;
	while (s->purge_table >= 0) {
		rc = purge_batch(s, now - STORE_PURGE_GRACE_S);
		if (rc == STORE_RETRY && failures++ < 200) {
			backoff(failures);
			continue;
		}
		if (rc < 0) {
			s->purge_table = -1;
			return rc;
		}
		total += rc;
	}
	return total;
}

/* A bounded step of the periodic purge: starts a pass when due, then a few batches of it. */
static void purge_step(struct store *s, time_t now)
{
	if (s->purge_table < 0) {
		if (now < s->next_purge_check)
			return;
		s->next_purge_check = now + PURGE_CHECK_S;
		if (store_run(s, purge_claim_txn, &now) != 1)
			return;
		s->purge_table = 0;
		s->purged = 0;
		free(s->purge_key);
		s->purge_key = NULL;
	}
	for (int i = 0; i < PURGE_BATCHES_PER_CALL && s->purge_table >= 0; i++) {
		watchdog_arm(1);
		int rc = purge_batch(s, now - STORE_PURGE_GRACE_S);
		watchdog_disarm();
		if (rc < 0)
			return; /* a deadlock or worse: the next call goes on from here */
	}
	if (s->purge_table < 0 && s->purged > 0)
		log_info("purge: %u expired records removed", s->purged);
}

/*
 * The log position of the last checkpoint, 0 when unknown: txn_checkpoint does not say
 * whether it wrote one (it skips when too little happened), so a change here tells.
 */
static uint64_t last_checkpoint(struct store *s)
{
	DB_TXN_STAT *st;
	uint64_t lsn = 0;

	if (s->failed || s->env == NULL || s->env->txn_stat(s->env, &st, 0) != 0)
		return 0;
	lsn = ((uint64_t)st->st_last_ckp.file << 32 | st->st_last_ckp.offset) + 1;
	free(st);
	return lsn;
}

/*
 * Whether a checkpoint now keeps a later rollback of this site's log right. A master whose
 * last transactions no quorum acknowledged is rolled back to the new master's log when it
 * rejoins, and Berkeley DB 5.3 starts that rollback's undo at the latest checkpoint whose
 * checkpoint LSN is before the sync point (__log_backup, env/env_recover.c). A checkpoint
 * written after such a transaction committed, while another transaction begun before the sync
 * point was still active, qualifies, and the first transaction's changes from before its LSN
 * are never undone: they stay in the pages with no commit in the log, and once the site is
 * the master again every client fails at its next change of such a page ("Log sequence
 * error"). A checkpoint taken while no transaction is active has its own position as its
 * checkpoint LSN, never before a sync point it follows. So a replicated site checkpoints only
 * then, and after CHECKPOINT_QUIET_MAX_S without such a moment anyway (said in the log): an
 * unbounded log would be worse. What this look misses, transactions that begin and end
 * between it and the checkpoint's own look at the active transactions, is microseconds long.
 */
static int checkpoint_safe(struct store *s, time_t now)
{
	DB_TXN_STAT *st;
	int quiet;

	if (!store_replicated())
		return 1;
	if (s->env->txn_stat(s->env, &st, 0) != 0)
		return 0;
	quiet = st->st_nactive == 0;
	free(st);
	if (quiet || s->busy_since == 0) {
		s->busy_since = quiet ? 0 : now;
		return quiet;
	}
	if (now - s->busy_since < CHECKPOINT_QUIET_MAX_S)
		return 0;
	log_warn("no moment without a transaction for %lld s: checkpointing anyway",
		 (long long)(now - s->busy_since));
	s->busy_since = 0;
	return 1;
}

int store_maintain_worker(struct store *s)
{
	time_t now = time(NULL);

	if (s->failed || s->env == NULL) {
		store_reopen(s);
		return 0;
	}
	if (s->lock_timedout)
		run_failchk(s);
	if (now == s->last_maintain)
		return 0;
	s->last_maintain = now;
	return 1;
}

void store_maintain_owner(struct store *s)
{
	time_t now = time(NULL);
	uint64_t ckp;
	int rc, wrote;

	if (s->failed || s->env == NULL) {
		store_reopen(s);
		return;
	}
	/* At most once a second: each step is cheap when there is nothing to do. */
	if (now == s->last_owner_step)
		return;
	s->last_owner_step = now;
	if (s->lock_timedout || now - s->last_failchk >= FAILCHK_EVERY_S)
		run_failchk(s);
	/* A replicated site's replication process checkpoints and purges, on the master. */
	if (!rep_maintains())
		return;
	/*
	 * A checkpoint once CHECKPOINT_KB of log was written (or a minute passed): it bounds the
	 * work of a recovery, and DB_LOG_AUTO_REMOVE deletes the log files it made unneeded at
	 * the next file switch, so the log directory stays bounded.
	 */
	if (!s->failed && checkpoint_safe(s, now)) {
		watchdog_arm(WD_SLOW_FACTOR);
		ckp = last_checkpoint(s);
		rc = s->env->txn_checkpoint(s->env, CHECKPOINT_KB, CHECKPOINT_MIN, 0);
		wrote = rc == 0 && ckp != 0 && last_checkpoint(s) != ckp;
		watchdog_disarm();
		if (rc != 0)
			bdb_map_rc(s, rc, "checkpoint");
		else if (wrote)
			metrics_count(METRIC_CHECKPOINTS);
	}
	if (!s->failed)
		purge_step(s, now);
}

void store_maintain(struct store *s)
{
	if (store_maintain_worker(s) == 1)
		store_maintain_owner(s);
}

int store_maintainer_lock(struct store *s)
{
	int fd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	/* The directory itself, not a file in it: the environment's files stay what they were. */
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static int ping_fn(struct store_txn *t, void *arg)
{
	json_t *v;
	int rc = store_get(t, TBL_KEYS, "ping", 4, &v, 0);
	if (rc == STORE_FOUND)
		json_decref(v);
	return rc < 0 ? rc : 0;
}

int store_ping(struct store *s)
{
	return store_run(s, ping_fn, NULL) == 0;
}

int store_failed(const struct store *s)
{
	return s->failed;
}

unsigned store_reopens(const struct store *s)
{
	return s->reopens;
}

int store_stats(struct store *s, struct metrics_bdb *out)
{
	DB_TXN_STAT *txn = NULL;
	DB_LOCK_STAT *lock = NULL;
	DB_MPOOL_STAT *mp = NULL;
	DB_LOG_STAT *log = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	if (s->failed || s->env == NULL)
		return -1;
	/* No DB_STAT_CLEAR: these are counters since the environment's regions were made. */
	rc = s->env->txn_stat(s->env, &txn, 0);
	if (rc == 0)
		rc = s->env->lock_stat(s->env, &lock, 0);
	if (rc == 0)
		rc = s->env->memp_stat(s->env, &mp, NULL, 0);
	if (rc == 0)
		rc = s->env->log_stat(s->env, &log, 0);
	if (rc != 0) {
		bdb_map_rc(s, rc, "statistics");
		goto out;
	}
	out->commits = txn->st_ncommits;
	out->aborts = txn->st_naborts;
	out->last_checkpoint = (uint64_t)txn->st_time_ckp;
	/* Transactions do not wait (DB_TXN_NOWAIT): most conflicts are "nowait" ones. */
	out->lock_conflicts = (uint64_t)lock->st_lock_wait + lock->st_lock_nowait;
	out->deadlocks = lock->st_ndeadlocks;
	out->lock_timeouts = (uint64_t)lock->st_nlocktimeouts + lock->st_ntxntimeouts;
	out->cache_hits = mp->st_cache_hit;
	out->cache_misses = mp->st_cache_miss;
	out->cache_bytes = (uint64_t)mp->st_gbytes * 1073741824u + mp->st_bytes;
	out->cache_pages = mp->st_pages;
	out->cache_evictions = (uint64_t)mp->st_ro_evict + mp->st_rw_evict;
	out->log_bytes = (uint64_t)log->st_w_mbytes * 1048576u + log->st_w_bytes;
	out->valid = rep_stats(s, out) == 0;
out:
	free(txn);
	free(lock);
	free(mp);
	free(log);
	return out->valid ? 0 : -1;
}
