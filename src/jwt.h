/*
 * jwt: compact JWS (RFC 7515) tokens. User tokens are signed with an asymmetric jwk_t
 * (RS256/ES256/EdDSA: the algorithm is fixed by the key); client access tokens with HS256 under a
 * server-held key. Verification pins the algorithm: the header's "alg" must equal what the
 * selected key (or the HS256 call) uses, "none" is never accepted, and "kid" only selects among
 * the keys the caller passes. Headers with duplicate members, "crit", or a member that names or
 * carries a key ("jku", "jwk", "x5u", "x5c") are refused.
 */
#ifndef OTLOGIN_JWT_H
#define OTLOGIN_JWT_H

#include <jansson.h>
#include <stddef.h>
#include "crypto.h"
#include "jwk.h"

/*
 * Sign claims (borrowed) with key; header {"alg":<key alg>,"typ":typ,"kid":<key kid>}.
 * Returns a new compact token (caller frees) or NULL on error.
 * ES256 signatures are exactly 64 bytes (R and S left-padded to 32 bytes each).
 */
char *jwt_sign(const jwk_t *key, const char *typ, json_t *claims);

/*
 * Sign claims with HS256 under the key of mac (an HMAC handle kept open: opening one costs
 * more than a token's HMAC, see bench/); header {"alg":"HS256","typ":typ,"kid":kid}, typ and
 * kid left out when NULL. New string (caller frees) or NULL.
 */
char *jwt_sign_hs256(crypto_hmac_t *mac, const char *kid, const char *typ, json_t *claims);

/*
 * Verify an HS256 token under the key of mac: structure, strict base64url, header alg == "HS256",
 * header typ == typ (when typ is not NULL), signature (constant time). Does NOT check exp or
 * other claims. Returns 1 and sets *claims (new reference) when valid, 0 when invalid,
 * -1 on internal error.
 */
int jwt_verify_hs256(const char *token, crypto_hmac_t *mac, const char *typ, json_t **claims);

/*
 * Verify an asymmetrically signed token against the nkeys public keys: the header's kid must
 * name one of them, its alg must be that key's alg. Returns 1 and sets *claims (new reference)
 * when valid, 0 when invalid, -1 on internal error. Does not check exp or other claims.
 */
int jwt_verify(const char *token, jwk_t *const *keys, size_t nkeys, const char *typ,
	       json_t **claims);

/*
 * Lower level, for jwt_sign/jwt_verify and for tests against the RFC 7515 examples (whose
 * headers differ from the ones jwt_sign writes): the JWS signature of the len bytes of signing
 * input (BASE64URL(header) "." BASE64URL(payload)) under key's algorithm. On success returns 0
 * and sets *sig to a new buffer (caller frees) of *siglen bytes: the modulus size for RS256,
 * exactly 64 for ES256 and EdDSA. -1 on error.
 */
int jwt_sign_input(const jwk_t *key, const void *input, size_t len, unsigned char **sig,
		   size_t *siglen);

/*
 * Check the siglen-byte JWS signature sig over the len bytes of signing input with key's
 * algorithm (any other length than that algorithm's is invalid). 1 valid, 0 invalid, -1 on
 * internal error.
 */
int jwt_verify_input(const jwk_t *key, const void *input, size_t len, const unsigned char *sig,
		     size_t siglen);

#endif
