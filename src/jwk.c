#include "jwk.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gcrypt.h>

#include "b64url.h"
#include "crypto.h"
#include "log.h"

/* Smallest RSA modulus accepted, as security rule 10 requires. */
#define RSA_MIN_BITS 2048

enum kty { KTY_RSA, KTY_EC, KTY_OKP };

struct jwk {
	char *kid;
	const char *alg; /* one of the JWK_* literals: the algorithm is fixed per key */
	enum kty kty;
	gcry_sexp_t priv; /* (private-key ...), in libgcrypt's secure memory */
	gcry_sexp_t pub;  /* (public-key ...), derived from priv */
	int paired;	  /* pairwise test: 1 passed, -1 failed, 0 deferred to the first use */
};

/* jwk_defer_pairwise_test: keys built from now on leave their pairwise test to first use. */
static int defer_pairwise;

/* The JWK_* literal for alg, or NULL when alg is not one we support. */
static const char *alg_literal(const char *alg)
{
	static const char *const algs[] = {JWK_RS256, JWK_ES256, JWK_EDDSA};

	if (alg == NULL)
		return NULL;
	for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
		if (strcmp(alg, algs[i]) == 0)
			return algs[i];
	return NULL;
}

/* 1 when the value (second element) of the sublist of s named token is exactly want. */
static int token_value_is(gcry_sexp_t s, const char *token, const char *want)
{
	gcry_sexp_t l = gcry_sexp_find_token(s, token, 0);
	const char *v;
	size_t n = 0;
	int ok;

	if (l == NULL)
		return 0;
	v = gcry_sexp_nth_data(l, 1, &n);
	ok = v != NULL && n == strlen(want) && memcmp(v, want, n) == 0;
	gcry_sexp_release(l);
	return ok;
}

/* 1 when the (flags ...) sublist of s contains flag. */
static int has_flag(gcry_sexp_t s, const char *flag)
{
	gcry_sexp_t l = gcry_sexp_find_token(s, "flags", 0);
	int found = 0;

	if (l == NULL)
		return 0;
	for (int i = 1; i < gcry_sexp_length(l) && !found; i++) {
		size_t n = 0;
		const char *v = gcry_sexp_nth_data(l, i, &n);
		found = v != NULL && n == strlen(flag) && memcmp(v, flag, n) == 0;
	}
	gcry_sexp_release(l);
	return found;
}

/* The MPI value of the sublist of s named token (new, caller releases), or NULL. */
static gcry_mpi_t token_mpi(gcry_sexp_t s, const char *token)
{
	gcry_sexp_t l = gcry_sexp_find_token(s, token, 0);
	gcry_mpi_t m;

	if (l == NULL)
		return NULL;
	m = gcry_sexp_nth_mpi(l, 1, GCRYMPI_FMT_USG);
	gcry_sexp_release(l);
	return m;
}

/*
 * The public point q of an EC or OKP key as a new buffer (caller frees) of *len bytes, checked
 * for the shape its curve needs: 0x04||X||Y (65 bytes) for P-256, 32 bytes for Ed25519 (an
 * optional 0x40 prefix, libgcrypt's marker for a compact point, is kept here and stripped
 * where the JWK is built). NULL when missing or malformed.
 */
static unsigned char *ec_point(gcry_sexp_t s, enum kty kty, size_t *len)
{
	gcry_sexp_t l = gcry_sexp_find_token(s, "q", 0);
	const char *v;
	unsigned char *out = NULL;
	size_t n = 0;
	int ok;

	if (l == NULL)
		return NULL;
	v = gcry_sexp_nth_data(l, 1, &n);
	if (kty == KTY_EC)
		ok = v != NULL && n == 65 && v[0] == 0x04;
	else
		ok = v != NULL && (n == 32 || (n == 33 && v[0] == 0x40));
	if (ok && (out = malloc(n)) != NULL) {
		memcpy(out, v, n);
		*len = n;
	}
	gcry_sexp_release(l);
	return out;
}

/*
 * Sign a fixed message with the private key and verify it with the public key. 0 when they
 * belong together, -1 otherwise.
 */
