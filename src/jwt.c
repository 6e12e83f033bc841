#include "jwt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gcrypt.h>

#include "b64url.h"
#include "crypto.h"
#include "log.h"

#define JWT_HS256 "HS256"

/*
 * Longest token looked at. Ours are a few hundred bytes; the bound keeps a hostile token from
 * costing more than a few base64 and JSON passes over a small buffer.
 */
#define JWT_MAX_LEN 16384

/* Bytes of R and of S in an ES256 signature (RFC 7518 section 3.4), and of an Ed25519 half. */
#define EC_HALF 32

/*
 * Write the MPI value of the sublist token of sig, unsigned big-endian and left-padded with
 * zeros to exactly width bytes, into out. libgcrypt drops leading zero bytes, so a value can be
 * shorter than its JWS field. 0, or -1 when missing or wider than width.
 */
static int put_padded(gcry_sexp_t sig, const char *token, unsigned char *out, size_t width)
{
	gcry_sexp_t l = gcry_sexp_find_token(sig, token, 0);
	gcry_mpi_t m = NULL;
	size_t n = 0;
	int rc = -1;

	if (l == NULL || (m = gcry_sexp_nth_mpi(l, 1, GCRYMPI_FMT_USG)) == NULL)
		goto out;
	if (gcry_mpi_print(GCRYMPI_FMT_USG, out, width, &n, m) != 0 || n > width)
		goto out;
	memmove(out + (width - n), out, n);
	memset(out, 0, width - n);
	rc = 0;
out:
	gcry_mpi_release(m);
	gcry_sexp_release(l);
	return rc;
}

/* The modulus size in bytes of an RSA key, which is also its signature size. */
static size_t rsa_bytes(const jwk_t *key)
{
	return (gcry_pk_get_nbits(jwk_public_sexp(key)) + 7) / 8;
}

int jwt_sign_input(const jwk_t *key, const void *input, size_t len, unsigned char **sig,
		   size_t *siglen)
{
	const char *alg = jwk_alg(key);
	unsigned char digest[CRYPTO_HASH_LEN], *out = NULL;
	gcry_sexp_t data = NULL, sv = NULL;
	size_t outlen = 0;
	gcry_error_t rc;
	int ret = -1;

	if (strcmp(alg, JWK_RS256) == 0) {
		/* RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 section 3.3). */
		crypto_sha256(input, len, digest);
		rc = gcry_sexp_build(&data, NULL, "(data (flags pkcs1)(hash sha256 %b))",
				     (int)sizeof(digest), digest);
		outlen = rsa_bytes(key);
	} else if (strcmp(alg, JWK_ES256) == 0) {
		/*
		 * ECDSA P-256 over SHA-256 (RFC 7518 section 3.4). The nonce is derived from key
		 * and digest (RFC 6979), so a weak moment of the RNG cannot expose the key.
		 */
		crypto_sha256(input, len, digest);
		rc = gcry_sexp_build(&data, NULL, "(data (flags rfc6979)(hash sha256 %b))",
				     (int)sizeof(digest), digest);
		outlen = 2 * EC_HALF;
	} else if (strcmp(alg, JWK_EDDSA) == 0) {
		/* PureEdDSA: Ed25519 signs the input itself (RFC 8037 section 3.1). */
		rc =
		    gcry_sexp_build(&data, NULL, "(data (flags eddsa)(hash-algo sha512)(value %b))",
				    (int)len, input);
		outlen = 2 * EC_HALF;
	} else {
		return -1;
	}
	if (rc != 0 || (rc = gcry_pk_sign(&sv, data, jwk_private_sexp(key))) != 0) {
		log_err("%s signature: %s", alg, gcry_strerror(rc));
		goto out;
	}
	if (outlen == 0 || (out = malloc(outlen)) == NULL)
		goto out;
	if (strcmp(alg, JWK_RS256) == 0) {
		if (put_padded(sv, "s", out, outlen) != 0)
			goto out;
	} else if (put_padded(sv, "r", out, EC_HALF) != 0 ||
		   put_padded(sv, "s", out + EC_HALF, EC_HALF) != 0) {
		goto out;
	}
	*sig = out;
	*siglen = outlen;
	out = NULL;
	ret = 0;
out:
	if (ret != 0)
		log_err("%s signature has an unexpected form", alg);
	free(out);
	gcry_sexp_release(sv);
	gcry_sexp_release(data);
	return ret;
}

/* An MPI of the len unsigned big-endian bytes at p (new), or NULL. */
static gcry_mpi_t mpi_of(const unsigned char *p, size_t len)
{
	gcry_mpi_t m = NULL;

	if (gcry_mpi_scan(&m, GCRYMPI_FMT_USG, p, len, NULL) != 0)
		return NULL;
	return m;
}

