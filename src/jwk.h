/*
 * jwk: signing keys (RS256 RSA >= 2048 bits, ES256 P-256, EdDSA Ed25519) held as libgcrypt
 * S-expressions; their private serialisation for storage and their public JWK form.
 */
#ifndef OTLOGIN_JWK_H
#define OTLOGIN_JWK_H

#include <jansson.h>

typedef struct jwk jwk_t;

/* Algorithm names as they appear in JWS "alg". */
#define JWK_RS256 "RS256"
#define JWK_ES256 "ES256"
#define JWK_EDDSA "EdDSA"

/*
 * Generate a new key for alg (JWK_RS256 with 2048 bits, JWK_ES256, JWK_EDDSA) with the given
 * kid. Returns a new key (free with jwk_free), NULL for an unknown alg or on error.
 */
jwk_t *jwk_generate(const char *alg, const char *kid);

/*
 * The key including private parts as a new NUL-terminated JSON text
 * {"kid":..,"alg":..,"sexp":"<canonical S-expression, base64url>"}, for storage (0600 only).
 * Caller wipes and frees (crypto_free_str). NULL on error.
 */
char *jwk_private_serialize(const jwk_t *key);

/* Parse what jwk_private_serialize produced. New key, or NULL when malformed. */
jwk_t *jwk_private_parse(const char *text);

/*
 * The public JWK as a new JSON object: kty, kid, use:"sig", alg, and n/e (RSA) or crv/x/y
 * (EC P-256) or crv/x (OKP Ed25519). Never contains private members. NULL on error.
 */
json_t *jwk_public_json(const jwk_t *key);

/* Borrowed strings, valid while the key lives. */
const char *jwk_kid(const jwk_t *key);
const char *jwk_alg(const jwk_t *key);

/*
 * Keys parsed or generated after jwk_defer_pairwise_test(1) skip the pairwise test (sign a
 * fixed message, verify it with the derived public key; an RSA-2048 signature, most of a
 * key's load time) until their private key is first asked for: a process that serves one
 * request (CGI) and signs nothing never pays for it. Nothing is ever signed with a key that
 * did not pass: jwk_private_sexp runs the test first and refuses a key that fails.
 * libgcrypt's own consistency check (gcry_pk_testkey) still runs at load. Default off.
 */
void jwk_defer_pairwise_test(int on);

/*
 * Internal to jwt.c: the libgcrypt key S-expressions (borrowed, gcry_sexp_t as void *). The
 * private one is NULL (logged) for a key whose deferred pairwise test failed.
 */
void *jwk_private_sexp(const jwk_t *key);
void *jwk_public_sexp(const jwk_t *key);

void jwk_free(jwk_t *key);

#endif
