/*
 * keyring: the process's secrets. The server key (32 random bytes in <db_dir>/server.key,
 * 0600, kept out of the database so that a dump of the tables alone reveals no usable hash
 * key) derives the record-tag key and the HS256 key of client access tokens. Signing keys for
 * user tokens live in the store (TBL_KEYS) so that every worker sees a rotation.
 */
#ifndef OTLOGIN_KEYRING_H
#define OTLOGIN_KEYRING_H

#include <stddef.h>

#include "crypto.h"
#include "jwk.h"
#include "store.h"

#define KEYRING_TAG_HEX (2 * CRYPTO_HASH_LEN + 1)

struct keyring {
	crypto_hmac_t *tagger;		    /* keyed with the derived record-tag key */
	unsigned char client_token_key[32]; /* HS256 key of client access tokens */
	char client_token_kid[17];
	jwk_t *signing;	   /* the current signing key */
	jwk_t **published; /* every key in the JWKS (includes signing) */
	size_t npublished;
};

/*
 * Create <db_dir>/server.key if missing and a first RS256 signing key if the store has none.
 * For otloginctl init. Returns 0 or -1 (logged).
 */
int keyring_create(struct store *s, const char *db_dir);

/*
 * Load the server key and the signing keys. Returns 0, or -1 (logged) when a key is missing
 * or unreadable. Release with keyring_free.
 */
int keyring_load(struct keyring *kr, struct store *s, const char *db_dir);

/*
 * out = hex HMAC-SHA-256 under the record-tag key of purpose and the NULL-terminated list of
 * strings that follows, each ended by a NUL so that no two lists collide. Used for every
 * secret or identifier that becomes a database key or is stored. Returns 0 or -1.
 */
int keyring_tag(struct keyring *kr, char out[KEYRING_TAG_HEX], const char *purpose, ...)
    __attribute__((sentinel));

/* Add a new signing key of alg (JWK_RS256, ...) and make it current. Returns 0 or -1. */
int keyring_add_signing_key(struct store *s, const char *alg);

void keyring_free(struct keyring *kr);

#endif