/*
 * Whether the 32-byte little-endian S of an Ed25519 signature is below the group order L, as
 * RFC 8032 section 5.1.7 requires. libgcrypt 1.10 accepts S + L as well, which would give every
 * signature a second valid form (a malleable token).
 */
static int ed25519_s_canonical(const unsigned char *s)
{
	/* L = 2^252 + 27742317777372353535851937790883648493, little-endian. */
	static const unsigned char order[EC_HALF] = {
	    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7,
	    0xa2, 0xde, 0xf9, 0xde, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10};

	for (int i = EC_HALF - 1; i >= 0; i--)
		if (s[i] != order[i])
			return s[i] < order[i];
	return 0; /* S == L */
}

int jwt_verify_input(const jwk_t *key, const void *input, size_t len, const unsigned char *sig,
		     size_t siglen)
{
	const char *alg = jwk_alg(key);
	unsigned char digest[CRYPTO_HASH_LEN];
	gcry_sexp_t data = NULL, sv = NULL;
	gcry_mpi_t r = NULL, s = NULL;
	gcry_error_t rc;
	int ret = -1;

	if (strcmp(alg, JWK_RS256) == 0) {
		/* Exactly the modulus size, as RFC 8017 section 8.2.2 step 1 requires. */
		if (siglen != rsa_bytes(key))
			return 0;
		crypto_sha256(input, len, digest);
		if ((s = mpi_of(sig, siglen)) == NULL)
			goto out;
		/*
		 * %m with an MPI scanned as unsigned: a raw %b could be read as a negative number
		 * when its top bit is set.
		 */
		rc = gcry_sexp_build(&sv, NULL, "(sig-val (rsa (s %m)))", s);
		if (rc == 0)
			rc = gcry_sexp_build(&data, NULL, "(data (flags pkcs1)(hash sha256 %b))",
					     (int)sizeof(digest), digest);
	} else if (strcmp(alg, JWK_ES256) == 0) {
		/* R||S, each exactly 32 bytes: DER or any other length is not JWS (rule 10). */
		if (siglen != 2 * EC_HALF)
			return 0;
		crypto_sha256(input, len, digest);
		if ((r = mpi_of(sig, EC_HALF)) == NULL ||
		    (s = mpi_of(sig + EC_HALF, EC_HALF)) == NULL)
			goto out;
		rc = gcry_sexp_build(&sv, NULL, "(sig-val (ecdsa (r %m)(s %m)))", r, s);
		/* libgcrypt takes a (hash ...) element for ECDSA only with the raw flag. */
		if (rc == 0)
			rc = gcry_sexp_build(&data, NULL, "(data (flags raw)(hash sha256 %b))",
					     (int)sizeof(digest), digest);
	} else if (strcmp(alg, JWK_EDDSA) == 0) {
		if (siglen != 2 * EC_HALF || !ed25519_s_canonical(sig + EC_HALF))
			return 0;
		/* EdDSA takes R and S as the byte strings of RFC 8032, not as numbers. */
		rc = gcry_sexp_build(&sv, NULL, "(sig-val (eddsa (r %b)(s %b)))", EC_HALF, sig,
				     EC_HALF, sig + EC_HALF);
		if (rc == 0)
			rc = gcry_sexp_build(&data, NULL,
					     "(data (flags eddsa)(hash-algo sha512)(value %b))",
					     (int)len, input);
	} else {
		return -1;
	}
	if (rc != 0) {
		log_err("%s verification: %s", alg, gcry_strerror(rc));
		goto out;
	}
	/*
	 * libgcrypt answers "bad signature" for every wrong or out-of-range signature (R or S zero
	 * or too large, an invalid Ed25519 point). Anything else means the request we built is
	 * wrong, which must show up as an error rather than as every token being refused.
	 */
	rc = gcry_pk_verify(sv, data, jwk_public_sexp(key));
	if (rc == 0) {
		ret = 1;
	} else if (gpg_err_code(rc) == GPG_ERR_BAD_SIGNATURE) {
		ret = 0;
	} else {
		log_err("%s verification: %s", alg, gcry_strerror(rc));
		ret = -1;
	}
out:
	gcry_mpi_release(r);
	gcry_mpi_release(s);
	gcry_sexp_release(sv);
	gcry_sexp_release(data);
	return ret;
}

