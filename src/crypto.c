#include "crypto.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gcrypt.h>

#include "b64url.h"
#include "log.h"

/* Oldest libgcrypt with everything used here (gcry_mac_*, Ed25519 via flags eddsa). */
#define GCRYPT_MIN_VERSION "1.8.0"

/*
 * Secure memory pool. RSA private key operations and the private key S-expressions take some
 * kilobytes each; 1 MiB leaves room for a keyring of several keys and concurrent signatures.
 */
#define SECMEM_SIZE (1024 * 1024)

struct crypto_hmac {
	gcry_mac_hd_t hd;
};

int crypto_init(void)
{
	static int done;

	if (done)
		return 0;
	/* Another library in the process may have initialised libgcrypt already: accept that. */
	if (gcry_control(GCRYCTL_INITIALIZATION_FINISHED_P)) {
		if (gcry_check_version(GCRYPT_MIN_VERSION) == NULL) {
			log_err("libgcrypt %s is older than %s", gcry_check_version(NULL),
				GCRYPT_MIN_VERSION);
			return -1;
		}
		done = 1;
		return 0;
	}
	/*
	 * Random bytes straight from the kernel (getrandom), not from libgcrypt's own pool: the
	 * pool mixes itself with SHA-1 on every request (about 10 µs of CPU for a token, several
	 * per login, against 0.4 µs), and the kernel's generator is fork-safe. It must be chosen
	 * before the version check initialises the library.
	 */
	gcry_control(GCRYCTL_SET_PREFERRED_RNG_TYPE, GCRY_RNG_TYPE_SYSTEM);
	if (gcry_check_version(GCRYPT_MIN_VERSION) == NULL) {
		log_err("libgcrypt %s is older than %s", gcry_check_version(NULL),
			GCRYPT_MIN_VERSION);
		return -1;
	}
	/*
	 * Keep the warning about insecure memory quiet while the pool is set up (it would
	 * otherwise be printed before we can decide), then turn warnings back on.
	 */
	gcry_control(GCRYCTL_SUSPEND_SECMEM_WARN);
	if (gcry_control(GCRYCTL_INIT_SECMEM, SECMEM_SIZE, 0) != 0) {
		log_err("libgcrypt: cannot set up secure memory");
		return -1;
	}
	gcry_control(GCRYCTL_RESUME_SECMEM_WARN);
	if (gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0) != 0) {
		log_err("libgcrypt: initialisation failed");
		return -1;
	}
	done = 1;
	return 0;
}

void crypto_random(void *buf, size_t len)
{
	gcry_randomize(buf, len, GCRY_STRONG_RANDOM);
}

int crypto_random_digits(char *out, unsigned ndigits)
{
	unsigned char pool[32];
	size_t used = sizeof(pool);
	unsigned i = 0;

	if (ndigits < 1 || ndigits > 18)
		return -1;
	/*
	 * One random byte per digit, rejecting bytes >= 250: 250 is the largest multiple of 10
	 * below 256, so each accepted byte maps to each digit by exactly 25 values and the result
	 * is uniform. About 2.3% of the bytes are thrown away.
	 */
	while (i < ndigits) {
		if (used == sizeof(pool)) {
			crypto_random(pool, sizeof(pool));
			used = 0;
		}
		unsigned char b = pool[used++];
		if (b < 250)
			out[i++] = (char)('0' + b % 10);
	}
	out[ndigits] = '\0';
	crypto_wipe(pool, sizeof(pool));
	return 0;
}

char *crypto_random_token(size_t nbytes)
{
	unsigned char *buf;
	char *s;

	if ((buf = malloc(nbytes ? nbytes : 1)) == NULL)
		return NULL;
	crypto_random(buf, nbytes);
	s = b64url_encode(buf, nbytes);
	crypto_wipe(buf, nbytes);
	free(buf);
	return s;
}

void crypto_sha256(const void *data, size_t len, unsigned char out[CRYPTO_HASH_LEN])
{
	gcry_md_hash_buffer(GCRY_MD_SHA256, out, data, len);
}

void crypto_sha512(const void *data, size_t len, unsigned char out[64])
{
	gcry_md_hash_buffer(GCRY_MD_SHA512, out, data, len);
}

