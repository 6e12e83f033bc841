/*
 * The fixture of the unit tests that work in a directory of their own, most of them on a real
 * store, shared like check.h (static; a test program includes it once):
 * - fixture_begin: crypto_init, a private umask (the store refuses a database open to others)
 *   and the test's directory name, <parent>/otlogin-test-<name>-<pid>, in fixture_dir;
 * - fixture_open: that, plus the default configuration (db_dir there) in `conf`, the store in
 *   `c` and a signing key in `keys`; fixture_client and fixture_direct_client: a client as
 *   otloginctl makes one; fixture_user, fixture_user_of: a user; fixture_get, fixture_put: one
 * record; fixture_set_status: a user's status, below account.c (no session is ended);
 * - fixture_close and fixture_remove: the cleanup. It is no test case: a directory that could
 *   not be removed is said on stderr, without a TAP line.
 */
#ifndef OTLOGIN_FIXTURE_H
#define OTLOGIN_FIXTURE_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "client.h"
#include "conf.h"
#include "crypto.h"
#include "ctx.h"
#include "jwk.h"
#include "keyring.h"
#include "store.h"
#include "user.h"

static struct conf conf;
static struct keyring keys;
static struct ctx c = {.conf = &conf, .keys = &keys};
static char fixture_dir[64];

/* crypto_init, umask 077, and fixture_dir named (not created). Returns fixture_dir. */
static inline const char *fixture_begin(const char *parent, const char *name)
{
	crypto_init();
	umask(077);
	snprintf(fixture_dir, sizeof(fixture_dir), "%s/otlogin-test-%s-%d", parent, name,
		 (int)getpid());
	return fixture_dir;
}

/*
 * fixture_begin, then the default configuration with its db_dir in fixture_dir, the store
 * created there (cache_mb of cache) and an RS256 signing key created and loaded, each step a
 * check. parent is "/tmp", or "/dev/shm" for a test whose many durable commits would wait on
 * a disk. Returns 0, or -1 when a step failed (the steps after it are not tried).
 */
static inline int fixture_open(const char *parent, const char *name, unsigned cache_mb)
{
	fixture_begin(parent, name);
	conf_free(&conf);
	conf_defaults(&conf);
	free(conf.db_dir);
	conf.db_dir = strdup(fixture_dir);
	c.store = store_open(fixture_dir, cache_mb, 1);
	if (!check(c.store != NULL))
		return -1;
	if (!check(keyring_create(c.store, fixture_dir, JWK_RS256) == 0))
		return -1;
	return check(keyring_load(&keys, c.store, fixture_dir, 3600) == 0) ? 0 : -1;
}

/* The client client_create makes of spec (borrowed), as stored: a new reference, or NULL. */
static inline json_t *fixture_client(json_t *spec)
{
	char err[128];
	json_t *out = NULL, *client = NULL;

	if (client_create(&c, spec, &out, err, sizeof(err)) != 0) {
		printf("# client_create: %s\n", err);
		return NULL;
	}
	if (client_get(&c, json_string_value(json_object_get(out, "client_id")), &client) != 1)
		client = NULL;
	json_decref(out);
	return client;
}

/*
 * A client named name with the direct permission, and the signup and existence policies when
 * not NULL: a new reference, or NULL.
 */
static inline json_t *fixture_direct_client(const char *name, const char *signup,
					    const char *existence)
{
	json_t *spec = json_pack("{s:s, s:[s]}", "name", name, "permissions", "direct"), *client;

	if (signup != NULL)
		json_object_set_new(spec, "signup", json_string(signup));
	if (existence != NULL)
		json_object_set_new(spec, "existence", json_string(existence));
	client = fixture_client(spec);
	json_decref(spec);
	return client;
}

/* The user user_create makes of spec (borrowed; a check): its user_id into id (64 bytes). */
static inline void fixture_user_of(json_t *spec, char *id)
{
	char err[128];
	json_t *user = NULL;

	id[0] = '\0';
	if (check(user_create(&c, spec, &user, err, sizeof(err)) == USER_CREATED))
		snprintf(id, 64, "%s", json_string_value(json_object_get(user, "user_id")));
	json_decref(user);
}

/* A new user with email, and phone and username when not NULL: fixture_user_of. */
static inline void fixture_user(const char *email, const char *phone, const char *username,
				char *id)
{
	json_t *spec = json_pack("{s:s}", "email", email);

	if (phone != NULL)
		json_object_set_new(spec, "phone_number", json_string(phone));
	if (username != NULL)
		json_object_set_new(spec, "username", json_string(username));
	fixture_user_of(spec, id);
	json_decref(spec);
}

struct fixture_rec {
	enum store_table tbl;
	const char *key;
	json_t *val; /* put this (borrowed) when not NULL, else get into out */
	json_t *out;
};

static inline int fixture_rec_txn(struct store_txn *t, void *arg)
{
	struct fixture_rec *a = arg;

	json_decref(a->out);
	a->out = NULL;
	if (a->val != NULL)
		return store_put(t, a->tbl, a->key, strlen(a->key), a->val);
	return store_get(t, a->tbl, a->key, strlen(a->key), &a->out, 0);
}

/* The record under key in tbl (a new reference), or NULL. */
static inline json_t *fixture_get(enum store_table tbl, const char *key)
{
	struct fixture_rec a = {tbl, key, NULL, NULL};

	if (store_run(c.store, fixture_rec_txn, &a) != STORE_FOUND) {
		json_decref(a.out);
		return NULL;
	}
	return a.out;
}

/* Store val (borrowed) under key in tbl: 0 or a negative store_rc. */
static inline int fixture_put(enum store_table tbl, const char *key, json_t *val)
{
	struct fixture_rec a = {tbl, key, val, NULL};
	return store_run(c.store, fixture_rec_txn, &a);
}

struct fixture_status {
	const char *id;
	json_t *patch;
};

static inline int fixture_status_txn(struct store_txn *t, void *arg)
{
	struct fixture_status *a = arg;
	char err[128];
	json_t *user = NULL;
	int was, rc = user_update_txn(t, a->id, a->patch, &user, &was, err, sizeof(err));

	json_decref(user);
	return rc;
}

/*
 * The user's status set by user_update_txn alone: no session is ended (account.c's work), as
 * after a disable interrupted before it ended them. user_update_txn's result.
 */
static inline int fixture_set_status(const char *user_id, const char *status)
{
	struct fixture_status a = {user_id, json_pack("{s:s}", "status", status)};
	int rc = store_run(c.store, fixture_status_txn, &a);

	json_decref(a.patch);
	return rc;
}

static inline int fixture_unlink(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	if (remove(path) != 0)
		fprintf(stderr, "fixture: could not remove %s\n", path);
	return 0;
}

/* Remove the tree at dir (gone already is fine). Failures go to stderr, not to TAP. */
static inline void fixture_remove(const char *dir)
{
	struct stat st;

	if (lstat(dir, &st) != 0)
		return;
	if (nftw(dir, fixture_unlink, 16, FTW_DEPTH | FTW_PHYS) != 0)
		fprintf(stderr, "fixture: could not walk %s\n", dir);
}

/* Release what fixture_open made and remove fixture_dir. */
static inline void fixture_close(void)
{
	keyring_free(&keys);
	store_close(c.store);
	c.store = NULL;
	conf_free(&conf);
	fixture_remove(fixture_dir);
}

#endif
