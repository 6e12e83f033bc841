#include "keyring.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define SERVER_KEY_LEN 32

static char *server_key_path(const char *db_dir)
{
	char *path;
	if (asprintf(&path, "%s/server.key", db_dir) < 0)
		return NULL;
	return path;
}

/*
 * ssh's rule for private keys: a secret others may read is refused, and the message says how
 * to make it private. Whoever can read server.key can forge client tokens and reverse record
 * tags; whoever can enter db_dir can read the database and its log. Returns 0 or -1 (logged).
 */
static int check_private(const char *what, const char *path, mode_t mode, const char *fix)
{
	if ((mode & 077) == 0)
		return 0;
	log_err("%s %s is accessible by group or others (mode %04o): it must be private to the "
		"account otlogin runs as; run: chmod %s %s",
		what, path, (unsigned)(mode & 07777), fix, path);
	return -1;
}

int keyring_check_private(const char *db_dir)
{
	char *path = server_key_path(db_dir);
	struct stat st;
	int rc = 0;

	if (path == NULL)
		return -1;
	if (stat(db_dir, &st) == 0 && check_private("db_dir", db_dir, st.st_mode, "700") < 0)
		rc = -1;
	/* A missing key is read_server_key's to report. */
	if (stat(path, &st) == 0 && check_private("the server key", path, st.st_mode, "600") < 0)
		rc = -1;
	free(path);
	return rc;
}

static int read_server_key(const char *db_dir, unsigned char key[SERVER_KEY_LEN])
{
	char *path = server_key_path(db_dir);
	struct stat st;
	int fd, rc = -1;
	ssize_t n;

	if (path == NULL)
		return -1;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		log_err("%s: %s (run otloginctl init)", path, strerror(errno));
		goto out;
	}
	/* The file actually read, whatever was checked before the database was opened. */
	if (fstat(fd, &st) < 0 || check_private("the server key", path, st.st_mode, "600") < 0) {
		close(fd);
		goto out;
	}
	n = read(fd, key, SERVER_KEY_LEN);
	close(fd);
	if (n != SERVER_KEY_LEN) {
		log_err("%s: not a %d-byte key", path, SERVER_KEY_LEN);
		goto out;
	}
	rc = 0;
out:
	free(path);
	return rc;
}

int keyring_server_key_exists(const char *db_dir)
{
	char *path = server_key_path(db_dir);
	int rc = path != NULL && access(path, F_OK) == 0;

	free(path);
	return rc;
}

int keyring_create_server_key(const char *db_dir)
{
	unsigned char key[SERVER_KEY_LEN];
	char *path = server_key_path(db_dir);
	int fd, rc = -1;

	if (path == NULL)
		return -1;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = errno == EEXIST ? 0 : -1;
		if (rc < 0)
			log_err("%s: %s", path, strerror(errno));
		goto out;
	}
	crypto_random(key, sizeof(key));
	if (write(fd, key, sizeof(key)) != (ssize_t)sizeof(key) || fsync(fd) < 0) {
		log_err("%s: %s", path, strerror(errno));
		close(fd);
		unlink(path);
		goto out;
	}
	close(fd);
	rc = 0;
out:
	crypto_wipe(key, sizeof(key));
	free(path);
	return rc;
}

/* The record whose generation changes with every key added: workers poll it. */
#define GENERATION_KEY "current"
#define POLL_SECONDS 1

struct add_key_arg {
	const char *alg;
	int only_if_none;
	time_t active_from;
};

