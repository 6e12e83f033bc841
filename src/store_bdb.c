/*
 * store_bdb: the store on a Berkeley DB 5.3 transactional environment shared by all worker
 * processes. Every process opens it with DB_REGISTER | DB_RECOVER, so that the first process
 * to open it after one died mid-transaction runs recovery automatically; DB_RUNRECOVERY is
 * surfaced as STORE_FATAL so that the worker answers 503 and exits to be restarted.
 */
#include "store.h"

#include <db.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"
#include "log.h"

/* Lock waits and transactions stay well below a request's budget. */
#define LOCK_TIMEOUT_US (2 * 1000 * 1000)
#define TXN_TIMEOUT_US (5 * 1000 * 1000)
#define RUN_ATTEMPTS 20
#define CHECKPOINT_EVERY_S 30

static const char *const table_files[TBL_COUNT] = {
    [TBL_CLIENTS] = "clients.db", [TBL_USERS] = "users.db",	  [TBL_USER_IDX] = "user_idx.db",
    [TBL_CODES] = "codes.db",	  [TBL_COUNTERS] = "counters.db", [TBL_SESSIONS] = "sessions.db",
    [TBL_REFRESH] = "refresh.db", [TBL_KEYS] = "keys.db",
};

struct store {
	DB_ENV *env;
	DB *db[TBL_COUNT];
	int failed;
	time_t last_checkpoint;
};

struct store_txn {
	struct store *s;
	DB_TXN *txn;
};

static void bdb_errcall(const DB_ENV *env, const char *prefix, const char *msg)
{
	log_err("berkeley db: %s", msg);
}

/* Map a Berkeley DB return code to a store_rc, remembering a fatal one. */
static int map_rc(struct store *s, int rc, const char *what)
{
	switch (rc) {
	case 0:
		return 0;
	case DB_NOTFOUND:
		return STORE_NOTFOUND;
	case DB_LOCK_DEADLOCK:
	case DB_LOCK_NOTGRANTED:
		return STORE_RETRY;
	case DB_RUNRECOVERY:
		s->failed = 1;
		log_err("%s: %s: the environment needs recovery", what, db_strerror(rc));
		return STORE_FATAL;
	default:
		log_err("%s: %s", what, db_strerror(rc));
		return STORE_ERR;
	}
}

static int open_env(struct store *s, const char *dir, unsigned cache_mb)
{
	DB_ENV *env;
	int rc;
	const u_int32_t flags = DB_CREATE | DB_INIT_TXN | DB_INIT_LOCK | DB_INIT_LOG |
				DB_INIT_MPOOL | DB_REGISTER | DB_RECOVER;

	if ((rc = db_env_create(&env, 0)) != 0) {
		log_err("db_env_create: %s", db_strerror(rc));
		return -1;
	}
	s->env = env;
	env->set_errcall(env, bdb_errcall);
	if ((rc = env->set_cachesize(env, 0, cache_mb * 1024u * 1024u, 1)) != 0 ||
	    (rc = env->set_lk_detect(env, DB_LOCK_DEFAULT)) != 0 ||
	    (rc = env->set_timeout(env, LOCK_TIMEOUT_US, DB_SET_LOCK_TIMEOUT)) != 0 ||
	    (rc = env->set_timeout(env, TXN_TIMEOUT_US, DB_SET_TXN_TIMEOUT)) != 0 ||
	    (rc = env->set_lk_max_locks(env, 20000)) != 0 ||
	    (rc = env->set_lk_max_objects(env, 20000)) != 0 ||
	    (rc = env->set_lk_max_lockers(env, 5000)) != 0 ||
	    (rc = env->log_set_config(env, DB_LOG_AUTO_REMOVE, 1)) != 0) {
		log_err("configuring the environment: %s", db_strerror(rc));
		return -1;
	}
	rc = env->open(env, dir, flags, 0600);
	if (rc != 0) {
		log_err("opening the environment %s: %s", dir, db_strerror(rc));
		return -1;
	}
	return 0;
}