static int pairwise_test(const jwk_t *key)
{
	static const char msg[] = "otlogin key self-test";
	unsigned char digest[CRYPTO_HASH_LEN];
	gcry_sexp_t data = NULL, sig = NULL;
	gcry_error_t rc;

	crypto_sha256(msg, sizeof(msg) - 1, digest);
	switch (key->kty) {
	case KTY_RSA:
		rc = gcry_sexp_build(&data, NULL, "(data (flags pkcs1)(hash sha256 %b))",
				     (int)sizeof(digest), digest);
		break;
	case KTY_EC:
		rc = gcry_sexp_build(&data, NULL, "(data (flags rfc6979)(hash sha256 %b))",
				     (int)sizeof(digest), digest);
		break;
	default:
		rc =
		    gcry_sexp_build(&data, NULL, "(data (flags eddsa)(hash-algo sha512)(value %b))",
				    (int)sizeof(msg) - 1, msg);
		break;
	}
	if (rc == 0)
		rc = gcry_pk_sign(&sig, data, key->priv);
	if (rc == 0)
		rc = gcry_pk_verify(sig, data, key->pub);
	gcry_sexp_release(sig);
	gcry_sexp_release(data);
	return rc == 0 ? 0 : -1;
}

/*
 * Build a key from the canonical S-expression of its private key (canon, len bytes, normally in
 * secure memory so that libgcrypt keeps its parse there too). Checks that the key is what alg
 * requires (RSA >= 2048 bits, ECC on NIST P-256, Ed25519 with the eddsa flag), derives the
 * public key from the private one and lets libgcrypt check their consistency. New key or NULL.
 */
static jwk_t *key_from_canon(const char *alg, const char *kid, const unsigned char *canon,
			     size_t len)
{
	static const char rsa_prefix[] = "(11:private-key(3:rsa";
	static const char ecc_prefix[] = "(11:private-key(3:ecc";
	const char *prefix;
	jwk_t *key = NULL;
	gcry_mpi_t n = NULL, e = NULL;
	unsigned char *q = NULL;
	size_t qlen = 0;
	gcry_error_t rc;

	if ((alg = alg_literal(alg)) == NULL || kid == NULL || kid[0] == '\0')
		return NULL;
	/*
	 * Look at the algorithm in the canonical bytes rather than through gcry_sexp_nth or
	 * find_token on the whole key: those copy the private parameters into ordinary memory.
	 */
	prefix = strcmp(alg, JWK_RS256) == 0 ? rsa_prefix : ecc_prefix;
	if (len < strlen(prefix) || memcmp(canon, prefix, strlen(prefix)) != 0 ||
	    gcry_sexp_canon_len(canon, len, NULL, NULL) != len)
		return NULL;
	if ((key = calloc(1, sizeof(*key))) == NULL || (key->kid = strdup(kid)) == NULL)
		goto fail;
	key->alg = alg;
	if (strcmp(alg, JWK_RS256) == 0)
		key->kty = KTY_RSA;
	else if (strcmp(alg, JWK_ES256) == 0)
		key->kty = KTY_EC;
	else
		key->kty = KTY_OKP;
	if ((rc = gcry_sexp_new(&key->priv, canon, len, 0)) != 0)
		goto fail;

	switch (key->kty) {
	case KTY_RSA:
		if ((n = token_mpi(key->priv, "n")) == NULL ||
		    (e = token_mpi(key->priv, "e")) == NULL)
			goto fail;
		rc = gcry_sexp_build(&key->pub, NULL, "(public-key (rsa (n %m)(e %m)))", n, e);
		break;
	case KTY_EC:
		if (!token_value_is(key->priv, "curve", "NIST P-256") ||
		    (q = ec_point(key->priv, KTY_EC, &qlen)) == NULL)
			goto fail;
		rc = gcry_sexp_build(&key->pub, NULL,
				     "(public-key (ecc (curve \"NIST P-256\")(q %b)))", (int)qlen,
				     q);
		break;
	case KTY_OKP:
		/* Without the eddsa flag libgcrypt would treat an Ed25519 key as an ECDSA key. */
		if (!token_value_is(key->priv, "curve", "Ed25519") ||
		    !has_flag(key->priv, "eddsa") ||
		    (q = ec_point(key->priv, KTY_OKP, &qlen)) == NULL)
			goto fail;
		rc = gcry_sexp_build(&key->pub, NULL,
				     "(public-key (ecc (curve Ed25519)(flags eddsa)(q %b)))",
				     (int)qlen, q);
		break;
	}
	if (rc != 0)
		goto fail;
	if (key->kty == KTY_RSA && gcry_pk_get_nbits(key->pub) < RSA_MIN_BITS)
		goto fail;
	/*
	 * libgcrypt's own check finds inconsistent RSA and NIST-curve parameters, but for Ed25519
	 * it does not compare d with q: a signature made with the private key that verifies under
	 * the public key we derived settles it for every type.
	 */
	if ((rc = gcry_pk_testkey(key->priv)) != 0)
		goto fail;
	if (!defer_pairwise && pairwise_test(key) != 0)
		goto fail;
	key->paired = defer_pairwise ? 0 : 1;
	gcry_mpi_release(n);
	gcry_mpi_release(e);
	free(q);
	return key;
fail:
	gcry_mpi_release(n);
	gcry_mpi_release(e);
	free(q);
	jwk_free(key);
	return NULL;
}

