/*
 * jwt: compact JWS (RFC 7515) tokens. User tokens are signed with an asymmetric jwk_t
 * (RS256/ES256/EdDSA: the algorithm is fixed by the key); client access tokens with HS256 under a
 * server-held key. Verification pins the algorithm: the header's "alg" must equal what the
 * selected key (or the HS256 call) uses, "none" is never accepted, and "kid" only selects among
 * the keys the caller passes.
 */
#ifndef OTLOGIN_JWT_H
#define OTLOGIN_JWT_H

#include <jansson.h>
#include <stddef.h>
#include "jwk.h"

/*
 * Sign claims (borrowed) with key; header {"alg":<key alg>,"typ":typ,"kid":<key kid>}.
 * Returns a new compact token (caller frees) or NULL on error.
 * ES256 signatures are exactly 64 bytes (R and S left-padded to 32 bytes each).
 */
char *jwt_sign(const jwk_t *key, const char *typ, json_t *claims);

/* Sign claims with HS256 under key; header {"alg":"HS256","typ":typ,"kid":kid}. New string or NULL. */
char *jwt_sign_hs256(const void *key, size_t keylen, const char *kid, const char *typ,
		     json_t *claims);

/*
 * Verify an HS256 token under key: structure, strict base64url, header alg == "HS256",
 * header typ == typ (when typ is not NULL), signature (constant time). Does NOT check exp or
 * other claims. Returns 1 and sets *claims (new reference) when valid, 0 when invalid,
 * -1 on internal error.
 */
int jwt_verify_hs256(const char *token, const void *key, size_t keylen, const char *typ,
		     json_t **claims);

/*
 * Verify an asymmetrically signed token against the nkeys public keys: the header's kid must
 * name one of them, its alg must be that key's alg. Returns 1 and sets *claims (new reference)
 * when valid, 0 when invalid, -1 on internal error. Does not check exp or other claims.
 */
int jwt_verify(const char *token, jwk_t *const *keys, size_t nkeys, const char *typ,
	       json_t **claims);

#endif