static int open_tables(struct store *s, int create)
{
	for (int i = 0; i < TBL_COUNT; i++) {
		DB *db;
		int rc;

		if ((rc = db_create(&db, s->env, 0)) != 0) {
			log_err("db_create: %s", db_strerror(rc));
			return -1;
		}
		s->db[i] = db;
		if ((rc = db->set_flags(db, DB_CHKSUM)) != 0 ||
		    (rc = db->open(db, NULL, table_files[i], NULL, DB_BTREE,
				   DB_AUTO_COMMIT | (create ? DB_CREATE : 0), 0600)) != 0) {
			log_err("opening %s: %s%s", table_files[i], db_strerror(rc),
				rc == ENOENT ? " (run otloginctl init)" : "");
			return -1;
		}
	}
	return 0;
}

struct store *store_open(const char *dir, unsigned cache_mb, int create)
{
	struct store *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	if (create) {
		if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
			log_err("mkdir %s: %s", dir, strerror(errno));
			free(s);
			return NULL;
		}
		chmod(dir, 0700);
	}
	if (open_env(s, dir, cache_mb) < 0 || open_tables(s, create) < 0) {
		store_close(s);
		return NULL;
	}
	s->last_checkpoint = time(NULL);
	return s;
}

void store_close(struct store *s)
{
	if (s == NULL)
		return;
	for (int i = 0; i < TBL_COUNT; i++)
		if (s->db[i] != NULL)
			s->db[i]->close(s->db[i], 0);
	if (s->env != NULL)
		s->env->close(s->env, 0);
	free(s);
}

int store_begin(struct store *s, struct store_txn **t)
{
	struct store_txn *txn;
	int rc;

	if (s->failed)
		return STORE_FATAL;
	txn = calloc(1, sizeof(*txn));
	if (txn == NULL)
		return STORE_ERR;
	txn->s = s;
	rc = s->env->txn_begin(s->env, NULL, &txn->txn, 0);
	if (rc != 0) {
		free(txn);
		return map_rc(s, rc, "txn_begin");
	}
	*t = txn;
	return 0;
}

int store_commit(struct store_txn *t)
{
	/* Flags 0: a synchronous commit (the environment does not set DB_TXN_NOSYNC). */
	int rc = t->txn->commit(t->txn, 0);
	struct store *s = t->s;
	free(t);
	return map_rc(s, rc, "commit");
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
		return map_rc(t->s, rc, table_files[tbl]);
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
	return map_rc(t->s, rc, table_files[tbl]);
}

int store_del(struct store_txn *t, enum store_table tbl, const void *key, size_t klen)
{
	DBT k;
	int rc;

	set_key(&k, key, klen);
	rc = t->s->db[tbl]->del(t->s->db[tbl], t->txn, &k, 0);
	if (rc == 0)
		return STORE_FOUND;
	return map_rc(t->s, rc, table_files[tbl]);
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
		return map_rc(t->s, rc, "cursor");
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
		out = map_rc(t->s, rc, "cursor get");
	cur->close(cur);
	return out < 0 ? out : 0;
}

/* A short random pause before a retry, so that two losers of a deadlock do not collide again. */
static void backoff(int attempt)
{
	unsigned r;
	crypto_random(&r, sizeof(r));
	usleep(500 + r % (1000u * (unsigned)(attempt + 1)));
}

int store_run(struct store *s, int (*fn)(struct store_txn *t, void *arg), void *arg)
{
	for (int attempt = 0; attempt < RUN_ATTEMPTS; attempt++) {
		struct store_txn *t;
		int rc = store_begin(s, &t), result;

		if (rc < 0)
			return rc;
		result = fn(t, arg);
		if (result >= 0) {
			rc = store_commit(t);
			if (rc == 0)
				return result;
		} else {
			store_abort(t);
			rc = result;
		}
		if (rc != STORE_RETRY)
			return rc;
		backoff(attempt);
	}
	log_warn("a transaction lost %d deadlocks in a row", RUN_ATTEMPTS);
	return STORE_RETRY;
}

void store_maintain(struct store *s)
{
	time_t now = time(NULL);
	int rc;

	if (s->failed || now - s->last_checkpoint < CHECKPOINT_EVERY_S)
		return;
	s->last_checkpoint = now;
	/* With DB_LOG_AUTO_REMOVE, log files a checkpoint makes unneeded are removed. */
	rc = s->env->txn_checkpoint(s->env, 1024, 1, 0);
	if (rc != 0)
		map_rc(s, rc, "checkpoint");
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