crypto_hmac_t *crypto_hmac_open(const void *key, size_t keylen)
{
	crypto_hmac_t *h;
	gcry_error_t rc;

	if ((h = calloc(1, sizeof(*h))) == NULL)
		return NULL;
	/* FLAG_SECURE keeps the key schedule in libgcrypt's locked, wiped-on-free memory. */
	rc = gcry_mac_open(&h->hd, GCRY_MAC_HMAC_SHA256, GCRY_MAC_FLAG_SECURE, NULL);
	if (rc != 0) {
		log_err("gcry_mac_open: %s", gcry_strerror(rc));
		free(h);
		return NULL;
	}
	/* libgcrypt rejects a NULL key pointer even when the length is zero. */
	rc = gcry_mac_setkey(h->hd, keylen ? key : "", keylen);
	if (rc != 0) {
		log_err("gcry_mac_setkey: %s", gcry_strerror(rc));
		gcry_mac_close(h->hd);
		free(h);
		return NULL;
	}
	return h;
}

int crypto_hmac_parts(crypto_hmac_t *h, size_t n, const void *const *part, const size_t *len,
		      unsigned char out[CRYPTO_HASH_LEN])
{
	size_t outlen = CRYPTO_HASH_LEN;
	gcry_error_t rc;

	if (h == NULL)
		return -1;
	/* Reset keeps the key but drops any state from the previous use. */
	if ((rc = gcry_mac_reset(h->hd)) != 0)
		goto fail;
	for (size_t i = 0; i < n; i++)
		if (len[i] > 0 && (rc = gcry_mac_write(h->hd, part[i], len[i])) != 0)
			goto fail;
	if ((rc = gcry_mac_read(h->hd, out, &outlen)) != 0)
		goto fail;
	if (outlen != CRYPTO_HASH_LEN) {
		log_err("HMAC-SHA-256 returned %zu bytes", outlen);
		return -1;
	}
	return 0;
fail:
	log_err("HMAC: %s", gcry_strerror(rc));
	return -1;
}

int crypto_hmac(crypto_hmac_t *h, const void *data, size_t len, unsigned char out[CRYPTO_HASH_LEN])
{
	const void *part[1] = {data};
	size_t plen[1] = {len};

	return crypto_hmac_parts(h, 1, part, plen, out);
}

int crypto_hmac_once(const void *key, size_t keylen, const void *data, size_t len,
		     unsigned char out[CRYPTO_HASH_LEN])
{
	crypto_hmac_t *h;
	int rc;

	if ((h = crypto_hmac_open(key, keylen)) == NULL)
		return -1;
	rc = crypto_hmac(h, data, len, out);
	crypto_hmac_close(h);
	return rc;
}

void crypto_hmac_close(crypto_hmac_t *h)
{
	if (h == NULL)
		return;
	gcry_mac_close(h->hd);
	free(h);
}

int crypto_equal(const void *a, const void *b, size_t len)
{
	/* volatile keeps the compiler from turning the loop into an early-exit memcmp. */
	const volatile unsigned char *pa = a, *pb = b;
	unsigned char diff = 0;

	for (size_t i = 0; i < len; i++)
		diff |= pa[i] ^ pb[i];
	/* Map 0 to 1 and 1..255 to 0 without a data-dependent branch. */
	return (int)(1 & ((diff - 1u) >> 8));
}

int crypto_str_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	const volatile unsigned char *pa = (const unsigned char *)a;
	const volatile unsigned char *pb = (const unsigned char *)b;
	size_t diff = la ^ lb;

	/*
	 * Walk all of a; read b at an index that stays inside it (its NUL when shorter). Which
	 * bytes are read depends on the lengths only, and a length mismatch alone makes the
	 * result 0.
	 */
	for (size_t i = 0; i < la; i++) {
		size_t j = i < lb ? i : lb;
		diff |= pa[i] ^ pb[j];
	}
	return diff == 0;
}

void crypto_wipe(void *p, size_t len)
{
	/* explicit_bzero is a glibc function the optimiser knows it must not remove. */
	if (p != NULL && len > 0)
		explicit_bzero(p, len);
}

void crypto_free_str(char *s)
{
	if (s == NULL)
		return;
	crypto_wipe(s, strlen(s));
	free(s);
}

void crypto_hex(const unsigned char *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * len] = '\0';
}