static int add_key_txn(struct store_txn *t, void *argp)
{
	struct add_key_arg *arg = argp;
	unsigned char rnd[8];
	char kid[17], *priv;
	json_t *gen, *rec;
	json_int_t generation = 0;
	jwk_t *key;
	int rc;

	rc = store_get(t, TBL_KEYS, GENERATION_KEY, strlen(GENERATION_KEY), &gen, 1);
	if (rc < 0)
		return rc;
	if (rc == STORE_FOUND) {
		generation = json_integer_value(json_object_get(gen, "generation"));
		json_decref(gen);
		if (arg->only_if_none)
			return 0;
	}
	crypto_random(rnd, sizeof(rnd));
	crypto_hex(rnd, sizeof(rnd), kid);
	key = jwk_generate(arg->alg, kid);
	if (key == NULL)
		return STORE_ERR;
	priv = jwk_private_serialize(key);
	jwk_free(key);
	if (priv == NULL)
		return STORE_ERR;
	rec = json_pack("{s:s, s:s, s:I, s:I}", "jwk", priv, "alg", arg->alg, "created",
			(json_int_t)time(NULL), "active_from", (json_int_t)arg->active_from);
	crypto_free_str(priv);
	rc = store_put(t, TBL_KEYS, kid, strlen(kid), rec);
	json_decref(rec);
	if (rc < 0)
		return rc;
	gen = json_pack("{s:I}", "generation", generation + 1);
	rc = store_put(t, TBL_KEYS, GENERATION_KEY, strlen(GENERATION_KEY), gen);
	json_decref(gen);
	return rc < 0 ? rc : 1;
}

int keyring_add_signing_key(struct store *s, const char *alg, time_t active_from)
{
	struct add_key_arg arg = {alg, 0, active_from};
	return store_run(s, add_key_txn, &arg) < 0 ? -1 : 0;
}

int keyring_create(struct store *s, const char *db_dir, const char *alg)
{
	struct add_key_arg arg = {alg, 1, time(NULL)};
	if (keyring_create_server_key(db_dir) < 0)
		return -1;
	return store_run(s, add_key_txn, &arg) < 0 ? -1 : 0;
}

/* One stored signing key while loading. */
struct loaded_key {
	jwk_t *key;
	time_t active_from;
};

struct load_arg {
	struct loaded_key *keys;
	size_t n;
	json_int_t generation;
};

static void free_loaded(struct load_arg *arg)
{
	for (size_t i = 0; i < arg->n; i++)
		jwk_free(arg->keys[i].key);
	free(arg->keys);
	arg->keys = NULL;
	arg->n = 0;
}

static int load_key_cb(const void *k, size_t klen, json_t *val, void *argp)
{
	struct load_arg *arg = argp;
	const char *text = json_string_value(json_object_get(val, "jwk"));
	struct loaded_key *grown;
	jwk_t *key;

	if (text == NULL) {
		if (klen == strlen(GENERATION_KEY) && memcmp(k, GENERATION_KEY, klen) == 0)
			arg->generation = json_integer_value(json_object_get(val, "generation"));
		return 0; /* or another record of the table (GROUP_CHECK_KEY) */
	}
	key = jwk_private_parse(text);
	if (key == NULL) {
		log_err("a stored signing key is unreadable");
		return STORE_ERR;
	}
	grown = realloc(arg->keys, (arg->n + 1) * sizeof(*grown));
	if (grown == NULL) {
		jwk_free(key);
		return STORE_ERR;
	}
	arg->keys = grown;
	arg->keys[arg->n].key = key;
	arg->keys[arg->n++].active_from =
	    (time_t)json_integer_value(json_object_get(val, "active_from"));
	return 0;
}

static int load_keys_txn(struct store_txn *t, void *argp)
{
	free_loaded(argp); /* a retried transaction starts over */
	return store_each(t, TBL_KEYS, NULL, 0, load_key_cb, argp);
}

static int by_activation(const void *a, const void *b)
{
	const struct loaded_key *x = a, *y = b;
	return (x->active_from > y->active_from) - (x->active_from < y->active_from);
}

static void drop_signing_keys(struct keyring *kr)
{
	for (size_t i = 0; i < kr->npublished; i++)
		jwk_free(kr->published[i]);
	free(kr->published);
	kr->published = NULL;
	kr->npublished = 0;
	kr->signing = NULL;
}

