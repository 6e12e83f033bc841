/*
 * keyring: the process's secrets. The server key (32 random bytes in <db_dir>/server.key,
 * 0600, kept out of the database so that a dump of the tables alone reveals no usable hash
 * key) derives the record-tag key and the HS256 key of client access tokens. Signing keys for
 * user tokens live in the store (TBL_KEYS) so that every worker sees a rotation.
 */
#ifndef OTLOGIN_KEYRING_H
#define OTLOGIN_KEYRING_H

#include <stddef.h>
#include <time.h>

#include "crypto.h"
#include "jwk.h"
#include "store.h"

#define KEYRING_TAG_HEX (2 * CRYPTO_HASH_LEN + 1)

struct keyring {
	crypto_hmac_t *tagger;		 /* keyed with the derived record-tag key */
	crypto_hmac_t *client_token_mac; /* keyed with the HS256 key of client access tokens */
	char client_token_kid[17];
	/*
	 * The last client token that verified under client_token_mac and its claims, so that
	 * a client's next request with the same token skips the HMAC and the JSON (client.c).
	 */
	char *client_token_seen;
	json_t *client_token_claims;
	jwk_t *signing;	   /* the current signing key */
	jwk_t **published; /* every key in the JWKS (includes signing) */
	size_t npublished;
	unsigned overlap;     /* seconds a replaced key stays published */
	long long generation; /* of the stored key set, to notice a rotation */
	time_t next_check;    /* when to poll the generation again */
	time_t next_change;   /* when a key activates or retires (0: never) */
};

/*
 * Refuse secrets open to others, before the database is opened: db_dir must not be accessible
 * by group or others, nor <db_dir>/server.key readable by them (a missing key is not checked
 * here). Returns 0, or -1 after logging which file and the chmod that fixes it. keyring_load
 * checks the key file it reads as well.
 */
int keyring_check_private(const char *db_dir);

/* 1 when <db_dir>/server.key exists, else 0. */
int keyring_server_key_exists(const char *db_dir);

/* Create <db_dir>/server.key (0600) if missing. Returns 0 or -1 (logged). */
int keyring_create_server_key(const char *db_dir);

/*
 * Create <db_dir>/server.key if missing and a first signing key of alg if the store has none.
 * For otloginctl init. Returns 0 or -1 (logged).
 */
int keyring_create(struct store *s, const char *db_dir, const char *alg);

/*
 * Whether this site's server key is the group's: the first site's is recorded in the store
 * (as a keyed hash of a fixed text, when store_if_absent and none is there yet), and a site
 * with another server.key would verify nothing the others stored. Returns 1 (the same, or
 * nothing recorded), 0 (it differs), or a negative store_rc.
 */
int keyring_check_group(struct keyring *kr, struct store *s, int store_if_absent);

/*
 * Load the server key and the signing keys; a replaced key stays published for overlap
 * seconds after its successor activates. On a replicated site that cannot read the store yet
 * the signing keys stay unset (signing NULL) until keyring_refresh reads them. Returns 0, or -1
 * (logged) when a key is missing, unreadable, or the server key is readable by group or others
 * (then nothing is held). Release with keyring_free.
 */
int keyring_load(struct keyring *kr, struct store *s, const char *db_dir, unsigned overlap);

/*
 * Between requests: at most once a second, notice a rotation (another process added a key) or
 * a key activating or retiring, and reload the signing keys. Keeps the old keys on failure.
 */
void keyring_refresh(struct keyring *kr, struct store *s);

/*
 * out = hex HMAC-SHA-256 under the record-tag key of purpose and the NULL-terminated list of
 * strings that follows, each ended by a NUL so that no two lists collide. Used for every
 * secret or identifier that becomes a database key or is stored. Returns 0 or -1.
 */
int keyring_tag(struct keyring *kr, char out[KEYRING_TAG_HEX], const char *purpose, ...)
    __attribute__((sentinel));

/*
 * Add a signing key of alg (JWK_RS256, JWK_ES256, JWK_EDDSA) that is published at once and
 * signs from active_from on. Returns 0 or -1.
 */
int keyring_add_signing_key(struct store *s, const char *alg, time_t active_from);

void keyring_free(struct keyring *kr);

#endif