/*
 * The (private-key ...) element of a (key-data (public-key ...)(private-key ...)) list from
 * gcry_pk_genkey, as canonical bytes in a new secure buffer (free with gcry_free). Walking the
 * canonical encoding avoids gcry_sexp_find_token, which would copy the private key out of
 * secure memory. NULL when not found.
 */
static unsigned char *private_canon(gcry_sexp_t keypair, size_t *outlen)
{
	static const char head[] = "(8:key-data";
	static const char want[] = "(11:private-key";
	unsigned char *all, *out = NULL;
	size_t size, len, pos;

	size = gcry_sexp_sprint(keypair, GCRYSEXP_FMT_CANON, NULL, 0);
	if (size == 0 || (all = gcry_malloc_secure(size)) == NULL)
		return NULL;
	len = gcry_sexp_sprint(keypair, GCRYSEXP_FMT_CANON, all, size);
	if (len == 0 || len < sizeof(head) - 1 || memcmp(all, head, sizeof(head) - 1) != 0)
		goto out;
	for (pos = sizeof(head) - 1; pos < len && all[pos] == '(';) {
		size_t sub = gcry_sexp_canon_len(all + pos, len - pos, NULL, NULL);
		if (sub == 0)
			break;
		if (sub > sizeof(want) - 1 && memcmp(all + pos, want, sizeof(want) - 1) == 0) {
			if ((out = gcry_malloc_secure(sub)) != NULL) {
				memcpy(out, all + pos, sub);
				*outlen = sub;
			}
			break;
		}
		pos += sub;
	}
out:
	/* Secure memory is wiped by gcry_free. */
	gcry_free(all);
	return out;
}

jwk_t *jwk_generate(const char *alg, const char *kid)
{
	const char *spec;
	gcry_sexp_t parms = NULL, keypair = NULL;
	unsigned char *canon = NULL;
	size_t len = 0;
	jwk_t *key = NULL;
	gcry_error_t rc;

	if ((alg = alg_literal(alg)) == NULL || kid == NULL || kid[0] == '\0')
		return NULL;
	if (strcmp(alg, JWK_RS256) == 0)
		spec = "(genkey (rsa (nbits 4:2048)(rsa-use-e 5:65537)))";
	else if (strcmp(alg, JWK_ES256) == 0)
		spec = "(genkey (ecc (curve \"NIST P-256\")))";
	else
		spec = "(genkey (ecc (curve Ed25519)(flags eddsa)))";
	if ((rc = gcry_sexp_new(&parms, spec, 0, 1)) != 0 ||
	    (rc = gcry_pk_genkey(&keypair, parms)) != 0) {
		log_err("generating a %s key: %s", alg, gcry_strerror(rc));
		goto out;
	}
	if ((canon = private_canon(keypair, &len)) == NULL)
		goto out;
	if ((key = key_from_canon(alg, kid, canon, len)) == NULL)
		log_err("generated %s key failed its checks", alg);
out:
	gcry_free(canon);
	gcry_sexp_release(keypair);
	gcry_sexp_release(parms);
	return key;
}

