/*
 * crypto: libgcrypt initialisation, strong randomness, hashing, HMAC, constant-time compare
 * and wiping. The only module that calls libgcrypt directly besides jwk/jwt.
 */
#ifndef OTLOGIN_CRYPTO_H
#define OTLOGIN_CRYPTO_H

#include <stddef.h>

#define CRYPTO_HASH_LEN 32 /* SHA-256 and HMAC-SHA-256 output */

/*
 * Initialise libgcrypt once per process, before any request is served or any fork:
 * the system random number generator (the kernel's), version check, secure memory,
 * GCRYCTL_INITIALIZATION_FINISHED. Returns 0, or -1 when the
 * library is too old or cannot be initialised. Safe to call twice (second call is a no-op).
 */
int crypto_init(void);

/* Fill buf with len bytes from GCRY_STRONG_RANDOM (the kernel's generator, see crypto_init). */
void crypto_random(void *buf, size_t len);

/*
 * Write ndigits uniformly distributed decimal digits (rejection sampling, no modulo bias,
 * leading zeros kept) and a NUL into out (which holds ndigits + 1 bytes).
 * Returns 0, or -1 when ndigits is outside 1..18.
 */
int crypto_random_digits(char *out, unsigned ndigits);

/* A new base64url string (no padding) of nbytes strong random bytes; caller frees. NULL on OOM. */
char *crypto_random_token(size_t nbytes);

/* SHA-256 of data into out. */
void crypto_sha256(const void *data, size_t len, unsigned char out[CRYPTO_HASH_LEN]);

/* SHA-512 of data into out (64 bytes). */
void crypto_sha512(const void *data, size_t len, unsigned char out[64]);

/*
 * A keyed HMAC-SHA-256 context that is opened once and reused (gcry_mac_reset between uses is
 * about 30 times faster than opening a handle per use). Not thread-safe; one per process.
 */
typedef struct crypto_hmac crypto_hmac_t;

/* New HMAC context for key; NULL on error. Free with crypto_hmac_close. */
crypto_hmac_t *crypto_hmac_open(const void *key, size_t keylen);
/* HMAC of the concatenation of the n parts (each part[i] of len[i] bytes) into out. 0 or -1. */
int crypto_hmac_parts(crypto_hmac_t *h, size_t n, const void *const *part, const size_t *len,
		      unsigned char out[CRYPTO_HASH_LEN]);
/* HMAC of one buffer into out. 0 or -1. */
int crypto_hmac(crypto_hmac_t *h, const void *data, size_t len, unsigned char out[CRYPTO_HASH_LEN]);
/* One-shot HMAC-SHA-256 with an explicit key. 0 or -1. */
int crypto_hmac_once(const void *key, size_t keylen, const void *data, size_t len,
		     unsigned char out[CRYPTO_HASH_LEN]);
void crypto_hmac_close(crypto_hmac_t *h);

/* 1 when the len bytes at a and b are equal, else 0; time depends only on len. */
int crypto_equal(const void *a, const void *b, size_t len);

/* Constant-time equality of two NUL-terminated strings (time depends on the lengths only). */
int crypto_str_equal(const char *a, const char *b);

/* Overwrite len bytes at p with zeros in a way the compiler cannot elide. NULL is fine. */
void crypto_wipe(void *p, size_t len);

/* Wipe and free a NUL-terminated string. NULL is fine. */
void crypto_free_str(char *s);

/* Lowercase hex of len bytes into out (2*len + 1 bytes). */
void crypto_hex(const unsigned char *in, size_t len, char *out);

#endif