/*
 * Choose from the stored keys, ordered by activation: the signing key is the newest active
 * one; a key is published from its creation (so relying parties see it before it signs) until
 * its successor has been active for the overlap. Remembers when that choice next changes.
 */
static int adopt_keys(struct keyring *kr, struct load_arg *arg, time_t now)
{
	jwk_t **published = calloc(arg->n ? arg->n : 1, sizeof(*published)), *signing = NULL;
	size_t np = 0;
	time_t next = 0;

	if (published == NULL)
		return -1;
	if (arg->n > 0) /* none yet: a replicated site before its init (keys is NULL) */
		qsort(arg->keys, arg->n, sizeof(*arg->keys), by_activation);
	for (size_t i = 0; i < arg->n; i++) {
		time_t retire = i + 1 < arg->n ? arg->keys[i + 1].active_from + kr->overlap : 0;
		if (arg->keys[i].active_from <= now)
			signing = arg->keys[i].key;
		else if (next == 0 || arg->keys[i].active_from < next)
			next = arg->keys[i].active_from;
		if (retire != 0 && retire <= now) {
			jwk_free(arg->keys[i].key);
			continue;
		}
		if (retire != 0 && (next == 0 || retire < next))
			next = retire;
		published[np++] = arg->keys[i].key;
	}
	free(arg->keys);
	arg->keys = NULL;
	arg->n = 0;
	if (signing == NULL) {
		for (size_t i = 0; i < np; i++)
			jwk_free(published[i]);
		free(published);
		log_err("no active signing key in the store (run otloginctl init)");
		return -1;
	}
	drop_signing_keys(kr);
	kr->published = published;
	kr->npublished = np;
	kr->signing = signing;
	kr->generation = arg->generation;
	kr->next_change = next;
	return 0;
}

static int load_signing_keys(struct keyring *kr, struct store *s)
{
	struct load_arg arg = {0};
	if (store_run(s, load_keys_txn, &arg) < 0) {
		free_loaded(&arg);
		return -1;
	}
	return adopt_keys(kr, &arg, time(NULL));
}

int keyring_load(struct keyring *kr, struct store *s, const char *db_dir, unsigned overlap)
{
	unsigned char server_key[SERVER_KEY_LEN], tag_key[CRYPTO_HASH_LEN],
	    token_key[CRYPTO_HASH_LEN], kid_raw[CRYPTO_HASH_LEN];
	int rc = -1;

	memset(kr, 0, sizeof(*kr));
	kr->overlap = overlap;
	if (read_server_key(db_dir, server_key) < 0)
		return -1;
	/* Independent keys per purpose, derived from the one server key. */
	if (crypto_hmac_once(server_key, sizeof(server_key), "record-tag-v1", 13, tag_key) < 0 ||
	    crypto_hmac_once(server_key, sizeof(server_key), "client-token-v1", 15, token_key) <
		0 ||
	    crypto_hmac_once(server_key, sizeof(server_key), "client-token-kid", 16, kid_raw) < 0)
		goto out;
	crypto_hex(kid_raw, 8, kr->client_token_kid);
	kr->tagger = crypto_hmac_open(tag_key, sizeof(tag_key));
	kr->client_token_mac = crypto_hmac_open(token_key, sizeof(token_key));
	if (kr->tagger == NULL || kr->client_token_mac == NULL)
		goto out;
	/*
	 * A replicated site that is not the master cannot read them yet: keyring_refresh does,
	 * before the first request the site may serve.
	 */
	if (load_signing_keys(kr, s) < 0 && !store_replicated())
		goto out;
	kr->next_check = kr->signing != NULL ? time(NULL) + POLL_SECONDS : 0;
	rc = 0;
out:
	if (rc < 0) { /* nothing for the caller to release */
		crypto_hmac_close(kr->tagger);
		crypto_hmac_close(kr->client_token_mac);
		kr->tagger = kr->client_token_mac = NULL;
	}
	crypto_wipe(server_key, sizeof(server_key));
	crypto_wipe(tag_key, sizeof(tag_key));
	crypto_wipe(token_key, sizeof(token_key));
	return rc;
}