/* A JSON string literal (quotes and escapes) for s, new (caller frees), or NULL. */
static char *json_quote(const char *s)
{
	json_t *j = json_string(s);
	char *out;

	if (j == NULL)
		return NULL;
	out = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
	json_decref(j);
	return out;
}

char *jwk_private_serialize(const jwk_t *key)
{
	unsigned char *canon = NULL;
	char *b64 = NULL, *kid = NULL, *alg = NULL, *text = NULL;
	size_t size, len, textlen;

	if (key == NULL)
		return NULL;
	size = gcry_sexp_sprint(key->priv, GCRYSEXP_FMT_CANON, NULL, 0);
	if (size == 0 || (canon = gcry_malloc_secure(size)) == NULL)
		goto out;
	if ((len = gcry_sexp_sprint(key->priv, GCRYSEXP_FMT_CANON, canon, size)) == 0)
		goto out;
	if ((b64 = b64url_encode(canon, len)) == NULL || (kid = json_quote(key->kid)) == NULL ||
	    (alg = json_quote(key->alg)) == NULL)
		goto out;
	/*
	 * The text is put together by hand rather than through a json_t: Jansson would keep its own
	 * copy of the private key and free it without wiping. kid and alg are quoted by Jansson;
	 * base64url needs no escaping.
	 */
	textlen = strlen(kid) + strlen(alg) + strlen(b64) + 32;
	if ((text = malloc(textlen)) == NULL)
		goto out;
	snprintf(text, textlen, "{\"kid\":%s,\"alg\":%s,\"sexp\":\"%s\"}", kid, alg, b64);
out:
	gcry_free(canon);
	crypto_free_str(b64);
	free(kid);
	free(alg);
	return text;
}

jwk_t *jwk_private_parse(const char *text)
{
	json_t *root = NULL, *jkid, *jalg, *jsexp;
	unsigned char *raw = NULL, *canon = NULL;
	size_t rawlen = 0;
	jwk_t *key = NULL;

	if (text == NULL || (root = json_loads(text, JSON_REJECT_DUPLICATES, NULL)) == NULL)
		return NULL;
	jkid = json_object_get(root, "kid");
	jalg = json_object_get(root, "alg");
	jsexp = json_object_get(root, "sexp");
	if (!json_is_object(root) || !json_is_string(jkid) || !json_is_string(jalg) ||
	    !json_is_string(jsexp))
		goto out;
	if (b64url_decode(json_string_value(jsexp), json_string_length(jsexp), &raw, &rawlen) !=
		0 ||
	    rawlen == 0)
		goto out;
	/* Into secure memory, so that libgcrypt parses the key into secure memory as well. */
	if ((canon = gcry_malloc_secure(rawlen)) == NULL)
		goto out;
	memcpy(canon, raw, rawlen);
	key = key_from_canon(json_string_value(jalg), json_string_value(jkid), canon, rawlen);
out:
	if (raw != NULL) {
		crypto_wipe(raw, rawlen);
		free(raw);
	}
	gcry_free(canon);
	/*
	 * Jansson frees strings without wiping them: clear the encoded key in place (the length is
	 * unchanged, so the object stays consistent) before dropping it.
	 */
	jsexp = json_is_object(root) ? json_object_get(root, "sexp") : NULL;
	if (json_is_string(jsexp))
		crypto_wipe((char *)json_string_value(jsexp), json_string_length(jsexp));
	json_decref(root);
	return key;
}