/*
 * The signing input BASE64URL(header) "." BASE64URL(payload) as a new string (caller frees), for
 * a header {"alg","typ","kid"} in that order (typ and kid left out when NULL) and the claims
 * object. NULL on error or when claims is not an object.
 */
static char *signing_input(const char *alg, const char *typ, const char *kid, json_t *claims)
{
	json_t *header = NULL;
	char *htext = NULL, *ptext = NULL, *h64 = NULL, *p64 = NULL, *out = NULL;
	size_t outlen;

	if (!json_is_object(claims) || (header = json_object()) == NULL)
		goto out;
	/* Jansson keeps insertion order, so the header reads alg, typ, kid. */
	if (json_object_set_new(header, "alg", json_string(alg)) != 0 ||
	    (typ != NULL && json_object_set_new(header, "typ", json_string(typ)) != 0) ||
	    (kid != NULL && json_object_set_new(header, "kid", json_string(kid)) != 0))
		goto out;
	if ((htext = json_dumps(header, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL ||
	    (ptext = json_dumps(claims, JSON_COMPACT)) == NULL)
		goto out;
	if ((h64 = b64url_encode(htext, strlen(htext))) == NULL ||
	    (p64 = b64url_encode(ptext, strlen(ptext))) == NULL)
		goto out;
	outlen = strlen(h64) + 1 + strlen(p64) + 1;
	if ((out = malloc(outlen)) != NULL)
		snprintf(out, outlen, "%s.%s", h64, p64);
out:
	json_decref(header);
	free(htext);
	free(ptext);
	free(h64);
	free(p64);
	return out;
}

/* input "." BASE64URL(sig) as a new string (caller frees), or NULL. */
static char *append_sig(const char *input, const unsigned char *sig, size_t siglen)
{
	char *s64 = b64url_encode(sig, siglen), *out = NULL;
	size_t outlen;

	if (s64 == NULL)
		return NULL;
	outlen = strlen(input) + 1 + strlen(s64) + 1;
	if ((out = malloc(outlen)) != NULL)
		snprintf(out, outlen, "%s.%s", input, s64);
	free(s64);
	return out;
}

char *jwt_sign(const jwk_t *key, const char *typ, json_t *claims)
{
	char *input, *token = NULL;
	unsigned char *sig = NULL;
	size_t siglen = 0;

	if (key == NULL || (input = signing_input(jwk_alg(key), typ, jwk_kid(key), claims)) == NULL)
		return NULL;
	if (jwt_sign_input(key, input, strlen(input), &sig, &siglen) == 0)
		token = append_sig(input, sig, siglen);
	free(sig);
	free(input);
	return token;
}

char *jwt_sign_hs256(crypto_hmac_t *hmac, const char *kid, const char *typ, json_t *claims)
{
	unsigned char mac[CRYPTO_HASH_LEN];
	char *input, *token = NULL;

	if ((input = signing_input(JWT_HS256, typ, kid, claims)) == NULL)
		return NULL;
	if (crypto_hmac(hmac, input, strlen(input), mac) == 0)
		token = append_sig(input, mac, sizeof(mac));
	free(input);
	return token;
}

/* A token split into its parts; the signing input is token[0 .. inputlen). */
struct parsed {
	const char *token;
	size_t inputlen;
	const char *payload; /* base64url payload segment and its length */
	size_t payloadlen;
	json_t *header;	       /* the decoded header object */
	const char *alg, *kid; /* borrowed from header; kid NULL when absent */
	unsigned char *sig;
	size_t siglen;
};

static void parsed_free(struct parsed *p)
{
	json_decref(p->header);
	free(p->sig);
}

/* Decode a base64url segment holding a JSON object (new reference), or NULL. */
static json_t *decode_object(const char *seg, size_t len)
{
	unsigned char *raw = NULL;
	size_t rawlen = 0;
	json_t *obj;

	if (b64url_decode(seg, len, &raw, &rawlen) != 0)
		return NULL;
	obj = json_loadb((const char *)raw, rawlen, JSON_REJECT_DUPLICATES, NULL);
	free(raw);
	if (obj != NULL && !json_is_object(obj)) {
		json_decref(obj);
		obj = NULL;
	}
	return obj;
}

/* Header members refused by parse_token. */
static const char *const key_headers[] = {"jku", "jwk", "x5u", "x5c"};

/*
 * Split a compact token and decode its header and signature: exactly three non-empty segments,
 * each strict base64url, a header that is a JSON object without duplicate members, with a
 * string alg, the expected typ (when typ is not NULL), a string kid when present, no "crit" (we
 * implement no extension, so RFC 7515 section 4.1.11 says to reject any) and no jku, jwk, x5u
 * or x5c. 1 when well formed, else 0 (also when memory runs out: refusing is the safe
 * answer). On 1 the caller calls parsed_free.
 */
static int parse_token(const char *token, const char *typ, struct parsed *p)
{
	const char *d1, *d2;
	json_t *v;
	size_t len;

	memset(p, 0, sizeof(*p));
	if (token == NULL || (len = strnlen(token, JWT_MAX_LEN + 1)) > JWT_MAX_LEN)
		return 0;
	if ((d1 = strchr(token, '.')) == NULL || (d2 = strchr(d1 + 1, '.')) == NULL ||
	    strchr(d2 + 1, '.') != NULL)
		return 0;
	if (d1 == token || d2 == d1 + 1 || d2[1] == '\0')
		return 0;
	p->token = token;
	p->inputlen = (size_t)(d2 - token);
	p->payload = d1 + 1;
	p->payloadlen = (size_t)(d2 - d1 - 1);
	if ((p->header = decode_object(token, (size_t)(d1 - token))) == NULL)
		goto invalid;
	v = json_object_get(p->header, "alg");
	if (!json_is_string(v))
		goto invalid;
	p->alg = json_string_value(v);
	v = json_object_get(p->header, "kid");
	if (v != NULL && !json_is_string(v))
		goto invalid;
	p->kid = json_string_value(v);
	if (typ != NULL) {
		v = json_object_get(p->header, "typ");
		if (!json_is_string(v) || strcmp(json_string_value(v), typ) != 0)
			goto invalid;
	}
	if (json_object_get(p->header, "crit") != NULL)
		goto invalid;
	/*
	 * Header members that name or carry a key (RFC 7515 sections 4.1.2 to 4.1.6): the key is
	 * always one the caller passes, never one the token points at, so a token carrying one is
	 * refused rather than have the member ignored by this code and honoured by another.
	 */
	for (size_t i = 0; i < sizeof(key_headers) / sizeof(key_headers[0]); i++)
		if (json_object_get(p->header, key_headers[i]) != NULL)
			goto invalid;
	if (b64url_decode(d2 + 1, strlen(d2 + 1), &p->sig, &p->siglen) != 0)
		goto invalid;
	return 1;
invalid:
	parsed_free(p);
	memset(p, 0, sizeof(*p));
	return 0;
}

/* After the signature has been checked: the claims object (new reference), or NULL. */
static json_t *parsed_claims(const struct parsed *p)
{
	return decode_object(p->payload, p->payloadlen);
}

int jwt_verify_hs256(const char *token, crypto_hmac_t *hmac, const char *typ, json_t **claims)
{
	unsigned char mac[CRYPTO_HASH_LEN];
	struct parsed p;
	json_t *c;
	int ret;

	if ((ret = parse_token(token, typ, &p)) != 1)
		return ret;
	ret = 0;
	/* The algorithm is pinned: an RS256, ES256, EdDSA or "none" header is refused here. */
	if (strcmp(p.alg, JWT_HS256) != 0 || p.siglen != sizeof(mac))
		goto out;
	if (crypto_hmac(hmac, p.token, p.inputlen, mac) != 0) {
		ret = -1;
		goto out;
	}
	if (!crypto_equal(mac, p.sig, sizeof(mac)))
		goto out;
	if ((c = parsed_claims(&p)) == NULL)
		goto out;
	*claims = c;
	ret = 1;
out:
	crypto_wipe(mac, sizeof(mac));
	parsed_free(&p);
	return ret;
}

int jwt_verify(const char *token, jwk_t *const *keys, size_t nkeys, const char *typ,
	       json_t **claims)
{
	const jwk_t *key = NULL;
	struct parsed p;
	json_t *c;
	int ret;

	if ((ret = parse_token(token, typ, &p)) != 1)
		return ret;
	ret = 0;
	/* kid only chooses among the keys we were given; a token without one matches none. */
	if (p.kid == NULL)
		goto out;
	for (size_t i = 0; i < nkeys && key == NULL; i++)
		if (keys[i] != NULL && strcmp(jwk_kid(keys[i]), p.kid) == 0)
			key = keys[i];
	/* The key fixes the algorithm: HS256, "none" or another key type's alg is refused. */
	if (key == NULL || strcmp(p.alg, jwk_alg(key)) != 0)
		goto out;
	if ((ret = jwt_verify_input(key, p.token, p.inputlen, p.sig, p.siglen)) != 1)
		goto out;
	ret = 0;
	if ((c = parsed_claims(&p)) == NULL)
		goto out;
	*claims = c;
	ret = 1;
out:
	parsed_free(&p);
	return ret;
}