static int generation_txn(struct store_txn *t, void *arg)
{
	json_t *gen;
	int rc = store_get(t, TBL_KEYS, GENERATION_KEY, strlen(GENERATION_KEY), &gen, 0);
	if (rc == STORE_FOUND) {
		*(json_int_t *)arg = json_integer_value(json_object_get(gen, "generation"));
		json_decref(gen);
	}
	return rc < 0 ? rc : 0;
}

void keyring_refresh(struct keyring *kr, struct store *s)
{
	time_t now = time(NULL);
	json_int_t generation = kr->generation;

	if (kr->signing == NULL) { /* see keyring_load */
		if (load_signing_keys(kr, s) == 0)
			kr->next_check = now + POLL_SECONDS;
		return;
	}
	if (now < kr->next_check)
		return;
	kr->next_check = now + POLL_SECONDS;
	if (store_run(s, generation_txn, &generation) < 0)
		return;
	if (generation == kr->generation && (kr->next_change == 0 || now < kr->next_change))
		return;
	/* On failure the keys in hand stay in use. */
	if (load_signing_keys(kr, s) < 0)
		log_warn("reloading the signing keys failed; keeping the current ones");
}

int keyring_tag(struct keyring *kr, char out[KEYRING_TAG_HEX], const char *purpose, ...)
{
	const void *parts[16];
	size_t lens[16], n = 0;
	unsigned char mac[CRYPTO_HASH_LEN];
	const char *s;
	va_list ap;

	va_start(ap, purpose);
	for (s = purpose; s != NULL && n < 16; s = va_arg(ap, const char *)) {
		parts[n] = s;
		lens[n++] = strlen(s) + 1; /* the NUL separates the parts */
	}
	va_end(ap);
	if (s != NULL || crypto_hmac_parts(kr->tagger, n, parts, lens, mac) < 0)
		return -1;
	crypto_hex(mac, sizeof(mac), out);
	return 0;
}

/* A keyed hash of a fixed text: it tells whether two sites hold the same server key. */
#define GROUP_CHECK_KEY "server-key-check"

struct group_check_arg {
	const char *tag;
	int store;
};

static int group_check_txn(struct store_txn *t, void *argp)
{
	struct group_check_arg *arg = argp;
	const char *have;
	json_t *rec;
	int rc = store_get(t, TBL_KEYS, GROUP_CHECK_KEY, strlen(GROUP_CHECK_KEY), &rec, 0);

	if (rc == STORE_FOUND) {
		have = json_string_value(json_object_get(rec, "tag"));
		rc = have != NULL && crypto_str_equal(have, arg->tag);
		json_decref(rec);
		return rc;
	}
	if (rc < 0 || !arg->store)
		return rc < 0 ? rc : 1;
	rec = json_pack("{s:s}", "tag", arg->tag);
	rc = rec == NULL ? STORE_ERR
			 : store_put(t, TBL_KEYS, GROUP_CHECK_KEY, strlen(GROUP_CHECK_KEY), rec);
	json_decref(rec);
	return rc < 0 ? rc : 1;
}

int keyring_check_group(struct keyring *kr, struct store *s, int store_if_absent)
{
	char tag[KEYRING_TAG_HEX];
	struct group_check_arg arg = {tag, store_if_absent};

	if (keyring_tag(kr, tag, "server-key-check-v1", NULL) < 0)
		return STORE_ERR;
	return store_run(s, group_check_txn, &arg);
}

void keyring_free(struct keyring *kr)
{
	crypto_hmac_close(kr->tagger);
	crypto_hmac_close(kr->client_token_mac);
	crypto_free_str(kr->client_token_seen);
	json_decref(kr->client_token_claims);
	drop_signing_keys(kr);
	crypto_wipe(kr, sizeof(*kr));
}