/* Set name in obj to the base64url encoding of len bytes at data. 0 or -1. */
static int set_b64(json_t *obj, const char *name, const void *data, size_t len)
{
	char *s = b64url_encode(data, len);
	int rc;

	if (s == NULL)
		return -1;
	rc = json_object_set_new(obj, name, json_string(s));
	free(s);
	return rc;
}

/* Set name in obj to the minimal big-endian unsigned encoding of the MPI token of s. 0 or -1. */
static int set_mpi(json_t *obj, const char *name, gcry_sexp_t s, const char *token)
{
	gcry_mpi_t m = token_mpi(s, token);
	unsigned char *buf = NULL;
	size_t len = 0;
	int rc = -1;

	/* FMT_USG prints no sign byte and no leading zeros, as RFC 7518 section 6.3.1 wants. */
	if (m != NULL && gcry_mpi_aprint(GCRYMPI_FMT_USG, &buf, &len, m) == 0 && len > 0)
		rc = set_b64(obj, name, buf, len);
	gcry_free(buf);
	gcry_mpi_release(m);
	return rc;
}

json_t *jwk_public_json(const jwk_t *key)
{
	static const char *const kty_names[] = {"RSA", "EC", "OKP"};
	unsigned char *q = NULL;
	size_t qlen = 0;
	json_t *obj;
	int rc = -1;

	if (key == NULL || (obj = json_object()) == NULL)
		return NULL;
	/* Only public members, and only from the public key: a private value cannot leak here. */
	if (json_object_set_new(obj, "kty", json_string(kty_names[key->kty])) != 0 ||
	    json_object_set_new(obj, "kid", json_string(key->kid)) != 0 ||
	    json_object_set_new(obj, "use", json_string("sig")) != 0 ||
	    json_object_set_new(obj, "alg", json_string(key->alg)) != 0)
		goto out;
	switch (key->kty) {
	case KTY_RSA:
		if (set_mpi(obj, "n", key->pub, "n") != 0 || set_mpi(obj, "e", key->pub, "e") != 0)
			goto out;
		break;
	case KTY_EC:
		/* q is 0x04 || X || Y, each coordinate 32 bytes (RFC 7518 section 6.2.1). */
		if ((q = ec_point(key->pub, KTY_EC, &qlen)) == NULL ||
		    json_object_set_new(obj, "crv", json_string("P-256")) != 0 ||
		    set_b64(obj, "x", q + 1, 32) != 0 || set_b64(obj, "y", q + 33, 32) != 0)
			goto out;
		break;
	case KTY_OKP:
		/* The 32-byte public key of RFC 8032, without libgcrypt's 0x40 prefix if any. */
		if ((q = ec_point(key->pub, KTY_OKP, &qlen)) == NULL ||
		    json_object_set_new(obj, "crv", json_string("Ed25519")) != 0 ||
		    set_b64(obj, "x", q + (qlen == 33), 32) != 0)
			goto out;
		break;
	}
	rc = 0;
out:
	free(q);
	if (rc != 0) {
		json_decref(obj);
		return NULL;
	}
	return obj;
}

const char *jwk_kid(const jwk_t *key)
{
	return key->kid;
}

const char *jwk_alg(const jwk_t *key)
{
	return key->alg;
}

void jwk_defer_pairwise_test(int on)
{
	defer_pairwise = on;
}

void *jwk_private_sexp(const jwk_t *key)
{
	/* The key object is the caller's; only this cached verdict changes. */
	jwk_t *k = (jwk_t *)key;

	if (k->paired == 0)
		k->paired = pairwise_test(key) == 0 ? 1 : -1;
	if (k->paired < 0) {
		log_err("signing key %s failed its self-test: its private key does not sign what "
			"its public key verifies; nothing is signed with it",
			key->kid);
		return NULL;
	}
	return key->priv;
}

void *jwk_public_sexp(const jwk_t *key)
{
	return key->pub;
}

void jwk_free(jwk_t *key)
{
	if (key == NULL)
		return;
	/* libgcrypt wipes secure memory when it releases it. */
	gcry_sexp_release(key->priv);
	gcry_sexp_release(key->pub);
	free(key->kid);
	free(key);
}
