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
#define CURRENT_KEY "current"

static char *server_key_path(const char *db_dir)
{
	char *path;
	if (asprintf(&path, "%s/server.key", db_dir) < 0)
		return NULL;
	return path;
}

static int read_server_key(const char *db_dir, unsigned char key[SERVER_KEY_LEN])
{
	char *path = server_key_path(db_dir);
	int fd, rc = -1;
	ssize_t n;

	if (path == NULL)
		return -1;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		log_err("%s: %s (run otloginctl init)", path, strerror(errno));
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

static int write_server_key(const char *db_dir)
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

struct add_key_arg {
	const char *alg;
	int only_if_none;
};

static int add_key_txn(struct store_txn *t, void *argp)
{
	struct add_key_arg *arg = argp;
	unsigned char rnd[8];
	char kid[17], *priv;
	json_t *cur, *rec;
	jwk_t *key;
	int rc;

	rc = store_get(t, TBL_KEYS, CURRENT_KEY, strlen(CURRENT_KEY), &cur, 1);
	if (rc < 0)
		return rc;
	if (rc == STORE_FOUND) {
		json_decref(cur);
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
	rec = json_pack("{s:s, s:s, s:I}", "jwk", priv, "alg", arg->alg, "created",
			(json_int_t)time(NULL));
	crypto_free_str(priv);
	rc = store_put(t, TBL_KEYS, kid, strlen(kid), rec);
	json_decref(rec);
	if (rc < 0)
		return rc;
	cur = json_pack("{s:s}", "kid", kid);
	rc = store_put(t, TBL_KEYS, CURRENT_KEY, strlen(CURRENT_KEY), cur);
	json_decref(cur);
	return rc < 0 ? rc : 1;
}

int keyring_add_signing_key(struct store *s, const char *alg)
{
	struct add_key_arg arg = {alg, 0};
	return store_run(s, add_key_txn, &arg) < 0 ? -1 : 0;
}

int keyring_create(struct store *s, const char *db_dir)
{
	struct add_key_arg arg = {JWK_RS256, 1};
	if (write_server_key(db_dir) < 0)
		return -1;
	return store_run(s, add_key_txn, &arg) < 0 ? -1 : 0;
}

struct load_arg {
	struct keyring *kr;
	char current[64];
};

static int load_key_cb(const void *k, size_t klen, json_t *val, void *argp)
{
	struct load_arg *arg = argp;
	struct keyring *kr = arg->kr;
	const char *text = json_string_value(json_object_get(val, "jwk"));
	jwk_t **grown, *key;

	if (text == NULL)
		return 0; /* the "current" pointer record */
	key = jwk_private_parse(text);
	if (key == NULL) {
		log_err("a stored signing key is unreadable");
		return STORE_ERR;
	}
	grown = realloc(kr->published, (kr->npublished + 1) * sizeof(*grown));
	if (grown == NULL) {
		jwk_free(key);
		return STORE_ERR;
	}
	kr->published = grown;
	kr->published[kr->npublished++] = key;
	if (klen == strlen(arg->current) && memcmp(k, arg->current, klen) == 0)
		kr->signing = key;
	return 0;
}

static int load_keys_txn(struct store_txn *t, void *argp)
{
	struct load_arg *arg = argp;
	json_t *cur;
	int rc;

	/* A retried transaction starts over. */
	for (size_t i = 0; i < arg->kr->npublished; i++)
		jwk_free(arg->kr->published[i]);
	arg->kr->npublished = 0;
	arg->kr->signing = NULL;
	rc = store_get(t, TBL_KEYS, CURRENT_KEY, strlen(CURRENT_KEY), &cur, 0);
	if (rc <= 0)
		return rc < 0 ? rc : STORE_ERR;
	snprintf(arg->current, sizeof(arg->current), "%s",
		 json_string_value(json_object_get(cur, "kid")) ?: "");
	json_decref(cur);
	return store_each(t, TBL_KEYS, NULL, 0, load_key_cb, arg);
}

int keyring_load(struct keyring *kr, struct store *s, const char *db_dir)
{
	unsigned char server_key[SERVER_KEY_LEN], tag_key[CRYPTO_HASH_LEN],
	    kid_raw[CRYPTO_HASH_LEN];
	struct load_arg arg = {.kr = kr};
	int rc = -1;

	memset(kr, 0, sizeof(*kr));
	if (read_server_key(db_dir, server_key) < 0)
		return -1;
	/* Independent keys per purpose, derived from the one server key. */
	if (crypto_hmac_once(server_key, sizeof(server_key), "record-tag-v1", 13, tag_key) < 0 ||
	    crypto_hmac_once(server_key, sizeof(server_key), "client-token-v1", 15,
			     kr->client_token_key) < 0 ||
	    crypto_hmac_once(server_key, sizeof(server_key), "client-token-kid", 16, kid_raw) < 0)
		goto out;
	crypto_hex(kid_raw, 8, kr->client_token_kid);
	kr->tagger = crypto_hmac_open(tag_key, sizeof(tag_key));
	if (kr->tagger == NULL)
		goto out;
	if (store_run(s, load_keys_txn, &arg) < 0 || kr->signing == NULL) {
		log_err("no current signing key in the store (run otloginctl init)");
		goto out;
	}
	rc = 0;
out:
	crypto_wipe(server_key, sizeof(server_key));
	crypto_wipe(tag_key, sizeof(tag_key));
	return rc;
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

void keyring_free(struct keyring *kr)
{
	crypto_hmac_close(kr->tagger);
	for (size_t i = 0; i < kr->npublished; i++)
		jwk_free(kr->published[i]);
	free(kr->published);
	crypto_wipe(kr, sizeof(*kr));
}
